#!/usr/bin/python3
"""Event streams benchmark (docs/PERFORMANCE.md, "Event streams"): how fast
the HTTP servers fan the event log out to websocket clients, how much a
replay from the table costs against a live feed from memory, and what an
idle websocket costs.

A throw-away PostgreSQL, the simulated node and conduitd (`http_listen =
127.0.0.1:0`). Then:
  * fan-out: N websocket clients (one client process each: multiprocessing,
    standard library) subscribe to `evict`; one transaction writes K events
    with cd_emit (~330 bytes of JSON each); the figure is the time from the
    commit to the last client holding all K, and events/s summed over the
    clients. Each server process reads the rows once, however many clients.
  * replay: one client subscribes with `resume` at the start of those K
    events once they are older than the in-memory ring (2048 events): read
    from the table a page at a time.
  * idle: RSS of the four server processes before and after 1000 websockets
    that connect and do nothing.

The clients are Python and share the 2 cores with the server, PostgreSQL and
each other: the fan-out figure is a lower bound of the server's.

usage: /usr/bin/python3 bench/http/bench_events.py [--build build]
           [--events 5000] [--clients 1,4,16]
"""
import argparse
import multiprocessing
import os
import resource
import time

import bench_common
from bench_common import BenchChain, rss_kb
from ws_client import WS  # bench_common put tests/functional on the path


def reader(port, k, resume, ready, out):
    w = WS(port, "/v1/ws", timeout=300)
    m = {"op": "subscribe", "kinds": ["evict"]}
    if resume is not None:
        m["resume"] = str(resume)
    w.send_json(m)
    assert w.recv_json()["type"] == "subscribed"
    ready.put(1)
    n = 0
    while n < k:
        m = w.recv_json()
        if isinstance(m, dict) and m.get("type") == "event":
            n += 1
    out.put(time.monotonic())
    w.close()


def cpu_s(pids):
    """utime + stime of the server processes, seconds."""
    return sum(bench_common.cpu_s(p) for p in pids)


def emit(ch, k):
    ch.q("SELECT count(cd_emit('evict', json_build_object('txid', repeat('ab', 32), "
         "'reason', 'bench', 'n', g, 'pad', repeat('x', 200)))) FROM generate_series(1, %d) g"
         % k)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(bench_common.ROOT, "build"))
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--clients", default="1,4,16")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    with BenchChain(a, "cd-bench-events.", blocks=3, txs_per_block=0,
                    node_args=("--seed", "7"),
                    daemon_args=("--parser-workers", "1", "--ring-size", "16M",
                                 "--unit-size", "64K", "--log-level", "info")) as ch:
        run(a, ch)


def run(a, ch):
    """The three measures, against the daemon of ch."""
    k = a.events
    print("events: %d per burst, ~%d bytes of JSON each" % (k, 330))
    for n in [int(x) for x in a.clients.split(",")]:
        ready, out = multiprocessing.Queue(), multiprocessing.Queue()
        ps = [multiprocessing.Process(target=reader, args=(ch.port, k, None, ready, out))
              for _ in range(n)]
        for p in ps:
            p.start()
        for _ in ps:
            ready.get(timeout=60)
        pids = ch.http_pids()
        c0 = cpu_s(pids)
        t0 = time.monotonic()
        emit(ch, k)
        ends = [out.get(timeout=600) for _ in ps]
        for p in ps:
            p.join()
        dt = max(ends) - t0
        cpu = cpu_s(pids) - c0
        print("fan-out to %3d websocket clients: %.2f s for all, %8.0f events/s summed, "
              "server CPU %.1f us per event delivered" % (n, dt, n * k / dt,
                                                            cpu * 1e6 / (n * k)))
    # replay: a burst older than the ring, read back from the table
    first = int(ch.q("SELECT coalesce(max(id), 0) FROM events"))
    emit(ch, k)
    ready, out = multiprocessing.Queue(), multiprocessing.Queue()
    c0 = cpu_s(ch.http_pids())
    t0 = time.monotonic()
    p = multiprocessing.Process(target=reader, args=(ch.port, k, first, ready, out))
    p.start()
    end = out.get(timeout=600)
    p.join()
    cpu = cpu_s(ch.http_pids()) - c0
    print("replay of %d events from the table (resume): %.2f s, %.0f events/s, server CPU "
          "%.1f us per event" % (k, end - t0, k / (end - t0), cpu * 1e6 / k))
    # idle websockets
    pids = ch.http_pids()
    warm = [WS(ch.port, "/v1/ws") for _ in range(8)]
    before = sum(rss_kb(x) for x in pids)
    socks = [WS(ch.port, "/v1/ws") for _ in range(1000)]
    after = sum(rss_kb(x) for x in pids)
    print("1000 idle websockets: %d KiB RSS over the 4 server processes, %.0f bytes each"
          % (after - before, (after - before) * 1024 / 1000))
    for w in socks + warm:
        w.sock.close()


if __name__ == "__main__":
    main()
