"""Raw bytes of mempool transactions through conduit-cli and the HTTP API
(sql/004_mempool_raw.sql, cd_lookup): conduitd + the simulated node + a real
PostgreSQL, relay on, a small mempool cap.

  * relayed txs: `conduit-cli tx --hex` and GET /v1/tx/<txid> (hex, raw)
    give exactly the simulator's bytes; json says "mempool": true; no merkle
    proof ("not in a block yet");
  * once mined: the same bytes, now from the block (json "mempool": false);
  * a reorg returns them to the mempool (source = 1): served from the block
    that left the best chain;
  * evicted by the cap: 404 / exit 1.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_http import get  # noqa: E402
from test_index import cli, create_db, psql  # noqa: E402
from test_reorg import mempool, mine_exact, start, txid, wait_tip, wait_until  # noqa: E402


def cli_hex(build_dir, datadir, ci, t, check=True):
    p = cli(build_dir, ["tx", t, "--hex", "--regtest", "--datadir", datadir, "--pg-conninfo", ci])
    if check:
        assert p.returncode == 0, p.stderr
    return p


def same_everywhere(build_dir, datadir, ci, port, raw, in_mempool):
    """conduit-cli and HTTP (hex, raw, json) all give `raw`."""
    t = txid(raw)
    assert cli_hex(build_dir, datadir, ci, t).stdout.decode().strip() == raw.hex()
    st, _, body = get(port, "/v1/tx/%s?format=raw" % t)
    assert st == 200 and body == raw, (st, body[:200])
    st, _, body = get(port, "/v1/tx/%s" % t)
    assert st == 200 and body.decode() == raw.hex() + "\n"
    st, _, body = get(port, "/v1/tx/%s?format=json" % t)
    doc = json.loads(body)
    assert st == 200 and doc["mempool"] is in_mempool and doc["size"] == len(raw), doc
    p = cli(build_dir, ["tx", t, "--regtest", "--datadir", datadir, "--pg-conninfo", ci])
    assert p.returncode == 0, p.stderr
    assert (b"mempool yes" in p.stdout) is in_mempool, p.stdout


def no_proof_yet(build_dir, datadir, ci, port, t):
    p = cli(build_dir, ["merkle-proof", t, "--regtest", "--datadir", datadir,
                        "--pg-conninfo", ci])
    assert p.returncode == 1 and b"not in a block yet" in p.stderr, p.stderr
    st, _, body = get(port, "/v1/tx/%s/proof" % t)
    assert st == 404 and "not in a block yet" in json.loads(body)["error"], body


def test_mempool_raw_bytes(pg_module, build_dir, simnode_factory, tmp_path):
    pg = pg_module
    node = simnode_factory(generate=20, txs_per_block=3, seed=23)
    ci = create_db(pg, "mraw")
    datadir = str(tmp_path / "d")
    d = start(build_dir, datadir, node.port, ci,
              ["--http-listen", "127.0.0.1:0", "--mempool-max-txs", "6"])
    try:
        port = int(d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        wait_tip(pg, "mraw", d, node)
        # the node does not answer `mempool` (not whitelisted): txs it took
        # before relay was on would only come with a block, so make them after
        d.wait_for_log(r"mempool: index at the best tip; relay on", timeout=60)

        # ---- relayed: the bytes as the peer sent them ----
        txs = node.make_mempool_txs(4)
        assert len(txs) == 4
        ids = [txid(t) for t in txs]
        wait_until(lambda: mempool(pg, "mraw") == set(ids), d, "4 mempool txs")
        for raw in txs:
            same_everywhere(build_dir, datadir, ci, port, raw, True)
        no_proof_yet(build_dir, datadir, ci, port, ids[0])
        assert psql(pg, "mraw", "SELECT count(*) FROM mempool_tx WHERE raw IS NOT NULL "
                                "AND source = 0;") == [("4",)]

        # ---- mined: the same answer, now from the block ----
        h_fork = node.chain.height
        mine_exact(node, txs[:2])
        wait_tip(pg, "mraw", d, node)
        wait_until(lambda: mempool(pg, "mraw") == set(ids[2:]), d, "2 confirmed")
        for raw in txs[:2]:
            same_everywhere(build_dir, datadir, ci, port, raw, False)

        # ---- reorg: back in the mempool, served from the block that left ----
        node.reorg(fork_height=h_fork, new_len=2)  # coinbase-only blocks
        wait_tip(pg, "mraw", d, node)
        wait_until(lambda: set(ids[:2]) <= mempool(pg, "mraw"), d, "2 back in the mempool")
        assert psql(pg, "mraw", "SELECT count(*) FROM mempool_tx WHERE source = 1 AND raw IS NULL "
                                "AND tx_hash IN (cd_txid('%s'), cd_txid('%s'));"
                    % (ids[0], ids[1])) == [("2",)]
        for raw in txs:
            same_everywhere(build_dir, datadir, ci, port, raw, True)
        no_proof_yet(build_dir, datadir, ci, port, ids[1])

        # ---- evicted by the cap (6, oldest first): 404 ----
        # 6 more (the simulator took the returned ones back into its own
        # mempool, as the node does): at least one of the first 4 goes
        more = node.make_mempool_txs(6)
        wait_until(lambda: set(ids) - mempool(pg, "mraw"), d, "eviction by the cap")
        gone = [t for t in ids if t not in mempool(pg, "mraw")]
        for t in gone:
            p = cli_hex(build_dir, datadir, ci, t, check=False)
            assert p.returncode == 1 and b"nor in the mempool" in p.stderr, p.stderr
            st, _, body = get(port, "/v1/tx/%s?format=raw" % t)
            assert st == 404, (st, body)
        kept = mempool(pg, "mraw")
        for raw in txs + more:
            if txid(raw) in kept:
                same_everywhere(build_dir, datadir, ci, port, raw, True)
    finally:
        d.stop()
