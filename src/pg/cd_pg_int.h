/*
 * cd_pg_int.h - private to the pg room: the connection structure and what
 * cd_pg.c (connection, retry, migrations), cd_pg_copy.c (COPY writer) and
 * cd_pg_blocks.c (blocks, tip) share.
 */
#ifndef CD_PG_INT_H
#define CD_PG_INT_H

#include <libpq-fe.h>
#include <signal.h>
#include <stdint.h>

#include "cd_pg.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

#define RETRY CD_PG_ERETRY /* internal: connection lost, re-run the operation */

struct cd_pg {
    char *conninfo;
    char *shown; /* conninfo with its password masked, for log lines */
    cd_pg_session how; /* how.application_name: owned copy or NULL */
    PGconn *conn;
    unsigned max_attempts;
    unsigned max_backoff_ms;
    const volatile sig_atomic_t *stop;
    int bulk;
    int was_down;      /* log "reconnected" once after an outage */
    uint32_t prepared; /* bit i: statement PS_i prepared on this connection */
};

#define MIGRATE_LOCK_KEY "4242424201" /* pg_advisory_lock key of the runner */
#define TIP_LOCK_KEY     "4242424202" /* pg_advisory_xact_lock key of tip moves */

/* The statements a parser runs per block or per batch are named prepared
 * statements: parsed, analysed and (for most) planned once per connection.
 * Planning them at every call was a visible part of a small block's cost. */
enum {
    PS_UNIT_CHECK,
    PS_REGISTER,
    PS_REGISTER_MANY,
    PS_MARKERS,
    PS_BATCH_CHECK,
    PS_TIP_LOCK,
    PS_COMPLETE_READ,
    PS_SET_INDEXED,
    PS_ADV_NEXT,
    PS_PURGE_MANY,
    PS_COUNT
};

/* Classifies a failed result: RETRY when the connection is gone or the server
 * is going down (or a deadlock / serialization failure rolled it back),
 * CD_PG_ERROR otherwise (logged with `what`). Clears r. */
int cd_pg_fail(cd_pg *pg, PGresult *r, const char *what) CD_WARN_UNUSED;

/* Runs sql (optionally with text/binary params). Returns 0 with *out set (or
 * cleared when out is NULL), RETRY or CD_PG_ERROR. */
int cd_pg_q(cd_pg *pg, const char *what, const char *sql, int n, const char *const *vals,
            const int *lens, const int *fmts, PGresult **out) CD_WARN_UNUSED;

/* cd_pg_q() through the prepared statement `id` (PS_*; prepared on first use
 * on this connection; sql must always be the same text for one id). */
int cd_pg_qp(cd_pg *pg, int id, const char *what, const char *sql, int n, const char *const *vals,
             const int *lens, const int *fmts, PGresult **out) CD_WARN_UNUSED;

/* Rolls back after an error; ignores the outcome. */
void cd_pg_rollback(cd_pg *pg);

/* Runs op(pg, arg) until it returns something other than RETRY,
 * reconnecting with back-off in between. */
int cd_pg_with_retry(cd_pg *pg, int (*op)(cd_pg *, void *), void *arg) CD_WARN_UNUSED;

#endif /* CD_PG_INT_H */
