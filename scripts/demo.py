#!/usr/bin/python3
"""The main job's demo: conduitd indexing a chain served by the simulated node.

Starts, all on loopback and in a temporary directory:
  1. a throw-away PostgreSQL server (tests/pgserver.py),
  2. the simulated BSV node (tests/simnode) with a generated regtest chain,
  3. conduitd --regtest pointed at both,
then waits for the daemon to catch up, prints `conduit-cli status` and a few
of the documented queries (docs/QUERIES.md), and stops everything.

With --keep, the three keep running instead: the demo prints how to reach
them (psql, the HTTP API, conduit-cli) and the script that stops them all.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))

from pgserver import PgServer  # noqa: E402
from daemon_util import Daemon, cli  # noqa: E402

BUILD = os.environ.get("CD_BUILD_DIR", os.path.join(ROOT, "build"))


def say(msg):
    print(f"\n\033[1m== {msg}\033[0m", flush=True)


class LoggedDaemon(Daemon):
    """conduitd writing its log to a file, in a session of its own, so that it
    can outlive the demo (--keep) without a pipe to a dead reader or the
    terminal's Ctrl-C; a thread tails the file so wait_for_log() still works."""

    def __init__(self, build, datadir, args, log_path):
        super().__init__(build, datadir, args)
        self.log_path = log_path

    def start(self):
        cmd = [self.exe, "--datadir", self.datadir] + self.args
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env,
                                         start_new_session=True)
        self._reader = threading.Thread(target=self._tail, daemon=True)
        self._reader.start()
        return self

    def _tail(self):
        with open(self.log_path, "rb") as f:
            part = b""
            while True:
                exited = self.proc.poll() is not None
                chunk = f.readline()
                if chunk:
                    part += chunk
                    if part.endswith(b"\n"):
                        with self._cv:
                            self.lines.append(part.decode(errors="replace").rstrip("\n"))
                            self._cv.notify_all()
                        part = b""
                    continue
                if exited:
                    break
                time.sleep(0.05)
        with self._cv:
            self._cv.notify_all()


def start_simnode(tmp, blocks, txs):
    portfile = os.path.join(tmp, "simnode.port")
    log = open(os.path.join(tmp, "simnode.log"), "w")
    # --whitelist: the node answers conduitd's `mempool` snapshot, so the mempool
    # tables mirror the node's whole mempool (without it conduitd indexes the
    # relayed txs only; docs/OPERATIONS.md "Running against a real node": a
    # real node for the demo would be configured with whitelist=127.0.0.1).
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-m", "tests.simnode", "--regtest", "--port", "0",
         "--port-file", portfile, "--generate", str(blocks), "--txs-per-block",
         str(txs), "--seed", "42", "--whitelist", "--no-stdin", "--quiet"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if os.path.exists(portfile) and open(portfile).read().strip():
            return proc, int(open(portfile).read().strip())
        if proc.poll() is not None:
            raise SystemExit("simulated node failed:\n" + open(log.name).read())
        time.sleep(0.1)
    raise SystemExit("simulated node did not start")


STATE = "demo.json"


def keep_running(tmp, pg, sim, sim_port, daemon, datadir, http_url):
    """Writes the state --stop needs and a stop script; prints how to connect."""
    state = {"tmp": tmp, "datadir": datadir, "pg_base": pg.base, "pg_port": pg.port,
             "conduitd_pid": daemon.proc.pid, "conduitd_exe": daemon.exe,
             "simnode_pid": sim.pid, "simnode_port": sim_port, "http_url": http_url}
    with open(os.path.join(tmp, STATE), "w") as f:
        json.dump(state, f, indent=1)
    stop = os.path.join(tmp, "stop.sh")
    with open(stop, "w") as f:
        f.write("#!/bin/sh\n# stops what `scripts/demo.py --keep` left running, removes %s\n"
                "exec /usr/bin/python3 %s --stop %s\n"
                % (tmp, os.path.join(ROOT, "scripts", "demo.py"), tmp))
    os.chmod(stop, 0o755)
    cli_exe = os.path.join(BUILD, "src/daemon/conduit-cli")
    say("left running (--keep)")
    print(f"   PostgreSQL (pid {pg_pid(pg)}):\n"
          f"      psql -h {pg.sockdir} -p {pg.port} -U postgres -d postgres")
    if http_url:
        print(f"   HTTP API:\n      curl {http_url}/v1/status")
    print(f"   conduitd (pid {daemon.proc.pid}), log {daemon.log_path}:\n"
          f"      {cli_exe} status --datadir {datadir}\n"
          f"      {cli_exe} tx <txid> --datadir {datadir} --pg-conninfo '{pg.conninfo}'")
    print(f"   simulated node (pid {sim.pid}) on 127.0.0.1:{sim_port}, "
          f"log {os.path.join(tmp, 'simnode.log')}")
    print(f"   stop everything and remove {tmp}:\n      {stop}", flush=True)


def pg_pid(pg):
    try:
        with open(os.path.join(pg.datadir, "postmaster.pid")) as f:
            return int(f.readline())
    except (OSError, ValueError):
        return None


def pid_is(pid, word):
    """True if pid is a live (not zombie) process whose command line has word."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return word.encode() in f.read()
    except (OSError, IndexError):
        return False


def stop_pid(pid, word, what, timeout=60):
    if not pid_is(pid, word):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_is(pid, word):
        if time.monotonic() > deadline:
            print(f"{what} (pid {pid}) did not stop on SIGTERM: killing it", file=sys.stderr)
            os.kill(pid, signal.SIGKILL)
            deadline += 10
        time.sleep(0.1)
    print(f"stopped {what} (pid {pid})")


def stop_kept(tmp):
    """--stop: stops conduitd, the simulated node and PostgreSQL left by --keep."""
    try:
        with open(os.path.join(tmp, STATE)) as f:
            st = json.load(f)
    except OSError as e:
        raise SystemExit(f"demo.py --stop: {e} (not a directory left by --keep?)")
    # the daemon first: it holds connections to the other two
    stop_pid(st["conduitd_pid"], st["datadir"], "conduitd")
    stop_pid(st["simnode_pid"], "tests.simnode", "simulated node")
    if os.path.isdir(st["pg_base"]):
        pg = PgServer(port=st["pg_port"])
        pg.base, pg.proc_started = st["pg_base"], True
        pg.stop()
        print("stopped PostgreSQL")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"removed {tmp}")


def main():
    ap = argparse.ArgumentParser(
        prog="./dev run", description=__doc__,
        epilog="examples:\n  ./dev run --blocks 1000 --txs-per-block 100\n"
               "  ./dev run --blocks 50 --keep --http-listen 127.0.0.1:8085\n"
               "  scripts/demo.py --stop /tmp/conduitd-demo-XXXX   (what stop.sh runs)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=300, metavar="N",
                    help="blocks of the generated regtest chain (default 300)")
    ap.add_argument("--txs-per-block", type=int, default=40, metavar="K",
                    help="transactions per generated block (default 40)")
    ap.add_argument("--http-listen", metavar="ADDR",
                    help="also run conduitd's HTTP API on ADDR, e.g. 127.0.0.1:8085 "
                         "(port 0: a free port)")
    ap.add_argument("--keep", action="store_true",
                    help="leave PostgreSQL, the simulated node and conduitd running at the end, "
                         "print how to reach them and write a stop script")
    ap.add_argument("--stop", metavar="DIR",
                    help="stop what --keep left running in DIR and remove DIR")
    a = ap.parse_args()
    if a.stop:
        stop_kept(os.path.abspath(a.stop))
        return

    tmp = tempfile.mkdtemp(prefix="conduitd-demo-")
    pg = sim = daemon = None
    port = http_url = None
    kept = False
    try:
        say("starting a throw-away PostgreSQL server")
        pg = PgServer().start()
        print(f"   unix socket in {pg.sockdir}")

        say(f"starting the simulated BSV node with {a.blocks} generated regtest blocks")
        sim, port = start_simnode(tmp, a.blocks, a.txs_per_block)
        print(f"   listening on 127.0.0.1:{port}")

        say("starting conduitd --regtest")
        datadir = os.path.join(tmp, "data")
        args = ["--regtest", "--connect", f"127.0.0.1:{port}", "--pg_conninfo", pg.conninfo,
                "--status_interval", "2"]
        if a.http_listen:
            args += ["--http_listen", a.http_listen]
        daemon = LoggedDaemon(BUILD, datadir, args, os.path.join(tmp, "conduitd.log"))
        daemon.start()
        t0 = time.monotonic()
        if a.http_listen:
            m = daemon.wait_for_log(r"http: API on (\S+)", timeout=60)
            http_url = f"http://{m.group(1)}"
            print(f"   HTTP API on {http_url}")
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
        say("a wallet's view: balance and UTXOs of an address (conduit-cli, issue 14)")
        sc = pg.psql("SELECT encode(o.script, 'hex') FROM outputs o WHERE length(o.script) = 25 "
                     "AND substr(o.script, 1, 3) = '\\x76a914'::bytea "
                     "GROUP BY o.script ORDER BY count(*) DESC, 1 LIMIT 1").strip()
        if sc:
            addr = regtest_address(bytes.fromhex(sc)[3:23])
            for args in (["balance", addr], ["utxos", addr, "--limit", "5"]):
                print(f"\n$ conduit-cli {' '.join(args)} --regtest")
                r = cli(BUILD, args + ["--regtest", "--datadir", datadir, "--pg-conninfo",
                                       pg.conninfo], check=False)
                print((r.stdout.decode() + r.stderr.decode()).rstrip())
        if a.keep:
            keep_running(tmp, pg, sim, port, daemon, datadir, http_url)
            kept = True
        say("done")
    finally:
        if not kept:
            if daemon:
                daemon.stop()
            if sim:
                sim.terminate()
                sim.wait()
            if pg:
                pg.stop()
            if a.keep:  # failed or interrupted: the logs stay for a look
                print(f"kept {tmp} (logs); nothing left running")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


def regtest_address(hash160):
    """The regtest P2PKH address (version 111) of a hash160: base58check."""
    import hashlib
    data = bytes([111]) + hash160
    data += hashlib.sha256(hashlib.sha256(data).digest()).digest()[:4]
    n, s = int.from_bytes(data, "big"), ""
    while n:
        n, r = divmod(n, 58)
        s = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"[r] + s
    return s


if __name__ == "__main__":
    main()
