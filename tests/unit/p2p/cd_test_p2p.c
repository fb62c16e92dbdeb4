/*
 * cd_test_p2p.c - the node side shared by the libconduit-p2p unit tests
 * (cd_test_p2p.h): one copy of the listener, framing and handshake that
 * test_peer.c and test_budget.c each used to carry.
 */
#include "cd_test_p2p.h"

#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "btc_net.h"

cp2p_options cd_test_p2p_options(void)
{
    cp2p_options o;
    cp2p_options_init(&o, cp2p_net_by_name(btc_net_get(BTC_NET_REGTEST)->name));
    o.tick_ms = 10;
    o.reconnect = 0;
    if (getenv("TEST_P2P_DEBUG"))
        o.log_level = CP2P_LOG_DEBUG;
    return o;
}

int cd_test_p2p_listen(uint16_t *port)
{
    struct sockaddr_in a = {0};
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

void cd_test_p2p_add_peer(cp2p_mgr *mgr, uint16_t port, const cp2p_penalty *restore,
                          cp2p_peer **out)
{
    char hp[64];
    snprintf(hp, sizeof(hp), "127.0.0.1:%u", port);
    ck_assert_int_eq(cp2p_mgr_add_peer_ex(mgr, hp, restore, out), CP2P_OK);
}

void cd_test_p2p_frame(cp2p_buf *out, const uint8_t magic[4], const char *cmd, const uint8_t *p,
                       size_t n)
{
    uint8_t h[24];
    cp2p_msghdr_encode(h, magic, cmd, p, n);
    cp2p_buf_put(out, h, sizeof(h));
    if (n)
        cp2p_buf_put(out, p, n);
}

void cd_test_p2p_node_handshake(cp2p_buf *out, const uint8_t magic[4],
                                const cd_test_p2p_node_hello *hello)
{
    cp2p_version v = {0};
    v.version = 70016;
    v.services = hello->services;
    v.nonce = 42;
    snprintf(v.user_agent, sizeof(v.user_agent), "%s", hello->user_agent);
    v.start_height = hello->start_height;
    cp2p_buf b = {0};
    cp2p_enc_version(&b, &v, NULL, 0);
    if (hello->association_id)
        cp2p_buf_u8(&b, 0); /* association id as the node sends it */
    cd_test_p2p_frame(out, magic, "version", b.p, b.len);
    cp2p_buf_free(&b);
    cd_test_p2p_frame(out, magic, "verack", NULL, 0);
    if (hello->protoconf_max) {
        cp2p_enc_protoconf(&b, hello->protoconf_max, "BlockPriority,Default");
        cd_test_p2p_frame(out, magic, "protoconf", b.p, b.len);
        cp2p_buf_free(&b);
    }
}

void cd_test_p2p_saw_disconnect(cd_test_p2p_seen *s, cp2p_reason r, const char *detail)
{
    s->disconnects++;
    s->reason = r;
    snprintf(s->detail, sizeof(s->detail), "%s", detail);
}
