"""The README's main command (./dev run -> scripts/demo.py) keeps working:
it indexes a generated chain and its documented queries return rows; ./dev run
passes its arguments on; --keep leaves the three processes running and
reachable, and its stop script stops them."""
import json
import os
import re
import signal
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_indexes_and_queries(build_dir):
    env = dict(os.environ, CD_BUILD_DIR=build_dir)
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "demo.py"),
                        "--blocks", "30", "--txs-per-block", "8"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=600)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, out[-4000:]
    assert re.search(r"indexed to height 30: \d+ transactions", out), out[-4000:]
    assert re.search(r"state:\s+synced", out), out[-4000:]
    assert re.search(r"\|\s+30\s*\n\(1 row\)", out)            # best tip at height 30
    assert "-- where is tx" in out and '"targetType": "hash"' in out  # tx + merkle proof
    # a wallet's view (issue 14): a balance and a list of UTXOs of an address
    assert re.search(r"conduit-cli balance [mn]\w+ --regtest\nconfirmed \d+\nunconfirmed \d+\n"
                     r"utxos [1-9]\d*", out), out[-4000:]
    assert re.search(r"conduit-cli utxos [mn]\w+ --limit 5 --regtest\n([0-9a-f]{64} \d+ \d+ \d+\n)+",
                     out), out[-4000:]
    assert "== done" in out


def test_dev_run_forwards_arguments():
    """./dev run passes its arguments to the demo (--help: no packages, no build)."""
    p = subprocess.run([os.path.join(ROOT, "dev"), "run", "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, out[-4000:]
    assert "usage: ./dev run" in out and "--blocks N" in out and "--keep" in out, out[-4000:]


def alive(pid):
    """pid exists and is not a zombie (kept processes are reparented away from us)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_demo_keep_leaves_everything_running(build_dir):
    env = dict(os.environ, CD_BUILD_DIR=build_dir)
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "demo.py"),
                        "--blocks", "15", "--txs-per-block", "4", "--keep",
                        "--http-listen", "127.0.0.1:0"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=600)
    out = p.stdout.decode(errors="replace")
    kept = out.partition("left running (--keep)")[2]
    pids = [int(x) for x in re.findall(r"\(pid (\d+)\)", kept)]
    stop = re.search(r"^\s+(/\S+/stop\.sh)$", out, re.M)
    try:
        assert p.returncode == 0, out[-4000:]
        assert re.search(r"indexed to height 15: \d+ transactions", out), out[-4000:]
        assert len(pids) == 3 and stop, out[-3000:]
        # PostgreSQL answers with the printed psql line
        m = re.search(r"^\s+(psql -h \S+ -p \d+ -U postgres -d postgres)$", out, re.M)
        assert m, out[-3000:]
        q = subprocess.run(m.group(1).split() + ["-XAtc", "SELECT height FROM best_tip"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        assert q.stdout.decode().strip() == "15", q.stdout
        # the HTTP API answers
        m = re.search(r"curl (http://\S+)/v1/status", out)
        assert m, out[-3000:]
        with urllib.request.urlopen(m.group(1) + "/v1/tip", timeout=30) as r:
            assert json.loads(r.read())["height"] == 15
        # conduit-cli with the printed data directory sees a running daemon
        m = re.search(r"conduit-cli status --datadir (\S+)", out)
        r = subprocess.run([os.path.join(build_dir, "src/daemon/conduit-cli"), "status",
                            "--datadir", m.group(1)], stdout=subprocess.PIPE, timeout=60)
        assert r.returncode == 0 and b"running" in r.stdout, r.stdout
        # the simulated node answers a p2p handshake and ping
        m = re.search(r"simulated node \(pid \d+\) on (127\.0\.0\.1:\d+)", out)
        r = subprocess.run([os.path.join(build_dir, "src/daemon/conduit-cli"), "ping",
                            "--regtest", "--connect", m.group(1), "--count", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        assert r.returncode == 0, r.stdout
        # the stop script stops all three and removes the directory
        tmp = os.path.dirname(stop.group(1))
        r = subprocess.run([stop.group(1)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=180)
        assert r.returncode == 0, r.stdout
        assert not os.path.exists(tmp)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in pids), r.stdout
    finally:
        if stop and os.path.exists(stop.group(1)):
            subprocess.run([stop.group(1)], timeout=180)
        for pid in pids:  # whatever a failed stop left
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
