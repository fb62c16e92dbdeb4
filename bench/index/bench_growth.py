#!/usr/bin/python3
"""Growth benchmark: what indexing and querying cost as the index grows.

Run under a throw-away PostgreSQL (tests/pgserver.py exports PGHOST/...):

    /usr/bin/python3 tests/pgserver.py -- /usr/bin/python3 bench/index/bench_growth.py \\
        --build build --chain /tmp/cd-growth/chain-1500 --checkpoints 1M,10M --out build

The chain is a chain file directory (tests/simnode/chainfile.py); it is
generated first if missing (--blocks/--txs-per-block; ~16-25k tx/s on one
core, ~440 B/tx on disk) and kept for the next run. The simulated node
serves it from disk (--chain-file) and reveals blocks as the benchmark
asks (control command `reveal`).

For each checkpoint C (a transaction count; the first block height whose
cumulative tx count reaches it):

1. catch-up: the node reveals blocks up to C; conduitd (catchup_indexes =
   auto, threshold --threshold blocks) indexes them from where the previous
   checkpoint stopped, dropping the secondary indexes and building them
   again at the end. Rate = new txs / (conduitd start -> tip reached and
   every secondary index present): the index build is included.
2. sizes: pg_total_relation_size of every table (heap + TOAST + indexes)
   and pg_relation_size of every index, per indexed tx.
3. queries, on a persistent psql session (latency as psql's \\timing sees
   it over the unix socket: parse + plan + execute + transfer): tx by id
   (best_transactions), spender of an outpoint (best_inputs), a 1000-row
   history page of a hot key (cd_history; the generator sends 10 % of
   outputs to 64 hot keys), the whole history of a typical key (the P2PKH
   script of a random one of the generator's keys that take 90 % of the
   outputs), a 1000-row UTXO page of a hot key (cd_utxos). Median and p99
   over random txs and outpoints sampled with TABLESAMPLE SYSTEM.
4. live: conduitd restarted with catchup_indexes = live (indexes kept); once
   it is idle at the tip and the autovacuum the catch-up set off is done
   (AUTOVACUUM_DUE, at most --settle s) the node reveals --window more
   blocks at once; what autovacuum did in each window is listed with it.
   Rate = window txs / (reveal -> indexed tip at the window's end); CPU of
   conduitd (controller + workers) and of every PostgreSQL process over the
   window, per 1000 txs, and the shared-buffer accesses (hits + reads) of
   every table and index over the window (pg_statio_user_*), per 1000 txs,
   the partitions named by role (<tip>: the open one). --levers a,b: the
   windows cycle baseline, a, b (LEVERS: index layouts applied by SQL before their window and undone
   after it), --live-repeat N times, so every layout sees the same machine
   load at nearly the same size.

Writes OUT/bench-growth.md (Markdown table), OUT/bench-growth.csv and
OUT/bench-growth.png (gnuplot). Prints `uptime` with every checkpoint: the
machine is shared, figures are only comparable within one run.
A benchmark, not a test: nothing here asserts a time.
"""
import argparse
import bisect
import glob
import hashlib
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
from bench_catchup import (  # noqa: E402
    Poller, cpu_of, pg_bin, pg_cpu, postmaster_pid, psql, secondary_names, valid_count_sql)
from tests.simnode import chainfile  # noqa: E402
from tests.simnode.protocol import hash160  # noqa: E402

# Levers that are pure SQL on an existing database: (apply, undo). Each is
# applied before its window and undone after it, so the windows alternate
# baseline / lever under the same machine load at nearly the same size.
# The index layouts change the definitions in the database's own catalog
# (sql/013's secondary_indexes: {name: (method, key)}) and rebuild through
# cd_secondary_index_create, which replaces an index of another definition,
# exactly as a migration changing the layout would; undo restores the rows
# read before the lever.
HASH_UNIQUE = {"transactions_hash_idx": ("hash", "tx_hash"),
               "inputs_outpoint_idx": ("hash", "prev_hash")}
HASH_ALL = dict(HASH_UNIQUE, pushdata_hash_idx=("hash", "push_hash"),
                outputs_script_hash_idx=("hash", "script_hash"))
# the layout before sql/013 made the first two hash indexes (the comparison
# with hash_unique, which is now the catalog's own)
BTREE_UNIQUE = {"transactions_hash_idx": ("btree", "tx_hash"),
                "inputs_outpoint_idx": ("btree", "prev_hash, prev_idx")}


def catalog(db):
    """{name: (method, key)} of the database's secondary indexes (sql/013)."""
    out = {}
    for line in psql(db, "SELECT name, method, cols FROM secondary_indexes;").splitlines():
        name, method, cols = line.split("|")
        out[name] = (method, cols)
    return out


def _layout(specs):
    """SQL giving the named secondary indexes these definitions."""
    out = []
    for name, (method, cols) in specs.items():
        out += ["UPDATE secondary_indexes SET method = '%s', cols = '%s' WHERE name = '%s'"
                % (method, cols, name),
                # each partition's own (sql/017)
                "SELECT cd_secondary_index_create(p.name) FROM secondary_index_parts p "
                "WHERE p.def = '%s'" % name]
    return out


def lever_sql(db, lever, apply):
    """The statements applying (apply=True) or undoing a lever on db."""
    cat = catalog(db)
    if not BASELINE:
        BASELINE.update(cat)  # the first call applies the first lever to the baseline
    if lever == "btree_unique":
        return _layout(BTREE_UNIQUE if apply else {k: BASELINE[k] for k in BTREE_UNIQUE})
    if lever in ("hash_unique", "hash_all"):
        # PostgreSQL hash indexes on the random 32-byte keys: a 4-byte hash
        # code per entry in a bucket instead of the 32-byte key in a B-tree
        # (smaller, one bucket page per insert). Equality only, which is all
        # docs/QUERIES.md does on these columns. hash_unique: the (nearly)
        # unique txids and spent txids; hash_all: also the pushdata and
        # script keys, which have hot keys with many duplicates (a hash
        # bucket's overflow chain grows with them).
        specs = HASH_UNIQUE if lever == "hash_unique" else HASH_ALL
        return _layout(specs if apply else {k: BASELINE[k] for k in specs})
    if lever == "fillfactor70":
        # B-tree leaves filled to 70 % at build: room for random inserts
        # before pages split (default 90)
        return (["ALTER INDEX %s %s" % (i, "SET (fillfactor = 70)" if apply
                                         else "RESET (fillfactor)") for i in cat] +
                ["REINDEX INDEX %s" % i for i in cat])
    raise KeyError(lever)


LEVERS = ("hash_unique", "hash_all", "btree_unique", "fillfactor70")
BASELINE = {}  # the catalog as found before the first lever (lever_sql fills it)


def parse_count(s):
    s = s.strip().upper()
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(s[-1:], 1)
    return int(float(s[:-1] if mult > 1 else s) * mult)


def uptime():
    return subprocess.run(["uptime"], stdout=subprocess.PIPE, text=True).stdout.strip()


def fmt_n(n):
    return "%gM" % (n / 1e6) if n >= 10**6 else "%gk" % (n / 1e3)


class Sim:
    """The simulated node serving the chain file, driven over its stdin."""

    def __init__(self, chain):
        self.p = subprocess.Popen(["/usr/bin/python3", "-m", "tests.simnode", "--regtest", "--quiet",
                                   "--chain-file", chain, "--serve-height", "0"],
                                  cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        while True:
            line = self.p.stdout.readline()
            if not line:
                sys.exit("simnode exited: rc=%s" % self.p.wait())
            if line.startswith("SIMNODE_PORT="):
                self.port = int(line.split("=")[1])
                return

    def cmd(self, **c):
        self.p.stdin.write(json.dumps(c) + "\n")
        self.p.stdin.flush()
        r = json.loads(self.p.stdout.readline())
        if not r.get("ok"):
            raise RuntimeError("simnode: %s" % r)
        return r

    def stop(self):
        self.p.terminate()
        self.p.wait()


def descendants(pid):
    """pid and every live process below it (children of any of its threads)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for t in glob.glob("/proc/%d/task/*/children" % p):
            try:
                with open(t) as f:
                    todo += [int(x) for x in f.read().split()]
            except OSError:
                pass
    return sorted(set(out))


class Daemon:
    """One conduitd run; CPU sampled from /proc (controller + its children)."""

    def __init__(self, args, port, db, datadir, mode):
        self.log = os.path.join(datadir, "conduitd-%s.log" % mode)
        cmd = [os.path.join(args.build, "src/daemon/conduitd"), "--regtest", "--datadir", datadir,
               "--connect", "127.0.0.1:%d" % port, "--pg-conninfo", "dbname=%s" % db,
               "--catchup-indexes", mode, "--catchup-threshold", str(args.threshold),
               # every checkpoint measures a catch-up (drop, load, whole-table
               # build): 0 keeps auto's block-only rule, whatever the backlog's
               # share of the index (the default 20 % would stay live for
               # checkpoints closer than that)
               "--catchup-ratio-pct", "0",
               "--status-interval", "5"] + args.daemon_arg
        self.logf = open(self.log, "a")
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                  stderr=subprocess.STDOUT)
        self.cpu = {}

    def sample_cpu(self):
        """CPU seconds of the controller and its live descendants so far."""
        for c in descendants(self.p.pid):
            v = cpu_of(c)
            if v is not None:
                self.cpu[c] = v
        return sum(self.cpu.values())

    def check(self):
        if self.p.poll() is not None:
            sys.exit("conduitd exited %d; see %s" % (self.p.returncode, self.log))

    def stop(self):
        self.p.terminate()
        self.p.wait()
        self.logf.close()


def state(poll):
    """(indexed tip height, secondary indexes valid, of how many, txs in indexed blocks)."""
    names = secondary_names(poll.query)
    r = poll.query("SELECT (SELECT coalesce(max(height), -1) FROM index_tip), (%s), "
                   "(SELECT coalesce(sum(tx_count), 0) FROM blocks WHERE indexed);"
                   % valid_count_sql(names))
    if not r:
        return -1, 0, len(names), 0
    tip, idx, txs = (int(x) for x in r[0].split("|"))
    return tip, idx, len(names), txs


def wait_tip(d, poll, height):
    while True:
        d.check()
        tip, idx, n_idx, txs = state(poll)
        if tip >= height and idx >= n_idx:
            return time.monotonic(), txs
        time.sleep(0.05)


def catchup(args, sim, db, datadir, height, prev_txs):
    sim.cmd(cmd="reveal", height=height)
    poll = Poller(db)
    pm = postmaster_pid()
    pg0 = pg_cpu(pm)
    t0 = time.monotonic()
    d = Daemon(args, sim.port, db, datadir, "auto")
    try:
        t1, txs = wait_tip(d, poll, height)
        cd = d.sample_cpu()
    finally:
        poll.close()
        d.stop()
    text = open(d.log).read()
    builds = re.findall(r"secondary indexes ready \(([0-9.]+) s\)", text)
    n = txs - prev_txs
    el = t1 - t0
    return {"catchup_txs": n, "catchup_s": el, "catchup_rate": n / el,
            "index_build_s": float(builds[-1]) if builds else 0.0,
            "catchup_cpu_ms": (cd + pg_cpu(pm) - pg0) * 1e6 / max(n, 1)}, txs


# Seconds after a window until every backend has flushed its statistics.
STATS_FLUSH_S = 11.0

# Tables autovacuum has yet to visit (its own thresholds, as the server's
# settings say: src/backend/postmaster/autovacuum.c, relation_needs_vacanalyze,
# for inserts, updates/deletes and analyze) plus the workers running now.
AUTOVACUUM_DUE = """
SELECT (SELECT count(*) FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE c.relkind = 'r' AND (
            s.n_ins_since_vacuum > current_setting('autovacuum_vacuum_insert_threshold')::float8
                + current_setting('autovacuum_vacuum_insert_scale_factor')::float8
                  * greatest(c.reltuples, 0)
         OR s.n_dead_tup > current_setting('autovacuum_vacuum_threshold')::float8
                + current_setting('autovacuum_vacuum_scale_factor')::float8
                  * greatest(c.reltuples, 0)
         OR s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
                + current_setting('autovacuum_analyze_scale_factor')::float8
                  * greatest(c.reltuples, 0)))
     + (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker');
"""


def settle_autovacuum(db, limit):
    """Waits (at most limit s) until autovacuum has nothing due in db and no
    worker runs; returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit and psql(db, AUTOVACUUM_DUE).strip() != "0":
        time.sleep(1.0)
    return time.monotonic() - t0


def live_windows(args, sim, db, datadir, start, windows):
    """Measure each (height_to, lever or None) window in turn."""
    out = []
    poll = Poller(db)
    pm = postmaster_pid()
    d = Daemon(args, sim.port, db, datadir, "live")
    try:
        _, txs = wait_tip(d, poll, start)
        time.sleep(1.0)          # the start-up index check helper is done
        # the autovacuum a catch-up's load sets off (insert thresholds: each
        # table loaded is vacuumed and analyzed once, whole) runs for minutes
        # at 9M txs and took a core from the first windows (12k tx/s against
        # 22k); it is the load's cost, once, not live mode's: the windows
        # start once it is done (what runs in a window is still listed)
        print("  autovacuum after the catch-up: done in %.0f s" % settle_autovacuum(db, args.settle),
              flush=True)
        for to, lever in windows:
            if lever:
                t2 = time.monotonic()
                d.stop()         # DDL needs the tables to itself
                for s in lever_sql(db, lever, True):
                    psql(db, s + ";")
                print("  (%s applied in %.1f s)" % (lever, time.monotonic() - t2), flush=True)
                d = Daemon(args, sim.port, db, datadir, "live")
                wait_tip(d, poll, 0)
                time.sleep(1.0)
            b0 = Counts(db)  # the daemon idle for a second: flushed
            c0, pg0 = d.sample_cpu(), pg_cpu(pm)
            t0 = time.monotonic()
            sim.cmd(cmd="reveal", height=to)
            t1, txs1 = wait_tip(d, poll, to)
            c1, pg1 = d.sample_cpu(), pg_cpu(pm)
            n = txs1 - txs
            load = uptime()
            # backends flush their statistics at most once a second; one
            # that flushed less than a second before going idle flushes the
            # rest 10 s later (PostgreSQL 15, pgstat.c: pgstat_report_stat
            # returns PGSTAT_IDLE_INTERVAL, the idle timeout)
            time.sleep(STATS_FLUSH_S)
            out.append({"lever": lever or "baseline", "at_txs": txs, "live_txs": n,
                        "live_s": t1 - t0, "live_rate": n / (t1 - t0),
                        "live_pg_ms": (pg1 - pg0) * 1e6 / n, "live_cd_ms": (c1 - c0) * 1e6 / n,
                        "uptime": load})
            b1 = Counts(db)
            out[-1]["bufs"] = buffer_delta(b0, b1, n)
            out[-1]["autovacuum"] = autovacuums(b0, b1)
            txs = txs1
            w = out[-1]
            if args.point_queries:
                # the layout's point lookups (the daemon idle, the window's
                # rows written): the latency a hash index would change
                w["q"] = queries(db, None, args.point_queries, point_only=True)
                print("  (%s) %s" % (w["lever"], "; ".join(
                    "%s p50 %.3f ms p99 %.3f ms" % (k, v[0], v[1]) for k, v in w["q"].items())),
                    flush=True)
            # printed at once: a run stopped later keeps what it measured
            print("  live window (%s) at %s: %d txs in %.2f s = %.0f tx/s; CPU ms/1000 tx: "
                  "PostgreSQL %.1f conduitd %.1f; load %s" % (
                      w["lever"], fmt_n(w["at_txs"]), w["live_txs"], w["live_s"], w["live_rate"],
                      w["live_pg_ms"], w["live_cd_ms"],
                      w["uptime"].split("load average:")[-1].strip()), flush=True)
            cls = {}
            for g, (a, r) in w["bufs"].items():
                k = "tip" if "<tip>" in g else "closed" if "<closed>" in g else "other"
                cls[k] = (cls.get(k, (0, 0))[0] + a, cls.get(k, (0, 0))[1] + r)
            print("    shared buffers per 1000 tx (accesses / reads): %s; most: %s" % (
                ", ".join("%s %.0f / %.0f" % (k, v[0], v[1]) for k, v in sorted(cls.items())),
                ", ".join("%s %.0f / %.0f" % (g, a, r) for g, (a, r) in sorted(
                    w["bufs"].items(), key=lambda kv: -kv[1][0])[:8])), flush=True)
            print("    autovacuum in the window: %s" % (", ".join(w["autovacuum"]) or "none"),
                  flush=True)
            if lever:
                t2 = time.monotonic()
                d.stop()
                for s in lever_sql(db, lever, False):
                    psql(db, s + ";")
                print("  (%s undone in %.1f s)" % (lever, time.monotonic() - t2), flush=True)
                d = Daemon(args, sim.port, db, datadir, "live")
                wait_tip(d, poll, 0)
                time.sleep(1.0)
    finally:
        poll.close()
        d.stop()
    return out, txs


def sizes(db, ntx):
    """{relation: bytes per tx}: tables with everything, then each index."""
    out = {}
    for line in psql(db, "SELECT c.relname, c.relkind, pg_total_relation_size(c.oid), "
                         "pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n "
                         "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                         "AND c.relkind IN ('r', 'i') ORDER BY 3 DESC;").splitlines():
        name, kind, total, rel = line.split("|")
        out[(name, kind)] = (int(total) if kind == "r" else int(rel)) / ntx
    return out


class Counts:
    """One reading of the statistics: shared-buffer (hits, reads) of every
    table (heap) and index of the schema (pg_statio_user_*), the autovacuum
    and autoanalyze runs so far per table, the autovacuum workers running
    now (counted in runs only once they end), and {partition: (its table,
    open?)} to name the partitions by role; and the server's WAL so far
    (pg_stat_wal, the whole cluster: records, full-page images, bytes)."""

    def __init__(self, db):
        rec, fpi, nbytes = psql(db, "SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal;").split("|")
        self.wal = (int(rec), int(fpi), int(nbytes))
        self.bufs = {}
        for line in psql(db, "SELECT relname, heap_blks_hit, heap_blks_read "
                             "FROM pg_statio_user_tables UNION ALL "
                             "SELECT indexrelname, idx_blks_hit, idx_blks_read "
                             "FROM pg_statio_user_indexes;").splitlines():
            name, hit, read = line.split("|")
            self.bufs[name] = (int(hit or 0), int(read or 0))
        self.runs = {}
        for line in psql(db, "SELECT relname, autovacuum_count, autoanalyze_count "
                             "FROM pg_stat_user_tables;").splitlines():
            name, vac, ana = line.split("|")
            self.runs[("vacuum", name)] = int(vac)
            self.runs[("analyze", name)] = int(ana)
        self.running = sorted(
            line.replace("autovacuum: ", "")
            for line in psql(db, "SELECT query FROM pg_stat_activity "
                                 "WHERE backend_type = 'autovacuum worker';").splitlines())
        self.parts = {}
        for line in psql(db, "SELECT part, tbl, hi IS NULL FROM partitions;").splitlines():
            part, tbl, open_ = line.split("|")
            self.parts[part] = (tbl, open_ == "t")


def generic(name, parts):
    """A partition's relation named for its role: transactions_p3_hash_idx
    -> transactions<tip>_hash_idx (the open partition) or <closed>."""
    best = None
    for p in parts:
        if (name == p or name.startswith(p + "_")) and (best is None or len(p) > len(best)):
            best = p
    if best is None:
        return name
    tbl, open_ = parts[best]
    return tbl + ("<tip>" if open_ else "<closed>") + name[len(best):]


def autovacuums(b0, b1):
    """What autovacuum did between two Counts, e.g. ["vacuum pushdata_p0",
    "analyze outputs_p0", "(running at the end: VACUUM ...)"]: its CPU is
    PostgreSQL's, counted in the window's PG ms/1000 tx."""
    return (["%s %s" % k for k, v in sorted(b1.runs.items()) if v > b0.runs.get(k, 0)]
            + ["(running at the start: %s)" % q for q in b0.running]
            + ["(running at the end: %s)" % q for q in b1.running])


def buffer_delta(b0, b1, n):
    """{generic relation: (buffer accesses, reads) per 1000 txs} between two
    Counts, the partitions named by their role at the end."""
    out = {}
    for name, (h1, r1) in b1.bufs.items():
        h0, r0 = b0.bufs.get(name, (0, 0))
        g = generic(name, b1.parts)
        a, r = out.get(g, (0.0, 0.0))
        out[g] = (a + (h1 - h0 + r1 - r0) * 1e3 / n, r + (r1 - r0) * 1e3 / n)
    return out


class Timer:
    """Query latencies through one psql session with \\timing, set up as the
    HTTP API's sessions are (HTTP_PG_SETUP, src/api/cd_http_int.h: jit =
    off). With PostgreSQL's default (jit on) a page of a key whose plan is
    estimated past jit_above_cost spent ~0.6-0.7 s compiling it against ~1 ms
    executing (measured at 150k txs: 702 ms, 671 of them JIT)."""

    def __init__(self, db):
        self.p = subprocess.Popen([pg_bin("psql"), "-X", "-q", "-A", "-t", "-d", db],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.p.stdin.write("SET jit = off;\n\\timing on\n")

    def run(self, sql):
        """(ms, rows) of one statement."""
        self.p.stdin.write(sql + "\n\\echo @@END@@\n")
        self.p.stdin.flush()
        ms, rows = None, 0
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError("psql exited")
            line = line.rstrip("\n")
            if line == "@@END@@":
                break
            m = re.match(r"Time: ([0-9.]+) ms", line)
            if m:
                ms = float(m.group(1))
            elif line.startswith("ERROR") or line.startswith("psql:"):
                raise RuntimeError("%s: %s" % (sql, line))
            else:
                rows += 1
        return ms, rows

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def sample_pct(db, table, n):
    """The TABLESAMPLE SYSTEM percentage that reads about max(50, n/20) pages
    of table. From the pages on disk, not pg_class.relpages (0 until the
    first ANALYZE, and always 0 for a partitioned table, sql/017: the sample
    then read the whole table, all 10M rows at 10M txs); a partitioned
    table's pages are its partitions' (pg_partition_tree of a plain table is
    the table itself)."""
    tot = int(psql(db, "SELECT greatest(1, sum(pg_relation_size(relid)) / "
                   "current_setting('block_size')::int)::bigint FROM pg_partition_tree('%s');"
                   % table))
    return min(100.0, 100.0 * max(50, n // 20) / tot)


def sample(db, sql_from, cols, n):
    """n random rows (hex columns) of a table via TABLESAMPLE SYSTEM pages."""
    pct_pages = sample_pct(db, sql_from, n)
    rows = psql(db, "SELECT %s FROM %s TABLESAMPLE SYSTEM (%f);" % (cols, sql_from, pct_pages))
    rows = [r.split("|") for r in rows.splitlines() if r]
    random.shuffle(rows)
    return rows[:n]


def typical_keys(meta, n, seed):
    """n typical keys: the P2PKH script of one of the generator's keys that
    take 90 % of the outputs (tests/simnode/chain.py Wallet.key:
    02|sha256("simnode-key-%d")), drawn with random.Random(seed). Outputs
    drawn by TABLESAMPLE were not: a quarter or more pay a hot key or one of
    the few P2SH scripts, so the median was sometimes a hot key's (0.5-2.4 s)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        i = rng.randrange(meta.get("keys") or 1_000_000)
        pub = b"\x02" + hashlib.sha256(b"simnode-key-%d" % i).digest()
        out.append("76a914%s88ac" % hash160(pub).hex())
    return out


def queries(db, meta, n, point_only=False):
    """{query: (median ms, p99 ms, runs, mean rows)}; point_only: tx by id and
    spender of an outpoint only (after each live window, under its layout)."""
    t = Timer(db)
    out = {}
    try:
        def measure(name, stmts):
            ms, rows = [], []
            for s in stmts:
                a, r = t.run(s)
                ms.append(a)
                rows.append(r)
            out[name] = (statistics.median(ms), pct(ms, 99), len(ms), sum(rows) / len(rows))
        txs = sample(db, "transactions", "encode(tx_hash, 'hex')", n)
        measure("tx by id", ["SELECT height, tx_pos, tx_offset, tx_size FROM best_transactions "
                             "WHERE tx_hash = '\\x%s';" % h for (h,) in txs])
        ins = sample(db, "inputs", "encode(prev_hash, 'hex'), prev_idx", n)
        measure("spender of outpoint", [
            "SELECT spend_tx_hash, in_idx, height FROM best_inputs WHERE prev_hash = '\\x%s' "
            "AND prev_idx = %s;" % (h, i) for h, i in ins])
        if point_only:
            return out
        typical = typical_keys(meta, max(20, n // 20), n)
        measure("history of a typical key (all rows)", [
            "SELECT count(*) FROM cd_history('script', sha256('\\x%s'), 1000);" % k
            for k in typical])
        hot = ["76a914%s88ac" % h for h in meta["hot_keys"]]
        pages = max(10, n // 50)
        hot_stmts = [hot[i % len(hot)] for i in range(pages)]
        measure("history page of a hot key (1000 rows)", [
            "SELECT txid, height, pos, direction FROM cd_history('script', sha256('\\x%s'), 1000);"
            % s for s in hot_stmts])
        measure("UTXO page of a hot key (1000 rows)", [
            "SELECT txid, vout, value, height FROM cd_utxos('script', sha256('\\x%s'), 1000);"
            % s for s in hot_stmts])
    finally:
        t.close()
    return out


def plot(rows, png):
    """Two panels against txs indexed: rates (catch-up, live) and CPU per 1000 tx."""
    dat = png[:-4] + ".dat"
    with open(dat, "w") as f:
        for r in rows:
            f.write("%d %.0f %.0f %.1f %.1f %.3f %.3f\n" % (
                r["txs"], r["catchup_rate"], r["live_rate"], r["live_pg_ms"], r["live_cd_ms"],
                r["q"]["tx by id"][0], r["q"]["spender of outpoint"][0]))
    gp = """set terminal pngcairo size 900,900 noenhanced
set output '%s'
set multiplot layout 3,1 title 'conduitd growth benchmark (bench/index/bench_growth.py)'
set logscale x
set grid
set key left bottom
set xlabel 'transactions indexed'
set ylabel 'tx/s'
set yrange [0:*]
plot '%s' u 1:2 w lp lw 2 t 'catch-up (index build included)', '' u 1:3 w lp lw 2 t 'live (indexes kept)'
set ylabel 'CPU ms per 1000 tx (live)'
plot '%s' u 1:4 w lp lw 2 t 'PostgreSQL', '' u 1:5 w lp lw 2 t 'conduitd'
set ylabel 'median latency, ms'
plot '%s' u 1:6 w lp lw 2 t 'tx by id', '' u 1:7 w lp lw 2 t 'spender of an outpoint'
unset multiplot
""" % (png, dat, dat, dat)
    r = subprocess.run(["gnuplot"], input=gp, text=True, stderr=subprocess.PIPE)
    if r.returncode:
        print("gnuplot failed: %s" % r.stderr.strip(), file=sys.stderr)


def table(rows, levers):
    out = ["| txs indexed | catch-up tx/s (index build s) | live tx/s | live CPU ms/1000 tx: PG + conduitd | "
           "DB bytes/tx | tx by id p50/p99 ms | spender p50/p99 ms | typical key history p50/p99 ms | "
           "hot-key history page p50/p99 ms | hot-key UTXO page p50/p99 ms | load (uptime) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = r["q"]

        def qq(k):
            return "%.2f / %.2f" % (q[k][0], q[k][1])
        out.append("| %s | %.0fk (%.0f s) | %.0fk | %.0f + %.0f | %.0f | %s | %s | %s | %s | %s | %s |" % (
            fmt_n(r["txs"]), r["catchup_rate"] / 1e3, r["index_build_s"], r["live_rate"] / 1e3,
            r["live_pg_ms"], r["live_cd_ms"], r["db_bytes"], qq("tx by id"),
            qq("spender of outpoint"), qq("history of a typical key (all rows)"),
            qq("history page of a hot key (1000 rows)"), qq("UTXO page of a hot key (1000 rows)"),
            r["load"]))
    out.append("")
    out.append("Bytes per tx by relation (tables: heap + TOAST + indexes; then each index):")
    out.append("")
    names = [k for k, v in sorted(rows[-1]["sizes"].items(), key=lambda kv: -kv[1]) if v >= 5.0]
    out.append("| relation | " + " | ".join(fmt_n(r["txs"]) for r in rows) + " |")
    out.append("|---|" + "---|" * len(rows))
    for k in names:
        out.append("| %s %s | " % ("table" if k[1] == "r" else "index", k[0]) +
                   " | ".join("%.1f" % r["sizes"].get(k, 0.0) for r in rows) + " |")
    if any("bufs" in w for w in levers):
        ws = [w for w in levers if "bufs" in w]
        out.append("")
        out.append("Shared-buffer accesses per 1000 txs in each live window, by relation "
                   "(hits + reads; reads in brackets), partitions by role (<tip> the open one):")
        out.append("")
        top = sorted({g for w in ws for g in w["bufs"]},
                     key=lambda g: -max(w["bufs"].get(g, (0, 0))[0] for w in ws))
        top = [g for g in top if max(w["bufs"].get(g, (0, 0))[0] for w in ws) >= 50][:20]
        out.append("| relation | " + " | ".join("%s %s" % (fmt_n(w["at_txs"]), w["lever"])
                                               for w in ws) + " |")
        out.append("|---|" + "---|" * len(ws))
        for g in top:
            out.append("| %s | " % g + " | ".join(
                "%.0f (%.0f)" % w["bufs"].get(g, (0, 0)) for w in ws) + " |")
        out.append("| all | " + " | ".join(
            "%.0f (%.0f)" % (sum(a for a, _ in w["bufs"].values()),
                             sum(r for _, r in w["bufs"].values())) for w in ws) + " |")
    if levers:
        out.append("")
        out.append("Live windows (alternating when a lever is measured):")
        out.append("")
        out.append("| at txs | layout | window txs | live tx/s | PG ms/1000 tx | conduitd ms/1000 tx | "
                   "autovacuum in the window | load |")
        out.append("|---|---|---|---|---|---|---|---|")
        for w in levers:
            out.append("| %s | %s | %d | %.0fk | %.1f | %.1f | %s | %s |" % (
                fmt_n(w["at_txs"]), w["lever"], w["live_txs"], w["live_rate"] / 1e3,
                w["live_pg_ms"], w["live_cd_ms"], ", ".join(w.get("autovacuum", ())) or "none",
                w["uptime"].split("load average:")[-1].strip()))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--chain", default="/tmp/cd-growth/chain-1500",
                    help="chain file directory (generated if missing)")
    ap.add_argument("--blocks", type=int, default=None,
                    help="blocks to generate if the chain is missing (default: enough for "
                    "the last checkpoint and its windows)")
    ap.add_argument("--txs-per-block", type=int, default=1500)
    ap.add_argument("--checkpoints", default="1M,10M")
    ap.add_argument("--window", type=int, default=60, help="blocks per live window")
    ap.add_argument("--live-repeat", type=int, default=1, help="live windows per checkpoint")
    ap.add_argument("--levers", default="",
                    help="comma-separated LEVERS: each repeat measures baseline then each lever "
                    "(%s)" % ", ".join(sorted(LEVERS)))
    ap.add_argument("--queries", type=int, default=2000, help="random point lookups per query kind")
    ap.add_argument("--point-queries", type=int, default=0,
                    help="after each live window: this many tx-by-id and spender lookups under "
                    "the window's layout (0: none)")
    ap.add_argument("--threshold", type=int, default=10, help="catchup_threshold (blocks)")
    ap.add_argument("--settle", type=float, default=900.0,
                    help="at most this many seconds waiting for the autovacuum the catch-up's "
                         "load set off before the live windows")
    ap.add_argument("--daemon-arg", action="append", default=[])
    ap.add_argument("--workdir", default=None, help="conduitd data directory parent (default TMPDIR)")
    ap.add_argument("--out", default="build", help="directory for bench-growth.{md,csv,png}")
    args = ap.parse_args()
    if not os.environ.get("PGHOST"):
        sys.exit("run under tests/pgserver.py (PGHOST is not set)")
    cps = [parse_count(c) for c in args.checkpoints.split(",")]
    levers = [x for x in args.levers.split(",") if x]
    for x in levers:
        if x not in LEVERS:
            sys.exit("unknown lever %s (%s)" % (x, ", ".join(sorted(LEVERS))))
    cycle = [None] + levers
    windows = args.live_repeat * len(cycle)
    if not os.path.exists(os.path.join(args.chain, "meta.json")):
        blocks = args.blocks or (cps[-1] // args.txs_per_block + 2 + windows * args.window)
        print("generating %s: %d blocks x %d txs" % (args.chain, blocks, args.txs_per_block),
              flush=True)
        shutil.rmtree(args.chain, ignore_errors=True)
        chainfile.generate(args.chain, blocks, args.txs_per_block,
                           log=lambda s: print("  " + s, flush=True))
    meta = chainfile.read_meta(args.chain)
    cum = chainfile.cumulative_txs(args.chain)
    print("chain %s: %s" % (args.chain, chainfile.describe(meta)), flush=True)
    plan = []
    for c in cps:
        h = bisect.bisect_left(cum, c)
        if h + windows * args.window > meta["blocks"]:
            print("checkpoint %s: the chain is too short (needs height %d + %d window blocks, "
                  "has %d): skipped" % (fmt_n(c), h, windows * args.window, meta["blocks"]),
                  flush=True)
            continue
        if plan and h <= plan[-1][1] + windows * args.window:
            print("checkpoint %s: inside the previous checkpoint's windows: skipped" % fmt_n(c))
            continue
        plan.append((c, h))
    db = "bench_growth"
    psql("postgres", "DROP DATABASE IF EXISTS %s; CREATE DATABASE %s;" % (db, db))
    datadir = tempfile.mkdtemp(prefix="cd-bench-growth-", dir=args.workdir)
    os.makedirs(args.out, exist_ok=True)
    sim = Sim(args.chain)
    rows, lever_rows = [], []
    txs = 0
    try:
        for c, h in plan:
            r, txs = catchup(args, sim, db, datadir, h, txs)
            print("checkpoint %s (height %d, %d txs): catch-up %.0f tx/s (%d txs in %.1f s, index "
                  "build %.1f s, %.1f CPU ms/1000 tx)" % (fmt_n(c), h, txs, r["catchup_rate"],
                                                         r["catchup_txs"], r["catchup_s"],
                                                         r["index_build_s"], r["catchup_cpu_ms"]),
                  flush=True)
            r["txs"] = txs
            r["sizes"] = sizes(db, txs)
            r["db_bytes"] = sum(v for k, v in r["sizes"].items() if k[1] == "r")
            print("  database %.0f B/tx; %s" % (r["db_bytes"], ", ".join(
                "%s %.0f" % (k[0], v) for k, v in sorted(r["sizes"].items(), key=lambda kv: -kv[1])
                if v >= 5)), flush=True)
            r["q"] = queries(db, meta, args.queries)
            for k, v in r["q"].items():
                print("  %-40s p50 %.3f ms  p99 %.3f ms  (%d runs, %.0f rows)" % ((k,) + v),
                      flush=True)
            plan_w = []
            top = h
            for i in range(windows):
                top += args.window
                plan_w.append((top, cycle[i % len(cycle)]))
            ws, txs = live_windows(args, sim, db, datadir, h, plan_w)
            base = [w for w in ws if w["lever"] == "baseline"]
            r["live_rate"] = statistics.median(w["live_rate"] for w in base)
            r["live_pg_ms"] = statistics.median(w["live_pg_ms"] for w in base)
            r["live_cd_ms"] = statistics.median(w["live_cd_ms"] for w in base)
            r["load"] = uptime().split("load average:")[-1].strip()
            print("  " + uptime(), flush=True)
            lever_rows += ws
            rows.append(r)
            with open(os.path.join(args.out, "bench-growth.csv"), "a") as f:
                f.write(json.dumps({k: v for k, v in r.items() if k != "sizes"}) + "\n")
    finally:
        sim.stop()
        du = subprocess.run(["du", "-sb", datadir], stdout=subprocess.PIPE, text=True).stdout
        print("conduitd data directory: %s" % du.strip(), flush=True)
        shutil.rmtree(datadir, ignore_errors=True)
    if rows:
        md = table(rows, lever_rows if (levers or args.live_repeat > 1) else [])
        with open(os.path.join(args.out, "bench-growth.md"), "w") as f:
            f.write(md)
        print(md)
        plot(rows, os.path.join(args.out, "bench-growth.png"))
        print("wrote %s/bench-growth.{md,csv,png}" % args.out)


if __name__ == "__main__":
    main()
