"""ConduitDB's notification registrations and its /ws websocket, replayed with ConduitDB's
own expectations (issue 16; docs/CONDUITDB_API.md).

As ConduitDB's test_01 does, the registrations come first: conduitd indexes
../shared/data/regtest/blockchain_116_7c9cd2 up to height 110 only (every registered outpoint is
spent, and every registered key matched, at 111..116), then the 19 outpoints of utxo_spends.json
and the 5 keys of pushdata_registrations.json are registered through the HTTP routes, two
websocket clients connect (a ConduitDB one: bare 104-byte spend frames; a conduitd one with
?notifications=all: also tip-filter matches as JSON), and the node delivers 111..116. Each
client must receive each spend exactly once, with the spending tx and block of the chain
files, and the 5 matches of expected_tip_filter_results.json. The daemon is then restarted
(the registrations are rows: they survive), the clients reconnect, and the node reorganises
to blockchain_118_0ebc17 (fork at 110): the matches and spends of the blocks that left are
reported as orphaned, then every spend and match is notified again from block 116'.
Registration routes are also checked for ConduitDB's errors, expiry and bad input.

The websocket client is tests/functional/ws_client.py (standard library, RFC 6455).
The module shares one daemon; the tests run in file order.
"""

import contextlib
import json
import os
import socket
import struct
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "conduitdb")
sys.path.insert(0, HERE)
sys.path.insert(0, DATA)

import check_expectations as ce  # noqa: E402
from daemon_util import Daemon  # noqa: E402
from test_index import create_db, psql  # noqa: E402
from test_index_daemon import wait_tip  # noqa: E402
from tests.simnode import SimNode  # noqa: E402
from ws_client import WS  # noqa: E402

PRE = "regtest/blockchain_116_7c9cd2"
POST = "regtest/blockchain_118_0ebc17"
FORK = 110
JSON_CT = {"Content-Type": "application/json"}
BIN_CT = {"Content-Type": "application/octet-stream"}
WAIT = 300   # s: a hang guard only, never a performance threshold


def load(name):
    return json.load(open(os.path.join(DATA, name)))


def req(port, path, headers=None, method="GET", body=None, timeout=120):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {},
                               method=method, data=body)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.reason, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.reason, e.headers, e.read()


def expect_error(port, path, code, body, headers=None, contains=None):
    st, reason, hdr, data = req(port, path, headers, "POST", body)
    assert st == code, (path, st, reason, data[:300])
    assert data.decode() == "%d: %s" % (code, reason), (reason, data[:300])
    if contains:
        assert contains in reason, reason
    return reason


def spend_record(payload):
    assert len(payload) == 104, len(payload)
    out_tx, out_idx, in_tx, in_idx, blk = struct.unpack(">32sI32sI32s", payload)
    return (ce.disp(out_tx), out_idx, ce.disp(in_tx), in_idx,
            None if blk == bytes(32) else ce.disp(blk))


class Collector:
    """What one client received: spend records and JSON messages."""

    def __init__(self, ws):
        self.ws = ws
        self.spends = []
        self.texts = []

    def pump(self, until, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while not until(self):
            left = deadline - time.monotonic()
            assert left > 0, (len(self.spends), self.texts[-5:])
            m = self.ws.recv_message(min(left, 1.0))
            if m is None:
                continue
            assert m[0] != "close", m
            op, payload = m
            if op == 0x2:
                self.spends.append(spend_record(payload))
            else:
                assert op == 0x1, op
                self.texts.append(json.loads(payload))

    def quiet(self, secs=2.0):
        """Nothing more arrives (no duplicate after the expected messages)."""
        m = self.ws.recv_message(secs)
        assert m is None, m


def matches_of(texts, orphaned):
    out = []
    for t in texts:
        if "entries" not in t or bool(t.get("orphaned")) != orphaned:
            continue
        for e in t["entries"]:
            for m in e["matches"]:
                out.append((t["blockId"], e["accountId"], m["pushDataHashHex"],
                            m["transactionId"], m["transactionIndex"], m["flags"]))
    return out


def orphaned_spends(texts):
    return [(t["blockId"], tuple(r)) for t in texts if "outputSpends" in t for r in
            t["outputSpends"]]


class Env:
    pass


def http_port(d, start=0):
    import re  # noqa: F401
    m = d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=60, start=start)
    return int(m.group(1))


@contextlib.contextmanager
def chain_env(pg, build_dir, shared_data, tmp_path_factory, db, tag, daemon_args=()):
    """The daemon of this module and of test_conduitdb_outbound.py: the simulated node holding
    PRE up to FORK, a fresh database `db`, conduitd indexing it with its HTTP API (more options:
    daemon_args). Yields an Env (pg, shared, pre, post, pre_hashes, post_hashes, node, ci, db,
    datadir, d, port) once the tip is at FORK; on leaving, stops the daemon and the node and
    keeps the daemon's log beside its data directory (tmp dir `tag`)."""
    e = Env()
    e.pg = pg
    e.shared = shared_data
    e.pre = ce.Chain(os.path.join(shared_data, PRE))
    e.post = ce.Chain(os.path.join(shared_data, POST))
    e.pre_hashes = open(os.path.join(shared_data, PRE, "headers.txt")).read().split()
    e.post_hashes = open(os.path.join(shared_data, POST, "headers.txt")).read().split()
    e.node = SimNode()
    for h in e.pre_hashes[1:FORK + 1]:
        e.node.chain.load_block_file(os.path.join(shared_data, PRE, h), connect=True,
                                     expect_hash=ce.undisp(h))
    e.node.start()
    e.ci = create_db(pg, db)
    e.db = db
    e.datadir = str(tmp_path_factory.mktemp(tag) / "d")
    e.d = Daemon(build_dir, e.datadir,
                 ["--regtest", "--connect", "127.0.0.1:%d" % e.node.port,
                  "--pg-conninfo", e.ci, "--parser-workers", "2", "--ring-size", "16M",
                  "--unit-size", "1M", "--http-listen", "127.0.0.1:0", "--log-level", "info"]
                 + list(daemon_args))
    e.d.start()
    try:
        e.port = http_port(e.d)
        wait_tip(pg, e.db, e.d, FORK, timeout=WAIT)
        yield e
    finally:
        e.d.stop()
        e.node.stop()
        with open(os.path.join(os.path.dirname(e.datadir), "daemon.log"), "w") as f:
            f.write(e.d.log_text())


@pytest.fixture(scope="module")
def env(pg_module, build_dir, shared_data, tmp_path_factory):
    with chain_env(pg_module, build_dir, shared_data, tmp_path_factory, "cdbnotify",
                   "cdbn") as e:
        e.clients = []
        try:
            yield e
        finally:
            for c in e.clients:
                c.ws.close()


def connect_block_files(node, path, hashes):
    with node.lock:
        joined = [node.chain.load_block_file(os.path.join(path, h), connect=True,
                                             expect_hash=ce.undisp(h)) for h in hashes]
        relay = node._switched([], joined)
    node._relay(relay)
    node._announce()


def filter_path(account, created):
    return "/api/v1/transaction/filter?account_id=%d&date_created=%d" % (account, created)


# ---- registrations ----

def test_filter_registration_errors(env):
    p, now = env.port, int(time.time())
    key = "aa" * 32
    body = json.dumps([[key, 6000]]).encode()
    expect_error(p, "/api/v1/transaction/filter?date_created=%d" % now, 400, body, JSON_CT,
                 "`account_id` is not a number")
    expect_error(p, "/api/v1/transaction/filter?account_id=7", 400, body, JSON_CT,
                 "`date_created` is not a number")
    expect_error(p, "/api/v1/transaction/filter?account_id=99999999999999999999&date_created=%d"
                 % now, 400, body, JSON_CT, "`account_id` is not a number")
    expect_error(p, filter_path(7, now), 400, json.dumps([[key, 299]]).encode(), JSON_CT,
                 "An entry has a duration of 299 which is lower than the minimum value 300")
    expect_error(p, filter_path(7, now), 400, json.dumps([[key, 604801]]).encode(), JSON_CT,
                 "An entry has a duration of 604801 which is higher than the maximum value 604800")
    expect_error(p, filter_path(7, now), 400, body,
                 {"Content-Type": "application/json", "Accept": "application/octet-stream"},
                 "only json response body supported")
    expect_error(p, filter_path(7, now), 400, body, {"Content-Type": "text/plain"},
                 "only binary or json request body supported")
    expect_error(p, filter_path(7, now), 400, b"\0" * 35, BIN_CT, "binary request body malformed")
    expect_error(p, filter_path(7, now), 400, b"[[", JSON_CT, "malformed JSON")
    expect_error(p, filter_path(7, now), 400, b"", JSON_CT, "no body")
    expect_error(p, filter_path(7, now), 400, json.dumps([["zz" * 32, 600]]).encode(), JSON_CT,
                 "one or more payload entries are incorrect")
    expect_error(p, filter_path(7, now), 400,
                 json.dumps([["aa" * 32, 600]] * 10001).encode(), JSON_CT, "too many")
    # nothing of the refused requests was registered
    assert psql(env.pg, env.db, "SELECT count(*) FROM cdb_tip_filters") == [("0",)]


def test_register(env):
    p, now = env.port, int(time.time())
    regs = load("pushdata_registrations.json")["PUSHDATAS"]
    st, _, hdr, body = req(p, filter_path(1, now), JSON_CT, "POST", json.dumps(regs).encode())
    assert st == 200, body
    assert hdr["Content-Type"] == "application/json; charset=utf-8"
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    assert json.loads(body) == {"dateCreated": iso}
    # a second registration of any of them: refused, all or nothing
    extra = [["cc" * 32, 600]] + regs[:1]
    expect_error(p, filter_path(1, now), 400, json.dumps(extra).encode(), JSON_CT,
                 "one or more hashes were already registered")
    assert psql(env.pg, env.db, "SELECT count(*) FROM cdb_tip_filters WHERE push_hash = "
                "'\\x%s'" % ("cc" * 32)) == [("0",)]
    # the same keys for another account, in the binary form (key natural order, u32 BE)
    binbody = b"".join(bytes.fromhex(k) + struct.pack(">I", d) for k, d in regs)
    st, _, _, body = req(p, filter_path(2, now), BIN_CT, "POST", binbody)
    assert st == 200, body
    rows = psql(env.pg, env.db, "SELECT account_id, encode(push_hash, 'hex'), "
                "extract(epoch FROM expires_at)::bigint - date_created FROM cdb_tip_filters "
                "ORDER BY 1, 2")
    assert rows == sorted([(str(a), k, str(d)) for a in (1, 2) for k, d in regs])
    # each registration holds a watch of the event log, per account
    owners = psql(env.pg, env.db, "SELECT count(*) FROM watch_owners "
                  "WHERE owner LIKE 'cdb:tipfilter:%'")
    assert owners == [("10",)]
    # delete account 2's, binary: 32-byte entries at offsets 0, 32, ... (ConduitDB's bug 19)
    dele = "/api/v1/transaction/filter:delete?account_id=2"
    expect_error(p, dele, 400, bytes.fromhex("dd" * 32), BIN_CT,
                 "some pushdata hashes are not registered")
    expect_error(p, dele, 400, b"\0" * 33, BIN_CT, "binary request body malformed")
    expect_error(p, dele, 400, b"[]", JSON_CT, "no pushdata hashes provided")
    st, _, _, body = req(p, dele, BIN_CT, "POST", b"".join(bytes.fromhex(k) for k, _ in regs))
    assert st == 200 and body == b"", body
    assert psql(env.pg, env.db, "SELECT DISTINCT account_id FROM cdb_tip_filters") == [("1",)]
    assert psql(env.pg, env.db, "SELECT count(*) FROM watch_owners "
                "WHERE owner = 'cdb:tipfilter:2'") == [("0",)]
    # the keys stay watched for account 1
    assert psql(env.pg, env.db, "SELECT count(*) FROM watched_keys w JOIN cdb_tip_filters f "
                "ON f.push_hash = w.push_hash") == [("5",)]


def test_expiry(env):
    p, now = env.port, int(time.time())
    key = "ee" * 32
    # created 400 s ago for 300 s: dead on arrival, invisible to delete, replaced by a new one
    st, _, _, body = req(p, filter_path(3, now - 400), JSON_CT, "POST",
                         json.dumps([[key, 300]]).encode())
    assert st == 200, body
    expect_error(p, "/api/v1/transaction/filter:delete?account_id=3", 400,
                 json.dumps([key]).encode(), JSON_CT, "some pushdata hashes are not registered")
    st, _, _, body = req(p, filter_path(3, now), JSON_CT, "POST",
                         json.dumps([[key, 300]]).encode())
    assert st == 200, body
    # the sweep (every minute on HTTP server 0) drops expired rows and their watches
    psql(env.pg, env.db, "UPDATE cdb_tip_filters SET expires_at = now() - interval '1 s' "
         "WHERE account_id = 3")
    assert psql(env.pg, env.db, "SELECT cdb_expire()") == [("1",)]
    assert psql(env.pg, env.db, "SELECT count(*) FROM watch_owners "
                "WHERE owner = 'cdb:tipfilter:3'") == [("0",)]
    assert psql(env.pg, env.db, "SELECT count(*) FROM watched_keys "
                "WHERE push_hash = '\\x%s'" % key) == [("0",)]


def test_register_outpoints(env):
    p = env.port
    utxos = load("utxo_spends.json")["UTXO_REGISTRATIONS"]
    sp = "/api/v1/output-spend/notifications"
    expect_error(p, sp, 400, b"{}", JSON_CT, "payload is not a list")
    expect_error(p, sp, 400, b"\0" * 35, BIN_CT, "binary request body malformed")
    expect_error(p, sp, 400, json.dumps([["aa" * 32, 2 ** 31]]).encode(), JSON_CT,
                 "out of range")
    # at height 110 none of them is spent yet: the answer (current spends) is empty
    st, _, hdr, body = req(p, sp, JSON_CT, "POST", json.dumps(utxos).encode())
    assert st == 200 and json.loads(body) == [], body
    # binary register + unregister of another outpoint; the registered ones stay
    other = bytes.fromhex("ab" * 32) + struct.pack(">I", 3)
    st, _, hdr, body = req(p, sp, {**BIN_CT, "Accept": "application/octet-stream"}, "POST",
                           other)
    assert st == 200 and body == b"" and hdr["Content-Type"] == "application/octet-stream"
    st, _, _, body = req(p, sp + ":unregister", BIN_CT, "POST", other)
    assert st == 200 and body == b""
    rows = psql(env.pg, env.db, "SELECT count(*) FROM cdb_spend_watches")
    assert rows == [(str(len(utxos)),)]
    assert psql(env.pg, env.db, "SELECT count(*) FROM watched_outpoints w JOIN "
                "cdb_spend_watches c USING (prev_hash, prev_idx)") == [(str(len(utxos)),)]


# ---- bad input on every ConduitDB POST route ----

POST_ROUTES = ["/api/v1/restoration/search", "/api/v1/restoration/search_p2pkh",
               "/api/v1/output-spend", "/api/v1/output-spend/notifications",
               "/api/v1/output-spend/notifications:unregister",
               "/api/v1/transaction/filter?account_id=5&date_created=%d" % int(time.time()),
               "/api/v1/transaction/filter:delete?account_id=5"]


def post_raw(port, path, body, send, ctype="application/json"):
    """POST with the whole body's Content-Length but only `send` bytes of it: (status
    line, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
        c.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n"
                  b"Content-Length: %d\r\n\r\n" % (path.encode(), ctype.encode(), len(body)))
        try:
            c.sendall(body[:send])
        except OSError:
            pass                               # the server may answer and close first
        out = b""
        while True:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    head, _, data = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    return lines[0], hdrs, data


def http_rss_kb(env):
    pids = [int(m) for m in __import__("re").findall(r"http: server \d+ serving \(pid (\d+)\)",
                                                     env.d.log_text())[-4:]]
    total = 0
    for pid in pids:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def test_bad_input_every_post_route(env):
    p = env.port
    before = http_rss_kb(env)
    huge_keys = json.dumps({"filterKeys": ["bb" * 32] * 100000}).encode()     # 6.6 MB
    huge_filter = json.dumps([["bb" * 32, 600]] * 100000).encode()           # 7.5 MB
    ten_mb = b"x" * 10_000_000
    for route in POST_ROUTES:
        for body in (huge_keys if "restoration" in route else huge_filter, ten_mb):
            # refused from the Content-Length before the body is read (only 64 KB sent),
            # in ConduitDB's error format (reason + "<code>: <reason>"), connection closed
            status, hdrs, data = post_raw(p, route, body, send=65536)
            assert status.startswith("HTTP/1.1 413 request body of %d bytes is too large"
                                     % len(body)), (route, status)
            assert data.decode() == "413: " + status.split(" ", 2)[2], data[:200]
            assert hdrs["content-type"].startswith("text/plain")
            assert hdrs.get("connection", "").lower() == "close"
        # malformed JSON: 400 with the parser's reason, nothing registered
        ctype = {"Content-Type": "application/json"}
        assert expect_error(p, route, 400, b'[["aa", ', ctype)
    # a wrong content type where ConduitDB checks it
    for route in POST_ROUTES[2:]:
        expect_error(p, route, 400, b"[]", {"Content-Type": "text/html"})
    # 100k entries that fit the body cap in binary form: 400 (10,000 at most per request)
    many = b"\0" * (36 * 20000)
    for route in POST_ROUTES[2:6]:
        assert "too many" in expect_error(p, route, 400, many, BIN_CT), route
    # conduitd's own API: the same cap, its JSON error format
    status, hdrs, data = post_raw(p, "/v1/tx", ten_mb, send=65536)
    assert status.startswith("HTTP/1.1 413"), status
    assert hdrs["content-type"].startswith("application/json")
    assert json.loads(data)["code"] == "too_large"
    # nothing of the bodies was kept; the servers go on, the refusals are logged
    assert http_rss_kb(env) - before < 16384
    assert req(p, "/")[3] == b"true"
    assert "413 request body of 10000000 bytes is too large" in env.d.log_text()
    assert psql(env.pg, env.db, "SELECT count(*) FROM cdb_tip_filters WHERE account_id = 5") \
        == [("0",)]


# ---- notifications over /ws ----

def expected_spends(chain):
    out = set()
    for txid, idx in load("utxo_spends.json")["UTXO_REGISTRATIONS"]:
        tx, in_idx, blk = chain.spender[(ce.undisp(txid), idx)]
        out.add((txid, idx, ce.disp(tx.txid), in_idx, ce.disp(blk.hash)))
    return out


def expected_matches(chain, account=1):
    exp = load("expected_tip_filter_results.json")["PUSHDATA_TO_OUTPOINT_MAP"]
    out = set()
    for key, (txid, idx) in exp.items():
        blk = chain.tx_index[ce.undisp(txid)][0]
        out.add((ce.disp(blk.hash), account, key, txid, idx, 1))
    return out


def test_ws_refuses_bad_requests(env):
    st, reason, _, _ = req(env.port, "/ws")             # not a websocket handshake
    assert st == 400
    st, reason, _, _ = req(env.port, "/ws?notifications=bogus")
    assert st == 400 and "notifications" in reason
    # a message from the client closes the socket, as ConduitDB does
    ws = WS(env.port, "/ws")
    ws.send_frame(0x1, b"hello")
    m = ws.recv_message(30)
    assert m and m[0] == "close" and m[1][0] == 1008, m
    ws.close()


def test_ws_pre_reorg(env):
    plain = Collector(WS(env.port, "/ws"))
    full = Collector(WS(env.port, "/ws?notifications=all"))
    mine = Collector(WS(env.port, "/ws?notifications=all&account_id=99"))
    env.clients += [plain, full, mine]
    connect_block_files(env.node, os.path.join(env.shared, PRE), env.pre_hashes[FORK + 1:])
    wait_tip(env.pg, env.db, env.d, 116, timeout=WAIT)
    want = expected_spends(env.pre)
    assert len(want) == 19
    plain.pump(lambda c: len(c.spends) >= 19)
    full.pump(lambda c: len(c.spends) >= 19 and len(matches_of(c.texts, False)) >= 5)
    mine.pump(lambda c: len(c.spends) >= 19)
    for c in (plain, full, mine):
        c.quiet()
        assert len(c.spends) == 19 and set(c.spends) == want, sorted(set(c.spends) ^ want)
    assert plain.texts == []                  # ConduitDB's socket: binary spend frames only
    assert sorted(matches_of(full.texts, False)) == sorted(expected_matches(env.pre))
    assert mine.texts == []                   # account 99 registered nothing


def test_restart_keeps_registrations(env):
    for c in env.clients:
        c.ws.close()
    env.clients.clear()
    n = len(env.d.lines)
    env.d.stop()
    env.d.start()
    env.port = http_port(env.d, start=n)
    assert psql(env.pg, env.db, "SELECT count(*) FROM cdb_spend_watches") == [("19",)]
    assert psql(env.pg, env.db, "SELECT count(*) FROM cdb_tip_filters "
                "WHERE expires_at > now()") == [("5",)]


def test_ws_reorg_to_118(env):
    plain = Collector(WS(env.port, "/ws"))
    full = Collector(WS(env.port, "/ws?notifications=all"))
    env.clients += [plain, full]
    node, hashes = env.node, open(os.path.join(env.shared, POST, "headers.txt")).read().split()
    with node.lock:
        gone = node.chain.rewind(FORK)
        joined = [node.chain.load_block_file(os.path.join(env.shared, POST, h), connect=True,
                                             expect_hash=ce.undisp(h))
                  for h in hashes[FORK + 1:]]
        relay = node._switched(gone, joined)
    node._relay(relay)
    node._announce()
    wait_tip(env.pg, env.db, env.d, 118, timeout=WAIT)
    want = expected_spends(env.post)
    plain.pump(lambda c: len(c.spends) >= 19)
    full.pump(lambda c: len(c.spends) >= 19 and len(matches_of(c.texts, False)) >= 5
              and len(matches_of(c.texts, True)) >= 5 and len(orphaned_spends(c.texts)) >= 19)
    for c in (plain, full):
        c.quiet()
        assert set(c.spends) == want and len(c.spends) == 19, sorted(set(c.spends) ^ want)
    assert plain.texts == []
    assert sorted(matches_of(full.texts, False)) == sorted(expected_matches(env.post))
    # what left the best chain: the pre-reorg matches and spends, with their old blocks
    assert sorted(matches_of(full.texts, True)) == sorted(expected_matches(env.pre))
    old = {(b, (o, oi, i, ii, b)) for (o, oi, i, ii, b) in expected_spends(env.pre)}
    assert set(orphaned_spends(full.texts)) == old
    assert len(orphaned_spends(full.texts)) == 19
    # orphaned news comes before the new chain's (event order)
    first_new = min(i for i, t in enumerate(full.texts) if not t.get("orphaned"))
    assert all(t.get("orphaned") for t in full.texts[:first_new])


def test_unregister_all(env):
    sp = "/api/v1/output-spend/notifications:unregister"
    st, _, _, body = req(env.port, sp, JSON_CT, "POST", json.dumps([["00" * 32, 0]]).encode())
    assert st == 200
    assert psql(env.pg, env.db, "SELECT count(*) FROM cdb_spend_watches") == [("0",)]
    assert psql(env.pg, env.db, "SELECT count(*) FROM watch_owners "
                "WHERE owner = 'cdb:spend'") == [("0",)]


# ---- a burst larger than a client's output cap ----

def test_burst_is_paced_not_cut(pg_module, build_dir, tmp_path):
    """10 blocks of 200 txs spending registered outpoints and matching registered keys: ~8,000
    notices, several MB of frames, far more than the 1 MiB a client may have unread. The server
    feeds each client from the event log only while its queue has room, so a client that reads
    (slowly, with a small receive buffer) gets every notice once and is not cut off. (Before:
    the whole burst was queued at once and the client was closed 'too slow'.)"""
    from simnode_fixtures import SimNodeProcess
    node = SimNodeProcess("--regtest", "--generate", "110", "--txs-per-block", "50")
    ci = create_db(pg_module, "cdbburst")
    d = Daemon(build_dir, str(tmp_path / "d"),
               ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                "--parser-workers", "2", "--ring-size", "16M", "--unit-size", "1M",
                "--http-listen", "127.0.0.1:0", "--log-level", "info"]).start()
    ws = None
    try:
        port = http_port(d)
        wait_tip(pg_module, "cdbburst", d, 110, timeout=WAIT)
        ops = [r for r in psql(pg_module, "cdbburst",
                               "SELECT DISTINCT cd_txid_hex(p.tx_hash), p.idx FROM best_pushdata p "
                               "WHERE p.flags = 1 AND NOT EXISTS (SELECT 1 FROM inputs i WHERE "
                               "i.prev_hash = p.tx_hash AND i.prev_idx = p.idx)")]
        st, _, _, body = req(port, "/api/v1/output-spend/notifications", JSON_CT, "POST",
                             json.dumps([[t, int(i)] for t, i in ops]).encode())
        assert st == 200, body
        keys = [k for (k,) in psql(pg_module, "cdbburst", "SELECT DISTINCT encode(push_hash, "
                                   "'hex') FROM pushdata WHERE flags = 1")]
        st, _, _, body = req(port, filter_path(1, int(time.time())), JSON_CT, "POST",
                             json.dumps([[k, 3600] for k in keys]).encode())
        assert st == 200, body
        ws = WS(port, "/ws?notifications=all")
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        col = Collector(ws)
        node.control({"cmd": "mine", "n": 10, "txs_per_block": 200})
        wait_tip(pg_module, "cdbburst", d, 120, timeout=WAIT)
        want = int(psql(pg_module, "cdbburst", "SELECT count(*) FROM best_inputs i JOIN "
                        "cdb_spend_watches w USING (prev_hash, prev_idx) "
                        "WHERE i.height > 110")[0][0])
        want_m = int(psql(pg_module, "cdbburst", "SELECT count(*) FROM best_pushdata p JOIN "
                          "cdb_tip_filters f USING (push_hash) WHERE p.height > 110")[0][0])
        assert want > 1000 and (want * 104 + want_m * 150) > (1 << 20), (want, want_m)
        n_matches = lambda c: len(matches_of(c.texts, False))  # noqa: E731
        col.pump(lambda c: len(c.spends) >= want and n_matches(c) >= want_m)
        col.quiet()
        assert len(col.spends) == len(set(col.spends)) == want
        assert n_matches(col) == want_m
        assert "too slow" not in d.log_text()

        # a mempool spend (ConduitDB's bug 21: never delivered there): 32 zero bytes as the
        # block, then the same spend again with its block once mined
        made = node.control({"cmd": "make_tx"})
        raw = bytes.fromhex(made["hex"])
        tx = ce.Tx(raw, 0)
        ins = [(ce.disp(h), i) for h, i, _ in tx.inputs]
        st, _, _, body = req(port, "/api/v1/output-spend/notifications", JSON_CT, "POST",
                             json.dumps([[t, i] for t, i in ins]).encode())
        assert st == 200 and json.loads(body) == [], body      # not spent yet
        assert "txid" in node.control({"cmd": "add_tx", "hex": made["hex"]})
        col.spends.clear()
        col.pump(lambda c: len(c.spends) >= len(ins))
        assert sorted(col.spends) == sorted((t, i, made["txid"], n, None)
                                            for n, (t, i) in enumerate(ins))
        col.spends.clear()
        node.control({"cmd": "mine", "n": 1})
        col.pump(lambda c: len(c.spends) >= len(ins))
        blk = psql(pg_module, "cdbburst", "SELECT cd_txid_hex(block_hash) FROM best_transactions "
                   "WHERE tx_hash = cd_txid('%s')" % made["txid"])[0][0]
        assert sorted(col.spends) == sorted((t, i, made["txid"], n, blk)
                                            for n, (t, i) in enumerate(ins))

        # PostgreSQL restarts under the open websocket: the server's LISTEN session is lost
        # and retried; the client, still connected, gets the spends made after it
        pg_module.restart()
        made = node.control({"cmd": "make_tx"})
        tx = ce.Tx(bytes.fromhex(made["hex"]), 0)
        ins = [(ce.disp(h), i) for h, i, _ in tx.inputs]
        deadline = time.monotonic() + WAIT
        while True:   # the HTTP servers reconnect at most once a second
            st, _, _, body = req(port, "/api/v1/output-spend/notifications", JSON_CT, "POST",
                                 json.dumps([[t, i] for t, i in ins]).encode())
            if st == 200:
                break
            assert st == 503 and time.monotonic() < deadline, (st, body)
            time.sleep(0.5)
        assert "txid" in node.control({"cmd": "add_tx", "hex": made["hex"]})
        col.spends.clear()
        col.pump(lambda c: len(c.spends) >= len(ins))
        assert sorted(col.spends) == sorted((t, i, made["txid"], n, None)
                                            for n, (t, i) in enumerate(ins))
        assert "http: /ws: LISTEN session back" in d.log_text()
    finally:
        if ws:
            ws.close()
        d.stop()
        node.stop()
