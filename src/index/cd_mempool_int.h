/*
 * cd_mempool_int.h - private to the mempool module: its state and what
 * cd_mempool.c (operations, module), cd_mempool_relay.c (tx invs, requests,
 * intake), cd_mempool_sync.c (the node's mempool: probe, snapshots) and
 * cd_mempool_conn.c (the asynchronous PostgreSQL connection) share.
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
#define MP_QUEUE_MIN_BYTES   (64u << 20) /* queued tx bytes at least allowed */
#define MP_REQ_BITS          16          /* outstanding tx requests: 64k slots */
#define MP_REQ_SLOTS         (1u << MP_REQ_BITS)
#define MP_REQ_MAX           (MP_REQ_SLOTS / 2) /* in all */
#define MP_REQ_PEER_MAX      (MP_REQ_MAX / 4)   /* from one peer */
#define MP_REQ_TIMEOUT_S     60.0 /* a requested tx not answered by then is given up */
#define MP_PEERS_MAX         64   /* per-peer counters (main + side connections) */
/* txs announced while the index catches up, asked for at "relay on": the
 * most recent MP_PEND_MAX of the last MP_PEND_AGE_S. The node serves a
 * `getdata` of a tx it announced from its relay memory for 15 minutes
 * (bitcoin-sv src/net_processing.cpp: mapRelay, vRelayExpiration
 * GetTime() + 15 * 60), and a non-whitelisted peer may not send `mempool`:
 * without this, a tx announced before relay on is never fetched, only seen
 * when mined. */
#define MP_PEND_MAX          16384
/* The node counts its 15 minutes from its inv, we count from our receipt
 * of it, and the getdata reaches it after our decision: our age is short of
 * the node's by two transits and the queues between. 30 s below the node's
 * edge covers that; a tx asked past the edge gets notfound (logged,
 * tests/functional/test_mempool_relay_expiry.py). */
#define MP_PEND_AGE_S        (15 * 60 - 30)
#define MP_PEER_LOG_EVERY_S  60.0
#define MP_HOUSE_EVERY_S     5.0 /* expiry, size limits, eviction-record pruning */

/* Indexes of mp_state.refused: the order of cd_status_mempool_reasons. */
enum {
    MP_REFUSED_UNSOLICITED,
    MP_REFUSED_OVERSIZE,
    MP_REFUSED_UNPARSABLE,
    MP_REFUSED_NOTFOUND,
    MP_REFUSED_UNANSWERED,
    MP_REFUSED_QUEUE_FULL
};
#define MP_ADDRS_MAX         32
#define MP_SNAP_SETTLE_S     1.0   /* after the first pong: late invs of a trickle */
#define MP_SESS_TIMEOUT_S    120.0 /* a snapshot session that takes longer is dropped */
#define MP_PROBE_BACKOFF_MIN 30.0  /* an inconclusive probe is retried after... */
#define MP_PROBE_BACKOFF_MAX 3600.0
#define MP_FETCH_CHUNK       1000 /* missing txs asked per getdata round */
#define MP_REFUSED_FILE      "mempool_refused"

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
    uint32_t lock_time; /* nLockTime */
    int seq_nonfinal;   /* an input's nSequence is not 0xffffffff */
    /* outputs (sql/007 mempool_outputs): n_out values, script hashes
     * (n_out x 32), stored script lengths (-1: not stored) and the stored
     * scripts concatenated (oscr_len bytes) */
    uint64_t *oval;
    uint8_t *ohash;
    int32_t *oslen;
    size_t n_out, cap_out;
    uint8_t *oscr;
    size_t oscr_len, oscr_cap;
} mp_tx;

/* Growable byte buffer for one batch's parameters. */
typedef struct mp_buf {
    char *p;
    size_t len, cap;
} mp_buf;

/* Parameters of cd_mempool_add_txs (sql/006, with the txs' bytes and
 * facts; sql/007 cd_mempool_add_txs_outputs adds the outputs): bytea ones sent binary, arrays as
 * text literals; then the limits. */
enum {
    P_TXIDS,
    P_SIZES,
    P_RAWS,
    P_INS,
    P_IN_TX,
    P_PUSH,
    P_PUSH_TX,
    P_PUSH_IDX,
    P_PUSH_FL,
    P_LOCKS,
    P_SEQNF,
    /* cd_mempool_add_txs_outputs (sql/007): the outputs */
    P_OUT_TX,
    P_OUT_VAL,
    P_OUT_HASH,
    P_OUT_SLEN,
    P_OUT_SCR,
    P_N
};

/* A batch built from the queue's head; owned until its statement succeeded
 * or failed with an SQL error (resent after a reconnect). */
typedef struct mp_batch {
    mp_buf b[P_N];
    size_t n; /* txs; 0 = none */
} mp_batch;

typedef enum mp_conn_state { MP_DOWN, MP_CONNECTING, MP_IDLE, MP_BUSY } mp_conn_state;

typedef enum mp_op {
    OP_NONE,
    OP_SCHEMA,    /* schema version check */
    OP_TRUNCATE,  /* empty the mempool tables */
    OP_TARGET,    /* chain_target upsert */
    OP_STEP,      /* SELECT cd_reorg_step() */
    OP_TIP,       /* index_tip read after a switch */
    OP_BATCH,     /* cd_mempool_add_txs */
    OP_HOUSE,     /* cd_mempool_housekeep */
    OP_RECONCILE, /* cd_mempool_reconcile */
} mp_op;

/* Why a tx is asked for (cd_mempool_request). */
typedef enum mp_ask {
    MP_ASK_INV,     /* announced while relaying; not asked if asked recently */
    MP_ASK_FETCH,   /* missing from a `mempool` snapshot; asked even if asked before */
    MP_ASK_PENDING, /* announced before relay on, asked at relay on */
} mp_ask;

/* One outstanding tx request (getdata after an inv, or a snapshot fetch). */
typedef struct mp_req {
    uint8_t txid[32];
    const cp2p_peer *peer; /* asked from; only its answer is taken */
    double t;
    uint8_t used; /* 0 free, 1 used, 2 deleted (tombstone) */
    uint8_t why;  /* mp_ask */
} mp_req;

/* Counters per peer connection for what it did wrong (logged per peer). */
typedef struct mp_peerstat {
    const cp2p_peer *peer; /* NULL: free */
    char name[64];
    uint32_t outstanding; /* requests not answered yet */
    uint64_t unsolicited, oversize, unparsable, unanswered, notfound;
    uint64_t logged; /* sum of the counters at the last log line */
    unsigned kinds;  /* which counters were non-zero then */
    double last_log;
} mp_peerstat;

/* What conduitd knows about an address's answer to `mempool`. */
typedef enum mp_allow { MPA_UNKNOWN, MPA_ALLOWED, MPA_REFUSED } mp_allow;

typedef struct mp_addr {
    char name[128]; /* host:port as configured */
    mp_allow allow;
    int want;        /* a snapshot is wanted now (sync, reorg, (re)connect) */
    double next_at;  /* next periodic snapshot */
    double retry_at; /* after an inconclusive probe */
    double backoff;  /* its doubling delay */
    int warned;      /* the refusal WARN was logged this run */
    int fail_logged; /* an inconclusive-probe line was logged since the last success */
} mp_addr;

/* The one snapshot session (a short-lived second connection). */
typedef enum mp_phase {
    SP_NONE,
    SP_CONNECTING, /* handshake on the side connection */
    SP_ASKED,      /* `mempool` + ping sent: a pong means allowed */
    SP_SETTLE,     /* allowed; waiting MP_SNAP_SETTLE_S for trailing invs */
    SP_PING2,      /* second ping sent: its pong ends the snapshot */
    SP_RECONCILE,  /* the snapshot is with PostgreSQL */
    SP_FETCH,      /* asking for the txs PostgreSQL lacks */
} mp_phase;

typedef struct mp_sess {
    mp_phase phase;
    cp2p_peer *peer;
    mp_addr *a;
    double t_req;    /* when `mempool` was sent (cd_now_s) */
    double t_phase;  /* when the phase started */
    double deadline; /* whole session */
    uint8_t *snap;   /* announced txids, 32 bytes each */
    size_t snap_n, snap_cap;
    int overflow;
    uint8_t *miss; /* txids to fetch */
    size_t miss_n, miss_off, fetched;
    uint64_t evicted;
    int sql_sent; /* the reconcile statement was sent */
    int stale;    /* the best chain switched after `mempool` (cd_mempool_sync_stale) */
} mp_sess;

typedef struct mp_pend {
    uint8_t txid[32];
    /* NULL: its connection ended. Not const: the getdata at relay on is
     * queued on it (cd_mempool_request -> cp2p_peer_getdata_txs writes to
     * the peer's send queue), and cp2p_ctx.peer is not const either. */
    cp2p_peer *peer;
    double t; /* when announced */
} mp_pend;

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
    size_t q_bytes;
    mp_batch batch;
    uint64_t accepted, known, conflicted, received, dropped, held_back, limited;
    /* txs not taken, by cd_status_mempool_reasons (MP_REFUSED_*): the
     * per-peer counters summed over the run, for the status and /metrics */
    uint64_t refused[CD_STATUS_MEMPOOL_REASONS];
    /* requests, per-peer counters (cd_mempool_relay.c) */
    mp_req *req;
    size_t req_n, req_dead;
    double req_swept;
    mp_peerstat peers[MP_PEERS_MAX];
    mp_pend *pend; /* ring of MP_PEND_MAX (allocated at the first one) */
    size_t pend_head, pend_n;
    /* the node's mempool (cd_mempool_sync.c) */
    cp2p_mgr *side;
    mp_addr addrs[MP_ADDRS_MAX];
    size_t n_addrs;
    mp_sess sess;
    int house_req;
    double house_at;
    /* the tip each peer last announced, and the fork point a peer's node
     * went back to without more work (invalidateblock): the node's rules
     * are applied there too at the next switch (sql/006 chain_target.low_*) */
    struct {
        const cp2p_peer *peer;
        const cd_hdr_node *tip;
        int32_t start_height; /* its `version`'s: seeds tip on an empty `headers` */
    } ann[CD_CONFIG_MAX_CONNECT];
    const cd_hdr_node *low;
    uint64_t expired, evicted_snap;
    uint64_t logged_accepted;
    double last_log;
    cd_rows_opts opts;
} mp_state;

/* ---- cd_mempool_relay.c ---- */

/* Allocates the request table. */
/* Remembers the tx entries of an inv that arrived before relay on. */
void cd_mempool_pending_add(mp_state *s, cp2p_peer *peer, const cp2p_inv *inv, size_t n);
/* Forgets a peer whose connection ended (its entries are not asked). */
void cd_mempool_pending_forget(mp_state *s, const cp2p_peer *peer);
/* At relay on: asks each peer for the txs it announced within
 * MP_PEND_AGE_S (a tx several peers announced: from the last of them), then
 * empties the ring. Returns the number asked. */
size_t cd_mempool_pending_flush(mp_state *s);
void cd_mempool_relay_init(mp_state *s);
void cd_mempool_relay_fini(mp_state *s);
/* 1 if relayed txs are taken now (index on, relay on, index at the tip). */
int cd_mempool_relaying(const mp_state *s);
/* Asks `peer` for the txs among `hashes` that are not being requested and,
 * unless `why` is MP_ASK_FETCH (a snapshot's missing txs), were not asked
 * recently, within the limits; returns how many were asked. `peer` is not
 * const: the getdata is queued on its connection. */
size_t cd_mempool_request(mp_state *s, cp2p_peer *peer, const uint8_t (*hashes)[32], size_t n,
                          mp_ask why);
/* A `tx` from `peer`: taken only if it was asked from that peer. */
void cd_mempool_intake(mp_state *s, cp2p_peer *peer, const uint8_t *raw, size_t len,
                       const uint8_t txid[32]);
/* `notfound` / a disconnect: the peer's requests (all: hashes NULL) end. */
void cd_mempool_requests_end(mp_state *s, const cp2p_peer *peer, const cp2p_inv *inv, size_t n);
/* Once a second: requests past MP_REQ_TIMEOUT_S end; per-peer log lines. */
void cd_mempool_relay_tick(mp_state *s);
/* Frees a parsed tx. */
void cd_mempool_tx_free(mp_tx *t);

/* ---- cd_mempool_sync.c ---- */

/* Creates the side manager and loads the refused addresses. 0 or -1. */
int cd_mempool_sync_start(mp_state *s);
void cd_mempool_sync_fini(mp_state *s);
/* Snapshots wanted: every address (name NULL) or one. */
void cd_mempool_sync_want(mp_state *s, const char *name);
/* The indexed best chain switched: a snapshot in progress is dropped. */
void cd_mempool_sync_stale(mp_state *s);
/* From the tick: starts / times out sessions. */
void cd_mempool_sync_tick(mp_state *s);
/* The reconcile statement's result (missing txids to fetch, or failure). */
void cd_mempool_sync_reconciled(mp_state *s, PGresult *r);
/* The reconcile statement to send, if a snapshot waits for it: 1 if sent. */
int cd_mempool_sync_dispatch(mp_state *s);

/* ---- cd_mempool.c ---- */

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
