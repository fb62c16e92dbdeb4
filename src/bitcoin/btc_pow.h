/*
 * btc_pow.h - difficulty rules: the nBits the next block must carry.
 *
 * The header tree implements one callback, "give me the ancestor of the
 * block being extended at height h" (time, bits, chain work), and asks
 * btc_pow_next_bits() for the required nBits of a new header. Rules by
 * network (btc_net fields):
 *  - pow_no_retargeting (regtest): always the previous block's bits;
 *  - prev height >= daa_height: the 144-block cash DAA (median-of-3
 *    timestamps at both ends of the window, work * 600 / timespan with the
 *    timespan clamped to [72, 288] * 600 s, target = 2^256 / work - 1,
 *    capped at the pow limit);
 *  - before that: the legacy rule: retarget every 2016 blocks from the time
 *    of the block 2015 back (timespan clamped to [1/4, 4] * two weeks),
 *    otherwise keep the bits, with the emergency difficulty adjustment (EDA)
 *    in between retargets: if the median time past (MTP) of the previous
 *    block minus the MTP of the block 6 before it is >= 12 h, the target
 *    grows by 1/4 (capped at the limit). Like the node, EDA is not gated on
 *    uahf_height: before August 2017 the condition never arose on mainnet
 *    with bits above the limit.
 *  - pow_allow_min_difficulty (testnet): a block more than 20 minutes after
 *    its parent may use the limit bits; otherwise (outside a retarget) the
 *    bits of the last block that was not such a min-difficulty block (or the
 *    last retarget block). In the DAA era only the 20-minute rule applies.
 * The "genesis" case (no previous block) gives the limit's compact form.
 */
#ifndef BTC_POW_H
#define BTC_POW_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h"
#include "btc_header.h"
#include "btc_net.h"

#define BTC_POW_TARGET_SPACING  600
#define BTC_POW_TARGET_TIMESPAN (14 * 24 * 60 * 60)
#define BTC_POW_INTERVAL        2016
#define BTC_POW_DAA_WINDOW      144

/* What the rules need to know about one block of the chain. */
typedef struct btc_pow_block {
    int32_t height;
    uint32_t time;
    uint32_t bits;
    btc_u256 chain_work; /* total work up to and including this block */
} btc_pow_block;

/* Fills *out with the ancestor at `height` of the block being extended
 * (height <= that block's height; equal means the block itself).
 * Returns 0, or non-zero if the block is unknown. */
typedef int (*btc_pow_ancestor_fn)(void *ctx, int32_t height, btc_pow_block *out);

/*
 * Computes the required nBits of a block with timestamp new_time whose
 * parent is `prev` (NULL for the genesis block).
 * Returns: 0 with *bits set; BTC_ERR_RANGE if a needed ancestor is missing
 *          (callback failed) or the chain is too short for the rule;
 *          BTC_ERR_BITS_* if an ancestor's bits do not decode.
 */
int btc_pow_next_bits(const btc_net *net, const btc_pow_block *prev, uint32_t new_time,
                      btc_pow_ancestor_fn get, void *ctx, uint32_t *bits) CD_WARN_UNUSED;

/*
 * The median of n block timestamps (n >= 1): sorts times[] in place and
 * returns times[n / 2], as the node's GetMedianTimePast does with the
 * timestamps of a block and its up to 10 predecessors. For callers that walk
 * their own chain (the header tree follows its prev pointers).
 * In/Out: times, n values; sorted on return.
 * Returns: the median (0 when n == 0).
 */
uint32_t btc_pow_median_time(uint32_t *times, size_t n);

/*
 * Median of the timestamps of the block at `height` and its up to 10
 * predecessors (fewer near genesis): the node's GetMedianTimePast.
 * Returns 0 with *mtp set, or BTC_ERR_RANGE if the callback failed.
 */
int btc_pow_median_time_past(btc_pow_ancestor_fn get, void *ctx, int32_t height,
                             uint32_t *mtp) CD_WARN_UNUSED;

#endif /* BTC_POW_H */
