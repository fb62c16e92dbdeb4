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

#include "bitcoin/btc_preproc.h"
#include "bitcoin/btc_script.h"
#include "bitcoin/btc_tx.h"
#include "common/cd_hash.h"
#include "common/cd_log.h"
#include "common/cd_util.h"
#include "workers/cd_wk_main.h"

#include <stdlib.h>

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
    if (opts && opts->data_max_len)
        po->data_max_len = (size_t)opts->data_max_len;
}

long cd_wk_parse_unit(const uint8_t *data, size_t len, uint64_t block_offset, uint32_t first_tx,
                      uint32_t max_txs, const cd_wk_parse_opts *opts, const cd_wk_sink *sink,
                      size_t *consumed)
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
                     uint32_t expect_txs, const cd_wk_parse_opts *opts)
{
    for (;;) {
        cd_pg_unit_reset(u, block_id, unit_no, first_tx);
        u->expect_txs = expect_txs;
        int rc = cd_pg_unit_open(pg, u);
        if (rc)
            return rc; /* 1: committed before; or an error */
        /* rows stream to PostgreSQL while parsing (bounded memory) */
        cd_wk_sink sink = cd_wk_unit_sink(u);
        size_t consumed = 0;
        long n = cd_wk_parse_unit(data, len, block_offset, first_tx, 0, opts, &sink, &consumed);
        if (n < 0 || (expect_txs && (uint64_t)n != expect_txs)) {
            cd_pg_unit_cancel(pg, u);
            cd_log_error("parser: block_id %lld unit %u: %ld txs parsed (%zu of %zu bytes), "
                         "%u expected",
                         (long long)block_id, unit_no, n, consumed, len, expect_txs);
            return CD_WK_EMALFORMED;
        }
        rc = cd_pg_unit_close(pg, u);
        if (rc != CD_PG_EAGAIN)
            return rc;
        /* connection lost mid-unit: the rows sent so far were rolled back;
         * parse again from the (still unacknowledged) bytes */
    }
}

/* ------------------------------------------------------------------ */
/* the parser worker process (cd_wk_run hooks)                          */
/* ------------------------------------------------------------------ */

typedef struct wk_parser {
    cd_pg *pg;
    cd_pg_unit unit;
    cd_wk_parse_opts opts;
    uint64_t ipc_block; /* controller's id of the current block */
    int64_t pg_block;   /* blocks.block_id of the current block */
    int active;
    uint64_t units_done;
} wk_parser;

static int parser_init(cd_wk_ctx *c)
{
    wk_parser *p = cd_xcalloc(1, sizeof(*p));
    c->state = p;
    p->pg = cd_pg_new(c->cfg->pg_conninfo);
    /* forever: while PostgreSQL is away the parser waits, its units stay
     * unacknowledged and the ring fills, which pauses the download */
    cd_pg_set_retry(p->pg, 0, 5000, NULL);
    int rc = cd_pg_migrate(p->pg); /* concurrent parsers serialise on a lock */
    if (rc == CD_PG_ENEWER)
        return CD_EXIT_CONFIG;
    if (rc)
        return CD_EXIT_FAILURE;
    cd_pg_unit_init(&p->unit, CD_PG_COPY_BINARY);
    p->opts.data_pushes = c->cfg->index_data_pushes;
    p->opts.data_max_len = c->cfg->max_data_push;
    return CD_EXIT_OK;
}

static int parser_begin(cd_wk_ctx *c, const cd_ipc_block_begin *b)
{
    wk_parser *p = c->state;
    int32_t height = b->height == CD_IPC_HEIGHT_UNKNOWN ? -1 : (int32_t)b->height;
    if (cd_pg_block_register(p->pg, b->hash, b->header, height, b->tx_count, b->size,
                             &p->pg_block) != CD_PG_OK)
        return -1;
    p->ipc_block = b->block_id;
    p->active = 1;
    return 0;
}

static int parser_unit(cd_wk_ctx *c, const cd_ipc_unit *u, const uint32_t *tx_off)
{
    (void)tx_off;
    wk_parser *p = c->state;
    if (!p->active || u->block_id != p->ipc_block) {
        cd_log_error("parser: unit %u of block id %llu without BEGIN", u->unit_no,
                     (unsigned long long)u->block_id);
        return -1;
    }
    const uint8_t *data = cd_wk_unit_bytes(c, u);
    size_t len = (size_t)u->len, skip = 0;
    if (u->block_off == 0) { /* unit 0 carries the header and the tx count */
        uint64_t cnt;
        int pre = btc_block_prefix(data, len, NULL, &cnt);
        if (pre <= 0)
            return CD_IPC_ERR_MALFORMED;
        skip = (size_t)pre;
    }
    if (u->tx_count == 0)
        return CD_IPC_ERR_MALFORMED;
    int rc = cd_wk_index_unit(p->pg, &p->unit, p->pg_block, u->unit_no, data + skip, len - skip,
                              u->block_off + skip, (uint32_t)u->first_tx, u->tx_count, &p->opts);
    if (rc == CD_WK_EMALFORMED)
        return CD_IPC_ERR_MALFORMED;
    if (rc < 0)
        return -1; /* exit; the unit is dispatched again to a new parser */
    cd_wk_maybe_crash(c, ++p->units_done);
    /* the last committer of a block completes it and moves the tip */
    rc = cd_pg_block_try_complete(p->pg, p->pg_block, NULL);
    if (rc != CD_PG_OK && rc != CD_PG_EMERKLE)
        return -1;
    return CD_IPC_OK;
}

static int parser_end(cd_wk_ctx *c, const cd_ipc_block_ref *r, cd_ipc_block_done *done)
{
    (void)done;
    wk_parser *p = c->state;
    if (p->active && r->block_id == p->ipc_block) {
        p->active = 0;
        int rc = cd_pg_block_try_complete(p->pg, p->pg_block, NULL);
        if (rc != CD_PG_OK && rc != CD_PG_EMERKLE)
            return -1;
    }
    return 0; /* parsers send no BLOCK_DONE */
}

static void parser_abort(cd_wk_ctx *c, const cd_ipc_block_ref *r)
{
    wk_parser *p = c->state;
    if (r->block_id == p->ipc_block)
        p->active = 0;
}

static void parser_fini(cd_wk_ctx *c)
{
    wk_parser *p = c->state;
    if (!p)
        return;
    cd_pg_unit_free(&p->unit);
    cd_pg_free(p->pg);
    free(p);
    c->state = NULL;
}

const cd_wk_ops cd_wk_parser_ops = {
    .name = "parser",
    .init = parser_init,
    .begin = parser_begin,
    .unit = parser_unit,
    .end = parser_end,
    .abort = parser_abort,
    .del = NULL,
    .fini = parser_fini,
};
