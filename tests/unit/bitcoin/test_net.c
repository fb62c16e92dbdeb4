/*
 * test_net.c - network parameters: genesis hashes, magic lookups.
 */
#include "cd_test.h"
#include "btc_net.h"
#include "btc_varint.h"
#include "cd_util.h"

START_TEST(test_genesis_hashes)
{
    static const char *expect[4] = {
        "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
        "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943",
        "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
        "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943",
    };
    for (int i = 0; i < 4; i++) {
        const btc_net *n = btc_net_get((btc_net_id)i);
        char hex[65];
        cd_hex_encode_rev(hex, n->genesis_hash, 32);
        ck_assert_str_eq(hex, expect[i]);
    }
}
END_TEST

START_TEST(test_lookup)
{
    ck_assert_ptr_eq(btc_net_by_name("regtest"), btc_net_get(BTC_NET_REGTEST));
    ck_assert_ptr_eq(btc_net_by_name("mainnet"), btc_net_get(BTC_NET_MAIN));
    ck_assert_ptr_null(btc_net_by_name("bch"));
    const uint8_t m[4] = {0xfb, 0xce, 0xc4, 0xf9};
    ck_assert_ptr_eq(btc_net_by_magic(m), btc_net_get(BTC_NET_STN));
    ck_assert_uint_eq(btc_net_get(BTC_NET_REGTEST)->default_port, 18444);
}
END_TEST

START_TEST(test_varint)
{
    uint8_t b[9];
    uint64_t v;
    static const uint64_t vals[] = {
        0, 252, 253, 0xffff, 0x10000, 0xffffffffull, 0x100000000ull, UINT64_MAX};
    static const size_t lens[] = {1, 1, 3, 3, 5, 5, 9, 9};
    for (size_t i = 0; i < CD_ARRAY_LEN(vals); i++) {
        size_t n = btc_varint_write(b, vals[i]);
        ck_assert_uint_eq(n, lens[i]);
        ck_assert_uint_eq(btc_varint_size(vals[i]), lens[i]);
        ck_assert_int_eq(btc_varint_read(b, n, &v), (int)n);
        ck_assert_uint_eq(v, vals[i]);
        ck_assert_int_eq(btc_varint_read(b, n - 1, &v), BTC_VARINT_NEED_MORE);
    }
    /* non-canonical forms */
    const uint8_t nc1[] = {0xfd, 0xfc, 0x00};
    const uint8_t nc2[] = {0xfe, 0xff, 0xff, 0x00, 0x00};
    const uint8_t nc3[] = {0xff, 1, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_int_eq(btc_varint_read(nc1, 3, &v), BTC_VARINT_NONCANONICAL);
    ck_assert_int_eq(btc_varint_read(nc2, 5, &v), BTC_VARINT_NONCANONICAL);
    ck_assert_int_eq(btc_varint_read(nc3, 9, &v), BTC_VARINT_NONCANONICAL);
}
END_TEST

static Suite *suite_net(void)
{
    Suite *s = suite_create("bitcoin_net");
    TCase *tc = tcase_create("net");
    tcase_add_test(tc, test_genesis_hashes);
    tcase_add_test(tc, test_lookup);
    tcase_add_test(tc, test_varint);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_net)
