#!/usr/bin/python3
"""Webhook delivery benchmark (issue 16, docs/WEBHOOKS.md).

A throw-away PostgreSQL and the simulated node (a short regtest chain);
conduitd with http_listen and an API key; R registrations (kinds: tip) to one
local receiver (http.server, threaded, answers 200 at once, checks nothing).
Then N events are written to the log in one transaction (cd_emit('tip', ...),
synthetic bodies) and the clock runs until the receiver has all N x R
deliveries: deliveries/s end to end and the webhook process's CPU per
delivery (it signs, POSTs, waits for the answer and commits the cursor, one
event in flight per registration). Figures move with the machine's load (2
shared cores, the receiver in Python on the same cores).

usage: /usr/bin/python3 bench/http/bench_hooks.py [--build build] [--events 2000]
           [--hooks 1,10]
"""
import argparse
import http.server
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))

from daemon_util import Daemon  # noqa: E402
from pgserver import PgServer  # noqa: E402
from simnode_fixtures import SimNodeProcess  # noqa: E402


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Count:
    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()


def receiver(count):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a production receiver would

        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            with count.lock:
                count.n += 1

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--hooks", default="1,10")
    a = ap.parse_args()
    pg = PgServer().start()
    node = d = None
    tmp = tempfile.mkdtemp(prefix="bench_hooks.")
    count = Count()
    srv = receiver(count)
    url = "http://127.0.0.1:%d/hook" % srv.server_address[1]
    try:
        pg.psql("CREATE DATABASE bench")
        ci = pg.conninfo.replace("dbname=postgres", "") + " dbname=bench"
        node = SimNodeProcess("--regtest", "--generate", "5")
        d = Daemon(a.build, os.path.join(tmp, "d"),
                   ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                    "--parser-workers", "1", "--ring-size", "16M", "--unit-size", "64K",
                    "--http-listen", "127.0.0.1:0", "--api-keys", "bench"]).start()
        port = int(d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        pid = int(d.wait_for_log(r"webhook: delivery process running \(pid (\d+)\)",
                                 timeout=30).group(1))
        deadline = time.monotonic() + 300
        while True:  # indexed: the schema (and webhooks) exist
            try:
                if pg.psql("SELECT coalesce(max(height), -1) FROM index_tip",
                           db="bench").strip() == "5":
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline and d.proc.poll() is None, d.log_text()[-3000:]
            time.sleep(0.2)
        hooks = []
        for r in [int(x) for x in a.hooks.split(",")]:
            while len(hooks) < r:
                rq = urllib.request.Request(
                    "http://127.0.0.1:%d/v1/webhooks" % port,
                    data=json.dumps({"url": url, "kinds": ["tip"]}).encode(),
                    headers={"Content-Type": "application/json",
                             "Authorization": "Bearer bench"}, method="POST")
                with urllib.request.urlopen(rq, timeout=30) as res:
                    hooks.append(json.loads(res.read())["id"])
            time.sleep(6)  # the delivery process has reloaded (and the chain's tips are out)
            base = count.n
            want = a.events * r
            c0, t0 = cpu_s(pid), time.monotonic()
            pg.psql("SELECT count(cd_emit('tip', json_build_object('height', g, 'hash', 'bench')))"
                    " FROM generate_series(1, %d) g" % a.events, db="bench")
            deadline = t0 + 600
            while count.n - base < want:
                assert time.monotonic() < deadline and d.proc.poll() is None, \
                    (count.n - base, d.log_text()[-3000:])
                time.sleep(0.01)
            t, c = time.monotonic() - t0, cpu_s(pid) - c0
            print(f"{r:3d} registration(s) x {a.events} events: {want} deliveries in {t:.2f} s = "
                  f"{want / t:,.0f} deliveries/s; webhook process CPU "
                  f"{c * 1e6 / want:.0f} us/delivery")
    finally:
        if d:
            d.stop()
        if node:
            node.stop()
        srv.shutdown()
        pg.stop()


if __name__ == "__main__":
    main()
