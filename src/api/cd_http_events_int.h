/*
 * cd_http_events_int.h - private to the push-notification streams: what
 * cd_http_events.c (the hub: the event log in PostgreSQL, its LISTEN, the
 * ring of recent events, the pump that feeds each client) and
 * cd_http_events_cli.c (the clients: SSE and websocket, subscriptions)
 * share. docs/EVENTS.md describes the streams; docs/ARCHITECTURE.md where
 * the events come from.
 */
#ifndef CD_HTTP_EVENTS_INT_H
#define CD_HTTP_EVENTS_INT_H

#include "cd_http_int.h"
#include "cd_ws.h"

#include <sys/queue.h>

/* Event kinds as bits (a subscription is a mask). */
#define EV_TIP   1u
#define EV_REORG 2u
#define EV_KEY   4u
#define EV_SPEND 8u
#define EV_EVICT 16u
#define EV_ALL   31u

/* Recent events kept in memory per server process: a client less than this
 * far behind is fed from memory, one further behind from PostgreSQL. */
#define EV_RING           2048
/* Rows one replay query reads. */
#define EV_PAGE           256
/* Replay pages one client reads per turn of the loop (then the others get
 * their turn: a client replaying a long log does not hold the process). */
#define EV_PAGES_PER_TURN 4

/* One event of the log, as sent: the JSON message and what filters it. */
typedef struct ev_event {
    int64_t id;
    unsigned kind; /* EV_* */
    char *json;    /* {"type": "event", "id": ..., "kind", "at", "data"} */
    size_t len;
    uint8_t key[32]; /* EV_KEY: the pushdata key */
    uint8_t op[36];  /* EV_SPEND: the spent txid (display bytes) + vout LE */
} ev_event;

typedef struct ev_client ev_client;
typedef struct ev_hub ev_hub;
TAILQ_HEAD(ev_clients, ev_client);

struct ev_hub {
    http_srv *s;
    PGconn *pg;          /* LISTEN cd_event; every events read */
    struct event *pg_ev; /* its socket readable: a notification */
    struct event *tick;  /* 1 s: poll, stalls, keep-alives, expiry */
    struct event *kick;  /* deferred: clients with replay left */
    double pg_next_try;
    int pg_was_down;
    int64_t last_id; /* the highest id read from the log */
    int64_t floor;   /* the ring holds every event with floor < id <= last_id */
    ev_event ring[EV_RING];
    size_t ring_head, ring_n; /* oldest slot, count */
    struct ev_clients clients;
    uint32_t nclients;
    double next_touch, next_expire;
    /* The hub's other client kind, ConduitDB's /ws (cd_http_cdb_ws.c): its
     * clients read the log joined with its registrations themselves, over
     * `pg`, each at its own position; the hub only wakes them (after
     * reading new events, and after a new session: notifications may have
     * been missed while there was none). Set while it has clients, which
     * keeps the session (the tick reconnects). */
    void (*reader_wake)(ev_hub *h, int renewed);
    int renewed; /* a session lost and opened again since the last wake */
};

struct ev_client {
    TAILQ_ENTRY(ev_client) link;
    ev_hub *hub;
    cd_ws *ws;                       /* websocket; NULL for SSE */
    struct evhttp_request *req;      /* SSE: the streaming reply */
    struct evhttp_connection *evcon; /* SSE */
    unsigned kinds;
    int started;          /* events flow (SSE: at once; ws: after subscribe) */
    int kicked;           /* replay left: the hub's kick pumps it again */
    int64_t pos;          /* the last event id it was given (or skipped) */
    double stalled_since; /* output full since (0: not) */
    double last_sent;
    char sub[33]; /* subscription id, "" while none */
    uint8_t (*keys)[32];
    size_t nkeys;
    uint8_t (*ops)[36];
    size_t nops;
    char peer[64];
};

/* cd_http_events.c */

/* The hub of this server process, made (and connected) on first use.
 * Returns NULL when PostgreSQL cannot be reached (or the index is off). */
ev_hub *ev_hub_get(http_srv *s);

/* Reads events committed since the last read into the ring and pumps every
 * client. Returns 0, or -1 when the database connection broke. */
int ev_hub_fetch(ev_hub *h) CD_WARN_UNUSED;

/* Feeds c from the ring or the log until it is caught up or its output is
 * full. */
void ev_pump(ev_client *c);

/* 1 if the event passes c's subscription. */
int ev_match(const ev_client *c, const ev_event *e);

/* Bytes queued to c's client. */
size_t ev_queued(const ev_client *c);

/* Checks a resume point (an event id) against the log.
 * Out: err: the reason when refused.
 * Returns: 0 fine; 1 older than the oldest event kept ("resume point no
 *          longer available"), 2 ahead of the log; -1 database error. */
int ev_resume_check(ev_hub *h, int64_t since, const char **err) CD_WARN_UNUSED;

/* A kind's name → EV_* (0 if unknown) and back. */
unsigned ev_kind_of(const char *name, size_t len);
const char *ev_kind_name(unsigned kind);

/* After a failed query on h->pg by another client kind: a broken session
 * is dropped (the tick reconnects, then wakes the kind). */
void ev_hub_check(ev_hub *h);

/* Runs a statement with text parameters on the hub's connection.
 * Returns: the result (PQclear it) when its status is `ok`, else NULL
 *          (logged; a broken connection is dropped for a reconnect). */
PGresult *ev_sql(ev_hub *h, const char *sql, int n, const char *const *params,
                 int ok) CD_WARN_UNUSED;

/* cd_http_events_cli.c */

/* Sends one event to c (SSE frame or websocket text). Returns 0, -1 when
 * the output refused it (full). */
int ev_client_send(ev_client *c, const ev_event *e) CD_WARN_UNUSED;

/* The hub's tick for one client: cut off a client stalled too long, send a
 * keep-alive to an idle SSE stream. May free c. */
void ev_client_tick(ev_client *c, double now);

/* Ends every client (server shutdown). */
void ev_clients_fini(ev_hub *h);

#endif /* CD_HTTP_EVENTS_INT_H */
