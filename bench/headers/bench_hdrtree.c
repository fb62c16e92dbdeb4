/*
 * bench_hdrtree.c - how fast the header tree accepts headers (validation,
 * in-memory index, one LMDB write transaction per 2000-header batch, as the
 * daemon does per `headers` message) and how fast it loads them at start.
 *
 * Usage: bench_hdrtree [N=200000] [DIR]
 * Mines N regtest headers in memory (not timed), then prints headers/s for
 * cd_hdrtree_add and for cd_hdrtree_open of the resulting tree.
 */
#include "btc_header.h"
#include "cd_hash.h"
#include "cd_util.h"
#include "cd_hdrtree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int meets(const uint8_t hdr[80], const uint8_t target_be[32])
{
    uint8_t h[32];
    cd_sha256d(h, hdr, 80);
    for (int i = 0; i < 32; i++) {
        if (h[31 - i] != target_be[i])
            return h[31 - i] < target_be[i];
    }
    return 1;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    char tmpl[] = "/tmp/bench_hdrtree_XXXXXX";
    char dir[512];
    if (argc > 2) {
        snprintf(dir, sizeof(dir), "%s", argv[2]);
    } else {
        if (!mkdtemp(tmpl)) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(dir, sizeof(dir), "%s/headers", tmpl);
    }
    const btc_net *net = btc_net_get(BTC_NET_REGTEST);
    uint8_t target[32];
    btc_u256 limit;
    if (btc_bits_to_target(net->pow_limit_bits, &limit) != 0)
        return 1;
    btc_u256_to_be(target, &limit);

    uint8_t *buf = malloc(n * 80);
    if (!buf)
        return 1;
    uint8_t prev[32];
    cd_sha256d(prev, net->genesis_header, 80);
    uint32_t t = cd_le32(net->genesis_header + 68);
    double t0 = cd_now_s();
    for (size_t i = 0; i < n; i++) {
        uint8_t *h = buf + 80 * i;
        memset(h, 0, 80);
        cd_put_le32(h, 0x20000000);
        memcpy(h + 4, prev, 32);
        cd_put_le64(h + 36, i);
        cd_put_le32(h + 68, t += 60);
        cd_put_le32(h + 72, net->pow_limit_bits);
        for (uint32_t nonce = 0;; nonce++) {
            cd_put_le32(h + 76, nonce);
            if (meets(h, target))
                break;
        }
        cd_sha256d(prev, h, 80);
    }
    double t1 = cd_now_s();
    printf("mined %zu regtest headers in %.2f s (not part of the figures)\n", n, t1 - t0);

    cd_hdrtree *tree;
    if (cd_hdrtree_open(&tree, dir, net, 0) != 0)
        return 1;
    t0 = cd_now_s();
    for (size_t i = 0; i < n; i += CD_HDRTREE_MAX_BATCH) {
        size_t k = n - i < CD_HDRTREE_MAX_BATCH ? n - i : CD_HDRTREE_MAX_BATCH;
        int rc = cd_hdrtree_add(tree, buf + 80 * i, k, 80, NULL);
        if (rc != 0) {
            fprintf(stderr, "add failed at %zu: %s\n", i, cd_strerror(rc));
            return 1;
        }
    }
    t1 = cd_now_s();
    printf("add:    %zu headers in %.3f s = %.0f headers/s (batches of %d, one LMDB txn each)\n", n,
           t1 - t0, (double)n / (t1 - t0), CD_HDRTREE_MAX_BATCH);
    t0 = cd_now_s();
    for (size_t i = 0; i < n; i += CD_HDRTREE_MAX_BATCH) {
        size_t k = n - i < CD_HDRTREE_MAX_BATCH ? n - i : CD_HDRTREE_MAX_BATCH;
        if (cd_hdrtree_add(tree, buf + 80 * i, k, 80, NULL) != 0)
            return 1; /* known headers are no error */
    }
    t1 = cd_now_s();
    printf("known:  %zu headers in %.3f s = %.0f headers/s (already in the tree)\n", n, t1 - t0,
           (double)n / (t1 - t0));
    cd_hdrtree_close(tree);

    t0 = cd_now_s();
    if (cd_hdrtree_open(&tree, dir, net, 0) != 0)
        return 1;
    t1 = cd_now_s();
    printf("reopen: %zu headers loaded in %.3f s = %.0f headers/s (height %d)\n",
           cd_hdrtree_count(tree), t1 - t0, (double)cd_hdrtree_count(tree) / (t1 - t0),
           (int)cd_hdrtree_height(tree));
    cd_hdrtree_close(tree);
    free(buf);
    if (argc <= 2) {
        char p[600];
        snprintf(p, sizeof(p), "%s/data.mdb", dir);
        unlink(p);
        snprintf(p, sizeof(p), "%s/lock.mdb", dir);
        unlink(p);
        rmdir(dir);
        rmdir(tmpl);
    }
    return 0;
}
