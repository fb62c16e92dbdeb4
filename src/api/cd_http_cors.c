/*
 * cd_http_cors.c - CORS for the HTTP API (http_cors_origins): the response
 * headers for an allowed Origin and the answer to an OPTIONS preflight
 * (https://fetch.spec.whatwg.org/#http-cors-protocol). Why: browser apps
 * (wallets, explorers) read the API from their own origin; without these
 * headers the browser withholds every answer. Called by cd_http_handle
 * (cd_http_routes.c) for every request.
 */
#include "cd_http_int.h"

#include <event2/http.h>
#include <string.h>

/* 1 if origin is one of http_cors_origins (exact, case-sensitive as the
 * Fetch standard compares origins) or the list holds "*". */
static int origin_allowed(const char *list, const char *origin)
{
    size_t n = strlen(origin);
    for (const char *p = list; *p;) {
        p += strspn(p, " ,");
        size_t w = strcspn(p, " ,");
        if (w == 1 && *p == '*')
            return 1;
        if (w == n && w > 0 && memcmp(p, origin, n) == 0)
            return 1;
        p += w;
    }
    return 0;
}

/* Adds the CORS response headers when the request's Origin is allowed
 * (https://fetch.spec.whatwg.org/#http-cors-protocol). Returns 1 if it is
 * (a preflight then gets the Allow-Methods/Headers), else 0: no CORS header
 * at all, so the browser keeps the answer from the page. */
int cd_http_cors_headers(http_srv *s, struct evhttp_request *req)
{
    const char *list = s->cfg->http_cors_origins;
    const char *origin = evhttp_find_header(evhttp_request_get_input_headers(req), "Origin");
    if (!list || !list[0] || !origin || !origin_allowed(list, origin))
        return 0;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    /* the origin itself, not "*": one rule for both kinds of list, and
     * caches keyed on Origin (Vary) stay right */
    evhttp_add_header(h, "Access-Control-Allow-Origin", origin);
    evhttp_add_header(h, "Vary", "Origin");
    evhttp_add_header(h, "Access-Control-Expose-Headers", "Content-Length, Retry-After");
    return 1;
}

/* OPTIONS on a known route: 204 with Allow, plus the preflight answer for
 * an allowed origin. */
void cd_http_preflight(struct evhttp_request *req, int cors)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Allow", CD_HTTP_ALLOW);
    if (cors) {
        evhttp_add_header(h, "Access-Control-Allow-Methods", CD_HTTP_ALLOW);
        /* the request headers a page may set: Accept picks /v1/tx's format */
        evhttp_add_header(h, "Access-Control-Allow-Headers", "Accept, Accept-Language, "
                                                             "Content-Language, Range");
        evhttp_add_header(h, "Access-Control-Max-Age", "600");
    }
    evhttp_send_reply(req, 204, "No Content", NULL);
}
