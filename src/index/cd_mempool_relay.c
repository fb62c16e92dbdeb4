/*
 * cd_mempool_relay.c - relayed transactions into the mempool module's queue:
 * tx invs answered with getdata, the requests outstanding per peer, and the
 * intake of `tx` messages (issue 11 F10: never unsolicited, never oversized).
 *
 * Rules
 *  - A `tx` is taken only if its txid (sha256d of the bytes received,
 *    computed by libconduit-p2p) was asked, by getdata, from the very peer
 *    connection that sent it. Anything else - unsolicited, asked from
 *    another peer, or a different tx than the one asked (it hashes to
 *    something else, so it matches no request) - is dropped and counted.
 *  - A tx larger than mempool_max_tx_size (default: the node's
 *    -maxtxsizepolicy, 10 MB) is dropped before it is parsed or copied.
 *  - Outstanding requests are bounded in all (MP_REQ_MAX) and per peer
 *    (MP_REQ_PEER_MAX): a peer announcing txs it never serves fills only its
 *    own share; a request unanswered after MP_REQ_TIMEOUT_S, answered by
 *    `notfound` or cut by a disconnect ends. Queued bytes are bounded too
 *    (invs are not answered while the queue is full: back-pressure).
 *  - What a peer did wrong is logged per peer (its configured host:port),
 *    the first time and then at most once a minute with the counts.
 */
#include "cd_mempool.h"
#include "cd_mempool_int.h"

#include "btc_tx.h"
#include "cd_log.h"
#include "cd_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cd_mempool_relaying(const mp_state *s)
{
    return s && s->cfg->index && s->cfg->relay && s->synced;
}

/* ---- per-peer counters ---- */

static mp_peerstat *peerstat(mp_state *s, const cp2p_peer *p)
{
    mp_peerstat *free_slot = NULL;
    for (size_t i = 0; i < MP_PEERS_MAX; i++) {
        if (s->peers[i].peer == p)
            return &s->peers[i];
        if (!s->peers[i].peer && !free_slot)
            free_slot = &s->peers[i];
    }
    if (!free_slot)
        return NULL;
    memset(free_slot, 0, sizeof(*free_slot));
    free_slot->peer = p;
    snprintf(free_slot->name, sizeof(free_slot->name), "%s", cp2p_peer_name(p));
    return free_slot;
}

static uint64_t bad_total(const mp_peerstat *ps)
{
    return ps->unsolicited + ps->oversize + ps->unparsable + ps->unanswered;
}

static unsigned bad_kinds(const mp_peerstat *ps)
{
    return (ps->unsolicited ? 1u : 0) | (ps->oversize ? 2u : 0) | (ps->unparsable ? 4u : 0) |
           (ps->unanswered ? 8u : 0);
}

/* Logs a peer's counters if they grew: at once when a new kind of fault
 * appears, else at most once a minute (once per state change, not per
 * message). */
static void peer_log(mp_peerstat *ps, int force)
{
    uint64_t tot = bad_total(ps);
    if (tot == ps->logged)
        return;
    double now = cd_now_s();
    unsigned k = bad_kinds(ps);
    if (!force && !(k & ~ps->kinds) && now - ps->last_log < MP_PEER_LOG_EVERY_S)
        return;
    ps->kinds = k;
    cd_log_warn("mempool: peer %s: %" PRIu64 " unsolicited txs (not asked from it, or not the "
                "tx asked for), %" PRIu64 " above mempool_max_tx_size, %" PRIu64
                " unparsable, %" PRIu64 " requests unanswered: ignored, nothing indexed from them",
                ps->name, ps->unsolicited, ps->oversize, ps->unparsable, ps->unanswered);
    ps->logged = tot;
    ps->last_log = now;
}

/* ---- outstanding requests: open addressing with tombstones ---- */

static mp_req *req_find(mp_state *s, const uint8_t h[32])
{
    uint32_t i = cd_le32(h) & (MP_REQ_SLOTS - 1);
    for (uint32_t k = 0; k < MP_REQ_SLOTS && s->req[i].used; k++) {
        if (s->req[i].used == 1 && memcmp(s->req[i].txid, h, 32) == 0)
            return &s->req[i];
        i = (i + 1) & (MP_REQ_SLOTS - 1);
    }
    return NULL;
}

static void req_put(mp_state *s, const uint8_t h[32], const cp2p_peer *p, mp_ask why)
{
    uint32_t i = cd_le32(h) & (MP_REQ_SLOTS - 1);
    while (s->req[i].used == 1)
        i = (i + 1) & (MP_REQ_SLOTS - 1);
    if (s->req[i].used == 2)
        s->req_dead--;
    memcpy(s->req[i].txid, h, 32);
    s->req[i].peer = p;
    s->req[i].t = cd_now_s();
    s->req[i].used = 1;
    s->req[i].why = (uint8_t)why;
    s->req_n++;
}

static void req_del(mp_state *s, mp_req *r)
{
    mp_peerstat *ps = peerstat(s, r->peer);
    if (ps && ps->outstanding)
        ps->outstanding--;
    r->used = 2;
    s->req_n--;
    s->req_dead++;
}

/* Rebuilds the table without tombstones (after many deletions). */
static void req_rehash(mp_state *s)
{
    mp_req *old = s->req;
    s->req = cd_xcalloc(MP_REQ_SLOTS, sizeof(*s->req));
    s->req_n = s->req_dead = 0;
    for (size_t i = 0; i < MP_REQ_SLOTS; i++) {
        if (old[i].used != 1)
            continue;
        uint32_t j = cd_le32(old[i].txid) & (MP_REQ_SLOTS - 1);
        while (s->req[j].used)
            j = (j + 1) & (MP_REQ_SLOTS - 1);
        s->req[j] = old[i];
        s->req_n++;
    }
    free(old);
}

/* ---- txs announced before relay on ---- */

void cd_mempool_pending_add(mp_state *s, cp2p_peer *peer, const cp2p_inv *inv, size_t n)
{
    double now = cd_now_s();
    for (size_t i = 0; i < n; i++) {
        if (inv[i].type != CP2P_INV_TX)
            continue;
        if (!s->pend)
            s->pend = cd_xcalloc(MP_PEND_MAX, sizeof(*s->pend));
        /* the ring keeps the newest: the oldest are the likeliest to have
         * left the node's relay memory or to be mined by relay on */
        mp_pend *e = &s->pend[(s->pend_head + s->pend_n) % MP_PEND_MAX];
        if (s->pend_n == MP_PEND_MAX)
            s->pend_head = (s->pend_head + 1) % MP_PEND_MAX;
        else
            s->pend_n++;
        memcpy(e->txid, inv[i].hash, 32);
        e->peer = peer;
        e->t = now;
    }
}

void cd_mempool_pending_forget(mp_state *s, const cp2p_peer *peer)
{
    for (size_t i = 0; i < s->pend_n; i++) {
        mp_pend *e = &s->pend[(s->pend_head + i) % MP_PEND_MAX];
        if (e->peer == peer)
            e->peer = NULL;
    }
}

size_t cd_mempool_pending_flush(mp_state *s)
{
    if (!s->pend_n)
        return 0;
    double now = cd_now_s();
    uint8_t(*ask)[32] = cd_xmalloc(s->pend_n * 32);
    size_t asked = 0, stale = 0, again = 0;
    /* A tx announced by several peers is asked from the last to announce
     * it: each node counts its relay memory's 15 minutes from its own inv,
     * so that one is the likeliest to still serve it, and a request is made
     * to one peer at a time (a notfound is not retried elsewhere). Newest
     * first: the first entry of a txid stays, the older ones are dropped. */
    cd_hashset dup = {0};
    for (size_t i = s->pend_n; i-- > 0;) {
        mp_pend *e = &s->pend[(s->pend_head + i) % MP_PEND_MAX];
        if (e->peer && !cd_hashset_add(&dup, e->txid)) {
            e->peer = NULL;
            again++;
        }
    }
    cd_hashset_free(&dup);
    /* one getdata per peer, in the order announced; an entry is taken by
     * the first pass over its peer and its peer cleared */
    for (size_t i = 0; i < s->pend_n; i++) {
        cp2p_peer *peer = s->pend[(s->pend_head + i) % MP_PEND_MAX].peer;
        if (!peer)
            continue;
        size_t n = 0;
        for (size_t k = i; k < s->pend_n; k++) {
            mp_pend *e = &s->pend[(s->pend_head + k) % MP_PEND_MAX];
            if (e->peer != peer)
                continue;
            if (now - e->t <= MP_PEND_AGE_S)
                memcpy(ask[n++], e->txid, 32);
            else
                stale++;
            e->peer = NULL;
        }
        if (n)
            asked += cd_mempool_request(s, peer, (const uint8_t(*)[32])ask, n, MP_ASK_PENDING);
    }
    cd_log_info("mempool: %zu txs announced while the index caught up: asked for %zu (%zu older "
                "than the node's relay memory, %zu announced again later by another peer and "
                "asked from it, the rest asked before or over the request bounds)",
                s->pend_n, asked, stale, again);
    free(ask);
    free(s->pend);
    s->pend = NULL;
    s->pend_head = s->pend_n = 0;
    return asked;
}

void cd_mempool_relay_init(mp_state *s)
{
    s->req = cd_xcalloc(MP_REQ_SLOTS, sizeof(*s->req));
}

void cd_mempool_relay_fini(mp_state *s)
{
    for (size_t i = 0; i < MP_PEERS_MAX; i++)
        if (s->peers[i].peer)
            peer_log(&s->peers[i], 1);
    free(s->req);
    free(s->pend);
    cd_hashset_free(&s->seen);
}

/* ---- recently requested set (an inv of a tx asked before is not asked again) ---- */

/* The set forgets everything at once when MP_SEEN_MAX is reached: cheaper
 * than an LRU, and an inv forgotten early only costs one more getdata. */
static void seen_add(mp_state *s, const uint8_t h[32])
{
    if (cd_hashset_count(&s->seen) >= MP_SEEN_MAX)
        cd_hashset_clear(&s->seen);
    (void)cd_hashset_add(&s->seen, h);
}

static size_t queue_max_bytes(const mp_state *s)
{
    uint64_t two = 2 * s->cfg->mempool_max_tx_size;
    return two > MP_QUEUE_MIN_BYTES ? (size_t)two : MP_QUEUE_MIN_BYTES;
}

static int queue_full(const mp_state *s)
{
    return s->q_n >= MP_QUEUE_MAX || s->q_bytes >= queue_max_bytes(s);
}

size_t cd_mempool_request(mp_state *s, cp2p_peer *peer, const uint8_t (*hashes)[32], size_t n,
                          mp_ask why)
{
    int fetch = why == MP_ASK_FETCH;
    mp_peerstat *ps = peerstat(s, peer);
    uint8_t(*want)[32] = NULL;
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) {
        if (queue_full(s) || s->req_n >= MP_REQ_MAX || !ps || ps->outstanding >= MP_REQ_PEER_MAX) {
            s->held_back++; /* not marked: a later announcement is taken */
            continue;
        }
        if ((!fetch && cd_hashset_has(&s->seen, hashes[i])) || req_find(s, hashes[i]))
            continue;
        seen_add(s, hashes[i]);
        req_put(s, hashes[i], peer, why);
        ps->outstanding++;
        if (!want)
            want = cd_xmalloc(n * 32);
        memcpy(want[nw++], hashes[i], 32);
    }
    /* A getdata that cannot be sent means the peer is being dropped: its
     * outstanding requests end in the disconnect callback. */
    if (nw && cp2p_peer_getdata_txs(peer, (const uint8_t(*)[32])want, nw) != CP2P_OK)
        cd_log_debug("mempool: getdata of %zu txs to %s not sent", nw, cp2p_peer_name(peer));
    free(want);
    return nw;
}

void cd_mempool_requests_end(mp_state *s, const cp2p_peer *peer, const cp2p_inv *inv, size_t n)
{
    mp_peerstat *ps = peerstat(s, peer);
    if (inv) {
        size_t early = 0;
        for (size_t i = 0; i < n; i++) {
            mp_req *r = inv[i].type == CP2P_INV_TX ? req_find(s, inv[i].hash) : NULL;
            if (r && r->peer == peer) {
                early += r->why == MP_ASK_PENDING;
                req_del(s, r);
                s->refused[MP_REFUSED_NOTFOUND]++;
                if (ps)
                    ps->notfound++;
            }
        }
        /* A notfound while relaying is ordinary (mined or evicted since the
         * inv) and only counted. One for a tx announced before relay on
         * means the node no longer had it in its relay memory (15 min from
         * its inv, bitcoin-sv src/net/net_processing.cpp: mapRelay): said
         * once per notfound message, since that tx is now missing from the
         * mempool tables until it is mined. */
        if (early)
            cd_log_info("mempool: peer %s: %zu txs asked at relay on were answered notfound "
                        "(announced while the index caught up, no longer in the node's relay "
                        "memory): not in the mempool tables, indexed when mined",
                        cp2p_peer_name(peer), early);
        return;
    }
    for (size_t i = 0; i < MP_REQ_SLOTS; i++)
        if (s->req[i].used == 1 && s->req[i].peer == peer) {
            req_del(s, &s->req[i]);
            s->refused[MP_REFUSED_UNANSWERED]++;
            if (ps)
                ps->unanswered++; /* cut by the disconnect */
        }
    if (ps) {
        peer_log(ps, 1);
        ps->peer = NULL; /* the slot is free; a new connection gets fresh counters */
    }
}

void cd_mempool_relay_tick(mp_state *s)
{
    double now = cd_now_s();
    if (now - s->req_swept < 1.0)
        return;
    s->req_swept = now;
    for (size_t i = 0; i < MP_REQ_SLOTS; i++) {
        mp_req *r = &s->req[i];
        if (r->used != 1 || now - r->t < MP_REQ_TIMEOUT_S)
            continue;
        mp_peerstat *ps = peerstat(s, r->peer);
        s->refused[MP_REFUSED_UNANSWERED]++;
        if (ps)
            ps->unanswered++;
        req_del(s, r);
    }
    if (s->req_dead > MP_REQ_SLOTS / 4)
        req_rehash(s);
    for (size_t i = 0; i < MP_PEERS_MAX; i++)
        if (s->peers[i].peer)
            peer_log(&s->peers[i], 0);
}

/* ---- parsing sink (cd_rows_parse_unit) ---- */

void cd_mempool_tx_free(mp_tx *t)
{
    free(t->raw);
    free(t->ins);
    free(t->keys);
    free(t->idx);
    free(t->flags);
    free(t->oval);
    free(t->ohash);
    free(t->oslen);
    free(t->oscr);
}

static void sink_tx(void *ctx, uint32_t pos, const uint8_t txid[32], uint64_t off, uint32_t size)
{
    (void)pos;
    (void)off;
    mp_tx *t = ctx;
    memcpy(t->txid, txid, 32);
    t->size = size;
}

static void sink_input(void *ctx, uint32_t pos, uint32_t in_idx, const uint8_t prev[32],
                       uint32_t prev_idx)
{
    (void)pos;
    (void)in_idx;
    mp_tx *t = ctx;
    if (t->n_in == t->cap_in) {
        t->cap_in = t->cap_in ? 2 * t->cap_in : 4;
        t->ins = cd_xrealloc(t->ins, t->cap_in * 36);
    }
    memcpy(t->ins + t->n_in * 36, prev, 32);
    cd_put_le32(t->ins + t->n_in * 36 + 32, prev_idx);
    t->n_in++;
}

static void sink_push(void *ctx, uint32_t pos, uint32_t idx, unsigned flags, const uint8_t key[32])
{
    (void)pos;
    mp_tx *t = ctx;
    if (t->n_push == t->cap_push) {
        t->cap_push = t->cap_push ? 2 * t->cap_push : 8;
        t->keys = cd_xrealloc(t->keys, t->cap_push * 32);
        t->idx = cd_xrealloc(t->idx, t->cap_push * sizeof(uint32_t));
        t->flags = cd_xrealloc(t->flags, t->cap_push * sizeof(uint32_t));
    }
    memcpy(t->keys + t->n_push * 32, key, 32);
    t->idx[t->n_push] = idx;
    t->flags[t->n_push] = flags;
    t->n_push++;
}

static void sink_output(void *ctx, uint32_t pos, uint32_t idx, uint64_t value,
                        const uint8_t *script, size_t script_len, const uint8_t hash[32])
{
    (void)pos;
    (void)idx; /* vout order: the SQL numbers them */
    mp_tx *t = ctx;
    if (t->n_out == t->cap_out) {
        t->cap_out = t->cap_out ? 2 * t->cap_out : 4;
        t->oval = cd_xrealloc(t->oval, t->cap_out * sizeof(uint64_t));
        t->ohash = cd_xrealloc(t->ohash, t->cap_out * 32);
        t->oslen = cd_xrealloc(t->oslen, t->cap_out * sizeof(int32_t));
    }
    t->oval[t->n_out] = value;
    memcpy(t->ohash + t->n_out * 32, hash, 32);
    /* the same rule as the block rows (cd_rows.c unit_output) */
    if (script_len <= CD_ROWS_SCRIPT_INLINE) {
        if (t->oscr_len + script_len > t->oscr_cap) {
            t->oscr_cap = (t->oscr_len + script_len) * 2;
            t->oscr = cd_xrealloc(t->oscr, t->oscr_cap);
        }
        if (script_len)
            memcpy(t->oscr + t->oscr_len, script, script_len);
        t->oscr_len += script_len;
        t->oslen[t->n_out] = (int32_t)script_len;
    } else {
        t->oslen[t->n_out] = -1;
    }
    t->n_out++;
}

/* The facts the node's finality rule needs (IsFinalTx, bitcoin-sv
 * src/validation.cpp): nLockTime and whether any input's nSequence is not
 * final. 0, or -1 if the tx does not parse. */
static int tx_facts(const uint8_t *raw, size_t len, mp_tx *t)
{
    btc_tx tx;
    if (btc_tx_parse(&tx, raw, len) != 0 || tx.size != len)
        return -1;
    t->lock_time = tx.locktime;
    t->seq_nonfinal = 0;
    btc_tx_iter it;
    btc_txin in;
    btc_tx_inputs(&tx, &it);
    while (btc_tx_next_input(&it, &in))
        if (in.sequence != 0xffffffffu)
            t->seq_nonfinal = 1;
    return 0;
}

void cd_mempool_intake(mp_state *s, cp2p_peer *peer, const uint8_t *raw, size_t len,
                       const uint8_t txid[32])
{
    mp_peerstat *ps = peerstat(s, peer);
    mp_req *r = req_find(s, txid);
    if (!r || r->peer != peer) {
        /* unsolicited, asked from another peer, or not the tx asked for */
        s->refused[MP_REFUSED_UNSOLICITED]++;
        if (ps) {
            ps->unsolicited++;
            peer_log(ps, 0);
        }
        return;
    }
    req_del(s, r);
    if (!cd_mempool_relaying(s))
        return;
    s->received++;
    if (len > s->cfg->mempool_max_tx_size) {
        s->refused[MP_REFUSED_OVERSIZE]++;
        if (ps) {
            ps->oversize++;
            peer_log(ps, 0);
        }
        return;
    }
    if (queue_full(s)) { /* requested before the queue filled: dropped */
        s->dropped++;
        s->refused[MP_REFUSED_QUEUE_FULL]++;
        return;
    }
    if (s->q_n == s->q_cap) {
        s->q_cap = s->q_cap ? 2 * s->q_cap : CD_MEMPOOL_BATCH;
        s->q = cd_xrealloc(s->q, s->q_cap * sizeof(*s->q));
    }
    mp_tx *t = &s->q[s->q_n];
    memset(t, 0, sizeof(*t));
    cd_rows_sink sink = {
        .ctx = t, .tx = sink_tx, .input = sink_input, .push = sink_push, .output = sink_output};
    size_t used = 0;
    long ntx = cd_rows_parse_unit(raw, len, 0, 0, 1, &s->opts, &sink, &used);
    if (ntx != 1 || used != len || tx_facts(raw, len, t) != 0) {
        cd_mempool_tx_free(t);
        s->refused[MP_REFUSED_UNPARSABLE]++;
        if (ps) {
            ps->unparsable++;
            peer_log(ps, 0);
        }
        return;
    }
    t->raw = cd_xmalloc(len ? len : 1);
    memcpy(t->raw, raw, len);
    s->q_n++;
    s->q_bytes += len;
    /* sent now if the connection is idle, else after the statement in flight */
    cd_mempool_dispatch(s);
}
