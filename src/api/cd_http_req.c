/*
 * cd_http_req.c - the pure part of HTTP request parsing (cd_http_req.h):
 * kept apart from the handlers so that it can be fuzzed without a server.
 */
#include "cd_http_req.h"

#include <stdio.h>
#include <string.h>

int cd_http_split_path(const char *path, const char *prefix, char *buf, size_t bufsz, char **seg,
                       int maxseg, int *nseg)
{
    size_t pl = strlen(prefix);
    if (strlen(path) >= bufsz || strncmp(path, prefix, pl) != 0)
        return -1;
    snprintf(buf, bufsz, "%s", path + pl);
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

/* 1 if the segment seg[0..w) is what the pattern segment pat stands for
 * (cd_http_path_match's rules). */
static int seg_match(const char *pat, const char *seg, size_t w, int mode)
{
    if (w == 0)
        return 0;
    int templ = mode == CD_HTTP_MATCH_OPENAPI && w >= 2 && seg[0] == '{' && seg[w - 1] == '}';
    if (!strcmp(pat, "*"))
        return mode == CD_HTTP_MATCH_OPENAPI ? templ : 1;
    return !templ && strlen(pat) == w && memcmp(pat, seg, w) == 0;
}

int cd_http_route_match(const char *const *pattern, char *const *seg, int nseg)
{
    int i = 0;
    while (pattern[i] && i < nseg &&
           seg_match(pattern[i], seg[i], strlen(seg[i]), CD_HTTP_MATCH_REQUEST))
        i++;
    return !pattern[i] && i == nseg;
}

int cd_http_path_match(const char *const *pattern, const char *path, int mode, const char **star)
{
    if (star)
        *star = NULL;
    if (path[0] != '/')
        return 0;
    if (!pattern[0])
        return path[1] == '\0';
    const char *p = path + 1, *at = NULL;
    for (int i = 0; pattern[i]; i++) {
        size_t w = strcspn(p, "/");
        if (!seg_match(pattern[i], p, w, mode))
            return 0;
        if (!strcmp(pattern[i], "*"))
            at = p;
        p += w;
        if (!pattern[i + 1])
            break;
        if (*p != '/')
            return 0;
        p++;
    }
    if (*p != '\0')
        return 0;
    if (star)
        *star = at;
    return 1;
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
