/*
 * cd_http_int.h - private to the HTTP API server: its state and what
 * cd_http_server.c (process, replies, PostgreSQL) and cd_http_routes.c
 * (route table, handlers) share.
 */
#ifndef CD_HTTP_INT_H
#define CD_HTTP_INT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "cd_config.h"
#include "cd_log.h" /* CD_PRINTF */
#include "cd_lookup.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

#define HTTP_TIMEOUT_S    60         /* idle read/write on a connection */
#define HTTP_PIECE        (1u << 20) /* block streaming piece */
#define HTTP_HIST_DEFAULT 100        /* history page size */
#define HTTP_HIST_MAX     1000
#define HTTP_PG_RETRY_S   1.0 /* reconnect attempts while PG is down */
#define HTTP_STMT_TIMEOUT "30s"
/* The settings of every PostgreSQL session of the API (the servers', the
 * events hub's, a restoration's), sent once after connecting.
 * jit = off: the API's queries are OLTP lookups of a few rows, but with the
 * tables range-partitioned the planner's cost of a lookup by hash grows with
 * the number of partitions (one probe each, run-time pruning not costed)
 * past jit_above_cost, and compiling the plan then costs 1.2-1.4 s a lookup
 * at 200 partitions against ~2 ms executed (docs/PERFORMANCE.md "Lookups
 * over many partitions"). plan_cache_mode stays auto (PostgreSQL's
 * default): cd_lookup's prepared statements are probes by hash whose custom
 * plan is the generic one, so auto takes the generic plan from the 6th
 * execution (tests/functional/test_lookup_plans.py checks it); forcing it
 * would also force the statements of the wallet functions (plpgsql), whose
 * branches on constant arguments a custom plan folds away. */
#define HTTP_PG_SETUP                                                                              \
    "SET statement_timeout = '" HTTP_STMT_TIMEOUT "'; SET client_min_messages = warning; "         \
    "SET jit = off"

/* Server processes sharing the listening socket. Each is one synchronous
 * loop with its own PostgreSQL session: a query held by a lock holds one of
 * them, and the others (which accept while it is blocked) keep answering. */
#define HTTP_PROCS           4
/* The per-client limit (requests one address may have in progress over all
 * the servers) is http_client_limit, default 3: one less than the servers,
 * so a single client cannot occupy them all with slow queries (the next
 * gets 503 + Retry-After); 0 turns it off (behind a proxy every client has
 * the proxy's address). */
/* How long accepting pauses after accept() failed for lack of resources
 * (EMFILE at the descriptor limit, ENFILE, ENOBUFS, ENOMEM): the socket
 * stays readable, so retrying at once would spin. */
#define HTTP_ACCEPT_PAUSE_MS 250

/* One per server process, in memory shared by all (mapped by the controller
 * before the fork): the client the server is busy with. key = a hash of the
 * client's address with the low bit set while busy, 0 while idle; one word,
 * so it is read and written atomically. The controller zeroes a dead
 * server's entry. */
typedef struct http_busy {
    uint64_t key;
    uint32_t streams; /* ConduitDB restoration streams this server runs
                       * (the limit HTTP_CDB_MAX_STREAMS is over all) */
    char pad[52];     /* one cache line each */
} http_busy;

/* ARC statuses the four servers share: a POST lands on one server, the
 * client's GET /arc/v1/tx/<txid> on any (cd_http_arc_cb.c). A slot per
 * txid hash (a newer tx may take an older one's slot: GET then falls back
 * to the index, like ARC forgetting old txs). Any server may write a slot
 * (a POST of a tx the index knows, a second POST of one tx, two txids of
 * one slot), so a writer first claims it (`writer`: its pid, taken over
 * from a server that died holding it); `seq` is odd while the claimant
 * fills the slot, and a reader waits for it to turn even again: it never
 * answers "unknown" for a slot being rewritten (a false 404). */
#define HTTP_ARC_SLOTS 4096
typedef struct http_arc_slot {
    uint32_t seq;   /* even: stable; odd: being written */
    int32_t writer; /* pid of the server holding the slot to write it; 0: none */
    uint8_t txid[32];
    char status[32];
    char extra[256];
} http_arc_slot;

/* The memory the controller maps (MAP_SHARED) before forking the servers;
 * each server gets &busy[0] (cd_http_server_run) and finds the rest with
 * http_shared_of(). */
typedef struct http_shared {
    http_busy busy[HTTP_PROCS];
    http_arc_slot arc[HTTP_ARC_SLOTS];
} http_shared;
#define http_shared_of(busy_) ((http_shared *)(void *)(busy_))

typedef struct http_srv {
    const cd_config *cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evconnlistener *lev; /* evhttp's listener on the shared socket */
    struct event *resume_ev;    /* re-enables accepting (fairness, pauses) */
    int accept_paused;          /* after a resource error, until resume_ev */
    unsigned long pauses;       /* since the last accept that worked */
    int proc;                   /* this server's index, 0..HTTP_PROCS-1 */
    http_busy *busy;            /* HTTP_PROCS entries, shared */
    cd_lookup *lk;
    PGconn *pg;
    double pg_next_try; /* cd_now_s() before which no reconnect is tried */
    int pg_was_down;    /* log "reconnected" once */
    int streams;        /* blocks being streamed (for the shutdown log) */
    struct ev_hub *events; /* the event streams (cd_http_events.c); NULL until used */
} http_srv;

/* What a handler reports back to the dispatcher. */
enum {
    H_DONE = 0,    /* a reply was sent (or a stream started) */
    H_DB_LOST = 1, /* the PG connection broke before anything was sent: retry */
};

/* Sends a reply with its Content-Type (and nosniff). To a HEAD request:
 * the headers with the body's Content-Length, and no body. */
void cd_http_reply(struct evhttp_request *req, int code, const char *type, struct evbuffer *body);

/* Sends a JSON reply. */
void cd_http_reply_json(struct evhttp_request *req, int code, struct evbuffer *body);

/* Sends obj (the call takes over the reference) as a JSON body: jansson's
 * text without flags (", " and ": " separators, keys in insertion order)
 * and a newline. A NULL obj (jansson out of memory) sends a 500 instead. */
void cd_http_reply_jobj(struct evhttp_request *req, int code, json_t *obj);

/* Methods every route answers (405's Allow, OPTIONS). */
#define CD_HTTP_ALLOW "GET, HEAD, OPTIONS"

/* Sends a JSON error {"error": "<message>", "code": "<code>"} (405: Allow;
 * 503: Retry-After), the code chosen by the HTTP status: 400 bad_request,
 * 404 not_found, 405 method_not_allowed, 503 unavailable, else
 * internal_error. Bytes of the message that are not UTF-8 are sent as '?'.
 * A HEAD request gets the headers only (cd_http_reply). */
void cd_http_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
    CD_PRINTF(3, 4);

/* The same with a more precise code (a word of the Error schema's enum in
 * docs/openapi.json: "unknown_parameter", "index_off", ...). */
void cd_http_reply_error_code(struct evhttp_request *req, int status, const char *code,
                              const char *fmt, ...) CD_PRINTF(4, 5);

/* A new JSON string of a hash in display order (reversed hex); NULL when out
 * of memory (jansson's *_new setters take NULL as a failure). */
json_t *cd_http_json_hash(const uint8_t h[32]);

/* The PostgreSQL connection, (re)connecting if needed and allowed now;
 * NULL while the server is unreachable (or the index is off). */
PGconn *cd_http_srv_pg(http_srv *s) CD_WARN_UNUSED;

/* Replies to a lookup failure; returns H_DB_LOST instead when the database
 * connection broke (nothing sent). */
int cd_http_lookup_failed(http_srv *s, struct evhttp_request *req, int rc) CD_WARN_UNUSED;

/* The SDK routes (cd_http_sdk.c: BUMP, BEEF, /woc, /arc): answers the
 * request and returns 1 when it is one of them, else 0 (nothing sent). */
int cd_http_sdk_dispatch(http_srv *s, struct evhttp_request *req);

/* 1 if an OpenAPI path is served by the SDK or ARC tables (cd_http_sdk.c),
 * else 0. */
int cd_http_sdk_owns_path(const char *path);

/* Adds the CORS headers to the reply when the request's Origin is one of
 * http_cors_origins. Returns 1 if it is, else 0 (cd_http_cors.c). */
int cd_http_cors_headers(http_srv *s, struct evhttp_request *req);

/* Answers an OPTIONS request on a route: 204 with Allow and, if `cors`
 * (the origin is allowed), the preflight headers (cd_http_cors.c). */
void cd_http_preflight(struct evhttp_request *req, int cors);

/* GET /metrics: the Prometheus text format (cd_http_metrics.c). */
void cd_http_metrics(http_srv *s, struct evhttp_request *req);

/* GET /v1/events: a Server-Sent-Events stream of the event log, filtered by
 * the query parameters (each may be NULL); Last-Event-ID wins over since
 * (cd_http_events_cli.c, docs/EVENTS.md). Always answers. */
void cd_http_events_sse(http_srv *s, struct evhttp_request *req, const char *kinds,
                        const char *keys, const char *outpoints, const char *since,
                        const char *sub);

/* GET /v1/ws: the same events over a websocket (cd_ws.h). Always answers. */
void cd_http_events_ws(http_srv *s, struct evhttp_request *req);

/* Starts the event streams' timer (subscription expiry) when the index
 * and the streams are on; PostgreSQL is reached later, from the loop. */
void cd_http_events_start(http_srv *s);

/* Ends every event stream and frees the hub (server stopping; before
 * evhttp_free, which frees the connections). */
void cd_http_events_fini(http_srv *s);

/* The request callback: route, validate, run the handler (cd_http_routes.c). */
void cd_http_handle(struct evhttp_request *req, void *arg);

#endif /* CD_HTTP_INT_H */
