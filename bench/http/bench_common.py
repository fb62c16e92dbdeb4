"""What the HTTP benchmarks (bench_http.py, bench_cdb.py) share: a conduitd
serving a generated regtest chain over HTTP, and reading a process's CPU time
and memory from /proc.

BenchChain starts a throw-away PostgreSQL (database `bench`), the simulated
node (a separate process) generating `blocks` x `txs_per_block`, and conduitd
indexing it with `--http-listen 127.0.0.1:0`; it returns once the index tip
is at the last block. The HTTP API runs in several server processes sharing
the listening socket (HTTP_PROCS in src/api/cd_http.c, "http: server N serving
(pid P)" in the log): a figure of server CPU or memory is summed over all of
them (http_pids()), since any one may take a connection.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))

from daemon_util import Daemon  # noqa: E402
from pgserver import PgServer  # noqa: E402
from simnode_fixtures import SimNodeProcess  # noqa: E402

# one server process before issue 11 ("http: serving"), HTTP_PROCS after
SERVING = r"http: (?:server \d+ )?serving \(pid (\d+)\)"


def add_chain_args(ap):
    """The options every HTTP benchmark takes (argparse)."""
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--blocks", type=int, default=200)
    ap.add_argument("--txs-per-block", type=int, default=50)


def cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    """VmRSS of a process, in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class BenchChain:
    """PostgreSQL + simulated node + conduitd with its HTTP API, as a context
    manager: `with BenchChain(a, "bench_x.") as c:` (a from add_chain_args);
    everything is stopped on leaving. Attributes: pg, ci (conninfo of the
    bench database), node, d (the Daemon), datadir, port (the HTTP port)."""

    def __init__(self, args, prefix):
        self.a = args
        self.prefix = prefix
        self.pg = self.node = self.d = None

    def q(self, sql):
        """Runs sql in the bench database; returns its output, stripped."""
        return self.pg.psql(sql, db="bench").strip()

    def tip(self):
        try:
            return self.q("SELECT coalesce(max(height), -1) FROM index_tip")
        except subprocess.CalledProcessError:  # before conduitd's migrations
            return "-1"

    def http_pids(self):
        """The pids of the HTTP server processes that have logged so far."""
        return [int(p) for p in re.findall(SERVING, self.d.log_text())]

    def __enter__(self):
        a = self.a
        try:
            self.pg = PgServer().start()
            self.pg.psql("CREATE DATABASE bench")
            self.ci = self.pg.conninfo.replace("dbname=postgres", "") + " dbname=bench"
            self.node = SimNodeProcess("--regtest", "--generate", str(a.blocks),
                                       "--txs-per-block", str(a.txs_per_block))
            self.datadir = os.path.join(tempfile.mkdtemp(prefix=self.prefix), "d")
            self.d = Daemon(a.build, self.datadir,
                            ["--regtest", "--connect", "127.0.0.1:%d" % self.node.port,
                             "--pg-conninfo", self.ci, "--parser-workers", "1",
                             "--ring-size", "64M", "--catchup-indexes", "live",
                             "--http-listen", "127.0.0.1:0"]).start()
            m = self.d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30)
            self.port = int(m.group(1))
            self.d.wait_for_log(SERVING, timeout=30)
            deadline = time.monotonic() + 600
            while self.tip() != str(a.blocks):
                assert time.monotonic() < deadline and self.d.proc.poll() is None, \
                    self.d.log_text()[-3000:]
                time.sleep(0.2)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.d:
            self.d.stop()
        if self.node:
            self.node.stop()
        if self.pg:
            self.pg.stop()
        return False
