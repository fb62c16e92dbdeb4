/*
 * cd_pipeline.c - work units, dispatch to workers, acks and ring reuse.
 *
 * Why it exists: it is the controller's side of the data path (DESIGN.md §3):
 * it turns bytes arriving in the shared ring into transaction-aligned work
 * units, hands their descriptors to the worker processes, and frees ring
 * space only when every consumer is done with it. It never touches LMDB or
 * PostgreSQL and never blocks: worker channels are libevent bufferevents.
 *
 * Data structures:
 *   blocks  singly linked FIFO in ring order (oldest first); the last one may
 *           be the block being received (p->cur).
 *   units   per block, in order; each keeps its descriptor, the tx offsets
 *           (relative u32, kept until released so it can be re-dispatched),
 *           and `pending`, a bitmask of supervisor slots that still owe an ack.
 *   chans   one per supervisor slot: bufferevent, "up" after HELLO.
 *
 * Ring release is FIFO: walk blocks oldest first, units in order, release
 * while the unit is releasable; stop at the first one that is not.
 *
 * Failed copies (issue 11, F1): parsers commit a block's units while the
 * merkle worker is still checking the bytes. When a copy fails (wrong root,
 * mutation, malformed, lost) after some of its units reached a parser, it
 * goes, once every consumer has acked it, to the `purges` list: one parser
 * is asked (BLOCK_DELETE) to remove the rows it committed, and until that
 * parser answers, no other copy of the block is let in (copy_in_flight), so
 * a right copy is never mixed with a wrong one's rows.
 */
#include "cd_pipeline.h"

#include "btc_preproc.h"
#include "cd_hash.h"
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

typedef struct pipe_unit {
    uint64_t ring_pos;
    uint64_t block_off;
    uint64_t len;
    uint64_t first_tx;
    uint32_t tx_count;
    uint32_t flags;
    uint32_t *offs;   /* relative offsets; freed at release */
    uint64_t pending; /* slots that still owe an ack */
    int sent;
    int parser; /* slot of the parser it went to, -1 none */
} pipe_unit;

typedef struct pipe_block {
    struct pipe_block *next;
    uint64_t id;
    uint8_t hash[32];
    uint8_t header[80];
    uint32_t height;
    uint64_t size;
    uint64_t tx_count;
    uint64_t ring_start;
    uint64_t received;
    int prefix_done;
    btc_preproc pp;
    uint64_t unit_start;
    uint64_t txs_cut;
    uint64_t *found;
    size_t n_found, cap_found;
    pipe_unit *units;
    size_t n_units, cap_units, n_released, n_sent;
    int begin_sent, end_sent, recv_done;
    int writer_done, merkle_done, merkle_status;
    int finished, hold;
    int ok;    /* finished with CD_PIPE_OK */
    int purge; /* failed after units reached parsers: remove their rows */
    int hash_known;
    void *ctx;
} pipe_block;

/* A failed copy whose committed rows a parser must remove. */
typedef struct pipe_purge {
    struct pipe_purge *next;
    uint64_t id; /* the copy's block id (echoed in the parser's BLOCK_DONE) */
    uint8_t hash[32];
    int slot; /* parser asked, -1: not asked yet */
} pipe_purge;

typedef struct pipe_chan {
    struct bufferevent *bev;
    int up;
    int slot;
    cd_wk_kind kind;
    uint32_t index;
    const cd_wk_ops *ops; /* what the worker runs (cd_wk_run) */
    cd_pipeline *p;
} pipe_chan;

struct cd_pipeline {
    struct event_base *base;
    cd_ring *ring;
    const cd_config *cfg;
    cd_pipeline_cbs cbs;
    cd_supervisor *sup;
    pipe_chan chan[CD_SUP_MAX_CHILDREN];
    int n_chan;
    int writer_slot, merkle_slot;
    int parser_slot[CD_SUP_MAX_CHILDREN];
    int n_parsers;
    const cd_wk_ops *parser_ops;
    unsigned parser_count;
    int rr;
    uint64_t unit_size;
    uint64_t next_id;
    pipe_block *head, *tail, *cur;
    int want_space;
    int started;
    int defer_release; /* set while walking the block list */
    pipe_purge *purges;
    cd_pipeline_stats stats;
};

const char *cd_pipe_status_name(int status)
{
    switch (status) {
    case CD_PIPE_OK:
        return "ok";
    case CD_PIPE_MERKLE:
        return "merkle-mismatch";
    case CD_PIPE_MALFORMED:
        return "malformed";
    case CD_PIPE_RETRY:
        return "retry";
    case CD_PIPE_TOOBIG:
        return "too-big";
    case CD_PIPE_CANCELLED:
        return "cancelled";
    case CD_PIPE_UNWANTED:
        return "unwanted";
    default:
        return "?";
    }
}

static void hexid(char out[65], const uint8_t h[32])
{
    cd_hex_encode_rev(out, h, 32);
}

/* ---------------- sending ---------------- */

static int chan_send(pipe_chan *c, uint16_t type, const void *payload, uint32_t len,
                     const void *extra, uint32_t extra_len)
{
    if (!c->bev || !c->up)
        return -1;
    cd_ipc_hdr h = {.version = CD_IPC_VERSION, .type = type, .len = len + extra_len};
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_add(out, &h, sizeof(h)) != 0 || (len && evbuffer_add(out, payload, len) != 0) ||
        (extra_len && evbuffer_add(out, extra, extra_len) != 0))
        return -1;
    return 0;
}

/* Consumers of every unit: writer, merkle. */
static uint64_t core_mask(const cd_pipeline *p)
{
    return (1ull << p->writer_slot) | (1ull << p->merkle_slot);
}

static void send_ref_all(cd_pipeline *p, pipe_block *b, uint16_t type, uint32_t n_units)
{
    cd_ipc_block_ref r;
    memset(&r, 0, sizeof(r));
    r.block_id = b->id;
    memcpy(r.hash, b->hash, 32);
    r.n_units = n_units;
    for (int i = 0; i < p->n_chan; i++)
        chan_send(&p->chan[i], type, &r, sizeof(r), NULL, 0);
}

static void send_delete(cd_pipeline *p, pipe_block *b)
{
    cd_ipc_block_ref r;
    memset(&r, 0, sizeof(r));
    r.block_id = b->id;
    memcpy(r.hash, b->hash, 32);
    chan_send(&p->chan[p->writer_slot], CD_IPC_BLOCK_DELETE, &r, sizeof(r), NULL, 0);
}

static int all_up(const cd_pipeline *p)
{
    if (!p->started)
        return 0;
    for (int i = 0; i < p->n_chan; i++)
        if (!p->chan[i].up)
            return 0;
    return 1;
}

static void send_unit(cd_pipeline *p, pipe_block *b, size_t ui)
{
    pipe_unit *u = &b->units[ui];
    cd_ipc_unit m;
    memset(&m, 0, sizeof(m));
    m.block_id = b->id;
    m.unit_no = (uint32_t)ui;
    m.tx_count = u->tx_count;
    m.ring_pos = u->ring_pos;
    m.block_off = u->block_off;
    m.len = u->len;
    m.first_tx = u->first_tx;
    m.flags = u->flags;
    uint32_t olen = u->tx_count * 4;
    u->pending = core_mask(p);
    chan_send(&p->chan[p->writer_slot], CD_IPC_UNIT, &m, sizeof(m), u->offs, olen);
    chan_send(&p->chan[p->merkle_slot], CD_IPC_UNIT, &m, sizeof(m), u->offs, olen);
    u->parser = -1;
    if (p->n_parsers > 0) {
        int s = p->parser_slot[p->rr++ % p->n_parsers];
        u->parser = s;
        u->pending |= 1ull << s;
        chan_send(&p->chan[s], CD_IPC_UNIT, &m, sizeof(m), u->offs, olen);
    }
    u->sent = 1;
    p->stats.units++;
}

/* Sends everything that can be sent, in block order, never interleaving. */
static void pump(cd_pipeline *p)
{
    if (!all_up(p))
        return;
    for (pipe_block *b = p->head; b; b = b->next) {
        if (b->finished)
            continue;
        if (!b->prefix_done)
            return;
        if (!b->begin_sent) {
            cd_ipc_block_begin m;
            memset(&m, 0, sizeof(m));
            m.block_id = b->id;
            memcpy(m.hash, b->hash, 32);
            memcpy(m.header, b->header, 80);
            m.height = b->height;
            m.size = b->size;
            m.tx_count = b->tx_count;
            for (int i = 0; i < p->n_chan; i++)
                chan_send(&p->chan[i], CD_IPC_BLOCK_BEGIN, &m, sizeof(m), NULL, 0);
            b->begin_sent = 1;
        }
        while (b->n_sent < b->n_units)
            send_unit(p, b, b->n_sent++);
        if (b->recv_done && !b->end_sent) {
            send_ref_all(p, b, CD_IPC_BLOCK_END, (uint32_t)b->n_units);
            b->end_sent = 1;
        }
        if (!b->end_sent)
            return;
    }
}

/* ---------------- release and completion ---------------- */

static void free_block(pipe_block *b)
{
    for (size_t i = 0; i < b->n_units; i++)
        free(b->units[i].offs);
    free(b->units);
    free(b->found);
    free(b);
}

/* Asks a live parser to remove the rows of each failed copy not asked for
 * yet. */
static void purge_pump(cd_pipeline *p)
{
    if (!p->started)
        return;
    for (pipe_purge *q = p->purges; q; q = q->next) {
        if (q->slot >= 0)
            continue;
        for (int i = 0; i < p->n_parsers; i++) {
            pipe_chan *c = &p->chan[p->parser_slot[(p->rr + i) % p->n_parsers]];
            if (!c->up)
                continue;
            cd_ipc_block_ref r;
            memset(&r, 0, sizeof(r));
            r.block_id = q->id;
            memcpy(r.hash, q->hash, 32);
            if (chan_send(c, CD_IPC_BLOCK_DELETE, &r, sizeof(r), NULL, 0) == 0) {
                q->slot = c->slot;
                break;
            }
        }
    }
}

static void purge_add(cd_pipeline *p, const pipe_block *b)
{
    pipe_purge *q = cd_xcalloc(1, sizeof(*q));
    q->id = b->id;
    memcpy(q->hash, b->hash, 32);
    q->slot = -1;
    q->next = p->purges;
    p->purges = q;
    purge_pump(p);
}

/* A parser answered the purge of copy `id`. */
static void purge_done(cd_pipeline *p, uint64_t id)
{
    for (pipe_purge **pp = &p->purges; *pp; pp = &(*pp)->next) {
        pipe_purge *q = *pp;
        if (q->id != id)
            continue;
        *pp = q->next;
        p->stats.purges++;
        uint8_t hash[32];
        memcpy(hash, q->hash, 32);
        free(q);
        if (p->cbs.cleared && !cd_pipeline_holds(p, hash))
            p->cbs.cleared(p->cbs.arg, hash);
        return;
    }
}

static void try_release(cd_pipeline *p)
{
    uint64_t released = 0;
    if (p->defer_release)
        return;
    while (p->head) {
        pipe_block *b = p->head;
        while (b->n_released < b->n_units) {
            pipe_unit *u = &b->units[b->n_released];
            int ok = u->pending == 0 && (b->finished || (u->sent && !b->hold));
            if (!ok)
                break;
            cd_assert(u->ring_pos == p->ring->tail);
            cd_ring_release(p->ring, u->len);
            released += u->len;
            free(u->offs);
            u->offs = NULL;
            b->n_released++;
        }
        if (b->n_released < b->n_units || !b->finished || b == p->cur)
            break;
        /* finished and every unit released: bytes past the last unit were
         * taken back when it failed (see finish()). Every parser acked the
         * copy, so what it committed can be removed now. */
        p->head = b->next;
        if (p->tail == b)
            p->tail = NULL;
        if (b->purge && p->n_parsers > 0)
            purge_add(p, b);
        free_block(b);
    }
    if (released && p->want_space && p->cur) {
        p->want_space = 0;
        if (p->cbs.space)
            p->cbs.space(p->cbs.arg);
    }
}

/* The block other than b holding a copy of hash that is still being stored
 * or was stored and verified, or NULL. The writer and the merkle worker key
 * everything by hash, so a second copy dispatched beside it could replace
 * verified bytes by unverified ones, and the second copy's failure (a
 * BLOCK_DELETE by hash) would then remove the block altogether. */
static int copy_in_flight(const cd_pipeline *p, const pipe_block *b, const uint8_t hash[32])
{
    for (const pipe_block *o = p->head; o; o = o->next)
        if (o != b && o->hash_known && memcmp(o->hash, hash, 32) == 0 &&
            (!o->finished || o->ok || o->purge))
            return 1;
    for (const pipe_purge *q = p->purges; q; q = q->next)
        if (memcmp(q->hash, hash, 32) == 0)
            return 1;
    return 0;
}

int cd_pipeline_holds(const cd_pipeline *p, const uint8_t hash[32])
{
    return copy_in_flight(p, NULL, hash);
}

static void finish(cd_pipeline *p, pipe_block *b, int status)
{
    if (b->finished)
        return;
    b->finished = 1;
    b->ok = status == CD_PIPE_OK;
    char hex[65];
    hexid(hex, b->hash);
    if (status == CD_PIPE_OK) {
        p->stats.blocks_ok++;
        p->stats.bytes_ok += b->size;
        p->stats.txs_ok += b->tx_count;
        cd_log_debug("pipeline: block %s stored and verified", hex);
    } else {
        p->stats.blocks_failed++;
        cd_log_warn("pipeline: block %s failed: %s", hex, cd_pipe_status_name(status));
        if (b->begin_sent) {
            if (!b->end_sent) {
                send_ref_all(p, b, CD_IPC_BLOCK_ABORT, 0);
                b->end_sent = 1;
            }
            /* The writer deletes by hash: safe, because no other copy of
             * this block is dispatched while this one is (copy_in_flight()) */
            send_delete(p, b);
        }
        /* units never sent owe no ack; rows of units a parser got must go
         * before another copy comes in */
        for (size_t i = 0; i < b->n_units; i++) {
            if (!b->units[i].sent)
                b->units[i].pending = 0;
            else if (b->units[i].parser >= 0)
                b->purge = 1;
        }
    }
    if (b == p->cur) {
        /* take back the bytes not cut into a unit yet (they are at head) */
        cd_ring_unproduce(p->ring, b->received - b->unit_start);
        b->received = b->unit_start;
        p->cur = NULL;
        p->want_space = 0;
    }
    if (p->cbs.block_done)
        p->cbs.block_done(p->cbs.arg, b->hash, status, b->ctx);
    try_release(p);
}

static void check_complete(cd_pipeline *p, pipe_block *b)
{
    if (b->finished || !b->writer_done || !b->merkle_done)
        return;
    if (b->merkle_status != CD_IPC_OK) {
        finish(p, b, b->merkle_status == CD_IPC_ERR_MALFORMED ? CD_PIPE_MALFORMED : CD_PIPE_MERKLE);
        return;
    }
    for (size_t i = 0; i < b->n_units; i++)
        if (b->units[i].pending)
            return; /* a parser still owes an ack */
    finish(p, b, CD_PIPE_OK);
}

static pipe_block *find_block(cd_pipeline *p, uint64_t id)
{
    for (pipe_block *b = p->head; b; b = b->next)
        if (b->id == id)
            return b;
    return NULL;
}

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
            cd_sup_kill(p->sup, c->slot);
            return;
        }
        c->up = 1;
        cd_log_debug("pipeline: %s worker %u (pid %d) ready", cd_wk_kind_name(m->kind), m->index,
                     m->pid);
        pump(p);
        purge_pump(p);
        /* a receiver that waited for the workers may go on */
        if (all_up(p) && p->cbs.space)
            p->cbs.space(p->cbs.arg);
        return;
    }
    case CD_IPC_UNIT_ACK: {
        if (h->len < sizeof(cd_ipc_unit_ack))
            break;
        const cd_ipc_unit_ack *m = (const cd_ipc_unit_ack *)pl;
        pipe_block *b = find_block(p, m->block_id);
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
            finish(p, b, CD_PIPE_RETRY); /* may free b */
            return;
        }
        if (m->status != CD_IPC_OK && c->kind == CD_WK_PARSER && !b->finished) {
            char hex[65];
            hexid(hex, b->hash);
            cd_log_warn("pipeline: parser rejected unit %u of %s (status %u)", m->unit_no, hex,
                        m->status);
            finish(p, b, CD_PIPE_MALFORMED); /* may free b */
            return;
        }
        check_complete(p, b); /* may free b */
        try_release(p);
        return;
    }
    case CD_IPC_BLOCK_DONE: {
        if (h->len < sizeof(cd_ipc_block_done))
            break;
        const cd_ipc_block_done *m = (const cd_ipc_block_done *)pl;
        if (c->kind == CD_WK_PARSER) { /* the answer to a purge */
            purge_done(p, m->block_id);
            return;
        }
        pipe_block *b = find_block(p, m->block_id);
        if (!b)
            return;
        if (c->kind == CD_WK_WRITER)
            b->writer_done = 1;
        else if (c->kind == CD_WK_MERKLE) {
            b->merkle_done = 1;
            b->merkle_status = (int)m->status;
        }
        check_complete(p, b);
        return;
    }
    default:
        break;
    }
    cd_log_error("pipeline: bad %s message (%u bytes) from %s worker", cd_ipc_type_name(h->type),
                 h->len, cd_wk_kind_name(c->kind));
    cd_sup_kill(p->sup, c->slot);
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
            cd_sup_kill(p->sup, c->slot);
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
            cd_sup_kill(p->sup, c->slot); /* in case it closed without dying */
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
    purge_pump(p);
    p->defer_release++;
    for (pipe_block *b = p->head; b; b = b->next) {
        for (size_t i = b->n_released; i < b->n_units; i++)
            b->units[i].pending &= ~bit;
        if (b->finished || !b->begin_sent)
            continue;
        char hex[65];
        hexid(hex, b->hash);
        if (b->n_released == 0) {
            /* every byte is still in the ring: start the block over */
            if (!b->end_sent)
                send_ref_all(p, b, CD_IPC_BLOCK_ABORT, 0);
            b->id = ++p->next_id;
            b->begin_sent = b->end_sent = 0;
            b->writer_done = b->merkle_done = 0;
            b->merkle_status = 0;
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
            finish(p, b, CD_PIPE_RETRY);
        }
    }
    p->defer_release--;
    try_release(p);
}

/* ---------------- supervisor callbacks ---------------- */

static void sup_up(void *arg, int slot, int fd)
{
    cd_pipeline *p = arg;
    pipe_chan *c = &p->chan[slot];
    chan_close(c);
    c->bev = bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        cd_sup_kill(p->sup, slot);
        return;
    }
    bufferevent_setcb(c->bev, chan_read_cb, NULL, chan_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void sup_down(void *arg, int slot)
{
    cd_pipeline *p = arg;
    pipe_chan *c = &p->chan[slot];
    if (p->ring->hdr && slot < CD_RING_MAX_SLOTS)
        p->ring->hdr->slot[slot].pid = 0;
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
        worker_lost(p, slot);
    }
}

static void sup_fatal(void *arg, int slot)
{
    cd_pipeline *p = arg;
    cd_log_error("pipeline: %s worker cannot run; stopping", cd_wk_kind_name(p->chan[slot].kind));
    if (p->cbs.fatal)
        p->cbs.fatal(p->cbs.arg);
}

/* Main of a forked worker (cd_sup_main_fn): registers in its ring slot and
 * runs the kind's loop with what the workers need from the configuration. */
static CD_NORETURN void worker_main(void *arg, int slot, int fd)
{
    cd_pipeline *p = arg;
    const pipe_chan *c = &p->chan[slot];
    /* The ring mapping is inherited; its descriptor was closed by the
     * supervisor. */
    if (p->ring->hdr && slot < CD_RING_MAX_SLOTS) {
        p->ring->hdr->slot[slot].pid = (int32_t)getpid();
        p->ring->hdr->slot[slot].kind = c->kind;
    }
    cd_wk_config wcfg = {
        .datadir = p->cfg->datadir,
        .pg_conninfo = p->cfg->pg_conninfo,
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

/* ---------------- public API ---------------- */

cd_pipeline *cd_pipeline_new(struct event_base *base, cd_ring *ring, const cd_config *cfg,
                             const cd_pipeline_cbs *cbs)
{
    cd_pipeline *p = cd_xcalloc(1, sizeof(*p));
    p->base = base;
    p->ring = ring;
    p->cfg = cfg;
    p->cbs = *cbs;
    uint64_t us = cfg->unit_size ? cfg->unit_size : 32ull << 20;
    p->unit_size = CD_MAX(CD_MIN(us, ring->size / 4), 4096);
    cd_sup_cbs sc = {.arg = p, .on_up = sup_up, .on_down = sup_down, .on_fatal = sup_fatal};
    p->sup = cd_sup_new(base, cfg, &sc);
    if (!p->sup) {
        free(p);
        return NULL;
    }
    return p;
}

int cd_pipeline_set_parsers(cd_pipeline *p, const cd_wk_ops *ops, unsigned n)
{
    if (p->started || n > CD_SUP_MAX_CHILDREN - 2)
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
    int slot = cd_sup_add(p->sup, cd_wk_kind_name(kind), index, component, worker_main, p);
    if (slot < 0 || slot >= 64)
        return -1;
    pipe_chan *c = &p->chan[slot];
    memset(c, 0, sizeof(*c));
    c->slot = slot;
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
    return cd_sup_start(p->sup);
}

int cd_pipeline_ready(const cd_pipeline *p)
{
    return all_up(p);
}

int cd_pipeline_begin(cd_pipeline *p, const uint8_t hash[32], uint32_t height, uint64_t size,
                      void *block_ctx)
{
    if (p->cur) {
        errno = EBUSY;
        return -1;
    }
    if (size < 81) {
        errno = EINVAL;
        return -1;
    }
    pipe_block *b = cd_xcalloc(1, sizeof(*b));
    b->id = ++p->next_id;
    if (hash) {
        memcpy(b->hash, hash, 32);
        b->hash_known = 1;
    }
    b->height = height;
    b->size = size;
    b->ring_start = p->ring->head;
    b->ctx = block_ctx;
    b->hold = size <= p->ring->size / 4;
    b->cap_found = 1024;
    b->found = cd_xmalloc(b->cap_found * sizeof(uint64_t));
    if (p->tail)
        p->tail->next = b;
    else
        p->head = b;
    p->tail = b;
    p->cur = b;
    return 0;
}

uint64_t cd_pipeline_space(cd_pipeline *p, uint8_t **ptr)
{
    pipe_block *b = p->cur;
    if (!b) {
        *ptr = NULL;
        return 0;
    }
    uint64_t n = cd_ring_writable(p->ring, ptr);
    n = CD_MIN(n, b->size - b->received);
    if (n == 0)
        p->want_space = 1;
    return n;
}

static void add_unit(cd_pipeline *p, pipe_block *b, size_t j, uint64_t end, uint32_t flags)
{
    if (b->n_units == b->cap_units) {
        b->cap_units = b->cap_units ? 2 * b->cap_units : 8;
        b->units = cd_xrealloc(b->units, b->cap_units * sizeof(pipe_unit));
    }
    pipe_unit *u = &b->units[b->n_units++];
    memset(u, 0, sizeof(*u));
    u->ring_pos = b->ring_start + b->unit_start;
    u->block_off = b->unit_start;
    u->len = end - b->unit_start;
    u->first_tx = b->txs_cut;
    u->tx_count = (uint32_t)j;
    u->flags = flags;
    u->parser = -1;
    u->offs = cd_xmalloc(CD_MAX(j, 1) * sizeof(uint32_t));
    for (size_t i = 0; i < j; i++)
        u->offs[i] = (uint32_t)(b->found[i] - b->unit_start);
    memmove(b->found, b->found + j, (b->n_found - j) * sizeof(uint64_t));
    b->n_found -= j;
    b->txs_cut += j;
    b->unit_start = end;
}

/* Cuts units from the complete txs found so far. */
static void cut_units(cd_pipeline *p, pipe_block *b, int final, int force)
{
    uint64_t limit = p->unit_size;
    while (b->n_found > 0) {
        uint64_t open_end = b->pp.tx_start; /* end of the last complete tx */
        uint64_t span = open_end - b->unit_start;
        if (span < limit && !force && !final)
            break;
        size_t j;
        uint64_t end;
        if (span <= limit) {
            j = b->n_found;
            end = open_end;
        } else {
            j = 1;
            for (size_t k = b->n_found - 1; k >= 1; k--)
                if (b->found[k] - b->unit_start <= limit) {
                    j = k;
                    break;
                }
            end = j < b->n_found ? b->found[j] : open_end;
        }
        add_unit(p, b, j, end, (final && b->n_found == j) ? CD_IPC_UNIT_LAST : 0);
    }
}

static int fail_cur(cd_pipeline *p, int status)
{
    finish(p, p->cur, status);
    return -1;
}

int cd_pipeline_commit(cd_pipeline *p, uint64_t n)
{
    pipe_block *b = p->cur;
    if (!b)
        return -1;
    cd_assert(n <= b->size - b->received && n <= cd_ring_free(p->ring));
    cd_ring_produce(p->ring, n);
    b->received += n;
    p->stats.bytes_in += n;
    const uint8_t *base = cd_ring_ptr(p->ring, b->ring_start);
    if (!b->prefix_done) {
        uint64_t txc = 0;
        int r = btc_block_prefix(base, (size_t)b->received, NULL, &txc);
        if (r == 0) {
            if (b->received == b->size)
                return fail_cur(p, CD_PIPE_MALFORMED);
            return 0;
        }
        if (r < 0)
            return fail_cur(p, CD_PIPE_MALFORMED);
        uint8_t h[32];
        cd_sha256d(h, base, 80);
        if (copy_in_flight(p, b, h)) {
            /* one copy of a block at a time (see copy_in_flight()) */
            char hex[65];
            hexid(hex, h);
            cd_log_info("pipeline: block %s is being stored already; refusing another copy", hex);
            if (!b->hash_known) {
                memcpy(b->hash, h, 32);
                b->hash_known = 1;
            }
            return fail_cur(p, CD_PIPE_UNWANTED);
        }
        if (!b->hash_known) {
            memcpy(b->hash, h, 32);
            b->hash_known = 1;
            if (p->cbs.identify && p->cbs.identify(p->cbs.arg, h, base, &b->height, &b->ctx) != 0)
                return fail_cur(p, CD_PIPE_UNWANTED);
        }
        if (memcmp(h, b->hash, 32) != 0) {
            char want[65], got[65];
            hexid(want, b->hash);
            hexid(got, h);
            cd_log_warn("pipeline: asked for block %s, header hashes to %s", want, got);
            return fail_cur(p, CD_PIPE_MALFORMED);
        }
        memcpy(b->header, base, 80);
        b->tx_count = txc;
        btc_preproc_init(&b->pp, (uint64_t)r);
        b->prefix_done = 1;
        pump(p);
    }
    while (b->pp.pos < b->received) {
        if (b->n_found == b->cap_found) {
            b->cap_found *= 2;
            b->found = cd_xrealloc(b->found, b->cap_found * sizeof(uint64_t));
        }
        size_t k = 0;
        uint64_t pos = b->pp.pos;
        int rc = btc_preproc_feed(&b->pp, cd_ring_ptr(p->ring, b->ring_start + pos), pos,
                                  (size_t)(b->received - pos), b->found + b->n_found,
                                  b->cap_found - b->n_found, &k);
        if (rc < 0) {
            char hex[65];
            hexid(hex, b->hash);
            cd_log_warn("pipeline: block %s: malformed tx at offset %llu", hex,
                        (unsigned long long)b->pp.tx_start);
            return fail_cur(p, CD_PIPE_MALFORMED);
        }
        b->n_found += k;
        if (b->pp.tx_count > b->tx_count)
            return fail_cur(p, CD_PIPE_MALFORMED);
        cut_units(p, b, 0, 0);
        if (k == 0 && b->n_found < b->cap_found)
            break;
    }
    if (b->received == b->size) {
        if (b->pp.tx_count != b->tx_count || b->pp.tx_start != b->size ||
            !btc_preproc_at_boundary(&b->pp)) {
            char hex[65];
            hexid(hex, b->hash);
            cd_log_warn("pipeline: block %s: %llu txs in %llu bytes, header says %llu", hex,
                        (unsigned long long)b->pp.tx_count, (unsigned long long)b->size,
                        (unsigned long long)b->tx_count);
            return fail_cur(p, CD_PIPE_MALFORMED);
        }
        cut_units(p, b, 1, 0);
        b->recv_done = 1;
        p->cur = NULL;
        pump(p);
        return 1;
    }
    if (cd_ring_free(p->ring) == 0) {
        /* ring full: hand over every complete tx so space can come back */
        cut_units(p, b, 0, 1);
        if (b->ring_start + b->unit_start == p->ring->tail && b->n_found == 0 &&
            b->unit_start < b->received && cd_ring_used(p->ring) == p->ring->size) {
            char hex[65];
            hexid(hex, b->hash);
            cd_log_warn("pipeline: block %s: the tx at offset %llu is larger than the ring "
                        "(%llu bytes)",
                        hex, (unsigned long long)b->pp.tx_start, (unsigned long long)p->ring->size);
            return fail_cur(p, CD_PIPE_TOOBIG);
        }
    }
    pump(p);
    return 0;
}

void cd_pipeline_cancel(cd_pipeline *p)
{
    if (p->cur)
        finish(p, p->cur, CD_PIPE_CANCELLED);
}

int cd_pipeline_receiving(const cd_pipeline *p)
{
    return p->cur != NULL;
}

size_t cd_pipeline_in_flight(const cd_pipeline *p)
{
    size_t n = 0;
    for (pipe_block *b = p->head; b; b = b->next)
        n += !b->finished;
    return n;
}

pid_t cd_pipeline_worker_pid(const cd_pipeline *p, cd_wk_kind kind, uint32_t index)
{
    for (int i = 0; i < p->n_chan; i++)
        if (p->chan[i].kind == kind && p->chan[i].index == index)
            return cd_sup_pid(p->sup, i);
    return 0;
}

void cd_pipeline_get_stats(const cd_pipeline *p, cd_pipeline_stats *out)
{
    *out = p->stats;
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
    cd_sup_stop(p->sup, 5000);
    cd_sup_free(p->sup);
    while (p->head) {
        pipe_block *b = p->head;
        p->head = b->next;
        free_block(b);
    }
    while (p->purges) {
        pipe_purge *q = p->purges;
        p->purges = q->next;
        free(q);
    }
    free(p);
}
