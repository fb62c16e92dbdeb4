/*
 * btc_preproc.h - the preprocessor: find transaction boundaries in block
 * bytes without parsing scripts or hashing anything.
 *
 * A block is an 80-byte header, a CompactSize tx count, then the
 * transactions back to back. To split the block into work units we only need
 * the start offset of every transaction, which the walker gets by reading
 * the counts and lengths and skipping scripts by their length.
 *
 * Two interfaces:
 *  - stateless: btc_tx_skip() / btc_preproc_scan() over one contiguous buffer
 *    that starts at a transaction boundary (rescans an incomplete tail the
 *    next time);
 *  - streaming: btc_preproc_init() + btc_preproc_feed() with a cursor that
 *    remembers how far into an incomplete transaction it got, so bytes of a
 *    huge transaction are never walked twice and bytes before the cursor may
 *    be released by the caller (this is what the socket reader and the ring
 *    use).
 *
 * Transaction validity rules enforced (all are consensus rules of the node,
 * so no block that the node accepts is ever rejected here):
 *  - every CompactSize is canonical (shortest form) and <= 0xFFFFFFFF;
 *  - at least one input and one output;
 *  - counts that could not fit in 2^32 bytes of transaction (more than
 *    0xFFFFFFFF/41 inputs or 0xFFFFFFFF/9 outputs) are malformed.
 * Sizes are not limited here; callers enforce their own tx/block limits.
 */
#ifndef BTC_PREPROC_H
#define BTC_PREPROC_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h"
#include "btc_header.h"

/* Smallest possible transaction: version, 1 input of 41 bytes, 1 output of
 * 9 bytes, locktime, and two 1-byte counts. */
#define BTC_TX_MIN_SIZE 60

/*
 * Size of the complete transaction at the start of buf.
 * Returns: > 0 the transaction's size in bytes (<= len);
 *          0 if buf ends before the transaction does (need more bytes);
 *          a negative BTC_ERR_* code if the bytes cannot be a transaction.
 * Malformation found before the end of the buffer is reported even if the
 * transaction is incomplete.
 */
int64_t btc_tx_skip(const uint8_t *buf, size_t len) CD_WARN_UNUSED;

/*
 * Reads the block prefix: the 80-byte header and the tx count.
 * Out: *hdr (if not NULL) the decoded header; *tx_count the count.
 * Returns: > 0 the prefix length (81, 83, 85 or 89 bytes): the first
 *          transaction starts there;
 *          0 if more bytes are needed;
 *          BTC_ERR_VARINT_NONCANONICAL / BTC_ERR_VARINT_TOO_BIG for a bad count;
 *          BTC_ERR_RANGE for a count of zero (every block has a coinbase).
 */
int btc_block_prefix(const uint8_t *buf, size_t len, btc_header *hdr,
                     uint64_t *tx_count) CD_WARN_UNUSED;

/*
 * Stateless scan of a buffer that begins at a transaction boundary.
 * In:  buf/len the bytes; base_offset is added to every recorded offset
 *      (pass the buffer's offset within the block); offsets has room for
 *      max_offsets entries.
 * Out: offsets[0..*n_found) the start offsets of the complete transactions,
 *      in order; *consumed the number of bytes they cover (the next
 *      transaction, complete or not, starts at buf + *consumed).
 * Stops at the end of the buffer, at the first incomplete transaction, or
 * when max_offsets offsets have been recorded.
 * Returns: 0, or a negative BTC_ERR_* code if a malformed transaction starts
 *          at buf + *consumed (the outputs before it are still valid).
 */
int btc_preproc_scan(const uint8_t *buf, size_t len, uint64_t base_offset, uint64_t *offsets,
                     size_t max_offsets, size_t *n_found, size_t *consumed) CD_WARN_UNUSED;

/* Streaming cursor. Plain data: may be copied, needs no cleanup. Fields are
 * private except the two documented ones. */
typedef struct btc_preproc {
    uint64_t tx_start; /* public: stream offset where the next (incomplete) tx starts */
    uint64_t pos;      /* public: stream offset of the next byte the walker needs;
                          bytes before it may be released, and there is nothing to
                          do until the byte at pos has arrived (call again when
                          pos < bytes available). May be beyond the data fed so
                          far while a long script is being skipped; when only the
                          end of a skipped transaction is missing it is that
                          transaction's last byte. */
    uint64_t n_left;   /* inputs/outputs left in the current phase */
    uint64_t tx_count; /* complete transactions found so far */
    int phase;
    int error; /* sticky BTC_ERR_* after malformed input */
} btc_preproc;

/* Starts a stream whose first transaction begins at stream offset `start`
 * (e.g. the block prefix length when offsets are block-relative). */
void btc_preproc_init(btc_preproc *pp, uint64_t start);

/*
 * Walks newly available bytes.
 * In:  buf holds stream bytes [buf_offset, buf_offset + len); it must cover
 *      pp->pos, i.e. buf_offset <= pp->pos (bytes before pp->pos are not
 *      read; the window may start anywhere up to pp->pos). If pp->pos is at
 *      or beyond the window's end nothing is read and nothing is found, so
 *      the idiom is: while (pp.pos < received) feed(window from pp.pos).
 * Out: offsets[0..*n_found) stream offsets of transactions completed by this
 *      call (at most max_offsets; when the limit is hit the walk stops at a
 *      transaction boundary and the next call continues).
 * Returns: 0; BTC_ERR_WINDOW if the window starts after pp->pos; or the
 *          BTC_ERR_* of a malformed transaction starting at pp->tx_start
 *          (sticky: later calls return it again).
 */
int btc_preproc_feed(btc_preproc *pp, const uint8_t *buf, uint64_t buf_offset, size_t len,
                     uint64_t *offsets, size_t max_offsets, size_t *n_found) CD_WARN_UNUSED;

/* Returns 1 if the cursor sits at a transaction boundary (no partial tx). */
static inline int btc_preproc_at_boundary(const btc_preproc *pp)
{
    return pp->pos == pp->tx_start && pp->phase == 0;
}

#endif /* BTC_PREPROC_H */
