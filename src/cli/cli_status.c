/*
 * cli_status.c - `conduit-cli status`: how is the daemon doing?
 *
 * Reads <datadir>/status (written atomically by the daemon every
 * status_interval seconds) and checks whether the recorded pid is alive.
 * It never talks to the daemon, so it cannot disturb or block it. The data
 * directory is found exactly as conduitd finds it (same option parser:
 * --datadir, --conf, --regtest/--testnet/--stn).
 */
#include "cd_config.h"
#include "cd_status.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cd_cli_status(int argc, char **argv);

/* --watch: a line per status update (what an operator leaves open during an
 * initial sync). Returns 1 once the daemon is no longer running. */
static int watch_status(const char *datadir)
{
    int64_t last = -1;
    for (;;) {
        cd_status st;
        if (cd_status_read(datadir, &st) < 0) {
            fprintf(stderr, "conduit-cli status: cannot read %s/%s: %s\n", datadir, CD_STATUS_FILE,
                    strerror(errno));
            return 1;
        }
        int alive = cd_status_pid_alive(&st) && strcmp(st.state, "stopped") != 0;
        if (st.updated_at != last || !alive) {
            char line[512], ts[32];
            time_t t = (time_t)st.updated_at;
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(ts, sizeof(ts), "%H:%M:%SZ", &tm);
            cd_status_format_line(&st, line, sizeof(line));
            printf("%s %s%s\n", ts, line, alive ? "" : " (daemon not running)");
            fflush(stdout);
            last = st.updated_at;
        }
        if (!alive)
            return 1;
        struct timespec nap = {0, 250 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
}

int cd_cli_status(int argc, char **argv)
{
    int json = 0, watch = 0;
    char **args = calloc((size_t)argc + 1, sizeof(char *));
    if (args == NULL)
        return 1;
    int n = 0;
    args[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--watch") == 0)
            watch = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: conduit-cli status [--datadir DIR | --regtest | --testnet | --stn]"
                   " [--conf FILE] [--json | --watch]\n"
                   "Shows the daemon's progress from DIR/status and whether it is running.\n"
                   "--watch prints one progress line per status update until the daemon\n"
                   "stops (or Ctrl-C).\n"
                   "Exit status: 0 running, 1 not running or no status, 2 usage.\n");
            free(args);
            return 0;
        } else
            args[n++] = argv[i];
    }
    cd_config cfg;
    char err[1024];
    cd_config_action a =
        cd_config_parse_args(&cfg, "conduit-cli status", n, args, err, sizeof(err));
    free(args);
    if (a == CD_CONFIG_ERROR) {
        fprintf(stderr, "conduit-cli status: %s\n", err);
        return 2;
    }
    if (a != CD_CONFIG_RUN) {
        cd_config_free(&cfg);
        return 0;
    }
    if (watch) {
        int rc = watch_status(cfg.datadir);
        cd_config_free(&cfg);
        return rc;
    }
    cd_status st;
    int rc = 0;
    if (cd_status_read(cfg.datadir, &st) < 0) {
        if (errno == ENOENT)
            fprintf(stderr,
                    "conduit-cli status: no status file %s/%s (conduitd has not run with this "
                    "data directory)\n",
                    cfg.datadir, CD_STATUS_FILE);
        else
            fprintf(stderr, "conduit-cli status: cannot read %s/%s: %s\n", cfg.datadir,
                    CD_STATUS_FILE, strerror(errno));
        cd_config_free(&cfg);
        return 1;
    }
    int alive = cd_status_pid_alive(&st);
    if (alive && strcmp(st.state, "stopped") == 0)
        alive = 0; /* pid reused by an unrelated process */
    if (json) {
        char *text = cd_status_json(&st, alive, (int64_t)time(NULL));
        if (!text) {
            fprintf(stderr, "conduit-cli status: cannot format %s/%s as JSON\n", cfg.datadir,
                    CD_STATUS_FILE);
            cd_config_free(&cfg);
            return 1;
        }
        fputs(text, stdout);
        free(text);
    } else {
        cd_status_print(stdout, &st, alive);
    }
    rc = alive ? 0 : 1;
    cd_config_free(&cfg);
    return rc;
}
