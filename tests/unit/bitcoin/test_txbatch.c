/*
 * test_txbatch.c - batched parsing and hashing (btc_txbatch.h) gives what
 * the per-transaction calls give: block 413567's txids (pinned to the
 * shared data) and every key of every tx, with SHA-NI and without; batch
 * limits (tx count, key capacity, a transaction with more keys than a batch
 * holds); malformed bytes after good transactions.
 */
#include "btc_testdata.h"

#include "btc_script.h"
#include "btc_sha256.h"
#include "btc_tx.h"
#include "btc_txbatch.h"

/* btc_txb_tx t (of batch b) == btc_tx_parse + btc_tx_txid +
 * btc_tx_push_keys of the same bytes. */
static void check_tx(const btc_txb *b, const btc_txb_tx *t, const uint8_t *raw, size_t len)
{
    static btc_tx_push_key want[8192];
    btc_tx tx;
    ck_assert_int_eq(btc_tx_parse(&tx, raw, len), 0);
    ck_assert_ptr_eq(t->tx.raw, raw);
    ck_assert_uint_eq(t->tx.size, tx.size);
    uint8_t id[32];
    if (b->what & BTC_TXB_TXID) {
        btc_tx_txid(&tx, id);
        ck_assert_mem_eq(t->txid, id, 32);
    }
    if (!(b->what & BTC_TXB_KEYS)) {
        ck_assert_uint_eq(t->n_keys, 0);
        return;
    }
    size_t n = btc_tx_push_keys(&tx, b->opts, want, CD_ARRAY_LEN(want));
    ck_assert_uint_le(n, CD_ARRAY_LEN(want));
    if (t->keys_streamed) {
        ck_assert_uint_gt(n, BTC_TXB_MAX_KEYS);
        ck_assert_uint_eq(t->n_keys, 0);
        return;
    }
    ck_assert_uint_eq(t->n_keys, n);
    ck_assert_uint_le(t->first_key + t->n_keys, b->n_keys);
    for (size_t k = 0; k < n; k++) {
        const btc_tx_push_key *g = &b->keys[t->first_key + k];
        ck_assert_mem_eq(g->hash, want[k].hash, 32);
        ck_assert_uint_eq(g->flags, want[k].flags);
        ck_assert_uint_eq(g->index, want[k].index);
    }
}

/* Runs batches over buf; checks every tx; returns the tx count and the
 * number of streamed txs in *streamed. */
static size_t run_batches(const uint8_t *buf, size_t len, unsigned what, size_t max_txs,
                          size_t *streamed)
{
    static btc_txb b;
    btc_push_opts o = btc_push_opts_default;
    btc_txb_init(&b, what, &o);
    size_t off = 0, ntx = 0;
    *streamed = 0;
    while (off < len) {
        size_t used = 99;
        int n = btc_txb_fill(&b, buf + off, len - off, max_txs, &used);
        ck_assert_int_gt(n, 0);
        ck_assert_uint_eq((size_t)n, b.n_txs);
        if (max_txs)
            ck_assert_uint_le((size_t)n, max_txs);
        ck_assert_uint_le((size_t)n, BTC_TXB_MAX_TXS);
        ck_assert_uint_le(b.n_keys, BTC_TXB_MAX_KEYS);
        size_t at = 0;
        for (int t = 0; t < n; t++) {
            ck_assert_uint_eq(b.txs[t].offset, at);
            check_tx(&b, &b.txs[t], buf + off + at, len - off - at);
            *streamed += (size_t)b.txs[t].keys_streamed;
            if (b.txs[t].keys_streamed)
                ck_assert_int_eq(n, 1); /* a batch of its own */
            at += b.txs[t].tx.size;
        }
        ck_assert_uint_eq(used, at);
        off += used;
        ntx += (size_t)n;
    }
    return ntx;
}

START_TEST(test_block413567)
{
    size_t len, nids;
    uint8_t *blk = cd_test_read_file(BTC_TD_BLOCK413567, &len);
    char **ids = btc_td_lines("mainnet/block413567.txids", &nids);
    ck_assert_uint_eq(nids, 1557);
    for (int accel = 1; accel >= 0; accel--) {
        btc_sha256_set_accel(accel);
        /* txids against the independent list */
        static btc_txb b;
        btc_txb_init(&b, BTC_TXB_TXID | BTC_TXB_KEYS, NULL);
        size_t off = 83, t = 0;
        while (off < len) {
            size_t used;
            int n = btc_txb_fill(&b, blk + off, len - off, 0, &used);
            ck_assert_int_gt(n, 0);
            for (int k = 0; k < n; k++, t++) {
                char hex[65];
                cd_hex_encode_rev(hex, b.txs[k].txid, 32);
                ck_assert_str_eq(hex, ids[t]);
            }
            off += used;
        }
        ck_assert_uint_eq(t, 1557);
        /* everything against the per-tx calls, several batch shapes */
        size_t streamed;
        ck_assert_uint_eq(
            run_batches(blk + 83, len - 83, BTC_TXB_TXID | BTC_TXB_KEYS, 0, &streamed), 1557);
        ck_assert_uint_gt(streamed, 0); /* the block has a tx with > 128 keys */
        ck_assert_uint_eq(
            run_batches(blk + 83, len - 83, BTC_TXB_TXID | BTC_TXB_KEYS, 7, &streamed), 1557);
        ck_assert_uint_eq(run_batches(blk + 83, len - 83, BTC_TXB_TXID, 0, &streamed), 1557);
        ck_assert_uint_eq(streamed, 0);
        ck_assert_uint_eq(run_batches(blk + 83, len - 83, BTC_TXB_KEYS, 1, &streamed), 1557);
        ck_assert_uint_eq(run_batches(blk + 83, len - 83, 0, 0, &streamed), 1557);
    }
    btc_sha256_set_accel(1);
    btc_td_free_lines(ids, nids);
    free(blk);
}
END_TEST

/* Appends a tx with one P2PKH-style input (<72 sig> <33 pubkey>) and
 * n_out P2PKH outputs: 1 + n_out distinct keys. Returns its size. */
static size_t gen_tx(uint8_t *p, size_t n_out, uint64_t *seed)
{
    uint8_t *s = p;
    cd_put_le32(p, 1);
    p += 4;
    *p++ = 1;
    for (int i = 0; i < 36; i++)
        *p++ = (uint8_t)btc_td_rand(seed);
    *p++ = 107;
    *p++ = 72;
    for (int i = 0; i < 72; i++)
        *p++ = (uint8_t)btc_td_rand(seed);
    *p++ = 33;
    for (int i = 0; i < 33; i++)
        *p++ = (uint8_t)btc_td_rand(seed);
    cd_put_le32(p, 0xffffffff);
    p += 4;
    ck_assert_uint_lt(n_out, 0xfd);
    *p++ = (uint8_t)n_out;
    for (size_t o = 0; o < n_out; o++) {
        cd_put_le64(p, o);
        p += 8;
        *p++ = 25;
        *p++ = 0x76;
        *p++ = 0xa9;
        *p++ = 0x14;
        for (int i = 0; i < 20; i++)
            *p++ = (uint8_t)btc_td_rand(seed);
        *p++ = 0x88;
        *p++ = 0xac;
    }
    cd_put_le32(p, 0);
    p += 4;
    return (size_t)(p - s);
}

START_TEST(test_key_capacity)
{
    uint64_t seed = 5;
    uint8_t *buf = malloc(1 << 20);
    static btc_txb b;
    btc_txb_init(&b, BTC_TXB_TXID | BTC_TXB_KEYS, NULL);
    size_t used, len = 0;
    /* 40 keys each: three fit (120), the fourth starts the next batch */
    for (int t = 0; t < 5; t++)
        len += gen_tx(buf + len, 39, &seed);
    ck_assert_int_eq(btc_txb_fill(&b, buf, len, 0, &used), 3);
    ck_assert_uint_eq(b.n_keys, 120);
    ck_assert_int_eq(btc_txb_fill(&b, buf + used, len - used, 0, &used), 2);
    /* exactly BTC_TXB_MAX_KEYS keys: batched; one more: streamed */
    size_t streamed;
    len = gen_tx(buf, BTC_TXB_MAX_KEYS - 1, &seed);
    len += gen_tx(buf + len, BTC_TXB_MAX_KEYS, &seed);
    len += gen_tx(buf + len, 1, &seed);
    len += gen_tx(buf + len, 200, &seed);
    ck_assert_int_eq(btc_txb_fill(&b, buf, len, 0, &used), 1);
    ck_assert_int_eq(b.txs[0].keys_streamed, 0);
    ck_assert_uint_eq(b.n_keys, BTC_TXB_MAX_KEYS);
    size_t off = used;
    ck_assert_int_eq(btc_txb_fill(&b, buf + off, len - off, 0, &used), 1);
    ck_assert_int_eq(b.txs[0].keys_streamed, 1);
    ck_assert_uint_eq(b.n_keys, 0);
    off += used;
    ck_assert_int_eq(btc_txb_fill(&b, buf + off, len - off, 0, &used), 1); /* then 200 */
    ck_assert_int_eq(b.txs[0].keys_streamed, 0);
    ck_assert_uint_eq(b.n_keys, 2);
    ck_assert_uint_eq(run_batches(buf, len, BTC_TXB_TXID | BTC_TXB_KEYS, 0, &streamed), 4);
    ck_assert_uint_eq(streamed, 2);
    /* many small txs: full batches of BTC_TXB_MAX_TXS */
    len = 0;
    for (int t = 0; t < 100; t++)
        len += gen_tx(buf + len, 2, &seed);
    ck_assert_int_eq(btc_txb_fill(&b, buf, len, 0, &used), BTC_TXB_MAX_TXS);
    ck_assert_uint_eq(b.n_keys, 3 * BTC_TXB_MAX_TXS);
    ck_assert_int_eq(btc_txb_fill(&b, buf, len, 1000, &used), BTC_TXB_MAX_TXS);
    ck_assert_int_eq(btc_txb_fill(&b, buf, len, 5, &used), 5);
    ck_assert_uint_eq(run_batches(buf, len, BTC_TXB_TXID | BTC_TXB_KEYS, 0, &streamed), 100);
    free(buf);
}
END_TEST

START_TEST(test_malformed)
{
    size_t len;
    uint8_t *blk = cd_test_read_file(BTC_TD_BLOCK413567, &len);
    static btc_txb b;
    btc_txb_init(&b, BTC_TXB_TXID | BTC_TXB_KEYS, NULL);
    size_t used = 99;
    ck_assert_int_eq(btc_txb_fill(&b, blk + 83, 0, 0, &used), 0);
    ck_assert_uint_eq(used, 0);
    /* txs start at 83, 268, 494: cut inside the third */
    const uint8_t *p = blk + 83;
    size_t cut = 494 + 10 - 83;
    ck_assert_int_eq(btc_txb_fill(&b, p, cut, 0, &used), 2);
    ck_assert_uint_eq(used, 494 - 83);
    ck_assert_int_eq(btc_txb_fill(&b, p + used, cut - used, 0, &used), BTC_ERR_TRUNCATED);
    ck_assert_uint_eq(used, 0);
    /* a bad first tx: its error, nothing else */
    uint8_t bad[] = {1, 0, 0, 0, 0 /* no inputs */, 0, 0, 0, 0, 0};
    ck_assert_int_lt(btc_txb_fill(&b, bad, sizeof(bad), 0, &used), 0);
    free(blk);
}
END_TEST

static Suite *suite_txbatch(void)
{
    Suite *s = suite_create("bitcoin_txbatch");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_block413567);
    tcase_add_test(tc, test_key_capacity);
    tcase_add_test(tc, test_malformed);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_txbatch)
