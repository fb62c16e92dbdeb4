/*
 * cd_rows.c - parse a work unit's transactions into index rows.
 *
 * Why it exists: this is the CPU-heavy half of indexing (txids, pushdata
 * hashes); it is kept free of I/O so the parser worker, the mempool module,
 * the file driver and the benchmark share it, and so it can be tested against
 * real mainnet data.
 *
 * NOTES
 *  - Transactions are taken BTC_TXB_MAX_TXS at a time (btc_txbatch.h): each
 *    is validated by btc_tx_parse (so a truncated tx reports nothing) and its
 *    scripts walked for keys, then the txids and keys of the whole batch are
 *    hashed together (two SHA-NI lanes interleaved: ~1.5x the throughput of
 *    one hash at a time), then the rows are emitted in order; the second
 *    walk over the inputs touches bytes already in cache.
 *  - The pushdata rule is btc_script_pushes (src/bitcoin/btc_script.h): one
 *    rule for the whole project.
 */
#include "cd_rows.h"

#include "btc_script.h"
#include "btc_tx.h"
#include "btc_txbatch.h"
#include "cd_log.h"
#include "cd_util.h"

#include <string.h>

static const uint8_t null_hash[32];

static int is_null_outpoint(const btc_txin *in)
{
    return in->prev_index == 0xFFFFFFFFu && memcmp(in->prev_txid, null_hash, 32) == 0;
}

/* Input rows of a parsed transaction (coinbase inputs spend nothing). */
static void emit_inputs(const btc_tx *tx, uint32_t tx_pos, const cd_rows_sink *sink)
{
    btc_tx_iter it;
    btc_txin in;
    btc_tx_inputs(tx, &it);
    for (uint32_t i = 0; btc_tx_next_input(&it, &in); i++)
        if (!is_null_outpoint(&in))
            sink->input(sink->ctx, tx_pos, i, in.prev_txid, in.prev_index);
}

/* Push rows of a transaction too big for a batch (more than
 * BTC_TXB_MAX_KEYS keys): walked script by script, hashed PUSHQ_LEN at a time
 * (btc_sha256_many) and emitted in order, so memory stays bounded for any
 * number of keys. */
#define PUSHQ_LEN 64

typedef struct push_queue {
    const cd_rows_sink *sink;
    uint32_t tx_pos, idx; /* idx: input/output index of the current script */
    size_t n;
    btc_tx_push_key keys[PUSHQ_LEN];
    btc_sha256_job jobs[PUSHQ_LEN];
} push_queue;

static void pushq_flush(push_queue *q)
{
    btc_sha256_many(q->jobs, q->n);
    for (size_t i = 0; i < q->n; i++)
        q->sink->push(q->sink->ctx, q->tx_pos, q->keys[i].index, q->keys[i].flags, q->keys[i].hash);
    q->n = 0;
}

static int pushq_add(void *vctx, const uint8_t *data, size_t len, unsigned flags)
{
    push_queue *q = vctx;
    btc_tx_push_key *k = &q->keys[q->n];
    k->flags = (uint8_t)flags;
    k->index = q->idx;
    btc_sha256_job *j = &q->jobs[q->n];
    j->data = data;
    j->len = len;
    j->out = k->hash;
    j->twice = 0;
    if (++q->n == PUSHQ_LEN)
        pushq_flush(q);
    return 0;
}

static void emit_pushes_streamed(const btc_tx *tx, uint32_t tx_pos, const btc_push_opts *po,
                                 const cd_rows_sink *sink)
{
    push_queue q;
    q.sink = sink;
    q.tx_pos = tx_pos;
    q.n = 0;
    btc_tx_iter it;
    btc_txin in;
    btc_txout out;
    btc_tx_inputs(tx, &it);
    /* pushq_add never stops a scan: the results are only push counts */
    for (q.idx = 0; btc_tx_next_input(&it, &in); q.idx++)
        CD_IGNORE(btc_script_pushes(in.script, in.script_len, BTC_PUSH_INPUT, po, pushq_add, &q));
    btc_tx_outputs(tx, &it);
    for (q.idx = 0; btc_tx_next_output(&it, &out); q.idx++)
        CD_IGNORE(
            btc_script_pushes(out.script, out.script_len, BTC_PUSH_OUTPUT, po, pushq_add, &q));
    pushq_flush(&q);
}

/* Output rows of a parsed transaction: the script hashes are computed
 * OUTQ_LEN at a time (btc_sha256_many: two SHA-NI lanes) and the rows
 * emitted in vout order; memory stays bounded for any number of outputs. */
#define OUTQ_LEN 32

static void emit_outputs(const btc_tx *tx, uint32_t tx_pos, const cd_rows_sink *sink)
{
    btc_txout outs[OUTQ_LEN];
    uint8_t hashes[OUTQ_LEN][32];
    btc_sha256_job jobs[OUTQ_LEN];
    btc_tx_iter it;
    btc_tx_outputs(tx, &it);
    uint32_t first = 0;
    size_t n = 0;
    for (;;) {
        int more = btc_tx_next_output(&it, &outs[n]);
        if (more) {
            jobs[n].data = outs[n].script;
            jobs[n].len = outs[n].script_len;
            jobs[n].out = hashes[n];
            jobs[n].twice = 0;
            n++;
        }
        if (n == OUTQ_LEN || (!more && n > 0)) {
            btc_sha256_many(jobs, n);
            for (size_t i = 0; i < n; i++)
                sink->output(sink->ctx, tx_pos, first + (uint32_t)i, outs[i].value, outs[i].script,
                             outs[i].script_len, hashes[i]);
            first += (uint32_t)n;
            n = 0;
        }
        if (!more)
            break;
    }
}

/* Emits the rows of one transaction of a batch: the tx row, then each input
 * row followed by that input's keys, then the output keys. */
static void emit_batched(const btc_txb *b, const btc_txb_tx *t, uint32_t pos, uint64_t offset,
                         const cd_rows_sink *sink)
{
    if (sink->tx)
        sink->tx(sink->ctx, pos, t->txid, offset, (uint32_t)t->tx.size);
    if (t->keys_streamed) {
        if (sink->input)
            emit_inputs(&t->tx, pos, sink);
        emit_pushes_streamed(&t->tx, pos, b->opts, sink);
        if (sink->output)
            emit_outputs(&t->tx, pos, sink);
        return;
    }
    const btc_tx_push_key *k = b->keys + t->first_key, *end = k + t->n_keys;
    if (sink->input) {
        btc_tx_iter it;
        btc_txin in;
        btc_tx_inputs(&t->tx, &it);
        for (uint32_t i = 0; btc_tx_next_input(&it, &in); i++) {
            if (!is_null_outpoint(&in))
                sink->input(sink->ctx, pos, i, in.prev_txid, in.prev_index);
            for (; k < end && k->flags == BTC_PUSH_INPUT && k->index == i; k++)
                sink->push(sink->ctx, pos, k->index, k->flags, k->hash);
        }
    }
    for (; k < end; k++)
        sink->push(sink->ctx, pos, k->index, k->flags, k->hash);
    if (sink->output)
        emit_outputs(&t->tx, pos, sink);
}

static void push_opts(const cd_rows_opts *opts, btc_push_opts *po)
{
    *po = btc_push_opts_default;
    po->data_enabled = opts ? opts->data_pushes : 0;
    if (opts && opts->data_max_len)
        po->data_max_len = (size_t)opts->data_max_len;
}

long cd_rows_parse_unit(const uint8_t *data, size_t len, uint64_t block_offset, uint32_t first_tx,
                        uint32_t max_txs, const cd_rows_opts *opts, const cd_rows_sink *sink,
                        size_t *consumed)
{
    btc_push_opts po;
    push_opts(opts, &po);
    /* txids and keys of up to BTC_TXB_MAX_TXS txs are hashed together (two
     * SHA-NI lanes), then the rows are emitted in order */
    btc_txb b;
    btc_txb_init(&b, (sink->tx ? BTC_TXB_TXID : 0u) | (sink->push ? BTC_TXB_KEYS : 0u), &po);
    size_t off = 0;
    long ntx = 0;
    while (off < len && (max_txs == 0 || (uint32_t)ntx < max_txs)) {
        size_t used = 0;
        int n =
            btc_txb_fill(&b, data + off, len - off, max_txs ? max_txs - (uint32_t)ntx : 0, &used);
        if (n < 0)
            break;
        for (int t = 0; t < n; t++) {
            const btc_txb_tx *bt = &b.txs[t];
            if (bt->tx.size > 0xFFFFFFFFu) {
                off += bt->offset;
                goto malformed;
            }
            emit_batched(&b, bt, first_tx + (uint32_t)ntx, block_offset + off + bt->offset, sink);
            ntx++;
        }
        off += used;
        if (n == 0)
            break;
    }
    if (off < len && (max_txs == 0 || (uint32_t)ntx < max_txs))
        goto malformed;
    if (consumed)
        *consumed = off;
    return ntx;
malformed:
    if (consumed)
        *consumed = off;
    return CD_ROWS_EMALFORMED;
}

long cd_rows_parse_tx_pushes(const uint8_t *raw, size_t len, uint32_t tx_pos,
                             const cd_rows_opts *opts, const cd_rows_sink *sink)
{
    btc_push_opts po;
    push_opts(opts, &po);
    btc_tx tx;
    if (btc_tx_parse(&tx, raw, len) < 0)
        return CD_ROWS_EMALFORMED;
    if (sink->push)
        emit_pushes_streamed(&tx, tx_pos, &po, sink);
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

static void unit_output(void *ctx, uint32_t tx_pos, uint32_t idx, uint64_t value,
                        const uint8_t *script, size_t script_len, const uint8_t script_hash[32])
{
    static const uint8_t empty[1];
    /* NULL = not stored (long); an empty script is stored, as '' */
    const uint8_t *keep = script_len > CD_ROWS_SCRIPT_INLINE ? NULL : script_len ? script : empty;
    cd_pg_unit_add_output(ctx, tx_pos, idx, value, script_hash, keep, script_len);
}

cd_rows_sink cd_rows_unit_sink(cd_pg_unit *u)
{
    cd_rows_sink s = {u, unit_tx, unit_input, unit_push, unit_output};
    return s;
}

int cd_rows_index_unit(cd_pg *pg, cd_pg_unit *u, int64_t block_id, uint32_t unit_no,
                       const uint8_t *data, size_t len, uint64_t block_offset, uint32_t first_tx,
                       uint32_t expect_txs, const cd_rows_opts *opts)
{
    for (;;) {
        cd_pg_unit_reset(u, block_id, unit_no, first_tx);
        u->expect_txs = expect_txs;
        int rc = cd_pg_unit_open(pg, u);
        if (rc)
            return rc; /* 1: committed before; or an error */
        /* rows stream to PostgreSQL while parsing (bounded memory) */
        cd_rows_sink sink = cd_rows_unit_sink(u);
        size_t consumed = 0;
        long n = cd_rows_parse_unit(data, len, block_offset, first_tx, 0, opts, &sink, &consumed);
        if (n < 0 || (expect_txs && (uint64_t)n != expect_txs)) {
            cd_pg_unit_cancel(pg, u);
            cd_log_error("parser: block_id %lld unit %u: %ld txs parsed (%zu of %zu bytes), "
                         "%u expected",
                         (long long)block_id, unit_no, n, consumed, len, expect_txs);
            return CD_ROWS_EMALFORMED;
        }
        rc = cd_pg_unit_close(pg, u);
        if (rc != CD_PG_EAGAIN)
            return rc;
        /* connection lost mid-unit: the rows sent so far were rolled back;
         * parse again from the (still unacknowledged) bytes */
    }
}
