/*
 * cd_catchup.c - catch-up mode of the PostgreSQL index (see cd_catchup.h):
 * drop the secondary indexes while far behind, rebuild them when close
 * (the B-trees: a hash index costs as much to build as to keep live, so
 * it stays; cd_pg_secondary_indexes).
 *
 * Why it exists: the daemon indexes ~3x faster without the four random-key
 * secondary indexes (docs/PERFORMANCE.md), but CREATE INDEX on a large chain
 * takes minutes, and the controller's loop must never block on PostgreSQL
 * (DESIGN.md §2). So the controller only decides; a helper process
 * (cd_helper.h: a CD_SUP_ONCE row of the process table, its own PGconn,
 * opened after the fork) does the DDL and writes one fixed-size message per
 * event into its channel, which the loop watches; the supervisor reaps it.
 */
#include "cd_catchup.h"

#include "cd_log.h"
#include "cd_util.h"
#include "cd_helper.h"
#include "cd_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* pg_advisory_lock key of the helpers (cd_pg_int.h has ...01 and ...02) */
#define CU_LOCK_KEY      "4242424203"
#define CU_RETRY_S       10.0
/* How often the tip partition is looked at (sql/017), while the index
 * grows: each look is a fork, a session and a range read of indexed_units
 * (a few ms); the tip overshoots partition_txs by at most what is indexed
 * in this time plus the blocks in flight. */
#define CU_ROLL_PERIOD_S 2.0
/* The module's tick. decide() and the partitions' look run every
 * CU_DECIDE_EVERY ticks, once a second (the weighings follow the backlog at
 * that pace, and a roll's helper must not start before a weighing that is
 * due). decide() also runs at every tick during a catch-up (indexes
 * dropped), where its rule starts the final build once within
 * catchup_threshold of the header tip: that end is seen only here (the
 * indexed height has no event; the mempool module polls index_tip every
 * 100 ms), and at once a second the final build started up to a second
 * after the tip (0.92 s of a 9.1 s catch-up of 600k txs, measured). A look
 * is a few reads of the controller's memory. */
#define CU_TICK_MS      100
#define CU_DECIDE_EVERY 10

typedef enum { CU_UNKNOWN, CU_LIVE, CU_DROPPED } cu_known;
/* CU_OP_WEIGH: read the index's size, then drop (catch-up mode) or keep
 * the indexes live (building any that are missing) by cd_catchup_weigh */
/* CU_OP_ROLL: roll the tip partition if full (partition_txs), read the
 * partitions' figures */
typedef enum { CU_OP_NONE, CU_OP_WEIGH, CU_OP_BUILD, CU_OP_ROLL } cu_op;

/* helper -> controller, one write each (the channel is a stream socket:
 * the reader reassembles a message that arrives in pieces) */
typedef struct cu_msg {
    char kind;      /* 'W' weighed (figures below), 'B' build started (some
                       index missing), 'P' partitions (roll), 'R' result */
    int32_t rc;     /* R: 0 ok, < 0 failed */
    int32_t had;    /* W, B, R: how many of the indexes were valid before */
    int32_t total;  /* W, B, R: how many secondary indexes sql/013 defines (on
                       every partition); W and R of a drop: of those it drops */
    double secs;    /* R: time the DDL took */
    int32_t drop;   /* W: the decision (cd_catchup_weighing.drop) */
    int32_t behind; /* W: blocks behind, from the index's own tip */
    double indexed_txs, per_block, backlog_txs; /* W: its figures */
    int32_t parts, busy;                        /* P: partitions; roll not locked */
    int64_t tip_lo, tip_txs, bound, closed_txs; /* P: the tip; the roll's (-1: none) */
} cu_msg;

typedef struct cu_state {
    cd_ctl *ctl;
    const cd_config *cfg;
    cd_helper *helper; /* the DDL helper: its runs, and the tick (decide) */
    cu_known known;
    cu_op op;       /* helper running (launched, not yet reaped) */
    int building;   /* 'B' received */
    int32_t behind; /* at the helper's launch */
    double retry_at;
    int got_result;
    int dropping; /* W said drop: the result is of a DROP */
    /* the last weighing that kept the indexes live: weigh again only once
     * the backlog has grown by as much again, or the header sync ended */
    int weighed;
    int32_t weighed_hdr, weighed_behind;
    int weighed_synced;
    int32_t hdr_at_launch;
    int synced_at_launch;
    char why[160];               /* the last decision and its figures (the status) */
    double w_backlog, w_indexed; /* the last weighing's estimates, -1 none */
    /* partitions (sql/017): the next look, the indexed height at the last
     * one, the figures it read (parts 0: none read yet) */
    double roll_at;
    int32_t roll_height;
    int32_t parts;
    int64_t tip_txs, rolls;
    /* the merges (cd_merge.h) done at the last look: a merge changes the
     * count, so the next look comes even if the index did not grow */
    uint64_t merges_seen;
    /* a decision came (a new header tip, a tick) while a roll's helper ran:
     * decide as soon as it ends, not a tick later (a short backlog can be
     * indexed live within that tick and never weighed) */
    int decide_after_roll;
    unsigned ticks; /* on_tick's count (CU_DECIDE_EVERY) */
} cu_state;

/* ---- the helper process ---- */

static void send_msg(int fd, char kind, int rc, int had, int total, double secs)
{
    cu_msg m;
    memset(&m, 0, sizeof(m));
    m.kind = kind;
    m.rc = rc;
    m.had = had;
    m.total = total;
    m.secs = secs;
    cd_helper_send(fd, &m, sizeof(m));
}

/* Compact counts for the log and the status: 950, 1.2k, 45k, 0.4M, 6M,
 * 13M, 0.25G (two significant digits are all an estimate has). */
static void fmt_count(double v, char *buf, size_t len)
{
    static const char *const sfx[] = {"", "k", "M", "G", "T"};
    unsigned i = 0;
    if (v < 1000.0) {
        snprintf(buf, len, "%.0f", v);
        return;
    }
    while (v >= 100.0 && i + 1 < CD_ARRAY_LEN(sfx)) {
        v /= 1000.0;
        i++;
    }
    snprintf(buf, len, v >= 10.0 ? "%.0f%s" : "%.2g%s", v, sfx[i]);
}

void cd_catchup_weigh(cd_catchup_weighing *w, char *why, size_t len)
{
    double per = w->per_block > 0 ? w->per_block : 0.0;
    w->backlog_txs = w->behind > 0 ? (double)w->behind * per : 0.0;
    char b[32], n[32];
    fmt_count(w->backlog_txs, b, sizeof(b));
    fmt_count(w->indexed_txs, n, sizeof(n));
    if (w->behind <= (int32_t)w->threshold) {
        w->drop = 0;
        snprintf(why, len, "live (backlog %d blocks <= catchup_threshold %u)", (int)w->behind,
                 (unsigned)w->threshold);
    } else if (w->indexed_txs <= 0) {
        /* the initial sync: nothing to rebuild but what it loads */
        w->drop = 1;
        snprintf(why, len, "catch-up (backlog %d blocks, empty index)", (int)w->behind);
    } else if (w->per_block <= 0) {
        /* blocks indexed (out of order, by the parsers) but none of the
         * best chain connected yet: the start of an initial sync, and no
         * density to weigh the backlog by (it read as ~0 txs and kept a
         * 300-block initial sync live: test_catchup failed so, rarely) */
        w->drop = 1;
        snprintf(why, len, "catch-up (backlog %d blocks, no block of the best chain indexed yet)",
                 (int)w->behind);
    } else if (w->total > 0 && w->had == 0) {
        /* a rebuild of the whole tables is owed anyway: loading first and
         * building once is the cheaper order (e.g. a restart in catch-up) */
        w->drop = 1;
        snprintf(why, len, "catch-up (backlog %d blocks; the indexes are absent: %s txs indexed)",
                 (int)w->behind, n);
    } else if (w->ratio_pct == 0) {
        w->drop = 1;
        snprintf(why, len,
                 "catch-up (backlog %d blocks > catchup_threshold %u; "
                 "catchup_ratio_pct 0)",
                 (int)w->behind, (unsigned)w->threshold);
    } else {
        double need = w->indexed_txs * (double)w->ratio_pct / 100.0;
        w->drop = w->backlog_txs >= need;
        snprintf(why, len, "%s (backlog %d blocks, ~%s txs %s %u%% of %s indexed)",
                 w->drop ? "catch-up" : "live", (int)w->behind, b, w->drop ? ">=" : "<",
                 (unsigned)w->ratio_pct, n);
    }
}

/* The size of the index, for the weighing: the txs of the indexed blocks
 * in the open tip partition (sql/017: catch-up drops only the tip's
 * indexes, so the build at its end re-sorts those rows, plus the backlog; a
 * closed partition keeps its indexes), and the txs per block of the last
 * CD_CATCHUP_RECENT_BLOCKS indexed best-chain blocks (blocks_height_idx).
 * Indexed blocks, not units (cd_partition_tip_txs): a unit of a block not
 * yet complete (the genesis block's, at the first start) is no index, and
 * counting it made the first weighing stay live ("~0 txs < 20% of 1").
 * A scan of `blocks` (one row per block: ~1M rows on mainnet, well under a
 * second), in this helper, never in the controller's loop.
 * Returns: CD_PG_OK or CD_PG_ERROR (logged). */
static int read_size(cd_pg *pg, double *indexed_txs, double *per_block, int32_t *tip)
{
    char sql[640];
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT coalesce(sum(tx_count), 0) FROM blocks WHERE indexed AND block_id >= "
             "coalesce((SELECT lo FROM partitions WHERE tbl = 'transactions' AND hi IS NULL), "
             "-9223372036854775808)), count(*), "
             "coalesce(sum(tx_count), 0), (SELECT coalesce(max(height), -1) FROM index_tip) "
             "FROM (SELECT tx_count FROM blocks WHERE indexed AND on_best_chain "
             "ORDER BY height DESC LIMIT %d) r",
             CD_CATCHUP_RECENT_BLOCKS);
    PGresult *r = PQexec(cd_pg_conn(pg), sql);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (ok) {
        *indexed_txs = strtod(PQgetvalue(r, 0, 0), NULL);
        double nb = strtod(PQgetvalue(r, 0, 1), NULL);
        *per_block = nb > 0 ? strtod(PQgetvalue(r, 0, 2), NULL) / nb : 0.0;
        *tip = (int32_t)strtol(PQgetvalue(r, 0, 3), NULL, 10);
    } else {
        cd_log_error("index: reading the size of the index failed: %s", PQresultErrorMessage(r));
    }
    PQclear(r);
    return ok ? CD_PG_OK : CD_PG_ERROR;
}

/* The secondary indexes (sql/013's catalog) and their state, the largest
 * table first. Out: list[0..*total), *valid (how many are valid).
 * Returns: CD_PG_OK or an error (logged). */
static int read_indexes(cd_pg *pg, cd_pg_secondary list[CD_PG_SECONDARY_MAX], int *valid,
                        int *total)
{
    size_t n = 0;
    int rc = cd_pg_secondary_list(pg, list, CD_PG_SECONDARY_MAX, &n);
    *valid = 0;
    *total = (int)n;
    for (size_t i = 0; rc == CD_PG_OK && i < n; i++)
        *valid += cd_pg_secondary_valid(&list[i]);
    return rc;
}

/* Of list[0..total): the indexes catch-up drops, and how many of them are
 * valid: what the weighing's "already absent" rule looks at. */
static void droppable(const cd_pg_secondary *list, int total, int *valid, int *count)
{
    *valid = *count = 0;
    for (int i = 0; i < total; i++) {
        if (!cd_pg_secondary_catchup_drops(&list[i]))
            continue;
        (*count)++;
        *valid += cd_pg_secondary_valid(&list[i]);
    }
}

/* Builds the indexes of list that are not valid, in parallel sessions sized
 * from this machine and the server's limits (cd_pg_build_plan_rule; the
 * rule assumes the server runs on this machine, the usual setup: see
 * docs/OPERATIONS.md, catch-up mode). Returns: CD_PG_OK or an error. */
static int build_missing(const cd_config *cfg, cd_pg *pg, const cd_pg_secondary *list, int total)
{
    const char *todo[CD_PG_SECONDARY_MAX];
    size_t n = 0;
    for (int i = 0; i < total; i++) /* largest first: the list's order */
        if (!cd_pg_secondary_valid(&list[i]))
            todo[n++] = list[i].name;
    cd_pg_build_limits lim;
    int rc = cd_pg_build_limits_read(pg, &lim);
    if (rc != CD_PG_OK)
        return rc;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    long long ram = pages > 0 && psize > 0 ? (long long)pages * psize : 0;
    cd_pg_build_plan plan;
    cd_pg_build_plan_rule(&lim, (int)cores, ram, (int)n, &plan);
    cd_log_info("index: %zu to build in %d sessions, maintenance_work_mem %lld MB and %d parallel "
                "workers each (%ld cores, %lld MB of RAM; the server allows %lld MB, %d workers)",
                n, plan.sessions, plan.mem_kb / 1024, plan.workers, cores, ram >> 20,
                lim.mem_max_kb / 1024, lim.max_parallel_workers);
    cd_pg_build_stats st;
    return cd_pg_secondary_build(cfg, &plan, todo, n, &st);
}

/* The roll op: rolls the tip partition if it holds partition_txs txs
 * (cd_partition_roll; 0: never, only read), then sends the figures ('P').
 * Returns: CD_PG_OK or an error (logged). */
static int roll_tip(const cd_config *cfg, cd_pg *pg, int fd)
{
    cd_pg_partitions before, after;
    int64_t bound = -1;
    int busy = 0;
    double secs = 0;
    int rc = cd_pg_partitions_read(pg, &before);
    if (rc == CD_PG_OK && cfg->partition_txs > 0)
        rc = cd_pg_partition_roll(pg, (int64_t)cfg->partition_txs, &bound, &busy, &secs);
    if (rc == CD_PG_OK)
        rc = cd_pg_partitions_read(pg, &after);
    if (rc == CD_PG_OK) {
        cu_msg m = {.kind = 'P',
                    .parts = after.count,
                    .busy = busy,
                    .tip_lo = after.tip_lo,
                    .tip_txs = after.tip_txs,
                    .bound = bound,
                    .closed_txs = before.tip_txs,
                    .secs = secs};
        cd_helper_send(fd, &m, sizeof(m));
    }
    return rc;
}

/* Catch-up mode: builds one secondary index of a partition closed while
 * the indexes were dropped (a roll closes the tip as it is: without them),
 * the largest partition's first, as the end of catch-up would; so that the
 * end builds only the open tip's, and the closed ones' builds overlap the
 * indexing instead of following it (docs/PERFORMANCE.md "Closed partitions
 * built during catch-up"). One index per call: the caller looks at the tip
 * between two. Returns 1 (built), 0 (none left), or -1 (logged). */
static int build_one_closed(const cd_config *cfg, cd_pg *pg)
{
    cd_pg_secondary list[CD_PG_SECONDARY_MAX];
    int had = 0, total = 0;
    if (read_indexes(pg, list, &had, &total) != CD_PG_OK)
        return -1;
    for (int i = 0; i < total; i++) {
        if (!list[i].closed || cd_pg_secondary_valid(&list[i]))
            continue;
        double t0 = cd_now_s();
        if (build_missing(cfg, pg, &list[i], 1) != CD_PG_OK)
            return -1;
        cd_log_info("index: catch-up mode: built %s of closed partition %s in %.1f s", list[i].name,
                    list[i].tbl, cd_now_s() - t0);
        return 1;
    }
    return 0;
}

/* The helper's main (its kind's, in the process table): the supervisor has
 * closed every other descriptor, reset the signals, unmapped the ring and
 * reopened the log. s is the controller's state as of the fork (s->op). */
static CD_NORETURN void helper_main(void *arg, int slot, int fd)
{
    (void)slot;
    const cu_state *s = arg;
    const cd_config *cfg = s->cfg;
    cu_op op = s->op;
    /* A helper outliving its daemon is harmless (the next one waits on the
     * advisory lock) but pointless. */
    cd_helper_die_with_controller();

    cd_pg *pg = cd_pg_new(cfg, NULL);
    cd_pg_set_retry(pg, 0, 5000, NULL);
    int rc = CD_PG_ERROR, had = -1, total = 0;
    cd_pg_secondary list[CD_PG_SECONDARY_MAX];
    double t0 = cd_now_s();
    /* The schema first (idempotent, serialised with the parsers' own
     * migration): a helper started on the first header tip can run before
     * any parser has created the tables, and a DROP then would find nothing
     * while the migration creates the indexes right after.
     * Then a session lock: a DDL of a helper whose daemon was killed may still
     * be running in its backend; wait for it rather than race it */
    if (cd_pg_migrate(pg) == CD_PG_OK &&
        cd_pg_exec(pg, "SELECT pg_advisory_lock(" CU_LOCK_KEY ")") == CD_PG_OK &&
        op == CU_OP_ROLL) {
        rc = roll_tip(cfg, pg, fd);
        /* catch-up mode: the closed partitions' indexes now, a look at the
         * tip (and a roll if full) after each */
        int built = 0;
        while (rc == CD_PG_OK && s->known == CU_DROPPED &&
               (built = build_one_closed(cfg, pg)) == 1)
            rc = roll_tip(cfg, pg, fd);
        if (built < 0)
            rc = CD_PG_ERROR;
    } else if (op != CU_OP_ROLL && read_indexes(pg, list, &had, &total) == CD_PG_OK) {
        /* the weighing's figures (and its result's): what it may drop */
        int dhad, dtotal;
        droppable(list, total, &dhad, &dtotal);
        cd_catchup_weighing w = {.behind = s->behind,
                                 .threshold = cfg->catchup_threshold,
                                 .ratio_pct = cfg->catchup_ratio_pct,
                                 .had = dhad,
                                 .total = dtotal};
        char why[160];
        int32_t tip = -1;
        if (op == CU_OP_WEIGH &&
            (rc = read_size(pg, &w.indexed_txs, &w.per_block, &tip)) == CD_PG_OK) {
            /* the distance from the index's own tip: the controller's
             * indexed height is unknown (-1) until its first poll of it */
            w.behind = s->hdr_at_launch - tip;
            cd_catchup_weigh(&w, why, sizeof(why));
            cu_msg m = {.kind = 'W',
                        .had = dhad,
                        .total = dtotal,
                        .drop = w.drop,
                        .behind = w.behind,
                        .indexed_txs = w.indexed_txs,
                        .per_block = w.per_block,
                        .backlog_txs = w.backlog_txs};
            cd_helper_send(fd, &m, sizeof(m));
            if (!w.drop)
                op = CU_OP_BUILD; /* live: any index missing is built now */
        }
        if (op == CU_OP_WEIGH) {
            if (rc == CD_PG_OK)
                rc = cd_pg_secondary_indexes(pg, 0);
            had = dhad;
            total = dtotal;
        } else if (had == total) {
            rc = CD_PG_OK;
        } else {
            send_msg(fd, 'B', 0, had, total, 0);
            t0 = cd_now_s();
            /* this session only holds the lock: it stays idle, so if the
             * helper is killed it ends at once and the next helper can
             * start; a build session's backend finishes its statement
             * (and the next helper waits for it on the index's lock) */
            rc = build_missing(cfg, pg, list, total);
        }
    }
    send_msg(fd, 'R', rc, had, total, cd_now_s() - t0);
    cd_pg_free(pg); /* ends the session: releases the lock */
    _exit(rc == CD_PG_OK ? 0 : 1);
}

/* ---- controller side ---- */

static void on_weighed(cu_state *s, const cu_msg *m)
{
    s->behind = m->behind;
    cd_catchup_weighing w = {.behind = m->behind,
                             .threshold = s->cfg->catchup_threshold,
                             .ratio_pct = s->cfg->catchup_ratio_pct,
                             .indexed_txs = m->indexed_txs,
                             .per_block = m->per_block,
                             .had = m->had,
                             .total = m->total};
    /* the same rule on the same figures: the text the helper decided by */
    cd_catchup_weigh(&w, s->why, sizeof(s->why));
    s->w_backlog = w.backlog_txs;
    s->w_indexed = w.indexed_txs;
    s->dropping = m->drop;
    if (!m->drop) {
        s->weighed = 1;
        s->weighed_hdr = s->hdr_at_launch;
        s->weighed_behind = s->behind;
        s->weighed_synced = s->synced_at_launch;
    }
    if (m->per_block > 0)
        cd_log_info("index: mode %s (%.1f txs per block over the last indexed blocks)", s->why,
                    m->per_block);
    else
        cd_log_info("index: mode %s", s->why);
}

static void on_partitions(cu_state *s, const cu_msg *m)
{
    s->parts = m->parts;
    s->tip_txs = m->tip_txs;
    if (m->bound >= 0) {
        s->rolls++;
        cd_log_info("index: tip partition closed below block_id %lld with %lld txs (the roll "
                    "took %.3f s, a wait for a key-rows batch included); %d partitions, the new tip from block_id %lld",
                    (long long)m->bound, (long long)m->closed_txs, m->secs, (int)m->parts,
                    (long long)m->tip_lo);
    } else if (m->busy) {
        cd_log_info("index: tip partition full (%lld txs) but its tables are busy; rolling later",
                    (long long)m->tip_txs);
    }
}

/* The helper's messages (cd_helper_hooks.on_msg). */
static void on_msg(void *arg, const void *msg)
{
    cu_state *s = arg;
    const cu_msg *m = msg;
    if (m->kind == 'P') {
        on_partitions(s, m);
        return;
    }
    if (s->op == CU_OP_ROLL) {
        if (m->kind == 'R') {
            s->got_result = 1;
            if (m->rc != 0) {
                cd_log_warn("index: looking at the tip partition failed; again in %.0f s",
                            CU_RETRY_S);
                s->roll_at = cd_now_s() + CU_RETRY_S;
            }
        }
        return;
    }
    if (m->kind == 'W') {
        on_weighed(s, m);
        return;
    }
    if (m->kind == 'B') {
        s->building = 1;
        cd_log_info("index: building secondary indexes (%d of %d present; %d blocks behind)",
                    (int)m->had, (int)m->total, (int)s->behind);
        return;
    }
    s->got_result = 1;
    if (m->rc != 0) {
        cd_log_warn("index: %s of the secondary indexes failed; retrying in %.0f s",
                    s->op == CU_OP_WEIGH && s->dropping    ? "dropping"
                    : s->op == CU_OP_WEIGH && !s->building ? "weighing"
                                                           : "building",
                    CU_RETRY_S);
        s->retry_at = cd_now_s() + CU_RETRY_S;
        return;
    }
    if (s->op == CU_OP_WEIGH && s->dropping) {
        s->known = CU_DROPPED;
        cd_log_info("index: catch-up mode (%d blocks behind): secondary indexes dropped%s",
                    (int)s->behind, m->had ? "" : " (were absent)");
    } else {
        s->known = CU_LIVE;
        if (m->had == m->total)
            cd_log_info("index: secondary indexes present (%d blocks behind)", (int)s->behind);
        else
            cd_log_info("index: secondary indexes ready (%.1f s)", m->secs);
    }
}

/* The helper ended (reaped by the supervisor; what it wrote last has been
 * through on_msg): then the decision may launch the next one. */
static void decide(cu_state *s);

static void helper_down(void *arg, pid_t pid, int code)
{
    cu_state *s = arg;
    if (!s->got_result) {
        cd_log_warn("index: helper (pid %d) ended without a result (exit %d); retrying in %.0f s",
                    (int)pid, code, CU_RETRY_S);
        if (s->op == CU_OP_ROLL)
            s->roll_at = cd_now_s() + CU_RETRY_S;
        else
            s->retry_at = cd_now_s() + CU_RETRY_S;
    }
    int was_roll = s->op == CU_OP_ROLL;
    s->op = CU_OP_NONE;
    s->building = 0;
    s->dropping = 0;
    if (was_roll && s->decide_after_roll) {
        s->decide_after_roll = 0;
        decide(s);
    }
}

/* Its row of the process table: run once per decision, no ring, PG. */
static const cd_sup_kind helper_kind = {.name = "index-ddl",
                                        .main = helper_main,
                                        .restart = CD_SUP_ONCE,
                                        .needs_ring = 0,
                                        .needs_pg = 1};

static void launch(cu_state *s, cu_op op, int32_t behind, int32_t hdr)
{
    /* read by the child at the fork, by on_msg afterwards */
    s->op = op;
    s->behind = behind;
    s->hdr_at_launch = hdr;
    s->synced_at_launch = cd_ctl_headers_synced(s->ctl);
    s->building = 0;
    s->dropping = 0;
    s->got_result = 0;
    if (cd_helper_launch(s->helper) != 0) {
        /* logged (EFULL, EFORK); ERUNNING cannot happen (op was NONE: the
         * last one was reaped); ESTOPPING: helper_down's decision while
         * the module ends (mod_fini) */
        s->op = CU_OP_NONE;
        s->retry_at = cd_now_s() + CU_RETRY_S;
        return;
    }
    cd_log_debug("index: %s helper started (pid %d, %d blocks behind)",
                 op == CU_OP_WEIGH  ? "weighing"
                 : op == CU_OP_ROLL ? "partition"
                                    : "build",
                 (int)cd_helper_pid(s->helper), (int)behind);
}

static void decide(cu_state *s)
{
    if (s->op == CU_OP_ROLL)
        s->decide_after_roll = 1;
    if (s->op != CU_OP_NONE || cd_now_s() < s->retry_at)
        return;
    if (s->cfg->catchup_indexes == CD_CATCHUP_LIVE) {
        snprintf(s->why, sizeof(s->why), "live (catchup_indexes = live)");
        if (s->known != CU_LIVE)
            launch(s, CU_OP_BUILD, 0, 0);
        return;
    }
    cd_ctl_progress pr;
    cd_ctl_progress_now(s->ctl, &pr);
    cd_hdrtree *tree = cd_ctl_tree(s->ctl);
    if (!tree)
        return;
    int32_t hdr = cd_hdrtree_height(tree);
    int32_t behind = hdr - pr.indexed_height; /* indexed -1: all of them */
    int32_t threshold = (int32_t)s->cfg->catchup_threshold;
    int synced = cd_ctl_headers_synced(s->ctl);
    if (behind > threshold) {
        /* A weighing that kept the indexes live holds while the backlog
         * shrinks or grows little: indexing only makes the index larger.
         * Weigh again once as many new headers came as the backlog was
         * (the backlog has doubled; at least catchup_threshold of them: a
         * weighing may have found no backlog, the controller's indexed
         * height being unknown until its first poll), or the header sync
         * has ended (the backlog is then known whole). */
        int32_t grown = s->weighed_behind > threshold ? s->weighed_behind : threshold;
        int again = !s->weighed || hdr - s->weighed_hdr >= grown || (synced && !s->weighed_synced);
        if (s->known != CU_DROPPED && again)
            launch(s, CU_OP_WEIGH, behind, hdr);
    } else {
        s->weighed = 0; /* within reach: the next outage is weighed afresh */
        if (s->known != CU_LIVE && synced) {
            snprintf(s->why, sizeof(s->why), "live (backlog %d blocks <= catchup_threshold %u)",
                     (int)(behind < 0 ? 0 : behind), (unsigned)threshold);
            launch(s, CU_OP_BUILD, behind, hdr);
        }
    }
}

/* The partitions' look (sql/017), when no other DDL runs: at most every
 * CU_ROLL_PERIOD_S, and only once the index has grown since the last (the
 * first one after the first decision: the status shows the figures). The weighing and the
 * builds go first (decide, just before): a roll waits for them, and they
 * for it, on the helpers' advisory lock anyway. */
static void maybe_roll(cu_state *s)
{
    /* not before the first decision: at start the weighing must not wait
     * for a roll while indexing runs with the indexes live */
    if (s->op != CU_OP_NONE || s->known == CU_UNKNOWN || cd_now_s() < s->roll_at)
        return;
    /* nor during a header sync: the backlog, and so the weighing that
     * may drop the tip's indexes, is not known yet, and a roll's helper in
     * flight would hold that weighing back */
    if (!cd_ctl_headers_synced(s->ctl))
        return;
    cd_ctl_progress pr;
    cd_ctl_progress_now(s->ctl, &pr);
    if (s->parts > 0 && pr.indexed_height == s->roll_height &&
        pr.partition_merges == s->merges_seen)
        return;
    /* nor while a backlog over catchup_threshold waits for its weighing
     * (decide() launches it at the next chance; a roll would delay it) */
    cd_hdrtree *tree = cd_ctl_tree(s->ctl);
    if (tree && s->cfg->catchup_indexes != CD_CATCHUP_LIVE && s->known != CU_DROPPED &&
        !s->weighed &&
        cd_hdrtree_height(tree) - pr.indexed_height > (int32_t)s->cfg->catchup_threshold)
        return;
    s->roll_height = pr.indexed_height;
    s->merges_seen = pr.partition_merges;
    s->roll_at = cd_now_s() + CU_ROLL_PERIOD_S;
    launch(s, CU_OP_ROLL, 0, 0);
}

static void on_tick(void *arg)
{
    cu_state *s = arg;
    /* the roll's look after the decision (maybe_roll: a roll's helper would
     * hold back a weighing due now), both at the once-a-second pace */
    if (++s->ticks % CU_DECIDE_EVERY == 0) {
        decide(s);
        maybe_roll(s);
    } else if (s->known == CU_DROPPED) {
        decide(s); /* its own rule: the final build once within catchup_threshold */
    }
}

/* A new best header tip (after header sync: the whole distance at once)
 * is the moment the distance changes most; deciding only on the next tick
 * would index up to a second of a catch-up with the indexes still live, or,
 * for a short chain indexed within that second, never drop them at all. */
static void on_best_chain(void *state, const cd_hdrtree_tip_event *ev)
{
    (void)ev;
    cu_state *s = state;
    if (cd_helper_ticking(s->helper))
        decide(s);
}

/* ---- module ---- */

static int mod_init(cd_ctl *ctl, void **state)
{
    cu_state *s = cd_xcalloc(1, sizeof(*s));
    s->ctl = ctl;
    s->cfg = cd_ctl_config(ctl);
    cd_helper_hooks hooks = {
        .arg = s, .on_tick = on_tick, .on_msg = on_msg, .on_down = helper_down};
    s->helper = cd_helper_new(cd_ctl_sup(ctl), cd_ctl_base(ctl), &helper_kind, s, sizeof(cu_msg),
                              "index", &hooks);
    s->w_backlog = -1;
    s->w_indexed = -1;
    *state = s;
    return 0;
}

static int mod_start(void *state)
{
    cu_state *s = state;
    if (s->cfg->index)
        cd_helper_tick(s->helper, CU_TICK_MS);
    return 0;
}

static void mod_fini(void *state)
{
    cu_state *s = state;
    if (!s)
        return;
    /* the tick ends; a running helper gets SIGTERM (its backend finishes
     * the statement anyway; the next start's helper waits for it on the
     * advisory lock); helper_down runs as it is reaped; its row is freed */
    cd_helper_free(s->helper, 5000);
    free(s);
}

static void mod_progress(void *state, cd_ctl_progress *out)
{
    cu_state *s = state;
    if (!s->cfg->index)
        return;
    snprintf(out->index_why, sizeof(out->index_why), "%s", s->why);
    if (s->parts > 0) {
        out->partitions = s->parts;
        out->partition_tip_txs = s->tip_txs;
        out->partition_rolls = s->rolls;
    }
    if (s->w_indexed >= 0) {
        out->index_backlog_txs = s->w_backlog;
        out->index_indexed_txs = s->w_indexed;
    }
    out->index_mode = s->building              ? CD_CTL_INDEX_BUILDING
                      : s->known == CU_LIVE    ? CD_CTL_INDEX_LIVE
                      : s->known == CU_DROPPED ? CD_CTL_INDEX_DROPPED
                                               : CD_CTL_INDEX_CHECKING;
}

const cd_ctl_module cd_catchup_module = {
    .name = "catchup",
    .init = mod_init,
    .start = mod_start,
    .fini = mod_fini,
    .progress = mod_progress,
    .on_best_chain = on_best_chain,
};
