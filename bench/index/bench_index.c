/*
 * bench_index.c - end-to-end index rate: generated realistic transactions ->
 * parser (cd_rows_parse_unit) -> COPY -> PostgreSQL, exactly-once commits.
 *
 * Why it exists: DESIGN.md section 8 sets >= 100k tx/s sustained into
 * PostgreSQL with all tables (transactions, inputs, pushdata). This program
 * prints the figures docs/PERFORMANCE.md records, for each index strategy.
 *
 * usage: bench_index [--txs N] [--block-txs N] [--unit-txs N] [--jobs N]
 *                    [--copy binary|text] [--sync on|off]
 *                    [--indexes live|after] [--keys full32|prefix8] [--parse-only]
 * Connects with CD_TEST_PG_CONNINFO or the PG* environment (run it under
 * tests/pgserver.py), creates a fresh database per run.
 *
 * Transactions: P2PKH-style, 1-3 inputs (72-byte signature + 33-byte pubkey
 * scriptSig), 2 P2PKH outputs, and every 10th tx an OP_FALSE OP_RETURN
 * output with a 32-byte push: about 300 bytes per tx, 2 input rows and ~4
 * pushdata rows per tx (INPUT pubkey per input, OUTPUT hash160 per output).
 */
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"
#include "cd_config.h"
#include "cd_pg.h"
#include "cd_rows.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static void rnd_bytes(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rnd() >> 24);
}

/* Appends one generated tx at p; returns its size. */
static size_t gen_tx(uint8_t *p)
{
    uint8_t *s = p;
    cd_put_le32(p, 1);
    p += 4;
    unsigned nin = 1 + (unsigned)(rnd() % 3);
    *p++ = (uint8_t)nin;
    for (unsigned i = 0; i < nin; i++) {
        rnd_bytes(p, 32);
        cd_put_le32(p + 32, (uint32_t)(rnd() % 4));
        p += 36;
        *p++ = 1 + 72 + 1 + 33; /* scriptSig: <sig> <pubkey> */
        *p++ = 72;
        rnd_bytes(p, 72);
        p += 72;
        *p++ = 33;
        *p = 2;
        rnd_bytes(p + 1, 32);
        p += 33;
        cd_put_le32(p, 0xFFFFFFFFu);
        p += 4;
    }
    int data = rnd() % 10 == 0;
    *p++ = (uint8_t)(2 + data);
    for (int o = 0; o < 2; o++) {
        cd_put_le64(p, rnd() % 100000000);
        p += 8;
        *p++ = 25;
        *p++ = 0x76;
        *p++ = 0xa9;
        *p++ = 20;
        rnd_bytes(p, 20);
        p += 20;
        *p++ = 0x88;
        *p++ = 0xac;
    }
    if (data) {
        cd_put_le64(p, 0);
        p += 8;
        *p++ = 2 + 1 + 32;
        *p++ = 0x00;
        *p++ = 0x6a;
        *p++ = 32;
        rnd_bytes(p, 32);
        p += 32;
    }
    cd_put_le32(p, 0);
    p += 4;
    return (size_t)(p - s);
}

/* CPU time of the calling thread in seconds (the parse-only figures). */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct blk {
    uint8_t *data; /* txs only (no header) */
    size_t len;
    uint32_t ntx;
    uint64_t *off; /* tx start offsets within data, ntx + 1 */
    int64_t block_id;
} blk;

static struct {
    uint64_t txs, block_txs, unit_txs;
    unsigned jobs;
    cd_pg_copy_format format;
    int sync;
    int after;
    int parse_only;
    int prefix; /* secondary indexes on the first 8 bytes of the hashes */
} opt = {1000000, 100000, 10000, 2, CD_PG_COPY_BINARY, 1, 0, 0, 0};

static void null_tx(void *c, uint32_t a, const uint8_t *h, uint64_t o, uint32_t s)
{
    (void)a, (void)h, (void)o, (void)s;
    (*(uint64_t *)c)++;
}
static void null_in(void *c, uint32_t a, uint32_t b, const uint8_t *h, uint32_t d)
{
    (void)c, (void)a, (void)b, (void)h, (void)d;
}
static void null_push(void *c, uint32_t a, uint32_t b, unsigned f, const uint8_t *k)
{
    (void)c, (void)a, (void)b, (void)f, (void)k;
}
static void null_out(void *c, uint32_t a, uint32_t b, uint64_t v, const uint8_t *s, size_t n,
                     const uint8_t *h)
{
    (void)c, (void)a, (void)b, (void)v, (void)s, (void)n, (void)h;
}

/* A cd_pg handle for a conninfo string (cd_pg_new reads only pg_conninfo
 * from the configuration, and copies it). */
static cd_pg *pg_for(const char *ci)
{
    cd_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.pg_conninfo = (char *)ci;
    return cd_pg_new(&cfg, NULL);
}

static int run_units(const char *ci, blk *blocks, size_t nb, unsigned job)
{
    cd_pg *pg = pg_for(ci);
    cd_pg_set_bulk(pg, !opt.sync);
    cd_pg_unit u;
    cd_pg_unit_init(&u, opt.format);
    cd_rows_opts po = {1, 0};
    uint64_t g = 0;
    for (size_t i = 0; i < nb; i++) {
        blk *b = &blocks[i];
        for (uint32_t t = 0, k = 0; t < b->ntx; t += (uint32_t)opt.unit_txs, k++, g++) {
            if (g % opt.jobs != job)
                continue;
            uint32_t e = t + (uint32_t)opt.unit_txs < b->ntx ? t + (uint32_t)opt.unit_txs : b->ntx;
            int rc = cd_rows_index_unit(pg, &u, b->block_id, k, b->data + b->off[t],
                                        b->off[e] - b->off[t], 81 + b->off[t], t, e - t, &po);
            if (rc < 0)
                return 1;
        }
    }
    cd_pg_unit_free(&u);
    cd_pg_free(pg);
    return 0;
}

static double scalar(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    double v = PQresultStatus(r) == PGRES_TUPLES_OK ? atof(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

int main(int argc, char **argv)
{
    cd_log_set_level(CD_LOG_WARN);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--parse-only")) {
            opt.parse_only = 1;
            continue;
        }
        i++;
        if (!strcmp(a, "--txs"))
            opt.txs = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--block-txs"))
            opt.block_txs = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--unit-txs"))
            opt.unit_txs = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--jobs"))
            opt.jobs = (unsigned)atoi(v);
        else if (!strcmp(a, "--copy"))
            opt.format = !strcmp(v, "text") ? CD_PG_COPY_TEXT : CD_PG_COPY_BINARY;
        else if (!strcmp(a, "--sync"))
            opt.sync = strcmp(v, "off") != 0;
        else if (!strcmp(a, "--indexes"))
            opt.after = !strcmp(v, "after");
        else if (!strcmp(a, "--keys"))
            opt.prefix = !strcmp(v, "prefix8");
        else {
            fprintf(stderr, "bench_index: unknown option %s\n", a);
            return 2;
        }
    }
    if (!opt.jobs || !opt.unit_txs || !opt.block_txs)
        return 2;
    /* generate */
    size_t nb = (size_t)((opt.txs + opt.block_txs - 1) / opt.block_txs);
    blk *blocks = cd_xcalloc(nb, sizeof(blk));
    uint64_t bytes = 0, left = opt.txs;
    for (size_t i = 0; i < nb; i++) {
        blk *b = &blocks[i];
        b->ntx = (uint32_t)(left < opt.block_txs ? left : opt.block_txs);
        left -= b->ntx;
        b->data = cd_xmalloc((size_t)b->ntx * 700);
        b->off = cd_xmalloc(((size_t)b->ntx + 1) * sizeof(uint64_t));
        for (uint32_t t = 0; t < b->ntx; t++) {
            b->off[t] = b->len;
            b->len += gen_tx(b->data + b->len);
        }
        b->off[b->ntx] = b->len;
        bytes += b->len;
    }
    /* parse only: the CPU side, one core. Thread CPU time, best of 3 passes:
     * a per-core figure even when other processes share the machine. */
    uint64_t cnt = 0;
    cd_rows_sink ns = {&cnt, null_tx, null_in, null_push, null_out};
    cd_rows_opts po = {1, 0};
    double tp = 1e30, te = 1e30, t0;
    for (int pass = 0; pass < 3; pass++) {
        cnt = 0;
        t0 = cpu_s();
        for (size_t i = 0; i < nb; i++)
            if (cd_rows_parse_unit(blocks[i].data, blocks[i].len, 81, 0, 0, &po, &ns, NULL) < 0)
                return 1;
        tp = CD_MIN(tp, cpu_s() - t0);
    }
    cd_pg_unit enc;
    cd_pg_unit_init(&enc, opt.format);
    uint64_t rows_in = 0, rows_pd = 0, rows_out = 0;
    for (int pass = 0; pass < 3; pass++) {
        rows_in = rows_pd = rows_out = 0;
        t0 = cpu_s();
        for (size_t i = 0; i < nb; i++) {
            cd_pg_unit_reset(&enc, 1, 0, 0);
            cd_rows_sink us = cd_rows_unit_sink(&enc);
            if (cd_rows_parse_unit(blocks[i].data, blocks[i].len, 81, 0, 0, &po, &us, NULL) < 0)
                return 1;
            rows_in += enc.in.rows;
            rows_pd += enc.pd.rows;
            rows_out += enc.out.rows;
        }
        te = CD_MIN(te, cpu_s() - t0);
    }
    cd_pg_unit_free(&enc);
    printf("generated %" PRIu64 " txs, %.1f MB (%.0f B/tx), %" PRIu64 " input rows, %" PRIu64
           " pushdata rows, %" PRIu64 " output rows\n",
           opt.txs, (double)bytes / 1e6, (double)bytes / (double)opt.txs, rows_in, rows_pd,
           rows_out);
    printf("parse (txid+inputs+pushdata+script hashes), 1 core: %.0f MB/s, %.0f tx/s (CPU time, "
           "best of 3)\n",
           (double)bytes / 1e6 / tp, (double)cnt / tp);
    printf("parse + %s COPY encoding, 1 core:           %.0f MB/s, %.0f tx/s\n",
           opt.format == CD_PG_COPY_BINARY ? "binary" : "text", (double)bytes / 1e6 / te,
           (double)opt.txs / te);
    if (opt.parse_only)
        return 0;

    /* a fresh database */
    const char *base = getenv("CD_TEST_PG_CONNINFO");
    base = base ? base : "";
    PGconn *c = PQconnectdb(base);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "bench_index: %s", PQerrorMessage(c));
        return 1;
    }
    char db[64], sql[256], ci[1024];
    snprintf(db, sizeof(db), "bench_%d", (int)getpid());
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
    PQclear(PQexec(c, sql));
    PQfinish(c);
    snprintf(ci, sizeof(ci), "%s dbname=%s", base, db);
    cd_pg *pg = pg_for(ci);
    if (cd_pg_migrate(pg))
        return 1;
    /* full32: the secondary indexes as sql/013 defines them
     * (cd_pg_secondary_indexes); prefix8: an experimental layout of the
     * three random-key indexes under the same names, 8-byte key prefixes */
    static const char *idx_prefix[] = {
        "CREATE INDEX transactions_hash_idx ON transactions (substring(tx_hash from 1 for 8))",
        "CREATE INDEX inputs_outpoint_idx ON inputs (substring(prev_hash from 1 for 8), prev_idx)",
        "CREATE INDEX pushdata_hash_idx ON pushdata (substring(push_hash from 1 for 8))"};
    if ((opt.after || opt.prefix) && cd_pg_secondary_indexes(pg, 0) != CD_PG_OK)
        return 1;
    if (opt.prefix && !opt.after)
        for (size_t i = 0; i < CD_ARRAY_LEN(idx_prefix); i++)
            if (cd_pg_exec(pg, idx_prefix[i]) != CD_PG_OK)
                return 1;
    for (size_t i = 0; i < nb; i++) {
        uint8_t hdr[80], h[32];
        rnd_bytes(hdr, 80);
        cd_sha256d(h, hdr, 80);
        if (cd_pg_block_register(pg, h, hdr, (int32_t)i, blocks[i].ntx, blocks[i].len + 81,
                                 &blocks[i].block_id))
            return 1;
    }
    cd_pg_free(pg);
    fflush(NULL);
    t0 = cd_now_s();
    pid_t *kids = cd_xcalloc(opt.jobs, sizeof(pid_t));
    for (unsigned j = 0; j < opt.jobs; j++) {
        kids[j] = fork();
        if (kids[j] == 0)
            _exit(run_units(ci, blocks, nb, j));
    }
    int failed = 0;
    for (unsigned j = 0; j < opt.jobs; j++) {
        int st;
        waitpid(kids[j], &st, 0);
        failed |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    double tl = cd_now_s() - t0, ti = 0;
    if (failed) {
        fprintf(stderr, "bench_index: a writer failed\n");
        return 1;
    }
    pg = pg_for(ci);
    if (opt.after) {
        double t1 = cd_now_s();
        if (!opt.prefix && cd_pg_secondary_indexes(pg, 1) != CD_PG_OK)
            return 1;
        for (size_t i = 0; opt.prefix && i < CD_ARRAY_LEN(idx_prefix); i++)
            if (cd_pg_exec(pg, idx_prefix[i]) != CD_PG_OK)
                return 1;
        ti = cd_now_s() - t1;
    }
    CD_IGNORE(cd_pg_exec(pg, "CHECKPOINT")); /* only evens out the next run */
    PGconn *q = cd_pg_conn(pg);
    double ntx = scalar(q, "SELECT count(*) FROM transactions");
    double nin = scalar(q, "SELECT count(*) FROM inputs");
    double npd = scalar(q, "SELECT count(*) FROM pushdata");
    double st = scalar(q, "SELECT pg_total_relation_size('transactions')");
    double si = scalar(q, "SELECT pg_total_relation_size('inputs')");
    double sp = scalar(q, "SELECT pg_total_relation_size('pushdata')");
    double sx = scalar(q, "SELECT pg_indexes_size('transactions') + pg_indexes_size('inputs') "
                          "+ pg_indexes_size('pushdata')");
    double total = tl + ti;
    printf("index into PostgreSQL: copy=%s sync=%s indexes=%s keys=%s jobs=%u unit=%" PRIu64
           " txs\n",
           opt.format == CD_PG_COPY_BINARY ? "binary" : "text", opt.sync ? "on" : "off",
           opt.after ? "after" : "live", opt.prefix ? "prefix8" : "full32", opt.jobs, opt.unit_txs);
    if (opt.after)
        printf("  load %.2f s + index build %.2f s: %.0f tx/s, %.1f MB/s\n", tl, ti, ntx / total,
               (double)bytes / 1e6 / total);
    else
        printf("  load %.2f s (indexes live): %.0f tx/s, %.1f MB/s\n", tl, ntx / total,
               (double)bytes / 1e6 / total);
    printf("  rows/s: transactions %.0f, inputs %.0f, pushdata %.0f (all %.0f)\n", ntx / total,
           nin / total, npd / total, (ntx + nin + npd) / total);
    printf("  disk: transactions %.1f MB, inputs %.1f MB, pushdata %.1f MB (indexes %.1f MB);"
           " %.0f bytes per tx\n",
           st / 1e6, si / 1e6, sp / 1e6, sx / 1e6, (st + si + sp) / ntx);
    cd_pg_free(pg);
    if (ntx != (double)opt.txs) {
        fprintf(stderr, "bench_index: %.0f tx rows, expected %" PRIu64 "\n", ntx, opt.txs);
        return 1;
    }
    return 0;
}
