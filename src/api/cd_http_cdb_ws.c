/*
 * cd_http_cdb_ws.c - ConduitDB's /ws websocket (issue 16): output spends of
 * the registered outpoints as ConduitDB's bare 104-byte binary frames and,
 * for a client that asks (?notifications=all), tip-filter matches and
 * matches/spends of blocks that left the best chain as JSON text frames.
 * Also the minute timer that drops expired tip-filter registrations.
 *
 * Why it exists: ConduitDB's users (the ElectrumSV reference server) learn
 * of spends only from this socket. What is sent, and where conduitd differs
 * from ConduitDB, is docs/CONDUITDB_API.md ("conduitd's /ws").
 *
 * How: a client kind of the process's one event-log hub
 * (cd_http_events.c, shared with /v1/events and /v1/ws): the hub's
 * PostgreSQL session LISTENs on cd_event, reconnects after a loss, and
 * wakes this kind (wake()) when it read new events or has a new session;
 * the kind then reads, over that session, the events after each client's
 * position (cd_cdbq_notices: the event log joined with the registrations),
 * in id order, which is commit order, so nothing is skipped or sent twice
 * while the process lives. The kind keeps only what is ConduitDB's: the
 * matching (in SQL), the frames, the account filter, the expiry sweep.
 * Each client has its own position in the log and gets its next batch
 * only when its queue has room, so a burst (a block with thousands of
 * matches) is paced by the client's reading instead of cutting it off.
 * Transport, framing and back-pressure are cd_ws.c: a client whose unread output
 * passes HTTP_CDB_WS_MAX_OUTPUT is closed (1008, with the reason) rather
 * than buffered without bound; the loop never waits for a client.
 */
#include "cd_http_cdb.h"
#include "cd_http_events_int.h" /* the hub */

#include "cd_cdbq_notify.h"
#include "cd_log.h"
#include "cd_pg.h"
#include "cd_util.h"
#include "cd_ws.h"

#include <sys/queue.h> /* TAILQ_INIT for evkeyvalq */

#include <errno.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WS_EVENTS_PER_READ                                                                         \
    200                /* events read per query: a client's next batch is read only                \
                        * once its queue is under half of HTTP_CDB_WS_MAX_OUTPUT */
#define WS_EXPIRE_S 60 /* expired tip-filter registrations dropped every minute */

typedef struct cdb_client {
    cd_ws *ws;
    int64_t last;    /* id of the last event read for this client */
    int all;         /* ?notifications=all: the text frames too */
    int has_account; /* ?account_id=N: only that account's matches */
    int64_t account;
    struct cdb_client *next;
} cdb_client;

/* One per server process (single-threaded loop). */
static struct {
    http_srv *srv;
    cdb_client *clients;
    size_t n;
    ev_hub *ev; /* the event-log hub: its session reads the notices */
    struct event *expire_ev;
} hub;

/* ---- message encoding ---- */

void cd_http_cdb_spend_record(const cd_cdbq_notice *v, uint8_t out[104])
{
    /* ConduitDB's output_spend_struct ">32sI32sI32s" (conduit_lib/types.py) */
    memcpy(out, v->out_tx, 32);
    cd_put_be32(out + 32, v->out_idx);
    memcpy(out + 36, v->in_tx, 32);
    cd_put_be32(out + 68, v->in_idx);
    if (v->mempool)
        memset(out + 72, 0, 32); /* NO_BLOCK_HASH */
    else
        memcpy(out + 72, v->block, 32);
}

/* ---- delivery ---- */

/* Queues one message; a client that does not keep up is closed with the
 * reason (the loop never waits for it). Returns 0, or -1 (closing). */
static int client_send(cdb_client *c, int op, const void *data, size_t len)
{
    if (cd_ws_closing(c->ws))
        return -1;
    if (cd_ws_send(c->ws, op, data, len) == 0)
        return 0;
    if (errno == ENOBUFS) {
        char why[96];
        snprintf(why, sizeof(why), "too slow: %zu bytes unread", cd_ws_queued(c->ws));
        cd_log_warn("http: /ws %s: %s; closing", cd_ws_peer(c->ws), why);
        cd_ws_close(c->ws, CD_WS_CLOSE_POLICY, why);
    } else if (errno != EPIPE) {
        cd_ws_close(c->ws, CD_WS_CLOSE_INTERNAL, "cannot queue a message");
    }
    return -1;
}

static void deliver(cdb_client *c, const cd_cdbq_notice *v, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (v[i].kind == CD_CDBQ_N_SPEND) {
            uint8_t rec[104];
            cd_http_cdb_spend_record(&v[i], rec);
            if (client_send(c, CD_WS_OP_BINARY, rec, sizeof(rec)) != 0)
                return;
            i++;
            continue;
        }
        size_t j = cd_cdbq_notice_run(v, n, i); /* a run of one kind and block: one message */
        if (c->all) {
            json_t *o = cd_cdbq_notice_json(v + i, j - i, c->has_account, c->account);
            char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
            json_decref(o);
            if (text) {
                int rc = client_send(c, CD_WS_OP_TEXT, text, strlen(text));
                free(text);
                if (rc != 0)
                    return;
            }
        }
        i = j;
    }
}

/* 1 if the client can take another batch now: its queue is under half of
 * the cap (cd_ws's on_drain calls pump again when it falls there). */
static int has_room(const cdb_client *c)
{
    return !cd_ws_closing(c->ws) && cd_ws_queued(c->ws) <= HTTP_CDB_WS_MAX_OUTPUT / 2;
}

/* Reads and delivers the events after each client's position, a batch at
 * a time, while the client has room: each client goes at its own pace
 * through the log (a slow one lags, it does not hold the others or the
 * loop; one that stops reading is dropped by cd_ws's write timeout). One
 * query serves every client at the same position. */
static void pump(void)
{
    for (;;) {
        cdb_client *lead = NULL;
        for (cdb_client *c = hub.clients; c; c = c->next)
            if (has_room(c) && c->last >= 0 && (!lead || c->last < lead->last))
                lead = c;
        PGconn *pg = hub.ev ? hub.ev->pg : NULL;
        if (!lead || !pg)
            return;
        int64_t after = lead->last, last = after;
        cd_cdbq_notice *v = NULL;
        size_t n = 0;
        char err[512];
        int rc = cd_cdbq_notices(pg, after, WS_EVENTS_PER_READ, &v, &n, &last, err, sizeof(err));
        if (rc != CD_LOOKUP_OK) {
            free(v);
            if (PQstatus(pg) != CONNECTION_OK) {
                /* the hub reconnects and wakes us: the positions are kept */
                cd_log_warn("http: /ws: %s; the event log is read again once PostgreSQL is back "
                            "(none is missed)",
                            err);
                ev_hub_check(hub.ev);
                return;
            }
            /* a row the code cannot read: the clients are told rather
             * than left believing nothing happened */
            cd_log_error("http: /ws: %s (after event %" PRId64 "); closing the websockets", err,
                         after);
            for (cdb_client *c = hub.clients; c; c = c->next)
                cd_ws_close(c->ws, CD_WS_CLOSE_INTERNAL, "cannot read the event log");
            return;
        }
        for (cdb_client *c = hub.clients; c; c = c->next) {
            if (c->last != after || !has_room(c))
                continue;
            deliver(c, v, n);
            /* caught up: parked (-1 - position) until the next wake-up */
            c->last = last == after ? -1 - last : last;
        }
        free(v);
    }
}

/* A wake-up (NOTIFY, reconnect): every parked client may read again. */
static void unpark(void)
{
    for (cdb_client *c = hub.clients; c; c = c->next)
        if (c->last < 0)
            c->last = -1 - c->last;
}

/* The hub's wake-up (new events, or a new session after a lost one). */
static void wake(ev_hub *h, int renewed)
{
    (void)h;
    if (renewed)
        cd_log_info("http: /ws: LISTEN session back; the websockets catch up from the event log");
    unpark();
    pump();
}

/* ---- clients ---- */

static void on_message(cd_ws *ws, int opcode, const uint8_t *data, size_t len, void *arg)
{
    (void)opcode;
    (void)data;
    (void)arg;
    /* ConduitDB's server closes on any message ("websocket exiting on
     * unwanted incoming message"); clients send nothing */
    cd_log_info("http: /ws %s: a %zu-byte message from the client; closing", cd_ws_peer(ws), len);
    cd_ws_close(ws, CD_WS_CLOSE_POLICY, "no messages are expected from the client");
}

static void on_drain(cd_ws *ws, void *arg)
{
    (void)ws;
    (void)arg;
    pump(); /* this client has room again */
}

static void on_close(cd_ws *ws, int code, const char *reason, void *arg)
{
    cdb_client *c = arg;
    cd_log_info("http: /ws %s: closed (%d %s)", cd_ws_peer(ws), code, reason ? reason : "");
    for (cdb_client **p = &hub.clients; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    hub.n--;
    free(c);
    if (!hub.clients && hub.ev) /* no one to wake */
        hub.ev->reader_wake = NULL;
}

int cd_http_cdb_ws(http_srv *s, struct evhttp_request *req)
{
    if (!s->cfg->index) {
        cd_http_cdb_error(req, 503, "the index is off (index = off): no notifications");
        return H_DONE;
    }
    cdb_client *c = cd_xcalloc(1, sizeof(*c));
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *qs = u ? evhttp_uri_get_query(u) : NULL;
    if (qs) {
        struct evkeyvalq q;
        TAILQ_INIT(&q);
        int bad = evhttp_parse_query_str(qs, &q) != 0;
        const char *nv = bad ? NULL : evhttp_find_header(&q, "notifications");
        const char *av = bad ? NULL : evhttp_find_header(&q, "account_id");
        if (nv && !strcmp(nv, "all"))
            c->all = 1;
        else if (nv && strcmp(nv, "spends"))
            bad = 1;
        if (av) {
            char *end;
            errno = 0;
            c->account = strtoll(av, &end, 10);
            c->has_account = 1;
            bad |= *av == '\0' || *end != '\0' || errno != 0;
        }
        evhttp_clear_headers(&q);
        if (bad) {
            free(c);
            cd_http_cdb_error(req, 400,
                              "notifications must be 'spends' (the default) or 'all'; "
                              "account_id an integer");
            return H_DONE;
        }
    }
    hub.srv = s;
    if (!(hub.ev = ev_hub_get(s))) {
        free(c);
        cd_http_cdb_error(req, 503, "Database is unavailable at present");
        return H_DONE;
    }
    const cd_ws_limits lim = {HTTP_CDB_WS_MAX_MESSAGE, HTTP_CDB_WS_MAX_OUTPUT, 30, 60};
    /* the client starts after the newest event (ConduitDB has no resume):
     * read after LISTEN, so nothing between the two is missed */
    char err[512];
    int64_t head = 0;
    if (cd_cdbq_events_head(hub.ev->pg, &head, err, sizeof(err)) != 0) {
        cd_log_warn("http: /ws: %s", err);
        ev_hub_check(hub.ev);
        free(c);
        cd_http_cdb_error(req, 503, "Database is unavailable at present");
        return H_DONE;
    }
    c->last = -1 - head; /* parked at the head until the next wake-up */
    const cd_ws_cbs cbs = {on_message, on_drain, on_close};
    c->ws = cd_ws_upgrade(req, &lim, &cbs, c);
    if (!c->ws) { /* not a handshake: the reply was sent */
        free(c);
        return H_DONE;
    }
    c->next = hub.clients;
    hub.clients = c;
    hub.n++;
    hub.ev->reader_wake = wake;
    cd_log_info("http: /ws %s: open (%s%s), from event %" PRId64, cd_ws_peer(c->ws),
                c->all ? "all notifications" : "spends", c->has_account ? ", one account" : "",
                head);
    return H_DONE;
}

/* ---- the server's start and stop ---- */

static void on_expire(evutil_socket_t fd, short what, void *arg)
{
    http_srv *s = arg;
    (void)fd;
    (void)what;
    PGconn *pg = cd_http_srv_pg(s);
    if (pg) {
        int n = 0;
        char err[512];
        if (cd_cdbq_expire(pg, &n, err, sizeof(err)) != 0)
            cd_log_warn("http: tip-filter expiry: %s", err);
        else if (n > 0)
            cd_log_info("http: %d expired tip-filter registration(s) removed", n);
    }
    struct timeval tv = {WS_EXPIRE_S, 0};
    evtimer_add(hub.expire_ev, &tv);
}

void cd_http_cdb_start(http_srv *s)
{
    hub.srv = s;
    /* one server sweeps (any would do: the sweep is one idempotent call) */
    if (s->proc == 0 && s->cfg->index) {
        hub.expire_ev = evtimer_new(s->base, on_expire, s);
        struct timeval tv = {WS_EXPIRE_S, 0};
        if (hub.expire_ev)
            evtimer_add(hub.expire_ev, &tv);
    }
}

void cd_http_cdb_stop(void)
{
    while (hub.clients) /* on_close unlinks each */
        cd_ws_abort(hub.clients->ws, "server stopping");
    if (hub.ev) /* freed after us (cd_http_events_fini) */
        hub.ev->reader_wake = NULL;
    if (hub.expire_ev)
        event_free(hub.expire_ev);
    memset(&hub, 0, sizeof(hub));
}
