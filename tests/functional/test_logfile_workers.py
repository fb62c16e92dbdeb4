"""Logging to a file with forked workers (issue 7 logging, regression).

The supervisor closes every inherited descriptor in a worker and the worker
then re-opens the log file. cd_log_open() used to close the *old* descriptor
number after opening the new one; when the kernel handed out the same number,
the worker's log descriptor was left dangling, the next socket (the parser's
PostgreSQL connection) took that number, and log lines went into the
PostgreSQL protocol stream: the parsers failed and no block was indexed.
"""
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon  # noqa: E402
from test_index import create_db, psql  # noqa: E402

N_BLOCKS = 30


def test_log_file_with_index_on(build_dir, tmp_path, pg, simnode_factory):
    node = simnode_factory(generate=N_BLOCKS, txs_per_block=10, seed=11)
    want_txs = sum(node.chain.at(h).ntx for h in range(N_BLOCKS + 1))
    ci = create_db(pg, "logfile")
    log = tmp_path / "conduitd.log"
    d = Daemon(build_dir, str(tmp_path / "d"),
               ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                "--parser-workers", "2", "--log-file", str(log), "--log-level", "info",
                "--catchup-indexes", "live"]).start()
    try:
        deadline = time.monotonic() + 180
        while True:
            assert d.proc.poll() is None, "daemon exited:\n" + (
                log.read_text() if log.exists() else "")[-4000:]
            try:
                rows = psql(pg, "logfile", "SELECT coalesce(max(height), -1) FROM index_tip;")
            except subprocess.CalledProcessError:
                rows = [("-1",)]  # schema not migrated yet
            if int(rows[0][0]) == N_BLOCKS:
                break
            assert time.monotonic() < deadline, "not indexed; log:\n" + log.read_text()[-4000:]
            time.sleep(0.2)
    finally:
        assert d.stop() == 0
    rows = psql(pg, "logfile", "SELECT count(*) FROM best_transactions;")
    assert int(rows[0][0]) == want_txs
    text = log.read_text()
    assert re.search(r"INFO conduitd\[\d+\]: supervisor: started parser worker 1", text), text
    # and nothing was written to stdout/stderr instead
    assert d.log_text().strip() == ""
