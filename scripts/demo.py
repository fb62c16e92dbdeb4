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
import json
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
    # --whitelist: conduitd sends `mempool` once synced; the real node (and the
    # simulator by default) disconnects a non-whitelisted peer for it and
    # conduitd would reconnect in a loop.  Lenient until the daemon learns
    # mempool_request=auto (a real node for the demo would be configured with
    # whitelist=127.0.0.1 the same way).
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-m", "tests.simnode", "--regtest", "--port", "0",
         "--port-file", portfile, "--generate", str(blocks), "--txs-per-block",
         str(txs), "--seed", "42", "--whitelist", "--no-stdin", "--quiet"],
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
        deadline = time.monotonic() + 900
        height = -1
        while time.monotonic() < deadline:
            try:
                out = pg.psql("SELECT height FROM best_tip").strip()
                height = int(out) if out else -1
            except subprocess.CalledProcessError:
                # the parser workers create the schema (migrations) on their
                # first connection: until then there is no best_tip to read
                height = -1
            if height >= a.blocks:
                break
            if daemon.proc.poll() is not None:
                raise SystemExit("conduitd exited:\n" + daemon.log_text()[-4000:])
            time.sleep(0.5)
        took = time.monotonic() - t0
        ntx = int(pg.psql("SELECT count(*) FROM best_transactions").strip())
        print(f"   indexed to height {height}: {ntx} transactions in {took:.1f} s")

        say("conduit-cli status")
        # the daemon publishes its status every status_interval seconds
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = cli(BUILD, ["status", "--datadir", datadir, "--json"], check=False)
            try:
                if json.loads(r.stdout.decode()).get("state") == "synced":
                    break
            except ValueError:
                pass
            time.sleep(0.5)
        print(cli(BUILD, ["status", "--datadir", datadir], check=False).stdout.decode())

        say("SQL against the index (queries from docs/QUERIES.md)")
        mid = a.blocks // 2
        txid = pg.psql(f"SELECT cd_txid_hex(tx_hash) FROM best_transactions "
                       f"WHERE height = {mid} ORDER BY tx_pos DESC LIMIT 1").strip()
        key = pg.psql("SELECT encode(push_hash, 'hex') FROM best_pushdata WHERE flags = 1 "
                      "GROUP BY push_hash ORDER BY count(*) DESC, 1 LIMIT 1").strip()
        spent = pg.psql("SELECT cd_txid_hex(prev_hash) || ' ' || prev_idx FROM best_inputs "
                        f"WHERE height = {mid} LIMIT 1").strip().split()
        queries = [
            ("best tip", "SELECT cd_txid_hex(block_hash) AS block_hash, height FROM best_tip"),
            ("table sizes", "SELECT (SELECT count(*) FROM best_blocks) AS blocks, "
             "(SELECT count(*) FROM best_transactions) AS txs, "
             "(SELECT count(*) FROM best_inputs) AS inputs, "
             "(SELECT count(*) FROM best_pushdata) AS pushdata"),
            (f"where is tx {txid[:16]}...",
             "SELECT cd_txid_hex(block_hash) AS block_hash, height, tx_pos, tx_offset, tx_size "
             f"FROM best_transactions WHERE tx_hash = cd_txid('{txid}')"),
            (f"history of pushdata key {key[:16]}... (first 5)",
             "SELECT cd_txid_hex(tx_hash) AS txid, idx, flags, height FROM best_pushdata "
             f"WHERE push_hash = decode('{key}', 'hex') ORDER BY height, tx_pos, flags, idx LIMIT 5"),
        ]
        if len(spent) == 2:
            queries.append((f"who spent outpoint {spent[0][:16]}...:{spent[1]}",
                            "SELECT cd_txid_hex(spend_tx_hash) AS spent_by, in_idx, height "
                            f"FROM best_inputs WHERE prev_hash = cd_txid('{spent[0]}') "
                            f"AND prev_idx = {spent[1]}"))
        for title, q in queries:
            print(f"\n-- {title}\n{q};")
            print(subprocess.run(["psql", "-X", "-P", "pager=off", "-h", pg.sockdir, "-p",
                                  str(pg.port), "-U", "postgres", "-d", "postgres", "-c", q],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                                 ).stdout.decode().rstrip())

        say("raw transaction and merkle proof from LMDB (conduit-cli)")
        r = cli(BUILD, ["tx", txid, "--datadir", datadir, "--pg-conninfo", pg.conninfo],
                check=False)
        print((r.stdout.decode() + r.stderr.decode())[:600])
        r = cli(BUILD, ["merkle-proof", txid, "--datadir", datadir, "--pg-conninfo", pg.conninfo],
                check=False)
        print((r.stdout.decode() + r.stderr.decode())[:1200])
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
