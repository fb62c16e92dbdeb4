/*
 * cd_pg.c - PostgreSQL connection, retry and migrations (the COPY unit and
 * batch writer is cd_pg_copy.c; blocks, tip, completion and purge are
 * cd_pg_blocks.c).
 *
 * Why it exists: the parser workers and conduit-cli talk to PostgreSQL only
 * through this file, so retry, error reporting and the exactly-once rule live
 * in one place. See cd_pg.h for the contract.
 *
 * NOTES
 *  - Connection loss is recognised by PQstatus() == CONNECTION_BAD or an SQL
 *    state of class 08 (connection exception) or 57P01..57P03 (server shutting
 *    down / starting). Any such failure drops the connection and re-runs the
 *    whole operation from BEGIN after a back-off; every operation here is
 *    written to be safe to re-run (marker rows, ON CONFLICT, guarded UPDATEs).
 *  - COPY rows are encoded by cd_pg_unit_add_* as the parser produces them, so
 *    a unit is never materialised twice.
 */
#include "cd_pg.h"
#include "cd_pg_int.h"

#include "btc_merkle.h"
#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* connection                                                          */
/* ------------------------------------------------------------------ */

/* The one builder of a session's libpq parameters (cd_pg_params_init and
 * the handles). */
static void params_init(cd_pg_params *p, const char *conninfo, const cd_pg_session *how)
{
    int k = 0;
    memset(p, 0, sizeof(*p));
    /* connect_timeout and application_name first: with expand_dbname the
     * values of the conninfo given as dbname override them */
    if (how && how->connect_timeout_s) {
        snprintf(p->timeout, sizeof(p->timeout), "%u", how->connect_timeout_s);
        p->keys[k] = "connect_timeout";
        p->vals[k++] = p->timeout;
    }
    if (how && how->application_name) {
        p->keys[k] = "application_name";
        p->vals[k++] = how->application_name;
    }
    p->keys[k] = "dbname";
    p->vals[k++] = conninfo ? conninfo : "";
    p->keys[k] = NULL;
    p->vals[k] = NULL;
}

void cd_pg_params_init(cd_pg_params *p, const cd_config *cfg, const cd_pg_session *how)
{
    params_init(p, cfg->pg_conninfo, how);
}

static PGconn *open_conninfo(const char *conninfo, const cd_pg_session *how)
{
    cd_pg_params p;
    params_init(&p, conninfo, how);
    return PQconnectdbParams(p.keys, p.vals, 1);
}

PGconn *cd_pg_open(const cd_config *cfg, const cd_pg_session *how)
{
    return open_conninfo(cfg->pg_conninfo, how);
}

cd_pg *cd_pg_new(const cd_config *cfg, const cd_pg_session *how)
{
    cd_pg *pg = cd_xcalloc(1, sizeof(*pg));
    pg->conninfo = cd_xstrdup(cfg->pg_conninfo ? cfg->pg_conninfo : "");
    size_t sl = strlen(pg->conninfo) + 4; /* masking adds at most "***" */
    pg->shown = cd_xmalloc(sl);
    cd_config_mask_secret(pg->conninfo, pg->shown, sl);
    if (how) {
        pg->how.connect_timeout_s = how->connect_timeout_s;
        pg->how.application_name = how->application_name ? cd_xstrdup(how->application_name) : NULL;
    }
    pg->max_attempts = 0;
    pg->max_backoff_ms = 5000;
    return pg;
}

void cd_pg_free(cd_pg *pg)
{
    if (!pg)
        return;
    if (pg->conn)
        PQfinish(pg->conn);
    free(pg->conninfo);
    free(pg->shown);
    free((char *)pg->how.application_name);
    free(pg);
}

void cd_pg_set_retry(cd_pg *pg, unsigned max_attempts, unsigned max_backoff_ms,
                     const volatile sig_atomic_t *stop)
{
    pg->max_attempts = max_attempts;
    pg->max_backoff_ms = max_backoff_ms ? max_backoff_ms : 5000;
    pg->stop = stop;
}

void cd_pg_set_bulk(cd_pg *pg, int on)
{
    pg->bulk = on;
}

PGconn *cd_pg_conn(cd_pg *pg)
{
    return pg->conn;
}

static void drop_conn(cd_pg *pg)
{
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    pg->prepared = 0; /* prepared statements live and die with the session */
}

static int stopped(const cd_pg *pg)
{
    return pg->stop && *pg->stop;
}

/* Sleeps ms milliseconds in short slices so a stop flag ends it early. */
static void backoff_sleep(const cd_pg *pg, unsigned ms)
{
    while (ms > 0 && !stopped(pg)) {
        unsigned slice = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)slice * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            if (stopped(pg))
                return;
        ms -= slice;
    }
}

static const char *conn_target(const cd_pg *pg)
{
    return pg->shown[0] ? pg->shown : "(PG* environment defaults)";
}

int cd_pg_connect(cd_pg *pg)
{
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
        return CD_PG_OK;
    drop_conn(pg);
    unsigned delay = 100;
    for (unsigned attempt = 1;; attempt++) {
        if (stopped(pg))
            return CD_PG_EDOWN;
        PGconn *c = open_conninfo(pg->conninfo, &pg->how);
        if (PQstatus(c) == CONNECTION_OK) {
            pg->conn = c;
            PGresult *r = PQexec(c, pg->bulk ? "SET synchronous_commit = off; "
                                               "SET client_min_messages = warning"
                                             : "SET client_min_messages = warning");
            int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            if (!ok) {
                char msg[512];
                snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
                msg[strcspn(msg, "\n")] = 0;
                cd_log_warn("postgres: session setup on %s failed: %s; retrying in %u ms",
                            conn_target(pg), msg, delay);
            }
            PQclear(r);
            if (ok) {
                if (pg->was_down)
                    cd_log_info("postgres: reconnected to %s (db %s)", conn_target(pg), PQdb(c));
                pg->was_down = 0;
                return CD_PG_OK;
            }
            drop_conn(pg);
        } else {
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
            msg[strcspn(msg, "\n")] = 0;
            PQfinish(c);
            if (pg->max_attempts && attempt >= pg->max_attempts) {
                cd_log_error("postgres: cannot connect to %s: %s", conn_target(pg), msg);
                return CD_PG_EDOWN;
            }
            cd_log_warn("postgres: cannot connect to %s: %s; retrying in %u ms (attempt %u)",
                        conn_target(pg), msg, delay, attempt);
        }
        pg->was_down = 1;
        backoff_sleep(pg, delay);
        delay = delay * 2 > pg->max_backoff_ms ? pg->max_backoff_ms : delay * 2;
    }
}

/* Classifies a failed result: RETRY when the connection is gone or the server
 * is going down, CD_PG_ERROR otherwise (logged with `what`). Clears r. */
int cd_pg_fail(cd_pg *pg, PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(pg->conn);
    int lost = PQstatus(pg->conn) == CONNECTION_BAD ||
               (state && (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
                          strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0));
    /* deadlock detected / serialization failure: the server rolled the
     * transaction back; every operation here is safe to run again, so treat
     * it like a lost connection (batches of two parsers can, in principle,
     * wait on each other's uncommitted block registrations) */
    if (!lost && state && (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0)) {
        cd_log_warn("postgres: %s: SQLSTATE %s; will retry", what, state);
        PQclear(r);
        drop_conn(pg);
        return RETRY;
    }
    char m[512];
    snprintf(m, sizeof(m), "%s", msg ? msg : "");
    m[strcspn(m, "\n")] = 0;
    if (lost) {
        cd_log_warn("postgres: connection lost during %s (%s%s%s); will retry", what,
                    state ? "SQLSTATE " : "", state ? state : "", m[0] ? m : "");
        PQclear(r);
        drop_conn(pg);
        pg->was_down = 1;
        return RETRY;
    }
    cd_log_error("postgres: %s failed: SQLSTATE %s: %s", what, state ? state : "?", m);
    PQclear(r);
    return CD_PG_ERROR;
}

/* Result of one statement: 0 with *out set (or r freed when out is NULL),
 * else what fail() makes of it. */
static int q_result(cd_pg *pg, PGresult *r, const char *what, PGresult **out)
{
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return cd_pg_fail(pg, r, what);
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

/* Runs sql (optionally with text/binary params). Returns 0 with *out set (or
 * cleared when out is NULL), RETRY or CD_PG_ERROR. */
int cd_pg_q(cd_pg *pg, const char *what, const char *sql, int n, const char *const *vals,
            const int *lens, const int *fmts, PGresult **out)
{
    PGresult *r =
        n ? PQexecParams(pg->conn, sql, n, NULL, vals, lens, fmts, 0) : PQexec(pg->conn, sql);
    return q_result(pg, r, what, out);
}

/* q() through the prepared statement `id` (prepared on first use on this
 * connection; sql must always be the same text for one id). */
int cd_pg_qp(cd_pg *pg, int id, const char *what, const char *sql, int n, const char *const *vals,
             const int *lens, const int *fmts, PGresult **out)
{
    char name[16];
    snprintf(name, sizeof(name), "cd_ps%d", id);
    if (!(pg->prepared & (1u << id))) {
        PGresult *r = PQprepare(pg->conn, name, sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return cd_pg_fail(pg, r, what);
        PQclear(r);
        pg->prepared |= 1u << id;
    }
    PGresult *r = PQexecPrepared(pg->conn, name, n, vals, lens, fmts, 0);
    return q_result(pg, r, what, out);
}

/* Rolls back after an error; ignores the outcome (the connection may be
 * gone, which the next operation handles). */
void cd_pg_rollback(cd_pg *pg)
{
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
        PQclear(PQexec(pg->conn, "ROLLBACK"));
}

/* Runs op(pg, arg) until it returns something other than RETRY, reconnecting
 * with back-off in between. */
int cd_pg_with_retry(cd_pg *pg, int (*op)(cd_pg *, void *), void *arg)
{
    for (;;) {
        int rc = cd_pg_connect(pg);
        if (rc != CD_PG_OK)
            return rc;
        rc = op(pg, arg);
        if (rc != RETRY)
            return rc;
        if (stopped(pg))
            return CD_PG_EDOWN;
    }
}

struct exec_arg {
    const char *sql;
};

static int exec_op(cd_pg *pg, void *a)
{
    return cd_pg_q(pg, ((struct exec_arg *)a)->sql, ((struct exec_arg *)a)->sql, 0, NULL, NULL,
                   NULL, NULL);
}

int cd_pg_exec(cd_pg *pg, const char *sql)
{
    struct exec_arg a = {sql};
    return cd_pg_with_retry(pg, exec_op, &a);
}

/* ------------------------------------------------------------------ */
/* migrations                                                          */
/* ------------------------------------------------------------------ */

static int read_version(cd_pg *pg, int *out)
{
    PGresult *r = NULL;
    int rc =
        cd_pg_q(pg, "reading cd_schema_version",
                "SELECT coalesce(max(version), 0) FROM cd_schema_version", 0, NULL, NULL, NULL, &r);
    if (rc)
        return rc;
    *out = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

static int migrate_op(cd_pg *pg, void *arg)
{
    (void)arg;
    int rc = cd_pg_q(pg, "taking the migration lock",
                     "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL, NULL, NULL, NULL);
    if (rc)
        return rc;
    rc = cd_pg_q(pg, "creating cd_schema_version",
                 "CREATE TABLE IF NOT EXISTS cd_schema_version ("
                 " version integer PRIMARY KEY, name text NOT NULL,"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 0, NULL, NULL, NULL, NULL);
    int cur = 0;
    if (rc == 0)
        rc = read_version(pg, &cur);
    if (rc == 0 && cur > cd_pg_schema_latest) {
        cd_log_error("postgres: database %s has schema version %d, newer than this "
                     "binary knows (%d); upgrade conduitd or use another database",
                     PQdb(pg->conn), cur, cd_pg_schema_latest);
        rc = CD_PG_ENEWER;
    }
    for (const cd_pg_migration *m = cd_pg_migrations; rc == 0 && m->sql; m++) {
        if (m->version <= cur)
            continue;
        char what[128];
        snprintf(what, sizeof(what), "migration %03d_%s", m->version, m->name);
        rc = cd_pg_q(pg, what, "BEGIN", 0, NULL, NULL, NULL, NULL);
        if (rc == 0)
            rc = cd_pg_q(pg, what, m->sql, 0, NULL, NULL, NULL, NULL);
        if (rc == 0) {
            char v[16];
            snprintf(v, sizeof(v), "%d", m->version);
            const char *vals[2] = {v, m->name};
            rc = cd_pg_q(pg, what, "INSERT INTO cd_schema_version (version, name) VALUES ($1, $2)",
                         2, vals, NULL, NULL, NULL);
        }
        if (rc == 0)
            rc = cd_pg_q(pg, what, "COMMIT", 0, NULL, NULL, NULL, NULL);
        if (rc == 0)
            cd_log_info("postgres: applied %s", what);
        else
            cd_pg_rollback(pg);
    }
    if (rc != RETRY && pg->conn)
        PQclear(PQexec(pg->conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
    return rc;
}

int cd_pg_migrate(cd_pg *pg)
{
    return cd_pg_with_retry(pg, migrate_op, NULL);
}

static int version_op(cd_pg *pg, void *arg)
{
    PGresult *r = NULL;
    int rc =
        cd_pg_q(pg, "checking for cd_schema_version",
                "SELECT to_regclass('cd_schema_version') IS NOT NULL", 0, NULL, NULL, NULL, &r);
    if (rc)
        return rc;
    int exists = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    *(int *)arg = 0;
    return exists ? read_version(pg, arg) : 0;
}

int cd_pg_schema_version(cd_pg *pg, int *out)
{
    return cd_pg_with_retry(pg, version_op, out);
}

/* ---- reading results ---- */

int64_t cd_pg_col_int(const PGresult *r, int row, int col)
{
    const uint8_t *v = (const uint8_t *)PQgetvalue(r, row, col);
    if (PQgetisnull(r, row, col))
        return 0;
    switch (PQgetlength(r, row, col)) {
    case 2:
        return (int16_t)(v[0] << 8 | v[1]);
    case 4:
        return (int32_t)cd_be32(v);
    case 8:
        return (int64_t)cd_be64(v);
    default:
        return 0;
    }
}

int cd_pg_col_bytes(const PGresult *r, int row, int col, uint8_t *out, int len)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != len)
        return -1;
    memcpy(out, PQgetvalue(r, row, col), (size_t)len);
    return 0;
}

void cd_pg_errline(char *err, size_t errlen, const char *what, PGconn *conn,
                   const PGresult *r)
{
    const char *m = r ? PQresultErrorMessage(r) : "";
    if (!m || !*m)
        m = PQerrorMessage(conn);
    snprintf(err, errlen, "%s: %s", what, m);
    for (char *p = err; *p; p++) /* one line */
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
}
