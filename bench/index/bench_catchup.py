#!/usr/bin/python3
"""End-to-end index rate of conduitd itself: header sync + block download from
the simulated node + parse + COPY into PostgreSQL + (auto mode) the final
secondary-index build, for catchup_indexes = auto and live.

Run under a throw-away PostgreSQL (tests/pgserver.py exports PGHOST/PGPORT/...):

    /usr/bin/python3 tests/pgserver.py -- /usr/bin/python3 bench/index/bench_catchup.py \
        --build build-catchup --blocks 400 --txs-per-block 1500 [--modes auto,live]

The simulator runs as its own process (python3 -m tests.simnode --generate N
--txs-per-block K: P2PKH-style transactions, ~450 B each); the clock starts
when conduitd is started (the chain is already generated) and stops when the
indexed tip is the chain tip AND the three secondary indexes exist. Every
mode gets a fresh database and data directory. Prints one line per mode.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECONDARY = ("transactions_hash_idx", "inputs_outpoint_idx", "pushdata_hash_idx")


def psql(db, sql):
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
                         input=sql.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         check=True)
    return out.stdout.decode().strip()


def start_simnode(blocks, txs):
    p = subprocess.Popen(["/usr/bin/python3", "-m", "tests.simnode", "--regtest", "--quiet",
                          "--no-stdin", "--generate", str(blocks), "--txs-per-block", str(txs),
                          "--seed", "11"],
                         cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    while True:
        line = p.stdout.readline()
        if not line:
            sys.exit("simnode exited: rc=%s" % p.wait())
        if line.startswith("SIMNODE_PORT="):
            return p, int(line.split("=")[1])


def run_mode(args, mode, port, blocks):
    db = "bench_catchup_%s" % mode
    psql("postgres", "DROP DATABASE IF EXISTS %s; CREATE DATABASE %s;" % (db, db))
    datadir = tempfile.mkdtemp(prefix="cd-bench-catchup-")
    log = os.path.join(datadir, "conduitd.log")
    cmd = [os.path.join(args.build, "src/daemon/conduitd"), "--regtest", "--datadir", datadir,
           "--connect", "127.0.0.1:%d" % port, "--pg-conninfo", "dbname=%s" % db,
           "--catchup-indexes", mode, "--catchup-threshold", str(args.threshold),
           "--status-interval", "5"] + args.daemon_arg
    t0 = time.monotonic()
    logf = open(log, "w")
    d = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    try:
        t_tip = None
        while True:
            if d.poll() is not None:
                sys.exit("conduitd exited %d; see %s" % (d.returncode, log))
            try:
                tip = int(psql(db, "SELECT coalesce(max(height), -1) FROM index_tip;") or -1)
                n_idx = int(psql(db, "SELECT count(*) FROM pg_indexes WHERE indexname IN (%s);"
                                 % ",".join("'%s'" % i for i in SECONDARY)))
            except subprocess.CalledProcessError:
                tip, n_idx = -1, 0  # schema not created yet
            now = time.monotonic()
            if tip >= blocks and t_tip is None:
                t_tip = now
            if tip >= blocks and n_idx == 3:
                break
            time.sleep(0.1)
        elapsed = now - t0
    finally:
        d.terminate()
        d.wait()
        logf.close()
    ntx = int(psql(db, "SELECT count(*) FROM transactions;"))
    nin = int(psql(db, "SELECT count(*) FROM inputs;"))
    npd = int(psql(db, "SELECT count(*) FROM pushdata;"))
    nbytes = int(psql(db, "SELECT sum(size) FROM blocks;"))
    text = open(log).read()
    m = re.search(r"secondary indexes ready \(([0-9.]+) s\)", text)
    build_s = float(m.group(1)) if m else 0.0
    dropped = "secondary indexes dropped" in text
    print("mode=%-4s blocks=%d txs=%d bytes=%.1fMB rows=%d elapsed=%.2fs tip_at=%.2fs "
          "index_build=%.2fs dropped=%s  ->  %.0f tx/s  %.2f MB/s  %.0f rows/s"
          % (mode, blocks, ntx, nbytes / 1e6, ntx + nin + npd, elapsed, t_tip - t0, build_s,
             "yes" if dropped else "no", ntx / elapsed, nbytes / 1e6 / elapsed,
             (ntx + nin + npd) / elapsed), flush=True)
    shutil.rmtree(datadir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--blocks", type=int, default=400)
    ap.add_argument("--txs-per-block", type=int, default=1500)
    ap.add_argument("--threshold", type=int, default=10, help="catchup_threshold (blocks)")
    ap.add_argument("--modes", default="auto,live")
    ap.add_argument("--daemon-arg", action="append", default=[],
                    help="extra conduitd argument (repeatable), e.g. --daemon-arg=--unit-size=8M")
    args = ap.parse_args()
    if not os.environ.get("PGHOST"):
        sys.exit("run under tests/pgserver.py (PGHOST is not set)")
    t = time.monotonic()
    sim, port = start_simnode(args.blocks, args.txs_per_block)
    print("simnode: %d blocks x %d txs generated in %.1f s (port %d)"
          % (args.blocks, args.txs_per_block, time.monotonic() - t, port), flush=True)
    try:
        for mode in args.modes.split(","):
            run_mode(args, mode, port, args.blocks)
    finally:
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()
