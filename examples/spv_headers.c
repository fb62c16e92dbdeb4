/*
 * spv_headers.c - libconduit-p2p example: SPV header sync.
 *
 * Connects to one node, downloads every block header from genesis with
 * getheaders/headers (a block locator built from the headers we hold, 2000 per
 * reply), checks that each header links to the previous one and carries valid
 * proof of work, prints the tip, and with --follow keeps running and prints
 * new tips the node announces (we send sendheaders, so announcements arrive as
 * `headers`; a block `inv` triggers a getheaders).
 *
 *   spv_headers [--regtest|--testnet|--stn] [--connect HOST:PORT] [--follow]
 *
 * It uses only the public header, conduit_p2p.h; build it against an
 * installed library with
 *   cc spv_headers.c $(pkg-config --cflags --libs conduit-p2p) -o spv_headers
 *
 * The Python library's equivalent is examples/headers_sync.py of conduit-p2p.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "conduit_p2p.h"

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return q;
}

typedef struct app {
    const cp2p_net *net;
    uint8_t (*hashes)[32]; /* hashes[h] = block hash at height h */
    size_t n, cap;
    int follow;
    int synced;
    struct event_base *base;
} app;

static void request_more(app *a, cp2p_peer *p)
{
    int64_t heights[64];
    uint8_t loc[64][32];
    size_t n = cp2p_locator_heights((int64_t)a->n - 1, heights, 64);
    for (size_t i = 0; i < n; i++)
        memcpy(loc[i], a->hashes[heights[i]], 32);
    if (cp2p_peer_getheaders(p, (const uint8_t(*)[32])loc, n, NULL) != CP2P_OK)
        event_base_loopbreak(a->base);
}

static void on_ready(const cp2p_ctx *ctx, const cp2p_version *v)
{
    app *a = ctx->user;
    printf("connected to %s (%s, height %d)\n", cp2p_peer_name(ctx->peer), v->user_agent,
           v->start_height);
    request_more(a, ctx->peer);
}

static void on_headers(const cp2p_ctx *ctx, const uint8_t *hdrs, size_t n)
{
    app *a = ctx->user;
    for (size_t i = 0; i < n; i++) {
        cp2p_header h;
        uint8_t hash[32];
        cp2p_header_parse(&h, hdrs + 80 * i);
        cp2p_header_hash(hdrs + 80 * i, hash);
        if (memcmp(h.prev, a->hashes[a->n - 1], 32) != 0)
            continue; /* already known, or a fork we do not track in this example */
        if (cp2p_header_check_pow(a->net, hdrs + 80 * i) != CP2P_OK) {
            fprintf(stderr, "header at height %zu has invalid proof of work: dropping peer\n",
                    a->n);
            cp2p_peer_close(ctx->peer);
            return;
        }
        if (a->n == a->cap) {
            a->cap *= 2;
            a->hashes = xrealloc(a->hashes, a->cap * 32);
        }
        memcpy(a->hashes[a->n++], hash, 32);
        if (a->synced) {
            char hx[65];
            cp2p_hash_to_hex(hx, hash);
            printf("new tip %zu %s\n", a->n - 1, hx);
        }
    }
    if (n == CP2P_MAX_HEADERS_PER_MSG) {
        request_more(a, ctx->peer);
        return;
    }
    if (!a->synced) {
        char hx[65];
        cp2p_hash_to_hex(hx, a->hashes[a->n - 1]);
        printf("synced: tip height %zu %s\n", a->n - 1, hx);
        fflush(stdout);
        a->synced = 1;
        if (!a->follow)
            event_base_loopbreak(a->base);
    }
}

static void on_inv(const cp2p_ctx *ctx, const cp2p_inv *inv, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (inv[i].type == CP2P_INV_BLOCK) {
            request_more(ctx->user, ctx->peer);
            return;
        }
}

static void on_disconnect(const cp2p_ctx *ctx, cp2p_reason r, const char *detail)
{
    fprintf(stderr, "%s: disconnected: %s (%s); reconnecting\n", cp2p_peer_name(ctx->peer),
            cp2p_reason_str(r), detail);
}

int main(int argc, char **argv)
{
    app a = {0};
    const char *connect = NULL;
    a.net = cp2p_net_by_name("main");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--regtest") == 0)
            a.net = cp2p_net_by_name("regtest");
        else if (strcmp(argv[i], "--testnet") == 0)
            a.net = cp2p_net_by_name("test");
        else if (strcmp(argv[i], "--stn") == 0)
            a.net = cp2p_net_by_name("stn");
        else if (strcmp(argv[i], "--follow") == 0)
            a.follow = 1;
        else if (strcmp(argv[i], "--connect") == 0 && i + 1 < argc)
            connect = argv[++i];
        else {
            fprintf(stderr, "usage: spv_headers [--regtest|--testnet|--stn] "
                            "[--connect HOST:PORT] [--follow]\n");
            return 2;
        }
    }
    a.cap = 1 << 16;
    a.hashes = xrealloc(NULL, a.cap * 32);
    cp2p_net_genesis_hash(a.net, a.hashes[0]);
    a.n = 1;
    a.base = event_base_new();

    cp2p_options opt;
    cp2p_options_init(&opt, a.net);
    cp2p_handlers h = {0};
    h.on_ready = on_ready;
    h.on_headers = on_headers;
    h.on_inv = on_inv;
    h.on_disconnect = on_disconnect;
    cp2p_mgr *m = cp2p_mgr_new(a.base, &opt, &h, NULL, &a);
    char def[32];
    snprintf(def, sizeof(def), "127.0.0.1:%u", cp2p_net_default_port(a.net));
    if (!m || cp2p_mgr_add_peer(m, connect ? connect : def, NULL) != CP2P_OK) {
        fprintf(stderr, "spv_headers: cannot start\n");
        return 1;
    }
    event_base_dispatch(a.base);
    cp2p_mgr_free(m);
    event_base_free(a.base);
    free(a.hashes);
    return a.synced ? 0 : 1;
}
