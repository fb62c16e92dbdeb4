/*
 * cd_pipe_workers.c - the pipeline's worker side: the writer, merkle and
 * parser workers launched through the supervisor (each child registers in
 * its ring slot and runs cd_wk_run()), their channels (bufferevents), the
 * messages they send (HELLO, UNIT_ACK, BLOCK_DONE), and what a lost worker
 * means for the blocks in flight (dispatched again from the ring, or
 * fetched again). The data path itself is cd_pipeline.c.
 */
#include "cd_pipeline.h"
#include "cd_pipeline_int.h"

#include "cd_log.h"
#include "cd_util.h"
#include "cd_supervisor.h"

#include <errno.h>
#include <signal.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------- worker messages ---------------- */

static void handle_msg(cd_pipeline *p, pipe_chan *c, const cd_ipc_hdr *h, const uint8_t *pl)
{
    switch (h->type) {
    case CD_IPC_HELLO: {
        if (h->len < sizeof(cd_ipc_hello))
            break;
        const cd_ipc_hello *m = (const cd_ipc_hello *)pl;
        if (m->kind != c->kind) {
            cd_log_error("pipeline: slot %d said it is a %s worker", c->slot,
                         cd_wk_kind_name(m->kind));
            cd_sup_kill(p->sup, c->sup_slot);
            return;
        }
        c->up = 1;
        cd_log_debug("pipeline: %s worker %u (pid %d) ready", cd_wk_kind_name(m->kind), m->index,
                     m->pid);
        cd_pipe_pump(p);
        cd_pipe_purge_pump(p);
        if (c->kind == CD_WK_PARSER)
            cd_pipe_recheck_all(p); /* completions waiting for a parser */
        /* a receiver that waited for the workers may go on */
        if (cd_pipe_all_up(p) && p->cbs.space)
            p->cbs.space(p->cbs.arg);
        return;
    }
    case CD_IPC_UNIT_ACK: {
        if (h->len < sizeof(cd_ipc_unit_ack))
            break;
        const cd_ipc_unit_ack *m = (const cd_ipc_unit_ack *)pl;
        pipe_block *b = cd_pipe_find_block(p, m->block_id);
        if (!b || m->unit_no >= b->n_units)
            return; /* stale: block re-dispatched under a new id */
        b->units[m->unit_no].pending &= ~(1ull << c->slot);
        if (m->status == CD_IPC_ERR_STALE && c->kind == CD_WK_PARSER && !b->finished) {
            /* rows of an earlier, wrong copy (left by an older version)
             * were found and removed: nobody's fault, fetch it again */
            char hex[65];
            hexid(hex, b->hash);
            cd_log_warn("pipeline: block %s: rows of an earlier copy did not match its header "
                        "and were removed; indexing it again",
                        hex);
            cd_pipe_finish(p, b, CD_PIPE_RETRY); /* may free b */
            return;
        }
        if (m->status == CD_IPC_OK_INDEXED && c->kind == CD_WK_PARSER) {
            /* the parser found the block stored and verified in LMDB
             * already and completed it with its batch: nothing to ask */
            b->stored_done = 1;
        } else if (m->status != CD_IPC_OK && c->kind == CD_WK_PARSER && !b->finished) {
            char hex[65];
            hexid(hex, b->hash);
            cd_log_warn("pipeline: parser rejected unit %u of %s (status %u)", m->unit_no, hex,
                        m->status);
            cd_pipe_finish(p, b, CD_PIPE_MALFORMED); /* may free b */
            return;
        }
        cd_pipe_check_complete(p, b); /* may free b */
        cd_pipe_try_release(p);
        return;
    }
    case CD_IPC_BLOCK_DONE: {
        if (h->len < sizeof(cd_ipc_block_done))
            break;
        const cd_ipc_block_done *m = (const cd_ipc_block_done *)pl;
        pipe_block *b = cd_pipe_find_block(p, m->block_id);
        if (c->kind == CD_WK_PARSER && b && b->stored_slot == c->slot && !b->finished) {
            /* the answer to BLOCK_STORED */
            b->stored_slot = -1;
            if (m->status == CD_IPC_OK) {
                b->stored_done = 1;
                cd_pipe_check_complete(p, b); /* may free b */
                return;
            }
            char hex[65];
            hexid(hex, b->hash);
            if (m->status == CD_IPC_ERR_STALE)
                cd_log_warn("pipeline: block %s: rows of an earlier copy did not match its "
                            "header and were removed; indexing it again",
                            hex);
            else
                cd_log_warn("pipeline: block %s: PostgreSQL could not complete it (status %u); "
                            "indexing it again",
                            hex, m->status);
            cd_pipe_finish(p, b, CD_PIPE_RETRY); /* may free b */
            return;
        }
        if (c->kind == CD_WK_PARSER) { /* the answer to a purge */
            cd_pipe_purge_done(p, m->block_id);
            return;
        }
        if (!b)
            return;
        if (c->kind == CD_WK_WRITER)
            b->writer_done = 1;
        else if (c->kind == CD_WK_MERKLE) {
            b->merkle_done = 1;
            b->merkle_status = (int)m->status;
        }
        cd_pipe_check_complete(p, b);
        return;
    }
    case CD_IPC_PG_COMMIT: {
        if (h->len < sizeof(cd_ipc_pg_commit) || c->kind != CD_WK_PARSER)
            break;
        const cd_ipc_pg_commit *m = (const cd_ipc_pg_commit *)pl;
        double s = (double)m->ns / 1e9;
        p->stats.commits++;
        p->stats.commit_s += s;
        for (int i = 0; i < CD_STATUS_COMMIT_BUCKETS; i++)
            if (s <= cd_status_commit_le[i])
                p->stats.commit_le[i]++;
        return;
    }
    case CD_IPC_STALL: {
        if (h->len < sizeof(cd_ipc_stall) || c->kind < 1 || c->kind > 3)
            break;
        const cd_ipc_stall *m = (const cd_ipc_stall *)pl;
        int was = cd_pipeline_stalled(p, NULL, 0);
        p->stall_on[c->kind] = m->stalled != 0;
        p->stall[c->kind] = *m;
        p->stall[c->kind].path[sizeof(m->path) - 1] = '\0';
        if (was && !cd_pipeline_stalled(p, NULL, 0)) {
            cd_log_info("pipeline: the block stores are writable again; downloads resume");
            if (p->cbs.space)
                p->cbs.space(p->cbs.arg);
        }
        return;
    }
    default:
        break;
    }
    cd_log_error("pipeline: bad %s message (%u bytes) from %s worker", cd_ipc_type_name(h->type),
                 h->len, cd_wk_kind_name(c->kind));
    cd_sup_kill(p->sup, c->sup_slot);
}

static void drain_input(cd_pipeline *p, pipe_chan *c, struct evbuffer *in)
{
    uint8_t *tmp = NULL;
    size_t cap = 0;
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail < sizeof(cd_ipc_hdr))
            break;
        cd_ipc_hdr h;
        evbuffer_copyout(in, &h, sizeof(h));
        if (h.version != CD_IPC_VERSION || h.len > 4096) {
            cd_log_error("pipeline: %s worker sent version %u / %u bytes; killing it",
                         cd_wk_kind_name(c->kind), h.version, h.len);
            evbuffer_drain(in, avail);
            cd_sup_kill(p->sup, c->sup_slot);
            break;
        }
        if (avail < sizeof(h) + h.len)
            break;
        evbuffer_drain(in, sizeof(h));
        if (h.len > cap) {
            cap = h.len;
            tmp = cd_xrealloc(tmp, cap);
        }
        if (h.len)
            evbuffer_remove(in, tmp, h.len);
        handle_msg(p, c, &h, tmp);
        if (!c->bev)
            break;
    }
    free(tmp);
}

static void worker_lost(cd_pipeline *p, int slot);

static void chan_close(pipe_chan *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    c->up = 0;
}

static void chan_read_cb(struct bufferevent *bev, void *arg)
{
    pipe_chan *c = arg;
    drain_input(c->p, c, bufferevent_get_input(bev));
}

static void chan_event_cb(struct bufferevent *bev, short what, void *arg)
{
    pipe_chan *c = arg;
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        cd_pipeline *p = c->p;
        drain_input(p, c, bufferevent_get_input(c->bev));
        int was = c->bev != NULL;
        chan_close(c);
        if (was) {
            cd_sup_kill(p->sup, c->sup_slot); /* in case it closed without dying */
            worker_lost(p, c->slot);
        }
    }
}

/* A consumer is gone: forget its acks; re-dispatch or fail the blocks it
 * had not finished. */
static void worker_lost(cd_pipeline *p, int slot)
{
    uint64_t bit = 1ull << slot;
    /* a purge that parser had not answered goes to another one */
    for (pipe_purge *q = p->purges; q; q = q->next)
        if (q->slot == slot)
            q->slot = -1;
    cd_pipe_purge_pump(p);
    /* a worker that reported a stall reports it again after its restart */
    if (p->chan[slot].kind >= 1 && p->chan[slot].kind <= 3)
        p->stall_on[p->chan[slot].kind] = 0;
    p->defer_release++;
    for (pipe_block *b = p->head; b; b = b->next) {
        for (size_t i = b->n_released; i < b->n_units; i++)
            b->units[i].pending &= ~bit;
        if (b->finished || !b->begin_sent)
            continue;
        if (b->stored_slot == slot) {
            /* every unit was committed and the block stored: only the
             * completion is lost; another parser is asked below */
            b->stored_slot = -1;
            continue;
        }
        char hex[65];
        hexid(hex, b->hash);
        if (b->n_released == 0) {
            /* every byte is still in the ring: start the block over */
            if (!b->end_sent)
                cd_pipe_send_ref_all(p, b, CD_IPC_BLOCK_ABORT, 0);
            b->id = ++p->next_id;
            b->begin_sent = b->end_sent = 0;
            b->writer_done = b->merkle_done = 0;
            b->merkle_status = 0;
            b->stored_slot = -1;
            b->stored_done = 0;
            b->n_sent = 0;
            for (size_t i = 0; i < b->n_units; i++) {
                b->units[i].sent = 0;
                b->units[i].pending = 0;
            }
            p->stats.redispatched++;
            cd_log_info("pipeline: %s worker lost; block %s will be dispatched again",
                        cd_wk_kind_name(p->chan[slot].kind), hex);
        } else {
            cd_log_warn("pipeline: %s worker lost; block %s no longer in the ring, fetch again",
                        cd_wk_kind_name(p->chan[slot].kind), hex);
            cd_pipe_finish(p, b, CD_PIPE_RETRY);
        }
    }
    p->defer_release--;
    cd_pipe_recheck_all(p);
}

/* ---------------- process table callbacks ---------------- */

/* Not cd_resident.h's shape: a worker's channel carries messages (a
 * bufferevent) and a lost worker's blocks are dispatched again. */

/* The channel of a process-table slot (every worker of ours has one). */
static pipe_chan *chan_of(cd_pipeline *p, int sup_slot)
{
    for (int i = 0; i < p->n_chan; i++)
        if (p->chan[i].sup_slot == sup_slot)
            return &p->chan[i];
    return NULL;
}

static void sup_up(void *arg, int sup_slot, int fd)
{
    cd_pipeline *p = arg;
    pipe_chan *c = chan_of(p, sup_slot);
    if (!c) {
        close(fd);
        return;
    }
    chan_close(c);
    c->bev = bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        cd_sup_kill(p->sup, sup_slot);
        return;
    }
    bufferevent_setcb(c->bev, chan_read_cb, NULL, chan_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void sup_down(void *arg, int sup_slot, int code)
{
    (void)code; /* logged by the supervisor */
    cd_pipeline *p = arg;
    pipe_chan *c = chan_of(p, sup_slot);
    if (!c)
        return;
    if (p->ring->hdr && c->slot < CD_RING_MAX_SLOTS)
        p->ring->hdr->slot[c->slot].pid = 0;
    if (!c->bev)
        return; /* EOF already handled */
    /* read what it wrote before dying, then treat it as lost */
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    while (evbuffer_read(in, fd, 65536) > 0)
        ;
    drain_input(p, c, in);
    if (c->bev) {
        chan_close(c);
        worker_lost(p, c->slot);
    }
}

static void sup_fatal(void *arg, int sup_slot)
{
    cd_pipeline *p = arg;
    pipe_chan *c = chan_of(p, sup_slot);
    cd_log_error("pipeline: %s worker cannot run; stopping", c ? cd_wk_kind_name(c->kind) : "a");
    if (p->cbs.fatal)
        p->cbs.fatal(p->cbs.arg);
}

/* Main of a forked worker (its kind's main in the process table): registers
 * in its ring slot and runs the kind's loop with what the workers need from
 * the configuration. arg: its channel. */
static CD_NORETURN void worker_main(void *arg, int sup_slot, int fd)
{
    (void)sup_slot;
    const pipe_chan *c = arg;
    cd_pipeline *p = c->p;
    /* The ring mapping is inherited (the kind needs_ring); its descriptor
     * was closed by the supervisor. */
    if (p->ring->hdr && c->slot < CD_RING_MAX_SLOTS) {
        p->ring->hdr->slot[c->slot].pid = (int32_t)getpid();
        p->ring->hdr->slot[c->slot].kind = c->kind;
    }
    cd_wk_config wcfg = {
        .datadir = p->cfg->datadir,
        .daemon = p->cfg,
        .index_data_pushes = p->cfg->index_data_pushes,
        .max_data_push = p->cfg->max_data_push,
    };
    cd_wk_ctx ctx = {
        .kind = c->kind,
        .index = c->index,
        .fd = fd,
        .ring = p->ring->data,
        .ring_size = p->ring->size,
        .cfg = &wcfg,
    };
    cd_wk_run(&ctx, c->ops);
}

/* The pipeline's rows of the process table: all keep the ring; the
 * parsers write PostgreSQL, the writer and the merkle worker LMDB only. */
static const cd_sup_kind kind_writer = {
    .name = "writer", .main = worker_main, .restart = CD_SUP_RESPAWN, .needs_ring = 1};
static const cd_sup_kind kind_merkle = {
    .name = "merkle", .main = worker_main, .restart = CD_SUP_RESPAWN, .needs_ring = 1};
static const cd_sup_kind kind_parser = {.name = "parser",
                                        .main = worker_main,
                                        .restart = CD_SUP_RESPAWN,
                                        .needs_ring = 1,
                                        .needs_pg = 1};

static void ring_forget(void *arg)
{
    cd_ring_forget_in_child(arg);
}

/* ---------------- public API ---------------- */

cd_pipeline *cd_pipeline_new(struct event_base *base, cd_supervisor *sup, cd_ring *ring,
                             const cd_config *cfg, const cd_pipeline_cbs *cbs)
{
    cd_pipeline *p = cd_xcalloc(1, sizeof(*p));
    p->base = base;
    p->ring = ring;
    p->cfg = cfg;
    p->cbs = *cbs;
    /* the ring is at least cfg->ring_size bytes: the quarter holds */
    p->unit_size = cd_config_unit_size(cfg);
    if (cfg->unit_size > p->unit_size)
        cd_log_info("pipeline: unit_size %llu bytes is more than a quarter of ring_size: units of "
                    "%llu bytes",
                    (unsigned long long)cfg->unit_size, (unsigned long long)p->unit_size);
    p->sup = sup;
    cd_sup_set_ring(sup, ring_forget, ring);
    return p;
}

int cd_pipeline_set_parsers(cd_pipeline *p, const cd_wk_ops *ops, unsigned n)
{
    if (p->started || n > CD_PIPELINE_MAX_PARSERS)
        return -1;
    p->parser_ops = ops;
    p->parser_count = ops ? n : 0;
    return 0;
}

static int add_chan(cd_pipeline *p, cd_wk_kind kind, uint32_t index, const cd_wk_ops *ops)
{
    char component[32];
    if (kind == CD_WK_PARSER)
        snprintf(component, sizeof(component), "parser-%u", index);
    else
        snprintf(component, sizeof(component), "%s", cd_wk_kind_name(kind));
    if (p->n_chan >= CD_PIPELINE_MAX_CHANS)
        return -1;
    int slot = p->n_chan;
    pipe_chan *c = &p->chan[slot];
    const cd_sup_kind *sk = kind == CD_WK_WRITER   ? &kind_writer
                            : kind == CD_WK_MERKLE ? &kind_merkle
                                                   : &kind_parser;
    cd_sup_cbs sc = {.arg = p, .on_up = sup_up, .on_down = sup_down, .on_fatal = sup_fatal};
    int sup_slot = cd_sup_add(p->sup, sk, index, component, c, &sc);
    if (sup_slot < 0) {
        cd_log_error("pipeline: %s", cd_strerror(sup_slot));
        return -1;
    }
    memset(c, 0, sizeof(*c));
    c->slot = slot;
    c->sup_slot = sup_slot;
    c->kind = kind;
    c->index = index;
    c->ops = ops;
    c->p = p;
    p->n_chan = slot + 1;
    return slot;
}

int cd_pipeline_start(cd_pipeline *p)
{
    if (p->started)
        return -1;
    /* a worker that dies leaves a socket whose writes raise SIGPIPE; the
     * controller handles that as EPIPE + EOF instead */
    signal(SIGPIPE, SIG_IGN);
    p->writer_slot = add_chan(p, CD_WK_WRITER, 0, &cd_wk_writer_ops);
    p->merkle_slot = add_chan(p, CD_WK_MERKLE, 0, &cd_wk_merkle_ops);
    if (p->writer_slot < 0 || p->merkle_slot < 0)
        return -1;
    for (unsigned i = 0; i < p->parser_count; i++) {
        int s = add_chan(p, CD_WK_PARSER, i, p->parser_ops);
        if (s < 0)
            return -1;
        p->parser_slot[p->n_parsers++] = s;
    }
    p->started = 1;
    /* its own rows only (the table holds other modules' children too); a
     * fork that failed is logged and retried by the table with back-off, as
     * after any death, so it does not fail the start */
    for (int i = 0; i < p->n_chan; i++) {
        int rc = cd_sup_launch(p->sup, p->chan[i].sup_slot);
        if (rc != 0 && rc != CD_SUP_EFORK)
            return -1;
    }
    return 0;
}

int cd_pipeline_ready(const cd_pipeline *p)
{
    return cd_pipe_all_up(p);
}

pid_t cd_pipeline_worker_pid(const cd_pipeline *p, cd_wk_kind kind, uint32_t index)
{
    for (int i = 0; i < p->n_chan; i++)
        if (p->chan[i].kind == kind && p->chan[i].index == index)
            return cd_sup_pid(p->sup, p->chan[i].sup_slot);
    return 0;
}

void cd_pipeline_workers(const cd_pipeline *p, uint32_t *alive, uint32_t *total)
{
    uint32_t up = 0;
    for (int i = 0; i < p->n_chan; i++)
        up += p->chan[i].up != 0;
    *alive = up;
    *total = (uint32_t)p->n_chan;
}

void cd_pipeline_free(cd_pipeline *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_chan; i++)
        chan_close(&p->chan[i]);
    cd_sup_stop(p->sup, p, 5000); /* its workers only; frees their slots */
    while (p->head) {
        pipe_block *b = p->head;
        p->head = b->next;
        cd_pipe_free_block(b);
    }
    while (p->purges) {
        pipe_purge *q = p->purges;
        p->purges = q->next;
        free(q);
    }
    free(p);
}
