/*
 * cd_pipeline_int.h - private to the pipeline: the structures of blocks in
 * flight, units, purges and worker channels, and what cd_pipeline.c (the
 * data path) and cd_pipe_workers.c (the workers) share.
 */
#ifndef CD_PIPELINE_INT_H
#define CD_PIPELINE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "btc_preproc.h"
#include "cd_pipeline.h"
#include "cd_supervisor.h"
#include "cd_util.h"

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
    int stored_slot; /* parser asked to complete it (BLOCK_STORED), -1 none */
    int stored_done; /* that parser marked it indexed in PostgreSQL */
    int ok;          /* finished with CD_PIPE_OK */
    int purge;       /* failed after units reached parsers: remove their rows */
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
    int slot;     /* its index in chan[]: its ring slot and its ack bit */
    int sup_slot; /* its slot in the process table (cd_supervisor.h) */
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
    cd_supervisor *sup; /* the process's table (borrowed) */
    pipe_chan chan[CD_PIPELINE_MAX_CHANS];
    int n_chan;
    int writer_slot, merkle_slot;
    int parser_slot[CD_PIPELINE_MAX_PARSERS];
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
    /* STALL reports of the writer and the merkle worker (by kind) */
    int stall_on[4];
    cd_ipc_stall stall[4];
};

static inline void hexid(char out[65], const uint8_t h[32])
{
    cd_hex_encode_rev(out, h, 32);
}

/* Started, and every worker has said HELLO. */
int cd_pipe_all_up(const cd_pipeline *p);

/* Sends a block reference message (END, ABORT) to every worker. */
void cd_pipe_send_ref_all(cd_pipeline *p, pipe_block *b, uint16_t type, uint32_t n_units);

/* Sends everything that can be sent, in block order, never interleaving. */
void cd_pipe_pump(cd_pipeline *p);

/* Asks a live parser to remove the rows of each failed copy not asked for yet. */
void cd_pipe_purge_pump(cd_pipeline *p);

/* A parser answered the purge of copy `id`. */
void cd_pipe_purge_done(cd_pipeline *p, uint64_t id);

/* Releases ring space of units every consumer has acked, FIFO. */
void cd_pipe_try_release(cd_pipeline *p);

/* Ends a block with a status (CD_PIPE_*): stats, log, block_done; may free it. */
void cd_pipe_finish(cd_pipeline *p, pipe_block *b, int status);

/* Finishes a block once writer, merkle and every parser are done. */
void cd_pipe_check_complete(cd_pipeline *p, pipe_block *b);

/* Asks a live parser to complete b in PostgreSQL (BLOCK_STORED). */
void cd_pipe_send_stored(cd_pipeline *p, pipe_block *b);

/* Runs cd_pipe_check_complete on every unfinished block (a parser came up
 * or went away: a completion may be asked for now). */
void cd_pipe_recheck_all(cd_pipeline *p);

/* The block in flight with this id, or NULL. */
pipe_block *cd_pipe_find_block(cd_pipeline *p, uint64_t id);

/* Frees a block and its units. */
void cd_pipe_free_block(pipe_block *b);

#endif /* CD_PIPELINE_INT_H */
