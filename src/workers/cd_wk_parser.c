/*
 * cd_wk_parser.c - the parser worker: work units from the ring -> index rows
 * (cd_rows.h) -> PostgreSQL, in batches; and the start-up recovery of the
 * units a crash left unindexed.
 */
#include "cd_wk_parser.h"

#include "btc_preproc.h"
#include "btc_tx.h"
#include "cd_log.h"
#include "cd_util.h"
#include "cd_config.h" /* cd_wk_parser_recover() runs in the controller */
#include "cd_blockstore.h"
#include "cd_rows.h"
#include "cd_wk_main.h"

#include <stdlib.h>

#include <string.h>

/* ------------------------------------------------------------------ */
/* the parser worker process (cd_wk_run hooks)                          */
/* ------------------------------------------------------------------ */

/* A unit held for the next batch (its bytes stay in the ring until acked). */
typedef struct held_unit {
    uint64_t ipc_block;
    int64_t pg_block;
    uint32_t unit_no;
    uint32_t tx_count;
    uint64_t first_tx;
    uint64_t block_off; /* of data[0] */
    const uint8_t *data;
    size_t len;
    cd_pg_block_info info; /* to register it (pg_block < 0) */
    uint32_t status;       /* cd_ipc_status sent in its ack */
    int fast;              /* found stored + verified in LMDB: completed with the batch */
    int written;           /* 1: rows in this batch; 0: committed before / malformed */
    int gaps;              /* overlaps units cut differently: written on its own */
} held_unit;

/* Batch limits: bytes of unit data held (they pin ring space until the
 * batch commits) and units per batch. */
#define PARSER_BATCH_BYTES  (32u << 20)
#define PARSER_BATCH_UNITS  4096u
/* BLOCK_STORED requests held before they are completed together. */
#define PARSER_BATCH_STORED 256u

typedef struct wk_parser {
    cd_pg *pg;
    cd_pg_unit unit;
    cd_rows_opts opts;
    uint64_t ipc_block;    /* controller's id of the current block */
    int64_t pg_block;      /* blocks.block_id of the current block; -1: not registered yet */
    cd_pg_block_info info; /* the current block, for a registration at its first unit */
    int tip_seen;          /* the indexed tip exists (it is never removed, only moved) */
    uint64_t block_size;
    int active;
    uint64_t units_done;
    held_unit *held;
    size_t n_held, cap_held;
    uint64_t held_bytes, batch_bytes;
    int64_t *ids;           /* scratch: blocks to complete after a batch */
    cd_pg_block_info *regs; /* scratch: held blocks to register before a batch */
    size_t *reg_of;         /* scratch: held unit -> its entry in regs */
    cd_pg_marker *chk;      /* scratch: the held units to check before a batch */
    int *chk_state;         /* scratch: their cd_pg_batch_check results */
    /* BLOCK_STORED requests not answered yet (completed together at idle) */
    uint8_t (*st_hash)[32];
    uint64_t *st_ipc; /* the controller's block ids, echoed in BLOCK_DONE */
    int64_t *st_ids;  /* scratch: their block_ids */
    size_t n_st, cap_st;
    /* read-only views of the stores, for the fast path (NULL: not yet) */
    cd_blockstore *blocks, *merkle;
} wk_parser;

/* Is the block stored (COMPLETE) in <datadir>/blocks and its tree verified
 * in <datadir>/merkle already? Read-only LMDB lookups: a parser may then
 * complete a block itself, with the batch that committed its only unit
 * (no BLOCK_STORED round trip; issue 11 F6 still holds: it is stored). */
static int stored_verified(cd_wk_ctx *c, wk_parser *p, const uint8_t hash[32])
{
    char path[4096];
    if (!p->blocks) {
        snprintf(path, sizeof(path), "%s/blocks", c->cfg->datadir);
        if (cd_blockstore_open(path, CD_BS_RDONLY, 0, &p->blocks) != 0)
            p->blocks = NULL;
    }
    if (!p->merkle) {
        snprintf(path, sizeof(path), "%s/merkle", c->cfg->datadir);
        if (cd_blockstore_open(path, CD_BS_RDONLY, 0, &p->merkle) != 0)
            p->merkle = NULL;
    }
    cd_block_loc loc;
    cd_merkle_meta mm;
    return p->blocks && p->merkle && cd_blockstore_get(p->blocks, hash, &loc) == 0 &&
           cd_blockstore_merkle_meta(p->merkle, hash, &mm) == 0 &&
           memcmp(mm.root, loc.header + 36, 32) == 0;
}

static int parser_init(cd_wk_ctx *c)
{
    wk_parser *p = cd_xcalloc(1, sizeof(*p));
    c->state = p;
    p->pg = cd_pg_new(c->cfg->daemon, NULL);
    /* forever: while PostgreSQL is away the parser waits, its units stay
     * unacknowledged and the ring fills, which pauses the download */
    cd_pg_set_retry(p->pg, 0, 5000, NULL);
    int rc = cd_pg_migrate(p->pg); /* concurrent parsers serialise on a lock */
    if (rc == CD_PG_ENEWER)
        return CD_EXIT_CONFIG;
    if (rc)
        return CD_EXIT_FAILURE;
    int32_t tip = -1;
    if (cd_pg_tip_height(p->pg, &tip) != CD_PG_OK)
        return CD_EXIT_FAILURE;
    p->tip_seen = tip >= 0;
    cd_pg_unit_init(&p->unit, CD_PG_COPY_BINARY);
    p->opts.data_pushes = c->cfg->index_data_pushes;
    p->opts.data_max_len = c->cfg->max_data_push;
    /* held units pin ring space: at most an eighth of the ring */
    p->batch_bytes = CD_MIN((uint64_t)PARSER_BATCH_BYTES, c->ring_size / 8);
    return CD_EXIT_OK;
}

static int index_unit_gaps(wk_parser *p, int64_t pg_block, const cd_ipc_unit *u,
                           const uint8_t *data, const uint32_t *tx_off);
static int stored_flush(cd_wk_ctx *c);

/* A held unit that overlaps units committed with another cutting (unit_size
 * changed across a restart): its uncovered txs, unit by unit, as
 * parser_unit does (the tx offsets are found again by parsing). */
static int held_gaps(wk_parser *p, held_unit *h)
{
    cd_log_warn("parser: unit %u of block_id %lld overlaps units cut differently before; "
                "indexing only its uncovered transactions",
                h->unit_no, (long long)h->pg_block);
    uint32_t *off = cd_xmalloc((size_t)h->tx_count * sizeof(uint32_t));
    size_t o = 0;
    btc_tx tx;
    for (uint32_t i = 0; i < h->tx_count; i++) {
        if (o >= h->len || btc_tx_parse(&tx, h->data + o, h->len - o) < 0) {
            free(off);
            return CD_ROWS_EMALFORMED;
        }
        off[i] = (uint32_t)o;
        o += tx.size;
    }
    cd_ipc_unit u;
    memset(&u, 0, sizeof(u));
    u.first_tx = h->first_tx;
    u.tx_count = h->tx_count;
    u.len = h->len;
    u.block_off = h->block_off;
    int rc = index_unit_gaps(p, h->pg_block, &u, h->data, off);
    free(off);
    return rc;
}

/* Writes the held units' rows and markers in one transaction (parsed from
 * the ring now), completes their blocks and acks them. Connection loss or a
 * unit committed meanwhile by another writer: the whole batch again (every
 * held byte is still in the ring: nothing is acked before the commit).
 * Returns 0, or -1 (fatal: the worker exits, its units are re-dispatched). */
static int parser_flush(cd_wk_ctx *c)
{
    wk_parser *p = c->state;
    if (p->n_held == 0)
        return 0;
    /* Blocks not registered yet (the tip exists, so nothing depends on the
     * order of registrations any more): all of them in one statement that
     * commits before the batch, as cd_pg_block_register would. */
    size_t n_regs = 0;
    for (size_t i = 0; i < p->n_held; i++) {
        held_unit *h = &p->held[i];
        if (h->pg_block >= 0)
            continue;
        size_t j = 0;
        while (j < n_regs && memcmp(p->regs[j].hash, h->info.hash, 32) != 0)
            j++;
        if (j == n_regs)
            p->regs[n_regs++] = h->info;
        p->reg_of[i] = j;
    }
    if (n_regs > 0) {
        if (cd_pg_blocks_register(p->pg, p->regs, n_regs, p->ids) != CD_PG_OK)
            return -1;
        for (size_t i = 0; i < p->n_held; i++)
            if (p->held[i].pg_block < 0)
                p->held[i].pg_block = p->ids[p->reg_of[i]];
    }
    int rc;
    uint64_t commit_ns = 0;
    for (;;) {
        rc = cd_pg_batch_begin(p->pg, &p->unit);
        /* every unit's marker check in one statement */
        size_t n_chk = 0, k = 0;
        for (size_t i = 0; i < p->n_held; i++) {
            held_unit *h = &p->held[i];
            if (h->status == CD_IPC_OK)
                p->chk[n_chk++] =
                    (cd_pg_marker){h->pg_block, h->unit_no, (uint32_t)h->first_tx, h->tx_count};
        }
        if (rc == 0)
            rc = cd_pg_batch_check(p->pg, &p->unit, p->chk, n_chk, p->chk_state);
        for (size_t i = 0; rc == 0 && i < p->n_held; i++) {
            held_unit *h = &p->held[i];
            if (h->status != CD_IPC_OK)
                continue; /* malformed: reported, nothing written */
            h->written = h->gaps = 0;
            int st = p->chk_state[k++];
            if (st == 1) /* committed before (a re-dispatched unit) */
                continue;
            if (st == CD_PG_EUNIT) { /* after the batch, on its own */
                h->gaps = 1;
                continue;
            }
            rc = cd_pg_batch_add_checked(p->pg, &p->unit, h->pg_block, h->unit_no,
                                         (uint32_t)h->first_tx);
            if (rc != 0)
                break;
            cd_rows_sink sink = cd_rows_unit_sink(&p->unit);
            size_t consumed = 0;
            long n = cd_rows_parse_unit(h->data, h->len, h->block_off, (uint32_t)h->first_tx, 0,
                                        &p->opts, &sink, &consumed);
            if (n < 0 || (uint64_t)n != h->tx_count) {
                cd_log_error("parser: block_id %lld unit %u: %ld txs parsed (%zu of %zu bytes), "
                             "%u expected",
                             (long long)h->pg_block, h->unit_no, n, consumed, h->len, h->tx_count);
                /* its rows are mixed into the batch: write the batch again
                 * without it */
                h->status = CD_IPC_ERR_MALFORMED;
                cd_pg_batch_cancel(p->pg, &p->unit);
                rc = CD_PG_EAGAIN;
                break;
            }
            cd_pg_batch_unit_done(&p->unit);
            h->written = 1;
        }
        if (rc == 0) {
            uint64_t t0 = cd_now_ns();
            rc = cd_pg_batch_commit(p->pg, &p->unit);
            commit_ns = cd_now_ns() - t0;
        }
        if (rc == 0)
            break;
        if (rc != CD_PG_EAGAIN && rc != 1) {
            cd_pg_batch_cancel(p->pg, &p->unit);
            return -1; /* errors, stop */
        }
    }
    /* the commit's duration, for the latency histogram of /metrics (a
     * message per batch: nothing per unit) */
    cd_ipc_pg_commit pc = {.ns = commit_ns, .units = (uint32_t)p->n_held};
    if (cd_ipc_send(c->fd, CD_IPC_PG_COMMIT, &pc, sizeof(pc), NULL, 0) != 0)
        return -1;
    for (size_t i = 0; i < p->n_held; i++) {
        held_unit *h = &p->held[i];
        if (!h->gaps)
            continue;
        rc = held_gaps(p, h);
        if (rc == CD_ROWS_EMALFORMED)
            h->status = CD_IPC_ERR_MALFORMED;
        else if (rc < 0)
            return -1;
        else
            h->written = 1;
    }
    /* committed: the crash hook counts units as the unit-by-unit path does.
     * The blocks are completed (marked indexed, the tip moved) only when the
     * controller says the writer stored them (BLOCK_STORED): issue 11, F6 */
    for (size_t i = 0; i < p->n_held; i++)
        if (p->held[i].written)
            cd_wk_maybe_crash(c, ++p->units_done);
    /* fast path: held units are whole blocks; those already stored and
     * verified are completed now, in one transaction, as before F6 */
    size_t n_ids = 0;
    for (size_t i = 0; i < p->n_held; i++) {
        held_unit *h = &p->held[i];
        h->fast = h->status == CD_IPC_OK && stored_verified(c, p, h->info.hash);
        if (h->fast)
            p->ids[n_ids++] = h->pg_block;
    }
    if (n_ids > 0) {
        uint8_t *purged = cd_xcalloc(n_ids, 1);
        int32_t tip = -1;
        rc = cd_pg_blocks_try_complete(p->pg, p->ids, n_ids, &tip, purged);
        if (rc != CD_PG_OK && rc != CD_PG_EMERKLE) {
            free(purged);
            return -1;
        }
        if (tip >= 0)
            p->tip_seen = 1;
        for (size_t i = 0, k = 0; i < p->n_held; i++) {
            held_unit *h = &p->held[i];
            if (h->fast)
                /* rows of an earlier, wrong copy were removed: index it again */
                h->status = purged[k++] ? CD_IPC_ERR_STALE : CD_IPC_OK_INDEXED;
        }
        free(purged);
    }
    for (size_t i = 0; i < p->n_held; i++)
        if (cd_wk_send_ack(c, p->held[i].ipc_block, p->held[i].unit_no, p->held[i].status) != 0)
            return -1;
    p->n_held = 0;
    p->held_bytes = 0;
    return 0;
}

/* Holds a unit that is a whole block for the next batch. */
static int parser_hold(cd_wk_ctx *c, const cd_ipc_unit *u, const uint8_t *data, size_t len)
{
    wk_parser *p = c->state;
    if (p->n_held == p->cap_held) {
        p->cap_held = p->cap_held ? p->cap_held * 2 : 64;
        p->held = cd_xrealloc(p->held, p->cap_held * sizeof(*p->held));
        p->ids = cd_xrealloc(p->ids, p->cap_held * sizeof(*p->ids));
        p->regs = cd_xrealloc(p->regs, p->cap_held * sizeof(*p->regs));
        p->reg_of = cd_xrealloc(p->reg_of, p->cap_held * sizeof(*p->reg_of));
        p->chk = cd_xrealloc(p->chk, p->cap_held * sizeof(*p->chk));
        p->chk_state = cd_xrealloc(p->chk_state, p->cap_held * sizeof(*p->chk_state));
    }
    held_unit *h = &p->held[p->n_held++];
    memset(h, 0, sizeof(*h));
    h->ipc_block = u->block_id;
    h->pg_block = p->pg_block;
    h->info = p->info;
    h->unit_no = u->unit_no;
    h->tx_count = u->tx_count;
    h->first_tx = u->first_tx;
    h->block_off = u->block_off + (uint64_t)(u->len - len);
    h->data = data;
    h->len = len;
    h->status = CD_IPC_OK;
    p->held_bytes += u->len;
    if (p->held_bytes >= p->batch_bytes || p->n_held >= PARSER_BATCH_UNITS)
        return parser_flush(c) < 0 || stored_flush(c) < 0 ? -1 : CD_WK_DEFERRED;
    return CD_WK_DEFERRED;
}

static int parser_begin(cd_wk_ctx *c, const cd_ipc_block_begin *b)
{
    wk_parser *p = c->state;
    cd_pg_block_info *i = &p->info;
    memcpy(i->hash, b->hash, 32);
    memcpy(i->header, b->header, 80);
    i->height = b->height == CD_IPC_HEIGHT_UNKNOWN ? -1 : (int32_t)b->height;
    i->tx_count = b->tx_count;
    i->size = b->size;
    p->pg_block = -1;
    /* Until the indexed tip exists every parser registers every block, in
     * order, before any of its units is written: so the first tip (the
     * lowest registered block) can never be a later block that happened to
     * be indexed first. Once it exists, a tip moves only to a registered,
     * indexed child of itself, so the order of registrations no longer
     * matters: a block is then registered only by the parsers that get one
     * of its units (one for a block of one unit), those held for a batch all
     * in one statement at the flush. Registration commits on its own. */
    if (!p->tip_seen && cd_pg_block_register(p->pg, i->hash, i->header, i->height, i->tx_count,
                                             i->size, &p->pg_block) != CD_PG_OK)
        return -1;
    p->ipc_block = b->block_id;
    p->block_size = b->size;
    p->active = 1;
    return 0;
}

/* The unit overlaps units committed with another cutting (unit_size changed
 * across a restart): index only the txs of this unit that no committed unit
 * covers, as recovery units. Other parsers work on disjoint tx ranges, so
 * nothing races. Returns 0 or a negative code. */
static int index_unit_gaps(wk_parser *p, int64_t pg_block, const cd_ipc_unit *u,
                           const uint8_t *data, const uint32_t *tx_off)
{
    int indexed = 0;
    uint64_t *g = NULL, f = u->first_tx, e = u->first_tx + u->tx_count;
    size_t n = 0;
    int rc = cd_pg_block_gaps(p->pg, pg_block, UINT64_MAX, &indexed, &g, &n);
    for (size_t i = 0; i < n && rc >= 0; i++) {
        uint64_t a = CD_MAX(g[2 * i], f), b = CD_MIN(g[2 * i + 1], e);
        if (a >= b)
            continue;
        size_t so = tx_off[a - f], eo = b < e ? tx_off[b - f] : (size_t)u->len;
        rc = cd_rows_index_unit(p->pg, &p->unit, pg_block, CD_WK_RECOVERY_UNIT + (uint32_t)a,
                                data + so, eo - so, u->block_off + so, (uint32_t)a,
                                (uint32_t)(b - a), &p->opts);
    }
    free(g);
    return rc < 0 ? rc : 0;
}

static int parser_unit(cd_wk_ctx *c, const cd_ipc_unit *u, const uint32_t *tx_off)
{
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
    /* A block in one unit (a block below unit_size: most of them) only ever
     * reaches this parser, so it can wait for the next batch. Units of a
     * larger block go to several parsers and are written one by one. */
    if (u->block_off == 0 && u->len == p->block_size)
        return parser_hold(c, u, data + skip, len - skip);
    if (parser_flush(c) < 0)
        return -1;
    if (p->pg_block < 0 &&
        cd_pg_block_register(p->pg, p->info.hash, p->info.header, p->info.height, p->info.tx_count,
                             p->info.size, &p->pg_block) != CD_PG_OK)
        return -1;
    int rc = cd_rows_index_unit(p->pg, &p->unit, p->pg_block, u->unit_no, data + skip, len - skip,
                                u->block_off + skip, (uint32_t)u->first_tx, u->tx_count, &p->opts);
    if (rc == CD_PG_EUNIT) {
        cd_log_warn("parser: unit %u of block_id %lld overlaps units cut differently before; "
                    "indexing only its uncovered transactions",
                    u->unit_no, (long long)p->pg_block);
        rc = index_unit_gaps(p, p->pg_block, u, data, tx_off);
    }
    if (rc == CD_ROWS_EMALFORMED)
        return CD_IPC_ERR_MALFORMED;
    if (rc < 0)
        return -1; /* exit; the unit is dispatched again to a new parser */
    cd_wk_maybe_crash(c, ++p->units_done);
    /* completed at BLOCK_STORED, once the block is in LMDB (issue 11, F6) */
    return CD_IPC_OK;
}

/* BLOCK_STORED: the writer stored the block, the merkle worker verified it,
 * every parser committed its units. Held for the idle hook, which completes
 * all of them in one transaction (as a batch of units was before). */
static int parser_stored(cd_wk_ctx *c, const cd_ipc_block_ref *r, cd_ipc_block_done *done)
{
    (void)done;
    wk_parser *p = c->state;
    if (p->n_st == p->cap_st) {
        p->cap_st = p->cap_st ? 2 * p->cap_st : 64;
        p->st_hash = cd_xrealloc(p->st_hash, p->cap_st * 32);
        p->st_ipc = cd_xrealloc(p->st_ipc, p->cap_st * sizeof(*p->st_ipc));
        p->st_ids = cd_xrealloc(p->st_ids, p->cap_st * sizeof(*p->st_ids));
    }
    memcpy(p->st_hash[p->n_st], r->hash, 32);
    p->st_ipc[p->n_st++] = r->block_id;
    /* a queue that never runs dry must not hold completions back (their
     * blocks pin ring space until they finish) */
    if (p->n_st >= PARSER_BATCH_STORED)
        return stored_flush(c) < 0 ? -1 : 0;
    return 0; /* answered from the idle hook */
}

/* Completes the blocks of held BLOCK_STORED requests (cd_pg_blocks_try_complete:
 * the merkle root of the committed txids checked, the block marked indexed,
 * the tip moved) and answers each: OK, ERR_STALE (its rows did not give the
 * root: an earlier, wrong copy's, now removed; index it again) or ERR_STORE
 * (not registered: should not happen). Returns 0 or -1 (fatal). */
static int stored_flush(cd_wk_ctx *c)
{
    wk_parser *p = c->state;
    if (p->n_st == 0)
        return 0;
    if (cd_pg_block_ids(p->pg, (const uint8_t(*)[32])p->st_hash, p->n_st, p->st_ids) != CD_PG_OK)
        return -1;
    /* the registered ones, in request order (purged[] follows it) */
    size_t n_ids = 0;
    int64_t *ids = cd_xmalloc(p->n_st * sizeof(int64_t));
    for (size_t i = 0; i < p->n_st; i++)
        if (p->st_ids[i] >= 0)
            ids[n_ids++] = p->st_ids[i];
    uint8_t *purged = cd_xcalloc(n_ids ? n_ids : 1, 1);
    int32_t tip = -1;
    int rc = cd_pg_blocks_try_complete(p->pg, ids, n_ids, &tip, purged);
    if (rc != CD_PG_OK && rc != CD_PG_EMERKLE) {
        free(ids);
        free(purged);
        return -1;
    }
    if (tip >= 0)
        p->tip_seen = 1;
    for (size_t i = 0, k = 0; i < p->n_st; i++) {
        cd_ipc_block_done d;
        memset(&d, 0, sizeof(d));
        d.block_id = p->st_ipc[i];
        d.kind = CD_WK_PARSER;
        if (p->st_ids[i] < 0) {
            char hx[65];
            cd_hex_encode_rev(hx, p->st_hash[i], 32);
            cd_log_error("parser: stored block %s is not registered in PostgreSQL", hx);
            d.status = CD_IPC_ERR_STORE;
        } else {
            d.status = purged[k++] ? CD_IPC_ERR_STALE : CD_IPC_OK;
        }
        if (cd_ipc_send(c->fd, CD_IPC_BLOCK_DONE, &d, sizeof(d), NULL, 0) != 0) {
            free(ids);
            free(purged);
            return -1;
        }
    }
    free(ids);
    free(purged);
    p->n_st = 0;
    return 0;
}

/* The idle hook: the held units' batch first (their acks let the
 * controller send BLOCK_STORED), then the held completions. */
static int parser_idle(cd_wk_ctx *c)
{
    if (parser_flush(c) < 0)
        return -1;
    return stored_flush(c);
}

static int parser_end(cd_wk_ctx *c, const cd_ipc_block_ref *r, cd_ipc_block_done *done)
{
    (void)done;
    wk_parser *p = c->state;
    /* Nothing to complete here: whoever commits a block's last unit checks
     * it after that commit, under the tip lock, so one of the committers
     * always sees every unit (a check at END by every parser only repeated
     * that work, N times per block). */
    if (p->active && r->block_id == p->ipc_block)
        p->active = 0;
    return 0; /* parsers send no BLOCK_DONE */
}

static void parser_abort(cd_wk_ctx *c, const cd_ipc_block_ref *r)
{
    wk_parser *p = c->state;
    if (r->block_id == p->ipc_block)
        p->active = 0;
}

/* A copy of this block failed (wrong merkle root, malformed, lost) after
 * some of its units reached the parsers: the controller waits for every ack
 * of that copy, then asks one parser to remove what the copy committed,
 * before it lets another copy in (cd_pipeline.c). Held units were settled
 * by the idle hook before this runs. Returns 1: BLOCK_DONE answers it. */
static int parser_del(cd_wk_ctx *c, const cd_ipc_block_ref *r)
{
    wk_parser *p = c->state;
    int purged = 0;
    if (cd_pg_block_purge(p->pg, r->hash, -1, &purged) != CD_PG_OK)
        return -1;
    if (purged) {
        char hx[65];
        cd_hex_encode_rev(hx, r->hash, 32);
        cd_log_info("parser: removed the rows of a failed copy of block %s", hx);
    }
    return 1;
}

static void parser_fini(cd_wk_ctx *c)
{
    wk_parser *p = c->state;
    if (!p)
        return;
    cd_pg_unit_free(&p->unit);
    cd_pg_free(p->pg);
    free(p->held);
    free(p->ids);
    free(p->regs);
    free(p->reg_of);
    free(p->chk);
    free(p->chk_state);
    free(p->st_hash);
    free(p->st_ipc);
    free(p->st_ids);
    cd_blockstore_close(p->blocks);
    cd_blockstore_close(p->merkle);
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
    .del = parser_del,
    .fini = parser_fini,
    .idle = parser_idle,
    .stored = parser_stored,
};

/* ------------------------------------------------------------------ */
/* recovery from LMDB at start                                         */
/* ------------------------------------------------------------------ */

typedef struct rec_ctx {
    cd_pg *pg;
    cd_blockstore *bs;
    const cd_config *cfg;
    int32_t tip;
    cd_pg_unit unit;
    cd_rows_opts opts;
    uint8_t *buf;
    size_t cap;
    uint64_t *offs;
    size_t offs_cap;
    size_t blocks, units;
    int failed;
    cd_pg_block_info *unv; /* blocks with unverified rows, kept for rec_block */
    size_t n_unv;
} rec_ctx;

static int rec_range(rec_ctx *r, const cd_block_loc *loc, int64_t id, uint64_t s, uint64_t e)
{
    size_t n = (size_t)(e - s) + 1;
    if (n > r->offs_cap) {
        r->offs = cd_xrealloc(r->offs, n * sizeof(uint64_t));
        r->offs_cap = n;
    }
    /* offsets of txs s..e-1, plus where tx e starts (or the block's end) */
    if (cd_blockstore_read_offsets(r->bs, loc, s, e - s + (e < loc->tx_count), r->offs) != 0)
        return -1;
    if (e == loc->tx_count)
        r->offs[e - s] = loc->size;
    uint64_t unit_size = cd_config_unit_size(r->cfg); /* as the pipeline cuts */
    for (uint64_t a = s; a < e;) {
        uint64_t b = a + 1;
        while (b < e && r->offs[b - s] - r->offs[a - s] < unit_size)
            b++;
        uint64_t off = r->offs[a - s], len = r->offs[b - s] - off;
        if (len > r->cap) {
            free(r->buf);
            r->buf = malloc(len);
            r->cap = r->buf ? len : 0;
            if (!r->buf)
                return -1;
        }
        if (cd_blockstore_read(r->bs, loc, off, r->buf, len) != 0)
            return -1;
        int rc = cd_rows_index_unit(r->pg, &r->unit, id, CD_WK_RECOVERY_UNIT + (uint32_t)a, r->buf,
                                    len, off, (uint32_t)a, (uint32_t)(b - a), &r->opts);
        if (rc < 0)
            return -1;
        r->units++;
        a = b;
    }
    return 0;
}

/* Is hash one of the blocks whose committed rows nobody verified yet
 * (cd_pg_blocks_unverified)? */
static int rec_unverified(const rec_ctx *r, const uint8_t hash[32])
{
    for (size_t i = 0; i < r->n_unv; i++)
        if (memcmp(r->unv[i].hash, hash, 32) == 0)
            return 1;
    return 0;
}

static int rec_block(const uint8_t hash[32], const cd_block_loc *loc, void *arg)
{
    rec_ctx *r = arg;
    /* Blocks well below the indexed tip are done. Within
     * CD_WK_RECOVERY_REORG_WINDOW of it they are checked too: a reorg's new
     * branch may be stored but not yet indexed at heights the old branch
     * covers (an indexed block costs two quick queries). So is any block
     * with unverified rows, wherever it is. */
    if (loc->height == UINT32_MAX ||
        ((int64_t)loc->height + CD_WK_RECOVERY_REORG_WINDOW <= (int64_t)r->tip &&
         !rec_unverified(r, hash)))
        return 0;
    int rc = 0;
    /* Twice at most: if the rows committed before (a copy that was never
     * verified) do not give the header's root, the completion step removes
     * them (CD_PG_EMERKLE) and the block is indexed again, whole, from the
     * stored copy. */
    for (int attempt = 0; attempt < 2; attempt++) {
        int64_t id;
        int indexed = 0;
        uint64_t *gaps = NULL;
        size_t n = 0;
        if (cd_pg_block_register(r->pg, hash, loc->header, (int32_t)loc->height, loc->tx_count,
                                 loc->size, &id) ||
            cd_pg_block_gaps(r->pg, id, loc->tx_count, &indexed, &gaps, &n)) {
            r->failed = 1;
            return 1;
        }
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = rec_range(r, loc, id, gaps[2 * i], gaps[2 * i + 1]);
        free(gaps);
        if (rc || (n == 0 && indexed))
            break;
        r->blocks++;
        int pr = cd_pg_block_try_complete(r->pg, id, NULL);
        if (pr == CD_PG_EMERKLE && attempt == 0)
            continue;
        if (pr == CD_PG_EMERKLE) {
            /* the stored copy itself does not match: it is not verified
             * (no merkle tree), and the download replaces it */
            char hx[65];
            cd_hex_encode_rev(hx, hash, 32);
            cd_log_warn("recovery: stored block %s does not give its header's merkle root; "
                        "left for the download to replace",
                        hx);
            break;
        }
        rc = pr == CD_PG_OK ? 0 : -1;
        break;
    }
    if (rc) {
        char hx[65];
        cd_hex_encode_rev(hx, hash, 32);
        cd_log_error("recovery: block %s (height %u) could not be indexed from LMDB", hx,
                     loc->height);
        r->failed = 1;
        return 1;
    }
    return 0;
}

/* Rows committed from bytes nobody verified (a crash mid-block, or a wrong
 * copy that an older version left behind: issue 11, F1) are kept only for
 * blocks the block store holds with the same shape: rec_block then checks
 * them against the header's merkle root (and indexes the block again from
 * the stored copy if they do not match). Any other such block loses its
 * rows now; the download brings it again. Returns 0 or a CD_PG code. */
static int rec_unverified_scan(rec_ctx *r)
{
    int64_t *ids = NULL;
    int rc = cd_pg_blocks_unverified(r->pg, &r->unv, &ids, &r->n_unv);
    size_t keep = 0;
    for (size_t i = 0; rc == 0 && i < r->n_unv; i++) {
        cd_block_loc loc;
        const cd_pg_block_info *b = &r->unv[i];
        int stored = r->bs && cd_blockstore_get(r->bs, b->hash, &loc) == 0;
        if (stored && loc.tx_count == b->tx_count && loc.size == b->size) {
            r->unv[keep++] = *b;
            continue;
        }
        char hx[65];
        cd_hex_encode_rev(hx, b->hash, 32);
        cd_log_info("recovery: block %s (height %d): removing rows committed from an unverified "
                    "copy (%s)",
                    hx, (int)b->height, stored ? "the stored copy differs" : "not stored");
        rc = cd_pg_block_purge(r->pg, NULL, ids[i], NULL);
    }
    r->n_unv = keep;
    free(ids);
    return rc;
}

int cd_wk_parser_recover(const cd_config *cfg)
{
    if (!cfg->index)
        return CD_EXIT_OK;
    char path[4096];
    snprintf(path, sizeof(path), "%s/blocks", cfg->datadir);
    rec_ctx r;
    memset(&r, 0, sizeof(r));
    r.cfg = cfg;
    if (cd_blockstore_open(path, CD_BS_RDONLY, 0, &r.bs) != 0)
        r.bs = NULL; /* nothing stored yet: unverified rows still go */
    r.pg = cd_pg_new(cfg, NULL);
    cd_pg_set_retry(r.pg, 0, 5000, NULL);
    int rc = cd_pg_migrate(r.pg);
    if (rc == 0)
        rc = cd_pg_tip_height(r.pg, &r.tip);
    if (rc == 0) {
        cd_pg_unit_init(&r.unit, CD_PG_COPY_BINARY);
        r.opts.data_pushes = cfg->index_data_pushes;
        r.opts.data_max_len = cfg->max_data_push;
        rc = rec_unverified_scan(&r);
        if (rc == 0 && r.bs) {
            int frc = cd_blockstore_foreach(r.bs, rec_block, &r);
            if (frc != 0 && !r.failed) { /* a read error, not a block that failed */
                cd_log_error("recovery: listing the stored blocks: %s", cd_strerror(frc));
                r.failed = 1;
            }
        }
        int32_t tip = r.tip;
        if (!r.failed && cd_pg_tip_advance_all(r.pg, &tip) != CD_PG_OK)
            tip = r.tip; /* logged; the parsers' completion steps move it later */
        if (r.blocks)
            cd_log_info("recovery: %zu stored blocks indexed from LMDB (%zu units); indexed "
                        "tip %d",
                        r.blocks, r.units, (int)tip);
        cd_pg_unit_free(&r.unit);
    }
    free(r.buf);
    free(r.offs);
    free(r.unv);
    cd_pg_free(r.pg);
    cd_blockstore_close(r.bs);
    if (rc == CD_PG_ENEWER)
        return CD_EXIT_CONFIG;
    return rc || r.failed ? CD_EXIT_FAILURE : CD_EXIT_OK;
}
