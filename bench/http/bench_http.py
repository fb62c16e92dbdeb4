#!/usr/bin/python3
"""HTTP API benchmark: requests/s of GET /v1/tx/<txid> (raw, hex, JSON; and
/proof, and a block download) against a running conduitd, from simple Python
clients.

A throw-away PostgreSQL and the simulated node (a separate process) serve a
generated regtest chain; conduitd indexes it with `http_listen =
127.0.0.1:0`. Then --clients client processes (multiprocessing, one keep-alive
http.client connection each) request random indexed txids for S seconds.
For contrast, the same lookups through `conduit-cli tx --hex` (one process
per lookup, as a shell script would do) are timed too.

The figure is bounded by the server processes and by the Python
clients, which share the 2 cores with it and PostgreSQL, so it moves with
the machine's load. The last column, the server process's CPU time per
request (utime + stime of the HTTP server children from /proc, summed), is what the server
itself spends on a reply (parsing, lookups, formatting, JSON) and moves much
less with the load: compare builds with it.

usage: /usr/bin/python3 bench/http/bench_http.py [--build build] [--seconds 5]
           [--clients 2] [--blocks 200] [--txs-per-block 50]
"""
import argparse
import http.client
import multiprocessing
import os
import random
import subprocess
import time

from bench_common import BenchChain, add_chain_args, cpu_s


def client(port, paths, seconds, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = nbytes = 0
    rnd = random.Random(os.getpid())
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c.request("GET", rnd.choice(paths))
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"HTTP {r.status}: {body[:200]!r}")
        n += 1
        nbytes += len(body)
    out.put((n, nbytes))


def run_clients(port, paths, seconds, clients):
    out = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=client, args=(port, paths, seconds, out))
          for _ in range(clients)]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    res = [out.get() for _ in ps]
    for p in ps:
        p.join()
    t = time.monotonic() - t0
    n = sum(r[0] for r in res)
    return n / t, sum(r[1] for r in res) / t


def main():
    ap = argparse.ArgumentParser()
    add_chain_args(ap)
    ap.add_argument("--clients", type=int, default=2)
    a = ap.parse_args()
    with BenchChain(a, "bench_http.") as c:
        port = c.port
        txids = c.q("SELECT cd_txid_hex(tx_hash) FROM best_transactions "
                    "ORDER BY random() LIMIT 5000").split()
        # warm-up: PostgreSQL's caches, the server's LMDB maps
        run_clients(port, [f"/v1/tx/{t}" for t in txids], 1, a.clients)
        http_pids = c.http_pids()
        print(f"chain: {a.blocks} blocks, {len(txids)} txids sampled; "
              f"{a.clients} client process(es), {a.seconds:.0f} s each run")
        for name, paths in (
                ("/v1/tx/<txid>?format=raw", [f"/v1/tx/{t}?format=raw" for t in txids]),
                ("/v1/tx/<txid> (hex)", [f"/v1/tx/{t}" for t in txids]),
                ("/v1/tx/<txid>?format=json", [f"/v1/tx/{t}?format=json" for t in txids]),
                ("/v1/tx/<txid>/proof", [f"/v1/tx/{t}/proof" for t in txids]),
                ("/v1/tx/<txid>/bump", [f"/v1/tx/{t}/bump" for t in txids]),
                ("/v1/tx/<txid>/beef", [f"/v1/tx/{t}/beef" for t in txids]),
                ("/woc/.../block/<h>/header",
                 [f"/woc/v1/bsv/regtest/block/{h}/header" for h in range(1, a.blocks + 1)]),
                ("/v1/tip", ["/v1/tip"]),
                ("/v1/block/<height>", [f"/v1/block/{h}" for h in range(1, a.blocks + 1)])):
            c0 = sum(cpu_s(p) for p in http_pids)
            t0 = time.monotonic()
            rps, bps = run_clients(port, paths, a.seconds, a.clients)
            n = rps * (time.monotonic() - t0)
            us = (sum(cpu_s(p) for p in http_pids) - c0) * 1e6 / max(n, 1)
            print(f"{name:28s} {rps:8.0f} req/s  {bps / 1e6:7.1f} MB/s  {us:6.1f} us server CPU/req")
        cli = os.path.join(a.build, "src", "daemon", "conduit-cli")
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < a.seconds:
            subprocess.run([cli, "tx", random.choice(txids), "--hex", "--regtest", "--datadir",
                            c.datadir, "--pg-conninfo", c.ci], check=True,
                           stdout=subprocess.DEVNULL)
            n += 1
        print(f"{'conduit-cli tx --hex':28s} {n / (time.monotonic() - t0):8.0f} lookups/s "
              "(one process each)")


if __name__ == "__main__":
    main()
