"""Point lookups keep their plan when the tables are range-partitioned (issue 18).

With `transactions`, `inputs` and `pushdata` range-partitioned on block_id,
a lookup by hash cannot be pruned: it probes every partition. sql/001's
`best_inputs` and `best_pushdata` joined `transactions` on (block_id,
tx_pos); costing a probe of every partition per outer row, the planner
switched that join to a hash join over a sequential scan of every
`transactions` partition at ~50 partitions (docs/PERFORMANCE.md "The plans
decide it"). sql/018 finds the tx in a LATERAL subquery the planner does not
flatten, pruned at run time to the one partition of the row's block_id.

This test builds that layout itself: the real schema (every migration,
through conduit-index-file --migrate-only; sql/017 makes the tables
partitioned, one partition each), ~60k synthetic txs in 600 blocks, then
`transactions`, `inputs` and `pushdata` converted into 60 range partitions
of 10 blocks (the daemon's roll would need 60 rolls of a growing index to
get there) with the same indexes, each partition's secondary indexes
becoming the new partitions' own, and the views re-created over them. It then asks
PostgreSQL for the plans (EXPLAIN (FORMAT JSON)) of:

  - the HTTP API's own statements, their SQL read from src/query/cd_lookup.c
    (prepared without parameter types, as PQprepare does), each as a custom
    and as a generic plan, under the API session's settings (jit off);
  - the documented queries of docs/QUERIES.md that read the views.

and asserts that no plan has a sequential scan of any partition of the
three tables. With sql/001's views the spender lookups fail here (Hash Join
over `Seq Scan on transactions_pNN`).

No timing is asserted: the plan is the property.
"""

import json
import os
import re
import subprocess

import pytest

from tests.partsplit import split_sql

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LOOKUP_C = os.path.join(ROOT, "src", "query", "cd_lookup.c")
CDBQ_C = os.path.join(ROOT, "src", "query", "cd_cdbq.c")

TABLES = ("transactions", "inputs", "pushdata")
BLOCKS, TXS, PARTS = 600, 100, 60


def c_statement(name):
    """The SQL of cd_lookup.c's statement `name` (adjacent C literals joined)."""
    src = open(LOOKUP_C, encoding="utf-8").read()
    m = re.search(r'\{\s*"%s",\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\}' % re.escape(name), src)
    assert m, "%s has no statement %s" % (LOOKUP_C, name)
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))).replace('\\"', '"')


def c_array(path, name):
    """The SQL of the C string `static const char name[] = "..." "...";`."""
    src = open(path, encoding="utf-8").read()
    m = re.search(r'\b%s\[\] =\s*((?:"(?:[^"\\]|\\.)*"\s*)+);' % re.escape(name), src)
    assert m, "%s has no string %s" % (path, name)
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))).replace('\\"', '"')


def psql(pg, db, sql):
    args = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-d", db]
    p = subprocess.run(args, input=sql.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise AssertionError("psql failed: %s\n%s" % (p.stderr.decode(), sql))
    return p.stdout.decode()


def q1(pg, db, sql):
    return psql(pg, db, sql).strip()


def partition_sql(pg, db):
    """Converts TABLES into PARTS range partitions of BLOCKS // PARTS blocks
    each (tests/partsplit.py)."""
    step = BLOCKS // PARTS
    return split_sql(lambda sql: psql(pg, db, sql), TABLES,
                     [1 + i * step for i in range(1, PARTS)])


def synthetic_rows_sql(blocks, txs, first=1):
    """SQL loading `blocks` blocks of `txs` synthetic txs shaped like the
    index's rows, block_ids from `first` (see part_db; also
    tests/functional/test_block_reads.py, test_partition_fence.py)."""
    return """
        SET session_replication_role = replica;
        INSERT INTO blocks (block_id, block_hash, prev_hash, height, header, tx_count, size,
                            n_units, indexed, on_best_chain)
            SELECT g, sha256(('b' || g)::bytea), sha256(('b' || g - 1)::bytea), g - 1,
                   decode(repeat('00', 80), 'hex'), %(txs)d, 100 * %(txs)d, 1, true, true
            FROM generate_series(%(first)d, %(last)d) g;
        INSERT INTO transactions (block_id, tx_offset, tx_pos, tx_size, tx_hash)
            SELECT b, 81 + p * 100, p, 100, sha256((b * 1000 + p)::text::bytea)
            FROM generate_series(%(first)d, %(last)d) b, generate_series(0, %(txs)d - 1) p;
        INSERT INTO inputs (block_id, tx_pos, in_idx, prev_idx, prev_hash)
            SELECT b, p, 0, 0, sha256((b * 1000 + p - 1)::text::bytea)
            FROM generate_series(%(first)d, %(last)d) b, generate_series(1, %(txs)d - 1) p;
        INSERT INTO pushdata (block_id, tx_pos, idx, flags, push_hash)
            SELECT b, p, 0, 1, sha256(int8send(b * 1000 + p))
            FROM generate_series(%(first)d, %(last)d) b, generate_series(0, %(txs)d - 1) p;
        INSERT INTO outputs (block_id, tx_pos, idx, value, script_hash, script)
            SELECT b, p, 0, 1000, sha256(int8send(b * 1000 + p)), NULL
            FROM generate_series(%(first)d, %(last)d) b, generate_series(0, %(txs)d - 1) p;
    """ % {"first": first, "last": first + blocks - 1, "txs": txs}


@pytest.fixture(scope="module")
def part_db(pg_module, build_dir):
    exe = os.path.join(build_dir, "bench", "index", "conduit-index-file")
    if not os.path.exists(exe):
        pytest.skip(f"{exe} not built")
    db = "lookup_plans"
    pg_module.psql(f"CREATE DATABASE {db}")
    ci = f"{pg_module.conninfo.replace('dbname=postgres', '')} dbname={db}"
    subprocess.run([exe, "--conninfo", ci, "--migrate-only"], check=True, timeout=300,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # synthetic rows shaped like the index's: tx (b, p) has txid
    # sha256('b*1000+p'), spends output 0 of tx (b, p-1) (so every tx but the
    # coinbase has one input), and its output 0 pays the key sha256 of b*1000+p
    # as 8 big-endian bytes (a "pubkey" docs/QUERIES.md's history_pubkey takes).
    # Triggers off (session_replication_role): these blocks are loaded as they
    # are, not connected one by one.
    psql(pg_module, db, """
        %s
        """ % synthetic_rows_sql(BLOCKS, TXS))
    psql(pg_module, db, partition_sql(pg_module, db))
    n = q1(pg_module, db, "SELECT count(*) FROM pg_inherits "
                          "WHERE inhparent = 'transactions'::regclass;")
    assert int(n) == PARTS
    return db


def seq_scans(plan, tables=TABLES):
    """Relations of `tables` (any partition) read by a Seq Scan in the plan."""
    out = []

    def walk(node):
        if node.get("Node Type") == "Seq Scan":
            rel = node.get("Relation Name", "")
            if any(rel == t or rel.startswith(t + "_") for t in tables):
                out.append(rel)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return out


def plan_of(pg, db, sql, args, mode):
    """The plan of `sql` prepared as PQprepare prepares it (no parameter types)
    and executed with `args` under plan_cache_mode `mode` and jit off (the
    API session's settings)."""
    text = psql(pg, db, "SET jit = off; SET plan_cache_mode = %s;\nPREPARE s AS %s;\n"
                        "EXPLAIN (FORMAT JSON) EXECUTE s(%s);" % (mode, sql, ", ".join(args)))
    return json.loads(text)


# (cd_lookup.c statement, its arguments: a tx in the middle of the chain)
MID = "sha256((%d * 1000 + 41)::text::bytea)" % (BLOCKS // 2)
API_STATEMENTS = [
    ("cd_lookup_spender", [MID, "'0'"]),
    ("cd_lookup_tx", [MID]),
    ("cd_lookup_history", ["sha256(int8send(%d::bigint))" % (BLOCKS // 2 * 1000 + 41),
                           "'-1'", "'-1'", "'-1'", "'-1'", "'1000'"]),
]


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
@pytest.mark.parametrize("name,args", API_STATEMENTS, ids=[s[0] for s in API_STATEMENTS])
def test_api_lookups_probe_not_scan(pg_module, part_db, name, args, mode):
    """The API's lookups by hash over 60 partitions: index probes only."""
    plan = plan_of(pg_module, part_db, c_statement(name), args, mode)
    assert seq_scans(plan) == [], "%s (%s):\n%s" % (name, mode, json.dumps(plan, indent=1))


def test_api_lookups_go_generic(pg_module, part_db):
    """The API session keeps plan_cache_mode at auto (src/api/cd_http_int.h
    HTTP_PG_SETUP): its prepared lookups must be plan-stable, i.e. auto must
    choose the generic plan after its 5 custom ones, or every call would pay
    the planning of every partition."""
    sql = ["SET jit = off;"]
    for name, args in API_STATEMENTS:
        sql.append("PREPARE %s AS %s;" % (name, c_statement(name)))
        sql += ["EXECUTE %s(%s);" % (name, ", ".join(args))] * 7
    sql.append("SELECT name || ' ' || generic_plans || ' ' || custom_plans "
               "FROM pg_prepared_statements ORDER BY name;")
    got = psql(pg_module, part_db, "\n".join(sql)).splitlines()[-len(API_STATEMENTS):]
    assert sorted(got) == sorted("%s 2 5" % n for n, _ in API_STATEMENTS)


# ConduitDB's API (src/query/cd_cdbq.c): spends of a batch of outpoints
# ($1 txids, $2 4-byte output indexes) and the restoration search (keys).
# The restoration's INPUT-key branch joins inputs on (block_id, tx_pos,
# in_idx), which only a BRIN index serves: a scan of inputs there is another
# matter (inputs has no B-tree on its block position), so for it only
# transactions and pushdata are checked.
KEY = "sha256(int8send(%d::bigint))" % (BLOCKS // 2 * 1000 + 41)
CDBQ = [
    ("spends_sql", lambda sql: sql,
     [MID + " || sha256((%d * 1000 + 7)::text::bytea)" % (BLOCKS // 3), "'\\x0000000000000000'"],
     TABLES),
    ("restore_sql", lambda sql: sql.replace("DECLARE cd_cdbq_restore NO SCROLL CURSOR FOR ", ""),
     ["ARRAY[%s]" % KEY, "'7'"], ("transactions", "pushdata")),
]


@pytest.mark.parametrize("name,strip,args,tables", CDBQ, ids=[c[0] for c in CDBQ])
def test_cdb_lookups_probe_not_scan(pg_module, part_db, name, strip, args, tables):
    """ConduitDB's output spends and restoration over 60 partitions: index
    probes only (the rows found: one spend each, one output of the key).
    Custom plans: the API runs both unprepared (PQexecParams), a batch of
    keys per statement."""
    sql = strip(c_array(CDBQ_C, name))
    mode = "force_custom_plan"
    plan = plan_of(pg_module, part_db, sql, args, mode)
    assert seq_scans(plan, tables) == [], "%s (%s):\n%s" % (name, mode,
                                                            json.dumps(plan, indent=1))
    rows = psql(pg_module, part_db, "PREPARE s AS %s;\nEXECUTE s(%s);" % (sql, ", ".join(args)))
    assert len(rows.splitlines()) == (2 if name == "spends_sql" else 1), rows


def test_api_spender_answers_over_partitions(pg_module, part_db):
    """The same statement finds the spender (the rows are there: a plan of an
    empty result would prove nothing)."""
    rows = psql(pg_module, part_db, "PREPARE s AS %s;\nEXECUTE s(%s);"
                % (c_statement("cd_lookup_spender"), ", ".join([MID, "'0'"])))
    spend = q1(pg_module, part_db, "SELECT encode(sha256((%d * 1000 + 42)::text::bytea), 'hex');"
               % (BLOCKS // 2))
    assert rows.split("|")[0] == "\\x" + spend and rows.split("|")[1] == "0"


def doc_queries():
    """docs/QUERIES.md's queries (as test_index.py reads them)."""
    text = open(os.path.join(ROOT, "docs", "QUERIES.md"), encoding="utf-8").read()
    out = {}
    for block in re.findall(r"```sql\n(.*?)```", text, re.S):
        m = re.match(r"-- query: (\w+)\n", block)
        if m:
            out[m.group(1)] = re.sub(r"^--.*\n", "", block.strip(), flags=re.M).rstrip(";")
    return out


# the documented lookups by hash, with the psql variables of a tx (and its
# key) in the middle of the synthetic chain
DOC_LOOKUPS = ["tx_location", "spent_by", "history_pubkey", "outputs_with_spends"]


def doc_vars(pg, db):
    n = BLOCKS // 2 * 1000 + 41
    txid = q1(pg, db, "SELECT cd_txid_hex(%s);" % MID)
    return {"txid": txid, "n": "0", "pubkey": "%016x" % n,
            "key": q1(pg, db, "SELECT encode(sha256(int8send(%d)), 'hex');" % n)}


@pytest.mark.parametrize("name", DOC_LOOKUPS)
def test_documented_lookups_probe_not_scan(pg_module, part_db, name):
    """The documented lookups as an application runs them: a one-off query
    (custom plan), JIT at the server's default."""
    sql = doc_queries()[name]
    args = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg_module.sockdir,
            "-p", str(pg_module.port), "-U", "postgres", "-d", part_db]
    for k, v in doc_vars(pg_module, part_db).items():
        args += ["-v", "%s=%s" % (k, v)]
    run = subprocess.run(args, input=("EXPLAIN (FORMAT JSON) %s;\n%s;" % (sql, sql)).encode(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert run.returncode == 0, run.stderr.decode()
    out = run.stdout.decode()
    plan_text, rows = out[:out.rindex("]") + 1], out[out.rindex("]") + 1:].split()
    assert rows, "%s found nothing: a plan of an empty result proves nothing" % name
    plan = json.loads(plan_text)
    assert seq_scans(plan) == [], "%s:\n%s" % (name, json.dumps(plan, indent=1))


# The key pages' reads of the blocks above the key-rows mark (sql/014's
# cd_key_outs_above and cd_key_hist_above, as sql/018 redefines them), with
# the mark as far below the tip as the reads use them (cd_key_rows_lag_max()
# txs above it: 200 blocks here; beyond, 007's scans serve the page): the
# rows of those blocks, each joined to its tx by primary key. SQL functions,
# inlined: EXPLAIN shows their plan. (With the mark one block below the tip
# sql/014's cd_key_outs_above probed too, and this case could not fail; at
# the lag limit its 's' form hash-joins a scan of every partition.)
@pytest.mark.parametrize("fn", ["cd_key_hist_above", "cd_key_outs_above"])
@pytest.mark.parametrize("kind", ["p", "s"])
def test_key_rows_above_mark_probe_not_scan(pg_module, part_db, fn, kind):
    lag = int(q1(pg_module, part_db, "SELECT cd_key_rows_lag_max();"))
    plan = json.loads(psql(pg_module, part_db,
                           "SET jit = off; EXPLAIN (FORMAT JSON) SELECT * FROM %s('%s', %s, %d);"
                           % (fn, kind, KEY, BLOCKS - lag // TXS)))
    assert seq_scans(plan, ("transactions",)) == [], "%s:\n%s" % (fn, json.dumps(plan, indent=1))
