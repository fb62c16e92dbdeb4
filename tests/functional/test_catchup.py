"""Catch-up mode of the index (catchup_indexes = auto | live, cd_catchup.h).

conduitd starts far behind a generated chain (the simulated node, 300 blocks
with ~30 transactions each) with a low catchup_threshold: it must drop the
three secondary indexes, load without them, rebuild them once within the
threshold, and only then report "synced"; the tables must then equal, row
for row, those of a run with catchup_indexes = live. A kill -9 while the
indexes are dropped, and a partly missing set of indexes, are repaired at
the next start.

Run: CD_BUILD_DIR=build-catchup /usr/bin/python3 -m pytest tests/functional/test_catchup.py
"""

import json
import os
import re
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon, cli  # noqa: E402
from test_index import create_db, psql  # noqa: E402
from test_index_daemon import DUMP, tip_height, wait_tip  # noqa: E402

BLOCKS = 300
TXS = 30
SEED = 5
THRESHOLD = 20


def dump(pg, db):
    return [psql(pg, db, q) for q in DUMP]


def secondary(pg, db):
    """The secondary indexes as the database defines them (sql/013)."""
    return {r[0] for r in psql(pg, db, "SELECT name FROM secondary_indexes;")}


def indexes(pg, db):
    """The secondary indexes present, valid (pg_index.indisvalid) and as defined."""
    rows = psql(pg, db, "SELECT name FROM cd_secondary_indexes_state() WHERE state = 'valid';")
    return {r[0] for r in rows}


def start(build_dir, datadir, port, conninfo, extra=()):
    args = ["--regtest", "--connect", "127.0.0.1:%d" % port, "--pg-conninfo", conninfo,
            "--parser-workers", "2", "--ring-size", "16M", "--unit-size", "64K",
            "--status-interval", "1", "--log-level", "info"] + list(extra)
    return Daemon(build_dir, str(datadir), args).start()


def status(build_dir, datadir):
    p = cli(build_dir, ["status", "--json", "--datadir", str(datadir)], check=False)
    return json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else {}


def wait_synced(build_dir, datadir, d, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        st = status(build_dir, datadir)
        if st.get("state") == "synced":
            return st
        assert d.proc.poll() is None, d.log_text()[-4000:]
        assert time.monotonic() < deadline, (st, d.log_text()[-4000:])
        time.sleep(0.3)


def line_index(d, pattern):
    rx = re.compile(pattern)
    for i, line in enumerate(d.log_text().splitlines()):
        if rx.search(line):
            return i
    return -1


@pytest.fixture(scope="module")
def live_reference(pg_module, build_dir, tmp_path_factory):
    """A run with the indexes maintained live: the rows to compare with."""
    from tests.simnode import SimNode
    node = SimNode(generate=BLOCKS, txs_per_block=TXS, seed=SEED)
    node.start()
    ci = create_db(pg_module, "culive")
    dd = tmp_path_factory.mktemp("live")
    d = start(build_dir, dd, node.port, ci, ["--catchup-indexes", "live"])
    try:
        wait_tip(pg_module, "culive", d, BLOCKS)
        st = wait_synced(build_dir, dd, d)
        assert st["index_mode"] == "live"
    finally:
        rc = d.stop()
        node.stop()
    assert rc == 0, d.log_text()[-4000:]
    log = d.log_text()
    assert "secondary indexes dropped" not in log, log[-4000:]
    # the four of sql/001 + 007, with outputs(script_hash) that was once forgotten
    assert secondary(pg_module, "culive") == {
        "transactions_hash_idx", "inputs_outpoint_idx", "pushdata_hash_idx",
        "outputs_script_hash_idx"}
    assert indexes(pg_module, "culive") == secondary(pg_module, "culive")
    ref = dump(pg_module, "culive")
    assert len(ref[1]) > BLOCKS * TXS // 2  # a chain with many transactions
    return ref


def test_catchup_auto_drops_then_rebuilds(pg_module, build_dir, simnode_factory, tmp_path,
                                          live_reference):
    node = simnode_factory(generate=BLOCKS, txs_per_block=TXS, seed=SEED)
    ci = create_db(pg_module, "cuauto")
    d = start(build_dir, tmp_path / "d", node.port, ci,
              ["--catchup-threshold", str(THRESHOLD)])
    try:
        m = d.wait_for_log(r"index: catch-up mode \((\d+) blocks behind\): "
                           r"secondary indexes dropped", timeout=120)
        assert int(m.group(1)) > THRESHOLD
        m = d.wait_for_log(r"index: building secondary indexes .*; (\d+) blocks behind\)",
                           timeout=180)
        assert int(m.group(1)) <= THRESHOLD
        d.wait_for_log(r"index: secondary indexes ready \([0-9.]+ s\)", timeout=180)
        wait_tip(pg_module, "cuauto", d, BLOCKS)
        st = wait_synced(build_dir, tmp_path / "d", d)
        assert st["index_mode"] == "live" and st["indexed_height"] == BLOCKS
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    i_drop = line_index(d, r"secondary indexes dropped")
    i_build = line_index(d, r"building secondary indexes")
    i_ready = line_index(d, r"secondary indexes ready")
    assert 0 <= i_drop < i_build < i_ready
    assert indexes(pg_module, "cuauto") == secondary(pg_module, "cuauto")
    assert dump(pg_module, "cuauto") == live_reference
    # the lookup by hash the index exists for is an index scan again
    plan = psql(pg_module, "cuauto",
                "SET enable_seqscan = off; EXPLAIN SELECT * FROM transactions "
                "WHERE tx_hash = '\\x00'::bytea;")
    assert any("transactions_hash_idx" in r[0] for r in plan), plan


def test_catchup_kill9_while_dropped(pg_module, build_dir, simnode_factory, tmp_path,
                                     live_reference):
    node = simnode_factory(generate=BLOCKS, txs_per_block=TXS, seed=SEED)
    ci = create_db(pg_module, "cukill")
    dd = tmp_path / "d"
    d = start(build_dir, dd, node.port, ci, ["--catchup-threshold", str(THRESHOLD)])
    try:
        d.wait_for_log(r"secondary indexes dropped", timeout=120)
        wait_tip(pg_module, "cukill", d, 5)
    finally:
        d.kill()
    killed_at = tip_height(pg_module, "cukill")
    assert killed_at < BLOCKS - THRESHOLD, "too fast to test: %d" % killed_at
    assert indexes(pg_module, "cukill") == set()
    # queries keep working during catch-up (sequential scans instead)
    rows = psql(pg_module, "cukill", "SELECT count(*) FROM transactions t "
                "WHERE tx_hash = (SELECT tx_hash FROM transactions LIMIT 1);")
    assert rows == [("1",)]

    d = start(build_dir, dd, node.port, ci, ["--catchup-threshold", str(THRESHOLD)])
    try:
        # blocks stored in LMDB before the kill are indexed from LMDB at start
        # (without the indexes); whether still far behind then or not, the
        # indexes are found absent and built before "synced"
        d.wait_for_log(r"index: building secondary indexes \(0 of 4 present", timeout=180)
        d.wait_for_log(r"index: secondary indexes ready", timeout=180)
        wait_tip(pg_module, "cukill", d, BLOCKS)
        wait_synced(build_dir, dd, d)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    assert indexes(pg_module, "cukill") == secondary(pg_module, "cukill")
    assert dump(pg_module, "cukill") == live_reference

    # a crash mid-rebuild leaves some of the indexes (CREATE INDEX is atomic):
    # the next start, caught up, builds what is missing before "synced"
    # (the last one built, outputs(script_hash) of sql/007, is missing: with
    # only the first three counted it would never be built again)
    psql(pg_module, "cukill", "DROP INDEX outputs_script_hash_idx;")
    d = start(build_dir, dd, node.port, ci, ["--catchup-threshold", str(THRESHOLD)])
    try:
        d.wait_for_log(r"index: building secondary indexes \(3 of 4 present; 0 blocks behind\)",
                       timeout=120)
        d.wait_for_log(r"index: secondary indexes ready", timeout=120)
        st = wait_synced(build_dir, dd, d)
        assert st["index_mode"] == "live"
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    assert indexes(pg_module, "cukill") == secondary(pg_module, "cukill")
    assert dump(pg_module, "cukill") == live_reference


def test_catchup_live_restores_indexes(pg_module, build_dir, simnode_factory, tmp_path,
                                       live_reference):
    """Switching from auto to live with the indexes dropped (e.g. a daemon
    stopped during catch-up) rebuilds them at start."""
    node = simnode_factory(generate=BLOCKS, txs_per_block=TXS, seed=SEED)
    ci = create_db(pg_module, "cuswitch")
    dd = tmp_path / "d"
    d = start(build_dir, dd, node.port, ci, ["--catchup-threshold", str(THRESHOLD)])
    try:
        d.wait_for_log(r"secondary indexes dropped", timeout=120)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    assert indexes(pg_module, "cuswitch") == set()
    d = start(build_dir, dd, node.port, ci, ["--catchup-indexes", "live"])
    try:
        d.wait_for_log(r"index: building secondary indexes \(0 of 4 present", timeout=120)
        wait_tip(pg_module, "cuswitch", d, BLOCKS)
        wait_synced(build_dir, dd, d)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    assert "catch-up mode" not in d.log_text()
    assert indexes(pg_module, "cuswitch") == secondary(pg_module, "cuswitch")
    assert dump(pg_module, "cuswitch") == live_reference
