#!/usr/bin/python3
"""History and UTXO pages of hot keys as the index grows (issue 18).

Run under a throw-away PostgreSQL (tests/pgserver.py exports PGHOST/...):

    /usr/bin/python3 tests/pgserver.py -- /usr/bin/python3 bench/index/bench_history.py \\
        --build build --chain /tmp/cd-hist/chain --checkpoints 1M,3M --out /tmp/cd-hist/out

The chain is a chain file directory (`python3 -m tests.simnode.chainfile DIR
--blocks N --txs-per-block 1500`: 10 % of outputs pay one of 64 hot keys).
For each checkpoint (a tx count) the benchmark

1. indexes the chain up to it with conduitd (bench_growth's catch-up step);
2. if the schema has the derived key rows (sql/014, cd_key_rows_advance),
   runs the trailing step to the tip in batches and reports its rate and
   the PostgreSQL CPU it cost per 1000 tx (the work the daemon's key-rows
   process does in the background);
3. times, over one psql session (\\timing: parse + plan + execute), for
   --keys hot keys each: the first 1000-row page and a middle page (cursor
   at the key's median output) of cd_history and of cd_utxos, with every
   variant present: cd_history / cd_utxos and, if sql/014 kept them,
   cd_history_scan / cd_utxos_scan (the sql/007 definitions). Every page of
   the variants must be identical (checked; a difference stops the run);
4. writes EXPLAIN (ANALYZE, BUFFERS) of each page query for the first key
   to OUT/explain-<checkpoint>.txt.

With sql/016 it also reports the share of derived outputs the step marked
spent (rows a UTXO page below the mark no longer reads).

A benchmark, not a test: nothing here asserts a time. Prints `uptime`.
"""
import argparse
import bisect
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
from bench_catchup import postmaster_pid, pg_cpu, psql  # noqa: E402
from bench_growth import Sim, Timer, catchup, fmt_n, parse_count, pct, uptime  # noqa: E402
from tests.simnode import chainfile  # noqa: E402


def has_fn(db, name):
    return psql(db, "SELECT count(*) FROM pg_proc WHERE proname = '%s';" % name) != "0"


def advance(db, batch):
    """Runs the trailing step to the tip: (blocks, txs, seconds, PG CPU ms/1000 tx)."""
    pm = postmaster_pid()
    c0, t0 = pg_cpu(pm), time.monotonic()
    m0 = int(psql(db, "SELECT height FROM key_rows_mark;"))
    while True:
        n = int(psql(db, "SELECT cd_key_rows_advance(%d);" % batch))
        if n == 0:
            break
    el, cpu = time.monotonic() - t0, pg_cpu(pm) - c0
    m1 = int(psql(db, "SELECT height FROM key_rows_mark;"))
    txs = int(psql(db, "SELECT coalesce(sum(tx_count), 0) FROM blocks WHERE on_best_chain "
                       "AND height > %d AND height <= %d;" % (m0, m1)))
    return m1 - m0, txs, el, cpu * 1e6 / max(txs, 1)


def cursors(db, key):
    """(history cursor, utxo cursor) at the key's median output."""
    row = psql(db, "SELECT height, pos, idx FROM cd_key_outputs_only('script', '\\x%s') "
                   "WHERE height IS NOT NULL ORDER BY height, pos, idx "
                   "OFFSET (SELECT count(*) / 2 FROM cd_key_outputs_only('script', '\\x%s')) "
                   "LIMIT 1;" % (key, key)).split("|")
    return "%s, %s" % (row[0], row[1]), "%s, %s, %s" % (row[0], row[1], row[2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--chain", default="/tmp/cd-hist/chain")
    ap.add_argument("--checkpoints", default="1M,3M")
    ap.add_argument("--keys", type=int, default=8, help="hot keys timed per checkpoint")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each page")
    ap.add_argument("--batch", type=int, default=20, help="blocks per trailing-step call")
    ap.add_argument("--threshold", type=int, default=10, help="catchup_threshold (blocks)")
    ap.add_argument("--daemon-arg", action="append", default=[])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the database (bench_history)")
    ap.add_argument("--out", default="build")
    args = ap.parse_args()
    if not os.environ.get("PGHOST"):
        sys.exit("run under tests/pgserver.py (PGHOST is not set)")
    meta = chainfile.read_meta(args.chain)
    cum = chainfile.cumulative_txs(args.chain)
    print("chain %s: %s" % (args.chain, chainfile.describe(meta)), flush=True)
    db = "bench_history"
    psql("postgres", "DROP DATABASE IF EXISTS %s; CREATE DATABASE %s;" % (db, db))
    datadir = tempfile.mkdtemp(prefix="cd-bench-history-", dir=args.workdir)
    os.makedirs(args.out, exist_ok=True)
    sim = Sim(args.chain)
    txs = 0
    try:
        for c in [parse_count(x) for x in args.checkpoints.split(",")]:
            h = min(bisect.bisect_left(cum, c), meta["blocks"])
            r, txs = catchup(args, sim, db, datadir, h, txs)
            print("checkpoint %s (height %d, %d txs): catch-up %.0f tx/s; %s" % (
                fmt_n(c), h, txs, r["catchup_rate"], uptime()), flush=True)
            psql(db, "ANALYZE;")
            if has_fn(db, "cd_key_rows_advance"):
                nb, nt, el, ms = advance(db, args.batch)
                print("  trailing step: %d blocks, %d txs in %.1f s = %.0f tx/s, PostgreSQL "
                      "%.1f CPU ms/1000 tx" % (nb, nt, el, nt / max(el, 1e-9), ms), flush=True)
                psql(db, "ANALYZE;")
                for rel in ("key_outs", "key_hist"):
                    size = psql(db, "SELECT pg_total_relation_size('%s'), (SELECT count(*) "
                                    "FROM %s);" % (rel, rel)).split("|")
                    print("  %s: %.0f B/tx (table + indexes), %.2f rows/tx" % (
                        rel, int(size[0]) / txs, int(size[1]) / txs), flush=True)
                if psql(db, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'key_outs'::regclass "
                            "AND attname = 'spent_by';") == "1":
                    # sql/016's spent marks: the share of derived outputs a UTXO page no
                    # longer reads, and the row versions the marking left (autovacuum's)
                    sp = psql(db, "SELECT count(*) FILTER (WHERE spent_by IS NOT NULL), "
                                  "count(*), (SELECT n_dead_tup FROM pg_stat_user_tables WHERE "
                                  "relname = 'key_outs'), pg_relation_size('key_outs_unspent_idx') "
                                  "FROM key_outs;").split("|")
                    print("  key_outs spent marks: %s of %s rows (%.0f %%), %s dead row versions; "
                          "key_outs_unspent_idx %.0f B/tx" % (
                              sp[0], sp[1], 100.0 * int(sp[0]) / max(int(sp[1]), 1), sp[2],
                              int(sp[3]) / txs), flush=True)
            hist = [f for f in ("cd_history", "cd_history_scan") if has_fn(db, f)]
            utxo = [f for f in ("cd_utxos", "cd_utxos_scan") if has_fn(db, f)]
            keys = [psql(db, "SELECT encode(sha256('\\x76a914%s88ac'), 'hex');" % k)
                    for k in meta["hot_keys"][:args.keys]]
            t = Timer(db)
            ms = {}
            explain = []
            try:
                for n, k in enumerate(keys):
                    hc, uc = cursors(db, k)
                    rows = psql(db, "SELECT count(*) FROM cd_key_outputs_only('script', '\\x%s');"
                                % k)
                    for fam, fns, cur in (("history", hist, hc), ("utxos", utxo, uc)):
                        for page, extra in (("first", ""), ("middle", ", " + cur)):
                            seen = {}
                            for f in fns:
                                q = "SELECT * FROM %s('script', '\\x%s', 1000%s)" % (f, k, extra)
                                for _ in range(args.repeat):
                                    a, _n = t.run(q + ";")
                                    ms.setdefault((f, page), []).append(a)
                                seen[f] = psql(db, q + ";")
                                if n == 0:
                                    explain.append("-- %s %s page, key %s (%s outputs)\n%s\n" % (
                                        f, page, k, rows, psql(
                                            db, "EXPLAIN (ANALYZE, BUFFERS) " + q + ";")))
                            if len(set(seen.values())) > 1:
                                sys.exit("%s %s page of %s differs between %s" % (
                                    fam, page, k, ", ".join(fns)))
            finally:
                t.close()
            with open(os.path.join(args.out, "explain-%s.txt" % fmt_n(c)), "w") as f:
                f.write("\n".join(explain))
            for (f, page), v in sorted(ms.items()):
                print("  %-18s %-6s page: p50 %8.2f ms  p99 %8.2f ms  (%d runs)" % (
                    f, page, statistics.median(v), pct(v, 99), len(v)), flush=True)
            print("  " + uptime(), flush=True)
    finally:
        sim.stop()
        shutil.rmtree(datadir, ignore_errors=True)
        if not args.keep:
            psql("postgres", "DROP DATABASE IF EXISTS %s;" % db)


if __name__ == "__main__":
    main()
