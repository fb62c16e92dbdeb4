"""Broadcasts say what happened (issue 13 §3): `conduit-cli broadcast`
against the simulated node in its default (real-node) mode.

The node answers `reject` only for some invalid txs, asks `getdata` for the
parent of a tx whose input it does not know (an orphan), says nothing for a
double spend of a mempool tx, and announces an accepted tx by `inv` to its
other connections. Before: "accepted" after 5 s of silence for all but the
rejected case.

Exit status of `conduit-cli broadcast`: 0 SEEN_ON_NETWORK (MINED with --wait
mined), 1 REJECTED, 3 MISSING_INPUTS, 4 TIMEOUT, 5 NOT_SENT, 6 seen but not
mined in time.
"""
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon  # noqa: E402
from test_index import create_db  # noqa: E402

from tests.simnode.protocol import hexh, sha256d  # noqa: E402

BAD_SIG_REASON = ("mandatory-script-verify-flag-failed (Signature must be zero for failed "
                  "CHECK(MULTI)SIG operation)")


def broadcast(build_dir, node, raw, *args, timeout=60):
    return subprocess.run([os.path.join(build_dir, "src/daemon/conduit-cli"), "broadcast",
                           raw.hex(), "--regtest", "--connect", "127.0.0.1:%d" % node.port,
                           *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_valid_tx_is_seen_on_the_network(build_dir, simnode_factory):
    node = simnode_factory(generate=110, seed=11)
    tx = node.make_tx()
    r = broadcast(build_dir, node, tx, "--timeout", 20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split()[:2] == ["SEEN_ON_NETWORK", hexh(sha256d(tx))], r.stdout
    assert sha256d(tx) in node.mempool
    # it went out on a connection of its own; ours was told by inv
    conns = node.connections()
    senders = [c for c in conns if "tx" in c.commands()]
    assert len(senders) == 1 and len(conns) == 2
    watcher = [c for c in conns if c is not senders[0]][0]
    # the simulator records a message after its sendall() returns, so the
    # client may have read the inv (and exited) a moment before it is listed
    deadline = time.monotonic() + 10
    while "inv" not in watcher.sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "inv" in watcher.sent, watcher.sent
    assert not senders[0].version["relay"] and watcher.version["relay"]


def test_missing_input_is_reported_as_missing_inputs(build_dir, simnode_factory):
    node = simnode_factory(generate=110, seed=12)
    tx = node.make_tx(missing_input=True)
    r = broadcast(build_dir, node, tx, "--timeout", 20)
    assert r.returncode == 3, r.stdout + r.stderr
    m = re.match(r"MISSING_INPUTS (\w{64}) parent (\w{64}) ", r.stdout)
    assert m and m.group(1) == hexh(sha256d(tx)), r.stdout
    # the parent named is the tx's (only) input's: the one the node asked for
    assert tx[4] == 1 and m.group(2) == hexh(tx[5:37]), (r.stdout, tx.hex())
    assert sha256d(tx) not in node.mempool


def test_invalid_signature_is_rejected_with_the_nodes_reason(build_dir, simnode_factory):
    node = simnode_factory(generate=110, seed=13)
    tx = node.make_tx(bad_signature=True)
    r = broadcast(build_dir, node, tx, "--timeout", 20)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.strip() == "REJECTED %s code 0x10 %s" % (hexh(sha256d(tx)), BAD_SIG_REASON)
    # the node's ban (score 100) cost the broadcast connection only
    banned = [c for c in node.connections() if c.banned]
    assert len(banned) == 1 and "tx" in banned[0].commands()
    assert sha256d(tx) not in node.mempool


def test_double_spend_of_a_mempool_tx_is_not_seen(build_dir, simnode_factory):
    node = simnode_factory(generate=110, seed=14)
    first = node.make_tx()
    node.submit_tx(first)
    ds = node.make_tx(double_spend=first)
    r = broadcast(build_dir, node, ds, "--timeout", 3)
    # the node says nothing and relays nothing: TIMEOUT, not SEEN
    assert r.returncode == 4, r.stdout + r.stderr
    assert r.stdout.startswith("TIMEOUT %s " % hexh(sha256d(ds))), r.stdout
    assert sha256d(ds) not in node.mempool


def test_wait_mined_returns_the_height(build_dir, simnode_factory, pg, tmp_path):
    node = simnode_factory(generate=110, seed=15)
    ci = create_db(pg, "bcast")
    # relay off: conduitd does not send `mempool` (which the node in its
    # default mode answers with a disconnect, issue 13 §1); blocks suffice
    d = Daemon(build_dir, str(tmp_path / "d"),
               ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                "--parser-workers", "1", "--ring-size", "16M", "--unit-size", "64K",
                "--relay", "off"]).start()
    try:
        d.wait_for_log(r"all blocks stored up to height 110", timeout=120)
        tx = node.make_tx()
        out = {}

        def run():
            out["r"] = broadcast(build_dir, node, tx, "--wait", "mined", "--timeout", 90,
                                 "--pg-conninfo", ci, timeout=120)
        t = threading.Thread(target=run)
        t.start()
        node.wait_for(lambda: sha256d(tx) in node.mempool, 30)
        time.sleep(0.5)
        assert t.is_alive()          # seen, but waits for a block
        node.mine(1)                 # the block holds the mempool
        t.join(120)
        r = out["r"]
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.match(r"MINED %s height 111 block \w{64}$" % hexh(sha256d(tx)),
                        r.stdout.strip()), r.stdout
        assert "SEEN_ON_NETWORK" in r.stderr
    finally:
        assert d.stop() == 0
