#!/usr/bin/python3
"""The main job's demo: conduitd indexing a chain served by the simulated node.

Starts, all on loopback and in a temporary directory:
  1. a throw-away PostgreSQL server (tests/pgserver.py),
  2. the simulated BSV node (tests/simnode) with a generated regtest chain,
  3. conduitd --regtest pointed at both,
then waits for the daemon to catch up, prints `conduit-cli status` and a few
of the documented queries (docs/QUERIES.md), and stops everything.

Options: --blocks N (default 300), --txs-per-block K (default 40),
         --keep (leave the temp dir and print its path).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))

from pgserver import PgServer  # noqa: E402
from daemon_util import Daemon, cli  # noqa: E402

BUILD = os.environ.get("CD_BUILD_DIR", os.path.join(ROOT, "build"))


def say(msg):
    print(f"\n\033[1m== {msg}\033[0m", flush=True)


def start_simnode(tmp, blocks, txs):
    portfile = os.path.join(tmp, "simnode.port")
    log = open(os.path.join(tmp, "simnode.log"), "w")
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-m", "tests.simnode", "--regtest", "--port", "0",
         "--port-file", portfile, "--generate", str(blocks), "--txs-per-block",
         str(txs), "--seed", "42", "--no-stdin", "--quiet"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if os.path.exists(portfile) and open(portfile).read().strip():
            return proc, int(open(portfile).read().strip())
        if proc.poll() is not None:
            raise SystemExit("simulated node failed:\n" + open(log.name).read())
        time.sleep(0.1)
    raise SystemExit("simulated node did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=300)
    ap.add_argument("--txs-per-block", type=int, default=40)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="conduitd-demo-")
    pg = sim = daemon = None
    try:
        say("starting a throw-away PostgreSQL server")
        pg = PgServer().start()
        print(f"   unix socket in {pg.sockdir}")

        say(f"starting the simulated BSV node with {a.blocks} generated regtest blocks")
        sim, port = start_simnode(tmp, a.blocks, a.txs_per_block)
        print(f"   listening on 127.0.0.1:{port}")

        say("starting conduitd --regtest")
        datadir = os.path.join(tmp, "data")
        daemon = Daemon(BUILD, datadir, ["--regtest", "--connect", f"127.0.0.1:{port}",
                                         "--pg_conninfo", pg.conninfo,
                                         "--status_interval", "2"])
        daemon.start()
        t0 = time.monotonic()
        m = daemon.wait_for_log(r"headers synced height=(\d+)", timeout=120)
        print(f"   headers synced to height {m.group(1)} in {time.monotonic() - t0:.1f} s")
        m = daemon.wait_for_log(r"indexed .*height=%d\b" % a.blocks, timeout=600)
        print(f"   blocks indexed to height {a.blocks} in {time.monotonic() - t0:.1f} s")

        say("conduit-cli status")
        print(cli(BUILD, ["status", "--datadir", datadir], check=False).stdout.decode())

        say("SQL: best tip, table sizes, a key's history (see docs/QUERIES.md)")
        for q in [
            "SELECT height, encode(hash, 'hex') AS hash FROM best_tip",
            "SELECT (SELECT count(*) FROM best_blocks) AS blocks, "
            "(SELECT count(*) FROM best_transactions) AS txs",
        ]:
            print("   " + q)
            print("   -> " + pg.psql(q).strip().replace("\n", "\n   -> "))
        say("done")
    finally:
        if daemon:
            daemon.stop()
        if sim:
            sim.terminate()
            sim.wait()
        if pg:
            pg.stop()
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
