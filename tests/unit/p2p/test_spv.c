/*
 * test_spv.c - libconduit-p2p's exported SPV helpers (conduit_p2p.h): header
 * parse/hash/PoW, chain linkage, the difficulty and time rules, chain work,
 * merkle roots, branches, TSC proofs and BUMPs, plus the text helpers
 * (escaping, hex). Real data: the regtest chain of 117 headers and mainnet
 * block 413567 from ../shared/data; BUMP vectors made and checked by the
 * published @bsv/sdk (tests/sdk/bump_vectors.mjs --doc).
 */
#include "cd_test.h"

#include "btc_merkle.h"
#include "conduit_p2p.h"

#define CHAIN116 "regtest/blockchain_116_7c9cd2"

static uint8_t chain[117][80];
static uint8_t hashes[117][32];

static void load_chain(void)
{
    size_t len;
    char *list = (char *)cd_test_read_file(CHAIN116 "/headers.txt", &len);
    char *save = NULL;
    int h = 0;
    for (char *tok = strtok_r(list, " \n", &save); tok && h < 117;
         tok = strtok_r(NULL, " \n", &save), h++) {
        char rel[256];
        size_t blen;
        snprintf(rel, sizeof(rel), CHAIN116 "/%s", tok);
        uint8_t *blk = cd_test_read_file(rel, &blen);
        memcpy(chain[h], blk, 80);
        free(blk);
        ck_assert_int_eq(cp2p_hash_from_hex(hashes[h], tok), CP2P_OK);
    }
    ck_assert_int_eq(h, 117);
    free(list);
}

START_TEST(test_header_parse_hash_pow)
{
    const cp2p_net *net = cp2p_net_by_name("regtest");
    uint8_t g[80], gh[32], h[32], raw[80];
    cp2p_header hd;
    ck_assert_ptr_nonnull(net);
    ck_assert_str_eq(cp2p_net_name(net), "regtest");
    ck_assert_uint_eq(cp2p_net_default_port(net), 18444);
    ck_assert_ptr_null(cp2p_net_by_name("bch"));
    cp2p_net_genesis_header(net, g);
    cp2p_net_genesis_hash(net, gh);
    cp2p_header_hash(g, h);
    ck_assert_mem_eq(h, gh, 32);
    cp2p_header_parse(&hd, g);
    ck_assert_int_eq(hd.version, 1);
    ck_assert_uint_eq(hd.bits, 0x207fffff);
    ck_assert_uint_eq(hd.nonce, 2);
    cp2p_header_serialize(raw, &hd);
    ck_assert_mem_eq(raw, g, 80);
    char hx[65];
    cp2p_hash_to_hex(hx, gh);
    ck_assert_str_eq(hx, "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206");
    ck_assert_int_eq(cp2p_header_check_pow(net, g), CP2P_OK);
    /* mainnet's limit is far harder: the regtest genesis fails it */
    ck_assert_int_eq(cp2p_header_check_pow(cp2p_net_by_name("main"), g), CP2P_EBADPOW);
    /* bits above the regtest limit */
    hd.bits = 0x21010000;
    cp2p_header_serialize(raw, &hd);
    ck_assert_int_eq(cp2p_header_check_pow(net, raw), CP2P_EBADPOW);
}
END_TEST

START_TEST(test_headers_check_chain)
{
    const cp2p_net *net = cp2p_net_by_name("regtest");
    size_t bad = 99;
    load_chain();
    ck_assert_int_eq(cp2p_headers_check_chain(net, &chain[0][0], 117, NULL, &bad), CP2P_OK);
    ck_assert_int_eq(cp2p_headers_check_chain(net, &chain[1][0], 116, hashes[0], &bad), CP2P_OK);
    /* does not link: starts from the wrong parent */
    ck_assert_int_eq(cp2p_headers_check_chain(net, &chain[2][0], 10, hashes[0], &bad),
                     CP2P_ENOTLINKED);
    ck_assert_uint_eq(bad, 0);
    /* a gap in the middle */
    uint8_t two[2][80];
    memcpy(two[0], chain[5], 80);
    memcpy(two[1], chain[7], 80);
    ck_assert_int_eq(cp2p_headers_check_chain(net, &two[0][0], 2, NULL, &bad), CP2P_ENOTLINKED);
    ck_assert_uint_eq(bad, 1);
    ck_assert_int_eq(cp2p_headers_check_chain(net, &two[0][0], 0, NULL, &bad), CP2P_EINVAL);
}
END_TEST

/* ancestors of the regtest chain for cp2p_header_check_next */
static int anc(void *ctx, int32_t height, cp2p_block_info *out)
{
    (void)ctx;
    if (height < 0 || height > 116)
        return -1;
    cp2p_header h;
    cp2p_header_parse(&h, chain[height]);
    out->height = height;
    out->time = h.time;
    out->bits = h.bits;
    memset(out->chain_work, 0, 32);
    for (int i = 0; i <= height; i++) {
        uint8_t w[32];
        cp2p_header hi;
        cp2p_header_parse(&hi, chain[i]);
        cp2p_work_from_bits(w, hi.bits);
        ck_assert_int_eq(cp2p_work_add(out->chain_work, w), 0);
    }
    return 0;
}

/* a regtest child of `parent` at `time` with valid proof of work */
static void mine(uint8_t raw[80], const uint8_t parent[80], uint32_t time, uint32_t bits)
{
    cp2p_header h;
    uint8_t ph[32];
    cp2p_header_hash(parent, ph);
    memset(&h, 0, sizeof(h));
    h.version = 0x20000000;
    memcpy(h.prev, ph, 32);
    memset(h.merkle_root, 0x5a, 32);
    h.time = time;
    h.bits = bits;
    for (h.nonce = 0;; h.nonce++) {
        cp2p_header_serialize(raw, &h);
        if (cp2p_header_check_pow(cp2p_net_by_name("regtest"), raw) == CP2P_OK)
            return;
    }
}

START_TEST(test_header_check_next)
{
    const cp2p_net *net = cp2p_net_by_name("regtest");
    cp2p_block_info prev, next;
    load_chain();
    /* every real header follows its parent under the rules */
    for (int h = 1; h <= 116; h++) {
        ck_assert_int_eq(anc(NULL, h - 1, &prev), 0);
        ck_assert_int_eq(
            cp2p_header_check_next(net, &prev, hashes[h - 1], chain[h], anc, NULL, 0, &next),
            CP2P_OK);
        ck_assert_int_eq(next.height, h);
        cp2p_block_info want;
        ck_assert_int_eq(anc(NULL, h, &want), 0);
        ck_assert_mem_eq(next.chain_work, want.chain_work, 32);
    }
    ck_assert_int_gt(cp2p_work_cmp(next.chain_work, prev.chain_work), 0);
    ck_assert_int_eq(cp2p_work_cmp(prev.chain_work, prev.chain_work), 0);
    cp2p_header tip;
    cp2p_header_parse(&tip, chain[116]);
    uint8_t raw[80];
    ck_assert_int_eq(anc(NULL, 116, &prev), 0);
    /* regtest never retargets: other bits are refused */
    mine(raw, chain[116], tip.time + 600, 0x207ffffe);
    ck_assert_int_eq(cp2p_header_check_next(net, &prev, hashes[116], raw, anc, NULL, 0, NULL),
                     CP2P_EBADBITS);
    /* time not above the median of the last 11 (equal to it) */
    uint32_t t11[11];
    for (int k = 0; k < 11; k++) {
        cp2p_header hk;
        cp2p_header_parse(&hk, chain[106 + k]);
        t11[k] = hk.time;
    }
    for (int a = 0; a < 11; a++)
        for (int b = a + 1; b < 11; b++)
            if (t11[b] < t11[a]) {
                uint32_t t = t11[a];
                t11[a] = t11[b];
                t11[b] = t;
            }
    mine(raw, chain[116], t11[5], 0x207fffff);
    ck_assert_int_eq(cp2p_header_check_next(net, &prev, hashes[116], raw, anc, NULL, 0, NULL),
                     CP2P_EBADTIME);
    /* more than 2 h in the future of `now` */
    mine(raw, chain[116], tip.time + 600, 0x207fffff);
    ck_assert_int_eq(cp2p_header_check_next(net, &prev, hashes[116], raw, anc, NULL,
                                            (int64_t)tip.time - 7200, NULL),
                     CP2P_EBADTIME);
    ck_assert_int_eq(
        cp2p_header_check_next(net, &prev, hashes[116], raw, anc, NULL, (int64_t)tip.time, NULL),
        CP2P_OK);
    /* wrong parent */
    ck_assert_int_eq(cp2p_header_check_next(net, &prev, hashes[115], raw, anc, NULL, 0, NULL),
                     CP2P_ENOTLINKED);
}
END_TEST

/* mainnet block 413567: its txids, from the raw block */
static uint8_t *block_txids(size_t *n, uint8_t header[80])
{
    size_t len, olen;
    uint8_t *raw = cd_test_read_file("mainnet/block413567.raw", &len);
    char *offs = (char *)cd_test_read_file("mainnet/block413567.tx-offsets", &olen);
    size_t cnt = 0, cap = 4096;
    uint64_t *o = malloc(cap * sizeof(*o));
    char *save = NULL;
    for (char *t = strtok_r(offs, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
        o[cnt++] = strtoull(t, NULL, 10);
    uint8_t *ids = malloc(cnt * 32);
    for (size_t i = 0; i < cnt; i++) {
        size_t end = i + 1 < cnt ? o[i + 1] : len;
        cp2p_sha256d(ids + 32 * i, raw + o[i], end - o[i]);
    }
    memcpy(header, raw, 80);
    *n = cnt;
    free(o);
    free(offs);
    free(raw);
    return ids;
}

START_TEST(test_merkle_root_and_branches)
{
    size_t n;
    uint8_t hdr[80], root[32];
    cp2p_header h;
    int mutated = -1;
    uint8_t *ids = block_txids(&n, hdr);
    cp2p_header_parse(&h, hdr);
    ck_assert_uint_eq(n, 1557);
    ck_assert_int_eq(cp2p_merkle_root(ids, n, root, &mutated), CP2P_OK);
    ck_assert_mem_eq(root, h.merkle_root, 32);
    ck_assert_int_eq(mutated, 0);
    ck_assert_int_eq(cp2p_merkle_root(ids, 0, root, NULL), CP2P_EINVAL);
    /* CVE-2012-2459: the last tx repeated keeps the root, flagged mutated */
    uint8_t *dup = malloc((n + 1) * 32);
    memcpy(dup, ids, n * 32);
    memcpy(dup + n * 32, ids + (n - 1) * 32, 32);
    ck_assert_int_eq(cp2p_merkle_root(dup, n + 1, root, &mutated), CP2P_OK);
    ck_assert_mem_eq(root, h.merkle_root, 32);
    ck_assert_int_eq(mutated, 1);
    free(dup);
    /* every branch leads to the header's root; a wrong index does not */
    size_t cnt = btc_merkle_tree_count(n);
    uint8_t *tree = malloc(cnt * 32);
    ck_assert_int_eq(btc_merkle_tree_build(ids, n, tree, NULL), 0);
    uint8_t branch[64 * 32];
    size_t depth;
    for (size_t i = 0; i < n; i += 97) {
        ck_assert_int_eq(btc_merkle_branch(tree, n, i, branch, NULL, &depth), 0);
        ck_assert_int_eq(cp2p_merkle_branch_root(ids + 32 * i, i, branch, depth, root), CP2P_OK);
        ck_assert_mem_eq(root, h.merkle_root, 32);
        ck_assert_int_eq(cp2p_merkle_branch_root(ids + 32 * i, i ^ 1, branch, depth, root),
                         CP2P_OK);
        ck_assert_int_ne(memcmp(root, h.merkle_root, 32), 0);
    }
    ck_assert_int_eq(cp2p_merkle_branch_root(ids, 1u << 11, branch, 11, root), CP2P_EINVAL);
    free(tree);
    free(ids);
}
END_TEST

/* A binary TSC proof (BRC-10) of leaf i, written here from the stored tree:
 * flags, index, txid, target, nodes (type 0 hash / type 1 duplicate). */
static size_t tsc_encode(uint8_t *out, int flags, size_t i, const uint8_t txid[32],
                         const uint8_t *target, size_t tlen, const uint8_t *branch,
                         const uint8_t *dupf, size_t depth)
{
    size_t o = 0;
    out[o++] = (uint8_t)flags;
    if (i < 0xfd) {
        out[o++] = (uint8_t)i;
    } else {
        out[o++] = 0xfd;
        out[o++] = (uint8_t)i;
        out[o++] = (uint8_t)(i >> 8);
    }
    memcpy(out + o, txid, 32);
    o += 32;
    memcpy(out + o, target, tlen);
    o += tlen;
    out[o++] = (uint8_t)depth;
    for (size_t k = 0; k < depth; k++) {
        if (dupf[k]) {
            out[o++] = 1;
        } else {
            out[o++] = 0;
            memcpy(out + o, branch + 32 * k, 32);
            o += 32;
        }
    }
    return o;
}

START_TEST(test_tsc_proofs)
{
    size_t n;
    uint8_t hdr[80], bhash[32];
    cp2p_header h;
    cp2p_tsc_info info;
    uint8_t *ids = block_txids(&n, hdr);
    cp2p_header_parse(&h, hdr);
    cp2p_header_hash(hdr, bhash);
    uint8_t *tree = malloc(btc_merkle_tree_count(n) * 32);
    ck_assert_int_eq(btc_merkle_tree_build(ids, n, tree, NULL), 0);
    uint8_t branch[64 * 32], dupf[64], proof[4096];
    size_t depth;
    size_t idx[] = {0, 1, 777, n - 1}; /* n - 1: odd levels, duplicate nodes */
    for (size_t k = 0; k < sizeof(idx) / sizeof(idx[0]); k++) {
        size_t i = idx[k];
        const uint8_t *id = ids + 32 * i;
        ck_assert_int_eq(btc_merkle_branch(tree, n, i, branch, dupf, &depth), 0);
        /* target: merkle root (flags 0x04) */
        size_t len = tsc_encode(proof, 0x04, i, id, h.merkle_root, 32, branch, dupf, depth);
        ck_assert_int_eq(cp2p_tsc_verify(proof, len, id, NULL, &info), CP2P_OK);
        ck_assert_uint_eq(info.index, i);
        ck_assert_int_eq(info.target_type, 2);
        ck_assert_mem_eq(info.root, h.merkle_root, 32);
        ck_assert_int_eq(cp2p_tsc_verify(proof, len, NULL, h.merkle_root, NULL), CP2P_OK);
        /* another tx's id */
        ck_assert_int_eq(cp2p_tsc_verify(proof, len, ids + 32 * ((i + 1) % n), NULL, NULL),
                         CP2P_EPROOF);
        /* one flipped bit anywhere in the nodes or the txid */
        for (size_t b = 2 + (i >= 0xfd ? 2 : 0); b < len; b += 29) {
            proof[b] ^= 0x10;
            int rc = cp2p_tsc_verify(proof, len, NULL, h.merkle_root, NULL);
            ck_assert_msg(rc != CP2P_OK, "flip at %zu of %zu verified", b, len);
            proof[b] ^= 0x10;
        }
        /* truncated */
        ck_assert_int_eq(cp2p_tsc_verify(proof, len - 1, NULL, h.merkle_root, NULL),
                         CP2P_EMALFORMED);
        /* target: header (flags 0x02) */
        len = tsc_encode(proof, 0x02, i, id, hdr, 80, branch, dupf, depth);
        ck_assert_int_eq(cp2p_tsc_verify(proof, len, id, NULL, &info), CP2P_OK);
        ck_assert_int_eq(info.target_type, 1);
        /* target: block hash (flags 0x00): needs the root from a trusted header */
        len = tsc_encode(proof, 0x00, i, id, bhash, 32, branch, dupf, depth);
        ck_assert_int_eq(cp2p_tsc_verify(proof, len, id, NULL, &info), CP2P_EINVAL);
        ck_assert_int_eq(cp2p_tsc_verify(proof, len, id, h.merkle_root, &info), CP2P_OK);
        ck_assert_mem_eq(info.target, bhash, 32);
        uint8_t other[32];
        memset(other, 7, 32);
        ck_assert_int_eq(cp2p_tsc_verify(proof, len, id, other, NULL), CP2P_EPROOF);
    }
    /* composite proofs and index nodes are not handled */
    proof[0] = 0x08;
    ck_assert_int_eq(cp2p_tsc_verify(proof, 40, NULL, NULL, NULL), CP2P_EUNSUPPORTED);
    free(tree);
    free(ids);
}
END_TEST

/* BUMP vectors of mainnet block 125632 (11 txs), made by the published
 * @bsv/sdk: node tests/sdk/bump_vectors.mjs --doc */
static const char *ROOT_125632 = "205b2e27c58601fc1a8de04c83b6b0c46f89c16b2161c93441b7e9269cf6bc4a";
static const struct {
    const char *bump;
    const char *txids[3];
} BUMPS[] = {
    {"fec0ea0100040200020c20ffa9a5774836ec7f7686b36d3504f62f2f3994c8aa6258e71fa78da9cb1701002eec50"
     "3150db3976bab772ee1a9a206af994cffd742b6642bbc93e22bd64ce14010100a9b3f7d12fcfd64cadb5f5ba64aa"
     "1f86709ddf1c162efc903e3e64ab56e7efd7010100d93270c15fce640390b91cf7168ba3e2878bda252d3c12c9ec"
     "da69cb310a12840101006f45d3bfe1c404182ea7efa37393fcfa4c627fbbc5e32c6f7c82ca7de91fd06d",
     {"17cba98da71fe75862aac894392f2ff604356db386767fec364877a5a9ff200c"}},
    {"fec0ea010004020802f17667ea326496bf722ead6ea8330d823f7defc3027e19ef217687da22b0e2660900998bb9"
     "2ed13a583829f4cfac68defdcdd13717152ede9a75e0c8cea2d7b588e901050056f0884ee1bd452bd4da1d07bb15"
     "e271b370065ac11bef56fe5cee8c2b121411010301010000b67d0c699f1ca6637d1ec8e4850ed0f468a67b1cca1f"
     "1a8f3ffbd5d641b76042",
     {"66e2b022da877621ef197e02c3ef7d3f820d33a86ead2e72bf966432ea6776f1"}},
    {"fec0ea010004020a029ea9e6016f840b498d1c41c055d00e173f26049c27904e1cac12f9c38e8a7a5e0b01010400"
     "028ad237ec0127e3034f752e52c0ec00f700781e20945da40472ef63bf2daca2010301010000b67d0c699f1ca663"
     "7d1ec8e4850ed0f468a67b1cca1f1a8f3ffbd5d641b76042",
     {"5e7a8a8ec3f912ac1c4e90279c04263f170ed055c0411c8d490b846f01e6a99e"}},
    {"fec0ea01000406020272b8be44bb9b42a1575f8380299bf03a459c8e09b0b92623ddfa1c3585dea290030006729f"
     "acba1046bb323baca897aa6bea589ee97e00a3dc8145dd7deadf2d1fa304005cf378a30e4f099cacd6571146545a"
     "a3cddf04f8594f80309d25c0fbd6ee6ec3050249954afde158d819165448d5fae014e2423bd726e2a00784a9528c"
     "86832475170802f17667ea326496bf722ead6ea8330d823f7defc3027e19ef217687da22b0e2660900998bb92ed1"
     "3a583829f4cfac68defdcdd13717152ede9a75e0c8cea2d7b588e903000031c5d542872b0428110d960efec7abbc"
     "d940aaa3e31e32c080db58adf71885a70300fb71f067fde6d8680c527d5bf95c3ad23816bd2d2876f8b250c7532a"
     "191dce15050056f0884ee1bd452bd4da1d07bb15e271b370065ac11bef56fe5cee8c2b12141101030100",
     {"90a2de85351cfadd2326b9b0098e9c453af09b2980835f57a1429bbb44beb872",
      "17752483868c52a98407a0e226d73b42e214e0fad548541619d858e1fd4a9549",
      "66e2b022da877621ef197e02c3ef7d3f820d33a86ead2e72bf966432ea6776f1"}},
};

START_TEST(test_bump_sdk_vectors)
{
    uint8_t root[32], got[32], txid[32], bump[1024];
    uint64_t height;
    size_t len;
    ck_assert_int_eq(cp2p_hash_from_hex(root, ROOT_125632), CP2P_OK);
    for (size_t v = 0; v < sizeof(BUMPS) / sizeof(BUMPS[0]); v++) {
        ck_assert_int_eq(cp2p_hex_decode(bump, sizeof(bump), &len, BUMPS[v].bump), CP2P_OK);
        for (int k = 0; k < 3 && BUMPS[v].txids[k]; k++) {
            ck_assert_int_eq(cp2p_hash_from_hex(txid, BUMPS[v].txids[k]), CP2P_OK);
            height = 0;
            ck_assert_int_eq(cp2p_bump_verify(bump, len, txid, root, &height, got), CP2P_OK);
            ck_assert_uint_eq(height, 125632);
            ck_assert_mem_eq(got, root, 32);
        }
        /* a txid the path does not hold */
        memset(txid, 0x42, 32);
        ck_assert_int_eq(cp2p_bump_verify(bump, len, txid, root, NULL, NULL), CP2P_EPROOF);
        /* the wrong root */
        ck_assert_int_eq(cp2p_hash_from_hex(txid, BUMPS[v].txids[0]), CP2P_OK);
        got[0] ^= 1;
        ck_assert_int_eq(cp2p_bump_verify(bump, len, txid, got, NULL, NULL), CP2P_EPROOF);
        /* any flipped byte after the header: malformed or another root */
        for (size_t b = 5; b < len; b++) {
            bump[b] ^= 0x01;
            ck_assert_int_ne(cp2p_bump_verify(bump, len, txid, root, NULL, NULL), CP2P_OK);
            bump[b] ^= 0x01;
        }
        /* every truncation is refused */
        for (size_t l = 0; l < len; l++)
            ck_assert_int_ne(cp2p_bump_verify(bump, l, txid, root, NULL, NULL), CP2P_OK);
    }
}
END_TEST

START_TEST(test_text_helpers)
{
    char out[CP2P_ESCAPED_LEN(64)];
    const char forged[] = "/ua:1/\nERROR conduitd[1]: FORGED LOG LINE\x1b[31m\\\t\r\x7f\xff";
    size_t n = cp2p_escape(out, sizeof(out), forged, sizeof(forged) - 1);
    ck_assert_str_eq(out,
                     "/ua:1/\\nERROR conduitd[1]: FORGED LOG LINE\\x1b[31m\\\\\\t\\r\\x7f\\xff");
    ck_assert_uint_eq(n, strlen(out));
    for (const char *c = out; *c; c++)
        ck_assert(*c >= 0x20 && *c < 0x7f);
    /* NULs are data; a small buffer cuts at an escape boundary */
    char small[6];
    ck_assert_uint_eq(cp2p_escape(small, sizeof(small), "ab\0cd", 5), 2);
    ck_assert_str_eq(small, "ab");
    ck_assert_uint_eq(cp2p_escape(small, 0, "ab", 2), 0);
    /* hex */
    uint8_t h[32], buf[4];
    size_t len;
    ck_assert_int_eq(cp2p_hash_from_hex(h, "00"), CP2P_EINVAL);
    ck_assert_int_eq(cp2p_hex_decode(buf, sizeof(buf), &len, "0a0B"), CP2P_OK);
    ck_assert_uint_eq(len, 2);
    ck_assert_uint_eq(buf[1], 0x0b);
    ck_assert_int_eq(cp2p_hex_decode(buf, sizeof(buf), &len, "0a0"), CP2P_EINVAL);
    ck_assert_int_eq(cp2p_hex_decode(buf, sizeof(buf), &len, "zz"), CP2P_EINVAL);
    ck_assert_int_eq(cp2p_hex_decode(buf, 1, &len, "0a0b"), CP2P_ETOOBIG);
    char hx[9];
    cp2p_hex_encode(hx, (const uint8_t *)"\x01\xab\x00\xff", 4);
    ck_assert_str_eq(hx, "01ab00ff");
    /* error and status names */
    ck_assert_str_eq(cp2p_strerror(CP2P_EPROOF), "merkle proof does not verify");
    ck_assert_str_eq(cp2p_strerror(-30999), "unknown error");
    for (int e = CP2P_EINVAL; e >= CP2P_EUNSUPPORTED; e--)
        ck_assert_str_ne(cp2p_strerror(e), "unknown error");
    ck_assert_str_eq(cp2p_bcast_status_str(CP2P_BCAST_MISSING_INPUTS), "MISSING_INPUTS");
    ck_assert_str_eq(cp2p_reason_str(CP2P_R_SLOW_BLOCK), "slow-block");
    ck_assert_int_eq(cp2p_reason_is_misbehaviour(CP2P_R_RATE), 1);
    ck_assert_int_eq(cp2p_reason_is_misbehaviour(CP2P_R_EOF), 0);
}
END_TEST

static Suite *suite_spv(void)
{
    Suite *s = suite_create("p2p_spv");
    TCase *tc = tcase_create("spv");
    tcase_add_test(tc, test_header_parse_hash_pow);
    tcase_add_test(tc, test_headers_check_chain);
    tcase_add_test(tc, test_header_check_next);
    tcase_add_test(tc, test_merkle_root_and_branches);
    tcase_add_test(tc, test_tsc_proofs);
    tcase_add_test(tc, test_bump_sdk_vectors);
    tcase_add_test(tc, test_text_helpers);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_spv)
