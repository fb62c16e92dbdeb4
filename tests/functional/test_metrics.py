"""Issue 17: GET /metrics in the Prometheus text format, through a real
daemon indexing the 116-block regtest chain from the simulated node, on
metrics_listen's own port (and, the same text, on the HTTP API's).

The exposition is checked twice: by `promtool check metrics` (Debian's
prometheus package, in ./dev's package list), and by a strict parser written
here for the text format 0.0.4 (every sample preceded by its HELP and TYPE,
names and labels well-formed, counters ending in _total, no duplicate
series, values that parse as floats), so the check holds where promtool is
missing too. The figures must agree with the database and the status file.
"""
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from daemon_util import Daemon  # noqa: E402
from test_index import create_db  # noqa: E402
from test_index_daemon import wait_tip  # noqa: E402
from tests.simnode import SimNode  # noqa: E402

CHAIN = "regtest/blockchain_116_7c9cd2"
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(\{(?:%s)(?:,%s)*\})? (\S+)$" % (NAME, LABEL, LABEL))


def parse_exposition(text):
    """{name: {"type": t, "help": h, "samples": {labels: value}}}; asserts
    the rules of the text format on the way."""
    assert text.endswith("\n")
    fams, cur = {}, None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert re.fullmatch(NAME, name) and help_, line
            assert name not in fams, f"{name} twice"
            fams[name] = {"help": help_, "type": None, "samples": {}}
            cur = name
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert name == cur and fams[name]["type"] is None, line
            assert typ in ("counter", "gauge", "summary", "histogram", "untyped"), line
            fams[name]["type"] = typ
        else:
            assert not line.startswith("#") and line, f"stray line {line!r}"
            m = SAMPLE.match(line)
            assert m, f"malformed sample {line!r}"
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            suffix = ""
            if cur and name != cur and fams[cur]["type"] == "histogram" and \
                    name in (cur + "_bucket", cur + "_sum", cur + "_count"):
                suffix = name[len(cur):]  # a histogram's series
                name = cur
            assert name == cur and fams[name]["type"], f"{name} without HELP/TYPE first"
            float(value)  # raises on a bad number
            key = suffix + labels
            assert key not in fams[name]["samples"], f"duplicate series {line!r}"
            fams[name]["samples"][key] = float(value)
    for name, f in fams.items():
        assert f["samples"], f"{name}: no sample"
        if f["type"] == "counter":
            assert name.endswith("_total"), name
        if f["type"] == "histogram":
            check_histogram(name, f["samples"])
    return fams


def check_histogram(name, samples):
    """Buckets in increasing `le` order, cumulative, ending in +Inf = _count."""
    les = [(k, v) for k, v in samples.items() if k.startswith("_bucket")]
    bounds = [float(re.search(r'le="([^"]+)"', k).group(1).replace("+Inf", "inf"))
              for k, _ in les]
    assert bounds == sorted(bounds) and bounds[-1] == float("inf"), (name, bounds)
    counts = [v for _, v in les]
    assert counts == sorted(counts), (name, counts)
    assert samples["_count"] == counts[-1] and "_sum" in samples, (name, samples)


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


@pytest.fixture(scope="module")
def daemon(pg_module, build_dir, shared_data, tmp_path_factory):
    node = SimNode(chain_dir=os.path.join(shared_data, CHAIN))
    node.start()
    ci = create_db(pg_module, "metricsdb")
    d = Daemon(build_dir, str(tmp_path_factory.mktemp("metrics") / "d"),
               ["--regtest", "--no-conf", "--connect", "127.0.0.1:%d" % node.port,
                "--pg-conninfo", ci, "--parser-workers", "2", "--ring-size", "16M",
                "--unit-size", "1M", "--http-listen", "127.0.0.1:0", "--status-interval", "1",
                "--metrics-listen", "0"])
    d.start()
    try:
        api = int(d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        port = int(d.wait_for_log(r"metrics: Prometheus metrics on http://127\.0\.0\.1:(\d+)/",
                                  timeout=30).group(1))
        wait_tip(pg_module, "metricsdb", d, 116, timeout=300)
        # the tests scrape metrics_listen's port; the API serves /metrics too
        yield d, port, api
    finally:
        d.stop()
        node.stop()


def test_promtool_accepts_the_exposition(daemon):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (./dev deps installs Debian's prometheus)")
    text = scrape(daemon[1])
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", \
        r.stdout + r.stderr + text


def test_figures(daemon, shared_data):
    d, port, _ = daemon
    # the status file is rewritten every second: wait until it shows the tip
    deadline = time.monotonic() + 60
    while True:
        fams = parse_exposition(scrape(port))
        v = {n: f["samples"].get("") for n, f in fams.items()}
        if v.get("conduitd_indexed_height") == 116 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert v["conduitd_up"] == 1
    assert v["conduitd_header_height"] == 116
    assert v["conduitd_stored_height"] == 116
    assert v["conduitd_indexed_height"] == 116
    assert v["conduitd_peers"] == 1
    assert v["conduitd_workers_alive"] == v["conduitd_workers"] >= 2
    assert v["conduitd_postgres_up"] == 1
    assert v["conduitd_mempool_transactions"] >= 0
    # block 116's header time, from the block file itself
    chain = os.path.join(shared_data, CHAIN)
    h116 = open(os.path.join(chain, "headers.txt")).read().split()[116]
    raw = open(os.path.join(chain, h116), "rb").read(80)
    assert v["conduitd_indexed_tip_time_seconds"] == int.from_bytes(raw[68:72], "little")
    assert fams["conduitd_blocks_processed_total"]["type"] == "counter"
    assert v["conduitd_blocks_processed_total"] >= 116
    assert v["conduitd_block_bytes_processed_total"] > 100_000
    info = fams["conduitd_info"]["samples"]
    assert len(info) == 1 and 'network="regtest"' in next(iter(info))
    rx = fams["conduitd_peer_received_bytes_total"]["samples"]
    assert len(rx) == 1 and next(iter(rx.values())) > 100_000, rx
    assert fams["conduitd_peer_sent_bytes_total"]["type"] == "counter"
    mem = fams["conduitd_resident_memory_bytes"]["samples"]
    assert mem['{process="controller"}'] > 1_000_000 and mem['{process="children"}'] > 1_000_000
    assert v["conduitd_child_processes"] >= 3  # 2 parsers + writer/merkle/http ...


def test_parser_rejects_what_promtool_would(daemon):
    """The strict parser is not a rubber stamp."""
    good = scrape(daemon[1])
    for bad in (good.replace("# TYPE conduitd_peers gauge\n", ""),
                good + "conduitd_peers 1\n",
                good.replace("conduitd_peers ", "conduitd_peers{x=1} "),
                good.replace("# TYPE conduitd_up gauge", "# TYPE conduitd_up counter")):
        with pytest.raises(AssertionError):
            parse_exposition(bad)


def test_metrics_takes_no_parameters_and_answers_head(daemon):
    port = daemon[1]
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?x=1", timeout=30)
        raise AssertionError("no 400")
    except urllib.error.HTTPError as e:
        assert e.code == 400
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="HEAD")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200 and r.read() == b"" and int(r.headers["Content-Length"]) > 500


def test_cli_status_shows_best_hash_and_peers(daemon, build_dir, shared_data):
    """Failed before: status showed heights and a peer count only."""
    d, _, _ = daemon
    best = open(os.path.join(shared_data, CHAIN, "headers.txt")).read().split()[116]
    cli = os.path.join(build_dir, "src/daemon/conduit-cli")
    deadline = time.monotonic() + 60
    while True:
        r = subprocess.run([cli, "status", "--regtest", "--no-conf", "--datadir", d.datadir],
                           capture_output=True, text=True, timeout=30)
        if best in r.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^  best header: +%s$" % best, r.stdout, re.M), r.stdout
    assert re.search(r"^    127\.0\.0\.1:\d+ +height 116 +in [0-9.]+ MB +out [0-9.]+ MB +/",
                     r.stdout, re.M), r.stdout
    assert "over 6 status intervals" in r.stdout
    r = subprocess.run([cli, "status", "--json", "--regtest", "--no-conf", "--datadir",
                        d.datadir], capture_output=True, text=True, timeout=30)
    import json
    doc = json.loads(r.stdout)
    assert doc["best_hash"] == best
    assert len(doc["peer_list"]) == 1 and doc["peer_list"][0]["height"] == 116
    assert doc["peer_list"][0]["bytes_in"] > 100_000 and doc["peer_list"][0]["agent"]
    # the healthcheck's grep still matches the start of the document
    assert r.stdout.startswith('{"running": true, "stale": false')


def test_grafana_dashboard_uses_only_exported_metrics(daemon):
    """conf/grafana-conduitd.json: valid JSON, and every conduitd_* name in
    its queries is one /metrics exports (a renamed metric breaks this)."""
    import json
    root = os.path.dirname(os.path.dirname(HERE))
    dash = json.load(open(os.path.join(root, "conf", "grafana-conduitd.json")))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    # a histogram's series name its family with _bucket / _sum / _count
    used = {re.sub(r"_(bucket|sum|count)$", "", n)
            for n in re.findall(r"\b(conduitd_[a-z0-9_]+)", " ".join(exprs))}
    assert len(used) >= 20, used
    exported = set(parse_exposition(scrape(daemon[1])))
    assert used <= exported, used - exported


def test_api_serves_the_same_families(daemon):
    """/metrics stays on the HTTP API too (dashboards set up before
    metrics_listen existed): the same metric families as on metrics_listen."""
    d, port, api = daemon
    assert set(parse_exposition(scrape(api))) == set(parse_exposition(scrape(port)))


def test_metrics_listen_serves_only_metrics(daemon):
    port = daemon[1]
    for path in ("/v1/status", "/"):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30)
            raise AssertionError("no 404")
        except urllib.error.HTTPError as e:
            assert e.code == 404


def test_metrics_listen_without_the_api(build_dir, tmp_path):
    """metrics_listen alone (no http_listen, index off): its own process
    serves the endpoint, on loopback when given a bare port. Failed before:
    metrics_listen did not exist (/metrics only on the API's address)."""
    d = Daemon(build_dir, str(tmp_path / "d"),
               ["--regtest", "--no-conf", "--no-index", "--connect", "127.0.0.1:1",
                "--ring-size", "16M", "--unit-size", "1M", "--metrics-listen", "0",
                "--status-interval", "1"])
    d.start()
    try:
        port = int(d.wait_for_log(r"metrics: Prometheus metrics on http://127\.0\.0\.1:(\d+)/",
                                  timeout=30).group(1))
        d.wait_for_log(r"metrics: server serving", timeout=30)
        text = scrape(port)
        fams = parse_exposition(text)
        assert fams["conduitd_up"]["samples"][""] == 1
        assert "conduitd_postgres_up" not in fams  # the index is off
        promtool = shutil.which("promtool")
        if promtool:
            r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
        assert "http: API on" not in d.log_text()
    finally:
        assert d.stop() == 0


def test_metrics_listen_refuses_a_remote_address_unless_allowed(build_dir, tmp_path):
    from test_config_cli import assert_config_error, run
    assert_config_error(run(build_dir, ["--regtest", "--no-conf", "--no-index", "--datadir",
                                        str(tmp_path / "d"), "--metrics-listen", "0.0.0.0:0"]),
                        "metrics_listen 0.0.0.0:0: not a loopback address",
                        "metrics_allow_remote = on")
    r = run(build_dir, ["--regtest", "--no-conf", "--no-index", "--metrics-listen",
                        "0.0.0.0:9490", "--metrics-allow-remote", "--print-config"])
    assert r.returncode == 0 and "metrics_listen = 0.0.0.0:9490" in r.stdout, r.stderr
    for ok in ("[::1]:9490", "localhost:9490", "127.0.0.2:9490"):
        r = run(build_dir, ["--regtest", "--no-conf", "--no-index", "--metrics-listen", ok,
                            "--print-config"])
        assert r.returncode == 0 and f"metrics_listen = {ok}" in r.stdout, r.stderr


def test_metrics_port_in_use(build_dir, tmp_path):
    """A taken port is a configuration error at start (one line, exit 2)."""
    import socket
    from test_config_cli import assert_config_error, run
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        assert_config_error(run(build_dir, ["--regtest", "--no-conf", "--no-index", "--datadir",
                                            str(tmp_path / "d"), "--metrics-listen", str(port)]),
                            f"metrics_listen 127.0.0.1:{port}", "Address already in use")
    finally:
        s.close()


def scrape_until(port, pred, what, timeout=60):
    """Scrapes until pred(families) holds (the status file is rewritten
    every second); returns the families. The timeout only detects a hang."""
    deadline = time.monotonic() + timeout
    while True:
        fams = parse_exposition(scrape(port))
        if pred(fams):
            return fams
        assert time.monotonic() < deadline, f"never: {what}\n" + scrape(port)
        time.sleep(0.3)


def block_time(shared_data, height):
    chain = os.path.join(shared_data, CHAIN)
    h = open(os.path.join(chain, "headers.txt")).read().split()[height]
    raw = open(os.path.join(chain, h), "rb").read(80)
    return h, int.from_bytes(raw[68:72], "little")


def test_issue17_figures(daemon, shared_data):
    """Failed before: none of these families existed (restarts by kind,
    commit latency, refusals and evictions by reason, tip/header times)."""
    port = daemon[1]
    fams = scrape_until(port, lambda f: "conduitd_tip_time_seconds" in f and
                        f["conduitd_indexed_height"]["samples"][""] == 116, "tip at 116")
    restarts = fams["conduitd_worker_restarts_total"]
    assert restarts["type"] == "counter"
    kinds = {re.search(r'kind="([^"]+)"', k).group(1) for k in restarts["samples"]}
    assert {"parser", "writer", "merkle", "http", "metrics"} <= kinds, kinds
    commit = fams["conduitd_postgres_commit_seconds"]
    assert commit["type"] == "histogram"
    assert commit["samples"]["_count"] >= 1 and commit["samples"]["_sum"] > 0, commit
    refused = fams["conduitd_mempool_refused_total"]["samples"]
    assert set(refused) == {'{reason="%s"}' % r for r in (
        "unsolicited", "oversize", "unparsable", "notfound", "unanswered", "queue-full")}
    assert fams["conduitd_mempool_evicted_5m"]["type"] == "gauge"
    _, t116 = block_time(shared_data, 116)
    assert fams["conduitd_tip_time_seconds"]["samples"][""] == t116
    assert fams["conduitd_header_time_seconds"]["samples"][""] == t116
    assert list(fams["conduitd_peer_start_height"]["samples"].values()) == [116]
    # regtest has no known chain totals: no estimate is claimed
    assert "conduitd_sync_progress_transactions_estimated_ratio" not in fams


def test_cli_status_shows_the_indexed_tip(daemon, build_dir, shared_data):
    """Failed before: status showed the best header's hash only, not the
    indexed tip's hash and time, nor what the ETA is based on."""
    d = daemon[0]
    h116, t116 = block_time(shared_data, 116)
    cli = os.path.join(build_dir, "src/daemon/conduit-cli")
    deadline = time.monotonic() + 60
    while True:
        r = subprocess.run([cli, "status", "--regtest", "--no-conf", "--datadir", d.datadir],
                           capture_output=True, text=True, timeout=30)
        if h116 in r.stdout.replace("best header", "") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t116))
    assert re.search(r"^  indexed tip: +%s$" % h116, r.stdout, re.M), r.stdout
    assert re.search(r"^  tip time: +%s \(" % when, r.stdout, re.M), r.stdout
    assert re.search(r"^  eta: +0s \(caught up\)$", r.stdout, re.M), r.stdout
    import json
    doc = json.loads(subprocess.run([cli, "status", "--json", "--regtest", "--no-conf",
                                     "--datadir", d.datadir], capture_output=True, text=True,
                                    timeout=30).stdout)
    assert doc["tip_hash"] == h116 and doc["tip_time"] == t116
    assert doc["progress_tx_estimated"] is None  # regtest: nothing to estimate from


def test_zz_parser_restart_is_counted(daemon):
    """Last in the module (it kills a worker): a parser killed with SIGKILL is
    restarted by the supervisor and counted under kind="parser"."""
    import signal
    d, port, _ = daemon
    before = parse_exposition(scrape(port))["conduitd_worker_restarts_total"]["samples"]
    assert before['{kind="parser"}'] == 0
    pid = int(d.wait_for_log(r"supervisor: started parser worker 0 \(pid (\d+)\)").group(1))
    os.kill(pid, signal.SIGKILL)
    d.wait_for_log(r"supervisor: restarting parser worker 0")
    fams = scrape_until(port, lambda f: f["conduitd_worker_restarts_total"]["samples"]
                        ['{kind="parser"}'] == 1, "parser restart counted")
    s = fams["conduitd_worker_restarts_total"]["samples"]
    assert s['{kind="writer"}'] == 0 and s['{kind="http"}'] == 0


def test_metrics_session_is_named_for_operators(daemon, pg_module):
    """The metrics server's PostgreSQL session is `conduitd-metrics` in
    pg_stat_activity, not `conduitd-http` (it was: an operator counting the
    API's sessions counted the metrics server's too)."""
    scrape(daemon[1])
    rows = pg_module.psql("SELECT application_name FROM pg_stat_activity "
                          "WHERE datname = 'metricsdb' AND application_name LIKE 'conduitd-%'")
    names = rows.split()
    assert "conduitd-metrics" in names, names
