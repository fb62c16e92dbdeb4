"""ARC-compatible broadcast (/arc) and its callbacks, driven by the official
@bsv/sdk ARC broadcaster (issue 15).

conduitd (api_keys = k1,k2) indexes a generated chain served by the
simulated node, which validates transactions like a real node (signatures
included). tests/sdk/arc_check.mjs builds and signs, with the SDK, a tx
spending a wallet output of the simulator and broadcasts it with
`tx.broadcast(new ARC('<conduitd>/arc', {apiKey, callbackUrl,
callbackToken}))` in Extended Format: success with SEEN_ON_NETWORK; then a
double spend of the same output: the SDK's failure DOUBLE_SPEND_ATTEMPTED;
GET /arc/v1/tx/<txid> answers its status. tests/sdk/callback_receiver.mjs
(its first answer a 503, so the retry is exercised; the token required)
receives SEEN_ON_NETWORK and, once the node mines, MINED with a BUMP the
SDK verifies against conduitd's WhatsOnChain routes. Bad input and missing
keys get RFC 7807 errors.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from daemon_util import Daemon  # noqa: E402
from sdk_util import assert_http_survived, ROOT, SDK, run_sdk  # noqa: E402
from test_index import create_db  # noqa: E402
from test_index_daemon import wait_tip  # noqa: E402

GENERATED = 110


def req(port, path, body=None, headers=None, method=None):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                               headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(r, timeout=60) as res:
            return res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def problem(port, path, code, **kw):
    st, hdr, body = req(port, path, **kw)
    assert st == code, (path, st, body)
    assert hdr["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["status"] == code and doc["detail"], doc
    return doc["detail"]


class Env:
    pass


@pytest.fixture(scope="module")
def env(pg_module, build_dir, tmp_path_factory):
    from tests.simnode import SimNode
    e = Env()
    e.pg = pg_module
    tmp = tmp_path_factory.mktemp("sdkarc")
    node = SimNode(generate=GENERATED, txs_per_block=4, seed=55)
    node.start()
    e.node = node
    try:
        with node.lock:
            w = node.chain.wallet
            utxo = node.chain.utxo
            e.spend = []
            for op in node.spendable_outpoints():
                k = w.keyfor(utxo[op][1])
                if len(utxo[op][1]) == 25 and k and len(k[1]) == 33:
                    e.spend.append((op, k[0]))
        assert len(e.spend) >= 5
        e.ci = create_db(pg_module, "sdkarc")
        e.db = "sdkarc"
        e.d = Daemon(build_dir, str(tmp / "d"),
                     ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", e.ci,
                      "--parser-workers", "2", "--ring-size", "16M", "--unit-size", "64K",
                      "--http-listen", "127.0.0.1:0", "--http-client-limit", "0", "--api-keys", "k1,k2",
                      "--log-level", "info"])
        e.d.start()
        try:
            m = e.d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30)
            e.port = int(m.group(1))
            e.base = f"http://127.0.0.1:{e.port}"
            wait_tip(pg_module, e.db, e.d, GENERATED)
            yield e
            assert_http_survived(e.d)
        finally:
            e.d.stop()
    finally:
        node.stop()


def test_broadcast_double_spend_and_callbacks(env, tmp_path):
    (op, secret) = env.spend[0]
    ready = tmp_path / "cb.json"
    recv = subprocess.Popen(
        ["node", os.path.join(SDK, "callback_receiver.mjs"), "--ready-file", str(ready),
         "--token", "s3cret", "--fail-first", "1", "--base", env.base,
         "--until", "SEEN_ON_NETWORK,MINED", "--timeout", "180"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        for _ in range(300):
            if ready.exists() and ready.read_text().strip():
                break
            time.sleep(0.05)
        url = json.loads(ready.read_text())["url"]
        r = run_sdk("arc_check.mjs", "--base", env.base, "--api-key", "k2",
                    "--key-hex", "%064x" % secret, "--source-txid", op[0][::-1].hex(),
                    "--vout", op[1], "--callback-url", url, "--callback-token", "s3cret",
                    "--expect-ds-code", "DOUBLE_SPEND_ATTEMPTED")
        assert r["format"] == "ef" and r["txStatus"] == "SEEN_ON_NETWORK"
        txid = r["txid"]
        assert r["double_spend"]["response"]["more"]["competingTxs"] == [txid]
        assert txid in env.node.mempool_txids()
        # mined: the callback carries a BUMP the SDK accepts
        deadline = time.monotonic() + 60
        while True:  # conduitd indexes the mempool tx before the block
            st, _, body = req(env.port, f"/v1/tx/{txid}")
            if st == 200:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        env.node.mine(1)
        out, err = recv.communicate(timeout=200)
    finally:
        if recv.poll() is None:
            recv.kill()
    res = json.loads(out.strip().splitlines()[-1])
    assert res["ok"] is True, (res, err[-2000:])
    # the first POST answered 503: delivered again, with the token each time
    reqs = res["requests"]
    assert len(reqs) >= 3 and all(q["authorization"] == "Bearer s3cret" for q in reqs), reqs
    mined = res["statuses"]["MINED"]
    assert mined["callback"]["txid"] == txid
    assert mined["callback"]["blockHeight"] == GENERATED + 1
    assert mined["check"]["verify"] is True
    from sdk_util import check_schema
    for st_ in res["statuses"].values():
        check_schema("ArcCallback", st_["callback"])
    assert res["statuses"]["SEEN_ON_NETWORK"]["callback"]["txid"] == txid
    assert reqs[0]["answer"] == 503 and reqs[1]["answer"] == 200
    st, hdr, body = req(env.port, f"/arc/v1/tx/{txid}")
    doc = json.loads(body)
    assert st == 200 and doc["txStatus"] == "MINED" and doc["merklePath"]


def test_raw_format_and_batch(env):
    """A plain raw tx (no EF) and POST /arc/v1/txs with text/plain lines."""
    (op, secret) = env.spend[1]
    r = run_sdk("arc_check.mjs", "--base", env.base, "--api-key", "k1", "--raw",
                "--key-hex", "%064x" % secret, "--source-txid", op[0][::-1].hex(),
                "--vout", op[1], "--no-double-spend")
    assert r["format"] == "raw" and r["txStatus"] == "SEEN_ON_NETWORK"
    (op2, _) = env.spend[2]
    a = env.node.make_tx(spend=op2)
    st, hdr, body = req(env.port, f"/arc/v1/txs", body=(a.hex() + "\n").encode(),
                        headers={"Content-Type": "text/plain", "Authorization": "Bearer k1"})
    assert st == 200, body
    doc = json.loads(body)
    assert isinstance(doc, list) and len(doc) == 1 and doc[0]["txStatus"] == "SEEN_ON_NETWORK"
    # the same again: known, SEEN_ON_NETWORK from the index once it has it
    st, _, body = req(env.port, f"/arc/v1/tx", body=a,
                      headers={"Content-Type": "application/octet-stream",
                               "Authorization": "Bearer k1"})
    assert st == 200 and json.loads(body)["txStatus"] in ("SEEN_ON_NETWORK",), body


def test_bad_requests(env):
    tx = env.node.make_tx(spend=env.spend[2][0]).hex()
    body = json.dumps({"rawTx": tx}).encode()
    js = {"Content-Type": "application/json"}
    assert "Bearer" in problem(env.port, "/arc/v1/tx", 401, body=body, headers=js)
    assert "unknown" in problem(env.port, "/arc/v1/tx", 401, body=body,
                                headers=dict(js, Authorization="Bearer nope"))
    auth = dict(js, Authorization="Bearer k1")
    assert "Content-Type" in problem(env.port, "/arc/v1/tx", 415, body=body,
                                     headers={"Content-Type": "text/html",
                                              "Authorization": "Bearer k1"})
    assert "not hex" in problem(env.port, "/arc/v1/tx", 400,
                                body=b'{"rawTx": "zz"}', headers=auth)
    assert "unknown field" in problem(env.port, "/arc/v1/tx", 400,
                                      body=json.dumps({"rawTx": tx, "x": 1}).encode(),
                                      headers=auth)
    assert "not JSON" in problem(env.port, "/arc/v1/tx", 400, body=b"{", headers=auth)
    assert "not one transaction" in problem(env.port, "/arc/v1/tx", 463,
                                            body=json.dumps({"rawTx": "00" * 10}).encode(),
                                            headers=auth)
    # callback URLs libevent cannot parse, or not http:// with a host: 400, and the
    # server child lives on (a NULL parse result was once freed: the child died)
    for bad in ("http://[zz", "not a url at all", "ftp://x.example/", "http:///nohost"):
        assert "X-CallbackUrl" in problem(env.port, "/arc/v1/tx", 400, body=body,
                                          headers=dict(auth, **{"X-CallbackUrl": bad}))
    assert_http_survived(env.d)
    assert "POST" in problem(env.port, "/arc/v1/tx", 405)
    assert "unknown" in problem(env.port, "/arc/v1/tx/" + "ab" * 32, 404)
    assert "64 hex" in problem(env.port, "/arc/v1/tx/xyz", 400)
    # the SDK's view of a 401: its failure with code "401" (not a crash)
    st, _, _ = req(env.port, "/arc/v1/txs", body=b"[]", headers=auth)
    assert st == 400


def test_answers_match_openapi(env):
    from sdk_util import check_schema
    (op, _) = env.spend[3]
    raw = env.node.make_tx(spend=op)
    st, _, body = req(env.port, "/arc/v1/tx", body=json.dumps({"rawTx": raw.hex()}).encode(),
                      headers={"Content-Type": "application/json", "Authorization": "Bearer k2"})
    assert st == 200, body
    doc = json.loads(body)
    check_schema("ArcTransactionResponse", doc)
    st, _, body = req(env.port, "/arc/v1/tx/" + doc["txid"])
    check_schema("ArcTransactionStatus", json.loads(body))
    st, _, body = req(env.port, "/arc/v1/tx", body=b"{}",
                      headers={"Content-Type": "application/json", "Authorization": "Bearer k2"})
    check_schema("Problem", json.loads(body))
    st, _, body = req(env.port, "/arc/v1/txs", body=(raw.hex() + "\n").encode(),
                      headers={"Content-Type": "text/plain", "Authorization": "Bearer k2"})
    for item in json.loads(body):
        check_schema("ArcTransactionResponse", item)


def to_ef(raw, coins, tamper=None):
    """Extended Format (BRC-30) of a raw tx: each input followed by its
    parent output's satoshis and locking script (coins[i] = (value, script));
    tamper=i adds 1 satoshi to input i's."""
    from tests.simnode.txval import Tx
    import struct
    t = Tx.parse(raw)

    def compact(n):
        return bytes([n]) if n < 0xfd else b"\xfd" + struct.pack("<H", n)
    out = [raw[:4], b"\x00\x00\x00\x00\x00\xef", compact(len(t.vin))]
    for i, vin in enumerate(t.vin):
        v, sc = coins[i]
        out += [vin.prev, struct.pack("<I", vin.index), compact(len(vin.script_sig)),
                vin.script_sig, struct.pack("<I", vin.sequence),
                struct.pack("<q", v + (1 if tamper == i else 0)), compact(len(sc)), sc]
    out.append(compact(len(t.vout)))
    for v, sc in t.vout:
        out += [struct.pack("<q", v), compact(len(sc)), sc]
    out.append(struct.pack("<I", t.locktime))
    return b"".join(out)


def Tx_parse(raw):
    from tests.simnode.txval import Tx
    return Tx.parse(raw)


def test_extended_format_checked_against_the_index(env):
    (op, _) = env.spend[4]
    with env.node.lock:
        coin = env.node.chain.utxo[op][:2]
    raw = env.node.make_tx(spend=op)
    hdr = {"Content-Type": "application/octet-stream", "Authorization": "Bearer k1"}
    detail = problem(env.port, "/arc/v1/tx", 463, body=to_ef(raw, [coin], tamper=0), headers=hdr)
    assert "input 0" in detail and "satoshis" in detail, detail
    bad_script = (coin[0], coin[1][:-1] + b"\x87")
    detail = problem(env.port, "/arc/v1/tx", 463, body=to_ef(raw, [bad_script]), headers=hdr)
    assert "locking script" in detail, detail
    st, _, body = req(env.port, "/arc/v1/tx", body=to_ef(raw, [coin]), headers=hdr)
    assert st == 200 and json.loads(body)["txStatus"] == "SEEN_ON_NETWORK", body
    # cut inside the extension: malformed Extended Format (460)
    ef = to_ef(raw, [coin])
    cut = ef[:10 + 1 + 36 + 1 + len(Tx_parse(raw).vin[0].script_sig) + 4 + 3]
    assert "extended format" in problem(env.port, "/arc/v1/tx", 460, body=cut, headers=hdr)


def test_orphan_and_a_client_that_leaves(env):
    """A tx spending an output the node does not know: the node asks for the
    parent (libconduit-p2p MISSING_INPUTS) -> SEEN_IN_ORPHAN_MEMPOOL, which
    the SDK counts as an error. Then the same kind of request from a client
    that closes its socket before the answer: the server goes on (the module
    fixture checks the HTTP child never restarted)."""
    import socket
    orphan = env.node.make_tx(missing_input=True)
    hdr = {"Content-Type": "application/octet-stream", "Authorization": "Bearer k1"}
    st, _, body = req(env.port, "/arc/v1/tx", body=orphan, headers=hdr)
    doc = json.loads(body)
    assert st == 200 and doc["txStatus"] == "SEEN_IN_ORPHAN_MEMPOOL", doc
    assert "parent" in doc["extraInfo"]
    other = env.node.make_tx(missing_input=True, fee=301)
    s = socket.create_connection(("127.0.0.1", env.port))
    s.sendall(b"POST /arc/v1/tx HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
              b"Authorization: Bearer k1\r\nContent-Length: %d\r\n\r\n" % len(other) + other)
    s.close()
    time.sleep(0.5)  # let the server see the close (not a threshold: any order is fine)
    st, _, body = req(env.port, "/arc/v1/tx/" + "ab" * 32)
    assert st == 404
