/*
 * btc_merkle.c - merkle roots and proofs over txids.
 *
 * Every block's merkle root is recomputed before the block counts
 * (DESIGN.md §5), the tree levels are stored for proofs, and the mutation
 * check closes CVE-2012-2459 (a block whose tx list repeats its last txids
 * hashes to the same root as the honest block). A pair of 32-byte hashes
 * is hashed as one 64-byte sha256d.
 */
#include "btc_merkle.h"

#include "btc_sha256.h"
#include "cd_util.h"

#include <stdlib.h>

size_t btc_merkle_depth(size_t n)
{
    size_t d = 0;
    while (n > 1) {
        n = (n + 1) / 2;
        d++;
    }
    return d;
}

size_t btc_merkle_tree_count(size_t n)
{
    size_t total = n;
    while (n > 1) {
        n = (n + 1) / 2;
        total += n;
    }
    return total;
}

/* Hashes level `in` (n hashes) into `out` (ceil(n/2) hashes). out may equal
 * in (each output slot k is written after inputs 2k, 2k+1 are read).
 * Returns 1 if two real siblings were equal. */
static int hash_level(const uint8_t *in, size_t n, uint8_t *out)
{
    int mutated = 0;
    uint8_t pair[64];
    for (size_t k = 0; 2 * k < n; k++) {
        const uint8_t *l = in + 64 * k;
        const uint8_t *r = (2 * k + 1 < n) ? l + 32 : l;
        if (r != l && memcmp(l, r, 32) == 0)
            mutated = 1;
        memcpy(pair, l, 32);
        memcpy(pair + 32, r, 32);
        btc_sha256d(out + 32 * k, pair, 64);
    }
    return mutated;
}

int btc_merkle_root(const uint8_t *txids, size_t n, uint8_t root[32], int *mutated)
{
    int mut = 0;
    if (mutated)
        *mutated = 0;
    if (n == 0)
        return BTC_ERR_MERKLE_EMPTY;
    if (n == 1) {
        memcpy(root, txids, 32);
        return 0;
    }
    size_t half = (n + 1) / 2;
    uint8_t small[32];
    uint8_t *scratch = half == 1 ? small : malloc(half * 32);
    if (!scratch)
        return BTC_ERR_TOO_BIG;
    mut |= hash_level(txids, n, scratch);
    n = half;
    while (n > 1) {
        mut |= hash_level(scratch, n, scratch);
        n = (n + 1) / 2;
    }
    memcpy(root, scratch, 32);
    if (scratch != small)
        free(scratch);
    if (mutated)
        *mutated = mut;
    return 0;
}

int btc_merkle_tree_build(const uint8_t *txids, size_t n, uint8_t *tree, int *mutated)
{
    int mut = 0;
    if (mutated)
        *mutated = 0;
    if (n == 0)
        return BTC_ERR_MERKLE_EMPTY;
    if (tree != txids)
        memmove(tree, txids, n * 32);
    uint8_t *lvl = tree;
    while (n > 1) {
        uint8_t *next = lvl + n * 32;
        mut |= hash_level(lvl, n, next);
        lvl = next;
        n = (n + 1) / 2;
    }
    if (mutated)
        *mutated = mut;
    return 0;
}

int btc_merkle_branch(const uint8_t *tree, size_t n, size_t index, uint8_t *branch, uint8_t *dup,
                      size_t *depth)
{
    *depth = 0;
    if (n == 0)
        return BTC_ERR_MERKLE_EMPTY;
    if (index >= n)
        return BTC_ERR_RANGE;
    const uint8_t *lvl = tree;
    size_t d = 0;
    while (n > 1) {
        size_t sib = index ^ 1;
        int is_dup = sib >= n;
        memcpy(branch + 32 * d, lvl + 32 * (is_dup ? index : sib), 32);
        if (dup)
            dup[d] = (uint8_t)is_dup;
        d++;
        lvl += 32 * n;
        n = (n + 1) / 2;
        index >>= 1;
    }
    *depth = d;
    return 0;
}

int btc_merkle_verify(const uint8_t leaf[32], size_t index, const uint8_t *branch, size_t depth,
                      const uint8_t root[32])
{
    uint8_t h[32], pair[64];
    memcpy(h, leaf, 32);
    for (size_t d = 0; d < depth; d++) {
        if (index & 1) {
            memcpy(pair, branch + 32 * d, 32);
            memcpy(pair + 32, h, 32);
        } else {
            memcpy(pair, h, 32);
            memcpy(pair + 32, branch + 32 * d, 32);
        }
        btc_sha256d(h, pair, 64);
        index >>= 1;
    }
    return index == 0 && memcmp(h, root, 32) == 0;
}

/* ---- streaming ---- */

void btc_merkle_stream_init(btc_merkle_stream *s, btc_merkle_node_fn fn, void *ctx)
{
    memset(s, 0, sizeof(*s));
    s->fn = fn;
    s->ctx = ctx;
}

static int emit(btc_merkle_stream *s, unsigned level, const uint8_t h[32])
{
    uint64_t idx = s->emitted[level]++;
    if (s->fn && s->fn(s->ctx, level, idx, h) != 0) {
        s->failed = 1;
        return BTC_ERR_CALLBACK;
    }
    return 0;
}

static void combine(uint8_t out[32], const uint8_t *l, const uint8_t *r)
{
    uint8_t pair[64];
    memcpy(pair, l, 32);
    memcpy(pair + 32, r, 32);
    btc_sha256d(out, pair, 64);
}

int btc_merkle_stream_add(btc_merkle_stream *s, const uint8_t txid[32])
{
    if (s->failed)
        return BTC_ERR_CALLBACK;
    uint8_t h[32];
    memcpy(h, txid, 32);
    if (emit(s, 0, h) < 0)
        return BTC_ERR_CALLBACK;
    unsigned k = 0;
    /* binary carry: a set bit k means a left node waits at level k */
    while (s->have & (1ull << k)) {
        if (memcmp(s->pending[k], h, 32) == 0)
            s->mutated = 1;
        combine(h, s->pending[k], h);
        s->have &= ~(1ull << k);
        k++;
        if (emit(s, k, h) < 0)
            return BTC_ERR_CALLBACK;
    }
    memcpy(s->pending[k], h, 32);
    s->have |= 1ull << k;
    s->count++;
    return 0;
}

int btc_merkle_stream_final(btc_merkle_stream *s, uint8_t root[32], int *mutated)
{
    if (mutated)
        *mutated = 0;
    if (s->failed)
        return BTC_ERR_CALLBACK;
    if (s->count == 0)
        return BTC_ERR_MERKLE_EMPTY;
    unsigned depth = (unsigned)btc_merkle_depth((size_t)s->count);
    uint8_t carry[32];
    int have_carry = 0;
    for (unsigned k = 0; k < depth; k++) {
        int pend = (s->have >> k) & 1;
        if (pend && have_carry) {
            /* two real nodes of level k */
            if (memcmp(s->pending[k], carry, 32) == 0)
                s->mutated = 1;
            combine(carry, s->pending[k], carry);
        } else if (pend) {
            combine(carry, s->pending[k], s->pending[k]);
            have_carry = 1;
        } else if (have_carry) {
            combine(carry, carry, carry);
        } else {
            continue;
        }
        if (emit(s, k + 1, carry) < 0)
            return BTC_ERR_CALLBACK;
    }
    memcpy(root, have_carry ? carry : s->pending[depth], 32);
    if (mutated)
        *mutated = s->mutated;
    return 0;
}
