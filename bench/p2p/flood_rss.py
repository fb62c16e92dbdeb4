#!/usr/bin/python3
"""flood_rss.py - the controller's memory while a peer floods it (issue 11 F2).

For each flood mode of the simulated node (tests/simnode, misbehave()):
conduitd (index on, a throw-away PostgreSQL) syncs the 116-block regtest chain
from a node that then floods it for --seconds (the node floods again on every
new connection); the controller's RSS is sampled every 0.2 s. Prints one line
per mode: messages the node queued, RSS before, peak and at the end, and how
the peer ended (the daemon's log line). docs/OPERATIONS.md records the
figures ("Failure modes").

  /usr/bin/python3 bench/p2p/flood_rss.py [--build build] [--seconds 60] [MODE...]
"""
import argparse
import os
import pathlib
import re
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "functional"))

from daemon_util import Daemon  # noqa: E402
from pgserver import PgServer  # noqa: E402

from tests.simnode import SimNode  # noqa: E402

MODES = ["ping_flood_no_read", "ping_flood", "inv_flood", "addr_flood", "headers_flood",
         "tx_flood"]
CHAIN = pathlib.Path(os.environ.get("CD_SHARED_DATA", ROOT.parent / "shared" / "data")) / \
    "regtest/blockchain_116_7c9cd2"


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def run(build, pg, mode, seconds, n):
    node = SimNode(chain_dir=str(CHAIN), whitelist=True).start()
    db = "flood%d" % n
    pg.psql("CREATE DATABASE %s" % db)
    ci = "%s dbname=%s" % (pg.conninfo.replace("dbname=postgres", ""), db)
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(build, tmp, ["--regtest", "--connect", "127.0.0.1:%d" % node.port,
                                "--pg-conninfo", ci, "--parser-workers", "1",
                                "--ring-size", "16M", "--unit-size", "64K",
                                "--log-level", "info"]).start()
        try:
            d.wait_for_log(r"all blocks stored up to height 116", timeout=120)
            time.sleep(1)
            base = rss_mb(d.proc.pid)
            mark = len(d.lines)
            node.misbehave(mode, count=None)   # again on every new connection
            peak = base
            end = time.monotonic() + seconds
            while time.monotonic() < end and d.proc.poll() is None:
                peak = max(peak, rss_mb(d.proc.pid))
                time.sleep(0.2)
            last = rss_mb(d.proc.pid)
            rx = re.compile(r"peer 127\.0\.0\.1:%d: (.*)" % node.port)
            ends = [m.group(1) for m in map(rx.search, d.lines[mark:]) if m]
            flooded = sum(c.flooded for c in node.connections())
            conns = len(node.connections())
        finally:
            d.stop()
            node.stop()
    how = ends[0][:110] if ends else "never dropped"
    print("%-19s %10d msgs %3d conn  RSS %6.0f -> peak %7.0f, end %7.0f MB  %s" % (
        mode, flooded, conns, base, peak, last, how), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("modes", nargs="*", default=MODES)
    a = ap.parse_args()
    pg = PgServer().start()
    try:
        for i, m in enumerate(a.modes):
            run(os.path.abspath(a.build), pg, m, a.seconds, i)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
