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
