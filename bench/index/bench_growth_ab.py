#!/usr/bin/python3
"""Live mode at two index sizes, windows interleaved in one run.

bench_growth.py measures the live windows of a size after those of the
smaller one, minutes apart; on the shared VM the machine's speed drifts by
a third over such minutes (the same 1M windows, same build and chain: 25k
tx/s at one time, 36k twenty minutes later), more than the effect asked
about. Here two indexes are built side by side in one PostgreSQL server, one
to --small and one to --large txs of the same chain file (two simulated
nodes serving it, two conduitd data directories), and the live windows
alternate: small, large, small, large, ... --rounds times. Each pair runs
under the same machine speed; the ratio of each large window to the mean of
the small windows either side of it is the figure.

Before the first window each index's post-load autovacuum is waited for
(bench_growth.settle_autovacuum: a catch-up's load sets off a VACUUM and an
ANALYZE of every table loaded, minutes at 9M txs, a load's cost, not live
mode's); what autovacuum does during a window is listed with it, and the
server's WAL per tx (pg_stat_wal: records, full-page images, bytes).

With --small equal to --large the two sides are an A/B of a lever at one
size: --large-sql runs SQL on the large side's database before its live
daemon starts (e.g. a DROP INDEX), --large-daemon-arg gives its daemons a
setting of their own (e.g. --partition_txs=1000000). After the windows,
--point-queries tx-by-id and spender lookups on each side, alternated (the
lookups' price of a layout: every partition is probed).

    /usr/bin/python3 tests/pgserver.py --pg-shared-buffers 4GB -- \\
        /usr/bin/python3 bench/index/bench_growth_ab.py --build build \\
        --chain /tmp/cd-growth/chain-flat --small 1M --large 8.8M --out /tmp/ab

Writes OUT/bench-growth-ab.md. A benchmark, not a test: nothing here
asserts a time.
"""

import argparse
import bisect
import copy
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_growth import (  # noqa: E402
    STATS_FLUSH_S, Counts, Daemon, Poller, Sim, autovacuums, buffer_delta, catchup, chainfile,
    fmt_n, parse_count, pg_cpu, postmaster_pid, psql, queries, settle_autovacuum, uptime, wait_tip)


class Side:
    """One index: its database, data directory, node and live daemon."""

    def __init__(self, args, name, height):
        self.name, self.height = name, height
        self.db = "growth_" + name
        psql("postgres", "DROP DATABASE IF EXISTS %s; CREATE DATABASE %s;" % (self.db, self.db))
        self.datadir = tempfile.mkdtemp(prefix="cd-growth-ab-%s-" % name, dir=args.workdir)
        self.sim = Sim(args.chain)
        self.d = None
        self.poll = None
        self.txs = 0
        self.windows = []

    def load(self, args):
        r, self.txs = catchup(args, self.sim, self.db, self.datadir, self.height, 0)
        print("%s: catch-up to %s txs (height %d): %.0f tx/s, index build %.1f s" % (
            self.name, fmt_n(self.txs), self.height, r["catchup_rate"], r["index_build_s"]),
            flush=True)

    def start_live(self, args):
        self.poll = Poller(self.db)
        self.d = Daemon(args, self.sim.port, self.db, self.datadir, "live")
        wait_tip(self.d, self.poll, self.height)

    def settle(self, args):
        print("%s: autovacuum after the load done in %.0f s" % (
            self.name, settle_autovacuum(self.db, args.settle)), flush=True)

    def window(self, args, pm):
        b0 = Counts(self.db)
        c0, pg0 = self.d.sample_cpu(), pg_cpu(pm)
        t0 = time.monotonic()
        self.height += args.window
        self.sim.cmd(cmd="reveal", height=self.height)
        t1, txs1 = wait_tip(self.d, self.poll, self.height)
        c1, pg1 = self.d.sample_cpu(), pg_cpu(pm)
        load = uptime().split("load average:")[-1].strip()
        time.sleep(STATS_FLUSH_S)  # statistics flushed (bench_growth.live_windows)
        b1 = Counts(self.db)
        n = txs1 - self.txs
        bufs = buffer_delta(b0, b1, n).values()
        w = {"side": self.name, "at": self.txs, "txs": n, "rate": n / (t1 - t0),
             "pg_ms": (pg1 - pg0) * 1e6 / n, "cd_ms": (c1 - c0) * 1e6 / n,
             "bufs": sum(a for a, _ in bufs), "reads": sum(r for _, r in bufs),
             "autovacuum": autovacuums(b0, b1), "load": load,
             # WAL per tx: records, full-page images, bytes (the server's, over the window)
             "wal": tuple((a1 - a0) / n for a0, a1 in zip(b0.wal, b1.wal))}
        self.txs = txs1
        self.windows.append(w)
        print("  %-5s at %s: %d txs, %.0f tx/s; PG %.1f conduitd %.1f ms/1000 tx; buffers %.0f "
              "(reads %.0f) per 1000 tx; WAL per tx %.1f records, %.3f FPI, %.0f B; autovacuum: %s; "
              "load %s" % (
                  w["side"], fmt_n(w["at"]), n, w["rate"], w["pg_ms"], w["cd_ms"], w["bufs"],
                  w["reads"], w["wal"][0], w["wal"][1], w["wal"][2],
                  ", ".join(w["autovacuum"]) or "none", load), flush=True)
        return w

    def stop(self):
        if self.poll:
            self.poll.close()
        if self.d:
            self.d.stop()
        self.sim.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)


def point_lookups(args, meta, small, large):
    """Tx-by-id and spender lookups (bench_growth.queries: ad-hoc SQL, one
    session per round) on each side, small, large, small, large, with the
    daemons idle at their tips: the lookups' price of a layout (every
    partition is probed). Returns a Markdown table."""
    if args.point_queries <= 0:
        return ""
    got = {"small": [], "large": []}
    for _ in range(2):
        for side in (small, large):
            q = queries(side.db, meta, args.point_queries, point_only=True)
            got[side.name].append(q)
            print("  %-5s lookups: %s" % (side.name, "; ".join(
                "%s p50 %.3f ms p99 %.3f ms" % (k, v[0], v[1]) for k, v in sorted(q.items()))),
                flush=True)
    out = ["", "| lookups (ad-hoc SQL, %d each, two rounds) | small p50 / p99 ms | large p50 / p99 ms |"
           % args.point_queries, "|---|---|---|"]
    for k in sorted(got["small"][0]):
        out.append("| %s | %s | %s |" % (k, *(" ; ".join("%.3f / %.3f" % (r[k][0], r[k][1])
                                                          for r in got[n]) for n in ("small", "large"))))
    return "\n".join(out) + "\n"


def report(small, large):
    out = ["| round | small at | small tx/s | small PG ms | large at | large tx/s | large PG ms | "
           "large / small (tx/s) | large / small (PG ms) | autovacuum (small; large) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    ratios, pg_ratios = [], []
    for i, lw in enumerate(large.windows):
        # the small windows either side of this large one
        near = small.windows[i:i + 2]
        s_rate = statistics.mean(w["rate"] for w in near)
        s_pg = statistics.mean(w["pg_ms"] for w in near)
        ratios.append(lw["rate"] / s_rate)
        pg_ratios.append(lw["pg_ms"] / s_pg)
        sw = small.windows[i]
        out.append("| %d | %s | %.1fk | %.1f | %s | %.1fk | %.1f | %.2f | %.2f | %s; %s |" % (
            i + 1, fmt_n(sw["at"]), sw["rate"] / 1e3, sw["pg_ms"], fmt_n(lw["at"]),
            lw["rate"] / 1e3, lw["pg_ms"], ratios[-1], pg_ratios[-1],
            ", ".join(sw["autovacuum"]) or "none", ", ".join(lw["autovacuum"]) or "none"))
    last = small.windows[-1]
    out.append("| (last small) | %s | %.1fk | %.1f | | | | | | %s |" % (
        fmt_n(last["at"]), last["rate"] / 1e3, last["pg_ms"], ", ".join(last["autovacuum"]) or "none"))
    out.append("")
    out.append("Large against small, per round: tx/s ratio median %.2f (%.2f-%.2f); PostgreSQL ms per "
               "1000 tx ratio median %.2f (%.2f-%.2f). Shared-buffer accesses per 1000 tx: small "
               "%.0f, large %.0f; WAL bytes per tx: small %.0f, large %.0f; full-page images per "
               "1000 tx: small %.0f, large %.0f (means)." % (
                   statistics.median(ratios), min(ratios), max(ratios), statistics.median(pg_ratios),
                   min(pg_ratios), max(pg_ratios),
                   statistics.mean(w["bufs"] for w in small.windows),
                   statistics.mean(w["bufs"] for w in large.windows),
                   statistics.mean(w["wal"][2] for w in small.windows),
                   statistics.mean(w["wal"][2] for w in large.windows),
                   statistics.mean(w["wal"][1] * 1e3 for w in small.windows),
                   statistics.mean(w["wal"][1] * 1e3 for w in large.windows)))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--chain", required=True, help="a chain file directory (tests/simnode/chainfile.py)")
    ap.add_argument("--small", default="1M")
    ap.add_argument("--large", default="8.8M")
    ap.add_argument("--window", type=int, default=200, help="blocks per live window")
    ap.add_argument("--rounds", type=int, default=4, help="large windows (small ones: one more)")
    ap.add_argument("--threshold", type=int, default=10, help="catchup_threshold (blocks)")
    ap.add_argument("--settle", type=float, default=900.0,
                    help="at most this many seconds waiting for each index's post-load autovacuum")
    ap.add_argument("--point-queries", type=int, default=300,
                    help="after the windows, this many tx-by-id and spender lookups on each side, "
                         "twice, alternated (0: none)")
    ap.add_argument("--large-sql", default=None,
                    help="SQL run on the large side's database before its live daemon starts: with "
                         "--small equal to --large, an A/B of a lever at one size (e.g. DROP INDEX ...)")
    ap.add_argument("--daemon-arg", action="append", default=[], help="both sides' daemons")
    ap.add_argument("--large-daemon-arg", action="append", default=[],
                    help="the large side's daemons only (after --daemon-arg): with --small equal to "
                         "--large, an A/B of a setting at one size")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default="build")
    args = ap.parse_args()
    if not os.environ.get("PGHOST"):
        sys.exit("run under tests/pgserver.py (PGHOST is not set)")
    meta = chainfile.read_meta(args.chain)
    cum = chainfile.cumulative_txs(args.chain)
    hs = [bisect.bisect_left(cum, parse_count(x)) for x in (args.small, args.large)]
    if hs[1] + args.rounds * args.window > meta["blocks"]:
        sys.exit("the chain is too short for %s + %d windows of %d blocks" % (
            args.large, args.rounds, args.window))
    os.makedirs(args.out, exist_ok=True)
    small = large = None
    try:
        small = Side(args, "small", hs[0])
        large = Side(args, "large", hs[1])
        large_args = copy.copy(args)
        large_args.daemon_arg = args.daemon_arg + args.large_daemon_arg
        small.load(args)
        large.load(large_args)
        if args.large_sql:
            print("large: %s" % args.large_sql, flush=True)
            psql(large.db, args.large_sql)
        small.start_live(args)
        large.start_live(large_args)
        small.settle(args)
        large.settle(args)
        pm = postmaster_pid()
        for _ in range(args.rounds):
            small.window(args, pm)
            large.window(args, pm)
        small.window(args, pm)
        lookups = point_lookups(args, meta, small, large)
    finally:
        for s in (small, large):
            if s:
                s.stop()
    md = report(small, large) + lookups
    with open(os.path.join(args.out, "bench-growth-ab.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
