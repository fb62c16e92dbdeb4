/*
 * cd_controller.h - the controller process: one libevent loop owning peer
 * connections, the header tree, the sync scheduler, the ring, dispatch to
 * workers and their supervision (DESIGN.md §2).
 */
#ifndef CD_CONTROLLER_H
#define CD_CONTROLLER_H

#include "cd_config.h"
#include "cd_ctl.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

/* Runs the daemon until SIGTERM/SIGINT or a fatal error.
 * In:  cfg      the configuration (borrowed for the whole run)
 *      modules  NULL-terminated list of the controller modules, in the order
 *               of their init() and start() calls (fini() in reverse); borrowed
 * Returns: a process exit code (CD_EXIT_*). */
int cd_controller_run(const cd_config *cfg, const cd_ctl_module *const *modules) CD_WARN_UNUSED;

#endif /* CD_CONTROLLER_H */
