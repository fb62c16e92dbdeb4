/*
 * bench_parse.c - full parse throughput on one core: for every transaction
 * the txid (sha256d), every input's outpoint, and the pushdata keys
 * (sha256) of every input and output script - what a parser worker
 * produces for PostgreSQL. Target: >= 600 MB/s/core (DESIGN.md §8).
 *
 * Times are thread CPU time (best of several runs), so figures are per core
 * even when other processes share the machine.
 *
 * usage: bench_parse [BLOCK_FILE] [MB]   (defaults: shared data, 128 MB)
 */
#include "bench_btc.h"

#include "bitcoin/btc_script.h"
#include "bitcoin/btc_tx.h"

#include <inttypes.h>

typedef struct sink {
    uint64_t x; /* folds results so nothing is optimised away */
    uint64_t n_in, n_keys;
} sink;

static void parse_all(const bench_buf *b, const uint64_t *off, sink *s)
{
    static btc_tx_push_key keys[4096];
    for (size_t t = 0; t < b->n_tx; t++) {
        size_t end = t + 1 < b->n_tx ? (size_t)off[t + 1] : b->len;
        btc_tx tx;
        int rc = btc_tx_parse(&tx, b->p + off[t], end - (size_t)off[t]);
        cd_assert(rc == 0);
        uint8_t id[32];
        btc_tx_txid(&tx, id);
        s->x += id[0];
        btc_tx_iter it;
        btc_txin in;
        btc_tx_inputs(&tx, &it);
        while (btc_tx_next_input(&it, &in)) {
            s->x += in.prev_txid[0] + in.prev_index;
            s->n_in++;
        }
        size_t k = btc_tx_push_keys(&tx, NULL, keys, CD_ARRAY_LEN(keys));
        s->n_keys += k;
        for (size_t i = 0; i < k && i < CD_ARRAY_LEN(keys); i++)
            s->x += keys[i].hash[0];
    }
}

static void run(const bench_buf *b)
{
    uint64_t *off = malloc(b->n_tx * sizeof(*off));
    size_t n, consumed;
    cd_assert(off && btc_preproc_scan(b->p, b->len, 0, off, b->n_tx, &n, &consumed) == 0);
    double best = 1e30;
    sink s = {0, 0, 0};
    for (int rep = 0; rep < 3; rep++) {
        sink r = {0, 0, 0};
        double t0 = bench_cpu_s();
        parse_all(b, off, &r);
        double t1 = bench_cpu_s();
        best = CD_MIN(best, t1 - t0);
        s = r;
    }
    printf("%-28s %8.1f MB in %7.1f ms: %6.0f MB/s  %5.2f M tx/s  (%" PRIu64 " inputs, %" PRIu64
           " keys; check %" PRIu64 ")\n",
           b->name, (double)b->len / 1e6, best * 1e3, (double)b->len / best / 1e6,
           (double)b->n_tx / best / 1e6, s.n_in, s.n_keys, s.x);
    free(off);
}

int main(int argc, char **argv)
{
    return bench_main(
        argc, argv, 128,
        "parse (txid + inputs + pushdata keys), one core, best of 3 (target >= 600 MB/s)", run);
}
