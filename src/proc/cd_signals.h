/*
 * cd_signals.h - SIGTERM/SIGINT/SIGHUP handling for a libevent loop.
 *
 * Signals are delivered through libevent's evsignal events, so the callbacks
 * below run inside the loop, never in a signal handler (STYLE.md C7).
 *
 *   SIGTERM, SIGINT  -> on_stop(arg). A second SIGINT/SIGTERM while stopping
 *                       calls on_stop again (the controller may escalate).
 *   SIGHUP           -> cd_config_reload(cfg) (re-reads the config file,
 *                       applies reloadable options, reopens the log file),
 *                       then on_reload(arg) if not NULL so the owner can act
 *                       on changed values.
 *   SIGPIPE          -> ignored (process-wide, set by cd_signals_install).
 *
 * Usage (controller):
 *     cd_signals *sig = cd_signals_install(base, cfg, on_stop, on_reload, ctl);
 *     event_base_dispatch(base);
 *     cd_signals_free(sig);       // before event_base_free(base)
 *
 * NOTES
 *  - cfg is the object main.c created; reload modifies its reloadable fields
 *    in place (it is declared const for readers; main owns it mutable).
 *  - Install in the process that runs the loop; a forked worker that wants
 *    SIGTERM handling installs its own on its own event_base (pass cfg=NULL
 *    to ignore SIGHUP there).
 */
#ifndef CD_SIGNALS_H
#define CD_SIGNALS_H

#include "cd_config.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

struct event_base;

typedef struct cd_signals cd_signals;

typedef void (*cd_signals_fn)(void *arg);

/* Installs the signal events on `base`.
 * Returns a handle (free with cd_signals_free), or NULL if libevent failed
 * (logged). on_stop must not be NULL; on_reload may be NULL; cfg may be NULL
 * (SIGHUP then only reopens the log file). base, cfg and arg are borrowed
 * and must outlive the handle; cfg is modified by SIGHUP's reload. */
cd_signals *cd_signals_install(struct event_base *base, const cd_config *cfg, cd_signals_fn on_stop,
                               cd_signals_fn on_reload, void *arg) CD_WARN_UNUSED;

/* Returns: the number of SIGTERM/SIGINT received so far. */
unsigned cd_signals_stop_count(const cd_signals *s);

/* Removes the events and frees the handle. NULL-safe. */
void cd_signals_free(cd_signals *s);

/* For a freshly forked child: restores default dispositions of the signals
 * above (SIGPIPE stays ignored) and unblocks them. */
void cd_signals_reset_after_fork(void);

/* A supervised child's way out of its event loop (the HTTP servers, the
 * metrics server, the webhook delivery): the loop breaks when the
 * controller's end of the child's channel closes (the controller is gone:
 * EOF or an error on chan_fd, logged as "<who>: controller gone; exiting")
 * or when SIGTERM arrives. SIGTERM comes through a signalfd, not an
 * evsignal: the child inherited the controller's event_base, which keeps
 * libevent's signal handling (one signal-handling base per process). Without
 * a signalfd SIGTERM keeps its default action.
 * Returns a handle (free with cd_child_exit_free before event_base_free), or
 * NULL when libevent failed (logged). chan_fd is made non-blocking and stays
 * the caller's to close; who is borrowed. */
typedef struct cd_child_exit cd_child_exit;
cd_child_exit *cd_child_exit_install(struct event_base *base, int chan_fd,
                                     const char *who) CD_WARN_UNUSED;

/* Removes the events, closes the signalfd, frees the handle. NULL-safe. */
void cd_child_exit_free(cd_child_exit *x);

#endif /* CD_SIGNALS_H */
