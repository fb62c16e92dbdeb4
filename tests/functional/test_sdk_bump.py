"""BUMP proofs (BRC-74) and the WhatsOnChain-shaped ChainTracker routes,
checked with the official @bsv/sdk (issue 15).

The simulated node serves a generated chain (its last blocks spend mature
coinbases: several transactions each), one coinbase-only block (a one-transaction tree) and, on top,
mainnet block 413567's body (1557 transactions, its real merkle root) under
a regtest header, as in test_mainnet_block_daemon.py. conduitd indexes it
with the HTTP API on. Then, with the SDK's own code (tests/sdk):
  - every tx of block 413567: GET /v1/tx/<txid>/bump parses with
    MerklePath.fromHex, computes the block's real merkle root (from
    ../shared/data/README.md, independent of conduitd), is byte-equal to the
    canonical BUMP (tests/sdk/lib/bump_ref.mjs) and ?format=json|binary
    describe the same path;
  - the BUMP's nodes equal the TSC proof's (the form checked against a real
    node's getmerkleproof2) level for level;
  - a compound BUMP (CLI and HTTP) of several txids of one block;
  - the SDK's WhatsOnChain ChainTracker pointed at /woc/v1/bsv/regtest
    accepts the roots, rejects a wrong one and an unknown height, reads the
    current height, and MerklePath.verify succeeds;
  - bad input: 400/404 with a JSON error.
"""

import json
import os
import struct
import sys
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from daemon_util import Daemon, cli  # noqa: E402
from sdk_util import assert_http_survived, run_sdk  # noqa: E402
from test_index import create_db  # noqa: E402
from test_index_daemon import wait_tip  # noqa: E402

from tests.simnode.chain import make_header  # noqa: E402

ROOT413567 = "64a50c649fc816baaa2effda230c39cacf1504e4e616a2863685b72aaa7dce05"
GENERATED = 110  # coinbases mature after 100 blocks: the last ones spend them
CBONLY = GENERATED + 1    # a coinbase-only block
MAINNET = GENERATED + 2   # block 413567's body


def get(port, path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_error(port, path, code):
    st, hdr, body = get(port, path)
    assert st == code, (path, st, body)
    assert hdr["Content-Type"].startswith("application/json"), hdr["Content-Type"]
    doc = json.loads(body)
    assert doc.get("error"), doc
    return doc["error"]


class Env:
    pass


@pytest.fixture(scope="module")
def env(pg_module, build_dir, shared_data, tmp_path_factory):
    from tests.simnode import SimNode
    e = Env()
    e.build_dir = build_dir
    main = os.path.join(shared_data, "mainnet")
    e.txids = open(os.path.join(main, "block413567.txids")).read().split()
    e.txids_file = os.path.join(main, "block413567.txids")
    raw = open(os.path.join(main, "block413567.raw"), "rb").read()
    tmp = tmp_path_factory.mktemp("sdkbump")
    node = SimNode(generate=GENERATED, txs_per_block=5, seed=33)
    node.start()
    e.node = node
    try:
        with node.lock:
            node.chain.build_coinbase_only(1)
            tip = node.chain.tip
            ntime = struct.unpack("<I", tip.header[68:72])[0] + 600
            version = struct.unpack("<i", raw[:4])[0]
            blk = make_header(version, tip.hash, raw[36:68], ntime) + raw[80:]
            path = tmp / "block413567.regtest"
            path.write_bytes(blk)
            node.chain.load_block_file(str(path), connect=True)
            assert node.chain.height == MAINNET
            e.blocks = {h: node.chain.at(h) for h in range(1, MAINNET + 1)}
            e.gen_txids = {h: [t.txid[::-1].hex() for t in node.chain.block_txs(e.blocks[h])]
                           for h in range(GENERATED - 9, CBONLY + 1)}
        e.ci = create_db(pg_module, "sdkbump")
        e.datadir = str(tmp / "d")
        e.cfg = ["--regtest", "--datadir", e.datadir, "--pg-conninfo", e.ci]
        e.d = Daemon(build_dir, e.datadir,
                     ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", e.ci,
                      "--parser-workers", "2", "--ring-size", "16M", "--unit-size", "64K",
                      "--relay", "off", "--http-listen", "127.0.0.1:0", "--http-client-limit", "0", "--log-level", "info"])
        e.d.start()
        try:
            m = e.d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30)
            e.port = int(m.group(1))
            e.base = f"http://127.0.0.1:{e.port}"
            wait_tip(pg_module, "sdkbump", e.d, MAINNET)
            # the merkle worker stores trees after the index: wait for the last
            d_ok = False
            for _ in range(600):
                st, _, _ = get(e.port, f"/v1/tx/{e.txids[-1]}/bump")
                if st == 200:
                    d_ok = True
                    break
                import time
                time.sleep(0.1)
            assert d_ok
            yield e
            assert_http_survived(e.d)
        finally:
            e.d.stop()
    finally:
        node.stop()


def root_of(block):
    return block.header[36:68][::-1].hex()


def test_bump_every_tx_of_block_413567(env):
    """1557 BUMPs: the SDK computes the real mainnet root; canonical bytes;
    JSON and binary forms agree."""
    assert root_of(env.blocks[MAINNET]) == ROOT413567
    r = run_sdk("bump_check.mjs", "--base", env.base, "--root", ROOT413567, "--height", MAINNET,
                "--exact", "--txids-file", env.txids_file)
    assert r["ok"] is True


def test_bump_generated_blocks(env):
    """Generated blocks with several txs and a one-tx block."""
    sizes = [len(env.gen_txids[h]) for h in range(GENERATED - 9, GENERATED + 1)]
    assert max(sizes) >= 3 and len(env.gen_txids[CBONLY]) == 1, sizes
    for h in range(GENERATED - 9, CBONLY + 1):
        txids = env.gen_txids[h]
        run_sdk("bump_check.mjs", "--base", env.base, "--root", root_of(env.blocks[h]),
                "--height", h, *txids)


def test_bump_nodes_equal_tsc(env):
    """The BUMP's path is the TSC proof's, node for node (an odd level's
    duplicate: the TSC proof writes the node's own hash, the BUMP flag 01)."""
    for pos in list(range(0, 1557, 97)) + [1556]:
        txid = env.txids[pos]
        tsc = json.loads(cli(env.build_dir, ["merkle-proof", txid] + env.cfg).stdout)
        bump = json.loads(cli(env.build_dir, ["merkle-proof", txid, "--format", "bump-json"]
                              + env.cfg).stdout)
        assert bump["blockHeight"] == MAINNET and tsc["index"] == pos
        assert len(bump["path"]) == len(tsc["nodes"]) == 11
        size = 1557
        for h, node in enumerate(tsc["nodes"]):
            sib = (pos >> h) ^ 1
            leaves = {lf["offset"]: lf for lf in bump["path"][h]}
            assert sib in leaves, (pos, h, bump["path"][h])
            if sib >= size:
                assert leaves[sib] == {"offset": sib, "duplicate": True}
            else:
                assert leaves[sib]["hash"] == node, (pos, h)
            size = (size + 1) // 2
        # the CLI's hex and the HTTP API's are the same bytes
        hx = cli(env.build_dir, ["merkle-proof", txid, "--format", "bump"] + env.cfg).stdout
        st, hdr, body = get(env.port, f"/v1/tx/{txid}/bump")
        assert st == 200 and body == hx
        assert hdr["Content-Type"].startswith("text/plain")


def test_compound_bump(env):
    pos = [0, 3, 500, 501, 1556]
    txids = [env.txids[p] for p in pos]
    hx = cli(env.build_dir, ["merkle-proof"] + txids + ["--format", "bump"] + env.cfg)
    hx = hx.stdout.decode().strip()
    run_sdk("bump_check.mjs", "--root", ROOT413567, "--height", MAINNET, "--bump", hx, *txids)
    # the HTTP route, by height and by hash, gives the same bytes
    for bid in (str(MAINNET), env.blocks[MAINNET].hash[::-1].hex()):
        st, _, body = get(env.port, f"/v1/block/{bid}/bump?txids={','.join(txids)}")
        assert st == 200 and body.decode().strip() == hx, (st, body[:300])
    st, hdr, body = get(env.port, f"/v1/block/{MAINNET}/bump?format=json&txids={','.join(txids)}")
    assert st == 200 and hdr["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    flagged = sorted(lf["offset"] for lf in doc["path"][0] if lf.get("txid"))
    assert flagged == pos


def test_chaintracker_with_the_sdk(env):
    """The SDK's WhatsOnChain tracker against /woc/v1/bsv/regtest."""
    r = run_sdk("tracker_check.mjs", "--base", env.base, "--height", MAINNET,
                "--root", ROOT413567, "--tip", MAINNET, env.txids[1], env.txids[1000])
    assert any(c["method"] == "currentHeight" for c in r["calls"])
    # a generated block's header: the fields WhatsOnChain names
    st, hdr, body = get(env.port, "/woc/v1/bsv/regtest/block/5/header")
    assert st == 200 and hdr["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    b = env.blocks[5]
    assert doc["hash"] == b.hash[::-1].hex() and doc["height"] == 5
    assert doc["merkleroot"] == root_of(b)
    assert doc["previousblockhash"] == env.blocks[4].hash[::-1].hex()
    assert doc["nextblockhash"] == env.blocks[6].hash[::-1].hex()
    assert doc["confirmations"] == MAINNET - 5 + 1
    assert doc["time"] == struct.unpack("<I", b.header[68:72])[0]
    st, _, body = get(env.port, "/woc/v1/bsv/regtest/block/headers")
    heads = json.loads(body)
    assert [x["height"] for x in heads] == list(range(MAINNET, MAINNET - 10, -1))
    assert "nextblockhash" not in heads[0]
    # tx hex and BUMP the WoC way
    t = env.txids[7]
    st, _, body = get(env.port, f"/woc/v1/bsv/regtest/tx/{t}/proof/bump")
    assert st == 200 and body == get(env.port, f"/v1/tx/{t}/bump")[2]
    st, _, body = get(env.port, f"/woc/v1/bsv/regtest/tx/{t}/hex")
    assert st == 200 and body.strip() == get(env.port, f"/v1/tx/{t}")[2].strip()


def test_bad_input(env):
    assert "64 hex" in get_error(env.port, "/v1/tx/xyz/bump", 400)
    assert "format" in get_error(env.port, f"/v1/tx/{env.txids[0]}/bump?format=xml", 400)
    assert "not in the indexed" in get_error(env.port, "/v1/tx/" + "ab" * 32 + "/bump", 404)
    # txids of two blocks are not one compound BUMP
    other = env.gen_txids[CBONLY][0]
    err = get_error(env.port, f"/v1/block/{MAINNET}/bump?txids={env.txids[2]},{other}", 400)
    assert "one block" in err
    err = get_error(env.port, f"/v1/block/{CBONLY}/bump?txids={env.txids[2]}", 404)
    assert "not in block" in err
    assert "txids" in get_error(env.port, f"/v1/block/{MAINNET}/bump", 400)
    assert "item 2" in get_error(env.port, f"/v1/block/{MAINNET}/bump?txids={env.txids[2]},zz", 400)
    assert "height" in get_error(env.port, f"/woc/v1/bsv/regtest/block/{MAINNET + 1}/header", 404)
    assert "height" in get_error(env.port, "/woc/v1/bsv/regtest/block/-1/header", 400)
    assert "network" in get_error(env.port, "/woc/v1/bsv/main/block/1/header", 404)
    get_error(env.port, "/woc/v1/bsv/regtest/nothing", 404)
    p = cli(env.build_dir, ["merkle-proof", env.txids[0], "--format", "xml"] + env.cfg,
            check=False)
    assert p.returncode == 2 and b"bad --format" in p.stderr


def test_openapi_document():
    """docs/openapi.json: OpenAPI 3.1, every schema a valid JSON Schema,
    every $ref resolvable, and exactly the routes the route tables serve."""
    import re
    import jsonschema
    from sdk_util import openapi, routes_in_source
    doc = openapi()
    assert doc["openapi"].startswith("3.1")
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
    text = json.dumps(doc)
    for ref in re.findall(r'"\$ref": "#/components/schemas/([A-Za-z]+)"', text):
        assert ref in doc["components"]["schemas"], ref
    for path, item in doc["paths"].items():
        for method, op in item.items():
            # DELETE: /v1/webhooks/{id} (cd_http_hooks.c)
            assert method in ("get", "post", "delete") and op["responses"], (path, method)
            for p in re.findall(r"\{(\w+)\}", path):
                assert any(x["name"] == p and x["in"] == "path" for x in op["parameters"]), (path, p)
    described = {re.sub(r"\{\w+\}", "{}", p) for p in doc["paths"]}
    assert described == routes_in_source()


def test_answers_match_openapi(env):
    from sdk_util import check_schema
    t = env.txids[10]
    st, _, body = get(env.port, f"/v1/tx/{t}/bump?format=json")
    check_schema("Bump", json.loads(body))
    check_schema("WocHeader", json.loads(get(env.port, f"/woc/v1/bsv/regtest/block/{MAINNET}/header")[2]))
    check_schema("WocHeader", json.loads(get(env.port, "/woc/v1/bsv/regtest/block/0/header")[2]))
    check_schema("WocHeaders", json.loads(get(env.port, "/woc/v1/bsv/regtest/block/headers")[2]))
    check_schema("Error", json.loads(get(env.port, "/v1/tx/zz/bump")[2]))
    check_schema("Tip", json.loads(get(env.port, "/v1/tip")[2]))
