"""LISTEN/NOTIFY notifications (issue #8; payloads in docs/QUERIES.md),
received by a real LISTEN client (psql) while conduitd follows the simulated
node: a registered pushdata key and a registered outpoint seen in the
mempool and then confirmed, the new tip, and a reorg.
"""

import hashlib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_index import create_db, psql  # noqa: E402
from test_reorg import (mempool, mine_exact, start, tip, txid, wait_relay, wait_tip,  # noqa: E402
                        wait_until)

from tests.simnode.protocol import parse_tx  # noqa: E402

NOTE = re.compile(r'Asynchronous notification "(\w+)" with payload "(.*)" received from server')


class Listener:
    """psql in a pipe: LISTEN on the channels; notifications are printed by
    psql after each command, so finish() runs one more and collects them."""

    def __init__(self, pg, db, channels):
        self.p = subprocess.Popen(
            ["psql", "-X", "-q", "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-d", db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for c in channels:
            self.p.stdin.write(b"LISTEN %s;\n" % c.encode())
        self.p.stdin.write(b"SELECT 'listening';\n")
        self.p.stdin.flush()
        line = b""
        while b"listening" not in line:  # LISTEN is in effect
            line = self.p.stdout.readline()
            assert line, "psql ended"

    def finish(self):
        out, _ = self.p.communicate(b"SELECT 1;\n\\q\n", timeout=30)
        notes = []
        for line in out.decode().splitlines():
            m = NOTE.search(line)
            if m:
                notes.append((m.group(1), json.loads(m.group(2))))
        return notes


def test_notifications(pg_module, build_dir, simnode_factory, tmp_path):
    pg = pg_module
    node = simnode_factory(generate=12, txs_per_block=2, seed=21)
    ci = create_db(pg, "notify")
    d = start(build_dir, tmp_path / "n", node.port, ci)
    try:
        wait_tip(pg, "notify", d, node)
        wait_relay(d)  # the node does not answer `mempool`: relay must be on first
        # the tx the application cares about: spends outpoint `op`, pays a
        # P2PKH whose key (sha256 of the 20-byte hash) it registers
        # (an output the node lets the simulator's wallet spend now: signed, mature)
        op = node.spendable_outpoints(limit=1)[0]
        a = node.make_tx(spend=op)
        _, _, outs = parse_tx(a, 0)
        script = outs[0][1]
        assert script[:3] == b"\x76\xa9\x14"
        key = hashlib.sha256(script[3:23]).hexdigest()
        op_txid, op_vout = op[0][::-1].hex(), op[1]
        psql(pg, "notify", "INSERT INTO watched_keys (push_hash, label) "
                           "VALUES (decode('%s', 'hex'), 'app');" % key)
        psql(pg, "notify", "INSERT INTO watched_outpoints (prev_hash, prev_idx) "
                           "VALUES (cd_txid('%s'), %d);" % (op_txid, op_vout))
        lst = Listener(pg, "notify", ["cd_tip", "cd_reorg", "cd_key", "cd_spend"])

        node.add_mempool_tx(a)
        wait_until(lambda: txid(a) in mempool(pg, "notify"), d, "tx in mempool")
        blk = mine_exact(node, [a])
        wait_tip(pg, "notify", d, node)
        h = node.chain.height
        old_tip = node.chain.tip.hash_hex
        node.reorg(fork_height=h - 1, new_len=2)
        wait_tip(pg, "notify", d, node)
        wait_until(lambda: txid(a) in mempool(pg, "notify"), d, "tx back in mempool")
        notes = lst.finish()
    finally:
        d.stop()

    def of(ch, **kv):
        return [p for c, p in notes if c == ch and all(p.get(k) == v for k, v in kv.items())]

    # mempool: key and spend, once each (the reorg returns the tx silently)
    assert of("cd_key", key=key, txid=txid(a), state="mempool", flags=1, idx=0)
    assert len(of("cd_key", txid=txid(a), state="mempool")) == 1
    assert of("cd_spend", txid=op_txid, vout=op_vout, spend_txid=txid(a), in_idx=0,
              state="mempool")
    # confirmed in blk
    assert of("cd_key", key=key, txid=txid(a), state="confirmed", height=h, block=blk.hash_hex)
    assert of("cd_spend", txid=op_txid, vout=op_vout, spend_txid=txid(a), state="confirmed",
              height=h, block=blk.hash_hex)
    # tips, in order, then the reorg
    tips = [(p["height"], p["hash"]) for c, p in notes if c == "cd_tip"]
    assert (h, blk.hash_hex) in tips
    assert tips[-1] == (node.chain.height, node.chain.tip.hash_hex)
    reorgs = of("cd_reorg")
    assert reorgs == [{"fork_height": h - 1, "fork_hash": node.chain.at(h - 1).hash_hex,
                       "old_tip": old_tip, "old_height": h,
                       "new_tip": node.chain.tip.hash_hex, "new_height": h + 1,
                       "leaving": 1, "joining": 2}]
    # subscribers only hear committed states: the tip they were told is the index's
    assert tip(pg, "notify") == tips[-1][1]
