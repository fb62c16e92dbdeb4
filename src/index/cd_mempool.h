/*
 * cd_mempool.h - the controller module for best-chain switches (reorgs) and
 * the mempool index (issue #8; sql/002_reorg_mempool.sql; docs/QUERIES.md).
 *
 * cd_mempool_module (listed in modules[] of main.c) runs on the
 * controller's loop with its own PostgreSQL connection (started in start(),
 * never across fork). It is active only with `index` on. It never blocks the
 * loop on PostgreSQL: libpq is driven asynchronously (non-blocking connect
 * with timeout and back-off, one statement in flight, the rest queued), so a
 * slow, locked or absent database delays only this module's own work.
 *
 * Best chain:
 *  - on every best-tip change of the header tree (and at start, and on a
 *    timer) it writes the tree's tip to chain_target and runs
 *    `SELECT cd_reorg_step()`: once every block from the fork point to the
 *    target is indexed (the block pipeline downloads and the parsers index
 *    the new branch first), the step switches the best chain in ONE
 *    transaction (leaving blocks off, joining on, index_tip moved, mempool
 *    reconciled, NOTIFY). The state needs no memory of its own: after a
 *    crash the same step recomputes what is left to do from the tree and
 *    PostgreSQL. A newer best tip simply replaces the target (the tree
 *    always wins).
 *
 * Mempool (with `relay` on):
 *  - at start the mempool tables are emptied; relayed txs are taken once the
 *    index has reached the tree's tip (not during the initial catch-up,
 *    when the mempool rules would consult a partial chain); then every
 *    ready peer, and every peer that becomes ready, is sent `mempool`, so
 *    the set refills from the node;
 *  - tx invs are answered with getdata at once (a recently-requested set
 *    keeps duplicates away; cp2p splits batches within the peer's limits);
 *  - each `tx` is parsed with the parser workers' code (cd_rows_parse_unit:
 *    same txid, inputs and pushdata rule) and queued; the queue is written
 *    with one cd_mempool_add_batch() call per batch of up to
 *    CD_MEMPOOL_BATCH txs, sent whenever the connection is idle (so batches
 *    grow under load); while CD_MEMPOOL_QUEUE_MAX txs wait, tx invs are not
 *    answered with getdata (back-pressure). The call drops txs already confirmed
 *    or conflicting with a confirmed spend or an earlier mempool tx and
 *    evicts oldest-first beyond `mempool_max_txs` (default
 *    CD_MEMPOOL_DEFAULT_CAP).
 *
 * Log lines tests look for:
 *   "reorg: indexed best chain switched: fork height=<f> ... new tip=<hash> height=<h>"
 *   "mempool: index connection ready ..."       (PG connected, tables emptied)
 *   "mempool: index at the best tip; relay on ..."
 *   "mempool: <n> txs accepted ..."             (progress, at most once per second)
 *   "mempool: PostgreSQL connection lost|failed|timed out: ..." (once per outage)
 *   "mempool: PostgreSQL connection back"
 */
#ifndef CD_MEMPOOL_H
#define CD_MEMPOOL_H

#include "cd_ctl.h"

#define CD_MEMPOOL_BATCH       512
#define CD_MEMPOOL_DEFAULT_CAP 1000000
#define CD_MEMPOOL_QUEUE_MAX   (64 * CD_MEMPOOL_BATCH) /* parsed txs waiting for PG */

extern const cd_ctl_module cd_mempool_module;

#endif /* CD_MEMPOOL_H */
