/*
 * cd_wk_parser.c - parse a work unit's transactions into index rows.
 *
 * Why it exists: this is the CPU-heavy half of indexing (txids, pushdata
 * hashes); it is kept free of I/O so the worker process, the file driver and
 * the benchmark share it, and so it can be tested against real mainnet data.
 *
 * NOTES
 *  - Each transaction is validated by btc_tx_parse (so a truncated tx reports
 *    nothing), then hashed, then its inputs and scripts are walked; the second
 *    walk touches bytes already in cache.
 *  - The pushdata rule is btc_script_pushes (src/bitcoin/btc_script.h): one
 *    rule for the whole project.
 */
#include "workers/cd_wk_parser.h"

#include "bitcoin/btc_script.h"
#include "bitcoin/btc_tx.h"
#include "common/cd_hash.h"
#include "common/cd_util.h"

#include <string.h>

typedef struct push_ctx {
    const cd_wk_sink *sink;
    uint32_t tx_pos, idx;
} push_ctx;

static int on_push(void *vctx, const uint8_t *data, size_t len, unsigned flags)
{
    push_ctx *c = vctx;
    uint8_t key[32];
    cd_sha256(key, data, len);
    c->sink->push(c->sink->ctx, c->tx_pos, c->idx, flags, key);
    return 0;
}

static const uint8_t null_hash[32];

/* Emits the inputs and pushdata keys of a parsed transaction. */
static void emit_rows(const btc_tx *tx, uint32_t tx_pos, const btc_push_opts *po,
                      const cd_wk_sink *sink)
{
    btc_tx_iter it;
    btc_txin in;
    btc_txout out;
    push_ctx pc = {sink, tx_pos, 0};
    btc_tx_inputs(tx, &it);
    for (uint32_t i = 0; btc_tx_next_input(&it, &in); i++) {
        if (sink->input &&
            !(in.prev_index == 0xFFFFFFFFu && memcmp(in.prev_txid, null_hash, 32) == 0))
            sink->input(sink->ctx, tx_pos, i, in.prev_txid, in.prev_index);
        if (sink->push) {
            pc.idx = i;
            btc_script_pushes(in.script, in.script_len, BTC_PUSH_INPUT, po, on_push, &pc);
        }
    }
    if (!sink->push)
        return;
    btc_tx_outputs(tx, &it);
    for (uint32_t i = 0; btc_tx_next_output(&it, &out); i++) {
        pc.idx = i;
        btc_script_pushes(out.script, out.script_len, BTC_PUSH_OUTPUT, po, on_push, &pc);
    }
}

static void push_opts(const cd_wk_parse_opts *opts, btc_push_opts *po)
{
    *po = btc_push_opts_default;
    po->data_enabled = opts ? opts->data_pushes : 0;
}

long cd_wk_parse_unit(const uint8_t *data, size_t len, uint64_t block_offset,
                      uint32_t first_tx, uint32_t max_txs, const cd_wk_parse_opts *opts,
                      const cd_wk_sink *sink, size_t *consumed)
{
    btc_push_opts po;
    push_opts(opts, &po);
    size_t off = 0;
    long ntx = 0;
    uint8_t txid[32];
    btc_tx tx;
    while (off < len && (max_txs == 0 || (uint32_t)ntx < max_txs)) {
        if (btc_tx_parse(&tx, data + off, len - off) < 0 || tx.size > 0xFFFFFFFFu) {
            if (consumed)
                *consumed = off;
            return CD_WK_EMALFORMED;
        }
        uint32_t pos = first_tx + (uint32_t)ntx;
        if (sink->tx) {
            btc_tx_txid(&tx, txid);
            sink->tx(sink->ctx, pos, txid, block_offset + off, (uint32_t)tx.size);
        }
        if (sink->input || sink->push)
            emit_rows(&tx, pos, &po, sink);
        off += tx.size;
        ntx++;
    }
    if (consumed)
        *consumed = off;
    return ntx;
}

long cd_wk_parse_tx_pushes(const uint8_t *raw, size_t len, uint32_t tx_pos,
                           const cd_wk_parse_opts *opts, const cd_wk_sink *sink)
{
    btc_push_opts po;
    push_opts(opts, &po);
    btc_tx tx;
    if (btc_tx_parse(&tx, raw, len) < 0)
        return CD_WK_EMALFORMED;
    cd_wk_sink s = *sink;
    s.input = NULL;
    if (s.push)
        emit_rows(&tx, tx_pos, &po, &s);
    return (long)tx.size;
}

/* ---- the standard sink: rows into a cd_pg_unit ---- */

static void unit_tx(void *ctx, uint32_t tx_pos, const uint8_t txid[32], uint64_t offset,
                    uint32_t size)
{
    cd_pg_unit_add_tx(ctx, tx_pos, txid, offset, size);
}

static void unit_input(void *ctx, uint32_t tx_pos, uint32_t in_idx, const uint8_t prev_hash[32],
                       uint32_t prev_idx)
{
    cd_pg_unit_add_input(ctx, tx_pos, in_idx, prev_hash, prev_idx);
}

static void unit_push(void *ctx, uint32_t tx_pos, uint32_t idx, unsigned flags,
                      const uint8_t key[32])
{
    cd_pg_unit_add_push(ctx, tx_pos, idx, flags, key);
}

cd_wk_sink cd_wk_unit_sink(cd_pg_unit *u)
{
    cd_wk_sink s = {u, unit_tx, unit_input, unit_push};
    return s;
}

int cd_wk_index_unit(cd_pg *pg, cd_pg_unit *u, int64_t block_id, uint32_t unit_no,
                     const uint8_t *data, size_t len, uint64_t block_offset, uint32_t first_tx,
                     const cd_wk_parse_opts *opts)
{
    cd_pg_unit_reset(u, block_id, unit_no, first_tx);
    cd_wk_sink sink = cd_wk_unit_sink(u);
    long n = cd_wk_parse_unit(data, len, block_offset, first_tx, 0, opts, &sink, NULL);
    if (n < 0)
        return (int)n;
    return cd_pg_write_unit(pg, u);
}
