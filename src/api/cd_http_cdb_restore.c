/*
 * cd_http_cdb_restore.c - ConduitDB's restoration search (pushdata keys or
 * P2PKH addresses -> every output locked to them, with its spend) and its
 * output-spend batch lookup (docs/CONDUITDB_API.md).
 *
 * Why it exists: a wallet restoring from its keys asks for all their history
 * at once; ConduitDB answered at most 1000 matches per key. Here every match
 * is streamed (no cap) with bounded memory: the query runs as a server-side
 * cursor on a PostgreSQL session of its own (one per stream, at most
 * HTTP_CDB_MAX_STREAMS), HTTP_CDB_PAGE matches are fetched at a time, and
 * the next page is fetched only once the previous one is in the socket
 * (evhttp_send_reply_chunk_with_cb), so a slow client costs one page of
 * memory and holds no lock beyond its read-only snapshot.
 *
 * The 200 status is sent only after the cursor is open and its first page
 * fetched; a failure after that closes the connection without the end
 * marker ("{}" / 0x00), which a client must take as a failure.
 */
#include "cd_http_cdb.h"

#include "cd_cdbq.h"
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_pg.h"
#include "cd_util.h"

#include <sys/queue.h> /* TAILQ_INIT for evkeyvalq */

#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_SIZE 105 /* ">B32s32sI32sI" */

/* ---- request bodies ---- */

/* The request body as a NUL-terminated copy (evhttp caps its size with
 * evhttp_set_max_body_size: 413 before we see it). *len gets its length. */
static char *body_copy(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    char *p = cd_xmalloc(*len + 1);
    evbuffer_copyout(in, p, *len);
    p[*len] = '\0';
    return p;
}

/* Base58check P2PKH address of the daemon's network -> its pushdata key,
 * sha256(hash160) (the key the index holds for the P2PKH output's push).
 * Version bytes: 0x00 mainnet, 0x6f testnet/regtest/STN (the node's
 * chainparams.cpp base58Prefixes[PUBKEY_ADDRESS]). Returns 0 or -1. */
static int address_key(const char *addr, const btc_net *net, uint8_t key[32])
{
    static const char alpha[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    uint8_t d[25] = {0};
    size_t len = strlen(addr);
    if (len < 26 || len > 35)
        return -1;
    for (size_t i = 0; i < len; i++) {
        const char *c = strchr(alpha, addr[i]);
        if (!c || !addr[i])
            return -1;
        unsigned carry = (unsigned)(c - alpha);
        for (int j = 24; j >= 0; j--) {
            carry += 58u * d[j];
            d[j] = (uint8_t)carry;
            carry >>= 8;
        }
        if (carry)
            return -1; /* more than 25 bytes */
    }
    /* leading '1's are leading zero bytes: check the count matches */
    size_t ones = 0, zeros = 0;
    while (ones < len && addr[ones] == '1')
        ones++;
    while (zeros < 25 && d[zeros] == 0)
        zeros++;
    if (ones != zeros)
        return -1;
    uint8_t h[32];
    cd_sha256d(h, d, 21);
    if (memcmp(h, d + 21, 4) != 0)
        return -1;
    uint8_t want = !strcmp(net->name, "main") ? 0x00 : 0x6f;
    if (d[0] != want)
        return -1;
    cd_sha256(key, d + 1, 20);
    return 0;
}

/* ---- the restoration stream ---- */

typedef struct cdb_stream {
    http_srv *srv;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    PGconn *pg;          /* the stream's own session (cursor) */
    int binary;          /* 105-byte records, else JSON lines */
    cd_cdbq_match *page; /* HTTP_CDB_PAGE entries */
    size_t n;            /* matches in page, not yet sent */
    uint64_t sent;       /* matches sent so far */
    struct evbuffer *buf;
    struct event *abort_ev; /* deferred close after a failure */
} cdb_stream;

/* Restoration streams running in all server processes: each server counts
 * its own in the shared table (a dead server's count is zeroed by the
 * controller), so the limit holds for the daemon, not per process. */
static uint32_t streams_running(const http_srv *s)
{
    uint32_t n = 0;
    for (int i = 0; i < HTTP_PROCS; i++)
        n += __atomic_load_n(&s->busy[i].streams, __ATOMIC_ACQUIRE);
    return n;
}

static void streams_add(const http_srv *s, int d)
{
    __atomic_add_fetch(&s->busy[s->proc].streams, (uint32_t)d, __ATOMIC_ACQ_REL);
}

static void stream_free(cdb_stream *st)
{
    streams_add(st->srv, -1);
    if (st->pg) {
        cd_cdbq_restore_close(st->pg);
        PQfinish(st->pg);
    }
    free(st->page);
    evbuffer_free(st->buf);
    if (st->abort_ev)
        event_free(st->abort_ev);
    free(st);
}

/* Appends the page's matches to st->buf. Returns 0, or -1 out of memory. */
static int format_page(cdb_stream *st)
{
    for (size_t i = 0; i < st->n; i++) {
        const cd_cdbq_match *m = &st->page[i];
        if (st->binary) {
            uint8_t r[REC_SIZE];
            r[0] = (uint8_t)m->flags;
            memcpy(r + 1, m->key, 32); /* natural order: ConduitDB reversed it (bug 1) */
            memcpy(r + 33, m->lock_tx, 32);
            cd_put_be32(r + 65, m->lock_idx);
            if (m->spent)
                memcpy(r + 69, m->unlock_tx, 32);
            else
                memset(r + 69, 0, 32);
            cd_put_be32(r + 101, m->unlock_idx);
            evbuffer_add(st->buf, r, sizeof(r));
            continue;
        }
        char key[65], lock[65], unlock[65];
        cd_hex_encode(key, m->key, 32);
        cd_hex_encode_rev(lock, m->lock_tx, 32);
        if (m->spent)
            cd_hex_encode_rev(unlock, m->unlock_tx, 32);
        json_t *o = json_pack(
            "{s:I, s:s, s:s, s:I, s:o, s:I}", "flags", (json_int_t)m->flags, "pushDataHashHex", key,
            "lockingTransactionId", lock, "lockingTransactionIndex", (json_int_t)m->lock_idx,
            "unlockingTransactionId", m->spent ? json_string(unlock) : json_null(),
            "unlockingInputIndex", (json_int_t)m->unlock_idx);
        char *text = o ? json_dumps(o, 0) : NULL;
        json_decref(o);
        if (!text)
            return -1;
        evbuffer_add(st->buf, text, strlen(text));
        evbuffer_add(st->buf, "\n", 1);
        free(text);
    }
    st->sent += st->n;
    st->n = 0;
    return 0;
}

static void stream_closed(struct evhttp_connection *evcon, void *arg)
{
    cdb_stream *st = arg;
    (void)evcon;
    cd_log_debug("http: restoration: client gone after %" PRIu64 " matches", st->sent);
    if (evhttp_request_get_connection(st->req) == NULL)
        evhttp_send_reply_end(st->req); /* frees a detached request */
    stream_free(st);
}

/* After a failure mid-stream: close the connection (no end marker); from a
 * zero timer, outside evhttp's callbacks. */
static void stream_abort_cb(evutil_socket_t fd, short what, void *arg)
{
    cdb_stream *st = arg;
    (void)fd;
    (void)what;
    struct evhttp_connection *evcon = st->evcon;
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    stream_free(st);
    evhttp_connection_free(evcon); /* frees the request too */
}

static void stream_next(struct evhttp_connection *evcon, void *arg);

/* Sends the page in st->page, or the end marker when it is empty. */
static void stream_send(cdb_stream *st)
{
    if (st->n == 0) {
        if (st->binary)
            evbuffer_add(st->buf, "\0", 1);
        else
            evbuffer_add(st->buf, "{}", 2);
        evhttp_send_reply_chunk(st->req, st->buf);
        evhttp_connection_set_closecb(st->evcon, NULL, NULL);
        evhttp_send_reply_end(st->req);
        cd_log_debug("http: restoration: %" PRIu64 " matches sent", st->sent);
        stream_free(st);
        return;
    }
    if (format_page(st) != 0) {
        cd_log_error("http: restoration: out of memory formatting a page; closing");
        st->abort_ev = evtimer_new(st->srv->base, stream_abort_cb, st);
        struct timeval now = {0, 0};
        evtimer_add(st->abort_ev, &now);
        return;
    }
    evhttp_send_reply_chunk_with_cb(st->req, st->buf, stream_next, st);
}

/* The previous page is in the socket: fetch and send the next one. */
static void stream_next(struct evhttp_connection *evcon, void *arg)
{
    cdb_stream *st = arg;
    (void)evcon;
    char err[512];
    int rc = cd_cdbq_restore_fetch(st->pg, st->page, HTTP_CDB_PAGE, &st->n, err, sizeof(err));
    if (rc != CD_LOOKUP_OK) {
        cd_log_error("http: restoration: %s after %" PRIu64 " matches; closing the connection "
                     "(no end marker)",
                     err, st->sent);
        st->abort_ev = evtimer_new(st->srv->base, stream_abort_cb, st);
        struct timeval now = {0, 0};
        evtimer_add(st->abort_ev, &now);
        return;
    }
    stream_send(st);
}

/* Parses {"filterKeys": [...]} into keys (32 bytes each). Returns the key
 * count, or -1 (400 sent). */
static long parse_keys(http_srv *s, struct evhttp_request *req, int p2pkh, uint8_t **keys)
{
    size_t len;
    *keys = NULL;
    char *body = body_copy(req, &len);
    if (len == 0) {
        free(body);
        cd_http_cdb_error(req, 400, "empty body");
        return -1;
    }
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    free(body);
    if (!doc) {
        cd_http_cdb_error(req, 400, "malformed JSON: %s (line %d, column %d)", je.text, je.line,
                          je.column);
        return -1;
    }
    json_t *arr = json_is_object(doc) ? json_object_get(doc, "filterKeys") : NULL;
    if (!json_is_array(arr)) {
        json_decref(doc);
        cd_http_cdb_error(req, 400, "the body must be {\"filterKeys\": [...]}");
        return -1;
    }
    size_t n = json_array_size(arr);
    if (n > HTTP_CDB_MAX_KEYS) {
        json_decref(doc);
        cd_http_cdb_error(req, 400, "too many filterKeys: %zu (at most %d per request)", n,
                          HTTP_CDB_MAX_KEYS);
        return -1;
    }
    uint8_t *k = cd_xmalloc(n * 32 + 1);
    for (size_t i = 0; i < n; i++) {
        const char *v = json_string_value(json_array_get(arr, i));
        int bad = !v;
        if (!bad && p2pkh)
            bad = address_key(v, s->cfg->net, k + i * 32) != 0;
        else if (!bad)
            bad = strlen(v) != 64 || cd_hex_decode(k + i * 32, 32, v) != 0;
        if (bad) {
            char what[80];
            snprintf(what, sizeof(what), "%s", v ? v : "(not a string)");
            json_decref(doc);
            free(k);
            if (p2pkh)
                cd_http_cdb_error(req, 400, "bad address '%s'", what);
            else
                cd_http_cdb_error(req, 400, "bad filter key '%s': expected 64 hex digits", what);
            return -1;
        }
    }
    json_decref(doc);
    *keys = k;
    return (long)n;
}

int cd_http_cdb_restore(http_srv *s, struct evhttp_request *req, int p2pkh)
{
    /* optional ?flags=: the kinds of match (1 OUTPUT, 2 INPUT, 4 DATA);
     * ConduitDB returns OUTPUT matches only, the default */
    unsigned kinds = CD_CDBQ_OUTPUT;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *qs = u ? evhttp_uri_get_query(u) : NULL;
    if (qs) {
        struct evkeyvalq q;
        TAILQ_INIT(&q);
        int bad = evhttp_parse_query_str(qs, &q) != 0;
        const char *f = bad ? NULL : evhttp_find_header(&q, "flags");
        if (f) {
            char *end;
            long v = strtol(f, &end, 10);
            bad = *f == '\0' || *end != '\0' || v < 1 || v > 7;
            kinds = (unsigned)v;
        }
        evhttp_clear_headers(&q);
        if (bad) {
            cd_http_cdb_error(req, 400, "flags must be 1..7 (1 output, 2 input, 4 data)");
            return H_DONE;
        }
    }
    uint8_t *keys;
    long n = parse_keys(s, req, p2pkh, &keys);
    if (n < 0)
        return H_DONE;
    /* reserve first, then count: two servers racing both see the other's
     * reservation and both refuse, rather than both admitting */
    streams_add(s, 1);
    if (streams_running(s) > HTTP_CDB_MAX_STREAMS) {
        streams_add(s, -1);
        free(keys);
        cd_http_cdb_error(req, 503, "too many restoration searches at once; retry");
        return H_DONE;
    }
    /* a session of its own: the cursor's transaction lasts as long as the
     * client takes to read, and the server's session keeps serving */
    const cd_pg_session how = {5, "conduitd-http-restore"};
    PGconn *pg = cd_pg_open(s->cfg, &how);
    if (PQstatus(pg) != CONNECTION_OK) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(pg);
        free(keys);
        streams_add(s, -1);
        cd_log_warn("http: restoration: postgres: %s", msg);
        cd_http_cdb_error(req, 503, "Database is unavailable at present");
        return H_DONE;
    }
    PQclear(PQexec(pg, HTTP_PG_SETUP));
    char err[512];
    int rc = cd_cdbq_restore_open(pg, keys, (size_t)n, kinds, err, sizeof(err));
    free(keys);
    cdb_stream *st = cd_xcalloc(1, sizeof(*st));
    st->page = cd_xcalloc(HTTP_CDB_PAGE, sizeof(*st->page));
    if (rc == CD_LOOKUP_OK)
        rc = cd_cdbq_restore_fetch(pg, st->page, HTTP_CDB_PAGE, &st->n, err, sizeof(err));
    if (rc != CD_LOOKUP_OK) {
        cd_cdbq_restore_close(pg);
        PQfinish(pg);
        free(st->page);
        free(st);
        streams_add(s, -1);
        cd_http_cdb_error(req, 500, "%s", err);
        return H_DONE;
    }
    st->srv = s; /* its reservation above is released by stream_free */
    st->req = req;
    st->evcon = evhttp_request_get_connection(req);
    st->pg = pg;
    st->binary = cd_http_cdb_wants_binary(req);
    st->buf = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type",
                      st->binary ? "application/octet-stream" : "application/json");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "User-Agent", "ConduitDB");
    evhttp_send_reply_start(req, 200, "OK");
    evhttp_connection_set_closecb(st->evcon, stream_closed, st);
    stream_send(st);
    return H_DONE;
}

/* ---- output spends ---- */

long cd_http_cdb_parse_outpoints(struct evhttp_request *req, uint8_t **txids, uint32_t **idx)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    char mt[96] = "";
    if (ct)
        cd_http_cdb_media_type(ct, mt, sizeof(mt));
    int binary = !strcmp(mt, "application/octet-stream");
    if (!binary && strcmp(mt, "application/json")) {
        cd_http_cdb_error(req, 400, "unknown request body content type");
        return -1;
    }
    size_t len;
    char *body = body_copy(req, &len);
    if (len == 0) {
        free(body);
        cd_http_cdb_error(req, 400, "no body");
        return -1;
    }
    size_t n;
    if (binary) {
        if (len % 36 != 0) {
            free(body);
            cd_http_cdb_error(req, 400, "binary request body malformed");
            return -1;
        }
        n = len / 36;
    } else {
        json_error_t je;
        json_t *doc = json_loadb(body, len, 0, &je);
        if (!doc) {
            free(body);
            cd_http_cdb_error(req, 400, "malformed JSON: %s (line %d, column %d)", je.text, je.line,
                              je.column);
            return -1;
        }
        if (!json_is_array(doc)) {
            json_decref(doc);
            free(body);
            cd_http_cdb_error(req, 400, "payload is not a list");
            return -1;
        }
        n = json_array_size(doc);
        if (n <= HTTP_CDB_MAX_OUTPOINTS) {
            *txids = cd_xmalloc(n * 32 + 1);
            *idx = cd_xmalloc(n * 4 + 4);
            for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(doc, i);
                const char *t = json_string_value(json_array_get(e, 0));
                json_t *ix = json_array_get(e, 1);
                if (!json_is_array(e) || json_array_size(e) != 2 || !t || strlen(t) != 64 ||
                    cd_hex_decode_rev(*txids + i * 32, 32, t) != 0 || !json_is_integer(ix) ||
                    json_integer_value(ix) < 0 || json_integer_value(ix) > UINT32_MAX) {
                    json_decref(doc);
                    free(body);
                    free(*txids);
                    free(*idx);
                    cd_http_cdb_error(req, 400, "one or more payload entries are incorrect");
                    return -1;
                }
                (*idx)[i] = (uint32_t)json_integer_value(ix);
            }
        }
        json_decref(doc);
    }
    if (n > HTTP_CDB_MAX_OUTPOINTS) {
        free(body);
        if (!binary) {
            cd_http_cdb_error(req, 400, "too many outpoints: %zu (at most %d per request)", n,
                              HTTP_CDB_MAX_OUTPOINTS);
            return -1;
        }
        cd_http_cdb_error(req, 400, "too many outpoints: %zu (at most %d per request)", n,
                          HTTP_CDB_MAX_OUTPOINTS);
        return -1;
    }
    if (binary) {
        *txids = cd_xmalloc(n * 32 + 1);
        *idx = cd_xmalloc(n * 4 + 4);
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = (const uint8_t *)body + i * 36;
            memcpy(*txids + i * 32, p, 32);
            (*idx)[i] = cd_be32(p + 32);
        }
    }
    free(body);
    return (long)n;
}

int cd_http_cdb_output_spend(http_srv *s, struct evhttp_request *req)
{
    uint8_t *txids = NULL;
    uint32_t *idx = NULL;
    long n = cd_http_cdb_parse_outpoints(req, &txids, &idx);
    if (n < 0)
        return H_DONE;
    return cd_http_cdb_answer_spends(s, req, txids, idx, (size_t)n);
}

int cd_http_cdb_answer_spends(http_srv *s, struct evhttp_request *req, uint8_t *txids,
                              uint32_t *idx, size_t n)
{
    cd_cdbq_spend *sp = NULL;
    size_t ns = 0;
    char err[512];
    int rc = cd_cdbq_output_spends(s->pg, txids, idx, n, &sp, &ns, err, sizeof(err));
    free(txids);
    free(idx);
    if (rc != CD_LOOKUP_OK) {
        if (rc == CD_LOOKUP_EDB && cd_http_cdb_pg_lost(s))
            return H_DB_LOST;
        cd_http_cdb_error(req, 500, "%s", err);
        return H_DONE;
    }
    struct evbuffer *b = evbuffer_new();
    if (cd_http_cdb_wants_binary(req)) {
        for (size_t i = 0; i < ns; i++) { /* ">32sI32sI32s": 104 bytes */
            uint8_t r[104];
            memcpy(r, sp[i].out_tx, 32);
            cd_put_be32(r + 32, sp[i].out_idx);
            memcpy(r + 36, sp[i].in_tx, 32);
            cd_put_be32(r + 68, sp[i].in_idx);
            if (sp[i].mempool)
                memset(r + 72, 0, 32);
            else
                memcpy(r + 72, sp[i].block_hash, 32);
            evbuffer_add(b, r, sizeof(r));
        }
        free(sp);
        cd_http_cdb_reply(req, 200, "application/octet-stream", b);
        evbuffer_free(b);
        return H_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < ns && arr; i++) {
        char o[65], in[65], bh[65];
        cd_hex_encode_rev(o, sp[i].out_tx, 32);
        cd_hex_encode_rev(in, sp[i].in_tx, 32);
        cd_hex_encode_rev(bh, sp[i].block_hash, 32); /* display order (bug 2) */
        json_t *row =
            json_pack("[s, I, s, I, o]", o, (json_int_t)sp[i].out_idx, in, (json_int_t)sp[i].in_idx,
                      sp[i].mempool ? json_null() : json_string(bh));
        if (json_array_append_new(arr, row) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(sp);
    char *text = arr ? json_dumps(arr, 0) : NULL;
    json_decref(arr);
    if (!text) {
        evbuffer_free(b);
        cd_http_cdb_error(req, 500, "out of memory");
        return H_DONE;
    }
    evbuffer_add(b, text, strlen(text));
    free(text);
    cd_http_cdb_reply(req, 200, "application/json; charset=utf-8", b);
    evbuffer_free(b);
    return H_DONE;
}
