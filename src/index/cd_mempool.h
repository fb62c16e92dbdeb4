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
 * Mempool (with `relay` on; the mirror of the node's mempool, sql/006):
 *  - at start the mempool tables are emptied; relayed txs are taken once the
 *    index has reached the tree's tip (not during the initial catch-up,
 *    when the mempool rules would consult a partial chain);
 *  - tx invs are answered with getdata at once; only the txs asked from a
 *    peer are taken from it, up to mempool_max_tx_size (cd_mempool_relay.c);
 *  - `mempool` is never sent on the peers' connections: a short-lived
 *    second connection per address probes whether the node allows it and,
 *    where it does, takes snapshots of its mempool that the tables are
 *    reconciled with (cd_mempool_sync.c; mempool_request = auto | always |
 *    never; refusals remembered in <datadir>/mempool_refused);
 *  - each `tx` is parsed with the parser workers' code (cd_rows_parse_unit:
 *    same txid, inputs and pushdata rule) plus its nLockTime and nSequence
 *    finality, and queued; the queue is written with one
 *    cd_mempool_add_txs() call per batch of up to CD_MEMPOOL_BATCH txs, sent
 *    whenever the connection is idle (so batches grow under load); while the
 *    queue is full (CD_MEMPOOL_QUEUE_MAX txs or its byte bound), tx invs are
 *    not answered with getdata (back-pressure). The call drops txs already
 *    confirmed or conflicting with a confirmed spend or an earlier mempool
 *    tx and keeps the tables within `mempool_max_txs` (default
 *    CD_MEMPOOL_DEFAULT_CAP) and `mempool_max_bytes`, oldest first;
 *  - every few seconds cd_mempool_housekeep() expires old rows and applies
 *    the limits; every removal is recorded with its reason (mempool_evicted,
 *    NOTIFY cd_evict).
 *
 * Log lines tests look for:
 *   "reorg: indexed best chain switched: fork height=<f> ... new tip=<hash> height=<h>"
 *   "mempool: index connection ready ..."       (PG connected, tables emptied)
 *   "mempool: index at the best tip; relay on ..."
 *   "mempool: <n> txs accepted ..."             (progress, at most once per second)
 *   "mempool: node <addr> (<ua>) refuses `mempool` requests ..." (WARN, once per address)
 *   "mempool: node <addr> answers `mempool` ..."
 *   "mempool: snapshot of <addr> done: ..."
 *   "mempool: peer <addr>: <n> unsolicited txs ..." (WARN, per peer)
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
