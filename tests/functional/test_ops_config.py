"""Issue 17: configuration the way bitcoind operators expect it, and fail-fast
start-up checks, through the real binaries.

- a wrong PostgreSQL role or database is a configuration error (exit 2, one
  line with the server's own message), not a worker retry loop;
- bitcoind idioms: `regtest=1` / `testnet=1` / `stn=1` in the config file,
  single-dash flags (`-regtest`, `-datadir=DIR`, `-conf FILE`), a default
  config file read from the data directory, `conduit-cli status` finding the
  data directory without `--datadir`.
"""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_config_cli import assert_config_error, exe, free_port, run


def test_wrong_pg_role_or_database_is_a_config_error(build_dir, tmp_path, pg):
    """Failed before the fix: PQping passed, conduitd started and its workers
    logged `role ... does not exist` forever."""
    base = f"host={pg.sockdir} port={pg.port}"
    line = assert_config_error(
        run(build_dir, ["--regtest", "--datadir", str(tmp_path / "d"), "--connect",
                        f"127.0.0.1:{free_port()}", "--pg-conninfo",
                        base + " user=no_such_role dbname=postgres password=s3cret"], timeout=60),
        "PostgreSQL", "refuses the login", 'role "no_such_role" does not exist')
    assert "s3cret" not in line
    assert_config_error(
        run(build_dir, ["--regtest", "--datadir", str(tmp_path / "d"), "--connect",
                        f"127.0.0.1:{free_port()}", "--pg-conninfo",
                        base + " user=%s dbname=no_such_db" % pg.env()["PGUSER"]], timeout=60),
        "refuses the login", 'database "no_such_db" does not exist')


def printed(out):
    """{key: value} of --print-config output (a list option keeps its last)."""
    vals = {}
    for line in out.splitlines():
        if line.startswith("#") or " = " not in line and not line.endswith(" ="):
            continue
        k, _, v = line.partition(" =")
        vals[k.strip()] = v.strip()
    return vals


@pytest.mark.parametrize("line,net", [("regtest=1", "regtest"), ("testnet = 1", "test"),
                                      ("stn=1", "stn"), ("regtest=0", "main"),
                                      ("mainnet=yes", "main")])
def test_network_switches_in_the_config_file(build_dir, tmp_path, line, net):
    """Failed before: `unknown option: 'regtest'` (exit 2)."""
    conf = tmp_path / "c.conf"
    conf.write_text(line + "\n")
    r = run(build_dir, ["--conf", str(conf), "--print-config"], home=str(tmp_path))
    assert r.returncode == 0, r.stderr
    vals = printed(r.stdout)
    assert vals["network"] == net
    assert vals["datadir"] == str(tmp_path / ".conduitd" / net)


def test_network_switch_needs_a_boolean(build_dir, tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("\nregtest = maybe\n")
    assert_config_error(run(build_dir, ["--conf", str(conf), "--no-index"], home=str(tmp_path)),
                        f"{conf}:2", "regtest expects 1 or 0", "maybe")


def test_single_dash_flags(build_dir, tmp_path):
    """Failed before: `unexpected argument: '-regtest'`."""
    conf = tmp_path / "c.conf"
    conf.write_text("log_level = debug\n")
    d = tmp_path / "dd"
    r = run(build_dir, ["-regtest", f"-datadir={d}", "-conf", str(conf), "-no-index",
                        "-connect", "10.0.0.1", "-print-config"], home=str(tmp_path))
    assert r.returncode == 0, r.stderr
    vals = printed(r.stdout)
    assert vals["network"] == "regtest"
    assert vals["datadir"] == str(d)
    assert vals["log_level"] == "debug"
    assert vals["index"] == "off"
    assert vals["connect"] == "10.0.0.1:18444"
    # a forgotten value is not taken from the next flag
    assert_config_error(run(build_dir, ["-datadir", "-regtest"], home=str(tmp_path)),
                        "missing value", "-datadir")
    assert_config_error(run(build_dir, ["-nosuchflag"], home=str(tmp_path)),
                        "unknown option", "nosuchflag")


def test_default_config_files(build_dir, tmp_path):
    """Failed before: no default config file was read."""
    home = tmp_path / "home"
    base = home / ".conduitd"
    base.mkdir(parents=True)
    (base / "conduitd.conf").write_text("regtest=1\nlog_level = warn\n")
    r = run(build_dir, ["--print-config"], home=str(home))
    assert r.returncode == 0, r.stderr
    vals = printed(r.stdout)
    assert vals["network"] == "regtest" and vals["log_level"] == "warn"
    assert vals["datadir"] == str(base / "regtest")
    assert f"(file {base / 'conduitd.conf'}" in r.stdout
    # the network's own directory comes first
    (base / "regtest").mkdir()
    (base / "regtest" / "conduitd.conf").write_text("log_level = error\n")
    vals = printed(run(build_dir, ["-regtest", "--print-config"], home=str(home)).stdout)
    assert vals["log_level"] == "error"
    # --datadir D reads D/conduitd.conf, and flags still win over it
    d = tmp_path / "d"
    d.mkdir()
    (d / "conduitd.conf").write_text("log_level = debug\nstatus_interval = 7\n")
    vals = printed(run(build_dir, ["--datadir", str(d), "--status-interval", "9",
                                   "--print-config"], home=str(home)).stdout)
    assert vals["log_level"] == "debug" and vals["status_interval"] == "9"
    # --no-conf: none at all; --conf FILE: only FILE
    vals = printed(run(build_dir, ["--datadir", str(d), "--no-conf", "--print-config"],
                       home=str(home)).stdout)
    assert vals["log_level"] == "info" and vals["status_interval"] == "10"
    other = tmp_path / "other.conf"
    other.write_text("status_interval = 3\n")
    vals = printed(run(build_dir, ["--datadir", str(d), "--conf", str(other), "--print-config"],
                       home=str(home)).stdout)
    assert vals["log_level"] == "info" and vals["status_interval"] == "3"
    # a broken default file is an error like a named one
    (d / "conduitd.conf").write_text("bogus = 1\n")
    assert_config_error(run(build_dir, ["--datadir", str(d), "--no-index"], home=str(home)),
                        f"{d}/conduitd.conf:1", "unknown option", "bogus")


def test_cli_status_finds_the_default_datadir(build_dir, tmp_path):
    """conduitd started with no --datadir and a default config file saying
    regtest=1; `conduit-cli status` with no argument at all finds it.
    Failed before: the cli looked in ~/.conduitd/main."""
    home = tmp_path / "home"
    (home / ".conduitd").mkdir(parents=True)
    (home / ".conduitd" / "conduitd.conf").write_text(
        f"regtest=1\nindex = 0\nconnect = 127.0.0.1:{free_port()}\nstatus_interval = 1\n")
    env = dict(os.environ, HOME=str(home))
    for k in ("NOTIFY_SOCKET", "JOURNAL_STREAM"):
        env.pop(k, None)
    cli = os.path.join(build_dir, "src/daemon/conduit-cli")
    p = subprocess.Popen([exe(build_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, text=True)
    try:
        status = home / ".conduitd" / "regtest" / "status"
        for _ in range(600):
            if status.exists() or p.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"])
        assert status.exists(), p.poll()
        r = subprocess.run([cli, "status", "--json"], env=env, capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert '"regtest"' in r.stdout
    finally:
        p.terminate()
        out = p.communicate(timeout=60)[0]
    assert f"config file {home}/.conduitd/conduitd.conf" in out, out
