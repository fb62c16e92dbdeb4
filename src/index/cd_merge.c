/*
 * cd_merge.c - merging closed height-range partitions in levels (see
 * cd_merge.h; the SQL is sql/019_partition_merge.sql).
 *
 * The controller only schedules (cd_merge_due, every second); a helper
 * process does one merge per run: it swaps in a copy an earlier run left
 * prepared (a swap that lost its wait, or a daemon killed between the
 * phases), else copies the next candidate and swaps it in, retrying the
 * swap's lock wait a few times before leaving the copy for the next run.
 * It writes one fixed-size message per event into its channel, which the
 * loop reads; the supervisor reaps it (cd_helper.h). With merging off
 * (partition_merge 0) it runs once, at start, only to drop what earlier
 * runs left: merged sources not dropped yet, a copy prepared and not
 * swapped in (as large as its sources).
 *
 * Its own process, not the index-ddl helper's op: that helper runs one op
 * at a time, and a copy of hours would hold back the rolls and the
 * catch-up decisions; its own advisory lock key, so that a merge never
 * waits for a roll or a build, nor they for it (the SQL's locks order
 * them where they touch).
 */
#include "cd_merge.h"

#include "cd_helper.h"
#include "cd_log.h"
#include "cd_pg.h"
#include "cd_util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* pg_advisory_lock key of the merge helper (cd_pg_int.h has ...01, ...02,
 * sql/020 the partition fence ...05,
 * cd_catchup.c ...03): one merge at a time, also against the helper of a
 * killed daemon whose backend still copies */
#define MG_LOCK_KEY   "4242424204"
/* swap attempts per run, a second apart, before the copy is left for the
 * next run (CD_MERGE_AGAIN_BUSY_S later): each attempt waits at most half
 * of deadlock_timeout for the tables, then lets the units go first */
#define MG_SWAP_TRIES 10

/* helper -> controller, one write each */
typedef struct mg_msg {
    char kind;         /* 'S' copying (level, sources), 'O' the run's outcome */
    int32_t last;      /* O: cd_merge_last */
    int32_t level;     /* S: the sources' level; O (merged): the new level */
    int32_t sources;   /* S, O: how many partitions merged */
    int32_t parts;     /* O: partitions after (0: not read) */
    int32_t max_level; /* O: the highest level (-1: not read) */
    double copy_s, swap_s;
} mg_msg;

typedef struct mg_state {
    cd_ctl *ctl;
    const cd_config *cfg;
    cd_helper *helper; /* the merger: its runs, and the tick (cd_merge_due) */
    cd_merge_sched sched;
    int got_outcome;
    cd_merge_last outcome;
    /* the status */
    uint64_t merges;
    int32_t level;   /* highest level, -1: not read */
    int32_t copying; /* level being copied, -1: none */
    int cleaned;     /* merging off: the one run that drops leftovers ran */
} mg_state;

int cd_merge_due(const cd_merge_sched *s, double now, int32_t parts_now)
{
    if (s->fan_in < 2 || s->running)
        return 0;
    double since = now - s->last_end;
    switch (s->last) {
    case CD_MERGE_NEVER:
    case CD_MERGE_MERGED:
        return 1;
    case CD_MERGE_NOTHING:
        return (parts_now > 0 && parts_now != s->parts_then) || since >= CD_MERGE_AGAIN_IDLE_S;
    case CD_MERGE_BUSY:
        return since >= CD_MERGE_AGAIN_BUSY_S;
    case CD_MERGE_CHANGED:
        return since >= CD_MERGE_AGAIN_CHANGED_S;
    case CD_MERGE_FAILED:
    default:
        return since >= CD_MERGE_AGAIN_FAILED_S;
    }
}

/* ---- the helper process ---- */

/* The session's cancel handle, for SIGTERM (PQcancel is documented safe in
 * a signal handler): a daemon stopping mid-copy ends the copy's statement
 * rather than leave its backend copying for hours into a transaction that
 * will roll back. */
static PGcancel *volatile mg_cancel;

static void on_term(int sig)
{
    (void)sig;
    int e = errno;
    char buf[64];
    PGcancel *c = mg_cancel;
    if (c)
        PQcancel(c, buf, sizeof(buf));
    errno = e;
}

/* Swaps the prepared merge in, MG_SWAP_TRIES times while busy.
 * Returns: CD_PG_OK (*out set) or an error (logged). */
static int swap_tries(cd_pg *pg, cd_pg_merge_outcome *out, double *secs)
{
    int rc = CD_PG_OK;
    for (int i = 0; i < MG_SWAP_TRIES; i++) {
        if (i > 0)
            sleep(1);
        rc = cd_pg_partition_merge_swap(pg, out, secs);
        if (rc != CD_PG_OK || *out != CD_PG_MERGE_BUSY)
            break;
    }
    return rc;
}

/* One run: the outcome into m. Returns: CD_PG_OK or an error (logged). */
static int run_once(const cd_config *cfg, cd_pg *pg, int fd, mg_msg *m)
{
    cd_pg_merge_outcome out = CD_PG_MERGE_NONE;
    int level = -1, n = 0;
    /* the old sources of a swap whose helper died before dropping them
     * would otherwise wait for the next copy, holding their disk */
    cd_pg_partition_merge_drop_old(pg);
    if (cfg->partition_merge < 2) {
        /* merging off: a copy an earlier run prepared would never be
         * swapped in, and may hold as much disk as its sources */
        int tables = 0;
        int rc = cd_pg_partition_merge_discard(pg, &tables);
        if (rc == CD_PG_OK && tables > 0)
            cd_log_info("partition-merge: off (partition_merge = %d): dropped the %d staging "
                        "tables of a copy an earlier run prepared",
                        (int)cfg->partition_merge, tables);
        m->last = CD_MERGE_NOTHING;
        return rc;
    }
    /* a copy left prepared by an earlier run: swap it first (no copy) */
    int rc = swap_tries(pg, &out, &m->swap_s);
    if (rc == CD_PG_OK && out == CD_PG_MERGE_CHANGED)
        cd_log_info("partition-merge: a block was indexed or purged in the range of the copy "
                    "left by an earlier run: copy dropped");
    if (rc == CD_PG_OK && (out == CD_PG_MERGE_NONE || out == CD_PG_MERGE_CHANGED)) {
        /* no copy awaits its swap now: the levels may follow the sizes
         * before the candidate is chosen by them (sql/024) */
        rc = cd_pg_partition_relevel(pg, (int)cfg->partition_merge, (int64_t)cfg->partition_txs);
        if (rc == CD_PG_OK)
            rc = cd_pg_partition_merge_candidate(pg, (int)cfg->partition_merge, &level, &n);
        if (rc == CD_PG_OK && level >= 0) {
            mg_msg s = {.kind = 'S', .level = level, .sources = n};
            cd_helper_send(fd, &s, sizeof(s));
            rc = cd_pg_partition_merge_prepare(pg, (int)cfg->partition_merge, &level, &m->copy_s);
            if (rc == CD_PG_OK && level >= 0)
                rc = swap_tries(pg, &out, &m->swap_s);
            else
                out = CD_PG_MERGE_NONE; /* the candidate went (another merge) */
        }
    }
    if (rc != CD_PG_OK)
        return rc;
    m->sources = n;
    m->last = out == CD_PG_MERGE_MERGED    ? CD_MERGE_MERGED
              : out == CD_PG_MERGE_CHANGED ? CD_MERGE_CHANGED
              : out == CD_PG_MERGE_BUSY    ? CD_MERGE_BUSY
                                           : CD_MERGE_NOTHING;
    if (out == CD_PG_MERGE_MERGED)
        m->level = level >= 0 ? level + 1 : -1;
    cd_pg_partitions p;
    int prepared = 0, maxl = 0;
    if (cd_pg_partitions_read(pg, &p) == CD_PG_OK)
        m->parts = p.count;
    if (cd_pg_partition_merge_state(pg, &maxl, &prepared) == CD_PG_OK)
        m->max_level = maxl;
    return CD_PG_OK;
}

static CD_NORETURN void helper_main(void *arg, int slot, int fd)
{
    (void)slot;
    const mg_state *s = arg;
    const cd_config *cfg = s->cfg;
    cd_helper_die_with_controller();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);

    cd_pg *pg = cd_pg_new(cfg, NULL);
    cd_pg_set_retry(pg, 0, 5000, NULL);
    mg_msg m = {.kind = 'O', .last = CD_MERGE_FAILED, .level = -1, .max_level = -1};
    int rc = cd_pg_migrate(pg);
    /* a daemon killed with SIGKILL cannot cancel: the backend then notices
     * the closed connection within this interval (PostgreSQL 14+; an
     * older server refuses the setting: only that safety net is lost) */
    if (rc == CD_PG_OK)
        CD_IGNORE(cd_pg_exec(pg, "SET client_connection_check_interval = '10s'"));
    if (rc == CD_PG_OK) {
        PGresult *r = PQexec(cd_pg_conn(pg), "SELECT pg_try_advisory_lock(" MG_LOCK_KEY ")");
        int locked = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                     strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = CD_PG_ERROR;
        PQclear(r);
        if (rc == CD_PG_OK && !locked) {
            cd_log_info("partition-merge: another merge holds the lock (a killed daemon's "
                        "backend still copying?); later");
            m.last = CD_MERGE_NOTHING;
        } else if (rc == CD_PG_OK) {
            mg_cancel = PQgetCancel(cd_pg_conn(pg));
            rc = run_once(cfg, pg, fd, &m);
        }
    }
    cd_helper_send(fd, &m, sizeof(m));
    PGcancel *c = mg_cancel;
    mg_cancel = NULL;
    if (c)
        PQfreeCancel(c);
    cd_pg_free(pg); /* ends the session: releases the lock */
    _exit(rc == CD_PG_OK ? 0 : 1);
}

/* ---- controller side ---- */

/* The helper's messages (cd_helper_hooks.on_msg). */
static void on_msg(void *arg, const void *msg)
{
    mg_state *s = arg;
    const mg_msg *m = msg;
    if (m->kind == 'S') {
        s->copying = m->level;
        cd_log_info("partition-merge: copying %d partitions of level %d to merge them",
                    (int)m->sources, (int)m->level);
        return;
    }
    if (m->kind != 'O')
        return;
    s->got_outcome = 1;
    s->outcome = (cd_merge_last)m->last;
    s->copying = -1;
    if (m->max_level >= 0)
        s->level = m->max_level;
    if (m->parts > 0)
        s->sched.parts_then = m->parts;
    switch (s->outcome) {
    case CD_MERGE_MERGED:
        s->merges++;
        cd_log_info("partition-merge: merged %d partitions into one of level %d (copy %.3f s, "
                    "the swap %.3f s, a wait for a key-rows batch included); %d partitions",
                    (int)m->sources, (int)m->level, m->copy_s, m->swap_s, (int)m->parts);
        break;
    case CD_MERGE_CHANGED:
        cd_log_info("partition-merge: a block was indexed or purged in the range while it was "
                    "copied (copy %.3f s): copy dropped, copying again in %.0f s",
                    m->copy_s, CD_MERGE_AGAIN_CHANGED_S);
        break;
    case CD_MERGE_BUSY:
        cd_log_info("partition-merge: the tables stayed busy; the copy is kept and swapped in "
                    "%.0f s",
                    CD_MERGE_AGAIN_BUSY_S);
        break;
    case CD_MERGE_FAILED:
        cd_log_warn("partition-merge: failed; again in %.0f s", CD_MERGE_AGAIN_FAILED_S);
        break;
    default:
        break;
    }
}

/* The run ended (reaped; its messages read): the outcome for the schedule. */
static void helper_down(void *arg, pid_t pid, int code)
{
    mg_state *s = arg;
    if (!s->got_outcome) {
        cd_log_warn("partition-merge: helper (pid %d) ended without a result (exit %d); again "
                    "in %.0f s",
                    (int)pid, code, CD_MERGE_AGAIN_FAILED_S);
        s->outcome = CD_MERGE_FAILED;
    } else if (code != 0 && s->outcome != CD_MERGE_FAILED) {
        s->outcome = CD_MERGE_FAILED;
    }
    s->copying = -1;
    s->sched.running = 0;
    s->sched.last = s->outcome;
    s->sched.last_end = cd_now_s();
}

/* Its row of the process table: one run per launch, no ring, PG. */
static const cd_sup_kind helper_kind = {.name = "partition-merge",
                                        .main = helper_main,
                                        .restart = CD_SUP_ONCE,
                                        .needs_ring = 0,
                                        .needs_pg = 1};

static void launch(mg_state *s)
{
    s->got_outcome = 0;
    s->outcome = CD_MERGE_FAILED;
    if (cd_helper_launch(s->helper) != 0) { /* logged */
        s->sched.last = CD_MERGE_FAILED;
        s->sched.last_end = cd_now_s();
        return;
    }
    s->sched.running = 1;
    cd_log_debug("partition-merge: helper started (pid %d)", (int)cd_helper_pid(s->helper));
}

static void on_tick(void *arg)
{
    mg_state *s = arg;
    cd_ctl_progress pr;
    cd_ctl_progress_now(s->ctl, &pr);
    /* not before the catch-up module has read the partitions once: the
     * first run would only race the daemon's start for the schema */
    if (pr.partitions <= 0)
        return;
    if (s->cfg->partition_merge < 2) {
        /* merging off: one run, that only drops what earlier runs left
         * (merged sources, a prepared copy: their disk) */
        if (!s->cleaned) {
            s->cleaned = 1;
            launch(s);
        }
        return;
    }
    if (cd_merge_due(&s->sched, cd_now_s(), pr.partitions))
        launch(s);
}

/* ---- module ---- */

static int mod_init(cd_ctl *ctl, void **state)
{
    mg_state *s = cd_xcalloc(1, sizeof(*s));
    s->ctl = ctl;
    s->cfg = cd_ctl_config(ctl);
    cd_helper_hooks hooks = {
        .arg = s, .on_tick = on_tick, .on_msg = on_msg, .on_down = helper_down};
    s->helper = cd_helper_new(cd_ctl_sup(ctl), cd_ctl_base(ctl), &helper_kind, s, sizeof(mg_msg),
                              "partition-merge", &hooks);
    s->level = -1;
    s->copying = -1;
    s->sched.fan_in = s->cfg->partition_merge;
    *state = s;
    return 0;
}

static int mod_start(void *state)
{
    mg_state *s = state;
    /* also with merging off, for the one run that drops leftovers */
    if (s->cfg->index)
        cd_helper_tick(s->helper, 1000);
    return 0;
}

static void mod_fini(void *state)
{
    mg_state *s = state;
    if (!s)
        return;
    /* the tick ends; SIGTERM: the helper cancels its statement (a copy
     * rolls back, a prepared copy stays for the next start's first run) */
    cd_helper_free(s->helper, 5000);
    free(s);
}

static void mod_progress(void *state, cd_ctl_progress *out)
{
    mg_state *s = state;
    if (!cd_helper_ticking(s->helper) || s->cfg->partition_merge < 2)
        return;
    out->partition_merges = s->merges;
    out->partition_level = s->level;
    out->partition_merging = s->copying;
}

const cd_ctl_module cd_merge_module = {
    .name = "merge",
    .init = mod_init,
    .start = mod_start,
    .fini = mod_fini,
    .progress = mod_progress,
};
