/*
 * test_bump.c - cd_bump: canonical BUMPs (BRC-74) byte for byte against the
 * vectors of tests/sdk/CONTRACT.md §1.6 (mainnet block 125632, which the
 * @bsv/sdk tests use; the vectors were checked with the SDK by
 * tests/sdk/bump_vectors.mjs --doc), the JSON form, and, for random blocks of
 * 1..300 txs and random position sets, that every level-0 txid of the BUMP
 * gives the block's root (cd_bump_root) and the structure rules hold.
 */
#include "cd_test.h"

#include "btc_merkle.h"
#include "cd_bump.h"
#include "cd_util.h"

static const char *TX125632[11] = {
    "17cba98da71fe75862aac894392f2ff604356db386767fec364877a5a9ff200c",
    "14ce64bd223ec9bb42662b74fdcf94f96a209a1aee72b7ba7639db503150ec2e",
    "90a2de85351cfadd2326b9b0098e9c453af09b2980835f57a1429bbb44beb872",
    "a31f2ddfea7ddd4581dca3007ee99e58ea6baa97a8ac3b32bb4610baac9f7206",
    "c36eeed6fbc0259d30804f59f804dfcda35a54461157d6ac9c094f0ea378f35c",
    "17752483868c52a98407a0e226d73b42e214e0fad548541619d858e1fd4a9549",
    "3b8c4460412cfc55be0d50308ba704a859bd6f83bfed01b0828c9b067cd69246",
    "a3f1b9d4b3ef3b061af352fdc2d02048417030fef9282c36da689cd899437cdb",
    "66e2b022da877621ef197e02c3ef7d3f820d33a86ead2e72bf966432ea6776f1",
    "e988b5d7a2cec8e0759ade2e151737d1cdfdde68accff42938583ad12eb98b99",
    "5e7a8a8ec3f912ac1c4e90279c04263f170ed055c0411c8d490b846f01e6a99e",
};
#define ROOT125632 "205b2e27c58601fc1a8de04c83b6b0c46f89c16b2161c93441b7e9269cf6bc4a"

/* Builds the BUMP of positions pos[0..np) of a block of n txids. */
static void build(const uint8_t *txids, size_t n, uint64_t height, const uint64_t *pos, size_t np,
                  cd_bump *b)
{
    uint8_t *tree = malloc(btc_merkle_tree_count(n) * 32);
    int mutated;
    ck_assert_int_eq(btc_merkle_tree_build(txids, n, tree, &mutated), 0);
    uint8_t *br = calloc(np, 64 * 32);
    cd_bump_item *it = calloc(np, sizeof(*it));
    for (size_t i = 0; i < np; i++) {
        size_t depth;
        ck_assert_int_eq(btc_merkle_branch(tree, n, pos[i], br + 64 * 32 * i, NULL, &depth), 0);
        it[i].pos = pos[i];
        memcpy(it[i].txid, txids + 32 * pos[i], 32);
        it[i].branch = br + 64 * 32 * i;
    }
    ck_assert_int_eq(cd_bump_build(height, n, it, np, b), 0);
    free(it);
    free(br);
    free(tree);
}

static uint8_t *txids125632(void)
{
    uint8_t *t = malloc(11 * 32);
    for (int i = 0; i < 11; i++)
        ck_assert_int_eq(cd_hex_decode_rev(t + 32 * i, 32, TX125632[i]), 0);
    return t;
}

static void check_vector(const uint64_t *pos, size_t np, const char *want)
{
    uint8_t *t = txids125632();
    cd_bump b;
    build(t, 11, 125632, pos, np, &b);
    size_t len;
    uint8_t *bin = cd_bump_binary(&b, &len);
    ck_assert_uint_eq(len, cd_bump_binary_size(&b));
    char *hx = malloc(2 * len + 1);
    cd_hex_encode(hx, bin, len);
    ck_assert_str_eq(hx, want);
    uint8_t root[32];
    char rh[65];
    for (size_t i = 0; i < np; i++) {
        ck_assert_int_eq(cd_bump_root(&b, t + 32 * pos[i], root), 0);
        cd_hex_encode_rev(rh, root, 32);
        ck_assert_str_eq(rh, ROOT125632);
    }
    free(hx);
    free(bin);
    cd_bump_free(&b);
    free(t);
}

START_TEST(vectors_125632)
{
    uint64_t p0[] = {0}, p8[] = {8}, p10[] = {10}, pc[] = {8, 2, 5};
    check_vector(p0, 1,
                 "fec0ea0100040200020c20ffa9a5774836ec7f7686b36d3504f62f2f3994c8aa6258e71fa78da9cb1"
                 "701002eec503150db3976bab772ee1a9a206af994cffd742b6642bbc93e22bd64ce14010100a9b3f7"
                 "d12fcfd64cadb5f5ba64aa1f86709ddf1c162efc903e3e64ab56e7efd7010100d93270c15fce64039"
                 "0b91cf7168ba3e2878bda252d3c12c9ecda69cb310a12840101006f45d3bfe1c404182ea7efa37393"
                 "fcfa4c627fbbc5e32c6f7c82ca7de91fd06d");
    check_vector(p8, 1,
                 "fec0ea010004020802f17667ea326496bf722ead6ea8330d823f7defc3027e19ef217687da22b0e26"
                 "60900998bb92ed13a583829f4cfac68defdcdd13717152ede9a75e0c8cea2d7b588e901050056f088"
                 "4ee1bd452bd4da1d07bb15e271b370065ac11bef56fe5cee8c2b121411010301010000b67d0c699f1"
                 "ca6637d1ec8e4850ed0f468a67b1cca1f1a8f3ffbd5d641b76042");
    check_vector(p10, 1,
                 "fec0ea010004020a029ea9e6016f840b498d1c41c055d00e173f26049c27904e1cac12f9c38e8a7a5"
                 "e0b01010400028ad237ec0127e3034f752e52c0ec00f700781e20945da40472ef63bf2daca2010301"
                 "010000b67d0c699f1ca6637d1ec8e4850ed0f468a67b1cca1f1a8f3ffbd5d641b76042");
    check_vector(pc, 3,
                 "fec0ea01000406020272b8be44bb9b42a1575f8380299bf03a459c8e09b0b92623ddfa1c3585dea29"
                 "0030006729facba1046bb323baca897aa6bea589ee97e00a3dc8145dd7deadf2d1fa304005cf378a3"
                 "0e4f099cacd6571146545aa3cddf04f8594f80309d25c0fbd6ee6ec3050249954afde158d81916544"
                 "8d5fae014e2423bd726e2a00784a9528c86832475170802f17667ea326496bf722ead6ea8330d823f"
                 "7defc3027e19ef217687da22b0e2660900998bb92ed13a583829f4cfac68defdcdd13717152ede9a7"
                 "5e0c8cea2d7b588e903000031c5d542872b0428110d960efec7abbcd940aaa3e31e32c080db58adf7"
                 "1885a70300fb71f067fde6d8680c527d5bf95c3ad23816bd2d2876f8b250c7532a191dce15050056f"
                 "0884ee1bd452bd4da1d07bb15e271b370065ac11bef56fe5cee8c2b12141101030100");
}
END_TEST

START_TEST(json_125632)
{
    uint8_t *t = txids125632();
    uint64_t p10[] = {10};
    cd_bump b;
    build(t, 11, 125632, p10, 1, &b);
    json_t *j = cd_bump_json(&b);
    char *s = json_dumps(j, JSON_COMPACT);
    ck_assert_str_eq(
        s, "{\"blockHeight\":125632,\"path\":[[{\"offset\":10,\"hash\":"
           "\"5e7a8a8ec3f912ac1c4e90279c04263f170ed055c0411c8d490b846f01e6a99e\",\"txid\":true},"
           "{\"offset\":11,\"duplicate\":true}],[{\"offset\":4,\"hash\":"
           "\"a2ac2dbf63ef7204a45d94201e7800f700ecc0522e754f03e32701ec37d28a02\"}],[{\"offset\":3,"
           "\"duplicate\":true}],[{\"offset\":0,\"hash\":"
           "\"4260b741d6d5fb3f8f1a1fca1c7ba668f4d00e85e4c81e7d63a61c9f690c7db6\"}]]}");
    free(s);
    json_decref(j);
    cd_bump_free(&b);
    free(t);
}
END_TEST

/* xorshift: reproducible random blocks */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

START_TEST(random_blocks)
{
    for (int round = 0; round < 400; round++) {
        size_t n = 1 + (size_t)(rnd() % 300);
        uint8_t *t = malloc(32 * n);
        for (size_t i = 0; i < 32 * n; i++)
            t[i] = (uint8_t)rnd();
        uint8_t want[32];
        ck_assert_int_eq(btc_merkle_root(t, n, want, NULL), 0);
        size_t np = 1 + (size_t)(rnd() % (n < 6 ? n : 6));
        uint64_t pos[6];
        for (size_t i = 0; i < np; i++)
            pos[i] = rnd() % n;
        cd_bump b;
        build(t, n, (uint64_t)round * 1000, pos, np, &b);
        ck_assert_uint_eq(b.tree_height, n == 1 ? 1 : btc_merkle_depth(n));
        ck_assert_uint_gt(b.n[0], 0);
        /* every level sorted, no offset twice; every level-0 hash (siblings
         * included, as the SDK checks) gives the root */
        for (unsigned h = 0; h < b.tree_height; h++)
            for (size_t i = 1; i < b.n[h]; i++)
                ck_assert_uint_lt(b.level[h][i - 1].offset, b.level[h][i].offset);
        for (size_t i = 0; i < b.n[0]; i++) {
            if (b.level[0][i].flags == CD_BUMP_DUP)
                continue;
            uint8_t root[32];
            ck_assert_int_eq(cd_bump_root(&b, b.level[0][i].hash, root), 0);
            ck_assert_mem_eq(root, want, 32);
        }
        cd_bump_free(&b);
        free(t);
    }
}
END_TEST

START_TEST(bad_input)
{
    uint8_t t[64] = {1};
    cd_bump_item it = {.pos = 2, .branch = t};
    cd_bump b;
    ck_assert_int_eq(cd_bump_build(1, 2, &it, 1, &b), CD_LOOKUP_EINPUT);
    ck_assert_int_eq(cd_bump_build(1, 2, &it, 0, &b), CD_LOOKUP_EINPUT);
    cd_bump_item two[2] = {{.pos = 1, .branch = t}, {.pos = 1, .branch = t}};
    two[1].txid[0] = 7;
    ck_assert_int_eq(cd_bump_build(1, 2, two, 2, &b), CD_LOOKUP_EINPUT);
}
END_TEST

static Suite *suite_bump(void)
{
    Suite *s = suite_create("bump");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, vectors_125632);
    tcase_add_test(tc, json_125632);
    tcase_add_test(tc, random_blocks);
    tcase_add_test(tc, bad_input);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_bump)
