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
#include "workers/cd_wk_merkle.h"
#include "workers/cd_wk_main.h"

#include "common/cd_hash.h"
#include "common/cd_log.h"
#include "storage/cd_blockstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cd_wk_merkle_build(uint8_t *tree, uint64_t n)
{
    int mutated = 0;
    uint8_t *level = tree;
    while (n > 1) {
        uint8_t *next = level + 32 * n;
        uint64_t m = (n + 1) / 2;
        for (uint64_t i = 0; i < m; i++) {
            uint8_t pair[64];
            const uint8_t *a = level + 64 * i;
            const uint8_t *b = (2 * i + 1 < n) ? a + 32 : a;
            if (2 * i + 1 < n && memcmp(a, b, 32) == 0)
                mutated = 1;
            memcpy(pair, a, 32);
            memcpy(pair + 32, b, 32);
            cd_sha256d(next + 32 * i, pair, 64);
        }
        level = next;
        n = m;
    }
    return mutated;
}

typedef struct wk_merkle {
    cd_blockstore *bs;
    uint64_t block_id;
    int active;
    uint8_t hash[32];
    uint8_t header_root[32];
    uint64_t tx_count;
    uint64_t filled;  /* txids computed */
    uint8_t *tree;    /* cd_merkle_tree_size(tx_count) hashes */
    int bad;          /* a unit did not fit the block */
} wk_merkle;

static int merkle_init(cd_wk_ctx *c)
{
    wk_merkle *m = cd_xcalloc(1, sizeof(*m));
    c->state = m;
    char path[4096];
    snprintf(path, sizeof(path), "%s/merkle", c->cfg->datadir);
    return cd_blockstore_open(path, 0, 0, &m->bs) ? CD_EXIT_FAILURE : CD_EXIT_OK;
}

static void merkle_reset(wk_merkle *m)
{
    free(m->tree);
    m->tree = NULL;
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
    m->bad = 0;
    uint64_t sz = cd_merkle_tree_size(b->tx_count);
    if (b->tx_count == 0 || sz > (UINT64_MAX / 64)) {
        m->bad = 1;
    } else {
        m->tree = malloc((size_t)sz * 32);
        if (!m->tree) {
            cd_log_error("merkle: cannot allocate %llu bytes for the tree of %llu txs",
                         (unsigned long long)(sz * 32), (unsigned long long)b->tx_count);
            return -1;
        }
    }
    m->active = 1;
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
    for (uint32_t i = 0; i < u->tx_count; i++) {
        uint64_t start = tx_off[i];
        uint64_t end = (i + 1 < u->tx_count) ? tx_off[i + 1] : u->len;
        if (end < start || end > u->len) {
            m->bad = 1;
            return CD_IPC_ERR_MALFORMED;
        }
        cd_sha256d(m->tree + 32 * (m->filled + i), p + start, (size_t)(end - start));
    }
    m->filled += u->tx_count;
    return CD_IPC_OK;
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
        merkle_reset(m);
        return 1;
    }
    int mutated = cd_wk_merkle_build(m->tree, m->tx_count);
    uint64_t sz = cd_merkle_tree_size(m->tx_count);
    memcpy(done->root, m->tree + 32 * (sz - 1), 32);
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
        int rc = cd_blockstore_merkle_put(m->bs, m->hash, m->tx_count, m->tree, sz);
        if (rc) {
            cd_log_error("merkle: store tree of %s: %s", hex, cd_blockstore_strerror(rc));
            merkle_reset(m);
            return -1;
        }
        done->status = CD_IPC_OK;
    }
    merkle_reset(m);
    return 1;
}

static void merkle_abort(cd_wk_ctx *c, const cd_ipc_block_ref *r)
{
    wk_merkle *m = c->state;
    if (m->active && r->block_id == m->block_id)
        merkle_reset(m);
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
