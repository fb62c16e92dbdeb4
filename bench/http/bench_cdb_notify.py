#!/usr/bin/python3
"""ConduitDB notification benchmark (issue 16): registrations and /ws delivery.

A throw-away PostgreSQL and the simulated node (separate process) serve a generated regtest
chain; conduitd indexes it with `http_listen = 127.0.0.1:0`. Then:
  - every unspent output of the chain is registered through POST
    /api/v1/output-spend/notifications (10,000 a request, the limit) and as many keys through
    POST /api/v1/transaction/filter: outpoints/s and keys/s;
  - a websocket client (standard library, ?notifications=all) connects, the node mines
    --mine blocks of --txs txs spending those outputs; every spend of a registered outpoint
    must arrive once: spends/s from the first to the last frame, the delay from the index tip
    reaching the last block to the last frame, and the HTTP servers' CPU per notice.
Figures move with the machine's load (2 shared cores).

usage: /usr/bin/python3 bench/http/bench_cdb_notify.py [--build build] [--blocks 100]
           [--txs-per-block 50] [--mine 10] [--txs 200]
"""
import argparse
import json
import time
import urllib.request

from bench_common import BenchChain, add_chain_args, cpu_s
from test_conduitdb_notify import Collector  # bench_common put tests/functional on the path
from ws_client import WS


def post(port, path, body, ctype="application/json"):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                               headers={"Content-Type": ctype})
    with urllib.request.urlopen(r, timeout=300) as resp:
        return resp.read()


def main():
    ap = argparse.ArgumentParser()
    add_chain_args(ap)
    ap.set_defaults(blocks=100)
    ap.add_argument("--mine", type=int, default=10)
    ap.add_argument("--txs", type=int, default=200)
    a = ap.parse_args()
    with BenchChain(a, "bench_cdbn.") as ch:
        port, pids = ch.port, ch.http_pids()
        # the unspent outputs with a key (P2PKH, P2PK...): those the mined txs spend
        ops = [r.split("|") for r in ch.q(
            "SELECT DISTINCT cd_txid_hex(p.tx_hash) || '|' || p.idx FROM best_pushdata p "
            "WHERE p.flags = 1 AND NOT EXISTS (SELECT 1 FROM inputs i WHERE "
            "i.prev_hash = p.tx_hash AND i.prev_idx = p.idx)").split()]
        t0 = time.monotonic()
        for i in range(0, len(ops), 10000):
            post(port, "/api/v1/output-spend/notifications",
                 json.dumps([[t, int(n)] for t, n in ops[i:i + 10000]]).encode())
        t = time.monotonic() - t0
        print(f"registered {len(ops)} outpoints in {t:.2f} s = {len(ops) / t:,.0f} outpoints/s")
        keys = ch.q("SELECT DISTINCT encode(push_hash, 'hex') FROM pushdata WHERE flags = 1 "
                    "LIMIT %d" % max(len(ops), 1)).split()
        t0 = time.monotonic()
        for i in range(0, len(keys), 10000):
            post(port, "/api/v1/transaction/filter?account_id=1&date_created=%d"
                 % int(time.time()), json.dumps([[k, 3600] for k in keys[i:i + 10000]]).encode())
        t = time.monotonic() - t0
        print(f"registered {len(keys)} tip-filter keys in {t:.2f} s = {len(keys) / t:,.0f} keys/s")
        ws = Collector(WS(port, "/ws?notifications=all"))
        c0 = sum(cpu_s(p) for p in pids)
        first = [None]
        mine_t0 = time.monotonic()
        ch.node.control({"cmd": "mine", "n": a.mine, "txs_per_block": a.txs})
        ch.wait_tip(a.blocks + a.mine)
        tip_t = time.monotonic()
        want = int(ch.q("SELECT count(*) FROM best_inputs i JOIN cdb_spend_watches w "
                        "USING (prev_hash, prev_idx) WHERE i.height > %d" % a.blocks))
        want_m = int(ch.q("SELECT count(*) FROM best_pushdata p JOIN cdb_tip_filters f "
                          "USING (push_hash) WHERE p.height > %d" % a.blocks))

        def done(c):
            if c.spends and first[0] is None:
                first[0] = time.monotonic()
            return len(c.spends) >= want and sum(
                len(m["matches"]) for t in c.texts for m in t.get("entries", [])) >= want_m
        ws.pump(done, timeout=900)
        last = time.monotonic()
        c = sum(cpu_s(p) for p in pids) - c0
        n = len(ws.spends) + want_m
        assert len(set(ws.spends)) == len(ws.spends) == want, (len(ws.spends), want)
        print(f"mined {a.mine} blocks x {a.txs} txs: {want} spends and {want_m} key matches "
              f"delivered; first frame {first[0] - mine_t0:.2f} s after the mine command, "
              f"last {last - tip_t:+.2f} s after the index tip reached the last block; "
              f"{len(ws.spends) / max(last - first[0], 1e-3):,.0f} spends/s; "
              f"HTTP servers' CPU {c * 1e6 / max(n, 1):.1f} us/notice")
        ws.ws.close()


if __name__ == "__main__":
    main()
