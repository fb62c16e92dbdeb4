#!/usr/bin/python3
"""ConduitDB notification benchmark (issue 16): registrations and /ws delivery.

A throw-away PostgreSQL and the simulated node (separate process) serve a generated regtest
chain; conduitd indexes it with `http_listen = 127.0.0.1:0`. Then:
  - every unspent output of the chain is registered through POST
    /api/v1/output-spend/notifications (10,000 a request, the limit) and as many keys through
    POST /api/v1/transaction/filter: outpoints/s and keys/s;
  - a websocket client (standard library, ?notifications=all) connects, the node mines
    --mine blocks of --txs txs spending those outputs; every spend of a registered outpoint
    must arrive once: spends/s from the first to the last frame, the delay from the index tip
    reaching the last block to the last frame, and the HTTP servers' CPU per notice.
Figures move with the machine's load (2 shared cores).

usage: /usr/bin/python3 bench/http/bench_cdb_notify.py [--build build] [--blocks 100]
           [--txs-per-block 50] [--mine 10] [--txs 200]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))

from daemon_util import Daemon  # noqa: E402
from pgserver import PgServer  # noqa: E402
from simnode_fixtures import SimNodeProcess  # noqa: E402
from test_conduitdb_notify import Collector  # noqa: E402
from ws_client import WS  # noqa: E402


def q(pg, sql):
    return pg.psql(sql, db="bench").strip()


def tip(pg):
    try:
        return int(q(pg, "SELECT coalesce(max(height), -1) FROM index_tip"))
    except (subprocess.CalledProcessError, ValueError):
        return -1


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(port, path, body, ctype="application/json"):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                               headers={"Content-Type": ctype})
    with urllib.request.urlopen(r, timeout=300) as resp:
        return resp.read()


def wait_tip(pg, d, h):
    deadline = time.monotonic() + 900
    while tip(pg) < h:
        assert time.monotonic() < deadline and d.proc.poll() is None, d.log_text()[-3000:]
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--blocks", type=int, default=100)
    ap.add_argument("--txs-per-block", type=int, default=50)
    ap.add_argument("--mine", type=int, default=10)
    ap.add_argument("--txs", type=int, default=200)
    a = ap.parse_args()
    pg = PgServer().start()
    node = d = None
    tmp = tempfile.mkdtemp(prefix="bench_cdbn.")
    try:
        pg.psql("CREATE DATABASE bench")
        ci = pg.conninfo.replace("dbname=postgres", "") + " dbname=bench"
        node = SimNodeProcess("--regtest", "--generate", str(a.blocks), "--txs-per-block",
                              str(a.txs_per_block))
        d = Daemon(a.build, os.path.join(tmp, "d"),
                   ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                    "--parser-workers", "1", "--ring-size", "64M", "--catchup-indexes", "live",
                    "--http-listen", "127.0.0.1:0"]).start()
        port = int(d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        wait_tip(pg, d, a.blocks)
        pids = [int(p) for p in re.findall(r"http: server \d+ serving \(pid (\d+)\)",
                                           d.log_text())[-4:]]
        # the unspent outputs with a key (P2PKH, P2PK...): those the mined txs spend
        ops = [r.split("|") for r in q(
            pg, "SELECT DISTINCT cd_txid_hex(p.tx_hash) || '|' || p.idx FROM best_pushdata p "
                "WHERE p.flags = 1 AND NOT EXISTS (SELECT 1 FROM inputs i WHERE "
                "i.prev_hash = p.tx_hash AND i.prev_idx = p.idx)").split()]
        t0 = time.monotonic()
        for i in range(0, len(ops), 10000):
            post(port, "/api/v1/output-spend/notifications",
                 json.dumps([[t, int(n)] for t, n in ops[i:i + 10000]]).encode())
        t = time.monotonic() - t0
        print(f"registered {len(ops)} outpoints in {t:.2f} s = {len(ops) / t:,.0f} outpoints/s")
        keys = q(pg, "SELECT DISTINCT encode(push_hash, 'hex') FROM pushdata WHERE flags = 1 "
                     "LIMIT %d" % max(len(ops), 1)).split()
        t0 = time.monotonic()
        for i in range(0, len(keys), 10000):
            post(port, "/api/v1/transaction/filter?account_id=1&date_created=%d"
                 % int(time.time()), json.dumps([[k, 3600] for k in keys[i:i + 10000]]).encode())
        t = time.monotonic() - t0
        print(f"registered {len(keys)} tip-filter keys in {t:.2f} s = {len(keys) / t:,.0f} keys/s")
        ws = Collector(WS(port, "/ws?notifications=all"))
        c0 = sum(cpu_s(p) for p in pids)
        first = [None]
        mine_t0 = time.monotonic()
        node.control({"cmd": "mine", "n": a.mine, "txs_per_block": a.txs})
        wait_tip(pg, d, a.blocks + a.mine)
        tip_t = time.monotonic()
        want = int(q(pg, "SELECT count(*) FROM best_inputs i JOIN cdb_spend_watches w "
                         "USING (prev_hash, prev_idx) WHERE i.height > %d" % a.blocks))
        want_m = int(q(pg, "SELECT count(*) FROM best_pushdata p JOIN cdb_tip_filters f "
                           "USING (push_hash) WHERE p.height > %d" % a.blocks))

        def done(c):
            if c.spends and first[0] is None:
                first[0] = time.monotonic()
            return len(c.spends) >= want and sum(
                len(m["matches"]) for t in c.texts for m in t.get("entries", [])) >= want_m
        ws.pump(done, timeout=900)
        last = time.monotonic()
        c = sum(cpu_s(p) for p in pids) - c0
        n = len(ws.spends) + want_m
        assert len(set(ws.spends)) == len(ws.spends) == want, (len(ws.spends), want)
        print(f"mined {a.mine} blocks x {a.txs} txs: {want} spends and {want_m} key matches "
              f"delivered; first frame {first[0] - mine_t0:.2f} s after the mine command, "
              f"last {last - tip_t:+.2f} s after the index tip reached the last block; "
              f"{len(ws.spends) / max(last - first[0], 1e-3):,.0f} spends/s; "
              f"HTTP servers' CPU {c * 1e6 / max(n, 1):.1f} us/notice")
        ws.ws.close()
    finally:
        if d:
            d.stop()
        if node:
            node.stop()
        pg.stop()


if __name__ == "__main__":
    main()
