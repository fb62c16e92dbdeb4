/*
 * cd_blockstore_int.h - private to the block store: the handle and the txn
 * helpers that cd_blockstore.c (blocks) and cd_blockstore_merkle.c (merkle
 * trees) share.
 */
#ifndef CD_BLOCKSTORE_INT_H
#define CD_BLOCKSTORE_INT_H

#include <lmdb.h>
#include <stdint.h>

#include "cd_blockstore.h"

/* The map grows (doubling) when it is full, up to this much address space:
 * 64 TiB, half of what x86-64 user space can map. */
#define CD_BS_MAP_MAX ((uint64_t)1 << 46)

struct cd_blockstore {
    MDB_env *env;
    MDB_dbi chunks, txoff, blocks, heights, merkle, meta;
    unsigned flags;
    char *dir;
    /* writer state: one block at a time */
    int active;
    uint8_t cur_hash[32];
    cd_block_loc cur;
    uint64_t written;   /* bytes accepted so far */
    uint64_t offs_seen; /* offsets accepted so far */
    uint8_t *carry;     /* < chunk_size bytes not yet in a chunk */
    size_t carry_len;
    int carry_swapped;  /* absorb() swapped carry and carry_alt */
    uint8_t *carry_alt; /* the other carry buffer: a flushed carry is kept
                         * intact until its txn commits, so a failed append
                         * can be retried (disk full, issue 11 F6) */
    uint64_t *ocarry;   /* offsets not yet in a record */
    size_t ocarry_len;
    uint64_t *ocarry_save; /* ocarry's prefix, saved while an append may fail */
};

/* A read / write txn; a map another process grew (MDB_MAP_RESIZED) is
 * adopted first. Returns 0 or an LMDB code. */
int cd_blockstore_rdtxn(cd_blockstore *bs, MDB_txn **txn);
int cd_blockstore_wrtxn(cd_blockstore *bs, MDB_txn **txn);

/* After MDB_MAP_FULL (no txn open in this process): doubles the map.
 * Returns: 0 (run the write again) or MDB_MAP_FULL (it cannot grow). */
int cd_blockstore_grow_map(cd_blockstore *bs);

/* Commits txn if rc is 0, else aborts it. Returns: rc, or the commit's. */
int cd_blockstore_commit(MDB_txn *txn, int rc);

#endif /* CD_BLOCKSTORE_INT_H */
