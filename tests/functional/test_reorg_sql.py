"""The best-chain switch and mempool rules of sql/002_reorg_mempool.sql,
exercised directly in a real PostgreSQL with hand-made blocks (no daemon), so
each rule is checked in isolation:

  g - a1 - a2            (best, indexed tip a2)
   \\- b1 - b2 - b3       (the tree's new best branch)

cd_reorg_step() waits while any block between the fork and the target is
missing or not indexed, then switches in one transaction; txs move, return
to the mempool, conflicts (and their descendants) drop; the cap evicts the
oldest; targets below the tip (ancestor) and switching back work.
"""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETUP = r"""
CREATE FUNCTION h(t text) RETURNS bytea LANGUAGE sql AS $$ SELECT sha256(t::bytea) $$;
INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size, indexed) VALUES
 (h('g'), '\x00', 0, '\x00', 1, 1, true), (h('a1'), h('g'), 1, '\x00', 3, 1, true),
 (h('a2'), h('a1'), 2, '\x00', 1, 1, true), (h('b1'), h('g'), 1, '\x00', 3, 1, true),
 (h('b2'), h('b1'), 2, '\x00', 1, 1, true);
INSERT INTO transactions SELECT block_id, 0, 0, 10, h('cb' || encode(block_hash, 'hex'))
    FROM blocks;
-- a1: X (moves to b1), Y (only in a1); b1: X, Z (spends what Y spends)
INSERT INTO transactions SELECT block_id, 100, 1, 50, h('X') FROM blocks WHERE block_hash = h('a1');
INSERT INTO transactions SELECT block_id, 150, 2, 60, h('Y') FROM blocks WHERE block_hash = h('a1');
INSERT INTO transactions SELECT block_id, 100, 1, 50, h('X') FROM blocks WHERE block_hash = h('b1');
INSERT INTO transactions SELECT block_id, 150, 2, 70, h('Z') FROM blocks WHERE block_hash = h('b1');
INSERT INTO inputs SELECT block_id, 1, 0, 0, h('o1') FROM blocks
    WHERE block_hash IN (h('a1'), h('b1'));
INSERT INTO inputs SELECT block_id, 2, 0, 0, h('o2') FROM blocks
    WHERE block_hash IN (h('a1'), h('b1'));
INSERT INTO pushdata SELECT block_id, 2, 0, 1, h('keyY') FROM blocks WHERE block_hash = h('a1');
UPDATE blocks SET on_best_chain = true WHERE block_hash IN (h('g'), h('a1'), h('a2'));
INSERT INTO index_tip SELECT true, block_id, height FROM blocks WHERE block_hash = h('a2');
"""


def run(pg, sql):
    p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1",
                        "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-d", "r"],
                       input=sql.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr.decode()
    return [tuple(x.split("|")) for x in p.stdout.decode().splitlines() if x]


def best(pg):
    return run(pg, "SELECT string_agg(n, ' ' ORDER BY height) FROM best_blocks b "
                   "JOIN unnest(array['g','a1','a2','a3','b1','b2','b3']) n "
                   "ON h(n) = b.block_hash;")[0][0]


def pool(pg):
    return set(r[0] for r in run(
        pg, "SELECT t FROM mempool_tx m, unnest(array['X','Y','Z','W','V','D','E']) t "
            "WHERE h(t) = m.tx_hash;"))


def test_switch_rules(pg):
    pg.psql("CREATE DATABASE r")
    for f in ("001_initial.sql", "002_reorg_mempool.sql"):
        run(pg, open(os.path.join(ROOT, "sql", f)).read())
    run(pg, SETUP)
    assert best(pg) == "g a1 a2"
    # a mempool tx W spending X:0, its child D, and V spending o2 (as Y does: conflict at add)
    r = run(pg, "SELECT accepted, known, conflicting FROM cd_mempool_add_batch("
                "h('W') || h('V') || h('X') || h('D'), '{100,100,50,80}', "
                "h('X') || '\\x00000000'::bytea || h('o2') || '\\x00000000'::bytea "
                "|| h('W') || '\\x00000000'::bytea, '{0,1,3}', "
                "h('kW') || h('kD'), '{0,3}', '{0,0}', '{1,1}', 0);")
    assert r == [("2", "1", "1")]  # W, D in; X known (on the best chain); V conflicts with Y
    assert pool(pg) == {"W", "D"}
    assert run(pg, "SELECT count(*) FROM mempool_pushdata;") == [("2",)]

    # target b3 unknown, then b3 not indexed: wait, nothing changes
    run(pg, "INSERT INTO chain_target VALUES (true, h('b3'), 3);")
    assert run(pg, "SELECT cd_reorg_step();") == [("wait",)]
    run(pg, "INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size) "
            "VALUES (h('b3'), h('b2'), 3, '\\x00', 1, 1);"
            "INSERT INTO transactions SELECT block_id, 0, 0, 10, h('cbb3') FROM blocks "
            "WHERE block_hash = h('b3');")
    assert run(pg, "SELECT cd_reorg_step();") == [("wait",)]
    assert best(pg) == "g a1 a2"
    run(pg, "UPDATE blocks SET indexed = true WHERE block_hash = h('b3');")
    assert run(pg, "SELECT cd_reorg_step();") == [("reorg 0 2 3",)]
    assert best(pg) == "g b1 b2 b3"
    assert run(pg, "SELECT height, block_hash = h('b3') FROM best_tip;") == [("3", "t")]
    # X moved to b1; Y returned to the mempool with its rows; Z (spends o2 like Y) is
    # confirmed, so Y is a conflict and dropped again; W and D untouched
    assert run(pg, "SELECT count(*) FROM best_transactions t JOIN blocks b USING (block_hash) "
                   "WHERE t.tx_hash = h('X') AND b.block_hash = h('b1');") == [("1",)]
    assert pool(pg) == {"W", "D"}
    assert run(pg, "SELECT cd_reorg_step();") == [("at",)]

    # back to a2 (the tree changed its mind): X, Z return from b1, X is confirmed in a1
    run(pg, "UPDATE chain_target SET block_hash = h('a2'), height = 2;")
    assert run(pg, "SELECT cd_reorg_step();") == [("reorg 0 3 2",)]
    assert best(pg) == "g a1 a2"
    # Z came back from b1 but spends o2, which Y (confirmed in a1 again) spends: dropped
    assert pool(pg) == {"W", "D"}
    assert run(pg, "SELECT count(*) FROM mempool_inputs WHERE tx_hash = h('Z');") == [("0",)]

    # a confirmed block spending X:0 (W's outpoint) drops W and its child D
    run(pg, "INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size, indexed) "
            "VALUES (h('a3'), h('a2'), 3, '\\x00', 2, 1, true);"
            "INSERT INTO transactions SELECT block_id, 0, 0, 10, h('cba3') FROM blocks "
            "WHERE block_hash = h('a3');"
            "INSERT INTO transactions SELECT block_id, 100, 1, 10, h('E') FROM blocks "
            "WHERE block_hash = h('a3');"
            "INSERT INTO inputs SELECT block_id, 1, 0, 0, h('X') FROM blocks "
            "WHERE block_hash = h('a3');"
            "UPDATE chain_target SET block_hash = h('a3'), height = 3;")
    assert run(pg, "SELECT cd_reorg_step();") == [("switched",)]
    assert pool(pg) == set()
    # their input and pushdata rows went with them
    assert run(pg, "SELECT (SELECT count(*) FROM mempool_inputs), "
                   "(SELECT count(*) FROM mempool_pushdata);") == [("0", "0")]

    # the cap keeps the newest
    r = run(pg, "SELECT accepted FROM cd_mempool_add_batch("
                "h('W') || h('V') || h('D'), '{1,2,3}', ''::bytea, '{}', ''::bytea, "
                "'{}', '{}', '{}', 2);")
    assert r == [("3",)]
    assert pool(pg) == {"V", "D"}
