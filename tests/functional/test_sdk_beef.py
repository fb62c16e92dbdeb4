"""BEEF (BRC-62 V1, BRC-96 V2, BRC-95 Atomic) of confirmed and mempool
transactions, checked with the official @bsv/sdk (issue 15).

The simulated node's wallet signs real transactions. On a generated chain
(its last blocks spend mature coinbases), a mempool chain is built: A spends
outputs of two confirmed non-coinbase txs of one block h1, B spends A, C spends B and a
confirmed output of another block h3. conduitd mirrors the mempool (raw bytes
in mempool_tx.raw). Then tests/sdk/beef_check.mjs, with the SDK's own code:
Beef.fromBinary, isValid, Transaction.fromBEEF / fromAtomicBEEF, and
tx.verify(tracker) (every unconfirmed script run by the SDK's interpreter,
every proof checked through the SDK's WhatsOnChain tracker pointed at
conduitd's /woc routes). Also: a confirmed subject (one BUMP), the CLI's
BEEF equal to the HTTP one, C once mined, and a missing ancestor (its mempool
row deleted) answered 404 naming it.
"""

import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from daemon_util import Daemon, cli  # noqa: E402
from sdk_util import assert_http_survived, run_sdk  # noqa: E402
from test_index import create_db, psql  # noqa: E402
from test_index_daemon import wait_tip  # noqa: E402
from test_reorg import wait_relay  # noqa: E402
from test_sdk_bump import get, get_error  # noqa: E402

GENERATED = 110


class Env:
    pass


def hexid(t):
    return t[::-1].hex()


def wait_http(port, path, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        st, _, body = get(port, path)
        if st == 200:
            return body
        assert time.monotonic() < deadline, (path, st, body)
        time.sleep(0.1)


@pytest.fixture(scope="module")
def env(pg_module, build_dir, tmp_path_factory):
    from tests.simnode import SimNode
    e = Env()
    e.pg = pg_module
    e.build_dir = build_dir
    tmp = tmp_path_factory.mktemp("sdkbeef")
    node = SimNode(generate=GENERATED, txs_per_block=6, seed=44)
    node.start()
    e.node = node
    try:
        with node.lock:
            utxo = node.chain.utxo
            ops = [op for op in node.spendable_outpoints() if not utxo[op][3]]
        by_h = {}
        for op in ops:
            by_h.setdefault(utxo[op][2], []).append(op)
        # two outputs of two different txs of one block, one of another block
        h1 = next(h for h, v in by_h.items() if len({op[0] for op in v}) >= 2)
        first = by_h[h1][0]
        second = next(op for op in by_h[h1] if op[0] != first[0])
        third = next(v[0] for h, v in by_h.items() if h != h1)
        e.parents = [first[0], second[0], third[0]]
        e.blocks = {h1, utxo[third][2]}
        e.ci = create_db(pg_module, "sdkbeef")
        e.db = "sdkbeef"
        e.datadir = str(tmp / "d")
        e.cfg = ["--regtest", "--datadir", e.datadir, "--pg-conninfo", e.ci]
        e.d = Daemon(build_dir, e.datadir,
                     ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", e.ci,
                      "--parser-workers", "2", "--ring-size", "16M", "--unit-size", "64K",
                      "--http-listen", "127.0.0.1:0", "--http-client-limit", "0", "--log-level", "info"])
        e.d.start()
        try:
            m = e.d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30)
            e.port = int(m.group(1))
            e.base = f"http://127.0.0.1:{e.port}"
            wait_tip(pg_module, e.db, e.d, GENERATED)
            wait_relay(e.d)  # the node does not answer `mempool`: relay must be on first
            e.a = node.make_tx(spend=[first, second])
            node.submit_tx(e.a)
            e.b = node.make_tx(parent=e.a, vout=0)
            node.submit_tx(e.b)
            from tests.simnode.txval import Tx
            e.c = node.make_tx(spend=[(Tx.parse(e.b).txid, 0), third])
            node.submit_tx(e.c)
            e.ids = {k: hexid(Tx.parse(r).txid) for k, r in (("a", e.a), ("b", e.b), ("c", e.c))}
            for k in "abc":
                wait_http(e.port, f"/v1/tx/{e.ids[k]}")
            yield e
            assert_http_survived(e.d)
        finally:
            e.d.stop()
    finally:
        node.stop()


@pytest.mark.parametrize("version", ["1", "2", "atomic"])
def test_beef_of_a_mempool_chain(env, version):
    r = run_sdk("beef_check.mjs", "--base", env.base, "--txid", env.ids["c"],
                "--version", version, "--expect-txs", 6, "--expect-bumps", 2)
    assert r["verify"] is True and r["beef_verify"] is True
    txids = [t["txid"] for t in r["txs"]]
    # parents first (beef_check checks the order), the subject last
    assert txids[-1] == env.ids["c"]
    assert sorted(txids) == sorted([env.ids[k] for k in "abc"] + [hexid(p) for p in env.parents])
    assert txids.index(env.ids["a"]) < txids.index(env.ids["b"])
    # one compound BUMP for the block holding two parents
    assert sorted(len(b["txids"]) for b in r["bumps"]) == [1, 2]
    assert {b["blockHeight"] for b in r["bumps"]} == env.blocks


@pytest.mark.parametrize("version", ["1", "2", "atomic"])
def test_beef_of_a_confirmed_tx(env, version):
    t = hexid(env.parents[0])
    r = run_sdk("beef_check.mjs", "--base", env.base, "--txid", t, "--version", version,
                "--expect-txs", 1, "--expect-bumps", 1)
    assert r["subject_has_proof"] is True and r["verify"] is True


def test_cli_equals_http(env):
    for v in ("1", "2", "atomic"):
        p = cli(env.build_dir, ["beef", env.ids["c"], "--version", v] + env.cfg)
        st, hdr, body = get(env.port, f"/v1/tx/{env.ids['c']}/beef?version={v}")
        assert st == 200 and hdr["Content-Type"].startswith("text/plain")
        assert p.stdout == body
        st, hdr, raw = get(env.port, f"/v1/tx/{env.ids['c']}/beef?version={v}&format=binary")
        assert st == 200 and hdr["Content-Type"] == "application/octet-stream"
        assert raw.hex() == body.decode().strip()


def test_bad_input(env):
    assert "version" in get_error(env.port, f"/v1/tx/{env.ids['c']}/beef?version=3", 400)
    assert "64 hex" in get_error(env.port, "/v1/tx/zz/beef", 400)
    assert "neither" in get_error(env.port, "/v1/tx/" + "cd" * 32 + "/beef", 404)
    p = cli(env.build_dir, ["beef", env.ids["c"], "--version", "9"] + env.cfg, check=False)
    assert p.returncode == 2


def test_mined_then_missing_ancestor(env):
    """C mined: its BEEF is one BUMP and C. Then a new mempool chain D -> E
    with D's mempool row deleted from PostgreSQL: E's BEEF is a 404 naming D
    (never a partial BEEF)."""
    env.node.mine(1)
    wait_tip(env.pg, env.db, env.d, GENERATED + 1)
    deadline = time.monotonic() + 60
    while True:
        r = run_sdk("beef_check.mjs", "--base", env.base, "--txid", env.ids["c"],
                    expect_ok=False)
        if r.get("ok") and len(r["txs"]) == 1:
            break
        assert time.monotonic() < deadline, r
        time.sleep(0.2)
    assert r["bumps"][0]["blockHeight"] == GENERATED + 1
    # a new mempool chain D -> E; E's BEEF needs D; D's row removed
    from tests.simnode.txval import Tx
    d = env.node.make_tx(parent=env.c, vout=0)
    env.node.submit_tx(d)
    e2 = env.node.make_tx(parent=d, vout=0)
    env.node.submit_tx(e2)
    did, eid = hexid(Tx.parse(d).txid), hexid(Tx.parse(e2).txid)
    wait_http(env.port, f"/v1/tx/{eid}")
    wait_http(env.port, f"/v1/tx/{did}")
    run_sdk("beef_check.mjs", "--base", env.base, "--txid", eid, "--expect-txs", 3)
    psql(env.pg, env.db, "DELETE FROM mempool_tx WHERE tx_hash = '\\x%s'::bytea;"
         % Tx.parse(d).txid.hex())
    err = get_error(env.port, f"/v1/tx/{eid}/beef", 404)
    assert did in err and eid in err, err
