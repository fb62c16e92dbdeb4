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

The lateral form is sql/018's `best_inputs` (its text read from the
migration file), the view form sql/001's.

With --chain (a chain file directory, `python3 -m tests.simnode.chainfile`)
it measures the real index instead: conduitd (--build) indexes the chain
(bench_growth's catch-up step), then for each partition count N a copy of
that database has `transactions`, `inputs` and `pushdata` converted into N
range partitions on block_id (rows, indexes, primary keys kept; the views
re-created over them), and the HTTP API's own statements (tx by id, spender
of an outpoint, history page: their SQL read from src/query/cd_lookup.c)
are timed on --keys random keys per round in one session each, prepared
once as the API prepares them, interleaving two sessions per round:

  before    sql/001's best_inputs / best_pushdata, jit at the server's
            default (on): the API before sql/018 and HTTP_PG_SETUP
  after     sql/018's views, jit off: the API now

Prints p50 / p99 ms per (N, statement, variant) (psql's \\timing: the
round trip over the unix socket, parse of EXECUTE, plan if custom, run).

    /usr/bin/python3 tests/pgserver.py -- /usr/bin/python3 bench/index/bench_partition_plans.py \\
        --chain /tmp/cd-qplan/chain --partitions 1,10,50,200 --keys 200 --rounds 3

A benchmark, not a test: nothing here asserts a time.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
from bench_catchup import pg_bin, psql  # noqa: E402
from tests.partsplit import split_sql  # noqa: E402


def migration_view(fname, view):
    """The CREATE [OR REPLACE] VIEW statement of `view` in sql/`fname`."""
    text = open(os.path.join(ROOT, "sql", fname), encoding="utf-8").read()
    m = re.search(r"CREATE (?:OR REPLACE )?VIEW %s AS\n(.*?);\n" % view, text, re.S)
    if not m:
        sys.exit("sql/%s defines no view %s" % (fname, view))
    return "CREATE OR REPLACE VIEW %s AS %s" % (view, m.group(1))


def c_statement(name):
    """The SQL of src/query/cd_lookup.c's statement `name`."""
    src = open(os.path.join(ROOT, "src", "query", "cd_lookup.c"), encoding="utf-8").read()
    m = re.search(r'\{\s*"%s",\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\}' % re.escape(name), src)
    if not m:
        sys.exit("cd_lookup.c has no statement %s" % name)
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))

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
          # the same rows (one tx per (block_id, tx_pos): the primary key):
          # sql/018's definition
          migration_view("018_lookup_plans.sql", "best_inputs").replace(
              "VIEW best_inputs AS", "VIEW best_inputs_lateral AS")]
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


# ---- the real index (--chain) ----

PART_TABLES = ("transactions", "inputs", "pushdata")
API = ["cd_lookup_tx", "cd_lookup_spender", "cd_lookup_history"]
VARIANTS = {
    "before": ([migration_view("001_initial.sql", v) for v in ("best_inputs", "best_pushdata")],
               "SET jit = DEFAULT"),
    "after": ([migration_view("018_lookup_plans.sql", v) for v in ("best_inputs", "best_pushdata")],
              "SET jit = off"),
}


def partition(db, n):
    """Converts PART_TABLES of db into n range partitions on block_id (equal
    block_id ranges up to the highest; tests/partsplit.py)."""
    hi = int(psql(db, "SELECT max(block_id) FROM blocks;")) + 1
    psql(db, split_sql(lambda sql: psql(db, sql), PART_TABLES,
                       [1 + k * hi // n for k in range(1, n)]))


def api_keys(db, n):
    """n random keys of each statement: its EXECUTE arguments (psql text)."""
    def col(sql):
        return psql(db, sql).split()
    txids = col("SELECT encode(tx_hash, 'hex') FROM transactions TABLESAMPLE SYSTEM (5) "
                "ORDER BY random() LIMIT %d;" % n)
    outs = [x.split("|") for x in col(
        "SELECT encode(prev_hash, 'hex') || '|' || prev_idx FROM inputs TABLESAMPLE SYSTEM (5) "
        "ORDER BY random() LIMIT %d;" % n)]
    pushes = col("SELECT encode(push_hash, 'hex') FROM pushdata TABLESAMPLE SYSTEM (5) "
                 "ORDER BY random() LIMIT %d;" % n)
    return {
        "cd_lookup_tx": ["'\\x%s'" % h for h in txids],
        "cd_lookup_spender": ["'\\x%s', '%s'" % (h, i) for h, i in outs],
        "cd_lookup_history": ["'\\x%s', '-1', '-1', '-1', '-1', '1000'" % h for h in pushes],
    }


def api_round(db, variant, keys):
    """One session of `variant`: the API's statements prepared, each run on
    its keys. Returns {statement: [ms]}; every tx and spender lookup must
    find its row (checked)."""
    views, jit = VARIANTS[variant]
    psql(db, ";\n".join(views) + ";")
    lines = [jit + ";", "\\timing on"]
    for q in API:
        lines += ["PREPARE %s AS %s;" % (q, c_statement(q)), "\\echo @@%s" % q]
        lines += ["EXECUTE %s(%s);" % (q, a) for a in keys[q]]
        lines.append("\\echo @@end")
    p = subprocess.run([pg_bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
                       input="\n".join(lines) + "\n", text=True, stdout=subprocess.PIPE,
                       check=True)
    out, rows, cur = {}, {}, None
    for line in p.stdout.splitlines():
        if line == "@@end":
            cur = None
        elif line.startswith("@@"):
            cur = line[2:]
            out[cur], rows[cur] = [], 0
        elif cur:
            m = re.match(r"Time: ([0-9.]+) ms", line)
            if m:
                out[cur].append(float(m.group(1)))
            elif line:
                rows[cur] += 1
    for q in ("cd_lookup_tx", "cd_lookup_spender"):
        if rows[q] != len(keys[q]):
            sys.exit("%s %s: %d rows for %d keys" % (variant, q, rows[q], len(keys[q])))
    return out


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def real_main(args, counts):
    from bench_growth import Sim, catchup, uptime  # noqa: E402
    from tests.simnode import chainfile  # noqa: E402
    import tempfile
    meta = chainfile.read_meta(args.chain)
    base = "bench_plans_real"
    psql("postgres", "DROP DATABASE IF EXISTS %s; CREATE DATABASE %s;" % (base, base))
    datadir = tempfile.mkdtemp(prefix="cd-bench-plans-")
    sim = Sim(args.chain)
    try:
        args.threshold, args.daemon_arg = 10, []
        _, txs = catchup(args, sim, base, datadir, meta["blocks"], 0)
    finally:
        sim.stop()
    psql(base, "ANALYZE;")
    print("indexed %d txs (%d blocks); %s" % (txs, meta["blocks"], uptime()), flush=True)
    res = {}
    for n in counts:
        db = "bench_plans_p%d" % n
        psql("postgres", "DROP DATABASE IF EXISTS %s; CREATE DATABASE %s TEMPLATE %s;"
             % (db, db, base))
        if n > 1:
            partition(db, n)
        got = {(q, v): [] for q in API for v in VARIANTS}
        for r in range(args.rounds):
            keys = api_keys(db, args.keys)
            order = list(VARIANTS) if r % 2 == 0 else list(reversed(list(VARIANTS)))
            for v in order:
                for q, ms in api_round(db, v, keys).items():
                    got[(q, v)] += ms
        res[n] = got
        print("%d partition(s): %s; %s" % (n, "; ".join(
            "%s %s %.2f / %.2f" % (q, v, pct(ms, 50), pct(ms, 99))
            for (q, v), ms in got.items()), uptime()), flush=True)
        psql("postgres", "DROP DATABASE %s;" % db)
    print("\n| statement | variant | " + " | ".join("%d" % n for n in counts) + " partitions |")
    print("|---|---|" + "---|" * len(counts))
    for q in API:
        for v in VARIANTS:
            print("| %s | %s | " % (q, v) + " | ".join(
                "%.2f / %.2f" % (pct(res[n][(q, v)], 50), pct(res[n][(q, v)], 99))
                for n in counts) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--partitions", default="1,10,50,200")
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--chain", help="measure the real index of this chain file instead")
    ap.add_argument("--build", default="build", help="with --chain: conduitd's build")
    ap.add_argument("--keys", type=int, default=200, help="with --chain: keys per round")
    ap.add_argument("--rounds", type=int, default=3, help="with --chain: rounds (interleaved)")
    args = ap.parse_args()
    if not os.environ.get("PGHOST"):
        sys.exit("run under tests/pgserver.py (PGHOST is not set)")
    if args.chain:
        real_main(args, [int(x) for x in args.partitions.split(",")])
        return
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
