#!/usr/bin/python3
"""HTTP API benchmark: requests/s of GET /v1/tx/<txid> (raw, hex, JSON; and
/proof, and a block download) against a running conduitd, from simple Python
clients.

A throw-away PostgreSQL and the simulated node (a separate process) serve a
generated regtest chain; conduitd indexes it with `http_listen =
127.0.0.1:0`. Then C client processes (multiprocessing, one keep-alive
http.client connection each) request random indexed txids for S seconds.
For contrast, the same lookups through `conduit-cli tx --hex` (one process
per lookup, as a shell script would do) are timed too.

The figure is bounded by the server processes and by the Python
clients, which share the 2 cores with it and PostgreSQL, so it moves with
the machine's load. The last column, the server process's CPU time per
request (utime + stime of the HTTP server children from /proc, summed), is what the server
itself spends on a reply (parsing, lookups, formatting, JSON) and moves much
less with the load: compare builds with it.

usage: /usr/bin/python3 bench/http/bench_http.py [--build build] [--seconds 5]
           [--clients 2] [--blocks 200] [--txs-per-block 50]
"""
import argparse
import http.client
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))

from daemon_util import Daemon  # noqa: E402
from pgserver import PgServer  # noqa: E402
from simnode_fixtures import SimNodeProcess  # noqa: E402


def q(pg, sql):
    return pg.psql(sql, db="bench").strip()


def tip(pg):
    try:
        return q(pg, "SELECT coalesce(max(height), -1) FROM index_tip")
    except subprocess.CalledProcessError:  # before conduitd's migrations
        return "-1"


def client(port, paths, seconds, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = nbytes = 0
    rnd = random.Random(os.getpid())
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c.request("GET", rnd.choice(paths))
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"HTTP {r.status}: {body[:200]!r}")
        n += 1
        nbytes += len(body)
    out.put((n, nbytes))


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run_clients(port, paths, seconds, clients):
    out = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=client, args=(port, paths, seconds, out))
          for _ in range(clients)]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    res = [out.get() for _ in ps]
    for p in ps:
        p.join()
    t = time.monotonic() - t0
    n = sum(r[0] for r in res)
    return n / t, sum(r[1] for r in res) / t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=200)
    ap.add_argument("--txs-per-block", type=int, default=50)
    a = ap.parse_args()
    pg = PgServer().start()
    node = d = None
    tmp = tempfile.mkdtemp(prefix="bench_http.")
    try:
        pg.psql("CREATE DATABASE bench")
        ci = pg.conninfo.replace("dbname=postgres", "") + " dbname=bench"
        node = SimNodeProcess("--regtest", "--generate", str(a.blocks), "--txs-per-block",
                              str(a.txs_per_block))
        datadir = os.path.join(tmp, "d")
        d = Daemon(a.build, datadir,
                   ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                    "--parser-workers", "1", "--ring-size", "64M", "--catchup-indexes", "live",
                    "--http-listen", "127.0.0.1:0"]).start()
        port = int(d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        # one server process before issue 11, HTTP_PROCS after; CPU is summed
        serving = r"http: (?:server \d+ )?serving \(pid (\d+)\)"
        d.wait_for_log(serving, timeout=30)
        deadline = time.monotonic() + 600
        while tip(pg) != str(a.blocks):
            assert time.monotonic() < deadline and d.proc.poll() is None, d.log_text()[-3000:]
            time.sleep(0.2)
        txids = q(pg, "SELECT cd_txid_hex(tx_hash) FROM best_transactions "
                      "ORDER BY random() LIMIT 5000").split()
        # warm-up: PostgreSQL's caches, the server's LMDB maps
        run_clients(port, [f"/v1/tx/{t}" for t in txids], 1, a.clients)
        http_pids = [int(p) for p in re.findall(serving, d.log_text())]
        print(f"chain: {a.blocks} blocks, {len(txids)} txids sampled; "
              f"{a.clients} client process(es), {a.seconds:.0f} s each run")
        for name, paths in (
                ("/v1/tx/<txid>?format=raw", [f"/v1/tx/{t}?format=raw" for t in txids]),
                ("/v1/tx/<txid> (hex)", [f"/v1/tx/{t}" for t in txids]),
                ("/v1/tx/<txid>?format=json", [f"/v1/tx/{t}?format=json" for t in txids]),
                ("/v1/tx/<txid>/proof", [f"/v1/tx/{t}/proof" for t in txids]),
                ("/v1/tx/<txid>/bump", [f"/v1/tx/{t}/bump" for t in txids]),
                ("/v1/tx/<txid>/beef", [f"/v1/tx/{t}/beef" for t in txids]),
                ("/woc/.../block/<h>/header",
                 [f"/woc/v1/bsv/regtest/block/{h}/header" for h in range(1, a.blocks + 1)]),
                ("/v1/tip", ["/v1/tip"]),
                ("/v1/block/<height>", [f"/v1/block/{h}" for h in range(1, a.blocks + 1)])):
            c0 = sum(cpu_ticks(p) for p in http_pids)
            t0 = time.monotonic()
            rps, bps = run_clients(port, paths, a.seconds, a.clients)
            n = rps * (time.monotonic() - t0)
            cpu = sum(cpu_ticks(p) for p in http_pids) - c0
            us = cpu / os.sysconf("SC_CLK_TCK") * 1e6 / max(n, 1)
            print(f"{name:28s} {rps:8.0f} req/s  {bps / 1e6:7.1f} MB/s  {us:6.1f} us server CPU/req")
        cli = os.path.join(a.build, "src", "daemon", "conduit-cli")
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < a.seconds:
            subprocess.run([cli, "tx", random.choice(txids), "--hex", "--regtest", "--datadir",
                            datadir, "--pg-conninfo", ci], check=True, stdout=subprocess.DEVNULL)
            n += 1
        print(f"{'conduit-cli tx --hex':28s} {n / (time.monotonic() - t0):8.0f} lookups/s "
              "(one process each)")
    finally:
        if d:
            d.stop()
        if node:
            node.stop()
        pg.stop()


if __name__ == "__main__":
    main()
