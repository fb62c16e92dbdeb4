/*
 * test_sha256.c - the SHA-NI SHA-256 against known vectors and against
 * OpenSSL for every length around the block and padding boundaries.
 */
#include "btc_testdata.h"

#include "bitcoin/btc_sha256.h"
#include "common/cd_hash.h"

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
    /* two-way hashing, every pair of lengths 0..60 (one-block and not) */
    for (size_t la = 0; la <= 60; la++) {
        for (size_t lb = 0; lb <= 60; lb += 3) {
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
    free(buf);
}

START_TEST(test_default_impl)
{
    check_vectors();
    check_against_openssl();
}
END_TEST

START_TEST(test_fallback_impl)
{
    btc_sha256_set_accel(0);
    ck_assert_str_eq(btc_sha256_impl(), "openssl");
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
