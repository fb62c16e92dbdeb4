"""The simulated node's chain files (tests/simnode/chainfile.py): a chain
generated once to disk, served from the file without holding the blocks,
revealed block range by block range (bench/index/bench_growth.py).

Run: /usr/bin/python3 -m pytest tests/functional/test_simnode_chainfile.py
"""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simnode_fixtures import simnode_factory  # noqa: E402,F401
from simnode_client import dsha, parse_inv  # noqa: E402
from test_simnode import GENESIS, check_block_bitcoinlib, connect, sync_headers  # noqa: E402
from tests.simnode import chainfile  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def chain_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("chainfile") / "chain"
    # the command line a benchmark uses; 25 blocks of 40 txs
    subprocess.run([sys.executable, "-m", "tests.simnode.chainfile", str(d), "--blocks", "25",
                    "--txs-per-block", "40", "--seed", "3"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return str(d)


def test_generated_file_is_a_valid_chain_of_real_spends(chain_path):
    meta = chainfile.read_meta(chain_path)
    assert meta["blocks"] == 25
    recs = list(chainfile.records(chain_path))
    assert len(recs) == 25
    prev = GENESIS
    utxo = set()
    ntx = spends = 0
    with open(os.path.join(chain_path, "blocks.dat"), "rb") as f:
        for h, header, off, size, n in recs:
            f.seek(off)
            raw = f.read(size)
            assert raw[:80] == header
            blk = check_block_bitcoinlib(raw, expect_hash=dsha(header), prev=prev)
            prev = dsha(header)
            assert len(blk.vtx) == n
            ntx += n
            for i, tx in enumerate(blk.vtx):
                if i:
                    for vin in tx.vin:   # every input spends an earlier, unspent output
                        op = (vin.prevout.hash, vin.prevout.n)
                        assert op in utxo
                        utxo.remove(op)
                        spends += 1
                for k, _ in enumerate(tx.vout):
                    utxo.add((tx.GetTxid(), k))
    assert ntx == meta["txs"] and dsha(recs[-1][1])[::-1].hex() == meta["tip"]
    assert spends > 20 * 40   # full blocks of spends, not coinbase-only
    assert chainfile.cumulative_txs(chain_path)[-1] == ntx + 1


def test_unfinished_generation_is_refused(tmp_path, chain_path):
    d = tmp_path / "half"
    d.mkdir()
    for name in ("blocks.dat", "index.dat"):   # no meta.json: interrupted
        (d / name).write_bytes(open(os.path.join(chain_path, name), "rb").read())
    with pytest.raises(FileNotFoundError):
        from tests.simnode.node import SimNode
        SimNode(chain_file=str(d))


def test_served_from_file_and_revealed_in_steps(simnode_factory, chain_path):
    node = simnode_factory(chain_file=chain_path, serve_height=10)
    assert node.chain.height == 10 and len(node.pending) == 15
    # file-backed: the node holds no block bodies
    assert all(node.chain.at(h).kind == "file" and node.chain.at(h).data is None
               for h in range(1, 11))
    c = connect(node, sendheaders=False)
    hs = sync_headers(c)
    assert len(hs) == 10
    recs = {h: (off, size) for h, _, off, size, _ in chainfile.records(chain_path)}
    with open(os.path.join(chain_path, "blocks.dat"), "rb") as f:
        for h in (1, 10):
            p, _ = c.get_block(dsha(hs[h - 1]))
            f.seek(recs[h][0])
            assert p == f.read(recs[h][1])
    # reveal: the new tip is announced (inv: the client did not send sendheaders)
    assert node.reveal(25) == 25
    _, p, _ = c.wait("inv")
    assert parse_inv(p) == [(2, node.chain.tip.hash)]
    hs2 = sync_headers(c, [dsha(hs[-1])])
    assert len(hs2) == 15
    p, _ = c.get_block(node.chain.tip.hash)
    check_block_bitcoinlib(p, expect_hash=node.chain.tip.hash)
    assert node.reveal(30) == 25   # nothing more in the file
    c.close()
