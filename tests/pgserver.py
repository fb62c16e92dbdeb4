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

For benchmarks only: `--pg-memory-max SIZE` (e.g. `2G`; `memory_max=` in
`PgServer`) starts the server inside a cgroup v1 memory group of that limit,
so that the page cache of the database's files is capped too (the kernel
charges a file page to the group of the process that first brings it into
memory, and reclaims the group's pages at its limit): an index larger than
the cap then reads from disk as it would on a machine with that much memory,
without filling a disk with an index larger than the whole RAM. Needs root
and a writable `/sys/fs/cgroup/memory`; the group is removed when the server
stops. The wrapped command also sees CD_TEST_PG_MEMCG (the group's
directory); at exit a line `pgserver: memory cap ...` reports the limit, the
peak usage and the cache/rss split (memory.stat). Without the option nothing
changes (the test suite never uses it).

Also for benchmarks: `--pg-shared-buffers SIZE` (e.g. `4GB`, PostgreSQL's
unit syntax; `shared_buffers=` in `PgServer`) in place of the harness's
256MB, to measure the server's own cache as an operator would size it
(docs/OPERATIONS.md "PostgreSQL server settings"); and `--pg-set NAME=VALUE`
(repeatable; `settings=` in `PgServer`), any server setting over the
harness's own, e.g. `--pg-set max_wal_size=100GB` (no checkpoint in a run) or
`--pg-set full_page_writes=on --pg-set fsync=on` (what a production server
pays).
"""

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SUPERUSER = "postgres"
MEMCG_ROOT = "/sys/fs/cgroup/memory"
SHARED_BUFFERS = "256MB"  # the server's own cache, inside the cap when there is one


def parse_size(text):
    """Bytes of '512M', '2G', '2.5G', '1048576' (binary units, like the kernel's)."""
    t = text.strip().upper().rstrip("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    n = int(float(t[:-1] if mult > 1 else t) * mult)
    if n <= 0:
        raise ValueError("size must be positive: %r" % text)
    return n


def memcg_read(group):
    """{limit, max_usage, usage, failcnt, <every memory.stat field>} of a
    cgroup v1 memory group, in bytes (counts for the *fault and failcnt fields)."""
    out = {}
    for k, f in (("limit", "memory.limit_in_bytes"), ("max_usage", "memory.max_usage_in_bytes"),
                 ("usage", "memory.usage_in_bytes"), ("failcnt", "memory.failcnt")):
        with open(os.path.join(group, f)) as fh:
            out[k] = int(fh.read())
    with open(os.path.join(group, "memory.stat")) as fh:
        for line in fh:
            k, v = line.split()
            out[k] = int(v)
    return out


def memcg_summary(st):
    """One line for a reader: the cap held (peak <= limit) and what filled it."""
    g = 1 << 30
    return ("limit %.2f GiB, peak %.2f GiB, now %.2f GiB: cache %.2f GiB (of which shmem "
            "%.2f GiB: shared_buffers), rss %.2f GiB; active_file %.2f GiB, inactive_file "
            "%.2f GiB, dirty %.2f GiB, writeback %.2f GiB; failcnt %d (times the limit was "
            "hit), pgmajfault %d"
            % (st["limit"] / g, st["max_usage"] / g, st["usage"] / g, st["cache"] / g,
               st.get("shmem", 0) / g, st["rss"] / g, st.get("active_file", 0) / g,
               st.get("inactive_file", 0) / g, st.get("dirty", 0) / g,
               st.get("writeback", 0) / g, st["failcnt"], st.get("pgmajfault", 0)))


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
    def __init__(self, port=5432, run_as=None, memory_max=None, shared_buffers=None,
                 settings=None):
        """memory_max: None (no cap, the default) or bytes: the server runs in
        a cgroup v1 memory group of that limit (benchmarks; module doc).
        shared_buffers: None (SHARED_BUFFERS) or a size as PostgreSQL reads it.
        settings: {name: value} passed as -c after the harness's own."""
        self.bindir = find_pg_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (initdb)")
        self.port = port  # only names the socket file; no TCP listener
        self.run_as = run_as or ("nobody" if os.geteuid() == 0 else None)
        self.base = None
        self.proc_started = False
        self.shared_buffers = shared_buffers or SHARED_BUFFERS
        if not re.fullmatch(r"[0-9]+(kB|MB|GB|TB)", self.shared_buffers):
            # PostgreSQL reads a bare number as 8 kB pages and knows no "4G"
            raise ValueError("shared_buffers %r: give a whole number and a unit PostgreSQL "
                             "reads (kB, MB, GB, TB), e.g. 4GB" % (self.shared_buffers,))
        if memory_max is not None and memory_max < 2 * parse_size(self.shared_buffers):
            # shared_buffers sits in the group and cannot be reclaimed (no
            # swap): a cap near it would leave no page cache, or OOM-kill backends
            raise ValueError("memory_max %d is under twice shared_buffers (%s)"
                             % (memory_max, self.shared_buffers))
        self.memory_max = memory_max
        self.settings = dict(settings or {})
        for k, v in self.settings.items():
            # pg_ctl hands -o to a shell: plain words only
            if not re.fullmatch(r"[a-z_][a-z0-9_.]*", k) or \
                    not re.fullmatch(r"[A-Za-z0-9_.:/+-]+", str(v)):
                raise ValueError("setting %r = %r: a name and a plain value (letters, digits, "
                                 "_ . : / + -)" % (k, v))
        self.memcg = None  # the group's directory while it exists

    # -- helpers -------------------------------------------------------
    def _demote(self, capped=False):
        """The child's set-up: join the memory group (capped, as root: the
        server and every backend it forks inherit it), then drop to run_as."""
        group = self.memcg if capped else None
        if self.run_as is None and group is None:
            return None
        pw = pwd.getpwnam(self.run_as) if self.run_as is not None else None

        def fn():
            if group is not None:
                with open(os.path.join(group, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
            if pw is not None:
                os.setgid(pw.pw_gid)
                os.setgroups([])
                os.setuid(pw.pw_uid)
        return fn

    def _memcg_create(self):
        """Creates the memory group with its limit (before the server starts,
        so its first page is charged there)."""
        group = os.path.join(MEMCG_ROOT, "cd-pg-%d-%d" % (os.getpid(), self.port))
        try:
            os.mkdir(group)
            with open(os.path.join(group, "memory.limit_in_bytes"), "w") as f:
                f.write(str(self.memory_max))
        except OSError as e:
            if os.path.isdir(group):
                os.rmdir(group)
            raise RuntimeError("cannot create the memory cgroup %s (root and cgroup v1's "
                               "memory controller are needed): %s" % (group, e)) from e
        self.memcg = group

    def _memcg_remove(self):
        """Removes the group once its processes are gone (an immediate stop
        returns while the last backends may still be exiting)."""
        if self.memcg is None:
            return
        for _ in range(100):
            try:
                os.rmdir(self.memcg)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)
        else:
            print("pgserver: could not remove %s" % self.memcg, file=sys.stderr)
        self.memcg = None

    def memory_report(self):
        """memcg_read() of the server's group, or None without a cap."""
        return memcg_read(self.memcg) if self.memcg else None

    def _run(self, args, capped=False, **kw):
        env = dict(os.environ)
        env.pop("PGDATA", None)
        env["LC_ALL"] = "C"
        return subprocess.run(args, preexec_fn=self._demote(capped), env=env,
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
        e = {"PGHOST": self.sockdir, "PGPORT": str(self.port),
             "PGUSER": SUPERUSER, "PGDATABASE": "postgres",
             "CD_TEST_PG_CONNINFO": self.conninfo}
        if self.memcg:
            e["CD_TEST_PG_MEMCG"] = self.memcg
        return e

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
            if self.memory_max is not None:
                self._memcg_create()
            opts = (f"-c listen_addresses='' -c unix_socket_directories={self.sockdir} "
                    f"-c port={self.port} -c fsync=off -c full_page_writes=off "
                    f"-c max_connections=100 -c shared_buffers={self.shared_buffers} "
                    f"-c max_wal_size=4GB -c checkpoint_timeout=30min")
            opts += "".join(f" -c {k}={v}" for k, v in self.settings.items())
            self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir,
                       "-o", opts, "-l", os.path.join(self.base, "server.log"),
                       "-w", "-t", "60", "start"], capped=True)
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
                   "-m", "fast", "-w", "restart"], capped=True)

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
        self._memcg_remove()
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
        print("usage: pgserver.py [--pg-memory-max SIZE] [--pg-shared-buffers SIZE] "
              "[--pg-set NAME=VALUE ...] -- command [args...]", file=sys.stderr)
        return 2
    cmd = argv[argv.index("--") + 1:]
    opts = argv[:argv.index("--")]
    values = {"--pg-memory-max": None, "--pg-shared-buffers": None}
    settings = {}
    while opts:
        o = opts.pop(0)
        name, eq, v = o.partition("=")
        if (name not in values and name != "--pg-set") or (not eq and not opts):
            print("pgserver.py: unknown option %s" % o, file=sys.stderr)
            return 2
        v = v if eq else opts.pop(0)
        if name == "--pg-set":
            k, eq2, val = v.partition("=")
            if not eq2:
                print("pgserver.py: --pg-set %s: not NAME=VALUE" % v, file=sys.stderr)
                return 2
            settings[k] = val
        else:
            values[name] = v
    memory_max = None
    for name, v in values.items():
        try:
            n = parse_size(v) if v is not None else None
        except ValueError:
            print("pgserver.py: %s: not a size: %s" % (name, v), file=sys.stderr)
            return 2
        if name == "--pg-memory-max":
            memory_max = n
    try:
        srv = PgServer(memory_max=memory_max, shared_buffers=values["--pg-shared-buffers"],
                       settings=settings).start()
    except ValueError as e:
        print("pgserver.py: %s" % e, file=sys.stderr)
        return 2
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
        if srv.memcg:
            print("pgserver: PostgreSQL in memory cgroup %s, shared_buffers %s, %s"
                  % (srv.memcg, srv.shared_buffers, memcg_summary(srv.memory_report())),
                  file=sys.stderr, flush=True)
        child = subprocess.Popen(cmd, env=env)
        return child.wait()
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        if srv.memcg:
            print("pgserver: memory cap at exit: %s" % memcg_summary(srv.memory_report()),
                  file=sys.stderr, flush=True)
        srv.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
