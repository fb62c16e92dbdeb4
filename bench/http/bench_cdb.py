#!/usr/bin/python3
"""ConduitDB API benchmark (issue 16): restoration streaming, merkle proofs, raw txs and
output spends through conduitd's ConduitDB-compatible routes.

A throw-away PostgreSQL and the simulated node serve a generated regtest chain; conduitd
indexes it with `http_listen = 127.0.0.1:0`. Then:
  - one restoration search for every OUTPUT key of the chain (all their matches in one stream):
    matches/s, server CPU per match, and the HTTP server processes' resident memory (VmRSS,
    summed over them) before and after -- once read at full speed, once by a client that reads
    4 KB every 10 ms;
  - GET /api/v1/merkle-proof/<txid> (JSON, binary) and /api/v1/transaction/<txid> req/s;
  - POST /api/v1/output-spend with 1000 outpoints: outpoints/s.
Figures move with the machine's load (2 shared cores); server CPU per item moves less.

usage: /usr/bin/python3 bench/http/bench_cdb.py [--build build] [--seconds 5]
           [--blocks 200] [--txs-per-block 50]
"""
import argparse
import http.client
import json
import random
import socket
import time

from bench_common import BenchChain, add_chain_args, cpu_s, rss_kb


def restore_raw(port, keys, slow=False, rss=None):
    """POST the search, read the whole stream; returns (bytes, peak of rss() seen in kB)."""
    body = json.dumps({"filterKeys": keys}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    if slow:  # a small window, so the server feels the back-pressure
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.sendall(b"POST /api/v1/restoration/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Accept: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    out, peak = bytearray(), 0
    while True:
        chunk = s.recv(4096 if slow else 1 << 20)
        if not chunk:
            break
        out += chunk
        if slow:
            time.sleep(0.01)
            peak = max(peak, rss())
    s.close()
    return bytes(out), peak


def rate(port, paths, seconds, headers=None, method="GET", body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        c.request(method, random.choice(paths), body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        assert r.status == 200, (r.status, data[:200])
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    add_chain_args(ap)
    a = ap.parse_args()
    with BenchChain(a, "bench_cdb.") as ch:
        port = ch.port
        keys = ch.q("SELECT DISTINCT encode(push_hash, 'hex') FROM pushdata "
                    "WHERE flags = 1 LIMIT 10000").split()
        want = int(ch.q("SELECT count(*) FROM pushdata WHERE flags = 1"))
        restore_raw(port, keys)  # warm-up
        # any HTTP server process may take a connection: CPU and RSS summed over all
        pids = ch.http_pids()

        def cpu():
            return sum(cpu_s(p) for p in pids)

        def rss():
            return sum(rss_kb(p) for p in pids)

        print(f"chain: {a.blocks} blocks x {a.txs_per_block} txs; {len(keys)} OUTPUT keys, "
              f"{want} OUTPUT matches; {len(pids)} HTTP server processes")
        for slow in (False, True):
            r0, c0, t0 = rss(), cpu(), time.monotonic()
            data, peak = restore_raw(port, keys, slow, rss)
            t, c = time.monotonic() - t0, cpu() - c0
            n = (len(data.split(b"\r\n\r\n", 1)[1]) - 1) // 105  # chunk framing: approx.
            print(f"restoration ({'slow client' if slow else 'full speed '}): ~{n} matches in "
                  f"{t:.2f} s = {n / t:,.0f} matches/s; server CPU {c * 1e6 / max(n, 1):.2f} "
                  f"us/match; RSS {r0} kB before, {peak or rss()} kB "
                  f"{'peak while streaming' if slow else 'after'}")
        txids = ch.q("SELECT cd_txid_hex(tx_hash) FROM best_transactions ORDER BY random() "
                     "LIMIT 2000").split()
        for name, paths, hdr in (
                ("merkle-proof JSON", [f"/api/v1/merkle-proof/{t}" for t in txids], {}),
                ("merkle-proof binary", [f"/api/v1/merkle-proof/{t}" for t in txids],
                 {"Accept": "application/octet-stream"}),
                ("transaction JSON", [f"/api/v1/transaction/{t}" for t in txids], {})):
            c0, t0 = cpu(), time.monotonic()
            n = rate(port, paths, a.seconds, hdr)
            t = time.monotonic() - t0
            print(f"{name:22s} {n / t:8.0f} req/s  server CPU "
                  f"{(cpu() - c0) * 1e6 / n:6.1f} us/req")
        ops = [r.split("|") for r in ch.q("SELECT cd_txid_hex(prev_hash) || '|' || prev_idx "
                                          "FROM inputs LIMIT 1000").split()]
        body = json.dumps([[t, int(i)] for t, i in ops]).encode()
        c0, t0 = cpu(), time.monotonic()
        n = rate(port, ["/api/v1/output-spend"], a.seconds,
                 {"Content-Type": "application/json"}, "POST", body)
        t = time.monotonic() - t0
        print(f"output-spend x{len(ops)}   {n * len(ops) / t:8.0f} outpoints/s  server CPU "
              f"{(cpu() - c0) * 1e6 / (n * len(ops)):6.1f} us/outpoint")


if __name__ == "__main__":
    main()
