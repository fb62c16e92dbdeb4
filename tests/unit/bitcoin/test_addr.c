/*
 * test_addr.c - base58check addresses -> locking scripts, version bytes
 * checked against the network. Expected scripts from python-bitcoinlib
 * (CBitcoinAddress(...).to_scriptPubKey()), an independent implementation.
 */
#include "cd_test.h"
#include "btc_addr.h"
#include "cd_util.h"

#include <string.h>

static const char *script_of(const char *addr, btc_net_id net, char *why)
{
    static char hex[2 * BTC_ADDR_SCRIPT_MAX + 1];
    uint8_t s[BTC_ADDR_SCRIPT_MAX];
    size_t len = 0;
    why[0] = 0;
    if (btc_addr_script(addr, btc_net_get(net), s, &len, why, 128) != 0)
        return NULL;
    cd_hex_encode(hex, s, len);
    return hex;
}

START_TEST(test_addresses)
{
    char why[128];
    /* the genesis coinbase's address */
    ck_assert_str_eq(script_of("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", BTC_NET_MAIN, why),
                     "76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac");
    ck_assert_str_eq(script_of("33r9rrwA8CyUBHh5WLerSRGx1kicYLHZd6", BTC_NET_MAIN, why),
                     "a91417aa9ecb9e38b91bddcc5e8d2d26154be90d899687");
    /* the wallet P2PKH of ../shared/data blockchain_115_3677f4 */
    ck_assert_str_eq(script_of("mhg6ENXhPL6LsEUG6oxdqi8LjE2bsW6NMW", BTC_NET_REGTEST, why),
                     "76a91417aa9ecb9e38b91bddcc5e8d2d26154be90d899688ac");
    ck_assert_str_eq(script_of("2MuQMvbsBjfUpP5KdBUGj4NGDE6vnPawVfR", BTC_NET_TEST, why),
                     "a91417aa9ecb9e38b91bddcc5e8d2d26154be90d899687");
    /* wrong network: an error naming the version byte */
    ck_assert_ptr_null(script_of("mhg6ENXhPL6LsEUG6oxdqi8LjE2bsW6NMW", BTC_NET_MAIN, why));
    ck_assert_ptr_nonnull(strstr(why, "version byte 111"));
    ck_assert_ptr_null(script_of("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", BTC_NET_REGTEST, why));
    ck_assert_ptr_nonnull(strstr(why, "version byte 0"));
    /* checksum, alphabet, length */
    ck_assert_ptr_null(script_of("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", BTC_NET_MAIN, why));
    ck_assert_str_eq(why, "checksum");
    ck_assert_ptr_null(script_of("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfN0", BTC_NET_MAIN, why));
    ck_assert_str_eq(why, "not base58");
    ck_assert_ptr_null(script_of("1A1z", BTC_NET_MAIN, why));
    ck_assert_str_eq(why, "length");
    ck_assert_ptr_null(script_of("1111111111111111111111111111111111", BTC_NET_MAIN, why));
    ck_assert_str_eq(why, "checksum");
}
END_TEST

START_TEST(test_base58)
{
    uint8_t out[8];
    ck_assert_int_eq(btc_base58_decode("", out, sizeof(out)), 0);
    ck_assert_int_eq(btc_base58_decode("11", out, sizeof(out)), 2);
    ck_assert_uint_eq(out[0] | out[1], 0);
    ck_assert_int_eq(btc_base58_decode("1z", out, sizeof(out)), 2); /* 57 */
    ck_assert_uint_eq(out[0], 0);
    ck_assert_uint_eq(out[1], 57);
    ck_assert_int_eq(btc_base58_decode("5H", out, sizeof(out)), 1); /* 4*58+16 = 248 */
    ck_assert_uint_eq(out[0], 248);
    ck_assert_int_eq(btc_base58_decode("zzzzzzzzzzzzzzzzzzzz", out, sizeof(out)), -1); /* > 8 B */
    ck_assert_int_eq(btc_base58_decode("0", out, sizeof(out)), -1);
}
END_TEST

static Suite *suite_addr(void)
{
    Suite *s = suite_create("bitcoin_addr");
    TCase *tc = tcase_create("addr");
    tcase_add_test(tc, test_addresses);
    tcase_add_test(tc, test_base58);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_addr)
