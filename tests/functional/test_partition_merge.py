"""Merging old height-range partitions in levels (issue 18, sql/019_partition_merge.sql).

Closed partitions of one level are merged, fan_in at a time, into one of the
next level (cd_partition_merge_prepare: a copy in one REPEATABLE READ
snapshot, no lock a writer waits for; cd_partition_merge_swap: a short
catalog transaction that refuses if a write into the range committed since
the copy). Checked here, with real PostgreSQL, the real daemon and the
simulated node:

- the queries of docs/QUERIES.md (test_index.py's tests, imported below)
  give the same rows over chain 116 spread over six partitions and merged
  down to levels 1 and 2 with fan_in 2; every row in the partition of its
  range, every secondary index valid, the staging indexes kept (no build
  under the swap's locks);
- a unit committed, or a purge run, into a source range between prepare
  and swap: the swap refuses ('changed'), drops the copy and loses nothing
  (without the fingerprint check the purged rows come back and the
  committed one is lost: this test fails then);
- a roll while a merge's copy holds its snapshot is not blocked;
- the daemon with a tiny partition_txs and partition_merge 2 rolls and
  merges several times (levels reached, count bounded, same data as a
  daemon without partitions), then a reorg across a merged boundary;
- a partition far larger than its level (an index upgraded to sql/017,
  or partition_txs lowered) is relevelled by its size (sql/024) and never
  copied with the small partitions rolled after it;
- kill -9 at random moments while rolling and merging ends in the same
  data, and no staging table is left once a later merge has run.
"""

import os
import re
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_index import CHAIN, create_db, run_index  # noqa: E402
# the documented queries' tests, run again over the merged database of the
# chain_db fixture below
from test_index import (  # noqa: E402,F401
    test_best_tip, test_block_contents, test_data_pushes_block116,
    test_documented_queries_use_the_secondary_indexes, test_history_pubkey,
    test_history_pubkey_hash_and_address, test_keys_of_each_script_type,
    test_outputs_with_spends, test_spent_by, test_tx_location)
from test_partitions import (TABLES, check_layout, partitions, psql,  # noqa: E402
                             secondary_on_every_partition)
from test_reorg import dump  # noqa: E402


def levels(pg, db):
    """[(lo, hi, level)] of transactions' partitions, lowest first (-1:
    MINVALUE / MAXVALUE)."""
    return [(int(lo), int(hi), int(lv)) for lo, hi, lv in psql(
        pg, db, "SELECT coalesce(lo, -1), coalesce(hi, -1), level FROM partitions "
                "WHERE tbl = 'transactions' ORDER BY lo NULLS FIRST;")]


def prepare(pg, db, fan_in):
    """Phase (a) in its REPEATABLE READ transaction: the sources' level or
    None."""
    r = psql(pg, db, "BEGIN ISOLATION LEVEL REPEATABLE READ; "
                     "SELECT cd_partition_merge_prepare(%d); COMMIT;" % fan_in)
    return int(r[0][0]) if r and r[0][0] != "" else None  # NULL: an empty line


def swap(pg, db):
    return psql(pg, db, "SELECT cd_partition_merge_swap();")[0][0]


def merge_all(pg, db, fan_in):
    """Merges until no candidate is left; returns how many merges."""
    n = 0
    while prepare(pg, db, fan_in) is not None:
        assert swap(pg, db) == "merged"
        # as the daemon does after the swap's commit
        psql(pg, db, "SELECT cd_partition_merge_drop_old();")
        n += 1
    return n


def staging_tables(pg, db):
    """The staging tables and the merged sources not dropped yet."""
    return psql(pg, db, "SELECT relname FROM pg_class WHERE relkind = 'r' AND (relname LIKE "
                        "'%\\_merging' OR relname LIKE 'cd\\_merge\\_old\\_%') ORDER BY 1;")


def index_chain(pg, db, build_dir, shared_data, cuts):
    """Chain 116 indexed in len(cuts)-1 runs, a roll after each but the
    last: one partition per run."""
    ci = create_db(pg, db)
    d = os.path.join(shared_data, CHAIN)
    hashes = open(os.path.join(d, "headers.txt")).read().split()
    cuts = cuts + [len(hashes)]
    for i in range(len(cuts) - 1):
        args = ["--unit-size", "4000", "--jobs", "2"]
        for h in range(cuts[i], cuts[i + 1]):
            args += ["--block", os.path.join(d, hashes[h]), "--height", str(h)]
        run_index(build_dir, ci, args)
        if i < len(cuts) - 2:
            assert psql(pg, db, "SELECT cd_partition_roll(1);")[0][0] != ""
    return ci


CUTS = [0, 20, 40, 60, 80, 100]


@pytest.fixture(scope="module")
def reference(pg_module, build_dir, shared_data):
    """Chain 116 indexed the same way without rolls: one partition."""
    index_chain(pg_module, "mergeref", build_dir, shared_data, [0])
    return dump(pg_module, "mergeref")


@pytest.fixture(scope="module")
def chain_db(pg_module, build_dir, shared_data, reference):
    """Chain 116 in six partitions (five closed), merged with fan_in 2:
    p0+p20 -> level 1, p40+p60 -> level 1, those two -> level 2; p80 (level
    0) and the open tip stay."""
    pg = pg_module
    index_chain(pg, "merge116", build_dir, shared_data, CUTS)
    assert len(check_layout(pg, "merge116")) == 6
    # the staging indexes' files, to find them again after the swap
    assert prepare(pg, "merge116", 2) == 0
    staged = dict(psql(pg, "merge116", "SELECT c.relname, c.relfilenode FROM partition_merge m, "
                                       "unnest(m.idx_stage) s JOIN pg_class c ON c.relname = s;"))
    finals = psql(pg, "merge116", "SELECT s, f FROM partition_merge m, "
                                  "unnest(m.idx_stage, m.idx_final) AS x(s, f);")
    # per table: its primary key or BRIN, and its secondary index
    assert len(finals) == 4 * 2 and len(staged) == len(finals)
    assert swap(pg, "merge116") == "merged"
    now = dict(psql(pg, "merge116", "SELECT relname, relfilenode FROM pg_class WHERE relkind = 'i';"))
    # each staging index became the final one: attached, not built again
    for s, f in finals:
        assert now.get(f) == staged[s], (s, f)
    # the sources were renamed out of the way, detached, and are dropped
    # after the swap's commit (a DROP under its locks unlinks their files)
    old = staging_tables(pg, "merge116")
    assert len(old) == 8 and all(t.startswith("cd_merge_old_") for t, in old), old
    assert psql(pg, "merge116", "SELECT count(*) FROM pg_inherits i JOIN pg_class c "
                                "ON c.oid = i.inhrelid WHERE c.relname LIKE 'cd_merge_old%';") \
        == [("0",)]
    assert psql(pg, "merge116", "SELECT cd_partition_merge_drop_old();") == [("8",)]
    assert merge_all(pg, "merge116", 2) == 2
    assert staging_tables(pg, "merge116") == []
    return "merge116"


def test_merged_layout(pg_module, chain_db, reference):
    pg = pg_module
    parts = check_layout(pg, chain_db)
    assert [lv for _, _, lv in levels(pg, chain_db)] == [2, 0, 0]
    # named like the first source: the level-2 one is <tbl>_p0 from MINVALUE
    assert [p for p, _, _ in parts][0] == "transactions_p0"
    for t in TABLES:
        assert [lv for _, _, lv in levels(pg, chain_db)] == [
            int(x[0]) for x in psql(pg, chain_db, "SELECT level FROM partitions WHERE tbl = '%s' "
                                                  "ORDER BY lo NULLS FIRST;" % t)]
    assert secondary_on_every_partition(pg, chain_db) == []
    assert dump(pg, chain_db) == reference
    # the level-2 partition holds heights 0-79
    rows = psql(pg, chain_db, """
        SELECT t.tableoid::regclass::text, min(b.height), max(b.height)
        FROM transactions t JOIN blocks b USING (block_id) GROUP BY 1 ORDER BY 2;""")
    assert [(int(lo), int(hi)) for _, lo, hi in rows] == [(0, 79), (80, 99), (100, 116)]
    # nothing left to merge with fan_in 2; 3 would not take level 0's one
    assert prepare(pg, chain_db, 2) is None and prepare(pg, chain_db, 3) is None
    assert prepare(pg, chain_db, 0) is None and swap(pg, chain_db) == "none"
    # sql/008's rule: every partition and column has a comment
    assert psql(pg, chain_db, """
        SELECT p.part FROM partitions p WHERE obj_description(p.part::regclass, 'pg_class') IS NULL
        OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = p.part::regclass
                   AND a.attnum > 0 AND col_description(a.attrelid, a.attnum) IS NULL);""") == []
    # a roll after merges still works and the status figures read the catalog
    assert psql(pg, chain_db, "SELECT partitions FROM cd_partitions_state();") == [("3",)]
    assert psql(pg, chain_db, "SELECT max_level, prepared FROM cd_partition_merge_state();") \
        == [("2", "f")]


# ---- a write into a source range between prepare and swap ----

def fresh_pair(pg, build_dir, shared_data, db):
    """Chain 116 in three partitions (two closed), and the block_id of a
    block of the first one, marked not indexed as a late fork block whose
    units were in flight at the roll would be (the only kind of block whose
    rows may still change in a closed partition)."""
    index_chain(pg, db, build_dir, shared_data, [0, 40, 80])
    lo, hi = [int(x) for x in psql(pg, db, "SELECT coalesce(lo, -1), hi FROM partitions "
                                           "WHERE part = 'transactions_p0';")[0]]
    # the one with the most pushdata rows (its coinbase's at least)
    bid = int(psql(pg, db, "SELECT block_id FROM pushdata WHERE block_id < %d GROUP BY 1 "
                           "ORDER BY count(*) DESC, 1 LIMIT 1;" % hi)[0][0])
    psql(pg, db, "UPDATE blocks SET indexed = false WHERE block_id = %d;" % bid)
    return bid


def rows_of(pg, db, bid):
    return [int(psql(pg, db, "SELECT count(*) FROM %s WHERE block_id = %d;" % (t, bid))[0][0])
            for t in TABLES]


def test_purge_between_prepare_and_swap(pg_module, build_dir, shared_data):
    pg = pg_module
    bid = fresh_pair(pg, build_dir, shared_data, "mergepurge")
    before = partitions(pg, "mergepurge")
    n = rows_of(pg, "mergepurge", bid)
    assert n[0] > 0 and n[2] > 0 and n[3] > 0, n
    assert prepare(pg, "mergepurge", 2) == 0
    assert len(staging_tables(pg, "mergepurge")) == 4
    # the purge of the not-indexed block, as the daemon runs it at start
    assert psql(pg, "mergepurge", "SELECT cd_block_purge(%d);" % bid) == [("t",)]
    assert swap(pg, "mergepurge") == "changed"
    # nothing swapped, the copy dropped, the purged rows stay purged
    assert partitions(pg, "mergepurge") == before
    assert staging_tables(pg, "mergepurge") == []
    assert psql(pg, "mergepurge", "SELECT count(*) FROM partition_merge;") == [("0",)]
    assert rows_of(pg, "mergepurge", bid) == [0, 0, 0, 0]
    check_layout(pg, "mergepurge")
    # the next attempt copies again, and that one goes through
    assert prepare(pg, "mergepurge", 2) == 0
    assert swap(pg, "mergepurge") == "merged"
    assert rows_of(pg, "mergepurge", bid) == [0, 0, 0, 0]
    assert [lv for _, _, lv in levels(pg, "mergepurge")] == [1, 0]
    check_layout(pg, "mergepurge")


def test_unit_commit_between_prepare_and_swap(pg_module, build_dir, shared_data):
    pg = pg_module
    bid = fresh_pair(pg, build_dir, shared_data, "mergeunit")
    before = partitions(pg, "mergeunit")
    assert prepare(pg, "mergeunit", 2) == 0
    # a unit of that block commits: its rows with its indexed_units row, in
    # one transaction, through the parents, as a parser's COPY writes them
    psql(pg, "mergeunit", """
        BEGIN;
        INSERT INTO transactions (block_id, tx_pos, tx_offset, tx_size, tx_hash)
            VALUES (%d, 100000, 0, 1, sha256('merge-test'::bytea));
        INSERT INTO indexed_units (block_id, unit_no, first_tx, tx_count)
            VALUES (%d, 1000, 100000, 1);
        COMMIT;""" % (bid, bid))
    assert swap(pg, "mergeunit") == "changed"
    assert partitions(pg, "mergeunit") == before
    assert staging_tables(pg, "mergeunit") == []
    # the committed row was not lost with the stale copy
    assert psql(pg, "mergeunit", "SELECT count(*) FROM transactions WHERE block_id = %d "
                                 "AND tx_pos = 100000;" % bid) == [("1",)]
    check_layout(pg, "mergeunit")


def test_roll_not_blocked_by_a_merge_copy(pg_module, build_dir, shared_data):
    """A roll (locks on the parents) while a prepare's transaction is open
    on the sources: the roll goes through (sql/017's LOCK TABLE without ONLY
    also locked every partition and would time out here)."""
    pg = pg_module
    db = "mergeroll"
    index_chain(pg, db, build_dir, shared_data, [0, 40, 80])
    p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg.sockdir,
                          "-p", str(pg.port), "-U", "postgres", "-d", db],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"SET application_name = 'merge_copy';\n"
                      b"BEGIN ISOLATION LEVEL REPEATABLE READ;\n"
                      b"SELECT cd_partition_merge_prepare(2);\n")
        p.stdin.flush()
        # until that transaction holds its locks on the sources, idle
        deadline = time.monotonic() + 120
        while psql(pg, db, "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l "
                           "ON l.pid = a.pid WHERE a.application_name = 'merge_copy' "
                           "AND a.state = 'idle in transaction' AND l.granted "
                           "AND l.relation = 'transactions_p0'::regclass;") != [("1",)]:
            assert p.poll() is None, p.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # no lock of it on a parent (nor on the partitions but the sources)
        assert psql(pg, db, "SELECT l.relation::regclass::text FROM pg_stat_activity a "
                            "JOIN pg_locks l ON l.pid = a.pid WHERE a.application_name = "
                            "'merge_copy' AND l.relation IN ('transactions'::regclass, "
                            "'inputs'::regclass, 'pushdata'::regclass, 'outputs'::regclass) "
                            "OR l.relation IN (SELECT part::regclass FROM partitions "
                            "WHERE hi IS NULL);") == []
        b = psql(pg, db, "SELECT cd_partition_roll(1);")[0][0]
        assert b != ""
        p.stdin.write(b"COMMIT;\n")
        p.stdin.close()
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()
    finally:
        if p.poll() is None:
            p.kill()
    # the rolled tip was not a source: the prepared merge still swaps in
    assert swap(pg, db) == "merged"
    assert [lv for _, _, lv in levels(pg, db)] == [1, 0, 0]
    check_layout(pg, db)
    assert secondary_on_every_partition(pg, db) == []


# ---- the daemon: rolls and merges while it syncs, a reorg, kills ----

def settled(pg, db, fan_in):
    """No merge left to do: fewer than fan_in closed partitions of each
    level, no copy awaiting its swap, no staging table."""
    return psql(pg, db, """
        SELECT NOT EXISTS (SELECT 1 FROM partitions WHERE tbl = 'transactions'
                           AND hi IS NOT NULL GROUP BY level HAVING count(*) >= %d)
           AND NOT EXISTS (SELECT 1 FROM partition_merge);""" % fan_in) == [("t",)] \
        and staging_tables(pg, db) == []


def settle(pg, db, d, max_txs, fan_in):
    """Until the tip is below max_txs (no roll to come) and the merges are
    done."""
    from test_reorg import wait_until
    wait_until(lambda: int(psql(pg, db, "SELECT cd_partition_tip_txs();")[0][0]) < max_txs
               and settled(pg, db, fan_in), d, "partitions settled", timeout=180)


def check_bounded(pg, db, fan_in):
    """At most fan_in - 1 closed partitions per level; returns the levels."""
    lv = levels(pg, db)
    closed = [l for _, hi, l in lv if hi >= 0]
    for l in set(closed):
        assert closed.count(l) < fan_in, lv
    # tiered: the levels never increase from the oldest range to the newest
    assert closed == sorted(closed, reverse=True), lv
    return lv


def test_sync_rolls_and_merges_then_reorg_across_a_merged_boundary(
        pg_module, build_dir, simnode_factory, tmp_path):
    from test_partitions import status_file
    from test_reorg import fresh_index, start, wait_tip
    pg = pg_module
    node = simnode_factory(generate=60, txs_per_block=20, seed=5)
    # blocks trickle in (~3 a second): the helper's looks (every 2 s) roll
    # the tip many times while the daemon indexes
    node.misbehave("slow_block", rate=16 << 10, count=None)
    ci = create_db(pg, "mergesync")
    dd = tmp_path / "mergesync"
    # live indexes: every closed partition is a candidate as soon as it
    # closes, so merges run while the daemon indexes and rolls
    extra = ["--relay", "off", "--partition-txs", "100", "--partition-merge", "2",
             "--catchup-indexes", "live", "--status-interval", "1"]
    d = start(build_dir, dd, node.port, ci, extra)
    try:
        wait_tip(pg, "mergesync", d, node, timeout=240)
        node.clear_faults()
        settle(pg, "mergesync", d, 100, 2)
        check_layout(pg, "mergesync")
        lv = check_bounded(pg, "mergesync", 2)
        # 1200 txs in partitions of >= 100 (overshot while blocks come in):
        # 4+ rolls, merged up to level 2+
        rolls = d.log_text().count("tip partition closed")
        merges = d.log_text().count("partition-merge: merged")
        assert rolls >= 4 and merges >= 3, (rolls, merges, lv)
        assert max(l for _, _, l in lv) >= 2, lv
        # each merge removes one partition: the count is what it says
        assert len(lv) == 1 + rolls - merges, (lv, rolls, merges)
        assert secondary_on_every_partition(pg, "mergesync") == []
        # the status, once it has read the count after the last merge
        from test_reorg import wait_until
        wait_until(lambda: status_file(dd).get("partitions") == str(len(lv))
                   and status_file(dd).get("partition_merges") == str(merges),
                   d, "the status's partitions %d and merges %d" % (len(lv), merges))
        st = status_file(dd)
        assert st["partition_level"] == str(max(l for _, _, l in lv)), st
        assert st["partition_merging"] == "-1", st

        # a reorg from 3 blocks below the lowest block above the highest
        # merged partition's bound (its disconnected blocks straddle it), or
        # if no indexed block is above that bound yet, from 3 blocks below
        # the tip (disconnected: in the merged partition; the new branch:
        # in the tip above it)
        tip_h = node.chain.height
        top = max(hi for _, hi, l in lv if l >= 1)
        h1 = psql(pg, "mergesync", "SELECT coalesce(min(height), -1) FROM best_blocks "
                                   "WHERE block_id >= %d;" % top)
        h1 = int(h1[0][0])
        fork = h1 - 3 if h1 >= 0 else tip_h - 3
        assert 1 <= fork < tip_h, (h1, fork, tip_h)
        node.reorg(fork_height=fork, new_len=tip_h - fork + 2, txs_per_block=20)
        wait_tip(pg, "mergesync", d, node, timeout=120)
        d.wait_for_log(r"reorg: indexed best chain switched: fork height=%d" % fork)
        settle(pg, "mergesync", d, 100, 2)
        check_layout(pg, "mergesync")
        check_bounded(pg, "mergesync", 2)
        assert secondary_on_every_partition(pg, "mergesync") == []
        # the disconnected blocks' rows are kept (the reorg only flips
        # on_best_chain), in a merged partition (the merges after the reorg
        # may have taken the new branch's too)
        sides = psql(pg, "mergesync", """
            SELECT count(*), count(*) FILTER (WHERE p.level >= 1)
            FROM transactions t JOIN blocks b USING (block_id)
            JOIN partitions p ON p.part = t.tableoid::regclass::text
            WHERE NOT b.on_best_chain AND b.height > %d;""" % fork)
        assert int(sides[0][0]) >= 3 * 20 and int(sides[0][1]) >= 1, sides
        got = dump(pg, "mergesync")
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    # a daemon without partitions indexing the winning chain: the same rows
    assert got == fresh_index(pg, build_dir, tmp_path, node, "mergefresh")


def size_level(n, unit, fan_in):
    """sql/024's level by size: the highest L with n >= unit * fan_in^L."""
    lv, nominal = 0, unit * fan_in
    while n >= nominal:
        lv, nominal = lv + 1, nominal * fan_in
    return lv


def part_txs(pg, db):
    """[(part, txs)] of transactions' partitions, lowest first (txs:
    indexed_units in its range)."""
    return [(p, int(n)) for p, n in psql(pg, db, """
        SELECT p.part, (SELECT coalesce(sum(u.tx_count), 0) FROM indexed_units u
                        WHERE u.block_id >= coalesce(p.lo, -9223372036854775808)
                          AND u.block_id < coalesce(p.hi, 9223372036854775807))
        FROM partitions p WHERE p.tbl = 'transactions' ORDER BY p.lo NULLS FIRST;""")]


def test_relevel_by_size_never_breaks_the_descending_levels(pg_module, build_dir,
                                                            shared_data):
    """sql/024 alone: the oldest partition is raised as far as its size
    says; a big partition behind a small one is capped at the small one's
    level (raised, it would sit above its older neighbour and the oldest
    two of level 0 would not be adjacent); a second call changes nothing;
    the merges then leave _p0 alone."""
    pg = pg_module
    db = "relevel116"
    # heights 0-59 (_p0), 60-63 (small), 64-99 (big), 100-103, the tip
    index_chain(pg, db, build_dir, shared_data, [0, 60, 64, 100, 104])
    parts = part_txs(pg, db)
    (p0, n0), (_, small), (_, big) = parts[0], parts[1], parts[2]
    assert p0 == "transactions_p0" and len(parts) == 5, parts
    want_p0 = size_level(n0, small, 2)
    assert want_p0 >= 2 and size_level(big, small, 2) >= 1, parts  # the cap holds the big one
    got = psql(pg, db, "SELECT part, txs, old_level, new_level "
                       "FROM cd_partition_relevel(2, %d);" % small)
    assert got == [(p0, str(n0), "0", str(want_p0))], (got, parts)
    assert [lv for _, _, lv in levels(pg, db)] == [want_p0, 0, 0, 0, 0]
    # the four tables alike
    assert psql(pg, db, "SELECT DISTINCT tbl FROM partitions WHERE level > 0 ORDER BY 1;") \
        == [(t,) for t in sorted(TABLES)]
    assert psql(pg, db, "SELECT count(*) FROM cd_partition_relevel(2, %d);" % small) == [("0",)]
    # nothing with merging or rolling off
    assert psql(pg, db, "SELECT count(*) FROM cd_partition_relevel(1, 1) UNION ALL "
                        "SELECT count(*) FROM cd_partition_relevel(2, 0);") == [("0",), ("0",)]
    q_file = "SELECT relfilenode FROM pg_class WHERE relname = 'transactions_p0';"
    p0_file = psql(pg, db, q_file)
    assert merge_all(pg, db, 2) == 1  # the small and the big one; the fourth waits
    assert [lv for _, _, lv in levels(pg, db)] == [want_p0, 1, 0, 0]
    assert psql(pg, db, q_file) == p0_file
    check_layout(pg, db)


def test_a_big_old_partition_merges_by_its_size(pg_module, build_dir, simnode_factory, tmp_path):
    """An index upgraded to sql/017 is one partition _p0 holding its whole
    past, closed by the first roll; likewise the tip when partition_txs is
    lowered. Relevelled by its size (sql/024), it is never copied with each
    small partition rolled after it: before, the second roll's level-0
    merge copied it whole (this test fails then: _p0's file changes)."""
    from test_reorg import fresh_index, start, wait_tip
    pg = pg_module
    node = simnode_factory(generate=40, txs_per_block=20, seed=7)
    ci = create_db(pg, "mergebig")
    dd = tmp_path / "mergebig"
    # the past, indexed without a roll (partition_txs at its default)
    d = start(build_dir, dd, node.port, ci, ["--relay", "off", "--catchup-indexes", "live"])
    try:
        wait_tip(pg, "mergebig", d, node)
    finally:
        assert d.stop() == 0, d.log_text()[-4000:]
    assert levels(pg, "mergebig") == [(-1, -1, 0)]
    big = int(psql(pg, "mergebig", "SELECT cd_partition_tip_txs();")[0][0])
    assert size_level(big, 100, 2) >= 2, big
    q_file = "SELECT relfilenode FROM pg_class WHERE relname = 'transactions_p0';"
    p0_file = psql(pg, "mergebig", q_file)

    # more blocks, indexed with partition_txs 100 and merges of 2: the
    # first roll closes _p0 with all of the past, the next ones ~100 each
    node.mine(30, txs_per_block=20)
    node.misbehave("slow_block", rate=16 << 10, count=None)
    d = start(build_dir, dd, node.port, ci,
              ["--relay", "off", "--partition-txs", "100", "--partition-merge", "2",
               "--catchup-indexes", "live", "--status-interval", "1"])
    try:
        wait_tip(pg, "mergebig", d, node, timeout=240)
        node.clear_faults()
        settle(pg, "mergebig", d, 100, 2)
        # the roll may close _p0 with a block or two of the new ones
        pat = (r"partition-merge: transactions_p0 holds (\d+) txs, as many as a partition "
               r"of level (\d+) \(partition_txs 100, partition_merge 2\): level raised from 0")
        d.wait_for_log(pat)
        m = re.search(pat, d.log_text())
        n, want_level = int(m.group(1)), int(m.group(2))
        assert n >= big and want_level == size_level(n, 100, 2), (big, m.group(0))
        check_layout(pg, "mergebig")
        lv = check_bounded(pg, "mergebig", 2)
        # _p0 kept its level and its file: never copied
        assert lv[0][0] == -1 and lv[0][2] == want_level, lv
        assert psql(pg, "mergebig", q_file) == p0_file
        # the small ones merged among themselves
        merges = d.log_text().count("partition-merge: merged")
        assert merges >= 1 and max(l for _, hi, l in lv[1:] if hi >= 0) >= 1, (merges, lv)
        assert secondary_on_every_partition(pg, "mergebig") == []
        got = dump(pg, "mergebig")
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    assert got == fresh_index(pg, build_dir, tmp_path, node, "mergebigfresh")


def test_kill9_while_merging(pg_module, build_dir, simnode_factory, tmp_path):
    """kill -9 with a merge's copy open (held on the catalog's lock), and with
    a copy prepared but not swapped (the swap kept busy): the same data
    after the restart, and no staging table once the next merges ran. A
    restart with merging off in between drops the prepared copy (before,
    it stayed: nothing but a merge run dropped it)."""
    from test_reorg import start, wait_tip, wait_until
    pg = pg_module
    db = "mergekill"
    node = simnode_factory(generate=40, txs_per_block=20, seed=9)
    ci = create_db(pg, db)
    dd = tmp_path / db
    extra = ["--relay", "off", "--partition-txs", "150", "--partition-merge", "2",
             "--catchup-indexes", "live"]
    d = start(build_dir, dd, node.port, ci, extra)
    try:
        wait_tip(pg, db, d, node, timeout=240)
        settle(pg, db, d, 150, 2)
        # one closed partition of level 0 (the next roll makes a candidate);
        # not _p0: the catch-up closed it with all 40 blocks, several times
        # partition_txs, and sql/024 raises its level by size
        while not [1 for lo, hi, l in levels(pg, db) if l == 0 and hi >= 0 and lo >= 0]:
            node.mine(8, txs_per_block=20)
            wait_tip(pg, db, d, node)
            settle(pg, db, d, 150, 2)
        before = len(d.lines)

        # 1. kill -9 mid-copy: the copy is held after its first table by a
        # lock on the catalog it writes its rows to (taken before the
        # candidate exists), then the daemon is killed
        holder = subprocess.Popen(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.sockdir, "-p", str(pg.port),
             "-U", "postgres", "-d", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        holder.stdin.write(b"SET application_name = 'holder'; BEGIN; "
                           b"LOCK TABLE partition_merge IN SHARE MODE;\n")
        holder.stdin.flush()
        wait_until(lambda: psql(pg, db, "SELECT count(*) FROM pg_stat_activity WHERE "
                                        "application_name = 'holder' AND state = "
                                        "'idle in transaction';") == [("1",)], d, "the lock")
        node.mine(8, txs_per_block=20)
        d.wait_for_log(r"partition-merge: copying 2 partitions of level 0", timeout=120,
                       start=before)
        # the copy has filled transactions_merging and waits
        wait_until(lambda: psql(pg, db, "SELECT count(*) FROM pg_locks WHERE NOT granted AND "
                                        "relation = 'partition_merge'::regclass;") == [("1",)],
                   d, "the copy waiting")
    finally:
        d.kill()
    holder.stdin.write(b"ROLLBACK;\n")
    holder.stdin.close()
    holder.wait(timeout=60)
    # the killed copy's transaction never commits: its backend ends (at
    # the latest when it tries to send the result to the dead helper)
    deadline = time.monotonic() + 120
    while psql(pg, db, "SELECT count(*) FROM pg_stat_activity WHERE "
                       "query LIKE '%cd_partition_merge_prepare%' "
                       "AND pid <> pg_backend_pid();") != [("0",)]:
        assert time.monotonic() < deadline, "the killed copy's backend still there"
        time.sleep(0.1)
    assert psql(pg, db, "SELECT count(*) FROM partition_merge;") == [("0",)]
    assert staging_tables(pg, db) == []

    # 2. a copy prepared, its swap kept busy by a reader of a parent, then kill -9
    holder = subprocess.Popen(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.sockdir, "-p", str(pg.port),
         "-U", "postgres", "-d", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    # the lock first: a merge the daemon swapped before it would not be kept
    holder.stdin.write(b"SET application_name = 'holder'; BEGIN; "
                       b"LOCK TABLE ONLY outputs IN ACCESS SHARE MODE;\n")
    holder.stdin.flush()
    deadline = time.monotonic() + 60
    while psql(pg, db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                       "'holder' AND state = 'idle in transaction';") != [("1",)]:
        assert time.monotonic() < deadline, "the holder's lock"
        time.sleep(0.1)
    d = start(build_dir, dd, node.port, ci, extra)
    try:
        d.wait_for_log(r"partition-merge: the tables stayed busy; the copy is kept", timeout=120)
        assert psql(pg, db, "SELECT count(*) FROM partition_merge;") == [("4",)]
        assert len(staging_tables(pg, db)) == 4
    finally:
        d.kill()
    holder.stdin.write(b"ROLLBACK;\n")
    holder.stdin.close()
    holder.wait(timeout=60)

    # 2b. a restart with merging off: its one run drops the kept copy (its
    # disk), the layout stays; the layout and the data are the same
    layout = levels(pg, db)
    off = ["--relay", "off", "--partition-txs", "150", "--partition-merge", "0",
           "--catchup-indexes", "live"]
    d = start(build_dir, dd, node.port, ci, off)
    try:
        d.wait_for_log(r"partition-merge: off \(partition_merge = 0\): dropped the 4 staging "
                       r"tables of a copy an earlier run prepared", timeout=120)
        assert psql(pg, db, "SELECT count(*) FROM partition_merge;") == [("0",)]
        assert staging_tables(pg, db) == []
        assert levels(pg, db) == layout
    finally:
        assert d.stop() == 0, d.log_text()[-4000:]

    # 3. the restart: the kept copy swapped in (or copied again), more
    # merges as blocks come, the same data as a daemon without partitions
    node.mine(8, txs_per_block=20)
    d = start(build_dir, dd, node.port, ci, extra)
    try:
        wait_tip(pg, db, d, node, timeout=240)
        settle(pg, db, d, 150, 2)
        assert "partition-merge: merged" in d.log_text()
        got = dump(pg, db)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    check_layout(pg, db)
    check_bounded(pg, db, 2)
    assert staging_tables(pg, db) == []
    assert secondary_on_every_partition(pg, db) == []
    from test_reorg import fresh_index
    assert got == fresh_index(pg, build_dir, tmp_path, node, db + "fresh")


def test_kill9_rounds_with_rolls_and_merges(pg_module, build_dir, simnode_factory, tmp_path):
    """test_crash_torture's rounds with a tiny partition_txs, merges of 2
    and live indexes (so merges run between the kills)."""
    from test_crash_torture import torture
    torture(pg_module, build_dir, simnode_factory, tmp_path, "tortmerge",
            ["--partition-txs", "400", "--partition-merge", "2", "--catchup-indexes", "live"])
    pg = pg_module
    check_layout(pg, "tortmerge")
    assert secondary_on_every_partition(pg, "tortmerge") == []
    # how far the daemon merged between the kills depends on the timing;
    # the next merges (what its next run does) leave the same rows, no
    # staging or old table, and levels above 0
    want = dump(pg, "tortmerge")
    merge_all(pg, "tortmerge", 2)
    assert staging_tables(pg, "tortmerge") == []
    assert max(l for _, _, l in levels(pg, "tortmerge")) >= 1
    check_layout(pg, "tortmerge")
    check_bounded(pg, "tortmerge", 2)
    assert dump(pg, "tortmerge") == want
