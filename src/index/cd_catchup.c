/*
 * cd_catchup.c - catch-up mode of the PostgreSQL index (see cd_catchup.h):
 * drop the secondary indexes while far behind, rebuild them when close.
 *
 * Why it exists: the daemon indexes ~3x faster without the four random-key
 * secondary indexes (docs/PERFORMANCE.md), but CREATE INDEX on a large chain
 * takes minutes, and the controller's loop must never block on PostgreSQL
 * (DESIGN.md §2). So the controller only decides; a helper process (a
 * CD_SUP_ONCE row of the process table, cd_supervisor.h: its own PGconn,
 * opened after the fork) does the DDL and writes one fixed-size message per
 * event into its channel, which the loop watches; the supervisor reaps it.
 */
#include "cd_catchup.h"

#include "cd_log.h"
#include "cd_util.h"
#include "cd_pg.h"
#include "cd_supervisor.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

/* pg_advisory_lock key of the helpers (cd_pg_int.h has ...01 and ...02) */
#define CU_LOCK_KEY "4242424203"
#define CU_RETRY_S  10.0

typedef enum { CU_UNKNOWN, CU_LIVE, CU_DROPPED } cu_known;
typedef enum { CU_OP_NONE, CU_OP_DROP, CU_OP_BUILD } cu_op;

/* helper -> controller, one write each (the channel is a stream socket:
 * the reader reassembles a message that arrives in pieces) */
typedef struct cu_msg {
    char kind;     /* 'B' build started (some index missing), 'R' result */
    int32_t rc;    /* R: 0 ok, < 0 failed */
    int32_t had;   /* B, R: how many of the indexes were valid before */
    int32_t total; /* B, R: how many secondary indexes sql/013 defines */
    double secs;   /* R: time the DDL took */
} cu_msg;

typedef struct cu_state {
    cd_ctl *ctl;
    const cd_config *cfg;
    struct event_base *base;
    struct event *tick;
    struct event *rd;
    cd_supervisor *sup;
    int slot; /* the helper's row in the process table, -1: none */
    cu_known known;
    cu_op op;     /* helper running (launched, not yet reaped) */
    int building; /* 'B' received */
    pid_t pid;    /* helper, 0: none */
    int fd;       /* controller end of its channel */
    unsigned char rbuf[sizeof(cu_msg)];
    size_t rfill;   /* bytes of a message read so far */
    int32_t behind; /* at the helper's launch */
    double retry_at;
    int got_result;
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
    ssize_t w;
    do {
        w = write(fd, &m, sizeof(m));
    } while (w < 0 && errno == EINTR);
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
    prctl(PR_SET_PDEATHSIG, SIGKILL);

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
        read_indexes(pg, list, &had, &total) == CD_PG_OK) {
        if (op == CU_OP_DROP) {
            rc = cd_pg_secondary_indexes(pg, 0);
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

static void close_channel(cu_state *s)
{
    if (s->rd) {
        event_free(s->rd);
        s->rd = NULL;
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->rfill = 0;
}

/* Reads what the helper wrote; at EOF only closes the channel (its end is
 * on_down's, once the supervisor has reaped it). */
static void read_channel(cu_state *s);

static void rd_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_channel(arg);
}

static void on_msg(cu_state *s, const cu_msg *m)
{
    if (m->kind == 'B') {
        s->building = 1;
        cd_log_info("index: building secondary indexes (%d of %d present; %d blocks behind)",
                    (int)m->had, (int)m->total, (int)s->behind);
        return;
    }
    s->got_result = 1;
    if (m->rc != 0) {
        cd_log_warn("index: %s of the secondary indexes failed; retrying in %.0f s",
                    s->op == CU_OP_DROP ? "dropping" : "building", CU_RETRY_S);
        s->retry_at = cd_now_s() + CU_RETRY_S;
        return;
    }
    if (s->op == CU_OP_DROP) {
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

static void read_channel(cu_state *s)
{
    while (s->fd >= 0) {
        ssize_t r = read(s->fd, s->rbuf + s->rfill, sizeof(s->rbuf) - s->rfill);
        if (r > 0) {
            s->rfill += (size_t)r;
            if (s->rfill == sizeof(s->rbuf)) {
                cu_msg m;
                memcpy(&m, s->rbuf, sizeof(m));
                s->rfill = 0;
                on_msg(s, &m);
            }
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        close_channel(s); /* EOF or error: the helper has ended or is ending */
    }
}

/* The process table's callbacks for the helper (not cd_resident.h's: the
 * helper runs once per decision and its channel carries the result). */
static void helper_up(void *arg, int slot, int fd)
{
    (void)slot;
    cu_state *s = arg;
    close_channel(s);
    s->fd = fd;
    s->rd = event_new(s->base, fd, EV_READ | EV_PERSIST, rd_cb, s);
    event_add(s->rd, NULL);
}

/* The helper ended (reaped by the supervisor): take what it wrote last,
 * then the decision may launch the next one. */
static void helper_down(void *arg, int slot, int code)
{
    (void)slot;
    cu_state *s = arg;
    read_channel(s);
    close_channel(s);
    if (!s->got_result) {
        cd_log_warn("index: helper (pid %d) ended without a result (exit %d); retrying in %.0f s",
                    (int)s->pid, code, CU_RETRY_S);
        s->retry_at = cd_now_s() + CU_RETRY_S;
    }
    s->pid = 0;
    s->op = CU_OP_NONE;
    s->building = 0;
}

/* Its row of the process table: run once per decision, no ring, PG. */
static const cd_sup_kind helper_kind = {.name = "index-ddl",
                                        .main = helper_main,
                                        .restart = CD_SUP_ONCE,
                                        .needs_ring = 0,
                                        .needs_pg = 1};

static void launch(cu_state *s, cu_op op, int32_t behind)
{
    if (s->slot < 0) {
        cd_sup_cbs cbs = {.arg = s, .on_up = helper_up, .on_down = helper_down};
        s->slot = cd_sup_add(s->sup, &helper_kind, 0, NULL, s, &cbs);
        if (s->slot < 0) {
            cd_log_error("index: cannot add the helper: %s", cd_strerror(s->slot));
            s->slot = -1;
            s->retry_at = cd_now_s() + CU_RETRY_S;
            return;
        }
    }
    /* read by the child at the fork, by on_msg afterwards */
    s->op = op;
    s->behind = behind;
    s->building = 0;
    s->got_result = 0;
    int rc = cd_sup_launch(s->sup, s->slot);
    if (rc != 0) {
        /* EFORK logged by the supervisor; ERUNNING cannot happen (op was
         * NONE: the last one was reaped) */
        cd_log_error("index: cannot start the helper: %s", cd_strerror(rc));
        s->op = CU_OP_NONE;
        s->retry_at = cd_now_s() + CU_RETRY_S;
        return;
    }
    s->pid = cd_sup_pid(s->sup, s->slot);
    cd_log_debug("index: %s helper started (pid %d, %d blocks behind)",
                 op == CU_OP_DROP ? "drop" : "build", (int)s->pid, (int)behind);
}

static void decide(cu_state *s)
{
    if (s->op != CU_OP_NONE || cd_now_s() < s->retry_at)
        return;
    if (s->cfg->catchup_indexes == CD_CATCHUP_LIVE) {
        if (s->known != CU_LIVE)
            launch(s, CU_OP_BUILD, 0);
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
    if (behind > threshold) {
        if (s->known != CU_DROPPED)
            launch(s, CU_OP_DROP, behind);
    } else if (s->known != CU_LIVE && cd_ctl_headers_synced(s->ctl)) {
        launch(s, CU_OP_BUILD, behind);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    decide(arg);
}

/* A new best header tip (after header sync: the whole distance at once)
 * is the moment the distance changes most; deciding only on the next tick
 * would index up to a second of a catch-up with the indexes still live, or,
 * for a short chain indexed within that second, never drop them at all. */
static void on_best_chain(void *state, const cd_hdrtree_tip_event *ev)
{
    (void)ev;
    cu_state *s = state;
    if (s->tick)
        decide(s);
}

/* ---- module ---- */

static int mod_init(cd_ctl *ctl, void **state)
{
    cu_state *s = cd_xcalloc(1, sizeof(*s));
    s->ctl = ctl;
    s->cfg = cd_ctl_config(ctl);
    s->base = cd_ctl_base(ctl);
    s->sup = cd_ctl_sup(ctl);
    s->slot = -1;
    s->fd = -1;
    *state = s;
    return 0;
}

static int mod_start(void *state)
{
    cu_state *s = state;
    if (!s->cfg->index)
        return 0;
    s->tick = event_new(s->base, -1, EV_PERSIST, tick_cb, s);
    struct timeval tv = {1, 0};
    event_add(s->tick, &tv);
    return 0;
}

static void mod_fini(void *state)
{
    cu_state *s = state;
    if (!s)
        return;
    if (s->tick)
        event_free(s->tick);
    /* a running helper gets SIGTERM (its backend finishes the statement
     * anyway; the next start's helper waits for it on the advisory lock);
     * helper_down runs as it is reaped; its row is freed */
    cd_sup_stop(s->sup, s, 5000);
    close_channel(s);
    free(s);
}

static void mod_progress(void *state, cd_ctl_progress *out)
{
    cu_state *s = state;
    if (!s->cfg->index)
        return;
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
