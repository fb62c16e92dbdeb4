/*
 * conduit_cli.c - conduit-cli entry point. The program is the cli library
 * (src/cli/: subcommand table in cli_main.c, one file per family).
 */
#include "cli.h"

int main(int argc, char **argv)
{
    return cd_cli_main(argc, argv);
}
