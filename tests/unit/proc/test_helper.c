/*
 * test_helper.c - a module's run-once helper and its channel of fixed-size
 * messages (src/proc/cd_helper.c) with real fork()ed children, a real
 * process table and a real libevent loop: messages written in odd pieces
 * come out whole and in order, a message cut short by the helper's end is
 * dropped, every message is handed over before on_down (with the pid and
 * exit code of the run; also when the helper is reaped outside the loop), on_down may launch the
 * next run, a second launch while one runs is refused, the tick launches runs, freeing the helper
 * stops a running one and leaks no descriptor (and refuses a launch from
 * the on_down it causes), and a full process table is
 * logged with the module's name and tried again at the next launch.
 */
#include "cd_test.h"
#include "proc_test.h"

#include "cd_helper.h"
#include "cd_log.h"
#include "cd_supervisor.h"
#include "cd_util.h"

#include <dirent.h>
#include <event2/event.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

/* The message of the tests: 3 bytes, so that the pieces the helper writes
 * (test_msg_main) straddle message boundaries. */
#define T_MSG 3

/* What the helper does, as of the fork (the child's copy of obs). */
typedef enum t_mode {
    T_PIECES, /* 5 messages in pieces of 1, 4, 2, 8 bytes, 2 bytes more, exit 3 */
    T_WAIT,   /* 1 message, then waits for a signal */
} t_mode;

typedef struct obs {
    struct event_base *base;
    cd_helper *h;
    t_mode mode;
    int run; /* the run being launched (the child writes it into its messages) */
    unsigned char got[64][T_MSG];
    int msgs;            /* messages received in all */
    int msgs_at_down[8]; /* msgs when each run's on_down came */
    pid_t pid_up[8], pid_down[8];
    int code[8];
    int downs, ticks;
    int runs;          /* on_down launches runs until this many have ended */
    int try_relaunch;  /* on_down tries a launch and records what it got: */
    int relaunch_rc;
    pid_t relaunch_pid;
    int tick_launches; /* on_tick launches while no run is up */
} obs;

static void t_main(void *arg, int slot, int fd)
{
    (void)slot;
    const obs *o = arg;
    cd_helper_die_with_controller();
    unsigned char b[17];
    for (int i = 0; i < 17; i++) /* message k: {run, k, k ^ 0x5a} */
        b[i] = (unsigned char)(i % 3 == 0 ? o->run : i % 3 == 1 ? i / 3 : (i / 3) ^ 0x5a);
    if (o->mode == T_WAIT) {
        cd_helper_send(fd, b, T_MSG);
        for (;;)
            pause();
    }
    static const size_t piece[] = {1, 4, 2, 8, 2};
    size_t at = 0;
    for (size_t i = 0; i < CD_ARRAY_LEN(piece); i++) {
        cd_helper_send(fd, b + at, piece[i]);
        at += piece[i];
    }
    _exit(3);
}

static const cd_sup_kind k_helper = {.name = "test-helper", .main = t_main, .restart = CD_SUP_ONCE};

static void o_msg(void *arg, const void *msg)
{
    obs *o = arg;
    ck_assert_int_lt(o->msgs, 64);
    memcpy(o->got[o->msgs++], msg, T_MSG);
}

static void launch(obs *o)
{
    o->run++;
    ck_assert_int_eq(cd_helper_launch(o->h), 0);
    ck_assert_int_gt(cd_helper_pid(o->h), 0);
    o->pid_up[o->run - 1] = cd_helper_pid(o->h);
}

static void o_down(void *arg, pid_t pid, int code)
{
    obs *o = arg;
    ck_assert_int_lt(o->downs, 8);
    ck_assert_int_eq(cd_helper_pid(o->h), 0);
    o->pid_down[o->downs] = pid;
    o->code[o->downs] = code;
    o->msgs_at_down[o->downs] = o->msgs;
    o->downs++;
    if (o->try_relaunch) { /* once */
        o->try_relaunch = 0;
        o->relaunch_rc = cd_helper_launch(o->h);
        o->relaunch_pid = cd_helper_pid(o->h);
        return;
    }
    if (o->downs < o->runs)
        launch(o); /* the next run, from on_down */
    else if (o->runs)
        event_base_loopbreak(o->base);
}

static void o_tick(void *arg)
{
    obs *o = arg;
    o->ticks++;
    if (cd_helper_pid(o->h) == 0 && o->run < o->tick_launches)
        launch(o);
    if (o->downs >= o->tick_launches)
        event_base_loopbreak(o->base);
}

static cd_supervisor *setup(obs *o, cd_config *cfg, const char *name)
{
    memset(cfg, 0, sizeof(*cfg));
    memset(o, 0, sizeof(*o));
    o->base = event_base_new();
    ck_assert_ptr_nonnull(o->base);
    cd_supervisor *s = cd_sup_new(o->base, cfg);
    ck_assert_ptr_nonnull(s);
    cd_helper_hooks hk = {.arg = o, .on_tick = o_tick, .on_msg = o_msg, .on_down = o_down};
    o->h = cd_helper_new(s, o->base, &k_helper, o, T_MSG, name, &hk);
    return s;
}

static void teardown(obs *o, cd_supervisor *s)
{
    cd_helper_free(o->h, 2000);
    cd_sup_free(s);
    event_base_free(o->base);
}

/* The run-th run's 5 messages start at got[first]. */
static void check_run(const obs *o, int first, int run)
{
    for (int k = 0; k < 5; k++) {
        ck_assert_int_eq(o->got[first + k][0], run);
        ck_assert_int_eq(o->got[first + k][1], k);
        ck_assert_int_eq(o->got[first + k][2], k ^ 0x5a);
    }
}

START_TEST(test_messages_whole_before_down_and_relaunch)
{
    obs o;
    cd_config cfg;
    cd_supervisor *s = setup(&o, &cfg, "t");
    int fds = proc_test_open_fds();
    o.mode = T_PIECES;
    o.runs = 3;
    launch(&o);
    event_base_dispatch(o.base); /* until the third run has ended */
    ck_assert_int_eq(o.downs, 3);
    for (int r = 0; r < 3; r++) {
        /* all 5 whole messages of each run, in order, before its on_down;
         * the 2 bytes of a sixth are dropped */
        ck_assert_int_eq(o.msgs_at_down[r], 5 * (r + 1));
        check_run(&o, 5 * r, r + 1);
        ck_assert_int_eq(o.code[r], 3);
        ck_assert_int_eq(o.pid_down[r], o.pid_up[r]);
    }
    ck_assert_int_ne(o.pid_up[0], o.pid_up[1]);
    /* the row is reused, every channel end closed */
    ck_assert_int_eq(proc_test_open_fds(), fds);
    ck_assert_int_eq(o.ticks, 0); /* no tick unless asked for */
    ck_assert_int_eq(cd_helper_ticking(o.h), 0);
    teardown(&o, s);
}
END_TEST

/* Waits (without reaping it) until the child pid has exited: its state in
 * /proc is Z (a zombie) until the supervisor reaps it. */
static void wait_zombie(pid_t pid)
{
    char path[64], st[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    for (;;) {
        FILE *f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        size_t n = fread(st, 1, sizeof(st) - 1, f);
        fclose(f);
        st[n] = 0;
        const char *p = strrchr(st, ')'); /* "pid (comm) S ..." */
        if (p && p[1] == ' ' && p[2] == 'Z')
            return;
        usleep(1000);
    }
}

START_TEST(test_unread_messages_are_read_before_down)
{
    obs o;
    cd_config cfg;
    cd_supervisor *s = setup(&o, &cfg, "t");
    o.mode = T_PIECES;
    launch(&o);
    /* the helper has written everything and exited, and the loop has read
     * nothing; freeing reaps it without the loop (cd_sup_stop): its
     * messages still come before its on_down */
    wait_zombie(o.pid_up[0]);
    ck_assert_int_eq(o.msgs, 0);
    cd_helper_free(o.h, 2000);
    o.h = NULL;
    ck_assert_int_eq(o.downs, 1);
    ck_assert_int_eq(o.msgs_at_down[0], 5);
    ck_assert_int_eq(o.code[0], 3);
    check_run(&o, 0, 1);
    teardown(&o, s);
}
END_TEST

START_TEST(test_one_run_at_a_time_and_free_stops_it)
{
    obs o;
    cd_config cfg;
    cd_supervisor *s = setup(&o, &cfg, "t");
    int fds = proc_test_open_fds();
    o.mode = T_WAIT;
    launch(&o);
    pid_t pid = cd_helper_pid(o.h);
    ck_assert_int_eq(cd_helper_launch(o.h), CD_SUP_ERUNNING);
    ck_assert_int_eq(cd_helper_pid(o.h), pid);
    while (o.msgs < 1)
        event_base_loop(o.base, EVLOOP_ONCE);
    ck_assert_int_eq(o.got[0][0], 1);
    ck_assert_int_eq(o.downs, 0);
    /* freeing stops the running helper: SIGTERM, on_down, ends closed;
     * a launch from that on_down (the catch-up module decides after a
     * roll) is refused: before, it forked a run that got no SIGTERM */
    o.try_relaunch = 1;
    cd_helper_free(o.h, 2000);
    o.h = NULL;
    ck_assert_int_eq(o.downs, 1);
    ck_assert_int_eq(o.code[0], -SIGTERM);
    ck_assert_int_eq(o.pid_down[0], pid);
    ck_assert_int_eq(o.relaunch_rc, CD_SUP_ESTOPPING);
    ck_assert_int_eq(o.relaunch_pid, 0);
    ck_assert_int_eq(kill(pid, 0), -1);
    ck_assert_int_eq(proc_test_open_fds(), fds);
    teardown(&o, s);
}
END_TEST

START_TEST(test_tick_launches_runs)
{
    obs o;
    cd_config cfg;
    cd_supervisor *s = setup(&o, &cfg, "t");
    o.mode = T_PIECES;
    o.tick_launches = 2;
    ck_assert_int_eq(cd_helper_ticking(o.h), 0);
    cd_helper_tick(o.h, 5);
    ck_assert_int_eq(cd_helper_ticking(o.h), 1);
    event_base_dispatch(o.base); /* until both runs have ended */
    ck_assert_int_eq(o.downs, 2);
    ck_assert_int_ge(o.ticks, 2);
    check_run(&o, 0, 1);
    check_run(&o, 5, 2);
    teardown(&o, s);
}
END_TEST

START_TEST(test_full_table_logged_and_retried)
{
    char path[] = "/tmp/test_helper.XXXXXX";
    int lf = mkstemp(path);
    ck_assert_int_ge(lf, 0);
    ck_assert_int_eq(cd_log_open(path), 0);
    obs o;
    cd_config cfg;
    cd_supervisor *s = setup(&o, &cfg, "mymodule");
    /* fill the table with another owner's rows */
    int other;
    cd_sup_cbs oc = {.arg = &other};
    static const cd_sup_kind k_sleep = {
        .name = "sleeper", .main = proc_test_main_sleep, .restart = CD_SUP_ONCE};
    int n = 0;
    while (cd_sup_add(s, &k_sleep, 0, NULL, NULL, &oc) >= 0)
        n++;
    ck_assert_int_eq(n, CD_SUP_MAX_CHILDREN);
    ck_assert_int_eq(cd_helper_launch(o.h), CD_SUP_EFULL);
    ck_assert_int_eq(cd_helper_pid(o.h), 0);
    CD_IGNORE(cd_log_open(NULL));
    char buf[4096];
    ssize_t r = pread(lf, buf, sizeof(buf) - 1, 0);
    ck_assert_int_gt(r, 0);
    buf[r] = 0;
    ck_assert_ptr_nonnull(strstr(buf, "mymodule: cannot add the helper: "));
    close(lf);
    unlink(path);
    /* rows free again: the next launch adds the row and runs */
    cd_sup_stop(s, &other, 0);
    o.mode = T_PIECES;
    o.runs = 1;
    launch(&o);
    event_base_dispatch(o.base);
    ck_assert_int_eq(o.downs, 1);
    check_run(&o, 0, 1);
    teardown(&o, s);
}
END_TEST

static Suite *suite_helper(void)
{
    Suite *s = suite_create("helper");
    TCase *t = tcase_create("runs");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_messages_whole_before_down_and_relaunch);
    tcase_add_test(t, test_unread_messages_are_read_before_down);
    tcase_add_test(t, test_one_run_at_a_time_and_free_stops_it);
    tcase_add_test(t, test_tick_launches_runs);
    tcase_add_test(t, test_full_table_logged_and_retried);
    suite_add_tcase(s, t);
    return s;
}

CD_TEST_MAIN(suite_helper)
