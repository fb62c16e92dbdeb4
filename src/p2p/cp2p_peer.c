/*
 * cp2p_peer.c - the peer state machine of libconduit-p2p: reading the socket,
 * framing, the handshake and message dispatch, block reception.
 *
 * Each peer is an explicit state machine (conduit_p2p.h: IDLE, CONNECTING,
 * VERSION_SENT, READY, CLOSING, BACKOFF, DEAD) driven by three libevent
 * events: a read event on the socket (here), a write event that drains an
 * evbuffer (cp2p_conn.c), and the manager's periodic tick (timeouts, pings,
 * reconnects, broadcast tracking, freeing dead peers: cp2p_mgr.c).
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
 *   Callbacks may close or remove the peer they were called for: see
 *   cp2p_int.h.
 */
#include "cp2p_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <event2/event.h>

#include "btc_varint.h"
#include "cd_util.h"

#define READ_BUDGET 64 /* recv calls per read event before yielding */

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
void cp2p_block_abort(cp2p_peer *p, cp2p_reason why)
{
    cp2p_ctx c = mkctx(p);
    enum blk_kind k = p->bk;
    uint8_t hash[32];
    memcpy(hash, p->bgot >= 80 ? p->bhash : (const uint8_t[32]){0}, 32);
    block_reset(p);
    if (k == BLK_SINK && p->mgr->sink.end)
        p->mgr->sink.end(&c, 0, why, hash);
    else if (k == BLK_CHUNK && peer_app(p) && p->mgr->h.on_block_abort)
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
    cp2p_budget_block_start(p);
    if (m->have_sink && m->sink.begin && peer_app(p)) {
        int rc = m->sink.begin(&c, p->blen, p->hdr.ext);
        if (!peer_live(p, gen))
            return -1;
        if (rc < 0) {
            cp2p_peer_fail(p, CP2P_R_SINK, "block sink refused a %llu-byte block",
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
            cp2p_peer_fail(p, CP2P_R_NOMEM, "cannot allocate %llu bytes for a block",
                           (unsigned long long)p->blen);
            return -1;
        }
        p->bcap = (size_t)p->blen;
        p->bk = BLK_WHOLE;
    } else {
        p->bcap = m->opt.chunk_threshold;
        p->bbuf = malloc(p->bcap);
        if (!p->bbuf) {
            cp2p_peer_fail(p, CP2P_R_NOMEM, "cannot allocate a %zu-byte chunk buffer", p->bcap);
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
            cp2p_peer_fail(p, CP2P_R_MALFORMED, "block tx count is not a valid CompactSize");
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
            cp2p_peer_fail(p, CP2P_R_NOMEM, "cannot grow the tx offset array");
            return -1;
        }
        size_t room = p->boffs_cap - n_off, k = 0;
        uint64_t pos0 = p->bpp.pos;
        int rc = btc_preproc_feed(&p->bpp, p->bbuf + (size_t)(pos0 - p->bbase), pos0,
                                  (size_t)(end - pos0), p->boffs + n_off, room, &k);
        if (rc < 0) {
            cp2p_peer_fail(p, CP2P_R_MALFORMED, "malformed transaction at block offset %llu",
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
            cp2p_peer_fail(p, CP2P_R_MALFORMED,
                           "block ends inside a transaction or declares %llu txs but holds %llu",
                           (unsigned long long)p->btx_count, (unsigned long long)p->btx_seen);
            return -1;
        }
        if (!checksum_ok(p)) {
            cp2p_peer_fail(p, CP2P_R_BAD_CHECKSUM, "block payload checksum mismatch");
            return -1;
        }
    } else if (n_off == 0) {
        /* one transaction larger than the buffer: grow to hold it, but never
         * beyond the largest transaction we accept */
        size_t ncap = p->bcap * 2;
        if (ncap - p->mgr->opt.chunk_threshold > p->mgr->opt.max_tx_payload + 1) {
            cp2p_peer_fail(p, CP2P_R_MALFORMED,
                           "transaction at block offset %llu is larger than %llu bytes",
                           (unsigned long long)(p->bbase + p->bscan),
                           (unsigned long long)p->mgr->opt.max_tx_payload);
            return -1;
        }
        uint8_t *nb = realloc(p->bbuf, ncap);
        if (!nb) {
            cp2p_peer_fail(p, CP2P_R_NOMEM, "cannot grow the chunk buffer to %zu bytes", ncap);
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
        cp2p_peer_fail(p, CP2P_R_MALFORMED, "block holds more txs than its count %llu",
                       (unsigned long long)p->btx_count);
        return -1;
    }
    cp2p_ctx c = mkctx(p);
    if (peer_app(p) && p->mgr->h.on_block_chunk)
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
            cp2p_peer_fail(p, CP2P_R_BAD_CHECKSUM, "block payload checksum mismatch");
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
            cp2p_peer_fail(p, CP2P_R_BAD_CHECKSUM, "block payload checksum mismatch");
            return -1;
        }
        uint8_t *buf = p->bbuf;
        p->bbuf = NULL;
        block_reset(p);
        if (peer_app(p) && p->mgr->h.on_block)
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
    (void)cp2p_queue_msg(p, "verack", NULL, 0); /* a refusal fails the peer later */
    cp2p_enc_protoconf(&b, p->mgr->opt.max_recv_payload, NULL);
    (void)cp2p_queue_msg(p, "protoconf", b.p, b.len);
    cp2p_buf_free(&b);
    if (p->mgr->opt.send_sendheaders && peer_app(p))
        (void)cp2p_queue_msg(p, "sendheaders", NULL, 0);
}

static void maybe_ready(cp2p_peer *p)
{
    if (p->state != CP2P_PEER_VERSION_SENT || !p->got_version || !p->got_verack)
        return;
    p->state = CP2P_PEER_READY;
    p->stats.connects++;
    p->t_next_ping_ns = cp2p_now_ns() + (uint64_t)p->mgr->opt.ping_interval_ms * NS_PER_MS;
    cp2p_penalty_ready(p);
    /* once per connection, unless it is one more in a failing streak (the
     * streak was logged once; "stable again" ends it) */
    CP2P_LOG(p->mgr, p->streak || !peer_app(p) ? CP2P_LOG_DEBUG : CP2P_LOG_INFO,
             "peer %s: ready (version %d, ua \"%s\", height %d)", p->name, p->their.version,
             p->their.user_agent, p->their.start_height);
    cp2p_ctx c = mkctx(p);
    if (!peer_app(p)) {
        cp2p_bcast_on_ready(p);
        return;
    }
    if (p->mgr->h.on_ready)
        p->mgr->h.on_ready(&c, &p->their);
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
    LOG_DEBUG(m, "peer %s: recv %s (%zu bytes)", p->name, cmd, len);
    if (cp2p_budget_msg(p, cmd))
        return -1;
    if (peer_app(p) && m->h.on_message) {
        m->h.on_message(&c, cmd, pl, len);
        if (!peer_live(p, gen))
            return -1;
    }

    if (strcmp(cmd, "version") == 0) {
        if (p->got_version) {
            cp2p_peer_fail(p, CP2P_R_PROTOCOL, "duplicate version message");
            return -1;
        }
        if (cp2p_dec_version(pl, len, &p->their)) {
            cp2p_peer_fail(p, CP2P_R_MALFORMED, "undecodable version message");
            return -1;
        }
        if (p->their.version < 31800) {
            cp2p_peer_fail(p, CP2P_R_PROTOCOL, "obsolete protocol version %d", p->their.version);
            return -1;
        }
        if (p->their.nonce == p->our_nonce) {
            cp2p_peer_fail(p, CP2P_R_SELF, "connected to ourselves");
            return -1;
        }
        p->got_version = 1;
        send_handshake_reply(p);
        maybe_ready(p);
    } else if (strcmp(cmd, "verack") == 0) {
        p->got_verack = 1;
        maybe_ready(p);
    } else if (strcmp(cmd, "ping") == 0) {
        (void)cp2p_queue_msg(p, "pong", pl, len < 8 ? len : 8); /* over budget: failed later */
    } else if (strcmp(cmd, "pong") == 0) {
        uint64_t nonce;
        if (cp2p_dec_u64(pl, len, &nonce) == 0 && p->ping_outstanding && nonce == p->ping_nonce) {
            p->ping_outstanding = 0;
            int64_t rtt = (int64_t)((cp2p_now_ns() - p->t_ping_sent_ns) / 1000);
            p->stats.last_ping_rtt_us = rtt;
            if (peer_app(p) && m->h.on_pong)
                m->h.on_pong(&c, nonce, rtt);
        }
    } else if (strcmp(cmd, "protoconf") == 0) {
        uint64_t nf;
        uint32_t mr;
        if (p->got_protoconf) {
            cp2p_peer_fail(p, CP2P_R_PROTOCOL, "second protoconf");
            return -1;
        }
        if (cp2p_dec_protoconf(pl, len, &nf, &mr)) {
            cp2p_peer_fail(p, CP2P_R_MALFORMED, "undecodable protoconf");
            return -1;
        }
        p->got_protoconf = 1;
        p->max_send = mr < CP2P_LEGACY_MAX_RECV ? CP2P_LEGACY_MAX_RECV : mr;
    } else if (strcmp(cmd, "headers") == 0) {
        size_t n = 0;
        uint8_t *hd = malloc((size_t)CP2P_MAX_HEADERS_PER_MSG * 80);
        if (!hd) {
            cp2p_peer_fail(p, CP2P_R_NOMEM, "cannot allocate a headers buffer");
            return -1;
        }
        if (cp2p_dec_headers(pl, len, hd, CP2P_MAX_HEADERS_PER_MSG, &n)) {
            free(hd);
            cp2p_peer_fail(p, CP2P_R_MALFORMED, "undecodable headers message (%zu bytes)", len);
            return -1;
        }
        p->stats.headers_in += n;
        if (peer_app(p) && m->h.on_headers)
            m->h.on_headers(&c, hd, n);
        free(hd);
    } else if (strcmp(cmd, "inv") == 0 || strcmp(cmd, "notfound") == 0 ||
               strcmp(cmd, "getdata") == 0) {
        size_t n = 0;
        size_t max = len / CP2P_INV_ENTRY_LEN + 1;
        cp2p_inv *v = malloc(max * sizeof(*v));
        if (!v) {
            cp2p_peer_fail(p, CP2P_R_NOMEM, "cannot allocate an inv buffer");
            return -1;
        }
        if (cp2p_dec_inv(pl, len, v, max, &n)) {
            free(v);
            cp2p_peer_fail(p, CP2P_R_MALFORMED, "undecodable %s message", cmd);
            return -1;
        }
        if (cmd[0] == 'i' && cp2p_budget_inv(p, n)) {
            free(v);
            return -1;
        }
        if (cmd[0] == 'i') {
            if (m->n_bc)
                cp2p_bcast_on_inv(p, v, n);
            if (peer_live(p, gen) && peer_app(p) && m->h.on_inv)
                m->h.on_inv(&c, v, n);
        } else if (cmd[0] == 'n' && peer_app(p) && m->h.on_notfound) {
            m->h.on_notfound(&c, v, n);
        } else if (cmd[0] == 'g' && m->n_bc) {
            rc = cp2p_bcast_on_getdata(p, v, n);
        }
        free(v);
    } else if (strcmp(cmd, "tx") == 0) {
        uint8_t txid[32];
        cd_sha256d(txid, pl, len);
        p->stats.txs_in++;
        if (peer_app(p) && m->h.on_tx)
            m->h.on_tx(&c, pl, len, txid);
    } else if (strcmp(cmd, "reject") == 0) {
        cp2p_reject rj;
        if (cp2p_dec_reject(pl, len, &rj)) {
            cp2p_peer_fail(p, CP2P_R_MALFORMED, "undecodable reject message");
            return -1;
        }
        char hx[65] = "";
        if (rj.has_hash)
            cd_hex_encode_rev(hx, rj.hash, 32);
        LOG_INFO(m, "peer %s: reject %s code 0x%02x \"%s\" %s", p->name, rj.message, rj.code,
                 rj.reason, hx);
        if (m->n_bc)
            cp2p_bcast_on_reject(p, &rj);
        if (peer_live(p, gen) && peer_app(p) && m->h.on_reject)
            m->h.on_reject(&c, &rj);
    } else if (strcmp(cmd, "addr") == 0) {
        size_t n = 0;
        size_t max = len / 30 + 1;
        cp2p_addr *a = malloc(max * sizeof(*a));
        if (!a) {
            cp2p_peer_fail(p, CP2P_R_NOMEM, "cannot allocate an addr buffer");
            return -1;
        }
        rc = cp2p_dec_addr(pl, len, a, max, &n);
        if (rc || n > 1000) {
            free(a);
            cp2p_peer_fail(p, CP2P_R_MALFORMED, "undecodable addr message");
            return -1;
        }
        if (peer_app(p) && m->h.on_addr)
            m->h.on_addr(&c, a, n);
        free(a);
    }
    /* sendheaders, sendcmpct, feefilter, authch, getheaders, ...: ignored */
    (void)rc;
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
                    cp2p_budget_block_pause(p);
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
        if (memcmp(p->rbuf + p->rstart, cp2p_btcnet(m->opt.net)->magic, 4) != 0) {
            uint8_t *q = p->rbuf + p->rstart;
            cp2p_peer_fail(p, CP2P_R_BAD_MAGIC, "wrong network magic %02x%02x%02x%02x", q[0], q[1],
                           q[2], q[3]);
            return 0;
        }
        int hl = cp2p_msghdr_decode(p->rbuf + p->rstart, have, &p->hdr);
        if (hl == 0)
            break;
        if (hl < 0) {
            cp2p_peer_fail(p, (cp2p_reason)-hl, "invalid message header (%s)",
                           hl == -(int)CP2P_R_BAD_COMMAND ? "command not printable ASCII"
                                                          : "bad extmsg header");
            return 0;
        }
        uint64_t lim = cp2p_recv_limit(&m->opt, p->hdr.cmd);
        if (p->hdr.len > lim) {
            cp2p_peer_fail(p, CP2P_R_OVERSIZE, "%s payload of %llu bytes exceeds our limit %llu",
                           p->hdr.cmd, (unsigned long long)p->hdr.len, (unsigned long long)lim);
            return 0;
        }
        if (strcmp(p->hdr.cmd, "block") == 0) {
            if (p->hdr.len < 81) {
                cp2p_peer_fail(p, CP2P_R_MALFORMED, "block payload of %llu bytes is too short",
                               (unsigned long long)p->hdr.len);
                return 0;
            }
            p->rstart += (size_t)hl;
            p->t_msg_start_ns = 0;
            if (block_start(p))
                return 0;
            continue;
        }
        if (p->hdr.ext) {
            cp2p_peer_fail(p, CP2P_R_PROTOCOL, "extmsg carrying '%s' is not supported", p->hdr.cmd);
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
                    cp2p_peer_fail(p, CP2P_R_NOMEM, "cannot allocate %zu bytes for %s", need,
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
            cp2p_peer_fail(p, CP2P_R_BAD_CHECKSUM, "%s payload checksum mismatch", p->hdr.cmd);
            return 0;
        }
        p->rstart += need;
        p->t_msg_start_ns = 0;
        if (dispatch(p, pl, (size_t)p->hdr.len))
            return 0;
    }
    if (p->mode == RD_MSG && p->rend > p->rstart && !p->t_msg_start_ns)
        p->t_msg_start_ns = p->t_last_rx_ns; /* a message has begun: its clock runs */
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

void cp2p_on_read(evutil_socket_t fd, short what, void *arg)
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
                cp2p_budget_block_pause(p);
                event_del(p->ev_read);
                break;
            }
            n = recv(fd, dst, avail, 0);
            if (n > 0) {
                p->stats.bytes_in += (uint64_t)n;
                p->t_last_rx_ns = cp2p_now_ns();
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
                p->t_last_rx_ns = cp2p_now_ns();
                p->rend += (size_t)n;
                continue;
            }
        }
        if (n == 0) {
            if (p->mode == RD_BLOCK || p->rend > p->rstart)
                cp2p_peer_fail(p, CP2P_R_TRUNCATED, "connection closed inside a %s message",
                               p->mode == RD_BLOCK ? "block" : "partial");
            else
                cp2p_peer_fail(p, CP2P_R_EOF, "connection closed by peer");
            break;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            break;
        cp2p_peer_fail(p, CP2P_R_IO, "recv: %s", strerror(errno));
        break;
    }
    p->busy--;
}

void cp2p_peer_resume_read(cp2p_peer *p)
{
    if (!p || p->fd < 0 || !p->read_paused)
        return;
    p->read_paused = 0;
    cp2p_budget_block_resume(p);
    /* the pause was ours, not the peer's: restart the silence clocks */
    p->t_last_rx_ns = cp2p_now_ns();
    if (p->ping_outstanding)
        p->t_ping_sent_ns = p->t_last_rx_ns;
    event_add(p->ev_read, NULL);
    event_active(p->ev_read, EV_READ, 0);
}
