/*
 * test_blockstore.c - the LMDB block store: chunked append, offsets, heights,
 * crash recovery of half-written blocks, delete, merkle trees, read-only use.
 */
#include "cd_test.h"

#include "cd_hash.h"
#include "cd_util.h"
#include "cd_blockstore.h"
#include "cd_store_guard.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cd_test_bs_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void path_of(char *out, size_t n, const char *sub)
{
    snprintf(out, n, "%s/%s", tmpdir, sub);
}

/* Pseudo-random block bytes; header = first 80 bytes. */
static uint8_t *make_bytes(size_t n, uint32_t seed)
{
    uint8_t *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (uint8_t)x;
    }
    return b;
}

/* Stores data as a block with `ntx` fake tx offsets, appended in pieces. */
static void store(cd_blockstore *bs, const uint8_t *data, size_t n, uint64_t ntx, uint32_t height,
                  size_t piece, uint8_t hash_out[32])
{
    uint8_t hash[32];
    cd_sha256d(hash, data, 80);
    ck_assert_int_eq(cd_blockstore_begin(bs, hash, data, height, n, ntx), 0);
    uint64_t *offs = malloc(ntx * sizeof(uint64_t));
    for (uint64_t i = 0; i < ntx; i++)
        offs[i] = 81 + i * ((n - 81) / ntx);
    size_t done = 0;
    uint64_t oi = 0;
    while (done < n) {
        size_t k = CD_MIN(piece, n - done);
        uint64_t on = 0;
        while (oi + on < ntx && offs[oi + on] < done + k)
            on++;
        ck_assert_int_eq(cd_blockstore_append(bs, data + done, k, offs + oi, on), 0);
        oi += on;
        done += k;
    }
    ck_assert_int_eq(cd_blockstore_finish(bs), 0);
    free(offs);
    memcpy(hash_out, hash, 32);
}

/* A map too small for the data grows instead of failing (issue 11, F6:
 * MDB_MAP_FULL is one of the two ways a store fills). */
START_TEST(test_map_full_grows)
{
    char p[512];
    path_of(p, sizeof(p), "blocks");
    cd_blockstore *bs;
    ck_assert_int_eq(cd_blockstore_open(p, 0, 1u << 20, &bs), 0); /* 1 MiB map */
    size_t n = 3 * CD_BS_CHUNK_SIZE + 999;
    uint8_t *data = make_bytes(n, 11);
    uint8_t hash[32];
    store(bs, data, n, 100, 1, 777777, hash);
    cd_block_loc loc;
    ck_assert_int_eq(cd_blockstore_get(bs, hash, &loc), 0);
    uint8_t *back = malloc(n);
    ck_assert_int_eq(cd_blockstore_read(bs, &loc, 0, back, n), 0);
    ck_assert_int_eq(memcmp(back, data, n), 0);
    /* a reader opened with the small map adopts the grown one */
    cd_blockstore *ro;
    ck_assert_int_eq(cd_blockstore_open(p, CD_BS_RDONLY, 1u << 20, &ro), 0);
    ck_assert_int_eq(cd_blockstore_get(ro, hash, &loc), 0);
    memset(back, 0, n);
    ck_assert_int_eq(cd_blockstore_read(ro, &loc, 0, back, n), 0);
    ck_assert_int_eq(memcmp(back, data, n), 0);
    cd_blockstore_close(ro);
    free(back);
    free(data);
    cd_blockstore_close(bs);
}
END_TEST

/* An append that fails for want of space (here the file size limit: the
 * same short write / EFBIG a full disk gives) can be tried again once there
 * is room, and the block reads back byte for byte: the carried bytes and
 * offsets of the failed txn are put back. */
START_TEST(test_append_retried_after_full)
{
    char p[512];
    path_of(p, sizeof(p), "blocks");
    cd_blockstore *bs;
    ck_assert_int_eq(cd_blockstore_open(p, 0, 0, &bs), 0);
    size_t n = 5 * CD_BS_CHUNK_SIZE + 4321, piece = 1500007;
    uint64_t ntx = 3 * CD_BS_OFFS_PER_REC + 5;
    uint8_t *data = make_bytes(n, 13);
    uint8_t hash[32];
    cd_sha256d(hash, data, 80);
    uint64_t *offs = malloc(ntx * sizeof(uint64_t));
    for (uint64_t i = 0; i < ntx; i++)
        offs[i] = 81 + i * ((n - 81) / ntx);
    struct rlimit old;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(cd_blockstore_begin(bs, hash, data, 3, n, ntx), 0);
    size_t done = 0;
    uint64_t oi = 0;
    int failures = 0;
    while (done < n) {
        size_t k = CD_MIN(piece, n - done);
        uint64_t on = 0;
        while (oi + on < ntx && offs[oi + on] < done + k)
            on++;
        if (done >= 2 * piece && failures == 0) {
            /* the file may not grow from here on */
            struct rlimit lim = {0, old.rlim_max};
            char f[600];
            snprintf(f, sizeof(f), "%s/data.mdb", p);
            FILE *fp = fopen(f, "rb");
            ck_assert_ptr_nonnull(fp);
            fseek(fp, 0, SEEK_END);
            lim.rlim_cur = (rlim_t)ftell(fp);
            fclose(fp);
            ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
            int rc = 0;
            for (int t = 0; t < 3 && rc == 0; t++) { /* fails once the free pages are used */
                rc = cd_blockstore_append(bs, data + done, k, offs + oi, on);
                if (rc == 0) {
                    oi += on;
                    done += k;
                    k = CD_MIN(piece, n - done);
                    on = 0;
                    while (oi + on < ntx && offs[oi + on] < done + k)
                        on++;
                }
            }
            ck_assert_msg(rc == EFBIG || rc == EIO, "append with no room: %d", rc);
            failures++;
            ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
            continue; /* the same append again, with room */
        }
        ck_assert_int_eq(cd_blockstore_append(bs, data + done, k, offs + oi, on), 0);
        oi += on;
        done += k;
    }
    ck_assert_int_eq(cd_blockstore_finish(bs), 0);
    ck_assert_int_eq(failures, 1);
    cd_block_loc loc;
    ck_assert_int_eq(cd_blockstore_get(bs, hash, &loc), 0);
    uint8_t *back = malloc(n);
    ck_assert_int_eq(cd_blockstore_read(bs, &loc, 0, back, n), 0);
    ck_assert_int_eq(memcmp(back, data, n), 0);
    uint64_t *ob = malloc(ntx * sizeof(uint64_t));
    ck_assert_int_eq(cd_blockstore_read_offsets(bs, &loc, 0, ntx, ob), 0);
    ck_assert_int_eq(memcmp(ob, offs, ntx * sizeof(uint64_t)), 0);
    free(ob);
    free(back);
    free(offs);
    free(data);
    signal(SIGXFSZ, SIG_DFL);
    cd_blockstore_close(bs);
}
END_TEST

/* Reads a whole file from CD_SHARED_DATA (../shared/data). */
static uint8_t *shared_file(const char *rel, size_t *n)
{
    const char *base = getenv("CD_SHARED_DATA");
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", base ? base : "../shared/data", rel);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    b[sz] = 0;
    *n = (size_t)sz;
    return b;
}

/* Stores block 413567 (real bytes, real offsets) under its hash, with one
 * byte changed at `flip` (none when flip >= n). */
static void store_real(cd_blockstore *bs, size_t flip, uint8_t hash[32], cd_block_loc *loc)
{
    size_t n, on;
    uint8_t *blk = shared_file("mainnet/block413567.raw", &n);
    char *ot = (char *)shared_file("mainnet/block413567.tx-offsets", &on);
    uint64_t *offs = malloc(4096 * sizeof(uint64_t));
    size_t ntx = 0;
    for (char *p = ot, *e; ntx < 4096; p = e) {
        unsigned long long v = strtoull(p, &e, 10);
        if (e == p)
            break;
        offs[ntx++] = v;
    }
    cd_sha256d(hash, blk, 80);
    if (flip < n)
        blk[flip] ^= 0x01;
    ck_assert_int_eq(cd_blockstore_begin(bs, hash, blk, 413567, n, ntx), 0);
    ck_assert_int_eq(cd_blockstore_append(bs, blk, n, offs, ntx), 0);
    ck_assert_int_eq(cd_blockstore_finish(bs), 0);
    ck_assert_int_eq(cd_blockstore_get(bs, hash, loc), 0);
    free(offs);
    free(ot);
    free(blk);
}

/* The served-block check (issue 11, F7): the real block verifies; one bit
 * flipped in a transaction does not, and says why. */
START_TEST(test_verify_real_block_and_a_flipped_bit)
{
    char p[512];
    path_of(p, sizeof(p), "blocks");
    cd_blockstore *bs;
    ck_assert_int_eq(cd_blockstore_open(p, 0, 0, &bs), 0);
    uint8_t hash[32];
    cd_block_loc loc;
    char why[256];
    store_real(bs, SIZE_MAX, hash, &loc);
    ck_assert_int_eq(cd_blockstore_verify(bs, hash, &loc, why, sizeof(why)), 0);
    ck_assert_int_eq(cd_blockstore_check(bs, 10), 0);
    store_real(bs, 500000, hash, &loc); /* replaces it: same hash, a bit changed */
    ck_assert_int_eq(cd_blockstore_verify(bs, hash, &loc, why, sizeof(why)), CD_BS_ECORRUPT);
    ck_assert_msg(strstr(why, "merkle root") != NULL, "%s", why);
    store_real(bs, 40, hash, &loc); /* inside the header */
    ck_assert_int_eq(cd_blockstore_verify(bs, hash, &loc, why, sizeof(why)), CD_BS_ECORRUPT);
    ck_assert_msg(strstr(why, "header") != NULL, "%s", why);
    cd_blockstore_close(bs);
}
END_TEST

/* The fault guard's line: one line, ERROR, the file, the offset, exit 2. */
START_TEST(test_guard_line)
{
    char line[1024];
    size_t n = cd_store_guard_format(line, sizeof(line), SIGBUS, "/d/headers/data.mdb", 77834);
    ck_assert_uint_eq(n, strlen(line));
    ck_assert_ptr_nonnull(strstr(line, "ERROR "));
    ck_assert_ptr_nonnull(strstr(line, "fatal SIGBUS reading the LMDB file /d/headers/data.mdb at "
                                       "offset 77834:"));
    ck_assert_ptr_nonnull(strstr(line, "exiting with status 2"));
    ck_assert_ptr_eq(strchr(line, '\n'), line + n - 1);
    /* a timestamp as cd_log writes it: YYYY-MM-DDTHH:MM:SS.mmmZ */
    ck_assert_int_eq(line[4], '-');
    ck_assert_int_eq(line[10], 'T');
    ck_assert_int_eq(line[23], 'Z');
    n = cd_store_guard_format(line, 40, SIGSEGV, NULL, UINT64_MAX); /* truncated */
    ck_assert_uint_eq(n, 39);
}
END_TEST

START_TEST(test_roundtrip_multichunk)
{
    char p[512];
    path_of(p, sizeof(p), "blocks");
    cd_blockstore *bs;
    ck_assert_int_eq(cd_blockstore_open(p, 0, 0, &bs), 0);
    size_t n = 3 * CD_BS_CHUNK_SIZE + 12345; /* 4 chunks, short last one */
    uint8_t *data = make_bytes(n, 7);
    uint8_t hash[32];
    store(bs, data, n, 70000, 5, 1000003, hash); /* > one offsets record */
    cd_block_loc loc;
    ck_assert_int_eq(cd_blockstore_get(bs, hash, &loc), 0);
    ck_assert_uint_eq(loc.size, n);
    ck_assert_uint_eq(loc.tx_count, 70000);
    ck_assert_uint_eq(loc.chunk_count, 4);
    ck_assert_uint_eq(loc.off_count, 2);
    ck_assert_uint_eq(loc.height, 5);
    ck_assert_int_eq(memcmp(loc.header, data, 80), 0);
    uint8_t *back = malloc(n);
    ck_assert_int_eq(cd_blockstore_read(bs, &loc, 0, back, n), 0);
    ck_assert_int_eq(memcmp(back, data, n), 0);
    /* a range across a chunk boundary */
    ck_assert_int_eq(cd_blockstore_read(bs, &loc, CD_BS_CHUNK_SIZE - 10, back, 20), 0);
    ck_assert_int_eq(memcmp(back, data + CD_BS_CHUNK_SIZE - 10, 20), 0);
    ck_assert_int_eq(cd_blockstore_read(bs, &loc, n - 5, back, 6), CD_BS_ERANGE);
    uint64_t offs[3];
    ck_assert_int_eq(cd_blockstore_read_offsets(bs, &loc, 65535, 3, offs), 0);
    uint64_t step = (n - 81) / 70000;
    ck_assert_uint_eq(offs[0], 81 + 65535 * step);
    ck_assert_uint_eq(offs[2], 81 + 65537 * step);
    uint8_t h2[32];
    ck_assert_int_eq(cd_blockstore_hash_at(bs, 5, h2), 0);
    ck_assert_int_eq(memcmp(h2, hash, 32), 0);
    ck_assert_int_eq(cd_blockstore_hash_at(bs, 6, h2), CD_BS_NOTFOUND);
    free(back);
    free(data);
    cd_blockstore_close(bs);
}
END_TEST

START_TEST(test_half_written_is_recovered)
{
    char p[512];
    path_of(p, sizeof(p), "blocks");
    cd_blockstore *bs;
    ck_assert_int_eq(cd_blockstore_open(p, 0, 0, &bs), 0);
    size_t n = 2 * CD_BS_CHUNK_SIZE + 100;
    uint8_t *good = make_bytes(1000, 1);
    uint8_t hgood[32];
    store(bs, good, 1000, 3, 1, 300, hgood);
    uint8_t *data = make_bytes(n, 2);
    uint8_t hash[32];
    cd_sha256d(hash, data, 80);
    ck_assert_int_eq(cd_blockstore_begin(bs, hash, data, 2, n, 1), 0);
    ck_assert_int_eq(cd_blockstore_append(bs, data, CD_BS_CHUNK_SIZE + 7, NULL, 0), 0);
    /* "crash": close without finish; the committed chunk stays on disk */
    cd_blockstore_close(bs);

    ck_assert_int_eq(cd_blockstore_open(p, 0, 0, &bs), 0);
    cd_block_loc loc;
    ck_assert_int_eq(cd_blockstore_get(bs, hash, &loc), CD_BS_NOTFOUND);
    ck_assert_int_eq(cd_blockstore_recover(bs), 1);
    ck_assert_int_eq(cd_blockstore_recover(bs), 0);
    /* the complete block is untouched */
    ck_assert_int_eq(cd_blockstore_get(bs, hgood, &loc), 0);
    uint8_t back[1000];
    ck_assert_int_eq(cd_blockstore_read(bs, &loc, 0, back, 1000), 0);
    ck_assert_int_eq(memcmp(back, good, 1000), 0);
    /* the block can be written again and gets new (higher) chunk keys */
    uint8_t h3[32];
    store(bs, data, n, 1, 2, n, h3);
    ck_assert_int_eq(cd_blockstore_get(bs, hash, &loc), 0);
    ck_assert_uint_ge(loc.chunk_first, 2); /* keys 0 (good) and 1 (lost) are not reused */
    uint8_t *b2 = malloc(n);
    ck_assert_int_eq(cd_blockstore_read(bs, &loc, 0, b2, n), 0);
    ck_assert_int_eq(memcmp(b2, data, n), 0);
    free(b2);
    free(data);
    free(good);
    cd_blockstore_close(bs);
}
END_TEST

START_TEST(test_abort_delete_replace)
{
    char p[512];
    path_of(p, sizeof(p), "blocks");
    cd_blockstore *bs;
    ck_assert_int_eq(cd_blockstore_open(p, 0, 0, &bs), 0);
    uint8_t *data = make_bytes(5000, 3);
    uint8_t hash[32];
    cd_sha256d(hash, data, 80);
    ck_assert_int_eq(cd_blockstore_begin(bs, hash, data, 9, 5000, 2), 0);
    ck_assert_int_eq(cd_blockstore_append(bs, data, 100, NULL, 0), 0);
    /* out of order / overflow */
    ck_assert_int_eq(cd_blockstore_begin(bs, hash, data, 9, 5000, 2), CD_BS_ESTATE);
    ck_assert_int_eq(cd_blockstore_append(bs, data, 5000, NULL, 0), CD_BS_ERANGE);
    ck_assert_int_eq(cd_blockstore_finish(bs), CD_BS_ERANGE);
    ck_assert_int_eq(cd_blockstore_abort(bs), 0);
    cd_block_loc loc;
    ck_assert_int_eq(cd_blockstore_get(bs, hash, &loc), CD_BS_NOTFOUND);
    ck_assert_int_eq(cd_blockstore_recover(bs), 0);

    uint8_t h[32];
    store(bs, data, 5000, 2, 9, 5000, h);
    store(bs, data, 5000, 2, 9, 700, h); /* same hash again: replaces */
    int count = 0;
    ck_assert_int_eq(cd_blockstore_get(bs, hash, &loc), 0);
    ck_assert_uint_eq(loc.chunk_count, 1);
    ck_assert_int_eq(cd_blockstore_delete(bs, hash), 0);
    ck_assert_int_eq(cd_blockstore_get(bs, hash, &loc), CD_BS_NOTFOUND);
    ck_assert_int_eq(cd_blockstore_hash_at(bs, 9, h), CD_BS_NOTFOUND);
    ck_assert_int_eq(cd_blockstore_delete(bs, hash), CD_BS_NOTFOUND);
    (void)count;
    free(data);
    cd_blockstore_close(bs);
}
END_TEST

static int count_cb(const uint8_t hash[32], const cd_block_loc *loc, void *arg)
{
    (void)hash;
    uint32_t *heights = arg;
    heights[heights[0] + 1] = loc->height;
    heights[0]++;
    return 0;
}

START_TEST(test_readonly_concurrent_and_foreach)
{
    char p[512];
    path_of(p, sizeof(p), "blocks");
    cd_blockstore *ro;
    ck_assert_int_ne(cd_blockstore_open(p, CD_BS_RDONLY, 0, &ro), 0); /* not there yet */
    cd_blockstore *bs;
    ck_assert_int_eq(cd_blockstore_open(p, 0, 0, &bs), 0);
    uint8_t h[32];
    for (uint32_t i = 0; i < 3; i++) {
        uint8_t *d = make_bytes(2000, 10 + i);
        store(bs, d, 2000, 1, 30 - i, 2000, h);
        free(d);
    }
    ck_assert_int_eq(cd_blockstore_open(p, CD_BS_RDONLY, 0, &ro), 0);
    /* a reader sees complete blocks only, while the writer has one open */
    uint8_t *d = make_bytes(3000, 99);
    uint8_t hh[32];
    cd_sha256d(hh, d, 80);
    ck_assert_int_eq(cd_blockstore_begin(bs, hh, d, 50, 3000, 1), 0);
    ck_assert_int_eq(cd_blockstore_append(bs, d, 1000, NULL, 0), 0);
    cd_block_loc loc;
    ck_assert_int_eq(cd_blockstore_get(ro, hh, &loc), CD_BS_NOTFOUND);
    uint32_t heights[8] = {0};
    ck_assert_int_eq(cd_blockstore_foreach(ro, count_cb, heights), 0);
    ck_assert_uint_eq(heights[0], 3);
    ck_assert_uint_eq(heights[1], 30); /* insertion order */
    ck_assert_uint_eq(heights[3], 28);
    ck_assert_int_eq(cd_blockstore_begin(ro, hh, d, 1, 1, 1), CD_BS_ESTATE);
    free(d);
    cd_blockstore_close(ro);
    cd_blockstore_close(bs);
}
END_TEST

START_TEST(test_merkle_tree_parts)
{
    char p[512];
    path_of(p, sizeof(p), "merkle");
    cd_blockstore *bs;
    ck_assert_int_eq(cd_blockstore_open(p, 0, 0, &bs), 0);
    ck_assert_uint_eq(cd_merkle_tree_size(1), 1);
    ck_assert_uint_eq(cd_merkle_tree_size(3), 3 + 2 + 1);
    ck_assert_uint_eq(cd_merkle_tree_size(5), 5 + 3 + 2 + 1);
    uint64_t ntx = CD_BS_MERKLE_PER_PART; /* tree spans two parts */
    uint64_t nh = cd_merkle_tree_size(ntx);
    uint8_t *t = make_bytes(nh * 32, 5);
    uint8_t hash[32] = {1, 2, 3};
    ck_assert_int_eq(cd_blockstore_merkle_put(bs, hash, ntx, t, nh), 0);
    cd_merkle_meta mm;
    ck_assert_int_eq(cd_blockstore_merkle_meta(bs, hash, &mm), 0);
    ck_assert_uint_eq(mm.tx_count, ntx);
    ck_assert_uint_eq(mm.n_hashes, nh);
    ck_assert_int_eq(memcmp(mm.root, t + 32 * (nh - 1), 32), 0);
    uint8_t out[32 * 4];
    ck_assert_int_eq(cd_blockstore_merkle_read(bs, hash, ntx - 2, 4, out), 0);
    ck_assert_int_eq(memcmp(out, t + 32 * (ntx - 2), 128), 0);
    /* replace with a small tree */
    ck_assert_int_eq(cd_blockstore_merkle_put(bs, hash, 1, t, 1), 0);
    ck_assert_int_eq(cd_blockstore_merkle_meta(bs, hash, &mm), 0);
    ck_assert_uint_eq(mm.n_hashes, 1);
    ck_assert_int_eq(cd_blockstore_merkle_read(bs, hash, CD_BS_MERKLE_PER_PART, 1, out),
                     CD_BS_ERANGE);
    ck_assert_int_eq(cd_blockstore_merkle_read(bs, hash, 0, 1, out), 0);
    ck_assert_int_eq(memcmp(out, t, 32), 0);
    /* a tree whose writer died: parts without meta are removed */
    uint8_t h2[32] = {9, 9};
    cd_merkle_part part = {.level = 0, .part = 0, .hashes = t, .n = 3};
    cd_merkle_part part1 = {.level = 1, .part = 0, .hashes = t + 96, .n = 2};
    cd_merkle_part both[2] = {part, part1};
    ck_assert_int_eq(cd_blockstore_merkle_write(bs, h2, both, 2, NULL), 0);
    ck_assert_int_eq(cd_blockstore_merkle_meta(bs, h2, &mm), CD_BS_NOTFOUND);
    ck_assert_int_eq(cd_blockstore_merkle_cleanup(bs), 1);
    ck_assert_int_eq(cd_blockstore_merkle_cleanup(bs), 0);
    /* the complete tree survived the cleanup */
    ck_assert_int_eq(cd_blockstore_merkle_meta(bs, hash, &mm), 0);
    /* meta written last makes a streamed tree visible: 3 leaves */
    cd_merkle_part l2 = {.level = 2, .part = 0, .hashes = t + 160, .n = 1};
    cd_merkle_part all3[3] = {part, part1, l2};
    cd_merkle_meta m3 = {.tx_count = 3, .n_hashes = 6};
    memcpy(m3.root, t + 160, 32);
    ck_assert_int_eq(cd_blockstore_merkle_write(bs, h2, all3, 3, &m3), 0);
    uint8_t six[32 * 6];
    ck_assert_int_eq(cd_blockstore_merkle_read(bs, h2, 0, 6, six), 0);
    ck_assert_int_eq(memcmp(six, t, 32 * 6), 0);
    ck_assert_int_eq(cd_blockstore_merkle_delete(bs, h2), 0);
    ck_assert_int_eq(cd_blockstore_merkle_meta(bs, h2, &mm), CD_BS_NOTFOUND);
    ck_assert_int_eq(cd_blockstore_merkle_read(bs, h2, 0, 1, six), CD_BS_NOTFOUND);
    ck_assert_int_eq(cd_blockstore_merkle_cleanup(bs), 0);
    free(t);
    cd_blockstore_close(bs);
}
END_TEST

static Suite *suite_blockstore(void)
{
    Suite *s = suite_create("blockstore");
    TCase *tc = tcase_create("lmdb");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roundtrip_multichunk);
    tcase_add_test(tc, test_half_written_is_recovered);
    tcase_add_test(tc, test_abort_delete_replace);
    tcase_add_test(tc, test_readonly_concurrent_and_foreach);
    tcase_add_test(tc, test_merkle_tree_parts);
    tcase_add_test(tc, test_map_full_grows);
    tcase_add_test(tc, test_append_retried_after_full);
    tcase_add_test(tc, test_verify_real_block_and_a_flipped_bit);
    tcase_add_test(tc, test_guard_line);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_blockstore)
