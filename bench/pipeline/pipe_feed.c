/*
 * pipe_feed.c - drives the real block pipeline (ring + forked writer and
 * merkle workers + LMDB) from block files or generated blocks, without the
 * p2p layer; prints throughput figures.
 *
 * Why it exists: it is both the end-to-end benchmark of the pipeline
 * (blocks/s, MB/s) and the standalone driver the functional tests use for the
 * storage, crash and big-block checks while the controller integration is
 * pending. Bytes are read(2) from the file straight into the ring, the way
 * the p2p sink recv()s into it; generated blocks are produced piecewise into
 * the ring (no whole-block buffer anywhere).
 *
 * usage: cd-pipe-feed --datadir DIR [--ring-size N] [--unit-size N] [--piece N]
 *          [--chain DIR] [--block FILE[:HEIGHT]]... [--gen SIZE[:TXSIZE]]...
 *          [--tamper] [--kill-at BYTES] [--no-skip] [--digest] [--quiet]
 *   sizes accept K, M, G suffixes.
 *   --chain DIR   every block of DIR/headers.txt in order, height = line no.
 *   --tamper      first send every block with one tx byte flipped (the merkle
 *                 worker must refuse it), then the honest bytes.
 *   --kill-at B   SIGKILL this (controller) process after B bytes were fed.
 *   --no-skip     also feed blocks already stored (default: resume, skip them)
 *   --digest      print "fed <hash> size=N sha256=<hex>" for every block fed
 * Exit: 0 if every block ended stored and verified, 1 otherwise, 2 usage.
 */
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"
#include "btc_merkle.h"
#include "btc_varint.h"
#include "cd_pipeline.h"
#include "cd_ring.h"
#include "cd_blockstore.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct feed_block {
    char path[4096]; /* file, or "" for generated */
    uint32_t height;
    uint64_t size;
    uint8_t hash[32];
    uint8_t header[80];
    int tamper; /* this pass has a flipped byte */
    uint64_t gen_txsize;
    uint64_t gen_seed;
    int retries;
} feed_block;

typedef struct feeder {
    struct event_base *base;
    cd_pipeline *pipe;
    cd_ring ring;
    struct event *ev;
    feed_block *q; /* queue */
    size_t nq, capq, next;
    feed_block *cur;
    int fd;
    uint64_t off; /* bytes of cur fed */
    /* generator state */
    uint64_t gen_tx_no, gen_in_tx, gen_txlen;
    uint8_t *gen_tx;
    uint64_t piece;
    uint64_t kill_at;
    uint64_t fed;
    size_t outstanding;
    int failed;
    int quiet;
    int digest; /* print sha256 of the bytes fed per block */
    cd_sha256_ctx dctx;
    uint64_t blocks_ok, bytes_ok;
} feeder;

static uint64_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    switch (*end) {
    case 'k':
    case 'K':
        v *= 1024;
        break;
    case 'm':
    case 'M':
        v *= 1024 * 1024;
        break;
    case 'g':
    case 'G':
        v *= 1024.0 * 1024 * 1024;
        break;
    default:
        break;
    }
    return (uint64_t)v;
}

static feed_block *q_push(feeder *f)
{
    if (f->nq == f->capq) {
        f->capq = f->capq ? f->capq * 2 : 64;
        f->q = cd_xrealloc(f->q, f->capq * sizeof(*f->q));
    }
    feed_block *b = &f->q[f->nq++];
    memset(b, 0, sizeof(*b));
    b->height = CD_IPC_HEIGHT_UNKNOWN;
    return b;
}

static int read_header(feed_block *b)
{
    int fd = open(b->path, O_RDONLY);
    if (fd < 0)
        return -1;
    struct stat st;
    int ok = fstat(fd, &st) == 0 && pread(fd, b->header, 80, 0) == 80;
    close(fd);
    if (!ok)
        return -1;
    b->size = (uint64_t)st.st_size;
    cd_sha256d(b->hash, b->header, 80);
    return 0;
}

/* ---- generated blocks: deterministic txs, two passes (root, then bytes) ---- */

static uint64_t xs(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Size of tx i of a generated block of `size` bytes with prefix `pre`. */
static uint64_t gen_tx_size(uint64_t size, uint64_t txsize, uint64_t pre, uint64_t i, uint64_t ntx)
{
    if (i + 1 < ntx)
        return txsize;
    return size - pre - txsize * (ntx - 1);
}

/* Builds tx i (len bytes, len >= 70) into out. */
static void gen_tx(uint8_t *out, uint64_t len, uint64_t seed, uint64_t i)
{
    /* version | 1 input: prev(32) idx(4) scriptlen script seq(4) | 1 output:
     * value(8) scriptlen(1)=0 | locktime(4) */
    uint64_t fixed = 4 + 1 + 32 + 4 + 4 + 1 + 8 + 1 + 4;
    uint64_t script = 0, o = 0;
    size_t vl = 0;
    for (o = 0; o < 4 && !vl; o++) {
        static const size_t lens[3] = {1, 3, 5};
        for (int t = 0; t < 3; t++) {
            uint64_t sc = len - fixed - lens[t] - o;
            if (btc_varint_size(sc) == lens[t]) {
                vl = lens[t];
                script = sc;
                break;
            }
        }
    }
    o--; /* the loop's last increment */
    uint8_t *p = out;
    cd_put_le32(p, 1);
    p += 4;
    *p++ = 1;
    uint64_t s = seed ^ (i * 0x9E3779B97F4A7C15ull) ^ 0x1234567;
    if (!s)
        s = 1;
    for (int k = 0; k < 4; k++) {
        uint64_t r = xs(&s);
        memcpy(p + 8 * k, &r, 8);
    }
    p += 32;
    cd_put_le32(p, (uint32_t)i);
    p += 4;
    p += btc_varint_write(p, script);
    uint64_t k = 0;
    for (; k + 8 <= script; k += 8) {
        uint64_t r = xs(&s);
        memcpy(p + k, &r, 8);
    }
    for (; k < script; k++)
        p[k] = (uint8_t)xs(&s);
    p += script;
    cd_put_le32(p, 0xffffffffu);
    p += 4;
    *p++ = 1;
    cd_put_le64(p, 5000000000ull);
    p += 8;
    *p++ = (uint8_t)o;
    memset(p, 0x51, o);
    p += o;
    cd_put_le32(p, 0);
    p += 4;
    cd_assert((uint64_t)(p - out) == len);
}

static int gen_prepare(feed_block *b)
{
    uint64_t txs = b->gen_txsize;
    if (txs < 100)
        txs = 100;
    b->gen_txsize = txs;
    uint64_t ntx = (b->size - 89) / txs;
    if (ntx == 0)
        ntx = 1;
    size_t vl = btc_varint_size(ntx);
    uint64_t pre = 80 + vl;
    uint64_t last = gen_tx_size(b->size, txs, pre, ntx - 1, ntx);
    if (last < 100 || last > 2 * txs + 100)
        return -1;
    uint8_t *tree = malloc(cd_merkle_tree_size(ntx) * 32);
    uint8_t *tx = malloc(2 * txs + 200);
    if (!tree || !tx)
        return -1;
    for (uint64_t i = 0; i < ntx; i++) {
        uint64_t l = gen_tx_size(b->size, txs, pre, i, ntx);
        gen_tx(tx, l, b->gen_seed, i);
        cd_sha256d(tree + 32 * i, tx, l);
    }
    CD_IGNORE(btc_merkle_tree_build(tree, (size_t)ntx, tree, NULL)); /* ntx >= 1 */
    memset(b->header, 0, 80);
    cd_put_le32(b->header, 0x20000000);
    memcpy(b->header + 36, tree + 32 * (cd_merkle_tree_size(ntx) - 1), 32);
    cd_put_le32(b->header + 68, 1700000000u);
    cd_put_le32(b->header + 72, 0x207fffff);
    cd_put_le64(b->header + 4, b->gen_seed); /* distinct prev per seed */
    cd_sha256d(b->hash, b->header, 80);
    free(tree);
    free(tx);
    return 0;
}

/* Produces the next n bytes of a generated block into dst. */
static void gen_bytes(feeder *f, uint8_t *dst, uint64_t n)
{
    feed_block *b = f->cur;
    uint64_t txs = b->gen_txsize;
    uint64_t ntx = (b->size - 89) / txs;
    if (ntx == 0)
        ntx = 1;
    uint64_t pre = 80 + btc_varint_size(ntx);
    while (n > 0) {
        if (f->off < pre) {
            uint8_t p[89];
            memcpy(p, b->header, 80);
            btc_varint_write(p + 80, ntx);
            uint64_t k = CD_MIN(n, pre - f->off);
            memcpy(dst, p + f->off, k);
            dst += k;
            n -= k;
            f->off += k;
            continue;
        }
        if (f->gen_in_tx == f->gen_txlen) {
            f->gen_txlen = gen_tx_size(b->size, txs, pre, f->gen_tx_no, ntx);
            gen_tx(f->gen_tx, f->gen_txlen, b->gen_seed, f->gen_tx_no);
            f->gen_tx_no++;
            f->gen_in_tx = 0;
        }
        uint64_t k = CD_MIN(n, f->gen_txlen - f->gen_in_tx);
        memcpy(dst, f->gen_tx + f->gen_in_tx, k);
        f->gen_in_tx += k;
        dst += k;
        n -= k;
        f->off += k;
    }
}

/* ---- feeding ---- */

static int start_next(feeder *f)
{
    while (f->next < f->nq) {
        feed_block *b = &f->q[f->next++];
        if (b->path[0]) {
            f->fd = open(b->path, O_RDONLY);
            if (f->fd < 0) {
                fprintf(stderr, "cd-pipe-feed: %s: %s\n", b->path, strerror(errno));
                f->failed = 1;
                continue;
            }
        } else {
            f->gen_tx_no = f->gen_in_tx = f->gen_txlen = 0;
            free(f->gen_tx);
            f->gen_tx = cd_xmalloc(2 * b->gen_txsize + 200);
        }
        feed_block *ctx = cd_xmalloc(sizeof(*ctx));
        *ctx = *b;
        if (cd_pipeline_begin(f->pipe, b->hash, b->height, b->size, ctx) != 0) {
            free(ctx);
            return -1;
        }
        f->cur = ctx;
        f->off = 0;
        if (f->digest)
            cd_sha256_init(&f->dctx);
        f->outstanding++;
        return 1;
    }
    return 0;
}

static void feed_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    feeder *f = arg;
    uint64_t budget = 64ull << 20;
    while (budget > 0) {
        if (!f->cur) {
            int r = start_next(f);
            if (r <= 0) {
                if (f->outstanding == 0)
                    event_base_loopexit(f->base, NULL);
                return;
            }
        }
        uint8_t *ptr;
        uint64_t n = cd_pipeline_space(f->pipe, &ptr);
        if (n == 0)
            return; /* space callback re-activates us */
        n = CD_MIN(n, f->piece);
        feed_block *b = f->cur;
        if (b->path[0]) {
            ssize_t r = read(f->fd, ptr, (size_t)n);
            if (r <= 0) {
                fprintf(stderr, "cd-pipe-feed: %s: short read\n", b->path);
                exit(1);
            }
            n = (uint64_t)r;
            f->off += n;
        } else {
            gen_bytes(f, ptr, n);
        }
        if (b->tamper && f->off > b->size - 5 && f->off - n <= b->size - 5)
            ptr[(b->size - 5) - (f->off - n)] ^= 0x55;
        f->fed += n;
        budget -= CD_MIN(budget, n);
        if (f->digest) {
            cd_sha256_update(&f->dctx, ptr, n);
            if (f->off == b->size) {
                uint8_t d[32];
                char hx[65], hh[65];
                cd_sha256_final(&f->dctx, d);
                cd_hex_encode(hx, d, 32);
                cd_hex_encode_rev(hh, b->hash, 32);
                printf("fed %s size=%" PRIu64 " sha256=%s%s\n", hh, b->size, hx,
                       b->tamper ? " (tampered)" : "");
            }
        }
        int rc = cd_pipeline_commit(f->pipe, n);
        if (f->kill_at && f->fed >= f->kill_at) {
            fprintf(stderr, "cd-pipe-feed: --kill-at reached: SIGKILL\n");
            fflush(NULL);
            raise(SIGKILL);
        }
        if (rc != 0 && f->cur == b) {
            /* fully received (rc 1); a failure (rc -1) was handled, and b
             * freed, by on_done() already */
            if (b->path[0])
                close(f->fd);
            f->fd = -1;
            f->cur = NULL;
        }
    }
    event_active(f->ev, EV_TIMEOUT, 0);
}

static void on_space(void *arg)
{
    feeder *f = arg;
    event_active(f->ev, EV_TIMEOUT, 0);
}

static void on_done(void *arg, const uint8_t hash[32], int status, void *ctx)
{
    feeder *f = arg;
    feed_block *b = ctx;
    char hex[65];
    cd_hex_encode_rev(hex, hash, 32);
    f->outstanding--;
    if (b == f->cur) {
        /* failed while still being received (e.g. a worker crash): stop
         * feeding it; it is queued again below */
        if (b->path[0] && f->fd >= 0)
            close(f->fd);
        f->fd = -1;
        f->cur = NULL;
    }
    if (!f->quiet || status != CD_PIPE_OK)
        printf("block %s %s%s\n", hex, cd_pipe_status_name(status), b->tamper ? " (tampered)" : "");
    if (b->tamper) {
        if (status != CD_PIPE_MERKLE) {
            fprintf(stderr, "cd-pipe-feed: tampered block %s was not refused\n", hex);
            f->failed = 1;
        }
        feed_block *nb = q_push(f);
        *nb = *b;
        nb->tamper = 0;
    } else if (status == CD_PIPE_RETRY && b->retries < 5) {
        feed_block *nb = q_push(f);
        *nb = *b;
        nb->retries++;
    } else if (status != CD_PIPE_OK) {
        f->failed = 1;
    } else {
        f->blocks_ok++;
        f->bytes_ok += b->size;
    }
    free(b);
    event_active(f->ev, EV_TIMEOUT, 0);
}

static void on_fatal(void *arg)
{
    feeder *f = arg;
    f->failed = 1;
    event_base_loopexit(f->base, NULL);
}

static int is_stored(const char *datadir, const uint8_t hash[32])
{
    char p1[4096], p2[4096];
    snprintf(p1, sizeof(p1), "%s/blocks", datadir);
    snprintf(p2, sizeof(p2), "%s/merkle", datadir);
    cd_blockstore *a = NULL, *m = NULL;
    cd_block_loc loc;
    cd_merkle_meta mm;
    int ok = cd_blockstore_open(p1, CD_BS_RDONLY, 0, &a) == 0 &&
             cd_blockstore_get(a, hash, &loc) == 0 &&
             cd_blockstore_open(p2, CD_BS_RDONLY, 0, &m) == 0 &&
             cd_blockstore_merkle_meta(m, hash, &mm) == 0;
    cd_blockstore_close(a);
    cd_blockstore_close(m);
    return ok;
}

static int usage(void)
{
    fprintf(stderr, "usage: cd-pipe-feed --datadir DIR [--ring-size N] [--unit-size N] "
                    "[--piece N] [--chain DIR] [--block FILE[:HEIGHT]]... "
                    "[--gen SIZE[:TXSIZE]]... [--tamper] [--kill-at BYTES] [--no-skip] "
                    "[--digest] [--quiet]\n");
    return 2;
}

int main(int argc, char **argv)
{
    cd_log_set_component("cd-pipe-feed");
    cd_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.net = btc_net_get(BTC_NET_REGTEST);
    cfg.ring_size = 64ull << 20;
    cfg.unit_size = 32ull << 20;
    feeder f;
    memset(&f, 0, sizeof(f));
    f.fd = -1;
    f.piece = 1ull << 20;
    int tamper = 0, skip = 1;
    uint64_t gen_seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--datadir") && v) {
            cfg.datadir = cd_xstrdup(v);
            i++;
        } else if (!strcmp(a, "--ring-size") && v) {
            cfg.ring_size = parse_size(v);
            i++;
        } else if (!strcmp(a, "--unit-size") && v) {
            cfg.unit_size = parse_size(v);
            i++;
        } else if (!strcmp(a, "--piece") && v) {
            f.piece = CD_MAX(parse_size(v), 1);
            i++;
        } else if (!strcmp(a, "--kill-at") && v) {
            f.kill_at = parse_size(v);
            i++;
        } else if (!strcmp(a, "--chain") && v) {
            char p[4096];
            snprintf(p, sizeof(p), "%s/headers.txt", v);
            FILE *hf = fopen(p, "r");
            if (!hf) {
                fprintf(stderr, "cd-pipe-feed: %s: %s\n", p, strerror(errno));
                return 2;
            }
            char line[256];
            uint32_t h = 0;
            while (fgets(line, sizeof(line), hf)) {
                line[strcspn(line, "\r\n")] = 0;
                if (!line[0])
                    continue;
                feed_block *b = q_push(&f);
                snprintf(b->path, sizeof(b->path), "%s/%s", v, line);
                b->height = h++;
            }
            fclose(hf);
            i++;
        } else if (!strcmp(a, "--block") && v) {
            feed_block *b = q_push(&f);
            snprintf(b->path, sizeof(b->path), "%s", v);
            char *colon = strrchr(b->path, ':');
            if (colon) {
                *colon = 0;
                b->height = (uint32_t)strtoul(colon + 1, NULL, 10);
            }
            i++;
        } else if (!strcmp(a, "--gen") && v) {
            feed_block *b = q_push(&f);
            b->size = parse_size(v);
            const char *colon = strchr(v, ':');
            b->gen_txsize = colon ? parse_size(colon + 1) : 100000;
            b->gen_seed = gen_seed++;
            i++;
        } else if (!strcmp(a, "--tamper")) {
            tamper = 1;
        } else if (!strcmp(a, "--no-skip")) {
            skip = 0;
        } else if (!strcmp(a, "--digest")) {
            f.digest = 1;
        } else if (!strcmp(a, "--quiet")) {
            f.quiet = 1;
        } else {
            return usage();
        }
    }
    if (!cfg.datadir)
        return usage();
    mkdir(cfg.datadir, 0700);
    /* resolve headers; drop stored blocks (resume) */
    size_t w = 0;
    for (size_t i = 0; i < f.nq; i++) {
        feed_block *b = &f.q[i];
        if (b->path[0] ? read_header(b) != 0 : gen_prepare(b) != 0) {
            fprintf(stderr, "cd-pipe-feed: cannot prepare block %s\n",
                    b->path[0] ? b->path : "(generated)");
            return 2;
        }
        if (skip && is_stored(cfg.datadir, b->hash))
            continue;
        b->tamper = tamper;
        f.q[w++] = *b;
    }
    size_t skipped = f.nq - w;
    f.nq = w;
    char name[CD_RING_NAME_MAX];
    if (cd_ring_name_for(cfg.datadir, name) != 0 ||
        cd_ring_create(&f.ring, name, cfg.ring_size) != 0)
        return 1;
    f.base = event_base_new();
    cd_pipeline_cbs cbs = {.arg = &f, .block_done = on_done, .space = on_space, .fatal = on_fatal};
    cd_supervisor *sup = cd_sup_new(f.base, &cfg);
    f.pipe = sup ? cd_pipeline_new(f.base, sup, &f.ring, &cfg, &cbs) : NULL;
    if (!f.pipe || cd_pipeline_start(f.pipe) != 0)
        return 1;
    f.ev = event_new(f.base, -1, 0, feed_cb, &f);
    printf("pids writer=%d merkle=%d controller=%d\n",
           (int)cd_pipeline_worker_pid(f.pipe, CD_WK_WRITER, 0),
           (int)cd_pipeline_worker_pid(f.pipe, CD_WK_MERKLE, 0), (int)getpid());
    fflush(stdout);
    double t0 = cd_now_s();
    event_active(f.ev, EV_TIMEOUT, 0);
    event_base_dispatch(f.base);
    double dt = cd_now_s() - t0;
    cd_pipeline_stats st;
    cd_pipeline_get_stats(f.pipe, &st);
    cd_pipeline_free(f.pipe);
    cd_sup_free(sup);
    event_free(f.ev);
    event_base_free(f.base);
    cd_ring_destroy(&f.ring);
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    printf("summary blocks=%" PRIu64 " skipped=%zu bytes=%" PRIu64 " seconds=%.3f "
           "MB/s=%.1f blocks/s=%.1f units=%" PRIu64 " redispatched=%" PRIu64
           " maxrss_controller_kb=%ld maxrss_worker_kb=%ld ring=%" PRIu64 "\n",
           f.blocks_ok, skipped, f.bytes_ok, dt, dt > 0 ? (double)f.bytes_ok / dt / 1e6 : 0.0,
           dt > 0 ? (double)f.blocks_ok / dt : 0.0, st.units, st.redispatched, self.ru_maxrss,
           kids.ru_maxrss, cfg.ring_size);
    free(f.q);
    free(f.gen_tx);
    free(cfg.datadir);
    return f.failed ? 1 : 0;
}
