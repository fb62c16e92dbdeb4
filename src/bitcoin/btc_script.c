/*
 * btc_script.c - the pushdata rule (see btc_script.h for the rule itself).
 *
 * Lets the index answer "which transactions pay to / spend from this key
 * or carry this data" by the sha256 of pushed bytes. The standard templates
 * (P2PKH/P2PK outputs, <sig> <pubkey> inputs: nearly every script on chain)
 * are recognised first and need no walk. Otherwise the walk is a single
 * pass; de-duplication keeps the first few candidates in a stack table and,
 * for scripts with more candidates than that (large data carriers), checks a
 * new candidate by re-walking the script up to its position, so no memory is
 * ever allocated.
 */
#include "btc_script.h"

#include "btc_tx.h"

#include "btc_sha256.h"
#include "cd_util.h"

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
