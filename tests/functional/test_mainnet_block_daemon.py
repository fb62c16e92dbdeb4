"""Mainnet block 413567, served by the simulated node, through conduitd.

The daemon follows headers by proof of work, so it cannot be handed a lone
mainnet block. The simulator therefore serves block 413567's body (its 1557
transactions, byte for byte, coinbase included) under a new regtest header on
top of a short generated chain: same transactions, same merkle root, same tx
count, and so the same byte offsets as the mainnet file, since only the 80
header bytes change. conduitd downloads it through the p2p sink into the ring,
the writer stores it, the merkle worker checks it against the header and the
parsers index it. Then:
  - the stored tx offsets equal shared/data/mainnet/block413567.tx-offsets and
    the stored block equals the bytes served;
  - the indexed txids equal block413567.txids, in block order, at those offsets;
  - the INPUT pushdata keys equal block413567.input-pushdata-sha256.

Run: CD_BUILD_DIR=build /usr/bin/python3 -m pytest tests/functional/test_mainnet_block_daemon.py
"""

import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from daemon_util import Daemon  # noqa: E402
from test_index import cli, create_db, psql, query, verify_tsc  # noqa: E402
from test_index_daemon import wait_tip  # noqa: E402

from tests.simnode.chain import make_header  # noqa: E402

GENERATED = 10


def transplant(raw, prev, ntime):
    """Block 413567's body under a regtest header on `prev`."""
    version = struct.unpack("<i", raw[:4])[0]
    header = make_header(version, prev, raw[36:68], ntime)
    return header + raw[80:]


def test_block413567_through_the_daemon(pg_module, build_dir, shared_data, simnode_factory,
                                        tmp_path):
    main = os.path.join(shared_data, "mainnet")
    raw = open(os.path.join(main, "block413567.raw"), "rb").read()
    node = simnode_factory(generate=GENERATED, txs_per_block=2, seed=21)
    with node.lock:
        tip = node.chain.tip
        ntime = struct.unpack("<I", tip.header[68:72])[0] + 600
        blk = transplant(raw, tip.hash, ntime)
        path = tmp_path / "block413567.regtest"
        path.write_bytes(blk)
        b = node.chain.load_block_file(str(path), connect=True)
    height = GENERATED + 1
    assert node.chain.height == height and b.hash == node.chain.tip.hash
    bhash = b.hash_hex

    ci = create_db(pg_module, "main413567d")
    dd = tmp_path / "d"
    d = Daemon(build_dir, str(dd),
               ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                "--parser-workers", "2", "--ring-size", "16M", "--unit-size", "64K",
                "--relay", "off", "--log-level", "info"]).start()
    try:
        wait_tip(pg_module, "main413567d", d, height)
        d.wait_for_log(r"headers synced", timeout=60)
    finally:
        rc = d.stop()
    assert rc == 0, d.log_text()[-4000:]

    # LMDB: the stored bytes and the offsets the pipeline's preprocessor found
    offsets = open(os.path.join(main, "block413567.tx-offsets")).read().split()
    p = cli(build_dir, ["tx-offsets", bhash, "--datadir", str(dd), "--regtest"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [o.encode() for o in offsets]
    out = tmp_path / "stored.raw"
    p = cli(build_dir, ["block", bhash, "--datadir", str(dd), "--regtest", "--out", str(out)])
    assert p.returncode == 0, p.stderr
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(blk).digest()

    # PostgreSQL: txids in block order at those offsets, and the input keys
    txids = open(os.path.join(main, "block413567.txids")).read().split()
    rows = query(pg_module, "main413567d", "block_contents", height=height)
    assert len(rows) == 1557
    assert [r[1] for r in rows] == txids
    assert [r[2] for r in rows] == offsets
    keys = open(os.path.join(main, "block413567.input-pushdata-sha256")).read().split()
    got = psql(pg_module, "main413567d",
               "SELECT cd_txid_hex(push_hash) FROM best_pushdata WHERE flags = 2 "
               "AND height = %d;" % height)
    assert sorted(r[0] for r in got) == sorted(keys)

    # a merkle proof from the stored tree verifies against the block's root
    p = cli(build_dir, ["merkle-proof", txids[1000], "--regtest", "--datadir", str(dd),
                        "--pg-conninfo", ci])
    assert p.returncode == 0, p.stderr
    import json
    proof = json.loads(p.stdout)
    assert proof["index"] == 1000 and proof["target"] == bhash
    assert verify_tsc(proof, txids[1000], raw[36:68][::-1].hex())
