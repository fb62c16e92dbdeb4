#!/usr/bin/python3
"""The trailing key-rows step of two builds, interleaved on one PostgreSQL (issue 18).

Each build indexes the same chain prefix into its own database (its own
migrations: e.g. the commit before sql/016 and after), then the step
(cd_key_rows_advance) runs in windows of --window blocks, alternating
between the two databases, so both see the same load on this shared
machine. Reports per window and in total the PostgreSQL CPU per 1000 tx
(the whole server's, over the window: the other database is idle then) and
the derived tables' size per tx.

    /usr/bin/python3 tests/pgserver.py -- /usr/bin/python3 bench/index/bench_keyrows_ab.py \\
        --build-a /tmp/base --build-b build --chain /tmp/cd-utxo/chain --txs 300k

A benchmark, not a test: nothing here asserts a time. Prints `uptime`.
"""
import argparse
import bisect
import copy
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
from bench_catchup import postmaster_pid, pg_cpu, psql  # noqa: E402
from bench_growth import Sim, catchup, parse_count, uptime  # noqa: E402
from tests.simnode import chainfile  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-a", required=True)
    ap.add_argument("--build-b", required=True)
    ap.add_argument("--chain", default="/tmp/cd-utxo/chain")
    ap.add_argument("--txs", default="300k", help="chain prefix indexed (txs)")
    ap.add_argument("--window", type=int, default=25, help="blocks per window")
    ap.add_argument("--batch", type=int, default=20, help="blocks per trailing-step call")
    ap.add_argument("--threshold", type=int, default=10, help="catchup_threshold (blocks)")
    ap.add_argument("--daemon-arg", action="append", default=[])
    args = ap.parse_args()
    if not os.environ.get("PGHOST"):
        sys.exit("run under tests/pgserver.py (PGHOST is not set)")
    meta = chainfile.read_meta(args.chain)
    cum = chainfile.cumulative_txs(args.chain)
    h = min(bisect.bisect_left(cum, parse_count(args.txs)), meta["blocks"])
    sim = Sim(args.chain)
    dirs = []
    dbs = (("a", args.build_a), ("b", args.build_b))
    try:
        for name, build in dbs:
            db = "bench_ab_" + name
            psql("postgres", "DROP DATABASE IF EXISTS %s; CREATE DATABASE %s;" % (db, db))
            dirs.append(tempfile.mkdtemp(prefix="cd-bench-ab-"))
            a = copy.copy(args)
            a.build = build
            r, txs = catchup(a, sim, db, dirs[-1], h, 0)
            psql(db, "ANALYZE;")
            print("%s (%s): indexed %d txs to height %d, schema %s" % (
                name, build, txs, h, psql(db, "SELECT max(version) FROM cd_schema_version;")),
                flush=True)
        pm = postmaster_pid()
        tot = {n: [0.0, 0] for n, _ in dbs}
        top = -1
        while top < h:
            top += args.window
            for name, _ in dbs:
                db = "bench_ab_" + name
                m0 = int(psql(db, "SELECT height FROM key_rows_mark;"))
                c0 = pg_cpu(pm)
                while int(psql(db, "SELECT height FROM key_rows_mark;")) < min(top, h):
                    left = min(top, h) - int(psql(db, "SELECT height FROM key_rows_mark;"))
                    if int(psql(db, "SELECT cd_key_rows_advance(%d);"
                                % min(args.batch, left))) == 0:
                        break
                cpu = pg_cpu(pm) - c0
                m1 = int(psql(db, "SELECT height FROM key_rows_mark;"))
                n = int(psql(db, "SELECT coalesce(sum(tx_count), 0) FROM blocks WHERE "
                                 "on_best_chain AND height > %d AND height <= %d;" % (m0, m1)))
                tot[name][0] += cpu
                tot[name][1] += n
                print("  window to %d: %s %.1f PG CPU ms/1000 tx (%d txs)" % (
                    m1, name, cpu * 1e6 / max(n, 1), n), flush=True)
        for name, _ in dbs:
            db = "bench_ab_" + name
            size = int(psql(db, "SELECT pg_total_relation_size('key_outs') + "
                                "pg_total_relation_size('key_hist');"))
            print("%s: %.1f PG CPU ms/1000 tx over %d txs; key_outs + key_hist %.0f B/tx" % (
                name, tot[name][0] * 1e6 / max(tot[name][1], 1), tot[name][1],
                size / max(tot[name][1], 1)), flush=True)
        print(uptime(), flush=True)
    finally:
        sim.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        for name, _ in dbs:
            psql("postgres", "DROP DATABASE IF EXISTS bench_ab_%s;" % name)


if __name__ == "__main__":
    main()
