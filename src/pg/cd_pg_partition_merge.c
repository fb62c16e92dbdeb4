/*
 * cd_pg_partition_merge.c - merging closed height-range partitions in
 * levels (sql/019_partition_merge.sql): the candidate, the copy (prepare),
 * the swap, the figures. See cd_pg.h.
 *
 * Why the work is SQL and this file only frames it: each phase must be one
 * transaction (a killed daemon leaves the server a transaction to roll
 * back, never half a swap), and the prepare's copy and fingerprint must
 * share one snapshot, which only the caller can ask for (REPEATABLE READ
 * is chosen before the first statement of a transaction, not inside a
 * function).
 */
#include "cd_pg.h"
#include "cd_pg_int.h"

#include "cd_log.h"
#include "cd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SQLSTATE lock_not_available: the swap's lock_timeout expired */
#define MERGE_LOCK_TIMEOUT "55P03"

/* Runs a command on this session only: never cd_pg_exec's reconnecting
 * retry, which would run a COMMIT on a new session (where it succeeds with
 * a warning, having committed nothing). Returns: CD_PG_OK or CD_PG_ERROR
 * (logged as what). */
static int command(cd_pg *pg, const char *what, const char *sql)
{
    PGconn *c = cd_pg_conn(pg);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        char err[256];
        cd_pg_errline(err, sizeof(err), what, c, r);
        cd_log_error("postgres: %s", err);
    }
    PQclear(r);
    return ok ? CD_PG_OK : CD_PG_ERROR;
}

/* Runs sql (no parameters but fan_in's text, may be NULL) expecting one
 * row. Returns the result (caller clears) or NULL (logged as what). */
static PGresult *one_row(cd_pg *pg, const char *what, const char *sql, const char *param)
{
    PGconn *c = cd_pg_conn(pg);
    const char *vals[1] = {param};
    PGresult *r = PQexecParams(c, sql, param ? 1 : 0, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) <= 1)
        return r;
    char err[256];
    cd_pg_errline(err, sizeof(err), what, c, r);
    cd_log_error("postgres: %s", err);
    PQclear(r);
    return NULL;
}

int cd_pg_partition_merge_candidate(cd_pg *pg, int fan_in, int *level, int *sources)
{
    *level = -1;
    *sources = 0;
    char f[16];
    snprintf(f, sizeof(f), "%d", fan_in);
    PGresult *r = one_row(pg, "looking for partitions to merge",
                          "SELECT level, n_sources FROM cd_partition_merge_candidate($1::int)", f);
    if (!r)
        return CD_PG_ERROR;
    if (PQntuples(r) == 1) {
        *level = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
        *sources = (int)strtol(PQgetvalue(r, 0, 1), NULL, 10);
    }
    PQclear(r);
    return CD_PG_OK;
}

int cd_pg_partition_relevel(cd_pg *pg, int fan_in, int64_t unit_txs)
{
    char f[16], u[24];
    snprintf(f, sizeof(f), "%d", fan_in);
    snprintf(u, sizeof(u), "%lld", (long long)unit_txs);
    const char *vals[2] = {f, u};
    PGresult *r = NULL;
    /* one statement: its own transaction (failures logged by cd_pg_q) */
    if (cd_pg_q(pg, "relevelling partitions by size",
                "SELECT part, txs, old_level, new_level "
                "FROM cd_partition_relevel($1::int, $2::bigint)",
                2, vals, NULL, NULL, &r) != 0)
        return CD_PG_ERROR;
    for (int i = 0; i < PQntuples(r); i++)
        cd_log_info("partition-merge: %s holds %s txs, as many as a partition of level %s "
                    "(partition_txs %lld, partition_merge %d): level raised from %s, so that it "
                    "merges with partitions of its size (an index from before partitioning, or "
                    "partition_txs lowered since)",
                    PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 3),
                    (long long)unit_txs, fan_in, PQgetvalue(r, i, 2));
    PQclear(r);
    return CD_PG_OK;
}

/* ANALYZEs the staging tables: a new table has no statistics, and lookups
 * planned on guesses were 2-5x slower (docs/PERFORMANCE.md "Partitions
 * need statistics"); pg_statistic follows the table through the swap's
 * rename. A failure only costs plan quality (autovacuum comes later):
 * logged, not returned. */
static void analyze_staging(cd_pg *pg)
{
    PGconn *c = cd_pg_conn(pg);
    PGresult *r = PQexec(c, "SELECT quote_ident(stage) FROM partition_merge ORDER BY 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char err[256];
        cd_pg_errline(err, sizeof(err), "listing the staging tables", c, r);
        cd_log_warn("postgres: %s", err);
        PQclear(r);
        return;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        char sql[160];
        snprintf(sql, sizeof(sql), "ANALYZE %s", PQgetvalue(r, i, 0));
        PGresult *a = PQexec(c, sql);
        if (PQresultStatus(a) != PGRES_COMMAND_OK) {
            char err[256];
            cd_pg_errline(err, sizeof(err), "analysing a staging table", c, a);
            cd_log_warn("postgres: %s", err);
        }
        PQclear(a);
    }
    PQclear(r);
}

int cd_pg_partition_merge_prepare(cd_pg *pg, int fan_in, int *level, double *secs)
{
    *level = -1;
    if (secs)
        *secs = 0;
    PGconn *c = cd_pg_conn(pg);
    double t0 = cd_now_s();
    if (command(pg, "starting a merge's copy", "BEGIN ISOLATION LEVEL REPEATABLE READ") != CD_PG_OK)
        return CD_PG_ERROR;
    char f[16];
    snprintf(f, sizeof(f), "%d", fan_in);
    PGresult *r =
        one_row(pg, "copying partitions to merge", "SELECT cd_partition_merge_prepare($1::int)", f);
    int rc = r && PQntuples(r) == 1 ? CD_PG_OK : CD_PG_ERROR;
    if (rc == CD_PG_OK && !PQgetisnull(r, 0, 0))
        *level = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (rc == CD_PG_OK)
        rc = command(pg, "committing a merge's copy", "COMMIT");
    if (rc != CD_PG_OK) {
        *level = -1;
        PGresult *x = PQexec(c, "ROLLBACK"); /* best effort: the session may be gone */
        PQclear(x);
        return rc;
    }
    if (secs)
        *secs = cd_now_s() - t0;
    if (*level >= 0)
        analyze_staging(pg);
    return CD_PG_OK;
}

void cd_pg_partition_merge_drop_old(cd_pg *pg)
{
    PGconn *c = cd_pg_conn(pg);
    PGresult *d = PQexec(c, "SELECT cd_partition_merge_drop_old()");
    if (PQresultStatus(d) != PGRES_TUPLES_OK) {
        char err[256];
        cd_pg_errline(err, sizeof(err), "dropping the merged partitions' old tables", c, d);
        cd_log_warn("postgres: %s", err);
    } else if (PQntuples(d) == 1 && strcmp(PQgetvalue(d, 0, 0), "0") != 0) {
        cd_log_info("postgres: dropped %s tables of partitions merged earlier",
                    PQgetvalue(d, 0, 0));
    }
    PQclear(d);
}

int cd_pg_partition_merge_discard(cd_pg *pg, int *tables)
{
    *tables = 0;
    PGresult *r = one_row(pg, "dropping a prepared merge", "SELECT cd_partition_merge_discard()",
                          NULL);
    if (!r)
        return CD_PG_ERROR;
    if (PQntuples(r) == 1)
        *tables = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return CD_PG_OK;
}

int cd_pg_partition_merge_swap(cd_pg *pg, cd_pg_merge_outcome *outcome, double *secs)
{
    *outcome = CD_PG_MERGE_NONE;
    if (secs)
        *secs = 0;
    PGconn *c = cd_pg_conn(pg);
    double t0 = cd_now_s();
    /* one statement outside a transaction block: its own transaction */
    PGresult *r = PQexec(c, "SELECT cd_partition_merge_swap()");
    if (secs)
        *secs = cd_now_s() - t0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        char err[512];
        cd_pg_errline(err, sizeof(err), "swapping merged partitions in", c, r);
        if (state && strcmp(state, MERGE_LOCK_TIMEOUT) == 0) {
            PQclear(r);
            *outcome = CD_PG_MERGE_BUSY;
            cd_log_debug("postgres: %s", err); /* names the statement that waited */
            return CD_PG_OK;
        }
        cd_log_error("postgres: %s", err);
        PQclear(r);
        return CD_PG_ERROR;
    }
    const char *v = PQgetvalue(r, 0, 0);
    *outcome = strcmp(v, "merged") == 0    ? CD_PG_MERGE_MERGED
               : strcmp(v, "changed") == 0 ? CD_PG_MERGE_CHANGED
                                           : CD_PG_MERGE_NONE;
    PQclear(r);
    /* the sources, renamed by the swap: dropped now that its locks are
     * gone; a failure leaves them to the next run (logged) */
    if (*outcome == CD_PG_MERGE_MERGED)
        cd_pg_partition_merge_drop_old(pg);
    return CD_PG_OK;
}

int cd_pg_partition_merge_state(cd_pg *pg, int *max_level, int *prepared)
{
    *max_level = 0;
    *prepared = 0;
    PGresult *r = one_row(pg, "reading the merges' state",
                          "SELECT max_level, prepared FROM cd_partition_merge_state()", NULL);
    if (!r)
        return CD_PG_ERROR;
    if (PQntuples(r) == 1) {
        *max_level = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
        *prepared = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    }
    PQclear(r);
    return CD_PG_OK;
}
