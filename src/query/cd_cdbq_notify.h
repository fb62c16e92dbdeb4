/*
 * cd_cdbq_notify.h - the PostgreSQL side of ConduitDB's notification
 * registrations and of its /ws websocket (issue 16, docs/CONDUITDB_API.md):
 * tip-filter registrations per account with their expiry, output-spend
 * registrations, and the notices a /ws client gets, read from the event log
 * (sql/009_events.sql) joined with the registrations (sql/011_cdb_notify.sql).
 *
 * Every function takes a borrowed connection. Return values: 0
 * (CD_LOOKUP_OK); CD_LOOKUP_EINPUT (the registration change was refused,
 * err gets ConduitDB's reason, nothing changed); CD_LOOKUP_EDB (the query
 * failed; err gets one line); CD_LOOKUP_ECORRUPT (a row of an unexpected
 * shape).
 */
#ifndef CD_CDBQ_NOTIFY_H
#define CD_CDBQ_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "cd_err.h"

/* Registers n keys (32 bytes each, natural order) for account, key i for
 * durations[i] seconds from `created` (unix seconds), all or nothing.
 * Returns: 0; EINPUT ("one or more hashes were already registered": a key
 * the account has live); EDB. */
int cd_cdbq_filter_add(PGconn *pg, int64_t account, int64_t created, const uint8_t *keys,
                       const uint32_t *durations, size_t n, char *err,
                       size_t errlen) CD_WARN_UNUSED;

/* Deletes the account's registrations of n keys, all or nothing.
 * Returns: 0; EINPUT ("some pushdata hashes are not registered"); EDB. */
int cd_cdbq_filter_delete(PGconn *pg, int64_t account, const uint8_t *keys, size_t n, char *err,
                          size_t errlen) CD_WARN_UNUSED;

/* Registers (add 1) or unregisters (add 0) n outpoints: txids[i] (internal
 * order), idx[i] (at most INT32_MAX: the caller refuses larger ones).
 * Idempotent. Returns: 0; EDB. */
int cd_cdbq_spend_watch(PGconn *pg, int add, const uint8_t *txids, const uint32_t *idx, size_t n,
                        char *err, size_t errlen) CD_WARN_UNUSED;

/* Unregisters every outpoint. Returns: 0; EDB. */
int cd_cdbq_spend_clear(PGconn *pg, char *err, size_t errlen) CD_WARN_UNUSED;

/* Drops expired tip-filter registrations and their watches.
 * Out: *n, how many. Returns: 0; EDB. */
int cd_cdbq_expire(PGconn *pg, int *n, char *err, size_t errlen) CD_WARN_UNUSED;

/* The id of the newest event (0: none). Out: *id. Returns: 0; EDB. */
int cd_cdbq_events_head(PGconn *pg, int64_t *id, char *err, size_t errlen) CD_WARN_UNUSED;

/* Kinds of notice. */
#define CD_CDBQ_N_SPEND      1 /* a registered outpoint was spent (mempool or block) */
#define CD_CDBQ_N_MATCH      2 /* a live tip-filter key matched (mempool or block) */
#define CD_CDBQ_N_SPEND_GONE 3 /* a block holding such a spend left the best chain */
#define CD_CDBQ_N_MATCH_GONE 4 /* a block holding such a match left the best chain */

/* One thing a /ws client may be told. */
typedef struct cd_cdbq_notice {
    int64_t event; /* the event it comes from */
    int kind;      /* CD_CDBQ_N_* */
    int mempool;   /* 1: no block (block is zero) */
    uint8_t block[32];
    /* spends: */
    uint8_t out_tx[32]; /* internal order */
    uint32_t out_idx;
    uint8_t in_tx[32];
    uint32_t in_idx;
    /* matches: */
    int64_t account;
    uint8_t key[32]; /* natural order */
    uint8_t tx[32];  /* internal order */
    uint32_t idx;    /* output (flags 1) or input index */
    uint32_t flags;  /* 1 output, 2 input, 4 data */
} cd_cdbq_notice;

/* Reads up to `max` events after event id `after` and turns them into
 * notices, in event order: spend events of registered outpoints and key
 * events of keys live for some account at the event's time (one notice per
 * account); the "orphaned" ones (a block that left the best chain,
 * sql/009) as the *_GONE kinds.
 * Out: *out (malloc'd, the caller frees it; NULL when *n = 0), *n; *last,
 * the id of the last event read (after: none).
 * Returns: 0; EDB; ECORRUPT. */
int cd_cdbq_notices(PGconn *pg, int64_t after, int max, cd_cdbq_notice **out, size_t *n,
                    int64_t *last, char *err, size_t errlen) CD_WARN_UNUSED;

#endif /* CD_CDBQ_NOTIFY_H */
