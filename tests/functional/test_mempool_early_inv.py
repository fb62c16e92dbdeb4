"""A tx the node announces while the index is still catching up is fetched
once relay turns on (src/index/cd_mempool_relay.c, cd_mempool_pending_*).

The node announces new txs to a peer whose version message asked for relay,
from the moment the connection is up, and serves a `getdata` for a tx it
announced from its relay memory for 15 minutes (bitcoin-sv
src/net_processing.cpp: mapRelay, vRelayExpiration); a non-whitelisted peer
may not send `mempool` (the simulator refuses it too). Before, the daemon
ignored every inv until its index reached the tip, so such a tx was never
fetched: it appeared only once mined.

The index is held one block short of the tip by withholding that block
(getdata unanswered), the tx is announced, a ping/pong proves the daemon read
the inv (messages on a connection are handled in order) while relay was still
off, then the block is served (asked again after --block-timeout).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_index import create_db, psql  # noqa: E402
from simnode_fixtures import sync_connections  # noqa: E402
from test_reorg import mempool, start, txid, wait_tip, wait_until  # noqa: E402
from tests.simnode.protocol import unhexh  # noqa: E402

RELAY_ON = "mempool: index at the best tip; relay on"


def indexed_height(pg, db):
    try:
        r = psql(pg, db, "SELECT height FROM best_tip;")
        return int(r[0][0]) if r and r[0][0] != "" else -1
    except Exception:  # the schema may not exist yet
        return -1


def sync_point(c, d):
    """A ping answered: the daemon has read everything the node sent on `c`
    before it (messages on a connection are handled in order)."""
    pongs = c.pongs_ok
    c.send_ping()
    wait_until(lambda: c.pongs_ok > pongs, d, "the pong")


def one_block_short(pg, build_dir, tmp_path, db, nodes):
    """Mines one block on each node (the same chain) and withholds it, starts
    the daemon on all of them and waits until its index is one block short
    of the tip. Returns (daemon, the withheld block's hash)."""
    for n in nodes:
        n.mine(1)
    last = nodes[0].chain.tip.hash_hex
    assert all(n.chain.tip.hash_hex == last for n in nodes)
    for n in nodes:
        n.withhold(last)
    ci = create_db(pg, db)
    extra = []
    for n in nodes[1:]:
        extra += ["--connect", "127.0.0.1:%d" % n.port]
    d = start(build_dir, tmp_path / "d", nodes[0].port, ci, extra + ["--block-timeout", "5"])
    try:
        wait_until(lambda: indexed_height(pg, db) == nodes[0].chain.tip.height - 1, d,
                   "the index one block short of the tip")
    except BaseException:
        d.stop()
        raise
    return d, last


def relay_on(pg, db, d, nodes, last):
    """Serves the withheld block (asked again after --block-timeout) and
    waits for the index at the tip and relay on."""
    for n in nodes:
        n.withheld.discard(unhexh(last))
    wait_tip(pg, db, d, nodes[0])
    d.wait_for_log(RELAY_ON, timeout=60)


def test_tx_announced_before_relay_on_is_fetched(pg_module, build_dir, simnode_factory,
                                                 tmp_path):
    pg = pg_module
    node = simnode_factory(generate=12, txs_per_block=2, seed=41)
    db = "early_inv"
    d, last = one_block_short(pg, build_dir, tmp_path, db, [node])
    try:
        conns = sync_connections(node)
        assert len(conns) == 1
        c = conns[0]
        raw = node.make_tx()
        node.add_mempool_tx(raw)  # announced (inv) to the daemon's connection
        sync_point(c, d)
        assert RELAY_ON not in d.log_text(), "relay was on before the tx was announced"
        assert txid(raw) not in mempool(pg, db)

        relay_on(pg, db, d, [node], last)
        wait_until(lambda: txid(raw) in mempool(pg, db), d,
                   "the tx announced before relay on, in the mempool tables", timeout=60)
        d.wait_for_log(r"mempool: 1 txs announced while the index caught up: asked for 1 ",
                       timeout=10)
    finally:
        d.stop()
