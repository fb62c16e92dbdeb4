/*
 * cd_merge.h - merging closed height-range partitions in levels
 * (sql/019_partition_merge.sql; config partition_merge, the fan-in).
 *
 * Why: every lookup by hash probes each partition (docs/PERFORMANCE.md
 * "Lookups over many partitions"), and rolls (cd_catchup.h) add one per
 * partition_txs txs without end. Merging fan_in closed partitions of one
 * level into one of the next keeps at most fan_in - 1 per level: the count
 * grows with the logarithm of the index's size.
 *
 * Where it runs: a helper process of its own ("partition-merge", a
 * CD_SUP_ONCE row of the process table, its own PGconn opened after the
 * fork), at most one at a time, never in the controller's loop nor in the
 * index-ddl helper: that one runs one op at a time, and a copy of hours
 * there would hold back the rolls (the tip would grow without bound) and
 * the catch-up decisions. The copy takes no lock a roll, a unit, a reorg
 * or a query waits for; only the short swap takes the tables' locks, with
 * the roll's lock_timeout, so it is the merge that loses a wait.
 */
#ifndef CD_MERGE_H
#define CD_MERGE_H

#include "cd_ctl.h"

#include <stdint.h>

/* The controller module (listed in main.c after the catch-up module; it
 * does nothing when cfg->index is off or partition_merge is 0). It reports
 * in cd_ctl_progress.partition_merges / partition_level /
 * partition_merging. */
extern const cd_ctl_module cd_merge_module;

/* What the last helper run ended with. */
typedef enum cd_merge_last {
    CD_MERGE_NEVER = 0, /* none has run yet */
    CD_MERGE_NOTHING,   /* no candidate (or another daemon's merge holds the lock) */
    CD_MERGE_MERGED,    /* a merge was swapped in */
    CD_MERGE_CHANGED,   /* the swap refused: a write into the range, copy dropped */
    CD_MERGE_BUSY,      /* the swap's locks not granted: copy kept for the next run */
    CD_MERGE_FAILED,    /* an error (logged) or the helper died */
} cd_merge_last;

/* Seconds before the next run after each outcome (cd_merge_due). */
#define CD_MERGE_AGAIN_BUSY_S    5.0
#define CD_MERGE_AGAIN_CHANGED_S 10.0
#define CD_MERGE_AGAIN_FAILED_S  30.0
#define CD_MERGE_AGAIN_IDLE_S    60.0

/* The scheduler's view (cd_merge_due). */
typedef struct cd_merge_sched {
    uint32_t fan_in;    /* partition_merge (0: never) */
    int running;        /* a helper is up */
    cd_merge_last last; /* how the last run ended */
    double last_end;    /* when (cd_now_s) */
    int32_t parts_then; /* the partitions count known when it ended (0: unknown) */
} cd_merge_sched;

/*
 * Whether to start a helper run now: never with fan_in < 2 or a helper up;
 * at once before the first run and after a merge (another may be due: a
 * merge of level L can complete fan_in of level L+1); after "nothing" once
 * the partitions count has changed (a roll closed one) or
 * CD_MERGE_AGAIN_IDLE_S have passed (an index build made a range valid);
 * after the other outcomes once their delay above has passed.
 * In: s; now (cd_now_s); parts_now the partitions count known now (0:
 *     unknown).
 * Returns: 1 start one, 0 not now.
 */
int cd_merge_due(const cd_merge_sched *s, double now, int32_t parts_now);

#endif /* CD_MERGE_H */
