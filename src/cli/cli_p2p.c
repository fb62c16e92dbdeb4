/*
 * cli_p2p.c - conduit-cli subcommands that talk to a node over p2p:
 * `headers`, `getblock`, `broadcast`, `ping`.
 *
 * Each one is a small program on libconduit-p2p: one event_base, one peer
 * manager with one peer (--connect host:port, default 127.0.0.1 and the
 * network's port), no reconnects, and a deadline (--timeout seconds) after
 * which the command fails. They exist for operators checking a node and as
 * the library's own end-to-end exercise in the functional tests.
 *
 * `broadcast` prints what the node did with the transaction, status word
 * first (libconduit-p2p's cp2p_bcast_status; issue 13 §3), and with
 * `--wait mined` waits until conduitd has indexed it in a block (the index
 * is read with the lookups of src/query/, over --pg-conninfo).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "btc_header.h"
#include "btc_net.h"
#include "cd_config.h"
#include "cd_escape.h"
#include "cd_log.h"
#include "cd_lookup.h"
#include "cd_pg.h"
#include "cd_util.h"
#include "conduit_p2p.h"

int cd_cli_p2p_headers(int argc, char **argv);
int cd_cli_p2p_getblock(int argc, char **argv);
int cd_cli_p2p_broadcast(int argc, char **argv);
int cd_cli_p2p_ping(int argc, char **argv);

typedef struct cli_p2p {
    const btc_net *net;
    const char *connect;
    double timeout_s;
    const char *out;
    int quiet;
    int count;
    uint32_t wait_ms;
    size_t chunk_kb; /* getblock: chunk threshold (0 = default) */
    const char *arg; /* positional argument */
    struct event_base *base;
    cp2p_mgr *mgr;
    cp2p_peer *peer;
    int done;
    int rc;
    /* headers */
    uint8_t (*hashes)[32];
    size_t n_hashes, cap_hashes;
    FILE *fout;
    /* getblock */
    uint8_t want[32];
    uint64_t written;
    /* ping */
    int pongs;
    /* broadcast */
    int wait_mined;
    const char *pg_conninfo;
    const char *datadir;
    uint8_t txid[32];
    int started, sent;
    cp2p_bcast_status outcome; /* final library status (SENT while none) */
    char outcome_line[1024];
    struct event *poll;
    cd_pg *pg;
    cd_lookup *lk;
} cli_p2p;

static void finish(cli_p2p *c, int rc)
{
    if (!c->done) {
        c->done = 1;
        c->rc = rc;
    }
    event_base_loopbreak(c->base);
}

static int parse_common(cli_p2p *c, int argc, char **argv, const char *usage)
{
    c->net = btc_net_get(BTC_NET_MAIN);
    c->timeout_s = 60;
    c->count = 1;
    c->wait_ms = 5000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--regtest") == 0)
            c->net = btc_net_get(BTC_NET_REGTEST);
        else if (strcmp(a, "--testnet") == 0)
            c->net = btc_net_get(BTC_NET_TEST);
        else if (strcmp(a, "--stn") == 0)
            c->net = btc_net_get(BTC_NET_STN);
        else if (strcmp(a, "--mainnet") == 0)
            c->net = btc_net_get(BTC_NET_MAIN);
        else if (strcmp(a, "--connect") == 0 && i + 1 < argc)
            c->connect = argv[++i];
        else if (strcmp(a, "--timeout") == 0 && i + 1 < argc)
            c->timeout_s = atof(argv[++i]);
        else if (strcmp(a, "--out") == 0 && i + 1 < argc)
            c->out = argv[++i];
        else if (strcmp(a, "--count") == 0 && i + 1 < argc)
            c->count = atoi(argv[++i]);
        else if (strcmp(a, "--chunk-kb") == 0 && i + 1 < argc)
            c->chunk_kb = strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--wait-ms") == 0 && i + 1 < argc)
            c->wait_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--wait") == 0 && i + 1 < argc) {
            const char *w = argv[++i];
            if (strcmp(w, "mined") == 0)
                c->wait_mined = 1;
            else if (strcmp(w, "seen") != 0) {
                fprintf(stderr, "conduit-cli %s: --wait takes seen or mined\n", argv[0]);
                return 2;
            }
        } else if (strcmp(a, "--pg-conninfo") == 0 && i + 1 < argc)
            c->pg_conninfo = argv[++i];
        else if (strcmp(a, "--datadir") == 0 && i + 1 < argc)
            c->datadir = argv[++i];
        else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0)
            c->quiet = 1;
        else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0)
            cd_log_set_level(CD_LOG_DEBUG);
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: conduit-cli %s %s\n"
                   "common options: --regtest|--testnet|--stn  --connect HOST:PORT  "
                   "--timeout SECONDS  -v\n",
                   argv[0], usage);
            return 1;
        } else if (a[0] != '-' && !c->arg)
            c->arg = a;
        else {
            fprintf(stderr, "conduit-cli %s: unknown option '%s'\nusage: conduit-cli %s %s\n",
                    argv[0], a, argv[0], usage);
            return 2;
        }
    }
    if (c->timeout_s <= 0 || c->count <= 0) {
        fprintf(stderr, "conduit-cli %s: --timeout and --count must be positive\n", argv[0]);
        return 2;
    }
    return 0;
}

static void on_timeout(evutil_socket_t fd, short w, void *arg)
{
    cli_p2p *c = arg;
    (void)fd;
    (void)w;
    fprintf(stderr, "conduit-cli: timed out after %.1f s\n", c->timeout_s);
    finish(c, 1);
}

/* The library's lines go through our logger (stderr, "conduit-cli"). */
static void cli_log(void *user, cp2p_log_level level, const char *msg)
{
    (void)user;
    cd_log((cd_log_level)level, "%s", msg);
}

static void on_disconnect(const cp2p_ctx *ctx, cp2p_reason r, const char *detail)
{
    cli_p2p *c = ctx->user;
    if (c->done)
        return;
    fprintf(stderr, "conduit-cli: peer %s disconnected: %s (%s)\n", cp2p_peer_name(ctx->peer),
            cp2p_reason_str(r), detail);
    finish(c, 1);
}

/* Runs the loop with one peer until a handler calls finish() or the
 * deadline (deadline_s from now) calls timeout_cb. */
static int run_with_deadline(cli_p2p *c, const cp2p_handlers *h, const cp2p_options *opt_in,
                             double deadline_s, event_callback_fn timeout_cb)
{
    cp2p_options opt;
    char def[64];
    if (opt_in)
        opt = *opt_in;
    else
        cp2p_options_init(&opt, NULL);
    opt.net = cp2p_net_by_name(c->net->name);
    opt.reconnect = 0;
    opt.log_fn = cli_log;
    opt.log_level = (cp2p_log_level)cd_log_get_level();
    if (c->chunk_kb)
        opt.chunk_threshold = c->chunk_kb * 1024;
    opt.handshake_timeout_ms = (uint32_t)(c->timeout_s * 1000);
    c->base = event_base_new();
    if (!c->base) {
        fprintf(stderr, "conduit-cli: event_base_new failed\n");
        return 1;
    }
    c->mgr = cp2p_mgr_new(c->base, &opt, h, NULL, c);
    if (!c->mgr) {
        event_base_free(c->base);
        return 1;
    }
    if (!c->connect) {
        snprintf(def, sizeof(def), "127.0.0.1:%u", c->net->default_port);
        c->connect = def;
    }
    int rc = cp2p_mgr_add_peer(c->mgr, c->connect, &c->peer);
    if (rc) {
        fprintf(stderr, "conduit-cli: --connect %s: %s\n", cd_escape_str(c->connect),
                cp2p_strerror(rc));
        cp2p_mgr_free(c->mgr);
        event_base_free(c->base);
        return 2;
    }
    struct event *t = evtimer_new(c->base, timeout_cb, c);
    struct timeval tv = {(time_t)deadline_s,
                         (suseconds_t)((deadline_s - (double)(time_t)deadline_s) * 1e6)};
    evtimer_add(t, &tv);
    c->rc = 1;
    event_base_dispatch(c->base);
    event_free(t);
    if (c->poll)
        event_free(c->poll);
    cp2p_mgr_free(c->mgr);
    event_base_free(c->base);
    return c->rc;
}

static int run(cli_p2p *c, const cp2p_handlers *h, const cp2p_options *opt_in)
{
    return run_with_deadline(c, h, opt_in, c->timeout_s, on_timeout);
}

/* ---- headers ---------------------------------------------------------------------- */

static void headers_request(cli_p2p *c, cp2p_peer *p)
{
    int64_t hs[64];
    uint8_t loc[64][32];
    size_t n = cp2p_locator_heights((int64_t)c->n_hashes - 1, hs, 64);
    for (size_t i = 0; i < n; i++)
        memcpy(loc[i], c->hashes[hs[i]], 32);
    int rc = cp2p_peer_getheaders(p, (const uint8_t(*)[32])loc, n, NULL);
    if (rc) {
        fprintf(stderr, "conduit-cli headers: getheaders: %s\n", cp2p_strerror(rc));
        finish(c, 1);
    }
}

static void headers_ready(const cp2p_ctx *ctx, const cp2p_version *v)
{
    (void)v;
    headers_request(ctx->user, ctx->peer);
}

static void headers_got(const cp2p_ctx *ctx, const uint8_t *hdrs, size_t n)
{
    cli_p2p *c = ctx->user;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *raw = hdrs + 80 * i;
        btc_header h;
        uint8_t hash[32];
        char hx[65];
        btc_header_parse(&h, raw);
        btc_header_hash(raw, hash);
        cd_hex_encode_rev(hx, hash, 32);
        if (memcmp(h.prev, c->hashes[c->n_hashes - 1], 32) != 0) {
            /* a header we already have (overlap) is fine; anything else is not */
            int known = 0;
            for (size_t k = c->n_hashes; k-- > 0 && !known;)
                known = memcmp(c->hashes[k], hash, 32) == 0;
            if (known)
                continue;
            fprintf(stderr, "conduit-cli headers: header %s at height %zu does not connect\n", hx,
                    c->n_hashes);
            finish(c, 1);
            return;
        }
        int prc = btc_check_pow(hash, h.bits, c->net);
        if (prc) {
            fprintf(stderr,
                    "conduit-cli headers: header %s at height %zu fails proof of work "
                    "(%d)\n",
                    hx, c->n_hashes, prc);
            finish(c, 1);
            return;
        }
        if (c->n_hashes == c->cap_hashes) {
            c->cap_hashes *= 2;
            c->hashes = cd_xrealloc(c->hashes, c->cap_hashes * 32);
        }
        memcpy(c->hashes[c->n_hashes], hash, 32);
        if (!c->quiet)
            fprintf(c->fout, "%zu %s\n", c->n_hashes, hx);
        c->n_hashes++;
    }
    if (n == CP2P_MAX_HEADERS_PER_MSG) {
        headers_request(c, ctx->peer);
        return;
    }
    char hx[65];
    cd_hex_encode_rev(hx, c->hashes[c->n_hashes - 1], 32);
    fprintf(stderr, "synced %zu headers, tip height %zu %s, all linked and proof of work valid\n",
            c->n_hashes - 1, c->n_hashes - 1, hx);
    finish(c, 0);
}

int cd_cli_p2p_headers(int argc, char **argv)
{
    cli_p2p c;
    memset(&c, 0, sizeof(c));
    int rc = parse_common(&c, argc, argv, "[--out FILE] [--quiet]");
    if (rc)
        return rc == 1 ? 0 : rc;
    c.fout = stdout;
    if (c.out && !(c.fout = fopen(c.out, "w"))) {
        fprintf(stderr, "conduit-cli headers: %s: %s\n", c.out, strerror(errno));
        return 1;
    }
    c.cap_hashes = 4096;
    c.hashes = cd_xmalloc(c.cap_hashes * 32);
    memcpy(c.hashes[0], c.net->genesis_hash, 32);
    c.n_hashes = 1;
    if (!c.quiet) {
        char hx[65];
        cd_hex_encode_rev(hx, c.hashes[0], 32);
        fprintf(c.fout, "0 %s\n", hx);
    }
    cp2p_handlers h = {0};
    h.on_ready = headers_ready;
    h.on_headers = headers_got;
    h.on_disconnect = on_disconnect;
    rc = run(&c, &h, NULL);
    if (c.fout != stdout && fclose(c.fout) != 0)
        rc = 1;
    free(c.hashes);
    return rc;
}

/* ---- getblock --------------------------------------------------------------------- */

static void getblock_ready(const cp2p_ctx *ctx, const cp2p_version *v)
{
    cli_p2p *c = ctx->user;
    (void)v;
    int rc = cp2p_peer_getdata_blocks(ctx->peer, (const uint8_t(*)[32])c->want, 1);
    if (rc) {
        fprintf(stderr, "conduit-cli getblock: getdata: %s\n", cp2p_strerror(rc));
        finish(c, 1);
    }
}

static int write_all(cli_p2p *c, const uint8_t *p, size_t n)
{
    if (fwrite(p, 1, n, c->fout) != n) {
        fprintf(stderr, "conduit-cli getblock: write %s: %s\n", c->out, strerror(errno));
        finish(c, 1);
        return -1;
    }
    c->written += n;
    return 0;
}

static void getblock_done(cli_p2p *c, const uint8_t hash[32], uint64_t size, uint64_t ntx)
{
    char hx[65];
    cd_hex_encode_rev(hx, hash, 32);
    if (fflush(c->fout) != 0) {
        fprintf(stderr, "conduit-cli getblock: %s: %s\n", c->out, strerror(errno));
        finish(c, 1);
        return;
    }
    if (!c->quiet)
        printf("%s %" PRIu64 " bytes %" PRIu64 " txs\n", hx, size, ntx);
    finish(c, 0);
}

static void getblock_block(const cp2p_ctx *ctx, const uint8_t *raw, size_t len,
                           const uint8_t hash[32])
{
    cli_p2p *c = ctx->user;
    if (memcmp(hash, c->want, 32) != 0)
        return; /* not ours (unsolicited) */
    if (write_all(c, raw, len) == 0)
        getblock_done(c, hash, len, 0 /* not counted for whole blocks */);
}

static void getblock_chunk(const cp2p_ctx *ctx, const cp2p_block_chunk *ch)
{
    cli_p2p *c = ctx->user;
    if (memcmp(ch->block_hash, c->want, 32) != 0)
        return;
    if (ch->block_offset != c->written) {
        fprintf(stderr,
                "conduit-cli getblock: chunk at offset %" PRIu64 " after %" PRIu64 " bytes\n",
                ch->block_offset, c->written);
        finish(c, 1);
        return;
    }
    if (write_all(c, ch->data, ch->len))
        return;
    if (ch->last)
        getblock_done(c, ch->block_hash, ch->block_size, ch->tx_count);
}

static void getblock_abort(const cp2p_ctx *ctx, const uint8_t hash[32], cp2p_reason why)
{
    cli_p2p *c = ctx->user;
    (void)hash;
    fprintf(stderr, "conduit-cli getblock: block download aborted: %s\n", cp2p_reason_str(why));
    finish(c, 1);
}

int cd_cli_p2p_getblock(int argc, char **argv)
{
    cli_p2p c;
    memset(&c, 0, sizeof(c));
    int rc = parse_common(&c, argc, argv, "<block-hash> --out FILE [--chunk-kb N]");
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!c.arg || !c.out || cd_hex_decode_rev(c.want, 32, c.arg) != 0) {
        fprintf(stderr, "usage: conduit-cli getblock <block-hash (64 hex)> --out FILE\n");
        return 2;
    }
    c.fout = fopen(c.out, "wb");
    if (!c.fout) {
        fprintf(stderr, "conduit-cli getblock: %s: %s\n", c.out, strerror(errno));
        return 1;
    }
    cp2p_handlers h = {0};
    h.on_ready = getblock_ready;
    h.on_block = getblock_block;
    h.on_block_chunk = getblock_chunk;
    h.on_block_abort = getblock_abort;
    h.on_disconnect = on_disconnect;
    rc = run(&c, &h, NULL);
    if (fclose(c.fout) != 0)
        rc = 1;
    if (rc)
        remove(c.out);
    return rc;
}

/* ---- broadcast -------------------------------------------------------------------- *
 *
 * Exit status: 0 SEEN_ON_NETWORK (MINED with --wait mined), 1 REJECTED,
 * 3 MISSING_INPUTS, 4 TIMEOUT (sent; neither rejected nor seen), 5 NOT_SENT,
 * 6 seen but not mined within --timeout, 2 usage. */

#define BC_EXIT_REJECTED  1
#define BC_EXIT_MISSING   3
#define BC_EXIT_TIMEOUT   4
#define BC_EXIT_NOT_SENT  5
#define BC_EXIT_NOT_MINED 6

static int bcast_exit(cp2p_bcast_status st)
{
    switch (st) {
    case CP2P_BCAST_SEEN_ON_NETWORK:
        return 0;
    case CP2P_BCAST_REJECTED:
        return BC_EXIT_REJECTED;
    case CP2P_BCAST_MISSING_INPUTS:
        return BC_EXIT_MISSING;
    case CP2P_BCAST_NOT_SENT:
        return BC_EXIT_NOT_SENT;
    default:
        return BC_EXIT_TIMEOUT;
    }
}

/* Is the tx in a block of the index yet? 1 (line printed), 0, -1 (error
 * printed). */
static int bcast_mined(cli_p2p *c)
{
    cd_lookup_tx tx;
    if (!c->pg) {
        /* Only pg_conninfo matters to a session (cd_pg_params_init);
         * cd_pg_new copies it, so the stack object may go. */
        cd_config cfg;
        cd_config_init(&cfg);
        char *dflt = cfg.pg_conninfo;
        cfg.pg_conninfo = (char *)c->pg_conninfo;
        c->pg = cd_pg_new(&cfg, NULL);
        cfg.pg_conninfo = dflt;
        cd_config_free(&cfg);
        cd_pg_set_retry(c->pg, 1, 100, NULL);
        c->lk = cd_lookup_new(c->datadir, c->net, 0);
    }
    if (!cd_pg_conn(c->pg) || PQstatus(cd_pg_conn(c->pg)) != CONNECTION_OK) {
        if (cd_pg_connect(c->pg) != CD_PG_OK) {
            fprintf(stderr, "conduit-cli broadcast: cannot connect to PostgreSQL\n");
            return -1;
        }
        cd_lookup_set_pg(c->lk, cd_pg_conn(c->pg));
    }
    int rc = cd_lookup_tx_find(c->lk, c->txid, 0, &tx);
    if (rc == CD_LOOKUP_ENOTFOUND)
        return 0;
    if (rc != CD_LOOKUP_OK) {
        fprintf(stderr, "conduit-cli broadcast: %s\n", cd_lookup_error(c->lk));
        return -1;
    }
    char hx[65], bh[65];
    cd_hex_encode_rev(hx, c->txid, 32);
    cd_hex_encode_rev(bh, tx.block_hash, 32);
    printf("MINED %s height %d block %s\n", hx, (int)tx.height, bh);
    fflush(stdout);
    return 1;
}

static void bcast_poll(evutil_socket_t fd, short w, void *arg)
{
    cli_p2p *c = arg;
    (void)fd;
    (void)w;
    int m = bcast_mined(c);
    if (m > 0)
        finish(c, 0);
    else if (m < 0)
        finish(c, 1);
}

static void bcast_timeout(evutil_socket_t fd, short w, void *arg)
{
    cli_p2p *c = arg;
    char hx[65];
    (void)fd;
    (void)w;
    cd_hex_encode_rev(hx, c->txid, 32);
    if (c->outcome == CP2P_BCAST_SEEN_ON_NETWORK) {
        printf("%s (not mined within %.1f s)\n", c->outcome_line, c->timeout_s);
        finish(c, BC_EXIT_NOT_MINED);
    } else if (c->outcome != CP2P_BCAST_SENT) {
        printf("%s\n", c->outcome_line);
        finish(c, bcast_exit(c->outcome));
    } else {
        /* sent: nothing heard (SENT at the deadline is the library's TIMEOUT) */
        printf("%s %s (%s within %.1f s)\n", c->sent ? "TIMEOUT" : "NOT_SENT", hx,
               c->sent ? "no reject, no getdata for a parent and no inv back"
                       : "no broadcast connection to the node",
               c->timeout_s);
        finish(c, c->sent ? BC_EXIT_TIMEOUT : BC_EXIT_NOT_SENT);
    }
    fflush(stdout);
}

static void bcast_ready(const cp2p_ctx *ctx, const cp2p_version *v)
{
    cli_p2p *c = ctx->user;
    (void)v;
    if (c->started)
        return;
    size_t n = strlen(c->arg) / 2, got = 0;
    uint8_t *raw = cd_xmalloc(n ? n : 1);
    int rc = cp2p_hex_decode(raw, n, &got, c->arg);
    if (rc == CP2P_OK)
        rc = cp2p_mgr_broadcast_tx(ctx->mgr, ctx->peer, raw, got, c->txid);
    free(raw);
    if (rc) {
        fprintf(stderr, "conduit-cli broadcast: %s\n",
                rc == CP2P_EINVAL ? "not a transaction" : cp2p_strerror(rc));
        finish(c, 2);
        return;
    }
    c->started = 1;
    if (c->wait_mined) {
        c->poll = event_new(c->base, -1, EV_PERSIST, bcast_poll, c);
        struct timeval tv = {0, 500000};
        event_add(c->poll, &tv);
    }
}

static void bcast_report(const cp2p_ctx *ctx, const cp2p_bcast_report *r)
{
    cli_p2p *c = ctx->user;
    char hx[65], line[900];
    cd_hex_encode_rev(hx, r->txid, 32);
    if (!r->final) {
        c->sent |= r->status == CP2P_BCAST_SENT;
        if (!c->quiet)
            fprintf(stderr, "%s %s (%s)\n", cp2p_bcast_status_str(r->status), hx, r->detail);
        return;
    }
    switch (r->status) {
    case CP2P_BCAST_REJECTED:
        snprintf(line, sizeof(line), "REJECTED %s code 0x%02x %s", hx,
                 r->reject ? r->reject->code : 0, r->reject ? r->reject->reason : "");
        break;
    case CP2P_BCAST_MISSING_INPUTS: {
        char ph[65];
        cd_hex_encode_rev(ph, r->parent, 32);
        snprintf(line, sizeof(line), "MISSING_INPUTS %s parent %s (the node holds it as an orphan)",
                 hx, ph);
        break;
    }
    case CP2P_BCAST_SEEN_ON_NETWORK:
        snprintf(line, sizeof(line), "SEEN_ON_NETWORK %s via %s", hx,
                 r->seen_via ? r->seen_via : "?");
        break;
    default:
        snprintf(line, sizeof(line), "%s %s (%s)", cp2p_bcast_status_str(r->status), hx, r->detail);
        break;
    }
    c->outcome = r->status;
    snprintf(c->outcome_line, sizeof(c->outcome_line), "%s", line);
    if (c->wait_mined &&
        (r->status == CP2P_BCAST_SEEN_ON_NETWORK || r->status == CP2P_BCAST_TIMEOUT)) {
        if (!c->quiet)
            fprintf(stderr, "%s; waiting until it is mined\n", line);
        return; /* the poll or the deadline ends it */
    }
    printf("%s\n", line);
    fflush(stdout);
    finish(c, bcast_exit(r->status));
}

static void bcast_disconnect(const cp2p_ctx *ctx, cp2p_reason r, const char *detail)
{
    cli_p2p *c = ctx->user;
    if (c->done || c->started)
        return; /* the broadcast has its own connection; ours only watches */
    on_disconnect(ctx, r, detail);
}

int cd_cli_p2p_broadcast(int argc, char **argv)
{
    cli_p2p c;
    memset(&c, 0, sizeof(c));
    int rc = parse_common(&c, argc, argv,
                          "<rawtx-hex> [--wait seen|mined] [--timeout S] [--pg-conninfo S] "
                          "[--datadir DIR]");
    if (rc)
        return rc == 1 ? 0 : rc;
    size_t hl = c.arg ? strlen(c.arg) : 0;
    if (hl < 2 || hl % 2) {
        fprintf(stderr, "usage: conduit-cli broadcast <rawtx-hex> [--wait seen|mined]\n");
        return 2;
    }
    uint8_t *tmp = malloc(hl / 2);
    if (!tmp || cd_hex_decode(tmp, hl / 2, c.arg)) {
        free(tmp);
        fprintf(stderr, "conduit-cli broadcast: not a hex string\n");
        return 2;
    }
    free(tmp);
    if (c.wait_mined && !c.pg_conninfo) {
        fprintf(stderr, "conduit-cli broadcast: --wait mined reads the index: give "
                        "--pg-conninfo\n");
        return 2;
    }
    int explicit_timeout = 0;
    for (int i = 1; i < argc; i++)
        explicit_timeout |= strcmp(argv[i], "--timeout") == 0;
    if (!explicit_timeout)
        c.timeout_s = c.wait_mined ? 600 : (c.wait_ms ? c.wait_ms : 10000) / 1000.0;
    cp2p_options opt;
    cp2p_options_init(&opt, NULL);
    opt.relay = 1; /* our connection watches for the node's inv of the tx */
    opt.broadcast_wait_ms = (uint32_t)(c.timeout_s * 1000);
    if (c.wait_mined && opt.broadcast_wait_ms > 60000)
        opt.broadcast_wait_ms = 60000;
    opt.tick_ms = 50;
    cp2p_handlers h = {0};
    h.on_ready = bcast_ready;
    h.on_broadcast = bcast_report;
    h.on_disconnect = bcast_disconnect;
    c.outcome = CP2P_BCAST_SENT;
    rc = run_with_deadline(&c, &h, &opt, c.timeout_s, bcast_timeout);
    cd_lookup_free(c.lk);
    cd_pg_free(c.pg);
    return rc;
}

/* ---- ping ------------------------------------------------------------------------- */

static void ping_ready(const cp2p_ctx *ctx, const cp2p_version *v)
{
    cli_p2p *c = ctx->user;
    if (!c->quiet)
        printf("connected to %s: version %d, user agent \"%s\", height %d, services 0x%" PRIx64
               "\n",
               cp2p_peer_name(ctx->peer), v->version, v->user_agent, v->start_height, v->services);
    if (cp2p_peer_ping(ctx->peer) != CP2P_OK)
        finish(c, 1);
}

static void ping_pong(const cp2p_ctx *ctx, uint64_t nonce, int64_t rtt_us)
{
    cli_p2p *c = ctx->user;
    (void)nonce;
    printf("pong from %s: %.3f ms\n", cp2p_peer_name(ctx->peer), (double)rtt_us / 1000.0);
    fflush(stdout);
    if (++c->pongs >= c->count)
        finish(c, 0);
    else if (cp2p_peer_ping(ctx->peer) != CP2P_OK)
        finish(c, 1);
}

int cd_cli_p2p_ping(int argc, char **argv)
{
    cli_p2p c;
    memset(&c, 0, sizeof(c));
    int rc = parse_common(&c, argc, argv, "[--count N]");
    if (rc)
        return rc == 1 ? 0 : rc;
    cp2p_handlers h = {0};
    h.on_ready = ping_ready;
    h.on_pong = ping_pong;
    h.on_disconnect = on_disconnect;
    return run(&c, &h, NULL);
}
