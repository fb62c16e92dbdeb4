/*
 * cd_supervisor.h - forks the worker processes and keeps them alive
 * (DESIGN.md §2, STYLE.md C8/C9).
 *
 * A fixed child table {kind, index, ops, pid, channel fd, respawn state}.
 * Children are forked from the controller after the ring exists; each gets
 * one end of a fresh AF_UNIX SOCK_STREAM socketpair (CLOEXEC; the controller
 * end non-blocking). In the child every descriptor except its channel (and
 * stdin/out/err) is closed, signal dispositions are reset, the log file is
 * reopened, and cd_wk_run() is called with the kind's ops: LMDB/PG handles are
 * opened there, after the fork.
 *
 * Death is noticed through SIGCHLD (an evsignal in the controller's loop:
 * the handler work happens in the loop, never in a signal handler). A child
 * that exits with CD_EXIT_CONFIG (2) is not respawned and on_fatal is called;
 * any other exit is respawned after a back-off that doubles from 100 ms to
 * 5 s and resets once a child has lived 10 s.
 *
 * Besides worker kinds (cd_sup_add: cd_wk_run with the kind's ops) a slot
 * can run any process main (cd_sup_add_proc: the HTTP API server), with the
 * same fork hygiene, reaping and respawn rules.
 *
 * Several supervisors may live in one process (the pipeline's, the HTTP
 * module's): waitpid(-1) reaps any child, so whichever supervisor's SIGCHLD
 * event runs first hands every reaped pid to the supervisor that owns it.
 *
 * Callbacks run in the controller's loop:
 *   on_up(arg, slot, fd)        a (re)started child's channel; the callee owns
 *                               the fd from then on (closes it when done)
 *   on_down(arg, slot)          the child of `slot` died (channel may still
 *                               have unread data; the callee closes its fd)
 *   on_fatal(arg, slot)         the child exited 2: it will not be restarted
 */
#ifndef CD_SUPERVISOR_H
#define CD_SUPERVISOR_H

#include <stdint.h>
#include <sys/types.h>

#include "daemon/cd_config.h"
#include "daemon/cd_ring.h"
#include "workers/cd_wk_main.h"

#define CD_SUP_MAX_CHILDREN 40

struct event_base;
typedef struct cd_supervisor cd_supervisor;

typedef struct cd_sup_cbs {
    void *arg;
    void (*on_up)(void *arg, int slot, int fd);
    void (*on_down)(void *arg, int slot);
    void (*on_fatal)(void *arg, int slot);
} cd_sup_cbs;

/* Creates a supervisor bound to the loop. ring and cfg are borrowed and must
 * outlive it; ring may be NULL when only cd_sup_add_proc children are added.
 * Returns NULL on failure (logged). */
cd_supervisor *cd_sup_new(struct event_base *base, cd_ring *ring, const cd_config *cfg,
                          const cd_sup_cbs *cbs);

/* Adds a child to the table (not started yet). Returns its slot, or -1 when
 * the table is full. `ops` is borrowed (static tables). */
int cd_sup_add(cd_supervisor *s, cd_wk_kind kind, uint32_t index, const cd_wk_ops *ops);

/* Main function of a cd_sup_add_proc child: runs in the forked child after
 * the clean-up described above (fd = its end of the channel); must not
 * return (if it does, the child exits CD_EXIT_FAILURE). */
typedef void (*cd_sup_main_fn)(void *arg, int fd);

/* Adds a child that runs main_fn(arg, fd) instead of a worker loop. `name`
 * (static string) names it in logs and as its log component. Returns its
 * slot, or -1 when the table is full. */
int cd_sup_add_proc(cd_supervisor *s, const char *name, cd_sup_main_fn main_fn, void *arg);

/* Forks every child that is not running. Returns 0, or -1 if a fork failed
 * (the slot is retried with back-off). */
int cd_sup_start(cd_supervisor *s);

/* Kills the child of a slot with SIGKILL (e.g. after a protocol error); it is
 * restarted like any other death. */
void cd_sup_kill(cd_supervisor *s, int slot);

/* pid of a slot's child, 0 if none. */
pid_t cd_sup_pid(const cd_supervisor *s, int slot);

/* Stops every child: SIGTERM, wait up to timeout_ms, then SIGKILL. Blocks
 * (called at shutdown only). No respawn afterwards. */
void cd_sup_stop(cd_supervisor *s, int timeout_ms);

/* Frees the supervisor (call cd_sup_stop first). Accepts NULL. */
void cd_sup_free(cd_supervisor *s);

#endif /* CD_SUPERVISOR_H */
