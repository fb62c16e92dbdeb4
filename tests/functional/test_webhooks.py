"""Webhooks (issue 16, docs/WEBHOOKS.md): registrations over the HTTP API,
deliveries from the event log by the daemon's webhook process.

The receivers are the standard library's http.server, in this process; each
request's X-Conduit-Signature is checked against HMAC-SHA256 of the exact
body with the registration's secret. One daemon (simulated node, real
PostgreSQL) serves the module:

  * scenario: a key and an outpoint watched, the tx seen in the mempool,
    mined, then a reorg and new blocks: every matching event of the log is
    delivered, in id order, each id once after deduplication;
  * retries: the receiver answers 500, then lets requests time out until
    the registration shows failing; then it recovers: everything arrives;
  * receiver down while blocks are indexed, then up: the backlog arrives;
  * the daemon killed with SIGKILL mid-backlog and restarted: nothing lost;
  * bad registrations: 400/401 with a JSON error naming the problem.
"""

import hashlib
import hmac
import http.server
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon, cli  # noqa: E402
from test_index import create_db, psql  # noqa: E402
from test_reorg import mempool, mine_exact, tip, txid, wait_until  # noqa: E402

from tests.simnode.protocol import parse_tx  # noqa: E402

KEY = "k-hooks"
AUTH = {"Authorization": "Bearer " + KEY}


class Receiver:
    """An HTTP receiver on a fixed port that can go down and come back.
    mode(n) -> 'ok' | 500 (status) | 'hang' (answer after the daemon's
    timeout) decides the answer to the n-th request (0-based)."""

    def __init__(self, mode=None, delay=0.0):
        self.mode = mode or (lambda n: "ok")
        self.delay = delay
        self.secret = None
        self.requests = []  # (event id, body dict, signature ok, answered)
        self.lock = threading.Lock()
        self.hang = threading.Event()  # set: hanging requests end
        self.srv = None
        self.port = None
        self.up()

    def handler(self):
        rc = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                sig = self.headers.get("X-Conduit-Signature", "")
                want = "sha256=" + hmac.new(rc.secret.encode(), body, hashlib.sha256).hexdigest()
                doc = json.loads(body)
                with rc.lock:
                    k = len(rc.requests)
                    what = rc.mode(k)
                    rec = {"id": int(self.headers["X-Conduit-Event-Id"]), "body": doc,
                           "sig_ok": hmac.compare_digest(sig, want),
                           "ts": self.headers.get("X-Conduit-Timestamp"), "answer": what,
                           "done": False}
                    rc.requests.append(rec)
                if what == "hang":
                    rc.hang.wait(30)
                    return  # the daemon gave up already; close without answer
                if rc.delay:
                    time.sleep(rc.delay)
                code = 200 if what == "ok" else int(what)
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                try:
                    self.wfile.write(b"ok")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the daemon gave up (or was killed): not delivered
                rec["done"] = True  # answered (the daemon may still die before reading it)

        return H

    def up(self):
        addr = ("127.0.0.1", self.port or 0)
        self.srv = http.server.ThreadingHTTPServer(addr, self.handler())
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def down(self):
        self.srv.shutdown()
        self.srv.server_close()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook?x=1" % self.port

    def delivered(self):
        """The 2xx-answered event ids, first occurrences, in arrival order."""
        with self.lock:
            out, seen = [], set()
            for r in self.requests:
                assert r["sig_ok"], "bad signature on event %d" % r["id"]
                assert r["id"] == r["body"]["id"]
                if r["answer"] == "ok" and r["done"] and r["id"] not in seen:
                    seen.add(r["id"])
                    out.append(r["id"])
            return out

    def bodies(self):
        with self.lock:
            return {r["id"]: r["body"] for r in self.requests if r["answer"] == "ok" and r["done"]}


def api(port, method, path, body=None, headers=None):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    h = {"Content-Type": "application/json"}
    h.update(headers if headers is not None else AUTH)
    r = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, headers=h,
                               method=method)
    try:
        with urllib.request.urlopen(r, timeout=60) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Env:
    pass


def healthy(e):
    """The delivery process never crashed (nor any other), no sanitizer
    report (the ASan build runs these tests too)."""
    log = e.d.log_text()
    for bad in ("AddressSanitizer", "runtime error:", "restarting webhook"):
        assert bad not in log, bad + ":\n" + log[-4000:]
    assert not re.search(r"worker \d+ \(pid \d+\) (killed|exited)", log), log[-4000:]
    # a fresh database (the process starts before the migrations) is a wait, not an error
    assert not re.search(r"ERROR[^\n]*webhook", log), log[-4000:]


def start_daemon(e):
    e.d = Daemon(e.build_dir, str(e.tmp / "d"),
                 ["--regtest", "--connect", "127.0.0.1:%d" % e.node.port,
                  "--pg-conninfo", e.ci, "--parser-workers", "1", "--ring-size", "16M",
                  "--unit-size", "64K", "--http-listen", "127.0.0.1:0",
                  "--http-client-limit", "0", "--api-keys", "other," + KEY,
                  "--webhook-timeout", "1", "--webhook-retry-max", "2",
                  "--webhook-failing-after", "3", "--log-level", "info"])
    e.d.start()
    m = e.d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30)
    e.port = int(m.group(1))
    e.d.wait_for_log(r"webhook: delivery process running", timeout=30)


@pytest.fixture(scope="module")
def env(pg_module, build_dir, tmp_path_factory):
    from tests.simnode import SimNode
    e = Env()
    e.pg, e.build_dir = pg_module, build_dir
    e.tmp = tmp_path_factory.mktemp("hooks")
    e.node = SimNode(generate=12, txs_per_block=2, seed=16)
    e.node.start()
    e.db = "hooks"
    e.ci = create_db(pg_module, e.db)
    try:
        start_daemon(e)
        try:
            wait_until(lambda: tip(pg_module, e.db) == e.node.chain.tip.hash_hex, e.d, "tip")
            yield e
            healthy(e)
        finally:
            e.d.stop()
    finally:
        e.node.stop()


def sync(e):
    want = e.node.chain.tip.hash_hex
    wait_until(lambda: tip(e.pg, e.db) == want, e.d, "tip " + want)


def max_event(e):
    return int(psql(e.pg, e.db, "SELECT coalesce(max(id), 0) FROM events;")[0][0])


def events_after(e, after):
    return [(int(i), k, json.loads(b)) for i, k, b in
            psql(e.pg, e.db, "SELECT id, kind, body::text FROM events WHERE id > %d "
                             "ORDER BY id;" % after)]


def register(e, rc, **kw):
    body = {"url": rc.url}
    body.update(kw)
    st, doc = api(e.port, "POST", "/v1/webhooks", body)
    assert st == 201, doc
    assert len(doc["secret"]) == 64 and doc["url"] == rc.url
    rc.secret = doc["secret"]
    return doc["id"]


def status(e, hid):
    st, doc = api(e.port, "GET", "/v1/webhooks/%d" % hid)
    assert st == 200, doc
    return doc


def wait_delivered(e, rc, ids, timeout=120):
    wait_until(lambda: set(ids) <= set(rc.delivered()), e.d,
               "deliveries %s (got %s)" % (ids, rc.delivered()), timeout)


def settled(e, hid, last):
    """The status once the cursor has the last 2xx (the receiver answers
    before the daemon commits)."""
    wait_until(lambda: status(e, hid)["last_delivered_event"] == last, e.d, "the cursor")
    return status(e, hid)


def test_scenario_every_event_in_order_once(env):
    e = env
    e.d.wait_for_log(r"mempool: index at the best tip; relay on", timeout=120)
    op = e.node.spendable_outpoints(limit=1)[0]
    a = e.node.make_tx(spend=op)
    _, _, outs = parse_tx(a, 0)
    script = outs[0][1]
    assert script[:3] == b"\x76\xa9\x14"
    key = hashlib.sha256(script[3:23]).hexdigest()
    op_txid, op_vout = op[0][::-1].hex(), op[1]
    rc = Receiver()
    start_id = max_event(e)
    hid = register(e, rc, keys=[key], outpoints=[{"txid": op_txid, "vout": op_vout}],
                   kinds=["tip", "reorg"])
    # the registration's watches are the event log's (owner hook:<id>)
    assert psql(e.pg, e.db, "SELECT count(*) FROM watch_owners WHERE owner = 'hook:%d';"
                % hid)[0][0] == "2"

    e.node.add_mempool_tx(a)
    wait_until(lambda: txid(a) in mempool(e.pg, e.db), e.d, "tx in mempool")
    blk = mine_exact(e.node, [a])
    sync(e)
    h = e.node.chain.height
    e.node.reorg(fork_height=h - 1, new_len=2)
    sync(e)
    e.node.mine(1)
    sync(e)

    def expected():
        out = []
        for i, k, b in events_after(e, start_id):
            if (k in ("tip", "reorg") or (k == "key" and b["key"] == key) or
                    (k == "spend" and b["txid"] == op_txid and b["vout"] == op_vout)):
                out.append(i)
        return out

    # the tip event of the last block is the last to be logged
    wait_until(lambda: any(b["hash"] == e.node.chain.tip.hash_hex
                           for i, k, b in events_after(e, start_id) if k == "tip"),
               e.d, "the last tip event")
    want = expected()
    wait_delivered(e, rc, want)
    got = rc.delivered()
    assert got == want  # all, in order, nothing else, each once
    bodies = rc.bodies()
    kinds = [(bodies[i]["kind"], bodies[i]["data"].get("state")) for i in got]
    assert ("key", "mempool") in kinds and ("key", "confirmed") in kinds
    assert ("spend", "mempool") in kinds and ("spend", "confirmed") in kinds
    assert ("reorg", None) in kinds
    conf = [bodies[i]["data"] for i in got if bodies[i]["kind"] == "key"
            and bodies[i]["data"]["state"] == "confirmed"]
    assert conf[0]["txid"] == txid(a) and conf[0]["block"] == blk.hash_hex
    for i in got:
        assert bodies[i]["webhook"] == hid and bodies[i]["id"] == i
    s = settled(e, hid, got[-1])
    assert s["delivered"] == len(got)
    assert s["failing"] is False and s["attempts"] == 0 and s["keys"] == [key]
    assert "secret" not in s
    # deleted: gone, its watches released
    assert api(e.port, "DELETE", "/v1/webhooks/%d" % hid)[0] == 200
    assert api(e.port, "GET", "/v1/webhooks/%d" % hid)[0] == 404
    assert psql(e.pg, e.db, "SELECT count(*) FROM watch_owners WHERE owner = 'hook:%d';"
                % hid)[0][0] == "0"


def test_retries_5xx_then_timeouts_then_delivered(env):
    e = env
    recover = threading.Event()

    def mode(n):
        if recover.is_set():
            return "ok"
        return "500" if n < 2 else "hang"

    rc = Receiver(mode)
    start_id = max_event(e)
    hid = register(e, rc, kinds=["tip"])
    e.node.mine(2)
    sync(e)
    # 500, 500, then timeouts: after 3 failed attempts in a row the
    # registration is shown failing (and nothing is dropped)
    wait_until(lambda: status(e, hid)["failing"], e.d, "failing status")
    s = status(e, hid)
    assert s["attempts"] >= 3 and s["failures"] >= 3 and s["next_attempt"]
    assert s["delivered"] == 0 and s["last_delivered_event"] is None
    wait_until(lambda: sum(r["answer"] == "hang" for r in rc.requests) >= 1, e.d, "a timeout")
    assert "timeout" in status(e, hid)["last_error"]
    recover.set()
    rc.hang.set()
    want = [i for i, k, _ in events_after(e, start_id) if k == "tip"]
    assert len(want) == 2
    wait_delivered(e, rc, want)
    assert rc.delivered() == want
    first = [r["answer"] for r in rc.requests if r["id"] == want[0]]
    assert first[:2] == ["500", "500"] and "hang" in first and first[-1] == "ok"
    s = settled(e, hid, want[-1])
    assert s["failing"] is False and s["attempts"] == 0 and s["failing_since"] is None
    assert s["failures"] >= 3 and s["delivered"] == 2
    assert api(e.port, "DELETE", "/v1/webhooks/%d" % hid)[0] == 200


def test_receiver_down_then_backlog(env):
    e = env
    rc = Receiver()
    start_id = max_event(e)
    hid = register(e, rc, kinds=["tip"])
    rc.down()
    e.node.mine(3)
    sync(e)
    wait_until(lambda: status(e, hid)["failures"] >= 1, e.d, "a failed attempt")
    assert status(e, hid)["delivered"] == 0
    rc.up()
    want = [i for i, k, _ in events_after(e, start_id) if k == "tip"]
    assert len(want) == 3
    wait_delivered(e, rc, want)
    assert rc.delivered() == want
    assert api(e.port, "DELETE", "/v1/webhooks/%d" % hid)[0] == 200


def test_kill_9_mid_backlog_loses_nothing(env):
    e = env
    rc = Receiver(delay=0.3)
    start_id = max_event(e)
    hid = register(e, rc, kinds=["tip"])
    rc.down()
    e.node.mine(6)
    sync(e)
    want = [i for i, k, _ in events_after(e, start_id) if k == "tip"]
    assert len(want) == 6
    rc.up()
    wait_until(lambda: len(rc.delivered()) >= 2, e.d, "two deliveries")
    healthy(e)
    e.d.kill()  # SIGKILL: no clean-up; the children see the controller gone
    start_daemon(e)
    wait_delivered(e, rc, want)
    assert rc.delivered() == want  # first occurrences in order; a repeat is allowed
    settled(e, hid, want[-1])
    assert api(e.port, "DELETE", "/v1/webhooks/%d" % hid)[0] == 200


BAD = [
    ({"url": "ftp://127.0.0.1/x", "kinds": ["tip"]}, "http://"),
    ({"url": "https://127.0.0.1/x", "kinds": ["tip"]}, "TLS"),
    ({"url": "not a url", "kinds": ["tip"]}, "url"),
    ({"url": "http://u:p@127.0.0.1/x", "kinds": ["tip"]}, "user"),
    ({"url": "http://127.0.0.1/x", "keys": ["xyz"]}, "keys[0]"),
    ({"url": "http://127.0.0.1/x", "keys": ["00" * 32, "zz" * 32]}, "keys[1]"),
    ({"url": "http://127.0.0.1/x", "outpoints": [{"txid": "00" * 32}]}, "outpoints[0]"),
    ({"url": "http://127.0.0.1/x", "outpoints": [{"txid": "00" * 32, "vout": -1}]},
     "outpoints[0]"),
    ({"url": "http://127.0.0.1/x", "kinds": ["key"]}, "keys"),
    ({"url": "http://127.0.0.1/x", "kinds": ["block"]}, "kinds[0]"),
    ({"url": "http://127.0.0.1/x"}, "nothing to deliver"),
    ({"url": "http://127.0.0.1/x", "kinds": ["tip"], "extra": 1}, "unknown field"),
    ([1, 2], "JSON object"),
]


def test_bad_registrations(env):
    e = env
    n_before = psql(e.pg, e.db, "SELECT count(*) FROM webhooks;")[0][0]
    for body, words in BAD:
        st, doc = api(e.port, "POST", "/v1/webhooks", body)
        assert st == 400 and doc["code"] == "bad_request", (body, st, doc)
        assert words in doc["error"], (body, doc)
    st, doc = api(e.port, "POST", "/v1/webhooks", b"{not json")
    assert st == 400 and "JSON" in doc["error"]
    ok = {"url": "http://127.0.0.1:9/x", "kinds": ["tip"]}
    st, doc = api(e.port, "POST", "/v1/webhooks", ok, headers={})
    assert st == 401 and doc["code"] == "unauthorized" and "Authorization" in doc["error"]
    st, doc = api(e.port, "POST", "/v1/webhooks", ok, headers={"Authorization": "Bearer nope"})
    assert st == 401 and "unknown API key" in doc["error"]
    assert api(e.port, "GET", "/v1/webhooks", headers={})[0] == 401
    assert api(e.port, "GET", "/v1/webhooks/abc")[0] == 404
    assert api(e.port, "GET", "/v1/webhooks/0")[0] == 404  # not the list
    assert api(e.port, "GET", "/v1/webhooks/-1")[0] == 404
    assert api(e.port, "GET", "/v1/webhooks/999999")[0] == 404
    assert api(e.port, "DELETE", "/v1/webhooks/999999")[0] == 404
    st, doc = api(e.port, "PUT", "/v1/webhooks", ok)
    assert st == 405
    assert psql(e.pg, e.db, "SELECT count(*) FROM webhooks;")[0][0] == n_before
    # the daemon logged who sent the unknown key, and still serves
    e.d.wait_for_log(r"webhook: a request with an unknown API key from 127\.0\.0\.1")
    assert api(e.port, "GET", "/v1/webhooks")[0] == 200


def test_cli_webhook_add_list_rm(env):
    """conduit-cli webhook: the same checks and rows as the HTTP routes; the
    delivery process picks a registration up and delivers to it."""
    e = env
    args = ["--regtest", "--pg-conninfo", e.ci]
    p = cli(e.build_dir, ["webhook", "add", "http://127.0.0.1:9/x", "--key", "xyz"] + args,
            check=False)
    assert p.returncode == 2 and b"keys[0]: expected 64 hex digits" in p.stderr, p.stderr
    p = cli(e.build_dir, ["webhook", "add", "https://127.0.0.1/x", "--kind", "tip"] + args,
            check=False)
    assert p.returncode == 2 and b"TLS" in p.stderr
    rc = Receiver()
    start_id = max_event(e)
    p = cli(e.build_dir, ["webhook", "add", rc.url, "--kind", "tip", "--outpoint",
                          "00" * 32 + ":3"] + args)
    out = dict(line.split(" ", 1) for line in p.stdout.decode().splitlines())
    hid, rc.secret = int(out["id"]), out["secret"]
    assert len(rc.secret) == 64
    s = status(e, hid)
    assert s["url"] == rc.url and s["kinds"] == ["tip"]
    assert s["outpoints"] == [{"txid": "00" * 32, "vout": 3}]
    listed = cli(e.build_dir, ["webhook", "list", "--json"] + args).stdout.decode()
    assert [json.loads(x)["id"] for x in listed.splitlines()] == [hid]
    assert rc.secret not in listed
    e.node.mine(1)
    sync(e)
    want = [i for i, k, _ in events_after(e, start_id) if k == "tip"]
    wait_delivered(e, rc, want)
    assert cli(e.build_dir, ["webhook", "rm", str(hid)] + args).stdout == b"deleted %d\n" % hid
    p = cli(e.build_dir, ["webhook", "rm", str(hid)] + args, check=False)
    assert p.returncode == 1 and b"no webhook" in p.stderr
    assert api(e.port, "GET", "/v1/webhooks/%d" % hid)[0] == 404


def emit(e, kind, body_sql, n=1):
    """Synthetic events through the log's one writer (cd_emit)."""
    psql(e.pg, e.db, "SELECT count(cd_emit('%s', %s)) FROM generate_series(1, %d) g;"
         % (kind, body_sql, n))
    return max_event(e)


def test_long_quiet_stretch_then_retention(env):
    """A registration that matches nothing for more than 200,000 events
    (20 windows of the log per query) still gets the next match; events the
    retention deletes before delivery are counted in `lost`, never skipped
    silently. Runs last: it writes synthetic events and prunes the log."""
    e = env
    rc = Receiver()
    hid = register(e, rc, kinds=["reorg"])
    emit(e, "tip", "json_build_object('height', -g, 'hash', 'synthetic')", 205000)
    first = emit(e, "reorg", "json_build_object('synthetic', 1)")
    wait_delivered(e, rc, [first])
    assert rc.delivered() == [first]
    assert settled(e, hid, first)["cursor"] == first
    # receiver down; an event waits, then the retention removes it
    rc.down()
    gone = emit(e, "reorg", "json_build_object('synthetic', 2)")
    wait_until(lambda: status(e, hid)["failures"] >= 1, e.d, "a failed attempt")
    # the prune and the read in one transaction: the delivery keeps retrying
    # the down receiver and its next failure overwrites last_error (CI once
    # read "connection failed" here); the row lock makes it wait for COMMIT
    rows = psql(e.pg, e.db, "BEGIN; SELECT cd_events_prune('0 seconds'); "
                            "SELECT lost, last_error FROM webhooks WHERE id = %d; COMMIT;" % hid)
    lost, err = rows[-1]
    assert lost == "1" and "retention" in err, rows
    assert status(e, hid)["lost"] == 1
    rc.up()
    last = emit(e, "reorg", "json_build_object('synthetic', 3)")
    wait_delivered(e, rc, [last])
    got = rc.delivered()
    assert got[0] == first and got[-1] == last and set(got) <= {first, gone, last}
    assert api(e.port, "DELETE", "/v1/webhooks/%d" % hid)[0] == 200
