/*
 * cd_wk_writer.c - the block-writer worker: raw block bytes and tx offsets
 * from the ring into LMDB (<datadir>/blocks).
 *
 * Why a separate process: LMDB allows one writer at a time and a large write
 * transaction must never stall the controller's network loop (DESIGN.md §2).
 * Each unit is one committed LMDB txn (chunks + offsets + the block's
 * incomplete location), acknowledged after the commit, so the controller may
 * reuse its ring space; BLOCK_END writes the tail and the COMPLETE location in
 * one txn and fsyncs. A half-written block found at start is removed
 * (cd_blockstore_recover) and fetched again.
 *
 * A write that fails for want of space (or an I/O error) is not fatal
 * (issue 11, F6): cd_wk_store_wait() logs it once, tells the controller
 * (the status says "stale: disk full") and the same write is tried again
 * until it works; meanwhile the unit stays unacknowledged, the ring fills
 * and the download pauses. Exiting instead made the controller fetch the
 * block again, in a loop, while the disk stayed full.
 *
 * Blocks are keyed by hash: BEGIN of a hash already held replaces the old
 * copy, and DELETE removes whatever the hash names. That is only safe because
 * the controller never dispatches a second copy of a block that is stored or
 * still in the pipeline (cd_pipeline.c copy_in_flight(), cd_blocksync.c
 * pipe_identify()); a held copy replaced here is one that was never verified
 * (e.g. written before a crash that lost its merkle tree).
 */
#include "cd_wk_main.h"

#include "cd_log.h"
#include "cd_blockstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wk_writer {
    cd_blockstore *bs;
    uint64_t block_id;
    int active;
    uint8_t hash[32];
    uint64_t *offs;
    size_t offs_cap;
    char path[4096]; /* <datadir>/blocks */
} wk_writer;

/* Retries a store write while it fails for want of space (see banner). */
#define WRITE_RETRYING(c, w, rc, expr)                                                             \
    do {                                                                                           \
        while (((rc) = (expr)) != 0 && cd_wk_store_wait((c), (w)->path, (rc)) == 0)                \
            ;                                                                                      \
        if ((rc) == 0)                                                                             \
            cd_wk_store_ok((c), (w)->path);                                                        \
    } while (0)

static int writer_init(cd_wk_ctx *c)
{
    wk_writer *w = cd_xcalloc(1, sizeof(*w));
    c->state = w;
    char *path = w->path;
    snprintf(w->path, sizeof(w->path), "%s/blocks", c->cfg->datadir);
    int rc = cd_blockstore_open(path, 0, 0, &w->bs);
    if (rc == 0)
        rc = cd_blockstore_check(w->bs, CD_WK_CHECK_BOUND); /* issue 11, F7 */
    /* a damaged file stays damaged: exit 2, no restart loop (logged) */
    if (rc)
        return cd_blockstore_is_corrupt(rc) ? CD_EXIT_CONFIG : CD_EXIT_FAILURE;
    /* removing a half-written block needs free pages too */
    while ((rc = cd_blockstore_recover(w->bs)) < 0 && cd_wk_store_wait(c, path, rc) == 0)
        ;
    if (rc >= 0)
        cd_wk_store_ok(c, path);
    if (rc < 0) {
        cd_log_error("writer: recover %s: %s", path, cd_strerror(rc));
        return CD_EXIT_FAILURE;
    }
    return CD_EXIT_OK;
}

static void hexid(char out[65], const uint8_t h[32])
{
    cd_hex_encode_rev(out, h, 32);
}

static int writer_begin(cd_wk_ctx *c, const cd_ipc_block_begin *b)
{
    wk_writer *w = c->state;
    if (w->active) {
        /* a block left unfinished: begin replaces its record anyway, and
         * recovery removes incomplete blocks at the next start */
        int arc;
        WRITE_RETRYING(c, w, arc, cd_blockstore_abort(w->bs));
        if (arc)
            cd_log_warn("writer: abort: %s", cd_strerror(arc));
    }
    w->active = 0;
    int rc;
    WRITE_RETRYING(c, w, rc,
                   cd_blockstore_begin(w->bs, b->hash, b->header, b->height, b->size, b->tx_count));
    if (rc) {
        char hex[65];
        hexid(hex, b->hash);
        cd_log_error("writer: begin block %s: %s", hex, cd_strerror(rc));
        return -1;
    }
    w->active = 1;
    w->block_id = b->block_id;
    memcpy(w->hash, b->hash, 32);
    return 0;
}

static int writer_unit(cd_wk_ctx *c, const cd_ipc_unit *u, const uint32_t *tx_off)
{
    wk_writer *w = c->state;
    if (!w->active || u->block_id != w->block_id) {
        cd_log_error("writer: unit %u of block id %llu without BEGIN", u->unit_no,
                     (unsigned long long)u->block_id);
        return -1;
    }
    if (u->tx_count > w->offs_cap) {
        w->offs_cap = u->tx_count;
        free(w->offs);
        w->offs = cd_xmalloc(w->offs_cap * sizeof(uint64_t));
    }
    for (uint32_t i = 0; i < u->tx_count; i++)
        w->offs[i] = u->block_off + tx_off[i];
    int rc;
    WRITE_RETRYING(
        c, w, rc,
        cd_blockstore_append(w->bs, cd_wk_unit_bytes(c, u), u->len, w->offs, u->tx_count));
    if (rc) {
        char hex[65];
        hexid(hex, w->hash);
        cd_log_error("writer: block %s unit %u: %s", hex, u->unit_no, cd_strerror(rc));
        return -1;
    }
    return CD_IPC_OK;
}

static int writer_end(cd_wk_ctx *c, const cd_ipc_block_ref *r, cd_ipc_block_done *done)
{
    wk_writer *w = c->state;
    if (!w->active || r->block_id != w->block_id)
        return -1;
    w->active = 0;
    int rc;
    WRITE_RETRYING(c, w, rc, cd_blockstore_finish(w->bs));
    char hex[65];
    hexid(hex, w->hash);
    if (rc) {
        cd_log_error("writer: finish block %s: %s", hex, cd_strerror(rc));
        return -1;
    }
    cd_log_debug("writer: stored block %s", hex);
    done->status = CD_IPC_OK;
    return 1;
}

static void writer_abort(cd_wk_ctx *c, const cd_ipc_block_ref *r)
{
    wk_writer *w = c->state;
    if (w->active && r->block_id == w->block_id) {
        int rc;
        WRITE_RETRYING(c, w, rc, cd_blockstore_abort(w->bs));
        if (rc)
            cd_log_warn("writer: abort: %s", cd_strerror(rc));
        w->active = 0;
    }
}

static int writer_del(cd_wk_ctx *c, const cd_ipc_block_ref *r)
{
    wk_writer *w = c->state;
    if (w->active && memcmp(r->hash, w->hash, 32) == 0)
        w->active = 0;
    int rc;
    WRITE_RETRYING(c, w, rc, cd_blockstore_delete(w->bs, r->hash));
    char hex[65];
    hexid(hex, r->hash);
    if (rc && rc != CD_BS_NOTFOUND) {
        cd_log_error("writer: delete block %s: %s", hex, cd_strerror(rc));
        return -1;
    }
    cd_log_info("writer: deleted block %s", hex);
    return 0;
}

static void writer_fini(cd_wk_ctx *c)
{
    wk_writer *w = c->state;
    if (!w)
        return;
    cd_blockstore_close(w->bs);
    free(w->offs);
    free(w);
    c->state = NULL;
}

const cd_wk_ops cd_wk_writer_ops = {
    .name = "writer",
    .init = writer_init,
    .begin = writer_begin,
    .unit = writer_unit,
    .end = writer_end,
    .abort = writer_abort,
    .del = writer_del,
    .fini = writer_fini,
};
