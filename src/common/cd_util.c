/*
 * cd_util.c - allocation wrappers, hex, monotonic clock.
 */
#include "cd_util.h"
#include "cd_log.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static CD_NORETURN void oom(size_t n)
{
    cd_log_error("out of memory allocating %zu bytes", n);
    abort();
}

void *cd_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *cd_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        oom(count * size);
    return p;
}

void *cd_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *cd_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = cd_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void cd_assert_fail(const char *expr, const char *file, int line)
{
    cd_log_error("%s:%d: assertion failed: %s", file, line, expr);
    abort();
}

static const char hexdigits[] = "0123456789abcdef";

char *cd_hex_put(char *out, const uint8_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        *out++ = hexdigits[in[i] >> 4];
        *out++ = hexdigits[in[i] & 15];
    }
    return out;
}

void cd_hex_encode(char *out, const uint8_t *in, size_t n)
{
    *cd_hex_put(out, in, n) = '\0';
}

void cd_hex_encode_rev(char *out, const uint8_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b = in[n - 1 - i];
        out[2 * i] = hexdigits[b >> 4];
        out[2 * i + 1] = hexdigits[b & 15];
    }
    out[2 * n] = '\0';
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cd_hex_decode(uint8_t *out, size_t n, const char *hex)
{
    if (strlen(hex) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int cd_hex_decode_rev(uint8_t *out, size_t n, const char *hex)
{
    if (cd_hex_decode(out, n, hex) != 0)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        uint8_t t = out[i];
        out[i] = out[n - 1 - i];
        out[n - 1 - i] = t;
    }
    return 0;
}

uint64_t cd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double cd_now_s(void)
{
    return (double)cd_now_ns() / 1e9;
}

void cd_close_fds_except(int keep)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        for (int fd = 3; fd < 4096; fd++)
            if (fd != keep)
                close(fd);
        return;
    }
    /* Collect first, close after: closing while reading the directory would
     * change what readdir() returns. */
    int dfd = dirfd(d);
    int fds[1024];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < (int)CD_ARRAY_LEN(fds)) {
        int fd = atoi(e->d_name);
        if (fd > 2 && fd != keep && fd != dfd)
            fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

pid_t cd_fork_signals_blocked(void)
{
    fflush(NULL);
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = fork();
    if (pid == 0)
        return 0;
    int saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return pid;
}
