#!/usr/bin/env python3
"""bench_roll.py - how long cd_partition_roll (sql/017) holds the row tables.

The roll closes the open tip partition of transactions, inputs, pushdata and
outputs: DETACH, ADD CHECK (a scan of the tip, the one cost that grows with
it), ATTACH (proved by the CHECK), CREATE the new tip. It holds the four
tables ACCESS EXCLUSIVE for its whole transaction, so its duration is the
stall it imposes on indexing (the parsers' COPYs wait) and on queries.

For each tip size N this builds, in a fresh database migrated by
conduit-index-file --migrate-only, a tip of N synthetic txs shaped like
the mainnet-like chains of bench_growth (2 inputs, 3 pushdata keys and 2
outputs per tx; random 32-byte hashes; blocks of 1500 txs, their units
registered as the parsers do), with the secondary indexes present (the live
case; in catch-up they are absent and the roll is the same scan), then
times `SELECT cd_partition_roll(1)` --rounds times (a roll each time: the
tip is refilled between rounds) and prints the median.

Run under a throw-away server:
  /usr/bin/python3 tests/pgserver.py -- /usr/bin/python3 bench/index/bench_roll.py \
      --build build --sizes 100000,1000000 --rounds 3
"""
import argparse
import os
import statistics
import subprocess
import time

TXS_PER_BLOCK = 1500


def psql(db, sql):
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
                         input=sql.encode(), stdout=subprocess.PIPE, check=True)
    return out.stdout.decode().strip()


def fill(db, n):
    """n txs in new blocks above every registered one (so in the open tip)."""
    blocks = (n + TXS_PER_BLOCK - 1) // TXS_PER_BLOCK
    psql(db, f"""
    CREATE TEMP TABLE nb AS
    WITH ins AS (
        INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size, n_units, indexed)
        SELECT sha256(random()::text::bytea || g::text::bytea), '\\x00'::bytea, g, '\\x00'::bytea,
               {TXS_PER_BLOCK}, 1, 1, true
        FROM generate_series(1, {blocks}) g RETURNING block_id)
    SELECT block_id, row_number() OVER (ORDER BY block_id) - 1 AS k FROM ins;
    INSERT INTO indexed_units (block_id, unit_no, first_tx, tx_count)
        SELECT block_id, 0, 0, {TXS_PER_BLOCK} FROM nb;
    INSERT INTO transactions
        SELECT b.block_id, p * 250, p, 250, sha256(random()::text::bytea)
        FROM nb b, generate_series(0, {TXS_PER_BLOCK - 1}) p;
    INSERT INTO inputs
        SELECT b.block_id, p, i, 0, sha256(random()::text::bytea)
        FROM nb b, generate_series(0, {TXS_PER_BLOCK - 1}) p, generate_series(0, 1) i;
    INSERT INTO pushdata
        SELECT b.block_id, p, i, 1, sha256(random()::text::bytea)
        FROM nb b, generate_series(0, {TXS_PER_BLOCK - 1}) p, generate_series(0, 2) i;
    INSERT INTO outputs
        SELECT b.block_id, p, i, 1000, sha256(random()::text::bytea), '\\x76a914'::bytea
        FROM nb b, generate_series(0, {TXS_PER_BLOCK - 1}) p, generate_series(0, 1) i;
    """)
    psql(db, "VACUUM ANALYZE transactions, inputs, pushdata, outputs;")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    exe = os.path.join(a.build, "bench", "index", "conduit-index-file")
    print("| tip txs | roll s (median) | rounds | tip heap + index MB | load |")
    print("|---|---|---|---|---|")
    for n in [int(x) for x in a.sizes.split(",")]:
        db = f"bench_roll_{n}"
        subprocess.run(["dropdb", "--if-exists", db], check=True)
        subprocess.run(["createdb", db], check=True)
        subprocess.run([exe, "--conninfo", f"dbname={db}", "--migrate-only"], check=True,
                       stdout=subprocess.DEVNULL)
        secs, mb = [], 0.0
        for _ in range(a.rounds):
            fill(db, n)
            mb = float(psql(db, "SELECT sum(pg_total_relation_size(part::regclass)) / 1e6 "
                                "FROM partitions WHERE hi IS NULL;"))
            t0 = time.monotonic()
            b = psql(db, "SELECT cd_partition_roll(1);")
            secs.append(time.monotonic() - t0)
            assert b, "no roll"
        load = os.getloadavg()[0]
        print(f"| {n} | {statistics.median(secs):.3f} | "
              f"{', '.join('%.3f' % s for s in secs)} | {mb:.0f} | {load:.1f} |", flush=True)
        subprocess.run(["dropdb", db], check=True)


if __name__ == "__main__":
    main()
