#!/usr/bin/python3
"""Mempool benchmark: transactions/s conduitd accepts into the mempool tables
from a peer relaying a steady stream.

The simulated node (tests/simnode, a separate process so it does not share
the GIL with this script) serves a generated regtest chain; once conduitd has
indexed it, the node is asked to create and announce mempool transactions in
batches (`{"cmd": "mempool", "n": batch}` on its control channel) as fast as
it can. conduitd answers the invs with getdata, parses each tx with the parser
workers' code and writes it with cd_mempool_add (batched, pipeline mode). The
figure is txs in mempool_tx / seconds from the first announcement until the
last one is in the table.

usage: /usr/bin/python3 bench/index/bench_mempool.py [--build build] [--txs 8000]
           [--batch 500]
"""
import argparse
import os
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--txs", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=500)
    a = ap.parse_args()
    pg = PgServer().start()
    node = None
    d = None
    tmp = tempfile.mkdtemp(prefix="bench_mempool.")
    try:
        pg.psql("CREATE DATABASE bench")
        ci = pg.conninfo.replace("dbname=postgres", "") + " dbname=bench"
        blocks = max(50, a.txs // 20)
        # not whitelisted: relay only (conduitd probes `mempool` once on a side
        # connection, is refused, and never asks again), so the figure is the relay path
        node = SimNodeProcess("--regtest", "--generate", str(blocks), "--txs-per-block", "40")
        d = Daemon(a.build, os.path.join(tmp, "d"),
                   ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                    "--parser-workers", "1", "--ring-size", "64M",
                    "--log-level", os.environ.get("BENCH_LOG", "info")]).start()
        d.wait_for_log(r"mempool: index connection ready", timeout=120)
        deadline = time.monotonic() + 600
        while q(pg, "SELECT coalesce(max(height), -1) FROM index_tip") != str(blocks):
            assert time.monotonic() < deadline and d.proc.poll() is None, d.log_text()[-3000:]
            time.sleep(0.2)
        t0 = time.monotonic()
        sent = 0
        while sent < a.txs:
            # sign=False: dummy signatures (the simulator signs ~1.5k tx/s in pure
            # Python; conduitd does not verify scripts, the offered rate must not
            # be the limit)
            r = node.control({"cmd": "mempool", "n": min(a.batch, a.txs - sent), "sign": False})
            if not r.get("txids"):
                break
            sent += len(r["txids"])
        t_gen = time.monotonic() - t0
        while int(q(pg, "SELECT count(*) FROM mempool_tx")) < sent:
            assert time.monotonic() < deadline and d.proc.poll() is None, d.log_text()[-3000:]
            time.sleep(0.05)
        t = time.monotonic() - t0
        rows = q(pg, "SELECT (SELECT count(*) FROM mempool_inputs) || ' inputs, ' || "
                     "(SELECT count(*) FROM mempool_pushdata) || ' pushdata rows'")
        if os.environ.get("BENCH_VERBOSE"):
            print("\n".join(l for l in d.lines if "mempool:" in l))
        print("mempool: %d txs relayed by the node in %.2f s (%.0f tx/s offered)"
              % (sent, t_gen, sent / t_gen if t_gen else 0))
        print("mempool: %d txs accepted into mempool_tx in %.2f s: %.0f tx/s (%s)"
              % (sent, t, sent / t, rows))
    finally:
        if d:
            d.stop()
        if node:
            node.stop()
        pg.stop()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
