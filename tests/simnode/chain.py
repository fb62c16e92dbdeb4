"""Block storage, chain state (active chain + UTXO set with undo data) and the
deterministic regtest block generator of the simulated node."""
import hashlib
import os
import random
import struct
import tempfile
import time

from . import ecdsa
from .protocol import (
    GENESIS_COINBASE, NETWORKS, NULL_HASH, REGTEST_BITS, REGTEST_TARGET,
    hash160, merkle_root, merkle_root_packed, parse_block,
    push_data, push_int, ser_compact, sha256d, unhexh, hexh, bits_to_target)

FILE_BACKED_THRESHOLD = 512 << 10  # loaded block files above this are sendfile'd
CHUNK = 8 << 20                   # streaming chunk size for generated blocks


class Block:
    """One block known to the node.  Payload lives in memory (`data`), in a
    file (`path`, `offset`) or is regenerated on the fly (`pattern`)."""
    __slots__ = ("hash", "header", "prev", "height", "size", "ntx", "kind",
                 "data", "path", "offset", "pattern", "_checksum", "undo",
                 "unsigned")

    def __init__(self, header, height, size, ntx, kind, data=None, path=None,
                 offset=0, pattern=None, checksum=None):
        self.header = bytes(header)
        self.hash = sha256d(self.header)
        self.prev = self.header[4:36]
        self.height = height
        self.size = size
        self.ntx = ntx
        self.kind = kind
        self.data = data
        self.path = path
        self.offset = offset
        self.pattern = pattern
        self._checksum = checksum
        self.undo = None          # (spent [(op, entry)], created [(op, entry)])
        self.unsigned = None      # txids generated with dummy signatures

    @property
    def hash_hex(self):
        return hexh(self.hash)

    @property
    def time(self):
        return struct.unpack_from("<I", self.header, 68)[0]

    @property
    def checksum(self):
        if self._checksum is None:
            h = hashlib.sha256()
            for c in self.iter_chunks():
                h.update(c)
            self._checksum = hashlib.sha256(h.digest()).digest()[:4]
        return self._checksum

    def iter_chunks(self, limit=None):
        """Yield the payload in pieces; stop after `limit` bytes if given."""
        end = self.size if limit is None else min(limit, self.size)
        if self.kind == "mem":
            mv = memoryview(self.data)
            for i in range(0, end, CHUNK):
                yield mv[i:min(i + CHUNK, end)]
        elif self.kind == "file":
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                left = end
                while left > 0:
                    b = f.read(min(CHUNK, left))
                    if not b:
                        raise IOError("block file truncated: %s" % self.path)
                    left -= len(b)
                    yield b
        else:
            sent = 0
            for c in self.pattern.iter_chunks(self.header):
                if sent + len(c) >= end:
                    yield c[:end - sent]
                    return
                sent += len(c)
                yield c

    def read(self):
        """Whole payload as bytes (only sensible for small blocks)."""
        if self.kind == "mem":
            return bytes(self.data)
        return b"".join(bytes(c) for c in self.iter_chunks())


# --------------------------------------------------------------------------
# Keys and scripts.  The wallet's keys are real secp256k1 keys derived from
# the seed; txs the node validates (mempool txs, make_tx) carry real
# signatures (txval.sign_tx), generated block txs carry dummy signatures of
# realistic length (signing 50k txs/s in pure Python is not possible; blocks
# are not validated by the simulator; see README "Generated chains").


class Wallet:
    def __init__(self, rng, nkeys=64):
        self.rng = rng
        self.keys = []
        self.pub_by_h160 = {}
        self.secret_by_pub = {}
        self.redeem_by_h160 = {}
        for i in range(nkeys):
            secret = int.from_bytes(rng.randbytes(32), "big") % (ecdsa.N - 1) + 1
            pub = ecdsa.pubkey_from_secret(secret)
            h = hash160(pub)
            self.keys.append((pub, h))
            self.pub_by_h160[h] = pub
            self.secret_by_pub[pub] = secret
            redeem = b"\x51" + push_data(pub) + b"\x51\xae"   # 1-of-1 multisig
            self.redeem_by_h160[hash160(redeem)] = redeem
        self.redeems = list(self.redeem_by_h160.items())
        # many keys for long benchmark chains (chainfile.py): a share of
        # outputs goes to one of `fake_keys` public keys (02|sha256(i); not
        # curve points, never signed for: generated blocks carry dummy
        # signatures), so a key has tens of rows, not millions
        self.fake_keys = 0
        self.fake_share = 0.9
        self._fake = {}

    def keyfor(self, script):
        """(secret, pubkey) able to spend a P2PKH / P2PK output script, or
        None."""
        if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
            pub = self.pub_by_h160.get(script[3:23])
        elif len(script) == 35 and script[0] == 33 and script[-1] == 0xAC:
            pub = script[1:34]
        else:
            return None
        secret = self.secret_by_pub.get(pub)
        return (secret, pub) if secret is not None else None

    def sig(self):
        r = self.rng.randbytes(32)
        s = self.rng.randbytes(32)
        # DER: 30 44 02 20 r 02 20 s + sighash ALL|FORKID
        return b"\x30\x44\x02\x20" + r + b"\x02\x20" + s + b"\x41"

    def key(self):
        if self.fake_keys and self.rng.random() < self.fake_share:
            i = self.rng.randrange(self.fake_keys)
            k = self._fake.get(i)
            if k is None:         # derived once (hash160 costs ~13 us)
                pub = b"\x02" + hashlib.sha256(b"simnode-key-%d" % i).digest()
                k = self._fake[i] = (pub, hash160(pub))
                self.pub_by_h160[k[1]] = pub
            return k
        return self.keys[self.rng.randrange(len(self.keys))]

    # output scripts ------------------------------------------------------
    def p2pkh(self):
        return b"\x76\xa9\x14" + self.key()[1] + b"\x88\xac"

    def p2pk(self):
        if self.rng.random() < 0.2:
            return b"\x41\x04" + self.rng.randbytes(64) + b"\xac"
        return push_data(self.key()[0]) + b"\xac"

    def multisig(self):
        a, b = self.key()[0], self.key()[0]
        if self.rng.random() < 0.5:
            return b"\x51" + push_data(a) + push_data(b) + b"\x52\xae"
        c = self.key()[0]
        return b"\x52" + push_data(a) + push_data(b) + push_data(c) + b"\x53\xae"

    def p2sh(self):
        h, _ = self.redeems[self.rng.randrange(len(self.redeems))]
        return b"\xa9\x14" + h + b"\x87"

    def op_return(self):
        """OP_FALSE OP_RETURN followed by pushes using every push opcode."""
        rng = self.rng
        parts = [b"\x00\x6a"]
        for _ in range(rng.randint(1, 4)):
            r = rng.random()
            if r < 0.4:
                parts.append(push_data(rng.randbytes(rng.choice((1, 20, 32, 33, 65, 75)))))
            elif r < 0.7:
                n = rng.randint(76, 255)
                parts.append(b"\x4c" + bytes((n,)) + rng.randbytes(n))
            elif r < 0.9:
                n = rng.randint(256, 1200)
                parts.append(b"\x4d" + struct.pack("<H", n) + rng.randbytes(n))
            else:
                n = rng.randint(20, 300)     # PUSHDATA4 (non-minimal, as seen on chain)
                parts.append(b"\x4e" + struct.pack("<I", n) + rng.randbytes(n))
        return b"".join(parts)

    def script_sig_for(self, script):
        """A structurally valid unlocking script for an output script."""
        sig = self.sig()
        if len(script) == 25 and script[:3] == b"\x76\xa9\x14":
            pub = self.pub_by_h160.get(script[3:23]) or self.key()[0]
            return push_data(sig) + push_data(pub)
        if script[-1:] == b"\xac" and len(script) in (35, 67):
            return push_data(sig)
        if script[-1:] == b"\xae":
            m = script[0] - 0x50
            return b"\x00" + b"".join(push_data(self.sig()) for _ in range(max(m, 1)))
        if len(script) == 23 and script[:2] == b"\xa9\x14":
            redeem = self.redeem_by_h160.get(script[2:22]) or (b"\x51" + push_data(self.key()[0]) + b"\x51\xae")
            return b"\x00" + push_data(sig) + push_data(redeem)
        return push_data(sig) + push_data(self.key()[0])


def ser_tx(inputs, outputs, version=1, locktime=0):
    """inputs: [(prev_txid, index, scriptsig, sequence)], outputs: [(value, script)]"""
    parts = [struct.pack("<i", version), ser_compact(len(inputs))]
    for prev, idx, ss, seq in inputs:
        parts += [prev, struct.pack("<I", idx), ser_compact(len(ss)), ss,
                  struct.pack("<I", seq)]
    parts.append(ser_compact(len(outputs)))
    for val, sc in outputs:
        parts += [struct.pack("<q", val), ser_compact(len(sc)), sc]
    parts.append(struct.pack("<I", locktime))
    return b"".join(parts)


def subsidy(height, halving=150):
    h = height // halving
    return 0 if h >= 64 else (50 * 100_000_000) >> h


def grind_header(prefix76, target=REGTEST_TARGET, start=0, want_valid=True):
    """Find a nonce making the header valid (or, with want_valid=False,
    invalid) proof of work.  Returns the 80-byte header."""
    sha = hashlib.sha256
    pack = struct.pack
    nonce = start
    while True:
        h = prefix76 + pack("<I", nonce)
        ok = int.from_bytes(sha(sha(h).digest()).digest(), "little") <= target
        if ok == want_valid:
            return h
        nonce += 1


def make_header(version, prev, merkle, ntime, bits=REGTEST_BITS, want_valid=True):
    prefix = struct.pack("<i", version) + prev + merkle + struct.pack("<II", ntime, bits)
    return grind_header(prefix, bits_to_target(bits), want_valid=want_valid)


# --------------------------------------------------------------------------
# Pattern ("big") blocks: a coinbase followed by a chain of template txs,
# tx i spending output 0 of tx i-1.  Only the txids are kept (n*32 bytes);
# bytes are regenerated on the fly when served.


class PatternBlock:
    def __init__(self, coinbase, first_prev, templates, ntx):
        self.coinbase = coinbase
        self.first_prev = first_prev           # 36 bytes: txid + index
        self.templates = templates             # list of (P, S)
        self.ntx = ntx                         # including the coinbase
        self.txids = bytearray()

    def iter_txs(self):
        """Yield each non-coinbase tx as a list of byte pieces (needs txids
        for i>=2, i.e. after compute())."""
        tpl = self.templates
        nt = len(tpl)
        txids = self.txids
        prev = self.first_prev
        for i in range(1, self.ntx):
            P, S = tpl[(i - 1) % nt]
            yield (P, prev, S)
            prev = bytes(txids[i * 32:i * 32 + 32]) + b"\0\0\0\0"

    def compute(self, sink=None):
        """First pass: txids (and optional write of the body to `sink`)."""
        sha = hashlib.sha256
        self.txids = bytearray(self.ntx * 32)
        self.txids[0:32] = sha256d(self.coinbase)
        tpl = self.templates
        nt = len(tpl)
        prev = self.first_prev
        txids = self.txids
        buf = []
        bufn = 0
        for i in range(1, self.ntx):
            P, S = tpl[(i - 1) % nt]
            h = sha(P)
            h.update(prev)
            h.update(S)
            t = sha(h.digest()).digest()
            txids[i * 32:i * 32 + 32] = t
            if sink is not None:
                buf += (P, prev, S)
                bufn += len(P) + 36 + len(S)
                if bufn >= CHUNK:
                    sink.write(b"".join(buf))
                    buf = []
                    bufn = 0
            prev = t + b"\0\0\0\0"
        if buf:
            sink.write(b"".join(buf))
        return merkle_root_packed(txids, self.ntx)

    def last_txid(self):
        return bytes(self.txids[-32:])

    def body_size(self):
        nt = len(self.templates)
        m = self.ntx - 1
        full, rem = divmod(m, nt)
        per = [len(P) + 36 + len(S) for P, S in self.templates]
        return len(self.coinbase) + full * sum(per) + sum(per[:rem])

    def iter_chunks(self, header):
        out = [header, ser_compact(self.ntx), self.coinbase]
        n = sum(len(x) for x in out)
        for pieces in self.iter_txs():
            out += pieces
            n += len(pieces[0]) + 36 + len(pieces[2])
            if n >= CHUNK:
                yield b"".join(out)
                out = []
                n = 0
        if out:
            yield b"".join(out)


# --------------------------------------------------------------------------


class Chain:
    """Active chain, all known blocks (including stale branches) and the UTXO
    set of the active chain.  Not thread safe: SimNode serialises access."""

    def __init__(self, network="regtest", seed=0, cache_dir=None,
                 coinbase_maturity=0):
        self.network = network
        self.params = NETWORKS[network]
        self.blocks = {}              # hash -> Block
        self.active = []              # height -> hash
        self.extra = {}               # hash -> Block served although not in chain
        self.utxo = {}                # (txid, idx) -> (value, script, height, is_cb)
        self.pool = []                # candidate outpoints to spend (lazy)
        self.rng = random.Random(seed)
        self.wallet = Wallet(self.rng)
        self.cache_dir = cache_dir
        self.coinbase_maturity = coinbase_maturity
        self.time_spacing = 600
        self.cache_files = []
        # bound on the UTXO set for long generated chains (chainfile.py):
        # above it every generated tx spends 3 outputs, so it shrinks
        self.max_utxo = None
        gh = self.params["genesis_header"]
        g = Block(gh, 0, 81 + len(GENESIS_COINBASE), 1, "mem",
                  data=gh + b"\x01" + GENESIS_COINBASE)
        g.undo = ([], [])
        self.blocks[g.hash] = g
        self.active.append(g.hash)

    # -- queries -----------------------------------------------------------
    @property
    def height(self):
        return len(self.active) - 1

    @property
    def tip(self):
        return self.blocks[self.active[-1]]

    def at(self, height):
        return self.blocks[self.active[height]]

    def mtp(self, height):
        """Median time past of the active block at height (median of the
        times of it and its 10 predecessors, CBlockIndex::GetMedianTimePast)."""
        if height < 0:
            return 0
        ts = sorted(self.blocks[self.active[h]].time
                    for h in range(max(0, height - 10), height + 1))
        return ts[len(ts) // 2]

    def block_txs(self, block):
        """The block's txs as txval.Tx objects (coinbase first), or None for
        streamed pattern blocks (too big to hold)."""
        from .txval import Tx
        if block.kind == "pattern" or block.size > (256 << 20):
            return None
        raw = block.read()
        _, txs = parse_block(raw)
        return [Tx.parse(raw[s:e]) for s, e, _, _ in txs]

    def in_active(self, h):
        b = self.blocks.get(h)
        return b is not None and b.height < len(self.active) and self.active[b.height] == h

    def get(self, h):
        return self.blocks.get(h) or self.extra.get(h)

    def fork_point(self, h):
        """Highest active-chain ancestor of block h (h may be stale)."""
        b = self.blocks.get(h)
        while b is not None and not self.in_active(b.hash):
            b = self.blocks.get(b.prev)
        return b

    def locate(self, locator):
        """getheaders start height (bsv-p2p.md §4.1)."""
        for h in locator:
            if self.in_active(h):
                return self.blocks[h].height + 1
        return 1

    def headers_from(self, start, stop=NULL_HASH, limit=2000):
        out = []
        for height in range(start, min(len(self.active), start + limit)):
            b = self.blocks[self.active[height]]
            out.append(b.header)
            if b.hash == stop:
                break
        return out

    # -- connecting / disconnecting -----------------------------------------
    def _spend(self, op, spent):
        e = self.utxo.pop(op, None)
        if e is not None:
            spent.append((op, e))
        return e

    def _create(self, op, entry, created):
        self.utxo[op] = entry
        created.append((op, entry))
        if entry[1][:2] != b"\x00\x6a" and entry[1][:1] != b"\x6a":
            self.pool.append(op)

    def connect(self, block):
        """Append an already-built block (with undo set) to the active chain."""
        assert block.prev == self.active[-1], "block does not connect to tip"
        block.height = len(self.active)
        self.blocks[block.hash] = block
        self.active.append(block.hash)

    def reapply(self, block):
        spent, created = block.undo
        # created first: outputs created and spent inside the block are in both
        for op, e in created:
            self.utxo[op] = e
            self.pool.append(op)
        for op, _ in spent:
            self.utxo.pop(op, None)
        self.connect(block)

    def disconnect_tip(self):
        b = self.tip
        spent, created = b.undo
        # spent first: outputs created and spent inside the block are in both
        for op, e in spent:
            self.utxo[op] = e
            self.pool.append(op)
        for op, _ in created:
            self.utxo.pop(op, None)
        self.active.pop()
        return b

    def rewind(self, height):
        """Disconnect blocks above height; returns them (tip first)."""
        out = []
        while self.height > height:
            out.append(self.disconnect_tip())
        return out

    def activate(self, tip_hash):
        """Make the branch ending in tip_hash active (any known block).
        Returns (disconnected blocks tip first, connected blocks)."""
        branch = []
        b = self.blocks[tip_hash]
        while not self.in_active(b.hash):
            branch.append(b)
            b = self.blocks[b.prev]
        gone = self.rewind(b.height)
        for blk in reversed(branch):
            self.reapply(blk)
        return gone, list(reversed(branch))

    # -- spending ------------------------------------------------------------
    def take_utxo(self, height):
        """Pick a random spendable outpoint (removes it from the pool)."""
        pool = self.pool
        rng = self.rng
        while pool:
            i = rng.randrange(len(pool))
            op = pool[i]
            pool[i] = pool[-1]
            pool.pop()
            e = self.utxo.get(op)
            if e is None:
                continue
            if e[3] and self.coinbase_maturity and height - e[2] < self.coinbase_maturity:
                continue       # (dropped from pool; fine for a test generator)
            return op, e
        return None

    def make_tx(self, height, spent, created, nin=None):
        """Build one realistic tx spending existing outputs; applies it to
        the UTXO set.  Returns raw bytes or None if nothing to spend."""
        rng = self.rng
        w = self.wallet
        if nin is None and self.max_utxo and len(self.utxo) > self.max_utxo:
            nin = 3
        if nin is None:
            r = rng.random()
            nin = 1 if r < 0.7 else (2 if r < 0.9 else 3)
        ins = []
        total = 0
        for _ in range(nin):
            t = self.take_utxo(height)
            if t is None:
                break
            op, e = t
            ins.append((op, e))
        if not ins:
            return None
        inputs = []
        for op, e in ins:
            self._spend(op, spent)
            total += e[0]
            inputs.append((op[0], op[1], w.script_sig_for(e[1]), 0xFFFFFFFF))
        outs = []
        r = rng.random()
        if r < 0.25:
            outs.append((0, w.op_return()))
        kinds = (w.p2pkh, w.p2pkh, w.p2pkh, w.p2pk, w.multisig, w.p2sh)
        nspend = rng.randint(1, 3)
        fee = min(total, rng.randint(0, 400))
        value = total - fee
        for k in range(nspend):
            v = value // (nspend - k) if k < nspend - 1 else value
            value -= v
            outs.append((v, rng.choice(kinds)()))
        raw = ser_tx(inputs, outs)
        txid = sha256d(raw)
        for i, (v, sc) in enumerate(outs):
            if sc[:2] != b"\x00\x6a":
                self._create((txid, i), (v, sc, height, False), created)
        return raw, txid, fee

    def coinbase(self, height, value, tag=b"/simnode/"):
        ss = push_int(height) + push_data(self.rng.randbytes(8)) + push_data(tag)
        return ser_tx([(NULL_HASH, 0xFFFFFFFF, ss, 0xFFFFFFFF)],
                      [(value, self.wallet.p2pkh())])

    def next_time(self):
        t = struct.unpack_from("<I", self.tip.header, 68)[0]
        nt = t + self.time_spacing
        if nt > time.time() + 3600:
            nt = t + 1
        return nt

    def apply_tx(self, raw, height, spent, created):
        """Apply an externally supplied (already validated) tx to the UTXO set."""
        from .protocol import parse_tx
        end, ins, outs = parse_tx(raw, 0)
        txid = sha256d(raw)
        fee = 0
        for prev, idx, _, _ in ins:
            e = self._spend((prev, idx), spent)
            if e is not None:
                fee += e[0]
        for i, (v, sc) in enumerate(outs):
            fee -= v
            if sc[:2] != b"\x00\x6a" and sc[:1] != b"\x6a":
                self._create((txid, i), (v, sc, height, False), created)
        return txid, max(fee, 0)

    # -- building blocks -----------------------------------------------------
    def build_block(self, ntxs=0, txs=(), version=0x20000000):
        """Build, connect and return a block on the tip: coinbase, the given
        raw txs (assumed valid against the UTXO set, in order) then `ntxs`
        generated ones."""
        height = self.height + 1
        spent, created = [], []
        raws, txids, fees = [], [], 0
        for raw in txs:
            t, f = self.apply_tx(raw, height, spent, created)
            raws.append(raw)
            txids.append(t)
            fees += f
        unsigned = set()
        for _ in range(ntxs):
            r = self.make_tx(height, spent, created)
            if r is None:
                break
            raws.append(r[0])
            txids.append(r[1])
            unsigned.add(r[1])
            fees += r[2]
        cb = self.coinbase(height, subsidy(height) + fees)
        cbid = sha256d(cb)
        self._create((cbid, 0), (subsidy(height) + fees, cb[-29:-4], height, True), created)
        mr = merkle_root([cbid] + txids)
        header = make_header(version, self.active[-1], mr, self.next_time())
        body = b"".join([header, ser_compact(1 + len(raws)), cb] + raws)
        b = Block(header, height, len(body), 1 + len(raws), "mem", data=body)
        b.undo = (spent, created)
        b.unsigned = unsigned or None
        self.connect(b)
        return b

    def build_coinbase_only(self, n, version=0x20000000):
        """Fast path for long chains of coinbase-only blocks."""
        out = []
        sha = hashlib.sha256
        for _ in range(n):
            height = self.height + 1
            val = subsidy(height)
            cb = self.coinbase(height, val)
            cbid = sha(sha(cb).digest()).digest()
            created = []
            self._create((cbid, 0), (val, cb[-29:-4], height, True), created)
            header = make_header(version, self.active[-1], cbid, self.next_time())
            b = Block(header, height, 81 + len(cb), 1, "mem",
                      data=header + b"\x01" + cb)
            b.undo = ([], created)
            self.connect(b)
            out.append(b)
        return out

    def build_big_block(self, size, ntx=None, version=0x20000000, cache=None):
        """A block of about `size` bytes streamed from a repeating pattern of
        txs (see PatternBlock).  If `cache` (or the chain's cache_dir) is set
        the body is written to a temp file there and served with sendfile."""
        height = self.height + 1
        rng = self.rng
        w = self.wallet
        spent, created = [], []
        t = self.take_utxo(height)
        if t is not None:
            op, e = t
            self._spend(op, spent)
            first_prev = op[0] + struct.pack("<I", op[1])
            value = e[0]
            ss = w.script_sig_for(e[1])
        else:                       # nothing spendable yet: dangling prevout
            first_prev = rng.randbytes(32) + b"\0\0\0\0"
            value = 0
            ss = push_data(w.sig()) + push_data(w.key()[0])
        if ntx is None:
            ntx = max(2, size // 1000)
        m = ntx - 1
        per_tx = max(200, (size - 300) // m)
        # templates: differ in the second output kind; data pads to per_tx
        kinds = [w.p2pk(), w.multisig(), w.p2sh(), w.p2pkh()]
        change = w.p2pkh()
        templates = []
        for k in range(8):
            extra_out = kinds[k % len(kinds)]
            base_out = [(value, change), (0, extra_out)]
            P = struct.pack("<i", 1) + b"\x01"
            fixed = len(P) + 36 + len(ser_compact(len(ss))) + len(ss) + 4 + 1 + 4 + \
                sum(8 + len(ser_compact(len(s))) + len(s) for _, s in base_out) + 8
            room = max(1, per_tx - fixed - 12)
            op_code = k % 3
            if op_code == 0 and room <= 255:
                push = b"\x4c" + bytes((room,))
            elif op_code != 2 and room <= 0xFFFF:
                push = b"\x4d" + struct.pack("<H", room)
            else:
                push = b"\x4e" + struct.pack("<I", room)
            data = rng.randbytes(min(room, 64)) * (room // 64 + 1)
            data_script = b"\x00\x6a" + push + data[:room]
            outs = base_out + [(0, data_script)]
            S = ser_compact(len(ss)) + ss + b"\xff\xff\xff\xff" + ser_compact(len(outs))
            S += b"".join(struct.pack("<q", v) + ser_compact(len(s)) + s for v, s in outs)
            S += b"\0\0\0\0"
            templates.append((P, S))
        val = subsidy(height)
        cb = self.coinbase(height, val)
        pat = PatternBlock(cb, first_prev, templates, ntx)
        cache = cache if cache is not None else self.cache_dir
        total = 80 + len(ser_compact(ntx)) + pat.body_size()
        if cache:
            fd, path = tempfile.mkstemp(prefix="simnode-blk-", dir=cache)
            self.cache_files.append(path)
            with os.fdopen(fd, "wb") as f:
                f.write(b"\0" * 80 + ser_compact(ntx) + cb)
                mr = pat.compute(sink=f)
                header = make_header(version, self.active[-1], mr, self.next_time())
                f.seek(0)
                f.write(header)
            b = Block(header, height, total, ntx, "file", path=path)
            pat_txids = pat.txids
        else:
            mr = pat.compute()
            header = make_header(version, self.active[-1], mr, self.next_time())
            b = Block(header, height, total, ntx, "pattern", pattern=pat)
            pat_txids = pat.txids
        cbid = bytes(pat_txids[:32])
        self._create((cbid, 0), (val, cb[-29:-4], height, True), created)
        last = bytes(pat_txids[-32:])
        if ntx > 1:
            self._create((last, 0), (value, change, height, False), created)
        if cache:
            del pat                   # only the file is needed now
        b.undo = (spent, created)
        b.checksum                    # second pass: message checksum
        self.connect(b)
        return b

    def remove_cache_files(self):
        for p in self.cache_files:
            try:
                os.unlink(p)
            except OSError:
                pass
        self.cache_files = []

    # -- loading -------------------------------------------------------------
    def load_dir(self, path):
        """Load a chain directory: headers.txt (display-hex hashes, genesis
        first) + one raw block file per hash."""
        with open(os.path.join(path, "headers.txt")) as f:
            hashes = [l.strip() for l in f if l.strip()]
        if unhexh(hashes[0]) != self.active[0]:
            raise ValueError("chain %s has a different genesis" % path)
        for hx in hashes[1:]:
            self.load_block_file(os.path.join(path, hx), connect=True,
                                 expect_hash=unhexh(hx))
        return len(hashes) - 1

    def load_block_file(self, path, connect=False, expect_hash=None):
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            data = f.read() if (connect or size <= FILE_BACKED_THRESHOLD) else f.read(81)
        header = data[:80]
        if expect_hash is not None and sha256d(header) != expect_hash:
            raise ValueError("%s: header hash mismatch" % path)
        if size <= FILE_BACKED_THRESHOLD:
            from .protocol import read_compact
            ntx = read_compact(data, 80)[0]
            b = Block(header, -1, size, ntx, "mem", data=data)
        else:
            with open(path, "rb") as f:
                from .protocol import read_compact
                ntx = read_compact(f.read(90), 80)[0]
            b = Block(header, -1, size, ntx, "file", path=path)
        if connect:
            height = self.height + 1
            _, txs = parse_block(data)
            spent, created = [], []
            for i, (s, e, ins, outs) in enumerate(txs):
                raw = data[s:e]
                txid = sha256d(raw)
                if i > 0:
                    for prev, idx, _, _ in ins:
                        self._spend((prev, idx), spent)
                for j, (v, sc) in enumerate(outs):
                    if sc[:2] != b"\x00\x6a" and sc[:1] != b"\x6a":
                        self._create((txid, j), (v, sc, height, i == 0), created)
            b.undo = (spent, created)
            self.connect(b)
        else:
            self.extra[b.hash] = b
        return b
