/*
 * cd_catchup.h - catch-up mode of the PostgreSQL index: the three secondary
 * indexes (transactions.tx_hash, inputs (prev_hash, prev_idx),
 * pushdata.push_hash) are dropped while the daemon is far behind the best
 * header and rebuilt once it comes within reach (config catchup_indexes,
 * catchup_threshold).
 *
 * Why: maintaining those indexes live costs ~3x the load time (every row
 * inserts a random 32-byte key; docs/PERFORMANCE.md); building them once
 * after the load is a sequential sort. Primary keys and unit markers are
 * never dropped, so exactly-once indexing is unaffected; only lookups by
 * hash become slow (sequential scans) during catch-up.
 *
 * The module lives in the controller and never talks to PostgreSQL itself:
 * every DROP / CREATE INDEX runs in a short-lived forked helper process that
 * opens its own connection after the fork, serialises with other helpers
 * (also of a previous, killed daemon) through a session advisory lock, and
 * reports back over a pipe read by the controller's loop. Decisions are
 * taken every second from the header height and the indexed height:
 *
 *   auto  behind > threshold and indexes not known dropped -> drop helper
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

/* The controller module (listed in main.c; a module that finds cfg->index
 * off does nothing). It reports its mode in cd_ctl_progress.index_mode as
 * one of the CD_CTL_INDEX_* strings (cd_ctl.h). */
extern const cd_ctl_module cd_catchup_module;

#endif /* CD_CATCHUP_H */
