/*
 * cd_pg_copy.c - the exactly-once unit writer: COPY rows encoded as the
 * parser produces them (cd_pg_unit_add_*), one unit per transaction with its
 * marker (cd_pg_write_unit, cd_pg_unit_open/close), or many units of many
 * blocks in one transaction (cd_pg_batch_*). See cd_pg.h for the contract.
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

/* Binary format: network-order integers (cd_util's writers), each returning the end of
 * what it wrote so a row is one chain of calls. */
static inline uint8_t *be16(uint8_t *p, uint16_t v)
{
    cd_put_be16(p, v);
    return p + 2;
}
static inline uint8_t *be32(uint8_t *p, uint32_t v)
{
    cd_put_be32(p, v);
    return p + 4;
}
static inline uint8_t *be64(uint8_t *p, uint64_t v)
{
    cd_put_be64(p, v);
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
    *p++ = '\\';
    *p++ = '\\';
    *p++ = 'x';
    return (uint8_t *)cd_hex_put((char *)p, h, 32);
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
    u->tx.len = u->in.len = u->pd.len = u->out.len = 0;
    u->tx.rows = u->in.rows = u->pd.rows = u->out.rows = 0;
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
    free(u->out.p);
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

/* outputs (block_id, tx_pos, idx, value, script_hash, script) */
void cd_pg_unit_add_output(cd_pg_unit *u, uint32_t tx_pos, uint32_t idx, uint64_t value,
                           const uint8_t script_hash[32], const uint8_t *script, size_t script_len)
{
    cd_pg_buf *b = &u->out;
    size_t slen = script ? script_len : 0;
    buf_reserve(b, 200 + 4 * slen);
    uint8_t *p = b->p + b->len;
    if (u->format == CD_PG_COPY_BINARY) {
        p = be16(p, 6);
        p = f_i8(p, (uint64_t)u->block_id);
        p = f_i4(p, tx_pos);
        p = f_i4(p, idx);
        p = f_i8(p, value);
        p = f_h32(p, script_hash);
        if (script) {
            p = be32(p, (uint32_t)slen);
            memcpy(p, script, slen);
            p += slen;
        } else {
            p = be32(p, 0xFFFFFFFFu); /* NULL */
        }
    } else {
        p = t_i64(p, u->block_id);
        *p++ = '\t';
        p = t_u64(p, tx_pos);
        *p++ = '\t';
        p = t_u64(p, idx);
        *p++ = '\t';
        p = t_i64(p, (int64_t)value);
        *p++ = '\t';
        p = t_h32(p, script_hash);
        *p++ = '\t';
        if (script) {
            *p++ = '\\';
            *p++ = '\\';
            *p++ = 'x';
            p = (uint8_t *)cd_hex_put((char *)p, script, slen);
        } else {
            *p++ = '\\';
            *p++ = 'N';
        }
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
        return cd_pg_fail(pg, r, what);
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
        rc = cd_pg_fail(pg, r, what);
    else
        PQclear(r);
    if (pg->conn)
        while ((r = PQgetResult(pg->conn)) != NULL)
            PQclear(r);
    if (rc == 0 && bad)
        rc = cd_pg_fail(pg, NULL, what);
    return rc;
}

static const char *const cols_tx = "block_id, tx_offset, tx_pos, tx_size, tx_hash";
static const char *const cols_in = "block_id, tx_pos, in_idx, prev_idx, prev_hash";
static const char *const cols_pd = "block_id, tx_pos, idx, flags, push_hash";
static const char *const cols_out = "block_id, tx_pos, idx, value, script_hash, script";

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
    int rc = cd_pg_q(pg, what, "BEGIN", 0, NULL, NULL, NULL, NULL);
    PGresult *r = NULL;
    if (u->tx_count == 0 && u->expect_txs) /* streaming: rows not produced yet */
        snprintf(x.c, sizeof(x.c), "%u", u->expect_txs);
    if (rc == 0)
        rc = cd_pg_qp(pg, PS_UNIT_CHECK, what, unit_check_sql, 4, x.v, NULL, NULL, &r);
    if (rc) {
        cd_pg_rollback(pg);
        return rc;
    }
    int same = PQgetvalue(r, 0, 0)[0] == 't', exists = atoi(PQgetvalue(r, 0, 1)) > 0;
    PQclear(r);
    if (!exists)
        return 0;
    cd_pg_rollback(pg);
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
    if (rc == 0)
        rc = copy_table(pg, u, "outputs", cols_out, &u->out);
    PGresult *r = NULL;
    if (rc == 0)
        rc = cd_pg_q(pg, what,
                     "INSERT INTO indexed_units (block_id, unit_no, first_tx, tx_count) "
                     "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                     4, x.v, NULL, NULL, &r);
    if (rc) {
        cd_pg_rollback(pg);
        return rc;
    }
    int inserted = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (inserted) {
        rc = cd_pg_q(pg, what, "COMMIT", 0, NULL, NULL, NULL, NULL);
        if (rc)
            cd_pg_rollback(pg);
        return rc;
    }
    /* a concurrent writer committed the same unit first */
    rc = cd_pg_q(pg, what,
                 "SELECT first_tx = $3 AND tx_count = $4 FROM indexed_units "
                 "WHERE block_id = $1 AND unit_no = $2",
                 4, x.v, NULL, NULL, &r);
    cd_pg_rollback(pg);
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
    return cd_pg_with_retry(pg, write_unit_op, (void *)u);
}

int cd_pg_unit_open(cd_pg *pg, cd_pg_unit *u)
{
    u->stream = NULL;
    u->stream_rc = 0;
    int rc = cd_pg_with_retry(pg, open_op, u);
    if (rc == 0)
        u->stream = pg;
    return rc;
}

static void stream_flush(cd_pg_unit *u, cd_pg_buf *b)
{
    if (u->stream_rc == 0) {
        const char *table = b == &u->tx   ? "transactions"
                            : b == &u->in ? "inputs"
                            : b == &u->pd ? "pushdata"
                                          : "outputs";
        const char *cols = b == &u->tx   ? cols_tx
                           : b == &u->in ? cols_in
                           : b == &u->pd ? cols_pd
                                         : cols_out;
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
        cd_pg_rollback(pg);
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
    cd_pg_rollback(pg);
}

/* ------------------------------------------------------------------ */
/* batches: several units in one transaction                          */
/* ------------------------------------------------------------------ */

static int batch_begin_op(cd_pg *pg, void *arg)
{
    (void)arg;
    return cd_pg_q(pg, "opening a batch", "BEGIN", 0, NULL, NULL, NULL, NULL);
}

int cd_pg_batch_begin(cd_pg *pg, cd_pg_unit *u)
{
    cd_pg_unit_reset(u, 0, 0, 0);
    u->n_marks = 0;
    u->mark_start = 0;
    int rc = cd_pg_with_retry(pg, batch_begin_op, NULL);
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
    rc = cd_pg_qp(pg, PS_UNIT_CHECK, "checking a unit marker", unit_check_sql, 4, x.v, NULL, NULL,
                  &r);
    if (rc) {
        if (rc == CD_PG_ERROR)
            cd_pg_rollback(pg);
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
    int rc = cd_pg_qp(pg, PS_BATCH_CHECK, "checking the unit markers of a batch", batch_check_sql,
                      4, vals, NULL, NULL, &r);
    for (int i = 0; i < 4; i++)
        free(a[i]);
    if (rc) {
        if (rc == CD_PG_ERROR)
            cd_pg_rollback(pg);
        return batch_rc(u, rc);
    }
    if ((size_t)PQntuples(r) != n) {
        int rows = PQntuples(r);
        PQclear(r);
        cd_pg_rollback(pg);
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
    if (rc == 0)
        rc = copy_table(pg, u, "outputs", cols_out, &u->out);
    if (rc)
        return rc;
    if (u->n_marks > 0) {
        char *a[4];
        for (int i = 0; i < 4; i++)
            a[i] = marker_array(u, i);
        const char *vals[4] = {a[0], a[1], a[2], a[3]};
        PGresult *r = NULL;
        rc = cd_pg_qp(
            pg, PS_MARKERS, "unit markers of a batch",
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
            cd_pg_rollback(pg);
            return 1;
        }
    }
    return cd_pg_q(pg, "committing a batch", "COMMIT", 0, NULL, NULL, NULL, NULL);
}

int cd_pg_batch_commit(cd_pg *pg, cd_pg_unit *u)
{
    int rc = stream_end(pg, u);
    if (rc)
        return rc;
    rc = batch_commit_op(pg, u);
    if (rc < 0 && rc != RETRY)
        cd_pg_rollback(pg);
    return rc == RETRY ? CD_PG_EAGAIN : rc;
}

void cd_pg_batch_cancel(cd_pg *pg, cd_pg_unit *u)
{
    u->stream = NULL;
    cd_pg_rollback(pg);
}
