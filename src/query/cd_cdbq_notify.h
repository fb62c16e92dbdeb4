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

#include <jansson.h>
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

/* As cd_cdbq_notices, for a reader of tip-filter matches only (the
 * outbound POST to ConduitDB's reference server, cd_http_hooks_cdb.c):
 * spend events are read but give no notice (MATCH and MATCH_GONE only).
 * Out: also *full, 1 when `max` events were read (more may follow at once:
 * a run of one block may go on in the next read), else 0.
 * Returns: 0; EDB; ECORRUPT. */
int cd_cdbq_match_notices(PGconn *pg, int64_t after, int max, cd_cdbq_notice **out, size_t *n,
                          int64_t *last, int *full, char *err, size_t errlen) CD_WARN_UNUSED;

/* The end of the run of notices that starts at v[i] (i < n): the first j
 * > i whose notice differs from v[i] in kind or block (the mempool is a
 * block of its own). One run is one message of ConduitDB's tip-filter
 * format (/ws?notifications=all frames and the reference server's POST). */
size_t cd_cdbq_notice_run(const cd_cdbq_notice *v, size_t n, size_t i);

/* The JSON of a run of n >= 1 notices of one kind (MATCH, MATCH_GONE or
 * SPEND_GONE) and one block, as one reader sees it (has_account: only that
 * account's matches). Matches: ConduitDB's tip-filter body
 * {"blockId": display hex | null, "entries": [{"accountId", "matches":
 * [{"pushDataHashHex", "transactionId", "transactionIndex", "flags"}]}]},
 * one entry per account in the order of their first match, with
 * "orphaned": true for a block that left the best chain. Spends that left:
 * {"blockId", "orphaned": true, "outputSpends": [[out txid, out index,
 * spending txid, input index, block], ...]} (output-spend's JSON rows).
 * The one builder of these messages: /ws and the outbound POST call it.
 * Returns: a new object (json_decref), or NULL when nothing is for the
 * reader (or out of memory). */
json_t *cd_cdbq_notice_json(const cd_cdbq_notice *v, size_t n, int has_account, int64_t account);

#endif /* CD_CDBQ_NOTIFY_H */
