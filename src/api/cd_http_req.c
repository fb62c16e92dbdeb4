/*
 * cd_http_req.c - the pure part of HTTP request parsing (cd_http_req.h):
 * kept apart from the handlers so that it can be fuzzed without a server.
 */
#include "cd_http_req.h"

#include <stdio.h>
#include <string.h>

int cd_http_split_path(const char *path, char *buf, size_t bufsz, char **seg, int maxseg, int *nseg)
{
    if (strlen(path) >= bufsz || strncmp(path, "/v1/", 4) != 0)
        return -1;
    snprintf(buf, bufsz, "%s", path + 4);
    *nseg = 0;
    char *p = buf;
    for (;;) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        if (*p == '\0' || *nseg == maxseg)
            return -1;
        seg[(*nseg)++] = p;
        if (!slash)
            return 0;
        p = slash + 1;
    }
}

int cd_http_route_match(const char *const *pattern, char *const *seg, int nseg)
{
    int i = 0;
    while (pattern[i] && i < nseg && (!strcmp(pattern[i], "*") || !strcmp(pattern[i], seg[i])))
        i++;
    return !pattern[i] && i == nseg;
}

int cd_http_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 10)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int cd_http_parse_flag(const char *s, int *out)
{
    if (!s)
        return 0;
    if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) {
        *out = 1;
        return 0;
    }
    if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) {
        *out = 0;
        return 0;
    }
    return -1;
}
