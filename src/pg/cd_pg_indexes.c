/*
 * cd_pg_indexes.c - the secondary indexes of catch-up mode, as the database
 * defines them (sql/013_secondary_indexes.sql: the table secondary_indexes
 * and the functions that drop or build one index by name). See cd_pg.h.
 *
 * Why here and not spelled in C: the list and the definitions live in one
 * place, the database, where the tests and the benchmarks read them too;
 * this file only asks for "the state of every index" and "build / drop this
 * one".
 */
#include "cd_pg.h"
#include "cd_pg_int.h"

#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* the catalog                                                         */
/* ------------------------------------------------------------------ */

struct list_arg {
    cd_pg_secondary *out;
    size_t cap;
    size_t *n;
};

static void copy_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static int list_op(cd_pg *pg, void *a)
{
    struct list_arg *x = a;
    PGresult *r = NULL;
    int rc = cd_pg_q(pg, "reading the secondary indexes",
                     "SELECT s.name, s.tbl, s.state, s.rel_bytes, s.closed, d.method = 'hash' "
                     "FROM cd_secondary_indexes_state() s JOIN secondary_indexes d ON d.name = s.def "
                     "ORDER BY s.rel_bytes DESC, s.name",
                     0,
                     NULL, NULL, NULL, &r);
    if (rc)
        return rc;
    int rows = PQntuples(r);
    if ((size_t)rows > x->cap) {
        cd_log_error("postgres: %d secondary indexes in sql/013's catalog, more than the %zu "
                     "this build handles",
                     rows, x->cap);
        PQclear(r);
        return CD_PG_ERROR;
    }
    for (int i = 0; i < rows; i++) {
        cd_pg_secondary *s = &x->out[i];
        copy_field(s->name, sizeof(s->name), PQgetvalue(r, i, 0));
        copy_field(s->tbl, sizeof(s->tbl), PQgetvalue(r, i, 1));
        copy_field(s->state, sizeof(s->state), PQgetvalue(r, i, 2));
        s->rel_bytes = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        s->closed = PQgetvalue(r, i, 4)[0] == 't';
        s->hash = PQgetvalue(r, i, 5)[0] == 't';
    }
    *x->n = (size_t)rows;
    PQclear(r);
    return 0;
}

int cd_pg_secondary_list(cd_pg *pg, cd_pg_secondary *out, size_t cap, size_t *n)
{
    *n = 0;
    struct list_arg a = {out, cap, n};
    return cd_pg_with_retry(pg, list_op, &a);
}

int cd_pg_secondary_valid(const cd_pg_secondary *s)
{
    return strcmp(s->state, "valid") == 0;
}

int cd_pg_secondary_catchup_drops(const cd_pg_secondary *s)
{
    /* a closed partition receives no live rows, so its indexes cost a load
     * nothing; a hash index is built row by row (see cd_pg.h,
     * cd_pg_secondary_indexes), so keeping it costs what rebuilding would */
    return !s->closed && !s->hash;
}

/* ------------------------------------------------------------------ */
/* one index                                                           */
/* ------------------------------------------------------------------ */

struct one_arg {
    const char *name;
    int create;
    char *result;
    size_t result_cap;
};

static int one_op(cd_pg *pg, void *a)
{
    struct one_arg *x = a;
    const char *vals[1] = {x->name};
    PGresult *r = NULL;
    char what[128];
    snprintf(what, sizeof(what), "%s index %s", x->create ? "building" : "dropping", x->name);
    int rc = cd_pg_q(pg, what,
                     x->create ? "SELECT cd_secondary_index_create($1)"
                               : "SELECT CASE WHEN cd_secondary_index_drop($1) THEN 'dropped' "
                                 "ELSE 'absent' END",
                     1, vals, NULL, NULL, &r);
    if (rc)
        return rc;
    if (x->result)
        copy_field(x->result, x->result_cap, PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

int cd_pg_secondary_one(cd_pg *pg, const char *name, int create, char *result, size_t result_cap)
{
    if (result && result_cap)
        result[0] = '\0';
    struct one_arg a = {name, create, result, result_cap};
    return cd_pg_with_retry(pg, one_op, &a);
}

int cd_pg_secondary_indexes(cd_pg *pg, int on)
{
    cd_pg_secondary list[CD_PG_SECONDARY_MAX];
    size_t n = 0;
    int rc = cd_pg_secondary_list(pg, list, CD_ARRAY_LEN(list), &n);
    /* one statement per index: each build commits on its own, so a crash
     * keeps the ones already built; a drop waits for the key-rows batch in
     * progress (the partition fence, sql/025), and the batches after it see
     * the index gone */
    for (size_t i = 0; rc == CD_PG_OK && i < n; i++) {
        if (on ? cd_pg_secondary_valid(&list[i])
               : !cd_pg_secondary_catchup_drops(&list[i]) ||
                     strcmp(list[i].state, "missing") == 0)
            continue;
        rc = cd_pg_secondary_one(pg, list[i].name, on, NULL, 0);
    }
    if (rc == CD_PG_OK)
        cd_log_info("postgres: secondary indexes %s",
                    on ? "present" : "dropped for bulk load (the B-trees; the hash indexes stay)");
    return rc;
}

/* ------------------------------------------------------------------ */
/* the parallel build                                                  */
/* ------------------------------------------------------------------ */

void cd_pg_build_plan_rule(const cd_pg_build_limits *lim, int cores, long long ram_bytes,
                           int n_todo, cd_pg_build_plan *out)
{
    if (cores < 1)
        cores = 1;
    if (n_todo < 1)
        n_todo = 1;
    /* one CREATE INDEX keeps about one core busy (the sort; the heap scan is
     * mostly page cache), so as many sessions as cores, never more than
     * there are indexes to build */
    int s = cores < n_todo ? cores : n_todo;
    if (s > CD_PG_BUILD_MAX_SESSIONS)
        s = CD_PG_BUILD_MAX_SESSIONS;
    out->sessions = s;
    /* a quarter of the RAM for the sorts, shared by the sessions: the other
     * three quarters are shared_buffers (PostgreSQL's own guidance is also a
     * quarter), the page cache the builds read the tables through, and the
     * daemon; a sort that fits in memory needs no temporary files and no
     * merge passes. Never below what the server gives a session already,
     * never above its limit. */
    long long kb = ram_bytes / 4 / 1024 / s;
    if (kb < lim->mem_kb)
        kb = lim->mem_kb;
    if (lim->mem_max_kb > 0 && kb > lim->mem_max_kb)
        kb = lim->mem_max_kb;
    out->mem_kb = kb;
    /* parallel workers: a session's share of the cores (its leader works
     * too, so one process more than the share). While every session runs,
     * the cores are over-subscribed a little, which costs little (the
     * scans wait on I/O, the sorts take turns); once the smaller indexes
     * are done, the largest one, the tail of the whole build, still has
     * every core. Measured (docs/PERFORMANCE.md, "Index build in parallel
     * sessions"): 2 cores, 3M txs, 2 sessions: 41 s with 1 worker each,
     * 63 s with none, 65 s for the old single session (medians of 3). B-tree
     * builds use workers, hash builds ignore them. Within the pool the
     * server shares among all sessions (max_parallel_workers, itself within
     * max_worker_processes) and max_parallel_maintenance_workers' max_val. */
    int w = cores / s;
    int pool = lim->max_parallel_workers < lim->max_worker_processes ? lim->max_parallel_workers
                                                                     : lim->max_worker_processes;
    if (w > pool / s)
        w = pool / s;
    if (w > lim->workers_max)
        w = lim->workers_max;
    out->workers = w < 0 ? 0 : w;
}

static int limits_op(cd_pg *pg, void *a)
{
    cd_pg_build_limits *lim = a;
    PGresult *r = NULL;
    int rc = cd_pg_q(pg, "reading the server's limits",
                     "SELECT name, setting, coalesce(max_val, '-1') FROM pg_settings WHERE name IN "
                     "('maintenance_work_mem', 'max_parallel_maintenance_workers', "
                     "'max_parallel_workers', 'max_worker_processes')",
                     0, NULL, NULL, NULL, &r);
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        long long v = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        long long max = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        if (!strcmp(name, "maintenance_work_mem")) {
            lim->mem_kb = v; /* the unit is kB (pg_settings.unit) */
            lim->mem_max_kb = max;
        } else if (!strcmp(name, "max_parallel_maintenance_workers")) {
            lim->workers_max = (int)max;
        } else if (!strcmp(name, "max_parallel_workers")) {
            lim->max_parallel_workers = (int)v;
        } else {
            lim->max_worker_processes = (int)v;
        }
    }
    PQclear(r);
    return 0;
}

int cd_pg_build_limits_read(cd_pg *pg, cd_pg_build_limits *lim)
{
    /* if a row is missing (renamed in a future server), the conservative
     * values: the default memory, no parallel workers */
    cd_pg_build_limits d = {65536, -1, 0, 0, 0};
    *lim = d;
    return cd_pg_with_retry(pg, limits_op, lim);
}

/* One build session of cd_pg_secondary_build. */
typedef struct build_sess {
    cd_pg *pg;
    int busy;    /* a statement in flight */
    size_t item; /* its index in names[] */
    double t0;
    char result[16];
    int failed;
} build_sess;

/* Sends the build of names[item] on b (its session set up). Returns 0 or -1
 * (logged). */
static int build_send(build_sess *b, const char *name, size_t item)
{
    PGconn *c = cd_pg_conn(b->pg);
    const char *vals[1] = {name};
    if (!c || !PQsendQueryParams(c, "SELECT cd_secondary_index_create($1)", 1, NULL, vals, NULL,
                                 NULL, 0)) {
        cd_log_error("postgres: cannot send the build of index %s: %s", name,
                     c ? PQerrorMessage(c) : "not connected");
        return -1;
    }
    b->busy = 1;
    b->item = item;
    b->t0 = cd_now_s();
    b->result[0] = '\0';
    b->failed = 0;
    return 0;
}

/* Takes b's results once the statement is done. Returns 1 when done, 0 when
 * still running, -1 when the connection failed (logged). */
static int build_collect(build_sess *b, const char *name)
{
    PGconn *c = cd_pg_conn(b->pg);
    if (!PQconsumeInput(c)) {
        cd_log_error("postgres: building index %s: %s", name, PQerrorMessage(c));
        b->failed = 1;
        b->busy = 0;
        return -1;
    }
    if (PQisBusy(c))
        return 0;
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            copy_field(b->result, sizeof(b->result), PQgetvalue(r, 0, 0));
        } else {
            char err[512];
            char what[128];
            snprintf(what, sizeof(what), "building index %s", name);
            cd_pg_errline(err, sizeof(err), what, c, r);
            cd_log_error("postgres: %s", err);
            b->failed = 1;
        }
        PQclear(r);
    }
    b->busy = 0;
    return 1;
}

/* Opens and sets up one build session. Returns 0 or an error (logged). */
static int build_open(build_sess *b, const cd_config *cfg, const cd_pg_build_plan *plan)
{
    cd_pg_session how = {.connect_timeout_s = 10, .application_name = "conduitd index build"};
    b->pg = cd_pg_new(cfg, &how);
    cd_pg_set_retry(b->pg, 5, 2000, NULL);
    char mem[96], wk[96];
    snprintf(mem, sizeof(mem), "SET maintenance_work_mem = '%lldkB'", plan->mem_kb);
    snprintf(wk, sizeof(wk), "SET max_parallel_maintenance_workers = %d", plan->workers);
    int rc = cd_pg_exec(b->pg, mem);
    if (rc == CD_PG_OK)
        rc = cd_pg_exec(b->pg, wk);
    return rc;
}

int cd_pg_secondary_build(const cd_config *cfg, const cd_pg_build_plan *plan,
                          const char *const *names, size_t n, cd_pg_build_stats *stats)
{
    memset(stats, 0, sizeof(*stats));
    int ns = plan->sessions;
    if (ns < 1)
        ns = 1;
    if ((size_t)ns > n)
        ns = (int)n;
    if (ns > CD_PG_BUILD_MAX_SESSIONS)
        ns = CD_PG_BUILD_MAX_SESSIONS;
    build_sess sess[CD_PG_BUILD_MAX_SESSIONS];
    memset(sess, 0, sizeof(sess));
    int rc = CD_PG_OK;
    int open = 0;
    for (; open < ns && rc == CD_PG_OK; open++)
        rc = build_open(&sess[open], cfg, plan);
    size_t next = 0;
    int running = 0;
    for (int i = 0; i < open && rc == CD_PG_OK && next < n; i++) {
        if (build_send(&sess[i], names[next], next) != 0) {
            rc = CD_PG_ERROR;
            break;
        }
        next++;
        running++;
    }
    while (running > 0) {
        struct pollfd pfd[CD_PG_BUILD_MAX_SESSIONS];
        int map[CD_PG_BUILD_MAX_SESSIONS], np = 0;
        for (int i = 0; i < open; i++) {
            if (!sess[i].busy)
                continue;
            pfd[np].fd = PQsocket(cd_pg_conn(sess[i].pg));
            pfd[np].events = POLLIN;
            pfd[np].revents = 0;
            map[np++] = i;
        }
        if (poll(pfd, (nfds_t)np, -1) < 0) {
            if (errno == EINTR)
                continue;
            cd_log_error("postgres: poll during the index build: %s", strerror(errno));
            rc = CD_PG_ERROR;
            break;
        }
        for (int k = 0; k < np; k++) {
            if (!pfd[k].revents)
                continue;
            build_sess *b = &sess[map[k]];
            const char *name = names[b->item];
            int d = build_collect(b, name);
            if (d == 0)
                continue;
            running--;
            double secs = cd_now_s() - b->t0;
            if (d < 0 || b->failed) {
                rc = CD_PG_ERROR;
            } else {
                stats->built += strcmp(b->result, "present") != 0;
                cd_log_info("index: %s %s in %.1f s (session %d of %d)", name, b->result, secs,
                            map[k] + 1, open);
            }
            if (secs > stats->longest_s)
                stats->longest_s = secs;
            /* after a failure, no new builds: the helper reports it and
             * the controller retries the whole set later */
            if (rc == CD_PG_OK && next < n) {
                if (build_send(b, names[next], next) != 0) {
                    rc = CD_PG_ERROR;
                } else {
                    next++;
                    running++;
                }
            }
        }
    }
    for (int i = 0; i < open; i++)
        cd_pg_free(sess[i].pg);
    return rc;
}
