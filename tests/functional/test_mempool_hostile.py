"""Hostile peers and the mempool (issue 11 F10, issue 13 "Done when", bad input).

conduitd syncs from a well-behaved simulated node and is also connected to
four hostile peers (a minimal node written here), each misbehaving one way
once conduitd relays:

  drop      closes the connection on every message it receives
  flood     announces 600,000 txids it never serves
  wrongtx   answers getdata for the tx it announced with another tx
  junk      sends an unsolicited tx, an unsolicited 10 MB tx, and an
            announced 11 MB tx (above mempool_max_tx_size, the node's
            -maxtxsizepolicy default of 10 MB)

Each also refuses `mempool` (closes the probe) with a user agent holding a
newline and an ANSI escape. Checked: nothing indexed but what the good node
relayed (every stored row hashes to what was asked), each hostile peer
logged by name with its counts, its user agent escaped in conduitd's
mempool WARN, no probe loop, requests to the flooding peer bounded, the
controller's memory bounded.
"""

import hashlib
import os
import random
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_index import create_db, psql  # noqa: E402
from test_reorg import mempool, start, txid, wait_tip, wait_until  # noqa: E402

from tests.simnode.chain import ser_tx  # noqa: E402
from tests.simnode.protocol import (NETWORKS, frame, parse_inv, ser_inv,  # noqa: E402
                                    ser_protoconf, ser_version, sha256d)

MAGIC = NETWORKS["regtest"]["magic"]
UA = "/hostile:1.0/\nFORGED LOG LINE \x1b[31mred/"


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def a_tx(size=0, seed=0):
    """A well-formed tx spending nothing that exists (`size`: about that many bytes)."""
    rnd = random.Random(seed)
    script = b"\x00\x6a" + (b"\x4e" + struct.pack("<I", size) + b"\x00" * size if size else b"")
    return ser_tx([(rnd.randbytes(32), 0, b"\x51", 0xFFFFFFFF)], [(0, script), (1000, b"\x51")])


class Hostile:
    """A listening peer; one thread per connection."""

    def __init__(self, mode):
        self.mode = mode
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))   # listens only once go() is called: conduitd
        self.port = self.srv.getsockname()[1]  # syncs from the good node first
        self.go = threading.Event()      # misbehave from now on (conduitd relays)
        self.stop = threading.Event()
        self.conns = 0
        self.mempool_asked = 0
        self.getdata = []                # txids asked
        self.served = []                 # txids of the txs sent
        self.big = b""
        self.lock = threading.Lock()

    def start(self):
        self.srv.listen(16)
        self.go.set()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        self.srv.settimeout(0.2)
        while not self.stop.is_set():
            try:
                s, _ = self.srv.accept()
            except socket.timeout:
                continue
            with self.lock:
                self.conns += 1
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def send(self, s, cmd, payload=b""):
        s.sendall(frame(MAGIC, cmd, payload))

    def recv_msg(self, s):
        hdr = b""
        while len(hdr) < 24:
            b = s.recv(24 - len(hdr))
            if not b:
                return None, None
            hdr += b
        cmd = hdr[4:16].rstrip(b"\0").decode()
        n = struct.unpack_from("<I", hdr, 16)[0]
        p = b""
        while len(p) < n:
            b = s.recv(min(1 << 20, n - len(p)))
            if not b:
                return None, None
            p += b
        return cmd, p

    def serve(self, s):
        try:
            self._serve(s)
        except OSError:
            pass
        finally:
            s.close()

    def _serve(self, s):
        s.settimeout(0.5)
        announced = False
        syncing = False                  # conduitd's sync connection (not a probe)
        while not self.stop.is_set():
            try:
                cmd, p = self.recv_msg(s)
            except socket.timeout:
                cmd = ""
            if cmd is None:
                return
            if cmd and self.mode == "drop":
                return
            if cmd == "version":
                self.send(s, "version", ser_version(0, random.getrandbits(64), user_agent=UA))
                self.send(s, "verack")
                self.send(s, "protoconf", ser_protoconf())
            elif cmd == "ping":
                self.send(s, "pong", p[:8])
            elif cmd == "getheaders":
                syncing = True
                self.send(s, "headers", b"\x00")
            elif cmd == "mempool":
                with self.lock:
                    self.mempool_asked += 1
                return                  # refused, like a node that does not whitelist us
            elif cmd == "getdata":
                items = [h for t, h in parse_inv(p) if t == 1]
                with self.lock:
                    self.getdata += items
                for h in items:
                    if self.mode == "wrongtx":
                        self.reply_tx(s, a_tx(seed=9))
                    elif self.mode == "junk" and h == sha256d(self.big):
                        self.reply_tx(s, self.big)
            if self.go.is_set() and syncing and not announced:
                announced = True
                self.misbehave(s)

    def reply_tx(self, s, raw):
        with self.lock:
            self.served.append(sha256d(raw))
        self.send(s, "tx", raw)

    def misbehave(self, s):
        if self.mode == "flood":
            rnd = random.Random(3)
            for _ in range(12):
                self.send(s, "inv", ser_inv([(1, rnd.randbytes(32)) for _ in range(50_000)]))
        elif self.mode == "wrongtx":
            self.send(s, "inv", ser_inv([(1, hashlib.sha256(b"asked").digest())]))
        elif self.mode == "junk":
            self.reply_tx(s, a_tx(seed=1))                  # unsolicited
            self.reply_tx(s, a_tx(size=10_000_000, seed=2))  # unsolicited, 10 MB
            self.big = a_tx(size=11_000_000, seed=3)
            self.send(s, "inv", ser_inv([(1, sha256d(self.big))]))


def test_hostile_peers(pg_module, build_dir, simnode_factory, tmp_path):
    pg = pg_module
    node = simnode_factory(generate=110, seed=47)
    peers = {m: Hostile(m) for m in ("drop", "flood", "wrongtx", "junk")}
    ci = create_db(pg, "mmhostile")
    extra = []
    for h in peers.values():
        extra += ["--connect", "127.0.0.1:%d" % h.port]
    d = start(build_dir, tmp_path / "d", node.port, ci, extra)
    try:
        wait_tip(pg, "mmhostile", d, node)
        d.wait_for_log(r"mempool: index at the best tip; relay on", timeout=60)
        for h in peers.values():
            h.start()  # conduitd connects at its next reconnect attempt
        good = [txid(t) for t in node.make_mempool_txs(3)]
        # the junk peer's announced 11 MB tx was asked for and served, then dropped
        j = peers["junk"]
        wait_until(lambda: len(j.served) == 3, d, "junk peer served its txs")
        w = peers["wrongtx"]
        wait_until(lambda: w.served, d, "wrong tx served")
        f = peers["flood"]
        wait_until(lambda: len(f.getdata) > 0, d, "flood answered with getdata")
        wait_until(lambda: mempool(pg, "mmhostile") >= set(good), d, "good txs indexed")
        for pat in (r"WARN .*mempool: peer 127\.0\.0\.1:%d: 1 unsolicited txs" % w.port,
                    r"WARN .*mempool: peer 127\.0\.0\.1:%d: .*1 above mempool_max_tx_size"
                    % j.port):
            d.wait_for_log(pat, timeout=60)
        # each refusing peer: one probe, its user agent escaped in the WARN
        m = d.wait_for_log(r"WARN .*mempool: node 127\.0\.0\.1:%d \(([^)]*)\) refuses" % j.port,
                           timeout=60)
        assert m.group(1) == "/hostile:1.0/\\nFORGED LOG LINE \\x1b[31mred/"  # cd_escape
        time.sleep(5)  # a window for loops to show
        # nothing indexed but the good node's txs; every row hashes to its txid
        assert mempool(pg, "mmhostile") == set(good)
        for raw_hex, h in psql(pg, "mmhostile", "SELECT encode(raw, 'hex'), cd_txid_hex(tx_hash) "
                                                "FROM mempool_tx;"):
            assert txid(bytes.fromhex(raw_hex)) == h
        # requests to the flooding peer are bounded (600,000 announced)
        assert 0 < len(f.getdata) <= 16384, len(f.getdata)
        # no probe loop: at most one `mempool` per hostile peer; the dropping peer,
        # which never completes a handshake, is probed with back-off
        for h in peers.values():
            assert h.mempool_asked <= 1, (h.mode, h.mempool_asked)
        assert peers["drop"].mempool_asked == 0
        # memory bounded: a 10 MB unsolicited and an 11 MB tx, 600,000 invs
        # (release build: ~30 MB peak measured; the sanitizers' shadow memory costs more)
        limit = 160 * 1024 * (4 if "asan" in build_dir else 1)
        assert rss_kb(d.proc.pid) < limit, rss_kb(d.proc.pid)
        assert d.proc.poll() is None
    finally:
        d.stop()
        for h in peers.values():
            h.stop.set()
