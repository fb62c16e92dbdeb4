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
#include <openssl/rand.h>
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

/* "{a,b,c}": a PostgreSQL array literal of words made only of hex digits
 * and digits (no quoting needed). Returns malloc'd text. */
static char *pg_array(json_t *arr, const char *field)
{
    size_t n = json_array_size(arr), cap = 3, i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        json_t *s = field ? json_object_get(v, field) : v;
        cap += (json_is_string(s) ? json_string_length(s) : 24) + 1;
    }
    char *out = cd_xmalloc(cap), *p = out;
    *p++ = '{';
    json_array_foreach(arr, i, v) {
        json_t *s = field ? json_object_get(v, field) : v;
        if (i)
            *p++ = ',';
        if (json_is_string(s))
            p += sprintf(p, "%s", json_string_value(s));
        else
            p += sprintf(p, "%" JSON_INTEGER_FORMAT, json_integer_value(s));
    }
    (void)n;
    *p++ = '}';
    *p = '\0';
    return out;
}

static int is_hex64(json_t *s)
{
    if (!json_is_string(s) || json_string_length(s) != 64)
        return 0;
    const char *p = json_string_value(s);
    for (int i = 0; i < 64; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f') ||
              (p[i] >= 'A' && p[i] <= 'F')))
            return 0;
    return 1;
}

/* Checks a registration body. Returns 0, or -1 with the reason in why. */
static int check_body(json_t *o, char *why, size_t wl)
{
    const char *k;
    json_t *v;
    if (!json_is_object(o)) {
        snprintf(why, wl, "expected a JSON object {url, keys, outpoints, kinds}");
        return -1;
    }
    json_object_foreach(o, k, v) {
        if (strcmp(k, "url") && strcmp(k, "keys") && strcmp(k, "outpoints") && strcmp(k, "kinds")) {
            snprintf(why, wl, "unknown field '%.64s': the fields are url, keys, outpoints, kinds",
                     k);
            return -1;
        }
    }
    json_t *url = json_object_get(o, "url");
    const char *uwhy;
    if (!json_is_string(url)) {
        snprintf(why, wl, "url: expected a string (http://host[:port]/path)");
        return -1;
    }
    if (strlen(json_string_value(url)) != json_string_length(url) ||
        cd_hook_url_check(json_string_value(url), &uwhy) != 0) {
        snprintf(why, wl, "url: %s", strlen(json_string_value(url)) != json_string_length(url)
                                          ? "contains a NUL byte"
                                          : uwhy);
        return -1;
    }
    json_t *keys = json_object_get(o, "keys"), *ops = json_object_get(o, "outpoints"),
           *kinds = json_object_get(o, "kinds");
    size_t i;
    if (keys && !json_is_array(keys)) {
        snprintf(why, wl, "keys: expected an array of 64-hex-digit pushdata keys");
        return -1;
    }
    if (json_array_size(keys) > CD_HOOK_MAX_KEYS) {
        snprintf(why, wl, "keys: at most %u per registration", CD_HOOK_MAX_KEYS);
        return -1;
    }
    json_array_foreach(keys, i, v) {
        if (!is_hex64(v)) {
            snprintf(why, wl,
                     "keys[%zu]: expected 64 hex digits (a pushdata key: sha256 of the pushed "
                     "bytes, as in GET /v1/pushdata/<key>/history)",
                     i);
            return -1;
        }
    }
    if (ops && !json_is_array(ops)) {
        snprintf(why, wl, "outpoints: expected an array of {\"txid\": <hex>, \"vout\": <n>}");
        return -1;
    }
    if (json_array_size(ops) > CD_HOOK_MAX_OUTPOINTS) {
        snprintf(why, wl, "outpoints: at most %u per registration", CD_HOOK_MAX_OUTPOINTS);
        return -1;
    }
    json_array_foreach(ops, i, v) {
        json_t *t = json_object_get(v, "txid"), *n = json_object_get(v, "vout");
        if (!json_is_object(v) || json_object_size(v) != 2 || !is_hex64(t) ||
            !json_is_integer(n) || json_integer_value(n) < 0 ||
            json_integer_value(n) > INT32_MAX) {
            snprintf(why, wl,
                     "outpoints[%zu]: expected {\"txid\": <64 hex digits>, \"vout\": 0..%d}", i,
                     INT32_MAX);
            return -1;
        }
    }
    if (kinds && !json_is_array(kinds)) {
        snprintf(why, wl, "kinds: expected an array of tip, reorg, evict");
        return -1;
    }
    json_array_foreach(kinds, i, v) {
        const char *s = json_string_value(v);
        if (s && (!strcmp(s, "key") || !strcmp(s, "spend"))) {
            snprintf(why, wl, "kinds[%zu]: '%s' events come from %s: list them there", i, s,
                     !strcmp(s, "key") ? "keys" : "outpoints");
            return -1;
        }
        if (!s || (strcmp(s, "tip") && strcmp(s, "reorg") && strcmp(s, "evict"))) {
            snprintf(why, wl, "kinds[%zu]: expected one of tip, reorg, evict", i);
            return -1;
        }
    }
    if (!json_array_size(keys) && !json_array_size(ops) && !json_array_size(kinds)) {
        snprintf(why, wl, "nothing to deliver: give keys, outpoints or kinds");
        return -1;
    }
    return 0;
}

/* Wakes the delivery process after a registration committed (it reloads
 * every 5 s anyway: a failure here only delays). */
static void notify_sender(http_srv *s)
{
    PQclear(PQexec(s->pg, "NOTIFY cd_webhook"));
}

/* Sends the PostgreSQL failure of a statement; H_DB_LOST when the session
 * broke (the dispatcher retries on a new one). */
static int db_failed(http_srv *s, struct evhttp_request *req, PGresult *r, const char *what)
{
    const char *msg = PQresultErrorMessage(r);
    int lost = PQstatus(s->pg) != CONNECTION_OK;
    if (!lost)
        cd_log_warn("webhook: %s: %s", what, msg);
    PQclear(r);
    if (lost)
        return H_DB_LOST;
    cd_http_reply_error(req, 500, "%s failed (see the daemon's log)", what);
    return H_DONE;
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
    char why[300];
    if (!o) {
        cd_http_reply_error(req, 400, "body is not JSON: %s (line %d)", je.text, je.line);
        return H_DONE;
    }
    if (check_body(o, why, sizeof(why)) != 0) {
        json_decref(o);
        cd_http_reply_error(req, 400, "%s", why);
        return H_DONE;
    }
    char maxs[16];
    snprintf(maxs, sizeof(maxs), "%d", CD_HOOK_MAX_REGISTRATIONS);
    const char *mv[1] = {maxs};
    PGresult *c = PQexecParams(s->pg, "SELECT count(*) >= $1::bigint FROM webhooks", 1, NULL,
                               mv, NULL, NULL, 0);
    if (PQresultStatus(c) != PGRES_TUPLES_OK) {
        json_decref(o);
        return db_failed(s, req, c, "counting the webhooks");
    }
    int full = PQgetvalue(c, 0, 0)[0] == 't';
    PQclear(c);
    if (full) {
        json_decref(o);
        cd_http_reply_error_code(req, 409, "limit_reached",
                                 "there are %d webhook registrations already (the most there "
                                 "can be): delete some first",
                                 CD_HOOK_MAX_REGISTRATIONS);
        return H_DONE;
    }
    uint8_t raw[CD_HOOK_SECRET_BYTES];
    char secret[2 * CD_HOOK_SECRET_BYTES + 1];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        json_decref(o);
        cd_http_reply_error(req, 500, "no random bytes for the secret (OpenSSL)");
        return H_DONE;
    }
    cd_hex_encode(secret, raw, sizeof(raw));
    json_t *keys = json_object_get(o, "keys"), *ops = json_object_get(o, "outpoints"),
           *kinds = json_object_get(o, "kinds");
    json_t *empty = json_array();
    char *a_kinds = pg_array(kinds ? kinds : empty, NULL);
    char *a_keys = pg_array(keys ? keys : empty, NULL);
    char *a_txid = pg_array(ops ? ops : empty, "txid");
    char *a_vout = pg_array(ops ? ops : empty, "vout");
    json_decref(empty);
    const char *url = json_string_value(json_object_get(o, "url"));
    const char *v[6] = {url, secret, a_kinds, a_keys, a_txid, a_vout};
    PGresult *r = PQexecParams(
        s->pg,
        "SELECT cd_webhook_add($1, $2, $3::text[], "
        " ARRAY(SELECT decode(x, 'hex') FROM unnest($4::text[]) x), "
        " ARRAY(SELECT cd_txid(x) FROM unnest($5::text[]) WITH ORDINALITY t (x, n) ORDER BY n), "
        " $6::integer[])",
        6, NULL, v, NULL, NULL, 0);
    free(a_kinds);
    free(a_keys);
    free(a_txid);
    free(a_vout);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        json_decref(o);
        OPENSSL_cleanse(secret, sizeof(secret));
        return db_failed(s, req, r, "registering the webhook");
    }
    long long id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    notify_sender(s);
    cd_log_info("webhook %lld: registered for %s (%zu keys, %zu outpoints, %zu kinds)", id,
                cd_escape_str(url), json_array_size(keys), json_array_size(ops),
                json_array_size(kinds));
    char loc[64];
    snprintf(loc, sizeof(loc), "/v1/webhooks/%lld", id);
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

#define TS(col)                                                                                  \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The status of every registration (id NULL) or of one. */
static const char STATUS_SQL[] =
    "SELECT h.id, h.url, array_to_json(h.kinds)::text, " TS("h.created_at") ", h.scan_id, "
    " h.delivered_id, h.delivered, h.attempts, h.failures, h.last_error, " TS("h.last_attempt")
    ", " TS("h.next_attempt") ", " TS("h.failing_since") ", h.failing, h.lost, "
    " (SELECT coalesce(json_agg(encode(k.push_hash, 'hex') ORDER BY k.push_hash), '[]')::text "
    "  FROM webhook_keys k WHERE k.hook_id = h.id), "
    " (SELECT coalesce(json_agg(json_build_object('txid', cd_txid_hex(o.prev_hash), "
    "   'vout', o.prev_idx) ORDER BY o.prev_hash, o.prev_idx), '[]')::text "
    "  FROM webhook_outpoints o WHERE o.hook_id = h.id), "
    " (SELECT max(id) FROM events) "
    "FROM webhooks h WHERE $1::bigint IS NULL OR h.id = $1::bigint ORDER BY h.id";

static json_t *jnum_or_null(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null()
                                    : json_integer(strtoll(PQgetvalue(r, row, col), NULL, 10));
}

static json_t *jstr_or_null(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

static json_t *status_row(PGresult *r, int i)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", jnum_or_null(r, i, 0));
    json_object_set_new(o, "url", jstr_or_null(r, i, 1));
    json_object_set_new(o, "kinds", json_loads(PQgetvalue(r, i, 2), 0, NULL));
    json_object_set_new(o, "keys", json_loads(PQgetvalue(r, i, 15), 0, NULL));
    json_object_set_new(o, "outpoints", json_loads(PQgetvalue(r, i, 16), 0, NULL));
    json_object_set_new(o, "created", jstr_or_null(r, i, 3));
    json_object_set_new(o, "cursor", jnum_or_null(r, i, 4));
    json_object_set_new(o, "last_delivered_event", jnum_or_null(r, i, 5));
    json_object_set_new(o, "latest_event", jnum_or_null(r, i, 17));
    json_object_set_new(o, "delivered", jnum_or_null(r, i, 6));
    json_object_set_new(o, "failing", json_boolean(PQgetvalue(r, i, 13)[0] == 't'));
    json_object_set_new(o, "attempts", jnum_or_null(r, i, 7));
    json_object_set_new(o, "failures", jnum_or_null(r, i, 8));
    json_object_set_new(o, "last_error", jstr_or_null(r, i, 9));
    json_object_set_new(o, "last_attempt", jstr_or_null(r, i, 10));
    json_object_set_new(o, "next_attempt", jstr_or_null(r, i, 11));
    json_object_set_new(o, "failing_since", jstr_or_null(r, i, 12));
    json_object_set_new(o, "lost", jnum_or_null(r, i, 14));
    return o;
}

static int h_status(http_srv *s, struct evhttp_request *req, const char *id)
{
    const char *v[1] = {id};
    PGresult *r = PQexecParams(s->pg, STATUS_SQL, 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_failed(s, req, r, "reading the webhooks");
    int n = PQntuples(r);
    if (id && n == 0) {
        PQclear(r);
        cd_http_reply_error_code(req, 404, "not_found", "no webhook %s", id);
        return H_DONE;
    }
    json_t *out;
    if (id) {
        out = status_row(r, 0);
    } else {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, status_row(r, i));
        out = json_pack("{s:o}", "webhooks", arr);
    }
    PQclear(r);
    cd_http_reply_jobj(req, 200, out);
    return H_DONE;
}

static int h_delete(http_srv *s, struct evhttp_request *req, const char *id)
{
    const char *v[1] = {id};
    PGresult *r = PQexecParams(s->pg, "SELECT cd_webhook_delete($1::bigint)", 1, NULL, v, NULL,
                               NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_failed(s, req, r, "deleting the webhook");
    int found = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (found)
        notify_sender(s);
    if (!found) {
        cd_http_reply_error_code(req, 404, "not_found", "no webhook %s", id);
        return H_DONE;
    }
    cd_log_info("webhook %s: deleted", id);
    cd_http_reply_jobj(req, 200, json_pack("{s:I, s:b}", "id", (json_int_t)strtoll(id, NULL, 10),
                                           "deleted", 1));
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
    if (id && cd_http_parse_uint(id, INT64_MAX, &idv) != 0) {
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
