"""parser_workers is bounded where the configuration is read, by the bound
the pipeline runs (CD_CONFIG_MAX_PARSER_WORKERS, cd_config.h).

Before: the option table accepted up to 256 while the pipeline refused more
than 38; the daemon started, opened its stores, forked its HTTP server and
only then stopped (or, before that, ignored the refusal and indexed nothing
while reporting progress). Now a value above the bound is the usual one-line
configuration error (exit 2) before anything starts, from the file or the
command line, with the index on and a reachable database. The default (one
per core) is clamped to the same bound: cd_config_parser_workers(), unit
test test_parser_workers_bound (a 128- and a 1024-core host).
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_config_cli import assert_config_error, exe, free_port  # noqa: E402

MAX = 38  # CD_CONFIG_MAX_PARSER_WORKERS


def run(build_dir, args, pg):
    e = dict(os.environ)
    e.update(pg.env())
    for k in ("NOTIFY_SOCKET", "JOURNAL_STREAM"):
        e.pop(k, None)
    return subprocess.run([exe(build_dir)] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60, env=e,
                          stdin=subprocess.DEVNULL, text=True)


def test_parser_workers_above_the_bound_from_file(build_dir, tmp_path, pg):
    conf = tmp_path / "c.conf"
    conf.write_text("index = on\nparser_workers = 64\n")
    d = tmp_path / "d"
    r = run(build_dir, ["--conf", str(conf), "--regtest", "--datadir", str(d),
                        "--connect", f"127.0.0.1:{free_port()}"], pg)
    line = assert_config_error(r, str(conf), ":2: parser_workers out of range 0..%d: '64'" % MAX)
    assert not d.exists(), "nothing may start on a refused parser_workers: " + line


def test_parser_workers_above_the_bound_from_flag(build_dir, tmp_path, pg):
    d = tmp_path / "d"
    r = run(build_dir, ["--parser-workers", str(MAX + 1), "--regtest", "--datadir", str(d),
                        "--connect", f"127.0.0.1:{free_port()}"], pg)
    assert_config_error(r, "command line: parser_workers out of range 0..%d: '%d'"
                        % (MAX, MAX + 1))
    assert not d.exists()
