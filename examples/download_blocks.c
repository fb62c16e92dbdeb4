/*
 * download_blocks.c - libconduit-p2p example: download blocks from several
 * peers.
 *
 * Connects to every --connect peer, syncs the header chain from the first
 * ready one, then requests every block from --from to the tip, spreading the
 * requests over the ready peers with cp2p_mgr_next_peer() (round-robin) and
 * keeping at most --window blocks in flight. Small blocks arrive whole
 * (on_block); blocks above --chunk-mb arrive as chunks cut at transaction
 * boundaries (on_block_chunk) so memory stays bounded whatever the size.
 * With --outdir each block is written to DIR/<hash>.
 *
 *   download_blocks [--regtest|--testnet|--stn] --connect HOST:PORT [...]
 *                   [--from HEIGHT] [--window N] [--chunk-mb N] [--outdir DIR]
 *
 * Only the public header is used (cc download_blocks.c $(pkg-config --cflags
 * --libs conduit-p2p)).
 */
#include <inttypes.h>
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
    struct event_base *base;
    const cp2p_net *net;
    uint8_t (*hashes)[32];
    size_t n, cap;
    int headers_done;
    size_t next; /* next height to request */
    size_t done; /* blocks completed */
    size_t from;
    size_t in_flight, window;
    const char *outdir;
    FILE *chunk_f;
    cp2p_mgr *mgr;
    uint64_t bytes;
} app;

static void request_headers(app *a, cp2p_peer *p)
{
    int64_t hs[64];
    uint8_t loc[64][32];
    size_t n = cp2p_locator_heights((int64_t)a->n - 1, hs, 64);
    for (size_t i = 0; i < n; i++)
        memcpy(loc[i], a->hashes[hs[i]], 32);
    if (cp2p_peer_getheaders(p, (const uint8_t(*)[32])loc, n, NULL) != CP2P_OK)
        fprintf(stderr, "%s: getheaders not sent\n", cp2p_peer_name(p));
}

static void request_blocks(app *a)
{
    while (a->in_flight < a->window && a->next < a->n) {
        cp2p_peer *p = cp2p_mgr_next_peer(a->mgr);
        if (!p)
            return;
        if (cp2p_peer_getdata_blocks(p, (const uint8_t(*)[32])a->hashes[a->next], 1) != CP2P_OK)
            return;
        a->next++;
        a->in_flight++;
    }
}

static void block_done(app *a, const uint8_t hash[32], uint64_t size, cp2p_peer *p)
{
    char hx[65];
    cp2p_hash_to_hex(hx, hash);
    printf("block %s %" PRIu64 " bytes from %s\n", hx, size, cp2p_peer_name(p));
    fflush(stdout);
    a->bytes += size;
    a->in_flight--;
    a->done++;
    if (a->done == a->n - a->from) {
        printf("downloaded %zu blocks, %" PRIu64 " bytes\n", a->done, a->bytes);
        event_base_loopbreak(a->base);
        return;
    }
    request_blocks(a);
}

static FILE *open_block(app *a, const uint8_t hash[32])
{
    char path[4096], hx[65];
    if (!a->outdir)
        return NULL;
    cp2p_hash_to_hex(hx, hash);
    snprintf(path, sizeof(path), "%s/%s", a->outdir, hx);
    return fopen(path, "wb");
}

static void on_block(const cp2p_ctx *ctx, const uint8_t *raw, size_t len, const uint8_t hash[32])
{
    app *a = ctx->user;
    FILE *f = open_block(a, hash);
    if (f) {
        fwrite(raw, 1, len, f);
        fclose(f);
    }
    block_done(a, hash, len, ctx->peer);
}

static void on_chunk(const cp2p_ctx *ctx, const cp2p_block_chunk *ch)
{
    app *a = ctx->user;
    if (ch->chunk_index == 0)
        a->chunk_f = open_block(a, ch->block_hash);
    if (a->chunk_f)
        fwrite(ch->data, 1, ch->len, a->chunk_f);
    if (ch->last) {
        if (a->chunk_f)
            fclose(a->chunk_f);
        a->chunk_f = NULL;
        block_done(a, ch->block_hash, ch->block_size, ctx->peer);
    }
}

static void on_headers(const cp2p_ctx *ctx, const uint8_t *hdrs, size_t n)
{
    app *a = ctx->user;
    if (a->headers_done)
        return;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *raw = hdrs + 80 * i;
        uint8_t hash[32];
        /* links to our tip and carries valid proof of work */
        if (cp2p_headers_check_chain(a->net, raw, 1, a->hashes[a->n - 1], NULL) != CP2P_OK)
            continue;
        cp2p_header_hash(raw, hash);
        if (a->n == a->cap) {
            a->cap *= 2;
            a->hashes = xrealloc(a->hashes, a->cap * 32);
        }
        memcpy(a->hashes[a->n++], hash, 32);
    }
    if (n == CP2P_MAX_HEADERS_PER_MSG) {
        request_headers(a, ctx->peer);
        return;
    }
    a->headers_done = 1;
    printf("header tip %zu; downloading blocks %zu..%zu from %zu peer(s)\n", a->n - 1, a->from,
           a->n - 1, cp2p_mgr_ready_count(ctx->mgr));
    if (a->from >= a->n) {
        event_base_loopbreak(a->base);
        return;
    }
    a->next = a->from;
    request_blocks(a);
}

static void on_ready(const cp2p_ctx *ctx, const cp2p_version *v)
{
    app *a = ctx->user;
    (void)v;
    if (!a->headers_done && a->n == 1)
        request_headers(a, ctx->peer);
    else if (a->headers_done)
        request_blocks(a);
}

static void on_disconnect(const cp2p_ctx *ctx, cp2p_reason r, const char *detail)
{
    fprintf(stderr, "%s: %s (%s)\n", cp2p_peer_name(ctx->peer), cp2p_reason_str(r), detail);
    /* a real downloader would re-request that peer's blocks elsewhere */
}

int main(int argc, char **argv)
{
    app a = {0};
    const char *peers[16];
    size_t n_peers = 0;
    size_t chunk_mb = 32;
    a.net = cp2p_net_by_name("main");
    a.window = 16;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int more = i + 1 < argc;
        if (strcmp(o, "--regtest") == 0)
            a.net = cp2p_net_by_name("regtest");
        else if (strcmp(o, "--testnet") == 0)
            a.net = cp2p_net_by_name("test");
        else if (strcmp(o, "--stn") == 0)
            a.net = cp2p_net_by_name("stn");
        else if (more && strcmp(o, "--connect") == 0 && n_peers < 16)
            peers[n_peers++] = argv[++i];
        else if (more && strcmp(o, "--from") == 0)
            a.from = strtoul(argv[++i], NULL, 10);
        else if (more && strcmp(o, "--window") == 0)
            a.window = strtoul(argv[++i], NULL, 10);
        else if (more && strcmp(o, "--chunk-mb") == 0)
            chunk_mb = strtoul(argv[++i], NULL, 10);
        else if (more && strcmp(o, "--outdir") == 0)
            a.outdir = argv[++i];
        else {
            n_peers = 0;
            break;
        }
    }
    if (n_peers == 0 || a.window == 0 || chunk_mb == 0) {
        fprintf(stderr, "usage: download_blocks [--regtest|--testnet|--stn] --connect HOST:PORT "
                        "[...] [--from H] [--window N] [--chunk-mb N] [--outdir DIR]\n");
        return 2;
    }
    a.cap = 1 << 16;
    a.hashes = xrealloc(NULL, a.cap * 32);
    cp2p_net_genesis_hash(a.net, a.hashes[0]);
    a.n = 1;
    a.base = event_base_new();
    cp2p_options opt;
    cp2p_options_init(&opt, a.net);
    opt.chunk_threshold = chunk_mb << 20;
    cp2p_handlers h = {0};
    h.on_ready = on_ready;
    h.on_headers = on_headers;
    h.on_block = on_block;
    h.on_block_chunk = on_chunk;
    h.on_disconnect = on_disconnect;
    a.mgr = cp2p_mgr_new(a.base, &opt, &h, NULL, &a);
    if (!a.mgr)
        return 1;
    for (size_t i = 0; i < n_peers; i++)
        if (cp2p_mgr_add_peer(a.mgr, peers[i], NULL) != CP2P_OK) {
            fprintf(stderr, "download_blocks: bad peer %s\n", peers[i]);
            return 2;
        }
    event_base_dispatch(a.base);
    int ok = a.headers_done && a.done == (a.n > a.from ? a.n - a.from : 0);
    cp2p_mgr_free(a.mgr);
    event_base_free(a.base);
    free(a.hashes);
    return ok ? 0 : 1;
}
