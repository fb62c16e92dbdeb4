"""conduitd's configuration, checked through the real binary.

Every bad configuration must stop the daemon before anything starts, with
exit status 2 and exactly one line on stderr naming the problem (file:line and
the offending text, the path and strerror, the PostgreSQL server). Every
option in the table must be settable from the file and from a flag; the table
is read from `conduitd --sample-config`, so new options are covered too.
"""

import os
import re
import socket
import subprocess

import pytest


def exe(build_dir):
    return os.path.join(build_dir, "src/daemon/conduitd")


def run(build_dir, args, env=None, timeout=60, home=None):
    e = dict(os.environ)
    for k in ("NOTIFY_SOCKET", "JOURNAL_STREAM"):
        e.pop(k, None)
    if home:
        e["HOME"] = home
    if env:
        e.update(env)
    return subprocess.run([exe(build_dir)] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, env=e,
                          stdin=subprocess.DEVNULL, text=True)


def assert_config_error(r, *needles):
    assert r.returncode == 2, f"exit {r.returncode}, stderr: {r.stderr!r}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {r.stderr!r}"
    line = lines[0]
    assert line.startswith("conduitd: "), line
    for n in needles:
        assert n in line, f"{n!r} not in {line!r}"
    return line


def sample_options(build_dir):
    """(name, default) for every option, from the generated sample config."""
    r = run(build_dir, ["--sample-config"])
    assert r.returncode == 0
    opts = re.findall(r"^#([a-z_]+) =(?: (.*))?$", r.stdout, re.M)
    assert len(opts) >= 10
    return [(n, d or "") for n, d in opts]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# A different, valid value for each option (by name; checked against the
# table below so an option added without a test value fails loudly).
OTHER = {
    "network": ("regtest", "regtest"),
    "connect": ("10.9.8.7:1234", "10.9.8.7:1234"),
    "datadir": (None, None),  # filled per test
    "index": ("off", "off"),
    "pg_conninfo": ("host=db.example port=6543", "host=db.example port=6543"),
    "ring_size": ("64M", "64M"),
    "unit_size": ("1024K", "1M"),
    "parser_workers": ("3", "3"),
    "catchup_indexes": ("LIVE", "live"),
    "catchup_threshold": ("77", "77"),
    "catchup_ratio_pct": ("25", "25"),
    "partition_txs": ("5000000", "5000000"),
    "partition_merge": ("3", "3"),
    "key_rows": ("yes", "on"),
    "blocks_per_peer": ("7", "7"),
    "block_timeout": ("33", "33"),
    "block_min_rate": ("2048", "2048"),
    "block_rate_grace": ("4", "4"),
    "block_checksum": ("yes", "on"),
    "serve_block_check": ("no", "off"),
    "relay": ("off", "off"),
    "index_data_pushes": ("no", "off"),
    "max_data_push": ("100", "100"),
    "mempool_max_txs": ("5000", "5000"),
    "mempool_max_bytes": ("500M", "500M"),
    "mempool_max_tx_size": ("2048K", "2M"),
    "mempool_expiry": ("48", "48"),
    "mempool_request": ("NEVER", "never"),
    "mempool_sync_interval": ("30", "30"),
    "mempool_sync_grace": ("5", "5"),
    "mempool_evicted_keep": ("12", "12"),
    "log_level": ("debug", "debug"),
    "log_file": (None, None),  # filled per test
    "user_agent": ("/probe:1/", "/probe:1/"),
    "http_listen": ("127.0.0.1:8085", "127.0.0.1:8085"),
    "http_client_limit": ("7", "7"),
    "status_interval": ("3", "3"),
    "api_keys": ("k1,k2", "(hidden: 2 keys)"),  # never printed (issue 15)
    "http_cors_origins": ("https://a.example", "https://a.example"),
    "events_keep": ("24", "24"),
    "events_max_conns": ("100", "100"),
    "events_max_keys": ("50", "50"),
    "events_max_output": ("64K", "64K"),
    "events_max_message": ("8K", "8K"),
    "events_stall_timeout": ("9", "9"),
    "events_ping_interval": ("11", "11"),
    "events_sub_idle": ("600", "600"),
    "metrics_listen": ("9490", "127.0.0.1:9490"),  # a bare port: loopback
    "metrics_allow_remote": ("yes", "on"),
    "webhooks": ("off", "off"),
    "webhook_timeout": ("3", "3"),
    "webhook_retry_max": ("30", "30"),
    "webhook_failing_after": ("4", "4"),
    "conduitdb_reference_url": ("http://127.0.0.1:47126", "http://127.0.0.1:47126"),
}


def printed(out):
    vals = {}
    for line in out.splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        vals.setdefault(k.strip(), []).append(v.strip())
    return vals


def test_help_and_version(build_dir):
    r = run(build_dir, ["--help"])
    assert r.returncode == 0
    for name, _ in sample_options(build_dir):
        assert f"--{name} " in r.stdout
    assert "--regtest" in r.stdout and "--conf FILE" in r.stdout
    r = run(build_dir, ["--version"])
    assert r.returncode == 0 and re.match(r"conduitd \d+\.\d+", r.stdout)


def test_every_option_from_file_and_flag(build_dir, tmp_path):
    opts = sample_options(build_dir)
    assert set(n for n, _ in opts) == set(OTHER), "OTHER must list every option"
    datadir = str(tmp_path / "dd")
    other = dict(OTHER)
    other["datadir"] = (datadir, datadir)
    other["log_file"] = (str(tmp_path / "x.log"), str(tmp_path / "x.log"))
    # all at once from a file
    conf = tmp_path / "all.conf"
    conf.write_text("".join(f"{n} = {other[n][0]}\n" for n, _ in opts))
    r = run(build_dir, ["--conf", str(conf), "--print-config"])
    assert r.returncode == 0, r.stderr
    vals = printed(r.stdout)
    for n, default in opts:
        assert vals[n] == [other[n][1]], (n, vals[n])
        assert other[n][1] != default, n
    # all at once from flags
    args = []
    for n, _ in opts:
        args += [f"--{n}", other[n][0]]
    r = run(build_dir, args + ["--print-config"])
    assert r.returncode == 0, r.stderr
    vals = printed(r.stdout)
    for n, _ in opts:
        assert vals[n] == [other[n][1]], (n, vals[n])


def test_flags_override_file(build_dir, tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("network = testnet\nring_size = 64M\nconnect = a.example:1\n")
    r = run(build_dir, ["--conf", str(conf), "--regtest", "--ring-size=128M",
                        "--connect", "127.0.0.1", "--print-config"], home=str(tmp_path))
    assert r.returncode == 0, r.stderr
    vals = printed(r.stdout)
    assert vals["network"] == ["regtest"]
    assert vals["ring_size"] == ["128M"]
    assert vals["connect"] == ["127.0.0.1:18444"]
    assert vals["datadir"] == [str(tmp_path / ".conduitd" / "regtest")]


@pytest.mark.parametrize("text,needles", [
    ("index = off\nfrobnicate = 1\n", [":2: unknown option: 'frobnicate'"]),
    ("ring_size = lots\n", [":1: ring_size expects a size like 512M or 4G: 'lots'"]),
    ("ring_size = 1K\n", [":1: ring_size out of range 16M..1T: '1K'"]),
    ("blocks_per_peer = 5000\n", [":1: blocks_per_peer out of range 1..1024: '5000'"]),
    ("network = bch\n", [":1: network expects main, test, regtest or stn: 'bch'"]),
    ("\n\n  oops\n", [":3: expected 'key = value': 'oops'"]),
])
def test_bad_file(build_dir, tmp_path, text, needles):
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    line = assert_config_error(run(build_dir, ["--conf", str(conf), "--datadir",
                                               str(tmp_path / "d"), "--no-index"]),
                               str(conf), *needles)
    assert not (tmp_path / "d").exists(), "nothing may start on a bad config: " + line


@pytest.mark.parametrize("args,needles", [
    (["--frobnicate"], ["command line: unknown option: '--frobnicate'"]),
    (["--ring-size", "12Q"], ["command line: ring_size expects a size", "'12Q'"]),
    (["--parser-workers=999"], ["parser_workers out of range 0..38: '999'"]),
    (["--connect", "host:0"], ["connect expects host[:port]", "'host:0'"]),
    (["--datadir"], ["missing value: '--datadir'"]),
    (["--http-listen", "8085"], ["http_listen expects address:port", "'8085'"]),
    (["--http-listen", "127.0.0.1:99999"], ["http_listen expects address:port"]),
    (["--ring-size", "32M", "--unit-size", "20M"],
     ["unit_size 20M must be at most half of ring_size 32M"]),
    (["--partition-merge", "1"], ["partition_merge 1 would merge a partition into itself"]),
    (["--partition-merge", "65"], ["partition_merge out of range 0..64: '65'"]),
])
def test_bad_flags(build_dir, tmp_path, args, needles):
    assert_config_error(run(build_dir, args + ["--no-index"]), *needles)


def test_http_listen_port_in_use(build_dir, tmp_path):
    """The HTTP API's address is bound before anything starts: a port that is
    taken is a configuration error (one line, exit 2), not a crash loop."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        assert_config_error(run(build_dir, ["--regtest", "--datadir", str(tmp_path / "d"),
                                            "--no-index", "--http-listen", f"127.0.0.1:{port}"]),
                            f"http_listen 127.0.0.1:{port}", "Address already in use")
    finally:
        s.close()


def test_missing_conf_file(build_dir, tmp_path):
    missing = str(tmp_path / "nope.conf")
    assert_config_error(run(build_dir, ["--conf", missing, "--no-index"]), missing,
                        "No such file or directory")


def test_unusable_datadir(build_dir, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    assert_config_error(run(build_dir, ["--datadir", str(f), "--no-index"]),
                        f"data directory {f}", "Not a directory")
    assert_config_error(run(build_dir, ["--datadir", str(f / "sub"), "--no-index"]),
                        f"data directory {f}/sub", "Not a directory")
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert_config_error(run(build_dir, ["--datadir", str(ro), "--no-index"]),
                            str(ro), "Permission denied")


def test_unwritable_log_file(build_dir, tmp_path):
    assert_config_error(run(build_dir, ["--datadir", str(tmp_path / "d"), "--no-index",
                                        "--log-file", str(tmp_path / "no" / "dir" / "x.log")]),
                        "log_file", "No such file or directory")


def test_unreachable_postgres(build_dir, tmp_path):
    port = free_port()
    line = assert_config_error(run(build_dir, ["--regtest", "--datadir", str(tmp_path / "d"),
                                               "--pg-conninfo",
                                               f"host=127.0.0.1 port={port} password=s3cret"]),
                               "PostgreSQL not reachable", f"port={port}", "127.0.0.1")
    assert "s3cret" not in line
    # the same through the PG* environment (libpq defaults)
    assert_config_error(run(build_dir, ["--regtest", "--datadir", str(tmp_path / "d")],
                            env={"PGHOST": "127.0.0.1", "PGPORT": str(port)}),
                        "PostgreSQL not reachable", f"port={port}")
    assert_config_error(run(build_dir, ["--regtest", "--datadir", str(tmp_path / "d"),
                                        "--pg-conninfo", "hoost=x"]),
                        "pg_conninfo", "hoost")


def test_reachable_postgres_passes_the_check(build_dir, tmp_path, pg):
    """With a live server (reached through PG* variables only) startup gets past
    every check to the controller; whatever the controller does next, it is not
    a configuration error."""
    e = dict(os.environ)
    e.update(pg.env())
    for k in ("NOTIFY_SOCKET", "JOURNAL_STREAM"):
        e.pop(k, None)
    p = subprocess.Popen([exe(build_dir), "--regtest", "--datadir", str(tmp_path / "d"),
                          "--connect", f"127.0.0.1:{free_port()}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=e, text=True)
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.terminate()
        p.wait(60)
    out = p.stdout.read()
    assert p.returncode != 2, out
    assert "starting: network regtest" in out, out
    assert (tmp_path / "d" / "status").exists()
