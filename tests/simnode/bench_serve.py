"""Measure how fast the simulated node serves blocks on loopback.

    /usr/bin/python3 -m tests.simnode.bench_serve [--size 1000000000] [--txs 100000] [--repeat 3]

Starts the simulator as a subprocess (`python3 -m tests.simnode`) so the
receiving side does not share its GIL, then times `getdata` -> full `block`
received (payload read into a reused buffer and discarded) for:
  1. a generated big block streamed from its tx pattern (no disk, no cache)
  2. the same kind of block cached to a temp file and served with sendfile
  3. the real mainnet block 413567 (1 MB file, sendfile), 200 copies per getdata
Prints MB/s per run.  A figure, not a test.
"""
import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import hashlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAGIC = bytes.fromhex("dab5bffa")


def dsha(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def send(s, cmd, p=b""):
    s.sendall(MAGIC + cmd.encode().ljust(12, b"\0") + struct.pack("<I", len(p)) + dsha(p)[:4] + p)


class Rx:
    def __init__(self, s):
        self.s = s
        self.buf = bytearray(16 << 20)
        self.mv = memoryview(self.buf)

    def exact(self, n, keep=True):
        out = bytearray() if keep else None
        while n:
            k = self.s.recv_into(self.mv, min(n, len(self.buf)))
            if not k:
                raise EOFError
            if keep:
                out += self.mv[:k]
            n -= k
        return out

    def msg(self, keep=True):
        h = self.exact(24)
        cmd = bytes(h[4:16]).rstrip(b"\0").decode()
        n = struct.unpack_from("<I", h, 16)[0]
        if cmd == "extmsg":
            e = self.exact(20)
            cmd = bytes(e[:12]).rstrip(b"\0").decode()
            n = struct.unpack_from("<Q", e, 12)[0]
        if cmd == "block" and not keep:
            t0 = time.perf_counter()
            self.exact(n, keep=False)
            return cmd, n, time.perf_counter() - t0
        p = self.exact(n)
        if cmd == "ping":
            send(self.s, "pong", bytes(p))
        return cmd, bytes(p), None


def start_node(*args):
    p = subprocess.Popen([sys.executable, "-m", "tests.simnode", "--no-stdin", "--quiet"] + list(args),
                         cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    t0 = time.time()
    for line in p.stdout:
        if line.startswith("SIMNODE_PORT="):
            return p, int(line.split("=")[1]), time.time() - t0
    raise RuntimeError("simnode did not start")


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx = Rx(s)
    addr = b"\0" * 26
    ver = (struct.pack("<iQq", 70016, 0, int(time.time())) + addr + addr + os.urandom(8) +
           b"\x0b/bench:0.1/" + struct.pack("<i", 0) + b"\x00")
    send(s, "version", ver)
    while rx.msg()[0] != "verack":
        pass
    send(s, "verack")
    return s, rx


def tip_hashes(s, rx, n):
    genesis = bytes.fromhex("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206")[::-1]
    send(s, "getheaders", struct.pack("<I", 70016) + b"\x01" + genesis + b"\0" * 32)
    while True:
        cmd, p, _ = rx.msg()
        if cmd == "headers":
            break
    cnt = p[0]
    hs = [dsha(p[1 + 81 * i:81 + 81 * i]) for i in range(cnt)]
    return hs[-n:]


def fetch(s, rx, h):
    send(s, "getdata", b"\x01" + struct.pack("<I", 2) + h)
    t0 = time.perf_counter()
    while True:
        cmd, n, dt = rx.msg(keep=False)
        if cmd == "block":
            return n, time.perf_counter() - t0


def fetch_many(s, rx, h, k):
    """k copies of the same block in one getdata; returns (bytes, seconds)."""
    send(s, "getdata", bytes([k]) + (struct.pack("<I", 2) + h) * k)
    t0 = time.perf_counter()
    total = got = 0
    while got < k:
        cmd, n, dt = rx.msg(keep=False)
        if cmd == "block":
            total += n
            got += 1
    return total, time.perf_counter() - t0


def bench(label, args, repeat, which=None, many=0):
    p, port, startup = start_node(*args)
    try:
        s, rx = connect(port)
        if which is None:
            h = tip_hashes(s, rx, 1)[0]
        else:
            h = which
        print("%-34s node ready in %.1fs (generation + checksum pass)" % (label, startup))
        rates = []
        for i in range(repeat):
            n, dt = fetch_many(s, rx, h, many) if many else fetch(s, rx, h)
            rates.append(n / dt / 1e6)
            print("   run %d: %d bytes in %.3fs = %.0f MB/s" % (i + 1, n, dt, n / dt / 1e6))
        s.close()
        return rates
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1_000_000_000)
    ap.add_argument("--txs", type=int, default=None, help="txs in the big block (default size/4000)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    txs = a.txs or max(2, a.size // 4000)
    common = ["--generate", "1", "--big-blocks", "1", "--block-size", str(a.size),
              "--txs-per-block", str(txs)]
    r1 = bench("streamed pattern block (%d MB, %d txs)" % (a.size // 10**6, txs), common, a.repeat)
    with tempfile.TemporaryDirectory(prefix="simnode-bench-") as d:
        r2 = bench("file-cached block via sendfile", common + ["--cache-dir", d], a.repeat)
    mb = os.path.join(os.path.dirname(ROOT), "shared", "data", "mainnet", "block413567.raw")
    r3 = []
    if os.path.exists(mb):
        h = bytes.fromhex("0000000000000000025aff8be8a55df8f89c77296db6198f272d6577325d4069")[::-1]
        r3 = bench("mainnet block 413567 file x200", ["--block-file", mb], a.repeat, which=h, many=200)
    print("best MB/s: streamed %.0f, sendfile %.0f, 1MB file %.0f" % (
        max(r1), max(r2), max(r3) if r3 else 0))


if __name__ == "__main__":
    main()
