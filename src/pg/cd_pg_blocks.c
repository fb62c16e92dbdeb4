/*
 * cd_pg_blocks.c - blocks and the indexed tip: registering blocks, unit
 * markers, completing a block (coverage and merkle root of the stored txids
 * checked) and advancing index_tip, purging a wrong copy's rows, recovery
 * queries (the secondary indexes: cd_pg_indexes.c). See cd_pg.h.
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
    const char *vals[6] = {
        (const char *)x->hash, (const char *)x->header + 4, h, (const char *)x->header, t, s};
    int lens[6] = {32, 32, 0, 80, 0, 0};
    int fmts[6] = {1, 1, 0, 1, 0, 0};
    PGresult *r = NULL;
    int rc = cd_pg_qp(pg, PS_REGISTER, "registering a block",
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
    return cd_pg_with_retry(pg, reg_op, &a);
}

/* Within the caller's batch transaction (cd_pg.h). */
int cd_pg_batch_register(cd_pg *pg, const uint8_t hash[32], const uint8_t header[80],
                         int32_t height, uint64_t tx_count, uint64_t size, int64_t *block_id)
{
    if (!pg->conn)
        return CD_PG_EAGAIN;
    struct reg_arg a = {hash, header, height, tx_count, size, block_id};
    int rc = reg_op(pg, &a);
    if (rc == CD_PG_ERROR)
        cd_pg_rollback(pg);
    return rc == RETRY ? CD_PG_EAGAIN : rc;
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
    int rc = cd_pg_qp(pg, PS_REGISTER_MANY, "registering blocks",
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
    return cd_pg_with_retry(pg, regs_op, &a);
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
    int rc = cd_pg_q(pg, "marking a block indexed",
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
    return cd_pg_with_retry(pg, set_indexed_op, &a);
}

static int tip_op(cd_pg *pg, void *a)
{
    int64_t id = *(int64_t *)a;
    char b[24];
    snprintf(b, sizeof(b), "%" PRId64, id);
    const char *vals[1] = {b};
    int rc = cd_pg_q(pg, "advancing the tip", "BEGIN", 0, NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = cd_pg_q(pg, "advancing the tip", "SELECT pg_advisory_xact_lock(" TIP_LOCK_KEY ")", 0,
                     NULL, NULL, NULL, NULL);
    if (rc) {
        cd_pg_rollback(pg);
        return rc;
    }
    PGresult *r = NULL;
    rc = cd_pg_q(pg, "advancing the tip",
                 "SELECT b.indexed, b.height, t.block_id, t.height, "
                 "       (tb.block_hash = b.prev_hash), b.on_best_chain "
                 "FROM blocks b LEFT JOIN index_tip t ON true "
                 "LEFT JOIN blocks tb ON tb.block_id = t.block_id "
                 "WHERE b.block_id = $1 FOR UPDATE OF b",
                 1, vals, NULL, NULL, &r);
    if (rc) {
        cd_pg_rollback(pg);
        return rc;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        cd_pg_rollback(pg);
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
        cd_pg_rollback(pg);
        return 0;
    }
    if (!indexed || (has_tip && (height != tip_h + 1 || !links))) {
        cd_pg_rollback(pg);
        cd_log_warn("postgres: cannot advance the tip (height %ld) to block_id %s at height "
                    "%ld: %s",
                    tip_h, b, height, !indexed ? "block not indexed" : "not the next block");
        return CD_PG_EINCOMPLETE;
    }
    rc = cd_pg_q(pg, "advancing the tip",
                 "INSERT INTO index_tip (singleton, block_id, height) "
                 "SELECT true, block_id, height FROM blocks WHERE block_id = $1 "
                 "ON CONFLICT (singleton) DO UPDATE SET block_id = EXCLUDED.block_id, "
                 "height = EXCLUDED.height, updated_at = now()",
                 1, vals, NULL, NULL, NULL);
    if (rc == 0)
        rc = cd_pg_q(pg, "advancing the tip",
                     "UPDATE blocks SET on_best_chain = true WHERE block_id = $1", 1, vals, NULL,
                     NULL, NULL);
    if (rc == 0)
        rc = cd_pg_q(pg, "advancing the tip", "COMMIT", 0, NULL, NULL, NULL, NULL);
    if (rc)
        cd_pg_rollback(pg);
    return rc;
}

int cd_pg_tip_advance(cd_pg *pg, int64_t block_id)
{
    return cd_pg_with_retry(pg, tip_op, &block_id);
}

static int tip_height_op(cd_pg *pg, void *a)
{
    PGresult *r = NULL;
    int rc = cd_pg_q(pg, "reading the tip", "SELECT coalesce(max(height), -1) FROM index_tip", 0,
                     NULL, NULL, NULL, &r);
    if (rc)
        return rc;
    *(int32_t *)a = (int32_t)strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

int cd_pg_tip_height(cd_pg *pg, int32_t *height)
{
    return cd_pg_with_retry(pg, tip_height_op, height);
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
    int rc = cd_pg_q(pg, "reading a unit marker",
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
    return cd_pg_with_retry(pg, done_op, &a);
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
        int rc =
            cd_pg_qp(pg, PS_ADV_NEXT, "advancing the tip",
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
    int rc = cd_pg_qp(pg, PS_COMPLETE_READ, "completing blocks", complete_read_sql, 1, vals, NULL,
                      NULL, &r);
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
        rc =
            cd_pg_qp(pg, PS_SET_INDEXED, "completing blocks",
                     "UPDATE blocks b SET indexed = true, n_units = x.n, indexed_at = now() "
                     "FROM unnest($1::bigint[], $2::integer[]) AS x(id, n) WHERE b.block_id = x.id",
                     2, v2, NULL, NULL, NULL);
        free(a);
        free(u);
    }
    if (rc == 0 && n_bad > 0) {
        char *a = int_array(bad, n_bad);
        const char *v1[1] = {a};
        rc = cd_pg_qp(
            pg, PS_PURGE_MANY, "removing the rows of a wrong block copy",
            "SELECT count(*) FILTER (WHERE cd_block_purge(id)) FROM unnest($1::bigint[]) id", 1, v1,
            NULL, NULL, NULL);
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
    int rc = cd_pg_q(pg, "completing a block", "BEGIN", 0, NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = cd_pg_qp(pg, PS_TIP_LOCK, "completing a block",
                      "SELECT pg_advisory_xact_lock(" TIP_LOCK_KEY ")", 0, NULL, NULL, NULL, NULL);
    int emerkle = 0;
    if (rc == 0)
        rc = complete_locked(pg, x, &emerkle);
    if (rc == 0)
        rc = advance_locked(pg, x->height);
    if (rc == 0)
        rc = cd_pg_q(pg, "completing a block", "COMMIT", 0, NULL, NULL, NULL, NULL);
    if (rc)
        cd_pg_rollback(pg);
    return rc ? rc : emerkle ? CD_PG_EMERKLE : 0;
}

int cd_pg_block_try_complete(cd_pg *pg, int64_t block_id, int *indexed)
{
    struct complete_arg a = {&block_id, 1, indexed, NULL, NULL};
    return cd_pg_with_retry(pg, complete_op, &a);
}

int cd_pg_blocks_try_complete(cd_pg *pg, const int64_t *block_ids, size_t n, int32_t *tip_height,
                              uint8_t *purged)
{
    if (n == 0)
        return CD_PG_OK;
    struct complete_arg a = {block_ids, n, NULL, tip_height, purged};
    return cd_pg_with_retry(pg, complete_op, &a);
}

struct ids_arg {
    const uint8_t (*hashes)[32];
    size_t n;
    int64_t *ids;
};

static int ids_op(cd_pg *pg, void *a)
{
    struct ids_arg *x = a;
    /* "hex,hex,...": one text parameter, no bytea array literal to escape */
    char *list = cd_xmalloc(x->n * 65 + 1);
    for (size_t i = 0; i < x->n; i++) {
        cd_hex_encode(list + 65 * i, x->hashes[i], 32);
        list[65 * i + 64] = i + 1 < x->n ? ',' : '\0';
    }
    const char *vals[1] = {list};
    PGresult *r = NULL;
    int rc = cd_pg_q(pg, "reading block ids",
                     "SELECT b.block_id FROM unnest(string_to_array($1, ',')) WITH ORDINALITY "
                     "AS q(h, i) LEFT JOIN blocks b ON b.block_hash = decode(q.h, 'hex') "
                     "ORDER BY q.i",
                     1, vals, NULL, NULL, &r);
    free(list);
    if (rc)
        return rc;
    if ((size_t)PQntuples(r) != x->n) {
        PQclear(r);
        return CD_PG_ERROR;
    }
    for (size_t i = 0; i < x->n; i++)
        x->ids[i] = PQgetisnull(r, (int)i, 0) ? -1 : strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
    PQclear(r);
    return 0;
}

int cd_pg_block_ids(cd_pg *pg, const uint8_t (*hashes)[32], size_t n, int64_t *ids)
{
    if (n == 0)
        return CD_PG_OK;
    struct ids_arg a = {hashes, n, ids};
    return cd_pg_with_retry(pg, ids_op, &a);
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
    int rc = cd_pg_q(pg, "removing a block copy's rows", "BEGIN", 0, NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = cd_pg_qp(pg, PS_TIP_LOCK, "removing a block copy's rows",
                      "SELECT pg_advisory_xact_lock(" TIP_LOCK_KEY ")", 0, NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = cd_pg_q(pg, "removing a block copy's rows",
                     "SELECT count(*) FILTER (WHERE cd_block_purge(b.block_id)) FROM blocks b "
                     "WHERE b.block_hash = $1 OR b.block_id = $2::bigint",
                     2, vals, lens, fmts, &r);
    if (rc == 0) {
        if (x->purged)
            *x->purged = atoi(PQgetvalue(r, 0, 0)) > 0;
        PQclear(r);
        rc = cd_pg_q(pg, "removing a block copy's rows", "COMMIT", 0, NULL, NULL, NULL, NULL);
    }
    if (rc)
        cd_pg_rollback(pg);
    return rc;
}

int cd_pg_block_purge(cd_pg *pg, const uint8_t hash[32], int64_t block_id, int *purged)
{
    static const uint8_t none[32];
    struct purge_arg a = {hash ? hash : none, hash ? -1 : block_id, purged};
    if (purged)
        *purged = 0;
    return cd_pg_with_retry(pg, purge_op, &a);
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
    int rc = cd_pg_q(pg, "reading blocks with unverified rows",
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
    return cd_pg_with_retry(pg, unindexed_op, &a);
}

static int advance_all_op(cd_pg *pg, void *a)
{
    int rc = cd_pg_q(pg, "advancing the tip", "BEGIN", 0, NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = cd_pg_q(pg, "advancing the tip", "SELECT pg_advisory_xact_lock(" TIP_LOCK_KEY ")", 0,
                     NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = advance_locked(pg, a);
    if (rc == 0)
        rc = cd_pg_q(pg, "advancing the tip", "COMMIT", 0, NULL, NULL, NULL, NULL);
    if (rc)
        cd_pg_rollback(pg);
    return rc;
}

int cd_pg_tip_advance_all(cd_pg *pg, int32_t *height)
{
    return cd_pg_with_retry(pg, advance_all_op, height);
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
    int rc = cd_pg_q(pg, "reading unit markers",
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
    return cd_pg_with_retry(pg, gaps_op, &a);
}
