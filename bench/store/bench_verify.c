/*
 * bench_verify.c - what the served-block check costs (issue 11, F7): a block
 * is re-hashed against its header (cd_blockstore_verify) before /v1/block and
 * `conduit-cli block` send it. Stores a real block in a throw-away LMDB block
 * store, then times, over N rounds, reading the block (what serving cost
 * before) and verifying it (the added work). Figures: docs/PERFORMANCE.md.
 *
 *   bench-verify <block.raw> <block.tx-offsets> [rounds]
 *   (../shared/data/mainnet/block413567.raw, .tx-offsets: 999,887 bytes)
 */
#include "btc_sha256.h"
#include "cd_blockstore.h"
#include "cd_hash.h"
#include "cd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench-verify <block.raw> <block.tx-offsets> [rounds]\n");
        return 2;
    }
    int rounds = argc > 3 ? atoi(argv[3]) : 200;
    size_t n = 0, on = 0;
    uint8_t *blk = slurp(argv[1], &n);
    char *otext = (char *)slurp(argv[2], &on);
    if (!blk || !otext || n < 81) {
        fprintf(stderr, "bench-verify: cannot read the block files\n");
        return 1;
    }
    otext[on] = '\0';
    size_t cap = 1024, ntx = 0;
    uint64_t *offs = malloc(cap * sizeof(uint64_t));
    for (char *p = otext; *p;) {
        char *e;
        unsigned long long v = strtoull(p, &e, 10);
        if (e == p)
            break;
        if (ntx == cap)
            offs = realloc(offs, (cap *= 2) * sizeof(uint64_t));
        offs[ntx++] = v;
        p = e;
        while (*p == '\n' || *p == '\r' || *p == ' ')
            p++;
    }
    char dir[] = "/tmp/bench_verify_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[64];
    snprintf(path, sizeof(path), "%s/blocks", dir);
    cd_blockstore *bs;
    if (cd_blockstore_open(path, 0, 0, &bs) != 0)
        return 1;
    uint8_t hash[32];
    cd_sha256d(hash, blk, 80);
    if (cd_blockstore_begin(bs, hash, blk, 1, n, ntx) != 0 ||
        cd_blockstore_append(bs, blk, n, offs, ntx) != 0 || cd_blockstore_finish(bs) != 0) {
        fprintf(stderr, "bench-verify: storing the block failed\n");
        return 1;
    }
    cd_block_loc loc;
    if (cd_blockstore_get(bs, hash, &loc) != 0)
        return 1;
    uint8_t *buf = malloc(n);
    double t0 = now_s();
    for (int i = 0; i < rounds; i++)
        if (cd_blockstore_read(bs, &loc, 0, buf, n) != 0)
            return 1;
    double t_read = (now_s() - t0) / rounds;
    char why[256];
    t0 = now_s();
    for (int i = 0; i < rounds; i++)
        if (cd_blockstore_verify(bs, hash, &loc, why, sizeof(why)) != 0) {
            fprintf(stderr, "bench-verify: the block does not verify: %s\n", why);
            return 1;
        }
    double t_ver = (now_s() - t0) / rounds;
    /* the floor: SHA-256d of the same bytes in one call (the check hashes
     * every byte twice plus the tree's nodes); under a loaded machine the
     * ratio verify / floor is the stable figure */
    uint8_t dig[32];
    t0 = now_s();
    for (int i = 0; i < rounds; i++)
        btc_sha256d(dig, blk, n);
    double t_floor = (now_s() - t0) / rounds;
    printf("block: %zu bytes, %zu txs, %d rounds\n", n, ntx, rounds);
    printf("read (serving before):   %8.3f ms/block  %8.1f MB/s\n", t_read * 1e3,
           (double)n / t_read / 1e6);
    printf("verify (added check):    %8.3f ms/block  %8.1f MB/s  (%.2f ms per MB)\n", t_ver * 1e3,
           (double)n / t_ver / 1e6, t_ver * 1e3 / ((double)n / 1e6));
    printf("sha256d floor:           %8.3f ms/block  %8.1f MB/s  (verify = %.2f x floor)\n",
           t_floor * 1e3, (double)n / t_floor / 1e6, t_ver / t_floor);
    cd_blockstore_close(bs);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    free(buf);
    free(blk);
    free(otext);
    free(offs);
    return 0;
}
