#!/usr/bin/python3
"""Key pages at mainnet's block count: `blocks` grown to --blocks rows.

The benchmark chains have a few thousand blocks; mainnet has ~900,000, and
a read that walks `blocks` per call is invisible on the first and dear on
the second (sql/027: every key page summed the whole table). This indexes a
chain file to --height (bench_growth.catchup), adds --blocks synthetic
best-chain rows of one tx each above it (no rows in the four row tables:
only `blocks` grows; ANALYZEd), and times, before and after:

  * the whole history of --keys typical keys through cd_history (the P2PKH
    script of random generator keys, as bench_growth), in one session with
    the HTTP API's settings (jit = off);
  * cd_key_rows_usable() alone with the key-rows mark at -1 (key_rows off)
    and 10 blocks below the top.

    /usr/bin/python3 tests/pgserver.py --pg-shared-buffers 4GB -- \\
        /usr/bin/python3 bench/index/bench_key_look.py --build build \\
        --chain /tmp/cd-growth/chain-flat --height 668 --blocks 900000

A benchmark, not a test: nothing here asserts a time.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_growth import Sim, Timer, catchup, chainfile, psql, typical_keys  # noqa: E402

# --blocks best-chain rows of one tx above height 9999 (the test's
# MANY_BLOCKS, tests/functional/test_key_pages.py, at another size)
GROW = """
INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size, n_units, indexed,
                    on_best_chain)
SELECT sha256(('b' || g)::bytea), sha256(('p' || g)::bytea), 9999 + g,
       sha256(('h' || g)::bytea) || sha256(('i' || g)::bytea) || sha256(('j' || g)::bytea),
       1, 1, 1, true, true
FROM generate_series(1, %d) g;
ANALYZE blocks;
"""


def median_ms(db, stmts):
    t = Timer(db)
    try:
        return statistics.median(t.run(s)[0] for s in stmts)
    finally:
        t.close()


def measure(db, keys, label):
    n_blocks = int(psql(db, "SELECT count(*) FROM blocks;"))
    top = int(psql(db, "SELECT max(height) FROM blocks WHERE on_best_chain;"))
    hist = median_ms(db, ["SELECT count(*) FROM cd_history('script', sha256('\\x%s'), 1000);" % k
                          for k in keys])
    looks = []
    for mark in (-1, top - 10):
        psql(db, "UPDATE key_rows_mark SET height = %d;" % mark)
        looks.append(median_ms(db, ["SELECT cd_key_rows_usable();"] * 20))
    psql(db, "UPDATE key_rows_mark SET height = -1;")
    print("%s: %d blocks: typical key history p50 %.2f ms; cd_key_rows_usable() p50 %.3f ms at "
          "mark -1, %.3f ms at 10 blocks below the top" % (label, n_blocks, hist, *looks), flush=True)
    return n_blocks, hist, looks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--chain", required=True, help="a chain file directory (tests/simnode/chainfile.py)")
    ap.add_argument("--height", type=int, default=668, help="index the chain to this height")
    ap.add_argument("--blocks", type=int, default=900000, help="synthetic block rows to add")
    ap.add_argument("--keys", type=int, default=40)
    ap.add_argument("--threshold", type=int, default=10, help="catchup_threshold (blocks)")
    ap.add_argument("--daemon-arg", action="append", default=[])
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if not os.environ.get("PGHOST"):
        sys.exit("run under tests/pgserver.py (PGHOST is not set)")
    db = "key_look"
    psql("postgres", "DROP DATABASE IF EXISTS %s; CREATE DATABASE %s;" % (db, db))
    datadir = tempfile.mkdtemp(prefix="cd-key-look-", dir=args.workdir)
    sim = Sim(args.chain)
    try:
        _, txs = catchup(args, sim, db, datadir, args.height, 0)
    finally:
        sim.stop()
        shutil.rmtree(datadir, ignore_errors=True)
    print("indexed %d txs to height %d" % (txs, args.height), flush=True)
    keys = typical_keys(chainfile.read_meta(args.chain), args.keys, args.keys)
    psql(db, "ANALYZE;")
    rows = [measure(db, keys, "as indexed")]
    psql(db, GROW % args.blocks)
    rows.append(measure(db, keys, "grown"))
    print("\n| blocks | typical key history p50 ms | look at mark -1 ms | look 10 below the top ms |")
    print("|---|---|---|---|")
    for n, h, (a, b) in rows:
        print("| %d | %.2f | %.3f | %.3f |" % (n, h, a, b))


if __name__ == "__main__":
    main()
