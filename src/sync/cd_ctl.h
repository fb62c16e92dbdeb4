/*
 * cd_ctl.h - how controller modules (block download and the pipeline, the
 * mempool and reorgs, catch-up mode, the HTTP API) attach to the
 * controller's peers and chain events.
 *
 * The controller owns one event_base, one cp2p_mgr (libconduit-p2p) and the
 * header tree. A module describes itself with a cd_ctl_module and is listed
 * in the modules[] table of main.c (one line per module), which hands it to
 * cd_controller_run(). At
 * start the controller calls init() before it opens the header tree or the
 * peer manager (so workers forked in init() inherit no LMDB env and no
 * socket; only the event_base and its signal events exist), then start()
 * once the tree and the manager exist and before peers are dialled; then it
 * forwards events:
 *
 *   peer events     every cp2p handler the module sets in `handlers` is
 *                   called after the controller's own handling (for
 *                   on_ready, on_disconnect, on_headers, on_inv) or instead
 *                   of it (all others: the controller does not use them).
 *                   ctx->user is the module's state (what init returned).
 *   block sink      at most one module may set `sink` (the ring); it is
 *                   passed to cp2p_mgr_new() and called with ctx->user = the
 *                   module's state.
 *   best chain      on_best_chain() after every best-tip change, with the
 *                   fork point and the blocks leaving / joining (the event
 *                   is borrowed for the call; nodes live as long as the tree).
 *   progress        progress() before every status publication: heights,
 *                   cumulative counters, workers, ring fill (cd_status.h).
 *
 * Everything runs on the controller's loop thread. fini() is called before
 * the manager and the tree are freed.
 */
#ifndef CD_CTL_H
#define CD_CTL_H

#include <stdint.h>

#include "cd_config.h"
#include "conduit_p2p.h"
#include "cd_hdrtree.h"
#include "cd_supervisor.h"
#include "cd_status.h" /* CD_STATUS_COMMIT_BUCKETS, CD_STATUS_MEMPOOL_REASONS */

struct event_base;

typedef struct cd_ctl cd_ctl;

/* What a module reports for the status line / status file (cd_status.h).
 * The controller pre-fills heights with -1 and counters with 0; a module
 * sets what it knows. Counters are cumulative for this run. */
typedef struct cd_ctl_progress {
    int32_t stored_height;       /* best-chain blocks stored + verified up to */
    int32_t indexed_height;      /* best-chain blocks indexed (PG) up to */
    uint64_t blocks, bytes, txs; /* blocks finished OK this run, their bytes/txs */
    uint32_t workers_alive, workers_total;
    uint64_t ring_used, ring_size;
    const char *index_mode; /* CD_CTL_INDEX_* (static string); NULL: no index */
    /* why the catch-up module chose that mode, with its figures, e.g. "live
     * (backlog 1200 blocks, ~0.4M txs < 20% of 6M indexed)"; "" none yet;
     * and those figures (estimates; < 0: not weighed) */
    char index_why[160];
    double index_backlog_txs, index_indexed_txs;
    /* height-range partitions (sql/017, the catch-up module): partitions
     * of each row table (0: not read yet), txs in the open tip (as of the
     * last look), rolls this run */
    int32_t partitions;
    int64_t partition_tip_txs;
    uint64_t partition_rolls;
    /* merges of closed partitions (sql/019, the merge module): merges
     * swapped in this run, the highest level (-1: not read yet), the level
     * being copied now (-1: none) */
    uint64_t partition_merges;
    int32_t partition_level, partition_merging;
    char stall[224];        /* why the data path is stopped (e.g. "disk full:
                               <path>: ..."): the status says stale; "" none */
    /* PostgreSQL batch commits of the parsers: count, total seconds, and
     * how many took <= each cd_status_commit_le bound (the pipeline) */
    uint64_t commit_n;
    double commit_sum_s;
    uint64_t commit_le[CD_STATUS_COMMIT_BUCKETS];
    /* relayed txs not taken, by cd_status_mempool_reasons (the mempool) */
    uint64_t mempool_refused[CD_STATUS_MEMPOOL_REASONS];
} cd_ctl_progress;

/* Modes of the secondary indexes (cd_ctl_progress.index_mode, the status
 * file), reported by the catch-up module (cd_catchup.h). */
#define CD_CTL_INDEX_CHECKING "checking" /* start: not known yet */
#define CD_CTL_INDEX_LIVE     "live"     /* indexes present */
#define CD_CTL_INDEX_DROPPED  "catch-up" /* dropped: bulk load */
#define CD_CTL_INDEX_BUILDING "building" /* CREATE INDEX running */

typedef struct cd_ctl_module {
    const char *name;
    /* Returns 0 and the module's state in *state, or -1 (logged) to stop the
     * daemon with CD_EXIT_FAILURE, or with the exit code given to
     * cd_ctl_stop() before returning (CD_EXIT_CONFIG: a setting the module
     * cannot use). */
    int (*init)(cd_ctl *ctl, void **state);
    /* Tree and manager now exist (cd_ctl_tree / cd_ctl_mgr). 0 or -1. */
    int (*start)(void *state);
    void (*fini)(void *state);
    cp2p_handlers handlers;
    const cp2p_block_sink *sink;
    void (*on_best_chain)(void *state, const cd_hdrtree_tip_event *ev);
    /* Optional: adds the module's figures to *out (called by the controller
     * before every status publication; must not block). */
    void (*progress)(void *state, cd_ctl_progress *out);
} cd_ctl_module;

/* Accessors for modules. Returns: objects owned by the controller, borrowed
 * by the module, valid from init() to fini(). */
struct event_base *cd_ctl_base(cd_ctl *ctl);
cp2p_mgr *cd_ctl_mgr(cd_ctl *ctl);    /* NULL during init(): created after */
cd_hdrtree *cd_ctl_tree(cd_ctl *ctl); /* NULL during init(): opened after */
const cd_config *cd_ctl_config(cd_ctl *ctl);
/* The process table (cd_supervisor.h): a module adds its children there
 * and stops them in fini() (cd_sup_stop(sup, owner, ...)). */
cd_supervisor *cd_ctl_sup(cd_ctl *ctl);

/* The modules' progress right now (what the next status would show);
 * must not be called from a module's progress callback. */
void cd_ctl_progress_now(cd_ctl *ctl, cd_ctl_progress *out);

/* Returns: 1 once the header sync has caught up with the peers
 * (cd_hdrsync_synced), else 0. */
int cd_ctl_headers_synced(cd_ctl *ctl);

/* Asks the controller loop to stop (as SIGTERM does), with an exit code. */
void cd_ctl_stop(cd_ctl *ctl, int exit_code);

#endif /* CD_CTL_H */
