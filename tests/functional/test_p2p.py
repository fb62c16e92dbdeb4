"""libconduit-p2p against the simulated BSV node (tests/simnode).

The library is driven two ways: through `conduit-cli` (headers, getblock,
broadcast, ping) and through tests/unit/p2p/cp2p_probe, a scriptable client
that prints one line per library event and takes commands on stdin, so a
test can run several peers at once and see exactly what the library
reported (disconnect reasons, chunks, sink back-pressure).

Run: CD_BUILD_DIR=build-p2p /usr/bin/python3 -m pytest tests/functional/test_p2p.py
"""
import os
import pathlib
import queue
import re
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simnode_fixtures import SHARED, simnode_factory  # noqa: E402,F401

from tests.simnode.protocol import hexh, parse_block, parse_version, sha256d  # noqa: E402

CHAIN116 = SHARED / "data/regtest/blockchain_116_7c9cd2"
MAINNET = SHARED / "data/mainnet"
BIG_HASH = "0000000000000000025aff8be8a55df8f89c77296db6198f272d6577325d4069"


def cli(build_dir, *args, timeout=60):
    exe = os.path.join(build_dir, "src/daemon/conduit-cli")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


class Probe:
    """cp2p_probe in a subprocess; events collected by a reader thread."""

    def __init__(self, build_dir, ports, *args):
        exe = os.path.join(build_dir, "tests/unit/p2p/cp2p_probe")
        cmd = [exe, "--regtest"]
        for p in ports:
            cmd += ["--connect", "127.0.0.1:%d" % p]
        cmd += [str(a) for a in args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines = []
        self.q = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            self.q.put(line)

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, pattern, timeout=20):
        """Next event line (after earlier expects) matching pattern."""
        rx = re.compile(pattern)
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                raise AssertionError("no event /%s/ within %ss; events: %s; stderr: %s" % (
                    pattern, timeout, self.lines[-30:], "".join(self.stderr[-20:])))
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            m = rx.search(line)
            if m:
                return m

    def close(self):
        try:
            self.send("quit")
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def probes(build_dir):
    made = []

    def make(ports, *args):
        p = Probe(build_dir, ports, *args)
        made.append(p)
        return p
    yield make
    for p in made:
        assert p.close() == 0, "probe crashed: %s" % "".join(p.stderr[-20:])


def chain_hashes():
    return (CHAIN116 / "headers.txt").read_text().split()


# ---------------------------------------------------------------------------

def test_handshake_sequence_as_the_node_sees_it(build_dir, simnode_factory):
    node = simnode_factory(chain_dir=CHAIN116)
    r = cli(build_dir, "ping", "--regtest", "--connect", "127.0.0.1:%d" % node.port,
            "--count", "2")
    assert r.returncode == 0, r.stderr
    assert "pong from" in r.stdout
    conn = node.wait_for(lambda: next((c for c in node.conns if c.got_verack), None))
    node.wait_for(lambda: conn.closed)
    cmds = conn.commands()
    # version first, then verack, protoconf, sendheaders in that order
    assert cmds[:4] == ["version", "verack", "protoconf", "sendheaders"], cmds
    assert "pong" in cmds            # the node's ping was answered
    assert cmds.count("ping") == 2   # ours
    v = parse_version(conn.received[0].payload)
    assert v["version"] == 70016
    assert v["services"] == 0
    ua = v["user_agent"].lower()
    assert not any(s in ua for s in ("abc", "cash", "bch"))
    assert conn.protoconf is not None
    assert conn.max_recv == 2 * 1024 * 1024
    assert conn.violations() == []
    assert conn.score == 0


def test_header_sync_verifies_every_header(build_dir, simnode_factory, tmp_path):
    node = simnode_factory(chain_dir=CHAIN116)
    out = tmp_path / "headers.txt"
    r = cli(build_dir, "headers", "--regtest", "--connect", "127.0.0.1:%d" % node.port,
            "--out", out)
    assert r.returncode == 0, r.stderr
    assert "synced 116 headers" in r.stderr
    assert "proof of work valid" in r.stderr
    got = [line.split() for line in out.read_text().splitlines()]
    assert [int(h) for h, _ in got] == list(range(117))
    assert [x for _, x in got] == chain_hashes()


def test_header_sync_more_than_2000(build_dir, simnode_factory):
    node = simnode_factory(generate=4100, seed=2)
    r = cli(build_dir, "headers", "--regtest", "--connect", "127.0.0.1:%d" % node.port,
            "--quiet", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "synced 4100 headers" in r.stderr
    assert node.chain.tip.hash_hex in r.stderr
    # three getheaders: 2000 + 2000 + 100
    conn = node.conns[0]
    assert conn.commands().count("getheaders") == 3


def test_download_every_block_byte_identical(build_dir, simnode_factory, tmp_path):
    node = simnode_factory(chain_dir=CHAIN116)
    for h in chain_hashes():
        out = tmp_path / (h + ".blk")
        r = cli(build_dir, "getblock", h, "--regtest", "--connect",
                "127.0.0.1:%d" % node.port, "--out", out)
        assert r.returncode == 0, (h, r.stderr)
        assert out.read_bytes() == (CHAIN116 / h).read_bytes(), h


def test_blocks_from_several_peers(probes, simnode_factory, tmp_path):
    nodes = [simnode_factory(chain_dir=CHAIN116) for _ in range(3)]
    p = probes([n.port for n in nodes], "--outdir", tmp_path)
    for i in range(3):
        p.expect(r"^READY \d ")
    hashes = chain_hashes()
    for k, h in enumerate(hashes):
        p.send("getblock %d %s" % (k % 3, h))
    for _ in hashes:
        p.expect(r"^BLOCK ")
    for h in hashes:
        assert (tmp_path / (h + ".blk")).read_bytes() == (CHAIN116 / h).read_bytes()
    served = [cid for n in nodes for (cid, _h, _b) in n.served]
    assert len(served) == len(hashes)
    assert all(len(n.served) == 39 for n in nodes)  # round-robin 117 / 3


def read_offsets():
    return [int(x) for x in (MAINNET / "block413567.tx-offsets").read_text().split()]


def test_large_block_arrives_in_chunks_with_real_offsets(probes, simnode_factory, tmp_path):
    node = simnode_factory(chain_dir=CHAIN116)
    node.add_extra_block(str(MAINNET / "block413567.raw"))
    p = probes([node.port], "--chunk", 65536, "--outdir", tmp_path)
    p.expect(r"^READY 0 ")
    p.send("getblock 0 " + BIG_HASH)
    p.expect(r"^CHUNK 0 %s \d+ \d+ \d+ \d+ 1$" % BIG_HASH)
    chunks = [ln.split() for ln in p.lines if ln.startswith("CHUNK ")]
    assert len(chunks) >= 14                       # ~1 MB / 64 KiB
    offs = [int(x) for x in (tmp_path / (BIG_HASH + ".offsets")).read_text().split()]
    assert offs == read_offsets()
    raw = (MAINNET / "block413567.raw").read_bytes()
    assert (tmp_path / (BIG_HASH + ".blk")).read_bytes() == raw
    # chunks are contiguous and each ends on a tx boundary
    pos = 0
    bounds = set(read_offsets()) | {len(raw)}
    for c in chunks:
        off, ln = int(c[4]), int(c[5])
        assert off == pos
        pos += ln
        assert pos in bounds
    assert pos == len(raw)


def test_generated_block_over_threshold_chunks(probes, simnode_factory, tmp_path):
    node = simnode_factory(generate=3, txs_per_block=400, seed=5)
    tip = node.chain.tip
    raw = b"".join(bytes(c) for c in tip.iter_chunks())
    assert len(raw) > 65536
    p = probes([node.port], "--chunk", 16384, "--outdir", tmp_path)
    p.expect(r"^READY 0 ")
    p.send("getblock 0 " + tip.hash_hex)
    p.expect(r"^CHUNK 0 %s \d+ \d+ \d+ \d+ 1$" % tip.hash_hex)
    assert (tmp_path / (tip.hash_hex + ".blk")).read_bytes() == raw
    offs = [int(x) for x in (tmp_path / (tip.hash_hex + ".offsets")).read_text().split()]
    assert len(offs) == 401
    # the independent parser of the simulator agrees on every offset
    real = [start for (start, _end, _i, _o) in parse_block(raw)[1]]
    assert offs == real


def test_sink_receives_into_caller_memory_with_backpressure(probes, simnode_factory, tmp_path):
    node = simnode_factory(chain_dir=CHAIN116)
    node.add_extra_block(str(MAINNET / "block413567.raw"))
    p = probes([node.port], "--sink", 65536, "--outdir", tmp_path)
    p.expect(r"^READY 0 ")
    p.send("getblock 0 " + BIG_HASH)
    m = p.expect(r"^SINK 0 (\d) (\w+) (\d+) (\d+) (\S+)")
    assert m.group(1) == "1" and m.group(2) == BIG_HASH
    assert int(m.group(3)) == 999887
    assert int(m.group(4)) > 0            # the reader stopped on a full sink
    assert (tmp_path / (BIG_HASH + ".blk")).read_bytes() == \
        (MAINNET / "block413567.raw").read_bytes()


def test_extmsg_block(probes, simnode_factory, tmp_path):
    node = simnode_factory(chain_dir=CHAIN116, force_extmsg=True)
    h = chain_hashes()[-1]
    p = probes([node.port], "--outdir", tmp_path)
    p.expect(r"^READY 0 ")
    p.send("getblock 0 " + h)
    p.expect(r"^BLOCK 0 %s " % h)
    assert (tmp_path / (h + ".blk")).read_bytes() == (CHAIN116 / h).read_bytes()


def test_broadcast_seen_duplicate_and_rejected(build_dir, simnode_factory):
    """The CLI says what the node did (issue 13 §3; more cases in
    test_p2p_broadcast.py). Before: "accepted" after 5 s of silence."""
    node = simnode_factory(generate=110, seed=3)
    good = node.make_tx()
    port = "127.0.0.1:%d" % node.port
    r = cli(build_dir, "broadcast", good.hex(), "--regtest", "--connect", port,
            "--timeout", "10")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("SEEN_ON_NETWORK " + hexh(sha256d(good)) + " via "), r.stdout
    assert sha256d(good) in node.mempool
    # the same tx again: the node is silent (already known) and relays
    # nothing: not "seen" (the node's silence is not an acceptance)
    r = cli(build_dir, "broadcast", good.hex(), "--regtest", "--connect", port,
            "--timeout", "1.5")
    assert r.returncode == 4 and r.stdout.startswith("TIMEOUT "), r.stdout
    # the node rejects a bad signature (0x10, then drops the sending
    # connection: ban score 100; the CLI's own connection is not it)
    bad = node.make_tx(bad_signature=True)
    r = cli(build_dir, "broadcast", bad.hex(), "--regtest", "--connect", port,
            "--timeout", "10")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("REJECTED " + hexh(sha256d(bad)) + " code 0x10"), r.stdout
    assert sha256d(bad) not in node.mempool


HEADER_FAULT_ERRORS = {
    "bad_pow_headers": "fails proof of work",
    "unconnecting_headers": "does not connect",
}


@pytest.mark.parametrize("mode", sorted(HEADER_FAULT_ERRORS))
def test_header_faults_fail_verification(build_dir, simnode_factory, mode):
    node = simnode_factory(chain_dir=CHAIN116)
    node.misbehave(mode, on="getheaders")
    r = cli(build_dir, "headers", "--regtest", "--connect", "127.0.0.1:%d" % node.port,
            "--quiet")
    assert r.returncode == 1
    assert HEADER_FAULT_ERRORS[mode] in r.stderr, r.stderr


# mode -> (how to trigger, accepted disconnect reasons)
WIRE_FAULTS = {
    "bad_checksum": ("now", {"bad-checksum"}),
    "wrong_magic": ("now", {"bad-magic"}),
    "oversize_length": ("now", {"oversize"}),
    # on="now" the simulator queues its close before the truncated bytes, so
    # nothing is sent: truncate a real reply instead
    "truncated": ("headers", {"truncated"}),
    "garbage": ("now", {"bad-magic", "bad-command"}),
    "too_many_headers": ("getheaders", {"malformed"}),
    "stall_mid_block": ("block", {"stalled"}),
    "disconnect_mid_block": ("block", {"truncated"}),
    "disconnect": ("now", {"eof"}),
}


@pytest.mark.parametrize("mode", sorted(WIRE_FAULTS))
def test_misbehaviour_drops_only_that_peer(probes, simnode_factory, mode):
    bad = simnode_factory(chain_dir=CHAIN116)
    good = simnode_factory(chain_dir=CHAIN116)
    # misbehaviour bans the address (from --ban-ms, doubling): short here
    p = probes([bad.port, good.port], "--stall-ms", 1000, "--reconnect-ms", 200,
               "--ban-ms", 200)
    p.expect(r"^READY [01] ")
    p.expect(r"^READY [01] ")
    hashes = chain_hashes()
    trig, reasons = WIRE_FAULTS[mode]
    if trig == "now":
        bad.misbehave(mode)
    elif trig == "getheaders":
        bad.misbehave(mode, on="getheaders")
        p.send("getheaders 0 " + hashes[0])
    elif trig == "headers":
        bad.misbehave(mode, on="headers")
        p.send("getheaders 0 " + hashes[0])
    else:
        bad.misbehave(mode, on="block", fraction=0.5)
        p.send("getblock 0 " + hashes[-1])
    m = p.expect(r"^DISCONNECT 0 (\S+) ")
    assert m.group(1) in reasons, p.lines
    if trig == "block":  # nothing half-delivered as a block
        assert not any(ln.startswith("BLOCK 0") for ln in p.lines)
    # the other peer keeps working
    p.send("getheaders 1 " + hashes[0])
    p.expect(r"^HEADERS 1 116 ")
    p.send("getblock 1 " + hashes[-1])
    p.expect(r"^BLOCK 1 %s " % hashes[-1])
    assert not any(ln.startswith("DISCONNECT 1") for ln in p.lines)
    assert all(c.violations() == [] for c in good.conns)
    # and the bad one comes back (after its back-off or ban)
    p.expect(r"^READY 0 ", timeout=20)


def test_unsolicited_block_is_delivered_not_punished(probes, simnode_factory):
    node = simnode_factory(chain_dir=CHAIN116)
    p = probes([node.port])
    p.expect(r"^READY 0 ")
    node.misbehave("unsolicited_block")
    p.expect(r"^BLOCK 0 %s " % chain_hashes()[-1])
    assert not any(ln.startswith("DISCONNECT") for ln in p.lines)


def test_bad_merkle_block_is_delivered_as_received(probes, simnode_factory, tmp_path):
    """The library frames and checksums; merkle validation belongs to the
    consumer (the daemon). The mutated block arrives intact as sent."""
    node = simnode_factory(chain_dir=CHAIN116)
    h = chain_hashes()[-1]
    node.misbehave("bad_merkle_block", on="block")
    p = probes([node.port], "--outdir", tmp_path)
    p.expect(r"^READY 0 ")
    p.send("getblock 0 " + h)
    p.expect(r"^BLOCK 0 %s " % h)
    got = (tmp_path / (h + ".blk")).read_bytes()
    assert got != (CHAIN116 / h).read_bytes()
    assert got[:80] == (CHAIN116 / h).read_bytes()[:80]


@pytest.mark.parametrize("mode,how", [
    ("disconnect_mid_block", "chunks"), ("disconnect_mid_block", "sink"),
    ("stall_mid_block", "chunks"), ("stall_mid_block", "sink"),
])
def test_block_cut_short_in_chunk_and_sink_modes(probes, simnode_factory, mode, how):
    """A large block cut short is reported as aborted (chunks) or ended with
    ok=0 (sink) with the reason, never as a complete block."""
    node = simnode_factory(chain_dir=CHAIN116)
    node.add_extra_block(str(MAINNET / "block413567.raw"))
    args = ["--chunk", 65536] if how == "chunks" else ["--sink", 65536]
    p = probes([node.port], "--stall-ms", 1000, "--no-reconnect", *args)
    p.expect(r"^READY 0 ")
    node.misbehave(mode, on="block", fraction=0.5)
    p.send("getblock 0 " + BIG_HASH)
    # a peer closing mid-block ends our read with EOF ("truncated") or, when it
    # still had unread bytes of ours (a ping), with a reset ("io-error"): the
    # kernel decides, both are the peer cutting the block short
    want = "(?:truncated|io-error)" if mode == "disconnect_mid_block" else "stalled"
    if how == "chunks":
        p.expect(r"^ABORT 0 %s %s$" % (BIG_HASH, want))
        assert not any(ln.startswith("CHUNK") and ln.endswith(" 1") for ln in p.lines)
    else:
        p.expect(r"^SINK 0 0 %s \d+ \d+ %s$" % (BIG_HASH, want))
    p.expect(r"^DISCONNECT 0 %s " % want)


def test_slow_block_is_not_a_stall(probes, simnode_factory, tmp_path):
    """A block trickling in (gaps well under the stall timeout, total time far
    above it) is delivered; only silence counts as a stall."""
    node = simnode_factory(chain_dir=CHAIN116)
    h = chain_hashes()[-1]                       # 132 kB
    node.misbehave("slow_block", on="block", rate=50000)   # ~2.6 s in 5 kB steps
    p = probes([node.port], "--stall-ms", 1000, "--outdir", tmp_path)
    p.expect(r"^READY 0 ")
    p.send("getblock 0 " + h)
    p.expect(r"^BLOCK 0 %s " % h, timeout=30)
    assert (tmp_path / (h + ".blk")).read_bytes() == (CHAIN116 / h).read_bytes()
    assert not any(ln.startswith("DISCONNECT") for ln in p.lines)


@pytest.mark.parametrize("chunk_kb", [0, 64])
def test_cli_getblock_large_block(build_dir, simnode_factory, tmp_path, chunk_kb):
    """conduit-cli getblock writes a ~1 MB block byte-identical, whole
    (default threshold) or assembled from 64 KiB chunks."""
    node = simnode_factory(chain_dir=CHAIN116)
    node.add_extra_block(str(MAINNET / "block413567.raw"))
    out = tmp_path / "b.raw"
    args = ["getblock", BIG_HASH, "--regtest", "--connect", "127.0.0.1:%d" % node.port,
            "--out", out]
    if chunk_kb:
        args += ["--chunk-kb", chunk_kb]
    r = cli(build_dir, *args)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (MAINNET / "block413567.raw").read_bytes()
    if chunk_kb:
        assert "999887 bytes 1557 txs" in r.stdout


def test_cli_getblock_unknown_block_times_out(build_dir, simnode_factory, tmp_path):
    node = simnode_factory(chain_dir=CHAIN116)
    out = tmp_path / "none.raw"
    r = cli(build_dir, "getblock", "11" * 32, "--regtest", "--connect",
            "127.0.0.1:%d" % node.port, "--out", out, "--timeout", "1.5")
    assert r.returncode == 1
    assert "timed out" in r.stderr
    assert not out.exists()


def test_cli_unreachable_node(build_dir):
    r = cli(build_dir, "ping", "--regtest", "--connect", "127.0.0.1:1", "--timeout", "5")
    assert r.returncode == 1
    assert "connect-failed" in r.stderr


def test_relay_inv_tx_notfound_addr(probes, simnode_factory):
    """With relay=1 the node announces mempool txs (inv); getdata fetches them
    (tx, txid checked by the library), unknown txids give notfound, getaddr
    gives addr."""
    node = simnode_factory(generate=110, seed=6)
    p = probes([node.port], "--relay")
    p.expect(r"^READY 0 ")
    node.wait_for(lambda: any(c.got_verack for c in node.conns))
    raws = node.make_mempool_txs(3)
    assert len(raws) == 3
    p.expect(r"^INV 0 \d+$")
    ids = [hexh(sha256d(r)) for r in raws]
    p.send("gettx 0 " + " ".join(ids))
    got = {p.expect(r"^TX 0 (\w+)$").group(1) for _ in ids}
    assert got == set(ids)
    p.send("gettx 0 " + "ab" * 32)
    p.expect(r"^NOTFOUND 0 1$")
    p.send("getaddr 0")
    p.expect(r"^ADDR 0 0$")
    assert node.conns[0].version["relay"] in (1, True)
