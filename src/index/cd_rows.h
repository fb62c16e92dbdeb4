/*
 * cd_rows.h - transactions -> index rows: the parse-to-sink code shared by
 * the parser worker, the mempool module, conduit-index-file and the
 * benchmarks.
 *
 * A work unit is a run of complete transactions of one block (DESIGN.md
 * section 3). cd_rows_parse_unit walks it once and reports, through a sink of
 * callbacks, each transaction (txid, position, byte offset, size), each spent
 * outpoint (coinbase inputs, which spend nothing, give no input row), and
 * each pushdata key: sha256 of the pushes selected by btc_script_pushes
 * (src/bitcoin/btc_script.h; DESIGN.md section 4): OUTPUT (1) direct 20/33/65
 * byte pushes in output scripts outside an OP_RETURN data region, INPUT (2)
 * the same in input scripts (coinbase included), DATA (4) every push of >= 1
 * byte inside an output's data region when opts->data_pushes (config
 * index_data_pushes) is set. Keys repeated within one script are reported
 * once. Rows of each kind arrive in block order (a transaction's row before
 * its input and push rows, then its outputs); hashes are computed for 32 transactions at a time
 * (btc_txbatch.h) before their rows are reported.
 *
 * cd_rows_index_unit = parse + the standard sink into a cd_pg_unit +
 * cd_pg_write_unit: the one code path used by the worker process, the
 * conduit-index-file driver and the benchmark.
 */
#ifndef CD_ROWS_H
#define CD_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h"
#include "cd_pg.h"

/* Error code of cd_rows_parse_unit and cd_rows_index_unit: CD_ROWS_EMALFORMED
 * (cd_err.h, range -1900..-1999: bytes are not a run of complete
 * transactions). */

typedef struct cd_rows_opts {
    int data_pushes;       /* index DATA pushes (flag 4) */
    uint64_t data_max_len; /* longest DATA push hashed; 0 = no limit */
} cd_rows_opts;

/* Receives the rows of a unit. Any callback may be NULL. Pointers passed to
 * callbacks are borrowed and valid only during the call. */
typedef struct cd_rows_sink {
    void *ctx;
    void (*tx)(void *ctx, uint32_t tx_pos, const uint8_t txid[32], uint64_t offset, uint32_t size);
    void (*input)(void *ctx, uint32_t tx_pos, uint32_t in_idx, const uint8_t prev_hash[32],
                  uint32_t prev_idx);
    void (*push)(void *ctx, uint32_t tx_pos, uint32_t idx, unsigned flags, const uint8_t key[32]);
    /* every output (issue 14): value in satoshis, the locking script and
     * its Electrum script hash sha256(script) (natural order); after the
     * tx's push rows */
    void (*output)(void *ctx, uint32_t tx_pos, uint32_t idx, uint64_t value, const uint8_t *script,
                   size_t script_len, const uint8_t script_hash[32]);
} cd_rows_sink;

/* Locking scripts up to this many bytes are stored in the outputs rows;
 * longer ones are read from the tx bytes (sql/007_outputs.sql,
 * docs/PERFORMANCE.md "Outputs"). */
#define CD_ROWS_SCRIPT_INLINE 64

/*
 * Parses the transactions in data[0..len).
 * In:  data, len     the unit's bytes: complete transactions, back to back
 *      block_offset  offset of data[0] from the start of the block
 *      first_tx      block position of the first transaction
 *      max_txs       stop after this many transactions (0 = until len)
 * Returns: the number of transactions parsed (all of data unless max_txs
 *          stopped earlier), or CD_ROWS_EMALFORMED when a transaction runs past
 *          the end or a count is absurd (nothing after the bad transaction is
 *          reported). *consumed (may be NULL) gets the bytes parsed.
 */
long cd_rows_parse_unit(const uint8_t *data, size_t len, uint64_t block_offset, uint32_t first_tx,
                        uint32_t max_txs, const cd_rows_opts *opts, const cd_rows_sink *sink,
                        size_t *consumed) CD_WARN_UNUSED;

/* Parses one transaction's scripts only (no txid): calls sink->push for its
 * pushdata keys as tx_pos. For tests and single-tx tools. Returns the tx
 * size or CD_ROWS_EMALFORMED. */
long cd_rows_parse_tx_pushes(const uint8_t *tx, size_t len, uint32_t tx_pos,
                             const cd_rows_opts *opts, const cd_rows_sink *sink) CD_WARN_UNUSED;

/* Returns: a sink (by value) that appends COPY rows to u
 * (cd_pg_unit_add_*); u is its ctx and must outlive its use. */
cd_rows_sink cd_rows_unit_sink(cd_pg_unit *u);

/*
 * Indexes one unit exactly once: cd_pg_unit_open (skip if its marker exists),
 * parse into u with rows streaming out by COPY (memory bounded by
 * u->flush_bytes per table, whatever the unit size), cd_pg_unit_close
 * (marker + COMMIT). A connection lost mid-unit rolls back and the unit is
 * parsed again from data (which the caller keeps until this returns).
 * In:  expect_txs  the number of transactions the unit must hold (0: any).
 * Returns: 0 written, 1 already committed earlier, CD_ROWS_EMALFORMED (bytes
 *          do not parse, or not expect_txs transactions; nothing written),
 *          or a CD_PG_* error.
 */
int cd_rows_index_unit(cd_pg *pg, cd_pg_unit *u, int64_t block_id, uint32_t unit_no,
                       const uint8_t *data, size_t len, uint64_t block_offset, uint32_t first_tx,
                       uint32_t expect_txs, const cd_rows_opts *opts) CD_WARN_UNUSED;

#endif /* CD_ROWS_H */
