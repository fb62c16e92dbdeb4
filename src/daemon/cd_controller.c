/*
 * cd_controller.c - placeholder until the controller lands.
 */
#include "daemon/cd_controller.h"

int cd_controller_run(const cd_config *cfg)
{
    cd_log_error("controller not implemented yet (network %s)", cfg->net->name);
    return CD_EXIT_FAILURE;
}
