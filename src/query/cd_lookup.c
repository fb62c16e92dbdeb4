/*
 * cd_lookup.c - read-side lookups shared by conduit-cli and the HTTP API.
 *
 * Why it exists: one owner for "where is this tx, give me its bytes / its
 * proof / this block" (see cd_lookup.h). The queries are the documented ones
 * of docs/QUERIES.md, parameterised, with binary results (bytea as raw
 * bytes, integers big-endian) so nothing is parsed from text.
 */
#include "cd_lookup.h"

#include "btc_merkle.h"
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_pg.h"
#include "cd_util.h"
#include "cd_hdrtree.h"

#include <errno.h>
#include <jansson.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct cd_lookup {
    char *datadir;
    const btc_net *net;
    unsigned flags;
    PGconn *pg;            /* borrowed */
    unsigned prepared;     /* CD_LOOKUP_PREPARE: Q_* bits prepared on pg */
    cd_blockstore *blocks; /* <datadir>/blocks, RDONLY, opened on first use */
    cd_blockstore *merkle; /* <datadir>/merkle */
    cd_hdrtree *tree;      /* <datadir>/headers, RDONLY */
    char err[512];
    char sqlstate[6]; /* of the last failed query, "" if none */
};

static void set_err(cd_lookup *lk, const char *fmt, ...) CD_PRINTF(2, 3);

static void set_err(cd_lookup *lk, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lk->err, sizeof(lk->err), fmt, ap);
    va_end(ap);
    /* one line: libpq messages end with (and may contain) newlines */
    for (char *p = lk->err; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    size_t n = strlen(lk->err);
    while (n > 0 && lk->err[n - 1] == ' ')
        lk->err[--n] = '\0';
}

cd_lookup *cd_lookup_new(const char *datadir, const btc_net *net, unsigned flags)
{
    cd_lookup *lk = cd_xcalloc(1, sizeof(*lk));
    lk->datadir = cd_xstrdup(datadir ? datadir : ".");
    lk->net = net;
    lk->flags = flags;
    return lk;
}

void cd_lookup_close_stores(cd_lookup *lk)
{
    cd_blockstore_close(lk->blocks);
    cd_blockstore_close(lk->merkle);
    cd_hdrtree_close(lk->tree);
    lk->blocks = lk->merkle = NULL;
    lk->tree = NULL;
}

void cd_lookup_free(cd_lookup *lk)
{
    if (!lk)
        return;
    cd_lookup_close_stores(lk);
    free(lk->datadir);
    free(lk);
}

void cd_lookup_set_pg(cd_lookup *lk, PGconn *conn)
{
    lk->pg = conn;
    lk->prepared = 0; /* a new session has none of our statements */
}

const char *cd_lookup_sqlstate(const cd_lookup *lk)
{
    return lk->sqlstate;
}

const char *cd_lookup_error(const cd_lookup *lk)
{
    return lk->err;
}

/* ---- stores ---- */

/* Opens <datadir>/blocks on first use. Returns OK or ESTORE (err set). */
static int blocks_open(cd_lookup *lk)
{
    if (lk->blocks)
        return CD_LOOKUP_OK;
    char path[4096];
    snprintf(path, sizeof(path), "%s/blocks", lk->datadir);
    int rc = cd_blockstore_open(path, CD_BS_RDONLY, 0, &lk->blocks);
    if (rc) {
        lk->blocks = NULL;
        set_err(lk, "cannot open block store %s: %s", path, cd_strerror(rc));
        return CD_LOOKUP_ESTORE;
    }
    return CD_LOOKUP_OK;
}

/* A failed read may mean the environment needs reopening (e.g. the writer
 * grew the map beyond ours): drop it; the next call opens it again. */
static void blocks_failed(cd_lookup *lk, int rc)
{
    if (rc != CD_BS_NOTFOUND) {
        cd_blockstore_close(lk->blocks);
        lk->blocks = NULL;
    }
}

static int merkle_open(cd_lookup *lk)
{
    if (lk->merkle)
        return 0;
    char path[4096];
    snprintf(path, sizeof(path), "%s/merkle", lk->datadir);
    if (cd_blockstore_open(path, CD_BS_RDONLY, 0, &lk->merkle) != 0) {
        lk->merkle = NULL;
        return -1;
    }
    return 0;
}

/* Opens the header tree read-only if <datadir>/headers exists. Returns 0 or
 * -1 (no tree: callers fall back to the block store's height index). */
static int tree_open(cd_lookup *lk)
{
    if (lk->tree)
        return 0;
    char path[4096];
    snprintf(path, sizeof(path), "%s/headers", lk->datadir);
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    if (!(lk->flags & CD_LOOKUP_PROBE_NETS)) {
        if (cd_hdrtree_open(&lk->tree, path, lk->net, CD_HDRTREE_RDONLY) != 0)
            lk->tree = NULL;
        return lk->tree ? 0 : -1;
    }
    /* the datadir's network is the one whose genesis the tree holds; probe
     * quietly (a mismatch is not an error here) */
    const btc_net *nets[5] = {lk->net, btc_net_get(BTC_NET_REGTEST), btc_net_get(BTC_NET_MAIN),
                              btc_net_get(BTC_NET_TEST), btc_net_get(BTC_NET_STN)};
    CD_IGNORE(cd_log_open("/dev/null")); /* failing: the mismatches are logged, no harm */
    for (int i = 0; i < 5 && !lk->tree; i++)
        if (!nets[i] || cd_hdrtree_open(&lk->tree, path, nets[i], CD_HDRTREE_RDONLY) != 0)
            lk->tree = NULL;
    CD_IGNORE(cd_log_open(NULL)); /* stderr: cannot fail */
    return lk->tree ? 0 : -1;
}

/* ---- PostgreSQL helpers ---- */

/* Copies a 32-byte bytea column; returns 0, or -1 if NULL / wrong size. */
static int col_hash(const PGresult *r, int row, int col, uint8_t out[32])
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 32)
        return -1;
    memcpy(out, PQgetvalue(r, row, col), 32);
    return 0;
}

/* The statements (docs/QUERIES.md, parameterised). Parameters: the binary
 * 32-byte hashes first, then text values (integers). */
enum { Q_TX, Q_MEMPOOL_TX, Q_MEMPOOL_RAW, Q_TXIDS, Q_TIP, Q_SPENDER, Q_HISTORY, Q_COUNT };

static const struct {
    const char *name;
    const char *sql;
} stmts[Q_COUNT] = {
    [Q_TX] = {"cd_lookup_tx", "SELECT t.block_hash, b.header, t.height, t.tx_pos, t.tx_offset, "
                              "t.tx_size, b.tx_count, t.block_id FROM best_transactions t "
                              "JOIN blocks b ON b.block_id = t.block_id WHERE t.tx_hash = $1"},
    /* a tx a reorg returned (source 1) keeps its bytes in the block that
     * left the best chain: its `transactions` row there locates them (the
     * newest such block if it left more than one) */
    [Q_MEMPOOL_TX] = {"cd_lookup_mempool_tx",
                      "SELECT m.tx_size, o.block_hash, o.tx_offset, o.tx_size FROM mempool_tx m "
                      "LEFT JOIN LATERAL (SELECT b.block_hash, t.tx_offset, t.tx_size "
                      "FROM transactions t JOIN blocks b ON b.block_id = t.block_id "
                      "WHERE m.source = 1 AND t.tx_hash = m.tx_hash AND NOT b.on_best_chain "
                      "ORDER BY t.block_id DESC LIMIT 1) o ON true WHERE m.tx_hash = $1"},
    /* a relayed tx's bytes (sql/004_mempool_raw.sql) */
    [Q_MEMPOOL_RAW] = {"cd_lookup_mempool_raw", "SELECT raw FROM mempool_tx WHERE tx_hash = $1"},
    [Q_TXIDS] = {"cd_lookup_txids",
                 "SELECT tx_hash FROM transactions WHERE block_id = $1 ORDER BY tx_pos"},
    [Q_TIP] = {"cd_lookup_tip", "SELECT block_hash, height FROM best_tip"},
    /* all_inputs = best_inputs + mempool_inputs (docs/QUERIES.md
     * spent_by_with_mempool); a confirmed spend first */
    [Q_SPENDER] = {"cd_lookup_spender",
                   "SELECT spend_tx_hash, in_idx, height, block_hash FROM all_inputs "
                   "WHERE prev_hash = $1 AND prev_idx = $2::integer "
                   "ORDER BY height NULLS LAST LIMIT 1"},
    /* docs/QUERIES.md history_pubkey, with a keyset cursor on its ORDER BY */
    [Q_HISTORY] = {"cd_lookup_history",
                   "SELECT tx_hash, idx, flags, height, tx_pos FROM best_pushdata "
                   "WHERE push_hash = $1 AND (height, tx_pos, flags, idx) > "
                   "($2::integer, $3::integer, $4::smallint, $5::integer) "
                   "ORDER BY height, tx_pos, flags, idx LIMIT $6::integer"},
};

/* Records a failed query's message and SQLSTATE; frees r. */
static void query_failed(cd_lookup *lk, PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(lk->sqlstate, sizeof(lk->sqlstate), "%s", state ? state : "");
    set_err(lk, "query failed: %s", PQerrorMessage(lk->pg));
    PQclear(r);
}

/* Runs statement q with binary results: as a prepared statement (prepared
 * on first use per session) with CD_LOOKUP_PREPARE, which saves the
 * planning (~0.8 ms of server CPU for the tx lookup, several times its
 * execution), else as a one-off parameterised query. Returns the result
 * (PGRES_TUPLES_OK) or NULL with err set (EDB). */
static PGresult *query(cd_lookup *lk, int q, int nbin, const uint8_t *const *bin, int ntext,
                       const char *const *text)
{
    lk->sqlstate[0] = '\0';
    if (!lk->pg) {
        set_err(lk, "no PostgreSQL connection");
        return NULL;
    }
    const char *vals[8] = {NULL};
    int lens[8] = {0}, fmts[8] = {0};
    int n = nbin + ntext;
    if (n > 8) {
        set_err(lk, "query failed: too many parameters");
        return NULL;
    }
    for (int i = 0; i < nbin; i++) {
        vals[i] = (const char *)bin[i];
        lens[i] = 32;
        fmts[i] = 1;
    }
    for (int i = 0; i < ntext; i++) {
        vals[nbin + i] = text[i];
        lens[nbin + i] = 0;
        fmts[nbin + i] = 0;
    }
    PGresult *r;
    if (lk->flags & CD_LOOKUP_PREPARE) {
        if (!(lk->prepared & (1u << q))) {
            r = PQprepare(lk->pg, stmts[q].name, stmts[q].sql, n, NULL);
            const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            /* 42P05: prepared by an earlier handle on this session */
            int ok = PQresultStatus(r) == PGRES_COMMAND_OK || (state && !strcmp(state, "42P05"));
            if (!ok) {
                query_failed(lk, r);
                return NULL;
            }
            PQclear(r);
            lk->prepared |= 1u << q;
        }
        r = PQexecPrepared(lk->pg, stmts[q].name, n, vals, lens, fmts, 1);
    } else {
        r = PQexecParams(lk->pg, stmts[q].sql, n, NULL, vals, lens, fmts, 1);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        query_failed(lk, r);
        return NULL;
    }
    return r;
}

/* ---- transactions ---- */

int cd_lookup_tx_find(cd_lookup *lk, const uint8_t txid[32], int mempool, cd_lookup_tx *out)
{
    lk->err[0] = '\0';
    memset(out, 0, sizeof(*out));
    memcpy(out->txid, txid, 32);
    char hex[65];
    cd_hex_encode_rev(hex, txid, 32);
    const uint8_t *bin[1] = {txid};
    PGresult *r = query(lk, Q_TX, 1, bin, 0, NULL);
    if (!r)
        return CD_LOOKUP_EDB;
    if (PQntuples(r) > 0) {
        int bad = col_hash(r, 0, 0, out->block_hash) != 0 || PQgetlength(r, 0, 1) != 80;
        if (!bad) {
            memcpy(out->header, PQgetvalue(r, 0, 1), 80);
            out->height = (int32_t)cd_pg_col_int(r, 0, 2);
            out->pos = (uint64_t)cd_pg_col_int(r, 0, 3);
            out->offset = (uint64_t)cd_pg_col_int(r, 0, 4);
            out->size = (uint64_t)cd_pg_col_int(r, 0, 5);
            out->tx_count = (uint64_t)cd_pg_col_int(r, 0, 6);
            out->block_id = cd_pg_col_int(r, 0, 7);
        }
        PQclear(r);
        if (bad) {
            set_err(lk, "query failed: unexpected row for transaction %s", hex);
            return CD_LOOKUP_EDB;
        }
        return CD_LOOKUP_OK;
    }
    PQclear(r);
    if (mempool) {
        r = query(lk, Q_MEMPOOL_TX, 1, bin, 0, NULL);
        if (!r)
            return CD_LOOKUP_EDB;
        int found = PQntuples(r) > 0;
        if (found) {
            out->mempool = 1;
            out->height = -1;
            out->size = (uint64_t)cd_pg_col_int(r, 0, 0);
            if (col_hash(r, 0, 1, out->block_hash) == 0 && !PQgetisnull(r, 0, 2)) {
                out->in_old_block = 1;
                out->offset = (uint64_t)cd_pg_col_int(r, 0, 2);
                out->size = (uint64_t)cd_pg_col_int(r, 0, 3);
            }
        }
        PQclear(r);
        if (found)
            return CD_LOOKUP_OK;
        set_err(lk, "transaction %s is neither in the indexed best chain nor in the mempool", hex);
        return CD_LOOKUP_ENOTFOUND;
    }
    set_err(lk, "transaction %s is not in the indexed best chain", hex);
    return CD_LOOKUP_ENOTFOUND;
}

/* A relayed mempool tx's bytes, from mempool_tx.raw, checked against the
 * txid. The row may be gone since tx_find (confirmed, conflicted, evicted):
 * ENOTFOUND then; the caller may look again (it may now be in a block). */
static int mempool_raw(cd_lookup *lk, const cd_lookup_tx *tx, const char *hex, uint8_t **raw)
{
    const uint8_t *bin[1] = {tx->txid};
    PGresult *r = query(lk, Q_MEMPOOL_RAW, 1, bin, 0, NULL);
    if (!r)
        return CD_LOOKUP_EDB;
    if (PQntuples(r) == 0) {
        PQclear(r);
        set_err(lk, "transaction %s has left the mempool", hex);
        return CD_LOOKUP_ENOTFOUND;
    }
    if (PQgetisnull(r, 0, 0)) {
        PQclear(r);
        set_err(lk, "transaction %s is unconfirmed and its bytes are not stored", hex);
        return CD_LOOKUP_EINPUT;
    }
    size_t len = (size_t)PQgetlength(r, 0, 0);
    uint8_t *buf = cd_xmalloc(len ? len : 1);
    memcpy(buf, PQgetvalue(r, 0, 0), len);
    PQclear(r);
    uint8_t h[32];
    cd_sha256d(h, buf, len);
    if (len != tx->size || memcmp(h, tx->txid, 32) != 0) {
        set_err(lk, "the mempool bytes of %s do not hash to it", hex);
        free(buf);
        return CD_LOOKUP_ECORRUPT;
    }
    *raw = buf;
    return CD_LOOKUP_OK;
}

int cd_lookup_tx_read(cd_lookup *lk, const cd_lookup_tx *tx, uint8_t **raw)
{
    lk->err[0] = '\0';
    *raw = NULL;
    char hex[65], bh[65];
    cd_hex_encode_rev(hex, tx->txid, 32);
    if (tx->mempool && !tx->in_old_block)
        return mempool_raw(lk, tx, hex, raw);
    int rc = blocks_open(lk);
    if (rc)
        return rc;
    cd_block_loc bl;
    uint8_t *buf = NULL;
    int brc = cd_blockstore_get(lk->blocks, tx->block_hash, &bl);
    if (brc == 0) {
        buf = malloc(tx->size ? tx->size : 1);
        brc = buf ? cd_blockstore_read(lk->blocks, &bl, tx->offset, buf, tx->size) : ENOMEM;
    }
    if (brc != 0) {
        cd_hex_encode_rev(bh, tx->block_hash, 32);
        set_err(lk, "block %s: %s", bh,
                brc == CD_BS_NOTFOUND ? "not in the block store" : cd_strerror(brc));
        blocks_failed(lk, brc);
        free(buf);
        return CD_LOOKUP_ESTORE;
    }
    uint8_t h[32];
    cd_sha256d(h, buf, tx->size);
    if (memcmp(h, tx->txid, 32) != 0) {
        set_err(lk, "bytes at the indexed location do not hash to %s", hex);
        free(buf);
        return CD_LOOKUP_ECORRUPT;
    }
    *raw = buf;
    return CD_LOOKUP_OK;
}

/* Branch from the stored tree in <datadir>/merkle, one read per level.
 * Returns 0 with *depth set, or -1 when the store lacks the block. */
static int branch_lmdb(cd_lookup *lk, const cd_lookup_tx *tx, uint8_t *branch, size_t *depth)
{
    if (merkle_open(lk) != 0)
        return -1;
    cd_merkle_meta mm;
    int rc = cd_blockstore_merkle_meta(lk->merkle, tx->block_hash, &mm);
    if (rc == 0 && mm.tx_count != tx->tx_count)
        rc = -1;
    uint64_t size = tx->tx_count, base = 0, i = tx->pos;
    size_t d = 0;
    while (rc == 0 && size > 1 && d < CD_LOOKUP_MAX_DEPTH) {
        uint64_t sib = (i ^ 1) < size ? (i ^ 1) : i; /* odd level: own hash */
        rc = cd_blockstore_merkle_read(lk->merkle, tx->block_hash, base + sib, 1, branch + 32 * d);
        d++;
        base += size;
        size = (size + 1) / 2;
        i >>= 1;
    }
    if (rc != 0 && rc != CD_BS_NOTFOUND && rc != -1) {
        cd_blockstore_close(lk->merkle); /* reopen next time */
        lk->merkle = NULL;
    }
    *depth = d;
    return rc == 0 ? 0 : -1;
}

/* Branch rebuilt from the block's txids in PostgreSQL (same leaves). */
static int branch_pg(cd_lookup *lk, const cd_lookup_tx *tx, uint8_t *branch, size_t *depth)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, tx->block_id);
    const char *text[1] = {id};
    PGresult *r = query(lk, Q_TXIDS, 0, NULL, 1, text);
    if (!r)
        return -1;
    if ((uint64_t)PQntuples(r) != tx->tx_count || tx->tx_count == 0) {
        PQclear(r);
        return -1;
    }
    size_t n = (size_t)tx->tx_count;
    uint8_t *tree = malloc(btc_merkle_tree_count(n) * 32);
    if (!tree) {
        PQclear(r);
        return -1;
    }
    int bad = 0;
    for (size_t k = 0; k < n; k++)
        bad |= col_hash(r, (int)k, 0, tree + 32 * k);
    PQclear(r);
    int mutated = 0;
    int rc = bad ? -1 : btc_merkle_tree_build(tree, n, tree, &mutated);
    if (rc == 0)
        rc = btc_merkle_branch(tree, n, (size_t)tx->pos, branch, NULL, depth);
    free(tree);
    return rc == 0 ? 0 : -1;
}

int cd_lookup_tx_branch(cd_lookup *lk, const cd_lookup_tx *tx, uint8_t *branch, size_t *depth)
{
    lk->err[0] = '\0';
    *depth = 0;
    char hex[65];
    cd_hex_encode_rev(hex, tx->txid, 32);
    if (tx->mempool) {
        set_err(lk,
                "transaction %s is in the mempool, not in a block yet: it has no merkle "
                "proof",
                hex);
        return CD_LOOKUP_EINPUT;
    }
    if (branch_lmdb(lk, tx, branch, depth) != 0 && branch_pg(lk, tx, branch, depth) != 0) {
        set_err(lk, "no merkle tree for the block of %s", hex);
        return CD_LOOKUP_ESTORE;
    }
    if (!btc_merkle_verify(tx->txid, (size_t)tx->pos, branch, *depth, tx->header + 36)) {
        set_err(lk, "the branch does not lead to the header's merkle root");
        return CD_LOOKUP_ECORRUPT;
    }
    return CD_LOOKUP_OK;
}

char *cd_lookup_proof_json(const cd_lookup_tx *tx, const uint8_t *branch, size_t depth,
                           const char *target, const uint8_t *raw)
{
    int t_hash = !strcmp(target, "hash"), t_header = !strcmp(target, "header");
    int t_root = !strcmp(target, "merkleroot");
    if (!t_hash && !t_header && !t_root)
        return NULL;
    char *txor = malloc(raw ? 2 * (size_t)tx->size + 1 : 65); /* the tx's size: may fail */
    if (!txor)
        return NULL;
    if (raw)
        cd_hex_encode(txor, raw, (size_t)tx->size);
    else
        cd_hex_encode_rev(txor, tx->txid, 32);
    char tgt[161], h[65];
    if (t_header)
        cd_hex_encode(tgt, tx->header, 80);
    else
        cd_hex_encode_rev(tgt, t_root ? tx->header + 36 : tx->block_hash, 32);
    /* every node is a hash, the odd level's duplicate too (the node's
     * getmerkleproof2 form; ConduitDB's too): never "*" */
    json_t *nodes = json_array();
    for (size_t d = 0; d < depth && nodes; d++) {
        cd_hex_encode_rev(h, branch + 32 * d, 32);
        if (json_array_append_new(nodes, json_string(h)) != 0) {
            json_decref(nodes);
            nodes = NULL;
        }
    }
    json_t *o = nodes
                    ? json_pack("{s:I, s:s, s:s, s:o, s:s}", "index", (json_int_t)tx->pos, "txOrId",
                                txor, "target", tgt, "nodes", nodes, "targetType", target)
                    : NULL;
    free(txor);
    char *text = o ? json_dumps(o, 0) : NULL;
    json_decref(o);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *out = realloc(text, n + 2);
    if (!out) {
        free(text);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}

/* ---- blocks ---- */

int cd_lookup_open_blocks(cd_lookup *lk)
{
    lk->err[0] = '\0';
    return blocks_open(lk);
}

int cd_lookup_block_id(const char *id, uint8_t hash[32], uint32_t *height)
{
    size_t len = strlen(id);
    if (len == 64)
        return cd_hex_decode_rev(hash, 32, id) == 0 ? 1 : CD_LOOKUP_EINPUT;
    if (len == 0 || len > 10)
        return CD_LOOKUP_EINPUT;
    uint64_t h = 0;
    for (size_t i = 0; i < len; i++) {
        if (id[i] < '0' || id[i] > '9')
            return CD_LOOKUP_EINPUT;
        h = h * 10 + (uint64_t)(id[i] - '0');
    }
    if (h >= UINT32_MAX)
        return CD_LOOKUP_EINPUT;
    *height = (uint32_t)h;
    return 0;
}

int cd_lookup_block_hash_at(cd_lookup *lk, uint32_t height, uint8_t hash[32])
{
    lk->err[0] = '\0';
    int rc = blocks_open(lk);
    if (rc)
        return rc;
    /* the best chain of the header tree decides which block a height means
     * (after a reorg); without a tree (standalone pipeline) the block store's
     * own height index is used */
    if (height <= INT32_MAX && tree_open(lk) == 0) {
        cd_hdr_node node;
        int trc = cd_hdrtree_get_at(lk->tree, (int32_t)height, &node);
        if (trc == 0) {
            memcpy(hash, node.hash, 32);
            return CD_LOOKUP_OK;
        }
        if (trc != CD_HDRTREE_ENOTFOUND) {
            cd_hdrtree_close(lk->tree); /* reopen next time */
            lk->tree = NULL;
        }
    }
    int brc = cd_blockstore_hash_at(lk->blocks, height, hash);
    if (brc == 0)
        return CD_LOOKUP_OK;
    blocks_failed(lk, brc);
    set_err(lk, "no block stored at height %u", height);
    return brc == CD_BS_NOTFOUND ? CD_LOOKUP_ENOTFOUND : CD_LOOKUP_ESTORE;
}

int cd_lookup_block_get(cd_lookup *lk, const uint8_t hash[32], cd_block_loc *loc)
{
    lk->err[0] = '\0';
    int rc = blocks_open(lk);
    if (rc)
        return rc;
    int brc = cd_blockstore_get(lk->blocks, hash, loc);
    if (brc == 0)
        return CD_LOOKUP_OK;
    char hex[65];
    cd_hex_encode_rev(hex, hash, 32);
    set_err(lk, "block %s: %s", hex, brc == CD_BS_NOTFOUND ? "not stored" : cd_strerror(brc));
    blocks_failed(lk, brc);
    return brc == CD_BS_NOTFOUND ? CD_LOOKUP_ENOTFOUND : CD_LOOKUP_ESTORE;
}

int cd_lookup_block_check(cd_lookup *lk, const uint8_t hash[32], const cd_block_loc *loc)
{
    lk->err[0] = '\0';
    int rc = blocks_open(lk);
    if (rc)
        return rc;
    char why[256];
    int brc = cd_blockstore_verify(lk->blocks, hash, loc, why, sizeof(why));
    if (brc == 0)
        return CD_LOOKUP_OK;
    char hex[65];
    cd_hex_encode_rev(hex, hash, 32);
    if (brc == CD_BS_ECORRUPT) {
        set_err(lk, "block %s is damaged in the block store: %s; run `conduit-cli verify --full`",
                hex, why);
        cd_log_error("%s", lk->err);
        return CD_LOOKUP_ECORRUPT;
    }
    set_err(lk, "block %s: %s", hex, cd_strerror(brc));
    blocks_failed(lk, brc);
    return CD_LOOKUP_ESTORE;
}

int cd_lookup_block_read(cd_lookup *lk, const cd_block_loc *loc, uint64_t off, void *buf,
                         size_t len)
{
    lk->err[0] = '\0';
    int rc = blocks_open(lk);
    if (rc)
        return rc;
    int brc = cd_blockstore_read(lk->blocks, loc, off, buf, len);
    if (brc == 0)
        return CD_LOOKUP_OK;
    set_err(lk, "read at %" PRIu64 ": %s", off, cd_strerror(brc));
    blocks_failed(lk, brc);
    return CD_LOOKUP_ESTORE;
}

int cd_lookup_block_offsets(cd_lookup *lk, const cd_block_loc *loc, uint64_t first, uint64_t n,
                            uint64_t *out)
{
    lk->err[0] = '\0';
    int rc = blocks_open(lk);
    if (rc)
        return rc;
    int brc = cd_blockstore_read_offsets(lk->blocks, loc, first, n, out);
    if (brc == 0)
        return CD_LOOKUP_OK;
    set_err(lk, "%s", cd_strerror(brc));
    blocks_failed(lk, brc);
    return CD_LOOKUP_ESTORE;
}

int cd_lookup_block_has_tree(cd_lookup *lk, const uint8_t hash[32])
{
    cd_merkle_meta mm;
    return merkle_open(lk) == 0 && cd_blockstore_merkle_meta(lk->merkle, hash, &mm) == 0;
}

/* ---- index queries ---- */

int cd_lookup_tip(cd_lookup *lk, int32_t *height, uint8_t hash[32])
{
    lk->err[0] = '\0';
    PGresult *r = query(lk, Q_TIP, 0, NULL, 0, NULL);
    if (!r)
        return CD_LOOKUP_EDB;
    int rc = CD_LOOKUP_ENOTFOUND;
    if (PQntuples(r) > 0 && col_hash(r, 0, 0, hash) == 0) {
        *height = (int32_t)cd_pg_col_int(r, 0, 1);
        rc = CD_LOOKUP_OK;
    } else {
        set_err(lk, "nothing is indexed yet");
    }
    PQclear(r);
    return rc;
}

int cd_lookup_spender(cd_lookup *lk, const uint8_t txid[32], uint32_t n, cd_lookup_spend *out)
{
    lk->err[0] = '\0';
    memset(out, 0, sizeof(*out));
    char nbuf[16];
    snprintf(nbuf, sizeof(nbuf), "%" PRIu32, n);
    const uint8_t *bin[1] = {txid};
    const char *text[1] = {nbuf};
    PGresult *r = query(lk, Q_SPENDER, 1, bin, 1, text);
    if (!r)
        return CD_LOOKUP_EDB;
    int rc = CD_LOOKUP_ENOTFOUND;
    if (PQntuples(r) > 0 && col_hash(r, 0, 0, out->txid) == 0) {
        out->in_idx = (uint32_t)cd_pg_col_int(r, 0, 1);
        out->mempool = PQgetisnull(r, 0, 2);
        out->height = out->mempool ? -1 : (int32_t)cd_pg_col_int(r, 0, 2);
        if (!out->mempool)
            col_hash(r, 0, 3, out->block_hash);
        rc = CD_LOOKUP_OK;
    } else {
        char hex[65];
        cd_hex_encode_rev(hex, txid, 32);
        set_err(lk, "outpoint %s:%" PRIu32 " is not spent (as far as the index knows)", hex, n);
    }
    PQclear(r);
    return rc;
}

int cd_lookup_history(cd_lookup *lk, const uint8_t key[32], const cd_lookup_hist *after,
                      uint32_t limit, cd_lookup_hist *out, size_t *n)
{
    lk->err[0] = '\0';
    *n = 0;
    char a[4][16], lim[16];
    /* heights start at 0, so (-1, 0, 0, 0) is before every row */
    snprintf(a[0], sizeof(a[0]), "%" PRId32, after ? after->height : -1);
    snprintf(a[1], sizeof(a[1]), "%" PRIu32, after ? after->tx_pos : 0);
    snprintf(a[2], sizeof(a[2]), "%" PRIu32, after ? after->flags : 0);
    snprintf(a[3], sizeof(a[3]), "%" PRIu32, after ? after->idx : 0);
    snprintf(lim, sizeof(lim), "%" PRIu32, limit);
    const uint8_t *bin[1] = {key};
    const char *text[5] = {a[0], a[1], a[2], a[3], lim};
    PGresult *r = query(lk, Q_HISTORY, 1, bin, 5, text);
    if (!r)
        return CD_LOOKUP_EDB;
    size_t rows = (size_t)PQntuples(r);
    for (size_t i = 0; i < rows && i < limit; i++) {
        cd_lookup_hist *h = &out[*n];
        if (col_hash(r, (int)i, 0, h->txid) != 0)
            continue;
        h->idx = (uint32_t)cd_pg_col_int(r, (int)i, 1);
        h->flags = (uint32_t)cd_pg_col_int(r, (int)i, 2);
        h->height = (int32_t)cd_pg_col_int(r, (int)i, 3);
        h->tx_pos = (uint32_t)cd_pg_col_int(r, (int)i, 4);
        (*n)++;
    }
    PQclear(r);
    return CD_LOOKUP_OK;
}

void cd_lookup_cursor_format(const cd_lookup_hist *h, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRId32 ".%" PRIu32 ".%" PRIu32 ".%" PRIu32, h->height, h->tx_pos,
             h->flags, h->idx);
}

/* Parses a decimal field up to `max`; advances *s. */
static int cursor_field(const char **s, uint64_t max, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        if (++digits > 10 || v > max)
            return -1;
        p++;
    }
    if (!digits)
        return -1;
    *out = v;
    *s = p;
    return 0;
}

int cd_lookup_cursor_parse(const char *s, cd_lookup_hist *out)
{
    uint64_t v[4];
    const uint64_t max[4] = {INT32_MAX, INT32_MAX, 32767, INT32_MAX};
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < 4; i++) {
        if (cursor_field(&s, max[i], &v[i]) != 0)
            return CD_LOOKUP_EINPUT;
        if (*s != (i < 3 ? '.' : '\0'))
            return CD_LOOKUP_EINPUT;
        if (i < 3)
            s++;
    }
    out->height = (int32_t)v[0];
    out->tx_pos = (uint32_t)v[1];
    out->flags = (uint32_t)v[2];
    out->idx = (uint32_t)v[3];
    return 0;
}
