/*
 * cd_cdbq_notify.c - ConduitDB's registrations and /ws notices in
 * PostgreSQL (cd_cdbq_notify.h).
 *
 * Why it exists: the registration routes and the websocket feeder of the
 * HTTP servers (src/api/cd_http_cdb_notify.c) need SQL; it lives in the
 * query room like every read-side query. Registrations are changed by the
 * functions of sql/011_cdb_notify.sql (one call, one transaction, all or
 * nothing); notices are the event log (sql/009_events.sql) joined with the
 * registrations, so a notice exists only for a committed change.
 * Parameters go in binary as one concatenated bytea each (10,000 keys are
 * one parameter), split in SQL.
 */
#include "cd_cdbq_notify.h"

#include "cd_pg.h"
#include "cd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs a registration function. A refusal raised by it (23505 / P0002 with
 * ConduitDB's reason as the message) is EINPUT with that reason. */
static int run_change(PGconn *pg, const char *sql, int n, const char *const *vals, const int *lens,
                      const char *what, char *err, size_t errlen)
{
    int fmts[4] = {1, 1, 1, 1};
    PGresult *r = PQexecParams(pg, sql, n, NULL, vals, lens, fmts, 1);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        PQclear(r);
        return CD_LOOKUP_OK;
    }
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state && (!strcmp(state, "23505") || !strcmp(state, "P0002"))) {
        const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        snprintf(err, errlen, "%s", m ? m : "refused");
        PQclear(r);
        return CD_LOOKUP_EINPUT;
    }
    cd_pg_errline(err, errlen, what, pg, r);
    PQclear(r);
    return CD_LOOKUP_EDB;
}

/* bytea $3 of 32-byte keys -> bytea[] in SQL */
#define KEYS_SQL(p)                                                                                \
    "ARRAY(SELECT substr(" p "::bytea, i * 32 + 1, 32) FROM generate_series(0, length(" p          \
    "::bytea) / 32 - 1) AS i ORDER BY i)"
#define U32S_SQL(p)                                                                                \
    "ARRAY(SELECT ((get_byte(" p "::bytea, i * 4)::bigint << 24) | (get_byte(" p                   \
    "::bytea, i * 4 + 1) << 16) | (get_byte(" p "::bytea, i * 4 + 2) << 8) | get_byte(" p          \
    "::bytea, i * 4 + 3)) FROM generate_series(0, length(" p "::bytea) / 4 - 1) AS i ORDER BY i)"

int cd_cdbq_filter_add(PGconn *pg, int64_t account, int64_t created, const uint8_t *keys,
                       const uint32_t *durations, size_t n, char *err, size_t errlen)
{
    static const char sql[] = "SELECT cdb_filter_add($1::int8, $2::int8, " KEYS_SQL(
        "$3") ", " U32S_SQL("$4") "::integer[])";
    uint8_t a[8], c[8];
    cd_put_be64(a, (uint64_t)account);
    cd_put_be64(c, (uint64_t)created);
    uint8_t *d = cd_xmalloc(n * 4 + 1);
    for (size_t i = 0; i < n; i++)
        cd_put_be32(d + i * 4, durations[i]);
    const char *vals[4] = {(const char *)a, (const char *)c, (const char *)keys, (const char *)d};
    int lens[4] = {8, 8, (int)(n * 32), (int)(n * 4)};
    int rc = run_change(pg, sql, 4, vals, lens, "tip-filter registration", err, errlen);
    free(d);
    return rc;
}

int cd_cdbq_filter_delete(PGconn *pg, int64_t account, const uint8_t *keys, size_t n, char *err,
                          size_t errlen)
{
    static const char sql[] = "SELECT cdb_filter_delete($1::int8, " KEYS_SQL("$2") ")";
    uint8_t a[8];
    cd_put_be64(a, (uint64_t)account);
    const char *vals[2] = {(const char *)a, (const char *)keys};
    int lens[2] = {8, (int)(n * 32)};
    return run_change(pg, sql, 2, vals, lens, "tip-filter deletion", err, errlen);
}

int cd_cdbq_spend_watch(PGconn *pg, int add, const uint8_t *txids, const uint32_t *idx, size_t n,
                        char *err, size_t errlen)
{
    static const char sql_add[] =
        "SELECT cdb_spend_add(" KEYS_SQL("$1") ", " U32S_SQL("$2") "::integer[])";
    static const char sql_rm[] =
        "SELECT cdb_spend_remove(" KEYS_SQL("$1") ", " U32S_SQL("$2") "::integer[])";
    uint8_t *ib = cd_xmalloc(n * 4 + 1);
    for (size_t i = 0; i < n; i++)
        cd_put_be32(ib + i * 4, idx[i]);
    const char *vals[2] = {(const char *)txids, (const char *)ib};
    int lens[2] = {(int)(n * 32), (int)(n * 4)};
    int rc = run_change(pg, add ? sql_add : sql_rm, 2, vals, lens, "output-spend registration", err,
                        errlen);
    free(ib);
    return rc;
}

int cd_cdbq_spend_clear(PGconn *pg, char *err, size_t errlen)
{
    return run_change(pg, "SELECT cdb_spend_clear()", 0, NULL, NULL, "output-spend clear", err,
                      errlen);
}

static int one_int(PGconn *pg, const char *sql, const char *what, int64_t *v, char *err,
                   size_t errlen)
{
    PGresult *r = PQexecParams(pg, sql, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        cd_pg_errline(err, errlen, what, pg, r);
        PQclear(r);
        return CD_LOOKUP_EDB;
    }
    *v = cd_pg_col_int(r, 0, 0);
    PQclear(r);
    return CD_LOOKUP_OK;
}

int cd_cdbq_expire(PGconn *pg, int *n, char *err, size_t errlen)
{
    int64_t v = 0;
    int rc = one_int(pg, "SELECT cdb_expire()::int8", "tip-filter expiry", &v, err, errlen);
    *n = (int)v;
    return rc;
}

int cd_cdbq_events_head(PGconn *pg, int64_t *id, char *err, size_t errlen)
{
    return one_int(pg, "SELECT coalesce(max(id), 0)::int8 FROM events", "events", id, err, errlen);
}

/* $1 after, $2 up to (both ids); $3 true: matches only. Columns: event,
 * kind, block, out_tx, out_idx, in_tx, in_idx, account, key, tx, idx,
 * flags. block, in_tx and tx come in display order (decode of the event's
 * hex) and are reversed here: cd_txid() in SQL reverses with an aggregate
 * over 32 rows per call, ~50 us each, which made a read of 256 events
 * take ~50 ms (docs/PERFORMANCE.md, "ConduitDB reference-server delivery"). sql/009 announces
 * a watched match of a block leaving the best chain again with "state":
 * "orphaned" (and the block that left): those are the *_GONE notices. */
static const char notices_sql[] =
    "WITH ev AS (SELECT id, at, kind, body, body->>'state' = 'orphaned' AS gone FROM events "
    "  WHERE id > $1::int8 AND id <= $2::int8 AND kind IN ('spend', 'key')) "
    "SELECT e.id, CASE WHEN e.gone THEN 3 ELSE 1 END AS kind, decode(e.body->>'block', 'hex'), "
    "  w.prev_hash, w.prev_idx::int8, decode(e.body->>'spend_txid', 'hex'), "
    "  (e.body->>'in_idx')::int8, NULL::int8 AS account, NULL::bytea, NULL::bytea, NULL::int8, "
    "  NULL::int8 "
    "FROM ev e JOIN cdb_spend_watches w ON w.prev_hash = cd_txid(e.body->>'txid') "
    "  AND w.prev_idx = (e.body->>'vout')::int8 "
    "WHERE e.kind = 'spend' AND NOT $3::bool "
    "UNION ALL "
    "SELECT e.id, CASE WHEN e.gone THEN 4 ELSE 2 END, decode(e.body->>'block', 'hex'), NULL, "
    "  NULL, NULL, NULL, f.account_id, f.push_hash, decode(e.body->>'txid', 'hex'), "
    "  (e.body->>'idx')::int8, (e.body->>'flags')::int8 "
    "FROM ev e JOIN cdb_tip_filters f ON f.push_hash = decode(e.body->>'key', 'hex') "
    "  AND f.expires_at > e.at "
    "WHERE e.kind = 'key' "
    "ORDER BY 1, 8";

/* Display order <-> internal order of a 32-byte hash. */
static void rev32(uint8_t h[32])
{
    for (int i = 0; i < 16; i++) {
        uint8_t t = h[i];
        h[i] = h[31 - i];
        h[31 - i] = t;
    }
}

static int read_notices(PGconn *pg, int64_t after, int max, int matches_only,
                        cd_cdbq_notice **out, size_t *n, int64_t *last, int *full, char *err,
                        size_t errlen)
{
    *out = NULL;
    *n = 0;
    *last = after;
    *full = 0;
    /* the id of the max-th event after `after`: events commit in id order
     * (sql/009's advisory lock), so nothing later can take an id <= it */
    uint8_t a[8], m[8], u[8];
    cd_put_be64(a, (uint64_t)after);
    cd_put_be64(m, (uint64_t)max);
    const char *v1[2] = {(const char *)a, (const char *)m};
    int l1[2] = {8, 8}, f1[2] = {1, 1};
    PGresult *r = PQexecParams(pg,
                               "SELECT coalesce(max(id), $1::int8), count(*) FROM (SELECT id "
                               "FROM events WHERE id > $1::int8 ORDER BY id LIMIT $2::int8) x",
                               2, NULL, v1, l1, f1, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        cd_pg_errline(err, errlen, "events", pg, r);
        PQclear(r);
        return CD_LOOKUP_EDB;
    }
    int64_t upto = cd_pg_col_int(r, 0, 0);
    *full = cd_pg_col_int(r, 0, 1) >= max;
    PQclear(r);
    if (upto <= after)
        return CD_LOOKUP_OK;
    cd_put_be64(u, (uint64_t)upto);
    const uint8_t mo = matches_only ? 1 : 0; /* bool, binary: one byte */
    const char *v2[3] = {(const char *)a, (const char *)u, (const char *)&mo};
    int l2[3] = {8, 8, 1}, f2[3] = {1, 1, 1};
    r = PQexecParams(pg, notices_sql, 3, NULL, v2, l2, f2, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cd_pg_errline(err, errlen, "notices", pg, r);
        PQclear(r);
        return CD_LOOKUP_EDB;
    }
    int rows = PQntuples(r);
    cd_cdbq_notice *o = rows ? cd_xcalloc((size_t)rows, sizeof(*o)) : NULL;
    for (int i = 0; i < rows; i++) {
        cd_cdbq_notice *x = &o[i];
        x->event = cd_pg_col_int(r, i, 0);
        x->kind = (int)cd_pg_col_int(r, i, 1);
        x->mempool = PQgetisnull(r, i, 2);
        int bad = !x->mempool && cd_pg_col_bytes(r, i, 2, x->block, 32) != 0;
        if (!x->mempool)
            rev32(x->block);
        if (x->kind == CD_CDBQ_N_SPEND || x->kind == CD_CDBQ_N_SPEND_GONE) {
            bad |= cd_pg_col_bytes(r, i, 3, x->out_tx, 32) != 0 || cd_pg_col_bytes(r, i, 5, x->in_tx, 32) != 0;
            x->out_idx = (uint32_t)cd_pg_col_int(r, i, 4);
            x->in_idx = (uint32_t)cd_pg_col_int(r, i, 6);
            rev32(x->in_tx);
        } else if (x->kind == CD_CDBQ_N_MATCH || x->kind == CD_CDBQ_N_MATCH_GONE) {
            bad |= cd_pg_col_bytes(r, i, 8, x->key, 32) != 0 || cd_pg_col_bytes(r, i, 9, x->tx, 32) != 0;
            x->account = cd_pg_col_int(r, i, 7);
            rev32(x->tx);
            x->idx = (uint32_t)cd_pg_col_int(r, i, 10);
            x->flags = (uint32_t)cd_pg_col_int(r, i, 11);
        } else {
            bad = 1;
        }
        if (bad) {
            snprintf(err, errlen, "notices: a row of an unexpected shape (event %lld)",
                     (long long)x->event);
            free(o);
            PQclear(r);
            return CD_LOOKUP_ECORRUPT;
        }
    }
    PQclear(r);
    *out = o;
    *n = (size_t)rows;
    *last = upto;
    return CD_LOOKUP_OK;
}

int cd_cdbq_notices(PGconn *pg, int64_t after, int max, cd_cdbq_notice **out, size_t *n,
                    int64_t *last, char *err, size_t errlen)
{
    int full;
    return read_notices(pg, after, max, 0, out, n, last, &full, err, errlen);
}

int cd_cdbq_match_notices(PGconn *pg, int64_t after, int max, cd_cdbq_notice **out, size_t *n,
                          int64_t *last, int *full, char *err, size_t errlen)
{
    return read_notices(pg, after, max, 1, out, n, last, full, err, errlen);
}

/* ---- ConduitDB's tip-filter messages ---- */

static int same_block(const cd_cdbq_notice *a, const cd_cdbq_notice *b)
{
    return a->mempool == b->mempool && (a->mempool || !memcmp(a->block, b->block, 32));
}

size_t cd_cdbq_notice_run(const cd_cdbq_notice *v, size_t n, size_t i)
{
    size_t j = i + 1;
    while (j < n && v[j].kind == v[i].kind && same_block(&v[j], &v[i]))
        j++;
    return j;
}

/* A block hash as display hex, or null for the mempool. */
static json_t *hash_or_null(const cd_cdbq_notice *v)
{
    char h[65];
    if (v->mempool)
        return json_null();
    cd_hex_encode_rev(h, v->block, 32);
    return json_string(h);
}

json_t *cd_cdbq_notice_json(const cd_cdbq_notice *v, size_t n, int has_account, int64_t account)
{
    int spends = v[0].kind == CD_CDBQ_N_SPEND_GONE;
    int orphaned = v[0].kind != CD_CDBQ_N_MATCH;
    json_t *list = json_array();
    size_t count = 0;
    for (size_t i = 0; i < n && list; i++) {
        char a[65], b[65];
        if (spends) {
            cd_hex_encode_rev(a, v[i].out_tx, 32);
            cd_hex_encode_rev(b, v[i].in_tx, 32);
            json_t *row = json_pack("[s, I, s, I, o]", a, (json_int_t)v[i].out_idx, b,
                                    (json_int_t)v[i].in_idx, hash_or_null(&v[i]));
            if (!row || json_array_append_new(list, row) != 0)
                goto oom;
            count++;
            continue;
        }
        if (has_account && v[i].account != account)
            continue;
        json_t *entry = NULL;
        for (size_t e = 0; e < json_array_size(list); e++) {
            json_t *x = json_array_get(list, e);
            if (json_integer_value(json_object_get(x, "accountId")) == v[i].account)
                entry = x;
        }
        if (!entry) {
            entry = json_pack("{s:I, s:[]}", "accountId", (json_int_t)v[i].account, "matches");
            if (!entry || json_array_append_new(list, entry) != 0)
                goto oom;
        }
        cd_hex_encode(a, v[i].key, 32); /* pushdata keys: natural order */
        cd_hex_encode_rev(b, v[i].tx, 32);
        json_t *m =
            json_pack("{s:s, s:s, s:I, s:I}", "pushDataHashHex", a, "transactionId", b,
                      "transactionIndex", (json_int_t)v[i].idx, "flags", (json_int_t)v[i].flags);
        if (!m || json_array_append_new(json_object_get(entry, "matches"), m) != 0)
            goto oom;
        count++;
    }
    if (!list || count == 0) {
        json_decref(list);
        return NULL;
    }
    json_t *o = json_pack("{s:o}", "blockId", hash_or_null(&v[0]));
    if (!o)
        goto oom;
    if (orphaned && json_object_set_new(o, "orphaned", json_true()) != 0) {
        json_decref(o);
        goto oom;
    }
    if (json_object_set_new(o, spends ? "outputSpends" : "entries", list) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
oom:
    json_decref(list);
    return NULL;
}
