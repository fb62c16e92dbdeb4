/*
 * cd_http_sdk.c - the HTTP routes the BSV SDKs speak (issue 15): BUMP
 * proofs, BEEF, and the WhatsOnChain-shaped ChainTracker routes.
 *
 *   GET /v1/tx/<txid>/bump[?format=hex|binary|json]      BRC-74 BUMP
 *   GET /v1/block/<hash|height>/bump?txids=<txid>,...    compound BUMP
 *   GET /v1/tx/<txid>/beef[?version=1|2|atomic][&format=hex|binary]
 *   GET /woc/v1/bsv/<network>/block/<height>/header      WoC block header
 *   GET /woc/v1/bsv/<network>/block/headers              latest headers
 *   GET /woc/v1/bsv/<network>/tx/<txid>/hex              raw tx, hex text
 *   GET /woc/v1/bsv/<network>/tx/<txid>/proof/bump       BUMP, hex text
 *   /arc/...                                             cd_http_arc.c
 *
 * Why a dispatcher of its own (cd_http_sdk_dispatch, called first by
 * cd_http_handle): the /woc prefix is outside /v1, which the generic route
 * table cannot express. What the SDK reads from each answer (JSON only with
 * "Content-Type: application/json", lowercase hex, 404 for an unknown
 * height) is in tests/sdk/CONTRACT.md §0 and §4; endpoints are documented
 * in docs/API.md.
 */
#include "cd_http_int.h"
#include "cd_http_arc_int.h"
#include "cd_http_req.h"

#include "cd_beef.h"
#include "cd_bump.h"
#include "cd_log.h"
#include "cd_lookup.h"
#include "cd_util.h"

#include <sys/queue.h> /* TAILQ_INIT for evkeyvalq */

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SDK_MAX_SEG     10
#define SDK_HEADERS_N   10 /* headers /block/headers returns, newest first */
#define SDK_TXIDS_QUERY (CD_BUMP_MAX_TXIDS * 65)

typedef struct sdk_req {
    char *seg[SDK_MAX_SEG];
    int nseg;
    struct evkeyvalq query;
    char pathbuf[512];
} sdk_req;

static const char *qarg(sdk_req *r, const char *key)
{
    return evhttp_find_header(&r->query, key);
}

/* "/a/b/c" -> segments; -1 when too long, empty segments or too many. */
static int split(const char *path, sdk_req *r)
{
    return cd_http_split_path(path, "/", r->pathbuf, sizeof(r->pathbuf), r->seg, SDK_MAX_SEG,
                              &r->nseg);
}

/* Bytes as one hex line (text/plain), or as they are (octet-stream). */
static void reply_bytes(struct evhttp_request *req, const uint8_t *p, size_t n, int binary)
{
    struct evbuffer *b = evbuffer_new();
    if (binary) {
        evbuffer_add(b, p, n);
        cd_http_reply(req, 200, "application/octet-stream", b);
    } else {
        char *hx = malloc(2 * n + 2);
        if (!hx) {
            evbuffer_free(b);
            cd_http_reply_error(req, 500, "out of memory");
            return;
        }
        cd_hex_encode(hx, p, n);
        hx[2 * n] = '\n';
        evbuffer_add(b, hx, 2 * n + 1);
        free(hx);
        cd_http_reply(req, 200, "text/plain; charset=utf-8", b);
    }
    evbuffer_free(b);
}

/* ---- BUMP ---- */

enum { F_HEX, F_BIN, F_JSON };

static int bump_format(sdk_req *r, int *fmt)
{
    const char *f = qarg(r, "format");
    if (!f || !strcmp(f, "hex"))
        *fmt = F_HEX;
    else if (!strcmp(f, "binary") || !strcmp(f, "bin") || !strcmp(f, "raw"))
        *fmt = F_BIN;
    else if (!strcmp(f, "json"))
        *fmt = F_JSON;
    else
        return -1;
    return 0;
}

/* Answers a cd_bump_lookup / cd_beef_build failure. */
static int bump_failed(http_srv *s, struct evhttp_request *req, int rc, const char *err)
{
    if (rc == CD_LOOKUP_ENOTFOUND) {
        cd_http_reply_error(req, 404, "%s", err);
        return H_DONE;
    }
    if (rc == CD_LOOKUP_EINPUT) {
        cd_http_reply_error(req, 400, "%s", err);
        return H_DONE;
    }
    return cd_http_lookup_failed(s, req, rc);
}

static int send_bump(http_srv *s, struct evhttp_request *req, const uint8_t (*txids)[32], size_t n,
                     int fmt)
{
    cd_bump b;
    char err[512];
    int rc = cd_bump_lookup(s->lk, txids, n, &b, err, sizeof(err));
    if (rc != 0)
        return bump_failed(s, req, rc, err);
    if (fmt == F_JSON) {
        cd_http_reply_jobj(req, 200, cd_bump_json(&b));
    } else {
        size_t len;
        uint8_t *bin = cd_bump_binary(&b, &len);
        reply_bytes(req, bin, len, fmt == F_BIN);
        free(bin);
    }
    cd_bump_free(&b);
    return H_DONE;
}

static int parse_txid(struct evhttp_request *req, const char *s, uint8_t txid[32])
{
    if (cd_hex_decode_rev(txid, 32, s) != 0) {
        cd_http_reply_error(req, 400, "bad txid '%s': expected 64 hex digits", s);
        return -1;
    }
    return 0;
}

/* GET /v1/tx/<txid>/bump */
static int h_tx_bump(http_srv *s, struct evhttp_request *req, sdk_req *r)
{
    uint8_t txid[1][32];
    int fmt;
    if (parse_txid(req, r->seg[2], txid[0]) != 0)
        return H_DONE;
    if (bump_format(r, &fmt) != 0) {
        cd_http_reply_error(req, 400, "bad format: expected hex, binary or json");
        return H_DONE;
    }
    return send_bump(s, req, (const uint8_t(*)[32])txid, 1, fmt);
}

/* GET /v1/block/<id>/bump?txids=a,b,c : every txid must be in that block */
static int h_block_bump(http_srv *s, struct evhttp_request *req, sdk_req *r)
{
    int fmt;
    if (bump_format(r, &fmt) != 0) {
        cd_http_reply_error(req, 400, "bad format: expected hex, binary or json");
        return H_DONE;
    }
    const char *list = qarg(r, "txids");
    if (!list || !*list || strlen(list) > SDK_TXIDS_QUERY) {
        cd_http_reply_error(req, 400, "txids: expected 1 to %d comma-separated txids",
                            CD_BUMP_MAX_TXIDS);
        return H_DONE;
    }
    uint8_t hash[32];
    uint32_t height;
    int kind = cd_lookup_block_id(r->seg[2], hash, &height);
    if (kind < 0) {
        cd_http_reply_error(req, 400, "bad block id '%s': expected a 64-hex block hash or a height",
                            r->seg[2]);
        return H_DONE;
    }
    if (kind == 0 && cd_lookup_block_hash_at(s->lk, height, hash) != CD_LOOKUP_OK) {
        cd_http_reply_error(req, 404, "no block at height %" PRIu32, height);
        return H_DONE;
    }
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    uint8_t(*txids)[32] = calloc(n, 32);
    if (!txids) {
        cd_http_reply_error(req, 500, "out of memory");
        return H_DONE;
    }
    const char *p = list;
    for (size_t i = 0; i < n; i++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char one[65];
        if (len != 64 ||
            (memcpy(one, p, 64), one[64] = '\0', cd_hex_decode_rev(txids[i], 32, one)) != 0) {
            free(txids);
            cd_http_reply_error(req, 400, "txids: item %zu is not 64 hex digits", i + 1);
            return H_DONE;
        }
        p = e ? e + 1 : p + len;
    }
    /* the block named must be the one the txids are in */
    cd_lookup_tx tx;
    int rc = cd_lookup_tx_find(s->lk, txids[0], 0, &tx);
    if (rc == CD_LOOKUP_OK && memcmp(tx.block_hash, hash, 32) != 0) {
        char hx[65];
        cd_hex_encode_rev(hx, txids[0], 32);
        free(txids);
        cd_http_reply_error(req, 404, "transaction %s is not in block %s", hx, r->seg[2]);
        return H_DONE;
    }
    rc = send_bump(s, req, (const uint8_t(*)[32])txids, n, fmt);
    free(txids);
    return rc;
}

/* ---- BEEF ---- */

/* GET /v1/tx/<txid>/beef?version=1|2|atomic&format=hex|binary */
static int h_tx_beef(http_srv *s, struct evhttp_request *req, sdk_req *r)
{
    uint8_t txid[32];
    if (parse_txid(req, r->seg[2], txid) != 0)
        return H_DONE;
    const char *v = qarg(r, "version");
    int version;
    if (!v || !strcmp(v, "1"))
        version = CD_BEEF_V1;
    else if (!strcmp(v, "2"))
        version = CD_BEEF_V2;
    else if (!strcmp(v, "atomic"))
        version = CD_BEEF_ATOMIC;
    else {
        cd_http_reply_error(req, 400, "bad version: expected 1, 2 or atomic");
        return H_DONE;
    }
    int fmt;
    if (bump_format(r, &fmt) != 0 || fmt == F_JSON) {
        cd_http_reply_error(req, 400, "bad format: expected hex or binary");
        return H_DONE;
    }
    uint8_t *beef = NULL;
    size_t len = 0;
    char err[512];
    int rc = cd_beef_build(s->lk, txid, version, &beef, &len, err, sizeof(err));
    if (rc != 0)
        return bump_failed(s, req, rc, err);
    reply_bytes(req, beef, len, fmt == F_BIN);
    free(beef);
    return H_DONE;
}

/* ---- WhatsOnChain-shaped ChainTracker routes ---- */

/* The WoC block header object (field names as WhatsOnChain's, CONTRACT.md
 * §4.2) of the best-chain block at `height`; tip = the indexed tip. */
static json_t *woc_header(http_srv *s, uint32_t height, int32_t tip, const uint8_t hash[32],
                          const cd_block_loc *loc)
{
    const uint8_t *h = loc->header;
    uint32_t version = cd_le32(h), ntime = cd_le32(h + 68), bits = cd_le32(h + 72),
             nonce = cd_le32(h + 76);
    char vhex[9], bhex[9];
    snprintf(vhex, sizeof(vhex), "%08" PRIx32, version);
    snprintf(bhex, sizeof(bhex), "%08" PRIx32, bits);
    json_t *o = json_pack(
        "{s:o, s:I, s:I, s:I, s:I, s:s, s:o, s:I, s:I, s:I, s:s}", "hash", cd_http_json_hash(hash),
        "confirmations", (json_int_t)tip - (json_int_t)height + 1, "size", (json_int_t)loc->size,
        "height", (json_int_t)height, "version", (json_int_t)version, "versionHex", vhex,
        "merkleroot", cd_http_json_hash(h + 36), "txcount", (json_int_t)loc->tx_count, "time",
        (json_int_t)ntime, "nonce", (json_int_t)nonce, "bits", bhex);
    if (o && height > 0)
        json_object_set_new(o, "previousblockhash", cd_http_json_hash(h + 4));
    uint8_t next[32];
    if (o && (int64_t)height < (int64_t)tip &&
        cd_lookup_block_hash_at(s->lk, height + 1, next) == CD_LOOKUP_OK)
        json_object_set_new(o, "nextblockhash", cd_http_json_hash(next));
    return o;
}

/* The header at height if it is on the indexed best chain (<= the indexed
 * tip) and stored. Returns 0, or replies (404/503) and returns 1, or
 * H_DB_LOST (-> 2). */
static int woc_block(http_srv *s, struct evhttp_request *req, uint32_t height, int32_t *tip,
                     uint8_t hash[32], cd_block_loc *loc)
{
    uint8_t tiph[32];
    int rc = cd_lookup_tip(s->lk, tip, tiph);
    if (rc == CD_LOOKUP_ENOTFOUND || (rc == CD_LOOKUP_OK && (int64_t)height > *tip)) {
        cd_http_reply_error(req, 404, "no indexed block at height %" PRIu32, height);
        return 1;
    }
    if (rc != CD_LOOKUP_OK)
        return cd_http_lookup_failed(s, req, rc) == H_DB_LOST ? 2 : 1;
    rc = cd_lookup_block_hash_at(s->lk, height, hash);
    if (rc == CD_LOOKUP_OK)
        rc = cd_lookup_block_get(s->lk, hash, loc);
    if (rc != CD_LOOKUP_OK) {
        cd_http_reply_error(req, 404, "no stored block at height %" PRIu32, height);
        return 1;
    }
    return 0;
}

static int h_woc_header(http_srv *s, struct evhttp_request *req, sdk_req *r)
{
    const char *hs = r->seg[5];
    uint64_t height = 0;
    size_t n = strlen(hs);
    int bad = n == 0 || n > 10;
    for (size_t i = 0; i < n && !bad; i++) {
        bad = hs[i] < '0' || hs[i] > '9';
        height = height * 10 + (uint64_t)(hs[i] - '0');
    }
    if (bad || height >= UINT32_MAX) {
        cd_http_reply_error(req, 400, "bad height '%s': expected a decimal block height", hs);
        return H_DONE;
    }
    int32_t tip;
    uint8_t hash[32];
    cd_block_loc loc;
    int rc = woc_block(s, req, (uint32_t)height, &tip, hash, &loc);
    if (rc)
        return rc == 2 ? H_DB_LOST : H_DONE;
    cd_http_reply_jobj(req, 200, woc_header(s, (uint32_t)height, tip, hash, &loc));
    return H_DONE;
}

static int h_woc_headers(http_srv *s, struct evhttp_request *req, sdk_req *r)
{
    (void)r;
    int32_t tip;
    uint8_t hash[32];
    cd_block_loc loc;
    int rc = woc_block(s, req, 0, &tip, hash, &loc);
    if (rc)
        return rc == 2 ? H_DB_LOST : H_DONE;
    json_t *a = json_array();
    for (int32_t h = tip; a && h >= 0 && h > tip - SDK_HEADERS_N; h--) {
        if (cd_lookup_block_hash_at(s->lk, (uint32_t)h, hash) != CD_LOOKUP_OK ||
            cd_lookup_block_get(s->lk, hash, &loc) != CD_LOOKUP_OK)
            break; /* only what is stored: never claim more */
        json_array_append_new(a, woc_header(s, (uint32_t)h, tip, hash, &loc));
    }
    cd_http_reply_jobj(req, 200, a);
    return H_DONE;
}

static int h_woc_tx_hex(http_srv *s, struct evhttp_request *req, sdk_req *r)
{
    uint8_t txid[32];
    if (parse_txid(req, r->seg[5], txid) != 0)
        return H_DONE;
    cd_lookup_tx tx;
    int rc = cd_lookup_tx_find(s->lk, txid, 1, &tx);
    uint8_t *raw = NULL;
    if (rc == CD_LOOKUP_OK)
        rc = cd_lookup_tx_read(s->lk, &tx, &raw);
    if (rc != CD_LOOKUP_OK)
        return cd_http_lookup_failed(s, req, rc);
    reply_bytes(req, raw, (size_t)tx.size, 0);
    free(raw);
    return H_DONE;
}

static int h_woc_tx_bump(http_srv *s, struct evhttp_request *req, sdk_req *r)
{
    uint8_t txid[1][32];
    if (parse_txid(req, r->seg[5], txid[0]) != 0)
        return H_DONE;
    return send_bump(s, req, (const uint8_t(*)[32])txid, 1, F_HEX);
}

/* ---- dispatch ---- */

typedef struct sdk_route {
    const char *pattern[SDK_MAX_SEG + 1]; /* "*" = any one segment */
    int needs_pg;
    int (*fn)(http_srv *s, struct evhttp_request *req, sdk_req *r);
} sdk_route;

static const sdk_route routes[] = {
    {{"v1", "tx", "*", "bump", NULL}, 1, h_tx_bump},
    {{"v1", "block", "*", "bump", NULL}, 1, h_block_bump},
    {{"v1", "tx", "*", "beef", NULL}, 1, h_tx_beef},
    {{"woc", "v1", "bsv", "*", "block", "*", "header", NULL}, 1, h_woc_header},
    {{"woc", "v1", "bsv", "*", "block", "headers", NULL}, 1, h_woc_headers},
    {{"woc", "v1", "bsv", "*", "tx", "*", "hex", NULL}, 1, h_woc_tx_hex},
    {{"woc", "v1", "bsv", "*", "tx", "*", "proof", "bump", NULL}, 1, h_woc_tx_bump},
};

/* 1 if the OpenAPI path (segments, "{name}" for a parameter) is one of
 * this file's routes or under /arc (cd_http_arc.c): the document covers
 * every table, the generic check (cd_http_openapi_check) only its own. */
int cd_http_sdk_owns_path(const char *path)
{
    if (strncmp(path, "/arc/", 5) == 0)
        return 1;
    for (size_t k = 0; k < CD_ARRAY_LEN(routes); k++)
        if (cd_http_path_match(routes[k].pattern, path, CD_HTTP_MATCH_OPENAPI, NULL))
            return 1;
    return 0;
}

static const sdk_route *route_find(const sdk_req *r)
{
    for (size_t k = 0; k < CD_ARRAY_LEN(routes); k++)
        if (cd_http_route_match(routes[k].pattern, r->seg, r->nseg))
            return &routes[k];
    return NULL;
}

/* The names a WhatsOnChain client uses for the configured network. */
static int woc_net_ok(const http_srv *s, const char *name)
{
    const char *mine = s->cfg->net->name; /* main, test, regtest, stn */
    if (!strcmp(name, mine))
        return 1;
    return (!strcmp(mine, "main") && !strcmp(name, "mainnet")) ||
           (!strcmp(mine, "test") && !strcmp(name, "testnet"));
}

int cd_http_sdk_dispatch(http_srv *s, struct evhttp_request *req)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    if (!path)
        return 0;
    int woc = !strncmp(path, "/woc/", 5) || !strcmp(path, "/woc") || !strncmp(path, "/arc/", 5);
    sdk_req r;
    memset(&r, 0, sizeof(r));
    TAILQ_INIT(&r.query);
    if (split(path, &r) != 0) {
        if (!woc)
            return 0;
        cd_http_reply_error(req, 404, "unknown endpoint (see docs/API.md)");
        return 1;
    }
    if (!strcmp(r.seg[0], "arc")) { /* ARC broadcast (cd_http_arc.c) */
        if (cd_http_arc_dispatch(s, req, r.seg, r.nseg) != H_DONE)
            cd_http_reply_error(req, 503, "database unavailable");
        return 1;
    }
    const sdk_route *rt = route_find(&r);
    if (!rt) {
        if (!woc)
            return 0; /* the generic routes (cd_http_routes.c) */
        cd_http_reply_error(req, 404, "unknown endpoint (see docs/API.md)");
        return 1;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        cd_http_reply_error(req, 405, "only GET and HEAD are supported here");
        return 1;
    }
    if (woc && !woc_net_ok(s, r.seg[3])) {
        cd_http_reply_error(req, 404, "this conduitd serves network '%s', not the one asked for",
                            s->cfg->net->name);
        return 1;
    }
    const char *q = evhttp_uri_get_query(u);
    if (q && evhttp_parse_query_str(q, &r.query) != 0) {
        cd_http_reply_error(req, 400, "bad query string");
        evhttp_clear_headers(&r.query);
        return 1;
    }
    if (rt->needs_pg && !s->cfg->index) {
        cd_http_reply_error(req, 503, "the index is off (index = off): no database to query");
    } else {
        int done = 0;
        /* as cd_http_handle: a broken session is retried once, reconnected */
        for (int attempt = 0; attempt < 2 && !done; attempt++) {
            if (rt->needs_pg) {
                PGconn *c = cd_http_srv_pg(s);
                if (!c)
                    break;
            }
            done = rt->fn(s, req, &r) == H_DONE;
            if (!done)
                s->pg_next_try = 0;
        }
        if (!done)
            cd_http_reply_error(req, 503, "database unavailable");
    }
    evhttp_clear_headers(&r.query);
    return 1;
}
