/*
 * cd_mempool.c - best-chain switches (reorgs) and the mempool index, as a
 * controller module (cd_mempool.h has the contract).
 *
 * Why it exists: the header tree decides which chain is best; PostgreSQL must
 * follow it atomically (ConduitDB's reorgs were not atomic and it dropped
 * mempool notifications). All decisions live in SQL (cd_reorg_step,
 * cd_mempool_add in sql/002_reorg_mempool.sql) so that each one is a single
 * transaction; this module only feeds them: the tree's tip and the relayed
 * transactions, parsed by the same code as the parser workers.
 *
 * NOTES
 *  - libpq is used synchronously on the controller loop. Statements are short
 *    (a step is a few index lookups unless a switch happens; a tx batch is
 *    sent in libpq pipeline mode: one round trip per batch). A database that
 *    is down makes each attempt fail fast (one connection try per tick).
 */
#include "daemon/cd_mempool.h"

#include "bitcoin/btc_tx.h"
#include "common/cd_log.h"
#include "common/cd_util.h"
#include "storage/cd_pg.h"
#include "workers/cd_wk_parser.h"

#include <event2/event.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MP_SEEN_BITS 17 /* recently requested txids: 128k slots */
#define MP_SEEN_SLOTS (1u << MP_SEEN_BITS)
#define MP_TICK_MS 100
#define MP_STEP_EVERY 3 /* run the reorg step every 3rd tick even without events */

/* One parsed transaction waiting to be written. */
typedef struct mp_tx {
    uint8_t txid[32];
    uint32_t size;
    uint8_t *ins; /* n_in x 36 bytes: prev txid, LE prev index */
    size_t n_in, cap_in;
    uint8_t *keys; /* n_push x 32 */
    uint32_t *idx, *flags;
    size_t n_push, cap_push;
} mp_tx;

typedef struct mp_state {
    cd_ctl *ctl;
    const cd_config *cfg;
    struct event_base *base;
    cd_hdrtree *tree;
    cd_pg *pg;
    struct event *tick;
    unsigned ticks;
    int ready;        /* migrated and mempool emptied */
    int target_dirty; /* chain_target must be (re)written */
    int step_due;
    /* relay */
    uint8_t (*seen)[32];
    uint8_t *seen_used;
    size_t seen_n;
    mp_tx *q;
    size_t q_n, q_cap;
    uint64_t accepted, known, conflicted, received;
    uint64_t logged_accepted;
    double last_log;
    cd_wk_parse_opts opts;
    /* scratch for the text arrays */
    char *tbuf;
    size_t tcap;
} mp_state;

static uint64_t mp_cap(const mp_state *s)
{
    return s->cfg->mempool_max_txs ? s->cfg->mempool_max_txs : CD_MEMPOOL_DEFAULT_CAP;
}

/* ---- recently requested set ---- */

static int seen_add(mp_state *s, const uint8_t h[32])
{
    if (s->seen_n >= MP_SEEN_SLOTS / 2) {
        memset(s->seen_used, 0, MP_SEEN_SLOTS);
        s->seen_n = 0;
    }
    uint32_t i = cd_le32(h) & (MP_SEEN_SLOTS - 1);
    while (s->seen_used[i]) {
        if (memcmp(s->seen[i], h, 32) == 0)
            return 0;
        i = (i + 1) & (MP_SEEN_SLOTS - 1);
    }
    s->seen_used[i] = 1;
    memcpy(s->seen[i], h, 32);
    s->seen_n++;
    return 1;
}

/* ---- PostgreSQL ---- */

static PGconn *conn(mp_state *s)
{
    if (cd_pg_connect(s->pg) != CD_PG_OK)
        return NULL;
    return cd_pg_conn(s->pg);
}

static int exec_ok(PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Migrates and empties the mempool tables (a restart starts clean). */
static int make_ready(mp_state *s)
{
    if (s->ready)
        return 0;
    if (cd_pg_migrate(s->pg) != CD_PG_OK)
        return -1;
    PGconn *c = conn(s);
    if (!c)
        return -1;
    PGresult *r = PQexec(c, "TRUNCATE mempool_tx, mempool_inputs, mempool_pushdata");
    int ok = exec_ok(r);
    if (!ok)
        cd_log_warn("mempool: emptying the mempool tables failed: %s", PQerrorMessage(c));
    PQclear(r);
    if (!ok)
        return -1;
    s->ready = 1;
    s->target_dirty = 1;
    s->step_due = 1;
    cd_log_info("mempool: index connection ready (mempool tables emptied, relay %s)",
                s->cfg->relay ? "on" : "off");
    return 0;
}

static int write_target(mp_state *s)
{
    const cd_hdr_node *tip = cd_hdrtree_tip(s->tree);
    if (!tip)
        return 0;
    PGconn *c = conn(s);
    if (!c)
        return -1;
    char h[16];
    snprintf(h, sizeof(h), "%d", (int)tip->height);
    const char *vals[2] = {(const char *)tip->hash, h};
    int lens[2] = {32, 0};
    int fmts[2] = {1, 0};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO chain_target (singleton, block_hash, height) "
                               "VALUES (true, $1, $2) ON CONFLICT (singleton) DO UPDATE SET "
                               "block_hash = EXCLUDED.block_hash, height = EXCLUDED.height, "
                               "updated_at = now()",
                               2, NULL, vals, lens, fmts, 0);
    int ok = exec_ok(r);
    if (!ok)
        cd_log_warn("reorg: writing chain_target failed: %s", PQerrorMessage(c));
    PQclear(r);
    return ok ? 0 : -1;
}

static void run_step(mp_state *s)
{
    if (make_ready(s) != 0)
        return;
    if (s->target_dirty) {
        if (write_target(s) != 0)
            return;
        s->target_dirty = 0;
    }
    PGconn *c = conn(s);
    if (!c)
        return;
    PGresult *r = PQexec(c, "SELECT cd_reorg_step()");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cd_log_warn("reorg: cd_reorg_step failed: %s", PQerrorMessage(c));
        PQclear(r);
        return;
    }
    s->step_due = 0;
    char res[64];
    snprintf(res, sizeof(res), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    int fork = 0, leave = 0, join = 0;
    int reorg = sscanf(res, "reorg %d %d %d", &fork, &leave, &join) == 3;
    if (reorg || strcmp(res, "switched") == 0) {
        /* the new tip, read after the step's transaction committed */
        r = PQexec(c, "SELECT i.height, cd_txid_hex(b.block_hash) FROM index_tip i "
                      "JOIN blocks b USING (block_id)");
        const char *h = "?", *hash = "?";
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            h = PQgetvalue(r, 0, 0);
            hash = PQgetvalue(r, 0, 1);
        }
        if (reorg)
            cd_log_info("reorg: indexed best chain switched: fork height=%d leaving=%d "
                        "joining=%d new tip=%s height=%s",
                        fork, leave, join, hash, h);
        else
            cd_log_debug("reorg: indexed tip moved to %s height=%s", hash, h);
        PQclear(r);
    } else if (strcmp(res, "at") != 0) {
        s->step_due = 1; /* waiting for blocks: try again next tick */
    }
}

/* ---- mempool writes ---- */

static void tx_free(mp_tx *t)
{
    free(t->ins);
    free(t->keys);
    free(t->idx);
    free(t->flags);
}

static const char *int_array(mp_state *s, const uint32_t *v, size_t n, size_t *at)
{
    /* reserve_text sized the buffer for the whole batch, so pointers handed
     * out earlier in the batch stay valid */
    cd_assert(*at + n * 11 + 3 <= s->tcap);
    char *p = s->tbuf + *at, *start = p;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, i ? ",%u" : "%u", v[i]);
    *p++ = '}';
    *p++ = 0;
    *at += (size_t)(p - start);
    return start;
}

static void reserve_text(mp_state *s)
{
    size_t need = 64;
    for (size_t i = 0; i < s->q_n; i++)
        need += 2 * (s->q[i].n_push * 11 + 3) + 48;
    if (need > s->tcap) {
        free(s->tbuf);
        s->tbuf = cd_xmalloc(need);
        s->tcap = need;
    }
}

/* Writes the queued txs in one transaction (pipeline mode). */
static void flush(mp_state *s)
{
    if (s->q_n == 0)
        return;
    if (make_ready(s) != 0)
        return; /* keep the queue (bounded by on_tx) until PG is back */
    PGconn *c = conn(s);
    if (!c)
        return;
    reserve_text(s);
    size_t at = 0;
    char cap[24];
    snprintf(cap, sizeof(cap), "%" PRIu64, mp_cap(s));
    int ok = PQenterPipelineMode(c) == 1;
    ok = ok && PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1;
    for (size_t i = 0; ok && i < s->q_n; i++) {
        mp_tx *t = &s->q[i];
        char size[16];
        snprintf(size, sizeof(size), "%u", t->size);
        const char *pidx = int_array(s, t->idx, t->n_push, &at);
        const char *pfl = int_array(s, t->flags, t->n_push, &at);
        static const uint8_t empty[1];
        const char *vals[7] = {(const char *)t->txid,
                               size,
                               t->n_in ? (const char *)t->ins : (const char *)empty,
                               t->n_push ? (const char *)t->keys : (const char *)empty,
                               pidx,
                               pfl,
                               cap};
        int lens[7] = {32, 0, (int)(t->n_in * 36), (int)(t->n_push * 32), 0, 0, 0};
        int fmts[7] = {1, 0, 1, 1, 0, 0, 0};
        ok = PQsendQueryParams(c, "SELECT cd_mempool_add($1, $2, $3, $4, $5, $6, $7)", 7, NULL,
                               vals, lens, fmts, 0) == 1;
    }
    ok = ok && PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
    ok = ok && PQpipelineSync(c) == 1;
    uint64_t acc = 0, known = 0, confl = 0;
    int failed = !ok;
    if (ok) {
        /* results: BEGIN, one per tx, COMMIT, then the sync */
        for (;;) {
            PGresult *r = PQgetResult(c);
            if (!r) {
                if (PQstatus(c) != CONNECTION_OK) {
                    failed = 1;
                    break;
                }
                continue; /* end of one query's results */
            }
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_PIPELINE_SYNC) {
                PQclear(r);
                break;
            }
            if (st == PGRES_TUPLES_OK && PQntuples(r) == 1) {
                int v = atoi(PQgetvalue(r, 0, 0));
                if (v == 1)
                    acc++;
                else if (v == 0)
                    known++;
                else
                    confl++;
            } else if (st != PGRES_COMMAND_OK) {
                if (!failed)
                    cd_log_warn("mempool: writing %zu txs failed: %s", s->q_n,
                                PQresultErrorMessage(r));
                failed = 1;
            }
            PQclear(r);
        }
    }
    if (PQpipelineStatus(c) != PQ_PIPELINE_OFF)
        PQexitPipelineMode(c);
    if (failed) {
        if (PQstatus(c) != CONNECTION_OK)
            return; /* reconnect and retry the batch next tick */
        /* an SQL error: the batch is dropped (logged above) */
    } else {
        s->accepted += acc;
        s->known += known;
        s->conflicted += confl;
    }
    for (size_t i = 0; i < s->q_n; i++)
        tx_free(&s->q[i]);
    s->q_n = 0;
}

static void log_progress(mp_state *s, int force)
{
    double now = cd_now_s();
    if (s->accepted == s->logged_accepted || (!force && now - s->last_log < 1.0))
        return;
    cd_log_info("mempool: %" PRIu64 " txs accepted (%" PRIu64 " received, %" PRIu64
                " known or confirmed, %" PRIu64 " conflicting)",
                s->accepted, s->received, s->known, s->conflicted);
    s->logged_accepted = s->accepted;
    s->last_log = now;
}

/* ---- parsing sink (cd_wk_parse_unit) ---- */

static void sink_tx(void *ctx, uint32_t pos, const uint8_t txid[32], uint64_t off, uint32_t size)
{
    (void)pos;
    (void)off;
    mp_tx *t = ctx;
    memcpy(t->txid, txid, 32);
    t->size = size;
}

static void sink_input(void *ctx, uint32_t pos, uint32_t in_idx, const uint8_t prev[32],
                       uint32_t prev_idx)
{
    (void)pos;
    (void)in_idx;
    mp_tx *t = ctx;
    if (t->n_in == t->cap_in) {
        t->cap_in = t->cap_in ? 2 * t->cap_in : 4;
        t->ins = cd_xrealloc(t->ins, t->cap_in * 36);
    }
    memcpy(t->ins + t->n_in * 36, prev, 32);
    cd_put_le32(t->ins + t->n_in * 36 + 32, prev_idx);
    t->n_in++;
}

static void sink_push(void *ctx, uint32_t pos, uint32_t idx, unsigned flags, const uint8_t key[32])
{
    (void)pos;
    mp_tx *t = ctx;
    if (t->n_push == t->cap_push) {
        t->cap_push = t->cap_push ? 2 * t->cap_push : 8;
        t->keys = cd_xrealloc(t->keys, t->cap_push * 32);
        t->idx = cd_xrealloc(t->idx, t->cap_push * sizeof(uint32_t));
        t->flags = cd_xrealloc(t->flags, t->cap_push * sizeof(uint32_t));
    }
    memcpy(t->keys + t->n_push * 32, key, 32);
    t->idx[t->n_push] = idx;
    t->flags[t->n_push] = flags;
    t->n_push++;
}

/* ---- peer events ---- */

static int relaying(const mp_state *s)
{
    return s && s->cfg->index && s->cfg->relay;
}

static void on_ready(const cp2p_ctx *ctx, const cp2p_version *their)
{
    (void)their;
    mp_state *s = ctx->user;
    if (!relaying(s))
        return;
    /* refill the (emptied) mempool set from the node */
    cp2p_peer_send(ctx->peer, "mempool", NULL, 0);
}

static void on_inv(const cp2p_ctx *ctx, const cp2p_inv *inv, size_t n)
{
    mp_state *s = ctx->user;
    if (!relaying(s))
        return;
    uint8_t(*want)[32] = NULL;
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) {
        if (inv[i].type != CP2P_INV_TX || !seen_add(s, inv[i].hash))
            continue;
        if (!want)
            want = cd_xmalloc(n * 32);
        memcpy(want[nw++], inv[i].hash, 32);
    }
    if (nw)
        cp2p_peer_getdata_txs(ctx->peer, (const uint8_t(*)[32])want, nw);
    free(want);
}

static void on_tx(const cp2p_ctx *ctx, const uint8_t *raw, size_t len, const uint8_t txid[32])
{
    (void)txid;
    mp_state *s = ctx->user;
    if (!relaying(s))
        return;
    s->received++;
    if (s->q_n >= 64 * CD_MEMPOOL_BATCH) /* PG down: bounded queue, newest dropped */
        return;
    if (s->q_n == s->q_cap) {
        s->q_cap = s->q_cap ? 2 * s->q_cap : CD_MEMPOOL_BATCH;
        s->q = cd_xrealloc(s->q, s->q_cap * sizeof(*s->q));
    }
    mp_tx *t = &s->q[s->q_n];
    memset(t, 0, sizeof(*t));
    cd_wk_sink sink = {.ctx = t, .tx = sink_tx, .input = sink_input, .push = sink_push};
    size_t used = 0;
    long ntx = cd_wk_parse_unit(raw, len, 0, 0, 1, &s->opts, &sink, &used);
    if (ntx != 1 || used != len) {
        tx_free(t);
        char hex[65];
        cd_hex_encode_rev(hex, txid, 32);
        cd_log_debug("mempool: tx %s from %s does not parse; ignored", hex,
                     cp2p_peer_name(ctx->peer));
        return;
    }
    s->q_n++;
    if (s->q_n >= CD_MEMPOOL_BATCH)
        flush(s);
}

/* ---- timers, chain events ---- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mp_state *s = arg;
    s->ticks++;
    if (s->step_due || s->target_dirty || s->ticks % MP_STEP_EVERY == 0)
        run_step(s);
    flush(s);
    log_progress(s, 0);
}

static void on_best_chain(void *state, const cd_hdrtree_tip_event *ev)
{
    (void)ev;
    mp_state *s = state;
    if (!s || !s->cfg->index)
        return;
    s->target_dirty = 1;
    run_step(s);
}

/* ---- module ---- */

static int mod_init(cd_ctl *ctl, void **state)
{
    mp_state *s = cd_xcalloc(1, sizeof(*s));
    s->ctl = ctl;
    s->cfg = cd_ctl_config(ctl);
    s->base = cd_ctl_base(ctl);
    *state = s;
    return 0;
}

static int mod_start(void *state)
{
    mp_state *s = state;
    if (!s->cfg->index)
        return 0;
    s->tree = cd_ctl_tree(s->ctl);
    s->opts.data_pushes = s->cfg->index_data_pushes;
    s->opts.data_max_len = s->cfg->max_data_push;
    s->seen = cd_xmalloc((size_t)MP_SEEN_SLOTS * 32);
    s->seen_used = cd_xcalloc(MP_SEEN_SLOTS, 1);
    s->pg = cd_pg_new(s->cfg->pg_conninfo);
    /* one attempt per call: the loop must not block while PG is down; the
     * tick tries again */
    cd_pg_set_retry(s->pg, 1, 100, NULL);
    s->target_dirty = 1;
    s->step_due = 1;
    run_step(s);
    s->tick = event_new(s->base, -1, EV_PERSIST, tick_cb, s);
    struct timeval tv = {0, MP_TICK_MS * 1000};
    event_add(s->tick, &tv);
    return 0;
}

static void mod_fini(void *state)
{
    mp_state *s = state;
    if (!s)
        return;
    if (s->tick)
        event_free(s->tick);
    if (s->pg && s->ready)
        flush(s);
    log_progress(s, 1);
    for (size_t i = 0; i < s->q_n; i++)
        tx_free(&s->q[i]);
    free(s->q);
    free(s->seen);
    free(s->seen_used);
    free(s->tbuf);
    cd_pg_free(s->pg);
    free(s);
}

const cd_ctl_module cd_mempool_module = {
    .name = "mempool",
    .init = mod_init,
    .start = mod_start,
    .fini = mod_fini,
    .handlers = {.on_ready = on_ready, .on_inv = on_inv, .on_tx = on_tx},
    .on_best_chain = on_best_chain,
};
