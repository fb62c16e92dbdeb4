"""The disk under the data directory fills up (issue 11, F6).

The data directory is a small tmpfs. The daemon syncs part of the regtest
chain, then the test fills the filesystem to the last byte. Before the fix
the writer and the merkle worker exited on the failed LMDB write and were
respawned, the blocks were fetched again in a loop, and the parser workers
marked blocks indexed and on the best chain in PostgreSQL that LMDB never
stored (`/v1/tip` 103 while `/v1/block/102` was 404); the status never said
stale.

Now: one ERROR per store naming the path and the free space, no worker
restart, no block fetched again, nothing indexed in PostgreSQL that is not
stored in LMDB, the status says stale / disk full; and once the filler is
deleted, everything resumes by itself and the index ends equal, row for row,
to a run that never saw a full disk.

Needs root (mount); skipped otherwise.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import cli  # noqa: E402
from test_index import create_db, psql, run_index  # noqa: E402
from test_index_daemon import dump, start, wait_tip  # noqa: E402

CHAIN = "regtest/blockchain_116_7c9cd2"


@pytest.fixture(scope="module")
def reference(pg_module, build_dir, shared_data):
    ci = create_db(pg_module, "diskref")
    run_index(build_dir, ci, ["--chain", os.path.join(shared_data, CHAIN)])
    return dump(pg_module, "diskref")


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs (the daemon needs about 0.5 MiB for this chain)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): %s" % p.stderr.strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path):
    """Writes path until the filesystem has no byte left; returns its size."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            buf = b"\0" * size
            while True:
                try:
                    w = f.write(buf)
                except OSError:
                    break
                n += w
                if w < size:
                    break
    return n


def stored_count(d):
    return len(re.findall(r"blocksync: stored block", d.log_text()))


def status_json(build_dir, datadir):
    p = cli(build_dir, ["status", "--datadir", datadir, "--json"], check=False)
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {}


def in_lmdb(build_dir, datadir, hash_hex):
    p = cli(build_dir, ["block", hash_hex, "--datadir", datadir, "--regtest"], check=False)
    return p.returncode == 0


def indexed_or_best(pg, db):
    return [r[0] for r in psql(pg, db, "SELECT cd_txid_hex(block_hash) FROM blocks "
                                        "WHERE indexed OR on_best_chain ORDER BY height")]


def test_disk_full_pauses_then_resumes(pg_module, build_dir, simnode_regtest116, small_fs,
                                       reference):
    node = simnode_regtest116
    db = "diskfull"
    ci = create_db(pg_module, db)
    datadir = str(small_fs / "d")
    filler = str(small_fs / "filler")
    d = start(build_dir, datadir, node.port, ci, ["--status-interval", "1"])
    try:
        # part of the chain first, then not one byte left
        deadline = time.monotonic() + 120
        while stored_count(d) < 10:
            assert d.proc.poll() is None, d.log_text()[-3000:]
            assert time.monotonic() < deadline, d.log_text()[-3000:]
            time.sleep(0.05)
        fill(filler)
        m = d.wait_for_log(r"ERROR .*(writer|merkle): disk full: cannot write (\S+): .*; "
                           r"(\d+) bytes \(.* MiB\) free on its filesystem", timeout=120)
        assert m.group(2).startswith(datadir), m.group(0)
        # the status says so (conduit-cli and, through the same file, /v1/status)
        deadline = time.monotonic() + 60
        st = status_json(build_dir, datadir)
        while not (st.get("stale") and "disk full" in st.get("stall", "")):
            assert time.monotonic() < deadline, (st, d.log_text()[-3000:])
            time.sleep(0.3)
            st = status_json(build_dir, datadir)
        assert st["running"] is True and st["state"] == "stale", st
        text = cli(build_dir, ["status", "--datadir", datadir]).stdout.decode()
        assert "STALE:" in text and "disk full" in text, text
        # it stays stopped: observe a while (an observation window, not a
        # threshold: nothing may happen in it)
        before = stored_count(d)
        time.sleep(5)
        log = d.log_text()
        assert stored_count(d) == before, log[-3000:]
        # nothing in PostgreSQL that LMDB does not hold
        for h in indexed_or_best(pg_module, db):
            assert in_lmdb(build_dir, datadir, h), "indexed but not stored: %s\n%s" % (
                h, log[-3000:])
        # no worker died, nothing fetched again
        for bad in ("worker lost", "exited with", "asking again", "refusing another copy",
                    "init failed"):
            assert bad not in log, (bad, log[-3000:])
        # one ERROR per store, not one per attempt
        errors = re.findall(r"ERROR .*disk full: cannot write (\S+):", log)
        assert len(errors) == len(set(errors)), errors

        # space comes back: everything resumes by itself
        os.unlink(filler)
        wait_tip(pg_module, db, d, 116, timeout=180)
        d.wait_for_log(r"is writable again after \d+ attempt", timeout=60)
        deadline = time.monotonic() + 60
        st = status_json(build_dir, datadir)
        while st.get("stale") or st.get("indexed_height") != 116:
            assert time.monotonic() < deadline, (st, d.log_text()[-3000:])
            time.sleep(0.3)
            st = status_json(build_dir, datadir)
        assert "stall" not in st and st["state"] == "synced", st
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    assert dump(pg_module, db) == reference
