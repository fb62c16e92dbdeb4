/*
 * bench_script_dedup.c - the pushdata walk of one large data-carrier script
 * (OP_FALSE OP_RETURN then N distinct 3-byte pushes, each yielded once):
 * the de-duplication of scripts with more than 32 candidate pushes. Before
 * the sorted de-duplication (btc_script.c) every such candidate re-walked
 * the script from its start, so the time grew with N squared; found by
 * fuzz/fuzz_script. Prints thread CPU time per size.
 *
 * usage: bench_script_dedup [N...]   (default: 10000 40000 400000 2500000;
 *        2,500,000 pushes is a 10 MB script)
 */
#include "bench_btc.h"

#include "btc_script.h"

static int count_fn(void *ctx, const uint8_t *data, size_t len, unsigned flags)
{
    (void)data;
    (void)len;
    (void)flags;
    ++*(size_t *)ctx;
    return 0;
}

static void run(size_t n)
{
    uint8_t *s = malloc(2 + n * 4);
    if (!s) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    size_t k = 0;
    s[k++] = 0x00; /* OP_FALSE OP_RETURN */
    s[k++] = 0x6a;
    for (size_t i = 0; i < n; i++) {
        s[k++] = 3;
        s[k++] = (uint8_t)i;
        s[k++] = (uint8_t)(i >> 8);
        s[k++] = (uint8_t)(i >> 16);
    }
    size_t got = 0;
    double t0 = bench_cpu_s();
    int r = btc_script_pushes(s, k, BTC_PUSH_OUTPUT, NULL, count_fn, &got);
    double t = bench_cpu_s() - t0;
    printf("%9zu pushes (%9zu bytes): %d yielded, %.3f s CPU, %.0f ns/push\n", n, k, r, t,
           t * 1e9 / (double)n);
    free(s);
}

int main(int argc, char **argv)
{
    static const size_t def[] = {10000, 40000, 400000, 2500000};
    if (argc > 1)
        for (int i = 1; i < argc; i++)
            run((size_t)strtoull(argv[i], NULL, 10));
    else
        for (size_t i = 0; i < sizeof(def) / sizeof(def[0]); i++)
            run(def[i]);
    return 0;
}
