/*
 * test_merkle.c - merkle roots of real blocks, stored trees, branches,
 * CVE-2012-2459 mutation detection, TSC proof JSON.
 */
#include "btc_testdata.h"

#include "btc_header.h"
#include "btc_merkle.h"
#include "btc_preproc.h"
#include "btc_tx.h"
#include "cd_hash.h"

/* Returns the txids (n*32, malloc'd) of a raw block. */
static uint8_t *block_txids(const uint8_t *blk, size_t len, size_t *n)
{
    uint64_t count;
    int pl = btc_block_prefix(blk, len, NULL, &count);
    ck_assert_int_gt(pl, 0);
    uint8_t *ids = malloc(count * 32);
    size_t pos = (size_t)pl;
    for (uint64_t i = 0; i < count; i++) {
        btc_tx tx;
        ck_assert_int_eq(btc_tx_parse(&tx, blk + pos, len - pos), 0);
        btc_tx_txid(&tx, ids + 32 * i);
        pos += tx.size;
    }
    ck_assert_uint_eq(pos, len);
    *n = count;
    return ids;
}

START_TEST(test_block413567_root_tree_branches)
{
    size_t len, n;
    uint8_t *blk = cd_test_read_file(BTC_TD_BLOCK413567, &len);
    uint8_t *ids = block_txids(blk, len, &n);
    ck_assert_uint_eq(n, 1557);
    btc_header hd;
    btc_header_parse(&hd, blk);
    uint8_t root[32];
    int mut = -1;
    ck_assert_int_eq(btc_merkle_root(ids, n, root, &mut), 0);
    ck_assert_int_eq(mut, 0);
    ck_assert_mem_eq(root, hd.merkle_root, 32);
    char hex[65];
    cd_hex_encode_rev(hex, root, 32);
    ck_assert_str_eq(hex, "64a50c649fc816baaa2effda230c39cacf1504e4e616a2863685b72aaa7dce05");

    /* stored tree: 1557, 779, 390, 195, 98, 49, 25, 13, 7, 4, 2, 1 */
    ck_assert_uint_eq(btc_merkle_depth(n), 11);
    ck_assert_uint_eq(btc_merkle_tree_count(n),
                      1557 + 779 + 390 + 195 + 98 + 49 + 25 + 13 + 7 + 4 + 2 + 1);
    size_t cnt = btc_merkle_tree_count(n);
    uint8_t *tree = malloc(cnt * 32);
    ck_assert_int_eq(btc_merkle_tree_build(ids, n, tree, &mut), 0);
    ck_assert_int_eq(mut, 0);
    ck_assert_mem_eq(tree, ids, n * 32);
    ck_assert_mem_eq(tree + (cnt - 1) * 32, root, 32);
    /* in place build (txids already at the start of the tree buffer) */
    uint8_t *tree2 = malloc(cnt * 32);
    memcpy(tree2, ids, n * 32);
    ck_assert_int_eq(btc_merkle_tree_build(tree2, n, tree2, NULL), 0);
    ck_assert_mem_eq(tree2, tree, cnt * 32);

    uint8_t branch[11 * 32], dup[11];
    size_t depth;
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(btc_merkle_branch(tree, n, i, branch, dup, &depth), 0);
        ck_assert_uint_eq(depth, 11);
        ck_assert(btc_merkle_verify(ids + 32 * i, i, branch, depth, root));
        /* wrong index or a flipped bit fails */
        ck_assert(!btc_merkle_verify(ids + 32 * i, i ^ 1, branch, depth, root) ||
                  dup[0]); /* the last leaf pairs with itself */
        branch[5 * 32] ^= 1;
        ck_assert(!btc_merkle_verify(ids + 32 * i, i, branch, depth, root));
    }
    /* the last leaf (index 1556, even, level size odd) is duplicated */
    ck_assert_int_eq(btc_merkle_branch(tree, n, 1556, branch, dup, &depth), 0);
    ck_assert_uint_eq(dup[0], 1);
    ck_assert_mem_eq(branch, ids + 1556 * 32, 32);
    ck_assert_int_eq(btc_merkle_branch(tree, n, 1557, branch, dup, &depth), BTC_ERR_RANGE);
    ck_assert_int_eq(btc_merkle_branch(tree, 0, 0, branch, dup, &depth), BTC_ERR_MERKLE_EMPTY);

    /* CVE-2012-2459: appending a copy of the last txid (odd count) gives the
     * same root, and is detected */
    uint8_t *ids2 = malloc((n + 1) * 32);
    memcpy(ids2, ids, n * 32);
    memcpy(ids2 + n * 32, ids + (n - 1) * 32, 32);
    uint8_t root2[32];
    ck_assert_int_eq(btc_merkle_root(ids2, n + 1, root2, &mut), 0);
    ck_assert_mem_eq(root2, root, 32);
    ck_assert_int_eq(mut, 1);
    free(ids2);
    free(tree2);
    free(tree);
    free(ids);
    free(blk);
}
END_TEST

START_TEST(test_regtest_roots)
{
    btc_td_chain c;
    btc_td_load_chain(&c, BTC_TD_CHAIN116);
    for (int h = 0; h < c.count; h++) {
        size_t len, n;
        uint8_t *blk = btc_td_block(&c, BTC_TD_CHAIN116, h, &len);
        uint8_t *ids = block_txids(blk, len, &n);
        btc_header hd;
        btc_header_parse(&hd, blk);
        uint8_t root[32];
        int mut;
        ck_assert_int_eq(btc_merkle_root(ids, n, root, &mut), 0);
        ck_assert_int_eq(mut, 0);
        ck_assert_mem_eq(root, hd.merkle_root, 32);
        free(ids);
        free(blk);
    }
}
END_TEST

/* Six distinct leaves: level 1 has three nodes (odd). Repeating the last
 * two leaves (8 leaves) gives the same root: the mutation sits one level up,
 * where the two real siblings ef|ef are equal. */
START_TEST(test_mutation_duplicate_last_two)
{
    uint8_t leaves[8 * 32], root6[32], root8[32];
    for (int i = 0; i < 6; i++)
        cd_sha256(leaves + 32 * i, &i, sizeof(i));
    memcpy(leaves + 6 * 32, leaves + 4 * 32, 64);
    int mut;
    ck_assert_int_eq(btc_merkle_root(leaves, 6, root6, &mut), 0);
    ck_assert_int_eq(mut, 0);
    ck_assert_int_eq(btc_merkle_root(leaves, 8, root8, &mut), 0);
    ck_assert_mem_eq(root6, root8, 32);
    ck_assert_int_eq(mut, 1);
    uint8_t tree[32 * 15];
    ck_assert_int_eq(btc_merkle_tree_build(leaves, 8, tree, &mut), 0);
    ck_assert_int_eq(mut, 1);
    /* a plain duplicate pair at the bottom */
    memcpy(leaves + 32, leaves, 32);
    ck_assert_int_eq(btc_merkle_root(leaves, 2, root6, &mut), 0);
    ck_assert_int_eq(mut, 1);
    ck_assert_int_eq(btc_merkle_root(leaves, 0, root6, &mut), BTC_ERR_MERKLE_EMPTY);
    /* one leaf: the root is the leaf */
    ck_assert_int_eq(btc_merkle_root(leaves + 64, 1, root6, &mut), 0);
    ck_assert_mem_eq(root6, leaves + 64, 32);
    ck_assert_uint_eq(btc_merkle_depth(1), 0);
}
END_TEST

static void hash_pair(uint8_t out[32], const uint8_t *l, const uint8_t *r)
{
    uint8_t p[64];
    memcpy(p, l, 32);
    memcpy(p + 32, r, 32);
    cd_sha256d(out, p, 64);
}

/* The branch of the last leaf of an odd level: its sibling is itself (the
 * duplicate), which the proofs write as the hash (cd_lookup_proof_json). */
START_TEST(test_branch_odd_level)
{
    /* three leaves: root = H(H(a|b) | H(c|c)); branch of c = [c (dup), H(a|b)] */
    uint8_t leaves[3 * 32], ab[32], cc[32], root[32], tree[6 * 32];
    for (int i = 0; i < 3; i++)
        cd_sha256(leaves + 32 * i, &i, sizeof(i));
    hash_pair(ab, leaves, leaves + 32);
    hash_pair(cc, leaves + 64, leaves + 64);
    hash_pair(root, ab, cc);
    ck_assert_uint_eq(btc_merkle_tree_count(3), 6);
    ck_assert_int_eq(btc_merkle_tree_build(leaves, 3, tree, NULL), 0);
    ck_assert_mem_eq(tree + 5 * 32, root, 32);
    uint8_t branch[2 * 32], dup[2];
    size_t depth;
    ck_assert_int_eq(btc_merkle_branch(tree, 3, 2, branch, dup, &depth), 0);
    ck_assert_uint_eq(depth, 2);
    ck_assert_mem_eq(branch, leaves + 64, 32);
    ck_assert_mem_eq(branch + 32, ab, 32);
    ck_assert_uint_eq(dup[0], 1);
    ck_assert_uint_eq(dup[1], 0);
    ck_assert(btc_merkle_verify(leaves + 64, 2, branch, depth, root));
    ck_assert_int_eq(btc_merkle_branch(tree, 3, 3, branch, dup, &depth), BTC_ERR_RANGE);
}
END_TEST

typedef struct collect {
    uint8_t *tree;
    size_t n; /* leaves */
    size_t level_off[64];
    size_t level_size[64];
    unsigned levels;
    size_t calls;
} collect;

static void collect_init(collect *c, uint8_t *tree, size_t n)
{
    c->tree = tree;
    c->n = n;
    c->calls = 0;
    size_t off = 0, sz = n;
    c->levels = 0;
    for (;;) {
        c->level_off[c->levels] = off;
        c->level_size[c->levels] = sz;
        c->levels++;
        off += sz;
        if (sz == 1)
            break;
        sz = (sz + 1) / 2;
    }
}

static int collect_fn(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32])
{
    collect *c = ctx;
    ck_assert_uint_lt(level, c->levels);
    ck_assert_uint_lt(index, c->level_size[level]);
    memcpy(c->tree + 32 * (c->level_off[level] + index), hash, 32);
    c->calls++;
    return 0;
}

/* The streaming computation agrees with the batch one on roots, mutation
 * flags and every stored node, for all sizes 1..300 with leaves drawn from
 * a tiny alphabet (so equal siblings, i.e. mutations, are frequent). */
START_TEST(test_stream_matches_batch)
{
    uint64_t seed = 5;
    uint8_t alphabet[3][32];
    for (int i = 0; i < 3; i++)
        cd_sha256(alphabet[i], &i, sizeof(i));
    int mutated_seen = 0, clean_seen = 0;
    for (size_t n = 1; n <= 300; n++) {
        for (int round = 0; round < 3; round++) {
            uint8_t *leaves = malloc(n * 32);
            for (size_t i = 0; i < n; i++) {
                if (round == 0) {
                    uint64_t v = btc_td_rand(&seed);
                    cd_sha256(leaves + 32 * i, &v, sizeof(v));
                } else {
                    memcpy(leaves + 32 * i, alphabet[btc_td_rand(&seed) % 3], 32);
                }
            }
            size_t cnt = btc_merkle_tree_count(n);
            uint8_t *t1 = malloc(cnt * 32), *t2 = calloc(cnt, 32);
            int m1, m2;
            ck_assert_int_eq(btc_merkle_tree_build(leaves, n, t1, &m1), 0);
            collect c;
            collect_init(&c, t2, n);
            btc_merkle_stream st;
            btc_merkle_stream_init(&st, collect_fn, &c);
            for (size_t i = 0; i < n; i++)
                ck_assert_int_eq(btc_merkle_stream_add(&st, leaves + 32 * i), 0);
            uint8_t root[32];
            ck_assert_int_eq(btc_merkle_stream_final(&st, root, &m2), 0);
            ck_assert_mem_eq(root, t1 + (cnt - 1) * 32, 32);
            ck_assert_int_eq(m1, m2);
            ck_assert_uint_eq(c.calls, cnt);
            ck_assert_mem_eq(t1, t2, cnt * 32);
            mutated_seen += m1;
            clean_seen += !m1;
            free(t1);
            free(t2);
            free(leaves);
        }
    }
    ck_assert_int_gt(mutated_seen, 100);
    ck_assert_int_gt(clean_seen, 300);
    btc_merkle_stream st;
    uint8_t root[32];
    btc_merkle_stream_init(&st, NULL, NULL);
    ck_assert_int_eq(btc_merkle_stream_final(&st, root, NULL), BTC_ERR_MERKLE_EMPTY);
}
END_TEST

static int stop_at_3(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32])
{
    return ++*(int *)ctx >= 3;
}

START_TEST(test_stream_block413567)
{
    size_t len, n;
    uint8_t *blk = cd_test_read_file(BTC_TD_BLOCK413567, &len);
    uint8_t *ids = block_txids(blk, len, &n);
    btc_merkle_stream st;
    btc_merkle_stream_init(&st, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(btc_merkle_stream_add(&st, ids + 32 * i), 0);
    uint8_t root[32];
    int mut;
    ck_assert_int_eq(btc_merkle_stream_final(&st, root, &mut), 0);
    ck_assert_int_eq(mut, 0);
    ck_assert_mem_eq(root, blk + 36, 32);
    ck_assert_uint_le(sizeof(st), 4096);
    /* a failing callback poisons the stream */
    int calls = 0;
    btc_merkle_stream_init(&st, stop_at_3, &calls);
    ck_assert_int_eq(btc_merkle_stream_add(&st, ids), 0);
    ck_assert_int_eq(btc_merkle_stream_add(&st, ids + 32), BTC_ERR_CALLBACK);
    ck_assert_int_eq(btc_merkle_stream_add(&st, ids + 64), BTC_ERR_CALLBACK);
    ck_assert_int_eq(btc_merkle_stream_final(&st, root, &mut), BTC_ERR_CALLBACK);
    free(ids);
    free(blk);
}
END_TEST

static Suite *suite_merkle(void)
{
    Suite *s = suite_create("bitcoin_merkle");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_block413567_root_tree_branches);
    tcase_add_test(tc, test_regtest_roots);
    tcase_add_test(tc, test_mutation_duplicate_last_two);
    tcase_add_test(tc, test_branch_odd_level);
    tcase_add_test(tc, test_stream_matches_batch);
    tcase_add_test(tc, test_stream_block413567);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_merkle)
