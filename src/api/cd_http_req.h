/*
 * cd_http_req.h - private to the HTTP API: the pure part of request
 * parsing (the request target's path split into segments, a route pattern
 * matched against them or against a whole path, decimal and boolean
 * parameters) and a view of the
 * route table. No libevent, no I/O, no allocation: cd_http_routes.c uses
 * it on every request and fuzz/fuzz_http_route.c drives it with hostile
 * input.
 */
#ifndef CD_HTTP_REQ_H
#define CD_HTTP_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h" /* CD_WARN_UNUSED */

/*
 * Splits a path into the segments after a prefix: "/v1/a/b" under "/v1/"
 * gives {"a", "b"}; under "/" any absolute path splits whole.
 * In:  path; prefix: what the path must start with (ends in '/');
 *      buf, bufsz: where the segments are kept (NUL-separated);
 *      maxseg: room in seg.
 * Out: seg[0..*nseg) point into buf.
 * Returns: 0, or -1 if the path does not start with prefix, does not fit
 *          buf, or has an empty segment or more than maxseg segments.
 */
int cd_http_split_path(const char *path, const char *prefix, char *buf, size_t bufsz, char **seg,
                       int maxseg, int *nseg) CD_WARN_UNUSED;

/*
 * Matches a route pattern: literal segments, "*" standing for any one
 * segment, NULL-terminated.
 * Returns: 1 if seg[0..nseg) are exactly the pattern's segments, else 0.
 */
int cd_http_route_match(const char *const *pattern, char *const *seg, int nseg);

/* What a "*" of a pattern stands for in cd_http_path_match. */
enum {
    CD_HTTP_MATCH_REQUEST = 0, /* any one non-empty segment of a request's path */
    CD_HTTP_MATCH_OPENAPI = 1  /* a "{name}" template segment of an OpenAPI path
                                * only; a literal never matches "{...}" */
};

/*
 * The one matcher of a whole path against a route pattern (every route
 * table of the API: cd_http_routes.c, cd_http_sdk.c, ConduitDB's in
 * cd_http_cdb.c, and the OpenAPI check), segment by segment, the same
 * rules as cd_http_route_match.
 * In:  pattern: NULL-terminated segments ("*": see mode); the empty pattern
 *      {NULL} is the path "/" alone.
 *      path: "/a/b" as evhttp_uri_get_path gives it: no query string (the
 *      caller has cut it), not percent-decoded ("%2F" is three bytes of a
 *      segment, never a separator), compared case-sensitively. An empty
 *      segment (a trailing slash, "//") matches nothing.
 *      mode: CD_HTTP_MATCH_REQUEST or CD_HTTP_MATCH_OPENAPI.
 * Out: *star (star may be NULL): where the last "*" segment starts in path
 *      (it runs to the next '/' or the end), NULL if the pattern has none.
 * Returns: 1 if the path is exactly the pattern's segments, else 0.
 */
int cd_http_path_match(const char *const *pattern, const char *path, int mode, const char **star);

/* Decimal 0..max, 1 to 10 digits, without sign, space or other junk.
 * Returns: 0 with *out set, or -1. */
int cd_http_parse_uint(const char *s, uint64_t max, uint64_t *out) CD_WARN_UNUSED;

/* A boolean parameter: 1/true/yes/on or 0/false/no/off; NULL (absent)
 * leaves *out as it is. Returns: 0, or -1 for any other text. */
int cd_http_parse_flag(const char *s, int *out) CD_WARN_UNUSED;

/* The route table (defined in cd_http_routes.c), for the fuzz target.
 * find: the index of the route whose pattern the segments match (the one
 * cd_http_handle runs), or -1. pattern: the NULL-terminated pattern of
 * route i, or NULL past the end of the table. */
int cd_http_route_find(char *const *seg, int nseg);
const char *const *cd_http_route_pattern(size_t i);

#endif /* CD_HTTP_REQ_H */
