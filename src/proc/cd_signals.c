/*
 * cd_signals.c - SIGTERM/SIGINT/SIGHUP as libevent signal events.
 *
 * Why: the controller must never do work in a signal handler (STYLE.md C7,
 * D1). libevent's evsignal machinery turns a signal into a callback run by
 * the loop, where stopping (closing LMDB/Postgres, unlinking the ring) and
 * reloading (file I/O, allocation, log reopen) are safe.
 */
#include "cd_signals.h"

#include "cd_util.h"

#include <errno.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

struct cd_signals {
    struct event *ev_term;
    struct event *ev_int;
    struct event *ev_hup;
    cd_config *cfg; /* mutable: reload writes reloadable fields */
    cd_signals_fn on_stop;
    cd_signals_fn on_reload;
    void *arg;
    unsigned stops;
};

static void on_signal(evutil_socket_t sig, short what, void *p)
{
    cd_signals *s = p;
    (void)what;
    if (sig == SIGHUP) {
        cd_log_info("SIGHUP: reloading configuration and reopening the log");
        if (s->cfg != NULL) {
            /* an invalid file is logged and leaves the running config as it was */
            CD_IGNORE(cd_config_reload(s->cfg));
        } else if (cd_log_reopen() < 0) {
            cd_log_error("SIGHUP: cannot reopen log file: %s", strerror(errno));
        }
        if (s->on_reload)
            s->on_reload(s->arg);
        return;
    }
    s->stops++;
    cd_log_info("%s received: stopping%s", sig == SIGINT ? "SIGINT" : "SIGTERM",
                s->stops > 1 ? " (again)" : "");
    s->on_stop(s->arg);
}

cd_signals *cd_signals_install(struct event_base *base, const cd_config *cfg, cd_signals_fn on_stop,
                               cd_signals_fn on_reload, void *arg)
{
    cd_assert(base != NULL && on_stop != NULL);
    signal(SIGPIPE, SIG_IGN);
    cd_signals *s = cd_xcalloc(1, sizeof(*s));
    /* The object was created mutable by main.c; readers see it as const. */
    s->cfg = (cd_config *)(uintptr_t)cfg;
    s->on_stop = on_stop;
    s->on_reload = on_reload;
    s->arg = arg;
    s->ev_term = evsignal_new(base, SIGTERM, on_signal, s);
    s->ev_int = evsignal_new(base, SIGINT, on_signal, s);
    s->ev_hup = evsignal_new(base, SIGHUP, on_signal, s);
    if (s->ev_term == NULL || s->ev_int == NULL || s->ev_hup == NULL ||
        evsignal_add(s->ev_term, NULL) < 0 || evsignal_add(s->ev_int, NULL) < 0 ||
        evsignal_add(s->ev_hup, NULL) < 0) {
        cd_log_error("cannot install signal events on the event loop");
        cd_signals_free(s);
        return NULL;
    }
    return s;
}

unsigned cd_signals_stop_count(const cd_signals *s)
{
    return s ? s->stops : 0;
}

void cd_signals_free(cd_signals *s)
{
    if (s == NULL)
        return;
    if (s->ev_term)
        event_free(s->ev_term);
    if (s->ev_int)
        event_free(s->ev_int);
    if (s->ev_hup)
        event_free(s->ev_hup);
    free(s);
}

void cd_signals_reset_after_fork(void)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < CD_ARRAY_LEN(sigs); i++) {
        signal(sigs[i], SIG_DFL);
        sigaddset(&set, sigs[i]);
    }
    signal(SIGPIPE, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/* ---- a supervised child's exit ---- */

struct cd_child_exit {
    struct event_base *base;
    const char *who;
    struct event *chan, *term;
    int tfd;
};

static void child_chan(evutil_socket_t fd, short what, void *arg)
{
    cd_child_exit *x = arg;
    char buf[64];
    (void)what;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        cd_log_info("%s: controller gone; exiting", x->who);
        event_base_loopbreak(x->base);
    }
}

static void child_term(evutil_socket_t fd, short what, void *arg)
{
    cd_child_exit *x = arg;
    struct signalfd_siginfo si;
    (void)what;
    if (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        event_base_loopbreak(x->base);
}

cd_child_exit *cd_child_exit_install(struct event_base *base, int chan_fd, const char *who)
{
    cd_child_exit *x = calloc(1, sizeof(*x));
    if (!x) {
        cd_log_error("%s: out of memory", who);
        return NULL;
    }
    x->base = base;
    x->who = who;
    x->tfd = -1;
    evutil_make_socket_nonblocking(chan_fd);
    x->chan = event_new(base, chan_fd, EV_READ | EV_PERSIST, child_chan, x);
    if (!x->chan || event_add(x->chan, NULL) != 0) {
        cd_log_error("%s: cannot watch the controller's channel", who);
        cd_child_exit_free(x);
        return NULL;
    }
    sigset_t ts;
    sigemptyset(&ts);
    sigaddset(&ts, SIGTERM);
    sigprocmask(SIG_BLOCK, &ts, NULL);
    x->tfd = signalfd(-1, &ts, SFD_NONBLOCK | SFD_CLOEXEC);
    x->term = x->tfd >= 0 ? event_new(base, x->tfd, EV_READ | EV_PERSIST, child_term, x) : NULL;
    if (!x->term || event_add(x->term, NULL) != 0)
        sigprocmask(SIG_UNBLOCK, &ts, NULL); /* SIGTERM keeps its default action */
    return x;
}

void cd_child_exit_free(cd_child_exit *x)
{
    if (!x)
        return;
    if (x->chan)
        event_free(x->chan);
    if (x->term)
        event_free(x->term);
    if (x->tfd >= 0)
        close(x->tfd);
    free(x);
}
