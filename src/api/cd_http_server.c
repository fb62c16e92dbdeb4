/*
 * cd_http_server.c - the HTTP API server (the child process of cd_http.c).
 *
 * Why it exists: applications want raw transactions, merkle proofs and
 * blocks over HTTP, without a PostgreSQL client or access to the LMDB files
 * (DESIGN.md §1). Every answer comes from src/query/cd_lookup.c, the same
 * code conduit-cli uses, so the two agree byte for byte.
 *
 * One process, one libevent loop (evhttp). PostgreSQL is queried
 * synchronously: this process has nothing else to do, and the controller is
 * never involved. The connection is opened on first use and re-opened when a
 * query finds it broken (a PostgreSQL restart drops every session: the
 * request is retried once on a fresh connection); while the server cannot
 * be reached, endpoints that need it answer 503 and a reconnect is tried at
 * most once per second. Each session runs with statement_timeout = 30 s.
 *
 * Blocks are streamed: the reply is started with its Content-Length, then
 * the block is read from LMDB 1 MiB at a time, and the next piece is read
 * only when the previous one has been written to the socket
 * (evhttp_send_reply_chunk_with_cb), so memory stays bounded for any block
 * size and any client speed. A client that goes away ends the stream.
 *
 * Endpoints (GET or HEAD; others 405), documented in docs/QUERIES.md:
 *   /v1/status  /v1/tip  /v1/tx/<txid>  /v1/tx/<txid>/proof
 *   /v1/block/<hash|height>  /v1/block/<hash|height>/header
 *   /v1/outpoint/<txid>/<n>/spender  /v1/pushdata/<key>/history
 * Errors are JSON {"error": "..."}: 400 bad input, 404 unknown, 405 method,
 * 500 store inconsistency, 503 database unavailable.
 */
#include "cd_http.h"
#include "cd_status.h"

#include "cd_log.h"
#include "cd_util.h"
#include "cd_lookup.h"

#include <sys/queue.h> /* TAILQ_INIT for evkeyvalq */

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/signalfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HTTP_TIMEOUT_S    60         /* idle read/write on a connection */
#define HTTP_PIECE        (1u << 20) /* block streaming piece */
#define HTTP_HIST_DEFAULT 100        /* history page size */
#define HTTP_HIST_MAX     1000
#define HTTP_PG_RETRY_S   1.0 /* reconnect attempts while PG is down */
#define HTTP_STMT_TIMEOUT "30s"

typedef struct http_srv {
    const cd_config *cfg;
    struct event_base *base;
    struct evhttp *http;
    cd_lookup *lk;
    PGconn *pg;
    double pg_next_try; /* cd_now_s() before which no reconnect is tried */
    int pg_was_down;    /* log "reconnected" once */
    int streams;        /* blocks being streamed (for the shutdown log) */
} http_srv;

/* What a handler reports back to the dispatcher. */
enum {
    H_DONE = 0,    /* a reply was sent (or a stream started) */
    H_DB_LOST = 1, /* the PG connection broke before anything was sent: retry */
};

/* ---- replies ---- */

/* Appends s as a JSON string (quotes included). */
static void json_str(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            evbuffer_add_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            evbuffer_add_printf(b, "\\u%04x", *p);
        else
            evbuffer_add(b, p, 1);
    }
    evbuffer_add(b, "\"", 1);
}

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

static void reply(struct evhttp_request *req, int code, const char *type, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_send_reply(req, code, reason(code), body);
}

static void reply_json(struct evhttp_request *req, int code, struct evbuffer *body)
{
    reply(req, code, "application/json", body);
}

static void reply_error(struct evhttp_request *req, int code, const char *fmt, ...) CD_PRINTF(3, 4);

static void reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"error\": ");
    json_str(b, msg);
    evbuffer_add_printf(b, "}\n");
    if (code == 405)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
    if (code == 503)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    reply_json(req, code, b);
    evbuffer_free(b);
}

static void json_hash(struct evbuffer *b, const char *key, const uint8_t h[32], int first)
{
    char hex[65];
    cd_hex_encode_rev(hex, h, 32);
    evbuffer_add_printf(b, "%s\"%s\": \"%s\"", first ? "" : ", ", key, hex);
}

/* ---- PostgreSQL ---- */

/* The connection, (re)connecting if needed and allowed now; NULL while the
 * server is unreachable (or the index is off). */
static PGconn *srv_pg(http_srv *s)
{
    if (!s->cfg->index)
        return NULL;
    if (s->pg && PQstatus(s->pg) == CONNECTION_OK)
        return s->pg;
    if (s->pg) {
        PQfinish(s->pg);
        s->pg = NULL;
        cd_lookup_set_pg(s->lk, NULL);
    }
    double now = cd_now_s();
    if (now < s->pg_next_try)
        return NULL;
    /* connect_timeout first, so one in pg_conninfo wins (as main.c does) */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"5", "conduitd-http", s->cfg->pg_conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
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
    PGresult *r = PQexec(c, "SET statement_timeout = '" HTTP_STMT_TIMEOUT "'; "
                            "SET client_min_messages = warning");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        cd_log_warn("http: postgres: session setup: %s", PQresultErrorMessage(r));
    PQclear(r);
    if (s->pg_was_down)
        cd_log_info("http: postgres: connected again");
    s->pg_was_down = 0;
    s->pg = c;
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
        cd_lookup_set_pg(s->lk, NULL);
    }
    return 1;
}

/* Replies to a lookup failure; returns H_DB_LOST instead when the database
 * connection broke (nothing sent). */
static int lookup_failed(http_srv *s, struct evhttp_request *req, int rc)
{
    const char *msg = cd_lookup_error(s->lk);
    switch (rc) {
    case CD_LOOKUP_ENOTFOUND:
        reply_error(req, 404, "%s", msg);
        return H_DONE;
    case CD_LOOKUP_EINPUT:
        reply_error(req, 404, "%s", msg);
        return H_DONE;
    case CD_LOOKUP_EDB:
        if (pg_lost(s))
            return H_DB_LOST;
        /* undefined table / function: a first start has not created the
         * schema yet; the index is unavailable, not broken */
        if (!strcmp(cd_lookup_sqlstate(s->lk), "42P01") ||
            !strcmp(cd_lookup_sqlstate(s->lk), "42883")) {
            reply_error(req, 503, "the index schema is not created yet (conduitd is starting)");
            return H_DONE;
        }
        cd_log_warn("http: %s", msg);
        reply_error(req, 500, "%s", msg);
        return H_DONE;
    default:
        cd_log_warn("http: %s", msg);
        reply_error(req, 500, "%s", msg);
        return H_DONE;
    }
}

/* ---- request parsing ---- */

typedef struct http_args {
    char *seg[8]; /* path segments after /v1 */
    int nseg;
    struct evkeyvalq query;
    char pathbuf[512];
} http_args;

static const char *arg(http_args *a, const char *key)
{
    return evhttp_find_header(&a->query, key);
}

/* 64 hex digits -> 32 bytes, reversed (txids, block hashes) or not (keys). */
static int parse_hash(const char *s, uint8_t out[32], int rev)
{
    return rev ? cd_hex_decode_rev(out, 32, s) : cd_hex_decode(out, 32, s);
}

/* Decimal 0..max without sign or leading junk. */
static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 10)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_flag(const char *s, int *out)
{
    if (!s)
        return 0;
    if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) {
        *out = 1;
        return 0;
    }
    if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) {
        *out = 0;
        return 0;
    }
    return -1;
}

/* ---- endpoints ---- */

static int h_status(http_srv *s, struct evhttp_request *req, http_args *a)
{
    (void)a;
    cd_status st;
    if (cd_status_read(s->cfg->datadir, &st) < 0) {
        reply_error(req, 503, "cannot read the status file: %s", strerror(errno));
        return H_DONE;
    }
    int alive = cd_status_pid_alive(&st) && strcmp(st.state, "stopped") != 0;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        reply_error(req, 500, "out of memory");
        return H_DONE;
    }
    cd_status_print_json(f, &st, alive, (int64_t)time(NULL));
    fclose(f);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, len);
    free(text);
    reply_json(req, 200, b);
    evbuffer_free(b);
    return H_DONE;
}

static int h_tip(http_srv *s, struct evhttp_request *req, http_args *a)
{
    (void)a;
    int32_t height;
    uint8_t hash[32];
    int rc = cd_lookup_tip(s->lk, &height, hash);
    if (rc != CD_LOOKUP_OK)
        return lookup_failed(s, req, rc);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"height\": %" PRId32 ", ", height);
    json_hash(b, "hash", hash, 1);
    evbuffer_add_printf(b, "}\n");
    reply_json(req, 200, b);
    evbuffer_free(b);
    return H_DONE;
}

/* The representation of /v1/tx/<txid>: ?format wins; else an Accept header
 * naming application/octet-stream asks for the raw bytes; else hex. */
enum { FMT_HEX, FMT_RAW, FMT_JSON };

static int tx_format(struct evhttp_request *req, http_args *a, int *fmt)
{
    const char *f = arg(a, "format");
    if (f) {
        if (!strcmp(f, "hex"))
            *fmt = FMT_HEX;
        else if (!strcmp(f, "raw") || !strcmp(f, "bin"))
            *fmt = FMT_RAW;
        else if (!strcmp(f, "json"))
            *fmt = FMT_JSON;
        else
            return -1;
        return 0;
    }
    const char *acc = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    *fmt = acc && strstr(acc, "application/octet-stream") ? FMT_RAW : FMT_HEX;
    return 0;
}

static int h_tx(http_srv *s, struct evhttp_request *req, http_args *a)
{
    uint8_t txid[32];
    int fmt;
    if (parse_hash(a->seg[1], txid, 1) != 0) {
        reply_error(req, 400, "bad txid '%s': expected 64 hex digits", a->seg[1]);
        return H_DONE;
    }
    if (tx_format(req, a, &fmt) != 0) {
        reply_error(req, 400, "bad format: expected hex, raw or json");
        return H_DONE;
    }
    cd_lookup_tx tx;
    int rc = cd_lookup_tx_find(s->lk, txid, 1, &tx);
    if (rc != CD_LOOKUP_OK)
        return lookup_failed(s, req, rc);
    struct evbuffer *b = evbuffer_new();
    if (fmt == FMT_JSON) {
        evbuffer_add(b, "{", 1);
        json_hash(b, "txid", tx.txid, 1);
        if (tx.mempool) {
            evbuffer_add_printf(b, ", \"mempool\": true, \"size\": %" PRIu64 "}\n", tx.size);
        } else {
            evbuffer_add_printf(b, ", \"mempool\": false");
            json_hash(b, "block_hash", tx.block_hash, 0);
            evbuffer_add_printf(b,
                                ", \"height\": %" PRId32 ", \"position\": %" PRIu64
                                ", \"offset\": %" PRIu64 ", \"size\": %" PRIu64 "}\n",
                                tx.height, tx.pos, tx.offset, tx.size);
        }
        reply_json(req, 200, b);
        evbuffer_free(b);
        return H_DONE;
    }
    uint8_t *raw = NULL;
    rc = cd_lookup_tx_read(s->lk, &tx, &raw);
    if (rc == CD_LOOKUP_ENOTFOUND && tx.mempool) {
        /* it left the mempool since the find (confirmed, most likely): once
         * more, now from its block */
        rc = cd_lookup_tx_find(s->lk, txid, 1, &tx);
        if (rc == CD_LOOKUP_OK)
            rc = cd_lookup_tx_read(s->lk, &tx, &raw);
    }
    if (rc != CD_LOOKUP_OK) {
        evbuffer_free(b);
        return lookup_failed(s, req, rc);
    }
    if (fmt == FMT_RAW) {
        evbuffer_add(b, raw, (size_t)tx.size);
        reply(req, 200, "application/octet-stream", b);
    } else {
        /* what `conduit-cli tx --hex` prints: one hex line */
        struct evbuffer_iovec v;
        size_t n = 2 * (size_t)tx.size + 1;
        if (evbuffer_reserve_space(b, (ev_ssize_t)(n + 1), &v, 1) == 1) {
            cd_hex_encode(v.iov_base, raw, (size_t)tx.size);
            ((char *)v.iov_base)[n - 1] = '\n';
            v.iov_len = n;
            evbuffer_commit_space(b, &v, 1);
        }
        reply(req, 200, "text/plain; charset=utf-8", b);
    }
    free(raw);
    evbuffer_free(b);
    return H_DONE;
}

static int h_proof(http_srv *s, struct evhttp_request *req, http_args *a)
{
    uint8_t txid[32];
    if (parse_hash(a->seg[1], txid, 1) != 0) {
        reply_error(req, 400, "bad txid '%s': expected 64 hex digits", a->seg[1]);
        return H_DONE;
    }
    const char *target = arg(a, "target") ? arg(a, "target") : "hash";
    if (strcmp(target, "hash") && strcmp(target, "header") && strcmp(target, "merkleroot")) {
        reply_error(req, 400, "bad target: expected hash, header or merkleroot");
        return H_DONE;
    }
    int include_tx = 0;
    if (parse_flag(arg(a, "include_tx"), &include_tx) != 0) {
        reply_error(req, 400, "bad include_tx: expected 0 or 1");
        return H_DONE;
    }
    cd_lookup_tx tx;
    /* the mempool too: a tx there gets "not in a block yet" (404), not
     * "unknown" */
    int rc = cd_lookup_tx_find(s->lk, txid, 1, &tx);
    if (rc != CD_LOOKUP_OK)
        return lookup_failed(s, req, rc);
    uint8_t branch[CD_LOOKUP_MAX_DEPTH * 32];
    size_t depth = 0;
    rc = cd_lookup_tx_branch(s->lk, &tx, branch, &depth);
    if (rc != CD_LOOKUP_OK)
        return lookup_failed(s, req, rc);
    uint8_t *raw = NULL;
    if (include_tx && (rc = cd_lookup_tx_read(s->lk, &tx, &raw)) != CD_LOOKUP_OK)
        return lookup_failed(s, req, rc);
    char *json = cd_lookup_proof_json(&tx, branch, depth, target, raw);
    free(raw);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, json, strlen(json));
    reply_json(req, 200, b);
    evbuffer_free(b);
    free(json);
    return H_DONE;
}

/* Resolves /v1/block/<id>. Returns 1 with *loc/hash, or 0 (reply sent). */
static int block_resolve(http_srv *s, struct evhttp_request *req, const char *id, uint8_t hash[32],
                         cd_block_loc *loc)
{
    uint32_t height = 0;
    int kind = cd_lookup_block_id(id, hash, &height);
    if (kind < 0) {
        reply_error(req, 400, "bad block id '%s': expected a 64-hex block hash or a height", id);
        return 0;
    }
    int rc = CD_LOOKUP_OK;
    if (kind == 0)
        rc = cd_lookup_block_hash_at(s->lk, height, hash);
    if (rc == CD_LOOKUP_OK)
        rc = cd_lookup_block_get(s->lk, hash, loc);
    if (rc != CD_LOOKUP_OK) {
        (void)lookup_failed(s, req, rc);
        return 0;
    }
    return 1;
}

static int h_header(http_srv *s, struct evhttp_request *req, http_args *a)
{
    uint8_t hash[32];
    cd_block_loc loc;
    if (!block_resolve(s, req, a->seg[1], hash, &loc))
        return H_DONE;
    char hh[161];
    cd_hex_encode(hh, loc.header, 80);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "{", 1);
    json_hash(b, "hash", hash, 1);
    if (loc.height != UINT32_MAX)
        evbuffer_add_printf(b, ", \"height\": %" PRIu32, loc.height);
    else
        evbuffer_add_printf(b, ", \"height\": null");
    evbuffer_add_printf(b,
                        ", \"header\": \"%s\", \"size\": %" PRIu64 ", \"tx_count\": %" PRIu64 "}\n",
                        hh, loc.size, loc.tx_count);
    reply_json(req, 200, b);
    evbuffer_free(b);
    return H_DONE;
}

/* ---- block streaming ---- */

typedef struct http_stream {
    http_srv *srv;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    cd_block_loc loc;
    uint8_t hash[32];
    uint64_t off;
    uint8_t *piece;         /* HTTP_PIECE bytes, reused for every piece */
    struct evbuffer *buf;   /* hands `piece` to evhttp by reference */
    struct event *abort_ev; /* deferred close after a read error */
} http_stream;

static void stream_free(http_stream *st)
{
    st->srv->streams--;
    evbuffer_free(st->buf);
    free(st->piece);
    if (st->abort_ev)
        event_free(st->abort_ev);
    free(st);
}

/* The client went away (or timed out) mid-stream: evhttp has detached the
 * request from the dying connection, so it is ours to free. */
static void stream_closed(struct evhttp_connection *evcon, void *arg)
{
    http_stream *st = arg;
    (void)evcon;
    char hex[65];
    cd_hex_encode_rev(hex, st->hash, 32);
    cd_log_debug("http: block %s: client gone after %" PRIu64 " of %" PRIu64 " bytes", hex, st->off,
                 st->loc.size);
    if (evhttp_request_get_connection(st->req) == NULL)
        evhttp_send_reply_end(st->req); /* frees a detached request */
    stream_free(st);
}

/* After a read error the status line is already sent: close the connection
 * so the client sees a short body (Content-Length not reached). Runs from a
 * zero timer, outside evhttp's callbacks. */
static void stream_abort_cb(evutil_socket_t fd, short what, void *arg)
{
    http_stream *st = arg;
    (void)fd;
    (void)what;
    struct evhttp_connection *evcon = st->evcon;
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    stream_free(st);
    evhttp_connection_free(evcon); /* frees the request too */
}

static void stream_next(struct evhttp_connection *evcon, void *arg);

static void stream_start_piece(http_stream *st)
{
    if (st->off >= st->loc.size) {
        evhttp_connection_set_closecb(st->evcon, NULL, NULL);
        evhttp_send_reply_end(st->req);
        stream_free(st);
        return;
    }
    size_t n = (size_t)CD_MIN((uint64_t)HTTP_PIECE, st->loc.size - st->off);
    int rc = cd_lookup_block_read(st->srv->lk, &st->loc, st->off, st->piece, n);
    if (rc != CD_LOOKUP_OK) {
        char hex[65];
        cd_hex_encode_rev(hex, st->hash, 32);
        cd_log_error("http: block %s: %s; closing the connection", hex,
                     cd_lookup_error(st->srv->lk));
        st->abort_ev = evtimer_new(st->srv->base, stream_abort_cb, st);
        struct timeval now = {0, 0};
        evtimer_add(st->abort_ev, &now);
        return;
    }
    st->off += n;
    /* by reference, no copy: the callback runs once evhttp's output buffer
     * is empty, i.e. the piece is in the kernel, so it can be reused */
    evbuffer_add_reference(st->buf, st->piece, n, NULL, NULL);
    evhttp_send_reply_chunk_with_cb(st->req, st->buf, stream_next, st);
}

/* The previous piece is out of our buffers: read the next one. */
static void stream_next(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    stream_start_piece(arg);
}

static int h_block(http_srv *s, struct evhttp_request *req, http_args *a)
{
    uint8_t hash[32];
    cd_block_loc loc;
    if (!block_resolve(s, req, a->seg[1], hash, &loc))
        return H_DONE;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char len[32];
    snprintf(len, sizeof(len), "%" PRIu64, loc.size);
    evhttp_add_header(h, "Content-Type", "application/octet-stream");
    evhttp_add_header(h, "Content-Length", len);
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        evhttp_send_reply(req, 200, "OK", NULL);
        return H_DONE;
    }
    http_stream *st = cd_xcalloc(1, sizeof(*st));
    st->srv = s;
    st->req = req;
    st->evcon = evhttp_request_get_connection(req);
    st->loc = loc;
    memcpy(st->hash, hash, 32);
    st->buf = evbuffer_new();
    st->piece = cd_xmalloc(HTTP_PIECE);
    s->streams++;
    evhttp_send_reply_start(req, 200, "OK");
    evhttp_connection_set_closecb(st->evcon, stream_closed, st);
    stream_start_piece(st);
    return H_DONE;
}

static int h_spender(http_srv *s, struct evhttp_request *req, http_args *a)
{
    uint8_t txid[32];
    uint64_t n;
    if (parse_hash(a->seg[1], txid, 1) != 0) {
        reply_error(req, 400, "bad txid '%s': expected 64 hex digits", a->seg[1]);
        return H_DONE;
    }
    if (parse_uint(a->seg[2], INT32_MAX, &n) != 0) {
        reply_error(req, 400, "bad output index '%s'", a->seg[2]);
        return H_DONE;
    }
    cd_lookup_spend sp;
    int rc = cd_lookup_spender(s->lk, txid, (uint32_t)n, &sp);
    if (rc != CD_LOOKUP_OK)
        return lookup_failed(s, req, rc);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "{", 1);
    json_hash(b, "txid", sp.txid, 1);
    evbuffer_add_printf(b, ", \"input\": %" PRIu32 ", \"mempool\": %s", sp.in_idx,
                        sp.mempool ? "true" : "false");
    if (sp.mempool) {
        evbuffer_add_printf(b, ", \"height\": null, \"block_hash\": null}\n");
    } else {
        evbuffer_add_printf(b, ", \"height\": %" PRId32, sp.height);
        json_hash(b, "block_hash", sp.block_hash, 0);
        evbuffer_add_printf(b, "}\n");
    }
    reply_json(req, 200, b);
    evbuffer_free(b);
    return H_DONE;
}

static int h_history(http_srv *s, struct evhttp_request *req, http_args *a)
{
    uint8_t key[32];
    if (parse_hash(a->seg[1], key, 0) != 0) {
        reply_error(req, 400, "bad key '%s': expected the 64-hex sha256 of the pushed bytes",
                    a->seg[1]);
        return H_DONE;
    }
    uint64_t limit = HTTP_HIST_DEFAULT;
    if (arg(a, "limit") && (parse_uint(arg(a, "limit"), HTTP_HIST_MAX, &limit) != 0 || !limit)) {
        reply_error(req, 400, "bad limit: expected 1..%d", HTTP_HIST_MAX);
        return H_DONE;
    }
    cd_lookup_hist after;
    if (arg(a, "after") && cd_lookup_cursor_parse(arg(a, "after"), &after) != 0) {
        reply_error(req, 400, "bad after: expected the \"next\" value of the previous page");
        return H_DONE;
    }
    cd_lookup_hist *rows = cd_xcalloc((size_t)limit, sizeof(*rows));
    size_t n = 0;
    int rc =
        cd_lookup_history(s->lk, key, arg(a, "after") ? &after : NULL, (uint32_t)limit, rows, &n);
    if (rc != CD_LOOKUP_OK) {
        free(rows);
        return lookup_failed(s, req, rc);
    }
    struct evbuffer *b = evbuffer_new();
    char khex[65];
    cd_hex_encode(khex, key, 32);
    evbuffer_add_printf(b, "{\"key\": \"%s\", \"history\": [", khex);
    for (size_t i = 0; i < n; i++) {
        evbuffer_add_printf(b, "%s{", i ? ", " : "");
        json_hash(b, "txid", rows[i].txid, 1);
        evbuffer_add_printf(b,
                            ", \"height\": %" PRId32 ", \"tx_pos\": %" PRIu32 ", \"idx\": %" PRIu32
                            ", \"flags\": %" PRIu32 "}",
                            rows[i].height, rows[i].tx_pos, rows[i].idx, rows[i].flags);
    }
    evbuffer_add_printf(b, "], \"next\": ");
    if (n == limit) {
        char cur[64];
        cd_lookup_cursor_format(&rows[n - 1], cur, sizeof(cur));
        evbuffer_add_printf(b, "\"%s\"}\n", cur);
    } else {
        evbuffer_add_printf(b, "null}\n");
    }
    free(rows);
    reply_json(req, 200, b);
    evbuffer_free(b);
    return H_DONE;
}

/* ---- routing ---- */

typedef struct http_route {
    const char *pattern[6]; /* segments after /v1; "*" = any one segment */
    int needs_pg;
    int (*fn)(http_srv *s, struct evhttp_request *req, http_args *a);
} http_route;

static const http_route routes[] = {
    {{"status", NULL}, 0, h_status},
    {{"tip", NULL}, 1, h_tip},
    {{"tx", "*", NULL}, 1, h_tx},
    {{"tx", "*", "proof", NULL}, 1, h_proof},
    {{"block", "*", NULL}, 0, h_block},
    {{"block", "*", "header", NULL}, 0, h_header},
    {{"outpoint", "*", "*", "spender", NULL}, 1, h_spender},
    {{"pushdata", "*", "history", NULL}, 1, h_history},
};

static const http_route *route_find(const http_args *a)
{
    for (size_t r = 0; r < CD_ARRAY_LEN(routes); r++) {
        const http_route *rt = &routes[r];
        int i = 0;
        while (rt->pattern[i] && i < a->nseg &&
               (!strcmp(rt->pattern[i], "*") || !strcmp(rt->pattern[i], a->seg[i])))
            i++;
        if (!rt->pattern[i] && i == a->nseg)
            return rt;
    }
    return NULL;
}

/* Splits "/v1/a/b" into segments after "v1". Returns 0, or -1 if the path
 * is not under /v1 or has empty/too many segments. */
static int split_path(const char *path, http_args *a)
{
    if (strlen(path) >= sizeof(a->pathbuf) || strncmp(path, "/v1/", 4) != 0)
        return -1;
    snprintf(a->pathbuf, sizeof(a->pathbuf), "%s", path + 4);
    a->nseg = 0;
    char *p = a->pathbuf;
    for (;;) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        if (*p == '\0' || a->nseg == (int)CD_ARRAY_LEN(a->seg))
            return -1;
        a->seg[a->nseg++] = p;
        if (!slash)
            return 0;
        p = slash + 1;
    }
}

static void handle(struct evhttp_request *req, void *arg)
{
    http_srv *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    if (!uri) { /* evhttp calls back without a URI after some read errors */
        reply_error(req, 400, "bad request");
        return;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    cd_log_debug("http: %s %s",
                 cmd == EVHTTP_REQ_GET    ? "GET"
                 : cmd == EVHTTP_REQ_HEAD ? "HEAD"
                                          : "-",
                 uri);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        reply_error(req, 405, "only GET and HEAD are supported");
        return;
    }
    http_args a;
    memset(&a, 0, sizeof(a));
    TAILQ_INIT(&a.query);
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    const char *q = u ? evhttp_uri_get_query(u) : NULL;
    if (!path || split_path(path, &a) != 0) {
        reply_error(req, 404, "unknown endpoint (see docs/QUERIES.md, HTTP API)");
        return;
    }
    if (q && evhttp_parse_query_str(q, &a.query) != 0) {
        reply_error(req, 400, "bad query string");
        evhttp_clear_headers(&a.query);
        return;
    }
    const http_route *rt = route_find(&a);
    if (!rt) {
        reply_error(req, 404, "unknown endpoint (see docs/QUERIES.md, HTTP API)");
    } else if (rt->needs_pg && !s->cfg->index) {
        reply_error(req, 503, "the index is off (index = off): no database to query");
    } else {
        int done = 0;
        /* a PostgreSQL restart breaks the session; the first request after
         * it runs again on a new connection instead of failing */
        for (int attempt = 0; attempt < 2 && !done; attempt++) {
            if (rt->needs_pg && !srv_pg(s))
                break;
            done = rt->fn(s, req, &a) == H_DONE;
            if (!done)
                s->pg_next_try = 0; /* reconnect now */
        }
        if (!done)
            reply_error(req, 503, "database unavailable");
    }
    evhttp_clear_headers(&a.query);
}

/* ---- process ---- */

static void on_chan(evutil_socket_t fd, short what, void *arg)
{
    http_srv *s = arg;
    char buf[64];
    (void)what;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        cd_log_info("http: controller gone; exiting");
        event_base_loopbreak(s->base);
    }
}

/* SIGTERM arrives through a signalfd: no handler runs, and libevent's own
 * signal handling stays with the controller's event_base this process
 * inherited (libevent allows one signal-handling base per process). */
static void on_term(evutil_socket_t fd, short what, void *arg)
{
    http_srv *s = arg;
    struct signalfd_siginfo si;
    (void)what;
    if (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        event_base_loopbreak(s->base);
}

int cd_http_server_run(const cd_config *cfg, int listen_fd, int chan_fd)
{
    http_srv s;
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    s.base = event_base_new();
    s.http = s.base ? evhttp_new(s.base) : NULL;
    if (!s.http) {
        cd_log_error("http: cannot create the event loop");
        return CD_EXIT_FAILURE;
    }
    evutil_make_socket_nonblocking(listen_fd);
    if (!evhttp_accept_socket_with_handle(s.http, listen_fd)) {
        cd_log_error("http: cannot accept on the listening socket");
        return CD_EXIT_FAILURE;
    }
    evhttp_set_timeout(s.http, HTTP_TIMEOUT_S);
    evhttp_set_max_headers_size(s.http, 16384);
    evhttp_set_max_body_size(s.http, 65536);
    /* every method reaches handle(), which answers 405 with JSON itself
     * (evhttp's own refusal is a bare 501) */
    evhttp_set_allowed_methods(s.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                           EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                           EVHTTP_REQ_PATCH | EVHTTP_REQ_TRACE |
                                           EVHTTP_REQ_CONNECT);
    evhttp_set_gencb(s.http, handle, &s);
    s.lk = cd_lookup_new(cfg->datadir, cfg->net, CD_LOOKUP_PREPARE);

    evutil_make_socket_nonblocking(chan_fd);
    struct event *chan = event_new(s.base, chan_fd, EV_READ | EV_PERSIST, on_chan, &s);
    event_add(chan, NULL);
    sigset_t ts;
    sigemptyset(&ts);
    sigaddset(&ts, SIGTERM);
    sigprocmask(SIG_BLOCK, &ts, NULL);
    int tfd = signalfd(-1, &ts, SFD_NONBLOCK | SFD_CLOEXEC);
    struct event *term =
        tfd >= 0 ? event_new(s.base, tfd, EV_READ | EV_PERSIST, on_term, &s) : NULL;
    if (term)
        event_add(term, NULL);
    else /* no signalfd: SIGTERM keeps its default action */
        sigprocmask(SIG_UNBLOCK, &ts, NULL);
    cd_log_info("http: serving (pid %d)", (int)getpid());
    event_base_dispatch(s.base);

    if (s.streams)
        cd_log_info("http: stopping (%d block download(s) cut short)", s.streams);
    else
        cd_log_info("http: stopping");
    evhttp_free(s.http); /* closes connections (stream close callbacks run) */
    event_free(chan);
    if (term)
        event_free(term);
    if (tfd >= 0)
        close(tfd);
    if (s.pg)
        PQfinish(s.pg);
    cd_lookup_free(s.lk);
    event_base_free(s.base);
    close(chan_fd);
    return CD_EXIT_OK;
}
