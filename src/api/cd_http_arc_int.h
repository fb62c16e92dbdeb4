/*
 * cd_http_arc_int.h - private to the ARC routes: what cd_http_arc.c
 * (requests, the node connection) and cd_http_arc_cb.c (status records,
 * callbacks) share.
 */
#ifndef CD_HTTP_ARC_INT_H
#define CD_HTTP_ARC_INT_H

#include "cd_http_int.h"
#include "cd_lookup.h"

#include <jansson.h>
#include <stdint.h>

#define ARC_RECS     4096 /* txs with a callback URL remembered */
#define ARC_CB_TRIES 12   /* attempts per callback before it is dropped */
#define ARC_CB_MAX_S 60.0 /* longest back-off between attempts */
#define ARC_CB_QUEUE 4    /* callbacks waiting per tx */

/* A tx broadcast with X-CallbackUrl, kept by the server that took the POST
 * while its callbacks are due. Its status is not here: statuses live only
 * in the servers' shared table (arc_shared_get), which GET reads. */
typedef struct arc_rec {
    int used;
    uint8_t txid[32];
    char *cb_url, *cb_token;
    int cb_mined_done;         /* MINED queued: stop polling */
    json_t *cbq[ARC_CB_QUEUE]; /* callbacks to deliver, oldest first */
    int ncbq, inflight, attempts;
    double next_try;
} arc_rec;

/* "2026-01-02T03:04:05Z" (RFC 3339, UTC). */
void arc_timestamp(char out[32]);

/* The BUMP hex of a mined tx (malloc'd), NULL when it cannot be built. */
char *arc_bump_hex(http_srv *s, const uint8_t txid[32]);

/* The record of txid, or NULL. */
arc_rec *arc_rec_find(const uint8_t txid[32]);

/* The record of txid, created if needed (the oldest without callbacks in
 * flight makes room); NULL when every slot is busy. */
arc_rec *arc_rec_get(const uint8_t txid[32]);

/* The servers' shared status table (cd_http_server_run attaches it). */
void arc_shared_attach(http_arc_slot *tab);

/* Copies the status of txid from the shared table into status/extra: the
 * one place statuses are kept (a newer tx may have taken its slot).
 * Returns 1 if found, else 0. */
int arc_shared_get(const uint8_t txid[32], char status[32], char extra[256]);

/* How a status is written into the shared table. Several servers write
 * the same tx's slot (the POST's server, the node's answer, another
 * server's poll finding it mined), so a write decides from what the slot
 * holds in the same step, under the slot's writer claim: a check with
 * arc_shared_get followed by a write would let another server's word land
 * in between and then be overwritten by an older one. */
typedef enum {
    ARC_PUT_IF_ABSENT, /* only if the table has no status for txid (the
                          POST's RECEIVED: never over a later word) */
    ARC_PUT_FORWARD    /* only if the word ranks at least as high as the
                          recorded one, in ARC's order (RECEIVED < SENT_TO_
                          NETWORK < SEEN_IN_ORPHAN_MEMPOOL < SEEN_ON_NETWORK
                          < DOUBLE_SPEND_ATTEMPTED < REJECTED < MINED) */
} arc_put_mode;

/* Records a status in the shared table as `mode` allows; extra NULL keeps
 * the extra text the slot has for txid ("" if none). Then queues
 * `callback` (taken over; may be NULL) when the status was written and
 * txid has a record with a callback URL (a refused word is not sent: it
 * would tell the client of a step back).
 * Returns: 1 if written, 0 if refused by mode (or no table attached). */
int arc_rec_status(const uint8_t txid[32], const char *status, const char *extra, json_t *callback,
                   arc_put_mode mode) CD_WARN_UNUSED;

/* The rank of a status word in ARC's order (its metamorph_api.proto Status
 * values: RECEIVED 20 ... MINED 120); 0 for a word not in it. */
int arc_status_rank(const char *status);

/* ARC's Callback object (mined: with merklePath, blockHash, blockHeight). */
json_t *arc_callback_obj(const uint8_t txid[32], const char *status, const char *extra,
                         const cd_lookup_tx *mined, const char *bump);

/* Starts the resolver and the once-a-second poll (first use). Returns 0/-1. */
int arc_cb_start(http_srv *s);

/* Routes /arc/...: seg[0] == "arc". Returns H_DONE or H_DB_LOST. */
int cd_http_arc_dispatch(http_srv *s, struct evhttp_request *req, char **seg, int nseg);

#endif /* CD_HTTP_ARC_INT_H */
