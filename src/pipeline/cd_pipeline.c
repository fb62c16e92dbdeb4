/*
 * cd_pipeline.c - work units, dispatch to workers, acks and ring reuse.
 *
 * Why it exists: it is the controller's side of the data path (DESIGN.md §3):
 * it turns bytes arriving in the shared ring into transaction-aligned work
 * units, hands their descriptors to the worker processes, and frees ring
 * space only when every consumer is done with it. It never touches LMDB or
 * PostgreSQL and never blocks: worker channels are libevent bufferevents.
 * The worker side (launching the workers through the supervisor, their
 * channels and messages, a lost worker) is cd_pipe_workers.c.
 *
 * Data structures:
 *   blocks  singly linked FIFO in ring order (oldest first); the last one may
 *           be the block being received (p->cur).
 *   units   per block, in order; each keeps its descriptor, the tx offsets
 *           (relative u32, kept until released so it can be re-dispatched),
 *           and `pending`, a bitmask of worker channels (chan[] indexes)
 *           that still owe an ack.
 *   chans   one per worker (its index: its ring slot and ack bit; sup_slot:
 *           its row in the process table): bufferevent, "up" after HELLO.
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
 *
 * Completion (issue 11, F6): a block is marked indexed in PostgreSQL (and
 * the tip moved) only after the writer stored it in LMDB, the merkle worker
 * verified it and every parser acked its units: then one parser is asked
 * (BLOCK_STORED) to complete it, and the block finishes OK when that parser
 * answers. Before, the last parser to commit a unit completed the block by
 * itself, so with the disk full PostgreSQL showed blocks indexed and on the
 * best chain that LMDB never stored.
 */
#include "cd_pipeline.h"
#include "cd_pipeline_int.h"

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

void cd_pipe_send_ref_all(cd_pipeline *p, pipe_block *b, uint16_t type, uint32_t n_units)
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

int cd_pipe_all_up(const cd_pipeline *p)
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
void cd_pipe_pump(cd_pipeline *p)
{
    if (!cd_pipe_all_up(p))
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
            cd_pipe_send_ref_all(p, b, CD_IPC_BLOCK_END, (uint32_t)b->n_units);
            b->end_sent = 1;
        }
        if (!b->end_sent)
            return;
    }
}

/* ---------------- release and completion ---------------- */

void cd_pipe_free_block(pipe_block *b)
{
    for (size_t i = 0; i < b->n_units; i++)
        free(b->units[i].offs);
    free(b->units);
    free(b->found);
    free(b);
}

/* Asks a live parser to remove the rows of each failed copy not asked for
 * yet. */
void cd_pipe_purge_pump(cd_pipeline *p)
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
    cd_pipe_purge_pump(p);
}

/* A parser answered the purge of copy `id`. */
void cd_pipe_purge_done(cd_pipeline *p, uint64_t id)
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

void cd_pipe_try_release(cd_pipeline *p)
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
        cd_pipe_free_block(b);
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

void cd_pipe_finish(cd_pipeline *p, pipe_block *b, int status)
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
                cd_pipe_send_ref_all(p, b, CD_IPC_BLOCK_ABORT, 0);
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
    cd_pipe_try_release(p);
}

void cd_pipe_send_stored(cd_pipeline *p, pipe_block *b)
{
    for (int i = 0; i < p->n_parsers; i++) {
        pipe_chan *c = &p->chan[p->parser_slot[(p->rr + i) % p->n_parsers]];
        if (!c->up)
            continue;
        cd_ipc_block_ref r;
        memset(&r, 0, sizeof(r));
        r.block_id = b->id;
        memcpy(r.hash, b->hash, 32);
        r.n_units = (uint32_t)b->n_units;
        if (chan_send(c, CD_IPC_BLOCK_STORED, &r, sizeof(r), NULL, 0) == 0) {
            b->stored_slot = c->slot;
            p->rr++;
            return;
        }
    }
    /* no parser up: asked again when one says HELLO (cd_pipe_recheck_all) */
}

void cd_pipe_check_complete(cd_pipeline *p, pipe_block *b)
{
    if (b->finished || !b->writer_done || !b->merkle_done)
        return;
    if (b->merkle_status != CD_IPC_OK) {
        cd_pipe_finish(
            p, b, b->merkle_status == CD_IPC_ERR_MALFORMED ? CD_PIPE_MALFORMED : CD_PIPE_MERKLE);
        return;
    }
    for (size_t i = 0; i < b->n_units; i++)
        if (b->units[i].pending)
            return; /* a parser still owes an ack */
    /* stored and verified: now, and only now, PostgreSQL may mark it
     * indexed (see banner) */
    if (p->n_parsers > 0 && !b->stored_done) {
        if (b->stored_slot < 0)
            cd_pipe_send_stored(p, b);
        return;
    }
    cd_pipe_finish(p, b, CD_PIPE_OK);
}

void cd_pipe_recheck_all(cd_pipeline *p)
{
    p->defer_release++;
    for (pipe_block *b = p->head; b; b = b->next)
        if (!b->finished && b->stored_slot < 0)
            cd_pipe_check_complete(p, b);
    p->defer_release--;
    cd_pipe_try_release(p);
}

int cd_pipeline_stalled(const cd_pipeline *p, char *why, size_t len)
{
    for (int k = 0; k < 4; k++) {
        if (!p->stall_on[k])
            continue;
        const cd_ipc_stall *s = &p->stall[k];
        if (why && len)
            snprintf(why, len, "%s: %.200s: %s; %llu bytes free",
                     s->disk_full ? "disk full" : "I/O error", s->path, cd_strerror(s->err),
                     (unsigned long long)s->free_bytes);
        return 1;
    }
    return 0;
}

pipe_block *cd_pipe_find_block(cd_pipeline *p, uint64_t id)
{
    for (pipe_block *b = p->head; b; b = b->next)
        if (b->id == id)
            return b;
    return NULL;
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
    b->stored_slot = -1;
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
    cd_pipe_finish(p, p->cur, status);
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
        cd_pipe_pump(p);
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
        cd_pipe_pump(p);
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
    cd_pipe_pump(p);
    return 0;
}

void cd_pipeline_cancel(cd_pipeline *p)
{
    if (p->cur)
        cd_pipe_finish(p, p->cur, CD_PIPE_CANCELLED);
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

void cd_pipeline_get_stats(const cd_pipeline *p, cd_pipeline_stats *out)
{
    *out = p->stats;
}
