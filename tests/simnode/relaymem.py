"""The node's relay memory: the txs a `getdata` is answered from.

Bitcoin SV (src/net/net_processing.cpp, SendTxnInventory and ProcessGetData;
the same in 1.0.x and 1.1.x): when the node sends the inv of a tx to a peer it
inserts the tx in `mapRelay` - only if not already there, so the time counts
from the first announcement - and appends (now + 15 * 60 s, entry) to
`vRelayExpiration`; a `getdata` for MSG_TX is answered from `mapRelay`, else,
only for a peer that sent `mempool`, from the mempool if the tx entered it no
later than that request (`timeLastMempoolReq`), else with `notfound`.  Txs
still in the mempool are therefore *not* served after 15 minutes to a peer
that never sent `mempool` (and a non-whitelisted peer may not send it).

One difference, on purpose: the node erases expired entries lazily, when it
next sends a tx inv (entries with expiry < now).  On a live network that
happens several times a second, so the simulator checks the expiry at lookup
instead: a quiet regtest node would serve a little longer, never a client's
right to rely on.
"""
import collections

# bitcoin-sv src/net/net_processing.cpp: nNow + 15 * 60 * 1000000 (microseconds)
RELAY_EXPIRY = 15 * 60


class RelayMemory:
    """txid -> raw tx, each for `expiry` seconds of `clock` after it was
    first remembered.  Not thread-safe: the caller holds SimNode.lock."""

    def __init__(self, clock, expiry=RELAY_EXPIRY):
        if expiry <= 0:
            raise ValueError("relay expiry must be > 0 s, not %r" % (expiry,))
        self.clock = clock
        self.expiry = expiry
        self.txs = {}                           # txid -> (raw, expires at)
        self.order = collections.deque()        # (expires at, txid), oldest first

    def _sweep(self, now):
        # vRelayExpiration: the front expires first (one expiry for all entries)
        while self.order and self.order[0][0] < now:
            t, txid = self.order.popleft()
            e = self.txs.get(txid)
            if e is not None and e[1] == t:
                del self.txs[txid]

    def remember(self, txid, raw):
        """The node announced `txid` (first time: remembered until now +
        expiry; again: unchanged, like mapRelay.insert)."""
        self.remember_many(((txid, raw),))

    def remember_many(self, pairs, now=None):
        """remember() for each (txid, raw), with one reading of the clock
        (a batch of announcements is one SendTxnInventory)."""
        now = self.clock() if now is None else now
        self._sweep(now)
        t = now + self.expiry
        for txid, raw in pairs:
            if txid not in self.txs:
                self.txs[txid] = (raw, t)
                self.order.append((t, txid))

    def fresh(self, txid, now):
        """True if `txid` is remembered and not expired at `now`."""
        e = self.txs.get(txid)
        return e is not None and e[1] >= now

    def get(self, txid):
        """The raw tx if still remembered, else None."""
        e = self.txs.get(txid)
        if e is None:
            return None
        if e[1] < self.clock():
            self._sweep(self.clock())
            return None
        return e[0]

    def __contains__(self, txid):
        return self.get(txid) is not None

    def __len__(self):
        self._sweep(self.clock())
        return len(self.txs)
