/*
 * cd_status.h - sync progress: the struct the controller fills, the periodic
 * progress line, systemd STATUS=, and the status file <datadir>/status that
 * `conduit-cli status` reads without disturbing the daemon.
 *
 * The status file is a small text file of "key=value" lines, replaced
 * atomically (write <datadir>/status.tmp, fsync-free, rename). Readers ignore
 * keys they do not know, so fields can be added without breaking older CLIs.
 *
 * Usage (controller, every cfg->status_interval_s seconds and at state
 * changes):
 *     st.height = ...; st.stored_height = ...;       // absolute values
 *     st.indexed_height = ...; st.header_height = ...;
 *     cd_status_sample(&st, blocks_done, bytes_done, txs_done, cd_now_s());
 *     cd_status_publish(cfg, &st);   // log line + STATUS= + status file
 *
 * NOTES
 *  - cd_status_sample() computes blocks/s, MB/s, tx/s from the cumulative
 *    counters over the last few samples (a sliding window), and the ETA from
 *    the gap between header_height and height.
 *  - All functions are for the controller process; the reader side is for
 *    the CLI and tests.
 */
#ifndef CD_STATUS_H
#define CD_STATUS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cd_config.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

#define CD_STATUS_FILE "status"

#define CD_STATUS_MAX_PEERS 8 /* peers listed in the status file */
#define CD_STATUS_WINDOW    7 /* samples the rates span: the last 6 intervals */

/* Worker restarts of one kind of child (cd_sup_restarts), by kind name. */
typedef struct cd_status_count {
    char name[24];
    uint64_t n;
} cd_status_count;

#define CD_STATUS_MAX_KINDS 16

/* PostgreSQL commit latency of the parsers' batches (a histogram): the
 * upper bounds of its buckets, in seconds (+Inf is the count). */
#define CD_STATUS_COMMIT_BUCKETS 11
extern const double cd_status_commit_le[CD_STATUS_COMMIT_BUCKETS];

/* Why relayed mempool txs were not taken (cd_mempool_relay.c's per-peer
 * counters, summed over every peer of this run); the status file's and the
 * metrics' reason labels, in this order. */
#define CD_STATUS_MEMPOOL_REASONS 6
extern const char *const cd_status_mempool_reasons[CD_STATUS_MEMPOOL_REASONS];

/* One connected peer as the status file lists it. */
typedef struct cd_status_peer {
    char addr[64];   /* host:port */
    char agent[128]; /* its user agent, escaped by libconduit-p2p (no
                        control characters) */
    int32_t height;  /* the start height it announced */
    uint64_t bytes_in, bytes_out;
} cd_status_peer;

typedef struct cd_status {
    /* identity (set by cd_status_init) */
    int64_t pid;
    char network[16];
    char version[24];
    int64_t started_at;  /* unix seconds */
    int64_t updated_at;  /* unix seconds, set by cd_status_write */
    uint32_t interval_s; /* status_interval when written (for staleness) */
    /* filled by the controller */
    char state[24];         /* "starting", "headers", "syncing", "synced", "stale"
                               (the data path stopped: see stall),
                               "stopping", "stopped" */
    int32_t height;         /* progress height: indexed_height when the index
                               is enabled, else stored_height; -1: none */
    int32_t stored_height;  /* best-chain blocks stored + verified up to, -1 */
    int32_t indexed_height; /* best-chain blocks indexed in PG up to, -1 (also
                               when the index is disabled) */
    int32_t header_height;  /* best header height, -1: none */
    uint32_t peers;         /* connected peers */
    uint32_t workers_alive;
    uint32_t workers_total;
    uint64_t ring_used; /* bytes in use in the ring */
    uint64_t ring_size;
    char index_mode[16]; /* secondary indexes (cd_catchup.h): "live", "catch-up",
                            "building", "checking"; "" when not indexing */
    char stall[224];     /* why the data path stopped, e.g. "disk full: <path>:
                            No space left on device; 0 bytes free" (issue 11,
                            F6); state is then "stale"; "" none */
    /* computed by cd_status_sample */
    uint64_t blocks_done, bytes_done, txs_done; /* cumulative this run */
    double blocks_per_s, mb_per_s, tx_per_s;
    double eta_s; /* < 0: unknown */
    /* filled by the controller (appended in format 1: older readers skip) */
    char best_hash[65]; /* best header's hash, display hex; "" unknown */
    uint32_t n_peer;    /* entries of peer[] (<= peers) */
    cd_status_peer peer[CD_STATUS_MAX_PEERS];
    /* appended in format 1 for issue 17 (older readers skip them) */
    char tip_hash[65];    /* the best-chain block at `height` (indexed tip, or
                             stored tip without the index), display hex; "" */
    int64_t tip_time;     /* its header time (unix seconds), 0 unknown */
    int64_t header_time;  /* the best header's time, 0 unknown */
    uint32_t n_restart;   /* entries of restart[] */
    cd_status_count restart[CD_STATUS_MAX_KINDS]; /* worker restarts by kind */
    uint64_t commit_n;    /* parser batch commits timed this run */
    double commit_sum_s;  /* their total duration */
    uint64_t commit_le[CD_STATUS_COMMIT_BUCKETS]; /* commits <= each bound
                                                     (cumulative, as Prometheus) */
    uint64_t mempool_refused[CD_STATUS_MEMPOOL_REASONS]; /* by reason, this run */
    /* computed by cd_status_sample from the chain's known tx totals
     * (cd_status_chain_txs): estimates, < 0 when the network has none */
    double progress_tx; /* fraction 0..1 of the chain's txs up to `height` */
    double txs_left;    /* txs between `height` and the best header */
    /* the catch-up module's last choice (cd_ctl_progress.index_why; appended
     * for issue 18's weighing): the text, and its two estimates (< 0: none) */
    char index_why[160];
    double index_backlog_txs, index_indexed_txs;
    /* height-range partitions (sql/017, cd_ctl_progress): partitions of
     * each row table (0: unknown), txs in the open tip at the last look
     * (-1: unknown), tip rolls this run */
    int32_t partitions;
    int64_t partition_tip_txs;
    uint64_t partition_rolls;
    /* merges (sql/019, cd_ctl_progress): swapped in this run, the highest
     * level (-1: unknown), the level being copied (-1: none) */
    uint64_t partition_merges;
    int32_t partition_level, partition_merging;
    /* private to cd_status_sample: the sliding window of samples */
    struct {
        double t;
        uint64_t blocks, bytes, txs;
    } win[CD_STATUS_WINDOW];
    unsigned win_n, win_next;
} cd_status;

/* Estimated number of transactions in the chain up to a block, from the
 * totals the Bitcoin SV node knows for mainnet and testnet (its
 * chainTxData: the tx count at a recent block and the tx rate after it):
 * up to that block the count is spread evenly over the heights, after it
 * the rate runs from that block's time to `time`. A rough figure, always
 * shown as estimated.
 * In: net "main" / "test" (others have none); height >= 0; time: the
 *     block's header time (unix seconds).
 * Out: *txs. Returns: 0, or -1 when the network has no known totals. */
int cd_status_chain_txs(const char *net, int32_t height, int64_t time, double *txs);

/* Zeroes *st and sets identity fields (pid, network, version, start time),
 * state "starting", heights -1, eta unknown. */
void cd_status_init(cd_status *st, const cd_config *cfg);

/* Takes a sample of the cumulative counters at time now_s (cd_now_s()) and
 * updates the rates and the ETA: by transactions (estimated txs left ÷ the
 * tx rate) where the network's chain totals are known, else by blocks
 * (blocks left ÷ the block rate); st->progress_tx and st->txs_left too. The rates span a sliding window of the
 * last CD_STATUS_WINDOW samples (6 status intervals): once nothing moved
 * for that long they read exactly 0, rather than decaying slowly as a
 * smoothed average does. The first call only records the starting point. */
void cd_status_sample(cd_status *st, uint64_t blocks_done, uint64_t bytes_done, uint64_t txs_done,
                      double now_s);

/* One-line summary for the log / systemd STATUS=, e.g.
 * "syncing height=1200/5000 (24.0%) 35.2 blk/s 12.1 MB/s 8120 tx/s ring 12%
 *  workers 4/4 peers 2 eta 1m48s". Out: buf (len bytes, truncated like
 * snprintf). Returns: the snprintf length. */
int cd_status_format_line(const cd_status *st, char *buf, size_t len);

/* Human-readable multi-line report (what `conduit-cli status` prints).
 * `alive`: 1 running, 0 not running, -1 unknown. */
void cd_status_print(FILE *f, const cd_status *st, int alive);

/*
 * The status as one JSON object and a newline: what `conduit-cli status
 * --json` prints and the HTTP API's /v1/status returns. Built with jansson
 * and printed as jansson does without JSON_COMPACT (", " and ": "
 * separators, the fields in a fixed order: the Docker healthcheck greps
 * `"running": true, "stale": false`); the rates with up to 15 significant
 * digits (1.5, not "1.500"), eta_s an integer.
 * In:  alive as above (-1 prints as running); now (unix seconds) decides
 *      "stale".
 * Returns: the text, malloc'd (the caller frees it); NULL when out of memory
 *          or a text field of st is not UTF-8.
 */
char *cd_status_json(const cd_status *st, int alive, int64_t now) CD_WARN_UNUSED;

/* Writes <datadir>/status atomically (tmp file + rename); sets updated_at.
 * Returns 0, or -1 with errno set. */
int cd_status_write(const char *datadir, cd_status *st) CD_WARN_UNUSED;

/* Reads <datadir>/status into *st (unknown keys are ignored). Returns: 0, or
 * -1 with errno set (ENOENT: no daemon has run there; EINVAL: not a status
 * file). */
int cd_status_read(const char *datadir, cd_status *st) CD_WARN_UNUSED;

/* Returns: 1 if the process st->pid exists, 0 if not. */
int cd_status_pid_alive(const cd_status *st);

/* Returns: 1 if the file has not been rewritten for more than three status intervals
 * (plus slack) as of `now` (unix seconds): the daemon's loop may be stuck. */
int cd_status_stale(const cd_status *st, int64_t now);

/* Logs the progress line at info level, sends it as systemd STATUS=, and
 * writes the status file (a write failure is logged with the path, once per
 * errno change). Returns 0 or -1. */
int cd_status_publish(const cd_config *cfg, cd_status *st) CD_WARN_UNUSED;

/* Formats seconds as "1h02m", "3m05s", "42s", or "?" when < 0, into buf (len
 * bytes, truncated like snprintf). */
void cd_status_format_duration(double s, char *buf, size_t len);

#endif /* CD_STATUS_H */
