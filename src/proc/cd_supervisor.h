/*
 * cd_supervisor.h - forks child processes and keeps them alive
 * (DESIGN.md §2, STYLE.md C8/C9).
 *
 * A fixed child table {name, index, main, pid, channel fd, respawn state}.
 * Each child gets one end of a fresh AF_UNIX SOCK_STREAM socketpair (CLOEXEC;
 * the controller end non-blocking). In the child every descriptor except its
 * channel (and stdin/out/err) is closed, signal dispositions are reset, the
 * log file is reopened, and the child's main function is called: LMDB/PG
 * handles are opened there, after the fork.
 *
 * The supervisor knows nothing about what its children run: the pipeline
 * adds the block writer, the merkle worker and the parsers (whose main
 * registers in the ring and runs cd_wk_run(), cd_pipe_workers.c), the HTTP module
 * its server. Same fork hygiene, reaping and respawn rules for all.
 *
 * Death is noticed through SIGCHLD (an evsignal in the controller's loop:
 * the handler work happens in the loop, never in a signal handler). A child
 * that exits with CD_EXIT_CONFIG (2) is not respawned and on_fatal is called;
 * any other exit is respawned after a back-off that doubles from 100 ms to
 * 5 s and resets once a child has lived 10 s.
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

#include "cd_config.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

#define CD_SUP_MAX_CHILDREN 40

struct event_base;
typedef struct cd_supervisor cd_supervisor;

typedef struct cd_sup_cbs {
    void *arg;
    void (*on_up)(void *arg, int slot, int fd);
    void (*on_down)(void *arg, int slot);
    void (*on_fatal)(void *arg, int slot);
} cd_sup_cbs;

/* Creates a supervisor bound to the loop. base and cfg are borrowed and must
 * outlive it (the children reopen cfg->log_file); *cbs is copied, cbs->arg
 * is handed back to the callbacks and must outlive it.
 * Returns: the supervisor (cd_sup_free), or NULL on failure (logged). */
cd_supervisor *cd_sup_new(struct event_base *base, const cd_config *cfg,
                          const cd_sup_cbs *cbs) CD_WARN_UNUSED;

/* Main function of a child: runs in the forked child after the clean-up
 * described above (slot = its slot in the table, fd = its end of the
 * channel); must not return (if it does, the child exits CD_EXIT_FAILURE). */
typedef void (*cd_sup_main_fn)(void *arg, int slot, int fd);

/* Adds a child that runs main_fn(arg, slot, fd) (not started yet; arg is
 * borrowed and must outlive the supervisor).
 * In:  name       static string naming it in logs ("<name> worker <index>")
 *      index      its number among children of the same name
 *      component  its log component (copied; at most 31 bytes kept);
 *                 NULL: name
 * Returns: its slot, or -1 when the table is full. */
int cd_sup_add(cd_supervisor *s, const char *name, uint32_t index, const char *component,
               cd_sup_main_fn main_fn, void *arg) CD_WARN_UNUSED;

/* Forks every child that is not running. Returns 0, or -1 if a fork failed
 * (the slot is retried with back-off). */
int cd_sup_start(cd_supervisor *s) CD_WARN_UNUSED;

/* Kills the child of a slot with SIGKILL (e.g. after a protocol error); it is
 * restarted like any other death. */
void cd_sup_kill(cd_supervisor *s, int slot);

/* Returns: the pid of a slot's child, 0 if none. */
pid_t cd_sup_pid(const cd_supervisor *s, int slot);

/* Stops every child: SIGTERM, wait up to timeout_ms, then SIGKILL. Blocks
 * (called at shutdown only). No respawn afterwards. */
void cd_sup_stop(cd_supervisor *s, int timeout_ms);

/* Frees the supervisor (call cd_sup_stop first). Accepts NULL. */
void cd_sup_free(cd_supervisor *s);

#endif /* CD_SUPERVISOR_H */
