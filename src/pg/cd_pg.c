/*
 * cd_pg.c - PostgreSQL connection, migrations, exactly-once unit writer.
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

#include "btc_merkle.h"
#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY (-100) /* internal: connection lost, re-run the operation */

struct cd_pg {
    char *conninfo;
    PGconn *conn;
    unsigned max_attempts;
    unsigned max_backoff_ms;
    const volatile sig_atomic_t *stop;
    int bulk;
    int was_down;      /* log "reconnected" once after an outage */
    uint32_t prepared; /* bit i: statement PS_i prepared on this connection */
};

/* ------------------------------------------------------------------ */
/* connection                                                          */
/* ------------------------------------------------------------------ */

cd_pg *cd_pg_new(const char *conninfo)
{
    cd_pg *pg = cd_xcalloc(1, sizeof(*pg));
    pg->conninfo = cd_xstrdup(conninfo ? conninfo : "");
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
    return pg->conninfo[0] ? pg->conninfo : "(PG* environment defaults)";
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
        PGconn *c = PQconnectdb(pg->conninfo);
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
static int fail(cd_pg *pg, PGresult *r, const char *what)
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
        return fail(pg, r, what);
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

/* Runs sql (optionally with text/binary params). Returns 0 with *out set (or
 * cleared when out is NULL), RETRY or CD_PG_ERROR. */
static int q(cd_pg *pg, const char *what, const char *sql, int n, const char *const *vals,
             const int *lens, const int *fmts, PGresult **out)
{
    PGresult *r =
        n ? PQexecParams(pg->conn, sql, n, NULL, vals, lens, fmts, 0) : PQexec(pg->conn, sql);
    return q_result(pg, r, what, out);
}

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

/* q() through the prepared statement `id` (prepared on first use on this
 * connection; sql must always be the same text for one id). */
static int qp(cd_pg *pg, int id, const char *what, const char *sql, int n, const char *const *vals,
              const int *lens, const int *fmts, PGresult **out)
{
    char name[16];
    snprintf(name, sizeof(name), "cd_ps%d", id);
    if (!(pg->prepared & (1u << id))) {
        PGresult *r = PQprepare(pg->conn, name, sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return fail(pg, r, what);
        PQclear(r);
        pg->prepared |= 1u << id;
    }
    PGresult *r = PQexecPrepared(pg->conn, name, n, vals, lens, fmts, 0);
    return q_result(pg, r, what, out);
}

/* Rolls back after an error; ignores the outcome (the connection may be
 * gone, which the next operation handles). */
static void rollback(cd_pg *pg)
{
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
        PQclear(PQexec(pg->conn, "ROLLBACK"));
}

/* Runs op(pg, arg) until it returns something other than RETRY, reconnecting
 * with back-off in between. */
static int with_retry(cd_pg *pg, int (*op)(cd_pg *, void *), void *arg)
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
    return q(pg, ((struct exec_arg *)a)->sql, ((struct exec_arg *)a)->sql, 0, NULL, NULL, NULL,
             NULL);
}

int cd_pg_exec(cd_pg *pg, const char *sql)
{
    struct exec_arg a = {sql};
    return with_retry(pg, exec_op, &a);
}

/* ------------------------------------------------------------------ */
/* migrations                                                          */
/* ------------------------------------------------------------------ */

#define MIGRATE_LOCK_KEY "4242424201" /* pg_advisory_lock key of the runner */
#define TIP_LOCK_KEY     "4242424202" /* pg_advisory_xact_lock key of tip moves */

static int read_version(cd_pg *pg, int *out)
{
    PGresult *r = NULL;
    int rc = q(pg, "reading cd_schema_version",
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
    int rc = q(pg, "taking the migration lock", "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0,
               NULL, NULL, NULL, NULL);
    if (rc)
        return rc;
    rc = q(pg, "creating cd_schema_version",
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
        rc = q(pg, what, "BEGIN", 0, NULL, NULL, NULL, NULL);
        if (rc == 0)
            rc = q(pg, what, m->sql, 0, NULL, NULL, NULL, NULL);
        if (rc == 0) {
            char v[16];
            snprintf(v, sizeof(v), "%d", m->version);
            const char *vals[2] = {v, m->name};
            rc = q(pg, what, "INSERT INTO cd_schema_version (version, name) VALUES ($1, $2)", 2,
                   vals, NULL, NULL, NULL);
        }
        if (rc == 0)
            rc = q(pg, what, "COMMIT", 0, NULL, NULL, NULL, NULL);
        if (rc == 0)
            cd_log_info("postgres: applied %s", what);
        else
            rollback(pg);
    }
    if (rc != RETRY && pg->conn)
        PQclear(PQexec(pg->conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
    return rc;
}

int cd_pg_migrate(cd_pg *pg)
{
    return with_retry(pg, migrate_op, NULL);
}

static int version_op(cd_pg *pg, void *arg)
{
    PGresult *r = NULL;
    int rc = q(pg, "checking for cd_schema_version",
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
    return with_retry(pg, version_op, out);
}

/* ------------------------------------------------------------------ */
/* COPY encoding                                                       */
/* ------------------------------------------------------------------ */

static void buf_reserve(cd_pg_buf *b, size_t n)
{
    if (b->len + n <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + n)
        cap *= 2;
    b->p = cd_xrealloc(b->p, cap);
    b->cap = cap;
}

static inline uint8_t *be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}
static inline uint8_t *be32(uint8_t *p, uint32_t v)
{
    v = __builtin_bswap32(v);
    memcpy(p, &v, 4);
    return p + 4;
}
static inline uint8_t *be64(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
    return p + 8;
}
static inline uint8_t *f_i8(uint8_t *p, uint64_t v)
{
    return be64(be32(p, 8), v);
}
static inline uint8_t *f_i4(uint8_t *p, uint32_t v)
{
    return be32(be32(p, 4), v);
}
static inline uint8_t *f_i2(uint8_t *p, uint16_t v)
{
    return be16(be32(p, 2), v);
}
static inline uint8_t *f_h32(uint8_t *p, const uint8_t h[32])
{
    p = be32(p, 32);
    memcpy(p, h, 32);
    return p + 32;
}

/* Text format helpers: decimal numbers and \\x-escaped bytea. */
static inline uint8_t *t_u64(uint8_t *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = (uint8_t)tmp[--n];
    return p;
}
static inline uint8_t *t_i64(uint8_t *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return t_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return t_u64(p, (uint64_t)v);
}
static inline uint8_t *t_h32(uint8_t *p, const uint8_t h[32])
{
    static const char hx[] = "0123456789abcdef";
    *p++ = '\\';
    *p++ = '\\';
    *p++ = 'x';
    for (int i = 0; i < 32; i++) {
        *p++ = (uint8_t)hx[h[i] >> 4];
        *p++ = (uint8_t)hx[h[i] & 15];
    }
    return p;
}

void cd_pg_unit_init(cd_pg_unit *u, cd_pg_copy_format format)
{
    memset(u, 0, sizeof(*u));
    u->format = format;
    u->flush_bytes = CD_PG_FLUSH_BYTES;
}

static void stream_flush(cd_pg_unit *u, cd_pg_buf *b);

void cd_pg_unit_reset(cd_pg_unit *u, int64_t block_id, uint32_t unit_no, uint32_t first_tx)
{
    u->block_id = block_id;
    u->unit_no = unit_no;
    u->first_tx = first_tx;
    u->tx_count = 0;
    u->tx.len = u->in.len = u->pd.len = 0;
    u->tx.rows = u->in.rows = u->pd.rows = 0;
    u->stream = NULL;
    u->stream_rc = 0;
    u->expect_txs = 0;
    if (!u->flush_bytes)
        u->flush_bytes = CD_PG_FLUSH_BYTES;
}

void cd_pg_unit_free(cd_pg_unit *u)
{
    if (!u)
        return;
    free(u->tx.p);
    free(u->in.p);
    free(u->pd.p);
    free(u->marks);
    memset(u, 0, sizeof(*u));
}

/* transactions (block_id, tx_offset, tx_pos, tx_size, tx_hash) */
void cd_pg_unit_add_tx(cd_pg_unit *u, uint32_t tx_pos, const uint8_t txid[32], uint64_t offset,
                       uint32_t size)
{
    cd_pg_buf *b = &u->tx;
    buf_reserve(b, 160);
    uint8_t *p = b->p + b->len;
    if (u->format == CD_PG_COPY_BINARY) {
        p = be16(p, 5);
        p = f_i8(p, (uint64_t)u->block_id);
        p = f_i8(p, offset);
        p = f_i4(p, tx_pos);
        p = f_i4(p, size);
        p = f_h32(p, txid);
    } else {
        p = t_i64(p, u->block_id);
        *p++ = '\t';
        p = t_u64(p, offset);
        *p++ = '\t';
        p = t_u64(p, tx_pos);
        *p++ = '\t';
        p = t_u64(p, size);
        *p++ = '\t';
        p = t_h32(p, txid);
        *p++ = '\n';
    }
    b->len = (size_t)(p - b->p);
    b->rows++;
    u->tx_count++;
    if (CD_UNLIKELY(u->stream != NULL) && b->len >= u->flush_bytes)
        stream_flush(u, b);
}

/* inputs (block_id, tx_pos, in_idx, prev_idx, prev_hash) */
void cd_pg_unit_add_input(cd_pg_unit *u, uint32_t tx_pos, uint32_t in_idx,
                          const uint8_t prev_hash[32], uint32_t prev_idx)
{
    cd_pg_buf *b = &u->in;
    buf_reserve(b, 160);
    uint8_t *p = b->p + b->len;
    if (u->format == CD_PG_COPY_BINARY) {
        p = be16(p, 5);
        p = f_i8(p, (uint64_t)u->block_id);
        p = f_i4(p, tx_pos);
        p = f_i4(p, in_idx);
        p = f_i4(p, prev_idx);
        p = f_h32(p, prev_hash);
    } else {
        p = t_i64(p, u->block_id);
        *p++ = '\t';
        p = t_u64(p, tx_pos);
        *p++ = '\t';
        p = t_u64(p, in_idx);
        *p++ = '\t';
        p = t_i64(p, (int32_t)prev_idx);
        *p++ = '\t';
        p = t_h32(p, prev_hash);
        *p++ = '\n';
    }
    b->len = (size_t)(p - b->p);
    b->rows++;
    if (CD_UNLIKELY(u->stream != NULL) && b->len >= u->flush_bytes)
        stream_flush(u, b);
}

/* pushdata (block_id, tx_pos, idx, flags, push_hash) */
void cd_pg_unit_add_push(cd_pg_unit *u, uint32_t tx_pos, uint32_t idx, unsigned flags,
                         const uint8_t key[32])
{
    cd_pg_buf *b = &u->pd;
    buf_reserve(b, 160);
    uint8_t *p = b->p + b->len;
    if (u->format == CD_PG_COPY_BINARY) {
        p = be16(p, 5);
        p = f_i8(p, (uint64_t)u->block_id);
        p = f_i4(p, tx_pos);
        p = f_i4(p, idx);
        p = f_i2(p, (uint16_t)flags);
        p = f_h32(p, key);
    } else {
        p = t_i64(p, u->block_id);
        *p++ = '\t';
        p = t_u64(p, tx_pos);
        *p++ = '\t';
        p = t_u64(p, idx);
        *p++ = '\t';
        p = t_u64(p, flags);
        *p++ = '\t';
        p = t_h32(p, key);
        *p++ = '\n';
    }
    b->len = (size_t)(p - b->p);
    b->rows++;
    if (CD_UNLIKELY(u->stream != NULL) && b->len >= u->flush_bytes)
        stream_flush(u, b);
}

/* ------------------------------------------------------------------ */
/* exactly-once unit writer                                            */
/* ------------------------------------------------------------------ */

static const uint8_t copy_sig[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xFF, '\r', '\n',
                                     0,   0,   0,   0,   0,   0,   0,    0,    0};

static int put(cd_pg *pg, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        int k = n > (1u << 30) ? 1 << 30 : (int)n;
        if (PQputCopyData(pg->conn, c, k) != 1)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int copy_table(cd_pg *pg, const cd_pg_unit *u, const char *table, const char *cols,
                      const cd_pg_buf *b)
{
    if (b->rows == 0)
        return 0;
    char sql[256], what[96];
    snprintf(sql, sizeof(sql), "COPY %s (%s) FROM STDIN%s", table, cols,
             u->format == CD_PG_COPY_BINARY ? " (FORMAT binary)" : "");
    snprintf(what, sizeof(what), "COPY %s of block_id %" PRId64 " unit %u", table, u->block_id,
             u->unit_no);
    PGresult *r = PQexec(pg->conn, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN)
        return fail(pg, r, what);
    PQclear(r);
    int bad = 0;
    if (u->format == CD_PG_COPY_BINARY)
        bad = put(pg, copy_sig, sizeof(copy_sig));
    if (!bad)
        bad = put(pg, b->p, b->len);
    if (!bad && u->format == CD_PG_COPY_BINARY)
        bad = put(pg, "\xff\xff", 2);
    if (PQputCopyEnd(pg->conn, bad ? "client failed to send" : NULL) != 1)
        bad = 1;
    r = PQgetResult(pg->conn);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = fail(pg, r, what);
    else
        PQclear(r);
    if (pg->conn)
        while ((r = PQgetResult(pg->conn)) != NULL)
            PQclear(r);
    if (rc == 0 && bad)
        rc = fail(pg, NULL, what);
    return rc;
}

static const char *const cols_tx = "block_id, tx_offset, tx_pos, tx_size, tx_hash";
static const char *const cols_in = "block_id, tx_pos, in_idx, prev_idx, prev_hash";
static const char *const cols_pd = "block_id, tx_pos, idx, flags, push_hash";

struct unit_vals {
    char b[24], n[12], f[12], c[12];
    const char *v[4];
};

static void unit_vals_of(const cd_pg_unit *u, struct unit_vals *x)
{
    snprintf(x->b, sizeof(x->b), "%" PRId64, u->block_id);
    snprintf(x->n, sizeof(x->n), "%u", u->unit_no);
    snprintf(x->f, sizeof(x->f), "%u", u->first_tx);
    snprintf(x->c, sizeof(x->c), "%u", u->tx_count);
    x->v[0] = x->b;
    x->v[1] = x->n;
    x->v[2] = x->f;
    x->v[3] = x->c;
}

static int unit_eunit(const cd_pg_unit *u)
{
    cd_log_error("postgres: block_id %" PRId64 " unit %u was committed with another tx range "
                 "than %u+%u (unit size changed?)",
                 u->block_id, u->unit_no, u->first_tx, u->tx_count);
    return CD_PG_EUNIT;
}

/* The same unit, or (tx count known) any unit overlapping its tx range:
 * committed with another cutting. $1 block_id, $2 unit_no, $3 first_tx,
 * $4 tx_count (0: unknown). */
static const char unit_check_sql[] =
    "SELECT coalesce(bool_or(unit_no = $2 AND first_tx = $3 AND "
    "                        ($4 = 0 OR tx_count = $4)), false), count(*) "
    "FROM indexed_units WHERE block_id = $1 AND (unit_no = $2 OR "
    "  ($4 > 0 AND first_tx < $3::bigint + $4 AND first_tx::bigint + tx_count > $3))";

/* BEGIN and the marker check. 0 = transaction open, 1 = unit already
 * committed (rolled back), CD_PG_EUNIT, RETRY, CD_PG_ERROR. */
static int open_op(cd_pg *pg, void *arg)
{
    const cd_pg_unit *u = arg;
    struct unit_vals x;
    unit_vals_of(u, &x);
    const char *what = "opening a unit";
    int rc = q(pg, what, "BEGIN", 0, NULL, NULL, NULL, NULL);
    PGresult *r = NULL;
    if (u->tx_count == 0 && u->expect_txs) /* streaming: rows not produced yet */
        snprintf(x.c, sizeof(x.c), "%u", u->expect_txs);
    if (rc == 0)
        rc = qp(pg, PS_UNIT_CHECK, what, unit_check_sql, 4, x.v, NULL, NULL, &r);
    if (rc) {
        rollback(pg);
        return rc;
    }
    int same = PQgetvalue(r, 0, 0)[0] == 't', exists = atoi(PQgetvalue(r, 0, 1)) > 0;
    PQclear(r);
    if (!exists)
        return 0;
    rollback(pg);
    if (!same)
        return unit_eunit(u);
    cd_log_debug("postgres: block_id %" PRId64 " unit %u already committed", u->block_id,
                 u->unit_no);
    return 1;
}

/* The remaining rows, the marker, COMMIT. 0 written, 1 committed meanwhile
 * by another writer (rolled back), CD_PG_EUNIT, RETRY, CD_PG_ERROR. */
static int close_op(cd_pg *pg, const cd_pg_unit *u)
{
    struct unit_vals x;
    unit_vals_of(u, &x);
    char what[96];
    snprintf(what, sizeof(what), "unit marker of block_id %" PRId64 " unit %u", u->block_id,
             u->unit_no);
    int rc = copy_table(pg, u, "transactions", cols_tx, &u->tx);
    if (rc == 0)
        rc = copy_table(pg, u, "inputs", cols_in, &u->in);
    if (rc == 0)
        rc = copy_table(pg, u, "pushdata", cols_pd, &u->pd);
    PGresult *r = NULL;
    if (rc == 0)
        rc = q(pg, what,
               "INSERT INTO indexed_units (block_id, unit_no, first_tx, tx_count) "
               "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
               4, x.v, NULL, NULL, &r);
    if (rc) {
        rollback(pg);
        return rc;
    }
    int inserted = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (inserted) {
        rc = q(pg, what, "COMMIT", 0, NULL, NULL, NULL, NULL);
        if (rc)
            rollback(pg);
        return rc;
    }
    /* a concurrent writer committed the same unit first */
    rc = q(pg, what,
           "SELECT first_tx = $3 AND tx_count = $4 FROM indexed_units "
           "WHERE block_id = $1 AND unit_no = $2",
           4, x.v, NULL, NULL, &r);
    rollback(pg);
    if (rc)
        return rc;
    int same = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return same ? 1 : unit_eunit(u);
}

static int write_unit_op(cd_pg *pg, void *arg)
{
    int rc = open_op(pg, arg);
    return rc ? rc : close_op(pg, arg);
}

int cd_pg_write_unit(cd_pg *pg, const cd_pg_unit *u)
{
    return with_retry(pg, write_unit_op, (void *)u);
}

int cd_pg_unit_open(cd_pg *pg, cd_pg_unit *u)
{
    u->stream = NULL;
    u->stream_rc = 0;
    int rc = with_retry(pg, open_op, u);
    if (rc == 0)
        u->stream = pg;
    return rc;
}

static void stream_flush(cd_pg_unit *u, cd_pg_buf *b)
{
    if (u->stream_rc == 0) {
        const char *table = b == &u->tx ? "transactions" : b == &u->in ? "inputs" : "pushdata";
        const char *cols = b == &u->tx ? cols_tx : b == &u->in ? cols_in : cols_pd;
        int rc = copy_table(u->stream, u, table, cols, b);
        if (rc)
            u->stream_rc = rc == RETRY ? CD_PG_EAGAIN : rc;
    }
    b->len = 0; /* sent (or the unit is lost anyway): memory stays bounded */
    b->rows = 0;
}

/* Ends a unit's row stream before its commit: 0 to go on, else the error
 * (a failed stream rolls the transaction back). */
static int stream_end(cd_pg *pg, cd_pg_unit *u)
{
    int rc = u->stream_rc;
    u->stream = NULL;
    if (rc) {
        rollback(pg);
        return rc;
    }
    return pg->conn ? 0 : CD_PG_EAGAIN;
}

int cd_pg_unit_close(cd_pg *pg, cd_pg_unit *u)
{
    int rc = stream_end(pg, u);
    if (rc)
        return rc;
    rc = close_op(pg, u);
    return rc == RETRY ? CD_PG_EAGAIN : rc;
}

void cd_pg_unit_cancel(cd_pg *pg, cd_pg_unit *u)
{
    u->stream = NULL;
    rollback(pg);
}

/* ------------------------------------------------------------------ */
/* batches: several units in one transaction                          */
/* ------------------------------------------------------------------ */

static int batch_begin_op(cd_pg *pg, void *arg)
{
    (void)arg;
    return q(pg, "opening a batch", "BEGIN", 0, NULL, NULL, NULL, NULL);
}

int cd_pg_batch_begin(cd_pg *pg, cd_pg_unit *u)
{
    cd_pg_unit_reset(u, 0, 0, 0);
    u->n_marks = 0;
    u->mark_start = 0;
    int rc = with_retry(pg, batch_begin_op, NULL);
    if (rc == 0)
        u->stream = pg;
    return rc;
}

/* RETRY from an operation inside the batch: the transaction is gone. */
static int batch_rc(cd_pg_unit *u, int rc)
{
    if (rc == RETRY) {
        u->stream = NULL;
        return CD_PG_EAGAIN;
    }
    return rc;
}

static int reg_op(cd_pg *pg, void *a);

struct reg_arg {
    const uint8_t *hash, *header;
    int32_t height;
    uint64_t tx_count, size;
    int64_t *block_id;
};

int cd_pg_batch_register(cd_pg *pg, const uint8_t hash[32], const uint8_t header[80],
                         int32_t height, uint64_t tx_count, uint64_t size, int64_t *block_id)
{
    if (!pg->conn)
        return CD_PG_EAGAIN;
    struct reg_arg a = {hash, header, height, tx_count, size, block_id};
    int rc = reg_op(pg, &a);
    if (rc == CD_PG_ERROR)
        rollback(pg);
    return rc == RETRY ? CD_PG_EAGAIN : rc;
}

int cd_pg_batch_add(cd_pg *pg, cd_pg_unit *u, int64_t block_id, uint32_t unit_no, uint32_t first_tx,
                    uint32_t expect_txs)
{
    int rc = cd_pg_batch_add_checked(pg, u, block_id, unit_no, first_tx);
    if (rc)
        return rc;
    struct unit_vals x;
    unit_vals_of(u, &x);
    snprintf(x.c, sizeof(x.c), "%u", expect_txs);
    PGresult *r = NULL;
    rc = qp(pg, PS_UNIT_CHECK, "checking a unit marker", unit_check_sql, 4, x.v, NULL, NULL, &r);
    if (rc) {
        if (rc == CD_PG_ERROR)
            rollback(pg);
        return batch_rc(u, rc);
    }
    int same = PQgetvalue(r, 0, 0)[0] == 't', exists = atoi(PQgetvalue(r, 0, 1)) > 0;
    PQclear(r);
    if (!exists)
        return 0;
    if (!same) {
        u->tx_count = u->mark_start;
        return unit_eunit(u);
    }
    return 1;
}

/* All of a batch's units against the committed markers in one statement:
 * unit_check_sql for each (same predicate, same point: before any of the
 * batch's markers exist), instead of one statement per unit. */
static const char batch_check_sql[] =
    "SELECT q.i, coalesce(bool_or(u.unit_no = q.n AND u.first_tx = q.f AND "
    "                             (q.c = 0 OR u.tx_count = q.c)), false), count(u.block_id) "
    "FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::integer[]) "
    "     WITH ORDINALITY AS q(b, n, f, c, i) "
    "LEFT JOIN indexed_units u ON u.block_id = q.b AND (u.unit_no = q.n OR "
    "  (q.c > 0 AND u.first_tx < q.f::bigint + q.c AND u.first_tx::bigint + u.tx_count > q.f)) "
    "GROUP BY q.i ORDER BY q.i";

static char *marks_array(const cd_pg_marker *m, size_t n, int f)
{
    size_t cap = 2 + n * 21, len = 0;
    char *s = cd_xmalloc(cap + 1);
    s[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        uint64_t v = f == 0   ? (uint64_t)m[i].block_id
                     : f == 1 ? m[i].unit_no
                     : f == 2 ? m[i].first_tx
                              : m[i].tx_count;
        len += (size_t)snprintf(s + len, cap + 1 - len, "%s%" PRIu64, i ? "," : "", v);
    }
    s[len++] = '}';
    s[len] = 0;
    return s;
}

int cd_pg_batch_check(cd_pg *pg, cd_pg_unit *u, const cd_pg_marker *units, size_t n, int *state)
{
    if (u->stream_rc)
        return u->stream_rc;
    if (!pg->conn)
        return CD_PG_EAGAIN;
    if (n == 0)
        return 0;
    char *a[4];
    for (int i = 0; i < 4; i++)
        a[i] = marks_array(units, n, i);
    const char *vals[4] = {a[0], a[1], a[2], a[3]};
    PGresult *r = NULL;
    int rc = qp(pg, PS_BATCH_CHECK, "checking the unit markers of a batch", batch_check_sql, 4,
                vals, NULL, NULL, &r);
    for (int i = 0; i < 4; i++)
        free(a[i]);
    if (rc) {
        if (rc == CD_PG_ERROR)
            rollback(pg);
        return batch_rc(u, rc);
    }
    if ((size_t)PQntuples(r) != n) {
        int rows = PQntuples(r);
        PQclear(r);
        rollback(pg);
        cd_log_error("postgres: batch check: %d rows for %zu units", rows, n);
        return CD_PG_ERROR;
    }
    for (size_t i = 0; i < n; i++) {
        int same = PQgetvalue(r, (int)i, 1)[0] == 't';
        int exists = atoi(PQgetvalue(r, (int)i, 2)) > 0;
        state[i] = 0;
        if (exists && same) {
            cd_log_debug("postgres: block_id %" PRId64 " unit %u already committed",
                         units[i].block_id, units[i].unit_no);
            state[i] = 1;
        } else if (exists) {
            cd_log_error("postgres: block_id %" PRId64 " unit %u was committed with another tx "
                         "range than %u+%u (unit size changed?)",
                         units[i].block_id, units[i].unit_no, units[i].first_tx, units[i].tx_count);
            state[i] = CD_PG_EUNIT;
        }
    }
    PQclear(r);
    return 0;
}

int cd_pg_batch_add_checked(cd_pg *pg, cd_pg_unit *u, int64_t block_id, uint32_t unit_no,
                            uint32_t first_tx)
{
    if (u->stream_rc) /* a streamed COPY failed: the batch is lost anyway */
        return u->stream_rc;
    if (!pg->conn)
        return CD_PG_EAGAIN;
    u->block_id = block_id;
    u->unit_no = unit_no;
    u->first_tx = first_tx;
    u->mark_start = u->tx_count;
    return 0;
}

void cd_pg_batch_unit_done(cd_pg_unit *u)
{
    if (u->n_marks == u->cap_marks) {
        u->cap_marks = u->cap_marks ? u->cap_marks * 2 : 16;
        u->marks = cd_xrealloc(u->marks, u->cap_marks * sizeof(*u->marks));
    }
    cd_pg_marker *m = &u->marks[u->n_marks++];
    m->block_id = u->block_id;
    m->unit_no = u->unit_no;
    m->first_tx = u->first_tx;
    m->tx_count = u->tx_count - u->mark_start;
}

/* Appends "{a,b,...}" of n unsigned values (field f of each marker). */
static char *marker_array(const cd_pg_unit *u, int f)
{
    size_t cap = 2 + u->n_marks * 21, len = 0;
    char *s = cd_xmalloc(cap + 1);
    s[len++] = '{';
    for (size_t i = 0; i < u->n_marks; i++) {
        const cd_pg_marker *m = &u->marks[i];
        uint64_t v = f == 0   ? (uint64_t)m->block_id
                     : f == 1 ? m->unit_no
                     : f == 2 ? m->first_tx
                              : m->tx_count;
        len += (size_t)snprintf(s + len, cap + 1 - len, "%s%" PRIu64, i ? "," : "", v);
    }
    s[len++] = '}';
    s[len] = 0;
    return s;
}

static int batch_commit_op(cd_pg *pg, cd_pg_unit *u)
{
    int rc = copy_table(pg, u, "transactions", cols_tx, &u->tx);
    if (rc == 0)
        rc = copy_table(pg, u, "inputs", cols_in, &u->in);
    if (rc == 0)
        rc = copy_table(pg, u, "pushdata", cols_pd, &u->pd);
    if (rc)
        return rc;
    if (u->n_marks > 0) {
        char *a[4];
        for (int i = 0; i < 4; i++)
            a[i] = marker_array(u, i);
        const char *vals[4] = {a[0], a[1], a[2], a[3]};
        PGresult *r = NULL;
        rc = qp(pg, PS_MARKERS, "unit markers of a batch",
                "INSERT INTO indexed_units (block_id, unit_no, first_tx, tx_count) "
                "SELECT * FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::integer[]) "
                "ON CONFLICT DO NOTHING",
                4, vals, NULL, NULL, &r);
        for (int i = 0; i < 4; i++)
            free(a[i]);
        if (rc)
            return rc;
        int inserted = atoi(PQcmdTuples(r));
        PQclear(r);
        if ((size_t)inserted != u->n_marks) {
            /* a concurrent writer committed one of these units first; the
             * caller runs the batch again, and cd_pg_batch_add skips it */
            cd_log_info("postgres: batch of %zu units: %zu committed meanwhile by another "
                        "writer; writing the batch again",
                        u->n_marks, u->n_marks - (size_t)inserted);
            rollback(pg);
            return 1;
        }
    }
    return q(pg, "committing a batch", "COMMIT", 0, NULL, NULL, NULL, NULL);
}

int cd_pg_batch_commit(cd_pg *pg, cd_pg_unit *u)
{
    int rc = stream_end(pg, u);
    if (rc)
        return rc;
    rc = batch_commit_op(pg, u);
    if (rc < 0 && rc != RETRY)
        rollback(pg);
    return rc == RETRY ? CD_PG_EAGAIN : rc;
}

void cd_pg_batch_cancel(cd_pg *pg, cd_pg_unit *u)
{
    u->stream = NULL;
    rollback(pg);
}

/* ------------------------------------------------------------------ */
/* blocks and tip                                                      */
/* ------------------------------------------------------------------ */

/* A block registered again keeps its id. While it is not indexed, the new
 * copy's tx count and size replace the old ones: a failed copy (say the
 * CVE-2012-2459 mutation, one tx more than the header commits to) must not
 * leave a shape the right copy can never complete (its rows were purged,
 * cd_block_purge). An indexed block passed the merkle check: it keeps its
 * values. (The update also locks the row, as the no-op update before did.) */
#define REG_CONFLICT                                                                               \
    "ON CONFLICT (block_hash) DO UPDATE SET "                                                      \
    "tx_count = CASE WHEN blocks.indexed THEN blocks.tx_count ELSE EXCLUDED.tx_count END, "        \
    "size = CASE WHEN blocks.indexed THEN blocks.size ELSE EXCLUDED.size END "

static int reg_op(cd_pg *pg, void *a)
{
    struct reg_arg *x = a;
    char h[12], t[24], s[24];
    snprintf(h, sizeof(h), "%d", (int)x->height);
    snprintf(t, sizeof(t), "%" PRIu64, x->tx_count);
    snprintf(s, sizeof(s), "%" PRIu64, x->size);
    const char *vals[6] = {
        (const char *)x->hash, (const char *)x->header + 4, h, (const char *)x->header, t, s};
    int lens[6] = {32, 32, 0, 80, 0, 0};
    int fmts[6] = {1, 1, 0, 1, 0, 0};
    PGresult *r = NULL;
    int rc = qp(pg, PS_REGISTER, "registering a block",
                "INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size) "
                "VALUES ($1, $2, $3, $4, $5, $6) " REG_CONFLICT "RETURNING block_id",
                6, vals, lens, fmts, &r);
    if (rc)
        return rc;
    *x->block_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

int cd_pg_block_register(cd_pg *pg, const uint8_t hash[32], const uint8_t header[80],
                         int32_t height, uint64_t tx_count, uint64_t size, int64_t *block_id)
{
    struct reg_arg a = {hash, header, height, tx_count, size, block_id};
    return with_retry(pg, reg_op, &a);
}

/* All blocks of blocks[] in one statement, in their order (idempotent on
 * the hash); ids matched back by hash (RETURNING has no input order). */
struct regs_arg {
    const cd_pg_block_info *b;
    size_t n;
    int64_t *ids;
};

static int regs_op(cd_pg *pg, void *a)
{
    struct regs_arg *x = a;
    size_t n = x->n;
    uint8_t *hashes = cd_xmalloc(n * 32), *headers = cd_xmalloc(n * 80);
    size_t cap = 2 + n * 21;
    char *arr[3];
    size_t len[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        arr[k] = cd_xmalloc(cap + 1);
        arr[k][len[k]++] = '{';
    }
    for (size_t i = 0; i < n; i++) {
        const cd_pg_block_info *b = &x->b[i];
        memcpy(hashes + i * 32, b->hash, 32);
        memcpy(headers + i * 80, b->header, 80);
        const char *sep = i ? "," : "";
        len[0] += (size_t)snprintf(arr[0] + len[0], cap + 1 - len[0], "%s%d", sep, (int)b->height);
        len[1] +=
            (size_t)snprintf(arr[1] + len[1], cap + 1 - len[1], "%s%" PRIu64, sep, b->tx_count);
        len[2] += (size_t)snprintf(arr[2] + len[2], cap + 1 - len[2], "%s%" PRIu64, sep, b->size);
    }
    for (int k = 0; k < 3; k++) {
        arr[k][len[k]++] = '}';
        arr[k][len[k]] = 0;
    }
    const char *vals[5] = {(const char *)hashes, (const char *)headers, arr[0], arr[1], arr[2]};
    int lens[5] = {(int)(n * 32), (int)(n * 80), 0, 0, 0};
    int fmts[5] = {1, 1, 0, 0, 0};
    PGresult *r = NULL;
    int rc = qp(pg, PS_REGISTER_MANY, "registering blocks",
                "INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size) "
                "SELECT substring($1::bytea FROM (i::integer - 1) * 32 + 1 FOR 32), "
                "       substring($2::bytea FROM (i::integer - 1) * 80 + 5 FOR 32), h, "
                "       substring($2::bytea FROM (i::integer - 1) * 80 + 1 FOR 80), t, s "
                "FROM unnest($3::integer[], $4::bigint[], $5::bigint[]) "
                "     WITH ORDINALITY AS x(h, t, s, i) ORDER BY i " REG_CONFLICT
                "RETURNING block_id, block_hash",
                5, vals, lens, fmts, &r);
    for (int k = 0; k < 3; k++)
        free(arr[k]);
    free(headers);
    if (rc) {
        free(hashes);
        return rc;
    }
    size_t rows = (size_t)PQntuples(r);
    size_t found = 0;
    for (size_t k = 0; k < rows; k++) {
        size_t hl = 0;
        unsigned char *h = PQunescapeBytea((const unsigned char *)PQgetvalue(r, (int)k, 1), &hl);
        int64_t id = strtoll(PQgetvalue(r, (int)k, 0), NULL, 10);
        /* rows come back in input order in practice: try k first */
        for (size_t j = 0, i = k < n ? k : 0; h && hl == 32 && j < n; j++, i = (i + 1) % n)
            if (memcmp(hashes + i * 32, h, 32) == 0) {
                x->ids[i] = id;
                found++;
                break;
            }
        PQfreemem(h);
    }
    PQclear(r);
    free(hashes);
    if (found != n) {
        cd_log_error("postgres: registering %zu blocks: %zu block ids returned", n, found);
        return CD_PG_ERROR;
    }
    return 0;
}

int cd_pg_blocks_register(cd_pg *pg, const cd_pg_block_info *blocks, size_t n, int64_t *block_ids)
{
    if (n == 0)
        return CD_PG_OK;
    struct regs_arg a = {blocks, n, block_ids};
    return with_retry(pg, regs_op, &a);
}

struct idx_arg {
    int64_t block_id;
    uint32_t n_units;
};

static int set_indexed_op(cd_pg *pg, void *a)
{
    struct idx_arg *x = a;
    char b[24], n[12];
    snprintf(b, sizeof(b), "%" PRId64, x->block_id);
    snprintf(n, sizeof(n), "%u", x->n_units);
    const char *vals[2] = {b, n};
    PGresult *r = NULL;
    /* One statement, so the check and the flag are atomic: every unit
     * 0..n_units-1 present and their tx counts adding up to the block's. */
    int rc = q(pg, "marking a block indexed",
               "UPDATE blocks b SET indexed = true, n_units = $2, "
               "  indexed_at = coalesce(indexed_at, now()) "
               "WHERE b.block_id = $1 AND (SELECT count(*) = $2 AND max(unit_no) = $2 - 1 "
               "  AND sum(tx_count) = b.tx_count FROM indexed_units u WHERE u.block_id = $1)",
               2, vals, NULL, NULL, &r);
    if (rc)
        return rc;
    int ok = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!ok) {
        cd_log_warn("postgres: block_id %" PRId64 " is not complete (%u units expected)",
                    x->block_id, x->n_units);
        return CD_PG_EINCOMPLETE;
    }
    return 0;
}

int cd_pg_block_set_indexed(cd_pg *pg, int64_t block_id, uint32_t n_units)
{
    struct idx_arg a = {block_id, n_units};
    return with_retry(pg, set_indexed_op, &a);
}

static int tip_op(cd_pg *pg, void *a)
{
    int64_t id = *(int64_t *)a;
    char b[24];
    snprintf(b, sizeof(b), "%" PRId64, id);
    const char *vals[1] = {b};
    int rc = q(pg, "advancing the tip", "BEGIN", 0, NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = q(pg, "advancing the tip", "SELECT pg_advisory_xact_lock(" TIP_LOCK_KEY ")", 0, NULL,
               NULL, NULL, NULL);
    if (rc) {
        rollback(pg);
        return rc;
    }
    PGresult *r = NULL;
    rc = q(pg, "advancing the tip",
           "SELECT b.indexed, b.height, t.block_id, t.height, "
           "       (tb.block_hash = b.prev_hash), b.on_best_chain "
           "FROM blocks b LEFT JOIN index_tip t ON true "
           "LEFT JOIN blocks tb ON tb.block_id = t.block_id "
           "WHERE b.block_id = $1 FOR UPDATE OF b",
           1, vals, NULL, NULL, &r);
    if (rc) {
        rollback(pg);
        return rc;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        rollback(pg);
        cd_log_error("postgres: tip advance: unknown block_id %s", b);
        return CD_PG_ERROR;
    }
    int indexed = PQgetvalue(r, 0, 0)[0] == 't';
    int has_tip = !PQgetisnull(r, 0, 2);
    int64_t tip_id = has_tip ? strtoll(PQgetvalue(r, 0, 2), NULL, 10) : -1;
    long height = strtol(PQgetvalue(r, 0, 1), NULL, 10);
    long tip_h = has_tip ? strtol(PQgetvalue(r, 0, 3), NULL, 10) : -1;
    int links = has_tip && PQgetvalue(r, 0, 4)[0] == 't';
    int best = PQgetvalue(r, 0, 5)[0] == 't';
    PQclear(r);
    if (tip_id == id || (best && height <= tip_h)) {
        rollback(pg);
        return 0;
    }
    if (!indexed || (has_tip && (height != tip_h + 1 || !links))) {
        rollback(pg);
        cd_log_warn("postgres: cannot advance the tip (height %ld) to block_id %s at height "
                    "%ld: %s",
                    tip_h, b, height, !indexed ? "block not indexed" : "not the next block");
        return CD_PG_EINCOMPLETE;
    }
    rc = q(pg, "advancing the tip",
           "INSERT INTO index_tip (singleton, block_id, height) "
           "SELECT true, block_id, height FROM blocks WHERE block_id = $1 "
           "ON CONFLICT (singleton) DO UPDATE SET block_id = EXCLUDED.block_id, "
           "height = EXCLUDED.height, updated_at = now()",
           1, vals, NULL, NULL, NULL);
    if (rc == 0)
        rc =
            q(pg, "advancing the tip", "UPDATE blocks SET on_best_chain = true WHERE block_id = $1",
              1, vals, NULL, NULL, NULL);
    if (rc == 0)
        rc = q(pg, "advancing the tip", "COMMIT", 0, NULL, NULL, NULL, NULL);
    if (rc)
        rollback(pg);
    return rc;
}

int cd_pg_tip_advance(cd_pg *pg, int64_t block_id)
{
    return with_retry(pg, tip_op, &block_id);
}

static int tip_height_op(cd_pg *pg, void *a)
{
    PGresult *r = NULL;
    int rc = q(pg, "reading the tip", "SELECT coalesce(max(height), -1) FROM index_tip", 0, NULL,
               NULL, NULL, &r);
    if (rc)
        return rc;
    *(int32_t *)a = (int32_t)strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

int cd_pg_tip_height(cd_pg *pg, int32_t *height)
{
    return with_retry(pg, tip_height_op, height);
}

struct done_arg {
    int64_t block_id;
    uint32_t unit_no;
    int *done;
};

static int done_op(cd_pg *pg, void *a)
{
    struct done_arg *x = a;
    char b[24], n[12];
    snprintf(b, sizeof(b), "%" PRId64, x->block_id);
    snprintf(n, sizeof(n), "%u", x->unit_no);
    const char *vals[2] = {b, n};
    PGresult *r = NULL;
    int rc = q(pg, "reading a unit marker",
               "SELECT count(*) FROM indexed_units WHERE block_id = $1 AND unit_no = $2", 2, vals,
               NULL, NULL, &r);
    if (rc)
        return rc;
    *x->done = atoi(PQgetvalue(r, 0, 0)) > 0;
    PQclear(r);
    return 0;
}

int cd_pg_unit_done(cd_pg *pg, int64_t block_id, uint32_t unit_no, int *done)
{
    struct done_arg a = {block_id, unit_no, done};
    return with_retry(pg, done_op, &a);
}

/* ------------------------------------------------------------------ */
/* completion and tip advance (the daemon's path)                      */
/* ------------------------------------------------------------------ */

/* Inside a transaction holding the tip lock: advances while possible. */
static int advance_locked(cd_pg *pg, int32_t *height)
{
    for (;;) {
        PGresult *r = NULL;
        /* One statement per height: next = the indexed child of the tip at
         * tip+1 (with no tip, the lowest registered block if it is
         * indexed); the tip moves to it, then it goes on the best chain.
         * The UPDATE needs the INSERT's row, so their row triggers queue and
         * fire in that order (tip NOTIFY, then cd_block_connected), as with
         * the two statements this replaces; every height is still its own
         * tip move. */
        int rc = qp(pg, PS_ADV_NEXT, "advancing the tip",
                    "WITH t AS (SELECT i.height, b.block_hash FROM index_tip i "
                    "           JOIN blocks b ON b.block_id = i.block_id), "
                    "nx AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM t) THEN "
                    "    (SELECT n.block_id FROM blocks n, t WHERE n.height = t.height + 1 "
                    "     AND n.prev_hash = t.block_hash AND n.indexed "
                    "     ORDER BY n.block_id LIMIT 1) "
                    "  ELSE (SELECT n.block_id FROM blocks n WHERE n.indexed AND n.height = "
                    "        (SELECT min(height) FROM blocks) ORDER BY n.block_id LIMIT 1) END "
                    "  AS id), "
                    "mv AS (INSERT INTO index_tip (singleton, block_id, height) "
                    "  SELECT true, b.block_id, b.height FROM blocks b "
                    "  WHERE b.block_id = (SELECT id FROM nx) "
                    "  ON CONFLICT (singleton) DO UPDATE SET block_id = EXCLUDED.block_id, "
                    "  height = EXCLUDED.height, updated_at = now() RETURNING block_id, height), "
                    "bc AS (UPDATE blocks b SET on_best_chain = true "
                    "  WHERE b.block_id = (SELECT block_id FROM mv) RETURNING b.block_id) "
                    "SELECT coalesce((SELECT height FROM mv), (SELECT height FROM t)), "
                    "  (SELECT block_id FROM bc)",
                    0, NULL, NULL, NULL, &r);
        if (rc)
            return rc;
        int32_t tip = PQgetisnull(r, 0, 0) ? -1 : (int32_t)atol(PQgetvalue(r, 0, 0));
        int moved = !PQgetisnull(r, 0, 1);
        if (moved)
            cd_log_debug("postgres: indexed tip now block_id %s (height %d)", PQgetvalue(r, 0, 1),
                         (int)tip);
        PQclear(r);
        if (!moved) {
            if (height)
                *height = tip;
            return 0;
        }
    }
}

struct complete_arg {
    const int64_t *ids;
    size_t n;
    int *indexed;
    int32_t *height;
    uint8_t *purged; /* per block: its rows did not match and were removed; or NULL */
};

/* For each block of $1 (in that order): its state, the tx count its committed
 * units cover and, when they cover the whole block and it is not indexed
 * yet, its stored txids in tx_pos order (concatenated; n rows read, all 32
 * bytes long?). One statement for all blocks a batch completed; the txids
 * are read back through the transactions primary key as before. */
static const char complete_read_sql[] =
    "SELECT b.block_id, b.indexed, b.tx_count, b.header, c.covered, c.n_units, b.height, "
    "       x.ids, x.n, x.ok "
    "FROM unnest($1::bigint[]) WITH ORDINALITY AS q(id, i) "
    "JOIN blocks b ON b.block_id = q.id "
    "CROSS JOIN LATERAL (SELECT coalesce(sum(u.tx_count), 0) AS covered, count(*) AS n_units "
    "                    FROM indexed_units u WHERE u.block_id = b.block_id) c "
    "CROSS JOIN LATERAL (SELECT string_agg(t.tx_hash, ''::bytea ORDER BY t.tx_pos) AS ids, "
    "                           count(*) AS n, "
    "                           coalesce(bool_and(octet_length(t.tx_hash) = 32), true) AS ok "
    "                    FROM transactions t WHERE t.block_id = b.block_id "
    "                    AND NOT b.indexed AND c.covered = b.tx_count AND b.tx_count > 0) x "
    "ORDER BY q.i";

/* Appends "{a,b,...}" of n signed values. */
static char *int_array(const int64_t *v, size_t n)
{
    size_t cap = 2 + n * 21, len = 0;
    char *s = cd_xmalloc(cap + 1);
    s[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap + 1 - len, "%s%" PRId64, i ? "," : "", v[i]);
    s[len++] = '}';
    s[len] = 0;
    return s;
}

/* Inside a transaction holding the tip lock: marks each block indexed if its
 * committed units cover it and the stored txids give the header's root (one
 * read for all blocks, one UPDATE for those that pass). A block whose txids
 * do not give the root holds the rows of a wrong copy (issue 11, F1): its
 * rows and markers are removed in this same transaction (cd_block_purge,
 * sql/005), so the detection and the repair commit together and the right
 * copy can be indexed afterwards. 0 (*emerkle set if a root differed: logged,
 * that block purged and left unindexed), RETRY, CD_PG_ERROR; never rolls back
 * (the caller does). */
static int complete_locked(cd_pg *pg, const struct complete_arg *x, int *emerkle)
{
    char *ids_a = int_array(x->ids, x->n);
    const char *vals[1] = {ids_a};
    PGresult *r = NULL;
    int rc =
        qp(pg, PS_COMPLETE_READ, "completing blocks", complete_read_sql, 1, vals, NULL, NULL, &r);
    free(ids_a);
    if (rc)
        return rc;
    size_t rows = (size_t)PQntuples(r);
    if (rows != x->n) {
        PQclear(r);
        cd_log_error("postgres: completing %zu blocks: %zu of them unknown", x->n, x->n - rows);
        return CD_PG_ERROR;
    }
    int64_t *done = cd_xmalloc(rows * sizeof(int64_t) * 3), *done_units = done + rows;
    int64_t *bad = done + 2 * rows;
    size_t n_done = 0, n_bad = 0;
    if (x->purged)
        memset(x->purged, 0, x->n);
    for (size_t k = 0; k < rows; k++) {
        int row = (int)k;
        const char *b = PQgetvalue(r, row, 0);
        int indexed = PQgetvalue(r, row, 1)[0] == 't';
        uint64_t tx_count = strtoull(PQgetvalue(r, row, 2), NULL, 10);
        uint64_t covered = strtoull(PQgetvalue(r, row, 4), NULL, 10);
        if (!indexed && covered == tx_count && tx_count > 0) {
            /* all units present: merkle check over the stored txids */
            uint8_t header_root[32] = {0};
            size_t hl = 0, il = 0;
            unsigned char *hdr = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, 3), &hl);
            if (hdr && hl == 80)
                memcpy(header_root, hdr + 36, 32);
            PQfreemem(hdr);
            size_t n = strtoull(PQgetvalue(r, row, 8), NULL, 10);
            unsigned char *ids =
                PQgetisnull(r, row, 7)
                    ? NULL
                    : PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, 7), &il);
            int ok =
                ids != NULL && n == tx_count && il == n * 32 && PQgetvalue(r, row, 9)[0] == 't';
            uint8_t root[32];
            int mutated = 0;
            ok = ok && btc_merkle_root(ids, n, root, &mutated) == 0 && !mutated &&
                 memcmp(root, header_root, 32) == 0;
            PQfreemem(ids);
            if (!ok) {
                cd_log_error("postgres: block_id %s at height %s: the %zu stored txids do not "
                             "give the header's merkle root (rows of a wrong copy); removing "
                             "them, the block will be indexed again",
                             b, PQgetvalue(r, row, 6), n);
                *emerkle = 1;
                bad[n_bad++] = strtoll(b, NULL, 10);
                if (x->purged)
                    x->purged[k] = 1;
            } else {
                done[n_done] = strtoll(b, NULL, 10);
                done_units[n_done++] = strtoll(PQgetvalue(r, row, 5), NULL, 10);
                indexed = 1;
            }
        }
        if (x->indexed && x->n == 1)
            *x->indexed = indexed;
    }
    PQclear(r);
    if (n_done > 0) {
        char *a = int_array(done, n_done), *u = int_array(done_units, n_done);
        const char *v2[2] = {a, u};
        rc = qp(pg, PS_SET_INDEXED, "completing blocks",
                "UPDATE blocks b SET indexed = true, n_units = x.n, indexed_at = now() "
                "FROM unnest($1::bigint[], $2::integer[]) AS x(id, n) WHERE b.block_id = x.id",
                2, v2, NULL, NULL, NULL);
        free(a);
        free(u);
    }
    if (rc == 0 && n_bad > 0) {
        char *a = int_array(bad, n_bad);
        const char *v1[1] = {a};
        rc = qp(pg, PS_PURGE_MANY, "removing the rows of a wrong block copy",
                "SELECT count(*) FILTER (WHERE cd_block_purge(id)) FROM unnest($1::bigint[]) id", 1,
                v1, NULL, NULL, NULL);
        free(a);
    }
    free(done);
    return rc;
}

/* BEGIN, the tip lock, complete_locked for all blocks (a merkle mismatch
 * purges that block's rows: committed with the rest), the tip advance,
 * COMMIT. */
static int complete_op(cd_pg *pg, void *a)
{
    struct complete_arg *x = a;
    int rc = q(pg, "completing a block", "BEGIN", 0, NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = qp(pg, PS_TIP_LOCK, "completing a block",
                "SELECT pg_advisory_xact_lock(" TIP_LOCK_KEY ")", 0, NULL, NULL, NULL, NULL);
    int emerkle = 0;
    if (rc == 0)
        rc = complete_locked(pg, x, &emerkle);
    if (rc == 0)
        rc = advance_locked(pg, x->height);
    if (rc == 0)
        rc = q(pg, "completing a block", "COMMIT", 0, NULL, NULL, NULL, NULL);
    if (rc)
        rollback(pg);
    return rc ? rc : emerkle ? CD_PG_EMERKLE : 0;
}

int cd_pg_block_try_complete(cd_pg *pg, int64_t block_id, int *indexed)
{
    struct complete_arg a = {&block_id, 1, indexed, NULL, NULL};
    return with_retry(pg, complete_op, &a);
}

int cd_pg_blocks_try_complete(cd_pg *pg, const int64_t *block_ids, size_t n, int32_t *tip_height,
                              uint8_t *purged)
{
    if (n == 0)
        return CD_PG_OK;
    struct complete_arg a = {block_ids, n, NULL, tip_height, purged};
    return with_retry(pg, complete_op, &a);
}

struct purge_arg {
    const uint8_t *hash;
    int64_t block_id;
    int *purged;
};

static int purge_op(cd_pg *pg, void *a)
{
    struct purge_arg *x = a;
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, x->block_id);
    const char *vals[2] = {(const char *)x->hash, id};
    int lens[2] = {32, 0};
    int fmts[2] = {1, 0};
    PGresult *r = NULL;
    /* under the tip lock: a completion of the same block cannot interleave */
    int rc = q(pg, "removing a block copy's rows", "BEGIN", 0, NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = qp(pg, PS_TIP_LOCK, "removing a block copy's rows",
                "SELECT pg_advisory_xact_lock(" TIP_LOCK_KEY ")", 0, NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = q(pg, "removing a block copy's rows",
               "SELECT count(*) FILTER (WHERE cd_block_purge(b.block_id)) FROM blocks b "
               "WHERE b.block_hash = $1 OR b.block_id = $2::bigint",
               2, vals, lens, fmts, &r);
    if (rc == 0) {
        if (x->purged)
            *x->purged = atoi(PQgetvalue(r, 0, 0)) > 0;
        PQclear(r);
        rc = q(pg, "removing a block copy's rows", "COMMIT", 0, NULL, NULL, NULL, NULL);
    }
    if (rc)
        rollback(pg);
    return rc;
}

int cd_pg_block_purge(cd_pg *pg, const uint8_t hash[32], int64_t block_id, int *purged)
{
    static const uint8_t none[32];
    struct purge_arg a = {hash ? hash : none, hash ? -1 : block_id, purged};
    if (purged)
        *purged = 0;
    return with_retry(pg, purge_op, &a);
}

struct unindexed_arg {
    cd_pg_block_info **out;
    int64_t **ids;
    size_t *n;
};

static int unindexed_op(cd_pg *pg, void *a)
{
    struct unindexed_arg *x = a;
    PGresult *r = NULL;
    int rc = q(pg, "reading blocks with unverified rows",
               "SELECT b.block_id, b.block_hash, b.header, b.height, b.tx_count, b.size "
               "FROM blocks b WHERE NOT b.indexed "
               "AND EXISTS (SELECT 1 FROM indexed_units u WHERE u.block_id = b.block_id) "
               "ORDER BY b.height, b.block_id",
               0, NULL, NULL, NULL, &r);
    if (rc)
        return rc;
    size_t rows = (size_t)PQntuples(r);
    cd_pg_block_info *bi = cd_xcalloc(rows ? rows : 1, sizeof(*bi));
    int64_t *ids = cd_xcalloc(rows ? rows : 1, sizeof(*ids));
    for (size_t i = 0; i < rows; i++) {
        int row = (int)i;
        ids[i] = strtoll(PQgetvalue(r, row, 0), NULL, 10);
        size_t hl = 0, hdl = 0;
        unsigned char *h = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, 1), &hl);
        unsigned char *hd = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, 2), &hdl);
        if (h && hl == 32)
            memcpy(bi[i].hash, h, 32);
        if (hd && hdl == 80)
            memcpy(bi[i].header, hd, 80);
        PQfreemem(h);
        PQfreemem(hd);
        bi[i].height = (int32_t)atol(PQgetvalue(r, row, 3));
        bi[i].tx_count = strtoull(PQgetvalue(r, row, 4), NULL, 10);
        bi[i].size = strtoull(PQgetvalue(r, row, 5), NULL, 10);
    }
    PQclear(r);
    *x->out = bi;
    *x->ids = ids;
    *x->n = rows;
    return 0;
}

int cd_pg_blocks_unverified(cd_pg *pg, cd_pg_block_info **blocks, int64_t **block_ids, size_t *n)
{
    *blocks = NULL;
    *block_ids = NULL;
    *n = 0;
    struct unindexed_arg a = {blocks, block_ids, n};
    return with_retry(pg, unindexed_op, &a);
}

static int advance_all_op(cd_pg *pg, void *a)
{
    int rc = q(pg, "advancing the tip", "BEGIN", 0, NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = q(pg, "advancing the tip", "SELECT pg_advisory_xact_lock(" TIP_LOCK_KEY ")", 0, NULL,
               NULL, NULL, NULL);
    if (rc == 0)
        rc = advance_locked(pg, a);
    if (rc == 0)
        rc = q(pg, "advancing the tip", "COMMIT", 0, NULL, NULL, NULL, NULL);
    if (rc)
        rollback(pg);
    return rc;
}

int cd_pg_tip_advance_all(cd_pg *pg, int32_t *height)
{
    return with_retry(pg, advance_all_op, height);
}

int cd_pg_secondary_indexes(cd_pg *pg, int on)
{
    static const char *drop[] = {"DROP INDEX IF EXISTS transactions_hash_idx",
                                 "DROP INDEX IF EXISTS inputs_outpoint_idx",
                                 "DROP INDEX IF EXISTS pushdata_hash_idx"};
    static const char *create[] = {
        "CREATE INDEX IF NOT EXISTS transactions_hash_idx ON transactions (tx_hash)",
        "CREATE INDEX IF NOT EXISTS inputs_outpoint_idx ON inputs (prev_hash, prev_idx)",
        "CREATE INDEX IF NOT EXISTS pushdata_hash_idx ON pushdata (push_hash)"};
    for (size_t i = 0; i < CD_ARRAY_LEN(drop); i++) {
        int rc = cd_pg_exec(pg, on ? create[i] : drop[i]);
        if (rc)
            return rc;
    }
    cd_log_info("postgres: secondary indexes %s", on ? "present" : "dropped for bulk load");
    return CD_PG_OK;
}

struct gaps_arg {
    int64_t block_id;
    uint64_t tx_count;
    int *indexed;
    uint64_t **gaps;
    size_t *n;
};

static int gaps_op(cd_pg *pg, void *a)
{
    struct gaps_arg *x = a;
    char b[24];
    snprintf(b, sizeof(b), "%" PRId64, x->block_id);
    const char *vals[1] = {b};
    PGresult *r = NULL;
    int rc = q(pg, "reading unit markers",
               "SELECT (SELECT indexed FROM blocks WHERE block_id = $1), first_tx, tx_count "
               "FROM (SELECT NULL::integer AS first_tx, NULL::integer AS tx_count UNION ALL "
               "      SELECT first_tx, tx_count FROM indexed_units WHERE block_id = $1) u "
               "ORDER BY first_tx NULLS FIRST",
               1, vals, NULL, NULL, &r);
    if (rc)
        return rc;
    int rows = PQntuples(r);
    *x->indexed = PQgetvalue(r, 0, 0)[0] == 't';
    uint64_t *g = NULL;
    size_t n = 0, cap = 0;
    uint64_t next = 0; /* first tx not yet known to be covered */
    for (int i = 1; i <= rows; i++) {
        uint64_t f = i < rows ? strtoull(PQgetvalue(r, i, 1), NULL, 10) : x->tx_count;
        uint64_t c = i < rows ? strtoull(PQgetvalue(r, i, 2), NULL, 10) : 0;
        if (f > next) {
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                g = cd_xrealloc(g, cap * 2 * sizeof(uint64_t));
            }
            g[2 * n] = next;
            g[2 * n + 1] = f;
            n++;
        }
        if (f + c > next)
            next = f + c;
    }
    PQclear(r);
    *x->gaps = g;
    *x->n = n;
    return 0;
}

int cd_pg_block_gaps(cd_pg *pg, int64_t block_id, uint64_t tx_count, int *indexed, uint64_t **gaps,
                     size_t *n_gaps)
{
    *gaps = NULL;
    *n_gaps = 0;
    struct gaps_arg a = {block_id, tx_count, indexed, gaps, n_gaps};
    return with_retry(pg, gaps_op, &a);
}
