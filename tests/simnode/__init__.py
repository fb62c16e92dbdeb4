"""Simulated Bitcoin SV node for conduitd's functional tests and benchmarks.

Standard library only; run with /usr/bin/python3.  See README.md here.

    from tests.simnode import SimNode
    node = SimNode(generate=200, txs_per_block=5, seed=1).start()
    ... connect to 127.0.0.1:node.port ...
    node.mine(3); node.reorg(190, 20); node.misbehave("bad_checksum", on="headers")
    node.stop()
"""
from .protocol import hexh, unhexh, sha256d, NETWORKS  # noqa: F401
from .chain import Chain, Block  # noqa: F401
from .node import SimNode, Connection, ALL_FAULTS  # noqa: F401
