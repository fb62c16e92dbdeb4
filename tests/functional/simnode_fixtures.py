"""pytest fixtures for the simulated BSV node (tests/simnode).

Import from conftest.py:  `from simnode_fixtures import *  # noqa`

Fixtures:
  simnode_factory   -- callable(**SimNode kwargs) -> started SimNode; all are
                       stopped at teardown.  e.g. simnode_factory(generate=500,
                       txs_per_block=5, seed=3) or simnode_factory(chain_dir=...)
  simnode           -- a started SimNode with a generated 120-block regtest
                       chain with transactions (seed 1)
  simnode_regtest115 / simnode_regtest116
                    -- started SimNodes serving ../shared/data/regtest chains
  simnode_process   -- callable(*cli_args) -> SimNodeProcess: the CLI in a
                       subprocess (.port, .control(cmd_dict) -> reply dict);
                       killed at teardown
  shared_data_dir   -- pathlib.Path of ../shared/data

Like the real node, the simulator disconnects a non-whitelisted peer that
sends `mempool`.  conduitd never sends it on the connection it syncs on: with
mempool_request=auto it probes once on a short-lived second connection (the
node closes it; the refusal is remembered in the data directory) and, where
`mempool` is allowed (`whitelist=True` to simnode_factory, `--whitelist` to
simnode_process), reads the node's mempool through such connections after
each reorg and (re)connect.  Daemon tests pass `whitelist=True` only when
they need the node's mempool snapshot (txs that were in the node's mempool
before conduitd connected).  sync_connections(node) lists the connections
conduitd syncs on (they sent getheaders; snapshot connections never do).
"""
import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.simnode import SimNode  # noqa: E402


def sync_connections(node):
    """The handshaken connections conduitd syncs on (not its short-lived
    mempool snapshot / probe connections, which never send getheaders)."""
    return [c for c in node.handshaken() if "getheaders" in c.commands()]

SHARED = pathlib.Path(os.environ.get("CONDUIT_SHARED", ROOT.parent / "shared"))
SYS_PYTHON = "/usr/bin/python3"


@pytest.fixture
def shared_data_dir():
    return SHARED / "data"


@pytest.fixture
def simnode_factory():
    nodes = []

    def make(**kw):
        n = SimNode(**kw)
        n.start()
        nodes.append(n)
        return n
    yield make
    for n in nodes:
        n.stop()


@pytest.fixture
def simnode(simnode_factory):
    return simnode_factory(generate=120, txs_per_block=5, seed=1)


@pytest.fixture
def simnode_regtest115(simnode_factory):
    return simnode_factory(chain_dir=str(SHARED / "data/regtest/blockchain_115_3677f4"))


@pytest.fixture
def simnode_regtest116(simnode_factory):
    return simnode_factory(chain_dir=str(SHARED / "data/regtest/blockchain_116_7c9cd2"))


class SimNodeProcess:
    """The simulator as a separate process (python3 -m tests.simnode)."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [SYS_PYTHON, "-m", "tests.simnode", "--control", "0", "--no-stdin", "--quiet"] + list(args),
            cwd=str(ROOT), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.port = self.control_port = None
        while self.port is None or self.control_port is None:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("simnode exited: rc=%s" % self.proc.wait())
            if line.startswith("SIMNODE_PORT="):
                self.port = int(line.split("=")[1])
            elif line.startswith("SIMNODE_CONTROL="):
                self.control_port = int(line.split("=")[1])
        self._ctl = socket.create_connection(("127.0.0.1", self.control_port))
        self._f = self._ctl.makefile("rw")

    def control(self, cmd):
        self._f.write(json.dumps(cmd) + "\n")
        self._f.flush()
        return json.loads(self._f.readline())

    def stop(self):
        try:
            self.control({"cmd": "stop"})
        except Exception:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def simnode_process():
    procs = []

    def make(*args):
        p = SimNodeProcess(*args)
        procs.append(p)
        return p
    yield make
    for p in procs:
        p.stop()
