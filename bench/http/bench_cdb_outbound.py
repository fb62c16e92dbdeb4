#!/usr/bin/python3
"""ConduitDB reference-server delivery benchmark (issue 16, docs/CONDUITDB_API.md,
"conduitd's POST to the reference server").

A throw-away PostgreSQL and the simulated node (a short regtest chain); conduitd with
conduitdb_reference_url pointing at a local receiver (http.server, threaded, keep-alive, answers
200 at once, checks nothing). Two accounts register the same K keys (POST
/api/v1/transaction/filter). Then B "blocks" of synthetic key events are written to the log in
one transaction (cd_emit('key', ...): M matches per block, spread over the K keys, each
matching both accounts) and the clock runs until the receiver has all B POSTs: batches/s end to
end and the webhook process's CPU per batch and per match (it reads the log joined with the
registrations, builds ConduitDB's JSON, POSTs, waits for the answer and commits the cursor, one
batch in flight). Figures move with the machine's load (2 shared cores, the receiver in Python on
the same cores).

usage: /usr/bin/python3 bench/http/bench_cdb_outbound.py [--build build] [--blocks 1000]
           [--matches 1,20] [--keys 50]
"""
import argparse
import hashlib
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
        self.posts = 0
        self.matches = 0
        self.lock = threading.Lock()


def receiver(count):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as aiohttp (the reference server) does

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            with count.lock:
                count.posts += 1
                count.matches += sum(len(e["matches"]) for e in body["entries"])

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--blocks", type=int, default=1000)
    ap.add_argument("--matches", default="1,20")
    ap.add_argument("--keys", type=int, default=50)
    a = ap.parse_args()
    pg = PgServer().start()
    node = d = None
    tmp = tempfile.mkdtemp(prefix="bench_cdb_outbound.")
    count = Count()
    srv = receiver(count)
    try:
        pg.psql("CREATE DATABASE bench")
        ci = pg.conninfo.replace("dbname=postgres", "") + " dbname=bench"
        node = SimNodeProcess("--regtest", "--generate", "5")
        d = Daemon(a.build, os.path.join(tmp, "d"),
                   ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                    "--parser-workers", "1", "--ring-size", "16M", "--unit-size", "64K",
                    "--http-listen", "127.0.0.1:0",
                    "--conduitdb-reference-url", "http://127.0.0.1:%d" % srv.server_address[1]
                    ]).start()
        port = int(d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        pid = int(d.wait_for_log(r"webhook: delivery process running \(pid (\d+)\)",
                                 timeout=30).group(1))
        d.wait_for_log(r"conduitdb reference server: POSTing", timeout=60)
        keys = [hashlib.sha256(b"bench-%d" % i).hexdigest() for i in range(a.keys)]
        for acct in (1, 2):
            rq = urllib.request.Request(
                "http://127.0.0.1:%d/api/v1/transaction/filter?account_id=%d&date_created=%d"
                % (port, acct, int(time.time())),
                data=json.dumps([[k, 3600] for k in keys]).encode(),
                headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(rq, timeout=30) as res:
                assert res.status == 200
        for m in [int(x) for x in a.matches.split(",")]:
            base_p, base_m = count.posts, count.matches
            c0, t0 = cpu_s(pid), time.monotonic()
            # block b's m matches: consecutive events with the same block hash (one batch);
            # each key is registered by both accounts (2 entries per batch)
            pg.psql(
                "SELECT count(cd_emit('key', json_build_object("
                " 'key', (ARRAY[%s])[1 + g %% %d], 'txid', lpad(to_hex(g), 64, '0'), 'idx', 0,"
                " 'flags', 1, 'state', 'confirmed', 'height', 1000 + g / %d,"
                " 'block', lpad(to_hex(%d + g / %d), 64, 'b'))))"
                " FROM generate_series(0, %d) g"
                % (",".join("'%s'" % k for k in keys), a.keys, m, m * 10**6, m,
                   a.blocks * m - 1), db="bench")
            deadline = t0 + 600
            while count.posts - base_p < a.blocks:
                assert time.monotonic() < deadline and d.proc.poll() is None, \
                    (count.posts - base_p, d.log_text()[-3000:])
                time.sleep(0.01)
            t, c = time.monotonic() - t0, cpu_s(pid) - c0
            got_m = count.matches - base_m
            assert count.posts - base_p == a.blocks and got_m == 2 * a.blocks * m, \
                (count.posts - base_p, got_m)
            print(f"{a.blocks} blocks x {m} match(es) x 2 accounts: {a.blocks} POSTs in {t:.2f} s "
                  f"= {a.blocks / t:,.0f} batches/s; webhook process CPU "
                  f"{c * 1e6 / a.blocks:.0f} us/batch, {c * 1e6 / got_m:.1f} us/match")
    finally:
        if d:
            d.stop()
        if node:
            node.stop()
        srv.shutdown()
        pg.stop()


if __name__ == "__main__":
    main()
