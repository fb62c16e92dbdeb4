"""A tx asked for after the node's relay memory forgot it
(src/index/cd_mempool_relay.c, cd_mempool_pending_* and the notfound path).

The node answers a `getdata` for a tx it announced from its relay memory for
15 minutes after the first announcement, then with `notfound` although the tx
may still be in its mempool (bitcoin-sv src/net/net_processing.cpp: mapRelay,
vRelayExpiration, ProcessGetData; tests/simnode/relaymem.py).  The daemon
keeps the tx invs that arrive while its index catches up and asks for those
of the last ~15 minutes at relay on (test_mempool_early_inv.py): the edge is
a tx announced early that the node has forgotten by then.

The simulated node's clock is moved past its relay memory (advance_clock: no
test waits 15 minutes; the daemon's own clock is not touched, so the daemon
still asks).  Checked: the node answers `notfound`, the daemon says so in its
log and status, does not ask again, stays connected, and the mempool tables
never hold the tx; the tx announced after the clock moved is fetched.  And a
tx announced early by two nodes, the first of which forgot it by relay on,
is asked from the second (the last to announce it).
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_mempool_early_inv import (RELAY_ON, one_block_short, relay_on,  # noqa: E402
                                    sync_point)
from simnode_fixtures import sync_connections  # noqa: E402
from test_reorg import mempool, txid, wait_tip, wait_until  # noqa: E402
from tests.simnode.protocol import parse_inv, sha256d  # noqa: E402
from tests.simnode.relaymem import RELAY_EXPIRY  # noqa: E402


def asked(node, conn, h):
    """How many times `h` was asked by getdata on `conn`."""
    return sum(1 for _, cmd, p in node.received_messages(conn)
               if cmd == "getdata" and (1, h) in parse_inv(p))


def refused_notfound(datadir):
    try:
        text = open(os.path.join(datadir, "status")).read()
    except OSError:
        return -1
    m = re.search(r"^mempool_refused=notfound (\d+)$", text, re.M)
    return int(m.group(1)) if m else -1


def test_early_inv_past_the_relay_memory(pg_module, build_dir, simnode_factory, tmp_path):
    pg = pg_module
    node = simnode_factory(generate=12, txs_per_block=2, seed=43)
    db = "relay_expiry"
    d, last = one_block_short(pg, build_dir, tmp_path, db, [node])
    datadir = d.datadir
    try:
        conns = sync_connections(node)
        assert len(conns) == 1
        c = conns[0]
        gone = node.make_tx()
        node.add_mempool_tx(gone)               # announced while the index catches up
        node.advance_clock(RELAY_EXPIRY + 1)    # the node forgets it (the daemon's clock: not)
        kept = node.make_tx()
        node.add_mempool_tx(kept)               # announced after: still in the relay memory
        sync_point(c, d)
        assert RELAY_ON not in d.log_text(), "relay was on before the txs were announced"

        relay_on(pg, db, d, [node], last)
        d.wait_for_log(r"mempool: 2 txs announced while the index caught up: asked for 2 ",
                       timeout=10)
        wait_until(lambda: txid(kept) in mempool(pg, db), d, "the tx still in the relay memory")
        h = sha256d(gone)
        wait_until(lambda: any("getdata for tx %s" % txid(gone) in e for _, e in c.events), d,
                   "the node's notfound")
        sync_point(c, d)                        # the daemon has read the notfound

        # said once, with the peer, and counted in the status
        d.wait_for_log(r"mempool: peer 127\.0\.0\.1:%d: 1 txs asked at relay on were answered "
                       r"notfound" % node.port, timeout=10)
        wait_until(lambda: refused_notfound(datadir) == 1, d, "status: 1 notfound")
        # not asked again, the connection kept
        later = node.make_tx()
        node.add_mempool_tx(later)
        wait_until(lambda: txid(later) in mempool(pg, db), d, "a tx announced later")
        assert asked(node, c, h) == 1
        assert not c.closed and sync_connections(node) == [c]
        assert txid(gone) not in mempool(pg, db)
        assert node.mempool_txids().count(txid(gone)) == 1   # the node still has it
        # mined: the index has it as confirmed, the mempool tables never did
        node.mine(1)
        wait_tip(pg, db, d, node)
        assert txid(gone) not in mempool(pg, db)
        assert asked(node, c, h) == 1
    finally:
        d.stop()


def test_early_inv_asked_from_the_last_announcer(pg_module, build_dir, simnode_factory,
                                                 tmp_path):
    """Two nodes announce the same tx while the index catches up, the first
    long before the second: only the second still has it in its relay
    memory at relay on, so that is the one to ask (the daemon asks a tx from
    one peer at a time, and a notfound is not retried elsewhere)."""
    pg = pg_module
    first = simnode_factory(generate=12, txs_per_block=2, seed=44)
    second = simnode_factory(generate=12, txs_per_block=2, seed=44)   # the same chain
    db = "relay_expiry_two"
    d, last = one_block_short(pg, build_dir, tmp_path, db, [first, second])
    try:
        c1, = sync_connections(first)
        c2, = sync_connections(second)
        raw = first.make_tx()
        first.add_mempool_tx(raw)
        sync_point(c1, d)
        first.advance_clock(RELAY_EXPIRY + 1)   # the first node forgets it
        second.add_mempool_tx(raw)              # the second announces it now
        sync_point(c2, d)
        assert RELAY_ON not in d.log_text(), "relay was on before the tx was announced"

        relay_on(pg, db, d, [first, second], last)
        d.wait_for_log(r"mempool: 2 txs announced while the index caught up: asked for 1 ",
                       timeout=10)
        wait_until(lambda: txid(raw) in mempool(pg, db), d,
                   "the tx, from the node that announced it last")
        h = sha256d(raw)
        assert (asked(first, c1, h), asked(second, c2, h)) == (0, 1)
    finally:
        d.stop()
