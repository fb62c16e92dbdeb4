/*
 * cd_helper.c - a controller module's run-once helper process and its
 * channel of fixed-size messages (see cd_helper.h): the periodic look, the
 * process-table row, the watched channel end, the reassembly of messages
 * and the end of a run, written once for the catch-up DDL helper and the
 * partition merger, which had each their own copy.
 */
#include "cd_helper.h"

#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

struct cd_helper {
    cd_supervisor *sup;
    struct event_base *base;
    const cd_sup_kind *kind;
    void *child_arg;
    const char *name;
    cd_helper_hooks hooks;
    struct event *tick;  /* the periodic look, NULL: not started */
    int slot;            /* its row of the process table, -1: not added yet */
    pid_t pid;           /* the running helper, 0: none */
    int fd;              /* the controller's end of its channel, -1: none */
    struct event *rd;    /* fd readable */
    unsigned char *rbuf; /* msg_size bytes (malloc'd: aligned for any type) */
    size_t msg_size;
    size_t rfill; /* bytes of a message read so far */
    int stopping; /* cd_helper_free has begun: no new run */
};

cd_helper *cd_helper_new(cd_supervisor *sup, struct event_base *base, const cd_sup_kind *kind,
                         void *arg, size_t msg_size, const char *name, const cd_helper_hooks *hooks)
{
    cd_helper *h = cd_xcalloc(1, sizeof(*h));
    h->sup = sup;
    h->base = base;
    h->kind = kind;
    h->child_arg = arg;
    h->name = name;
    h->hooks = *hooks;
    h->slot = -1;
    h->fd = -1;
    h->msg_size = msg_size;
    h->rbuf = cd_xmalloc(msg_size);
    return h;
}

static void close_channel(cd_helper *h)
{
    if (h->rd) {
        event_free(h->rd);
        h->rd = NULL;
    }
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
    h->rfill = 0;
}

/* Reads what the helper wrote, handing each whole message over; at EOF or
 * an error only closes the channel (the end of the run is on_down's, once
 * the supervisor has reaped the helper). */
static void read_channel(cd_helper *h)
{
    while (h->fd >= 0) {
        ssize_t r = read(h->fd, h->rbuf + h->rfill, h->msg_size - h->rfill);
        if (r > 0) {
            h->rfill += (size_t)r;
            if (h->rfill == h->msg_size) {
                h->rfill = 0;
                h->hooks.on_msg(h->hooks.arg, h->rbuf);
            }
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        close_channel(h); /* EOF or error: the helper has ended or is ending */
    }
}

static void rd_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_channel(arg);
}

/* The process table's callbacks of the row (arg: the helper). */
static void helper_up(void *arg, int slot, int fd)
{
    (void)slot;
    cd_helper *h = arg;
    close_channel(h);
    h->fd = fd;
    h->rd = event_new(h->base, fd, EV_READ | EV_PERSIST, rd_cb, h);
    event_add(h->rd, NULL);
}

static void helper_down(void *arg, int slot, int code)
{
    (void)slot;
    cd_helper *h = arg;
    read_channel(h);
    close_channel(h);
    pid_t pid = h->pid;
    h->pid = 0; /* before the hook: it may launch the next run */
    h->hooks.on_down(h->hooks.arg, pid, code);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cd_helper *h = arg;
    h->hooks.on_tick(h->hooks.arg);
}

void cd_helper_tick(cd_helper *h, unsigned period_ms)
{
    h->tick = event_new(h->base, -1, EV_PERSIST, tick_cb, h);
    struct timeval tv = {period_ms / 1000, (period_ms % 1000) * 1000};
    event_add(h->tick, &tv);
}

int cd_helper_ticking(const cd_helper *h)
{
    return h->tick != NULL;
}

int cd_helper_launch(cd_helper *h)
{
    /* on_down of the run cd_helper_free stops may ask for the next one
     * (the catch-up module's decision after a roll): a run forked now
     * would get no SIGTERM and outlive the row freed under it */
    if (h->stopping)
        return CD_SUP_ESTOPPING;
    if (h->slot < 0) {
        cd_sup_cbs cbs = {.arg = h, .on_up = helper_up, .on_down = helper_down};
        int slot = cd_sup_add(h->sup, h->kind, 0, NULL, h->child_arg, &cbs);
        if (slot < 0) {
            cd_log_error("%s: cannot add the helper: %s", h->name, cd_strerror(slot));
            return slot;
        }
        h->slot = slot;
    }
    int rc = cd_sup_launch(h->sup, h->slot);
    if (rc != 0) {
        cd_log_error("%s: cannot start the helper: %s", h->name, cd_strerror(rc));
        return rc;
    }
    h->pid = cd_sup_pid(h->sup, h->slot);
    return 0;
}

pid_t cd_helper_pid(const cd_helper *h)
{
    return h->pid;
}

void cd_helper_free(cd_helper *h, int timeout_ms)
{
    if (!h)
        return;
    if (h->tick)
        event_free(h->tick);
    h->tick = NULL;                     /* not ticking while on_down runs below */
    h->stopping = 1;                    /* nor launching */
    cd_sup_stop(h->sup, h, timeout_ms); /* its row only; frees it */
    close_channel(h);
    free(h->rbuf);
    free(h);
}

/* ---- in the helper process ---- */

void cd_helper_die_with_controller(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

void cd_helper_send(int fd, const void *msg, size_t size)
{
    ssize_t w;
    do {
        w = write(fd, msg, size);
    } while (w < 0 && errno == EINTR);
}
