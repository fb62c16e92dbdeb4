/*
 * cd_hdrtree.c - the header tree: validation of incoming headers, the
 * in-memory index (hash -> node, height -> best-chain node), persistence in
 * the controller's own LMDB environment and best-chain / reorg tracking.
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
 */
#include "cd_hdrtree.h"

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

#define HDR_REC_LEN  152
#define NODE_SLAB    4096
#define MAX_FUTURE_S 7200
/* "idx" (hash -> seq) is written in bulk, sorted, once this many headers
 * are not yet in it (random B-tree inserts per message would dominate the
 * cost of a sync); lookups by hash scan the short unindexed tail. */
#define IDX_BATCH    65536

/* ---- 256-bit unsigned arithmetic (4 little-endian 64-bit limbs) ---- */

__extension__ typedef unsigned __int128 u128;

typedef struct u256 {
    uint64_t w[4];
} u256;

static void u256_from_be(u256 *a, const uint8_t be[32])
{
    for (int i = 0; i < 4; i++) {
        uint64_t v = 0;
        for (int j = 0; j < 8; j++)
            v = (v << 8) | be[(3 - i) * 8 + j];
        a->w[i] = v;
    }
}

static void u256_to_be(uint8_t be[32], const u256 *a)
{
    for (int i = 0; i < 4; i++) {
        uint64_t v = a->w[i];
        for (int j = 7; j >= 0; j--) {
            be[(3 - i) * 8 + j] = (uint8_t)v;
            v >>= 8;
        }
    }
}

static int u256_cmp(const u256 *a, const u256 *b)
{
    for (int i = 3; i >= 0; i--) {
        if (a->w[i] != b->w[i])
            return a->w[i] < b->w[i] ? -1 : 1;
    }
    return 0;
}

static int u256_is_zero(const u256 *a)
{
    return (a->w[0] | a->w[1] | a->w[2] | a->w[3]) == 0;
}

static void u256_add(u256 *r, const u256 *a, const u256 *b)
{
    u128 c = 0;
    for (int i = 0; i < 4; i++) {
        c += (u128)a->w[i] + b->w[i];
        r->w[i] = (uint64_t)c;
        c >>= 64;
    }
}

static void u256_sub(u256 *r, const u256 *a, const u256 *b)
{
    uint64_t borrow = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t x = a->w[i], y = b->w[i];
        uint64_t d = x - y - borrow;
        borrow = (x < y) || (x - y < borrow);
        r->w[i] = d;
    }
}

static int u256_bits(const u256 *a)
{
    for (int i = 3; i >= 0; i--) {
        if (a->w[i])
            return i * 64 + 64 - __builtin_clzll(a->w[i]);
    }
    return 0;
}

static void u256_shl1(u256 *a)
{
    for (int i = 3; i > 0; i--)
        a->w[i] = (a->w[i] << 1) | (a->w[i - 1] >> 63);
    a->w[0] <<= 1;
}

/* r = a / b (b != 0), restoring long division. */
static void u256_div(u256 *r, const u256 *a, const u256 *b)
{
    u256 q = {{0, 0, 0, 0}}, rem = {{0, 0, 0, 0}};
    for (int bit = u256_bits(a) - 1; bit >= 0; bit--) {
        u256_shl1(&rem);
        rem.w[0] |= (a->w[bit / 64] >> (bit % 64)) & 1;
        if (u256_cmp(&rem, b) >= 0) {
            u256_sub(&rem, &rem, b);
            q.w[bit / 64] |= (uint64_t)1 << (bit % 64);
        }
    }
    *r = q;
}

/* Compact -> target; returns -1 for negative / zero / overflow. */
static int bits_to_u256(uint32_t bits, u256 *t)
{
    int size = (int)(bits >> 24);
    uint32_t mant = bits & 0x007fffff;
    memset(t, 0, sizeof(*t));
    if (mant != 0 && (bits & 0x00800000))
        return -1;
    if (mant != 0 && (size > 34 || (mant > 0xff && size > 33) || (mant > 0xffff && size > 32)))
        return -1;
    if (size <= 3) {
        mant >>= 8 * (3 - size);
        t->w[0] = mant;
    } else {
        int shift = 8 * (size - 3);
        t->w[0] = mant;
        /* shift left by `shift` bits */
        while (shift >= 64) {
            t->w[3] = t->w[2];
            t->w[2] = t->w[1];
            t->w[1] = t->w[0];
            t->w[0] = 0;
            shift -= 64;
        }
        if (shift) {
            for (int i = 3; i > 0; i--)
                t->w[i] = (t->w[i] << shift) | (t->w[i - 1] >> (64 - shift));
            t->w[0] <<= shift;
        }
    }
    return u256_is_zero(t) ? -1 : 0;
}

int cd_hdrtree_bits_to_target(uint32_t bits, uint8_t target_be[32])
{
    u256 t;
    if (bits_to_u256(bits, &t) != 0)
        return -1;
    u256_to_be(target_be, &t);
    return 0;
}

static int bits_to_work_u256(uint32_t bits, u256 *work)
{
    u256 t, nt, one = {{1, 0, 0, 0}}, t1;
    if (bits_to_u256(bits, &t) != 0)
        return -1;
    /* 2^256 / (t + 1) == ~t / (t + 1) + 1 */
    for (int i = 0; i < 4; i++)
        nt.w[i] = ~t.w[i];
    u256_add(&t1, &t, &one);
    if (u256_is_zero(&t1)) { /* t == 2^256 - 1 */
        *work = one;
        return 0;
    }
    u256_div(work, &nt, &t1);
    u256_add(work, work, &one);
    return 0;
}

int cd_hdrtree_bits_to_work(uint32_t bits, uint8_t work_be[32])
{
    u256 w;
    if (bits_to_work_u256(bits, &w) != 0)
        return -1;
    u256_to_be(work_be, &w);
    return 0;
}

/* ---- the tree ---- */

typedef struct node_slab {
    struct node_slab *next;
    size_t used;
    cd_hdr_node nodes[NODE_SLAB];
} node_slab;

struct cd_hdrtree {
    const btc_net *net;
    char *path;
    unsigned flags;
    MDB_env *env;
    MDB_dbi dbi_hdr, dbi_idx, dbi_best, dbi_meta;

    /* hash table: open addressing, linear probing, power-of-two size */
    cd_hdr_node **tab;
    size_t tab_mask;
    size_t count;

    node_slab *slabs;
    cd_hdr_node *free_list; /* nodes given back by a refused batch (via prev) */

    cd_hdr_node **best; /* best[h] = node at height h */
    size_t best_cap;
    cd_hdr_node *tip;

    uint64_t next_seq;
    uint64_t idx_seq;    /* headers with seq < idx_seq are in "idx" */
    cd_hdr_node **unidx; /* stored headers not yet in "idx" */
    size_t n_unidx, cap_unidx;
    int64_t now_override;

    cd_hdrtree_tip_cb tip_cb;
    void *tip_arg;
    cd_hdrtree_bits_fn bits_fn;
    void *bits_arg;

    /* scratch for a batch and for reorg events */
    cd_hdr_node **pending;
    size_t pending_cap;
    const cd_hdr_node **ev_leaving, **ev_joining;
    size_t ev_cap_l, ev_cap_j;

    /* cache of the last bits -> work computation */
    uint32_t work_bits;
    u256 work_val;
    u256 pow_limit;
};

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

static void tab_grow(cd_hdrtree *t)
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

static void tab_insert(cd_hdrtree *t, cd_hdr_node *n)
{
    if ((t->count + 1) * 2 > t->tab_mask + 1)
        tab_grow(t);
    tab_insert_raw(t, n);
    t->count++;
}

static cd_hdr_node *tab_find(const cd_hdrtree *t, const uint8_t h[32])
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

static cd_hdr_node *node_alloc(cd_hdrtree *t)
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

static void best_reserve(cd_hdrtree *t, size_t n)
{
    if (n <= t->best_cap)
        return;
    size_t cap = t->best_cap ? t->best_cap : 1024;
    while (cap < n)
        cap *= 2;
    t->best = cd_xrealloc(t->best, cap * sizeof(*t->best));
    t->best_cap = cap;
}

static void rec_encode(uint8_t rec[HDR_REC_LEN], const cd_hdr_node *n)
{
    memcpy(rec, n->hash, 32);
    memcpy(rec + 32, n->raw, 80);
    cd_put_le32(rec + 112, (uint32_t)n->height);
    cd_put_le32(rec + 116, n->status);
    memcpy(rec + 120, n->work, 32);
}

static void seq_key(uint8_t k[8], uint64_t seq)
{
    for (int i = 7; i >= 0; i--) {
        k[i] = (uint8_t)seq;
        seq >>= 8;
    }
}

static int rec_decode(cd_hdr_node *n, const MDB_val *k, const MDB_val *v)
{
    if (v->mv_size != HDR_REC_LEN || k->mv_size != 8)
        return -1;
    const uint8_t *rec = v->mv_data, *kp = k->mv_data;
    memcpy(n->hash, rec, 32);
    memcpy(n->raw, rec + 32, 80);
    n->height = (int32_t)cd_le32(rec + 112);
    n->status = cd_le32(rec + 116);
    memcpy(n->work, rec + 120, 32);
    n->seq = 0;
    for (int i = 0; i < 8; i++)
        n->seq = (n->seq << 8) | kp[i];
    n->prev = NULL;
    n->skip = NULL;
    return 0;
}

/* Stores a header record: "hdr" seq -> record (appended for new headers). */
static int put_node(cd_hdrtree *t, MDB_txn *txn, const cd_hdr_node *n, int is_new)
{
    uint8_t rec[HDR_REC_LEN], k[8];
    rec_encode(rec, n);
    seq_key(k, n->seq);
    return mdb_put(txn, t->dbi_hdr, &(MDB_val){8, k}, &(MDB_val){sizeof(rec), rec},
                   is_new ? MDB_APPEND : 0);
}

static int lmdb_fail(const cd_hdrtree *t, const char *what, int rc);

static int cmp_hash(const void *a, const void *b)
{
    const cd_hdr_node *x = *(cd_hdr_node *const *)a, *y = *(cd_hdr_node *const *)b;
    return memcmp(x->hash, y->hash, 32);
}

static void unidx_push(cd_hdrtree *t, cd_hdr_node *n)
{
    if (t->n_unidx == t->cap_unidx) {
        t->cap_unidx = t->cap_unidx ? t->cap_unidx * 2 : 1024;
        t->unidx = cd_xrealloc(t->unidx, t->cap_unidx * sizeof(*t->unidx));
    }
    t->unidx[t->n_unidx++] = n;
}

/* Writes "idx" entries for the unindexed headers plus extra[0..n_extra)
 * (sorted by hash, so the inserts walk the B-tree in order) and moves the
 * idx_seq mark to new_idx_seq, inside txn. */
static int idx_write(cd_hdrtree *t, MDB_txn *txn, cd_hdr_node *const *extra, size_t n_extra,
                     uint64_t new_idx_seq)
{
    size_t n = t->n_unidx + n_extra;
    cd_hdr_node **v = cd_xmalloc((n ? n : 1) * sizeof(*v));
    if (t->n_unidx)
        memcpy(v, t->unidx, t->n_unidx * sizeof(*v));
    if (n_extra)
        memcpy(v + t->n_unidx, extra, n_extra * sizeof(*v));
    qsort(v, n, sizeof(*v), cmp_hash);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        uint8_t k[8];
        seq_key(k, v[i]->seq);
        rc = mdb_put(txn, t->dbi_idx, &(MDB_val){32, v[i]->hash}, &(MDB_val){8, k}, 0);
    }
    free(v);
    if (!rc) {
        uint8_t k[8];
        seq_key(k, new_idx_seq);
        rc = mdb_put(txn, t->dbi_meta, &(MDB_val){7, "idx_seq"}, &(MDB_val){8, k}, 0);
    }
    return rc;
}

int cd_hdrtree_flush_index(cd_hdrtree *t)
{
    if (t->flags & CD_HDRTREE_RDONLY)
        return CD_HDRTREE_ERDONLY;
    if (t->n_unidx == 0)
        return 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(t->env, NULL, 0, &txn);
    if (rc)
        return lmdb_fail(t, "mdb_txn_begin", rc);
    rc = idx_write(t, txn, NULL, 0, t->next_seq);
    if (rc) {
        mdb_txn_abort(txn);
        return lmdb_fail(t, "index write", rc);
    }
    if ((rc = mdb_txn_commit(txn)) != 0)
        return lmdb_fail(t, "mdb_txn_commit", rc);
    t->idx_seq = t->next_seq;
    t->n_unidx = 0;
    return 0;
}

static uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t hdr_time(const cd_hdr_node *n)
{
    return cd_le32(n->raw + 68);
}

static uint32_t hdr_bits(const cd_hdr_node *n)
{
    return cd_le32(n->raw + 72);
}

const char *cd_hdrtree_strerror(int rc)
{
    switch (rc) {
    case CD_HDRTREE_OK:
        return "ok";
    case CD_HDRTREE_EUNCONNECTED:
        return "header does not connect to a known header";
    case CD_HDRTREE_EBADPOW:
        return "proof of work does not meet nBits (high-hash)";
    case CD_HDRTREE_EBADBITS:
        return "bad nBits (invalid, above the network limit or against difficulty rules)";
    case CD_HDRTREE_EBADTIME:
        return "bad timestamp (not above median time past, or too far in the future)";
    case CD_HDRTREE_EINVALID:
        return "header descends from an invalid block";
    case CD_HDRTREE_ETOOMANY:
        return "more than 2000 headers in one message";
    case CD_HDRTREE_ESTORE:
        return "header store (LMDB) error";
    case CD_HDRTREE_ENOTFOUND:
        return "not found";
    case CD_HDRTREE_ERDONLY:
        return "header tree opened read-only";
    case CD_HDRTREE_EGENESIS:
        return "stored genesis does not match the network";
    default:
        return "unknown error";
    }
}

static int lmdb_fail(const cd_hdrtree *t, const char *what, int rc)
{
    cd_log_error("header tree %s: %s: %s", t->path, what, mdb_strerror(rc));
    return CD_HDRTREE_ESTORE;
}

/* ---- difficulty rules ---- */

uint32_t cd_hdrtree_mtp(const cd_hdr_node *n)
{
    uint32_t v[11];
    int k = 0;
    for (; n && k < 11; n = n->prev)
        v[k++] = hdr_time(n);
    /* insertion sort; k <= 11 */
    for (int i = 1; i < k; i++) {
        uint32_t x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
    return k ? v[k / 2] : 0;
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
    uint8_t le[32];
    for (int i = 0; i < 32; i++)
        le[i] = a->work[31 - i];
    btc_u256_from_le(&out->chain_work, le);
    return 0;
}

static uint32_t default_bits_fn(const cd_hdrtree *t, const cd_hdr_node *prev, uint32_t time,
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

/* ---- open / close ---- */

static int mkdir_p(const char *dir)
{
    char buf[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return -1;
            buf[i] = c;
        }
    }
    return 0;
}

static void make_genesis(const cd_hdrtree *t, cd_hdr_node *g)
{
    memset(g, 0, sizeof(*g));
    memcpy(g->raw, t->net->genesis_header, 80);
    cd_sha256d(g->hash, g->raw, 80);
    g->height = 0;
    g->status = CD_HDR_VALID_HEADER;
    u256 w;
    bits_to_work_u256(hdr_bits(g), &w);
    u256_to_be(g->work, &w);
    g->seq = 0;
}

static void set_skip(const cd_hdrtree *t, cd_hdr_node *n);

static int cmp_height(const void *a, const void *b)
{
    const cd_hdr_node *x = *(cd_hdr_node *const *)a, *y = *(cd_hdr_node *const *)b;
    return (x->height > y->height) - (x->height < y->height);
}

static int load_all(cd_hdrtree *t, MDB_txn *txn)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, t->dbi_hdr, &cur);
    if (rc)
        return lmdb_fail(t, "mdb_cursor_open(hdr)", rc);
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        cd_hdr_node *n = node_alloc(t);
        if (rec_decode(n, &k, &v) != 0) {
            mdb_cursor_close(cur);
            cd_log_error("header tree %s: corrupt record (key %zu bytes, value %zu bytes)", t->path,
                         k.mv_size, v.mv_size);
            return CD_HDRTREE_ESTORE;
        }
        tab_insert(t, n);
        if (n->seq >= t->next_seq)
            t->next_seq = n->seq + 1;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return lmdb_fail(t, "mdb_cursor_get(hdr)", rc);
    /* link parents */
    for (size_t i = 0; i <= t->tab_mask; i++) {
        cd_hdr_node *n = t->tab[i];
        if (!n || n->height == 0)
            continue;
        n->prev = tab_find(t, n->raw + 4);
        if (!n->prev || n->prev->height != n->height - 1) {
            cd_log_error("header tree %s: header at height %d has no stored parent", t->path,
                         (int)n->height);
            return CD_HDRTREE_ESTORE;
        }
    }
    /* skip pointers, parents before children: sort nodes by height */
    {
        cd_hdr_node **all = cd_xmalloc(t->count * sizeof(*all));
        size_t na = 0;
        for (size_t i = 0; i <= t->tab_mask; i++) {
            if (t->tab[i])
                all[na++] = t->tab[i];
        }
        qsort(all, na, sizeof(*all), cmp_height);
        for (size_t i = 0; i < na; i++)
            set_skip(t, all[i]);
        free(all);
    }
    /* headers not yet in "idx" */
    rc = mdb_get(txn, t->dbi_meta, &(MDB_val){7, "idx_seq"}, &v);
    if (rc && rc != MDB_NOTFOUND)
        return lmdb_fail(t, "mdb_get(meta idx_seq)", rc);
    t->idx_seq = (!rc && v.mv_size == 8) ? be64_get(v.mv_data) : 0;
    for (size_t i = 0; i <= t->tab_mask; i++) {
        if (t->tab[i] && t->tab[i]->seq >= t->idx_seq)
            unidx_push(t, t->tab[i]);
    }
    /* the tip and the best array */
    rc = mdb_get(txn, t->dbi_meta, &(MDB_val){3, "tip"}, &v);
    if (rc)
        return lmdb_fail(t, "mdb_get(meta tip)", rc);
    if (v.mv_size != 32 || !(t->tip = tab_find(t, v.mv_data))) {
        cd_log_error("header tree %s: stored tip is not a stored header", t->path);
        return CD_HDRTREE_ESTORE;
    }
    best_reserve(t, (size_t)t->tip->height + 1);
    for (cd_hdr_node *n = t->tip; n; n = n->prev)
        t->best[n->height] = n;
    return 0;
}

int cd_hdrtree_open(cd_hdrtree **out, const char *dir, const btc_net *net, unsigned flags)
{
    cd_hdrtree *t = cd_xcalloc(1, sizeof(*t));
    int rc, ret = CD_HDRTREE_ESTORE;
    MDB_txn *txn = NULL;
    int rdonly = (flags & CD_HDRTREE_RDONLY) != 0;

    *out = NULL;
    t->net = net;
    t->flags = flags;
    t->path = cd_xstrdup(dir);
    t->bits_fn = default_bits_fn;
    {
        /* pow_limit in btc_net is a little-endian number */
        uint8_t be[32];
        for (int i = 0; i < 32; i++)
            be[i] = net->pow_limit[31 - i];
        u256_from_be(&t->pow_limit, be);
    }
    t->work_bits = 0xffffffffu;

    if (!rdonly && mkdir_p(dir) != 0) {
        cd_log_error("header tree %s: mkdir: %s", dir, strerror(errno));
        goto fail;
    }
    if ((rc = mdb_env_create(&t->env)) != 0) {
        lmdb_fail(t, "mdb_env_create", rc);
        goto fail;
    }
    mdb_env_set_maxdbs(t->env, 4);
    mdb_env_set_mapsize(t->env, sizeof(size_t) >= 8 ? (size_t)4 << 30 : (size_t)512 << 20);
    /* MDB_NOMETASYNC: one fsync per commit instead of two; a system crash
     * may lose the last headers message (fetched again), never integrity */
    rc = mdb_env_open(t->env, dir, rdonly ? MDB_RDONLY | MDB_NOTLS : MDB_NOTLS | MDB_NOMETASYNC,
                      0600);
    if (rc) {
        lmdb_fail(t, "mdb_env_open", rc);
        goto fail;
    }
    if ((rc = mdb_txn_begin(t->env, NULL, rdonly ? MDB_RDONLY : 0, &txn)) != 0) {
        lmdb_fail(t, "mdb_txn_begin", rc);
        goto fail;
    }
    unsigned cf = rdonly ? 0 : MDB_CREATE;
    if ((rc = mdb_dbi_open(txn, "hdr", cf, &t->dbi_hdr)) != 0 ||
        (rc = mdb_dbi_open(txn, "idx", cf, &t->dbi_idx)) != 0 ||
        (rc = mdb_dbi_open(txn, "best", cf, &t->dbi_best)) != 0 ||
        (rc = mdb_dbi_open(txn, "meta", cf, &t->dbi_meta)) != 0) {
        lmdb_fail(t, "mdb_dbi_open", rc);
        goto fail;
    }

    MDB_val gv;
    uint8_t ghash[32];
    cd_sha256d(ghash, net->genesis_header, 80);
    rc = mdb_get(txn, t->dbi_meta, &(MDB_val){7, "genesis"}, &gv);
    if (rc == MDB_NOTFOUND && !rdonly) {
        /* fresh tree: store genesis */
        cd_hdr_node gn, *g = &gn;
        make_genesis(t, g);
        uint8_t hk[4] = {0, 0, 0, 0}, ver[4];
        cd_put_le32(ver, 2);
        uint8_t gk[8];
        seq_key(gk, 0);
        if ((rc = put_node(t, txn, g, 1)) != 0 ||
            (rc = mdb_put(txn, t->dbi_idx, &(MDB_val){32, g->hash}, &(MDB_val){8, gk}, 0)) != 0 ||
            (rc = idx_write(t, txn, NULL, 0, 1)) != 0 ||
            (rc = mdb_put(txn, t->dbi_best, &(MDB_val){4, hk}, &(MDB_val){32, g->hash}, 0)) != 0 ||
            (rc = mdb_put(txn, t->dbi_meta, &(MDB_val){3, "tip"}, &(MDB_val){32, g->hash}, 0)) !=
                0 ||
            (rc = mdb_put(txn, t->dbi_meta, &(MDB_val){7, "genesis"}, &(MDB_val){32, g->hash},
                          0)) != 0 ||
            (rc = mdb_put(txn, t->dbi_meta, &(MDB_val){7, "version"}, &(MDB_val){4, ver}, 0)) !=
                0) {
            lmdb_fail(t, "mdb_put(genesis)", rc);
            goto fail;
        }
    } else if (rc) {
        lmdb_fail(t, "mdb_get(meta genesis)", rc);
        goto fail;
    } else if (gv.mv_size != 32 || memcmp(gv.mv_data, ghash, 32) != 0) {
        cd_log_error("header tree %s: stored genesis is not the %s genesis (wrong --datadir or "
                     "network?)",
                     dir, net->name);
        ret = CD_HDRTREE_EGENESIS;
        goto fail;
    }

    if (!rdonly) {
        tab_grow(t);
        if ((ret = load_all(t, txn)) != 0)
            goto fail;
        ret = CD_HDRTREE_ESTORE;
        if ((rc = mdb_txn_commit(txn)) != 0) {
            txn = NULL;
            lmdb_fail(t, "mdb_txn_commit", rc);
            goto fail;
        }
    } else {
        /* commit (not abort) so that the dbi handles stay open */
        if ((rc = mdb_txn_commit(txn)) != 0) {
            txn = NULL;
            lmdb_fail(t, "mdb_txn_commit", rc);
            goto fail;
        }
    }
    txn = NULL;
    *out = t;
    return 0;

fail:
    if (txn)
        mdb_txn_abort(txn);
    cd_hdrtree_close(t);
    return ret;
}

void cd_hdrtree_close(cd_hdrtree *t)
{
    if (!t)
        return;
    if (t->env && !(t->flags & CD_HDRTREE_RDONLY) && t->tab)
        (void)cd_hdrtree_flush_index(t);
    if (t->env)
        mdb_env_close(t->env);
    free(t->unidx);
    node_slab *s = t->slabs;
    while (s) {
        node_slab *nx = s->next;
        free(s);
        s = nx;
    }
    free(t->tab);
    free(t->best);
    free(t->pending);
    free(t->ev_leaving);
    free(t->ev_joining);
    free(t->path);
    free(t);
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
    return t->tab ? tab_find(t, hash) : NULL;
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

static void set_skip(const cd_hdrtree *t, cd_hdr_node *n)
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
                        const cd_hdr_node *prev, u256 *blockwork)
{
    uint32_t bits = cd_le32(raw + 72), tm = cd_le32(raw + 68);
    u256 target, h;
    if (prev->status & CD_HDR_INVALID)
        return CD_HDRTREE_EINVALID;
    if (bits_to_u256(bits, &target) != 0 || u256_cmp(&target, &t->pow_limit) > 0)
        return CD_HDRTREE_EBADBITS;
    uint8_t hbe[32];
    for (int i = 0; i < 32; i++)
        hbe[i] = hash[31 - i];
    u256_from_be(&h, hbe);
    if (u256_cmp(&h, &target) > 0)
        return CD_HDRTREE_EBADPOW;
    if (t->bits_fn) {
        uint32_t want = t->bits_fn(t, prev, tm, t->bits_arg);
        if (want != 0 && want != bits)
            return CD_HDRTREE_EBADBITS;
    }
    if (tm <= cd_hdrtree_mtp(prev) || (int64_t)tm > now_s(t) + MAX_FUTURE_S)
        return CD_HDRTREE_EBADTIME;
    if (bits != t->work_bits) {
        bits_to_work_u256(bits, &t->work_val);
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
        cd_hdr_node *known = tab_find(t, hash);
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
        cd_hdr_node *prev = tab_find(t, raw + 4);
        if (!prev) {
            rc = CD_HDRTREE_EUNCONNECTED;
            res->bad_index = i;
            goto refuse;
        }
        u256 bw, pw, w;
        if ((rc = check_header(t, raw, hash, prev, &bw)) != 0) {
            res->bad_index = i;
            goto refuse;
        }
        cd_hdr_node *nd = node_alloc(t);
        memcpy(nd->hash, hash, 32);
        memcpy(nd->raw, raw, 80);
        nd->height = prev->height + 1;
        nd->status = CD_HDR_VALID_HEADER;
        nd->prev = prev;
        nd->seq = t->next_seq + np;
        set_skip(t, nd);
        u256_from_be(&pw, prev->work);
        u256_add(&w, &pw, &bw);
        u256_to_be(nd->work, &w);
        tab_insert(t, nd);
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
        lmdb_fail(t, "mdb_txn_begin", mrc);
        rc = CD_HDRTREE_ESTORE;
        goto refuse;
    }
    for (size_t i = 0; i < np && !mrc; i++)
        mrc = put_node(t, txn, t->pending[i], 1);
    int idx_due = t->n_unidx + np >= IDX_BATCH;
    if (idx_due && !mrc)
        mrc = idx_write(t, txn, t->pending, np, t->next_seq + np);
    if (cand && !mrc) {
        for (cd_hdr_node *b = cand; b != fork && !mrc; b = b->prev) {
            uint8_t hk[4];
            hk[0] = (uint8_t)(b->height >> 24);
            hk[1] = (uint8_t)(b->height >> 16);
            hk[2] = (uint8_t)(b->height >> 8);
            hk[3] = (uint8_t)b->height;
            mrc = mdb_put(txn, t->dbi_best, &(MDB_val){4, hk}, &(MDB_val){32, b->hash}, 0);
        }
        for (int32_t h = cand->height + 1; h <= t->tip->height && !mrc; h++) {
            uint8_t hk[4] = {(uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h};
            mrc = mdb_del(txn, t->dbi_best, &(MDB_val){4, hk}, NULL);
        }
        if (!mrc)
            mrc = mdb_put(txn, t->dbi_meta, &(MDB_val){3, "tip"}, &(MDB_val){32, cand->hash}, 0);
    }
    if (mrc) {
        mdb_txn_abort(txn);
        lmdb_fail(t, "mdb_put", mrc);
        rc = CD_HDRTREE_ESTORE;
        goto refuse;
    }
    if ((mrc = mdb_txn_commit(txn)) != 0) {
        lmdb_fail(t, "mdb_txn_commit", mrc);
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
            unidx_push(t, t->pending[i]);
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
        best_reserve(t, (size_t)cand->height + 1);
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
    cd_hdr_node *n = tab_find(t, hash);
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
        rc = put_node(t, txn, n, 0);
        if (rc)
            mdb_txn_abort(txn);
        else
            rc = mdb_txn_commit(txn);
    }
    if (rc) {
        n->status = old;
        return lmdb_fail(t, "set status", rc);
    }
    return 0;
}

/* ---- lookups in both modes ---- */

static int ro_get_hash(cd_hdrtree *t, MDB_txn *txn, const uint8_t hash[32], cd_hdr_node *out)
{
    MDB_val k, v;
    int rc = mdb_get(txn, t->dbi_idx, &(MDB_val){32, (void *)hash}, &k);
    if (rc == MDB_NOTFOUND) {
        /* not indexed yet? scan the records from the idx_seq mark on */
        uint8_t sk[8] = {0};
        MDB_val mv;
        rc = mdb_get(txn, t->dbi_meta, &(MDB_val){7, "idx_seq"}, &mv);
        if (rc == 0 && mv.mv_size == 8)
            memcpy(sk, mv.mv_data, 8);
        else if (rc && rc != MDB_NOTFOUND)
            return lmdb_fail(t, "mdb_get(meta idx_seq)", rc);
        MDB_cursor *cur;
        if ((rc = mdb_cursor_open(txn, t->dbi_hdr, &cur)) != 0)
            return lmdb_fail(t, "mdb_cursor_open(hdr)", rc);
        k.mv_size = 8;
        k.mv_data = sk;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (v.mv_size == HDR_REC_LEN && memcmp(v.mv_data, hash, 32) == 0)
                break;
        }
        mdb_cursor_close(cur);
        if (rc == MDB_NOTFOUND)
            return CD_HDRTREE_ENOTFOUND;
        if (rc)
            return lmdb_fail(t, "mdb_cursor_get(hdr)", rc);
        if (rec_decode(out, &k, &v) != 0)
            return lmdb_fail(t, "corrupt header record", MDB_CORRUPTED);
        return 0;
    }
    if (rc)
        return lmdb_fail(t, "mdb_get(idx)", rc);
    rc = mdb_get(txn, t->dbi_hdr, &k, &v);
    if (rc)
        return lmdb_fail(t, "mdb_get(hdr)", rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc);
    if (rec_decode(out, &k, &v) != 0 || memcmp(out->hash, hash, 32) != 0)
        return lmdb_fail(t, "corrupt header record", MDB_CORRUPTED);
    return 0;
}

int cd_hdrtree_get(cd_hdrtree *t, const uint8_t hash[32], cd_hdr_node *out)
{
    if (!(t->flags & CD_HDRTREE_RDONLY)) {
        const cd_hdr_node *n = tab_find(t, hash);
        if (!n)
            return CD_HDRTREE_ENOTFOUND;
        *out = *n;
        return 0;
    }
    MDB_txn *txn;
    int rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return lmdb_fail(t, "mdb_txn_begin", rc);
    rc = ro_get_hash(t, txn, hash, out);
    mdb_txn_abort(txn);
    return rc;
}

int cd_hdrtree_get_at(cd_hdrtree *t, int32_t height, cd_hdr_node *out)
{
    if (!(t->flags & CD_HDRTREE_RDONLY)) {
        const cd_hdr_node *n = cd_hdrtree_at(t, height);
        if (!n)
            return CD_HDRTREE_ENOTFOUND;
        *out = *n;
        return 0;
    }
    if (height < 0)
        return CD_HDRTREE_ENOTFOUND;
    MDB_txn *txn;
    MDB_val v;
    uint8_t hk[4] = {(uint8_t)(height >> 24), (uint8_t)(height >> 16), (uint8_t)(height >> 8),
                     (uint8_t)height};
    int rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return lmdb_fail(t, "mdb_txn_begin", rc);
    rc = mdb_get(txn, t->dbi_best, &(MDB_val){4, hk}, &v);
    if (rc == MDB_NOTFOUND)
        rc = CD_HDRTREE_ENOTFOUND;
    else if (rc)
        rc = lmdb_fail(t, "mdb_get(best)", rc);
    else if (v.mv_size != 32)
        rc = lmdb_fail(t, "corrupt best-chain record", MDB_CORRUPTED);
    else
        rc = ro_get_hash(t, txn, v.mv_data, out);
    mdb_txn_abort(txn);
    return rc;
}

int cd_hdrtree_get_tip(cd_hdrtree *t, cd_hdr_node *out)
{
    if (!(t->flags & CD_HDRTREE_RDONLY)) {
        *out = *t->tip;
        return 0;
    }
    MDB_txn *txn;
    MDB_val v;
    int rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return lmdb_fail(t, "mdb_txn_begin", rc);
    rc = mdb_get(txn, t->dbi_meta, &(MDB_val){3, "tip"}, &v);
    if (rc == MDB_NOTFOUND)
        rc = CD_HDRTREE_ENOTFOUND;
    else if (rc)
        rc = lmdb_fail(t, "mdb_get(meta tip)", rc);
    else if (v.mv_size != 32)
        rc = lmdb_fail(t, "corrupt tip record", MDB_CORRUPTED);
    else
        rc = ro_get_hash(t, txn, v.mv_data, out);
    mdb_txn_abort(txn);
    return rc;
}
