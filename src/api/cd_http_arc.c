/*
 * cd_http_arc.c - an ARC-compatible broadcast API under /arc (issue 15):
 *
 *   POST /arc/v1/tx    one tx: application/json {"rawTx": hex}, text/plain
 *                      hex or application/octet-stream bytes; raw or
 *                      Extended Format (BRC-30)
 *   POST /arc/v1/txs   several: a JSON array of {"rawTx"}, hex lines, or
 *                      bytes back to back; answers an array in request order
 *   GET  /arc/v1/tx/<txid>  the status as the index and this process know it
 *
 * Why here: wallets built on the BSV SDKs broadcast through ARC
 * (@bsv/sdk ARC broadcaster, tests/sdk/CONTRACT.md §3); answering in ARC's
 * shape lets them use their own node through conduitd.
 *
 * How: a transaction is checked first against the index (already mined:
 * MINED with its BUMP; already in the mempool: SEEN_ON_NETWORK; an input
 * spent by another mempool tx: DOUBLE_SPEND_ATTEMPTED with competingTxs; by
 * a mined tx: REJECTED), an EF input's amount and locking script against
 * the parent the index holds. Then libconduit-p2p broadcasts it to the node
 * (cp2p_mgr_broadcast_tx: a connection of its own, the node's answer is
 * SEEN_ON_NETWORK / REJECTED / MISSING_INPUTS / TIMEOUT) and the HTTP reply
 * waits for that final word without blocking the loop. Status words, as the
 * SDK reads them (CONTRACT.md §3.2): SEEN_ON_NETWORK, MINED (success);
 * REJECTED, DOUBLE_SPEND_ATTEMPTED, SEEN_IN_ORPHAN_MEMPOOL (errors);
 * SENT_TO_NETWORK when the node said nothing within the wait and the index
 * shows neither the tx nor a conflict (not a claim of acceptance).
 *
 * Callbacks (X-CallbackUrl, X-CallbackToken as "Authorization: Bearer"):
 * POSTed when the tx is seen and when it is mined (with merklePath,
 * blockHash, blockHeight), a poll of the index once a second finding the
 * latter; one request in flight per tx, retried with exponential back-off
 * (1 s .. 60 s, 12 attempts, then dropped with a warning); libevent's
 * asynchronous client and resolver: nothing waits. Kept in this process's
 * memory only (a restart of the HTTP server forgets them).
 *
 * Writes need "Authorization: Bearer <key>" with a key of `api_keys`
 * (config); each key may broadcast ARC_RATE transactions per second (429
 * beyond). Errors are RFC 7807 objects ({type, title, status, detail, txid,
 * extraInfo}) with Content-Type application/json, which the SDK reads.
 *
 * One HTTP server per process: the state below is file-static.
 */
#include "cd_http_int.h"
#include "cd_http_arc_int.h"

#include "btc_tx.h"
#include "btc_varint.h"
#include "cd_bump.h"
#include "cd_escape.h"
#include "cd_log.h"
#include "cd_lookup.h"
#include "cd_util.h"
#include "conduit_p2p.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ARC_MAX_TXS      100 /* per POST /arc/v1/txs */
#define ARC_RATE         100 /* transactions per second and key */
#define ARC_MAX_KEYS     16
#define ARC_WAIT_MS      10000 /* the node's silence after this long = TIMEOUT */
#define ARC_READY_WAIT_S 15    /* a request waits this long for the node connection */

/* ---- state ---- */

typedef struct arc_req arc_req;

typedef struct arc_item {
    arc_req *rq;
    uint8_t txid[32];
    uint8_t *raw;
    size_t len;
    json_t *result; /* the answer object (done when set) */
    int http;       /* its status code (200 unless an error object) */
    int queued;     /* waiting for the node connection or its answer */
} arc_item;

struct arc_req {
    http_srv *s;
    struct evhttp_request *req; /* NULL once the client went away */
    int batch;
    size_t n, left;
    arc_item *items;
    char *cb_url, *cb_token;
    struct event *deadline;
    arc_req *next;
};

static struct {
    http_srv *s;
    cp2p_mgr *mgr;
    int ready;
    arc_req *reqs;
    struct {
        double window;
        unsigned n;
    } rate[ARC_MAX_KEYS];
} A;

/* ---- replies ---- */

/* RFC 7807 object (ARC's error shape). */
static json_t *problem(int status, const char *title, const char *detail, const uint8_t *txid)
{
    char hx[65] = "";
    if (txid)
        cd_hex_encode_rev(hx, txid, 32);
    char type[96];
    snprintf(type, sizeof(type), "https://bitcoin-sv.github.io/arc/#/errors?id=_%d", status);
    return json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "type", type, "title", title, "status",
                     status, "detail", detail, "txid", hx, "extraInfo", detail);
}

static void reply_problem(struct evhttp_request *req, int status, const char *title,
                          const char *detail)
{
    cd_http_reply_jobj(req, status, problem(status, title, detail, NULL));
}

/* ARC's TransactionResponse / TransactionStatus. */
static json_t *tx_response(const uint8_t txid[32], const char *status, const char *extra,
                           const uint8_t *competing, const cd_lookup_tx *mined, const char *bump)
{
    char ts[32], hx[65], bh[65] = "";
    arc_timestamp(ts);
    cd_hex_encode_rev(hx, txid, 32);
    if (mined)
        cd_hex_encode_rev(bh, mined->block_hash, 32);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:i, s:s}", "timestamp", ts,
                          "blockHash", bh, "blockHeight", (json_int_t)(mined ? mined->height : 0),
                          "txid", hx, "merklePath", bump ? bump : "", "txStatus", status,
                          "extraInfo", extra ? extra : "", "status", 200, "title", "OK");
    if (o && competing) {
        char ch[65];
        cd_hex_encode_rev(ch, competing, 32);
        json_object_set_new(o, "competingTxs", json_pack("[s]", ch));
    }
    return o;
}

/* ---- the node connection ---- */

static void req_finish(arc_req *rq);

/* Sets an item's answer; the request is answered by finish_ready(). */
static void item_done(arc_item *it, int http, json_t *result)
{
    if (it->result) {
        json_decref(result);
        return;
    }
    it->result = result ? result : json_object();
    it->http = http;
    it->queued = 0;
    it->rq->left--;
}

/* Answers (and frees) every request whose items all have their answer. */
static void finish_ready(void)
{
    arc_req *next;
    for (arc_req *rq = A.reqs; rq; rq = next) {
        next = rq->next;
        if (rq->left == 0)
            req_finish(rq);
    }
}

/* The index's view after the node said nothing (or for GET): 1 with the
 * answer set, else 0. */
static int index_view(http_srv *s, const uint8_t *raw, size_t len, const uint8_t txid[32],
                      json_t **out, int recheck)
{
    cd_lookup_tx tx;
    int rc = cd_lookup_tx_find(s->lk, txid, 1, &tx);
    if (rc == CD_LOOKUP_OK && !tx.mempool) {
        char *bump = arc_bump_hex(s, txid);
        *out = tx_response(txid, "MINED", "", NULL, &tx, bump);
        free(bump);
        return 1;
    }
    if (rc == CD_LOOKUP_OK) {
        *out = tx_response(txid, "SEEN_ON_NETWORK", recheck ? "" : "already in the mempool", NULL,
                           NULL, NULL);
        return 1;
    }
    if (!raw)
        return 0;
    btc_tx t;
    if (btc_tx_parse(&t, raw, len) != 0)
        return 0;
    btc_tx_iter iter;
    btc_txin in;
    btc_tx_inputs(&t, &iter);
    uint32_t i = 0;
    while (btc_tx_next_input(&iter, &in)) {
        cd_lookup_spend sp;
        if (cd_lookup_spender(s->lk, in.prev_txid, in.prev_index, &sp) == CD_LOOKUP_OK &&
            memcmp(sp.txid, txid, 32) != 0) {
            char ph[65], extra[256];
            cd_hex_encode_rev(ph, in.prev_txid, 32);
            if (sp.mempool) {
                snprintf(extra, sizeof(extra), "input %u spends %s:%u, spent by a mempool tx", i,
                         ph, in.prev_index);
                *out = tx_response(txid, "DOUBLE_SPEND_ATTEMPTED", extra, sp.txid, NULL, NULL);
            } else {
                snprintf(extra, sizeof(extra),
                         "input %u spends %s:%u, already spent in block height %d", i, ph,
                         in.prev_index, (int)sp.height);
                *out = tx_response(txid, "REJECTED", extra, sp.txid, NULL, NULL);
            }
            return 1;
        }
        i++;
    }
    return 0;
}

static void on_report(const cp2p_ctx *ctx, const cp2p_bcast_report *r)
{
    (void)ctx;
    if (!r->final)
        return;
    char extra[600];
    const char *word;
    switch (r->status) {
    case CP2P_BCAST_SEEN_ON_NETWORK:
        word = "SEEN_ON_NETWORK";
        extra[0] = '\0';
        break;
    case CP2P_BCAST_REJECTED:
        word = "REJECTED";
        snprintf(extra, sizeof(extra), "the node rejected it: code 0x%02x %s",
                 r->reject ? r->reject->code : 0, r->reject ? r->reject->reason : "");
        break;
    case CP2P_BCAST_MISSING_INPUTS: {
        char ph[65];
        cd_hex_encode_rev(ph, r->parent, 32);
        word = "SEEN_IN_ORPHAN_MEMPOOL";
        snprintf(extra, sizeof(extra), "the node lacks parent %s (kept as an orphan)", ph);
        break;
    }
    case CP2P_BCAST_TIMEOUT:
        word = "SENT_TO_NETWORK";
        snprintf(extra, sizeof(extra),
                 "sent; the node neither accepted nor rejected it within %d s", ARC_WAIT_MS / 1000);
        break;
    default:
        word = NULL;
        snprintf(extra, sizeof(extra), "%s", r->detail);
        break;
    }
    int recorded = 0;
    for (arc_req *rq = A.reqs; rq; rq = rq->next) {
        for (size_t i = 0; i < rq->n; i++) {
            arc_item *it = &rq->items[i];
            if (it->result || it->queued != 2 || memcmp(it->txid, r->txid, 32) != 0)
                continue;
            json_t *res = NULL;
            if (r->status == CP2P_BCAST_TIMEOUT && cd_http_srv_pg(rq->s) &&
                index_view(rq->s, it->raw, it->len, it->txid, &res, 1)) {
                /* the index knows better than the node's silence */
            } else if (word) {
                res = tx_response(it->txid, word, extra, NULL, NULL, NULL);
            } else {
                item_done(
                    it, 503,
                    problem(503, "Service unavailable", extra[0] ? extra : "not sent", it->txid));
                continue;
            }
            json_t *st = json_object_get(res, "txStatus");
            const char *w = json_string_value(st);
            if (!recorded && w) {
                int cb = !strcmp(w, "SEEN_ON_NETWORK") || !strcmp(w, "REJECTED") ||
                         !strcmp(w, "DOUBLE_SPEND_ATTEMPTED");
                /* forward only: another server may have recorded a later
                 * word (its poll found the tx mined) since the broadcast */
                CD_IGNORE(arc_rec_status(
                    it->txid, w, json_string_value(json_object_get(res, "extraInfo")),
                    cb ? arc_callback_obj(it->txid, w,
                                          json_string_value(json_object_get(res, "extraInfo")),
                                          NULL, NULL)
                       : NULL,
                    ARC_PUT_FORWARD));
                recorded = 1;
            }
            item_done(it, 200, res);
        }
    }
    finish_ready();
}

static void send_queued(void)
{
    for (arc_req *rq = A.reqs; rq; rq = rq->next)
        for (size_t i = 0; i < rq->n; i++) {
            arc_item *it = &rq->items[i];
            if (it->result || it->queued != 1)
                continue;
            int rc = cp2p_mgr_broadcast_tx(A.mgr, NULL, it->raw, it->len, NULL);
            if (rc == CP2P_ENOPEER)
                return; /* on_ready sends them */
            if (rc != CP2P_OK)
                item_done(it, 463,
                          problem(463, "Malformed transaction", "not a transaction", it->txid));
            else
                it->queued = 2; /* in flight */
        }
}

static void on_ready(const cp2p_ctx *ctx, const cp2p_version *v)
{
    (void)ctx;
    (void)v;
    A.ready = 1;
    send_queued();
    finish_ready();
}

static void p2p_log(void *user, cp2p_log_level level, const char *msg)
{
    (void)user;
    cd_log((cd_log_level)level, "arc: %s", msg);
}

/* Creates the manager and its connection to the node (first use). */
static int mgr_start(http_srv *s)
{
    if (A.mgr)
        return 0;
    A.s = s;
    const cd_config *cfg = s->cfg;
    cp2p_options opt;
    cp2p_options_init(&opt, cp2p_net_by_name(cfg->net->name));
    opt.relay = 1; /* our connection watches for the node's inv of the tx */
    opt.broadcast_wait_ms = ARC_WAIT_MS;
    opt.tick_ms = 100;
    opt.log_fn = p2p_log;
    opt.log_level = (cp2p_log_level)cd_log_get_level();
    cp2p_handlers h = {0};
    h.on_ready = on_ready;
    h.on_broadcast = on_report;
    A.mgr = cp2p_mgr_new(s->base, &opt, &h, NULL, NULL);
    if (!A.mgr)
        return -1;
    char def[64];
    const char *peer = cfg->n_connect ? cfg->connect[0] : NULL;
    if (!peer) {
        snprintf(def, sizeof(def), "127.0.0.1:%u", cfg->net->default_port);
        peer = def;
    }
    if (cp2p_mgr_add_peer(A.mgr, peer, NULL) != CP2P_OK) {
        cp2p_mgr_free(A.mgr);
        A.mgr = NULL;
        return -1;
    }
    return arc_cb_start(s);
}

/* ---- requests ---- */

static void req_free(arc_req *rq)
{
    for (arc_req **p = &A.reqs; *p; p = &(*p)->next)
        if (*p == rq) {
            *p = rq->next;
            break;
        }
    if (rq->req) /* never answered (cannot happen: req_finish answers) */
        evhttp_connection_set_closecb(evhttp_request_get_connection(rq->req), NULL, NULL);
    for (size_t i = 0; i < rq->n; i++) {
        free(rq->items[i].raw);
        json_decref(rq->items[i].result);
    }
    free(rq->items);
    free(rq->cb_url);
    free(rq->cb_token);
    if (rq->deadline)
        event_free(rq->deadline);
    free(rq);
}

static void req_finish(arc_req *rq)
{
    if (rq->req) {
        /* forget the close callback first: after the reply evhttp may free
         * the request (and reuse the connection for the next one) */
        evhttp_connection_set_closecb(evhttp_request_get_connection(rq->req), NULL, NULL);
        if (rq->batch) {
            json_t *a = json_array();
            for (size_t i = 0; i < rq->n; i++)
                json_array_append(a, rq->items[i].result);
            cd_http_reply_jobj(rq->req, 200, a);
        } else {
            cd_http_reply_jobj(rq->req, rq->items[0].http, json_incref(rq->items[0].result));
        }
        rq->req = NULL;
    }
    req_free(rq);
}

static void req_closed(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    arc_req *rq = arg;
    rq->req = NULL; /* libevent frees it: never reply to it */
}

static void req_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    arc_req *rq = arg;
    for (size_t i = 0; i < rq->n && rq->left; i++)
        if (!rq->items[i].result)
            item_done(&rq->items[i], 503,
                      problem(503, "Service unavailable",
                              A.ready ? "no final answer from the node in time"
                                      : "no connection to the node",
                              rq->items[i].txid));
    finish_ready();
}

/* ---- parsing ---- */

/* Extended Format (BRC-30) -> the standard serialization (*std, malloc'd)
 * and, per input, the amount and locking script it claims (pointers into
 * ef). Returns 1 for EF, 0 for a plain tx (nothing set), -1 malformed. */
typedef struct ef_in {
    uint64_t sats;
    const uint8_t *script;
    size_t script_len;
} ef_in;

static int ef_parse(const uint8_t *ef, size_t len, uint8_t **std, size_t *std_len, ef_in **ins,
                    size_t *nin)
{
    static const uint8_t marker[6] = {0, 0, 0, 0, 0, 0xef};
    if (len < 10 || memcmp(ef + 4, marker, 6) != 0)
        return 0;
    uint8_t *out = malloc(len), *o = out;
    size_t p = 10;
    uint64_t n = 0;
    int rc = -1;
    *ins = NULL;
    if (!out)
        return -1;
    memcpy(o, ef, 4);
    o += 4;
#define VARINT(v)                                                                                  \
    do {                                                                                           \
        int k_ = btc_varint_read(ef + p, len - p, &(v));                                           \
        if (k_ <= 0)                                                                               \
            goto done;                                                                             \
        p += (size_t)k_;                                                                           \
    } while (0)
    VARINT(n);
    if (n == 0 || n > len / 49)
        goto done;
    *ins = calloc((size_t)n, sizeof(**ins));
    if (!*ins)
        goto done;
    o += btc_varint_write(o, n);
    for (uint64_t i = 0; i < n; i++) {
        size_t start = p;
        uint64_t sl;
        if (len - p < 36)
            goto done;
        p += 36;
        VARINT(sl);
        if (len - p < sl + 4)
            goto done;
        p += (size_t)sl + 4;
        memcpy(o, ef + start, p - start);
        o += p - start;
        if (len - p < 8)
            goto done;
        (*ins)[i].sats = cd_le64(ef + p);
        p += 8;
        VARINT(sl);
        if (len - p < sl)
            goto done;
        (*ins)[i].script = ef + p;
        (*ins)[i].script_len = (size_t)sl;
        p += (size_t)sl;
    }
    memcpy(o, ef + p, len - p); /* outputs and lock time, as they are */
    o += len - p;
    *std = out;
    *std_len = (size_t)(o - out);
    *nin = (size_t)n;
    rc = 1;
done:
#undef VARINT
    if (rc != 1) {
        free(out);
        free(*ins);
        *ins = NULL;
    }
    return rc;
}

/* Checks an EF input against the parent the index holds (skipped when it
 * holds none). Returns 0, or -1 with why. */
static int ef_check(http_srv *s, const btc_txin *in, const ef_in *e, uint32_t i, char *why,
                    size_t wl)
{
    cd_lookup_tx ptx;
    uint8_t *praw = NULL;
    if (cd_lookup_tx_find(s->lk, in->prev_txid, 1, &ptx) != CD_LOOKUP_OK ||
        cd_lookup_tx_read(s->lk, &ptx, &praw) != CD_LOOKUP_OK)
        return 0;
    btc_tx pt;
    btc_tx_iter it;
    btc_txout out;
    int rc = 0, found = 0;
    if (btc_tx_parse(&pt, praw, (size_t)ptx.size) == 0) {
        btc_tx_outputs(&pt, &it);
        while (btc_tx_next_output(&it, &out))
            if (it.index - 1 == in->prev_index) {
                found = 1;
                break;
            }
    }
    char ph[65];
    cd_hex_encode_rev(ph, in->prev_txid, 32);
    if (!found) {
        snprintf(why, wl, "input %u: %s has no output %u", i, ph, in->prev_index);
        rc = -1;
    } else if (out.value != e->sats) {
        snprintf(why, wl,
                 "input %u: the extended format says %" PRIu64 " satoshis, %s:%u holds %" PRIu64, i,
                 e->sats, ph, in->prev_index, out.value);
        rc = -1;
    } else if (out.script_len != e->script_len || memcmp(out.script, e->script, e->script_len)) {
        snprintf(why, wl, "input %u: the extended format's locking script is not that of %s:%u", i,
                 ph, in->prev_index);
        rc = -1;
    }
    free(praw);
    return rc;
}

/* Takes one transaction (raw or EF bytes): checks, then answers from the
 * index or queues it for the node. */
static void item_take(http_srv *s, arc_item *it, const uint8_t *bytes, size_t len)
{
    uint8_t *std = NULL;
    size_t slen = 0, nin = 0;
    ef_in *ef = NULL;
    int k = ef_parse(bytes, len, &std, &slen, &ef, &nin);
    if (k < 0) {
        item_done(it, 460, problem(460, "Not extended format", "malformed extended format", NULL));
        return;
    }
    if (k == 0) {
        std = malloc(len ? len : 1);
        if (std)
            memcpy(std, bytes, len);
        slen = len;
    }
    btc_tx tx;
    if (!std || btc_tx_parse(&tx, std, slen) != 0 || tx.size != slen) {
        free(std);
        free(ef);
        item_done(it, 463,
                  problem(463, "Malformed transaction", "the bytes are not one transaction", NULL));
        return;
    }
    btc_tx_txid(&tx, it->txid);
    it->raw = std;
    it->len = slen;
    if (ef) {
        btc_tx_iter iter;
        btc_txin in;
        char why[300];
        btc_tx_inputs(&tx, &iter);
        for (uint32_t i = 0; btc_tx_next_input(&iter, &in) && i < nin; i++)
            if (ef_check(s, &in, &ef[i], i, why, sizeof(why)) != 0) {
                free(ef);
                item_done(it, 463, problem(463, "Malformed transaction", why, it->txid));
                return;
            }
        free(ef);
    }
    json_t *res = NULL;
    if (index_view(s, std, slen, it->txid, &res, 0)) {
        const char *w = json_string_value(json_object_get(res, "txStatus"));
        /* the new word, the extra text the tx had (NULL: kept in the same
         * step), and never over a later word another server recorded */
        if (w)
            CD_IGNORE(arc_rec_status(it->txid, w, NULL, NULL, ARC_PUT_FORWARD));
        item_done(it, 200, res);
        return;
    }
    it->queued = 1;
}

static int ctype_is(const char *ct, const char *want)
{
    size_t n = strlen(want);
    return ct && !strncasecmp(ct, want, n) && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Hex text (whitespace around ignored) -> bytes. */
static uint8_t *hex_bytes(const char *s, size_t n, size_t *len)
{
    while (n && (s[0] == ' ' || s[0] == '\n' || s[0] == '\r' || s[0] == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == '\t'))
        n--;
    if (n == 0 || n % 2)
        return NULL;
    char *z = malloc(n + 1);
    uint8_t *b = malloc(n / 2);
    if (!z || !b) {
        free(z);
        free(b);
        return NULL;
    }
    memcpy(z, s, n);
    z[n] = '\0';
    int rc = cd_hex_decode(b, n / 2, z);
    free(z);
    if (rc != 0) {
        free(b);
        return NULL;
    }
    *len = n / 2;
    return b;
}

/* {"rawTx": hex} (no other field) -> bytes. */
static uint8_t *json_rawtx(json_t *o, size_t *len, const char **why)
{
    json_t *v = json_object_get(o, "rawTx");
    if (!json_is_object(o) || !json_is_string(v)) {
        *why = "expected {\"rawTx\": \"<hex>\"}";
        return NULL;
    }
    if (json_object_size(o) != 1) {
        *why = "unknown field: only \"rawTx\" is accepted";
        return NULL;
    }
    uint8_t *b = hex_bytes(json_string_value(v), json_string_length(v), len);
    if (!b)
        *why = "rawTx is not hex";
    return b;
}

/* Is the caller allowed to write? Sends 401/429 and returns 0 if not. */
static int authorized(http_srv *s, struct evhttp_request *req, size_t ntx)
{
    const char *keys = s->cfg->api_keys;
    if (!keys || !*keys) {
        reply_problem(req, 401, "Unauthorized",
                      "broadcasts need an API key and none is configured (api_keys)");
        return 0;
    }
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        reply_problem(req, 401, "Unauthorized", "missing 'Authorization: Bearer <api key>'");
        return 0;
    }
    const char *given = h + 7;
    size_t glen = strlen(given);
    int idx = -1, k = 0;
    for (const char *p = keys; *p && k < ARC_MAX_KEYS; k++) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        /* compare every byte (no early exit on the first difference) */
        unsigned diff = (unsigned)(n != glen);
        for (size_t i = 0; i < n; i++)
            diff |= (unsigned char)p[i] ^ (unsigned char)(i < glen ? given[i] : 0);
        if (n && !diff && idx < 0)
            idx = k;
        p = e ? e + 1 : p + n;
    }
    if (idx < 0) {
        cd_log_info("arc: a write with an unknown API key from %s",
                    evhttp_request_get_host(req) ? cd_escape_str(evhttp_request_get_host(req))
                                                 : "?");
        reply_problem(req, 401, "Unauthorized", "unknown API key");
        return 0;
    }
    double now = cd_now_s();
    if (now - A.rate[idx].window >= 1.0) {
        A.rate[idx].window = now;
        A.rate[idx].n = 0;
    }
    if (A.rate[idx].n + ntx > ARC_RATE) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        reply_problem(req, 429, "Too many requests", "this key's broadcast rate is exceeded");
        return 0;
    }
    A.rate[idx].n += (unsigned)ntx;
    return 1;
}

/* POST /arc/v1/tx and /arc/v1/txs */
static int h_post(http_srv *s, struct evhttp_request *req, int batch)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *ct = evhttp_find_header(in, "Content-Type");
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(body);
    const char *b = (const char *)evbuffer_pullup(body, -1);
    int is_json = ctype_is(ct, "application/json"), is_text = ctype_is(ct, "text/plain"),
        is_bin = ctype_is(ct, "application/octet-stream");
    if (!is_json && !is_text && !is_bin) {
        reply_problem(req, 415, "Unsupported media type",
                      "Content-Type must be application/json, text/plain or "
                      "application/octet-stream");
        return H_DONE;
    }
    if (blen == 0) {
        reply_problem(req, 400, "Bad request", "empty body");
        return H_DONE;
    }
    const char *cb_url = evhttp_find_header(in, "X-CallbackUrl");
    const char *cb_tok = evhttp_find_header(in, "X-CallbackToken");
    if (cb_url) {
        struct evhttp_uri *u = evhttp_uri_parse(cb_url);
        int ok = u && evhttp_uri_get_scheme(u) && !strcmp(evhttp_uri_get_scheme(u), "http") &&
                 evhttp_uri_get_host(u) && *evhttp_uri_get_host(u) && strlen(cb_url) < 1024 &&
                 (!cb_tok || strlen(cb_tok) < 512);
        if (u) /* libevent's evhttp_uri_free does not accept NULL (a crash) */
            evhttp_uri_free(u);
        if (!ok) {
            reply_problem(req, 400, "Bad request",
                          "X-CallbackUrl must be an http:// URL (under 1024 bytes) and "
                          "X-CallbackToken under 512 bytes");
            return H_DONE;
        }
    }
    /* split the body into transactions */
    uint8_t *bufs[ARC_MAX_TXS];
    size_t lens[ARC_MAX_TXS], n = 0;
    const char *why = NULL;
    json_t *doc = NULL;
    if (is_json) {
        json_error_t je;
        doc = json_loadb(b, blen, 0, &je);
        if (!doc) {
            why = "the body is not JSON";
        } else if (!batch) {
            if ((bufs[0] = json_rawtx(doc, &lens[0], &why)))
                n = 1;
        } else if (!json_is_array(doc) || json_array_size(doc) == 0 ||
                   json_array_size(doc) > ARC_MAX_TXS) {
            why = "expected an array of 1 to 100 {\"rawTx\"} objects";
        } else {
            for (size_t i = 0; i < json_array_size(doc) && !why; i++)
                if ((bufs[n] = json_rawtx(json_array_get(doc, i), &lens[n], &why)))
                    n++;
        }
    } else if (is_text) {
        const char *p = b, *end = b + blen;
        while (p < end && !why) {
            const char *e = memchr(p, '\n', (size_t)(end - p));
            size_t l = e ? (size_t)(e - p) : (size_t)(end - p);
            int blank = 1;
            for (size_t i = 0; i < l; i++)
                blank &= p[i] == ' ' || p[i] == '\r' || p[i] == '\t';
            if (!blank) {
                if (n == ARC_MAX_TXS || (!batch && n == 1))
                    why = batch ? "more than 100 transactions" : "one transaction per request";
                else if (!(bufs[n] = hex_bytes(p, l, &lens[n])))
                    why = "the body is not hex";
                else
                    n++;
            }
            p = e ? e + 1 : end;
        }
    } else {
        /* bytes: one tx, or several back to back (each parsed for its size) */
        size_t off = 0;
        while (off < blen && !why) {
            btc_tx t;
            size_t l = blen - off;
            uint8_t *std = NULL;
            size_t sl, ni;
            ef_in *ef = NULL;
            int k = ef_parse((const uint8_t *)b + off, l, &std, &sl, &ef, &ni);
            if (k == 0 && btc_tx_parse(&t, (const uint8_t *)b + off, l) == 0)
                l = t.size;
            else if (k != 0)
                l = blen - off; /* EF (or malformed EF: item_take answers 460): the rest */
            else
                why = "the bytes are not a transaction";
            free(std);
            free(ef);
            if (why)
                break;
            if (n == ARC_MAX_TXS || (!batch && n == 1) || (!batch && l != blen)) {
                why = batch ? "more than 100 transactions" : "one transaction per request";
                break;
            }
            bufs[n] = malloc(l);
            if (!bufs[n])
                break;
            memcpy(bufs[n], b + off, l);
            lens[n++] = l;
            off += l;
        }
    }
    json_decref(doc);
    if (why || n == 0) {
        for (size_t i = 0; i < n; i++)
            free(bufs[i]);
        reply_problem(req, 400, "Bad request", why ? why : "no transaction");
        return H_DONE;
    }
    if (!authorized(s, req, n)) {
        for (size_t i = 0; i < n; i++)
            free(bufs[i]);
        return H_DONE;
    }
    if (mgr_start(s) != 0) {
        for (size_t i = 0; i < n; i++)
            free(bufs[i]);
        reply_problem(req, 503, "Service unavailable", "cannot set up the node connection");
        return H_DONE;
    }
    arc_req *rq = calloc(1, sizeof(*rq));
    arc_item *items = calloc(n, sizeof(*items));
    if (!rq || !items)
        abort(); /* small control structures: as cd_xcalloc */
    rq->s = s;
    rq->req = req;
    rq->batch = batch;
    rq->n = rq->left = n;
    rq->items = items;
    rq->cb_url = cb_url ? strdup(cb_url) : NULL;
    rq->cb_token = cb_tok ? strdup(cb_tok) : NULL;
    rq->next = A.reqs;
    A.reqs = rq;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), req_closed, rq);
    for (size_t i = 0; i < n; i++) {
        items[i].rq = rq;
        items[i].http = 200;
        item_take(s, &items[i], bufs[i], lens[i]);
        free(bufs[i]);
        if (rq->cb_url && items[i].raw) {
            arc_rec *r = arc_rec_get(items[i].txid);
            if (r && !r->cb_url) {
                r->cb_url = strdup(rq->cb_url);
                r->cb_token = rq->cb_token ? strdup(rq->cb_token) : NULL;
                /* the first word, unless a server has one already (set in
                 * one step: a check, then a write, would overwrite a
                 * SEEN_ON_NETWORK or MINED recorded in between) */
                CD_IGNORE(arc_rec_status(items[i].txid, "RECEIVED", "", NULL, ARC_PUT_IF_ABSENT));
            }
        }
    }
    send_queued();
    rq->deadline = evtimer_new(s->base, req_deadline, rq);
    struct timeval tv = {ARC_WAIT_MS / 1000 + ARC_READY_WAIT_S, 0};
    evtimer_add(rq->deadline, &tv);
    finish_ready();
    return H_DONE;
}

/* GET /arc/v1/tx/<txid> */
static int h_status(http_srv *s, struct evhttp_request *req, const char *id)
{
    uint8_t txid[32];
    if (cd_hex_decode_rev(txid, 32, id) != 0) {
        reply_problem(req, 400, "Bad request", "the txid must be 64 hex digits");
        return H_DONE;
    }
    json_t *res = NULL;
    if (!cd_http_srv_pg(s))
        return H_DB_LOST;
    if (index_view(s, NULL, 0, txid, &res, 1)) {
        json_object_del(res, "status");
        json_object_del(res, "title");
        cd_http_reply_jobj(req, 200, res);
        return H_DONE;
    }
    /* the shared table: the POST may have landed on any of the servers */
    char st[32], ex[256];
    if (!arc_shared_get(txid, st, ex)) {
        json_t *p = problem(404, "Not found", "this transaction is unknown here", txid);
        cd_http_reply_jobj(req, 404, p);
        return H_DONE;
    }
    res = tx_response(txid, st, ex, NULL, NULL, NULL);
    json_object_del(res, "status");
    json_object_del(res, "title");
    cd_http_reply_jobj(req, 200, res);
    return H_DONE;
}

int cd_http_arc_dispatch(http_srv *s, struct evhttp_request *req, char **seg, int nseg)
{
    /* seg[0] == "arc" */
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!s->cfg->index) {
        reply_problem(req, 503, "Service unavailable",
                      "the index is off (index = off): ARC needs the database");
        return H_DONE;
    }
    if (nseg == 3 && !strcmp(seg[1], "v1") && (!strcmp(seg[2], "tx") || !strcmp(seg[2], "txs"))) {
        if (cmd != EVHTTP_REQ_POST) {
            reply_problem(req, 405, "Method not allowed", "use POST");
            return H_DONE;
        }
        if (!cd_http_srv_pg(s)) {
            reply_problem(req, 503, "Service unavailable", "database unavailable");
            return H_DONE;
        }
        return h_post(s, req, !strcmp(seg[2], "txs"));
    }
    if (nseg == 4 && !strcmp(seg[1], "v1") && !strcmp(seg[2], "tx")) {
        if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
            reply_problem(req, 405, "Method not allowed", "use GET");
            return H_DONE;
        }
        return h_status(s, req, seg[3]);
    }
    reply_problem(req, 404, "Not found", "unknown endpoint (see docs/API.md)");
    return H_DONE;
}
