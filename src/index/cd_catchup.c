/*
 * cd_catchup.c - catch-up mode of the PostgreSQL index (see cd_catchup.h):
 * drop the secondary indexes while far behind, rebuild them when close.
 *
 * Why it exists: the daemon indexes ~3x faster without the four random-key
 * secondary indexes (docs/PERFORMANCE.md), but CREATE INDEX on a large chain
 * takes minutes, and the controller's loop must never block on PostgreSQL
 * (DESIGN.md §2). So the controller only decides; a forked helper process
 * (its own PGconn, opened after the fork) does the DDL and writes one
 * fixed-size message per event into a pipe the loop watches.
 */
#include "cd_catchup.h"

#include "cd_log.h"
#include "cd_util.h"
#include "cd_pg.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* pg_advisory_lock key of the helpers (cd_pg_int.h has ...01 and ...02) */
#define CU_LOCK_KEY "4242424203"
#define CU_RETRY_S  10.0

typedef enum { CU_UNKNOWN, CU_LIVE, CU_DROPPED } cu_known;
typedef enum { CU_OP_NONE, CU_OP_DROP, CU_OP_BUILD } cu_op;

/* helper -> controller, one write each (< PIPE_BUF: atomic) */
typedef struct cu_msg {
    char kind;   /* 'B' build started (some index missing), 'R' result */
    int32_t rc;  /* R: 0 ok, < 0 failed */
    int32_t had; /* R: how many of the CU_N_INDEXES existed before */
    double secs; /* R: time the DDL took */
} cu_msg;

typedef struct cu_state {
    cd_ctl *ctl;
    const cd_config *cfg;
    struct event_base *base;
    struct event *tick;
    struct event *rd;
    cu_known known;
    cu_op op;       /* helper running */
    int building;   /* 'B' received */
    pid_t pid;      /* helper, 0: none */
    int fd;         /* read end of its pipe */
    int32_t behind; /* at the helper's launch */
    double retry_at;
    int got_result;
} cu_state;

static const char *const cu_index_names = "'transactions_hash_idx', 'inputs_outpoint_idx', "
                                          "'pushdata_hash_idx', 'outputs_script_hash_idx'";
/* how many names cu_index_names lists (cd_pg_secondary_indexes builds them) */
#define CU_N_INDEXES 4

/* ---- the helper process ---- */

static void send_msg(int fd, char kind, int rc, int had, double secs)
{
    cu_msg m;
    memset(&m, 0, sizeof(m));
    m.kind = kind;
    m.rc = rc;
    m.had = had;
    m.secs = secs;
    ssize_t w;
    do {
        w = write(fd, &m, sizeof(m));
    } while (w < 0 && errno == EINTR);
}

/* How many of the CU_N_INDEXES indexes exist (-1: error, logged by the caller). */
static int count_indexes(cd_pg *pg)
{
    if (cd_pg_connect(pg) != CD_PG_OK)
        return -1;
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() "
             "AND indexname IN (%s)",
             cu_index_names);
    PGresult *r = PQexec(cd_pg_conn(pg), sql);
    int n = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        n = atoi(PQgetvalue(r, 0, 0));
    else
        cd_log_error("index: reading pg_indexes: %s", PQresultErrorMessage(r));
    PQclear(r);
    return n;
}

static CD_NORETURN void helper_main(const cd_config *cfg, cu_op op, int fd)
{
    cd_close_fds_except(fd);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* A helper outliving its daemon is harmless (the next one waits on the
     * advisory lock) but pointless. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    cd_log_set_component("index-ddl");
    if (cfg->log_file)
        cd_log_open_child(cfg->log_file);

    cd_pg *pg = cd_pg_new(cfg, NULL);
    cd_pg_set_retry(pg, 0, 5000, NULL);
    int rc = CD_PG_ERROR, had = -1;
    double t0 = cd_now_s();
    /* The schema first (idempotent, serialised with the parsers' own
     * migration): a helper started on the first header tip can run before
     * any parser has created the tables, and a DROP then would find nothing
     * while the migration creates the indexes right after.
     * Then a session lock: a DDL of a helper whose daemon was killed may still
     * be running in its backend; wait for it rather than race it */
    if (cd_pg_migrate(pg) == CD_PG_OK &&
        cd_pg_exec(pg, "SELECT pg_advisory_lock(" CU_LOCK_KEY ")") == CD_PG_OK &&
        (had = count_indexes(pg)) >= 0) {
        if (op == CU_OP_DROP) {
            rc = had ? cd_pg_secondary_indexes(pg, 0) : CD_PG_OK;
        } else if (had == CU_N_INDEXES) {
            rc = CD_PG_OK;
        } else {
            send_msg(fd, 'B', 0, had, 0);
            /* a sort per index: more memory makes it much faster */
            /* only a speed-up: without it the build is slower, not wrong */
            CD_IGNORE(cd_pg_exec(pg, "SET maintenance_work_mem = '512MB'"));
            t0 = cd_now_s();
            rc = cd_pg_secondary_indexes(pg, 1);
        }
    }
    send_msg(fd, 'R', rc, had, cd_now_s() - t0);
    cd_pg_free(pg); /* ends the session: releases the lock */
    _exit(rc == CD_PG_OK ? 0 : 1);
}

/* ---- controller side ---- */

static void helper_done(cu_state *s)
{
    if (s->rd) {
        event_free(s->rd);
        s->rd = NULL;
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    /* the supervisor's SIGCHLD handler may have reaped it already */
    if (s->pid > 0)
        (void)waitpid(s->pid, NULL, WNOHANG);
    s->pid = 0;
    s->op = CU_OP_NONE;
    s->building = 0;
}

static void on_msg(cu_state *s, const cu_msg *m)
{
    if (m->kind == 'B') {
        s->building = 1;
        cd_log_info("index: building secondary indexes (%d of %d present; %d blocks behind): "
                    "transactions(tx_hash), inputs(prev_hash, prev_idx), pushdata(push_hash), "
                    "outputs(script_hash)",
                    (int)m->had, CU_N_INDEXES, (int)s->behind);
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
        if (m->had == CU_N_INDEXES)
            cd_log_info("index: secondary indexes present (%d blocks behind)", (int)s->behind);
        else
            cd_log_info("index: secondary indexes ready (%.1f s)", m->secs);
    }
}

static void rd_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    cu_state *s = arg;
    for (;;) {
        cu_msg m;
        ssize_t r = read(fd, &m, sizeof(m));
        if (r == (ssize_t)sizeof(m)) {
            on_msg(s, &m);
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        /* EOF (or a short read: cannot happen for atomic writes) */
        if (!s->got_result) {
            cd_log_warn("index: helper (pid %d) ended without a result; retrying in %.0f s",
                        (int)s->pid, CU_RETRY_S);
            s->retry_at = cd_now_s() + CU_RETRY_S;
        }
        helper_done(s);
        return;
    }
}

static void launch(cu_state *s, cu_op op, int32_t behind)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        cd_log_error("index: pipe: %s", strerror(errno));
        s->retry_at = cd_now_s() + CU_RETRY_S;
        return;
    }
    pid_t pid = cd_fork_signals_blocked();
    if (pid == 0) {
        close(p[0]);
        helper_main(s->cfg, op, p[1]);
    }
    int saved = errno;
    close(p[1]);
    if (pid < 0) {
        cd_log_error("index: fork: %s", strerror(saved));
        close(p[0]);
        s->retry_at = cd_now_s() + CU_RETRY_S;
        return;
    }
    evutil_make_socket_nonblocking(p[0]);
    s->pid = pid;
    s->fd = p[0];
    s->op = op;
    s->behind = behind;
    s->building = 0;
    s->got_result = 0;
    s->rd = event_new(s->base, p[0], EV_READ | EV_PERSIST, rd_cb, s);
    event_add(s->rd, NULL);
    cd_log_debug("index: %s helper started (pid %d, %d blocks behind)",
                 op == CU_OP_DROP ? "drop" : "build", (int)pid, (int)behind);
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
    if (s->pid > 0) {
        /* its backend finishes the statement anyway; the next start's
         * helper waits for it on the advisory lock */
        kill(s->pid, SIGTERM);
        (void)waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    helper_done(s);
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
