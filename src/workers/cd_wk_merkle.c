/*
 * cd_wk_merkle.c - the merkle worker: txids per unit, full tree per block,
 * root checked against the header, tree stored in LMDB (<datadir>/merkle).
 *
 * Why a separate process: hashing every transaction is the CPU-heavy part of
 * block verification (DESIGN.md §5, "every block is verified before it
 * counts"); it runs beside the writer and the parsers on the same ring bytes.
 * This process is the only writer of the merkle environment. The tree is
 * stored only when the root matches, so "block valid" = complete location in
 * the block store AND a tree here.
 */
#include "cd_wk_main.h"

#include "btc_merkle.h"
#include "btc_sha256.h"
#include "cd_log.h"
#include "cd_blockstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The tree itself is built by the bitcoin module's streaming builder
 * (btc_merkle_stream_*: O(log n) state, CVE-2012-2459 detection); it hands
 * every node over as it is computed, level by level in index order. This
 * worker only stores them: each level fills a buffer that is written to LMDB
 * as a part of CD_BS_MERKLE_PER_PART hashes whenever it is full. At
 * BLOCK_END the stream pairs the odd nodes, the root is compared with the
 * header, and the last partial parts are written together with the meta
 * record (the tree's "complete" marker) in one txn. Memory: one part buffer
 * per level, about 4 MiB x log2(txs / 131072) + 8 MiB.
 *
 * A write that fails for want of space is tried again until it works
 * (cd_wk_store_wait: one ERROR, the status says "stale: disk full"; issue
 * 11, F6), as in the writer.
 */
#define MK_LEVELS 64

typedef struct mk_level {
    uint8_t *buf; /* hashes of this level not yet written */
    uint32_t n_buf;
    uint32_t part; /* number of the part buf will become */
} mk_level;

typedef struct wk_merkle {
    cd_blockstore *bs;
    uint64_t block_id;
    int active;
    uint8_t hash[32];
    uint8_t header_root[32];
    uint64_t tx_count;
    uint64_t filled; /* txids computed */
    int bad;         /* a unit did not fit the block */
    int store_err;
    unsigned n_levels;
    mk_level lv[MK_LEVELS];
    btc_merkle_stream stream;
    cd_wk_ctx *ctx;  /* for cd_wk_store_wait */
    char path[4096]; /* <datadir>/merkle */
} wk_merkle;

/* Retries a store write while it fails for want of space. */
#define WRITE_RETRYING(m, rc, expr)                                                                \
    do {                                                                                           \
        while (((rc) = (expr)) != 0 && cd_wk_store_wait((m)->ctx, (m)->path, (rc)) == 0)           \
            ;                                                                                      \
        if ((rc) == 0)                                                                             \
            cd_wk_store_ok((m)->ctx, (m)->path);                                                   \
    } while (0)

static int on_node(void *ctx, unsigned level, uint64_t index, const uint8_t h[32]);

static int merkle_init(cd_wk_ctx *c)
{
    wk_merkle *m = cd_xcalloc(1, sizeof(*m));
    c->state = m;
    m->ctx = c;
    snprintf(m->path, sizeof(m->path), "%s/merkle", c->cfg->datadir);
    int rc = cd_blockstore_open(m->path, 0, 0, &m->bs);
    if (rc == 0)
        rc = cd_blockstore_check(m->bs, CD_WK_CHECK_BOUND); /* issue 11, F7 */
    /* a damaged file stays damaged: exit 2, no restart loop (logged) */
    if (rc)
        return cd_blockstore_is_corrupt(rc) ? CD_EXIT_CONFIG : CD_EXIT_FAILURE;
    while ((rc = cd_blockstore_merkle_cleanup(m->bs)) < 0 && cd_wk_store_wait(c, m->path, rc) == 0)
        ;
    if (rc >= 0)
        cd_wk_store_ok(c, m->path);
    return rc < 0 ? CD_EXIT_FAILURE : CD_EXIT_OK;
}

static void merkle_reset(wk_merkle *m)
{
    for (unsigned i = 0; i < MK_LEVELS; i++) {
        free(m->lv[i].buf);
        memset(&m->lv[i], 0, sizeof(m->lv[i]));
    }
    m->n_levels = 0;
    m->active = 0;
}

static int merkle_begin(cd_wk_ctx *c, const cd_ipc_block_begin *b)
{
    wk_merkle *m = c->state;
    merkle_reset(m);
    m->block_id = b->block_id;
    memcpy(m->hash, b->hash, 32);
    memcpy(m->header_root, b->header + 36, 32);
    m->tx_count = b->tx_count;
    m->filled = 0;
    m->bad = b->tx_count == 0;
    m->store_err = 0;
    btc_merkle_stream_init(&m->stream, on_node, m);
    uint64_t n = b->tx_count;
    while (n > 0 && m->n_levels < MK_LEVELS) {
        uint64_t cap = CD_MIN(n, (uint64_t)CD_BS_MERKLE_PER_PART);
        m->lv[m->n_levels].buf = malloc((size_t)cap * 32);
        if (!m->lv[m->n_levels].buf) {
            cd_log_error("merkle: cannot allocate level buffers for %llu txs",
                         (unsigned long long)b->tx_count);
            return -1;
        }
        m->n_levels++;
        if (n == 1)
            break;
        n = (n + 1) / 2;
    }
    /* a previous (e.g. refused) tree of the same hash goes first */
    int rc;
    WRITE_RETRYING(m, rc, cd_blockstore_merkle_delete(m->bs, m->hash));
    if (rc) {
        cd_log_error("merkle: %s", cd_strerror(rc));
        return -1;
    }
    m->active = 1;
    return 0;
}

static void flush_part(wk_merkle *m, unsigned l)
{
    mk_level *v = &m->lv[l];
    cd_merkle_part part = {.level = (uint8_t)l, .part = v->part, .hashes = v->buf, .n = v->n_buf};
    int rc;
    WRITE_RETRYING(m, rc, cd_blockstore_merkle_write(m->bs, m->hash, &part, 1, NULL));
    if (rc) {
        cd_log_error("merkle: write tree part: %s", cd_strerror(rc));
        m->store_err = 1;
    }
    v->part++;
    v->n_buf = 0;
}

/* btc_merkle_stream node callback: appends node `index` of `level` to the
 * level's part buffer (indices arrive in order within a level). */
static int on_node(void *ctx, unsigned level, uint64_t index, const uint8_t h[32])
{
    wk_merkle *m = ctx;
    if (level >= m->n_levels) {
        m->bad = 1; /* more hashes than the tx count allows */
        return -1;
    }
    mk_level *v = &m->lv[level];
    cd_assert(index == (uint64_t)v->part * CD_BS_MERKLE_PER_PART + v->n_buf);
    memcpy(v->buf + 32 * (size_t)v->n_buf, h, 32);
    v->n_buf++;
    if (v->n_buf == CD_BS_MERKLE_PER_PART)
        flush_part(m, level);
    return 0;
}

static int merkle_unit(cd_wk_ctx *c, const cd_ipc_unit *u, const uint32_t *tx_off)
{
    wk_merkle *m = c->state;
    if (!m->active || u->block_id != m->block_id)
        return -1;
    if (m->bad || u->first_tx != m->filled || u->tx_count > m->tx_count - m->filled) {
        m->bad = 1;
        return CD_IPC_ERR_MALFORMED;
    }
    const uint8_t *p = cd_wk_unit_bytes(c, u);
    /* txids in batches: btc_sha256_many keeps two SHA-NI lanes busy */
    enum { BATCH = 32 };
    btc_sha256_job jobs[BATCH];
    uint8_t txids[BATCH][32];
    for (uint32_t i0 = 0; i0 < u->tx_count; i0 += BATCH) {
        uint32_t n = u->tx_count - i0 < BATCH ? u->tx_count - i0 : BATCH;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t i = i0 + k;
            uint64_t start = tx_off[i];
            uint64_t end = (i + 1 < u->tx_count) ? tx_off[i + 1] : u->len;
            if (end < start || end > u->len) {
                m->bad = 1;
                return CD_IPC_ERR_MALFORMED;
            }
            jobs[k] = (btc_sha256_job){p + start, (size_t)(end - start), txids[k], 1};
        }
        btc_sha256_many(jobs, n);
        for (uint32_t k = 0; k < n; k++) {
            if (btc_merkle_stream_add(&m->stream, txids[k]) != 0) {
                m->bad = 1;
                return CD_IPC_ERR_MALFORMED;
            }
        }
    }
    m->filled += u->tx_count;
    if (m->store_err)
        return -1; /* LMDB failed: exit, be restarted, block dispatched again */
    return CD_IPC_OK;
}

/* Removes the flushed parts of a tree that will not be completed. A failure
 * leaves parts without their meta record: invisible to readers, and removed
 * at the next start (cd_blockstore_merkle_cleanup). */
static void drop_parts(wk_merkle *m)
{
    int rc;
    WRITE_RETRYING(m, rc, cd_blockstore_merkle_delete(m->bs, m->hash));
    if (rc) {
        char hex[65];
        cd_hex_encode_rev(hex, m->hash, 32);
        cd_log_warn("merkle: block %s: removing its tree parts: %s", hex, cd_strerror(rc));
    }
}

static int merkle_end(cd_wk_ctx *c, const cd_ipc_block_ref *r, cd_ipc_block_done *done)
{
    wk_merkle *m = c->state;
    if (!m->active || r->block_id != m->block_id)
        return -1;
    char hex[65];
    cd_hex_encode_rev(hex, m->hash, 32);
    if (m->bad || m->filled != m->tx_count) {
        cd_log_warn("merkle: block %s: %llu of %llu txs seen", hex, (unsigned long long)m->filled,
                    (unsigned long long)m->tx_count);
        done->status = CD_IPC_ERR_MALFORMED;
        drop_parts(m);
        merkle_reset(m);
        return 1;
    }
    /* odd levels: the last node pairs with itself (not a mutation) */
    int mutated = 0;
    if (btc_merkle_stream_final(&m->stream, done->root, &mutated) != 0) {
        cd_log_warn("merkle: block %s: the tree does not fit %llu txs", hex,
                    (unsigned long long)m->tx_count);
        done->status = CD_IPC_ERR_MALFORMED;
        drop_parts(m);
        merkle_reset(m);
        return 1;
    }
    if (memcmp(done->root, m->header_root, 32) != 0) {
        char got[65], want[65];
        cd_hex_encode_rev(got, done->root, 32);
        cd_hex_encode_rev(want, m->header_root, 32);
        cd_log_warn("merkle: block %s: root %s != header %s", hex, got, want);
        done->status = CD_IPC_ERR_MERKLE;
    } else if (mutated) {
        cd_log_warn("merkle: block %s: mutated tx list (CVE-2012-2459)", hex);
        done->status = CD_IPC_ERR_MUTATED;
    } else {
        cd_merkle_part parts[MK_LEVELS];
        size_t np = 0;
        for (unsigned l = 0; l < m->n_levels; l++)
            if (m->lv[l].n_buf)
                parts[np++] = (cd_merkle_part){.level = (uint8_t)l,
                                               .part = m->lv[l].part,
                                               .hashes = m->lv[l].buf,
                                               .n = m->lv[l].n_buf};
        cd_merkle_meta meta;
        memset(&meta, 0, sizeof(meta));
        meta.tx_count = m->tx_count;
        meta.n_hashes = cd_merkle_tree_size(m->tx_count);
        memcpy(meta.root, done->root, 32);
        int rc = CD_BS_ESTATE;
        if (!m->store_err)
            WRITE_RETRYING(m, rc, cd_blockstore_merkle_write(m->bs, m->hash, parts, np, &meta));
        if (rc) {
            cd_log_error("merkle: store tree of %s: %s", hex, cd_strerror(rc));
            merkle_reset(m);
            return -1;
        }
        done->status = CD_IPC_OK;
        merkle_reset(m);
        return 1;
    }
    drop_parts(m); /* parts already flushed */
    merkle_reset(m);
    return 1;
}

static void merkle_abort(cd_wk_ctx *c, const cd_ipc_block_ref *r)
{
    wk_merkle *m = c->state;
    if (m->active && r->block_id == m->block_id) {
        drop_parts(m);
        merkle_reset(m);
    }
}

static void merkle_fini(cd_wk_ctx *c)
{
    wk_merkle *m = c->state;
    if (!m)
        return;
    merkle_reset(m);
    cd_blockstore_close(m->bs);
    free(m);
    c->state = NULL;
}

const cd_wk_ops cd_wk_merkle_ops = {
    .name = "merkle",
    .init = merkle_init,
    .begin = merkle_begin,
    .unit = merkle_unit,
    .end = merkle_end,
    .abort = merkle_abort,
    .fini = merkle_fini,
};
