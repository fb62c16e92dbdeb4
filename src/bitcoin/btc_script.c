/*
 * btc_script.c - the pushdata rule (see btc_script.h for the rule itself).
 *
 * Lets the index answer "which transactions pay to / spend from this key
 * or carry this data" by the sha256 of pushed bytes. The walk is a single
 * pass; de-duplication keeps the first few candidates in a stack table and,
 * for scripts with more candidates than that (large data carriers), checks a
 * new candidate by re-walking the script up to its position, so no memory is
 * ever allocated.
 */
#include "bitcoin/btc_script.h"

#include "bitcoin/btc_tx.h"

#include "bitcoin/btc_sha256.h"
#include "common/cd_util.h"

#include <stdbool.h>
#include <stddef.h>

const btc_push_opts btc_push_opts_default = {1, 1, SIZE_MAX};

#define SEEN_MAX 32

typedef struct cand {
    const uint8_t *data;
    size_t len;
    unsigned flags;
} cand;

/* Enumerates rule-selected pushes (with duplicates) in script order. Calls
 * visit for each; stops early when visit returns non-zero and returns that
 * value; returns 0 at the end of the script or at a truncated push. */
typedef int (*visit_fn)(void *ctx, const cand *c);

static int walk(const uint8_t *s, size_t len, unsigned kind, const btc_push_opts *o, visit_fn visit,
                void *ctx)
{
    size_t i = 0;
    bool data_region = false;
    while (i < len) {
        uint8_t op = s[i++];
        size_t n;
        if (op >= 0x01 && op <= 0x4b) {
            n = op;
        } else if (op == BTC_OP_PUSHDATA1) {
            if (len - i < 1)
                return 0;
            n = s[i];
            i += 1;
        } else if (op == BTC_OP_PUSHDATA2) {
            if (len - i < 2)
                return 0;
            n = cd_le16(s + i);
            i += 2;
        } else if (op == BTC_OP_PUSHDATA4) {
            if (len - i < 4)
                return 0;
            n = cd_le32(s + i);
            i += 4;
        } else {
            if (op == BTC_OP_RETURN)
                data_region = true;
            else if (op == BTC_OP_ELSE)
                data_region = false;
            continue;
        }
        if (n > len - i)
            return 0; /* truncated push: the walk ends */
        const uint8_t *d = s + i;
        i += n;
        cand c = {d, n, 0};
        if (!data_region) {
            if (op == 0x14 || op == 0x21 || op == 0x41)
                c.flags = kind;
        } else if (kind == BTC_PUSH_OUTPUT && o->data_enabled && n >= o->data_min_len &&
                   n <= o->data_max_len) {
            c.flags = BTC_PUSH_DATA;
        }
        if (c.flags) {
            int r = visit(ctx, &c);
            if (r)
                return r;
        }
    }
    return 0;
}

static bool cand_eq(const cand *a, const cand *b)
{
    return a->flags == b->flags && a->len == b->len &&
           (a->data == b->data || memcmp(a->data, b->data, a->len) == 0);
}

/* Re-walk visitor: 1 if a candidate before the target equals it, 2 (stop,
 * no duplicate) on reaching the target itself. */
static int find_dup(void *ctx, const cand *c)
{
    const cand *t = ctx;
    if (c->data >= t->data)
        return 2;
    return cand_eq(c, t) ? 1 : 0;
}

typedef struct dedup_ctx {
    const uint8_t *script;
    size_t len;
    unsigned kind;
    const btc_push_opts *opts;
    cand seen[SEEN_MAX];
    size_t n_seen; /* candidates seen so far (may exceed SEEN_MAX) */
    btc_push_fn fn;
    void *fn_ctx;
    int yielded;
} dedup_ctx;

static int dedup_visit(void *vctx, const cand *c)
{
    dedup_ctx *x = vctx;
    bool dup = false;
    size_t k = CD_MIN(x->n_seen, (size_t)SEEN_MAX);
    for (size_t j = 0; j < k && !dup; j++)
        dup = cand_eq(&x->seen[j], c);
    if (!dup && x->n_seen > SEEN_MAX) {
        /* earlier candidates not in the table: re-walk up to this push */
        cand target = *c;
        dup = walk(x->script, x->len, x->kind, x->opts, find_dup, &target) == 1;
    }
    if (x->n_seen < SEEN_MAX)
        x->seen[x->n_seen] = *c;
    x->n_seen++;
    if (dup)
        return 0;
    if (x->fn(x->fn_ctx, c->data, c->len, c->flags))
        return BTC_ERR_CALLBACK;
    x->yielded++;
    return 0;
}

int btc_script_pushes(const uint8_t *script, size_t len, unsigned kind, const btc_push_opts *opts,
                      btc_push_fn fn, void *ctx)
{
    dedup_ctx x;
    x.script = script;
    x.len = len;
    x.kind = kind;
    x.opts = opts ? opts : &btc_push_opts_default;
    x.n_seen = 0;
    x.fn = fn;
    x.fn_ctx = ctx;
    x.yielded = 0;
    int r = walk(script, len, kind, x.opts, dedup_visit, &x);
    return r < 0 ? r : x.yielded;
}

/* Key output for both key helpers: records of `stride` bytes, the hash at
 * offset 0, flags at offset 32, and (tx keys) the item index at idx_off. */
typedef struct keys_ctx {
    uint8_t *base;
    size_t stride, idx_off;
    size_t max, n;
    uint32_t index;      /* input/output index of the current script */
    const uint8_t *held; /* a short push waiting for a partner (x2 hashing) */
    size_t held_len;
    size_t held_slot;
} keys_ctx;

static int key_visit(void *vctx, const uint8_t *data, size_t len, unsigned flags)
{
    keys_ctx *k = vctx;
    size_t slot = k->n++;
    if (slot >= k->max)
        return 0;
    uint8_t *rec = k->base + slot * k->stride;
    rec[32] = (uint8_t)flags;
    if (k->idx_off)
        memcpy(rec + k->idx_off, &k->index, sizeof(k->index));
    if (len > 55) {
        btc_sha256(rec, data, len);
    } else if (k->held) {
        btc_sha256_x2(k->base + k->held_slot * k->stride, k->held, k->held_len, rec, data, len);
        k->held = NULL;
    } else {
        k->held = data;
        k->held_len = len;
        k->held_slot = slot;
    }
    return 0;
}

static void keys_flush(keys_ctx *k)
{
    if (k->held)
        btc_sha256(k->base + k->held_slot * k->stride, k->held, k->held_len);
    k->held = NULL;
}

size_t btc_script_push_keys(const uint8_t *script, size_t len, unsigned kind,
                            const btc_push_opts *opts, btc_push_key *keys, size_t max_keys)
{
    keys_ctx k = {(uint8_t *)keys, sizeof(*keys), 0, max_keys, 0, 0, NULL, 0, 0};
    btc_script_pushes(script, len, kind, opts, key_visit, &k);
    keys_flush(&k);
    return k.n;
}

size_t btc_tx_push_keys(const btc_tx *tx, const btc_push_opts *opts, btc_tx_push_key *keys,
                        size_t max_keys)
{
    keys_ctx k = {(uint8_t *)keys,
                  sizeof(*keys),
                  offsetof(btc_tx_push_key, index),
                  max_keys,
                  0,
                  0,
                  NULL,
                  0,
                  0};
    btc_tx_iter it;
    btc_txin in;
    btc_txout out;
    btc_tx_inputs(tx, &it);
    for (k.index = 0; btc_tx_next_input(&it, &in); k.index++)
        btc_script_pushes(in.script, in.script_len, BTC_PUSH_INPUT, opts, key_visit, &k);
    btc_tx_outputs(tx, &it);
    for (k.index = 0; btc_tx_next_output(&it, &out); k.index++)
        btc_script_pushes(out.script, out.script_len, BTC_PUSH_OUTPUT, opts, key_visit, &k);
    keys_flush(&k);
    return k.n;
}
