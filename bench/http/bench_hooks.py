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
import json
import os
import time
import urllib.request

from bench_common import ROOT, BenchChain, Receiver, cpu_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--hooks", default="1,10")
    a = ap.parse_args()
    rcv = Receiver()
    try:
        with BenchChain(a, "bench_hooks.", blocks=5, daemon_args=(
                "--parser-workers", "1", "--ring-size", "16M", "--unit-size", "64K",
                "--api-keys", "bench")) as ch:
            run(a, ch, rcv, rcv.url("/hook"))
    finally:
        rcv.shutdown()


def run(a, ch, rcv, url):
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
        base = rcv.posts
        want = a.events * r
        c0, t0 = cpu_s(pid), time.monotonic()
        ch.q("SELECT count(cd_emit('tip', json_build_object('height', g, 'hash', 'bench')))"
             " FROM generate_series(1, %d) g" % a.events)
        deadline = t0 + 600
        while rcv.posts - base < want:
            assert time.monotonic() < deadline and ch.d.proc.poll() is None, \
                (rcv.posts - base, ch.d.log_text()[-3000:])
            time.sleep(0.01)
        t, c = time.monotonic() - t0, cpu_s(pid) - c0
        print(f"{r:3d} registration(s) x {a.events} events: {want} deliveries in {t:.2f} s = "
              f"{want / t:,.0f} deliveries/s; webhook process CPU "
              f"{c * 1e6 / want:.0f} us/delivery")


if __name__ == "__main__":
    main()
