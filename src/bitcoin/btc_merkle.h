/*
 * btc_merkle.h - merkle roots, CVE-2012-2459 mutation detection, stored
 * trees, branches (proofs) and their verification.
 *
 * Hashes are 32 bytes, internal order, packed back to back (n * 32 bytes).
 * A level with an odd number of hashes is paired with a copy of its last
 * hash. A tree is "mutated" (CVE-2012-2459) when at some level two hashes
 * that are both really present (not the odd-level copy) and paired together
 * are equal: such a block has the same root as a different, invalid block
 * and must be rejected.
 *
 * Stored tree layout (btc_merkle_tree_build): all levels back to back, base
 * first: level 0 = the n txids, level k+1 has ceil(size_k / 2) hashes, the
 * last level is the single root. Duplicates are not stored. For n == 1 the
 * tree is just the txid (which is the root).
 *
 * No allocation except where stated; thread-safe.
 */
#ifndef BTC_MERKLE_H
#define BTC_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h"

/* Depth of a tree of n leaves (number of branch hashes): ceil(log2 n). */
size_t btc_merkle_depth(size_t n);

/* Number of hashes the stored tree of n leaves holds (all levels). */
size_t btc_merkle_tree_count(size_t n);

/*
 * Computes the root of n txids.
 * In:  txids: n * 32 bytes. Not modified.
 * Out: root; *mutated (if not NULL) 1 if CVE-2012-2459 mutation was found.
 * Returns: 0, or BTC_ERR_MERKLE_EMPTY if n == 0.
 * Allocates a scratch buffer of ceil(n/2) * 32 bytes (malloc) for n > 2;
 * returns BTC_ERR_TOO_BIG if that fails.
 */
int btc_merkle_root(const uint8_t *txids, size_t n, uint8_t root[32], int *mutated) CD_WARN_UNUSED;

/*
 * Builds the stored tree into tree (btc_merkle_tree_count(n) * 32 bytes;
 * level 0 is copied from txids, which may already be tree itself).
 * Out: *mutated as for btc_merkle_root. The root is the last 32 bytes.
 * Returns: 0, or BTC_ERR_MERKLE_EMPTY if n == 0. No allocation.
 */
int btc_merkle_tree_build(const uint8_t *txids, size_t n, uint8_t *tree,
                          int *mutated) CD_WARN_UNUSED;

/*
 * Extracts the branch of leaf `index` from a stored tree of n leaves.
 * Out: branch (btc_merkle_depth(n) * 32 bytes): the sibling at each level,
 *      bottom up; where the sibling is the odd-level duplicate the node's own
 *      hash is written and dup[level] = 1 (dup may be NULL; else it has
 *      btc_merkle_depth(n) bytes). *depth = number of hashes written.
 * Returns: 0; BTC_ERR_RANGE if index >= n; BTC_ERR_MERKLE_EMPTY if n == 0.
 */
int btc_merkle_branch(const uint8_t *tree, size_t n, size_t index, uint8_t *branch, uint8_t *dup,
                      size_t *depth) CD_WARN_UNUSED;

/*
 * Recomputes the root from a leaf, its index and its branch.
 * Returns 1 if it equals root, 0 otherwise.
 */
int btc_merkle_verify(const uint8_t leaf[32], size_t index, const uint8_t *branch, size_t depth,
                      const uint8_t root[32]);

/* ---- streaming: txids one at a time, O(log n) memory ---- */

/* Receives every node of the tree as it is computed: level 0 are the txids
 * themselves, level k+1 node j = sha256d(level k nodes 2j, 2j+1 or 2j
 * twice). Within a level, indices arrive in increasing order, so a caller
 * can append each level to its own store and get the stored-tree layout
 * above. Return 0 to continue; non-zero makes btc_merkle_stream_add/final
 * return BTC_ERR_CALLBACK (the stream is then unusable). */
typedef int (*btc_merkle_node_fn)(void *ctx, unsigned level, uint64_t index,
                                  const uint8_t hash[32]);

/* Incremental root computation for blocks whose txids should not all be
 * held in memory (a 4 GB block has ~16M transactions). Plain data, no
 * cleanup; about 2 KB. */
typedef struct btc_merkle_stream {
    uint8_t pending[64][32]; /* pending[k]: a level-k node waiting for its right sibling */
    uint64_t have;           /* bit k set: pending[k] is valid */
    uint64_t count;          /* txids added */
    uint64_t emitted[65];    /* nodes emitted per level */
    int mutated;
    int failed;
    btc_merkle_node_fn fn; /* may be NULL */
    void *ctx;
} btc_merkle_stream;

/* Starts a stream; fn (may be NULL) receives every node. */
void btc_merkle_stream_init(btc_merkle_stream *s, btc_merkle_node_fn fn, void *ctx);

/* Adds the next txid. Returns 0 or BTC_ERR_CALLBACK. */
int btc_merkle_stream_add(btc_merkle_stream *s, const uint8_t txid[32]) CD_WARN_UNUSED;

/*
 * Finishes: pairs the odd nodes left at each level with themselves.
 * Out: root; *mutated (if not NULL) as for btc_merkle_root.
 * Returns: 0; BTC_ERR_MERKLE_EMPTY if no txid was added; BTC_ERR_CALLBACK.
 */
int btc_merkle_stream_final(btc_merkle_stream *s, uint8_t root[32], int *mutated) CD_WARN_UNUSED;

#endif /* BTC_MERKLE_H */
