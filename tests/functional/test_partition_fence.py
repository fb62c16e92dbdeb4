"""The roll and the merge's swap wait for the key-rows step's batch
(issue 18; sql/020_partition_fence.sql).

With key_rows = on the key-rows process runs cd_key_rows_advance back to
back, each batch one transaction of up to seconds that reads the four
partitioned tables (ACCESS SHARE on the parents until it commits). The
roll (cd_partition_roll) and the merge's swap lock the parents ACCESS
EXCLUSIVE with a lock_timeout of half of deadlock_timeout, so that only they
lose a wait against a parser's unit; against the batches they lost every
time: a 600k-tx run with partition_txs 100k logged "tip partition full
(136593 txs) but its tables are busy" every 2-3 s up to 480k txs and never
rolled (docs/PERFORMANCE.md "The index larger than memory").

Checked here with real PostgreSQL, the real key-rows function and chain 116
indexed by conduit-index-file: a batch is held in the middle (after it has
read the parents, while it waits to write key_hist), and a roll asked for
meanwhile must end in a roll once the batch commits, not in a lock
timeout; the batch's rows are kept.
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_index import CHAIN, create_db, run_index  # noqa: E402
from test_lookup_plans import synthetic_rows_sql  # noqa: E402
from test_partitions import check_layout, psql  # noqa: E402


def psql_bg(pg, db, sql):
    """psql running `sql` in the background (its own session)."""
    return subprocess.Popen(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg.sockdir,
         "-p", str(pg.port), "-U", "postgres", "-d", db, "-c", sql],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(pg, db, sql, what, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if psql(pg, db, sql)[0][0] == "t":
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def test_roll_waits_for_a_key_rows_batch(pg_module, build_dir, shared_data):
    db = "fence116"
    ci = create_db(pg_module, db)
    d = os.path.join(shared_data, CHAIN)
    hashes = open(os.path.join(d, "headers.txt")).read().split()
    args = ["--unit-size", "4000", "--jobs", "2"]
    for h, x in enumerate(hashes):
        args += ["--block", os.path.join(d, x), "--height", str(h)]
    run_index(build_dir, ci, args)
    assert psql(pg_module, db, "SELECT height FROM key_rows_mark;")[0][0] == "-1"

    # hold key_hist: the batch reads the parents (key_outs' rows), then waits;
    # the holder commits when told (stdin), not after a sleep
    holder = subprocess.Popen(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg_module.sockdir,
         "-p", str(pg_module.port), "-U", "postgres", "-d", db],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    holder.stdin.write(b"BEGIN; LOCK TABLE key_hist IN ACCESS EXCLUSIVE MODE;\n")
    holder.stdin.flush()
    wait_for(pg_module, db, "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c "
                            "ON c.oid = l.relation WHERE c.relname = 'key_hist' AND l.granted "
                            "AND l.mode = 'AccessExclusiveLock');", "the holder's lock")
    batch = psql_bg(pg_module, db, "SELECT cd_key_rows_advance(1000);")
    wait_for(pg_module, db, "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c "
                            "ON c.oid = l.relation WHERE c.relname = 'key_hist' "
                            "AND NOT l.granted);", "the batch to wait for key_hist")
    # the batch holds the parents it read (what the roll must lock)
    held = psql(pg_module, db, "SELECT count(DISTINCT c.relname) FROM pg_locks l JOIN pg_class c "
                               "ON c.oid = l.relation WHERE l.granted AND l.pid <> pg_backend_pid() "
                               "AND c.relname = 'outputs';")
    assert held[0][0] == "1", held

    # the roll, while the batch is in the middle: before sql/020 it failed
    # with a lock timeout (55P03) after deadlock_timeout / 2; now it waits
    # for the batch (on the fence, an advisory lock) as long as the batch
    # lasts
    roll = psql_bg(pg_module, db, "SELECT cd_partition_roll(1);")
    end = time.time() + 30
    while True:
        if roll.poll() is not None:
            raise AssertionError("the roll ended while the batch was held: %s%s" % (
                roll.stdout.read().decode(), roll.stderr.read().decode()))
        if psql(pg_module, db, "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                               "AND NOT granted);")[0][0] == "t":
            break
        assert time.time() < end, "the roll never waited for the fence"
        time.sleep(0.05)
    holder.stdin.write(b"COMMIT;\n")
    holder.stdin.close()
    out, err = roll.communicate(timeout=60)
    assert roll.returncode == 0, err.decode()
    assert out.decode().strip() != "", "the roll did not roll"
    out, err = batch.communicate(timeout=60)
    assert batch.returncode == 0, err.decode()
    assert int(out.decode().strip()) == len(hashes), out
    assert holder.wait(timeout=60) == 0, holder.stderr.read().decode()
    assert len(check_layout(pg_module, db)) == 2
    assert psql(pg_module, db, "SELECT height FROM key_rows_mark;")[0][0] == str(len(hashes) - 1)



def crawling_autovacuum(pg, db, rel):
    """Waits until a real autovacuum runs on `rel`, slowed down to a crawl
    by its storage parameters (every page inserted since the last vacuum
    is due; a sleep of 100 ms per page): it then holds SHARE UPDATE
    EXCLUSIVE on `rel` for many seconds."""
    psql(pg, db, "ALTER TABLE %s SET (autovacuum_vacuum_insert_threshold = 1, "
                 "autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, "
                 "autovacuum_vacuum_cost_limit = 1);" % rel)
    wait_for(pg, db, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = "
                     "'autovacuum worker' AND query LIKE '%%.%s');" % rel,
             "an autovacuum of " + rel, timeout=120)


def test_roll_and_swap_get_past_an_autovacuum(pg, build_dir):
    """An autovacuum holds SHARE UPDATE EXCLUSIVE on the table it works on
    for as long as it runs (seconds to minutes on a large open tip or a
    merge's fresh copy: every page inserted since its last run), and
    DETACH / ATTACH PARTITION need ACCESS EXCLUSIVE. PostgreSQL cancels an
    autovacuum that blocks another session, but only once that session has
    waited deadlock_timeout: the roll and the swap, whose lock_timeout is
    half of that, never got so far, so they failed ("tip partition full but
    its tables are busy") for as long as the autovacuum ran, each attempt
    holding the four parents, and with them every parser's unit, for half a
    second. Before sql/023: "canceling statement due to lock timeout" at the
    roll's DETACH.

    Real autovacuums (tests/functional: the server's autovacuum_naptime set
    to 1 s), caught running on the tip of transactions and then on the
    merge's staging table of transactions: the roll and the swap asked for
    meanwhile must go through, and the server logs the cancellations."""
    exe = os.path.join(build_dir, "bench", "index", "conduit-index-file")
    db = "autovac"
    pg.psql("CREATE DATABASE %s" % db)
    ci = "%s dbname=%s" % (pg.conninfo.replace("dbname=postgres", ""), db)
    subprocess.run([exe, "--conninfo", ci, "--migrate-only"], check=True, timeout=300,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    units = ("INSERT INTO indexed_units (block_id, unit_no, first_tx, tx_count) "
             "SELECT g, 0, 0, 1000 FROM generate_series(%d, %d) g;")
    psql(pg, db, "BEGIN;" + synthetic_rows_sql(20, 1000) + units % (1, 20) + "COMMIT;")
    pg.psql("ALTER SYSTEM SET autovacuum_naptime = '1s'")
    pg.psql("SELECT pg_reload_conf()")

    tip = psql(pg, db, "SELECT part FROM partitions WHERE tbl = 'transactions' "
                       "AND hi IS NULL;")[0][0]
    crawling_autovacuum(pg, db, tip)
    assert psql(pg, db, "SELECT cd_partition_roll(1);") == [("21",)]
    # a second closed partition of level 0, then a merge of the two
    psql(pg, db, "BEGIN;" + synthetic_rows_sql(20, 1000, first=21) + units % (21, 40) +
         "COMMIT;")
    assert psql(pg, db, "SELECT cd_partition_roll(1);") == [("41",)]
    assert psql(pg, db, "BEGIN ISOLATION LEVEL REPEATABLE READ; "
                        "SELECT cd_partition_merge_prepare(2); COMMIT;") == [("0",)]
    stage = psql(pg, db, "SELECT stage FROM partition_merge WHERE tbl = 'transactions';")[0][0]
    crawling_autovacuum(pg, db, stage)
    assert psql(pg, db, "SELECT cd_partition_merge_swap();") == [("merged",)]

    assert [lv for (lv,) in psql(pg, db, "SELECT level FROM partitions WHERE tbl = "
                                         "'transactions' ORDER BY lo NULLS FIRST;")] == ["1", "0"]
    check_layout(pg, db)
    assert psql(pg, db, "SELECT count(*) FROM transactions;") == [("40000",)]
    log = open(os.path.join(pg.base, "server.log")).read()
    assert log.count("canceling autovacuum task") >= 2, log[-3000:]
