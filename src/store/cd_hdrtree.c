/*
 * cd_hdrtree.c - the header tree in memory: validation of incoming headers,
 * the index (hash -> node, height -> best-chain node), difficulty rules,
 * ancestors and locators, best-chain / reorg tracking. Loading it from and
 * committing it to the controller's own LMDB environment is
 * cd_hdrtree_db.c.
 *
 * Why it exists: the controller must know every header of every branch, pick
 * the best chain by work, and tell the block pipeline and the indexer which
 * blocks leave and join the best chain. It lives in its own LMDB env
 * (<datadir>/headers/) so that a long block-store write by the block-writer
 * process never blocks the controller's loop.
 *
 * LMDB layout (all in one env):
 *   "hdr"  : seq(be64, arrival order) -> hash(32, internal order) raw(80)
 *            height(le32) status(le32) work(32, big-endian)     = 152 bytes
 *            (appended: sequential keys keep each commit to a few pages)
 *   "idx"  : hash(32) -> seq(be64)   (lookup by hash for read-only users;
 *            written in sorted bulk every IDX_BATCH headers, at close and
 *            when sync is idle; "meta" idx_seq marks how far it goes, and a
 *            lookup that misses scans the records from that mark)
 *   "best" : height(be32) -> hash(32)   (best chain, dense 0..tip)
 *   "meta" : "tip" -> hash, "genesis" -> hash, "version" -> le32,
 *            "idx_seq" -> be64
 *
 * Difficulty rules (nBits): the default hook asks btc_pow_next_bits()
 * (src/bitcoin/btc_pow.h) for the nBits a header must carry, with an
 * ancestor callback served by the skip pointers below (O(log n) ancestor
 * lookups, also for headers of the batch not yet on the best chain):
 * regtest's fixed nBits, the legacy 2016-block retarget with the EDA, the
 * 144-block cash DAA from the network's DAA height and testnet's 20-minute
 * minimum-difficulty rule. Where btc_pow reports the chain too short for a
 * rule (a window reaching below genesis) only the limit check applies.
 * Proof of work, block work, the 256-bit arithmetic of chain work and the
 * median time past are src/bitcoin/'s (btc_check_pow, btc_block_work,
 * btc_u256_*, btc_pow_median_time): the tree only walks its own nodes and
 * stores chain work as 32 big-endian bytes.
 */
#include "cd_hdrtree.h"
#include "cd_hdrtree_int.h"

#include "btc_header.h"
#include "btc_pow.h"
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static uint64_t hash_key(const uint8_t h[32])
{
    uint64_t k;
    memcpy(&k, h, 8);
    return k;
}

static void tab_insert_raw(cd_hdrtree *t, cd_hdr_node *n)
{
    size_t i = hash_key(n->hash) & t->tab_mask;
    while (t->tab[i])
        i = (i + 1) & t->tab_mask;
    t->tab[i] = n;
}

void cd_hdrtree_tab_grow(cd_hdrtree *t)
{
    size_t old_size = t->tab ? t->tab_mask + 1 : 0;
    cd_hdr_node **old = t->tab;
    size_t size = old_size ? old_size * 2 : 1 << 16;
    t->tab = cd_xcalloc(size, sizeof(*t->tab));
    t->tab_mask = size - 1;
    for (size_t i = 0; i < old_size; i++) {
        if (old[i])
            tab_insert_raw(t, old[i]);
    }
    free(old);
}

void cd_hdrtree_tab_insert(cd_hdrtree *t, cd_hdr_node *n)
{
    if ((t->count + 1) * 2 > t->tab_mask + 1)
        cd_hdrtree_tab_grow(t);
    tab_insert_raw(t, n);
    t->count++;
}

cd_hdr_node *cd_hdrtree_tab_find(const cd_hdrtree *t, const uint8_t h[32])
{
    size_t i = hash_key(h) & t->tab_mask;
    cd_hdr_node *n;
    while ((n = t->tab[i]) != NULL) {
        if (memcmp(n->hash, h, 32) == 0)
            return n;
        i = (i + 1) & t->tab_mask;
    }
    return NULL;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void tab_remove(cd_hdrtree *t, const cd_hdr_node *n)
{
    size_t i = hash_key(n->hash) & t->tab_mask;
    while (t->tab[i] != n)
        i = (i + 1) & t->tab_mask;
    t->tab[i] = NULL;
    size_t j = i;
    for (;;) {
        j = (j + 1) & t->tab_mask;
        cd_hdr_node *m = t->tab[j];
        if (!m)
            break;
        size_t home = hash_key(m->hash) & t->tab_mask;
        /* m may move to i if its home is cyclically outside (i, j] */
        int move = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (move) {
            t->tab[i] = m;
            t->tab[j] = NULL;
            i = j;
        }
    }
    t->count--;
}

cd_hdr_node *cd_hdrtree_node_alloc(cd_hdrtree *t)
{
    cd_hdr_node *n;
    if (t->free_list) {
        n = t->free_list;
        t->free_list = n->prev;
    } else {
        if (!t->slabs || t->slabs->used == NODE_SLAB) {
            node_slab *s = cd_xmalloc(sizeof(*s));
            s->next = t->slabs;
            s->used = 0;
            t->slabs = s;
        }
        n = &t->slabs->nodes[t->slabs->used++];
    }
    memset(n, 0, sizeof(*n));
    return n;
}

static void node_free(cd_hdrtree *t, cd_hdr_node *n)
{
    n->prev = t->free_list;
    t->free_list = n;
}

void cd_hdrtree_best_reserve(cd_hdrtree *t, size_t n)
{
    if (n <= t->best_cap)
        return;
    size_t cap = t->best_cap ? t->best_cap : 1024;
    while (cap < n)
        cap *= 2;
    t->best = cd_xrealloc(t->best, cap * sizeof(*t->best));
    t->best_cap = cap;
}

/* ---- difficulty rules ---- */

uint32_t cd_hdrtree_mtp(const cd_hdr_node *n)
{
    uint32_t v[11];
    size_t k = 0;
    for (; n && k < 11; n = n->prev)
        v[k++] = hdr_time(n);
    return btc_pow_median_time(v, k);
}

/* Ancestor callback for btc_pow_next_bits: ctx is the block being extended. */
struct pow_ctx {
    const cd_hdrtree *t;
    const cd_hdr_node *prev;
    const cd_hdr_node *last; /* last answer: rules walk back one by one */
};

static int pow_ancestor(void *ctx, int32_t height, btc_pow_block *out)
{
    struct pow_ctx *c = ctx;
    const cd_hdr_node *a;
    if (c->last && c->last->height == height)
        a = c->last;
    else if (c->last && c->last->prev && c->last->height - 1 == height)
        a = c->last->prev;
    else
        a = cd_hdrtree_ancestor(c->t, c->prev, height);
    if (!a)
        return -1;
    c->last = a;
    out->height = a->height;
    out->time = hdr_time(a);
    out->bits = hdr_bits(a);
    btc_u256_from_be(&out->chain_work, a->work);
    return 0;
}

uint32_t cd_hdrtree_default_bits_fn(const cd_hdrtree *t, const cd_hdr_node *prev, uint32_t time,
                                    void *arg)
{
    (void)arg;
    if (t->net->pow_no_retargeting)
        return hdr_bits(prev);
    struct pow_ctx c = {t, prev, NULL};
    btc_pow_block pb;
    uint32_t bits;
    if (pow_ancestor(&c, prev->height, &pb) != 0)
        return 0;
    if (btc_pow_next_bits(t->net, &pb, time, pow_ancestor, &c, &bits) != 0)
        return 0; /* chain too short for the rule: only the limit applies */
    return bits;
}

void cd_hdrtree_set_tip_cb(cd_hdrtree *t, cd_hdrtree_tip_cb cb, void *arg)
{
    t->tip_cb = cb;
    t->tip_arg = arg;
}

void cd_hdrtree_set_bits_check(cd_hdrtree *t, cd_hdrtree_bits_fn fn, void *arg)
{
    t->bits_fn = fn;
    t->bits_arg = arg;
}

void cd_hdrtree_set_now(cd_hdrtree *t, int64_t now)
{
    t->now_override = now;
}

const cd_hdr_node *cd_hdrtree_tip(const cd_hdrtree *t)
{
    return t->tip;
}

int32_t cd_hdrtree_height(const cd_hdrtree *t)
{
    return t->tip ? t->tip->height : -1;
}

size_t cd_hdrtree_count(const cd_hdrtree *t)
{
    return t->count;
}

const cd_hdr_node *cd_hdrtree_find(const cd_hdrtree *t, const uint8_t hash[32])
{
    return t->tab ? cd_hdrtree_tab_find(t, hash) : NULL;
}

const cd_hdr_node *cd_hdrtree_at(const cd_hdrtree *t, int32_t height)
{
    if (!t->tip || height < 0 || height > t->tip->height)
        return NULL;
    return t->best[height];
}

int cd_hdrtree_on_best(const cd_hdrtree *t, const cd_hdr_node *n)
{
    return n && t->tip && n->height <= t->tip->height && t->best[n->height] == n;
}

/* Skip pointers (as in the node's CBlockIndex::pskip): every node points to
 * an ancestor at skip_height(height), which makes ancestor lookups O(log n)
 * off the best chain. */
static int32_t invert_lowest_one(int32_t n)
{
    return n & (n - 1);
}

static int32_t skip_height(int32_t height)
{
    if (height < 2)
        return 0;
    return (height & 1) ? invert_lowest_one(invert_lowest_one(height - 1)) + 1
                        : invert_lowest_one(height);
}

const cd_hdr_node *cd_hdrtree_ancestor(const cd_hdrtree *t, const cd_hdr_node *n, int32_t height)
{
    if (!n || height < 0 || height > n->height)
        return NULL;
    if (cd_hdrtree_on_best(t, n))
        return t->best[height];
    const cd_hdr_node *walk = n;
    int32_t hw = n->height;
    while (hw > height) {
        int32_t hs = skip_height(hw), hsp = skip_height(hw - 1);
        if (walk->skip && (hs == height || (hs > height && !(hsp < hs - 2 && hsp >= height)))) {
            walk = walk->skip;
            hw = hs;
        } else {
            walk = walk->prev;
            hw--;
        }
        if (cd_hdrtree_on_best(t, walk))
            return t->best[height];
    }
    return walk;
}

void cd_hdrtree_set_skip(const cd_hdrtree *t, cd_hdr_node *n)
{
    n->skip =
        n->prev ? (cd_hdr_node *)cd_hdrtree_ancestor(t, n->prev, skip_height(n->height)) : NULL;
}

size_t cd_hdrtree_locator_from(const cd_hdrtree *t, const cd_hdr_node *from, uint8_t (*out)[32],
                               size_t max)
{
    size_t k = 0;
    int32_t step = 1;
    const cd_hdr_node *n = from;
    if (max == 0 || !from)
        return 0;
    while (k < max) {
        if (n->height == 0 || k == max - 1) {
            memcpy(out[k++], t->best[0]->hash, 32);
            break;
        }
        memcpy(out[k++], n->hash, 32);
        if (k > 10)
            step *= 2;
        n = cd_hdrtree_ancestor(t, n, n->height > step ? n->height - step : 0);
    }
    return k;
}

size_t cd_hdrtree_locator(const cd_hdrtree *t, uint8_t (*out)[32], size_t max)
{
    return cd_hdrtree_locator_from(t, t->tip, out, max);
}

/* ---- adding headers ---- */

static void pending_push(cd_hdrtree *t, size_t i, cd_hdr_node *n)
{
    if (i >= t->pending_cap) {
        t->pending_cap = t->pending_cap ? t->pending_cap * 2 : 256;
        t->pending = cd_xrealloc(t->pending, t->pending_cap * sizeof(*t->pending));
    }
    t->pending[i] = n;
}

static void rollback_pending(cd_hdrtree *t, size_t n_pending)
{
    for (size_t i = n_pending; i-- > 0;) {
        tab_remove(t, t->pending[i]);
        node_free(t, t->pending[i]);
    }
}

static int64_t now_s(const cd_hdrtree *t)
{
    return t->now_override ? t->now_override : (int64_t)time(NULL);
}

/* Checks one header against its parent. Returns 0 or CD_HDRTREE_E*. */
static int check_header(cd_hdrtree *t, const uint8_t *raw, const uint8_t hash[32],
                        const cd_hdr_node *prev, btc_u256 *blockwork)
{
    uint32_t bits = cd_le32(raw + 72), tm = cd_le32(raw + 68);
    if (prev->status & CD_HDR_INVALID)
        return CD_HDRTREE_EINVALID;
    /* nBits unusable or above the network's limit, then hash above target */
    int prc = btc_check_pow(hash, bits, t->net);
    if (prc == BTC_ERR_POW_HASH)
        return CD_HDRTREE_EBADPOW;
    if (prc != 0)
        return CD_HDRTREE_EBADBITS;
    if (t->bits_fn) {
        uint32_t want = t->bits_fn(t, prev, tm, t->bits_arg);
        if (want != 0 && want != bits)
            return CD_HDRTREE_EBADBITS;
    }
    if (tm <= cd_hdrtree_mtp(prev) || (int64_t)tm > now_s(t) + MAX_FUTURE_S)
        return CD_HDRTREE_EBADTIME;
    if (bits != t->work_bits) {
        t->work_val = btc_block_work(bits);
        t->work_bits = bits;
    }
    *blockwork = t->work_val;
    return 0;
}

static void ev_reserve(const cd_hdr_node ***arr, size_t *cap, size_t n)
{
    if (n <= *cap)
        return;
    size_t c = *cap ? *cap : 64;
    while (c < n)
        c *= 2;
    *arr = cd_xrealloc(*arr, c * sizeof(**arr));
    *cap = c;
}

int cd_hdrtree_add(cd_hdrtree *t, const uint8_t *hdrs, size_t n, size_t stride,
                   cd_hdrtree_add_result *res)
{
    cd_hdrtree_add_result dummy;
    size_t np = 0;
    int rc = 0;
    cd_hdr_node *cand = NULL; /* best new header by work */
    const cd_hdr_node *last = NULL;

    if (!res)
        res = &dummy;
    memset(res, 0, sizeof(*res));
    if (t->flags & CD_HDRTREE_RDONLY)
        return CD_HDRTREE_ERDONLY;
    if (n > CD_HDRTREE_MAX_BATCH) {
        res->bad_index = CD_HDRTREE_MAX_BATCH;
        return CD_HDRTREE_ETOOMANY;
    }

    /* 1. validate in memory, linking each header to the tree or the batch */
    for (size_t i = 0; i < n; i++) {
        const uint8_t *raw = hdrs + i * stride;
        uint8_t hash[32];
        cd_sha256d(hash, raw, 80);
        cd_hdr_node *known = cd_hdrtree_tab_find(t, hash);
        if (known) {
            if (known->status & CD_HDR_INVALID) {
                rc = CD_HDRTREE_EINVALID;
                res->bad_index = i;
                goto refuse;
            }
            res->n_known++;
            last = known;
            continue;
        }
        cd_hdr_node *prev = cd_hdrtree_tab_find(t, raw + 4);
        if (!prev) {
            rc = CD_HDRTREE_EUNCONNECTED;
            res->bad_index = i;
            goto refuse;
        }
        btc_u256 bw, w;
        if ((rc = check_header(t, raw, hash, prev, &bw)) != 0) {
            res->bad_index = i;
            goto refuse;
        }
        cd_hdr_node *nd = cd_hdrtree_node_alloc(t);
        memcpy(nd->hash, hash, 32);
        memcpy(nd->raw, raw, 80);
        nd->height = prev->height + 1;
        nd->status = CD_HDR_VALID_HEADER;
        nd->prev = prev;
        nd->seq = t->next_seq + np;
        cd_hdrtree_set_skip(t, nd);
        btc_u256_from_be(&w, prev->work);
        btc_u256_add(&w, &w, &bw);
        btc_u256_to_be(nd->work, &w);
        cd_hdrtree_tab_insert(t, nd);
        pending_push(t, np++, nd);
        if (memcmp(nd->work, (cand ? cand : t->tip)->work, 32) > 0)
            cand = nd;
        last = nd;
    }
    res->last = last;
    if (np == 0)
        return 0;

    /* 2. the new best chain, if any: fork point and the two branches */
    cd_hdr_node *fork = NULL;
    size_t n_leave = 0, n_join = 0;
    if (cand) {
        cd_hdr_node *a = t->tip, *b = cand;
        while (b->height > a->height)
            b = b->prev;
        while (a->height > b->height)
            a = a->prev;
        while (a != b) {
            a = a->prev;
            b = b->prev;
        }
        fork = a;
        n_leave = (size_t)(t->tip->height - fork->height);
        n_join = (size_t)(cand->height - fork->height);
    }

    /* 3. persist: one write txn for the whole message */
    MDB_txn *txn;
    int mrc = mdb_txn_begin(t->env, NULL, 0, &txn);
    if (mrc) {
        cd_hdrtree_lmdb_fail(t, "mdb_txn_begin", mrc);
        rc = CD_HDRTREE_ESTORE;
        goto refuse;
    }
    for (size_t i = 0; i < np && !mrc; i++)
        mrc = cd_hdrtree_put_node(t, txn, t->pending[i], 1);
    int idx_due = t->n_unidx + np >= IDX_BATCH;
    if (idx_due && !mrc)
        mrc = cd_hdrtree_idx_write(t, txn, t->pending, np, t->next_seq + np);
    if (cand && !mrc) {
        for (cd_hdr_node *b = cand; b != fork && !mrc; b = b->prev) {
            uint8_t hk[4];
            cd_put_be32(hk, (uint32_t)b->height);
            mrc = mdb_put(txn, t->dbi_best, &(MDB_val){4, hk}, &(MDB_val){32, b->hash}, 0);
        }
        for (int32_t h = cand->height + 1; h <= t->tip->height && !mrc; h++) {
            uint8_t hk[4];
            cd_put_be32(hk, (uint32_t)h);
            mrc = mdb_del(txn, t->dbi_best, &(MDB_val){4, hk}, NULL);
        }
        if (!mrc)
            mrc = mdb_put(txn, t->dbi_meta, &(MDB_val){3, "tip"}, &(MDB_val){32, cand->hash}, 0);
    }
    if (mrc) {
        mdb_txn_abort(txn);
        cd_hdrtree_lmdb_fail(t, "mdb_put", mrc);
        rc = CD_HDRTREE_ESTORE;
        goto refuse;
    }
    if ((mrc = mdb_txn_commit(txn)) != 0) {
        cd_hdrtree_lmdb_fail(t, "mdb_txn_commit", mrc);
        rc = CD_HDRTREE_ESTORE;
        goto refuse;
    }
    t->next_seq += np;
    res->n_new = np;
    if (idx_due) {
        t->n_unidx = 0;
        t->idx_seq = t->next_seq;
    } else {
        for (size_t i = 0; i < np; i++)
            cd_hdrtree_unidx_push(t, t->pending[i]);
    }

    /* 4. apply the best-chain change in memory and report it */
    if (cand) {
        cd_hdrtree_tip_event ev;
        ev_reserve(&t->ev_leaving, &t->ev_cap_l, n_leave + 1);
        ev_reserve(&t->ev_joining, &t->ev_cap_j, n_join + 1);
        size_t k = 0;
        for (cd_hdr_node *a = t->tip; a != fork; a = a->prev)
            t->ev_leaving[k++] = a;
        k = n_join;
        cd_hdrtree_best_reserve(t, (size_t)cand->height + 1);
        for (cd_hdr_node *b = cand; b != fork; b = b->prev) {
            t->ev_joining[--k] = b;
            t->best[b->height] = b;
        }
        ev.old_tip = t->tip;
        ev.new_tip = cand;
        ev.fork = fork;
        ev.leaving = t->ev_leaving;
        ev.n_leaving = n_leave;
        ev.joining = t->ev_joining;
        ev.n_joining = n_join;
        t->tip = cand;
        res->tip_changed = 1;
        if (t->tip_cb)
            t->tip_cb(&ev, t->tip_arg);
    }
    return 0;

refuse:
    rollback_pending(t, np);
    res->last = NULL;
    return rc;
}

int cd_hdrtree_set_status(cd_hdrtree *t, const uint8_t hash[32], uint32_t set, uint32_t clear)
{
    if (t->flags & CD_HDRTREE_RDONLY)
        return CD_HDRTREE_ERDONLY;
    cd_hdr_node *n = cd_hdrtree_tab_find(t, hash);
    if (!n)
        return CD_HDRTREE_ENOTFOUND;
    uint32_t st = (n->status | set) & ~clear;
    if (st == n->status)
        return 0;
    uint32_t old = n->status;
    n->status = st;
    MDB_txn *txn;
    int rc = mdb_txn_begin(t->env, NULL, 0, &txn);
    if (!rc) {
        rc = cd_hdrtree_put_node(t, txn, n, 0);
        if (rc)
            mdb_txn_abort(txn);
        else
            rc = mdb_txn_commit(txn);
    }
    if (rc) {
        n->status = old;
        return cd_hdrtree_lmdb_fail(t, "set status", rc);
    }
    return 0;
}
