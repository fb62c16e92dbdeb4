"""History and UTXO pages from the derived key rows (issue 18, sql/014_key_rows.sql).

cd_history / cd_utxos read the rows the trailing step derived below its mark
(key_hist, key_outs), the blocks above the mark, then the mempool. They must
give exactly the rows of sql/007's definitions (kept as cd_history_scan /
cd_utxos_scan) whatever the mark: checked for every script hash and every
pushdata key of the real regtest chains (../shared/data), whole and page by
page, with nothing derived, with the mark in the middle, at the tip, across
the 116 -> 118 reorg (the wallet txs move to another block), the 116 -> 117
reorg (two txs return to the mempool with their outputs), a reorg that
commits while a batch of the trailing step waits to commit, and a kill -9 of
the PostgreSQL backend in the middle of a batch.

The spent marks of sql/016 (key_outs.spent_by, read through the partial
index key_outs_unspent_idx) are checked against the inputs after each of
those steps (MARKS), and across an upgrade from a 015 database with rows.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_index import create_db, psql, run_index  # noqa: E402
from test_utxo import reorg_to  # noqa: E402

CHAINS = ("blockchain_115_3677f4", "blockchain_116_7c9cd2", "blockchain_117_28c2d3",
          "blockchain_118_0ebc17")

# Every key of the index (outputs, pushdata, mempool) and, per key, the
# rows of the new and the 007 functions: whole (limit 10000) and walked in
# pages of 2 rows with the cursors the HTTP API passes (src/query/cd_wallet.c).
# Prints the keys whose rows differ.
COMPARE = r"""
CREATE TEMP TABLE k AS
    SELECT DISTINCT 'script'::text AS kind, script_hash AS key FROM outputs
    UNION SELECT 'script', script_hash FROM mempool_outputs
    UNION SELECT 'push', push_hash FROM pushdata
    UNION SELECT 'push', push_hash FROM mempool_pushdata;
CREATE FUNCTION pg_temp.walk_hist(kind text, key bytea, step integer) RETURNS SETOF text
    LANGUAGE plpgsql AS $$
DECLARE
    ah integer;
    ap bigint;
    r record;
    n integer;
BEGIN
    LOOP
        n := 0;
        FOR r IN SELECT * FROM cd_history(kind, key, step, ah, ap) LOOP
            n := n + 1;
            ah := r.height;
            ap := r.pos;
            RETURN NEXT r::text;
        END LOOP;
        EXIT WHEN n < step;
    END LOOP;
END
$$;
CREATE FUNCTION pg_temp.walk_utxos(kind text, key bytea, step integer) RETURNS SETOF text
    LANGUAGE plpgsql AS $$
DECLARE
    ah integer;
    ap bigint;
    av integer;
    r record;
    n integer;
BEGIN
    LOOP
        n := 0;
        FOR r IN SELECT * FROM cd_utxos(kind, key, step, ah, ap, av) LOOP
            n := n + 1;
            ah := r.height;
            ap := r.pos;
            av := r.vout;
            RETURN NEXT r::text;
        END LOOP;
        EXIT WHEN n < step;
    END LOOP;
END
$$;
SELECT 'keys', count(*), count(*) FILTER (WHERE kind = 'push') FROM k;
SELECT 'history', k.kind, encode(k.key, 'hex') FROM k
WHERE ARRAY(SELECT x::text FROM cd_history(k.kind, k.key, 10000) x)
      IS DISTINCT FROM ARRAY(SELECT x::text FROM cd_history_scan(k.kind, k.key, 10000) x)
   OR ARRAY(SELECT pg_temp.walk_hist(k.kind, k.key, 2))
      IS DISTINCT FROM ARRAY(SELECT x::text FROM cd_history_scan(k.kind, k.key, 10000) x);
SELECT 'utxos', k.kind, encode(k.key, 'hex') FROM k
WHERE ARRAY(SELECT x::text FROM cd_utxos(k.kind, k.key, 10000) x)
      IS DISTINCT FROM ARRAY(SELECT x::text FROM cd_utxos_scan(k.kind, k.key, 10000) x)
   OR ARRAY(SELECT pg_temp.walk_utxos(k.kind, k.key, 2))
      IS DISTINCT FROM ARRAY(SELECT x::text FROM cd_utxos_scan(k.kind, k.key, 10000) x);
SELECT 'rows', (SELECT count(*) FROM k WHERE EXISTS (
    SELECT 1 FROM cd_history_scan(k.kind, k.key, 10000))),
    (SELECT count(*) FROM k WHERE (SELECT count(*) FROM cd_history_scan(k.kind, k.key, 10000)) > 2);
"""

# no derived row twice (a block derived twice would double them)
DOUBLES = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM key_outs GROUP BY kind, key, block_id, pos, vout
                              HAVING count(*) > 1) x),
       (SELECT count(*) FROM (SELECT 1 FROM key_hist GROUP BY kind, key, block_id, pos
                              HAVING count(*) > 1) x);
"""


# sql/016's spent marks against the inputs: a mark names a best-chain block
# with an input spending the output (any copy of it); every best-chain row at
# or below the mark spent by a best-chain block at or below the mark is marked.
MARKS = """
WITH m AS (SELECT height FROM key_rows_mark),
ko AS (SELECT ko.*, t.tx_hash, b.on_best_chain AS best
       FROM key_outs ko JOIN transactions t ON t.block_id = ko.block_id AND t.tx_pos = ko.pos
       JOIN blocks b ON b.block_id = ko.block_id)
SELECT (SELECT count(*) FROM ko WHERE spent_by IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM inputs i JOIN blocks b ON b.block_id = i.block_id AND b.on_best_chain
            WHERE i.block_id = ko.spent_by AND i.prev_hash = ko.tx_hash
              AND i.prev_idx = ko.vout)),
       (SELECT count(*) FROM ko, m WHERE ko.best AND ko.height <= m.height
            AND spent_by IS NULL AND EXISTS (
            SELECT 1 FROM inputs i JOIN blocks b ON b.block_id = i.block_id AND b.on_best_chain
            WHERE i.prev_hash = ko.tx_hash AND i.prev_idx = ko.vout AND b.height <= m.height)),
       (SELECT count(*) FROM ko WHERE spent_by IS NOT NULL);
"""


def marks(pg, db):
    """Asserts the spent marks agree with the inputs; returns how many rows are marked."""
    wrong, missing, n = psql(pg, db, MARKS)[0]
    assert (wrong, missing) == ("0", "0"), (wrong, missing)
    return int(n)


def compare(pg, db):
    """Asserts the new reads equal 007's for every key; returns (keys, keys with rows)."""
    rows = psql(pg, db, COMPARE)
    bad = [r for r in rows if r[0] in ("history", "utxos")]
    assert bad == [], bad[:10]
    keys = [r for r in rows if r[0] == "keys"][0]
    n = [r for r in rows if r[0] == "rows"][0]
    # the comparison is not empty: push keys too, and keys with several pages
    assert int(keys[2]) > 0 and int(n[2]) > 0, (keys, n)
    assert psql(pg, db, DOUBLES) == [("0", "0")]
    marks(pg, db)
    return int(keys[1]), int(n[1])


def mark(pg, db):
    return int(psql(pg, db, "SELECT height FROM key_rows_mark;")[0][0])


def tip(pg, db):
    return int(psql(pg, db, "SELECT height FROM index_tip;")[0][0])


def advance(pg, db, blocks):
    return int(psql(pg, db, "SELECT cd_key_rows_advance(%d);" % blocks)[0][0])


@pytest.fixture(scope="module")
def rt(shared_data):
    d = os.path.join(shared_data, "regtest")
    if not all(os.path.isdir(os.path.join(d, c)) for c in CHAINS):
        pytest.skip("no regtest chains in %s" % d)
    return d


def test_pages_equal_the_scan_at_every_mark_and_through_a_reorg(pg_module, build_dir, rt):
    pg = pg_module
    ci = create_db(pg, "kp116")
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_116_7c9cd2")])
    assert mark(pg, "kp116") == -1
    # 014's cd_txid_hex gives 001's text (every txid, other lengths, NULL)
    n, same = psql(pg, "kp116", "SELECT count(*), count(*) FILTER (WHERE cd_txid_hex(x) IS NOT "
                                "DISTINCT FROM encode(cd_rev(x), 'hex')) FROM (SELECT tx_hash "
                                "FROM transactions UNION ALL SELECT block_hash FROM blocks "
                                "UNION ALL VALUES (NULL::bytea), (''::bytea), ('\\x01'::bytea), "
                                "('\\x0102030405'::bytea), (sha256('a') || '\\x00'::bytea)) v(x);"
                   )[0]
    assert int(n) > 200 and n == same
    # nothing derived: every row comes from the blocks above the mark
    keys, with_rows = compare(pg, "kp116")
    assert keys > 50 and with_rows > 50
    # part of the chain derived, in small batches
    while mark(pg, "kp116") < 60:
        assert advance(pg, "kp116", 7) > 0
    compare(pg, "kp116")
    # all of it; then nothing more to do
    while advance(pg, "kp116", 50) > 0:
        pass
    assert mark(pg, "kp116") == tip(pg, "kp116") == 116
    assert advance(pg, "kp116", 50) == 0
    compare(pg, "kp116")
    # the step marked the spends it derived (sql/016)
    marked = marks(pg, "kp116")
    assert marked > 20
    n_blocks = int(psql(pg, "kp116", "SELECT count(*) FROM key_rows_blocks;")[0][0])
    assert n_blocks == 117

    # the competing branch: its blocks indexed, then the reorg (one
    # transaction) lowers the mark below the fork
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_118_0ebc17")])
    reorg_to(pg, "kp116", os.path.join(rt, "blockchain_118_0ebc17"))
    assert mark(pg, "kp116") < 116
    # the marks of the blocks that left went with them, in the reorg's
    # transaction (MARKS: no mark names a block off the best chain)
    assert marks(pg, "kp116") < marked
    # the stale blocks' derived rows are still there, and ignored
    compare(pg, "kp116")
    while advance(pg, "kp116", 1) > 0:
        compare(pg, "kp116")
    assert mark(pg, "kp116") == 118
    compare(pg, "kp116")


def test_reorg_in_catch_up_mode_clears_the_marks(pg, build_dir, rt):
    """A reorg while catch-up mode has dropped the index on transactions
    (tx_hash): the leaving blocks' marks are cleared by a scan of key_outs
    (sql/016), not one scan of transactions per input."""
    ci = create_db(pg, "kpc")
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_116_7c9cd2")])
    while advance(pg, "kpc", 50) > 0:
        pass
    before = marks(pg, "kpc")
    # (sql/017: each partition has its own index; the open tip's is the one
    # catch-up drops)
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_118_0ebc17")])
    idx = psql(pg, "kpc", "SELECT indexrelid::regclass, pg_get_indexdef(indexrelid) FROM pg_index "
                          "x JOIN pg_attribute a ON a.attrelid = x.indrelid "
                          "AND a.attnum = x.indkey[0] WHERE x.indrelid = (SELECT part FROM "
                          "partitions WHERE tbl = 'transactions' AND hi IS NULL)::regclass "
                          "AND a.attname = 'tx_hash';")
    assert len(idx) == 1, idx
    psql(pg, "kpc", "DROP INDEX %s;" % idx[0][0])
    reorg_to(pg, "kpc", os.path.join(rt, "blockchain_118_0ebc17"))
    assert marks(pg, "kpc") < before
    # the step waits for the index; then derives the new branch
    assert advance(pg, "kpc", 50) == 0
    psql(pg, "kpc", idx[0][1] + ";")
    while advance(pg, "kpc", 50) > 0:
        pass
    assert mark(pg, "kpc") == 118
    compare(pg, "kpc")


def test_pages_with_mempool_rows_after_a_reorg(pg_module, build_dir, rt):
    pg = pg_module
    ci = create_db(pg, "kp117")
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_116_7c9cd2")])
    while advance(pg, "kp117", 40) > 0:
        pass
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_117_28c2d3")])
    reorg_to(pg, "kp117", os.path.join(rt, "blockchain_117_28c2d3"))
    assert int(psql(pg, "kp117", "SELECT count(*) FROM mempool_tx;")[0][0]) >= 2
    # mempool rows last, both ways of finding their spends (key side for
    # keys with few outputs, mempool side for the others)
    compare(pg, "kp117")
    # the txs that left the chain are evicted from the mempool too (as the
    # mempool's cap does): the outputs they spent are unspent again, in
    # the derived rows below the mark as well (sql/016: the reorg cleared
    # their marks)
    mem = psql(pg, "kp117", "SELECT count(*) FROM mempool_inputs;")
    psql(pg, "kp117", "DELETE FROM mempool_tx;")
    assert int(mem[0][0]) > 0 and psql(pg, "kp117", "SELECT count(*) FROM mempool_inputs;") \
        == [("0",)]
    compare(pg, "kp117")
    while advance(pg, "kp117", 40) > 0:
        pass
    compare(pg, "kp117")


class Session:
    """One psql session kept open (statements one at a time)."""

    def __init__(self, pg, db):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-h", pg.sockdir, "-p",
                                   str(pg.port), "-U", "postgres", "-d", db],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1)

    def send(self, sql):
        self.p.stdin.write(sql + "\n\\echo @@END@@\n")
        self.p.stdin.flush()

    def wait(self):
        out = []
        while True:
            line = self.p.stdout.readline()
            if not line or line.strip() == "@@END@@":
                return out
            out.append(line.rstrip("\n"))

    def run(self, sql):
        self.send(sql)
        return self.wait()

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def backend_waiting(pg, db):
    """pid of the backend running cd_key_rows_advance once it waits for the tip lock."""
    for _ in range(600):
        r = psql(pg, db, "SELECT pid FROM pg_stat_activity WHERE query LIKE "
                         "'SELECT cd_key_rows_advance%' AND wait_event_type = 'Lock';")
        if r:
            return int(r[0][0])
        time.sleep(0.05)
    raise AssertionError("the trailing step never reached the tip lock")


def test_reorg_during_a_batch_voids_it(pg, build_dir, rt):
    ci = create_db(pg, "kpr")
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_116_7c9cd2")])
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_118_0ebc17")])
    assert tip(pg, "kpr") == 116
    holder = Session(pg, "kpr")
    step = Session(pg, "kpr")
    try:
        # the batch derives every block of 116, then waits for the tip lock
        holder.run("SELECT pg_advisory_lock(4242424202);")
        step.send("SELECT cd_key_rows_advance(1000);")
        backend_waiting(pg, "kpr")
        # meanwhile the reorg to 118 commits (the holder's session lock is
        # reentrant for cd_reorg_step's transaction lock)
        tgt = open(os.path.join(rt, "blockchain_118_0ebc17", "headers.txt")).read().split()[-1]
        out = holder.run("INSERT INTO chain_target (singleton, block_hash, height) "
                         "SELECT true, block_hash, height FROM blocks "
                         "WHERE block_hash = cd_txid('%s'); SELECT cd_reorg_step();" % tgt)
        assert any(x.startswith("reorg") for x in out), out
        holder.run("SELECT pg_advisory_unlock(4242424202);")
        out = step.wait()
        assert any("the best chain moved" in x for x in out), out
    finally:
        holder.close()
        step.close()
    # nothing of the void batch is kept
    assert mark(pg, "kpr") == -1
    assert psql(pg, "kpr", "SELECT count(*) FROM key_rows_blocks;") == [("0",)]
    while advance(pg, "kpr", 30) > 0:
        pass
    assert mark(pg, "kpr") == 118
    compare(pg, "kpr")


def test_kill_9_in_a_batch_loses_and_doubles_nothing(pg, build_dir, rt):
    ci = create_db(pg, "kpk")
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_116_7c9cd2")])
    while mark(pg, "kpk") < 50:
        advance(pg, "kpk", 10)
    m0 = mark(pg, "kpk")
    before = psql(pg, "kpk", "SELECT count(*) FROM key_outs; SELECT count(*) FROM key_hist;")
    holder = Session(pg, "kpk")
    step = Session(pg, "kpk")
    try:
        holder.run("SELECT pg_advisory_lock(4242424202);")
        step.send("SELECT cd_key_rows_advance(1000);")
        pid = backend_waiting(pg, "kpk")
        # the batch's rows are written, not committed: the backend dies
        # (PostgreSQL restarts every backend and replays its WAL)
        os.kill(pid, signal.SIGKILL)
        step.wait()
    finally:
        holder.close()
        step.close()
    for _ in range(600):
        try:
            if psql(pg, "kpk", "SELECT 1;") == [("1",)]:
                break
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    assert mark(pg, "kpk") == m0
    assert psql(pg, "kpk", "SELECT count(*) FROM key_outs; SELECT count(*) FROM key_hist;") \
        == before
    while advance(pg, "kpk", 1000) > 0:
        pass
    assert mark(pg, "kpk") == 116
    compare(pg, "kpk")


def key_rows_daemon(build_dir, tmp_path, node, conninfo, catchup_threshold):
    """A daemon started with key_rows on (debug log, the application_name
    its processes give themselves), following `node`."""
    from daemon_util import Daemon
    d = Daemon(build_dir, str(tmp_path / "d"),
               ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", conninfo,
                "--parser-workers", "2", "--ring-size", "16M", "--unit-size", "64K",
                "--log-level", "debug", "--key-rows", "on",
                "--catchup-threshold", str(catchup_threshold)])
    d.env.pop("PGAPPNAME", None)
    return d.start()


def test_daemon_key_rows_process(pg_module, build_dir, shared_data, rt, tmp_path):
    """The daemon's key-rows process (src/index/cd_keyrows.c) is a row of the
    process table, follows the indexed tip, and a kill -9 of it loses
    nothing: it is respawned and the mark reaches the tip again. The sync
    is a catch-up (threshold 5): no batch derives blocks while the tip's
    B-trees are dropped (catch-up keeps the hash index on tx_hash, which
    sql/016's own wait looks at; cd_keyrows.c waits for the B-trees)."""
    from test_index_daemon import wait_tip
    from tests.simnode import SimNode

    pg = pg_module
    node = SimNode(chain_dir=os.path.join(rt, "blockchain_116_7c9cd2"))
    node.start()
    d = key_rows_daemon(build_dir, tmp_path, node, create_db(pg, "kpd"), 5)
    try:
        wait_tip(pg, "kpd", d, 116, timeout=300)
        m = d.wait_for_log(r"supervisor: started key-rows worker 0 \(pid (\d+)\)", timeout=60)
        deadline = time.monotonic() + 120
        while mark(pg, "kpd") < 116:
            assert time.monotonic() < deadline, d.log_text()[-3000:]
            time.sleep(0.2)
        assert ("conduitd-key-rows",) in psql(pg, "kpd", "SELECT application_name FROM "
                                                         "pg_stat_activity WHERE datname = 'kpd'")
        # it built the block indexes (sql/021) before its first batch
        assert psql(pg, "kpd", "SELECT cd_block_index_missing();") == [("0",)]
        # and dropped the BRIN they replace (sql/022)
        assert psql(pg, "kpd", "SELECT count(*) FROM pg_class WHERE relname LIKE "
                               "'%\\_block\\_brin';") == [("0",)]
        d.wait_for_log(r"key-rows: block indexes built in", timeout=10)
        d.wait_for_log(r"secondary indexes (ready|present)", timeout=60)
        lines = d.log_text().splitlines()
        i_drop = next(i for i, l in enumerate(lines) if "secondary indexes dropped" in l)
        i_end = next(i for i, l in enumerate(lines)
                     if re.search(r"secondary indexes (ready|present)", l))
        assert not [l for l in lines[i_drop:i_end]
                    if re.search(r"key-rows: [1-9]\d* blocks in", l)], lines[i_drop:i_end]
        compare(pg, "kpd")
        # kill -9: the process table respawns it; the mark never goes back
        os.kill(int(m.group(1)), signal.SIGKILL)
        d.wait_for_log(r"supervisor: started key-rows worker 0 \(pid (?!%s\))\d+\)" % m.group(1),
                       timeout=60)
        assert mark(pg, "kpd") == 116
        compare(pg, "kpd")
    finally:
        d.stop()
        node.stop()


def test_upgrade_from_015_with_derived_rows(pg, build_dir, rt, tmp_path):
    """A 015 database whose trailing step derived rows (no spent marks):
    016 applies, the mark starts again from -1 (the reads use 007's scan
    meanwhile), and the step marks the spends of the blocks derived before
    without deriving them twice."""
    src = create_db(pg, "kpu_src")
    run_index(build_dir, src, ["--chain", os.path.join(rt, "blockchain_116_7c9cd2")])
    # a 015 database (sql/001..015 as that version applied them) with the
    # same chain's rows (sql/017's partitions cannot be undone in place, and
    # 014's step reads the unpartitioned tables)
    from test_partitions import old_schema_copy
    ci = old_schema_copy(pg, "kpu_src", "kpu", 15, tmp_path)
    assert psql(pg, "kpu", "SELECT max(version) FROM cd_schema_version;") == [("15",)]
    # 014's step derives part of the chain
    while mark(pg, "kpu") < 80:
        assert advance(pg, "kpu", 20) > 0
    before = psql(pg, "kpu", "SELECT count(*) FROM key_outs; SELECT count(*) FROM key_hist; "
                             "SELECT count(*) FROM key_rows_blocks;")
    assert int(before[2][0]) > 80
    # the indexer applies 016 and the later ones (nothing new to index)
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_116_7c9cd2")])
    # 016 applied (later migrations may follow it)
    assert psql(pg, "kpu", "SELECT count(*) FROM cd_schema_version WHERE version = 16;") == [("1",)]
    assert mark(pg, "kpu") == -1
    assert marks(pg, "kpu") == 0
    compare(pg, "kpu")
    while advance(pg, "kpu", 30) > 0:
        pass
    assert mark(pg, "kpu") == 116
    assert marks(pg, "kpu") > 20
    compare(pg, "kpu")
    # the blocks derived under 015 were not derived again (compare checks
    # no row is doubled): only the blocks above 80 added rows
    after = psql(pg, "kpu", "SELECT count(*) FROM key_rows_blocks;")
    assert int(after[0][0]) == 117


def test_a_batch_never_runs_on_dropped_btrees(pg_module, build_dir, rt, tmp_path):
    """The key-rows process looks whether the open partition's B-trees are
    there, runs its ANALYZE, then its batch; catch-up mode's drops
    (cd_secondary_index_drop, the index-ddl helper's) could fall between the
    look and the batch, which then planned without them (CI, 2026-12-07).
    Here the process is held in its ANALYZE (the partition fence, taken
    exclusive by this session), the B-trees are dropped as catch-up does and
    two blocks indexed: once the fence is released, the batch must see them
    gone and derive nothing (sql/025 checks in the batch's own transaction,
    behind the fence; failed before: the mark moved to 118). Rebuilt, the
    process runs again and the rows are exact."""
    from test_index_daemon import wait_tip
    from tests.simnode import SimNode

    pg = pg_module
    node = SimNode(chain_dir=os.path.join(rt, "blockchain_116_7c9cd2"))
    node.start()
    d = key_rows_daemon(build_dir, tmp_path, node, create_db(pg, "kpb"), 100000)
    holder = Session(pg, "kpb")
    btrees = ("SELECT s.name FROM secondary_index_parts s "
              "WHERE NOT s.closed AND s.method <> 'hash' ORDER BY s.name")
    try:
        wait_tip(pg, "kpb", d, 116, timeout=300)
        deadline = time.monotonic() + 120
        while mark(pg, "kpb") < 116:
            assert time.monotonic() < deadline, d.log_text()[-3000:]
            time.sleep(0.2)
        names = [r[0] for r in psql(pg, "kpb", btrees + ";")]
        assert names, "no B-tree on the open partition"
        holder.run("SELECT pg_advisory_lock(4242424205);")
        # the process's next look finds them, then its ANALYZE waits
        for _ in range(600):
            if psql(pg, "kpb", "SELECT 1 FROM pg_stat_activity WHERE application_name = "
                               "'conduitd-key-rows' AND query LIKE 'SELECT cd_key_rows_analyze%' "
                               "AND wait_event_type = 'Lock';"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the key-rows process never waited in its ANALYZE")
        out = holder.run("SELECT count(*) FROM (SELECT cd_secondary_index_drop(name) "
                         "FROM (%s) b) x;" % btrees)
        assert out[-1].strip() == str(len(names)), out
        node.mine(2, txs_per_block=3)
        wait_tip(pg, "kpb", d, 118, timeout=120)
        holder.run("SELECT pg_advisory_unlock(4242424205);")
        deadline = time.monotonic() + 60
        while not re.search(r"key-rows: waiting: the open partition's B-trees are dropped",
                            d.log_text()) and mark(pg, "kpb") == 116:
            assert time.monotonic() < deadline, d.log_text()[-3000:]
            time.sleep(0.1)
        assert mark(pg, "kpb") == 116, "a batch derived blocks on dropped B-trees"
        # built again (as the end of a catch-up does): the batches resume
        holder.run("SELECT cd_secondary_index_create(name) FROM (%s) b;" % btrees)
        d.wait_for_log(r"key-rows: the open partition's B-trees are back", timeout=60)
        deadline = time.monotonic() + 60
        while mark(pg, "kpb") < 118:
            assert time.monotonic() < deadline, d.log_text()[-3000:]
            time.sleep(0.2)
        compare(pg, "kpb")
    finally:
        holder.close()
        d.stop()
        node.stop()


JIT_PROBE = r"""
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;
SET jit = on;
SET jit_above_cost = 0;
SELECT script_hash AS k FROM outputs GROUP BY script_hash ORDER BY count(*) DESC LIMIT 1 \gset
SELECT count(*) FROM cd_history('script', :'k', 1000);
SELECT count(*) FROM cd_utxos('script', :'k', 1000);
SELECT * FROM cd_balance('script', :'k');
"""


def test_key_pages_never_jit_compile(pg_module, build_dir, rt):
    """cd_history, cd_utxos and cd_balance plan their statements with
    jit = off whatever the caller's session says (sql/026): a caller with
    jit on (PostgreSQL's default) paid ~0.7 s of compilation for a page that
    runs in ~1 ms. Here the session asks JIT for every plan (jit_above_cost
    0) and auto_explain shows each statement's plan: the caller's own
    statements are compiled, none of the statements the functions run.
    Failed before: their statements showed a JIT section."""
    pg = pg_module
    if psql(pg, "postgres", "SELECT pg_jit_available();") != [("t",)]:
        pytest.skip("this PostgreSQL has no JIT")
    ci = create_db(pg, "kpj")
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_116_7c9cd2")])
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                          pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-d", "kpj"],
                         input=JIT_PROBE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, check=True).stdout
    # one auto_explain notice per statement: "duration: ... plan:", its
    # text, its plan (with a "JIT:" section when it was compiled)
    plans = re.split(r"NOTICE:\s+duration: [0-9.]+ ms\s+plan:\n", out)[1:]
    texts = [re.search(r"Query Text: (.*)", p).group(1) for p in plans]
    outer = [p for p, t in zip(plans, texts) if re.match(r"SELECT (count\(\*\)|\*) FROM cd_", t)]
    inner = [(t, p) for p, t in zip(plans, texts) if not re.match(r"SELECT (count\(\*\)|\*) FROM "
                                                                   r"cd_|SELECT script_hash", t)]
    # the probe works: the caller's own statements were compiled
    assert len(outer) == 3 and all("JIT:" in p for p in outer), out[-3000:]
    assert inner, "auto_explain showed no statement run inside the functions:\n" + out[-3000:]
    assert not [t for t, p in inner if "JIT:" in p], \
        [t[:120] for t, p in inner if "JIT:" in p]


# Synthetic best-chain blocks of one tx each above the indexed chain
# (heights 1000..), as many as the argument: `blocks` at a large chain's
# size, without its rows (the look at the mark reads only `blocks`).
MANY_BLOCKS = r"""
INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size, n_units, indexed,
                    on_best_chain)
SELECT sha256(('b' || g)::bytea), sha256(('p' || g)::bytea), 999 + g,
       sha256(('h' || g)::bytea) || sha256(('i' || g)::bytea) || sha256(('j' || g)::bytea),
       1, 1, 1, true, true
FROM generate_series(1, %d) g;
ANALYZE blocks;
"""

# One look at the mark and the rows of `blocks` it read (this transaction's
# own counters: pg_stat_xact_user_tables, current at once).
LOOK = r"""
BEGIN;
SELECT coalesce(cd_key_rows_usable()::text, 'NULL');
SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
WHERE relname = 'blocks';
COMMIT;
"""


def test_key_pages_read_a_bounded_part_of_blocks(pg_module, build_dir, rt):
    """A key page first asks whether the derived rows can serve it: are the
    txs of the best-chain blocks above the key-rows mark at most
    cd_key_rows_lag_max() (20,000)? sql/014 summed every block above the
    mark, and with key_rows off the mark stays -1: at mainnet's 900k blocks
    every history or UTXO page paid a 150 ms read of `blocks`. sql/027 stops
    after lag_max + 1 blocks (each holds at least its coinbase), with the
    same answer. Failed before: the look read all 30,117 block rows."""
    pg = pg_module
    ci = create_db(pg, "kpm")
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_116_7c9cd2")])
    psql(pg, "kpm", MANY_BLOCKS % 30000)
    lag = int(psql(pg, "kpm", "SELECT cd_key_rows_lag_max();")[0][0])
    assert lag == 20000

    def look(m):
        psql(pg, "kpm", "UPDATE key_rows_mark SET height = %d;" % m)
        (usable,), (read,) = psql(pg, "kpm", LOOK)
        return usable, int(read)

    # the mark at -1 (key_rows off): 30,117 txs above it, not usable; the
    # look reads at most lag_max + 1 rows
    usable, read = look(-1)
    assert usable == "NULL"
    assert read <= lag + 1, "the look read %d rows of blocks" % read
    # the boundary, the same as sql/014's sum: exactly lag_max txs above the
    # mark (heights 11000..30999) is usable, one more is not
    assert look(30999 - lag) == (str(30999 - lag), lag)
    usable, read = look(30998 - lag)
    assert usable == "NULL" and read == lag + 1
    # near the tip the look reads only the blocks above the mark
    assert look(30990) == ("30990", 9)
    # and the pages still equal the scan with the mark where the derived
    # rows are not usable (every key of the chain)
    psql(pg, "kpm", "UPDATE key_rows_mark SET height = -1;")
    compare(pg, "kpm")
