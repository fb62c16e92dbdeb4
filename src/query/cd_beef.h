/*
 * cd_beef.h - BEEF (Background Evaluation Extended Format): a transaction
 * with the ancestors and merkle proofs a client needs to verify it by SPV,
 * as BRC-62 (V1), BRC-96 (V2) and BRC-95 (Atomic BEEF) define it.
 *
 * Content (tests/sdk/CONTRACT.md §2.2): a confirmed subject is one BUMP and
 * the subject; an unconfirmed one (mempool) is the subject and, recursively,
 * every unconfirmed ancestor (raw bytes from mempool_tx.raw or the block
 * store), stopping at confirmed ancestors, each included with its BUMP and
 * without its own ancestors. One compound BUMP per block (cd_bump.h).
 * Order: parents before children, the subject last (a post-order walk of
 * the inputs). V2 from conduitd is V1's content in V2 framing (never a
 * "txid only" entry: the SDK could not verify it). Atomic = 01010101 + the
 * subject txid (internal order) + V1.
 *
 * An ancestor the index has neither confirmed nor in the mempool makes the
 * whole call fail with a message naming it: never a partial BEEF.
 */
#ifndef CD_BEEF_H
#define CD_BEEF_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h"
#include "cd_lookup.h"

#define CD_BEEF_V1     1
#define CD_BEEF_V2     2
#define CD_BEEF_ATOMIC 3

/* Most transactions one BEEF holds (unconfirmed chains are walked in the
 * HTTP server's single thread: bounded work per request). */
#define CD_BEEF_MAX_TXS 1000

/*
 * Builds the BEEF of txid (internal order) in `version` (CD_BEEF_*).
 * Out: *out (malloc'd, the caller frees it), *len; on error a one-line
 *      message in err.
 * Returns: 0; CD_LOOKUP_ENOTFOUND (the subject or an ancestor is unknown:
 *          err names it); CD_LOOKUP_EINPUT (bad version, more than
 *          CD_BEEF_MAX_TXS transactions, an unparsable stored tx); or a
 *          cd_lookup error (EDB, ESTORE, ECORRUPT).
 */
int cd_beef_build(cd_lookup *lk, const uint8_t txid[32], int version, uint8_t **out, size_t *len,
                  char *err, size_t errlen) CD_WARN_UNUSED;

#endif /* CD_BEEF_H */
