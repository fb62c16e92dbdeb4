/*
 * fuzz_hdrchain.c - libFuzzer target for the header-chain checks: proof of
 * work and the difficulty rules (src/bitcoin btc_header/btc_pow) and the
 * header tree that applies them (src/store cd_hdrtree), fed sequences of
 * 80-byte headers.
 *
 * Random bytes almost never link to a known header (the prev field is a
 * sha256d), so the input is a program: the first byte picks a network
 * variant (regtest's easy proof-of-work limit, so that a few nonces find a
 * valid hash, with regtest's fixed nBits, the legacy 2016-block retarget
 * with the EDA, the cash DAA from a chosen height, or testnet's 20-minute
 * rule) and whether the nBits rule is checked; then 8-byte operations build
 * headers: a run of N headers on a chosen parent (time step, nBits mode,
 * optional damage), a header taken verbatim from the input (its prev field
 * optionally pointed at a known header), a re-sent run of known headers,
 * or a header marked invalid. The harness grinds nonces so that most
 * generated headers carry valid proof of work, and computes the nBits the
 * rules want itself (btc_pow_next_bits over its own view of the chain), so
 * that long valid chains, forks and reorgs are reached.
 *
 * The tree lives in a fresh LMDB environment per input (a directory under
 * $TMPDIR, removed afterwards). Oracles, after every cd_hdrtree_add:
 *  - refused (rc != 0): count, tip and best chain unchanged, no header of
 *    the batch that was new is findable;
 *  - accepted: count grows by n_new, every header of the batch is findable,
 *    res.last is the batch's last header, each new header meets its nBits
 *    (btc_check_pow), its time is above its parent's median time past;
 *  - always: every node's height and chain work follow from its parent;
 *    the tip has the most work of all nodes (first seen on ties); the best
 *    chain is dense, linked and ends at the tip; cd_hdrtree_ancestor agrees
 *    with walking prev pointers; the locator descends to genesis; tip
 *    events (fork, leaving, joining) describe the move.
 * At the end the tree is closed and reopened from LMDB: same count, tip and
 * best chain.
 *
 * Built only with -Dfuzz=true and clang (scripts/fuzz.sh).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "btc_header.h"
#include "btc_net.h"
#include "btc_pow.h"
#include "btc_sha256.h"
#include "cd_hdrtree.h"
#include "cd_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_hdrchain: check failed at line %d: %s\n", __LINE__, #c);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_NODES   20000 /* hashes the harness remembers (the tree may hold more) */
#define MAX_RUN     2100  /* a little over CD_HDRTREE_MAX_BATCH */
#define GRIND       48    /* nonces tried per header */
#define MAX_OPS     48
#define MAX_HEADERS 4500

static size_t budget; /* headers the input may still generate */

static char dir[256];
static btc_net net;
static uint8_t (*known)[32]; /* hashes of accepted headers, arrival order */
static size_t n_known;
static uint8_t *batch; /* MAX_RUN * 80 */

/* ---- the tip callback: the event describes the move ---- */

static int ev_seen;
static int verbose; /* FUZZ_VERBOSE=1: one line per input */

static void on_tip(const cd_hdrtree_tip_event *ev, void *arg)
{
    cd_hdrtree *t = arg;
    ev_seen++;
    CHECK(ev->new_tip == cd_hdrtree_tip(t));
    CHECK(ev->fork && ev->fork->height + (int32_t)ev->n_joining == ev->new_tip->height);
    CHECK(ev->fork->height + (int32_t)ev->n_leaving == ev->old_tip->height);
    CHECK(ev->n_joining > 0 && ev->joining[ev->n_joining - 1] == ev->new_tip);
    for (size_t i = 0; i < ev->n_joining; i++)
        CHECK(ev->joining[i]->prev == (i ? ev->joining[i - 1] : ev->fork));
    for (size_t i = 0; i < ev->n_leaving; i++)
        CHECK(ev->leaving[i]->height == ev->old_tip->height - (int32_t)i);
    CHECK(memcmp(ev->new_tip->work, ev->old_tip->work, 32) > 0);
}

/* ---- the harness's own view of a chain being built ---- */

typedef struct vchain {
    cd_hdrtree *t;
    const cd_hdr_node *parent; /* in the tree */
    const uint8_t *hdrs;       /* batch headers after parent */
    size_t n;
    btc_u256 work[MAX_RUN]; /* cumulative chain work of batch headers */
} vchain;

static vchain vc;

static int v_ancestor(void *ctx, int32_t h, btc_pow_block *out)
{
    vchain *c = ctx;
    if (h < 0)
        return -1;
    if (h > c->parent->height) {
        size_t i = (size_t)(h - c->parent->height - 1);
        if (i >= c->n)
            return -1;
        const uint8_t *r = c->hdrs + i * 80;
        out->height = h;
        out->time =
            (uint32_t)r[68] | (uint32_t)r[69] << 8 | (uint32_t)r[70] << 16 | (uint32_t)r[71] << 24;
        out->bits =
            (uint32_t)r[72] | (uint32_t)r[73] << 8 | (uint32_t)r[74] << 16 | (uint32_t)r[75] << 24;
        out->chain_work = c->work[i];
        return 0;
    }
    const cd_hdr_node *a = cd_hdrtree_ancestor(c->t, c->parent, h);
    if (!a)
        return -1;
    out->height = a->height;
    out->time = (uint32_t)a->raw[68] | (uint32_t)a->raw[69] << 8 | (uint32_t)a->raw[70] << 16 |
                (uint32_t)a->raw[71] << 24;
    out->bits = (uint32_t)a->raw[72] | (uint32_t)a->raw[73] << 8 | (uint32_t)a->raw[74] << 16 |
                (uint32_t)a->raw[75] << 24;
    btc_u256_from_be(&out->chain_work, a->work);
    return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- invariants of the whole tree ---- */

static void snapshot_best(cd_hdrtree *t, uint8_t (**out)[32], int32_t *h)
{
    *h = cd_hdrtree_height(t);
    *out = malloc(((size_t)*h + 1) * 32);
    CHECK(*out != NULL);
    for (int32_t i = 0; i <= *h; i++)
        memcpy((*out)[i], cd_hdrtree_at(t, i)->hash, 32);
}

static void check_tree(cd_hdrtree *t, uint32_t salt)
{
    const cd_hdr_node *tip = cd_hdrtree_tip(t);
    CHECK(tip && cd_hdrtree_height(t) == tip->height);
    CHECK(cd_hdrtree_at(t, tip->height) == tip && cd_hdrtree_at(t, tip->height + 1) == NULL);
    CHECK(memcmp(cd_hdrtree_at(t, 0)->hash, net.genesis_hash, 32) == 0);
    for (int32_t h = 1; h <= tip->height; h++) {
        const cd_hdr_node *n = cd_hdrtree_at(t, h);
        CHECK(n->height == h && n->prev == cd_hdrtree_at(t, h - 1));
        CHECK(cd_hdrtree_on_best(t, n));
    }
    /* every node when few, else a sample */
    size_t stride = n_known / 256 + 1;
    for (size_t i = salt % stride; i < n_known; i += stride) {
        const cd_hdr_node *n = cd_hdrtree_find(t, known[i]);
        CHECK(n != NULL && memcmp(n->hash, known[i], 32) == 0);
        /* most work wins; equal work: the tip came first */
        int c = memcmp(n->work, tip->work, 32);
        CHECK(c < 0 || (c == 0 && n->seq >= tip->seq));
        if (n->prev) {
            CHECK(n->height == n->prev->height + 1);
            CHECK(memcmp(n->raw + 4, n->prev->hash, 32) == 0);
            btc_u256 w, pw, bw = btc_block_work(get32(n->raw + 72));
            btc_u256_from_be(&pw, n->prev->work);
            btc_u256_add(&w, &pw, &bw);
            uint8_t wb[32];
            btc_u256_to_be(wb, &w);
            CHECK(memcmp(wb, n->work, 32) == 0);
        }
        /* ancestor by skip pointers == walking prev */
        /* near (a short walk) for most, anywhere for a few */
        uint32_t back = (salt + (uint32_t)i) % (i % 32 == 0 ? (uint32_t)n->height + 1 : 64u);
        int32_t target = back > (uint32_t)n->height ? 0 : n->height - (int32_t)back;
        const cd_hdr_node *walk = n;
        while (walk->height > target)
            walk = walk->prev;
        CHECK(cd_hdrtree_ancestor(t, n, target) == walk);
        CHECK(cd_hdrtree_on_best(t, n) == (cd_hdrtree_at(t, n->height) == n));
    }
    uint8_t loc[64][32];
    size_t nl = cd_hdrtree_locator(t, loc, 64);
    CHECK(nl >= 1 && memcmp(loc[nl - 1], net.genesis_hash, 32) == 0);
    CHECK(memcmp(loc[0], tip->hash, 32) == 0 || tip->height == 0);
    int32_t last = tip->height + 1;
    for (size_t i = 0; i < nl; i++) {
        const cd_hdr_node *n = cd_hdrtree_find(t, loc[i]);
        CHECK(n && cd_hdrtree_on_best(t, n) && n->height < last);
        last = n->height;
    }
}

/* ---- operations ---- */

static const cd_hdr_node *pick(cd_hdrtree *t, uint8_t sel)
{
    if (sel == 0xff || n_known == 0)
        return sel == 0xfe ? cd_hdrtree_at(t, 0) : cd_hdrtree_tip(t);
    return cd_hdrtree_find(t, known[sel % n_known]);
}

static void remember(const uint8_t hash[32])
{
    if (n_known < MAX_NODES)
        memcpy(known[n_known++], hash, 32);
}

/* Adds n headers at batch through the tree and checks the outcome. */
static void add_and_check(cd_hdrtree *t, size_t n, uint32_t salt)
{
    size_t count0 = cd_hdrtree_count(t);
    const cd_hdr_node *tip0 = cd_hdrtree_tip(t);
    uint8_t(*best0)[32];
    int32_t h0;
    snapshot_best(t, &best0, &h0);
    uint8_t(*hashes)[32] = malloc((n ? n : 1) * 32);
    int *was_known = calloc(n ? n : 1, sizeof(int));
    CHECK(hashes && was_known);
    for (size_t i = 0; i < n; i++) {
        btc_sha256d(hashes[i], batch + i * 80, 80);
        was_known[i] = cd_hdrtree_find(t, hashes[i]) != NULL;
    }
    cd_hdrtree_add_result res;
    int rc = cd_hdrtree_add(t, batch, n, 80, &res);
    if (verbose)
        fprintf(stderr, "fuzz_hdrchain: add %zu headers: rc %d, bad index %zu, %zu new\n", n, rc,
                res.bad_index, res.n_new);
    if (rc != 0) {
        CHECK(rc == CD_HDRTREE_EUNCONNECTED || rc == CD_HDRTREE_EBADPOW ||
              rc == CD_HDRTREE_EBADBITS || rc == CD_HDRTREE_EBADTIME || rc == CD_HDRTREE_EINVALID ||
              rc == CD_HDRTREE_ETOOMANY);
        CHECK(res.last == NULL && res.bad_index <= n);
        CHECK(cd_hdrtree_count(t) == count0 && cd_hdrtree_tip(t) == tip0);
        CHECK(cd_hdrtree_height(t) == h0);
        for (int32_t i = 0; i <= h0; i++)
            CHECK(memcmp(cd_hdrtree_at(t, i)->hash, best0[i], 32) == 0);
        for (size_t i = 0; i < n; i++)
            CHECK(was_known[i] == (cd_hdrtree_find(t, hashes[i]) != NULL));
    } else {
        CHECK(cd_hdrtree_count(t) == count0 + res.n_new);
        CHECK(res.n_new + res.n_known == n);
        CHECK(res.tip_changed == (cd_hdrtree_tip(t) != tip0));
        if (n)
            CHECK(res.last && memcmp(res.last->hash, hashes[n - 1], 32) == 0);
        for (size_t i = 0; i < n; i++) {
            const cd_hdr_node *nd = cd_hdrtree_find(t, hashes[i]);
            CHECK(nd != NULL && memcmp(nd->raw, batch + i * 80, 80) == 0);
            if (!was_known[i]) {
                remember(hashes[i]);
                CHECK(btc_check_pow(nd->hash, get32(nd->raw + 72), &net) == 0);
                CHECK(get32(nd->raw + 68) > cd_hdrtree_mtp(nd->prev));
                CHECK(!(nd->prev->status & CD_HDR_INVALID));
            }
        }
    }
    free(best0);
    free(hashes);
    free(was_known);
    check_tree(t, salt);
}

/* Fills hdr (prev already set) with a nonce that meets its nBits, if one of
 * GRIND tries does. */
static void grind(uint8_t *hdr, uint32_t start)
{
    uint8_t h[32];
    uint32_t bits = get32(hdr + 72);
    for (uint32_t k = 0; k < GRIND; k++) {
        put32(hdr + 76, start + k);
        btc_sha256d(h, hdr, 80);
        if (btc_check_pow(h, bits, &net) == 0)
            return;
    }
}

/* op: kind(1) parent(1) count(2) time step(2, signed) bits mode(1) flags(1) */
static void op_run(cd_hdrtree *t, const uint8_t *op)
{
    const cd_hdr_node *parent = pick(t, op[1]);
    if (!parent)
        return;
    size_t n = (size_t)(op[2] | op[3] << 8) % (MAX_RUN + 1);
    if (n > budget)
        n = budget;
    budget -= n;
    int32_t step = (int16_t)(op[4] | op[5] << 8);
    uint8_t mode = op[6], flags = op[7];
    vc.t = t;
    vc.parent = parent;
    vc.hdrs = batch;
    vc.n = 0;
    btc_u256 work;
    btc_u256_from_be(&work, parent->work);
    uint8_t prev_hash[32];
    memcpy(prev_hash, parent->hash, 32);
    for (size_t i = 0; i < n; i++) {
        uint8_t *hdr = batch + i * 80;
        int32_t height = parent->height + 1 + (int32_t)i;
        btc_pow_block pb;
        CHECK(v_ancestor(&vc, height - 1, &pb) == 0);
        put32(hdr, 0x20000000u | (flags & 0x0f));
        memcpy(hdr + 4, prev_hash, 32);
        memset(hdr + 36, (int)(i * 31 + op[1]), 32); /* merkle root: anything */
        uint32_t tm = pb.time + (uint32_t)step;
        if (flags & 0x10) { /* keep the time valid: above the MTP */
            uint32_t mtp;
            CHECK(btc_pow_median_time_past(v_ancestor, &vc, height - 1, &mtp) == 0);
            if (tm <= mtp)
                tm = mtp + 1;
        }
        put32(hdr + 68, tm);
        uint32_t bits = pb.bits;
        if (mode < 0x80) { /* what the rules want (0 = only the limit) */
            uint32_t want;
            if (btc_pow_next_bits(&net, &pb, tm, v_ancestor, &vc, &want) == 0 && want)
                bits = net.pow_no_retargeting ? pb.bits : want;
            else
                bits = net.pow_limit_bits;
        } else if (mode < 0xc0) {
            bits = net.pow_limit_bits;
        } else if (mode < 0xf0) {
            bits = pb.bits;
        } else {
            bits = 0x1d00ffffu ^ ((uint32_t)mode << 24) ^ (uint32_t)op[1] << 8;
        }
        put32(hdr + 72, bits);
        grind(hdr, (uint32_t)i * GRIND);
        if (verbose > 1) {
            uint8_t hh[32];
            btc_sha256d(hh, hdr, 80);
            fprintf(stderr, "h %d bits %08x time %u pow %d\n", height, bits, tm,
                    btc_check_pow(hh, bits, &net));
        }
        if ((flags & 0x20) && i == n / 2)
            hdr[76] ^= 0x5a; /* damage: proof of work most likely fails */
        btc_sha256d(prev_hash, hdr, 80);
        btc_u256 bw = btc_block_work(bits);
        btc_u256_add(&work, &work, &bw);
        vc.work[i] = work;
        vc.n = i + 1;
    }
    add_and_check(t, n, (uint32_t)op[1] * 7919u + (uint32_t)n);
}

/* A header verbatim from the input; flags bit 0: point prev at a node. */
static void op_raw(cd_hdrtree *t, const uint8_t *op, const uint8_t *raw)
{
    memcpy(batch, raw, 80);
    if (op[2] & 1) {
        const cd_hdr_node *parent = pick(t, op[1]);
        if (parent)
            memcpy(batch + 4, parent->hash, 32);
        if (op[2] & 2)
            grind(batch, get32(batch + 76));
    }
    add_and_check(t, 1, op[3]);
}

/* Re-sends the best-chain headers from a height: all known, accepted. */
static void op_resend(cd_hdrtree *t, const uint8_t *op)
{
    int32_t tiph = cd_hdrtree_height(t);
    int32_t from = op[1] % (tiph + 1);
    size_t n = (size_t)op[2] % 64;
    if ((int32_t)n > tiph - from + 1)
        n = (size_t)(tiph - from + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(batch + i * 80, cd_hdrtree_at(t, from + (int32_t)i)->raw, 80);
    add_and_check(t, n, op[3]);
}

static void op_invalid(cd_hdrtree *t, const uint8_t *op)
{
    const cd_hdr_node *n = pick(t, op[1]);
    if (!n || n->height == 0)
        return;
    CHECK(cd_hdrtree_set_status(t, n->hash, CD_HDR_INVALID, 0) == 0);
    CHECK(n->status & CD_HDR_INVALID);
}

/* ---- the run ---- */

static void rm_tree(void)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/fuzz_hdrchain.%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    known = malloc(MAX_NODES * 32);
    batch = malloc(MAX_RUN * 80);
    cd_log_set_level(CD_LOG_ERROR);
    verbose = getenv("FUZZ_VERBOSE") ? atoi(getenv("FUZZ_VERBOSE")) : 0;
    atexit(rm_tree);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    net = *btc_net_get(BTC_NET_REGTEST);
    switch (data[0] & 3) {
    case 0: /* regtest: nBits never changes */
        break;
    case 1: /* legacy 2016-block retarget and the EDA */
        net.pow_no_retargeting = 0;
        net.pow_allow_min_difficulty = 0;
        net.daa_height = INT32_MAX;
        break;
    case 2: /* the cash DAA from a chosen height */
        net.pow_no_retargeting = 0;
        net.pow_allow_min_difficulty = 0;
        net.daa_height = data[1];
        break;
    default: /* testnet's 20-minute rule, DAA later */
        net.pow_no_retargeting = 0;
        net.pow_allow_min_difficulty = 1;
        net.daa_height = (int32_t)data[1] * 16;
        break;
    }
    rm_tree();
    cd_hdrtree *t = NULL;
    CHECK(cd_hdrtree_open(&t, dir, &net, 0) == 0);
    if (data[0] & 4)
        cd_hdrtree_set_bits_check(t, NULL, NULL); /* only the limit */
    cd_hdrtree_set_now(t, 2000000000);            /* after the real regtest chains, before 2^32 */
    cd_hdrtree_set_tip_cb(t, on_tip, t);
    n_known = 0;
    ev_seen = 0;
    remember(net.genesis_hash);

    /* bounded work per input: at most MAX_OPS operations and MAX_HEADERS
     * generated headers (enough for a 2016-block retarget and a reorg) */
    size_t pos = 2, n_ops = 0;
    budget = MAX_HEADERS;
    while (pos + 8 <= size && n_ops++ < MAX_OPS && budget > 0) {
        const uint8_t *op = data + pos;
        pos += 8;
        switch (op[0] & 3) {
        case 0:
            op_run(t, op);
            break;
        case 1:
            if (pos + 80 > size)
                goto done;
            op_raw(t, op, data + pos);
            pos += 80;
            break;
        case 2:
            op_resend(t, op);
            break;
        default:
            op_invalid(t, op);
            break;
        }
    }
done:;
    /* reopen from LMDB: the same tree */
    size_t count = cd_hdrtree_count(t);
    uint8_t(*best)[32];
    int32_t h;
    snapshot_best(t, &best, &h);
    cd_hdrtree_close(t);
    CHECK(cd_hdrtree_open(&t, dir, &net, 0) == 0);
    CHECK(cd_hdrtree_count(t) == count && cd_hdrtree_height(t) == h);
    for (int32_t i = 0; i <= h; i++)
        CHECK(memcmp(cd_hdrtree_at(t, i)->hash, best[i], 32) == 0);
    for (size_t i = 0; i < n_known; i++) {
        const cd_hdr_node *n = cd_hdrtree_find(t, known[i]);
        CHECK(n != NULL);
        cd_hdr_node copy;
        CHECK(cd_hdrtree_get(t, known[i], &copy) == 0 && copy.height == n->height &&
              copy.status == n->status);
    }
    if (verbose)
        fprintf(stderr, "fuzz_hdrchain: %zu headers, tip height %d, %d tip events\n", count, h,
                ev_seen);
    free(best);
    cd_hdrtree_close(t);
    rm_tree();
    return 0;
}
