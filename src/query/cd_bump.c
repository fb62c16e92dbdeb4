/*
 * cd_bump.c - BUMP (BRC-74) proofs from verified merkle branches. The layout
 * and the canonical choices are in cd_bump.h and tests/sdk/CONTRACT.md §1
 * (read from @bsv/sdk 2.1.0 src/transaction/MerklePath.ts and BRC-74).
 */
#include "cd_bump.h"

#include "btc_merkle.h"
#include "btc_varint.h"
#include "cd_hash.h"
#include "cd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        abort(); /* documented: allocation failure aborts */
    return p;
}

static int leaf_cmp(const void *a, const void *b)
{
    const cd_bump_leaf *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    /* for one offset the requested txid first, so dedup keeps it */
    return (int)y->flags - (int)x->flags;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts a level by offset and drops repeated offsets (keeping flags 02 over
 * 00: leaf_cmp puts it first). */
static size_t level_finish(cd_bump_leaf *l, size_t n)
{
    qsort(l, n, sizeof(*l), leaf_cmp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || l[k - 1].offset != l[i].offset)
            l[k++] = l[i];
    return k;
}

void cd_bump_free(cd_bump *b)
{
    if (!b)
        return;
    for (size_t h = 0; h < CD_LOOKUP_MAX_DEPTH; h++)
        free(b->level[h]);
    memset(b, 0, sizeof(*b));
}

int cd_bump_build(uint64_t block_height, uint64_t tx_count, const cd_bump_item *items, size_t n,
                  cd_bump *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0 || tx_count == 0)
        return CD_LOOKUP_EINPUT;
    for (size_t i = 0; i < n; i++) {
        if (items[i].pos >= tx_count)
            return CD_LOOKUP_EINPUT;
        for (size_t j = 0; j < i; j++)
            if (items[j].pos == items[i].pos && memcmp(items[j].txid, items[i].txid, 32) != 0)
                return CD_LOOKUP_EINPUT;
    }
    size_t depth = btc_merkle_depth((size_t)tx_count);
    out->block_height = block_height;
    /* a one-tx block: one level holding the txid (the SDK's own encoding) */
    out->tree_height = depth ? (unsigned)depth : 1;

    /* the requested positions, sorted: ancestors of level h are pos >> h */
    uint64_t *pos = xcalloc(n, sizeof(*pos));
    for (size_t i = 0; i < n; i++)
        pos[i] = items[i].pos;
    qsort(pos, n, sizeof(*pos), u64_cmp);

    uint64_t size = tx_count; /* nodes at level h */
    for (unsigned h = 0; h < out->tree_height; h++) {
        cd_bump_leaf *l = xcalloc(2 * n, sizeof(*l));
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            const cd_bump_item *it = &items[i];
            if (h == 0) {
                l[k].offset = it->pos;
                l[k].flags = CD_BUMP_TXID;
                memcpy(l[k].hash, it->txid, 32);
                k++;
            }
            if (depth == 0)
                continue;
            uint64_t anc = it->pos >> h, sib = anc ^ 1;
            if (h > 0) {
                /* a sibling that is the ancestor of another requested
                 * position is computable from below: omitted (canonical) */
                uint64_t key = sib << h;
                size_t lo = 0, hi = n;
                while (lo < hi) { /* first pos >= sib << h */
                    size_t mid = (lo + hi) / 2;
                    if (pos[mid] < key)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                if (lo < n && (pos[lo] >> h) == sib)
                    continue;
            }
            l[k].offset = sib;
            if (sib >= size) { /* the ancestor is the last node of an odd level */
                l[k].flags = CD_BUMP_DUP;
            } else {
                l[k].flags = CD_BUMP_HASH;
                memcpy(l[k].hash, it->branch + 32 * h, 32);
            }
            k++;
        }
        out->n[h] = level_finish(l, k);
        out->level[h] = l;
        size = (size + 1) / 2;
    }
    free(pos);
    return 0;
}

size_t cd_bump_binary_size(const cd_bump *b)
{
    size_t len = btc_varint_size(b->block_height) + 1;
    for (unsigned h = 0; h < b->tree_height; h++) {
        len += btc_varint_size(b->n[h]);
        for (size_t i = 0; i < b->n[h]; i++) {
            const cd_bump_leaf *l = &b->level[h][i];
            len += btc_varint_size(l->offset) + 1 + (l->flags == CD_BUMP_DUP ? 0 : 32);
        }
    }
    return len;
}

size_t cd_bump_write(const cd_bump *b, uint8_t *p)
{
    uint8_t *start = p;
    p += btc_varint_write(p, b->block_height);
    *p++ = (uint8_t)b->tree_height;
    for (unsigned h = 0; h < b->tree_height; h++) {
        p += btc_varint_write(p, b->n[h]);
        for (size_t i = 0; i < b->n[h]; i++) {
            const cd_bump_leaf *l = &b->level[h][i];
            p += btc_varint_write(p, l->offset);
            *p++ = l->flags;
            if (l->flags != CD_BUMP_DUP) {
                memcpy(p, l->hash, 32);
                p += 32;
            }
        }
    }
    return (size_t)(p - start);
}

uint8_t *cd_bump_binary(const cd_bump *b, size_t *len)
{
    *len = cd_bump_binary_size(b);
    uint8_t *buf = xcalloc(*len, 1);
    size_t w = cd_bump_write(b, buf);
    (void)w; /* == *len by construction */
    return buf;
}

json_t *cd_bump_json(const cd_bump *b)
{
    json_t *path = json_array();
    for (unsigned h = 0; path && h < b->tree_height; h++) {
        json_t *lv = json_array();
        for (size_t i = 0; lv && i < b->n[h]; i++) {
            const cd_bump_leaf *l = &b->level[h][i];
            json_t *o = json_pack("{s:I}", "offset", (json_int_t)l->offset);
            int bad = !o;
            if (o && l->flags == CD_BUMP_DUP) {
                bad |= json_object_set_new(o, "duplicate", json_true()) != 0;
            } else if (o) {
                char hx[65];
                cd_hex_encode_rev(hx, l->hash, 32);
                bad |= json_object_set_new(o, "hash", json_string(hx)) != 0;
                if (l->flags == CD_BUMP_TXID)
                    bad |= json_object_set_new(o, "txid", json_true()) != 0;
            }
            if (bad || json_array_append_new(lv, o) != 0) {
                json_decref(lv);
                lv = NULL;
            }
        }
        if (!lv || json_array_append_new(path, lv) != 0) {
            json_decref(path);
            path = NULL;
        }
    }
    if (!path)
        return NULL;
    return json_pack("{s:I, s:o}", "blockHeight", (json_int_t)b->block_height, "path", path);
}

/* ---- reading a BUMP back: the root it gives ---- */

static const cd_bump_leaf *find_leaf(const cd_bump *b, unsigned h, uint64_t off)
{
    size_t lo = 0, hi = b->n[h];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (b->level[h][mid].offset < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < b->n[h] && b->level[h][lo].offset == off ? &b->level[h][lo] : NULL;
}

static void hash_pair(const uint8_t l[32], const uint8_t r[32], uint8_t out[32])
{
    uint8_t buf[64];
    memcpy(buf, l, 32);
    memcpy(buf + 32, r, 32);
    cd_sha256d(out, buf, 64);
}

/* The node at (h, off): present, or computed from its two children (a
 * duplicate right child pairs the left one with itself). Returns 1 with
 * *dup set for a duplicate leaf (no hash), 0 with out, or -1. */
static int node(const cd_bump *b, unsigned h, uint64_t off, uint8_t out[32], int *dup)
{
    *dup = 0;
    const cd_bump_leaf *l = find_leaf(b, h, off);
    if (l) {
        if (l->flags == CD_BUMP_DUP) {
            *dup = 1;
            return 1;
        }
        memcpy(out, l->hash, 32);
        return 0;
    }
    if (h == 0)
        return -1;
    uint8_t left[32], right[32];
    int d;
    if (node(b, h - 1, off << 1, left, &d) != 0)
        return -1;
    int r = node(b, h - 1, (off << 1) | 1, right, &d);
    if (r < 0)
        return -1;
    hash_pair(left, d ? left : right, out);
    return 0;
}

int cd_bump_root(const cd_bump *b, const uint8_t txid[32], uint8_t root[32])
{
    const cd_bump_leaf *start = NULL;
    for (size_t i = 0; b->tree_height && i < b->n[0]; i++)
        if (b->level[0][i].flags != CD_BUMP_DUP && !memcmp(b->level[0][i].hash, txid, 32))
            start = &b->level[0][i];
    if (!start)
        return CD_LOOKUP_ENOTFOUND;
    uint8_t w[32];
    memcpy(w, txid, 32);
    if (b->tree_height == 1 && b->n[0] == 1) { /* a one-tx block */
        memcpy(root, w, 32);
        return 0;
    }
    uint64_t idx = start->offset;
    for (unsigned h = 0; h < b->tree_height; h++) {
        uint64_t sib = (idx >> h) ^ 1;
        uint8_t s[32];
        int dup;
        int r = node(b, h, sib, s, &dup);
        if (r < 0)
            return CD_LOOKUP_ECORRUPT;
        if (dup)
            hash_pair(w, w, w);
        else if (sib & 1)
            hash_pair(w, s, w);
        else
            hash_pair(s, w, w);
    }
    memcpy(root, w, 32);
    return 0;
}

/* ---- from the index ---- */

int cd_bump_lookup(cd_lookup *lk, const uint8_t (*txids)[32], size_t n, cd_bump *out, char *err,
                   size_t errlen)
{
    memset(out, 0, sizeof(*out));
    err[0] = '\0';
    if (n == 0 || n > CD_BUMP_MAX_TXIDS) {
        snprintf(err, errlen, "a BUMP is built for 1 to %d txids, not %zu", CD_BUMP_MAX_TXIDS, n);
        return CD_LOOKUP_EINPUT;
    }
    size_t depth_bytes = CD_LOOKUP_MAX_DEPTH * 32;
    uint8_t *branches = xcalloc(n, depth_bytes);
    cd_bump_item *items = xcalloc(n, sizeof(*items));
    cd_lookup_tx first;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char hx[65];
        cd_hex_encode_rev(hx, txids[i], 32);
        cd_lookup_tx tx;
        rc = cd_lookup_tx_find(lk, txids[i], 1, &tx);
        if (rc == CD_LOOKUP_ENOTFOUND) {
            snprintf(err, errlen, "transaction %s is not in the indexed best chain", hx);
            break;
        }
        if (rc == 0 && tx.mempool) {
            snprintf(err, errlen,
                     "transaction %s is in the mempool, not in a block yet: it has no merkle "
                     "proof",
                     hx);
            rc = CD_LOOKUP_ENOTFOUND;
            break;
        }
        if (rc == 0 && i > 0 && memcmp(tx.block_hash, first.block_hash, 32) != 0) {
            char b1[65], b2[65];
            cd_hex_encode_rev(b1, first.block_hash, 32);
            cd_hex_encode_rev(b2, tx.block_hash, 32);
            snprintf(err, errlen,
                     "a compound BUMP is for txids of one block: %s is in block %s, the first "
                     "in %s",
                     hx, b2, b1);
            rc = CD_LOOKUP_EINPUT;
            break;
        }
        size_t depth = 0;
        if (rc == 0)
            rc = cd_lookup_tx_branch(lk, &tx, branches + depth_bytes * i, &depth);
        if (rc != 0) {
            snprintf(err, errlen, "%s", cd_lookup_error(lk));
            break;
        }
        if (i == 0)
            first = tx;
        items[i].pos = tx.pos;
        memcpy(items[i].txid, tx.txid, 32);
        items[i].branch = branches + depth_bytes * i;
    }
    if (rc == 0) {
        rc = cd_bump_build((uint64_t)first.height, first.tx_count, items, n, out);
        if (rc != 0)
            snprintf(err, errlen, "inconsistent positions for the BUMP of block height %d",
                     (int)first.height);
    }
    free(items);
    free(branches);
    return rc;
}
