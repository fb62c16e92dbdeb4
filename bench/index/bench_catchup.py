#!/usr/bin/python3
"""End-to-end index rate of conduitd itself: header sync + block download from
the simulated node + parse + COPY into PostgreSQL + (auto mode) the final
secondary-index build, for catchup_indexes = auto and live.

Run under a throw-away PostgreSQL (tests/pgserver.py exports PGHOST/PGPORT/...):

    /usr/bin/python3 tests/pgserver.py -- /usr/bin/python3 bench/index/bench_catchup.py \
        --build build-catchup --blocks 400 --txs-per-block 1500 [--modes auto,live]

The simulator runs as its own process (python3 -m tests.simnode --generate N
--txs-per-block K: P2PKH-style transactions, ~450 B each); the clock starts
when conduitd is started (the chain is already generated) and stops when the
indexed tip is the chain tip AND the three secondary indexes exist. Every
mode gets a fresh database and data directory. Prints two lines per mode: the
rate, and the CPU milliseconds each process class spent per 1000 txs (from /proc:
controller, block writer, merkle worker, parsers, catch-up helper, every
PostgreSQL process of the throw-away server, the simulator; the bench's own
polling is one persistent psql session, so it costs next to nothing).

--samples FILE records the time series behind the rate: every poll (10 a
second) appends `mode,t_s,height,txs,indexes` (seconds since conduitd started,
indexed tip, transactions in fully indexed blocks, secondary indexes present);
bench/plot.py draws it (scripts/bench.sh does both). Three more columns
follow for the growth charts (bench/plot.py --growth): `pg_cpu_s` (CPU of
every PostgreSQL process so far), `pg_read_b` (bytes the PostgreSQL
processes read from storage so far, /proc/PID/io read_bytes: page-cache hits
are not counted) and `key_txs` (transactions in the best-chain blocks up to
key_rows_mark: how far the trailing key-rows step has derived; 0 without it).

Under `tests/pgserver.py --pg-memory-max SIZE` (the server in a memory
cgroup, page cache included) each mode also prints the cap's peak usage and
its cache/rss split, so a reader sees the cap held. --queries N times N
random point lookups (tx by id, spender of an outpoint) at the end, with the
daemon stopped and the caches as the run left them; --sizes prints the
bytes per tx of every table and index (bench_growth's) and the relations
with the most shared_buffers misses (pg_statio).
"""
import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The secondary indexes are the database's list (sql/013's table
# secondary_indexes); this one is only for a build from before sql/013, which
# a before/after comparison (--builds) may run.
LEGACY_SECONDARY = ("transactions_hash_idx", "inputs_outpoint_idx", "pushdata_hash_idx",
                    "outputs_script_hash_idx")


def secondary_names(query):
    """The secondary index names of a database, read with query(sql) -> lines
    or None: one per partition since sql/017 (they change with each roll, so
    the caller reads them at every poll), else the catalog of sql/013, else
    (an older schema, or none yet) the legacy list."""
    if query("SELECT 1 FROM pg_class WHERE relname = 'secondary_index_parts';"):
        r = query("SELECT name FROM cd_secondary_indexes_state() ORDER BY name;")
    else:
        r = query("SELECT name FROM secondary_indexes ORDER BY name;")
    return tuple(r) if r else LEGACY_SECONDARY


def valid_count_sql(names):
    """SQL counting the named indexes that are present and valid."""
    return ("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indisvalid AND c.relname IN (%s)" % ",".join("'%s'" % n for n in names))


HZ = os.sysconf("SC_CLK_TCK")


def pg_bin(name):
    """The server's own client binary: Debian's /usr/bin/psql is a Perl
    wrapper costing ~50 ms of CPU per call, which polling would pay 20 times
    a second on the cores being measured."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]),
                    reverse=True):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    return name


class Poller:
    """One psql session kept open for the polling queries."""

    def __init__(self, db):
        self.p = subprocess.Popen([pg_bin("psql"), "-X", "-q", "-A", "-t", "-d", db],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def query(self, sql):
        """Returns the output lines of sql, or None if it failed."""
        self.p.stdin.write("%s\n\\echo @@END@@ :ERROR\n" % sql)
        self.p.stdin.flush()
        out = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError("psql poller exited")
            line = line.rstrip("\n")
            if line.startswith("@@END@@"):
                return None if line.endswith("true") else out
            out.append(line)

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def cpu_of(pid, children=False):
    """utime+stime (and, with children, the reaped children's) of pid in s."""
    try:
        st = open("/proc/%d/stat" % pid).read()
    except OSError:
        return None
    f = st[st.rfind(")") + 2:].split()
    t = int(f[11]) + int(f[12])
    if children:
        t += int(f[13]) + int(f[14])
    return t / HZ


def children_of(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def postmaster_pid():
    try:
        with open(os.path.join(os.environ["PGHOST"], "data", "postmaster.pid")) as f:
            return int(f.readline())
    except (OSError, ValueError, KeyError):
        return None


def pg_cpu(pm):
    """All CPU of the PostgreSQL server so far: the postmaster, its reaped
    children (backends that exited) and its live children."""
    if pm is None:
        return 0.0
    t = cpu_of(pm, children=True) or 0.0
    for c in children_of(pm):
        t += cpu_of(c) or 0.0
    return t


class PgIo:
    """Bytes read from storage by the PostgreSQL processes (read_bytes of
    /proc/PID/io: reads the page cache served are not counted). A backend's
    count dies with it and the postmaster does not inherit it, so the last
    value seen of every process is kept: a process's reads between the last
    poll and its exit are missed (the daemon's sessions live for the run)."""

    def __init__(self, pm):
        self.pm = pm
        self.last = {}

    def total(self):
        if self.pm is None:
            return 0
        for pid in [self.pm] + children_of(self.pm):
            try:
                with open("/proc/%d/io" % pid) as f:
                    for line in f:
                        if line.startswith("read_bytes:"):
                            self.last[pid] = int(line.split()[1])
            except OSError:
                pass
        return sum(self.last.values())


def memcg():
    """The memory cgroup directory tests/pgserver.py --pg-memory-max put the
    server in, or None."""
    g = os.environ.get("CD_TEST_PG_MEMCG")
    return g if g and os.path.isdir(g) else None


def memcg_reset_peak():
    g = memcg()
    if g:
        with open(os.path.join(g, "memory.max_usage_in_bytes"), "w") as f:
            f.write("0")


def memcg_line():
    """The cap's state for the bench output (pgserver.memcg_summary), or ''."""
    g = memcg()
    if not g:
        return ""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import pgserver  # noqa: E402 (the test harness; only for its readers)
    return pgserver.memcg_summary(pgserver.memcg_read(g))


def psql(db, sql):
    out = subprocess.run([pg_bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
                         input=sql.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         check=True)
    return out.stdout.decode().strip()


def start_simnode(blocks, txs, chain=None):
    if chain:  # a chain file (python3 -m tests.simnode.chainfile), its first `blocks` blocks
        src = ["--chain-file", chain, "--serve-height", str(blocks)]
    else:
        src = ["--generate", str(blocks), "--txs-per-block", str(txs), "--seed", "11"]
    p = subprocess.Popen(["/usr/bin/python3", "-m", "tests.simnode", "--regtest", "--quiet",
                          "--no-stdin"] + src,
                         cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    while True:
        line = p.stdout.readline()
        if not line:
            sys.exit("simnode exited: rc=%s" % p.wait())
        if line.startswith("SIMNODE_PORT="):
            return p, int(line.split("=")[1])


def run_mode(args, mode, port, blocks, sim, samples, build=None):
    build = build or args.build
    db = "bench_catchup_%s" % mode
    psql("postgres", "DROP DATABASE IF EXISTS %s; CREATE DATABASE %s;" % (db, db))
    datadir = tempfile.mkdtemp(prefix="cd-bench-catchup-", dir=args.workdir)
    log = os.path.join(datadir, "conduitd.log")
    cmd = [os.path.join(build, "src/daemon/conduitd"), "--regtest", "--datadir", datadir,
           "--connect", "127.0.0.1:%d" % port, "--pg-conninfo", "dbname=%s" % db,
           "--catchup-indexes", mode, "--catchup-threshold", str(args.threshold),
           "--status-interval", "5"] + args.daemon_arg
    poll = Poller(db)
    pm = postmaster_pid()
    pgio = PgIo(pm)
    io0 = pgio.total()
    memcg_reset_peak()
    pg0, sim0 = pg_cpu(pm), cpu_of(sim.pid) or 0.0
    t0 = time.monotonic()
    logf = open(log, "w")
    d = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    proc_cpu = {}  # pid of a conduitd process -> last CPU seen
    names = None
    have_mark = False
    try:
        t_tip = None
        while True:
            if d.poll() is not None:
                sys.exit("conduitd exited %d; see %s" % (d.returncode, log))
            for c in [d.pid] + children_of(d.pid):
                v = cpu_of(c)
                if v is not None:
                    proc_cpu[c] = v
            names = secondary_names(poll.query)
            if not have_mark:  # sql/014's table, absent from older builds' schemas
                have_mark = poll.query("SELECT 1 FROM pg_class WHERE relname = "
                                       "'key_rows_mark';") == ["1"]
            r = poll.query("SELECT (SELECT coalesce(max(height), -1) FROM index_tip), "
                           "(%s), "
                           "(SELECT coalesce(sum(tx_count), 0) FROM blocks WHERE indexed), %s;"
                           % (valid_count_sql(names),
                              "(SELECT coalesce(sum(b.tx_count), 0) FROM blocks b, key_rows_mark k "
                              "WHERE b.on_best_chain AND b.height <= k.height)"
                              if have_mark else "0"))
            if r:
                tip, n_idx, n_txs, key_txs = (int(x) for x in r[0].split("|"))
            else:
                tip, n_idx, n_txs, key_txs = -1, 0, 0, 0  # schema not created yet
            now = time.monotonic()
            if samples:
                samples.write("%s,%.3f,%d,%d,%d,%.2f,%d,%d\n"
                              % (mode, now - t0, tip, n_txs, n_idx, pg_cpu(pm) - pg0,
                                 pgio.total() - io0, key_txs))
            if tip >= blocks and t_tip is None:
                t_tip = now
            # every secondary index of the schema, valid
            if tip >= blocks and n_idx == len(names):
                break
            time.sleep(0.1)
        elapsed = now - t0
        sim1 = cpu_of(sim.pid) or 0.0
    finally:
        poll.close()
        d.terminate()
        _, _, ru = os.wait4(d.pid, 0)
        d.returncode = 0
        logf.close()
    # conduitd and every process it reaped (workers, catch-up helpers)
    cd_total = ru.ru_utime + ru.ru_stime
    time.sleep(0.3)  # let the postmaster reap the daemon's backends
    pg_total = pg_cpu(pm) - pg0
    pg_read = pgio.total() - io0
    cap = memcg_line()
    key_line = ""
    if key_txs > 0:
        key_line = "  key rows: mark at %d of %d txs when the tip was reached" % (key_txs, n_txs)
    ntx = int(psql(db, "SELECT count(*) FROM transactions;"))
    nin = int(psql(db, "SELECT count(*) FROM inputs;"))
    npd = int(psql(db, "SELECT count(*) FROM pushdata;"))
    # outputs (sql/007); 0 with a build from before them
    nout = 0
    if psql(db, "SELECT to_regclass('outputs') IS NOT NULL;") == "t":
        nout = int(psql(db, "SELECT count(*) FROM outputs;"))
    nbytes = int(psql(db, "SELECT sum(size) FROM blocks;"))
    # bytes per tx in PostgreSQL: all tables with their indexes, and the
    # outputs table alone (sql/007; 0 before it)
    db_b = int(psql(db, "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = 'public' AND c.relkind = 'r';"))
    # (a partitioned table has no storage of its own: sum its partitions;
    # pg_partition_tree of a plain table is the table)
    out_b = int(psql(db, "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) "
                         "FROM pg_partition_tree(to_regclass('outputs'));"))
    text = open(log).read()
    kinds = {int(pid): kind for kind, pid in
             re.findall(r"supervisor: started (\w+) worker \d+ \(pid (\d+)\)", text)}
    per = collections.OrderedDict([("controller", proc_cpu.get(d.pid, 0.0))])
    for pid, v in sorted(proc_cpu.items()):
        if pid != d.pid:
            k = kinds.get(pid, "helpers")
            per[k] = per.get(k, 0.0) + v
    per["helpers"] = max(0.0, cd_total - sum(per.values()))
    per["postgres"] = pg_total
    per["simnode"] = sim1 - sim0
    m = re.search(r"secondary indexes ready \(([0-9.]+) s\)", text)
    build_s = float(m.group(1)) if m else 0.0
    dropped = "secondary indexes dropped" in text
    if args.builds:
        print("build=%s uptime=%s" % (build, subprocess.run(
            ["uptime"], stdout=subprocess.PIPE, text=True).stdout.strip()), flush=True)
    # index_build: the final build's own time (its log line); after_tip:
    # from the tip reached to every index valid, which also counts the
    # closed partitions' builds still running then (catch-up with rolls)
    print("mode=%-4s blocks=%d txs=%d bytes=%.1fMB rows=%d (outputs %d) elapsed=%.2fs tip_at=%.2fs "
          "index_build=%.2fs after_tip=%.2fs dropped=%s  ->  %.0f tx/s  %.2f MB/s  %.0f rows/s"
          % (mode, blocks, ntx, nbytes / 1e6, ntx + nin + npd + nout, nout, elapsed,
             t_tip - t0, build_s, elapsed - (t_tip - t0), "yes" if dropped else "no", ntx / elapsed,
             nbytes / 1e6 / elapsed, (ntx + nin + npd + nout) / elapsed), flush=True)
    print("  database: %.0f B/tx (tables + indexes), of which outputs %.0f B/tx"
          % (db_b / ntx, out_b / ntx), flush=True)
    if nout and not args.no_outputs_probe:
        # the layout choice (sql/007): scripts <= 64 bytes inline vs none
        # stored (served from LMDB by offset, 4 more bytes per row for the
        # offset within the tx): the same rows copied without the script
        psql(db, "CREATE TABLE bench_noscript AS SELECT block_id, tx_pos, idx, value, "
                 "script_hash, 0::integer AS script_off FROM outputs;")
        heap = int(psql(db, "SELECT sum(pg_relation_size(relid)) "
                            "FROM pg_partition_tree('outputs');"))
        alt = int(psql(db, "SELECT pg_relation_size('bench_noscript');"))
        print("  outputs heap: %.1f B/output with scripts inline, %.1f B/output with a "
              "4-byte offset instead (%d outputs)" % (heap / nout, alt / nout, nout), flush=True)
    print("  PostgreSQL read %.2f GB from storage (%.0f B/tx)%s"
          % (pg_read / 1e9, pg_read / max(ntx, 1),
             "; memory cap: " + cap if cap else ""), flush=True)
    if key_line:
        print(key_line, flush=True)
    if args.sizes:
        import bench_growth  # noqa: E402 (it imports this module)
        sz = bench_growth.sizes(db, ntx)
        print("  bytes per tx: %s" % ", ".join(
            "%s %s %.1f" % ("table" if k[1] == "r" else "index", k[0], v)
            for k, v in sorted(sz.items(), key=lambda kv: -kv[1]) if v >= 1.0), flush=True)
    if args.sizes:
        # where the shared_buffers misses were (pg_statio: a miss is a read()
        # the page cache or the disk served; PgIo above says how much of it
        # reached the disk), the relations with the most first
        rows = psql(db, "SELECT relname, heap_blks_read, heap_blks_hit FROM pg_statio_user_tables "
                        "UNION ALL SELECT indexrelname, idx_blks_read, idx_blks_hit FROM "
                        "pg_statio_user_indexes ORDER BY 2 DESC LIMIT 12;").splitlines()
        print("  shared_buffers misses by relation (blocks read / hit): %s" % ", ".join(
            "%s %s/%s" % tuple(r.split("|")) for r in rows), flush=True)
        # autovacuum's passes over the growing tables (insert-driven since
        # PostgreSQL 13) read them too: their count says how much of the
        # reads above may be theirs
        rows = psql(db, "SELECT relname, autovacuum_count, autoanalyze_count FROM "
                        "pg_stat_user_tables WHERE autovacuum_count + autoanalyze_count > 0 "
                        "ORDER BY 2 DESC, 3 DESC LIMIT 12;").splitlines()
        print("  autovacuum / autoanalyze passes: %s" % (", ".join(
            "%s %s/%s" % tuple(r.split("|")) for r in rows) or "none"), flush=True)
    if args.queries:
        import bench_growth  # noqa: E402
        io1 = pgio.total()
        q = bench_growth.queries(db, None, args.queries, point_only=True)
        for k, v in q.items():
            print("  %-22s p50 %.3f ms  p99 %.3f ms  (%d runs, %.1f rows)" % ((k,) + v),
                  flush=True)
        print("  (the lookups and their sampling read %.1f MB from storage)"
              % ((pgio.total() - io1) / 1e6), flush=True)
    total = sum(per.values())
    if samples:
        samples.write("# mode=%s txs=%d elapsed=%.3f tip_at=%.3f index_build=%.3f\n"
                      % (mode, ntx, elapsed, t_tip - t0, build_s))
        samples.flush()
    print("  cpu ms per 1000 tx: %s total=%.1f (%.1f s cpu in %.1f s: %.2f cores busy; "
          "100k tx/s would need %.1f cores)"
          % (" ".join("%s=%.1f" % (k, v * 1e6 / ntx) for k, v in per.items()),
             total * 1e6 / ntx, total, elapsed, total / elapsed, total / ntx * 1e5), flush=True)
    if args.keep:
        print("  kept: %s (conduitd.log inside)" % datadir, flush=True)
    else:
        shutil.rmtree(datadir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--blocks", type=int, default=400)
    ap.add_argument("--txs-per-block", type=int, default=1500)
    ap.add_argument("--threshold", type=int, default=10, help="catchup_threshold (blocks)")
    ap.add_argument("--modes", default="auto,live")
    ap.add_argument("--keep", action="store_true",
                    help="keep each run's data directory and conduitd.log (printed)")
    ap.add_argument("--daemon-arg", action="append", default=[],
                    help="extra conduitd argument (repeatable), e.g. --daemon-arg=--unit-size=8M")
    ap.add_argument("--chain", help="serve this chain file (tests.simnode.chainfile) instead of "
                    "generating the chain in the simulator")
    ap.add_argument("--builds", default="",
                    help="comma-separated build directories measured in turn (before/after "
                    "comparisons under the same load; overrides --build)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over --builds x --modes")
    ap.add_argument("--workdir", default=None, help="parent of the data directories")
    ap.add_argument("--queries", type=int, default=0,
                    help="after each mode: this many tx-by-id and spender lookups (0: none)")
    ap.add_argument("--no-outputs-probe", action="store_true",
                    help="skip the outputs heap comparison (a copy of the outputs table: "
                    "minutes at 10M txs, and it would refill the caches before --queries)")
    ap.add_argument("--sizes", action="store_true",
                    help="after each mode: bytes per tx of every table and index, and the "
                    "relations with the most shared_buffers misses")
    ap.add_argument("--samples", metavar="CSV",
                    help="write the polled time series (height, indexed txs) here")
    args = ap.parse_args()
    if not os.environ.get("PGHOST"):
        sys.exit("run under tests/pgserver.py (PGHOST is not set)")
    t = time.monotonic()
    sim, port = start_simnode(args.blocks, args.txs_per_block, args.chain)
    print("simnode: %d blocks x %d txs generated in %.1f s (port %d)"
          % (args.blocks, args.txs_per_block, time.monotonic() - t, port), flush=True)
    samples = None
    if args.samples:
        samples = open(args.samples, "w")
        samples.write("# bench_catchup.py blocks=%d txs_per_block=%d threshold=%d\n"
                      "mode,t_s,height,txs,indexes,pg_cpu_s,pg_read_b,key_txs\n"
                      % (args.blocks, args.txs_per_block, args.threshold))
    try:
        builds = [b for b in args.builds.split(",") if b] or [args.build]
        for _ in range(args.repeat):
            for b in builds:
                for mode in args.modes.split(","):
                    run_mode(args, mode, port, args.blocks, sim, samples, b)
    finally:
        sim.terminate()
        sim.wait()
        if samples:
            samples.close()


if __name__ == "__main__":
    main()
