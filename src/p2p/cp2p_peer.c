/*
 * cp2p_peer.c - peers and the peer manager of libconduit-p2p.
 *
 * Each peer is an explicit state machine (conduit_p2p.h: IDLE, CONNECTING,
 * VERSION_SENT, READY, CLOSING, BACKOFF, DEAD) driven by three libevent
 * events: a read event on the socket, a write event that drains an evbuffer,
 * and the manager's periodic tick (timeouts, pings, reconnects, broadcast
 * tracking, freeing dead peers).
 *
 * NOTES
 *   The socket is read with recv() directly rather than through a
 *   bufferevent, because block payloads must land in memory the caller
 *   chooses (the sink) with no intermediate copy; only the bytes read past a
 *   block's message header in the same recv (at most one read buffer) are
 *   copied. The reader has two modes: MSG (header and small payloads in
 *   p->rbuf) and BLOCK (payload streamed into the sink, a whole-block heap
 *   buffer when small, or a bounded chunk buffer cut at tx boundaries).
 *
 *   Callbacks may close or remove the peer they were called for. Peers are
 *   therefore never freed inside an event handler: they become DEAD and the
 *   tick reaps them; every loop that calls a callback re-checks p->gen (the
 *   connection incarnation) afterwards.
 */
#include "conduit_p2p.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "btc_preproc.h"
#include "btc_varint.h"
#include "cd_build.h"
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"
#include "cp2p_codec.h"

#define RBUF_DEFAULT (256 * 1024)
#define READ_BUDGET  64 /* recv calls per read event before yielding */

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

static void peer_connect(cp2p_peer *p);
static void peer_fail(cp2p_peer *p, cp2p_reason r, const char *fmt, ...) CD_PRINTF(3, 4);
static void on_read(evutil_socket_t fd, short what, void *arg);

/* ---- small helpers ---------------------------------------------------------- */

static cp2p_ctx mkctx(cp2p_peer *p)
{
    cp2p_ctx c = {p ? p->mgr : NULL, p, NULL};
    if (p)
        c.user = p->mgr->user;
    return c;
}

static uint64_t rand64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
        v = cd_now_ns() ^ ((uint64_t)getpid() << 32);
    return v ? v : 1;
}

static int peer_live(const cp2p_peer *p, uint64_t gen)
{
    return p->fd >= 0 && p->gen == gen;
}

const char *cp2p_strerror(int err)
{
    switch (err) {
    case CP2P_OK:
        return "ok";
    case CP2P_EINVAL:
        return "invalid argument";
    case CP2P_ENOTREADY:
        return "peer not ready";
    case CP2P_ETOOBIG:
        return "message too big for peer";
    case CP2P_ENOMEM:
        return "out of memory";
    case CP2P_ERESOLVE:
        return "cannot resolve host";
    case CP2P_ESYS:
        return "system error";
    case CP2P_EMALFORMED:
        return "malformed payload";
    case CP2P_ENOPEER:
        return "no ready peer";
    default:
        return "unknown error";
    }
}

const char *cp2p_reason_str(cp2p_reason r)
{
    static const char *const names[] = {
        [CP2P_R_NONE] = "none",
        [CP2P_R_CLOSED_LOCAL] = "closed-local",
        [CP2P_R_CONNECT_FAILED] = "connect-failed",
        [CP2P_R_EOF] = "eof",
        [CP2P_R_TRUNCATED] = "truncated",
        [CP2P_R_IO] = "io-error",
        [CP2P_R_BAD_MAGIC] = "bad-magic",
        [CP2P_R_BAD_COMMAND] = "bad-command",
        [CP2P_R_OVERSIZE] = "oversize",
        [CP2P_R_BAD_CHECKSUM] = "bad-checksum",
        [CP2P_R_MALFORMED] = "malformed",
        [CP2P_R_PROTOCOL] = "protocol",
        [CP2P_R_HANDSHAKE_TIMEOUT] = "handshake-timeout",
        [CP2P_R_PING_TIMEOUT] = "ping-timeout",
        [CP2P_R_STALLED] = "stalled",
        [CP2P_R_NOMEM] = "no-memory",
        [CP2P_R_SINK] = "sink",
        [CP2P_R_SELF] = "self-connection",
    };
    if ((unsigned)r < CD_ARRAY_LEN(names) && names[r])
        return names[r];
    return "unknown";
}

const char *cp2p_peer_state_str(cp2p_peer_state s)
{
    switch (s) {
    case CP2P_PEER_IDLE:
        return "idle";
    case CP2P_PEER_CONNECTING:
        return "connecting";
    case CP2P_PEER_VERSION_SENT:
        return "version-sent";
    case CP2P_PEER_READY:
        return "ready";
    case CP2P_PEER_CLOSING:
        return "closing";
    case CP2P_PEER_BACKOFF:
        return "backoff";
    case CP2P_PEER_DEAD:
        return "dead";
    }
    return "unknown";
}

void cp2p_options_init(cp2p_options *o, const btc_net *net)
{
    memset(o, 0, sizeof(*o));
    o->net = net;
    o->user_agent = NULL;
    o->relay = 0;
    o->start_height = 0;
    o->send_sendheaders = 1;
    o->max_recv_payload = CP2P_DEFAULT_MAX_RECV;
    o->max_block_payload = UINT64_MAX;
    o->max_tx_payload = 1000000000ull;
    o->chunk_threshold = CP2P_DEFAULT_CHUNK_THRESHOLD;
    o->verify_block_checksum = 1;
    o->handshake_timeout_ms = 60000;
    o->ping_interval_ms = 120000;
    o->ping_timeout_ms = 60000;
    o->stall_timeout_ms = 120000;
    o->reconnect = 1;
    o->reconnect_min_ms = 1000;
    o->reconnect_max_ms = 60000;
    o->broadcast_wait_ms = 5000;
    o->tick_ms = 250;
}

size_t cp2p_locator_heights(int64_t tip, int64_t *out, size_t max)
{
    size_t n = 0;
    int64_t step = 1;
    if (max == 0 || tip < 0)
        return 0;
    for (int64_t h = tip; h > 0 && n < max; h -= step) {
        out[n++] = h;
        if (n > 10)
            step *= 2;
    }
    if (n < max)
        out[n++] = 0;
    else
        out[max - 1] = 0;
    return n;
}

/* ---- sending ---------------------------------------------------------------- */

static void queue_msg(cp2p_peer *p, const char *cmd, const uint8_t *payload, size_t len)
{
    uint8_t hdr[CP2P_HEADER_LEN];
    cp2p_msghdr_encode(hdr, p->mgr->opt.net->magic, cmd, payload, len);
    evbuffer_add(p->out, hdr, sizeof(hdr));
    if (len)
        evbuffer_add(p->out, payload, len);
    p->stats.msgs_out++;
    if (!p->connecting)
        event_add(p->ev_write, NULL);
    cd_log_debug("peer %s: send %s (%zu bytes)", p->name, cmd, len);
}

static int can_send(const cp2p_peer *p)
{
    return p->fd >= 0 && !p->connecting &&
           (p->state == CP2P_PEER_VERSION_SENT || p->state == CP2P_PEER_READY);
}

int cp2p_peer_send(cp2p_peer *p, const char *cmd, const uint8_t *payload, size_t len)
{
    if (!p || !cmd || !*cmd || strlen(cmd) > CP2P_COMMAND_LEN || (len && !payload))
        return CP2P_EINVAL;
    if (!can_send(p))
        return CP2P_ENOTREADY;
    if (len > 0xFFFFFFFFu)
        return CP2P_ETOOBIG;
    if (strcmp(cmd, "tx") != 0 && strcmp(cmd, "block") != 0 && len > p->max_send)
        return CP2P_ETOOBIG;
    queue_msg(p, cmd, payload, len);
    return CP2P_OK;
}

static int send_buf(cp2p_peer *p, const char *cmd, cp2p_buf *b)
{
    int rc = cp2p_peer_send(p, cmd, b->p, b->len);
    cp2p_buf_free(b);
    return rc;
}

int cp2p_peer_getheaders(cp2p_peer *p, const uint8_t (*locator)[32], size_t n, const uint8_t *stop)
{
    cp2p_buf b = {0};
    if (!p || (n && !locator))
        return CP2P_EINVAL;
    cp2p_enc_getheaders(&b, locator, n, stop);
    return send_buf(p, "getheaders", &b);
}

static int send_inv_split(cp2p_peer *p, const char *cmd, const cp2p_inv *items, size_t n)
{
    if (!p || !items || n == 0)
        return CP2P_EINVAL;
    if (!can_send(p))
        return CP2P_ENOTREADY;
    size_t per = cp2p_inv_max_entries(p->max_send);
    for (size_t i = 0; i < n; i += per) {
        cp2p_buf b = {0};
        cp2p_enc_inv(&b, items + i, CD_MIN(per, n - i));
        int rc = send_buf(p, cmd, &b);
        if (rc)
            return rc;
    }
    return CP2P_OK;
}

int cp2p_peer_getdata(cp2p_peer *p, const cp2p_inv *items, size_t n)
{
    return send_inv_split(p, "getdata", items, n);
}

int cp2p_peer_send_inv(cp2p_peer *p, const cp2p_inv *items, size_t n)
{
    return send_inv_split(p, "inv", items, n);
}

static int getdata_type(cp2p_peer *p, uint32_t type, const uint8_t (*hashes)[32], size_t n)
{
    if (!hashes || n == 0)
        return CP2P_EINVAL;
    cp2p_inv *v = malloc(n * sizeof(*v));
    if (!v)
        return CP2P_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        v[i].type = type;
        memcpy(v[i].hash, hashes[i], 32);
    }
    int rc = cp2p_peer_getdata(p, v, n);
    free(v);
    return rc;
}

int cp2p_peer_getdata_blocks(cp2p_peer *p, const uint8_t (*hashes)[32], size_t n)
{
    return getdata_type(p, CP2P_INV_BLOCK, hashes, n);
}

int cp2p_peer_getdata_txs(cp2p_peer *p, const uint8_t (*hashes)[32], size_t n)
{
    return getdata_type(p, CP2P_INV_TX, hashes, n);
}

int cp2p_peer_send_tx(cp2p_peer *p, const uint8_t *raw, size_t len)
{
    if (!raw || len == 0)
        return CP2P_EINVAL;
    return cp2p_peer_send(p, "tx", raw, len);
}

int cp2p_peer_ping(cp2p_peer *p)
{
    if (!p)
        return CP2P_EINVAL;
    if (!can_send(p))
        return CP2P_ENOTREADY;
    cp2p_buf b = {0};
    p->ping_nonce = rand64();
    cp2p_enc_u64(&b, p->ping_nonce);
    p->ping_outstanding = 1;
    p->t_ping_sent_ns = cd_now_ns();
    return send_buf(p, "ping", &b);
}

/* ---- accessors -------------------------------------------------------------- */

cp2p_peer_state cp2p_peer_state_get(const cp2p_peer *p)
{
    return p->state;
}
const char *cp2p_peer_name(const cp2p_peer *p)
{
    return p->name;
}
const cp2p_peer_stats *cp2p_peer_stats_get(const cp2p_peer *p)
{
    return &p->stats;
}
const cp2p_version *cp2p_peer_version(const cp2p_peer *p)
{
    return p->got_version ? &p->their : NULL;
}
uint32_t cp2p_peer_max_send(const cp2p_peer *p)
{
    return p->max_send;
}
cp2p_reason cp2p_peer_last_reason(const cp2p_peer *p)
{
    return p->last_reason;
}
cp2p_mgr *cp2p_peer_mgr(const cp2p_peer *p)
{
    return p->mgr;
}
void cp2p_peer_set_user(cp2p_peer *p, void *user)
{
    p->user = user;
}
void *cp2p_peer_get_user(const cp2p_peer *p)
{
    return p->user;
}
const cp2p_options *cp2p_mgr_options(const cp2p_mgr *m)
{
    return &m->opt;
}
void *cp2p_mgr_user(const cp2p_mgr *m)
{
    return m->user;
}

size_t cp2p_mgr_peer_count(const cp2p_mgr *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_peers; i++)
        n += m->peers[i]->state != CP2P_PEER_DEAD;
    return n;
}

size_t cp2p_mgr_ready_count(const cp2p_mgr *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_peers; i++)
        n += m->peers[i]->state == CP2P_PEER_READY;
    return n;
}

cp2p_peer *cp2p_mgr_peer_at(cp2p_mgr *m, size_t i)
{
    for (size_t k = 0; k < m->n_peers; k++) {
        if (m->peers[k]->state == CP2P_PEER_DEAD)
            continue;
        if (i-- == 0)
            return m->peers[k];
    }
    return NULL;
}

cp2p_peer *cp2p_mgr_next_peer(cp2p_mgr *m)
{
    for (size_t k = 0; k < m->n_peers; k++) {
        size_t i = (m->rr + k) % m->n_peers;
        if (m->peers[i]->state == CP2P_PEER_READY) {
            m->rr = i + 1;
            return m->peers[i];
        }
    }
    return NULL;
}

/* ---- block reception ---------------------------------------------------------- */

static void block_reset(cp2p_peer *p)
{
    free(p->bbuf);
    p->bbuf = NULL;
    p->bcap = p->bfill = 0;
    p->bk = 0;
    p->mode = RD_MSG;
    p->sink_ptr = NULL;
    p->sink_avail = 0;
}

/* Ends a block that did not complete (peer is being disconnected). */
static void block_abort(cp2p_peer *p, cp2p_reason why)
{
    cp2p_ctx c = mkctx(p);
    enum blk_kind k = p->bk;
    uint8_t hash[32];
    memcpy(hash, p->bgot >= 80 ? p->bhash : (const uint8_t[32]){0}, 32);
    block_reset(p);
    if (k == BLK_SINK && p->mgr->sink.end)
        p->mgr->sink.end(&c, 0, why, hash);
    else if (k == BLK_CHUNK && p->mgr->h.on_block_abort)
        p->mgr->h.on_block_abort(&c, hash, why);
}

static int block_start(cp2p_peer *p)
{
    cp2p_mgr *m = p->mgr;
    cp2p_ctx c = mkctx(p);
    uint64_t gen = p->gen;
    p->blen = p->hdr.len;
    p->bgot = 0;
    p->bcheck = m->opt.verify_block_checksum && !p->hdr.ext;
    if (p->bcheck)
        cd_sha256_init(&p->bsha);
    p->bhdr_done = 0;
    p->btx_count = p->btx_seen = 0;
    p->bchunk_idx = 0;
    p->bbase = 0;
    p->bscan = 0;
    p->bfill = 0;
    if (m->have_sink && m->sink.begin) {
        int rc = m->sink.begin(&c, p->blen, p->hdr.ext);
        if (!peer_live(p, gen))
            return -1;
        if (rc < 0) {
            peer_fail(p, CP2P_R_SINK, "block sink refused a %llu-byte block",
                      (unsigned long long)p->blen);
            return -1;
        }
        if (rc == 1) {
            p->bk = BLK_SINK;
            p->mode = RD_BLOCK;
            return 0;
        }
    }
    if (p->blen <= m->opt.chunk_threshold) {
        p->bbuf = malloc((size_t)p->blen);
        if (!p->bbuf) {
            peer_fail(p, CP2P_R_NOMEM, "cannot allocate %llu bytes for a block",
                      (unsigned long long)p->blen);
            return -1;
        }
        p->bcap = (size_t)p->blen;
        p->bk = BLK_WHOLE;
    } else {
        p->bcap = m->opt.chunk_threshold;
        p->bbuf = malloc(p->bcap);
        if (!p->bbuf) {
            peer_fail(p, CP2P_R_NOMEM, "cannot allocate a %zu-byte chunk buffer", p->bcap);
            return -1;
        }
        p->bk = BLK_CHUNK;
    }
    p->mode = RD_BLOCK;
    return 0;
}

/* Writable region for the next block bytes; *avail 0 = none (sink full). */
static void block_region(cp2p_peer *p, uint8_t **ptr, size_t *avail)
{
    uint64_t rem = p->blen - p->bgot;
    switch (p->bk) {
    case BLK_SINK: {
        cp2p_ctx c = mkctx(p);
        uint8_t *b = NULL;
        size_t a = 0;
        p->mgr->sink.space(&c, &b, &a);
        p->sink_ptr = b;
        p->sink_avail = b ? a : 0;
        *ptr = b;
        *avail = (size_t)CD_MIN((uint64_t)p->sink_avail, rem);
        return;
    }
    case BLK_WHOLE:
        *ptr = p->bbuf + p->bgot;
        *avail = (size_t)rem;
        return;
    case BLK_CHUNK:
        *ptr = p->bbuf + p->bfill;
        *avail = (size_t)CD_MIN((uint64_t)(p->bcap - p->bfill), rem);
        return;
    }
    *ptr = NULL;
    *avail = 0;
}

static int grow_offs(cp2p_peer *p, size_t need)
{
    if (need <= p->boffs_cap)
        return 0;
    size_t cap = p->boffs_cap ? p->boffs_cap : 1024;
    while (cap < need)
        cap *= 2;
    uint64_t *o = realloc(p->boffs, cap * sizeof(*o));
    if (!o)
        return -1;
    p->boffs = o;
    p->boffs_cap = cap;
    return 0;
}

static int checksum_ok(cp2p_peer *p)
{
    uint8_t h[32];
    if (!p->bcheck)
        return 1;
    cd_sha256d_final(&p->bsha, h);
    return memcmp(h, p->hdr.checksum, 4) == 0;
}

/*
 * CHUNK mode: the buffer is full or the payload complete. Finds the tx
 * boundaries in the buffer, delivers everything up to the last complete tx,
 * keeps the partial tx. Returns 0, or -1 if the peer was dropped.
 */
static int chunk_flush(cp2p_peer *p, int final)
{
    uint64_t gen = p->gen;
    size_t n_off = 0;
    if (!p->bhdr_done) {
        uint64_t cnt;
        int k = btc_varint_read(p->bbuf + 80, p->bfill - 80, &cnt);
        if (k <= 0 || cnt > BTC_VARINT_MAX_NODE) {
            peer_fail(p, CP2P_R_MALFORMED, "block tx count is not a valid CompactSize");
            return -1;
        }
        p->btx_count = cnt;
        p->bscan = 80 + (size_t)k;
        btc_preproc_init(&p->bpp, 80 + (uint64_t)k);
        p->bhdr_done = 1;
    }
    /* resume the walk where the cursor stopped: only bytes that arrived
     * since the last flush are examined, however long the partial tx is */
    uint64_t end = p->bbase + p->bfill;
    while (p->bpp.pos < end) {
        if (grow_offs(p, n_off + 1024)) {
            peer_fail(p, CP2P_R_NOMEM, "cannot grow the tx offset array");
            return -1;
        }
        size_t room = p->boffs_cap - n_off, k = 0;
        uint64_t pos0 = p->bpp.pos;
        int rc = btc_preproc_feed(&p->bpp, p->bbuf + (size_t)(pos0 - p->bbase), pos0,
                                  (size_t)(end - pos0), p->boffs + n_off, room, &k);
        if (rc < 0) {
            peer_fail(p, CP2P_R_MALFORMED, "malformed transaction at block offset %llu",
                      (unsigned long long)p->bpp.tx_start);
            return -1;
        }
        p->stats.block_scan_bytes += p->bpp.pos - pos0;
        n_off += k;
        p->btx_seen += k;
        if (k < room)
            break; /* not stopped by the offset array: all available bytes walked */
    }
    p->bscan = (size_t)(p->bpp.tx_start - p->bbase);
    if (final) {
        if (p->bscan != p->bfill || !btc_preproc_at_boundary(&p->bpp) ||
            p->btx_seen != p->btx_count) {
            peer_fail(p, CP2P_R_MALFORMED,
                      "block ends inside a transaction or declares %llu txs but holds %llu",
                      (unsigned long long)p->btx_count, (unsigned long long)p->btx_seen);
            return -1;
        }
        if (!checksum_ok(p)) {
            peer_fail(p, CP2P_R_BAD_CHECKSUM, "block payload checksum mismatch");
            return -1;
        }
    } else if (n_off == 0) {
        /* one transaction larger than the buffer: grow to hold it, but never
         * beyond the largest transaction we accept */
        size_t ncap = p->bcap * 2;
        if (ncap - p->mgr->opt.chunk_threshold > p->mgr->opt.max_tx_payload + 1) {
            peer_fail(p, CP2P_R_MALFORMED,
                      "transaction at block offset %llu is larger than %llu bytes",
                      (unsigned long long)(p->bbase + p->bscan),
                      (unsigned long long)p->mgr->opt.max_tx_payload);
            return -1;
        }
        uint8_t *nb = realloc(p->bbuf, ncap);
        if (!nb) {
            peer_fail(p, CP2P_R_NOMEM, "cannot grow the chunk buffer to %zu bytes", ncap);
            return -1;
        }
        p->bbuf = nb;
        p->bcap = ncap;
        return 0;
    }
    cp2p_block_chunk ch = {
        .data = p->bbuf,
        .len = p->bscan,
        .block_offset = p->bbase,
        .block_size = p->blen,
        .chunk_index = p->bchunk_idx++,
        .last = final,
        .tx_offsets = p->boffs,
        .n_tx = n_off,
        .first_tx_index = p->btx_seen - n_off,
        .tx_count = p->btx_count,
    };
    memcpy(ch.block_hash, p->bhash, 32);
    if (p->btx_seen > p->btx_count) {
        peer_fail(p, CP2P_R_MALFORMED, "block holds more txs than its count %llu",
                  (unsigned long long)p->btx_count);
        return -1;
    }
    cp2p_ctx c = mkctx(p);
    if (p->mgr->h.on_block_chunk)
        p->mgr->h.on_block_chunk(&c, &ch);
    if (!peer_live(p, gen))
        return -1;
    if (final)
        return 0;
    memmove(p->bbuf, p->bbuf + p->bscan, p->bfill - p->bscan);
    p->bbase += p->bscan;
    p->bfill -= p->bscan;
    p->bscan = 0;
    return 0;
}

static int block_finish(cp2p_peer *p)
{
    uint64_t gen = p->gen;
    cp2p_ctx c = mkctx(p);
    p->stats.blocks_in++;
    p->stats.block_bytes_in += p->blen;
    switch (p->bk) {
    case BLK_SINK: {
        if (!checksum_ok(p)) {
            peer_fail(p, CP2P_R_BAD_CHECKSUM, "block payload checksum mismatch");
            return -1;
        }
        uint8_t hash[32];
        memcpy(hash, p->bhash, 32);
        block_reset(p);
        if (p->mgr->sink.end)
            p->mgr->sink.end(&c, 1, CP2P_R_NONE, hash);
        break;
    }
    case BLK_WHOLE: {
        if (!checksum_ok(p)) {
            peer_fail(p, CP2P_R_BAD_CHECKSUM, "block payload checksum mismatch");
            return -1;
        }
        uint8_t *buf = p->bbuf;
        p->bbuf = NULL;
        block_reset(p);
        if (p->mgr->h.on_block)
            p->mgr->h.on_block(&c, buf, (size_t)p->blen, p->bhash);
        free(buf);
        break;
    }
    case BLK_CHUNK:
        if (chunk_flush(p, 1))
            return -1;
        block_reset(p);
        break;
    }
    return peer_live(p, gen) ? 0 : -1;
}

/* n bytes were written at the region block_region() returned. */
static int block_commit(cp2p_peer *p, const uint8_t *data, size_t n)
{
    uint64_t gen = p->gen;
    if (p->bcheck)
        cd_sha256_update(&p->bsha, data, n);
    if (p->bgot < 80) {
        size_t k = (size_t)CD_MIN((uint64_t)n, 80 - p->bgot);
        memcpy(p->bhdr + p->bgot, data, k);
        if (p->bgot + k == 80)
            cd_sha256d(p->bhash, p->bhdr, 80);
    }
    p->bgot += n;
    if (p->bk == BLK_SINK) {
        cp2p_ctx c = mkctx(p);
        p->sink_ptr = NULL;
        p->sink_avail = 0;
        p->mgr->sink.data(&c, n);
        if (!peer_live(p, gen))
            return -1;
    } else if (p->bk == BLK_CHUNK) {
        p->bfill += n;
        if (p->bfill == p->bcap && p->bgot < p->blen && chunk_flush(p, 0))
            return -1;
    }
    if (p->bgot == p->blen)
        return block_finish(p);
    return 0;
}

/* ---- message dispatch ---------------------------------------------------------- */

static void send_handshake_reply(cp2p_peer *p)
{
    cp2p_buf b = {0};
    queue_msg(p, "verack", NULL, 0);
    cp2p_enc_protoconf(&b, p->mgr->opt.max_recv_payload, NULL);
    queue_msg(p, "protoconf", b.p, b.len);
    cp2p_buf_free(&b);
    if (p->mgr->opt.send_sendheaders)
        queue_msg(p, "sendheaders", NULL, 0);
}

static void maybe_ready(cp2p_peer *p)
{
    if (p->state != CP2P_PEER_VERSION_SENT || !p->got_version || !p->got_verack)
        return;
    p->state = CP2P_PEER_READY;
    p->backoff_ms = 0;
    p->stats.connects++;
    p->t_next_ping_ns = cd_now_ns() + (uint64_t)p->mgr->opt.ping_interval_ms * 1000000ull;
    cd_log_info("peer %s: ready (version %d, ua \"%s\", height %d)", p->name, p->their.version,
                p->their.user_agent, p->their.start_height);
    cp2p_ctx c = mkctx(p);
    if (p->mgr->h.on_ready)
        p->mgr->h.on_ready(&c, &p->their);
}

static void bcast_done(cp2p_mgr *m, bcast *b, cp2p_peer *from, cp2p_bcast_result res,
                       const cp2p_reject *rej)
{
    b->done = 1;
    cp2p_ctx c = mkctx(from);
    c.mgr = m;
    c.user = m->user;
    if (m->h.on_broadcast)
        m->h.on_broadcast(&c, b->txid, res, rej);
}

/* Handles one complete non-block message. Returns 0, -1 if the peer died. */
static int dispatch(cp2p_peer *p, const uint8_t *pl, size_t len)
{
    cp2p_mgr *m = p->mgr;
    cp2p_ctx c = mkctx(p);
    uint64_t gen = p->gen;
    const char *cmd = p->hdr.cmd;
    int rc;

    p->stats.msgs_in++;
    cd_log_debug("peer %s: recv %s (%zu bytes)", p->name, cmd, len);
    if (m->h.on_message) {
        m->h.on_message(&c, cmd, pl, len);
        if (!peer_live(p, gen))
            return -1;
    }

    if (strcmp(cmd, "version") == 0) {
        if (p->got_version) {
            peer_fail(p, CP2P_R_PROTOCOL, "duplicate version message");
            return -1;
        }
        if (cp2p_dec_version(pl, len, &p->their)) {
            peer_fail(p, CP2P_R_MALFORMED, "undecodable version message");
            return -1;
        }
        if (p->their.version < 31800) {
            peer_fail(p, CP2P_R_PROTOCOL, "obsolete protocol version %d", p->their.version);
            return -1;
        }
        if (p->their.nonce == p->our_nonce) {
            peer_fail(p, CP2P_R_SELF, "connected to ourselves");
            return -1;
        }
        p->got_version = 1;
        send_handshake_reply(p);
        maybe_ready(p);
    } else if (strcmp(cmd, "verack") == 0) {
        p->got_verack = 1;
        maybe_ready(p);
    } else if (strcmp(cmd, "ping") == 0) {
        queue_msg(p, "pong", pl, len < 8 ? len : 8);
    } else if (strcmp(cmd, "pong") == 0) {
        uint64_t nonce;
        if (cp2p_dec_u64(pl, len, &nonce) == 0 && p->ping_outstanding && nonce == p->ping_nonce) {
            p->ping_outstanding = 0;
            int64_t rtt = (int64_t)((cd_now_ns() - p->t_ping_sent_ns) / 1000);
            p->stats.last_ping_rtt_us = rtt;
            if (m->h.on_pong)
                m->h.on_pong(&c, nonce, rtt);
        }
    } else if (strcmp(cmd, "protoconf") == 0) {
        uint64_t nf;
        uint32_t mr;
        if (p->got_protoconf) {
            peer_fail(p, CP2P_R_PROTOCOL, "second protoconf");
            return -1;
        }
        if (cp2p_dec_protoconf(pl, len, &nf, &mr)) {
            peer_fail(p, CP2P_R_MALFORMED, "undecodable protoconf");
            return -1;
        }
        p->got_protoconf = 1;
        p->max_send = mr < CP2P_LEGACY_MAX_RECV ? CP2P_LEGACY_MAX_RECV : mr;
    } else if (strcmp(cmd, "headers") == 0) {
        size_t n = 0;
        uint8_t *hd = malloc((size_t)CP2P_MAX_HEADERS_PER_MSG * 80);
        if (!hd) {
            peer_fail(p, CP2P_R_NOMEM, "cannot allocate a headers buffer");
            return -1;
        }
        if (cp2p_dec_headers(pl, len, hd, CP2P_MAX_HEADERS_PER_MSG, &n)) {
            free(hd);
            peer_fail(p, CP2P_R_MALFORMED, "undecodable headers message (%zu bytes)", len);
            return -1;
        }
        p->stats.headers_in += n;
        if (m->h.on_headers)
            m->h.on_headers(&c, hd, n);
        free(hd);
    } else if (strcmp(cmd, "inv") == 0 || strcmp(cmd, "notfound") == 0) {
        size_t n = 0;
        size_t max = len / CP2P_INV_ENTRY_LEN + 1;
        cp2p_inv *v = malloc(max * sizeof(*v));
        if (!v) {
            peer_fail(p, CP2P_R_NOMEM, "cannot allocate an inv buffer");
            return -1;
        }
        if (cp2p_dec_inv(pl, len, v, max, &n)) {
            free(v);
            peer_fail(p, CP2P_R_MALFORMED, "undecodable %s message", cmd);
            return -1;
        }
        if (cmd[0] == 'i' && m->h.on_inv)
            m->h.on_inv(&c, v, n);
        else if (cmd[0] == 'n' && m->h.on_notfound)
            m->h.on_notfound(&c, v, n);
        free(v);
    } else if (strcmp(cmd, "tx") == 0) {
        uint8_t txid[32];
        cd_sha256d(txid, pl, len);
        p->stats.txs_in++;
        if (m->h.on_tx)
            m->h.on_tx(&c, pl, len, txid);
    } else if (strcmp(cmd, "reject") == 0) {
        cp2p_reject rj;
        if (cp2p_dec_reject(pl, len, &rj)) {
            peer_fail(p, CP2P_R_MALFORMED, "undecodable reject message");
            return -1;
        }
        char hx[65] = "";
        if (rj.has_hash)
            cd_hex_encode_rev(hx, rj.hash, 32);
        cd_log_info("peer %s: reject %s code 0x%02x \"%s\" %s", p->name, rj.message, rj.code,
                    rj.reason, hx);
        if (m->h.on_reject)
            m->h.on_reject(&c, &rj);
        if (!peer_live(p, gen))
            return -1;
        if (rj.has_hash && strcmp(rj.message, "tx") == 0) {
            for (size_t i = 0; i < m->n_bc; i++)
                if (!m->bc[i].done && memcmp(m->bc[i].txid, rj.hash, 32) == 0)
                    bcast_done(m, &m->bc[i], p, CP2P_BCAST_REJECTED, &rj);
        }
    } else if (strcmp(cmd, "addr") == 0) {
        size_t n = 0;
        size_t max = len / 30 + 1;
        cp2p_addr *a = malloc(max * sizeof(*a));
        if (!a) {
            peer_fail(p, CP2P_R_NOMEM, "cannot allocate an addr buffer");
            return -1;
        }
        rc = cp2p_dec_addr(pl, len, a, max, &n);
        if (rc || n > 1000) {
            free(a);
            peer_fail(p, CP2P_R_MALFORMED, "undecodable addr message");
            return -1;
        }
        if (m->h.on_addr)
            m->h.on_addr(&c, a, n);
        free(a);
    }
    /* sendheaders, sendcmpct, feefilter, authch, getheaders, ...: ignored */
    return peer_live(p, gen) ? 0 : -1;
}

/* ---- framing ----------------------------------------------------------------- */

/* Consumes buffered bytes. Returns 1 to keep reading, 0 to stop (peer dead
 * or reading paused). */
static int process_rbuf(cp2p_peer *p)
{
    cp2p_mgr *m = p->mgr;
    uint64_t gen = p->gen;
    for (;;) {
        size_t have = p->rend - p->rstart;
        if (p->mode == RD_BLOCK) {
            while (have > 0 && p->mode == RD_BLOCK) {
                uint8_t *dst;
                size_t avail;
                block_region(p, &dst, &avail);
                if (!peer_live(p, gen))
                    return 0;
                if (avail == 0) {
                    p->read_paused = 1;
                    event_del(p->ev_read);
                    return 0;
                }
                size_t k = CD_MIN(avail, have);
                memcpy(dst, p->rbuf + p->rstart, k);
                p->rstart += k;
                have -= k;
                if (block_commit(p, dst, k))
                    return 0;
            }
            if (p->mode == RD_BLOCK)
                break;
            continue;
        }
        if (have < 4)
            break;
        if (memcmp(p->rbuf + p->rstart, m->opt.net->magic, 4) != 0) {
            uint8_t *q = p->rbuf + p->rstart;
            peer_fail(p, CP2P_R_BAD_MAGIC, "wrong network magic %02x%02x%02x%02x", q[0], q[1], q[2],
                      q[3]);
            return 0;
        }
        int hl = cp2p_msghdr_decode(p->rbuf + p->rstart, have, &p->hdr);
        if (hl == 0)
            break;
        if (hl < 0) {
            peer_fail(p, (cp2p_reason)-hl, "invalid message header (%s)",
                      hl == -(int)CP2P_R_BAD_COMMAND ? "command not printable ASCII"
                                                     : "bad extmsg header");
            return 0;
        }
        uint64_t lim = cp2p_recv_limit(&m->opt, p->hdr.cmd);
        if (p->hdr.len > lim) {
            peer_fail(p, CP2P_R_OVERSIZE, "%s payload of %llu bytes exceeds our limit %llu",
                      p->hdr.cmd, (unsigned long long)p->hdr.len, (unsigned long long)lim);
            return 0;
        }
        if (strcmp(p->hdr.cmd, "block") == 0) {
            if (p->hdr.len < 81) {
                peer_fail(p, CP2P_R_MALFORMED, "block payload of %llu bytes is too short",
                          (unsigned long long)p->hdr.len);
                return 0;
            }
            p->rstart += (size_t)hl;
            if (block_start(p))
                return 0;
            continue;
        }
        if (p->hdr.ext) {
            peer_fail(p, CP2P_R_PROTOCOL, "extmsg carrying '%s' is not supported", p->hdr.cmd);
            return 0;
        }
        size_t need = (size_t)hl + (size_t)p->hdr.len;
        if (have < need) {
            /* make room for the whole message */
            if (p->rstart > 0) {
                memmove(p->rbuf, p->rbuf + p->rstart, have);
                p->rend = have;
                p->rstart = 0;
            }
            if (have == p->rcap) {
                /* grow with the bytes that actually arrived (doubling), not
                 * with the length a peer claims: a hostile 1 GB `tx` header
                 * costs nothing until the bytes come */
                size_t ncap = p->rcap * 2 < need ? p->rcap * 2 : need;
                uint8_t *nb = realloc(p->rbuf, ncap);
                if (!nb) {
                    peer_fail(p, CP2P_R_NOMEM, "cannot allocate %zu bytes for %s", need,
                              p->hdr.cmd);
                    return 0;
                }
                p->rbuf = nb;
                p->rcap = ncap;
            }
            break;
        }
        const uint8_t *pl = p->rbuf + p->rstart + hl;
        uint8_t h[32];
        cd_sha256d(h, pl, (size_t)p->hdr.len);
        if (memcmp(h, p->hdr.checksum, 4) != 0) {
            peer_fail(p, CP2P_R_BAD_CHECKSUM, "%s payload checksum mismatch", p->hdr.cmd);
            return 0;
        }
        p->rstart += need;
        if (dispatch(p, pl, (size_t)p->hdr.len))
            return 0;
    }
    if (p->rstart == p->rend) {
        p->rstart = p->rend = 0;
        if (p->rcap > 4 * RBUF_DEFAULT && p->mode == RD_MSG) {
            uint8_t *nb = realloc(p->rbuf, RBUF_DEFAULT);
            if (nb) {
                p->rbuf = nb;
                p->rcap = RBUF_DEFAULT;
            }
        }
    }
    return 1;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    cp2p_peer *p = arg;
    uint64_t gen = p->gen;
    (void)what;
    p->busy++;
    for (int it = 0;; it++) {
        if (!process_rbuf(p) || !peer_live(p, gen))
            break;
        if (it == READ_BUDGET) {
            /* fairness: let other events run, then continue where we are */
            event_active(p->ev_read, EV_READ, 0);
            break;
        }
        ssize_t n;
        if (p->mode == RD_BLOCK) {
            uint8_t *dst;
            size_t avail;
            block_region(p, &dst, &avail);
            if (!peer_live(p, gen))
                break;
            if (avail == 0) {
                p->read_paused = 1;
                event_del(p->ev_read);
                break;
            }
            n = recv(fd, dst, avail, 0);
            if (n > 0) {
                p->stats.bytes_in += (uint64_t)n;
                p->t_last_rx_ns = cd_now_ns();
                if (block_commit(p, dst, (size_t)n))
                    break;
                continue;
            }
        } else {
            if (p->rstart > 0 && p->rend == p->rcap) {
                memmove(p->rbuf, p->rbuf + p->rstart, p->rend - p->rstart);
                p->rend -= p->rstart;
                p->rstart = 0;
            }
            n = recv(fd, p->rbuf + p->rend, p->rcap - p->rend, 0);
            if (n > 0) {
                p->stats.bytes_in += (uint64_t)n;
                p->t_last_rx_ns = cd_now_ns();
                p->rend += (size_t)n;
                continue;
            }
        }
        if (n == 0) {
            if (p->mode == RD_BLOCK || p->rend > p->rstart)
                peer_fail(p, CP2P_R_TRUNCATED, "connection closed inside a %s message",
                          p->mode == RD_BLOCK ? "block" : "partial");
            else
                peer_fail(p, CP2P_R_EOF, "connection closed by peer");
            break;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            break;
        peer_fail(p, CP2P_R_IO, "recv: %s", strerror(errno));
        break;
    }
    p->busy--;
}

void cp2p_peer_resume_read(cp2p_peer *p)
{
    if (!p || p->fd < 0 || !p->read_paused)
        return;
    p->read_paused = 0;
    /* the pause was ours, not the peer's: restart the silence clocks */
    p->t_last_rx_ns = cd_now_ns();
    if (p->ping_outstanding)
        p->t_ping_sent_ns = p->t_last_rx_ns;
    event_add(p->ev_read, NULL);
    event_active(p->ev_read, EV_READ, 0);
}

/* ---- connection life cycle ------------------------------------------------------- */

static void peer_teardown(cp2p_peer *p)
{
    if (p->ev_read) {
        event_free(p->ev_read);
        p->ev_read = NULL;
    }
    if (p->ev_write) {
        event_free(p->ev_write);
        p->ev_write = NULL;
    }
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    if (p->out)
        evbuffer_drain(p->out, evbuffer_get_length(p->out));
    p->rstart = p->rend = 0;
    p->connecting = 0;
    p->read_paused = 0;
    p->gen++;
}

static void schedule_after_close(cp2p_peer *p)
{
    cp2p_mgr *m = p->mgr;
    if (p->removed || !m->opt.reconnect) {
        p->state = CP2P_PEER_DEAD;
        return;
    }
    uint32_t d = p->backoff_ms ? p->backoff_ms * 2 : m->opt.reconnect_min_ms;
    if (d > m->opt.reconnect_max_ms)
        d = m->opt.reconnect_max_ms;
    p->backoff_ms = d;
    p->t_reconnect_ns = cd_now_ns() + (uint64_t)d * 1000000ull;
    p->state = CP2P_PEER_BACKOFF;
}

static void peer_vfail(cp2p_peer *p, cp2p_reason r, const char *fmt, va_list ap) CD_PRINTF(3, 0);
static void peer_vfail(cp2p_peer *p, cp2p_reason r, const char *fmt, va_list ap)
{
    char detail[512];
    vsnprintf(detail, sizeof(detail), fmt, ap);
    if ((p->fd < 0 && p->state != CP2P_PEER_CONNECTING) || p->failing)
        return;
    p->failing = 1;
    if (r == CP2P_R_CLOSED_LOCAL || r == CP2P_R_EOF)
        cd_log_info("peer %s: disconnected: %s (%s)", p->name, cp2p_reason_str(r), detail);
    else
        cd_log_warn("peer %s: disconnecting: %s (%s)", p->name, cp2p_reason_str(r), detail);
    if (p->bk)
        block_abort(p, r);
    peer_teardown(p);
    p->failing = 0;
    p->state = CP2P_PEER_CLOSING;
    p->last_reason = r;
    p->stats.disconnects++;
    cp2p_ctx c = mkctx(p);
    uint64_t gen = p->gen;
    if (p->mgr->h.on_disconnect)
        p->mgr->h.on_disconnect(&c, r, detail);
    if (p->gen == gen && p->state == CP2P_PEER_CLOSING)
        schedule_after_close(p);
}

static void peer_fail(cp2p_peer *p, cp2p_reason r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    peer_vfail(p, r, fmt, ap);
    va_end(ap);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    cp2p_peer *p = arg;
    (void)what;
    if (p->connecting) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err) {
            peer_fail(p, CP2P_R_CONNECT_FAILED, "connect: %s", strerror(err));
            return;
        }
        p->connecting = 0;
        p->state = CP2P_PEER_VERSION_SENT;
        event_add(p->ev_read, NULL);
        cd_log_debug("peer %s: connected, version sent", p->name);
    }
    while (evbuffer_get_length(p->out) > 0) {
        int n = evbuffer_write(p->out, fd);
        if (n > 0) {
            p->stats.bytes_out += (uint64_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return; /* stays registered */
        peer_fail(p, CP2P_R_IO, "send: %s", n == 0 ? "closed" : strerror(errno));
        return;
    }
    event_del(p->ev_write);
}

static void send_version(cp2p_peer *p, const struct sockaddr *sa)
{
    cp2p_version v;
    uint8_t ip[16] = {0};
    memset(&v, 0, sizeof(v));
    v.version = CP2P_PROTOCOL_VERSION;
    v.services = 0;
    v.timestamp = (int64_t)time(NULL);
    p->our_nonce = rand64();
    v.nonce = p->our_nonce;
    snprintf(v.user_agent, sizeof(v.user_agent), "%s", p->mgr->ua);
    v.start_height = p->mgr->opt.start_height;
    v.relay = p->mgr->opt.relay;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        ip[10] = ip[11] = 0xFF;
        memcpy(ip + 12, &s4->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(ip, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
    cp2p_buf b = {0};
    cp2p_enc_version(&b, &v, ip, p->port);
    queue_msg(p, "version", b.p, b.len);
    cp2p_buf_free(&b);
}

static void peer_connect(cp2p_peer *p)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", p->port);
    p->state = CP2P_PEER_CONNECTING;
    p->t_start_ns = cd_now_ns();
    p->t_last_rx_ns = p->t_start_ns;
    p->got_version = p->got_verack = p->got_protoconf = 0;
    p->ping_outstanding = 0;
    p->max_send = CP2P_LEGACY_MAX_RECV;
    p->mode = RD_MSG;
    int gai = getaddrinfo(p->host, port, &hints, &res);
    if (gai != 0 || !res) {
        cd_log_warn("peer %s: cannot resolve: %s", p->name, gai_strerror(gai));
        p->fd = -1;
        p->last_reason = CP2P_R_CONNECT_FAILED;
        cp2p_ctx c = mkctx(p);
        if (p->mgr->h.on_disconnect)
            p->mgr->h.on_disconnect(&c, CP2P_R_CONNECT_FAILED, "cannot resolve host");
        if (p->state == CP2P_PEER_CONNECTING)
            schedule_after_close(p);
        return;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        p->fd = -1;
        cd_log_warn("peer %s: socket: %s", p->name, strerror(errno));
        schedule_after_close(p);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    p->fd = fd;
    p->gen++;
    p->ev_read = event_new(p->mgr->base, fd, EV_READ | EV_PERSIST, on_read, p);
    p->ev_write = event_new(p->mgr->base, fd, EV_WRITE | EV_PERSIST, on_write, p);
    p->connecting = 1;
    send_version(p, res->ai_addr);
    int rc = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc < 0 && errno != EINPROGRESS) {
        peer_fail(p, CP2P_R_CONNECT_FAILED, "connect: %s", strerror(errno));
        return;
    }
    event_add(p->ev_write, NULL);
}

void cp2p_peer_close(cp2p_peer *p)
{
    if (!p)
        return;
    if (p->fd >= 0)
        peer_fail(p, CP2P_R_CLOSED_LOCAL, "closed by application");
}

void cp2p_peer_remove(cp2p_peer *p)
{
    if (!p)
        return;
    p->removed = 1;
    if (p->fd >= 0)
        peer_fail(p, CP2P_R_CLOSED_LOCAL, "removed by application");
    p->state = CP2P_PEER_DEAD;
}

/* ---- manager ---------------------------------------------------------------------- */

static void peer_free(cp2p_peer *p)
{
    peer_teardown(p);
    free(p->bbuf);
    free(p->boffs);
    free(p->rbuf);
    if (p->out)
        evbuffer_free(p->out);
    free(p);
}

static void tick_peer(cp2p_peer *p, uint64_t now)
{
    const cp2p_options *o = &p->mgr->opt;
    switch (p->state) {
    case CP2P_PEER_CONNECTING:
    case CP2P_PEER_VERSION_SENT:
        if (now - p->t_start_ns > (uint64_t)o->handshake_timeout_ms * 1000000ull)
            peer_fail(p, CP2P_R_HANDSHAKE_TIMEOUT, "no version/verack within %u ms",
                      o->handshake_timeout_ms);
        return;
    case CP2P_PEER_READY:
        break;
    case CP2P_PEER_BACKOFF:
        if (now >= p->t_reconnect_ns)
            peer_connect(p);
        return;
    default:
        return;
    }
    uint64_t silent = now - p->t_last_rx_ns;
    int mid_msg = p->mode == RD_BLOCK || p->rend > p->rstart;
    if (mid_msg && !p->read_paused && silent > (uint64_t)o->stall_timeout_ms * 1000000ull) {
        peer_fail(p, CP2P_R_STALLED, "no data for %llu ms inside a %s message",
                  (unsigned long long)(silent / 1000000), p->hdr.cmd);
        return;
    }
    if (p->read_paused)
        return; /* back-pressure: we are not reading, so silence means nothing */
    if (p->ping_outstanding &&
        now - p->t_ping_sent_ns > (uint64_t)o->ping_timeout_ms * 1000000ull &&
        silent > (uint64_t)o->ping_timeout_ms * 1000000ull) {
        peer_fail(p, CP2P_R_PING_TIMEOUT, "no pong within %u ms", o->ping_timeout_ms);
        return;
    }
    if (o->ping_interval_ms && !p->ping_outstanding && now >= p->t_next_ping_ns) {
        p->t_next_ping_ns = now + (uint64_t)o->ping_interval_ms * 1000000ull;
        (void)cp2p_peer_ping(p);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    cp2p_mgr *m = arg;
    uint64_t now = cd_now_ns();
    (void)fd;
    (void)what;
    for (size_t i = 0; i < m->n_peers; i++)
        tick_peer(m->peers[i], now);
    /* broadcasts: silence until the deadline = accepted */
    for (size_t i = 0; i < m->n_bc; i++)
        if (!m->bc[i].done && now >= m->bc[i].deadline_ns) {
            cp2p_peer *p = m->bc[i].peer;
            bcast_done(m, &m->bc[i], p, CP2P_BCAST_ACCEPTED, NULL);
        }
    size_t k = 0;
    for (size_t i = 0; i < m->n_bc; i++)
        if (!m->bc[i].done)
            m->bc[k++] = m->bc[i];
    m->n_bc = k;
    /* reap dead peers */
    k = 0;
    for (size_t i = 0; i < m->n_peers; i++) {
        cp2p_peer *p = m->peers[i];
        if (p->state == CP2P_PEER_DEAD && !p->busy) {
            for (size_t j = 0; j < m->n_bc; j++)
                if (m->bc[j].peer == p)
                    m->bc[j].peer = NULL;
            peer_free(p);
        } else {
            m->peers[k++] = p;
        }
    }
    m->n_peers = k;
    if (m->rr > m->n_peers)
        m->rr = 0;
}

static int ua_banned(const char *ua)
{
    return strcasestr(ua, "abc") || strcasestr(ua, "cash") || strcasestr(ua, "bch");
}

cp2p_mgr *cp2p_mgr_new(struct event_base *base, const cp2p_options *opt, const cp2p_handlers *h,
                       const cp2p_block_sink *sink, void *user)
{
    if (!base || !opt || !opt->net) {
        cd_log_error("cp2p_mgr_new: base, options and network are required");
        return NULL;
    }
    const char *ua = opt->user_agent ? opt->user_agent : "/conduit-p2p:" CD_VERSION "/";
    if (strlen(ua) > 256 || ua_banned(ua)) {
        cd_log_error("cp2p_mgr_new: user agent \"%s\" is too long or contains abc/cash/bch "
                     "(banned by BSV nodes)",
                     ua);
        return NULL;
    }
    if (opt->max_recv_payload < CP2P_LEGACY_MAX_RECV || opt->chunk_threshold < 4096 ||
        opt->tick_ms == 0) {
        cd_log_error("cp2p_mgr_new: max_recv_payload must be >= 1 MiB, chunk_threshold >= "
                     "4096 and tick_ms > 0");
        return NULL;
    }
    if (sink && (!sink->begin || !sink->space || !sink->data || !sink->end)) {
        cd_log_error("cp2p_mgr_new: a block sink needs all four callbacks");
        return NULL;
    }
    cp2p_mgr *m = cd_xcalloc(1, sizeof(*m));
    m->base = base;
    m->opt = *opt;
    m->ua = cd_xstrdup(ua);
    m->opt.user_agent = m->ua;
    if (h)
        m->h = *h;
    if (sink) {
        m->sink = *sink;
        m->have_sink = 1;
    }
    m->user = user;
    m->tick = event_new(base, -1, EV_PERSIST, on_tick, m);
    struct timeval tv = {(time_t)(opt->tick_ms / 1000), (suseconds_t)(opt->tick_ms % 1000) * 1000};
    event_add(m->tick, &tv);
    return m;
}

void cp2p_mgr_free(cp2p_mgr *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_peers; i++)
        peer_free(m->peers[i]);
    free(m->peers);
    free(m->bc);
    if (m->tick)
        event_free(m->tick);
    free(m->ua);
    free(m);
}

static int parse_hostport(const char *s, uint16_t defport, char *host, size_t hostsz,
                          uint16_t *port)
{
    const char *colon;
    size_t hl;
    if (!s || !*s)
        return -1;
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e)
            return -1;
        hl = (size_t)(e - s - 1);
        if (hl == 0 || hl >= hostsz)
            return -1;
        memcpy(host, s + 1, hl);
        host[hl] = 0;
        colon = e[1] == ':' ? e + 1 : NULL;
        if (!colon && e[1])
            return -1;
    } else {
        colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon)
            colon = NULL; /* bare IPv6 without brackets */
        hl = colon ? (size_t)(colon - s) : strlen(s);
        if (hl == 0 || hl >= hostsz)
            return -1;
        memcpy(host, s, hl);
        host[hl] = 0;
    }
    if (!colon) {
        *port = defport;
        return 0;
    }
    char *end;
    unsigned long v = strtoul(colon + 1, &end, 10);
    if (*end || v == 0 || v > 65535 || end == colon + 1)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

int cp2p_mgr_add_peer(cp2p_mgr *m, const char *hostport, cp2p_peer **out)
{
    char host[256];
    uint16_t port;
    if (!m || parse_hostport(hostport, m->opt.net->default_port, host, sizeof(host), &port))
        return CP2P_EINVAL;
    cp2p_peer *p = cd_xcalloc(1, sizeof(*p));
    p->mgr = m;
    p->fd = -1;
    snprintf(p->host, sizeof(p->host), "%s", host);
    p->port = port;
    if (strchr(host, ':'))
        snprintf(p->name, sizeof(p->name), "[%s]:%u", host, port);
    else
        snprintf(p->name, sizeof(p->name), "%s:%u", host, port);
    p->out = evbuffer_new();
    p->rbuf = cd_xmalloc(RBUF_DEFAULT);
    p->rcap = RBUF_DEFAULT;
    p->max_send = CP2P_LEGACY_MAX_RECV;
    p->stats.last_ping_rtt_us = -1;
    p->state = CP2P_PEER_IDLE;
    if (m->n_peers == m->cap_peers) {
        m->cap_peers = m->cap_peers ? m->cap_peers * 2 : 8;
        m->peers = cd_xrealloc(m->peers, m->cap_peers * sizeof(*m->peers));
    }
    m->peers[m->n_peers++] = p;
    if (out)
        *out = p;
    peer_connect(p);
    return CP2P_OK;
}

int cp2p_mgr_broadcast_tx(cp2p_mgr *m, cp2p_peer *peer, const uint8_t *raw, size_t len,
                          uint8_t txid_out[32])
{
    uint8_t txid[32];
    int sent = 0;
    if (!m || !raw || len == 0)
        return CP2P_EINVAL;
    cd_sha256d(txid, raw, len);
    if (peer) {
        int rc = cp2p_peer_send_tx(peer, raw, len);
        if (rc == CP2P_ENOTREADY)
            return CP2P_ENOPEER;
        if (rc)
            return rc;
        sent = 1;
    } else {
        for (size_t i = 0; i < m->n_peers; i++)
            if (m->peers[i]->state == CP2P_PEER_READY &&
                cp2p_peer_send_tx(m->peers[i], raw, len) == CP2P_OK)
                sent++;
    }
    if (!sent)
        return CP2P_ENOPEER;
    if (m->n_bc == m->cap_bc) {
        m->cap_bc = m->cap_bc ? m->cap_bc * 2 : 8;
        m->bc = cd_xrealloc(m->bc, m->cap_bc * sizeof(*m->bc));
    }
    bcast *b = &m->bc[m->n_bc++];
    memset(b, 0, sizeof(*b));
    memcpy(b->txid, txid, 32);
    b->peer = peer;
    b->deadline_ns = cd_now_ns() + (uint64_t)m->opt.broadcast_wait_ms * 1000000ull;
    if (txid_out)
        memcpy(txid_out, txid, 32);
    return CP2P_OK;
}
