"""Running conduitd for real: systemd unit, docker-compose, sd_notify
readiness, signals (SIGHUP log reopen, SIGTERM clean stop), the status file
and `conduit-cli status`.

Two kinds of process are used:
- `ops_probe` (tests/unit/daemon/ops_probe.c): a minimal daemon built from the
  operations modules only (same option parser, cd_signals, cd_notify,
  cd_status). It proves those modules through real processes and signals
  whatever state the controller is in.
- the real `conduitd` against the simulated node; those tests skip while the
  controller is still the placeholder.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from daemon_util import Daemon, cli

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


# ---------------------------------------------------------------- helpers

class NotifySocket:
    """A fake systemd NOTIFY_SOCKET: collects the datagrams a daemon sends."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []
        self.cv = threading.Condition()
        self.stopping = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.cv:
                self.messages.append(data.decode())
                self.cv.notify_all()

    def wait_for(self, pattern, timeout=30, proc=None):
        """Returns the first message matching; raises on timeout, or soon
        after `proc` (a Popen) exits without having sent it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for m in self.messages:
                    if rx.search(m):
                        return m
                left = deadline - time.monotonic()
                if proc is not None and proc.poll() is not None:
                    left = min(left, 0.5)
                    deadline = min(deadline, time.monotonic() + 0.5)
                if left <= 0:
                    raise AssertionError(f"no notify message /{pattern}/ in {self.messages}")
                self.cv.wait(min(left, 0.5))

    def close(self):
        self.stopping = True
        self.t.join(2)
        self.sock.close()


def probe_exe(build_dir):
    p = os.path.join(build_dir, "tests/unit/daemon/ops_probe")
    if not os.path.exists(p):
        pytest.skip("ops_probe not built (unit tests disabled in this build)")
    return p


def start_probe(build_dir, datadir, args, env=None):
    d = Daemon(build_dir, str(datadir), list(args), env=env,
               exe=os.path.relpath(probe_exe(build_dir), build_dir))
    d.env.pop("NOTIFY_SOCKET", None)
    d.env.pop("JOURNAL_STREAM", None)
    if env:
        d.env.update(env)
    return d.start()


def wait_file_match(path, pattern, timeout=30):
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                text = f.read()
            if rx.search(text):
                return text
        time.sleep(0.1)
    text = open(path).read() if os.path.exists(path) else "<missing>"
    raise AssertionError(f"/{pattern}/ never appeared in {path}:\n{text[-3000:]}")


# ---------------------------------------------------------------- packaging

# systemd-analyze verify of the installed unit: test_ops_install.py


def test_docker_compose_config(tmp_path):
    dc = shutil.which("docker-compose")
    if dc is None:
        pytest.skip("docker-compose not installed")
    r = subprocess.run([dc, "-f", os.path.join(ROOT, "docker-compose.yml"), "config"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "postgres:" in r.stdout and "conduitd:" in r.stdout
    assert "conduitd-data" in r.stdout and "pgdata" in r.stdout
    dockerfile = open(os.path.join(ROOT, "Dockerfile")).read()
    assert re.search(r"^FROM debian:12", dockerfile, re.M)
    assert "meson setup" in dockerfile


def test_sample_config_matches_binary(build_dir):
    r = subprocess.run([os.path.join(build_dir, "src/daemon/conduitd"), "--sample-config"],
                       stdout=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 0
    assert r.stdout == open(os.path.join(ROOT, "conf", "conduitd.conf")).read(), \
        "regenerate: conduitd --sample-config > conf/conduitd.conf"


# ---------------------------------------------------------------- ops modules via the probe

def test_probe_notify_ready_and_status(build_dir, tmp_path):
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        d = start_probe(build_dir, tmp_path / "data",
                        ["--regtest", "--no-index", "--status-interval", "1"],
                        env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "2000000"})
        try:
            ns.wait_for(r"^READY=1$")
            ns.wait_for(r"^WATCHDOG=1$")
            m = ns.wait_for(r"^STATUS=syncing height=\d+/1000 ")
            assert re.search(r"blk/s .* MB/s .* tx/s ring \d+% workers 2/2 peers 1 eta ", m), m
            d.wait_for_log(r"progress: syncing height=")
            assert d.stop() == 0
            ns.wait_for(r"^STOPPING=1$")
        finally:
            d.kill()
    finally:
        ns.close()


def test_probe_sighup_reopens_log_and_reloads(build_dir, tmp_path):
    log = tmp_path / "probe.log"
    conf = tmp_path / "c.conf"
    conf.write_text(f"log_file = {log}\nstatus_interval = 1\nlog_level = info\n")
    d = start_probe(build_dir, tmp_path / "data", ["--regtest", "--no-index", "--conf",
                                                   str(conf)])
    try:
        wait_file_match(str(log), r"probe: ready")
        wait_file_match(str(log), r"progress: ")
        rotated = tmp_path / "probe.log.1"
        os.rename(log, rotated)
        conf.write_text(f"log_file = {log}\nstatus_interval = 1\nlog_level = debug\n"
                        "ring_size = 1G\n")
        d.signal(signal.SIGHUP)
        text = wait_file_match(str(log), r"probe: debug tick")   # new level applied
        assert "reload: log_level = debug (was info)" in text
        assert re.search(r"ring_size changed .* restart conduitd to apply", text)
        wait_file_match(str(log), r"progress: ")              # new lines go to the new file
        before = open(rotated).read()
        time.sleep(1.5)
        assert open(rotated).read() == before, "old file still written after SIGHUP"
        # an invalid file on reload keeps the daemon running with the old config
        conf.write_text("log_level = shouting\n")
        d.signal(signal.SIGHUP)
        wait_file_match(str(log), r"reload: .*log_level expects one of .*keeping the running")
        assert d.proc.poll() is None
        assert d.stop() == 0
    finally:
        d.kill()


def test_probe_sigterm_sigint_exit_zero_and_status(build_dir, tmp_path):
    datadir = tmp_path / "data"
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = start_probe(build_dir, datadir, ["--regtest", "--no-index", "--status-interval", "1"])
        try:
            d.wait_for_log(r"progress: syncing height=[1-9]")
            r = cli(build_dir, ["status", "--datadir", str(datadir)], check=False)
            assert r.returncode == 0, r.stderr
            out = r.stdout.decode()
            assert f"running (pid {d.proc.pid})" in out
            for field in ("height:", "best header 1000", "blocks/s", "MB/s", "tx/s", "eta:",
                          "ring:", "workers alive: 2 / 2", "peers:"):
                assert field in out, (field, out)
            r = cli(build_dir, ["status", "--datadir", str(datadir), "--json"], check=False)
            assert '"running": true' in r.stdout.decode()
            d.signal(sig)
            assert d.wait_exit(30) == 0
        finally:
            d.kill()
        r = cli(build_dir, ["status", "--datadir", str(datadir)], check=False)
        assert r.returncode == 1
        assert "NOT RUNNING" in r.stdout.decode() and "stopped" in r.stdout.decode()


def test_cli_status_finds_default_datadir(build_dir, tmp_path):
    env = {"HOME": str(tmp_path)}
    r = cli(build_dir, ["status", "--regtest"], check=False, env=env)
    assert r.returncode == 1
    assert f"{tmp_path}/.conduitd/regtest/status" in r.stderr.decode()
    d = start_probe(build_dir, tmp_path / ".conduitd" / "regtest", ["--regtest", "--no-index"])
    try:
        d.wait_for_log(r"probe: ready")
        r = cli(build_dir, ["status", "--regtest"], check=False, env=env)
        assert r.returncode == 0, r.stderr
        assert "conduitd" in r.stdout.decode() and "(regtest)" in r.stdout.decode()
    finally:
        d.stop()
    r = cli(build_dir, ["status", "--bogus"], check=False, env=env)
    assert r.returncode == 2


# ---------------------------------------------------------------- the real daemon

def skip_if_placeholder(d):
    text = d.log_text()
    if "controller not implemented" in text:
        pytest.skip("controller is still the placeholder")


def _real_daemon(build_dir, datadir, args, env):
    d = Daemon(build_dir, str(datadir), args, env=env)
    d.env.pop("JOURNAL_STREAM", None)
    if "NOTIFY_SOCKET" not in (env or {}):
        d.env.pop("NOTIFY_SOCKET", None)
    return d.start()


def test_conduitd_notify_sighup_sigterm(build_dir, tmp_path, simnode):
    ns = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "conduitd.log"
    d = _real_daemon(build_dir, tmp_path / "data",
                     ["--regtest", "--no-index", "--connect", f"127.0.0.1:{simnode.port}",
                      "--status-interval", "1", "--log-file", str(log)],
                     {"NOTIFY_SOCKET": ns.path})
    try:
        try:
            ns.wait_for(r"^READY=1$", timeout=60, proc=d.proc)
        except AssertionError:
            d.wait_exit(10) if d.proc.poll() is None else None
            if os.path.exists(log):
                d.lines.extend(open(log).read().splitlines())
            skip_if_placeholder(d)
            raise
        ns.wait_for(r"^STATUS=", timeout=60)
        wait_file_match(str(log), r"conduitd .* starting")
        os.rename(log, tmp_path / "conduitd.log.1")
        d.signal(signal.SIGHUP)
        wait_file_match(str(log), r"SIGHUP|reload")
        r = cli(build_dir, ["status", "--datadir", str(tmp_path / "data")], check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        t0 = time.monotonic()
        assert d.stop(timeout=60) == 0
        assert time.monotonic() - t0 < 60
        ns.wait_for(r"^STOPPING=1$")
    finally:
        d.kill()
        ns.close()


def test_conduitd_regtest_out_of_the_box(build_dir, tmp_path, pg):
    """`conduitd --regtest` with no other flags: default datadir under $HOME,
    PostgreSQL through the PG* defaults, the node on 127.0.0.1:18444."""
    from tests.simnode import SimNode
    try:
        node = SimNode(generate=20, seed=2, port=18444)
        node.start()
    except OSError:
        pytest.skip("127.0.0.1:18444 is busy")
    env = dict(pg.env())
    env["HOME"] = str(tmp_path)
    try:
        d = Daemon(build_dir, "", [], env=env)
        d.env.pop("NOTIFY_SOCKET", None)
        d.env.pop("JOURNAL_STREAM", None)
        # no --datadir: run the binary by hand
        d.proc = subprocess.Popen([d.exe, "--regtest"], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, env=d.env,
                                  stdin=subprocess.DEVNULL)
        d._reader = threading.Thread(target=d._read, daemon=True)
        d._reader.start()
        try:
            try:
                d.wait_for_log(r"starting: network regtest, datadir " +
                               re.escape(str(tmp_path / ".conduitd" / "regtest")), timeout=30)
                d.wait_for_log(r"height=20\b|headers synced|synced", timeout=120)
            except AssertionError:
                skip_if_placeholder(d)
                raise
            r = cli(build_dir, ["status", "--regtest"], check=False, env={"HOME": str(tmp_path)})
            assert r.returncode == 0, r.stdout + r.stderr
            assert d.stop(timeout=60) == 0
        finally:
            d.kill()
    finally:
        node.stop()


def _status(build_dir, datadir):
    r = cli(build_dir, ["status", "--datadir", str(datadir), "--json"], check=False)
    import json
    return json.loads(r.stdout.decode()) if r.stdout else None


def test_conduitd_sigterm_mid_sync_then_restart_continues(build_dir, tmp_path,
                                                          simnode_factory):
    """SIGTERM while syncing exits 0 and keeps what was stored: a restart with
    no peer at all starts from the stored height, and with the peer back it
    fetches only what is missing."""
    node = simnode_factory(generate=3000, seed=5)
    datadir = tmp_path / "data"
    args = ["--regtest", "--no-index", "--status-interval", "1"]
    d = _real_daemon(build_dir, datadir, args + ["--connect", f"127.0.0.1:{node.port}"], None)
    try:
        try:
            # stop as early as possible: right after the handshake
            d.wait_for_log(r"peer .*: ready", timeout=120)
        except AssertionError:
            skip_if_placeholder(d)
            raise
        assert d.stop(timeout=60) == 0
    finally:
        d.kill()
    st = _status(build_dir, datadir)
    assert st is not None and st["state"] == "stopped" and not st["running"]
    m = re.findall(r"controller stopped: headers height=(\d+)", d.log_text())
    assert m, d.log_text()
    stored = int(m[-1])
    assert st["header_height"] <= stored

    # restart with the peer unreachable: the stored headers are loaded
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    d = _real_daemon(build_dir, datadir, args + ["--connect", f"127.0.0.1:{dead_port}"], None)
    try:
        m = d.wait_for_log(r"header tree .*: \d+ headers, height=(\d+)", timeout=60)
        assert int(m.group(1)) == stored
        assert d.stop(timeout=60) == 0
    finally:
        d.kill()

    # and with the peer back, it fetches only the missing headers
    d = _real_daemon(build_dir, datadir, args + ["--connect", f"127.0.0.1:{node.port}"], None)
    try:
        m = d.wait_for_log(r"header tree .*: \d+ headers, height=(\d+)", timeout=60)
        assert int(m.group(1)) == stored
        m = d.wait_for_log(r"headers synced height=3000 .*\((\d+) new headers this run",
                           timeout=180)
        assert int(m.group(1)) == 3000 - stored
        assert d.stop(timeout=60) == 0
    finally:
        d.kill()


def test_probe_journal_format(build_dir, tmp_path):
    """Under systemd (stderr is the stream JOURNAL_STREAM names) lines carry a
    <priority> prefix and no timestamp; otherwise they start with one."""
    r, w = os.pipe()
    st = os.fstat(w)
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    p = subprocess.Popen([probe_exe(build_dir), "--regtest", "--no-index", "--datadir",
                          str(tmp_path / "d")], stdout=w, stderr=w, env=env,
                         stdin=subprocess.DEVNULL)
    os.close(w)
    buf = b""
    deadline = time.monotonic() + 30
    with os.fdopen(r, "rb", buffering=0) as f:
        while b"probe: ready" not in buf and time.monotonic() < deadline:
            chunk = f.read(4096)
            if not chunk:
                break
            buf += chunk
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    first = buf.decode().splitlines()[0]
    assert re.match(r"^<6>INFO ops-probe\[\d+\]: ", first), first
    # a JOURNAL_STREAM that is not our stderr (inherited by a shell) is ignored
    env["JOURNAL_STREAM"] = "1:2"
    p = subprocess.run([probe_exe(build_dir), "--regtest", "--no-index", "--datadir",
                        str(tmp_path / "d"), "--log-level", "bogus"], env=env,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert p.returncode == 2
    d = start_probe(build_dir, tmp_path / "d2", ["--regtest", "--no-index"],
                    env={"JOURNAL_STREAM": "1:2"})
    try:
        m = d.wait_for_log(r"probe: ready")
        line = [l for l in d.lines if "probe: ready" in l][0]
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO ", line), line
    finally:
        d.stop()


def test_conduitd_datadir_locked(build_dir, tmp_path, simnode):
    datadir = tmp_path / "data"
    args = ["--regtest", "--no-index", "--connect", f"127.0.0.1:{simnode.port}"]
    d = _real_daemon(build_dir, datadir, args, None)
    try:
        try:
            d.wait_for_log(r"starting: network regtest", timeout=60)
            d.wait_for_log(r"controller running|headers", timeout=60)
        except AssertionError:
            skip_if_placeholder(d)
            raise
        r = subprocess.run([os.path.join(build_dir, "src/daemon/conduitd"), "--datadir",
                            str(datadir)] + args, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        assert r.returncode == 2
        assert r.stderr.strip() == (f"conduitd: data directory {datadir} is in use by another "
                                    f"conduitd (pid {d.proc.pid})"), r.stderr
        assert d.proc.poll() is None
        assert d.stop() == 0
    finally:
        d.kill()


def test_cli_status_watch(build_dir, tmp_path):
    datadir = tmp_path / "data"
    d = start_probe(build_dir, datadir, ["--regtest", "--no-index", "--status-interval", "1"])
    try:
        d.wait_for_log(r"probe: ready")
        w = subprocess.Popen([os.path.join(build_dir, "src/daemon/conduit-cli"), "status",
                              "--watch", "--datadir", str(datadir)], stdout=subprocess.PIPE,
                             text=True)
        heights = []
        try:
            while len(heights) < 3:
                line = w.stdout.readline()
                assert line, "watch ended early"
                m = re.search(r"height=(\d+)/1000 .* blk/s .* eta ", line)
                assert m, line
                heights.append(int(m.group(1)))
            assert heights == sorted(heights) and heights[-1] > heights[0]
            assert d.stop() == 0
            rest = w.stdout.read()
            assert w.wait(30) == 1
            assert "(daemon not running)" in rest.splitlines()[-1]
        finally:
            w.kill()
    finally:
        d.kill()
