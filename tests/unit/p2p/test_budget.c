/*
 * test_budget.c - what one peer may cost libconduit-p2p (issue 11 F2, F3,
 * F12): message rates, the send queue, time per message, the floor rate of
 * a block (time paused by the sink not counted), and the reconnect schedule
 * (back-off growth, bans, cp2p_peer_ban, a restored ban). The test plays the
 * node over a loopback socket.
 */
#include "cd_test.h"

#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "btc_net.h"
#include "cd_util.h"
#include "conduit_p2p.h"
#include "cp2p_codec.h"
#include "cd_test_p2p.h"

typedef struct world {
    struct event_base *base;
    cp2p_mgr *mgr;
    cp2p_peer *peer;
    const btc_net *net;
    int lfd, fd;
    uint16_t port;
    cd_test_p2p_seen seen;
    int penalties;
    cp2p_penalty pen;
    int sink_pause; /* sink: no room */
    uint8_t room[4096];
} world;

static world W;

static void c_ready(const cp2p_ctx *c, const cp2p_version *v)
{
    (void)c;
    (void)v;
    W.seen.ready++;
}

static void c_disc(const cp2p_ctx *c, cp2p_reason r, const char *d)
{
    (void)c;
    cd_test_p2p_saw_disconnect(&W.seen, r, d);
}

static void c_pen(const cp2p_ctx *c, const cp2p_penalty *p)
{
    (void)c;
    W.penalties++;
    W.pen = *p;
}

static int s_begin(const cp2p_ctx *c, uint64_t len, int ext)
{
    (void)c;
    (void)len;
    (void)ext;
    return 1;
}

static void s_space(const cp2p_ctx *c, uint8_t **buf, size_t *avail)
{
    (void)c;
    *buf = W.sink_pause ? NULL : W.room;
    *avail = W.sink_pause ? 0 : sizeof(W.room);
}

static void s_data(const cp2p_ctx *c, size_t n)
{
    (void)c;
    (void)n;
}

static void s_end(const cp2p_ctx *c, int ok, cp2p_reason why, const uint8_t h[32])
{
    (void)c;
    (void)ok;
    (void)why;
    (void)h;
}

static cp2p_options opts(void)
{
    W.net = btc_net_get(BTC_NET_REGTEST);
    return cd_test_p2p_options();
}

static void start(const cp2p_options *o, int sink)
{
    W.base = event_base_new();
    W.lfd = cd_test_p2p_listen(&W.port);
    cp2p_handlers h = {.on_ready = c_ready, .on_disconnect = c_disc, .on_penalty = c_pen};
    cp2p_block_sink sk = {s_begin, s_space, s_data, s_end};
    W.mgr = cp2p_mgr_new(W.base, o, &h, sink ? &sk : NULL, &W);
    ck_assert_ptr_nonnull(W.mgr);
    W.fd = -1;
}

static void add_peer(const cp2p_penalty *restore)
{
    cd_test_p2p_add_peer(W.mgr, W.port, restore, &W.peer);
}

static void loop_for(double s)
{
    double end = cd_now_s() + s;
    while (cd_now_s() < end)
        event_base_loop(W.base, EVLOOP_NONBLOCK);
}

static void loop_until(const int *flag, int want)
{
    double end = cd_now_s() + 20;
    while (*flag < want) {
        event_base_loop(W.base, EVLOOP_NONBLOCK);
        ck_assert_msg(cd_now_s() < end, "timed out");
        usleep(100);
    }
}

static void raw_send(const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = send(W.fd, b, n, MSG_NOSIGNAL);
        if (k < 0) {
            event_base_loop(W.base, EVLOOP_NONBLOCK);
            continue;
        }
        b += k;
        n -= (size_t)k;
        event_base_loop(W.base, EVLOOP_NONBLOCK);
    }
}

static void msg(const char *cmd, const uint8_t *p, size_t n)
{
    cp2p_buf b = {0};
    cd_test_p2p_frame(&b, W.net->magic, cmd, p, n);
    raw_send(b.p, b.len);
    cp2p_buf_free(&b);
}

/* accept the client's connection and do the node's half of the handshake */
static void accept_and_handshake(void)
{
    int ready0 = W.seen.ready;
    for (int i = 0; W.fd < 0 && i < 20000; i++) {
        event_base_loop(W.base, EVLOOP_NONBLOCK);
        struct timeval tv = {0, 1000};
        fd_set fs;
        FD_ZERO(&fs);
        FD_SET(W.lfd, &fs);
        if (select(W.lfd + 1, &fs, NULL, NULL, &tv) == 1)
            W.fd = accept(W.lfd, NULL, NULL);
    }
    ck_assert_int_ge(W.fd, 0);
    static const cd_test_p2p_node_hello hello = {.user_agent = "/node/"};
    cp2p_buf b = {0};
    cd_test_p2p_node_handshake(&b, W.net->magic, &hello);
    raw_send(b.p, b.len);
    cp2p_buf_free(&b);
    loop_until(&W.seen.ready, ready0 + 1);
}

static void stop(void)
{
    cp2p_mgr_free(W.mgr);
    event_base_free(W.base);
    if (W.fd >= 0)
        close(W.fd);
    close(W.lfd);
    memset(&W, 0, sizeof(W));
}

START_TEST(test_rate_budget_drops_and_bans)
{
    cp2p_options o = opts();
    o.max_msg_rate = 100;
    o.msg_burst = 1; /* 100 messages in a burst */
    o.reconnect = 1;
    o.ban_min_ms = 5000;
    start(&o, 0);
    add_peer(NULL);
    accept_and_handshake();
    uint8_t nonce[8] = {0};
    for (int i = 0; i < 400 && !W.seen.disconnects; i++)
        msg("ping", nonce, 8);
    loop_until(&W.seen.disconnects, 1);
    ck_assert_int_eq(W.seen.reason, CP2P_R_RATE);
    ck_assert_msg(strstr(W.seen.detail, "'ping'"), "%s", W.seen.detail);
    ck_assert_int_eq(cp2p_peer_state_get(W.peer), CP2P_PEER_BANNED);
    cp2p_penalty p;
    ck_assert_int_eq(cp2p_peer_penalty(W.peer, &p), CP2P_OK);
    ck_assert_int_eq(p.banned, 1);
    ck_assert_uint_eq(p.bans, 1);
    ck_assert_int_eq(p.reason, CP2P_R_RATE);
    ck_assert_int_ge(p.until, (int64_t)time(NULL) + 4);
    ck_assert_int_ge(W.penalties, 1);
    ck_assert_int_eq(W.pen.banned, 1);
    stop();
}
END_TEST

START_TEST(test_inv_entries_budget)
{
    cp2p_options o = opts();
    o.max_inv_rate = 1000;
    o.msg_burst = 1;
    start(&o, 0);
    add_peer(NULL);
    accept_and_handshake();
    /* few messages, many entries: the message rate alone would let it pass */
    cp2p_inv items[600];
    memset(items, 0, sizeof(items));
    for (int i = 0; i < 600; i++) {
        items[i].type = CP2P_INV_TX;
        items[i].hash[0] = (uint8_t)i;
        items[i].hash[1] = (uint8_t)(i >> 8);
    }
    cp2p_buf b = {0};
    cp2p_enc_inv(&b, items, 600);
    msg("inv", b.p, b.len);
    loop_for(0.1);
    ck_assert_int_eq(W.seen.disconnects, 0); /* 600 of a 1000 burst */
    msg("inv", b.p, b.len);
    loop_until(&W.seen.disconnects, 1);
    cp2p_buf_free(&b);
    ck_assert_int_eq(W.seen.reason, CP2P_R_RATE);
    ck_assert_msg(strstr(W.seen.detail, "inv entries"), "%s", W.seen.detail);
    stop();
}
END_TEST

START_TEST(test_send_budget_refuses_and_drops)
{
    cp2p_options o = opts();
    o.max_send_queue = 64 * 1024;
    start(&o, 0);
    add_peer(NULL);
    accept_and_handshake();
    /* the node never reads: what we queue grows until the budget */
    static uint8_t big[256 * 1024];
    int rc = CP2P_OK, sends = 0;
    while (rc == CP2P_OK && sends < 1000) { /* no loop turn: nothing drains */
        rc = cp2p_peer_send(W.peer, "blob", big, sizeof(big) / 4);
        sends++;
    }
    ck_assert_int_eq(rc, CP2P_EBUDGET);
    ck_assert_int_eq(W.seen.disconnects, 0); /* never failed inside the send call */
    const cp2p_peer_stats *st = cp2p_peer_stats_get(W.peer);
    ck_assert_uint_le(st->send_queue_max, 64 * 1024 + 64 * 1024 + 24);
    loop_until(&W.seen.disconnects, 1);
    ck_assert_int_eq(W.seen.reason, CP2P_R_SEND_BUDGET);
    stop();
}
END_TEST

START_TEST(test_message_time_limit)
{
    cp2p_options o = opts();
    o.msg_timeout_ms = 300;
    o.stall_timeout_ms = 60000;
    start(&o, 0);
    add_peer(NULL);
    accept_and_handshake();
    uint8_t h[24], pl[100] = {0};
    cp2p_msghdr_encode(h, W.net->magic, "tx", pl, sizeof(pl));
    raw_send(h, 24);
    /* a byte every 50 ms: never silent long enough to stall */
    for (int i = 0; i < 100 && !W.seen.disconnects; i++) {
        raw_send(pl, 1);
        loop_for(0.05);
    }
    ck_assert_int_eq(W.seen.reason, CP2P_R_MSG_TIMEOUT);
    stop();
}
END_TEST

START_TEST(test_block_floor_rate_not_counting_pauses)
{
    cp2p_options o = opts();
    o.min_block_rate = 1000;
    o.block_grace_ms = 300;
    start(&o, 1);
    add_peer(NULL);
    accept_and_handshake();
    uint8_t h[24], blk[2000] = {0};
    cp2p_msghdr_encode(h, W.net->magic, "block", blk, sizeof(blk));
    /* paused by our sink for a second: not the peer's fault */
    W.sink_pause = 1;
    raw_send(h, 24);
    raw_send(blk, 200);
    loop_for(1.0);
    ck_assert_int_eq(W.seen.disconnects, 0);
    /* reading again: 10 bytes/s is below the floor */
    W.sink_pause = 0;
    cp2p_peer_resume_read(W.peer);
    for (int i = 0; i < 50 && !W.seen.disconnects; i++) {
        raw_send(blk, 1);
        loop_for(0.1);
    }
    ck_assert_int_eq(W.seen.reason, CP2P_R_SLOW_BLOCK);
    ck_assert_msg(strstr(W.seen.detail, "floor 1000 B/s"), "%s", W.seen.detail);
    stop();
}
END_TEST

START_TEST(test_backoff_grows_until_stable)
{
    cp2p_options o = opts();
    o.reconnect = 1;
    o.reconnect_min_ms = 100;
    o.reconnect_max_ms = 10000;
    o.stable_ms = 300;
    start(&o, 0);
    add_peer(NULL);
    int64_t last = 0;
    /* ready, then dropped at once: each time one more failure, a longer wait */
    for (int k = 1; k <= 4; k++) {
        accept_and_handshake();
        close(W.fd);
        W.fd = -1;
        loop_until(&W.seen.disconnects, k);
        ck_assert(W.seen.reason == CP2P_R_EOF || W.seen.reason == CP2P_R_IO);
        ck_assert_int_eq(cp2p_peer_state_get(W.peer), CP2P_PEER_BACKOFF);
        ck_assert_uint_eq(W.pen.failures, (unsigned)k);
        ck_assert_int_ge(W.pen.until, last);
        last = W.pen.until;
    }
    /* a connection that lasts stable_ms resets the failures */
    accept_and_handshake();
    int before = W.penalties;
    loop_for(0.6);
    ck_assert_int_gt(W.penalties, before);
    ck_assert_uint_eq(W.pen.failures, 0);
    ck_assert_int_eq(W.pen.until, 0);
    stop();
}
END_TEST

START_TEST(test_ban_api_and_restored_ban)
{
    cp2p_options o = opts();
    o.reconnect = 1;
    o.ban_min_ms = 2000;
    start(&o, 0);
    add_peer(NULL);
    accept_and_handshake();
    cp2p_peer_ban(W.peer, "sent\nnonsense");
    ck_assert_int_eq(W.seen.disconnects, 1);
    ck_assert_int_eq(W.seen.reason, CP2P_R_MISBEHAVED);
    ck_assert_str_eq(W.seen.detail, "sent\\nnonsense");
    ck_assert_int_eq(cp2p_peer_state_get(W.peer), CP2P_PEER_BANNED);
    ck_assert_uint_eq(W.pen.bans, 1);
    cp2p_penalty saved = W.pen;
    stop();
    /* a new manager given the stored ban does not dial until it ends */
    o = opts();
    o.reconnect = 1;
    start(&o, 0);
    add_peer(&saved);
    ck_assert_int_eq(cp2p_peer_state_get(W.peer), CP2P_PEER_BANNED);
    cp2p_penalty p;
    ck_assert_int_eq(cp2p_peer_penalty(W.peer, &p), CP2P_OK);
    ck_assert_uint_eq(p.bans, 1);
    ck_assert_int_eq(p.banned, 1);
    loop_for(0.5);
    struct timeval tv = {0, 0};
    fd_set fs;
    FD_ZERO(&fs);
    FD_SET(W.lfd, &fs);
    ck_assert_int_eq(select(W.lfd + 1, &fs, NULL, NULL, &tv), 0); /* nobody dialled */
    /* after the ban: dialled again */
    W.fd = -1;
    accept_and_handshake();
    ck_assert_int_eq(cp2p_peer_state_get(W.peer), CP2P_PEER_READY);
    stop();
}
END_TEST

static Suite *suite_budget(void)
{
    Suite *s = suite_create("p2p_budget");
    TCase *tc = tcase_create("budget");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_rate_budget_drops_and_bans);
    tcase_add_test(tc, test_inv_entries_budget);
    tcase_add_test(tc, test_send_budget_refuses_and_drops);
    tcase_add_test(tc, test_message_time_limit);
    tcase_add_test(tc, test_block_floor_rate_not_counting_pauses);
    tcase_add_test(tc, test_backoff_grows_until_stable);
    tcase_add_test(tc, test_ban_api_and_restored_ban);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_budget)
