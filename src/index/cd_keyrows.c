/*
 * cd_keyrows.c - the key-rows process: the trailing step that derives the
 * per-key history and output rows (sql/014_key_rows.sql, cd_key_rows_advance)
 * behind the indexed tip.
 *
 * Why a process of its own: a batch resolves every input of its blocks to
 * the output it spends (a random index probe each), which is exactly the
 * cost issue 18 keeps off the live indexing path; here it runs beside it, in
 * its own PostgreSQL session, in transactions that commit rows and mark
 * together. The mempool process is not its home: its one connection is
 * pipelined with relay writes that must not wait behind a batch. The
 * controller only adds the row to the process table; the child runs a
 * libevent timer: while the mark is behind the tip, one batch per loop turn
 * (sized to take about CD_KEYROWS_TARGET_MS), else a poll every
 * CD_KEYROWS_POLL_MS. Before its first batch it builds the block indexes
 * (sql/021: B-trees on block_id, one partition per turn) that the batches
 * and the pages above its mark read by; without them each batch scanned
 * whole tables. Reads never depend on it for correctness: while it
 * lags (or is stopped) cd_history / cd_utxos read the blocks above the mark
 * or, beyond cd_key_rows_lag_max(), 007's scan.
 */
#include "cd_keyrows.h"

#include "cd_config.h"
#include "cd_log.h"
#include "cd_pg.h"
#include "cd_resident.h"
#include "cd_signals.h"
#include "cd_supervisor.h"
#include "cd_util.h"

#include <event2/event.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CD_KEYROWS_POLL_MS   500
#define CD_KEYROWS_RETRY_MS  5000
#define CD_KEYROWS_TARGET_MS 500.0
#define CD_KEYROWS_MAX_BATCH 200

typedef struct kr_child {
    const cd_config *cfg;
    struct event_base *base;
    struct event *tick;
    cd_pg *pg;
    int batch;       /* blocks per call, adapted to CD_KEYROWS_TARGET_MS */
    int failing;     /* an error was logged; the next success says so */
    int block_index_ready; /* every partition has its block index (sql/021) */
    double bi_t0;          /* when kr_block_index first ran; 0: not yet */
    int bi_missing;        /* partitions without it then */
    uint64_t streak; /* blocks derived since the mark last reached the tip */
    double streak_t0;
    int waiting;     /* the open tip's B-trees are dropped (said once) */
} kr_child;

static void kr_arm(kr_child *k, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(k->tick, &tv);
}

/* The session, connected; 0, or -1 (logged once until it works again). */
static int kr_connected(kr_child *k)
{
    if (cd_pg_connect(k->pg) == CD_PG_OK)
        return 0;
    if (!k->failing)
        cd_log_warn("key-rows: postgres is unreachable; retrying every %d s",
                    CD_KEYROWS_RETRY_MS / 1000);
    k->failing = 1;
    return -1;
}

/* `sql`, a call returning one integer, into *out; 0, or -1 (logged once
 * until a call works again). */
static int kr_int(kr_child *k, const char *sql, int *out)
{
    if (kr_connected(k) < 0)
        return -1;
    PGresult *r = PQexec(cd_pg_conn(k->pg), sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        if (!k->failing)
            cd_log_warn("key-rows: %s failed: %s", sql, PQerrorMessage(cd_pg_conn(k->pg)));
        k->failing = 1;
        PQclear(r);
        return -1;
    }
    *out = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (k->failing)
        cd_log_info("key-rows: running again");
    k->failing = 0;
    return 0;
}

/* Building the block indexes (sql/021) the batches read by, before the
 * first batch: first how many partitions lack theirs, then one partition
 * per call, so that a SIGTERM is seen between them and only the open tip's
 * build holds back its writers; the last call (none left) drops the BRIN
 * they replace (sql/022), so it is made even when none was missing.
 * Returns 0 when done, > 0 while calls remain, or -1 (logged). */
static int kr_block_index(kr_child *k)
{
    int left;
    if (k->bi_t0 == 0.0) {
        if (kr_int(k, "SELECT cd_block_index_missing()", &left) < 0)
            return -1;
        k->bi_t0 = cd_now_s();
        k->bi_missing = left;
        if (left > 0)
            cd_log_info("key-rows: building the block index of %d partitions first (sql/021)",
                        left);
        return 1;
    }
    if (kr_int(k, "SELECT cd_block_index_step()", &left) < 0)
        return -1;
    if (left > 0)
        cd_log_debug("key-rows: block index of one partition built; %d to go", left);
    else if (k->bi_missing > 0)
        cd_log_info("key-rows: block indexes built in %.1f s", cd_now_s() - k->bi_t0);
    return left;
}

/* Logs once that batches wait for the end of a catch-up. */
static void kr_wait_btrees(kr_child *k)
{
    if (!k->waiting)
        cd_log_info("key-rows: waiting: the open partition's B-trees are dropped (a catch-up)");
    k->waiting = 1;
}

/* One batch. Returns: blocks derived (0: at the tip, or waiting for the
 * end of a catch-up), or -1 (logged). */
static int kr_batch(kr_child *k)
{
    /* Not while catch-up mode has dropped the open tip's B-trees
     * (cd_pg_secondary_indexes): a batch resolves its spends and keys
     * through the secondary indexes, and without push_hash's it read the
     * tables whole (measured: the mark did not move during a 600k-tx
     * catch-up while PostgreSQL spent 40 % more CPU per tx). sql/016's own
     * test, cd_tx_hash_indexed, no longer sees a catch-up: it keeps the
     * hash index on tx_hash. This look, without a lock, only spares the
     * ANALYZE during a catch-up; the one that counts is the batch's own
     * (sql/025: a drop between the two was seen in CI). */
    int dropped;
    if (kr_int(k, "SELECT count(*)::integer FROM secondary_index_parts s WHERE NOT s.closed "
                  "AND to_regclass(quote_ident(s.name)) IS NULL",
               &dropped) < 0)
        return -1;
    if (dropped > 0) {
        kr_wait_btrees(k);
        return 0;
    }
    /* statistics first (sql/021): the tables a batch reads are young, and
     * planned without statistics a batch of 2 blocks took 32 s */
    int analyzed;
    if (kr_int(k, "SELECT cd_key_rows_analyze()", &analyzed) < 0)
        return -1;
    if (analyzed > 0)
        cd_log_debug("key-rows: analyzed %d tables before the batch", analyzed);
    char arg[16];
    snprintf(arg, sizeof(arg), "%d", k->batch);
    const char *vals[1] = {arg};
    double t0 = cd_now_s();
    PGresult *r = PQexecParams(cd_pg_conn(k->pg), "SELECT cd_key_rows_batch($1::integer)", 1,
                               NULL, vals, NULL, NULL, 0);
    double ms = (cd_now_s() - t0) * 1e3;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (st && strcmp(st, "40001") == 0) {
            /* a reorg during the batch: nothing was kept; again at once */
            cd_log_debug("key-rows: batch void (the best chain moved); again");
            PQclear(r);
            return 1;
        }
        if (!k->failing)
            cd_log_warn("key-rows: cd_key_rows_batch failed: %s",
                        PQerrorMessage(cd_pg_conn(k->pg)));
        k->failing = 1;
        PQclear(r);
        return -1;
    }
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (k->failing)
        cd_log_info("key-rows: running again");
    k->failing = 0;
    if (n < 0) {
        /* dropped after the look above, before the batch took the fence */
        kr_wait_btrees(k);
        return 0;
    }
    if (k->waiting)
        cd_log_info("key-rows: the open partition's B-trees are back; running again");
    k->waiting = 0;
    /* a batch is one transaction: small enough not to hold the tip lock's
     * waiters (it takes the lock only to commit) nor a long snapshot */
    if (n == k->batch && ms < CD_KEYROWS_TARGET_MS / 2 && k->batch < CD_KEYROWS_MAX_BATCH)
        k->batch *= 2;
    else if (ms > CD_KEYROWS_TARGET_MS * 2 && k->batch > 1)
        k->batch /= 2;
    cd_log_debug("key-rows: %d blocks in %.1f ms (next batch %d)", n, ms, k->batch);
    return n;
}

static void kr_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kr_child *k = arg;
    if (!k->block_index_ready) {
        int left = kr_block_index(k);
        if (left != 0) {
            kr_arm(k, left < 0 ? CD_KEYROWS_RETRY_MS : 0);
            return;
        }
        k->block_index_ready = 1;
    }
    int n = kr_batch(k);
    if (n > 0) {
        if (k->streak == 0)
            k->streak_t0 = cd_now_s();
        k->streak += (uint64_t)n;
        kr_arm(k, 0); /* next batch after the loop has seen SIGTERM / EOF */
        return;
    }
    if (n == 0 && k->streak > 100)
        cd_log_info("key-rows: derived %" PRIu64 " blocks in %.1f s; at the indexed tip", k->streak,
                    cd_now_s() - k->streak_t0);
    if (n == 0)
        k->streak = 0;
    kr_arm(k, n < 0 ? CD_KEYROWS_RETRY_MS : CD_KEYROWS_POLL_MS);
}

static void kr_child_main(void *arg, int slot, int fd)
{
    (void)slot;
    kr_child k;
    memset(&k, 0, sizeof(k));
    k.cfg = arg;
    k.batch = 1;
    k.base = event_base_new();
    k.tick = k.base ? event_new(k.base, -1, 0, kr_on_tick, &k) : NULL;
    if (!k.tick) {
        cd_log_error("key-rows: cannot create the event loop");
        exit(CD_EXIT_FAILURE);
    }
    cd_child_exit *quit = cd_child_exit_install(k.base, fd, "key-rows");
    if (!quit)
        exit(CD_EXIT_FAILURE);
    cd_pg_session how = {.connect_timeout_s = 10, .application_name = NULL};
    k.pg = cd_pg_new(k.cfg, &how);
    /* one attempt per tick: the loop must stay free for SIGTERM */
    cd_pg_set_retry(k.pg, 1, 100, NULL);
    cd_log_info("key-rows: trailing step running (pid %d)", (int)getpid());
    kr_arm(&k, 0);
    event_base_dispatch(k.base);
    cd_log_info("key-rows: stopping");
    cd_pg_free(k.pg);
    event_free(k.tick);
    cd_child_exit_free(quit);
    event_base_free(k.base);
    close(fd);
    exit(CD_EXIT_OK);
}

/* ---- the controller module ---- */

static const cd_sup_kind kr_kind = {.name = "key-rows",
                                    .main = kr_child_main,
                                    .restart = CD_SUP_RESPAWN,
                                    .needs_ring = 0,
                                    .needs_pg = 1};

static int kr_init(cd_ctl *ctl, void **state)
{
    *state = NULL;
    const cd_config *cfg = cd_ctl_config(ctl);
    if (!cfg->index || !cfg->key_rows)
        return 0;
    /* a resident child whose channel the controller only holds open; the
     * config outlives the child's row (the controller owns it) */
    static const char fatal[] = "key-rows: the trailing step cannot run; history and UTXO pages "
                                "read the blocks above its mark (slower, same rows) until "
                                "conduitd restarts";
    cd_resident *r;
    int rc = cd_resident_one(cd_ctl_sup(ctl), &kr_kind, (void *)cfg, fatal, &r);
    if (rc < 0) {
        cd_log_error("key-rows: cannot add the trailing step's process: %s", cd_strerror(rc));
        return -1;
    }
    *state = r;
    return 0;
}

static void kr_fini(void *state)
{
    cd_resident_free(state, 5000);
}

const cd_ctl_module cd_keyrows_module = {
    .name = "key-rows",
    .init = kr_init,
    .fini = kr_fini,
};
