/*
 * cp2p_int.h - private to libconduit-p2p: the peer and manager structures
 * and the functions its files share. Not installed, not for callers.
 *
 *   cp2p_peer.c     reader, framing, message dispatch, block reception
 *   cp2p_conn.c     dialling, sending (the send budget), failing a connection
 *   cp2p_mgr.c      the manager, its tick, adding peers, accessors
 *   cp2p_penalty.c  back-off, bans, stability, their log lines
 *   cp2p_budget.c   per-command message rates, message and block time limits
 *   cp2p_bcast.c    broadcasts on their own connection, what the node says
 *   cp2p_util.c     names of codes, networks, logging, text helpers
 *   cp2p_spv.c      SPV helpers over the bitcoin room
 *
 * NOTES
 *   Callbacks may close or remove the peer they were called for. Peers are
 *   therefore never freed inside an event handler: they become DEAD and the
 *   tick reaps them; every loop that calls a callback re-checks p->gen (the
 *   connection incarnation) afterwards. A peer that goes over its send budget
 *   inside a send call is not failed there (the caller may be iterating its
 *   own peer table): it is marked and failed from the manager's deferred
 *   event.
 *
 *   The library logs only through cp2p_logf() (the application's callback);
 *   it calls nothing of cd_log.
 */
#ifndef CP2P_INT_H
#define CP2P_INT_H

#include <event2/util.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "btc_net.h"
#include "btc_preproc.h"
#include "cd_hash.h"
#include "conduit_p2p.h"
#include "cp2p_codec.h"

#define RBUF_DEFAULT (256 * 1024)
#define N_RATE       16 /* per-command rate buckets per peer (the last: all others) */

#define NS_PER_MS 1000000ull
#define NS_PER_S  1000000000ull

enum rd_mode { RD_MSG = 0, RD_BLOCK };
enum blk_kind { BLK_SINK = 1, BLK_WHOLE, BLK_CHUNK };

/* What a connection is for. Hidden ones (broadcast, watch) are the
 * library's own: no application callback, not counted, never reconnected. */
enum peer_kind { PK_APP = 0, PK_BCAST, PK_WATCH };

typedef struct rate_bucket {
    char cmd[CP2P_COMMAND_LEN + 1];
    double tokens;
    uint64_t t_ns;
} rate_bucket;

typedef struct bcast {
    uint8_t txid[32];
    uint8_t *raw;
    size_t len;
    uint8_t (*parents)[32]; /* prevout txids of the inputs */
    size_t n_parents;
    cp2p_peer *target;                /* the application peer named (may be cleared) */
    cp2p_peer *conn;                  /* the broadcast connection */
    cp2p_peer *watch;                 /* a watching connection we opened, or NULL */
    char node[CP2P_ESCAPED_LEN(300)]; /* name of the node */
    int sent;                         /* tx written */
    int sent_reported;                /* SENT delivered to on_broadcast */
    uint64_t deadline_ns;             /* sent: TIMEOUT at; not sent: NOT_SENT at */
    int done;
} bcast;

struct cp2p_peer {
    cp2p_mgr *mgr;
    char name[CP2P_ESCAPED_LEN(300)]; /* escaped host:port */
    char host[256];
    uint16_t port;
    enum peer_kind kind;
    int relay; /* our version's relay flag on this connection */
    cp2p_peer_state state;
    uint64_t gen; /* connection incarnation */
    int fd;
    int connecting; /* non-blocking connect in progress */
    int removed;
    int busy;    /* inside an event handler */
    int failing; /* inside peer_vfail (no re-entry) */
    struct event *ev_read, *ev_write;
    int read_paused;
    struct evbuffer *out;
    void *user;

    uint64_t t_start_ns; /* connect start (handshake timeout) */
    uint64_t t_last_rx_ns;
    uint64_t t_next_ping_ns;
    uint64_t t_ping_sent_ns;
    uint64_t ping_nonce;
    int ping_outstanding;

    /* reconnect schedule (cp2p_penalty.c) */
    uint64_t t_ready_ns;    /* when the current connection became READY (0: not) */
    int stable;             /* the current connection lasted opt.stable_ms */
    uint32_t failures;      /* connections in a row that failed / were not stable */
    uint32_t bans;          /* bans in a row */
    uint64_t t_retry_ns;    /* BACKOFF/BANNED: dial at (monotonic) */
    int64_t retry_wall;     /* the same as Unix seconds (for on_penalty) */
    int64_t ban_end_wall;   /* end of the last ban, Unix s (escalation memory) */
    cp2p_reason log_reason; /* reason of the failure streak already logged */
    int streak;             /* a failure streak was logged (not yet stable again) */

    /* budgets (cp2p_budget.c, cp2p_conn.c) */
    rate_bucket rate[N_RATE];
    uint64_t t_msg_start_ns;  /* first byte of the message being framed (0: none) */
    cp2p_reason defer_reason; /* over budget inside a send: failed from the loop */
    char defer_detail[160];
    uint64_t blk_active_ns; /* block: reading time before the last pause */
    uint64_t blk_mark_ns;   /* block: reading (re)started at (0: paused) */

    uint64_t our_nonce;
    int got_version, got_verack, got_protoconf;
    cp2p_version their;
    uint32_t max_send;
    cp2p_reason last_reason;
    cp2p_peer_stats stats;

    /* reader */
    uint8_t *rbuf;
    size_t rcap, rstart, rend;
    enum rd_mode mode;
    cp2p_msghdr hdr;

    /* current block */
    enum blk_kind bk;
    uint64_t blen, bgot;
    cd_sha256_ctx bsha;
    int bcheck;
    uint8_t bhdr[80];
    uint8_t bhash[32];
    uint8_t *bbuf;      /* WHOLE: the block; CHUNK: the chunk buffer */
    size_t bcap, bfill; /* CHUNK: capacity, bytes in buffer */
    uint64_t bbase;     /* CHUNK: block offset of bbuf[0] */
    size_t bscan;       /* CHUNK: next tx start inside bbuf */
    btc_preproc bpp;    /* CHUNK: tx-boundary cursor (block offsets): bytes of
                           a partial tx are never walked twice */
    int bhdr_done;
    uint64_t btx_count, btx_seen;
    uint32_t bchunk_idx;
    uint64_t *boffs;
    size_t boffs_cap;
    uint8_t *sink_ptr; /* SINK: current region */
    size_t sink_avail;
};

struct cp2p_mgr {
    struct event_base *base;
    cp2p_options opt;
    char *ua;
    cp2p_log_level log_level;
    cp2p_handlers h;
    cp2p_block_sink sink;
    int have_sink;
    void *user;
    cp2p_peer **peers;
    size_t n_peers, cap_peers;
    size_t rr;
    struct event *tick;
    struct event *deferred; /* budget failures, broadcast reports */
    bcast *bc;
    size_t n_bc, cap_bc;
};

/* The network behind the public opaque type (they are the same object). */
static inline const btc_net *cp2p_btcnet(const cp2p_net *n)
{
    return (const btc_net *)(const void *)n;
}

static inline cp2p_ctx mkctx(cp2p_peer *p)
{
    cp2p_ctx c = {p ? p->mgr : NULL, p, NULL};
    if (p)
        c.user = p->mgr->user;
    return c;
}

static inline int peer_live(const cp2p_peer *p, uint64_t gen)
{
    return p->fd >= 0 && p->gen == gen;
}

/* The application sees this peer (callbacks, counts). */
static inline int peer_app(const cp2p_peer *p)
{
    return p->kind == PK_APP;
}

/* ---- cp2p_util.c ---- */

uint64_t cp2p_now_ns(void);
int64_t cp2p_wall_s(void);
uint64_t cp2p_rand64(void);
/* Abort on out-of-memory (control-sized structures only). */
void *cp2p_xmalloc(size_t n);
void *cp2p_xcalloc(size_t n, size_t size);
void *cp2p_xrealloc(void *p, size_t n);
char *cp2p_xstrdup(const char *s);

void cp2p_vlog(cp2p_log_fn fn, void *user, cp2p_log_level lvl, const char *fmt, va_list ap)
    CP2P_PRINTF(4, 0);
void cp2p_log_to(cp2p_log_fn fn, void *user, cp2p_log_level lvl, const char *fmt, ...)
    CP2P_PRINTF(4, 5);
void cp2p_logf(const cp2p_mgr *m, cp2p_log_level lvl, const char *fmt, ...) CP2P_PRINTF(3, 4);
#define CP2P_LOG(m, lvl, ...)                                                                      \
    do {                                                                                           \
        if ((lvl) <= (m)->log_level)                                                               \
            cp2p_logf((m), (lvl), __VA_ARGS__);                                                    \
    } while (0)
#define LOG_ERROR(m, ...) CP2P_LOG(m, CP2P_LOG_ERROR, __VA_ARGS__)
#define LOG_WARN(m, ...)  CP2P_LOG(m, CP2P_LOG_WARN, __VA_ARGS__)
#define LOG_INFO(m, ...)  CP2P_LOG(m, CP2P_LOG_INFO, __VA_ARGS__)
#define LOG_DEBUG(m, ...) CP2P_LOG(m, CP2P_LOG_DEBUG, __VA_ARGS__)

/* ---- cp2p_peer.c: reading ---- */

/* The read event's callback (EV_READ | EV_PERSIST on the peer's socket). */
void cp2p_on_read(evutil_socket_t fd, short what, void *arg);

/* Ends a block that did not complete (peer is being disconnected). */
void cp2p_block_abort(cp2p_peer *p, cp2p_reason why);

/* ---- cp2p_conn.c: connections ---- */

/* Queues one message (header + payload) on the peer's output. Returns
 * CP2P_OK, or CP2P_EBUDGET when the queue was already over
 * opt.max_send_queue: nothing is queued and the peer is failed from the
 * loop (cp2p_peer_defer_fail). */
int cp2p_queue_msg(cp2p_peer *p, const char *cmd, const uint8_t *payload, size_t len);

/* Disconnects the peer with a reason and a detail (logged, passed to
 * on_disconnect), then schedules its reconnect, ban or death. */
void cp2p_peer_fail(cp2p_peer *p, cp2p_reason r, const char *fmt, ...) CP2P_PRINTF(3, 4);

/* Marks the peer to be failed from the manager's deferred event (not from
 * inside the current call): reading and writing stop now. */
void cp2p_peer_defer_fail(cp2p_peer *p, cp2p_reason r, const char *fmt, ...) CP2P_PRINTF(3, 4);

/* Resolves and dials the peer (state CONNECTING), version queued. */
void cp2p_peer_connect(cp2p_peer *p);

/* Closes the socket and frees its events; a new incarnation (p->gen). */
void cp2p_peer_teardown(cp2p_peer *p);

/* ---- cp2p_penalty.c: reconnect schedule ---- */

/* The connection of p just ended with r (state CLOSING): back-off, ban or
 * death; logs state changes once; reports on_penalty. */
void cp2p_schedule_after_close(cp2p_peer *p, cp2p_reason r, const char *detail);
/* p became READY. */
void cp2p_penalty_ready(cp2p_peer *p);
/* Tick: a READY connection that lasted opt.stable_ms resets the failures. */
void cp2p_penalty_tick(cp2p_peer *p, uint64_t now);
/* Fills the public view. */
void cp2p_penalty_get(const cp2p_peer *p, cp2p_penalty *out);
/* Restores a stored schedule on a new peer (before its first dial). Returns
 * 1 if the dial must wait (state set to BACKOFF/BANNED), else 0. */
int cp2p_penalty_restore(cp2p_peer *p, const cp2p_penalty *pen);

/* ---- cp2p_budget.c: rates and time limits ---- */

/* One complete message of `cmd` arrived. Returns 0, or -1 if the peer went
 * over its rate for that command (it has been failed). */
int cp2p_budget_msg(cp2p_peer *p, const char *cmd);
/* An inv of n entries arrived. Returns 0, or -1 if the peer went over
 * opt.max_inv_rate (it has been failed). */
int cp2p_budget_inv(cp2p_peer *p, size_t n);
/* A block starts / reading of it pauses / resumes (sink back-pressure). */
void cp2p_budget_block_start(cp2p_peer *p);
void cp2p_budget_block_pause(cp2p_peer *p);
void cp2p_budget_block_resume(cp2p_peer *p);
/* Tick checks: message time limit, block floor rate. Returns 0, or -1 if
 * the peer was failed. */
int cp2p_budget_tick(cp2p_peer *p, uint64_t now);

/* ---- cp2p_bcast.c: broadcasts ---- */

/* A hidden connection became READY: send what waits for it. */
void cp2p_bcast_on_ready(cp2p_peer *p);
/* An inv arrived on p (any connection): a pending txid announced on a
 * connection other than its broadcast one is SEEN_ON_NETWORK. */
void cp2p_bcast_on_inv(cp2p_peer *p, const cp2p_inv *inv, size_t n);
/* getdata on p: answers our txs, reports asked-for parents. Returns 0 or -1
 * if the peer died. */
int cp2p_bcast_on_getdata(cp2p_peer *p, const cp2p_inv *inv, size_t n);
/* A reject on p. */
void cp2p_bcast_on_reject(cp2p_peer *p, const cp2p_reject *rj);
/* Tick and deferred work: deadlines, reports, closing idle connections. */
void cp2p_bcast_tick(cp2p_mgr *m, uint64_t now);
/* The peer is about to be freed: forget pointers to it. */
void cp2p_bcast_forget_peer(cp2p_mgr *m, cp2p_peer *p);
/* Frees every pending broadcast (manager teardown; no callbacks). */
void cp2p_bcast_free_all(cp2p_mgr *m);

/* ---- cp2p_mgr.c ---- */

/* Creates a peer (not dialled). kind PK_APP peers are listed for the
 * application. Returns NULL for a bad host:port. */
cp2p_peer *cp2p_peer_new(cp2p_mgr *m, const char *hostport, enum peer_kind kind);
/* Wakes the manager's deferred event (runs from the loop soon). */
void cp2p_mgr_wake(cp2p_mgr *m);

#endif /* CP2P_INT_H */
