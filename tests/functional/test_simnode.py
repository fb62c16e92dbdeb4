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
from simnode_client import Client, dsha, parse_headers, parse_inv, varint, read_varint  # noqa: E402

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
    # missing inputs
    bad = node.make_tx(valid=False)
    c.send("tx", bad)
    _, p, _ = c.wait("reject")
    msg, i = read_varint(p, 0)
    assert p[i:i + msg] == b"tx" and p[i + msg] == 0x10
    assert p[-32:] == dsha(bad)
    # malformed
    c.send("tx", good[:-7])
    _, p, _ = c.wait("reject")
    assert p[3] == 0x01
    assert dsha(bad) not in node.mempool
    # inv -> getdata -> tx path
    good2 = node.make_tx()
    c.send("inv", varint(1) + struct.pack("<I", 1) + dsha(good2))
    _, p, _ = c.wait("getdata")
    assert parse_inv(p) == [(1, dsha(good2))]
    c.send("tx", good2)
    node.wait_for(lambda: dsha(good2) in node.mempool)
    c.close()
    watcher.close()


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
