"""ConduitDB's HTTP API served by conduitd, replayed with ConduitDB's own expectations.

conduitd indexes ../shared/data/regtest/blockchain_116_7c9cd2 from the simulated node, with
`http_listen`; then ConduitDB's published expectations (tests/functional/data/conduitdb/, the
data of its tests_functional/) are replayed over HTTP: raw transactions, merkle proofs in each
target type (JSON and binary), restoration matches (JSON lines and 105-byte records), chain
tips. The node then switches to blockchain_118_0ebc17 (a reorg with its fork point at 110) and
the post-reorg expectations are replayed. Output spends, headers and the binary forms are
checked against the block files themselves (check_expectations.Chain), not against conduitd.
Last: a block of 3000 txs for a restoration stream of more than one page (> 1000 matches),
and bad input (malformed JSON, 10 MB bodies, 100k keys) -> 400/413 while the server goes on.

The module shares one daemon; the tests run in file order.
"""

import hashlib
import json
import os
import re
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
from http_fixtures import http_daemon  # noqa: E402
from test_index import psql  # noqa: E402
from test_index_daemon import wait_tip  # noqa: E402

PRE = "regtest/blockchain_116_7c9cd2"
POST = "regtest/blockchain_118_0ebc17"
PRE_TIP = "7c9cd212920833de9623107c72331c69acacd1964fdd2310f0f608f1e3bee4f4"
POST_TIP = "0ebc17feeca04b3f37d4f50b0966ffafe012a0d928b47cf9c2f16431815d6351"
JSON_CT = "application/json; charset=utf-8"
BIN = {"Accept": "application/octet-stream"}
AJSON = {"Accept": "application/json"}


def load(name):
    return json.load(open(os.path.join(DATA, name)))


def req(port, path, headers=None, method="GET", body=None, timeout=120):
    """(status, reason, headers, body); errors are returned, not raised."""
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {},
                               method=method, data=body)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.reason, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.reason, e.headers, e.read()


def get_json(port, path, headers=AJSON):
    st, reason, hdr, body = req(port, path, headers)
    assert st == 200, (path, st, reason, body[:300])
    assert hdr["Content-Type"] == JSON_CT, hdr["Content-Type"]
    return json.loads(body)


def expect_error(port, path, code, method="GET", body=None, headers=None):
    st, reason, hdr, data = req(port, path, headers, method, body)
    assert st == code, (path, st, reason, data[:300])
    assert reason and data.decode() == "%d: %s" % (code, reason), (reason, data[:300])
    return reason


def work(bits):
    exp, mant = bits >> 24, bits & 0xFFFFFF
    target = mant << (8 * (exp - 3)) if exp > 3 else mant >> (8 * (3 - exp))
    return (1 << 256) // (target + 1)


def header_obj(blk, tx_count):
    version, bits, nonce = struct.unpack_from("<i", blk.header)[0], \
        struct.unpack_from("<I", blk.header, 72)[0], struct.unpack_from("<I", blk.header, 76)[0]
    return {"hash": ce.disp(blk.hash), "version": version,
            "prevBlockHash": ce.disp(blk.prev_hash), "merkleRoot": ce.disp(blk.merkle_root),
            "creationTimestamp": struct.unpack_from("<I", blk.header, 68)[0],
            "difficultyTarget": bits, "nonce": nonce, "transactionCount": tx_count,
            "work": work(bits)}


def b58check(payload):
    alpha = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    raw = payload + ce.sha256d(payload)[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = alpha[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def restore(port, keys, binary=False, p2pkh=False, query=""):
    path = "/api/v1/restoration/search" + ("_p2pkh" if p2pkh else "") + query
    st, reason, hdr, body = req(port, path, BIN if binary else AJSON, "POST",
                                json.dumps({"filterKeys": keys}).encode())
    assert st == 200, (st, reason, body[:300])
    if binary:
        assert hdr["Content-Type"] == "application/octet-stream"
        assert body.endswith(b"\0") and (len(body) - 1) % 105 == 0, len(body)
        out = []
        for i in range(0, len(body) - 1, 105):
            fl, key, ltx, lidx, utx, uidx = struct.unpack_from(">B32s32sI32sI", body, i)
            out.append({"flags": fl, "pushDataHashHex": key.hex(),
                        "lockingTransactionId": ce.disp(ltx), "lockingTransactionIndex": lidx,
                        "unlockingTransactionId": None if utx == bytes(32) else ce.disp(utx),
                        "unlockingInputIndex": uidx})
        return out
    assert hdr["Content-Type"] == "application/json"
    text = body.decode()
    assert text.endswith("{}"), text[-200:]   # the end marker, always (bug 6)
    lines = text[:-2].split("\n")
    assert lines[-1] == ""
    return [json.loads(line) for line in lines[:-1]]


@pytest.fixture(scope="module")
def env(pg_module, build_dir, shared_data, tmp_path_factory):
    with http_daemon(pg_module, build_dir, os.path.join(shared_data, PRE), "cdbapi",
                     str(tmp_path_factory.mktemp("cdb") / "d"), 116) as e:
        e.shared = shared_data
        e.pre = ce.Chain(os.path.join(shared_data, PRE))
        e.post = ce.Chain(os.path.join(shared_data, POST))
        yield e


def tx_counts(e):
    return {h: int(n) for h, n in
            psql(e.pg, e.db, "SELECT cd_txid_hex(block_hash), tx_count FROM blocks")}


# ---- pre-reorg: blockchain_116_7c9cd2 ----

def test_ping_error_and_routing(env):
    st, _, hdr, body = req(env.port, "/")
    assert st == 200 and json.loads(body) is True
    assert expect_error(env.port, "/error", 400)
    assert expect_error(env.port, "/api/v1/nothing", 404) == "Not Found"
    assert expect_error(env.port, "/api/v1/chain/tips", 405, method="POST", body=b"")
    assert expect_error(env.port, "/api/v1/restoration/search", 405)
    # the notification routes (test_conduitdb_notify.py): ConduitDB's content-type check
    assert expect_error(env.port, "/api/v1/output-spend/notifications", 400, method="POST",
                        body=b"[]") == "unknown request body content type"
    # conduitd's own API is untouched
    st, _, _, body = req(env.port, "/v1/tip")
    assert st == 200 and json.loads(body)["height"] == 116


def check_tips(e, chain, expected):
    tips = get_json(e.port, "/api/v1/chain/tips")
    got = {(t["height"], t["header"]["hash"], t["state"]) for t in tips}
    assert got == expected, tips
    counts = tx_counts(e)
    for t in tips:
        blk = (e.post if t["state"] == "LONGEST_CHAIN" and chain is e.post else e.pre).by_hash[
            ce.undisp(t["header"]["hash"])]
        assert t["header"] == header_obj(blk, counts[t["header"]["hash"]])
        cw = sum(work(struct.unpack_from("<I", b.header, 72)[0])
                 for b in (e.post if chain is e.post and t["state"] == "LONGEST_CHAIN"
                           else e.pre).blocks[:blk.height + 1])
        assert t["chainWork"] == cw
    longest = get_json(e.port, "/api/v1/chain/tips?longest_chain=1")
    assert [t["state"] for t in longest] == ["LONGEST_CHAIN"]
    # ConduitDB's 406 for a client that will not take JSON
    expect_error(e.port, "/api/v1/chain/tips", 406, headers={"Accept": "text/html"})


def test_tips_pre(env):
    exp = load("test_01_expectations.json")["pre_reorg"]["test_headers_tip"]
    assert "116" in exp["expect"]
    check_tips(env, env.pre, {(116, PRE_TIP, "LONGEST_CHAIN")})


def test_headers(env):
    counts = tx_counts(env)
    doc = get_json(env.port, "/api/v1/chain/header/byHeight?height=110&count=10")
    assert [h["hash"] for h in doc] == [ce.disp(b.hash) for b in env.pre.blocks[110:117]]
    assert doc[-1] == header_obj(env.pre.blocks[116], counts[PRE_TIP])
    assert doc[-1]["transactionCount"] == len(env.pre.blocks[116].txs)  # bug 17: not 0
    st, _, hdr, body = req(env.port, "/api/v1/chain/header/byHeight?height=0&count=117", BIN)
    assert st == 200 and hdr["Content-Type"] == "application/octet-stream"
    assert body == b"".join(b.header for b in env.pre.blocks)
    assert get_json(env.port, "/api/v1/chain/header/byHeight?height=117") == []
    assert [h["hash"] for h in get_json(env.port, "/api/v1/chain/header/byHeight")] == \
        [ce.disp(env.pre.blocks[0].hash)]
    for bad in ("height=-1", "height=x", "count=2001", "count=-1"):
        expect_error(env.port, "/api/v1/chain/header/byHeight?" + bad, 400)
    b113 = env.pre.blocks[113]
    assert get_json(env.port, "/api/v1/chain/header/" + ce.disp(b113.hash)) == \
        header_obj(b113, len(b113.txs))
    st, _, _, body = req(env.port, "/api/v1/chain/header/" + ce.disp(b113.hash), BIN)
    assert st == 200 and body == b113.header
    assert "32 hex bytes" in expect_error(env.port, "/api/v1/chain/header/abcd", 400)
    expect_error(env.port, "/api/v1/chain/header/" + "zz" * 32, 400)
    expect_error(env.port, "/api/v1/chain/header/" + "11" * 32, 404)


def test_transactions(env):
    txs = load("pre_reorg_data.json")["TRANSACTIONS"]
    assert len(txs) == 7
    for txid, raw_hex in txs.items():
        assert get_json(env.port, "/api/v1/transaction/" + txid) == raw_hex
        st, _, hdr, body = req(env.port, "/api/v1/transaction/" + txid, BIN)
        assert st == 200 and hdr["Content-Type"] == "application/octet-stream"
        assert body == bytes.fromhex(raw_hex)
        # Accept lists and parameters are parsed (bug 15)
        st, _, _, body = req(env.port, "/api/v1/transaction/" + txid,
                             {"Accept": "application/octet-stream, */*;q=0.5"})
        assert body == bytes.fromhex(raw_hex)
    expect_error(env.port, "/api/v1/transaction/" + "11" * 32, 404)   # bug 11: not 400
    expect_error(env.port, "/api/v1/transaction/xyz", 400)


def decode_proof(body):
    """TSC binary proof -> the JSON form (display hex), docs/CONDUITDB_API.md"""
    flags = body[0]
    index, pos = ce.read_varint(body, 1)
    if flags & 1:
        n, pos = ce.read_varint(body, pos)
        tx_or_id = body[pos:pos + n].hex()
        pos += n
    else:
        tx_or_id = ce.disp(body[pos:pos + 32])
        pos += 32
    kind = flags & 6
    if kind == 2:
        target, pos = body[pos:pos + 80].hex(), pos + 80
    else:
        target, pos = ce.disp(body[pos:pos + 32]), pos + 32
    count, pos = ce.read_varint(body, pos)
    nodes = []
    for _ in range(count):
        assert body[pos] == 0
        nodes.append(ce.disp(body[pos + 1:pos + 33]))
        pos += 33
    assert pos == len(body)
    return {"index": index, "txOrId": tx_or_id, "target": target, "nodes": nodes,
            "targetType": {0: "hash", 2: "header", 4: "merkleroot"}[kind]}


TABLES = {"MERKLE_PROOFS_TARGET_AS_HASH": "targetType=hash&includeFullTx=0",
          "MERKLE_PROOFS_TARGET_AS_MERKLE_ROOT": "targetType=merkleroot&includeFullTx=0",
          "MERKLE_PROOFS_TARGET_AS_HEADER": "targetType=header&includeFullTx=0",
          "MERKLE_PROOFS_INCLUDE_RAWTX": "targetType=hash&includeFullTx=1"}


def check_proofs(e, data):
    n = 0
    for table, q in TABLES.items():
        for txid, want in data[table].items():
            path = "/api/v1/merkle-proof/%s?%s" % (txid, q)
            assert get_json(e.port, path) == want, (table, txid)
            st, _, hdr, body = req(e.port, path, BIN)
            assert st == 200 and hdr["Content-Type"] == "application/octet-stream"
            assert decode_proof(body) == want, (table, txid)
            n += 1
    assert n == 28
    txid = next(iter(data["MERKLE_PROOFS_INCLUDE_RAWTX"]))
    # includeFullTx=true means true (bug 12); junk is a 400
    assert get_json(e.port, "/api/v1/merkle-proof/%s?includeFullTx=true" % txid) == \
        data["MERKLE_PROOFS_INCLUDE_RAWTX"][txid]
    expect_error(e.port, "/api/v1/merkle-proof/%s?includeFullTx=yes" % txid, 400)
    assert "target type" in expect_error(
        e.port, "/api/v1/merkle-proof/%s?targetType=tree" % txid, 400)
    assert expect_error(e.port, "/api/v1/merkle-proof/" + "11" * 32, 404) == \
        "transaction metadata not found"


def test_merkle_proofs_pre(env):
    check_proofs(env, load("pre_reorg_data.json"))


def check_restoration(e, chain):
    cases = load("restoration_expectations.json")["cases"]
    assert len(cases) == 7
    for case in cases:
        key = case["filterKey"]
        got = restore(e.port, [key])
        assert restore(e.port, [key], binary=True) == got, case["function"]
        if "expect_body_json" in case:
            assert got == [] and case["expect_body_json"] == {}
            continue
        assert len(got) == case["expect_match_count"], case["function"]
        for m in got:
            assert m["pushDataHashHex"] == key and m["flags"] == 1
            if m["unlockingTransactionId"] is None:
                assert m["unlockingInputIndex"] == 0xFFFFFFFF
        if "expect_match" in case:
            assert {k: got[0][k] for k in case["expect_match"]} == case["expect_match"]
        if "expect_spent_count" in case:
            spent = [m for m in got if m["unlockingTransactionId"]]
            assert len(spent) == case["expect_spent_count"]
            assert len(got) - len(spent) == case["expect_unspent_count"]
            assert sorted(m["lockingTransactionId"] for m in spent) == \
                sorted(case["expect_spent_locking_txids"])
        # every spend is the chain's own
        for m in got:
            sp = chain.spender.get((ce.undisp(m["lockingTransactionId"]),
                                    m["lockingTransactionIndex"]))
            want = (ce.disp(sp[0].txid), sp[1]) if sp else (None, 0xFFFFFFFF)
            assert (m["unlockingTransactionId"], m["unlockingInputIndex"]) == want
    # search_p2pkh: the P2PKH case by its address (regtest version byte 0x6f)
    p2pkh = next(c for c in cases if c["function"] == "_p2pkh_json")
    blk, pos = chain.tx_index[ce.undisp(p2pkh["expect_match"]["lockingTransactionId"])]
    script = blk.txs[pos].outputs[0][1]
    assert script[:3] == b"\x76\xa9\x14"
    h160 = script[3:23]
    assert hashlib.sha256(h160).hexdigest() == p2pkh["filterKey"]
    addr = b58check(b"\x6f" + h160)
    assert restore(e.port, [addr], p2pkh=True) == restore(e.port, [p2pkh["filterKey"]])
    assert "bad address" in expect_error(
        e.port, "/api/v1/restoration/search_p2pkh", 400, "POST",
        json.dumps({"filterKeys": [b58check(b"\x00" + h160)]}).encode())  # mainnet's


def test_restoration_pre(env):
    check_restoration(env, env.pre)


def test_restoration_input_matches(env):
    """?flags=2: an unlocking match comes with the output it spends (the scriptSig of
    47f3f47a input 1 pushes the public key whose hash160 d53a9ebf:0 pays)."""
    key = "44c55cbcb8222d6afd5adc5f72ec3fe2b6bbefad27f9c920805ebb9cb6a43de3"
    got = restore(env.port, [key], query="?flags=2")
    assert got == [{"flags": 2, "pushDataHashHex": key,
                    "lockingTransactionId":
                        "d53a9ebfac748561132e49254c42dbe518080c2a5956822d5d3914d47324e842",
                    "lockingTransactionIndex": 0,
                    "unlockingTransactionId":
                        "47f3f47a256d70950ff5690ea377c24464310489e3f54d01b817dd0088f0a095",
                    "unlockingInputIndex": 1}]
    assert restore(env.port, [key]) == []     # ConduitDB's default: outputs only
    assert restore(env.port, [key], binary=True, query="?flags=3") == got


def check_output_spends(e, chain):
    ops = load("utxo_spends.json")["UTXO_REGISTRATIONS"]
    assert len(ops) == 19
    unknown = ["11" * 32, 0]
    body = json.dumps(ops + [unknown]).encode()
    st, _, hdr, data = req(e.port, "/api/v1/output-spend", {"Content-Type": "application/json"},
                           "POST", body)
    assert st == 200 and hdr["Content-Type"] == JSON_CT, data[:300]
    want = []
    for txid, idx in ops:
        tx, in_idx, blk = chain.spender[(ce.undisp(txid), idx)]
        want.append([txid, idx, ce.disp(tx.txid), in_idx, ce.disp(blk.hash)])
    assert json.loads(data) == want
    # binary request (36-byte outpoints; bug 18) and binary answer (104-byte records)
    bbody = b"".join(ce.undisp(t) + struct.pack(">I", i) for t, i in ops)
    st, _, hdr, data = req(e.port, "/api/v1/output-spend",
                           {"Content-Type": "application/octet-stream", **BIN}, "POST", bbody)
    assert st == 200 and hdr["Content-Type"] == "application/octet-stream"
    assert len(data) == 104 * 19
    rows = [struct.unpack_from(">32sI32sI32s", data, i) for i in range(0, len(data), 104)]
    assert [[ce.disp(a), b, ce.disp(c), d, ce.disp(f)] for a, b, c, d, f in rows] == want


def test_output_spends_pre(env):
    check_output_spends(env, env.pre)


# ---- the reorg to blockchain_118_0ebc17 ----

def test_reorg_to_118(env):
    node, hashes = env.node, open(os.path.join(env.shared, POST, "headers.txt")).read().split()
    fork = 110
    assert node.chain.active[fork] == ce.undisp(hashes[fork])
    assert node.chain.active[fork + 1] != ce.undisp(hashes[fork + 1])
    with node.lock:
        gone = node.chain.rewind(fork)
        joined = [node.chain.load_block_file(os.path.join(env.shared, POST, h), connect=True,
                                             expect_hash=ce.undisp(h))
                  for h in hashes[fork + 1:]]
        relay = node._switched(gone, joined)
    node._relay(relay)
    node._announce()
    deadline = time.monotonic() + 300
    while psql(env.pg, env.db, "SELECT cd_txid_hex(block_hash) FROM best_tip") != [(POST_TIP,)]:
        assert env.d.proc.poll() is None, env.d.log_text()[-3000:]
        assert time.monotonic() < deadline, env.d.log_text()[-3000:]
        time.sleep(0.2)


def test_tips_post(env):
    exp = load("test_01_expectations.json")["post_reorg"]["test_headers_tip_post_reorg"]
    want = {(t["height"], t["header.hash"], t["state"]) for t in exp["expect_tips"]}
    check_tips(env, env.post, want)


def test_merkle_proofs_post(env):
    check_proofs(env, load("post_reorg_data.json"))


def test_restoration_post(env):
    check_restoration(env, env.post)


def test_output_spends_post(env):
    check_output_spends(env, env.post)


def test_transactions_post(env):
    """every wallet tx is now in block 116' (served from there)"""
    for txid, raw_hex in load("pre_reorg_data.json")["TRANSACTIONS"].items():
        assert get_json(env.port, "/api/v1/transaction/" + txid) == raw_hex


# ---- beyond ConduitDB's 1000-match limit, and bad input ----

def http_pid(e):
    pids = re.findall(r"supervisor: started http worker 0 \(pid (\d+)\)", e.d.log_text())
    return int(pids[-1])


def test_restoration_streamed_beyond_one_page(env):
    env.node.mine(1, txs_per_block=3000)
    wait_tip(env.pg, env.db, env.d, 119, timeout=300)
    keys = [k for (k,) in psql(env.pg, env.db, """
        SELECT DISTINCT encode(p.push_hash, 'hex') FROM pushdata p JOIN blocks b USING (block_id)
        WHERE b.height = 119 AND p.flags = 1""")]
    want = psql(env.pg, env.db, """
        SELECT encode(p.push_hash, 'hex'), cd_txid_hex(p.tx_hash), p.idx
        FROM best_pushdata p WHERE p.flags = 1 AND encode(p.push_hash, 'hex') = ANY(:'keys')
        ORDER BY p.height, p.tx_pos, p.idx, p.push_hash""".replace(
        ":'keys'", "'{%s}'::text[]" % ",".join(keys)))
    assert len(want) > 2000, len(want)      # more than two pages of the cursor
    got = restore(env.port, keys)
    assert [(m["pushDataHashHex"], m["lockingTransactionId"], str(m["lockingTransactionIndex"]))
            for m in got] == want
    assert restore(env.port, keys, binary=True) == got


def test_restoration_failure_mid_stream_has_no_end_marker(env):
    """the stream's PostgreSQL session is killed while the client has not read the first page:
    the 200 is already sent, so the server closes the connection without the end marker (bug 7:
    ConduitDB sent a truncated 200 that looked complete to nobody and slow to everyone), logs
    it, and the next search works on a new session"""
    keys = [k for (k,) in psql(env.pg, env.db, """
        SELECT DISTINCT encode(p.push_hash, 'hex') FROM pushdata p JOIN blocks b USING (block_id)
        WHERE b.height = 119 AND p.flags = 1""")]
    body = json.dumps({"filterKeys": keys}).encode()
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.settimeout(120)
    c.connect(("127.0.0.1", env.port))
    c.sendall(b"POST /api/v1/restoration/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Accept: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    head = c.recv(1024)               # the stream has started (the first page is fetched)
    assert head.startswith(b"HTTP/1.1 200"), head
    deadline = time.monotonic() + 60
    while True:                       # the server is blocked on this client: kill its session
        killed = psql(env.pg, env.db, """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                                          WHERE application_name = 'conduitd-http-restore'""")
        if killed:
            break
        assert time.monotonic() < deadline, "no restoration session to kill"
        time.sleep(0.1)
    assert killed == [("t",)]
    out = head
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        out += chunk
    c.close()
    text = out.split(b"\r\n\r\n", 1)[1]
    assert not text.endswith(b"0\r\n\r\n"), text[-100:]      # no last chunk: cut short
    assert b"{}" not in text
    env.d.wait_for_log(r"http: restoration: .* closing the connection \(no end marker\)")
    assert len(restore(env.port, keys)) > 2000


def test_restoration_streams_are_limited(env):
    """4 streams at once, each on a PostgreSQL session of its own; a fifth search gets 503 (and
    costs nothing); once the clients go away their sessions are closed and searches work"""
    keys = [k for (k,) in psql(env.pg, env.db, """
        SELECT DISTINCT encode(p.push_hash, 'hex') FROM pushdata p JOIN blocks b USING (block_id)
        WHERE b.height = 119 AND p.flags = 1""")]
    body = json.dumps({"filterKeys": keys}).encode()
    conns = []
    for _ in range(4):                # clients that never read
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.settimeout(120)
        c.connect(("127.0.0.1", env.port))
        c.sendall(b"POST /api/v1/restoration/search HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert c.recv(64).startswith(b"HTTP/1.1 200")
        conns.append(c)
    sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = " \
               "'conduitd-http-restore'"
    assert psql(env.pg, env.db, sessions) == [("4",)]
    assert "too many" in expect_error(env.port, "/api/v1/restoration/search", 503, "POST", body)
    for c in conns:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        c.close()
    deadline = time.monotonic() + 60
    while psql(env.pg, env.db, sessions) != [("0",)]:
        assert time.monotonic() < deadline, env.d.log_text()[-2000:]
        time.sleep(0.1)
    assert len(restore(env.port, keys)) > 2000


def test_mempool_spends(env):
    """unconfirmed spends are reported (ConduitDB asserted or failed, bugs 8, 20): output-spend
    with a null / zero block hash, restoration with the mempool spender; the mempool tx's bytes
    are served, its proof is a 404 that says why (bug 13)"""
    raws = env.node.make_mempool_txs(3)
    assert raws
    txs = [ce.Tx(r, 0) for r in raws]
    ids = {ce.disp(t.txid) for t in txs}
    deadline = time.monotonic() + 120
    while {r for (r,) in psql(env.pg, env.db, "SELECT cd_txid_hex(tx_hash) FROM mempool_tx")} \
            < ids:
        assert time.monotonic() < deadline and env.d.proc.poll() is None
        time.sleep(0.2)
    ops, want = [], []
    for t in txs:
        for in_idx, (ph, pi, _) in enumerate(t.inputs):
            ops.append([ce.disp(ph), pi])
            want.append([ce.disp(ph), pi, ce.disp(t.txid), in_idx, None])
    st, _, _, data = req(env.port, "/api/v1/output-spend", {"Content-Type": "application/json"},
                         "POST", json.dumps(ops).encode())
    assert st == 200 and json.loads(data) == want
    st, _, _, data = req(env.port, "/api/v1/output-spend",
                         {"Content-Type": "application/json", **BIN}, "POST",
                         json.dumps(ops).encode())
    assert len(data) == 104 * len(want)
    assert all(data[i + 72:i + 104] == bytes(32) for i in range(0, len(data), 104))
    checked = 0
    for (txid, n), w in zip(ops, want):
        keys = [k for (k,) in psql(env.pg, env.db, """
            SELECT encode(push_hash, 'hex') FROM best_pushdata
            WHERE tx_hash = cd_txid('%s') AND idx = %d AND flags = 1""" % (txid, n))]
        for key in keys:
            m = [m for m in restore(env.port, [key])
                 if (m["lockingTransactionId"], m["lockingTransactionIndex"]) == (txid, n)]
            assert [(x["unlockingTransactionId"], x["unlockingInputIndex"]) for x in m] == \
                [(w[2], w[3])]
            checked += 1
    assert checked > 0
    t0 = ce.disp(txs[0].txid)
    st, _, _, body = req(env.port, "/api/v1/transaction/" + t0, BIN)
    assert st == 200 and body == raws[0]
    assert "mempool" in expect_error(env.port, "/api/v1/merkle-proof/" + t0, 404)


def rss_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def post_raw(port, path, body, send):
    """POST with the whole body's Content-Length but only `send` bytes of it; the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
        c.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (path.encode(), len(body)))
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
        return out


def test_bad_input(env):
    post = "/api/v1/restoration/search"
    assert "malformed JSON" in expect_error(env.port, post, 400, "POST", b'{"filterKeys": [')
    expect_error(env.port, post, 400, "POST", b'{"keys": []}')
    expect_error(env.port, post, 400, "POST", b'[]')
    expect_error(env.port, post, 400, "POST", b'{"filterKeys": ["abc"]}')
    expect_error(env.port, post, 400, "POST", b'{"filterKeys": [1]}')
    expect_error(env.port, post, 400, "POST", b'')
    expect_error(env.port, post + "?flags=8", 400, "POST", b'{"filterKeys": []}')
    assert restore(env.port, []) == []
    # 10,001 keys fit the body limit but not the key limit
    many = json.dumps({"filterKeys": ["aa" * 32] * 10001}).encode()
    assert "too many" in expect_error(env.port, post, 400, "POST", many)
    pid = http_pid(env)
    before = rss_kb(pid)
    # 100k keys (6.6 MB) and 10 MB of anything: refused from the Content-Length alone,
    # before the body is read (the client has sent only its first 64 KB)
    huge = json.dumps({"filterKeys": ["bb" * 32] * 100000}).encode()
    for body in (huge, b"x" * 10_000_000):
        assert len(body) > 6_000_000
        assert post_raw(env.port, post, body, send=65536).startswith(b"HTTP/1.1 413")
    assert rss_kb(pid) - before < 4096        # nothing of the bodies was kept
    sp = "/api/v1/output-spend"
    expect_error(env.port, sp, 400, "POST", b'[["00", 0]]', {"Content-Type": "application/json"})
    assert expect_error(env.port, sp, 400, "POST", b'{}', {"Content-Type": "application/json"}) \
        == "payload is not a list"
    assert "malformed JSON" in expect_error(env.port, sp, 400, "POST", b'[[',
                                            {"Content-Type": "application/json"})
    expect_error(env.port, sp, 400, "POST", b'\0' * 35,
                 {"Content-Type": "application/octet-stream"})
    expect_error(env.port, sp, 400, "POST", b'[]', {"Content-Type": "text/plain"})
    expect_error(env.port, sp, 400, "POST", b'', {"Content-Type": "application/json"})
    # the server is the same process, still answering
    assert http_pid(env) == pid
    st, _, _, body = req(env.port, "/")
    assert st == 200 and body == b"true"
    assert "http: 127.0.0.1" in env.d.log_text()      # bad input is logged with the peer
