/*
 * cd_log.c - levels, destinations and formatting for cd_log().
 */
#include "cd_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static cd_log_level g_level = CD_LOG_INFO;
static char g_component[32] = "conduitd";
static char *g_path; /* NULL: stderr */
static int g_fd = 2; /* where lines go */
static int g_journal = -1;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
/* syslog priorities understood by journald's stream parser */
static const int level_prio[] = {3, 4, 6, 7};

void cd_log_set_component(const char *name)
{
    snprintf(g_component, sizeof(g_component), "%s", name);
}

const char *cd_log_component(void)
{
    return g_component;
}

void cd_log_set_level(cd_log_level level)
{
    g_level = level;
}

cd_log_level cd_log_get_level(void)
{
    return g_level;
}

int cd_log_level_parse(const char *s, cd_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (cd_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = CD_LOG_WARN;
        return 0;
    }
    return -1;
}

/* systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected to
 * stderr; it is only "the journal" if stderr is still that stream (a shell
 * started from a service inherits the variable but may redirect stderr). */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat sb;
    if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &sb) < 0)
        return 0;
    return (unsigned long long)sb.st_dev == dev && (unsigned long long)sb.st_ino == ino;
}

int cd_log_under_journal(void)
{
    if (g_journal < 0)
        g_journal = stderr_is_journal();
    return g_journal && g_path == NULL;
}

static int open_path(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int cd_log_open(const char *path)
{
    if (path == NULL) {
        if (g_fd > 2)
            close(g_fd);
        free(g_path);
        g_path = NULL;
        g_fd = 2;
        return 0;
    }
    int fd = open_path(path);
    if (fd < 0)
        return -1;
    char *copy = strdup(path);
    if (copy == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    /* After fork() a child may have closed every inherited descriptor
     * (cd_supervisor does) before re-opening its log: the new descriptor can
     * then get the old number, which must not be closed. Closing it would
     * leave g_fd dangling, and the next socket (a libpq connection) would
     * receive our log lines. */
    if (g_fd > 2 && g_fd != fd)
        close(g_fd);
    free(g_path);
    g_path = copy;
    g_fd = fd;
    return 0;
}

void cd_log_open_child(const char *path)
{
    if (cd_log_open(path) == 0)
        return;
    int e = errno;
    CD_IGNORE(cd_log_open(NULL)); /* stderr: cannot fail */
    cd_log_warn("cannot open log file %s: %s; logging to stderr", path, strerror(e));
}

int cd_log_reopen(void)
{
    if (g_path == NULL)
        return 0;
    int fd = open_path(g_path);
    if (fd < 0)
        return -1;
    /* dup2 keeps the descriptor number stable for forked children. */
    if (dup2(fd, g_fd) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}

void cd_log_vwrite(cd_log_level level, const char *fmt, va_list ap)
{
    char line[2048];
    size_t n = 0;
    int saved_errno = errno;

    if (level > CD_LOG_DEBUG)
        level = CD_LOG_DEBUG;
    if (cd_log_under_journal()) {
        n += (size_t)snprintf(line, sizeof(line), "<%d>", level_prio[level]);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n += strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    }
    n += (size_t)snprintf(line + n, sizeof(line) - n, "%s %s[%ld]: ", level_names[level],
                          g_component, (long)getpid());
    if (n < sizeof(line)) {
        errno = saved_errno; /* so %m works */
        int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        if (m > 0)
            n += (size_t)m;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2; /* truncated: keep the newline */
    line[n++] = '\n';
    /* One write(2) per line so lines from several processes do not interleave. */
    ssize_t w = write(g_fd, line, n);
    (void)w;
    errno = saved_errno;
}

void cd_log_write(cd_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cd_log_vwrite(level, fmt, ap);
    va_end(ap);
}

void cd_log_raw_signal_safe(const char *msg)
{
    ssize_t w = write(g_fd, msg, strlen(msg));
    (void)w;
}
