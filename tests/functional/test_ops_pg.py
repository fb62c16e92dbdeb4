"""Issue 17: PostgreSQL roles and self-describing schema.

- sql/roles.sql, run as a superuser, creates conduit_writer (the daemon) and
  conduit_reader (applications); conduitd's migrations and indexing run as
  conduit_writer; an application login in conduit_reader can read every
  table and view, call the functions, LISTEN, and register watched keys and
  outpoints, but cannot write the index (before: no roles, and an app given
  SELECT could not use watched_keys);
- every table, view and column of the schema has a COMMENT (migration
  008_comments). A table added without comments fails this test.
"""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_index import CHAIN, run_index  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))


def psql(pg, db, sql, user="postgres", check=True):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1",
                        "-h", pg.sockdir, "-p", str(pg.port), "-U", user, "-d", db],
                       input=sql, capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def db(pg_module, build_dir, shared_data):
    pg = pg_module
    pg.psql("CREATE DATABASE rolesdb")
    roles = open(os.path.join(ROOT, "sql", "roles.sql")).read()
    psql(pg, "rolesdb", roles)
    psql(pg, "rolesdb", roles)  # idempotent
    psql(pg, "rolesdb", "CREATE ROLE app LOGIN IN ROLE conduit_reader")
    # the daemon's code path (migrations, COPY of units, tip) as conduit_writer
    ci = f"host={pg.sockdir} port={pg.port} user=conduit_writer dbname=rolesdb"
    run_index(build_dir, ci, ["--chain", os.path.join(shared_data, CHAIN), "--jobs", "1"])
    return pg


def test_writer_owns_what_it_created(db):
    owners = psql(db, "rolesdb", "SELECT DISTINCT tableowner FROM pg_tables "
                                 "WHERE schemaname = 'public'").stdout.split()
    assert owners == ["conduit_writer"]
    assert psql(db, "rolesdb", "SELECT height FROM best_tip", user="conduit_writer"
                ).stdout.strip() == "116"


def test_reader_reads_listens_and_watches(db):
    r = psql(db, "rolesdb",
             "SELECT height, cd_txid_hex(block_hash) FROM best_tip;"
             "SELECT count(*) FROM best_transactions;"
             "SELECT count(*) FROM mempool_tx;"
             "LISTEN cd_tip; LISTEN cd_key;"
             "INSERT INTO watched_keys (push_hash, label) VALUES (sha256('\\x01'::bytea), 'a');"
             "INSERT INTO watched_outpoints (prev_hash, prev_idx) VALUES ('\\x00'::bytea, 0);"
             "DELETE FROM watched_outpoints;"
             "SELECT count(*) FROM watched_keys;", user="app")
    lines = r.stdout.split()
    assert lines[0].startswith("116|7c9cd2")
    assert int(lines[1]) > 100 and lines[-1] == "1"


@pytest.mark.parametrize("sql", [
    "DELETE FROM blocks",
    "INSERT INTO mempool_tx (tx_hash, tx_size) VALUES ('\\x00'::bytea, 1)",
    "UPDATE index_tip SET height = 0",
    "CREATE TABLE mine (x int)",
    "DROP VIEW best_tip",
])
def test_reader_cannot_write_the_index(db, sql):
    r = psql(db, "rolesdb", sql, user="app", check=False)
    assert r.returncode != 0
    assert "permission denied" in r.stderr or "must be owner" in r.stderr, r.stderr


def test_every_table_view_and_column_has_a_comment(db):
    missing = psql(db, "rolesdb", """
        SELECT c.relname || coalesce('.' || a.attname, '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
             AND NOT a.attisdropped AND c.relkind = 'r'
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v')
          AND ((a.attname IS NULL AND obj_description(c.oid, 'pg_class') IS NULL)
            OR (a.attname IS NOT NULL AND col_description(c.oid, a.attnum) IS NULL))
        UNION
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r'
          AND obj_description(c.oid, 'pg_class') IS NULL
        ORDER BY 1""").stdout.split()
    assert missing == [], "no COMMENT ON: " + ", ".join(missing)
    n = psql(db, "rolesdb", "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON "
                            "n.oid = c.relnamespace WHERE n.nspname = 'public' AND "
                            "c.relkind IN ('r', 'v')").stdout.strip()
    assert int(n) >= 20


# ---- fail fast: a database conduitd cannot write is a configuration error

def start_fails(build_dir, tmp_path, conninfo):
    from test_config_cli import assert_config_error, free_port, run
    r = run(build_dir, ["--regtest", "--no-conf", "--datadir", str(tmp_path / "d"),
                        "--connect", f"127.0.0.1:{free_port()}", "--pg-conninfo", conninfo],
            timeout=60)
    return assert_config_error(r)


def test_reader_login_is_refused_at_start(db, build_dir, tmp_path):
    """An application's login (conduit_reader) named in pg_conninfo: exit 2
    with one line at start. Failed before: conduitd started and its parsers
    retried a refused INSERT forever."""
    line = start_fails(build_dir, tmp_path,
                       f"host={db.sockdir} port={db.port} user=app dbname=rolesdb")
    assert "role app cannot write the index" in line and "conduit_writer" in line, line


def test_role_without_create_on_an_empty_database(db, build_dir, tmp_path):
    """No schema yet, and a role that may not create one (PostgreSQL 15 gives
    no CREATE on public to other roles): exit 2 at start."""
    db.psql("CREATE DATABASE emptyrolesdb")
    line = start_fails(build_dir, tmp_path,
                       f"host={db.sockdir} port={db.port} user=app dbname=emptyrolesdb")
    assert "role app cannot create the schema" in line, line


def test_read_only_database_is_refused_at_start(db, build_dir, tmp_path):
    """default_transaction_read_only = on (for the database here; a role's
    setting or a hot standby are refused the same way). Failed before:
    conduitd started, then every write failed and was retried."""
    db.psql("CREATE DATABASE rodb")
    db.psql("ALTER DATABASE rodb SET default_transaction_read_only = on")
    line = start_fails(build_dir, tmp_path,
                       f"host={db.sockdir} port={db.port} user=postgres dbname=rodb")
    assert "the session is read-only (default_transaction_read_only = on" in line, line
    db.psql("ALTER DATABASE rodb SET default_transaction_read_only = off")
    # the same database, writable again: the start-up check passes (the
    # daemon is stopped as soon as it runs)
    from daemon_util import Daemon
    d = Daemon(build_dir, str(tmp_path / "d2"),
               ["--regtest", "--no-conf", "--connect", "127.0.0.1:1", "--pg-conninfo",
                f"host={db.sockdir} port={db.port} user=postgres dbname=rodb",
                "--ring-size", "16M", "--unit-size", "1M", "--parser-workers", "1"])
    d.start()
    try:
        d.wait_for_log(r"controller running", timeout=60)
    finally:
        assert d.stop() == 0


def test_password_from_a_passfile_or_pgpassfile(pg, build_dir, tmp_path):
    """The writer's password in a libpq password file, named by `passfile=`
    in pg_conninfo or by PGPASSFILE in the environment: conduitd starts and
    its workers log in; without it the start-up check refuses the login
    (exit 2). The test server trusts every local login, so one rule asking
    for a password is put first in its pg_hba.conf for this role only."""
    pg.psql("CREATE ROLE pwuser LOGIN PASSWORD 'Pw-s3cret'")
    pg.psql("CREATE DATABASE pwdb OWNER pwuser")
    hba = os.path.join(pg.datadir, "pg_hba.conf")
    rules = open(hba).read()
    with open(hba, "w") as f:
        f.write("local pwdb pwuser scram-sha-256\n" + rules)
    pg.psql("SELECT pg_reload_conf()")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:pwdb:pwuser:Pw-s3cret\n")
    os.chmod(passfile, 0o600)
    base = f"host={pg.sockdir} port={pg.port} user=pwuser dbname=pwdb"
    from test_config_cli import assert_config_error, free_port, run
    assert_config_error(
        run(build_dir, ["--regtest", "--no-conf", "--datadir", str(tmp_path / "d0"), "--connect",
                        f"127.0.0.1:{free_port()}", "--pg-conninfo", base],
            env={"PGPASSFILE": "/nonexistent", "PGPASSWORD": ""}, timeout=60),
        "refuses the login", "password")
    from daemon_util import Daemon
    for i, (ci, env) in enumerate([(f"{base} passfile={passfile}", {}),
                                   (base, {"PGPASSFILE": str(passfile)})]):
        d = Daemon(build_dir, str(tmp_path / f"d{i + 1}"),
                   ["--regtest", "--no-conf", "--connect", "127.0.0.1:1", "--pg-conninfo", ci,
                    "--ring-size", "16M", "--unit-size", "1M", "--parser-workers", "1"],
                   env=env)
        d.start()
        try:
            d.wait_for_log(r"controller running", timeout=60)
            # the mempool module's own session logs in with it too
            d.wait_for_log(r"mempool: index connection ready", timeout=60)
        finally:
            assert d.stop() == 0
        assert "password authentication failed" not in d.log_text()


def test_hot_standby_is_refused_at_start(db, build_dir, tmp_path):
    """A real hot standby (a streaming replica of the test server made with
    pg_basebackup -R, its own socket directory and port): conduitd names it
    and exits 2 at start, it does not start workers that would retry a
    refused write forever. The check is pg_is_in_recovery() in
    src/daemon/main.c (check_pg_writable); until now only the
    default_transaction_read_only case had a test."""
    import shutil
    import tempfile
    from pathlib import Path
    # not under tmp_path: pytest's base directory is root's only (0700)
    base = Path(tempfile.mkdtemp(prefix="cd-pg-standby-"))
    os.chmod(base, 0o755)
    data = base / "data"
    port = db.port + 7

    def as_server(args):
        # the server runs as an unprivileged user when the tests run as root
        # (PostgreSQL refuses root); the files and socket are that user's
        if db.run_as is not None:
            import pwd
            pw = pwd.getpwnam(db.run_as)
            os.chown(base, pw.pw_uid, pw.pw_gid)
        return subprocess.run(args, preexec_fn=db._demote(), capture_output=True, text=True,
                              env=dict(os.environ, LC_ALL="C"))

    r = as_server([os.path.join(db.bindir, "pg_basebackup"), "-h", db.sockdir, "-p", str(db.port),
                   "-U", "postgres", "-D", str(data), "-R", "-X", "stream", "--no-sync",
                   "--checkpoint=fast"])
    assert r.returncode == 0, r.stdout + r.stderr
    opts = (f"-c listen_addresses='' -c unix_socket_directories={base} -c port={port} "
            f"-c fsync=off -c hot_standby=on -c max_connections=100 -c shared_buffers=32MB")
    # (a hot standby needs max_connections >= the primary's: pgserver.py's 100)
    r = as_server([os.path.join(db.bindir, "pg_ctl"), "-D", str(data), "-o", opts,
                   "-l", str(base / "server.log"), "-w", "-t", "60", "start"])
    if r.returncode != 0:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise AssertionError(r.stdout + r.stderr + log[-2000:])
    try:
        assert psql_at(base, port, "SELECT pg_is_in_recovery()") == "t"
        line = start_fails(build_dir, tmp_path,
                           f"host={base} port={port} user=conduit_writer dbname=rolesdb")
        assert "is a read-only hot standby" in line and "primary" in line, line
    finally:
        as_server([os.path.join(db.bindir, "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                   "stop"])
        shutil.rmtree(base, ignore_errors=True)


def psql_at(sockdir, port, sql):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-h", str(sockdir), "-p", str(port),
                        "-U", "postgres", "-d", "rolesdb", "-c", sql],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()
