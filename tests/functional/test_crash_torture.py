"""kill -9 at any moment, then restart, ends in the same data (README, DESIGN).

conduitd indexes a generated chain (transactions in every block) with the
secondary indexes dropped for catch-up (catchup_indexes = auto, low
threshold), and is killed with SIGKILL again and again at seeded random
moments: the controller (its workers see EOF and exit) or one worker (the
supervisor restarts it) — during download, indexing, the index rebuild and a
reorg that the simulator makes half-way. After every kill the best chain in
PostgreSQL must be one consistent chain; at the end the best-chain views must
equal, row for row, those of a daemon that indexed the final chain without
interruption.

The moments are random but reproducible: CD_TORTURE_SEED=N picks the seed
(printed on failure), CD_TORTURE_ROUNDS=N runs more rounds (CI uses 8).

Run: CD_BUILD_DIR=build /usr/bin/python3 -m pytest tests/functional/test_crash_torture.py
"""

import os
import random
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_index import create_db, psql  # noqa: E402
from test_reorg import CONSISTENT, dump, fresh_index, start, tip, wait_tip  # noqa: E402

BLOCKS = 160
TXS = 40


def worker_pids(d):
    """{kind: pid} of the workers the daemon's log says are running now."""
    import re
    pids = {}
    for line in d.lines:
        m = re.search(r"supervisor: started (\w+) worker (\d+) \(pid (\d+)\)", line)
        if m:
            pids["%s%s" % (m.group(1), m.group(2))] = int(m.group(3))
    return pids


def height(pg, db):
    try:
        r = psql(pg, db, "SELECT height FROM best_tip;")
        return r[0][0] if r else None
    except Exception:
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def test_kill9_at_random_moments(pg_module, build_dir, simnode_factory, tmp_path):
    torture(pg_module, build_dir, simnode_factory, tmp_path, "torture")


def torture(pg, build_dir, simnode_factory, tmp_path, db, more=()):
    """The rounds of kills, then the comparison, into database db with the
    daemon's options plus `more` (test_partitions.py: with rolls)."""
    seed = int(os.environ.get("CD_TORTURE_SEED", "20261122"))
    rounds = int(os.environ.get("CD_TORTURE_ROUNDS", "8"))
    rnd = random.Random(seed)
    node = simnode_factory(generate=BLOCKS, txs_per_block=TXS, seed=13)
    # blocks trickle in (~3 MB of chain at 384 KiB/s), so the kills land while
    # blocks are downloaded, stored and indexed, not after it is all done
    node.misbehave("slow_block", rate=384 << 10, count=None)
    ci = create_db(pg, db)
    dd = tmp_path / db
    extra = ["--relay", "off", "--catchup-threshold", "20", "--parser-workers", "2"] + list(more)
    history = []
    for r in range(rounds):
        if r == rounds // 2:
            # a reorg the daemon meets after a crash, maybe while indexing
            node.reorg(fork_height=BLOCKS - 30, new_len=40, txs_per_block=TXS)
            history.append("reorg")
        d = start(build_dir, dd, node.port, ci, extra)
        try:
            delay = rnd.uniform(0.3, 3.0)
            target = rnd.choice(["controller", "controller", "parser0", "parser1", "writer0",
                                 "merkle0"])
            time.sleep(delay)
            if target != "controller":
                pid = worker_pids(d).get(target)
                if pid and alive(pid):
                    os.kill(pid, signal.SIGKILL)
                    time.sleep(rnd.uniform(0.1, 1.0))
            history.append("round %d: %s after %.2f s, indexed height %s" % (
                r, target, delay, height(pg, db)))
        finally:
            d.kill()
        # whatever was interrupted, the best chain is one chain (or not there yet)
        if tip(pg, db) is not None:
            assert psql(pg, db, CONSISTENT) == [("t",)], (seed, history)
    node.clear_faults()
    d = start(build_dir, dd, node.port, ci, extra)
    try:
        wait_tip(pg, db, d, node, timeout=240)
        # the tip may have been indexed before this start: stop a daemon
        # that is up, not one still installing its signal handlers
        d.wait_for_log(r"headers synced", timeout=60)
    finally:
        rc = d.stop()
    assert rc == 0, (seed, history, d.log_text()[-4000:])
    print("\n".join(history))
    got = dump(pg, db)
    want = fresh_index(pg, build_dir, tmp_path, node, db + "fresh")
    assert got == want, (seed, history)
    # outputs (issue 14): after the kills, the confirmed UTXO set and every
    # script hash's balance equal a computation from the blocks' bytes
    from test_utxo import check_confirmed_utxos, node_chain_txs
    assert check_confirmed_utxos(pg, db, node_chain_txs(node)) > BLOCKS
