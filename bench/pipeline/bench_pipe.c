/*
 * bench_pipe.c - micro-benchmarks of the block pipeline's parts; prints
 * figures (docs/PERFORMANCE.md), asserts nothing about time.
 *
 *   ring-ingest   a forked loopback TCP peer sends N bytes as fast as it can;
 *                 we recv() straight into the shared-memory ring (the p2p sink
 *                 path) and release as we go. MB/s. Target >= 1.5 GB/s.
 *   preproc       btc_preproc_feed over the transactions of mainnet block
 *                 413567, streamed from the ring in 1 MiB pieces. MB/s/core.
 *   lmdb-append   cd_blockstore begin/append(32 MiB)/finish of 256 MiB blocks
 *                 (MDB_APPEND chunks, fsync per block). MB/s.
 *
 * usage: bench-pipe [ring-ingest|preproc|lmdb-append|all] [--mb N] [--dir D]
 * (end-to-end blocks/s and MB/s: cd-pipe-feed, see docs/PERFORMANCE.md)
 */
#include "btc_preproc.h"
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"
#include "cd_ring.h"
#include "cd_blockstore.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t opt_mb = 4096;
static const char *opt_dir = "/tmp";

static void bench_ring_ingest(void)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0) {
        perror("listen");
        exit(1);
    }
    uint64_t total = opt_mb << 20;
    pid_t pid = fork();
    if (pid == 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&a, sizeof(a)) != 0)
            _exit(1);
        size_t bl = 4u << 20;
        uint8_t *buf = malloc(bl);
        memset(buf, 0x5a, bl);
        uint64_t left = total;
        while (left) {
            ssize_t w = send(s, buf, (size_t)CD_MIN((uint64_t)bl, left), 0);
            if (w <= 0)
                _exit(1);
            left -= (uint64_t)w;
        }
        close(s);
        _exit(0);
    }
    int c = accept(ls, NULL, NULL);
    close(ls);
    char name[CD_RING_NAME_MAX];
    snprintf(name, sizeof(name), "/cd-bench-ring-%d", (int)getpid());
    cd_ring r;
    if (cd_ring_create(&r, name, 64ull << 20) != 0)
        exit(1);
    uint64_t got = 0;
    double t0 = cd_now_s();
    while (got < total) {
        uint8_t *p;
        uint64_t n = cd_ring_writable(&r, &p);
        n = CD_MIN(n, (uint64_t)(8u << 20)); /* one recv at most 8 MiB */
        ssize_t k = recv(c, p, (size_t)n, 0);
        if (k <= 0)
            break;
        cd_ring_produce(&r, (uint64_t)k);
        got += (uint64_t)k;
        /* consumers keep up: release what is older than half the ring */
        if (cd_ring_used(&r) > r.size / 2)
            cd_ring_release(&r, cd_ring_used(&r) - r.size / 4);
    }
    double dt = cd_now_s() - t0;
    int st;
    waitpid(pid, &st, 0);
    close(c);
    cd_ring_destroy(&r);
    printf("ring-ingest: %llu MB in %.3f s = %.0f MB/s (loopback TCP, 64 MiB ring, recv "
           "straight into the ring)\n",
           (unsigned long long)(got >> 20), dt, (double)got / dt / 1e6);
}

static void bench_preproc(void)
{
    char path[4096];
    const char *d = getenv("CD_SHARED_DATA");
    snprintf(path, sizeof(path), "%s/mainnet/block413567.raw", d ? d : "../shared/data");
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return;
    }
    uint8_t *blk = malloc(1 << 20);
    size_t len = fread(blk, 1, 1 << 20, f);
    fclose(f);
    uint64_t txc;
    int pre = btc_block_prefix(blk, len, NULL, &txc);
    if (pre <= 0)
        return;
    /* a stream of the block's txs repeated, in a ring, fed 1 MiB at a time */
    char name[CD_RING_NAME_MAX];
    snprintf(name, sizeof(name), "/cd-bench-pp-%d", (int)getpid());
    cd_ring r;
    if (cd_ring_create(&r, name, 16ull << 20) != 0)
        return;
    size_t body = len - (size_t)pre;
    for (uint64_t o = 0; o + body <= r.size; o += body)
        memcpy(r.data + o, blk + pre, body);
    uint64_t reps = r.size / body;
    uint64_t stream = reps * body;
    uint64_t *offs = malloc(1 << 20);
    uint64_t total = 0, txs = 0;
    double t0 = cd_now_s();
    for (int round = 0; round < 200; round++) {
        btc_preproc pp;
        btc_preproc_init(&pp, 0);
        for (uint64_t fed = 0; fed < stream;) {
            uint64_t n = CD_MIN((uint64_t)(1u << 20), stream - fed);
            fed += n;
            while (pp.pos < fed) {
                size_t k = 0;
                int frc = btc_preproc_feed(&pp, r.data + pp.pos, pp.pos, (size_t)(fed - pp.pos),
                                           offs, (1 << 20) / 8, &k);
                if (frc < 0) {
                    fprintf(stderr, "preproc: %s\n", cd_strerror(frc));
                    break;
                }
                txs += k;
                if (k == 0)
                    break;
            }
        }
        total += stream;
    }
    double dt = cd_now_s() - t0;
    printf("preproc: %llu MB, %llu txs in %.3f s = %.0f MB/s per core (btc_preproc_feed, block "
           "413567 txs, 1 MiB pieces)\n",
           (unsigned long long)(total >> 20), (unsigned long long)txs, dt,
           (double)total / dt / 1e6);
    free(offs);
    free(blk);
    cd_ring_destroy(&r);
}

static void bench_lmdb_append(void)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/cd-bench-lmdb-%d", opt_dir, (int)getpid());
    cd_blockstore *bs;
    if (cd_blockstore_open(dir, 0, 0, &bs) != 0)
        return;
    uint64_t unit = 32ull << 20, bsize = 256ull << 20;
    uint8_t *buf = malloc(unit);
    for (uint64_t i = 0; i < unit; i++)
        buf[i] = (uint8_t)(i * 2654435761u >> 13);
    uint64_t nblocks = CD_MAX(opt_mb / 256, 1);
    double t0 = cd_now_s();
    for (uint64_t b = 0; b < nblocks; b++) {
        cd_put_le64(buf, b);
        uint8_t hash[32];
        cd_sha256d(hash, buf, 80);
        uint64_t off = 100;
        if (cd_blockstore_begin(bs, hash, buf, (uint32_t)b, bsize, 1) != 0)
            break;
        for (uint64_t done = 0; done < bsize; done += unit) {
            if (cd_blockstore_append(bs, buf, (size_t)unit, done == 0 ? &off : NULL, done == 0) !=
                0) {
                fprintf(stderr, "append failed\n");
                exit(1);
            }
        }
        if (cd_blockstore_finish(bs) != 0)
            exit(1);
    }
    double dt = cd_now_s() - t0;
    cd_blockstore_close(bs);
    printf("lmdb-append: %llu MB in %.3f s = %.0f MB/s (4 MiB chunks, MDB_APPEND, 32 MiB txns, "
           "fsync per 256 MiB block)\n",
           (unsigned long long)(nblocks * bsize >> 20), dt, (double)(nblocks * bsize) / dt / 1e6);
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(buf);
}

int main(int argc, char **argv)
{
    cd_log_set_level(CD_LOG_WARN);
    const char *what = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mb") && i + 1 < argc)
            opt_mb = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            opt_dir = argv[++i];
        else if (argv[i][0] != '-')
            what = argv[i];
        else {
            fprintf(stderr, "usage: bench-pipe [ring-ingest|preproc|lmdb-append|all] [--mb N] "
                            "[--dir D]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    int all = !strcmp(what, "all");
    if (all || !strcmp(what, "ring-ingest"))
        bench_ring_ingest();
    if (all || !strcmp(what, "preproc"))
        bench_preproc();
    if (all || !strcmp(what, "lmdb-append"))
        bench_lmdb_append();
    return 0;
}
