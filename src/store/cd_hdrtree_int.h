/*
 * cd_hdrtree_int.h - private to the header tree: its structure and what
 * cd_hdrtree.c (the tree in memory) and cd_hdrtree_db.c (LMDB) share.
 */
#ifndef CD_HDRTREE_INT_H
#define CD_HDRTREE_INT_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "btc_header.h"
#include "cd_hdrtree.h"
#include "cd_util.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

#define HDR_REC_LEN  152
#define NODE_SLAB    4096
#define MAX_FUTURE_S 7200
/* "idx" (hash -> seq) is written in bulk, sorted, once this many headers
 * are not yet in it (random B-tree inserts per message would dominate the
 * cost of a sync); lookups by hash scan the short unindexed tail. */
#define IDX_BATCH    65536

/* ---- the tree ---- */

typedef struct node_slab {
    struct node_slab *next;
    size_t used;
    cd_hdr_node nodes[NODE_SLAB];
} node_slab;

struct cd_hdrtree {
    const btc_net *net;
    char *path;
    unsigned flags;
    MDB_env *env;
    MDB_dbi dbi_hdr, dbi_idx, dbi_best, dbi_meta;

    /* hash table: open addressing, linear probing, power-of-two size */
    cd_hdr_node **tab;
    size_t tab_mask;
    size_t count;

    node_slab *slabs;
    cd_hdr_node *free_list; /* nodes given back by a refused batch (via prev) */

    cd_hdr_node **best; /* best[h] = node at height h */
    size_t best_cap;
    cd_hdr_node *tip;

    uint64_t next_seq;
    uint64_t idx_seq;    /* headers with seq < idx_seq are in "idx" */
    cd_hdr_node **unidx; /* stored headers not yet in "idx" */
    size_t n_unidx, cap_unidx;
    int64_t now_override;

    cd_hdrtree_tip_cb tip_cb;
    void *tip_arg;
    cd_hdrtree_bits_fn bits_fn;
    void *bits_arg;

    /* scratch for a batch and for reorg events */
    cd_hdr_node **pending;
    size_t pending_cap;
    const cd_hdr_node **ev_leaving, **ev_joining;
    size_t ev_cap_l, ev_cap_j;

    /* cache of the last bits -> work computation (btc_block_work) */
    uint32_t work_bits;
    btc_u256 work_val;
};

static inline uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline uint32_t hdr_time(const cd_hdr_node *n)
{
    return cd_le32(n->raw + 68);
}

static inline uint32_t hdr_bits(const cd_hdr_node *n)
{
    return cd_le32(n->raw + 72);
}

/* ---- shared by the two files ---- */

/* The hash table: inserts a node (grows the table as needed). */
void cd_hdrtree_tab_insert(cd_hdrtree *t, cd_hdr_node *n);

/* The hash table: the node of a hash, or NULL. */
cd_hdr_node *cd_hdrtree_tab_find(const cd_hdrtree *t, const uint8_t h[32]);

/* The hash table: doubles its size (the first size is 65536). */
void cd_hdrtree_tab_grow(cd_hdrtree *t);

/* A zeroed node from the slabs (or the free list). */
cd_hdr_node *cd_hdrtree_node_alloc(cd_hdrtree *t);

/* Room for n best-chain entries. */
void cd_hdrtree_best_reserve(cd_hdrtree *t, size_t n);

/* Sets n->skip (n->prev and its ancestors are set). */
void cd_hdrtree_set_skip(const cd_hdrtree *t, cd_hdr_node *n);

/* The default nBits rule (btc_pow_next_bits through the tree). */
uint32_t cd_hdrtree_default_bits_fn(const cd_hdrtree *t, const cd_hdr_node *prev, uint32_t time,
                                    void *arg);

/* Writes a node's "hdr" record (MDB_APPEND when is_new). Returns an LMDB
 * code. */
int cd_hdrtree_put_node(cd_hdrtree *t, MDB_txn *txn, const cd_hdr_node *n,
                        int is_new) CD_WARN_UNUSED;

/* Writes the "idx" entries of the unindexed headers and of extra, sorted,
 * then "idx_seq" = new_idx_seq. Returns an LMDB code. */
int cd_hdrtree_idx_write(cd_hdrtree *t, MDB_txn *txn, cd_hdr_node *const *extra, size_t n_extra,
                         uint64_t new_idx_seq) CD_WARN_UNUSED;

/* Remembers a stored header not yet in "idx". */
void cd_hdrtree_unidx_push(cd_hdrtree *t, cd_hdr_node *n);

/* Logs an LMDB error; returns CD_HDRTREE_ESTORE. */
int cd_hdrtree_lmdb_fail(const cd_hdrtree *t, const char *what, int rc);

#endif /* CD_HDRTREE_INT_H */
