/*
 * cp2p_spv.c - the SPV helpers of libconduit-p2p: headers (parse, hash,
 * proof of work, chain linkage, difficulty rules, time rules), chain work,
 * merkle roots, branches, TSC proofs (BRC-10) and BUMPs (BRC-74).
 *
 * Why it exists: an SPV wallet on this library needs exactly the checks the
 * daemon's header tree and block pipeline make; these are thin public
 * wrappers over the bitcoin room (btc_header, btc_pow, btc_merkle), with the
 * library's error codes, so that there is one implementation of each rule.
 * Proof parsing is here because only applications receive proofs.
 */
#include "cp2p_int.h"

#include <stdlib.h>
#include <string.h>

#include "btc_header.h"
#include "btc_merkle.h"
#include "btc_pow.h"
#include "btc_varint.h"

/* ---- headers ---- */

void cp2p_header_parse(cp2p_header *h, const uint8_t raw[80])
{
    btc_header b;
    btc_header_parse(&b, raw);
    h->version = b.version;
    memcpy(h->prev, b.prev, 32);
    memcpy(h->merkle_root, b.merkle_root, 32);
    h->time = b.time;
    h->bits = b.bits;
    h->nonce = b.nonce;
}

void cp2p_header_serialize(uint8_t raw[80], const cp2p_header *h)
{
    btc_header b;
    b.version = h->version;
    memcpy(b.prev, h->prev, 32);
    memcpy(b.merkle_root, h->merkle_root, 32);
    b.time = h->time;
    b.bits = h->bits;
    b.nonce = h->nonce;
    btc_header_serialize(raw, &b);
}

void cp2p_header_hash(const uint8_t raw[80], uint8_t hash[32])
{
    btc_header_hash(raw, hash);
}

int cp2p_header_check_pow(const cp2p_net *net, const uint8_t raw[80])
{
    btc_header h;
    uint8_t hash[32];
    if (!net || !raw)
        return CP2P_EINVAL;
    btc_header_parse(&h, raw);
    btc_header_hash(raw, hash);
    return btc_check_pow(hash, h.bits, cp2p_btcnet(net)) == 0 ? CP2P_OK : CP2P_EBADPOW;
}

int cp2p_headers_check_chain(const cp2p_net *net, const uint8_t *hdrs, size_t n,
                             const uint8_t prev_hash[32], size_t *bad)
{
    uint8_t prev[32];
    if (!net || !hdrs || n == 0)
        return CP2P_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *raw = hdrs + 80 * i;
        if ((i > 0 || prev_hash) && memcmp(raw + 4, i ? prev : prev_hash, 32) != 0) {
            if (bad)
                *bad = i;
            return CP2P_ENOTLINKED;
        }
        if (cp2p_header_check_pow(net, raw) != CP2P_OK) {
            if (bad)
                *bad = i;
            return CP2P_EBADPOW;
        }
        btc_header_hash(raw, prev);
    }
    return CP2P_OK;
}

/* ---- chain work ---- */

void cp2p_work_from_bits(uint8_t work[32], uint32_t bits)
{
    btc_u256 w = btc_block_work(bits);
    btc_u256_to_le(work, &w);
}

int cp2p_work_add(uint8_t acc[32], const uint8_t add[32])
{
    btc_u256 a, b;
    btc_u256_from_le(&a, acc);
    btc_u256_from_le(&b, add);
    int carry = btc_u256_add(&a, &a, &b);
    btc_u256_to_le(acc, &a);
    return carry;
}

int cp2p_work_cmp(const uint8_t a[32], const uint8_t b[32])
{
    btc_u256 x, y;
    btc_u256_from_le(&x, a);
    btc_u256_from_le(&y, b);
    return btc_u256_cmp(&x, &y);
}

/* ---- difficulty and time rules ---- */

struct anc_ctx {
    cp2p_ancestor_fn get;
    void *ctx;
};

static int ancestor(void *ctx, int32_t height, btc_pow_block *out)
{
    struct anc_ctx *a = ctx;
    cp2p_block_info bi;
    if (a->get(a->ctx, height, &bi) != 0 || bi.height != height)
        return -1;
    out->height = bi.height;
    out->time = bi.time;
    out->bits = bi.bits;
    btc_u256_from_le(&out->chain_work, bi.chain_work);
    return 0;
}

int cp2p_header_check_next(const cp2p_net *net, const cp2p_block_info *prev,
                           const uint8_t prev_hash[32], const uint8_t raw[80], cp2p_ancestor_fn get,
                           void *ctx, int64_t now, cp2p_block_info *next)
{
    btc_header h;
    if (!net || !prev || !prev_hash || !raw || !get)
        return CP2P_EINVAL;
    const btc_net *bn = cp2p_btcnet(net);
    btc_header_parse(&h, raw);
    if (memcmp(h.prev, prev_hash, 32) != 0)
        return CP2P_ENOTLINKED;
    if (cp2p_header_check_pow(net, raw) != CP2P_OK)
        return CP2P_EBADPOW;
    struct anc_ctx a = {get, ctx};
    btc_pow_block pb;
    pb.height = prev->height;
    pb.time = prev->time;
    pb.bits = prev->bits;
    btc_u256_from_le(&pb.chain_work, prev->chain_work);
    uint32_t want;
    int rc = btc_pow_next_bits(bn, &pb, h.time, ancestor, &a, &want);
    if (rc == BTC_ERR_RANGE)
        return CP2P_ERANGE;
    if (rc != 0 || want != h.bits)
        return CP2P_EBADBITS;
    uint32_t mtp;
    if (btc_pow_median_time_past(ancestor, &a, prev->height, &mtp) != 0)
        return CP2P_ERANGE;
    if (h.time <= mtp || (now > 0 && (int64_t)h.time > now + 2 * 60 * 60))
        return CP2P_EBADTIME;
    if (next) {
        uint8_t w[32];
        next->height = prev->height + 1;
        next->time = h.time;
        next->bits = h.bits;
        memcpy(next->chain_work, prev->chain_work, 32);
        cp2p_work_from_bits(w, h.bits);
        (void)cp2p_work_add(next->chain_work, w);
    }
    return CP2P_OK;
}

/* ---- merkle ---- */

static void hash_pair(uint8_t out[32], const uint8_t l[32], const uint8_t r[32])
{
    uint8_t buf[64];
    memcpy(buf, l, 32);
    memcpy(buf + 32, r, 32);
    cd_sha256d(out, buf, 64);
}

int cp2p_merkle_root(const uint8_t *txids, size_t n, uint8_t root[32], int *mutated)
{
    if (!txids || n == 0 || !root)
        return CP2P_EINVAL;
    int rc = btc_merkle_root(txids, n, root, mutated);
    if (rc == BTC_ERR_MERKLE_EMPTY)
        return CP2P_EINVAL;
    return rc == 0 ? CP2P_OK : CP2P_ENOMEM;
}

int cp2p_merkle_branch_root(const uint8_t leaf[32], uint64_t index, const uint8_t *branch,
                            size_t depth, uint8_t root[32])
{
    uint8_t h[32];
    if (!leaf || !root || (depth && !branch) || depth > 64 || (depth < 64 && index >> depth))
        return CP2P_EINVAL;
    memcpy(h, leaf, 32);
    for (size_t i = 0; i < depth; i++) {
        if ((index >> i) & 1)
            hash_pair(h, branch + 32 * i, h);
        else
            hash_pair(h, h, branch + 32 * i);
    }
    memcpy(root, h, 32);
    return CP2P_OK;
}

/* A bounded reader over a proof. */
typedef struct prd {
    const uint8_t *p;
    size_t len, pos;
    int err;
} prd;

static const uint8_t *prd_bytes(prd *r, size_t n)
{
    if (r->err || n > r->len - r->pos) {
        r->err = 1;
        return NULL;
    }
    const uint8_t *q = r->p + r->pos;
    r->pos += n;
    return q;
}

static uint64_t prd_varint(prd *r)
{
    uint64_t v = 0;
    if (r->err)
        return 0;
    int k = btc_varint_read(r->p + r->pos, r->len - r->pos, &v);
    if (k <= 0) {
        r->err = 1;
        return 0;
    }
    r->pos += (size_t)k;
    return v;
}

static int prd_u8(prd *r)
{
    const uint8_t *q = prd_bytes(r, 1);
    return q ? q[0] : -1;
}

int cp2p_tsc_verify(const uint8_t *proof, size_t len, const uint8_t txid[32],
                    const uint8_t merkle_root[32], cp2p_tsc_info *info)
{
    cp2p_tsc_info tmp;
    cp2p_tsc_info *in = info ? info : &tmp;
    prd r = {proof, len, 0, 0};
    if (!proof)
        return CP2P_EINVAL;
    memset(in, 0, sizeof(*in));
    int flags = prd_u8(&r);
    if (flags < 0)
        return CP2P_EMALFORMED;
    if (flags & 0x08)
        return CP2P_EUNSUPPORTED; /* composite proof */
    if ((flags & 0x06) == 0x06 || (flags & ~0x0f))
        return CP2P_EMALFORMED;
    in->index = prd_varint(&r);
    if (flags & 0x01) {
        uint64_t tl = prd_varint(&r);
        const uint8_t *tx = prd_bytes(&r, tl > len ? len + 1 : (size_t)tl);
        if (!tx)
            return CP2P_EMALFORMED;
        cd_sha256d(in->txid, tx, (size_t)tl);
    } else {
        const uint8_t *id = prd_bytes(&r, 32);
        if (!id)
            return CP2P_EMALFORMED;
        memcpy(in->txid, id, 32);
    }
    in->target_type = (flags >> 1) & 3; /* 0 hash, 1 header, 2 merkle root */
    size_t tlen = in->target_type == 1 ? 80 : 32;
    const uint8_t *tg = prd_bytes(&r, tlen);
    if (!tg)
        return CP2P_EMALFORMED;
    memcpy(in->target, tg, tlen);
    uint64_t nn = prd_varint(&r);
    if (r.err || nn > 64)
        return CP2P_EMALFORMED;
    in->n_nodes = (size_t)nn;
    uint8_t h[32];
    uint64_t idx = in->index;
    memcpy(h, in->txid, 32);
    for (uint64_t i = 0; i < nn; i++) {
        int type = prd_u8(&r);
        uint8_t sib[32];
        if (type == 0) {
            const uint8_t *q = prd_bytes(&r, 32);
            if (!q)
                return CP2P_EMALFORMED;
            memcpy(sib, q, 32);
        } else if (type == 1) {
            memcpy(sib, h, 32);
        } else if (type == 2) {
            return CP2P_EUNSUPPORTED;
        } else {
            return CP2P_EMALFORMED;
        }
        if (idx & 1)
            hash_pair(h, sib, h);
        else
            hash_pair(h, h, sib);
        idx >>= 1;
    }
    if (r.err)
        return CP2P_EMALFORMED;
    memcpy(in->root, h, 32);
    if (idx != 0)
        return CP2P_EPROOF; /* fewer nodes than the index needs */
    if (txid && memcmp(txid, in->txid, 32) != 0)
        return CP2P_EPROOF;
    if (in->target_type == 2 && memcmp(in->target, h, 32) != 0)
        return CP2P_EPROOF;
    if (in->target_type == 1 && memcmp(in->target + 36, h, 32) != 0)
        return CP2P_EPROOF;
    if (in->target_type == 0 && !merkle_root)
        return CP2P_EINVAL;
    if (merkle_root && memcmp(merkle_root, h, 32) != 0)
        return CP2P_EPROOF;
    return CP2P_OK;
}

/* ---- BUMP (BRC-74) ---- */

typedef struct bump_leaf {
    uint64_t offset;
    int flags;
    const uint8_t *hash; /* NULL when duplicate */
} bump_leaf;

typedef struct bump {
    unsigned height; /* tree height */
    bump_leaf *leaves;
    size_t *start; /* leaves of level l: [start[l], start[l + 1]) */
    size_t budget; /* node computations left (bounds hostile paths) */
} bump;

static const bump_leaf *bump_find(const bump *b, unsigned level, uint64_t off)
{
    for (size_t i = b->start[level]; i < b->start[level + 1]; i++)
        if (b->leaves[i].offset == off)
            return &b->leaves[i];
    return NULL;
}

/* The hash at (level, off): given, a duplicate of its sibling, or computed
 * from the level below. Returns 0 or -1 (not derivable). */
static int bump_node(bump *b, unsigned level, uint64_t off, uint8_t out[32], int depth)
{
    if (b->budget-- == 0 || depth > 130)
        return -1;
    const bump_leaf *l = bump_find(b, level, off);
    if (l && l->hash) {
        memcpy(out, l->hash, 32);
        return 0;
    }
    if (l) /* duplicate: equal to its left sibling */
        return (off & 1) ? bump_node(b, level, off ^ 1, out, depth + 1) : -1;
    if (level == 0)
        return -1;
    uint8_t left[32], right[32];
    if (bump_node(b, level - 1, 2 * off, left, depth + 1) != 0)
        return -1;
    const bump_leaf *rl = bump_find(b, level - 1, 2 * off + 1);
    if (rl && !rl->hash)
        memcpy(right, left, 32);
    else if (bump_node(b, level - 1, 2 * off + 1, right, depth + 1) != 0)
        return -1;
    hash_pair(out, left, right);
    return 0;
}

int cp2p_bump_verify(const uint8_t *data, size_t len, const uint8_t txid[32],
                     const uint8_t merkle_root[32], uint64_t *block_height, uint8_t root[32])
{
    prd r = {data, len, 0, 0};
    bump b;
    int rc = CP2P_EMALFORMED;
    if (!data || !txid)
        return CP2P_EINVAL;
    memset(&b, 0, sizeof(b));
    uint64_t bh = prd_varint(&r);
    int th = prd_u8(&r);
    if (r.err || th < 1 || th > 64)
        return CP2P_EMALFORMED;
    b.height = (unsigned)th;
    /* every leaf takes at least 2 bytes: bounds the table */
    size_t cap = len / 2 + 1, n = 0;
    b.leaves = calloc(cap, sizeof(*b.leaves));
    b.start = calloc(b.height + 1, sizeof(*b.start));
    if (!b.leaves || !b.start) {
        rc = CP2P_ENOMEM;
        goto out;
    }
    for (unsigned lv = 0; lv < b.height; lv++) {
        b.start[lv] = n;
        uint64_t cnt = prd_varint(&r);
        if (r.err || cnt > cap - n)
            goto out;
        for (uint64_t i = 0; i < cnt; i++) {
            bump_leaf *l = &b.leaves[n++];
            l->offset = prd_varint(&r);
            l->flags = prd_u8(&r);
            if (r.err || l->flags < 0 || (l->flags & ~3))
                goto out;
            if (!(l->flags & 1) && !(l->hash = prd_bytes(&r, 32)))
                goto out;
            if ((lv < 63 && l->offset >> (b.height - lv)) || ((l->flags & 1) && (l->flags & 2)))
                goto out;
        }
    }
    b.start[b.height] = n;
    if (r.err)
        goto out;
    if (block_height)
        *block_height = bh;
    const bump_leaf *me = NULL;
    for (size_t i = b.start[0]; i < b.start[1] && !me; i++)
        if (b.leaves[i].hash && memcmp(b.leaves[i].hash, txid, 32) == 0)
            me = &b.leaves[i];
    if (!me) {
        rc = CP2P_EPROOF;
        goto out;
    }
    b.budget = 4 * n + 4 * (size_t)b.height + 16;
    uint8_t h[32], sib[32];
    uint64_t off = me->offset;
    memcpy(h, txid, 32);
    for (unsigned lv = 0; lv < b.height; lv++) {
        const bump_leaf *s = bump_find(&b, lv, off ^ 1);
        if (s && !s->hash)
            memcpy(sib, h, 32);
        else if (bump_node(&b, lv, off ^ 1, sib, 0) != 0) {
            rc = CP2P_EPROOF;
            goto out;
        }
        if (off & 1)
            hash_pair(h, sib, h);
        else
            hash_pair(h, h, sib);
        off >>= 1;
    }
    if (root)
        memcpy(root, h, 32);
    rc = merkle_root && memcmp(merkle_root, h, 32) != 0 ? CP2P_EPROOF : CP2P_OK;
out:
    free(b.leaves);
    free(b.start);
    return rc;
}
