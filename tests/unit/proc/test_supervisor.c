/*
 * test_supervisor.c - the process table (src/proc/cd_supervisor.c) with real
 * fork()ed children and a real libevent loop: the back-off rule and the
 * exit-code verdicts as pure functions, then the table itself: a child
 * exiting 2 is a configuration error and is never respawned, any other
 * death of a resident child is respawned, a run-once child is not (and runs
 * again only when launched), the ring is unmapped in children that do not
 * need it, PGAPPNAME names a child that opens PostgreSQL sessions, and
 * stopping one owner's children leaves the others running.
 */
#include "cd_test.h"
#include "proc_test.h"

#include "cd_supervisor.h"
#include "cd_util.h"

#include <event2/event.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------------- the rules ---------------- */

START_TEST(test_backoff_doubles_to_the_cap)
{
    uint32_t b = cd_sup_backoff(0, 0);
    ck_assert_uint_eq(b, CD_SUP_BACKOFF_MIN_MS);
    uint32_t seen[8];
    for (int i = 0; i < 8; i++) {
        seen[i] = b;
        b = cd_sup_backoff(b, 1000000ull); /* died after 1 ms */
    }
    ck_assert_uint_eq(seen[1], 200);
    ck_assert_uint_eq(seen[2], 400);
    ck_assert_uint_eq(seen[5], 3200);
    ck_assert_uint_eq(seen[6], CD_SUP_BACKOFF_MAX_MS);
    ck_assert_uint_eq(seen[7], CD_SUP_BACKOFF_MAX_MS);
}
END_TEST

START_TEST(test_backoff_resets_after_a_healthy_life)
{
    ck_assert_uint_eq(cd_sup_backoff(CD_SUP_BACKOFF_MAX_MS, CD_SUP_HEALTHY_NS + 1),
                      CD_SUP_BACKOFF_MIN_MS);
    /* exactly the healthy time is not yet healthy */
    ck_assert_uint_eq(cd_sup_backoff(400, CD_SUP_HEALTHY_NS), 800);
}
END_TEST

START_TEST(test_verdicts)
{
    /* exit 2: a configuration error, whatever the kind */
    ck_assert_int_eq(cd_sup_verdict_of(CD_SUP_RESPAWN, CD_EXIT_CONFIG, 0), CD_SUP_FATAL);
    ck_assert_int_eq(cd_sup_verdict_of(CD_SUP_ONCE, CD_EXIT_CONFIG, 0), CD_SUP_FATAL);
    /* a crash, a clean exit or a signal of a resident child: respawn */
    ck_assert_int_eq(cd_sup_verdict_of(CD_SUP_RESPAWN, CD_EXIT_FAILURE, 0), CD_SUP_RESTART);
    ck_assert_int_eq(cd_sup_verdict_of(CD_SUP_RESPAWN, 0, 0), CD_SUP_RESTART);
    ck_assert_int_eq(cd_sup_verdict_of(CD_SUP_RESPAWN, -SIGKILL, 0), CD_SUP_RESTART);
    /* SIGINT is 2 as well: a signal is never read as exit code 2 */
    ck_assert_int_eq(cd_sup_verdict_of(CD_SUP_RESPAWN, -SIGINT, 0), CD_SUP_RESTART);
    /* a run-once child is done after any other end */
    ck_assert_int_eq(cd_sup_verdict_of(CD_SUP_ONCE, 0, 0), CD_SUP_DONE);
    ck_assert_int_eq(cd_sup_verdict_of(CD_SUP_ONCE, 1, 0), CD_SUP_DONE);
    /* while stopping nothing is respawned, and exit 2 is not fatal */
    ck_assert_int_eq(cd_sup_verdict_of(CD_SUP_RESPAWN, CD_EXIT_CONFIG, 1), CD_SUP_DONE);
    ck_assert_int_eq(cd_sup_verdict_of(CD_SUP_RESPAWN, 1, 1), CD_SUP_DONE);
}
END_TEST

/* ---------------- the table, with real children ---------------- */

typedef struct obs {
    struct event_base *base;
    int ups, downs, fatal;
    int last_code;
    int stop_at_ups, stop_at_downs;
    char line[64]; /* what the last child wrote on its channel */
} obs;

static void o_up(void *arg, int slot, int fd)
{
    (void)slot;
    obs *o = arg;
    o->ups++;
    /* what the child writes is read back (blocking: it writes at once or
     * exits, closing its end) */
    char buf[64] = "";
    ssize_t n, got = 0;
    while ((n = read(fd, buf + got, sizeof(buf) - 1 - (size_t)got)) != 0) {
        if (n < 0) {
            fd_set r;
            FD_ZERO(&r);
            FD_SET(fd, &r);
            select(fd + 1, &r, NULL, NULL, NULL);
            continue;
        }
        got += n;
    }
    buf[got] = 0;
    snprintf(o->line, sizeof(o->line), "%s", buf);
    close(fd);
    if (o->stop_at_ups && o->ups >= o->stop_at_ups)
        event_base_loopbreak(o->base);
}

static void o_down(void *arg, int slot, int code)
{
    (void)slot;
    obs *o = arg;
    o->downs++;
    o->last_code = code;
    if (o->stop_at_downs && o->downs >= o->stop_at_downs)
        event_base_loopbreak(o->base);
}

static void o_fatal(void *arg, int slot)
{
    (void)slot;
    obs *o = arg;
    o->fatal++;
    event_base_loopbreak(o->base);
}

static void main_exit(void *arg, int slot, int fd)
{
    (void)slot;
    (void)fd;
    _exit((int)(intptr_t)arg);
}

/* Writes "ring=<0|1> app=<PGAPPNAME>" and exits 0. */
static int g_ring_mapped;
static void forget(void *arg)
{
    *(int *)arg = 0;
}

static void main_report(void *arg, int slot, int fd)
{
    (void)arg;
    (void)slot;
    char buf[64];
    const char *app = getenv("PGAPPNAME");
    int n = snprintf(buf, sizeof(buf), "ring=%d app=%s", g_ring_mapped, app ? app : "-");
    ck_assert_int_eq(write(fd, buf, (size_t)n), n);
    _exit(0);
}

static void run_for(obs *o, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(o->base, &tv);
    event_base_dispatch(o->base);
}

static cd_supervisor *new_sup(obs *o, cd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    memset(o, 0, sizeof(*o));
    o->base = event_base_new();
    ck_assert_ptr_nonnull(o->base);
    cd_supervisor *s = cd_sup_new(o->base, cfg);
    ck_assert_ptr_nonnull(s);
    return s;
}

static const cd_sup_kind k_exit = {.name = "exiter", .main = main_exit, .restart = CD_SUP_RESPAWN};
static const cd_sup_kind k_once = {.name = "once", .main = main_exit, .restart = CD_SUP_ONCE};

START_TEST(test_exit2_is_fatal_and_not_respawned)
{
    obs o;
    cd_config cfg;
    cd_supervisor *s = new_sup(&o, &cfg);
    cd_sup_cbs cbs = {.arg = &o, .on_up = o_up, .on_down = o_down, .on_fatal = o_fatal};
    int slot = cd_sup_add(s, &k_exit, 0, NULL, (void *)(intptr_t)CD_EXIT_CONFIG, &cbs);
    ck_assert_int_eq(slot, 0);
    ck_assert_int_eq(cd_sup_start(s), 0);
    event_base_dispatch(o.base); /* until on_fatal */
    ck_assert_int_eq(o.fatal, 1);
    ck_assert_int_eq(o.downs, 1);
    ck_assert_int_eq(o.last_code, CD_EXIT_CONFIG);
    /* longer than several back-offs: a (wrong) respawn would show */
    run_for(&o, 3 * (int)CD_SUP_BACKOFF_MIN_MS + 300);
    ck_assert_int_eq(o.ups, 1);
    ck_assert_int_eq(cd_sup_pid(s, slot), 0);
    /* nor does a later start bring it back */
    ck_assert_int_eq(cd_sup_start(s), 0);
    ck_assert_int_eq(cd_sup_pid(s, slot), 0);
    cd_sup_free(s);
    event_base_free(o.base);
}
END_TEST

static const cd_sup_kind k_sleep_kind = {
    .name = "sleeper", .main = proc_test_main_sleep, .restart = CD_SUP_RESPAWN};

START_TEST(test_crash_is_respawned)
{
    obs o;
    cd_config cfg;
    cd_supervisor *s = new_sup(&o, &cfg);
    o.stop_at_ups = 3;
    cd_sup_cbs cbs = {.arg = &o, .on_up = o_up, .on_down = o_down, .on_fatal = o_fatal};
    int slot = cd_sup_add(s, &k_exit, 0, NULL, (void *)(intptr_t)CD_EXIT_FAILURE, &cbs);
    ck_assert_int_ge(slot, 0);
    ck_assert_int_eq(cd_sup_start(s), 0);
    event_base_dispatch(o.base); /* until the third start */
    ck_assert_int_eq(o.ups, 3);
    ck_assert_int_ge(o.downs, 2);
    ck_assert_int_eq(o.last_code, CD_EXIT_FAILURE);
    ck_assert_int_eq(o.fatal, 0);
    /* the restarts are counted under the kind's name (issue 17: /metrics);
     * a kind that never died reads 0, a run-once kind is not listed */
    ck_assert_int_ge(cd_sup_add(s, &k_once, 0, NULL, (void *)(intptr_t)0, &cbs), 0);
    ck_assert_int_ge(cd_sup_add(s, &k_sleep_kind, 0, NULL, NULL, &cbs), 0);
    cd_sup_restart_count rc[4];
    ck_assert_uint_eq(cd_sup_restarts(s, rc, 4), 2);
    ck_assert_str_eq(rc[0].kind, "exiter");
    ck_assert_uint_eq(rc[0].restarts, (uint64_t)o.downs); /* every end was answered by a start */
    ck_assert_str_eq(rc[1].kind, "sleeper");
    ck_assert_uint_eq(rc[1].restarts, 0);
    ck_assert_uint_eq(cd_sup_restarts(s, rc, 1), 1);
    cd_sup_free(s);
    event_base_free(o.base);
}
END_TEST

START_TEST(test_once_runs_only_when_launched)
{
    obs o;
    cd_config cfg;
    cd_supervisor *s = new_sup(&o, &cfg);
    o.stop_at_downs = 1;
    cd_sup_cbs cbs = {.arg = &o, .on_up = o_up, .on_down = o_down, .on_fatal = o_fatal};
    int slot = cd_sup_add(s, &k_once, 0, NULL, (void *)(intptr_t)1, &cbs);
    ck_assert_int_ge(slot, 0);
    /* start() forks resident children only */
    ck_assert_int_eq(cd_sup_start(s), 0);
    ck_assert_int_eq(cd_sup_pid(s, slot), 0);
    ck_assert_int_eq(cd_sup_launch(s, slot), 0);
    ck_assert_int_gt(cd_sup_pid(s, slot), 0);
    ck_assert_int_eq(cd_sup_launch(s, slot), CD_SUP_ERUNNING);
    event_base_dispatch(o.base); /* until it ended */
    ck_assert_int_eq(o.last_code, 1);
    run_for(&o, 3 * (int)CD_SUP_BACKOFF_MIN_MS + 300);
    ck_assert_int_eq(o.ups, 1); /* not respawned */
    ck_assert_int_eq(o.downs, 1);
    /* launched again on demand */
    o.stop_at_downs = 2;
    ck_assert_int_eq(cd_sup_launch(s, slot), 0);
    event_base_dispatch(o.base);
    ck_assert_int_eq(o.ups, 2);
    ck_assert_int_eq(o.fatal, 0);
    ck_assert_int_eq(cd_sup_launch(s, 7), CD_SUP_ESLOT);
    cd_sup_free(s);
    event_base_free(o.base);
}
END_TEST

START_TEST(test_ring_and_pg_by_kind)
{
    static const cd_sup_kind k_ring = {
        .name = "ringy", .main = main_report, .restart = CD_SUP_ONCE, .needs_ring = 1};
    static const cd_sup_kind k_pg = {
        .name = "pgy", .main = main_report, .restart = CD_SUP_ONCE, .needs_pg = 1};
    unsetenv("PGAPPNAME");
    obs o;
    cd_config cfg;
    cd_supervisor *s = new_sup(&o, &cfg);
    g_ring_mapped = 1;
    cd_sup_set_ring(s, forget, &g_ring_mapped);
    cd_sup_cbs cbs = {.arg = &o, .on_up = o_up, .on_down = o_down};
    int a = cd_sup_add(s, &k_ring, 0, "ringy-0", NULL, &cbs);
    int b = cd_sup_add(s, &k_pg, 3, "pgy-3", NULL, &cbs);
    ck_assert_int_ne(a, b);
    o.stop_at_downs = 1;
    ck_assert_int_eq(cd_sup_launch(s, a), 0);
    ck_assert_str_eq(o.line, "ring=1 app=-");
    event_base_dispatch(o.base);
    o.stop_at_downs = 2;
    ck_assert_int_eq(cd_sup_launch(s, b), 0);
    ck_assert_str_eq(o.line, "ring=0 app=conduitd-pgy-3");
    event_base_dispatch(o.base);
    ck_assert_int_eq(g_ring_mapped, 1); /* only the children forgot it */
    /* an operator's PGAPPNAME wins */
    setenv("PGAPPNAME", "mine", 1);
    o.stop_at_downs = 3;
    ck_assert_int_eq(cd_sup_launch(s, b), 0);
    ck_assert_str_eq(o.line, "ring=0 app=mine");
    event_base_dispatch(o.base);
    unsetenv("PGAPPNAME");
    cd_sup_free(s);
    event_base_free(o.base);
}
END_TEST

START_TEST(test_stop_one_owner)
{
    static const cd_sup_kind k_sleep = {
        .name = "sleeper", .main = proc_test_main_sleep, .restart = CD_SUP_RESPAWN};
    obs o1, o2;
    cd_config cfg;
    cd_supervisor *s = new_sup(&o1, &cfg);
    memset(&o2, 0, sizeof(o2));
    o2.base = o1.base;
    cd_sup_cbs c1 = {.arg = &o1, .on_down = o_down, .on_fatal = o_fatal};
    cd_sup_cbs c2 = {.arg = &o2, .on_down = o_down, .on_fatal = o_fatal};
    int a = cd_sup_add(s, &k_sleep, 0, NULL, NULL, &c1);
    int b = cd_sup_add(s, &k_sleep, 1, NULL, NULL, &c2);
    ck_assert_int_eq(cd_sup_start(s), 0);
    pid_t pa = cd_sup_pid(s, a), pb = cd_sup_pid(s, b);
    ck_assert_int_gt(pa, 0);
    ck_assert_int_gt(pb, 0);
    cd_sup_stop(s, &o1, 2000);
    ck_assert_int_eq(o1.downs, 1);
    ck_assert_int_eq(o1.last_code, -SIGTERM);
    ck_assert_int_eq(o2.downs, 0);
    ck_assert_int_eq(cd_sup_pid(s, b), pb);
    ck_assert_int_eq(kill(pb, 0), 0);
    /* o1's slot is free: nothing of o1 runs again, and it is reused */
    ck_assert_int_eq(cd_sup_pid(s, a), 0);
    ck_assert_int_eq(cd_sup_launch(s, a), CD_SUP_ESLOT);
    ck_assert_int_eq(cd_sup_add(s, &k_sleep, 2, NULL, NULL, &c1), a);
    /* a table of CD_SUP_MAX_CHILDREN rows is full */
    int n = 2, rc;
    while ((rc = cd_sup_add(s, &k_sleep, 9, NULL, NULL, &c1)) >= 0)
        n++;
    ck_assert_int_eq(rc, CD_SUP_EFULL);
    ck_assert_int_eq(n, CD_SUP_MAX_CHILDREN);
    cd_sup_free(s); /* stops o2's child too */
    ck_assert_int_eq(o2.downs, 1);
    ck_assert_int_ne(kill(pb, 0), 0);
    event_base_free(o1.base);
}
END_TEST

static Suite *suite_supervisor(void)
{
    Suite *s = suite_create("supervisor");
    TCase *tr = tcase_create("rules");
    tcase_add_test(tr, test_backoff_doubles_to_the_cap);
    tcase_add_test(tr, test_backoff_resets_after_a_healthy_life);
    tcase_add_test(tr, test_verdicts);
    suite_add_tcase(s, tr);
    TCase *tt = tcase_create("table");
    tcase_set_timeout(tt, 60);
    tcase_add_test(tt, test_exit2_is_fatal_and_not_respawned);
    tcase_add_test(tt, test_crash_is_respawned);
    tcase_add_test(tt, test_once_runs_only_when_launched);
    tcase_add_test(tt, test_ring_and_pg_by_kind);
    tcase_add_test(tt, test_stop_one_owner);
    suite_add_tcase(s, tt);
    return s;
}

CD_TEST_MAIN(suite_supervisor)
