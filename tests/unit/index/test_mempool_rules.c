/*
 * test_mempool_rules.c - the rules by which the mempool index is reconciled
 * with a snapshot of the node's mempool (cd_mempool_sync.c sends the
 * snapshot; sql/006_mempool_mirror.sql cd_mempool_reconcile decides), run
 * against a real throw-away PostgreSQL (tests/pgserver.py exports
 * CD_TEST_PG_CONNINFO), each case in its own database:
 *
 *   a row the node no longer has, seen before the cutoff   evicted
 *                                                          (not-in-node-mempool)
 *   ... seen after the cutoff (it may have arrived after   kept
 *       the node answered)
 *   ... and its descendants (spend its outputs)            evicted with it
 *   a txid the node has and the index lacks                missing (fetched)
 *   ... already mined on the best chain                    not missing
 *   ... mined on a branch that is not the best chain       missing
 *   a txid both have; a snapshot that repeats a txid       kept; counted once
 */
#include "cd_test.h"

#include "cd_config.h"
#include "cd_pg.h"

#include <libpq-fe.h>
#include <unistd.h>

static char conninfo[1024];

static void fresh_db(void)
{
    static int seq;
    const char *base = getenv("CD_TEST_PG_CONNINFO");
    ck_assert_msg(base != NULL, "CD_TEST_PG_CONNINFO not set (run through tests/pgserver.py)");
    PGconn *c = PQconnectdb(base);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    char db[64], sql[128];
    snprintf(db, sizeof(db), "mr_%d_%d", (int)getpid(), seq++);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    snprintf(conninfo, sizeof(conninfo), "%s dbname=%s", base, db);
}

/* A migrated database and a plain connection to it. */
static PGconn *setup(void)
{
    fresh_db();
    cd_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.pg_conninfo = conninfo;
    cd_pg *pg = cd_pg_new(&cfg, NULL);
    ck_assert_int_eq(cd_pg_migrate(pg), CD_PG_OK);
    cd_pg_free(pg);
    PGconn *c = PQconnectdb(conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    return c;
}

static void exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

static long scalar(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
                  PQerrorMessage(c));
    long v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* txid n: 32 bytes, all n (SQL bytea literal). */
static const char *h(int n)
{
    static char buf[8][80];
    static int k;
    char *o = buf[k++ % 8];
    int w = snprintf(o, 80, "'\\x");
    for (int i = 0; i < 32; i++)
        w += snprintf(o + w, (size_t)(80 - w), "%02x", n);
    snprintf(o + w, (size_t)(80 - w), "'::bytea");
    return o;
}

/* A mempool row seen `age` seconds ago. */
static void mp_add(PGconn *c, int n, int age)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO mempool_tx (tx_hash, seen_at, tx_size) "
             "VALUES (%s, now() - interval '%d seconds', 100)",
             h(n), age);
    exec(c, sql);
}

/* Reconciles with the snapshot `ids` (txid numbers) and a cutoff `cut_age`
 * seconds ago. Out: *missing the txid numbers reported missing (first byte
 * of each), *n_missing. Returns: the evicted count. */
static long reconcile(PGconn *c, const int *ids, int n, int cut_age, int *missing, int *n_missing)
{
    char sql[8192];
    int w = snprintf(sql, sizeof(sql),
                     "SELECT evicted, encode(missing, 'hex') FROM "
                     "cd_mempool_reconcile(''::bytea");
    for (int i = 0; i < n; i++)
        w += snprintf(sql + w, sizeof(sql) - (size_t)w, " || %s", h(ids[i]));
    snprintf(sql + w, sizeof(sql) - (size_t)w, ", now() - interval '%d seconds')", cut_age);
    exec(c, "BEGIN");
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
    long ev = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    const char *hex = PQgetvalue(r, 0, 1);
    size_t len = strlen(hex);
    ck_assert_uint_eq(len % 64, 0);
    *n_missing = (int)(len / 64);
    for (int i = 0; i < *n_missing; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(hex + 64 * i, "%2x", &v), 1);
        missing[i] = (int)v;
    }
    PQclear(r);
    exec(c, "COMMIT");
    return ev;
}

static int in_mempool(PGconn *c, int n)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM mempool_tx WHERE tx_hash = %s", h(n));
    return (int)scalar(c, sql);
}

static int has(const int *a, int n, int v)
{
    for (int i = 0; i < n; i++)
        if (a[i] == v)
            return 1;
    return 0;
}

START_TEST(test_evicts_only_what_the_node_lost_before_the_cutoff)
{
    PGconn *c = setup();
    mp_add(c, 1, 600); /* old, node still has it */
    mp_add(c, 2, 600); /* old, node lost it: evicted */
    mp_add(c, 3, 5);   /* new, node lacks it: arrived after the snapshot */
    int snap[] = {1}, missing[8], nm;
    long ev = reconcile(c, snap, 1, 60, missing, &nm);
    ck_assert_int_eq(ev, 1);
    ck_assert_int_eq(nm, 0);
    ck_assert_int_eq(in_mempool(c, 1), 1);
    ck_assert_int_eq(in_mempool(c, 2), 0);
    ck_assert_int_eq(in_mempool(c, 3), 1);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM mempool_evicted WHERE tx_hash = %s "
             "AND reason = 'not-in-node-mempool'",
             h(2));
    ck_assert_int_eq(scalar(c, sql), 1);
    /* the same snapshot again: nothing left to do */
    ev = reconcile(c, snap, 1, 60, missing, &nm);
    ck_assert_int_eq(ev, 0);
    PQfinish(c);
}
END_TEST

START_TEST(test_descendants_go_with_their_parent)
{
    PGconn *c = setup();
    mp_add(c, 1, 600);
    mp_add(c, 2, 5); /* recent, but spends 1 */
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO mempool_inputs (tx_hash, in_idx, prev_idx, prev_hash) "
             "VALUES (%s, 0, 0, %s)",
             h(2), h(1));
    exec(c, sql);
    int missing[8], nm;
    long ev = reconcile(c, NULL, 0, 60, missing, &nm);
    ck_assert_int_eq(ev, 2);
    ck_assert_int_eq(in_mempool(c, 2), 0);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM mempool_evicted WHERE tx_hash = %s AND via = %s", h(2), h(1));
    ck_assert_int_eq(scalar(c, sql), 1);
    PQfinish(c);
}
END_TEST

START_TEST(test_missing_is_what_neither_mempool_nor_best_chain_has)
{
    PGconn *c = setup();
    mp_add(c, 1, 600);
    /* 4 mined on the best chain, 5 on a block that is not (a branch) */
    exec(c, "INSERT INTO blocks (block_id, block_hash, prev_hash, height, header, tx_count, size, "
            "indexed, on_best_chain) VALUES "
            "(1, '\\x01', '\\x00', 1, '\\x00', 1, 81, true, true), "
            "(2, '\\x02', '\\x00', 1, '\\x00', 1, 81, true, false)");
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO transactions (block_id, tx_offset, tx_pos, tx_size, tx_hash) VALUES "
             "(1, 81, 0, 60, %s), (2, 81, 0, 60, %s)",
             h(4), h(5));
    exec(c, sql);
    int snap[] = {1, 4, 5, 6, 6}, missing[8], nm;
    long ev = reconcile(c, snap, 5, 60, missing, &nm);
    ck_assert_int_eq(ev, 0);
    ck_assert_int_eq(nm, 2); /* 5 and 6, 6 once */
    ck_assert(has(missing, nm, 5));
    ck_assert(has(missing, nm, 6));
    ck_assert(!has(missing, nm, 1));
    ck_assert(!has(missing, nm, 4));
    PQfinish(c);
}
END_TEST

static Suite *suite_mempool_rules(void)
{
    Suite *s = suite_create("mempool_rules");
    TCase *tc = tcase_create("reconcile");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_evicts_only_what_the_node_lost_before_the_cutoff);
    tcase_add_test(tc, test_descendants_go_with_their_parent);
    tcase_add_test(tc, test_missing_is_what_neither_mempool_nor_best_chain_has);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_mempool_rules)
