"""The push-notification streams (issue 16; docs/EVENTS.md): GET /v1/events
(Server-Sent Events) and GET /v1/ws (a websocket), against a real daemon,
PostgreSQL and the simulated node. The clients use the standard library only
(the SSE client here, the websocket client in tests/functional/ws_client.py).

* Exactly once: an SSE client and a websocket client subscribed to a key
  and an outpoint follow a scenario with new blocks, mempool txs and a
  reorg; each disconnects and resumes with its token (and its subscription
  id), and both resume across a daemon restart by SIGKILL during which
  blocks are mined. What each received, concatenated over its connections,
  must equal the event log (table events, the source of truth) filtered by
  its subscription: no event missing, none twice, in id order.
* Back-pressure: a client that does not read is cut off with a reason (SSE
  `event: error`, websocket close 1008) and logged, while another client
  receives every event.
* 1000 idle websockets: their memory is measured (per connection, printed
  for docs/PERFORMANCE.md) and normal HTTP requests keep being answered.
* Malformed frames and handshakes: an unmasked frame, an oversize one, a bad
  opcode, a bad handshake: the right close code / status, and a log line.
* A resume point older than the log keeps (pruned): a clear error.
"""

import hashlib
import http.client
import json
import os
import re
import resource
import socket
import struct
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon  # noqa: E402
from test_index import create_db, psql  # noqa: E402
from test_reorg import mempool, mine_exact, txid, wait_relay, wait_tip, wait_until  # noqa: E402

from tests.simnode.protocol import parse_tx  # noqa: E402
from ws_client import WS  # noqa: E402


# ---- clients ----

class SSE:
    """An EventSource-like client: one GET /v1/events, events parsed from
    the text/event-stream body (http.client undoes the chunked encoding)."""

    def __init__(self, port, query="", last_id=None, timeout=60):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        self.conn.request("GET", "/v1/events" + query, headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.ctype = self.resp.getheader("Content-Type")

    def next(self):
        """The next event as (event, id, data dict); None at the end."""
        ev, eid, data = None, None, []
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if data or ev:
                    return ev, eid, json.loads("\n".join(data)) if data else None
                continue
            if line.startswith(":"):
                continue  # keep-alive comment
            k, _, v = line.partition(":")
            v = v[1:] if v.startswith(" ") else v
            if k == "event":
                ev = v
            elif k == "id":
                eid = v
            elif k == "data":
                data.append(v)

    def close(self):
        self.conn.close()


# ---- the daemon ----

def start(build_dir, datadir, node_port, ci, extra=()):
    args = ["--regtest", "--connect", "127.0.0.1:%d" % node_port, "--pg-conninfo", ci,
            "--parser-workers", "1", "--ring-size", "16M", "--unit-size", "64K",
            "--http-listen", "127.0.0.1:0", "--log-level", "info"] + list(extra)
    d = Daemon(build_dir, str(datadir), args).start()
    m = d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=60)
    d.port = int(m.group(1))
    for i in range(4):
        d.wait_for_log(r"http: server %d serving" % i, timeout=60)
    return d


def log_events(pg, db, after, kinds, key=None, op=None):
    """[(id, kind, body)] of the log after `after` that a subscription to
    kinds + key + outpoint op (txid, vout) receives."""
    rows = psql(pg, db, "SELECT id, kind, body::text FROM events WHERE id > %d ORDER BY id;"
                % after)
    out = []
    for i, k, b in rows:
        b = json.loads(b)
        if k not in kinds:
            continue
        if k == "key" and b.get("key") != key:
            continue
        if k == "spend" and (op is None or (b.get("txid"), b.get("vout")) != op):
            continue
        out.append((int(i), k, b))
    return out


class Tracker:
    """What one subscriber received over all its connections."""

    def __init__(self):
        self.got = []  # (id, kind, data)
        self.sub = None

    @property
    def last(self):
        return self.got[-1][0] if self.got else None

    def take(self, ev):
        assert ev["type"] == "event", ev
        self.got.append((int(ev["id"]), ev["kind"], ev["data"]))


def sse_until(t, s, n_total, d):
    """Reads SSE events into t until it holds n_total."""
    while len(t.got) < n_total:
        r = s.next()
        assert r is not None, "SSE stream ended:\n" + d.log_text()[-3000:]
        ev, eid, data = r
        assert ev != "error", data
        if ev == "subscribed":
            continue
        assert eid == data["id"] and ev == data["kind"], (ev, eid, data)
        t.take(data)


def ws_until(t, w, n_total, d):
    while len(t.got) < n_total:
        m = w.recv_json()
        assert isinstance(m, dict), ("closed", m, d.log_text()[-3000:])
        if m.get("type") == "subscribed":
            continue
        t.take(m)


def check(pg, db, t, start_id, kinds, key, op):
    want = log_events(pg, db, start_id, kinds, key, op)
    got = [(i, k, b) for i, k, b in t.got]
    assert [g[0] for g in got] == [w[0] for w in want], (got, want)
    assert got == want
    return want


KINDS = ["tip", "reorg", "key", "spend", "evict"]


def test_exactly_once_across_reconnects_reorg_and_restart(pg_module, build_dir,
                                                          simnode_factory, tmp_path):
    pg = pg_module
    node = simnode_factory(generate=12, txs_per_block=2, seed=31)
    ci = create_db(pg, "evs")
    d = start(build_dir, tmp_path / "d", node.port, ci)
    try:
        wait_tip(pg, "evs", d, node)
        wait_relay(d)
        start_id = int(psql(pg, "evs", "SELECT coalesce(max(id), 0) FROM events;")[0][0])
        # the tx the clients care about: spends `op`, pays a P2PKH whose key
        # (sha256 of the 20-byte hash) they subscribe to
        spend = node.spendable_outpoints(limit=1)[0]
        a = node.make_tx(spend=spend)
        _, _, outs = parse_tx(a, 0)
        key = hashlib.sha256(outs[0][1][3:23]).hexdigest()
        op = (spend[0][::-1].hex(), spend[1])
        opstr = "%s:%d" % op

        # the two subscribers, from the current end of the log
        ts, tw = Tracker(), Tracker()
        s = SSE(d.port, "?keys=%s&outpoints=%s&since=%d" % (key, opstr, start_id))
        assert s.status == 200 and s.ctype == "text/event-stream"
        ev, _, sub = s.next()
        assert ev == "subscribed" and sub["keys"] == 1 and sub["outpoints"] == 1, sub
        ts.sub = sub["sub"]
        w = WS(d.port, "/v1/ws")
        w.send_json({"op": "subscribe", "keys": [key], "outpoints": [opstr],
                "resume": str(start_id)})
        m = w.recv_json()
        assert m["type"] == "subscribed" and m["from"] == str(start_id), m
        tw.sub = m["sub"]
        assert ts.sub and tw.sub and ts.sub != tw.sub
        # durably registered, each by its own owner
        owners = psql(pg, "evs", "SELECT owner FROM watch_owners WHERE push_hash = "
                                 "decode('%s', 'hex') ORDER BY owner;" % key)
        assert sorted(o[0] for o in owners) == sorted(["sse:" + ts.sub, "sse:" + tw.sub])

        # mempool: key + spend events
        node.add_mempool_tx(a)
        wait_until(lambda: txid(a) in mempool(pg, "evs"), d, "tx in mempool")
        n = len(log_events(pg, "evs", start_id, KINDS, key, op))
        sse_until(ts, s, n, d)
        ws_until(tw, w, n, d)
        assert {(k, b.get("state")) for _, k, b in ts.got} >= {("key", "mempool"),
                                                              ("spend", "mempool")}

        # both go away; a block confirms the tx while they are away
        s.close()
        w.close()
        blk = mine_exact(node, [a])
        wait_tip(pg, "evs", d, node)
        h = node.chain.height

        # they come back with their tokens (SSE: Last-Event-ID + sub; ws:
        # resume + sub) and get what they missed, then live
        s = SSE(d.port, "?sub=%s" % ts.sub, last_id=ts.last)
        ev, _, sub = s.next()
        assert ev == "subscribed" and sub["sub"] == ts.sub and sub["keys"] == 1, sub
        w = WS(d.port, "/v1/ws")
        w.send_json({"op": "subscribe", "sub": tw.sub, "resume": tw.last})
        m = w.recv_json()
        assert m["type"] == "subscribed" and m["sub"] == tw.sub and m["outpoints"] == 1, m
        # a reorg: the block with the tx leaves the best chain
        node.reorg(fork_height=h - 1, new_len=2)
        wait_tip(pg, "evs", d, node)
        n = len(log_events(pg, "evs", start_id, KINDS, key, op))
        sse_until(ts, s, n, d)
        ws_until(tw, w, n, d)
        kinds_states = {(k, b.get("state")) for _, k, b in tw.got}
        assert ("key", "confirmed") in kinds_states and ("key", "orphaned") in kinds_states
        assert any(k == "reorg" for _, k, _ in tw.got)
        assert any(k == "tip" and b["hash"] == blk.hash_hex for _, k, b in tw.got)

        # the daemon is killed; blocks come while it is down; it restarts
        s.close()
        w.close()
        d.kill()
        node.mine(2)
        d = start(build_dir, tmp_path / "d", node.port, ci)
        wait_tip(pg, "evs", d, node)
        s = SSE(d.port, "?sub=%s" % ts.sub, last_id=ts.last)
        assert s.next()[0] == "subscribed"
        w = WS(d.port, "/v1/ws")
        w.send_json({"op": "subscribe", "sub": tw.sub, "resume": tw.last})
        assert w.recv_json()["type"] == "subscribed"
        n = len(log_events(pg, "evs", start_id, KINDS, key, op))
        sse_until(ts, s, n, d)
        ws_until(tw, w, n, d)
        # one more live event after the resume, to both
        node.mine(1)
        wait_tip(pg, "evs", d, node)
        n = len(log_events(pg, "evs", start_id, KINDS, key, op))
        sse_until(ts, s, n, d)
        ws_until(tw, w, n, d)
        s.close()
        w.close()

        # the whole story, exactly once each, in order
        want = check(pg, "evs", ts, start_id, KINDS, key, op)
        check(pg, "evs", tw, start_id, KINDS, key, op)
        assert [b["hash"] for _, k, b in want if k == "tip"][-1] == node.chain.tip.hash_hex
    finally:
        d.stop()


def test_slow_client_cut_off_others_unaffected(pg_module, build_dir, simnode_factory,
                                               tmp_path):
    pg = pg_module
    node = simnode_factory(generate=3, txs_per_block=0, seed=32)
    ci = create_db(pg, "evslow")
    d = start(build_dir, tmp_path / "d", node.port, ci,
              ["--events-max-output", "4096", "--events-stall-timeout", "2"])
    try:
        wait_tip(pg, "evslow", d, node)
        start_id = int(psql(pg, "evslow", "SELECT coalesce(max(id), 0) FROM events;")[0][0])
        # a websocket and an SSE stream that never read, with small buffers
        slow = WS(d.port, "/v1/ws", rcvbuf=4096)
        slow.send_json({"op": "subscribe", "kinds": ["evict"]})
        slow_sse = socket.create_connection(("127.0.0.1", d.port))
        slow_sse.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow_sse.sendall(b"GET /v1/events?kinds=evict HTTP/1.1\r\nHost: x\r\n\r\n")
        good = SSE(d.port, "?kinds=evict")
        assert good.next()[0] == "subscribed"
        # the reading client reads all along (its output is 4 KiB too)
        t = Tracker()
        reader = threading.Thread(target=sse_until, args=(t, good, 3000, d), daemon=True)
        reader.start()
        # a burst of events, about 1 MB: more than the slow clients' buffers
        psql(pg, "evslow", "SELECT count(cd_emit('evict', json_build_object('txid', "
                           "repeat('ab', 32), 'reason', 'bulk', 'n', g, 'pad', "
                           "repeat('x', 200)))) FROM generate_series(1, 3000) g;")
        # the slow websocket is cut off, with a log line naming it
        d.wait_for_log(r"events 127\.0\.0\.1:%d: not reading .*: cut off"
                       % slow.sock.getsockname()[1], timeout=120)
        # reading now: what was queued, then close 1008
        seen = 0
        while True:
            m = slow.recv_json()
            if isinstance(m, tuple):
                break
            if m.get("type") == "event":
                seen += 1
        assert m[0] == "close" and m[1] == 1008 and "not reading" in m[2], m
        assert seen < 3000
        # the slow SSE stream too; it ends with event: error (slow_client)
        d.wait_for_log(r"events 127\.0\.0\.1:%d: not reading .*: cut off"
                       % slow_sse.getsockname()[1], timeout=120)
        slow_sse.settimeout(60)
        data = b""
        while True:
            c = slow_sse.recv(65536)
            if not c:
                break
            data += c
        assert b"event: error" in data and b"slow_client" in data, data[-500:]
        slow.sock.close()
        slow_sse.close()
        # the reading client got every event, in order, once
        reader.join(timeout=300)
        assert not reader.is_alive() and len(t.got) == 3000, len(t.got)
        check(pg, "evslow", t, start_id, ["evict"], None, None)
        # the server still serves
        good.close()
        s2 = SSE(d.port, "?kinds=evict&since=%d" % t.last)
        assert s2.next()[0] == "subscribed"
        s2.close()
    finally:
        d.stop()


def rss_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def http_pids(d):
    pids = {}
    for i, p in re.findall(r"supervisor: started http worker (\d) \(pid (\d+)\)", d.log_text()):
        pids[int(i)] = int(p)
    return list(pids.values())


def test_1000_idle_websockets_and_malformed(pg_module, build_dir, simnode_factory, tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip("descriptor limit %d: 1000 websockets need more" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    pg = pg_module
    node = simnode_factory(generate=3, txs_per_block=0, seed=33)
    ci = create_db(pg, "evidle")
    d = start(build_dir, tmp_path / "d", node.port, ci)
    socks = []
    try:
        wait_tip(pg, "evidle", d, node)
        # warm up: each server has its hub (one PostgreSQL connection)
        warm = [WS(d.port, "/v1/ws") for _ in range(8)]
        pids = http_pids(d)
        assert len(pids) == 4
        before = sum(rss_kb(p) for p in pids)
        for _ in range(1000):
            socks.append(WS(d.port, "/v1/ws"))
        after = sum(rss_kb(p) for p in pids)
        per = (after - before) * 1024 / 1000
        print("\n1000 idle websockets: %d KiB over 4 server processes, %.0f bytes each"
              % (after - before, per))
        # bounded: a few KB each (libevent buffers, our structs), not a
        # buffer per connection
        assert per < 32 * 1024, per
        # normal requests are answered meanwhile, and a subscriber still gets
        # a new tip
        for _ in range(20):
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
            c.request("GET", "/v1/tip")
            r = c.getresponse()
            assert r.status == 200, r.read()
            r.read()
            c.close()
        live = WS(d.port, "/v1/ws")
        live.send_json({"op": "subscribe", "kinds": ["tip"]})
        assert live.recv_json()["type"] == "subscribed"
        node.mine(1)
        m = live.recv_json()
        assert m["kind"] == "tip" and m["data"]["hash"] == node.chain.tip.hash_hex, m
        live.close()
        for w in warm:
            w.close()

        # malformed frames: the right close code, then the connection ends
        w = WS(d.port, "/v1/ws")
        w.sock.sendall(w.frame(1, b'{"op": "subscribe"}', mask=False))
        m = w.recv_json()
        assert m[:2] == ("close", 1002) and "unmasked" in m[2], m
        d.wait_for_log(r"ws 127\.0\.0\.1:%d: unmasked frame from a client: closing with 1002"
                       % w.sock.getsockname()[1])
        w.sock.close()
        w = WS(d.port, "/v1/ws")  # events_max_message is 128 KiB: a 1 MB frame, refused on its header
        w.sock.sendall(struct.pack("!BBQ", 0x81, 0xFF, 1 << 20) + os.urandom(4))
        m = w.recv_json()
        assert m[:2] == ("close", 1009), m
        d.wait_for_log(r"ws 127\.0\.0\.1:%d: message too big: closing with 1009"
                       % w.sock.getsockname()[1])
        w.sock.close()
        w = WS(d.port, "/v1/ws")
        w.sock.sendall(w.frame(3, b"x"))  # opcode 3 is reserved
        m = w.recv_json()
        assert m[:2] == ("close", 1002) and "opcode" in m[2], m
        d.wait_for_log(r"ws 127\.0\.0\.1:%d: unknown opcode: closing with 1002"
                       % w.sock.getsockname()[1])
        w.sock.close()
        # a bad message: an error reply, the connection stays
        w = WS(d.port, "/v1/ws")
        w.sock.sendall(w.frame(1, b"not json"))
        m = w.recv_json()
        assert m["type"] == "error" and m["code"] == "bad_message", m
        w.send_json({"op": "subscribe", "keys": ["zz"]})
        m = w.recv_json()
        assert m["type"] == "error" and "64 hex" in m["error"], m
        w.close()
        # bad handshakes
        w = WS(d.port, "/v1/ws", handshake=False)
        st, head = w.handshake({"Sec-WebSocket-Key": None})
        assert st == 400, head
        w.sock.close()
        w = WS(d.port, "/v1/ws", handshake=False)
        st, head = w.handshake({"Sec-WebSocket-Version": "8"})
        assert st == 426 and "Sec-WebSocket-Version: 13" in head, head
        w.sock.close()
        d.wait_for_log(r"ws 127\.0\.0\.1:\d+: websocket version '8' \(13 expected\): 426")
    finally:
        for w in socks:
            w.sock.close()
        d.stop()


def test_resume_point_pruned_or_unknown(pg_module, build_dir, simnode_factory, tmp_path):
    pg = pg_module
    node = simnode_factory(generate=5, txs_per_block=0, seed=34)
    ci = create_db(pg, "evprune")
    d = start(build_dir, tmp_path / "d", node.port, ci)
    try:
        wait_tip(pg, "evprune", d, node)
        last = int(psql(pg, "evprune", "SELECT max(id) FROM events;")[0][0])
        assert last >= 5
        # a resume inside the log is fine
        first = int(psql(pg, "evprune", "SELECT min(id) FROM events WHERE id > 2 AND "
                                        "kind = 'tip';")[0][0])
        s = SSE(d.port, "?kinds=tip&since=2")
        assert s.next()[0] == "subscribed"
        ev, eid, data = s.next()
        assert ev == "tip" and int(eid) == first
        s.close()
        # everything up to now is pruned
        psql(pg, "evprune", "SELECT cd_events_prune('0 seconds');")
        s = SSE(d.port, "?since=2")
        ev, _, data = s.next()
        assert ev == "error" and data["code"] == "resume_unavailable", data
        assert "no longer available" in data["error"]
        s.close()
        w = WS(d.port, "/v1/ws")
        w.send_json({"op": "subscribe", "resume": "2"})
        m = w.recv_json()
        assert m["type"] == "error" and m["code"] == "resume_unavailable", m
        m = w.recv_json()
        assert m == ("close", 1008, "resume point no longer available"), m
        w.sock.close()
        # the last token is still good: nothing after it was pruned
        w = WS(d.port, "/v1/ws")
        w.send_json({"op": "subscribe", "resume": str(last), "kinds": ["tip"]})
        assert w.recv_json()["type"] == "subscribed"
        node.mine(1)
        m = w.recv_json()
        assert m["kind"] == "tip" and int(m["id"]) > last
        w.close()
        # a token from the future, an unknown subscription
        s = SSE(d.port, "?since=%d" % (last + 1000))
        ev, _, data = s.next()
        assert ev == "error" and data["code"] == "resume_unknown", data
        s.close()
        s = SSE(d.port, "?sub=%s" % ("ab" * 16))
        ev, _, data = s.next()
        assert ev == "error" and data["code"] == "subscription_unknown", data
        s.close()
        # bad parameters: 400 before any stream
        s = SSE(d.port, "?keys=xyz")
        assert s.status == 400
        s.close()
    finally:
        d.stop()


def test_limits_and_unsubscribe(pg_module, build_dir, simnode_factory, tmp_path):
    pg = pg_module
    node = simnode_factory(generate=3, txs_per_block=0, seed=35)
    ci = create_db(pg, "evlim")
    d = start(build_dir, tmp_path / "d", node.port, ci,
              ["--events-max-conns", "1", "--events-max-keys", "2"])
    opened = []
    try:
        wait_tip(pg, "evlim", d, node)
        k1, k2, k3 = (hashlib.sha256(b"k%d" % i).hexdigest() for i in range(3))
        # keys + outpoints per stream
        w = WS(d.port, "/v1/ws")
        opened.append(w)
        w.send_json({"op": "subscribe", "keys": [k1, k2, k3]})
        m = w.recv_json()
        assert m["type"] == "error" and "events_max_keys" in m["error"], m
        w.send_json({"op": "subscribe", "keys": [k1, k2]})
        m = w.recv_json()
        assert m["type"] == "subscribed" and m["keys"] == 2, m
        sub = m["sub"]

        def owned():
            return sorted(r[0] for r in psql(pg, "evlim", "SELECT encode(push_hash, 'hex') FROM "
                                                          "watch_owners WHERE owner = 'sse:%s';"
                                                          % sub))
        assert owned() == sorted([k1, k2])
        # unsubscribe: the watch goes with it
        w.send_json({"op": "unsubscribe", "keys": [k1]})
        m = w.recv_json()
        assert m["type"] == "subscribed" and m["keys"] == 1, m
        assert owned() == [k2]
        assert psql(pg, "evlim", "SELECT count(*) FROM watched_keys WHERE push_hash = "
                                 "decode('%s', 'hex');" % k1) == [("0",)]
        # one stream per server process: with 4 processes, among 5 more
        # streams one lands on a process that holds one already: 503
        refused = None
        for _ in range(5):
            x = WS(d.port, "/v1/ws", handshake=False)
            st, head = x.handshake()
            if st == 503:
                refused = head
                x.sock.close()
                break
            opened.append(x)
        assert refused is not None
        d.wait_for_log(r"events: 1 streams open \(events_max_conns\): 503")
        # an idle subscription expires with its watches (the function the
        # servers call once a minute, with a zero idle time here)
        w.close()
        opened.remove(w)
        wait_until(lambda: psql(pg, "evlim", "SELECT count(*) FROM event_subs WHERE id = '%s' "
                                             "AND seen_at < now();" % sub) == [("1",)], d,
                   "seen_at")
        n = psql(pg, "evlim", "SELECT cd_event_subs_expire('0 seconds');")
        assert int(n[0][0]) >= 1
        assert owned() == []
        assert psql(pg, "evlim", "SELECT count(*) FROM event_subs WHERE id = '%s';" % sub) == \
            [("0",)]
        # its id is refused now
        s = SSE(d.port, "?sub=%s" % sub)
        if s.status == 200:
            ev, _, data = s.next()
            assert ev == "error" and data["code"] == "subscription_unknown", data
        else:  # the process it reached holds a stream already
            assert s.status == 503
        s.close()
    finally:
        for x in opened:
            x.sock.close()
        d.stop()


def test_streams_survive_a_postgresql_restart(pg_module, build_dir, simnode_factory, tmp_path):
    """PostgreSQL restarts under open streams: each server's hub reconnects
    (LISTEN again) and reads from where it was; the clients, still
    connected, get every event once."""
    pg = pg_module
    node = simnode_factory(generate=3, txs_per_block=0, seed=36)
    ci = create_db(pg, "evpg")
    d = start(build_dir, tmp_path / "d", node.port, ci)
    try:
        wait_tip(pg, "evpg", d, node)
        start_id = int(psql(pg, "evpg", "SELECT coalesce(max(id), 0) FROM events;")[0][0])
        s = SSE(d.port, "?kinds=tip,reorg&since=%d" % start_id)
        assert s.next()[0] == "subscribed"
        w = WS(d.port, "/v1/ws")
        w.send_json({"op": "subscribe", "kinds": ["tip", "reorg"], "resume": start_id})
        assert w.recv_json()["type"] == "subscribed"
        node.mine(1)
        wait_tip(pg, "evpg", d, node)
        ts, tw = Tracker(), Tracker()
        n = len(log_events(pg, "evpg", start_id, ["tip", "reorg"]))
        sse_until(ts, s, n, d)
        ws_until(tw, w, n, d)
        pg.restart()
        node.mine(2)
        wait_tip(pg, "evpg", d, node, timeout=300)
        n = len(log_events(pg, "evpg", start_id, ["tip", "reorg"]))
        sse_until(ts, s, n, d)
        ws_until(tw, w, n, d)
        check(pg, "evpg", ts, start_id, ["tip", "reorg"], None, None)
        check(pg, "evpg", tw, start_id, ["tip", "reorg"], None, None)
        assert ts.got[-1][2]["hash"] == node.chain.tip.hash_hex
        s.close()
        w.close()
    finally:
        d.stop()
