/*
 * cp2p_int.h - private to libconduit-p2p: the peer and manager structures
 * and the functions its files share (cp2p_peer.c: reader and message
 * dispatch; cp2p_conn.c: dialling, sending, failing; cp2p_mgr.c: the
 * manager, its timer, broadcasts). Not installed, not for callers.
 *
 * NOTES
 *   Callbacks may close or remove the peer they were called for. Peers are
 *   therefore never freed inside an event handler: they become DEAD and the
 *   tick reaps them; every loop that calls a callback re-checks p->gen (the
 *   connection incarnation) afterwards.
 */
#ifndef CP2P_INT_H
#define CP2P_INT_H

#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>

#include "btc_preproc.h"
#include "cd_hash.h"
#include "cd_log.h" /* CD_PRINTF */
#include "cd_util.h"
#include "conduit_p2p.h"
#include "cp2p_codec.h"

#define RBUF_DEFAULT (256 * 1024)

enum rd_mode { RD_MSG = 0, RD_BLOCK };
enum blk_kind { BLK_SINK = 1, BLK_WHOLE, BLK_CHUNK };

typedef struct bcast {
    uint8_t txid[32];
    uint64_t deadline_ns;
    cp2p_peer *peer; /* NULL: all peers */
    uint64_t peer_gen;
    int done;
} bcast;

struct cp2p_peer {
    cp2p_mgr *mgr;
    char name[300];
    char host[256];
    uint16_t port;
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
    uint64_t t_reconnect_ns;
    uint32_t backoff_ms;

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
    cp2p_handlers h;
    cp2p_block_sink sink;
    int have_sink;
    void *user;
    cp2p_peer **peers;
    size_t n_peers, cap_peers;
    size_t rr;
    struct event *tick;
    bcast *bc;
    size_t n_bc, cap_bc;
};

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

/* ---- cp2p_peer.c: reading ---- */

/* The read event's callback (EV_READ | EV_PERSIST on the peer's socket). */
void cp2p_on_read(evutil_socket_t fd, short what, void *arg);

/* Ends a block that did not complete (peer is being disconnected). */
void cp2p_block_abort(cp2p_peer *p, cp2p_reason why);

/* ---- cp2p_conn.c: connections ---- */

/* Queues one message (header + payload) on the peer's output. */
void cp2p_queue_msg(cp2p_peer *p, const char *cmd, const uint8_t *payload, size_t len);

/* Disconnects the peer with a reason and a detail (logged, passed to
 * on_disconnect), then schedules its reconnect or its death. */
void cp2p_peer_fail(cp2p_peer *p, cp2p_reason r, const char *fmt, ...) CD_PRINTF(3, 4);

/* Resolves and dials the peer (state CONNECTING), version queued. */
void cp2p_peer_connect(cp2p_peer *p);

/* Closes the socket and frees its events; a new incarnation (p->gen). */
void cp2p_peer_teardown(cp2p_peer *p);

/* ---- cp2p_mgr.c: the manager ---- */

/* A broadcast ends (accepted on silence, or rejected): calls on_broadcast. */
void cp2p_bcast_done(cp2p_mgr *m, bcast *b, cp2p_peer *from, cp2p_bcast_result res,
                     const cp2p_reject *rej);

#endif /* CP2P_INT_H */
