/*
 * test_hdrtree.c - unit tests of the header tree (src/store/cd_hdrtree.c)
 * on real LMDB files in a temporary directory, with headers mined on the
 * spot against regtest's proof-of-work limit (a couple of hashes each).
 */
#include "cd_test.h"

#include "btc_header.h"
#include "cd_hash.h"
#include "cd_util.h"
#include "cd_hdrtree.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[256];
static const btc_net *g_net;

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void setup(void)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/cd_hdrtree_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    strcat(g_dir, "/headers");
    g_net = btc_net_get(BTC_NET_REGTEST);
}

static void teardown(void)
{
    rm_rf(g_dir);
    char *slash = strrchr(g_dir, '/');
    *slash = 0;
    rmdir(g_dir);
}

/* Hash of header as a little-endian number <= target of bits? */
static int meets(const uint8_t hdr[80], uint32_t bits)
{
    uint8_t h[32], t[32];
    btc_u256 target;
    cd_sha256d(h, hdr, 80);
    if (btc_bits_to_target(bits, &target) != 0)
        return 0;
    btc_u256_to_be(t, &target);
    for (int i = 0; i < 32; i++) {
        if (h[31 - i] != t[i])
            return h[31 - i] < t[i];
    }
    return 1;
}

/* Builds a header on prev with a valid (want_valid) or failing nonce. */
static void mine(uint8_t out[80], const uint8_t prev[32], uint32_t time, uint32_t bits,
                 uint32_t salt, int want_valid)
{
    memset(out, 0, 80);
    cd_put_le32(out, 0x20000000);
    memcpy(out + 4, prev, 32);
    cd_put_le32(out + 36, salt); /* "merkle root" distinguishes branches */
    cd_put_le32(out + 68, time);
    cd_put_le32(out + 72, bits);
    for (uint32_t nonce = 0;; nonce++) {
        cd_put_le32(out + 76, nonce);
        if (meets(out, bits) == want_valid)
            return;
    }
}

/* Mines n headers on `prev` (hash, time) into buf (80 bytes each). */
static void mine_chain(uint8_t *buf, size_t n, const uint8_t prev[32], uint32_t prev_time,
                       uint32_t spacing, uint32_t bits, uint32_t salt)
{
    uint8_t ph[32];
    memcpy(ph, prev, 32);
    for (size_t i = 0; i < n; i++) {
        mine(buf + 80 * i, ph, prev_time + spacing * (uint32_t)(i + 1), bits, salt, 1);
        cd_sha256d(ph, buf + 80 * i, 80);
    }
}

static cd_hdrtree *open_tree(void)
{
    cd_hdrtree *t = NULL;
    ck_assert_int_eq(cd_hdrtree_open(&t, g_dir, g_net, 0), 0);
    return t;
}

static uint32_t node_time(const cd_hdr_node *n)
{
    return cd_le32(n->raw + 68);
}

/* Extends the best tip of t by n headers (salt distinguishes branches). */
static void extend_from(cd_hdrtree *t, const cd_hdr_node *from, size_t n, uint32_t salt,
                        cd_hdrtree_add_result *res, int expect)
{
    uint8_t *buf = malloc(80 * n);
    mine_chain(buf, n, from->hash, node_time(from), 600, 0x207fffff, salt);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, n, 80, res), expect);
    free(buf);
}

START_TEST(test_genesis)
{
    cd_hdrtree *t = open_tree();
    const cd_hdr_node *tip = cd_hdrtree_tip(t);
    char hex[65];
    cd_hex_encode_rev(hex, tip->hash, 32);
    ck_assert_str_eq(hex, "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206");
    ck_assert_int_eq(cd_hdrtree_height(t), 0);
    ck_assert_uint_eq(cd_hdrtree_count(t), 1);
    /* regtest genesis work: 2^256 / 2^255 = 2 */
    uint8_t two[32] = {0};
    two[31] = 2;
    ck_assert_mem_eq(tip->work, two, 32);
    cd_hdrtree_close(t);

    /* another network on the same directory is refused */
    cd_hdrtree *t2 = NULL;
    ck_assert_int_eq(cd_hdrtree_open(&t2, g_dir, btc_net_get(BTC_NET_MAIN), 0),
                     CD_HDRTREE_EGENESIS);
    ck_assert_ptr_null(t2);
}
END_TEST

START_TEST(test_connect_and_known)
{
    cd_hdrtree *t = open_tree();
    uint8_t buf[80 * 100];
    mine_chain(buf, 100, cd_hdrtree_tip(t)->hash, node_time(cd_hdrtree_tip(t)), 600, 0x207fffff, 1);
    cd_hdrtree_add_result r;
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 100, 80, &r), 0);
    ck_assert_uint_eq(r.n_new, 100);
    ck_assert_uint_eq(r.n_known, 0);
    ck_assert_int_eq(r.tip_changed, 1);
    ck_assert_int_eq(cd_hdrtree_height(t), 100);
    ck_assert_uint_eq(cd_hdrtree_count(t), 101);
    uint8_t h[32];
    cd_sha256d(h, buf + 80 * 99, 80);
    ck_assert_mem_eq(cd_hdrtree_tip(t)->hash, h, 32);
    ck_assert_ptr_eq(r.last, cd_hdrtree_tip(t));
    cd_sha256d(h, buf + 80 * 49, 80);
    ck_assert_mem_eq(cd_hdrtree_at(t, 50)->hash, h, 32);
    ck_assert_ptr_null(cd_hdrtree_at(t, 101));
    ck_assert_ptr_eq(cd_hdrtree_find(t, h), cd_hdrtree_at(t, 50));
    /* work = 2 per block */
    ck_assert_uint_eq(cd_hdrtree_tip(t)->work[31], 202);

    /* the same headers again: all known, nothing changes */
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 100, 80, &r), 0);
    ck_assert_uint_eq(r.n_new, 0);
    ck_assert_uint_eq(r.n_known, 100);
    ck_assert_int_eq(r.tip_changed, 0);
    ck_assert_uint_eq(cd_hdrtree_count(t), 101);

    /* stride 81 (a headers payload: header + tx count byte) */
    uint8_t buf81[81 * 3];
    uint8_t tmp[80 * 3];
    mine_chain(tmp, 3, cd_hdrtree_tip(t)->hash, node_time(cd_hdrtree_tip(t)), 600, 0x207fffff, 1);
    for (int i = 0; i < 3; i++) {
        memcpy(buf81 + 81 * i, tmp + 80 * i, 80);
        buf81[81 * i + 80] = 0;
    }
    ck_assert_int_eq(cd_hdrtree_add(t, buf81, 3, 81, &r), 0);
    ck_assert_int_eq(cd_hdrtree_height(t), 103);
    cd_hdrtree_close(t);
}
END_TEST

START_TEST(test_unconnected_refused)
{
    cd_hdrtree *t = open_tree();
    const cd_hdr_node *g = cd_hdrtree_tip(t);
    uint8_t buf[80 * 10];
    mine_chain(buf, 10, g->hash, node_time(g), 600, 0x207fffff, 2);
    /* header 0 of a chain whose parent is unknown */
    cd_hdrtree_add_result r;
    ck_assert_int_eq(cd_hdrtree_add(t, buf + 80, 9, 80, &r), CD_HDRTREE_EUNCONNECTED);
    ck_assert_uint_eq(r.bad_index, 0);
    ck_assert_uint_eq(cd_hdrtree_count(t), 1);
    /* a gap in the middle of a batch: nothing of the batch is kept */
    uint8_t gap[80 * 9];
    memcpy(gap, buf, 80 * 5);
    memcpy(gap + 80 * 5, buf + 80 * 6, 80 * 4);
    ck_assert_int_eq(cd_hdrtree_add(t, gap, 9, 80, &r), CD_HDRTREE_EUNCONNECTED);
    ck_assert_uint_eq(r.bad_index, 5);
    ck_assert_uint_eq(cd_hdrtree_count(t), 1);
    ck_assert_int_eq(cd_hdrtree_height(t), 0);
    uint8_t h[32];
    cd_sha256d(h, buf, 80);
    ck_assert_ptr_null(cd_hdrtree_find(t, h));
    cd_hdrtree_close(t);

    /* and nothing reached LMDB */
    t = open_tree();
    ck_assert_uint_eq(cd_hdrtree_count(t), 1);
    ck_assert_int_eq(cd_hdrtree_height(t), 0);
    /* the full chain is fine afterwards */
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 10, 80, &r), 0);
    ck_assert_int_eq(cd_hdrtree_height(t), 10);
    cd_hdrtree_close(t);
}
END_TEST

START_TEST(test_bad_pow_refused)
{
    cd_hdrtree *t = open_tree();
    const cd_hdr_node *g = cd_hdrtree_tip(t);
    uint8_t buf[80 * 4];
    cd_hdrtree_add_result r;
    mine_chain(buf, 3, g->hash, node_time(g), 600, 0x207fffff, 3);
    uint8_t h2[32];
    cd_sha256d(h2, buf + 160, 80);
    /* 4th header: hash above its target */
    mine(buf + 240, h2, node_time(g) + 2400, 0x207fffff, 3, 0);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 4, 80, &r), CD_HDRTREE_EBADPOW);
    ck_assert_uint_eq(r.bad_index, 3);
    ck_assert_uint_eq(cd_hdrtree_count(t), 1);

    /* nBits above the network limit (valid hash for that easier target) */
    mine(buf + 240, h2, node_time(g) + 2400, 0x2100ffff, 3, 1);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 4, 80, &r), CD_HDRTREE_EBADBITS);
    /* negative / zero nBits */
    memcpy(buf + 240 + 72, "\xff\xff\xff\x20", 4);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 4, 80, &r), CD_HDRTREE_EBADBITS);
    memcpy(buf + 240 + 72, "\x00\x00\x00\x20", 4);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 4, 80, &r), CD_HDRTREE_EBADBITS);
    /* regtest never retargets: a harder (valid) nBits is still refused */
    mine(buf + 240, h2, node_time(g) + 2400, 0x201fffff, 3, 1);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 4, 80, &r), CD_HDRTREE_EBADBITS);
    ck_assert_uint_eq(cd_hdrtree_count(t), 1);
    cd_hdrtree_close(t);

    t = open_tree();
    ck_assert_uint_eq(cd_hdrtree_count(t), 1);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 3, 80, &r), 0);
    ck_assert_int_eq(cd_hdrtree_height(t), 3);
    cd_hdrtree_close(t);
}
END_TEST

START_TEST(test_bad_time_refused)
{
    cd_hdrtree *t = open_tree();
    const cd_hdr_node *g = cd_hdrtree_tip(t);
    uint8_t buf[80 * 12];
    cd_hdrtree_add_result r;
    mine_chain(buf, 11, g->hash, node_time(g), 600, 0x207fffff, 4);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 11, 80, &r), 0);
    const cd_hdr_node *tip = cd_hdrtree_tip(t);
    uint32_t mtp = cd_hdrtree_mtp(tip);
    ck_assert_uint_eq(mtp, node_time(g) + 6 * 600);
    /* equal to the median time past: refused */
    mine(buf, tip->hash, mtp, 0x207fffff, 4, 1);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 1, 80, &r), CD_HDRTREE_EBADTIME);
    /* one second above it: fine (earlier than the parent is allowed) */
    mine(buf, tip->hash, mtp + 1, 0x207fffff, 4, 1);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 1, 80, &r), 0);
    tip = cd_hdrtree_tip(t);
    /* more than two hours in the future */
    cd_hdrtree_set_now(t, 2000000000);
    mine(buf, tip->hash, 2000000000 + 7201, 0x207fffff, 4, 1);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 1, 80, &r), CD_HDRTREE_EBADTIME);
    mine(buf, tip->hash, 2000000000 + 7200, 0x207fffff, 4, 1);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 1, 80, &r), 0);
    ck_assert_int_eq(cd_hdrtree_height(t), 13);
    cd_hdrtree_close(t);
}
END_TEST

static cd_hdrtree_tip_event g_ev;
static const cd_hdr_node *g_leave[64], *g_join[64];
static int g_ev_count;

static void on_tip(const cd_hdrtree_tip_event *ev, void *arg)
{
    (void)arg;
    g_ev = *ev;
    ck_assert_uint_le(ev->n_leaving, 64);
    ck_assert_uint_le(ev->n_joining, 64);
    for (size_t i = 0; i < ev->n_leaving; i++)
        g_leave[i] = ev->leaving[i];
    for (size_t i = 0; i < ev->n_joining; i++)
        g_join[i] = ev->joining[i];
    g_ev_count++;
}

START_TEST(test_fork_and_reorg)
{
    cd_hdrtree *t = open_tree();
    cd_hdrtree_set_tip_cb(t, on_tip, NULL);
    cd_hdrtree_add_result r;
    g_ev_count = 0;
    extend_from(t, cd_hdrtree_tip(t), 20, 10, &r, 0);
    ck_assert_int_eq(g_ev_count, 1);
    ck_assert_uint_eq(g_ev.n_leaving, 0);
    ck_assert_uint_eq(g_ev.n_joining, 20);
    ck_assert_int_eq(g_ev.fork->height, 0);
    ck_assert_ptr_eq(g_join[19], cd_hdrtree_tip(t));
    const cd_hdr_node *old_tip = cd_hdrtree_tip(t);
    const cd_hdr_node *f15 = cd_hdrtree_at(t, 15);

    /* a branch with less work (3 blocks on 15): stored, tip unchanged */
    extend_from(t, f15, 3, 11, &r, 0);
    ck_assert_uint_eq(r.n_new, 3);
    ck_assert_int_eq(r.tip_changed, 0);
    ck_assert_int_eq(g_ev_count, 1);
    ck_assert_ptr_eq(cd_hdrtree_tip(t), old_tip);
    ck_assert_uint_eq(cd_hdrtree_count(t), 24);
    ck_assert(!cd_hdrtree_on_best(t, r.last));

    /* equal work (5 blocks on 15): first seen wins */
    extend_from(t, f15, 5, 12, &r, 0);
    ck_assert_int_eq(r.tip_changed, 0);
    ck_assert_ptr_eq(cd_hdrtree_tip(t), old_tip);

    /* more work (10 blocks on 15): reorg */
    const cd_hdr_node *old_at[21];
    for (int h = 0; h <= 20; h++)
        old_at[h] = cd_hdrtree_at(t, h);
    extend_from(t, f15, 10, 13, &r, 0);
    ck_assert_int_eq(r.tip_changed, 1);
    ck_assert_int_eq(g_ev_count, 2);
    ck_assert_ptr_eq(g_ev.fork, f15);
    ck_assert_ptr_eq(g_ev.old_tip, old_tip);
    ck_assert_ptr_eq(g_ev.new_tip, cd_hdrtree_tip(t));
    ck_assert_uint_eq(g_ev.n_leaving, 5);
    ck_assert_uint_eq(g_ev.n_joining, 10);
    for (int i = 0; i < 5; i++)
        ck_assert_ptr_eq(g_leave[i], old_at[20 - i]);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(g_join[i]->height, 16 + i);
        ck_assert_ptr_eq(cd_hdrtree_at(t, 16 + i), g_join[i]);
    }
    ck_assert_int_eq(cd_hdrtree_height(t), 25);
    ck_assert(!cd_hdrtree_on_best(t, old_tip));
    ck_assert(cd_hdrtree_on_best(t, f15));
    ck_assert_ptr_eq(cd_hdrtree_ancestor(t, old_tip, 15), f15);
    ck_assert_ptr_eq(cd_hdrtree_ancestor(t, old_tip, 18), old_at[18]);

    /* the old branch grows back past the new one: reorg the other way */
    extend_from(t, old_tip, 6, 10, &r, 0);
    ck_assert_int_eq(g_ev_count, 3);
    ck_assert_ptr_eq(g_ev.fork, f15);
    ck_assert_uint_eq(g_ev.n_leaving, 10);
    ck_assert_uint_eq(g_ev.n_joining, 11);
    ck_assert_int_eq(cd_hdrtree_height(t), 26);
    ck_assert_ptr_eq(cd_hdrtree_at(t, 20), old_tip);

    uint8_t tip_hash[32];
    memcpy(tip_hash, cd_hdrtree_tip(t)->hash, 32);
    size_t count = cd_hdrtree_count(t);
    cd_hdrtree_close(t);

    /* persistence: same tip, count, best chain */
    t = open_tree();
    ck_assert_mem_eq(cd_hdrtree_tip(t)->hash, tip_hash, 32);
    ck_assert_uint_eq(cd_hdrtree_count(t), count);
    ck_assert_int_eq(cd_hdrtree_height(t), 26);
    for (int h = 1; h <= 26; h++)
        ck_assert_mem_eq(cd_hdrtree_at(t, h)->raw + 4, cd_hdrtree_at(t, h - 1)->hash, 32);
    cd_hdrtree_close(t);

    /* read-only access agrees */
    cd_hdrtree *ro = NULL;
    ck_assert_int_eq(cd_hdrtree_open(&ro, g_dir, g_net, CD_HDRTREE_RDONLY), 0);
    cd_hdr_node n;
    ck_assert_int_eq(cd_hdrtree_get_tip(ro, &n), 0);
    ck_assert_mem_eq(n.hash, tip_hash, 32);
    ck_assert_int_eq(n.height, 26);
    ck_assert_int_eq(cd_hdrtree_get_at(ro, 16, &n), 0);
    ck_assert_int_eq(n.height, 16);
    ck_assert_int_eq(cd_hdrtree_get_at(ro, 27, &n), CD_HDRTREE_ENOTFOUND);
    uint8_t zero[80] = {0};
    ck_assert_int_eq(cd_hdrtree_add(ro, zero, 1, 80, NULL), CD_HDRTREE_ERDONLY);
    cd_hdrtree_close(ro);
}
END_TEST

/* Reader and writer in two processes, as conduit-cli and the daemon: the
 * reader sees every committed headers message while the writer stays open.
 * (LMDB forbids opening one env twice in one process, hence the fork; the
 * parent opens nothing before it.) */
START_TEST(test_readonly_while_writer_open)
{
    int to_child[2], to_parent[2];
    ck_assert_int_eq(pipe(to_child), 0);
    ck_assert_int_eq(pipe(to_parent), 0);
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        char c = 0;
        cd_hdrtree *t = NULL;
        if (cd_hdrtree_open(&t, g_dir, g_net, 0) != 0)
            _exit(10);
        cd_hdrtree_add_result r;
        uint8_t buf[80 * 5];
        for (int round = 0; round < 2; round++) {
            const cd_hdr_node *tip = cd_hdrtree_tip(t);
            mine_chain(buf, 5, tip->hash, node_time(tip), 600, 0x207fffff, 20);
            if (cd_hdrtree_add(t, buf, 5, 80, &r) != 0)
                _exit(11);
            if (round == 1 &&
                cd_hdrtree_set_status(t, cd_hdrtree_at(t, 7)->hash, CD_HDR_BLOCK_STORED, 0) != 0)
                _exit(12);
            if (write(to_parent[1], "x", 1) != 1 || read(to_child[0], &c, 1) != 1)
                _exit(13);
        }
        cd_hdrtree_close(t);
        _exit(0);
    }
    char c;
    cd_hdrtree *ro = NULL;
    cd_hdr_node n, at7;
    ck_assert_int_eq(read(to_parent[0], &c, 1), 1);
    ck_assert_int_eq(cd_hdrtree_open(&ro, g_dir, g_net, CD_HDRTREE_RDONLY), 0);
    ck_assert_int_eq(cd_hdrtree_get_tip(ro, &n), 0);
    ck_assert_int_eq(n.height, 5);
    ck_assert_int_eq(write(to_child[1], "x", 1), 1);
    ck_assert_int_eq(read(to_parent[0], &c, 1), 1);
    /* the writer committed 5 more headers and a status change meanwhile */
    ck_assert_int_eq(cd_hdrtree_get_tip(ro, &n), 0);
    ck_assert_int_eq(n.height, 10);
    ck_assert_int_eq(cd_hdrtree_get_at(ro, 7, &at7), 0);
    ck_assert_int_eq(at7.height, 7);
    ck_assert_uint_eq(at7.status, CD_HDR_VALID_HEADER | CD_HDR_BLOCK_STORED);
    ck_assert_int_eq(cd_hdrtree_get(ro, at7.hash, &n), 0);
    ck_assert_int_eq(n.height, 7);
    ck_assert_mem_eq(n.raw, at7.raw, 80);
    ck_assert_int_eq(cd_hdrtree_get_at(ro, 6, &n), 0);
    ck_assert_mem_eq(at7.raw + 4, n.hash, 32); /* 7 links to 6 */
    uint8_t unknown[32] = {1};
    ck_assert_int_eq(cd_hdrtree_get(ro, unknown, &n), CD_HDRTREE_ENOTFOUND);
    ck_assert_int_eq(write(to_child[1], "x", 1), 1);
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    cd_hdrtree_close(ro);
}
END_TEST

START_TEST(test_invalid_descendants)
{
    cd_hdrtree *t = open_tree();
    cd_hdrtree_add_result r;
    extend_from(t, cd_hdrtree_tip(t), 5, 30, &r, 0);
    const cd_hdr_node *tip = cd_hdrtree_tip(t);
    ck_assert_int_eq(cd_hdrtree_set_status(t, tip->hash, CD_HDR_INVALID, 0), 0);
    extend_from(t, tip, 2, 30, &r, CD_HDRTREE_EINVALID);
    ck_assert_uint_eq(cd_hdrtree_count(t), 6);
    cd_hdrtree_close(t);
}
END_TEST

START_TEST(test_locator_and_limits)
{
    cd_hdrtree *t = open_tree();
    uint8_t loc[64][32];
    ck_assert_uint_eq(cd_hdrtree_locator(t, loc, 64), 1);
    ck_assert_mem_eq(loc[0], cd_hdrtree_tip(t)->hash, 32);

    uint8_t *buf = malloc(80 * 2001);
    mine_chain(buf, 2001, cd_hdrtree_tip(t)->hash, node_time(cd_hdrtree_tip(t)), 600, 0x207fffff,
               40);
    cd_hdrtree_add_result r;
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 2001, 80, &r), CD_HDRTREE_ETOOMANY);
    ck_assert_uint_eq(cd_hdrtree_count(t), 1);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 2000, 80, &r), 0);
    ck_assert_int_eq(cd_hdrtree_add(t, buf + 80 * 2000, 1, 80, &r), 0);
    ck_assert_int_eq(cd_hdrtree_height(t), 2001);
    free(buf);

    size_t n = cd_hdrtree_locator(t, loc, 64);
    /* 2001..1991 (11 entries), then steps 2,4,8,... then genesis */
    for (int i = 0; i <= 10; i++)
        ck_assert_mem_eq(loc[i], cd_hdrtree_at(t, 2001 - i)->hash, 32);
    ck_assert_mem_eq(loc[11], cd_hdrtree_at(t, 1989)->hash, 32);
    ck_assert_mem_eq(loc[12], cd_hdrtree_at(t, 1985)->hash, 32);
    ck_assert_mem_eq(loc[n - 1], cd_hdrtree_at(t, 0)->hash, 32);
    ck_assert_uint_lt(n, 30);
    cd_hdrtree_close(t);
}
END_TEST

/* A mainnet-rules network (cash DAA from height 0) with regtest's easy limit,
 * so blocks can be mined in a unit test. */
static btc_net g_daa_net;

static void daa_net_setup(void)
{
    g_daa_net = *btc_net_get(BTC_NET_MAIN);
    const btc_net *rt = btc_net_get(BTC_NET_REGTEST);
    memcpy(g_daa_net.genesis_header, rt->genesis_header, 80);
    memcpy(g_daa_net.genesis_hash, rt->genesis_hash, 32);
    memcpy(g_daa_net.pow_limit, rt->pow_limit, 32);
    g_daa_net.pow_limit_bits = rt->pow_limit_bits;
    g_daa_net.pow_no_retargeting = 0;
    g_daa_net.pow_allow_min_difficulty = 0;
    g_daa_net.daa_height = 0;
    g_daa_net.uahf_height = 0;
    g_net = &g_daa_net;
}

/* Tries one header with `bits` on the tip; returns cd_hdrtree_add's code. */
static int try_bits(cd_hdrtree *t, uint32_t spacing, uint32_t bits)
{
    const cd_hdr_node *tip = cd_hdrtree_tip(t);
    uint8_t h[80];
    mine(h, tip->hash, node_time(tip) + spacing, bits, 60, 1);
    return cd_hdrtree_add(t, h, 1, 80, NULL);
}

START_TEST(test_daa_steady)
{
    daa_net_setup();
    cd_hdrtree *t = open_tree();
    uint8_t *buf = malloc(80 * 2016);
    const cd_hdr_node *g = cd_hdrtree_tip(t);
    /* 2020 blocks at 600 s on the limit (the node applies the DAA from
     * height 2016 on): the cash DAA keeps the limit */
    mine_chain(buf, 2000, g->hash, node_time(g), 600, 0x207fffff, 50);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 2000, 80, NULL), 0);
    g = cd_hdrtree_tip(t);
    mine_chain(buf, 20, g->hash, node_time(g), 600, 0x207fffff, 50);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 20, 80, NULL), 0);
    ck_assert_int_eq(try_bits(t, 600, 0x203fffff), CD_HDRTREE_EBADBITS);
    ck_assert_int_eq(try_bits(t, 600, 0x207ffffe), CD_HDRTREE_EBADBITS);
    ck_assert_int_eq(try_bits(t, 600, 0x207fffff), 0);
    ck_assert_int_eq(cd_hdrtree_height(t), 2021);
    free(buf);
    cd_hdrtree_close(t);
}
END_TEST

START_TEST(test_daa_fast_blocks)
{
    daa_net_setup();
    cd_hdrtree *t = open_tree();
    uint8_t *buf = malloc(80 * 1700);
    const cd_hdr_node *g = cd_hdrtree_tip(t);
    /* 1700 blocks at 600 s, then 316 one second apart: at height 2016 the
     * window is all fast blocks, its timespan is clamped to 72 * 600 s, so
     * the work per block doubles: work 2 -> 4, i.e. target 2^255 - 1 ->
     * 2^254 - 1 (nBits 0x203fffff) for block 2017 */
    mine_chain(buf, 1700, g->hash, node_time(g), 600, 0x207fffff, 51);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 1700, 80, NULL), 0);
    g = cd_hdrtree_tip(t);
    mine_chain(buf, 316, g->hash, node_time(g), 1, 0x207fffff, 51);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 316, 80, NULL), 0);
    ck_assert_int_eq(cd_hdrtree_height(t), 2016);
    ck_assert_int_eq(try_bits(t, 1, 0x207fffff), CD_HDRTREE_EBADBITS);
    ck_assert_int_eq(cd_hdrtree_height(t), 2016);
    ck_assert_int_eq(try_bits(t, 1, 0x203fffff), 0);
    ck_assert_int_eq(cd_hdrtree_height(t), 2017);
    free(buf);
    cd_hdrtree_close(t);
}
END_TEST

/* The PoW arithmetic on a real mainnet header: block 413567 meets the
 * target its nBits encode, and fails a target 2^8 times smaller. */
START_TEST(test_pow_real_header)
{
    size_t len;
    unsigned char *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    ck_assert_uint_ge(len, 80);
    uint8_t h[32];
    btc_u256 t;
    cd_sha256d(h, blk, 80);
    char hex[65];
    cd_hex_encode_rev(hex, h, 32);
    ck_assert_str_eq(hex, "0000000000000000025aff8be8a55df8f89c77296db6198f272d6577325d4069");
    uint32_t bits = cd_le32(blk + 72);
    ck_assert_int_eq(btc_bits_to_target(bits, &t), 0);
    ck_assert(meets(blk, bits));
    uint32_t harder = bits - 0x01000000; /* one byte smaller exponent */
    ck_assert(!meets(blk, harder));
    free(blk);
}
END_TEST

/* Pre-DAA (legacy) rules on the synthetic net: between retargets nBits must
 * stay the parent's, even when harder. */
START_TEST(test_legacy_rules)
{
    daa_net_setup();
    g_daa_net.daa_height = 1000000;
    g_daa_net.uahf_height = 1000000;
    cd_hdrtree *t = open_tree();
    uint8_t buf[80 * 20];
    const cd_hdr_node *g = cd_hdrtree_tip(t);
    mine_chain(buf, 20, g->hash, node_time(g), 600, 0x207fffff, 80);
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 20, 80, NULL), 0);
    ck_assert_int_eq(try_bits(t, 600, 0x203fffff), CD_HDRTREE_EBADBITS);
    ck_assert_int_eq(try_bits(t, 600, 0x207fffff), 0);
    ck_assert_int_eq(cd_hdrtree_height(t), 21);
    cd_hdrtree_close(t);
}
END_TEST

/* A shorter branch with more work (harder nBits, allowed below the DAA
 * window on the synthetic net) becomes best: the heights above its tip leave
 * the best-chain index, in memory and in LMDB. */
START_TEST(test_shorter_chain_more_work)
{
    daa_net_setup();
    cd_hdrtree *t = open_tree();
    cd_hdrtree_set_tip_cb(t, on_tip, NULL);
    g_ev_count = 0;
    uint8_t buf[80 * 10];
    const cd_hdr_node *g = cd_hdrtree_tip(t);
    mine_chain(buf, 10, g->hash, node_time(g), 600, 0x207fffff, 70); /* work 2 + 10*2 */
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 10, 80, NULL), 0);
    const cd_hdr_node *f5 = cd_hdrtree_at(t, 5);
    mine_chain(buf, 3, f5->hash, node_time(f5), 600, 0x203fffff, 71); /* 12 + 3*4 = 24 */
    ck_assert_int_eq(cd_hdrtree_add(t, buf, 2, 80, NULL), 0);         /* 20 < 22 */
    ck_assert_int_eq(cd_hdrtree_height(t), 10);
    ck_assert_int_eq(cd_hdrtree_add(t, buf + 160, 1, 80, NULL), 0); /* 24 > 22 */
    ck_assert_int_eq(cd_hdrtree_height(t), 8);
    ck_assert_int_eq(g_ev_count, 2);
    ck_assert_ptr_eq(g_ev.fork, f5);
    ck_assert_uint_eq(g_ev.n_leaving, 5);
    ck_assert_uint_eq(g_ev.n_joining, 3);
    ck_assert_ptr_null(cd_hdrtree_at(t, 9));
    ck_assert_uint_eq(cd_hdrtree_tip(t)->work[31], 24);
    uint8_t tip[32];
    memcpy(tip, cd_hdrtree_tip(t)->hash, 32);
    cd_hdrtree_close(t);

    cd_hdrtree *ro = NULL;
    cd_hdr_node n;
    ck_assert_int_eq(cd_hdrtree_open(&ro, g_dir, g_net, CD_HDRTREE_RDONLY), 0);
    ck_assert_int_eq(cd_hdrtree_get_at(ro, 9, &n), CD_HDRTREE_ENOTFOUND);
    ck_assert_int_eq(cd_hdrtree_get_at(ro, 8, &n), 0);
    ck_assert_mem_eq(n.hash, tip, 32);
    cd_hdrtree_close(ro);
    t = open_tree();
    ck_assert_int_eq(cd_hdrtree_height(t), 8);
    ck_assert_mem_eq(cd_hdrtree_tip(t)->hash, tip, 32);
    ck_assert_uint_eq(cd_hdrtree_count(t), 14);
    cd_hdrtree_close(t);
}
END_TEST

static Suite *suite_hdrtree(void)
{
    Suite *s = suite_create("hdrtree");
    TCase *tc = tcase_create("tree");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_genesis);
    tcase_add_test(tc, test_connect_and_known);
    tcase_add_test(tc, test_unconnected_refused);
    tcase_add_test(tc, test_bad_pow_refused);
    tcase_add_test(tc, test_bad_time_refused);
    tcase_add_test(tc, test_fork_and_reorg);
    tcase_add_test(tc, test_readonly_while_writer_open);
    tcase_add_test(tc, test_invalid_descendants);
    tcase_add_test(tc, test_locator_and_limits);
    tcase_add_test(tc, test_daa_steady);
    tcase_add_test(tc, test_daa_fast_blocks);
    tcase_add_test(tc, test_shorter_chain_more_work);
    tcase_add_test(tc, test_legacy_rules);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("pow");
    tcase_add_test(tm, test_pow_real_header);
    suite_add_tcase(s, tm);
    return s;
}

CD_TEST_MAIN(suite_hdrtree)
