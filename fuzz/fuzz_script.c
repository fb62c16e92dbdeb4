/*
 * fuzz_script.c - libFuzzer target for the script scanner (the pushdata
 * rule, btc_script) and the rows it becomes (cd_rows, src/index).
 *
 * Input: one control byte (data-push options), then bytes used three ways:
 * as an output script and as an input script, as one transaction, and as a
 * unit of transactions back to back. Oracles:
 *  - every push the walker yields lies inside the script, carries exactly
 *    one kind flag allowed for the script's kind, respects the length
 *    options, and no (bytes, flags) pair is yielded twice per script;
 *  - btc_script_push_keys gives the same count and, key for key,
 *    sha256(pushed bytes) with the same flags, also when its array is too
 *    small (snprintf rule);
 *  - for a transaction, btc_tx_push_keys (batched hashing) equals the
 *    per-script keys of every input then every output, and
 *    cd_rows_parse_tx_pushes (streamed hashing) reports the same keys;
 *  - cd_rows_parse_unit over a run of transactions reports one tx row per
 *    transaction the preprocessor finds, with txid = sha256d(bytes), the
 *    right offset and size, an input row for each non-null outpoint and the
 *    same push keys as the per-transaction path, in order.
 *
 * Built only with -Dfuzz=true and clang (scripts/fuzz.sh).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "btc_preproc.h"
#include "btc_script.h"
#include "btc_sha256.h"
#include "btc_tx.h"
#include "cd_rows.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define MAX_PUSH 4096

typedef struct push_rec {
    const uint8_t *data;
    size_t len;
    unsigned flags;
} push_rec;

typedef struct walk_ctx {
    const uint8_t *script;
    size_t len;
    unsigned kind;
    const btc_push_opts *opts;
    push_rec *recs;
    size_t n;
} walk_ctx;

static push_rec recs[MAX_PUSH];
static btc_push_key keys[MAX_PUSH];

static int on_push(void *vctx, const uint8_t *d, size_t len, unsigned flags)
{
    walk_ctx *c = vctx;
    CHECK(d >= c->script && len <= c->len && d + len <= c->script + c->len);
    if (flags == BTC_PUSH_DATA) {
        CHECK(c->kind == BTC_PUSH_OUTPUT && c->opts->data_enabled);
        CHECK(len >= c->opts->data_min_len && len <= c->opts->data_max_len);
    } else {
        CHECK(flags == c->kind);
        CHECK(len == 20 || len == 33 || len == 65);
    }
    for (size_t i = 0; i < c->n; i++)
        CHECK(!(c->recs[i].flags == flags && c->recs[i].len == len &&
                memcmp(c->recs[i].data, d, len) == 0));
    if (c->n == MAX_PUSH)
        return 1; /* stop: more pushes than the oracle keeps */
    c->recs[c->n++] = (push_rec){d, len, flags};
    return 0;
}

/* Checks one script; returns its key count (or SIZE_MAX if too many to
 * check). */
static size_t check_script(const uint8_t *s, size_t len, unsigned kind, const btc_push_opts *o)
{
    walk_ctx c = {s, len, kind, o ? o : &btc_push_opts_default, recs, 0};
    int n = btc_script_pushes(s, len, kind, o, on_push, &c);
    if (n == BTC_ERR_CALLBACK)
        return SIZE_MAX;
    CHECK(n >= 0 && (size_t)n == c.n);
    size_t nk = btc_script_push_keys(s, len, kind, o, keys, MAX_PUSH);
    CHECK(nk == c.n);
    for (size_t i = 0; i < nk; i++) {
        uint8_t h[32];
        btc_sha256(h, recs[i].data, recs[i].len);
        CHECK(memcmp(h, keys[i].hash, 32) == 0 && keys[i].flags == recs[i].flags);
    }
    if (nk > 1) { /* a short array: the same count, the same first key */
        btc_push_key one;
        CHECK(btc_script_push_keys(s, len, kind, o, &one, 1) == nk);
        CHECK(memcmp(&one, &keys[0], sizeof(one)) == 0);
    }
    return nk;
}

/* ---- per-transaction oracle ---- */

typedef struct row_push {
    uint32_t tx_pos, idx;
    unsigned flags;
    uint8_t key[32];
} row_push;

typedef struct rows_ctx {
    row_push *p;
    size_t n, cap;
    uint32_t n_tx, n_in;
    const uint8_t *unit;
    size_t unit_len;
    uint64_t expect_off;
} rows_ctx;

static void rows_push(void *vctx, uint32_t tx_pos, uint32_t idx, unsigned flags,
                      const uint8_t key[32])
{
    rows_ctx *c = vctx;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        c->p = realloc(c->p, c->cap * sizeof(*c->p));
        CHECK(c->p != NULL);
    }
    row_push *r = &c->p[c->n++];
    r->tx_pos = tx_pos;
    r->idx = idx;
    r->flags = flags;
    memcpy(r->key, key, 32);
}

static void rows_tx(void *vctx, uint32_t tx_pos, const uint8_t txid[32], uint64_t offset,
                    uint32_t size)
{
    rows_ctx *c = vctx;
    CHECK(tx_pos == c->n_tx && offset == c->expect_off);
    CHECK(offset + size <= c->unit_len);
    int64_t sk = btc_tx_skip(c->unit + offset, c->unit_len - offset);
    CHECK(sk == (int64_t)size);
    uint8_t h[32];
    btc_sha256d(h, c->unit + offset, size);
    CHECK(memcmp(h, txid, 32) == 0);
    c->n_tx++;
    c->expect_off += size;
}

static void rows_input(void *vctx, uint32_t tx_pos, uint32_t in_idx, const uint8_t prev[32],
                       uint32_t prev_idx)
{
    rows_ctx *c = vctx;
    CHECK(tx_pos + 1 == c->n_tx);
    static const uint8_t zero[32];
    CHECK(!(prev_idx == 0xFFFFFFFFu && memcmp(prev, zero, 32) == 0));
    (void)in_idx;
    c->n_in++;
}

static btc_tx_push_key txkeys[MAX_PUSH];

/* Keys of tx through btc_tx_push_keys vs per-script keys vs cd_rows. */
static void check_tx(const btc_tx *tx, const btc_push_opts *po, const cd_rows_opts *ro)
{
    size_t nk = btc_tx_push_keys(tx, po, txkeys, MAX_PUSH);
    size_t k = 0, total = 0;
    btc_tx_iter it;
    btc_txin in;
    btc_txout out;
    btc_tx_inputs(tx, &it);
    for (uint32_t i = 0; btc_tx_next_input(&it, &in); i++) {
        size_t n = check_script(in.script, in.script_len, BTC_PUSH_INPUT, po);
        if (n == SIZE_MAX)
            return;
        for (size_t j = 0; j < n; j++, k++) {
            if (k < MAX_PUSH && k < nk)
                CHECK(txkeys[k].index == i && txkeys[k].flags == keys[j].flags &&
                      memcmp(txkeys[k].hash, keys[j].hash, 32) == 0);
        }
        total += n;
    }
    btc_tx_outputs(tx, &it);
    for (uint32_t i = 0; btc_tx_next_output(&it, &out); i++) {
        size_t n = check_script(out.script, out.script_len, BTC_PUSH_OUTPUT, po);
        if (n == SIZE_MAX)
            return;
        for (size_t j = 0; j < n; j++, k++) {
            if (k < MAX_PUSH && k < nk)
                CHECK(txkeys[k].index == i && txkeys[k].flags == keys[j].flags &&
                      memcmp(txkeys[k].hash, keys[j].hash, 32) == 0);
        }
        total += n;
    }
    CHECK(total == nk);

    rows_ctx rc = {0};
    cd_rows_sink sink = {&rc, NULL, NULL, rows_push};
    long r = cd_rows_parse_tx_pushes(tx->raw, tx->size, 7, ro, &sink);
    CHECK(r == (long)tx->size && rc.n == nk);
    for (size_t i = 0; i < rc.n && i < MAX_PUSH; i++)
        CHECK(rc.p[i].tx_pos == 7 && rc.p[i].idx == txkeys[i].index &&
              rc.p[i].flags == txkeys[i].flags && memcmp(rc.p[i].key, txkeys[i].hash, 32) == 0);
    free(rc.p);
}

/* A unit: cd_rows_parse_unit against the preprocessor and check_tx. */
static void check_unit(const uint8_t *p, size_t len, const btc_push_opts *po,
                       const cd_rows_opts *ro)
{
    rows_ctx rc = {0};
    rc.unit = p;
    rc.unit_len = len;
    cd_rows_sink sink = {&rc, rows_tx, rows_input, rows_push};
    size_t consumed = 0;
    long r = cd_rows_parse_unit(p, len, 0, 0, 0, ro, &sink, &consumed);

    size_t cap = len / BTC_TX_MIN_SIZE + 1, n_scan = 0, scanned = 0;
    uint64_t *off = malloc(cap * sizeof(*off));
    CHECK(off != NULL);
    int sr = btc_preproc_scan(p, len, 0, off, cap, &n_scan, &scanned);
    if (r >= 0) {
        CHECK(sr == 0 && scanned == len && consumed == len && (size_t)r == n_scan);
    } else {
        CHECK(r == CD_ROWS_EMALFORMED && (sr != 0 || scanned < len));
        CHECK(rc.n_tx <= n_scan);
    }
    CHECK(rc.n_tx == (r >= 0 ? (uint32_t)r : rc.n_tx));
    /* the push rows of every reported tx, in order, are its keys */
    size_t at = 0;
    for (uint32_t t = 0; t < rc.n_tx; t++) {
        btc_tx tx;
        CHECK(btc_tx_parse(&tx, p + off[t], len - off[t]) == 0);
        size_t nk = btc_tx_push_keys(&tx, po, txkeys, MAX_PUSH);
        for (size_t i = 0; i < nk; i++, at++) {
            CHECK(at < rc.n && rc.p[at].tx_pos == t);
            if (i < MAX_PUSH)
                CHECK(rc.p[at].idx == txkeys[i].index && rc.p[at].flags == txkeys[i].flags &&
                      memcmp(rc.p[at].key, txkeys[i].hash, 32) == 0);
        }
    }
    CHECK(at == rc.n);
    free(off);
    free(rc.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    const uint8_t *p = data + 1;
    size_t len = size - 1;

    static const size_t mins[4] = {1, 0, 20, 76};
    static const size_t maxs[4] = {SIZE_MAX, 0, 32, 255};
    btc_push_opts po = btc_push_opts_default;
    po.data_enabled = ctl & 1;
    po.data_min_len = mins[(ctl >> 1) & 3];
    po.data_max_len = maxs[(ctl >> 3) & 3];
    if (po.data_max_len == 0)
        po.data_max_len = po.data_min_len; /* exactly one length */

    (void)check_script(p, len, BTC_PUSH_OUTPUT, &po);
    (void)check_script(p, len, BTC_PUSH_INPUT, &po);
    (void)check_script(p, len, BTC_PUSH_OUTPUT, NULL);

    /* cd_rows' options map onto the walker's: min 1, max (0 = none) */
    cd_rows_opts ro = {ctl & 1, (ctl >> 5) & 1 ? 255 : 0};
    btc_push_opts rpo = btc_push_opts_default;
    rpo.data_enabled = ro.data_pushes;
    if (ro.data_max_len)
        rpo.data_max_len = ro.data_max_len;

    btc_tx tx;
    if (btc_tx_parse(&tx, p, len) == 0)
        check_tx(&tx, &rpo, &ro);
    check_unit(p, len, &rpo, &ro);
    return 0;
}
