"""The daemon that the HTTP API test modules share (test_http.py,
test_conduitdb_api.py): the simulated node serving a chain from
../shared/data, a database of its own on the module's PostgreSQL, and
conduitd indexing it with `http_listen = 127.0.0.1:0`, the port read from
its log.

    @pytest.fixture(scope="module")
    def env(pg_module, build_dir, shared_data, tmp_path_factory):
        with http_daemon(pg_module, build_dir, chain_dir, "mydb",
                         str(tmp_path_factory.mktemp("x") / "d"), tip=116) as e:
            yield e

On leaving, conduitd and the node are stopped and the daemon's log is kept
as daemon.log beside the data directory (for a failure's post-mortem).
"""

import contextlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon  # noqa: E402
from test_index import create_db  # noqa: E402
from test_index_daemon import wait_tip  # noqa: E402
from tests.simnode import SimNode  # noqa: E402


class HttpEnv:
    """pg, build_dir, chain_dir, db, ci (its conninfo), datadir, node (the
    SimNode), d (the Daemon), port (of the HTTP API); a test module adds its
    own attributes."""


@contextlib.contextmanager
def http_daemon(pg, build_dir, chain_dir, db, datadir, tip, prepare=None):
    """Yields an HttpEnv once conduitd has indexed up to height `tip`.
    prepare(e), if given, runs once the node is up and before conduitd starts
    (e.g. to mine more blocks on the node)."""
    e = HttpEnv()
    e.pg, e.build_dir, e.chain_dir, e.db, e.datadir = pg, build_dir, chain_dir, db, datadir
    e.node = SimNode(chain_dir=chain_dir)
    e.node.start()
    try:
        if prepare:
            prepare(e)
        e.ci = create_db(pg, db)
        e.d = Daemon(build_dir, datadir,
                     ["--regtest", "--connect", "127.0.0.1:%d" % e.node.port,
                      "--pg-conninfo", e.ci, "--parser-workers", "2", "--ring-size", "16M",
                      "--unit-size", "1M", "--http-listen", "127.0.0.1:0", "--log-level", "info"])
        e.d.start()
        try:
            m = e.d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30)
            e.port = int(m.group(1))
            wait_tip(pg, db, e.d, tip, timeout=300)
            yield e
        finally:
            e.d.stop()
            with open(os.path.join(os.path.dirname(datadir), "daemon.log"), "w") as f:
                f.write(e.d.log_text())
    finally:
        e.node.stop()
