"""The PostgreSQL fixture itself: isolated, unprivileged, removed afterwards."""

import os

from pgserver import PgServer


def test_server_runs_unprivileged_and_is_removed():
    srv = PgServer().start()
    base = srv.base
    try:
        assert srv.psql("select 1").strip() == "1"
        owner = srv.psql("select current_setting('data_directory')").strip()
        assert owner.startswith(base)
        # Only a unix socket: no TCP listener.
        assert srv.psql("show listen_addresses").strip() == ""
        if os.geteuid() == 0:
            st = os.stat(srv.datadir)
            assert st.st_uid != 0
    finally:
        srv.stop()
    assert not os.path.exists(base)


def test_two_servers_do_not_collide():
    a = PgServer().start()
    b = PgServer().start()
    try:
        a.psql("create table t(x int)")
        assert b.psql("select count(*) from pg_tables where tablename='t'").strip() == "0"
    finally:
        a.stop()
        b.stop()


def test_restart_keeps_data():
    srv = PgServer().start()
    try:
        srv.psql("create table t(x int); insert into t values (7)")
        srv.restart()
        assert srv.psql("select x from t").strip() == "7"
    finally:
        srv.stop()


def test_wrapper_stops_server_on_sigterm(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    here = os.path.dirname(os.path.abspath(__file__))
    marker = tmp_path / "pghost"
    script = f"import os,time; open({str(marker)!r},'w').write(os.environ['PGHOST']); time.sleep(60)"
    p = subprocess.Popen([sys.executable, os.path.join(here, "..", "pgserver.py"), "--",
                          sys.executable, "-c", script])
    for _ in range(600):
        if marker.exists() and marker.read_text():
            break
        time.sleep(0.1)
    base = marker.read_text()
    assert os.path.exists(base)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) != 0
    assert not os.path.exists(base)  # server stopped and its directory removed


def _memcg_writable():
    import pgserver
    return os.geteuid() == 0 and os.access(pgserver.MEMCG_ROOT, os.W_OK)


def test_memory_cap_holds_every_server_process_and_is_removed():
    """--pg-memory-max (benchmarks): the postmaster and the backends it forks
    are in a memory group of that limit, which goes with the server."""
    import pytest
    import pgserver
    if not _memcg_writable():
        pytest.skip("needs root and a writable cgroup v1 memory controller")
    srv = PgServer(memory_max=pgserver.parse_size("600M")).start()
    group = srv.memcg
    try:
        with open(os.path.join(group, "memory.limit_in_bytes")) as f:
            assert int(f.read()) == 600 << 20
        with open(os.path.join(srv.datadir, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        with open(os.path.join(group, "cgroup.procs")) as f:
            assert postmaster in {int(x) for x in f.read().split()}
        # a backend, seen from inside: its own cgroup membership
        mine = srv.psql("select pg_read_file('/proc/self/cgroup')")
        assert ":memory:/" + os.path.basename(group) + "\n" in mine
        assert srv.env()["CD_TEST_PG_MEMCG"] == group
        # the server's pages are charged to the group: shared_buffers at least
        # once a table of 64 MB has gone through it
        srv.psql("create table t as select g, repeat('x', 200) as pad "
                 "from generate_series(1, 250000) g")
        st = srv.memory_report()
        assert st["limit"] == 600 << 20
        assert 32 << 20 < st["max_usage"] <= st["limit"]
    finally:
        srv.stop()
    assert not os.path.exists(group)


def test_memory_cap_is_refused_near_shared_buffers_and_absent_by_default():
    import pytest
    import pgserver
    with pytest.raises(ValueError):
        PgServer(memory_max=pgserver.parse_size("300M"))
    srv = PgServer()
    assert srv.memory_max is None and srv.memcg is None
    assert pgserver.parse_size("2G") == 2 << 30 and pgserver.parse_size("1.5g") == 3 << 29


def test_wrapper_reports_the_cap(tmp_path):
    import pytest
    import subprocess
    import sys
    if not _memcg_writable():
        pytest.skip("needs root and a writable cgroup v1 memory controller")
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, os.path.join(here, "..", "pgserver.py"),
                        "--pg-memory-max", "512M", "--", sys.executable, "-c",
                        "import os; print('GROUP=' + os.environ['CD_TEST_PG_MEMCG'])"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    group = r.stdout.split("GROUP=")[1].strip()
    assert "memory cap at exit: limit 0.50 GiB" in r.stderr
    assert not os.path.exists(group)
    r = subprocess.run([sys.executable, os.path.join(here, "..", "pgserver.py"),
                        "--pg-memory-max", "lots", "--", "true"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 2 and "not a size" in r.stderr


def test_wrapper_sets_shared_buffers():
    """--pg-shared-buffers (benchmarks) replaces the harness's 256MB; a
    memory cap is checked against it; nonsense and unknown options are
    refused with status 2."""
    import pytest
    import subprocess
    import sys
    import pgserver
    here = os.path.dirname(os.path.abspath(__file__))
    wrapper = [sys.executable, os.path.join(here, "..", "pgserver.py")]
    show = ["--", "psql", "-XAtc", "SHOW shared_buffers"]
    for opts, want in ((["--pg-shared-buffers", "512MB"], "512MB"),
                       (["--pg-shared-buffers=1GB"], "1GB"), ([], "256MB")):
        r = subprocess.run(wrapper + opts + show, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == want, (opts, r.stdout, r.stderr)
    for opts, err in ((["--pg-shared-buffers", "lots"], "not a size"),
                      (["--pg-shared-buffers", "4096"], "give a whole number and a unit"),
                      (["--pg-shared-buffers", "4G"], "give a whole number and a unit"),
                      (["--pg-shared-buffer", "1GB"], "unknown option")):
        r = subprocess.run(wrapper + opts + ["--", "true"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        assert r.returncode == 2 and err in r.stderr, (opts, r.stderr)
    with pytest.raises(ValueError):
        PgServer(memory_max=pgserver.parse_size("3G"), shared_buffers="2GB")


def test_wrapper_passes_settings():
    """--pg-set NAME=VALUE (benchmarks): any server setting over the
    harness's, the last one of a name wins; no shell words get through."""
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    wrapper = [sys.executable, os.path.join(here, "..", "pgserver.py")]
    r = subprocess.run(wrapper + ["--pg-set", "max_wal_size=8GB", "--pg-set=full_page_writes=on",
                                  "--pg-set", "work_mem=8MB", "--pg-set", "work_mem=16MB", "--",
                                  "psql", "-XAtc", "SELECT current_setting('max_wal_size') || ' ' "
                                  "|| current_setting('full_page_writes') || ' ' || "
                                  "current_setting('work_mem') || ' ' || "
                                  "current_setting('checkpoint_timeout')"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "8GB on 16MB 30min", (r.stdout, r.stderr)
    for opts, err in ((["--pg-set", "work_mem"], "not NAME=VALUE"),
                      (["--pg-set", "work_mem=1MB -c fsync=on"], "a name and a plain value"),
                      (["--pg-set", "Work-Mem=1MB"], "a name and a plain value")):
        r = subprocess.run(wrapper + opts + ["--", "true"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        assert r.returncode == 2 and err in r.stderr, (opts, r.stderr)
