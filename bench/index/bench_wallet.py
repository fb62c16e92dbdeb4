#!/usr/bin/python3
"""Latency of the wallet queries (sql/007: cd_balance, cd_utxos, cd_history)
for keys with 10, 10,000 and 1,000,000 outputs (issue 14).

Run under a throw-away PostgreSQL (tests/pgserver.py exports PGHOST/...):

    /usr/bin/python3 tests/pgserver.py -- /usr/bin/python3 bench/index/bench_wallet.py \
        --build build [--sizes 10,10000,1000000] [--repeat 5]

The schema is applied by conduit-index-file --migrate-only; the rows are
generated in SQL: for a key of N outputs, N one-output txs paying to its
script hash in blocks of 1,000 txs on the best chain, and every other output
spent by a tx of a later block (so half are UTXOs), plus the secondary
indexes as after catch-up, VACUUM ANALYZE. Each query runs `--repeat` times
inside the server (plpgsql, clock_timestamp; the result rows are counted, so
the whole page is produced); the best time is printed, in ms:
balance, the first 1000-row UTXO page, the first 1000-row history page and
a 1000-row history page from the middle (cursor).
"""
import argparse
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def psql(sql, db):
    return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
                          input=sql.encode(), stdout=subprocess.PIPE, check=True
                          ).stdout.decode().strip()


GEN = """
-- key k{n}: {n} outputs to sha256('k{n}'), block heights from {h0}
INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size, indexed, on_best_chain)
SELECT sha256(('b{n}_' || b)::bytea), '\\x00', {h0} + b, '\\x00', 1000, 1, true, true
FROM generate_series(0, ({n} - 1) / 1000) AS b;
INSERT INTO transactions (block_id, tx_offset, tx_pos, tx_size, tx_hash)
SELECT bl.block_id, 0, i % 1000, 200, sha256(('t{n}_' || i)::bytea)
FROM generate_series(0, {n} - 1) AS i
JOIN blocks bl ON bl.block_hash = sha256(('b{n}_' || (i / 1000))::bytea);
INSERT INTO outputs (block_id, tx_pos, idx, value, script_hash, script)
SELECT t.block_id, t.tx_pos, 0, 1000 + t.tx_pos, sha256('k{n}'::bytea), '\\x76a914'::bytea
FROM transactions t JOIN blocks bl USING (block_id)
WHERE bl.block_hash IN (SELECT sha256(('b{n}_' || b)::bytea)
                        FROM generate_series(0, ({n} - 1) / 1000) AS b);
-- the spends: every other output, by txs of one later block each 1000
INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size, indexed, on_best_chain)
SELECT sha256(('s{n}_' || b)::bytea), '\\x00', {h0} + 5000000 + b, '\\x00', 1000, 1, true, true
FROM generate_series(0, ({n} - 1) / 2000) AS b;
INSERT INTO inputs (block_id, tx_pos, in_idx, prev_idx, prev_hash)
SELECT bl.block_id, (i / 2) % 1000, 0, 0, sha256(('t{n}_' || i)::bytea)
FROM generate_series(0, {n} - 1, 2) AS i
JOIN blocks bl ON bl.block_hash = sha256(('s{n}_' || (i / 2000))::bytea);
INSERT INTO transactions (block_id, tx_offset, tx_pos, tx_size, tx_hash)
SELECT bl.block_id, 0, (i / 2) % 1000, 200, sha256(('x{n}_' || i)::bytea)
FROM generate_series(0, {n} - 1, 2) AS i
JOIN blocks bl ON bl.block_hash = sha256(('s{n}_' || (i / 2000))::bytea);
"""

TIMER = """
CREATE OR REPLACE FUNCTION bench_ms(q text, n integer) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    best float8 := 1e30;
    c bigint;
BEGIN
    FOR i IN 1..n LOOP
        t0 := clock_timestamp();
        EXECUTE 'SELECT count(*) FROM (' || q || ') x' INTO c;
        best := least(best, extract(epoch FROM clock_timestamp() - t0) * 1000);
    END LOOP;
    RETURN best;
END
$$;
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--sizes", default="10,10000,1000000")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    db = "bench_wallet_%d" % os.getpid()
    psql("CREATE DATABASE %s;" % db, os.environ.get("PGDATABASE", "postgres"))
    base = os.environ.get("CD_TEST_PG_CONNINFO", "")
    subprocess.run([os.path.join(a.build, "bench", "index", "conduit-index-file"), "--conninfo",
                    "%s dbname=%s" % (base, db), "--migrate-only"], check=True)
    sizes = [int(x) for x in a.sizes.split(",")]
    for k, n in enumerate(sizes):
        psql(GEN.format(n=n, h0=1 + k * 2000), db)
    psql("VACUUM ANALYZE;", db)
    psql(TIMER, db)
    print("rows/key  balance_ms  utxos_1000_ms  history_1000_ms  history_mid_1000_ms")
    for n in sizes:
        key = "sha256('k%d'::bytea)" % n
        mid = psql("SELECT height, pos FROM cd_history('script', %s, 1, NULL, NULL) LIMIT 1;"
                   % key, db)
        h, pos = mid.split("|")
        # a cursor half-way: the n/2-th row's (height, pos) ~ block n/2000 after the first
        hmid = int(h) + (n // 2) // 1000
        qs = ["SELECT * FROM cd_balance('script', %s)" % key,
              "SELECT * FROM cd_utxos('script', %s, 1000)" % key,
              "SELECT * FROM cd_history('script', %s, 1000)" % key,
              "SELECT * FROM cd_history('script', %s, 1000, %d, 0)" % (key, hmid)]
        ms = [float(psql("SELECT bench_ms($q$%s$q$, %d);" % (q, a.repeat), db)) for q in qs]
        print("%8d  %10.2f  %13.2f  %15.2f  %19.2f" % ((n,) + tuple(ms)), flush=True)
    psql("DROP DATABASE %s;" % db, os.environ.get("PGDATABASE", "postgres"))


if __name__ == "__main__":
    main()
