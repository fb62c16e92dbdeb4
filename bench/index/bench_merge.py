#!/usr/bin/env python3
"""bench_merge.py - what a merge of closed partitions costs (sql/019).

A merge has two phases: the copy (cd_partition_merge_prepare, one
REPEATABLE READ transaction, then ANALYZE of the copies: INSERT ... SELECT of the sources into staging
tables, then their primary key / BRIN and secondary indexes), which holds
no lock a writer waits for, so its time is background work; and the swap
(cd_partition_merge_swap: DETACH, ATTACH proved by a CHECK, DROP, RENAME),
which holds the four row tables ACCESS EXCLUSIVE for its whole transaction,
so its time is the stall it imposes on indexing and queries.

For each size N this builds, in a fresh database migrated by
conduit-index-file --migrate-only, `--fan-in` closed partitions of N
synthetic txs each (bench_roll.fill: mainnet-like shape, 2 inputs, 3
pushdata keys and 2 outputs per tx, secondary indexes present), then times
the copy and the swap of their merge, --rounds times (the merged partition
are built afresh in a new database each round), and prints the medians.

Run under a throw-away server:
  /usr/bin/python3 tests/pgserver.py -- /usr/bin/python3 bench/index/bench_merge.py \
      --build build --sizes 100000,500000 --fan-in 2 --rounds 3
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_roll import fill, psql  # noqa: E402


def one_round(exe, db, n, fan_in):
    """Returns (copy s, swap s, merged MB, txs merged, drop s) of one merge of
    fan_in partitions of n txs."""
    subprocess.run(["dropdb", "--if-exists", db], check=True, stderr=subprocess.DEVNULL)
    subprocess.run(["createdb", db], check=True)
    subprocess.run([exe, "--conninfo", f"dbname={db}", "--migrate-only"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(fan_in):
        fill(db, n)
        assert psql(db, "SELECT cd_partition_roll(1);"), "no roll"
    # the migration's _p0 was the tip for the first fill: fan_in closed
    # partitions of n txs each, all of level 0 (the candidate)
    t0 = time.monotonic()
    lvl = psql(db, "BEGIN ISOLATION LEVEL REPEATABLE READ; "
                   f"SELECT cd_partition_merge_prepare({fan_in}); COMMIT;")
    # as the daemon does after the copy (cd_pg_partition_merge_prepare)
    psql(db, "ANALYZE transactions_merging, inputs_merging, pushdata_merging, outputs_merging;")
    copy_s = time.monotonic() - t0
    assert lvl == "0", lvl
    txs = int(psql(db, "SELECT count(*) FROM transactions_merging;"))
    # the swap's own time, as the server saw it (psql's \timing: without
    # the client's start-up), then the drop of the sources after its commit
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
                         input=b"\\timing on\nSELECT cd_partition_merge_swap();\n",
                         stdout=subprocess.PIPE, check=True).stdout.decode().split("\n")
    assert out[0] == "merged", out
    swap_s = float(out[1].split()[1]) / 1000.0  # "Time: 12.345 ms"
    t0 = time.monotonic()
    psql(db, "SELECT cd_partition_merge_drop_old();")
    drop_s = time.monotonic() - t0
    mb = float(psql(db, "SELECT sum(pg_total_relation_size(part::regclass)) / 1e6 "
                        "FROM partitions WHERE level = 1;"))
    subprocess.run(["dropdb", db], check=True)
    return copy_s, swap_s, mb, txs, drop_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--sizes", default="100000,500000")
    ap.add_argument("--fan-in", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    exe = os.path.join(a.build, "bench", "index", "conduit-index-file")
    print("| txs merged | copy s (median) | swap ms (median) | swap ms, rounds | drop after s | "
          "merged heap + index MB | load |")
    print("|---|---|---|---|---|---|---|")
    for n in [int(x) for x in a.sizes.split(",")]:
        res = [one_round(exe, f"bench_merge_{n}", n, a.fan_in) for _ in range(a.rounds)]
        copy = statistics.median(r[0] for r in res)
        swap = statistics.median(r[1] for r in res)
        load = os.getloadavg()[0]
        drop = statistics.median(r[4] for r in res)
        print(f"| {res[0][3]} | {copy:.2f} | {swap * 1000:.1f} | "
              f"{', '.join('%.1f' % (r[1] * 1000) for r in res)} | {drop:.2f} | "
              f"{res[0][2]:.0f} | {load:.1f} |", flush=True)


if __name__ == "__main__":
    main()
