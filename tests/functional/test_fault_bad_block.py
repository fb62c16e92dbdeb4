"""A peer that serves a wrong copy of a block must not poison the index
(issue 11, F1).

The parsers commit a block's rows while the merkle worker is still checking
the bytes against the header. Before the fix, a wrong copy's rows (one
output value changed, or the CVE-2012-2459 duplicate-tx mutation, which keeps
the header's merkle root) stayed in PostgreSQL: the right copy's units were
then skipped as "committed before", the block was never marked indexed and
the indexed tip froze below it for good, while the status claimed it
indexed.

Each test ends with the index equal, row for row, to the one
conduit-index-file builds from the block files (test_index_daemon's
reference: an index that never saw the wrong copy).
"""

import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import cli  # noqa: E402
from test_index import create_db, psql, run_index  # noqa: E402
from test_index_daemon import dump, start, wait_tip  # noqa: E402

CHAIN = "regtest/blockchain_116_7c9cd2"


@pytest.fixture(scope="module")
def reference(pg_module, build_dir, shared_data):
    ci = create_db(pg_module, "fref")
    run_index(build_dir, ci, ["--chain", os.path.join(shared_data, CHAIN)])
    return dump(pg_module, "fref")


def block_hash(shared_data, height):
    return open(os.path.join(shared_data, CHAIN, "headers.txt")).read().split()[height]


def status_indexed(build_dir, datadir):
    p = cli(build_dir, ["status", "--datadir", datadir, "--json"], check=False)
    import json
    try:
        return json.loads(p.stdout)["indexed_height"]
    except (ValueError, KeyError):
        return None


@pytest.mark.parametrize("variant,height", [("value", 116), ("mutated", 116), ("value", 113),
                                            ("mutated", 113)])
def test_wrong_copy_then_right_copy(pg_module, build_dir, simnode_regtest116, tmp_path, reference,
                                    shared_data, variant, height):
    """The first copy of a block is wrong (merkle mismatch / CVE-2012-2459
    mutation), the next one right: the wrong copy's rows are removed, the
    right one is indexed, the tip reaches 116, and the index equals the
    reference."""
    node = simnode_regtest116
    h = block_hash(shared_data, height)
    node.misbehave("altered_block", count=1, hash=h, variant=variant)
    db = "bad_%s_%d" % (variant, height)
    ci = create_db(pg_module, db)
    datadir = str(tmp_path / "d")
    d = start(build_dir, datadir, node.port, ci)
    try:
        d.wait_for_log(r"block %s failed: merkle-mismatch" % h, timeout=120)
        wait_tip(pg_module, db, d, 116)
        # what the status says is what the best-chain views show
        deadline = time.monotonic() + 30
        while status_indexed(build_dir, datadir) != 116:
            assert time.monotonic() < deadline, d.log_text()[-3000:]
            time.sleep(0.3)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    log = d.log_text()
    assert "sent a bad block %s" % h in log
    assert "removed the rows of a failed copy of block %s" % h in log, log[-4000:]
    assert dump(pg_module, db) == reference
    # nothing but the reference's rows: no duplicate txid from the mutation
    assert psql(pg_module, db, "SELECT count(*) FROM transactions")[0][0] == \
        psql(pg_module, "fref", "SELECT count(*) FROM transactions")[0][0]


def test_restart_repairs_rows_of_a_wrong_copy(pg_module, build_dir, simnode_regtest116, tmp_path,
                                              reference, shared_data):
    """The state an older version left after a wrong copy (rows whose txids
    do not give the header's root, the block not indexed, the tip frozen
    below it) is repaired at the next start: the rows are removed, the
    block is indexed again from the stored (verified) copy, the tip moves."""
    node = simnode_regtest116
    db = "bad_restart"
    ci = create_db(pg_module, db)
    datadir = str(tmp_path / "d")
    d = start(build_dir, datadir, node.port, ci)
    try:
        wait_tip(pg_module, db, d, 116)
    finally:
        assert d.stop() == 0
    assert dump(pg_module, db) == reference
    # poison it as the old version did (triggers off: this is not a reorg)
    psql(pg_module, db, """
        SET session_replication_role = replica;
        UPDATE index_tip SET block_id = (SELECT block_id FROM blocks WHERE height = 115),
                             height = 115;
        UPDATE blocks SET on_best_chain = false, indexed = false, n_units = NULL
         WHERE height = 116;
        UPDATE transactions SET tx_hash = sha256(tx_hash)
         WHERE tx_pos = 1 AND block_id = (SELECT block_id FROM blocks WHERE height = 116);
    """)
    assert psql(pg_module, db, "SELECT height FROM best_tip")[0][0] == "115"
    d = start(build_dir, datadir, node.port, ci)
    try:
        wait_tip(pg_module, db, d, 116, timeout=120)
    finally:
        assert d.stop() == 0
    log = d.log_text()
    assert "stored txids do not give the header's merkle root" in log, log[-4000:]
    assert dump(pg_module, db) == reference


def test_restart_drops_unverified_rows_of_unstored_block(pg_module, build_dir, simnode_regtest116,
                                                        tmp_path, reference, shared_data):
    """Rows of a block the block store does not hold (a copy that was never
    verified: a crash mid-block, or a wrong copy) are removed at start, and
    the block is downloaded and indexed again."""
    node = simnode_regtest116
    db = "bad_unstored"
    ci = create_db(pg_module, db)
    datadir = str(tmp_path / "d")
    d = start(build_dir, datadir, node.port, ci)
    try:
        wait_tip(pg_module, db, d, 116)
    finally:
        assert d.stop() == 0
    h116 = block_hash(shared_data, 116)
    psql(pg_module, db, """
        SET session_replication_role = replica;
        UPDATE index_tip SET block_id = (SELECT block_id FROM blocks WHERE height = 115),
                             height = 115;
        UPDATE blocks SET on_best_chain = false, indexed = false, n_units = NULL,
                          tx_count = tx_count + 1 WHERE height = 116;
    """)
    # a data directory whose block store does not hold block 116 (a new
    # one): the block must be fetched again
    p = cli(build_dir, ["block", h116, "--datadir", datadir, "--regtest"], check=False)
    assert p.returncode == 0
    datadir2 = str(tmp_path / "d2")
    d = start(build_dir, datadir2, node.port, ci)
    try:
        d.wait_for_log(r"removing rows committed from an unverified copy", timeout=60)
        wait_tip(pg_module, db, d, 116, timeout=120)
    finally:
        assert d.stop() == 0
    assert dump(pg_module, db) == reference
