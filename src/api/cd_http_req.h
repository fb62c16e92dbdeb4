/*
 * cd_http_req.h - private to the HTTP API: the pure part of request
 * parsing (the request target's path split into segments, a route
 * pattern matched against them, decimal and boolean parameters). No
 * libevent, no I/O, no allocation: cd_http_routes.c uses it on every
 * request and fuzz/fuzz_http_route.c drives it with hostile input.
 */
#ifndef CD_HTTP_REQ_H
#define CD_HTTP_REQ_H

#include <stdint.h>

#include "cd_err.h" /* CD_WARN_UNUSED */

#define CD_HTTP_MAX_SEG     8   /* path segments after /v1 */
#define CD_HTTP_MAX_PATTERN 6   /* pattern segments of a route, NULL-terminated */
#define CD_HTTP_PATH_MAX    512 /* longest path accepted (bytes after /v1/, NUL included) */

/* A request path split at '/': seg[i] point into buf. */
typedef struct cd_http_path {
    char *seg[CD_HTTP_MAX_SEG];
    int nseg;
    char buf[CD_HTTP_PATH_MAX];
} cd_http_path;

/*
 * Splits "/v1/a/b" into the segments after "v1".
 * Out: *p (segments point into p->buf; p must not be copied).
 * Returns: 0, or -1 if the path is not under /v1/, is too long, or has an
 *          empty segment or more than CD_HTTP_MAX_SEG segments.
 */
int cd_http_split_path(const char *path, cd_http_path *p) CD_WARN_UNUSED;

/*
 * Matches a route pattern: up to CD_HTTP_MAX_PATTERN - 1 literal segments,
 * "*" standing for any one segment, NULL-terminated.
 * Returns: 1 if p has exactly the pattern's segments, else 0.
 */
int cd_http_route_match(const char *const *pattern, const cd_http_path *p);

/* Decimal 0..max, 1 to 10 digits, without sign, space or other junk.
 * Returns: 0 with *out set, or -1. */
int cd_http_parse_uint(const char *s, uint64_t max, uint64_t *out) CD_WARN_UNUSED;

/* A boolean parameter: 1/true/yes/on or 0/false/no/off; NULL (absent)
 * leaves *out as it is. Returns: 0, or -1 for any other text. */
int cd_http_parse_flag(const char *s, int *out) CD_WARN_UNUSED;

#endif /* CD_HTTP_REQ_H */
