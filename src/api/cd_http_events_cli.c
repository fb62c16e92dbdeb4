/*
 * cd_http_events_cli.c - the clients of the push-notification streams:
 * GET /v1/events (Server-Sent Events) and GET /v1/ws (a websocket carrying
 * JSON text messages), their subscriptions (kinds, keys, outpoints; the
 * durable part in PostgreSQL, sql/010_event_subs.sql), resume points, and
 * cutting off a client that does not read. The hub that feeds them is
 * cd_http_events.c; the protocol is docs/EVENTS.md.
 */
#include "cd_http_events_int.h"

#include "cd_escape.h"
#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* What a client asked for (SSE: query parameters; ws: a message). */
typedef struct ev_ask {
    unsigned kinds; /* 0: not given */
    uint8_t (*keys)[32];
    size_t nkeys;
    uint8_t (*ops)[36];
    size_t nops;
    const char *sub;
    int has_since;
    int64_t since;
} ev_ask;

static void ask_free(ev_ask *a)
{
    free(a->keys);
    free(a->ops);
}

static int cmp32(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static int cmp36(const void *a, const void *b)
{
    return memcmp(a, b, 36);
}

/* ---- parsing ---- */

static int parse_key(const char *s, size_t n, uint8_t out[32])
{
    char hex[65];
    if (n != 64)
        return -1;
    memcpy(hex, s, 64);
    hex[64] = 0;
    return cd_hex_decode(out, 32, hex);
}

/* "<txid>:<vout>" → the txid's display bytes + vout LE (as ev_event.op). */
static int parse_outpoint(const char *s, size_t n, uint8_t out[36])
{
    if (n < 66 || n > 75 || s[64] != ':')
        return -1;
    char hex[65];
    memcpy(hex, s, 64);
    hex[64] = 0;
    if (cd_hex_decode(out, 32, hex) != 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = 65; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > 0xffffffffu || (n > 66 && s[65] == '0'))
        return -1;
    cd_put_le32(out + 32, (uint32_t)v);
    return 0;
}

static int parse_since(const char *s, int64_t *out)
{
    if (!s || !*s || strlen(s) > 18)
        return -1;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

static int sub_ok(const char *s)
{
    if (strlen(s) != 32)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

/* Appends item i of a list (comma string or JSON array) to the ask.
 * Returns 0, or -1 with *err set. */
static int ask_add_key(ev_ask *a, const char *s, size_t n, size_t max, const char **err)
{
    if (a->nkeys + a->nops >= max) {
        *err = "too many keys and outpoints for one stream (events_max_keys)";
        return -1;
    }
    if (!a->keys)
        a->keys = cd_xmalloc(max * 32);
    if (parse_key(s, n, a->keys[a->nkeys]) != 0) {
        *err = "bad key: 64 hex digits expected (sha256 of the pushdata)";
        return -1;
    }
    a->nkeys++;
    return 0;
}

static int ask_add_op(ev_ask *a, const char *s, size_t n, size_t max, const char **err)
{
    if (a->nkeys + a->nops >= max) {
        *err = "too many keys and outpoints for one stream (events_max_keys)";
        return -1;
    }
    if (!a->ops)
        a->ops = cd_xmalloc(max * 36);
    if (parse_outpoint(s, n, a->ops[a->nops]) != 0) {
        *err = "bad outpoint: <txid>:<vout> expected";
        return -1;
    }
    a->nops++;
    return 0;
}

static int ask_add_kind(ev_ask *a, const char *s, size_t n, const char **err)
{
    unsigned k = ev_kind_of(s, n);
    if (!k) {
        *err = "unknown kind: tip, reorg, key, spend or evict expected";
        return -1;
    }
    a->kinds |= k;
    return 0;
}

/* Splits a comma-separated parameter. Returns 0 or -1 (*err set). */
static int split_list(const char *v, int what, ev_ask *a, size_t max, const char **err)
{
    if (!v)
        return 0;
    while (*v) {
        size_t n = strcspn(v, ",");
        int rc = n == 0      ? (*err = "empty list item", -1)
                 : what == 0 ? ask_add_kind(a, v, n, err)
                 : what == 1 ? ask_add_key(a, v, n, max, err)
                             : ask_add_op(a, v, n, max, err);
        if (rc != 0)
            return -1;
        v += n;
        if (*v == ',')
            v++;
    }
    return 0;
}

static int json_list(json_t *arr, int what, ev_ask *a, size_t max, const char **err)
{
    if (!arr)
        return 0;
    if (!json_is_array(arr)) {
        *err = "kinds, keys and outpoints must be arrays of strings";
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);
        if (!s) {
            *err = "kinds, keys and outpoints must be arrays of strings";
            return -1;
        }
        size_t n = json_string_length(v);
        int rc = what == 0   ? ask_add_kind(a, s, n, err)
                 : what == 1 ? ask_add_key(a, s, n, max, err)
                             : ask_add_op(a, s, n, max, err);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- subscriptions in PostgreSQL ---- */

/* Sorts c's keys and outpoints for bsearch (ev_match); an empty set may
 * have no array at all. */
static void sort_sets(ev_client *c)
{
    if (c->nkeys)
        qsort(c->keys, c->nkeys, 32, cmp32);
    if (c->nops)
        qsort(c->ops, c->nops, 36, cmp36);
}

/* '{a,b,...}' of the keys (hex) or outpoints (txid:vout). */
static char *pg_array(uint8_t (*items)[36], size_t n, int ops, uint8_t (*keys)[32])
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        char hex[65];
        if (ops) {
            cd_hex_encode(hex, items[i], 32);
            evbuffer_add_printf(b, "%s%s:%u", i ? "," : "", hex, cd_le32(items[i] + 32));
        } else {
            cd_hex_encode(hex, keys[i], 32);
            evbuffer_add_printf(b, "%s%s", i ? "," : "", hex);
        }
    }
    evbuffer_add(b, "}", 2);
    size_t len = evbuffer_get_length(b);
    char *s = cd_xmalloc(len);
    evbuffer_remove(b, s, len);
    evbuffer_free(b);
    return s;
}

/* Loads a stored subscription's keys and outpoints into c. Returns 0, 1 if
 * it does not exist (expired), -1 on a database error. */
static int sub_load(ev_client *c, const char *sub)
{
    ev_hub *h = c->hub;
    const char *p[1] = {sub};
    PGresult *r = ev_sql(h, "SELECT 1 FROM event_subs WHERE id = $1", 1, p, PGRES_TUPLES_OK);
    if (!r)
        return -1;
    int found = PQntuples(r) == 1;
    PQclear(r);
    if (!found)
        return 1;
    size_t max = h->s->cfg->events_max_keys;
    r = ev_sql(h, "SELECT encode(push_hash, 'hex') FROM event_sub_keys WHERE sub = $1", 1, p,
               PGRES_TUPLES_OK);
    if (!r)
        return -1;
    if (PQntuples(r))
        c->keys = cd_xrealloc(c->keys, (size_t)PQntuples(r) * 32);
    for (int i = 0; i < PQntuples(r) && c->nkeys < max; i++)
        if (cd_hex_decode(c->keys[c->nkeys], 32, PQgetvalue(r, i, 0)) == 0)
            c->nkeys++;
    PQclear(r);
    r = ev_sql(h,
               "SELECT cd_txid_hex(prev_hash) || ':' || prev_idx FROM event_sub_outpoints "
               "WHERE sub = $1",
               1, p, PGRES_TUPLES_OK);
    if (!r)
        return -1;
    if (PQntuples(r))
        c->ops = cd_xrealloc(c->ops, (size_t)PQntuples(r) * 36);
    for (int i = 0; i < PQntuples(r) && c->nkeys + c->nops < max; i++) {
        const char *v = PQgetvalue(r, i, 0);
        if (parse_outpoint(v, strlen(v), c->ops[c->nops]) == 0)
            c->nops++;
    }
    PQclear(r);
    snprintf(c->sub, sizeof(c->sub), "%s", sub);
    sort_sets(c);
    return 0;
}

/* Adds (add = 1) or removes the ask's keys and outpoints to/from c and its
 * stored subscription (made if c has none). Returns 0 or -1 (*err). */
static int sub_change(ev_client *c, ev_ask *a, int add, const char **err)
{
    ev_hub *h = c->hub;
    /* only what changes */
    size_t nk = 0, no = 0;
    for (size_t i = 0; i < a->nkeys; i++) {
        int have = c->nkeys && bsearch(a->keys[i], c->keys, c->nkeys, 32, cmp32);
        int dup = 0;
        for (size_t j = 0; j < nk && !dup; j++)
            dup = !memcmp(a->keys[j], a->keys[i], 32);
        if (have == add || dup)
            continue;
        memmove(a->keys[nk++], a->keys[i], 32);
    }
    for (size_t i = 0; i < a->nops; i++) {
        int have = c->nops && bsearch(a->ops[i], c->ops, c->nops, 36, cmp36);
        int dup = 0;
        for (size_t j = 0; j < no && !dup; j++)
            dup = !memcmp(a->ops[j], a->ops[i], 36);
        if (have == add || dup)
            continue;
        memmove(a->ops[no++], a->ops[i], 36);
    }
    a->nkeys = nk;
    a->nops = no;
    if (!nk && !no)
        return 0;
    if (add && c->nkeys + c->nops + nk + no > h->s->cfg->events_max_keys) {
        *err = "too many keys and outpoints for one stream (events_max_keys)";
        return -1;
    }
    if (!c->sub[0]) {
        uint8_t rnd[16];
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            *err = "cannot make a subscription id";
            return -1;
        }
        cd_hex_encode(c->sub, rnd, 16);
    }
    char *ks = pg_array(NULL, nk, 0, a->keys);
    char *os = pg_array(a->ops, no, 1, NULL);
    const char *p[3] = {c->sub, ks, os};
    PGresult *r = ev_sql(h,
                         add ? "SELECT cd_event_sub_add($1, $2::text[], $3::text[])"
                             : "SELECT cd_event_sub_del($1, $2::text[], $3::text[])",
                         3, p, PGRES_TUPLES_OK);
    free(ks);
    free(os);
    if (!r) {
        *err = "database unavailable: subscription not stored";
        return -1;
    }
    PQclear(r);
    if (add) {
        if (nk) {
            c->keys = cd_xrealloc(c->keys, (c->nkeys + nk) * 32);
            memcpy(c->keys + c->nkeys, a->keys, nk * 32);
            c->nkeys += nk;
        }
        if (no) {
            c->ops = cd_xrealloc(c->ops, (c->nops + no) * 36);
            memcpy(c->ops + c->nops, a->ops, no * 36);
            c->nops += no;
        }
    } else {
        size_t w = 0;
        for (size_t i = 0; i < c->nkeys; i++) {
            int gone = 0;
            for (size_t j = 0; j < nk && !gone; j++)
                gone = !memcmp(a->keys[j], c->keys[i], 32);
            if (!gone)
                memmove(c->keys[w++], c->keys[i], 32);
        }
        c->nkeys = w;
        w = 0;
        for (size_t i = 0; i < c->nops; i++) {
            int gone = 0;
            for (size_t j = 0; j < no && !gone; j++)
                gone = !memcmp(a->ops[j], c->ops[i], 36);
            if (!gone)
                memmove(c->ops[w++], c->ops[i], 36);
        }
        c->nops = w;
    }
    sort_sets(c);
    return 0;
}

/* ---- clients ---- */

static ev_client *client_new(ev_hub *h)
{
    ev_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->hub = h;
    c->keys = NULL;
    c->ops = NULL;
    c->last_sent = cd_now_s();
    TAILQ_INSERT_TAIL(&h->clients, c, link);
    h->nclients++;
    return c;
}

static void client_free(ev_client *c)
{
    ev_hub *h = c->hub;
    if (c->sub[0] && h->pg) { /* its idle time starts now */
        const char *p[1] = {c->sub};
        PGresult *r = ev_sql(h, "UPDATE event_subs SET seen_at = now() WHERE id = $1", 1, p,
                             PGRES_COMMAND_OK);
        PQclear(r);
    }
    TAILQ_REMOVE(&h->clients, c, link);
    h->nclients--;
    free(c->keys);
    free(c->ops);
    free(c);
}

/* Applies an ask: the stored subscription to reattach, keys and outpoints to
 * add, kinds, the resume point. Returns 0, or -1 with *err and *code. */
static int client_apply(ev_client *c, ev_ask *a, const char **err, const char **code)
{
    ev_hub *h = c->hub;
    *code = "bad_request";
    if (a->sub) {
        if (!sub_ok(a->sub)) {
            *err = "bad subscription id: 32 hex digits expected";
            return -1;
        }
        if (c->sub[0] && strcmp(c->sub, a->sub) != 0) {
            *err = "this stream has another subscription already";
            return -1;
        }
        if (!c->sub[0]) {
            int rc = sub_load(c, a->sub);
            if (rc != 0) {
                *code = rc > 0 ? "subscription_unknown" : "db_unavailable";
                *err = rc > 0 ? "unknown or expired subscription: subscribe again and re-read "
                                "the state of its keys"
                              : "database unavailable";
                return -1;
            }
        }
    }
    if (sub_change(c, a, 1, err) != 0) {
        *code = "bad_request";
        return -1;
    }
    if (a->kinds)
        c->kinds = a->kinds;
    else if (!c->started)
        c->kinds = EV_ALL;
    if (!c->started) {
        if (ev_hub_fetch(h) != 0) {
            *code = "db_unavailable";
            *err = "database unavailable";
            return -1;
        }
        c->pos = h->last_id;
        if (a->has_since) {
            int rc = ev_resume_check(h, a->since, err);
            if (rc != 0) {
                *code = rc < 0    ? "db_unavailable"
                        : rc == 1 ? "resume_unavailable"
                                  : "resume_unknown";
                if (rc < 0)
                    *err = "database unavailable";
                return -1;
            }
            c->pos = a->since;
        }
    }
    return 0;
}

/* The "subscribed" message. */
static char *subscribed_json(const ev_client *c)
{
    json_t *kinds = json_array();
    for (unsigned i = 0; i < 5; i++)
        if (c->kinds & (1u << i))
            json_array_append_new(kinds, json_string(ev_kind_name(1u << i)));
    char pos[24];
    snprintf(pos, sizeof(pos), "%" PRId64, c->pos);
    json_t *m = json_pack("{s:s, s:s?, s:o, s:I, s:I, s:s}", "type", "subscribed", "sub",
                          c->sub[0] ? c->sub : NULL, "kinds", kinds, "keys", (json_int_t)c->nkeys,
                          "outpoints", (json_int_t)c->nops, "from", pos);
    char *t = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    return t;
}

static char *error_json(const char *code, const char *err)
{
    json_t *m = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "error", err);
    char *t = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    return t;
}

/* The kernel's send buffer of a stream's socket is bounded like ours
 * (events_max_output, at most 4 MiB): Linux would otherwise grow it to
 * tcp_wmem's maximum (4 MiB) for a client that does not read, which both
 * hides that client from the cut-off for that long and costs the memory. */
static void bound_sndbuf(struct evhttp_request *req, const cd_config *cfg)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    int v = (int)CD_MIN(cfg->events_max_output, (uint64_t)4 << 20);
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) != 0)
        cd_log_debug("events: SO_SNDBUF: %s", strerror(errno));
}

/* ---- SSE ---- */

static void on_sse_flushed(struct evhttp_connection *evcon, void *arg);

static void sse_write(ev_client *c, const char *event, const char *id, const char *data, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return;
    if (id)
        evbuffer_add_printf(b, "id: %s\n", id);
    if (event)
        evbuffer_add_printf(b, "event: %s\n", event);
    if (data) {
        evbuffer_add(b, "data: ", 6);
        evbuffer_add(b, data, len); /* compact JSON: one line */
        evbuffer_add(b, "\n\n", 2);
    } else {
        evbuffer_add(b, ": keep-alive\n\n", 14);
    }
    evhttp_send_reply_chunk_with_cb(c->req, b, on_sse_flushed, c);
    evbuffer_free(b);
    c->last_sent = cd_now_s();
}

int ev_client_send(ev_client *c, const ev_event *e)
{
    if (c->ws) {
        if (cd_ws_send(c->ws, CD_WS_OP_TEXT, e->json, e->len) != 0)
            return -1;
        return 0;
    }
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, e->id);
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return -1;
    evbuffer_add_printf(b, "id: %s\nevent: %s\ndata: ", id, ev_kind_name(e->kind));
    evbuffer_add(b, e->json, e->len);
    evbuffer_add(b, "\n\n", 2);
    /* the callback runs when the output is empty again: the client reads */
    evhttp_send_reply_chunk_with_cb(c->req, b, on_sse_flushed, c);
    evbuffer_free(b);
    c->last_sent = cd_now_s();
    return 0;
}

static void on_sse_flushed(struct evhttp_connection *evcon, void *arg)
{
    ev_client *c = arg;
    (void)evcon;
    c->stalled_since = 0;
    ev_pump(c);
}

static void on_sse_closed(struct evhttp_connection *evcon, void *arg)
{
    ev_client *c = arg;
    (void)evcon;
    cd_log_debug("events %s: stream closed by the client", c->peer);
    if (evhttp_request_get_connection(c->req) == NULL)
        evhttp_send_reply_end(c->req); /* frees a detached request */
    client_free(c);
}

/* Ends an SSE stream with a last `event: error` (queued whatever the
 * output limit: it is small) and frees the client. */
static void sse_end(ev_client *c, const char *code, const char *err)
{
    char *t = error_json(code, err);
    struct evbuffer *b = evbuffer_new();
    if (t && b) {
        evbuffer_add_printf(b, "event: error\ndata: %s\n\n", t);
        evhttp_send_reply_chunk(c->req, b); /* no callback: c is freed below */
    }
    free(t);
    if (b)
        evbuffer_free(b);
    evhttp_connection_set_closecb(c->evcon, NULL, NULL);
    evhttp_send_reply_end(c->req); /* Connection: close: closed once flushed */
    client_free(c);
}

void cd_http_events_sse(http_srv *s, struct evhttp_request *req, const char *kinds,
                        const char *keys, const char *outpoints, const char *since, const char *sub)
{
    const cd_config *cfg = s->cfg;
    if (!cfg->events_max_conns) {
        cd_http_reply_error_code(req, 503, "events_off",
                                 "event streams are off "
                                 "(events_max_conns = 0)");
        return;
    }
    if (!cfg->index) {
        cd_http_reply_error_code(req, 503, "index_off",
                                 "the index is off (index = off): no event log");
        return;
    }
    ev_ask a;
    memset(&a, 0, sizeof(a));
    const char *err = NULL, *code = NULL;
    const char *lei = evhttp_find_header(evhttp_request_get_input_headers(req), "Last-Event-ID");
    const char *from = lei && *lei ? lei : since; /* the browser's reconnect wins */
    if (split_list(kinds, 0, &a, cfg->events_max_keys, &err) != 0 ||
        split_list(keys, 1, &a, cfg->events_max_keys, &err) != 0 ||
        split_list(outpoints, 2, &a, cfg->events_max_keys, &err) != 0 ||
        (from && parse_since(from, &a.since) != 0 &&
         (err = "bad resume point (since / Last-Event-ID): an event id expected"))) {
        cd_http_reply_error(req, 400, "%s", err);
        ask_free(&a);
        return;
    }
    a.has_since = from != NULL;
    a.sub = sub;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        cd_http_reply(req, 200, "text/event-stream", NULL);
        ask_free(&a);
        return;
    }
    ev_hub *h = ev_hub_get(s);
    if (!h) {
        cd_http_reply_error_code(req, 503, "db_unavailable", "database unavailable");
        ask_free(&a);
        return;
    }
    if (h->nclients >= cfg->events_max_conns) {
        cd_log_warn("http: server %d: events: %u streams open (events_max_conns): 503", s->proc,
                    h->nclients);
        cd_http_reply_error_code(req, 503, "too_many_streams",
                                 "too many event streams on this server: retry later");
        ask_free(&a);
        return;
    }
    ev_client *c = client_new(h);
    if (!c) {
        cd_http_reply_error(req, 500, "out of memory");
        ask_free(&a);
        return;
    }
    c->req = req;
    c->evcon = evhttp_request_get_connection(req);
    char *host = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(c->evcon, &host, &port);
    snprintf(c->peer, sizeof(c->peer), "%s:%u", host ? host : "?", (unsigned)port);
    int rc = client_apply(c, &a, &err, &code);
    ask_free(&a);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    if (rc != 0 && strcmp(code, "resume_unavailable") != 0 && strcmp(code, "resume_unknown") &&
        strcmp(code, "subscription_unknown")) {
        client_free(c);
        cd_http_reply_error_code(req, !strcmp(code, "db_unavailable") ? 503 : 400, code, "%s", err);
        return;
    }
    evhttp_add_header(oh, "Content-Type", "text/event-stream");
    evhttp_add_header(oh, "Cache-Control", "no-cache");
    evhttp_add_header(oh, "X-Accel-Buffering", "no"); /* proxies: do not buffer */
    evhttp_add_header(oh, "Connection", "close");
    bound_sndbuf(req, cfg);
    evhttp_send_reply_start(req, 200, "OK");
    /* evhttp's 60 s read timeout would end an idle stream (the client
     * sends nothing after its request): only a stalled write ends it, as a
     * backstop to ev_client_tick's cut-off */
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
    struct timeval wt = {(time_t)cfg->events_stall_s + 10, 0};
    bufferevent_set_timeouts(bev, NULL, &wt);
    if (rc != 0) {
        /* a resume point the log cannot honour: said in the stream, where
         * an EventSource sees it */
        cd_log_info("events %s: %s", c->peer, err);
        sse_end(c, code, err);
        return;
    }
    evhttp_connection_set_closecb(c->evcon, on_sse_closed, c);
    char *t = subscribed_json(c);
    if (t) {
        sse_write(c, "subscribed", NULL, t, strlen(t));
        free(t);
    }
    c->started = 1;
    cd_log_debug("events %s: SSE stream from %" PRId64, c->peer, c->pos);
    ev_pump(c);
}

/* ---- websocket ---- */

static void ws_reply(ev_client *c, char *t)
{
    if (!t)
        return;
    if (cd_ws_send(c->ws, CD_WS_OP_TEXT, t, strlen(t)) != 0 && errno == ENOBUFS) {
        cd_log_warn("events %s: output full answering a message: cut off", c->peer);
        cd_ws_close(c->ws, CD_WS_CLOSE_TRY_AGAIN, "output full: client not reading");
    }
    free(t);
}

static void ws_message(cd_ws *ws, int op, const uint8_t *data, size_t len, void *arg)
{
    ev_client *c = arg;
    (void)ws;
    const cd_config *cfg = c->hub->s->cfg;
    if (op != CD_WS_OP_TEXT) {
        ws_reply(c, error_json("bad_message", "JSON text messages only"));
        return;
    }
    json_error_t je;
    json_t *m = json_loadb((const char *)data, len, 0, &je);
    const char *what = m ? json_string_value(json_object_get(m, "op")) : NULL;
    const char *err = NULL, *code = "bad_message";
    ev_ask a;
    memset(&a, 0, sizeof(a));
    if (!json_is_object(m) || !what) {
        char esc[CD_ESCAPED_LEN(64)];
        cd_escape(esc, sizeof(esc), data, len < 64 ? len : 64);
        cd_log_info("events %s: bad message '%s'", c->peer, esc);
        ws_reply(c, error_json("bad_message",
                               "a JSON object with \"op\": \"subscribe\" or \"unsubscribe\" "
                               "expected"));
        json_decref(m);
        return;
    }
    int sub = !strcmp(what, "subscribe"), unsub = !strcmp(what, "unsubscribe");
    if ((!sub && !unsub) ||
        json_list(json_object_get(m, "kinds"), 0, &a, cfg->events_max_keys, &err) != 0 ||
        json_list(json_object_get(m, "keys"), 1, &a, cfg->events_max_keys, &err) != 0 ||
        json_list(json_object_get(m, "outpoints"), 2, &a, cfg->events_max_keys, &err) != 0) {
        ws_reply(c, error_json(code, err ? err : "op: subscribe or unsubscribe expected"));
        goto out;
    }
    json_t *resume = json_object_get(m, "resume");
    json_t *subid = json_object_get(m, "sub");
    if (resume) {
        const char *rs = json_string_value(resume);
        char num[24];
        if (json_is_integer(resume)) {
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(resume));
            rs = num;
        }
        if (!rs || parse_since(rs, &a.since) != 0 || c->started) {
            ws_reply(c, error_json(code, c->started ? "resume is for the first subscribe only"
                                                    : "bad resume point: an event id expected"));
            goto out;
        }
        a.has_since = 1;
    }
    if (subid && !(a.sub = json_string_value(subid))) {
        ws_reply(c, error_json(code, "sub must be a string"));
        goto out;
    }
    if (unsub) {
        if (sub_change(c, &a, 0, &err) != 0) {
            ws_reply(c, error_json("bad_request", err));
            goto out;
        }
        if (a.kinds)
            c->kinds &= ~a.kinds;
        ws_reply(c, subscribed_json(c));
        goto out;
    }
    if (client_apply(c, &a, &err, &code) != 0) {
        cd_log_info("events %s: subscribe refused: %s", c->peer, err);
        if (!strcmp(code, "resume_unavailable") || !strcmp(code, "resume_unknown") ||
            !strcmp(code, "subscription_unknown")) {
            /* the stream cannot continue without a gap: close with why */
            ws_reply(c, error_json(code, err));
            cd_ws_close(c->ws, CD_WS_CLOSE_POLICY,
                        !strcmp(code, "resume_unavailable") ? "resume point no longer available"
                        : !strcmp(code, "resume_unknown")   ? "resume point unknown"
                                                            : "subscription unknown or expired");
        } else {
            ws_reply(c, error_json(code, err));
        }
        goto out;
    }
    ws_reply(c, subscribed_json(c));
    c->started = 1;
    ev_pump(c);
out:
    ask_free(&a);
    json_decref(m);
}

static void ws_drain(cd_ws *ws, void *arg)
{
    ev_client *c = arg;
    (void)ws;
    c->stalled_since = 0;
    ev_pump(c);
}

static void ws_closed(cd_ws *ws, int code, const char *reason, void *arg)
{
    ev_client *c = arg;
    (void)ws;
    cd_log_debug("events %s: websocket closed (%d %s)", c->peer, code, cd_escape_str(reason));
    c->ws = NULL;
    client_free(c);
}

void cd_http_events_ws(http_srv *s, struct evhttp_request *req)
{
    const cd_config *cfg = s->cfg;
    if (!cfg->events_max_conns) {
        cd_http_reply_error_code(req, 503, "events_off",
                                 "event streams are off (events_max_conns = 0)");
        return;
    }
    if (!cfg->index) {
        cd_http_reply_error_code(req, 503, "index_off",
                                 "the index is off (index = off): no event log");
        return;
    }
    ev_hub *h = ev_hub_get(s);
    if (!h) {
        cd_http_reply_error_code(req, 503, "db_unavailable", "database unavailable");
        return;
    }
    if (h->nclients >= cfg->events_max_conns) {
        cd_log_warn("http: server %d: events: %u streams open (events_max_conns): 503", s->proc,
                    h->nclients);
        cd_http_reply_error_code(req, 503, "too_many_streams",
                                 "too many event streams on this server: retry later");
        return;
    }
    ev_client *c = client_new(h);
    if (!c) {
        cd_http_reply_error(req, 500, "out of memory");
        return;
    }
    cd_ws_limits lim = {.max_message = cfg->events_max_message,
                        .max_output = cfg->events_max_output,
                        .ping_s = (int)cfg->events_ping_s,
                        /* a backstop: ev_client_tick cuts a stalled
                         * client off first, with a close frame */
                        .write_timeout_s = 2 * (int)cfg->events_stall_s};
    cd_ws_cbs cbs = {.on_message = ws_message, .on_drain = ws_drain, .on_close = ws_closed};
    bound_sndbuf(req, cfg);
    c->ws = cd_ws_upgrade(req, &lim, &cbs, c);
    if (!c->ws) { /* refused: the reply is sent */
        client_free(c);
        return;
    }
    snprintf(c->peer, sizeof(c->peer), "%s", cd_ws_peer(c->ws));
}

/* ---- the hub's tick ---- */

void ev_client_tick(ev_client *c, double now)
{
    const cd_config *cfg = c->hub->s->cfg;
    if (c->stalled_since && now - c->stalled_since >= cfg->events_stall_s) {
        cd_log_warn("events %s: not reading (output full for %u s, %zu bytes queued, at event "
                    "%" PRId64 "): cut off",
                    c->peer, cfg->events_stall_s, ev_queued(c), c->pos);
        if (c->ws) {
            c->stalled_since = 0;
            c->started = 0; /* nothing more is queued */
            cd_ws_close(c->ws, CD_WS_CLOSE_POLICY, "client not reading: output full");
        } else {
            sse_end(c, "slow_client",
                    "client not reading: output full; reconnect with "
                    "Last-Event-ID to resume");
        }
        return;
    }
    if (!c->ws && c->started && now - c->last_sent >= cfg->events_ping_s && ev_queued(c) == 0)
        sse_write(c, NULL, NULL, NULL, 0); /* keep-alive comment */
}

void ev_clients_fini(ev_hub *h)
{
    ev_client *c;
    while ((c = TAILQ_FIRST(&h->clients)) != NULL) {
        if (c->ws) {
            cd_ws_abort(c->ws, "server stopping"); /* ws_closed frees c */
        } else {
            evhttp_connection_set_closecb(c->evcon, NULL, NULL);
            client_free(c); /* evhttp_free closes the connection */
        }
    }
}
