/*
 * cd_http_cdb.c - ConduitDB's HTTP API, route for route (issue 16): the
 * dispatcher of its paths, its error format, and the routes that read one
 * thing (ping, chain tips and headers, raw transactions, merkle proofs).
 * Restoration and output spends are cd_http_cdb_restore.c.
 *
 * Why it exists: wallet back ends (ElectrumSV's reference server) speak
 * ConduitDB's API; serving the same paths, methods, parameters, content
 * types and status codes lets them switch by changing a URL. The contract,
 * and where conduitd deliberately differs from ConduitDB (its bugs), is
 * docs/CONDUITDB_API.md; ConduitDB's code is not used, only its formats.
 *
 * Answers come from the same lookups as the /v1 API (cd_lookup: tx bytes,
 * merkle branches) and from cd_cdbq (chain tips, headers, restoration,
 * spends), on the server's PostgreSQL session; the cumulative chain work of
 * a tip from the header tree (<datadir>/headers, read-only).
 */
#include "cd_http_cdb.h"
#include "cd_http_req.h"

#include "btc_header.h"
#include "btc_varint.h"
#include "cd_cdbq.h"
#include "cd_escape.h"
#include "cd_hdrtree.h"
#include "cd_log.h"
#include "cd_util.h"

#include <sys/queue.h> /* TAILQ_INIT for evkeyvalq */

#include <ctype.h>
#include <event2/keyvalq_struct.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The header tree, opened read-only on first use by this (single-threaded)
 * server process and kept open; closed after a failed read so the next
 * request reopens it. Module state rather than a field of http_srv so the
 * shared server state stays as it is. */
static cd_hdrtree *cdb_tree;

/* ---- replies ---- */

void cd_http_cdb_reply(struct evhttp_request *req, int code, const char *type,
                       struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", body);
}

static const char *cmd_name(struct evhttp_request *req)
{
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    default:
        return "-";
    }
}

void cd_http_cdb_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* the reason phrase is part of the status line: printable ASCII only
     * (a client's bytes quoted in a message cannot split the response) */
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    char *peer = NULL;
    uint16_t port = 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon)
        evhttp_connection_get_peer(evcon, &peer, &port);
    const char *uri = evhttp_request_get_uri(req);
    char esc[300];
    cd_escape(esc, sizeof(esc), uri ? uri : "", uri ? strlen(uri) : 0);
    if (code >= 500)
        cd_log_warn("http: %s:%u: %s %s: %d %s", peer ? peer : "?", port, cmd_name(req), esc, code,
                    msg);
    else
        cd_log_info("http: %s:%u: %s %s: %d %s", peer ? peer : "?", port, cmd_name(req), esc, code,
                    msg);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    if (code == 503)
        evhttp_add_header(h, "Retry-After", "1");
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "%d: %s", code, msg);
    evhttp_send_reply(req, code, msg, b);
    evbuffer_free(b);
}

/* ---- media types ---- */

void cd_http_cdb_media_type(const char *v, char *out, size_t cap)
{
    size_t n = 0;
    while (*v == ' ' || *v == '\t')
        v++;
    while (*v && *v != ';' && *v != ',' && *v != ' ' && *v != '\t' && n + 1 < cap)
        out[n++] = (char)tolower((unsigned char)*v++);
    out[n] = '\0';
}

/* The q-value (0..1000) the Accept header gives `type` by name, or that the
 * wildcards give it (`wild`: any type, or any subtype of its type), -1
 * when absent. */
static void accept_q(const char *acc, const char *type, int *exact, int *wild)
{
    *exact = -1;
    *wild = -1;
    const char *slash = strchr(type, '/');
    size_t major = slash ? (size_t)(slash - type) : strlen(type);
    for (const char *p = acc; p && *p;) {
        char mt[96];
        cd_http_cdb_media_type(p, mt, sizeof(mt));
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int q = 1000;
        const char *qp = p;
        while ((qp = strchr(qp, ';')) != NULL && qp < p + len) {
            qp++;
            while (*qp == ' ')
                qp++;
            if ((qp[0] == 'q' || qp[0] == 'Q') && qp[1] == '=') {
                double d = strtod(qp + 2, NULL);
                q = d <= 0 ? 0 : d >= 1 ? 1000 : (int)(d * 1000 + 0.5);
            }
        }
        if (!strcmp(mt, type))
            *exact = CD_MAX(*exact, q);
        else if (!strcmp(mt, "*/*") ||
                 (strlen(mt) == major + 2 && !strncmp(mt, type, major + 1) && mt[major + 1] == '*'))
            *wild = CD_MAX(*wild, q);
        p = end ? end + 1 : NULL;
    }
}

int cd_http_cdb_wants_binary(struct evhttp_request *req)
{
    const char *acc = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    if (!acc)
        return 0;
    int bin, bin_wild, json, json_wild;
    accept_q(acc, "application/octet-stream", &bin, &bin_wild);
    accept_q(acc, "application/json", &json, &json_wild);
    /* binary only when named: a wildcard keeps ConduitDB's default (JSON) */
    return bin > 0 && bin > json;
}

/* 0 if the Accept header rules JSON out (ConduitDB's 406 of chain/tips). */
static int accepts_json(struct evhttp_request *req)
{
    const char *acc = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    if (!acc)
        return 1;
    int json, wild;
    accept_q(acc, "application/json", &json, &wild);
    return json > 0 || (json < 0 && wild > 0);
}

/* ---- PostgreSQL ---- */

int cd_http_cdb_pg_lost(http_srv *s)
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

/* A failed cd_lookup call: H_DB_LOST for a lost session, else a reply. */
static int lookup_failed(http_srv *s, struct evhttp_request *req, int rc, const char *not_found)
{
    const char *msg = cd_lookup_error(s->lk);
    switch (rc) {
    case CD_LOOKUP_ENOTFOUND:
        cd_http_cdb_error(req, 404, "%s", not_found);
        return H_DONE;
    case CD_LOOKUP_EINPUT: /* a mempool tx asked for its proof */
        cd_http_cdb_error(req, 404, "%s", msg);
        return H_DONE;
    case CD_LOOKUP_EDB:
        if (cd_http_cdb_pg_lost(s))
            return H_DB_LOST;
        cd_http_cdb_error(req, 500, "%s", msg);
        return H_DONE;
    default:
        cd_http_cdb_error(req, 500, "%s", msg);
        return H_DONE;
    }
}

/* A failed cd_cdbq call. */
static int cdbq_failed(http_srv *s, struct evhttp_request *req, int rc, const char *err)
{
    if (rc == CD_LOOKUP_EDB && cd_http_cdb_pg_lost(s))
        return H_DB_LOST;
    cd_http_cdb_error(req, 500, "%s", err);
    return H_DONE;
}

/* ---- chain ---- */

/* A 256-bit work as a JSON integer; above 2^63 - 1 (never on today's
 * chains for one header; mainnet's cumulative work is ~2^92) as a JSON real:
 * jansson has no arbitrary-precision integers (docs/CONDUITDB_API.md). */
static json_t *u256_json(const btc_u256 *w)
{
    if (btc_u256_bits(w) <= 63)
        return json_integer((json_int_t)w->d[0]);
    double d = 0;
    for (int i = 3; i >= 0; i--)
        d = d * 18446744073709551616.0 + (double)w->d[i];
    return json_real(d);
}

/* ConduitDB's header object (S3 of docs/CONDUITDB_API.md). */
static json_t *header_json(const uint8_t hash[32], const uint8_t raw[80], int64_t tx_count)
{
    btc_header h;
    btc_header_parse(&h, raw);
    char hx[65], prev[65], root[65];
    cd_hex_encode_rev(hx, hash, 32);
    cd_hex_encode_rev(prev, h.prev, 32);
    cd_hex_encode_rev(root, h.merkle_root, 32);
    btc_u256 work = btc_block_work(h.bits);
    return json_pack("{s:s, s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:o}", "hash", hx, "version",
                     (json_int_t)h.version, "prevBlockHash", prev, "merkleRoot", root,
                     "creationTimestamp", (json_int_t)h.time, "difficultyTarget",
                     (json_int_t)h.bits, "nonce", (json_int_t)h.nonce, "transactionCount",
                     (json_int_t)(tx_count < 0 ? 0 : tx_count), "work", u256_json(&work));
}

static void reply_json(struct evhttp_request *req, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_ENCODE_ANY) : NULL;
    json_decref(o);
    if (!text) {
        cd_http_cdb_error(req, 500, "out of memory");
        return;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, strlen(text));
    free(text);
    cd_http_cdb_reply(req, 200, "application/json; charset=utf-8", b);
    evbuffer_free(b);
}

/* Cumulative work of `hash` from the header tree. Returns 0 or -1. */
static int chain_work(http_srv *s, const uint8_t hash[32], btc_u256 *out)
{
    if (!cdb_tree) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/headers", s->cfg->datadir);
        if (cd_hdrtree_open(&cdb_tree, path, s->cfg->net, CD_HDRTREE_RDONLY) != 0) {
            cdb_tree = NULL;
            return -1;
        }
    }
    cd_hdr_node n;
    int rc = cd_hdrtree_get(cdb_tree, hash, &n);
    if (rc == CD_HDRTREE_ESTORE) {
        cd_hdrtree_close(cdb_tree);
        cdb_tree = NULL;
    }
    if (rc != 0)
        return -1;
    btc_u256_from_be(out, n.work);
    return 0;
}

static int h_tips(http_srv *s, struct evhttp_request *req)
{
    if (!accepts_json(req)) {
        cd_http_cdb_error(req, 406, "Can only give an 'application/json response type");
        return H_DONE;
    }
    const char *lc = NULL;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *qs = u ? evhttp_uri_get_query(u) : NULL;
    if (qs && evhttp_parse_query_str(qs, &q) != 0) {
        cd_http_cdb_error(req, 400, "bad query string");
        return H_DONE;
    }
    lc = evhttp_find_header(&q, "longest_chain");
    int longest = 0;
    if (lc) {
        char *end;
        long v = strtol(lc, &end, 10);
        if (*lc == '\0' || *end != '\0') {
            cd_http_cdb_error(req, 400, "'longest_chain' must be an integer");
            evhttp_clear_headers(&q);
            return H_DONE;
        }
        longest = v != 0;
    }
    evhttp_clear_headers(&q);
    char err[512];
    cd_cdbq_block *tips = NULL;
    size_t n = 0;
    int rc = cd_cdbq_chain_tips(s->pg, &tips, &n, err, sizeof(err));
    if (rc != CD_LOOKUP_OK)
        return cdbq_failed(s, req, rc, err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n && arr; i++) {
        if (longest && !tips[i].best)
            continue;
        btc_u256 cw;
        if (chain_work(s, tips[i].hash, &cw) != 0) {
            json_decref(arr);
            free(tips);
            cd_http_cdb_error(req, 500, "the header tree cannot be read");
            return H_DONE;
        }
        json_t *o = json_pack("{s:o, s:s, s:o, s:i}", "header",
                              header_json(tips[i].hash, tips[i].header, tips[i].tx_count), "state",
                              tips[i].best ? "LONGEST_CHAIN" : "STALE", "chainWork", u256_json(&cw),
                              "height", (int)tips[i].height);
        if (json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(tips);
    reply_json(req, arr);
    return H_DONE;
}

/* A query parameter as an int in [lo, hi]; absent: def. Returns 0, or -1
 * (400 sent). */
static int int_param(struct evhttp_request *req, struct evkeyvalq *q, const char *name, long def,
                     long lo, long hi, long *out)
{
    const char *v = evhttp_find_header(q, name);
    *out = def;
    if (!v)
        return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x < lo || x > hi) {
        cd_http_cdb_error(req, 400, "'%s' must be an integer in %ld..%ld", name, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int h_by_height(http_srv *s, struct evhttp_request *req)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *qs = u ? evhttp_uri_get_query(u) : NULL;
    if (qs && evhttp_parse_query_str(qs, &q) != 0) {
        cd_http_cdb_error(req, 400, "bad query string");
        return H_DONE;
    }
    long height, count;
    int bad = int_param(req, &q, "height", 0, 0, INT32_MAX - 1, &height) != 0 ||
              int_param(req, &q, "count", 1, 0, HTTP_CDB_MAX_HEADERS, &count) != 0;
    evhttp_clear_headers(&q);
    if (bad)
        return H_DONE;
    cd_cdbq_block *rows = cd_xcalloc((size_t)count + 1, sizeof(*rows));
    size_t n = 0;
    char err[512];
    int rc = count ? cd_cdbq_headers_from(s->pg, (int32_t)height, (uint32_t)count, rows, &n, err,
                                          sizeof(err))
                   : CD_LOOKUP_OK;
    if (rc != CD_LOOKUP_OK) {
        free(rows);
        return cdbq_failed(s, req, rc, err);
    }
    if (cd_http_cdb_wants_binary(req)) {
        struct evbuffer *b = evbuffer_new();
        for (size_t i = 0; i < n; i++)
            evbuffer_add(b, rows[i].header, 80);
        cd_http_cdb_reply(req, 200, "application/octet-stream", b);
        evbuffer_free(b);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n && arr; i++)
            if (json_array_append_new(
                    arr, header_json(rows[i].hash, rows[i].header, rows[i].tx_count)) != 0) {
                json_decref(arr);
                arr = NULL;
            }
        reply_json(req, arr);
    }
    free(rows);
    return H_DONE;
}

static int h_header(http_srv *s, struct evhttp_request *req, const char *id)
{
    uint8_t hash[32];
    if (strlen(id) != 64) {
        cd_http_cdb_error(req, 400, "'hash' path parameter must be 32 hex bytes in length");
        return H_DONE;
    }
    if (cd_hex_decode_rev(hash, 32, id) != 0) {
        cd_http_cdb_error(req, 400, "'hash' path parameter must be hex");
        return H_DONE;
    }
    cd_cdbq_block blk;
    int found = 0;
    char err[512];
    int rc = cd_cdbq_block_get(s->pg, hash, &blk, &found, err, sizeof(err));
    if (rc != CD_LOOKUP_OK)
        return cdbq_failed(s, req, rc, err);
    if (!found) { /* a header whose block is not indexed: from the tree */
        cd_hdr_node node;
        btc_u256 unused;
        if (chain_work(s, hash, &unused) != 0 || cd_hdrtree_get(cdb_tree, hash, &node) != 0) {
            cd_http_cdb_error(req, 404, "header not found");
            return H_DONE;
        }
        memcpy(blk.hash, hash, 32);
        memcpy(blk.header, node.raw, 80);
        blk.tx_count = 0; /* not known without the block */
    }
    if (cd_http_cdb_wants_binary(req)) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, blk.header, 80);
        cd_http_cdb_reply(req, 200, "application/octet-stream", b);
        evbuffer_free(b);
    } else {
        reply_json(req, header_json(blk.hash, blk.header, blk.tx_count));
    }
    return H_DONE;
}

/* ---- transactions and proofs ---- */

static int parse_txid(struct evhttp_request *req, const char *id, uint8_t txid[32])
{
    if (strlen(id) != 64 || cd_hex_decode_rev(txid, 32, id) != 0) {
        cd_http_cdb_error(req, 400, "txid must be 64 hex digits");
        return -1;
    }
    return 0;
}

static int h_tx(http_srv *s, struct evhttp_request *req, const char *id)
{
    uint8_t txid[32];
    if (parse_txid(req, id, txid) != 0)
        return H_DONE;
    cd_lookup_tx tx;
    int rc = cd_lookup_tx_find(s->lk, txid, 1, &tx);
    uint8_t *raw = NULL;
    if (rc == CD_LOOKUP_OK)
        rc = cd_lookup_tx_read(s->lk, &tx, &raw);
    if (rc == CD_LOOKUP_ENOTFOUND && tx.mempool) {
        /* it left the mempool since the find (mined, most likely) */
        rc = cd_lookup_tx_find(s->lk, txid, 1, &tx);
        if (rc == CD_LOOKUP_OK)
            rc = cd_lookup_tx_read(s->lk, &tx, &raw);
    }
    if (rc != CD_LOOKUP_OK)
        return lookup_failed(s, req, rc, "Transaction not found");
    struct evbuffer *b = evbuffer_new();
    if (cd_http_cdb_wants_binary(req)) {
        evbuffer_add(b, raw, (size_t)tx.size);
        cd_http_cdb_reply(req, 200, "application/octet-stream", b);
    } else { /* a JSON string of the hex: '"' hex '"' */
        struct evbuffer_iovec v;
        size_t n = 2 * (size_t)tx.size + 2;
        if (evbuffer_reserve_space(b, (ev_ssize_t)(n + 1), &v, 1) == 1) {
            char *p = v.iov_base;
            p[0] = '"';
            cd_hex_encode(p + 1, raw, (size_t)tx.size);
            p[n - 1] = '"';
            v.iov_len = n;
            evbuffer_commit_space(b, &v, 1);
        }
        cd_http_cdb_reply(req, 200, "application/json; charset=utf-8", b);
    }
    evbuffer_free(b);
    free(raw);
    return H_DONE;
}

/* TSC binary merkle proof (docs/CONDUITDB_API.md, merkle-proof). */
static void proof_binary(struct evbuffer *b, const cd_lookup_tx *tx, const uint8_t *branch,
                         size_t depth, const char *target, const uint8_t *raw)
{
    uint8_t vi[9];
    uint8_t flags = raw ? 0x01 : 0x00;
    if (!strcmp(target, "header"))
        flags |= 0x02;
    else if (!strcmp(target, "merkleroot"))
        flags |= 0x04;
    evbuffer_add(b, &flags, 1);
    evbuffer_add(b, vi, btc_varint_write(vi, tx->pos));
    if (raw) {
        evbuffer_add(b, vi, btc_varint_write(vi, tx->size));
        evbuffer_add(b, raw, (size_t)tx->size);
    } else {
        evbuffer_add(b, tx->txid, 32);
    }
    if (flags & 0x02)
        evbuffer_add(b, tx->header, 80);
    else if (flags & 0x04)
        evbuffer_add(b, tx->header + 36, 32);
    else
        evbuffer_add(b, tx->block_hash, 32);
    evbuffer_add(b, vi, btc_varint_write(vi, depth));
    for (size_t i = 0; i < depth; i++) {
        uint8_t type = 0; /* a hash; duplicates are written as the hash too */
        evbuffer_add(b, &type, 1);
        evbuffer_add(b, branch + i * 32, 32);
    }
}

static int h_proof(http_srv *s, struct evhttp_request *req, const char *id)
{
    uint8_t txid[32];
    if (parse_txid(req, id, txid) != 0)
        return H_DONE;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *qs = u ? evhttp_uri_get_query(u) : NULL;
    if (qs && evhttp_parse_query_str(qs, &q) != 0) {
        cd_http_cdb_error(req, 400, "bad query string");
        return H_DONE;
    }
    char target[16] = "hash";
    const char *t = evhttp_find_header(&q, "targetType");
    const char *inc = evhttp_find_header(&q, "includeFullTx");
    int include = -1;
    if (!inc || !strcmp(inc, "0") || !strcasecmp(inc, "false"))
        include = 0;
    else if (!strcmp(inc, "1") || !strcasecmp(inc, "true"))
        include = 1;
    int bad_t = t && strcmp(t, "hash") && strcmp(t, "header") && strcmp(t, "merkleroot");
    if (t && !bad_t)
        snprintf(target, sizeof(target), "%s", t);
    evhttp_clear_headers(&q);
    if (bad_t) {
        cd_http_cdb_error(req, 400,
                          "target type needs to be one of: 'hash', 'header' or 'merkleroot'");
        return H_DONE;
    }
    if (include < 0) {
        cd_http_cdb_error(req, 400, "includeFullTx must be 1, true, 0 or false");
        return H_DONE;
    }
    cd_lookup_tx tx;
    int rc = cd_lookup_tx_find(s->lk, txid, 1, &tx);
    if (rc != CD_LOOKUP_OK)
        return lookup_failed(s, req, rc, "transaction metadata not found");
    uint8_t branch[CD_LOOKUP_MAX_DEPTH * 32];
    size_t depth = 0;
    rc = cd_lookup_tx_branch(s->lk, &tx, branch, &depth);
    if (rc != CD_LOOKUP_OK)
        return lookup_failed(s, req, rc, "transaction metadata not found");
    uint8_t *raw = NULL;
    if (include && (rc = cd_lookup_tx_read(s->lk, &tx, &raw)) != CD_LOOKUP_OK)
        return lookup_failed(s, req, rc, "transaction not found");
    struct evbuffer *b = evbuffer_new();
    if (cd_http_cdb_wants_binary(req)) {
        proof_binary(b, &tx, branch, depth, target, raw);
        cd_http_cdb_reply(req, 200, "application/octet-stream", b);
    } else {
        char *json = cd_lookup_proof_json(&tx, branch, depth, target, raw);
        if (!json) {
            evbuffer_free(b);
            free(raw);
            cd_http_cdb_error(req, 500, "out of memory");
            return H_DONE;
        }
        size_t len = strlen(json);
        if (len && json[len - 1] == '\n') /* aiohttp's json_response: no newline */
            len--;
        evbuffer_add(b, json, len);
        free(json);
        cd_http_cdb_reply(req, 200, "application/json; charset=utf-8", b);
    }
    evbuffer_free(b);
    free(raw);
    return H_DONE;
}

/* ---- dispatch ---- */

enum {
    R_PING,
    R_ERROR,
    R_TIPS,
    R_BY_HEIGHT,
    R_HEADER,
    R_TX,
    R_PROOF,
    R_SEARCH,
    R_SEARCH_P2PKH,
    R_SPEND,
    R_FILTER,
    R_FILTER_DEL,
    R_SPEND_REG,
    R_SPEND_UNREG,
    R_WS
};

typedef struct cdb_route {
    const char *pattern[6]; /* path segments; "*": any one (cd_http_path_match) */
    int post;               /* 1: POST; 0: GET (and HEAD) */
    int needs_pg;
    int id;
} cdb_route;

/* ConduitDB's route table (server.py, docs/CONDUITDB_API.md); the more
 * specific paths first, as ConduitDB registers them. */
static const cdb_route cdb_routes[] = {
    {{NULL}, 0, 0, R_PING}, /* "/" */
    {{"error", NULL}, 0, 0, R_ERROR},
    {{"api", "v1", "chain", "tips", NULL}, 0, 1, R_TIPS},
    {{"api", "v1", "chain", "header", "byHeight", NULL}, 0, 1, R_BY_HEIGHT},
    {{"api", "v1", "chain", "header", "*", NULL}, 0, 1, R_HEADER},
    {{"api", "v1", "transaction", "filter", NULL}, 1, 1, R_FILTER},
    {{"api", "v1", "transaction", "filter:delete", NULL}, 1, 1, R_FILTER_DEL},
    {{"api", "v1", "transaction", "*", NULL}, 0, 1, R_TX},
    {{"api", "v1", "merkle-proof", "*", NULL}, 0, 1, R_PROOF},
    {{"api", "v1", "restoration", "search", NULL}, 1, 1, R_SEARCH},
    {{"api", "v1", "restoration", "search_p2pkh", NULL}, 1, 1, R_SEARCH_P2PKH},
    {{"api", "v1", "output-spend", NULL}, 1, 1, R_SPEND},
    {{"api", "v1", "output-spend", "notifications", NULL}, 1, 1, R_SPEND_REG},
    {{"api", "v1", "output-spend", "notifications:unregister", NULL}, 1, 1, R_SPEND_UNREG},
    {{"ws", NULL}, 0, 0, R_WS},
};

static int run(http_srv *s, struct evhttp_request *req, const cdb_route *rt, const char *arg)
{
    switch (rt->id) {
    case R_PING: {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, "true", 4);
        cd_http_cdb_reply(req, 200, "text/plain; charset=utf-8", b);
        evbuffer_free(b);
        return H_DONE;
    }
    case R_ERROR:
        cd_http_cdb_error(req, 400, "This is a test of raising an exception in the handler");
        return H_DONE;
    case R_TIPS:
        return h_tips(s, req);
    case R_BY_HEIGHT:
        return h_by_height(s, req);
    case R_HEADER:
        return h_header(s, req, arg);
    case R_TX:
        return h_tx(s, req, arg);
    case R_PROOF:
        return h_proof(s, req, arg);
    case R_SEARCH:
        return cd_http_cdb_restore(s, req, 0);
    case R_SEARCH_P2PKH:
        return cd_http_cdb_restore(s, req, 1);
    case R_SPEND:
        return cd_http_cdb_output_spend(s, req);
    case R_FILTER:
        return cd_http_cdb_filter_add(s, req);
    case R_FILTER_DEL:
        return cd_http_cdb_filter_delete(s, req);
    case R_SPEND_REG:
        return cd_http_cdb_spend_register(s, req);
    case R_SPEND_UNREG:
        return cd_http_cdb_spend_unregister(s, req);
    case R_WS:
        return cd_http_cdb_ws(s, req);
    default:
        cd_http_cdb_error(req, 501,
                          "not implemented by conduitd yet (notifications: issue 16, part 2)");
        return H_DONE;
    }
}

int cd_http_cdb_dispatch(http_srv *s, struct evhttp_request *req)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    if (!path || (strcmp(path, "/") && strcmp(path, "/error") && strcmp(path, "/ws") &&
                  strncmp(path, "/api/", 5)))
        return 0;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const cdb_route *rt = NULL, *any = NULL;
    const char *arg = NULL;
    for (size_t i = 0; i < CD_ARRAY_LEN(cdb_routes); i++) {
        const char *a = NULL;
        if (!cd_http_path_match(cdb_routes[i].pattern, path, CD_HTTP_MATCH_REQUEST, &a))
            continue;
        int ok = cdb_routes[i].post ? cmd == EVHTTP_REQ_POST
                                    : cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
        if (!any)
            any = &cdb_routes[i];
        if (ok) {
            rt = &cdb_routes[i];
            arg = a;
            break;
        }
    }
    if (!rt) {
        if (any) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                              any->post ? "POST" : "GET, HEAD");
            cd_http_cdb_error(req, 405, "Method Not Allowed");
        } else {
            cd_http_cdb_error(req, 404, "Not Found");
        }
        return 1;
    }
    if (rt->needs_pg && !s->cfg->index) {
        cd_http_cdb_error(req, 503, "the index is off (index = off): no database to query");
        return 1;
    }
    int done = 0;
    /* a PostgreSQL restart breaks the session: one retry on a new one */
    for (int attempt = 0; attempt < 2 && !done; attempt++) {
        if (rt->needs_pg && !cd_http_srv_pg(s))
            break;
        done = run(s, req, rt, arg) == H_DONE;
        if (!done)
            s->pg_next_try = 0;
    }
    if (!done)
        cd_http_cdb_error(req, 503, "Database is unavailable at present");
    return 1;
}
