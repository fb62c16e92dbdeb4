/*
 * test_script.c - the pushdata rule, pinned to the expected keys in
 * shared/data/README.md (regtest wallet and data-carrier transactions,
 * the two mainnet transactions) and to the previous indexer's input keys
 * for mainnet block 413567; plus hostile scripts (truncation, dedup).
 */
#include "btc_testdata.h"

#include "btc_preproc.h"
#include "btc_script.h"
#include "btc_tx.h"

#define MAXK 64

/* Loads regtest block `height` and parses its tx at position `pos`. */
static uint8_t *load_tx(int height, int pos, btc_tx *tx)
{
    btc_td_chain c;
    btc_td_load_chain(&c, BTC_TD_CHAIN116);
    size_t len;
    uint8_t *blk = btc_td_block(&c, BTC_TD_CHAIN116, height, &len);
    uint64_t count;
    int pl = btc_block_prefix(blk, len, NULL, &count);
    ck_assert_int_gt(pl, 0);
    size_t p = (size_t)pl;
    for (int i = 0; i <= pos; i++) {
        ck_assert_int_eq(btc_tx_parse(tx, blk + p, len - p), 0);
        if (i < pos)
            p += tx->size;
    }
    return blk;
}

/* Keys of input (kind INPUT) or output (kind OUTPUT) number idx. */
static size_t item_keys(const btc_tx *tx, unsigned kind, uint32_t idx, const btc_push_opts *o,
                        btc_push_key *keys)
{
    btc_tx_iter it;
    if (kind == BTC_PUSH_INPUT) {
        btc_txin in;
        btc_tx_inputs(tx, &it);
        for (uint32_t k = 0; btc_tx_next_input(&it, &in); k++)
            if (k == idx)
                return btc_script_push_keys(in.script, in.script_len, kind, o, keys, MAXK);
    } else {
        btc_txout out;
        btc_tx_outputs(tx, &it);
        for (uint32_t k = 0; btc_tx_next_output(&it, &out); k++)
            if (k == idx)
                return btc_script_push_keys(out.script, out.script_len, kind, o, keys, MAXK);
    }
    ck_abort_msg("no item %u", idx);
    return 0;
}

static void key_hex(char out[65], const btc_push_key *k)
{
    cd_hex_encode(out, k->hash, 32);
}

/* The keys must be exactly the expected set (README tables are not always
 * in script order), each with `flags`. */
static void expect_keys(const btc_push_key *keys, size_t n, const char *const *hex, size_t m,
                        unsigned flags)
{
    ck_assert_uint_eq(n, m);
    for (size_t i = 0; i < m; i++) {
        int hits = 0;
        for (size_t j = 0; j < n; j++) {
            char h[65];
            key_hex(h, &keys[j]);
            if (strcmp(h, hex[i]) == 0) {
                hits++;
                ck_assert_uint_eq(keys[j].flags, flags);
            }
        }
        ck_assert_msg(hits == 1, "key %s found %d times", hex[i], hits);
    }
}

START_TEST(test_regtest_wallet_keys)
{
    btc_tx tx;
    btc_push_key k[MAXK];
    uint8_t *blk;

    blk = load_tx(111, 1, &tx); /* P2PKH output 0 */
    static const char *const e111[] = {
        "e351e4d2499786e8a3ac5468cbf1444b3416b41e424524b50e2dafc8f6f454db"};
    expect_keys(k, item_keys(&tx, BTC_PUSH_OUTPUT, 0, NULL, k), e111, 1, BTC_PUSH_OUTPUT);
    free(blk);

    blk = load_tx(112, 1, &tx); /* P2PK: find the output carrying the key */
    size_t found = 0;
    for (uint32_t o = 0; o < tx.n_outputs; o++) {
        size_t n = item_keys(&tx, BTC_PUSH_OUTPUT, o, NULL, k);
        for (size_t i = 0; i < n; i++) {
            char h[65];
            key_hex(h, &k[i]);
            if (strcmp(h, "04bca2ae277997940152716854a95347819c2e07d370d22c093b39708fb9d5eb") == 0)
                found++;
        }
    }
    ck_assert_uint_eq(found, 1);
    free(blk);

    blk = load_tx(113, 1, &tx); /* bare 1-of-2 multisig, output 2 */
    static const char *const e113[] = {
        "9ed50dfe0d3a28950ee9a2ee41dce7193dd8666c4ff42c974de1bde60332a701",
        "e6221c70e0f3c686255b548789c63d0e2c6aa795ad87324dfd71d0b53d90d59d"};
    expect_keys(k, item_keys(&tx, BTC_PUSH_OUTPUT, 2, NULL, k), e113, 2, BTC_PUSH_OUTPUT);
    free(blk);

    blk = load_tx(115, 1, &tx); /* input 1 pushes pubkey 03adc147... */
    static const char *const e115[] = {
        "44c55cbcb8222d6afd5adc5f72ec3fe2b6bbefad27f9c920805ebb9cb6a43de3"};
    expect_keys(k, item_keys(&tx, BTC_PUSH_INPUT, 1, NULL, k), e115, 1, BTC_PUSH_INPUT);
    /* input 0 spends a P2PK: only a signature, no key */
    ck_assert_uint_eq(item_keys(&tx, BTC_PUSH_INPUT, 0, NULL, k), 0);
    free(blk);

    blk = load_tx(115, 2, &tx); /* P2SH output 1 */
    static const char *const e115b[] = {
        "5e7583878789b03276d2d60a1cf3772a999084e3b12d0d3c1a33a30bd15609db"};
    expect_keys(k, item_keys(&tx, BTC_PUSH_OUTPUT, 1, NULL, k), e115b, 1, BTC_PUSH_OUTPUT);
    free(blk);
}
END_TEST

START_TEST(test_regtest_data_carriers)
{
    btc_tx tx;
    btc_push_key k[MAXK];
    uint8_t id[32];
    char hex[65];
    static const char *const e1[] = {
        "bceef655b5a034911f1c3718ce056531b45ef03b4c7b1f15629e867294011a7d",
        "bdd6af32ad29f75d8194247c3e960eea38711776a9ff4182356184fa86a00dd0",
        "a0920a708fa193ccb674b42e78c9ee20134faa007a83405db7219e916660cbfa",
        "5866ddbc19ad8479a492837f44bc0146537038070990ecad9ea5c6654a0a2d57",
        "6e851b79242aeb57c37a6ee64afcf6594d0c76c0429e46d6e8f934e180be72a5"};
    static const char *const e2[] = {
        "71189f7fb6aed638640078fba3a35fda6c39c8962e74dcc75935aac948da9063"};
    int seen = 0;
    for (int pos = 1; pos <= 2; pos++) {
        uint8_t *blk = load_tx(116, pos, &tx);
        btc_tx_txid(&tx, id);
        cd_hex_encode_rev(hex, id, 32);
        size_t n = item_keys(&tx, BTC_PUSH_OUTPUT, 0, NULL, k);
        if (strcmp(hex, "4723501d7ec5488d32e19a59cbdb11eed7b9bb99b681303614a6e8b763ba1ea6") == 0) {
            expect_keys(k, n, e1, 5, BTC_PUSH_DATA);
            /* limits and the switch */
            btc_push_opts o = btc_push_opts_default;
            o.data_min_len = 2;
            expect_keys(k, item_keys(&tx, BTC_PUSH_OUTPUT, 0, &o, k), e1 + 1, 4, BTC_PUSH_DATA);
            o = btc_push_opts_default;
            o.data_max_len = 255;
            expect_keys(k, item_keys(&tx, BTC_PUSH_OUTPUT, 0, &o, k), e1, 4, BTC_PUSH_DATA);
            o.data_enabled = 0;
            ck_assert_uint_eq(item_keys(&tx, BTC_PUSH_OUTPUT, 0, &o, k), 0);
            seen |= 1;
        } else {
            ck_assert_str_eq(hex,
                             "5be1d965952227b5ee45af715fc21bcc1723c37411a7dfd340845a23d73dd884");
            expect_keys(k, n, e2, 1, BTC_PUSH_DATA);
            seen |= 2;
        }
        free(blk);
    }
    ck_assert_int_eq(seen, 3);
}
END_TEST

static size_t count_flag(const btc_push_key *k, size_t n, unsigned flag)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += (k[i].flags & flag) != 0;
    return c;
}

START_TEST(test_mainnet_tx_output_keys)
{
    btc_push_key k[MAXK];
    btc_tx tx;
    size_t n;
    uint8_t *raw = btc_td_hex_file(
        "mainnet/tx/6370060cd55b046a87a72a4c07bffa1da52b3d12c227e795850b7d0ac68c203b.hex", &n);
    ck_assert_int_eq(btc_tx_parse(&tx, raw, n), 0);
    for (uint32_t o = 0; o < tx.n_outputs; o++) {
        size_t m = item_keys(&tx, BTC_PUSH_OUTPUT, o, NULL, k);
        ck_assert_uint_eq(count_flag(k, m, BTC_PUSH_OUTPUT), 0);
        if (o == 0)
            ck_assert_uint_gt(count_flag(k, m, BTC_PUSH_DATA), 0); /* its data pushes */
    }
    free(raw);
    raw = btc_td_hex_file(
        "mainnet/tx/bf88f55da5e4d000a08056d68ab6945077db2c5224512d088fbea57046de9e07.hex", &n);
    ck_assert_int_eq(btc_tx_parse(&tx, raw, n), 0);
    ck_assert_uint_eq(tx.n_outputs, 3);
    static const size_t expect[3] = {4, 1, 1};
    for (uint32_t o = 0; o < 3; o++) {
        size_t m = item_keys(&tx, BTC_PUSH_OUTPUT, o, NULL, k);
        ck_assert_uint_eq(count_flag(k, m, BTC_PUSH_OUTPUT), expect[o]);
    }
    free(raw);
}
END_TEST

START_TEST(test_block413567_input_keys)
{
    size_t len, n_exp;
    uint8_t *blk = cd_test_read_file(BTC_TD_BLOCK413567, &len);
    char **exp = btc_td_lines("mainnet/block413567.input-pushdata-sha256", &n_exp);
    size_t pos = 83, at = 0;
    btc_push_key k[MAXK];
    for (int t = 0; t < 1557; t++) {
        btc_tx tx;
        ck_assert_int_eq(btc_tx_parse(&tx, blk + pos, len - pos), 0);
        btc_tx_iter it;
        btc_txin in;
        btc_tx_inputs(&tx, &it);
        while (btc_tx_next_input(&it, &in)) {
            size_t m =
                btc_script_push_keys(in.script, in.script_len, BTC_PUSH_INPUT, NULL, k, MAXK);
            ck_assert_uint_le(m, MAXK);
            for (size_t i = 0; i < m; i++) {
                char h[65];
                cd_hex_encode_rev(h, k[i].hash, 32);
                ck_assert_uint_lt(at, n_exp);
                ck_assert_msg(strcmp(h, exp[at]) == 0, "tx %d key %zu: %s != %s", t, at, h,
                              exp[at]);
                ck_assert_uint_eq(k[i].flags, BTC_PUSH_INPUT);
                at++;
            }
        }
        pos += tx.size;
    }
    ck_assert_uint_eq(at, n_exp);
    ck_assert_uint_gt(n_exp, 3000);
    btc_td_free_lines(exp, n_exp);
    free(blk);
}
END_TEST

typedef struct rec {
    const uint8_t *d[600];
    size_t len[600];
    unsigned fl[600];
    size_t n;
} rec;

static int rec_fn(void *ctx, const uint8_t *data, size_t len, unsigned flags)
{
    rec *r = ctx;
    ck_assert_uint_lt(r->n, 600);
    r->d[r->n] = data;
    r->len[r->n] = len;
    r->fl[r->n] = flags;
    r->n++;
    return 0;
}

static int stop_fn(void *ctx, const uint8_t *data, size_t len, unsigned flags)
{
    (*(int *)ctx)++;
    return 1;
}

START_TEST(test_rule_details)
{
    uint8_t s[8192];
    size_t i = 0;
    rec r;
    /* <20> <PUSHDATA1 20> <33> OP_ELSE-less OP_RETURN <20> OP_ELSE <65> */
    s[i++] = 0x14;
    memset(s + i, 1, 20);
    i += 20;
    s[i++] = BTC_OP_PUSHDATA1; /* 20 bytes via PUSHDATA1: not a key */
    s[i++] = 20;
    memset(s + i, 2, 20);
    i += 20;
    s[i++] = 0x21;
    memset(s + i, 3, 33);
    i += 33;
    s[i++] = 0x20; /* 32 bytes: not a key */
    memset(s + i, 4, 32);
    i += 32;
    s[i++] = 0x14; /* duplicate of the first push */
    memset(s + i, 1, 20);
    i += 20;
    s[i++] = BTC_OP_RETURN;
    s[i++] = 0x14; /* same bytes, now data: different flags, kept */
    memset(s + i, 1, 20);
    i += 20;
    s[i++] = 0x51; /* OP_1: not a data push */
    s[i++] = BTC_OP_ELSE;
    s[i++] = 0x41;
    memset(s + i, 5, 65);
    i += 65;
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(btc_script_pushes(s, i, BTC_PUSH_OUTPUT, NULL, rec_fn, &r), 4);
    ck_assert_uint_eq(r.n, 4);
    ck_assert_uint_eq(r.len[0], 20);
    ck_assert_uint_eq(r.fl[0], BTC_PUSH_OUTPUT);
    ck_assert_ptr_eq(r.d[0], s + 1);
    ck_assert_uint_eq(r.len[1], 33);
    ck_assert_uint_eq(r.fl[1], BTC_PUSH_OUTPUT);
    ck_assert_uint_eq(r.len[2], 20);
    ck_assert_uint_eq(r.fl[2], BTC_PUSH_DATA);
    ck_assert_uint_eq(r.len[3], 65);
    ck_assert_uint_eq(r.fl[3], BTC_PUSH_OUTPUT);
    /* the same script as an input script: no DATA keys */
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(btc_script_pushes(s, i, BTC_PUSH_INPUT, NULL, rec_fn, &r), 3);
    ck_assert_uint_eq(r.fl[0] | r.fl[1] | r.fl[2], BTC_PUSH_INPUT);
    /* a callback can stop the walk */
    int calls = 0;
    ck_assert_int_eq(btc_script_pushes(s, i, BTC_PUSH_OUTPUT, NULL, stop_fn, &calls),
                     BTC_ERR_CALLBACK);
    ck_assert_int_eq(calls, 1);

    /* every truncation: never more keys than the whole, no OOB (ASan) */
    for (size_t cut = 0; cut <= i; cut++) {
        uint8_t *h = malloc(cut ? cut : 1);
        memcpy(h, s, cut);
        memset(&r, 0, sizeof(r));
        int n = btc_script_pushes(h, cut, BTC_PUSH_OUTPUT, NULL, rec_fn, &r);
        ck_assert_int_ge(n, 0);
        ck_assert_int_le(n, 4);
        /* pushes end at 21 (key), 43, 77 (key), 110, 131 (dup), 153 (data
         * key), then OP_1, OP_ELSE, and the 65-byte key ends at 221 */
        int want = (cut >= 21) + (cut >= 77) + (cut >= 153) + (cut >= 221);
        ck_assert_uint_eq(i, 221);
        ck_assert_int_eq(n, want);
        free(h);
    }

    /* PUSHDATA2/4 lengths running past the end, and a 4 GB PUSHDATA4 */
    static const uint8_t t1[] = {0x6a, 0x4d, 0xff};
    static const uint8_t t2[] = {0x6a, 0x4e, 0xff, 0xff, 0xff, 0xff, 0x00};
    static const uint8_t t3[] = {0x6a, 0x4c};
    ck_assert_int_eq(btc_script_pushes(t1, sizeof(t1), BTC_PUSH_OUTPUT, NULL, rec_fn, &r), 0);
    ck_assert_int_eq(btc_script_pushes(t2, sizeof(t2), BTC_PUSH_OUTPUT, NULL, rec_fn, &r), 0);
    ck_assert_int_eq(btc_script_pushes(t3, sizeof(t3), BTC_PUSH_OUTPUT, NULL, rec_fn, &r), 0);
}
END_TEST

START_TEST(test_dedup_beyond_table)
{
    /* OP_FALSE OP_RETURN then 500 one-byte pushes cycling over 50 values:
     * exactly 50 distinct keys, in first-occurrence order, even though the
     * de-dup table holds fewer */
    uint8_t s[2 + 1000];
    size_t i = 0;
    s[i++] = 0;
    s[i++] = BTC_OP_RETURN;
    for (int k = 0; k < 500; k++) {
        s[i++] = 1;
        s[i++] = (uint8_t)(k % 50);
    }
    rec r;
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(btc_script_pushes(s, i, BTC_PUSH_OUTPUT, NULL, rec_fn, &r), 50);
    for (int k = 0; k < 50; k++) {
        ck_assert_uint_eq(r.len[k], 1);
        ck_assert_uint_eq(r.d[k][0], (uint8_t)k);
        ck_assert_ptr_eq(r.d[k], s + 3 + 2 * k);
    }
    btc_push_key keys[8];
    ck_assert_uint_eq(btc_script_push_keys(s, i, BTC_PUSH_OUTPUT, NULL, keys, 8), 50);
}
END_TEST

/* Found by fuzz/fuzz_script (its slowest input took 15 s): past the 32-entry
 * table every candidate re-walked the script from its start, O(pushes x
 * bytes): 80,000 distinct 3-byte pushes (320 kB) took 26 s of CPU, a 10 MB
 * script (a standard-size tx) about 7 hours, stalling a parser worker or
 * the mempool. Here 200,000 distinct pushes (800 kB), then
 * repeats of some of them (not yielded again), and the same bytes as a key
 * outside the data region and as data inside it (two flags, both yielded).
 * Before the fix this test did not finish within Check's timeout. */
#define MANY 200000

typedef struct many_ctx {
    const uint8_t *expect[MANY + 2];
    size_t n, bad;
} many_ctx;

/* Counts mismatches (one ck_assert per push would cost a pipe write each
 * in Check's fork mode). */
static int many_fn(void *ctx, const uint8_t *data, size_t len, unsigned flags)
{
    many_ctx *m = ctx;
    if (m->n >= MANY + 2 || data != m->expect[m->n] || !(len == 3 || len == 20) ||
        flags != (m->n == 0 ? BTC_PUSH_OUTPUT : BTC_PUSH_DATA))
        m->bad++;
    m->n++;
    return 0;
}

START_TEST(test_dedup_many_distinct)
{
    size_t cap = 21 + 2 + 21 + (size_t)MANY * 4 + 1000 * 4 + 21;
    uint8_t *s = malloc(cap);
    many_ctx *m = calloc(1, sizeof(*m));
    ck_assert(s && m);
    size_t i = 0;
    s[i++] = 0x14; /* a 20-byte key outside the data region: OUTPUT */
    memset(s + i, 0xab, 20);
    m->expect[m->n++] = s + i;
    i += 20;
    s[i++] = 0;
    s[i++] = BTC_OP_RETURN;
    s[i++] = 0x14; /* the same bytes as data: DATA, a different key */
    memset(s + i, 0xab, 20);
    m->expect[m->n++] = s + i;
    i += 20;
    for (uint32_t k = 0; k < MANY; k++) {
        s[i++] = 3;
        s[i++] = (uint8_t)k;
        s[i++] = (uint8_t)(k >> 8);
        s[i++] = (uint8_t)(k >> 16);
        m->expect[m->n++] = s + i - 3;
    }
    for (uint32_t k = 0; k < 1000; k++) { /* repeats, near and far */
        uint32_t v = (k * 7919u) % MANY;
        s[i++] = 3;
        s[i++] = (uint8_t)v;
        s[i++] = (uint8_t)(v >> 8);
        s[i++] = (uint8_t)(v >> 16);
    }
    s[i++] = 0x14; /* the DATA push again */
    memset(s + i, 0xab, 20);
    i += 20;
    ck_assert_uint_le(i, cap);
    size_t want = m->n;
    m->n = 0;
    ck_assert_int_eq(btc_script_pushes(s, i, BTC_PUSH_OUTPUT, NULL, many_fn, m), (int)want);
    ck_assert_uint_eq(m->n, want);
    ck_assert_uint_eq(m->bad, 0);
    ck_assert_uint_eq(btc_script_push_keys(s, i, BTC_PUSH_OUTPUT, NULL, NULL, 0), want);
    free(m);
    free(s);
}
END_TEST

/* The rule of btc_script.h written plainly (default options), the
 * reference for btc_script_pushes and its template fast paths: one walk,
 * de-duplication by scanning everything selected before. */
static void ref_pushes(const uint8_t *s, size_t len, unsigned kind, rec *r)
{
    size_t i = 0;
    int data = 0;
    r->n = 0;
    while (i < len) {
        uint8_t op = s[i++];
        size_t n;
        if (op >= 1 && op <= 0x4b) {
            n = op;
        } else if (op == BTC_OP_PUSHDATA1 || op == BTC_OP_PUSHDATA2 || op == BTC_OP_PUSHDATA4) {
            size_t w = op == BTC_OP_PUSHDATA1 ? 1 : op == BTC_OP_PUSHDATA2 ? 2 : 4;
            if (len - i < w)
                return;
            n = 0;
            for (size_t b = 0; b < w; b++)
                n |= (size_t)s[i + b] << (8 * b);
            i += w;
        } else {
            if (op == BTC_OP_RETURN)
                data = 1;
            if (op == BTC_OP_ELSE)
                data = 0;
            continue;
        }
        if (n > len - i)
            return;
        unsigned fl = 0;
        if (!data && (op == 20 || op == 33 || op == 65))
            fl = kind;
        else if (data && kind == BTC_PUSH_OUTPUT && n >= 1)
            fl = BTC_PUSH_DATA;
        int dup = 0;
        for (size_t k = 0; fl && k < r->n && !dup; k++)
            dup = r->len[k] == n && r->fl[k] == fl && memcmp(r->d[k], s + i, n) == 0;
        if (fl && !dup) {
            ck_assert_uint_lt(r->n, 600);
            r->d[r->n] = s + i;
            r->len[r->n] = n;
            r->fl[r->n] = fl;
            r->n++;
        }
        i += n;
    }
}

/* btc_script_pushes == the reference on script s (both kinds). */
static void check_against_ref(const uint8_t *h, size_t len)
{
    static rec got, want;
    for (unsigned kind = BTC_PUSH_OUTPUT; kind <= BTC_PUSH_INPUT; kind++) {
        memset(&got, 0, sizeof(got));
        ref_pushes(h, len, kind, &want);
        int n = btc_script_pushes(h, len, kind, NULL, rec_fn, &got);
        ck_assert_int_eq(n, (int)want.n);
        ck_assert_uint_eq(got.n, want.n);
        for (size_t k = 0; k < got.n; k++) {
            ck_assert_ptr_eq(got.d[k], want.d[k]);
            ck_assert_uint_eq(got.len[k], want.len[k]);
            ck_assert_uint_eq(got.fl[k], want.fl[k]);
        }
    }
}

/* The standard templates (P2PKH and P2PK outputs, two-push input scripts)
 * take a fast path in btc_script_pushes: exact templates, every one-byte
 * mutation of them, one byte more or less, and equal key pushes must give
 * what the general rule gives. */
START_TEST(test_template_fast_paths)
{
    uint64_t seed = 4242;
    uint8_t s[2 + 0x4b + 0x4b + 2];
    static const uint8_t vals[] = {0x00, 0x01, 0x14, 0x21, 0x41, 0x47, 0x48, 0x4b, 0x4c,
                                   0x4d, 0x4e, 0x4f, 0x67, 0x6a, 0x76, 0x88, 0xa9, 0xac};
    for (int tmpl = 0; tmpl < 3; tmpl++) {
        size_t len;
        for (size_t k = 0; k < sizeof(s); k++)
            s[k] = (uint8_t)btc_td_rand(&seed);
        if (tmpl == 0) { /* OP_DUP OP_HASH160 <20> OP_EQUALVERIFY OP_CHECKSIG */
            len = 25;
            s[0] = 0x76;
            s[1] = 0xa9;
            s[2] = 0x14;
            s[23] = 0x88;
            s[24] = 0xac;
        } else { /* <33|65> OP_CHECKSIG */
            len = tmpl == 1 ? 35 : 67;
            s[0] = (uint8_t)(len - 2);
            s[len - 1] = 0xac;
        }
        check_against_ref(s, len);
        ck_assert_uint_eq(btc_script_pushes(s, len, BTC_PUSH_OUTPUT, NULL, rec_fn, &(rec){.n = 0}),
                          1);
        check_against_ref(s, len - 1);
        check_against_ref(s, len + 1);
        for (size_t at = 0; at < len; at++) {
            uint8_t keep = s[at];
            for (size_t v = 0; v < sizeof(vals); v++) {
                s[at] = vals[v];
                check_against_ref(s, len);
            }
            s[at] = keep;
        }
    }
    /* input scripts of two direct pushes: every pair of lengths drawn from
     * keys, signatures and neighbours, distinct and equal contents, exact
     * and with a byte missing or added */
    static const uint8_t lens[] = {1, 19, 20, 21, 32, 33, 34, 64, 65, 66, 71, 72, 73, 0x4b};
    for (size_t a = 0; a < sizeof(lens); a++) {
        for (size_t b = 0; b < sizeof(lens); b++) {
            for (int same = 0; same < 2; same++) {
                size_t n1 = lens[a], n2 = lens[b];
                for (size_t k = 0; k < sizeof(s); k++)
                    s[k] = (uint8_t)btc_td_rand(&seed);
                s[0] = (uint8_t)n1;
                s[1 + n1] = (uint8_t)n2;
                if (same && n1 == n2)
                    memcpy(s + 2 + n1, s + 1, n1);
                size_t len = 2 + n1 + n2;
                check_against_ref(s, len);
                check_against_ref(s, len - 1);
                check_against_ref(s, len + 1);
                s[0] = 0x4c; /* PUSHDATA1 instead: the general walk */
                check_against_ref(s, len);
            }
        }
    }
    /* equal keys are one key */
    s[0] = 33;
    memset(s + 1, 7, 33);
    s[34] = 33;
    memset(s + 35, 7, 33);
    rec r;
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(btc_script_pushes(s, 68, BTC_PUSH_INPUT, NULL, rec_fn, &r), 1);
    /* a callback stopping the walk stops the fast path too */
    int calls = 0;
    s[34] = 20;
    ck_assert_int_eq(btc_script_pushes(s, 55, BTC_PUSH_INPUT, NULL, stop_fn, &calls),
                     BTC_ERR_CALLBACK);
    ck_assert_int_eq(calls, 1);
}
END_TEST

START_TEST(test_random_scripts)
{
    uint64_t seed = 777;
    rec r;
    for (int iter = 0; iter < 100000; iter++) {
        size_t len = btc_td_rand(&seed) % 200;
        uint8_t *h = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++) {
            uint64_t x = btc_td_rand(&seed);
            /* bias towards interesting opcodes */
            static const uint8_t ops[] = {0x14, 0x21, 0x41, 0x4c, 0x4d, 0x4e, 0x6a, 0x67, 0x00};
            h[i] = (x & 3) ? (uint8_t)(x >> 8) : ops[(x >> 8) % sizeof(ops)];
        }
        memset(&r, 0, sizeof(r));
        int n = btc_script_pushes(h, len, iter & 1 ? BTC_PUSH_INPUT : BTC_PUSH_OUTPUT, NULL, rec_fn,
                                  &r);
        ck_assert_int_ge(n, 0);
        for (size_t k = 0; k < r.n; k++) {
            ck_assert(r.d[k] >= h && r.d[k] + r.len[k] <= h + len);
            for (size_t j = 0; j < k; j++)
                ck_assert(!(r.len[j] == r.len[k] && r.fl[j] == r.fl[k] &&
                            memcmp(r.d[j], r.d[k], r.len[k]) == 0));
        }
        if (iter % 10 == 0)
            check_against_ref(h, len);
        free(h);
    }
}
END_TEST

/* btc_tx_push_keys == the per-script keys concatenated (inputs then
 * outputs), with indices, over every tx of block 413567 and block 116. */
static void check_tx_keys(const btc_tx *tx)
{
    static btc_tx_push_key tk[4096];
    static btc_push_key sk[4096];
    size_t n = btc_tx_push_keys(tx, NULL, tk, 4096);
    ck_assert_uint_le(n, 4096);
    size_t at = 0;
    btc_tx_iter it;
    btc_txin in;
    btc_txout out;
    btc_tx_inputs(tx, &it);
    for (uint32_t i = 0; btc_tx_next_input(&it, &in); i++) {
        size_t m = btc_script_push_keys(in.script, in.script_len, BTC_PUSH_INPUT, NULL, sk, 4096);
        for (size_t j = 0; j < m; j++, at++) {
            ck_assert_uint_lt(at, n);
            ck_assert_mem_eq(tk[at].hash, sk[j].hash, 32);
            ck_assert_uint_eq(tk[at].flags, sk[j].flags);
            ck_assert_uint_eq(tk[at].index, i);
        }
    }
    btc_tx_outputs(tx, &it);
    for (uint32_t i = 0; btc_tx_next_output(&it, &out); i++) {
        size_t m =
            btc_script_push_keys(out.script, out.script_len, BTC_PUSH_OUTPUT, NULL, sk, 4096);
        for (size_t j = 0; j < m; j++, at++) {
            ck_assert_uint_lt(at, n);
            ck_assert_mem_eq(tk[at].hash, sk[j].hash, 32);
            ck_assert_uint_eq(tk[at].flags, sk[j].flags);
            ck_assert_uint_eq(tk[at].index, i);
        }
    }
    ck_assert_uint_eq(at, n);
    /* a short array gets a prefix and the full count */
    if (n > 1) {
        btc_tx_push_key few[1];
        ck_assert_uint_eq(btc_tx_push_keys(tx, NULL, few, 1), n);
        ck_assert_mem_eq(few[0].hash, tk[0].hash, 32);
    }
}

START_TEST(test_tx_keys_match_script_keys)
{
    size_t len;
    uint8_t *blk = cd_test_read_file(BTC_TD_BLOCK413567, &len);
    size_t pos = 83;
    for (int t = 0; t < 1557; t++) {
        btc_tx tx;
        ck_assert_int_eq(btc_tx_parse(&tx, blk + pos, len - pos), 0);
        check_tx_keys(&tx);
        pos += tx.size;
    }
    free(blk);
    for (int p = 0; p <= 2; p++) {
        btc_tx tx;
        blk = load_tx(116, p, &tx);
        check_tx_keys(&tx);
        free(blk);
    }
}
END_TEST

static Suite *suite_script(void)
{
    Suite *s = suite_create("bitcoin_script");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_regtest_wallet_keys);
    tcase_add_test(tc, test_regtest_data_carriers);
    tcase_add_test(tc, test_mainnet_tx_output_keys);
    tcase_add_test(tc, test_block413567_input_keys);
    tcase_add_test(tc, test_tx_keys_match_script_keys);
    tcase_add_test(tc, test_rule_details);
    tcase_add_test(tc, test_dedup_beyond_table);
    tcase_add_test(tc, test_dedup_many_distinct);
    tcase_add_test(tc, test_random_scripts);
    tcase_add_test(tc, test_template_fast_paths);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_script)
