/*
 * cd_http_hooks_int.h - private to the webhook delivery process: what its
 * loop (cd_http_hooks_send.c: the HTTP client, the back-off, the
 * PostgreSQL session) shares with the sources of what it delivers. A
 * target is one receiver with one request in flight at a time and a queue
 * of bodies read ahead; its source says how the queue is filled and how a
 * delivery or a failure is recorded (the persistent cursor). Two sources:
 * webhook registrations (cd_http_hooks_send.c, table webhooks) and
 * ConduitDB's reference server (cd_http_hooks_cdb.c, table cdb_outbound).
 */
#ifndef CD_HTTP_HOOKS_INT_H
#define CD_HTTP_HOOKS_INT_H

#include "cd_config.h"
#include "cd_http_hooks.h"

#include <libpq-fe.h>
#include <stdint.h>

struct evhttp_connection;
struct evhttp_request;
struct event;

/* One body to POST. */
typedef struct cd_hook_ev {
    int64_t id;     /* the event it carries (a batch: its last event): X-Conduit-Event-Id */
    int64_t cursor; /* the target's cursor once this is delivered (>= id) */
    char *body;     /* the exact bytes POSTed (and signed, for a webhook) */
} cd_hook_ev;

typedef struct cd_hook_tgt cd_hook_tgt;

/* A target's delivery state: the same for both sources, and kept in the
 * same columns of the source's row (sql/012 webhooks, sql/015
 * cdb_outbound: attempts, failing, next_attempt, with failures,
 * last_error, last_attempt, failing_since written beside them). One set of
 * functions keeps it for both (cd_http_hooks_send.c): cd_hook_state_resume
 * when a target is opened, then each attempt's outcome (the back-off,
 * "failing" after webhook_failing_after attempts, the row's update with
 * CD_HOOK_SQL_FAILED / CD_HOOK_SQL_DELIVERED). */
typedef struct cd_hook_state {
    uint32_t attempts; /* failed attempts in a row at q[0] */
    int failing;       /* attempts >= webhook_failing_after */
    double next_try;   /* cd_now_s() of the next attempt; 0: now */
} cd_hook_state;

/* The SET list of a failed attempt: $1 attempts, $2 the failure (text),
 * $3 seconds until the retry, $4 failing ('t' / 'f'). */
#define CD_HOOK_SQL_FAILED                                                                         \
    "attempts = $1, failures = failures + 1, last_error = $2, last_attempt = now(), "              \
    "next_attempt = now() + $3::double precision * interval '1 second', "                          \
    "failing_since = coalesce(failing_since, now()), failing = $4"

/* What a 2xx resets, in the SET list of a source's commit. */
#define CD_HOOK_SQL_DELIVERED                                                                      \
    "delivered = delivered + 1, attempts = 0, failing = false, failing_since = NULL, "             \
    "next_attempt = NULL, last_attempt = now()"

/* How a target's queue is filled and its progress recorded. */
typedef struct cd_hook_src {
    /* Reads the next bodies into h->q (h->qn == 0 when called); clears
     * h->dirty when nothing more is known to be waiting. */
    void (*fetch)(cd_hook_tgt *h);
    /* The receiver took q[0]: commit the cursor (q[0].cursor) and
     * CD_HOOK_SQL_DELIVERED.
     * Returns: 0, or -1 when it could not be recorded (q[0] is sent again). */
    int (*commit)(cd_hook_tgt *h);
    /* Records a failed attempt in the source's row: "UPDATE <table> SET "
     * CD_HOOK_SQL_FAILED, and " WHERE id = $5" (h->id) when by_id. */
    const char *failed_sql;
    int by_id;
    const char *failed_what; /* the statement, in logs */
} cd_hook_src;

struct cd_hook_tgt {
    int64_t id; /* the webhook's id; 0 for ConduitDB's reference server */
    const cd_hook_src *src;
    char label[48];     /* "webhook 7" / "conduitdb reference server": logs */
    char *url, *secret; /* secret NULL: no signature headers */
    char host[256];
    int port;
    char *target; /* path?query */
    struct evhttp_connection *conn;
    struct evhttp_request *req;  /* in flight, or NULL */
    struct event *deadline;      /* the whole exchange's bound */
    int req_error;               /* -1, or the evhttp_request_error of req */
    int conn_reused;             /* conn answered a 2xx before (it may have gone stale) */
    cd_hook_ev q[CD_HOOK_BATCH]; /* read ahead, q[0] is being delivered */
    int qn;
    int dirty;         /* there may be new events to read */
    int seen;          /* in the last reload */
    int gone;          /* deleted while a request was out: freed when it ends */
    cd_hook_state st;  /* attempts, failing, next_try */
    int64_t read_to;   /* ConduitDB's source: events up to this were read into q */
    int64_t committed; /* ConduitDB's source: the cursor as last committed */
    struct cd_hook_tgt *next;
};

/* A target for url (checked by the caller), NULL when the URL cannot be
 * used (logged). secret may be NULL (no signature). */
cd_hook_tgt *cd_hook_tgt_new(int64_t id, const char *label, const char *url, const char *secret,
                             const cd_hook_src *src);

/* Frees a target (its connection from the loop); NULL is fine. */
void cd_hook_tgt_free(cd_hook_tgt *h);

/* Drops the queue's bodies. */
void cd_hook_queue_clear(cd_hook_tgt *h);

/* A restarted process resumes the back-off where it was: sets st from the
 * columns col (attempts), col + 1 (failing) and col + 2 (seconds until
 * next_attempt, NULL: none pending) of row of r. */
void cd_hook_state_resume(cd_hook_state *st, const PGresult *r, int row, int col);

/* Runs a statement on the process's session. Returns its result (the
 * caller PQclears it), or NULL after logging (the session is dropped when
 * it broke; a missing table is "the migrations have not run yet"). */
PGresult *cd_hook_pg_q(const char *what, const char *sql, int n, const char *const *vals);

/* The process's session, connecting if needed and allowed now; NULL
 * while PostgreSQL is down (retried every second). Borrowed. */
PGconn *cd_hook_pg(void);

/* Runs the delivery loop's pump at the next loop turn (more to read). */
void cd_hook_kick(void);

/* ConduitDB's reference server (cd_http_hooks_cdb.c): its target, read
 * from cdb_outbound (created at the head of the log the first time), or
 * NULL when the session or the table is not there yet (retried). */
cd_hook_tgt *cd_hook_cdb_open(const char *base_url);

/* Events read per query by ConduitDB's source: at most this many events
 * (and CD_HOOK_BATCH batches) are read ahead. 256 rather than 1000: the
 * unused part of a read is read again, and 256 delivered 934 batches/s
 * against 507 (docs/PERFORMANCE.md). A run of one block that fills a read
 * is read again with 4 times the window, up to _MAX events (one POST). */
#define CD_HOOK_CDB_EVENTS     256
#define CD_HOOK_CDB_EVENTS_MAX 16384

#endif /* CD_HTTP_HOOKS_INT_H */
