/*
 * test_peer.c - the libconduit-p2p connection state machine and framer over
 * a real loopback TCP socket. The test plays the node: it accepts the
 * library's connection, checks what the library sent, and feeds it messages
 * cut at arbitrary points, corrupted, truncated or never finished. Each
 * hostile input must end in its specific cp2p_reason; good input must come
 * out of the callbacks unchanged (blocks byte-identical, chunk tx offsets
 * equal to ../shared/data/mainnet/block413567.tx-offsets).
 */
#include "cd_test.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cd_hash.h"
#include "cd_util.h"
#include "btc_net.h"
#include "conduit_p2p.h"
#include "cp2p_codec.h"
#include "cd_test_p2p.h"

/* ---- the fake node ---- */

typedef struct node {
    int lfd, fd;
    uint16_t port;
    cp2p_buf pending; /* bytes to send */
    size_t sent;
    size_t max_write; /* split size (1 = byte by byte) */
    unsigned seed;
    cp2p_buf got; /* bytes received from the client */
} node;

typedef struct world {
    struct event_base *base;
    cp2p_mgr *mgr;
    cp2p_peer *peer;
    node n;
    const btc_net *net;
    /* observations */
    cd_test_p2p_seen seen;
    int headers_n, headers_msgs;
    int inv_n;
    int pongs;
    cp2p_buf block; /* whole block or concatenated chunks */
    int blocks;
    int chunks, chunk_last;
    uint64_t *offs;
    size_t n_offs;
    int aborts;
    cp2p_reason abort_reason;
    int rejects;
    /* sink */
    uint8_t ring[8192];
    size_t ring_used;
    int sink_pauses, sink_ends, sink_ok;
    uint8_t sink_hash[32];
} world;

static world W;

static void node_listen(node *n)
{
    n->lfd = cd_test_p2p_listen(&n->port);
    n->fd = -1;
    n->max_write = 1 << 20;
    n->seed = 1;
}

static void node_accept(node *n)
{
    n->fd = accept(n->lfd, NULL, NULL);
    ck_assert_int_ge(n->fd, 0);
    fcntl(n->fd, F_SETFL, fcntl(n->fd, F_GETFL) | O_NONBLOCK);
}

static void node_send(node *n, const char *cmd, const uint8_t *p, size_t len)
{
    cd_test_p2p_frame(&n->pending, W.net->magic, cmd, p, len);
}

/* One step: write a piece of pending bytes, read what the client sent, run
 * the client's loop once. */
static void step(void)
{
    node *n = &W.n;
    if (n->fd >= 0 && n->sent < n->pending.len) {
        size_t k = n->pending.len - n->sent;
        size_t lim = n->max_write > 1 ? 1 + (size_t)(rand_r(&n->seed) % n->max_write) : 1;
        if (k > lim)
            k = lim;
        ssize_t w = send(n->fd, n->pending.p + n->sent, k, MSG_NOSIGNAL);
        if (w > 0)
            n->sent += (size_t)w;
    }
    if (n->fd >= 0) {
        uint8_t buf[65536];
        ssize_t r = recv(n->fd, buf, sizeof(buf), 0);
        if (r > 0)
            cp2p_buf_put(&n->got, buf, (size_t)r);
    }
    event_base_loop(W.base, EVLOOP_NONBLOCK);
}

/* Pumps until *flag becomes non-zero; fails the test after 20 s. */
static void pump_until(const int *flag)
{
    double end = cd_now_s() + 20;
    while (!*flag) {
        step();
        if (cd_now_s() > end)
            ck_abort_msg("timed out waiting for the client");
        if (W.n.sent >= W.n.pending.len)
            usleep(200);
    }
}

static void pump_sent(void)
{
    double end = cd_now_s() + 20;
    while (W.n.sent < W.n.pending.len) {
        step();
        ck_assert_msg(cd_now_s() < end, "timed out sending");
    }
    for (int i = 0; i < 50; i++) {
        step();
        usleep(100);
    }
}

/* Parses the messages the client sent so far into a list of commands. */
static int client_cmds(char cmds[][13], int max)
{
    size_t pos = 0;
    int k = 0;
    while (k < max && W.n.got.len - pos >= 24) {
        cp2p_msghdr h;
        ck_assert_int_eq(cp2p_msghdr_decode(W.n.got.p + pos, W.n.got.len - pos, &h), 24);
        if (W.n.got.len - pos < 24 + h.len)
            break;
        strcpy(cmds[k++], h.cmd);
        pos += 24 + h.len;
    }
    return k;
}

/* ---- client callbacks ---- */

static void c_ready(const cp2p_ctx *c, const cp2p_version *v)
{
    (void)v;
    ck_assert_ptr_eq(c->peer, W.peer);
    ck_assert_ptr_eq(c->mgr, W.mgr);
    ck_assert_ptr_eq(c->user, &W);
    W.seen.ready++;
}

static void c_disc(const cp2p_ctx *c, cp2p_reason r, const char *d)
{
    (void)c;
    cd_test_p2p_saw_disconnect(&W.seen, r, d);
}

static void c_headers(const cp2p_ctx *c, const uint8_t *h, size_t n)
{
    (void)c;
    (void)h;
    W.headers_n += (int)n;
    W.headers_msgs++;
}

static void c_inv(const cp2p_ctx *c, const cp2p_inv *v, size_t n)
{
    (void)c;
    (void)v;
    W.inv_n += (int)n;
}

static void c_pong(const cp2p_ctx *c, uint64_t nonce, int64_t rtt)
{
    (void)c;
    (void)nonce;
    (void)rtt;
    W.pongs++;
}

static void c_block(const cp2p_ctx *c, const uint8_t *raw, size_t len, const uint8_t hash[32])
{
    uint8_t h[32];
    (void)c;
    cd_sha256d(h, raw, 80);
    ck_assert_mem_eq(h, hash, 32);
    cp2p_buf_put(&W.block, raw, len);
    W.blocks++;
}

static void c_chunk(const cp2p_ctx *c, const cp2p_block_chunk *ch)
{
    (void)c;
    ck_assert_uint_eq(ch->chunk_index, (unsigned)W.chunks);
    ck_assert_uint_eq(ch->block_offset, W.block.len);
    ck_assert_uint_eq(ch->first_tx_index, W.n_offs);
    cp2p_buf_put(&W.block, ch->data, ch->len);
    W.offs = realloc(W.offs, (W.n_offs + ch->n_tx) * sizeof(uint64_t));
    memcpy(W.offs + W.n_offs, ch->tx_offsets, ch->n_tx * sizeof(uint64_t));
    W.n_offs += ch->n_tx;
    W.chunks++;
    if (ch->last)
        W.chunk_last = 1;
}

static void c_abort(const cp2p_ctx *c, const uint8_t h[32], cp2p_reason why)
{
    (void)c;
    (void)h;
    W.aborts++;
    W.abort_reason = why;
}

static void c_tx(const cp2p_ctx *c, const uint8_t *raw, size_t len, const uint8_t txid[32])
{
    uint8_t h[32];
    (void)c;
    cd_sha256d(h, raw, len);
    ck_assert_mem_eq(h, txid, 32);
    cp2p_buf_put(&W.block, raw, len);
    W.blocks++;
}

static void c_reject(const cp2p_ctx *c, const cp2p_reject *r)
{
    (void)c;
    (void)r;
    W.rejects++;
}

static int s_begin(const cp2p_ctx *c, uint64_t len, int ext)
{
    (void)c;
    (void)len;
    (void)ext;
    W.ring_used = 0;
    return 1;
}

static void s_space(const cp2p_ctx *c, uint8_t **buf, size_t *avail)
{
    (void)c;
    if (W.ring_used == sizeof(W.ring)) {
        W.sink_pauses++;
        *buf = NULL;
        *avail = 0;
        return;
    }
    *buf = W.ring + W.ring_used;
    *avail = sizeof(W.ring) - W.ring_used;
}

static void s_data(const cp2p_ctx *c, size_t n)
{
    (void)c;
    cp2p_buf_put(&W.block, W.ring + W.ring_used, n);
    W.ring_used += n;
}

static void s_end(const cp2p_ctx *c, int ok, cp2p_reason why, const uint8_t hash[32])
{
    (void)c;
    (void)why;
    W.sink_ends++;
    W.sink_ok = ok;
    memcpy(W.sink_hash, hash, 32);
}

/* ---- setup ---- */

static void world_start(cp2p_options *opt_over, int with_sink)
{
    memset(&W, 0, sizeof(W));
    W.net = btc_net_get(BTC_NET_REGTEST);
    W.base = event_base_new();
    node_listen(&W.n);
    cp2p_options o = cd_test_p2p_options();
    if (opt_over)
        o = *opt_over;
    cp2p_handlers h = {
        .on_ready = c_ready,
        .on_disconnect = c_disc,
        .on_headers = c_headers,
        .on_inv = c_inv,
        .on_pong = c_pong,
        .on_block = c_block,
        .on_block_chunk = c_chunk,
        .on_block_abort = c_abort,
        .on_reject = c_reject,
        .on_tx = c_tx,
    };
    cp2p_block_sink sk = {s_begin, s_space, s_data, s_end};
    W.mgr = cp2p_mgr_new(W.base, &o, &h, with_sink ? &sk : NULL, &W);
    ck_assert_ptr_nonnull(W.mgr);
    cd_test_p2p_add_peer(W.mgr, W.n.port, NULL, &W.peer);
    node_accept(&W.n);
}

static void handshake(void)
{
    static const cd_test_p2p_node_hello hello = {
        .user_agent = "/Bitcoin SV:1.2.2/",
        .services = 0x21,
        .start_height = 7,
        .association_id = 1,
        .protoconf_max = 4 * 1024 * 1024,
    };
    cd_test_p2p_node_handshake(&W.n.pending, W.net->magic, &hello);
    pump_until(&W.seen.ready);
}

static void world_stop(void)
{
    cp2p_mgr_free(W.mgr);
    event_base_free(W.base);
    if (W.n.fd >= 0)
        close(W.n.fd);
    close(W.n.lfd);
    cp2p_buf_free(&W.n.pending);
    cp2p_buf_free(&W.n.got);
    cp2p_buf_free(&W.block);
    free(W.offs);
}

/* ---- tests ---- */

START_TEST(test_handshake_sequence)
{
    world_start(NULL, 0);
    /* before the node's version the client sent exactly one version */
    for (int i = 0; i < 50; i++)
        step();
    char cmds[16][13];
    int k = client_cmds(cmds, 16);
    ck_assert_int_eq(k, 1);
    ck_assert_str_eq(cmds[0], "version");
    cp2p_version v;
    ck_assert_int_eq(cp2p_dec_version(W.n.got.p + 24, W.n.got.len - 24, &v), CP2P_OK);
    ck_assert_int_eq(v.version, 70016);
    ck_assert_uint_eq(v.services, 0);
    ck_assert_int_eq(v.relay, 0);
    ck_assert_ptr_null(strcasestr(v.user_agent, "abc"));
    ck_assert_ptr_null(strcasestr(v.user_agent, "cash"));
    ck_assert_ptr_null(strcasestr(v.user_agent, "bch"));
    ck_assert_uint_ne(v.nonce, 0);
    W.n.max_write = 1; /* the handshake byte by byte */
    handshake();
    for (int i = 0; i < 50; i++)
        step();
    k = client_cmds(cmds, 16);
    ck_assert_int_ge(k, 4);
    ck_assert_str_eq(cmds[1], "verack");
    ck_assert_str_eq(cmds[2], "protoconf");
    ck_assert_str_eq(cmds[3], "sendheaders");
    /* our protoconf: 1 field, 2 MiB */
    size_t off = 24 + (size_t)cd_le32(W.n.got.p + 16) + 24 + 24;
    ck_assert_mem_eq(W.n.got.p + off, "\x01\x00\x00\x20\x00", 5);
    ck_assert_int_eq(cp2p_peer_state_get(W.peer), CP2P_PEER_READY);
    ck_assert_uint_eq(cp2p_peer_max_send(W.peer), 4 * 1024 * 1024);
    ck_assert_int_eq(cp2p_peer_version(W.peer)->start_height, 7);
    ck_assert_ptr_eq(cp2p_mgr_next_peer(W.mgr), W.peer);
    /* ping is answered with the same nonce */
    uint8_t nonce[8] = {9, 8, 7, 6, 5, 4, 3, 2};
    size_t before = W.n.got.len;
    node_send(&W.n, "ping", nonce, 8);
    pump_sent();
    ck_assert_uint_eq(W.n.got.len, before + 32);
    ck_assert_mem_eq(W.n.got.p + before + 4, "pong\0", 5);
    ck_assert_mem_eq(W.n.got.p + before + 24, nonce, 8);
    world_stop();
}
END_TEST

static void feed_split(size_t max_write, const char *block_file)
{
    world_start(NULL, 0);
    handshake();
    W.n.max_write = max_write;
    /* headers (2), inv (3), a small block */
    size_t bl;
    uint8_t *blk = cd_test_read_file(block_file, &bl);
    cp2p_buf b = {0};
    uint8_t hd[160];
    memcpy(hd, blk, 80);
    memcpy(hd + 80, blk, 80);
    cp2p_enc_headers(&b, hd, 2);
    node_send(&W.n, "headers", b.p, b.len);
    cp2p_buf_free(&b);
    cp2p_inv inv[3] = {{1, {1}}, {2, {2}}, {1, {3}}};
    cp2p_enc_inv(&b, inv, 3);
    node_send(&W.n, "inv", b.p, b.len);
    cp2p_buf_free(&b);
    node_send(&W.n, "block", blk, bl);
    pump_until(&W.blocks);
    ck_assert_int_eq(W.headers_n, 2);
    ck_assert_int_eq(W.inv_n, 3);
    ck_assert_uint_eq(W.block.len, bl);
    ck_assert_mem_eq(W.block.p, blk, bl);
    ck_assert_int_eq(W.seen.disconnects, 0);
    free(blk);
    world_stop();
}

START_TEST(test_split_bytewise_small)
{
    /* byte by byte: keep it small (a regtest block of a few hundred bytes) */
    feed_split(1, "regtest/blockchain_116_7c9cd2/"
                  "3651292faaaa19ead28299e743aaf4e45b474fbbfa7cc7d3d71564c879a3fd5c");
}
END_TEST
START_TEST(test_split_random)
{
    feed_split(3000, "mainnet/block413567.raw");
}
END_TEST

static void expect_disconnect(const uint8_t *raw, size_t len, cp2p_reason want, int close_after)
{
    world_start(NULL, 0);
    handshake();
    cp2p_buf_put(&W.n.pending, raw, len);
    if (close_after) {
        pump_sent();
        shutdown(W.n.fd, SHUT_WR);
    }
    pump_until(&W.seen.disconnects);
    ck_assert_msg(W.seen.reason == want, "reason %s, want %s (%s)", cp2p_reason_str(W.seen.reason),
                  cp2p_reason_str(want), W.seen.detail);
    /* no reconnect: the manager forgets the peer (W.peer is no longer valid) */
    double end = cd_now_s() + 10;
    while (cp2p_mgr_peer_count(W.mgr) != 0 && cd_now_s() < end)
        step();
    ck_assert_uint_eq(cp2p_mgr_peer_count(W.mgr), 0);
    world_stop();
}

START_TEST(test_bad_checksum)
{
    uint8_t m[24 + 8];
    uint8_t pl[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cp2p_msghdr_encode(m, btc_net_get(BTC_NET_REGTEST)->magic, "ping", pl, 8);
    memcpy(m + 24, pl, 8);
    m[20] ^= 0xff;
    expect_disconnect(m, sizeof(m), CP2P_R_BAD_CHECKSUM, 0);
}
END_TEST

START_TEST(test_wrong_magic)
{
    uint8_t m[24];
    static const uint8_t bad[4] = {0xde, 0xad, 0xbe, 0xef};
    cp2p_msghdr_encode(m, bad, "verack", NULL, 0);
    expect_disconnect(m, sizeof(m), CP2P_R_BAD_MAGIC, 0);
}
END_TEST

START_TEST(test_garbage_command)
{
    uint8_t m[64];
    memcpy(m, btc_net_get(BTC_NET_REGTEST)->magic, 4);
    for (int i = 4; i < 64; i++)
        m[i] = (uint8_t)(i * 37 + 1);
    expect_disconnect(m, sizeof(m), CP2P_R_BAD_COMMAND, 0);
}
END_TEST

START_TEST(test_oversize)
{
    uint8_t m[24];
    cp2p_msghdr_encode(m, btc_net_get(BTC_NET_REGTEST)->magic, "inv", NULL, 0);
    cd_put_le32(m + 16, 2 * 1024 * 1024 + 1);
    expect_disconnect(m, sizeof(m), CP2P_R_OVERSIZE, 0);
}
END_TEST

START_TEST(test_truncated)
{
    uint8_t m[24 + 100] = {0};
    uint8_t pl[100] = {0};
    cp2p_msghdr_encode(m, btc_net_get(BTC_NET_REGTEST)->magic, "tx", pl, 100);
    expect_disconnect(m, 24 + 40, CP2P_R_TRUNCATED, 1);
}
END_TEST

START_TEST(test_malformed_headers)
{
    uint8_t pl[1 + 80] = {1}; /* count 1 but no tx-count byte */
    uint8_t m[24 + sizeof(pl)];
    cp2p_msghdr_encode(m, btc_net_get(BTC_NET_REGTEST)->magic, "headers", pl, sizeof(pl));
    memcpy(m + 24, pl, sizeof(pl));
    expect_disconnect(m, sizeof(m), CP2P_R_MALFORMED, 0);
}
END_TEST

START_TEST(test_oversized_compactsize_in_inv)
{
    uint8_t pl[9] = {0xff, 0, 0, 0, 0, 1, 0, 0, 0};
    uint8_t m[24 + sizeof(pl)];
    cp2p_msghdr_encode(m, btc_net_get(BTC_NET_REGTEST)->magic, "inv", pl, sizeof(pl));
    memcpy(m + 24, pl, sizeof(pl));
    expect_disconnect(m, sizeof(m), CP2P_R_MALFORMED, 0);
}
END_TEST

START_TEST(test_stall_mid_message)
{
    cp2p_options o = cd_test_p2p_options();
    o.stall_timeout_ms = 200;
    world_start(&o, 0);
    handshake();
    uint8_t m[24 + 100] = {0};
    uint8_t pl[100] = {0};
    cp2p_msghdr_encode(m, W.net->magic, "tx", pl, 100);
    cp2p_buf_put(&W.n.pending, m, 60);
    pump_until(&W.seen.disconnects);
    ck_assert_int_eq(W.seen.reason, CP2P_R_STALLED);
    world_stop();
}
END_TEST

START_TEST(test_handshake_timeout)
{
    cp2p_options o = cd_test_p2p_options();
    o.handshake_timeout_ms = 200;
    world_start(&o, 0);
    pump_until(&W.seen.disconnects);
    ck_assert_int_eq(W.seen.reason, CP2P_R_HANDSHAKE_TIMEOUT);
    ck_assert_int_eq(W.seen.ready, 0);
    world_stop();
}
END_TEST

START_TEST(test_ping_timeout)
{
    cp2p_options o = cd_test_p2p_options();
    o.ping_interval_ms = 50;
    o.ping_timeout_ms = 200;
    world_start(&o, 0);
    handshake();
    /* the node never answers our pings */
    pump_until(&W.seen.disconnects);
    ck_assert_int_eq(W.seen.reason, CP2P_R_PING_TIMEOUT);
    char cmds[32][13];
    int k = client_cmds(cmds, 32);
    int pings = 0;
    for (int i = 0; i < k; i++)
        pings += strcmp(cmds[i], "ping") == 0;
    ck_assert_int_ge(pings, 1);
    world_stop();
}
END_TEST

static void chunked(int ext, size_t max_write)
{
    cp2p_options o = cd_test_p2p_options();
    o.chunk_threshold = 64 * 1024;
    world_start(&o, 0);
    handshake();
    W.n.max_write = max_write;
    size_t bl, ol;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &bl);
    char *offs = (char *)cd_test_read_file("mainnet/block413567.tx-offsets", &ol);
    if (ext) {
        uint8_t h[44];
        cp2p_msghdr_encode_ext(h, W.net->magic, "block", bl);
        cp2p_buf_put(&W.n.pending, h, 44);
        cp2p_buf_put(&W.n.pending, blk, bl);
    } else {
        node_send(&W.n, "block", blk, bl);
    }
    pump_until(&W.chunk_last);
    ck_assert_int_eq(W.seen.disconnects, 0);
    ck_assert_int_gt(W.chunks, 10); /* ~1 MB in 64 KiB chunks */
    ck_assert_uint_eq(W.block.len, bl);
    ck_assert_mem_eq(W.block.p, blk, bl);
    ck_assert_uint_eq(W.n_offs, 1557);
    char *save = NULL, *line = strtok_r(offs, "\n", &save);
    for (size_t i = 0; i < 1557; i++) {
        ck_assert_ptr_nonnull(line);
        ck_assert_uint_eq(W.offs[i], strtoull(line, NULL, 10));
        line = strtok_r(NULL, "\n", &save);
    }
    free(blk);
    free(offs);
    world_stop();
}

START_TEST(test_chunked_block_offsets)
{
    chunked(0, 1 << 20);
}
END_TEST
START_TEST(test_chunked_block_random_splits)
{
    chunked(0, 5000);
}
END_TEST
START_TEST(test_chunked_extmsg_block)
{
    chunked(1, 1 << 20);
}
END_TEST

/* A block whose second transaction is ~4.6 MB (40000 inputs), far beyond the
 * 4 KiB chunk threshold, arriving in pieces of at most 4 KiB: the chunk
 * buffer grows while the transaction is incomplete, and the boundary walker
 * must resume where it stopped (btc_preproc cursor) instead of walking the
 * partial transaction again at every flush. Its counter of walked bytes
 * can therefore never exceed the block size (a rescan from the start of the
 * partial tx at each of the ~10 buffer doublings would count ~2x). */
static size_t put_varint(uint8_t *p, uint64_t v)
{
    if (v < 0xfd) {
        p[0] = (uint8_t)v;
        return 1;
    }
    if (v <= 0xffff) {
        p[0] = 0xfd;
        p[1] = (uint8_t)v;
        p[2] = (uint8_t)(v >> 8);
        return 3;
    }
    p[0] = 0xfe;
    cd_put_le32(p + 1, (uint32_t)v);
    return 5;
}

static size_t put_tx(uint8_t *p, uint32_t n_in, uint32_t script_len, uint8_t fill)
{
    size_t o = 0;
    cd_put_le32(p + o, 1);
    o += 4;
    o += put_varint(p + o, n_in);
    for (uint32_t i = 0; i < n_in; i++) {
        memset(p + o, fill, 32); /* prev txid */
        cd_put_le32(p + o + 32, i);
        o += 36;
        o += put_varint(p + o, script_len);
        memset(p + o, 0x51, script_len);
        o += script_len;
        cd_put_le32(p + o, 0xffffffffu);
        o += 4;
    }
    o += put_varint(p + o, 1);
    memset(p + o, 0, 8); /* value */
    o += 8;
    o += put_varint(p + o, 1);
    p[o++] = 0x51;
    cd_put_le32(p + o, 0); /* locktime */
    return o + 4;
}

START_TEST(test_chunked_huge_tx_walked_once)
{
    cp2p_options o = cd_test_p2p_options();
    o.chunk_threshold = 4096;
    world_start(&o, 0);
    handshake();
    W.n.max_write = 4096;
    const uint32_t n_in = 40000, script = 72;
    size_t cap = 200 + 2 * 200 + (size_t)n_in * (36 + 3 + script + 4);
    uint8_t *blk = calloc(1, cap);
    ck_assert_ptr_nonnull(blk);
    memset(blk, 7, 80); /* the header is not checked in chunk mode */
    size_t bl = 80;
    bl += put_varint(blk + bl, 3);
    uint64_t want[3];
    want[0] = bl;
    bl += put_tx(blk + bl, 1, 10, 1);
    want[1] = bl;
    bl += put_tx(blk + bl, n_in, script, 2);
    want[2] = bl;
    bl += put_tx(blk + bl, 2, 20, 3);
    ck_assert_uint_gt(bl, 4u << 20);
    node_send(&W.n, "block", blk, bl);
    pump_until(&W.chunk_last);
    ck_assert_int_eq(W.seen.disconnects, 0);
    ck_assert_uint_eq(W.block.len, bl);
    ck_assert_mem_eq(W.block.p, blk, bl);
    ck_assert_uint_eq(W.n_offs, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(W.offs[i], want[i]);
    const cp2p_peer_stats *st = cp2p_peer_stats_get(W.peer);
    ck_assert_uint_eq(st->blocks_in, 1);
    /* every byte after the block prefix walked exactly once */
    ck_assert_uint_eq(st->block_scan_bytes, bl - want[0]);
    free(blk);
    world_stop();
}
END_TEST

START_TEST(test_chunked_bad_checksum_aborts)
{
    cp2p_options o = cd_test_p2p_options();
    o.chunk_threshold = 64 * 1024;
    world_start(&o, 0);
    handshake();
    size_t bl;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &bl);
    size_t at = W.n.pending.len;
    node_send(&W.n, "block", blk, bl);
    W.n.pending.p[at + 20] ^= 1; /* checksum */
    pump_until(&W.seen.disconnects);
    ck_assert_int_eq(W.seen.reason, CP2P_R_BAD_CHECKSUM);
    ck_assert_int_eq(W.aborts, 1);
    ck_assert_int_eq(W.abort_reason, CP2P_R_BAD_CHECKSUM);
    ck_assert_int_eq(W.chunk_last, 0);
    free(blk);
    world_stop();
}
END_TEST

START_TEST(test_sink_backpressure)
{
    world_start(NULL, 1);
    handshake();
    size_t bl;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &bl);
    node_send(&W.n, "block", blk, bl);
    /* drain the 8 KiB "ring" whenever the library stopped on it */
    double end = cd_now_s() + 30;
    while (!W.sink_ends) {
        step();
        if (W.ring_used == sizeof(W.ring)) {
            W.ring_used = 0;
            cp2p_peer_resume_read(W.peer);
        }
        ck_assert_msg(cd_now_s() < end, "timed out");
    }
    ck_assert_int_eq(W.sink_ok, 1);
    ck_assert_int_gt(W.sink_pauses, 0);
    ck_assert_uint_eq(W.block.len, bl);
    ck_assert_mem_eq(W.block.p, blk, bl);
    uint8_t h[32];
    cd_sha256d(h, blk, 80);
    ck_assert_mem_eq(W.sink_hash, h, 32);
    ck_assert_int_eq(W.seen.disconnects, 0);
    ck_assert_uint_eq(cp2p_peer_stats_get(W.peer)->blocks_in, 1);
    free(blk);
    world_stop();
}
END_TEST

START_TEST(test_sink_long_pause_is_not_a_stall)
{
    /* the caller keeps its sink full far longer than the stall and pong
     * timeouts: the peer must not be dropped for our own back-pressure */
    cp2p_options o = cd_test_p2p_options();
    o.stall_timeout_ms = 400;
    o.ping_interval_ms = 50;
    o.ping_timeout_ms = 400;
    world_start(&o, 1);
    handshake();
    size_t bl;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &bl);
    node_send(&W.n, "block", blk, bl);
    double end = cd_now_s() + 30;
    int long_pauses = 0;
    while (!W.sink_ends) {
        step();
        if (W.ring_used == sizeof(W.ring)) {
            if (long_pauses < 2) {
                double until = cd_now_s() + 1.2; /* 3x the stall timeout */
                while (cd_now_s() < until) {
                    step();
                    usleep(1000);
                }
                long_pauses++;
            }
            W.ring_used = 0;
            cp2p_peer_resume_read(W.peer);
        }
        ck_assert_msg(cd_now_s() < end, "timed out");
        ck_assert_msg(W.seen.disconnects == 0, "dropped: %s (%s)", cp2p_reason_str(W.seen.reason),
                      W.seen.detail);
    }
    ck_assert_int_eq(long_pauses, 2);
    ck_assert_int_eq(W.sink_ok, 1);
    ck_assert_uint_eq(W.block.len, bl);
    ck_assert_mem_eq(W.block.p, blk, bl);
    free(blk);
    world_stop();
}
END_TEST

START_TEST(test_getdata_split_within_peer_limit)
{
    world_start(NULL, 0);
    handshake();
    /* peer's protoconf said 4 MiB: (4 MiB - 8) / 36 = 116508 per message */
    size_t n = 116508 + 10;
    cp2p_inv *v = calloc(n, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i].type = CP2P_INV_BLOCK;
    ck_assert_int_eq(cp2p_peer_getdata(W.peer, v, n), CP2P_OK);
    double end = cd_now_s() + 20;
    size_t entries[4] = {0};
    int n_getdata = 0;
    while (n_getdata < 2 && cd_now_s() < end) {
        step();
        size_t pos = 0;
        n_getdata = 0;
        while (W.n.got.len - pos >= 24) {
            cp2p_msghdr h;
            cp2p_msghdr_decode(W.n.got.p + pos, W.n.got.len - pos, &h);
            if (W.n.got.len - pos < 24 + h.len)
                break;
            if (strcmp(h.cmd, "getdata") == 0 && n_getdata < 4) {
                ck_assert_uint_le(h.len, 4 * 1024 * 1024);
                size_t cnt;
                ck_assert_int_eq(cp2p_dec_inv(W.n.got.p + pos + 24, h.len, NULL, 0, &cnt), 0);
                entries[n_getdata++] = cnt;
            }
            pos += 24 + h.len;
        }
    }
    ck_assert_int_eq(n_getdata, 2);
    ck_assert_uint_eq(entries[0], 116508);
    ck_assert_uint_eq(entries[1], 10);
    free(v);
    /* a raw message above the peer's limit is refused locally */
    uint8_t *big = calloc(1, 4 * 1024 * 1024 + 1);
    ck_assert_int_eq(cp2p_peer_send(W.peer, "inv", big, 4 * 1024 * 1024 + 1), CP2P_ETOOBIG);
    free(big);
    world_stop();
}
END_TEST

START_TEST(test_bad_options)
{
    struct event_base *b = event_base_new();
    cp2p_options o;
    cp2p_options_init(&o, cp2p_net_by_name(btc_net_get(BTC_NET_REGTEST)->name));
    o.user_agent = "/BitcoinCash:1.0/";
    ck_assert_ptr_null(cp2p_mgr_new(b, &o, NULL, NULL, NULL));
    o.user_agent = "/my-ABC-client/";
    ck_assert_ptr_null(cp2p_mgr_new(b, &o, NULL, NULL, NULL));
    o.user_agent = NULL;
    o.max_recv_payload = 1000;
    ck_assert_ptr_null(cp2p_mgr_new(b, &o, NULL, NULL, NULL));
    cp2p_options_init(&o, cp2p_net_by_name(btc_net_get(BTC_NET_REGTEST)->name));
    cp2p_mgr *m = cp2p_mgr_new(b, &o, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(cp2p_mgr_add_peer(m, "", NULL), CP2P_EINVAL);
    ck_assert_int_eq(cp2p_mgr_add_peer(m, "127.0.0.1:99999", NULL), CP2P_EINVAL);
    ck_assert_int_eq(cp2p_mgr_add_peer(m, "[::1", NULL), CP2P_EINVAL);
    ck_assert_ptr_null(cp2p_mgr_next_peer(m));
    cp2p_mgr_free(m);
    event_base_free(b);
}
END_TEST

START_TEST(test_large_tx_message)
{
    /* a 3 MB `tx` (above the 256 KiB read buffer) in random splits, followed
     * by a ping in the same stream: both come out intact */
    world_start(NULL, 0);
    handshake();
    W.n.max_write = 70000;
    size_t n = 3 * 1000 * 1000;
    uint8_t *tx = malloc(n);
    for (size_t i = 0; i < n; i++)
        tx[i] = (uint8_t)(i * 131 + 7);
    node_send(&W.n, "tx", tx, n);
    uint8_t nonce[8] = {1};
    node_send(&W.n, "ping", nonce, 8);
    pump_until(&W.blocks);
    pump_sent();
    ck_assert_uint_eq(W.block.len, n);
    ck_assert_mem_eq(W.block.p, tx, n);
    ck_assert_int_eq(W.seen.disconnects, 0);
    ck_assert_uint_eq(cp2p_peer_stats_get(W.peer)->txs_in, 1);
    free(tx);
    world_stop();
}
END_TEST

START_TEST(test_connect_failed_backoff)
{
    /* a port nobody listens on: connect fails, the peer backs off and retries */
    memset(&W, 0, sizeof(W));
    W.net = btc_net_get(BTC_NET_REGTEST);
    W.base = event_base_new();
    node_listen(&W.n);
    char hp[64];
    snprintf(hp, sizeof(hp), "127.0.0.1:%u", W.n.port);
    close(W.n.lfd);
    W.n.lfd = -1;
    cp2p_options o = cd_test_p2p_options();
    o.reconnect = 1;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 80;
    cp2p_handlers h = {.on_disconnect = c_disc};
    W.mgr = cp2p_mgr_new(W.base, &o, &h, NULL, &W);
    ck_assert_int_eq(cp2p_mgr_add_peer(W.mgr, hp, &W.peer), CP2P_OK);
    double end = cd_now_s() + 20;
    while (W.seen.disconnects < 4 && cd_now_s() < end)
        event_base_loop(W.base, EVLOOP_ONCE);
    ck_assert_int_ge(W.seen.disconnects, 4);
    ck_assert_int_eq(W.seen.reason, CP2P_R_CONNECT_FAILED);
    ck_assert_int_eq(cp2p_peer_state_get(W.peer), CP2P_PEER_BACKOFF);
    ck_assert_ptr_null(cp2p_mgr_next_peer(W.mgr));
    ck_assert_uint_eq(cp2p_mgr_peer_count(W.mgr), 1);
    cp2p_peer_remove(W.peer);
    event_base_loop(W.base, EVLOOP_ONCE); /* the tick reaps it */
    ck_assert_uint_eq(cp2p_mgr_peer_count(W.mgr), 0);
    cp2p_mgr_free(W.mgr);
    event_base_free(W.base);
}
END_TEST

static Suite *suite_peer(void)
{
    Suite *s = suite_create("p2p_peer");
    TCase *tc = tcase_create("peer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_handshake_sequence);
    tcase_add_test(tc, test_split_bytewise_small);
    tcase_add_test(tc, test_split_random);
    tcase_add_test(tc, test_bad_checksum);
    tcase_add_test(tc, test_wrong_magic);
    tcase_add_test(tc, test_garbage_command);
    tcase_add_test(tc, test_oversize);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_malformed_headers);
    tcase_add_test(tc, test_oversized_compactsize_in_inv);
    tcase_add_test(tc, test_stall_mid_message);
    tcase_add_test(tc, test_handshake_timeout);
    tcase_add_test(tc, test_ping_timeout);
    tcase_add_test(tc, test_chunked_block_offsets);
    tcase_add_test(tc, test_chunked_block_random_splits);
    tcase_add_test(tc, test_chunked_extmsg_block);
    tcase_add_test(tc, test_chunked_bad_checksum_aborts);
    tcase_add_test(tc, test_chunked_huge_tx_walked_once);
    tcase_add_test(tc, test_sink_backpressure);
    tcase_add_test(tc, test_sink_long_pause_is_not_a_stall);
    tcase_add_test(tc, test_getdata_split_within_peer_limit);
    tcase_add_test(tc, test_bad_options);
    tcase_add_test(tc, test_connect_failed_backoff);
    tcase_add_test(tc, test_large_tx_message);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_peer)
