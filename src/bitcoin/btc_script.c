/*
 * btc_script.c - the pushdata rule (see btc_script.h for the rule itself).
 *
 * Lets the index answer "which transactions pay to / spend from this key
 * or carry this data" by the sha256 of pushed bytes. The standard templates
 * (P2PKH/P2PK outputs, <sig> <pubkey> inputs: nearly every script on chain)
 * are recognised first and need no walk. Otherwise the walk is a single
 * pass; de-duplication keeps the first few candidates in a stack table (no
 * allocation: nearly every script). A script with more candidates than that
 * (a large data carrier) is de-duplicated from its 33rd candidate on by
 * sorting: pushes of 0-2 bytes in a bitmap (they have only 65,793 possible
 * values), longer ones by (flags, length, bytes, position): O(B log n) for
 * B script bytes and n candidates, with 12 bytes of memory per candidate of
 * 3 or more bytes (at most 3 bytes per script byte; plain malloc, as the
 * size is the sender's choice: if it fails, the old way below). Before,
 * each such candidate re-walked the script from its start, O(n x B): found
 * by fuzz/fuzz_script, a 160 kB script of distinct 3-byte pushes took 20 s
 * and a 10 MB one (a standard-size transaction) about a day.
 */
#include "btc_script.h"

#include "btc_tx.h"

#include "btc_sha256.h"
#include "cd_util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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

/* dedup_visit's answer when a script has more than SEEN_MAX candidates:
 * stop, the sorted de-duplication takes over. */
#define SWITCH_TO_SORT 3

static int dedup_visit(void *vctx, const cand *c)
{
    dedup_ctx *x = vctx;
    bool dup = false;
    size_t k = CD_MIN(x->n_seen, (size_t)SEEN_MAX);
    if (x->n_seen == SEEN_MAX && x->len <= UINT32_MAX)
        return SWITCH_TO_SORT;
    for (size_t j = 0; j < k && !dup; j++)
        dup = cand_eq(&x->seen[j], c);
    if (!dup && x->n_seen > SEEN_MAX) {
        /* only for scripts over 4 GiB (no transaction holds one): re-walk
         * up to this push */
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

/* Direct pushes of these sizes are keys outside a data region. */
static inline bool key_size(size_t n)
{
    return n == 20 || n == 33 || n == 65;
}

/*
 * The standard templates, which are nearly every script on chain, without
 * the general walk and its de-duplication table: P2PKH and P2PK outputs
 * (one key), and input scripts made of exactly two direct pushes (the P2PKH
 * spend <sig> <pubkey>: at most two keys, one if they are equal). None of
 * them contains an opcode, so there is no data region and opts do not
 * matter. Returns 1 with *ret set (what btc_script_pushes returns) if the
 * script is one of them, else 0 (the general walk decides).
 */
static int pushes_template(const uint8_t *s, size_t len, unsigned kind, btc_push_fn fn, void *ctx,
                           int *ret)
{
    const uint8_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    if (kind == BTC_PUSH_OUTPUT) {
        if (len == 25 && s[0] == 0x76 && s[1] == 0xa9 && s[2] == 0x14 && s[23] == 0x88 &&
            s[24] == 0xac) {
            a = s + 3; /* OP_DUP OP_HASH160 <20> OP_EQUALVERIFY OP_CHECKSIG */
            na = 20;
        } else if (((len == 35 && s[0] == 0x21) || (len == 67 && s[0] == 0x41)) &&
                   s[len - 1] == 0xac) {
            a = s + 1; /* <33 or 65> OP_CHECKSIG */
            na = len - 2;
        } else {
            return 0;
        }
    } else {
        if (len < 2 || s[0] < 0x01 || s[0] > 0x4b || (size_t)s[0] + 2 > len)
            return 0;
        size_t n1 = s[0], n2 = s[1 + n1];
        if (n2 < 0x01 || n2 > 0x4b || n1 + n2 + 2 != len)
            return 0;
        if (key_size(n1)) {
            a = s + 1;
            na = n1;
        }
        if (key_size(n2) && !(a && n1 == n2 && memcmp(a, s + 2 + n1, n2) == 0)) {
            b = s + 2 + n1;
            nb = n2;
        }
    }
    int n = 0;
    if (a) {
        if (fn(ctx, a, na, kind)) {
            *ret = BTC_ERR_CALLBACK;
            return 1;
        }
        n++;
    }
    if (b) {
        if (fn(ctx, b, nb, kind)) {
            *ret = BTC_ERR_CALLBACK;
            return 1;
        }
        n++;
    }
    *ret = n;
    return 1;
}

/* ---- de-duplication of scripts with many candidates ---- */

/* A candidate of 3 or more bytes: where it is. */
typedef struct big_cand {
    uint32_t off, len; /* within the script (< 4 GiB: see dedup_visit) */
    uint32_t flags;    /* BTC_PUSH_*, with DUP_BIT once known to repeat an earlier one */
} big_cand;

#define DUP_BIT 0x80000000u
#define SMALL_N (1u + 256u + 65536u) /* values of a 0, 1 or 2 byte push */

typedef struct sort_ctx {
    const dedup_ctx *d;
    big_cand *c;
    size_t n, cap;
    size_t ord;          /* candidates seen so far (all lengths) */
    uint8_t *small_seen; /* 2 x SMALL_N bits: [flags == BTC_PUSH_DATA][value] */
    int yielded;
    int phase;       /* 0: collect the long candidates; 1: yield */
    int fallback;    /* out of memory: re-walk per candidate */
    size_t next_big; /* phase 1: index into c of the next long candidate */
} sort_ctx;

static int cmp_content(const void *pa, const void *pb, void *arg)
{
    const big_cand *a = pa, *b = pb;
    const uint8_t *s = arg;
    if (a->flags != b->flags)
        return a->flags < b->flags ? -1 : 1;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    int m = memcmp(s + a->off, s + b->off, a->len);
    if (m)
        return m;
    return a->off < b->off ? -1 : (a->off > b->off);
}

static int cmp_off(const void *pa, const void *pb)
{
    const big_cand *a = pa, *b = pb;
    return a->off < b->off ? -1 : (a->off > b->off);
}

static size_t small_index(const cand *c)
{
    size_t v = c->len == 0   ? 0
               : c->len == 1 ? 1u + c->data[0]
                             : 257u + c->data[0] * 256u + c->data[1];
    return (c->flags == BTC_PUSH_DATA ? SMALL_N : 0) + v;
}

static int sort_visit(void *vctx, const cand *c)
{
    sort_ctx *x = vctx;
    const dedup_ctx *d = x->d;
    size_t ord = x->ord++;
    if (x->phase == 0) {
        if (c->len > 2 && !x->fallback) {
            if (x->n == x->cap) {
                size_t cap = x->cap ? x->cap * 2 : 1024;
                big_cand *nc = realloc(x->c, cap * sizeof(*nc));
                if (!nc) {
                    x->fallback = 1;
                    return 0;
                }
                x->c = nc;
                x->cap = cap;
            }
            x->c[x->n++] = (big_cand){(uint32_t)(c->data - d->script), (uint32_t)c->len, c->flags};
        }
        return 0;
    }
    bool dup;
    if (x->fallback) {
        cand target = *c;
        dup = ord >= SEEN_MAX && walk(d->script, d->len, d->kind, d->opts, find_dup, &target) == 1;
    } else if (c->len > 2) {
        dup = (x->c[x->next_big++].flags & DUP_BIT) != 0;
    } else {
        size_t bit = small_index(c);
        dup = (x->small_seen[bit / 8] >> (bit % 8)) & 1;
        x->small_seen[bit / 8] |= (uint8_t)(1u << (bit % 8));
    }
    /* the first SEEN_MAX candidates were handled by dedup_visit */
    if (dup || ord < SEEN_MAX)
        return 0;
    if (d->fn(d->fn_ctx, c->data, c->len, c->flags))
        return BTC_ERR_CALLBACK;
    x->yielded++;
    return 0;
}

/* Continues btc_script_pushes for a script with more than SEEN_MAX
 * candidates, whose first SEEN_MAX were de-duplicated and yielded by
 * dedup_visit (d->yielded of them). Returns what btc_script_pushes
 * returns. */
static int pushes_sorted(const dedup_ctx *d)
{
    sort_ctx x;
    memset(&x, 0, sizeof(x));
    x.d = d;
    x.yielded = d->yielded;
    CD_IGNORE(walk(d->script, d->len, d->kind, d->opts, sort_visit, &x)); /* collects */
    x.small_seen = x.fallback ? NULL : calloc(2 * SMALL_N / 8 + 1, 1);
    if (!x.small_seen)
        x.fallback = 1;
    if (!x.fallback && x.n > 1) {
        qsort_r(x.c, x.n, sizeof(*x.c), cmp_content, (void *)d->script);
        for (size_t i = 1; i < x.n; i++) {
            const big_cand *a = &x.c[i - 1], *b = &x.c[i];
            if ((a->flags & ~DUP_BIT) == b->flags && a->len == b->len &&
                memcmp(d->script + a->off, d->script + b->off, a->len) == 0)
                x.c[i].flags |= DUP_BIT;
        }
        qsort(x.c, x.n, sizeof(*x.c), cmp_off);
    }
    x.phase = 1;
    x.ord = 0;
    int r = walk(d->script, d->len, d->kind, d->opts, sort_visit, &x);
    free(x.small_seen);
    free(x.c);
    return r < 0 ? r : x.yielded;
}

int btc_script_pushes(const uint8_t *script, size_t len, unsigned kind, const btc_push_opts *opts,
                      btc_push_fn fn, void *ctx)
{
    int ret;
    if (pushes_template(script, len, kind, fn, ctx, &ret))
        return ret;
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
    if (r == SWITCH_TO_SORT)
        return pushes_sorted(&x);
    return r < 0 ? r : x.yielded;
}

/* Key output for both key helpers: records of `stride` bytes, the hash at
 * offset 0, flags at offset 32, and (tx keys) the item index at idx_off.
 * Hashes are queued and computed KEY_JOBS at a time by btc_sha256_many (two
 * interleaved lanes). */
#define KEY_JOBS 64

typedef struct keys_ctx {
    uint8_t *base;
    size_t stride, idx_off;
    size_t max, n;
    uint32_t index; /* input/output index of the current script */
    size_t n_jobs;
    btc_sha256_job jobs[KEY_JOBS];
} keys_ctx;

static void keys_flush(keys_ctx *k)
{
    btc_sha256_many(k->jobs, k->n_jobs);
    k->n_jobs = 0;
}

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
    btc_sha256_job *j = &k->jobs[k->n_jobs++];
    j->data = data;
    j->len = len;
    j->out = rec;
    j->twice = 0;
    if (k->n_jobs == KEY_JOBS)
        keys_flush(k);
    return 0;
}

static void keys_init(keys_ctx *k, void *keys, size_t stride, size_t idx_off, size_t max_keys)
{
    k->base = keys;
    k->stride = stride;
    k->idx_off = idx_off;
    k->max = max_keys;
    k->n = 0;
    k->index = 0;
    k->n_jobs = 0;
}

size_t btc_script_push_keys(const uint8_t *script, size_t len, unsigned kind,
                            const btc_push_opts *opts, btc_push_key *keys, size_t max_keys)
{
    keys_ctx k;
    keys_init(&k, keys, sizeof(*keys), 0, max_keys);
    /* key_visit never stops the scan (it counts past max_keys): the result is
     * only the count, which k.n holds too */
    CD_IGNORE(btc_script_pushes(script, len, kind, opts, key_visit, &k));
    keys_flush(&k);
    return k.n;
}

size_t btc_tx_push_keys(const btc_tx *tx, const btc_push_opts *opts, btc_tx_push_key *keys,
                        size_t max_keys)
{
    keys_ctx k;
    keys_init(&k, keys, sizeof(*keys), offsetof(btc_tx_push_key, index), max_keys);
    btc_tx_iter it;
    btc_txin in;
    btc_txout out;
    btc_tx_inputs(tx, &it);
    /* as above: key_visit never stops a scan; k.n counts */
    for (k.index = 0; btc_tx_next_input(&it, &in); k.index++)
        CD_IGNORE(btc_script_pushes(in.script, in.script_len, BTC_PUSH_INPUT, opts, key_visit, &k));
    btc_tx_outputs(tx, &it);
    for (k.index = 0; btc_tx_next_output(&it, &out); k.index++)
        CD_IGNORE(
            btc_script_pushes(out.script, out.script_len, BTC_PUSH_OUTPUT, opts, key_visit, &k));
    keys_flush(&k);
    return k.n;
}
