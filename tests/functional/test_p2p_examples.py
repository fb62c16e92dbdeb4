"""The libconduit-p2p examples (examples/*.c) against the simulated node.

Run: CD_BUILD_DIR=build-p2p /usr/bin/python3 -m pytest tests/functional/test_p2p_examples.py
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simnode_fixtures import SHARED, simnode_factory  # noqa: E402,F401

from tests.simnode.protocol import hexh, sha256d  # noqa: E402

CHAIN116 = SHARED / "data/regtest/blockchain_116_7c9cd2"


def run(build_dir, name, *args, timeout=60):
    exe = os.path.join(build_dir, "examples", name)
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_spv_headers(build_dir, simnode_factory):
    node = simnode_factory(chain_dir=CHAIN116)
    r = run(build_dir, "spv_headers", "--regtest", "--connect", "127.0.0.1:%d" % node.port)
    assert r.returncode == 0, r.stderr
    tip = (CHAIN116 / "headers.txt").read_text().split()[-1]
    assert "synced: tip height 116 %s" % tip in r.stdout


def test_download_blocks_from_two_peers(build_dir, simnode_factory, tmp_path):
    a = simnode_factory(chain_dir=CHAIN116)
    b = simnode_factory(chain_dir=CHAIN116)
    r = run(build_dir, "download_blocks", "--regtest", "--connect", "127.0.0.1:%d" % a.port,
            "--connect", "127.0.0.1:%d" % b.port, "--outdir", tmp_path, "--window", 8)
    assert r.returncode == 0, r.stderr
    assert "downloaded 117 blocks" in r.stdout
    for h in (CHAIN116 / "headers.txt").read_text().split():
        assert (tmp_path / h).read_bytes() == (CHAIN116 / h).read_bytes()
    assert a.served and b.served      # both peers were used


def test_broadcast_tx(build_dir, simnode_factory):
    node = simnode_factory(generate=110, seed=4)
    good = node.make_tx()
    r = run(build_dir, "broadcast_tx", "--regtest", "--connect", "127.0.0.1:%d" % node.port,
            "--wait-ms", 5000, good.hex())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SENT " + hexh(sha256d(good)) in r.stdout
    assert "SEEN_ON_NETWORK " + hexh(sha256d(good)) in r.stdout
    # a bad signature: reject 0x10
    bad = node.make_tx(bad_signature=True)
    r = run(build_dir, "broadcast_tx", "--regtest", "--connect", "127.0.0.1:%d" % node.port,
            "--wait-ms", 3000, bad.hex())
    assert r.returncode == 1
    assert "REJECTED " + hexh(sha256d(bad)) + " code 0x10" in r.stdout
    # a missing input: the node keeps an orphan and asks for the parent
    orphan = node.make_tx(missing_input=True)
    r = run(build_dir, "broadcast_tx", "--regtest", "--connect", "127.0.0.1:%d" % node.port,
            "--wait-ms", 3000, orphan.hex())
    assert r.returncode == 1
    assert "MISSING_INPUTS " + hexh(sha256d(orphan)) + " parent " in r.stdout
