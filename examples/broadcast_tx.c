/*
 * broadcast_tx.c - libconduit-p2p example: broadcast a transaction and say
 * what the node did with it.
 *
 * Connects to every --connect peer (with relay on, so that each connection
 * watches for the node announcing the transaction back), waits until at
 * least --min-peers are ready, then calls cp2p_mgr_broadcast_tx(): the
 * library sends the transaction on a connection of its own and reports
 * SENT, then one of
 *   SEEN_ON_NETWORK  the node accepted and relayed it (an inv came back)
 *   REJECTED         the node's reject, with its code and reason
 *   MISSING_INPUTS   the node asked for a parent: it holds the tx as an orphan
 *   TIMEOUT          nothing within --wait-ms: not accepted (e.g. a double
 *                    spend of a mempool tx; the node says nothing for those)
 *   NOT_SENT         no connection to the node could be made
 *
 *   broadcast_tx [--regtest|--testnet|--stn] --connect HOST:PORT [...]
 *                [--wait-ms MS] [--min-peers N] <rawtx-hex>
 *
 * Only the public header is used (cc broadcast_tx.c $(pkg-config --cflags
 * --libs conduit-p2p)). Exit status: 0 SEEN_ON_NETWORK, 1 any other
 * outcome, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

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
    int rc = cp2p_mgr_broadcast_tx(ctx->mgr, ctx->peer, a->raw, a->len, txid);
    if (rc != CP2P_OK) {
        fprintf(stderr, "broadcast_tx: %s\n", cp2p_strerror(rc));
        event_base_loopbreak(a->base);
        return;
    }
    a->sent = 1;
    cp2p_hash_to_hex(hx, txid);
    printf("broadcasting %s via %s (%zu peer(s) watching)\n", hx, cp2p_peer_name(ctx->peer),
           cp2p_mgr_ready_count(ctx->mgr));
    fflush(stdout);
}

static void on_broadcast(const cp2p_ctx *ctx, const cp2p_bcast_report *r)
{
    app *a = ctx->user;
    char hx[65];
    cp2p_hash_to_hex(hx, r->txid);
    printf("%s %s", cp2p_bcast_status_str(r->status), hx);
    if (r->status == CP2P_BCAST_REJECTED && r->reject)
        printf(" code 0x%02x %s", r->reject->code, r->reject->reason);
    else if (r->status == CP2P_BCAST_MISSING_INPUTS) {
        char ph[65];
        cp2p_hash_to_hex(ph, r->parent);
        printf(" parent %s", ph);
    } else if (r->status == CP2P_BCAST_SEEN_ON_NETWORK && r->seen_via)
        printf(" via %s", r->seen_via);
    printf("\n");
    fflush(stdout);
    if (!r->final)
        return;
    a->rc = r->status == CP2P_BCAST_SEEN_ON_NETWORK ? 0 : 1;
    event_base_loopbreak(a->base);
}

int main(int argc, char **argv)
{
    app a = {0};
    const cp2p_net *net = cp2p_net_by_name("main");
    const char *peers[16];
    size_t n_peers = 0;
    const char *hex = NULL;
    uint32_t wait_ms = 10000;
    a.min_peers = 1;
    a.rc = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--regtest") == 0)
            net = cp2p_net_by_name("regtest");
        else if (strcmp(argv[i], "--testnet") == 0)
            net = cp2p_net_by_name("test");
        else if (strcmp(argv[i], "--stn") == 0)
            net = cp2p_net_by_name("stn");
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
    a.raw = malloc(strlen(hex) / 2);
    if (!a.raw || cp2p_hex_decode(a.raw, strlen(hex) / 2, &a.len, hex) != CP2P_OK) {
        fprintf(stderr, "broadcast_tx: not hex\n");
        return 2;
    }
    a.base = event_base_new();
    cp2p_options opt;
    cp2p_options_init(&opt, net);
    opt.relay = 1; /* our connections watch for the node's inv of the tx */
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
