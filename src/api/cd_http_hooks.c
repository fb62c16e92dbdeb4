/*
 * cd_http_hooks.c - the webhook registration routes (issue 16,
 * docs/WEBHOOKS.md):
 *
 *   POST   /v1/webhooks       {url, keys, outpoints, kinds} -> 201 {id, secret, ...}
 *   GET    /v1/webhooks       every registration's status
 *   GET    /v1/webhooks/<id>  one registration's status
 *   DELETE /v1/webhooks/<id>  removes it (and its watches)
 *
 * Why a dispatcher of its own (cd_http_hooks_dispatch, called by
 * cd_http_handle before the GET-only route table): these routes take POST
 * and DELETE. All four need "Authorization: Bearer <key of api_keys>": a
 * registration makes the daemon send requests to a URL of the caller's
 * choosing, and its status shows URLs that may carry the receiver's tokens.
 * The rows and watches are written by cd_webhook_add/cd_webhook_delete
 * (sql/012_webhooks.sql) in one transaction each; the delivery process
 * (cd_http_hooks_send.c) hears of them through NOTIFY cd_webhook.
 */
#include "cd_http_hooks.h"
#include "cd_http_int.h"

#include "cd_http_req.h" /* cd_http_parse_uint */

#include "cd_escape.h"
#include "cd_log.h"
#include "cd_util.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h> /* OPENSSL_cleanse */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOOKS_ALLOW_LIST "GET, POST, OPTIONS"
#define HOOKS_ALLOW_ONE  "GET, DELETE, OPTIONS"
#define HOOKS_MAX_IDS    64 /* API keys compared (api_keys) */

int cd_http_hooks_owns_path(const char *path)
{
    return !strcmp(path, "/v1/webhooks") || !strncmp(path, "/v1/webhooks/", 13);
}

static void reply_405(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    cd_http_reply_jobj(req, 405,
                       json_pack("{s:s, s:s}", "error", "method not allowed here", "code",
                                 "method_not_allowed"));
}

/* Is the caller one of api_keys? Sends 401 and returns 0 if not. Every
 * byte of every key is compared (no early exit that times the match). */
static int authorized(struct evhttp_request *req, const cd_config *cfg)
{
    const char *keys = cfg->api_keys;
    if (!keys || !*keys) {
        cd_http_reply_error_code(req, 401, "unauthorized",
                                 "webhooks need an API key and none is configured (api_keys)");
        return 0;
    }
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        cd_http_reply_error_code(req, 401, "unauthorized",
                                 "missing 'Authorization: Bearer <api key>'");
        return 0;
    }
    const char *given = h + 7;
    size_t glen = strlen(given);
    int ok = 0, k = 0;
    for (const char *p = keys; *p && k < HOOKS_MAX_IDS; k++) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        unsigned diff = (unsigned)(n != glen);
        for (size_t i = 0; i < n; i++)
            diff |= (unsigned char)p[i] ^ (unsigned char)(i < glen ? given[i] : 0);
        ok |= n && !diff;
        p = e ? e + 1 : p + n;
    }
    if (!ok) {
        char *host = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(evhttp_request_get_connection(req), &host, &port);
        cd_log_info("webhook: a request with an unknown API key from %s",
                    cd_escape_str(host ? host : "?"));
        cd_http_reply_error_code(req, 401, "unauthorized", "unknown API key");
        return 0;
    }
    return 1;
}

/* Answers a failed cd_hook_* call; H_DB_LOST when the session broke
 * before anything was sent (the dispatcher retries on a new one). */
static int hook_failed(http_srv *s, struct evhttp_request *req, int rc, const char *why)
{
    switch (rc) {
    case CD_HOOK_EINPUT:
        cd_http_reply_error(req, 400, "%s", why);
        return H_DONE;
    case CD_HOOK_EFULL:
        cd_http_reply_error_code(req, 409, "limit_reached", "%s", why);
        return H_DONE;
    case CD_HOOK_ENOTFOUND:
        cd_http_reply_error_code(req, 404, "not_found", "%s", why);
        return H_DONE;
    default:
        if (PQstatus(s->pg) != CONNECTION_OK)
            return H_DB_LOST;
        cd_log_warn("webhook: %s", why);
        cd_http_reply_error(req, 500, "database statement failed (see the daemon's log)");
        return H_DONE;
    }
}

static int h_add(http_srv *s, struct evhttp_request *req)
{
    const char *ct =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
        cd_http_reply_error_code(req, 415, "unsupported_media_type",
                                 "Content-Type must be application/json");
        return H_DONE;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(in);
    const char *b = (const char *)evbuffer_pullup(in, -1);
    json_error_t je;
    json_t *o = json_loadb(b ? b : "", blen, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        cd_http_reply_error(req, 400, "body is not JSON: %s (line %d)", je.text, je.line);
        return H_DONE;
    }
    char why[512], secret[2 * CD_HOOK_SECRET_BYTES + 1];
    int64_t id;
    int rc = cd_hook_register(s->pg, o, &id, secret, why, sizeof(why));
    if (rc != 0) {
        json_decref(o);
        return hook_failed(s, req, rc, why);
    }
    json_t *keys = json_object_get(o, "keys"), *ops = json_object_get(o, "outpoints"),
           *kinds = json_object_get(o, "kinds");
    const char *url = json_string_value(json_object_get(o, "url"));
    cd_log_info("webhook %" PRId64 ": registered for %s (%zu keys, %zu outpoints, %zu kinds)", id,
                cd_escape_str(url), json_array_size(keys), json_array_size(ops),
                json_array_size(kinds));
    char loc[64];
    snprintf(loc, sizeof(loc), "/v1/webhooks/%" PRId64, id);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
    cd_http_reply_jobj(req, 201,
                       json_pack("{s:I, s:s, s:s, s:I, s:I, s:o}", "id", (json_int_t)id, "secret",
                                 secret, "url", url, "keys", (json_int_t)json_array_size(keys),
                                 "outpoints", (json_int_t)json_array_size(ops), "kinds",
                                 kinds ? json_incref(kinds) : json_array()));
    OPENSSL_cleanse(secret, sizeof(secret));
    json_decref(o);
    return H_DONE;
}

static int h_status(http_srv *s, struct evhttp_request *req, const char *id)
{
    char why[512];
    json_t *out;
    int rc = cd_hook_status(s->pg, id ? strtoll(id, NULL, 10) : 0, &out, why, sizeof(why));
    if (rc != 0)
        return hook_failed(s, req, rc, why);
    cd_http_reply_jobj(req, 200, id ? out : json_pack("{s:o}", "webhooks", out));
    return H_DONE;
}

static int h_delete(http_srv *s, struct evhttp_request *req, const char *id)
{
    char why[512];
    int64_t v = strtoll(id, NULL, 10);
    int rc = cd_hook_delete(s->pg, v, why, sizeof(why));
    if (rc != 0)
        return hook_failed(s, req, rc, why);
    cd_log_info("webhook %" PRId64 ": deleted", v);
    cd_http_reply_jobj(req, 200, json_pack("{s:I, s:b}", "id", (json_int_t)v, "deleted", 1));
    return H_DONE;
}

/* One attempt at the request; H_DB_LOST when the session broke first. */
static int route(http_srv *s, struct evhttp_request *req, const char *id)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!id) {
        if (cmd == EVHTTP_REQ_POST)
            return h_add(s, req);
        return h_status(s, req, NULL);
    }
    if (cmd == EVHTTP_REQ_DELETE)
        return h_delete(s, req, id);
    return h_status(s, req, id);
}

int cd_http_hooks_dispatch(http_srv *s, struct evhttp_request *req)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    if (!path || !cd_http_hooks_owns_path(path))
        return 0;
    const char *id = path[12] == '/' ? path + 13 : NULL;
    uint64_t idv;
    if (id && (cd_http_parse_uint(id, INT64_MAX, &idv) != 0 || idv == 0)) {
        cd_http_reply_error_code(req, 404, "not_found",
                                 "a webhook id is a positive decimal number");
        return 1;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd == EVHTTP_REQ_OPTIONS) {
        cd_http_preflight(req, cd_http_cors_headers(s, req));
        return 1;
    }
    int ok = id ? (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_DELETE)
                : (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_POST);
    if (!ok) {
        reply_405(req, id ? HOOKS_ALLOW_ONE : HOOKS_ALLOW_LIST);
        return 1;
    }
    const char *q = evhttp_uri_get_query(u);
    if (q && *q) {
        cd_http_reply_error_code(req, 400, "unknown_parameter",
                                 "the webhook routes take no query parameters");
        return 1;
    }
    if (!authorized(req, s->cfg))
        return 1;
    if (!s->cfg->index) {
        cd_http_reply_error_code(req, 503, "index_off",
                                 "the index is off (index = off): webhooks need the database");
        return 1;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!cd_http_srv_pg(s))
            break;
        if (route(s, req, id) == H_DONE)
            return 1;
        s->pg_next_try = 0; /* the session broke before anything was sent: reconnect now */
    }
    cd_http_reply_error_code(req, 503, "db_unavailable", "database unavailable");
    return 1;
}
