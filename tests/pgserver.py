"""A throw-away PostgreSQL server for tests.

`PgServer` runs `initdb` into a fresh temporary directory and starts the
server listening only on a unix socket inside that directory (no TCP at all),
so two test runs in parallel never collide. When the harness runs as root the
server runs as an unprivileged user (`nobody` by default), because PostgreSQL
refuses to run as root. `stop()` shuts it down and removes the directory.

Also usable from the shell to wrap a command (the C tests that need a
database use this):

    /usr/bin/python3 tests/pgserver.py -- ./build/tests/unit/storage/test_pg

The wrapped command sees PGHOST (the socket directory), PGPORT, PGUSER,
PGDATABASE and CD_TEST_PG_CONNINFO. Exit code 77 (meson's "skipped") is
returned when no PostgreSQL binaries are installed.
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SUPERUSER = "postgres"


def find_pg_bindir():
    """Returns the directory holding initdb/pg_ctl, newest major first."""
    env = os.environ.get("CD_PG_BINDIR")
    if env:
        return env
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(p.split("/")[-2]), reverse=True)
    for c in candidates:
        if os.path.exists(os.path.join(c, "initdb")):
            return c
    path = shutil.which("initdb")
    return os.path.dirname(path) if path else None


class PgServer:
    def __init__(self, port=5432, run_as=None):
        self.bindir = find_pg_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (initdb)")
        self.port = port  # only names the socket file; no TCP listener
        self.run_as = run_as or ("nobody" if os.geteuid() == 0 else None)
        self.base = None
        self.proc_started = False

    # -- helpers -------------------------------------------------------
    def _demote(self):
        if self.run_as is None:
            return None
        pw = pwd.getpwnam(self.run_as)

        def fn():
            os.setgid(pw.pw_gid)
            os.setgroups([])
            os.setuid(pw.pw_uid)
        return fn

    def _run(self, args, **kw):
        env = dict(os.environ)
        env.pop("PGDATA", None)
        env["LC_ALL"] = "C"
        return subprocess.run(args, preexec_fn=self._demote(), env=env,
                              cwd=self.base, check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              **kw)

    @property
    def datadir(self):
        return os.path.join(self.base, "data")

    @property
    def sockdir(self):
        return self.base

    @property
    def conninfo(self):
        return f"host={self.sockdir} port={self.port} user={SUPERUSER} dbname=postgres"

    def env(self):
        return {"PGHOST": self.sockdir, "PGPORT": str(self.port),
                "PGUSER": SUPERUSER, "PGDATABASE": "postgres",
                "CD_TEST_PG_CONNINFO": self.conninfo}

    # -- lifecycle -----------------------------------------------------
    def start(self):
        self.base = tempfile.mkdtemp(prefix="cd-pg-")
        os.chmod(self.base, 0o755)
        if self.run_as is not None:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        try:
            self._run([os.path.join(self.bindir, "initdb"), "-D", self.datadir,
                       "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                       "--no-sync"])
            opts = (f"-c listen_addresses='' -c unix_socket_directories={self.sockdir} "
                    f"-c port={self.port} -c fsync=off -c full_page_writes=off "
                    f"-c max_connections=100 -c shared_buffers=256MB "
                    f"-c max_wal_size=4GB -c checkpoint_timeout=30min")
            self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir,
                       "-o", opts, "-l", os.path.join(self.base, "server.log"),
                       "-w", "-t", "60", "start"])
            self.proc_started = True
        except subprocess.CalledProcessError as e:
            log = e.stdout.decode(errors="replace") if e.stdout else ""
            self.stop()
            raise RuntimeError(f"could not start PostgreSQL: {log}") from e
        return self

    def restart(self):
        """Stops and starts the same cluster (for reconnect tests)."""
        # -l again: without it the restarted server inherits our stdout pipe
        # and subprocess.run() would wait for it forever.
        self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir,
                   "-l", os.path.join(self.base, "server.log"),
                   "-m", "fast", "-w", "restart"])

    def stop(self):
        if self.base is None:
            return
        if self.proc_started:
            try:
                self._run([os.path.join(self.bindir, "pg_ctl"), "-D",
                           self.datadir, "-m", "immediate", "-w", "stop"])
            except subprocess.CalledProcessError:
                pass
            self.proc_started = False
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def psql(self, sql, db="postgres"):
        """Runs SQL through psql; returns stdout (tuples only, '|' separated)."""
        out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-h", self.sockdir, "-p", str(self.port),
                              "-U", SUPERUSER, "-d", db, "-c", sql],
                             check=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        return out.stdout.decode()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    if "--" not in argv:
        print("usage: pgserver.py -- command [args...]", file=sys.stderr)
        return 2
    cmd = argv[argv.index("--") + 1:]
    try:
        srv = PgServer().start()
    except RuntimeError as e:
        if find_pg_bindir() is None:
            print(f"skipped: {e}", file=sys.stderr)
            return 77
        print(str(e), file=sys.stderr)
        return 1
    # meson (or a user) may stop us with SIGTERM/SIGINT on a timeout: stop the
    # child, then the server, so no PostgreSQL is left behind.
    child = None

    def on_signal(signum, frame):
        if child is not None and child.poll() is None:
            child.terminate()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        env = dict(os.environ)
        env.update(srv.env())
        child = subprocess.Popen(cmd, env=env)
        return child.wait()
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        srv.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
