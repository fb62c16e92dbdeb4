#!/usr/bin/python3
"""Height-range partitions, measured before they are chosen (issue 18).

Run under a throw-away PostgreSQL (tests/pgserver.py exports PGHOST/...):

    /usr/bin/python3 tests/pgserver.py -- /usr/bin/python3 bench/index/bench_partition.py \\
        --build build --chain /tmp/cd-part/chain --checkpoints 1M,3M --out /tmp/cd-part/out

The chain is a chain file directory (python3 -m tests.simnode.chainfile DIR
--blocks N --txs-per-block 1500); it must exist. The pieces are
bench_growth.py's (the simulated node serving the file, conduitd in
catch-up then live mode, CPU from /proc); what this adds, at each checkpoint:

1. catch-up to the checkpoint (bench_growth's step: conduitd with
   catchup_indexes = auto, its whole-table index build in the log).
2. build: the catch-up index build over the whole tables against the build
   over the new rows only, which is what a partition of those rows would
   build. One session, the same settings for both, each of the four
   secondary indexes of sql/013's catalog: CREATE INDEX over the whole
   table (a second index beside the live one: the same work as drop +
   create), then over a copy of the last --new-blocks blocks' rows (a
   partition is a table: building its index is this build).
3. probes: tx by id (best_transactions) and spender of an outpoint
   (best_inputs) against copies of `transactions` and `inputs`
   range-partitioned on block_id into N equal ranges (--probe-partitions;
   sql/013's hash indexes on every partition, no partition pruning possible
   on a hash, so every lookup probes N indexes), interleaved with the
   unpartitioned tables (N = 1) on the same random keys; plus the planning
   and execution time of 30 of the same lookups from EXPLAIN ANALYZE, each
   in a new session (psql per statement): what a new connection pays, with
   the relation cache of N partitions and their indexes still to load.
4. live: conduitd with catchup_indexes = live; windows of --window blocks
   cycle baseline / partitioned (--live-repeat times). The `partitioned`
   layout converts the four tables (transactions, inputs, pushdata, outputs)
   in one transaction: each existing table becomes the first partition of a
   table range-partitioned on block_id (a CHECK constraint added first so
   that ATTACH PARTITION need not scan it), new empty partitions of
   --part-blocks block ids and one up to MAXVALUE take the window's rows
   (block ids have gaps: the run prints which partitions received them),
   and the indexes become
   partitioned indexes (CREATE INDEX on the parent attaches the existing
   partition's index instead of building it). The views over the tables are
   re-pointed (a view holds its table's OID). Undone after the window: the
   window's rows moved back into the first partition, which becomes the
   table again.

Writes OUT/bench-partition.md and OUT/bench-partition.json; prints `uptime`
with every step: the machine is shared, compare CPU per 1000 tx, and only
within one run. A benchmark, not a test: nothing here asserts a time.
"""
import argparse
import bisect
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import bench_growth  # noqa: E402
from bench_growth import Sim, Timer, catchup, fmt_n, parse_count, pct, uptime  # noqa: E402
from bench_catchup import psql  # noqa: E402
from tests.simnode import chainfile  # noqa: E402

TABLES = ("transactions", "inputs", "pushdata", "outputs")
STATE = {}  # what the partitioned lever's apply saw, for its undo


def psql_loud(db, sql):
    """bench_catchup.psql, printing the server's error before it raises."""
    try:
        return psql(db, sql)
    except subprocess.CalledProcessError as e:
        print("psql failed: %s" % e.stderr.decode(errors="replace").strip(), file=sys.stderr)
        raise


def load():
    return uptime().split("load average:")[-1].strip()


def q1(db, sql):
    return psql(db, sql).strip()


def view_defs(db, tables):
    """[(view, definition)] of the views reading any of tables directly."""
    oids = ",".join("'%s'::regclass" % t for t in tables)
    rows = psql(db, "SELECT DISTINCT r.ev_class::regclass::text FROM pg_depend d "
                    "JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid "
                    "WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid IN (%s) "
                    "AND r.ev_class NOT IN (%s) ORDER BY 1;" % (oids, oids)).splitlines()
    out = []
    for v in rows:
        # one line: the definition may span lines
        d = q1(db, "SELECT replace(pg_get_viewdef('%s'::regclass), E'\\n', ' ');" % v)
        out.append((v, d.rstrip(";")))
    return out


def state_fn(db):
    """sql/013's cd_secondary_index_state as it is, and the same accepting a
    partitioned index (relkind 'I'): without it conduitd would find its
    indexes 'missing' on a partitioned table and try to build them."""
    d = q1(db, "SELECT pg_get_functiondef('cd_secondary_index_state(text)'::regprocedure);")
    return d, d.replace("c.relkind = 'i'", "c.relkind IN ('i', 'I')")


def partition_apply(db, part_blocks, parts):
    """SQL converting the four tables into range partitions on block_id: the
    table as it is becomes partition _p0 (block_id < the next block_id), then
    `parts` empty partitions of part_blocks blocks, then one to MAXVALUE."""
    nxt = int(q1(db, "SELECT coalesce(max(block_id), 0) + 1 FROM blocks;"))
    views = view_defs(db, TABLES)
    old_fn, new_fn = state_fn(db)
    STATE.update(views=views, old_fn=old_fn, idx={}, cons={})
    s = ["BEGIN"]
    for t in TABLES:
        # the indexes and constraints as they are, to give the parent the same
        idx = psql(db, "SELECT c.relname, pg_get_indexdef(i.indexrelid), "
                       "coalesce(k.conname, '') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid "
                       "WHERE i.indrelid = '%s'::regclass ORDER BY 1;" % t).splitlines()
        STATE["idx"][t] = [x.split("|") for x in idx]
        s.append("ALTER TABLE %s RENAME TO %s_p0" % (t, t))
        for name, _, con in STATE["idx"][t]:
            if con:
                s.append("ALTER TABLE %s_p0 RENAME CONSTRAINT %s TO %s_p0" % (t, con, con))
            else:
                s.append("ALTER INDEX %s RENAME TO %s_p0" % (name, name))
        s.append("CREATE TABLE %s (LIKE %s_p0 INCLUDING DEFAULTS INCLUDING STORAGE "
                 "INCLUDING COMMENTS) PARTITION BY RANGE (block_id)" % (t, t))
        # validated here (a scan under SHARE UPDATE EXCLUSIVE), so that
        # ATTACH PARTITION finds the range proven and does not scan again
        s.append("ALTER TABLE %s_p0 ADD CONSTRAINT %s_p0_range CHECK (block_id < %d)"
                 % (t, t, nxt))
        s.append("ALTER TABLE %s ATTACH PARTITION %s_p0 FOR VALUES FROM (MINVALUE) TO (%d)"
                 % (t, t, nxt))
        lo = nxt
        for i in range(1, parts + 1):
            s.append("CREATE TABLE %s_p%d PARTITION OF %s FOR VALUES FROM (%d) TO (%d)"
                     % (t, i, t, lo, lo + part_blocks))
            lo += part_blocks
        s.append("CREATE TABLE %s_pmax PARTITION OF %s FOR VALUES FROM (%d) TO (MAXVALUE)"
                 % (t, t, lo))
        for name, defn, con in STATE["idx"][t]:
            if con:
                cdef = q1(db, "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                              "WHERE conname = '%s' AND conrelid = '%s'::regclass;" % (con, t))
                s.append("ALTER TABLE %s ADD CONSTRAINT %s %s" % (t, con, cdef))
            else:
                # on a partitioned table CREATE INDEX attaches a partition's
                # matching index instead of building one: _p0's is kept
                s.append(defn)
    for v, d in views:
        s.append("CREATE OR REPLACE VIEW %s AS %s" % (v, d))
    s.append(new_fn)
    s.append("COMMIT")
    return [";\n".join(s)]


def partition_undo(db):
    """SQL undoing partition_apply: the rows of the new partitions move into
    _p0, which becomes the table again with its own index names."""
    # where the window's rows went (the measurement is of the small
    # partition only if they are there and not in _p0)
    print("  (transactions by partition: %s)" % ", ".join(psql(
        db, "SELECT tableoid::regclass || ' ' || count(*) FROM transactions GROUP BY tableoid "
            "ORDER BY 1;").splitlines()), flush=True)
    views = view_defs(db, TABLES)
    s = ["BEGIN"]
    for t in TABLES:
        s.append("ALTER TABLE %s DETACH PARTITION %s_p0" % (t, t))
        s.append("ALTER TABLE %s RENAME TO %s_part" % (t, t))
        s.append("ALTER TABLE %s_p0 RENAME TO %s" % (t, t))
    for v, d in views:
        s.append("CREATE OR REPLACE VIEW %s AS %s" % (v, d))
    for t in TABLES:
        s.append("ALTER TABLE %s DROP CONSTRAINT %s_p0_range" % (t, t))
        s.append("INSERT INTO %s SELECT * FROM %s_part" % (t, t))
        s.append("DROP TABLE %s_part" % t)
        for name, _, con in STATE["idx"][t]:
            if con:
                s.append("ALTER TABLE %s RENAME CONSTRAINT %s_p0 TO %s" % (t, con, con))
            else:
                s.append("ALTER INDEX %s_p0 RENAME TO %s" % (name, name))
    s.append(STATE["old_fn"])
    s.append("COMMIT")
    return [";\n".join(s)]


def sample(db, sql_from, cols, n):
    """bench_growth.sample for a table that may be partitioned (relpages of
    a partitioned table is 0: sum its partitions')."""
    tot = int(q1(db, "SELECT greatest(1, sum(greatest(c.relpages, 0)))::bigint FROM "
                     "pg_partition_tree('%s') p JOIN pg_class c ON c.oid = p.relid;" % sql_from))
    pct_pages = min(100.0, 100.0 * max(50, n // 20) / tot)
    rows = psql(db, "SELECT %s FROM %s TABLESAMPLE SYSTEM (%f);" % (cols, sql_from, pct_pages))
    rows = [r.split("|") for r in rows.splitlines() if r]
    random.shuffle(rows)
    return rows[:n]


def catalog(db):
    out = {}
    for line in psql(db, "SELECT name, tbl, method, cols FROM secondary_indexes "
                         "ORDER BY name;").splitlines():
        name, tbl, method, cols = line.split("|")
        out[name] = (tbl, method, cols)
    return out


def builds(db, new_blocks, work_mem):
    """{index: (whole-table s, new-rows s)} and the row counts."""
    cat = catalog(db)
    top = int(q1(db, "SELECT max(block_id) FROM blocks WHERE indexed;"))
    lo = top - new_blocks + 1
    new_txs = int(q1(db, "SELECT count(*) FROM transactions WHERE block_id >= %d;" % lo))
    all_txs = int(q1(db, "SELECT count(*) FROM transactions;"))
    setup = ("SET maintenance_work_mem = '%s'; SET max_parallel_maintenance_workers = 1;\n"
             % work_mem)
    out = {}
    for name, (tbl, method, cols) in cat.items():
        psql(db, "DROP TABLE IF EXISTS bp_new; CREATE UNLOGGED TABLE bp_new AS "
                 "SELECT * FROM %s WHERE block_id >= %d; VACUUM ANALYZE bp_new;" % (tbl, lo))
        t = []
        for target, iname in ((tbl, "bp_whole_idx"), ("bp_new", "bp_new_idx")):
            r = psql(db, setup + "\\timing on\nCREATE INDEX %s ON %s USING %s (%s);\n"
                     % (iname, target, method, cols))
            t.append(float(re.findall(r"Time: ([0-9.]+) ms", r)[-1]) / 1e3)
            psql(db, "DROP INDEX %s;" % iname)
        out[name] = tuple(t)
        print("  build %-24s whole table %.1f s, last %d blocks only %.1f s; load %s"
              % (name, t[0], new_blocks, t[1], load()), flush=True)
    psql(db, "DROP TABLE IF EXISTS bp_new;")
    return out, new_txs, all_txs


def probe_copies(db, counts):
    """Schemas bp_N: transactions and inputs range-partitioned on block_id
    in N equal ranges, sql/013's indexes, and the two views over them."""
    cat = catalog(db)
    lo, hi = (int(x) for x in q1(db, "SELECT min(block_id), max(block_id) FROM "
                                     "transactions;").split("|"))
    views = dict(view_defs(db, ("transactions", "inputs")))
    for n in counts:
        t0 = time.monotonic()
        sch = "bp_%d" % n
        s = ["DROP SCHEMA IF EXISTS %s CASCADE" % sch, "CREATE SCHEMA %s" % sch]
        for t in ("transactions", "inputs"):
            s.append("CREATE TABLE %s.%s (LIKE public.%s) PARTITION BY RANGE (block_id)"
                     % (sch, t, t))
            step = (hi - lo + 1) / n
            for i in range(n):
                a = "MINVALUE" if i == 0 else str(lo + int(round(i * step)))
                b = "MAXVALUE" if i == n - 1 else str(lo + int(round((i + 1) * step)))
                s.append("CREATE UNLOGGED TABLE %s.%s_%d PARTITION OF %s.%s FOR VALUES "
                         "FROM (%s) TO (%s)" % (sch, t, i, sch, t, a, b))
            s.append("INSERT INTO %s.%s SELECT * FROM public.%s" % (sch, t, t))
        for name, (tbl, method, cols) in cat.items():
            if tbl in ("transactions", "inputs"):
                s.append("CREATE INDEX ON %s.%s USING %s (%s)" % (sch, tbl, method, cols))
        # best_inputs finds the spending tx by the primary key
        s.append("ALTER TABLE %s.transactions ADD PRIMARY KEY (block_id, tx_pos)" % sch)
        s.append("ANALYZE %s.transactions, %s.inputs" % (sch, sch))
        s.append("SET search_path = %s, public" % sch)
        for v in ("best_transactions", "best_inputs"):
            s.append("CREATE VIEW %s.%s AS %s" % (sch, v, views[v]))
        s.append("RESET search_path")
        psql(db, "SET maintenance_work_mem = '1GB';\n" + ";\n".join(s) + ";")
        print("  probe copy: %d partitions in %.0f s" % (n, time.monotonic() - t0), flush=True)


def probes(db, counts, n_keys, rounds):
    """{N: {query: (p50, p99, runs, plan p50, exec p50)}} over the same keys,
    N = 1 the public (unpartitioned) tables; sessions interleaved by round."""
    txs = sample(db, "transactions", "encode(tx_hash, 'hex')", n_keys)
    ins = sample(db, "inputs", "encode(prev_hash, 'hex'), prev_idx", n_keys)
    kinds = {
        "tx by id": ["SELECT height, tx_pos, tx_offset, tx_size FROM best_transactions "
                     "WHERE tx_hash = '\\x%s';" % h for (h,) in txs],
        "spender of outpoint": ["SELECT spend_tx_hash, in_idx, height FROM best_inputs "
                                "WHERE prev_hash = '\\x%s' AND prev_idx = %s;" % (h, i)
                                for h, i in ins],
    }
    ns = [1] + list(counts)
    timers = {}
    for n in ns:
        timers[n] = Timer(db)
        if n > 1:
            timers[n].run("SET search_path = bp_%d, public;" % n)
    ms = {(n, k): [] for n in ns for k in kinds}
    try:
        for r in range(rounds):
            for n in ns:
                for k, stmts in kinds.items():
                    part = stmts[r::rounds]
                    for st in part:
                        ms[(n, k)].append(timers[n].run(st)[0])
        out = {}
        for n in ns:
            out[n] = {}
            for k, stmts in kinds.items():
                pl, ex = [], []
                for st in stmts[:30]:
                    txt = psql(db, ("SET search_path = bp_%d, public;\n" % n if n > 1 else "") +
                               "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) " + st)
                    pl.append(float(re.search(r"Planning Time: ([0-9.]+)", txt).group(1)))
                    ex.append(float(re.search(r"Execution Time: ([0-9.]+)", txt).group(1)))
                v = ms[(n, k)]
                out[n][k] = (statistics.median(v), pct(v, 99), len(v),
                             statistics.median(pl), statistics.median(ex))
                print("  probe %4d partition(s) %-20s p50 %.3f ms p99 %.3f ms (plan %.3f, "
                      "exec %.3f ms)" % ((n, k) + out[n][k][:2] + out[n][k][3:]), flush=True)
    finally:
        for t in timers.values():
            t.close()
    for n in counts:
        psql(db, "DROP SCHEMA bp_%d CASCADE;" % n)
    return out


def report(rows, args):
    out = ["Live windows (conduitd, catchup_indexes = live; layouts alternate):", "",
           "| at txs | layout | window txs | live tx/s | PG ms/1000 tx | conduitd ms/1000 tx | "
           "tx by id p50/p99 ms | spender p50/p99 ms | load |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for w in r["live"]:
            q = w.get("q", {})

            def qq(k):
                return "%.2f / %.2f" % q[k][:2] if k in q else ""
            out.append("| %s | %s | %d | %.1fk | %.1f | %.1f | %s | %s | %s |" % (
                fmt_n(w["at_txs"]), w["lever"], w["live_txs"], w["live_rate"] / 1e3,
                w["live_pg_ms"], w["live_cd_ms"], qq("tx by id"), qq("spender of outpoint"),
                w["uptime"].split("load average:")[-1].strip()))
    out += ["", "Index build: whole table (what catch-up builds today) vs the new rows only "
            "(what one partition of them builds); one session, maintenance_work_mem %s, "
            "1 parallel worker:" % args.work_mem, "",
            "| at txs | new rows | index | whole table s | new rows only s | µs per new tx: whole / "
            "new only |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "build" not in r:
            continue
        b = r["build"]
        tw = sum(v[0] for v in b["s"].values())
        tn = sum(v[1] for v in b["s"].values())
        for name, (w, n) in list(b["s"].items()) + [("all four", (tw, tn))]:
            out.append("| %s | %s txs (%d blocks) | %s | %.1f | %.1f | %.1f / %.1f |" % (
                fmt_n(b["all_txs"]), fmt_n(b["new_txs"]), args.new_blocks, name, w, n,
                w * 1e6 / b["new_txs"], n * 1e6 / b["new_txs"]))
    out += ["", "Point lookups against N range partitions (every partition's index probed; "
            "psql \\timing p50 / p99 in one session; planning / execution p50 of EXPLAIN ANALYZE, each in "
            "a new session, so with a cold relation cache), ms:", "",
            "| at txs | partitions | tx by id p50 / p99 | plan / exec | spender p50 / p99 | "
            "plan / exec |", "|---|---|---|---|---|---|"]
    for r in rows:
        for n, q in sorted(r.get("probes", {}).items(), key=lambda kv: int(kv[0])):
            a, b = q["tx by id"], q["spender of outpoint"]
            out.append("| %s | %s | %.3f / %.3f | %.3f / %.3f | %.3f / %.3f | %.3f / %.3f |" % (
                fmt_n(r["txs"]), n, a[0], a[1], a[3], a[4], b[0], b[1], b[3], b[4]))
    return "\n".join(out) + "\n"


def plot(rows, png):
    """Point-lookup p50 against the partition count,
    one line per checkpoint (gnuplot, log-log)."""
    dat = png[:-4] + ".dat"
    lines, blocks = [], 0
    with open(dat, "w") as f:
        for r in rows:
            if not r.get("probes"):
                continue
            f.write("# %s\n" % fmt_n(r["txs"]))
            for n, q in sorted(r["probes"].items(), key=lambda kv: int(kv[0])):
                a, b = q["tx by id"], q["spender of outpoint"]
                f.write("%d %.4f %.4f %.4f %.4f\n" % (int(n), a[0], b[0], a[3], b[3]))
            f.write("\n\n")
            for col, what in ((2, "tx by id"), (3, "spender of an outpoint")):
                lines.append("'%s' index %d u 1:%d w lp lw 2 t '%s, %s'"
                             % (dat, blocks, col, what, fmt_n(r["txs"])))
            blocks += 1
    if not lines:
        return
    gp = """set terminal pngcairo size 900,520 noenhanced
set output '%s'
set title 'point lookups against N height-range partitions (bench/index/bench_partition.py)'
set logscale xy
set grid
set key left top
set xlabel 'partitions (every one probed)'
set ylabel 'median latency, ms (psql \\timing)'
plot %s, 2 w l dt 2 lc rgb 'black' t '2 ms target'
""" % (png, ", ".join(lines))
    r = subprocess.run(["gnuplot"], input=gp, text=True, stderr=subprocess.PIPE)
    if r.returncode:
        print("gnuplot failed: %s" % r.stderr.strip(), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--chain", required=True, help="chain file directory (must exist)")
    ap.add_argument("--checkpoints", default="1M,3M")
    ap.add_argument("--window", type=int, default=40, help="blocks per live window")
    ap.add_argument("--live-repeat", type=int, default=2, help="baseline/partitioned pairs")
    ap.add_argument("--part-blocks", type=int, default=None,
                    help="blocks per new partition (default: --window, so each window's rows "
                    "fill one partition from empty)")
    ap.add_argument("--new-blocks", type=int, default=200,
                    help="build step: the new rows are the last this many blocks")
    ap.add_argument("--work-mem", default="1GB", help="maintenance_work_mem of the build step")
    ap.add_argument("--probe-partitions", default="2,10,50,200")
    ap.add_argument("--probe-at", default="",
                    help="checkpoints at which to run the probe step (default: all)")
    ap.add_argument("--queries", type=int, default=600, help="keys per lookup kind")
    ap.add_argument("--point-queries", type=int, default=300,
                    help="lookups per kind after each live window, under its layout")
    ap.add_argument("--threshold", type=int, default=10, help="catchup_threshold (blocks)")
    ap.add_argument("--skip", default="", help="steps to skip: build,probes,live")
    ap.add_argument("--daemon-arg", action="append", default=[])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default="build")
    args = ap.parse_args()
    if not os.environ.get("PGHOST"):
        sys.exit("run under tests/pgserver.py (PGHOST is not set)")
    args.part_blocks = args.part_blocks or args.window
    skip = set(x for x in args.skip.split(",") if x)
    counts = [int(x) for x in args.probe_partitions.split(",") if x]
    probe_at = set(parse_count(c) for c in args.probe_at.split(",") if c)
    cps = [parse_count(c) for c in args.checkpoints.split(",")]
    meta = chainfile.read_meta(args.chain)
    cum = chainfile.cumulative_txs(args.chain)
    print("chain %s: %s" % (args.chain, chainfile.describe(meta)), flush=True)
    windows = 2 * args.live_repeat

    # the partitioned layout as a lever of bench_growth's live windows
    def lever_sql(db, lever, apply):
        if lever != "partitioned":
            raise KeyError(lever)
        # enough partitions of part_blocks for one window, then MAXVALUE
        parts = -(-args.window // args.part_blocks)
        return partition_apply(db, args.part_blocks, parts) if apply else partition_undo(db)
    bench_growth.lever_sql = lever_sql
    bench_growth.sample = sample
    bench_growth.psql = psql_loud

    db = "bench_partition"
    psql("postgres", "DROP DATABASE IF EXISTS %s; CREATE DATABASE %s;" % (db, db))
    datadir = tempfile.mkdtemp(prefix="cd-bench-partition-", dir=args.workdir)
    os.makedirs(args.out, exist_ok=True)
    sim = Sim(args.chain)
    rows, txs = [], 0
    try:
        for c in cps:
            h = bisect.bisect_left(cum, c)
            if h + windows * args.window > meta["blocks"]:
                print("checkpoint %s: chain too short: skipped" % fmt_n(c), flush=True)
                continue
            r, txs = catchup(args, sim, db, datadir, h, txs)
            r["txs"] = txs
            print("checkpoint %s (height %d, %d txs): catch-up %.0f tx/s, whole-table index "
                  "build %.1f s; load %s" % (fmt_n(c), h, txs, r["catchup_rate"],
                                             r["index_build_s"], load()), flush=True)
            if "build" not in skip:
                s, new_txs, all_txs = builds(db, args.new_blocks, args.work_mem)
                r["build"] = {"s": s, "new_txs": new_txs, "all_txs": all_txs}
            if "probes" not in skip and (not probe_at or c in probe_at):
                probe_copies(db, counts)
                r["probes"] = probes(db, counts, args.queries, 6)
            if "live" not in skip:
                plan_w, top = [], h
                for i in range(windows):
                    top += args.window
                    plan_w.append((top, "partitioned" if i % 2 else None))
                ws, txs = bench_growth.live_windows(args, sim, db, datadir, h, plan_w)
                r["live"] = ws
            else:
                r["live"] = []
            rows.append(r)
            print("  " + uptime(), flush=True)
            with open(os.path.join(args.out, "bench-partition.json"), "a") as f:
                f.write(json.dumps(r, default=str) + "\n")
    finally:
        sim.stop()
        shutil.rmtree(datadir, ignore_errors=True)
    if rows:
        md = report(rows, args)
        with open(os.path.join(args.out, "bench-partition.md"), "w") as f:
            f.write(md)
        print(md)
        plot(rows, os.path.join(args.out, "bench-partition.png"))


if __name__ == "__main__":
    main()
