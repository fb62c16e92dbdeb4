/*
 * test_common.c - hex, little-endian helpers, sha256d, logging levels.
 */
#include "cd_test.h"
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"

START_TEST(test_hex_roundtrip)
{
    uint8_t in[4] = {0x00, 0xab, 0x10, 0xff}, out[4];
    char hex[9];
    cd_hex_encode(hex, in, 4);
    ck_assert_str_eq(hex, "00ab10ff");
    cd_hex_encode_rev(hex, in, 4);
    ck_assert_str_eq(hex, "ff10ab00");
    ck_assert_int_eq(cd_hex_decode(out, 4, "00AB10ff"), 0);
    ck_assert_mem_eq(out, in, 4);
    ck_assert_int_eq(cd_hex_decode_rev(out, 4, "ff10ab00"), 0);
    ck_assert_mem_eq(out, in, 4);
    ck_assert_int_eq(cd_hex_decode(out, 4, "00ab10f"), -1);
    ck_assert_int_eq(cd_hex_decode(out, 4, "00ab10fg"), -1);
}
END_TEST

START_TEST(test_le)
{
    uint8_t b[8];
    cd_put_le32(b, 0x11223344u);
    ck_assert_uint_eq(b[0], 0x44);
    ck_assert_uint_eq(cd_le32(b), 0x11223344u);
    cd_put_le64(b, 0x0102030405060708ull);
    ck_assert_uint_eq(b[0], 0x08);
    ck_assert_uint_eq(cd_le64(b), 0x0102030405060708ull);
    cd_put_le16(b, 0xabcd);
    ck_assert_uint_eq(cd_le16(b), 0xabcd);
}
END_TEST

START_TEST(test_sha256d)
{
    /* Empty payload checksum of the p2p framing: 5df6e0e2... */
    uint8_t h[32];
    cd_sha256d(h, "", 0);
    ck_assert_uint_eq(h[0], 0x5d);
    ck_assert_uint_eq(h[1], 0xf6);
    ck_assert_uint_eq(h[2], 0xe0);
    ck_assert_uint_eq(h[3], 0xe2);
    /* Incremental equals one-shot. */
    uint8_t h2[32];
    cd_sha256_ctx ctx;
    cd_sha256_init(&ctx);
    cd_sha256_update(&ctx, "ab", 2);
    cd_sha256_update(&ctx, "c", 1);
    cd_sha256d_final(&ctx, h2);
    cd_sha256d(h, "abc", 3);
    ck_assert_mem_eq(h, h2, 32);
    /* sha256("abc") test vector */
    char hex[65];
    cd_sha256(h, "abc", 3);
    cd_hex_encode(hex, h, 32);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

START_TEST(test_log_levels)
{
    cd_log_level l;
    ck_assert_int_eq(cd_log_level_parse("debug", &l), 0);
    ck_assert_int_eq(l, CD_LOG_DEBUG);
    ck_assert_int_eq(cd_log_level_parse("WARNING", &l), 0);
    ck_assert_int_eq(l, CD_LOG_WARN);
    ck_assert_int_eq(cd_log_level_parse("loud", &l), -1);
}
END_TEST

static Suite *suite_common(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_hex_roundtrip);
    tcase_add_test(tc, test_le);
    tcase_add_test(tc, test_sha256d);
    tcase_add_test(tc, test_log_levels);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_common)
