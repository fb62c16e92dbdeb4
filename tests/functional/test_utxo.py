"""Outputs, UTXOs, balances and histories (issue 14, sql/007_outputs.sql).

The real regtest chains of ../shared/data are indexed with conduit-index-file
(the parser workers' code path); the UTXO set is computed independently here,
in Python (tests/simnode/protocol.py's decoder and our own base58check), and
for every address and every script hash of every output `cd_balance` and
`cd_utxos` must equal it: on chain 116, after a reorg to the competing
branch (chain 118: the wallet txs move to another block) and after a reorg
to chain 117 (two txs of the old block 116 return to the mempool with their
outputs). The wallet txs of blockchain_115_3677f4 show both directions in
the history of their keys.
"""

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from test_index import cli, create_db, psql, run_index  # noqa: E402

from tests.simnode.protocol import parse_block  # noqa: E402

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58check(version, payload):
    data = bytes([version]) + payload
    data += hashlib.sha256(hashlib.sha256(data).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    s = ""
    while n:
        n, r = divmod(n, 58)
        s = B58[r] + s
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + s


def address_of(script, main=False):
    """The address of a P2PKH / P2SH locking script, else None."""
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return b58check(0 if main else 111, script[3:23])
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[22:] == b"\x87":
        return b58check(5 if main else 196, script[2:22])
    return None


def sha256d(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def chain_txs(shared, name):
    """[(height, pos, txid, raw, ins, outs)] of a chain dir, in chain order."""
    d = os.path.join(shared, "regtest", name)
    out = []
    for height, h in enumerate(open(os.path.join(d, "headers.txt")).read().split()):
        raw = open(os.path.join(d, h), "rb").read()
        _, txs = parse_block(raw)
        for pos, (s, e, ins, outs) in enumerate(txs):
            out.append((height, pos, sha256d(raw[s:e]), raw[s:e], ins, outs))
    return out


def node_chain_txs(node):
    """chain_txs of the simulated node's active chain."""
    out = []
    for height in range(node.chain.height + 1):
        raw = node.chain.at(height).read()
        _, txs = parse_block(raw)
        for pos, (s, e, ins, outs) in enumerate(txs):
            out.append((height, pos, sha256d(raw[s:e]), raw[s:e], ins, outs))
    return out


CONFIRMED_UTXOS = """
SELECT cd_txid_hex(t.tx_hash), o.idx, o.value, b.height FROM outputs o
JOIN blocks b ON b.block_id = o.block_id AND b.on_best_chain
JOIN transactions t ON t.block_id = o.block_id AND t.tx_pos = o.tx_pos
WHERE NOT EXISTS (SELECT 1 FROM inputs i JOIN blocks s ON s.block_id = i.block_id
                  AND s.on_best_chain WHERE i.prev_hash = t.tx_hash AND i.prev_idx = o.idx);
"""


def check_confirmed_utxos(pg, db, txs):
    """The index's confirmed UTXO set and every script hash's confirmed
    balance equal the set computed here from the blocks' bytes (mempool
    rows, if any, are not compared). Returns the number of UTXOs."""
    u = utxo_set(txs)
    want = sorted((k[0][::-1].hex(), str(k[1]), str(v[0]), str(v[2])) for k, v in u.items())
    assert sorted(psql(pg, db, CONFIRMED_UTXOS)) == want
    per = {}
    for (txid, n), (v, sc, h) in u.items():
        per[hashlib.sha256(sc).hexdigest()] = per.get(hashlib.sha256(sc).hexdigest(), 0) + v
    vals = ",".join("('\\x%s'::bytea)" % h for h in per)
    rows = psql(pg, db, "SELECT encode(h, 'hex'), b.confirmed FROM (VALUES %s) v(h), "
                        "cd_balance('script', h) b;" % vals)
    assert {r[0]: int(r[1]) for r in rows} == per
    return len(u)


def utxo_set(txs, mempool=()):
    """{(txid, vout): (value, script, height)}: the outputs of txs (chain
    order) not spent by them; then the mempool txs (height None) applied."""
    u = {}
    for height, pos, txid, raw, ins, outs in list(txs) + [(None,) + m[1:] for m in mempool]:
        if pos != 0 or height is None:
            for prev, idx, _, _ in ins:
                u.pop((prev, idx), None)
        for n, (v, sc) in enumerate(outs):
            u[(txid, n)] = (v, sc, height)
    return u


def by_script(u):
    r = {}
    for (txid, n), (v, sc, h) in u.items():
        r.setdefault(sc, []).append((txid[::-1].hex(), n, v, h))
    return r


def check_against(pg, db, u, confirmed_u):
    """cd_balance / cd_utxos for every script hash and address equal u."""
    scripts = by_script(u)
    conf = by_script(confirmed_u)
    allsc = set(scripts) | set(conf)
    # every script hash in one statement
    vals = ",".join("('\\x%s'::bytea)" % hashlib.sha256(sc).hexdigest() for sc in allsc)
    rows = psql(pg, db, "SELECT encode(h, 'hex'), b.confirmed, b.unconfirmed, b.utxos "
                        "FROM (VALUES %s) v(h), cd_balance('script', h) b;" % vals)
    got = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}
    n_addr = 0
    for sc in allsc:
        want_total = sum(x[2] for x in scripts.get(sc, []))
        want_conf = sum(x[2] for x in conf.get(sc, []))
        c, unc, n = got[hashlib.sha256(sc).hexdigest()]
        assert (c, c + unc, n) == (want_conf, want_total, len(scripts.get(sc, []))), sc.hex()
        a = address_of(sc)
        if a is None:
            continue
        n_addr += 1
        utx = psql(pg, db, "SELECT txid, vout, value, coalesce(height::text, 'null') FROM "
                           "cd_utxos('script', sha256(cd_address_script('%s', 'regtest')), "
                           "10000);" % a)
        want = sorted(scripts.get(sc, []), key=lambda x: (x[3] is None, x[3] or 0))
        assert sorted(utx) == sorted((t, str(n), str(v), "null" if h is None else str(h))
                                     for t, n, v, h in want)
    return n_addr


@pytest.fixture(scope="module")
def chains(shared_data):
    if not os.path.isdir(os.path.join(shared_data, "regtest", "blockchain_118_0ebc17")):
        pytest.skip("no regtest chains in %s" % shared_data)
    return {n: chain_txs(shared_data, n) for n in
            ("blockchain_115_3677f4", "blockchain_116_7c9cd2", "blockchain_117_28c2d3",
             "blockchain_118_0ebc17")}


CONDUITDB = os.path.join(HERE, "data", "conduitdb")


def check_conduitdb_spends(pg, db):
    """ConduitDB's UTXO_REGISTRATIONS (tests/functional/data/conduitdb/
    utxo_spends.json): outpoints its tests saw spent on both branches; each
    is an output of the index whose key lists it as spent on the best chain."""
    regs = json.load(open(os.path.join(CONDUITDB, "utxo_spends.json")))["UTXO_REGISTRATIONS"]
    assert len(regs) >= 10
    for txid, n in regs:
        r = psql(pg, db, "SELECT k.spend_height IS NOT NULL FROM outputs o "
                         "JOIN transactions t USING (block_id, tx_pos) "
                         "JOIN blocks b ON b.block_id = o.block_id AND b.on_best_chain, "
                         "cd_key_outputs('script', o.script_hash) k "
                         "WHERE t.tx_hash = cd_txid('%s') AND o.idx = %d "
                         "AND k.tx_hash = t.tx_hash AND k.vout = o.idx;" % (txid, n))
        assert r == [("t",)], (txid, n, r)


def reorg_to(pg, db, chain_dir):
    tip_hash = open(os.path.join(chain_dir, "headers.txt")).read().split()[-1]
    psql(pg, db, "INSERT INTO chain_target (singleton, block_hash, height) "
                 "SELECT true, block_hash, height FROM blocks WHERE block_hash = cd_txid('%s') "
                 "ON CONFLICT (singleton) DO UPDATE SET block_hash = EXCLUDED.block_hash, "
                 "height = EXCLUDED.height;" % tip_hash)
    r = psql(pg, db, "SELECT cd_reorg_step();")
    assert r[0][0].startswith("reorg"), r


def test_balances_and_utxos_through_reorgs(pg_module, build_dir, shared_data, chains):
    pg = pg_module
    ci = create_db(pg, "utxo")
    rt = os.path.join(shared_data, "regtest")
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_116_7c9cd2")])
    # every output row equals the decoder's
    rows = psql(pg, "utxo", "SELECT cd_txid_hex(t.tx_hash), o.idx, o.value, "
                            "encode(o.script_hash, 'hex'), coalesce(encode(o.script, 'hex'), '-') "
                            "FROM outputs o JOIN transactions t USING (block_id, tx_pos);")
    want = set()
    for height, pos, txid, raw, ins, outs in chains["blockchain_116_7c9cd2"]:
        for n, (v, sc) in enumerate(outs):
            want.add((txid[::-1].hex(), str(n), str(v), hashlib.sha256(sc).hexdigest(),
                      sc.hex() if len(sc) <= 64 else "-"))
    assert set(rows) == want and len(rows) == len(want)
    # the data carriers of block 116 (65 kB outputs) are not stored inline
    assert ("-" in {r[4] for r in rows})

    u = utxo_set(chains["blockchain_116_7c9cd2"])
    assert check_against(pg, "utxo", u, u) >= 3
    check_conduitdb_spends(pg, "utxo")

    # reorg to the competing branch of chain 118: every wallet tx moves to
    # block 116 of that branch, the data carriers to block 118
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_118_0ebc17")])
    reorg_to(pg, "utxo", os.path.join(rt, "blockchain_118_0ebc17"))
    assert psql(pg, "utxo", "SELECT count(*) FROM mempool_tx;") == [("0",)]
    u = utxo_set(chains["blockchain_118_0ebc17"])
    check_against(pg, "utxo", u, u)
    check_conduitdb_spends(pg, "utxo")


def test_reorg_returns_outputs_to_the_mempool(pg_module, build_dir, shared_data, chains):
    pg = pg_module
    ci = create_db(pg, "utxo117")
    rt = os.path.join(shared_data, "regtest")
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_116_7c9cd2")])
    run_index(build_dir, ci, ["--chain", os.path.join(rt, "blockchain_117_28c2d3")])
    reorg_to(pg, "utxo117", os.path.join(rt, "blockchain_117_28c2d3"))
    pool = set(bytes.fromhex(r[0]) for r in psql(pg, "utxo117",
                                                   "SELECT encode(tx_hash, 'hex') FROM mempool_tx;"))
    # the two data carriers of the old block 116 are not in chain 117
    old = {t[2]: t for t in chains["blockchain_116_7c9cd2"]}
    assert len(pool) >= 2 and pool <= set(old)
    # their outputs came back with them, equal to the block's
    n = psql(pg, "utxo117", "SELECT count(*) FROM mempool_outputs;")[0][0]
    assert int(n) == sum(len(old[h][5]) for h in pool)
    mem = [old[h] for h in sorted(pool, key=lambda h: old[h][1])]
    u = utxo_set(chains["blockchain_117_28c2d3"], mem)
    conf = utxo_set(chains["blockchain_117_28c2d3"])
    check_against(pg, "utxo117", u, conf)
    # a mempool output: height null in cd_utxos, counted as unconfirmed
    h = sorted(pool)[0]
    sc = old[h][5][0][1]
    r = psql(pg, "utxo117", "SELECT txid, vout, coalesce(height::text, 'null') FROM "
                            "cd_utxos('script', '\\x%s'::bytea);" % hashlib.sha256(sc).hexdigest())
    assert (h[::-1].hex(), "0", "null") in r
    # eviction takes them along
    psql(pg, "utxo117", "SELECT cd_mempool_evict(array_agg(tx_hash), 'expired', 0) FROM mempool_tx;")
    assert psql(pg, "utxo117", "SELECT count(*) FROM mempool_outputs;") == [("0",)]


WALLET_PKH = "17aa9ecb9e38b91bddcc5e8d2d26154be90d8996"
PAY = "d53a9ebfac748561132e49254c42dbe518080c2a5956822d5d3914d47324e842"    # 111:1
SPEND = "47f3f47a256d70950ff5690ea377c24464310489e3f54d01b817dd0088f0a095"  # 115:1


def test_history_of_the_wallet_keys(pg_module, build_dir, shared_data, chains):
    pg = pg_module
    ci = create_db(pg, "hist115")
    run_index(build_dir, ci, ["--chain", os.path.join(shared_data, "regtest",
                                                      "blockchain_115_3677f4")])
    addr = b58check(111, bytes.fromhex(WALLET_PKH))
    key = "sha256(cd_address_script('%s', 'regtest'))" % addr
    h = psql(pg, "hist115", "SELECT txid, height, pos, direction FROM cd_history('script', %s);"
             % key)
    assert h == [(PAY, "111", "1", "receive"), (SPEND, "115", "1", "spend")]
    # the same through the pushdata key of the hash160 (OUTPUT) ...
    pk = hashlib.sha256(bytes.fromhex(WALLET_PKH)).hexdigest()
    hp = psql(pg, "hist115", "SELECT txid, height, pos, direction FROM "
                             "cd_history('push', decode('%s', 'hex'));" % pk)
    assert hp == h
    # ... and the Electrum script hash (display order)
    sh = hashlib.sha256(bytes.fromhex("76a914" + WALLET_PKH + "88ac")).digest()[::-1].hex()
    hs = psql(pg, "hist115", "SELECT txid FROM cd_history('script', cd_scripthash('%s'));" % sh)
    assert hs == [(PAY,), (SPEND,)]
    # the P2PK of 112:1 is spent by the same tx: its pushdata key (the pubkey)
    # shows both directions too
    pub = psql(pg, "hist115", "SELECT txid, direction FROM cd_history('push', decode("
                              "'04bca2ae277997940152716854a95347819c2e07d370d22c093b39708fb9d5eb', "
                              "'hex'));")
    assert pub == [("88c92bb09626c7d505ed861ae8fa7e7aaab5b816fc517eac7a8a6c7f28b1b210", "receive"),
                   (SPEND, "spend")]
    # paging: one row per page, the cursor is the last row's (height, pos)
    p1 = psql(pg, "hist115", "SELECT txid, height, pos FROM cd_history('script', %s, 1);" % key)
    p2 = psql(pg, "hist115", "SELECT txid FROM cd_history('script', %s, 1, %s, %s);"
              % (key, p1[0][1], p1[0][2]))
    assert [p1[0][0], p2[0][0]] == [PAY, SPEND]
    # 001's cd_address_key checks the version byte now: the regtest address
    # gives the hash160's key, the mainnet address of the same hash an error
    assert psql(pg, "hist115", "SELECT encode(cd_address_key('%s'), 'hex');" % addr) == [
        (hashlib.sha256(bytes.fromhex(WALLET_PKH)).hexdigest(),)]
    p = subprocess.run(["psql", "-X", "-q", "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres",
                        "-d", "hist115", "-c", "SELECT cd_address_key('%s');"
                        % b58check(0, bytes.fromhex(WALLET_PKH))],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode != 0 and "version byte 0" in p.stderr.decode(), p.stderr
    # spent: no UTXO, balance 0
    assert psql(pg, "hist115", "SELECT * FROM cd_utxos('script', %s);" % key) == []
    assert psql(pg, "hist115", "SELECT * FROM cd_balance('script', %s);" % key) == [("0", "0", "0")]


def test_address_network_and_errors(pg_module, build_dir, shared_data, chains):
    pg = pg_module
    create_db(pg, "addr")
    run_index(build_dir, "%s dbname=addr" % pg.conninfo.replace("dbname=postgres", ""),
              ["--migrate-only"])
    pkh = bytes.fromhex(WALLET_PKH)

    def script(a, net="regtest"):
        return psql(pg, "addr", "SELECT encode(cd_address_script('%s', '%s'), 'hex');" % (a, net))

    assert script(b58check(111, pkh)) == [("76a914%s88ac" % WALLET_PKH,)]
    assert script(b58check(196, pkh)) == [("a914%s87" % WALLET_PKH,)]
    assert script(b58check(0, pkh), "main") == [("76a914%s88ac" % WALLET_PKH,)]
    assert script(b58check(5, pkh), "main") == [("a914%s87" % WALLET_PKH,)]
    for bad, net, why in [(b58check(0, pkh), "regtest", "version byte 0"),
                          (b58check(111, pkh), "main", "version byte 111"),
                          (b58check(111, pkh)[:-1] + "2", "regtest", "checksum"),
                          ("1BoatSLRHtKNngkdXEeobR76b53LETtpy0", "main", "base58"),
                          ("abc", "main", "length")]:
        p = subprocess.run(["psql", "-X", "-q", "-h", pg.sockdir, "-p", str(pg.port), "-U",
                            "postgres", "-d", "addr", "-c",
                            "SELECT cd_address_script('%s', '%s');" % (bad, net)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.returncode != 0 and why in p.stderr.decode(), (bad, p.stderr)


# ---- conduit-cli and the HTTP API, against a daemon that indexed chain 116 ----

def http_get(port, path):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_cli_and_http(pg_module, build_dir, simnode_regtest116, tmp_path, chains):
    from daemon_util import Daemon
    from test_index_daemon import wait_tip
    pg = pg_module
    ci = create_db(pg, "wallet116")
    dd = str(tmp_path / "d")
    d = Daemon(build_dir, dd, ["--regtest", "--connect", "127.0.0.1:%d" % simnode_regtest116.port,
                               "--pg-conninfo", ci, "--parser-workers", "1", "--ring-size", "16M",
                               "--unit-size", "64K", "--http-listen", "127.0.0.1:0",
                               "--log-level", "info"]).start()
    try:
        port = int(d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        wait_tip(pg, "wallet116", d, 116)
        u = utxo_set(chains["blockchain_116_7c9cd2"])
        scripts = by_script(u)

        def clij(*args):
            p = cli(build_dir, list(args) + ["--json", "--regtest", "--datadir", dd,
                                             "--pg-conninfo", ci])
            assert p.returncode == 0, p.stderr
            return [json.loads(line) for line in p.stdout.decode().splitlines()]

        n = 0
        for sc, outs in scripts.items():
            a = address_of(sc)
            if a is None:
                continue
            n += 1
            want = sorted(({"txid": t, "vout": v, "value": val, "height": h}
                           for t, v, val, h in outs), key=lambda r: (r["height"], r["txid"]))
            got = clij("utxos", a)
            assert sorted(got, key=lambda r: (r["height"], r["txid"])) == want
            st, doc = http_get(port, "/v1/address/%s/utxos?limit=10000" % a)
            assert st == 200 and doc["utxos"] == got and doc["next"] is None
            bal = {"confirmed": sum(o[2] for o in outs), "unconfirmed": 0, "utxos": len(outs)}
            assert clij("balance", a) == [bal]
            sh = hashlib.sha256(sc).digest()[::-1].hex()
            assert http_get(port, "/v1/scripthash/%s/balance" % sh) == (200, bal)
            assert clij("balance", "scripthash:" + sh) == [bal]
            # paging by the cursor, 7 rows a page, gives the same rows
            rows, after = [], ""
            while True:
                st, doc = http_get(port, "/v1/address/%s/utxos?limit=7%s" % (a, after))
                assert st == 200
                rows += doc["utxos"]
                if doc["next"] is None:
                    break
                after = "&after=" + doc["next"]
            assert rows == got
        assert n >= 3

        # the wallet P2PKH: history with both directions, CLI text and JSON, HTTP
        addr = b58check(111, bytes.fromhex(WALLET_PKH))
        hist = [{"txid": PAY, "height": 111, "pos": 1, "direction": "receive"},
                {"txid": SPEND, "height": 115, "pos": 1, "direction": "spend"}]
        assert clij("history", addr) == hist
        assert http_get(port, "/v1/address/%s/history" % addr) == (200, {"history": hist,
                                                                         "next": None})
        pk = hashlib.sha256(bytes.fromhex(WALLET_PKH)).hexdigest()
        assert http_get(port, "/v1/pushdata/%s/txhistory" % pk)[1]["history"] == hist
        assert clij("history", "pushdata:" + pk) == hist
        p = cli(build_dir, ["history", addr, "--regtest", "--datadir", dd, "--pg-conninfo", ci])
        assert p.stdout.decode().splitlines() == ["%s 111 1 receive" % PAY,
                                                  "%s 115 1 spend" % SPEND]
        # today's pushdata history keeps its answer
        st, doc = http_get(port, "/v1/pushdata/%s/history" % pk)
        assert st == 200 and doc["key"] == pk and doc["history"][0]["flags"] == 1

        # a long locking script (the 65,535-byte data carrier of block 116)
        # is served from the block store on request
        carrier = [t for t in chains["blockchain_116_7c9cd2"] if t[2][::-1].hex().startswith(
            "4723501d")][0]
        sc = carrier[5][0][1]
        assert len(sc) > 65535
        sh = hashlib.sha256(sc).digest()[::-1].hex()
        got = clij("utxos", "scripthash:" + sh, "--script")
        assert got == [{"txid": carrier[2][::-1].hex(), "vout": 0, "value": carrier[5][0][0],
                        "height": 116, "script": sc.hex()}]
        st, doc = http_get(port, "/v1/scripthash/%s/utxos?script=1" % sh)
        assert st == 200 and doc["utxos"] == got

        # bad input: 400 / exit 2 with the reason
        main_addr = b58check(0, bytes.fromhex(WALLET_PKH))
        for path, why in [("/v1/address/%s/utxos" % main_addr, "version byte 0"),
                          ("/v1/address/%s/balance" % (addr[:-1] + "x"), "checksum"),
                          ("/v1/scripthash/abc/utxos", "64 hex"),
                          ("/v1/address/%s/utxos?limit=0" % addr, "limit"),
                          ("/v1/address/%s/utxos?after=1.2" % addr, "cursor"),
                          ("/v1/address/%s/history?after=x" % addr, "cursor")]:
            st, doc = http_get(port, path)
            assert st == 400 and why in doc["error"], (path, doc)
        for args, why in [(["balance", main_addr], "version byte 0"),
                          (["utxos", "ab" * 32], "ambiguous"),
                          (["history", addr, "--after", "zz"], "cursor")]:
            p = cli(build_dir, args + ["--regtest", "--datadir", dd, "--pg-conninfo", ci])
            assert p.returncode == 2 and why in p.stderr.decode(), (args, p.stderr)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-3000:]


# ---- the examples of docs/QUERIES.md ("Outputs, UTXOs, balances ...") ----

DOC = open(os.path.join(HERE, "..", "..", "docs", "QUERIES.md"), encoding="utf-8").read()
DOC_QUERIES = dict(re.findall(r"```sql\n-- wallet query: (\w+)\n(.*?)```", DOC, re.S))
DOC_RESULTS = dict(re.findall(r"```text\n-- result: (\w+)\n(.*?)```", DOC, re.S))


def test_documented_queries(pg_module, build_dir, shared_data, chains):
    assert len(DOC_QUERIES) >= 7 and set(DOC_QUERIES) == set(DOC_RESULTS)
    ci = create_db(pg_module, "docq")
    run_index(build_dir, ci, ["--chain", os.path.join(shared_data, "regtest",
                                                      "blockchain_116_7c9cd2")])
    for name, sql in sorted(DOC_QUERIES.items()):
        v = dict(re.findall(r"-- vars: (\w+)=(\S+)", sql))
        got = ["|".join(r) for r in psql(pg_module, "docq", sql, **v)]
        assert got == DOC_RESULTS[name].splitlines(), (name, got)
    # the CLI examples
    out = cli(build_dir, ["balance", "n2ekqiw96ceQWFrKSziKTEi5fsRuZKQdun", "--regtest",
                          "--pg-conninfo", ci, "--datadir", "/nonexistent"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == "confirmed 499999868148\nunconfirmed 0\nutxos 100\n"
    out = cli(build_dir, ["utxos", "n2ekqiw96ceQWFrKSziKTEi5fsRuZKQdun", "--regtest", "--json",
                          "--limit", "2", "--pg-conninfo", ci, "--datadir", "/nonexistent"])
    assert out.returncode == 0 and out.stderr.decode() == "next: 12.0.0\n", out.stderr
    assert [json.loads(x)["height"] for x in out.stdout.decode().splitlines()] == [11, 12]
    out = cli(build_dir, ["utxos", "n2ekqiw96ceQWFrKSziKTEi5fsRuZKQdun", "--regtest", "--json",
                          "--limit", "2", "--after", "12.0.0", "--pg-conninfo", ci,
                          "--datadir", "/nonexistent"])
    assert [json.loads(x)["height"] for x in out.stdout.decode().splitlines()] == [14, 15]
