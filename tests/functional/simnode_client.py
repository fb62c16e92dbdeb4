"""A deliberately tiny, independent p2p client used by test_simnode.py to
check the simulated node (plain sockets; shares no code with tests/simnode).
"""
import hashlib
import os
import socket
import struct
import time

REGTEST_MAGIC = bytes.fromhex("dab5bffa")


def dsha(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def varint(n):
    if n < 253:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfd" + n.to_bytes(2, "little")
    if n < 1 << 32:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def read_varint(b, i):
    c = b[i]
    if c < 253:
        return c, i + 1
    w = {253: 2, 254: 4, 255: 8}[c]
    return int.from_bytes(b[i + 1:i + 1 + w], "little"), i + 1 + w


class Client:
    def __init__(self, port, magic=REGTEST_MAGIC, host="127.0.0.1", timeout=20):
        self.magic = magic
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.log = []            # (command, payload) received, in order
        self.last_header = None  # raw header of the last message

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- framing -------------------------------------------------------
    def send(self, cmd, payload=b""):
        h = (self.magic + cmd.encode().ljust(12, b"\0") +
             struct.pack("<I", len(payload)) + dsha(payload)[:4])
        self.sock.sendall(h + payload)

    def send_raw(self, data):
        self.sock.sendall(data)

    def _exact(self, n):
        buf = bytearray(n)
        mv = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(mv[got:], min(n - got, 16 << 20))
            if k == 0:
                raise EOFError("connection closed by node after %d/%d bytes" % (got, n))
            got += k
        return bytes(buf)

    def recv(self, check_checksum=True):
        """Returns (command, payload, info) with info = {'ext': bool,
        'checksum_ok': bool, 'magic': bytes}."""
        h = self._exact(24)
        info = {"magic": h[:4], "ext": False}
        cmd = h[4:16].rstrip(b"\0").decode("latin-1")
        ln = struct.unpack("<I", h[16:20])[0]
        ck = h[20:24]
        hdr = h
        if cmd == "extmsg":
            e = self._exact(20)
            hdr += e
            cmd = e[:12].rstrip(b"\0").decode("latin-1")
            ln = struct.unpack("<Q", e[12:20])[0]
            info["ext"] = True
            info["ext_fields"] = (h[16:20], h[20:24])
        info["length"] = ln
        self.last_header = hdr
        if info["magic"] != self.magic:
            return cmd, b"", info
        p = self._exact(ln)
        info["checksum_ok"] = info["ext"] or dsha(p)[:4] == ck
        self.log.append((cmd, p))
        return cmd, p, info

    def wait(self, want, timeout=20, answer_pings=True):
        """Read until a message whose command is in want (str or tuple)."""
        if isinstance(want, str):
            want = (want,)
        end = time.time() + timeout
        while True:
            self.sock.settimeout(max(0.1, end - time.time()))
            cmd, p, info = self.recv()
            if answer_pings and cmd == "ping":
                self.send("pong", p)
            if cmd in want:
                return cmd, p, info

    def no_message(self, want, seconds=1.0):
        """True if no message in want arrives within seconds."""
        try:
            self.wait(want, timeout=seconds)
            return False
        except socket.timeout:
            return True

    # ---- payloads ------------------------------------------------------
    def version_payload(self, ua="/conduit-test:0.1/", version=70016, relay=1):
        addr = struct.pack("<Q", 0) + b"\0" * 10 + b"\xff\xff" + bytes([127, 0, 0, 1]) + struct.pack(">H", 18444)
        return (struct.pack("<iQq", version, 0, int(time.time())) + addr +
                b"\0" * 26 + os.urandom(8) + varint(len(ua)) + ua.encode() +
                struct.pack("<i", 0) + bytes([relay]))

    def handshake(self, ua="/conduit-test:0.1/", sendheaders=True, protoconf=True, relay=1):
        self.send("version", self.version_payload(ua, relay=relay))
        seen = []
        while True:
            cmd, p, _ = self.recv()
            seen.append(cmd)
            if cmd == "version":
                self.node_version = p
            if cmd == "verack":
                break
        self.send("verack")
        if protoconf:
            self.send("protoconf", b"\x01" + struct.pack("<I", 2 * 1024 * 1024))
        if sendheaders:
            self.send("sendheaders")
        return seen

    def getheaders(self, locator, stop=b"\0" * 32):
        self.send("getheaders", struct.pack("<I", 70016) + varint(len(locator)) +
                  b"".join(locator) + stop)
        _, p, _ = self.wait("headers")
        return parse_headers(p)

    def getdata(self, items):
        self.send("getdata", varint(len(items)) +
                  b"".join(struct.pack("<I", t) + h for t, h in items))

    def get_block(self, h, timeout=60):
        self.getdata([(2, h)])
        _, p, info = self.wait("block", timeout=timeout)
        return p, info


def parse_headers(p):
    n, i = read_varint(p, 0)
    out = []
    for _ in range(n):
        out.append(p[i:i + 80])
        assert p[i + 80] == 0, "tx count byte after header must be 0"
        i += 81
    assert i == len(p)
    return out


def parse_inv(p):
    n, i = read_varint(p, 0)
    return [(struct.unpack("<I", p[i + 36 * k:i + 36 * k + 4])[0], p[i + 36 * k + 4:i + 36 * k + 36])
            for k in range(n)]


def parse_reject(p):
    """(message, code, reason, hash or None) of a `reject` payload."""
    n, i = read_varint(p, 0)
    msg = p[i:i + n].decode("latin-1")
    i += n
    code = p[i]
    n, i = read_varint(p, i + 1)
    reason = p[i:i + n].decode("latin-1")
    i += n
    return msg, code, reason, (p[i:i + 32] if len(p) >= i + 32 else None)


def collect(client, seconds=1.0):
    """Every message that arrives within `seconds` (pings answered), as
    [(command, payload)]; stops early if the node closes the connection
    (then the last item is ('<closed>', b''))."""
    out = []
    end = time.time() + seconds
    while True:
        left = end - time.time()
        if left <= 0:
            return out
        client.sock.settimeout(left)
        try:
            cmd, p, _ = client.recv()
        except socket.timeout:
            return out
        except (EOFError, ConnectionError):
            out.append(("<closed>", b""))
            return out
        if cmd == "ping":
            client.send("pong", p)
        out.append((cmd, p))
