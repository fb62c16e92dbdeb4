/*
 * cli.h - conduit-cli as a library: its entry function and the subcommand
 * registry.
 *
 * Each family of subcommands lives in its own cli_<family>.c and exports
 * functions of type cd_cli_fn; cli_main.c lists them in one table.
 * A subcommand returns the process exit code (0 ok, 1 failure, 2 usage).
 */
#ifndef CD_CLI_H
#define CD_CLI_H

#include "cd_err.h" /* CD_WARN_UNUSED */

/* Runs conduit-cli with the program's arguments (argv[0] is the program,
 * argv[1] the subcommand). Returns the process exit code. */
int cd_cli_main(int argc, char **argv) CD_WARN_UNUSED;

typedef int (*cd_cli_fn)(int argc, char **argv);

typedef struct cd_cli_cmd {
    const char *name;
    cd_cli_fn fn;
    const char *usage; /* one line: arguments */
    const char *help;  /* one line: what it does */
} cd_cli_cmd;

/* Every subcommand, ending with a NULL name (cli_main.c; the man page
 * conduit-cli(1) is written from it: cli_man.c). */
extern const cd_cli_cmd cd_cli_commands[];

struct cd_config;

/*
 * Parses the daemon options a subcommand shares with conduitd (--datadir,
 * --regtest/--testnet/--stn, --conf, --pg-conninfo, ...) from argv[0..n) into
 * cfg, through the daemon's own option table, so a subcommand finds the data
 * directory and database exactly as the daemon does.
 * Returns: 0 (cfg filled; free with cd_config_free), 2 (error, printed as
 * "conduit-cli <cmd>: ..."), or 3 (--help/--version was printed; cfg freed).
 */
int cd_cli_parse_config(const char *cmd, struct cd_config *cfg, int n, char **argv) CD_WARN_UNUSED;

#endif /* CD_CLI_H */
