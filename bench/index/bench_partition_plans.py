#!/usr/bin/python3
"""Plans of the two point lookups over N range partitions (issue 18).

A synthetic companion of bench_partition.py: no conduitd, no chain; tables
shaped like sql/001's `blocks`, `transactions` and `inputs` (1,000 blocks of
200 txs, one input per tx), `transactions` and `inputs` range-partitioned on
block_id into N equal ranges with sql/013's hash indexes, and the lookups of
docs/QUERIES.md (tx by id through best_transactions, spender of an outpoint
through best_inputs) in the forms that decide their plan:

  view      best_inputs as sql/001 defines it (a join on (block_id, tx_pos))
  lateral   the same rows, the spending tx found by a LATERAL subquery the
            planner may not flatten (OFFSET 0): a nested loop whose inner
            Append is pruned at run time to the one partition of block_id

each as a custom plan (plan_cache_mode = force_custom_plan: planned per
call, as a one-off query is) and as a prepared generic plan, with JIT on
(PostgreSQL's default) and off. Prints the median of --runs executions per
case, in ms, as psql's \\timing sees them in one warm session.

    /usr/bin/python3 tests/pgserver.py -- /usr/bin/python3 bench/index/bench_partition_plans.py \\
        --partitions 1,10,50,200

A benchmark, not a test: nothing here asserts a time.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_catchup import pg_bin, psql  # noqa: E402

BLOCKS, TXS = 1000, 200


def setup(db, n):
    s = ["DROP TABLE IF EXISTS blocks, transactions, inputs CASCADE",
         "CREATE TABLE blocks (block_id bigint PRIMARY KEY, block_hash bytea, height int, "
         "on_best_chain bool)",
         "INSERT INTO blocks SELECT g, sha256(g::text::bytea), g, true "
         "FROM generate_series(1, %d) g" % BLOCKS]
    part = " PARTITION BY RANGE (block_id)" if n > 1 else ""
    s += ["CREATE TABLE transactions (block_id bigint NOT NULL, tx_offset bigint NOT NULL, "
          "tx_pos int NOT NULL, tx_size int NOT NULL, tx_hash bytea NOT NULL, "
          "PRIMARY KEY (block_id, tx_pos))" + part,
          "CREATE TABLE inputs (block_id bigint NOT NULL, tx_pos int NOT NULL, "
          "in_idx int NOT NULL, prev_idx int NOT NULL, prev_hash bytea NOT NULL)" + part]
    if n > 1:
        step = BLOCKS / n
        for t in ("transactions", "inputs"):
            for i in range(n):
                a = "MINVALUE" if i == 0 else str(1 + int(round(i * step)))
                b = "MAXVALUE" if i == n - 1 else str(1 + int(round((i + 1) * step)))
                s.append("CREATE TABLE %s_%d PARTITION OF %s FOR VALUES FROM (%s) TO (%s)"
                         % (t, i, t, a, b))
    # txid of (block b, pos p) = sha256('b*1000+p'); each tx spends output 0
    # of the tx whose id is sha256('b*1000+p+7')
    s += ["INSERT INTO transactions SELECT b, p * 100, p, 100, sha256((b * 1000 + p)::text::bytea) "
          "FROM generate_series(1, %d) b, generate_series(0, %d) p" % (BLOCKS, TXS - 1),
          "INSERT INTO inputs SELECT b, p, 0, 0, sha256((b * 1000 + p + 7)::text::bytea) "
          "FROM generate_series(1, %d) b, generate_series(1, %d) p" % (BLOCKS, TXS - 1),
          "CREATE INDEX transactions_hash_idx ON transactions USING hash (tx_hash)",
          "CREATE INDEX inputs_outpoint_idx ON inputs USING hash (prev_hash)",
          "ANALYZE",
          # sql/001's views
          "CREATE VIEW best_transactions AS SELECT t.tx_hash, b.block_hash, b.height, t.tx_pos, "
          "t.tx_offset, t.tx_size, t.block_id FROM transactions t JOIN blocks b "
          "ON b.block_id = t.block_id WHERE b.on_best_chain",
          "CREATE VIEW best_inputs AS SELECT i.prev_hash, i.prev_idx, t.tx_hash AS spend_tx_hash, "
          "i.in_idx, b.height, b.block_hash, i.block_id, i.tx_pos FROM inputs i "
          "JOIN blocks b ON b.block_id = i.block_id "
          "JOIN transactions t ON t.block_id = i.block_id AND t.tx_pos = i.tx_pos "
          "WHERE b.on_best_chain",
          # the same rows (one tx per (block_id, tx_pos): the primary key)
          "CREATE VIEW best_inputs_lateral AS SELECT i.prev_hash, i.prev_idx, "
          "t.tx_hash AS spend_tx_hash, i.in_idx, b.height, b.block_hash, i.block_id, i.tx_pos "
          "FROM inputs i JOIN blocks b ON b.block_id = i.block_id "
          "CROSS JOIN LATERAL (SELECT x.tx_hash FROM transactions x WHERE x.block_id = i.block_id "
          "AND x.tx_pos = i.tx_pos OFFSET 0) t WHERE b.on_best_chain"]
    psql(db, ";\n".join(s) + ";")


CASES = {
    "tx by id": ("SELECT height, tx_pos, tx_offset, tx_size FROM best_transactions "
                 "WHERE tx_hash = $1", "bytea", "sha256((%d * 1000 + 5)::text::bytea)"),
    "spender (view)": ("SELECT spend_tx_hash, in_idx, height FROM best_inputs "
                       "WHERE prev_hash = $1 AND prev_idx = 0", "bytea",
                       "sha256((%d * 1000 + 12)::text::bytea)"),
    "spender (lateral)": ("SELECT spend_tx_hash, in_idx, height FROM best_inputs_lateral "
                          "WHERE prev_hash = $1 AND prev_idx = 0", "bytea",
                          "sha256((%d * 1000 + 12)::text::bytea)"),
}


def timed(db, runs):
    """{(case, plan mode, jit): median ms}; every lookup must find its row."""
    lines = ["\\timing on"]
    keys = []
    for jit in ("on", "off"):
        for mode in ("force_custom_plan", "force_generic_plan"):
            for case, (sql, typ, arg) in CASES.items():
                name = "q%d" % len(keys)
                keys.append((case, "generic" if "generic" in mode else "custom", jit))
                lines += ["SET jit = %s;" % jit, "SET plan_cache_mode = %s;" % mode,
                          "PREPARE %s(%s) AS %s;" % (name, typ, sql),
                          "\\echo @@%d" % (len(keys) - 1)]
                for r in range(runs):
                    lines.append("EXECUTE %s(%s);" % (name, arg % (1 + (r * 37) % (BLOCKS - 1))))
                lines.append("\\echo @@end")
    p = subprocess.run([pg_bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
                       input="\n".join(lines) + "\n", text=True, stdout=subprocess.PIPE,
                       check=True)
    out, cur, rows = {}, None, {}
    for line in p.stdout.splitlines():
        if line == "@@end":
            cur = None
            continue
        m = re.match(r"@@(\d+)$", line)
        if m:
            cur = keys[int(m.group(1))]
            out[cur], rows[cur] = [], 0
            continue
        m = re.match(r"Time: ([0-9.]+) ms", line)
        if m and cur is not None:
            out[cur].append(float(m.group(1)))
        elif line and cur is not None:
            rows[cur] += 1
    for k, v in rows.items():
        if v != runs:
            sys.exit("%s: %d rows for %d lookups" % (k, v, runs))
    return {k: statistics.median(v[1:]) for k, v in out.items()}  # the first: PREPARE's cache


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--partitions", default="1,10,50,200")
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    if not os.environ.get("PGHOST"):
        sys.exit("run under tests/pgserver.py (PGHOST is not set)")
    db = "bench_partition_plans"
    psql("postgres", "DROP DATABASE IF EXISTS %s; CREATE DATABASE %s;" % (db, db))
    counts = [int(x) for x in args.partitions.split(",")]
    res = {}
    for n in counts:
        setup(db, n)
        res[n] = timed(db, args.runs)
        print("%d partition(s): %s" % (n, "; ".join(
            "%s %s jit %s %.2f" % (k + (v,)) for k, v in res[n].items())), flush=True)
    keys = list(res[counts[0]])
    print("\n| lookup | plan | jit | " + " | ".join("%d" % n for n in counts) + " |")
    print("|---|---|---|" + "---|" * len(counts))
    for k in keys:
        print("| %s | %s | %s | " % k + " | ".join("%.2f" % res[n][k] for n in counts) + " |")


if __name__ == "__main__":
    main()
