"""The mempool mirror against the simulated node in its real-node default mode
(issue 13 sections 1, 2 and "Done when"; issue 11 F10).

  * a node that refuses `mempool` (not whitelisted): conduitd's sync
    connection stays up (it never sends `mempool`; one short probe connection
    is closed by the node, once, and the refusal is remembered across a
    restart), and the txs the node relays are indexed;
  * a reorg after `invalidateblock` that makes mempool txs non-final,
    immature-coinbase spends and double spends: mempool_tx ends equal to the
    node's mempool, with and without `mempool` allowed, and every evicted row
    says why (mempool_evicted, NOTIFY cd_evict);
  * a snapshot of the node's mempool answered before such a reorg and
    completing after it is dropped unused (what it lists, the reorg made
    non-final or immature);
  * `invalidateblock` on the node after conduitd reconnected to it at the tip
    is seen as well.
"""

import os
import re
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from simnode_fixtures import sync_connections  # noqa: E402
from test_index import create_db, psql  # noqa: E402
from test_reorg import MQ, mempool, start, txid, wait_tip, wait_until  # noqa: E402

REFUSED = "mempool request from nonwhitelisted peer disabled"


def probes(node):
    """Connections on which conduitd sent `mempool`."""
    return [c for c in node.connections() if "mempool" in c.commands()]


def test_stays_connected_and_indexes_relayed_txs(pg_module, build_dir, simnode_factory, tmp_path):
    pg = pg_module
    node = simnode_factory(generate=110, txs_per_block=2, seed=41)  # not whitelisted
    ci = create_db(pg, "mmconn")
    datadir = tmp_path / "d"
    d = start(build_dir, datadir, node.port, ci)
    try:
        wait_tip(pg, "mmconn", d, node)
        d.wait_for_log(r"mempool: index at the best tip; relay on", timeout=60)
        synced = time.monotonic()
        w = d.wait_for_log(r"WARN .*mempool: node 127\.0\.0\.1:%d .*refuses `mempool`.*" % node.port,
                           timeout=60).group(0)
        assert "whitelist=127.0.0.1" in w and "rejectmempoolrequest=0" in w
        assert "already in the node's mempool" in w
        # 5 txs made on the node are relayed and indexed
        ids = [txid(t) for t in node.make_mempool_txs(5)]
        assert len(ids) == 5
        wait_until(lambda: mempool(pg, "mmconn") >= set(ids), d, "5 relayed txs indexed")
        # 60 s after sync: one sync connection, never closed, never sent `mempool`
        while time.monotonic() < synced + 60:
            sc = sync_connections(node)
            assert len(sc) == 1 and not sc[0].closed, [c.close_reason for c in node.connections()]
            time.sleep(1)
        sc = sync_connections(node)[0]
        assert "mempool" not in sc.commands()
        assert sc.close_reason is None
        # exactly one probe, closed by the node for `mempool`; nothing else closed
        p = probes(node)
        assert len(p) == 1 and REFUSED in (p[0].close_reason or ""), [
            (c.commands(), c.close_reason) for c in node.connections()]
        assert [c for c in node.connections() if c.closed and c not in p] == []
        assert len(node.connections()) == 2
        refused = (datadir / "mempool_refused").read_text()
        assert "127.0.0.1:%d " % node.port in refused
    finally:
        d.stop()
    # the refusal is remembered: after a restart no probe at all
    n_conns = len(node.connections())
    d = start(build_dir, datadir, node.port, ci)
    try:
        wait_tip(pg, "mmconn", d, node)
        d.wait_for_log(r"mempool: index at the best tip; relay on", timeout=60)
        d.wait_for_log(r"refuses `mempool`.*remembered", timeout=60)
        more = [txid(t) for t in node.make_mempool_txs(2)]
        wait_until(lambda: mempool(pg, "mmconn") >= set(more), d, "relayed after the restart")
        assert len(probes(node)) == 1
        assert len(node.connections()) == n_conns + 1
        assert not sync_connections(node)[0].closed
    finally:
        d.stop()


def evicted(pg, db):
    return dict((r[0], (r[1], r[2])) for r in psql(
        pg, db, "SELECT cd_txid_hex(tx_hash), reason, coalesce(cd_txid_hex(via), '') "
                "FROM mempool_evicted WHERE reason <> 'confirmed';"))


@pytest.mark.parametrize("whitelist", [False, True], ids=["no-mempool", "mempool-allowed"])
def test_reorg_converges_to_node_mempool(pg_module, build_dir, simnode_factory, tmp_path,
                                         whitelist):
    pg = pg_module
    db = "mmreorg%d" % whitelist
    node = simnode_factory(generate=120, seed=43, whitelist=whitelist)  # coinbase-only
    ci = create_db(pg, db)
    listener = subprocess.Popen(
        ["psql", "-X", "-q", "-A", "-t", "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres",
         "-d", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    listener.stdin.write(b"LISTEN cd_evict;\n")
    listener.stdin.flush()
    d = start(build_dir, tmp_path / "d", node.port, ci, ["--mempool-sync-grace", "1"])
    try:
        wait_tip(pg, db, d, node)
        d.wait_for_log(r"mempool: index at the best tip; relay on", timeout=60)

        # a tx that goes into block H (it returns to the mempool on the reorg)
        back = node.make_tx()
        node.submit_tx(back)
        wait_until(lambda: txid(back) in mempool(pg, db), d, "tx to be mined")
        blk_h = node.mine(1)[0]
        wait_tip(pg, db, d, node)
        h = node.chain.height
        assert blk_h.height == h and txid(back) not in mempool(pg, db)

        # at tip h: final / mature for block h+1, no longer for block h
        def made(**kw):
            raw = node.make_tx(**kw)
            node.submit_tx(raw)
            return raw
        nf = made(locktime=h, sequence=0xFFFFFFFE)         # nLockTime h, by height
        nf_child = made(parent=nf, vout=0)                 # its descendant
        cb = made(coinbase_height=h + 1 - 100)             # mature at h+1 only
        ok = made()
        ds = made()
        ds2 = node.make_tx(double_spend=ds)                # mined on the new branch
        want0 = set(node.mempool_txids())
        assert want0 == {txid(t) for t in (nf, nf_child, cb, ok, ds)}
        wait_until(lambda: mempool(pg, db) == want0, d, "the node's mempool mirrored")

        # invalidateblock h: the node goes back to h-1, `back` returns, nf (+ child) is
        # non-final for block h, cb immature; nothing is announced
        node.invalidate(blk_h.hash_hex)
        assert set(node.mempool_txids()) == {txid(back), txid(ok), txid(ds)}
        # a block at height h (as much work as conduitd's tip: no switch yet) holding
        # the double spend of ds; then h+1: conduitd switches
        node.reorg(fork_height=h - 1, new_len=1, txs=[ds2])
        node.generate(1, announce=True)
        wait_tip(pg, db, d, node)
        d.wait_for_log(r"reorg: indexed best chain switched: fork height=%d leaving=1 "
                       r"joining=2" % (h - 1))
        want = set(node.mempool_txids())
        assert want == {txid(back), txid(ok)}
        wait_until(lambda: mempool(pg, db) == want, d, "mempool_tx equal to the node's")
        # (conduitd saw the node announce block h at no more work than its own
        # tip: the node had gone back, and its rules were applied at the fork)
        assert "moved its tip back to a branch without more work" in d.log_text()

        # every eviction says why
        ev = evicted(pg, db)
        assert ev[txid(nf)] == ("non-final", "")
        assert ev[txid(nf_child)] == ("non-final", txid(nf))
        assert ev[txid(cb)] == ("immature-coinbase", "")
        assert ev[txid(ds)] == ("double-spend", "")
        # docs/QUERIES.md "Was my transaction mined or dropped?"
        assert psql(pg, db, MQ["tx_fate"], txid=txid(nf_child))[0][:3] == (
            "non-final", str(h - 1), txid(nf))
        assert psql(pg, db, "SELECT reason, height FROM mempool_evicted "
                            "WHERE tx_hash = cd_txid('%s') ORDER BY id LIMIT 1;"
                    % txid(back)) == [("confirmed", str(h))]
        if whitelist:
            d.wait_for_log(r"mempool: snapshot of 127\.0\.0\.1:%d done" % node.port)
        # still equal a moment later (a snapshot or housekeeping changes nothing)
        time.sleep(2)
        assert mempool(pg, db) == set(node.mempool_txids())
    finally:
        d.stop()
        listener.stdin.write(b"SELECT 1;\n\\q\n")
        listener.stdin.flush()
        out = listener.communicate(timeout=30)[0].decode()
    # the notifications carried the same reasons
    for t, why in ((nf, "non-final"), (cb, "immature-coinbase"), (ds, "double-spend")):
        assert '"txid" : "%s", "reason" : "%s"' % (txid(t), why) in out, out


def block_h_and_txs_final_after_it(pg, db, d, node):
    """Block h holding a tx `back`, then four txs relayed to conduitd: `nf`
    (nLockTime h, final for block h+1 only) and its child, `cb` (spends the
    coinbase that matures at h+1), `ok`. Returns them by name, with h and
    block h, once mempool_tx holds the four."""
    def made(**kw):
        raw = node.make_tx(**kw)
        node.submit_tx(raw)
        return raw
    T = {"back": made()}
    wait_until(lambda: txid(T["back"]) in mempool(pg, db), d, "tx to be mined")
    T["blk_h"] = node.mine(1)[0]
    wait_tip(pg, db, d, node)
    h = T["h"] = node.chain.height
    T["nf"] = made(locktime=h, sequence=0xFFFFFFFE)
    T["nf_child"] = made(parent=T["nf"], vout=0)
    T["cb"] = made(coinbase_height=h + 1 - 100)
    T["ok"] = made()
    want0 = {txid(T[k]) for k in ("nf", "nf_child", "cb", "ok")}
    wait_until(lambda: mempool(pg, db) == want0, d, "the node's relayed txs in mempool_tx")
    return T


def go_back_and_switch(pg, db, d, node, T, meanwhile=lambda: None):
    """invalidateblock h on the node (its mempool: `back` and `ok`; the other
    three are non-final or immature for block h), meanwhile(), then a branch
    from h-1 with more work: conduitd switches."""
    h = T["h"]
    node.invalidate(T["blk_h"].hash_hex)
    assert set(node.mempool_txids()) == {txid(T["back"]), txid(T["ok"])}
    meanwhile()
    node.reorg(fork_height=h - 1, new_len=1)
    node.generate(1, announce=True)
    wait_tip(pg, db, d, node)
    d.wait_for_log(r"reorg: indexed best chain switched: fork height=%d leaving=1 "
                   r"joining=2" % (h - 1))


def assert_evicted_for_the_nodes_reasons(pg, db, T):
    ev = sorted(psql(pg, db, "SELECT cd_txid_hex(tx_hash), reason FROM mempool_evicted "
                             "WHERE reason <> 'confirmed';"))
    assert ev == sorted([(txid(T["nf"]), "non-final"), (txid(T["nf_child"]), "non-final"),
                         (txid(T["cb"]), "immature-coinbase")]), ev
    assert psql(pg, db, MQ["tx_fate"], txid=txid(T["nf_child"]))[0][:3] == (
        "non-final", str(T["h"] - 1), txid(T["nf"]))


def test_snapshot_answered_before_a_reorg_is_dropped(pg_module, build_dir, simnode_factory,
                                                     tmp_path):
    """The race test_reorg_converges_to_node_mempool hit 1 run in 4 before
    cd_mempool_sync_stale, made certain: the node holds its pong to a
    snapshot's ping (hold_mempool_pong) until conduitd has switched branch.
    Without the fix that snapshot then completes and fetches back the txs it
    listed that the reorg evicted (the node serves them from its relay
    memory): they stay until a later snapshot evicts them again as
    `not-in-node-mempool`, and "was my tx mined or dropped?" (tx_fate) no
    longer says why the node dropped them."""
    pg = pg_module
    db = "mmstale"
    node = simnode_factory(generate=120, seed=47, whitelist=True)  # coinbase-only
    ci = create_db(pg, db)
    d = start(build_dir, tmp_path / "d", node.port, ci,
              ["--mempool-sync-grace", "1", "--mempool-sync-interval", "2"])
    hold = None
    try:
        wait_tip(pg, db, d, node)
        d.wait_for_log(r"mempool: snapshot of 127\.0\.0\.1:%d done" % node.port, timeout=60)

        T = block_h_and_txs_final_after_it(pg, db, d, node)

        # the next periodic snapshot: `mempool` answered (the 4 txs), its ping held
        hold = node.hold_mempool_pong()
        assert hold.held.wait(60), d.log_text()[-4000:]

        go_back_and_switch(pg, db, d, node, T)
        assert "moved its tip back to a branch without more work" in d.log_text()
        hold.release()

        want = {txid(T["back"]), txid(T["ok"])}
        wait_until(lambda: mempool(pg, db) == want, d, "mempool_tx equal to the node's",
                   timeout=60)
        time.sleep(3)  # a snapshot or two later: still equal, evicted once each, for its reason
        assert mempool(pg, db) == want
        assert_evicted_for_the_nodes_reasons(pg, db, T)
        assert re.search(r"mempool: snapshot of 127\.0\.0\.1:%d dropped unused: the best "
                         r"chain switched while it ran" % node.port,
                         d.log_text()), d.log_text()[-6000:]
    finally:
        if hold is not None:
            hold.release()
        d.stop()


def reconnect(d, node):
    """The node closes every connection (its `disconnect` fault); conduitd
    reconnects and its getheaders is answered."""
    old = {c.id for c in node.connections()}
    node.misbehave("disconnect")
    assert node.wait_for(lambda: any("getheaders" in c.commands() for c in node.handshaken()
                                     if c.id not in old), timeout=60), d.log_text()[-4000:]
    time.sleep(0.5)


@pytest.mark.parametrize("when", ["at-the-tip", "while-away"])
def test_invalidateblock_after_a_reconnect(pg_module, build_dir, simnode_factory, tmp_path, when):
    """After a reconnect the node's `headers` answer is empty when its tip is
    a block of conduitd's best chain: the one at its `version` height.
    at-the-tip: conduitd's tip, and the announcement after invalidateblock,
    on a branch without more work, is the node going back. while-away: the
    node went back before conduitd reconnected, to the block below. Before,
    the tip a peer announced was known only from its first non-empty
    `headers`, the going back was missed, and with a node that refuses
    `mempool` (the default) the txs it made non-final stayed in mempool_tx
    for good."""
    pg = pg_module
    db = "mmreconn_" + when.replace("-", "_")
    node = simnode_factory(generate=120, seed=48)  # refuses `mempool`
    ci = create_db(pg, db)
    d = start(build_dir, tmp_path / "d", node.port, ci, ["--mempool-sync-grace", "1"])
    try:
        wait_tip(pg, db, d, node)
        d.wait_for_log(r"mempool: index at the best tip; relay on", timeout=60)

        T = block_h_and_txs_final_after_it(pg, db, d, node)
        if when == "at-the-tip":
            reconnect(d, node)
            go_back_and_switch(pg, db, d, node, T)
            said = "moved its tip back to a branch without more work (height %d, fork height %d" % (
                T["h"], T["h"] - 1)
        else:
            go_back_and_switch(pg, db, d, node, T, meanwhile=lambda: reconnect(d, node))
            said = "is at height %d, below the best tip at %d, after a reconnect" % (
                T["h"] - 1, T["h"])
        want = {txid(T["back"]), txid(T["ok"])}
        wait_until(lambda: mempool(pg, db) == want, d, "mempool_tx equal to the node's",
                   timeout=30)
        assert "mempool: peer 127.0.0.1:%d %s" % (node.port, said) in d.log_text()
        assert_evicted_for_the_nodes_reasons(pg, db, T)
    finally:
        d.stop()
