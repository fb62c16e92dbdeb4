/*
 * cd_notify.c - sd_notify(3) without libsystemd.
 *
 * Why: Type=notify lets systemd (and `systemctl start`) know when conduitd is
 * really up, show a live STATUS= line in `systemctl status`, and restart it
 * if the loop stalls (WatchdogSec). The protocol is one datagram per message
 * to an AF_UNIX socket; linking libsystemd for that is not worth it.
 */
#include "cd_notify.h"

#include <errno.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_un g_addr;
static socklen_t g_addrlen;
static int g_enabled;
static uint64_t g_watchdog_usec;

int cd_notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    g_enabled = 0;
    g_watchdog_usec = 0;
    if (path != NULL && (path[0] == '/' || path[0] == '@') &&
        strlen(path) < sizeof(g_addr.sun_path)) {
        memset(&g_addr, 0, sizeof(g_addr));
        g_addr.sun_family = AF_UNIX;
        size_t n = strlen(path);
        memcpy(g_addr.sun_path, path, n);
        if (path[0] == '@')
            g_addr.sun_path[0] = '\0'; /* abstract namespace */
        g_addrlen =
            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
        g_enabled = 1;
    } else if (path != NULL) {
        cd_log_warn("NOTIFY_SOCKET '%s' is not a usable unix socket path; not notifying", path);
    }
    const char *wd = getenv("WATCHDOG_USEC");
    const char *wpid = getenv("WATCHDOG_PID");
    if (g_enabled && wd != NULL) {
        char *e;
        unsigned long long v = strtoull(wd, &e, 10);
        int for_us = 1;
        if (wpid != NULL && strtol(wpid, NULL, 10) != (long)getpid())
            for_us = 0;
        if (*e == '\0' && v > 0 && for_us)
            g_watchdog_usec = v;
    }
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    return g_enabled;
}

int cd_notify_enabled(void)
{
    return g_enabled;
}

uint64_t cd_notify_watchdog_usec(void)
{
    return g_watchdog_usec;
}

int cd_notify_send(const char *state)
{
    if (!g_enabled)
        return 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t n =
        sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&g_addr, g_addrlen);
    int e = errno;
    close(fd);
    if (n < 0) {
        errno = e;
        return -1;
    }
    return 0;
}

int cd_notify_ready(void)
{
    return cd_notify_send("READY=1");
}

int cd_notify_stopping(void)
{
    return cd_notify_send("STOPPING=1");
}

int cd_notify_watchdog(void)
{
    return cd_notify_send("WATCHDOG=1");
}

int cd_notify_status(const char *fmt, ...)
{
    if (!g_enabled)
        return 0;
    char buf[512];
    memcpy(buf, "STATUS=", 7);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + 7, sizeof(buf) - 7, fmt, ap);
    va_end(ap);
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
    return cd_notify_send(buf);
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (cd_notify_watchdog() < 0)
        cd_log_warn("systemd watchdog keep-alive failed: %s", strerror(errno));
}

struct event *cd_notify_watchdog_start(struct event_base *base)
{
    if (!g_enabled || g_watchdog_usec == 0)
        return NULL;
    struct event *ev = event_new(base, -1, EV_PERSIST, watchdog_cb, NULL);
    if (ev == NULL)
        return NULL;
    uint64_t half = g_watchdog_usec / 2;
    struct timeval tv = {(time_t)(half / 1000000), (suseconds_t)(half % 1000000)};
    if (event_add(ev, &tv) < 0) {
        event_free(ev);
        return NULL;
    }
    CD_IGNORE(cd_notify_watchdog()); /* best effort: the timer sends the next one */
    return ev;
}
