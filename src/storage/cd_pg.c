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
#include "storage/cd_pg.h"

#include "common/cd_log.h"
#include "common/cd_util.h"

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
    int was_down; /* log "reconnected" once after an outage */
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
            PQclear(r);
            if (ok) {
                if (pg->was_down)
                    cd_log_info("postgres: reconnected to %s (db %s)", conn_target(pg),
                                PQdb(c));
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

/* Runs sql (optionally with text/binary params). Returns 0 with *out set (or
 * cleared when out is NULL), RETRY or CD_PG_ERROR. */
static int q(cd_pg *pg, const char *what, const char *sql, int n, const char *const *vals,
             const int *lens, const int *fmts, PGresult **out)
{
    PGresult *r = n ? PQexecParams(pg->conn, sql, n, NULL, vals, lens, fmts, 0)
                    : PQexec(pg->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return fail(pg, r, what);
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
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

static int read_version(cd_pg *pg, int *out)
{
    PGresult *r = NULL;
    int rc = q(pg, "reading cd_schema_version",
               "SELECT coalesce(max(version), 0) FROM cd_schema_version", 0, NULL, NULL, NULL,
               &r);
    if (rc)
        return rc;
    *out = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

static int migrate_op(cd_pg *pg, void *arg)
{
    (void)arg;
    int rc = q(pg, "taking the migration lock", "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")",
               0, NULL, NULL, NULL, NULL);
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
}

void cd_pg_unit_reset(cd_pg_unit *u, int64_t block_id, uint32_t unit_no, uint32_t first_tx)
{
    u->block_id = block_id;
    u->unit_no = unit_no;
    u->first_tx = first_tx;
    u->tx_count = 0;
    u->tx.len = u->in.len = u->pd.len = 0;
    u->tx.rows = u->in.rows = u->pd.rows = 0;
}

void cd_pg_unit_free(cd_pg_unit *u)
{
    if (!u)
        return;
    free(u->tx.p);
    free(u->in.p);
    free(u->pd.p);
    memset(u, 0, sizeof(*u));
}

/* transactions (block_id, tx_offset, tx_pos, tx_size, tx_hash) */
void cd_pg_unit_add_tx(cd_pg_unit *u, uint32_t tx_pos, const uint8_t txid[32],
                       uint64_t offset, uint32_t size)
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
}

/* ------------------------------------------------------------------ */
/* exactly-once unit writer                                            */
/* ------------------------------------------------------------------ */

static const uint8_t copy_sig[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xFF, '\r', '\n', 0,
                                     0,   0,   0,   0,   0,   0,   0,   0};

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

static int write_unit_op(cd_pg *pg, void *arg)
{
    const cd_pg_unit *u = arg;
    char what[96];
    snprintf(what, sizeof(what), "unit marker of block_id %" PRId64 " unit %u", u->block_id,
             u->unit_no);
    int rc = q(pg, what, "BEGIN", 0, NULL, NULL, NULL, NULL);
    if (rc)
        return rc;
    char b[24], n[12], f[12], c[12];
    snprintf(b, sizeof(b), "%" PRId64, u->block_id);
    snprintf(n, sizeof(n), "%u", u->unit_no);
    snprintf(f, sizeof(f), "%u", u->first_tx);
    snprintf(c, sizeof(c), "%u", u->tx_count);
    const char *vals[4] = {b, n, f, c};
    PGresult *r = NULL;
    rc = q(pg, what,
           "INSERT INTO indexed_units (block_id, unit_no, first_tx, tx_count) "
           "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
           4, vals, NULL, NULL, &r);
    if (rc) {
        rollback(pg);
        return rc;
    }
    int inserted = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!inserted) {
        rollback(pg);
        cd_log_debug("postgres: block_id %" PRId64 " unit %u already committed", u->block_id,
                     u->unit_no);
        return 1;
    }
    rc = copy_table(pg, u, "transactions", "block_id, tx_offset, tx_pos, tx_size, tx_hash",
                    &u->tx);
    if (rc == 0)
        rc = copy_table(pg, u, "inputs", "block_id, tx_pos, in_idx, prev_idx, prev_hash",
                        &u->in);
    if (rc == 0)
        rc = copy_table(pg, u, "pushdata", "block_id, tx_pos, idx, flags, push_hash", &u->pd);
    if (rc == 0)
        rc = q(pg, what, "COMMIT", 0, NULL, NULL, NULL, NULL);
    if (rc)
        rollback(pg);
    return rc;
}

int cd_pg_write_unit(cd_pg *pg, const cd_pg_unit *u)
{
    return with_retry(pg, write_unit_op, (void *)u);
}

/* ------------------------------------------------------------------ */
/* blocks and tip                                                      */
/* ------------------------------------------------------------------ */

struct reg_arg {
    const uint8_t *hash, *header;
    int32_t height;
    uint64_t tx_count, size;
    int64_t *block_id;
};

static int reg_op(cd_pg *pg, void *a)
{
    struct reg_arg *x = a;
    char h[12], t[24], s[24];
    snprintf(h, sizeof(h), "%d", (int)x->height);
    snprintf(t, sizeof(t), "%" PRIu64, x->tx_count);
    snprintf(s, sizeof(s), "%" PRIu64, x->size);
    const char *vals[6] = {(const char *)x->hash, (const char *)x->header + 4,
                           h, (const char *)x->header, t, s};
    int lens[6] = {32, 32, 0, 80, 0, 0};
    int fmts[6] = {1, 1, 0, 1, 0, 0};
    PGresult *r = NULL;
    int rc = q(pg, "registering a block",
               "INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size) "
               "VALUES ($1, $2, $3, $4, $5, $6) "
               "ON CONFLICT (block_hash) DO UPDATE SET block_hash = EXCLUDED.block_hash "
               "RETURNING block_id",
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
    if (rc)
        return rc;
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
        rc = q(pg, "advancing the tip",
               "UPDATE blocks SET on_best_chain = true WHERE block_id = $1", 1, vals, NULL,
               NULL, NULL);
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
    int rc = q(pg, "reading the tip", "SELECT coalesce(max(height), -1) FROM index_tip", 0,
               NULL, NULL, NULL, &r);
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
               "SELECT count(*) FROM indexed_units WHERE block_id = $1 AND unit_no = $2", 2,
               vals, NULL, NULL, &r);
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
