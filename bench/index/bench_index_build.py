#!/usr/bin/python3
"""The secondary-index build alone, on a loaded database: drop the secondary
indexes (sql/013's catalog) and build them again, with several plans in turn
(interleaved, --rounds times, so every plan sees the same machine load):

  old      one session, one index after the other, maintenance_work_mem 512MB
           and the server's max_parallel_maintenance_workers (the helper
           before the parallel build: one cd_pg_secondary_indexes session)
  rule     what cd_pg_build_plan_rule gives this machine for the whole set
           (sessions = min(cores, indexes), RAM / 4 / sessions each,
           cores / sessions workers), largest table first, the next index to
           the first free session (cd_pg_secondary_build)
  rule-w   the rule's sessions and memory, one parallel worker fewer each
           (the first version of the rule: cores / sessions - 1)

Each index is built by cd_secondary_index_create, as the daemon does; the
sessions are psql processes. Prints one line per build: plan, seconds, load.

    /usr/bin/python3 tests/pgserver.py -- sh -c '
        /usr/bin/python3 bench/index/bench_catchup.py --chain CHAIN --blocks 2000 --modes live &&
        /usr/bin/python3 bench/index/bench_index_build.py --db bench_catchup_live --rounds 3'
"""
import argparse
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_catchup import pg_bin, psql  # noqa: E402


def machine():
    cores = os.cpu_count() or 1
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return cores, ram


def limits(db):
    out = {}
    for line in psql(db, "SELECT name, setting, coalesce(max_val, '-1') FROM pg_settings WHERE "
                         "name IN ('maintenance_work_mem', 'max_parallel_maintenance_workers', "
                         "'max_parallel_workers', 'max_worker_processes');").splitlines():
        n, v, m = line.split("|")
        out[n] = (int(v), int(m))
    return out


def rule(lim, cores, ram, n):
    """cd_pg_build_plan_rule (src/pg/cd_pg_indexes.c), for the table."""
    s = max(1, min(cores, n))
    kb = max(ram // 4 // 1024 // s, lim["maintenance_work_mem"][0])
    kb = min(kb, lim["maintenance_work_mem"][1])
    pool = min(lim["max_parallel_workers"][0], lim["max_worker_processes"][0])
    w = min(cores // s, pool // s, lim["max_parallel_maintenance_workers"][1])
    return s, kb, max(0, w)


def build(db, names, sessions, mem, workers):
    """Builds names (largest first) over `sessions` psql sessions; returns seconds."""
    todo = list(names)
    lock = threading.Lock()
    errors = []

    def worker():
        p = subprocess.Popen([pg_bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-d", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, bufsize=1)
        p.stdin.write("SET maintenance_work_mem = '%s';\n" % mem)
        if workers is not None:
            p.stdin.write("SET max_parallel_maintenance_workers = %d;\n" % workers)
        while True:
            with lock:
                if not todo:
                    break
                name = todo.pop(0)
            p.stdin.write("SELECT cd_secondary_index_create('%s');\n\\echo @@DONE\n" % name)
            p.stdin.flush()
            while True:
                line = p.stdout.readline()
                if not line:
                    errors.append(p.stderr.read())
                    return
                if line.startswith("@@DONE"):
                    break
        p.stdin.close()
        p.wait()

    t0 = time.monotonic()
    th = [threading.Thread(target=worker) for _ in range(sessions)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    if errors:
        sys.exit("build failed: %s" % errors)
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--plans", default="old,rule,rule-w")
    args = ap.parse_args()
    names = [line.split("|")[0] for line in psql(
        args.db, "SELECT name, rel_bytes FROM cd_secondary_indexes_state();").splitlines()]
    ntx = int(psql(args.db, "SELECT count(*) FROM transactions;"))
    cores, ram = machine()
    lim = limits(args.db)
    s, kb, w = rule(lim, cores, ram, len(names))
    plans = {"old": (1, "512MB", None),
             "rule": (s, "%dkB" % kb, w),
             "rule-w": (s, "%dkB" % kb, max(0, w - 1))}
    print("%d txs; %d cores, %d MB RAM; indexes (largest table first): %s; rule: %d sessions, "
          "%d MB, %d workers" % (ntx, cores, ram >> 20, ", ".join(names), s, kb >> 10, w),
          flush=True)
    for r in range(args.rounds):
        for plan in args.plans.split(","):
            for n in names:
                psql(args.db, "SELECT cd_secondary_index_drop('%s');" % n)
            psql(args.db, "CHECKPOINT;")
            sec = build(args.db, names, *plans[plan])
            load = open("/proc/loadavg").read().split()[:3]
            print("round %d plan %-7s %6.1f s  load %s" % (r + 1, plan, sec, " ".join(load)),
                  flush=True)


if __name__ == "__main__":
    main()
