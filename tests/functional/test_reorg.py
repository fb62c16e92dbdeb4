"""Reorgs and the mempool, end to end (issue #8): conduitd + the simulated
node + a real PostgreSQL.

One daemon follows a generated regtest chain with relay on while the
simulator:
  * relays mempool txs (the daemon indexes them: txid, inputs, pushdata),
  * mines some of them (confirmed: they leave the mempool tables) and a
    double spend of another (conflicted: dropped),
  * reorgs by 1, 6 and 100 blocks with txs moving between blocks (in both
    branches: now in the new block; only in the old one: back to the
    mempool).
After each step the best-chain views must equal, row for row, those of a
fresh daemon that indexed only the winning chain. While the 100-block reorg
is applied a poller checks that the views never show a mixture of branches.
A second test kills conduitd with SIGKILL in the middle of a reorg and
restarts it.
"""

import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon  # noqa: E402
from test_index import cli, create_db, psql  # noqa: E402

from tests.simnode.chain import ser_tx  # noqa: E402
from tests.simnode.protocol import parse_tx, sha256d  # noqa: E402

MQ = dict(re.findall(r"```sql\n-- mempool query: (\w+)\n(.*?)```",
                     open(os.path.join(HERE, "..", "..", "docs", "QUERIES.md")).read(), re.S))

# best-chain views without block_id (ids differ between databases)
VIEWS = [
    "SELECT cd_txid_hex(block_hash), encode(prev_hash, 'hex'), height, tx_count, size "
    "FROM best_blocks ORDER BY height;",
    "SELECT cd_txid_hex(tx_hash), cd_txid_hex(block_hash), height, tx_pos, tx_offset, tx_size "
    "FROM best_transactions ORDER BY height, tx_pos;",
    "SELECT encode(prev_hash, 'hex'), prev_idx, cd_txid_hex(spend_tx_hash), in_idx, height, "
    "cd_txid_hex(block_hash) FROM best_inputs ORDER BY height, tx_pos, in_idx;",
    "SELECT encode(push_hash, 'hex'), flags, cd_txid_hex(tx_hash), idx, height, "
    "cd_txid_hex(block_hash) FROM best_pushdata ORDER BY 5, 3, 4, 2, 1;",
    "SELECT cd_txid_hex(block_hash), height FROM best_tip;",
    # outputs (sql/007): every best-chain output, and the confirmed balance
    # and UTXO count of every script hash (spends on the best chain)
    "SELECT cd_txid_hex(t.tx_hash), o.idx, o.value, encode(o.script_hash, 'hex'), "
    "coalesce(encode(o.script, 'hex'), '-'), b.height FROM outputs o "
    "JOIN blocks b ON b.block_id = o.block_id AND b.on_best_chain "
    "JOIN transactions t ON t.block_id = o.block_id AND t.tx_pos = o.tx_pos "
    "ORDER BY b.height, o.tx_pos, o.idx;",
    "SELECT encode(h, 'hex'), (cd_balance('script', h)).confirmed, "
    "(SELECT count(*) FROM cd_key_outputs('script', h) k WHERE k.height IS NOT NULL "
    " AND (k.spend_tx_hash IS NULL OR k.spend_height IS NULL)) "
    "FROM (SELECT DISTINCT o.script_hash AS h FROM outputs o JOIN blocks b "
    "      ON b.block_id = o.block_id AND b.on_best_chain) x ORDER BY 1;",
]

# mempool outputs (sql/007): every mempool tx has its outputs, no row is
# left without its tx, and the relayed ones equal the decoded bytes
MEMPOOL_OUTPUTS_OK = """
SELECT NOT EXISTS (SELECT 1 FROM mempool_tx m WHERE NOT EXISTS
                   (SELECT 1 FROM mempool_outputs o WHERE o.tx_hash = m.tx_hash))
   AND NOT EXISTS (SELECT 1 FROM mempool_outputs o WHERE NOT EXISTS
                   (SELECT 1 FROM mempool_tx m WHERE m.tx_hash = o.tx_hash));
"""


def check_mempool_outputs(pg, db):
    assert psql(pg, db, MEMPOOL_OUTPUTS_OK) == [("t",)]
    rows = psql(pg, db, "SELECT encode(m.raw, 'hex'), o.idx, o.value, encode(o.script_hash, 'hex') "
                        "FROM mempool_tx m JOIN mempool_outputs o USING (tx_hash) "
                        "WHERE m.raw IS NOT NULL;")
    import hashlib
    for raw, idx, value, sh in rows:
        _, _, outs = parse_tx(bytes.fromhex(raw), 0)
        v, sc = outs[int(idx)]
        assert (int(value), sh) == (v, hashlib.sha256(sc).hexdigest())
    return len(rows)

# the best chain is one chain: heights 0..tip without gaps, each block the
# child of the one below, the tip its top
CONSISTENT = """
SELECT (SELECT count(*) FROM best_blocks) = (SELECT max(height) - min(height) + 1 FROM best_blocks)
   AND NOT EXISTS (SELECT 1 FROM best_blocks b JOIN best_blocks p ON p.height = b.height - 1
                   WHERE b.prev_hash <> p.block_hash)
   AND (SELECT height FROM best_tip) = (SELECT max(height) FROM best_blocks)
   AND (SELECT count(DISTINCT height) FROM best_blocks) = (SELECT count(*) FROM best_blocks);
"""


def dump(pg, db):
    return [psql(pg, db, q) for q in VIEWS]


def start(build_dir, datadir, port, conninfo, extra=()):
    args = ["--regtest", "--connect", "127.0.0.1:%d" % port, "--pg-conninfo", conninfo,
            "--parser-workers", "1", "--ring-size", "16M", "--unit-size", "64K",
            "--log-level", "info"] + list(extra)
    return Daemon(build_dir, str(datadir), args).start()


def tip(pg, db):
    try:
        r = psql(pg, db, "SELECT cd_txid_hex(block_hash) FROM best_tip;")
        return r[0][0] if r else None
    except subprocess.CalledProcessError:
        return None


def wait_until(pred, d, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not pred():
        assert d.proc.poll() is None, "daemon exited:\n" + d.log_text()[-4000:]
        assert time.monotonic() < deadline, "timeout waiting for %s:\n%s" % (
            what, d.log_text()[-4000:])
        time.sleep(0.1)


def wait_relay(d):
    """Until the mempool module relays: a node that does not answer `mempool`
    (the real node's default, the simulator's too) never sends the txs it
    took before, so a test makes its mempool txs after this."""
    d.wait_for_log(r"mempool: index at the best tip; relay on", timeout=120)


def wait_tip(pg, db, d, node, timeout=120):
    want = node.chain.tip.hash_hex
    wait_until(lambda: tip(pg, db) == want, d, "tip " + want, timeout)


def mempool(pg, db):
    return set(r[0] for r in psql(pg, db, "SELECT cd_txid_hex(tx_hash) FROM mempool_tx;"))


def txid(raw):
    return sha256d(raw)[::-1].hex()


def fresh_index(pg, build_dir, tmp_path, node, name):
    """Dump of a fresh daemon's index of the node's current chain."""
    ci = create_db(pg, name)
    d = start(build_dir, tmp_path / name, node.port, ci, ["--relay", "off"])
    try:
        wait_tip(pg, name, d, node)
    finally:
        d.stop()
    return dump(pg, name)


def mine_exact(node, txs):
    """Mine one block holding exactly `txs` (the simulator's own mempool,
    which it would otherwise include, is emptied first)."""
    with node.lock:
        node.mempool.clear()
        node.mempool_spent.clear()
    return node.mine(1, txs=txs)[0]


def double_spend(node, raw):
    """Another tx spending the first input of `raw` (a different txid)."""
    _, ins, outs = parse_tx(raw, 0)
    prev, idx, s0, s1 = ins[0]
    return ser_tx([(prev, idx, raw[s0:s1], 0xFFFFFFFF)], [(max(outs[0][0] - 777, 0), outs[0][1])])


class Poller(threading.Thread):
    """Checks CONSISTENT over and over until stopped; records failures."""

    def __init__(self, pg, db):
        super().__init__(daemon=True)
        self.pg, self.db = pg, db
        self.stop_ev = threading.Event()
        self.bad, self.checks = [], 0

    def run(self):
        while not self.stop_ev.is_set():
            r = psql(self.pg, self.db, CONSISTENT)
            self.checks += 1
            if r != [("t",)]:
                self.bad.append(psql(self.pg, self.db,
                                     "SELECT height, cd_txid_hex(block_hash) FROM best_blocks "
                                     "ORDER BY height;"))


def test_reorgs_and_mempool(pg_module, build_dir, simnode_factory, tmp_path):
    pg = pg_module
    # whitelist=True: the restart below refills the mempool tables from the node's
    # mempool, which only a node that allows `mempool` hands out (the snapshot)
    node = simnode_factory(generate=20, txs_per_block=3, seed=11, whitelist=True)
    ci = create_db(pg, "live")
    d = start(build_dir, tmp_path / "live", node.port, ci)
    try:
        wait_tip(pg, "live", d, node)
        wait_relay(d)

        # ---- mempool: relayed txs are indexed with their rows ----
        txs = node.make_mempool_txs(8)
        assert len(txs) == 8
        ids = [txid(t) for t in txs]
        wait_until(lambda: mempool(pg, "live") == set(ids), d, "8 mempool txs")
        n_in = psql(pg, "live", "SELECT count(*) FROM mempool_inputs;")[0][0]
        n_push = psql(pg, "live", "SELECT count(*) FROM mempool_pushdata;")[0][0]
        assert int(n_in) >= 8 and int(n_push) >= 8
        assert check_mempool_outputs(pg, "live") >= 8
        # "history of this key" includes unconfirmed activity (all_pushdata)
        k = psql(pg, "live", "SELECT encode(push_hash, 'hex') FROM mempool_pushdata "
                             "WHERE tx_hash = cd_txid('%s') LIMIT 1;" % ids[0])[0][0]
        rows = psql(pg, "live", "SELECT cd_txid_hex(tx_hash), height FROM all_pushdata "
                                "WHERE push_hash = decode('%s', 'hex');" % k)
        assert (ids[0], "") in rows
        # the documented queries (docs/QUERIES.md) see it too
        _, ins0, outs0 = parse_tx(txs[0], 0)
        p2pkh = [(n, sc) for n, (v, sc) in enumerate(outs0) if sc[:3] == b"\x76\xa9\x14"]
        if p2pkh:
            n, sc = p2pkh[0]
            rows = psql(pg, "live", MQ["history_with_mempool"], hash160=sc[3:23].hex())
            assert (ids[0], str(n), "1", "") in rows
        spent = dict(txid=ins0[0][0][::-1].hex(), vout=ins0[0][1])
        assert psql(pg, "live", MQ["spent_by_with_mempool"], **spent) == [(ids[0], "0", "")]

        # ---- confirmed + conflicted: T0..T3 mined, a double spend of T4 ----
        t4x = double_spend(node, txs[4])
        mine_exact(node, txs[:4] + [t4x])
        wait_tip(pg, "live", d, node)
        wait_until(lambda: mempool(pg, "live") == set(ids[5:]), d, "confirm + conflict")
        assert psql(pg, "live", "SELECT count(*) FROM best_transactions WHERE tx_hash = "
                                "cd_txid('%s');" % ids[0]) == [("1",)]
        h_conf = node.chain.height  # 21: T0..T3 + T4x
        assert psql(pg, "live", MQ["spent_by_with_mempool"], **spent) == [
            (ids[0], "0", str(h_conf))]

        # ---- depth 1: T0, T1 move to the new branch, T2, T3 and T4x orphaned ----
        node.reorg(fork_height=h_conf - 1, new_len=2, announce=False)
        new_blk = mine_exact(node, txs[:2])
        wait_tip(pg, "live", d, node)
        d.wait_for_log(r"reorg: indexed best chain switched: fork height=%d leaving=1 "
                       r"joining=3" % (h_conf - 1))
        # T4 was conflicted by T4x; T4x is now back in the mempool
        want = set(ids[2:4]) | set(ids[5:]) | {txid(t4x)}
        wait_until(lambda: mempool(pg, "live") == want, d, "mempool after depth-1 reorg")
        check_mempool_outputs(pg, "live")
        assert psql(pg, "live", "SELECT cd_txid_hex(block_hash) FROM best_transactions "
                                "WHERE tx_hash = cd_txid('%s');" % ids[0]) == [(new_blk.hash_hex,)]
        assert dump(pg, "live") == fresh_index(pg, build_dir, tmp_path, node, "fresh1")
        # conduit-cli answers for the new best chain
        p = cli(build_dir, ["merkle-proof", ids[1], "--regtest", "--datadir",
                            str(tmp_path / "live"), "--pg-conninfo", ci])
        assert p.returncode == 0, p.stderr
        assert new_blk.hash_hex in p.stdout.decode()

        # ---- depth 6: T2 moves, T0 and T1 return ----
        h = node.chain.height
        # every non-coinbase tx of the 6 leaving blocks returns (the new
        # branch is coinbase-only but for T2)
        leaving = set(r[0] for r in psql(pg, "live", "SELECT cd_txid_hex(tx_hash) FROM "
                                         "best_transactions WHERE height > %d AND tx_pos > 0;"
                                         % (h - 6)))
        assert set(ids[:2]) <= leaving and len(leaving) > 2
        id0 = psql(pg, "live", "SELECT coalesce(max(id), 0) FROM mempool_evicted;")[0][0]
        back = (mempool(pg, "live") | leaving) - {ids[2]}
        node.reorg(fork_height=h - 6, new_len=7, announce=False)
        moved = mine_exact(node, [txs[2]])
        wait_tip(pg, "live", d, node)
        d.wait_for_log(r"reorg: indexed best chain switched: fork height=%d leaving=6" % (h - 6))
        # the returning txs of the generated blocks that spend a coinbase are
        # dropped with their descendants: every coinbase of this 25-block chain
        # is immature at the new tip (sql/006, as the node's RemoveForReorg)
        dropped = dict((r[0], (r[1], r[2])) for r in psql(
            pg, "live", "SELECT cd_txid_hex(tx_hash), reason, coalesce(cd_txid_hex(via), '') "
                        "FROM mempool_evicted WHERE id > %s AND reason <> 'confirmed';" % id0))
        assert dropped and set(dropped) <= back
        for t, (why, via) in dropped.items():
            if via:
                assert via in dropped and why == dropped[via][0], (t, why, via)
                continue
            assert why == "immature-coinbase", (t, why)
            assert psql(pg, "live", "SELECT count(*) FROM inputs i JOIN transactions s ON "
                        "s.block_id = i.block_id AND s.tx_pos = i.tx_pos JOIN transactions c "
                        "ON c.tx_hash = i.prev_hash AND c.tx_pos = 0 "
                        "WHERE s.tx_hash = cd_txid('%s');" % t)[0][0] != "0"
        want = back - set(dropped)
        assert set(ids[:2]) <= want
        wait_until(lambda: mempool(pg, "live") == want, d, "mempool after depth-6 reorg")
        check_mempool_outputs(pg, "live")
        assert psql(pg, "live", "SELECT cd_txid_hex(block_hash) FROM best_transactions "
                                "WHERE tx_hash = cd_txid('%s');" % ids[2]) == [(moved.hash_hex,)]
        assert dump(pg, "live") == fresh_index(pg, build_dir, tmp_path, node, "fresh6")

        # ---- depth 100, watched for mixtures while it is applied ----
        node.generate(95)  # long enough to fork 100 deep
        node.mine(1)
        wait_tip(pg, "live", d, node)
        h = node.chain.height
        poller = Poller(pg, "live")
        poller.start()
        node.reorg(fork_height=h - 100, new_len=101, txs_per_block=1)
        wait_tip(pg, "live", d, node)
        poller.stop_ev.set()
        poller.join()
        assert poller.bad == [] and poller.checks > 0
        m = d.wait_for_log(r"reorg: indexed best chain switched: fork height=%d leaving=100 "
                           r"joining=101 .*\((one transaction, [0-9.]+ ms)\)" % (h - 100))
        print("depth 100:", m.group(1))
        assert dump(pg, "live") == fresh_index(pg, build_dir, tmp_path, node, "fresh100")
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-3000:]

    # a restart starts with an empty mempool set, refilled from the node
    # (conduitd reads the node's mempool through a snapshot connection)
    assert len(mempool(pg, "live")) > 0
    with node.lock:
        node.mempool.clear()
        node.mempool_spent.clear()
    node_pool = set(txid(r) for r in node.make_mempool_txs(3, announce=False))
    assert len(node_pool) == 3
    d = start(build_dir, tmp_path / "live", node.port, ci)
    try:
        d.wait_for_log(r"mempool: index connection ready")
        wait_until(lambda: mempool(pg, "live") == node_pool, d, "mempool refilled")
    finally:
        d.stop()
    # the cap (mempool_max_txs) keeps the newest
    d = start(build_dir, tmp_path / "live", node.port, ci, ["--mempool-max-txs", "2"])
    try:
        d.wait_for_log(r"mempool: 3 txs accepted")
        assert len(mempool(pg, "live")) == 2 and mempool(pg, "live") < node_pool
    finally:
        d.stop()


def test_kill9_mid_reorg(pg_module, build_dir, simnode_factory, tmp_path):
    pg = pg_module
    node = simnode_factory(generate=40, txs_per_block=2, seed=5)
    ci = create_db(pg, "k9")
    dd = tmp_path / "k9"
    d = start(build_dir, dd, node.port, ci, ["--relay", "off"])
    try:
        wait_tip(pg, "k9", d, node)
        old_tip = node.chain.tip.hash_hex
        n0 = len(d.lines)
        node.reorg(fork_height=20, new_len=30, txs_per_block=2)
        d.wait_for_log(r"reorg: fork height=20", start=n0)
        # some of the new branch is stored, not all of it is indexed
        d.wait_for_log(r"blocksync: stored block", start=n0)
    finally:
        d.kill()
    # one consistent side: the whole old chain, or the whole new one
    assert psql(pg, "k9", CONSISTENT) == [("t",)]
    killed_at = tip(pg, "k9")
    print("killed at tip", killed_at, "old" if killed_at == old_tip else "new")
    assert killed_at in (old_tip, node.chain.tip.hash_hex)
    d = start(build_dir, dd, node.port, ci, ["--relay", "off"])
    try:
        wait_tip(pg, "k9", d, node)
    finally:
        d.stop()
    assert dump(pg, "k9") == fresh_index(pg, build_dir, tmp_path, node, "k9fresh")


def test_reorg_during_reorg(pg_module, build_dir, simnode_factory, tmp_path):
    """A second reorg arrives while the first branch is being downloaded and
    indexed: the tree wins, the index ends on the last branch."""
    pg = pg_module
    node = simnode_factory(generate=40, txs_per_block=2, seed=8)
    ci = create_db(pg, "rr")
    d = start(build_dir, tmp_path / "rr", node.port, ci, ["--relay", "off"])
    try:
        wait_tip(pg, "rr", d, node)
        n0 = len(d.lines)
        node.reorg(fork_height=25, new_len=20, txs_per_block=2)
        d.wait_for_log(r"reorg: fork height=25", start=n0)
        node.reorg(fork_height=20, new_len=30, txs_per_block=2)
        wait_tip(pg, "rr", d, node)
        assert psql(pg, "rr", CONSISTENT) == [("t",)]
    finally:
        d.stop()
    assert dump(pg, "rr") == fresh_index(pg, build_dir, tmp_path, node, "rrfresh")


def test_reorg_1000_deep(pg_module, build_dir, simnode_factory, tmp_path):
    """A reorg of 1000 blocks (coinbase-only, to stay quick)."""
    pg = pg_module
    from test_utxo import check_confirmed_utxos, node_chain_txs
    node = simnode_factory(generate=1005, seed=9)
    ci = create_db(pg, "deep")
    d = start(build_dir, tmp_path / "deep", node.port, ci, ["--relay", "off"])
    try:
        wait_tip(pg, "deep", d, node, timeout=240)
        # outputs (issue 14): the UTXO set of the generated 1000-block chain,
        # computed independently, before and after the reorg
        assert check_confirmed_utxos(pg, "deep", node_chain_txs(node)) >= 1005
        node.reorg(fork_height=5, new_len=1001)
        wait_tip(pg, "deep", d, node, timeout=240)
        assert check_confirmed_utxos(pg, "deep", node_chain_txs(node)) >= 1006
        m = d.wait_for_log(r"reorg: indexed best chain switched: fork height=5 leaving=1000 "
                           r"joining=1001 .*\((one transaction, [0-9.]+ ms)\)")
        print(m.group(1))
        assert psql(pg, "deep", CONSISTENT) == [("t",)]
    finally:
        d.stop()
    assert dump(pg, "deep") == fresh_index(pg, build_dir, tmp_path, node, "deepfresh")


def test_reorg_during_initial_sync(pg_module, build_dir, simnode_factory, tmp_path):
    """The node reorgs while conduitd is still catching up: the index ends on
    the winning chain, identical to a fresh index of it."""
    pg = pg_module
    node = simnode_factory(generate=300, txs_per_block=2, seed=12)
    ci = create_db(pg, "midsync")
    d = start(build_dir, tmp_path / "ms", node.port, ci, ["--relay", "off"])
    try:
        d.wait_for_log(r"blocksync: stored block")
        node.reorg(fork_height=250, new_len=60, txs_per_block=2)
        wait_tip(pg, "midsync", d, node, timeout=180)
        assert psql(pg, "midsync", CONSISTENT) == [("t",)]
    finally:
        d.stop()
    assert dump(pg, "midsync") == fresh_index(pg, build_dir, tmp_path, node, "msfresh")


def test_reorg_drops_spenders_of_orphaned_coinbase(pg_module, build_dir, simnode_factory,
                                                  tmp_path):
    """A block's non-coinbase txs return to the mempool when it leaves the best
    chain; its coinbase cannot, so a mempool tx spending that coinbase, and
    the mempool tx spending that one, are dropped (sql/003). Other mempool txs
    stay."""
    from tests.simnode.protocol import parse_block
    pg = pg_module
    node = simnode_factory(generate=20, txs_per_block=2, seed=17)
    ci = create_db(pg, "cbo")
    d = start(build_dir, tmp_path / "cbo", node.port, ci)
    try:
        wait_tip(pg, "cbo", d, node)
        wait_relay(d)
        tip_blk = node.chain.tip
        raw_blk = tip_blk.read()
        _, txs = parse_block(raw_blk)
        s, e, _, outs = txs[0]
        cb = sha256d(raw_blk[s:e])
        returning = set(txid(raw_blk[s2:e2]) for s2, e2, _, _ in txs[1:])
        assert returning
        spk = outs[0][1]
        spender = ser_tx([(cb, 0, b"\x51", 0xFFFFFFFF)], [(outs[0][0] - 1000, spk)])
        child = ser_tx([(sha256d(spender), 0, b"\x51", 0xFFFFFFFF)], [(outs[0][0] - 2000, spk)])
        # validate=False: the old lenient acceptance, said so explicitly: the
        # node would refuse a spend of the tip's (immature) coinbase with an
        # OP_1 scriptSig; this test is about conduitd's bookkeeping only
        node.add_mempool_tx(spender, validate=False)
        node.add_mempool_tx(child, validate=False)
        other = [txid(t) for t in node.make_mempool_txs(2)]
        pool = {txid(spender), txid(child)} | set(other)
        wait_until(lambda: mempool(pg, "cbo") >= pool, d, "mempool txs indexed")
        # the simulator's branch is coinbase-only: the old tip block leaves
        with node.lock:
            node.mempool.clear()
            node.mempool_spent.clear()
        node.reorg(fork_height=tip_blk.height - 1, new_len=2)
        wait_tip(pg, "cbo", d, node)
        d.wait_for_log(r"reorg: indexed best chain switched: fork height=%d leaving=1 joining=2"
                       % (tip_blk.height - 1))
        # the node re-validates the returning txs (its mempool was emptied
        # above): those spending a coinbase that is immature at the new tip
        # (every coinbase of this 20-block chain) go, as they go from
        # mempool_tx (sql/006, 'immature-coinbase'); `other` stays here
        kept = set(node.mempool_txids())
        assert kept < returning
        want = kept | set(other)
        wait_until(lambda: mempool(pg, "cbo") == want, d, "mempool after the reorg")
        ev = dict(((r[0], r[1]), r[2]) for r in psql(
            pg, "cbo", "SELECT cd_txid_hex(tx_hash), reason, coalesce(cd_txid_hex(via), '') "
                       "FROM mempool_evicted;"))
        assert ev[(txid(spender), "missing-inputs")] == ""
        assert ev[(txid(child), "missing-inputs")] == txid(spender)
        for t in returning - kept:
            assert (t, "immature-coinbase") in ev
        assert psql(pg, "cbo", "SELECT count(*) FROM mempool_inputs WHERE prev_hash IN "
                               "(cd_txid('%s'), cd_txid('%s'));"
                    % (cb[::-1].hex(), txid(spender))) == [("0",)]
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-3000:]
