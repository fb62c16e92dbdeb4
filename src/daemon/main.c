/*
 * main.c - conduitd entry point: command line + config file -> checks ->
 * controller, with the list of the controller's modules (the controller
 * itself includes no module's header).
 *
 * Everything that can be wrong with the configuration is found here, before
 * any process is forked or any store is opened: bad options (file:line and
 * the offending text), an unusable data directory, an unreachable PostgreSQL
 * server, a second daemon on the same data directory, an http_listen address
 * that cannot be bound. Each prints one line
 * "conduitd: <problem>" to stderr and exits with CD_EXIT_CONFIG (2), which
 * systemd's RestartPreventExitStatus=2 treats as "do not restart".
 *
 * main() opens no long-lived handles: the PostgreSQL check is a PQping plus
 * one login closed right away (a wrong role or database is a configuration
 * error, not something to retry), and workers open their own connections
 * after fork (STYLE.md C9).
 */
#include "cd_escape.h"
#include "cd_blocksync.h"
#include "cd_catchup.h"
#include "cd_merge.h"
#include "cd_keyrows.h"
#include "cd_config.h"
#include "cd_controller.h"
#include "cd_http.h"
#include "cd_http_hooks.h"
#include "cd_mempool.h"
#include "cd_notify.h"
#include "cd_pg.h"
#include "cd_ring.h"
#include "cd_status.h"

#include "cd_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cd_build.h"

#define PROG "conduitd"

/* Modules attached to the controller (cd_ctl.h), in init/start order. */
static const cd_ctl_module *const modules[] = {
    &cd_pipeline_module, /* cd_blocksync.h: ring, workers, block download */
    &cd_mempool_module,  /* cd_mempool.h: reorgs in PostgreSQL, mempool index */
    &cd_catchup_module,  /* cd_catchup.h: secondary indexes off while far behind */
    &cd_merge_module,    /* cd_merge.h: closed partitions merged in levels */
    &cd_keyrows_module,  /* cd_keyrows.h: per-key rows for history / UTXO pages */
    &cd_http_module,     /* cd_http.h: the HTTP API server child (http_listen) */
    &cd_hook_module,     /* cd_http_hooks.h: the webhook delivery child */
    NULL,
};

static void die_config(const char *msg)
{
    fprintf(stderr, PROG ": %s\n", msg);
    fflush(stderr);
}

/* Describes which server a conninfo points at, without any password. */
static void pg_target(const char *conninfo, char *buf, size_t len)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
    const char *host = getenv("PGHOST"), *port = getenv("PGPORT"), *db = getenv("PGDATABASE");
    if (opts != NULL) {
        for (PQconninfoOption *o = opts; o->keyword; o++) {
            if (o->val == NULL || o->val[0] == '\0')
                continue;
            if (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0)
                host = o->val;
            else if (strcmp(o->keyword, "port") == 0)
                port = o->val;
            else if (strcmp(o->keyword, "dbname") == 0)
                db = o->val;
        }
    }
    snprintf(buf, len, "host=%s port=%s dbname=%s", host ? host : "(default socket)",
             port ? port : "5432", db ? db : "(default)");
    PQconninfoFree(opts);
    PQfreemem(errmsg);
}

/* Returns 0 if a server answers and lets cfg's role log in to its database,
 * else -1 with a one-line reason (the server's own message). */
/* The session logged in; can it write? A read-only database (a hot
 * standby, default_transaction_read_only = on) or a role without the
 * writer's grants (an application's conduit_reader login) would otherwise
 * start the daemon and leave every worker retrying a failing INSERT
 * forever (issue 17). Returns 0, or -1 with err. */
static int check_pg_writable(PGconn *c, const char *target, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, "SELECT current_setting('transaction_read_only'), "
                            "pg_is_in_recovery(), current_user, "
                            "to_regclass('blocks') IS NOT NULL, "
                            "has_schema_privilege(current_schema(), 'CREATE'), "
                            "CASE WHEN to_regclass('blocks') IS NOT NULL THEN "
                            "has_table_privilege('blocks', 'INSERT') END");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        /* not a verdict on the database: the workers report what fails */
        PQclear(r);
        return 0;
    }
    const char *ro = PQgetvalue(r, 0, 0);
    char user[256]; /* a role name is the server's text: escaped for the log line */
    cd_escape(user, sizeof(user), PQgetvalue(r, 0, 2), strlen(PQgetvalue(r, 0, 2)));
    int standby = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    int schema = strcmp(PQgetvalue(r, 0, 3), "t") == 0;
    int can_create = strcmp(PQgetvalue(r, 0, 4), "t") == 0;
    int can_insert = strcmp(PQgetvalue(r, 0, 5), "t") == 0;
    int rc = -1;
    if (standby)
        snprintf(err, errlen,
                 "PostgreSQL (%s) is a read-only hot standby: conduitd writes its index, so "
                 "point pg_conninfo at the primary",
                 target);
    else if (strcmp(ro, "on") == 0)
        snprintf(err, errlen,
                 "PostgreSQL (%s): the session is read-only (default_transaction_read_only = "
                 "on for the database or role %s): conduitd writes its index; turn it off for "
                 "the writer role (ALTER ROLE ... SET default_transaction_read_only = off)",
                 target, user);
    else if (schema && !can_insert)
        snprintf(err, errlen,
                 "PostgreSQL (%s): role %s cannot write the index (no INSERT on table blocks): "
                 "pg_conninfo must name the writer role (conduit_writer in sql/roles.sql; "
                 "docs/OPERATIONS.md, \"PostgreSQL roles\")",
                 target, user);
    else if (!schema && !can_create)
        snprintf(err, errlen,
                 "PostgreSQL (%s): role %s cannot create the schema (no CREATE on the schema): "
                 "run sql/roles.sql as a superuser and name conduit_writer in pg_conninfo "
                 "(docs/OPERATIONS.md, \"PostgreSQL roles\")",
                 target, user);
    else
        rc = 0;
    PQclear(r);
    return rc;
}

static int check_postgres(const cd_config *cfg, char *err, size_t errlen)
{
    char target[512];
    char *perr = NULL;
    if (cfg->pg_conninfo[0] != '\0') {
        PQconninfoOption *opts = PQconninfoParse(cfg->pg_conninfo, &perr);
        if (opts == NULL) {
            char *nl;
            while (perr && (nl = strchr(perr, '\n')) != NULL)
                *nl = nl[1] ? ' ' : '\0';
            char shown[512];
            cd_config_mask_secret(cfg->pg_conninfo, shown, sizeof(shown));
            snprintf(err, errlen, "pg_conninfo: %.400s: '%s'", perr ? perr : "invalid", shown);
            PQfreemem(perr);
            return -1;
        }
        PQconninfoFree(opts);
    }
    pg_target(cfg->pg_conninfo, target, sizeof(target));
    /* an explicit connect_timeout in the conninfo wins over this one */
    const cd_pg_session how = {10, NULL};
    cd_pg_params prm;
    cd_pg_params_init(&prm, cfg, &how);
    PGPing p = PQpingParams(prm.keys, prm.vals, 1);
    /* A ping only says a server answers: a wrong role, database or password
     * passes it, and every worker would then retry its connection forever.
     * So also log in for real, with a session closed right away. */
    char reason[512] = "no response";
    if (p == PQPING_REJECT)
        snprintf(reason, sizeof(reason),
                 "server rejects connections (starting up or shutting down?)");
    PGconn *c = cd_pg_open(cfg, &how);
    if (c != NULL && PQstatus(c) == CONNECTION_OK) {
        int rc = check_pg_writable(c, target, err, errlen);
        PQfinish(c);
        return rc;
    }
    if (c != NULL) {
        snprintf(reason, sizeof(reason), "%s", PQerrorMessage(c));
        /* one line: newlines/tabs to single spaces */
        char *w = reason;
        for (char *q = reason; *q; q++) {
            char ch = (*q == '\n' || *q == '\t') ? ' ' : *q;
            if (ch == ' ' && (w == reason || w[-1] == ' '))
                continue;
            *w++ = ch;
        }
        while (w > reason && w[-1] == ' ')
            w--;
        *w = '\0';
    }
    if (p == PQPING_OK) {
        PQfinish(c);
        snprintf(err, errlen,
                 "PostgreSQL (%s) refuses the login: %s (check the role, database and password "
                 "in pg_conninfo or PG* variables; docs/OPERATIONS.md, \"PostgreSQL roles\")",
                 target, reason);
        return -1;
    }
    PQfinish(c);
    snprintf(err, errlen,
             "PostgreSQL not reachable (%s): %s (set pg_conninfo or PG* variables, or index = off)",
             target, reason);
    return -1;
}

/* Returns 0 if the block ring fits in /dev/shm, else -1 with err naming
 * the numbers (a ring larger than the tmpfs is accepted by ftruncate and
 * fails much later, page by page). */
static int check_ring_space(const cd_config *cfg, char *err, size_t errlen)
{
    char name[CD_RING_NAME_MAX];
    uint64_t need = 0, avail = 0;
    if (cd_ring_name_for(cfg->datadir, name) != 0)
        return 0; /* the datadir was checked: cd_ring_create reports it */
    if (cd_ring_check_space(name, cfg->ring_size, &need, &avail) == 0)
        return 0;
    char want[64];
    cd_config_format_value(cfg, cd_config_find("ring_size"), want, sizeof(want));
    if (errno != ENOSPC) {
        snprintf(err, errlen, "ring_size %s: cannot examine %s: %s", want, CD_RING_SHM_DIR,
                 strerror(errno));
        return -1;
    }
    snprintf(err, errlen,
             "ring_size %s does not fit in %s: the ring needs %" PRIu64
             " bytes (%.1f MiB), %" PRIu64
             " bytes (%.1f MiB) are free there (lower ring_size, or enlarge %s: "
             "mount -o remount,size=..., docker --shm-size)",
             want, CD_RING_SHM_DIR, need, (double)need / 1048576.0, avail,
             (double)avail / 1048576.0, CD_RING_SHM_DIR);
    return -1;
}

/* Holds an exclusive POSIX record lock on <datadir>/conduitd.lock for the
 * life of the process. POSIX locks are not inherited across fork(), so a
 * worker left behind by a crashed controller never keeps a restart out; and
 * the kernel drops the lock when the process dies, so there is nothing stale
 * to clean up. Returns the fd or -1 with err. */
static int lock_datadir(const cd_config *cfg, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/conduitd.lock", cfg->datadir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "data directory %s: cannot open lock file conduitd.lock: %s",
                 cfg->datadir, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &fl) < 0) {
        int e = errno;
        struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if ((e == EACCES || e == EAGAIN) && fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK)
            snprintf(err, errlen, "data directory %s is in use by another conduitd (pid %ld)",
                     cfg->datadir, (long)who.l_pid);
        else
            snprintf(err, errlen, "data directory %s: cannot lock conduitd.lock: %s", cfg->datadir,
                     strerror(e));
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        snprintf(err, errlen, "data directory %s: cannot write lock file: %s", cfg->datadir,
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* A configuration error found once the data directory is locked (and the
 * log file open): also logged there, since the operator may only read that. */
static int locked_config_error(cd_config *cfg, int lock_fd, const char *err)
{
    die_config(err);
    if (cfg->log_file != NULL)
        cd_log_error("%s", err);
    close(lock_fd);
    cd_config_free(cfg);
    return CD_EXIT_CONFIG;
}

int main(int argc, char **argv)
{
    cd_config cfg;
    char err[1024];

    cd_log_set_component(PROG);
    signal(SIGPIPE, SIG_IGN);

    switch (cd_config_parse_args(&cfg, PROG, argc, argv, err, sizeof(err))) {
    case CD_CONFIG_RUN:
        /* a password given as a flag leaves /proc/PID/cmdline (readable by
         * every local user) before any worker is forked */
        cd_config_scrub_argv(argc, argv);
        break;
    case CD_CONFIG_HELP:
    case CD_CONFIG_VERSION:
        cd_config_free(&cfg);
        return fflush(stdout) == 0 ? CD_EXIT_OK : CD_EXIT_FAILURE;
    case CD_CONFIG_ERROR:
    default:
        die_config(err);
        return CD_EXIT_CONFIG;
    }

    cd_log_set_level(cfg.log_level);
    if (cd_config_check_datadir(&cfg, err, sizeof(err)) < 0) {
        die_config(err);
        cd_config_free(&cfg);
        return CD_EXIT_CONFIG;
    }
    if (cfg.log_file != NULL && cd_log_open(cfg.log_file) < 0) {
        snprintf(err, sizeof(err), "log_file %s: %s", cfg.log_file, strerror(errno));
        die_config(err);
        cd_config_free(&cfg);
        return CD_EXIT_CONFIG;
    }
    int lock_fd = lock_datadir(&cfg, err, sizeof(err));
    if (lock_fd < 0) {
        die_config(err);
        cd_config_free(&cfg);
        return CD_EXIT_CONFIG;
    }
    if (cfg.index && check_postgres(&cfg, err, sizeof(err)) < 0)
        return locked_config_error(&cfg, lock_fd, err);
    if (check_ring_space(&cfg, err, sizeof(err)) < 0)
        return locked_config_error(&cfg, lock_fd, err);

    /* bound here, before anything is forked: a bad address or a port in use
     * is a configuration error like the others */
    int http_fd = -1;
    if (cfg.http_listen[0] != '\0') {
        http_fd = cd_http_listen_open(cfg.http_listen, err, sizeof(err));
        if (http_fd < 0)
            return locked_config_error(&cfg, lock_fd, err);
    }
    cd_http_set_listener(http_fd);
    if (cfg.metrics_listen[0] != '\0') {
        int metrics_fd = cd_http_metrics_listen_open(cfg.metrics_listen, err, sizeof(err));
        if (metrics_fd < 0) {
            if (http_fd >= 0)
                close(http_fd);
            return locked_config_error(&cfg, lock_fd, err);
        }
        cd_http_set_metrics_listener(metrics_fd);
    }

    cd_notify_init();
    cd_log_info("conduitd %s starting: network %s, datadir %s, %s%s", CD_VERSION, cfg.net->name,
                cfg.datadir, cfg.index ? "indexing into PostgreSQL" : "index off",
                cfg.conf_file ? "" : ", no config file");
    if (cfg.conf_file)
        cd_log_info("config file %s", cfg.conf_file);

    cd_status st;
    cd_status_init(&st, &cfg);
    if (cd_status_write(cfg.datadir, &st) < 0)
        cd_log_warn("cannot write status file %s/%s: %s", cfg.datadir, CD_STATUS_FILE,
                    strerror(errno));

    int rc = cd_controller_run(&cfg, modules);

    /* Keep the last figures the controller published; mark them stopped. */
    cd_status last;
    if (cd_status_read(cfg.datadir, &last) == 0 && last.pid == st.pid)
        st = last;
    snprintf(st.state, sizeof(st.state), "stopped");
    st.peers = 0;
    st.workers_alive = 0;
    /* best effort on the way out: a stale status file says "not running"
     * anyway once the pid is gone */
    CD_IGNORE(cd_status_write(cfg.datadir, &st));

    cd_log_info("conduitd exiting with status %d", rc);
    close(lock_fd);
    cd_config_free(&cfg);
    return rc;
}
