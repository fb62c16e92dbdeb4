/*
 * conduit_p2p.h - libconduit-p2p: a Bitcoin SV p2p client library on libevent.
 *
 * What it is
 *   The layer conduitd's controller uses to talk to BSV nodes, and a library
 *   in its own right for SPV wallets and services: connect to one or many
 *   peers, do the handshake exactly as a Bitcoin SV node expects
 *   (bsv-p2p.md §3/§10), keep the connections alive, and hand every message an
 *   application cares about to a callback. Blocks of any size (including
 *   `extmsg` blocks > 4 GiB) are received either straight into memory the
 *   caller provides (a "sink", e.g. the daemon's shared-memory ring, with TCP
 *   back-pressure when it is full) or, without a sink, as one buffer (small
 *   blocks) or as a series of chunks cut at transaction boundaries (large
 *   blocks), so no multi-GB buffer ever exists.
 *
 * Objects
 *   cp2p_mgr   the peer manager: owns every peer, the options, the callbacks
 *              and a periodic timer (pings, timeouts, reconnects, broadcast
 *              tracking). One per event_base.
 *   cp2p_peer  one connection (and its reconnect schedule) to one host:port.
 *              Owned by the manager; the application holds borrowed pointers.
 *
 * Threads and processes
 *   Everything runs on the caller's event_base. Every function must be called
 *   from the thread that runs that event_base (the library takes no locks).
 *   Do not use a manager after fork(): create it in the process that uses it.
 *
 * Callbacks and re-entrancy
 *   Every callback receives a `const cp2p_ctx *` naming the manager, the peer
 *   and the user pointer given to cp2p_mgr_new(): the shared handler context.
 *   Callbacks may call any function of this header, including
 *   cp2p_peer_close() / cp2p_peer_remove() on the peer they were called for;
 *   the peer is then shut down after the callback returns (its memory stays
 *   valid until the callback returns). Pointers passed to callbacks (payloads,
 *   arrays, strings) are borrowed and valid only until the callback returns.
 *
 * Errors
 *   Functions return CP2P_OK (0) or a negative CP2P_E* code; cp2p_strerror()
 *   names it. A peer that misbehaves (bad magic, bad checksum, oversized or
 *   malformed message, garbage, silence, ...) is disconnected with a specific
 *   cp2p_reason, logged with the peer's name, reported to on_disconnect; other
 *   peers are not affected and the process never aborts because of peer input.
 *
 * Memory
 *   Non-block messages are bounded by opt.max_recv_payload (default 2 MiB).
 *   A block without a sink uses at most max(opt.chunk_threshold, largest
 *   transaction) bytes of heap. With a sink, block bytes land only in caller
 *   memory.
 */
#ifndef CONDUIT_P2P_H
#define CONDUIT_P2P_H

#include <stddef.h>
#include <stdint.h>

#include "btc_net.h"

struct event_base;

#ifdef __cplusplus
extern "C" {
#endif

/* ---- constants ------------------------------------------------------------ */

#define CP2P_PROTOCOL_VERSION        70016
#define CP2P_HEADER_LEN              24 /* basic message header */
#define CP2P_EXT_HEADER_LEN          44 /* extmsg header (payloads > 4 GiB - 1) */
#define CP2P_COMMAND_LEN             12
#define CP2P_HASH_LEN                32
#define CP2P_BLOCK_HEADER_LEN        80
#define CP2P_MAX_HEADERS_PER_MSG     2000
#define CP2P_DEFAULT_MAX_RECV        (2u * 1024 * 1024) /* node default */
#define CP2P_LEGACY_MAX_RECV         (1u * 1024 * 1024) /* peer without protoconf */
#define CP2P_DEFAULT_CHUNK_THRESHOLD (32u * 1024 * 1024)
#define CP2P_INV_ENTRY_LEN           36

/* Inventory types (bsv-p2p.md §5). */
#define CP2P_INV_TX             1
#define CP2P_INV_BLOCK          2
#define CP2P_INV_FILTERED_BLOCK 3
#define CP2P_INV_CMPCT_BLOCK    4

/* Reject codes (bsv-p2p.md §6). */
#define CP2P_REJECT_MALFORMED       0x01
#define CP2P_REJECT_INVALID         0x10
#define CP2P_REJECT_OBSOLETE        0x11
#define CP2P_REJECT_DUPLICATE       0x12
#define CP2P_REJECT_NONSTANDARD     0x40
#define CP2P_REJECT_DUST            0x41
#define CP2P_REJECT_INSUFFICIENTFEE 0x42

/* ---- error codes ---------------------------------------------------------- */

#define CP2P_OK         0
#define CP2P_EINVAL     (-30900) /* bad argument (NULL, zero count, bad host:port) */
#define CP2P_ENOTREADY  (-30901) /* peer not connected (not VERSION_SENT or READY) */
#define CP2P_ETOOBIG    (-30902) /* message larger than the peer accepts */
#define CP2P_ENOMEM     (-30903) /* allocation failed */
#define CP2P_ERESOLVE   (-30904) /* host name could not be resolved */
#define CP2P_ESYS       (-30905) /* system call failed; errno is set */
#define CP2P_EMALFORMED (-30906) /* (codec) payload does not decode */
#define CP2P_ENOPEER    (-30907) /* no ready peer */

/* Returns a static string naming an error code (never NULL). */
const char *cp2p_strerror(int err);

/* ---- peer states ---------------------------------------------------------- *
 *
 *   IDLE ──add──▶ CONNECTING ──TCP up, version sent──▶ VERSION_SENT
 *   VERSION_SENT ──peer's version + verack received──▶ READY  (on_ready)
 *   any ──error / timeout / misbehaviour / close()──▶ CLOSING (on_disconnect)
 *   CLOSING ──reconnect enabled──▶ BACKOFF ──delay elapsed──▶ CONNECTING
 *   CLOSING ──no reconnect / removed──▶ DEAD (freed by the manager)
 */
typedef enum cp2p_peer_state {
    CP2P_PEER_IDLE = 0,
    CP2P_PEER_CONNECTING,
    CP2P_PEER_VERSION_SENT,
    CP2P_PEER_READY,
    CP2P_PEER_CLOSING,
    CP2P_PEER_BACKOFF,
    CP2P_PEER_DEAD,
} cp2p_peer_state;

/* Why a connection ended (on_disconnect, cp2p_peer_last_reason). */
typedef enum cp2p_reason {
    CP2P_R_NONE = 0,
    CP2P_R_CLOSED_LOCAL,      /* cp2p_peer_close() / cp2p_peer_remove() */
    CP2P_R_CONNECT_FAILED,    /* TCP connect failed or refused */
    CP2P_R_EOF,               /* peer closed the connection between messages */
    CP2P_R_TRUNCATED,         /* peer closed the connection inside a message */
    CP2P_R_IO,                /* recv/send error (ECONNRESET, ...) */
    CP2P_R_BAD_MAGIC,         /* message header with the wrong network magic */
    CP2P_R_BAD_COMMAND,       /* command field not printable ASCII + NULs (garbage) */
    CP2P_R_OVERSIZE,          /* payload length above our limit for that command */
    CP2P_R_BAD_CHECKSUM,      /* payload checksum mismatch */
    CP2P_R_MALFORMED,         /* payload does not decode (incl. bad CompactSize) */
    CP2P_R_PROTOCOL,          /* protocol violation (e.g. no version first, old version) */
    CP2P_R_HANDSHAKE_TIMEOUT, /* no version+verack within opt.handshake_timeout_ms */
    CP2P_R_PING_TIMEOUT,      /* our ping not answered within opt.ping_timeout_ms */
    CP2P_R_STALLED,           /* no byte for opt.stall_timeout_ms inside a message */
    CP2P_R_NOMEM,             /* could not allocate a buffer for this peer */
    CP2P_R_SINK,              /* the block sink refused / failed */
    CP2P_R_SELF,              /* connected to ourselves (nonce match) */
} cp2p_reason;

/* Returns a static lower-case name for a reason, e.g. "bad-checksum". */
const char *cp2p_reason_str(cp2p_reason r);

/* ---- message structures (all borrowed inside callbacks) ------------------- */

typedef struct cp2p_inv {
    uint32_t type;               /* CP2P_INV_* */
    uint8_t hash[CP2P_HASH_LEN]; /* internal byte order */
} cp2p_inv;

typedef struct cp2p_version {
    int32_t version;
    uint64_t services;
    int64_t timestamp;
    uint64_t nonce;
    char user_agent[257]; /* NUL-terminated, at most 256 bytes */
    int32_t start_height;
    int relay; /* 1 if the field was absent or non-zero */
} cp2p_version;

typedef struct cp2p_reject {
    char message[13]; /* the rejected command, e.g. "tx" */
    uint8_t code;     /* CP2P_REJECT_* */
    char reason[112]; /* truncated to 111 chars */
    int has_hash;
    uint8_t hash[CP2P_HASH_LEN]; /* txid / block hash when has_hash */
} cp2p_reject;

typedef struct cp2p_addr {
    uint32_t time;
    uint64_t services;
    uint8_t ip[16]; /* IPv6 or IPv4-mapped */
    uint16_t port;  /* host order */
} cp2p_addr;

/*
 * One piece of a large block delivered without a sink. Chunks of one block
 * arrive in order, cover the block contiguously from offset 0 (the first chunk
 * starts with the 80-byte header and the tx count), and each ends on a
 * transaction boundary. tx_offsets are absolute offsets from the start of the
 * block of every transaction that *starts* in this chunk.
 */
typedef struct cp2p_block_chunk {
    const uint8_t *data; /* borrowed */
    size_t len;
    uint64_t block_offset;      /* offset of data[0] within the block */
    uint64_t block_size;        /* total payload length */
    uint32_t chunk_index;       /* 0, 1, 2, ... */
    int last;                   /* 1 on the final chunk (checksum verified) */
    const uint64_t *tx_offsets; /* borrowed; n_tx entries */
    size_t n_tx;
    uint64_t first_tx_index;           /* index of tx_offsets[0] in the block */
    uint64_t tx_count;                 /* the block's declared tx count */
    uint8_t block_hash[CP2P_HASH_LEN]; /* sha256d of the 80-byte header */
} cp2p_block_chunk;

/* Result of a tracked broadcast (cp2p_mgr_broadcast_tx). */
typedef enum cp2p_bcast_result {
    CP2P_BCAST_ACCEPTED = 0, /* no reject within opt.broadcast_wait_ms: accepted or known */
    CP2P_BCAST_REJECTED,     /* a peer sent reject naming the txid */
    CP2P_BCAST_NOT_SENT,     /* no ready peer took it (all disconnected) */
} cp2p_bcast_result;

/* Per-peer counters (cp2p_peer_stats). */
typedef struct cp2p_peer_stats {
    uint64_t bytes_in, bytes_out;
    uint64_t msgs_in, msgs_out;
    uint64_t blocks_in; /* complete block payloads received */
    uint64_t block_bytes_in;
    uint64_t block_scan_bytes; /* chunk mode: block bytes walked to find tx
                                  boundaries (resumable cursor: each byte at
                                  most once, so <= block_bytes_in) */
    uint64_t headers_in;       /* headers received (entries) */
    uint64_t txs_in;
    uint64_t connects; /* successful handshakes */
    uint64_t disconnects;
    int64_t last_ping_rtt_us; /* -1 until a pong matched */
} cp2p_peer_stats;

typedef struct cp2p_mgr cp2p_mgr;
typedef struct cp2p_peer cp2p_peer;

/* The shared handler context. */
typedef struct cp2p_ctx {
    cp2p_mgr *mgr;
    cp2p_peer *peer;
    void *user; /* as given to cp2p_mgr_new() */
} cp2p_ctx;

/* ---- options -------------------------------------------------------------- */

typedef struct cp2p_options {
    const btc_net *net;         /* network (magic, genesis); required */
    const char *user_agent;     /* default "/conduit-p2p:<ver>/"; must not
                                   contain abc/cash/bch (refused: EINVAL) */
    int relay;                  /* version relay flag: 1 = send us tx invs (default 0) */
    int32_t start_height;       /* advertised in version (default 0) */
    int send_sendheaders;       /* send sendheaders after verack (default 1) */
    uint32_t max_recv_payload;  /* non-block messages; advertised in protoconf
                                   (default 2 MiB, min 1 MiB) */
    uint64_t max_block_payload; /* default UINT64_MAX (extmsg allowed) */
    uint64_t max_tx_payload;    /* default 1,000,000,000 */
    size_t chunk_threshold;     /* blocks larger than this are chunked (no sink); default 32 MiB */
    int verify_block_checksum;  /* default 1 (basic headers only; extmsg has none) */
    uint32_t handshake_timeout_ms; /* default 60000 */
    uint32_t ping_interval_ms;     /* our pings; default 120000; 0 = never */
    uint32_t ping_timeout_ms;      /* pong must arrive within; default 60000. A peer
                                      still sending bytes (a big block: the node answers
                                      pings late while serving) is not dropped; only one
                                      silent for this long with a ping outstanding */
    uint32_t stall_timeout_ms;     /* silence inside a message; default 120000 */
    int reconnect;                 /* reconnect with back-off (default 1) */
    uint32_t reconnect_min_ms;     /* first delay, doubled each failure; default 1000 */
    uint32_t reconnect_max_ms;     /* cap; default 60000 */
    uint32_t broadcast_wait_ms;    /* silence = accepted; default 5000 */
    uint32_t tick_ms;              /* timer granularity; default 250 */
} cp2p_options;

/* Fills *opt with the defaults above for network `net`. */
void cp2p_options_init(cp2p_options *opt, const btc_net *net);

/* ---- callbacks ------------------------------------------------------------ *
 * Every member may be NULL. See "Callbacks and re-entrancy" above. */
typedef struct cp2p_handlers {
    /* Handshake done (their version and verack received, our verack,
     * protoconf and sendheaders sent). */
    void (*on_ready)(const cp2p_ctx *ctx, const cp2p_version *their);
    /* The connection ended. `detail` is a human-readable explanation. The
     * peer may reconnect later (state BACKOFF) unless it was removed. */
    void (*on_disconnect)(const cp2p_ctx *ctx, cp2p_reason reason, const char *detail);
    /* `headers` message: n 80-byte headers, contiguous (hdrs + 80*i). */
    void (*on_headers)(const cp2p_ctx *ctx, const uint8_t *hdrs, size_t n);
    void (*on_inv)(const cp2p_ctx *ctx, const cp2p_inv *inv, size_t n);
    void (*on_notfound)(const cp2p_ctx *ctx, const cp2p_inv *inv, size_t n);
    void (*on_tx)(const cp2p_ctx *ctx, const uint8_t *raw, size_t len, const uint8_t txid[32]);
    /* A whole block (payload <= chunk_threshold, no sink or sink declined);
     * checksum verified; hash = sha256d(header). */
    void (*on_block)(const cp2p_ctx *ctx, const uint8_t *raw, size_t len, const uint8_t hash[32]);
    /* Large block pieces (see cp2p_block_chunk). */
    void (*on_block_chunk)(const cp2p_ctx *ctx, const cp2p_block_chunk *chunk);
    /* A chunked block was cut short (disconnect, bad checksum, malformed tx).
     * Chunks already delivered for it must be discarded. hash may be all
     * zero if fewer than 80 bytes had arrived. */
    void (*on_block_abort)(const cp2p_ctx *ctx, const uint8_t hash[32], cp2p_reason why);
    void (*on_reject)(const cp2p_ctx *ctx, const cp2p_reject *rej);
    void (*on_addr)(const cp2p_ctx *ctx, const cp2p_addr *addrs, size_t n);
    /* A pong that matched our last ping. */
    void (*on_pong)(const cp2p_ctx *ctx, uint64_t nonce, int64_t rtt_us);
    /* Broadcast outcome (cp2p_mgr_broadcast_tx); rej is non-NULL for REJECTED.
     * ctx->peer is the rejecting peer (REJECTED) or the peer given to
     * broadcast_tx (NULL when it went to all peers or that peer is gone). */
    void (*on_broadcast)(const cp2p_ctx *ctx, const uint8_t txid[32], cp2p_bcast_result res,
                         const cp2p_reject *rej);
    /* Every message after framing, before the specific callback (commands the
     * library does not decode included). cmd is NUL-terminated. Not called for
     * block payloads. */
    void (*on_message)(const cp2p_ctx *ctx, const char *cmd, const uint8_t *payload, size_t len);
} cp2p_handlers;

/*
 * Block sink: lets the caller decide where block payload bytes land.
 *
 *   begin(ctx, payload_len, is_ext)  a block payload of payload_len bytes starts.
 *       Return 1 to take it through the sink, 0 to decline (the library then
 *       uses on_block / on_block_chunk), negative to drop the peer (CP2P_R_SINK).
 *   space(ctx, &buf, &avail)  give a writable region. avail = 0 means "no room
 *       now": the library stops reading this peer's socket (TCP back-pressure)
 *       until the caller calls cp2p_peer_resume_read(peer). The library writes
 *       at most min(avail, remaining payload) bytes, then calls
 *   data(ctx, n)   n bytes were written at the start of the last region.
 *   end(ctx, ok, why, hash)  the payload is complete (ok=1; checksum verified
 *       unless extmsg or verify_block_checksum=0) or failed (ok=0, why says
 *       why; the peer is then disconnected). hash = sha256d(first 80 bytes).
 *       end() is called exactly once for every accepted begin().
 */
typedef struct cp2p_block_sink {
    int (*begin)(const cp2p_ctx *ctx, uint64_t payload_len, int is_ext);
    void (*space)(const cp2p_ctx *ctx, uint8_t **buf, size_t *avail);
    void (*data)(const cp2p_ctx *ctx, size_t n);
    void (*end)(const cp2p_ctx *ctx, int ok, cp2p_reason why, const uint8_t hash[32]);
} cp2p_block_sink;

/* ---- manager -------------------------------------------------------------- */

/*
 * Creates a peer manager on `base`.
 * Returns: the manager, or NULL on bad options (logged).
 * In: base (borrowed; must outlive the manager), opt (copied; the strings it
 *     points to are copied), h (copied; may be NULL), sink (copied; may be NULL),
 *     user (opaque, passed back in every cp2p_ctx).
 * Free with cp2p_mgr_free().
 */
cp2p_mgr *cp2p_mgr_new(struct event_base *base, const cp2p_options *opt, const cp2p_handlers *h,
                       const cp2p_block_sink *sink, void *user);

/* Closes every connection (no callbacks are called) and frees the manager and
 * all its peers. Accepts NULL. Must not be called from inside a callback. */
void cp2p_mgr_free(cp2p_mgr *mgr);

/*
 * Adds a peer and starts connecting. `hostport` is "host:port", "host" (the
 * network's default port), or "[v6addr]:port". Host names are resolved with
 * getaddrinfo() (blocking; use numeric addresses in latency-critical code).
 * Returns: CP2P_OK with *out (if non-NULL) set to the peer (owned by mgr),
 *          CP2P_EINVAL for a bad string, CP2P_ERESOLVE.
 */
int cp2p_mgr_add_peer(cp2p_mgr *mgr, const char *hostport, cp2p_peer **out);

/* Round-robin over READY peers: returns the next one after the previous call's
 * result, or NULL when no peer is ready. */
cp2p_peer *cp2p_mgr_next_peer(cp2p_mgr *mgr);

/* Number of peers (all states except DEAD) and of READY peers. */
size_t cp2p_mgr_peer_count(const cp2p_mgr *mgr);
size_t cp2p_mgr_ready_count(const cp2p_mgr *mgr);

/* The i-th peer (0 <= i < cp2p_mgr_peer_count), or NULL. Borrowed. */
cp2p_peer *cp2p_mgr_peer_at(cp2p_mgr *mgr, size_t i);

const cp2p_options *cp2p_mgr_options(const cp2p_mgr *mgr);
void *cp2p_mgr_user(const cp2p_mgr *mgr);

/*
 * Broadcasts a raw transaction with reject tracking: sends `tx` to `peer`, or
 * to every READY peer when peer is NULL, then waits opt.broadcast_wait_ms.
 * A `reject` naming the txid ends it with CP2P_BCAST_REJECTED; silence ends
 * it with CP2P_BCAST_ACCEPTED (accepted or already known: the node never
 * rejects duplicates). on_broadcast is called exactly once per call that
 * returned CP2P_OK.
 * Returns: CP2P_OK with txid_out (if non-NULL) set, CP2P_ENOPEER, CP2P_ETOOBIG.
 */
int cp2p_mgr_broadcast_tx(cp2p_mgr *mgr, cp2p_peer *peer, const uint8_t *raw, size_t len,
                          uint8_t txid_out[32]);

/* ---- peer ----------------------------------------------------------------- */

cp2p_peer_state cp2p_peer_state_get(const cp2p_peer *p);
const char *cp2p_peer_state_str(cp2p_peer_state s);
/* "host:port" as given to add_peer; valid as long as the peer. */
const char *cp2p_peer_name(const cp2p_peer *p);
const cp2p_peer_stats *cp2p_peer_stats_get(const cp2p_peer *p);
/* The peer's version message, or NULL before it arrived. */
const cp2p_version *cp2p_peer_version(const cp2p_peer *p);
/* The peer's protoconf maxRecvPayloadLength (1 MiB legacy until it sends
 * one): the cap for everything we send it. */
uint32_t cp2p_peer_max_send(const cp2p_peer *p);
cp2p_reason cp2p_peer_last_reason(const cp2p_peer *p);
cp2p_mgr *cp2p_peer_mgr(const cp2p_peer *p);
/* Per-peer application pointer (default NULL). */
void cp2p_peer_set_user(cp2p_peer *p, void *user);
void *cp2p_peer_get_user(const cp2p_peer *p);

/* Disconnects now with CP2P_R_CLOSED_LOCAL; on_disconnect is called before
 * this returns (also when called from inside another callback). The peer
 * then reconnects per the options. */
void cp2p_peer_close(cp2p_peer *p);
/* Disconnects (on_disconnect is called before this returns, if connected)
 * and forgets the peer: no reconnect. The pointer stays valid until control
 * returns to the event loop; the manager frees the peer on its next tick. */
void cp2p_peer_remove(cp2p_peer *p);

/* Restart reading after a sink returned avail = 0 (call it from the loop
 * once room exists, not from inside space()). Harmless otherwise. */
void cp2p_peer_resume_read(cp2p_peer *p);

/*
 * Sends one message with an arbitrary command (<= 12 chars) and payload.
 * Returns: CP2P_OK, CP2P_ENOTREADY (not connected), CP2P_ETOOBIG (payload
 * above cp2p_peer_max_send() for non-block/tx commands), CP2P_EINVAL.
 * The payload is copied.
 */
int cp2p_peer_send(cp2p_peer *p, const char *cmd, const uint8_t *payload, size_t len);

/*
 * getheaders with a block locator (hashes in internal byte order, newest
 * first; see cp2p_locator_heights) and an optional stop hash (NULL = zero).
 * Returns: as cp2p_peer_send.
 */
int cp2p_peer_getheaders(cp2p_peer *p, const uint8_t (*locator)[32], size_t n, const uint8_t *stop);

/* getdata for n items, split into as many messages as the peer's protoconf
 * limit needs. Returns: as cp2p_peer_send. */
int cp2p_peer_getdata(cp2p_peer *p, const cp2p_inv *items, size_t n);
/* Convenience: getdata MSG_BLOCK / MSG_TX for n hashes. */
int cp2p_peer_getdata_blocks(cp2p_peer *p, const uint8_t (*hashes)[32], size_t n);
int cp2p_peer_getdata_txs(cp2p_peer *p, const uint8_t (*hashes)[32], size_t n);
/* inv (split within limits). */
int cp2p_peer_send_inv(cp2p_peer *p, const cp2p_inv *items, size_t n);
/* Sends a `tx` without tracking. */
int cp2p_peer_send_tx(cp2p_peer *p, const uint8_t *raw, size_t len);
/* Sends a ping now (on_pong reports the round trip). Returns: as send. */
int cp2p_peer_ping(cp2p_peer *p);

/*
 * Block locator heights for a chain whose tip is at `tip_height`: the tip and
 * the 10 below it one by one, then doubling steps, always ending at 0
 * (genesis), as the node builds its own (bsv-p2p.md §4.1).
 * Returns: the number of heights written to out (at most max; 64 suffices).
 */
size_t cp2p_locator_heights(int64_t tip_height, int64_t *out, size_t max);

#ifdef __cplusplus
}
#endif

#endif /* CONDUIT_P2P_H */
