"""Tests of the simulated BSV node (tests/simnode) against an independent
tiny client (simnode_client.py) and python-bitcoinlib as block decoder.

Run: /usr/bin/python3 -m pytest tests/functional/test_simnode.py
"""
import hashlib
import os
import socket
import struct
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simnode_fixtures import (  # noqa: E402,F401
    SHARED, simnode, simnode_factory, simnode_process, simnode_regtest115,
    simnode_regtest116, shared_data_dir)
from simnode_client import (  # noqa: E402
    Client, collect, dsha, parse_headers, parse_inv, parse_reject, varint, read_varint)
from tests.simnode.mempool import TxRejected  # noqa: E402
from tests.simnode.protocol import hexh  # noqa: E402
from tests.simnode.txval import Tx, TxIn, check_scripts, sighash  # noqa: E402

import bitcoin.core as bc  # noqa: E402
from bitcoin.core.serialize import uint256_from_compact, uint256_from_str  # noqa: E402

REGTEST = SHARED / "data/regtest"
CHAIN115 = REGTEST / "blockchain_115_3677f4"
CHAIN116 = REGTEST / "blockchain_116_7c9cd2"
MAINNET_BLOCK = SHARED / "data/mainnet/block413567.raw"
GENESIS = bytes.fromhex("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206")[::-1]


def connect(node, **kw):
    """Client connected and handshaken (also on the node's side)."""
    c = Client(node.port)
    c.handshake(**kw)
    port = c.sock.getsockname()[1]
    node.wait_for(lambda: any(x.got_verack for x in node.conns if x.addr[1] == port))
    return c


def sync_headers(c, locator=(GENESIS,)):
    """getheaders loop; returns all headers received."""
    out = []
    loc = list(locator)
    while True:
        hs = c.getheaders(loc)
        out += hs
        if len(hs) < 2000:
            return out
        loc = [dsha(hs[-1])]


def check_block_bitcoinlib(raw, expect_hash=None, prev=None):
    blk = bc.CBlock.deserialize(raw)
    h = blk.GetHash()
    if expect_hash is not None:
        assert h == expect_hash
    if prev is not None:
        assert blk.hashPrevBlock == prev
    assert blk.calc_merkle_root() == blk.hashMerkleRoot
    assert uint256_from_str(h) <= uint256_from_compact(blk.nBits)
    assert blk.vtx[0].is_coinbase()
    assert all(not tx.is_coinbase() for tx in blk.vtx[1:])
    assert blk.serialize() == raw
    return blk


# ---------------------------------------------------------------- generation

def test_generated_chain_valid_per_bitcoinlib(simnode_factory):
    node = simnode_factory(generate=40, txs_per_block=12, seed=5)
    utxo = set()
    spent = set()
    kinds = set()
    prev = GENESIS
    ntx = 0
    for height in range(1, 41):
        b = node.chain.at(height)
        raw = b.read()
        blk = check_block_bitcoinlib(raw, expect_hash=b.hash, prev=prev)
        prev = b.hash
        assert blk.nBits == 0x207FFFFF
        for i, tx in enumerate(blk.vtx):
            txid = tx.GetTxid()
            assert txid == dsha(tx.serialize())
            if i:
                ntx += 1
                for vin in tx.vin:
                    op = (vin.prevout.hash, vin.prevout.n)
                    assert op in utxo, "input spends a non-existent or spent output"
                    utxo.remove(op)
                    spent.add(op)
            for n, out in enumerate(tx.vout):
                s = bytes(out.scriptPubKey)
                if s[:3] == b"\x76\xa9\x14" and len(s) == 25:
                    kinds.add("p2pkh")
                elif s[:2] == b"\xa9\x14" and len(s) == 23:
                    kinds.add("p2sh")
                elif s[-1:] == b"\xac" and len(s) in (35, 67):
                    kinds.add("p2pk")
                elif s[-1:] == b"\xae":
                    kinds.add("multisig")
                elif s[:2] == b"\x00\x6a":
                    kinds.add("opreturn")
                    continue
                utxo.add((txid, n))
    assert ntx > 200
    assert {"p2pkh", "p2sh", "p2pk", "multisig", "opreturn"} <= kinds
    # deterministic from the seed
    again = simnode_factory(generate=40, txs_per_block=12, seed=5)
    assert again.chain.tip.hash == node.chain.tip.hash
    other = simnode_factory(generate=40, txs_per_block=12, seed=6)
    assert other.chain.tip.hash != node.chain.tip.hash


def test_op_return_push_opcodes(simnode_factory):
    node = simnode_factory(generate=30, txs_per_block=20, seed=2)
    ops = set()
    for h in range(1, 31):
        blk = bc.CBlock.deserialize(node.chain.at(h).read())
        for tx in blk.vtx:
            for out in tx.vout:
                s = out.scriptPubKey
                if bytes(s[:2]) == b"\x00\x6a":
                    for op, data, _ in bc.script.CScript(s[1:]).raw_iter():
                        if op in (0x4C, 0x4D, 0x4E):
                            ops.add(op)
                        elif 0 < op < 0x4C:
                            ops.add("direct")
    assert ops == {"direct", 0x4C, 0x4D, 0x4E}


def test_generate_100k_headers_chain(simnode_factory):
    t = time.time()
    node = simnode_factory(generate=100_000, seed=9)
    assert node.chain.height == 100_000
    # spot-check linkage and PoW
    for h in (1, 50_000, 100_000):
        b = node.chain.at(h)
        assert b.prev == node.chain.at(h - 1).hash
        assert uint256_from_str(b.hash) <= uint256_from_compact(0x207FFFFF)
    print("100k coinbase-only blocks in %.1fs" % (time.time() - t))


# ---------------------------------------------------------------- real chains

@pytest.mark.parametrize("chain_dir", [CHAIN115, CHAIN116])
def test_real_regtest_chain_served_byte_for_byte(simnode_factory, chain_dir):
    node = simnode_factory(chain_dir=str(chain_dir))
    hashes = [bytes.fromhex(x.strip())[::-1] for x in open(chain_dir / "headers.txt") if x.strip()]
    c = connect(node)
    hdrs = sync_headers(c)
    assert [dsha(h) for h in hdrs] == hashes[1:]
    # request in windows of 16
    for i in range(1, len(hashes), 16):
        win = hashes[i:i + 16]
        c.getdata([(2, h) for h in win])
        for h in win:
            _, p, info = c.wait("block")
            assert info["checksum_ok"]
            assert p == (chain_dir / h[::-1].hex()).read_bytes()
    c.close()


def test_mainnet_block_served_as_extra(simnode_factory):
    node = simnode_factory(generate=3)
    b = node.add_extra_block(str(MAINNET_BLOCK))
    assert b.kind == "file"
    want = bytes.fromhex("0000000000000000025aff8be8a55df8f89c77296db6198f272d6577325d4069")[::-1]
    assert b.hash == want
    c = connect(node)
    p, info = c.get_block(want)
    assert info["checksum_ok"] and p == MAINNET_BLOCK.read_bytes()
    blk = bc.CBlock.deserialize(p)
    assert len(blk.vtx) == 1557
    assert blk.calc_merkle_root() == blk.hashMerkleRoot


# ---------------------------------------------------------------- handshake

def test_handshake_sequence(simnode_factory):
    node = simnode_factory(generate=5)
    c = Client(node.port)
    c.send("version", c.version_payload())
    first = [c.recv() for _ in range(3)]
    assert [m[0] for m in first] == ["version", "verack", "protoconf"]
    ver = first[0][1]
    assert struct.unpack_from("<i", ver)[0] == 70016
    assert ver[-1:] == b"\x00"              # association id var_bytes = 00
    assert ver[-2:-1] == b"\x01"            # relay
    ua_len = ver[80]
    ua = ver[81:81 + ua_len].decode()
    assert ua.startswith("/Bitcoin SV:")
    assert struct.unpack_from("<i", ver, 81 + ua_len)[0] == 5   # start height
    assert first[2][1].hex() == "020000200015426c6f636b5072696f726974792c44656661756c74"
    c.send("verack")
    after = [c.recv()[0] for _ in range(5)]
    assert after == ["authch", "sendheaders", "sendcmpct", "ping", "feefilter"]
    assert c.log[-3][1] == b"\x00" + struct.pack("<Q", 1)     # sendcmpct(0, 1)
    c.send("protoconf", b"\x01" + struct.pack("<I", 2 << 20))
    c.send("sendheaders")
    c.send("getheaders", struct.pack("<I", 70016) + b"\x01" + GENESIS + b"\0" * 32)
    c.wait("headers")
    conn = node.connections()[0]
    assert conn.commands()[:5] == ["version", "verack", "protoconf", "sendheaders", "getheaders"]
    assert conn.version["user_agent"] == "/conduit-test:0.1/"
    assert conn.protoconf == (1, 2 << 20)
    assert conn.want_headers
    assert conn.handshake_problems() == []
    c.close()


def test_handshake_problems_reported(simnode_factory):
    node = simnode_factory(generate=1)
    c = Client(node.port)
    c.send("version", c.version_payload(version=70015))
    c.wait("verack")
    c.send("sendheaders")                      # before verack
    c.send("verack")
    c.send("sendheaders")
    conn = node.wait_for(lambda: node.conns[-1] if node.conns[-1].got_verack and
                         node.conns[-1].commands().count("sendheaders") == 2 else None)
    probs = conn.handshake_problems()
    assert any("before verack: sendheaders" in p for p in probs)
    assert any("70015" in p for p in probs)
    assert any("sendheaders sent 2 times" in p for p in probs)
    assert any("missing-verack" in v for v in conn.violations())


def test_extended_header_for_huge_lengths():
    from tests.simnode.protocol import frame_header
    h = frame_header(b"\xda\xb5\xbf\xfa", "block", 5 << 30, checksum=b"\1\2\3\4")
    assert len(h) == 44 and h[4:10] == b"extmsg" and h[16:24] == b"\xff" * 4 + b"\0" * 4
    assert h[24:29] == b"block" and struct.unpack("<Q", h[36:])[0] == 5 << 30
    h = frame_header(b"\xda\xb5\xbf\xfa", "block", 0xFFFFFFFF, checksum=b"\1\2\3\4")
    assert len(h) == 24 and h[20:] == b"\1\2\3\4"


def test_ping_pong(simnode_factory):
    node = simnode_factory(generate=1, ping_interval=0.5)
    c = connect(node)
    c.send("ping", struct.pack("<Q", 0xDEADBEEF))
    _, p, _ = c.wait("pong")
    assert p == struct.pack("<Q", 0xDEADBEEF)
    # the node pings periodically; Client.wait answers them
    conn = node.connections()[0]
    c.wait("ping", timeout=5)
    c.wait("ping", timeout=5)
    node.wait_for(lambda: conn.pongs_ok >= 1, timeout=5)
    pongs = [m.payload for m in conn.received if m.command == "pong"]
    assert len(pongs) >= 1 and all(len(x) == 8 for x in pongs)
    c.close()


def test_messages_before_verack_are_recorded_and_dropped(simnode_factory):
    node = simnode_factory(generate=3)
    c = Client(node.port)
    c.send("ping", struct.pack("<Q", 1))            # before version
    c.send("version", c.version_payload())
    c.wait("verack")
    c.send("getheaders", struct.pack("<I", 70016) + b"\x01" + GENESIS + b"\0" * 32)  # before verack
    c.send("verack")
    assert c.no_message("headers", 0.5)
    conn = node.connections()[0]
    ev = " ".join(e for _, e in conn.events)
    assert "missing-version" in ev and "missing-verack" in ev
    assert [m for m in conn.commands() if m != "pong"] == ["ping", "version", "getheaders", "verack"]
    assert not conn.closed
    c.close()


@pytest.mark.parametrize("ua", ["/Bitcoin ABC:0.1/", "/bitcoin-cash/", "/BCH node/"])
def test_banned_user_agent_disconnects(simnode_factory, ua):
    node = simnode_factory(generate=1)
    c = Client(node.port)
    c.send("version", c.version_payload(ua=ua))
    with pytest.raises((EOFError, ConnectionError)):
        while True:
            c.recv()
    assert "user agent" in node.connections()[0].close_reason


def test_obsolete_version_rejected(simnode_factory):
    node = simnode_factory(generate=1)
    c = Client(node.port)
    c.send("version", c.version_payload(version=31000))
    _, p, _ = c.wait("reject")
    assert p[:8] == b"\x07version" and p[8] == 0x11
    _expect_disconnect(c)


def test_fault_disconnect_now(simnode_factory):
    node = simnode_factory(generate=1)
    c = connect(node)
    node.misbehave("disconnect")
    _expect_disconnect(c)
    assert node.conns[-1].close_reason == "fault: disconnect"


def _expect_disconnect(c):
    with pytest.raises((EOFError, ConnectionError, socket.timeout)):
        c.sock.settimeout(5)
        while True:
            c.recv()


def test_node_disconnects_wrong_magic(simnode_factory):
    node = simnode_factory(generate=1)
    c = connect(node)
    c.send_raw(bytes.fromhex("e3e1f3e8") + b"ping".ljust(12, b"\0") + struct.pack("<I", 8) +
               dsha(b"\0" * 8)[:4] + b"\0" * 8)
    _expect_disconnect(c)
    assert "wrong magic" in node.connections()[0].close_reason


def test_node_disconnects_oversize_payload(simnode_factory):
    node = simnode_factory(generate=1)
    c = connect(node)
    c.send_raw(c.magic + b"inv".ljust(12, b"\0") + struct.pack("<I", 2 * 1024 * 1024 + 1) + b"\0\0\0\0")
    _expect_disconnect(c)
    assert "over limit" in node.connections()[0].close_reason
    # a 2 MiB protoconf is over its 1 MiB limit too; a block-like command is not limited
    c = connect(node)
    c.send_raw(c.magic + b"protoconf".ljust(12, b"\0") + struct.pack("<I", 1024 * 1024 + 1) + b"\0\0\0\0")
    _expect_disconnect(c)


def test_bad_checksum_from_client_is_dropped(simnode_factory):
    node = simnode_factory(generate=1)
    c = connect(node)
    c.send_raw(c.magic + b"ping".ljust(12, b"\0") + struct.pack("<I", 8) + b"\0\0\0\0" + b"\1" * 8)
    c.send("ping", struct.pack("<Q", 2))
    _, p, _ = c.wait("pong")
    assert p == struct.pack("<Q", 2)
    conn = node.connections()[0]
    assert any("bad checksum" in e for _, e in conn.events)
    assert not conn.closed


# ---------------------------------------------------------------- headers / blocks

def test_getheaders_pagination(simnode_factory):
    node = simnode_factory(generate=4500, seed=4)
    chain = node.chain
    c = connect(node)
    pages = []
    loc = [GENESIS]
    while True:
        hs = c.getheaders(loc)
        pages.append(len(hs))
        if len(hs) < 2000:
            break
        loc = [dsha(hs[-1])]
    assert pages == [2000, 2000, 500]
    assert dsha(hs[-1]) == chain.tip.hash
    assert c.getheaders([chain.tip.hash]) == []
    # hash_stop
    hs = c.getheaders([chain.active[10]], stop=chain.active[15])
    assert [dsha(h) for h in hs] == chain.active[11:16]
    # empty locator: just the hash_stop header
    hs = c.getheaders([], stop=chain.active[77])
    assert [dsha(h) for h in hs] == [chain.active[77]]
    # unknown hashes are skipped; the first known one wins (locator order)
    hs = c.getheaders([b"\x11" * 32, chain.active[4400], chain.active[100]])
    assert [dsha(h) for h in hs] == chain.active[4401:]
    # nothing known: start after genesis
    hs = c.getheaders([b"\x22" * 32])
    assert dsha(hs[0]) == chain.active[1] and len(hs) == 2000
    for a, b in zip(hs, hs[1:]):
        assert b[4:36] == dsha(a)
    c.close()


def test_getdata_unknown_block_no_reply_tx_notfound(simnode):
    c = connect(simnode)
    c.getdata([(2, b"\x33" * 32)])
    c.getdata([(1, b"\x44" * 32)])
    _, p, _ = c.wait("notfound")
    assert parse_inv(p) == [(1, b"\x44" * 32)]
    assert c.no_message("block", 0.5)
    # a known block after an unknown one still arrives
    c.getdata([(2, b"\x33" * 32), (2, simnode.chain.active[7])])
    _, p, _ = c.wait("block")
    assert dsha(p[:80]) == simnode.chain.active[7]
    c.close()


def test_announcements_headers_vs_inv(simnode_factory):
    node = simnode_factory(generate=50)
    c = connect(node)                           # sends sendheaders
    sync_headers(c)
    blocks = node.mine(3)
    cmd, p, _ = c.wait(("headers", "inv"))
    assert cmd == "headers" and [dsha(h) for h in parse_headers(p)] == [b.hash for b in blocks]
    blocks = node.mine(9)                       # > 8: inv of the tip only
    cmd, p, _ = c.wait(("headers", "inv"))
    assert cmd == "inv" and parse_inv(p) == [(2, blocks[-1].hash)]
    # a client that did not send sendheaders gets inv
    c2 = connect(node, sendheaders=False)
    sync_headers(c2)
    b = node.mine(1)[0]
    cmd, p, _ = c2.wait(("headers", "inv"))
    assert cmd == "inv" and parse_inv(p) == [(2, b.hash)]
    c.close()
    c2.close()


def test_reorg_announcement_and_stale_blocks(simnode_factory):
    node = simnode_factory(generate=60, txs_per_block=3, seed=8)
    old = list(node.chain.active)
    c = connect(node)
    sync_headers(c)
    new = node.reorg(57, 5, txs_per_block=2)    # 3 blocks replaced by 5
    cmd, p, _ = c.wait(("headers", "inv"))
    assert cmd == "headers"
    hs = parse_headers(p)
    assert hs[0][4:36] == old[57] and [dsha(h) for h in hs] == [b.hash for b in new]
    assert node.chain.height == 62
    # deep reorg: inv of the new tip, then getheaders from the old locator
    new2 = node.reorg(30, 40)
    cmd, p, _ = c.wait(("headers", "inv"))
    assert cmd == "inv" and parse_inv(p) == [(2, new2[-1].hash)]
    hs = c.getheaders([new[-1].hash, old[30], GENESIS])
    assert hs[0][4:36] == old[30] and dsha(hs[-1]) == node.chain.tip.hash
    # stale blocks are still served; generated branch blocks are valid
    p, _ = c.get_block(old[59])
    assert dsha(p[:80]) == old[59]
    for b in new2[:3]:
        check_block_bitcoinlib(b.read(), expect_hash=b.hash)
    with pytest.raises(ValueError):
        node.reorg(10, 5)                     # not longer
    c.close()


# ---------------------------------------------------------------- mempool / broadcast

def test_mempool_relay_and_getdata_tx(simnode_factory):
    node = simnode_factory(generate=20, txs_per_block=2, seed=3)
    c = connect(node)
    txs = node.make_mempool_txs(3)
    assert len(txs) == 3
    got = []
    while len(got) < 3:
        _, p, _ = c.wait("inv")
        got += parse_inv(p)
    assert got == [(1, dsha(t)) for t in txs]
    c.getdata([(1, dsha(txs[1])), (1, b"\x55" * 32)])
    _, p, _ = c.wait("tx")
    assert p == txs[1]
    assert bc.CTransaction.deserialize(p).GetTxid() == dsha(txs[1])
    _, p, _ = c.wait("notfound")
    assert parse_inv(p) == [(1, b"\x55" * 32)]
    # mined with the next block
    b = node.mine(1)[0]
    blk = bc.CBlock.deserialize(b.read())
    assert [tx.GetTxid() for tx in blk.vtx[1:4]] == [dsha(t) for t in txs]
    assert not node.mempool
    c.close()


def clocked_node(simnode_factory, **kw):
    """A node on a test clock: returns (now, node); now[0] is the time."""
    now = [1_700_000_000.0]
    node = simnode_factory(generate=20, txs_per_block=2, seed=3, clock=lambda: now[0], **kw)
    return now, node


def announced(node, c):
    """A new tx submitted to the node and its inv read by client `c`."""
    raw = node.make_tx()
    node.submit_tx(raw)
    _, p, _ = c.wait("inv")
    assert parse_inv(p) == [(1, dsha(raw))]
    return raw


def test_relay_memory_expires_after_15_minutes(simnode_factory):
    """A getdata for an announced tx is answered from the relay memory for
    15 minutes after the first announcement, then with `notfound` although
    the tx is still in the mempool (bitcoin-sv src/net/net_processing.cpp:
    mapRelay, vRelayExpiration nNow + 15 * 60 s; tests/simnode/relaymem.py).
    The node's clock is a test clock: the edge is crossed exactly."""
    now, node = clocked_node(simnode_factory)
    c = connect(node)
    a = announced(node, c)
    now[0] += 15 * 60                           # the last second it is served
    c.getdata([(1, dsha(a))])
    _, p, _ = c.wait("tx")
    assert p == a
    b = announced(node, c)                      # 15 min after a: b is fresh
    now[0] += 0.5
    c.getdata([(1, dsha(a)), (1, dsha(b))])
    _, p, _ = c.wait("tx")
    assert p == b
    _, p, _ = c.wait("notfound")
    assert parse_inv(p) == [(1, dsha(a))]
    assert dsha(a) in node.mempool               # forgotten by the relay memory only
    # advance_clock (the knob the daemon tests use) moves the same clock
    node.advance_clock(15 * 60)
    c.getdata([(1, dsha(b))])
    _, p, _ = c.wait("notfound")
    assert parse_inv(p) == [(1, dsha(b))]
    assert node.status()["relay_memory"] == 0
    c.close()


def test_relay_memory_counts_from_the_first_announcement():
    """mapRelay.insert keeps the first entry: announcing again does not
    extend it; once expired, an announcement remembers it afresh."""
    from tests.simnode.relaymem import RelayMemory
    now = [100.0]
    rm = RelayMemory(lambda: now[0], expiry=10)
    rm.remember(b"a" * 32, b"A")
    now[0] += 6
    rm.remember_many([(b"a" * 32, b"A"), (b"b" * 32, b"B")])
    now[0] += 4                                 # a: 10 s old, b: 4 s
    assert rm.get(b"a" * 32) == b"A" and rm.fresh(b"a" * 32, now[0])
    now[0] += 0.5
    assert rm.get(b"a" * 32) is None and rm.get(b"b" * 32) == b"B" and len(rm) == 1
    rm.remember(b"a" * 32, b"A")                # announced again after it expired
    now[0] += 10
    assert rm.get(b"a" * 32) == b"A" and b"b" * 32 not in rm


def test_relay_memory_shortened(simnode_factory):
    """relay_expiry (--relay-expiry) shortens the relay memory."""
    now, node = clocked_node(simnode_factory, relay_expiry=5)
    c = connect(node)
    a = announced(node, c)
    now[0] += 5.5
    c.getdata([(1, dsha(a))])
    _, p, _ = c.wait("notfound")
    assert parse_inv(p) == [(1, dsha(a))]
    with pytest.raises(ValueError):
        simnode_factory(generate=1, relay_expiry=0)
    c.close()


def test_relay_memory_holds_only_what_was_announced(simnode_factory):
    """mapRelay is filled where the node sends a tx inv (SendTxnInventory,
    bitcoin-sv src/net/net_processing.cpp): a tx accepted without an
    announcement, or announced while no peer was connected, is answered
    `notfound` to a getdata, though it is in the mempool. (The simulator
    remembered every accepted tx before, and served both.)"""
    node = simnode_factory(generate=20, txs_per_block=2, seed=3)
    quiet = node.make_tx()
    node.submit_tx(quiet, announce=False)
    alone = node.make_tx()
    node.submit_tx(alone)                       # announced, but to nobody
    c = connect(node)
    c.getdata([(1, dsha(quiet)), (1, dsha(alone))])
    _, p, _ = c.wait("notfound")
    assert sorted(parse_inv(p)) == sorted([(1, dsha(quiet)), (1, dsha(alone))])
    assert dsha(quiet) in node.mempool and dsha(alone) in node.mempool
    heard = announced(node, c)                  # an inv sent to c: remembered
    c.getdata([(1, dsha(heard))])
    _, p, _ = c.wait("tx")
    assert p == heard
    assert node.status()["relay_memory"] == 1
    c.close()


def test_getdata_after_mempool_request_served_from_mempool(simnode_factory):
    """A peer that sent `mempool` (whitelisted) may getdata any tx that was in
    the mempool at that request, relay memory or not (ProcessGetData,
    timeLastMempoolReq); a tx that entered the mempool later is not served
    from it."""
    now, node = clocked_node(simnode_factory, whitelist=True)
    old = node.make_tx()
    node.submit_tx(old)
    now[0] += 3600                              # long forgotten by the relay memory
    c = connect(node)
    c.send("mempool")
    _, p, _ = c.wait("inv")
    assert parse_inv(p) == [(1, dsha(old))]
    c.getdata([(1, dsha(old))])
    _, p, _ = c.wait("tx")
    assert p == old
    now[0] += 1                                 # after the request
    late = announced(node, c)
    now[0] += 3600
    c.getdata([(1, dsha(late))])
    _, p, _ = c.wait("notfound")
    assert parse_inv(p) == [(1, dsha(late))]
    # a peer that never sent `mempool` gets notfound for the old one
    c2 = connect(node)
    c2.getdata([(1, dsha(old))])
    _, p, _ = c2.wait("notfound")
    assert parse_inv(p) == [(1, dsha(old))]
    c.close()
    c2.close()


def test_broadcast_accept_and_reject(simnode_factory):
    node = simnode_factory(generate=20, txs_per_block=2, seed=3)
    c = connect(node)
    watcher = connect(node)
    good = node.make_tx()
    c.send("tx", good)
    assert c.no_message("reject", 1.0)
    assert dsha(good) in node.mempool
    _, p, _ = watcher.wait("inv")                  # relayed to the other peer
    assert parse_inv(p) == [(1, dsha(good))]
    # duplicate: silence
    c.send("tx", good)
    assert c.no_message("reject", 0.5)
    # malformed: reject 0x01, no hash (the message could not be parsed)
    c.send("tx", good[:-7])
    _, p, _ = c.wait("reject")
    assert parse_reject(p)[:3] == ("tx", 0x01, "error parsing message")
    # inv -> getdata -> tx path
    good2 = node.make_tx()
    c.send("inv", varint(1) + struct.pack("<I", 1) + dsha(good2))
    _, p, _ = c.wait("getdata")
    assert parse_inv(p) == [(1, dsha(good2))]
    c.send("tx", good2)
    node.wait_for(lambda: dsha(good2) in node.mempool)
    c.close()
    watcher.close()


# ------------------------------------------------- transactions like the real node

def _reject_for(c, txid, timeout=5):
    """(code, reason) of the reject for txid."""
    while True:
        _, p, _ = c.wait("reject", timeout=timeout)
        msg, code, reason, h = parse_reject(p)
        if h == txid:
            assert msg == "tx"
            return code, reason


def _invs(msgs):
    return [h for cmd, p in msgs if cmd == "inv" for _, h in parse_inv(p)]


def _closed(node, port):
    return node.wait_for(lambda: next((x for x in node.conns if x.addr[1] == port and x.closed),
                                      None))


def test_mempool_request_disconnects_unless_whitelisted(simnode_factory):
    """The node's default (-rejectmempoolrequest=1, peer not whitelisted):
    `mempool` costs the connection.  whitelist=True answers it with inv."""
    node = simnode_factory(generate=110, seed=2)
    txs = node.make_mempool_txs(2, announce=False)
    c = connect(node)
    port = c.sock.getsockname()[1]
    c.send("mempool")
    _expect_disconnect(c)
    conn = _closed(node, port)
    assert "mempool request from nonwhitelisted peer disabled" in conn.close_reason
    assert any("disconnect peer=%d" % conn.id in e for _, e in conn.events)

    wl = simnode_factory(generate=110, seed=2, whitelist=True)
    wl.make_mempool_txs(2, announce=False)
    c = connect(wl)
    c.send("mempool")
    _, p, _ = c.wait("inv")
    assert sorted(h for _, h in parse_inv(p)) == sorted(dsha(t) for t in txs)
    c.send("ping", struct.pack("<Q", 9))
    c.wait("pong")
    # the old keyword still works, as an alias
    assert simnode_factory(generate=1, allow_mempool=True).whitelist is True
    # one connection can be whitelisted on a default node
    c = connect(node)
    port = c.sock.getsockname()[1]
    node.wait_for(lambda: next(x for x in node.conns if x.addr[1] == port)).whitelisted = True
    c.send("mempool")
    _, p, _ = c.wait("inv")
    assert len(parse_inv(p)) == 2


def test_hold_mempool_pong(simnode_factory):
    """hold_mempool_pong(): the ping after `mempool` is answered on release
    only (the `inv`s before it), once; pings before `mempool` and after the
    release are answered at once."""
    node = simnode_factory(generate=110, seed=2, whitelist=True)
    txs = node.make_mempool_txs(2, announce=False)
    hold = node.hold_mempool_pong()
    c = connect(node)
    c.send("ping", struct.pack("<Q", 1))        # no `mempool` yet: not held
    _, p, _ = c.wait("pong")
    assert p == struct.pack("<Q", 1) and not hold.held.is_set()
    c.send("mempool")
    c.send("ping", struct.pack("<Q", 2))
    _, p, _ = c.wait("inv")
    assert sorted(h for _, h in parse_inv(p)) == sorted(dsha(t) for t in txs)
    assert hold.held.wait(10)
    assert c.no_message("pong", 1.0)
    hold.release()
    _, p, _ = c.wait("pong")
    assert p == struct.pack("<Q", 2)
    c.send("mempool")                           # the hold was used up
    c.send("ping", struct.pack("<Q", 3))
    _, p, _ = c.wait("pong")
    assert p == struct.pack("<Q", 3)

def test_relay_to_other_connections_only(simnode_factory):
    node = simnode_factory(generate=110, seed=6)
    a = connect(node)
    b = connect(node)
    quiet = connect(node, relay=0)              # version relay flag 0: no tx invs
    tx1 = node.make_tx()
    a.send("tx", tx1)
    _, p, _ = b.wait("inv")
    assert parse_inv(p) == [(1, dsha(tx1))]
    assert dsha(tx1) not in _invs(collect(a, 1.0))          # never back to the sender
    assert dsha(tx1) in node.mempool
    # a tx submitted on the node itself (wallet) goes to every relay peer
    tx2 = node.make_tx()
    node.submit_tx(tx2)
    assert dsha(tx2) in _invs(collect(a, 1.0))
    _, p, _ = b.wait("inv")
    assert parse_inv(p) == [(1, dsha(tx2))]
    assert _invs(collect(quiet, 0.5)) == []
    # a peer that announced the tx (inv) is not sent an inv for it either
    tx3 = node.make_tx()
    b.send("inv", varint(1) + struct.pack("<I", 1) + dsha(tx3))
    b.wait("getdata")
    a.send("tx", tx3)
    assert dsha(tx3) not in _invs(collect(b, 1.0))
    assert node.mempool_txids() == [hexh(dsha(t)) for t in (tx1, tx2, tx3)]


def test_orphan_getdata_parent_then_accepted(simnode_factory):
    node = simnode_factory(generate=110, seed=8)
    a = connect(node)
    watcher = connect(node)
    parent = node.make_tx()
    child = node.make_tx(parent=parent)
    grandchild = node.make_tx(parent=child)
    a.send("tx", grandchild)
    _, p, _ = a.wait("getdata")                 # the node asks the sender for the parent
    assert parse_inv(p) == [(1, dsha(child))]
    a.send("tx", child)
    _, p, _ = a.wait("getdata")
    assert parse_inv(p) == [(1, dsha(parent))]
    msgs = collect(a, 1.0)
    assert not [m for m, _ in msgs if m == "reject"]        # orphans: no reject
    assert _invs(collect(watcher, 0.2)) == []               # ... and no relay
    assert node.orphan_txids() == [hexh(dsha(grandchild)), hexh(dsha(child))]
    assert not node.mempool
    # the parent arrives: it and both orphans are accepted and relayed
    a.send("tx", parent)
    got = []
    while len(got) < 3:
        _, p, _ = watcher.wait("inv")
        got += [h for _, h in parse_inv(p)]
    assert sorted(got) == sorted(dsha(t) for t in (parent, child, grandchild))
    assert _invs(collect(a, 1.0)) == []                     # the sender knows all three
    assert set(node.mempool_txids()) == {hexh(dsha(t)) for t in (parent, child, grandchild)}
    assert node.orphan_txids() == []
    # orphans go when the peer that sent them disconnects
    lonely = node.make_tx(parent=node.make_tx())
    b = connect(node)
    b.send("tx", lonely)
    b.wait("getdata")
    assert node.orphan_txids() == [hexh(dsha(lonely))]
    b.close()
    node.wait_for(lambda: node.orphan_txids() == [])


def test_reject_bad_signature_then_ban(simnode_factory):
    node = simnode_factory(generate=110, seed=9)
    a = connect(node)
    watcher = connect(node)
    bad = node.make_tx(bad_signature=True)
    a.send("tx", bad)
    code, reason = _reject_for(a, dsha(bad))
    assert (code, reason) == (0x10, "mandatory-script-verify-flag-failed "
                                    "(Signature must be zero for failed CHECK(MULTI)SIG operation)")
    _expect_disconnect(a)                       # ban score 100
    assert "ban score" in node.conns[0].close_reason
    assert dsha(bad) not in node.mempool and _invs(collect(watcher, 0.5)) == []
    # a failure only of a non-mandatory flag: 0x40, no ban (MINIMALDATA:
    # the signature pushed with PUSHDATA1 instead of a direct push)
    good = Tx.parse(node.make_tx())
    sig_len = good.vin[0].script_sig[0]
    sig = good.vin[0].script_sig[1:1 + sig_len]
    pub = good.vin[0].script_sig[1 + sig_len:]
    good.vin[0].script_sig = b"\x4c" + bytes((sig_len,)) + sig + pub
    nonmin = good.serialize()
    watcher.send("tx", nonmin)
    assert _reject_for(watcher, dsha(nonmin)) == (
        0x40, "non-mandatory-script-verify-flag (Data push larger than necessary)")
    watcher.send("ping", struct.pack("<Q", 7))
    watcher.wait("pong")                        # still connected
    # a whitelisted peer gets the reject but stays
    wl = simnode_factory(generate=110, seed=9, whitelist=True)
    c = connect(wl)
    c.send("tx", bad)
    assert _reject_for(c, dsha(bad))[0] == 0x10
    c.send("ping", struct.pack("<Q", 8))
    c.wait("pong")


def test_double_spends_are_silent(simnode_factory):
    """A spend of an output a mempool tx already spends: internal code
    REJECT_CONFLICT (txn-mempool-conflict), never sent.  A spend of an
    output spent in a block: missing inputs, i.e. an orphan.  Neither gets
    a reject, neither is relayed."""
    node = simnode_factory(generate=110, seed=10)
    a = connect(node)
    watcher = connect(node)
    tx1 = node.make_tx()
    a.send("tx", tx1)
    watcher.wait("inv")
    ds = node.make_tx(double_spend=tx1)
    assert dsha(ds) != dsha(tx1)
    a.send("tx", ds)
    assert not [m for m, _ in collect(a, 1.0) if m == "reject"]
    assert node.mempool_txids() == [hexh(dsha(tx1))] and _invs(collect(watcher, 0.2)) == []
    res = node.receive_tx(node.make_tx(double_spend=tx1, fee=999))
    assert (res.status, res.code, res.reason, res.sendable) == (
        "invalid", 0x102, "txn-mempool-conflict", False)
    # tx1 confirmed, then a spend of the same (now spent) coinbase output
    node.mine(1)
    assert not node.mempool
    ds2 = node.make_tx(spent_output=True)
    a.send("tx", ds2)
    msgs = collect(a, 1.0)
    assert not [m for m, _ in msgs if m == "reject"]
    assert node.orphan_txids() == [hexh(dsha(ds2))] and not node.mempool
    a.send("ping", struct.pack("<Q", 3))
    a.wait("pong")


def test_reject_codes_of_the_node(simnode_factory):
    node = simnode_factory(generate=130, seed=11)          # coinbases 1..130 unspent
    c = connect(node)
    h = node.chain.height
    cases = [
        # (tx, code, reason)
        (node.make_tx(coinbase_height=h - 98), 0x10, "bad-txns-premature-spend-of-coinbase"),
        (node.make_tx(locktime=h + 1, sequence=0), 0x40, "bad-txns-nonfinal"),
        (node.make_tx(locktime=node.chain.mtp(h), sequence=0xFFFFFFFE), 0x40,
         "bad-txns-nonfinal"),
        # BIP 68: 101 blocks after a coin confirmed 100 blocks before the next one
        (node.make_tx(version=2, sequence=101, coinbase_height=h - 99), 0x40, "non-BIP68-final"),
        (node.make_tx(outputs=[(50 * 10**8 + 1, b"\x51")]), 0x10, "bad-txns-in-belowout"),
        (node.make_tx(size=1_000_100), 0x10, "bad-txns-oversize"),
    ]
    for raw, code, reason in cases[:4]:            # no ban score: same connection
        c.send("tx", raw)
        assert _reject_for(c, dsha(raw)) == (code, reason), reason
    for raw, code, reason in cases[4:]:            # ban score 100: one connection each
        c = connect(node)
        c.send("tx", raw)
        assert _reject_for(c, dsha(raw)) == (code, reason), reason
        _expect_disconnect(c)
    assert not node.mempool
    # the boundaries are accepted: nLockTime = tip height, a coinbase of
    # exactly 100 confirmations at the next height, BIP 68 met
    for kw in (dict(coinbase_height=h - 99),
               dict(version=2, sequence=100, coinbase_height=h - 100),
               dict(locktime=h, sequence=0),
               dict(locktime=node.chain.mtp(h) - 1, sequence=0)):
        node.submit_tx(node.make_tx(**kw))
    assert len(node.mempool) == 4
    # a coinbase is never a loose tx; duplicate inputs
    cb = Tx(1, [TxIn(b"\0" * 32, 0xFFFFFFFF, b"\x01\x05", 0xFFFFFFFF)], [(10**8, b"\x51")], 0)
    assert node.receive_tx(cb.raw).reason == "bad-tx-coinbase"
    # (a coinbase of the chain is 'already known': its outputs exist; silence)
    assert node.receive_tx(node.chain.block_txs(node.chain.at(5))[0].raw) is None
    op = node.spendable_outpoints(limit=1)[0]
    dup = node.make_tx(spend=[op, op], fee=0)
    r = node.receive_tx(dup)
    assert (r.code, r.reason, r.dos) == (0x10, "bad-txns-inputs-duplicate", 100)
    # the wallet path raises with the same code and reason
    with pytest.raises(TxRejected) as e:
        node.submit_tx(node.make_tx(coinbase_height=h))
    assert (e.value.code, e.value.reason) == (0x10, "bad-txns-premature-spend-of-coinbase")
    with pytest.raises(TxRejected) as e:
        node.submit_tx(node.make_tx(missing_input=True))
    assert e.value.reason == "missing-inputs" and not node.orphan_txids()


def test_reorg_back_to_mempool_then_evict_nonfinal_and_immature(simnode_factory):
    """invalidate(tip): the tip block's txs return; then what is not valid at
    the new tip goes with its descendants: a tx final only at the old
    height, a spend of a coinbase mature only at the old height."""
    node = simnode_factory(generate=130, seed=12)
    ret = node.make_tx(coinbase_height=11)
    old = node.mine(1, txs=[ret])[0]
    h = node.chain.height                       # 131
    assert dsha(ret) not in node.mempool
    txs = {}

    def add(name, **kw):
        txs[name] = node.make_tx(**kw)
        node.submit_tx(txs[name])
    add("cb", coinbase_height=h - 99)               # mature at h+1 only
    add("cb_child", parent=txs["cb"])
    add("locked", locktime=h, sequence=0, coinbase_height=20)   # final for h+1 only
    add("locked_child", parent=txs["locked"])
    add("keep", coinbase_height=12)
    add("spends_ret", parent=ret)                   # its parent is confirmed in `old`
    c = connect(node)
    sync_headers(c)
    assert node.invalidate(old.hash_hex) == node.chain.at(h - 1).hash_hex
    assert node.chain.height == h - 1
    want = {dsha(ret), dsha(txs["keep"]), dsha(txs["spends_ret"])}
    assert set(node.mempool_txids(hex=False)) == want
    assert not [m for m, _ in collect(c, 0.5) if m in ("headers", "inv")]  # nothing announced
    # back: the block's tx leaves the mempool again, its spender stays
    node.reconsider(old.hash_hex)
    assert node.chain.tip.hash == old.hash
    assert set(node.mempool_txids(hex=False)) == {dsha(txs["keep"]), dsha(txs["spends_ret"])}


def test_reorg_evicts_conflicts_and_spenders_of_vanished_outputs(simnode_factory):
    node = simnode_factory(generate=130, seed=13)
    y = node.make_tx(coinbase_height=6)
    node.mine(1, txs=[y])                       # y confirmed at 131
    y_child = node.make_tx(parent=y)
    x = node.make_tx(coinbase_height=5)
    x_child = node.make_tx(parent=x)
    keep = node.make_tx(coinbase_height=7)
    mined_again = node.make_tx(coinbase_height=8)
    for t in (y_child, x, x_child, keep, mined_again):
        node.submit_tx(t)
    assert len(node.mempool) == 5
    # the new branch double-spends x's and y's inputs and mines `mined_again`
    x_conf = node.make_tx(double_spend=x, fee=1000)
    y_conf = node.make_tx(coinbase_height=6, fee=1000)
    node.reorg(fork_height=130, new_len=2, txs=[x_conf, y_conf, mined_again])
    # x: conflict with the new chain, with its child; y (left with block
    # 131): its input is spent in the new chain, it cannot come back, so its
    # child spends an output that no longer exists; mined_again: mined
    assert node.mempool_txids(hex=False) == [dsha(keep)]
    # while txs of the old block that the new chain does not conflict with return
    z = node.make_tx(coinbase_height=9)
    node.mine(1, txs=[z])
    node.reorg(fork_height=node.chain.height - 1, new_len=2)
    assert set(node.mempool_txids(hex=False)) == {dsha(keep), dsha(z)}


def test_mempool_expiry(simnode_factory):
    now = [1_700_000_000.0]
    node = simnode_factory(generate=110, seed=14, clock=lambda: now[0])
    a = node.make_tx()
    node.submit_tx(a)
    a_child = node.make_tx(parent=a)
    node.submit_tx(a_child)
    now[0] += 336 * 3600 - 60                   # -mempoolexpiry default: 336 h
    assert node.expire_mempool() == []
    b = node.make_tx()
    node.submit_tx(b)                           # (every acceptance also runs Expire)
    now[0] += 120
    assert sorted(node.expire_mempool()) == sorted(hexh(dsha(t)) for t in (a, a_child))
    assert node.mempool_txids() == [hexh(dsha(b))]


# ---------------------------------------------------------------- signatures

# From the node's own test vectors (bitcoin-sv src/test/data/sighash.json:
# raw tx, scriptCode, input, hash type, sighash in display order), entries
# with SIGHASH_FORKID set (amount 0).  The CHRONICLE bit (0x20) entries are
# left out: that digest is not modelled.
SIGHASH_VECTORS = [
    ("0122769903cfc6fedb9c63fe76930fed0c87b44be46f5032a534fa05861548616a5b99034701000000040063656ac864c70228b3f6ebaf97be065b2180ece52fae4f9039c7bf932e567625d7d89582abe1340100000008ac6363650063ab65ffffffff587125b913706705dc799454ab0343ee8aa59a2f2d538f75e12c0deeb40aa741030000000027b3a02003d21f34040000000000fa7f2c0300000000016387213b0300000000056aabacacab00000000",
     "", 1, 902085315, "61306cf6925de09aba87ddb53cca9bbd49c852e9b9990c00f32e2d2e1d4c9ba6"),
    ("7e8c3f7902634018b6e1db2ca591816dff64a6cff74643de7455323ebfc560500aad9eee8c0100000001519c2d146d06fdca2c2e5fa3a2559812df66b6b5e40a3c57b2f7071ae6fe3863c74ab0952d0100000001000bf6638c013c5f6503000000000351ac63cbbf66be",
     "acab", 0, -1861635514, "0abe05b7835921958100225897ce76ca6e6a3ffc7a27235fe71c1252d7465890"),
    ("614426db020eadf5ee15ec0f772864174882f7e08038672af01d882cd77f3776ca2f2dd32800000000076300536565ac00ffffffffd5ca1a83d4367ef090140d6f7a77434f63a476b82688e3056865096447098bec0300000004006551acffffffff0206a04a000000000007636a0000ab51ab417c52010000000002ab6a00000000",
     "", 0, -1252879549, "e285e042e8699b81f24abf49621d1e3b968245b38d48d91a13f20d30c030b5dd"),
    ("efd8194202da2f872de204c426ec04d7fa2f7047488b9e19313c41d39aa84736950880ca8602000000040051abab0c2229dbbe3a115c555ea5bd70b40f750c60b28840747451fe2f42343f976d090335b7b60200000003ab5200ffffffff03139b520200000000065365acac5152b95180010000000000014ba103000000000000000000",
     "", 0, -1131921328, "2f04b1e958fee6de97174a5e9a1094e8f056e00398e9b42f3cd4c66ca260b9b6"),
    ("54843f4a04d8c3354d43429a305d7170116f150fbb543c13309d75d1f212fa1a8904f4555c0100000001abca3757d5d02cd9db4690b486f870158df54d24c07e52b4e237157b8d786e9657a69a6730020000000600635363656affffffffe95c090847af2dd89119136cb9ae59222d3bd7e2bad917d5a0fc1faad97a81990300000006515265acab65ffffffffbf69b0f3e4127b5c20a7f18d62bd779c400846af444db77062802483e9ad22360200000009ab00516aab535165acffffffff02fbe280040000000007516300acabab6307008303000000000963ac0051515352515308b6c896",
     "6552636352", 1, -1604649152, "048a5f4bf20f429fec5b834a5832036d50920e9f71c4e06ba7009d80d25b3ea7"),
    ("d9c0856e045764a4011236ff81ad9edb2e924837cb01108e5e1546ed8960a7eb6568831a0e0100000007ac636a65ab5200ffffffff2954b41ebc7998501016a75c82b1e5fcfdbb11fe87fe61ca79eebdf33bd3147a0200000009ac0065636a636351ac1fd639dbe15b864e134fb003ada07469938e7a14388988e406c82a5f59cde466fcbb4fbd000000000265acffffffffcfda1f7a869feebfb7c0e5660f14923c76544578474f39705d33340a5ab0a3b301000000025165ffffffff0319aa040200000000075153526a0052538bc4140000000000036a52512c4831010000000004525100655d9485c3",
     "ac51526a65", 3, -1647460150, "d97f309c6d9c0db7c69f27a417d5cfdff49ea91acb83c150c94074dc37100ee1"),
    ("e6d2ae90041c0cbce95c6b0604d7ba1d18d7269ab4f6832c02f2355ec88ed21b4e63db6886020000000465655265b9e6e8a478ba54d34e8fb992a358f57550739c8e4771a53ca711162a3984adb6508764880100000003ab516a62a2e611f98431455e36ccaad76f064ace640ba3d94dadcf10fbd2a64d5c5b3bb5f30b930200000008510051656a636aab2874c07606a2729a86ca3c5803aa182fc8f0390f6ca0824781e79532af9bdc5acd37863e0000000006516a63630063ffffffff01a0725e04000000000099a84908",
     "ab52", 2, -921312431, "dc0ae88403877742f64b439d1190a88d4e15cf87001e3991855cdd03f03a64b8"),
    ("44484b180183a894f0b61424d2c5e7b405ca9d1c1b47e66378c7f16af9e06cb2e45dcf3d87010000000763006a65656351ffffffff01d363fd0100000000096500ab5152636553ab00000000",
     "ab", 0, 1640290243, "ec593466442cdca2ed0693660be8464e5bf90b053fcab1bebe46cf70f1084556"),
    ("e81753a101817f55a2cbb74aa4528685f4f541818723c2613b4f1ca43df98c0bdc30840ab403000000026363ffffffff01878c26000000000008ab006a6a535300529865be87",
     "acac6a52", 0, 749340108, "5b8429cce72984022cfa0f49a2ba05f83dcb0e84c801f6bd566981ff1b4f292b"),
]


def test_sighash_matches_node_vectors():
    for raw, script, n_in, ht, want in SIGHASH_VECTORS:
        ht &= 0xFFFFFFFF
        assert ht & 0x40 and not ht & 0x20
        got = sighash(Tx.parse(bytes.fromhex(raw)), n_in, bytes.fromhex(script), 0, ht)
        assert got[::-1].hex() == want


def test_signatures_of_a_real_node_verify():
    """blockchain_115 (mined by a Bitcoin SV node): tx 47f3f47a spends a P2PK
    (input 0) and a P2PKH (input 1) output with ALL|FORKID signatures over
    the amounts; the simulator's checks pass them and fail them for another
    amount."""
    txs = {}
    for h in [x.strip() for x in open(CHAIN115 / "headers.txt") if x.strip()][1:]:
        raw = (CHAIN115 / h).read_bytes()
        blk = bc.CBlock.deserialize(raw)
        for t in blk.vtx:
            tx = Tx.parse(t.serialize())
            txs[tx.txid] = tx
    tx = txs[bytes.fromhex("47f3f47a256d70950ff5690ea377c24464310489e3f54d01b817dd0088f0a095")[::-1]]
    coins = [txs[i.prev].vout[i.index] for i in tx.vin]
    assert [len(sc) for _, sc in coins] == [35, 25]
    assert check_scripts(tx, coins) is None
    for n in range(2):
        wrong = list(coins)
        wrong[n] = (coins[n][0] - 1, coins[n][1])
        assert check_scripts(tx, wrong)[0] == 0x10


def test_reorg_returns_real_wallet_txs_with_full_checks(simnode_factory):
    """invalidate() on the real chain (txs signed by a real node, every
    check applied when they return): block 116's two data txs come back; then
    invalidating 111 brings back the 7 wallet txs of 111-115, while the
    first data tx now spends a coinbase (height 13) that is immature at the
    new next height 111, so it goes, and its child with it."""
    node = simnode_factory(chain_dir=str(CHAIN116))
    txids = {h: [t.txid for t in node.chain.block_txs(node.chain.at(h))[1:]]
             for h in range(111, 117)}
    node.invalidate(node.chain.at(116).hash_hex)
    assert node.mempool_txids(hex=False) == txids[116]
    node.invalidate(node.chain.at(111).hash_hex)
    wallet = [t for h in range(111, 116) for t in txids[h]]
    assert len(wallet) == 7 and set(node.mempool_txids(hex=False)) == set(wallet)


def test_ecdsa_known_vectors():
    from tests.simnode import ecdsa
    assert ecdsa.pubkey_from_secret(1).hex() == \
        "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    assert ecdsa.pubkey_from_secret(3).hex() == \
        "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9"
    # RFC 6979 deterministic signature, secret 1, sha256("Satoshi Nakamoto")
    d = hashlib.sha256(b"Satoshi Nakamoto").digest()
    r, s = ecdsa.sign(1, d)
    assert (r, s) == (0x934b1ea10a4b3c1757e2b0c017d0b6143ce3c9a7e6a4a49860d7a6ab210ee3d8,
                      0x2442ce9d2b916064108014783e923ec36b49743e2ffa1c4496f01a512aafd9e5)
    pub = ecdsa.pubkey_from_secret(1)
    assert ecdsa.verify(pub, d, r, s) and ecdsa.verify(pub, d, r, ecdsa.N - s)  # high S verifies
    assert not ecdsa.verify(pub, hashlib.sha256(b"x").digest(), r, s)
    # against python-bitcoinlib (OpenSSL), both ways
    from bitcoin.core.key import CECKey, CPubKey
    k = CECKey()
    k.set_secretbytes((0xC0FFEE).to_bytes(32, "big"))
    k.set_compressed(True)
    assert k.get_pubkey() == ecdsa.pubkey_from_secret(0xC0FFEE)
    assert CPubKey(k.get_pubkey()).verify(d, ecdsa.sign_der(0xC0FFEE, d))
    assert ecdsa.verify_der(k.get_pubkey(), d, k.sign(d))


def test_simulator_signatures_verify_independently(simnode_factory):
    """The simulator's txs carry signatures python-bitcoinlib (an independent
    BIP143 digest + OpenSSL) verifies, and a second node with the same chain
    accepts them from the wire with every check."""
    from bitcoin.core.key import CPubKey
    from bitcoin.core.script import SIGVERSION_WITNESS_V0, CScript, SignatureHash
    node = simnode_factory(generate=60, txs_per_block=6, seed=15)
    twin = simnode_factory(generate=60, txs_per_block=6, seed=15)
    raws = node.make_mempool_txs(12, announce=False)
    raws.append(node.make_tx(parent=raws[0], vout=max(
        n for n, (_, sc) in enumerate(Tx.parse(raws[0]).vout) if node.chain.wallet.keyfor(sc))))
    checked = 0
    for raw in raws:
        tx = Tx.parse(raw)
        btx = bc.CTransaction.deserialize(raw)
        for n, i in enumerate(tx.vin):
            coin = node.chain.utxo.get(i.outpoint)
            v, sc = (coin[0], coin[1]) if coin else Tx.parse(raws[0]).vout[i.index]
            pushes = list(CScript(i.script_sig))
            sig, pub = pushes[0], (pushes[1] if len(pushes) > 1 else sc[1:34])
            assert sig[-1] == 0x41
            h = SignatureHash(CScript(sc), btx, n, 0x41, amount=v, sigversion=SIGVERSION_WITNESS_V0)
            assert h == sighash(tx, n, sc, v)
            assert CPubKey(pub).verify(h, sig[:-1])
            checked += 1
    assert checked >= 13
    c = connect(twin)
    for raw in raws:
        c.send("tx", raw)
    twin.wait_for(lambda: len(twin.mempool) == len(raws))
    assert not [m for m, _ in collect(c, 0.5) if m == "reject"]


# ---------------------------------------------------------------- misbehaviour

def test_fault_bad_checksum_on_headers(simnode):
    c = connect(simnode)
    simnode.misbehave("bad_checksum", on="headers")
    c.send("getheaders", struct.pack("<I", 70016) + b"\x01" + GENESIS + b"\0" * 32)
    _, p, info = c.wait("headers")
    assert not info["checksum_ok"] and len(parse_headers(p)) == 120
    hs = c.getheaders([GENESIS])                # next one is fine again
    assert len(hs) == 120 and c.log[-1][0] == "headers"


def _last_conn(node):
    return node.wait_for(lambda: node.conns[-1] if node.conns and node.conns[-1].got_verack else None)


def test_fault_wire_now_modes(simnode_factory):
    node = simnode_factory(generate=2)
    c = connect(node)
    node.misbehave("wrong_magic", conn=_last_conn(node))
    c.sock.settimeout(5)
    while True:
        cmd, p, info = c.recv()
        if info["magic"] != c.magic:
            break
    assert info["magic"] == b"\xde\xad\xbe\xef"
    c.close()

    c = connect(node)
    node.misbehave("oversize_length", conn=_last_conn(node))
    c.sock.settimeout(5)
    while True:
        h = c._exact(24)
        ln = struct.unpack("<I", h[16:20])[0]
        if ln > 2 * 1024 * 1024:
            assert h[4:8] == b"ping"
            break
        c._exact(ln)
    c.close()

    c = connect(node)
    node.misbehave("garbage", conn=_last_conn(node), length=100)
    expected = __import__("random").Random(1).randbytes(100)
    data = b""
    c.sock.settimeout(5)
    while expected not in data:
        k = c.sock.recv(65536)
        assert k
        data += k
    c.close()

    c = connect(node)
    node.misbehave("truncated", conn=_last_conn(node))
    _expect_disconnect(c)
    assert "truncated" in node.conns[-1].close_reason


def _read_until_eof(c, timeout=10):
    c.sock.settimeout(timeout)
    data = b""
    while True:
        try:
            k = c.sock.recv(65536)
        except ConnectionResetError:
            break
        if not k:
            break
        data += k
    return data


@pytest.mark.parametrize("keep", [None, 28])
def test_fault_truncated_now_sends_bytes_before_close(simnode_factory, keep):
    """misbehave("truncated", on="now"): the cut ping frame goes out, then the
    connection closes (the close used to be queued before the bytes, so
    nothing was sent)."""
    node = simnode_factory(generate=2)
    c = connect(node)
    kw = {} if keep is None else {"keep": keep}
    node.misbehave("truncated", on="now", conn=_last_conn(node), **kw)
    data = _read_until_eof(c)
    assert "truncated" in node.conns[-1].close_reason
    # the stream ends with the truncated ping: a whole header announcing 8
    # payload bytes, and fewer than 8 of them
    i = data.rfind(node.magic + b"ping".ljust(12, b"\0"))
    assert i >= 0, "truncated ping never sent (%d bytes received)" % len(data)
    tail = data[i:]
    assert struct.unpack("<I", tail[16:20])[0] == 8
    assert len(tail) == (24 if keep is None else keep)
    assert len(tail) < 32


def test_fault_pending_until_connect(simnode_factory):
    node = simnode_factory(generate=2)
    node.misbehave("bad_checksum")             # nobody connected: fires after next handshake
    c = connect(node)
    c.sock.settimeout(5)
    while True:
        cmd, p, info = c.recv()
        if cmd == "ping" and not info["checksum_ok"]:
            break


@pytest.mark.parametrize("mode", ["stall_mid_block", "disconnect_mid_block"])
def test_fault_mid_block(simnode_factory, mode):
    node = simnode_factory(generate=5, txs_per_block=30, seed=2)
    c = connect(node)
    h = node.chain.active[3]
    size = node.chain.at(3).size
    node.misbehave(mode, fraction=0.5)
    c.getdata([(2, h)])
    c.sock.settimeout(2)
    cmd = None
    while cmd != "block":
        hdr = c._exact(24)
        cmd = hdr[4:16].rstrip(b"\0").decode()
        ln = struct.unpack("<I", hdr[16:20])[0]
        if cmd != "block":
            c._exact(ln)
    assert ln == size
    got = 0
    try:
        while True:
            k = c.sock.recv(65536)
            if not k:
                break
            got += len(k)
    except socket.timeout:
        assert mode == "stall_mid_block"
    else:
        assert mode == "disconnect_mid_block"
    assert got == size // 2


def test_fault_slow_block_and_handshake_timeout(simnode_factory):
    node = simnode_factory(generate=3, txs_per_block=40, seed=3, handshake_timeout=0.5)
    c = connect(node)
    b = node.chain.at(3)
    node.misbehave("slow_block", rate=b.size * 2)      # ~0.5 s for the block
    p, _ = c.get_block(b.hash)
    assert p == b.read()
    assert any("slow_block" in e for _, e in node.conns[-1].events)
    # a client that never sends verack is dropped
    idle = Client(node.port)
    idle.send("version", idle.version_payload())
    _expect_disconnect(idle)
    assert "handshake not completed" in node.conns[-1].close_reason
    assert not node.conns[0].closed


def test_fault_bad_merkle_block(simnode):
    c = connect(simnode)
    simnode.misbehave("bad_merkle_block")
    h = simnode.chain.active[50]
    p, info = c.get_block(h)
    assert info["checksum_ok"] and dsha(p[:80]) == h
    blk = bc.CBlock.deserialize(p)            # structure still valid
    assert blk.calc_merkle_root() != blk.hashMerkleRoot
    p, _ = c.get_block(h)                      # next serve is correct
    check_block_bitcoinlib(p, expect_hash=h)


def test_fault_header_modes(simnode):
    c = connect(simnode)
    chain = simnode.chain
    simnode.misbehave("bad_pow_headers")
    hs = c.getheaders([GENESIS])
    last = hs[-1]
    assert hs[-1][4:36] == dsha(hs[-2])
    assert uint256_from_str(dsha(last)) > uint256_from_compact(0x207FFFFF)
    simnode.misbehave("unconnecting_headers")
    hs = c.getheaders([chain.tip.hash])
    assert hs and hs[0][4:36] not in chain.blocks
    simnode.misbehave("too_many_headers")
    hs = c.getheaders([GENESIS])
    assert len(hs) == 2001
    assert all(b[4:36] == dsha(a) for a, b in zip(hs, hs[1:]))
    # unsolicited headers announcement
    simnode.misbehave("unconnecting_headers", on="now")
    _, p, _ = c.wait("headers")
    assert parse_headers(p)[0][4:36] not in chain.blocks


def test_fault_unsolicited_block(simnode):
    c = connect(simnode)
    simnode.misbehave("unsolicited_block")
    _, p, info = c.wait("block")
    assert dsha(p[:80]) == simnode.chain.tip.hash
    assert not [m for m in simnode.connections()[0].commands() if m == "getdata"]


def test_fault_wire_on_block_and_block_hash_filter(simnode):
    c = connect(simnode)
    simnode.misbehave("bad_checksum", on="block")
    p, info = c.get_block(simnode.chain.active[9])
    assert not info["checksum_ok"] and dsha(p[:80]) == simnode.chain.active[9]
    target = simnode.chain.at(12)
    simnode.misbehave("bad_merkle_block", hash=target.hash_hex)
    p, _ = c.get_block(simnode.chain.active[11])        # other block: untouched
    check_block_bitcoinlib(p)
    p, _ = c.get_block(target.hash)
    assert bc.CBlock.deserialize(p).calc_merkle_root() != target.header[36:68]


def test_ignore_getheaders_and_withhold(simnode_factory):
    node = simnode_factory(generate=5, ignore_getheaders=True)
    c = connect(node)
    c.send("getheaders", struct.pack("<I", 70016) + b"\x01" + GENESIS + b"\0" * 32)
    assert c.no_message("headers", 0.5)
    node.withhold(node.chain.active[2])
    c.getdata([(2, node.chain.active[2])])
    assert c.no_message("block", 0.5)


def test_activate_old_branch(simnode_factory):
    node = simnode_factory(generate=20, txs_per_block=3, seed=2)
    old_tip = node.chain.tip.hash
    node.reorg(15, 10, txs_per_block=3)
    assert node.chain.height == 25
    node.mine(0)
    with pytest.raises(ValueError):
        node.reorg(24, 1)
    node.reorg(24, 2)
    c = connect(node)
    sync_headers(c)
    # back to the old branch (shorter, but activate forces it) and validate UTXO bookkeeping
    node.activate(old_tip)
    cmd, p, _ = c.wait(("headers", "inv"))
    assert node.chain.tip.hash == old_tip and node.chain.height == 20
    b = node.mine(1, txs_per_block=5)[0]
    blk = check_block_bitcoinlib(b.read(), prev=old_tip)
    for tx in blk.vtx[1:]:
        for vin in tx.vin:
            assert vin.prevout.hash in {t.GetTxid() for t in blk.vtx} or any(
                vin.prevout.hash in {t.GetTxid() for t in bc.CBlock.deserialize(node.chain.at(h).read()).vtx}
                for h in range(1, 21))


def _replay_utxo(node):
    utxo = set()
    for h in range(1, node.chain.height + 1):
        blk = bc.CBlock.deserialize(node.chain.at(h).read())
        for i, tx in enumerate(blk.vtx):
            txid = tx.GetTxid()
            if i:
                for vin in tx.vin:
                    op = (vin.prevout.hash, vin.prevout.n)
                    assert op in utxo, "height %d spends a missing/spent output" % h
                    utxo.remove(op)
            for n, out in enumerate(tx.vout):
                sc = bytes(out.scriptPubKey)
                if sc[:2] != b"\x00\x6a" and sc[:1] != b"\x6a":
                    utxo.add((txid, n))
    return utxo


def test_utxo_bookkeeping_across_reorgs(simnode_factory):
    node = simnode_factory(chain_dir=str(CHAIN116), generate=15, txs_per_block=6, seed=12)
    assert set(node.chain.utxo) == _replay_utxo(node)
    a = node.chain.tip.hash
    node.reorg(120, 15, txs_per_block=6)
    assert set(node.chain.utxo) == _replay_utxo(node)
    node.reorg(112, 30, txs_per_block=4)     # below the loaded wallet txs
    assert set(node.chain.utxo) == _replay_utxo(node)
    node.activate(a)
    assert set(node.chain.utxo) == _replay_utxo(node)
    node.make_mempool_txs(4)
    node.mine(2, txs_per_block=3)
    assert set(node.chain.utxo) == _replay_utxo(node)
    # mempool survives blocks built without it, minus conflicting txs
    for _ in range(5):
        node.make_mempool_txs(10)
        node.generate(2, txs_per_block=15)
        node.mine(1)
        assert set(node.chain.utxo) == _replay_utxo(node)


# ---------------------------------------------------------------- big blocks / extmsg

def _stream_block_check(c, h):
    """Receive a block incrementally (not held whole): parse txs, check txids
    chain into the merkle root."""
    c.getdata([(2, h)])
    while True:
        hdr = c._exact(24)
        cmd = hdr[4:16].rstrip(b"\0").decode()
        ln = struct.unpack("<I", hdr[16:20])[0]
        if cmd == "block":
            break
        p = c._exact(ln)
        if cmd == "ping":
            c.send("pong", p)
    sha = hashlib.sha256()
    buf = bytearray()
    left = ln

    def need(n):
        nonlocal left
        while len(buf) < n:
            k = c._exact(min(left, 4 << 20))
            left -= len(k)
            sha.update(k)
            buf.extend(k)
    need(81)
    header = bytes(buf[:80])
    ntx, i = read_varint(buf, 80)
    del buf[:i]
    txids = []
    while len(txids) < ntx:
        need(min(left + len(buf), 1 << 20) if left else len(buf))
        tx = bc.CTransaction.stream_deserialize(__import__("io").BytesIO(bytes(buf)))
        n = len(tx.serialize())
        txids.append(dsha(bytes(buf[:n])))
        del buf[:n]
    assert left == 0 and not buf
    assert hashlib.sha256(sha.digest()).digest()[:4] == hdr[20:24]
    level = txids
    while len(level) > 1:
        if len(level) & 1:
            level.append(level[-1])
        level = [dsha(level[k] + level[k + 1]) for k in range(0, len(level), 2)]
    assert level[0] == header[36:68]
    assert dsha(header) == h
    return ln, ntx


def test_big_generated_block_streamed(simnode_factory, tmp_path):
    node = simnode_factory(generate=3, seed=11)
    b = node.generate(1, block_size=60_000_000, txs_per_block=2400)[0]
    assert b.kind == "pattern" and b.pattern.ntx == 2400
    c = connect(node)
    hs = sync_headers(c)
    assert dsha(hs[-1]) == b.hash
    ln, ntx = _stream_block_check(c, b.hash)
    assert ln == b.size and abs(ln - 60_000_000) < 1_000_000 and ntx == 2400
    # the same, cached to a file and served with sendfile
    node2 = simnode_factory(generate=3, seed=11, cache_dir=str(tmp_path))
    b2 = node2.generate(1, block_size=20_000_000, txs_per_block=500)[0]
    assert b2.kind == "file"
    c2 = connect(node2)
    ln, ntx = _stream_block_check(c2, b2.hash)
    assert ln == b2.size and ntx == 500
    # a following normal block spends the big block's last output
    nxt = node.mine(1, txs_per_block=3)[0]
    blk = bc.CBlock.deserialize(nxt.read())
    assert len(blk.vtx) >= 2
    c.close()
    c2.close()


def test_extmsg_framing_forced(simnode_factory):
    node = simnode_factory(generate=10, txs_per_block=4, seed=1, force_extmsg=True)
    c = connect(node)
    b = node.chain.at(7)
    c.getdata([(2, b.hash)])
    cmd, p, info = c.wait("block")
    assert info["ext"]
    raw = c.last_header
    assert len(raw) == 44
    assert raw[4:16] == b"extmsg".ljust(12, b"\0")
    assert raw[16:20] == b"\xff\xff\xff\xff" and raw[20:24] == b"\0\0\0\0"
    assert raw[24:36] == b"block".ljust(12, b"\0")
    assert struct.unpack("<Q", raw[36:44])[0] == b.size
    assert p == b.read()
    # the extended form is used for blocks only; other messages stay basic
    c.send("ping", struct.pack("<Q", 5))
    cmd, p, info = c.wait("pong")
    assert not info["ext"]


# ---------------------------------------------------------------- CLI

def test_cli_process_with_control(simnode_process):
    sp = simnode_process("--regtest", "--chain", str(CHAIN116), "--generate", "4")
    st = sp.control({"cmd": "status"})
    assert st["ok"] and st["height"] == 120
    c = Client(sp.port)
    c.handshake()
    hs = sync_headers(c)
    assert len(hs) == 120
    r = sp.control({"cmd": "mine", "n": 2, "txs_per_block": 1})
    assert r["ok"] and r["height"] == 122
    cmd, p, _ = c.wait(("headers", "inv"))
    assert cmd == "headers" and len(parse_headers(p)) == 2
    r = sp.control({"cmd": "misbehave", "mode": "bad_checksum", "on": "ping"})
    assert r["ok"]
    sp._f.write("misbehave too_many_headers\n")
    sp._f.flush()
    assert '"ok": true' in sp._f.readline()
    assert len(c.getheaders([GENESIS])) == 2001
    r = sp.control({"cmd": "nonsense"})
    assert not r["ok"]
    rec = sp.control({"cmd": "received"})
    assert [m[1] for m in rec["messages"]][:2] == ["version", "verack"]
    c.close()


def test_cli_mempool_flags_and_tx_controls(simnode_process):
    # --reject-mempool-request is accepted and is the default behaviour anyway
    sp = simnode_process("--regtest", "--generate", "110", "--reject-mempool-request")
    c = Client(sp.port)
    c.handshake()
    c.send("mempool")
    _expect_disconnect(c)
    r = sp.control({"cmd": "make_tx", "bad_signature": True})
    assert r["ok"]
    r = sp.control({"cmd": "add_tx", "hex": r["hex"]})
    assert not r["ok"] and r["code"] == 0x10 and r["reason"].startswith("mandatory-script-verify")
    r = sp.control({"cmd": "make_tx"})
    assert sp.control({"cmd": "add_tx", "hex": r["hex"]})["txid"] == r["txid"]
    assert sp.control({"cmd": "mempool_txids"})["txids"] == [r["txid"]]
    tip = sp.control({"cmd": "status"})["tip"]
    r = sp.control({"cmd": "invalidate", "hash": tip})
    assert r["ok"] and r["height"] == 109
    assert sp.control({"cmd": "reconsider", "hash": tip})["tip"] == tip
    wl = simnode_process("--regtest", "--generate", "110", "--whitelist")
    assert wl.control({"cmd": "mempool", "n": 2})["ok"]
    c = Client(wl.port)
    c.handshake()
    c.send("mempool")
    _, p, _ = c.wait("inv")
    assert len(parse_inv(p)) == 2


def test_post_genesis_nonfinal_pool(simnode_factory):
    """After Genesis a non-final tx is not rejected: it waits in the
    non-final pool (relayed, not in the mempool) until a block makes it
    final (src/validation.cpp: ContextualCheckTransaction, CommitTxToMempool)."""
    node = simnode_factory(generate=110, seed=16, genesis_height=100)
    a = connect(node)
    b = connect(node)
    h = node.chain.height
    nf = node.make_tx(locktime=h + 2, sequence=0)
    a.send("tx", nf)
    _, p, _ = b.wait("inv")
    assert parse_inv(p) == [(1, dsha(nf))]
    assert not [m for m, _ in collect(a, 0.5) if m == "reject"]
    assert node.nonfinal_txids() == [hexh(dsha(nf))] and not node.mempool
    # spending it is refused: no chains of non-final txs
    r = node.receive_tx(node.make_tx(parent=nf, locktime=h + 2, sequence=0))
    assert (r.code, r.reason) == (0x40, "too-long-non-final-chain")
    node.mine(1)
    assert node.nonfinal_txids() == [hexh(dsha(nf))]
    node.mine(1)                                # final for the next block now
    assert node.nonfinal_txids() == [] and node.mempool_txids() == [hexh(dsha(nf))]
