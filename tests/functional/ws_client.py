"""The one websocket client (RFC 6455) of the tests and benchmarks: standard library only.

Both websocket endpoints of the daemon use it: ConduitDB's `/ws` (binary spend records and
JSON text notices, tests/functional/test_conduitdb_notify.py) and the event stream's `/v1/ws`
(JSON text messages both ways, tests/functional/test_events_stream.py), and the benches over
them (bench/http/). It is deliberately low level where the tests need to misbehave: `frame()`
builds any frame (unmasked, reserved opcodes, not final) for `sock.sendall`, and
`WS(..., handshake=False)` + `handshake(headers)` sends a handshake with headers changed or
left out (None).

Reading: `recv_frame()` gives every frame but pings (answered), `recv_message()` skips pongs
and turns the server's close frame into ("close", (code, reason)), `recv_json()` the next text
message as a dict. A timeout gives None from the first two and TimeoutError from recv_json.
"""

import base64
import hashlib
import json
import os
import select
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class WS:
    """A client connection to `path` (e.g. "/ws", "/v1/ws?...") on 127.0.0.1:port.

    rcvbuf sets SO_RCVBUF before connecting (a small window: a slow reader); timeout is the
    default of every read (seconds); handshake=False leaves the upgrade to handshake()."""

    def __init__(self, port, path, rcvbuf=None, handshake=True, timeout=60):
        self.port, self.path, self.timeout = port, path, timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.closed = None  # (code, reason) of the server's close frame, once seen
        if handshake:
            st, head = self.handshake()
            assert st == 101, head

    def handshake(self, headers=None):
        """Sends the upgrade request (headers override or, with None, drop the defaults).
        Returns (status, response head); a 101 has had its Sec-WebSocket-Accept checked."""
        key = base64.b64encode(os.urandom(16)).decode()
        h = {"Host": "127.0.0.1:%d" % self.port, "Upgrade": "websocket",
             "Connection": "Upgrade", "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
        h.update(headers or {})
        req = "GET %s HTTP/1.1\r\n" % self.path + "".join(
            "%s: %s\r\n" % (k, v) for k, v in h.items() if v is not None) + "\r\n"
        self.sock.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during the handshake: %r" % self.buf
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        head = head.decode()
        lines = head.split("\r\n")
        st = int(lines[0].split()[1])
        if st == 101:
            want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            hdrs = {k.strip().lower(): v.strip()
                    for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            assert hdrs.get("sec-websocket-accept") == want, head
        return st, head

    def _need(self, n, deadline):
        """At least n bytes buffered: True, or False at the deadline."""
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # poll, not select: a test may hold over 1024 descriptors (1000 websockets)
            p = select.poll()
            p.register(self.sock, select.POLLIN)
            if not p.poll(left * 1000):
                return False
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        return True

    @staticmethod
    def frame(op, payload, fin=True, mask=True):
        """The bytes of one frame (a client's frames are masked unless mask=False)."""
        b0 = (0x80 if fin else 0) | op
        n = len(payload)
        mb = 0x80 if mask else 0
        if n < 126:
            hdr = struct.pack("!BB", b0, mb | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, mb | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, mb | 127, n)
        if not mask:
            return hdr + payload
        m = os.urandom(4)
        return hdr + m + bytes(c ^ m[i % 4] for i, c in enumerate(payload))

    def send_frame(self, op, payload):
        self.sock.sendall(self.frame(op, payload))

    def send_json(self, obj):
        self.send_frame(OP_TEXT, json.dumps(obj).encode())

    def recv_frame(self, timeout=None):
        """(opcode, payload) of the next frame but pings, which are answered; None after
        timeout seconds (default: the connection's) without a whole frame."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if not self._need(2, deadline):
                return None
            b0, b1 = self.buf[0], self.buf[1]
            assert not b1 & 0x80, "a server frame must not be masked"
            n, off = b1 & 0x7F, 2
            if n == 126:
                if not self._need(4, deadline):
                    return None
                n, off = struct.unpack_from("!H", self.buf, 2)[0], 4
            elif n == 127:
                if not self._need(10, deadline):
                    return None
                n, off = struct.unpack_from("!Q", self.buf, 2)[0], 10
            if not self._need(off + n, deadline):
                return None
            payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
            op = b0 & 0x0F
            self.last_fin = bool(b0 & 0x80)
            if op == OP_PING:
                self.send_frame(OP_PONG, payload)
                continue
            return op, payload

    def recv_message(self, timeout=None):
        """The next data message (opcode, payload), skipping pongs; ("close", (code, reason))
        for the server's close frame; None on timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            m = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if m is None:
                return None
            op, payload = m
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.closed = (code, payload[2:].decode())
                return ("close", self.closed)
            assert self.last_fin, "fragmented messages are not expected"
            return op, payload

    def recv_json(self, timeout=None):
        """The next text message as a dict, or ("close", code, reason) for a close frame
        (code None when it carried none). Raises TimeoutError after timeout seconds."""
        m = self.recv_frame(timeout)
        if m is None:
            raise TimeoutError("no websocket frame in time")
        op, p = m
        if op == OP_CLOSE:
            code = struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None
            return ("close", code, p[2:].decode())
        assert op == OP_TEXT, op
        return json.loads(p)

    def close(self):
        """Sends a close frame (1000) if the socket still takes it, then closes."""
        try:
            self.send_frame(OP_CLOSE, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()
