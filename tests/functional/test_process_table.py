"""The process table (src/proc/cd_supervisor.c, docs/ARCHITECTURE.md section
5) in a real daemon: every child is a row whose kind says what it needs.

conduitd indexes ../shared/data/regtest/blockchain_116_7c9cd2 from the
simulated node with the HTTP API on. Then, from /proc and PostgreSQL:
  - the block ring (a /dev/shm mapping of the controller) is mapped in the
    writer, the merkle worker and the parsers (needs_ring) and not in the
    HTTP server (it unmapped it before its main);
  - the parsers' and the HTTP server's PostgreSQL sessions are named
    conduitd-<component> in pg_stat_activity (needs_pg: PGAPPNAME);
  - the catch-up DDL helper ran as a run-once row (its start and end logged
    by the table) and was reaped: the daemon's children are exactly its
    resident rows, none a zombie.
Before the table, the HTTP server kept the ring mapped, no session had a
name, and the helper was forked outside the table.
"""

import os
import re
import sys
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon  # noqa: E402
from test_index import create_db, psql  # noqa: E402
from test_index_daemon import wait_tip  # noqa: E402
from tests.simnode import SimNode  # noqa: E402

CHAIN = "regtest/blockchain_116_7c9cd2"


def shm_maps(pid):
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[-1] for line in f if "/dev/shm/" in line}


def children(pid):
    """{child pid: state letter} of a process, from /proc."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out[int(d)] = fields[0]
    return out


@pytest.fixture(scope="module")
def run(pg_module, build_dir, shared_data, tmp_path_factory):
    node = SimNode(chain_dir=os.path.join(shared_data, CHAIN))
    node.start()
    ci = create_db(pg_module, "proctable")
    d = Daemon(build_dir, str(tmp_path_factory.mktemp("pt") / "d"),
               ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                "--parser-workers", "2", "--ring-size", "16M", "--unit-size", "64K",
                "--http-listen", "127.0.0.1:0", "--log-level", "debug",
                "--key-rows", "on"])  # off by default; its row is checked below
    d.env.pop("PGAPPNAME", None)  # an operator's own name would win
    d.start()
    try:
        port = int(d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        wait_tip(pg_module, "proctable", d, 116, timeout=300)
        d.wait_for_log(r"index: secondary indexes (present|ready)", timeout=120)
        yield d, port, pg_module
    finally:
        d.stop()
        node.stop()


def started(d, kind):
    return [int(p) for p in re.findall(r"supervisor: started %s worker \d+ \(pid (\d+)\)" % kind,
                                       d.log_text())]


def test_ring_only_where_needed(run):
    d, port, pg = run
    ring = shm_maps(d.proc.pid)
    assert ring, "the controller maps the ring"
    for kind in ("writer", "merkle", "parser"):
        pids = started(d, kind)
        assert pids, kind
        for pid in pids:
            assert ring <= shm_maps(pid), (kind, pid)
    http = started(d, "http")[-1]
    assert not (ring & shm_maps(http)), "the HTTP server still maps the ring"


def test_sessions_named_by_component(run):
    d, port, pg = run
    # the HTTP server opens its session on the first query
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/tip", timeout=30) as r:
        assert r.status == 200
    deadline = time.monotonic() + 30
    while True:
        names = {r[0] for r in psql(pg, "proctable",
                                     "SELECT application_name FROM pg_stat_activity "
                                     "WHERE datname = 'proctable'")}
        if {"conduitd-parser-0", "conduitd-parser-1", "conduitd-http",
                "conduitd-webhook"} <= names:
            break
        assert time.monotonic() < deadline, names
        time.sleep(0.2)


def test_helper_is_a_row_and_reaped(run):
    d, port, pg = run
    log = d.log_text()
    m = re.search(r"supervisor: started index-ddl 0 \(pid (\d+)\)", log)
    assert m, log[-3000:]
    assert re.search(r"supervisor: index-ddl 0 \(pid %s\) done" % m.group(1), log), log[-3000:]
    assert "ended without a result" not in log
    resident = set(started(d, "writer")[-1:] + started(d, "merkle")[-1:]
                   + started(d, "http")[-4:]  # the HTTP_PROCS servers
                   + started(d, "webhook")[-1:]  # the webhook delivery (issue 16)
                   + started(d, "key-rows")[-1:])  # the trailing step (issue 18)
    resident |= {int(p) for p in re.findall(r"started parser worker \d+ \(pid (\d+)\)", log)}
    kids = children(d.proc.pid)
    assert set(kids) == resident, (kids, resident)
    assert "Z" not in kids.values(), kids
