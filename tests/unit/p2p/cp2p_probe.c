/*
 * cp2p_probe.c - a scriptable libconduit-p2p client for the functional tests
 * (tests/functional/test_p2p*.py).
 *
 * It connects to every --connect peer with one manager and prints one line
 * per library event on stdout (flushed), and executes one command per line
 * read from stdin, so a Python test can drive several peers against the
 * simulated node and observe exactly what the library reported:
 *
 *   events:  READY <i> <version> <ua>        DISCONNECT <i> <reason> <detail>
 *            HEADERS <i> <n> <first> <last>  BLOCK <i> <hash> <size>
 *            CHUNK <i> <hash> <index> <offset> <len> <n_tx> <last>
 *            ABORT <i> <hash> <reason>       SINK <i> <ok> <hash> <size> <pauses>
 *            REJECT <i> <code> <txid|-> <reason>   BCAST <txid> <result>
 *            PONG <i>  INV <i> <n>  TX <i> <txid>  NOTFOUND <i> <n>  ADDR <i> <n>
 *            ERR <command> <text>
 *   commands: getheaders <i> <hash>...   getblock <i> <hash>...   gettx <i> <txid>...
 *             getaddr <i>
 *             broadcast <i|-1> <hex>     ping <i>   close <i>   stats <i>   quit
 *
 * Options: --regtest (default) | --testnet | --stn, --connect H:P (repeat),
 * --chunk N (chunk threshold), --outdir D (write blocks/chunks there as
 * <hash>.blk and tx offsets as <hash>.offsets), --sink N (receive blocks into
 * a sink of N bytes that is drained on a timer: exercises back-pressure),
 * --ping-ms, --pong-timeout-ms, --stall-ms, --handshake-ms, --bcast-ms,
 * --no-reconnect, --max-recv N, --relay (version relay flag: receive tx invs).
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"
#include "btc_net.h"
#include "conduit_p2p.h"

/* the public network type of a btc_net */
#define CNET(n) cp2p_net_by_name((n)->name)

#define MAX_PEERS 16

typedef struct probe {
    struct event_base *base;
    cp2p_mgr *mgr;
    cp2p_peer *peers[MAX_PEERS];
    size_t n_peers;
    const char *outdir;
    FILE *blk_f; /* chunk/sink output of the current block */
    FILE *off_f;
    /* sink */
    uint8_t *ring;
    size_t ring_size, ring_used;
    cp2p_peer *sink_waiting;
    uint64_t sink_len, sink_got;
    unsigned sink_pauses;
    struct event *drain_ev;
    char line[1 << 20];
    size_t line_len;
} probe;

static probe P;

static int pidx(const cp2p_peer *p)
{
    for (size_t i = 0; i < P.n_peers; i++)
        if (P.peers[i] == p)
            return (int)i;
    return -1;
}

static void out(const char *fmt, ...) CD_PRINTF(1, 2);
static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void hexr(char out_[65], const uint8_t h[32])
{
    cd_hex_encode_rev(out_, h, 32);
}

static FILE *open_out(const uint8_t hash[32], const char *ext, const char *mode)
{
    char path[4096], hx[65];
    if (!P.outdir)
        return NULL;
    hexr(hx, hash);
    snprintf(path, sizeof(path), "%s/%s.%s", P.outdir, hx, ext);
    return fopen(path, mode);
}

/* ---- handlers ---- */

static void h_ready(const cp2p_ctx *c, const cp2p_version *v)
{
    out("READY %d %d %s", pidx(c->peer), v->version, v->user_agent);
}

static void h_disc(const cp2p_ctx *c, cp2p_reason r, const char *detail)
{
    out("DISCONNECT %d %s %s", pidx(c->peer), cp2p_reason_str(r), detail);
}

static void h_headers(const cp2p_ctx *c, const uint8_t *hdrs, size_t n)
{
    char a[65] = "-", b[65] = "-";
    uint8_t h[32];
    if (n) {
        cd_sha256d(h, hdrs, 80);
        hexr(a, h);
        cd_sha256d(h, hdrs + 80 * (n - 1), 80);
        hexr(b, h);
    }
    out("HEADERS %d %zu %s %s", pidx(c->peer), n, a, b);
}

static void h_block(const cp2p_ctx *c, const uint8_t *raw, size_t len, const uint8_t hash[32])
{
    char hx[65];
    hexr(hx, hash);
    FILE *f = open_out(hash, "blk", "wb");
    if (f) {
        fwrite(raw, 1, len, f);
        fclose(f);
    }
    out("BLOCK %d %s %zu", pidx(c->peer), hx, len);
}

static void h_chunk(const cp2p_ctx *c, const cp2p_block_chunk *ch)
{
    char hx[65];
    hexr(hx, ch->block_hash);
    if (ch->chunk_index == 0 && P.outdir) {
        if (P.blk_f)
            fclose(P.blk_f);
        if (P.off_f)
            fclose(P.off_f);
        P.blk_f = open_out(ch->block_hash, "blk", "wb");
        P.off_f = open_out(ch->block_hash, "offsets", "w");
    }
    if (P.blk_f)
        fwrite(ch->data, 1, ch->len, P.blk_f);
    for (size_t i = 0; P.off_f && i < ch->n_tx; i++)
        fprintf(P.off_f, "%" PRIu64 "\n", ch->tx_offsets[i]);
    if (ch->last) { /* close before reporting: the test reads the files next */
        if (P.blk_f)
            fclose(P.blk_f);
        if (P.off_f)
            fclose(P.off_f);
        P.blk_f = P.off_f = NULL;
    }
    out("CHUNK %d %s %u %" PRIu64 " %zu %zu %d", pidx(c->peer), hx, ch->chunk_index,
        ch->block_offset, ch->len, ch->n_tx, ch->last);
}

static void h_abort(const cp2p_ctx *c, const uint8_t hash[32], cp2p_reason why)
{
    char hx[65];
    hexr(hx, hash);
    out("ABORT %d %s %s", pidx(c->peer), hx, cp2p_reason_str(why));
}

static void h_reject(const cp2p_ctx *c, const cp2p_reject *r)
{
    char hx[65] = "-";
    if (r->has_hash)
        hexr(hx, r->hash);
    out("REJECT %d 0x%02x %s %s", pidx(c->peer), r->code, hx, r->reason);
}

/* the library's lines go to our stderr through cd_log, as in the daemon */
static void probe_log(void *user, cp2p_log_level level, const char *msg)
{
    (void)user;
    cd_log((cd_log_level)level, "%s", msg);
}

static void h_bcast(const cp2p_ctx *c, const cp2p_bcast_report *r)
{
    char hx[65];
    (void)c;
    hexr(hx, r->txid);
    out("BCAST %s %s%s", hx, cp2p_bcast_status_str(r->status), r->final ? "" : " (progress)");
}

static void h_pong(const cp2p_ctx *c, uint64_t nonce, int64_t rtt)
{
    (void)nonce;
    (void)rtt;
    out("PONG %d", pidx(c->peer));
}

static void h_inv(const cp2p_ctx *c, const cp2p_inv *v, size_t n)
{
    (void)v;
    out("INV %d %zu", pidx(c->peer), n);
}

static void h_notfound(const cp2p_ctx *c, const cp2p_inv *v, size_t n)
{
    (void)v;
    out("NOTFOUND %d %zu", pidx(c->peer), n);
}

static void h_addrmsg(const cp2p_ctx *c, const cp2p_addr *a, size_t n)
{
    (void)a;
    out("ADDR %d %zu", pidx(c->peer), n);
}

static void h_tx(const cp2p_ctx *c, const uint8_t *raw, size_t len, const uint8_t txid[32])
{
    char hx[65];
    (void)raw;
    (void)len;
    hexr(hx, txid);
    out("TX %d %s", pidx(c->peer), hx);
}

/* ---- sink: a small "ring" drained by a timer, to exercise back-pressure ---- */

static int s_begin(const cp2p_ctx *c, uint64_t len, int ext)
{
    (void)c;
    (void)ext;
    P.sink_len = len;
    P.sink_got = 0;
    P.sink_pauses = 0;
    P.ring_used = 0;
    if (P.blk_f)
        fclose(P.blk_f);
    P.blk_f = NULL;
    if (P.outdir) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/sink.partial", P.outdir);
        P.blk_f = fopen(path, "wb");
    }
    return 1;
}

static void s_space(const cp2p_ctx *c, uint8_t **buf, size_t *avail)
{
    if (P.ring_used == P.ring_size) {
        P.sink_waiting = c->peer;
        P.sink_pauses++;
        *buf = NULL;
        *avail = 0;
        return;
    }
    *buf = P.ring + P.ring_used;
    *avail = P.ring_size - P.ring_used;
}

static void s_data(const cp2p_ctx *c, size_t n)
{
    (void)c;
    if (P.blk_f)
        fwrite(P.ring + P.ring_used, 1, n, P.blk_f);
    P.ring_used += n;
    P.sink_got += n;
}

static void s_end(const cp2p_ctx *c, int ok, cp2p_reason why, const uint8_t hash[32])
{
    char hx[65];
    hexr(hx, hash);
    if (P.blk_f) {
        fclose(P.blk_f);
        P.blk_f = NULL;
        if (ok && P.outdir) {
            char a[4096], b[4096];
            snprintf(a, sizeof(a), "%s/sink.partial", P.outdir);
            snprintf(b, sizeof(b), "%s/%s.blk", P.outdir, hx);
            rename(a, b);
        }
    }
    P.ring_used = 0;
    out("SINK %d %d %s %" PRIu64 " %u %s", pidx(c->peer), ok, hx, P.sink_got, P.sink_pauses,
        cp2p_reason_str(why));
}

static void on_drain(evutil_socket_t fd, short w, void *arg)
{
    (void)fd;
    (void)w;
    (void)arg;
    /* the "consumers" acknowledged everything: the ring is empty again */
    P.ring_used = 0;
    if (P.sink_waiting) {
        cp2p_peer *p = P.sink_waiting;
        P.sink_waiting = NULL;
        cp2p_peer_resume_read(p);
    }
}

/* ---- commands ---- */

static cp2p_peer *arg_peer(const char *s)
{
    long i = strtol(s ? s : "", NULL, 10);
    if (!s || i < 0 || (size_t)i >= P.n_peers)
        return NULL;
    return P.peers[i];
}

static void command(char *line)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r", &save);
    if (!cmd)
        return;
    if (strcmp(cmd, "quit") == 0) {
        event_base_loopbreak(P.base);
        return;
    }
    char *a1 = strtok_r(NULL, " \t\r", &save);
    if (strcmp(cmd, "broadcast") == 0) {
        char *hex = strtok_r(NULL, " \t\r", &save);
        cp2p_peer *p = a1 && strcmp(a1, "-1") == 0 ? NULL : arg_peer(a1);
        size_t n = hex ? strlen(hex) / 2 : 0;
        uint8_t *raw = malloc(n ? n : 1);
        if (!hex || cd_hex_decode(raw, n, hex)) {
            out("ERR broadcast bad-hex");
        } else {
            int rc = cp2p_mgr_broadcast_tx(P.mgr, p, raw, n, NULL);
            if (rc)
                out("ERR broadcast %s", cp2p_strerror(rc));
        }
        free(raw);
        return;
    }
    cp2p_peer *p = arg_peer(a1);
    if (!p) {
        out("ERR %s no-such-peer", cmd);
        return;
    }
    int rc = 0;
    if (strcmp(cmd, "getheaders") == 0 || strcmp(cmd, "getblock") == 0 ||
        strcmp(cmd, "gettx") == 0) {
        uint8_t hs[64][32];
        size_t n = 0;
        char *h;
        while (n < 64 && (h = strtok_r(NULL, " \t\r", &save)))
            if (cd_hex_decode_rev(hs[n], 32, h) == 0)
                n++;
        if (cmd[3] == 'h')
            rc = cp2p_peer_getheaders(p, (const uint8_t(*)[32])hs, n, NULL);
        else if (cmd[3] == 't')
            rc = cp2p_peer_getdata_txs(p, (const uint8_t(*)[32])hs, n);
        else
            rc = cp2p_peer_getdata_blocks(p, (const uint8_t(*)[32])hs, n);
    } else if (strcmp(cmd, "getaddr") == 0) {
        rc = cp2p_peer_send(p, "getaddr", NULL, 0);
    } else if (strcmp(cmd, "ping") == 0) {
        rc = cp2p_peer_ping(p);
    } else if (strcmp(cmd, "close") == 0) {
        cp2p_peer_close(p);
    } else if (strcmp(cmd, "stats") == 0) {
        const cp2p_peer_stats *s = cp2p_peer_stats_get(p);
        out("STATS %d %s in=%" PRIu64 " out=%" PRIu64 " msgs_in=%" PRIu64 " blocks=%" PRIu64
            " headers=%" PRIu64 " connects=%" PRIu64 " disconnects=%" PRIu64 " maxsend=%u",
            pidx(p), cp2p_peer_state_str(cp2p_peer_state_get(p)), s->bytes_in, s->bytes_out,
            s->msgs_in, s->blocks_in, s->headers_in, s->connects, s->disconnects,
            cp2p_peer_max_send(p));
    } else {
        out("ERR %s unknown-command", cmd);
        return;
    }
    if (rc)
        out("ERR %s %s", cmd, cp2p_strerror(rc));
}

static void on_stdin(evutil_socket_t fd, short w, void *arg)
{
    (void)w;
    (void)arg;
    ssize_t n = read(fd, P.line + P.line_len, sizeof(P.line) - 1 - P.line_len);
    if (n <= 0) {
        event_base_loopbreak(P.base);
        return;
    }
    P.line_len += (size_t)n;
    char *start = P.line;
    char *nl;
    while ((nl = memchr(start, '\n', P.line_len - (size_t)(start - P.line)))) {
        *nl = 0;
        command(start);
        start = nl + 1;
    }
    P.line_len -= (size_t)(start - P.line);
    memmove(P.line, start, P.line_len);
    if (P.line_len == sizeof(P.line) - 1)
        P.line_len = 0;
}

int main(int argc, char **argv)
{
    const btc_net *net = btc_net_get(BTC_NET_REGTEST);
    const char *conn[MAX_PEERS];
    size_t n_conn = 0;
    size_t sink = 0;
    cp2p_options opt;

    cd_log_set_component("cp2p_probe");
    cd_log_set_level(CD_LOG_INFO);
    cp2p_options_init(&opt, CNET(net));
    opt.tick_ms = 50;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--testnet") == 0)
            net = btc_net_get(BTC_NET_TEST);
        else if (strcmp(a, "--stn") == 0)
            net = btc_net_get(BTC_NET_STN);
        else if (strcmp(a, "--regtest") == 0)
            net = btc_net_get(BTC_NET_REGTEST);
        else if (strcmp(a, "--relay") == 0)
            opt.relay = 1;
        else if (strcmp(a, "--no-reconnect") == 0)
            opt.reconnect = 0;
        else if (strcmp(a, "-v") == 0)
            cd_log_set_level(CD_LOG_DEBUG);
        else if (v && strcmp(a, "--connect") == 0 && n_conn < MAX_PEERS)
            conn[n_conn++] = argv[++i];
        else if (v && strcmp(a, "--chunk") == 0)
            opt.chunk_threshold = strtoull(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--outdir") == 0)
            P.outdir = argv[++i];
        else if (v && strcmp(a, "--sink") == 0)
            sink = strtoull(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--ping-ms") == 0)
            opt.ping_interval_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--pong-timeout-ms") == 0)
            opt.ping_timeout_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--stall-ms") == 0)
            opt.stall_timeout_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--handshake-ms") == 0)
            opt.handshake_timeout_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--bcast-ms") == 0)
            opt.broadcast_wait_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--reconnect-ms") == 0)
            opt.reconnect_min_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--ban-ms") == 0)
            opt.ban_min_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--stable-ms") == 0)
            opt.stable_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--min-block-rate") == 0)
            opt.min_block_rate = strtoull(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--block-grace-ms") == 0)
            opt.block_grace_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--msg-rate") == 0)
            opt.max_msg_rate = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--max-send-queue") == 0)
            opt.max_send_queue = strtoull(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--max-recv") == 0)
            opt.max_recv_payload = (uint32_t)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "cp2p_probe: bad argument '%s'\n", a);
            return 2;
        }
    }
    opt.net = CNET(net);
    opt.log_fn = probe_log;
    opt.log_level = (cp2p_log_level)cd_log_get_level();
    P.base = event_base_new();
    cp2p_handlers h = {
        .on_ready = h_ready,
        .on_disconnect = h_disc,
        .on_headers = h_headers,
        .on_block = h_block,
        .on_block_chunk = h_chunk,
        .on_block_abort = h_abort,
        .on_reject = h_reject,
        .on_broadcast = h_bcast,
        .on_pong = h_pong,
        .on_inv = h_inv,
        .on_notfound = h_notfound,
        .on_addr = h_addrmsg,
        .on_tx = h_tx,
    };
    cp2p_block_sink sk = {s_begin, s_space, s_data, s_end};
    if (sink) {
        P.ring_size = sink;
        P.ring = cd_xmalloc(sink);
        P.drain_ev = event_new(P.base, -1, EV_PERSIST, on_drain, NULL);
        struct timeval tv = {0, 2000};
        event_add(P.drain_ev, &tv);
    }
    P.mgr = cp2p_mgr_new(P.base, &opt, &h, sink ? &sk : NULL, NULL);
    if (!P.mgr)
        return 2;
    for (size_t i = 0; i < n_conn; i++) {
        int rc = cp2p_mgr_add_peer(P.mgr, conn[i], &P.peers[P.n_peers]);
        if (rc) {
            fprintf(stderr, "cp2p_probe: %s: %s\n", conn[i], cp2p_strerror(rc));
            return 2;
        }
        P.n_peers++;
    }
    struct event *in = event_new(P.base, 0, EV_READ | EV_PERSIST, on_stdin, NULL);
    event_add(in, NULL);
    event_base_dispatch(P.base);
    event_free(in);
    cp2p_mgr_free(P.mgr);
    if (P.drain_ev)
        event_free(P.drain_ev);
    free(P.ring);
    event_base_free(P.base);
    out("BYE");
    return 0;
}
