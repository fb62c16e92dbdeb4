/*
 * cd_http.c - the controller side of the HTTP API: binding http_listen, and
 * the controller module that forks and supervises the server child.
 *
 * Why it exists: the API's queries (PostgreSQL, LMDB reads of whole blocks)
 * must never run on the controller's p2p loop (DESIGN.md §2). The server is
 * a supervised child like the workers; the controller only owns the
 * listening socket, so the port stays reserved while a crashed server is
 * restarted. See cd_http.h.
 */
#include "cd_http.h"
#include "cd_http_int.h"
#include "cd_resident.h"
#include "cd_supervisor.h"

#include "cd_hostport.h"
#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HTTP_BACKLOG 128

/* The sockets main.c bound (cd_http_set_listener,
 * cd_http_set_metrics_listener); taken by init(). */
static int http_listener = -1;
static int metrics_listener = -1;

void cd_http_set_listener(int fd)
{
    http_listener = fd;
}

void cd_http_set_metrics_listener(int fd)
{
    metrics_listener = fd;
}

/* The metrics server's index in the module's tables, after the API's. */
#define METRICS_PROC HTTP_PROCS
#define HTTP_SLOTS   (HTTP_PROCS + 1)

/* "127.0.0.1:8085" / "[::1]:8085" of a bound socket. */
static void sock_name(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char h[NI_MAXHOST], p[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(buf, len, "?");
        return;
    }
    cd_hostport_format(buf, len, h, (unsigned)atoi(p));
}

/* Binds and listens on spec for option `opt` (its name prefixes err). */
static int bind_listener(const char *opt, const char *spec, char *err, size_t errlen)
{
    char host[CD_HOSTPORT_MAX], port[16];
    int portnum;
    if (cd_hostport_parse(spec, host, sizeof(host), &portnum) != 0 || portnum < 0) {
        snprintf(err, errlen, "%s %s: expects address:port, e.g. 127.0.0.1:8085", opt, spec);
        return -1;
    }
    snprintf(port, sizeof(port), "%d", portnum);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "%s %s: %s", opt, spec, gai_strerror(g));
        return -1;
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        /* a restarted daemon rebinds at once despite TIME_WAIT connections;
         * a port held by a live listener still fails (EADDRINUSE) */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, HTTP_BACKLOG) != 0) {
            e = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "%s %s: %s", opt, spec, strerror(e ? e : EADDRNOTAVAIL));
        return -1;
    }
    return fd;
}

int cd_http_listen_open(const char *spec, char *err, size_t errlen)
{
    int fd = bind_listener("http_listen", spec, err, errlen);
    if (fd < 0)
        return -1;
    char name[300];
    sock_name(fd, name, sizeof(name));
    cd_log_info("http: API on %s (no authentication: keep it on loopback or behind a proxy)", name);
    return fd;
}

int cd_http_metrics_listen_open(const char *spec, char *err, size_t errlen)
{
    int fd = bind_listener("metrics_listen", spec, err, errlen);
    if (fd < 0)
        return -1;
    char name[300];
    sock_name(fd, name, sizeof(name));
    cd_log_info("metrics: Prometheus metrics on http://%s/metrics", name);
    return fd;
}

/* ---- the module ---- */

typedef struct http_mod {
    const cd_config *cfg;
    int listen_fd;          /* http_listen's socket, -1: the API is off */
    int metrics_fd;         /* metrics_listen's socket, -1: off */
    cd_resident *res;       /* the servers' rows and channels (cd_resident.h) */
    int member[HTTP_SLOTS]; /* res's member number of server i (METRICS_PROC:
                               the metrics server), -1: none */
    http_busy *busy;        /* shared with the children (MAP_SHARED, before fork) */
} http_mod;

/* Server i of a member of m->res, or -1. */
static int proc_of(const http_mod *m, int member)
{
    for (int i = 0; member >= 0 && i < HTTP_SLOTS; i++)
        if (m->member[i] == member)
            return i;
    return -1;
}

/* Passes the listening socket to the child over its channel. */
static int send_listener(int chan, int listen_fd)
{
    char byte = 'L';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    memset(&u, 0, sizeof(u));
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof(u.buf);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &listen_fd, sizeof(int));
    ssize_t n;
    do
        n = sendmsg(chan, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -1;
}

/* Receives it in the child (blocking). Returns the fd or -1. */
static int recv_listener(int chan)
{
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof(u.buf);
    ssize_t n;
    do
        n = recvmsg(chan, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n != 1)
        return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
        cm->cmsg_len != CMSG_LEN(sizeof(int)))
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof(int));
    return fd;
}

/* Runs in the forked child (cd_supervisor.c child_main has closed every
 * other descriptor and reset the signals). */
static void http_child_main(void *arg, int slot, int fd)
{
    http_mod *m = arg;
    int lfd = recv_listener(fd);
    if (lfd < 0) {
        /* EOF: the controller died before handing the socket over */
        cd_log_error("http: no listening socket from the controller");
        exit(CD_EXIT_FAILURE);
    }
    int i = proc_of(m, cd_resident_member(m->res, slot));
    if (i < 0) { /* cannot happen: every slot was added by init() */
        cd_log_error("http: supervisor slot %d is not a server's", slot);
        exit(CD_EXIT_FAILURE);
    }
    if (i == METRICS_PROC)
        exit(cd_http_metrics_run(m->cfg, lfd, fd));
    exit(cd_http_server_run(m->cfg, lfd, fd, i, m->busy));
}

/* The servers are resident children whose channel the controller holds
 * (cd_resident.h); what the HTTP module adds: the listening socket goes
 * over the channel at each start, a dead server's busy mark is cleared. */
static void srv_up(void *arg, int member, int fd)
{
    http_mod *m = arg;
    int i = proc_of(m, member);
    if (i < 0)
        return;
    if (send_listener(fd, i == METRICS_PROC ? m->metrics_fd : m->listen_fd) != 0) {
        cd_log_error("http: cannot pass the listening socket to the server: %s", strerror(errno));
        cd_resident_kill(m->res, member); /* restarted with back-off */
    }
}

static void srv_down(void *arg, int member, int code)
{
    http_mod *m = arg;
    (void)code; /* logged by the supervisor */
    int i = proc_of(m, member);
    if (i < 0 || i == METRICS_PROC)
        return;
    /* a server killed mid-request leaves its slot marked busy: clear it so
     * its client's count is right (the restarted server also does) */
    __atomic_store_n(&m->busy[i].key, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&m->busy[i].streams, 0, __ATOMIC_RELEASE);
}

/* Its rows of the process table (HTTP_PROCS of them): no ring; their
 * sessions are cd_lookup's. */
static const cd_sup_kind http_kind = {.name = "http",
                                      .main = http_child_main,
                                      .restart = CD_SUP_RESPAWN,
                                      .needs_ring = 0,
                                      .needs_pg = 1};

/* The metrics server (metrics_listen): one process, its own kind so the
 * restart counters name it (conduitd_worker_restarts_total{kind="metrics"}). */
static const cd_sup_kind metrics_kind = {.name = "metrics",
                                         .main = http_child_main,
                                         .restart = CD_SUP_RESPAWN,
                                         .needs_ring = 0,
                                         .needs_pg = 1};

/* Stops the servers (timeout_ms: cd_resident_free) and frees the rest. */
static void http_free(http_mod *m, int timeout_ms)
{
    cd_resident_free(m->res, timeout_ms); /* before busy goes: srv_down writes it */
    if (m->busy && m->busy != MAP_FAILED)
        munmap(m->busy, sizeof(http_shared));
    if (m->listen_fd >= 0)
        close(m->listen_fd);
    if (m->metrics_fd >= 0)
        close(m->metrics_fd);
    free(m);
}

static int http_init(cd_ctl *ctl, void **state)
{
    *state = NULL;
    if (http_listener < 0 && metrics_listener < 0)
        return 0; /* http_listen and metrics_listen empty: off */
    http_mod *m = cd_xcalloc(1, sizeof(*m));
    m->cfg = cd_ctl_config(ctl);
    m->listen_fd = http_listener;
    m->metrics_fd = metrics_listener;
    for (int i = 0; i < HTTP_SLOTS; i++)
        m->member[i] = -1;
    http_listener = -1;
    metrics_listener = -1;
    /* one small table the servers share (which client each is busy with),
     * mapped before the fork so every (re)started server inherits it */
    m->busy = mmap(NULL, sizeof(http_shared), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m->busy == MAP_FAILED) {
        cd_log_error("http: cannot map the servers' shared table: %s", strerror(errno));
        http_free(m, 0);
        return -1;
    }
    cd_resident_hooks hooks = {.arg = m, .on_up = srv_up, .on_down = srv_down};
    m->res = cd_resident_new(cd_ctl_sup(ctl),
                             "http: the server cannot run; the HTTP API is off until conduitd "
                             "restarts",
                             &hooks);
    /* forked here, in init(): the controller has no LMDB env and no peer
     * socket open yet (cd_ctl.h) */
    for (int i = 0; i < HTTP_SLOTS; i++) {
        if (i == METRICS_PROC ? m->metrics_fd < 0 : m->listen_fd < 0)
            continue;
        int rc = i == METRICS_PROC ? cd_resident_add(m->res, &metrics_kind, 0, m)
                                   : cd_resident_add(m->res, &http_kind, (uint32_t)i, m);
        if (rc < 0) {
            cd_log_error("http: cannot set up the server processes: %s", cd_strerror(rc));
            http_free(m, 0); /* frees the rows added so far */
            return -1;
        }
        m->member[i] = rc;
    }
    *state = m;
    cd_resident_launch(m->res);
    return 0;
}

static void http_fini(void *state)
{
    http_mod *m = state;
    if (!m)
        return;
    http_free(m, 5000); /* the servers only; frees their rows */
}

const cd_ctl_module cd_http_module = {
    .name = "http",
    .init = http_init,
    .fini = http_fini,
};
