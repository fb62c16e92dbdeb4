/*
 * cli.h - conduit-cli subcommand registry.
 *
 * Each family of subcommands lives in its own cli_<family>.c and exports
 * functions of type cd_cli_fn; cli_main.c lists them in one table.
 * A subcommand returns the process exit code (0 ok, 1 failure, 2 usage).
 */
#ifndef CD_CLI_H
#define CD_CLI_H

typedef int (*cd_cli_fn)(int argc, char **argv);

typedef struct cd_cli_cmd {
    const char *name;
    cd_cli_fn fn;
    const char *usage;   /* one line: arguments */
    const char *help;    /* one line: what it does */
} cd_cli_cmd;

#endif /* CD_CLI_H */
