/*
 * cd_http_req.c - the pure part of HTTP request parsing (cd_http_req.h):
 * kept apart from the handlers so that it can be fuzzed without a server.
 */
#include "cd_http_req.h"

#include <stdio.h>
#include <string.h>

int cd_http_split_path(const char *path, cd_http_path *p)
{
    if (strlen(path) >= sizeof(p->buf) || strncmp(path, "/v1/", 4) != 0)
        return -1;
    snprintf(p->buf, sizeof(p->buf), "%s", path + 4);
    p->nseg = 0;
    char *s = p->buf;
    for (;;) {
        char *slash = strchr(s, '/');
        if (slash)
            *slash = '\0';
        if (*s == '\0' || p->nseg == CD_HTTP_MAX_SEG)
            return -1;
        p->seg[p->nseg++] = s;
        if (!slash)
            return 0;
        s = slash + 1;
    }
}

int cd_http_route_match(const char *const *pattern, const cd_http_path *p)
{
    int i = 0;
    while (i < CD_HTTP_MAX_PATTERN && pattern[i] && i < p->nseg &&
           (!strcmp(pattern[i], "*") || !strcmp(pattern[i], p->seg[i])))
        i++;
    return i < CD_HTTP_MAX_PATTERN && !pattern[i] && i == p->nseg;
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
