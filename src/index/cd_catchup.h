/*
 * cd_catchup.h - catch-up mode of the PostgreSQL index: the B-tree
 * secondary indexes of the open tip partition (pushdata.push_hash,
 * outputs.script_hash; sql/013's catalog) are dropped while the daemon is
 * far behind the best header and rebuilt once it comes within reach
 * (config catchup_indexes, catchup_threshold).
 *
 * Why: maintaining those indexes live costs ~3x the load time (every row
 * inserts a random 32-byte key; docs/PERFORMANCE.md); building them once
 * after the load is a sorted bulk build. The hash indexes (tx_hash,
 * prev_hash) stay: PostgreSQL builds a hash index row by row, each insert
 * WAL-logged, so a build after the load costs about what keeping it live
 * does (docs/PERFORMANCE.md "Hash indexes in catch-up"), and lookups of a
 * tx or a spender stay indexed. Primary keys and unit markers are never
 * dropped, so exactly-once indexing is unaffected; only lookups by push or
 * script hash become slow (sequential scans) during catch-up.
 *
 * The module lives in the controller and never talks to PostgreSQL itself:
 * every DROP / CREATE INDEX runs in a short-lived forked helper process that
 * opens its own connection after the fork, serialises with other helpers
 * (also of a previous, killed daemon) through a session advisory lock, and
 * reports back over its channel (a socketpair, src/proc/cd_helper) read by the
 * controller's loop. Decisions are
 * taken every second, and every 100 ms near the end of a catch-up (the
 * final build then starts at once), from the header height and the
 * indexed height:
 *
 *   auto  behind > threshold and indexes not known dropped -> weighing
 *         helper: it reads the size of the index and drops the indexes
 *         only if the backlog is also large against what it would
 *         rebuild (cd_catchup_weigh); else they stay live
 *         behind <= threshold, header sync done, not known present
 *                                                       -> build helper
 *   live  once at start: build helper (undoes an earlier auto run)
 *
 * Everything is idempotent (IF EXISTS / IF NOT EXISTS; CREATE INDEX is
 * transactional), so a crash at any point is repaired by the next start:
 * the state is unknown at start and the first decision re-establishes it.
 * The status reports "synced" only once the indexes are present
 * (cd_ctl_progress.index_mode).
 */
#ifndef CD_CATCHUP_H
#define CD_CATCHUP_H

#include "cd_ctl.h"

#include <stddef.h>
#include <stdint.h>

/* The controller module (listed in main.c; a module that finds cfg->index
 * off does nothing). It reports its mode in cd_ctl_progress.index_mode as
 * one of the CD_CTL_INDEX_* strings (cd_ctl.h). */
extern const cd_ctl_module cd_catchup_module;

/* How many of the last indexed best-chain blocks give the txs per block
 * that estimate the backlog (about a week of mainnet blocks). */
#define CD_CATCHUP_RECENT_BLOCKS 1000

/* The figures of one auto decision (cd_catchup_weigh). */
typedef struct cd_catchup_weighing {
    /* In */
    int32_t behind;     /* blocks from the indexed tip to the best header */
    uint32_t threshold; /* catchup_threshold (blocks) */
    uint32_t ratio_pct; /* catchup_ratio_pct: backlog txs against indexed, % */
    double indexed_txs; /* txs in the index: what a rebuild would sort */
    double per_block;   /* txs per block of the last indexed blocks */
    int had, total;     /* of the secondary indexes catch-up drops (the open
                         * tip's B-trees): valid, defined */
    /* Out */
    double backlog_txs; /* estimated: behind x per_block */
    int drop;           /* 1: catch-up mode (drop), 0: keep them live */
} cd_catchup_weighing;

/*
 * The auto rule. Catch-up mode (drop the secondary indexes, load, rebuild
 * them over the whole tables at the end) pays when the load it speeds up
 * outweighs the rebuild, whose cost grows with the index
 * (docs/PERFORMANCE.md "Growth: when to drop"); so drop only when
 *   behind > threshold blocks  AND  (the index is empty, or every secondary
 *   index is already absent (the rebuild is owed anyway), or
 *   backlog txs >= ratio_pct / 100 x indexed txs).
 * The backlog's txs are estimated from the indexed chain's recent txs per
 * block: measured on this chain next to the backlog (the chain-tx totals
 * the ETA uses exist only for mainnet/testnet and extrapolate 2018's rate).
 * ratio_pct 0: the block threshold alone (the rule before the ratio).
 * InOut: w (In fields read, Out fields set).
 * Out: why (len bytes, truncated like snprintf): the decision and its
 *      figures, e.g. "live (backlog 1200 blocks, ~0.4M txs < 20% of 6M
 *      indexed)".
 */
void cd_catchup_weigh(cd_catchup_weighing *w, char *why, size_t len);

#endif /* CD_CATCHUP_H */
