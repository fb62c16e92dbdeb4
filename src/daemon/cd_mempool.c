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
 *    one cd_mempool_add_batch call: one round trip per batch). A database that
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

#define MP_SEEN_BITS  17 /* recently requested txids: 128k slots */
#define MP_SEEN_SLOTS (1u << MP_SEEN_BITS)
#define MP_TICK_MS    100
#define MP_RETRY_S    2.0 /* seconds between connection attempts while PG is down */
#define MP_STEP_EVERY 3   /* run the reorg step every 3rd tick even without events */

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
    int synced; /* the index reached the tree's tip once: relay starts */
    double pg_retry_at;
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

/* The connection, or NULL while PostgreSQL is unreachable: one connection
 * attempt every MP_RETRY_S at most, so a database that is down neither
 * stalls the loop nor floods the log. */
static PGconn *conn(mp_state *s)
{
    double now = cd_now_s();
    if (now < s->pg_retry_at)
        return NULL;
    if (cd_pg_connect(s->pg) != CD_PG_OK) {
        s->pg_retry_at = now + MP_RETRY_S;
        return NULL;
    }
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
    PGconn *c = conn(s);
    if (!c)
        return -1;
    if (cd_pg_migrate(s->pg) != CD_PG_OK) {
        s->pg_retry_at = cd_now_s() + MP_RETRY_S;
        return -1;
    }
    c = conn(s);
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

/* The index caught up with the tree: from now on relayed txs are taken
 * (before, the mempool rules would have to consult a partial chain, and the
 * catch-up's per-block work stays minimal). Asks every ready peer for its
 * mempool. */
static void start_relay(mp_state *s)
{
    s->synced = 1;
    if (!s->cfg->relay)
        return;
    cp2p_mgr *mgr = cd_ctl_mgr(s->ctl);
    size_t n = mgr ? cp2p_mgr_peer_count(mgr) : 0, asked = 0;
    for (size_t i = 0; i < n; i++) {
        cp2p_peer *p = cp2p_mgr_peer_at(mgr, i);
        if (p && cp2p_peer_state_get(p) == CP2P_PEER_READY &&
            cp2p_peer_send(p, "mempool", NULL, 0) == 0)
            asked++;
    }
    cd_log_info("mempool: index at the best tip; relay on (mempool asked from %zu peers)", asked);
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
    double t0 = cd_now_s();
    PGresult *r = PQexec(c, "SELECT cd_reorg_step()");
    double ms = (cd_now_s() - t0) * 1e3;
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
    if (!s->synced && (reorg || strcmp(res, "switched") == 0 || strcmp(res, "at") == 0))
        start_relay(s);
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
                        "joining=%d new tip=%s height=%s (one transaction, %.1f ms)",
                        fork, leave, join, hash, h, ms);
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

/* Growable byte buffer for one batch's parameters. */
typedef struct mp_buf {
    char *p;
    size_t len, cap;
} mp_buf;

static void buf_add(mp_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = cd_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* Appends "v" to a text array literal being built ("{" opened by caller). */
static void arr_add(mp_buf *b, uint32_t v)
{
    char t[16];
    int n = snprintf(t, sizeof(t), b->len > 1 ? ",%u" : "%u", v);
    buf_add(b, t, (size_t)n);
}

/* Parameters of cd_mempool_add_batch: bytea ones sent binary, integer
 * arrays as text literals. */
enum { P_TXIDS, P_SIZES, P_INS, P_IN_TX, P_PUSH, P_PUSH_TX, P_PUSH_IDX, P_PUSH_FL, P_N };

static size_t is_array(int i)
{
    return i != P_TXIDS && i != P_INS && i != P_PUSH;
}

/* Writes the queued txs with one cd_mempool_add_batch call (one statement,
 * one transaction, one round trip). */
static void flush(mp_state *s)
{
    if (s->q_n == 0)
        return;
    if (make_ready(s) != 0)
        return; /* keep the queue (bounded by on_tx) until PG is back */
    PGconn *c = conn(s);
    if (!c)
        return;
    double t0 = cd_now_s();
    mp_buf b[P_N];
    memset(b, 0, sizeof(b));
    for (int i = 0; i < P_N; i++)
        buf_add(&b[i], "{", is_array(i)); /* binary ones: empty, not NULL */
    for (size_t k = 0; k < s->q_n; k++) {
        mp_tx *t = &s->q[k];
        buf_add(&b[P_TXIDS], t->txid, 32);
        arr_add(&b[P_SIZES], t->size);
        if (t->n_in)
            buf_add(&b[P_INS], t->ins, t->n_in * 36);
        for (size_t j = 0; j < t->n_in; j++)
            arr_add(&b[P_IN_TX], (uint32_t)k);
        if (t->n_push)
            buf_add(&b[P_PUSH], t->keys, t->n_push * 32);
        for (size_t j = 0; j < t->n_push; j++) {
            arr_add(&b[P_PUSH_TX], (uint32_t)k);
            arr_add(&b[P_PUSH_IDX], t->idx[j]);
            arr_add(&b[P_PUSH_FL], t->flags[j]);
        }
    }
    for (int i = 0; i < P_N; i++)
        if (is_array(i))
            buf_add(&b[i], "}", 1);
    char cap[24];
    snprintf(cap, sizeof(cap), "%" PRIu64, mp_cap(s));
    const char *vals[P_N + 1];
    int lens[P_N + 1], fmts[P_N + 1];
    for (int i = 0; i < P_N; i++) {
        int binary = !is_array(i);
        vals[i] = b[i].p;
        lens[i] = binary ? (int)b[i].len : 0;
        fmts[i] = binary;
    }
    vals[P_N] = cap;
    lens[P_N] = 0;
    fmts[P_N] = 0;
    PGresult *r = PQexecParams(c,
                               "SELECT accepted, known, conflicting FROM cd_mempool_add_batch("
                               "$1, $2, $3, $4, $5, $6, $7, $8, $9)",
                               P_N + 1, NULL, vals, lens, fmts, 0);
    for (int i = 0; i < P_N; i++)
        free(b[i].p);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        int down = PQstatus(c) != CONNECTION_OK;
        if (!down)
            cd_log_warn("mempool: writing %zu txs failed: %s", s->q_n, PQerrorMessage(c));
        PQclear(r);
        if (down)
            return; /* reconnect and retry the batch next tick */
        /* an SQL error: the batch is dropped (logged) */
    } else {
        uint64_t acc = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        s->accepted += acc;
        s->known += strtoull(PQgetvalue(r, 0, 1), NULL, 10);
        s->conflicted += strtoull(PQgetvalue(r, 0, 2), NULL, 10);
        PQclear(r);
        cd_log_debug("mempool: wrote %zu txs in %.1f ms (%" PRIu64 " new)", s->q_n,
                     (cd_now_s() - t0) * 1e3, acc);
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
    return s && s->cfg->index && s->cfg->relay && s->synced;
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
    cd_log_debug("mempool: inv of %zu from %s: asking for %zu txs", n, cp2p_peer_name(ctx->peer),
                 nw);
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
