"""Exactly-once indexing under crashes and a PostgreSQL restart.

Each test indexes the same data twice: once without interruption (the
reference) and once with a fault in the middle - kill -9 of a parser process,
kill -9 of the whole indexer (parent and parsers), or a PostgreSQL restart -
followed by recovery (running the indexer again, as the daemon does from
LMDB after a restart). The sorted dumps of blocks, transactions, inputs,
pushdata and unit markers must be identical: nothing lost, nothing doubled.

The fault is injected after the run has committed some units (polled in the
database) and while it still has many to go (--throttle-ms slows each unit).
"""

import os
import signal
import subprocess
import threading
import time

import pytest

from test_index import create_db, indexer, psql, run_index
from test_index_daemon import DUMP as DAEMON_DUMP

CHAIN = "regtest/blockchain_116_7c9cd2"
# unit-size 1: every transaction is its own unit -> 126 units for the chain,
# plus 1557 for block 413567 (in its own database)
ARGS_CHAIN = ["--unit-size", "1", "--jobs", "2"]

# the daemon test's row dumps (every row of every table, the tip), plus the
# unit layout: the file driver cuts units the same way on every run
DUMP = [
    "SELECT cd_txid_hex(block_hash), height, tx_count, size, n_units, indexed, on_best_chain "
    "FROM blocks ORDER BY 1;",
    "SELECT cd_txid_hex(b.block_hash), u.unit_no, u.first_tx, u.tx_count FROM indexed_units u "
    "JOIN blocks b USING (block_id) ORDER BY 1, 2;",
] + DAEMON_DUMP[1:]


def dump(pg, db):
    return [psql(pg, db, q) for q in DUMP]


def committed_units(pg, db):
    try:
        return int(psql(pg, db, "SELECT count(*) FROM indexed_units;")[0][0])
    except subprocess.CalledProcessError:
        return 0  # schema not created yet, or server restarting


class Run:
    """conduit-index-file in the background, in its own process group."""

    def __init__(self, build_dir, conninfo, args):
        self.proc = subprocess.Popen([indexer(build_dir), "--conninfo", conninfo] + args,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.err = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.proc.stderr:
            self.err.append(line.decode(errors="replace").rstrip())

    def child_pids(self):
        pids = []
        for line in self.err:
            if " pid " in line and "parser" in line:
                pids.append(int(line.rsplit(" pid ", 1)[1]))
        return pids

    def wait(self, timeout=300):
        rc = self.proc.wait(timeout)
        self.t.join(10)
        return rc

    def log(self):
        return "\n".join(self.err)


def restart_pg(pg):
    """Fast restart of the test server. (PgServer.restart() runs `pg_ctl
    restart` without -l, so the new postmaster keeps pg_ctl's stdout pipe open
    and subprocess.run never returns; pass the log file explicitly.)"""
    pg._run([os.path.join(pg.bindir, "pg_ctl"), "-D", pg.datadir, "-l",
             os.path.join(pg.base, "server.log"), "-m", "fast", "-w", "-t", "60", "restart"])


def wait_units(pg, db, run, n, timeout=120):
    deadline = time.monotonic() + timeout
    while committed_units(pg, db) < n:
        assert run.proc.poll() is None, "indexer ended before the fault:\n" + run.log()
        assert time.monotonic() < deadline, "no progress:\n" + run.log()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(pg_module, build_dir, shared_data):
    ci = create_db(pg_module, "ref")
    run_index(build_dir, ci, ["--chain", os.path.join(shared_data, CHAIN)] + ARGS_CHAIN)
    ref = dump(pg_module, "ref")
    assert len(ref[2]) == 126 and len(ref[1]) == 126
    return ref


def test_kill9_parser_then_recover(pg_module, build_dir, shared_data, reference):
    ci = create_db(pg_module, "kparser")
    args = ["--chain", os.path.join(shared_data, CHAIN)] + ARGS_CHAIN
    run = Run(build_dir, ci, args + ["--throttle-ms", "40"])
    wait_units(pg_module, "kparser", run, 20)
    victim = run.child_pids()[0]
    os.kill(victim, signal.SIGKILL)
    assert run.wait() == 1, run.log()  # the parent reports the dead parser
    assert f"pid {victim}) failed" in run.log()
    done = committed_units(pg_module, "kparser")
    assert 20 <= done < 126
    # nothing is visible through the views before the blocks are complete
    assert psql(pg_module, "kparser", "SELECT count(*) FROM best_transactions;") == [("0",)]
    run_index(build_dir, ci, args)  # recovery: redo only the missing units
    assert dump(pg_module, "kparser") == reference


def test_kill9_everything_then_recover(pg_module, build_dir, shared_data, reference):
    ci = create_db(pg_module, "kall")
    args = ["--chain", os.path.join(shared_data, CHAIN)] + ARGS_CHAIN
    run = Run(build_dir, ci, args + ["--throttle-ms", "40"])
    wait_units(pg_module, "kall", run, 30)
    os.killpg(run.proc.pid, signal.SIGKILL)  # controller and parsers at once
    run.wait()
    assert committed_units(pg_module, "kall") < 126
    run_index(build_dir, ci, args)
    assert dump(pg_module, "kall") == reference
    # and a third run changes nothing (every unit already committed)
    run_index(build_dir, ci, args)
    assert dump(pg_module, "kall") == reference


def test_postgres_restart_mid_run(pg, build_dir, shared_data, reference):
    # its own server (pg, not pg_module), restarted in the middle of the run
    ci = create_db(pg, "restart")
    args = ["--chain", os.path.join(shared_data, CHAIN)] + ARGS_CHAIN
    run = Run(build_dir, ci, args + ["--throttle-ms", "40"])
    wait_units(pg, "restart", run, 20)
    restart_pg(pg)
    assert run.wait() == 0, run.log()  # the same run finishes by itself
    assert "connection lost" in run.log() or "cannot connect" in run.log(), run.log()
    assert committed_units(pg, "restart") == 126
    assert dump(pg, "restart") == reference


def test_kill9_mainnet_block_units(pg_module, build_dir, shared_data):
    """1557 one-tx units of a real block: kill -9 mid-block, then recover."""
    blk = ["--block", os.path.join(shared_data, "mainnet", "block413567.raw"),
           "--height", "413567", "--unit-size", "1", "--jobs", "2"]
    ref_ci = create_db(pg_module, "mref")
    run_index(build_dir, ref_ci, blk)
    ci = create_db(pg_module, "mkill")
    run = Run(build_dir, ci, blk + ["--throttle-ms", "2"])
    wait_units(pg_module, "mkill", run, 200)
    os.killpg(run.proc.pid, signal.SIGKILL)
    run.wait()
    assert committed_units(pg_module, "mkill") < 1557
    run_index(build_dir, ci, blk)
    assert dump(pg_module, "mkill") == dump(pg_module, "mref")
