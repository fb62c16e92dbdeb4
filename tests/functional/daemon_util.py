"""Helpers to run conduitd / conduit-cli as real processes in tests.

    d = Daemon(build_dir, datadir, ["--regtest", "--connect", f"127.0.0.1:{port}"])
    d.start()
    d.wait_for_log(r"headers synced .* height=116", timeout=60)
    d.stop()            # SIGTERM, waits, returns exit code
    d.kill()            # SIGKILL
    cli(build_dir, ["status", "--datadir", datadir])  -> CompletedProcess
"""

import os
import re
import signal
import subprocess
import threading
import time


class Daemon:
    def __init__(self, build_dir, datadir, args, env=None, exe="src/daemon/conduitd"):
        self.exe = os.path.join(build_dir, exe)
        self.datadir = datadir
        self.args = list(args)
        self.env = dict(os.environ)
        if env:
            self.env.update(env)
        self.proc = None
        self.lines = []
        self._cv = threading.Condition()
        self._reader = None

    def start(self):
        cmd = [self.exe, "--datadir", self.datadir] + self.args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=self.env,
                                     stdin=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def log_text(self):
        with self._cv:
            return "\n".join(self.lines)

    def wait_for_log(self, pattern, timeout=60, start=0):
        """Waits until a log line (index >= start) matches; returns the match.
        Raises AssertionError with the log tail on timeout or process exit."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self._cv:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                if self.proc.poll() is not None and i >= len(self.lines):
                    # drain: the reader may still be appending
                    self._cv.wait(0.2)
                    if i >= len(self.lines):
                        raise AssertionError(
                            f"daemon exited ({self.proc.returncode}) before /{pattern}/:\n"
                            + "\n".join(self.lines[-40:]))
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    # the periodic progress lines and the per-block lines
                    # would fill the tail: the others say what the daemon
                    # did meanwhile
                    rest = [x for x in self.lines
                            if " progress: " not in x and "blocksync: stored block" not in x]
                    raise AssertionError(f"timeout waiting for /{pattern}/:\n"
                                         + "\n".join(rest[-60:]))
                self._cv.wait(min(left, 0.5))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=60):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("daemon did not stop on SIGTERM:\n" + self.log_text()[-4000:])
        self._drain()
        return rc

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait_exit(self, timeout=30):
        rc = self.proc.wait(timeout)
        self._drain()
        return rc

    def _drain(self, timeout=10):
        """The process has exited, but its last lines may still sit in the
        pipe, not yet read by the reader thread (a test reading log_text()
        right after wait_exit() missed the daemon's last ERROR line): wait
        for the reader to see end of file. Bounded: a surviving grandchild
        could hold the pipe open."""
        if self._reader is not None:
            self._reader.join(timeout)


def cli(build_dir, args, check=True, timeout=120, env=None, input=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([os.path.join(build_dir, "src/daemon/conduit-cli")] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=check, timeout=timeout, env=e, input=input)
