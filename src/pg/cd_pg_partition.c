/*
 * cd_pg_partition.c - the height-range partitions of the row tables
 * (sql/017_partitions.sql): read their figures, roll the open tip. See
 * cd_pg.h.
 *
 * Why the roll is SQL (cd_partition_roll) and this file only calls it: the
 * detach / check / attach / create of four tables must be one transaction,
 * and a plpgsql function is one statement the server runs whole; a daemon
 * killed in the middle leaves a transaction the server rolls back.
 */
#include "cd_pg.h"
#include "cd_pg_int.h"

#include "cd_log.h"
#include "cd_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SQLSTATE lock_not_available: the roll's lock_timeout expired */
#define PART_LOCK_TIMEOUT "55P03"

int cd_pg_partitions_read(cd_pg *pg, cd_pg_partitions *out)
{
    memset(out, 0, sizeof(*out));
    out->tip_lo = -1;
    PGresult *r = PQexec(cd_pg_conn(pg), "SELECT partitions, coalesce(tip_lo, -1), tip_txs "
                                         "FROM cd_partitions_state()");
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (ok) {
        out->count = (int32_t)strtol(PQgetvalue(r, 0, 0), NULL, 10);
        out->tip_lo = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        out->tip_txs = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    } else {
        char err[256];
        cd_pg_errline(err, sizeof(err), "reading the partitions", cd_pg_conn(pg), r);
        cd_log_error("postgres: %s", err);
    }
    PQclear(r);
    return ok ? CD_PG_OK : CD_PG_ERROR;
}

/* ANALYZEs the partitions closed at bound: a new partition has no
 * statistics, and lookups by hash then planned on guesses were 2-5x slower
 * (docs/PERFORMANCE.md, "Partitions need statistics"). Autovacuum would
 * come to it within its nap time; this is sooner and certain. A failure
 * only costs plan quality: logged, not returned. */
static void analyze_closed(cd_pg *pg, int64_t bound)
{
    PGconn *c = cd_pg_conn(pg);
    char b[24];
    snprintf(b, sizeof(b), "%" PRId64, bound);
    const char *vals[1] = {b};
    PGresult *r = PQexecParams(c, "SELECT part FROM partitions WHERE hi = $1::bigint ORDER BY 1", 1,
                               NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char err[256];
        cd_pg_errline(err, sizeof(err), "listing the closed partitions", c, r);
        cd_log_warn("postgres: %s", err);
        PQclear(r);
        return;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        const char *part = PQgetvalue(r, i, 0);
        char *id = PQescapeIdentifier(c, part, strlen(part));
        if (!id)
            continue;
        char sql[160];
        snprintf(sql, sizeof(sql), "ANALYZE %s", id);
        PQfreemem(id);
        PGresult *a = PQexec(c, sql);
        if (PQresultStatus(a) != PGRES_COMMAND_OK) {
            char err[256];
            cd_pg_errline(err, sizeof(err), "analysing a closed partition", c, a);
            cd_log_warn("postgres: %s", err);
        }
        PQclear(a);
    }
    PQclear(r);
}

int cd_pg_partition_roll(cd_pg *pg, int64_t max_txs, int64_t *bound, int *busy, double *secs)
{
    *bound = -1;
    if (busy)
        *busy = 0;
    if (secs)
        *secs = 0;
    if (max_txs <= 0)
        return CD_PG_OK;
    PGconn *c = cd_pg_conn(pg);
    char m[24];
    snprintf(m, sizeof(m), "%" PRId64, max_txs);
    const char *vals[1] = {m};
    double t0 = cd_now_s();
    /* one statement outside a transaction block: its own transaction */
    PGresult *r =
        PQexecParams(c, "SELECT cd_partition_roll($1::bigint)", 1, NULL, vals, NULL, NULL, 0);
    double t = cd_now_s() - t0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        int timeout = state && strcmp(state, PART_LOCK_TIMEOUT) == 0;
        char err[512];
        cd_pg_errline(err, sizeof(err), "rolling the tip partition", c, r);
        PQclear(r);
        if (timeout) {
            if (busy)
                *busy = 1;
            /* the server's context names the statement that waited: which
             * lock, so which holder (parents: units; a partition: a vacuum) */
            cd_log_info("postgres: %s", err);
            return CD_PG_OK;
        }
        cd_log_error("postgres: %s", err);
        return CD_PG_ERROR;
    }
    if (!PQgetisnull(r, 0, 0)) {
        *bound = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        if (secs)
            *secs = t;
    }
    PQclear(r);
    if (*bound >= 0)
        analyze_closed(pg, *bound);
    return CD_PG_OK;
}
