"""The transaction index on real chain data, queried with docs/QUERIES.md.

The regtest chain blockchain_116_7c9cd2 and mainnet block 413567 are indexed
into a real PostgreSQL through conduit-index-file (the parser worker's code
path: cd_wk_index_unit -> COPY -> exactly-once commit, then the block/tip
bookkeeping). Every query of docs/QUERIES.md is extracted from the document
and run with psql; the expected rows are those of ../shared/data/README.md.
"""

import os
import re
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
QUERIES_MD = os.path.join(ROOT, "docs", "QUERIES.md")

CHAIN = "regtest/blockchain_116_7c9cd2"


def load_queries():
    text = open(QUERIES_MD, encoding="utf-8").read()
    out = {}
    for block in re.findall(r"```sql\n(.*?)```", text, re.S):
        m = re.match(r"-- query: (\w+)\n", block)
        if m:
            out[m.group(1)] = block
    return out


QUERIES = load_queries()


def indexer(build_dir):
    exe = os.path.join(build_dir, "bench", "index", "conduit-index-file")
    if not os.path.exists(exe):
        pytest.skip(f"{exe} not built")
    return exe


def create_db(pg, name):
    pg.psql(f"CREATE DATABASE {name}")
    return f"{pg.conninfo.replace('dbname=postgres', '')} dbname={name}"


def run_index(build_dir, conninfo, args, check=True, **kw):
    p = subprocess.run([indexer(build_dir), "--conninfo", conninfo] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"conduit-index-file failed ({p.returncode}):\n"
                             + p.stdout.decode() + p.stderr.decode())
    return p


def psql(pg, db, sql, **variables):
    args = ["psql", "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1",
            "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-d", db]
    for k, v in variables.items():
        args += ["-v", f"{k}={v}"]
    out = subprocess.run(args, input=sql.encode(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, check=True)
    return [tuple(line.split("|")) for line in out.stdout.decode().splitlines() if line]


def query(pg, db, name, **variables):
    assert name in QUERIES, f"docs/QUERIES.md has no query '{name}'"
    return psql(pg, db, QUERIES[name], **variables)


@pytest.fixture(scope="module")
def chain_db(pg_module, build_dir, shared_data):
    ci = create_db(pg_module, "chain116")
    # small units: most blocks are one unit, the large block 116 is several
    run_index(build_dir, ci, ["--chain", os.path.join(shared_data, CHAIN),
                              "--unit-size", "4000", "--jobs", "2"])
    return "chain116"


def test_documented_queries_all_tested():
    # every query in the document appears in a test below
    src = open(__file__, encoding="utf-8").read()
    for name in QUERIES:
        assert f'"{name}"' in src, f"query {name} of docs/QUERIES.md is not tested"
    assert len(QUERIES) >= 9


def test_best_tip(pg_module, chain_db, shared_data):
    hashes = open(os.path.join(shared_data, CHAIN, "headers.txt")).read().split()
    assert query(pg_module, chain_db, "best_tip") == [(hashes[116], "116")]


def test_tx_location(pg_module, chain_db, shared_data):
    rows = query(pg_module, chain_db, "tx_location",
                 txid="47f3f47a256d70950ff5690ea377c24464310489e3f54d01b817dd0088f0a095")
    assert len(rows) == 1
    block_hash, height, pos, off, size = rows[0]
    hashes = open(os.path.join(shared_data, CHAIN, "headers.txt")).read().split()
    assert (block_hash, height, pos) == (hashes[115], "115", "1")
    raw = open(os.path.join(shared_data, CHAIN, hashes[115]), "rb").read()
    import hashlib
    tx = raw[int(off):int(off) + int(size)]
    txid = hashlib.sha256(hashlib.sha256(tx).digest()).digest()[::-1].hex()
    assert txid == "47f3f47a256d70950ff5690ea377c24464310489e3f54d01b817dd0088f0a095"
    assert query(pg_module, chain_db, "tx_location", txid="00" * 32) == []


P2PKH_TX = "d53a9ebfac748561132e49254c42dbe518080c2a5956822d5d3914d47324e842"
P2PK_TX = "88c92bb09626c7d505ed861ae8fa7e7aaab5b816fc517eac7a8a6c7f28b1b210"
MS_TX = "479833ff49d1000cd6f9d23a88924d22eaeae8b9d543e773d7420c2bbfd73fe2"
MS_SPEND = "0120eae6dc11459fe79fbad26f998f4f8c5b75fa6f0fff5b0beca4f35ea7d721"
SPEND_TX = "47f3f47a256d70950ff5690ea377c24464310489e3f54d01b817dd0088f0a095"
P2SH_TX = "49250a55f59e2bbf1b0615508c2d586c1336d7c0c6d493f02bc82349fabe6609"
P2SH_SPEND = "1afaa1c87ca193480c9aa176f08af78e457e8b8415c71697eded1297ed953db6"


def test_history_pubkey_hash_and_address(pg_module, chain_db):
    want = [(P2PKH_TX, "0", "1", "111")]
    assert query(pg_module, chain_db, "history_pubkey_hash",
                 hash160="17aa9ecb9e38b91bddcc5e8d2d26154be90d8996") == want
    # the same hash160 as a regtest P2PKH address (version 0x6f)
    assert query(pg_module, chain_db, "history_address",
                 address="mhg6ENXhPL6LsEUG6oxdqi8LjE2bsW6NMW") == want
    with pytest.raises(subprocess.CalledProcessError):  # bad checksum
        query(pg_module, chain_db, "history_address",
              address="mhg6ENXhPL6LsEUG6oxdqi8LjE2bsW6NMX")


def test_keys_of_each_script_type(pg_module, chain_db):
    """The OUTPUT/INPUT keys listed in shared/data/README.md, via the key."""
    sql = ("SELECT cd_txid_hex(tx_hash), idx, flags, height FROM best_pushdata "
           "WHERE push_hash = decode(:'key', 'hex') ORDER BY height, tx_pos, flags, idx;")
    cases = {
        # P2PKH output
        "e351e4d2499786e8a3ac5468cbf1444b3416b41e424524b50e2dafc8f6f454db":
            [(P2PKH_TX, "0", "1", "111")],
        # P2PK output
        "04bca2ae277997940152716854a95347819c2e07d370d22c093b39708fb9d5eb":
            [(P2PK_TX, "0", "1", "112")],
        # bare 1-of-2 multisig, output 2, both keys
        "9ed50dfe0d3a28950ee9a2ee41dce7193dd8666c4ff42c974de1bde60332a701":
            [(MS_TX, "2", "1", "113")],
        "e6221c70e0f3c686255b548789c63d0e2c6aa795ad87324dfd71d0b53d90d59d":
            [(MS_TX, "2", "1", "113")],
        # P2SH output 1
        "5e7583878789b03276d2d60a1cf3772a999084e3b12d0d3c1a33a30bd15609db":
            [(P2SH_TX, "1", "1", "115")],
        # the P2PKH spend's pubkey, input 1
        "44c55cbcb8222d6afd5adc5f72ec3fe2b6bbefad27f9c920805ebb9cb6a43de3":
            [(SPEND_TX, "1", "2", "115")],
    }
    for key, want in cases.items():
        assert psql(pg_module, chain_db, sql, key=key) == want, key


def test_history_pubkey(pg_module, chain_db):
    # pubkey 03adc147...035068 of the P2PKH spend: its key is 44c55cbc...
    spend = psql(pg_module, chain_db,
                 "SELECT encode(push_hash, 'hex') FROM best_pushdata "
                 "WHERE flags = 2 AND tx_hash = cd_txid(:'t') AND idx = 1;", t=SPEND_TX)
    assert spend == [("44c55cbcb8222d6afd5adc5f72ec3fe2b6bbefad27f9c920805ebb9cb6a43de3",)]
    # find the pubkey bytes from the raw input script to call the documented query
    pk = pubkey_of_spend(pg_module, chain_db)
    assert pk.startswith("03adc147") and pk.endswith("035068")
    assert query(pg_module, chain_db, "history_pubkey", pubkey=pk) == [
        (SPEND_TX, "1", "2", "115")]


def pubkey_of_spend(pg, db):
    """The 33-byte push of input 1 of 47f3f47a, read back from the raw block."""
    import glob
    loc = query(pg, db, "tx_location", txid=SPEND_TX)[0]
    shared = os.environ.get("CD_SHARED_DATA",
                            os.path.join(ROOT, "..", "shared", "data"))
    raw = open(glob.glob(os.path.join(shared, CHAIN, loc[0]))[0], "rb").read()
    tx = raw[int(loc[3]):int(loc[3]) + int(loc[4])]
    i = 5  # version + 1-byte input count
    for n in range(2):
        i += 36
        slen = tx[i]
        script = tx[i + 1:i + 1 + slen]
        i += 1 + slen + 4
    j = 0
    while j < len(script):
        op = script[j]
        if op == 33:
            return script[j + 1:j + 34].hex()
        j += 1 + op
    raise AssertionError("no 33-byte push")


def test_spent_by(pg_module, chain_db):
    q = lambda t, n: query(pg_module, chain_db, "spent_by", txid=t, n=n)  # noqa: E731
    # the P2PKH output (d53a9ebf:0) and the P2PK output are spent by 47f3f47a
    # inputs 1 and 0 (shared/data/README.md says "d53a9ebf...:1 -> 47f3f47a...,
    # input 1"; the raw block 115 shows input 1 spends d53a9ebf:0, and
    # d53a9ebf:1 is spent by 88c92bb0 input 0)
    assert q(P2PKH_TX, 0) == [(SPEND_TX, "1", "115")]
    assert q(P2PK_TX, 0) == [(SPEND_TX, "0", "115")]
    assert q(P2PKH_TX, 1) == [(P2PK_TX, "0", "112")]
    assert q(MS_TX, 2) == [(MS_SPEND, "0", "113")]
    assert q(P2SH_TX, 1) == [(P2SH_SPEND, "0", "115")]
    assert q(P2SH_SPEND, 0) == []  # unspent


def test_outputs_with_spends(pg_module, chain_db):
    # the mining wallet key: 112 outputs, 12 spent, 100 unspent (the same
    # figures ConduitDB's functional test asserts on this chain)
    rows = query(pg_module, chain_db, "outputs_with_spends",
                 key="86c73b803ee5229044621b2fb6fb61b7001a92cbfdab1c7314da27a2fee72948")
    assert len(rows) == 112
    assert sum(1 for r in rows if r[2] == "") == 100
    rows = query(pg_module, chain_db, "outputs_with_spends",
                 key="5e7583878789b03276d2d60a1cf3772a999084e3b12d0d3c1a33a30bd15609db")
    assert rows == [(P2SH_TX, "1", P2SH_SPEND, "0")]


def test_block_contents(pg_module, chain_db, shared_data):
    rows = query(pg_module, chain_db, "block_contents", height=115)
    assert [r[0] for r in rows] == ["0", "1", "2", "3"]
    assert [r[1] for r in rows[1:]] == [SPEND_TX, P2SH_TX, P2SH_SPEND]
    hashes = open(os.path.join(shared_data, CHAIN, "headers.txt")).read().split()
    raw = open(os.path.join(shared_data, CHAIN, hashes[115]), "rb").read()
    assert int(rows[0][2]) == 81  # header + 1-byte count
    assert int(rows[-1][2]) + int(rows[-1][3]) == len(raw)
    # all 117 blocks, every tx exactly once
    n = psql(pg_module, chain_db, "SELECT count(*), count(DISTINCT tx_hash) FROM best_transactions;")
    assert n == [("126", "126")]


def test_data_pushes_block116(pg_module, chain_db):
    a = "4723501d7ec5488d32e19a59cbdb11eed7b9bb99b681303614a6e8b763ba1ea6"
    b = "5be1d965952227b5ee45af715fc21bcc1723c37411a7dfd340845a23d73dd884"
    rows = query(pg_module, chain_db, "data_pushes", height=116)
    want = sorted([
        (a, "0", "bceef655b5a034911f1c3718ce056531b45ef03b4c7b1f15629e867294011a7d"),
        (a, "0", "bdd6af32ad29f75d8194247c3e960eea38711776a9ff4182356184fa86a00dd0"),
        (a, "0", "a0920a708fa193ccb674b42e78c9ee20134faa007a83405db7219e916660cbfa"),
        (a, "0", "5866ddbc19ad8479a492837f44bc0146537038070990ecad9ea5c6654a0a2d57"),
        (a, "0", "6e851b79242aeb57c37a6ee64afcf6594d0c76c0429e46d6e8f934e180be72a5"),
        (b, "0", "71189f7fb6aed638640078fba3a35fda6c39c8962e74dcc75935aac948da9063"),
    ], key=lambda r: (r[0] != a, r[2]))
    assert rows == want
    # no DATA rows anywhere else in the chain
    n = psql(pg_module, chain_db, "SELECT count(*) FROM best_pushdata WHERE flags = 4;")
    assert n == [("6",)]


def test_no_data_pushes_switch(pg_module, build_dir, shared_data):
    ci = create_db(pg_module, "nodata")
    run_index(build_dir, ci, ["--chain", os.path.join(shared_data, CHAIN), "--no-data"])
    assert psql(pg_module, "nodata", "SELECT count(*) FROM pushdata WHERE flags = 4;") == [("0",)]
    assert query(pg_module, "nodata", "spent_by", txid=MS_TX, n=2) == [(MS_SPEND, "0", "113")]


def test_mainnet_block413567(pg_module, build_dir, shared_data):
    ci = create_db(pg_module, "main413567")
    run_index(build_dir, ci, ["--block", os.path.join(shared_data, "mainnet", "block413567.raw"),
                              "--height", "413567", "--unit-size", "100000", "--jobs", "2"])
    txids = open(os.path.join(shared_data, "mainnet", "block413567.txids")).read().split()
    rows = query(pg_module, "main413567", "block_contents", height=413567)
    assert [r[1] for r in rows] == txids
    assert len(txids) == 1557
    offsets = open(os.path.join(shared_data, "mainnet", "block413567.tx-offsets")).read().split()
    assert [r[2] for r in rows] == offsets
    keys = open(os.path.join(shared_data, "mainnet",
                             "block413567.input-pushdata-sha256")).read().split()
    got = psql(pg_module, "main413567",
               "SELECT cd_txid_hex(push_hash) FROM best_pushdata WHERE flags = 2 "
               "ORDER BY tx_pos, idx;")
    # the file lists them in tx then input order, reversed hex (the exact
    # order within a script is checked by the unit test test_pg_parser)
    assert len(got) == len(keys) == 3957
    assert sorted(r[0] for r in got) == sorted(keys)
    assert query(pg_module, "main413567", "best_tip") == [
        ("0000000000000000025aff8be8a55df8f89c77296db6198f272d6577325d4069", "413567")]


def verify_tsc(proof, txid_hex, root_display_hex):
    """Recomputes the root from a TSC proof (nodes in display hex)."""
    import hashlib
    h = bytes.fromhex(txid_hex)[::-1]
    i = proof["index"]
    for node in proof["nodes"]:
        n = bytes.fromhex(node)[::-1]
        pair = n + h if i & 1 else h + n
        h = hashlib.sha256(hashlib.sha256(pair).digest()).digest()
        i >>= 1
    return h[::-1].hex() == root_display_hex


def cli(build_dir, args):
    return subprocess.run([os.path.join(build_dir, "src", "daemon", "conduit-cli")] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)


def test_cli_merkle_proof_from_index(pg_module, chain_db, build_dir, shared_data, tmp_path):
    """merkle-proof with no LMDB merkle store: the tree is rebuilt from the
    block's txids in PostgreSQL; every proof must lead to the header's root."""
    import json
    ci = f"{pg_module.conninfo.replace('dbname=postgres', '')} dbname={chain_db}"
    hashes = open(os.path.join(shared_data, CHAIN, "headers.txt")).read().split()
    for height in (111, 113, 115, 116):
        raw = open(os.path.join(shared_data, CHAIN, hashes[height]), "rb").read()
        root = raw[36:68][::-1].hex()
        for pos, txid, _, _ in query(pg_module, chain_db, "block_contents", height=height):
            p = cli(build_dir, ["merkle-proof", txid, "--regtest", "--datadir", str(tmp_path),
                                "--pg-conninfo", ci])
            assert p.returncode == 0, p.stderr.decode()
            proof = json.loads(p.stdout)
            assert proof["index"] == int(pos) and proof["txOrId"] == txid
            assert proof["target"] == hashes[height] and proof["targetType"] == "hash"
            assert verify_tsc(proof, txid, root), (height, pos)
    p = cli(build_dir, ["merkle-proof", SPEND_TX, "--target", "merkleroot", "--regtest",
                        "--datadir", str(tmp_path), "--pg-conninfo", ci])
    proof = json.loads(p.stdout)
    assert proof["targetType"] == "merkleroot" and verify_tsc(proof, SPEND_TX, proof["target"])
    # unknown txid: clear error, exit 1
    p = cli(build_dir, ["merkle-proof", "11" * 32, "--regtest", "--datadir", str(tmp_path),
                        "--pg-conninfo", ci])
    assert p.returncode == 1 and b"not in the indexed best chain" in p.stderr
    # tx location without LMDB works; raw bytes need the block store
    p = cli(build_dir, ["tx", SPEND_TX, "--regtest", "--datadir", str(tmp_path),
                        "--pg-conninfo", ci])
    assert p.returncode == 0 and b"height 115\nindex 1\n" in p.stdout


def test_bulk_load_indexes_after(pg_module, build_dir, shared_data, chain_db):
    """--indexes-after (the fast catch-up path) ends with the same rows and the
    secondary indexes in place."""
    ci = create_db(pg_module, "bulk")
    run_index(build_dir, ci, ["--chain", os.path.join(shared_data, CHAIN), "--indexes-after",
                              "--jobs", "2", "--bulk"])
    # every secondary index sql/013 defines, present and valid
    n = psql(pg_module, "bulk", "SELECT count(*) FILTER (WHERE state = 'valid'), count(*) "
             "FROM cd_secondary_indexes_state();")
    assert n == [("4", "4")]
    q = ("SELECT md5(string_agg(encode(push_hash, 'hex') || flags || idx || "
         "cd_txid_hex(tx_hash), ',' ORDER BY height, tx_pos, idx, flags, push_hash)) "
         "FROM best_pushdata;")
    assert psql(pg_module, "bulk", q) == psql(pg_module, chain_db, q)
    assert query(pg_module, "bulk", "spent_by", txid=MS_TX, n=2) == [(MS_SPEND, "0", "113")]


# One value for each variable of docs/QUERIES.md (the rows the tests above
# find), to plan every documented query.
PLAN_VARS = {"txid": SPEND_TX, "n": "0", "height": "115",
             "pubkey": "03adc147" + "00" * 25 + "035068",
             "hash160": "17aa9ecb9e38b91bddcc5e8d2d26154be90d8996",
             "address": "mhg6ENXhPL6LsEUG6oxdqi8LjE2bsW6NMW",
             "key": "86c73b803ee5229044621b2fb6fb61b7001a92cbfdab1c7314da27a2fee72948"}

# The wallet functions (sql/007), planned inlined with a key, and the
# lookups of src/query/cd_lookup.c by txid and by outpoint.
PLAN_SQL = {
    "cd_history": "SELECT * FROM cd_history('script', decode(:'key', 'hex'))",
    "cd_utxos": "SELECT * FROM cd_utxos('script', decode(:'key', 'hex'))",
    "cd_balance": "SELECT * FROM cd_balance('push', decode(:'key', 'hex'))",
    "tx_by_id": "SELECT t.block_id FROM transactions t JOIN blocks b ON b.block_id = t.block_id "
                "WHERE t.tx_hash = cd_txid(:'txid')",
    "spender": "SELECT block_id FROM inputs WHERE prev_hash = cd_txid(:'txid') "
               "AND prev_idx = :n::integer",
}


def test_documented_queries_use_the_secondary_indexes(pg_module, chain_db):
    """Every documented query (and the wallet functions, and the lookups by
    txid and outpoint) can be answered without a sequential scan of the
    tables of the secondary indexes: with sequential scans made prohibitive,
    no plan has one. Guards a layout change of sql/013's catalog (a hash
    index serves only equality: an ORDER BY, range or prefix on its column
    would show up here as a sequential scan)."""
    tables = {r[0] for r in psql(pg_module, chain_db, "SELECT tbl FROM secondary_indexes;")}
    assert tables == {"transactions", "inputs", "pushdata", "outputs"}
    plans = dict(QUERIES)
    plans.update(PLAN_SQL)
    for name, sql in plans.items():
        body = re.sub(r"^--.*\n", "", sql.strip(), flags=re.M).rstrip().rstrip(";")
        plan = psql(pg_module, chain_db, "SET enable_seqscan = off;\nEXPLAIN " + body + ";",
                    **{k: v for k, v in PLAN_VARS.items() if ":'%s'" % k in body
                       or ":%s" % k in body})
        text = "\n".join(r[0] for r in plan)
        for t in tables:
            assert "Seq Scan on %s " % t not in text, "%s:\n%s" % (name, text)
