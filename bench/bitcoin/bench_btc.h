/*
 * bench_btc.h - shared helpers of the bitcoin-format benchmarks: build the
 * two workloads (real block 413567 repeated, synthetic P2PKH transactions)
 * as one contiguous buffer of back-to-back transactions.
 */
#ifndef BENCH_BTC_H
#define BENCH_BTC_H

#include "btc_preproc.h"
#include "btc_varint.h"
#include "cd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* CPU time of the calling thread in seconds: the figures are per core, and
 * on a shared machine wall time also counts time spent descheduled. */
static inline double bench_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct bench_buf {
    uint8_t *p;
    size_t len;
    size_t n_tx;
    const char *name;
} bench_buf;

static inline uint64_t bench_rand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}

/* Reads a whole file (malloc'd); NULL on failure. */
static inline uint8_t *bench_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* The transactions of a raw block, repeated until the buffer holds at
 * least `target` bytes. Returns 0, -1 if the block cannot be read. */
static inline int bench_block_repeated(bench_buf *b, const char *path, size_t target)
{
    size_t len;
    uint8_t *blk = bench_read(path, &len);
    if (!blk)
        return -1;
    uint64_t count;
    int pl = btc_block_prefix(blk, len, NULL, &count);
    if (pl <= 0) {
        free(blk);
        return -1;
    }
    size_t body = len - (size_t)pl;
    size_t reps = (target + body - 1) / body;
    b->p = malloc(reps * body);
    if (!b->p) {
        free(blk);
        return -1;
    }
    for (size_t r = 0; r < reps; r++)
        memcpy(b->p + r * body, blk + pl, body);
    b->len = reps * body;
    b->n_tx = reps * count;
    b->name = "block413567 repeated";
    free(blk);
    return 0;
}

/* Synthetic P2PKH transactions: 1 input (72-byte signature + 33-byte
 * pubkey scriptSig), 2 P2PKH outputs; 226 bytes each; random hashes. */
static inline void bench_p2pkh(bench_buf *b, size_t target)
{
    const size_t txsz = 226;
    size_t n = target / txsz;
    b->p = malloc(n * txsz);
    cd_assert(b->p != NULL);
    uint64_t seed = 42;
    uint8_t *q = b->p;
    for (size_t t = 0; t < n; t++) {
        uint8_t *s = q;
        cd_put_le32(q, 1);
        q += 4;
        *q++ = 1;
        for (int i = 0; i < 32; i++)
            *q++ = (uint8_t)bench_rand(&seed);
        cd_put_le32(q, (uint32_t)(bench_rand(&seed) % 4));
        q += 4;
        *q++ = 107; /* scriptSig: <72 sig> <33 pubkey> */
        *q++ = 72;
        for (int i = 0; i < 72; i++)
            *q++ = (uint8_t)bench_rand(&seed);
        *q++ = 33;
        *q++ = 2;
        for (int i = 0; i < 32; i++)
            *q++ = (uint8_t)bench_rand(&seed);
        cd_put_le32(q, 0xffffffff);
        q += 4;
        *q++ = 2;
        for (int o = 0; o < 2; o++) {
            cd_put_le64(q, bench_rand(&seed) % 100000000);
            q += 8;
            *q++ = 25;
            *q++ = 0x76;
            *q++ = 0xa9;
            *q++ = 0x14;
            for (int i = 0; i < 20; i++)
                *q++ = (uint8_t)bench_rand(&seed);
            *q++ = 0x88;
            *q++ = 0xac;
        }
        cd_put_le32(q, 0);
        q += 4;
        cd_assert((size_t)(q - s) == txsz);
    }
    b->len = n * txsz;
    b->n_tx = n;
    b->name = "synthetic P2PKH (226 B/tx)";
}

/* Default location of block413567.raw: argv, CD_SHARED_DATA, ../shared/data. */
static inline const char *bench_block_path(char *buf, size_t cap)
{
    const char *d = getenv("CD_SHARED_DATA");
    snprintf(buf, cap, "%s/mainnet/block413567.raw", d ? d : "../shared/data");
    return buf;
}

/* The common main() of the bitcoin benchmarks: argv[1] = block file (default
 * block413567.raw from the shared data), argv[2] = MB per workload. Runs `run`
 * on the real block repeated to that size, then on synthetic P2PKH txs. */
static inline int bench_main(int argc, char **argv, size_t default_mb, const char *title,
                             void (*run)(const bench_buf *b))
{
    char pathbuf[4096];
    const char *path = argc > 1 ? argv[1] : bench_block_path(pathbuf, sizeof(pathbuf));
    size_t mb = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : default_mb;
    bench_buf b;
    printf("%s\n", title);
    if (bench_block_repeated(&b, path, mb << 20) == 0) {
        run(&b);
        free(b.p);
    } else {
        fprintf(stderr, "cannot read %s; skipping the real-block workload\n", path);
    }
    bench_p2pkh(&b, mb << 20);
    run(&b);
    free(b.p);
    return 0;
}

#endif /* BENCH_BTC_H */
