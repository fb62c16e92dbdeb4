/*
 * test_pg.c - cd_pg against a real throw-away PostgreSQL (run through
 * tests/pgserver.py, which exports CD_TEST_PG_CONNINFO): migrations,
 * exactly-once unit commits in both COPY formats, block completion, the tip
 * order, and reconnection after the server drops the session.
 *
 * Every test works in its own database, created from the server's
 * "postgres" database, so the cases are independent.
 */
#include "cd_test.h"

#include "cd_hash.h"
#include "cd_util.h"
#include "cd_config.h"
#include "cd_pg.h"
#include "cd_rows.h"

#include <libpq-fe.h>
#include <unistd.h>

static char conninfo[1024];

/* Creates a fresh database and points conninfo at it. */
static void fresh_db(void)
{
    static int seq;
    const char *base = getenv("CD_TEST_PG_CONNINFO");
    ck_assert_msg(base != NULL, "CD_TEST_PG_CONNINFO not set (run through tests/pgserver.py)");
    PGconn *c = PQconnectdb(base);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    char db[64], sql[128];
    snprintf(db, sizeof(db), "t_%d_%d", (int)getpid(), seq++);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    snprintf(conninfo, sizeof(conninfo), "%s dbname=%s", base, db);
}

static long scalar(cd_pg *pg, const char *sql)
{
    PGresult *r = PQexec(cd_pg_conn(pg), sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
                  PQerrorMessage(cd_pg_conn(pg)));
    long v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* A cd_pg handle for a conninfo string (cd_pg_new reads only pg_conninfo
 * from the configuration, and copies it). */
static cd_pg *pg_for(const char *ci)
{
    cd_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.pg_conninfo = (char *)ci;
    return cd_pg_new(&cfg, NULL);
}

static cd_pg *open_migrated(void)
{
    fresh_db();
    cd_pg *pg = pg_for(conninfo);
    cd_pg_set_retry(pg, 5, 200, NULL);
    ck_assert_int_eq(cd_pg_migrate(pg), CD_PG_OK);
    return pg;
}

START_TEST(migrate_idempotent)
{
    cd_pg *pg = open_migrated();
    int v = -1;
    ck_assert_int_eq(cd_pg_schema_version(pg, &v), 0);
    ck_assert_int_eq(v, cd_pg_schema_latest);
    long tables = scalar(pg, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'");
    ck_assert_int_ge(tables, 7);
    /* second run (another process starting) changes nothing */
    cd_pg *pg2 = pg_for(conninfo);
    ck_assert_int_eq(cd_pg_migrate(pg2), CD_PG_OK);
    /* one row per migration (numbers may have gaps: cd_pg_embed.py) */
    long nmig = 0;
    while (cd_pg_migrations[nmig].version)
        nmig++;
    ck_assert_int_eq(scalar(pg2, "SELECT count(*) FROM cd_schema_version"), nmig);
    ck_assert_int_eq(scalar(pg2, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
                     tables);
    cd_pg_free(pg2);
    cd_pg_free(pg);
}
END_TEST

START_TEST(migrate_newer_schema_refused)
{
    cd_pg *pg = open_migrated();
    ck_assert_int_eq(cd_pg_exec(pg, "INSERT INTO cd_schema_version (version, name) "
                                    "VALUES (999, 'from_the_future')"),
                     CD_PG_OK);
    cd_pg *pg2 = pg_for(conninfo);
    ck_assert_int_eq(cd_pg_migrate(pg2), CD_PG_ENEWER);
    cd_pg_free(pg2);
    cd_pg_free(pg);
}
END_TEST

START_TEST(empty_database_version_zero)
{
    fresh_db();
    cd_pg *pg = pg_for(conninfo);
    int v = -1;
    ck_assert_int_eq(cd_pg_schema_version(pg, &v), 0);
    ck_assert_int_eq(v, 0);
    cd_pg_free(pg);
}
END_TEST

START_TEST(unreachable_server_gives_up)
{
    cd_pg *pg = pg_for("host=/nonexistent-dir port=1 connect_timeout=1");
    cd_pg_set_retry(pg, 3, 20, NULL);
    ck_assert_int_eq(cd_pg_connect(pg), CD_PG_EDOWN);
    ck_assert_ptr_null(cd_pg_conn(pg));
    cd_pg_free(pg);
}
END_TEST

static uint8_t *block413567(size_t *len)
{
    return cd_test_read_file("mainnet/block413567.raw", len);
}

/* Registers block 413567 and returns its id. */
static int64_t reg413567(cd_pg *pg, const uint8_t *blk, size_t len)
{
    uint8_t hash[32];
    cd_sha256d(hash, blk, 80);
    int64_t id = -1, id2 = -2;
    ck_assert_int_eq(cd_pg_block_register(pg, hash, blk, 413567, 1557, len, &id), 0);
    ck_assert_int_eq(cd_pg_block_register(pg, hash, blk, 413567, 1557, len, &id2), 0);
    ck_assert_int_eq(id, id2); /* idempotent on the hash */
    return id;
}

/* Indexes block 413567 as units of ~unit_size bytes; returns the unit count. */
static uint32_t index_units(cd_pg *pg, cd_pg_copy_format fmt, int64_t id, const uint8_t *blk,
                            size_t len, size_t unit_size, int expect_rc)
{
    cd_pg_unit u;
    cd_pg_unit_init(&u, fmt);
    cd_rows_opts o = {1, 0};
    size_t off = 83;
    uint32_t first = 0, unit = 0;
    while (off < len) {
        /* cut after ~unit_size bytes of whole txs */
        cd_pg_unit_reset(&u, id, unit, first);
        cd_rows_sink s = cd_rows_unit_sink(&u);
        size_t consumed = 0;
        long n = 0;
        size_t end = off;
        while (end < len && end - off < unit_size) {
            long k = cd_rows_parse_unit(blk + end, len - end, end, first + (uint32_t)n, 1, &o, &s,
                                        &consumed);
            ck_assert_int_eq(k, 1);
            end += consumed;
            n++;
        }
        ck_assert_int_eq(cd_pg_write_unit(pg, &u), expect_rc);
        first += (uint32_t)n;
        off = end;
        unit++;
    }
    ck_assert_uint_eq(first, 1557);
    cd_pg_unit_free(&u);
    return unit;
}

static const char *dump_sql =
    "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM ("
    " SELECT format('%s/%s/%s/%s', tx_pos, tx_offset, tx_size, encode(tx_hash, 'hex')) x"
    "  FROM transactions UNION ALL"
    " SELECT format('i%s/%s/%s/%s', tx_pos, in_idx, prev_idx, encode(prev_hash, 'hex'))"
    "  FROM inputs UNION ALL"
    " SELECT format('p%s/%s/%s/%s', tx_pos, idx, flags, encode(push_hash, 'hex'))"
    "  FROM pushdata) d";

static char *dump(cd_pg *pg)
{
    PGresult *r = PQexec(cd_pg_conn(pg), dump_sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    char *s = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return s;
}

START_TEST(unit_exactly_once)
{
    size_t len;
    uint8_t *blk = block413567(&len);
    cd_pg *pg = open_migrated();
    int64_t id = reg413567(pg, blk, len);
    uint32_t n = index_units(pg, CD_PG_COPY_BINARY, id, blk, len, 200000, 0);
    ck_assert_uint_ge(n, 4);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM transactions"), 1557);
    long ins = scalar(pg, "SELECT count(*) FROM inputs");
    long pds = scalar(pg, "SELECT count(*) FROM pushdata");
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pushdata WHERE flags = 2"), 3957);
    ck_assert_int_gt(ins, 1556);
    /* redo every unit (as after a crash): all skipped, nothing duplicated */
    index_units(pg, CD_PG_COPY_BINARY, id, blk, len, 200000, 1);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM transactions"), 1557);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM inputs"), ins);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pushdata"), pds);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM indexed_units"), n);
    int done = 0;
    ck_assert_int_eq(cd_pg_unit_done(pg, id, 0, &done), 0);
    ck_assert_int_eq(done, 1);
    ck_assert_int_eq(cd_pg_unit_done(pg, id, n, &done), 0);
    ck_assert_int_eq(done, 0);
    cd_pg_free(pg);
    free(blk);
}
END_TEST

START_TEST(text_and_binary_copy_identical)
{
    size_t len;
    uint8_t *blk = block413567(&len);
    cd_pg *a = open_migrated();
    index_units(a, CD_PG_COPY_BINARY, reg413567(a, blk, len), blk, len, 300000, 0);
    cd_pg *b = open_migrated();
    index_units(b, CD_PG_COPY_TEXT, reg413567(b, blk, len), blk, len, 50000, 0);
    char *da = dump(a), *db = dump(b);
    ck_assert_str_eq(da, db);
    free(da);
    free(db);
    cd_pg_free(a);
    cd_pg_free(b);
    free(blk);
}
END_TEST

START_TEST(block_complete_and_tip_order)
{
    size_t len;
    uint8_t *blk = block413567(&len);
    cd_pg *pg = open_migrated();
    int64_t id = reg413567(pg, blk, len);
    /* no units yet: not complete, tip cannot move */
    ck_assert_int_eq(cd_pg_block_set_indexed(pg, id, 3), CD_PG_EINCOMPLETE);
    ck_assert_int_eq(cd_pg_tip_advance(pg, id), CD_PG_EINCOMPLETE);
    uint32_t n = index_units(pg, CD_PG_COPY_BINARY, id, blk, len, 400000, 0);
    ck_assert_int_eq(cd_pg_block_set_indexed(pg, id, n + 1), CD_PG_EINCOMPLETE);
    ck_assert_int_eq(cd_pg_block_set_indexed(pg, id, n), 0);
    ck_assert_int_eq(cd_pg_block_set_indexed(pg, id, n), 0); /* idempotent */
    int32_t h = 0;
    ck_assert_int_eq(cd_pg_tip_height(pg, &h), 0);
    ck_assert_int_eq(h, -1);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM best_transactions"), 0);
    ck_assert_int_eq(cd_pg_tip_advance(pg, id), 0);
    ck_assert_int_eq(cd_pg_tip_advance(pg, id), 0); /* already the tip */
    ck_assert_int_eq(cd_pg_tip_height(pg, &h), 0);
    ck_assert_int_eq(h, 413567);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM best_transactions"), 1557);
    /* a block that does not link to the tip is refused */
    uint8_t fake[80];
    memcpy(fake, blk, 80);
    fake[79] ^= 1; /* other nonce: other hash, same (wrong) prev */
    uint8_t fh[32];
    cd_sha256d(fh, fake, 80);
    int64_t fid;
    ck_assert_int_eq(cd_pg_block_register(pg, fh, fake, 413568, 0, 80, &fid), 0);
    ck_assert_int_eq(cd_pg_exec(pg, "UPDATE blocks SET indexed = true WHERE height = 413568"), 0);
    ck_assert_int_eq(cd_pg_tip_advance(pg, fid), CD_PG_EINCOMPLETE);
    ck_assert_int_eq(cd_pg_tip_height(pg, &h), 0);
    ck_assert_int_eq(h, 413567);
    cd_pg_free(pg);
    free(blk);
}
END_TEST

START_TEST(reconnects_after_session_killed)
{
    size_t len;
    uint8_t *blk = block413567(&len);
    cd_pg *pg = open_migrated();
    cd_pg_set_retry(pg, 0, 100, NULL);
    int64_t id = reg413567(pg, blk, len);
    int pid = PQbackendPID(cd_pg_conn(pg));
    /* another session terminates ours: the next write must reconnect */
    PGconn *k = PQconnectdb(conninfo);
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d)", pid);
    PQclear(PQexec(k, sql));
    PQfinish(k);
    index_units(pg, CD_PG_COPY_BINARY, id, blk, len, 2000000, 0);
    ck_assert_int_ne(PQbackendPID(cd_pg_conn(pg)), pid);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM transactions"), 1557);
    cd_pg_free(pg);
    free(blk);
}
END_TEST

START_TEST(complete_checks_merkle_root)
{
    size_t len;
    uint8_t *blk = block413567(&len);
    cd_pg *pg = open_migrated();
    int64_t id = reg413567(pg, blk, len);
    int indexed = -1;
    /* nothing committed yet: not complete, no error */
    ck_assert_int_eq(cd_pg_block_try_complete(pg, id, &indexed), 0);
    ck_assert_int_eq(indexed, 0);
    index_units(pg, CD_PG_COPY_BINARY, id, blk, len, 250000, 0);
    /* one stored txid altered: the root no longer matches the header */
    ck_assert_int_eq(cd_pg_exec(pg, "UPDATE transactions SET tx_hash = sha256(tx_hash) "
                                    "WHERE tx_pos = 777"),
                     0);
    ck_assert_int_eq(cd_pg_block_try_complete(pg, id, &indexed), CD_PG_EMERKLE);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM blocks WHERE indexed"), 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM index_tip"), 0);
    /* the wrong rows went in the same transaction (issue 11, F1): nothing
     * of the block is left, so a right copy can be written */
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM transactions"), 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM inputs"), 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pushdata"), 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM indexed_units"), 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM blocks"), 1);
    /* the right copy: its units again, with tx 777 missing for now */
    index_units(pg, CD_PG_COPY_BINARY, id, blk, len, 250000, 0);
    ck_assert_int_eq(cd_pg_exec(pg, "DELETE FROM transactions WHERE tx_pos = 777"), 0);
    /* re-insert tx 777 with its real txid, found by walking the block */
    uint8_t txid[32];
    cd_rows_sink none = {0};
    size_t off = 83, consumed;
    for (int i = 0; i < 777; i++) {
        ck_assert_int_eq(
            cd_rows_parse_unit(blk + off, len - off, off, 0, 1, NULL, &none, &consumed), 1);
        off += consumed;
    }
    ck_assert_int_eq(cd_rows_parse_unit(blk + off, len - off, off, 0, 1, NULL, &none, &consumed),
                     1);
    cd_sha256d(txid, blk + off, consumed);
    char sql[256], hex[65];
    cd_hex_encode(hex, txid, 32);
    snprintf(sql, sizeof(sql),
             "INSERT INTO transactions (block_id, tx_offset, tx_pos, tx_size, tx_hash) "
             "VALUES (%lld, %zu, 777, %zu, '\\x%s')",
             (long long)id, off, consumed, hex);
    ck_assert_int_eq(cd_pg_exec(pg, sql), 0);
    ck_assert_int_eq(cd_pg_block_try_complete(pg, id, &indexed), 0);
    ck_assert_int_eq(indexed, 1);
    int32_t h = -1;
    ck_assert_int_eq(cd_pg_tip_advance_all(pg, &h), 0);
    ck_assert_int_eq(h, 413567);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM best_transactions"), 1557);
    cd_pg_free(pg);
    free(blk);
}
END_TEST

START_TEST(unit_range_mismatch_refused)
{
    size_t len;
    uint8_t *blk = block413567(&len);
    cd_pg *pg = open_migrated();
    int64_t id = reg413567(pg, blk, len);
    cd_pg_unit u;
    cd_pg_unit_init(&u, CD_PG_COPY_BINARY);
    cd_rows_opts o = {1, 0};
    /* unit 0 = 10 txs, committed */
    cd_pg_unit_reset(&u, id, 0, 0);
    cd_rows_sink s = cd_rows_unit_sink(&u);
    ck_assert_int_eq(cd_rows_parse_unit(blk + 83, len - 83, 83, 0, 10, &o, &s, NULL), 10);
    ck_assert_int_eq(cd_pg_write_unit(pg, &u), 0);
    /* unit 0 again but cut at 5 txs (unit size changed): refused, not mixed */
    cd_pg_unit_reset(&u, id, 0, 0);
    s = cd_rows_unit_sink(&u);
    ck_assert_int_eq(cd_rows_parse_unit(blk + 83, len - 83, 83, 0, 5, &o, &s, NULL), 5);
    ck_assert_int_eq(cd_pg_write_unit(pg, &u), CD_PG_EUNIT);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM transactions"), 10);
    cd_pg_unit_free(&u);
    cd_pg_free(pg);
    free(blk);
}
END_TEST

/* How many of sql/013's secondary indexes are present, valid and as defined
 * (the catalog, not a list spelled here). */
static const char *const n_valid =
    "SELECT count(*) FROM cd_secondary_indexes_state() WHERE state = 'valid'";

START_TEST(secondary_indexes_toggle)
{
    cd_pg *pg = open_migrated();
    long total = scalar(pg, "SELECT count(*) FROM secondary_indexes");
    ck_assert_int_eq(total, 4);
    /* the catalog describes what sql/001 and 007 created: all valid */
    ck_assert_int_eq(scalar(pg, n_valid), total);
    ck_assert_int_eq(cd_pg_secondary_indexes(pg, 0), 0);
    ck_assert_int_eq(cd_pg_secondary_indexes(pg, 0), 0);
    /* the B-trees go, the hash indexes stay (their build costs what
     * keeping them does) */
    long hash = scalar(pg, "SELECT count(*) FROM secondary_indexes WHERE method = 'hash'");
    ck_assert_int_eq(hash, 2);
    ck_assert_int_eq(scalar(pg, n_valid), hash);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pg_indexes i JOIN secondary_index_parts s "
                                "ON s.name = i.indexname WHERE s.method = 'hash'"),
                     hash);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pg_indexes i JOIN secondary_index_parts s "
                                "ON s.name = i.indexname WHERE s.method <> 'hash'"),
                     0);
    ck_assert_int_eq(cd_pg_secondary_indexes(pg, 1), 0);
    ck_assert_int_eq(cd_pg_secondary_indexes(pg, 1), 0);
    ck_assert_int_eq(scalar(pg, n_valid), total);
    cd_pg_secondary list[CD_PG_SECONDARY_MAX];
    size_t n = 0;
    ck_assert_int_eq(cd_pg_secondary_list(pg, list, CD_PG_SECONDARY_MAX, &n), 0);
    ck_assert_uint_eq(n, (size_t)total);
    int hashes = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert(cd_pg_secondary_valid(&list[i]));
        hashes += list[i].hash;
    }
    ck_assert_int_eq(hashes, hash);
    /* too little room is an error, not a silently shorter list */
    ck_assert_int_eq(cd_pg_secondary_list(pg, list, 2, &n), CD_PG_ERROR);
    cd_pg_free(pg);
}
END_TEST

/* An index left invalid (a CREATE INDEX CONCURRENTLY that failed: here a
 * UNIQUE build over duplicate rows, as an interrupted one leaves it) or of
 * another definition under the name is replaced, not kept (IF NOT EXISTS
 * kept both for ever); a valid one is left alone. */
START_TEST(secondary_index_invalid_rebuilt)
{
    cd_pg *pg = open_migrated();
    ck_assert_int_eq(cd_pg_exec(pg, "INSERT INTO transactions VALUES (1, 0, 0, 10, '\\x01'), "
                                    "(1, 10, 1, 10, '\\x01')"),
                     0);
    ck_assert_int_eq(cd_pg_secondary_indexes(pg, 0), 0);
    char res[16]; /* a hash index: catch-up keeps it */
    ck_assert_int_eq(cd_pg_secondary_one(pg, "transactions_p0_hash_idx", 0, res, sizeof(res)), 0);
    /* fails (duplicate key), leaving the index behind with indisvalid false
     * (on the partition: sql/017 gives each its own secondary indexes) */
    ck_assert_int_eq(cd_pg_exec(pg, "CREATE UNIQUE INDEX CONCURRENTLY transactions_p0_hash_idx "
                                    "ON transactions_p0 (tx_hash)"),
                     CD_PG_ERROR);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pg_index WHERE NOT indisvalid AND "
                                "indexrelid = 'transactions_p0_hash_idx'::regclass"),
                     1);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM cd_secondary_indexes_state() "
                                "WHERE state = 'invalid'"),
                     1);
    /* another definition under a secondary index's name */
    ck_assert_int_eq(cd_pg_exec(pg, "CREATE INDEX pushdata_p0_hash_idx ON pushdata_p0 (tx_pos)"),
                     0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM cd_secondary_indexes_state() "
                                "WHERE state = 'other'"),
                     1);
    ck_assert_int_eq(cd_pg_secondary_one(pg, "transactions_p0_hash_idx", 1, res, sizeof(res)), 0);
    ck_assert_str_eq(res, "rebuilt");
    ck_assert_int_eq(cd_pg_secondary_one(pg, "transactions_p0_hash_idx", 1, res, sizeof(res)), 0);
    ck_assert_str_eq(res, "present");
    ck_assert_int_eq(cd_pg_secondary_indexes(pg, 1), 0);
    ck_assert_int_eq(scalar(pg, n_valid), 4);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pg_index i JOIN pg_class c "
                                "ON c.oid = i.indexrelid JOIN secondary_index_parts s "
                                "ON s.name = c.relname WHERE i.indisvalid AND NOT i.indisunique"),
                     4);
    ck_assert_int_eq(cd_pg_secondary_one(pg, "pushdata_p0_hash_idx", 0, res, sizeof(res)), 0);
    ck_assert_str_eq(res, "dropped");
    ck_assert_int_eq(cd_pg_secondary_one(pg, "pushdata_p0_hash_idx", 0, res, sizeof(res)), 0);
    ck_assert_str_eq(res, "absent");
    /* a name that is not in the catalog is refused */
    ck_assert_int_eq(cd_pg_secondary_one(pg, "blocks_pkey", 0, res, sizeof(res)), CD_PG_ERROR);
    cd_pg_free(pg);
}
END_TEST

/* sql/017: each partition has its own secondary indexes. A roll gives the
 * new tip those the old tip had (instant: empty); catch-up's drop takes only
 * the open tip's (a closed partition receives no live rows); a roll during
 * catch-up leaves the closed tip and the new one without, and the build
 * makes every missing one on every partition. */
static void add_block(cd_pg *pg, int n)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO blocks (block_hash, prev_hash, height, header, tx_count, size) "
             "VALUES (sha256('%d'::bytea), '\\x00', %d, '\\x00', 1, 1); "
             "INSERT INTO indexed_units SELECT max(block_id), 0, 0, 1 FROM blocks; "
             "INSERT INTO transactions SELECT max(block_id), 0, 0, 10, sha256('t%d'::bytea) "
             "FROM blocks",
             n, n, n);
    ck_assert_int_eq(cd_pg_exec(pg, sql), 0);
}

#define PER_PART(state, closed)                                                                    \
    "SELECT count(*) FROM cd_secondary_indexes_state() WHERE state = '" state "' AND closed = " closed

START_TEST(secondary_per_partition)
{
    cd_pg *pg = open_migrated();
    add_block(pg, 1);
    ck_assert_int_eq(scalar(pg, "SELECT (cd_partition_roll(1) IS NOT NULL)::int"), 1);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM partitions"), 8);
    ck_assert_int_eq(scalar(pg, n_valid), 8); /* p0's and the new tip's */
    /* catch-up: only the open tip's B-trees go (its hash indexes stay) */
    ck_assert_int_eq(cd_pg_secondary_indexes(pg, 0), 0);
    ck_assert_int_eq(scalar(pg, PER_PART("valid", "true")), 4);
    ck_assert_int_eq(scalar(pg, PER_PART("missing", "false")), 2);
    ck_assert_int_eq(scalar(pg, PER_PART("valid", "false")), 2);
    /* a roll in catch-up: the new tip has the same, its hash indexes */
    add_block(pg, 2);
    ck_assert_int_eq(scalar(pg, "SELECT (cd_partition_roll(1) IS NOT NULL)::int"), 1);
    ck_assert_int_eq(scalar(pg, PER_PART("missing", "true")), 2);
    ck_assert_int_eq(scalar(pg, PER_PART("missing", "false")), 2);
    ck_assert_int_eq(scalar(pg, PER_PART("valid", "false")), 2);
    /* the build at the end: every one, on every partition */
    ck_assert_int_eq(cd_pg_secondary_indexes(pg, 1), 0);
    ck_assert_int_eq(scalar(pg, n_valid), 12);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM cd_secondary_indexes_state()"), 12);
    /* a lookup by hash finds the row in its partition */
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM best_transactions"), 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM transactions WHERE tx_hash = "
                                "sha256('t2'::bytea)"),
                     1);
    cd_pg_free(pg);
}
END_TEST

/* sql/013 makes transactions(tx_hash) and inputs(prev_hash) hash indexes: a
 * database of sql/001's B-trees is converted (the migration rebuilds each
 * index of another definition; here the same function on the same state),
 * and the catalog's layout is what a new database has. */
START_TEST(secondary_btree_converted_to_hash)
{
    cd_pg *pg = open_migrated();
    const char *am = "SELECT count(*) FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
                     "WHERE a.amname = 'hash' AND c.relname IN ('transactions_p0_hash_idx', "
                     "'inputs_p0_outpoint_idx')";
    ck_assert_int_eq(scalar(pg, am), 2);
    /* as sql/001 created them */
    ck_assert_int_eq(cd_pg_exec(pg,
                                "DROP INDEX transactions_p0_hash_idx; DROP INDEX "
                                "inputs_p0_outpoint_idx; CREATE INDEX transactions_p0_hash_idx ON "
                                "transactions_p0 (tx_hash); CREATE INDEX inputs_p0_outpoint_idx ON "
                                "inputs_p0 (prev_hash, prev_idx)"),
                     0);
    ck_assert_int_eq(scalar(pg, am), 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM cd_secondary_indexes_state() "
                                "WHERE state = 'other'"),
                     2);
    ck_assert_int_eq(cd_pg_secondary_indexes(pg, 1), 0);
    ck_assert_int_eq(scalar(pg, am), 2);
    ck_assert_int_eq(scalar(pg, n_valid), 4);
    /* no temporary index left behind by the swap */
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pg_class WHERE relname LIKE '%_cd_new'"), 0);
    cd_pg_free(pg);
}
END_TEST

/* The build plan's rule (cd_pg_build_plan_rule): sessions, memory and
 * parallel workers from the machine, within what the server allows. */
START_TEST(build_plan_rule)
{
    const long long gb = 1024LL * 1024 * 1024;
    /* PostgreSQL's defaults: 64 MB, max_val 2147483647 kB, 8 + 8 workers */
    cd_pg_build_limits lim = {65536, 2147483647LL, 1024, 8, 8};
    cd_pg_build_plan p;
    /* this VM: 2 cores, 24 GB, 4 indexes: two sessions of 3 GB, 1 worker each */
    cd_pg_build_plan_rule(&lim, 2, 24 * gb, 4, &p);
    ck_assert_int_eq(p.sessions, 2);
    ck_assert_int_eq(p.mem_kb, 3 * 1024 * 1024);
    ck_assert_int_eq(p.workers, 1);
    /* one index left: one session with all the memory, 2 workers */
    cd_pg_build_plan_rule(&lim, 2, 24 * gb, 1, &p);
    ck_assert_int_eq(p.sessions, 1);
    ck_assert_int_eq(p.mem_kb, 6 * 1024 * 1024);
    ck_assert_int_eq(p.workers, 2);
    /* 16 cores, 4 indexes: 4 workers each would be 16 of a pool of 8 */
    cd_pg_build_plan_rule(&lim, 16, 64 * gb, 4, &p);
    ck_assert_int_eq(p.sessions, 4);
    ck_assert_int_eq(p.workers, 2);
    /* never above the server's maximum, never below its current value */
    cd_pg_build_limits small = {65536, 100000, 0, 8, 8};
    cd_pg_build_plan_rule(&small, 2, 24 * gb, 4, &p);
    ck_assert_int_eq(p.mem_kb, 100000);
    ck_assert_int_eq(p.workers, 0); /* max_parallel_maintenance_workers' max 0 */
    cd_pg_build_limits big = {1024 * 1024, 2147483647LL, 1024, 8, 8};
    cd_pg_build_plan_rule(&big, 2, 1 * gb, 4, &p);
    ck_assert_int_eq(p.mem_kb, 1024 * 1024);
    /* no parallel worker pool (max_parallel_workers = 0); nonsense inputs */
    cd_pg_build_limits nopool = {65536, 2147483647LL, 1024, 0, 8};
    cd_pg_build_plan_rule(&nopool, 8, 24 * gb, 1, &p);
    ck_assert_int_eq(p.sessions, 1);
    ck_assert_int_eq(p.workers, 0);
    cd_pg_build_plan_rule(&lim, 0, 0, 0, &p);
    ck_assert_int_eq(p.sessions, 1);
    ck_assert_int_eq(p.mem_kb, 65536);
    ck_assert_int_eq(p.workers, 1);
}
END_TEST

/* The parallel build (cd_pg_secondary_build) ends with every index valid,
 * counts what it built, and a name already valid is "present". */
START_TEST(secondary_build_parallel)
{
    cd_pg *pg = open_migrated();
    const char *names[] = {"pushdata_p0_hash_idx", "outputs_p0_script_hash_idx",
                           "inputs_p0_outpoint_idx", "transactions_p0_hash_idx"};
    char res[16];
    for (size_t i = 0; i < CD_ARRAY_LEN(names); i++) /* hash ones too */
        ck_assert_int_eq(cd_pg_secondary_one(pg, names[i], 0, res, sizeof(res)), 0);
    /* outputs_p0_script_hash_idx stays: it is "present" */
    ck_assert_int_eq(cd_pg_secondary_one(pg, "outputs_p0_script_hash_idx", 1, res, sizeof(res)), 0);
    cd_pg_build_limits lim;
    ck_assert_int_eq(cd_pg_build_limits_read(pg, &lim), 0);
    ck_assert_int_gt(lim.mem_kb, 0);
    ck_assert_int_gt(lim.mem_max_kb, lim.mem_kb);
    cd_pg_build_plan plan;
    cd_pg_build_plan_rule(&lim, 2, 1LL << 30, 4, &plan);
    cd_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.pg_conninfo = conninfo;
    cd_pg_build_stats st;
    ck_assert_int_eq(cd_pg_secondary_build(&cfg, &plan, names, 4, &st), 0);
    ck_assert_int_eq(st.built, 3);
    ck_assert_int_eq(scalar(pg, n_valid), 4);
    /* a name the catalog does not have fails the build, after the others */
    const char *bad[] = {"transactions_p0_hash_idx", "no_such_idx"};
    ck_assert_int_eq(cd_pg_secondary_build(&cfg, &plan, bad, 2, &st), CD_PG_ERROR);
    cd_pg_free(pg);
}
END_TEST

START_TEST(streamed_unit_equals_buffered)
{
    size_t len;
    uint8_t *blk = block413567(&len);
    cd_pg *a = open_migrated();
    index_units(a, CD_PG_COPY_BINARY, reg413567(a, blk, len), blk, len, 1u << 30, 0);
    cd_pg *b = open_migrated();
    int64_t id = reg413567(b, blk, len);
    cd_pg_unit u;
    cd_pg_unit_init(&u, CD_PG_COPY_BINARY);
    u.flush_bytes = 4096; /* many COPY batches inside the unit's transaction */
    cd_rows_opts o = {1, 0};
    ck_assert_int_eq(cd_rows_index_unit(b, &u, id, 0, blk + 83, len - 83, 83, 0, 1557, &o), 0);
    ck_assert_uint_le(u.pd.cap, 1u << 16); /* never buffered the whole unit */
    ck_assert_int_eq(cd_rows_index_unit(b, &u, id, 0, blk + 83, len - 83, 83, 0, 1557, &o), 1);
    /* another unit number over the same txs (a different cutting) is refused */
    ck_assert_int_eq(cd_rows_index_unit(b, &u, id, 1, blk + 83, len - 83, 83, 0, 1557, &o),
                     CD_PG_EUNIT);
    char *da = dump(a), *db = dump(b);
    ck_assert_str_eq(da, db);
    free(da);
    free(db);
    cd_pg_unit_free(&u);
    cd_pg_free(a);
    cd_pg_free(b);
    free(blk);
}
END_TEST

START_TEST(stream_connection_lost_mid_unit)
{
    size_t len;
    uint8_t *blk = block413567(&len);
    cd_pg *pg = open_migrated();
    cd_pg_set_retry(pg, 0, 100, NULL);
    int64_t id = reg413567(pg, blk, len);
    cd_pg_unit u;
    cd_pg_unit_init(&u, CD_PG_COPY_BINARY);
    u.flush_bytes = 4096;
    cd_rows_opts o = {1, 0};
    /* a wrong expected tx count is refused before anything commits */
    ck_assert_int_eq(cd_rows_index_unit(pg, &u, id, 0, blk + 83, len - 83, 83, 0, 1556, &o),
                     CD_ROWS_EMALFORMED);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM indexed_units"), 0);
    cd_pg_unit_reset(&u, id, 0, 0);
    ck_assert_int_eq(cd_pg_unit_open(pg, &u), 0);
    cd_rows_sink s = cd_rows_unit_sink(&u);
    size_t consumed;
    ck_assert_int_eq(cd_rows_parse_unit(blk + 83, len - 83, 83, 0, 700, &o, &s, &consumed), 700);
    /* the server drops the session in the middle of the unit */
    PGconn *k = PQconnectdb(conninfo);
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d)", PQbackendPID(cd_pg_conn(pg)));
    PQclear(PQexec(k, sql));
    PQfinish(k);
    ck_assert_int_eq(cd_rows_parse_unit(blk + 83 + consumed, len - 83 - consumed, 83 + consumed,
                                        700, 0, &o, &s, NULL),
                     857);
    ck_assert_int_eq(cd_pg_unit_close(pg, &u), CD_PG_EAGAIN);
    ck_assert_int_eq(cd_pg_connect(pg), CD_PG_OK);
    /* nothing of it committed; the full redo writes every row once */
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM transactions"), 0);
    ck_assert_int_eq(cd_rows_index_unit(pg, &u, id, 0, blk + 83, len - 83, 83, 0, 1557, &o), 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM transactions"), 1557);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pushdata WHERE flags = 2"), 3957);
    cd_pg_unit_free(&u);
    cd_pg_free(pg);
    free(blk);
}
END_TEST

START_TEST(block_gaps_from_markers)
{
    size_t len;
    uint8_t *blk = block413567(&len);
    cd_pg *pg = open_migrated();
    int64_t id = reg413567(pg, blk, len);
    int indexed = -1;
    uint64_t *g = NULL;
    size_t n = 0;
    ck_assert_int_eq(cd_pg_block_gaps(pg, id, 1557, &indexed, &g, &n), 0);
    ck_assert_int_eq(indexed, 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(g[0], 0);
    ck_assert_uint_eq(g[1], 1557);
    free(g);
    /* units covering txs [0,10) and [20,30) */
    cd_pg_unit u;
    cd_pg_unit_init(&u, CD_PG_COPY_BINARY);
    cd_rows_opts o = {1, 0};
    size_t off = 83, consumed;
    cd_rows_sink none = {0};
    uint64_t offs[31];
    for (int i = 0; i <= 30; i++) {
        offs[i] = off;
        if (i < 30) {
            ck_assert_int_eq(
                cd_rows_parse_unit(blk + off, len - off, off, 0, 1, NULL, &none, &consumed), 1);
            off += consumed;
        }
    }
    ck_assert_int_eq(
        cd_rows_index_unit(pg, &u, id, 0, blk + offs[0], offs[10] - offs[0], offs[0], 0, 10, &o),
        0);
    ck_assert_int_eq(cd_rows_index_unit(pg, &u, id, 2, blk + offs[20], offs[30] - offs[20],
                                        offs[20], 20, 10, &o),
                     0);
    ck_assert_int_eq(cd_pg_block_gaps(pg, id, 1557, &indexed, &g, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(g[0], 10);
    ck_assert_uint_eq(g[1], 20);
    ck_assert_uint_eq(g[2], 30);
    ck_assert_uint_eq(g[3], 1557);
    free(g);
    cd_pg_unit_free(&u);
    cd_pg_free(pg);
    free(blk);
}
END_TEST

/* Rows of txs [a, b) of block 413567 (offs: tx start offsets) into the open
 * batch as unit unit_no. Returns cd_pg_batch_add's code. */
static int batch_range(cd_pg *pg, cd_pg_unit *u, int64_t id, const uint8_t *blk,
                       const uint64_t *offs, uint32_t unit_no, uint32_t a, uint32_t b)
{
    int rc = cd_pg_batch_add(pg, u, id, unit_no, a, b - a);
    if (rc != 0)
        return rc;
    cd_rows_opts o = {1, 0};
    cd_rows_sink s = cd_rows_unit_sink(u);
    ck_assert_int_eq(
        cd_rows_parse_unit(blk + offs[a], offs[b] - offs[a], offs[a], a, 0, &o, &s, NULL),
        (long)(b - a));
    cd_pg_batch_unit_done(u);
    return 0;
}

START_TEST(batch_units_one_transaction)
{
    size_t len;
    uint8_t *blk = block413567(&len);
    cd_pg *pg = open_migrated();
    cd_pg_set_retry(pg, 0, 100, NULL);
    int64_t id = reg413567(pg, blk, len);
    uint64_t *offs = malloc(1558 * sizeof(uint64_t));
    size_t off = 83, consumed;
    cd_rows_sink none = {0};
    for (int i = 0; i < 1557; i++) {
        offs[i] = off;
        ck_assert_int_eq(
            cd_rows_parse_unit(blk + off, len - off, off, 0, 1, NULL, &none, &consumed), 1);
        off += consumed;
    }
    offs[1557] = len;
    cd_pg_unit u;
    cd_pg_unit_init(&u, CD_PG_COPY_BINARY);
    u.flush_bytes = 8192; /* some rows stream out before the commit */

    /* two units in one batch: both markers in one transaction */
    ck_assert_int_eq(cd_pg_batch_begin(pg, &u), 0);
    ck_assert_int_eq(batch_range(pg, &u, id, blk, offs, 0, 0, 500), 0);
    ck_assert_int_eq(batch_range(pg, &u, id, blk, offs, 1, 500, 1000), 0);
    ck_assert_int_eq(cd_pg_batch_commit(pg, &u), 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM indexed_units"), 2);
    ck_assert_int_eq(scalar(pg, "SELECT count(DISTINCT committed_at) FROM indexed_units"), 1);
    ck_assert_int_eq(scalar(pg, "SELECT sum(tx_count) FROM indexed_units"), 1000);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM transactions"), 1000);

    /* the connection is lost in the middle of a batch: nothing of it
     * commits, and the batch written again is complete */
    ck_assert_int_eq(cd_pg_batch_begin(pg, &u), 0);
    ck_assert_int_eq(batch_range(pg, &u, id, blk, offs, 0, 0, 500), 1); /* committed before */
    PGconn *k = PQconnectdb(conninfo);
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d)", PQbackendPID(cd_pg_conn(pg)));
    PQclear(PQexec(k, sql));
    PQfinish(k);
    int rc = batch_range(pg, &u, id, blk, offs, 2, 1000, 1557);
    if (rc == 0)
        rc = cd_pg_batch_commit(pg, &u);
    ck_assert_int_eq(rc, CD_PG_EAGAIN);
    ck_assert_int_eq(cd_pg_connect(pg), CD_PG_OK);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM indexed_units"), 2);
    ck_assert_int_eq(cd_pg_batch_begin(pg, &u), 0);
    ck_assert_int_eq(batch_range(pg, &u, id, blk, offs, 1, 500, 1000), 1);
    ck_assert_int_eq(batch_range(pg, &u, id, blk, offs, 2, 1000, 1557), 0);
    ck_assert_int_eq(cd_pg_batch_commit(pg, &u), 0);

    /* the same rows as unit-by-unit writes, each once */
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM transactions"), 1557);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pushdata WHERE flags = 2"), 3957);
    cd_pg *ref = open_migrated();
    index_units(ref, CD_PG_COPY_BINARY, reg413567(ref, blk, len), blk, len, 200000, 0);
    char *da = dump(pg), *db = dump(ref);
    ck_assert_str_eq(da, db);
    free(da);
    free(db);

    /* completion of a batch's blocks: merkle check, indexed, tip */
    ck_assert_int_eq(cd_pg_blocks_try_complete(pg, &id, 1, NULL, NULL), 0);
    int32_t h = 0;
    ck_assert_int_eq(cd_pg_tip_height(pg, &h), 0);
    ck_assert_int_eq(h, 413567);
    cd_pg_unit_free(&u);
    cd_pg_free(ref);
    cd_pg_free(pg);
    free(offs);
    free(blk);
}
END_TEST

/* The set-based steps of a parser's batch: every held block registered in
 * one statement, every unit checked in one, every block completed in one
 * read; each gives what its one-at-a-time counterpart gives. */
START_TEST(batch_set_based_steps)
{
    size_t len;
    uint8_t *blk = block413567(&len);
    cd_pg *pg = open_migrated();
    /* two blocks: 413567 and a sibling with a header of its own (one tx,
     * whose stored txid will not give its merkle root) */
    cd_pg_block_info bi[2];
    memset(bi, 0, sizeof(bi));
    memcpy(bi[0].header, blk, 80);
    cd_sha256d(bi[0].hash, blk, 80);
    bi[0].height = 413567;
    bi[0].tx_count = 1557;
    bi[0].size = len;
    memcpy(bi[1].header, blk, 80);
    bi[1].header[79] ^= 1;
    cd_sha256d(bi[1].hash, bi[1].header, 80);
    bi[1].height = 413567;
    bi[1].tx_count = 1;
    bi[1].size = 200;
    int64_t ids[2] = {-1, -1}, again[2] = {-1, -1}, one = -1;
    ck_assert_int_eq(cd_pg_blocks_register(pg, bi, 2, ids), 0);
    ck_assert_int_ne(ids[0], ids[1]);
    ck_assert_int_gt(ids[0], 0);
    /* idempotent, any order, and the same ids as cd_pg_block_register */
    cd_pg_block_info rev[2] = {bi[1], bi[0]};
    ck_assert_int_eq(cd_pg_blocks_register(pg, rev, 2, again), 0);
    ck_assert_int_eq(again[0], ids[1]);
    ck_assert_int_eq(again[1], ids[0]);
    ck_assert_int_eq(cd_pg_block_register(pg, bi[0].hash, blk, 413567, 1557, len, &one), 0);
    ck_assert_int_eq(one, ids[0]);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM blocks"), 2);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM blocks WHERE prev_hash = "
                                "substring(header FROM 5 FOR 32) AND octet_length(header) = 80 "
                                "AND tx_count IN (1, 1557)"),
                     2);
    int64_t id = ids[0];

    uint64_t *offs = malloc(1558 * sizeof(uint64_t));
    size_t off = 83, consumed;
    cd_rows_sink none = {0};
    for (int i = 0; i < 1557; i++) {
        offs[i] = off;
        ck_assert_int_eq(
            cd_rows_parse_unit(blk + off, len - off, off, 0, 1, NULL, &none, &consumed), 1);
        off += consumed;
    }
    offs[1557] = len;
    cd_pg_unit u;
    cd_pg_unit_init(&u, CD_PG_COPY_BINARY);
    ck_assert_int_eq(cd_pg_batch_begin(pg, &u), 0);
    ck_assert_int_eq(batch_range(pg, &u, id, blk, offs, 0, 0, 500), 0);
    ck_assert_int_eq(cd_pg_batch_commit(pg, &u), 0);

    /* one statement, the answers of cd_pg_batch_add unit by unit */
    cd_pg_marker m[5] = {
        {id, 0, 0, 500},   /* committed before, same range */
        {id, 0, 0, 0},     /* the same, tx count unknown */
        {id, 1, 500, 500}, /* new */
        {id, 7, 400, 200}, /* overlaps unit 0 under another cutting */
        {id, 0, 0, 499},   /* unit 0 with another range */
    };
    int st[5] = {-9, -9, -9, -9, -9};
    ck_assert_int_eq(cd_pg_batch_begin(pg, &u), 0);
    ck_assert_int_eq(cd_pg_batch_check(pg, &u, m, 5, st), 0);
    ck_assert_int_eq(st[0], 1);
    ck_assert_int_eq(st[1], 1);
    ck_assert_int_eq(st[2], 0);
    ck_assert_int_eq(st[3], CD_PG_EUNIT);
    ck_assert_int_eq(st[4], CD_PG_EUNIT);
    /* the checked units are written as with cd_pg_batch_add */
    for (uint32_t k = 1; k <= 3; k++) {
        uint32_t a = 500 * k, b = k == 3 ? 1557 : a + 500;
        ck_assert_int_eq(cd_pg_batch_add_checked(pg, &u, id, k, a), 0);
        cd_rows_opts o = {1, 0};
        cd_rows_sink s = cd_rows_unit_sink(&u);
        ck_assert_int_eq(
            cd_rows_parse_unit(blk + offs[a], offs[b] - offs[a], offs[a], a, 0, &o, &s, NULL),
            (long)(b - a));
        cd_pg_batch_unit_done(&u);
    }
    ck_assert_int_eq(cd_pg_batch_commit(pg, &u), 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM transactions"), 1557);
    ck_assert_int_eq(scalar(pg, "SELECT sum(tx_count) FROM indexed_units"), 1557);

    /* the sibling: its one unit present, its txid not its header's root */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "INSERT INTO indexed_units (block_id, unit_no, first_tx, tx_count) "
             "VALUES (%lld, 0, 0, 1); "
             "INSERT INTO transactions (block_id, tx_offset, tx_pos, tx_size, tx_hash) "
             "VALUES (%lld, 81, 0, 119, sha256('x'::bytea))",
             (long long)ids[1], (long long)ids[1]);
    ck_assert_int_eq(cd_pg_exec(pg, sql), 0);
    /* both in one completion: the good one indexed and the tip on it, the
     * other logged, its rows removed and left unindexed */
    int32_t tip = -5;
    uint8_t purged[2] = {9, 9};
    ck_assert_int_eq(cd_pg_blocks_try_complete(pg, ids, 2, &tip, purged), CD_PG_EMERKLE);
    ck_assert_int_eq(tip, 413567);
    ck_assert_int_eq(purged[0], 0);
    ck_assert_int_eq(purged[1], 1);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM transactions WHERE block_id = %lld",
             (long long)ids[1]);
    ck_assert_int_eq(scalar(pg, sql), 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM indexed_units WHERE block_id = %lld",
             (long long)ids[1]);
    ck_assert_int_eq(scalar(pg, sql), 0);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM blocks WHERE indexed AND on_best_chain AND n_units = 4 "
             "AND block_id = %lld",
             (long long)id);
    ck_assert_int_eq(scalar(pg, sql), 1);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM blocks WHERE indexed"), 1);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM best_transactions"), 1557);
    /* again: nothing changes, the tip is reported */
    tip = -5;
    ck_assert_int_eq(cd_pg_blocks_try_complete(pg, ids, 1, &tip, NULL), 0);
    ck_assert_int_eq(tip, 413567);
    cd_pg_unit_free(&u);
    cd_pg_free(pg);
    free(offs);
    free(blk);
}
END_TEST

static Suite *suite_pg(void)
{
    Suite *s = suite_create("pg");
    TCase *tc = tcase_create("schema");
    tcase_add_test(tc, migrate_idempotent);
    tcase_add_test(tc, migrate_newer_schema_refused);
    tcase_add_test(tc, empty_database_version_zero);
    tcase_add_test(tc, unreachable_server_gives_up);
    suite_add_tcase(s, tc);
    tc = tcase_create("units");
    tcase_add_test(tc, unit_exactly_once);
    tcase_add_test(tc, text_and_binary_copy_identical);
    tcase_add_test(tc, block_complete_and_tip_order);
    tcase_add_test(tc, reconnects_after_session_killed);
    tcase_add_test(tc, complete_checks_merkle_root);
    tcase_add_test(tc, unit_range_mismatch_refused);
    tcase_add_test(tc, secondary_indexes_toggle);
    tcase_add_test(tc, secondary_index_invalid_rebuilt);
    tcase_add_test(tc, secondary_btree_converted_to_hash);
    tcase_add_test(tc, secondary_per_partition);
    tcase_add_test(tc, build_plan_rule);
    tcase_add_test(tc, secondary_build_parallel);
    tcase_add_test(tc, streamed_unit_equals_buffered);
    tcase_add_test(tc, stream_connection_lost_mid_unit);
    tcase_add_test(tc, block_gaps_from_markers);
    tcase_add_test(tc, batch_units_one_transaction);
    tcase_add_test(tc, batch_set_based_steps);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_pg)
