"""SimNode: a simulated Bitcoin SV node (server side of the p2p protocol).

Threads: one accept thread, and per connection a reader thread (parses and
handles the client's messages, like the real node's message handler) and a
writer thread (drains an outgoing queue: plain messages, streamed blocks,
sendfile for file-backed blocks).  All chain/mempool state is guarded by
`SimNode.lock`.
"""
import collections
import hashlib
import os
import queue
import random
import socket
import struct
import threading
import time

from .chain import Chain, make_header, ser_tx
from .mempool import (DEFAULT_MEMPOOL_EXPIRY, GENESIS_ACTIVATION_REGTEST, Result,
                      TxRejected, TxState)
from .relaymem import RELAY_EXPIRY, RelayMemory
from .protocol import (
    DEFAULT_MAX_RECV_PAYLOAD, MAX_BLOCKS_TO_ANNOUNCE,
    MAX_HEADERS_RESULTS, MIN_PEER_PROTO_VERSION, MSG_BLOCK, MSG_CMPCT_BLOCK,
    NODE_USER_AGENT,
    MSG_TX, REJECT_DUPLICATE, REJECT_INVALID,
    REJECT_MALFORMED, REJECT_OBSOLETE, ParseError, frame, frame_header, hexh,
    parse_getheaders, parse_inv, parse_protoconf, parse_tx, parse_version,
    payload_limit, push_data, read_compact, ser_compact, ser_headers, ser_inv,
    ser_protoconf, ser_reject, ser_version, sha256d, unhexh, valid_command)
from .txval import Tx, sign_tx

Message = collections.namedtuple("Message", "command payload time")

# Fault modes (see SimNode.misbehave)
WIRE_FAULTS = {"bad_checksum", "wrong_magic", "oversize_length", "truncated",
               "garbage"}
BLOCK_FAULTS = {"stall_mid_block", "disconnect_mid_block", "bad_merkle_block",
                "slow_block", "altered_block"}
HEADER_FAULTS = {"bad_pow_headers", "unconnecting_headers", "too_many_headers"}
# floods: the node keeps sending one kind of message as fast as the client
# reads; "_no_read" also stops reading what the client sends
FLOOD_FAULTS = {"ping_flood", "ping_flood_no_read", "inv_flood", "addr_flood",
                "headers_flood", "tx_flood"}
OTHER_FAULTS = {"unsolicited_block", "disconnect"} | FLOOD_FAULTS
# persistent per-connection behaviours (checked as messages arrive)
CONN_FAULTS = {"disconnect_on_message"}
ALL_FAULTS = WIRE_FAULTS | BLOCK_FAULTS | HEADER_FAULTS | OTHER_FAULTS | CONN_FAULTS


class Fault:
    def __init__(self, mode, on, count, conn_id, params):
        self.mode = mode
        self.on = on                # "now" or a command name or "getheaders"/"block"
        self.count = count          # remaining applications (None = forever)
        self.conn_id = conn_id
        self.params = params

    def __repr__(self):
        return "Fault(%s on=%s count=%s conn=%s)" % (self.mode, self.on, self.count, self.conn_id)


class PongHold:
    """SimNode.hold_mempool_pong(): `held` is set once a ping is held,
    release() lets the node answer it (and read on)."""
    def __init__(self):
        self.held = threading.Event()
        self.released = threading.Event()
        self.conn_id = None

    def release(self):
        self.released.set()


class _Stream:
    """Queued block payload to stream."""
    def __init__(self, block, command="block", limit=None, after=None,
                 mutate_last=False, payload=None):
        self.block = block
        self.payload = payload      # bytes sent instead of the block's (altered_block)
        self.command = command
        self.limit = limit          # stop after this many payload bytes
        self.after = after          # "stall" | "disconnect" | None
        self.mutate_last = mutate_last
        self.rate = None            # bytes per second (slow_block)


class Connection:
    def __init__(self, node, sock, addr, cid):
        self.node = node
        self.sock = sock
        self.addr = addr
        self.id = cid
        self.received = []          # [Message] in arrival order (valid frames)
        self.events = []            # [(time, text)] protocol events / violations
        self.sent = []              # [command] sent, in order
        self.version = None         # parsed client version dict
        self.got_verack = False
        self.sent_version = False
        self.want_headers = False   # client sent sendheaders
        self.protoconf = None
        self.max_recv = 1024 * 1024  # client's limit, legacy until protoconf
        self.score = 0
        self.best_sent = None       # hash of the best header the client knows
        self.closed = False
        self.close_reason = None
        self.stalled = False
        self.relay = True
        self.known_txs = set()
        self.time_last_mempool_req = None  # node clock when `mempool` was answered
        self.outq = queue.Queue()
        self.bytes_sent = 0
        self.ping_nonce = None
        self._ping_timer = None
        self.small_blocks = 0
        self.small_bytes = 0
        self.last_served_log = 0.0
        self.last_hdr_log = 0.0
        self.pongs_ok = 0
        self.banned = False
        self._whitelisted = None
        self.no_read = False        # a flood "_no_read" fault: the reader stops
        self.flooded = 0            # flood messages queued

    # -- helpers -----------------------------------------------------------
    def commands(self):
        """Commands received from the client, in order (valid frames only)."""
        return [m.command for m in self.received]

    def max_inv(self):
        """inv/getdata entries per message the client accepts (bsv-p2p §3.3)."""
        return (min(8 * 1024 * 1024, self.max_recv) - 8) // 36

    def violations(self):
        """Protocol violations the node noticed (texts): messages before
        version/verack, bad checksums, duplicate version/sendheaders,
        banned user agents, over-limit lengths, wrong magic, ..."""
        keys = ("misbehaving", "bad checksum", "(ban)", "parse error",
                "protoconf", "invalid inv", "mempool request")
        return [e for _, e in self.events if any(k in e for k in keys)]

    def handshake_problems(self):
        """What a real BSV node would hold against this client's handshake:
        [] when the client sent version first, verack before anything else
        that needs it, a UA without abc/cash/bch, version >= 70016 (needed
        for > 4 GB blocks), services without NODE_NETWORK, and at most one
        protoconf / sendheaders."""
        out = []
        cmds = self.commands()
        if not cmds or cmds[0] != "version":
            out.append("first message is %r, not version" % (cmds[0] if cmds else None))
        if "verack" not in cmds:
            out.append("no verack")
        else:
            vi = cmds.index("verack")
            early = [c for c in cmds[1:vi] if c not in ("authch", "authresp", "reject",
                                                         "createstrm", "streamack")]
            if early:
                out.append("sent before verack: %s" % ", ".join(early))
        v = self.version or {}
        ua = v.get("user_agent", "").lower()
        if any(x in ua for x in ("abc", "cash", "bch")):
            out.append("user agent %r contains abc/cash/bch" % v.get("user_agent"))
        if v and v["version"] < 70016:
            out.append("protocol version %d < 70016" % v["version"])
        if v and v["services"] & 1:
            out.append("services has NODE_NETWORK set")
        for c in ("protoconf", "sendheaders", "version"):
            if cmds.count(c) > 1:
                out.append("%s sent %d times" % (c, cmds.count(c)))
        return out

    def event(self, text):
        self.events.append((time.time(), text))
        self.node._log("conn %d: %s" % (self.id, text))
        with self.node.cond:
            self.node.cond.notify_all()

    @property
    def whitelisted(self):
        """Like a peer matching -whitelist (node-wide `whitelist` unless set
        for this connection)."""
        return self.node.whitelist if self._whitelisted is None else self._whitelisted

    @whitelisted.setter
    def whitelisted(self, on):
        self._whitelisted = on

    def misbehaving(self, score, why):
        """Ban score (src/net/net_processing.cpp Misbehaving): at 100 a
        non-whitelisted peer is disconnected (after what was already queued
        for it, e.g. the reject) and nothing more it sends is processed.
        Banning the address (refusing reconnections) is not modelled."""
        self.score += score
        self.event("misbehaving +%d (%s), score %d" % (score, why, self.score))
        if self.score >= 100 and not self.banned:
            if self.whitelisted:
                self.event("whitelisted peer: not disconnected")
                return
            self.banned = True
            if self.stalled:
                self.close("ban score reached: " + why)
            else:
                self.outq.put(("close", "ban score reached: " + why))

    def send(self, command, payload=b""):
        self.outq.put(("msg", command, bytes(payload)))

    def send_raw(self, data):
        self.outq.put(("raw", bytes(data)))

    def close(self, reason="closed"):
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.event("disconnect: " + reason)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.outq.put(None)
        with self.node.lock:            # FinalizeNode: its orphans go
            self.node.txstate.orphans.erase_peer(self.id)
        if getattr(self, "_hs_timer", None):
            self._hs_timer.cancel()
        if self._ping_timer:
            self._ping_timer.cancel()
        with self.node.cond:
            self.node.cond.notify_all()

    # -- reader ------------------------------------------------------------
    def _recv_exact(self, n):
        buf = bytearray(n)
        mv = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(mv[got:], n - got)
            if k == 0:
                raise ConnectionError("peer closed")
            got += k
        return buf

    def reader(self):
        node = self.node
        magic = node.magic
        try:
            while not self.closed and not self.banned:
                if self.no_read:       # a hostile peer that never reads
                    while not self.closed:
                        time.sleep(0.05)
                    return
                hdr = self._recv_exact(24)
                if hdr[:4] != magic:
                    self.close("wrong magic %s (ban)" % bytes(hdr[:4]).hex())
                    return
                cmd = valid_command(bytes(hdr[4:16]))
                if cmd is None:
                    self.close("invalid command field (ban)")
                    return
                length = struct.unpack_from("<I", hdr, 16)[0]
                checksum = bytes(hdr[20:24])
                ext = False
                if cmd == "extmsg":
                    ext2 = self._recv_exact(20)
                    cmd = valid_command(bytes(ext2[:12]))
                    if cmd is None:
                        self.close("invalid extmsg command (ban)")
                        return
                    length = struct.unpack_from("<Q", ext2, 12)[0]
                    ext = True
                if length > payload_limit(cmd, node.max_recv_payload):
                    self.close("payload length %d over limit for %s (ban)" % (length, cmd))
                    return
                payload = self._recv_exact(length) if length else b""
                if not ext and sha256d(payload)[:4] != checksum:
                    self.event("bad checksum on %s: message dropped" % cmd)
                    continue
                self.received.append(Message(cmd, bytes(payload), time.time()))
                with node.cond:
                    node.cond.notify_all()
                try:
                    self.handle(cmd, bytes(payload))
                except (ParseError, struct.error, IndexError, ValueError) as e:
                    self.event("parse error in %s: %s" % (cmd, e))
                    self.send("reject", ser_reject(cmd, REJECT_MALFORMED, "error parsing message"))
                except Exception as e:      # a simulator bug: report, keep going
                    self.event("internal error handling %s: %r" % (cmd, e))
        except (ConnectionError, OSError) as e:
            if not self.closed:
                self.close("connection lost: %s" % e)
        finally:
            if self.banned:             # the writer sends what is queued, then closes
                end = time.time() + 5
                while not self.closed and time.time() < end:
                    time.sleep(0.01)
            if not self.closed:
                self.close("reader exit")
            try:
                self.sock.close()
            except OSError:
                pass

    # -- message handling ----------------------------------------------------
    def handle(self, cmd, p):
        node = self.node
        if self.version is None and cmd != "version":
            self.misbehaving(1, "missing-version: %s before version" % cmd)
            return
        if cmd == "version":
            if self.version is not None:
                self.send("reject", ser_reject("version", REJECT_DUPLICATE, "Duplicate version message"))
                self.misbehaving(1, "duplicate version")
                return
            v = parse_version(p)
            self.version = v
            self.relay = bool(v["relay"])
            ua = v["user_agent"].lower()
            if v["version"] < MIN_PEER_PROTO_VERSION:
                self.send("reject", ser_reject("version", REJECT_OBSOLETE,
                                               "Version must be %d or greater" % MIN_PEER_PROTO_VERSION))
                self.outq.put(("close", "obsolete version %d" % v["version"]))
                return
            if any(s in ua for s in ("abc", "cash", "bch")):
                self.misbehaving(100, "banned user agent %r" % v["user_agent"])
                return
            assoc = v["association_id"]
            if assoc is not None and len(assoc) >= 2 and (assoc[0] != 0 or len(assoc) != 17):
                self.send("reject", ser_reject("version", 0x60, "invalid association id"))
                self.outq.put(("close", "bad association id"))
                return
            with node.lock:
                h = node.chain.height
            self.send("version", ser_version(h, random.getrandbits(63) | 1,
                                             recv_ip=self.addr[0], recv_port=self.addr[1],
                                             user_agent=node.user_agent))
            self.send("verack")
            self.send("protoconf", ser_protoconf(node.max_recv_payload))
            self.sent_version = True
            return
        if not self.got_verack and cmd not in ("verack", "authch", "authresp",
                                               "reject", "createstrm", "streamack"):
            self.misbehaving(1, "missing-verack: %s before verack" % cmd)
            return
        if self.got_verack and node._take_fault(self, CONN_FAULTS, "message") is not None:
            self.close("fault disconnect_on_message: %s" % cmd)
            return
        fn = getattr(self, "on_" + cmd, None)
        if fn is None:
            return                     # unknown / uninteresting: ignored
        fn(p)

    def on_verack(self, p):
        if self.got_verack:
            return
        self.got_verack = True
        ver = self.version["version"]
        self.send("authch", struct.pack("<II", 1, 32) + os.urandom(32))
        if ver >= 70012:
            self.send("sendheaders")
        if ver >= 70014:
            self.send("sendcmpct", b"\x00" + struct.pack("<Q", 1))
        self.send_ping()
        if ver >= 70013:
            self.send("feefilter", struct.pack("<q", self.node.feefilter))
        self.event("handshake complete (ua=%r version=%d)" % (self.version["user_agent"], ver))
        self.node._on_handshake(self)

    def send_ping(self):
        if self.closed:
            return
        self.ping_nonce = random.getrandbits(64)
        self.send("ping", struct.pack("<Q", self.ping_nonce))
        iv = self.node.ping_interval
        if iv:
            self._ping_timer = threading.Timer(iv, self.send_ping)
            self._ping_timer.daemon = True
            self._ping_timer.start()

    def on_ping(self, p):
        hold = (self.node._take_pong_hold(self) if self.time_last_mempool_req is not None
                else None)
        if hold is not None:    # a test's hold_mempool_pong(): this connection's
            hold.held.set()     # reader waits, so nothing it is sent is read either
            hold.released.wait()
        self.send("pong", p[:8])

    def on_pong(self, p):
        if self.ping_nonce is not None and p[:8] == struct.pack("<Q", self.ping_nonce):
            self.pongs_ok += 1
        else:
            self.event("pong with unexpected nonce %s" % bytes(p[:8]).hex())

    def on_sendheaders(self, p):
        if self.want_headers:
            self.misbehaving(1, "second sendheaders")
        self.want_headers = True

    def on_protoconf(self, p):
        if self.protoconf is not None:
            self.close("second protoconf")
            return
        try:
            n, mr = parse_protoconf(p)
        except ParseError as e:
            self.close("bad protoconf: %s" % e)
            return
        if mr < 1024 * 1024:
            self.close("protoconf maxRecvPayloadLength %d < 1 MiB" % mr)
            return
        self.protoconf = (n, mr)
        self.max_recv = mr

    def on_mempool(self, p):
        """BIP 35 `mempool` (src/net/net_processing.cpp): a non-whitelisted
        peer is disconnected (-rejectmempoolrequest defaults to 1 in
        1.2.x, and without it NODE_BLOOM would be needed); a whitelisted
        one gets inv of every mempool txid."""
        if not self.whitelisted:
            self.event("mempool request from nonwhitelisted peer disabled, "
                       "disconnect peer=%d" % self.id)
            self.close("mempool request from nonwhitelisted peer disabled")
            return
        with self.node.lock:
            ids = list(self.node.mempool)
            # timeLastMempoolReq: getdata may now take any of these from the
            # mempool, even after the relay memory forgot them (relaymem.py)
            self.time_last_mempool_req = self.node.now()
        self.known_txs.update(ids)
        step = self.max_inv()
        for i in range(0, len(ids), step):
            self.send("inv", ser_inv([(MSG_TX, t) for t in ids[i:i + step]]))

    def on_getheaders(self, p):
        node = self.node
        _, locator, stop = parse_getheaders(p)
        if node.ignore_getheaders:
            self.event("getheaders ignored (simulated IBD)")
            return
        fault = node._take_fault(self, HEADER_FAULTS, "getheaders")
        with node.lock:
            chain = node.chain
            if not locator:
                b = chain.blocks.get(stop)
                if b is None:
                    return
                hdrs = [b.header]
            else:
                start = chain.locate(locator)
                hdrs = chain.headers_from(start, stop, MAX_HEADERS_RESULTS)
            if hdrs:
                self.best_sent = sha256d(hdrs[-1])
            elif locator:
                self.best_sent = chain.active[-1]
        if fault is not None:
            hdrs = node._faulty_headers(fault, hdrs, locator)
            self.event("fault %s: sent %d headers" % (fault.mode, len(hdrs)))
        elif len(hdrs) < MAX_HEADERS_RESULTS or time.time() - self.last_hdr_log >= 1.0:
            self.last_hdr_log = time.time()
            node._log("conn %d: getheaders -> %d headers%s" % (
                self.id, len(hdrs), (" ending %s" % hexh(sha256d(hdrs[-1]))) if hdrs else ""))
        self.send("headers", ser_headers(hdrs))

    def on_getblocks(self, p):
        node = self.node
        _, locator, stop = parse_getheaders(p)
        with node.lock:
            start = node.chain.locate(locator)
            hdrs = node.chain.headers_from(start, stop, 500)
        self.send("inv", ser_inv([(MSG_BLOCK, sha256d(h)) for h in hdrs]))

    def on_getdata(self, p):
        node = self.node
        items = parse_inv(p)
        notfound = []
        for t, h in items:
            if t in (MSG_BLOCK, MSG_CMPCT_BLOCK):
                with node.lock:
                    b = node.chain.get(h)
                if b is None or (h in node.withheld):
                    self.event("getdata for unknown block %s: no reply" % hexh(h))
                    continue
                node._serve_block(self, b)
            elif t == MSG_TX:
                with node.lock:
                    raw = node.tx_for_getdata(self, h)
                if raw is None:
                    self.event("getdata for tx %s: not in the relay memory: notfound" % hexh(h))
                    notfound.append((t, h))
                else:
                    self.send("tx", raw)
            elif t == 5:                  # MSG_DATAREF_TX
                notfound.append((t, h))
        if notfound:
            self.send("notfound", ser_inv(notfound))

    def on_inv(self, p):
        items = parse_inv(p)
        want = []
        for t, h in items:
            if t not in (MSG_TX, MSG_BLOCK):
                self.close("invalid inv type %d" % t)
                return
            if t == MSG_TX:
                self.known_txs.add(h)              # AddInventoryKnown
                with self.node.lock:
                    known = self.node.txstate.known(h)
                if not known:
                    want.append((t, h))
        if want:
            self.send("getdata", ser_inv(want))

    def on_tx(self, p):
        self.node._accept_tx(self, p)

    def on_getaddr(self, p):
        self.send("addr", ser_compact(0))

    # -- writer --------------------------------------------------------------
    def writer(self):
        node = self.node
        sock = self.sock
        try:
            while True:
                item = self.outq.get()
                if item is None or self.closed:
                    return
                if self.stalled:
                    continue
                kind = item[0]
                if kind == "msg":
                    _, cmd, payload = item
                    data = node._frame_out(self, cmd, payload)
                    if data is None:
                        continue
                    sock.sendall(data)
                    self.sent.append(cmd)
                    self.bytes_sent += len(data)
                elif kind == "raw":
                    sock.sendall(item[1])
                    self.bytes_sent += len(item[1])
                elif kind == "stream":
                    self._stream(item[1])
                elif kind == "close":
                    self.close(item[1])
                    return
        except OSError as e:
            if not self.closed:
                self.close("send failed: %s" % e)

    def _stream(self, st):
        node = self.node
        b = st.block
        sock = self.sock
        size = b.size
        force_ext = node.force_extmsg or node.force_extmsg_conns.get(self.id, False)
        magic = node.magic
        if st.payload is not None:
            sock.sendall(frame(magic, st.command, st.payload, force_ext=force_ext))
            self.sent.append(st.command)
            self.bytes_sent += 24 + len(st.payload)
            node.served.append((self.id, b.hash, len(st.payload)))
            node._log("conn %d: served an altered copy of %s (%d bytes)" % (
                self.id, b.hash_hex, len(st.payload)))
            return
        limit = size if st.limit is None else min(st.limit, size)
        after = st.after
        last = None
        if st.mutate_last:
            checksum, last = _mutated_checksum(b)
            limit = size - 1
        else:
            checksum = b.checksum
        length = size
        wf = node._take_fault(self, WIRE_FAULTS, st.command)
        if wf is not None:
            self.event("fault %s on %s %s" % (wf.mode, st.command, b.hash_hex))
            if wf.mode == "bad_checksum":
                checksum = bytes(x ^ 0xFF for x in checksum)
            elif wf.mode == "wrong_magic":
                magic = wf.params.get("magic_bytes", b"\xde\xad\xbe\xef")
            elif wf.mode == "oversize_length":
                length = wf.params.get("length", 0xFFFFFFFF)
            elif wf.mode == "truncated":
                limit = min(limit, size // 2)
                after = "disconnect"
            elif wf.mode == "garbage":
                sock.sendall(random.Random(1).randbytes(wf.params.get("length", 64)))
                return
        hdr = frame_header(magic, st.command, length, checksum=checksum,
                           force_ext=force_ext)
        if (force_ext or length > 0xFFFFFFFF) and (self.version or {}).get("version", 0) < 70016:
            self.event("block %s needs extmsg but peer version < 70016: not sent" % b.hash_hex)
            return
        if b.kind == "mem" and limit == size and last is None and size <= (1 << 20) and not st.rate:
            sock.sendall(hdr + b.data)            # small block: one write
            self.sent.append(st.command)
            self.bytes_sent += len(hdr) + size
            node.served.append((self.id, b.hash, size))
            node._count_served(self, size)
            return
        sock.sendall(hdr)
        self.sent.append(st.command)
        self.bytes_sent += len(hdr)
        t0 = time.time()
        if st.rate:
            sent = 0
            piece = max(1, min(int(st.rate) // 10, 1 << 20))
            for c in b.iter_chunks(limit=limit):
                mv = memoryview(c)
                for i in range(0, len(mv), piece):
                    if self.closed:
                        raise OSError("closed during slow send")
                    sock.sendall(mv[i:i + piece])
                    sent += len(mv[i:i + piece])
                    delay = t0 + sent / st.rate - time.time()
                    if delay > 0:
                        time.sleep(delay)
        elif b.kind == "file":
            with open(b.path, "rb") as f:
                sent = 0
                while sent < limit:
                    k = sock.sendfile(f, b.offset + sent, limit - sent)
                    if not k:
                        raise OSError("sendfile returned 0")
                    sent += k
        else:
            for c in b.iter_chunks(limit=limit):
                sock.sendall(c)
        self.bytes_sent += limit
        if last is not None:
            sock.sendall(last)
            self.bytes_sent += 1
        dt = time.time() - t0
        if limit >= (16 << 20) or after or last is not None or wf is not None:
            node._log("conn %d: served %s %s (%d bytes, %.1f MB/s)%s" % (
                self.id, st.command, b.hash_hex, limit, limit / max(dt, 1e-9) / 1e6,
                " [%s]" % after if after else ""))
        else:
            node._count_served(self, limit)
        node.served.append((self.id, b.hash, limit))
        if after == "stall":
            self.stalled = True
            self.event("stalled mid-block after %d of %d bytes" % (limit, size))
        elif after == "disconnect":
            self.close("disconnect mid-block after %d of %d bytes" % (limit, size))


def altered_block_bytes(raw, variant):
    """A wrong copy of a block under its own (valid) header.

    variant "value": the first output value of the last transaction is
    changed by one satoshi (the txid, hence the merkle root, changes; the
    structure and every size stay the same).
    variant "mutated": the CVE-2012-2459 mutation: the last transaction is
    repeated (needs an odd tx count), which keeps the merkle root of the
    header while the tx count grows by one."""
    hdr = raw[:80]
    n, off = read_compact(raw, 80)
    starts = []
    for _ in range(n):
        starts.append(off)
        off, _ins, _outs = parse_tx(raw, off)
    last = starts[-1]
    if variant == "value":
        end, ins, outs = parse_tx(raw, last)
        # the first output's 8-byte value follows the inputs and the count
        o = last + 4
        nin, o = read_compact(raw, o)
        for _ in range(nin):
            o += 36
            sl, o = read_compact(raw, o)
            o += sl + 4
        _nout, o = read_compact(raw, o)
        val = struct.unpack_from("<q", raw, o)[0]
        out = bytearray(raw)
        struct.pack_into("<q", out, o, val + 1 if val < (1 << 62) else val - 1)
        return bytes(out)
    if variant == "mutated":
        if n % 2 == 0:
            raise ValueError("the CVE-2012-2459 mutation needs an odd tx count, not %d" % n)
        return hdr + ser_compact(n + 1) + bytes(raw[80 + len(ser_compact(n)):]) + bytes(raw[last:])
    raise ValueError("unknown altered_block variant %r" % variant)


def _mutated_checksum(b):
    """Checksum of the block payload with the top byte of the last tx's
    locktime flipped (merkle root then mismatches; structure stays valid)."""
    h = hashlib.sha256()
    prev = None
    for c in b.iter_chunks():
        if not len(c):
            continue
        if prev is not None:
            h.update(prev)
        prev = c
    last = bytes((prev[-1] ^ 0x80,))
    h.update(prev[:-1])
    h.update(last)
    return hashlib.sha256(h.digest()).digest()[:4], last


class SimNode:
    """Simulated BSV node.

    node = SimNode(chain_dir=None, generate=0, seed=0, ...); node.start();
    node.port; node.mine(n); node.reorg(fork_height, new_len); node.stop()
    """

    def __init__(self, chain=None, network="regtest", chain_dir=None,
                 generate=0, txs_per_block=0, block_size=None, seed=0,
                 host="127.0.0.1", port=0, cache_dir=None, ping_interval=120,
                 feefilter=50, whitelist=False, force_extmsg=False,
                 max_recv_payload=DEFAULT_MAX_RECV_PAYLOAD, log=None,
                 magic=None, ignore_getheaders=False, handshake_timeout=60,
                 genesis_height=GENESIS_ACTIVATION_REGTEST,
                 mempool_expiry=DEFAULT_MEMPOOL_EXPIRY, clock=time.time,
                 allow_mempool=None, user_agent=None, chain_file=None, serve_height=None,
                 relay_expiry=RELAY_EXPIRY):
        if allow_mempool is not None:       # deprecated name of `whitelist`
            whitelist = bool(allow_mempool)
        self.chain = chain or Chain(network=network, seed=seed, cache_dir=cache_dir)
        self.magic = magic or self.chain.params["magic"]
        self.host = host
        self.req_port = port
        self.port = None
        self.lock = threading.RLock()
        self.cond = threading.Condition()
        self.conns = []
        self.faults = []
        # the node's clock (mempool entry times, expiries, relay memory):
        # `clock` plus what advance_clock() added, so a test crosses a
        # 15-minute edge without waiting for it
        self._clock = clock
        self.clock_offset = 0.0
        # mempool, orphans, non-final pool, validation (mempool.py)
        self.txstate = TxState(self.chain, genesis_height=genesis_height,
                               mempool_expiry=mempool_expiry, clock=self.now)
        self.txstate.log = self._log
        # txs announced, served to getdata for relay_expiry s (relaymem.py)
        self.relay_map = RelayMemory(self.now, relay_expiry)
        self.invalid = set()                        # invalidate()d block hashes
        self.withheld = set()
        self._pong_holds = []                       # hold_mempool_pong()
        self.served = []                            # (conn id, block hash, bytes)
        self.ping_interval = ping_interval
        self.feefilter = feefilter
        # like -whitelist=127.0.0.1: `mempool` answered (else disconnect),
        # no disconnect on ban score (ignore_getheaders still applies to all)
        self.whitelist = whitelist
        self.force_extmsg = force_extmsg
        self.force_extmsg_conns = {}
        self.max_recv_payload = max_recv_payload
        self.logfn = log
        self.ignore_getheaders = ignore_getheaders  # simulate the IBD trap
        # user agent of our version message (bytes or str; e.g. a forged
        # one with "\n" and ANSI escapes, issue 11 F4)
        self.user_agent = user_agent if user_agent is not None else NODE_USER_AGENT
        self.handshake_timeout = handshake_timeout  # s to complete version/verack
        self._srv = None
        self._threads = []
        self._next_id = 1
        self._stopping = False
        if chain_dir:
            self.chain.load_dir(chain_dir)
        # file-backed blocks not yet connected (chainfile.py): reveal()
        self.pending = collections.deque()
        if chain_file:
            from . import chainfile
            self.pending = collections.deque(chainfile.load(self.chain, chain_file))
            self.reveal(len(self.pending) if serve_height is None else serve_height,
                        announce=False)
        if generate:
            self.generate(generate, txs_per_block=txs_per_block, block_size=block_size)

    @property
    def allow_mempool(self):
        """Deprecated name of `whitelist`."""
        return self.whitelist

    @allow_mempool.setter
    def allow_mempool(self, on):
        self.whitelist = bool(on)

    def now(self):
        """The node's clock (s): `clock()` + advance_clock() offsets."""
        return self._clock() + self.clock_offset

    def advance_clock(self, seconds):
        """Move the node's clock forward: relay memory and mempool entries
        age at once (e.g. past the relay memory's 15 minutes).  Returns the
        new now()."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self.lock:
            self.clock_offset += seconds
            return self.now()

    def tx_for_getdata(self, conn, txid):
        """ProcessGetData for MSG_TX (bitcoin-sv src/net/net_processing.cpp):
        the relay memory, else - for a peer that sent `mempool` - the
        mempool if the tx entered it no later than that request, else None
        (notfound).  Caller holds the lock."""
        raw = self.relay_map.get(txid)
        if raw is None and conn.time_last_mempool_req is not None:
            e = self.txstate.mempool.entries.get(txid)
            if e is not None and e.time <= conn.time_last_mempool_req:
                raw = e.tx.raw
        return raw

    # ------------------------------------------------------------------
    def _log(self, s):
        if self.logfn:
            self.logfn(s)

    def _count_served(self, conn, nbytes):
        """Aggregate log line for small blocks, at most once a second."""
        conn.small_blocks += 1
        conn.small_bytes += nbytes
        now = time.time()
        if now - conn.last_served_log >= 1.0:
            conn.last_served_log = now
            self._log("conn %d: served %d blocks (%.1f MB) so far" % (
                conn.id, conn.small_blocks, conn.small_bytes / 1e6))

    def start(self):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((self.host, self.req_port))
        srv.listen(16)
        self._srv = srv
        self.port = srv.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name="simnode-accept", daemon=True)
        t.start()
        self._threads.append(t)
        self._log("listening on %s:%d (%s, height %d, tip %s)" % (
            self.host, self.port, self.chain.network, self.chain.height, self.chain.tip.hash_hex))
        return self

    def __enter__(self):
        return self.start() if self._srv is None else self

    def __exit__(self, *a):
        self.stop()

    def stop(self):
        self._stopping = True
        for h in self._pong_holds:
            h.release()
        for c in list(self.conns):
            c.close("node stopping")
        for t in self._threads:
            t.join(timeout=5)
        if self._srv:
            try:
                self._srv.close()
            except OSError:
                pass
        self.chain.remove_cache_files()

    def _accept_loop(self):
        self._srv.settimeout(0.1)
        while not self._stopping:
            try:
                s, addr = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            except OSError:
                pass
            with self.lock:
                c = Connection(self, s, addr, self._next_id)
                self._next_id += 1
                self.conns.append(c)
            c.event("accepted from %s:%d" % addr)
            if self.handshake_timeout:
                def check(c=c):
                    if not c.got_verack and not c.closed:
                        c.close("handshake not completed within %gs" % self.handshake_timeout)
                t = threading.Timer(self.handshake_timeout, check)
                t.daemon = True
                t.start()
                c._hs_timer = t
            for fn, nm in ((c.reader, "r"), (c.writer, "w")):
                t = threading.Thread(target=fn, name="simnode-%s%d" % (nm, c.id), daemon=True)
                t.start()
                self._threads.append(t)

    # -- framing with wire faults -----------------------------------------
    def _frame_out(self, conn, cmd, payload):
        fault = self._take_fault(conn, WIRE_FAULTS, cmd)
        if fault is None:
            return frame(self.magic, cmd, payload)
        return self._apply_wire_fault(conn, fault, cmd, payload)

    def _apply_wire_fault(self, conn, fault, cmd, payload):
        """For the writer thread (_frame_out): returns the bytes to send in
        place of the message; a fault that ends the connection queues the
        close behind the message being sent, so the bytes go out first."""
        data, close_reason = self._wire_fault(conn, fault, cmd, payload)
        if close_reason:
            conn.outq.put(("close", close_reason))
        return data

    def _wire_fault(self, conn, fault, cmd, payload):
        """Returns (bytes to send, close reason or None)."""
        m = fault.mode
        conn.event("fault %s on %s" % (m, cmd))
        if m == "bad_checksum":
            good = sha256d(payload)[:4]
            bad = bytes(x ^ 0xFF for x in good)
            return frame(self.magic, cmd, payload, checksum=bad), None
        if m == "wrong_magic":
            return frame(fault.params.get("magic_bytes", b"\xde\xad\xbe\xef"), cmd, payload), None
        if m == "oversize_length":
            n = fault.params.get("length", 0x02000001 if cmd != "block" else 0xFFFFFFFF)
            return frame_header(self.magic, cmd, n, checksum=b"\0\0\0\0") + payload, None
        if m == "truncated":
            full = frame(self.magic, cmd, payload)
            cut = fault.params.get("keep", max(24, len(full) // 2) if len(full) > 24 else 12)
            return full[:cut], "truncated message then disconnect"
        if m == "garbage":
            n = fault.params.get("length", 64)
            return random.Random(fault.params.get("seed", 1)).randbytes(n), None
        return frame(self.magic, cmd, payload), None

    # -- faults -----------------------------------------------------------
    def misbehave(self, mode, on=None, count=1, conn=None, **params):
        """Arrange a fault.

        mode: bad_checksum | wrong_magic | oversize_length | truncated |
              garbage (wire faults, applied to the next `count` outgoing
              messages whose command is `on` (e.g. "headers", "block",
              "inv"), "any": the next message of any command, or on="now"
              (default): sent immediately as a `ping`);
              stall_mid_block | disconnect_mid_block | bad_merkle_block |
              slow_block | altered_block (next `count` block serves;
              `fraction`=0.5 of the payload is sent before the
              stall/disconnect; slow_block sends at `rate` bytes/s (1 MiB/s);
              altered_block sends a wrong copy under the right header:
              `variant`="value" (one output value changed) or "mutated"
              (CVE-2012-2459: last tx repeated; odd tx counts only);
              `hash` restricts to a block);
              bad_pow_headers | unconnecting_headers | too_many_headers
              (default: the next getheaders reply; on="now": unsolicited
              `headers` announcement);
              unsolicited_block (immediately: `block` of `hash` or the tip);
              disconnect (immediately close);
              ping_flood | inv_flood | addr_flood | headers_flood | tx_flood
              (immediately, until the connection closes: that message as
              fast as the client reads it; `batch` messages per write);
              ping_flood_no_read (the same with pings, and the node stops
              reading: the client's pongs pile up on its side);
              disconnect_on_message (every message the client sends after
              the handshake makes the node close the connection; use
              count=None for every connection).
        conn: a Connection or id to restrict it; None = every connection,
              including ones that connect later (applied once handshaken).
        count: number of applications (None = forever).
        """
        if mode not in ALL_FAULTS:
            raise ValueError("unknown fault mode %r" % mode)
        cid = conn.id if isinstance(conn, Connection) else conn
        if mode in BLOCK_FAULTS:
            on = "block"
        elif mode in CONN_FAULTS:
            on = "message"
        elif mode in HEADER_FAULTS:
            on = "now" if on == "now" else "getheaders"
        elif mode in OTHER_FAULTS or on is None:
            on = "now"
        f = Fault(mode, on, count, cid, params)
        if on == "now":
            targets = [c for c in self.handshaken() if cid is None or c.id == cid]
            if targets:
                for c in targets:
                    self._fire_now(c, f)
                return f
            # no connection yet: fire after the next handshake
            f.on = "handshake"
        with self.lock:
            self.faults.append(f)
        return f

    def clear_faults(self):
        with self.lock:
            self.faults = []

    def _take_fault(self, conn, modes, on):
        with self.lock:
            for f in self.faults:
                if f.mode in modes and (f.conn_id is None or f.conn_id == conn.id) and \
                        (f.on == on or f.on == "any"):
                    if f.count is not None:
                        f.count -= 1
                        if f.count <= 0:
                            self.faults.remove(f)
                    return f
        return None

    def _on_handshake(self, conn):
        with self.lock:
            pend = [f for f in self.faults if f.on == "handshake" and
                    (f.conn_id is None or f.conn_id == conn.id)]
            for f in pend:
                if f.count is not None:
                    f.count -= 1
                    if f.count <= 0:
                        self.faults.remove(f)
        for f in pend:
            self._fire_now(conn, f)

    def _fire_now(self, conn, f):
        m = f.mode
        if m in WIRE_FAULTS:
            payload = struct.pack("<Q", random.getrandbits(64))
            data, close_reason = self._wire_fault(conn, f, "ping", payload)
            conn.outq.put(("raw", data))  # the bytes first ...
            if close_reason:              # ... then the close (truncated)
                conn.outq.put(("close", close_reason))
        elif m in HEADER_FAULTS:
            with self.lock:
                tip = self.chain.tip.header
            hdrs = self._faulty_headers(f, [], [sha256d(tip)], now=True)
            conn.event("fault %s: unsolicited headers (%d)" % (m, len(hdrs)))
            conn.send("headers", ser_headers(hdrs))
        elif m == "unsolicited_block":
            with self.lock:
                h = f.params.get("hash")
                if isinstance(h, str):
                    h = unhexh(h)
                b = self.chain.get(h) if h else self.chain.tip
            conn.event("fault unsolicited_block %s" % b.hash_hex)
            conn.outq.put(("stream", _Stream(b)))
        elif m == "disconnect":
            conn.outq.put(("close", "fault: disconnect"))
        elif m in FLOOD_FAULTS:
            conn.event("fault %s" % m)
            if m == "ping_flood_no_read":
                conn.no_read = True
            t = threading.Thread(target=self._flood, args=(conn, m, f.params),
                                 name="simnode-flood%d" % conn.id, daemon=True)
            t.start()
        elif m in BLOCK_FAULTS:
            with self.lock:
                self.faults.append(Fault(m, "block", f.count, conn.id, f.params))

    def _flood_batch(self, m, params, rng):
        """One write's worth of flood messages (framed, concatenated)."""
        n = params.get("batch", 200)
        out = []
        if m in ("ping_flood", "ping_flood_no_read"):
            for _ in range(n):
                out.append(frame(self.magic, "ping", struct.pack("<Q", rng.getrandbits(64))))
        elif m == "inv_flood":     # txs it will never serve
            k = params.get("entries", 10000)
            typ = struct.pack("<I", MSG_TX)
            for _ in range(max(1, n // 100)):
                r = rng.randbytes(32 * k)
                out.append(frame(self.magic, "inv", ser_compact(k) + b"".join(
                    typ + r[i:i + 32] for i in range(0, 32 * k, 32))))
        elif m == "addr_flood":
            k = params.get("entries", 1000)
            now = int(time.time())
            entry = b"".join(struct.pack("<IQ", now, 1) + b"\0" * 10 + b"\xff\xff" +
                             rng.randbytes(4) + struct.pack(">H", 8333) for _ in range(k))
            for _ in range(max(1, n // 20)):
                out.append(frame(self.magic, "addr", ser_compact(k) + entry))
        elif m == "headers_flood":  # the chain's own headers, again and again
            with self.lock:
                hdrs = [self.chain.at(h).header for h in
                        range(max(1, self.chain.height - 1999), self.chain.height + 1)]
            msg = frame(self.magic, "headers", ser_headers(hdrs))
            out = [msg] * max(1, n // 50)
        elif m == "tx_flood":      # unsolicited txs spending nothing that exists
            for _ in range(n):
                tx = (struct.pack("<i", 1) + b"\x01" + rng.randbytes(32) +
                      struct.pack("<I", 0) + b"\x01\x51" + struct.pack("<I", 0xffffffff) +
                      b"\x01" + struct.pack("<q", 1000) + b"\x01\x51" + struct.pack("<I", 0))
                out.append(frame(self.magic, "tx", tx))
        return b"".join(out), len(out)

    def _flood(self, conn, m, params):
        """Keeps the connection's writer busy with flood messages until the
        connection closes (the writer is the only thread writing to it)."""
        rng = random.Random(params.get("seed", conn.id))
        while not conn.closed and not self._stopping:
            if conn.outq.qsize() >= 4:
                time.sleep(0.002)
                continue
            data, k = self._flood_batch(m, params, rng)
            conn.outq.put(("raw", data))
            conn.flooded += k

    def _faulty_headers(self, fault, hdrs, locator, now=False):
        m = fault.mode
        rng = random.Random(fault.params.get("seed", 7))
        with self.lock:
            tip_hdr = self.chain.tip.header

        def extend(prev_hdr, n, valid=True):
            out = []
            prev = sha256d(prev_hdr)
            t = struct.unpack_from("<I", prev_hdr, 68)[0]
            for i in range(n):
                h = make_header(0x20000000, prev, rng.randbytes(32), t + 1 + i,
                                want_valid=valid)
                out.append(h)
                prev = sha256d(h)
            return out

        if m == "bad_pow_headers":
            base = hdrs[:-1] if len(hdrs) >= MAX_HEADERS_RESULTS else hdrs
            last = base[-1] if base else tip_hdr
            return base + extend(last, 1, valid=False)
        if m == "unconnecting_headers":
            fake_parent = rng.randbytes(76) + b"\0\0\0\0"
            fake = make_header(0x20000000, sha256d(fake_parent), rng.randbytes(32),
                               struct.unpack_from("<I", tip_hdr, 68)[0] + 1)
            return [fake] + extend(fake, fault.params.get("n", 2) - 1)
        if m == "too_many_headers":
            n = fault.params.get("n", MAX_HEADERS_RESULTS + 1)
            if len(hdrs) >= n:
                return hdrs[:n]
            last = hdrs[-1] if hdrs else tip_hdr
            return hdrs + extend(last, n - len(hdrs))
        return hdrs

    # -- serving ------------------------------------------------------------
    def _serve_block(self, conn, b):
        f = self._take_fault(conn, BLOCK_FAULTS, "block")
        if f is not None and f.params.get("hash"):
            want = f.params["hash"]
            want = unhexh(want) if isinstance(want, str) else want
            if want != b.hash:            # restricted to another block
                with self.lock:
                    if f.count is not None:
                        f.count += 1
                    if f not in self.faults:
                        self.faults.append(f)
                f = None
        if f is None:
            conn.outq.put(("stream", _Stream(b)))
            return
        conn.event("fault %s on block %s" % (f.mode, b.hash_hex))
        if f.mode == "bad_merkle_block":
            conn.outq.put(("stream", _Stream(b, mutate_last=True)))
        elif f.mode == "altered_block":
            alt = altered_block_bytes(b.read(), f.params.get("variant", "value"))
            conn.outq.put(("stream", _Stream(b, payload=alt)))
        elif f.mode == "slow_block":
            st = _Stream(b)
            st.rate = float(f.params.get("rate", 1 << 20))
            conn.outq.put(("stream", st))
        else:
            frac = f.params.get("fraction", 0.5)
            limit = int(f.params.get("bytes", b.size * frac))
            after = "stall" if f.mode == "stall_mid_block" else "disconnect"
            conn.outq.put(("stream", _Stream(b, limit=limit, after=after)))

    # -- announcing ----------------------------------------------------------
    def handshaken(self):
        return [c for c in list(self.conns) if c.got_verack and not c.closed]

    def _announce(self):
        with self.lock:
            chain = self.chain
            tip = chain.tip
            for c in self.handshaken():
                if c.best_sent == tip.hash:
                    continue
                new = None
                if c.want_headers and c.best_sent is not None:
                    fp = chain.fork_point(c.best_sent)
                    if fp is not None and chain.height - fp.height <= MAX_BLOCKS_TO_ANNOUNCE:
                        new = [chain.at(h).header for h in range(fp.height + 1, chain.height + 1)]
                if new:
                    c.send("headers", ser_headers(new))
                    c.best_sent = tip.hash
                    c.event("announced %d headers to %s" % (len(new), tip.hash_hex))
                else:
                    c.send("inv", ser_inv([(MSG_BLOCK, tip.hash)]))
                    c.event("announced inv %s" % tip.hash_hex)

    # -- chain operations ------------------------------------------------------
    def generate(self, n, txs_per_block=0, block_size=None, announce=False):
        """Extend the active chain by n blocks (no announcement by default;
        the mempool is not mined, txs conflicting with the new blocks leave
        it)."""
        with self.lock:
            out = self._build(n, txs_per_block, block_size, include_mempool=False)
            relay = self._blocks_connected(out)
        self._relay(relay)
        if announce:
            self._announce()
        return out

    def reveal(self, height, announce=True):
        """Connect the loaded chain file's blocks up to `height` (as if they
        had just been mined) and announce the new tip. Returns the new
        height; the height stays if it is already there."""
        with self.lock:
            chain = self.chain
            while self.pending and chain.height < height:
                b = self.pending[0]
                if b.prev != chain.active[-1]:
                    raise ValueError("chain file block %s does not extend the tip "
                                     "(the chain changed since it was loaded)" % b.hash_hex)
                self.pending.popleft()
                chain.connect(b)
            h = chain.height
        if announce:
            self._announce()
        return h

    def _build(self, n, txs_per_block=0, block_size=None, txs=None, include_mempool=True):
        chain = self.chain
        if chain.network != "regtest":
            raise ValueError("block generation is only supported on regtest")
        out = []
        if block_size:
            for _ in range(n):
                out.append(chain.build_big_block(block_size, ntx=txs_per_block or None))
            return out
        extra = list(txs or [])
        if include_mempool and self.mempool:
            # the mempool, parents first, minus txs conflicting with `txs`
            # (and their descendants): the given txs win
            given = [Tx.parse(t) for t in extra]
            ids = {t.txid for t in given}
            taken = {i.outpoint for t in given for i in t.vin}
            pool = self.txstate.mempool
            clash = [t for t, e in pool.entries.items()
                     if t not in ids and any(i.outpoint in taken for i in e.tx.vin)]
            drop = pool.descendants(clash)
            extra = [e.tx.raw for e in pool.ordered()
                     if e.tx.txid not in drop and e.tx.txid not in ids] + extra
        if not txs_per_block and not extra:
            return chain.build_coinbase_only(n)
        for i in range(n):
            out.append(chain.build_block(txs_per_block, extra if i == 0 else ()))
        return out

    def _blocks_connected(self, blocks):
        """ConnectTip for each new block on the tip: its txs and their
        conflicts leave the mempool (src/txmempool.cpp RemoveForBlock),
        recent rejects reset (src/net/net_processing.cpp);
        post-Genesis time-locked txs that became final are promoted.
        Returns txids to relay."""
        st = self.txstate
        if not blocks:
            return []
        busy = st.mempool or st.nonfinal
        for b in blocks:
            if not busy:
                break
            txs = self.chain.block_txs(b)
            if txs is None:
                self._drop_spenders([op for op, _ in b.undo[0]])
            else:
                st.block_connected(txs)
        st.recent_rejects.clear()
        relay = []
        for r in st.promote_nonfinal():
            relay += r.relay
        return relay

    def _drop_spenders(self, outpoints):
        """Mempool txs spending these (now spent) outpoints, with their
        descendants (conflicts with a streamed block whose txs are not held)."""
        pool = self.txstate.mempool
        bad = [pool.spent[op] for op in outpoints if op in pool.spent]
        return pool.remove(pool.descendants(bad))

    def _switched(self, disconnected, connected):
        """The active chain changed branches (src/validation.cpp
        UpdateMempoolForReorg, then src/txmempool.cpp RemoveForReorg)."""
        st = self.txstate
        gone = []
        opaque = False
        for b in disconnected:
            txs = self.chain.block_txs(b)
            if txs is None:
                opaque = True
                continue
            gone.append((txs, b.unsigned or set()))
        joined = []
        for b in connected:
            txs = self.chain.block_txs(b)
            if txs is None:
                self._drop_spenders([op for op, _ in b.undo[0]])
                continue
            joined.append(txs)
        readded, removed = st.update_for_reorg(gone, joined)
        if opaque:
            # txs of a streamed block cannot return; spenders of its outputs
            # are dropped like those of any tx that does not come back
            u = self.chain.utxo
            pool = st.mempool
            bad = [t for t, e in pool.entries.items()
                   if any(i.outpoint not in u and pool.coin(i.outpoint) is None
                          for i in e.tx.vin)]
            removed += pool.remove(pool.descendants(bad))
        relay = []
        for r in st.promote_nonfinal():
            relay += r.relay
        self._log("mempool after reorg: %d returned, %d removed, size %d" % (
            len(readded), len(removed), len(st.mempool)))
        return relay

    def mine(self, n=1, txs_per_block=0, block_size=None, txs=None, announce=True):
        """Mine n blocks on the tip (the first includes the mempool and `txs`,
        raw tx bytes; big `block_size` blocks do not take the mempool), then
        announce the new tip.  Returns the new blocks."""
        with self.lock:
            out = self._build(n, txs_per_block, block_size, txs)
            relay = self._blocks_connected(out)
        self._relay(relay)
        if announce:
            self._announce()
        return out

    def reorg(self, fork_height, new_len, txs_per_block=0, block_size=None, announce=True,
              txs=None):
        """Abandon the active chain above fork_height and build a branch of
        new_len blocks on the block at fork_height (the first new block
        holds `txs`, raw, if given); the branch must end up longer than the
        old chain.  The mempool is updated as the node does on a reorg (txs
        of the abandoned blocks return, then whatever is no longer valid
        goes).  Returns the new blocks."""
        with self.lock:
            old_h = self.chain.height
            if fork_height + new_len <= old_h:
                raise ValueError("new branch (%d) not longer than current chain (%d)"
                                 % (fork_height + new_len, old_h))
            gone = self.chain.rewind(fork_height)
            out = self._build(new_len, txs_per_block, block_size, txs=txs,
                              include_mempool=False)
            relay = self._switched(gone, out)
            self._log("reorg: fork at %d, old tip height %d, new tip %d %s" % (
                fork_height, old_h, self.chain.height, self.chain.tip.hash_hex))
        self._relay(relay)
        if announce:
            self._announce()
        return out

    def activate(self, tip_hash, announce=True):
        """Switch to an already known branch (like the node switching to a
        branch with more work, or `reconsiderblock`), updating the mempool
        as on a reorg."""
        if isinstance(tip_hash, str):
            tip_hash = unhexh(tip_hash)
        with self.lock:
            if self._invalid_in(tip_hash):
                raise ValueError("block %s is on an invalidated branch" % hexh(tip_hash))
            gone, joined = self.chain.activate(tip_hash)
            relay = self._switched(gone, joined)
        self._relay(relay)
        if announce:
            self._announce()

    def _invalid_in(self, h):
        b = self.chain.blocks.get(h)
        while b is not None and b.height > 0:
            if b.hash in self.invalid:
                return True
            b = self.chain.blocks.get(b.prev)
        return False

    def invalidate(self, block_hash, announce=False):
        """Like the node's `invalidateblock`: the block and its descendants
        become invalid, the active chain goes back to its parent and then to
        the best (longest) known branch without invalid blocks; the mempool
        is updated as on a reorg (src/validation.cpp InvalidateBlock +
        ActivateBestChain + UpdateMempoolForReorg).  The node announces
        nothing until a new block arrives (announce=True to announce the
        tip anyway).  Returns the new tip hash."""
        if isinstance(block_hash, str):
            block_hash = unhexh(block_hash)
        with self.lock:
            b = self.chain.blocks[block_hash]
            if b.height == 0:
                raise ValueError("cannot invalidate the genesis block")
            self.invalid.add(block_hash)
            gone, joined = [], []
            if self.chain.in_active(block_hash):
                gone = self.chain.rewind(b.height - 1)
            best = self._best_valid_tip()
            if best is not None and best != self.chain.tip.hash:
                g2, joined = self.chain.activate(best)
                gone += g2
            relay = self._switched(gone, joined) if (gone or joined) else []
            tip = self.chain.tip.hash
        self._relay(relay)
        if announce:
            self._announce()
        return hexh(tip)

    def reconsider(self, block_hash, announce=True):
        """`reconsiderblock`: clear the invalid mark; switch to the best
        branch if it now has more work."""
        if isinstance(block_hash, str):
            block_hash = unhexh(block_hash)
        with self.lock:
            self.invalid.discard(block_hash)
            best = self._best_valid_tip()
            if best is None or best == self.chain.tip.hash:
                return hexh(self.chain.tip.hash)
        self.activate(best, announce=announce)
        return hexh(best)

    def _best_valid_tip(self):
        """Highest known block with no invalid ancestor (ties: the current
        tip, else the first found)."""
        chain = self.chain
        best = chain.tip if not self._invalid_in(chain.tip.hash) else None
        for b in chain.blocks.values():
            if b.height < 0 or (best is not None and b.height <= best.height):
                continue
            if not self._invalid_in(b.hash):
                best = b
        return best.hash if best is not None else None

    def add_extra_block(self, path):
        """Serve a raw block file by hash although it is not in the chain."""
        with self.lock:
            return self.chain.load_block_file(path, connect=False)

    def force_extmsg_for(self, conn, on=True):
        """Send blocks to this connection with the 44-byte extmsg header."""
        self.force_extmsg_conns[conn.id if isinstance(conn, Connection) else conn] = on

    def hold_mempool_pong(self):
        """The next ping a connection sends after its `mempool` was answered
        is answered only once the returned PongHold is release()d (its
        `held` event is set when the ping arrived). The `inv`s answering
        `mempool` are sent before; the node reads nothing more from that
        connection meanwhile. The real node answers at once, in order: this
        is a slow node, for a test that needs a client's mempool snapshot
        to stay open across a chain event."""
        h = PongHold()
        with self.lock:
            self._pong_holds.append(h)
        return h

    def _take_pong_hold(self, conn):
        with self.lock:
            for h in self._pong_holds:
                if h.conn_id is None:
                    h.conn_id = conn.id
                    return h
        return None

    def withhold(self, block_hash):
        """Make getdata for this block go unanswered."""
        self.withheld.add(unhexh(block_hash) if isinstance(block_hash, str) else block_hash)

    # -- transactions -----------------------------------------------------------
    @property
    def mempool(self):
        """The mempool: reads as {txid (internal order): raw tx}."""
        return self.txstate.mempool

    @property
    def mempool_spent(self):
        """{outpoint: txid of the mempool tx spending it}."""
        return self.txstate.mempool.spent

    @property
    def tx_policy(self):
        return self.txstate.policy

    @tx_policy.setter
    def tx_policy(self, fn):
        """callable(raw) -> None | (code, reason): an extra rejection rule,
        applied after the context-free checks."""
        self.txstate.policy = fn

    def mempool_txids(self, hex=True):
        """Mempool txids in acceptance order (display hex, like
        getrawmempool; hex=False: internal-order bytes)."""
        with self.lock:
            ids = list(self.txstate.mempool.entries)
        return [hexh(t) for t in ids] if hex else ids

    def orphan_txids(self, hex=True):
        with self.lock:
            ids = list(self.txstate.orphans.entries)
        return [hexh(t) for t in ids] if hex else ids

    def nonfinal_txids(self, hex=True):
        with self.lock:
            ids = list(self.txstate.nonfinal)
        return [hexh(t) for t in ids] if hex else ids

    def clear_mempool(self):
        """Forget the mempool, orphans and non-final pool (not the relay map)."""
        with self.lock:
            self.txstate.mempool.clear()
            self.txstate.orphans = type(self.txstate.orphans)(self.txstate.orphans.max_size)
            self.txstate.nonfinal.clear()

    def expire_mempool(self, now=None):
        """Run -mempoolexpiry now (or as if the clock said `now`); returns
        the removed txids (display hex)."""
        with self.lock:
            return [hexh(t) for t in self.txstate.expire(now)]

    def _finish(self, res, conn, own=True):
        """Network side of a processed tx (from `conn`, None = a wallet on
        the node): reject, ban score, getdata for orphan parents, relay; the
        same for orphans re-processed after it (own=False: only those)."""
        for r in ([res] if own else []) + res.orphans_done:
            c = conn if r is res else self._conn_by_id(r.peer)
            txid = r.txid
            if r.status == "invalid":
                if c is not None:
                    if r.sendable:
                        c.send("reject", ser_reject("tx", r.code, r.reason, txid))
                        c.event("rejected tx %s: 0x%02x %s" % (hexh(txid), r.code, r.reason))
                    else:
                        c.event("tx %s not accepted: %s (internal code 0x%x, no reject)" % (
                            hexh(txid), r.reason, r.code))
                    if r.dos:
                        c.misbehaving(r.dos, r.reason)
            elif r.status == "orphan":
                if c is not None:
                    c.event("orphan tx %s: asking for %d parent(s)" % (
                        hexh(txid), len(r.missing_parents)))
                    if r.missing_parents and r is res:
                        c.send("getdata", ser_inv([(MSG_TX, p) for p in r.missing_parents]))
            elif r.status == "known":
                if c is not None:
                    c.event("tx %s already known: silence" % hexh(txid))
            elif c is not None:
                c.event("accepted tx %s%s" % (hexh(txid), " (non-final pool)"
                                              if r.status == "nonfinal" else ""))
        if own:
            self._relay(res.relay)
        return res

    def _conn_by_id(self, cid):
        for c in list(self.conns):
            if c.id == cid and not c.closed:
                return c
        return None

    def _accept_tx(self, conn, raw):
        """A `tx` message from a peer (src/net/net_processing.cpp: the tx is
        now known to that peer; already known txs are ignored; the rest goes
        to validation, src/validation.cpp ProcessValidatedTxn)."""
        tx = Tx.parse(raw)
        conn.known_txs.add(tx.txid)
        with self.lock:
            if self.txstate.known(tx.txid):
                known = True
            else:
                known = False
                res = self.txstate.process(tx, source="p2p", peer=conn.id)
        if known:
            conn.event("tx %s already known: silence" % hexh(tx.txid))
            return None
        return self._finish(res, conn)

    def receive_tx(self, raw, conn=None):
        """Process a raw tx as if `conn` (a Connection or id; None = a peer
        that is not connected) had sent it in a `tx` message.  Returns the
        Result (None if the tx was already known)."""
        if isinstance(conn, int):
            conn = self._conn_by_id(conn)
        if conn is not None:
            return self._accept_tx(conn, raw)
        tx = Tx.parse(raw)
        with self.lock:
            if self.txstate.known(tx.txid):
                return None
            res = self.txstate.process(tx, source="p2p", peer=None)
        return self._finish(res, None)

    def submit_tx(self, raw, announce=True, validate=True):
        """Submit a raw tx as a wallet on the node would (sendrawtransaction):
        validated like any tx; accepted -> into the mempool and announced
        (inv) to every peer.  Raises mempool.TxRejected (a ValueError) with
        .code/.reason when the node refuses it (missing inputs included).
        validate=False: put it in the mempool unchecked (the old lenient
        simulator; say why where you use it).  Returns the txid (internal
        order)."""
        tx = Tx.parse(raw)
        with self.lock:
            if not validate:
                self.txstate.commit(Result("accepted", tx))
                res = Result("accepted", tx)
                res.relay = [tx.txid]
            elif tx.txid in self.txstate.mempool:
                res = Result("accepted", tx)
                res.relay = [tx.txid]
            else:
                res = self.txstate.process(tx, source="wallet")
                if res.status not in ("accepted", "nonfinal"):
                    if res.status == "orphan":
                        res.code, res.reason = REJECT_INVALID, "missing-inputs"
                    raise TxRejected(res)
        if announce:
            self._relay(res.relay)
        if res.orphans_done:                # peers' orphans that were waiting for it
            self._finish(res, None, own=False)
        return tx.txid

    def add_mempool_tx(self, raw, announce=True, validate=True):
        """Alias of submit_tx (kept for existing callers)."""
        return self.submit_tx(raw, announce=announce, validate=validate)

    def _relay(self, txids, exclude=None):
        """RelayTransaction (src/net/net_processing.cpp): inv to every
        handshaken peer that asked for tx relay (version relay flag) and
        does not know the tx yet (it sent or announced it to us, or we
        announced it).  The relay memory remembers what an inv was sent to
        a peer for, and only that (mapRelay is filled where the node sends
        the inv, SendTxnInventory in src/net/net_processing.cpp: a tx
        accepted without an announcement, or with no peer to announce it
        to, is not in it; relaymem.py)."""
        if not txids:
            return
        plan = []
        for c in self.handshaken():
            if c is exclude or not c.relay:
                continue
            new = [t for t in txids if t not in c.known_txs]
            c.known_txs.update(new)
            if new:
                plan.append((c, new))
        if not plan:
            return
        # remembered before the invs go out: a getdata may answer at once
        sent = set(t for _, new in plan for t in new)
        with self.lock:
            st = self.txstate
            pairs = []
            for t in txids:
                e = (st.mempool.entries.get(t) or st.nonfinal.get(t)) if t in sent else None
                if e is not None:
                    pairs.append((t, e.tx.raw))
            self.relay_map.remember_many(pairs, self.now())
        for c, new in plan:
            step = c.max_inv()
            for i in range(0, len(new), step):
                c.send("inv", ser_inv([(MSG_TX, t) for t in new[i:i + step]]))

    # -- the simulator's own transactions ---------------------------------------
    def spendable_outpoints(self, limit=None, mempool_parents=False):
        """Outpoints the simulator's wallet can spend with a real signature
        and the node would accept spending now: P2PKH / P2PK outputs of the
        wallet's keys, not spent in the mempool, coinbases mature at the
        next height; newest first.  mempool_parents: include outputs of
        mempool txs."""
        with self.lock:
            chain = self.chain
            w = chain.wallet
            st = self.txstate
            next_h = chain.height + 1
            out = []
            for op, e in reversed(chain.utxo.items()):
                if op in st.mempool.spent or e[0] <= 0:
                    continue
                if e[3] and next_h - e[2] < 100:
                    continue
                if w.keyfor(e[1]) is None:
                    continue
                out.append(op)
                if limit is not None and len(out) >= limit:
                    return out
            if mempool_parents:
                for t, ent in reversed(st.mempool.entries.items()):
                    for n, (v, sc) in enumerate(ent.tx.vout):
                        if (t, n) not in st.mempool.spent and v > 0 and w.keyfor(sc):
                            out.append((t, n))
            return out

    def _coin(self, op):
        """(value, script) of a confirmed or mempool output, or None."""
        e = self.chain.utxo.get(op)
        if e is not None:
            return e[0], e[1]
        return self.txstate.mempool.coin(op)

    def make_mempool_txs(self, n, announce=True, sign=True):
        """Generate n realistic txs spending the wallet's confirmed outputs
        (1-3 inputs, 1-3 outputs of every kind, some OP_FALSE OP_RETURN, fee
        ~1 sat/byte), really signed, validated and put in the mempool like
        a wallet's, then announced (inv MSG_TX).  Returns [raw tx] (fewer
        than n if the wallet runs out of spendable outputs).
        sign=False: dummy signatures, not validated (for benchmarks that
        need tens of thousands of txs/s; a real node would refuse them)."""
        out = []
        with self.lock:
            chain = self.chain
            w = chain.wallet
            rng = chain.rng
            if sign:
                cands = self.spendable_outpoints(limit=4 * n + 16)
            else:       # any output will do for dummy signatures
                spent = self.txstate.mempool.spent
                cands = []
                for op, e in reversed(chain.utxo.items()):
                    if op not in spent and e[0] > 0:
                        cands.append(op)
                        if len(cands) >= 4 * n + 16:
                            break
            rng.shuffle(cands)
            used = set()
            kinds = (w.p2pkh, w.p2pkh, w.p2pkh, w.p2pk, w.multisig, w.p2sh)
            i = 0
            while len(out) < n and i < len(cands):
                r = rng.random()
                nin = 1 if r < 0.7 else (2 if r < 0.9 else 3)
                ins = []
                while len(ins) < nin and i < len(cands):
                    op = cands[i]
                    i += 1
                    if op in used or op in self.txstate.mempool.spent:
                        continue
                    used.add(op)
                    v, sc = self._coin(op)
                    ins.append((op[0], op[1], v, sc, 0xFFFFFFFF))
                if not ins:
                    break
                total = sum(x[2] for x in ins)
                outs = []
                if rng.random() < 0.25:
                    outs.append((0, w.op_return()))
                nspend = rng.randint(1, 3)
                est = 10 + 150 * len(ins) + 40 * nspend + sum(len(s) + 9 for _, s in outs)
                fee = est + rng.randint(0, 200)
                if total <= fee + nspend:
                    continue
                value = total - fee
                for k in range(nspend):
                    v = value // (nspend - k) if k < nspend - 1 else value
                    value -= v
                    outs.append((v, rng.choice(kinds)()))
                if sign:
                    raw = sign_tx(1, ins, outs, 0, w.keyfor)
                    res = self.txstate.process(raw, source="wallet", trusted=True)
                    if res.status != "accepted":
                        self._log("make_mempool_txs: own tx refused: %r" % res)
                        continue
                else:
                    vin = [(p, x, w.script_sig_for(sc), seq) for p, x, _, sc, seq in ins]
                    raw = ser_tx(vin, outs)
                    self.txstate.commit(Result("accepted", Tx.parse(raw)))
                out.append(raw)
        if announce and out:
            self._relay([sha256d(r) for r in out])
        return out

    def make_tx(self, spend=None, valid=True, *, parent=None, vout=0, missing_input=False,
                bad_signature=False, double_spend=None, spent_output=False,
                coinbase_height=None, locktime=0, sequence=0xFFFFFFFF, version=1,
                fee=300, outputs=None, size=None):
        """A signed raw tx (added nowhere).  What it spends:
          spend=(txid, index) or a list of them  confirmed or mempool outputs
          parent=raw, vout=k        output k of that raw tx (need not be known:
                                    send the child first and it is an orphan)
          coinbase_height=h         the coinbase output of the active block at h
                                    (immature unless h <= tip + 1 - 100)
          spent_output=True         an output already spent in a block (the
                                    node: missing inputs, i.e. an orphan)
          missing_input=True        a non-existent outpoint (valid=False: same)
          double_spend=raw|txid     the first input of that (mempool) tx
          default                   a spendable wallet output (spendable_outpoints)
        Shape: version, locktime, sequence (every input), fee (satoshis; the
        single output is the rest, to a wallet P2PKH), outputs=[(value,
        script)] instead, size=n pads with an OP_FALSE OP_RETURN output to
        about n bytes.  bad_signature=True: signatures over a wrong digest
        (valid encoding, fail verification: NULLFAIL).
        Only P2PKH / P2PK outputs of the simulator's keys get real
        signatures; other spent scripts get an empty scriptSig."""
        with self.lock:
            chain = self.chain
            w = chain.wallet
            ins = []                       # (prev, index, value, script)
            if not valid:
                missing_input = True
            if missing_input:
                prev = random.Random(5).randbytes(32)
                ins.append((prev, 0, 100_000, b"\x76\xa9\x14" + w.keys[0][1] + b"\x88\xac"))
            elif parent is not None:
                ptx = Tx.parse(parent)
                v, sc = ptx.vout[vout]
                ins.append((ptx.txid, vout, v, sc))
            elif double_spend is not None:
                other = double_spend
                if isinstance(other, (bytes, bytearray)) and len(other) != 32:
                    otx = Tx.parse(other)
                else:
                    t = unhexh(other) if isinstance(other, str) else bytes(other)
                    otx = self.txstate.mempool.entries[t].tx
                op = otx.vin[0].outpoint
                coin = self._coin(op) or self._spent_coin(op)
                if coin is None:
                    raise ValueError("double_spend: the spent output is unknown")
                ins.append((op[0], op[1], coin[0], coin[1]))
            elif spent_output:
                op, e = self._spent_confirmed_output()
                ins.append((op[0], op[1], e[0], e[1]))
            elif coinbase_height is not None:
                b = chain.at(coinbase_height)
                cbid = sha256d(chain.block_txs(b)[0].raw)
                op = (cbid, 0)
                coin = self._coin(op) or self._spent_coin(op)
                if coin is None:
                    raise ValueError("coinbase of height %d not found" % coinbase_height)
                ins.append((cbid, 0, coin[0], coin[1]))
            else:
                ops = spend if isinstance(spend, list) else [spend] if spend else None
                if ops is None:
                    cand = self.spendable_outpoints(limit=1)
                    if not cand:
                        raise ValueError("no spendable output (mine 101 blocks or more)")
                    ops = cand
                for op in ops:
                    coin = self._coin(op)
                    if coin is None:
                        raise ValueError("outpoint %s:%d is neither confirmed nor in the "
                                         "mempool" % (hexh(op[0]), op[1]))
                    ins.append((op[0], op[1], coin[0], coin[1]))
            total = sum(x[2] for x in ins)
            if outputs is None:
                outputs = [(max(total - fee, 0), w.p2pkh())]
            outputs = list(outputs)
            inputs = [(p, i, v, sc, sequence) for p, i, v, sc in ins]
            corrupt = range(len(inputs)) if bad_signature else ()
            raw = sign_tx(version, inputs, outputs, locktime, w.keyfor, corrupt=corrupt)
            if size is not None and size > len(raw) + 20:
                pad = size - len(raw) - 20
                outputs.append((0, b"\x00\x6a" + push_data(b"\x00" * pad)))
                raw = sign_tx(version, inputs, outputs, locktime, w.keyfor, corrupt=corrupt)
            return raw

    def _spent_coin(self, op):
        """(value, script) of an output spent in an active block (undo data)."""
        for h in range(self.chain.height, 0, -1):
            for o, e in self.chain.at(h).undo[0]:
                if o == op:
                    return e[0], e[1]
        return None

    def _spent_confirmed_output(self):
        """(outpoint, entry) of a wallet output spent in the newest block
        that has one (for confirmed double spends)."""
        w = self.chain.wallet
        for h in range(self.chain.height, 0, -1):
            for op, e in self.chain.at(h).undo[0]:
                if w.keyfor(e[1]) is not None:
                    return op, e
        raise ValueError("no spent wallet output in the chain (generate txs first)")

    # -- observation --------------------------------------------------------
    def connections(self):
        return list(self.conns)

    def received_messages(self, conn=None):
        """[(conn id, command, payload)] over all connections (or one)."""
        out = []
        for c in list(self.conns):
            if conn is not None and c is not conn and c.id != conn:
                continue
            out.extend((c.id, m.command, m.payload) for m in c.received)
        return out

    def wait_for(self, pred, timeout=10.0):
        """Wait until pred() is true; returns its value or raises TimeoutError.
        pred runs without the condition held, so it may take node.lock
        (threads holding the lock notify the condition)."""
        end = time.time() + timeout
        while True:
            v = pred()
            if v:
                return v
            left = end - time.time()
            if left <= 0:
                raise TimeoutError("condition not met within %.1fs" % timeout)
            with self.cond:
                self.cond.wait(min(left, 0.05))

    def wait_for_connection(self, timeout=10.0, handshake=True):
        return self.wait_for(lambda: next((c for c in self.conns if (c.got_verack or not handshake)), None), timeout)

    def wait_for_message(self, command, conn=None, timeout=10.0, count=1):
        def pred():
            ms = [m for c in self.conns if conn is None or c is conn
                  for m in c.received if m.command == command]
            return ms[count - 1] if len(ms) >= count else None
        return self.wait_for(pred, timeout)

    def status(self):
        with self.lock:
            return {
                "port": self.port,
                "network": self.chain.network,
                "height": self.chain.height,
                "tip": self.chain.tip.hash_hex,
                "mempool": len(self.mempool),
                "orphans": len(self.txstate.orphans),
                "nonfinal": len(self.txstate.nonfinal),
                "whitelist": self.whitelist,
                "relay_memory": len(self.relay_map),
                "clock_offset": self.clock_offset,
                "connections": [{"id": c.id, "closed": c.closed, "reason": c.close_reason,
                                 "ua": (c.version or {}).get("user_agent"),
                                 "received": c.commands()[-50:],
                                 "bytes_sent": c.bytes_sent}
                                for c in self.conns],
                "faults": [repr(f) for f in self.faults],
            }
