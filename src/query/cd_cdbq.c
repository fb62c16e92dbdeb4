/*
 * cd_cdbq.c - the queries of the ConduitDB-compatible routes (cd_cdbq.h).
 *
 * Why it exists: see cd_cdbq.h. Parameters go in binary (keys and txids as
 * one concatenated bytea, split in SQL, so a request of 10,000 keys is one
 * parameter, not 10,000), results come back binary.
 */
#include "cd_cdbq.h"

#include "cd_pg.h"
#include "cd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- blocks ---- */

static int blocks_rows(PGresult *r, cd_cdbq_block *out, size_t max, size_t *n)
{
    size_t rows = (size_t)PQntuples(r);
    *n = 0;
    for (size_t i = 0; i < rows && i < max; i++) {
        cd_cdbq_block *b = &out[i];
        if (cd_pg_col_bytes(r, (int)i, 0, b->hash, 32) != 0 || cd_pg_col_bytes(r, (int)i, 1, b->header, 80))
            return CD_LOOKUP_ECORRUPT;
        b->height = (int32_t)cd_pg_col_int(r, (int)i, 2);
        b->tx_count = cd_pg_col_int(r, (int)i, 3);
        b->best = PQgetvalue(r, (int)i, 4)[0] != 0;
        (*n)++;
    }
    return CD_LOOKUP_OK;
}

int cd_cdbq_chain_tips(PGconn *pg, cd_cdbq_block **out, size_t *n, char *err, size_t errlen)
{
    /* a hash anti-join: one scan of `blocks` whatever its size (no index on
     * prev_hash is needed for a route clients call rarely) */
    static const char sql[] =
        "SELECT b.block_hash, b.header, b.height, b.tx_count, "
        "       b.block_id = (SELECT block_id FROM index_tip) "
        "FROM blocks b WHERE b.indexed AND NOT EXISTS "
        "  (SELECT 1 FROM blocks c WHERE c.prev_hash = b.block_hash AND c.indexed) "
        "ORDER BY b.height DESC, b.block_id";
    *out = NULL;
    *n = 0;
    PGresult *r = PQexecParams(pg, sql, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cd_pg_errline(err, errlen, "chain tips", pg, r);
        PQclear(r);
        return CD_LOOKUP_EDB;
    }
    size_t rows = (size_t)PQntuples(r);
    int rc = CD_LOOKUP_OK;
    if (rows) {
        *out = cd_xcalloc(rows, sizeof(**out));
        rc = blocks_rows(r, *out, rows, n);
    }
    PQclear(r);
    if (rc != CD_LOOKUP_OK)
        snprintf(err, errlen, "chain tips: a block row of an unexpected shape");
    return rc;
}

int cd_cdbq_headers_from(PGconn *pg, int32_t from, uint32_t count, cd_cdbq_block *out, size_t *n,
                         char *err, size_t errlen)
{
    static const char sql[] =
        "SELECT block_hash, header, height, tx_count, true FROM blocks "
        "WHERE on_best_chain AND height >= $1::int8 AND height < $1::int8 + $2::int8 "
        "  AND height <= (SELECT height FROM index_tip) ORDER BY height";
    char a[16], b[16];
    snprintf(a, sizeof(a), "%d", (int)from);
    snprintf(b, sizeof(b), "%u", count);
    const char *vals[2] = {a, b};
    *n = 0;
    PGresult *r = PQexecParams(pg, sql, 2, NULL, vals, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cd_pg_errline(err, errlen, "headers by height", pg, r);
        PQclear(r);
        return CD_LOOKUP_EDB;
    }
    int rc = blocks_rows(r, out, count, n);
    PQclear(r);
    if (rc != CD_LOOKUP_OK)
        snprintf(err, errlen, "headers by height: a block row of an unexpected shape");
    return rc;
}

int cd_cdbq_block_get(PGconn *pg, const uint8_t hash[32], cd_cdbq_block *out, int *found, char *err,
                      size_t errlen)
{
    static const char sql[] = "SELECT block_hash, header, height, tx_count, on_best_chain "
                              "FROM blocks WHERE block_hash = $1 AND indexed";
    const char *vals[1] = {(const char *)hash};
    int lens[1] = {32}, fmts[1] = {1};
    size_t n = 0;
    *found = 0;
    PGresult *r = PQexecParams(pg, sql, 1, NULL, vals, lens, fmts, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cd_pg_errline(err, errlen, "block", pg, r);
        PQclear(r);
        return CD_LOOKUP_EDB;
    }
    int rc = blocks_rows(r, out, 1, &n);
    PQclear(r);
    if (rc != CD_LOOKUP_OK)
        snprintf(err, errlen, "block: a row of an unexpected shape");
    *found = n == 1;
    return rc;
}

/* ---- restoration ---- */

/* $1: the keys as a bytea[] literal (its size known to the planner, which
 * then probes pushdata_hash_idx once per key); $2: the kinds wanted (bits).
 * A spend is the best chain's (best_inputs), else a mempool one
 * (mempool_inputs holds no confirmed spend). The locking tx and the
 * best-chain spend are found per row, by LATERAL subqueries the planner does
 * not flatten (LIMIT 1 on transactions' primary key; OFFSET 0 for the spend,
 * which may be more than one row): joined, with transactions and inputs
 * range-partitioned on block_id, the planner costs a probe of every
 * partition per row and hash-joins a scan of every partition instead, a
 * cost in proportion to the index rather than to the keys' rows (sql/018,
 * docs/PERFORMANCE.md "Lookups over many partitions"). The input an INPUT
 * key was pushed in is found per row too (only inputs_block_brin serves
 * its (block_id, tx_pos, in_idx), or inputs_block_idx where key_rows is on,
 * sql/021: joined, the planner scans all of inputs, and pushdata along with
 * it, to hash them). */
static const char restore_sql[] =
    "DECLARE cd_cdbq_restore NO SCROLL CURSOR FOR "
    "SELECT DISTINCT m.flags, m.push_hash, m.lock_tx, m.lock_idx, m.unlock_tx, m.unlock_idx, "
    "       m.height, m.tx_pos, m.idx "
    "FROM ("
    "  SELECT p.flags, p.push_hash, t.tx_hash AS lock_tx, p.idx AS lock_idx, "
    "         coalesce(s.spend_tx_hash, mi.tx_hash) AS unlock_tx, "
    "         coalesce(s.in_idx, mi.in_idx) AS unlock_idx, b.height, p.tx_pos, p.idx "
    "  FROM pushdata p "
    "  JOIN blocks b ON b.block_id = p.block_id AND b.on_best_chain "
    "  CROSS JOIN LATERAL (SELECT x.tx_hash FROM transactions x "
    "    WHERE x.block_id = p.block_id AND x.tx_pos = p.tx_pos LIMIT 1) t "
    "  LEFT JOIN LATERAL (SELECT s.spend_tx_hash, s.in_idx FROM best_inputs s "
    "    WHERE s.prev_hash = t.tx_hash AND s.prev_idx = p.idx OFFSET 0) s ON true "
    "  LEFT JOIN mempool_inputs mi ON mi.prev_hash = t.tx_hash AND mi.prev_idx = p.idx "
    "  WHERE p.push_hash = ANY($1::bytea[]) AND p.flags IN (1, 4) "
    "    AND (p.flags & $2::int) <> 0 "
    "  UNION ALL "
    "  SELECT p.flags, p.push_hash, i.prev_hash, i.prev_idx, t.tx_hash, p.idx, "
    "         b.height, p.tx_pos, p.idx "
    "  FROM pushdata p "
    "  JOIN blocks b ON b.block_id = p.block_id AND b.on_best_chain "
    "  CROSS JOIN LATERAL (SELECT x.tx_hash FROM transactions x "
    "    WHERE x.block_id = p.block_id AND x.tx_pos = p.tx_pos LIMIT 1) t "
    "  CROSS JOIN LATERAL (SELECT i.prev_hash, i.prev_idx FROM inputs i "
    "    WHERE i.block_id = p.block_id AND i.tx_pos = p.tx_pos AND i.in_idx = p.idx "
    "    OFFSET 0) i "
    "  WHERE p.push_hash = ANY($1::bytea[]) AND p.flags = 2 "
    "    AND (2 & $2::int) <> 0"
    ") m ORDER BY m.height, m.tx_pos, m.flags, m.idx, m.push_hash, m.lock_tx, m.lock_idx";

static void exec_quiet(PGconn *pg, const char *sql)
{
    PQclear(PQexec(pg, sql));
}

int cd_cdbq_restore_open(PGconn *pg, const uint8_t *keys, size_t n, unsigned kinds, char *err,
                         size_t errlen)
{
    PGresult *r = PQexec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        cd_pg_errline(err, errlen, "restoration: begin", pg, r);
        PQclear(r);
        return CD_LOOKUP_EDB;
    }
    PQclear(r);
    /* the whole result is read: plan for all of it, not a fast start */
    exec_quiet(pg, "SET LOCAL cursor_tuple_fraction = 1.0");
    /* {"\\x<hex>",...}: 70 bytes a key */
    char *lit = cd_xmalloc(n * 70 + 3), *w = lit;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *w++ = ',';
        memcpy(w, "\"\\\\x", 4);
        w = cd_hex_put(w + 4, keys + i * 32, 32);
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    char k[16];
    snprintf(k, sizeof(k), "%u", kinds);
    const char *vals[2] = {lit, k};
    r = PQexecParams(pg, restore_sql, 2, NULL, vals, NULL, NULL, 1);
    free(lit);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        cd_pg_errline(err, errlen, "restoration query", pg, r);
        PQclear(r);
        exec_quiet(pg, "ROLLBACK");
        return CD_LOOKUP_EDB;
    }
    PQclear(r);
    return CD_LOOKUP_OK;
}

int cd_cdbq_restore_fetch(PGconn *pg, cd_cdbq_match *out, size_t max, size_t *n, char *err,
                          size_t errlen)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "FETCH %zu FROM cd_cdbq_restore", max);
    *n = 0;
    PGresult *r = PQexecParams(pg, sql, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cd_pg_errline(err, errlen, "restoration fetch", pg, r);
        PQclear(r);
        return CD_LOOKUP_EDB;
    }
    int rows = PQntuples(r);
    for (int i = 0; i < rows && (size_t)i < max; i++) {
        cd_cdbq_match *m = &out[i];
        memset(m, 0, sizeof(*m));
        m->flags = (uint32_t)cd_pg_col_int(r, i, 0);
        if (cd_pg_col_bytes(r, i, 1, m->key, 32) != 0 || cd_pg_col_bytes(r, i, 2, m->lock_tx, 32) != 0) {
            PQclear(r);
            snprintf(err, errlen, "restoration: a row of an unexpected shape");
            return CD_LOOKUP_ECORRUPT;
        }
        m->lock_idx = (uint32_t)cd_pg_col_int(r, i, 3);
        m->spent = !PQgetisnull(r, i, 4);
        if (m->spent) {
            if (cd_pg_col_bytes(r, i, 4, m->unlock_tx, 32) != 0) {
                PQclear(r);
                snprintf(err, errlen, "restoration: a spend of an unexpected shape");
                return CD_LOOKUP_ECORRUPT;
            }
            m->unlock_idx = (uint32_t)cd_pg_col_int(r, i, 5);
        } else {
            m->unlock_idx = UINT32_MAX;
        }
        (*n)++;
    }
    PQclear(r);
    return CD_LOOKUP_OK;
}

void cd_cdbq_restore_close(PGconn *pg)
{
    if (PQtransactionStatus(pg) != PQTRANS_IDLE)
        exec_quiet(pg, "ROLLBACK");
}

/* ---- output spends ---- */

int cd_cdbq_output_spends(PGconn *pg, const uint8_t *txids, const uint32_t *idx, size_t n,
                          cd_cdbq_spend **out, size_t *nout, char *err, size_t errlen)
{
    /* $1: txids concatenated; $2: the output indexes as 4-byte big-endian
     * integers concatenated (no array literal to format and parse). OFFSET
     * 0 keeps the spends a probe per outpoint (pulled up into a join, the
     * planner hash-joins a scan of all inputs once they are partitioned:
     * see restore_sql). Not prepared: one statement answers a batch of up
     * to 10,000 outpoints, whose size the plan depends on, so its planning
     * is paid per batch, not per key. */
    static const char spends_sql[] =
        "WITH o AS (SELECT i, substr($1::bytea, i * 32 + 1, 32) AS h, "
        "  (get_byte($2::bytea, i * 4) << 24) | (get_byte($2::bytea, i * 4 + 1) << 16) "
        "  | (get_byte($2::bytea, i * 4 + 2) << 8) | get_byte($2::bytea, i * 4 + 3) AS n "
        "  FROM generate_series(0, length($2::bytea) / 4 - 1) AS i) "
        "SELECT a.prev_hash, a.prev_idx, a.spend_tx_hash, a.in_idx, a.block_hash "
        "FROM o JOIN LATERAL (SELECT * FROM all_inputs a WHERE a.prev_hash = o.h "
        "  AND a.prev_idx = o.n OFFSET 0) a ON true ORDER BY o.i, a.height IS NULL";
    *out = NULL;
    *nout = 0;
    if (n == 0)
        return CD_LOOKUP_OK;
    uint8_t *ib = cd_xmalloc(n * 4);
    for (size_t i = 0; i < n; i++)
        cd_put_be32(ib + i * 4, idx[i]);
    const char *vals[2] = {(const char *)txids, (const char *)ib};
    int lens[2] = {(int)(n * 32), (int)(n * 4)}, fmts[2] = {1, 1};
    PGresult *r = PQexecParams(pg, spends_sql, 2, NULL, vals, lens, fmts, 1);
    free(ib);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cd_pg_errline(err, errlen, "output spends", pg, r);
        PQclear(r);
        return CD_LOOKUP_EDB;
    }
    int rows = PQntuples(r);
    if (rows > 0)
        *out = cd_xcalloc((size_t)rows, sizeof(**out));
    for (int i = 0; i < rows; i++) {
        cd_cdbq_spend *s = &(*out)[i];
        if (cd_pg_col_bytes(r, i, 0, s->out_tx, 32) != 0 || cd_pg_col_bytes(r, i, 2, s->in_tx, 32) != 0) {
            PQclear(r);
            free(*out);
            *out = NULL;
            snprintf(err, errlen, "output spends: a row of an unexpected shape");
            return CD_LOOKUP_ECORRUPT;
        }
        s->out_idx = (uint32_t)cd_pg_col_int(r, i, 1);
        s->in_idx = (uint32_t)cd_pg_col_int(r, i, 3);
        s->mempool = PQgetisnull(r, i, 4);
        if (!s->mempool && cd_pg_col_bytes(r, i, 4, s->block_hash, 32) != 0) {
            PQclear(r);
            free(*out);
            *out = NULL;
            snprintf(err, errlen, "output spends: a block hash of an unexpected shape");
            return CD_LOOKUP_ECORRUPT;
        }
    }
    *nout = (size_t)rows;
    PQclear(r);
    return CD_LOOKUP_OK;
}
