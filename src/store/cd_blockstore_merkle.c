/*
 * cd_blockstore_merkle.c - merkle trees in the block store: the meta record
 * (the tree's "complete" marker), its parts level by level, reading any
 * range of the concatenated levels, and the writer's put / delete / cleanup.
 * Split from cd_blockstore.c (blocks), with which it shares the handle
 * (cd_blockstore_int.h); the layout is in cd_blockstore.h.
 */
#include "cd_blockstore.h"
#include "cd_blockstore_int.h"

#include "cd_log.h"
#include "cd_util.h"

#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

int cd_blockstore_merkle_meta(cd_blockstore *bs, const uint8_t hash[32], cd_merkle_meta *out)
{
    MDB_txn *txn;
    int rc = cd_blockstore_rdtxn(bs, &txn);
    if (rc)
        return rc;
    MDB_val k = {32, (void *)(uintptr_t)hash}, v;
    rc = mdb_get(txn, bs->merkle, &k, &v);
    if (rc == 0) {
        if (v.mv_size != sizeof(*out))
            rc = CD_BS_ECORRUPT;
        else
            memcpy(out, v.mv_data, sizeof(*out));
    }
    mdb_txn_abort(txn);
    return rc;
}

/* Maps a global index into the concatenated levels of an n-leaf tree to
 * (level, index in level, level length). Returns 0 or CD_BS_ERANGE. */
static int merkle_locate(uint64_t n, uint64_t g, unsigned *level, uint64_t *idx, uint64_t *len)
{
    unsigned l = 0;
    while (n > 0) {
        if (g < n) {
            *level = l;
            *idx = g;
            *len = n;
            return 0;
        }
        g -= n;
        if (n == 1)
            break;
        n = (n + 1) / 2;
        l++;
    }
    return CD_BS_ERANGE;
}

static void merkle_key(uint8_t kb[37], const uint8_t hash[32], unsigned level, uint32_t part)
{
    memcpy(kb, hash, 32);
    kb[32] = (uint8_t)level;
    cd_put_be32(kb + 33, part);
}

int cd_blockstore_merkle_read(cd_blockstore *bs, const uint8_t hash[32], uint64_t first, uint64_t n,
                              uint8_t *out)
{
    MDB_txn *txn;
    int rc = cd_blockstore_rdtxn(bs, &txn);
    if (rc)
        return rc;
    cd_merkle_meta meta;
    MDB_val mk = {32, (void *)(uintptr_t)hash}, mv;
    rc = mdb_get(txn, bs->merkle, &mk, &mv);
    if (rc == 0 && mv.mv_size != sizeof(meta))
        rc = CD_BS_ECORRUPT;
    if (rc == 0) {
        memcpy(&meta, mv.mv_data, sizeof(meta));
        if (first > meta.n_hashes || n > meta.n_hashes - first)
            rc = CD_BS_ERANGE;
    }
    while (rc == 0 && n > 0) {
        unsigned level;
        uint64_t idx, len;
        rc = merkle_locate(meta.tx_count, first, &level, &idx, &len);
        if (rc)
            break;
        uint8_t kb[37];
        merkle_key(kb, hash, level, (uint32_t)(idx / CD_BS_MERKLE_PER_PART));
        uint64_t within = idx % CD_BS_MERKLE_PER_PART;
        MDB_val k = {37, kb}, v;
        rc = mdb_get(txn, bs->merkle, &k, &v);
        if (rc)
            break;
        uint64_t have = v.mv_size / 32;
        if (have <= within) {
            rc = CD_BS_ECORRUPT;
            break;
        }
        uint64_t m = CD_MIN(n, have - within);
        m = CD_MIN(m, len - idx);
        memcpy(out, (uint8_t *)v.mv_data + 32 * within, 32 * m);
        out += 32 * m;
        first += m;
        n -= m;
    }
    mdb_txn_abort(txn);
    return rc;
}

uint64_t cd_merkle_tree_size(uint64_t n)
{
    if (n == 0)
        return 0;
    uint64_t total = n;
    while (n > 1) {
        n = (n + 1) / 2;
        total += n;
    }
    return total;
}

/* Deletes the meta and every part of a tree inside txn. */
static int merkle_delete_txn(cd_blockstore *bs, MDB_txn *txn, const uint8_t hash[32])
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, bs->merkle, &cur);
    if (rc)
        return rc;
    for (;;) {
        /* re-seek after every delete: simplest correct cursor use */
        MDB_val k = {32, (void *)(uintptr_t)hash}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc || k.mv_size < 32 || memcmp(k.mv_data, hash, 32) != 0)
            break;
        rc = mdb_cursor_del(cur, 0);
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int merkle_delete_once(cd_blockstore *bs, const uint8_t hash[32])
{
    MDB_txn *txn;
    int rc = cd_blockstore_wrtxn(bs, &txn);
    if (rc)
        return rc;
    rc = merkle_delete_txn(bs, txn, hash);
    return cd_blockstore_commit(txn, rc);
}

int cd_blockstore_merkle_delete(cd_blockstore *bs, const uint8_t hash[32])
{
    int rc;
    while ((rc = merkle_delete_once(bs, hash)) == MDB_MAP_FULL && cd_blockstore_grow_map(bs) == 0)
        ;
    return rc;
}

static int merkle_write_once(cd_blockstore *bs, const uint8_t hash[32], const cd_merkle_part *parts,
                             size_t n_parts, const cd_merkle_meta *meta)
{
    MDB_txn *txn;
    int rc = cd_blockstore_wrtxn(bs, &txn);
    if (rc)
        return rc;
    for (size_t i = 0; i < n_parts && !rc; i++) {
        uint8_t kb[37];
        merkle_key(kb, hash, parts[i].level, parts[i].part);
        MDB_val k = {37, kb}, v = {32 * (size_t)parts[i].n, (void *)(uintptr_t)parts[i].hashes};
        rc = mdb_put(txn, bs->merkle, &k, &v, 0);
    }
    if (!rc && meta) {
        MDB_val k = {32, (void *)(uintptr_t)hash}, v = {sizeof(*meta), (void *)(uintptr_t)meta};
        rc = mdb_put(txn, bs->merkle, &k, &v, 0);
    }
    rc = cd_blockstore_commit(txn, rc);
    if (rc == 0 && meta)
        rc = mdb_env_sync(bs->env, 1);
    return rc;
}

int cd_blockstore_merkle_write(cd_blockstore *bs, const uint8_t hash[32],
                               const cd_merkle_part *parts, size_t n_parts,
                               const cd_merkle_meta *meta)
{
    int rc;
    while ((rc = merkle_write_once(bs, hash, parts, n_parts, meta)) == MDB_MAP_FULL &&
           cd_blockstore_grow_map(bs) == 0)
        ;
    return rc;
}

int cd_blockstore_merkle_cleanup(cd_blockstore *bs)
{
    MDB_txn *txn;
    int rc = cd_blockstore_wrtxn(bs, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, bs->merkle, &cur);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    int removed = 0;
    uint8_t last[32];
    int have_last = 0, last_ok = 0;
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (k.mv_size == 32) {
            memcpy(last, k.mv_data, 32);
            have_last = 1;
            last_ok = 1; /* meta sorts before its parts */
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        if (k.mv_size != 37) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        if (!have_last || memcmp(last, k.mv_data, 32) != 0) {
            memcpy(last, k.mv_data, 32);
            have_last = 1;
            last_ok = 0;
            removed++;
        }
        if (last_ok) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        uint8_t kb[37];
        memcpy(kb, k.mv_data, 37);
        rc = mdb_cursor_del(cur, 0);
        if (rc == 0) {
            k.mv_size = 37;
            k.mv_data = kb;
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        }
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = mdb_txn_commit(txn);
    if (rc == 0 && removed)
        cd_log_warn("blockstore %s: removed %d incomplete merkle tree(s)", bs->dir, removed);
    return rc ? rc : removed;
}

int cd_blockstore_merkle_put(cd_blockstore *bs, const uint8_t hash[32], uint64_t tx_count,
                             const uint8_t *hashes, uint64_t n_hashes)
{
    if (n_hashes != cd_merkle_tree_size(tx_count) || n_hashes == 0)
        return CD_BS_ERANGE;
    int rc = cd_blockstore_merkle_delete(bs, hash);
    if (rc)
        return rc;
    size_t cap = 64, np = 0;
    cd_merkle_part *parts = cd_xmalloc(cap * sizeof(*parts));
    uint64_t n = tx_count, base = 0;
    for (unsigned level = 0;; level++) {
        for (uint64_t i = 0; i < n; i += CD_BS_MERKLE_PER_PART) {
            if (np == cap) {
                cap *= 2;
                parts = cd_xrealloc(parts, cap * sizeof(*parts));
            }
            parts[np].level = (uint8_t)level;
            parts[np].part = (uint32_t)(i / CD_BS_MERKLE_PER_PART);
            parts[np].hashes = hashes + 32 * (base + i);
            parts[np].n = (uint32_t)CD_MIN((uint64_t)CD_BS_MERKLE_PER_PART, n - i);
            np++;
        }
        base += n;
        if (n == 1)
            break;
        n = (n + 1) / 2;
    }
    cd_merkle_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.tx_count = tx_count;
    meta.n_hashes = n_hashes;
    memcpy(meta.root, hashes + 32 * (n_hashes - 1), 32);
    rc = cd_blockstore_merkle_write(bs, hash, parts, np, &meta);
    free(parts);
    return rc;
}
