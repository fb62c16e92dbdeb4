"""conduitd indexes into PostgreSQL end to end, from the simulated node.

conduitd downloads ../shared/data/regtest/blockchain_116_7c9cd2 from the
simulated node; its parser workers write the index; the result must equal,
row for row, the index conduit-index-file builds from the block files (whose
queries test_index.py checks against shared/data/README.md). Then the daemon
is killed with SIGKILL mid-run and restarted, and kill -9 of one parser, and
the content must still be identical.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon  # noqa: E402
from test_index import cli, create_db, psql, run_index, verify_tsc  # noqa: E402

CHAIN = "regtest/blockchain_116_7c9cd2"

# unit layout differs between the daemon and the file driver, so unit markers
# and n_units are not compared; every row is
DUMP = [
    "SELECT cd_txid_hex(block_hash), height, tx_count, size, indexed, on_best_chain "
    "FROM blocks ORDER BY 1;",
    "SELECT cd_txid_hex(b.block_hash), t.tx_pos, t.tx_offset, t.tx_size, encode(t.tx_hash, 'hex') "
    "FROM transactions t JOIN blocks b USING (block_id) ORDER BY 1, 2;",
    "SELECT cd_txid_hex(b.block_hash), i.tx_pos, i.in_idx, i.prev_idx, encode(i.prev_hash, 'hex') "
    "FROM inputs i JOIN blocks b USING (block_id) ORDER BY 1, 2, 3;",
    "SELECT cd_txid_hex(b.block_hash), p.tx_pos, p.idx, p.flags, encode(p.push_hash, 'hex') "
    "FROM pushdata p JOIN blocks b USING (block_id) ORDER BY 1, 2, 3, 4, 5;",
    "SELECT cd_txid_hex(block_hash), height FROM best_tip;",
]


def dump(pg, db):
    return [psql(pg, db, q) for q in DUMP]


def tip_height(pg, db):
    try:
        rows = psql(pg, db, "SELECT coalesce(max(height), -1) FROM index_tip;")
        return int(rows[0][0])
    except subprocess.CalledProcessError:
        return -1


def wait_tip(pg, db, d, height, timeout=180):
    deadline = time.monotonic() + timeout
    while tip_height(pg, db) < height:
        assert d.proc.poll() is None, "daemon exited:\n" + d.log_text()[-4000:]
        assert time.monotonic() < deadline, "tip stuck at %d:\n%s" % (
            tip_height(pg, db), d.log_text()[-4000:])
        time.sleep(0.2)


def start(build_dir, datadir, port, conninfo, extra=()):
    args = ["--regtest", "--connect", "127.0.0.1:%d" % port, "--pg-conninfo", conninfo,
            "--parser-workers", "2", "--ring-size", "16M", "--unit-size", "64K",
            "--log-level", "info"] + list(extra)
    return Daemon(build_dir, str(datadir), args).start()


@pytest.fixture(scope="module")
def reference(pg_module, build_dir, shared_data):
    ci = create_db(pg_module, "dref")
    run_index(build_dir, ci, ["--chain", os.path.join(shared_data, CHAIN)])
    return dump(pg_module, "dref")


def check_cli(build_dir, datadir, ci, shared_data):
    """conduit-cli tx --hex and merkle-proof read LMDB via the index."""
    import hashlib
    import json
    hashes = open(os.path.join(shared_data, CHAIN, "headers.txt")).read().split()
    for height in (115, 116):
        raw = open(os.path.join(shared_data, CHAIN, hashes[height]), "rb").read()
        p = cli(build_dir, ["tx-offsets", hashes[height], "--datadir", datadir, "--regtest"])
        offs = [int(x) for x in p.stdout.split()] + [len(raw)]
        for pos in range(len(offs) - 1):
            tx = raw[offs[pos]:offs[pos + 1]]
            txid = hashlib.sha256(hashlib.sha256(tx).digest()).digest()[::-1].hex()
            p = cli(build_dir, ["tx", txid, "--hex", "--regtest", "--datadir", datadir,
                                "--pg-conninfo", ci])
            assert p.returncode == 0, p.stderr.decode()
            assert p.stdout.decode().strip() == tx.hex()
            p = cli(build_dir, ["merkle-proof", txid, "--regtest", "--datadir", datadir,
                                "--pg-conninfo", ci])
            assert p.returncode == 0, p.stderr.decode()
            proof = json.loads(p.stdout)
            assert proof["index"] == pos and proof["target"] == hashes[height]
            assert verify_tsc(proof, txid, raw[36:68][::-1].hex())
            if pos == 1:
                p = cli(build_dir, ["merkle-proof", txid, "--include-tx", "--target", "header",
                                    "--regtest", "--datadir", datadir, "--pg-conninfo", ci])
                proof = json.loads(p.stdout)
                assert proof["txOrId"] == tx.hex() and proof["target"] == raw[:80].hex()


def test_daemon_indexes_chain116(pg_module, build_dir, simnode_regtest116, tmp_path,
                                 reference, shared_data):
    ci = create_db(pg_module, "daemon116")
    d = start(build_dir, tmp_path / "d", simnode_regtest116.port, ci)
    try:
        wait_tip(pg_module, "daemon116", d, 116)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    assert dump(pg_module, "daemon116") == reference
    check_cli(build_dir, str(tmp_path / "d"), ci, shared_data)
    # restart: nothing is indexed twice
    d = start(build_dir, tmp_path / "d", simnode_regtest116.port, ci)
    try:
        d.wait_for_log(r"parser", timeout=60)
        time.sleep(2)
    finally:
        d.stop()
    assert dump(pg_module, "daemon116") == reference


def test_daemon_batches_queued_units(pg_module, build_dir, simnode_regtest116, tmp_path,
                                     reference):
    """Units that queue up at a parser while it waits for PostgreSQL are
    written together: one transaction for many units (their markers share
    the transaction's committed_at), each row still exactly once."""
    ci = create_db(pg_module, "daemonbatch")
    # hold the tip lock, so every parser stalls in its first block completion
    # while the controller keeps dispatching the other blocks to it
    hold = subprocess.Popen(
        ["psql", "-X", "-q", "-h", pg_module.sockdir, "-p", str(pg_module.port), "-U", "postgres",
         "-d", "daemonbatch", "-c", "SELECT pg_advisory_lock(4242424202); SELECT pg_sleep(4);"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = start(build_dir, tmp_path / "d", simnode_regtest116.port, ci)
    try:
        assert hold.wait(timeout=60) == 0
        wait_tip(pg_module, "daemonbatch", d, 116)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    assert dump(pg_module, "daemonbatch") == reference
    units, txns = psql(pg_module, "daemonbatch",
                       "SELECT count(*), count(DISTINCT committed_at) FROM indexed_units;")[0]
    assert int(units) >= 117 and int(txns) < int(units) // 2, (units, txns)


def blocks_stats(pg, db, inserted):
    """(n_tup_ins, n_tup_upd) of blocks once the exited backends' counters
    are in (a backend reports them at exit, shortly after its client left)."""
    deadline = time.monotonic() + 30
    while True:
        ins, upd = psql(pg, db, "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables "
                                "WHERE relname = 'blocks';")[0]
        if int(ins) >= inserted or time.monotonic() > deadline:
            time.sleep(1.5)  # the other parser's backend
            ins, upd = psql(pg, db, "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables "
                                    "WHERE relname = 'blocks';")[0]
            return int(ins), int(upd)
        time.sleep(0.2)


def test_daemon_registers_each_block_once(pg_module, build_dir, simnode_regtest116, tmp_path,
                                          reference, shared_data):
    """Once an indexed tip exists, a block is registered only by the parser
    that gets its unit (held blocks: one statement per batch), not by every
    parser at BLOCK_BEGIN: every registration after the first is an
    ON CONFLICT update of the row, so the updates of `blocks` are then only
    `indexed` and `on_best_chain`, one each per block."""
    ci = create_db(pg_module, "daemonreg")
    hashes = open(os.path.join(shared_data, CHAIN, "headers.txt")).read().split()
    # the genesis block indexed (and the tip on it) before the daemon starts
    run_index(build_dir, ci, ["--block", os.path.join(shared_data, CHAIN, hashes[0]),
                              "--height", "0"])
    assert tip_height(pg_module, "daemonreg") == 0
    base_ins, base_upd = blocks_stats(pg_module, "daemonreg", 1)
    d = start(build_dir, tmp_path / "d", simnode_regtest116.port, ci)
    try:
        wait_tip(pg_module, "daemonreg", d, 116)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]
    assert dump(pg_module, "daemonreg") == reference
    ins, upd = blocks_stats(pg_module, "daemonreg", base_ins + 116)
    assert ins - base_ins == 116, (ins, base_ins)
    # 2 per block; with every parser registering every block it was 3
    assert upd - base_upd <= 2 * 116 + 4, (upd, base_upd)


def test_daemon_parser_killed_mid_run(pg_module, build_dir, simnode_regtest116, tmp_path,
                                      reference):
    ci = create_db(pg_module, "daemonkill")
    dd = tmp_path / "d"
    # the first parser SIGKILLs itself after committing its 3rd unit, before
    # acknowledging it (cd_wk_maybe_crash hook); the supervisor restarts it and
    # the controller dispatches the unit again: the marker makes it a no-op
    d = Daemon(build_dir, str(dd),
               ["--regtest", "--connect", "127.0.0.1:%d" % simnode_regtest116.port,
                "--pg-conninfo", ci, "--parser-workers", "2", "--ring-size", "16M",
                "--unit-size", "64K"], env={"CD_WK_CRASH": "parser:3"}).start()
    try:
        wait_tip(pg_module, "daemonkill", d, 116)
    finally:
        d.stop()
    assert os.path.exists(os.path.join(str(dd), "crashed.parser")), d.log_text()[-3000:]
    assert dump(pg_module, "daemonkill") == reference


def test_daemon_controller_killed_mid_run(pg_module, build_dir, simnode_regtest116, tmp_path,
                                          reference):
    ci = create_db(pg_module, "daemonkillctl")
    dd = tmp_path / "d"
    d = start(build_dir, dd, simnode_regtest116.port, ci)
    try:
        wait_tip(pg_module, "daemonkillctl", d, 30)
    finally:
        d.kill()  # SIGKILL the controller; its workers see EOF and exit
    # blocks stored in LMDB but not (fully) indexed are indexed from LMDB at start
    d = start(build_dir, dd, simnode_regtest116.port, ci)
    try:
        wait_tip(pg_module, "daemonkillctl", d, 116)
    finally:
        d.stop()
    assert dump(pg_module, "daemonkillctl") == reference



def test_stored_blocks_indexed_from_lmdb(pg_module, build_dir, simnode_regtest116, tmp_path,
                                         reference):
    """The extreme crash: every block stored in LMDB, none indexed (first run
    with --no-index). At the next start with indexing on, all of them are
    indexed from LMDB - not downloaded again - with identical rows."""
    ci = create_db(pg_module, "fromlmdb")
    dd = tmp_path / "d"
    d = Daemon(build_dir, str(dd),
               ["--regtest", "--connect", "127.0.0.1:%d" % simnode_regtest116.port,
                "--no-index", "--ring-size", "16M", "--unit-size", "64K"]).start()
    try:
        d.wait_for_log(r"all blocks stored up to height 116", timeout=120)
    finally:
        d.stop()
    d = start(build_dir, dd, simnode_regtest116.port, ci, extra=["--unit-size", "1M"])
    try:
        d.wait_for_log(r"recovery: 117 stored blocks indexed from LMDB .* indexed tip 116",
                       timeout=120)
        wait_tip(pg_module, "fromlmdb", d, 116)
    finally:
        d.stop()
    assert dump(pg_module, "fromlmdb") == reference
    units = psql(pg_module, "fromlmdb", "SELECT min(unit_no), count(*) FROM indexed_units;")
    assert units == [("1073741824", "117")]  # recovery units: CD_WK_RECOVERY_UNIT + first tx


def pg_ctl(pg, *args):
    pg._run([os.path.join(pg.bindir, "pg_ctl"), "-D", pg.datadir] + list(args))


def test_postgres_goes_away_mid_sync(pg, build_dir, simnode_regtest116, tmp_path, reference,
                                     pg_module):
    """PostgreSQL stops while conduitd syncs (conduitd refuses to *start*
    without it, by design of the config check): the parsers retry with
    back-off (no crash loop), the pipeline waits, and once the server is back
    every block is indexed, with the same rows as the reference."""
    ci = create_db(pg, "downup")
    opts = (f"-c listen_addresses='' -c unix_socket_directories={pg.sockdir} "
            f"-c port={pg.port} -c fsync=off")
    d = start(build_dir, tmp_path / "d", simnode_regtest116.port, ci)
    try:
        d.wait_for_log(r"blocksync: .*already stored", timeout=60)
        before = tip_height(pg, "downup")
        pg_ctl(pg, "-m", "immediate", "-w", "stop")
        if before < 116:
            d.wait_for_log(r"postgres: (connection lost|cannot connect)", timeout=60)
            time.sleep(2)  # a few back-off rounds
            assert d.proc.poll() is None, d.log_text()[-3000:]
        pg_ctl(pg, "-o", opts, "-l", os.path.join(pg.base, "server.log"), "-w", "start")
        wait_tip(pg, "downup", d, 116)
    finally:
        d.stop()
    assert dump(pg, "downup") == reference
