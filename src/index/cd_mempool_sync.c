/*
 * cd_mempool_sync.c - the node's mempool, read without ever risking the
 * peer connections: whether an address answers `mempool` (the probe), and
 * snapshots of its mempool that the index is reconciled with (issue 13
 * sections 1 and 2).
 *
 * Why a second connection: a Bitcoin SV node disconnects a peer that sends
 * `mempool` unless it is whitelisted (-rejectmempoolrequest defaults to 1;
 * with it 0, -peerbloomfilters=1 is needed too). The refusal adds no ban
 * score: ProcessMempoolMessage only sets fDisconnect (bitcoin-sv
 * src/net/net_processing.cpp; log line "mempool request from nonwhitelisted
 * peer disabled, disconnect peer=N"). conduitd used to send it on the
 * connection it syncs on and was dropped every ~1.25 s forever. Now
 * `mempool` is only ever sent on a short-lived connection of its own, from
 * a separate cp2p manager (relay flag 0, no reconnect), to the same address:
 *
 *   connect, handshake -> `mempool`, ping
 *     pong first            allowed (the node processes a peer's messages in
 *                           order and stops at fDisconnect): collect the
 *                           `inv`s that answer it, wait MP_SNAP_SETTLE_S for
 *                           a trickled tail, ping again; its pong ends the
 *                           snapshot
 *     closed before the pong refused: with mempool_request=auto remembered in
 *                           <datadir>/mempool_refused (one line per address)
 *                           and never asked again; one WARN naming the fix
 *     anything else         inconclusive (e.g. the node is down): retried with
 *                           a doubling delay, MP_PROBE_BACKOFF_MIN..MAX
 *   snapshot -> cd_mempool_reconcile (sql/006): rows it lacks, older than the
 *   request minus mempool_sync_grace, are evicted (not-in-node-mempool); the
 *   txids PostgreSQL lacks are asked on the same connection (getdata, in
 *   chunks, each closed by a ping) - the node serves mempool txs older than
 *   the `mempool` request there - then the connection is closed.
 *
 * When: once the index reached the tip, after every reorg, whenever a
 * peer connection becomes ready, and every mempool_sync_interval seconds;
 * one session at a time. mempool_request=never: none; always: refusals are
 * logged but not remembered.
 */
#include "cd_mempool.h"
#include "cd_mempool_int.h"

#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NEVER 1e300

static int want_snapshots(const mp_state *s)
{
    return s->side && cd_mempool_relaying(s) && s->cfg->mempool_request != CD_MEMPOOL_REQ_NEVER;
}

/* ---- addresses and the refusal file ---- */

static mp_addr *addr_get(mp_state *s, const char *name, int add)
{
    for (size_t i = 0; i < s->n_addrs; i++)
        if (strcmp(s->addrs[i].name, name) == 0)
            return &s->addrs[i];
    if (!add || s->n_addrs == MP_ADDRS_MAX || strlen(name) >= sizeof(s->addrs[0].name))
        return NULL;
    mp_addr *a = &s->addrs[s->n_addrs++];
    memset(a, 0, sizeof(*a));
    snprintf(a->name, sizeof(a->name), "%s", name);
    a->backoff = MP_PROBE_BACKOFF_MIN;
    return a;
}

static void refused_path(const mp_state *s, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", s->cfg->datadir, MP_REFUSED_FILE);
}

static void refused_load(mp_state *s)
{
    char path[4096], line[512];
    refused_path(s, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        char name[128];
        if (line[0] == '#' || sscanf(line, "%127s", name) != 1)
            continue;
        mp_addr *a = addr_get(s, name, 1);
        if (a)
            a->allow = MPA_REFUSED;
    }
    fclose(f);
}

/* Rewrites the file with every refused address (atomically: tmp + rename). */
static void refused_save(mp_state *s)
{
    char path[4096], tmp[4200];
    refused_path(s, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        cd_log_warn("mempool: cannot write %s: %s", tmp, strerror(errno));
        return;
    }
    fprintf(f, "# Nodes that refused conduitd's `mempool` request (mempool_request=auto):\n"
               "# conduitd does not ask them again. Delete a line (or the file) and restart\n"
               "# conduitd after allowing it on the node (docs/OPERATIONS.md).\n");
    for (size_t i = 0; i < s->n_addrs; i++)
        if (s->addrs[i].allow == MPA_REFUSED)
            fprintf(f, "%s %lld\n", s->addrs[i].name, (long long)time(NULL));
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        cd_log_warn("mempool: cannot write %s: %s", path, strerror(errno));
}

static int is_loopback(const char *name)
{
    return strncmp(name, "127.", 4) == 0 || strncmp(name, "localhost", 9) == 0 ||
           strncmp(name, "[::1]", 5) == 0;
}

/* The one WARN per address and run: what is lost, what fixes it. */
static void warn_refused(mp_state *s, mp_addr *a, const char *ua)
{
    if (a->warned)
        return;
    a->warned = 1;
    int remembered = s->cfg->mempool_request == CD_MEMPOOL_REQ_AUTO;
    cd_log_warn("mempool: node %s%s%s%s refuses `mempool` requests from conduitd (it closed a "
                "separate probe connection; the connection conduitd syncs on never sends it). "
                "conduitd %s and indexes only the txs the node relays: txs that were already in "
                "the node's mempool when conduitd connected are missing until they are mined, "
                "and rows the node drops are evicted only by conduitd's own rules. Fix on the "
                "node, in bitcoin.conf: whitelist=%s (or rejectmempoolrequest=0 with "
                "peerbloomfilters=1), restart it%s",
                a->name, ua ? " (" : "", ua ? ua : "", ua ? ")" : "",
                remembered ? "will not ask it again (remembered in " MP_REFUSED_FILE ")"
                           : "asks again at the next snapshot (mempool_request=always)",
                is_loopback(a->name) ? "127.0.0.1" : "<the address conduitd connects from>",
                remembered ? ", then delete its line from the data directory's " MP_REFUSED_FILE
                             " and restart conduitd"
                           : "");
}

/* The addresses of the controller's peers (the snapshot targets). */
static void addrs_sync(mp_state *s)
{
    cp2p_mgr *mgr = cd_ctl_mgr(s->ctl);
    size_t n = mgr ? cp2p_mgr_peer_count(mgr) : 0;
    for (size_t i = 0; i < n; i++) {
        cp2p_peer *p = cp2p_mgr_peer_at(mgr, i);
        mp_addr *a = p ? addr_get(s, cp2p_peer_name(p), 1) : NULL;
        if (a && a->allow == MPA_REFUSED && s->cfg->mempool_request == CD_MEMPOOL_REQ_AUTO)
            warn_refused(s, a, NULL);
    }
}

void cd_mempool_sync_want(mp_state *s, const char *name)
{
    if (!want_snapshots(s))
        return;
    addrs_sync(s);
    for (size_t i = 0; i < s->n_addrs; i++)
        if (!name || strcmp(s->addrs[i].name, name) == 0)
            s->addrs[i].want = 1;
}

/* ---- the session ---- */

static void sess_end(mp_state *s, int ok)
{
    mp_sess *se = &s->sess;
    mp_addr *a = se->a;
    cp2p_peer *p = se->peer;
    se->phase = SP_NONE; /* before the remove: its on_disconnect is ours */
    se->peer = NULL;
    if (p)
        cp2p_peer_remove(p);
    if (a) {
        double now = cd_now_s();
        if (ok) {
            a->backoff = MP_PROBE_BACKOFF_MIN;
            a->fail_logged = 0;
            a->retry_at = 0;
        }
        a->next_at =
            s->cfg->mempool_sync_interval_s ? now + s->cfg->mempool_sync_interval_s : NEVER;
    }
    free(se->snap);
    free(se->miss);
    memset(se, 0, sizeof(*se));
}

/* A reorg of the index (called before cd_mempool_sync_want asks for the
 * snapshot after it): a snapshot whose `mempool` was answered before it
 * lists what the node held then, and its missing txs, fetched now, come
 * from the node's relay memory even where the node has dropped them since
 * (non-final or immature at the new tip): they stayed in mempool_tx until
 * a later snapshot, younger than mempool_sync_grace at the next
 * (test_mempool_mirror.py::test_reorg_converges_to_node_mempool failed so,
 * 1 run in 4; test_snapshot_answered_before_a_reorg_is_dropped makes the
 * node hold the snapshot's pong across the reorg). Such a session ends
 * unused; the reconcile statement in flight still evicts (what the node
 * lacked then is gone anyway) but fetches nothing. */
void cd_mempool_sync_stale(mp_state *s)
{
    mp_sess *se = &s->sess;
    if (se->phase == SP_NONE || se->phase == SP_CONNECTING)
        return; /* no `mempool` sent yet */
    cd_log_info("mempool: snapshot of %s dropped unused: the best chain switched while it ran",
                se->a ? se->a->name : "?");
    if (se->phase == SP_RECONCILE) {
        se->stale = 1; /* cd_mempool_sync_reconciled ends it */
        return;
    }
    sess_end(s, 1);
}

/* The session did not tell anything (no handshake, cut, timed out). */
static void sess_inconclusive(mp_state *s, const char *why)
{
    mp_addr *a = s->sess.a;
    if (a) {
        a->want = 1; /* still wanted */
        /* jitter (0.8..1.2): several conduitds behind one node do not probe in step */
        a->retry_at = cd_now_s() + a->backoff * (0.8 + 0.4 * ((double)rand() / RAND_MAX));
        if (!a->fail_logged)
            cd_log_info("mempool: snapshot connection to %s: %s; retrying with back-off "
                        "(%.0f s, doubling up to %.0f s)",
                        a->name, why, a->backoff, MP_PROBE_BACKOFF_MAX);
        a->fail_logged = 1;
        a->backoff = a->backoff * 2 > MP_PROBE_BACKOFF_MAX ? MP_PROBE_BACKOFF_MAX : a->backoff * 2;
    }
    sess_end(s, 0);
}

static void sess_start(mp_state *s, mp_addr *a)
{
    mp_sess *se = &s->sess;
    memset(se, 0, sizeof(*se));
    a->want = 0;
    se->a = a;
    se->deadline = cd_now_s() + MP_SESS_TIMEOUT_S;
    se->phase = SP_CONNECTING;
    se->t_phase = cd_now_s();
    int rc = cp2p_mgr_add_peer(s->side, a->name, &se->peer);
    if (rc != CP2P_OK) {
        se->peer = NULL;
        sess_inconclusive(s, cp2p_strerror(rc));
    }
}

static void fetch_next(mp_state *s)
{
    mp_sess *se = &s->sess;
    if (se->miss_off >= se->miss_n) {
        cd_log_info("mempool: snapshot of %s done: %zu txs in the node's mempool, %" PRIu64
                    " rows evicted (not in it), %zu missing txs asked for",
                    se->a ? se->a->name : "?", se->snap_n, se->evicted, se->fetched);
        sess_end(s, 1);
        return;
    }
    size_t k = se->miss_n - se->miss_off;
    if (k > MP_FETCH_CHUNK)
        k = MP_FETCH_CHUNK;
    se->deadline = cd_now_s() + MP_SESS_TIMEOUT_S; /* per chunk: a large fetch is progress */
    se->fetched += cd_mempool_request(
        s, se->peer, (const uint8_t(*)[32])(se->miss + se->miss_off * 32), k, MP_ASK_FETCH);
    se->miss_off += k;
    /* its pong: every tx of the chunk was answered. A ping not sent means the
     * peer is being dropped; side_disconnect ends the session. */
    CD_IGNORE(cp2p_peer_ping(se->peer));
}

int cd_mempool_sync_dispatch(mp_state *s)
{
    mp_sess *se = &s->sess;
    if (se->phase != SP_RECONCILE || se->sql_sent)
        return 0;
    if (se->overflow) {
        cd_log_warn("mempool: the mempool of %s holds more than mempool_max_txs txs: not "
                    "reconciled with it",
                    se->a ? se->a->name : "?");
        sess_end(s, 1);
        return 0;
    }
    se->sql_sent = 1;
    char age[32];
    snprintf(age, sizeof(age), "%.3f", cd_now_s() - se->t_req + s->cfg->mempool_sync_grace_s);
    const char *vals[2] = {se->snap_n ? (const char *)se->snap : "", age};
    int lens[2] = {(int)(se->snap_n * 32), 0};
    int fmts[2] = {1, 0};
    cd_mempool_send_params(s, OP_RECONCILE,
                           "SELECT evicted, missing FROM cd_mempool_reconcile($1, "
                           "now() - make_interval(secs => $2::double precision))",
                           2, vals, lens, fmts);
    return 1;
}

void cd_mempool_sync_reconciled(mp_state *s, PGresult *r)
{
    mp_sess *se = &s->sess;
    if (se->phase != SP_RECONCILE)
        return;
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        if (r)
            cd_log_warn("mempool: reconciling with the node's mempool failed: %s",
                        cd_mempool_res_err(r));
        sess_end(s, 0);
        return;
    }
    se->evicted = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    s->evicted_snap += se->evicted;
    const char *hex = PQgetvalue(r, 0, 1); /* bytea, text form "\x..." */
    size_t hl = strlen(hex);
    if (hl >= 2 && hex[0] == '\\' && hex[1] == 'x' && (hl - 2) % 64 == 0 && hl > 2) {
        se->miss_n = (hl - 2) / 64;
        se->miss = cd_xmalloc(se->miss_n * 32);
        if (cd_hex_decode(se->miss, se->miss_n * 32, hex + 2) != 0)
            se->miss_n = 0;
    }
    if (!se->peer || se->stale) { /* the connection was cut, or a reorg came, meanwhile */
        sess_end(s, 1);
        return;
    }
    se->phase = SP_FETCH;
    se->t_phase = cd_now_s();
    fetch_next(s);
}

void cd_mempool_sync_tick(mp_state *s)
{
    if (!s->side)
        return;
    mp_sess *se = &s->sess;
    double now = cd_now_s();
    if (se->phase != SP_NONE) {
        if (now > se->deadline && se->phase != SP_RECONCILE)
            sess_inconclusive(s, "timed out");
        else if (se->phase == SP_SETTLE && now - se->t_phase >= MP_SNAP_SETTLE_S) {
            se->phase = SP_PING2;
            se->t_phase = now;
            CD_IGNORE(cp2p_peer_ping(se->peer)); /* not sent: side_disconnect follows */
        }
        return;
    }
    if (!want_snapshots(s))
        return;
    addrs_sync(s);
    for (size_t i = 0; i < s->n_addrs; i++) {
        mp_addr *a = &s->addrs[i];
        if (a->allow == MPA_REFUSED && s->cfg->mempool_request == CD_MEMPOOL_REQ_AUTO)
            continue;
        if (now < a->retry_at)
            continue;
        if (!a->want && !(a->next_at > 0 && now >= a->next_at))
            continue;
        sess_start(s, a);
        return;
    }
}

/* ---- the side manager's handlers ---- */

static mp_state *side_state(const cp2p_ctx *ctx)
{
    mp_state *s = ctx->user;
    return s && s->sess.phase != SP_NONE && s->sess.peer == ctx->peer ? s : NULL;
}

static void side_ready(const cp2p_ctx *ctx, const cp2p_version *their)
{
    (void)their;
    mp_state *s = side_state(ctx);
    if (!s || s->sess.phase != SP_CONNECTING)
        return;
    /* `mempool`, then a ping: its pong can only come if `mempool` did not
     * end the connection */
    if (cp2p_peer_send(ctx->peer, "mempool", NULL, 0) != CP2P_OK ||
        cp2p_peer_ping(ctx->peer) != CP2P_OK) {
        sess_inconclusive(s, "could not send");
        return;
    }
    s->sess.phase = SP_ASKED;
    s->sess.t_req = s->sess.t_phase = cd_now_s();
}

static void side_pong(const cp2p_ctx *ctx, uint64_t nonce, int64_t rtt_us)
{
    (void)nonce;
    (void)rtt_us;
    mp_state *s = side_state(ctx);
    if (!s)
        return;
    mp_sess *se = &s->sess;
    switch (se->phase) {
    case SP_ASKED:
        if (se->a->allow != MPA_ALLOWED)
            cd_log_info("mempool: node %s answers `mempool`: its mempool is mirrored (a "
                        "snapshot after every reorg and (re)connect%s)",
                        se->a->name, s->cfg->mempool_sync_interval_s ? " and periodically" : "");
        if (se->a->allow == MPA_REFUSED && s->cfg->mempool_request == CD_MEMPOOL_REQ_AUTO)
            break; /* not reached: refused addresses are not asked */
        se->a->allow = MPA_ALLOWED;
        se->phase = SP_SETTLE;
        se->t_phase = cd_now_s();
        break;
    case SP_PING2:
        se->phase = SP_RECONCILE;
        se->t_phase = cd_now_s();
        cd_mempool_dispatch(s);
        break;
    case SP_FETCH:
        fetch_next(s);
        break;
    default:
        break;
    }
}

static void side_inv(const cp2p_ctx *ctx, const cp2p_inv *inv, size_t n)
{
    mp_state *s = side_state(ctx);
    if (!s)
        return;
    mp_sess *se = &s->sess;
    if (se->phase != SP_ASKED && se->phase != SP_SETTLE && se->phase != SP_PING2)
        return;
    size_t limit =
        (size_t)(s->cfg->mempool_max_txs ? s->cfg->mempool_max_txs : CD_MEMPOOL_DEFAULT_CAP) + 1024;
    for (size_t i = 0; i < n && !se->overflow; i++) {
        if (inv[i].type != CP2P_INV_TX)
            continue;
        if (se->snap_n >= limit) {
            se->overflow = 1; /* incomplete: never used to evict */
            break;
        }
        if (se->snap_n == se->snap_cap) {
            se->snap_cap = se->snap_cap ? 2 * se->snap_cap : 1024;
            se->snap = cd_xrealloc(se->snap, se->snap_cap * 32);
        }
        memcpy(se->snap + se->snap_n * 32, inv[i].hash, 32);
        se->snap_n++;
    }
}

static void side_tx(const cp2p_ctx *ctx, const uint8_t *raw, size_t len, const uint8_t txid[32])
{
    mp_state *s = ctx->user;
    cd_mempool_intake(s, ctx->peer, raw, len, txid);
}

static void side_notfound(const cp2p_ctx *ctx, const cp2p_inv *inv, size_t n)
{
    mp_state *s = ctx->user;
    cd_mempool_requests_end(s, ctx->peer, inv, n);
}

static void side_disconnect(const cp2p_ctx *ctx, cp2p_reason reason, const char *detail)
{
    mp_state *s0 = ctx->user;
    cd_mempool_requests_end(s0, ctx->peer, NULL, 0);
    mp_state *s = side_state(ctx);
    if (!s)
        return;
    mp_sess *se = &s->sess;
    if (se->phase == SP_ASKED &&
        (reason == CP2P_R_EOF || reason == CP2P_R_IO || reason == CP2P_R_TRUNCATED)) {
        mp_addr *a = se->a;
        const cp2p_version *v = cp2p_peer_version(ctx->peer);
        a->allow = MPA_REFUSED;
        if (s->cfg->mempool_request == CD_MEMPOOL_REQ_AUTO)
            refused_save(s);
        /* user_agent is escaped by libconduit-p2p (cp2p_version) */
        warn_refused(s, a, v ? v->user_agent : NULL);
        a->want = 0;
        se->peer = NULL; /* it is closing already */
        sess_end(s, 1);
        return;
    }
    if (se->phase == SP_RECONCILE) {
        se->peer = NULL; /* the statement's result ends the session */
        return;
    }
    char why[160];
    snprintf(why, sizeof(why), "disconnected (%s%s%.100s)", cp2p_reason_str(reason),
             detail && detail[0] ? ": " : "", detail ? detail : "");
    se->peer = NULL;
    if (se->phase == SP_FETCH)
        sess_end(s, 1); /* the snapshot was used; some txs may be missing */
    else
        sess_inconclusive(s, why);
}

int cd_mempool_sync_start(mp_state *s)
{
    if (!s->cfg->relay || s->cfg->mempool_request == CD_MEMPOOL_REQ_NEVER)
        return 0;
    refused_load(s);
    cp2p_options opt;
    cp2p_options_init(&opt, cp2p_net_by_name(s->cfg->net->name));
    if (s->cfg->user_agent && s->cfg->user_agent[0])
        opt.user_agent = s->cfg->user_agent;
    opt.relay = 0; /* the node relays new txs on the sync connection */
    opt.reconnect = 0;
    opt.send_sendheaders = 0;
    opt.start_height = cd_hdrtree_height(s->tree);
    cp2p_handlers h = {
        .on_ready = side_ready,
        .on_disconnect = side_disconnect,
        .on_inv = side_inv,
        .on_notfound = side_notfound,
        .on_tx = side_tx,
        .on_pong = side_pong,
    };
    s->side = cp2p_mgr_new(s->base, &opt, &h, NULL, s);
    if (!s->side) {
        cd_log_error("mempool: cannot create the snapshot connection manager");
        return -1;
    }
    return 0;
}

void cd_mempool_sync_fini(mp_state *s)
{
    free(s->sess.snap);
    free(s->sess.miss);
    memset(&s->sess, 0, sizeof(s->sess));
    if (s->side)
        cp2p_mgr_free(s->side);
    s->side = NULL;
}
