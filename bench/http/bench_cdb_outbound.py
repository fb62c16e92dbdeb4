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
import json
import os
import time
import urllib.request

from bench_common import ROOT, BenchChain, Receiver, cpu_s


def matches_in(body):
    """The matches a POST carries (ConduitDB's body: entries of matches)."""
    return sum(len(e["matches"]) for e in json.loads(body)["entries"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--blocks", type=int, default=1000)
    ap.add_argument("--matches", default="1,20")
    ap.add_argument("--keys", type=int, default=50)
    a = ap.parse_args()
    rcv = Receiver(matches_in)
    try:
        # a.blocks is the synthetic blocks of the run; the chain has 5
        with BenchChain(a, "bench_cdb_outbound.", blocks=5, daemon_args=(
                "--parser-workers", "1", "--ring-size", "16M", "--unit-size", "64K",
                "--conduitdb-reference-url", rcv.url())) as ch:
            run(a, ch, rcv)
    finally:
        rcv.shutdown()


def run(a, ch, rcv):
    """Registers the keys, emits the key events and times their batches."""
    port = ch.port
    pid = int(ch.d.wait_for_log(r"webhook: delivery process running \(pid (\d+)\)",
                                timeout=30).group(1))
    ch.d.wait_for_log(r"conduitdb reference server: POSTing", timeout=60)
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
        base_p, base_m = rcv.posts, rcv.items
        c0, t0 = cpu_s(pid), time.monotonic()
        # block b's m matches: consecutive events with the same block hash (one batch);
        # each key is registered by both accounts (2 entries per batch)
        ch.q("SELECT count(cd_emit('key', json_build_object("
             " 'key', (ARRAY[%s])[1 + g %% %d], 'txid', lpad(to_hex(g), 64, '0'), 'idx', 0,"
             " 'flags', 1, 'state', 'confirmed', 'height', 1000 + g / %d,"
             " 'block', lpad(to_hex(%d + g / %d), 64, 'b'))))"
             " FROM generate_series(0, %d) g"
             % (",".join("'%s'" % k for k in keys), a.keys, m, m * 10**6, m,
                a.blocks * m - 1))
        deadline = t0 + 600
        while rcv.posts - base_p < a.blocks:
            assert time.monotonic() < deadline and ch.d.proc.poll() is None, \
                (rcv.posts - base_p, ch.d.log_text()[-3000:])
            time.sleep(0.01)
        t, c = time.monotonic() - t0, cpu_s(pid) - c0
        got_m = rcv.items - base_m
        assert rcv.posts - base_p == a.blocks and got_m == 2 * a.blocks * m, \
            (rcv.posts - base_p, got_m)
        print(f"{a.blocks} blocks x {m} match(es) x 2 accounts: {a.blocks} POSTs in {t:.2f} s "
              f"= {a.blocks / t:,.0f} batches/s; webhook process CPU "
              f"{c * 1e6 / a.blocks:.0f} us/batch, {c * 1e6 / got_m:.1f} us/match")


if __name__ == "__main__":
    main()
