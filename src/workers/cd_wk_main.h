/*
 * cd_wk_main.h - the common main loop of every forked worker.
 *
 * The supervisor forks and closes what the child must not keep; the
 * pipeline's worker main (cd_pipe_workers.c) then calls cd_wk_run() with a
 * context and the kind's operation table. The loop reads
 * cd_ipc messages from the channel (blocking), calls the table's hooks, and
 * sends UNIT_ACK / BLOCK_DONE replies. It never returns: the process exits
 *   0                on SHUTDOWN or channel EOF (the controller is gone),
 *   CD_EXIT_CONFIG   (2) if init() says the configuration can never work
 *                    (the supervisor will not respawn),
 *   CD_EXIT_FAILURE  (1) on any other error (respawned with back-off).
 *
 * Each kind opens its LMDB env / PG connection in init(), i.e. after fork.
 * The parser worker (cd_wk_parser.c) plugs in through the same table.
 */
#ifndef CD_WK_MAIN_H
#define CD_WK_MAIN_H

#include <stdint.h>

#include "cd_util.h"
#include "cd_ipc.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

/* Process exit codes: the same contract (and values) as the daemon's
 * (cd_config.h); identical redefinitions are allowed in C. */
#define CD_EXIT_OK      0
#define CD_EXIT_FAILURE 1
#define CD_EXIT_CONFIG  2

/* What the workers need from the daemon's configuration (filled by the
 * pipeline's worker main from cd_config just before cd_wk_run; the worker
 * loop does not depend on the configuration header). Strings are borrowed
 * from the controller's memory image, which the forked child keeps. */
typedef struct cd_wk_config {
    const char *datadir;            /* <datadir>/blocks, <datadir>/merkle, crash markers */
    const struct cd_config *daemon; /* parsers: the session (cd_pg_new); NULL for others */
    int index_data_pushes;          /* parsers: index DATA pushes */
    uint32_t max_data_push;         /* parsers: longest DATA push hashed, 0 = no limit */
} cd_wk_config;

typedef struct cd_wk_ctx {
    cd_wk_kind kind;
    uint32_t index;      /* parser number */
    int fd;              /* channel to the controller */
    const uint8_t *ring; /* ring data (double-mapped: 2*ring_size bytes) */
    uint64_t ring_size;
    const cd_wk_config *cfg; /* borrowed (see cd_wk_config) */
    void *state;             /* the kind's private state (init sets it) */
    int stalled;             /* cd_wk_store_wait: a store write is failing */
    unsigned stall_tries;    /* attempts since it began */
} cd_wk_ctx;

/* Pointer to the unit's bytes in the ring. */
static inline const uint8_t *cd_wk_unit_bytes(const cd_wk_ctx *c, const cd_ipc_unit *u)
{
    return c->ring + (u->ring_pos % c->ring_size);
}

/*
 * Hooks of one worker kind. Return conventions:
 *   init:  0, or a CD_EXIT_* code to exit with.
 *   begin: 0, or -1 (fatal: the worker exits CD_EXIT_FAILURE).
 *   del:   0; 1 -> BLOCK_DONE (block_id of the request, status OK) is sent
 *          back; or -1 (fatal: the worker exits CD_EXIT_FAILURE).
 *   unit:  a cd_ipc_status >= 0 sent back in UNIT_ACK, or -1 (fatal, no ack),
 *          or CD_WK_DEFERRED: the unit is held and the hook owes its UNIT_ACK
 *          (sent with cd_wk_send_ack from a later hook, normally idle).
 *   end:   1 and *done filled -> BLOCK_DONE is sent; 0 -> nothing sent;
 *          -1 fatal.
 *   stored: (parsers) BLOCK_STORED: 1 and *done filled -> BLOCK_DONE is
 *          sent; 0 -> the hook owes the BLOCK_DONE (sent from idle); -1
 *          fatal.
 *   idle:  called when no message is waiting (before the loop blocks), and
 *          before BLOCK_ABORT / BLOCK_DELETE / SHUTDOWN are handled: settle
 *          every deferred unit and send its ack. 0, or -1 (fatal).
 * Any hook may be NULL (treated as success / no reply).
 */
typedef struct cd_wk_ops {
    const char *name;
    int (*init)(cd_wk_ctx *c);
    int (*begin)(cd_wk_ctx *c, const cd_ipc_block_begin *b);
    int (*unit)(cd_wk_ctx *c, const cd_ipc_unit *u, const uint32_t *tx_off);
    int (*end)(cd_wk_ctx *c, const cd_ipc_block_ref *r, cd_ipc_block_done *done);
    void (*abort)(cd_wk_ctx *c, const cd_ipc_block_ref *r);
    int (*del)(cd_wk_ctx *c, const cd_ipc_block_ref *r);
    void (*fini)(cd_wk_ctx *c);
    int (*idle)(cd_wk_ctx *c);
    int (*stored)(cd_wk_ctx *c, const cd_ipc_block_ref *r, cd_ipc_block_done *done);
} cd_wk_ops;

/* unit hook: "held, ack later" (see cd_wk_ops). Not a cd_ipc_status. */
#define CD_WK_DEFERRED 0x7fff

/* Sends the UNIT_ACK of a deferred unit. Returns: 0, or -1 with errno
 * (controller gone). */
int cd_wk_send_ack(cd_wk_ctx *c, uint64_t block_id, uint32_t unit_no,
                   uint32_t status) CD_WARN_UNUSED;

/*
 * A write to the LMDB store in `path` failed with rc (issue 11, F6). When it
 * is a failure that time or the operator can cure -- no space left
 * (ENOSPC, EDQUOT, LMDB's short write EIO, MDB_MAP_FULL that the store
 * could not grow past) or another I/O error -- the worker waits instead of
 * exiting (an exit would make the controller fetch the block again, in a
 * loop, while the disk stays full): the first failure logs one ERROR naming
 * the path, the error and the filesystem's free space, and tells the
 * controller (STALL: the status says "stale: disk full"); then it sleeps
 * (0.5 s doubling up to 8 s), watching its channel for the controller's exit
 * (then it exits 0). Its unit stays unacknowledged meanwhile, so the ring
 * fills and the download pauses by itself.
 * Returns: 0: try the write again; rc: not an error worth waiting for (the
 *          caller fails as before).
 */
int cd_wk_store_wait(cd_wk_ctx *c, const char *path, int rc) CD_WARN_UNUSED;

/* A store write succeeded: if a stall was on, logs that writing works
 * again and tells the controller (STALL with stalled = 0). */
void cd_wk_store_ok(cd_wk_ctx *c, const char *path);

/* Records walked from each end of every database of a store at start
 * (cd_blockstore_check). */
#define CD_WK_CHECK_BOUND 10000u

/* Runs the worker until shutdown; never returns (see banner). */
CD_NORETURN void cd_wk_run(cd_wk_ctx *c, const cd_wk_ops *ops);

/* The two kinds implemented by the pipeline. */
extern const cd_wk_ops cd_wk_writer_ops; /* cd_wk_writer.c: <datadir>/blocks */
extern const cd_wk_ops cd_wk_merkle_ops; /* cd_wk_merkle.c: <datadir>/merkle */

/* Test hook for the crash tests: if the environment variable CD_WK_CRASH is
 * "<kind name>:<n>" (e.g. "writer:3"), the worker of that kind SIGKILLs
 * itself right after processing (and before acknowledging) its n-th unit.
 * The marker file <datadir>/crashed.<kind> is created first, so the restarted
 * worker does not crash again. No effect when the variable is unset. */
void cd_wk_maybe_crash(cd_wk_ctx *c, uint64_t units_done);

#endif /* CD_WK_MAIN_H */
