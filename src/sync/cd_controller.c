/*
 * cd_controller.c - the controller process: one libevent loop that owns the
 * peer connections (libconduit-p2p), the header tree and the header sync
 * scheduler, and hosts the modules attached through cd_ctl.h (block
 * download, mempool and reorgs, catch-up, HTTP API), which main.c lists: the
 * controller includes no module's header.
 *
 * Why it exists: DESIGN.md §2 — a single loop that never blocks on
 * PostgreSQL or on a large LMDB write. Its own LMDB environment
 * (<datadir>/headers/) holds only headers, written once per headers message.
 *
 * Start-up order: event_base -> signal events -> modules' init() (they may
 * fork workers: nothing of ours is open yet) -> open the header tree (resume
 * from what is stored) -> peer manager -> modules' start() -> dial the peers
 * -> READY=1 -> loop. Shutdown (SIGTERM/SIGINT, or cd_ctl_stop()):
 * break the loop, STOPPING=1, modules' fini(), free the manager (closes the
 * sockets), close the tree.
 */
#include "cd_controller.h"
#include "cd_hdrsync.h"
#include "cd_notify.h"
#include "cd_peerstate.h"
#include "cd_ctl.h"
#include "cd_signals.h"
#include "cd_status.h"
#include "cd_supervisor.h"

#include "cd_escape.h"
#include "cd_log.h"
#include "cd_util.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cd_ctl {
    const cd_config *cfg;
    const cd_ctl_module *const *modules; /* NULL-terminated (main.c's table) */
    struct event_base *base;
    cd_hdrtree *tree;
    cp2p_mgr *mgr;
    cd_hdrsync *sync;
    cd_signals *sig;
    cd_supervisor *sup; /* the process table: every child of the daemon */
    struct event *tick;
    struct event *watchdog;
    void **mod_state; /* one per module */
    const cd_ctl_module *sink_mod;
    void *sink_state;
    int exit_code;
    int stopping;
    cd_status st;
    double last_status;
    cd_peerstate *peerstate; /* <datadir>/peers.state */
    cp2p_peer **peer_of;     /* peer_of[i]: the peer of cfg->connect[i] (or the default) */
    const char **peer_addr;  /* its configured address */
    size_t n_peer_of;
};

struct event_base *cd_ctl_base(cd_ctl *ctl)
{
    return ctl->base;
}

cp2p_mgr *cd_ctl_mgr(cd_ctl *ctl)
{
    return ctl->mgr;
}

cd_hdrtree *cd_ctl_tree(cd_ctl *ctl)
{
    return ctl->tree;
}

cd_supervisor *cd_ctl_sup(cd_ctl *ctl)
{
    return ctl->sup;
}

const cd_config *cd_ctl_config(cd_ctl *ctl)
{
    return ctl->cfg;
}

void cd_ctl_stop(cd_ctl *ctl, int exit_code)
{
    if (!ctl->stopping) {
        ctl->stopping = 1;
        ctl->exit_code = exit_code;
    }
    event_base_loopbreak(ctl->base);
}

/* ---- forwarding of peer events to modules ---- */

#define FOR_MODULES(ctl, i, m)                                                                     \
    for (size_t i = 0; (ctl)->modules[i]; i++)                                                     \
        for (const cd_ctl_module *m = (ctl)->modules[i]; m; m = NULL)

static cp2p_ctx mod_ctx(const cp2p_ctx *ctx, void *state)
{
    cp2p_ctx c = *ctx;
    c.user = state;
    return c;
}

static void h_ready(const cp2p_ctx *ctx, const cp2p_version *their)
{
    cd_ctl *ctl = ctx->user;
    cd_hdrsync_on_ready(ctl->sync, ctx->peer);
    FOR_MODULES(ctl, i, m)
    {
        if (m->handlers.on_ready) {
            cp2p_ctx c = mod_ctx(ctx, ctl->mod_state[i]);
            m->handlers.on_ready(&c, their);
        }
    }
}

static void h_disconnect(const cp2p_ctx *ctx, cp2p_reason reason, const char *detail)
{
    cd_ctl *ctl = ctx->user;
    cd_log_debug("peer %s: disconnected: %s%s%s", cp2p_peer_name(ctx->peer),
                 cp2p_reason_str(reason), detail && detail[0] ? ": " : "", detail ? detail : "");
    cd_hdrsync_on_disconnect(ctl->sync, ctx->peer);
    FOR_MODULES(ctl, i, m)
    {
        if (m->handlers.on_disconnect) {
            cp2p_ctx c = mod_ctx(ctx, ctl->mod_state[i]);
            m->handlers.on_disconnect(&c, reason, detail);
        }
    }
}

static void h_headers(const cp2p_ctx *ctx, const uint8_t *hdrs, size_t n)
{
    cd_ctl *ctl = ctx->user;
    cd_hdrsync_on_headers(ctl->sync, ctx->peer, hdrs, n);
    FOR_MODULES(ctl, i, m)
    {
        if (m->handlers.on_headers) {
            cp2p_ctx c = mod_ctx(ctx, ctl->mod_state[i]);
            m->handlers.on_headers(&c, hdrs, n);
        }
    }
}

static void h_inv(const cp2p_ctx *ctx, const cp2p_inv *inv, size_t n)
{
    cd_ctl *ctl = ctx->user;
    cd_hdrsync_on_inv(ctl->sync, ctx->peer, inv, n);
    FOR_MODULES(ctl, i, m)
    {
        if (m->handlers.on_inv) {
            cp2p_ctx c = mod_ctx(ctx, ctl->mod_state[i]);
            m->handlers.on_inv(&c, inv, n);
        }
    }
}

/* Handlers the controller does not use itself: forwarded only. */
#define FORWARD(name, params, args)                                                                \
    static void h_##name params                                                                    \
    {                                                                                              \
        cd_ctl *ctl = ctx->user;                                                                   \
        FOR_MODULES(ctl, i, m)                                                                     \
        {                                                                                          \
            if (m->handlers.name) {                                                                \
                cp2p_ctx c = mod_ctx(ctx, ctl->mod_state[i]);                                      \
                const cp2p_ctx *mctx = &c;                                                         \
                m->handlers.name args;                                                             \
            }                                                                                      \
        }                                                                                          \
    }

FORWARD(on_notfound, (const cp2p_ctx *ctx, const cp2p_inv *inv, size_t n), (mctx, inv, n))
FORWARD(on_tx, (const cp2p_ctx *ctx, const uint8_t *raw, size_t len, const uint8_t txid[32]),
        (mctx, raw, len, txid))
FORWARD(on_block, (const cp2p_ctx *ctx, const uint8_t *raw, size_t len, const uint8_t hash[32]),
        (mctx, raw, len, hash))
FORWARD(on_block_chunk, (const cp2p_ctx *ctx, const cp2p_block_chunk *chunk), (mctx, chunk))
FORWARD(on_block_abort, (const cp2p_ctx *ctx, const uint8_t hash[32], cp2p_reason why),
        (mctx, hash, why))
FORWARD(on_reject, (const cp2p_ctx *ctx, const cp2p_reject *rej), (mctx, rej))
FORWARD(on_addr, (const cp2p_ctx *ctx, const cp2p_addr *addrs, size_t n), (mctx, addrs, n))
FORWARD(on_pong, (const cp2p_ctx *ctx, uint64_t nonce, int64_t rtt_us), (mctx, nonce, rtt_us))
FORWARD(on_broadcast, (const cp2p_ctx *ctx, const cp2p_bcast_report *r), (mctx, r))

/* libconduit-p2p logs through the daemon's logger (its own lines carry no
 * process name; they become ours here). */
static void p2p_log(void *user, cp2p_log_level level, const char *msg)
{
    (void)user;
    cd_log((cd_log_level)level, "%s", msg);
}

/* A peer's back-off or ban changed: kept in the data directory. */
static void h_penalty(const cp2p_ctx *ctx, const cp2p_penalty *pen)
{
    cd_ctl *ctl = ctx->user;
    for (size_t i = 0; i < ctl->n_peer_of; i++)
        if (ctl->peer_of[i] == ctx->peer)
            (void)cd_peerstate_set(ctl->peerstate, ctl->peer_addr[i], pen);
}

static int add_peer(cd_ctl *ctl, const char *addr)
{
    cp2p_penalty pen;
    cp2p_peer *p = NULL;
    int have = cd_peerstate_get(ctl->peerstate, addr, &pen);
    int rc = cp2p_mgr_add_peer_ex(ctl->mgr, addr, have ? &pen : NULL, &p);
    if (rc != CP2P_OK)
        return rc;
    ctl->peer_of[ctl->n_peer_of] = p;
    ctl->peer_addr[ctl->n_peer_of++] = addr;
    return CP2P_OK;
}
static void h_on_message(const cp2p_ctx *ctx, const char *cmd, const uint8_t *payload, size_t len)
{
    cd_ctl *ctl = ctx->user;
    cd_hdrsync_on_message(ctl->sync, ctx->peer, cmd, payload, len);
    FOR_MODULES(ctl, i, m)
    {
        if (m->handlers.on_message) {
            cp2p_ctx c = mod_ctx(ctx, ctl->mod_state[i]);
            m->handlers.on_message(&c, cmd, payload, len);
        }
    }
}

/* The one module sink, with ctx->user swapped to the module's state. */
static int s_begin(const cp2p_ctx *ctx, uint64_t len, int is_ext)
{
    cd_ctl *ctl = ctx->user;
    cp2p_ctx c = mod_ctx(ctx, ctl->sink_state);
    return ctl->sink_mod->sink->begin(&c, len, is_ext);
}

static void s_space(const cp2p_ctx *ctx, uint8_t **buf, size_t *avail)
{
    cd_ctl *ctl = ctx->user;
    cp2p_ctx c = mod_ctx(ctx, ctl->sink_state);
    ctl->sink_mod->sink->space(&c, buf, avail);
}

static void s_data(const cp2p_ctx *ctx, size_t n)
{
    cd_ctl *ctl = ctx->user;
    cp2p_ctx c = mod_ctx(ctx, ctl->sink_state);
    ctl->sink_mod->sink->data(&c, n);
}

static void s_end(const cp2p_ctx *ctx, int ok, cp2p_reason why, const uint8_t hash[32])
{
    cd_ctl *ctl = ctx->user;
    cp2p_ctx c = mod_ctx(ctx, ctl->sink_state);
    ctl->sink_mod->sink->end(&c, ok, why, hash);
}

/* ---- chain events, timers, signals ---- */

static void on_tip(const cd_hdrtree_tip_event *ev, void *arg)
{
    cd_ctl *ctl = arg;
    cd_hdrsync_log_tip_event(ev);
    FOR_MODULES(ctl, i, m)
    {
        if (m->on_best_chain)
            m->on_best_chain(ctl->mod_state[i], ev);
    }
}

void cd_ctl_progress_now(cd_ctl *ctl, cd_ctl_progress *pr)
{
    memset(pr, 0, sizeof(*pr));
    pr->stored_height = -1;
    pr->indexed_height = -1;
    pr->index_backlog_txs = -1;
    pr->index_indexed_txs = -1;
    pr->partition_level = -1;
    pr->partition_merging = -1;
    FOR_MODULES(ctl, i, m)
    {
        if (m->progress && ctl->mod_state[i])
            m->progress(ctl->mod_state[i], pr);
    }
}

int cd_ctl_headers_synced(cd_ctl *ctl)
{
    return ctl->sync && cd_hdrsync_synced(ctl->sync);
}

/* The best header's hash and the connected peers, for `conduit-cli
 * status` and /metrics (cd_status.h). */
static void status_chain_and_peers(cd_ctl *ctl, cd_status *st)
{
    const cd_hdr_node *tip = ctl->tree ? cd_hdrtree_tip(ctl->tree) : NULL;
    if (tip && tip->height >= 0)
        cd_hex_encode_rev(st->best_hash, tip->hash, 32);
    else
        st->best_hash[0] = '\0';
    st->n_peer = 0;
    size_t n = ctl->mgr ? cp2p_mgr_peer_count(ctl->mgr) : 0;
    for (size_t i = 0; i < n && st->n_peer < CD_STATUS_MAX_PEERS; i++) {
        cp2p_peer *p = cp2p_mgr_peer_at(ctl->mgr, i);
        if (!p || cp2p_peer_state_get(p) != CP2P_PEER_READY)
            continue;
        cd_status_peer *sp = &st->peer[st->n_peer++];
        const cp2p_peer_stats *ps = cp2p_peer_stats_get(p);
        const cp2p_version *v = cp2p_peer_version(p);
        snprintf(sp->addr, sizeof(sp->addr), "%.63s", cp2p_peer_name(p));
        /* already escaped by libconduit-p2p; spaces are kept, the status
         * file puts the agent last on its line */
        snprintf(sp->agent, sizeof(sp->agent), "%.127s", v ? v->user_agent : "");
        sp->height = v ? v->start_height : -1;
        sp->bytes_in = ps ? ps->bytes_in : 0;
        sp->bytes_out = ps ? ps->bytes_out : 0;
    }
}

/* Issue 17: the tip's hash and time (the best-chain block at the progress
 * height), the best header's time, the restarts by kind from the process
 * table, the commit latency and the mempool refusals the modules count. */
static void status_tip_and_counters(cd_ctl *ctl, cd_status *st, const cd_ctl_progress *pr)
{
    const cd_hdr_node *best = ctl->tree ? cd_hdrtree_tip(ctl->tree) : NULL;
    const cd_hdr_node *tip =
        ctl->tree && st->height >= 0 ? cd_hdrtree_at(ctl->tree, st->height) : NULL;
    st->header_time = best ? (int64_t)cd_le32(best->raw + 68) : 0;
    st->tip_time = tip ? (int64_t)cd_le32(tip->raw + 68) : 0;
    if (tip)
        cd_hex_encode_rev(st->tip_hash, tip->hash, 32);
    else
        st->tip_hash[0] = '\0';
    cd_sup_restart_count rc[CD_STATUS_MAX_KINDS];
    size_t n = ctl->sup ? cd_sup_restarts(ctl->sup, rc, CD_STATUS_MAX_KINDS) : 0;
    st->n_restart = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        snprintf(st->restart[i].name, sizeof(st->restart[i].name), "%s", rc[i].kind);
        st->restart[i].n = rc[i].restarts;
    }
    st->commit_n = pr->commit_n;
    st->commit_sum_s = pr->commit_sum_s;
    memcpy(st->commit_le, pr->commit_le, sizeof(st->commit_le));
    memcpy(st->mempool_refused, pr->mempool_refused, sizeof(st->mempool_refused));
}

static void publish_status(cd_ctl *ctl)
{
    cd_ctl_progress pr;
    cd_ctl_progress_now(ctl, &pr);
    cd_status *st = &ctl->st;
    st->header_height = ctl->tree ? cd_hdrtree_height(ctl->tree) : -1;
    st->peers = (uint32_t)(ctl->mgr ? cp2p_mgr_ready_count(ctl->mgr) : 0);
    status_chain_and_peers(ctl, st);
    st->stored_height = pr.stored_height;
    st->indexed_height = ctl->cfg->index ? pr.indexed_height : -1;
    st->height = ctl->cfg->index ? st->indexed_height : st->stored_height;
    status_tip_and_counters(ctl, st, &pr);
    snprintf(st->index_mode, sizeof(st->index_mode), "%s", pr.index_mode ? pr.index_mode : "");
    snprintf(st->index_why, sizeof(st->index_why), "%s", pr.index_why);
    st->index_backlog_txs = pr.index_backlog_txs;
    st->index_indexed_txs = pr.index_indexed_txs;
    st->partitions = pr.partitions;
    st->partition_tip_txs = pr.partitions > 0 ? pr.partition_tip_txs : -1;
    st->partition_rolls = pr.partition_rolls;
    st->partition_merges = pr.partition_merges;
    st->partition_level = pr.partition_level;
    st->partition_merging = pr.partition_merging;
    st->workers_alive = pr.workers_alive;
    st->workers_total = pr.workers_total;
    st->ring_used = pr.ring_used;
    if (pr.ring_size)
        st->ring_size = pr.ring_size;
    /* with catch-up mode, not before the secondary indexes are back */
    int caught_up = st->header_height >= 0 && st->height >= st->header_height &&
                    (!pr.index_mode || strcmp(pr.index_mode, CD_CTL_INDEX_LIVE) == 0);
    /* the data path stopped (a disk full: issue 11, F6): stale, and why */
    snprintf(st->stall, sizeof(st->stall), "%s", pr.stall);
    snprintf(st->state, sizeof(st->state), "%s",
             ctl->stopping                   ? "stopping"
             : pr.stall[0]                   ? "stale"
             : !cd_hdrsync_synced(ctl->sync) ? "headers"
             : caught_up                     ? "synced"
                                             : "syncing");
    cd_status_sample(st, pr.blocks, pr.bytes, pr.txs, cd_now_s());
    /* a status file that cannot be written is logged (once) inside; the
     * next interval tries again */
    CD_IGNORE(cd_status_publish(ctl->cfg, st));
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    cd_ctl *ctl = arg;
    (void)fd;
    (void)what;
    cd_hdrsync_tick(ctl->sync);
    double now = cd_now_s();
    uint32_t every = ctl->cfg->status_interval_s ? ctl->cfg->status_interval_s : 10;
    if (now - ctl->last_status >= every) {
        ctl->last_status = now;
        publish_status(ctl);
    }
}

/* SIGHUP, after cd_config_reload() changed the reloadable fields: the status
 * schedule restarts from now with the (possibly new) status_interval, and a
 * status is published at once so the file shows the new interval (readers
 * use it to decide staleness). */
static void on_reload(void *arg)
{
    cd_ctl *ctl = arg;
    cd_log_info("configuration reloaded: status every %u s",
                (unsigned)(ctl->cfg->status_interval_s ? ctl->cfg->status_interval_s : 10));
    cp2p_mgr_set_log_level(ctl->mgr, (cp2p_log_level)cd_log_get_level());
    if (ctl->tick == NULL)
        return; /* not running yet: run() publishes when it starts the loop */
    ctl->last_status = cd_now_s();
    publish_status(ctl);
}

static void on_stop_signal(void *arg)
{
    cd_ctl *ctl = arg;
    if (!ctl->stopping)
        cd_log_info("stop requested, shutting down");
    cd_ctl_stop(ctl, CD_EXIT_OK);
}

/* ---- run ---- */

int cd_controller_run(const cd_config *cfg, const cd_ctl_module *const *modules)
{
    cd_ctl ctl;
    int rc = CD_EXIT_FAILURE;
    char path[4096];
    size_t n_init = 0, n_modules = 0;

    memset(&ctl, 0, sizeof(ctl));
    ctl.cfg = cfg;
    ctl.modules = modules;
    while (modules[n_modules])
        n_modules++;
    ctl.mod_state = cd_xcalloc(n_modules + 1, sizeof(*ctl.mod_state));
    ctl.exit_code = CD_EXIT_OK;
    cd_status_init(&ctl.st, cfg);

    if (!cfg->datadir || !cfg->datadir[0]) {
        cd_log_error("no data directory configured");
        free(ctl.mod_state);
        return CD_EXIT_CONFIG;
    }
    /* signal events first, so a SIGTERM at any later point stops us cleanly */
    ctl.base = event_base_new();
    if (!ctl.base) {
        cd_log_error("event_base_new failed");
        free(ctl.mod_state);
        return CD_EXIT_FAILURE;
    }
    ctl.sig = cd_signals_install(ctl.base, cfg, on_stop_signal, on_reload, &ctl);
    if (!ctl.sig)
        goto out;
    ctl.sup = cd_sup_new(ctl.base, cfg);
    if (!ctl.sup)
        goto out;

    /* modules first: worker processes they fork inherit no LMDB env, no
     * peer socket (STYLE.md C9) */
    for (; modules[n_init]; n_init++) {
        const cd_ctl_module *m = modules[n_init];
        if (m->init && m->init(&ctl, &ctl.mod_state[n_init]) != 0) {
            cd_log_error("module %s failed to initialise", m->name);
            if (ctl.stopping)
                rc = ctl.exit_code; /* the module said why (cd_ctl_stop) */
            goto out;
        }
        if (m->sink) {
            if (ctl.sink_mod) {
                cd_log_error("modules %s and %s both provide a block sink", ctl.sink_mod->name,
                             m->name);
                n_init++;
                goto out;
            }
            ctl.sink_mod = m;
            ctl.sink_state = ctl.mod_state[n_init];
        }
    }

    snprintf(path, sizeof(path), "%s/headers", cfg->datadir);
    int trc = cd_hdrtree_open(&ctl.tree, path, cfg->net, 0);
    if (trc != 0) {
        cd_log_error("cannot open the header tree in %s: %s", path, cd_strerror(trc));
        /* a store that cannot be opened (damaged: issue 11, F7; or not
         * accessible) is not cured by a restart: exit 2, no restart loop */
        rc = trc == CD_HDRTREE_EGENESIS || trc == CD_HDRTREE_ESTORE ? CD_EXIT_CONFIG
                                                                    : CD_EXIT_FAILURE;
        goto out;
    }
    {
        char hex[65];
        cd_hex_encode_rev(hex, cd_hdrtree_tip(ctl.tree)->hash, 32);
        cd_log_info("header tree %s: %zu headers, height=%d tip=%s", path,
                    cd_hdrtree_count(ctl.tree), (int)cd_hdrtree_height(ctl.tree), hex);
    }
    cd_hdrtree_set_tip_cb(ctl.tree, on_tip, &ctl);

    cp2p_options opt;
    cp2p_options_init(&opt, cp2p_net_by_name(cfg->net->name));
    opt.log_fn = p2p_log;
    opt.log_level = (cp2p_log_level)cd_log_get_level();
    opt.min_block_rate = cfg->block_min_rate;
    opt.block_grace_ms = cfg->block_rate_grace_s * 1000u;
    if (cfg->user_agent && cfg->user_agent[0])
        opt.user_agent = cfg->user_agent;
    opt.relay = cfg->relay;
    /* every byte of a block is verified against its header anyway (hash,
     * canonical tx count, exact length, merkle root): see block_checksum */
    opt.verify_block_checksum = cfg->block_checksum;
    opt.start_height = cd_hdrtree_height(ctl.tree);
    cp2p_handlers h = {
        .on_ready = h_ready,
        .on_disconnect = h_disconnect,
        .on_headers = h_headers,
        .on_inv = h_inv,
        .on_notfound = h_on_notfound,
        .on_tx = h_on_tx,
        .on_block = h_on_block,
        .on_block_chunk = h_on_block_chunk,
        .on_block_abort = h_on_block_abort,
        .on_reject = h_on_reject,
        .on_addr = h_on_addr,
        .on_pong = h_on_pong,
        .on_broadcast = h_on_broadcast,
        .on_message = h_on_message,
        .on_penalty = h_penalty,
    };
    cp2p_block_sink sink = {s_begin, s_space, s_data, s_end};
    ctl.mgr = cp2p_mgr_new(ctl.base, &opt, &h, ctl.sink_mod ? &sink : NULL, &ctl);
    if (!ctl.mgr) {
        cd_log_error("cannot create the peer manager");
        goto out;
    }
    ctl.sync = cd_hdrsync_new(ctl.tree, ctl.mgr, ctl.base);
    for (size_t i = 0; modules[i]; i++) {
        const cd_ctl_module *m = modules[i];
        if (m->start && m->start(ctl.mod_state[i]) != 0) {
            cd_log_error("module %s failed to start", m->name);
            goto out;
        }
    }

    size_t n_ok = 0;
    char def_peer[64];
    ctl.peerstate = cd_peerstate_open(cfg->datadir);
    ctl.peer_of = cd_xcalloc(cfg->n_connect + 1, sizeof(*ctl.peer_of));
    ctl.peer_addr = cd_xcalloc(cfg->n_connect + 1, sizeof(*ctl.peer_addr));
    if (cfg->n_connect == 0) {
        snprintf(def_peer, sizeof(def_peer), "127.0.0.1:%u", (unsigned)cfg->net->default_port);
        if (add_peer(&ctl, def_peer) == CP2P_OK)
            n_ok++;
        else
            cd_log_error("peer %s: cannot add", def_peer);
    }
    for (size_t i = 0; i < cfg->n_connect; i++) {
        int prc = add_peer(&ctl, cfg->connect[i]);
        if (prc != CP2P_OK)
            cd_log_error("peer %s: cannot add: %s", cd_escape_str(cfg->connect[i]),
                         cp2p_strerror(prc));
        else
            n_ok++;
    }
    if (n_ok == 0) {
        cd_log_error("no usable peer (check --connect)");
        rc = CD_EXIT_CONFIG;
        goto out;
    }

    ctl.tick = event_new(ctl.base, -1, EV_PERSIST, tick_cb, &ctl);
    struct timeval one = {1, 0};
    event_add(ctl.tick, &one);
    ctl.watchdog = cd_notify_watchdog_start(ctl.base);
    ctl.last_status = cd_now_s();
    publish_status(&ctl);
    CD_IGNORE(cd_notify_ready()); /* best effort: not under systemd, or its socket gone */
    cd_log_info("controller running: network %s, %zu peer(s)", cfg->net->name, n_ok);

    if (!ctl.stopping && event_base_dispatch(ctl.base) < 0) {
        cd_log_error("event loop failed");
        ctl.exit_code = CD_EXIT_FAILURE;
    }
    ctl.stopping = 1;
    CD_IGNORE(cd_notify_stopping()); /* best effort, as READY=1 */
    publish_status(&ctl);
    {
        char hex[65];
        cd_hex_encode_rev(hex, cd_hdrtree_tip(ctl.tree)->hash, 32);
        cd_log_info("controller stopped: headers height=%d tip=%s",
                    (int)cd_hdrtree_height(ctl.tree), hex);
    }
    rc = ctl.exit_code;

out:
    for (size_t i = n_init; i-- > 0;) {
        if (modules[i]->fini)
            modules[i]->fini(ctl.mod_state[i]);
    }
    cd_sup_free(ctl.sup); /* each module stopped its own children; none is left */
    cd_hdrsync_free(ctl.sync);
    cp2p_mgr_free(ctl.mgr);
    cd_peerstate_free(ctl.peerstate);
    free(ctl.peer_of);
    free(ctl.peer_addr);
    if (ctl.tick)
        event_free(ctl.tick);
    if (ctl.watchdog)
        event_free(ctl.watchdog);
    cd_signals_free(ctl.sig);
    if (ctl.base)
        event_base_free(ctl.base);
    cd_hdrtree_close(ctl.tree);
    free(ctl.mod_state);
    return rc;
}
