/*
 * cd_pipeline.h - block bytes in the ring -> work units -> workers -> acks
 * (DESIGN.md §3).
 *
 * The controller-side half of the block pipeline. It owns the worker
 * channels (its rows in the process table, cd_supervisor.h), the list of
 * blocks in flight, and the reuse of ring space.
 *
 * Receiving a block (one at a time; the p2p block sink calls these):
 *
 *     cd_pipeline_begin(p, hash, height, size, ctx)
 *     loop: n = cd_pipeline_space(p, &ptr); if n == 0 pause the socket until
 *           the `space` callback; recv() up to n bytes into ptr;
 *           cd_pipeline_commit(p, got)
 *
 * As bytes arrive the preprocessor (btc_preproc) records tx start offsets;
 * work units are cut at tx boundaries (cfg->unit_size, at most a quarter of
 * the ring; a single larger tx is one unit; when the ring is full every
 * complete tx is cut so space can be freed), and dispatched as descriptors:
 * every unit to the block writer and the merkle worker, each unit to one
 * parser. A unit's ring space is released when every consumer has acked it.
 * Blocks of at most a quarter of the ring keep their bytes until the block is
 * finished, so a worker crash re-dispatches them from the ring; bigger blocks
 * release unit by unit and a worker crash makes them fail with
 * CD_PIPE_RETRY (fetch again).
 *
 * A block is finished OK when the writer stored it (COMPLETE) and the merkle
 * worker verified its root and stored the tree, and every parser unit is
 * acked. block_done is called exactly once per begun block.
 *
 * All functions run in the controller's event loop thread.
 */
#ifndef CD_PIPELINE_H
#define CD_PIPELINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cd_config.h"
#include "cd_ring.h"
#include "cd_status.h" /* CD_STATUS_COMMIT_BUCKETS */
#include "cd_supervisor.h"
#include "cd_wk_main.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

struct event_base;
typedef struct cd_pipeline cd_pipeline;

typedef enum cd_pipe_status {
    CD_PIPE_OK = 0,
    CD_PIPE_MERKLE = 1,    /* root != header (or mutated): reject block, penalise peer */
    CD_PIPE_MALFORMED = 2, /* bytes are not a block (bad prefix/tx/count/hash) */
    CD_PIPE_RETRY = 3,     /* lost in a worker crash: fetch again, peer not at fault */
    CD_PIPE_TOOBIG = 4,    /* one tx larger than the ring */
    CD_PIPE_CANCELLED = 5, /* cd_pipeline_cancel() */
    CD_PIPE_UNWANTED = 6,  /* identify() refused it (not requested / unknown header) */
} cd_pipe_status;

/* Returns: the name of a cd_pipe_status for logs (static, never NULL). */
const char *cd_pipe_status_name(int status);

typedef struct cd_pipeline_cbs {
    void *arg;
    /* A begun block is finished (any status). hash is internal order. */
    void (*block_done)(void *arg, const uint8_t hash[32], int status, void *block_ctx);
    /* Ring space was freed after cd_pipeline_space() returned 0, or every
     * worker is up again (receivers paused for either reason may resume). */
    void (*space)(void *arg);
    /* A worker can never run (exit code 2): the daemon should stop. */
    void (*fatal)(void *arg);
    /* Optional: called once the header of a block begun with hash == NULL has
     * arrived; may set *height and replace *block_ctx. Return 0 to accept,
     * -1 to refuse it (the block fails with CD_PIPE_UNWANTED). */
    int (*identify)(void *arg, const uint8_t hash[32], const uint8_t header[80], uint32_t *height,
                    void **block_ctx);
    /* Optional: a failed copy of `hash` no longer holds the block back
     * (cd_pipeline_holds() is 0 again): it may be asked for again. */
    void (*cleared)(void *arg, const uint8_t hash[32]);
} cd_pipeline_cbs;

/* Returns: 1 while a copy of `hash` is in the pipeline, or a failed copy's committed
 * rows are being removed: another copy would be refused (CD_PIPE_UNWANTED),
 * so do not ask for one before `cleared`; else 0. */
int cd_pipeline_holds(const cd_pipeline *p, const uint8_t hash[32]);

/* Whether the writer or the merkle worker reported that its store cannot be
 * written (issue 11, F6: disk full or an I/O error; it retries the write
 * until it works, and the download should pause meanwhile).
 * Out: why (len bytes, may be NULL), e.g. "disk full: /d/blocks: No space
 *      left on device; 0 bytes free", when stalled.
 * Returns: 1 stalled, 0 not. */
int cd_pipeline_stalled(const cd_pipeline *p, char *why, size_t len);

/*
 * Creates the pipeline (workers are not started yet). Its workers go into
 * the process table `sup` (the controller's: cd_ctl_sup), which also learns
 * the ring, so that children that do not need it unmap it. base, sup, ring
 * and cfg are borrowed and must outlive it; *cbs is copied, cbs->arg must
 * outlive it.
 * Returns: the pipeline (cd_pipeline_free), or NULL on failure (logged).
 */
cd_pipeline *cd_pipeline_new(struct event_base *base, cd_supervisor *sup, cd_ring *ring,
                             const cd_config *cfg, const cd_pipeline_cbs *cbs) CD_WARN_UNUSED;

/* The most parser workers one pipeline runs: the configuration's bound
 * (the option table refuses more), and its workers: those plus the block
 * writer and the merkle worker, each with a ring slot and an ack bit. */
#define CD_PIPELINE_MAX_PARSERS CD_CONFIG_MAX_PARSER_WORKERS
#define CD_PIPELINE_MAX_CHANS   (CD_PIPELINE_MAX_PARSERS + 2)
_Static_assert(CD_PIPELINE_MAX_CHANS <= CD_RING_MAX_SLOTS && CD_PIPELINE_MAX_CHANS <= 64,
               "every worker needs a ring slot and a bit of a unit's 64-bit ack mask");

/* Registers n parser workers running `ops` (call before start; n = 0 or
 * never calling it runs without parsers). Returns 0, or -1 when started
 * already or n > CD_PIPELINE_MAX_PARSERS (nothing registered). */
int cd_pipeline_set_parsers(cd_pipeline *p, const cd_wk_ops *ops, unsigned n) CD_WARN_UNUSED;

/* Forks the workers (a fork that fails is logged and retried with back-off
 * by the process table). Returns: 0, or -1 when called twice or a worker
 * could not be added to the table. */
int cd_pipeline_start(cd_pipeline *p) CD_WARN_UNUSED;

/* Returns: 1 when every worker has said HELLO (units flow only then). */
int cd_pipeline_ready(const cd_pipeline *p);

/*
 * Starts receiving a block of `size` bytes whose header hashes to `hash`
 * (NULL: not known yet, e.g. a p2p sink; identify() is asked once the header
 * is in).
 * height may be CD_IPC_HEIGHT_UNKNOWN. block_ctx is passed back to
 * block_done. Returns 0, or -1 with errno EBUSY (a block is being received)
 * or EINVAL (size < 81).
 */
int cd_pipeline_begin(cd_pipeline *p, const uint8_t hash[32], uint32_t height, uint64_t size,
                      void *block_ctx) CD_WARN_UNUSED;

/* Returns: the writable bytes for the block being received (0: ring full or
 * no block). Out: *ptr, where to write them: ring memory, valid until the
 * next cd_pipeline_commit(). */
uint64_t cd_pipeline_space(cd_pipeline *p, uint8_t **ptr);

/*
 * Accounts n bytes written at the pointer of the last cd_pipeline_space().
 * Returns: 0 more bytes expected; 1 the block is fully received (it finishes
 * later, through block_done); -1 the block failed (block_done was called;
 * discard the rest of the payload; drop the peer if MALFORMED/TOOBIG).
 */
int cd_pipeline_commit(cd_pipeline *p, uint64_t n) CD_WARN_UNUSED;

/* Abandons the block being received (peer gone). block_done(CANCELLED). */
void cd_pipeline_cancel(cd_pipeline *p);

/* Returns: 1 while a block is being received (between begin and its last
 * byte), else 0. */
int cd_pipeline_receiving(const cd_pipeline *p);

/* Returns: the number of blocks begun and not yet finished. */
size_t cd_pipeline_in_flight(const cd_pipeline *p);

/* Returns: the pid of a worker (kind, index), 0 if not running. */
pid_t cd_pipeline_worker_pid(const cd_pipeline *p, cd_wk_kind kind, uint32_t index);

typedef struct cd_pipeline_stats {
    uint64_t bytes_in;
    uint64_t blocks_ok;
    uint64_t bytes_ok; /* sizes of the blocks finished OK */
    uint64_t txs_ok;   /* transactions of the blocks finished OK */
    uint64_t blocks_failed;
    uint64_t units;
    uint64_t redispatched;
    uint64_t purges; /* failed copies whose committed rows were removed */
    /* the parsers' PostgreSQL batch commits (PG_COMMIT): count, seconds,
     * and how many took <= each cd_status_commit_le bound */
    uint64_t commits;
    double commit_s;
    uint64_t commit_le[CD_STATUS_COMMIT_BUCKETS];
} cd_pipeline_stats;

/* Out: *out, the counters since the pipeline was created. */
void cd_pipeline_get_stats(const cd_pipeline *p, cd_pipeline_stats *out);

/* Workers registered (*total) and those whose channel is up, i.e. running
 * and past HELLO (*alive). */
void cd_pipeline_workers(const cd_pipeline *p, uint32_t *alive, uint32_t *total);

/* Stops the workers (SIGTERM, then SIGKILL after 5 s; their rows of the
 * process table are freed) and frees everything.
 * Blocks in flight are not reported. Accepts NULL. */
void cd_pipeline_free(cd_pipeline *p);

#endif /* CD_PIPELINE_H */
