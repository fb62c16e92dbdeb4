"""What the HTTP benchmarks (bench_http.py, bench_cdb.py, bench_cdb_notify.py,
bench_events.py, bench_hooks.py, bench_cdb_outbound.py) share: a conduitd
serving a generated regtest chain over HTTP, reading a process's CPU time and
memory from /proc, and a local receiver of conduitd's POSTs (Receiver).

BenchChain starts a throw-away PostgreSQL (database `bench`), the simulated
node (a separate process) generating `blocks` x `txs_per_block`, and conduitd
indexing it with `--http-listen 127.0.0.1:0`; it returns once every HTTP
server process is serving and the index tip is at the last block. The HTTP
API runs in several server processes sharing the listening socket
(HTTP_PROCS in src/api/cd_http_int.h, "http: server N serving (pid P)" in the
log): a figure of server CPU or memory is summed over all of them
(http_pids()), since any one may take a connection.
"""
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))

from daemon_util import Daemon  # noqa: E402
from pgserver import PgServer  # noqa: E402
from simnode_fixtures import SimNodeProcess  # noqa: E402

# one server process before issue 11 ("http: serving"), HTTP_PROCS after
SERVING = r"http: (?:server (\d+) )?serving \(pid (\d+)\)"
HTTP_PROCS = 4  # src/api/cd_http_int.h

# conduitd's options of most benchmarks, beside the chain, PostgreSQL and HTTP ones
DAEMON_ARGS = ("--parser-workers", "1", "--ring-size", "64M", "--catchup-indexes", "live")


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


class Receiver:
    """A receiver of conduitd's POSTs (webhooks, ConduitDB's reference server) on
    127.0.0.1: http.server, threaded, keep-alive (as a production receiver, or aiohttp for the
    reference server, would), answers 200 at once with an empty body. Counts the POSTs in
    `posts`; count(body) -> int, when given, is added up in `items` (e.g. matches per body).
    Both are updated under `lock`, after the answer. Stop it with shutdown()."""

    def __init__(self, count=None):
        self.posts = 0
        self.items = 0
        self.lock = threading.Lock()
        rcv = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                n = count(body) if count else 0
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with rcv.lock:
                    rcv.posts += 1
                    rcv.items += n

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, path=""):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def shutdown(self):
        self.srv.shutdown()


class BenchChain:
    """PostgreSQL + simulated node + conduitd with its HTTP API, as a context
    manager: `with BenchChain(a, "bench_x.") as c:` (a from add_chain_args:
    a.build, a.blocks, a.txs_per_block); everything is stopped on leaving.
    blocks / txs_per_block override a's (txs_per_block None: the node's
    default), node_args are more options of the node, daemon_args replace
    DAEMON_ARGS. Attributes: pg, ci (conninfo of the bench database), node,
    d (the Daemon), datadir, port (the HTTP port), blocks."""

    def __init__(self, args, prefix, blocks=None, txs_per_block=None, node_args=(),
                 daemon_args=DAEMON_ARGS):
        self.a = args
        self.prefix = prefix
        self.blocks = getattr(args, "blocks", None) if blocks is None else blocks
        self.txs_per_block = (getattr(args, "txs_per_block", None) if txs_per_block is None
                              else txs_per_block)
        self.node_args = list(node_args)
        self.daemon_args = list(daemon_args)
        self.pg = self.node = self.d = None

    def q(self, sql):
        """Runs sql in the bench database; returns its output, stripped."""
        return self.pg.psql(sql, db="bench").strip()

    def tip(self):
        """The index tip's height as text, "-1" before the first block or the schema."""
        try:
            return self.q("SELECT coalesce(max(height), -1) FROM index_tip")
        except subprocess.CalledProcessError:  # before conduitd's migrations
            return "-1"

    def wait_tip(self, height, timeout=900):
        """Waits until the index tip is at height or above (the daemon must stay up)."""
        deadline = time.monotonic() + timeout
        while int(self.tip()) < height:
            assert time.monotonic() < deadline and self.d.proc.poll() is None, \
                self.d.log_text()[-3000:]
            time.sleep(0.05)

    def http_pids(self):
        """The pids of the HTTP server processes: the last one each server index logged."""
        pids = {}
        for i, p in re.findall(SERVING, self.d.log_text()):
            pids[i] = int(p)
        return list(pids.values())

    def __enter__(self):
        a = self.a
        try:
            self.pg = PgServer().start()
            self.pg.psql("CREATE DATABASE bench")
            self.ci = self.pg.conninfo.replace("dbname=postgres", "") + " dbname=bench"
            node_args = ["--regtest", "--generate", str(self.blocks)]
            if self.txs_per_block is not None:
                node_args += ["--txs-per-block", str(self.txs_per_block)]
            self.node = SimNodeProcess(*(node_args + self.node_args))
            self.datadir = os.path.join(tempfile.mkdtemp(prefix=self.prefix), "d")
            self.d = Daemon(os.path.abspath(a.build), self.datadir,
                            ["--regtest", "--connect", "127.0.0.1:%d" % self.node.port,
                             "--pg-conninfo", self.ci, "--http-listen", "127.0.0.1:0"]
                            + self.daemon_args).start()
            m = self.d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30)
            self.port = int(m.group(1))
            deadline = time.monotonic() + 60
            # every server process (a build before issue 11 had one: "http: serving")
            while (len(self.http_pids()) < HTTP_PROCS
                   and not re.search(r"http: serving \(pid", self.d.log_text())):
                assert time.monotonic() < deadline and self.d.proc.poll() is None, \
                    self.d.log_text()[-3000:]
                time.sleep(0.05)
            self.wait_tip(self.blocks, timeout=600)
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
