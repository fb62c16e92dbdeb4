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
import threading
import time
import urllib.request

from bench_common import ROOT, BenchChain, cpu_s


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
    count = Count()
    srv = receiver(count)
    url = "http://127.0.0.1:%d/hook" % srv.server_address[1]
    try:
        with BenchChain(a, "bench_hooks.", blocks=5, daemon_args=(
                "--parser-workers", "1", "--ring-size", "16M", "--unit-size", "64K",
                "--api-keys", "bench")) as ch:
            run(a, ch, count, url)
    finally:
        srv.shutdown()


def run(a, ch, count, url):
    """Registers the hooks, emits the events and times their deliveries."""
    port = ch.port
    pid = int(ch.d.wait_for_log(r"webhook: delivery process running \(pid (\d+)\)",
                                timeout=30).group(1))
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
        ch.q("SELECT count(cd_emit('tip', json_build_object('height', g, 'hash', 'bench')))"
             " FROM generate_series(1, %d) g" % a.events)
        deadline = t0 + 600
        while count.n - base < want:
            assert time.monotonic() < deadline and ch.d.proc.poll() is None, \
                (count.n - base, ch.d.log_text()[-3000:])
            time.sleep(0.01)
        t, c = time.monotonic() - t0, cpu_s(pid) - c0
        print(f"{r:3d} registration(s) x {a.events} events: {want} deliveries in {t:.2f} s = "
              f"{want / t:,.0f} deliveries/s; webhook process CPU "
              f"{c * 1e6 / want:.0f} us/delivery")


if __name__ == "__main__":
    main()
