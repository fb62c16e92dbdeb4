#!/usr/bin/env python3
"""fuzz/seeds.py TARGET DIR SHARED - write the seed corpus of a fuzz target.

Seeds come from real data (SHARED = ../shared/data: a mainnet block, the
regtest chains mined by a Bitcoin SV node) and the project's sample config;
they are written fresh on every run of scripts/fuzz.sh (the corpus directory
also keeps what libFuzzer found interesting in earlier runs).
"""
import glob
import hashlib
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def put(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def varint(b, i):
    v = b[i]
    if v < 0xFD:
        return v, i + 1
    n = {0xFD: 2, 0xFE: 4, 0xFF: 8}[v]
    return int.from_bytes(b[i + 1:i + 1 + n], "little"), i + 1 + n


def tx_end(b, i):
    """End offset of the transaction starting at b[i]."""
    j = i + 4
    n, j = varint(b, j)
    for _ in range(n):
        j += 36
        sl, j = varint(b, j)
        j += sl + 4
    n, j = varint(b, j)
    for _ in range(n):
        j += 8
        sl, j = varint(b, j)
        j += sl
    return j + 4


def block_txs(raw):
    count, i = varint(raw, 80)
    out = []
    for _ in range(count):
        e = tx_end(raw, i)
        out.append(raw[i:e])
        i = e
    return out


def regtest_chain(shared, name):
    d = os.path.join(shared, "regtest", name)
    hashes = [h.strip() for h in open(os.path.join(d, "headers.txt")) if h.strip()]
    return [open(os.path.join(d, h), "rb").read() for h in hashes]


def mainnet_block(shared):
    p = os.path.join(shared, "mainnet", "block413567.raw")
    return open(p, "rb").read() if os.path.exists(p) else None


def tx_seeds(shared, limit=None):
    """(name, raw tx) pairs: mainnet txs, regtest wallet and data-carrier txs."""
    seeds = []
    for p in sorted(glob.glob(os.path.join(shared, "mainnet", "tx", "*.hex"))):
        seeds.append(("main-" + os.path.basename(p)[:16], bytes.fromhex(open(p).read().strip())))
    mb = mainnet_block(shared)
    if mb:
        for k, tx in enumerate(block_txs(mb)[:40]):
            seeds.append(("b413567-%d" % k, tx))
    chain = regtest_chain(shared, "blockchain_116_7c9cd2")
    for h in (0, 111, 112, 113, 115, 116):
        for k, tx in enumerate(block_txs(chain[h])):
            seeds.append(("reg%d-%d" % (h, k), tx))
    return [(n, t) for n, t in seeds if limit is None or len(t) <= limit]


def seeds_tx(d, shared):
    for name, tx in tx_seeds(shared, 70000):
        put(d, name, tx)
    chain = regtest_chain(shared, "blockchain_116_7c9cd2")
    for h in (0, 1, 111, 113, 115):
        put(d, "block-reg%d" % h, chain[h])
    mb = mainnet_block(shared)
    if mb:
        put(d, "block413567-prefix", mb[:8192])


def seeds_script(d, shared):
    # control byte: bit 0 data pushes on; the rest picks length limits
    for name, tx in tx_seeds(shared, 70000):
        put(d, name + "-c1", b"\x01" + tx)
        put(d, name + "-c0", b"\x00" + tx)
    chain = regtest_chain(shared, "blockchain_116_7c9cd2")
    txs = block_txs(chain[115])
    put(d, "unit-reg115", b"\x01" + b"".join(txs))


def seeds_hdrchain(d, shared):
    # op stream (see fuzz_hdrchain.c): a real regtest chain as raw headers,
    # then generated runs on each network variant
    chain = regtest_chain(shared, "blockchain_118_0ebc17")
    raw = b"".join(b"\x01\xff\x00\x00\x00\x00\x00\x00" + blk[:80] for blk in chain[1:40])
    put(d, "regtest-raw", b"\x00\x00" + raw)
    for variant in range(8):
        ops = b""
        ops += bytes([0, 0, 200, 0, 0x58, 0x02, 0, 0])  # 200 headers, 600 s apart
        ops += bytes([0, 5, 30, 0, 0x58, 0x02, 0, 0])   # a fork from the 5th node
        ops += bytes([3, 7, 0, 0, 0, 0, 0, 0])          # mark one invalid
        ops += bytes([0, 7, 3, 0, 0x58, 0x02, 0, 0])    # extend it: refused
        ops += bytes([2, 9, 4, 0, 0, 0, 0, 0])          # re-send known headers
        put(d, "gen-%d" % variant, bytes([variant, 10]) + ops)

    def run(n, step, parent=0xFF, mode=0, flags=0x10):
        return bytes([0, parent]) + struct.pack("<Hh", n, step) + bytes([mode, flags])
    # legacy rules past a 2016-block retarget, then the EDA (gaps over 12 h
    # of median time past), then a reorg from below the retarget
    put(d, "legacy-retarget", bytes([1, 0]) + run(1500, 600) + run(700, 300) +
        run(12, 32767) + run(5, 600) + run(40, 150, parent=3))
    # the cash DAA from height 20 with fast and slow blocks
    put(d, "daa", bytes([2, 20]) + run(300, 600) + run(100, 60) + run(100, 3000))
    # testnet: 20-minute minimum-difficulty blocks between normal ones
    put(d, "testnet-20min", bytes([3, 100]) + run(50, 600) + run(5, 1300) + run(5, 600) +
        run(1000, 600) + run(1000, 900) + run(2001, 600))  # the last: over the batch limit
    # nBits the rules do not want, with the rule checked and not
    put(d, "bad-bits", bytes([1, 0]) + run(30, 600) + run(3, 600, mode=0xF3))
    put(d, "no-rule", bytes([5, 0]) + run(30, 600) + run(3, 600, mode=0xF3))


def seeds_http(d, shared):
    txid = "47f3f47a256d70950ff5690ea377c24464310489e3f54d01b817dd0088f0a095"
    key = "e351e4d2499786e8a3ac5468cbf1444b3416b41e424524b50e2dafc8f6f454db"
    uris = [
        "/v1/status", "/v1/tip", "/v1/tx/" + txid, "/v1/tx/" + txid + "?format=json",
        "/v1/tx/" + txid + "?format=raw&x=1", "/v1/tx/" + txid + "/proof",
        "/v1/block/116", "/v1/block/" + txid + "/header", "/v1/block/116/header?format=hex",
        "/v1/outpoint/" + txid + "/1/spender", "/v1/pushdata/" + key + "/history?limit=10",
        "/v1/pushdata/" + key + "/history?limit=1000&after=116:1:0:1",
        "/v1/tx/%41%42?format=%6a%73%6f%6e", "http://host:8080/v1/status?a=b#frag",
        "/v1//tx", "/v1/a/b/c/d/e/f/g/h/i", "/v2/status",
    ]
    for k, u in enumerate(uris):
        put(d, "uri-%d" % k, u.encode())


def seeds_config(d, shared):
    for p in glob.glob(os.path.join(ROOT, "conf", "*.conf")):
        text = open(p, "rb").read()
        put(d, "file-" + os.path.basename(p), b"F" + text)
        # the sample's commented-out defaults, switched on
        on = b"\n".join(l[1:] for l in text.splitlines() if l[:1] == b"#" and b" = " in l)
        put(d, "file-on-" + os.path.basename(p), b"F" + on + b"\n")
        args = [b"--" + l.split(b" = ")[0].replace(b"_", b"-") + b"=" + l.split(b" = ")[1]
                for l in on.splitlines() if l.split(b" = ")[1]]
        put(d, "args-on-" + os.path.basename(p), b"A" + b"\0".join(args))
    put(d, "file-small", b"Fnetwork = regtest\nconnect = 127.0.0.1:18444\nconnect = [::1]\n"
        b"ring_size = 64M # comment\nindex = off\nuser_agent = \"x y\"\n"
        b"http_listen = 127.0.0.1:8085\nlog_level = debug\nmempool_request = never\n")
    put(d, "args-1", b"A--regtest\0--connect\0127.0.0.1\0--ring-size=16M\0--no-index")


def seeds_ws(d, shared):
    """Client frames (masked): RFC 6455's "Hello", fragments with a ping
    between them, a close; byte 0 = max_message, byte 1 = the cut seed."""
    def frame(op, payload, fin=True, mask=b"\x37\xfa\x21\x3d"):
        n = len(payload)
        h = bytes([(0x80 if fin else 0) | op])
        if n < 126:
            h += bytes([0x80 | n])
        else:
            h += bytes([0x80 | 126]) + struct.pack(">H", n)
        return h + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    put(d, "hello", b"\xff\x07" + frame(1, b"Hello"))
    put(d, "fragments", b"\x40\x03" + frame(1, b"Hel", fin=False) + frame(9, b"p")
        + frame(0, b"lo") + frame(2, bytes(200)) + frame(8, b"\x03\xe8bye"))
    put(d, "subscribe", b"\xc8\x05" + frame(1, b'{"op": "subscribe", "kinds": ["tip"]}'))


SEEDERS = {"tx": seeds_tx, "script": seeds_script, "hdrchain": seeds_hdrchain,
           "http": seeds_http, "config": seeds_config, "ws": seeds_ws}

if __name__ == "__main__":
    target, d, shared = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(d, exist_ok=True)
    SEEDERS[target](d, shared)
