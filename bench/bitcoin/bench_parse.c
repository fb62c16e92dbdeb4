/*
 * bench_parse.c - full parse throughput on one core: for every transaction
 * the txid (sha256d), every input's outpoint, and the pushdata keys
 * (sha256) of every input and output script - what a parser worker
 * produces for PostgreSQL. Target: >= 600 MB/s/core (DESIGN.md §8).
 *
 * Two variants of the same work, same results (the check sums must match):
 *  - "per tx": btc_tx_parse, btc_tx_txid, btc_tx_push_keys for each
 *    transaction, as a single-transaction caller does;
 *  - "batched": btc_txb_fill (btc_txbatch.h), what the parser worker runs
 *    (cd_rows_parse_unit): txids and keys of 32 txs hashed together, two
 *    SHA-NI lanes interleaved.
 *
 * Times are thread CPU time (best of several runs), so figures are per core
 * even when other processes share the machine; ns/tx is that CPU time per
 * transaction (the dev VM exposes no hardware counters to perf stat).
 *
 * usage: bench_parse [BLOCK_FILE] [MB]   (defaults: shared data, 128 MB;
 *        a BLOCK_FILE that does not exist runs the synthetic workload only)
 */
#include "bench_btc.h"

#include "btc_script.h"
#include "btc_sha256.h"
#include "btc_tx.h"
#include "btc_txbatch.h"

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

/* The worker's path: batches of back-to-back transactions. */
static void parse_batched(const bench_buf *b, const uint64_t *off, sink *s)
{
    (void)off;
    static btc_txb batch;
    btc_txb_init(&batch, BTC_TXB_TXID | BTC_TXB_KEYS, NULL);
    size_t pos = 0;
    while (pos < b->len) {
        size_t used;
        int n = btc_txb_fill(&batch, b->p + pos, b->len - pos, 0, &used);
        cd_assert(n > 0);
        for (int t = 0; t < n; t++) {
            const btc_txb_tx *bt = &batch.txs[t];
            s->x += bt->txid[0];
            btc_tx_iter it;
            btc_txin in;
            btc_tx_inputs(&bt->tx, &it);
            while (btc_tx_next_input(&it, &in)) {
                s->x += in.prev_txid[0] + in.prev_index;
                s->n_in++;
            }
            if (bt->keys_streamed) { /* more keys than a batch holds */
                static btc_tx_push_key keys[4096];
                size_t k = btc_tx_push_keys(&bt->tx, NULL, keys, CD_ARRAY_LEN(keys));
                s->n_keys += k;
                for (size_t i = 0; i < k && i < CD_ARRAY_LEN(keys); i++)
                    s->x += keys[i].hash[0];
                continue;
            }
            s->n_keys += bt->n_keys;
            for (uint32_t i = 0; i < bt->n_keys; i++)
                s->x += batch.keys[bt->first_key + i].hash[0];
        }
        pos += used;
    }
}

static void run_variant(const bench_buf *b, const uint64_t *off, const char *variant,
                        void (*parse)(const bench_buf *, const uint64_t *, sink *))
{
    double best = 1e30;
    sink s = {0, 0, 0};
    for (int rep = 0; rep < 5; rep++) {
        sink r = {0, 0, 0};
        double t0 = bench_cpu_s();
        parse(b, off, &r);
        double t1 = bench_cpu_s();
        best = CD_MIN(best, t1 - t0);
        s = r;
    }
    printf("%-28s %-8s %6.1f MB in %6.1f ms: %5.0f MB/s %5.2f M tx/s %6.1f ns/tx  (%" PRIu64
           " inputs, %" PRIu64 " keys; check %" PRIu64 ")\n",
           b->name, variant, (double)b->len / 1e6, best * 1e3, (double)b->len / best / 1e6,
           (double)b->n_tx / best / 1e6, best * 1e9 / (double)b->n_tx, s.n_in, s.n_keys, s.x);
}

static void run(const bench_buf *b)
{
    uint64_t *off = malloc(b->n_tx * sizeof(*off));
    size_t n, consumed;
    cd_assert(off && btc_preproc_scan(b->p, b->len, 0, off, b->n_tx, &n, &consumed) == 0);
    run_variant(b, off, "per tx", parse_all);
    run_variant(b, off, "batched", parse_batched);
    free(off);
}

int main(int argc, char **argv)
{
    if (getenv("CD_BENCH_NO_SHANI"))
        btc_sha256_set_accel(0); /* what a CPU without SHA-NI runs */
    printf("sha256: %s%s\n", btc_sha256_impl(),
           getenv("CD_BENCH_NO_SHANI") ? " (forced by CD_BENCH_NO_SHANI)" : "");
    return bench_main(
        argc, argv, 128,
        "parse (txid + inputs + pushdata keys), one core, best of 5 (target >= 600 MB/s)", run);
}
