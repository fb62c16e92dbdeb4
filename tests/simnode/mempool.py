"""The simulated node's transaction state: mempool, orphan pool, non-final
pool, recent rejects, transaction validation and the mempool updates on
blocks and reorgs.  Network effects (reject messages, relay, getdata for
orphan parents, ban scores) are the caller's (node.py): the functions here
return Result objects saying what happened.

Modelled on the Bitcoin SV node (bitcoin-sv/bitcoin-sv; rules and constants
only, no code copied):

* `src/validation.cpp` TxnValidation: the order of the checks and the codes
  below; ProcessValidatedTxn / HandleOrphanAndRejectedP2PTxns /
  AskForMissingParents (orphans kept, parents asked for, never relayed);
  CreateTxRejectMsgForP2PTxn (codes >= 0x100 are internal, never sent);
  UpdateMempoolForReorg (disconnected block txs re-validated, failures
  removed with their descendants, then RemoveForReorg);
  IsFinalTx / ContextualCheckTransaction(ForCurrentBlock) /
  CheckSequenceLocks (height tip+1, median time past of the tip; BIP 68
  only before Genesis); Consensus::CheckTxInputs (coinbase maturity 100 at
  spend height tip+1).
* `src/txmempool.cpp` RemoveForReorg, RemoveForBlock (included txs and
  their conflicts, recursively), removeRecursive, Expire.
* `src/orphan_txns.h` orphan pool: 20 min expiry, 10 MB total size
  (random eviction), dropped when the peer disconnects.
* `src/policy/policy.h` StandardNonFinalVerifyFlags; `src/validation.h`
  DEFAULT_MEMPOOL_EXPIRY (336 h); `src/chainparams.cpp` regtest:
  fRequireStandard = false (no IsStandardTx / AreInputsStandard),
  GENESIS_ACTIVATION_REGTEST = 10000.

Reject codes of the checks (what a peer receives):

| check | code | reason | ban |
|---|---|---|---|
| coinbase as loose tx | 0x10 | bad-tx-coinbase | 100 |
| no inputs / no outputs | 0x10 | bad-txns-vin-empty / bad-txns-vout-empty | 10 |
| size over the consensus limit (1 MB before Genesis) | 0x10 | bad-txns-oversize | 100 |
| negative / too large output, total | 0x10 | bad-txns-vout-negative / -vout-toolarge / -txouttotal-toolarge | 100 |
| null prevout, duplicate inputs | 0x10 | bad-txns-prevout-null (10) / bad-txns-inputs-duplicate (100) | |
| non-final before Genesis | 0x40 | bad-txns-nonfinal | 0 |
| BIP 68 relative lock not met | 0x40 | non-BIP68-final | 0 |
| coinbase spent before maturity | 0x10 | bad-txns-premature-spend-of-coinbase | 0 |
| outputs above inputs | 0x10 | bad-txns-in-belowout | 100 |
| script failure | 0x10 / 0x40 | mandatory-script-verify-flag-failed (...) / non-mandatory-script-verify-flag (...) | 100 / 0 |
| already in the mempool / already confirmed | (0x101) | txn-already-in-mempool / txn-already-known: silence | |
| spends an output a mempool tx spends (double spend) | (0x102) | txn-mempool-conflict: silence | |
| input unknown (missing parent, spent or non-existent output) | - | orphan: kept, parents asked for, silence | |
"""
import collections
import random
import time

from .protocol import ParseError
from . import txval
from .txval import Tx

REJECT_MALFORMED = 0x01
REJECT_INVALID = 0x10
REJECT_DUPLICATE = 0x12
REJECT_NONSTANDARD = 0x40
REJECT_INTERNAL = 0x100           # codes from here on are never sent (src/consensus/validation.h)
REJECT_ALREADY_KNOWN = 0x101
REJECT_CONFLICT = 0x102

COINBASE_MATURITY = 100
MEMPOOL_HEIGHT = 0x7FFFFFFF
MAX_TX_SIZE_CONSENSUS_BEFORE_GENESIS = 1_000_000
MAX_TX_SIZE_CONSENSUS_AFTER_GENESIS = 1_000_000_000
DEFAULT_MEMPOOL_EXPIRY = 336 * 3600
ORPHAN_TX_EXPIRE_TIME = 20 * 60
DEFAULT_MAX_ORPHAN_TRANSACTIONS_SIZE = 10 * 1000 * 1000
GENESIS_ACTIVATION_REGTEST = 10_000


class Result:
    """Outcome of one validation.  status: accepted | nonfinal (held in the
    non-final pool, post-Genesis) | orphan | invalid | known."""
    __slots__ = ("status", "code", "reason", "dos", "tx", "source", "peer",
                 "missing_parents", "relay", "orphans_done")

    def __init__(self, status, tx=None, code=0, reason="", dos=0):
        self.status = status
        self.code = code
        self.reason = reason
        self.dos = dos
        self.tx = tx
        self.source = None
        self.peer = None
        self.missing_parents = []       # orphan: parent txids to ask for
        self.relay = []                 # txids to announce (this tx, accepted orphans)
        self.orphans_done = []          # [Result] of orphans re-processed after this tx

    @property
    def txid(self):
        return self.tx.txid if self.tx is not None else None

    @property
    def sendable(self):
        """A reject message goes to the peer (src/validation.cpp
        CreateTxRejectMsgForP2PTxn: 0 < code < REJECT_INTERNAL)."""
        return self.status == "invalid" and 0 < self.code < REJECT_INTERNAL

    def __repr__(self):
        return "Result(%s%s)" % (self.status, ", 0x%02x %s" % (self.code, self.reason)
                                 if self.code else "")


class TxRejected(ValueError):
    """submit_tx() of a tx the node refuses: .code, .reason, .result."""

    def __init__(self, result):
        self.result = result
        self.code = result.code
        self.reason = result.reason
        super().__init__("tx refused: %s (0x%02x %s)" % (result.status, result.code, result.reason))


class Entry:
    __slots__ = ("tx", "time", "spends_coinbase", "height")

    def __init__(self, tx, t, spends_coinbase, height):
        self.tx = tx
        self.time = t
        self.spends_coinbase = spends_coinbase
        self.height = height


class Mempool:
    """txid -> entry, with the spent-outpoint and child maps.  Reads like a
    mapping txid -> raw tx (`txid in pool`, `pool[txid]`, `pool.values()`,
    `len(pool)`, `pool.clear()`), as the simulator's old dict did."""

    def __init__(self):
        self.entries = collections.OrderedDict()
        self.spent = {}                             # outpoint -> spender txid
        self.children = collections.defaultdict(set)

    # mapping view (raw bytes) -------------------------------------------
    def __contains__(self, txid):
        return txid in self.entries

    def __len__(self):
        return len(self.entries)

    def __bool__(self):
        return bool(self.entries)

    def __iter__(self):
        return iter(list(self.entries))

    def __getitem__(self, txid):
        return self.entries[txid].tx.raw

    def get(self, txid, default=None):
        e = self.entries.get(txid)
        return e.tx.raw if e is not None else default

    def keys(self):
        return list(self.entries)

    def values(self):
        return [e.tx.raw for e in self.entries.values()]

    def items(self):
        return [(t, e.tx.raw) for t, e in self.entries.items()]

    def clear(self):
        self.entries.clear()
        self.spent.clear()
        self.children.clear()

    # state ----------------------------------------------------------------
    def add(self, entry):
        tx = entry.tx
        self.entries[tx.txid] = entry
        for i in tx.vin:
            self.spent[i.outpoint] = tx.txid
            if i.prev in self.entries:
                self.children[i.prev].add(tx.txid)
        # a tx returning from a block may already have children here
        for n in range(len(tx.vout)):
            c = self.spent.get((tx.txid, n))
            if c is not None:
                self.children[tx.txid].add(c)

    def coin(self, outpoint):
        """(value, script) of an output of a mempool tx, or None."""
        e = self.entries.get(outpoint[0])
        if e is None or outpoint[1] >= len(e.tx.vout):
            return None
        return e.tx.vout[outpoint[1]]

    def descendants(self, txids):
        out = set()
        stack = [t for t in txids if t in self.entries]
        while stack:
            t = stack.pop()
            if t in out:
                continue
            out.add(t)
            stack.extend(self.children.get(t, ()))
        return out

    def remove(self, txids):
        """Remove exactly these entries (callers pass whole descendant sets)."""
        removed = []
        for t in txids:
            e = self.entries.pop(t, None)
            if e is None:
                continue
            removed.append(t)
            for i in e.tx.vin:
                if self.spent.get(i.outpoint) == t:
                    del self.spent[i.outpoint]
                ch = self.children.get(i.prev)
                if ch is not None:
                    ch.discard(t)
            self.children.pop(t, None)
        return removed

    def remove_recursive(self, tx):
        """removeRecursive: the tx and its descendants; a tx not in the pool
        still takes the txs spending its outputs (and theirs) with it."""
        if tx.txid in self.entries:
            roots = [tx.txid]
        else:
            roots = [self.spent[(tx.txid, n)] for n in range(len(tx.vout))
                     if (tx.txid, n) in self.spent]
        return self.remove(self.descendants(roots))

    def remove_for_block(self, txs):
        """RemoveForBlock: included txs leave, txs conflicting with them go
        with their descendants."""
        removed = []
        for tx in txs:
            if tx.txid in self.entries:
                removed += self.remove([tx.txid])
            for i in tx.vin:
                other = self.spent.get(i.outpoint)
                if other is not None and other != tx.txid:
                    removed += self.remove(self.descendants([other]))
        return removed

    def ordered(self):
        """Entries with parents before children (block template order)."""
        out, done = [], set()
        for root in list(self.entries):
            stack = [(root, False)]
            while stack:
                t, expanded = stack.pop()
                if t in done:
                    continue
                if expanded:
                    done.add(t)
                    out.append(self.entries[t])
                    continue
                stack.append((t, True))
                for i in self.entries[t].tx.vin:
                    if i.prev in self.entries and i.prev not in done:
                        stack.append((i.prev, False))
        return out


class OrphanPool:
    """Orphan txs (src/orphan_txns.h, COrphanTxns)."""

    def __init__(self, max_size=DEFAULT_MAX_ORPHAN_TRANSACTIONS_SIZE,
                 expire_time=ORPHAN_TX_EXPIRE_TIME, seed=0):
        self.max_size = max_size
        self.expire_time = expire_time
        self.entries = collections.OrderedDict()    # txid -> (tx, peer, expires)
        self.by_prev = collections.defaultdict(set)
        self.rng = random.Random(seed)

    def __contains__(self, txid):
        return txid in self.entries

    def __len__(self):
        return len(self.entries)

    def add(self, tx, peer, now):
        if tx.txid in self.entries:
            return
        self.entries[tx.txid] = (tx, peer, now + self.expire_time)
        for i in tx.vin:
            self.by_prev[i.outpoint].add(tx.txid)

    def erase(self, txid):
        e = self.entries.pop(txid, None)
        if e is None:
            return 0
        for i in e[0].vin:
            s = self.by_prev.get(i.outpoint)
            if s is not None:
                s.discard(txid)
                if not s:
                    del self.by_prev[i.outpoint]
        return 1

    def erase_peer(self, peer):
        return sum(self.erase(t) for t, e in list(self.entries.items()) if e[1] == peer)

    def spenders(self, tx):
        out = set()
        for n in range(len(tx.vout)):
            out |= self.by_prev.get((tx.txid, n), set())
        return out

    def limit(self, now):
        """Expire old orphans, then evict random ones over the size cap."""
        n = 0
        for t, e in list(self.entries.items()):
            if e[2] <= now:
                n += self.erase(t)
        while self.entries and sum(e[0].size for e in self.entries.values()) > self.max_size:
            n += self.erase(self.rng.choice(list(self.entries)))
        return n

    def txs(self):
        return [e[0].raw for e in self.entries.values()]


class TxState:
    """Mempool + orphans + non-final pool + validation against a Chain."""

    def __init__(self, chain, genesis_height=GENESIS_ACTIVATION_REGTEST,
                 mempool_expiry=DEFAULT_MEMPOOL_EXPIRY, clock=time.time,
                 max_orphan_size=DEFAULT_MAX_ORPHAN_TRANSACTIONS_SIZE):
        self.chain = chain
        self.mempool = Mempool()
        self.orphans = OrphanPool(max_size=max_orphan_size)
        self.nonfinal = collections.OrderedDict()   # txid -> Entry (post-Genesis time-locked)
        self.recent_rejects = set()
        self.genesis_height = genesis_height
        self.mempool_expiry = mempool_expiry
        self.clock = clock
        self.policy = None          # callable(raw) -> None | (code, reason): extra test hook
        self.log = lambda s: None

    # -- chain context --------------------------------------------------------
    def tip_height(self):
        return self.chain.height

    def genesis(self, height):
        return height >= self.genesis_height

    def known(self, txid):
        """AlreadyHave / IsTxnKnown for MSG_TX (src/net/net_processing.cpp):
        recent rejects, mempool, orphans, or outputs 0/1 in the coins
        (the node checks its coins cache)."""
        u = self.chain.utxo
        return (txid in self.recent_rejects or txid in self.mempool or
                txid in self.orphans or txid in self.nonfinal or
                (txid, 0) in u or (txid, 1) in u)

    # -- validation -------------------------------------------------------------
    def validate(self, tx, trusted=False):
        """TxnValidation against the current tip and mempool.  Does not
        change any state.  Returns a Result (status accepted = would be
        accepted).  trusted: skip the script checks (txs the simulator
        generated with dummy signatures, returning from a block)."""
        chain = self.chain
        tip = chain.height
        next_h = tip + 1
        genesis_next = self.genesis(next_h)

        def bad(code, reason, dos=0):
            return Result("invalid", tx, code, reason, dos)

        # CheckRegularTransaction / CheckTransactionCommon
        if tx.is_coinbase():
            return bad(REJECT_INVALID, "bad-tx-coinbase", 100)
        if not tx.vin:
            return bad(REJECT_INVALID, "bad-txns-vin-empty", 10)
        if not tx.vout:
            return bad(REJECT_INVALID, "bad-txns-vout-empty", 10)
        max_size = (MAX_TX_SIZE_CONSENSUS_AFTER_GENESIS if genesis_next
                    else MAX_TX_SIZE_CONSENSUS_BEFORE_GENESIS)
        if tx.size > max_size:
            return bad(REJECT_INVALID, "bad-txns-oversize", 100)
        total = 0
        for v, _ in tx.vout:
            if v < 0:
                return bad(REJECT_INVALID, "bad-txns-vout-negative", 100)
            if v > txval.MAX_MONEY:
                return bad(REJECT_INVALID, "bad-txns-vout-toolarge", 100)
            total += v
            if total > txval.MAX_MONEY:
                return bad(REJECT_INVALID, "bad-txns-txouttotal-toolarge", 100)
        seen = set()
        for i in tx.vin:
            if i.prev == b"\0" * 32 and i.index == 0xFFFFFFFF:
                return bad(REJECT_INVALID, "bad-txns-prevout-null", 10)
            if i.outpoint in seen:
                return bad(REJECT_INVALID, "bad-txns-inputs-duplicate", 100)
            seen.add(i.outpoint)
        if self.policy is not None:
            r = self.policy(tx.raw)
            if r:
                return bad(r[0], r[1])
        # (IsStandardTx: not required on regtest, src/chainparams.cpp)

        # finality for the next block (ContextualCheckTransactionForCurrentBlock)
        nonfinal = False
        if not txval.is_final(tx, next_h, chain.mtp(tip)):
            if not genesis_next:
                return bad(REJECT_NONSTANDARD, "bad-txns-nonfinal")
            nonfinal = True
            if any(i.prev in self.nonfinal for i in tx.vin):
                return bad(REJECT_NONSTANDARD, "too-long-non-final-chain")

        if tx.txid in self.mempool or tx.txid in self.nonfinal:
            return Result("known", tx, REJECT_ALREADY_KNOWN, "txn-already-in-mempool")
        if any(i.outpoint in self.mempool.spent for i in tx.vin):
            return Result("invalid", tx, REJECT_CONFLICT, "txn-mempool-conflict")
        u = chain.utxo
        if any((tx.txid, n) in u for n in range(len(tx.vout))):
            return Result("known", tx, REJECT_ALREADY_KNOWN, "txn-already-known")

        coins = []              # (value, script, height, is_coinbase)
        missing = []
        for i in tx.vin:
            e = u.get(i.outpoint)
            if e is not None:
                coins.append(e)
                continue
            m = self.mempool.coin(i.outpoint)
            if m is not None:
                coins.append((m[0], m[1], MEMPOOL_HEIGHT, False))
                continue
            missing.append(i.prev)
        if missing:
            r = Result("orphan", tx)
            r.missing_parents = list(dict.fromkeys(missing))
            return r

        # BIP 68 (CheckSequenceLocks; ignored once Genesis is active at the tip)
        if not self.genesis(tip):
            heights = [next_h if c[2] == MEMPOOL_HEIGHT else c[2] for c in coins]
            mh, mt = txval.sequence_lock_pair(tx, heights, chain.mtp)
            if mh >= next_h or mt >= chain.mtp(tip):
                return bad(REJECT_NONSTANDARD, "non-BIP68-final")

        # Consensus::CheckTxInputs (spend height tip+1)
        value_in = 0
        for c in coins:
            if c[3] and next_h - c[2] < COINBASE_MATURITY:
                return bad(REJECT_INVALID, "bad-txns-premature-spend-of-coinbase")
            if not 0 <= c[0] <= txval.MAX_MONEY:
                return bad(REJECT_INVALID, "bad-txns-inputvalues-outofrange", 100)
            value_in += c[0]
        if value_in < tx.value_out():
            return bad(REJECT_INVALID, "bad-txns-in-belowout", 100)

        if not trusted:
            r = txval.check_scripts(tx, [(c[0], c[1]) for c in coins])
            if r is not None:
                return bad(*r)
        return Result("nonfinal" if nonfinal else "accepted", tx)

    def _spends_coinbase(self, tx):
        u = self.chain.utxo
        return any((u.get(i.outpoint) or (0, b"", 0, False))[3] for i in tx.vin)

    def commit(self, res):
        """Store an accepted tx (mempool or non-final pool)."""
        tx = res.tx
        e = Entry(tx, self.clock(), self._spends_coinbase(tx), self.chain.height)
        if res.status == "nonfinal":
            self.nonfinal[tx.txid] = e
        else:
            self.mempool.add(e)
        self.orphans.erase(tx.txid)

    def process(self, raw_or_tx, source="p2p", peer=None, trusted=False):
        """Validate and, if valid, commit; then re-process orphans that spend
        the new tx (a work queue, as the node's validator retries the
        dependents of accepted txs).  source: p2p | wallet | reorg.
        Returns the Result of the tx; .orphans_done holds the re-processed
        orphans' Results (.peer = the peer that sent each)."""
        tx = raw_or_tx if isinstance(raw_or_tx, Tx) else Tx.parse(raw_or_tx)
        res = self._process_one(tx, source, peer, trusted, is_orphan=False)
        if res.status in ("accepted", "nonfinal"):
            queue = [tx]
            while queue:
                parent = queue.pop(0)
                for otxid in sorted(self.orphans.spenders(parent)):
                    if otxid not in self.orphans:
                        continue
                    otx, opeer, _ = self.orphans.entries[otxid]
                    r = self._process_one(otx, "p2p", opeer, False, is_orphan=True)
                    res.orphans_done.append(r)
                    if r.status in ("accepted", "nonfinal"):
                        res.relay.append(otx.txid)
                        queue.append(otx)
        if source != "reorg":
            self.expire()
        return res

    def _process_one(self, tx, source, peer, trusted, is_orphan):
        res = self.validate(tx, trusted=trusted)
        res.source = source
        res.peer = peer
        if res.status in ("accepted", "nonfinal"):
            self.commit(res)
            if source != "reorg":
                res.relay.insert(0, tx.txid)
            return res
        if res.status == "orphan":
            if is_orphan:
                return res              # still missing inputs: stays as it is
            if source == "p2p":
                if any(p in self.recent_rejects for p in res.missing_parents):
                    # rejected parents: not kept, remembered as rejected
                    self.recent_rejects.add(tx.txid)
                    res.missing_parents = []
                    return res
                res.missing_parents = [p for p in res.missing_parents if not self.known(p)]
                self.orphans.add(tx, peer, self.clock())
                self.orphans.limit(self.clock())
            return res
        if res.status == "invalid":
            if is_orphan:
                if res.dos > 0:
                    self.orphans.erase_peer(peer)
                self.orphans.erase(tx.txid)
            if source == "p2p":
                self.recent_rejects.add(tx.txid)
        return res

    # -- removal -----------------------------------------------------------------
    def expire(self, now=None):
        """Expire (-mempoolexpiry): entries older than the expiry go with
        their descendants.  Returns the removed txids."""
        now = self.clock() if now is None else now
        cutoff = now - self.mempool_expiry
        old = [t for t, e in self.mempool.entries.items() if e.time < cutoff]
        removed = self.mempool.remove(self.mempool.descendants(old)) if old else []
        self.orphans.limit(now)
        return removed

    def block_connected(self, block_txs):
        """ConnectTip: RemoveForBlock for one block's txs (Tx list incl.
        the coinbase), recent rejects reset."""
        txs = [t for t in block_txs if not t.is_coinbase()]
        removed = self.mempool.remove_for_block(txs)
        for t in txs:
            self.nonfinal.pop(t.txid, None)
        spent = {i.outpoint for t in txs for i in t.vin}
        for t, e in list(self.nonfinal.items()):
            if any(i.outpoint in spent for i in e.tx.vin):
                del self.nonfinal[t]
        self.recent_rejects.clear()
        return removed

    def remove_for_reorg(self):
        """RemoveForReorg at the current tip: non-final txs (height tip+1,
        MTP of the tip), BIP 68 failures (before Genesis), and txs spending
        a coinbase that is now immature or an output that is gone; each
        with its descendants."""
        chain = self.chain
        tip = chain.height
        next_h = tip + 1
        mtp = chain.mtp(tip)
        u = chain.utxo
        bad = []
        for t, e in self.mempool.entries.items():
            tx = e.tx
            if not txval.is_final(tx, next_h, mtp):
                bad.append(t)
                continue
            if not self.genesis(tip):
                heights = []
                for i in tx.vin:
                    c = u.get(i.outpoint)
                    heights.append(c[2] if c is not None else next_h)
                mh, mt = txval.sequence_lock_pair(tx, heights, chain.mtp)
                if mh >= next_h or mt >= mtp:
                    bad.append(t)
                    continue
            if e.spends_coinbase:
                for i in tx.vin:
                    if i.prev in self.mempool.entries:
                        continue
                    c = u.get(i.outpoint)
                    if c is None or (c[3] and next_h - c[2] < COINBASE_MATURITY):
                        bad.append(t)
                        break
        return self.mempool.remove(self.mempool.descendants(bad))

    def update_for_reorg(self, disconnected, connected):
        """After the chain switched branches (UpdateMempoolForReorg).
        disconnected: [(txs of a block that left, trusted txid set)] in
        disconnect order (tip first); connected: [txs of a block that
        joined] in connect order.  Returns (readded, removed) txid lists."""
        removed = []
        new_ids = set()
        for txs in connected:
            removed += self.block_connected(txs)
            new_ids.update(t.txid for t in txs)
        readded = []
        for txs, trusted in reversed(disconnected):
            for tx in txs:
                if tx.is_coinbase():
                    removed += self.mempool.remove_recursive(tx)
                    continue
                if tx.txid in new_ids:
                    continue
                r = self.process(tx, source="reorg", trusted=tx.txid in trusted)
                if r.status == "accepted":
                    readded.append(tx.txid)
                else:
                    removed += self.mempool.remove_recursive(tx)
        # (UpdateTransactionsFromBlock: child links are rebuilt by Mempool.add)
        removed += self.remove_for_reorg()
        removed += self.expire()
        self.recent_rejects.clear()
        return readded, removed

    def promote_nonfinal(self):
        """Post-Genesis: time-locked txs that became final enter the mempool
        (the node re-validates them as 'finalised' txs).  Returns Results."""
        out = []
        for t, e in list(self.nonfinal.items()):
            if txval.is_final(e.tx, self.chain.height + 1, self.chain.mtp(self.chain.height)):
                del self.nonfinal[t]
                out.append(self.process(e.tx, source="finalised"))
        return out


def parse(raw):
    """Tx.parse raising ParseError (the node: reject 0x01 'error parsing message')."""
    return Tx.parse(raw)


__all__ = ["TxState", "Mempool", "OrphanPool", "Result", "TxRejected", "Entry", "parse",
           "ParseError"]
