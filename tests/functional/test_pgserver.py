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
