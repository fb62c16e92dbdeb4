"""A flipped bit or a damaged page in an LMDB store (issue 11, F7).

A datadir is synced from the simulated node (index off: only the stores
matter), then a copy of it is damaged:

- one bit flipped inside a stored block: before the fix `conduit-cli block`
  and /v1/block served the changed bytes as they were; now both refuse the
  block, and `conduit-cli verify --full` names it by hash and height and
  exits 1;
- the header store's file cut short: before the fix the controller died of
  SIGBUS without a log line (a systemd restart loop); now one ERROR line
  names the file and the daemon exits with status 2 (not restarted);
- a page of the block store overwritten: before, the writer segfaulted in a
  loop under the supervisor; now the start-up check (or the fault guard)
  names the file and the daemon exits 2, once.
"""

import os
import re
import shutil
import sys
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon, cli  # noqa: E402

CHAIN = "regtest/blockchain_116_7c9cd2"
PAGE = 4096


def hashes(shared_data):
    return open(os.path.join(shared_data, CHAIN, "headers.txt")).read().split()


_SYNCED = {}


@pytest.fixture
def synced(build_dir, simnode_regtest116, tmp_path_factory):
    """A datadir holding the whole regtest chain (stored and verified),
    synced once for the module (each test damages a copy)."""
    if "d" in _SYNCED:
        return _SYNCED["d"]
    datadir = str(tmp_path_factory.mktemp("corrupt") / "d")
    d = Daemon(build_dir, datadir, ["--regtest", "--connect",
                                    "127.0.0.1:%d" % simnode_regtest116.port,
                                    "--index", "off", "--log-level", "info"]).start()
    try:
        d.wait_for_log(r"blocksync: all blocks stored up to height 116", timeout=180)
    finally:
        assert d.stop() == 0, d.log_text()[-3000:]
    _SYNCED["d"] = datadir
    return datadir


def copy_of(synced, tmp_path):
    dst = str(tmp_path / "d")
    shutil.copytree(synced, dst)
    for f in ("conduitd.lock", "status"):
        if os.path.exists(os.path.join(dst, f)):
            os.unlink(os.path.join(dst, f))
    return dst


def test_flipped_bit_in_a_block_is_refused_and_named(build_dir, synced, tmp_path, shared_data):
    datadir = copy_of(synced, tmp_path)
    height = 113  # 3 transactions, 705 bytes
    h = hashes(shared_data)[height]
    raw = open(os.path.join(shared_data, CHAIN, h), "rb").read()
    # the clean copy verifies and is served
    p = cli(build_dir, ["verify", "--full", "--datadir", datadir, "--regtest"], check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert b"117 blocks checked (re-hashed), 0 bad" in p.stdout, p.stdout
    p = cli(build_dir, ["block", h, "--hex", "--datadir", datadir, "--regtest"], check=False)
    assert p.returncode == 0 and p.stdout.strip() == raw.hex().encode(), p.stderr
    # flip one bit in the last transaction's bytes, inside the LMDB file (in
    # every copy: pages LMDB freed may still hold an older one)
    path = os.path.join(datadir, "blocks", "data.mdb")
    data = bytearray(open(path, "rb").read())
    tail = raw[-120:]
    at = data.find(tail)
    assert at > 0, "the block's bytes are not in the file"
    while at >= 0:
        data[at + 60] ^= 0x10
        at = data.find(tail, at + 1)
    open(path, "wb").write(data)
    # not served any more
    p = cli(build_dir, ["block", h, "--hex", "--datadir", datadir, "--regtest"], check=False)
    assert p.returncode != 0, "a damaged block was served: %r" % p.stdout[:200]
    assert b"damaged" in p.stderr and h.encode() in p.stderr, p.stderr
    # named by verify --full, by hash and height, exit 1
    p = cli(build_dir, ["verify", "--full", "--datadir", datadir, "--regtest"], check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    bad = re.findall(rb"^BAD ([0-9a-f]{64}) height (\d+): (.*)$", p.stdout, re.M)
    assert [(b[0].decode(), int(b[1])) for b in bad] == [(h, height)], p.stdout
    assert b"merkle root" in bad[0][2], bad
    # nor by /v1/block (the same check, in the HTTP server); a clean block is
    d = Daemon(build_dir, datadir, ["--regtest", "--connect", "127.0.0.1:1", "--index", "off",
                                    "--http-listen", "127.0.0.1:0", "--log-level", "info"]).start()
    try:
        port = int(d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        st, body = http_get(port, "/v1/block/%s" % h)
        assert st == 500 and b"damaged" in body, (st, body[:300])
        good = hashes(shared_data)[112]
        st, body = http_get(port, "/v1/block/%s" % good)
        assert st == 200 and body == open(os.path.join(shared_data, CHAIN, good), "rb").read()
    finally:
        assert d.stop() == 0, d.log_text()[-3000:]
    assert "block %s is damaged in the block store" % h in d.log_text()


def http_get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start_damaged(build_dir, datadir, port):
    return Daemon(build_dir, datadir, ["--regtest", "--connect", "127.0.0.1:%d" % port,
                                       "--index", "off", "--log-level", "info"]).start()


def test_truncated_header_store_is_named_and_exits_2(build_dir, synced, simnode_regtest116,
                                                     tmp_path):
    datadir = copy_of(synced, tmp_path)
    path = os.path.join(datadir, "headers", "data.mdb")
    assert os.path.getsize(path) > 4 * PAGE
    os.truncate(path, 3 * PAGE)  # the tree's pages are past the end: SIGBUS
    d = start_damaged(build_dir, datadir, simnode_regtest116.port)
    rc = d.wait_exit(timeout=60)
    log = d.log_text()
    assert rc == 2, (rc, log[-3000:])
    lines = [ln for ln in log.splitlines() if "fatal SIG" in ln]
    assert len(lines) == 1, log[-3000:]
    assert "ERROR" in lines[0] and path in lines[0], lines[0]
    print(lines[0])


def test_damaged_header_store_page_exits_2(build_dir, synced, simnode_regtest116, tmp_path):
    """Pages of the header store overwritten (not truncated): an LMDB error
    or a fault, named with the file; exit 2, not a restart loop."""
    datadir = copy_of(synced, tmp_path)
    path = os.path.join(datadir, "headers", "data.mdb")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # every page but the two meta pages
        for pg in range(2, size // PAGE):
            f.seek(pg * PAGE)
            f.write(bytes([0x5A]) * PAGE)
    d = start_damaged(build_dir, datadir, simnode_regtest116.port)
    rc = d.wait_exit(timeout=60)
    log = d.log_text()
    assert rc == 2, (rc, log[-3000:])
    named = [ln for ln in log.splitlines() if "ERROR" in ln and path in ln]
    assert named, log[-3000:]


def test_damaged_block_store_page_exits_2_once(build_dir, synced, simnode_regtest116, tmp_path):
    datadir = copy_of(synced, tmp_path)
    path = os.path.join(datadir, "blocks", "data.mdb")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # every page but the two meta pages
        for pg in range(2, size // PAGE):
            f.seek(pg * PAGE)
            f.write(bytes([0xA5]) * PAGE)
    d = start_damaged(build_dir, datadir, simnode_regtest116.port)
    rc = d.wait_exit(timeout=120)
    log = d.log_text()
    assert rc == 2, (rc, log[-3000:])
    named = [ln for ln in log.splitlines()
             if "ERROR" in ln and os.path.join(datadir, "blocks") in ln]
    assert named, log[-3000:]
    print("\n".join(named))
    # no restart loop: at most one start of the writer after the first
    assert len(re.findall(r"restarting writer worker", log)) == 0, log[-3000:]
