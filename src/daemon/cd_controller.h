/*
 * cd_controller.h - the controller process: one libevent loop owning peer
 * connections, the header tree, the sync scheduler, the ring, dispatch to
 * workers and their supervision (DESIGN.md §2).
 */
#ifndef CD_CONTROLLER_H
#define CD_CONTROLLER_H

#include "daemon/cd_config.h"

/* Runs the daemon until SIGTERM/SIGINT or a fatal error.
 * Returns a process exit code (CD_EXIT_*). */
int cd_controller_run(const cd_config *cfg);

#endif /* CD_CONTROLLER_H */
