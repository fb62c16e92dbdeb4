/*
 * cd_http_arc_cb.c - the ARC routes' memory (cd_http_arc.c): the last status
 * of recently broadcast transactions, in the table the HTTP servers share
 * (GET /arc/v1/tx/<txid> on any server reads it), and, in the server that
 * took the POST, their callbacks (X-CallbackUrl): POSTed asynchronously
 * with libevent's HTTP client and resolver, one in flight per tx, retried
 * with exponential back-off; a poll of the index once a second finds the
 * mined ones.
 */
#include "cd_http_int.h"
#include "cd_http_arc_int.h"

#include "cd_bump.h"
#include "cd_escape.h"
#include "cd_log.h"
#include "cd_lookup.h"
#include "cd_util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* one HTTP server per process: file-static */
static struct {
    http_srv *s;
    struct evdns_base *dns;
    struct event *poll;
    arc_rec recs[ARC_RECS];
    size_t rec_next;
} R;

void arc_timestamp(char out[32])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The BUMP hex of a mined tx (malloc'd; NULL when it cannot be built). */
char *arc_bump_hex(http_srv *s, const uint8_t txid[32])
{
    cd_bump b;
    char err[256];
    const uint8_t(*one)[32] = (const uint8_t(*)[32])txid;
    if (cd_bump_lookup(s->lk, one, 1, &b, err, sizeof(err)) != 0)
        return NULL;
    size_t len;
    uint8_t *bin = cd_bump_binary(&b, &len);
    char *hx = malloc(2 * len + 1);
    if (hx)
        cd_hex_encode(hx, bin, len);
    free(bin);
    cd_bump_free(&b);
    return hx;
}

/* ---- status records and callbacks ---- */

arc_rec *arc_rec_find(const uint8_t txid[32])
{
    for (size_t i = 0; i < ARC_RECS; i++)
        if (R.recs[i].used && !memcmp(R.recs[i].txid, txid, 32))
            return &R.recs[i];
    return NULL;
}

static void rec_clear(arc_rec *r)
{
    for (int i = 0; i < r->ncbq; i++)
        json_decref(r->cbq[i]);
    free(r->cb_url);
    free(r->cb_token);
    memset(r, 0, sizeof(*r));
}

/* The record of txid, a new one if needed (the oldest without callbacks
 * in flight makes room); NULL when every slot is busy. */
arc_rec *arc_rec_get(const uint8_t txid[32])
{
    arc_rec *r = arc_rec_find(txid);
    if (r)
        return r;
    for (size_t k = 0; k < ARC_RECS; k++) {
        arc_rec *c = &R.recs[(R.rec_next + k) % ARC_RECS];
        if (c->used && (c->inflight || c->ncbq))
            continue;
        R.rec_next = (R.rec_next + k + 1) % ARC_RECS;
        rec_clear(c);
        c->used = 1;
        memcpy(c->txid, txid, 32);
        return c;
    }
    return NULL;
}

static void cb_enqueue(arc_rec *r, json_t *cb)
{
    if (!r->cb_url || !cb || r->ncbq == ARC_CB_QUEUE) {
        json_decref(cb);
        return;
    }
    r->cbq[r->ncbq++] = cb;
}

/* ---- the status table shared by the servers (cd_http_int.h) ---- */

static http_arc_slot *shared_tab;
static int32_t self_pid; /* the claim this process writes into a slot */

void arc_shared_attach(http_arc_slot *tab)
{
    shared_tab = tab;
    self_pid = (int32_t)getpid();
}

static http_arc_slot *shared_slot(const uint8_t txid[32])
{
    return &shared_tab[cd_le32(txid) % HTTP_ARC_SLOTS];
}

/* Spins before a waiter yields its core (a write takes well under a
 * microsecond while its process runs), and yields after which a claimant
 * that still holds the slot is taken for dead even if its pid answers (a
 * pid reused after a server died in the middle of a write): a bound, so a
 * server never waits forever, far above any real write. */
#define SLOT_SPINS    64u
#define SLOT_WAIT_MAX (1u << 20)

/* After `spins` turns of waiting for a slot's writer: go on spinning, or
 * give the core away (the writer may be waiting for it: 2 cores, 4
 * servers). */
static void slot_wait(unsigned spins)
{
    if (spins >= SLOT_SPINS)
        sched_yield();
}

/* 1 if the server that claimed a slot is gone (killed between its claim
 * and its release): its half-written slot is worth nothing. */
static int writer_gone(int32_t pid, unsigned spins)
{
    if (spins < SLOT_SPINS || pid <= 0)
        return 0;
    return spins >= SLOT_WAIT_MAX || (kill((pid_t)pid, 0) != 0 && errno == ESRCH);
}

int arc_status_rank(const char *status)
{
    /* bitcoin-sv/arc internal/metamorph/metamorph_api/metamorph_api.proto,
     * enum Status: the order ARC moves a tx through (spaced by 10 there) */
    static const struct {
        const char *word;
        int rank;
    } order[] = {{"QUEUED", 10},
                 {"RECEIVED", 20},
                 {"STORED", 30},
                 {"ANNOUNCED_TO_NETWORK", 40},
                 {"REQUESTED_BY_NETWORK", 50},
                 {"SENT_TO_NETWORK", 60},
                 {"ACCEPTED_BY_NETWORK", 70},
                 {"SEEN_IN_ORPHAN_MEMPOOL", 80},
                 {"SEEN_ON_NETWORK", 90},
                 {"DOUBLE_SPEND_ATTEMPTED", 100},
                 {"REJECTED", 110},
                 {"MINED_IN_STALE_BLOCK", 115},
                 {"MINED", 120}};
    for (size_t i = 0; i < CD_ARRAY_LEN(order); i++)
        if (!strcmp(order[i].word, status))
            return order[i].rank;
    return 0;
}

/* Writes txid's status into its slot if mode allows it, deciding from the
 * slot's content while holding the slot's writer claim: no other server
 * writes the slot between the look and the write (readers still only see
 * whole writes, by the seq). Returns 1 if written, 0 if refused. */
static int shared_put(const uint8_t txid[32], const char *status, const char *extra,
                      arc_put_mode mode)
{
    if (!shared_tab)
        return 0;
    http_arc_slot *sl = shared_slot(txid);
    for (unsigned spins = 0;; spins++) {
        int32_t cur = 0;
        if (__atomic_compare_exchange_n(&sl->writer, &cur, self_pid, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            break;
        if (writer_gone(cur, spins) &&
            __atomic_compare_exchange_n(&sl->writer, &cur, self_pid, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED)) {
            cd_log_warn("arc: status slot taken over from server pid %d (gone mid-write)",
                        (int)cur);
            break;
        }
        slot_wait(spins);
    }
    /* The slot as it stands: only writers change it, and this one holds the
     * claim (a slot left odd by a dead writer is half-written: not this
     * tx's status) */
    uint32_t q = __atomic_load_n(&sl->seq, __ATOMIC_RELAXED);
    int mine = q != 0 && !(q & 1u) && !memcmp(sl->txid, txid, 32) && sl->status[0] != '\0';
    if (mine &&
        (mode == ARC_PUT_IF_ABSENT || arc_status_rank(status) < arc_status_rank(sl->status))) {
        __atomic_store_n(&sl->writer, 0, __ATOMIC_RELEASE);
        return 0;
    }
    char keep[sizeof(sl->extra)] = "";
    if (!extra && mine)
        memcpy(keep, sl->extra, sizeof(keep) - 1);
    /* odd while being written (already odd when a dead writer left it so) */
    q |= 1u;
    __atomic_store_n(&sl->seq, q, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(sl->txid, txid, 32);
    snprintf(sl->status, sizeof(sl->status), "%s", status);
    snprintf(sl->extra, sizeof(sl->extra), "%s", extra ? extra : keep);
    __atomic_store_n(&sl->seq, q + 1u, __ATOMIC_RELEASE);
    __atomic_store_n(&sl->writer, 0, __ATOMIC_RELEASE);
    return 1;
}

int arc_shared_get(const uint8_t txid[32], char status[32], char extra[256])
{
    if (!shared_tab)
        return 0;
    const http_arc_slot *sl = shared_slot(txid);
    for (unsigned spins = 0;; spins++) {
        uint32_t q = __atomic_load_n(&sl->seq, __ATOMIC_ACQUIRE);
        if (q & 1u) {
            /* a writer is in it: wait until it is done (it may be another
             * write of this very txid), unless it died there */
            if (writer_gone(__atomic_load_n(&sl->writer, __ATOMIC_RELAXED), spins))
                return 0;
            slot_wait(spins);
            continue;
        }
        uint8_t id[32];
        char st[32], ex[256];
        memcpy(id, sl->txid, 32);
        memcpy(st, sl->status, sizeof(st));
        memcpy(ex, sl->extra, sizeof(ex));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&sl->seq, __ATOMIC_RELAXED) != q)
            continue; /* rewritten meanwhile: read again */
        if (q == 0 || memcmp(id, txid, 32) != 0)
            return 0;
        st[sizeof(st) - 1] = ex[sizeof(ex) - 1] = '\0';
        memcpy(status, st, sizeof(st));
        memcpy(extra, ex, sizeof(ex));
        return status[0] != '\0';
    }
}

/* Records a status (and queues the callback for the words ARC sends). */
int arc_rec_status(const uint8_t txid[32], const char *status, const char *extra, json_t *callback,
                   arc_put_mode mode)
{
    int put = shared_put(txid, status, extra, mode);
    arc_rec *r = put && callback ? arc_rec_find(txid) : NULL;
    if (r)
        cb_enqueue(r, callback);
    else
        json_decref(callback); /* refused, or no callback URL for this tx */
    return put;
}

static void cb_done(struct evhttp_request *res, void *arg)
{
    arc_rec *r = arg;
    int code = res ? evhttp_request_get_response_code(res) : 0;
    r->inflight = 0;
    if (code >= 200 && code < 300) {
        json_decref(r->cbq[0]);
        memmove(r->cbq, r->cbq + 1, (size_t)(r->ncbq - 1) * sizeof(r->cbq[0]));
        r->ncbq--;
        r->attempts = 0;
        r->next_try = 0;
        return;
    }
    char hx[65];
    cd_hex_encode_rev(hx, r->txid, 32);
    if (++r->attempts >= ARC_CB_TRIES) {
        cd_log_warn("arc: callback for %s to %s dropped after %d attempts (last answer %d)", hx,
                    cd_escape_str(r->cb_url), r->attempts, code);
        json_decref(r->cbq[0]);
        memmove(r->cbq, r->cbq + 1, (size_t)(r->ncbq - 1) * sizeof(r->cbq[0]));
        r->ncbq--;
        r->attempts = 0;
        return;
    }
    double delay = 1.0;
    for (int i = 1; i < r->attempts && delay < ARC_CB_MAX_S; i++)
        delay *= 2;
    if (delay > ARC_CB_MAX_S)
        delay = ARC_CB_MAX_S;
    r->next_try = cd_now_s() + delay;
    cd_log_info("arc: callback for %s to %s failed (answer %d); retry in %.0f s", hx,
                cd_escape_str(r->cb_url), code, delay);
}

/* Starts the POST of the first queued callback (asynchronous). */
static void cb_send(arc_rec *r)
{
    struct evhttp_uri *u = evhttp_uri_parse(r->cb_url);
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    int port = u ? evhttp_uri_get_port(u) : -1;
    if (!host) { /* checked when accepted: cannot happen */
        if (u) /* evhttp_uri_free does not accept NULL */
            evhttp_uri_free(u);
        r->attempts = ARC_CB_TRIES - 1;
        cb_done(NULL, r);
        return;
    }
    const char *path = evhttp_uri_get_path(u), *q = evhttp_uri_get_query(u);
    char target[2048];
    snprintf(target, sizeof(target), "%s%s%s", path && *path ? path : "/", q ? "?" : "",
             q ? q : "");
    struct evhttp_connection *c =
        evhttp_connection_base_new(R.s->base, R.dns, host, (ev_uint16_t)(port > 0 ? port : 80));
    struct evhttp_request *rq = c ? evhttp_request_new(cb_done, r) : NULL;
    if (!rq) {
        if (c)
            evhttp_connection_free(c);
        evhttp_uri_free(u);
        return; /* out of memory: the next poll tries again */
    }
    evhttp_connection_set_timeout(c, 10);
    evhttp_connection_free_on_completion(c);
    struct evkeyvalq *h = evhttp_request_get_output_headers(rq);
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (r->cb_token) {
        char auth[600];
        snprintf(auth, sizeof(auth), "Bearer %s", r->cb_token);
        evhttp_add_header(h, "Authorization", auth);
    }
    char *body = json_dumps(r->cbq[0], JSON_COMPACT);
    if (body) {
        evbuffer_add(evhttp_request_get_output_buffer(rq), body, strlen(body));
        free(body);
    }
    r->inflight = 1;
    if (evhttp_make_request(c, rq, EVHTTP_REQ_POST, target) != 0) {
        r->inflight = 0; /* libevent freed rq; c is freed on completion */
        r->next_try = cd_now_s() + 1;
    }
    evhttp_uri_free(u);
}

/* The callback object (ARC's Callback). */
json_t *arc_callback_obj(const uint8_t txid[32], const char *status, const char *extra,
                         const cd_lookup_tx *mined, const char *bump)
{
    char ts[32], hx[65];
    arc_timestamp(ts);
    cd_hex_encode_rev(hx, txid, 32);
    json_t *o = json_pack("{s:s, s:s, s:s}", "timestamp", ts, "txid", hx, "txStatus", status);
    if (o && extra && *extra)
        json_object_set_new(o, "extraInfo", json_string(extra));
    if (o && mined) {
        json_object_set_new(o, "merklePath", json_string(bump ? bump : ""));
        json_object_set_new(o, "blockHash", cd_http_json_hash(mined->block_hash));
        json_object_set_new(o, "blockHeight", json_integer(mined->height));
    }
    return o;
}

/* Once a second: txs with a callback not yet mined are looked up; queued
 * callbacks whose time has come are sent. */
static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    double now = cd_now_s();
    PGconn *pg = NULL;
    for (size_t i = 0; i < ARC_RECS; i++) {
        arc_rec *r = &R.recs[i];
        if (!r->used || !r->cb_url)
            continue;
        if (!r->cb_mined_done && (pg || (pg = cd_http_srv_pg(R.s)) != NULL)) {
            cd_lookup_tx tx;
            if (cd_lookup_tx_find(R.s->lk, r->txid, 0, &tx) == CD_LOOKUP_OK) {
                char *bump = arc_bump_hex(R.s, r->txid);
                if (bump) { /* no tree yet: the next poll */
                    r->cb_mined_done = 1;
                    CD_IGNORE(arc_rec_status(r->txid, "MINED", "",
                                             arc_callback_obj(r->txid, "MINED", "", &tx, bump),
                                             ARC_PUT_FORWARD)); /* MINED ranks first */
                    free(bump);
                }
            }
        }
        if (r->ncbq && !r->inflight && now >= r->next_try)
            cb_send(r);
    }
}

int arc_cb_start(http_srv *s)
{
    if (R.poll)
        return 0;
    R.s = s;
    R.dns = evdns_base_new(s->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    R.poll = event_new(s->base, -1, EV_PERSIST, poll_cb, NULL);
    if (!R.poll)
        return -1;
    struct timeval tv = {1, 0};
    return event_add(R.poll, &tv);
}
