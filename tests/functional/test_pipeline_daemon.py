"""Block pipeline inside conduitd, against the simulated node (tests/simnode).

  - every block of regtest/blockchain_116_7c9cd2 is downloaded through the p2p
    block sink into the ring, stored by the writer worker, verified by the
    merkle worker, and reads back byte-identical with `conduit-cli block`;
    a restart downloads nothing again;
  - a peer serving blocks whose txs do not match the header's merkle root is
    refused and disconnected, and the blocks come from the honest peer;
  - a 48 MB block (3x the 16 MB ring) served slowly: kill -9 of the controller
    in the middle, restart, the half-written block is replaced and the stored
    bytes equal the node's; same for kill -9 of the writer / merkle worker.

Run: CD_BUILD_DIR=build /usr/bin/python3 -m pytest tests/functional/test_pipeline_daemon.py
"""
import hashlib
import os
import re
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from daemon_util import Daemon  # noqa: E402
from tests.simnode import SimNode  # noqa: E402

CHAIN116 = "regtest/blockchain_116_7c9cd2"


def start_daemon(build_dir, datadir, ports, extra=()):
    args = ["--regtest", "--no-index", "--log-level", "info",
            "--ring-size", "16M", "--unit-size", "1M"]
    for p in ports:
        args += ["--connect", "127.0.0.1:%d" % p]
    return Daemon(build_dir, str(datadir), args + list(extra)).start()


def cli(build_dir, args):
    return subprocess.run([os.path.join(build_dir, "src", "daemon", "conduit-cli")] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)


def stored_sha256(build_dir, datadir, ident):
    p = subprocess.Popen([os.path.join(build_dir, "src", "daemon", "conduit-cli"), "block",
                          ident, "--datadir", str(datadir), "--out", "/dev/stdout"],
                         stdout=subprocess.PIPE)
    h = hashlib.sha256()
    while True:
        b = p.stdout.read(1 << 20)
        if not b:
            break
        h.update(b)
    assert p.wait() == 0, ident
    return h.hexdigest()


def block_sha256(block):
    h = hashlib.sha256()
    for c in block.iter_chunks():
        h.update(c)
    return h.hexdigest()


def check_chain116(build_dir, datadir, shared_data):
    d = os.path.join(shared_data, CHAIN116)
    with open(os.path.join(d, "headers.txt")) as f:
        hashes = [l.strip() for l in f if l.strip()]
    for hx in hashes:
        with open(os.path.join(d, hx), "rb") as f:
            want = hashlib.sha256(f.read()).hexdigest()
        assert stored_sha256(build_dir, datadir, hx) == want, hx


def test_sync_chain116_and_resume(build_dir, shared_data, tmp_path):
    dd = tmp_path / "d"
    with SimNode(chain_dir=os.path.join(shared_data, CHAIN116)) as node:
        d = start_daemon(build_dir, dd, [node.port])
        try:
            d.wait_for_log(r"blocksync: all blocks stored up to height 116", timeout=120)
        finally:
            d.stop()
        assert len(node.served) >= 117
    check_chain116(build_dir, dd, shared_data)
    info = cli(build_dir, ["block", "116", "--datadir", str(dd)]).stdout.decode()
    assert "merkle_tree verified" in info
    # restart: everything is known stored, nothing is downloaded again
    with SimNode(chain_dir=os.path.join(shared_data, CHAIN116)) as node:
        d = start_daemon(build_dir, dd, [node.port])
        try:
            d.wait_for_log(r"blocksync: 117 blocks already stored", timeout=60)
            d.wait_for_log(r"blocksync: all blocks stored up to height 116", timeout=60)
            time.sleep(1)
        finally:
            d.stop()
        assert node.served == []
        assert "blocksync: stored block" not in d.log_text()


def test_bad_merkle_peer_refused(build_dir, shared_data, tmp_path):
    dd = tmp_path / "d"
    chain = os.path.join(shared_data, CHAIN116)
    with SimNode(chain_dir=chain) as bad, SimNode(chain_dir=chain) as good:
        bad.misbehave("bad_merkle_block", count=None)
        good_port = good.port
        d = start_daemon(build_dir, dd, [bad.port, good.port])
        try:
            d.wait_for_log(r"blocksync: all blocks stored up to height 116", timeout=180)
        finally:
            d.stop()
        log = d.log_text()
    assert re.search(r"merkle: block \w+: root \w+ != header", log)
    assert re.search(r"blocksync: peer \S+ sent a bad block \w+ \(merkle-mismatch\); "
                     r"disconnecting it", log)
    # the blame goes to the sender of the bad copy, never to the honest peer
    # the block was asked from again meanwhile
    assert not re.search(r"peer 127\.0\.0\.1:%d sent a bad block" % good_port, log), log
    check_chain116(build_dir, dd, shared_data)


def test_copy_of_stored_block_refused(build_dir, shared_data, tmp_path):
    """A copy of a block that is stored and verified is never written again:
    the writer keys blocks by hash, so a copy would replace verified bytes
    (and, if bad, its deletion would lose the block). The unit test
    test_pipeline_one_copy_at_a_time covers copies arriving while the first
    is still in the pipeline."""
    dd = tmp_path / "d"
    chain = os.path.join(shared_data, CHAIN116)
    with open(os.path.join(chain, "headers.txt")) as f:
        h1 = [l.strip() for l in f if l.strip()][1]
    with SimNode(chain_dir=chain) as node:
        d = start_daemon(build_dir, dd, [node.port])
        try:
            d.wait_for_log(r"blocksync: all blocks stored up to height 116", timeout=120)
            n = len(d.log_text().splitlines())
            node.misbehave("unsolicited_block", hash=h1)
            d.wait_for_log(r"blocksync: block %s is already stored; discarding the copy" % h1,
                           timeout=60, start=n)
        finally:
            d.stop()
        log = d.log_text()
    assert not re.search(r"writer: (deleted|stored) block %s" % h1, log.split("all blocks stored")[1])
    check_chain116(build_dir, dd, shared_data)


@pytest.fixture
def big_node(shared_data):
    node = SimNode(chain_dir=os.path.join(shared_data, CHAIN116))
    big, = node.generate(1, block_size=48 << 20)
    node.start()
    try:
        yield node, big
    finally:
        node.stop()


def test_kill9_controller_mid_big_block(build_dir, tmp_path, big_node):
    node, big = big_node
    dd = tmp_path / "d"
    node.misbehave("slow_block", rate=4 << 20, hash=big.hash_hex)
    d = start_daemon(build_dir, dd, [node.port])
    try:
        d.wait_for_log(r"blocksync: stored block \w+ height=116", timeout=120)
        # the 48 MB block now trickles in at 4 MB/s; let a few units land
        time.sleep(3)
        d.kill()
    except BaseException:
        d.kill()
        raise
    assert cli(build_dir, ["block", big.hash_hex, "--datadir", str(dd)]).returncode == 1
    d = start_daemon(build_dir, dd, [node.port])
    try:
        d.wait_for_log(r"blocksync: all blocks stored up to height 117", timeout=180)
    finally:
        d.stop()
    log = d.log_text()
    assert "removed a segment left by dead process" in log
    assert "removing half-written block" in log
    assert stored_sha256(build_dir, dd, big.hash_hex) == block_sha256(big)
    assert "merkle_tree verified" in cli(build_dir, ["block", "117", "--datadir",
                                                     str(dd)]).stdout.decode()


@pytest.mark.parametrize("kind", ["writer", "merkle"])
def test_kill9_worker_mid_big_block(build_dir, tmp_path, big_node, kind):
    node, big = big_node
    dd = tmp_path / "d"
    node.misbehave("slow_block", rate=4 << 20, hash=big.hash_hex)
    d = start_daemon(build_dir, dd, [node.port])
    try:
        m = d.wait_for_log(r"supervisor: started %s worker 0 \(pid (\d+)\)" % kind, timeout=30)
        pid = int(m.group(1))
        d.wait_for_log(r"blocksync: stored block \w+ height=116", timeout=120)
        time.sleep(3)
        os.kill(pid, signal.SIGKILL)
        d.wait_for_log(r"%s worker 0 \(pid %d\) killed by signal 9" % (kind, pid), timeout=30)
        d.wait_for_log(r"blocksync: all blocks stored up to height 117", timeout=180)
    finally:
        d.stop()
    assert stored_sha256(build_dir, dd, big.hash_hex) == block_sha256(big)


def test_silent_peer_times_out_blocks_come_from_other(build_dir, shared_data, tmp_path):
    """A node sends no `notfound` for blocks: one that never answers getdata
    must not stall the download. Its blocks are asked again from the other
    peer after --block-timeout."""
    dd = tmp_path / "d"
    chain = os.path.join(shared_data, CHAIN116)
    with SimNode(chain_dir=chain) as silent, SimNode(chain_dir=chain) as good:
        for h in range(0, 117):
            silent.withheld.add(silent.chain.at(h).hash)
        d = start_daemon(build_dir, dd, [silent.port, good.port],
                         extra=["--block-timeout", "5", "--blocks-per-peer", "8"])
        try:
            d.wait_for_log(r"blocksync: all blocks stored up to height 116", timeout=180)
        finally:
            d.stop()
        log = d.log_text()
        assert silent.served == []
    assert re.search(r"blocksync: block \w+ not received from \S+ within 5 s; asking again", log)
    check_chain116(build_dir, dd, shared_data)


def test_block_checksum_option(build_dir, shared_data, tmp_path):
    """Blocks are verified byte for byte against their header (hash, tx count,
    length, merkle root), so by default the p2p checksum of a block message is
    not computed (block_checksum=off: one SHA-256 pass less per block). A peer
    whose block checksums are wrong is then still a source of good blocks;
    with block_checksum=on its block messages are refused and it is dropped."""
    chain = os.path.join(shared_data, CHAIN116)
    # default: wrong checksums on every block, blocks still stored and verified
    dd = tmp_path / "off"
    with SimNode(chain_dir=chain) as node:
        node.misbehave("bad_checksum", on="block", count=None)
        d = start_daemon(build_dir, dd, [node.port])
        try:
            d.wait_for_log(r"blocksync: all blocks stored up to height 116", timeout=120)
        finally:
            d.stop()
        faults = [e[1] for c in node.connections() for e in c.events
                  if "fault bad_checksum on block" in e[1]]
    assert len(faults) >= 117, faults
    check_chain116(build_dir, dd, shared_data)

    # block_checksum=on: the lying peer is dropped, the honest one serves
    dd = tmp_path / "on"
    with SimNode(chain_dir=chain) as bad, SimNode(chain_dir=chain) as good:
        bad.misbehave("bad_checksum", on="block", count=None)
        d = start_daemon(build_dir, dd, [bad.port, good.port], ["--block-checksum", "on"])
        try:
            d.wait_for_log(r"blocksync: all blocks stored up to height 116", timeout=180)
        finally:
            d.stop()
        log = d.log_text()
        assert any("fault bad_checksum on block" in e[1] for c in bad.connections()
                   for e in c.events)
    assert re.search(r"127\.0\.0\.1:%d.*checksum" % bad.port, log, re.I), log
    check_chain116(build_dir, dd, shared_data)
