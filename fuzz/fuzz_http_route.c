/*
 * fuzz_http_route.c - libFuzzer target for the HTTP API's request parsing:
 * the request target (URI) as a client sends it, through the same steps as
 * cd_http_handle (src/api/cd_http_routes.c) up to the handler's database
 * lookup: libevent's URI parser (evhttp_uri_parse, as evhttp does for
 * every request), the path split (cd_http_split_path), the real route table
 * (cd_http_route_find), the query string (evhttp_parse_query_str) and each
 * route's parameter validators (hashes, block ids, output indexes, limits,
 * history cursors, flags, formats).
 *
 * Oracles: split segments are non-empty, hold no '/', and joined by '/'
 * give back the path after "/v1/"; the route found is the first whose
 * pattern matches, and no earlier one does; parsed numbers are within their
 * bounds and print back to the digits given (modulo leading zeros); a
 * history cursor that parses formats to text that parses to the same
 * cursor; a 64-hex id decodes to bytes that encode back to it.
 *
 * Built only with -Dfuzz=true and clang (scripts/fuzz.sh).
 */
#include <sys/queue.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "cd_http_req.h"
#include "cd_lookup.h"
#include "cd_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The sizes of http_args in cd_http_routes.c (segments, path buffer). */
#define MAX_SEG   8
#define PATH_MAX_ 512

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_http_route: check failed at line %d: %s\n", __LINE__, #c);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Decimal text -> value, the slow obvious way, for the oracle. */
static int ref_uint(const char *s, uint64_t max, uint64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 10 || strspn(s, "0123456789") != n)
        return -1;
    unsigned long long v = strtoull(s, NULL, 10);
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static void check_uint(const char *s, uint64_t max)
{
    uint64_t a = 0, b = 0;
    int ra = cd_http_parse_uint(s, max, &a);
    int rb = ref_uint(s, max, &b);
    CHECK(ra == rb && (ra != 0 || a == b));
}

static void check_hash(const char *s, int rev)
{
    uint8_t h[32];
    int rc = rev ? cd_hex_decode_rev(h, 32, s) : cd_hex_decode(h, 32, s);
    if (rc != 0)
        return;
    CHECK(strlen(s) == 64);
    uint8_t back[32];
    char hex[65];
    cd_hex_encode(hex, h, 32);
    CHECK(cd_hex_decode(back, 32, hex) == 0);
    if (!rev)
        CHECK(strncasecmp(hex, s, 64) == 0);
}

static void check_block_id(const char *s)
{
    uint8_t h[32];
    uint32_t height = 0;
    int kind = cd_lookup_block_id(s, h, &height);
    if (kind == 0) {
        uint64_t v;
        CHECK(ref_uint(s, UINT32_MAX - 1, &v) == 0 && v == height);
    } else if (kind == 1) {
        CHECK(strlen(s) == 64);
    } else {
        uint64_t v;
        CHECK(kind == CD_LOOKUP_EINPUT && ref_uint(s, UINT32_MAX - 1, &v) != 0);
    }
}

static void check_cursor(const char *s)
{
    cd_lookup_hist a, b;
    if (cd_lookup_cursor_parse(s, &a) != 0)
        return;
    char buf[64];
    cd_lookup_cursor_format(&a, buf, sizeof(buf));
    CHECK(cd_lookup_cursor_parse(buf, &b) == 0);
    CHECK(a.height == b.height && a.tx_pos == b.tx_pos && a.flags == b.flags && a.idx == b.idx);
}

static void check_flag(const char *s)
{
    int v = 7;
    if (cd_http_parse_flag(s, &v) == 0)
        CHECK(s ? (v == 0 || v == 1) : v == 7);
}

/* The checks of the handler the route leads to, on the same inputs. */
static void route_params(const char *const *pat, char *const *seg, int nseg, struct evkeyvalq *q)
{
    if (!strcmp(pat[0], "tx") || !strcmp(pat[0], "outpoint"))
        check_hash(seg[1], 1);
    if (!strcmp(pat[0], "block"))
        check_block_id(seg[1]);
    if (!strcmp(pat[0], "outpoint"))
        check_uint(seg[2], INT32_MAX);
    if (!strcmp(pat[0], "pushdata"))
        check_hash(seg[1], 0);
    const char *v;
    if ((v = evhttp_find_header(q, "limit")) != NULL)
        check_uint(v, 1000);
    if ((v = evhttp_find_header(q, "after")) != NULL)
        check_cursor(v);
    check_flag(evhttp_find_header(q, "include_tx"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *uri = malloc(size + 1);
    CHECK(uri != NULL);
    memcpy(uri, data, size);
    uri[size] = '\0'; /* evhttp hands over the request line's text */

    /* the helpers on the raw text too: it may hold any byte */
    check_uint(uri, INT32_MAX);
    check_block_id(uri);
    check_cursor(uri);
    check_hash(uri, 1);

    struct evhttp_uri *u = evhttp_uri_parse_with_flags(uri, 0);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    const char *qs = u ? evhttp_uri_get_query(u) : NULL;
    char buf[PATH_MAX_], *seg[MAX_SEG];
    int nseg = 0;
    if (path && cd_http_split_path(path, "/v1/", buf, sizeof(buf), seg, MAX_SEG, &nseg) == 0) {
        CHECK(nseg >= 1 && nseg <= MAX_SEG);
        char joined[PATH_MAX_];
        size_t off = 0;
        for (int i = 0; i < nseg; i++) {
            size_t l = strlen(seg[i]);
            CHECK(l > 0 && !strchr(seg[i], '/'));
            CHECK(off + l + 1 <= sizeof(joined));
            memcpy(joined + off, seg[i], l);
            off += l;
            joined[off++] = i + 1 < nseg ? '/' : '\0';
        }
        CHECK(strcmp(joined, path + 4) == 0);

        int r = cd_http_route_find(seg, nseg);
        for (int i = 0; i < (r < 0 ? INT32_MAX : r) && cd_http_route_pattern((size_t)i); i++)
            CHECK(!cd_http_route_match(cd_http_route_pattern((size_t)i), seg, nseg));
        struct evkeyvalq q;
        TAILQ_INIT(&q);
        if (r >= 0) {
            const char *const *pat = cd_http_route_pattern((size_t)r);
            CHECK(pat != NULL && cd_http_route_match(pat, seg, nseg));
            int n = 0;
            while (pat[n]) {
                CHECK(!strcmp(pat[n], "*") || !strcmp(pat[n], seg[n]));
                n++;
            }
            CHECK(n == nseg);
            if (!qs || evhttp_parse_query_str(qs, &q) == 0)
                route_params(pat, seg, nseg, &q);
        } else if (qs) {
            CD_IGNORE(evhttp_parse_query_str(qs, &q));
        }
        evhttp_clear_headers(&q);
    } else if (path && strncmp(path, "/v1/", 4) == 0 && strlen(path) < PATH_MAX_) {
        /* refused under /v1/: an empty segment or too many segments */
        int n = 1, empty = path[4] == '\0' || path[4] == '/' || path[strlen(path) - 1] == '/';
        for (const char *c = path + 4; *c; c++) {
            if (*c == '/') {
                n++;
                empty |= c[1] == '/';
            }
        }
        CHECK(empty || n > MAX_SEG);
    }
    if (u)
        evhttp_uri_free(u);
    free(uri);
    return 0;
}
