/*
 * test_header.c - block headers, compact targets, PoW and chain work,
 * pinned to the real regtest chain and mainnet block 413567.
 */
#include "btc_testdata.h"

#include "btc_header.h"
#include "btc_net.h"

static const char *dir116 = BTC_TD_CHAIN116;

START_TEST(test_regtest_chain_headers)
{
    btc_td_chain c;
    btc_td_load_chain(&c, dir116);
    ck_assert_int_eq(c.count, 117);
    const btc_net *net = btc_net_get(BTC_NET_REGTEST);
    uint8_t prev_hash[32];
    btc_u256 work = {{0, 0, 0, 0}};
    for (int h = 0; h < c.count; h++) {
        size_t len;
        uint8_t *blk = btc_td_block(&c, dir116, h, &len);
        ck_assert_uint_gt(len, 80);
        uint8_t hash[32];
        char hex[65];
        btc_header_hash(blk, hash);
        cd_hex_encode_rev(hex, hash, 32);
        ck_assert_str_eq(hex, c.hashes[h]);
        btc_header hd;
        btc_header_parse(&hd, blk);
        uint8_t re[80];
        btc_header_serialize(re, &hd);
        ck_assert_mem_eq(re, blk, 80);
        ck_assert_int_eq(btc_check_pow(hash, hd.bits, net), 0);
        if (h == 0)
            ck_assert_mem_eq(blk, net->genesis_header, 80);
        else
            ck_assert_mem_eq(hd.prev, prev_hash, 32);
        memcpy(prev_hash, hash, 32);
        /* the compact form round-trips */
        btc_u256 t;
        ck_assert_int_eq(btc_bits_to_target(hd.bits, &t), 0);
        ck_assert_uint_eq(btc_target_to_bits(&t), hd.bits);
        btc_u256 w = btc_block_work(hd.bits);
        btc_u256_add(&work, &work, &w);
        free(blk);
    }
    /* regtest bits 0x207fffff: target = 0x7fffff * 2^232, so
     * 2^256 / (target + 1) = 2 (target+1 is just under 2^255). 117 blocks
     * -> 234 = 0xea, which is what the node reports as chainwork at 116. */
    btc_u256 expect;
    btc_u256_set_u64(&expect, 234);
    ck_assert_int_eq(btc_u256_cmp(&work, &expect), 0);
    char whex[65];
    btc_u256_hex(whex, &work);
    ck_assert_str_eq(whex, "00000000000000000000000000000000000000000000000000000000000000ea");
}
END_TEST

START_TEST(test_mainnet_block_header)
{
    size_t len;
    uint8_t *blk = cd_test_read_file(BTC_TD_BLOCK413567, &len);
    uint8_t hash[32];
    char hex[65];
    btc_header_hash(blk, hash);
    cd_hex_encode_rev(hex, hash, 32);
    ck_assert_str_eq(hex, "0000000000000000025aff8be8a55df8f89c77296db6198f272d6577325d4069");
    btc_header hd;
    btc_header_parse(&hd, blk);
    ck_assert_int_eq(btc_check_pow(hash, hd.bits, btc_net_get(BTC_NET_MAIN)), 0);
    cd_hex_encode_rev(hex, hd.merkle_root, 32);
    ck_assert_str_eq(hex, "64a50c649fc816baaa2effda230c39cacf1504e4e616a2863685b72aaa7dce05");
    /* a changed nonce breaks the proof of work (the new hash is a fresh
     * sha256d; 2^-60 chance it still meets this target) */
    blk[76] ^= 1;
    btc_header_hash(blk, hash);
    ck_assert_int_eq(btc_check_pow(hash, hd.bits, btc_net_get(BTC_NET_MAIN)), BTC_ERR_POW_HASH);
    free(blk);
}
END_TEST

START_TEST(test_pow_limits)
{
    const btc_net *reg = btc_net_get(BTC_NET_REGTEST), *main = btc_net_get(BTC_NET_MAIN);
    /* the regtest genesis meets regtest's limit but not mainnet's */
    ck_assert_int_eq(btc_check_pow(reg->genesis_hash, 0x207fffff, reg), 0);
    ck_assert_int_eq(btc_check_pow(reg->genesis_hash, 0x207fffff, main), BTC_ERR_POW_LIMIT);
    ck_assert_int_eq(btc_check_pow(main->genesis_hash, 0x1d00ffff, main), 0);
    /* a target one step harder than the genesis hash fails */
    ck_assert_int_eq(btc_check_pow(main->genesis_hash, 0x1a00ffff, main), BTC_ERR_POW_HASH);
    ck_assert_int_eq(btc_check_pow(main->genesis_hash, 0x01fedcba, main), BTC_ERR_BITS_NEGATIVE);
    ck_assert_int_eq(btc_check_pow(main->genesis_hash, 0xff123456, main), BTC_ERR_BITS_OVERFLOW);
    ck_assert_int_eq(btc_check_pow(main->genesis_hash, 0, main), BTC_ERR_BITS_ZERO);
    /* the limit compact forms in the net table agree with the limits */
    for (int i = 0; i < 4; i++) {
        const btc_net *n = btc_net_get((btc_net_id)i);
        btc_u256 lim;
        btc_u256_from_le(&lim, n->pow_limit);
        ck_assert_uint_eq(btc_target_to_bits(&lim), n->pow_limit_bits);
    }
}
END_TEST

/* Expected values follow the node's arith_uint256 SetCompact/GetCompact
 * definition (mantissa 23 bits, sign bit 0x00800000, size byte). */
START_TEST(test_compact)
{
    static const struct {
        uint32_t bits;
        int rc;
        uint64_t low;      /* low 64 bits of the target (when it fits) */
        uint32_t reencode; /* GetCompact of the decoded value */
    } v[] = {
        {0x00000000, BTC_ERR_BITS_ZERO, 0, 0},
        {0x00123456, BTC_ERR_BITS_ZERO, 0, 0},
        {0x01003456, BTC_ERR_BITS_ZERO, 0, 0},
        {0x02000056, BTC_ERR_BITS_ZERO, 0, 0},
        {0x03000000, BTC_ERR_BITS_ZERO, 0, 0},
        {0x04000000, BTC_ERR_BITS_ZERO, 0, 0},
        {0x00923456, BTC_ERR_BITS_ZERO, 0, 0},
        {0x01803456, BTC_ERR_BITS_ZERO, 0, 0},
        {0x02800056, BTC_ERR_BITS_ZERO, 0, 0},
        {0x01123456, 0, 0x12, 0x01120000},
        {0x01fedcba, BTC_ERR_BITS_NEGATIVE, 0x7e, 0x017e0000},
        {0x02123456, 0, 0x1234, 0x02123400},
        {0x03123456, 0, 0x123456, 0x03123456},
        {0x04123456, 0, 0x12345600, 0x04123456},
        {0x04923456, BTC_ERR_BITS_NEGATIVE, 0x12345600, 0x04123456},
        {0x05009234, 0, 0x92340000, 0x05009234},
    };
    for (size_t i = 0; i < CD_ARRAY_LEN(v); i++) {
        btc_u256 t;
        ck_assert_int_eq(btc_bits_to_target(v[i].bits, &t), v[i].rc);
        ck_assert_uint_eq(t.d[0], v[i].low);
        ck_assert_uint_eq(t.d[1] | t.d[2] | t.d[3], 0);
        ck_assert_uint_eq(btc_target_to_bits(&t), v[i].reencode);
    }
    /* 0x20123456: 0x123456 << 8*29 occupies the top three bytes */
    btc_u256 t;
    ck_assert_int_eq(btc_bits_to_target(0x20123456, &t), 0);
    ck_assert_uint_eq(t.d[3], 0x1234560000000000ull);
    ck_assert_uint_eq(t.d[0] | t.d[1] | t.d[2], 0);
    ck_assert_uint_eq(btc_target_to_bits(&t), 0x20123456);
    /* overflow boundaries */
    ck_assert_int_eq(btc_bits_to_target(0xff123456, &t), BTC_ERR_BITS_OVERFLOW);
    ck_assert_int_eq(btc_bits_to_target(0x23000001, &t), BTC_ERR_BITS_OVERFLOW);
    ck_assert_int_eq(btc_bits_to_target(0x22000100, &t), BTC_ERR_BITS_OVERFLOW);
    ck_assert_int_eq(btc_bits_to_target(0x21010000, &t), BTC_ERR_BITS_OVERFLOW);
    ck_assert_int_eq(btc_bits_to_target(0x220000ff, &t), 0);
    ck_assert_uint_eq(t.d[3], 0xff00000000000000ull);
    ck_assert_int_eq(btc_bits_to_target(0x2100ffff, &t), 0);
    ck_assert_uint_eq(t.d[3], 0xffff000000000000ull);
}
END_TEST

START_TEST(test_block_work)
{
    /* mainnet genesis bits: target = 0xffff * 2^208;
     * 2^256 / (0xffff * 2^208 + 1) = floor(2^48 / 0xffff - tiny) =
     * 0x100010001 (2^48 = 0xffff * 0x100010001 + 1). */
    btc_u256 w = btc_block_work(0x1d00ffff);
    ck_assert_uint_eq(w.d[0], 0x100010001ull);
    ck_assert_uint_eq(w.d[1] | w.d[2] | w.d[3], 0);
    /* bits decoding to target 1: 2^256 / 2 = 2^255 */
    w = btc_block_work(0x01010000);
    ck_assert_uint_eq(w.d[3], 0x8000000000000000ull);
    ck_assert_uint_eq(w.d[0] | w.d[1] | w.d[2], 0);
    /* unusable bits give no work */
    w = btc_block_work(0x01fedcba);
    ck_assert(btc_u256_is_zero(&w));
    w = btc_block_work(0);
    ck_assert(btc_u256_is_zero(&w));
}
END_TEST

/* The big-endian forms the header tree stores (target, block work), and
 * the codes of unusable bits (once the tree's own tests, before the tree
 * used these functions). */
START_TEST(test_target_work_be)
{
    uint8_t t[32], w[32], e[32];
    btc_u256 v;
    /* mainnet limit 0x1d00ffff: target 0x00000000ffff0000...; work 0x100010001 */
    ck_assert_int_eq(btc_bits_to_target(0x1d00ffff, &v), 0);
    btc_u256_to_be(t, &v);
    memset(e, 0, 32);
    e[4] = 0xff;
    e[5] = 0xff;
    ck_assert_mem_eq(t, e, 32);
    v = btc_block_work(0x1d00ffff);
    btc_u256_to_be(w, &v);
    memset(e, 0, 32);
    e[27] = 0x01;
    e[29] = 0x01;
    e[31] = 0x01;
    ck_assert_mem_eq(w, e, 32);
    btc_u256 back;
    btc_u256_from_be(&back, w);
    ck_assert_int_eq(btc_u256_cmp(&back, &v), 0);
    /* a round value: 0x1b0404cb (around block 100000) */
    ck_assert_int_eq(btc_bits_to_target(0x1b0404cb, &v), 0);
    btc_u256_to_be(t, &v);
    memset(e, 0, 32);
    e[5] = 0x04;
    e[6] = 0x04;
    e[7] = 0xcb;
    ck_assert_mem_eq(t, e, 32);
    ck_assert_int_eq(btc_bits_to_target(0x04923456, &v), BTC_ERR_BITS_NEGATIVE);
    ck_assert_int_eq(btc_bits_to_target(0x01003456, &v), BTC_ERR_BITS_ZERO);
    ck_assert_int_eq(btc_bits_to_target(0xff123456, &v), BTC_ERR_BITS_OVERFLOW);
    ck_assert_int_eq(btc_bits_to_target(0x01123456, &v), 0); /* 0x12 */
    btc_u256_to_be(t, &v);
    memset(e, 0, 32);
    e[31] = 0x12;
    ck_assert_mem_eq(t, e, 32);
}
END_TEST

START_TEST(test_u256)
{
    btc_u256 a, b, r, q, one;
    btc_u256_set_u64(&one, 1);
    for (int i = 0; i < 4; i++)
        a.d[i] = UINT64_MAX;
    /* (2^256 - 1) + 1 wraps to 0 with carry */
    ck_assert_int_eq(btc_u256_add(&r, &a, &one), 1);
    ck_assert(btc_u256_is_zero(&r));
    /* 0 - 1 wraps to 2^256 - 1 with borrow */
    ck_assert_int_eq(btc_u256_sub(&r, &r, &one), 1);
    ck_assert_int_eq(btc_u256_cmp(&r, &a), 0);
    /* (2^256 - 1) / 3 = 0x5555...55, remainder 0 */
    btc_u256_set_u64(&b, 3);
    ck_assert_int_eq(btc_u256_div(&q, &a, &b), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(q.d[i], 0x5555555555555555ull);
    btc_u256_mul_u64(&r, &q, 3);
    ck_assert_int_eq(btc_u256_cmp(&r, &a), 0);
    /* division by zero is refused */
    btc_u256 z = {{0, 0, 0, 0}};
    ck_assert_int_eq(btc_u256_div(&q, &a, &z), -1);
    /* shifts across limbs */
    btc_u256_shl(&r, &one, 200);
    ck_assert_uint_eq(r.d[3], 1ull << 8);
    ck_assert_uint_eq(btc_u256_bits(&r), 201);
    btc_u256_shr(&r, &r, 136);
    ck_assert_uint_eq(r.d[1], 1ull << 0);
    ck_assert_uint_eq(r.d[0], 0);
    btc_u256_shr(&r, &r, 256);
    ck_assert(btc_u256_is_zero(&r));
    /* byte order helpers */
    uint8_t le[32], be[32];
    btc_u256_set_u64(&r, 0x0102);
    btc_u256_to_le(le, &r);
    btc_u256_to_be(be, &r);
    ck_assert_uint_eq(le[0], 2);
    ck_assert_uint_eq(le[1], 1);
    ck_assert_uint_eq(be[31], 2);
    ck_assert_uint_eq(be[30], 1);
    btc_u256_from_le(&q, le);
    ck_assert_int_eq(btc_u256_cmp(&q, &r), 0);
    ck_assert_int_lt(btc_u256_cmp(&r, &a), 0);
    ck_assert_int_gt(btc_u256_cmp(&a, &r), 0);
    ck_assert_str_eq(cd_strerror(BTC_ERR_POW_HASH),
                     "hash above target (insufficient proof of work)");
}
END_TEST

static Suite *suite_header(void)
{
    Suite *s = suite_create("bitcoin_header");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_regtest_chain_headers);
    tcase_add_test(tc, test_mainnet_block_header);
    tcase_add_test(tc, test_pow_limits);
    tcase_add_test(tc, test_compact);
    tcase_add_test(tc, test_block_work);
    tcase_add_test(tc, test_target_work_be);
    tcase_add_test(tc, test_u256);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_header)
