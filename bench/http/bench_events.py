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
import re
import resource
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))

from pgserver import PgServer  # noqa: E402
from tests.simnode import SimNode  # noqa: E402
from test_events_stream import http_pids, rss_kb, start  # noqa: E402
from test_index import create_db  # noqa: E402
from ws_client import WS  # noqa: E402


def q(pg, sql):
    return pg.psql(sql, db="bench").strip()


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
    """utime + stime of the server processes, seconds (/proc/<pid>/stat)."""
    t = 0
    for p in pids:
        f = open("/proc/%d/stat" % p).read().rsplit(")", 1)[1].split()
        t += int(f[11]) + int(f[12])
    return t / os.sysconf("SC_CLK_TCK")


def emit(pg, k):
    q(pg, "SELECT count(cd_emit('evict', json_build_object('txid', repeat('ab', 32), "
          "'reason', 'bench', 'n', g, 'pad', repeat('x', 200)))) FROM generate_series(1, %d) g"
      % k)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--clients", default="1,4,16")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    pg = PgServer().start()
    node = SimNode(generate=3, txs_per_block=0, seed=7)
    node.start()
    tmp = tempfile.mkdtemp(prefix="cd-bench-events.")
    try:
        ci = create_db(pg, "bench")
        d = start(os.path.abspath(a.build), os.path.join(tmp, "d"), node.port, ci)
        while q(pg, "SELECT coalesce(max(height), -1) FROM index_tip") != "3":
            time.sleep(0.2)
        k = a.events
        print("events: %d per burst, ~%d bytes of JSON each" % (k, 330))
        for n in [int(x) for x in a.clients.split(",")]:
            ready, out = multiprocessing.Queue(), multiprocessing.Queue()
            ps = [multiprocessing.Process(target=reader, args=(d.port, k, None, ready, out))
                  for _ in range(n)]
            for p in ps:
                p.start()
            for _ in ps:
                ready.get(timeout=60)
            pids = http_pids(d)
            c0 = cpu_s(pids)
            t0 = time.monotonic()
            emit(pg, k)
            ends = [out.get(timeout=600) for _ in ps]
            for p in ps:
                p.join()
            dt = max(ends) - t0
            cpu = cpu_s(pids) - c0
            print("fan-out to %3d websocket clients: %.2f s for all, %8.0f events/s summed, "
                  "server CPU %.1f us per event delivered" % (n, dt, n * k / dt,
                                                                cpu * 1e6 / (n * k)))
        # replay: a burst older than the ring, read back from the table
        first = int(q(pg, "SELECT coalesce(max(id), 0) FROM events"))
        emit(pg, k)
        ready, out = multiprocessing.Queue(), multiprocessing.Queue()
        c0 = cpu_s(http_pids(d))
        t0 = time.monotonic()
        p = multiprocessing.Process(target=reader, args=(d.port, k, first, ready, out))
        p.start()
        end = out.get(timeout=600)
        p.join()
        cpu = cpu_s(http_pids(d)) - c0
        print("replay of %d events from the table (resume): %.2f s, %.0f events/s, server CPU "
              "%.1f us per event" % (k, end - t0, k / (end - t0), cpu * 1e6 / k))
        # idle websockets
        pids = http_pids(d)
        warm = [WS(d.port, "/v1/ws") for _ in range(8)]
        before = sum(rss_kb(x) for x in pids)
        socks = [WS(d.port, "/v1/ws") for _ in range(1000)]
        after = sum(rss_kb(x) for x in pids)
        print("1000 idle websockets: %d KiB RSS over the 4 server processes, %.0f bytes each"
              % (after - before, (after - before) * 1024 / 1000))
        for w in socks + warm:
            w.sock.close()
        d.stop()
    finally:
        node.stop()
        pg.stop()


if __name__ == "__main__":
    main()
