/*
 * cd_cdbq.h - the PostgreSQL queries behind conduitd's ConduitDB-compatible
 * HTTP routes (src/api/cd_http_cdb*.c, docs/CONDUITDB_API.md): chain tips
 * and best-chain headers from `blocks`, restoration matches (pushdata keys
 * -> outputs with their spends, inputs with the outputs they spend) through a
 * server-side cursor, and the spends of a batch of outpoints.
 *
 * Why it exists: the compatibility routes answer questions cd_lookup does not
 * (many keys at once, streamed; many outpoints at once); the SQL lives in the
 * query room like every other read-side query, over the existing tables
 * (pushdata, inputs, transactions, blocks, mempool_inputs; docs/QUERIES.md).
 *
 * Every function takes a borrowed connection; results are decoded from
 * binary (bytea as raw bytes, integers big-endian). Return values: 0
 * (CD_LOOKUP_OK) or CD_LOOKUP_EDB (the query failed; err gets one line) /
 * CD_LOOKUP_ECORRUPT (a row of an unexpected shape).
 */
#ifndef CD_CDBQ_H
#define CD_CDBQ_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "cd_err.h"

/* Kinds of restoration match (the pushdata table's flags; ConduitDB's
 * PushdataMatchFlags). */
#define CD_CDBQ_OUTPUT 1u
#define CD_CDBQ_INPUT  2u
#define CD_CDBQ_DATA   4u

/* One block of the indexed block tree. */
typedef struct cd_cdbq_block {
    uint8_t hash[32]; /* internal order */
    uint8_t header[80];
    int32_t height;
    int64_t tx_count;
    int best; /* the indexed best tip (chain tips) / on the best chain */
} cd_cdbq_block;

/* The tips of the tree of indexed blocks (indexed blocks no indexed block
 * builds on), highest first; the indexed best tip has best = 1.
 * Out: *out (malloc'd, the caller frees it; NULL when *n = 0), *n.
 * Returns: 0; CD_LOOKUP_EDB with err. */
int cd_cdbq_chain_tips(PGconn *pg, cd_cdbq_block **out, size_t *n, char *err,
                       size_t errlen) CD_WARN_UNUSED;

/* Best-chain blocks at heights [from, from + count), not above the indexed
 * tip, ascending. Out: out[] (count entries), *n. Returns: 0; EDB. */
int cd_cdbq_headers_from(PGconn *pg, int32_t from, uint32_t count, cd_cdbq_block *out, size_t *n,
                         char *err, size_t errlen) CD_WARN_UNUSED;

/* The block `hash` if it is indexed (any branch): *found 1 with *out.
 * Returns: 0; EDB. */
int cd_cdbq_block_get(PGconn *pg, const uint8_t hash[32], cd_cdbq_block *out, int *found, char *err,
                      size_t errlen) CD_WARN_UNUSED;

/* One restoration match (ConduitDB's record, docs/CONDUITDB_API.md). */
typedef struct cd_cdbq_match {
    uint32_t flags;        /* CD_CDBQ_OUTPUT | INPUT | DATA */
    uint8_t key[32];       /* the pushdata key, natural order */
    uint8_t lock_tx[32];   /* the output's tx, internal order */
    uint32_t lock_idx;     /* its index */
    int spent;             /* 0: unspent as far as the index knows */
    uint8_t unlock_tx[32]; /* the spending tx (if spent) */
    uint32_t unlock_idx;   /* its input */
} cd_cdbq_match;

/* Opens the restoration cursor on `pg`, which must be a session of its own
 * (it starts a read-only REPEATABLE READ transaction that lasts until
 * cd_cdbq_restore_close): every best-chain match of the n keys (32 bytes
 * each, natural order) whose kind is in `kinds`: OUTPUT/DATA rows as the
 * output with its spend (best chain first, else the mempool), INPUT rows as
 * the output the input spends with that input; ordered by height, position
 * in the block, kind, index, key; a (kind, key, output) once.
 * Returns: 0; EDB with err (the transaction is rolled back). */
int cd_cdbq_restore_open(PGconn *pg, const uint8_t *keys, size_t n, unsigned kinds, char *err,
                         size_t errlen) CD_WARN_UNUSED;

/* Fetches up to `max` next matches into out[]. Out: *n (0: the end).
 * Returns: 0; EDB; ECORRUPT. */
int cd_cdbq_restore_fetch(PGconn *pg, cd_cdbq_match *out, size_t max, size_t *n, char *err,
                          size_t errlen) CD_WARN_UNUSED;

/* Ends the cursor's transaction (best effort). */
void cd_cdbq_restore_close(PGconn *pg);

/* One spend of an outpoint (ConduitDB's output-spend row). */
typedef struct cd_cdbq_spend {
    uint8_t out_tx[32]; /* internal order */
    uint32_t out_idx;
    uint8_t in_tx[32]; /* the spending tx */
    uint32_t in_idx;
    int mempool;            /* 1: unconfirmed, block_hash zero */
    uint8_t block_hash[32]; /* block of the spending tx */
} cd_cdbq_spend;

/* The spends of n outpoints (txids[i], internal order, output idx[i]): best
 * chain and mempool, in request order.
 * Out: *out (malloc'd, the caller frees it; NULL when *nout = 0), *nout.
 * Returns: 0; EDB; ECORRUPT. */
int cd_cdbq_output_spends(PGconn *pg, const uint8_t *txids, const uint32_t *idx, size_t n,
                          cd_cdbq_spend **out, size_t *nout, char *err,
                          size_t errlen) CD_WARN_UNUSED;

#endif /* CD_CDBQ_H */
