/*
 * cd_http_cdb_limits.c - the request-body cap of the HTTP servers, answered
 * in the route's own error format (issue 16, bad input).
 *
 * Why it exists: evhttp refuses a body over evhttp_set_max_body_size from
 * its Content-Length before reading it (good: nothing is buffered), but
 * with its own HTML page, which neither a /v1 client (JSON errors) nor a
 * ConduitDB client (aiohttp's reason + "<code>: <reason>") can read, and
 * without calling the server's request callback, so the refusal was not
 * logged either. libevent 2.1 has no hook for that page.
 *
 * How: a callback on each connection's input buffer runs when bytes arrive,
 * before evhttp parses them. When the buffer begins with a complete request
 * head (method, ..., blank line, within the header limit) whose
 * Content-Length is over HTTP_BODY_MAX, it rewrites the head: Content-Length
 * 0 and a marker header with the announced length. evhttp then hands an
 * empty-bodied request to the route callback, which answers 413 in the
 * route's format with "Connection: close" (cd_http_body_refused); the
 * announced body is never read or buffered, and the connection closes
 * after the reply. Cost per arrival: a look at the first bytes; a head is
 * searched only when the buffer starts like one (at most 16 KiB).
 *
 * Not covered: a chunked body (no length up front) over the cap is still
 * cut by evhttp while it is read (its own 413 page, memory bounded by the
 * same cap). A client sending the marker header itself only gets its own
 * request refused.
 */
#include "cd_http_cdb.h"

#include "cd_escape.h"
#include "cd_log.h"
#include "cd_util.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MARKER     "X-Conduitd-Body-Too-Large"
#define HEAD_MAX   16384 /* evhttp_set_max_headers_size of the servers */
#define METHOD_MAX 7     /* the longest method evhttp knows: OPTIONS, CONNECT */

/* The head [0, hl) with its Content-Length replaced by 0 and the marker
 * added; NULL when it needs no change (no or a small Content-Length, or
 * already marked). */
static char *rewrite(const char *head, size_t hl, size_t *outlen)
{
    uint64_t announced = 0;
    int big = 0;
    for (const char *p = strstr(head, "\r\n"); p && p + 2 < head + hl; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (!strncasecmp(line, MARKER ":", sizeof(MARKER)))
            return NULL; /* ours, after the rewrite (the callback runs again) */
        if (!strncasecmp(line, "Content-Length:", 15)) {
            const char *v = line + 15;
            while (*v == ' ' || *v == '\t')
                v++;
            char *end;
            unsigned long long n = strtoull(v, &end, 10);
            if (end != v && n > HTTP_BODY_MAX) {
                big = 1;
                announced = n;
            }
        }
    }
    if (!big)
        return NULL;
    char *out = cd_xmalloc(hl + 96);
    size_t o = 0;
    const char *first = strstr(head, "\r\n");
    memcpy(out, head, (size_t)(first - head) + 2);
    o = (size_t)(first - head) + 2;
    for (const char *line = first + 2; line < head + hl - 2;) {
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            break;
        if (strncasecmp(line, "Content-Length:", 15) != 0) {
            memcpy(out + o, line, (size_t)(eol - line) + 2);
            o += (size_t)(eol - line) + 2;
        }
        line = eol + 2;
    }
    o += (size_t)snprintf(out + o, 96, "Content-Length: 0\r\n" MARKER ": %" PRIu64 "\r\n\r\n",
                          announced);
    *outlen = o;
    return out;
}

static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    (void)arg;
    if (info->n_added == 0)
        return;
    size_t len = evbuffer_get_length(in);
    char first[METHOD_MAX + 1];
    size_t k = len < sizeof(first) ? len : sizeof(first);
    evbuffer_copyout(in, first, k);
    size_t i = 0;
    while (i < k && isupper((unsigned char)first[i]))
        i++;
    /* a request head starts with a method and a space; anything else is a
     * body (or a websocket frame) being read: not ours to look at */
    if (i == 0 || i == k || first[i] != ' ')
        return;
    struct evbuffer_ptr end;
    if (evbuffer_ptr_set(in, &end, len < HEAD_MAX ? len : HEAD_MAX, EVBUFFER_PTR_SET) != 0)
        return;
    struct evbuffer_ptr at = evbuffer_search_range(in, "\r\n\r\n", 4, NULL, &end);
    if (at.pos < 0)
        return; /* not complete yet (or over the header limit: evhttp's 400) */
    size_t hl = (size_t)at.pos + 4;
    char *head = cd_xmalloc(hl + 1);
    evbuffer_copyout(in, head, hl);
    head[hl] = '\0';
    size_t nl = 0;
    char *nh = memchr(head, '\0', hl) ? NULL : rewrite(head, hl, &nl);
    free(head);
    if (!nh)
        return;
    /* both calls run this callback again: drained (nothing added), then
     * the marked head (returns at the marker) */
    if (evbuffer_drain(in, hl) == 0)
        evbuffer_prepend(in, nh, nl);
    free(nh);
}

void cd_http_body_cap(struct bufferevent *bev)
{
    if (bev)
        evbuffer_add_cb(bufferevent_get_input(bev), on_input, NULL);
}

int cd_http_body_refused(struct evhttp_request *req)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), MARKER);
    if (!v)
        return 0;
    char n[32];
    cd_escape(n, sizeof(n), v, strlen(v));
    /* the body was not read: the connection cannot carry another request */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    if (path && (!strncmp(path, "/api/", 5) || !strcmp(path, "/")))
        cd_http_cdb_error(req, 413, "request body of %s bytes is too large (at most %d)", n,
                          HTTP_BODY_MAX);
    else
        cd_http_reply_error_code(req, 413, "too_large",
                                 "request body of %s bytes is too large (at most %d)", n,
                                 HTTP_BODY_MAX);
    return 1;
}
