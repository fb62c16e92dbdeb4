/*
 * bench_preproc.c - preprocessor throughput (transaction boundaries per
 * second on one core) over (a) mainnet block 413567's transactions
 * repeated and (b) synthetic P2PKH transactions. Target: >= 5 GB/s/core
 * (DESIGN.md §8).
 *
 * Times are thread CPU time (best of several runs), so figures are per core
 * even when other processes share the machine.
 *
 * usage: bench_preproc [BLOCK_FILE] [MB]   (defaults: shared data, 256 MB)
 */
#include "bench_btc.h"

#include <inttypes.h>

static void run(const bench_buf *b)
{
    uint64_t *off = malloc(b->n_tx * sizeof(*off));
    cd_assert(off != NULL);
    double best = 1e30;
    size_t n = 0, consumed = 0;
    for (int rep = 0; rep < 7; rep++) {
        double t0 = bench_cpu_s();
        int rc = btc_preproc_scan(b->p, b->len, 0, off, b->n_tx, &n, &consumed);
        double t1 = bench_cpu_s();
        cd_assert(rc == 0 && n == b->n_tx && consumed == b->len);
        best = CD_MIN(best, t1 - t0);
    }
    printf("%-28s scan      %8.1f MB in %7.2f ms: %8.0f MB/s  %6.1f M tx/s\n", b->name,
           (double)b->len / 1e6, best * 1e3, (double)b->len / best / 1e6, (double)n / best / 1e6);

    /* streaming: 1 MiB windows as a socket reader / ring would feed them */
    best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        btc_preproc pp;
        btc_preproc_init(&pp, 0);
        size_t total = 0, got;
        double t0 = bench_cpu_s();
        for (size_t end = 0; end < b->len;) {
            end = CD_MIN(end + (1u << 20), b->len);
            if (pp.pos >= end)
                continue;
            int rc = btc_preproc_feed(&pp, b->p + pp.pos, pp.pos, end - (size_t)pp.pos, off + total,
                                      b->n_tx - total, &got);
            cd_assert(rc == 0);
            total += got;
        }
        double t1 = bench_cpu_s();
        cd_assert(total == b->n_tx);
        best = CD_MIN(best, t1 - t0);
    }
    printf("%-28s feed 1MiB %8.1f MB in %7.2f ms: %8.0f MB/s  %6.1f M tx/s\n", b->name,
           (double)b->len / 1e6, best * 1e3, (double)b->len / best / 1e6,
           (double)b->n_tx / best / 1e6);
    free(off);
}

int main(int argc, char **argv)
{
    return bench_main(argc, argv, 256,
                      "preprocessor, one core, best of several runs (target >= 5000 MB/s)", run);
}
