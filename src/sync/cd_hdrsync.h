/*
 * cd_hdrsync.h - header sync scheduler of the controller: asks peers for
 * headers (getheaders with locators from the header tree, 2000 per reply,
 * again while replies are full), follows new tips announced by `headers` or
 * block `inv`, feeds everything to the header tree, logs progress, and
 * penalises peers that send bad headers.
 *
 * Per peer: at most one getheaders in flight; the next request after a full
 * reply continues from the last header of that reply (so a peer on another
 * branch is followed along its branch). Every ready peer is synced on its
 * own, so sync continues from the others when one is dropped.
 *
 * Bad peers: a reply to our getheaders that does not connect, any header with
 * bad proof of work / nBits / timestamp, a descendant of an invalid block, or
 * more than 2000 headers in one message: the batch is refused as a whole (the
 * tree is untouched), a warning names the peer, the reason and the first bad
 * header, and the peer is dropped and banned (cp2p_peer_ban: from 60 s,
 * doubling per ban in a row; then dialled again). An unsolicited announcement that does not connect
 * is answered with getheaders (we may be behind); a second one in a row from the same peer is
 * treated as misbehaviour.
 *
 * NOTES
 *  - Controller loop only (single-threaded); the cd_hdrsync object borrows
 *    the tree and the manager, which must outlive it.
 *  - The controller calls the cd_hdrsync_on_* functions from its cp2p
 *    handlers and cd_hdrsync_tick() from a periodic timer.
 */
#ifndef CD_HDRSYNC_H
#define CD_HDRSYNC_H

#include <stddef.h>
#include <stdint.h>

#include "conduit_p2p.h"
#include "cd_hdrtree.h"

/* A request unanswered for this long is sent again (to the same peer while
 * it stays connected; a node in IBD ignores getheaders from strangers). */
#define CD_HDRSYNC_TIMEOUT_S 30

typedef struct cd_hdrsync cd_hdrsync;

/* Unsolicited non-connecting announcements in a row that count as
 * misbehaviour. */
#define CD_HDRSYNC_MAX_UNCONNECTED 2

/* ---- the scheduling rule, as a pure function (unit-tested) ---- */

/* What a `headers` message from a peer was, after the tree saw it. */
typedef struct cd_hdrsync_reply {
    size_t n;             /* headers in the message */
    int rc;               /* cd_hdrtree_add's result (unused when n == 0 or
                             n > CD_HDRTREE_MAX_BATCH: not added) */
    size_t bad_index;     /* cd_hdrtree_add_result.bad_index */
    size_t n_new;         /* headers the tree did not have */
    int reply;            /* 1: answers our getheaders; 0: an announcement */
    unsigned unconnected; /* non-connecting announcements in a row before it */
    int others_in_flight; /* another peer has a getheaders outstanding */
    int from_tip;         /* our request's locator started at our tip */
} cd_hdrsync_reply;

typedef enum cd_hdrsync_step {
    CD_HDRSYNC_BAN,         /* misbehaviour: drop and ban the peer */
    CD_HDRSYNC_STORE_ERROR, /* the tree could not store them: ours, not the
                               peer's; logged, nothing asked */
    CD_HDRSYNC_ASK_TIP,     /* getheaders with a locator from our tip */
    CD_HDRSYNC_ASK_LAST,    /* full reply: getheaders from its last header */
    CD_HDRSYNC_PARK,        /* full reply of nothing new while another peer
                               syncs: ask again when that one is done */
    CD_HDRSYNC_DONE         /* a short reply: this peer has no more */
} cd_hdrsync_step;

/* The next step after a `headers` message (see the rules at the top).
 * Returns: the step; *unconnected_out: the peer's new count of
 * non-connecting announcements in a row. */
cd_hdrsync_step cd_hdrsync_next(const cd_hdrsync_reply *r, unsigned *unconnected_out);

/* Creates the scheduler. tree, mgr and base are borrowed and must outlive it.
 * Returns: the object (free with cd_hdrsync_free); never NULL. */
cd_hdrsync *cd_hdrsync_new(cd_hdrtree *tree, cp2p_mgr *mgr, struct event_base *base);

/* Frees it (NULL-safe). Pending ban timers are cancelled. */
void cd_hdrsync_free(cd_hdrsync *s);

/* Peer handshake done: start syncing from it. */
void cd_hdrsync_on_ready(cd_hdrsync *s, cp2p_peer *p);

/* Peer gone: forget its request state. */
void cd_hdrsync_on_disconnect(cd_hdrsync *s, cp2p_peer *p);

/* A `headers` message (n 80-byte headers, contiguous; read during the call
 * only). */
void cd_hdrsync_on_headers(cd_hdrsync *s, cp2p_peer *p, const uint8_t *hdrs, size_t n);

/* Every message before decoding (cp2p on_message): refuses a `headers`
 * message announcing more than 2000 entries with a clear reason. */
void cd_hdrsync_on_message(cd_hdrsync *s, cp2p_peer *p, const char *cmd, const uint8_t *payload,
                           size_t len);

/* An `inv` message: unknown blocks trigger a getheaders. */
void cd_hdrsync_on_inv(cd_hdrsync *s, cp2p_peer *p, const cp2p_inv *inv, size_t n);

/* Called about once a second: resends timed-out requests, logs progress. */
void cd_hdrsync_tick(cd_hdrsync *s);

/* Returns: 1 once some peer answered with fewer than 2000 headers and nothing
 * new is pending (the tree holds everything peers told us about), else 0. */
int cd_hdrsync_synced(const cd_hdrsync *s);

/* Returns: the number of headers added to the tree by this scheduler. */
uint64_t cd_hdrsync_added(const cd_hdrsync *s);

/* Logs the "reorg: ..." line for a tip event (the controller's tip callback
 * calls it). */
void cd_hdrsync_log_tip_event(const cd_hdrtree_tip_event *ev);

#endif /* CD_HDRSYNC_H */
