#!/usr/bin/python3
"""End-to-end download benchmark: conduitd (--no-index) syncs a generated
regtest chain from the simulated node (tests/simnode) over loopback, through
the p2p block sink, the shared-memory ring, the writer and merkle workers and
LMDB. Prints blocks/s and MB/s of block payload stored and verified.

usage: /usr/bin/python3 bench/pipeline/daemon_sync.py [--build build]
           [--blocks 20] [--block-size 32M] [--ring 256M] [--unit 32M]

The simulated node is Python: with big blocks it serves ~300-450 MB/s on
loopback, so this measures the daemon only when that is not the bottleneck
(compare with cd-pipe-feed, which feeds the ring from files).
"""
import argparse
import os
import re
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))

from daemon_util import Daemon  # noqa: E402
from tests.simnode import SimNode  # noqa: E402


def size(s):
    m = re.fullmatch(r"(\d+)([KMG]?)", s)
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--block-size", default="32M")
    ap.add_argument("--ring", default="256M")
    ap.add_argument("--unit", default="32M")
    a = ap.parse_args()
    node = SimNode()
    node.generate(a.blocks, block_size=size(a.block_size))
    total = sum(node.chain.at(h).size for h in range(0, node.chain.height + 1))
    node.start()
    dd = tempfile.mkdtemp(prefix="cd-bench-sync-")
    try:
        d = Daemon(a.build, dd, ["--regtest", "--no-index", "--log-level", "info",
                                 "--connect", "127.0.0.1:%d" % node.port,
                                 "--ring-size", a.ring, "--unit-size", a.unit])
        t0 = time.monotonic()
        d.start()
        d.wait_for_log(r"blocksync: all blocks stored up to height %d" % node.chain.height,
                       timeout=3600)
        dt = time.monotonic() - t0
        d.stop()
        n = node.chain.height + 1
        print("daemon-sync: %d blocks, %.1f MB in %.2f s = %.1f blocks/s, %.0f MB/s "
              "(ring %s, unit %s, incl. daemon start and header sync)"
              % (n, total / 1e6, dt, n / dt, total / dt / 1e6, a.ring, a.unit))
    finally:
        node.stop()
        shutil.rmtree(dd, ignore_errors=True)


if __name__ == "__main__":
    main()
