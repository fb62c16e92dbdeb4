/*
 * cd_mempool.c - best-chain switches (reorgs) and the mempool index, as a
 * controller module (cd_mempool.h has the contract).
 *
 * Why it exists: the header tree decides which chain is best; PostgreSQL must
 * follow it atomically (ConduitDB's reorgs were not atomic and it dropped
 * mempool notifications). All decisions live in SQL (cd_reorg_step,
 * cd_mempool_add in sql/002_reorg_mempool.sql) so that each one is a single
 * transaction; this module only feeds them: the tree's tip and the relayed
 * transactions, parsed by the same code as the parser workers, with their
 * bytes (mempool_tx.raw, sql/004_mempool_raw.sql: what conduit-cli tx and
 * the HTTP API return for an unconfirmed tx).
 *
 * NOTES
 *  - The controller loop never waits for PostgreSQL (DESIGN.md section 2):
 *    libpq is driven asynchronously on the loop's event_base
 *    (cd_mempool_conn.c). The connection
 *    is made with PQconnectStart/PQconnectPoll (socket events, a connect
 *    timeout checked by the tick, exponential back-off between attempts), is
 *    non-blocking, and carries one statement at a time: PQsendQuery*, PQflush
 *    on write readiness until 0, PQconsumeInput/PQisBusy/PQgetResult on read
 *    readiness. A lock held on chain_target or mempool_tx by someone else
 *    only delays our own statement; peers, header sync and the block
 *    pipeline keep running.
 *  - What waits for the connection is kept as a small queue in the state:
 *    flags that coalesce (schema check, TRUNCATE, chain_target write, one
 *    reorg step, the index_tip read that follows a switch) and a FIFO of
 *    parsed txs written in batches of up to CD_MEMPOOL_BATCH. Priority when
 *    the connection is idle: setup, chain_target, reorg step, tip read,
 *    then a tx batch (built from the queue's head; kept and resent after a
 *    reconnect). A batch is sent as soon as the connection is idle, so under
 *    load batches grow to CD_MEMPOOL_BATCH while the previous one runs.
 *  - Back-pressure: while MP_QUEUE_MAX txs wait, tx invs are not answered
 *    with getdata (and not marked as requested, so a later announcement is
 *    taken); txs already requested that arrive beyond the bound are dropped.
 *  - Schema: the parser workers migrate the database at their start. This
 *    module waits for the schema version to reach cd_pg_schema_latest
 *    (asynchronous checks); only if it has not after MP_SCHEMA_WAIT checks
 *    does it migrate itself, synchronously, once (a database nobody else
 *    migrates; the only blocking call left, at setup).
 */
#include "cd_mempool.h"
#include "cd_mempool_int.h"

#include "btc_header.h"
#include "btc_tx.h"
#include "cd_log.h"
#include "cd_util.h"
#include "cd_pg.h"
#include "cd_rows.h"

#include <event2/event.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mp_cap(const mp_state *s)
{
    return s->cfg->mempool_max_txs ? s->cfg->mempool_max_txs : CD_MEMPOOL_DEFAULT_CAP;
}

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

/* Appends signed "v" to a text array literal being built. */
static void arr_add64(mp_buf *b, int64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof(t), b->len > 1 ? ",%" PRId64 : "%" PRId64, v);
    buf_add(b, t, (size_t)n);
}

static size_t is_array(int i)
{
    return i != P_TXIDS && i != P_RAWS && i != P_INS && i != P_PUSH && i != P_OUT_HASH &&
           i != P_OUT_SCR;
}

/* ---- operations ---- */

/* The index caught up with the tree: from now on relayed txs are taken
 * (before, the mempool rules would have to consult a partial chain, and the
 * catch-up's per-block work stays minimal). `mempool` is never sent on the
 * peers' connections: the node's mempool is read through short-lived
 * snapshot connections (cd_mempool_sync.c), for the addresses that allow it. */
static void start_relay(mp_state *s)
{
    s->synced = 1;
    if (!s->cfg->relay)
        return;
    cd_mempool_sync_want(s, NULL);
    static const char *const mode[] = {"auto", "always", "never"};
    cd_log_info("mempool: index at the best tip; relay on (mempool_request=%s)",
                mode[s->cfg->mempool_request % 3]);
    cd_mempool_pending_flush(s);
}

static void batch_free(mp_batch *b)
{
    for (int i = 0; i < P_N; i++)
        free(b->b[i].p);
    memset(b, 0, sizeof(*b));
}

/* Builds the batch from up to CD_MEMPOOL_BATCH txs at the queue's head and
 * frees them. */
static void batch_build(mp_state *s)
{
    mp_batch *bt = &s->batch;
    mp_buf *b = bt->b;
    size_t n = s->q_n < CD_MEMPOOL_BATCH ? s->q_n : CD_MEMPOOL_BATCH;
    memset(bt, 0, sizeof(*bt));
    for (int i = 0; i < P_N; i++)
        buf_add(&b[i], "{", is_array(i)); /* binary ones: empty, not NULL */
    for (size_t k = 0; k < n; k++) {
        mp_tx *t = &s->q[k];
        buf_add(&b[P_TXIDS], t->txid, 32);
        arr_add(&b[P_SIZES], t->size);
        buf_add(&b[P_RAWS], t->raw, t->size); /* split again by sizes in SQL */
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
        if (t->n_out)
            buf_add(&b[P_OUT_HASH], t->ohash, t->n_out * 32);
        if (t->oscr_len)
            buf_add(&b[P_OUT_SCR], t->oscr, t->oscr_len);
        for (size_t j = 0; j < t->n_out; j++) {
            arr_add(&b[P_OUT_TX], (uint32_t)k);
            arr_add64(&b[P_OUT_VAL], (int64_t)t->oval[j]);
            arr_add64(&b[P_OUT_SLEN], t->oslen[j]);
        }
        arr_add(&b[P_LOCKS], t->lock_time);
        const char *nf = t->seq_nonfinal ? ",t" : ",f";
        buf_add(&b[P_SEQNF], k ? nf : nf + 1, k ? 2 : 1);
        s->q_bytes -= t->size;
        cd_mempool_tx_free(t);
    }
    for (int i = 0; i < P_N; i++)
        if (is_array(i))
            buf_add(&b[i], "}", 1);
    memmove(s->q, s->q + n, (s->q_n - n) * sizeof(*s->q));
    s->q_n -= n;
    bt->n = n;
}

/* Writes the batch with one cd_mempool_add_txs_outputs call (one
 * statement, one transaction, one round trip: the txs, their rows and
 * outputs), which also keeps the table within mempool_max_txs /
 * mempool_max_bytes. */
static void batch_send(mp_state *s)
{
    char cap[24], bytes[24];
    snprintf(cap, sizeof(cap), "%" PRIu64, mp_cap(s));
    snprintf(bytes, sizeof(bytes), "%" PRIu64, s->cfg->mempool_max_bytes);
    const char *vals[P_N + 2];
    int lens[P_N + 2], fmts[P_N + 2];
    for (int i = 0; i < P_N; i++) {
        int binary = !is_array(i);
        vals[i] = s->batch.b[i].p;
        lens[i] = binary ? (int)s->batch.b[i].len : 0;
        fmts[i] = binary;
    }
    vals[P_N] = cap;
    vals[P_N + 1] = bytes;
    lens[P_N] = lens[P_N + 1] = 0;
    fmts[P_N] = fmts[P_N + 1] = 0;
    cd_mempool_send_params(s, OP_BATCH,
                           "SELECT accepted, known, conflicting, limited FROM "
                           "cd_mempool_add_txs_outputs($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                           "$11, $17, $18, $12, $13, $14, $15, $16)",
                           P_N + 2, vals, lens, fmts);
}

/* Expiry, size limits, eviction-record pruning (cd_mempool_housekeep), and
 * the event log's retention (cd_events_prune, sql/009) in the same round
 * trip: one statement, no second timer. */
static void house_send(mp_state *s)
{
    char v[5][24];
    snprintf(v[0], sizeof(v[0]), "%" PRIu64, (uint64_t)s->cfg->mempool_expiry_h * 3600);
    snprintf(v[1], sizeof(v[1]), "%" PRIu64, mp_cap(s));
    snprintf(v[2], sizeof(v[2]), "%" PRIu64, s->cfg->mempool_max_bytes);
    snprintf(v[3], sizeof(v[3]), "%" PRIu64, (uint64_t)s->cfg->mempool_evicted_keep_h * 3600);
    snprintf(v[4], sizeof(v[4]), "%" PRIu64, (uint64_t)s->cfg->events_keep_h * 3600);
    const char *vals[5] = {v[0], v[1], v[2], v[3], v[4]};
    cd_mempool_send_params(s, OP_HOUSE,
                           "SELECT expired, limited, pruned FROM cd_mempool_housekeep("
                           "$1, $2, $3, $4), cd_events_prune(make_interval(secs => $5))",
                           5, vals, NULL, NULL);
}

static void target_send(mp_state *s)
{
    const cd_hdr_node *tip = cd_hdrtree_tip(s->tree);
    s->target_dirty = 0;
    if (!tip)
        return;
    char h[16], mtp[16], low_mtp[16];
    snprintf(h, sizeof(h), "%d", (int)tip->height);
    /* the median time past the node's finality rule uses for the next
     * block (cd_mempool_after_reorg, sql/006) */
    snprintf(mtp, sizeof(mtp), "%u", (unsigned)cd_hdrtree_mtp(tip));
    if (s->low)
        snprintf(low_mtp, sizeof(low_mtp), "%u", (unsigned)cd_hdrtree_mtp(s->low));
    const char *vals[5] = {(const char *)tip->hash, h, mtp,
                           s->low ? (const char *)s->low->hash : NULL, s->low ? low_mtp : NULL};
    int lens[5] = {32, 0, 0, 32, 0};
    int fmts[5] = {1, 0, 0, 1, 0};
    cd_mempool_send_params(s, OP_TARGET,
                           "INSERT INTO chain_target (singleton, block_hash, height, mtp, "
                           "low_hash, low_mtp) VALUES (true, $1, $2, $3, $4, $5) "
                           "ON CONFLICT (singleton) DO UPDATE SET "
                           "block_hash = EXCLUDED.block_hash, height = EXCLUDED.height, "
                           "mtp = EXCLUDED.mtp, low_hash = EXCLUDED.low_hash, "
                           "low_mtp = EXCLUDED.low_mtp, updated_at = now()",
                           5, vals, lens, fmts);
}

/* Starts the next waiting operation if the connection is idle (connecting
 * first if it is down and the back-off has passed). */
void cd_mempool_dispatch(mp_state *s)
{
    if (s->cs == MP_DOWN) {
        if (cd_now_s() >= s->retry_at)
            cd_mempool_connect_start(s);
        return;
    }
    if (s->cs != MP_IDLE || cd_now_s() < s->hold_until)
        return;
    if (!s->schema_ok) {
        if (cd_now_s() >= s->schema_at)
            cd_mempool_send_query(s, OP_SCHEMA,
                                  "SELECT coalesce(max(version), 0) FROM cd_schema_version");
        return;
    }
    if (!s->ready) {
        cd_mempool_send_query(s, OP_TRUNCATE,
                              "TRUNCATE mempool_tx, mempool_inputs, mempool_pushdata");
        return;
    }
    if (s->target_dirty && cd_hdrtree_tip(s->tree)) {
        target_send(s);
        return;
    }
    s->target_dirty = 0;
    if (s->step_req) {
        s->step_req = 0;
        cd_mempool_send_query(s, OP_STEP, "SELECT cd_reorg_step()");
        return;
    }
    if (s->tip_req || s->tip_poll) {
        s->tip_log = s->tip_req;
        s->tip_req = s->tip_poll = 0;
        cd_mempool_send_query(s, OP_TIP,
                              "SELECT i.height, cd_txid_hex(b.block_hash) FROM index_tip i "
                              "JOIN blocks b USING (block_id)");
        return;
    }
    if (cd_mempool_sync_dispatch(s))
        return;
    if (s->house_req) {
        s->house_req = 0;
        house_send(s);
        return;
    }
    if (!s->batch.n && s->q_n)
        batch_build(s);
    if (s->batch.n)
        batch_send(s);
}

/* The statement of `op` did not complete: down = the connection was lost
 * (requeue everything), else an SQL error (logged by op_done). */
void cd_mempool_op_failed(mp_state *s, mp_op op, int down)
{
    switch (op) {
    case OP_TARGET:
        s->target_dirty = 1;
        break;
    case OP_STEP:
        s->step_req = 1;
        break;
    case OP_TIP:
        s->tip_req = down;
        break;
    case OP_BATCH:
        if (!down)
            batch_free(&s->batch); /* an SQL error: the batch is dropped (logged) */
        break;                     /* down: resent after the reconnect */
    case OP_RECONCILE:
        cd_mempool_sync_reconciled(s, NULL); /* the snapshot is dropped */
        break;
    default:
        break;
    }
}

static void schema_done(mp_state *s, PGresult *r)
{
    int v = 0;
    if (cd_mempool_res_ok(r) && PQntuples(r) == 1)
        v = atoi(PQgetvalue(r, 0, 0));
    else if (!r || !PQresultErrorField(r, PG_DIAG_SQLSTATE) ||
             strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE), "42P01") != 0)
        cd_log_warn("mempool: reading the schema version failed: %s", cd_mempool_res_err(r));
    if (v >= cd_pg_schema_latest) {
        s->schema_ok = 1;
        return;
    }
    if (++s->schema_checks < MP_SCHEMA_WAIT) {
        s->schema_at = cd_now_s() + MP_SCHEMA_EVERY_S; /* the parser workers migrate it */
        return;
    }
    /* nobody migrated it: do it here, once (blocking, setup only) */
    cd_log_info("mempool: schema at version %d, migrating to %d", v, cd_pg_schema_latest);
    cd_pg *pg = cd_pg_new(s->cfg, NULL);
    cd_pg_set_retry(pg, 1, 100, NULL);
    int rc = cd_pg_migrate(pg);
    cd_pg_free(pg);
    if (rc == CD_PG_OK)
        s->schema_ok = 1;
    else
        s->schema_at = cd_now_s() + MP_BACKOFF_MAX_S;
}

static void step_done(mp_state *s, PGresult *r)
{
    double ms = (cd_now_s() - s->op_t0) * 1e3;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        cd_log_warn("reorg: cd_reorg_step failed: %s", cd_mempool_res_err(r));
        s->step_due = 1;
        return;
    }
    s->step_due = 0;
    char res[64];
    snprintf(res, sizeof(res), "%s", PQgetvalue(r, 0, 0));
    int fork = 0, leave = 0, join = 0;
    int reorg = sscanf(res, "reorg %d %d %d", &fork, &leave, &join) == 3;
    if (!s->synced && (reorg || strcmp(res, "switched") == 0 || strcmp(res, "at") == 0))
        start_relay(s);
    if (reorg && s->synced) {
        cd_mempool_sync_stale(s);      /* a snapshot asked before it is dropped */
        cd_mempool_sync_want(s, NULL); /* compare with the node's mempool after it */
    }
    if (reorg && s->low) { /* applied by this switch (or stale): forgotten */
        s->low = NULL;
        s->target_dirty = 1;
    }
    if (reorg || strcmp(res, "switched") == 0) {
        /* the new tip, read after the step's transaction committed */
        s->tip_req = 1;
        s->sw_reorg = reorg;
        s->sw_fork = fork;
        s->sw_leave = leave;
        s->sw_join = join;
        s->sw_ms = ms;
    } else if (strcmp(res, "at") != 0) {
        s->step_due = 1; /* waiting for blocks: try again next tick */
    }
}

static void tip_done(mp_state *s, PGresult *r)
{
    const char *h = "?", *hash = "?";
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        h = PQgetvalue(r, 0, 0);
        hash = PQgetvalue(r, 0, 1);
        s->indexed_height = (int32_t)atol(h);
    } else if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        s->indexed_height = -1; /* no tip yet */
    }
    if (!s->tip_log)
        return; /* a status poll */
    if (s->sw_reorg)
        cd_log_info("reorg: indexed best chain switched: fork height=%d leaving=%d "
                    "joining=%d new tip=%s height=%s (one transaction, %.1f ms)",
                    s->sw_fork, s->sw_leave, s->sw_join, hash, h, s->sw_ms);
    else
        cd_log_debug("reorg: indexed tip moved to %s height=%s", hash, h);
}

static void batch_done(mp_state *s, PGresult *r)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        cd_log_warn("mempool: writing %zu txs failed: %s", s->batch.n, cd_mempool_res_err(r));
    } else {
        uint64_t acc = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        s->accepted += acc;
        s->known += strtoull(PQgetvalue(r, 0, 1), NULL, 10);
        s->conflicted += strtoull(PQgetvalue(r, 0, 2), NULL, 10);
        s->limited += strtoull(PQgetvalue(r, 0, 3), NULL, 10);
        cd_log_debug("mempool: wrote %zu txs in %.1f ms (%" PRIu64 " new)", s->batch.n,
                     (cd_now_s() - s->op_t0) * 1e3, acc);
    }
    batch_free(&s->batch);
}

static void house_done(mp_state *s, PGresult *r)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        cd_log_warn("mempool: housekeeping failed: %s", cd_mempool_res_err(r));
        return;
    }
    uint64_t ex = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    uint64_t lim = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    s->expired += ex;
    s->limited += lim;
    if (ex || lim)
        cd_log_info("mempool: %" PRIu64 " txs expired (older than %u h), %" PRIu64
                    " evicted by the size limits",
                    ex, (unsigned)s->cfg->mempool_expiry_h, lim);
}

/* A statement completed (r: its first result, NULL if none). */
void cd_mempool_op_done(mp_state *s, mp_op op, PGresult *r)
{
    if (PQstatus(s->c) != CONNECTION_OK) {
        s->cs = MP_BUSY;
        s->op = op;
        cd_mempool_conn_lost(s, "lost");
        return;
    }
    if (op != OP_SCHEMA && !cd_mempool_res_ok(r))
        s->hold_until = cd_now_s() + MP_ERROR_HOLD_S; /* no tight retry loop */
    switch (op) {
    case OP_SCHEMA:
        schema_done(s, r);
        break;
    case OP_TRUNCATE:
        if (!cd_mempool_res_ok(r)) {
            cd_log_warn("mempool: emptying the mempool tables failed: %s", cd_mempool_res_err(r));
            break;
        }
        s->ready = 1;
        s->target_dirty = 1;
        s->step_req = 1;
        cd_log_info("mempool: index connection ready (mempool tables emptied, relay %s)",
                    s->cfg->relay ? "on" : "off");
        break;
    case OP_TARGET:
        if (!cd_mempool_res_ok(r)) {
            cd_log_warn("reorg: writing chain_target failed: %s", cd_mempool_res_err(r));
            s->target_dirty = 1;
        }
        break;
    case OP_STEP:
        step_done(s, r);
        break;
    case OP_TIP:
        tip_done(s, r);
        break;
    case OP_BATCH:
        batch_done(s, r);
        break;
    case OP_HOUSE:
        house_done(s, r);
        break;
    case OP_RECONCILE:
        cd_mempool_sync_reconciled(s, r);
        break;
    default:
        break;
    }
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

/* ---- peer events (the controller's peers) ---- */

/* The slot of a peer's announced tip, made if `make` and one is free. */
static size_t ann_slot(mp_state *s, const cp2p_peer *peer, int make)
{
    size_t k, fr = CD_CONFIG_MAX_CONNECT;
    for (k = 0; k < CD_CONFIG_MAX_CONNECT; k++) {
        if (s->ann[k].peer == peer)
            return k;
        if (!s->ann[k].peer && fr == CD_CONFIG_MAX_CONNECT)
            fr = k;
    }
    if (make && fr < CD_CONFIG_MAX_CONNECT) {
        s->ann[fr].peer = peer;
        s->ann[fr].tip = NULL;
        s->ann[fr].start_height = -1;
    }
    return make ? fr : CD_CONFIG_MAX_CONNECT;
}

static void on_ready(const cp2p_ctx *ctx, const cp2p_version *their)
{
    mp_state *s = ctx->user;
    if (!s)
        return;
    size_t k = ann_slot(s, ctx->peer, 1);
    if (k < CD_CONFIG_MAX_CONNECT) { /* a new connection: its tip is not known yet */
        s->ann[k].tip = NULL;
        s->ann[k].start_height = their ? their->start_height : -1;
    }
    if (!cd_mempool_relaying(s))
        return;
    /* a (re)connect: compare with the node's mempool (if it allows it) */
    cd_mempool_sync_want(s, cp2p_peer_name(ctx->peer));
}

/* The node of a peer went back (or stayed behind) to `f`, a block of our
 * best chain: remembered as the fork point whose rules also apply at the
 * next switch (the lowest one wins until then). */
static void peer_back_at(mp_state *s, const cp2p_ctx *ctx, const cd_hdr_node *f, const char *how)
{
    if (s->low && s->low->height <= f->height)
        return;
    s->low = f;
    s->target_dirty = 1;
    cd_log_info("mempool: peer %s %s; the node's mempool rules are applied at the fork too when "
                "the index switches to a branch from there",
                cp2p_peer_name(ctx->peer), how);
}

/* A peer's announced tip (the last header of a `headers` message) that
 * does not extend the tip it announced before and has no more work: its
 * node went back (invalidateblock) and evaluated its mempool at the fork
 * point, not at the new tip as after a reorg to more work (bitcoin-sv
 * src/validation.cpp UpdateMempoolForReorg, src/txmempool.cpp
 * RemoveForReorg). The fork point with our best chain is remembered and
 * the rules are applied there too when the index switches (sql/006). */
static void on_headers(const cp2p_ctx *ctx, const uint8_t *hdrs, size_t n)
{
    mp_state *s = ctx->user;
    if (!s || !s->tree)
        return;
    char how[192];
    if (n == 0) {
        /* The answer to the getheaders of a (re)connect when the peer's
         * node has nothing after our locator: its tip is the block of our
         * best chain at its `version` height. That is the tip a later
         * announcement is compared with (without it, an invalidateblock
         * announced after a reconnect went unnoticed: test_mempool_mirror.py
         * ::test_invalidateblock_after_a_reconnect). Below our tip it went
         * back while disconnected, or is behind: its mempool was evaluated
         * there either way. */
        size_t k = ann_slot(s, ctx->peer, 0);
        const cd_hdr_node *best = cd_hdrtree_tip(s->tree);
        if (k == CD_CONFIG_MAX_CONNECT || s->ann[k].tip || !best || s->ann[k].start_height < 0 ||
            s->ann[k].start_height > best->height)
            return;
        const cd_hdr_node *at = cd_hdrtree_ancestor(s->tree, best, s->ann[k].start_height);
        s->ann[k].tip = at;
        if (at && at != best) {
            snprintf(how, sizeof(how),
                     "is at height %d, below the best tip at %d, after a reconnect (it went "
                     "back while disconnected, invalidateblock?, or is behind; fork height %d)",
                     (int)at->height, (int)best->height, (int)at->height);
            peer_back_at(s, ctx, at, how);
        }
        return;
    }
    uint8_t h[32];
    btc_header_hash(hdrs + 80 * (n - 1), h);
    const cd_hdr_node *x = cd_hdrtree_find(s->tree, h);
    if (!x)
        return;
    size_t k = ann_slot(s, ctx->peer, 1);
    if (k == CD_CONFIG_MAX_CONNECT)
        return;
    const cd_hdr_node *t = s->ann[k].tip;
    s->ann[k].tip = x;
    if (!t || x == t || cd_hdrtree_ancestor(s->tree, x, t->height) == t ||
        memcmp(x->work, t->work, 32) > 0)
        return;
    const cd_hdr_node *f = x;
    while (f && !cd_hdrtree_on_best(s->tree, f))
        f = f->prev;
    if (!f)
        return;
    snprintf(how, sizeof(how),
             "moved its tip back to a branch without more work (height %d, fork height %d: "
             "invalidateblock?)",
             (int)x->height, (int)f->height);
    peer_back_at(s, ctx, f, how);
}

static void on_disconnect(const cp2p_ctx *ctx, cp2p_reason reason, const char *detail)
{
    (void)reason;
    (void)detail;
    mp_state *s = ctx->user;
    if (s && s->req)
        cd_mempool_requests_end(s, ctx->peer, NULL, 0);
    if (s)
        cd_mempool_pending_forget(s, ctx->peer);
    for (size_t k = 0; s && k < CD_CONFIG_MAX_CONNECT; k++)
        if (s->ann[k].peer == ctx->peer)
            s->ann[k].peer = NULL, s->ann[k].tip = NULL;
}

static void on_inv(const cp2p_ctx *ctx, const cp2p_inv *inv, size_t n)
{
    mp_state *s = ctx->user;
    if (!cd_mempool_relaying(s)) {
        if (s && s->cfg->index && s->cfg->relay && !s->synced)
            cd_mempool_pending_add(s, ctx->peer, inv, n);
        return;
    }
    uint8_t(*tx)[32] = NULL;
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        if (inv[i].type != CP2P_INV_TX)
            continue;
        if (!tx)
            tx = cd_xmalloc(n * 32);
        memcpy(tx[nt++], inv[i].hash, 32);
    }
    if (!nt)
        return;
    size_t asked = cd_mempool_request(s, ctx->peer, (const uint8_t(*)[32])tx, nt, MP_ASK_INV);
    cd_log_debug("mempool: inv of %zu from %s: asking for %zu txs", n, cp2p_peer_name(ctx->peer),
                 asked);
    free(tx);
}

static void on_notfound(const cp2p_ctx *ctx, const cp2p_inv *inv, size_t n)
{
    mp_state *s = ctx->user;
    if (s && s->req)
        cd_mempool_requests_end(s, ctx->peer, inv, n);
}

static void on_tx(const cp2p_ctx *ctx, const uint8_t *raw, size_t len, const uint8_t txid[32])
{
    mp_state *s = ctx->user;
    if (!s || !s->req)
        return;
    cd_mempool_intake(s, ctx->peer, raw, len, txid);
}

/* ---- timers, chain events ---- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mp_state *s = arg;
    s->ticks++;
    if (s->cs == MP_CONNECTING && cd_now_s() > s->connect_deadline)
        cd_mempool_conn_lost(s, "timed out");
    if (s->step_due || s->ticks % MP_STEP_EVERY == 0)
        s->step_req = 1;
    /* the status shows the height the best-chain views show, read from
     * index_tip, never a count of blocks the pipeline finished (issue 11,
     * F1: a block can finish in the pipeline and still not be indexed) */
    if (s->schema_ok && s->cfg->index)
        s->tip_poll = 1;
    if (cd_mempool_relaying(s) && s->ready && cd_now_s() >= s->house_at) {
        s->house_at = cd_now_s() + MP_HOUSE_EVERY_S;
        s->house_req = 1;
    }
    cd_mempool_relay_tick(s);
    cd_mempool_sync_tick(s);
    cd_mempool_dispatch(s);
    log_progress(s, 0);
}

static void on_best_chain(void *state, const cd_hdrtree_tip_event *ev)
{
    (void)ev;
    mp_state *s = state;
    if (!s || !s->cfg->index)
        return;
    s->target_dirty = 1;
    s->step_req = 1; /* coalesces with one already queued */
    cd_mempool_dispatch(s);
}

/* ---- module ---- */

static int mod_init(cd_ctl *ctl, void **state)
{
    mp_state *s = cd_xcalloc(1, sizeof(*s));
    s->ctl = ctl;
    s->cfg = cd_ctl_config(ctl);
    s->base = cd_ctl_base(ctl);
    s->indexed_height = -1;
    *state = s;
    return 0;
}

/* The indexed height as the best-chain views show it (index_tip). */
static void mod_progress(void *state, cd_ctl_progress *out)
{
    mp_state *s = state;
    if (s->cfg->index)
        out->indexed_height = s->indexed_height;
    memcpy(out->mempool_refused, s->refused, sizeof(out->mempool_refused));
}

static int mod_start(void *state)
{
    mp_state *s = state;
    if (!s->cfg->index)
        return 0;
    s->tree = cd_ctl_tree(s->ctl);
    s->opts.data_pushes = s->cfg->index_data_pushes;
    s->opts.data_max_len = s->cfg->max_data_push;
    cd_mempool_relay_init(s);
    if (cd_mempool_sync_start(s) != 0)
        return -1;
    s->cs = MP_DOWN;
    s->backoff = MP_BACKOFF_MIN_S;
    s->target_dirty = 1;
    s->step_req = 1;
    cd_mempool_dispatch(s); /* starts connecting; the socket events and the tick do the rest */
    s->tick = event_new(s->base, -1, EV_PERSIST, tick_cb, s);
    struct timeval tv = {0, MP_TICK_MS * 1000};
    event_add(s->tick, &tv);
    return 0;
}

/* At shutdown a statement in flight is cancelled (a reorg step rolls back
 * and is recomputed at the next start; the mempool tables are emptied at
 * start anyway, so queued txs are not written). */
static void mod_fini(void *state)
{
    mp_state *s = state;
    if (!s)
        return;
    if (s->tick)
        event_free(s->tick);
    cd_mempool_sync_fini(s);
    cd_mempool_unwatch(s);
    if (s->c) {
        if (s->cs == MP_BUSY) {
            PGcancel *cn = PQgetCancel(s->c);
            char err[256];
            if (cn) {
                PQcancel(cn, err, sizeof(err));
                PQfreeCancel(cn);
            }
        }
        PQfinish(s->c);
    }
    if (s->res)
        PQclear(s->res);
    if (s->q_n || s->batch.n)
        cd_log_info("mempool: %zu relayed txs not written at shutdown", s->q_n + s->batch.n);
    log_progress(s, 1);
    batch_free(&s->batch);
    for (size_t i = 0; i < s->q_n; i++)
        cd_mempool_tx_free(&s->q[i]);
    free(s->q);
    if (s->req)
        cd_mempool_relay_fini(s);
    free(s);
}

const cd_ctl_module cd_mempool_module = {
    .name = "mempool",
    .init = mod_init,
    .start = mod_start,
    .fini = mod_fini,
    .handlers = {.on_ready = on_ready,
                 .on_disconnect = on_disconnect,
                 .on_headers = on_headers,
                 .on_inv = on_inv,
                 .on_notfound = on_notfound,
                 .on_tx = on_tx},
    .on_best_chain = on_best_chain,
    .progress = mod_progress,
};
