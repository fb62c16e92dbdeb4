/*
 * cd_bump.h - BUMP (BSV Unified Merkle Path, BRC-74) proofs: one txid or
 * several txids of one block (a "compound" BUMP), built from the merkle
 * branches cd_lookup already verifies, written as binary (hex on the wire)
 * or as BRC-74 JSON.
 *
 * Why it exists: wallets and the BSV SDKs (@bsv/sdk MerklePath) read BUMPs,
 * not TSC proofs; BEEF (cd_beef.h) and ARC answers embed them. The canonical
 * form conduitd writes is described in tests/sdk/CONTRACT.md §1.5 (checked
 * byte for byte against tests/sdk/lib/bump_ref.mjs and the SDK itself):
 *   - tree height = levels below the root, max(1, ceil(log2 n));
 *   - level 0: each requested txid (flags 02) and, unless n == 1, its
 *     sibling (00 with its hash; 02 if requested too; 01 = "duplicate", no
 *     hash, when the txid is the last node of an odd-length level);
 *   - level h >= 1: for each requested position p the sibling (p >> h) ^ 1
 *     of its ancestor, 00 with the hash or 01 when the ancestor is the last
 *     node of an odd level; omitted when that sibling is itself an ancestor
 *     of a requested position (a reader computes it from below), so a level
 *     of a compound BUMP may be empty;
 *   - every level sorted by offset, no offset twice.
 * Binary (BRC-74): varint block height, 1 byte tree height, then per level:
 * varint nLeaves, per leaf varint offset, 1 byte flags, 32-byte hash
 * (internal order) unless flags == 01.
 * JSON: {"blockHeight": H, "path": [[{"offset", "hash" | "duplicate": true,
 * "txid": true?}, ...], ...]}, hashes in display hex (the SDK's field names).
 *
 * Thread-safe (no global state); allocation failure aborts, like cd_lookup.
 */
#ifndef CD_BUMP_H
#define CD_BUMP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cd_err.h"
#include "cd_lookup.h"

/* BRC-74 leaf flags */
#define CD_BUMP_HASH 0x00 /* a hash follows (a sibling / internal node) */
#define CD_BUMP_DUP  0x01 /* no hash: the node is paired with itself */
#define CD_BUMP_TXID 0x02 /* a hash follows and it is a requested txid */

/* Most txids one compound BUMP is built for (HTTP ?txids=, the CLI). */
#define CD_BUMP_MAX_TXIDS 1000

typedef struct cd_bump_leaf {
    uint64_t offset;
    uint8_t flags;
    uint8_t hash[32]; /* internal order; zero for CD_BUMP_DUP */
} cd_bump_leaf;

typedef struct cd_bump {
    uint64_t block_height;
    unsigned tree_height;                     /* levels below the root */
    size_t n[CD_LOOKUP_MAX_DEPTH];            /* leaves per level */
    cd_bump_leaf *level[CD_LOOKUP_MAX_DEPTH]; /* malloc'd, sorted by offset */
} cd_bump;

/* One requested transaction of the block. */
typedef struct cd_bump_item {
    uint64_t pos;          /* position in the block */
    uint8_t txid[32];      /* internal order */
    const uint8_t *branch; /* its merkle branch bottom up, as cd_lookup_tx_branch
                              wrote it (btc_merkle_depth(tx_count) hashes) */
} cd_bump_item;

/*
 * Builds the canonical BUMP of `n` transactions of one block of `tx_count`
 * transactions at `block_height`.
 * In:  items (n >= 1; any order, a position may repeat).
 * Out: *out (free with cd_bump_free; zeroed on error).
 * Returns: 0; CD_LOOKUP_EINPUT when n == 0, tx_count == 0, a position is
 *          >= tx_count, or two items give one position different txids.
 */
int cd_bump_build(uint64_t block_height, uint64_t tx_count, const cd_bump_item *items, size_t n,
                  cd_bump *out) CD_WARN_UNUSED;

/* Frees the levels (accepts a zeroed struct). */
void cd_bump_free(cd_bump *b);

/* Binary form. Returns a malloc'd buffer (the caller frees it), *len bytes. */
uint8_t *cd_bump_binary(const cd_bump *b, size_t *len);

/* Bytes cd_bump_binary writes (to lay out a BEEF without building twice). */
size_t cd_bump_binary_size(const cd_bump *b);

/* Writes the binary form at p (cd_bump_binary_size(b) bytes); returns the
 * bytes written. */
size_t cd_bump_write(const cd_bump *b, uint8_t *p);

/* JSON form (a new reference; NULL when jansson is out of memory). */
json_t *cd_bump_json(const cd_bump *b);

/*
 * Computes the merkle root the BUMP gives for `txid` (a level-0 leaf), the
 * way a BRC-74 reader does: sibling at each level, or computed from both
 * children below, duplicates paired with themselves.
 * Out: root (internal order).
 * Returns: 0; CD_LOOKUP_ENOTFOUND (txid not at level 0); CD_LOOKUP_ECORRUPT
 *          (a needed node is neither present nor computable).
 */
int cd_bump_root(const cd_bump *b, const uint8_t txid[32], uint8_t root[32]) CD_WARN_UNUSED;

/*
 * The BUMP of txids (internal order) that must all be in one block of the
 * indexed best chain: located with cd_lookup_tx_find, each branch read and
 * verified with cd_lookup_tx_branch, then cd_bump_build.
 * Out: *out; on error a one-line message in err (as conduit-cli prints it).
 * Returns: 0; CD_LOOKUP_ENOTFOUND (a txid is unknown, or only in the
 *          mempool: err says which); CD_LOOKUP_EINPUT (txids of different
 *          blocks, more than CD_BUMP_MAX_TXIDS); or a cd_lookup error
 *          (EDB: check the connection; ESTORE; ECORRUPT).
 */
int cd_bump_lookup(cd_lookup *lk, const uint8_t (*txids)[32], size_t n, cd_bump *out, char *err,
                   size_t errlen) CD_WARN_UNUSED;

#endif /* CD_BUMP_H */
