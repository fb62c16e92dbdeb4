/*
 * cd_mempool_int.h - private to the mempool module: its state and what
 * cd_mempool.c (operations, relay, module) and cd_mempool_conn.c (the
 * asynchronous PostgreSQL connection) share.
 */
#ifndef CD_MEMPOOL_INT_H
#define CD_MEMPOOL_INT_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

#include "cd_config.h"
#include "cd_ctl.h"
#include "cd_hdrtree.h"
#include "cd_mempool.h"
#include "cd_hashset.h"
#include "cd_rows.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

#define MP_SEEN_MAX          65536 /* recently requested txids kept (then forgotten at once) */
#define MP_TICK_MS           100
#define MP_STEP_EVERY        3 /* run the reorg step every 3rd tick even without events */
#define MP_CONNECT_TIMEOUT_S 10.0
#define MP_BACKOFF_MIN_S     0.1
#define MP_BACKOFF_MAX_S     2.0 /* seconds between connection attempts while PG is down */
#define MP_SCHEMA_WAIT       20  /* schema checks (one per MP_SCHEMA_EVERY_S) before migrating */
#define MP_SCHEMA_EVERY_S    0.5
#define MP_ERROR_HOLD_S      0.2 /* pause after a statement failed */
#define MP_QUEUE_MAX         CD_MEMPOOL_QUEUE_MAX

/* One parsed transaction waiting to be written. */
typedef struct mp_tx {
    uint8_t txid[32];
    uint32_t size;
    uint8_t *raw; /* size bytes, as the peer sent them (stored in mempool_tx.raw) */
    uint8_t *ins; /* n_in x 36 bytes: prev txid, LE prev index */
    size_t n_in, cap_in;
    uint8_t *keys; /* n_push x 32 */
    uint32_t *idx, *flags;
    size_t n_push, cap_push;
} mp_tx;

/* Growable byte buffer for one batch's parameters. */
typedef struct mp_buf {
    char *p;
    size_t len, cap;
} mp_buf;

/* Parameters of cd_mempool_add_batch (the sql/004 signature, with the txs'
 * bytes): bytea ones sent binary, integer arrays as text literals. */
enum { P_TXIDS, P_SIZES, P_RAWS, P_INS, P_IN_TX, P_PUSH, P_PUSH_TX, P_PUSH_IDX, P_PUSH_FL, P_N };

/* A batch built from the queue's head; owned until its statement succeeded
 * or failed with an SQL error (resent after a reconnect). */
typedef struct mp_batch {
    mp_buf b[P_N];
    size_t n; /* txs; 0 = none */
} mp_batch;

typedef enum mp_conn_state { MP_DOWN, MP_CONNECTING, MP_IDLE, MP_BUSY } mp_conn_state;

typedef enum mp_op {
    OP_NONE,
    OP_SCHEMA,   /* schema version check */
    OP_TRUNCATE, /* empty the mempool tables */
    OP_TARGET,   /* chain_target upsert */
    OP_STEP,     /* SELECT cd_reorg_step() */
    OP_TIP,      /* index_tip read after a switch */
    OP_BATCH,    /* cd_mempool_add_batch */
} mp_op;

typedef struct mp_state {
    cd_ctl *ctl;
    const cd_config *cfg;
    struct event_base *base;
    cd_hdrtree *tree;
    struct event *tick;
    unsigned ticks;
    /* connection */
    PGconn *c;
    mp_conn_state cs;
    struct event *ev; /* the socket's event (re-armed per wait) */
    evutil_socket_t ev_fd;
    short ev_what;
    double connect_deadline, retry_at, backoff;
    int down_logged;
    mp_op op;      /* in flight (cs == MP_BUSY) */
    PGresult *res; /* first result of the statement in flight */
    double op_t0;
    double hold_until; /* after an SQL error: nothing is sent before this */
    /* what waits for the connection */
    int schema_ok, schema_checks;
    double schema_at;
    int ready;              /* migrated and mempool emptied */
    int target_dirty;       /* chain_target must be (re)written */
    int step_req;           /* a reorg step is queued (coalesced) */
    int step_due;           /* the last step has work pending */
    int tip_req;            /* read index_tip after a switch */
    int tip_poll;           /* read index_tip for the status (every tick) */
    int tip_log;            /* the read in flight follows a switch: log it */
    int32_t indexed_height; /* index_tip height last read, -1: none/unknown */
    int sw_fork, sw_leave, sw_join, sw_reorg;
    double sw_ms;
    int synced; /* the index reached the tree's tip once: relay starts */
    /* relay */
    cd_hashset seen; /* recently requested txids */
    mp_tx *q;
    size_t q_n, q_cap;
    mp_batch batch;
    uint64_t accepted, known, conflicted, received, dropped, held_back;
    uint64_t logged_accepted;
    double last_log;
    cd_rows_opts opts;
} mp_state;

/* Sends the next statement that waits, if the connection is idle (cd_mempool.c). */
void cd_mempool_dispatch(mp_state *s);

/* A statement failed (down: the connection was lost): requeue or give up (cd_mempool.c). */
void cd_mempool_op_failed(mp_state *s, mp_op op, int down);

/* A statement completed with result r (cd_mempool.c). */
void cd_mempool_op_done(mp_state *s, mp_op op, PGresult *r);

/* Stops waiting on the connection's socket. */
void cd_mempool_unwatch(mp_state *s);

/* The connection is gone or unusable: requeue what was in flight, close,
 * and retry after the back-off. */
void cd_mempool_conn_lost(mp_state *s, const char *what);

/* Starts connecting (asynchronously). */
void cd_mempool_connect_start(mp_state *s);

/* Sends sql as `op`. A send that fails is the connection lost: handled here
 * (cd_mempool_conn_lost: `op` fails and is retried), so nothing is
 * returned. */
void cd_mempool_send_query(mp_state *s, mp_op op, const char *sql);

/* Sends sql with parameters as `op`; a failed send as above. */
void cd_mempool_send_params(mp_state *s, mp_op op, const char *sql, int n, const char *const *vals,
                            const int *lens, const int *fmts);

/* 1 if r is a successful result. */
int cd_mempool_res_ok(PGresult *r);

/* The error message of r (never empty). */
const char *cd_mempool_res_err(PGresult *r);

#endif /* CD_MEMPOOL_INT_H */
