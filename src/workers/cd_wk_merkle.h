/*
 * cd_wk_merkle.h - the merkle worker's tree builder (exposed for tests).
 *
 * The merkle worker hashes each transaction of every unit (txid = sha256d of
 * its bytes), builds the tree as a stream (level parts written to
 * <datadir>/merkle as they fill, never the whole tree in memory), compares
 * the root with the header's when the block ends, and then makes the tree
 * visible (meta record) or deletes it. This function is the one-shot builder
 * used by tests and tools to check the stream.
 */
#ifndef CD_WK_MERKLE_H
#define CD_WK_MERKLE_H

#include <stdint.h>

/*
 * Builds every level of the merkle tree of n >= 1 leaves.
 * In:  tree[0 .. n) the leaves (txids, internal order).
 * Out: tree[n .. cd_merkle_tree_size(n)) the upper levels, level by level;
 *      the root is the last hash. An odd level pairs its last hash with
 *      itself (Bitcoin's rule).
 * Returns: 1 if some level has two identical hashes forming a pair (the
 *          CVE-2012-2459 mutation: the same root as a different tx list),
 *          else 0.
 */
int cd_wk_merkle_build(uint8_t *tree, uint64_t n);

#endif /* CD_WK_MERKLE_H */
