/*
 * test_sha256.c - the SHA-NI SHA-256 against known vectors and against
 * OpenSSL for every length around the block and padding boundaries; the
 * two-lane btc_sha256_many (any mix of lengths, single and double hashes,
 * any job count); and all of it again with SHA-NI switched off, the path a
 * CPU without the extensions runs.
 */
#include "btc_testdata.h"

#include "btc_sha256.h"
#include "cd_hash.h"

/* FIPS 180-2 / NIST CSRC example vectors. */
static const struct {
    const char *msg;
    size_t repeat; /* msg repeated this many times */
    const char *hex;
} nist[] = {
    {"", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
     "lmnopqrsmnopqrstnopqrstu",
     1, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    {"a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
};

static uint8_t *nist_msg(size_t k, size_t *len)
{
    size_t ml = strlen(nist[k].msg);
    *len = ml * nist[k].repeat;
    uint8_t *m = malloc(*len ? *len : 1);
    for (size_t r = 0; r < nist[k].repeat; r++)
        memcpy(m + r * ml, nist[k].msg, ml);
    return m;
}

/* The NIST vectors through every entry point: one-shot, and as jobs of
 * btc_sha256_many, alone and all together (so they share lanes). */
static void check_nist(void)
{
    const size_t n = CD_ARRAY_LEN(nist);
    uint8_t *msgs[CD_ARRAY_LEN(nist)];
    size_t lens[CD_ARRAY_LEN(nist)];
    uint8_t outs[CD_ARRAY_LEN(nist)][32];
    btc_sha256_job jobs[CD_ARRAY_LEN(nist)];
    char hex[65];
    for (size_t k = 0; k < n; k++) {
        msgs[k] = nist_msg(k, &lens[k]);
        uint8_t h[32];
        btc_sha256(h, msgs[k], lens[k]);
        cd_hex_encode(hex, h, 32);
        ck_assert_str_eq(hex, nist[k].hex);
        btc_sha256_job one = {msgs[k], lens[k], h, 0};
        memset(h, 0, 32);
        btc_sha256_many(&one, 1);
        cd_hex_encode(hex, h, 32);
        ck_assert_str_eq(hex, nist[k].hex);
        jobs[k] = (btc_sha256_job){msgs[k], lens[k], outs[k], 0};
    }
    memset(outs, 0, sizeof(outs));
    btc_sha256_many(jobs, n);
    for (size_t k = 0; k < n; k++) {
        cd_hex_encode(hex, outs[k], 32);
        ck_assert_str_eq(hex, nist[k].hex);
        free(msgs[k]);
    }
}

/* btc_sha256_many against OpenSSL: every length 0..200 (and some long
 * ones), single and double hashes alternating, in batches of every size
 * 1..9 and one of all, from odd addresses. Batches put short and long
 * messages in the same call, so a lane refills while the other is mid-way
 * through a multi-block message, at every block and padding boundary. */
static void check_many(const uint8_t *buf)
{
    enum { NJ = 240 };
    static btc_sha256_job jobs[NJ];
    static uint8_t outs[NJ][32], want[NJ][32];
    for (size_t i = 0; i < NJ; i++) {
        size_t len = i <= 200 ? i : 200 + (i - 200) * 97; /* up to 3983 bytes */
        /* lengths ascend for even i and descend for odd i within the pairs a
         * batch forms: long and short messages share the lanes */
        size_t l = (i & 1) ? (i <= 200 ? 200 - i : len) : len;
        const uint8_t *p = buf + (i * 13) % 7 + 1;
        int twice = (i / 3) & 1;
        jobs[i] = (btc_sha256_job){p, l, outs[i], twice};
        (twice ? cd_sha256d : cd_sha256)(want[i], p, l);
    }
    for (size_t batch = 1; batch <= 10; batch++) {
        size_t step = batch == 10 ? NJ : batch;
        memset(outs, 0xAA, sizeof(outs));
        for (size_t at = 0; at < NJ; at += step)
            btc_sha256_many(jobs + at, CD_MIN(step, NJ - at));
        for (size_t i = 0; i < NJ; i++)
            ck_assert_msg(memcmp(outs[i], want[i], 32) == 0,
                          "job %zu (len %zu, twice %d) in batches of %zu", i, jobs[i].len,
                          jobs[i].twice, step);
    }
    /* zero jobs write nothing */
    memset(outs, 0x55, 32);
    btc_sha256_many(jobs, 0);
    ck_assert_uint_eq(outs[0][0], 0x55);
    /* one long message and many one-block ones: the long one's lane keeps
     * going while the other lane takes 60 jobs, then it finishes alone */
    jobs[0] = (btc_sha256_job){buf, 4000, outs[0], 1};
    cd_sha256d(want[0], buf, 4000);
    for (size_t i = 1; i <= 60; i++) {
        jobs[i] = (btc_sha256_job){buf + i, i % 56, outs[i], 0};
        cd_sha256(want[i], buf + i, i % 56);
    }
    btc_sha256_many(jobs, 61);
    for (size_t i = 0; i <= 60; i++)
        ck_assert_mem_eq(outs[i], want[i], 32);
}

static void check_vectors(void)
{
    uint8_t h[32];
    char hex[65];
    btc_sha256(h, "", 0);
    cd_hex_encode(hex, h, 32);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    btc_sha256(h, "abc", 3);
    cd_hex_encode(hex, h, 32);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    btc_sha256(h, m, strlen(m));
    cd_hex_encode(hex, h, 32);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void check_against_openssl(void)
{
    uint8_t *buf = malloc(5000);
    uint64_t seed = 99;
    for (size_t i = 0; i < 5000; i++)
        buf[i] = (uint8_t)btc_td_rand(&seed);
    for (size_t len = 0; len <= 4200; len += (len < 300 ? 1 : 37)) {
        uint8_t a[32], b[32];
        /* odd start offsets: unaligned loads */
        const uint8_t *p = buf + (len % 7);
        btc_sha256(a, p, len);
        cd_sha256(b, p, len);
        ck_assert_mem_eq(a, b, 32);
        btc_sha256d(a, p, len);
        cd_sha256d(b, p, len);
        ck_assert_mem_eq(a, b, 32);
    }
    /* two-way hashing, pairs of lengths 0..130 (one, two and three blocks) */
    for (size_t la = 0; la <= 130; la++) {
        for (size_t lb = 0; lb <= 130; lb += 3) {
            uint8_t a[32], b[32], ea[32], eb[32];
            btc_sha256_x2(a, buf + 1, la, b, buf + 100 + lb, lb);
            cd_sha256(ea, buf + 1, la);
            cd_sha256(eb, buf + 100 + lb, lb);
            ck_assert_mem_eq(a, ea, 32);
            ck_assert_mem_eq(b, eb, 32);
        }
    }
    uint8_t a[32], b[32];
    btc_sha256d_pair(a, buf, buf + 32);
    cd_sha256d(b, buf, 64);
    ck_assert_mem_eq(a, b, 32);
    check_many(buf);
    free(buf);
}

START_TEST(test_default_impl)
{
    check_nist();
    check_vectors();
    check_against_openssl();
}
END_TEST

START_TEST(test_fallback_impl)
{
    btc_sha256_set_accel(0);
    ck_assert_str_eq(btc_sha256_impl(), "openssl");
    check_nist();
    check_vectors();
    check_against_openssl();
    btc_sha256_set_accel(1);
}
END_TEST

static Suite *suite_sha256(void)
{
    Suite *s = suite_create("bitcoin_sha256");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_default_impl);
    tcase_add_test(tc, test_fallback_impl);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_sha256)
