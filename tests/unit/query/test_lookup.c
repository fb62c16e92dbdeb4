/*
 * test_lookup.c - cd_lookup against real data: the regtest chain
 * ../shared/data/regtest/blockchain_116_7c9cd2 written into a block store,
 * a merkle store (every block but 116, so its proofs come from the
 * PostgreSQL fallback), a header tree and a throw-away PostgreSQL (run
 * through tests/pgserver.py) indexed by the parser's own code path.
 *
 * Checked: tx location, bytes (equal to the block files) and merkle branches
 * (verified by recomputing the header's root here) for every tx of blocks
 * 111..116, the TSC JSON, mempool rows, the spends and pushdata keys listed
 * in ../shared/data/README.md, history paging, block ids and heights, the
 * indexed tip, and the error paths (no database, no store, bytes that do not
 * match the index).
 */
#include "cd_test.h"

#include "btc_merkle.h"
#include "btc_net.h"
#include "btc_varint.h"
#include "cd_hash.h"
#include "cd_util.h"
#include "cd_blockstore.h"
#include "cd_hdrtree.h"
#include "cd_lookup.h"
#include "cd_config.h"
#include "cd_pg.h"
#include "cd_rows.h"

#include <libpq-fe.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHAIN  "regtest/blockchain_116_7c9cd2"
#define NBLK   117
#define P2PKH  "d53a9ebfac748561132e49254c42dbe518080c2a5956822d5d3914d47324e842"
#define SPEND  "47f3f47a256d70950ff5690ea377c24464310489e3f54d01b817dd0088f0a095"
#define P2PK   "88c92bb09626c7d505ed861ae8fa7e7aaab5b816fc517eac7a8a6c7f28b1b210"
#define UNSPNT "1afaa1c87ca193480c9aa176f08af78e457e8b8415c71697eded1297ed953db6"
#define INKEY  "44c55cbcb8222d6afd5adc5f72ec3fe2b6bbefad27f9c920805ebb9cb6a43de3"

static char conninfo[1024];
static char datadir[256];
static char hashes[NBLK][65]; /* display hex, from headers.txt */

typedef struct blk {
    uint8_t *raw;
    size_t len;
    uint64_t ntx;
    uint64_t *off; /* ntx offsets */
} blk;

static blk blocks[NBLK];

static void load_blocks(void)
{
    size_t n;
    char *txt = (char *)cd_test_read_file(CHAIN "/headers.txt", &n);
    char *save = NULL, *line = strtok_r(txt, "\n", &save);
    for (int h = 0; h < NBLK; h++, line = strtok_r(NULL, "\n", &save)) {
        ck_assert_ptr_nonnull(line);
        snprintf(hashes[h], sizeof(hashes[h]), "%.64s", line);
        char rel[256];
        snprintf(rel, sizeof(rel), CHAIN "/%.64s", hashes[h]);
        blk *b = &blocks[h];
        b->raw = cd_test_read_file(rel, &b->len);
        int vl = btc_varint_read(b->raw + 80, b->len - 80, &b->ntx);
        ck_assert_int_gt(vl, 0);
        b->off = calloc(b->ntx, sizeof(uint64_t));
        uint64_t at = 80 + (uint64_t)vl;
        cd_rows_opts o = {0, 0};
        cd_rows_sink none = {0};
        for (uint64_t i = 0; i < b->ntx; i++) {
            b->off[i] = at;
            size_t used = 0;
            ck_assert_int_eq(
                cd_rows_parse_unit(b->raw + at, b->len - at, at, (uint32_t)i, 1, &o, &none, &used),
                1);
            at += used;
        }
        ck_assert_uint_eq(at, b->len);
    }
    free(txt);
}

static uint32_t tx_size(const blk *b, uint64_t i)
{
    return (uint32_t)((i + 1 < b->ntx ? b->off[i + 1] : b->len) - b->off[i]);
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
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

/* Builds the stores and the index once (unchecked fixture: runs in the
 * parent; each test opens its own connection in its forked child). */
static void setup_world(void)
{
    load_blocks();
    const char *base = getenv("CD_TEST_PG_CONNINFO");
    ck_assert_msg(base != NULL, "CD_TEST_PG_CONNINFO not set (run through tests/pgserver.py)");
    PGconn *c = PQconnectdb(base);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    char sql[128], db[64];
    snprintf(db, sizeof(db), "lookup_%d", (int)getpid());
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
    exec_ok(c, sql);
    PQfinish(c);
    snprintf(conninfo, sizeof(conninfo), "%s dbname=%s", base, db);

    snprintf(datadir, sizeof(datadir), "/tmp/cd-test-lookup-%d", (int)getpid());
    ck_assert_int_eq(mkdir(datadir, 0700), 0);
    char path[512];
    cd_blockstore *bs, *ms;
    snprintf(path, sizeof(path), "%s/blocks", datadir);
    ck_assert_int_eq(cd_blockstore_open(path, 0, 1u << 30, &bs), 0);
    snprintf(path, sizeof(path), "%s/merkle", datadir);
    ck_assert_int_eq(cd_blockstore_open(path, 0, 1u << 30, &ms), 0);
    cd_hdrtree *tree;
    const btc_net *net = btc_net_get(BTC_NET_REGTEST);
    snprintf(path, sizeof(path), "%s/headers", datadir);
    ck_assert_int_eq(cd_hdrtree_open(&tree, path, net, 0), 0);

    cd_pg *pg = pg_for(conninfo);
    cd_pg_set_retry(pg, 5, 200, NULL);
    ck_assert_int_eq(cd_pg_migrate(pg), CD_PG_OK);
    cd_pg_unit u;
    cd_pg_unit_init(&u, CD_PG_COPY_BINARY);
    cd_rows_opts o = {1, 0};
    for (int h = 0; h < NBLK; h++) {
        blk *b = &blocks[h];
        uint8_t hash[32];
        cd_sha256d(hash, b->raw, 80);
        if (h > 0)
            ck_assert_int_eq(cd_hdrtree_add(tree, b->raw, 1, 80, NULL), 0);
        ck_assert_int_eq(cd_blockstore_begin(bs, hash, b->raw, (uint32_t)h, b->len, b->ntx), 0);
        ck_assert_int_eq(cd_blockstore_append(bs, b->raw, b->len, b->off, b->ntx), 0);
        ck_assert_int_eq(cd_blockstore_finish(bs), 0);
        if (h != 116) { /* 116: proofs from the PostgreSQL fallback */
            size_t nh = btc_merkle_tree_count(b->ntx);
            uint8_t *t = malloc(nh * 32);
            for (uint64_t i = 0; i < b->ntx; i++)
                cd_sha256d(t + 32 * i, b->raw + b->off[i], tx_size(b, i));
            int mut = 0;
            ck_assert_int_eq(btc_merkle_tree_build(t, b->ntx, t, &mut), 0);
            ck_assert_int_eq(cd_blockstore_merkle_put(ms, hash, b->ntx, t, nh), 0);
            free(t);
        }
        int64_t id;
        ck_assert_int_eq(cd_pg_block_register(pg, hash, b->raw, h, b->ntx, b->len, &id), 0);
        ck_assert_int_eq(cd_rows_index_unit(pg, &u, id, 0, b->raw + b->off[0], b->len - b->off[0],
                                            b->off[0], 0, (uint32_t)b->ntx, &o),
                         0);
        int indexed = 0;
        ck_assert_int_eq(cd_pg_block_try_complete(pg, id, &indexed), 0);
        ck_assert_int_eq(indexed, 1);
    }
    int32_t tip = -1;
    ck_assert_int_eq(cd_pg_tip_height(pg, &tip), 0);
    ck_assert_int_eq(tip, 116);
    cd_pg_unit_free(&u);
    cd_pg_free(pg);
    cd_hdrtree_close(tree);
    cd_blockstore_close(bs);
    cd_blockstore_close(ms);
}

static void teardown_world(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", datadir);
    ck_assert_int_eq(system(cmd), 0);
    for (int h = 0; h < NBLK; h++) {
        free(blocks[h].raw);
        free(blocks[h].off);
    }
}

/* A lookup with its own connection (per test: children must not share one). */
static PGconn *conn;

static cd_lookup *open_lookup(void)
{
    conn = PQconnectdb(conninfo);
    ck_assert_int_eq(PQstatus(conn), CONNECTION_OK);
    cd_lookup *lk = cd_lookup_new(datadir, btc_net_get(BTC_NET_REGTEST), 0);
    cd_lookup_set_pg(lk, conn);
    return lk;
}

static void close_lookup(cd_lookup *lk)
{
    cd_lookup_free(lk);
    PQfinish(conn);
    conn = NULL;
}

static void txid_of(const char *hex, uint8_t out[32])
{
    ck_assert_int_eq(cd_hex_decode_rev(out, 32, hex), 0);
}

/* Recomputes the root from a branch, independently of btc_merkle_verify. */
static void root_from_branch(const uint8_t leaf[32], uint64_t index, const uint8_t *branch,
                             size_t depth, uint8_t root[32])
{
    uint8_t h[32], pair[64];
    memcpy(h, leaf, 32);
    for (size_t d = 0; d < depth; d++, index >>= 1) {
        if (index & 1) {
            memcpy(pair, branch + 32 * d, 32);
            memcpy(pair + 32, h, 32);
        } else {
            memcpy(pair, h, 32);
            memcpy(pair + 32, branch + 32 * d, 32);
        }
        cd_sha256d(h, pair, 64);
    }
    memcpy(root, h, 32);
}

START_TEST(every_tx_bytes_and_branch)
{
    cd_lookup *lk = open_lookup();
    for (int h = 111; h < NBLK; h++) {
        blk *b = &blocks[h];
        for (uint64_t i = 0; i < b->ntx; i++) {
            uint8_t txid[32];
            cd_sha256d(txid, b->raw + b->off[i], tx_size(b, i));
            cd_lookup_tx tx;
            ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 1, &tx), CD_LOOKUP_OK);
            ck_assert_int_eq(tx.mempool, 0);
            ck_assert_int_eq(tx.height, h);
            ck_assert_uint_eq(tx.pos, i);
            ck_assert_uint_eq(tx.offset, b->off[i]);
            ck_assert_uint_eq(tx.size, tx_size(b, i));
            ck_assert_uint_eq(tx.tx_count, b->ntx);
            ck_assert_mem_eq(tx.header, b->raw, 80);
            char bh[65];
            cd_hex_encode_rev(bh, tx.block_hash, 32);
            ck_assert_str_eq(bh, hashes[h]);
            uint8_t *raw = NULL;
            ck_assert_int_eq(cd_lookup_tx_read(lk, &tx, &raw), CD_LOOKUP_OK);
            ck_assert_mem_eq(raw, b->raw + b->off[i], tx.size);
            free(raw);
            uint8_t branch[CD_LOOKUP_MAX_DEPTH * 32], root[32];
            size_t depth = 99;
            ck_assert_int_eq(cd_lookup_tx_branch(lk, &tx, branch, &depth), CD_LOOKUP_OK);
            ck_assert_uint_eq(depth, btc_merkle_depth(b->ntx));
            root_from_branch(txid, i, branch, depth, root);
            ck_assert_mem_eq(root, b->raw + 36, 32);
        }
    }
    close_lookup(lk);
}
END_TEST

START_TEST(proof_json_format)
{
    cd_lookup *lk = open_lookup();
    /* block 111 has 2 txs: the branch of tx 1 is the coinbase txid */
    blk *b = &blocks[111];
    uint8_t txid[32], cb[32];
    txid_of(P2PKH, txid);
    cd_sha256d(cb, b->raw + b->off[0], tx_size(b, 0));
    cd_lookup_tx tx;
    ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 0, &tx), CD_LOOKUP_OK);
    uint8_t branch[CD_LOOKUP_MAX_DEPTH * 32];
    size_t depth;
    ck_assert_int_eq(cd_lookup_tx_branch(lk, &tx, branch, &depth), CD_LOOKUP_OK);
    ck_assert_uint_eq(depth, 1);
    char cbhex[65], root[65], want[1024];
    cd_hex_encode_rev(cbhex, cb, 32);
    cd_hex_encode_rev(root, b->raw + 36, 32);
    char *j = cd_lookup_proof_json(&tx, branch, depth, "hash", NULL);
    snprintf(want, sizeof(want),
             "{\"index\": 1, \"txOrId\": \"%s\", \"target\": \"%s\", \"nodes\": [\"%s\"], "
             "\"targetType\": \"hash\"}\n",
             P2PKH, hashes[111], cbhex);
    ck_assert_str_eq(j, want);
    free(j);
    j = cd_lookup_proof_json(&tx, branch, depth, "merkleroot", NULL);
    ck_assert_ptr_nonnull(strstr(j, root));
    ck_assert_ptr_nonnull(strstr(j, "\"targetType\": \"merkleroot\"}\n"));
    free(j);
    uint8_t *raw = NULL;
    ck_assert_int_eq(cd_lookup_tx_read(lk, &tx, &raw), CD_LOOKUP_OK);
    j = cd_lookup_proof_json(&tx, branch, depth, "header", raw);
    char *txhex = malloc(2 * tx.size + 1), hdr[161];
    cd_hex_encode(txhex, raw, tx.size);
    cd_hex_encode(hdr, b->raw, 80);
    ck_assert_ptr_nonnull(strstr(j, txhex));
    ck_assert_ptr_nonnull(strstr(j, hdr));
    free(j);
    free(txhex);
    free(raw);
    ck_assert_ptr_null(cd_lookup_proof_json(&tx, branch, depth, "moon", NULL));
    close_lookup(lk);
}
END_TEST

START_TEST(mempool_and_unknown)
{
    cd_lookup *lk = open_lookup();
    uint8_t txid[32];
    memset(txid, 0xab, 32);
    cd_lookup_tx tx;
    ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 1, &tx), CD_LOOKUP_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(cd_lookup_error(lk), "nor in the mempool"));
    ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 0, &tx), CD_LOOKUP_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(cd_lookup_error(lk), "is not in the indexed best chain"));
    exec_ok(conn, "INSERT INTO mempool_tx (tx_hash, tx_size) VALUES "
                  "('\\xabababababababababababababababababababababababababababababababab', 123)");
    ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 1, &tx), CD_LOOKUP_OK);
    ck_assert_int_eq(tx.mempool, 1);
    ck_assert_uint_eq(tx.size, 123);
    ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 0, &tx), CD_LOOKUP_ENOTFOUND);
    ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 1, &tx), CD_LOOKUP_OK);
    uint8_t *raw = NULL, branch[CD_LOOKUP_MAX_DEPTH * 32];
    size_t depth;
    /* a row without bytes (inserted by hand, or by the 002 signature) */
    ck_assert_int_eq(cd_lookup_tx_read(lk, &tx, &raw), CD_LOOKUP_EINPUT);
    ck_assert_ptr_nonnull(strstr(cd_lookup_error(lk), "bytes are not stored"));
    ck_assert_ptr_null(raw);
    ck_assert_int_eq(cd_lookup_tx_branch(lk, &tx, branch, &depth), CD_LOOKUP_EINPUT);
    ck_assert_ptr_nonnull(strstr(cd_lookup_error(lk), "not in a block yet"));
    /* a mempool spend of an unspent confirmed output */
    exec_ok(conn, "INSERT INTO mempool_inputs (tx_hash, in_idx, prev_idx, prev_hash) VALUES "
                  "('\\xabababababababababababababababababababababababababababababababab', 3, 0, "
                  "cd_txid('" UNSPNT "'))");
    uint8_t prev[32];
    txid_of(UNSPNT, prev);
    cd_lookup_spend sp;
    ck_assert_int_eq(cd_lookup_spender(lk, prev, 0, &sp), CD_LOOKUP_OK);
    ck_assert_int_eq(sp.mempool, 1);
    ck_assert_uint_eq(sp.in_idx, 3);
    ck_assert_mem_eq(sp.txid, txid, 32);
    exec_ok(conn, "DELETE FROM mempool_tx");
    ck_assert_int_eq(cd_lookup_spender(lk, prev, 0, &sp), CD_LOOKUP_ENOTFOUND);
    close_lookup(lk);
}
END_TEST

/* cd_mempool_add_batch (sql/004 signature) with two txs' bytes
 * concatenated; returns `accepted`. The bytes need not be a valid tx: the
 * SQL stores what it is given, cd_lookup checks the hash. */
static int add_batch(const uint8_t *txids, size_t n, const char *sizes, const uint8_t *raws,
                     size_t raws_len)
{
    const char *vals[10] = {
        (const char *)txids, sizes, (const char *)raws, "", "{}", "", "{}", "{}", "{}", "0"};
    int lens[10] = {(int)(32 * n), 0, (int)raws_len, 0, 0, 0, 0, 0, 0, 0};
    int fmts[10] = {1, 0, 1, 1, 0, 1, 0, 0, 0, 0};
    PGresult *r = PQexecParams(conn,
                               "SELECT accepted FROM cd_mempool_add_batch($1, $2, $3, $4, $5, "
                               "$6, $7, $8, $9, $10)",
                               10, NULL, vals, lens, fmts, 0);
    int acc = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return acc;
}

START_TEST(mempool_relayed_bytes)
{
    cd_lookup *lk = open_lookup();
    /* two txs of different sizes: the second's bytes start after the first */
    const uint8_t a[] = "0123456789", b[] = "abcde";
    uint8_t txids[64], raws[15];
    cd_sha256d(txids, a, 10);
    cd_sha256d(txids + 32, b, 5);
    memcpy(raws, a, 10);
    memcpy(raws + 10, b, 5);
    /* sizes that do not match the bytes are refused */
    ck_assert_int_eq(add_batch(txids, 2, "{10,4}", raws, 15), -1);
    ck_assert_int_eq(add_batch(txids, 2, "{10,5}", raws, 15), 2);
    const uint8_t *want[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        cd_lookup_tx tx;
        ck_assert_int_eq(cd_lookup_tx_find(lk, txids + 32 * k, 1, &tx), CD_LOOKUP_OK);
        ck_assert_int_eq(tx.mempool, 1);
        ck_assert_int_eq(tx.in_old_block, 0);
        ck_assert_uint_eq(tx.size, k ? 5 : 10);
        uint8_t *raw = NULL;
        ck_assert_int_eq(cd_lookup_tx_read(lk, &tx, &raw), CD_LOOKUP_OK);
        ck_assert_mem_eq(raw, want[k], tx.size);
        free(raw);
        uint8_t branch[CD_LOOKUP_MAX_DEPTH * 32];
        size_t depth;
        ck_assert_int_eq(cd_lookup_tx_branch(lk, &tx, branch, &depth), CD_LOOKUP_EINPUT);
        ck_assert_ptr_nonnull(strstr(cd_lookup_error(lk), "not in a block yet"));
    }
    /* stored bytes that do not hash to the txid */
    cd_lookup_tx tx;
    ck_assert_int_eq(cd_lookup_tx_find(lk, txids, 1, &tx), CD_LOOKUP_OK);
    char sql[256], hex[65];
    cd_hex_encode(hex, txids, 32);
    snprintf(sql, sizeof(sql),
             "UPDATE mempool_tx SET raw = '\\x30313233343536373839ff' "
             "WHERE tx_hash = '\\x%s'",
             hex);
    exec_ok(conn, sql);
    uint8_t *raw = NULL;
    ck_assert_int_eq(cd_lookup_tx_read(lk, &tx, &raw), CD_LOOKUP_ECORRUPT);
    ck_assert_ptr_null(raw);
    /* gone between find and read (confirmed, conflicted, evicted) */
    snprintf(sql, sizeof(sql), "DELETE FROM mempool_tx WHERE tx_hash = '\\x%s'", hex);
    exec_ok(conn, sql);
    ck_assert_int_eq(cd_lookup_tx_read(lk, &tx, &raw), CD_LOOKUP_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(cd_lookup_error(lk), "has left the mempool"));
    ck_assert_int_eq(cd_lookup_tx_find(lk, txids, 1, &tx), CD_LOOKUP_ENOTFOUND);
    /* the 002 signature still works and stores no bytes */
    exec_ok(conn, "DELETE FROM mempool_tx");
    PGresult *r =
        PQexec(conn, "SELECT accepted FROM cd_mempool_add_batch("
                     "'\\xabababababababababababababababababababababababababababababababab',"
                     " '{7}', '', '{}', '', '{}', '{}', '{}', 0)");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    r = PQexec(conn, "SELECT raw IS NULL FROM mempool_tx");
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    exec_ok(conn, "DELETE FROM mempool_tx");
    close_lookup(lk);
}
END_TEST

/* Txs a reorg returns to the mempool (source 1) are read from the block
 * that left the best chain. The switch is simulated in a transaction on the
 * lookup's own connection and rolled back (the fixture is shared). */
START_TEST(mempool_reorged_bytes_from_old_block)
{
    cd_lookup *lk = open_lookup();
    exec_ok(conn, "BEGIN");
    exec_ok(conn, "UPDATE blocks SET on_best_chain = false WHERE height >= 115");
    int seen = 0;
    for (int h = 115; h < NBLK; h++) {
        blk *bk = &blocks[h];
        uint8_t bhash[32];
        cd_sha256d(bhash, bk->raw, 80);
        for (uint64_t i = 0; i < bk->ntx; i++) {
            uint8_t txid[32];
            cd_sha256d(txid, bk->raw + bk->off[i], tx_size(bk, i));
            cd_lookup_tx tx;
            int rc = cd_lookup_tx_find(lk, txid, 1, &tx);
            if (i == 0) { /* a coinbase does not return to the mempool */
                ck_assert_int_eq(rc, CD_LOOKUP_ENOTFOUND);
                continue;
            }
            ck_assert_int_eq(rc, CD_LOOKUP_OK);
            ck_assert_int_eq(tx.mempool, 1);
            ck_assert_int_eq(tx.in_old_block, 1);
            ck_assert_mem_eq(tx.block_hash, bhash, 32);
            ck_assert_uint_eq(tx.offset, bk->off[i]);
            ck_assert_uint_eq(tx.size, tx_size(bk, i));
            uint8_t *raw = NULL;
            ck_assert_int_eq(cd_lookup_tx_read(lk, &tx, &raw), CD_LOOKUP_OK);
            ck_assert_mem_eq(raw, bk->raw + bk->off[i], tx.size);
            free(raw);
            uint8_t branch[CD_LOOKUP_MAX_DEPTH * 32];
            size_t depth;
            ck_assert_int_eq(cd_lookup_tx_branch(lk, &tx, branch, &depth), CD_LOOKUP_EINPUT);
            /* a wrong location is caught by the hash check */
            tx.offset -= 1; /* stays inside the block */
            ck_assert_int_eq(cd_lookup_tx_read(lk, &tx, &raw), CD_LOOKUP_ECORRUPT);
            seen++;
        }
    }
    ck_assert_int_ge(seen, 3);
    exec_ok(conn, "ROLLBACK");
    close_lookup(lk);
}
END_TEST

START_TEST(spenders_from_readme)
{
    cd_lookup *lk = open_lookup();
    uint8_t prev[32], want[32];
    cd_lookup_spend sp;
    txid_of(P2PKH, prev);
    ck_assert_int_eq(cd_lookup_spender(lk, prev, 0, &sp), CD_LOOKUP_OK);
    txid_of(SPEND, want);
    ck_assert_mem_eq(sp.txid, want, 32);
    ck_assert_uint_eq(sp.in_idx, 1);
    ck_assert_int_eq(sp.height, 115);
    ck_assert_int_eq(sp.mempool, 0);
    char bh[65];
    cd_hex_encode_rev(bh, sp.block_hash, 32);
    ck_assert_str_eq(bh, hashes[115]);
    ck_assert_int_eq(cd_lookup_spender(lk, prev, 1, &sp), CD_LOOKUP_OK);
    txid_of(P2PK, want);
    ck_assert_mem_eq(sp.txid, want, 32);
    ck_assert_int_eq(sp.height, 112);
    ck_assert_int_eq(cd_lookup_spender(lk, prev, 7, &sp), CD_LOOKUP_ENOTFOUND);
    close_lookup(lk);
}
END_TEST

START_TEST(history_pages)
{
    cd_lookup *lk = open_lookup();
    uint8_t key[32];
    ck_assert_int_eq(cd_hex_decode(key, 32, INKEY), 0);
    cd_lookup_hist rows[1000];
    size_t n;
    ck_assert_int_eq(cd_lookup_history(lk, key, NULL, 10, rows, &n), CD_LOOKUP_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(rows[0].height, 115);
    ck_assert_uint_eq(rows[0].flags, CD_PG_PUSH_INPUT);
    ck_assert_uint_eq(rows[0].idx, 1);
    uint8_t want[32];
    txid_of(SPEND, want);
    ck_assert_mem_eq(rows[0].txid, want, 32);
    /* the coinbase key: every page after the previous one's last row equals
     * the whole list */
    PGresult *r = PQexec(conn, "SELECT push_hash FROM pushdata GROUP BY push_hash "
                               "ORDER BY count(*) DESC, 1 LIMIT 1");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    size_t blen;
    unsigned char *kb = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0), &blen);
    ck_assert_uint_eq(blen, 32);
    memcpy(key, kb, 32);
    PQfreemem(kb);
    PQclear(r);
    size_t all;
    ck_assert_int_eq(cd_lookup_history(lk, key, NULL, 1000, rows, &all), CD_LOOKUP_OK);
    ck_assert_uint_gt(all, 50);
    size_t got = 0;
    cd_lookup_hist page[7], after;
    int first = 1;
    for (;;) {
        ck_assert_int_eq(cd_lookup_history(lk, key, first ? NULL : &after, 7, page, &n),
                         CD_LOOKUP_OK);
        for (size_t i = 0; i < n; i++, got++) {
            ck_assert_int_eq(page[i].height, rows[got].height);
            ck_assert_uint_eq(page[i].tx_pos, rows[got].tx_pos);
            ck_assert_mem_eq(page[i].txid, rows[got].txid, 32);
        }
        if (n < 7)
            break;
        char cur[64];
        cd_lookup_cursor_format(&page[n - 1], cur, sizeof(cur));
        ck_assert_int_eq(cd_lookup_cursor_parse(cur, &after), 0);
        first = 0;
    }
    ck_assert_uint_eq(got, all);
    for (size_t i = 1; i < all; i++) /* oldest first */
        ck_assert_int_le(rows[i - 1].height, rows[i].height);
    close_lookup(lk);
}
END_TEST

START_TEST(cursor_text)
{
    cd_lookup_hist h = {.height = 115, .tx_pos = 2, .flags = 4, .idx = 17}, back;
    char buf[64];
    cd_lookup_cursor_format(&h, buf, sizeof(buf));
    ck_assert_str_eq(buf, "115.2.4.17");
    ck_assert_int_eq(cd_lookup_cursor_parse(buf, &back), 0);
    ck_assert_int_eq(back.height, 115);
    ck_assert_uint_eq(back.tx_pos, 2);
    ck_assert_uint_eq(back.flags, 4);
    ck_assert_uint_eq(back.idx, 17);
    const char *bad[] = {"",         "1.2.3",    "1.2.3.4.5",         "1..3.4",      "a.b.c.d",
                         "-1.2.3.4", "1.2.3.4 ", "99999999999.0.0.0", "1.2.40000.4", "1.2.3.4x"};
    for (size_t i = 0; i < CD_ARRAY_LEN(bad); i++)
        ck_assert_msg(cd_lookup_cursor_parse(bad[i], &back) == CD_LOOKUP_EINPUT, "%s", bad[i]);
}
END_TEST

START_TEST(block_ids_heights_and_reads)
{
    uint8_t hash[32];
    uint32_t height = 7;
    ck_assert_int_eq(cd_lookup_block_id(hashes[116], hash, &height), 1);
    ck_assert_int_eq(cd_lookup_block_id("116", hash, &height), 0);
    ck_assert_uint_eq(height, 116);
    ck_assert_int_eq(cd_lookup_block_id("0", hash, &height), 0);
    ck_assert_uint_eq(height, 0);
    const char *bad[] = {"",
                         "-1",
                         "4294967295",
                         "99999999999",
                         "12a",
                         "0x10",
                         "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e220",
                         "zf9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"};
    for (size_t i = 0; i < CD_ARRAY_LEN(bad); i++)
        ck_assert_msg(cd_lookup_block_id(bad[i], hash, &height) == CD_LOOKUP_EINPUT, "%s", bad[i]);

    cd_lookup *lk = open_lookup();
    for (int h = 0; h < NBLK; h += 29) {
        ck_assert_int_eq(cd_lookup_block_hash_at(lk, (uint32_t)h, hash), CD_LOOKUP_OK);
        char hex[65];
        cd_hex_encode_rev(hex, hash, 32);
        ck_assert_str_eq(hex, hashes[h]);
        cd_block_loc loc;
        ck_assert_int_eq(cd_lookup_block_get(lk, hash, &loc), CD_LOOKUP_OK);
        ck_assert_uint_eq(loc.size, blocks[h].len);
        ck_assert_uint_eq(loc.height, (uint32_t)h);
        ck_assert_mem_eq(loc.header, blocks[h].raw, 80);
        uint8_t *buf = malloc(loc.size);
        /* in uneven pieces, as the HTTP server streams it */
        for (uint64_t off = 0; off < loc.size; off += 100) {
            size_t n = (size_t)CD_MIN(100u, loc.size - off);
            ck_assert_int_eq(cd_lookup_block_read(lk, &loc, off, buf + off, n), CD_LOOKUP_OK);
        }
        ck_assert_mem_eq(buf, blocks[h].raw, loc.size);
        ck_assert_int_eq(cd_lookup_block_read(lk, &loc, loc.size - 1, buf, 2), CD_LOOKUP_ESTORE);
        free(buf);
        uint64_t offs[4];
        uint64_t n = CD_MIN(blocks[h].ntx, 4u);
        ck_assert_int_eq(cd_lookup_block_offsets(lk, &loc, 0, n, offs), CD_LOOKUP_OK);
        ck_assert_mem_eq(offs, blocks[h].off, n * sizeof(uint64_t));
        ck_assert_int_eq(cd_lookup_block_has_tree(lk, hash), h != 116);
    }
    ck_assert_int_eq(cd_lookup_block_hash_at(lk, 117, hash), CD_LOOKUP_ENOTFOUND);
    memset(hash, 0x11, 32);
    cd_block_loc loc;
    ck_assert_int_eq(cd_lookup_block_get(lk, hash, &loc), CD_LOOKUP_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(cd_lookup_error(lk), "not stored"));
    int32_t th = -1;
    ck_assert_int_eq(cd_lookup_tip(lk, &th, hash), CD_LOOKUP_OK);
    ck_assert_int_eq(th, 116);
    char hex[65];
    cd_hex_encode_rev(hex, hash, 32);
    ck_assert_str_eq(hex, hashes[116]);
    close_lookup(lk);
}
END_TEST

START_TEST(errors_no_db_no_store_bad_bytes)
{
    /* no connection: every query is EDB */
    cd_lookup *lk = cd_lookup_new(datadir, btc_net_get(BTC_NET_REGTEST), 0);
    uint8_t txid[32], hash[32];
    txid_of(P2PKH, txid);
    cd_lookup_tx tx;
    int32_t th;
    ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 1, &tx), CD_LOOKUP_EDB);
    ck_assert_str_eq(cd_lookup_error(lk), "no PostgreSQL connection");
    ck_assert_str_eq(cd_lookup_sqlstate(lk), "");
    ck_assert_int_eq(cd_lookup_tip(lk, &th, hash), CD_LOOKUP_EDB);
    /* LMDB-only lookups still work */
    ck_assert_int_eq(cd_lookup_block_hash_at(lk, 5, hash), CD_LOOKUP_OK);
    cd_lookup_free(lk);

    /* a data directory without stores */
    char empty[300];
    snprintf(empty, sizeof(empty), "%s/nothing-here", datadir);
    lk = open_lookup();
    ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 0, &tx), CD_LOOKUP_OK);
    cd_lookup *lk2 = cd_lookup_new(empty, btc_net_get(BTC_NET_REGTEST), 0);
    uint8_t *raw = NULL;
    ck_assert_int_eq(cd_lookup_tx_read(lk2, &tx, &raw), CD_LOOKUP_ESTORE);
    ck_assert_ptr_nonnull(strstr(cd_lookup_error(lk2), "cannot open block store"));
    ck_assert_int_eq(cd_lookup_open_blocks(lk2), CD_LOOKUP_ESTORE);
    ck_assert_int_eq(cd_lookup_block_hash_at(lk2, 5, hash), CD_LOOKUP_ESTORE);
    cd_lookup_free(lk2);

    /* the index points at the wrong bytes: refused, not served */
    tx.offset -= 1;
    ck_assert_int_eq(cd_lookup_tx_read(lk, &tx, &raw), CD_LOOKUP_ECORRUPT);
    ck_assert_ptr_null(raw);
    ck_assert_ptr_nonnull(strstr(cd_lookup_error(lk), "do not hash to"));
    tx.offset += 2; /* past the end of the block: a store error */
    ck_assert_int_eq(cd_lookup_tx_read(lk, &tx, &raw), CD_LOOKUP_ESTORE);
    tx.offset -= 1;
    tx.pos ^= 1; /* a branch for the wrong position does not reach the root */
    uint8_t branch[CD_LOOKUP_MAX_DEPTH * 32];
    size_t depth;
    ck_assert_int_eq(cd_lookup_tx_branch(lk, &tx, branch, &depth), CD_LOOKUP_ECORRUPT);
    /* a failed query is EDB with the server's message */
    cd_lookup_set_pg(lk, conn);
    PQfinish(conn);
    conn = PQconnectdb(conninfo);
    exec_ok(conn, "ALTER VIEW best_transactions RENAME TO best_transactions_x");
    cd_lookup_set_pg(lk, conn);
    ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 0, &tx), CD_LOOKUP_EDB);
    ck_assert_ptr_nonnull(strstr(cd_lookup_error(lk), "query failed"));
    ck_assert_ptr_null(strchr(cd_lookup_error(lk), '\n'));
    /* undefined table: what a first start looks like before the schema
     * exists (the HTTP server answers 503 for it) */
    ck_assert_str_eq(cd_lookup_sqlstate(lk), "42P01");
    exec_ok(conn, "ALTER VIEW best_transactions_x RENAME TO best_transactions");
    ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 0, &tx), CD_LOOKUP_OK);
    ck_assert_str_eq(cd_lookup_sqlstate(lk), "");
    close_lookup(lk);
}
END_TEST

/* CD_LOOKUP_PREPARE (the HTTP server's mode): the same answers; a second
 * handle on the same session finds the statements already prepared; a new
 * session (set_pg) prepares them again. */
START_TEST(prepared_statements_same_answers)
{
    conn = PQconnectdb(conninfo);
    ck_assert_int_eq(PQstatus(conn), CONNECTION_OK);
    cd_lookup *a = cd_lookup_new(datadir, btc_net_get(BTC_NET_REGTEST), CD_LOOKUP_PREPARE);
    cd_lookup *b = cd_lookup_new(datadir, btc_net_get(BTC_NET_REGTEST), CD_LOOKUP_PREPARE);
    cd_lookup_set_pg(a, conn);
    cd_lookup_set_pg(b, conn);
    uint8_t txid[32], key[32], hash[32];
    txid_of(P2PKH, txid);
    ck_assert_int_eq(cd_hex_decode(key, 32, INKEY), 0);
    for (int round = 0; round < 3; round++) {
        cd_lookup *lk = round == 1 ? b : a;
        if (round == 2) { /* a new session: everything prepared again */
            PQfinish(conn);
            conn = PQconnectdb(conninfo);
            cd_lookup_set_pg(lk, conn);
        }
        cd_lookup_tx tx;
        ck_assert_int_eq(cd_lookup_tx_find(lk, txid, 1, &tx), CD_LOOKUP_OK);
        ck_assert_int_eq(tx.height, 111);
        ck_assert_uint_eq(tx.pos, 1);
        uint8_t none[32];
        memset(none, 0x5a, 32);
        ck_assert_int_eq(cd_lookup_tx_find(lk, none, 1, &tx), CD_LOOKUP_ENOTFOUND);
        int32_t th;
        ck_assert_int_eq(cd_lookup_tip(lk, &th, hash), CD_LOOKUP_OK);
        ck_assert_int_eq(th, 116);
        cd_lookup_spend sp;
        ck_assert_int_eq(cd_lookup_spender(lk, txid, 1, &sp), CD_LOOKUP_OK);
        ck_assert_int_eq(sp.height, 112);
        cd_lookup_hist rows[4];
        size_t n;
        ck_assert_int_eq(cd_lookup_history(lk, key, NULL, 4, rows, &n), CD_LOOKUP_OK);
        ck_assert_uint_eq(n, 1);
        ck_assert_int_eq(rows[0].height, 115);
    }
    cd_lookup_free(a);
    cd_lookup_free(b);
    PQfinish(conn);
    conn = NULL;
}
END_TEST

static Suite *suite_lookup(void)
{
    Suite *s = suite_create("lookup");
    TCase *tc = tcase_create("lookup");
    tcase_add_unchecked_fixture(tc, setup_world, teardown_world);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, every_tx_bytes_and_branch);
    tcase_add_test(tc, proof_json_format);
    tcase_add_test(tc, mempool_and_unknown);
    tcase_add_test(tc, mempool_relayed_bytes);
    tcase_add_test(tc, mempool_reorged_bytes_from_old_block);
    tcase_add_test(tc, spenders_from_readme);
    tcase_add_test(tc, history_pages);
    tcase_add_test(tc, cursor_text);
    tcase_add_test(tc, block_ids_heights_and_reads);
    tcase_add_test(tc, errors_no_db_no_store_bad_bytes);
    tcase_add_test(tc, prepared_statements_same_answers);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_lookup)
