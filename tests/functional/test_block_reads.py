"""Reads of one block's rows visit that block's rows, not the table (issue 18).

The key-rows step (sql/014, sql/016: cd_key_rows_advance) reads the
`outputs`, `pushdata` and `inputs` rows of the blocks it derives
(`block_id = ANY (todo)`, pushdata joined to outputs on (block_id, tx_pos,
idx)), and the key pages read the blocks above the key-rows mark the same
way (sql/018: cd_key_outs_above, cd_key_hist_above). These tables had no
B-tree led by block_id, only a BRIN (sql/002, sql/007), whose ranges stay
unsummarised while rows are loaded, and the open partition has no
statistics while it fills: during live indexing each batch was a Seq Scan
of the whole tables (auto_explain: 1.1M rows removed by filter for one
block at 300k txs), or a nested loop re-scanning them per row; one block of
1,500 txs took 4.5-20 s at 0.1-0.6M txs and the step fell ever further
behind (docs/PERFORMANCE.md "The index larger than memory").

sql/021 adds B-trees on block_id, built by the key-rows process before its
first batch (cd_block_index_step, one partition per call). Checked here on
the real schema (every migration, conduit-index-file --migrate-only) holding
synthetic rows shaped like the index's (60k txs in
300 blocks, one input, one output and one output key per tx), loaded with
autovacuum off so that, as in live indexing, the tables have no statistics
and the BRIN no summaries; then again after ANALYZE. auto_explain (ANALYZE,
nested statements, sent to the client as NOTICEs) gives the plans each
statement actually ran, and the test sums, over the scan nodes of the three
tables, the rows each visited: returned, removed by a filter or by an index
recheck, times its loops. That sum must stay within a few times the rows of
the blocks read (the property), whatever the plan's shape. No timing is
asserted. Before sql/021 every case here visited the whole tables (e.g.
299,700 rows for one block of 599: a Seq Scan of each). An early batch,
while key_outs is young, checks the step's enable_seqscan = off (sql/021):
without it the spent marks read key_outs whole per spending block.
"""

import json
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_lookup_plans import synthetic_rows_sql  # noqa: E402

BLOCKS, TXS = 300, 200
TABLES = ("outputs", "pushdata", "inputs")
# a block's rows in the three tables: TXS outputs, TXS pushdata, TXS - 1 inputs
BLOCK_ROWS = 3 * TXS - 1
# rows visited by the fixture's second batch (rows_db)
EARLY = {}


def psql(pg, db, sql):
    """psql's stdout and stderr (auto_explain's NOTICEs go to stderr)."""
    args = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-d", db]
    p = subprocess.run(args, input=sql.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise AssertionError("psql failed: %s\n%s" % (p.stderr.decode(), sql))
    return p.stdout.decode(), p.stderr.decode()


EXPLAIN_ON = """
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_format = json;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;
"""


def plans(stderr):
    """The JSON plans of auto_explain's NOTICEs in psql's stderr (each
    "NOTICE:  duration: ... plan:" then the JSON object, maybe a CONTEXT)."""
    out = []
    dec = json.JSONDecoder()
    for chunk in stderr.split("NOTICE:")[1:]:
        i = chunk.find("{")
        if i >= 0:
            out.append(dec.raw_decode(chunk[i:])[0])
    return out


def visited(plan_list, tables=TABLES + ("key_outs", "transactions")):
    """Rows the plans went through, per relation of `tables` (any
    partition): (rows returned + removed by a filter or an index recheck)
    x loops of each scan node; and, as "join filter", the rows joins
    removed by their join filter (a join on block_id alone re-reads a
    block's rows per row of the other side)."""
    per = {}

    def walk(node):
        rel = node.get("Relation Name", "")
        if any(rel == t or rel.startswith(t + "_") for t in tables):
            n = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
                 + node.get("Rows Removed by Index Recheck", 0)) * node.get("Actual Loops", 1)
            per[rel] = per.get(rel, 0) + n
        jf = node.get("Rows Removed by Join Filter", 0) * node.get("Actual Loops", 1)
        if jf:
            per["join filter"] = per.get("join filter", 0) + jf
        for child in node.get("Plans", []):
            walk(child)

    for p in plan_list:
        walk(p["Plan"])
    return per


@pytest.fixture(scope="module")
def rows_db(pg_module, build_dir):
    exe = os.path.join(build_dir, "bench", "index", "conduit-index-file")
    if not os.path.exists(exe):
        pytest.skip(f"{exe} not built")
    db = "block_reads"
    pg_module.psql(f"CREATE DATABASE {db}")
    ci = f"{pg_module.conninfo.replace('dbname=postgres', '')} dbname={db}"
    subprocess.run([exe, "--conninfo", ci, "--migrate-only"], check=True, timeout=300,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Rows as test_lookup_plans.py shapes them (synthetic_rows_sql): tx
    # (b, p) has txid sha256('b*1000+p'), spends output 0 of tx (b, p-1), and
    # its output 0 pays (and pushes, flags 1) the key sha256 of b*1000+p.
    # Autovacuum off on every partition first: no statistics, no BRIN
    # summaries, as for the open partition during live indexing.
    psql(pg_module, db, """
        DO $$ DECLARE r record; BEGIN
          FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent IN ('transactions'::regclass, 'inputs'::regclass,
                                         'pushdata'::regclass, 'outputs'::regclass) LOOP
            EXECUTE format('ALTER TABLE %%I SET (autovacuum_enabled = false)', r.relname);
          END LOOP; END $$;
        %(rows)s
        INSERT INTO index_tip (block_id, height) VALUES (%(blocks)d, %(blocks)d - 1);
        """ % {"blocks": BLOCKS, "rows": synthetic_rows_sql(BLOCKS, TXS)})
    # half the chain derived as the key-rows process derives it (statistics,
    # then a batch; 10 blocks a batch here): key_outs holds their rows
    psql(pg_module, db, "ALTER TABLE key_outs SET (autovacuum_enabled = false);\n"
                        "ALTER TABLE key_hist SET (autovacuum_enabled = false);\n")
    # the migrations build no block index (only key_rows = on does): one per
    # partition of the three tables is missing
    assert psql(pg_module, db, "SELECT cd_block_index_missing(), "
                               "to_regclass('outputs_block_idx') IS NULL;")[0].strip() == "3|t"
    # what the key-rows process does before its first batch
    # (src/index/cd_keyrows.c): one partition per call, until none is left
    left = [int(psql(pg_module, db, "SELECT cd_block_index_step();")[0]) for _ in range(3)]
    assert left == [2, 1, 0], left
    assert psql(pg_module, db, "SELECT cd_block_index_step();")[0].strip() == "0"
    # the BRIN they replace went with the last build (sql/022): planned on
    # statistics, an unsummarised BRIN was preferred to them and read every
    # page of the partition (the three-block case below)
    assert psql(pg_module, db, "SELECT count(*) FROM pg_class WHERE relname LIKE "
                               "'%\\_block\\_brin';")[0].strip() == "0"
    # the second batch is kept aside (EARLY): key_outs is young then, a few
    # pages per spending block's marks
    for i in range(BLOCKS // 2 // 10):
        if i == 1:
            EARLY.update(advance(pg_module, db, 10, False))
        else:
            psql(pg_module, db, "SELECT cd_key_rows_analyze(); SELECT cd_key_rows_advance(10);")
    assert psql(pg_module, db, "SELECT height FROM key_rows_mark;")[0].strip() == str(
        BLOCKS // 2 - 1)
    return db


def advance(pg, db, blocks, analyze):
    """Derives `blocks` blocks above the mark as the key-rows process does
    (statistics first: cd_key_rows_analyze), with auto_explain on, after an
    ANALYZE of everything if `analyze`; returns the rows its statements
    went through."""
    out, err = psql(pg, db, ("ANALYZE;\n" if analyze else "") + """
        SELECT cd_key_rows_analyze() >= 0 AS analyzed \\gset
        %s
        SELECT cd_key_rows_advance(%d);
        """ % (EXPLAIN_ON, blocks))
    assert out.strip() == str(blocks), out + err
    return visited(plans(err))


# One block as the step runs; three after an ANALYZE of everything, which
# with sql/021 alone read the three tables through their unsummarised BRIN
# (every page: 363,885 rows for 1,797), the reason sql/022 drops it
@pytest.mark.parametrize("blocks,analyze", [(1, False), (3, True)],
                         ids=["one-block-as-the-step-runs", "three-blocks-all-analyzed"])
def test_key_rows_batch_reads_its_blocks(pg_module, rows_db, blocks, analyze):
    """One batch, half the chain derived below it, goes through about its
    blocks' rows."""
    per = advance(pg_module, rows_db, blocks, analyze)
    assert per, "auto_explain showed no scan of %s" % (TABLES,)
    total = sum(per.values())
    assert total <= 10 * blocks * BLOCK_ROWS, (
        "%d blocks (%d rows) visited %d rows of %s: %s"
        % (blocks, blocks * BLOCK_ROWS, total, TABLES, per))


def test_key_rows_early_batch_marks_by_tid(rows_db):
    """A batch while key_outs is young (the fixture's second: 10 blocks, 10
    derived below) goes through about its own key_outs rows. Its spent
    marks are UPDATEs of key_outs by ctid, one per spending block; planned
    freely, a Seq Scan of key_outs is cheaper on paper than a block's ~400
    random tids while key_outs has fewer pages than ~4x the tids
    (random_page_cost), so the batch read key_outs whole once per spending
    block (49,970 rows here; 358k for one block at 65k txs in a real run,
    docs/PERFORMANCE.md "Block reads"). sql/021 plans the step with
    enable_seqscan off: 11,960 here (its 4,000 new rows read by the
    history insert, the spends' probes and the marks' TID scans)."""
    assert EARLY, "auto_explain showed no scan"
    new_rows = 10 * 2 * TXS   # a tx's output: its script hash and one pushdata key
    assert EARLY.get("key_outs", 0) <= 5 * new_rows, (
        "10 blocks (%d key_outs rows) visited %d key_outs rows: %s"
        % (new_rows, EARLY.get("key_outs", 0), EARLY))
    assert sum(EARLY.values()) <= 10 * 10 * BLOCK_ROWS, EARLY


@pytest.mark.parametrize("fn", ["cd_key_hist_above", "cd_key_outs_above"])
def test_key_pages_above_mark_read_their_blocks(pg_module, rows_db, fn):
    """A key page's read of the blocks above the mark (3 blocks here) visits
    those blocks' rows."""
    m = BLOCKS - 4   # heights BLOCKS-3 .. BLOCKS-1 above it
    key = "sha256(int8send(%d::bigint))" % ((BLOCKS - 1) * 1000 + 7)
    _, err = psql(pg_module, rows_db, EXPLAIN_ON + "SELECT * FROM %s('p', %s, %d);"
                  % (fn, key, m))
    per = visited(plans(err))
    total = sum(per.values())
    assert total <= 10 * 3 * BLOCK_ROWS, (
        "%s over 3 blocks (%d rows) visited %d rows of %s: %s"
        % (fn, 3 * BLOCK_ROWS, total, TABLES, per))


def block_indexes(pg, db):
    """{partition: [its indexes on (block_id) alone]} of the three tables."""
    out = {}
    rows, _ = psql(pg, db, """
        SELECT c.relname, ic.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        LEFT JOIN pg_index x ON x.indrelid = c.oid
             AND pg_get_indexdef(x.indexrelid) LIKE '%USING btree (block_id)'
        LEFT JOIN pg_class ic ON ic.oid = x.indexrelid
        WHERE i.inhparent IN ('inputs'::regclass, 'pushdata'::regclass, 'outputs'::regclass)
        ORDER BY 1, 2;""")
    for line in rows.split():
        part, idx = line.split("|")
        out.setdefault(part, [])
        if idx:
            out[part].append(idx)
    return out


def test_block_indexes_through_rolls_and_merges(pg_module, build_dir, shared_data):
    """Built on five closed partitions and the tip, the block indexes follow
    the layout: a merge's partition has its own (sql/019 copies the first
    source's index definitions), a roll's new tip gets one (a partitioned
    index), no partition has two, and a batch derives the whole chain."""
    from test_partition_merge import CUTS, index_chain, merge_all
    pg, db = pg_module, "block_idx_merge"
    index_chain(pg, db, build_dir, shared_data, CUTS)
    assert int(psql(pg, db, "SELECT cd_block_index_missing();")[0]) == 3 * len(CUTS)
    while int(psql(pg, db, "SELECT cd_block_index_step();")[0]) > 0:
        pass
    before = block_indexes(pg, db)
    assert len(before) == 3 * len(CUTS) and all(len(v) == 1 for v in before.values()), before
    # fan-in 2: p0+p20 and p40+p60 to level 1, those two to level 2
    assert merge_all(pg, db, 2) == 3
    assert psql(pg, db, "SELECT cd_partition_roll(1) IS NOT NULL;")[0].strip() == "t"
    after = block_indexes(pg, db)
    # the level-2 one (heights 0-79), p80, p100 closed by the roll, the new
    # tip: four per table
    assert len(after) == 3 * 4 and all(len(v) == 1 for v in after.values()), after
    assert psql(pg, db, "SELECT cd_block_index_missing();")[0].strip() == "0"
    # and the batch still derives the whole chain
    out, _ = psql(pg, db, "SELECT cd_key_rows_analyze() >= 0; SELECT cd_key_rows_advance(1000);")
    assert out.split()[-1] == "117", out
