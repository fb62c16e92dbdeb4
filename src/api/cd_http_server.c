/*
 * cd_http_server.c - the HTTP API server (the child process of cd_http.c).
 *
 * Why it exists: applications want raw transactions, merkle proofs and
 * blocks over HTTP, without a PostgreSQL client or access to the LMDB files
 * (DESIGN.md §1). Every answer comes from src/query/cd_lookup.c, the same
 * code conduit-cli uses, so the two agree byte for byte.
 *
 * HTTP_PROCS processes share the listening socket, each one libevent loop
 * (evhttp) with its own PostgreSQL session, queried synchronously: a query
 * held by a lock blocks only its process, and while it is blocked it does
 * not accept, so the others take the new connections (/v1/status, which
 * reads only the status file, answers at once). A process accepts one
 * connection per turn of its loop (so one burst is spread over all of
 * them); one client address may have at most http_client_limit requests
 * in progress over all of them (a table in shared memory), so it cannot
 * occupy every process. When accept() fails for lack of resources (EMFILE
 * at the descriptor limit) accepting pauses for HTTP_ACCEPT_PAUSE_MS and is
 * retried, logged once: the listening socket stays readable, and retrying
 * at once would spin at 100 % CPU. The controller is never involved.
 *
 * A process's PostgreSQL connection is opened on first use and re-opened
 * when a query finds it broken (a PostgreSQL restart drops every session:
 * the request is retried once on a fresh connection); while the server
 * cannot be reached, endpoints that need it answer 503 and a reconnect is
 * tried at most once per second. Each session runs with statement_timeout
 * = 30 s: the longest a request can hold its process.
 *
 * Blocks are streamed: the reply is started with its Content-Length, then
 * the block is read from LMDB 1 MiB at a time, and the next piece is read
 * only when the previous one has been written to the socket
 * (evhttp_send_reply_chunk_with_cb), so memory stays bounded for any block
 * size and any client speed. A client that goes away ends the stream.
 *
 * Endpoints (GET or HEAD; others 405; the route table and the handlers are
 * cd_http_routes.c), documented in docs/QUERIES.md:
 *   /v1/status  /v1/tip  /v1/tx/<txid>  /v1/tx/<txid>/proof
 *   /v1/block/<hash|height>  /v1/block/<hash|height>/header
 *   /v1/outpoint/<txid>/<n>/spender  /v1/pushdata/<key>/history
 *   /v1/openapi.json (docs/openapi.json, compiled in)
 * Errors are JSON {"error": "<message>", "code": "<stable code>"}: 400 bad
 * input (unknown_parameter: a query parameter the route does not declare),
 * 404 unknown, 405 method, 500 store inconsistency, 503 database
 * unavailable (docs/QUERIES.md lists the codes). HEAD answers the GET's
 * headers with its Content-Length and no body; OPTIONS is a CORS preflight
 * (http_cors_origins).
 */
#include "cd_http.h"
#include "cd_http_int.h"
#include "cd_http_arc_int.h"
#include "cd_http_cdb.h" /* cd_http_cdb_start/stop */
#include "cd_status.h"

#include "cd_log.h"
#include "cd_util.h"
#include "cd_lookup.h"
#include "cd_pg.h"

#include <sys/queue.h> /* TAILQ_INIT for evkeyvalq */

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include "cd_signals.h" /* cd_child_exit */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- replies ---- */

static const char *reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

void cd_http_reply(struct evhttp_request *req, int code, const char *type, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* HEAD: the GET's headers, its Content-Length, and no body. evhttp
         * would write the body after a HEAD's headers, with no length, and
         * a keep-alive client then reads it as the start of the next
         * response ("Excess found" in curl). */
        char len[32];
        snprintf(len, sizeof(len), "%zu", body ? evbuffer_get_length(body) : (size_t)0);
        evhttp_remove_header(h, "Content-Length");
        evhttp_add_header(h, "Content-Length", len);
        evhttp_send_reply(req, code, reason(code), NULL);
        return;
    }
    evhttp_send_reply(req, code, reason(code), body);
}

void cd_http_reply_json(struct evhttp_request *req, int code, struct evbuffer *body)
{
    cd_http_reply(req, code, "application/json", body);
}

void cd_http_reply_jobj(struct evhttp_request *req, int code, json_t *obj)
{
    /* no flags: ", " and ": " separators, the keys in insertion order */
    char *text = obj ? json_dumps(obj, 0) : NULL;
    json_decref(obj);
    struct evbuffer *b = evbuffer_new();
    if (!text) {
        evbuffer_add_printf(b, "{\"error\": \"out of memory\"}\n");
        cd_http_reply_json(req, 500, b);
    } else {
        evbuffer_add(b, text, strlen(text));
        evbuffer_add(b, "\n", 1);
        free(text);
        cd_http_reply_json(req, code, b);
    }
    evbuffer_free(b);
}

/* The code of an error reply that names none, by HTTP status. */
static const char *default_code(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 503:
        return "unavailable";
    default:
        return "internal_error";
    }
}

static void reply_error_v(struct evhttp_request *req, int status, const char *code,
                          const char *fmt, va_list ap) CD_PRINTF(4, 0);

static void reply_error_v(struct evhttp_request *req, int status, const char *code,
                          const char *fmt, va_list ap)
{
    char msg[600];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    json_t *m = json_string(msg);
    if (!m) { /* not UTF-8 (bytes a client put in the path): those bytes as '?' */
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
        m = json_string(msg);
    }
    if (status == 405)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", CD_HTTP_ALLOW);
    if (status == 503)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    cd_http_reply_jobj(req, status, json_pack("{s:o, s:s}", "error", m, "code", code));
}

void cd_http_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_v(req, code, default_code(code), fmt, ap);
    va_end(ap);
}

void cd_http_reply_error_code(struct evhttp_request *req, int status, const char *code,
                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_v(req, status, code, fmt, ap);
    va_end(ap);
}

json_t *cd_http_json_hash(const uint8_t h[32])
{
    char hex[65];
    cd_hex_encode_rev(hex, h, 32);
    return json_string(hex);
}

/* ---- PostgreSQL ---- */

/* The connection, (re)connecting if needed and allowed now; NULL while the
 * server is unreachable (or the index is off). */
PGconn *cd_http_srv_pg(http_srv *s)
{
    if (!s->cfg->index)
        return NULL;
    if (s->pg && PQstatus(s->pg) == CONNECTION_OK)
        return s->pg;
    if (s->pg) {
        PQfinish(s->pg);
        s->pg = NULL;
        if (s->lk) /* the metrics server has none */
            cd_lookup_set_pg(s->lk, NULL);
    }
    double now = cd_now_s();
    if (now < s->pg_next_try)
        return NULL;
    /* a connect_timeout in pg_conninfo wins over this one; the name tells
     * an operator's pg_stat_activity which server holds the session (the
     * metrics server has no lookup handle) */
    const cd_pg_session how = {5, s->lk ? "conduitd-http" : "conduitd-metrics"};
    PGconn *c = cd_pg_open(s->cfg, &how);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(c);
        if (!s->pg_was_down)
            cd_log_warn("http: postgres: cannot connect: %s (503 until it is back)", msg);
        s->pg_was_down = 1;
        s->pg_next_try = now + HTTP_PG_RETRY_S;
        return NULL;
    }
    PGresult *r = PQexec(c, HTTP_PG_SETUP);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        cd_log_warn("http: postgres: session setup: %s", PQresultErrorMessage(r));
    PQclear(r);
    if (s->pg_was_down)
        cd_log_info("http: postgres: connected again");
    s->pg_was_down = 0;
    s->pg = c;
    if (s->lk)
        cd_lookup_set_pg(s->lk, c);
    return c;
}

/* After CD_LOOKUP_EDB: 1 if the connection is broken (dropped; the caller
 * returns H_DB_LOST), 0 if the query itself failed. libpq does not always
 * mark a session the server closed as CONNECTION_BAD, so a failed query is
 * followed by a trivial one to tell the two apart. */
static int pg_lost(http_srv *s)
{
    if (s->pg && PQstatus(s->pg) == CONNECTION_OK) {
        PGresult *r = PQexec(s->pg, "SELECT 1");
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (ok)
            return 0;
    }
    if (s->pg) {
        PQfinish(s->pg);
        s->pg = NULL;
        if (s->lk) /* the metrics server has none */
            cd_lookup_set_pg(s->lk, NULL);
    }
    return 1;
}

/* Replies to a lookup failure; returns H_DB_LOST instead when the database
 * connection broke (nothing sent). */
int cd_http_lookup_failed(http_srv *s, struct evhttp_request *req, int rc)
{
    const char *msg = cd_lookup_error(s->lk);
    switch (rc) {
    case CD_LOOKUP_ENOTFOUND:
        cd_http_reply_error(req, 404, "%s", msg);
        return H_DONE;
    case CD_LOOKUP_EINPUT:
        cd_http_reply_error(req, 404, "%s", msg);
        return H_DONE;
    case CD_LOOKUP_EDB:
        if (pg_lost(s))
            return H_DB_LOST;
        /* undefined table / function: a first start has not created the
         * schema yet; the index is unavailable, not broken */
        if (!strcmp(cd_lookup_sqlstate(s->lk), "42P01") ||
            !strcmp(cd_lookup_sqlstate(s->lk), "42883")) {
            cd_http_reply_error_code(req, 503, "schema_missing",
                                     "the index schema is not created yet (conduitd is starting)");
            return H_DONE;
        }
        cd_log_warn("http: %s", msg);
        cd_http_reply_error(req, 500, "%s", msg);
        return H_DONE;
    default:
        cd_log_warn("http: %s", msg);
        cd_http_reply_error(req, 500, "%s", msg);
        return H_DONE;
    }
}

/* ---- accepting ---- */

/* The server of this process, for on_accept_error: libevent passes an
 * error callback the listener's user data, which evhttp owns (its struct
 * evhttp), not ours. */
static http_srv *the_srv;

/* Accepting again: after a pause, or after one connection (fairness). */
static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    http_srv *s = arg;
    (void)fd;
    (void)what;
    s->accept_paused = 0;
    evconnlistener_enable(s->lev);
}

/* accept() failed with an error libevent does not retry by itself (EMFILE,
 * ENFILE, ENOBUFS, ENOMEM, ...): the pending connection stays in the
 * backlog and the socket readable, so stop listening for a while instead
 * of spinning. Logged at the first failure after an accept that worked. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    http_srv *s = the_srv;
    (void)arg; /* evhttp's */
    int e = EVUTIL_SOCKET_ERROR();
    evconnlistener_disable(lev);
    s->accept_paused = 1;
    if (s->pauses++ == 0) {
        struct rlimit rl;
        unsigned long long lim = 0;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
            lim = (unsigned long long)rl.rlim_cur;
        cd_log_warn("http: server %d: accept: %s (descriptor limit %llu): not accepting new "
                    "connections for %d ms at a time until one is accepted",
                    s->proc, strerror(e), lim, HTTP_ACCEPT_PAUSE_MS);
    }
    struct timeval tv = {0, HTTP_ACCEPT_PAUSE_MS * 1000};
    evtimer_add(s->resume_ev, &tv);
}

/* evhttp calls this for every connection it accepted (to make its
 * bufferevent, as it does by default): one accept per turn of the loop, so
 * the other processes get their share of a burst, and a process about to
 * block on a slow query holds no more waiting connections than that. */
static struct bufferevent *on_new_conn(struct event_base *base, void *arg)
{
    http_srv *s = arg;
    if (s->pauses) {
        cd_log_info("http: server %d: accepting connections again (after %lu pause(s))", s->proc,
                    s->pauses);
        s->pauses = 0;
    }
    if (!s->accept_paused) {
        evconnlistener_disable(s->lev);
        event_active(s->resume_ev, EV_TIMEOUT, 1);
    }
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    cd_http_body_cap(bev); /* over-long bodies: 413 in the route's format */
    return bev;
}

/* The client's address as a busy-table key (FNV-1a of family + address,
 * low bit set); 0 when unknown. */
static uint64_t client_key(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    const struct sockaddr *sa = evcon ? evhttp_connection_get_addr(evcon) : NULL;
    const uint8_t *p;
    size_t n;
    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET) {
        p = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        n = 4;
    } else if (sa->sa_family == AF_INET6) {
        p = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        n = 16;
    } else {
        return 0;
    }
    uint64_t h = UINT64_C(14695981039346656037) ^ (uint64_t)sa->sa_family;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(1099511628211);
    return h | 1;
}

/* Every request: the per-client limit, then the route (cd_http_handle).
 * The process is busy with this client until the handler returns (a block
 * stream goes on from the loop, without blocking it). */
static void on_request(struct evhttp_request *req, void *arg)
{
    http_srv *s = arg;
    if (cd_http_body_refused(req)) /* 413: its body is never read */
        return;
    /* /v1/status reads one small file: never refused, never counted */
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    uint32_t limit = s->cfg->http_client_limit;
    uint64_t key = !limit || (path && !strcmp(path, "/v1/status")) ? 0 : client_key(req);
    if (key) {
        int n = 0;
        for (int i = 0; i < HTTP_PROCS; i++)
            if (i != s->proc && __atomic_load_n(&s->busy[i].key, __ATOMIC_ACQUIRE) == key)
                n++;
        if ((uint32_t)n >= limit) {
            char *host = NULL;
            ev_uint16_t port = 0;
            evhttp_connection_get_peer(evhttp_request_get_connection(req), &host, &port);
            cd_log_debug("http: %s:%u: %d requests in progress already: 503", host ? host : "?",
                         (unsigned)port, n);
            cd_http_reply_error(req, 503,
                                "too many requests in progress from your address (at most %d "
                                "at once): retry when one has been answered",
                                (int)limit);
            return;
        }
        __atomic_store_n(&s->busy[s->proc].key, key, __ATOMIC_RELEASE);
    }
    cd_http_handle(req, s);
    __atomic_store_n(&s->busy[s->proc].key, 0, __ATOMIC_RELEASE);
}

/* ---- process ---- */

int cd_http_server_run(const cd_config *cfg, int listen_fd, int chan_fd, int proc,
                       struct http_busy *busy)
{
    http_srv s;
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    s.proc = proc;
    s.busy = busy;
    arc_shared_attach(http_shared_of(busy)->arc);
    the_srv = &s;
    __atomic_store_n(&busy[proc].key, 0, __ATOMIC_RELEASE); /* a predecessor's leftover */
    __atomic_store_n(&busy[proc].streams, 0, __ATOMIC_RELEASE);
    s.base = event_base_new();
    s.http = s.base ? evhttp_new(s.base) : NULL;
    if (!s.http) {
        cd_log_error("http: cannot create the event loop");
        return CD_EXIT_FAILURE;
    }
    evutil_make_socket_nonblocking(listen_fd);
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(s.http, listen_fd);
    s.lev = bound ? evhttp_bound_socket_get_listener(bound) : NULL;
    s.resume_ev = event_new(s.base, -1, 0, on_resume, &s);
    if (!s.lev || !s.resume_ev) {
        cd_log_error("http: cannot accept on the listening socket");
        return CD_EXIT_FAILURE;
    }
    evconnlistener_set_error_cb(s.lev, on_accept_error);
    evhttp_set_bevcb(s.http, on_new_conn, &s);
    evhttp_set_timeout(s.http, HTTP_TIMEOUT_S);
    evhttp_set_max_headers_size(s.http, 16384);
    /* ConduitDB's POST routes take up to 10,000 keys/outpoints (~700 KB of
     * JSON); a larger Content-Length gets a 413 before any is buffered
     * (cd_http_cdb_limits.c), a larger chunked body evhttp's own 413 */
    evhttp_set_max_body_size(s.http, HTTP_BODY_MAX);
    /* every method reaches handle(), which answers 405 with JSON itself
     * (evhttp's own refusal is a bare 501) */
    evhttp_set_allowed_methods(s.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                           EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                           EVHTTP_REQ_PATCH | EVHTTP_REQ_TRACE |
                                           EVHTTP_REQ_CONNECT);
    evhttp_set_gencb(s.http, on_request, &s);
    s.lk = cd_lookup_new(cfg->datadir, cfg->net, CD_LOOKUP_PREPARE);
    cd_http_events_start(&s);

    cd_child_exit *quit = cd_child_exit_install(s.base, chan_fd, "http");
    if (!quit)
        return CD_EXIT_FAILURE;
    cd_http_cdb_start(&s); /* ConduitDB's /ws and registration expiry */
    cd_log_info("http: server %d serving (pid %d)", proc, (int)getpid());
    event_base_dispatch(s.base);

    if (s.streams)
        cd_log_info("http: stopping (%d block download(s) cut short)", s.streams);
    else
        cd_log_info("http: stopping");
    cd_http_cdb_stop(); /* its websockets first: evhttp_free frees their connections */
    cd_http_events_fini(&s); /* websockets are ours, not evhttp's, until freed */
    evhttp_free(s.http); /* closes connections (stream close callbacks run) */
    event_free(s.resume_ev);
    the_srv = NULL;
    cd_child_exit_free(quit);
    if (s.pg)
        PQfinish(s.pg);
    cd_lookup_free(s.lk);
    event_base_free(s.base);
    close(chan_fd);
    return CD_EXIT_OK;
}
