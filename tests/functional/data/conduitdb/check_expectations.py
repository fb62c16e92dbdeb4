#!/usr/bin/env python3
"""Check ConduitDB's published test expectations against the real regtest chains.

Standard library only; needs no daemon. Usage:

    python3 tests/functional/data/conduitdb/check_expectations.py [--data DIR] [-v]

DIR is the shared data directory (default: $CD_SHARED_DATA, else ../shared/data relative to the
project root). The expectations are the JSON files next to this script (see README.md there).

Every expectation is recomputed from the blocks in
  <DIR>/regtest/blockchain_116_7c9cd2   (the chain ConduitDB's tests call pre-reorg) and
  <DIR>/regtest/blockchain_118_0ebc17   (post-reorg).
An expectation that does not hold is reported, never corrected. The ones already known (and
explained in README.md) are listed in KNOWN_DISCREPANCIES: the script exits 0 when the set of
failures is exactly that list, 1 otherwise (a new failure, or a known one that went away).
"""

import argparse
import hashlib
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))

PRE_CHAIN = "blockchain_116_7c9cd2"
POST_CHAIN = "blockchain_118_0ebc17"

# id -> one line of explanation (the full story is in README.md, "Discrepancies").
KNOWN_DISCREPANCIES = {
    "datareadme:113:1:multisig_1_of_2":
        "../shared/data/README.md calls output 2 of 479833ff (113:1) a bare 1-of-2 multisig; its "
        "script is OP_2 <pubkey> <pubkey> OP_2 OP_CHECKMULTISIG, a 2-of-2 (0120eae6 spends it "
        "with two signatures)",
}


def sha256(b):
    return hashlib.sha256(b).digest()


def sha256d(b):
    return sha256(sha256(b))


def disp(h):
    """internal byte order -> display hex"""
    return h[::-1].hex()


def undisp(s):
    """display hex -> internal byte order"""
    return bytes.fromhex(s)[::-1]


def read_varint(buf, pos):
    n = buf[pos]
    if n < 0xFD:
        return n, pos + 1
    if n == 0xFD:
        return struct.unpack_from("<H", buf, pos + 1)[0], pos + 3
    if n == 0xFE:
        return struct.unpack_from("<I", buf, pos + 1)[0], pos + 5
    return struct.unpack_from("<Q", buf, pos + 1)[0], pos + 9


class Tx:
    __slots__ = ("raw", "txid", "inputs", "outputs")

    def __init__(self, buf, pos):
        start = pos
        pos += 4
        n_in, pos = read_varint(buf, pos)
        self.inputs = []
        for _ in range(n_in):
            prev_hash = bytes(buf[pos:pos + 32])
            prev_idx = struct.unpack_from("<I", buf, pos + 32)[0]
            slen, pos = read_varint(buf, pos + 36)
            script = bytes(buf[pos:pos + slen])
            pos += slen + 4
            self.inputs.append((prev_hash, prev_idx, script))
        n_out, pos = read_varint(buf, pos)
        self.outputs = []
        for _ in range(n_out):
            value = struct.unpack_from("<Q", buf, pos)[0]
            slen, pos = read_varint(buf, pos + 8)
            self.outputs.append((value, bytes(buf[pos:pos + slen])))
            pos += slen
        pos += 4
        self.raw = bytes(buf[start:pos])
        self.txid = sha256d(self.raw)  # internal byte order

    @property
    def end(self):
        return len(self.raw)


class Block:
    def __init__(self, raw, height):
        self.raw = raw
        self.height = height
        self.header = raw[:80]
        self.hash = sha256d(self.header)
        self.prev_hash = raw[4:36]
        self.merkle_root = raw[36:68]
        count, pos = read_varint(raw, 80)
        self.txs = []
        for _ in range(count):
            tx = Tx(raw, pos)
            pos += tx.end
            self.txs.append(tx)
        if pos != len(raw):
            raise ValueError("block %s: %d trailing bytes" % (disp(self.hash), len(raw) - pos))


class Chain:
    def __init__(self, path):
        self.name = os.path.basename(path)
        with open(os.path.join(path, "headers.txt")) as f:
            hashes = [line.strip() for line in f if line.strip()]
        self.blocks = []
        self.by_hash = {}
        self.tx_index = {}       # txid (internal) -> (block, position)
        self.spender = {}        # (prev_hash, prev_idx) -> (spending tx, input index, block)
        prev = None
        for height, h in enumerate(hashes):
            with open(os.path.join(path, h), "rb") as f:
                blk = Block(f.read(), height)
            if disp(blk.hash) != h:
                raise ValueError("%s: file %s holds block %s" % (self.name, h, disp(blk.hash)))
            if prev is not None and blk.prev_hash != prev.hash:
                raise ValueError("%s: block %d does not chain" % (self.name, height))
            self.blocks.append(blk)
            self.by_hash[blk.hash] = blk
            for pos, tx in enumerate(blk.txs):
                self.tx_index[tx.txid] = (blk, pos)
                for in_idx, (ph, pi, _) in enumerate(tx.inputs):
                    if pos == 0:
                        continue  # coinbase
                    self.spender[(ph, pi)] = (tx, in_idx, blk)
            prev = blk
        self.tip = self.blocks[-1]


def merkle_root(txids):
    level = list(txids)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def merkle_branch(txids, index):
    """sibling hashes (internal order) from leaf to root, duplicates written out as hashes"""
    branch = []
    level = list(txids)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        branch.append(level[index ^ 1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        index >>= 1
    return branch


def fold_tsc_nodes(leaf, index, nodes):
    """root implied by a TSC proof: nodes are display hex or '*' (= duplicate of the running hash)"""
    h = leaf
    for node in nodes:
        n = h if node == "*" else undisp(node)
        h = sha256d(n + h) if index & 1 else sha256d(h + n)
        index >>= 1
    return h


def script_pushdata_keys(script):
    """sha256 of the 20/33/65-byte direct pushes before the first OP_RETURN (ConduitDB's output
    rule; see docs/CONDUITDB_API.md). Returns a set of 32-byte keys."""
    keys = set()
    i = 0
    while i < len(script):
        op = script[i]
        if op == 0x6A:  # OP_RETURN: the rest is unreachable (ConduitDB stops capturing)
            break
        if 0x01 <= op <= 0x4B:
            data = script[i + 1:i + 1 + op]
            if op in (0x14, 0x21, 0x41) and len(data) == op:
                keys.add(sha256(data))
            i += 1 + op
        elif op == 0x4C:
            n = script[i + 1] if i + 1 < len(script) else 0
            i += 2 + n
        elif op == 0x4D:
            n = struct.unpack_from("<H", script, i + 1)[0] if i + 3 <= len(script) else 0
            i += 3 + n
        elif op == 0x4E:
            n = struct.unpack_from("<I", script, i + 1)[0] if i + 5 <= len(script) else 0
            i += 5 + n
        else:
            i += 1
    return keys


def script_pushes(script):
    """(opcode, data, after_op_return) for every push of a script"""
    out = []
    i = 0
    after = False
    while i < len(script):
        op = script[i]
        if op == 0x6A:
            after = True
            i += 1
            continue
        if 0x01 <= op <= 0x4B:
            n, hdr = op, 1
        elif op == 0x4C and i + 1 < len(script):
            n, hdr = script[i + 1], 2
        elif op == 0x4D and i + 3 <= len(script):
            n, hdr = struct.unpack_from("<H", script, i + 1)[0], 3
        elif op == 0x4E and i + 5 <= len(script):
            n, hdr = struct.unpack_from("<I", script, i + 1)[0], 5
        else:
            i += 1
            continue
        out.append((op, script[i + hdr:i + hdr + n], after))
        i += hdr + n
    return out


class Checker:
    def __init__(self, data_dir, verbose=False):
        self.verbose = verbose
        reg = os.path.join(data_dir, "regtest")
        self.chains = {"pre": Chain(os.path.join(reg, PRE_CHAIN)),
                       "post": Chain(os.path.join(reg, POST_CHAIN))}
        self.failures = {}   # id -> message
        self.passed = 0

    def load(self, name):
        with open(os.path.join(HERE, name)) as f:
            return json.load(f)

    def check(self, cid, ok, message):
        if ok:
            self.passed += 1
            if self.verbose:
                print("ok   %s" % cid)
        else:
            self.failures[cid] = message

    # ---- merkle proofs and raw transactions -------------------------------------------------
    def check_proofs(self, side, data):
        chain = self.chains[side]
        tables = {
            "MERKLE_PROOFS_TARGET_AS_HASH": ("hash", False),
            "MERKLE_PROOFS_TARGET_AS_MERKLE_ROOT": ("merkleroot", False),
            "MERKLE_PROOFS_TARGET_AS_HEADER": ("header", False),
            "MERKLE_PROOFS_INCLUDE_RAWTX": ("hash", True),
        }
        for table, (target_type, full_tx) in tables.items():
            for txid_hex, proof in data[table].items():
                cid = "proof:%s:%s:%s" % (side, table, txid_hex[:8])
                txid = undisp(txid_hex)
                loc = chain.tx_index.get(txid)
                if loc is None:
                    self.check(cid + ":exists", False, "%s not in %s" % (txid_hex, chain.name))
                    continue
                blk, pos = loc
                self.check(cid + ":exists", True, "")
                self.check(cid + ":index", proof["index"] == pos,
                           "index %s, the tx is at position %d of block %d"
                           % (proof["index"], pos, blk.height))
                self.check(cid + ":targetType", proof.get("targetType") == target_type,
                           "targetType %r, expected %r" % (proof.get("targetType"), target_type))
                if full_tx:
                    raw = bytes.fromhex(proof["txOrId"])
                    self.check(cid + ":txOrId", raw == blk.txs[pos].raw and sha256d(raw) == txid,
                               "txOrId is not the raw transaction %s" % txid_hex)
                else:
                    self.check(cid + ":txOrId", proof["txOrId"] == txid_hex,
                               "txOrId %s is not the txid" % proof["txOrId"])
                want = {"hash": disp(blk.hash), "merkleroot": disp(blk.merkle_root),
                        "header": blk.header.hex()}[target_type]
                self.check(cid + ":target", proof["target"] == want,
                           "target %s, block %d gives %s" % (proof["target"], blk.height, want))
                root = fold_tsc_nodes(txid, proof["index"], proof["nodes"])
                self.check(cid + ":verifies", root == blk.merkle_root,
                           "nodes fold to %s, block %d's merkle root is %s"
                           % (disp(root), blk.height, disp(blk.merkle_root)))
                branch = [disp(h) for h in merkle_branch([t.txid for t in blk.txs], pos)]
                self.check(cid + ":nodes", proof["nodes"] == branch,
                           "nodes %s, the block's branch is %s" % (proof["nodes"], branch))

    def check_transactions(self, data):
        chain = self.chains["pre"]
        for txid_hex, raw_hex in data["TRANSACTIONS"].items():
            cid = "tx:pre:%s" % txid_hex[:8]
            raw = bytes.fromhex(raw_hex)
            self.check(cid + ":hash", disp(sha256d(raw)) == txid_hex,
                       "sha256d of the raw tx is %s" % disp(sha256d(raw)))
            loc = chain.tx_index.get(undisp(txid_hex))
            self.check(cid + ":in_chain", loc is not None and loc[0].txs[loc[1]].raw == raw,
                       "not in %s with these bytes" % chain.name)
            # the same bytes must be served after the reorg too (the tx moved to block 116')
            loc = self.chains["post"].tx_index.get(undisp(txid_hex))
            self.check(cid + ":in_post_chain", loc is not None and loc[0].txs[loc[1]].raw == raw,
                       "not in %s with these bytes" % self.chains["post"].name)

    # ---- output spends ---------------------------------------------------------------------
    def check_utxo_spends(self, data):
        for side in ("pre", "post"):
            chain = self.chains[side]
            for txid_hex, idx in data["UTXO_REGISTRATIONS"]:
                cid = "spend:%s:%s:%d" % (side, txid_hex[:8], idx)
                txid = undisp(txid_hex)
                loc = chain.tx_index.get(txid)
                exists = loc is not None and idx < len(loc[0].txs[loc[1]].outputs)
                self.check(cid + ":outpoint_exists", exists,
                           "outpoint %s:%d not in %s" % (txid_hex, idx, chain.name))
                sp = chain.spender.get((txid, idx))
                ok = sp is not None and sp[0].inputs[sp[1]][:2] == (txid, idx)
                self.check(cid + ":spent", ok,
                           "outpoint %s:%d is not spent in %s (the test expects one spend "
                           "notification for it)" % (txid_hex, idx, chain.name))

    # ---- tip filter ------------------------------------------------------------------------
    def check_tip_filter(self, data, regs):
        registered = {k for k, _ in regs["PUSHDATAS"]}
        for side in ("pre", "post"):
            chain = self.chains[side]
            for key_hex, (txid_hex, idx) in data["PUSHDATA_TO_OUTPOINT_MAP"].items():
                cid = "tipfilter:%s:%s" % (side, key_hex[:8])
                self.check(cid + ":registered", key_hex in registered,
                           "%s is not in pushdata_registrations.json" % key_hex)
                loc = chain.tx_index.get(undisp(txid_hex))
                if loc is None:
                    self.check(cid + ":tx_exists", False, "%s not in %s" % (txid_hex, chain.name))
                    continue
                tx = loc[0].txs[loc[1]]
                keys = script_pushdata_keys(tx.outputs[idx][1]) if idx < len(tx.outputs) else set()
                self.check(cid + ":pushdata_in_output", bytes.fromhex(key_hex) in keys,
                           "%s is not pushed in %s output %d" % (key_hex, txid_hex, idx))
                # the 5 expected notifications: every output of the chain matching the key
                # must be this outpoint (else the test's count of 5 could not hold)
                found = self.outputs_matching(chain, bytes.fromhex(key_hex))
                self.check(cid + ":only_match", found == [(undisp(txid_hex), idx)],
                           "outputs matching %s in %s: %s" % (
                               key_hex, chain.name, [(disp(t), i) for t, i in found]))
                other = self.other_matches(chain, bytes.fromhex(key_hex))
                self.check(cid + ":no_input_or_data_match", other == [],
                           "conduitd would also match %s" % other)

    def other_matches(self, chain, key):
        """matches conduitd indexes beyond ConduitDB's output rule: INPUT (20/33/65-byte direct
        pushes in scriptSigs) and DATA (pushes of 1..65536 bytes after OP_RETURN in outputs).
        For the keys of ConduitDB's tests there must be none, so that its counts carry over."""
        found = []
        for blk in chain.blocks:
            for pos, tx in enumerate(blk.txs):
                if pos:
                    for i, (_, _, script) in enumerate(tx.inputs):
                        for op, data, _ in script_pushes(script):
                            if op in (0x14, 0x21, 0x41) and sha256(data) == key:
                                found.append(("INPUT", disp(tx.txid), i))
                for i, (_, script) in enumerate(tx.outputs):
                    for op, data, after in script_pushes(script):
                        if after and 1 <= len(data) <= 65536 and sha256(data) == key:
                            found.append(("DATA", disp(tx.txid), i))
        return found

    def outputs_matching(self, chain, key):
        found = []
        for blk in chain.blocks:
            for tx in blk.txs:
                for i, (_, script) in enumerate(tx.outputs):
                    if key in script_pushdata_keys(script):
                        found.append((tx.txid, i))
        return found

    # ---- restoration -----------------------------------------------------------------------
    def check_restoration(self, data):
        for side in ("pre", "post"):
            chain = self.chains[side]
            for case in data["cases"]:
                fn = case["function"]
                name = {"_pushdata_no_match_json": "nomatch", "_mining_txs_json_post_reorg": "mining",
                        "_p2pk_json": "p2pk", "_p2pkh_json": "p2pkh", "_p2sh_json": "p2sh",
                        "_p2ms_json": "p2ms", "_p2ms2_json": "p2ms2"}[fn]
                cid = "restoration:%s:%s" % (name, side)
                key = bytes.fromhex(case["filterKey"])
                matches = []
                for txid, idx in self.outputs_matching(chain, key):
                    sp = chain.spender.get((txid, idx))
                    matches.append({
                        "lockingTransactionId": disp(txid), "lockingTransactionIndex": idx,
                        "flags": 1,
                        "unlockingTransactionId": disp(sp[0].txid) if sp else None,
                        "unlockingInputIndex": sp[1] if sp else 0xFFFFFFFF})
                other = self.other_matches(chain, key)
                self.check(cid + ":no_input_or_data_match", other == [],
                           "conduitd would also match %s (its INPUT/DATA rows)" % other)
                if name == "nomatch":
                    self.check(cid + ":no_match", matches == [], "matches: %s" % matches)
                    continue
                if "expect_match" in case:
                    self.check(cid + ":match_count", len(matches) == case["expect_match_count"],
                               "%d matches, expected %d" % (len(matches), case["expect_match_count"]))
                    self.check(cid + ":match", matches[:1] == [case["expect_match"]],
                               "chain gives %s, expected %s" % (matches, case["expect_match"]))
                    continue
                # mining key
                unspent = [m for m in matches if m["unlockingTransactionId"] is None]
                spent = [m for m in matches if m["unlockingTransactionId"] is not None]
                self.check(cid + ":match_count", len(matches) == case["expect_match_count"],
                           "%d matching outputs in %s, expected %d"
                           % (len(matches), chain.name, case["expect_match_count"]))
                self.check(cid + ":unspent_count", len(unspent) == case["expect_unspent_count"],
                           "%d unspent, expected %d" % (len(unspent), case["expect_unspent_count"]))
                self.check(cid + ":spent_count", len(spent) == case["expect_spent_count"],
                           "%d spent, expected %d" % (len(spent), case["expect_spent_count"]))
                got = sorted(m["lockingTransactionId"] for m in spent)
                want = sorted(case["expect_spent_locking_txids"])
                self.check(cid + ":spent_txids", got == want,
                           "spent locking txids %s, expected %s" % (got, want))
                self.check(cid + ":unspent_index", all(m["unlockingInputIndex"] == 0xFFFFFFFF
                                                       for m in unspent), "")

    # ---- chain tips ------------------------------------------------------------------------
    def check_tips(self, data):
        pre, post = self.chains["pre"], self.chains["post"]
        self.check("tips:pre:height", pre.tip.height == 116, "pre-reorg tip height %d" % pre.tip.height)
        for tip in data["post_reorg"]["test_headers_tip_post_reorg"]["expect_tips"]:
            h = tip["header.hash"]
            chain = post if tip["state"] == "LONGEST_CHAIN" else pre
            blk = chain.by_hash.get(undisp(h))
            self.check("tips:%s:%d" % (tip["state"], tip["height"]),
                       blk is not None and blk.height == tip["height"] and blk is chain.tip,
                       "%s is not the tip of %s at height %d" % (h, chain.name, tip["height"]))
        stale = undisp(data["post_reorg"]["test_headers_tip_post_reorg"]["expect_tips"][0]["header.hash"])
        self.check("tips:STALE:not_in_post", stale not in post.by_hash,
                   "the stale tip is in the post-reorg chain")

    # ---- claims of ../shared/data/README.md that the expectations rely on ---------------------
    def check_data_readme(self):
        c = self.chains["pre"]

        def tx_at(height, pos):
            return c.blocks[height].txs[pos]

        def spends(tx, in_idx, txid_hex, vout):
            return tx.inputs[in_idx][:2] == (undisp(txid_hex), vout)

        d53a, t88c9, t4798 = tx_at(111, 1), tx_at(112, 1), tx_at(113, 1)
        t0120, t47f3, t4925, t1afa = tx_at(113, 2), tx_at(115, 1), tx_at(115, 2), tx_at(115, 3)
        self.check("datareadme:111:1:p2pkh", d53a.outputs[0][1] == bytes.fromhex(
            "76a91417aa9ecb9e38b91bddcc5e8d2d26154be90d899688ac"), "output 0 is not that P2PKH")
        s = t88c9.outputs[0][1]
        self.check("datareadme:112:1:p2pk", len(s) == 35 and s[0] == 0x21 and s[-1] == 0xAC
                   and s[1:5].hex() == "032fcb2f" and s[31:34].hex() == "332fdb",
                   "output 0 is not P2PK to 032fcb2f...332fdb")
        s = t4798.outputs[2][1]
        is_ms = len(s) == 71 and s[1] == 0x21 and s[35] == 0x21 and s[-2] == 0x52 and s[-1] == 0xAE
        self.check("datareadme:113:1:bare_multisig", is_ms, "output 2 is not a bare 2-key multisig")
        self.check("datareadme:113:1:multisig_1_of_2", is_ms and s[0] == 0x51,
                   "output 2 is %d-of-2 (script starts with 0x%02x), the README says 1-of-2"
                   % (s[0] - 0x50, s[0]))
        self.check("datareadme:113:2:spends_multisig", spends(t0120, 0, disp(t4798.txid), 2), "")
        self.check("datareadme:115:1:spends_p2pk", spends(t47f3, 0, disp(t88c9.txid), 0), "")
        self.check("datareadme:115:1:spends_p2pkh", spends(t47f3, 1, disp(d53a.txid), 0), "")
        pushes = [d for op, d, _ in script_pushes(t47f3.inputs[1][2]) if op == 0x21]
        self.check("datareadme:115:1:input_key", [sha256(d).hex() for d in pushes] ==
                   ["44c55cbcb8222d6afd5adc5f72ec3fe2b6bbefad27f9c920805ebb9cb6a43de3"], "")
        self.check("datareadme:115:2:p2sh", t4925.outputs[1][1][:2] == b"\xa9\x14"
                   and sha256(t4925.outputs[1][1][2:22]).hex() ==
                   "5e7583878789b03276d2d60a1cf3772a999084e3b12d0d3c1a33a30bd15609db", "")
        self.check("datareadme:115:3:spends_p2sh", spends(t1afa, 0, disp(t4925.txid), 1), "")
        post = self.chains["post"]
        b116 = post.blocks[116]
        self.check("datareadme:reorg:block116", disp(b116.hash) ==
                   "1ccd26ea6d3c1a017bd490051b6bd23c9a9f7f27ee9c47a723278e487a5455a9"
                   and len(b116.txs) == 8 and len(b116.raw) == 4040, "")
        fork = max(h for h in range(min(len(c.blocks), len(post.blocks)))
                   if c.blocks[h].hash == post.blocks[h].hash)
        self.check("datareadme:reorg:fork_110", fork == 110, "fork point %d" % fork)

    def run(self):
        pre = self.load("pre_reorg_data.json")
        post = self.load("post_reorg_data.json")
        self.check_transactions(pre)
        self.check_proofs("pre", pre)
        self.check_proofs("post", post)
        self.check_utxo_spends(self.load("utxo_spends.json"))
        self.check_tip_filter(self.load("expected_tip_filter_results.json"),
                              self.load("pushdata_registrations.json"))
        self.check_restoration(self.load("restoration_expectations.json"))
        self.check_tips(self.load("test_01_expectations.json"))
        self.check_data_readme()
        return self


def default_data_dir():
    return os.environ.get("CD_SHARED_DATA", os.path.abspath(os.path.join(ROOT, "..", "shared", "data")))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=default_data_dir())
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    c = Checker(args.data, args.verbose).run()
    print("%d checks passed, %d failed" % (c.passed, len(c.failures)))
    for cid in sorted(c.failures):
        tag = "KNOWN" if cid in KNOWN_DISCREPANCIES else "NEW  "
        print("%s %s: %s" % (tag, cid, c.failures[cid]))
    gone = sorted(set(KNOWN_DISCREPANCIES) - set(c.failures))
    for cid in gone:
        print("GONE  %s (listed as a known discrepancy but it holds now)" % cid)
    return 0 if set(c.failures) == set(KNOWN_DISCREPANCIES) else 1


if __name__ == "__main__":
    sys.exit(main())
