/*
 * test_workers.c - the IPC format, the merkle tree builder, and the whole
 * pipeline with real forked writer/merkle workers, a real ring and real LMDB:
 * block 413567 stored byte-identical with the reference tx offsets, a
 * tampered block refused, worker crashes recovered (re-dispatch from the ring
 * or re-fetch), malformed input rejected.
 */
#include "cd_test.h"

/* The worker loop's interface stands alone, without the daemon's
 * configuration header (workers get a cd_wk_config). */
#include "cd_wk_main.h"
#ifdef CD_CONFIG_H
#error "cd_wk_main.h must not include cd_config.h"
#endif

#include "btc_merkle.h"
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"
#include "cd_pipeline.h"
#include "cd_ring.h"
#include "cd_supervisor.h"
#include "cd_blockstore.h"
#include "cd_ipc.h"

#include <errno.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------------- IPC ---------------- */

START_TEST(test_ipc_roundtrip)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cd_ipc_unit u;
    memset(&u, 0, sizeof(u));
    u.block_id = 42;
    u.unit_no = 3;
    u.tx_count = 3;
    u.ring_pos = 1ull << 40;
    u.len = 999;
    uint32_t offs[3] = {0, 100, 500};
    ck_assert_int_eq(cd_ipc_send(sv[0], CD_IPC_UNIT, &u, sizeof(u), offs, sizeof(offs)), 0);
    ck_assert_int_eq(cd_ipc_send(sv[0], CD_IPC_SHUTDOWN, NULL, 0, NULL, 0), 0);
    uint8_t *buf = NULL;
    size_t cap = 0;
    cd_ipc_hdr h;
    ck_assert_int_eq(cd_ipc_recv(sv[1], &h, &buf, &cap), 1);
    ck_assert_uint_eq(h.version, CD_IPC_VERSION);
    ck_assert_uint_eq(h.type, CD_IPC_UNIT);
    ck_assert_uint_eq(h.len, sizeof(u) + sizeof(offs));
    ck_assert_int_eq(memcmp(buf, &u, sizeof(u)), 0);
    ck_assert_int_eq(memcmp(buf + sizeof(u), offs, sizeof(offs)), 0);
    ck_assert_int_eq(cd_ipc_recv(sv[1], &h, &buf, &cap), 1);
    ck_assert_uint_eq(h.type, CD_IPC_SHUTDOWN);
    ck_assert_uint_eq(h.len, 0);
    /* wrong version: protocol error */
    cd_ipc_hdr bad = {.version = CD_IPC_VERSION + 1, .type = CD_IPC_UNIT, .len = 0};
    ck_assert_int_eq(write(sv[0], &bad, sizeof(bad)), (ssize_t)sizeof(bad));
    ck_assert_int_eq(cd_ipc_recv(sv[1], &h, &buf, &cap), -1);
    ck_assert_int_eq(errno, EPROTO);
    /* EOF inside a message, then clean EOF */
    cd_ipc_hdr part = {.version = CD_IPC_VERSION, .type = CD_IPC_UNIT_ACK, .len = 16};
    ck_assert_int_eq(write(sv[0], &part, sizeof(part)), (ssize_t)sizeof(part));
    ck_assert_int_eq(write(sv[0], "abc", 3), 3);
    close(sv[0]);
    ck_assert_int_eq(cd_ipc_recv(sv[1], &h, &buf, &cap), -1);
    ck_assert_int_eq(errno, EIO);
    ck_assert_int_eq(cd_ipc_recv(sv[1], &h, &buf, &cap), 0);
    ck_assert_str_eq(cd_ipc_type_name(CD_IPC_BLOCK_DONE), "BLOCK_DONE");
    ck_assert_str_eq(cd_wk_kind_name(CD_WK_MERKLE), "merkle");
    free(buf);
    close(sv[1]);
}
END_TEST

/* ---------------- merkle ---------------- */

static uint64_t *read_offsets(size_t *n)
{
    size_t len;
    char *txt = (char *)cd_test_read_file("mainnet/block413567.tx-offsets", &len);
    uint64_t *o = malloc(4000 * sizeof(uint64_t));
    size_t k = 0;
    for (char *s = strtok(txt, "\n"); s; s = strtok(NULL, "\n"))
        o[k++] = strtoull(s, NULL, 10);
    free(txt);
    *n = k;
    return o;
}

/* The one-shot tree of the bitcoin module (btc_merkle.h), built in place;
 * returns the mutation flag. The merkle worker streams the same tree. */
static int tree_build(uint8_t *tree, size_t n)
{
    int mutated = -1;
    ck_assert_int_eq(btc_merkle_tree_build(tree, n, tree, &mutated), 0);
    return mutated;
}

START_TEST(test_merkle_block413567)
{
    size_t len, n;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    uint64_t *o = read_offsets(&n);
    ck_assert_uint_eq(n, 1557);
    uint8_t *tree = malloc(cd_merkle_tree_size(n) * 32);
    for (size_t i = 0; i < n; i++) {
        uint64_t end = i + 1 < n ? o[i + 1] : len;
        cd_sha256d(tree + 32 * i, blk + o[i], end - o[i]);
    }
    /* leaves = the reference txids */
    size_t tl;
    char *txids = (char *)cd_test_read_file("mainnet/block413567.txids", &tl);
    char hex[65];
    cd_hex_encode_rev(hex, tree, 32);
    ck_assert_int_eq(strncmp(txids, hex, 64), 0);
    cd_hex_encode_rev(hex, tree + 32 * (n - 1), 32);
    ck_assert_int_eq(strncmp(txids + 65 * (n - 1), hex, 64), 0);
    ck_assert_int_eq(tree_build(tree, n), 0);
    uint8_t *root = tree + 32 * (cd_merkle_tree_size(n) - 1);
    ck_assert_int_eq(memcmp(root, blk + 36, 32), 0);
    cd_hex_encode_rev(hex, root, 32);
    ck_assert_str_eq(hex, "64a50c649fc816baaa2effda230c39cacf1504e4e616a2863685b72aaa7dce05");
    free(txids);
    free(tree);
    free(o);
    free(blk);
}
END_TEST

START_TEST(test_merkle_mutation)
{
    /* [a b c] and [a b c c] have the same root; the second is mutated */
    uint8_t t3[32 * 6], t4[32 * 7];
    for (int i = 0; i < 3; i++) {
        memset(t3 + 32 * i, 'a' + i, 32);
        memset(t4 + 32 * i, 'a' + i, 32);
    }
    memset(t4 + 96, 'c', 32);
    ck_assert_int_eq(tree_build(t3, 3), 0);
    ck_assert_int_eq(tree_build(t4, 4), 1);
    ck_assert_int_eq(memcmp(t3 + 32 * 5, t4 + 32 * 6, 32), 0);
    /* one leaf: the root is the leaf */
    uint8_t one[32];
    memset(one, 9, 32);
    ck_assert_int_eq(tree_build(one, 1), 0);
    ck_assert_uint_eq(one[0], 9);
}
END_TEST

/* ---------------- pipeline with real workers ---------------- */

typedef struct harness {
    struct event_base *base;
    cd_ring ring;
    cd_pipeline *p;
    cd_supervisor *sup;
    cd_config cfg;
    char dir[256];
    int last_status;
    int done_count;
} harness;

static void h_done(void *arg, const uint8_t hash[32], int status, void *ctx)
{
    (void)hash;
    (void)ctx;
    harness *h = arg;
    h->last_status = status;
    h->done_count++;
}

static void h_space(void *arg)
{
    (void)arg;
}

static void h_start(harness *h, uint64_t ring_size, uint64_t unit_size)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->dir, sizeof(h->dir), "/tmp/cd_test_pipe_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(h->dir));
    h->cfg.net = btc_net_get(BTC_NET_REGTEST);
    h->cfg.datadir = h->dir;
    h->cfg.ring_size = ring_size;
    h->cfg.unit_size = unit_size;
    char name[CD_RING_NAME_MAX];
    ck_assert_int_eq(cd_ring_name_for(h->dir, name), 0);
    ck_assert_int_eq(cd_ring_create(&h->ring, name, ring_size), 0);
    h->base = event_base_new();
    cd_pipeline_cbs cbs = {.arg = h, .block_done = h_done, .space = h_space};
    h->sup = cd_sup_new(h->base, &h->cfg);
    ck_assert_ptr_nonnull(h->sup);
    h->p = cd_pipeline_new(h->base, h->sup, &h->ring, &h->cfg, &cbs);
    ck_assert_ptr_nonnull(h->p);
    ck_assert_int_eq(cd_pipeline_start(h->p), 0);
}

static void h_stop(harness *h)
{
    cd_pipeline_free(h->p);
    cd_sup_free(h->sup);
    event_base_free(h->base);
    cd_ring_destroy(&h->ring);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Feeds one block in `piece`-byte reads; runs the loop until it finished.
 * flip: offset of a byte to corrupt (or SIZE_MAX). Returns its status. */
static int h_feed(harness *h, const uint8_t *blk, size_t len, size_t piece, size_t flip)
{
    uint8_t hash[32];
    cd_sha256d(hash, blk, 80);
    int before = h->done_count;
    ck_assert_int_eq(cd_pipeline_begin(h->p, hash, 413567, len, NULL), 0);
    size_t off = 0;
    int receiving = 1;
    while (h->done_count == before) {
        if (receiving) {
            uint8_t *ptr;
            uint64_t n = cd_pipeline_space(h->p, &ptr);
            if (n > 0) {
                n = CD_MIN(n, piece);
                memcpy(ptr, blk + off, n);
                if (flip >= off && flip < off + n)
                    ptr[flip - off] ^= 1;
                off += n;
                int rc = cd_pipeline_commit(h->p, n);
                if (rc != 0)
                    receiving = 0;
                event_base_loop(h->base, EVLOOP_NONBLOCK);
                continue;
            }
        }
        event_base_loop(h->base, EVLOOP_ONCE);
    }
    ck_assert_uint_eq(cd_pipeline_in_flight(h->p), 0);
    return h->last_status;
}

static void check_stored(const char *dir, const uint8_t *blk, size_t len, int want)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/blocks", dir);
    cd_blockstore *bs;
    ck_assert_int_eq(cd_blockstore_open(p, CD_BS_RDONLY, 0, &bs), 0);
    uint8_t hash[32];
    cd_sha256d(hash, blk, 80);
    cd_block_loc loc;
    int rc = cd_blockstore_get(bs, hash, &loc);
    if (!want) {
        ck_assert_int_eq(rc, CD_BS_NOTFOUND);
        cd_blockstore_close(bs);
        return;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(loc.size, len);
    uint8_t *back = malloc(len);
    ck_assert_int_eq(cd_blockstore_read(bs, &loc, 0, back, len), 0);
    ck_assert_int_eq(memcmp(back, blk, len), 0);
    size_t n;
    uint64_t *want_offs = read_offsets(&n);
    ck_assert_uint_eq(loc.tx_count, n);
    uint64_t *got = malloc(n * sizeof(uint64_t));
    ck_assert_int_eq(cd_blockstore_read_offsets(bs, &loc, 0, n, got), 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(got[i], want_offs[i]);
    free(got);
    free(want_offs);
    free(back);
    cd_blockstore_close(bs);
    snprintf(p, sizeof(p), "%s/merkle", dir);
    ck_assert_int_eq(cd_blockstore_open(p, CD_BS_RDONLY, 0, &bs), 0);
    cd_merkle_meta mm;
    ck_assert_int_eq(cd_blockstore_merkle_meta(bs, hash, &mm), 0);
    ck_assert_uint_eq(mm.tx_count, n);
    ck_assert_int_eq(memcmp(mm.root, blk + 36, 32), 0);
    /* the streamed tree stored by the worker == the tree built in one go */
    uint64_t nh = cd_merkle_tree_size(n);
    ck_assert_uint_eq(mm.n_hashes, nh);
    uint8_t *want_tree = malloc(nh * 32), *got_tree = malloc(nh * 32);
    uint64_t *o = read_offsets(&n);
    for (size_t i = 0; i < n; i++)
        cd_sha256d(want_tree + 32 * i, blk + o[i], (i + 1 < n ? o[i + 1] : len) - o[i]);
    ck_assert_int_eq(tree_build(want_tree, n), 0);
    ck_assert_int_eq(cd_blockstore_merkle_read(bs, hash, 0, nh, got_tree), 0);
    ck_assert_int_eq(memcmp(want_tree, got_tree, nh * 32), 0);
    free(o);
    free(want_tree);
    free(got_tree);
    cd_blockstore_close(bs);
}

/* Waits (running the loop) until the writer has processed everything sent
 * so far: a DELETE after a refused block is asynchronous. */
static void h_settle(harness *h)
{
    for (int i = 0; i < 20; i++) {
        struct timeval tv = {0, 20000};
        event_base_loopexit(h->base, &tv);
        event_base_dispatch(h->base);
    }
}

START_TEST(test_pipeline_stores_block)
{
    size_t len;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    harness h;
    /* 1 MiB ring < block: units released one by one, 64 KiB units, odd reads */
    h_start(&h, 1 << 20, 64 << 10);
    ck_assert_int_eq(h_feed(&h, blk, len, 7777, SIZE_MAX), CD_PIPE_OK);
    cd_pipeline_stats st;
    cd_pipeline_get_stats(h.p, &st);
    ck_assert_uint_ge(st.units, len / (64 << 10));
    ck_assert_uint_eq(st.bytes_in, len);
    ck_assert_uint_eq(h.ring.tail, h.ring.head); /* every byte released */
    check_stored(h.dir, blk, len, 1);
    /* the same block again (replaces the stored copy, same content) */
    ck_assert_int_eq(h_feed(&h, blk, len, 1 << 20, SIZE_MAX), CD_PIPE_OK);
    check_stored(h.dir, blk, len, 1);
    h_stop(&h);
    free(blk);
}
END_TEST

START_TEST(test_pipeline_refuses_tampered)
{
    size_t len;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    harness h;
    h_start(&h, 4 << 20, 128 << 10);
    /* one byte inside the last tx: header and boundaries intact, root wrong */
    ck_assert_int_eq(h_feed(&h, blk, len, 65536, len - 5), CD_PIPE_MERKLE);
    h_settle(&h);
    check_stored(h.dir, blk, len, 0);
    ck_assert_int_eq(h_feed(&h, blk, len, 65536, SIZE_MAX), CD_PIPE_OK);
    check_stored(h.dir, blk, len, 1);
    /* a header that does not hash to the requested hash */
    uint8_t hash[32] = {0};
    ck_assert_int_eq(cd_pipeline_begin(h.p, hash, 1, len, NULL), 0);
    uint8_t *ptr;
    ck_assert_uint_gt(cd_pipeline_space(h.p, &ptr), 100);
    memcpy(ptr, blk, 100);
    ck_assert_int_eq(cd_pipeline_commit(h.p, 100), -1);
    ck_assert_int_eq(h.last_status, CD_PIPE_MALFORMED);
    /* a tx count larger than the txs present */
    uint8_t *bad = malloc(len);
    memcpy(bad, blk, len);
    ck_assert_uint_eq(bad[80], 0xfd); /* 1557 = fd 15 06 */
    bad[81] = 0x16;
    ck_assert_int_eq(h_feed(&h, bad, len, 65536, SIZE_MAX), CD_PIPE_MALFORMED);
    h_settle(&h); /* the units already sent are released when acked */
    ck_assert_uint_eq(h.ring.tail, h.ring.head);
    free(bad);
    h_stop(&h);
    free(blk);
}
END_TEST

START_TEST(test_pipeline_refuses_mutated_block)
{
    /* [A B C C] has the same merkle root as [A B C] (CVE-2012-2459): the
     * streamed tree must flag it although the root matches the header */
    size_t len, n;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    uint64_t *o = read_offsets(&n);
    size_t la = o[2] - o[1], lb = o[3] - o[2], lc = o[4] - o[3];
    uint8_t *m = malloc(81 + la + lb + 2 * lc);
    memcpy(m, blk, 80);
    uint8_t tree[32 * 6];
    cd_sha256d(tree, blk + o[1], la);
    cd_sha256d(tree + 32, blk + o[2], lb);
    cd_sha256d(tree + 64, blk + o[3], lc);
    ck_assert_int_eq(tree_build(tree, 3), 0);
    memcpy(m + 36, tree + 32 * 5, 32); /* header commits to [A B C] */
    m[80] = 4;
    memcpy(m + 81, blk + o[1], la + lb + lc);
    memcpy(m + 81 + la + lb + lc, blk + o[3], lc);
    harness h;
    h_start(&h, 1 << 20, 64 << 10);
    ck_assert_int_eq(h_feed(&h, m, 81 + la + lb + 2 * lc, 1000, SIZE_MAX), CD_PIPE_MERKLE);
    /* the honest 3-tx block with the very same header is accepted */
    m[80] = 3;
    ck_assert_int_eq(h_feed(&h, m, 81 + la + lb + lc, 1000, SIZE_MAX), CD_PIPE_OK);
    h_stop(&h);
    free(m);
    free(o);
    free(blk);
}
END_TEST

/* Begins a block and commits all of it without running the loop, so the
 * workers have not seen (let alone verified) anything yet. flip as h_feed.
 * Returns the last cd_pipeline_commit() result: 1 received, -1 refused. */
static int h_put(harness *h, const uint8_t *blk, size_t len, size_t flip)
{
    uint8_t hash[32];
    cd_sha256d(hash, blk, 80);
    ck_assert_int_eq(cd_pipeline_begin(h->p, hash, 413567, len, NULL), 0);
    size_t off = 0;
    int rc = 0;
    while (off < len && rc == 0) {
        uint8_t *ptr;
        uint64_t n = CD_MIN(cd_pipeline_space(h->p, &ptr), (uint64_t)(len - off));
        ck_assert_uint_gt(n, 0); /* the ring holds both copies */
        memcpy(ptr, blk + off, n);
        if (flip >= off && flip < off + n)
            ptr[flip - off] ^= 1;
        off += n;
        rc = cd_pipeline_commit(h->p, n);
    }
    return rc;
}

static void h_wait(harness *h, int done_count)
{
    while (h->done_count < done_count)
        event_base_loop(h->base, EVLOOP_ONCE);
    h_settle(h); /* a DELETE after a refused block is asynchronous */
}

/* The data-loss race seen with a peer sending bad-merkle copies: a second
 * copy of a block arriving while the first is still being written/checked.
 * The writer keys blocks by hash, so if the second copy were dispatched, its
 * BEGIN would replace the first copy's bytes and its merkle failure (a
 * DELETE by hash) would remove the block although the first copy verified.
 * The pipeline refuses the second copy (CD_PIPE_UNWANTED) instead. */
START_TEST(test_pipeline_one_copy_at_a_time)
{
    size_t len;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    harness h;
    /* good copy in flight, then a bad copy of the same block */
    h_start(&h, 4 * len, 128 << 10);
    ck_assert_int_eq(h_put(&h, blk, len, SIZE_MAX), 1);
    ck_assert_int_eq(h.done_count, 0);
    ck_assert_int_eq(h_put(&h, blk, len, len - 5), -1);
    ck_assert_int_eq(h.done_count, 1);
    ck_assert_int_eq(h.last_status, CD_PIPE_UNWANTED);
    h_wait(&h, 2);
    ck_assert_int_eq(h.last_status, CD_PIPE_OK);
    check_stored(h.dir, blk, len, 1);
    ck_assert_uint_eq(h.ring.tail, h.ring.head);
    h_stop(&h);
    /* bad copy in flight, then the good copy: refused too (it is asked for
     * again once the bad one failed), and the failure deletes only the bad
     * copy; the good one, sent again, is stored */
    h_start(&h, 4 * len, 128 << 10);
    ck_assert_int_eq(h_put(&h, blk, len, len - 5), 1);
    ck_assert_int_eq(h_put(&h, blk, len, SIZE_MAX), -1);
    ck_assert_int_eq(h.last_status, CD_PIPE_UNWANTED);
    h_wait(&h, 2);
    ck_assert_int_eq(h.last_status, CD_PIPE_MERKLE);
    check_stored(h.dir, blk, len, 0);
    ck_assert_int_eq(h_feed(&h, blk, len, 65536, SIZE_MAX), CD_PIPE_OK);
    check_stored(h.dir, blk, len, 1);
    h_stop(&h);
    free(blk);
}
END_TEST

static void crash_case(const char *spec, uint64_t ring, int expect_redispatch)
{
    size_t len;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    setenv("CD_WK_CRASH", spec, 1);
    harness h;
    h_start(&h, ring, 64 << 10);
    int st = h_feed(&h, blk, len, 65536, SIZE_MAX);
    cd_pipeline_stats s;
    cd_pipeline_get_stats(h.p, &s);
    if (expect_redispatch) {
        ck_assert_int_eq(st, CD_PIPE_OK);
        ck_assert_uint_ge(s.redispatched, 1);
    } else if (st == CD_PIPE_OK) {
        /* The crash came before any unit had been acked by every consumer
         * (a slow merkle worker on a loaded machine): all bytes were still in
         * the ring, so the block was dispatched again instead. */
        ck_assert_uint_ge(s.redispatched, 1);
    } else {
        /* the units were gone from the ring: fetch again */
        ck_assert_int_eq(st, CD_PIPE_RETRY);
        /* wait for the restarted worker (back-off) and feed again */
        while (!cd_pipeline_ready(h.p))
            event_base_loop(h.base, EVLOOP_ONCE);
        ck_assert_int_eq(h_feed(&h, blk, len, 65536, SIZE_MAX), CD_PIPE_OK);
    }
    char marker[512];
    snprintf(marker, sizeof(marker), "%s/crashed.%.6s", h.dir, spec);
    ck_assert_int_eq(access(marker, F_OK), 0); /* the crash really happened */
    check_stored(h.dir, blk, len, 1);
    unsetenv("CD_WK_CRASH");
    h_stop(&h);
    free(blk);
}

START_TEST(test_writer_crash_redispatch)
{
    crash_case("writer:3", 8 << 20, 1); /* block <= ring/4: kept in the ring */
}
END_TEST

START_TEST(test_merkle_crash_redispatch)
{
    crash_case("merkle:5", 8 << 20, 1);
}
END_TEST

START_TEST(test_writer_crash_refetch)
{
    crash_case("writer:6", 1 << 20, 0); /* block > ring/4: released per unit */
}
END_TEST

/* ---------------- supervisor: back-off restart, exit code 2 ---------------- */

typedef struct sup_obs {
    struct event_base *base;
    int ups, downs, fatal;
    int stop_at_ups;
} sup_obs;

static void obs_up(void *arg, int slot, int fd)
{
    (void)slot;
    sup_obs *o = arg;
    o->ups++;
    close(fd);
    if (o->stop_at_ups && o->ups >= o->stop_at_ups)
        event_base_loopbreak(o->base);
}

static void obs_down(void *arg, int slot, int code)
{
    (void)slot;
    (void)code;
    ((sup_obs *)arg)->downs++;
}

static void obs_fatal(void *arg, int slot)
{
    (void)slot;
    sup_obs *o = arg;
    o->fatal++;
    event_base_loopbreak(o->base);
}

static int init_config_error(cd_wk_ctx *c)
{
    (void)c;
    return CD_EXIT_CONFIG;
}

static int init_crash(cd_wk_ctx *c)
{
    (void)c;
    return CD_EXIT_FAILURE;
}

static const cd_wk_ops ops_config_error = {.name = "cfgerr", .init = init_config_error};
static const cd_wk_ops ops_crash = {.name = "crash", .init = init_crash};

/* A supervised child that runs a worker loop with the given ops. */
static void sup_worker_main(void *arg, int slot, int fd)
{
    (void)slot;
    cd_wk_config wcfg = {.datadir = "/tmp", .daemon = NULL};
    cd_wk_ctx ctx = {.kind = CD_WK_PARSER, .index = 0, .fd = fd, .cfg = &wcfg};
    cd_wk_run(&ctx, arg);
}

static void sup_case(const cd_wk_ops *ops, sup_obs *o, int stop_at_ups)
{
    cd_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.datadir = (char *)"/tmp";
    memset(o, 0, sizeof(*o));
    o->base = event_base_new();
    o->stop_at_ups = stop_at_ups;
    cd_sup_cbs cbs = {.arg = o, .on_up = obs_up, .on_down = obs_down, .on_fatal = obs_fatal};
    cd_supervisor *s = cd_sup_new(o->base, &cfg);
    ck_assert_ptr_nonnull(s);
    static const cd_sup_kind kind = {
        .name = "parser", .main = sup_worker_main, .restart = CD_SUP_RESPAWN};
    ck_assert_int_eq(cd_sup_add(s, &kind, 0, "parser-0", (void *)ops, &cbs), 0);
    ck_assert_int_eq(cd_sup_start(s), 0);
    ck_assert_int_gt(cd_sup_pid(s, 0), 0);
    event_base_dispatch(o->base);
    if (o->fatal) {
        /* give a (wrong) respawn every chance to happen: run the loop for a
         * while longer than the longest back-off */
        struct timeval tv = {0, 600000};
        event_base_loopexit(o->base, &tv);
        event_base_dispatch(o->base);
        ck_assert_int_eq(cd_sup_pid(s, 0), 0);
    }
    cd_sup_stop(s, NULL, 2000);
    cd_sup_free(s);
    event_base_free(o->base);
}

START_TEST(test_supervisor_exit2_not_respawned)
{
    sup_obs o;
    sup_case(&ops_config_error, &o, 0);
    ck_assert_int_eq(o.fatal, 1);
    ck_assert_int_eq(o.ups, 1);
    ck_assert_int_eq(o.downs, 1);
}
END_TEST

START_TEST(test_supervisor_crash_respawned)
{
    sup_obs o;
    sup_case(&ops_crash, &o, 4); /* stops the loop at the 4th start */
    ck_assert_int_eq(o.fatal, 0);
    ck_assert_int_eq(o.ups, 4);
    ck_assert_int_ge(o.downs, 3);
}
END_TEST

static Suite *suite_workers(void)
{
    Suite *s = suite_create("workers");
    TCase *tc = tcase_create("ipc_merkle");
    tcase_add_test(tc, test_ipc_roundtrip);
    tcase_add_test(tc, test_merkle_block413567);
    tcase_add_test(tc, test_merkle_mutation);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("pipeline");
    tcase_set_timeout(tp, 120);
    tcase_add_test(tp, test_pipeline_stores_block);
    tcase_add_test(tp, test_pipeline_refuses_tampered);
    tcase_add_test(tp, test_pipeline_refuses_mutated_block);
    tcase_add_test(tp, test_pipeline_one_copy_at_a_time);
    tcase_add_test(tp, test_writer_crash_redispatch);
    tcase_add_test(tp, test_merkle_crash_redispatch);
    tcase_add_test(tp, test_writer_crash_refetch);
    suite_add_tcase(s, tp);
    TCase *ts = tcase_create("supervisor");
    tcase_set_timeout(ts, 60);
    tcase_add_test(ts, test_supervisor_exit2_not_respawned);
    tcase_add_test(ts, test_supervisor_crash_respawned);
    suite_add_tcase(s, ts);
    return s;
}

CD_TEST_MAIN(suite_workers)
