/*
 * cd_supervisor.c - fork, reap and respawn the worker processes.
 *
 * Why it exists: a crashed writer, merkle or parser worker (or the HTTP
 * server) must not take the daemon down, and a child that can never start
 * must not be respawned in a tight loop (STYLE.md C8, nginx/PostgreSQL).
 * See cd_supervisor.h.
 */
#include "cd_supervisor.h"

#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define HEALTHY_NS     (10ull * 1000000000ull)

typedef struct sup_child {
    const char *name;
    uint32_t index;
    char component[32]; /* log component in the child */
    cd_sup_main_fn main_fn;
    void *main_arg;
    pid_t pid;
    int respawn; /* 0 after exit code 2 or stop */
    uint32_t backoff_ms;
    uint64_t started_ns;
    struct event *timer;
} sup_child;

struct cd_supervisor {
    struct event_base *base;
    const cd_config *cfg;
    cd_sup_cbs cbs;
    sup_child child[CD_SUP_MAX_CHILDREN];
    int n;
    int stopping;
    struct event *sigchld;
    cd_supervisor *next; /* sup_all list */
};

/* Every supervisor of this process (see "Several supervisors" in the
 * header): a reaped pid goes to its owner, whoever called waitpid. */
static cd_supervisor *sup_all;

static void start_child(cd_supervisor *s, int slot);

static const char *child_name(const sup_child *c)
{
    return c->name;
}

/* The timer's argument is a small heap cell {sup, slot}. */
typedef struct sup_ref {
    cd_supervisor *s;
    int slot;
} sup_ref;

static void restart_ref_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sup_ref *r = arg;
    if (!r->s->stopping && r->s->child[r->slot].respawn && r->s->child[r->slot].pid == 0)
        start_child(r->s, r->slot);
}

static void schedule_restart(cd_supervisor *s, int slot)
{
    sup_child *c = &s->child[slot];
    if (!c->timer) {
        sup_ref *r = cd_xmalloc(sizeof(*r));
        r->s = s;
        r->slot = slot;
        c->timer = evtimer_new(s->base, restart_ref_cb, r);
    }
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    cd_log_info("supervisor: restarting %s worker %u in %u ms", child_name(c), c->index,
                c->backoff_ms);
    evtimer_add(c->timer, &tv);
    c->backoff_ms = CD_MIN(c->backoff_ms * 2, BACKOFF_MAX_MS);
}

/* Handles the death of the child in `slot` of s (already reaped). */
static void child_died(cd_supervisor *s, int slot, pid_t pid, int status)
{
    sup_child *c = &s->child[slot];
    c->pid = 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (WIFSIGNALED(status) && !s->stopping)
        cd_log_warn("supervisor: %s worker %u (pid %d) killed by signal %d", child_name(c),
                    c->index, (int)pid, WTERMSIG(status));
    else if (!s->stopping)
        cd_log_warn("supervisor: %s worker %u (pid %d) exited with code %d", child_name(c),
                    c->index, (int)pid, code);
    if (cd_now_ns() - c->started_ns > HEALTHY_NS)
        c->backoff_ms = BACKOFF_MIN_MS;
    if (s->cbs.on_down)
        s->cbs.on_down(s->cbs.arg, slot);
    if (s->stopping)
        return;
    if (code == CD_EXIT_CONFIG) {
        c->respawn = 0;
        cd_log_error("supervisor: %s worker %u has a fatal configuration error; not restarting",
                     child_name(c), c->index);
        if (s->cbs.on_fatal)
            s->cbs.on_fatal(s->cbs.arg, slot);
        return;
    }
    if (c->respawn)
        schedule_restart(s, slot);
}

/* Reaps every dead child of the process and hands each to the supervisor
 * that owns it; pids nobody owns (another module's helper, which watches
 * its own pipe) are dropped. */
static void reap(cd_supervisor *s)
{
    (void)s;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (cd_supervisor *o = sup_all; o; o = o->next) {
            int slot = -1;
            for (int i = 0; i < o->n; i++)
                if (o->child[i].pid == pid)
                    slot = i;
            if (slot >= 0) {
                child_died(o, slot, pid, status);
                break;
            }
        }
    }
}

static void sigchld_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reap(arg);
}

cd_supervisor *cd_sup_new(struct event_base *base, const cd_config *cfg, const cd_sup_cbs *cbs)
{
    cd_supervisor *s = cd_xcalloc(1, sizeof(*s));
    s->base = base;
    s->cfg = cfg;
    s->cbs = *cbs;
    s->next = sup_all;
    sup_all = s;
    s->sigchld = evsignal_new(base, SIGCHLD, sigchld_cb, s);
    if (!s->sigchld || evsignal_add(s->sigchld, NULL) != 0) {
        cd_log_error("supervisor: cannot watch SIGCHLD");
        cd_sup_free(s);
        return NULL;
    }
    return s;
}

int cd_sup_add(cd_supervisor *s, const char *name, uint32_t index, const char *component,
               cd_sup_main_fn main_fn, void *arg)
{
    if (s->n >= CD_SUP_MAX_CHILDREN)
        return -1;
    sup_child *c = &s->child[s->n];
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->index = index;
    snprintf(c->component, sizeof(c->component), "%s", component ? component : name);
    c->main_fn = main_fn;
    c->main_arg = arg;
    c->respawn = 1;
    c->backoff_ms = BACKOFF_MIN_MS;
    return s->n++;
}

static CD_NORETURN void child_main(cd_supervisor *s, int slot, int fd)
{
    sup_child *c = &s->child[slot];
    cd_close_fds_except(fd);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_IGN); /* ^C in a shell goes to the controller, which stops us */
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    cd_log_set_component(c->component);
    if (s->cfg->log_file)
        cd_log_open_child(s->cfg->log_file);
    c->main_fn(c->main_arg, slot, fd);
    _exit(CD_EXIT_FAILURE);
}

static void start_child(cd_supervisor *s, int slot)
{
    sup_child *c = &s->child[slot];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        cd_log_error("supervisor: socketpair: %s", strerror(errno));
        schedule_restart(s, slot);
        return;
    }
    pid_t pid = cd_fork_signals_blocked();
    if (pid == 0) {
        close(sv[0]);
        child_main(s, slot, sv[1]);
    }
    int saved = errno;
    close(sv[1]);
    if (pid < 0) {
        cd_log_error("supervisor: fork %s worker: %s", child_name(c), strerror(saved));
        close(sv[0]);
        schedule_restart(s, slot);
        return;
    }
    c->pid = pid;
    c->started_ns = cd_now_ns();
    evutil_make_socket_nonblocking(sv[0]);
    cd_log_info("supervisor: started %s worker %u (pid %d)", child_name(c), c->index, (int)pid);
    if (s->cbs.on_up)
        s->cbs.on_up(s->cbs.arg, slot, sv[0]);
    else
        close(sv[0]);
}

int cd_sup_start(cd_supervisor *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->child[i].pid == 0 && s->child[i].respawn)
            start_child(s, i);
    return 0;
}

void cd_sup_kill(cd_supervisor *s, int slot)
{
    if (slot >= 0 && slot < s->n && s->child[slot].pid > 0)
        kill(s->child[slot].pid, SIGKILL);
}

pid_t cd_sup_pid(const cd_supervisor *s, int slot)
{
    return (slot >= 0 && slot < s->n) ? s->child[slot].pid : 0;
}

void cd_sup_stop(cd_supervisor *s, int timeout_ms)
{
    if (!s)
        return;
    s->stopping = 1;
    for (int i = 0; i < s->n; i++) {
        s->child[i].respawn = 0;
        if (s->child[i].timer)
            evtimer_del(s->child[i].timer);
        if (s->child[i].pid > 0)
            kill(s->child[i].pid, SIGTERM);
    }
    uint64_t deadline = cd_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        int alive = 0;
        reap(s);
        for (int i = 0; i < s->n; i++)
            alive += s->child[i].pid > 0;
        if (!alive)
            break;
        if (cd_now_ns() > deadline) {
            for (int i = 0; i < s->n; i++)
                if (s->child[i].pid > 0) {
                    cd_log_warn("supervisor: %s worker %u did not stop; SIGKILL",
                                child_name(&s->child[i]), s->child[i].index);
                    kill(s->child[i].pid, SIGKILL);
                }
            deadline = UINT64_MAX;
        }
        usleep(10000);
    }
}

void cd_sup_free(cd_supervisor *s)
{
    if (!s)
        return;
    for (cd_supervisor **p = &sup_all; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    for (int i = 0; i < s->n; i++) {
        if (s->child[i].timer) {
            free(event_get_callback_arg(s->child[i].timer));
            event_free(s->child[i].timer);
        }
    }
    if (s->sigchld)
        event_free(s->sigchld);
    free(s);
}
