/*
 * cd_helper.h - a controller module's run-once helper process that reports
 * over its channel in fixed-size messages: the module's periodic look
 * (whether to launch a run), the helper's row of the process table (a
 * CD_SUP_ONCE kind), the controller's end of its channel (watched by the
 * loop, its bytes reassembled into whole messages), and its end (reaped by
 * the supervisor, every message it wrote handed over first).
 *
 * Why it exists: the catch-up module's DDL helper (src/index/cd_catchup.c,
 * "index-ddl") and the partition merger (src/index/cd_merge.c,
 * "partition-merge") each do work the controller's loop must never block
 * on, in a process launched per decision that writes a few messages and
 * exits, and look once a second whether a run is due; each had the same
 * timer / row / channel / read / reassemble / reap code. It is here once.
 * What stays in the module: when to launch, what the child does, what its
 * messages mean, what a run without a result means.
 * Resident children whose channel carries nothing are cd_resident.h's.
 *
 * Which process calls what:
 *   controller  cd_helper_new (module init), cd_helper_tick (module
 *               start), cd_helper_launch (whenever its rule says so; one
 *               run at a time), cd_helper_pid, cd_helper_ticking,
 *               cd_helper_free (module fini); the hooks run in its loop
 *   helper      its kind's main (cd_sup_main_fn: arg as given to
 *               cd_helper_new, fd its channel end) calls
 *               cd_helper_die_with_controller first, then cd_helper_send
 *               for each message, then _exit
 *
 * One helper object serves every launch: a row is added to the process
 * table at the first launch and reused. The object is the row's owner
 * (cbs.arg), so cd_helper_free stops exactly its helper.
 *
 *   launched     the old channel end, if any, is closed; the new one is
 *                watched
 *   messages     on_msg for each whole message, in the order written (the
 *                channel is a stream: a message that arrives in pieces is
 *                reassembled); bytes of a message cut short by the helper's
 *                end are dropped
 *   ended        what is left in the channel is read (on_msg), the channel
 *                end is closed, then on_down with the pid it had and its
 *                exit code; a launch from on_down starts the next run
 */
#ifndef CD_HELPER_H
#define CD_HELPER_H

#include <stddef.h>
#include <sys/types.h>

#include "cd_err.h" /* CD_WARN_UNUSED */
#include "cd_supervisor.h"

struct event_base;
typedef struct cd_helper cd_helper;

/* What the module does (on_msg and on_down required). They run in the
 * controller's loop, also from cd_helper_free (on_down of a helper stopped
 * there). */
typedef struct cd_helper_hooks {
    void *arg;
    /* The periodic look (cd_helper_tick; may be NULL without it): whether
     * a run is due, cd_helper_launch if so. */
    void (*on_tick)(void *arg);
    /* A whole message: msg_size bytes, aligned for any type, valid until
     * the hook returns. */
    void (*on_msg)(void *arg, const void *msg);
    /* The helper ended: pid the pid it had, code its exit status or
     * -signal (logged by the supervisor); every whole message it wrote has
     * been through on_msg and its channel end is closed. */
    void (*on_down)(void *arg, pid_t pid, int code);
} cd_helper_hooks;

/* Creates the helper of a module; no row, no process yet.
 * In:  sup       the process table (cd_ctl_sup: borrowed, outlives it)
 *      base      the controller's loop (borrowed, outlives it)
 *      kind      a CD_SUP_ONCE kind (borrowed, static)
 *      arg       handed to kind->main in the child (borrowed: must outlive
 *                the helper; the child sees it as of the fork)
 *      msg_size  the size of every message (> 0)
 *      name      prefixes its log lines, e.g. "index" (borrowed: static)
 *      hooks     copied; hooks->arg must outlive the helper
 * Returns: the helper (cd_helper_free); never NULL (allocation aborts). */
cd_helper *cd_helper_new(cd_supervisor *sup, struct event_base *base, const cd_sup_kind *kind,
                         void *arg, size_t msg_size, const char *name,
                         const cd_helper_hooks *hooks);

/* Calls hooks->on_tick every period_ms from now on, until cd_helper_free
 * (module start; once). */
void cd_helper_tick(cd_helper *h, unsigned period_ms);

/* Returns: 1 once cd_helper_tick was called (the module is on), else 0. */
int cd_helper_ticking(const cd_helper *h);

/* Starts a run: adds the row at the first call, forks the helper.
 * Returns: 0; CD_SUP_EFULL (the process table is full: logged as
 *          "<name>: cannot add the helper: ...", a later call tries again);
 *          CD_SUP_EFORK (logged by the supervisor and as "<name>: cannot
 *          start the helper: ..."); CD_SUP_ERUNNING while a run is not yet
 *          reaped (logged the same; a caller that waits for on_down never
 *          sees it); CD_SUP_ESTOPPING from on_down while cd_helper_free
 *          stops the helper (not logged: the module is ending). */
int cd_helper_launch(cd_helper *h) CD_WARN_UNUSED;

/* Returns: the pid of the running helper, 0 if none. */
pid_t cd_helper_pid(const cd_helper *h);

/* Stops the periodic look and a running helper (SIGTERM, up to timeout_ms,
 * then SIGKILL; on_down runs as it is reaped, and a launch from it is
 * refused), frees its row, closes the channel end and frees the helper.
 * Blocks (module fini). Accepts NULL. */
void cd_helper_free(cd_helper *h, int timeout_ms);

/* ---- in the helper process ---- */

/* Has the kernel SIGKILL this process when the controller dies: a helper
 * outliving its daemon has nobody to report to (its next run's helper
 * takes over, e.g. after waiting on the same advisory lock). */
void cd_helper_die_with_controller(void);

/* Writes one message whole into the channel (retrying an interrupted
 * write). A failure is not reported: the controller is gone or going, and
 * a run without its result is what on_down handles anyway. */
void cd_helper_send(int fd, const void *msg, size_t size);

#endif /* CD_HELPER_H */
