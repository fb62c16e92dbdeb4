"""Height-range partitions of the row tables (issue 18, sql/017_partitions.sql).

transactions, inputs, pushdata and outputs are partitioned by block_id; the
daemon's index-ddl helper closes the open tip partition once it holds
partition_txs transactions (cd_partition_roll) and opens a new one. Checked
here, with real PostgreSQL, the real daemon and the simulated node:

- the queries of docs/QUERIES.md (test_index.py's tests, imported below)
  give the same rows over a database whose rows are spread over four
  partitions (chain 116 indexed in four runs, a roll between each);
- a sync with a tiny partition_txs rolls several times, during catch-up
  (secondary indexes dropped): every row is in the partition of its
  block_id's range, every closed partition held partition_txs when closed,
  the secondary indexes are valid on every partition at the end, and the
  best-chain views equal those of a daemon without partitions;
- a reorg whose disconnected blocks straddle a partition boundary ends in
  the same data as a fresh daemon's index of the winning chain;
- a database of the previous schema (016) with rows in it becomes
  partitioned by the migration without rebuilding an index;
- kill -9 at random moments with rolls happening ends in the same data
  (test_crash_torture's rounds with a tiny partition_txs).
"""

import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from test_index import CHAIN, create_db, run_index  # noqa: E402
from test_index import psql as psql_  # noqa: E402
# the documented queries' tests, run again here over the partitioned
# database of the chain_db fixture below (pytest resolves a test's fixtures
# in the module that collects it)
from test_index import (  # noqa: E402,F401
    test_best_tip, test_block_contents, test_data_pushes_block116,
    test_documented_queries_use_the_secondary_indexes, test_history_pubkey,
    test_history_pubkey_hash_and_address, test_keys_of_each_script_type,
    test_outputs_with_spends, test_spent_by, test_tx_location)
from test_catchup import hash_indexes  # noqa: E402
from test_reorg import dump, fresh_index, start, wait_tip  # noqa: E402

TABLES = ["transactions", "inputs", "pushdata", "outputs"]


def psql(pg, db, sql, **variables):
    """test_index.psql, with PostgreSQL's error in the exception's text."""
    try:
        return psql_(pg, db, sql, **variables)
    except subprocess.CalledProcessError as e:
        raise AssertionError("psql failed: %s\n%s" % (sql, e.stderr.decode())) from None


def partitions(pg, db, tbl="transactions"):
    """[(part, lo, hi)] of one table, lowest first (-1: MINVALUE / MAXVALUE)."""
    return [(p, int(lo), int(hi)) for p, lo, hi in psql(
        pg, db, "SELECT part, coalesce(lo, -1), coalesce(hi, -1) FROM partitions "
                "WHERE tbl = '%s' ORDER BY lo NULLS FIRST;" % tbl)]


def check_layout(pg, db):
    """The catalog matches PostgreSQL's, the four tables have the same
    bounds, and each partition holds exactly the rows of its range (the
    units' tx counts of the blocks in it). Returns the transactions' list."""
    want = partitions(pg, db)
    for t in TABLES:
        got = partitions(pg, db, t)
        assert [(lo, hi) for _, lo, hi in got] == [(lo, hi) for _, lo, hi in want], t
        # PostgreSQL's own idea of each partition's bound
        bounds = {p: b.replace("'", "") for p, b in psql(
            pg, db, "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) "
                    "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = '%s'::regclass;" % t)}
        assert sorted(bounds) == sorted(p for p, _, _ in got), t
        for p, lo, hi in got:
            assert bounds[p] == "FOR VALUES FROM (%s) TO (%s)" % (
                "MINVALUE" if lo < 0 else lo, "MAXVALUE" if hi < 0 else hi), (p, bounds[p])
    # contiguous: each one starts where the one below ends; one open tip
    for (_, _, hi), (_, lo, _) in zip(want, want[1:]):
        assert hi == lo
    assert want[0][1] == -1 and want[-1][2] == -1
    for p, lo, hi in want:
        cond = "block_id >= %d" % lo if lo >= 0 else "true"
        if hi >= 0:
            cond += " AND block_id < %d" % hi
        n = psql(pg, db, "SELECT (SELECT count(*) FROM %s), "
                         "(SELECT coalesce(sum(tx_count), 0) FROM indexed_units WHERE %s);"
                 % (p, cond))
        assert n[0][0] == n[0][1], (p, n)
    return want


def secondary_on_every_partition(pg, db):
    """[(partition, index, state)] of the secondary indexes (sql/013's
    catalog) not valid on a partition (empty: all there, each partition
    with its own)."""
    n = psql(pg, db, "SELECT (SELECT count(*) FROM cd_secondary_indexes_state()), "
                     "(SELECT count(*) FROM secondary_indexes) * (SELECT count(*) FROM partitions "
                     "WHERE tbl = 'transactions');")
    assert n[0][0] == n[0][1], n
    return psql(pg, db, "SELECT tbl, name, state FROM cd_secondary_indexes_state() "
                        "WHERE state <> 'valid' ORDER BY 1, 2;")


def index_files(pg, db, closed):
    """{index: relfilenode} of the secondary indexes of the closed
    partitions (closed True) or of the open tip (False)."""
    return dict(psql(pg, db, "SELECT s.name, c.relfilenode FROM cd_secondary_indexes_state() s "
                             "JOIN pg_class c ON c.relname = s.name WHERE s.closed = %s;"
                     % ("true" if closed else "false")))


# ---- the documented queries over four partitions ----

@pytest.fixture(scope="module")
def chain_db(pg_module, build_dir, shared_data):
    """Chain 116 indexed in four runs of conduit-index-file with a roll
    (cd_partition_roll(1): any txs are enough) after each of the first
    three: its rows in four partitions of each table."""
    ci = create_db(pg_module, "part116")
    d = os.path.join(shared_data, CHAIN)
    hashes = open(os.path.join(d, "headers.txt")).read().split()
    cuts = [0, 40, 80, 100, len(hashes)]
    for i in range(4):
        args = ["--unit-size", "4000", "--jobs", "2"]
        for h in range(cuts[i], cuts[i + 1]):
            args += ["--block", os.path.join(d, hashes[h]), "--height", str(h)]
        run_index(build_dir, ci, args)
        if i < 3:
            b = psql(pg_module, "part116", "SELECT cd_partition_roll(1);")[0][0]
            assert b != ""
    parts = check_layout(pg_module, "part116")
    assert len(parts) == 4
    assert secondary_on_every_partition(pg_module, "part116") == []
    return "part116"


def test_partitioned_chain_layout(pg_module, chain_db):
    # the rows of heights 0-39 are all in _p0, 100-116 in the open tip
    rows = psql(pg_module, chain_db, """
        SELECT t.tableoid::regclass::text, min(b.height), max(b.height)
        FROM transactions t JOIN blocks b USING (block_id)
        GROUP BY 1 ORDER BY 2;""")
    assert [(int(lo), int(hi)) for _, lo, hi in rows] == [(0, 39), (40, 79), (80, 99), (100, 116)]
    assert rows[0][0] == "transactions_p0"
    # the roll is a no-op when the tip is not full, or nothing was registered
    assert psql(pg_module, chain_db, "SELECT cd_partition_roll(1000000) IS NULL, "
                                     "cd_partition_roll(0) IS NULL;") == [("t", "t")]
    # every table, partition and column has a comment (sql/008's rule)
    assert psql(pg_module, chain_db, """
        SELECT p.part FROM partitions p WHERE obj_description(p.part::regclass, 'pg_class') IS NULL
        OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = p.part::regclass
                   AND a.attnum > 0 AND col_description(a.attrelid, a.attnum) IS NULL);""") == []


# ---- the daemon: catch-up with rolls, then a reorg across a boundary ----

def status_file(dd):
    path = os.path.join(str(dd), "regtest", "status")
    if not os.path.exists(path):
        path = os.path.join(str(dd), "status")
    kv = {}
    for line in open(path):
        k, _, v = line.strip().partition("=")
        kv[k] = v
    return kv


def settle(pg, db, d, max_txs):
    """Until the open tip holds fewer than max_txs: with no block coming,
    the daemon rolls no more and the layout can be read in several
    statements."""
    from test_reorg import wait_until
    wait_until(lambda: int(psql(pg, db, "SELECT cd_partition_tip_txs();")[0][0]) < max_txs,
               d, "the tip partition below %d txs" % max_txs)


def test_sync_rolls_then_reorg_across_a_boundary(pg_module, build_dir, simnode_factory,
                                                 tmp_path):
    pg = pg_module
    node = simnode_factory(generate=60, txs_per_block=20, seed=5)
    # blocks trickle in: the sync spans several of the helper's looks (every
    # 2 s), so the tip is rolled several times while the daemon indexes
    node.misbehave("slow_block", rate=48 << 10, count=None)
    ci = create_db(pg, "partd")
    dd = tmp_path / "partd"
    extra = ["--relay", "off", "--partition-txs", "150", "--catchup-threshold", "5",
             "--status-interval", "1"]
    d = start(build_dir, dd, node.port, ci, extra)
    try:
        wait_tip(pg, "partd", d, node, timeout=240)
        node.clear_faults()
        d.wait_for_log(r"secondary indexes (ready|present)", timeout=120)
        # catch-up mode: the indexes were dropped while far behind
        assert "secondary indexes dropped" in d.log_text()
        settle(pg, "partd", d, 150)
        parts = check_layout(pg, "partd")
        assert len(parts) >= 3, parts
        assert d.log_text().count("tip partition closed") == len(parts) - 1
        # each closed partition held partition_txs or more when it closed
        for p, lo, hi in parts[:-1]:
            assert int(psql(pg, "partd", "SELECT count(*) FROM %s;" % p)[0][0]) >= 150, p
        # built at the end of catch-up on every partition, closed or open
        assert secondary_on_every_partition(pg, "partd") == []
        # a partition closed in catch-up mode gets its indexes right after
        # its roll, not at the end: the helper builds them between its looks
        # at the tip
        lines = d.log_text().splitlines()
        i_drop = next(i for i, l in enumerate(lines) if "secondary indexes dropped" in l)
        i_end = next(i for i, l in enumerate(lines)
                     if re.search(r"building secondary indexes|secondary indexes (ready|present)", l))
        rolled = [l for l in lines[i_drop:i_end] if "tip partition closed" in l]
        built = [l for l in lines[i_drop:i_end] if "catch-up mode: built" in l]
        # the trickle makes the tip roll during the catch-up (3-4 times in
        # the runs measured): without a roll there this would check nothing
        assert rolled and built, "\n".join(lines[i_drop:i_end])[-4000:]
        # the status (written every status_interval, 1 s here)
        wait_tip(pg, "partd", d, node)
        st = status_file(dd)
        assert int(st.get("partitions", "0")) >= len(parts) - 1, st

        # a reorg whose disconnected blocks straddle a boundary: from 3
        # blocks below the first block above the highest boundary that has
        # best-chain blocks above it, to the tip
        tip_h = node.chain.height
        for _, b, _ in reversed(parts[1:]):
            h1 = int(psql(pg, "partd", "SELECT coalesce(min(height), -1) FROM best_blocks "
                                       "WHERE block_id >= %d;" % b)[0][0])
            if h1 >= 0:
                break
        assert h1 - 3 >= 1 and h1 <= tip_h, (h1, tip_h)
        fork = h1 - 3
        node.reorg(fork_height=fork, new_len=tip_h - fork + 2, txs_per_block=20)
        wait_tip(pg, "partd", d, node, timeout=120)
        d.wait_for_log(r"reorg: indexed best chain switched: fork height=%d" % fork)
        settle(pg, "partd", d, 150)
        check_layout(pg, "partd")
        # the disconnected blocks' rows stay where they were (both sides of
        # the boundary), the new branch's are in the tip(s) above
        sides = psql(pg, "partd", """
            SELECT count(DISTINCT t.tableoid) FROM transactions t JOIN blocks b USING (block_id)
            WHERE NOT b.on_best_chain AND b.height > %d;""" % fork)
        assert int(sides[0][0]) >= 2, sides
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]

    # catch-up on a partitioned index: 30 blocks mined while the daemon is
    # down (backlog 630 txs >= 20 % of the open tip's < 150): only the open
    # tip's B-tree secondary indexes are dropped and rebuilt (its hash
    # indexes stay), the closed partitions' are the same files throughout
    closed = index_files(pg, "partd", True)
    tip_files = index_files(pg, "partd", False)
    assert len(closed) >= 8 and len(tip_files) == 4
    node.mine(30, txs_per_block=20, announce=False)
    d = start(build_dir, dd, node.port, ci, extra)
    try:
        wait_tip(pg, "partd", d, node, timeout=240)
        d.wait_for_log(r"secondary indexes ready", timeout=120)
        assert "secondary indexes dropped" in d.log_text()
        settle(pg, "partd", d, 150)
        check_layout(pg, "partd")
        assert secondary_on_every_partition(pg, "partd") == []
        now = dict(psql(pg, "partd", "SELECT relname, relfilenode FROM pg_class WHERE relkind = 'i';"))
        assert {k: now.get(k) for k in closed} == closed
        # the old tip's B-trees were dropped and built again (new files),
        # whether it is still the tip or was closed since; its hash indexes
        # are the same files
        hashes = hash_indexes(pg, "partd")
        assert sum(k in hashes for k in tip_files) == 2, (tip_files, hashes)
        assert all(now.get(k) != f for k, f in tip_files.items() if k not in hashes), \
            (tip_files, now)
        assert all(now.get(k) == f for k, f in tip_files.items() if k in hashes), \
            (tip_files, now)
        got = dump(pg, "partd")
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    # a daemon without rolls (partition_txs at its default, far above this
    # chain) indexing the winning chain from scratch: the same rows
    assert got == fresh_index(pg, build_dir, tmp_path, node, "partfresh")
    assert len(partitions(pg, "partfresh")) == 1


# ---- the migration of a database of the previous schema ----

def sql_files(upto):
    d = os.path.join(ROOT, "sql")
    return [os.path.join(d, f) for f in sorted(os.listdir(d))
            if f[:3].isdigit() and int(f[:3]) <= upto]


def psql_file(pg, db, path, env=None):
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", pg.sockdir,
                        "-p", str(pg.port), "-U", "postgres", "-d", db, "-f", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert p.returncode == 0, (path, p.stderr.decode())


def old_schema_copy(pg, src, dst, version, tmp_path):
    """Database dst with the schema of migrations 001..version (applied with
    psql as the version that stopped there did) and src's chain rows
    (blocks, units, tip and the four row tables, read through the
    partitions' parents). Returns dst's conninfo."""
    ci = create_db(pg, dst)
    psql(pg, dst, "CREATE TABLE cd_schema_version (version integer PRIMARY KEY, "
                  "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());")
    for f in sql_files(version):
        psql_file(pg, dst, f)
        base = os.path.basename(f)
        psql(pg, dst, "INSERT INTO cd_schema_version (version, name) VALUES (%d, '%s');"
             % (int(base[:3]), base[4:-4]))
    dumpf = tmp_path / ("%s.sql" % dst)
    tables = ["blocks", "indexed_units", "index_tip"] + TABLES
    subprocess.run(["pg_dump", "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres",
                    "--data-only", "--load-via-partition-root", "-f", str(dumpf)]
                   + sum((["-t", t + "*" if t in TABLES else t] for t in tables), [])
                   + [src], check=True)
    # rows restored as they are: no trigger (the dump runs with an empty
    # search_path, which the notify triggers' functions do not expect)
    psql_file(pg, dst, str(dumpf),
              env=dict(os.environ, PGOPTIONS="-c session_replication_role=replica"))
    psql(pg, dst, "SELECT setval(pg_get_serial_sequence('blocks', 'block_id'), "
                  "(SELECT max(block_id) FROM blocks));")
    return ci


def test_migration_of_an_indexed_database(pg_module, build_dir, shared_data, tmp_path):
    pg = pg_module
    # the rows: chain 116 indexed by this version (partitioned)
    src = create_db(pg, "mig_src")
    run_index(build_dir, src, ["--chain", os.path.join(shared_data, CHAIN), "--unit-size", "4000"])
    # a database of schema 016, as the previous version's migrations made it
    old_schema_copy(pg, "mig_src", "mig_old", 16, tmp_path)
    assert psql(pg, "mig_old", "SELECT relkind FROM pg_class WHERE relname = 'transactions';") \
        == [("r",)]
    want = dump(pg, "mig_src")
    assert dump(pg, "mig_old") == want
    # the indexes' storage before: the migration must attach them, not build
    q_files = ("SELECT c.relname, c.relfilenode FROM pg_index x JOIN pg_class c ON "
               "c.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
               "WHERE t.relname = '%s' ORDER BY 1;")
    before = {t: psql(pg, "mig_old", q_files % t) for t in TABLES}
    assert len(before["transactions"]) == 2 and len(before["inputs"]) == 2
    run_index(build_dir, src.replace("mig_src", "mig_old"), ["--migrate-only"])
    assert psql(pg, "mig_old", "SELECT count(*) FROM cd_schema_version WHERE version = 17;") == [("1",)]
    for t in TABLES:
        assert psql(pg, "mig_old", "SELECT relkind FROM pg_class WHERE relname = '%s';" % t) \
            == [("p",)]
        after = psql(pg, "mig_old", q_files % (t + "_p0"))
        # the same files under the partition's names (<table>_p0_...)
        assert [f for _, f in after] == [f for _, f in before[t]], (t, before[t], after)
        assert [n for n, _ in after] == [t + "_p0" + n[len(t):] for n, _ in before[t]]
    assert partitions(pg, "mig_old") == [("transactions_p0", -1, -1)]
    assert secondary_on_every_partition(pg, "mig_old") == []
    assert psql(pg, "mig_old", "SELECT DISTINCT state FROM cd_secondary_indexes_state();") == [
        ("valid",)]
    # the views read the parents: the same rows, and a roll works
    assert dump(pg, "mig_old") == want
    check_layout(pg, "mig_old")
    assert psql(pg, "mig_old", "SELECT cd_partition_roll(1) IS NOT NULL;") == [("t",)]
    assert len(check_layout(pg, "mig_old")) == 2
    assert dump(pg, "mig_old") == want


# ---- kill -9 with rolls ----

def test_kill9_with_rolls(pg_module, build_dir, simnode_factory, tmp_path):
    from test_crash_torture import torture
    torture(pg_module, build_dir, simnode_factory, tmp_path, "tortpart",
            ["--partition-txs", "400"])
    parts = check_layout(pg_module, "tortpart")
    assert len(parts) >= 3, parts
    assert secondary_on_every_partition(pg_module, "tortpart") == []
