"""Tip-filter matches POSTed to ConduitDB's reference server (issue 16; docs/CONDUITDB_API.md,
"Tip-filter notifications"): with conduitdb_reference_url set, the webhook process POSTs every
match of every account's tip-filter registrations to <url>/api/v1/tip-filter/matches in
ConduitDB's body, as ConduitDB does, so a reference server that only takes that POST gets them.

The reference server is played here by the standard library's http.server. As in
test_conduitdb_notify.py (whose data and helpers are imported, not copied), conduitd indexes
../shared/data/regtest/blockchain_116_7c9cd2 up to height 110, the reference server's
registrations are made (two accounts, JSON and binary), and the node delivers 111..116:

  * pre-reorg: the receiver answers 500 to the first attempt of every batch, then 200: each
    batch comes again with the same bytes, in order; the 2xx-answered batches hold exactly
    ConduitDB's expected_tip_filter_results for both accounts, one POST per block;
  * restart: the receiver goes away (connection refused); the daemon restarts, the node
    reorganises to blockchain_118_0ebc17 and the tip reaches 118 (an unreachable URL does not
    hold the indexer), the daemon is killed (SIGKILL) and started with the backlog pending, the
    receiver comes back: the matches of the blocks that left ("orphaned": true) then the new branch's, each
    once, nothing lost;
  * mempool and a slow receiver (a second daemon on a generated chain): a receiver that never
    answers does not hold the indexer (the tip advances past three blocks); once it answers,
    the mempool match ("blockId": null) and then the same match with its block arrive, with
    the bytes of the attempts that timed out; then, the receiver away, the event retention
    deletes a match it never got: counted in cdb_outbound.lost, not skipped silently.
"""

import hashlib
import http.server
import json
import os
import struct
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import test_conduitdb_notify as cn  # noqa: E402  (ConduitDB's data and the chain helpers)
from daemon_util import Daemon  # noqa: E402
from test_index import create_db, psql  # noqa: E402
from test_index_daemon import wait_tip  # noqa: E402

ce = cn.ce
PATH = "/api/v1/tip-filter/matches"
WAIT = 300  # s: a hang guard only, never a performance threshold


class RefServer:
    """The reference server's POST /api/v1/tip-filter/matches. answer(raw) -> an HTTP status,
    or 'hang' (keep the request until released, never answer) decides each reply."""

    def __init__(self):
        self.answer = lambda raw: 200
        self.posts = []  # {"path", "ctype", "raw", "status", "done"}
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.srv = None
        self.port = None
        self.up()

    def _handler(self):
        ref = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with ref.lock:
                    status = ref.answer(raw)
                    rec = {"path": self.path, "ctype": self.headers.get("Content-Type"),
                           "raw": raw, "status": status, "done": False}
                    ref.posts.append(rec)
                if status == "hang":
                    ref.release.wait(60)
                    return  # the daemon gave up already: closed without an answer
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                try:
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                rec["done"] = True

        return H

    def up(self):
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port or 0), self._handler())
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def down(self):
        if self.srv:
            self.srv.shutdown()
            self.srv.server_close()
            self.srv = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.port   # the trailing slash is not doubled

    def accepted(self):
        """The bodies answered 2xx, in arrival order, parsed."""
        with self.lock:
            return [json.loads(p["raw"]) for p in self.posts
                    if p["status"] == 200 and p["done"]]

    def wait(self, until, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while not until(self):
            assert time.monotonic() < deadline, [p["raw"][:200] for p in self.posts[-5:]]
            time.sleep(0.2)


def matches(bodies, orphaned):
    return cn.matches_of(bodies, orphaned)


def check_form(ref):
    """Every POST is ConduitDB's: its path, Content-Type exactly application/json (the
    reference server compares the string), and a body of blockId + entries (+ orphaned)."""
    for p in ref.posts:
        assert p["path"] == PATH, p["path"]
        assert p["ctype"] == "application/json", p["ctype"]
        b = json.loads(p["raw"])
        assert set(b) in ({"blockId", "entries"}, {"blockId", "entries", "orphaned"}), b
        assert b.get("orphaned", True) is True
        accounts = [e["accountId"] for e in b["entries"]]
        assert len(accounts) == len(set(accounts)), b       # one entry per account
        for e in b["entries"]:
            for m in e["matches"]:
                assert set(m) == {"pushDataHashHex", "transactionId", "transactionIndex",
                                  "flags"}, m


def want(chain):
    return cn.expected_matches(chain, 1) | cn.expected_matches(chain, 2)


@pytest.fixture(scope="module")
def env(pg_module, build_dir, shared_data, tmp_path_factory):
    ref = RefServer()
    try:
        with cn.chain_env(pg_module, build_dir, shared_data, tmp_path_factory, "cdbout", "cdbo",
                          ["--conduitdb-reference-url", ref.url, "--webhook-retry-max", "4",
                           "--webhook-timeout", "5"]) as e:
            e.ref = ref
            yield e
    finally:
        ref.release.set()


def outbound(env):
    return psql(env.pg, env.db, "SELECT scan_id, delivered, attempts, failures, failing, url "
                "FROM cdb_outbound")


def test_registrations_as_the_reference_server_makes_them(env):
    now = int(time.time())
    regs = cn.load("pushdata_registrations.json")["PUSHDATAS"]
    st, _, _, body = cn.req(env.port, cn.filter_path(1, now), cn.JSON_CT, "POST",
                            json.dumps(regs).encode())
    assert st == 200, body
    binbody = b"".join(bytes.fromhex(k) + struct.pack(">I", d) for k, d in regs)
    st, _, _, body = cn.req(env.port, cn.filter_path(2, now), cn.BIN_CT, "POST", binbody)
    assert st == 200, body
    # the delivery's row exists from the daemon's start, at the head of the log, with its URL
    rows = outbound(env)
    assert len(rows) == 1 and rows[0][5] == "http://127.0.0.1:%d%s" % (env.ref.port, PATH), rows
    assert env.ref.posts == []                          # nothing matched yet


def test_pre_reorg_at_least_once_in_order(env):
    ref = env.ref
    seen = set()

    def first_fails(raw):       # every batch: 500 the first time, then 200
        if raw in seen:
            return 200
        seen.add(raw)
        return 500
    ref.answer = first_fails
    cn.connect_block_files(env.node, os.path.join(env.shared, cn.PRE),
                           env.pre_hashes[cn.FORK + 1:])
    wait_tip(env.pg, env.db, env.d, 116, timeout=WAIT)
    ref.wait(lambda r: len(matches(r.accepted(), False)) >= 10)
    time.sleep(2)               # nothing more arrives (no duplicate after the last batch)
    check_form(ref)
    got = matches(ref.accepted(), False)
    assert len(got) == len(set(got)) == 10
    assert set(got) == want(env.pre)
    # each batch was POSTed twice with the same bytes (500, then 200), batches in order
    posts = ref.posts
    assert len(posts) % 2 == 0
    for a, b in zip(posts[0::2], posts[1::2]):
        assert (a["status"], b["status"]) == (500, 200)
        assert a["raw"] == b["raw"]
    # one POST per block, blocks in chain order, both accounts' entries in each
    blocks = [b["blockId"] for b in ref.accepted()]
    assert len(blocks) == len(set(blocks))
    heights = [env.pre_hashes.index(b) for b in blocks]
    assert heights == sorted(heights) and min(heights) > cn.FORK
    assert all(sorted(e["accountId"] for e in b["entries"]) == [1, 2] for b in ref.accepted())
    scan, delivered, attempts, failures, failing, _ = outbound(env)[0]
    assert int(delivered) == len(blocks) and int(failures) == len(blocks)
    assert attempts == "0" and failing == "f"


def test_receiver_away_across_restarts_and_reorg(env):
    ref = env.ref
    ref.answer = lambda raw: 200
    before = len(ref.posts)
    ref.down()                                          # connection refused from now on
    n = len(env.d.lines)
    env.d.stop()
    env.d.start()
    env.port = cn.http_port(env.d, start=n)
    node = env.node
    with node.lock:
        gone = node.chain.rewind(cn.FORK)
        joined = [node.chain.load_block_file(os.path.join(env.shared, cn.POST, h), connect=True,
                                             expect_hash=ce.undisp(h))
                  for h in env.post_hashes[cn.FORK + 1:]]
        relay = node._switched(gone, joined)
    node._relay(relay)
    node._announce()
    # the indexer is not held by the unreachable receiver
    wait_tip(env.pg, env.db, env.d, 118, timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while int(outbound(env)[0][3]) <= len(ref.accepted()):   # a failed attempt was recorded
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "conduitdb reference server: event" in env.d.log_text()
    # a crash (SIGKILL: no clean-up) with the backlog pending, the receiver still away
    n = len(env.d.lines)
    env.d.kill()
    env.d.start()
    env.port = cn.http_port(env.d, start=n)
    assert len(ref.posts) == before
    ref.up()
    ref.wait(lambda r: len(matches(r.accepted(), True)) >= 10
             and len(matches(r.accepted(), False)) >= 20)
    time.sleep(2)
    check_form(ref)
    after = [json.loads(p["raw"]) for p in ref.posts[before:] if p["status"] == 200 and p["done"]]
    # what left the best chain: the pre-reorg matches with their old blocks, first
    orphaned = matches(after, True)
    assert len(orphaned) == len(set(orphaned)) and set(orphaned) == want(env.pre)
    fresh = matches(after, False)
    assert len(fresh) == len(set(fresh)) and set(fresh) == want(env.post)
    first_new = min(i for i, b in enumerate(after) if not b.get("orphaned"))
    assert all(b.get("orphaned") for b in after[:first_new])
    assert not any(b.get("orphaned") for b in after[first_new:])
    rows = outbound(env)[0]
    assert rows[2] == "0" and rows[4] == "f"
    assert int(rows[1]) == len(ref.accepted())          # every 2xx counted once


def push_keys(tx):
    """sha256 of the 20-byte push of each P2PKH output (ConduitDB's pushdata rule)."""
    out = []
    for i, (_, script) in enumerate(tx.outputs):
        if len(script) == 25 and script[:3] == b"\x76\xa9\x14":
            out.append((hashlib.sha256(script[3:23]).hexdigest(), i))
    return out


def test_mempool_then_block_slow_receiver(pg_module, build_dir, tmp_path):
    from simnode_fixtures import SimNodeProcess
    ref = RefServer()
    ref.answer = lambda raw: "hang"
    node = SimNodeProcess("--regtest", "--generate", "110")
    ci = create_db(pg_module, "cdbout2")
    d = Daemon(build_dir, str(tmp_path / "d"),
               ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                "--parser-workers", "2", "--ring-size", "16M", "--unit-size", "1M",
                "--http-listen", "127.0.0.1:0", "--log-level", "info",
                "--conduitdb-reference-url", ref.url.rstrip("/"), "--webhook-timeout", "1",
                "--webhook-retry-max", "2"]).start()
    try:
        port = cn.http_port(d)
        wait_tip(pg_module, "cdbout2", d, 110, timeout=WAIT)
        # tx invs are taken only once the mempool relay is on (after the
        # tip): a tx announced before it is never fetched (the node, like the
        # real one, refuses `mempool`), and the test waited for a POST that
        # could not come (failed in CI and in 2 of 6 runs here)
        d.wait_for_log(r"mempool: index at the best tip; relay on", timeout=WAIT)
        made = node.control({"cmd": "make_tx"})
        tx = ce.Tx(bytes.fromhex(made["hex"]), 0)
        keys = push_keys(tx)
        assert keys, tx.outputs
        st, _, _, body = cn.req(port, cn.filter_path(7, int(time.time())), cn.JSON_CT, "POST",
                                json.dumps([[k, 3600] for k, _ in keys]).encode())
        assert st == 200, body
        assert "txid" in node.control({"cmd": "add_tx", "hex": made["hex"]})
        ref.wait(lambda r: len(r.posts) >= 2)           # attempts that time out, retried
        node.control({"cmd": "mine", "n": 3})
        wait_tip(pg_module, "cdbout2", d, 113, timeout=WAIT)   # the indexer went on
        assert ref.accepted() == []
        hung = ref.posts[0]["raw"]
        ref.answer = lambda raw: 200
        ref.release.set()
        ref.wait(lambda r: len(r.accepted()) >= 2)
        time.sleep(2)
        check_form(ref)
        got = ref.accepted()
        # first the mempool: exactly the tx's matches, the bytes the timed-out attempts had
        entry = [{"accountId": 7, "matches": [
            {"pushDataHashHex": k, "transactionId": made["txid"], "transactionIndex": i,
             "flags": 1} for k, i in keys]}]
        assert got[0] == {"blockId": None, "entries": entry}
        assert got[0] == json.loads(hung)
        # then the blocks: every output match of the key in 111..113 (the simulator's wallet
        # keys also receive coinbases), the tx's among them, one POST per block, in order
        rows = psql(pg_module, "cdbout2",
                    "SELECT t.height, cd_txid_hex(t.block_hash), encode(p.push_hash, 'hex'), "
                    "cd_txid_hex(p.tx_hash), p.idx FROM best_pushdata p JOIN best_transactions t "
                    "USING (tx_hash) WHERE p.flags = 1 AND p.height > 110 AND encode(p.push_hash, "
                    "'hex') IN (%s)" % ",".join("'%s'" % k for k, _ in keys))
        want_b = {(b, 7, k, t, int(i), 1) for _, b, k, t, i in rows}
        assert {(b, 7, k, made["txid"], i, 1) for b in {r[1] for r in rows
                if r[3] == made["txid"]} for k, i in keys} <= want_b
        blocks = [b["blockId"] for b in got[1:]]
        height = {r[1]: int(r[0]) for r in rows}
        assert len(blocks) == len(set(blocks)) == len(height)
        assert [height[b] for b in blocks] == sorted(height.values())
        got_b = matches(got[1:], False)
        assert len(got_b) == len(set(got_b)) and set(got_b) == want_b

        # the receiver away and the event retention deleting a match it never got: counted in
        # cdb_outbound.lost, not skipped silently
        ref.down()
        fails = int(psql(pg_module, "cdbout2", "SELECT failures FROM cdb_outbound")[0][0])
        made = node.control({"cmd": "make_tx"})
        keys = push_keys(ce.Tx(bytes.fromhex(made["hex"]), 0))
        assert len(keys) == 1
        st, _, _, body = cn.req(port, cn.filter_path(8, int(time.time())), cn.JSON_CT, "POST",
                                json.dumps([[k, 3600] for k, _ in keys]).encode())
        assert st == 200, body
        assert "txid" in node.control({"cmd": "add_tx", "hex": made["hex"]})
        deadline = time.monotonic() + WAIT
        while int(psql(pg_module, "cdbout2", "SELECT failures FROM cdb_outbound")[0][0]) == fails:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert psql(pg_module, "cdbout2", "SELECT lost FROM cdb_outbound") == [("0",)]
        psql(pg_module, "cdbout2", "SELECT cd_events_prune('0 seconds')")
        # (last_error says it too, until the next failed attempt overwrites it)
        assert psql(pg_module, "cdbout2", "SELECT lost FROM cdb_outbound") == [("1",)]
    finally:
        ref.release.set()
        d.stop()
        node.stop()
        ref.down()
