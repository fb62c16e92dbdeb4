/*
 * cd_test_p2p.h - what the libconduit-p2p unit tests that play the node
 * share (test_peer.c, test_budget.c): the options they start from, a
 * loopback listener standing for the node, the node's framed messages and
 * handshake, and the record of the client's ready/disconnect callbacks.
 * Helpers fail the running Check test (ck_assert) instead of returning an
 * error.
 */
#ifndef CD_TEST_P2P_H
#define CD_TEST_P2P_H

#include <stddef.h>
#include <stdint.h>

#include "conduit_p2p.h"
#include "cp2p_codec.h"

/* What the client's on_ready / on_disconnect callbacks reported. */
typedef struct cd_test_p2p_seen {
    int ready;          /* handshakes completed */
    int disconnects;    /* on_disconnect calls */
    cp2p_reason reason; /* of the last disconnect */
    char detail[512];   /* its detail text (copied, truncated) */
} cd_test_p2p_seen;

/*
 * Returns: regtest options with a 10 ms tick and no reconnect (the tests
 * that want one set it); debug logging when TEST_P2P_DEBUG is set.
 */
cp2p_options cd_test_p2p_options(void);

/*
 * Opens a TCP listener on 127.0.0.1 on a port the kernel picks.
 * Returns: the listening socket (the test closes it).
 * Out: *port its port.
 */
int cd_test_p2p_listen(uint16_t *port);

/*
 * Adds the peer "127.0.0.1:<port>" to mgr (cp2p_mgr_add_peer_ex), failing
 * the test unless it returns CP2P_OK.
 * In: restore may be NULL (a fresh reconnect schedule).
 * Out: *out the peer.
 */
void cd_test_p2p_add_peer(cp2p_mgr *mgr, uint16_t port, const cp2p_penalty *restore,
                          cp2p_peer **out);

/* Appends the message `cmd` (24-byte header, then n bytes of p; p may be
 * NULL when n is 0) framed for the network whose magic is given. */
void cd_test_p2p_frame(cp2p_buf *out, const uint8_t magic[4], const char *cmd, const uint8_t *p,
                       size_t n);

/* The node's half of the handshake, as the tests' node says it. */
typedef struct cd_test_p2p_node_hello {
    const char *user_agent;
    uint64_t services;
    int32_t start_height;
    int association_id;     /* 1: the empty association id byte the BSV node adds */
    uint32_t protoconf_max; /* 0: no protoconf message */
} cd_test_p2p_node_hello;

/* Appends the node's framed version (protocol 70016, nonce 42), verack and,
 * when hello->protoconf_max is not 0, protoconf messages to out. */
void cd_test_p2p_node_handshake(cp2p_buf *out, const uint8_t magic[4],
                                const cd_test_p2p_node_hello *hello);

/* Records one on_disconnect call (reason and copied detail) in s. */
void cd_test_p2p_saw_disconnect(cd_test_p2p_seen *s, cp2p_reason r, const char *detail);

#endif /* CD_TEST_P2P_H */
