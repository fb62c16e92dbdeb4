/*
 * test_resident.c - a module's resident children (src/proc/cd_resident.c)
 * with real fork()ed children, a real process table and a real libevent
 * loop: the controller's channel end is held open (a child that exits at
 * its channel's EOF keeps running), a restart replaces the end without
 * leaking the old one, each member knows its number in the child, an exit 2
 * logs the group's line and is not respawned, and freeing the group stops
 * its members only.
 */
#include "cd_test.h"
#include "proc_test.h"

#include "cd_log.h"
#include "cd_resident.h"
#include "cd_supervisor.h"
#include "cd_util.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

typedef struct obs {
    struct event_base *base;
    cd_resident *r;
    int ups[4], downs[4];
    int last_code;
    int said[4]; /* the member number the child wrote, -1: none yet */
    int stop_at_ups;
} obs;

/* Reads the one byte the child wrote first (blocking: it writes at once). */
static void o_up(void *arg, int member, int fd)
{
    obs *o = arg;
    ck_assert_int_ge(member, 0);
    ck_assert_int_lt(member, 4);
    o->ups[member]++;
    unsigned char b;
    ssize_t n;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while ((n = read(fd, &b, 1)) < 0) { /* the controller's end is non-blocking */
        ck_assert_int_eq(errno, EAGAIN);
        ck_assert_int_ge(poll(&p, 1, -1), 0);
    }
    o->said[member] = n == 1 ? b : -1;
    int total = 0;
    for (int i = 0; i < 4; i++)
        total += o->ups[i];
    if (o->stop_at_ups && total >= o->stop_at_ups)
        event_base_loopbreak(o->base);
}

static void o_down(void *arg, int member, int code)
{
    obs *o = arg;
    o->downs[member]++;
    o->last_code = code;
}

/* The member: writes its member number, then runs until its channel
 * reaches EOF (the controller gone), then exits 0. arg: the group. */
static void main_until_eof(void *arg, int slot, int fd)
{
    unsigned char b = (unsigned char)cd_resident_member(arg, slot);
    if (write(fd, &b, 1) != 1)
        _exit(1);
    char c;
    while (read(fd, &c, 1) != 0)
        ;
    _exit(0);
}

static void main_exit2(void *arg, int slot, int fd)
{
    unsigned char b = (unsigned char)cd_resident_member(arg, slot);
    if (write(fd, &b, 1) != 1)
        _exit(1);
    _exit(CD_EXIT_CONFIG);
}

static const cd_sup_kind k_sleep = {
    .name = "sleeper", .main = proc_test_main_sleep, .restart = CD_SUP_RESPAWN};
static const cd_sup_kind k_res = {
    .name = "resident", .main = main_until_eof, .restart = CD_SUP_RESPAWN};
static const cd_sup_kind k_bad = {.name = "bad", .main = main_exit2, .restart = CD_SUP_RESPAWN};

static void run_for(obs *o, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(o->base, &tv);
    event_base_dispatch(o->base);
}

static cd_supervisor *setup(obs *o, cd_config *cfg, const char *fatal)
{
    memset(cfg, 0, sizeof(*cfg));
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < 4; i++)
        o->said[i] = -1;
    o->base = event_base_new();
    ck_assert_ptr_nonnull(o->base);
    cd_supervisor *s = cd_sup_new(o->base, cfg);
    ck_assert_ptr_nonnull(s);
    cd_resident_hooks h = {.arg = o, .on_up = o_up, .on_down = o_down};
    o->r = cd_resident_new(s, fatal, &h);
    return s;
}

START_TEST(test_channel_held_open_and_replaced)
{
    obs o;
    cd_config cfg;
    cd_supervisor *s = setup(&o, &cfg, "never said");
    ck_assert_int_eq(cd_resident_add(o.r, &k_res, 0, o.r), 0);
    ck_assert_int_eq(cd_resident_add(o.r, &k_res, 1, o.r), 1);
    ck_assert_int_eq(cd_resident_member(o.r, 12345), -1);
    cd_resident_launch(o.r); /* on_up runs in the launch */
    ck_assert_int_eq(o.ups[0], 1);
    ck_assert_int_eq(o.ups[1], 1);
    /* each child knows its member number from its slot */
    ck_assert_int_eq(o.said[0], 0);
    ck_assert_int_eq(o.said[1], 1);
    /* the channel is held: a child that ends at EOF keeps running */
    run_for(&o, 300);
    ck_assert_int_eq(o.downs[0] + o.downs[1], 0);
    int fds = proc_test_open_fds();
    /* a restart: the old end is closed (no descriptor is leaked), the new
     * one kept */
    for (int k = 1; k <= 3; k++) {
        o.stop_at_ups = 2 + k;
        cd_resident_kill(o.r, 1);
        event_base_dispatch(o.base); /* until member 1 is up again */
        ck_assert_int_eq(o.ups[1], 1 + k);
        ck_assert_int_eq(o.downs[1], k);
        ck_assert_int_eq(o.last_code, -SIGKILL);
        ck_assert_int_eq(o.said[1], 1);
    }
    ck_assert_int_eq(proc_test_open_fds(), fds);
    run_for(&o, 300);
    ck_assert_int_eq(o.downs[0], 0);
    ck_assert_int_eq(o.downs[1], 3);
    /* freeing the group stops its members (SIGTERM) and closes the ends */
    cd_resident_free(o.r, 2000);
    ck_assert_int_eq(o.downs[0], 1);
    ck_assert_int_eq(o.downs[1], 4);
    ck_assert_int_eq(proc_test_open_fds(), fds - 2);
    cd_sup_free(s);
    event_base_free(o.base);
}
END_TEST

START_TEST(test_exit2_logs_the_line_once)
{
    char path[] = "/tmp/test_resident.XXXXXX";
    int lf = mkstemp(path);
    ck_assert_int_ge(lf, 0);
    ck_assert_int_eq(cd_log_open(path), 0);
    cd_log_set_component("resident-test");
    obs o;
    cd_config cfg;
    cd_supervisor *s = setup(&o, &cfg, "bad: cannot run; the feature is off");
    /* another owner's child beside the group's: freeing the group leaves it */
    obs other;
    memset(&other, 0, sizeof(other));
    cd_sup_cbs oc = {.arg = &other};
    int os = cd_sup_add(s, &k_sleep, 9, NULL, NULL, &oc);
    ck_assert_int_ge(os, 0);
    ck_assert_int_eq(cd_sup_launch(s, os), 0);
    ck_assert_int_eq(cd_resident_add(o.r, &k_bad, 0, o.r), 0);
    cd_resident_launch(o.r);
    ck_assert_int_eq(o.said[0], 0);
    /* longer than several back-offs: a (wrong) respawn would show */
    run_for(&o, 3 * (int)CD_SUP_BACKOFF_MIN_MS + 300);
    ck_assert_int_eq(o.ups[0], 1);
    ck_assert_int_eq(o.downs[0], 1);
    ck_assert_int_eq(o.last_code, CD_EXIT_CONFIG);
    CD_IGNORE(cd_log_open(NULL));
    char buf[4096];
    ssize_t n = pread(lf, buf, sizeof(buf) - 1, 0);
    ck_assert_int_gt(n, 0);
    buf[n] = 0;
    const char *at = strstr(buf, "ERROR resident-test");
    ck_assert_ptr_nonnull(at);
    at = strstr(at, "bad: cannot run; the feature is off");
    ck_assert_ptr_nonnull(at);
    ck_assert_ptr_null(strstr(at + 1, "bad: cannot run; the feature is off"));
    close(lf);
    unlink(path);
    pid_t op = cd_sup_pid(s, os);
    ck_assert_int_gt(op, 0);
    cd_resident_free(o.r, 2000);
    ck_assert_int_eq(cd_sup_pid(s, os), op);
    ck_assert_int_eq(kill(op, 0), 0);
    cd_sup_free(s);
    event_base_free(o.base);
}
END_TEST

START_TEST(test_one_and_a_full_table)
{
    obs o;
    cd_config cfg;
    cd_supervisor *s = setup(&o, &cfg, "x");
    cd_resident *one = NULL;
    ck_assert_int_eq(cd_resident_one(s, &k_sleep, NULL, "y", &one), 0);
    ck_assert_ptr_nonnull(one);
    /* the group of one is launched: its row is the table's second one (the
     * first is the other group's, still empty) */
    ck_assert_int_eq(cd_resident_member(one, 0), 0);
    ck_assert_int_gt(cd_sup_pid(s, 0), 0);
    /* fill the table with the other group's rows; then a group of one
     * cannot be made and leaves nothing behind */
    int rc, n = 1;
    while ((rc = cd_resident_add(o.r, &k_sleep, 0, NULL)) >= 0)
        n++;
    ck_assert_int_eq(rc, CD_SUP_EFULL);
    ck_assert_int_eq(n, CD_SUP_MAX_CHILDREN);
    cd_resident *two = one; /* set to NULL on failure */
    ck_assert_int_eq(cd_resident_one(s, &k_sleep, NULL, "z", &two), CD_SUP_EFULL);
    ck_assert_ptr_null(two);
    cd_resident_free(one, 2000);
    ck_assert_int_eq(cd_sup_pid(s, 0), 0);
    cd_resident_free(o.r, 0); /* rows never started */
    cd_resident_free(NULL, 0);
    cd_sup_free(s);
    event_base_free(o.base);
}
END_TEST

static Suite *suite_resident(void)
{
    Suite *s = suite_create("resident");
    TCase *t = tcase_create("group");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_channel_held_open_and_replaced);
    tcase_add_test(t, test_exit2_logs_the_line_once);
    tcase_add_test(t, test_one_and_a_full_table);
    suite_add_tcase(s, t);
    return s;
}

CD_TEST_MAIN(suite_resident)
