/*
 * cd_supervisor.c - the process table: fork, reap and respawn every child
 * process (the workers, the HTTP server, the catch-up helper).
 *
 * Why it exists: a crashed writer, merkle or parser worker (or the HTTP
 * server) must not take the daemon down, a child that can never start must
 * not be respawned in a tight loop (STYLE.md C8, nginx/PostgreSQL), and the
 * controller must never block waiting for a child: one table, one SIGCHLD
 * event and WNOHANG reaping for all of them. See cd_supervisor.h.
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

typedef struct sup_child {
    const cd_sup_kind *kind; /* NULL: a free slot */
    uint32_t index;
    char component[32]; /* log component in the child */
    void *main_arg;
    cd_sup_cbs cbs;
    pid_t pid;
    int respawn;  /* 0 after exit code 2, for a ONCE kind, or once stopping */
    int stopping; /* being stopped by cd_sup_stop: its end is expected */
    uint32_t backoff_ms;
    uint64_t started_ns;
    struct event *timer;
} sup_child;

struct cd_supervisor {
    struct event_base *base;
    const cd_config *cfg;
    sup_child child[CD_SUP_MAX_CHILDREN];
    int n;        /* slots in use are below n */
    int stopping; /* cd_sup_stop of every child: no launch either */
    struct event *sigchld;
    void (*ring_forget)(void *arg);
    void *ring_arg;
    /* restarts by kind since creation (/metrics), kept when slots are freed */
    cd_sup_restart_count restarts[CD_SUP_MAX_KINDS];
    size_t n_kinds;
};

/* ---- the rules ---- */

uint32_t cd_sup_backoff(uint32_t cur_ms, uint64_t lived_ns)
{
    if (cur_ms == 0 || lived_ns > CD_SUP_HEALTHY_NS)
        return CD_SUP_BACKOFF_MIN_MS;
    return CD_MIN(cur_ms * 2, CD_SUP_BACKOFF_MAX_MS);
}

cd_sup_verdict cd_sup_verdict_of(cd_sup_restart restart, int code, int stopping)
{
    if (stopping)
        return CD_SUP_DONE;
    if (code == CD_EXIT_CONFIG)
        return CD_SUP_FATAL;
    return restart == CD_SUP_RESPAWN ? CD_SUP_RESTART : CD_SUP_DONE;
}

/* ---- respawn ---- */

static void start_child(cd_supervisor *s, int slot);

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
    sup_child *c = &r->s->child[r->slot];
    if (!r->s->stopping && c->kind && c->respawn && c->pid == 0)
        start_child(r->s, r->slot);
}

/* Arms the slot's restart timer with its current back-off (the first
 * restart of a slot waits CD_SUP_BACKOFF_MIN_MS). */
static void schedule_restart(cd_supervisor *s, int slot)
{
    sup_child *c = &s->child[slot];
    if (!c->timer) {
        sup_ref *r = cd_xmalloc(sizeof(*r));
        r->s = s;
        r->slot = slot;
        c->timer = evtimer_new(s->base, restart_ref_cb, r);
    }
    if (c->backoff_ms == 0)
        c->backoff_ms = CD_SUP_BACKOFF_MIN_MS;
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    cd_log_info("supervisor: restarting %s worker %u in %u ms", c->kind->name, c->index,
                c->backoff_ms);
    evtimer_add(c->timer, &tv);
}

/* Handles the death of the child in `slot` (already reaped). */
static void child_died(cd_supervisor *s, int slot, pid_t pid, int status)
{
    sup_child *c = &s->child[slot];
    c->pid = 0;
    int code =
        WIFEXITED(status) ? WEXITSTATUS(status) : -(WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    int stopping = s->stopping || c->stopping;
    cd_sup_verdict v = cd_sup_verdict_of(c->kind->restart, code, stopping);
    if (stopping)
        ;
    else if (code < 0)
        cd_log_warn("supervisor: %s worker %u (pid %d) killed by signal %d", c->kind->name,
                    c->index, (int)pid, -code);
    else if (code != 0 || c->kind->restart == CD_SUP_RESPAWN)
        cd_log_warn("supervisor: %s worker %u (pid %d) exited with code %d", c->kind->name,
                    c->index, (int)pid, code);
    else
        cd_log_debug("supervisor: %s %u (pid %d) done", c->kind->name, c->index, (int)pid);
    /* the back-off the next respawn waits */
    c->backoff_ms = c->backoff_ms ? cd_sup_backoff(c->backoff_ms, cd_now_ns() - c->started_ns)
                                  : CD_SUP_BACKOFF_MIN_MS;
    cd_sup_cbs cbs = c->cbs;
    if (cbs.on_down)
        cbs.on_down(cbs.arg, slot, code);
    if (v == CD_SUP_FATAL) {
        c->respawn = 0;
        cd_log_error("supervisor: %s worker %u has a fatal configuration error; not restarting",
                     c->kind->name, c->index);
        if (cbs.on_fatal)
            cbs.on_fatal(cbs.arg, slot);
    } else if (v == CD_SUP_RESTART && c->respawn) {
        for (size_t i = 0; i < s->n_kinds; i++)
            if (strcmp(s->restarts[i].kind, c->kind->name) == 0)
                s->restarts[i].restarts++;
        schedule_restart(s, slot);
    }
}

/* Reaps every dead child of the process (never blocks). A pid not in the
 * table cannot be ours (the table forks every child); it is dropped. */
static void reap(cd_supervisor *s)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (int i = 0; i < s->n; i++)
            if (s->child[i].kind && s->child[i].pid == pid) {
                child_died(s, i, pid, status);
                break;
            }
    }
}

static void sigchld_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reap(arg);
}

cd_supervisor *cd_sup_new(struct event_base *base, const cd_config *cfg)
{
    cd_supervisor *s = cd_xcalloc(1, sizeof(*s));
    s->base = base;
    s->cfg = cfg;
    s->sigchld = evsignal_new(base, SIGCHLD, sigchld_cb, s);
    if (!s->sigchld || evsignal_add(s->sigchld, NULL) != 0) {
        cd_log_error("supervisor: cannot watch SIGCHLD");
        cd_sup_free(s);
        return NULL;
    }
    return s;
}

void cd_sup_set_ring(cd_supervisor *s, void (*forget)(void *arg), void *arg)
{
    s->ring_forget = forget;
    s->ring_arg = arg;
}

int cd_sup_add(cd_supervisor *s, const cd_sup_kind *kind, uint32_t index, const char *component,
               void *arg, const cd_sup_cbs *cbs)
{
    int slot = -1;
    for (int i = 0; i < s->n && slot < 0; i++)
        if (!s->child[i].kind)
            slot = i; /* freed by cd_sup_stop */
    if (slot < 0) {
        if (s->n >= CD_SUP_MAX_CHILDREN)
            return CD_SUP_EFULL;
        slot = s->n++;
    }
    sup_child *c = &s->child[slot];
    struct event *timer = c->timer; /* kept across reuse: its ref is {s, slot} */
    memset(c, 0, sizeof(*c));
    c->timer = timer;
    c->kind = kind;
    c->index = index;
    snprintf(c->component, sizeof(c->component), "%s", component ? component : kind->name);
    c->main_arg = arg;
    c->cbs = *cbs;
    c->respawn = kind->restart == CD_SUP_RESPAWN;
    /* listed from its first child on, so its counter reads 0, not absent */
    size_t k = 0;
    while (k < s->n_kinds && strcmp(s->restarts[k].kind, kind->name) != 0)
        k++;
    if (k == s->n_kinds && k < CD_SUP_MAX_KINDS && kind->restart == CD_SUP_RESPAWN)
        s->restarts[s->n_kinds++] = (cd_sup_restart_count){kind->name, 0};
    return slot;
}

size_t cd_sup_restarts(const cd_supervisor *s, cd_sup_restart_count *out, size_t max)
{
    size_t n = CD_MIN(s->n_kinds, max);
    memcpy(out, s->restarts, n * sizeof(*out));
    return n;
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
    if (!c->kind->needs_ring && s->ring_forget)
        s->ring_forget(s->ring_arg);
    if (c->kind->needs_pg && !getenv("PGAPPNAME")) {
        char app[48];
        snprintf(app, sizeof(app), "conduitd-%s", c->component);
        setenv("PGAPPNAME", app, 1);
    }
    cd_log_set_component(c->component);
    if (s->cfg->log_file)
        cd_log_open_child(s->cfg->log_file);
    c->kind->main(c->main_arg, slot, fd);
    _exit(CD_EXIT_FAILURE);
}

/* Forks the child of a slot. Returns 0 or CD_SUP_EFORK (logged; a resident
 * child is retried with back-off). */
static int fork_child(cd_supervisor *s, int slot)
{
    sup_child *c = &s->child[slot];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        cd_log_error("supervisor: socketpair: %s", strerror(errno));
        return CD_SUP_EFORK;
    }
    pid_t pid = cd_fork_signals_blocked();
    if (pid == 0) {
        close(sv[0]);
        child_main(s, slot, sv[1]);
    }
    int saved = errno;
    close(sv[1]);
    if (pid < 0) {
        cd_log_error("supervisor: fork %s worker: %s", c->kind->name, strerror(saved));
        close(sv[0]);
        return CD_SUP_EFORK;
    }
    c->pid = pid;
    c->started_ns = cd_now_ns();
    evutil_make_socket_nonblocking(sv[0]);
    if (c->kind->restart == CD_SUP_RESPAWN)
        cd_log_info("supervisor: started %s worker %u (pid %d)", c->kind->name, c->index, (int)pid);
    else
        cd_log_debug("supervisor: started %s %u (pid %d)", c->kind->name, c->index, (int)pid);
    if (c->cbs.on_up)
        c->cbs.on_up(c->cbs.arg, slot, sv[0]);
    else
        close(sv[0]);
    return 0;
}

static void start_child(cd_supervisor *s, int slot)
{
    if (fork_child(s, slot) != 0 && s->child[slot].respawn) {
        sup_child *c = &s->child[slot];
        c->backoff_ms = cd_sup_backoff(c->backoff_ms, 0);
        schedule_restart(s, slot);
    }
}

int cd_sup_start(cd_supervisor *s)
{
    int rc = 0;
    for (int i = 0; i < s->n; i++) {
        sup_child *c = &s->child[i];
        if (c->kind && c->kind->restart == CD_SUP_RESPAWN && c->pid == 0 && c->respawn) {
            start_child(s, i);
            if (c->pid == 0)
                rc = CD_SUP_EFORK;
        }
    }
    return rc;
}

int cd_sup_launch(cd_supervisor *s, int slot)
{
    if (slot < 0 || slot >= s->n || !s->child[slot].kind || s->stopping)
        return CD_SUP_ESLOT;
    if (s->child[slot].pid > 0)
        return CD_SUP_ERUNNING;
    if (s->child[slot].kind->restart == CD_SUP_ONCE)
        return fork_child(s, slot);
    start_child(s, slot);
    return s->child[slot].pid > 0 ? 0 : CD_SUP_EFORK;
}

void cd_sup_kill(cd_supervisor *s, int slot)
{
    if (slot >= 0 && slot < s->n && s->child[slot].kind && s->child[slot].pid > 0)
        kill(s->child[slot].pid, SIGKILL);
}

pid_t cd_sup_pid(const cd_supervisor *s, int slot)
{
    return (slot >= 0 && slot < s->n && s->child[slot].kind) ? s->child[slot].pid : 0;
}

static int owned(const sup_child *c, const void *owner)
{
    return c->kind && (!owner || c->cbs.arg == owner);
}

void cd_sup_stop(cd_supervisor *s, const void *owner, int timeout_ms)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        sup_child *c = &s->child[i];
        if (!owned(c, owner))
            continue;
        c->respawn = 0;
        c->stopping = 1;
        if (c->timer)
            evtimer_del(c->timer);
        if (c->pid > 0)
            kill(c->pid, SIGTERM);
    }
    if (!owner)
        s->stopping = 1;
    /* The only wait that blocks: at shutdown (or when a module goes away),
     * bounded by timeout_ms and then SIGKILL. Other children reaped meanwhile
     * are handled as usual. */
    uint64_t deadline = cd_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        int alive = 0;
        reap(s);
        for (int i = 0; i < s->n; i++)
            alive += owned(&s->child[i], owner) && s->child[i].pid > 0;
        if (!alive)
            break;
        if (cd_now_ns() > deadline) {
            for (int i = 0; i < s->n; i++)
                if (owned(&s->child[i], owner) && s->child[i].pid > 0) {
                    cd_log_warn("supervisor: %s worker %u did not stop; SIGKILL",
                                s->child[i].kind->name, s->child[i].index);
                    kill(s->child[i].pid, SIGKILL);
                }
            deadline = UINT64_MAX;
        }
        usleep(10000);
    }
    for (int i = 0; i < s->n; i++)
        if (owned(&s->child[i], owner))
            s->child[i].kind = NULL; /* free: no callback of its owner runs again */
}

void cd_sup_free(cd_supervisor *s)
{
    if (!s)
        return;
    cd_sup_stop(s, NULL, 5000);
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
