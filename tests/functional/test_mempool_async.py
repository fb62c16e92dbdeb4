"""The controller loop never waits for PostgreSQL (DESIGN.md section 2;
src/index/cd_mempool_conn.c drives libpq asynchronously).

A psql session takes an ACCESS EXCLUSIVE lock on mempool_tx, so the daemon's
next cd_mempool_add_batch() call waits on it inside PostgreSQL (seen in
pg_stat_activity: a backend waiting on a Lock with that statement). While it
waits, the daemon must still
  * answer the simulated node's pings (pong with the nonce),
  * follow a newly mined block: receive its header and ask for the block
    with getdata (controller work: header tree, block download scheduling).
With a synchronous PQexec on the loop neither would happen until the lock is
released. Then the lock is released and the waiting batch, the block and
the relay must all complete.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_index import create_db, psql  # noqa: E402
from simnode_fixtures import sync_connections  # noqa: E402
from test_reorg import mempool, start, txid, wait_tip, wait_until  # noqa: E402

# the daemon's statement in flight on mempool_tx (a tx batch, cd_mempool_add_txs, or
# its periodic housekeeping, whichever came first) waiting on the lock
WAITING_BATCH = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                 "AND query ~ 'cd_mempool_(add_txs|housekeep)';")


class Locker:
    """A psql session holding ACCESS EXCLUSIVE on a table until release()."""

    def __init__(self, pg, db, table):
        self.p = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-h", pg.sockdir, "-p", str(pg.port),
             "-U", "postgres", "-d", db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.p.stdin.write(b"BEGIN;\nLOCK TABLE %s IN ACCESS EXCLUSIVE MODE;\n"
                           b"SELECT 'locked';\n" % table.encode())
        self.p.stdin.flush()
        line = b""
        while b"locked" not in line:
            line = self.p.stdout.readline()
            assert line, "psql ended"

    def release(self):
        self.p.communicate(b"COMMIT;\n\\q\n", timeout=60)


def clean_exit(d):
    """No sanitizer report (the -Dsanitizers=true build) in the daemon's output."""
    log = d.log_text()
    assert "Sanitizer" not in log and "runtime error" not in log, log[-4000:]
    if os.environ.get("CD_TEST_VERBOSE"):
        print("\n".join(l for l in d.lines if "mempool:" in l or "reorg:" in l))


def getdata_hashes(conn):
    """Hashes (internal byte order) of every getdata the client sent."""
    out = set()
    for m in list(conn.received):
        if m.command != "getdata":
            continue
        p = m.payload
        n, off = p[0], 1  # the daemon asks for few items here (< 0xfd)
        for i in range(n):
            out.add(bytes(p[off + 36 * i + 4:off + 36 * i + 36]))
    return out


def test_loop_responsive_while_pg_waits(pg_module, build_dir, simnode_factory, tmp_path):
    pg = pg_module
    node = simnode_factory(generate=12, txs_per_block=2, seed=33)
    ci = create_db(pg, "mpasync")
    d = start(build_dir, tmp_path / "a", node.port, ci)
    try:
        wait_tip(pg, "mpasync", d, node)
        d.wait_for_log(r"mempool: index at the best tip; relay on", timeout=60)
        # relay works
        a = node.make_tx()
        node.add_mempool_tx(a)
        wait_until(lambda: txid(a) in mempool(pg, "mpasync"), d, "first tx in mempool")
        conns = sync_connections(node)
        assert len(conns) == 1
        c = conns[0]

        lock = Locker(pg, "mpasync", "mempool_tx")
        released = False
        try:
            b = node.make_tx()
            node.add_mempool_tx(b)
            # the daemon's batch with b now waits on the lock in PostgreSQL
            wait_until(lambda: psql(pg, "postgres", WAITING_BATCH)[0][0] == "1", d,
                       "a mempool statement waiting on the lock")

            # 1. pings are answered
            pongs = c.pongs_ok
            c.send_ping()
            wait_until(lambda: c.pongs_ok > pongs, d, "pong while PG waits")

            # 2. a new block is followed: header received, block requested
            blk = node.mine(1, txs_per_block=1)[0]
            wait_until(lambda: blk.hash in getdata_hashes(c), d,
                       "getdata for the new block while PG waits")

            # the batch is still waiting (nothing above was let through by PG)
            assert psql(pg, "postgres", WAITING_BATCH)[0][0] == "1"
            lock.release()
            released = True
        finally:
            if not released:
                lock.release()

        # everything that waited completes: the block (b mined or not) and the relay
        wait_tip(pg, "mpasync", d, node)
        t = node.make_tx()
        node.add_mempool_tx(t)
        wait_until(lambda: txid(t) in mempool(pg, "mpasync"), d, "tx after the lock")
        assert txid(b) in mempool(pg, "mpasync") or txid(b) in [
            r[0] for r in psql(pg, "mpasync", "SELECT cd_txid_hex(tx_hash) FROM best_transactions;")]
        assert d.proc.poll() is None
    finally:
        d.stop()
    clean_exit(d)


def test_relay_survives_pg_restart(pg, build_dir, simnode_factory, tmp_path):
    """PostgreSQL restarts under a running daemon (fresh `pg`: the restart
    must not disturb other tests): the mempool module notices the lost
    connection, reconnects with the non-blocking connect, and relayed txs
    reach mempool_tx again; the daemon keeps answering pings meanwhile."""
    node = simnode_factory(generate=12, txs_per_block=2, seed=34)
    ci = create_db(pg, "mprestart")
    d = start(build_dir, tmp_path / "r", node.port, ci)
    try:
        wait_tip(pg, "mprestart", d, node)
        d.wait_for_log(r"mempool: index at the best tip; relay on", timeout=60)
        a = node.make_tx()
        node.add_mempool_tx(a)
        wait_until(lambda: txid(a) in mempool(pg, "mprestart"), d, "tx before the restart")
        pg.restart()
        # the next statement finds the connection gone
        b = node.make_tx()
        node.add_mempool_tx(b)
        d.wait_for_log(r"mempool: PostgreSQL connection (lost|failed)", timeout=60)
        d.wait_for_log(r"mempool: PostgreSQL connection back", timeout=60)
        c = sync_connections(node)[0]
        pongs = c.pongs_ok
        c.send_ping()
        wait_until(lambda: c.pongs_ok > pongs, d, "pong after the restart")
        # b was kept in its batch and resent (or written before the restart
        # was noticed); a tx relayed after the restart goes through too
        t = node.make_tx()
        node.add_mempool_tx(t)
        wait_until(lambda: {txid(b), txid(t)} <= mempool(pg, "mprestart"), d,
                   "txs after the restart")
        assert d.proc.poll() is None
    finally:
        d.stop()
    clean_exit(d)
