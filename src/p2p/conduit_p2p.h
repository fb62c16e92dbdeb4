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
 *   blocks), so no multi-GB buffer ever exists. SPV helpers (header checks,
 *   chain work, merkle roots and proofs) are at the end of this header.
 *
 * Using it
 *   This header is self-contained (it includes only <stddef.h> and
 *   <stdint.h>); link with `pkg-config --cflags --libs conduit-p2p`
 *   (libconduit-p2p.so.0, or libconduit-p2p.a with --static). The caller
 *   owns the libevent event_base and runs it (libevent_core is a dependency
 *   of the .pc file). Only `cp2p_*` symbols are exported.
 *
 * Objects
 *   cp2p_mgr   the peer manager: owns every peer, the options, the callbacks
 *              and a periodic timer (pings, timeouts, budgets, reconnects,
 *              bans, broadcast tracking). One per event_base.
 *   cp2p_peer  one connection (and its reconnect schedule) to one host:port.
 *              Owned by the manager; the application holds borrowed pointers.
 *   cp2p_net   network parameters (magic, port, genesis, proof-of-work
 *              limit): static, from cp2p_net_by_name().
 *
 * Threads and processes
 *   Everything runs on the caller's event_base. Every function must be called
 *   from the thread that runs that event_base (the library takes no locks).
 *   Do not use a manager after fork(): create it in the process that uses it.
 *   The SPV helpers are pure functions, safe from any thread.
 *
 * Callbacks and re-entrancy
 *   Every callback receives a `const cp2p_ctx *` naming the manager, the peer
 *   and the user pointer given to cp2p_mgr_new(): the shared handler context.
 *   Callbacks may call any function of this header, including
 *   cp2p_peer_close() / cp2p_peer_remove() / cp2p_peer_ban() on the peer they
 *   were called for; the peer is then shut down after the callback returns
 *   (its memory stays valid until the callback returns). Pointers passed to
 *   callbacks (payloads, arrays, strings) are borrowed and valid only until
 *   the callback returns. on_disconnect is never called from inside a send
 *   function (a peer over its budget is failed from the event loop).
 *
 * Errors
 *   Functions return CP2P_OK (0) or a negative CP2P_E* code (the range
 *   -30900..-30999 is reserved for this library); cp2p_strerror() names it.
 *   A peer that misbehaves (bad magic, bad checksum, oversized or malformed
 *   message, garbage, floods, silence, a block dribbling in below the floor
 *   rate, ...) is disconnected with a specific cp2p_reason, logged with the
 *   peer's name, reported to on_disconnect; other peers are not affected and
 *   the process never aborts because of peer input.
 *
 * Reconnects and bans
 *   A connection that fails or ends before it was stable (opt.stable_ms)
 *   counts as a failure: the next dial waits an exponential back-off with
 *   jitter (opt.reconnect_min_ms doubling up to opt.reconnect_max_ms). A peer
 *   disconnected for misbehaviour (cp2p_reason_is_misbehaviour(), or
 *   cp2p_peer_ban()) is banned: no dial for opt.ban_min_ms, doubling with each
 *   ban up to opt.ban_max_ms. Each change is logged once (not every attempt)
 *   and reported to on_penalty, so an application can persist it and restore
 *   it with cp2p_mgr_add_peer_ex() after a restart.
 *
 * Untrusted text
 *   Text a peer chooses (its user agent, reject messages and reasons) is
 *   stored escaped (cp2p_escape(): printable ASCII kept, `\` doubled, every
 *   other byte as `\n`, `\r`, `\t` or `\xNN`), so it can go into a log line,
 *   a status file or JSON without forging lines or terminal escapes.
 *
 * Logging
 *   The library never writes to the application's log by itself: it calls
 *   opt.log_fn (or, without one, writes "conduit-p2p: <level>: ..." lines to
 *   stderr) for lines at or above opt.log_level (cp2p_mgr_set_log_level()).
 *
 * Memory
 *   Non-block messages are bounded by opt.max_recv_payload (default 2 MiB).
 *   A block without a sink uses at most max(opt.chunk_threshold, largest
 *   transaction) bytes of heap. With a sink, block bytes land only in caller
 *   memory. What we queue for a peer that does not read is bounded by
 *   opt.max_send_queue.
 */
#ifndef CONDUIT_P2P_H
#define CONDUIT_P2P_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

#ifdef __cplusplus
extern "C" {
#endif

/* ---- attributes ------------------------------------------------------------ */

#if defined(__GNUC__) || defined(__clang__)
#define CP2P_API          __attribute__((visibility("default")))
#define CP2P_WARN_UNUSED  __attribute__((warn_unused_result))
#define CP2P_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CP2P_API
#define CP2P_WARN_UNUSED
#define CP2P_PRINTF(a, b)
#endif

/* ---- version --------------------------------------------------------------- */

#define CP2P_VERSION_MAJOR 0
#define CP2P_VERSION_MINOR 1
#define CP2P_VERSION_PATCH 0

/* Returns: the library's version, "MAJOR.MINOR.PATCH" (static string). */
CP2P_API const char *cp2p_version_string(void);

/* ---- constants ------------------------------------------------------------- */

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

/* Escaped text: each input byte takes at most 4 output bytes. */
#define CP2P_ESCAPED_LEN(n) (4 * (n) + 1)

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

/* ---- error codes (-30900..-30999) -------------------------------------------- */

#define CP2P_OK           0
#define CP2P_EINVAL       (-30900) /* bad argument (NULL, zero count, bad host:port) */
#define CP2P_ENOTREADY    (-30901) /* peer not connected (not VERSION_SENT or READY) */
#define CP2P_ETOOBIG      (-30902) /* message larger than the peer accepts */
#define CP2P_ENOMEM       (-30903) /* allocation failed */
#define CP2P_ERESOLVE     (-30904) /* host name could not be resolved */
#define CP2P_ESYS         (-30905) /* system call failed; errno is set */
#define CP2P_EMALFORMED   (-30906) /* payload / proof / header does not decode */
#define CP2P_ENOPEER      (-30907) /* no ready peer */
#define CP2P_EBUDGET      (-30908) /* the peer is over its send budget (being dropped) */
#define CP2P_EBADPOW      (-30909) /* header hash above its target, or unusable nBits */
#define CP2P_EBADBITS     (-30910) /* nBits not what the difficulty rules require */
#define CP2P_ENOTLINKED   (-30911) /* header does not link to the previous one */
#define CP2P_EBADTIME     (-30912) /* header time not above the median time past / too far ahead */
#define CP2P_EPROOF       (-30913) /* merkle proof does not lead to the expected root */
#define CP2P_EMUTATED     (-30914) /* merkle tree with CVE-2012-2459 duplicates */
#define CP2P_ERANGE       (-30915) /* index or height out of range / ancestor unknown */
#define CP2P_EUNSUPPORTED (-30916) /* valid encoding this library does not handle */

/* Returns: a static string naming an error code (never NULL; "unknown error"
 * for codes outside the list). */
CP2P_API const char *cp2p_strerror(int err);

/* ---- networks ---------------------------------------------------------------- */

typedef struct cp2p_net cp2p_net; /* opaque, static */

/* Returns: the network named "main"/"mainnet", "test"/"testnet",
 * "regtest" or "stn" (case-insensitive), or NULL. Lives forever. */
CP2P_API const cp2p_net *cp2p_net_by_name(const char *name);
/* Returns: the canonical name ("main", "test", "regtest", "stn"). */
CP2P_API const char *cp2p_net_name(const cp2p_net *net);
/* Returns: the network's default p2p port (8333, 18333, 18444, 9333). */
CP2P_API uint16_t cp2p_net_default_port(const cp2p_net *net);
/* Out: hash = the genesis block hash (internal byte order). */
CP2P_API void cp2p_net_genesis_hash(const cp2p_net *net, uint8_t hash[32]);
/* Out: raw = the genesis block's 80-byte header. */
CP2P_API void cp2p_net_genesis_header(const cp2p_net *net, uint8_t raw[80]);

/* ---- text helpers -------------------------------------------------------------- */

/*
 * Escapes untrusted bytes for logs, status files and JSON: printable ASCII
 * (0x20..0x7e) is kept except `\`, which is doubled; \n, \r, \t become
 * two-character escapes; every other byte (control characters, ESC of ANSI
 * sequences, DEL, bytes >= 0x80) becomes \xNN.
 * In:  in, len (may contain NULs).
 * Out: out, always NUL-terminated when cap > 0; truncated at an escape
 *      boundary if cap is too small (CP2P_ESCAPED_LEN(len) always suffices).
 * Returns: the number of bytes written, excluding the NUL.
 */
CP2P_API size_t cp2p_escape(char *out, size_t cap, const void *in, size_t len);

/* Out: out = the hash as 64 hex characters + NUL in display order (the
 * reverse of the internal byte order, as explorers and RPC show it). */
CP2P_API void cp2p_hash_to_hex(char out[65], const uint8_t hash[32]);
/* Decodes 64 hex characters in display order into an internal-order hash.
 * Returns: CP2P_OK, or CP2P_EINVAL if hex is not exactly 64 hex digits. */
CP2P_API int cp2p_hash_from_hex(uint8_t hash[32], const char *hex) CP2P_WARN_UNUSED;
/* Decodes a hex string (even length, no prefix) into out (cap bytes).
 * Out: *len = bytes written. Returns: CP2P_OK, CP2P_EINVAL (not hex, odd
 * length), CP2P_ETOOBIG (more than cap bytes). */
CP2P_API int cp2p_hex_decode(uint8_t *out, size_t cap, size_t *len,
                             const char *hex) CP2P_WARN_UNUSED;
/* Out: out = 2*n lowercase hex characters + NUL, bytes in order. */
CP2P_API void cp2p_hex_encode(char *out, const uint8_t *in, size_t n);
/* Out: out = sha256(sha256(data)) (transaction and block hashes). */
CP2P_API void cp2p_sha256d(uint8_t out[32], const void *data, size_t len);

/* ---- logging -------------------------------------------------------------------- */

typedef enum cp2p_log_level {
    CP2P_LOG_ERROR = 0,
    CP2P_LOG_WARN = 1,
    CP2P_LOG_INFO = 2,
    CP2P_LOG_DEBUG = 3,
} cp2p_log_level;

/* Receives one log line (no trailing newline; `msg` is borrowed). Peer names
 * and peer-chosen text in it are already escaped. */
typedef void (*cp2p_log_fn)(void *log_user, cp2p_log_level level, const char *msg);

/* ---- peer states ------------------------------------------------------------- *
 *
 *   IDLE ──add──▶ CONNECTING ──TCP up, version sent──▶ VERSION_SENT
 *   VERSION_SENT ──peer's version + verack received──▶ READY  (on_ready)
 *   any ──error / timeout / misbehaviour / close()──▶ CLOSING (on_disconnect)
 *   CLOSING ──failure, reconnect enabled──▶ BACKOFF ──delay elapsed──▶ CONNECTING
 *   CLOSING ──misbehaviour / cp2p_peer_ban()──▶ BANNED ──ban over──▶ CONNECTING
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
    CP2P_PEER_BANNED,
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
    CP2P_R_SEND_BUDGET,       /* more than opt.max_send_queue bytes queued: it does not read */
    CP2P_R_RATE,              /* more messages of one command per second than allowed */
    CP2P_R_MSG_TIMEOUT,       /* one message took longer than opt.msg_timeout_ms */
    CP2P_R_SLOW_BLOCK,        /* a block arrived slower than opt.min_block_rate */
    CP2P_R_MISBEHAVED,        /* the application banned it (cp2p_peer_ban) */
} cp2p_reason;

/* Returns: a static lower-case name for a reason, e.g. "bad-checksum". */
CP2P_API const char *cp2p_reason_str(cp2p_reason r);
/* Returns: 1 if a disconnect for this reason is the peer's misbehaviour
 * (it is then banned), 0 if it is an ordinary failure (back-off). */
CP2P_API int cp2p_reason_is_misbehaviour(cp2p_reason r);

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
    char user_agent[CP2P_ESCAPED_LEN(256)]; /* escaped (cp2p_escape), NUL-terminated */
    int32_t start_height;
    int relay; /* 1 if the field was absent or non-zero */
} cp2p_version;

typedef struct cp2p_reject {
    char message[CP2P_ESCAPED_LEN(12)]; /* the rejected command, e.g. "tx" (escaped) */
    uint8_t code;                       /* CP2P_REJECT_* */
    char reason[CP2P_ESCAPED_LEN(111)]; /* truncated to 111 bytes, then escaped */
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

/* ---- broadcasts -------------------------------------------------------------- */

/*
 * What happened to a broadcast transaction (cp2p_mgr_broadcast_tx). The node
 * answers only some failures: `reject` for invalid transactions (a bad
 * signature costs the sending connection a ban score of 100, which is why
 * broadcasts go out on a connection of their own), `getdata` for a parent
 * when an input is unknown (the tx is kept as an orphan), and nothing at all
 * for a double spend of a mempool transaction or a duplicate. An accepted
 * transaction is relayed: announced by `inv` to the node's other
 * connections. So only SEEN_ON_NETWORK means "accepted".
 */
typedef enum cp2p_bcast_status {
    CP2P_BCAST_SENT = 0,        /* written to the node; nothing heard yet (not final) */
    CP2P_BCAST_SEEN_ON_NETWORK, /* announced back by inv on another connection (final) */
    CP2P_BCAST_REJECTED,        /* the node's reject naming the txid (final) */
    CP2P_BCAST_MISSING_INPUTS,  /* the node asked for a parent: kept as an orphan (final) */
    CP2P_BCAST_TIMEOUT,         /* nothing else heard within opt.broadcast_wait_ms after
                                   SENT: not accepted (double spend of a mempool tx,
                                   already known, ...) (final) */
    CP2P_BCAST_NOT_SENT,        /* no connection to the node could be made (final) */
} cp2p_bcast_status;

/* Returns: "SENT", "SEEN_ON_NETWORK", "REJECTED", "MISSING_INPUTS",
 * "TIMEOUT", "NOT_SENT" (static). */
CP2P_API const char *cp2p_bcast_status_str(cp2p_bcast_status s);

typedef struct cp2p_bcast_report {
    uint8_t txid[CP2P_HASH_LEN];
    cp2p_bcast_status status;
    int final;                     /* 1: the last report for this txid */
    const cp2p_reject *reject;     /* REJECTED: the node's reject (code, escaped reason) */
    uint8_t parent[CP2P_HASH_LEN]; /* MISSING_INPUTS: the parent the node asked for */
    const char *node;              /* "host:port" of the node it was sent to */
    const char *seen_via;          /* SEEN_ON_NETWORK: the connection that announced it */
    const char *detail;            /* human-readable explanation (never NULL) */
} cp2p_bcast_report;

/* ---- per-peer counters and penalties ---------------------------------------------- */

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
    uint64_t send_queue;      /* bytes queued for sending right now */
    uint64_t send_queue_max;  /* highest send_queue seen */
} cp2p_peer_stats;

/* The reconnect schedule of one address (see "Reconnects and bans"). Times
 * are wall-clock Unix seconds so that they can be stored and restored. */
typedef struct cp2p_penalty {
    uint32_t failures;  /* connections in a row that failed or were not stable */
    uint32_t bans;      /* bans in a row (each doubles the ban time) */
    int64_t until;      /* no dial before this time (0: none) */
    int banned;         /* 1: `until` is the end of a ban, 0: of a back-off */
    cp2p_reason reason; /* why the last connection ended */
} cp2p_penalty;

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
    const cp2p_net *net;        /* network (magic, genesis); required */
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

    /* budgets: over any of them the peer is disconnected (a misbehaviour) */
    uint64_t max_send_queue; /* bytes queued for a peer and not yet written (pongs,
                                getdata answers, ...); default 16 MiB. A message the
                                application sends is queued if the queue was under it */
    uint32_t max_msg_rate;   /* messages of one command per second (token bucket),
                                `block` and `tx` excluded; default 500; 0 = no limit */
    uint32_t max_tx_rate;    /* `tx` messages per second; default 50000; 0 = no limit */
    uint32_t max_inv_rate;   /* `inv` entries per second (a node answering `mempool`
                                sends its whole mempool at once: the burst holds
                                msg_burst seconds of it); default 200000; 0 = no limit */
    uint32_t msg_burst;      /* bucket depth in seconds of rate; default 10 */
    uint32_t msg_timeout_ms; /* a non-block message must arrive whole within this
                                time of its first byte; default 120000; 0 = off */
    uint64_t min_block_rate; /* bytes/s: a block arriving slower (measured over the
                                time we were reading it, after block_grace_ms) is
                                dropped with CP2P_R_SLOW_BLOCK; default 16384; 0 = off */
    uint32_t block_grace_ms; /* reading time before min_block_rate applies; default 10000 */

    /* reconnects and bans */
    int reconnect;             /* reconnect with back-off (default 1) */
    uint32_t reconnect_min_ms; /* first delay, doubled each failure; default 1000 */
    uint32_t reconnect_max_ms; /* cap; default 60000 */
    uint32_t stable_ms;        /* READY this long = a good connection: failures reset;
                                  default 60000 */
    uint32_t ban_min_ms;       /* first ban; doubled each ban; default 60000 */
    uint32_t ban_max_ms;       /* cap; default 86400000 (24 h, as the node) */

    uint32_t broadcast_wait_ms; /* SENT without news for this long = TIMEOUT; default 10000 */
    uint32_t tick_ms;           /* timer granularity; default 250 */

    cp2p_log_fn log_fn;       /* NULL: lines to stderr */
    void *log_user;           /* passed to log_fn */
    cp2p_log_level log_level; /* default CP2P_LOG_WARN */
} cp2p_options;

/* Fills *opt with the defaults above for network `net` (may be NULL and set
 * later). */
CP2P_API void cp2p_options_init(cp2p_options *opt, const cp2p_net *net);

/* ---- callbacks ------------------------------------------------------------ *
 * Every member may be NULL. See "Callbacks and re-entrancy" above. */
typedef struct cp2p_handlers {
    /* Handshake done (their version and verack received, our verack,
     * protoconf and sendheaders sent). */
    void (*on_ready)(const cp2p_ctx *ctx, const cp2p_version *their);
    /* The connection ended. `detail` is a human-readable explanation. The
     * peer may reconnect later (state BACKOFF or BANNED) unless it was
     * removed. */
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
    /* Broadcast progress (cp2p_mgr_broadcast_tx): SENT once written, then
     * exactly one final report. ctx->peer is the peer given to broadcast_tx
     * (NULL if it is gone). */
    void (*on_broadcast)(const cp2p_ctx *ctx, const cp2p_bcast_report *r);
    /* Every message after framing, before the specific callback (commands the
     * library does not decode included). cmd is NUL-terminated. Not called for
     * block payloads. */
    void (*on_message)(const cp2p_ctx *ctx, const char *cmd, const uint8_t *payload, size_t len);
    /* The peer's reconnect schedule changed (a failure, a ban, a stable
     * connection): store *pen to restore it with cp2p_mgr_add_peer_ex(). */
    void (*on_penalty)(const cp2p_ctx *ctx, const cp2p_penalty *pen);
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
 * Time spent paused by the sink does not count against min_block_rate.
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
 * Returns: the manager, or NULL on bad options (logged through opt->log_fn).
 * In: base (borrowed; must outlive the manager), opt (copied; the strings it
 *     points to are copied), h (copied; may be NULL), sink (copied; may be NULL),
 *     user (opaque, passed back in every cp2p_ctx).
 * Free with cp2p_mgr_free().
 */
CP2P_API cp2p_mgr *cp2p_mgr_new(struct event_base *base, const cp2p_options *opt,
                                const cp2p_handlers *h, const cp2p_block_sink *sink,
                                void *user) CP2P_WARN_UNUSED;

/* Closes every connection (no callbacks are called) and frees the manager and
 * all its peers. Accepts NULL. Must not be called from inside a callback. */
CP2P_API void cp2p_mgr_free(cp2p_mgr *mgr);

/* Sets the lowest level logged from now on. */
CP2P_API void cp2p_mgr_set_log_level(cp2p_mgr *mgr, cp2p_log_level level);

/*
 * Adds a peer and starts connecting. `hostport` is "host:port", "host" (the
 * network's default port), or "[v6addr]:port". Host names are resolved with
 * getaddrinfo() (blocking; use numeric addresses in latency-critical code).
 * Returns: CP2P_OK with *out (if non-NULL) set to the peer (owned by mgr),
 *          CP2P_EINVAL for a bad string.
 */
CP2P_API int cp2p_mgr_add_peer(cp2p_mgr *mgr, const char *hostport,
                               cp2p_peer **out) CP2P_WARN_UNUSED;

/*
 * As cp2p_mgr_add_peer, with the reconnect schedule `restore` (NULL: a fresh
 * one) as on_penalty reported it earlier: a ban or back-off still running
 * delays the first dial until restore->until.
 * Returns: as cp2p_mgr_add_peer.
 */
CP2P_API int cp2p_mgr_add_peer_ex(cp2p_mgr *mgr, const char *hostport, const cp2p_penalty *restore,
                                  cp2p_peer **out) CP2P_WARN_UNUSED;

/* Returns: the next READY peer after the previous call's result (round
 * robin), or NULL when no peer is ready. */
CP2P_API cp2p_peer *cp2p_mgr_next_peer(cp2p_mgr *mgr);

/* Returns: the number of peers (all states except DEAD), of READY peers. */
CP2P_API size_t cp2p_mgr_peer_count(const cp2p_mgr *mgr);
CP2P_API size_t cp2p_mgr_ready_count(const cp2p_mgr *mgr);

/* Returns: the i-th peer (0 <= i < cp2p_mgr_peer_count), or NULL. Borrowed. */
CP2P_API cp2p_peer *cp2p_mgr_peer_at(cp2p_mgr *mgr, size_t i);

/* Returns: the manager's options (borrowed, valid as long as the manager). */
CP2P_API const cp2p_options *cp2p_mgr_options(const cp2p_mgr *mgr);
/* Returns: the user pointer given to cp2p_mgr_new(). */
CP2P_API void *cp2p_mgr_user(const cp2p_mgr *mgr);

/*
 * Broadcasts a raw transaction and tracks what the node does with it (see
 * cp2p_bcast_status). The transaction goes out on a connection of its own to
 * the node of `peer` (NULL: the first READY peer), opened for broadcasts and
 * closed when none is pending, so the node's penalty for a bad transaction
 * never costs the application's connection. Every other connection to any
 * node with relay on watches for the node's `inv`; when the manager has none
 * (opt.relay = 0), a second, watching connection to the same node is opened.
 * on_broadcast reports SENT, then one final status, for every call that
 * returned CP2P_OK. A `getdata` for the txid is answered with the tx.
 * In:  raw, len: the transaction (copied).
 * Out: txid_out (if non-NULL): its txid.
 * Returns: CP2P_OK, CP2P_EINVAL (empty, or not a transaction), CP2P_ENOPEER
 *          (peer NULL and no READY peer).
 */
CP2P_API int cp2p_mgr_broadcast_tx(cp2p_mgr *mgr, cp2p_peer *peer, const uint8_t *raw, size_t len,
                                   uint8_t txid_out[32]) CP2P_WARN_UNUSED;

/* ---- peer ----------------------------------------------------------------- */

/* Accessors. Returns: the state, its name, the escaped "host:port" as given
 * to add_peer (valid as long as the peer), counters (borrowed). */
CP2P_API cp2p_peer_state cp2p_peer_state_get(const cp2p_peer *p);
CP2P_API const char *cp2p_peer_state_str(cp2p_peer_state s);
CP2P_API const char *cp2p_peer_name(const cp2p_peer *p);
CP2P_API const cp2p_peer_stats *cp2p_peer_stats_get(const cp2p_peer *p);
/* Returns: the peer's version message, or NULL before it arrived. */
CP2P_API const cp2p_version *cp2p_peer_version(const cp2p_peer *p);
/* Returns: the peer's protoconf maxRecvPayloadLength (1 MiB legacy until it
 * sends one): the cap for everything we send it. */
CP2P_API uint32_t cp2p_peer_max_send(const cp2p_peer *p);
/* Returns: why the last connection ended (CP2P_R_NONE before any). */
CP2P_API cp2p_reason cp2p_peer_last_reason(const cp2p_peer *p);
CP2P_API cp2p_mgr *cp2p_peer_mgr(const cp2p_peer *p);
/* Per-peer application pointer (default NULL). */
CP2P_API void cp2p_peer_set_user(cp2p_peer *p, void *user);
CP2P_API void *cp2p_peer_get_user(const cp2p_peer *p);
/* Out: *out = the peer's reconnect schedule now. Returns: CP2P_OK,
 * CP2P_EINVAL for NULL arguments. */
CP2P_API int cp2p_peer_penalty(const cp2p_peer *p, cp2p_penalty *out);

/* Disconnects now with CP2P_R_CLOSED_LOCAL; on_disconnect is called before
 * this returns (also when called from inside another callback). The peer
 * then reconnects per the options. */
CP2P_API void cp2p_peer_close(cp2p_peer *p);
/* Disconnects (on_disconnect is called before this returns, if connected)
 * and forgets the peer: no reconnect. The pointer stays valid until control
 * returns to the event loop; the manager frees the peer on its next tick. */
CP2P_API void cp2p_peer_remove(cp2p_peer *p);
/* The application found the peer misbehaving (bad headers, a block that
 * fails its merkle root, ...): disconnects it with CP2P_R_MISBEHAVED and
 * `why` (logged, escaped), and bans its address for an escalating time.
 * on_disconnect is called before this returns. */
CP2P_API void cp2p_peer_ban(cp2p_peer *p, const char *why);

/* Restart reading after a sink returned avail = 0 (call it from the loop
 * once room exists, not from inside space()). Harmless otherwise. */
CP2P_API void cp2p_peer_resume_read(cp2p_peer *p);

/*
 * Sends one message with an arbitrary command (<= 12 chars) and payload
 * (copied).
 * Returns: CP2P_OK, CP2P_ENOTREADY (not connected), CP2P_ETOOBIG (payload
 * above cp2p_peer_max_send() for non-block/tx commands), CP2P_EBUDGET (the
 * peer's send queue is over opt.max_send_queue: it is dropped from the event
 * loop), CP2P_EINVAL.
 */
CP2P_API int cp2p_peer_send(cp2p_peer *p, const char *cmd, const uint8_t *payload,
                            size_t len) CP2P_WARN_UNUSED;

/*
 * getheaders with a block locator (hashes in internal byte order, newest
 * first; see cp2p_locator_heights) and an optional stop hash (NULL = zero).
 * Returns: as cp2p_peer_send.
 */
CP2P_API int cp2p_peer_getheaders(cp2p_peer *p, const uint8_t (*locator)[32], size_t n,
                                  const uint8_t *stop) CP2P_WARN_UNUSED;

/* getdata for n items, split into as many messages as the peer's protoconf
 * limit needs. Returns: as cp2p_peer_send. */
CP2P_API int cp2p_peer_getdata(cp2p_peer *p, const cp2p_inv *items, size_t n) CP2P_WARN_UNUSED;
/* Convenience: getdata MSG_BLOCK / MSG_TX for n hashes. Returns: as send. */
CP2P_API int cp2p_peer_getdata_blocks(cp2p_peer *p, const uint8_t (*hashes)[32],
                                      size_t n) CP2P_WARN_UNUSED;
CP2P_API int cp2p_peer_getdata_txs(cp2p_peer *p, const uint8_t (*hashes)[32],
                                   size_t n) CP2P_WARN_UNUSED;
/* inv (split within limits). Returns: as cp2p_peer_send. */
CP2P_API int cp2p_peer_send_inv(cp2p_peer *p, const cp2p_inv *items, size_t n) CP2P_WARN_UNUSED;
/* Sends a `tx` without tracking. Returns: as cp2p_peer_send. */
CP2P_API int cp2p_peer_send_tx(cp2p_peer *p, const uint8_t *raw, size_t len) CP2P_WARN_UNUSED;
/* Sends a ping now (on_pong reports the round trip). Returns: as send. */
CP2P_API int cp2p_peer_ping(cp2p_peer *p) CP2P_WARN_UNUSED;

/*
 * Block locator heights for a chain whose tip is at `tip_height`: the tip and
 * the 10 below it one by one, then doubling steps, always ending at 0
 * (genesis), as the node builds its own (bsv-p2p.md §4.1).
 * Returns: the number of heights written to out (at most max; 64 suffices).
 */
CP2P_API size_t cp2p_locator_heights(int64_t tip_height, int64_t *out, size_t max);

/* ---- SPV helpers: headers, proof of work, chain work ------------------------------ *
 *
 * Hashes are 32 bytes in internal byte order (what sha256d produces; use
 * cp2p_hash_to_hex for display). 256-bit numbers (targets, chain work) are
 * 32 bytes little-endian, as the node stores them. */

typedef struct cp2p_header {
    int32_t version;
    uint8_t prev[32]; /* previous block hash */
    uint8_t merkle_root[32];
    uint32_t time;
    uint32_t bits;
    uint32_t nonce;
} cp2p_header;

/* Decodes the 80 wire bytes of a header. Cannot fail. */
CP2P_API void cp2p_header_parse(cp2p_header *h, const uint8_t raw[80]);
/* Encodes a header into 80 wire bytes. Cannot fail. */
CP2P_API void cp2p_header_serialize(uint8_t raw[80], const cp2p_header *h);
/* Out: hash = sha256d(raw): the block hash. */
CP2P_API void cp2p_header_hash(const uint8_t raw[80], uint8_t hash[32]);

/*
 * Checks a header's proof of work: nBits decodes to a positive target not
 * above the network's limit, and the header hash is at or below it.
 * Returns: CP2P_OK, CP2P_EBADPOW.
 */
CP2P_API int cp2p_header_check_pow(const cp2p_net *net, const uint8_t raw[80]) CP2P_WARN_UNUSED;

/*
 * Checks that n headers (80 bytes each, back to back) form a chain: the
 * first links to prev_hash (NULL: not checked), each next one to the one
 * before, and each has valid proof of work. Difficulty transitions are not
 * checked here (see cp2p_header_check_next).
 * Out: *bad (if non-NULL) = index of the first failing header.
 * Returns: CP2P_OK, CP2P_ENOTLINKED, CP2P_EBADPOW, CP2P_EINVAL (n == 0).
 */
CP2P_API int cp2p_headers_check_chain(const cp2p_net *net, const uint8_t *hdrs, size_t n,
                                      const uint8_t prev_hash[32], size_t *bad) CP2P_WARN_UNUSED;

/* Out: work = the expected number of hashes for a block at `bits`,
 * 2^256 / (target + 1) (0 for unusable bits), as 32 bytes little-endian. */
CP2P_API void cp2p_work_from_bits(uint8_t work[32], uint32_t bits);
/* acc += add (256-bit, little-endian). Returns: 1 on overflow, else 0. */
CP2P_API int cp2p_work_add(uint8_t acc[32], const uint8_t add[32]);
/* Returns: -1, 0, 1 as a <, ==, > b (256-bit, little-endian). */
CP2P_API int cp2p_work_cmp(const uint8_t a[32], const uint8_t b[32]);

/* One block of a chain as the difficulty rules see it. */
typedef struct cp2p_block_info {
    int32_t height;
    uint32_t time;
    uint32_t bits;
    uint8_t chain_work[32]; /* total work up to and including this block */
} cp2p_block_info;

/* Fills *out with the ancestor at `height` of the block being extended
 * (height <= that block's height; equal means the block itself).
 * Returns 0, or non-zero if it is unknown. */
typedef int (*cp2p_ancestor_fn)(void *ctx, int32_t height, cp2p_block_info *out);

/*
 * Checks the header `raw` as the child of `prev` (the block whose hash is
 * prev_hash), with the node's rules for `net`: links to prev_hash, proof of
 * work, nBits equal to what the difficulty rules require (legacy retarget,
 * EDA, the 144-block DAA, testnet's 20-minute rule, regtest's none), time
 * above the median of the previous 11 blocks and at most `now` + 2 hours
 * (now = 0: not checked). `get` returns ancestors of prev (up to 2016 +
 * 11 back for the legacy retarget; 147 for the DAA).
 * Out: next (if non-NULL) = height, time, bits and chain work of the new
 *      block, to be handed back as `prev` for its child.
 * Returns: CP2P_OK, CP2P_ENOTLINKED, CP2P_EBADPOW, CP2P_EBADBITS,
 *          CP2P_EBADTIME, CP2P_ERANGE (an ancestor the rules need is unknown).
 */
CP2P_API int cp2p_header_check_next(const cp2p_net *net, const cp2p_block_info *prev,
                                    const uint8_t prev_hash[32], const uint8_t raw[80],
                                    cp2p_ancestor_fn get, void *ctx, int64_t now,
                                    cp2p_block_info *next) CP2P_WARN_UNUSED;

/* ---- SPV helpers: merkle roots and proofs ---------------------------------------- */

/*
 * Computes the merkle root of n txids (n * 32 bytes, internal order), the
 * node's way: an odd level pairs its last hash with itself.
 * Out: root; *mutated (if non-NULL) = 1 if two really present siblings are
 *      equal (CVE-2012-2459: a block with this tree must be rejected).
 * Returns: CP2P_OK, CP2P_EINVAL (n == 0), CP2P_ENOMEM.
 */
CP2P_API int cp2p_merkle_root(const uint8_t *txids, size_t n, uint8_t root[32],
                              int *mutated) CP2P_WARN_UNUSED;

/*
 * Root of a merkle branch: starting from leaf at position `index`, combine
 * with branch[0..depth) (32 bytes each, bottom up; where a level's sibling
 * is the odd-level duplicate, pass the running hash itself, i.e. what
 * cp2p_merkle_root paired it with).
 * Out: root. Returns: CP2P_OK, CP2P_EINVAL (depth > 64 or index >= 2^depth).
 */
CP2P_API int cp2p_merkle_branch_root(const uint8_t leaf[32], uint64_t index, const uint8_t *branch,
                                     size_t depth, uint8_t root[32]) CP2P_WARN_UNUSED;

/* What a TSC proof claims (cp2p_tsc_verify). */
typedef struct cp2p_tsc_info {
    uint64_t index;     /* position of the tx in the block */
    uint8_t txid[32];   /* the tx's id (hashed from the tx when the proof holds it) */
    int target_type;    /* 0: block hash, 1: block header, 2: merkle root */
    uint8_t target[80]; /* 32 bytes (hash/root) or the 80-byte header */
    uint8_t root[32];   /* the merkle root the nodes lead to */
    size_t n_nodes;
} cp2p_tsc_info;

/*
 * Verifies a binary TSC merkle proof (BRC-10: flags, CompactSize index,
 * txid or CompactSize length + tx, target, CompactSize node count, nodes of
 * type 0 (32-byte hash) or 1 (duplicate of the working hash)).
 * In:  proof, len; txid (NULL: not checked) must be the proof's tx;
 *      merkle_root (NULL: not checked) is the expected root, from a header
 *      the caller trusts (required when the target is a block hash, which
 *      cannot be checked otherwise).
 * Out: info (if non-NULL) = what the proof holds.
 * Returns: CP2P_OK if the nodes lead from the tx to the target's merkle root
 *          (and to merkle_root); CP2P_EPROOF if not (or txid differs);
 *          CP2P_EMALFORMED; CP2P_EUNSUPPORTED (node type 2, composite proofs);
 *          CP2P_EINVAL (block-hash target without merkle_root).
 */
CP2P_API int cp2p_tsc_verify(const uint8_t *proof, size_t len, const uint8_t txid[32],
                             const uint8_t merkle_root[32], cp2p_tsc_info *info) CP2P_WARN_UNUSED;

/*
 * Verifies that txid is in a BUMP (BRC-74 binary merkle path: CompactSize
 * block height, tree height byte, then per level CompactSize leaf count and
 * leaves [CompactSize offset, flags (bit 0 duplicate, bit 1 txid), hash
 * unless duplicate]) whose root is merkle_root. Compound paths (several
 * txids) are supported: a sibling missing at some level is computed from
 * the level below.
 * Out: *block_height (if non-NULL) = the height the path claims; root (if
 *      non-NULL) = the root computed for txid.
 * Returns: CP2P_OK; CP2P_EPROOF (txid not in the path, or another root);
 *          CP2P_EMALFORMED.
 */
CP2P_API int cp2p_bump_verify(const uint8_t *bump, size_t len, const uint8_t txid[32],
                              const uint8_t merkle_root[32], uint64_t *block_height,
                              uint8_t root[32]) CP2P_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif /* CONDUIT_P2P_H */
