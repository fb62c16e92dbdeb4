/*
 * conduit_index_file.c - index raw block files into PostgreSQL through the
 * parser worker's code path (conduit-index-file; tests and benchmarks only).
 *
 * Why it exists: the transaction index must be provable on real chain data
 * before (and independently of) the p2p pipeline. This driver reads blocks
 * from files, cuts them into work units at transaction boundaries exactly as
 * the controller does, and hands each unit to cd_rows_index_unit - the same
 * function the parser worker calls. Then it completes each block as the
 * workers do (cd_pg_block_try_complete: all units present, merkle root of the
 * stored txids equals the header's) and the tip advances in height order.
 *
 * usage: conduit-index-file [options] --chain DIR        (headers.txt order)
 *        conduit-index-file [options] --block FILE --height H [--block ...]
 *  --conninfo S      libpq conninfo (default: PG* environment)
 *  --unit-size N     target work-unit bytes (default 32 MiB)
 *  --jobs N          parser processes (forked; each owns its connection)
 *  --copy binary|text  COPY format (default binary)
 *  --no-data         do not index DATA pushes
 *  --bulk            synchronous_commit=off
 *  --throttle-ms N   sleep after each unit (crash tests: time to kill -9)
 *  --indexes-after   drop the secondary indexes for the load, build them at
 *                    the end (cd_pg_secondary_indexes; the fast bulk path)
 *  --migrate-only    apply the schema and exit
 *
 * Exit: 0 all blocks indexed and the tip advanced; 1 error; 2 usage; 3 the
 * database schema is newer than this binary.
 *
 * NOTES: the parent registers every block before forking; children open their
 * own cd_pg after fork (no PGconn crosses a fork). A child that dies leaves
 * its units uncommitted; running the driver again redoes exactly those.
 */
#include "btc_preproc.h"
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"
#include "cd_config.h"
#include "cd_pg.h"
#include "cd_rows.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct blk {
    char *path;
    int32_t height;
    uint8_t *data;
    size_t len;
    uint8_t hash[32];
    uint64_t tx_count;
    int64_t block_id;
    /* units: start offsets (block-relative) and first tx */
    size_t n_units;
    uint64_t *u_off;
    uint32_t *u_first;
} blk;

static struct {
    const char *conninfo;
    uint64_t unit_size;
    unsigned jobs;
    cd_pg_copy_format format;
    int data;
    int bulk;
    unsigned throttle_ms;
    int migrate_only;
    int indexes_after;
} opt = {NULL, 32u << 20, 1, CD_PG_COPY_BINARY, 1, 0, 0, 0, 0};

static volatile sig_atomic_t stop_flag;

static void on_term(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cd_log_error("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        cd_log_error("cannot read %s", path);
        free(b);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Loads a block and cuts it into units at tx boundaries. */
static int load_block(blk *b)
{
    b->data = read_all(b->path, &b->len);
    if (!b->data)
        return -1;
    int pre = btc_block_prefix(b->data, b->len, NULL, &b->tx_count);
    if (pre <= 0) {
        cd_log_error("%s: not a block (%s)", b->path, cd_strerror(pre));
        return -1;
    }
    btc_header_hash(b->data, b->hash);
    size_t cap = 16;
    b->u_off = cd_xmalloc(cap * sizeof(uint64_t));
    b->u_first = cd_xmalloc(cap * sizeof(uint32_t));
    size_t off = (size_t)pre, unit_start = off;
    uint64_t ntx = 0;
    uint32_t unit_first = 0;
    b->n_units = 0;
    while (off < b->len) {
        int64_t sz = btc_tx_skip(b->data + off, b->len - off);
        if (sz <= 0) {
            cd_log_error("%s: malformed tx %" PRIu64 " at offset %zu", b->path, ntx, off);
            return -1;
        }
        off += (size_t)sz;
        ntx++;
        if (off - unit_start >= opt.unit_size || off == b->len) {
            if (b->n_units == cap) {
                cap *= 2;
                b->u_off = cd_xrealloc(b->u_off, cap * sizeof(uint64_t));
                b->u_first = cd_xrealloc(b->u_first, cap * sizeof(uint32_t));
            }
            b->u_off[b->n_units] = unit_start;
            b->u_first[b->n_units] = unit_first;
            b->n_units++;
            unit_start = off;
            unit_first = (uint32_t)ntx;
        }
    }
    if (ntx != b->tx_count) {
        cd_log_error("%s: %" PRIu64 " txs found, header says %" PRIu64, b->path, ntx, b->tx_count);
        return -1;
    }
    return 0;
}

static size_t unit_end(const blk *b, size_t u)
{
    return u + 1 < b->n_units ? b->u_off[u + 1] : b->len;
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

/* Indexes every unit whose global number g satisfies g % jobs == job. */
static int run_units(blk *blocks, size_t n_blocks, unsigned job)
{
    cd_pg *pg = pg_for(opt.conninfo);
    cd_pg_set_retry(pg, 0, 2000, &stop_flag);
    cd_pg_set_bulk(pg, opt.bulk);
    cd_pg_unit u;
    cd_pg_unit_init(&u, opt.format);
    cd_rows_opts po = {opt.data, 0};
    uint64_t g = 0;
    int rc = 0;
    for (size_t i = 0; i < n_blocks && rc >= 0; i++) {
        blk *b = &blocks[i];
        for (size_t k = 0; k < b->n_units && rc >= 0; k++, g++) {
            if (g % opt.jobs != job)
                continue;
            size_t s = b->u_off[k], e = unit_end(b, k);
            uint32_t ntx =
                (k + 1 < b->n_units ? b->u_first[k + 1] : (uint32_t)b->tx_count) - b->u_first[k];
            rc = cd_rows_index_unit(pg, &u, b->block_id, (uint32_t)k, b->data + s, e - s, s,
                                    b->u_first[k], ntx, &po);
            if (rc < 0)
                cd_log_error("%s unit %zu: indexing failed (%d)", b->path, k, rc);
            else if (opt.throttle_ms) {
                struct timespec ts = {opt.throttle_ms / 1000,
                                      (long)(opt.throttle_ms % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
    }
    cd_pg_unit_free(&u);
    cd_pg_free(pg);
    return rc < 0 ? 1 : 0;
}

static int add_chain(const char *dir, blk **blocks, size_t *n, size_t *cap)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/headers.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        cd_log_error("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char line[256];
    int32_t h = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0])
            continue;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            *blocks = cd_xrealloc(*blocks, *cap * sizeof(blk));
        }
        blk *b = &(*blocks)[(*n)++];
        memset(b, 0, sizeof(*b));
        snprintf(path, sizeof(path), "%s/%s", dir, line);
        b->path = cd_xstrdup(path);
        b->height = h++;
    }
    fclose(f);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: conduit-index-file [--conninfo S] [--unit-size N] [--jobs N]\n"
                    "         [--copy binary|text] [--no-data] [--bulk] [--throttle-ms N]\n"
                    "         [--indexes-after] [--migrate-only]\n"
                    "         (--chain DIR | --block FILE --height H)...\n");
}

int main(int argc, char **argv)
{
    cd_log_set_component("conduit-index-file");
    blk *blocks = NULL;
    size_t n = 0, cap = 0;
    const char *pending_block = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--migrate-only")) {
            opt.migrate_only = 1;
            continue;
        }
        if (!strcmp(a, "--no-data")) {
            opt.data = 0;
            continue;
        }
        if (!strcmp(a, "--bulk")) {
            opt.bulk = 1;
            continue;
        }
        if (!strcmp(a, "--indexes-after")) {
            opt.indexes_after = 1;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--conninfo"))
            opt.conninfo = v;
        else if (!strcmp(a, "--unit-size"))
            opt.unit_size = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--jobs"))
            opt.jobs = (unsigned)atoi(v);
        else if (!strcmp(a, "--throttle-ms"))
            opt.throttle_ms = (unsigned)atoi(v);
        else if (!strcmp(a, "--copy"))
            opt.format = !strcmp(v, "text") ? CD_PG_COPY_TEXT : CD_PG_COPY_BINARY;
        else if (!strcmp(a, "--chain")) {
            if (add_chain(v, &blocks, &n, &cap))
                return 1;
        } else if (!strcmp(a, "--block"))
            pending_block = v;
        else if (!strcmp(a, "--height") && pending_block) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                blocks = cd_xrealloc(blocks, cap * sizeof(blk));
            }
            memset(&blocks[n], 0, sizeof(blk));
            blocks[n].path = cd_xstrdup(pending_block);
            blocks[n].height = atoi(v);
            n++;
            pending_block = NULL;
        } else {
            usage();
            return 2;
        }
    }
    if (opt.jobs == 0 || opt.unit_size == 0 || pending_block) {
        usage();
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    cd_pg *pg = pg_for(opt.conninfo);
    cd_pg_set_retry(pg, 0, 2000, &stop_flag);
    int rc = cd_pg_migrate(pg);
    if (rc == CD_PG_ENEWER)
        return 3;
    if (rc)
        return 1;
    if (opt.migrate_only) {
        cd_pg_free(pg);
        return 0;
    }
    if (opt.indexes_after && cd_pg_secondary_indexes(pg, 0))
        return 1;
    double t0 = cd_now_s();
    uint64_t bytes = 0, txs = 0, units = 0;
    for (size_t i = 0; i < n; i++) {
        if (load_block(&blocks[i]))
            return 1;
        blk *b = &blocks[i];
        if (cd_pg_block_register(pg, b->hash, b->data, b->height, b->tx_count, b->len,
                                 &b->block_id))
            return 1;
        bytes += b->len;
        txs += b->tx_count;
        units += b->n_units;
    }
    /* Parse + COPY: in this process or in forked children. */
    int failed = 0;
    if (opt.jobs == 1) {
        failed = run_units(blocks, n, 0);
    } else {
        cd_pg_free(pg); /* no PGconn crosses the fork */
        pg = NULL;
        fflush(NULL);
        pid_t *kids = cd_xcalloc(opt.jobs, sizeof(pid_t));
        for (unsigned j = 0; j < opt.jobs; j++) {
            kids[j] = fork();
            if (kids[j] == 0) {
                char name[48];
                snprintf(name, sizeof(name), "conduit-index-file/parser-%u", j);
                cd_log_set_component(name);
                _exit(run_units(blocks, n, j));
            }
            cd_log_info("parser %u pid %d", j, (int)kids[j]);
        }
        for (unsigned j = 0; j < opt.jobs; j++) {
            int st;
            while (waitpid(kids[j], &st, 0) < 0 && errno == EINTR)
                ;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                cd_log_error("parser %u (pid %d) failed (status %d)", j, (int)kids[j], st);
                failed = 1;
            }
        }
        free(kids);
        pg = pg_for(opt.conninfo);
        cd_pg_set_retry(pg, 0, 2000, &stop_flag);
    }
    double t1 = cd_now_s();
    /* Block bookkeeping, as the parser workers do it after their commits:
     * completeness + merkle check over the stored txids, then the tip. */
    size_t advanced = 0;
    for (size_t i = 0; i < n && !failed; i++) {
        int indexed = 0;
        if (cd_pg_block_try_complete(pg, blocks[i].block_id, &indexed) || !indexed) {
            cd_log_error("%s: block not complete", blocks[i].path);
            failed = 1;
            break;
        }
        advanced++;
    }
    if (opt.indexes_after && !failed && cd_pg_secondary_indexes(pg, 1))
        failed = 1;
    int32_t tip = -1;
    if (!failed && cd_pg_tip_height(pg, &tip) != CD_PG_OK)
        failed = 1;
    double dt = t1 - t0 > 0 ? t1 - t0 : 1e-9;
    printf("indexed %zu blocks, %" PRIu64 " txs, %" PRIu64 " units, %.1f MB in %.3f s: "
           "%.0f tx/s, %.1f MB/s; tip height %d\n",
           advanced, txs, units, (double)bytes / 1e6, dt, (double)txs / dt,
           (double)bytes / 1e6 / dt, (int)tip);
    cd_pg_free(pg);
    for (size_t i = 0; i < n; i++) {
        free(blocks[i].path);
        free(blocks[i].data);
        free(blocks[i].u_off);
        free(blocks[i].u_first);
    }
    free(blocks);
    return failed ? 1 : 0;
}
