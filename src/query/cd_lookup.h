/*
 * cd_lookup.h - read-side lookups for applications: where a transaction is,
 * its raw bytes, its merkle branch, a block by hash or height, the indexed
 * tip, who spent an outpoint, the history of a pushdata key.
 *
 * Why it exists: conduit-cli (tx, merkle-proof, block, tx-offsets) and the
 * HTTP API server (cd_http_routes.c) answer the same questions; one module
 * owns how they are answered, so the two cannot drift apart:
 *
 *   - a transaction is located in PostgreSQL (best_transactions: the indexed
 *     best chain; optionally mempool_tx), its bytes come from the LMDB block
 *     store <datadir>/blocks at the indexed offset (a mempool tx a reorg
 *     returned: in the block that left the best chain) or, for a relayed
 *     mempool tx, from mempool_tx.raw; either way they are checked against
 *     the txid;
 *   - its merkle branch comes from the LMDB merkle store <datadir>/merkle
 *     (one read per level), or, when that store lacks the block, is rebuilt
 *     from the block's txids in PostgreSQL; either way it is verified against
 *     the header's merkle root before it is returned;
 *   - a block height means the block of the best chain of the header tree
 *     <datadir>/headers (read-only, straight from LMDB), or, without a tree,
 *     the last block the block store holds at that height.
 *
 * The LMDB environments are opened read-only on first use and kept open for
 * the life of the handle (safe while conduitd writes them: LMDB readers never
 * block the writer and see only committed data). A store that cannot be
 * opened yet (fresh data directory) is retried on the next call; one that
 * fails a read is closed and reopened on the next call.
 *
 * PostgreSQL: the caller owns the connection and passes it with
 * cd_lookup_set_pg() (borrowed; NULL = none; call it again after every
 * reconnect). Every query is parameterised; with CD_LOOKUP_PREPARE they are
 * prepared statements (named cd_lookup_*), prepared once per session.
 * After CD_LOOKUP_EDB the caller can check PQstatus() to tell a lost
 * connection (reconnect, retry) from a failed query.
 *
 * Return values: CD_LOOKUP_OK (0) or a negative CD_LOOKUP_E* code; the
 * handle then holds a one-line description (cd_lookup_error()), worded as
 * conduit-cli prints it after "conduit-cli <cmd>: ".
 *
 * Threads/processes: a handle belongs to the process (and thread) that
 * created it; never use it after fork().
 */
#ifndef CD_LOOKUP_H
#define CD_LOOKUP_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "btc_net.h"
#include "cd_blockstore.h"
#include "cd_err.h"

/* Return codes: CD_LOOKUP_OK (0) and CD_LOOKUP_E* (negative; this module's
 * range -1600..-1699 of cd_err.h, named by cd_strerror()). ENOTFOUND is a
 * normal answer (no such tx / block / spend / tip). */

/* Deepest merkle branch (a block of 2^64 transactions). */
#define CD_LOOKUP_MAX_DEPTH 64

/* cd_lookup_new flags */
#define CD_LOOKUP_PROBE_NETS                                                                       \
    0x1u /* header tree: if `net` does not match the                                               \
            tree's genesis, try the other networks                                                 \
            (quietly: the log goes to /dev/null while                                              \
            probing; for conduit-cli, which may be                                                 \
            pointed at any data directory) */

#define CD_LOOKUP_PREPARE                                                                          \
    0x2u /* run the queries as prepared statements (one                                            \
               PQprepare per statement and session; for a                                          \
               long-lived connection: the HTTP server) */

typedef struct cd_lookup cd_lookup;

/* Creates a handle for the stores under `datadir` (copied). `net` is the
 * network of the header tree (borrowed, static). Opens nothing yet; the
 * LMDB environments it opens later belong to this process (never use the
 * handle after fork). Returns: the handle (never NULL: allocation failure
 * aborts); free with cd_lookup_free (accepts NULL). */
cd_lookup *cd_lookup_new(const char *datadir, const btc_net *net, unsigned flags);
void cd_lookup_free(cd_lookup *lk);

/* Sets the PostgreSQL connection used by the queries (borrowed; NULL: none,
 * queries fail with CD_LOOKUP_EDB). */
void cd_lookup_set_pg(cd_lookup *lk, PGconn *conn);

/* Closes the LMDB environments (they reopen on the next call). */
void cd_lookup_close_stores(cd_lookup *lk);

/* Description of the last error (one line, no newline; "" after success).
 * Valid until the next call on the handle. */
const char *cd_lookup_error(const cd_lookup *lk);

/* SQLSTATE of the last failed query ("" when the last query succeeded or
 * never reached the server), e.g. "42P01" while the schema is not created. */
const char *cd_lookup_sqlstate(const cd_lookup *lk);

/* ---- transactions ---- */

typedef struct cd_lookup_tx {
    uint8_t txid[32]; /* internal order */
    int mempool;      /* 1: unconfirmed (mempool_tx): size is known, the rest
                         below is unset unless in_old_block */
    int in_old_block; /* mempool tx returned by a reorg (source 1): its bytes
                         are in block_hash (off the best chain) at offset;
                         height/pos/header stay unset */
    uint8_t block_hash[32];
    uint8_t header[80];
    int32_t height;
    uint64_t pos;      /* position in the block (0 = coinbase) */
    uint64_t offset;   /* byte offset from the start of the block */
    uint64_t size;     /* bytes */
    uint64_t tx_count; /* transactions in the block */
    int64_t block_id;  /* blocks.block_id */
} cd_lookup_tx;

/* Finds txid on the indexed best chain; with `mempool` set, also in the
 * mempool tables (a best-chain hit wins; for a tx a reorg returned there,
 * the old block that holds its bytes, see in_old_block).
 * Returns: OK with *out filled; ENOTFOUND; EDB. */
int cd_lookup_tx_find(cd_lookup *lk, const uint8_t txid[32], int mempool,
                      cd_lookup_tx *out) CD_WARN_UNUSED;

/* Reads a tx's bytes into a malloc'd buffer (*raw, tx->size bytes; the
 * caller frees it) and checks that they hash to the txid: a confirmed tx and
 * a mempool tx returned by a reorg from the block store; a relayed mempool
 * tx from mempool_tx.raw (sql/004_mempool_raw.sql).
 * Returns: OK; ESTORE (no store / block not stored / read error); ECORRUPT
 * (hash mismatch); EDB; for a relayed mempool tx also ENOTFOUND (it left the
 * mempool since tx_find) and EINPUT (its row has no bytes). */
int cd_lookup_tx_read(cd_lookup *lk, const cd_lookup_tx *tx, uint8_t **raw) CD_WARN_UNUSED;

/* The merkle branch of a confirmed tx, bottom up (siblings in internal order;
 * an odd level's duplicated sibling is the node's own hash), from the LMDB
 * merkle store or else rebuilt from PostgreSQL, verified against the
 * header's merkle root. branch must hold CD_LOOKUP_MAX_DEPTH * 32 bytes.
 * Returns: OK with *depth; ESTORE ("no merkle tree for the block of ...");
 * ECORRUPT (the branch does not lead to the root); EINPUT for a mempool tx
 * ("... is in the mempool, not in a block yet: it has no merkle proof"). */
int cd_lookup_tx_branch(cd_lookup *lk, const cd_lookup_tx *tx, uint8_t *branch,
                        size_t *depth) CD_WARN_UNUSED;

/*
 * Formats the TSC proof JSON (reference/conduitdb.md §1), exactly what
 * `conduit-cli merkle-proof` prints and /v1/tx/<txid>/proof returns, newline
 * included (jansson without JSON_COMPACT: ", " and ": " separators):
 *   {"index": I, "txOrId": "<txid or raw tx hex>", "target": "...",
 *    "nodes": ["<display hex>", ...], "targetType": "hash|header|merkleroot"}
 * Every node is a hash, an odd level's duplicated sibling too (the node's own
 * hash), never the TSC standard's optional "*": what a node's
 * getmerkleproof2 and ConduitDB return (docs/CONDUITDB_API.md).
 * In:  tx, branch (depth hashes, as cd_lookup_tx_branch wrote them); raw:
 *      the tx bytes for txOrId (NULL: the txid); target: "hash", "header"
 *      or "merkleroot".
 * Returns: a malloc'd string (the caller frees it); NULL for an unknown
 *          target or when out of memory.
 */
char *cd_lookup_proof_json(const cd_lookup_tx *tx, const uint8_t *branch, size_t depth,
                           const char *target, const uint8_t *raw) CD_WARN_UNUSED;

/* ---- blocks ---- */

/* Opens the block store now (the other calls open it on first use); for
 * callers that report a missing store before anything else.
 * Returns OK or ESTORE ("cannot open block store <path>: <reason>"). */
int cd_lookup_open_blocks(cd_lookup *lk) CD_WARN_UNUSED;

/* Parses a block id: 64 hex digits (display order) -> *hash, returns 1;
 * decimal height below 2^32 - 1 -> *height, returns 0; else EINPUT. */
int cd_lookup_block_id(const char *id, uint8_t hash[32], uint32_t *height) CD_WARN_UNUSED;

/* Hash of the best-chain block at `height` (header tree), or, without a
 * header tree, of the last block stored at that height.
 * Returns: OK; ENOTFOUND; ESTORE (no block store). */
int cd_lookup_block_hash_at(cd_lookup *lk, uint32_t height, uint8_t hash[32]) CD_WARN_UNUSED;

/* Location of a COMPLETE stored block. Returns: OK; ENOTFOUND; ESTORE. */
int cd_lookup_block_get(cd_lookup *lk, const uint8_t hash[32], cd_block_loc *loc) CD_WARN_UNUSED;

/* Before a block is served (issue 11, F7): re-hashes it against its header
 * (cd_blockstore_verify: header hash, merkle root of its transactions), so
 * a bit flipped on disk is refused instead of sent. Costs one SHA-256d pass
 * over the block (docs/PERFORMANCE.md).
 * Returns: OK; ECORRUPT ("block <hash> is damaged in the block store: ...",
 *          logged); ESTORE. */
int cd_lookup_block_check(cd_lookup *lk, const uint8_t hash[32],
                          const cd_block_loc *loc) CD_WARN_UNUSED;

/* Copies block bytes [off, off + len). Returns OK or ESTORE. */
int cd_lookup_block_read(cd_lookup *lk, const cd_block_loc *loc, uint64_t off, void *buf,
                         size_t len) CD_WARN_UNUSED;

/* Copies tx offsets [first, first + n). Returns OK or ESTORE. */
int cd_lookup_block_offsets(cd_lookup *lk, const cd_block_loc *loc, uint64_t first, uint64_t n,
                            uint64_t *out) CD_WARN_UNUSED;

/* 1 if the merkle store holds the block's verified tree, else 0. */
int cd_lookup_block_has_tree(cd_lookup *lk, const uint8_t hash[32]);

/* ---- index queries (PostgreSQL) ---- */

/* The indexed best tip (best_tip). Returns OK; ENOTFOUND (nothing indexed);
 * EDB. */
int cd_lookup_tip(cd_lookup *lk, int32_t *height, uint8_t hash[32]) CD_WARN_UNUSED;

typedef struct cd_lookup_spend {
    uint8_t txid[32]; /* spending tx, internal order */
    uint32_t in_idx;  /* its input */
    int mempool;      /* 1: unconfirmed; height/block_hash unset */
    int32_t height;
    uint8_t block_hash[32];
} cd_lookup_spend;

/* Who spent outpoint (txid, n): the best chain first, else the mempool
 * (all_inputs). Returns OK; ENOTFOUND (unspent as far as the index knows);
 * EDB. */
int cd_lookup_spender(cd_lookup *lk, const uint8_t txid[32], uint32_t n,
                      cd_lookup_spend *out) CD_WARN_UNUSED;

/* One row of a key's history, also the paging cursor ("after"). */
typedef struct cd_lookup_hist {
    int32_t height;
    uint32_t tx_pos;
    uint32_t flags; /* CD_PG_PUSH_* */
    uint32_t idx;
    uint8_t txid[32];
} cd_lookup_hist;

/* The documented "history of a key" query (docs/QUERIES.md history_pubkey:
 * best_pushdata, ordered by height, tx_pos, flags, idx), one page: rows
 * strictly after `after` (NULL: from the start), at most `limit` of them,
 * into out[] (limit entries). Returns OK with *n (0..limit); EDB. */
int cd_lookup_history(cd_lookup *lk, const uint8_t key[32], const cd_lookup_hist *after,
                      uint32_t limit, cd_lookup_hist *out, size_t *n) CD_WARN_UNUSED;

/* Paging cursor text "<height>.<tx_pos>.<flags>.<idx>" of a row (buf >= 48
 * bytes), and back. parse returns 0 or EINPUT. */
void cd_lookup_cursor_format(const cd_lookup_hist *h, char *buf, size_t len);
int cd_lookup_cursor_parse(const char *s, cd_lookup_hist *out) CD_WARN_UNUSED;

#endif /* CD_LOOKUP_H */
