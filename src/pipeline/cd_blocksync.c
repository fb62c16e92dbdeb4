/*
 * cd_blocksync.c - block download scheduling and the p2p block sink over the
 * pipeline (see cd_blocksync.h).
 *
 * Why it exists: it connects the three halves of issue #5 inside the
 * controller: peers (libconduit-p2p), the header tree (what the best chain
 * is), and the pipeline (ring + workers + LMDB). It never blocks: the stored
 * set is read once at start, then kept in memory from block_done events.
 */
#include "cd_blocksync.h"

#include "cd_hashset.h"
#include "cd_log.h"
#include "cd_util.h"
#include "cd_pipeline.h"
#include "cd_ring.h"
#include "cd_blockstore.h"
#include "cd_wk_parser.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BS_MAX_PEERS 64
#define BS_SCRATCH   (256 * 1024)

/* ---- state ---- */

typedef struct bs_peer {
    cp2p_peer *peer;
    uint64_t serial; /* never reused: names the peer in a block's ctx */
    int ready;
    unsigned inflight;
    int want_begin;     /* sink begun, not yet started in the pipeline */
    int in_pipe;        /* its block is the pipeline's current one */
    int paused;         /* space() returned 0 */
    int drop;           /* misbehaved: ban at the next chance */
    char why[160];      /* ... for this reason */
    uint64_t len;       /* payload length of the block being received */
    uint64_t remaining; /* payload bytes still to come */
    uint64_t discard;   /* payload bytes to swallow (block already failed) */
} bs_peer;

typedef struct bs_req {
    uint8_t hash[32];
    bs_peer *peer;
    double t;
} bs_req;

/* A (block, peer) pair that timed out: ask someone else while we can. */
typedef struct bs_avoid {
    uint8_t hash[32];
    bs_peer *peer;
} bs_avoid;

#define BS_MAX_AVOID 1024

typedef struct bs_state {
    cd_ctl *ctl;
    const cd_config *cfg;
    struct event_base *base;
    cd_ring ring;
    cd_pipeline *pipe;
    cd_hdrtree *tree;
    cp2p_mgr *mgr;
    cd_hashset stored;
    bs_peer *peers[BS_MAX_PEERS];
    int n_peers;
    bs_req *reqs;
    size_t n_reqs, cap_reqs;
    bs_avoid avoid[BS_MAX_AVOID];
    size_t n_avoid, next_avoid;
    bs_peer *cur; /* peer whose block is being received */
    uint64_t next_serial;
    int32_t low; /* lowest best-chain height not known stored */
    int32_t synced_logged;
    struct event *tick;
    struct event *deferred;
    uint8_t *scratch;
} bs_state;

static void schedule(bs_state *s);

static bs_peer *find_peer(bs_state *s, const cp2p_peer *p)
{
    for (int i = 0; i < s->n_peers; i++)
        if (s->peers[i]->peer == p)
            return s->peers[i];
    return NULL;
}

static bs_req *find_req(bs_state *s, const uint8_t h[32])
{
    for (size_t i = 0; i < s->n_reqs; i++)
        if (memcmp(s->reqs[i].hash, h, 32) == 0)
            return &s->reqs[i];
    return NULL;
}

static void drop_req(bs_state *s, bs_req *r)
{
    if (r->peer && r->peer->inflight)
        r->peer->inflight--;
    *r = s->reqs[--s->n_reqs];
}

static int avoided(const bs_state *s, const uint8_t h[32], const bs_peer *bp)
{
    for (size_t i = 0; i < s->n_avoid; i++)
        if (s->avoid[i].peer == bp && memcmp(s->avoid[i].hash, h, 32) == 0)
            return 1;
    return 0;
}

static void avoid_add(bs_state *s, const uint8_t h[32], bs_peer *bp)
{
    bs_avoid *a = &s->avoid[s->next_avoid];
    s->next_avoid = (s->next_avoid + 1) % BS_MAX_AVOID;
    if (s->n_avoid < BS_MAX_AVOID)
        s->n_avoid++;
    memcpy(a->hash, h, 32);
    a->peer = bp;
}

static void avoid_forget_peer(bs_state *s, const bs_peer *bp)
{
    for (size_t i = 0; i < s->n_avoid; i++)
        if (s->avoid[i].peer == bp)
            s->avoid[i].peer = NULL;
}

static void resume_waiting(bs_state *s)
{
    for (int i = 0; i < s->n_peers; i++) {
        bs_peer *bp = s->peers[i];
        if (bp->paused && bp->peer) {
            bp->paused = 0;
            cp2p_peer_resume_read(bp->peer);
        }
    }
}

/* ---- pipeline callbacks ---- */

static int pipe_identify(void *arg, const uint8_t hash[32], const uint8_t header[80],
                         uint32_t *height, void **ctx)
{
    (void)header;
    bs_state *s = arg;
    const cd_hdr_node *n = s->tree ? cd_hdrtree_find(s->tree, hash) : NULL;
    char hex[65];
    cd_hex_encode_rev(hex, hash, 32);
    if (!n) {
        cd_log_warn("blocksync: peer %s sent block %s whose header we do not know",
                    s->cur && s->cur->peer ? cp2p_peer_name(s->cur->peer) : "?", hex);
        return -1;
    }
    /* Never a second copy of a stored block, asked for or not: the writer
     * keys blocks by hash, so the copy would replace verified bytes and, if
     * it failed its merkle check, its deletion would remove the block while
     * `stored` still lists it. (A copy of a block still in the pipeline is
     * refused by the pipeline itself.) */
    if (cd_hashset_has(&s->stored, hash)) {
        cd_log_info("blocksync: block %s is already stored; discarding the copy", hex);
        return -1;
    }
    *height = (uint32_t)n->height;
    /* who sent this copy (the request may move to another peer meanwhile) */
    *ctx = s->cur ? (void *)(uintptr_t)s->cur->serial : NULL;
    return 0;
}

static bs_peer *peer_by_serial(bs_state *s, uint64_t serial)
{
    for (int i = 0; serial && i < s->n_peers; i++)
        if (s->peers[i]->serial == serial)
            return s->peers[i];
    return NULL;
}

static void pipe_done(void *arg, const uint8_t hash[32], int status, void *ctx)
{
    bs_state *s = arg;
    char hex[65];
    cd_hex_encode_rev(hex, hash, 32);
    bs_peer *from = NULL;
    uint64_t sender = (uint64_t)(uintptr_t)ctx;
    bs_req *r = find_req(s, hash);
    /* A copy refused while another copy is in the pipeline answers nothing:
     * the request stays until that copy is done (or times out), else it
     * would be asked again, and refused again, in a loop. */
    if (r && (status != CD_PIPE_UNWANTED || cd_hashset_has(&s->stored, hash))) {
        from = r->peer;
        drop_req(s, r);
    }
    if (sender)
        from = peer_by_serial(s, sender); /* the copy's sender, not the asked one */
    if (s->cur && s->cur->in_pipe && !cd_pipeline_receiving(s->pipe)) {
        /* a failure while the block was still arriving: swallow the rest */
        bs_peer *cp = s->cur;
        if (!from)
            from = cp;
        cp->in_pipe = 0;
        cp->discard = cp->remaining;
        s->cur = NULL;
        if (cp->paused && cp->peer) {
            cp->paused = 0;
            cp2p_peer_resume_read(cp->peer);
        }
        resume_waiting(s);
    }
    const cd_hdr_node *n = s->tree ? cd_hdrtree_find(s->tree, hash) : NULL;
    switch (status) {
    case CD_PIPE_OK:
        cd_hashset_add(&s->stored, hash);
        cd_log_info("blocksync: stored block %s height=%d", hex, n ? n->height : -1);
        break;
    case CD_PIPE_UNWANTED: /* unknown header or already stored: not asked for */
        break;
    case CD_PIPE_MERKLE:
    case CD_PIPE_MALFORMED:
    case CD_PIPE_TOOBIG:
        if (from && from->peer) {
            cd_log_warn("blocksync: peer %s sent a bad block %s (%s); disconnecting it",
                        cp2p_peer_name(from->peer), hex, cd_pipe_status_name(status));
            from->drop = 1;
            snprintf(from->why, sizeof(from->why), "sent a bad block %s (%s)", hex,
                     cd_pipe_status_name(status));
            event_active(s->deferred, EV_TIMEOUT, 0);
        }
        break;
    default: /* RETRY, CANCELLED: just ask again */
        cd_log_info("blocksync: block %s %s; asking again", hex, cd_pipe_status_name(status));
        break;
    }
    schedule(s);
}

static void pipe_space(void *arg)
{
    resume_waiting(arg);
}

/* A failed copy's rows are gone: the block may be asked for again (a copy
 * refused meanwhile left its request waiting: ask anew). */
static void pipe_cleared(void *arg, const uint8_t hash[32])
{
    bs_state *s = arg;
    bs_req *r = find_req(s, hash);
    if (r)
        drop_req(s, r);
    schedule(s);
}

static void pipe_fatal(void *arg)
{
    bs_state *s = arg;
    cd_ctl_stop(s->ctl, CD_EXIT_CONFIG);
}

/* ---- sink ---- */

static int sink_begin(const cp2p_ctx *ctx, uint64_t len, int is_ext)
{
    (void)is_ext;
    bs_state *s = ctx->user;
    bs_peer *bp = find_peer(s, ctx->peer);
    if (!bp)
        return 0; /* not a peer we track: let the library handle it */
    bp->len = len;
    bp->remaining = len;
    bp->discard = 0;
    bp->want_begin = 1;
    return 1;
}

static void sink_space(const cp2p_ctx *ctx, uint8_t **buf, size_t *avail)
{
    bs_state *s = ctx->user;
    bs_peer *bp = find_peer(s, ctx->peer);
    *buf = NULL;
    *avail = 0;
    if (!bp)
        return;
    if (bp->discard) {
        *buf = s->scratch;
        *avail = (size_t)CD_MIN(bp->discard, (uint64_t)BS_SCRATCH);
        return;
    }
    if (bp->want_begin) {
        if (s->cur || !cd_pipeline_ready(s->pipe)) {
            bp->paused = 1; /* another peer's block is arriving */
            return;
        }
        if (cd_pipeline_begin(s->pipe, NULL, CD_IPC_HEIGHT_UNKNOWN, bp->len, NULL) != 0) {
            cd_log_warn("blocksync: peer %s: block payload of %llu bytes refused",
                        cp2p_peer_name(ctx->peer), (unsigned long long)bp->len);
            bp->want_begin = 0;
            bp->discard = bp->remaining;
            bp->drop = 1;
            snprintf(bp->why, sizeof(bp->why), "block payload of %llu bytes refused",
                     (unsigned long long)bp->len);
            event_active(s->deferred, EV_TIMEOUT, 0);
            *buf = s->scratch;
            *avail = (size_t)CD_MIN(bp->discard, (uint64_t)BS_SCRATCH);
            return;
        }
        bp->want_begin = 0;
        bp->in_pipe = 1;
        s->cur = bp;
    }
    uint8_t *p;
    uint64_t n = cd_pipeline_space(s->pipe, &p);
    if (n == 0) {
        bp->paused = 1;
        return;
    }
    *buf = p;
    *avail = (size_t)CD_MIN(n, (uint64_t)SIZE_MAX);
}

static void sink_data(const cp2p_ctx *ctx, size_t n)
{
    bs_state *s = ctx->user;
    bs_peer *bp = find_peer(s, ctx->peer);
    if (!bp)
        return;
    bp->remaining -= CD_MIN((uint64_t)n, bp->remaining);
    if (bp->discard) {
        bp->discard -= CD_MIN((uint64_t)n, bp->discard);
        return;
    }
    if (!bp->in_pipe)
        return;
    int rc = cd_pipeline_commit(s->pipe, n);
    if (rc == 1) {
        bp->in_pipe = 0;
        s->cur = NULL;
        resume_waiting(s);
    }
    /* rc == -1: pipe_done already switched this peer to discarding */
}

static void sink_end(const cp2p_ctx *ctx, int ok, cp2p_reason why, const uint8_t hash[32])
{
    (void)why;
    (void)hash;
    bs_state *s = ctx->user;
    bs_peer *bp = find_peer(s, ctx->peer);
    if (!bp)
        return;
    if (bp->in_pipe && s->cur == bp)
        cd_pipeline_cancel(s->pipe); /* -> pipe_done(CANCELLED) */
    bp->in_pipe = 0;
    bp->want_begin = 0;
    bp->discard = 0;
    if (!ok)
        cd_log_info("blocksync: block from %s cut short", cp2p_peer_name(ctx->peer));
    resume_waiting(s);
}

static const cp2p_block_sink bs_sink = {
    .begin = sink_begin,
    .space = sink_space,
    .data = sink_data,
    .end = sink_end,
};

/* ---- scheduling ---- */

static void schedule(bs_state *s)
{
    if (!s->tree || !s->pipe)
        return;
    /* a store cannot be written (disk full): ask for nothing more until it
     * can (issue 11, F6); the blocks already here wait in the ring */
    if (cd_pipeline_stalled(s->pipe, NULL, 0))
        return;
    int32_t tip = cd_hdrtree_height(s->tree);
    while (s->low <= tip) {
        const cd_hdr_node *n = cd_hdrtree_at(s->tree, s->low);
        if (!n || !cd_hashset_has(&s->stored, n->hash))
            break;
        s->low++;
    }
    if (s->low > tip) {
        if (s->synced_logged != tip && s->n_reqs == 0) {
            s->synced_logged = tip;
            cd_log_info("blocksync: all blocks stored up to height %d", tip);
        }
        return;
    }
    unsigned window = s->cfg->blocks_per_peer ? s->cfg->blocks_per_peer : 16;
    int ready = 0;
    for (int i = 0; i < s->n_peers; i++)
        ready += s->peers[i]->ready && !s->peers[i]->drop && s->peers[i]->peer;
    int32_t ahead = (int32_t)CD_MAX(64u, 4u * window * (unsigned)CD_MAX(ready, 1));
    int32_t top = CD_MIN(tip, s->low + ahead);
    uint8_t(*batch)[32] = cd_xmalloc(window * 32);
    for (int i = 0; i < s->n_peers; i++) {
        bs_peer *bp = s->peers[i];
        if (!bp->ready || bp->drop || !bp->peer)
            continue;
        size_t nb = 0;
        for (int32_t h = s->low; bp->inflight + nb < window && h <= top; h++) {
            const cd_hdr_node *n = cd_hdrtree_at(s->tree, h);
            if (!n || cd_hashset_has(&s->stored, n->hash) || find_req(s, n->hash))
                continue;
            /* a failed copy's rows are still being removed: a copy now
             * would be refused; `cleared` schedules again */
            if (cd_pipeline_holds(s->pipe, n->hash))
                continue;
            /* in this batch already? */
            int dup = 0;
            for (size_t k = 0; k < nb && !dup; k++)
                dup = memcmp(batch[k], n->hash, 32) == 0;
            if (dup || (ready > 1 && avoided(s, n->hash, bp)))
                continue;
            memcpy(batch[nb++], n->hash, 32);
        }
        if (nb && cp2p_peer_getdata_blocks(bp->peer, (const uint8_t(*)[32])batch, nb) == 0) {
            for (size_t k = 0; k < nb; k++) {
                if (s->n_reqs == s->cap_reqs) {
                    s->cap_reqs = s->cap_reqs ? 2 * s->cap_reqs : 64;
                    s->reqs = cd_xrealloc(s->reqs, s->cap_reqs * sizeof(bs_req));
                }
                bs_req *r = &s->reqs[s->n_reqs++];
                memcpy(r->hash, batch[k], 32);
                r->peer = bp;
                r->t = cd_now_s();
            }
            bp->inflight += (unsigned)nb;
            cd_log_debug("blocksync: asked %s for %zu blocks", cp2p_peer_name(bp->peer), nb);
        }
    }
    free(batch);
}

static void deferred_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bs_state *s = arg;
    for (int i = 0; i < s->n_peers; i++) {
        bs_peer *bp = s->peers[i];
        if (bp->drop && bp->peer && !bp->in_pipe && !bp->want_begin && !bp->discard) {
            cp2p_peer_ban(bp->peer, bp->why); /* on_disconnect forgets the record */
            deferred_cb(fd, what, arg);       /* the table changed: start over */
            return;
        }
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bs_state *s = arg;
    double now = cd_now_s();
    double limit = s->cfg->block_timeout_s ? s->cfg->block_timeout_s : 120;
    for (size_t i = 0; i < s->n_reqs;) {
        bs_req *r = &s->reqs[i];
        /* A peer whose block waits for us (another peer's block is being
         * received, or the ring is full) is not late: its clock starts
         * when we read again. A block arriving too slowly is the library's
         * to judge (min_block_rate: the peer is dropped, see on_disconnect). */
        if (r->peer && (r->peer->paused || r->peer->want_begin)) {
            r->t = now;
            i++;
            continue;
        }
        /* received and waiting in the pipeline (say for a full disk to
         * be writable again): not late either; asking again would only
         * bring a copy the pipeline refuses, in a loop */
        if (cd_pipeline_holds(s->pipe, r->hash)) {
            r->t = now;
            i++;
            continue;
        }
        if (now - r->t > limit && !(s->cur && s->cur == r->peer)) {
            char hex[65];
            cd_hex_encode_rev(hex, r->hash, 32);
            cd_log_warn("blocksync: block %s not received from %s within %.0f s; asking again", hex,
                        r->peer && r->peer->peer ? cp2p_peer_name(r->peer->peer) : "?", limit);
            if (r->peer)
                avoid_add(s, r->hash, r->peer);
            drop_req(s, r);
            continue;
        }
        i++;
    }
    schedule(s);
}

/* ---- peer events ---- */

static void on_ready(const cp2p_ctx *ctx, const cp2p_version *their)
{
    (void)their;
    bs_state *s = ctx->user;
    bs_peer *bp = find_peer(s, ctx->peer);
    if (!bp) {
        if (s->n_peers == BS_MAX_PEERS)
            return;
        bp = cd_xcalloc(1, sizeof(*bp));
        bp->peer = ctx->peer;
        bp->serial = ++s->next_serial;
        s->peers[s->n_peers++] = bp;
    }
    bp->ready = 1;
    schedule(s);
}

static void on_disconnect(const cp2p_ctx *ctx, cp2p_reason reason, const char *detail)
{
    bs_state *s = ctx->user;
    for (int i = 0; i < s->n_peers; i++) {
        bs_peer *bp = s->peers[i];
        if (bp->peer != ctx->peer)
            continue;
        if (reason == CP2P_R_SLOW_BLOCK || reason == CP2P_R_STALLED)
            cd_log_warn("blocksync: peer %s is too slow (%s); its %u block request(s) go to "
                        "other peers",
                        cp2p_peer_name(ctx->peer), detail, bp->inflight);
        if (s->cur == bp) {
            cd_pipeline_cancel(s->pipe);
            s->cur = NULL;
        }
        for (size_t k = 0; k < s->n_reqs;) {
            if (s->reqs[k].peer == bp) {
                s->reqs[k].peer = NULL;
                drop_req(s, &s->reqs[k]);
                continue;
            }
            k++;
        }
        avoid_forget_peer(s, bp);
        free(bp);
        s->peers[i] = s->peers[--s->n_peers];
        break;
    }
    resume_waiting(s);
    schedule(s);
}

static void on_best_chain(void *state, const cd_hdrtree_tip_event *ev)
{
    bs_state *s = state;
    if (ev->fork && ev->fork->height + 1 < s->low)
        s->low = ev->fork->height + 1;
    schedule(s);
}

/* ---- progress (status line / status file) ---- */

static void mod_progress(void *state, cd_ctl_progress *out)
{
    bs_state *s = state;
    /* highest best-chain height below which every block is stored */
    int32_t h = s->low;
    if (s->tree) {
        int32_t tip = cd_hdrtree_height(s->tree);
        while (h <= tip) {
            const cd_hdr_node *n = cd_hdrtree_at(s->tree, h);
            if (!n || !cd_hashset_has(&s->stored, n->hash))
                break;
            h++;
        }
    }
    out->stored_height = h - 1;
    /* the indexed height comes from PostgreSQL's index_tip (cd_mempool.c):
     * a block the pipeline finished is not always indexed (its rows may
     * have failed the completion check) */
    out->ring_used += cd_ring_used(&s->ring);
    out->ring_size += s->ring.size;
    if (s->pipe) {
        cd_pipeline_stats ps;
        uint32_t alive, total;
        cd_pipeline_get_stats(s->pipe, &ps);
        cd_pipeline_workers(s->pipe, &alive, &total);
        out->blocks += ps.blocks_ok;
        out->bytes += ps.bytes_ok;
        out->txs += ps.txs_ok;
        out->commit_n += ps.commits;
        out->commit_sum_s += ps.commit_s;
        for (int i = 0; i < CD_STATUS_COMMIT_BUCKETS; i++)
            out->commit_le[i] += ps.commit_le[i];
        out->workers_alive += alive;
        out->workers_total += total;
        if (!out->stall[0])
            cd_pipeline_stalled(s->pipe, out->stall, sizeof(out->stall));
    }
}

/* ---- module ---- */

static int mod_init(cd_ctl *ctl, void **state)
{
    bs_state *s = cd_xcalloc(1, sizeof(*s));
    s->ctl = ctl;
    s->cfg = cd_ctl_config(ctl);
    s->base = cd_ctl_base(ctl);
    s->synced_logged = -1;
    s->scratch = cd_xmalloc(BS_SCRATCH);
    mkdir(s->cfg->datadir, 0700);
    char name[CD_RING_NAME_MAX];
    uint64_t ring = s->cfg->ring_size ? s->cfg->ring_size : 256ull << 20;
    if (cd_ring_name_for(s->cfg->datadir, name) != 0 || cd_ring_create(&s->ring, name, ring) != 0) {
        cd_log_error("blocksync: cannot create the block ring for %s", s->cfg->datadir);
        free(s->scratch);
        free(s);
        return -1;
    }
    cd_pipeline_cbs cbs = {.arg = s,
                           .block_done = pipe_done,
                           .space = pipe_space,
                           .fatal = pipe_fatal,
                           .identify = pipe_identify,
                           .cleared = pipe_cleared};
    s->pipe = cd_pipeline_new(s->base, cd_ctl_sup(ctl), &s->ring, s->cfg, &cbs);
    /* Parser workers (index): PostgreSQL rows, exactly once (cd_wk_parser.h).
     * First, before anything is dispatched: blocks stored in LMDB but not
     * indexed (a crash) are indexed from LMDB. */
    if (s->pipe && s->cfg->index && cd_wk_parser_recover(s->cfg) == CD_EXIT_CONFIG) {
        cd_pipeline_free(s->pipe);
        s->pipe = NULL;
    }
    if (s->pipe && s->cfg->index) {
        /* the default: one per core, at most the bound the option table
         * enforces on an explicit value (CD_CONFIG_MAX_PARSER_WORKERS) */
        _Static_assert(CD_PIPELINE_MAX_PARSERS >= CD_CONFIG_MAX_PARSER_WORKERS,
                       "the pipeline runs every parser_workers value the config accepts");
        unsigned n = cd_config_parser_workers(s->cfg, sysconf(_SC_NPROCESSORS_ONLN));
        /* cannot be refused (same bound), but if it were, nothing would be
         * indexed while the status says it keeps up: a configuration error
         * instead (exit 2) */
        if (cd_pipeline_set_parsers(s->pipe, &cd_wk_parser_ops, n) != 0) {
            cd_log_error("parser_workers = %u: at most %u parser workers", n,
                         (unsigned)CD_PIPELINE_MAX_PARSERS);
            cd_ctl_stop(ctl, CD_EXIT_CONFIG);
            cd_pipeline_free(s->pipe);
            s->pipe = NULL;
        }
    }
    if (!s->pipe || cd_pipeline_start(s->pipe) != 0) {
        cd_pipeline_free(s->pipe);
        cd_ring_destroy(&s->ring);
        free(s->scratch);
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static int load_stored(const uint8_t hash[32], const cd_block_loc *loc, void *arg)
{
    (void)loc;
    void **a = arg;
    bs_state *s = a[0];
    cd_blockstore *merkle = a[1];
    cd_merkle_meta mm;
    if (merkle && cd_blockstore_merkle_meta(merkle, hash, &mm) == 0)
        cd_hashset_add(&s->stored, hash);
    return 0;
}

static int mod_start(void *state)
{
    bs_state *s = state;
    s->tree = cd_ctl_tree(s->ctl);
    s->mgr = cd_ctl_mgr(s->ctl);
    char p1[4096], p2[4096];
    snprintf(p1, sizeof(p1), "%s/blocks", s->cfg->datadir);
    snprintf(p2, sizeof(p2), "%s/merkle", s->cfg->datadir);
    cd_blockstore *blocks = NULL, *merkle = NULL;
    if (cd_blockstore_open(p1, CD_BS_RDONLY, 0, &blocks) == 0 &&
        cd_blockstore_open(p2, CD_BS_RDONLY, 0, &merkle) == 0) {
        void *a[2] = {s, merkle};
        int frc = cd_blockstore_foreach(blocks, load_stored, a);
        if (frc != 0) /* the blocks not listed are asked for again: wasteful, not wrong */
            cd_log_warn("blocksync: listing the stored blocks failed: %s", cd_strerror(frc));
    }
    cd_blockstore_close(blocks);
    cd_blockstore_close(merkle);
    cd_log_info("blocksync: %zu blocks already stored", cd_hashset_count(&s->stored));
    s->tick = event_new(s->base, -1, EV_PERSIST, tick_cb, s);
    struct timeval tv = {1, 0};
    event_add(s->tick, &tv);
    s->deferred = event_new(s->base, -1, 0, deferred_cb, s);
    schedule(s);
    return 0;
}

static void mod_fini(void *state)
{
    bs_state *s = state;
    if (!s)
        return;
    if (s->tick)
        event_free(s->tick);
    if (s->deferred)
        event_free(s->deferred);
    cd_pipeline_free(s->pipe);
    cd_ring_destroy(&s->ring);
    for (int i = 0; i < s->n_peers; i++)
        free(s->peers[i]);
    free(s->reqs);
    cd_hashset_free(&s->stored);
    free(s->scratch);
    free(s);
}

const cd_ctl_module cd_pipeline_module = {
    .name = "pipeline",
    .init = mod_init,
    .start = mod_start,
    .fini = mod_fini,
    .handlers = {.on_ready = on_ready, .on_disconnect = on_disconnect},
    .sink = &bs_sink,
    .on_best_chain = on_best_chain,
    .progress = mod_progress,
};
