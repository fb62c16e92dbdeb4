/*
 * cd_blockstore.h - raw blocks, tx offsets and merkle trees in LMDB
 * (DESIGN.md §4).
 *
 * One LMDB environment per directory; the daemon uses two:
 *   <datadir>/blocks  written only by the block-writer worker
 *   <datadir>/merkle  written only by the merkle worker
 * so each environment has exactly one writer process. Readers (conduit-cli,
 * the controller's resume check) open them with CD_BS_RDONLY at any time.
 *
 * Named databases (all in every env; unused ones stay empty):
 *   chunks   u64 BE sequence -> up to chunk_size raw block bytes (MDB_APPEND)
 *   txoff    u64 BE sequence -> up to CD_BS_OFFS_PER_REC u64 LE tx offsets
 *   blocks   32-byte hash -> cd_block_loc (location, size, tx count, header)
 *   heights  u32 BE height -> 32-byte hash (last block stored at that height)
 *   merkle   hash -> cd_merkle_meta (written last: the tree's "complete"
 *            marker); hash||u8 level||u32 BE part -> up to
 *            CD_BS_MERKLE_PER_PART hashes of that level (level 0 = txids)
 *   meta     "next_chunk"/"next_off" -> u64: sequences never go backwards,
 *            so MDB_APPEND always holds even after deletes
 *
 * Crash safety: a block is written as BEGIN (a loc without
 * CD_BLOCK_COMPLETE), APPENDs (each one txn: chunks + the loc's counts), and
 * FINISH (last partial chunk, remaining offsets, loc with COMPLETE, height, in
 * one txn, then an fsync). cd_blockstore_recover() deletes every incomplete
 * block; readers treat incomplete locs as absent.
 *
 * Hashes are in internal byte order (sha256d of the header).
 *
 * Return values: 0 on success, CD_BS_NOTFOUND if absent, otherwise a negative
 * CD_BS_E* code, an LMDB code (negative, passed through) or an errno value
 * (positive); cd_strerror() names all of them.
 *
 * Threads/processes: a cd_blockstore handle belongs to the process (and
 * thread) that opened it; never use it after fork().
 */
#ifndef CD_BLOCKSTORE_H
#define CD_BLOCKSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h"

/* Codes: CD_BS_NOTFOUND (LMDB's MDB_NOTFOUND) and CD_BS_E* are in cd_err.h
 * (range -1300..-1399); cd_strerror() names them, LMDB's codes and errno. */

#define CD_BS_RDONLY 1u

#define CD_BS_CHUNK_SIZE      (4u * 1024 * 1024)
#define CD_BS_OFFS_PER_REC    65536u
#define CD_BS_MERKLE_PER_PART 131072u /* 4 MiB of hashes per value */

#define CD_BLOCK_LOC_VERSION 1
#define CD_BLOCK_COMPLETE    1u

typedef struct cd_block_loc {
    uint32_t version; /* CD_BLOCK_LOC_VERSION */
    uint32_t flags;   /* CD_BLOCK_COMPLETE when fully written */
    uint64_t size;    /* block bytes */
    uint64_t tx_count;
    uint64_t chunk_first; /* first key in `chunks` */
    uint64_t chunk_count;
    uint64_t off_first;  /* first key in `txoff` */
    uint64_t off_count;  /* records in `txoff` */
    uint64_t seq;        /* order in which blocks were begun */
    uint32_t chunk_size; /* all chunks but the last are this long */
    uint32_t height;     /* UINT32_MAX if unknown */
    uint8_t header[80];
} cd_block_loc;

typedef struct cd_merkle_meta {
    uint64_t tx_count;
    uint64_t n_hashes; /* all levels, leaves first, root last */
    uint8_t root[32];
} cd_merkle_meta;

typedef struct cd_blockstore cd_blockstore;

/*
 * Opens (creating dir and databases unless CD_BS_RDONLY) the environment in
 * `dir`. map_size 0 = default (1 TiB of address space; the file grows only as
 * written). `dir` is copied.
 * Returns: 0 with *out set (free with cd_blockstore_close; the handle
 *          belongs to this process: never use it after fork), or an error
 *          code (ENOENT when a read-only store does not exist yet).
 */
int cd_blockstore_open(const char *dir, unsigned flags, uint64_t map_size,
                       cd_blockstore **out) CD_WARN_UNUSED;
void cd_blockstore_close(cd_blockstore *bs);

/* Returns: 1 if rc says the file is damaged (MDB_INVALID, MDB_CORRUPTED,
 * MDB_PAGE_NOTFOUND, MDB_VERSION_MISMATCH, CD_BS_ECORRUPT): waiting or
 * restarting will not cure it (the workers exit 2 for it). */
int cd_blockstore_is_corrupt(int rc);

/*
 * The start-up check of an environment (issue 11, F7): the meta pages were
 * validated by mdb_env_open; this walks the first and last `bound` records of
 * every named database (every page on the way from the root is touched) and
 * checks the size of each block location record. A damaged page ends in an
 * LMDB error, or in a fault that cd_store_guard turns into one named log line
 * and exit 2. Logs the problem with the file.
 * Returns: 0, or the error (cd_blockstore_is_corrupt says which are damage).
 */
int cd_blockstore_check(cd_blockstore *bs, unsigned bound) CD_WARN_UNUSED;

/* ---------------- readers ---------------- */

/* Location of a COMPLETE block. Returns 0, CD_BS_NOTFOUND (absent or
 * incomplete) or an error. */
int cd_blockstore_get(cd_blockstore *bs, const uint8_t hash[32], cd_block_loc *out) CD_WARN_UNUSED;

/* Hash of the block stored at `height`. Returns 0 or CD_BS_NOTFOUND. */
int cd_blockstore_hash_at(cd_blockstore *bs, uint32_t height, uint8_t hash[32]) CD_WARN_UNUSED;

/* Copies block bytes [off, off+len) into buf (len bytes, the caller's).
 * Returns: 0, CD_BS_ERANGE beyond the block, or an error. */
int cd_blockstore_read(cd_blockstore *bs, const cd_block_loc *loc, uint64_t off, void *buf,
                       size_t len) CD_WARN_UNUSED;

/* Copies tx offsets [first, first+n) (block-relative byte offsets) into out
 * (n entries, the caller's). Returns: 0, CD_BS_ERANGE, or an error. */
int cd_blockstore_read_offsets(cd_blockstore *bs, const cd_block_loc *loc, uint64_t first,
                               uint64_t n, uint64_t *out) CD_WARN_UNUSED;

/* Calls fn for every complete block in insertion order (hash and loc are
 * valid during the call only); fn returns non-zero to stop.
 * Returns: 0 after the last block, fn's non-zero value, or an error. */
int cd_blockstore_foreach(cd_blockstore *bs,
                          int (*fn)(const uint8_t hash[32], const cd_block_loc *loc, void *arg),
                          void *arg) CD_WARN_UNUSED;

/* Merkle tree: its meta record, and hashes [first, first+n) of the
 * concatenated levels (into out, n * 32 bytes of the caller's).
 * Returns: 0, CD_BS_NOTFOUND (no complete tree), or an error. */
int cd_blockstore_merkle_meta(cd_blockstore *bs, const uint8_t hash[32],
                              cd_merkle_meta *out) CD_WARN_UNUSED;
int cd_blockstore_merkle_read(cd_blockstore *bs, const uint8_t hash[32], uint64_t first, uint64_t n,
                              uint8_t *out) CD_WARN_UNUSED;

/*
 * Re-hashes a stored block (issue 11, F7): its header hashes to `hash`, the
 * bytes start with that header and the tx count, the transactions cut at the
 * stored offsets give the header's merkle root, not mutated (CVE-2012-2459).
 * Streams the block through a 4 MiB buffer. loc from cd_blockstore_get.
 * Out: why (why_len bytes, may be NULL): what is wrong, on CD_BS_ECORRUPT.
 * Returns: 0; CD_BS_ECORRUPT (the block is damaged); or a read error.
 */
int cd_blockstore_verify(cd_blockstore *bs, const uint8_t hash[32], const cd_block_loc *loc,
                         char *why, size_t why_len) CD_WARN_UNUSED;

/* ---------------- the single writer ---------------- */

/* Deletes every incomplete block (call once after opening for writing).
 * Returns the number of blocks removed (>= 0) or an error (< 0). */
int cd_blockstore_recover(cd_blockstore *bs) CD_WARN_UNUSED;

/* Starts writing a block, replacing any stored copy of the same hash.
 * Only one block may be in progress per handle.
 * Returns: 0, CD_BS_ESTATE (one is in progress, or the store is
 * read-only), or an error. */
int cd_blockstore_begin(cd_blockstore *bs, const uint8_t hash[32], const uint8_t header[80],
                        uint32_t height, uint64_t size, uint64_t tx_count) CD_WARN_UNUSED;

/* Appends the next bytes of the current block and the offsets of the txs
 * starting in them (block-relative), in one committed txn. Bytes that do not
 * fill a chunk are copied and kept until the next call or finish.
 * Returns: 0, CD_BS_ESTATE (no block begun), CD_BS_ERANGE (beyond its size),
 * or an error. */
int cd_blockstore_append(cd_blockstore *bs, const uint8_t *data, size_t len,
                         const uint64_t *tx_offsets, size_t n_offsets) CD_WARN_UNUSED;

/* Completes the current block (size and tx count must match begin) and makes
 * it durable. Returns: 0, CD_BS_ESTATE (nothing begun), CD_BS_ERANGE (the
 * bytes or offsets written do not match begin), or an error. */
int cd_blockstore_finish(cd_blockstore *bs) CD_WARN_UNUSED;

/* Drops the current block's committed chunks and its incomplete record.
 * Returns: 0 (also when nothing is in progress) or an error. */
int cd_blockstore_abort(cd_blockstore *bs) CD_WARN_UNUSED;

/* Removes a stored block (any state). Returns 0 or CD_BS_NOTFOUND. */
int cd_blockstore_delete(cd_blockstore *bs, const uint8_t hash[32]) CD_WARN_UNUSED;

/* Stores a full merkle tree (n_hashes = all levels, leaves first) in one txn,
 * replacing any previous tree for the hash. Returns: 0 or an error. */
int cd_blockstore_merkle_put(cd_blockstore *bs, const uint8_t hash[32], uint64_t tx_count,
                             const uint8_t *hashes, uint64_t n_hashes) CD_WARN_UNUSED;

/* One stored piece of a tree level (for writers that build the tree as a
 * stream and never hold all of it). */
typedef struct cd_merkle_part {
    uint8_t level;
    uint32_t part;         /* hashes [part * PER_PART, ...) of the level */
    const uint8_t *hashes; /* borrowed */
    uint32_t n;            /* <= CD_BS_MERKLE_PER_PART */
} cd_merkle_part;

/* Writes parts (and, if meta != NULL, the meta record that makes the tree
 * visible) in one txn. Returns 0 or an error. */
int cd_blockstore_merkle_write(cd_blockstore *bs, const uint8_t hash[32],
                               const cd_merkle_part *parts, size_t n_parts,
                               const cd_merkle_meta *meta) CD_WARN_UNUSED;

/* Removes a tree (meta and every part). Returns 0 (also when absent). */
int cd_blockstore_merkle_delete(cd_blockstore *bs, const uint8_t hash[32]) CD_WARN_UNUSED;

/* Removes parts without a meta record (a tree whose writer died). Returns the
 * number of trees removed or an error (< 0). */
int cd_blockstore_merkle_cleanup(cd_blockstore *bs) CD_WARN_UNUSED;

/* Returns: the number of hashes in the full tree of n leaves (n + n/2
 * rounded up + ...). */
uint64_t cd_merkle_tree_size(uint64_t n_leaves);

#endif /* CD_BLOCKSTORE_H */
