/*
 * bench_recv.c - receive throughput of a large block from a loopback peer
 * (DESIGN.md §8 target: >= 1.5 GB/s into caller memory).
 *
 * A forked sender plays the node: it accepts the library's connection, sends
 * version + verack, then the same large `block` message `--blocks` times
 * from one pre-built buffer (send() of a ready payload, nothing else). The
 * payload is a real-looking block: the header of mainnet block 413567 and
 * its 1557 transactions repeated up to --size bytes, so the chunked mode
 * really scans transactions.
 *
 * The receiver runs libconduit-p2p on one event_base in one of three modes:
 *   sink         block bytes recv()'d straight into a 64 MiB caller "ring"
 *                (wrapping), checksum streamed (sha256d) - the daemon's path;
 *   sink-nocheck the same with verify_block_checksum = 0;
 *   chunks       no sink: bounded 32 MiB chunk buffer cut at tx boundaries,
 *                tx offsets reported (the SPV/library path);
 *   chunks-nocheck  the same without the checksum.
 * and prints MB/s per mode (payload bytes / wall time from the first block
 * byte to the end of the last block, receiver side).
 *
 * usage: bench_recv [--size MB] [--blocks N] [--mode sink|sink-nocheck|chunks|chunks-nocheck|all]
 *                   [--ext]   (extmsg header: automatic above 4 GiB - 1; no checksum)
 */
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "btc_net.h"
#include "btc_varint.h"
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"
#include "conduit_p2p.h"
#include "cp2p_codec.h"

#define RING (64u << 20)

static const btc_net *NET;
static int EXT; /* --ext: send with the 44-byte extmsg header */

typedef struct rx {
    struct event_base *base;
    uint8_t *ring;
    size_t ring_pos;
    int blocks_done, blocks_want;
    int failed;
    uint64_t bytes;
    uint64_t txs;
    uint64_t t0, t1;
} rx;

static rx R;

/* ---- payload ---- */

/* Builds the payload (or with dry = 1 only computes its length). */
static uint8_t *build_payload(size_t target, size_t *len_out, int dry)
{
    char path[4096];
    const char *d = getenv("CD_SHARED_DATA");
    snprintf(path, sizeof(path), "%s/mainnet/block413567.raw", d ? d : "../shared/data");
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_recv: cannot open %s (set CD_SHARED_DATA)\n", path);
        exit(2);
    }
    uint8_t *blk = cd_xmalloc(1 << 20);
    size_t bl = fread(blk, 1, 1 << 20, f);
    fclose(f);
    uint64_t ntx = 0;
    int k = btc_varint_read(blk + 80, bl - 80, &ntx);
    if (bl < 81 || k <= 0) {
        fprintf(stderr, "bench_recv: %s is not a block\n", path);
        exit(2);
    }
    const uint8_t *txs = blk + 80 + k;
    size_t txs_len = bl - 80 - (size_t)k;
    size_t reps = (target + txs_len - 1) / txs_len;
    if (reps == 0)
        reps = 1;
    uint64_t total_tx = ntx * reps;
    size_t len = 80 + btc_varint_size(total_tx) + txs_len * reps;
    if (dry) {
        free(blk);
        *len_out = len;
        return NULL;
    }
    uint8_t *p = malloc(len);
    if (!p) {
        fprintf(stderr, "bench_recv: cannot allocate %zu bytes\n", len);
        exit(2);
    }
    memcpy(p, blk, 80);
    size_t off = 80 + btc_varint_write(p + 80, total_tx);
    for (size_t i = 0; i < reps; i++, off += txs_len)
        memcpy(p + off, txs, txs_len);
    free(blk);
    *len_out = len;
    return p;
}

/* ---- sender (child) ---- */

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n > (64u << 20) ? (64u << 20) : n, MSG_NOSIGNAL);
        if (w <= 0)
            _exit(1);
        p += w;
        n -= (size_t)w;
    }
}

static void sender(int lfd, size_t target, int blocks)
{
    size_t len;
    uint8_t *payload = build_payload(target, &len, 0);
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        _exit(1);
    cp2p_buf b = {0};
    cp2p_version v = {0};
    v.version = 70016;
    v.nonce = 7;
    strcpy(v.user_agent, "/bench-sender/");
    cp2p_enc_version(&b, &v, NULL, 0);
    uint8_t h[24];
    cp2p_msghdr_encode(h, NET->magic, "version", b.p, b.len);
    send_all(fd, h, 24);
    send_all(fd, b.p, b.len);
    cp2p_msghdr_encode(h, NET->magic, "verack", NULL, 0);
    send_all(fd, h, 24);
    cp2p_buf_free(&b);
    /* header with the real checksum (computed before timing starts) */
    uint8_t hx[CP2P_EXT_HEADER_LEN];
    size_t hl = CP2P_HEADER_LEN;
    if (EXT || len > 0xFFFFFFFFu) {
        cp2p_msghdr_encode_ext(hx, NET->magic, "block", len);
        hl = CP2P_EXT_HEADER_LEN;
    } else {
        cp2p_msghdr_encode(hx, NET->magic, "block", payload, len);
    }
    for (int i = 0; i < blocks; i++) {
        send_all(fd, hx, hl);
        send_all(fd, payload, len);
    }
    /* wait for the receiver to hang up */
    char c;
    while (recv(fd, &c, 1, 0) > 0)
        ;
    _exit(0);
}

/* ---- receiver ---- */

static int s_begin(const cp2p_ctx *c, uint64_t len, int ext)
{
    (void)c;
    (void)len;
    (void)ext;
    if (R.t0 == 0)
        R.t0 = cd_now_ns();
    return 1;
}

static void s_space(const cp2p_ctx *c, uint8_t **buf, size_t *avail)
{
    (void)c;
    if (R.ring_pos == RING)
        R.ring_pos = 0; /* consumers are infinitely fast here */
    *buf = R.ring + R.ring_pos;
    *avail = RING - R.ring_pos;
}

static void s_data(const cp2p_ctx *c, size_t n)
{
    (void)c;
    R.ring_pos += n;
    R.bytes += n;
}

static void done_one(void)
{
    if (++R.blocks_done == R.blocks_want) {
        R.t1 = cd_now_ns();
        event_base_loopbreak(R.base);
    }
}

static void s_end(const cp2p_ctx *c, int ok, cp2p_reason why, const uint8_t hash[32])
{
    (void)c;
    (void)hash;
    if (!ok) {
        fprintf(stderr, "bench_recv: block failed: %s\n", cp2p_reason_str(why));
        R.failed = 1;
        event_base_loopbreak(R.base);
        return;
    }
    done_one();
}

static void on_chunk(const cp2p_ctx *c, const cp2p_block_chunk *ch)
{
    (void)c;
    if (R.t0 == 0)
        R.t0 = cd_now_ns();
    R.bytes += ch->len;
    R.txs += ch->n_tx;
    if (ch->last)
        done_one();
}

static void on_disc(const cp2p_ctx *c, cp2p_reason r, const char *d)
{
    (void)c;
    fprintf(stderr, "bench_recv: disconnected: %s (%s)\n", cp2p_reason_str(r), d);
    R.failed = 1;
    event_base_loopbreak(R.base);
}

static int run_mode(const char *mode, size_t target, size_t len, int blocks)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    socklen_t al = sizeof(a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 1) ||
        getsockname(lfd, (struct sockaddr *)&a, &al)) {
        perror("bench_recv: listen");
        return 1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        sender(lfd, target, blocks);
    close(lfd);

    memset(&R, 0, sizeof(R));
    R.blocks_want = blocks;
    R.base = event_base_new();
    cp2p_options o;
    cp2p_options_init(&o, cp2p_net_by_name(NET->name));
    o.reconnect = 0;
    o.verify_block_checksum = strstr(mode, "nocheck") == NULL;
    cp2p_handlers h = {0};
    h.on_block_chunk = on_chunk;
    h.on_disconnect = on_disc;
    cp2p_block_sink sk = {s_begin, s_space, s_data, s_end};
    int use_sink = strncmp(mode, "sink", 4) == 0;
    if (use_sink)
        R.ring = cd_xmalloc(RING);
    cp2p_mgr *m = cp2p_mgr_new(R.base, &o, &h, use_sink ? &sk : NULL, NULL);
    char hp[64];
    snprintf(hp, sizeof(hp), "127.0.0.1:%u", ntohs(a.sin_port));
    if (!m || cp2p_mgr_add_peer(m, hp, NULL)) {
        fprintf(stderr, "bench_recv: cannot start the client\n");
        return 1;
    }
    event_base_dispatch(R.base);
    cp2p_mgr_free(m);
    event_base_free(R.base);
    free(R.ring);
    int st;
    waitpid(pid, &st, 0);
    if (R.failed || R.t1 == 0)
        return 1;
    double s = (double)(R.t1 - R.t0) / 1e9;
    printf("%-13s %d x %.1f MB in %.3f s: %8.1f MB/s", mode, blocks, (double)len / 1e6, s,
           (double)R.bytes / 1e6 / s);
    if (R.txs)
        printf(" (%.2f M tx/s scanned)", (double)R.txs / 1e6 / s);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf(", receiver peak RSS %ld MB\n", ru.ru_maxrss / 1024);
    return 0;
}

int main(int argc, char **argv)
{
    size_t size_mb = 1024;
    int blocks = 2;
    const char *mode = "all";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            size_mb = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--blocks") == 0 && i + 1 < argc)
            blocks = atoi(argv[++i]);
        else if (strcmp(argv[i], "--ext") == 0)
            EXT = 1;
        else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
            mode = argv[++i];
        else {
            fprintf(stderr, "usage: bench_recv [--size MB] [--blocks N] "
                            "[--mode sink|sink-nocheck|chunks|chunks-nocheck|all]\n");
            return 2;
        }
    }
    cd_log_set_level(CD_LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    NET = btc_net_get(BTC_NET_REGTEST);
    /* the payload is built in the sender process only, so the receiver's
     * peak RSS shows what the library itself holds */
    size_t len;
    build_payload(size_mb << 20, &len, 1);
    printf("bench_recv: %d block(s) of %zu bytes from a loopback sender process\n", blocks, len);
    int rc = 0;
    const char *modes[] = {"sink", "sink-nocheck", "chunks", "chunks-nocheck"};
    for (size_t i = 0; i < CD_ARRAY_LEN(modes); i++)
        if (strcmp(mode, "all") == 0 || strcmp(mode, modes[i]) == 0)
            rc |= run_mode(modes[i], size_mb << 20, len, blocks);
    return rc;
}
