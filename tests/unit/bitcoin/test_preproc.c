/*
 * test_preproc.c - the transaction boundary finder: real block offsets,
 * arbitrary split points, bounded output, malformed and hostile input.
 * Runs under ASan in CI: windows are copied into exact-size heap buffers so
 * any read outside the bytes handed over is caught.
 */
#include "btc_testdata.h"

#include "btc_preproc.h"
#include "btc_tx.h"
#include "btc_varint.h"

static uint8_t *g_blk;
static size_t g_len;
static uint64_t *g_expect;
static size_t g_n;

static void load_block(void)
{
    g_blk = cd_test_read_file(BTC_TD_BLOCK413567, &g_len);
    size_t n;
    char **lines = btc_td_lines("mainnet/block413567.tx-offsets", &n);
    g_expect = malloc(n * sizeof(*g_expect));
    for (size_t i = 0; i < n; i++)
        g_expect[i] = strtoull(lines[i], NULL, 10);
    g_n = n;
    btc_td_free_lines(lines, n);
}

static void free_block(void)
{
    free(g_blk);
    free(g_expect);
}

START_TEST(test_block_prefix_and_scan)
{
    btc_header hd;
    uint64_t count;
    int pl = btc_block_prefix(g_blk, g_len, &hd, &count);
    ck_assert_int_eq(pl, 83); /* 80 + 0xfd xx xx */
    ck_assert_uint_eq(count, 1557);
    ck_assert_uint_eq(g_n, 1557);
    ck_assert_uint_eq(g_expect[0], 83);
    for (int k = 0; k < 83; k++)
        ck_assert_int_eq(btc_block_prefix(g_blk, (size_t)k, NULL, &count), 0);

    uint64_t *off = malloc(2000 * sizeof(*off));
    size_t n, consumed;
    ck_assert_int_eq(
        btc_preproc_scan(g_blk + pl, g_len - (size_t)pl, (uint64_t)pl, off, 2000, &n, &consumed),
        0);
    ck_assert_uint_eq(n, g_n);
    ck_assert_uint_eq(consumed, g_len - (size_t)pl);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(off[i], g_expect[i]);
    /* btc_tx_skip gives each transaction's size */
    for (size_t i = 0; i < n; i++) {
        uint64_t end = i + 1 < n ? g_expect[i + 1] : g_len;
        int64_t sz = btc_tx_skip(g_blk + g_expect[i], g_len - g_expect[i]);
        ck_assert_int_eq(sz, (int64_t)(end - g_expect[i]));
        /* and nothing shorter is a complete transaction */
        ck_assert_int_eq(btc_tx_skip(g_blk + g_expect[i], (size_t)sz - 1), 0);
    }
    /* a bounded scan stops at a boundary and resumes from consumed */
    size_t total = 0, pos = (size_t)pl;
    while (total < g_n) {
        ck_assert_int_eq(btc_preproc_scan(g_blk + pos, g_len - pos, pos, off, 7, &n, &consumed), 0);
        ck_assert_uint_gt(n, 0);
        ck_assert_uint_le(n, 7);
        for (size_t i = 0; i < n; i++)
            ck_assert_uint_eq(off[i], g_expect[total + i]);
        total += n;
        pos += consumed;
    }
    ck_assert_uint_eq(pos, g_len);
    free(off);
}
END_TEST

/*
 * Streams the block through btc_preproc_feed with windows ending at the
 * given cut points. Each window is a fresh heap copy of exactly the stream
 * bytes [pp.pos, cut) (the caller may drop everything before pp.pos), so
 * ASan flags any read outside it. Returns the offsets found.
 */
static size_t stream_block(const size_t *cuts, size_t ncuts, uint64_t *out, size_t max_per_call)
{
    btc_preproc pp;
    btc_preproc_init(&pp, 83);
    size_t total = 0;
    for (size_t c = 0; c < ncuts; c++) {
        size_t end = cuts[c];
        for (;;) {
            size_t n = 0;
            if (pp.pos >= end) {
                /* the byte the walker needs has not arrived: a feed reads
                 * nothing and finds nothing */
                ck_assert_int_eq(btc_preproc_feed(&pp, NULL, end, 0, out + total, max_per_call, &n),
                                 0);
                ck_assert_uint_eq(n, 0);
                break;
            }
            size_t wlen = end - (size_t)pp.pos;
            uint8_t *w = malloc(wlen);
            memcpy(w, g_blk + pp.pos, wlen);
            ck_assert_int_eq(btc_preproc_feed(&pp, w, pp.pos, wlen, out + total, max_per_call, &n),
                             0);
            free(w);
            total += n;
            if (n < max_per_call)
                break; /* otherwise the limit was hit: call again */
        }
    }
    return total;
}

START_TEST(test_every_split_of_first_kb)
{
    uint64_t *off = malloc(2000 * sizeof(*off));
    /* two cuts: one at every byte of the first 4 KB, then the end */
    for (size_t k = 84; k < 4096; k++) {
        size_t cuts[2] = {k, g_len};
        size_t n = stream_block(cuts, 2, off, 2000);
        ck_assert_uint_eq(n, g_n);
        ck_assert_mem_eq(off, g_expect, n * sizeof(*off));
    }
    free(off);
}
END_TEST

START_TEST(test_random_splits)
{
    uint64_t *off = malloc(2000 * sizeof(*off));
    size_t *cuts = malloc(200000 * sizeof(*cuts));
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 12; round++) {
        size_t nc = 0, pos = 83;
        /* chunk sizes from 1 byte to ~64 KB, skewed small */
        while (pos < g_len) {
            uint64_t r = btc_td_rand(&seed);
            size_t step = 1 + (size_t)(r % (round < 4 ? 64 : round < 8 ? 1500 : 65536));
            pos = CD_MIN(pos + step, g_len);
            cuts[nc++] = pos;
        }
        size_t max = round % 3 == 0 ? 1 : round % 3 == 1 ? 5 : 2000;
        size_t n = stream_block(cuts, nc, off, max);
        ck_assert_uint_eq(n, g_n);
        ck_assert_mem_eq(off, g_expect, n * sizeof(*off));
    }
    free(cuts);
    free(off);
}
END_TEST

/* Builds a 1-input 1-output transaction with a script of slen bytes. */
static size_t make_tx(uint8_t *b, size_t in_script, size_t out_script)
{
    size_t i = 0;
    cd_put_le32(b, 1);
    i = 4;
    b[i++] = 1;
    memset(b + i, 0xab, 36);
    i += 36;
    i += btc_varint_write(b + i, in_script);
    memset(b + i, 0x51, in_script);
    i += in_script;
    cd_put_le32(b + i, 0xffffffff);
    i += 4;
    b[i++] = 1;
    cd_put_le64(b + i, 5000);
    i += 8;
    i += btc_varint_write(b + i, out_script);
    memset(b + i, 0x6a, out_script);
    i += out_script;
    cd_put_le32(b + i, 0);
    return i + 4;
}

START_TEST(test_cursor_runs_ahead_of_data)
{
    /* one transaction with a 1 MB input script, fed 1000 bytes at a time:
     * the cursor jumps over the script without needing its bytes */
    size_t cap = (1 << 20) + 200;
    uint8_t *tx = malloc(cap);
    size_t sz = make_tx(tx, 1 << 20, 25);
    btc_preproc pp;
    btc_preproc_init(&pp, 1000000);
    uint64_t off[2];
    size_t n, fed = 0, calls_reading = 0;
    uint64_t got = 0;
    while (fed < sz) {
        size_t end = CD_MIN(fed + 1000, sz);
        uint64_t base = 1000000 + fed;
        if (pp.pos < base)
            base = pp.pos; /* window must start at or before the cursor */
        if (pp.pos < 1000000 + end) {
            calls_reading++;
            size_t wl = (size_t)(1000000 + end - base);
            uint8_t *w = malloc(wl);
            memcpy(w, tx + (base - 1000000), wl);
            ck_assert_int_eq(btc_preproc_feed(&pp, w, base, wl, off, 2, &n), 0);
            free(w);
            if (n) {
                ck_assert_uint_eq(n, 1);
                got = off[0];
                ck_assert_uint_eq(pp.tx_start, 1000000 + sz);
            }
        }
        fed = end;
    }
    ck_assert_uint_eq(got, 1000000);
    ck_assert(btc_preproc_at_boundary(&pp));
    /* only the first window and the last few touched bytes */
    ck_assert_uint_le(calls_reading, 3);
    /* a window starting after the cursor is refused */
    btc_preproc_init(&pp, 0);
    ck_assert_int_eq(btc_preproc_feed(&pp, tx + 1, 1, sz - 1, off, 2, &n), BTC_ERR_WINDOW);
    free(tx);
}
END_TEST

/* The caller idiom "while (pp.pos < received) feed(...)" must complete a
 * transaction whose long last script was skipped ahead of the data and
 * whose bytes then arrive exactly up to its end. */
START_TEST(test_idiom_completes_skipped_tail)
{
    size_t cap = 70000;
    uint8_t *tx = malloc(cap);
    size_t sz = make_tx(tx, 10, 60000); /* 60000-byte output script */
    btc_preproc pp;
    btc_preproc_init(&pp, 0);
    uint64_t off[4];
    size_t n, found = 0;
    size_t received = 0;
    static const size_t arrivals[] = {100, 30000, 59000, 0};
    for (int a = 0; a <= 3; a++) {
        received = arrivals[a] ? arrivals[a] : sz; /* last arrival: exactly the end */
        while (pp.pos < received) {
            ck_assert_int_eq(btc_preproc_feed(&pp, tx + pp.pos, pp.pos, received - (size_t)pp.pos,
                                              off + found, 4 - found, &n),
                             0);
            found += n;
            if (n == 0)
                break;
        }
        if (a == 0) /* the cursor jumped to the last byte of the tx */
            ck_assert_uint_eq(pp.pos, sz - 1);
        if (a < 3)
            ck_assert_uint_eq(found, 0);
    }
    ck_assert_uint_eq(found, 1);
    ck_assert_uint_eq(off[0], 0);
    ck_assert_uint_eq(pp.tx_start, sz);
    ck_assert(btc_preproc_at_boundary(&pp));
    free(tx);
}
END_TEST

static int64_t skip_hex(const char *hex)
{
    uint8_t b[256];
    size_t n = strlen(hex) / 2;
    ck_assert_int_eq(cd_hex_decode(b, n, hex), 0);
    uint8_t *h = malloc(n ? n : 1);
    memcpy(h, b, n);
    int64_t r = btc_tx_skip(h, n);
    free(h);
    return r;
}

#define PREVOUT "abababababababababababababababababababababababababababababababab00000000"

START_TEST(test_malformed)
{
    /* well-formed baseline: 1 in (empty script), 1 out (empty script) */
    ck_assert_int_eq(skip_hex("01000000"
                              "01" PREVOUT "00"
                              "ffffffff"
                              "01"
                              "0000000000000000"
                              "00"
                              "00000000"),
                     60);
    ck_assert_int_eq(BTC_TX_MIN_SIZE, 60);
    /* zero inputs / outputs */
    ck_assert_int_eq(skip_hex("01000000"
                              "00"
                              "01"),
                     BTC_ERR_NO_INPUTS);
    ck_assert_int_eq(skip_hex("01000000"
                              "01" PREVOUT "00"
                              "ffffffff"
                              "00"
                              "00000000"),
                     BTC_ERR_NO_OUTPUTS);
    /* input count as 9-byte CompactSize */
    ck_assert_int_eq(skip_hex("01000000"
                              "ff0000000001000000"),
                     BTC_ERR_VARINT_TOO_BIG);
    /* non-canonical counts and lengths */
    ck_assert_int_eq(skip_hex("01000000"
                              "fd0100"),
                     BTC_ERR_VARINT_NONCANONICAL);
    ck_assert_int_eq(skip_hex("01000000"
                              "01" PREVOUT "fe00010000"),
                     BTC_ERR_VARINT_NONCANONICAL);
    ck_assert_int_eq(skip_hex("01000000"
                              "01" PREVOUT "00"
                              "ffffffff"
                              "01"
                              "0000000000000000"
                              "fdfc00"),
                     BTC_ERR_VARINT_NONCANONICAL);
    /* script length above 4 GB */
    ck_assert_int_eq(skip_hex("01000000"
                              "01" PREVOUT "ffffffffffffffffff"),
                     BTC_ERR_VARINT_TOO_BIG);
    /* impossible counts */
    ck_assert_int_eq(skip_hex("01000000"
                              "feffffffff"),
                     BTC_ERR_TOO_MANY);
    ck_assert_int_eq(skip_hex("01000000"
                              "01" PREVOUT "00"
                              "ffffffff"
                              "feffffffff"),
                     BTC_ERR_TOO_MANY);
    /* a huge script length is not an error: just incomplete */
    ck_assert_int_eq(skip_hex("01000000"
                              "01" PREVOUT "feffffffff"),
                     0);
    /* errors are sticky on the streaming cursor */
    btc_preproc pp;
    uint8_t bad[] = {1, 0, 0, 0, 0, 1};
    uint64_t off[1];
    size_t n;
    btc_preproc_init(&pp, 0);
    ck_assert_int_eq(btc_preproc_feed(&pp, bad, 0, sizeof(bad), off, 1, &n), BTC_ERR_NO_INPUTS);
    ck_assert_int_eq(btc_preproc_feed(&pp, bad, 0, sizeof(bad), off, 1, &n), BTC_ERR_NO_INPUTS);
    ck_assert_uint_eq(pp.tx_start, 0);
    /* the scan reports offsets before the malformed transaction */
    uint8_t two[200];
    size_t a = make_tx(two, 3, 4);
    memcpy(two + a, bad, sizeof(bad));
    size_t consumed;
    uint64_t offs[4];
    ck_assert_int_eq(btc_preproc_scan(two, a + sizeof(bad), 10, offs, 4, &n, &consumed),
                     BTC_ERR_NO_INPUTS);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(offs[0], 10);
    ck_assert_uint_eq(consumed, a);
    /* block prefix errors */
    uint8_t pre[89] = {0};
    pre[80] = 0;
    ck_assert_int_eq(btc_block_prefix(pre, 81, NULL, &offs[0]), BTC_ERR_RANGE);
    pre[80] = 0xfd;
    pre[81] = 1;
    ck_assert_int_eq(btc_block_prefix(pre, 83, NULL, &offs[0]), BTC_ERR_VARINT_NONCANONICAL);
    pre[80] = 0xff;
    pre[88] = 1;
    ck_assert_int_eq(btc_block_prefix(pre, 89, NULL, &offs[0]), BTC_ERR_VARINT_TOO_BIG);
}
END_TEST

/* Agreement with the full parser on hostile bytes: btc_tx_skip and
 * btc_tx_parse must classify every buffer the same way, and never read out
 * of bounds (ASan). Inputs: random garbage, and real transactions with
 * random byte flips and truncations. */
START_TEST(test_hostile_bytes_agree_with_parser)
{
    uint64_t seed = 12345;
    uint8_t *buf = malloc(4096);
    for (int iter = 0; iter < 200000; iter++) {
        size_t len;
        uint64_t r = btc_td_rand(&seed);
        if (iter % 2 == 0) {
            len = r % 300;
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)btc_td_rand(&seed);
            /* make the counts plausible often enough to go deep */
            if (len > 5 && (r & 0x100)) {
                buf[4] = (uint8_t)(1 + (r >> 9) % 3);
            }
        } else {
            size_t t = 1 + (size_t)(r % (g_n - 1));
            size_t txlen = (size_t)((t + 1 < g_n ? g_expect[t + 1] : g_len) - g_expect[t]);
            len = CD_MIN(txlen, (size_t)4096);
            memcpy(buf, g_blk + g_expect[t], len);
            int flips = (int)((r >> 20) % 4);
            for (int f = 0; f < flips; f++)
                buf[btc_td_rand(&seed) % len] = (uint8_t)btc_td_rand(&seed);
            if (r & (1ull << 40))
                len = (size_t)(btc_td_rand(&seed) % (len + 1));
        }
        uint8_t *h = malloc(len ? len : 1);
        memcpy(h, buf, len);
        int64_t s = btc_tx_skip(h, len);
        btc_tx tx;
        int p = btc_tx_parse(&tx, h, len);
        if (s > 0) {
            ck_assert_int_eq(p, 0);
            ck_assert_uint_eq(tx.size, (size_t)s);
        } else if (s == 0) {
            ck_assert_int_eq(p, BTC_ERR_TRUNCATED);
        } else {
            ck_assert_int_eq(p, (int)s);
        }
        free(h);
    }
    free(buf);
}
END_TEST

static Suite *suite_preproc(void)
{
    Suite *s = suite_create("bitcoin_preproc");
    TCase *tc = tcase_create("core");
    tcase_add_unchecked_fixture(tc, load_block, free_block);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_block_prefix_and_scan);
    tcase_add_test(tc, test_every_split_of_first_kb);
    tcase_add_test(tc, test_random_splits);
    tcase_add_test(tc, test_cursor_runs_ahead_of_data);
    tcase_add_test(tc, test_idiom_completes_skipped_tail);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_hostile_bytes_agree_with_parser);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_preproc)
