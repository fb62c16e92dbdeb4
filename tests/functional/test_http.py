"""The HTTP API (http_listen) against a real daemon, PostgreSQL and simnode.

conduitd indexes ../shared/data/regtest/blockchain_116_7c9cd2 from the
simulated node with `http_listen = 127.0.0.1:0` (a free port, read from the
log). Every endpoint is checked against what is known independently: the
block files (tx bytes, headers, merkle roots), ../shared/data/README.md (who
spent what), the documented SQL queries, and conduit-cli's output, which the
raw responses must equal byte for byte. Then: a block of ~32 MB streamed with
bounded memory, the server process killed with SIGKILL and restarted by the
supervisor, and PostgreSQL stopped (503) and started again (recovery).

The module shares one daemon; the tests run in file order and the last ones
(kill -9, PostgreSQL restart) disturb it on purpose.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import cli  # noqa: E402
from http_fixtures import http_daemon  # noqa: E402
from test_index import psql, query, verify_tsc  # noqa: E402
from test_index_daemon import pg_ctl  # noqa: E402

CHAIN = "regtest/blockchain_116_7c9cd2"
BIG = 32_000_000  # bytes of the block mined on top (height 117)


def sha256d(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def get(port, path, headers=None, method="GET", timeout=60):
    """(status, headers, body) of one request; errors are returned, not raised."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {},
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(port, path, code=200):
    st, hdr, body = get(port, path)
    assert st == code, (path, st, body)
    assert hdr["Content-Type"] == "application/json", hdr["Content-Type"]
    return json.loads(body)


def get_error(port, path, code, method="GET"):
    st, hdr, body = get(port, path, method=method)
    assert st == code, (path, st, body)
    assert hdr["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert set(doc) == {"error", "code"} and doc["error"] and doc["code"], doc
    return doc["error"]


@pytest.fixture(scope="module")
def env(pg_module, build_dir, shared_data, tmp_path_factory):
    def mine_big(e):
        e.big = e.node.mine(1, block_size=BIG, txs_per_block=3000)[0]

    with http_daemon(pg_module, build_dir, os.path.join(shared_data, CHAIN), "httpapi",
                     str(tmp_path_factory.mktemp("http") / "d"), 117, prepare=mine_big) as e:
        e.hashes = open(os.path.join(e.chain_dir, "headers.txt")).read().split()
        yield e


def http_pid(e, after=0):
    """pid of the newest running HTTP server child (from the supervisor's log)."""
    pids = re.findall(r"supervisor: started http worker 0 \(pid (\d+)\)", e.d.log_text())
    assert pids, e.d.log_text()[-3000:]
    return int(pids[-1])


def block_txs(e, height):
    """[(pos, txid display hex, raw tx)] of a block file, offsets from conduit-cli."""
    raw = open(os.path.join(e.chain_dir, e.hashes[height]), "rb").read()
    p = cli(e.build_dir, ["tx-offsets", str(height), "--regtest", "--datadir", e.datadir])
    offs = [int(x) for x in p.stdout.split()] + [len(raw)]
    out = []
    for pos in range(len(offs) - 1):
        tx = raw[offs[pos]:offs[pos + 1]]
        out.append((pos, sha256d(tx)[::-1].hex(), tx))
    return raw, out


def cli_pg(e, *args):
    return cli(e.build_dir, list(args) + ["--regtest", "--datadir", e.datadir,
                                          "--pg-conninfo", e.ci])


def test_status(env):
    doc = get_json(env.port, "/v1/status")
    p = cli(env.build_dir, ["status", "--json", "--regtest", "--datadir", env.datadir])
    want = json.loads(p.stdout)
    assert set(doc) == set(want)
    assert doc["running"] is True and doc["network"] == "regtest"
    assert doc["pid"] == env.d.proc.pid


def test_tip(env):
    doc = get_json(env.port, "/v1/tip")
    assert doc == {"height": 117, "hash": env.big.hash[::-1].hex()}
    assert query(env.pg, env.db, "best_tip") == [(doc["hash"], "117")]


def test_tx_every_format(env):
    for height in (0, 111, 113, 115, 116):
        raw, txs = block_txs(env, height)
        for pos, txid, tx in txs:
            # default: hex, byte-equal to `conduit-cli tx --hex`
            st, hdr, body = get(env.port, f"/v1/tx/{txid}")
            assert st == 200 and hdr["Content-Type"].startswith("text/plain")
            assert body == cli_pg(env, "tx", txid, "--hex").stdout
            assert body == tx.hex().encode() + b"\n"
            # raw bytes: by Accept or by ?format=raw
            st, hdr, body = get(env.port, f"/v1/tx/{txid}",
                                headers={"Accept": "application/octet-stream"})
            assert st == 200 and body == tx
            assert hdr["Content-Type"] == "application/octet-stream"
            assert get(env.port, f"/v1/tx/{txid}?format=raw")[2] == tx
            # ?format wins over Accept
            assert get(env.port, f"/v1/tx/{txid}?format=hex",
                       headers={"Accept": "application/octet-stream"})[2] == body.hex().encode() + b"\n"
            doc = get_json(env.port, f"/v1/tx/{txid}?format=json")
            off = raw.index(tx)
            assert doc == {"txid": txid, "mempool": False, "block_hash": env.hashes[height],
                           "height": height, "position": pos, "offset": off, "size": len(tx)}
    # uppercase hex is the same txid
    _, txs = block_txs(env, 111)
    assert get(env.port, f"/v1/tx/{txs[1][1].upper()}?format=raw")[2] == txs[1][2]


def test_tx_in_big_block(env):
    p = cli(env.build_dir, ["tx-offsets", "117", "--regtest", "--datadir", env.datadir])
    offs = [int(x) for x in p.stdout.split()]
    assert len(offs) == env.big.ntx
    data = b"".join(bytes(c) for c in env.big.iter_chunks())
    for pos in (0, 1, len(offs) // 2, len(offs) - 1):
        end = offs[pos + 1] if pos + 1 < len(offs) else len(data)
        tx = data[offs[pos]:end]
        txid = sha256d(tx)[::-1].hex()
        assert get(env.port, f"/v1/tx/{txid}?format=raw")[2] == tx
        doc = get_json(env.port, f"/v1/tx/{txid}/proof")
        assert doc["index"] == pos
        assert verify_tsc(doc, txid, data[36:68][::-1].hex())


def test_proof_equals_cli_and_verifies(env):
    for height in (111, 113, 115, 116):
        raw, txs = block_txs(env, height)
        root = raw[36:68][::-1].hex()
        for pos, txid, tx in txs:
            st, hdr, body = get(env.port, f"/v1/tx/{txid}/proof")
            assert st == 200 and hdr["Content-Type"] == "application/json"
            assert body == cli_pg(env, "merkle-proof", txid).stdout
            doc = json.loads(body)
            assert doc["index"] == pos and doc["target"] == env.hashes[height]
            assert doc["txOrId"] == txid and doc["targetType"] == "hash"
            assert verify_tsc(doc, txid, root)
        pos, txid, tx = txs[-1]
        for target in ("header", "merkleroot"):
            body = get(env.port, f"/v1/tx/{txid}/proof?target={target}&include_tx=1")[2]
            assert body == cli_pg(env, "merkle-proof", txid, "--target", target,
                                  "--include-tx").stdout
            doc = json.loads(body)
            assert doc["txOrId"] == tx.hex()
            assert doc["target"] == (raw[:80].hex() if target == "header" else root)


def test_block_header(env):
    for height in (0, 1, 115, 116):
        raw = open(os.path.join(env.chain_dir, env.hashes[height]), "rb").read()
        want = {"hash": env.hashes[height], "height": height, "header": raw[:80].hex(),
                "size": len(raw), "tx_count": len(block_txs(env, height)[1])}
        assert get_json(env.port, f"/v1/block/{height}/header") == want
        assert get_json(env.port, f"/v1/block/{env.hashes[height]}/header") == want
        assert sha256d(raw[:80])[::-1].hex() == env.hashes[height]


def test_block_raw_equals_file_and_cli(env, tmp_path):
    for height in (0, 111, 116):
        raw = open(os.path.join(env.chain_dir, env.hashes[height]), "rb").read()
        for ident in (str(height), env.hashes[height]):
            st, hdr, body = get(env.port, f"/v1/block/{ident}")
            assert st == 200 and body == raw
            assert hdr["Content-Type"] == "application/octet-stream"
            assert int(hdr["Content-Length"]) == len(raw)
        out = tmp_path / f"b{height}"
        cli(env.build_dir, ["block", str(height), "--out", str(out), "--regtest",
                            "--datadir", env.datadir])
        assert out.read_bytes() == raw
    # HEAD: the length, no body
    st, hdr, body = get(env.port, "/v1/block/116", method="HEAD")
    assert st == 200 and body == b"" and int(hdr["Content-Length"]) == len(raw)


def rss_anon_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon")


def test_big_block_streamed_with_bounded_memory(env, tmp_path):
    """A ~32 MB block is streamed in pieces: with the client paused after
    1 MB, the server process holds far less than the block in memory (its
    anonymous RSS grows by less than a third of the block), and the bytes
    that arrive are exactly the block (same as conduit-cli block --out)."""
    pid = http_pid(env)
    import http.client
    base = rss_anon_kb(pid)
    c = http.client.HTTPConnection("127.0.0.1", env.port, timeout=60)
    c.request("GET", "/v1/block/117")
    r = c.getresponse()
    assert r.status == 200 and int(r.getheader("Content-Length")) == env.big.size
    h = hashlib.sha256()
    first = r.read(1 << 20)
    h.update(first)
    time.sleep(1.0)  # the server is now blocked on a full socket
    grown_kb = rss_anon_kb(pid) - base
    n = len(first)
    while True:
        piece = r.read(1 << 20)
        if not piece:
            break
        h.update(piece)
        n += len(piece)
    c.close()
    assert n == env.big.size
    want = hashlib.sha256()
    for chunk in env.big.iter_chunks():
        want.update(bytes(chunk))
    assert h.digest() == want.digest()
    print(f"http server RssAnon grew {grown_kb} kB with the client paused")
    assert grown_kb < BIG // 3 // 1024, f"server grew {grown_kb} kB while streaming"
    out = tmp_path / "b117"
    cli(env.build_dir, ["block", "117", "--out", str(out), "--regtest", "--datadir",
                        env.datadir])
    assert hashlib.sha256(out.read_bytes()).digest() == want.digest()
    # a client that hangs up mid-stream does not disturb the server
    c = http.client.HTTPConnection("127.0.0.1", env.port, timeout=60)
    c.request("GET", "/v1/block/117")
    c.getresponse().read(100_000)
    c.close()
    assert get_json(env.port, "/v1/tip")["height"] == 117
    assert http_pid(env) == pid


def test_spender(env):
    # the rows test_index.py::test_spent_by pins from the raw blocks: 47f3f47a
    # input 1 spends d53a9ebf:0; d53a9ebf:1 is spent by 88c92bb0 input 0
    p2pkh = "d53a9ebfac748561132e49254c42dbe518080c2a5956822d5d3914d47324e842"
    doc = get_json(env.port, f"/v1/outpoint/{p2pkh}/0/spender")
    assert doc == {"txid": "47f3f47a256d70950ff5690ea377c24464310489e3f54d01b817dd0088f0a095",
                   "input": 1, "mempool": False, "height": 115, "block_hash": env.hashes[115]}
    doc = get_json(env.port, f"/v1/outpoint/{p2pkh}/1/spender")
    assert doc == {"txid": "88c92bb09626c7d505ed861ae8fa7e7aaab5b816fc517eac7a8a6c7f28b1b210",
                   "input": 0, "mempool": False, "height": 112, "block_hash": env.hashes[112]}
    doc = get_json(env.port, "/v1/outpoint/"
                   "479833ff49d1000cd6f9d23a88924d22eaeae8b9d543e773d7420c2bbfd73fe2/2/spender")
    assert doc["txid"] == "0120eae6dc11459fe79fbad26f998f4f8c5b75fa6f0fff5b0beca4f35ea7d721"
    assert doc["input"] == 0 and doc["height"] == 113
    # the same as the documented query
    assert query(env.pg, env.db, "spent_by", txid=p2pkh, n=1) == [(doc2["txid"], "0", "112")
                                                                  for doc2 in [get_json(
                                                                      env.port,
                                                                      f"/v1/outpoint/{p2pkh}/1/spender")]]
    # unspent: 404
    get_error(env.port, "/v1/outpoint/"
              "1afaa1c87ca193480c9aa176f08af78e457e8b8415c71697eded1297ed953db6/0/spender", 404)


def test_history_paged_equals_documented_query(env):
    # the coinbase address of the shared regtest chain: one OUTPUT row per block
    key = psql(env.pg, env.db, "SELECT encode(push_hash, 'hex') FROM best_pushdata "
               "WHERE height <= 116 GROUP BY push_hash ORDER BY count(*) DESC, 1 LIMIT 1;")[0][0]
    want = psql(env.pg, env.db,
                "SELECT cd_txid_hex(tx_hash), idx, flags, height FROM best_pushdata "
                "WHERE push_hash = decode(:'key', 'hex') ORDER BY height, tx_pos, flags, idx;",
                key=key)
    assert len(want) > 20
    got, after, pages = [], None, 0
    while True:
        doc = get_json(env.port, f"/v1/pushdata/{key}/history?limit=7"
                       + (f"&after={after}" if after else ""))
        assert doc["key"] == key and len(doc["history"]) <= 7
        got += [(r["txid"], str(r["idx"]), str(r["flags"]), str(r["height"]))
                for r in doc["history"]]
        pages += 1
        after = doc["next"]
        if after is None:
            break
    assert got == want and pages >= len(want) // 7
    # one page of everything; a key from README.md through the documented query
    doc = get_json(env.port, f"/v1/pushdata/{key}/history?limit=1000")
    assert len(doc["history"]) == len(want) and doc["next"] is None
    k = "44c55cbcb8222d6afd5adc5f72ec3fe2b6bbefad27f9c920805ebb9cb6a43de3"
    doc = get_json(env.port, f"/v1/pushdata/{k}/history")
    assert [(r["txid"], r["flags"], r["height"]) for r in doc["history"]] == [
        ("47f3f47a256d70950ff5690ea377c24464310489e3f54d01b817dd0088f0a095", 2, 115)]
    assert doc["next"] is None
    assert get_json(env.port, "/v1/pushdata/" + "00" * 32 + "/history") == {
        "key": "00" * 32, "history": [], "next": None}


def test_errors(env):
    txid = "d53a9ebfac748561132e49254c42dbe518080c2a5956822d5d3914d47324e842"
    get_error(env.port, "/v1/tx/1234", 400)
    get_error(env.port, "/v1/tx/" + "zz" * 32, 400)
    get_error(env.port, "/v1/tx/" + "00" * 32, 404)
    get_error(env.port, "/v1/tx/" + "00" * 32 + "/proof", 404)
    get_error(env.port, f"/v1/tx/{txid}?format=xml", 400)
    get_error(env.port, f"/v1/tx/{txid}/proof?target=moon", 400)
    get_error(env.port, f"/v1/tx/{txid}/proof?include_tx=maybe", 400)
    get_error(env.port, "/v1/block/-1", 400)
    get_error(env.port, "/v1/block/12ab/header", 400)
    get_error(env.port, "/v1/block/99999", 404)
    get_error(env.port, "/v1/block/" + "00" * 32, 404)
    get_error(env.port, f"/v1/outpoint/{txid}/x/spender", 400)
    get_error(env.port, f"/v1/outpoint/{txid}/99999999999/spender", 400)
    get_error(env.port, "/v1/pushdata/abcd/history", 400)
    get_error(env.port, "/v1/pushdata/" + "00" * 32 + "/history?limit=0", 400)
    get_error(env.port, "/v1/pushdata/" + "00" * 32 + "/history?limit=5000", 400)
    get_error(env.port, "/v1/pushdata/" + "00" * 32 + "/history?after=1.2", 400)
    get_error(env.port, "/v1/nothing", 404)
    get_error(env.port, "/v2/tip", 404)
    get_error(env.port, "/v1/tip/", 404)
    get_error(env.port, "/v1", 404)  # ("/" is ConduitDB's ping: test_conduitdb_api.py)
    for method in ("POST", "PUT", "DELETE"):
        get_error(env.port, "/v1/tip", 405, method=method)
    st, hdr, _ = get(env.port, "/v1/tip", method="POST")
    assert hdr["Allow"] == "GET, HEAD, OPTIONS"


def test_server_restarted_after_kill9(env):
    pid = http_pid(env)
    os.kill(pid, signal.SIGKILL)
    env.d.wait_for_log(rf"supervisor: http worker 0 \(pid {pid}\) killed by signal 9",
                       timeout=30)
    deadline = time.monotonic() + 30
    while http_pid(env) == pid:
        assert time.monotonic() < deadline, env.d.log_text()[-3000:]
        time.sleep(0.1)
    assert http_pid(env) != pid
    # the port stayed bound in the controller: the new server answers on it
    assert get_json(env.port, "/v1/tip")["height"] == 117
    assert env.d.proc.poll() is None


def test_postgres_down_503_then_recovery(env):
    """PostgreSQL stops: endpoints that need it answer 503 (JSON), those that
    read only LMDB keep working; once it is back the server reconnects."""
    opts = (f"-c listen_addresses='' -c unix_socket_directories={env.pg.sockdir} "
            f"-c port={env.pg.port} -c fsync=off")
    txid = "d53a9ebfac748561132e49254c42dbe518080c2a5956822d5d3914d47324e842"
    assert get_json(env.port, "/v1/tip")["height"] == 117  # a live session first
    pg_ctl(env.pg, "-m", "immediate", "-w", "stop")
    try:
        for path in ("/v1/tip", f"/v1/tx/{txid}", f"/v1/tx/{txid}/proof",
                     "/v1/pushdata/" + "00" * 32 + "/history"):
            st, hdr, body = get(env.port, path)
            assert st == 503, (path, st, body)
            assert json.loads(body)["error"]
        assert get_json(env.port, "/v1/block/116/header")["height"] == 116
        assert get(env.port, "/v1/block/1")[0] == 200
        assert get_json(env.port, "/v1/status")["network"] == "regtest"
    finally:
        pg_ctl(env.pg, "-o", opts, "-l", os.path.join(env.pg.base, "server.log"), "-w", "start")
    deadline = time.monotonic() + 30
    while True:
        st, _, body = get(env.port, "/v1/tip")
        if st == 200:
            break
        assert st == 503 and time.monotonic() < deadline, (st, body)
        time.sleep(0.2)
    assert json.loads(body)["height"] == 117
    # four server processes, each reconnecting on its own (at most once a
    # second): the next request may reach one that has not yet
    while get(env.port, f"/v1/tx/{txid}?format=json")[0] != 200:
        assert time.monotonic() < deadline + 10, "a server never reconnected"
        time.sleep(0.2)
    assert env.d.proc.poll() is None
