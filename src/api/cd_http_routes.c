/*
 * cd_http_routes.c - the HTTP API's routes: the route table (path pattern,
 * needs PostgreSQL, handler, query parameters), request parsing (every path element validated
 * before any lookup), the handlers of the endpoints and block streaming.
 * New endpoints are a line in the table and a handler here. The server
 * process, replies and the PostgreSQL session are cd_http_server.c;
 * endpoints are documented in docs/QUERIES.md.
 */
#include "cd_http.h"
#include "cd_http_int.h"
#include "cd_http_cdb.h"
#include "cd_http_hooks.h"
#include "cd_http_req.h"
#include "cd_status.h"

#include "cd_log.h"
#include "cd_util.h"
#include "cd_lookup.h"
#include "cd_wallet.h"

#include <sys/queue.h> /* TAILQ_INIT for evkeyvalq */

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Decimal 0..max without sign or leading junk (cd_http_req.c, fuzzed). */
static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    return cd_http_parse_uint(s, max, out);
}

static int parse_flag(const char *s, int *out)
{
    return cd_http_parse_flag(s, out);
}

/* ---- endpoints ---- */

static int h_status(http_srv *s, struct evhttp_request *req, http_args *a)
{
    (void)a;
    cd_status st;
    if (cd_status_read(s->cfg->datadir, &st) < 0) {
        cd_http_reply_error(req, 503, "cannot read the status file: %s", strerror(errno));
        return H_DONE;
    }
    int alive = cd_status_pid_alive(&st) && strcmp(st.state, "stopped") != 0;
    char *text = cd_status_json(&st, alive, (int64_t)time(NULL));
    if (!text) {
        cd_http_reply_error(req, 500, "cannot format the status file as JSON");
        return H_DONE;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, strlen(text));
    free(text);
    cd_http_reply_json(req, 200, b);
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
        return cd_http_lookup_failed(s, req, rc);
    cd_http_reply_jobj(
        req, 200, json_pack("{s:i, s:o}", "height", (int)height, "hash", cd_http_json_hash(hash)));
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
        cd_http_reply_error(req, 400, "bad txid '%s': expected 64 hex digits", a->seg[1]);
        return H_DONE;
    }
    if (tx_format(req, a, &fmt) != 0) {
        cd_http_reply_error(req, 400, "bad format: expected hex, raw or json");
        return H_DONE;
    }
    cd_lookup_tx tx;
    int rc = cd_lookup_tx_find(s->lk, txid, 1, &tx);
    if (rc != CD_LOOKUP_OK)
        return cd_http_lookup_failed(s, req, rc);
    if (fmt == FMT_JSON) {
        json_t *o;
        if (tx.mempool)
            o = json_pack("{s:o, s:b, s:I}", "txid", cd_http_json_hash(tx.txid), "mempool", 1,
                          "size", (json_int_t)tx.size);
        else
            o = json_pack("{s:o, s:b, s:o, s:i, s:I, s:I, s:I}", "txid", cd_http_json_hash(tx.txid),
                          "mempool", 0, "block_hash", cd_http_json_hash(tx.block_hash), "height",
                          (int)tx.height, "position", (json_int_t)tx.pos, "offset",
                          (json_int_t)tx.offset, "size", (json_int_t)tx.size);
        cd_http_reply_jobj(req, 200, o);
        return H_DONE;
    }
    struct evbuffer *b = evbuffer_new();
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
        return cd_http_lookup_failed(s, req, rc);
    }
    if (fmt == FMT_RAW) {
        evbuffer_add(b, raw, (size_t)tx.size);
        cd_http_reply(req, 200, "application/octet-stream", b);
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
        cd_http_reply(req, 200, "text/plain; charset=utf-8", b);
    }
    free(raw);
    evbuffer_free(b);
    return H_DONE;
}

static int h_proof(http_srv *s, struct evhttp_request *req, http_args *a)
{
    uint8_t txid[32];
    if (parse_hash(a->seg[1], txid, 1) != 0) {
        cd_http_reply_error(req, 400, "bad txid '%s': expected 64 hex digits", a->seg[1]);
        return H_DONE;
    }
    const char *target = arg(a, "target") ? arg(a, "target") : "hash";
    if (strcmp(target, "hash") && strcmp(target, "header") && strcmp(target, "merkleroot")) {
        cd_http_reply_error(req, 400, "bad target: expected hash, header or merkleroot");
        return H_DONE;
    }
    int include_tx = 0;
    if (parse_flag(arg(a, "include_tx"), &include_tx) != 0) {
        cd_http_reply_error(req, 400, "bad include_tx: expected 0 or 1");
        return H_DONE;
    }
    cd_lookup_tx tx;
    /* the mempool too: a tx there gets "not in a block yet" (404), not
     * "unknown" */
    int rc = cd_lookup_tx_find(s->lk, txid, 1, &tx);
    if (rc != CD_LOOKUP_OK)
        return cd_http_lookup_failed(s, req, rc);
    uint8_t branch[CD_LOOKUP_MAX_DEPTH * 32];
    size_t depth = 0;
    rc = cd_lookup_tx_branch(s->lk, &tx, branch, &depth);
    if (rc != CD_LOOKUP_OK)
        return cd_http_lookup_failed(s, req, rc);
    uint8_t *raw = NULL;
    if (include_tx && (rc = cd_lookup_tx_read(s->lk, &tx, &raw)) != CD_LOOKUP_OK)
        return cd_http_lookup_failed(s, req, rc);
    char *json = cd_lookup_proof_json(&tx, branch, depth, target, raw);
    free(raw);
    if (!json) { /* the target was checked above */
        cd_http_reply_error(req, 500, "out of memory");
        return H_DONE;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, json, strlen(json));
    cd_http_reply_json(req, 200, b);
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
        cd_http_reply_error(req, 400, "bad block id '%s': expected a 64-hex block hash or a height",
                            id);
        return 0;
    }
    int rc = CD_LOOKUP_OK;
    if (kind == 0)
        rc = cd_lookup_block_hash_at(s->lk, height, hash);
    if (rc == CD_LOOKUP_OK)
        rc = cd_lookup_block_get(s->lk, hash, loc);
    if (rc != CD_LOOKUP_OK) {
        /* block lookups read LMDB only, so no lost session to retry on; if
         * one ever did, the client still gets an answer */
        if (cd_http_lookup_failed(s, req, rc) == H_DB_LOST)
            cd_http_reply_error(req, 503, "database unavailable");
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
    json_t *height = loc.height != UINT32_MAX ? json_integer(loc.height) : json_null();
    cd_http_reply_jobj(req, 200,
                       json_pack("{s:o, s:o, s:s, s:I, s:I}", "hash", cd_http_json_hash(hash),
                                 "height", height, "header", hh, "size", (json_int_t)loc.size,
                                 "tx_count", (json_int_t)loc.tx_count));
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
    /* a bit flipped on disk is refused, not served (issue 11, F7) */
    int crc = s->cfg->serve_block_check ? cd_lookup_block_check(s->lk, hash, &loc) : CD_LOOKUP_OK;
    if (crc != CD_LOOKUP_OK)
        return cd_http_lookup_failed(s, req, crc);
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
        cd_http_reply_error(req, 400, "bad txid '%s': expected 64 hex digits", a->seg[1]);
        return H_DONE;
    }
    if (parse_uint(a->seg[2], INT32_MAX, &n) != 0) {
        cd_http_reply_error(req, 400, "bad output index '%s'", a->seg[2]);
        return H_DONE;
    }
    cd_lookup_spend sp;
    int rc = cd_lookup_spender(s->lk, txid, (uint32_t)n, &sp);
    if (rc != CD_LOOKUP_OK)
        return cd_http_lookup_failed(s, req, rc);
    json_t *o;
    if (sp.mempool)
        o = json_pack("{s:o, s:I, s:b, s:n, s:n}", "txid", cd_http_json_hash(sp.txid), "input",
                      (json_int_t)sp.in_idx, "mempool", 1, "height", "block_hash");
    else
        o = json_pack("{s:o, s:I, s:b, s:i, s:o}", "txid", cd_http_json_hash(sp.txid), "input",
                      (json_int_t)sp.in_idx, "mempool", 0, "height", (int)sp.height, "block_hash",
                      cd_http_json_hash(sp.block_hash));
    cd_http_reply_jobj(req, 200, o);
    return H_DONE;
}

static int h_history(http_srv *s, struct evhttp_request *req, http_args *a)
{
    uint8_t key[32];
    if (parse_hash(a->seg[1], key, 0) != 0) {
        cd_http_reply_error(
            req, 400, "bad key '%s': expected the 64-hex sha256 of the pushed bytes", a->seg[1]);
        return H_DONE;
    }
    uint64_t limit = HTTP_HIST_DEFAULT;
    if (arg(a, "limit") && (parse_uint(arg(a, "limit"), HTTP_HIST_MAX, &limit) != 0 || !limit)) {
        cd_http_reply_error(req, 400, "bad limit: expected 1..%d", HTTP_HIST_MAX);
        return H_DONE;
    }
    cd_lookup_hist after;
    if (arg(a, "after") && cd_lookup_cursor_parse(arg(a, "after"), &after) != 0) {
        cd_http_reply_error(req, 400,
                            "bad after: expected the \"next\" value of the previous page");
        return H_DONE;
    }
    cd_lookup_hist *rows = cd_xcalloc((size_t)limit, sizeof(*rows));
    size_t n = 0;
    int rc =
        cd_lookup_history(s->lk, key, arg(a, "after") ? &after : NULL, (uint32_t)limit, rows, &n);
    if (rc != CD_LOOKUP_OK) {
        free(rows);
        return cd_http_lookup_failed(s, req, rc);
    }
    char khex[65];
    cd_hex_encode(khex, key, 32);
    json_t *hist = json_array();
    for (size_t i = 0; i < n && hist; i++) {
        json_t *row =
            json_pack("{s:o, s:i, s:I, s:I, s:I}", "txid", cd_http_json_hash(rows[i].txid),
                      "height", (int)rows[i].height, "tx_pos", (json_int_t)rows[i].tx_pos, "idx",
                      (json_int_t)rows[i].idx, "flags", (json_int_t)rows[i].flags);
        if (json_array_append_new(hist, row) != 0) {
            json_decref(hist);
            hist = NULL;
        }
    }
    json_t *next = json_null();
    if (n == limit) {
        char cur[64];
        cd_lookup_cursor_format(&rows[n - 1], cur, sizeof(cur));
        next = json_string(cur);
    }
    free(rows);
    cd_http_reply_jobj(req, 200,
                       json_pack("{s:s, s:o, s:o}", "key", khex, "history", hist, "next", next));
    return H_DONE;
}

/* ---- wallet queries (issue 14): /v1/{address,scripthash,pushdata}/<key>/
 * {utxos,balance,history}; pushdata's /history keeps its pushdata-row
 * answer (h_history), its tx history is /txhistory. Queries: cd_wallet.c,
 * shared with conduit-cli. ---- */

static int h_wallet(http_srv *s, struct evhttp_request *req, http_args *a)
{
    char err[512], next[64];
    cd_wallet_key k;
    if (cd_wallet_key_parse(a->seg[0], a->seg[1], s->cfg->net, &k, err, sizeof(err)) != 0) {
        cd_http_reply_error(req, 400, "%s", err);
        return H_DONE;
    }
    const char *what = a->seg[2];
    uint64_t limit = CD_WALLET_DEFAULT_LIMIT;
    if (arg(a, "limit") &&
        (parse_uint(arg(a, "limit"), CD_WALLET_MAX_LIMIT, &limit) != 0 || !limit)) {
        cd_http_reply_error(req, 400, "bad limit: expected 1..%d", CD_WALLET_MAX_LIMIT);
        return H_DONE;
    }
    int with_script = 0;
    if (parse_flag(arg(a, "script"), &with_script) != 0) {
        cd_http_reply_error(req, 400, "bad script: expected true or false");
        return H_DONE;
    }
    json_t *rows = NULL;
    int rc;
    next[0] = 0;
    if (!strcmp(what, "balance"))
        rc = cd_wallet_balance(s->pg, &k, &rows, err, sizeof(err));
    else if (!strcmp(what, "utxos"))
        rc = cd_wallet_utxos(s->pg, s->lk, &k, (uint32_t)limit, arg(a, "after"), with_script, &rows,
                             next, err, sizeof(err));
    else
        rc = cd_wallet_history(s->pg, &k, (uint32_t)limit, arg(a, "after"), &rows, next, err,
                               sizeof(err));
    if (rc == CD_LOOKUP_EINPUT) {
        cd_http_reply_error(req, 400, "%s", err);
        return H_DONE;
    }
    if (rc != 0) {
        if (PQstatus(s->pg) != CONNECTION_OK)
            return H_DB_LOST;
        cd_log_warn("http: %s", err);
        cd_http_reply_error(req, 500, "%s", err);
        return H_DONE;
    }
    if (!strcmp(what, "balance")) {
        cd_http_reply_jobj(req, 200, rows);
        return H_DONE;
    }
    cd_http_reply_jobj(req, 200,
                       json_pack("{s:o, s:o}", !strcmp(what, "utxos") ? "utxos" : "history", rows,
                                 "next", next[0] ? json_string(next) : json_null()));
    return H_DONE;
}

extern const char cd_http_openapi_json[]; /* cd_http_openapi.c (generated) */
extern const size_t cd_http_openapi_len;

static int h_openapi(http_srv *s, struct evhttp_request *req, http_args *a)
{
    (void)s;
    (void)a;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_reference(b, cd_http_openapi_json, cd_http_openapi_len, NULL, NULL);
    cd_http_reply_json(req, 200, b);
    evbuffer_free(b);
    return H_DONE;
}

/* GET /v1/events, /v1/ws: the push-notification streams
 * (cd_http_events_cli.c; they keep their own PostgreSQL connection). */
static int h_events(http_srv *s, struct evhttp_request *req, http_args *a)
{
    cd_http_events_sse(s, req, arg(a, "kinds"), arg(a, "keys"), arg(a, "outpoints"),
                       arg(a, "since"), arg(a, "sub"));
    return H_DONE;
}

static int h_ws(http_srv *s, struct evhttp_request *req, http_args *a)
{
    (void)a;
    cd_http_events_ws(s, req);
    return H_DONE;
}

/* ---- routing ---- */

typedef struct http_route {
    const char *pattern[6]; /* segments after /v1; "*" = any one segment */
    int needs_pg;
    int (*fn)(http_srv *s, struct evhttp_request *req, http_args *a);
    /* The query parameters the route takes, separated by spaces; NULL:
     * none. Any other parameter (or one given twice) is a 400
     * "unknown_parameter" / "bad_parameter" before the handler runs, so a
     * typo (?fromat=raw) is never silently answered with the default. The
     * route and these parameters must be in docs/openapi.json (checked by
     * cd_http_openapi_check, tests/unit/api). */
    const char *params;
} http_route;

static const http_route routes[] = {
    {{"status", NULL}, 0, h_status, NULL},
    {{"tip", NULL}, 1, h_tip, NULL},
    {{"tx", "*", NULL}, 1, h_tx, "format"},
    {{"tx", "*", "proof", NULL}, 1, h_proof, "target include_tx"},
    {{"block", "*", NULL}, 0, h_block, NULL},
    {{"block", "*", "header", NULL}, 0, h_header, NULL},
    {{"outpoint", "*", "*", "spender", NULL}, 1, h_spender, NULL},
    {{"pushdata", "*", "history", NULL}, 1, h_history, "limit after"},
    {{"pushdata", "*", "txhistory", NULL}, 1, h_wallet, "limit after"},
    {{"pushdata", "*", "utxos", NULL}, 1, h_wallet, "limit after script"},
    {{"pushdata", "*", "balance", NULL}, 1, h_wallet, NULL},
    {{"address", "*", "utxos", NULL}, 1, h_wallet, "limit after script"},
    {{"address", "*", "balance", NULL}, 1, h_wallet, NULL},
    {{"address", "*", "history", NULL}, 1, h_wallet, "limit after"},
    {{"scripthash", "*", "utxos", NULL}, 1, h_wallet, "limit after script"},
    {{"scripthash", "*", "balance", NULL}, 1, h_wallet, NULL},
    {{"scripthash", "*", "history", NULL}, 1, h_wallet, "limit after"},
    {{"openapi.json", NULL}, 0, h_openapi, NULL},
    {{"events", NULL}, 0, h_events, "kinds keys outpoints since sub"},
    {{"ws", NULL}, 0, h_ws, NULL},
};

/* 1 if `name` is a word of the space-separated list (NULL: empty). */
static int param_declared(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        while (*p == ' ')
            p++;
        size_t w = strcspn(p, " ");
        if (w == n && w > 0 && memcmp(p, name, n) == 0)
            return 1;
        p += w;
    }
    return 0;
}

/* Replies 400 and returns -1 if the query has a parameter the route does
 * not declare, or one twice; else 0. */
static int check_params(struct evhttp_request *req, const http_route *rt, http_args *a)
{
    struct evkeyval *kv, *k2;
    TAILQ_FOREACH(kv, &a->query, next) {
        if (!param_declared(rt->params, kv->key)) {
            cd_http_reply_error_code(req, 400, "unknown_parameter",
                                     "unknown query parameter '%s'%s%s", kv->key,
                                     rt->params ? "; this endpoint takes: " : "; this endpoint "
                                                                               "takes none",
                                     rt->params ? rt->params : "");
            return -1;
        }
        for (k2 = TAILQ_NEXT(kv, next); k2; k2 = TAILQ_NEXT(k2, next)) {
            if (!strcmp(kv->key, k2->key)) {
                cd_http_reply_error_code(req, 400, "bad_parameter",
                                         "query parameter '%s' given twice", kv->key);
                return -1;
            }
        }
    }
    return 0;
}

static const http_route *route_find(const http_args *a)
{
    int r = cd_http_route_find(a->seg, a->nseg);
    return r < 0 ? NULL : &routes[r];
}

/* The table seen from cd_http_req.h (route_find above; the fuzz target). */
int cd_http_route_find(char *const *seg, int nseg)
{
    for (size_t r = 0; r < CD_ARRAY_LEN(routes); r++)
        if (cd_http_route_match(routes[r].pattern, seg, nseg))
            return (int)r;
    return -1;
}

const char *const *cd_http_route_pattern(size_t i)
{
    return i < CD_ARRAY_LEN(routes) ? routes[i].pattern : NULL;
}

/* Splits "/v1/a/b" into segments after "v1". Returns 0, or -1 if the path
 * is not under /v1 or has empty/too many segments. */
static int split_path(const char *path, http_args *a)
{
    return cd_http_split_path(path, "/v1/", a->pathbuf, sizeof(a->pathbuf), a->seg,
                              (int)CD_ARRAY_LEN(a->seg), &a->nseg);
}

/* ---- the OpenAPI document against the table ---- */

/* 1 if the OpenAPI path ("/v1/tx/{txid}/proof") is the route's pattern
 * (segments after /v1). */
static int path_is_route(const char *path, const http_route *rt)
{
    return strncmp(path, "/v1/", 4) == 0 &&
           cd_http_path_match(rt->pattern, path + 3, CD_HTTP_MATCH_OPENAPI, NULL);
}

int cd_http_openapi_check(const char *text, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    if (text == NULL) {
        text = cd_http_openapi_json;
        len = cd_http_openapi_len;
    }
    json_t *doc = json_loadb(text, len, 0, &je);
    json_t *paths = doc ? json_object_get(doc, "paths") : NULL;
    int rc = -1;
    if (!json_is_object(paths)) {
        snprintf(err, errlen, "openapi.json: no paths object (%s)", doc ? "" : je.text);
        goto out;
    }
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item) {
        if (cd_http_sdk_owns_path(path) || cd_http_hooks_owns_path(path))
            continue; /* the SDK's table and ARC (cd_http_sdk.c), webhooks */
        const http_route *rt = NULL;
        for (size_t r = 0; r < CD_ARRAY_LEN(routes) && !rt; r++)
            if (path_is_route(path, &routes[r]))
                rt = &routes[r];
        if (!rt) {
            snprintf(err, errlen, "openapi.json: %s is not a route of cd_http_routes.c", path);
            goto out;
        }
        json_t *params = json_object_get(json_object_get(item, "get"), "parameters");
        size_t i, nq = 0;
        json_t *prm;
        json_array_foreach(params, i, prm) {
            const char *in = json_string_value(json_object_get(prm, "in"));
            const char *name = json_string_value(json_object_get(prm, "name"));
            if (!in || !name || strcmp(in, "query") != 0)
                continue;
            nq++;
            if (!param_declared(rt->params, name)) {
                snprintf(err, errlen, "openapi.json: %s: query parameter %s not in the route",
                         path, name);
                goto out;
            }
        }
        size_t nr = 0;
        for (const char *p = rt->params; p && *p; p += strcspn(p, " ")) {
            p += strspn(p, " ");
            nr += *p != '\0';
        }
        if (nr != nq) {
            snprintf(err, errlen, "openapi.json: %s: documents %zu query parameters, the route "
                                  "takes %zu (%s)", path, nq, nr, rt->params ? rt->params : "");
            goto out;
        }
    }
    for (size_t r = 0; r < CD_ARRAY_LEN(routes); r++) {
        int found = 0;
        json_object_foreach(paths, path, item) found |= path_is_route(path, &routes[r]);
        if (!found) {
            snprintf(err, errlen, "openapi.json: no path for the route /v1/%s...",
                     routes[r].pattern[0]);
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

void cd_http_handle(struct evhttp_request *req, void *arg)
{
    http_srv *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    if (!uri) { /* evhttp calls back without a URI after some read errors */
        cd_http_reply_error(req, 400, "bad request");
        return;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    cd_log_debug("http: %s %s",
                 cmd == EVHTTP_REQ_GET       ? "GET"
                 : cmd == EVHTTP_REQ_HEAD    ? "HEAD"
                 : cmd == EVHTTP_REQ_OPTIONS ? "OPTIONS"
                                             : "-",
                 uri);
    /* CORS first: browsers read every API's answers the same way */
    int cors = cd_http_cors_headers(s, req);
    if (cd_http_cdb_dispatch(s, req)) /* ConduitDB's API: /, /api/v1/... (cd_http_cdb.c) */
        return;
    if (cd_http_sdk_dispatch(s, req)) /* BUMP, BEEF, /woc, /arc (cd_http_sdk.c) */
        return;
    if (cd_http_hooks_dispatch(s, req)) /* /v1/webhooks (cd_http_hooks.c) */
        return;
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD && cmd != EVHTTP_REQ_OPTIONS) {
        cd_http_reply_error(req, 405, "only GET, HEAD and OPTIONS are supported");
        return;
    }
    http_args a;
    memset(&a, 0, sizeof(a));
    TAILQ_INIT(&a.query);
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    const char *q = u ? evhttp_uri_get_query(u) : NULL;
    if (path && !strcmp(path, "/metrics") && cmd != EVHTTP_REQ_OPTIONS) {
        /* Prometheus's fixed path, outside /v1 and the route table: text,
         * not JSON, and no parameters (docs/OPERATIONS.md, "Metrics") */
        if (q && *q)
            cd_http_reply_error_code(req, 400, "unknown_parameter",
                                     "/metrics takes no query parameters");
        else
            cd_http_metrics(s, req);
        return;
    }
    if (!path || split_path(path, &a) != 0) {
        cd_http_reply_error_code(req, 404, "unknown_endpoint",
                                 "unknown endpoint (see /v1/openapi.json, docs/QUERIES.md)");
        return;
    }
    if (q && evhttp_parse_query_str(q, &a.query) != 0) {
        cd_http_reply_error(req, 400, "bad query string");
        evhttp_clear_headers(&a.query);
        return;
    }
    const http_route *rt = route_find(&a);
    if (!rt) {
        cd_http_reply_error_code(req, 404, "unknown_endpoint",
                                 "unknown endpoint (see /v1/openapi.json, docs/QUERIES.md)");
    } else if (cmd == EVHTTP_REQ_OPTIONS) {
        cd_http_preflight(req, cors);
    } else if (check_params(req, rt, &a) != 0) {
        /* 400 sent */
    } else if (rt->needs_pg && !s->cfg->index) {
        cd_http_reply_error_code(req, 503, "index_off",
                                 "the index is off (index = off): no database to query");
    } else {
        int done = 0;
        /* a PostgreSQL restart breaks the session; the first request after
         * it runs again on a new connection instead of failing */
        for (int attempt = 0; attempt < 2 && !done; attempt++) {
            if (rt->needs_pg && !cd_http_srv_pg(s))
                break;
            done = rt->fn(s, req, &a) == H_DONE;
            if (!done)
                s->pg_next_try = 0; /* reconnect now */
        }
        if (!done)
            cd_http_reply_error_code(req, 503, "db_unavailable", "database unavailable");
    }
    evhttp_clear_headers(&a.query);
}
