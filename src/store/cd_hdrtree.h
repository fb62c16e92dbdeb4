/*
 * cd_hdrtree.h - the header tree: every block header ever accepted, forks
 * included, persisted in its own LMDB environment (<datadir>/headers/).
 *
 * Each header is stored under its hash with its height, cumulative chain
 * work and status flags; the best chain (most work, ties: first seen) is
 * indexed by height. The controller keeps the whole tree in memory as well
 * (hash -> node table, height -> best-chain node array) so that header sync
 * runs at hundreds of thousands of headers per second; LMDB is written once
 * per headers message (one write transaction per cd_hdrtree_add call).
 *
 * NOTES
 *  - Read-write mode (the controller): exactly one process may open the tree
 *    read-write at a time. The env is opened in the process that uses it and
 *    must not be used after fork().
 *  - Read-only mode (conduit-cli and other readers): opens the env with
 *    MDB_RDONLY and reads LMDB directly, without loading the tree in memory.
 *    Readers are safe while the daemon runs (LMDB MVCC: a reader sees the
 *    last committed headers message, never a half-written one).
 *  - Not thread-safe: one thread uses one cd_hdrtree.
 *  - Validation before anything is stored: a header is accepted only if it
 *    connects to a known header, its nBits decodes to a positive target not
 *    above the network's limit, its hash meets that target, its nBits follows
 *    the network's difficulty rules (see cd_hdrtree_set_bits_check), and its
 *    time is above the median of the 11 previous blocks and at most now + 2 h.
 *    A message with any invalid header is refused as a whole: the tree (memory
 *    and LMDB) is left exactly as it was.
 */
#ifndef CD_HDRTREE_H
#define CD_HDRTREE_H

#include <stddef.h>
#include <stdint.h>

#include "btc_net.h"
#include "cd_err.h"

/* Return codes: CD_HDRTREE_OK (0) and CD_HDRTREE_E* (negative), defined with
 * every other code in cd_err.h (this module's range: -1400..-1499); named
 * by cd_strerror(). */

/* Largest accepted batch (the protocol's MAX_HEADERS_RESULTS). */
#define CD_HDRTREE_MAX_BATCH 2000

/* Status flags of a header (stored). */
#define CD_HDR_VALID_HEADER  0x01u /* header checks passed (always set when stored) */
#define CD_HDR_BLOCK_STORED  0x02u /* raw block in the block store */
#define CD_HDR_BLOCK_INDEXED 0x04u /* block fully indexed in PostgreSQL */
#define CD_HDR_INVALID       0x80u /* block failed validation; descendants refused */

/* Open flags. */
#define CD_HDRTREE_RDONLY 0x1u

typedef struct cd_hdrtree cd_hdrtree;

/* One header of the tree. In read-write mode nodes live in memory for the
 * life of the tree: pointers stay valid until cd_hdrtree_close. */
typedef struct cd_hdr_node {
    uint8_t hash[32]; /* internal byte order */
    uint8_t raw[80];  /* the header as on the wire */
    uint8_t work[32]; /* cumulative chain work, 256-bit big-endian */
    int32_t height;
    uint32_t status;          /* CD_HDR_* */
    struct cd_hdr_node *prev; /* NULL for genesis (and in read-only copies) */
    struct cd_hdr_node *skip; /* ancestor for O(log n) lookups (internal) */
    uint64_t seq;             /* arrival order (tie-break: first seen wins) */
} cd_hdr_node;

/* What the best chain did in one cd_hdrtree_add call. When the new tip
 * extends the old one, fork == old_tip, n_leaving == 0. Arrays are borrowed:
 * valid only during the callback / until the next add. */
typedef struct cd_hdrtree_tip_event {
    const cd_hdr_node *old_tip;
    const cd_hdr_node *new_tip;
    const cd_hdr_node *fork;           /* last common ancestor */
    const cd_hdr_node *const *leaving; /* old tip -> fork (exclusive), tip first */
    size_t n_leaving;
    const cd_hdr_node *const *joining; /* fork (exclusive) -> new tip, ascending */
    size_t n_joining;
} cd_hdrtree_tip_event;

/* Called after the LMDB commit whenever the best tip changes. */
typedef void (*cd_hdrtree_tip_cb)(const cd_hdrtree_tip_event *ev, void *arg);

/* Difficulty-rule hook: returns the nBits the header after `prev` must carry
 * (candidate time `time`), or 0 when the rule cannot be evaluated (then only
 * the limit check applies). Ancestors are reached through prev->prev. */
typedef uint32_t (*cd_hdrtree_bits_fn)(const cd_hdrtree *t, const cd_hdr_node *prev, uint32_t time,
                                       void *arg);

/* Result of one cd_hdrtree_add call. */
typedef struct cd_hdrtree_add_result {
    size_t n_new;            /* headers added to the tree */
    size_t n_known;          /* headers already present (skipped) */
    size_t bad_index;        /* on error: index of the offending header */
    const cd_hdr_node *last; /* last header of the batch (new or known); NULL on error */
    int tip_changed;         /* the best tip moved */
} cd_hdrtree_add_result;

/* Opens (creating if needed, unless read-only) the tree in directory `dir`
 * (created with mode 0700 if missing). The genesis header of `net` is stored
 * on first open; a tree whose genesis differs is refused (CD_HDRTREE_EGENESIS).
 * In read-write mode every stored header is loaded in memory.
 * Returns: 0 and *out (close with cd_hdrtree_close), or a CD_HDRTREE_E* code
 * (logged with the path). */
int cd_hdrtree_open(cd_hdrtree **out, const char *dir, const btc_net *net,
                    unsigned flags) CD_WARN_UNUSED;

/* Closes the tree (flushing the hash index first), frees every node: node
 * pointers from the tree die here. Accepts NULL. */
void cd_hdrtree_close(cd_hdrtree *t);

/* Sets the callback for best-tip changes (NULL to remove); arg is handed
 * back to it and must outlive the tree or the next call. */
void cd_hdrtree_set_tip_cb(cd_hdrtree *t, cd_hdrtree_tip_cb cb, void *arg);

/* Replaces the difficulty-rule hook. By default: regtest requires nBits equal
 * to the parent's (no retargeting); mainnet/testnet/STN use
 * cd_hdrtree_default_bits_fn (see cd_hdrtree.c for what is checked). */
void cd_hdrtree_set_bits_check(cd_hdrtree *t, cd_hdrtree_bits_fn fn, void *arg);

/* Overrides "now" (unix seconds) for the future-time rule; 0 = real clock.
 * For tests of old chains. */
void cd_hdrtree_set_now(cd_hdrtree *t, int64_t now);

/* Validates and adds `n` consecutive 80-byte headers found at hdrs + i*stride
 * (stride 80 for a plain array, 81 for a `headers` payload after its count).
 * Headers must each connect to the tree or to an earlier header of the same
 * batch. All-or-nothing: on any error nothing is stored or kept in memory.
 * One LMDB write transaction per call; the tip callback runs after commit.
 * Returns: 0, or CD_HDRTREE_E* with res->bad_index set. `res` may be NULL. */
int cd_hdrtree_add(cd_hdrtree *t, const uint8_t *hdrs, size_t n, size_t stride,
                   cd_hdrtree_add_result *res) CD_WARN_UNUSED;

/* Returns: the best tip (read-write mode; valid until close). Never NULL
 * once open. */
const cd_hdr_node *cd_hdrtree_tip(const cd_hdrtree *t);

/* Returns: the height of the best tip (-1 before one is loaded). */
int32_t cd_hdrtree_height(const cd_hdrtree *t);

/* Returns: the number of headers in the tree (read-write mode). */
size_t cd_hdrtree_count(const cd_hdrtree *t);

/* In-memory lookup by hash (read-write mode).
 * Returns: the node (valid until close), or NULL if unknown. */
const cd_hdr_node *cd_hdrtree_find(const cd_hdrtree *t, const uint8_t hash[32]);

/* Returns: the best-chain node at `height` (read-write mode; valid until
 * close), or NULL if above the tip. */
const cd_hdr_node *cd_hdrtree_at(const cd_hdrtree *t, int32_t height);

/* Returns: the ancestor of `n` at `height` (<= n->height; valid until
 * close), or NULL. Read-write mode. */
const cd_hdr_node *cd_hdrtree_ancestor(const cd_hdrtree *t, const cd_hdr_node *n, int32_t height);

/* Returns: 1 if `n` is on the best chain, else 0. */
int cd_hdrtree_on_best(const cd_hdrtree *t, const cd_hdr_node *n);

/* Returns: the median time of the 11 blocks ending at `n` (BIP113
 * median-time-past; fewer near genesis; btc_pow_median_time's rule). */
uint32_t cd_hdrtree_mtp(const cd_hdr_node *n);

/* Builds a getheaders locator from the best tip: tip, then stepping back 1
 * for the first 10 entries, then doubling, always ending with genesis.
 * Out: at most `max` 32-byte hashes into `out`. Returns: their count. */
size_t cd_hdrtree_locator(const cd_hdrtree *t, uint8_t (*out)[32], size_t max);

/* Same, starting from any node of the tree (e.g. the last header a peer sent,
 * to continue along that peer's branch). */
size_t cd_hdrtree_locator_from(const cd_hdrtree *t, const cd_hdr_node *from, uint8_t (*out)[32],
                               size_t max);

/* Sets/clears status flags of a header and persists them (one txn).
 * Returns 0, CD_HDRTREE_ENOTFOUND or CD_HDRTREE_ESTORE. */
int cd_hdrtree_set_status(cd_hdrtree *t, const uint8_t hash[32], uint32_t set,
                          uint32_t clear) CD_WARN_UNUSED;

/* Brings the hash index used by read-only lookups up to date (one txn).
 * The tree does it by itself in bulk; the controller also calls it when sync
 * goes idle so readers find recent headers without a scan.
 * Returns 0, CD_HDRTREE_ERDONLY or CD_HDRTREE_ESTORE. */
int cd_hdrtree_flush_index(cd_hdrtree *t) CD_WARN_UNUSED;

/* ---- lookups that work in both modes (read-only: straight from LMDB) ---- */

/* Copies the best-chain header at `height` into *out (out->prev is NULL in
 * read-only mode). Returns 0 or CD_HDRTREE_ENOTFOUND / CD_HDRTREE_ESTORE. */
int cd_hdrtree_get_at(cd_hdrtree *t, int32_t height, cd_hdr_node *out) CD_WARN_UNUSED;

/* Copies the header `hash` into *out. Same returns. */
int cd_hdrtree_get(cd_hdrtree *t, const uint8_t hash[32], cd_hdr_node *out) CD_WARN_UNUSED;

/* Copies the best tip into *out. Same returns. */
int cd_hdrtree_get_tip(cd_hdrtree *t, cd_hdr_node *out) CD_WARN_UNUSED;

#endif /* CD_HDRTREE_H */
