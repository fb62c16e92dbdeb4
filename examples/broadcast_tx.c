/*
 * broadcast_tx.c - libconduit-p2p example: broadcast a transaction.
 *
 * Connects to every --connect peer, waits until at least one is ready (or
 * --min-peers are), sends the raw transaction to all ready peers with
 * cp2p_mgr_broadcast_tx() and reports the outcome: a `reject` naming the
 * txid means rejected (with the code and reason); silence for --wait-ms means
 * accepted or already known (BSV nodes never reject duplicates).
 *
 *   broadcast_tx [--regtest|--testnet|--stn] --connect HOST:PORT [...]
 *                [--wait-ms MS] [--min-peers N] <rawtx-hex>
 *
 * Exit status: 0 accepted, 1 rejected or no peer, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cd_util.h"
#include "conduit_p2p.h"

typedef struct app {
    struct event_base *base;
    uint8_t *raw;
    size_t len;
    size_t min_peers;
    int sent;
    int rc;
} app;

static void on_ready(const cp2p_ctx *ctx, const cp2p_version *v)
{
    app *a = ctx->user;
    (void)v;
    if (a->sent || cp2p_mgr_ready_count(ctx->mgr) < a->min_peers)
        return;
    uint8_t txid[32];
    char hx[65];
    int rc = cp2p_mgr_broadcast_tx(ctx->mgr, NULL, a->raw, a->len, txid);
    if (rc != CP2P_OK) {
        fprintf(stderr, "broadcast_tx: %s\n", cp2p_strerror(rc));
        event_base_loopbreak(a->base);
        return;
    }
    a->sent = 1;
    cd_hex_encode_rev(hx, txid, 32);
    printf("sent %s to %zu peer(s), waiting for rejects\n", hx, cp2p_mgr_ready_count(ctx->mgr));
    fflush(stdout);
}

static void on_broadcast(const cp2p_ctx *ctx, const uint8_t txid[32], cp2p_bcast_result res,
                         const cp2p_reject *rej)
{
    app *a = ctx->user;
    char hx[65];
    cd_hex_encode_rev(hx, txid, 32);
    if (res == CP2P_BCAST_ACCEPTED) {
        printf("accepted %s\n", hx);
        a->rc = 0;
    } else if (res == CP2P_BCAST_REJECTED) {
        printf("rejected %s by %s: code 0x%02x %s\n", hx,
               ctx->peer ? cp2p_peer_name(ctx->peer) : "?", rej->code, rej->reason);
    }
    event_base_loopbreak(a->base);
}

int main(int argc, char **argv)
{
    app a = {0};
    const btc_net *net = btc_net_get(BTC_NET_MAIN);
    const char *peers[16];
    size_t n_peers = 0;
    const char *hex = NULL;
    uint32_t wait_ms = 5000;
    a.min_peers = 1;
    a.rc = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--regtest") == 0)
            net = btc_net_get(BTC_NET_REGTEST);
        else if (strcmp(argv[i], "--testnet") == 0)
            net = btc_net_get(BTC_NET_TEST);
        else if (strcmp(argv[i], "--stn") == 0)
            net = btc_net_get(BTC_NET_STN);
        else if (strcmp(argv[i], "--connect") == 0 && i + 1 < argc && n_peers < 16)
            peers[n_peers++] = argv[++i];
        else if (strcmp(argv[i], "--wait-ms") == 0 && i + 1 < argc)
            wait_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--min-peers") == 0 && i + 1 < argc)
            a.min_peers = strtoul(argv[++i], NULL, 10);
        else if (argv[i][0] != '-' && !hex)
            hex = argv[i];
        else
            hex = NULL, n_peers = 0, i = argc;
    }
    if (!hex || n_peers == 0 || strlen(hex) % 2 || strlen(hex) < 2) {
        fprintf(stderr, "usage: broadcast_tx [--regtest|--testnet|--stn] --connect HOST:PORT "
                        "[...] [--wait-ms MS] [--min-peers N] <rawtx-hex>\n");
        return 2;
    }
    a.len = strlen(hex) / 2;
    a.raw = cd_xmalloc(a.len);
    if (cd_hex_decode(a.raw, a.len, hex) != 0) {
        fprintf(stderr, "broadcast_tx: not hex\n");
        return 2;
    }
    a.base = event_base_new();
    cp2p_options opt;
    cp2p_options_init(&opt, net);
    opt.broadcast_wait_ms = wait_ms;
    opt.tick_ms = 50;
    cp2p_handlers h = {0};
    h.on_ready = on_ready;
    h.on_broadcast = on_broadcast;
    cp2p_mgr *m = cp2p_mgr_new(a.base, &opt, &h, NULL, &a);
    if (!m)
        return 1;
    for (size_t i = 0; i < n_peers; i++)
        if (cp2p_mgr_add_peer(m, peers[i], NULL) != CP2P_OK) {
            fprintf(stderr, "broadcast_tx: bad peer %s\n", peers[i]);
            return 2;
        }
    event_base_dispatch(a.base);
    cp2p_mgr_free(m);
    event_base_free(a.base);
    free(a.raw);
    return a.rc;
}
