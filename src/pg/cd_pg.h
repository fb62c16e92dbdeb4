/*
 * cd_pg.h - the PostgreSQL side of the transaction index.
 *
 * One cd_pg handle wraps one libpq connection, opened in the process that uses
 * it (never across fork()). It offers:
 *   - connection with back-off retry (a database that goes away pauses the
 *     caller; nothing is lost, nothing crash-loops);
 *   - the migration runner (sql/NNN_name.sql compiled into the binary);
 *   - the unit writer: a work unit's transaction, input and pushdata rows are
 *     sent with COPY (binary or text) and committed in ONE transaction with a
 *     marker row in indexed_units, so a unit is written exactly once however
 *     often it is retried;
 *   - block bookkeeping: register a block, mark it indexed once all its units
 *     are committed, advance the indexed tip in height order.
 *
 * Errors: functions return 0 on success and a negative CD_PG_E* code on
 * failure, after logging what failed (SQL state, table, block). Functions
 * that talk to the server retry connection loss themselves (see
 * cd_pg_set_retry) and only return CD_PG_EDOWN when told to stop.
 */
#ifndef CD_PG_H
#define CD_PG_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "cd_config.h"
#include "cd_err.h"

/* ---- return codes ----
 * CD_PG_OK (0) and CD_PG_E* / CD_PG_ERROR (negative; this module's range
 * -1500..-1599 of cd_err.h, named by cd_strerror()). */

/* Pushdata flags (DESIGN.md section 4). */
#define CD_PG_PUSH_OUTPUT 1
#define CD_PG_PUSH_INPUT  2
#define CD_PG_PUSH_DATA   4

/* ---- migrations (generated from sql/ by cd_pg_embed.py) ---- */
typedef struct cd_pg_migration {
    int version;
    const char *name;
    const char *sql;
} cd_pg_migration;
extern const cd_pg_migration cd_pg_migrations[]; /* ends with {0, NULL, NULL} */
extern const int cd_pg_schema_latest;            /* highest version known */

/* ---- opening a session: one way, from the configuration ---- */

/* What a session is for. Both fields are optional; a NULL cd_pg_session *
 * means neither. Values pg_conninfo sets itself win over these. */
typedef struct cd_pg_session {
    unsigned connect_timeout_s;   /* libpq connect_timeout; 0: libpq's (none) */
    const char *application_name; /* NULL: libpq's (none) */
} cd_pg_session;

/* libpq keyword/value arrays for the *Params connect functions with
 * expand_dbname = 1: connect_timeout and application_name (when given)
 * first, then dbname = cfg->pg_conninfo, which libpq expands (a conninfo
 * string or URI; "" means the PG* environment defaults). */
typedef struct cd_pg_params {
    const char *keys[4]; /* NULL-terminated */
    const char *vals[4];
    char timeout[16]; /* storage for vals[] */
} cd_pg_params;

/*
 * Builds the parameters of a session for cfg: what every PostgreSQL session
 * of conduitd and conduit-cli is opened with (the handles below, the HTTP
 * server's connection, the mempool module's asynchronous connection
 * (PQconnectStartParams), main's PQpingParams check).
 * In:  cfg (pg_conninfo), how (may be NULL).
 * Out: *p; its arrays point into *p, how->application_name and
 *      cfg->pg_conninfo, so all three must outlive the use of *p.
 */
void cd_pg_params_init(cd_pg_params *p, const cd_config *cfg, const cd_pg_session *how);

/*
 * Opens a blocking session (one attempt) with cd_pg_params_init's
 * parameters.
 * Returns: the connection, owned by the caller (PQfinish), also when it
 *          failed: check PQstatus() == CONNECTION_OK. NULL only when libpq
 *          cannot allocate.
 */
PGconn *cd_pg_open(const cd_config *cfg, const cd_pg_session *how) CD_WARN_UNUSED;

/* ---- the retrying connection handle ---- */
typedef struct cd_pg cd_pg;

/* Creates a handle for cfg's database; does not connect (cd_pg_connect
 * opens the session as cd_pg_open does, with the retry policy below).
 * pg_conninfo and how->application_name are copied: cfg and how need not
 * outlive the handle. Returns the handle (never NULL; allocation failure
 * aborts); free with cd_pg_free (accepts NULL). */
cd_pg *cd_pg_new(const cd_config *cfg, const cd_pg_session *how);
void cd_pg_free(cd_pg *pg);

/* Retry policy for connection loss. max_attempts 0 = forever (the daemon's
 * workers: the pipeline pauses while PG is down); stop, if not NULL, is polled
 * between attempts (a SIGTERM flag) and ends the wait with CD_PG_EDOWN.
 * Back-off starts at 100 ms and doubles up to max_backoff_ms. Defaults:
 * forever, no stop flag, 5000 ms. */
void cd_pg_set_retry(cd_pg *pg, unsigned max_attempts, unsigned max_backoff_ms,
                     const volatile sig_atomic_t *stop);

/* Connects (with the retry policy) if not connected. Sets
 * synchronous_commit=off for the session when `bulk` was requested with
 * cd_pg_set_bulk. Returns CD_PG_OK or CD_PG_EDOWN. */
int cd_pg_connect(cd_pg *pg) CD_WARN_UNUSED;

/* Session setting: synchronous_commit off. Used only by the benchmark tool
 * (conduit-index-file --bulk, to measure the lever); the daemon keeps
 * commits synchronous (docs/PERFORMANCE.md, "Not changed, and why").
 * Takes effect on the next (re)connect. */
void cd_pg_set_bulk(cd_pg *pg, int on);

/* Returns: the live connection, or NULL when not connected. Borrowed (the
 * handle owns it): valid until the next cd_pg_* call on this handle. */
PGconn *cd_pg_conn(cd_pg *pg);

/* Runs one statement without parameters, retrying connection loss. Returns
 * CD_PG_OK, CD_PG_ERROR or CD_PG_EDOWN. */
int cd_pg_exec(cd_pg *pg, const char *sql) CD_WARN_UNUSED;

/* ---- schema ---- */

/* Applies the missing migrations, each in its own transaction with its
 * cd_schema_version row; idempotent (an up-to-date database is left alone),
 * safe when several processes start at once (advisory lock). Returns
 * CD_PG_OK; CD_PG_ENEWER (logged with both versions) when the database has a
 * version above cd_pg_schema_latest; CD_PG_ERROR / CD_PG_EDOWN. */
int cd_pg_migrate(cd_pg *pg) CD_WARN_UNUSED;

/* Out: *out, the current schema version of the database (0 when none).
 * Returns: CD_PG_OK, CD_PG_ERROR or CD_PG_EDOWN. */
int cd_pg_schema_version(cd_pg *pg, int *out) CD_WARN_UNUSED;

/* ---- COPY row buffers for one work unit ---- */

typedef enum cd_pg_copy_format {
    CD_PG_COPY_BINARY = 0,
    CD_PG_COPY_TEXT = 1,
} cd_pg_copy_format;

typedef struct cd_pg_buf {
    uint8_t *p;
    size_t len, cap;
    uint64_t rows;
} cd_pg_buf;

/* The marker of one unit whose rows sit in a batch (cd_pg_batch_*). */
typedef struct cd_pg_marker {
    int64_t block_id;
    uint32_t unit_no, first_tx, tx_count;
} cd_pg_marker;

/* A unit's rows, encoded for COPY as they are produced. Reused across units
 * (cd_pg_unit_reset keeps the memory). */
typedef struct cd_pg_unit {
    int64_t block_id;
    uint32_t unit_no;
    uint32_t first_tx;
    uint32_t tx_count; /* counted by cd_pg_unit_add_tx */
    cd_pg_copy_format format;
    cd_pg_buf tx, in, pd, out;
    /* streaming (between cd_pg_unit_open and cd_pg_unit_close): a buffer
     * that reaches flush_bytes is sent with COPY inside the open
     * transaction and emptied, so a unit of any size (a 4 GB transaction
     * with millions of outputs) needs at most 4 x flush_bytes of memory */
    cd_pg *stream;
    size_t flush_bytes;  /* default CD_PG_FLUSH_BYTES */
    int stream_rc;       /* first failure while streaming */
    uint32_t expect_txs; /* streaming: tx count the unit will have (0: unknown), so
                          * cd_pg_unit_open can compare it with a committed marker */
    /* batch: markers of the units added so far, committed with their rows */
    cd_pg_marker *marks;
    size_t n_marks, cap_marks;
    uint32_t mark_start; /* tx_count when the current unit was added */
} cd_pg_unit;

#define CD_PG_FLUSH_BYTES (16u << 20)

/* init: an empty unit (no allocation yet); reset: empties it for the next
 * unit, keeping its memory; free: releases the memory (the struct itself is
 * the caller's). */
void cd_pg_unit_init(cd_pg_unit *u, cd_pg_copy_format format);
void cd_pg_unit_reset(cd_pg_unit *u, int64_t block_id, uint32_t unit_no, uint32_t first_tx);
void cd_pg_unit_free(cd_pg_unit *u);

/* Append one row, encoded at once (buffers grow with cd_xrealloc; while the
 * unit streams, a full buffer is sent and its first failure kept in
 * u->stream_rc for cd_pg_unit_close). Hashes in internal order; copied. */
void cd_pg_unit_add_tx(cd_pg_unit *u, uint32_t tx_pos, const uint8_t txid[32], uint64_t offset,
                       uint32_t size);
void cd_pg_unit_add_input(cd_pg_unit *u, uint32_t tx_pos, uint32_t in_idx,
                          const uint8_t prev_hash[32], uint32_t prev_idx);
void cd_pg_unit_add_push(cd_pg_unit *u, uint32_t tx_pos, uint32_t idx, unsigned flags,
                         const uint8_t key[32]);
/* outputs (sql/007): script NULL = not stored (the row's script is NULL),
 * else script_len bytes stored. */
void cd_pg_unit_add_output(cd_pg_unit *u, uint32_t tx_pos, uint32_t idx, uint64_t value,
                           const uint8_t script_hash[32], const uint8_t *script, size_t script_len);

/*
 * Writes the unit exactly once: BEGIN; insert the marker (block_id, unit_no)
 * ON CONFLICT DO NOTHING; if it already existed ROLLBACK and report it;
 * otherwise COPY the three tables and COMMIT. Connection loss at any point
 * (including an unknown COMMIT outcome) reconnects with back-off and starts
 * over; the marker makes the retry safe.
 * Returns: 0 = written; 1 = already committed before (nothing written);
 *          CD_PG_EUNIT when the committed marker covers another tx range
 *          (first_tx/tx_count differ: the unit size changed between runs);
 *          CD_PG_ERROR / CD_PG_EDOWN.
 */
int cd_pg_write_unit(cd_pg *pg, const cd_pg_unit *u) CD_WARN_UNUSED;

/*
 * The streaming form of cd_pg_write_unit, for units produced row by row:
 *   cd_pg_unit_reset(u, ...);
 *   rc = cd_pg_unit_open(pg, u);   0: open; 1: already committed (done);
 *                                  CD_PG_EUNIT / errors
 *   ... cd_pg_unit_add_* (rows stream out in COPY batches) ...
 *   rc = cd_pg_unit_close(pg, u);  0: committed with its marker; 1: another
 *                                  writer committed it meanwhile (rows
 *                                  discarded); CD_PG_EAGAIN: the connection
 *                                  was lost, produce the unit again from
 *                                  open; CD_PG_EUNIT / errors
 * or cd_pg_unit_cancel(pg, u) to abandon it (rolls back). open retries
 * connection loss itself; rows already streamed cannot be replayed, hence
 * CD_PG_EAGAIN from close.
 */
int cd_pg_unit_open(cd_pg *pg, cd_pg_unit *u) CD_WARN_UNUSED;
int cd_pg_unit_close(cd_pg *pg, cd_pg_unit *u) CD_WARN_UNUSED;
void cd_pg_unit_cancel(cd_pg *pg, cd_pg_unit *u);

/*
 * Batches: the rows and markers of several units in ONE transaction, for a
 * parser that has more units queued than it has written (catch-up). Every
 * statement and COPY costs PostgreSQL a fixed amount (parse, plan, executor
 * start, ~800 tuple slots per COPY), which for blocks of a few thousand
 * transactions or less outweighs the rows; a batch pays it once. Exactly
 * once is unchanged: a unit's marker commits together with its rows.
 *
 *   rc = cd_pg_batch_begin(pg, u);       BEGIN (reconnects as needed); drops
 *                                        the rows and markers of u
 *   for each unit:
 *     cd_pg_batch_register(...)          a block registered inside the batch
 *                                        (only a block no other writer
 *                                        registers concurrently: a block of
 *                                        one unit)
 *     rc = cd_pg_batch_add(pg, u, ...);  0: add its rows now (cd_pg_unit_add_*
 *                                        with u->block_id set), then
 *                                        cd_pg_batch_unit_done(u);
 *                                        1: committed before, skip it;
 *                                        CD_PG_EUNIT
 *   rc = cd_pg_batch_commit(pg, u);      0: every added unit committed;
 *                                        1: one of them was committed by
 *                                        another writer meanwhile (all rolled
 *                                        back: run the batch again)
 * Any call may return CD_PG_EAGAIN: the connection was lost and the batch
 * rolled back; run it again from cd_pg_batch_begin (bytes are still held).
 * cd_pg_batch_cancel rolls back.
 */
int cd_pg_batch_begin(cd_pg *pg, cd_pg_unit *u) CD_WARN_UNUSED;
int cd_pg_batch_register(cd_pg *pg, const uint8_t hash[32], const uint8_t header[80],
                         int32_t height, uint64_t tx_count, uint64_t size,
                         int64_t *block_id) CD_WARN_UNUSED;
int cd_pg_batch_add(cd_pg *pg, cd_pg_unit *u, int64_t block_id, uint32_t unit_no, uint32_t first_tx,
                    uint32_t expect_txs) CD_WARN_UNUSED;
/* The checks of cd_pg_batch_add for n units in one statement, inside the
 * batch (after cd_pg_batch_begin, before any unit is added): units[i] is
 * {block_id, unit_no, first_tx, expected tx count (0: unknown)};
 * state[i] = 0 (to write), 1 (committed before: skip) or CD_PG_EUNIT.
 * Returns 0 or what cd_pg_batch_add would (CD_PG_EAGAIN, errors). Units
 * checked this way are then added with cd_pg_batch_add_checked (same
 * contract as cd_pg_batch_add returning 0). The parser worker uses this
 * set-based form; cd_pg_batch_add is the unit-at-a-time one (it checks, then
 * calls cd_pg_batch_add_checked), kept for callers with one unit and as the
 * reference the unit tests compare the set-based form with. */
int cd_pg_batch_check(cd_pg *pg, cd_pg_unit *u, const cd_pg_marker *units, size_t n,
                      int *state) CD_WARN_UNUSED;
int cd_pg_batch_add_checked(cd_pg *pg, cd_pg_unit *u, int64_t block_id, uint32_t unit_no,
                            uint32_t first_tx) CD_WARN_UNUSED;
void cd_pg_batch_unit_done(cd_pg_unit *u);
int cd_pg_batch_commit(cd_pg *pg, cd_pg_unit *u) CD_WARN_UNUSED;
void cd_pg_batch_cancel(cd_pg *pg, cd_pg_unit *u);

/* ---- blocks and the tip ---- */

/* Registers a block (idempotent on its hash). hash and header in internal
 * order; header is 80 bytes. Out: *block_id.
 * Returns: CD_PG_OK, CD_PG_ERROR or CD_PG_EDOWN. */
int cd_pg_block_register(cd_pg *pg, const uint8_t hash[32], const uint8_t header[80],
                         int32_t height, uint64_t tx_count, uint64_t size,
                         int64_t *block_id) CD_WARN_UNUSED;

/* One block to register with cd_pg_blocks_register. */
typedef struct cd_pg_block_info {
    uint8_t hash[32]; /* internal order */
    uint8_t header[80];
    int32_t height; /* -1: unknown */
    uint64_t tx_count;
    uint64_t size;
} cd_pg_block_info;

/* cd_pg_block_register for n blocks with DISTINCT hashes, in one statement
 * and one transaction of its own (committed on return, like
 * cd_pg_block_register). Out: block_ids[i], blocks[i]'s id (n entries, the
 * caller's). Returns: CD_PG_OK, CD_PG_ERROR or CD_PG_EDOWN. */
int cd_pg_blocks_register(cd_pg *pg, const cd_pg_block_info *blocks, size_t n,
                          int64_t *block_ids) CD_WARN_UNUSED;

/* Marks the block indexed after checking that n_units markers exist covering
 * its tx_count transactions (the caller has verified the merkle root).
 * Returns CD_PG_OK, CD_PG_EINCOMPLETE (units missing; nothing changed), or
 * an error. Idempotent. */
int cd_pg_block_set_indexed(cd_pg *pg, int64_t block_id, uint32_t n_units) CD_WARN_UNUSED;

/* Advances the indexed tip to this block: it must be indexed, at height
 * tip+1 and a child of the tip (or be the first tip). A block already on the
 * best chain at or below the tip is a no-op (CD_PG_OK). Sets
 * on_best_chain in the same transaction. Returns CD_PG_OK,
 * CD_PG_EINCOMPLETE (not indexed or out of order), or an error. */
int cd_pg_tip_advance(cd_pg *pg, int64_t block_id) CD_WARN_UNUSED;

/*
 * The daemon's completion step, run by a parser after each unit commit (the
 * last committer of a block finds it complete): under a transaction-level
 * advisory lock (so concurrent parsers serialise), if the block's committed
 * units cover all its tx_count transactions, recompute the merkle root from
 * the txids stored in `transactions` and compare it with the header's (the
 * index checks its own content, CVE-2012-2459 mutation included); on a match
 * mark the block indexed, then advance the tip as far as possible in height
 * order (cd_pg_tip_advance_all).
 * A block whose units are all present but whose stored txids do not give
 * the root holds the rows of a wrong copy (a peer sent a changed block, or
 * the CVE-2012-2459 mutation): its rows and unit markers are removed in the
 * same transaction (cd_block_purge, sql/005), so a right copy indexes
 * afterwards. Nothing of an indexed block is ever removed.
 * Out: *indexed (may be NULL) 1 if the block is indexed now.
 * Returns: CD_PG_OK (complete or not yet); CD_PG_EMERKLE (all units present
 *          but the root differs: logged, rows removed, block left
 *          unindexed: the caller must have the block indexed again from a
 *          good copy); errors.
 */
int cd_pg_block_try_complete(cd_pg *pg, int64_t block_id, int *indexed) CD_WARN_UNUSED;

/* cd_pg_block_try_complete for n blocks in one transaction (one lock, one
 * read of all their unit coverage and txids, one UPDATE for those that
 * pass, one tip advance): what a parser runs after committing a batch.
 * Out: *tip_height (may be NULL): the indexed tip's height after it (-1:
 *      none); purged[i] (purged may be NULL; n entries) 1 if block i's root
 *      differed and its rows were removed.
 * Returns: CD_PG_OK; CD_PG_EMERKLE if any block's root differed (after the
 *          others are done); errors. */
/* The block_ids of n blocks given by hash (internal byte order), in order;
 * -1 for a hash not registered. What a parser needs to complete the blocks
 * the controller says are stored (BLOCK_STORED: issue 11, F6).
 * Out: ids (n entries, the caller's).
 * Returns: CD_PG_OK or errors. */
int cd_pg_block_ids(cd_pg *pg, const uint8_t (*hashes)[32], size_t n, int64_t *ids) CD_WARN_UNUSED;

int cd_pg_blocks_try_complete(cd_pg *pg, const int64_t *block_ids, size_t n, int32_t *tip_height,
                              uint8_t *purged) CD_WARN_UNUSED;

/* Removes the rows and unit markers of a block that is not indexed (a copy
 * that failed its checks after some of its units were committed), in one
 * transaction under the tip lock (cd_block_purge, sql/005). The block is
 * named by hash (internal order), or by block_id when hash is NULL.
 * Out: *purged (may be NULL) 1 if a non-indexed block was found.
 * Returns CD_PG_OK or an error. An indexed block is left alone. */
int cd_pg_block_purge(cd_pg *pg, const uint8_t hash[32], int64_t block_id,
                      int *purged) CD_WARN_UNUSED;

/* Blocks that are not indexed but have committed unit markers: rows written
 * from bytes nobody has verified yet (blocks in flight at a crash, or a
 * wrong copy an older version left behind), lowest height first.
 * Out: *blocks and *block_ids (malloc'd, free() both; *n entries).
 * Returns CD_PG_OK or an error. */
int cd_pg_blocks_unverified(cd_pg *pg, cd_pg_block_info **blocks, int64_t **block_ids,
                            size_t *n) CD_WARN_UNUSED;

/* Advances the tip while the block at tip+1 that links to the tip is
 * indexed (first tip: the lowest registered block, once indexed). Returns
 * CD_PG_OK with *height (may be NULL) the new tip height (-1: none). */
int cd_pg_tip_advance_all(cd_pg *pg, int32_t *height) CD_WARN_UNUSED;

/* ---- the secondary indexes (cd_pg_indexes.c, sql/013) ----
 * The random-key indexes catch-up mode drops and rebuilds: transactions
 * (tx_hash) and inputs (prev_hash), hash indexes; pushdata (push_hash) and
 * outputs (script_hash), B-trees. Their list and definitions are the database's table
 * secondary_indexes (sql/013), read here, by the tests and the benchmarks.
 * Measured (PERFORMANCE.md): maintaining them live while catching up costs
 * ~3x the load time, because every row inserts a random 32-byte key. Primary
 * keys and the unit markers are never dropped, so exactly-once holds either
 * way. */

/* Room for the rows of cd_secondary_indexes_state(): the catalog's 4
 * indexes on each partition (sql/017), so 128 partitions; more is refused
 * (logged). partition_txs = 10M gives 128 at 1.28G txs. */
#define CD_PG_SECONDARY_MAX 512

/* One secondary index of one partition (sql/017: each partition has its
 * own) and its state in the database. */
typedef struct cd_pg_secondary {
    char name[64];       /* e.g. transactions_p0_hash_idx */
    char tbl[64];        /* the partition it indexes */
    char state[16];      /* "valid", "missing", "invalid" (pg_index.indisvalid
                          * false) or "other" (another definition) */
    long long rel_bytes; /* its partition's size (heap), for the build order */
    int closed;          /* 1: a closed partition (catch-up keeps its indexes) */
    int hash;            /* 1: a hash index (catch-up keeps it: cd_pg_secondary_indexes) */
} cd_pg_secondary;

/*
 * Reads the catalog with each index's state, the largest table first.
 * In:  cap, the room in out (CD_PG_SECONDARY_MAX is enough).
 * Out: out[0..*n), *n.
 * Returns: CD_PG_OK, CD_PG_ERROR (also: more rows than cap, logged) or
 *          CD_PG_EDOWN.
 */
int cd_pg_secondary_list(cd_pg *pg, cd_pg_secondary *out, size_t cap, size_t *n) CD_WARN_UNUSED;

/* Returns: 1 when s is present, valid and as defined, else 0. */
int cd_pg_secondary_valid(const cd_pg_secondary *s);

/* Returns: 1 when catch-up drops s (cd_pg_secondary_indexes with on = 0:
 * a B-tree of the open tip partition), else 0. */
int cd_pg_secondary_catchup_drops(const cd_pg_secondary *s);

/*
 * Builds (create = 1) or drops (create = 0) one secondary index, in one
 * transaction of its own: cd_secondary_index_create / _drop (sql/013), which
 * wait for another session working on the same index, replace an invalid
 * index or one of another definition, and do nothing when there is nothing
 * to do. A build takes minutes on a large chain.
 * In:  name, an index of the catalog.
 * Out: result (may be NULL; result_cap bytes): "present", "built" or
 *      "rebuilt" (create), "dropped" or "absent" (drop).
 * Returns: CD_PG_OK, CD_PG_ERROR or CD_PG_EDOWN.
 */
int cd_pg_secondary_one(cd_pg *pg, const char *name, int create, char *result,
                        size_t result_cap) CD_WARN_UNUSED;

/*
 * Bulk-load switch, one session, one index after the other: on = 0 drops
 * the B-trees of the open tip partition (before a large catch-up; lookups
 * by push_hash / script_hash in it are then slow; a closed partition
 * receives no live rows and keeps its own; a hash index stays: PostgreSQL
 * builds one by inserting its rows one at a time, each WAL-logged, so a
 * build after the load costs about what keeping it live does: measured
 * 3.4-4.4x a B-tree build, docs/PERFORMANCE.md "Hash indexes in
 * catch-up"), on = 1 builds every one that is not valid, on any partition
 * (after catching up). Idempotent; each index commits on its own.
 * Returns: CD_PG_OK, CD_PG_ERROR or CD_PG_EDOWN.
 */
int cd_pg_secondary_indexes(cd_pg *pg, int on) CD_WARN_UNUSED;

/* ---- building them in parallel (catch-up's helper) ---- */

#define CD_PG_BUILD_MAX_SESSIONS 16

/* What the server allows a session (pg_settings). */
typedef struct cd_pg_build_limits {
    long long mem_kb;         /* maintenance_work_mem now, kB */
    long long mem_max_kb;     /* its max_val, kB (-1: unknown) */
    int workers_max;          /* max_parallel_maintenance_workers' max_val */
    int max_parallel_workers; /* the server's pool of parallel workers */
    int max_worker_processes;
} cd_pg_build_limits;

/* How to build: sessions at once, and each session's settings. */
typedef struct cd_pg_build_plan {
    int sessions;     /* 1..CD_PG_BUILD_MAX_SESSIONS */
    long long mem_kb; /* maintenance_work_mem per session, kB */
    int workers;      /* max_parallel_maintenance_workers per session */
} cd_pg_build_plan;

/* What a build did. */
typedef struct cd_pg_build_stats {
    int built;        /* indexes built or rebuilt (not "present") */
    double longest_s; /* the slowest index's build */
} cd_pg_build_stats;

/*
 * Reads the server's limits for index builds (pg_settings).
 * Out: *lim (conservative values for a setting the server does not have).
 * Returns: CD_PG_OK, CD_PG_ERROR or CD_PG_EDOWN.
 */
int cd_pg_build_limits_read(cd_pg *pg, cd_pg_build_limits *lim) CD_WARN_UNUSED;

/*
 * The rule (docs/PERFORMANCE.md, "Index build"): sessions = min(cores,
 * n_todo); maintenance_work_mem per session = RAM / 4 / sessions, at least
 * the server's current value, at most its max_val; parallel workers per
 * session = cores / sessions, within max_parallel_workers /
 * max_worker_processes shared by the sessions and
 * max_parallel_maintenance_workers' max_val.
 * In:  lim, cores (< 1: 1), ram_bytes (the machine's), n_todo (indexes to
 *      build; < 1: 1).
 * Out: *out.
 */
void cd_pg_build_plan_rule(const cd_pg_build_limits *lim, int cores, long long ram_bytes,
                           int n_todo, cd_pg_build_plan *out);

/*
 * Builds the named secondary indexes (cd_secondary_index_create each, one
 * transaction per index) over plan->sessions sessions of their own opened
 * from cfg, in the order given (give the largest first: the longest build
 * starts first): each session takes the next name when its build ends. A
 * build already done or running elsewhere is waited for and counted
 * "present". Blocks until all are done; logs each index's time. After a
 * failure no further build starts (the running ones finish); the caller
 * retries the whole set (idempotent).
 * In:  names[0..n).
 * Out: *stats.
 * Returns: CD_PG_OK, CD_PG_ERROR (logged) or CD_PG_EDOWN.
 */
int cd_pg_secondary_build(const cd_config *cfg, const cd_pg_build_plan *plan,
                          const char *const *names, size_t n,
                          cd_pg_build_stats *stats) CD_WARN_UNUSED;

/*
 * For recovery: the transaction ranges of a block that no committed unit
 * covers. Out: *indexed; *gaps (malloc'd, free() it; NULL when none) holds
 * *n_gaps pairs [start, end) of tx positions. Returns CD_PG_OK or an error.
 */
int cd_pg_block_gaps(cd_pg *pg, int64_t block_id, uint64_t tx_count, int *indexed, uint64_t **gaps,
                     size_t *n_gaps) CD_WARN_UNUSED;

/* Out: *height, the height of the indexed tip, -1 when there is none.
 * Returns: CD_PG_OK, CD_PG_ERROR or CD_PG_EDOWN. */
int cd_pg_tip_height(cd_pg *pg, int32_t *height) CD_WARN_UNUSED;

/* Out: *done, the number of committed markers of unit `unit_no` of the
 * block, 0 or 1 (for recovery: which units to redo).
 * Returns: CD_PG_OK or an error. */
int cd_pg_unit_done(cd_pg *pg, int64_t block_id, uint32_t unit_no, int *done) CD_WARN_UNUSED;

/* ---- height-range partitions (cd_pg_partition.c, sql/017) ----
 * transactions, inputs, pushdata and outputs are partitioned by range of
 * block_id; the open tip partition takes new blocks until a roll closes it
 * (cd_partition_roll). The list is the table `partitions`. */

/* The partitions as the status shows them. */
typedef struct cd_pg_partitions {
    int32_t count;   /* partitions of each table (the four have as many) */
    int64_t tip_lo;  /* the open tip's lowest block_id; -1: MINVALUE */
    int64_t tip_txs; /* transactions in the open tip (exact: indexed units) */
} cd_pg_partitions;

/*
 * Reads the partitions' figures (cd_partitions_state(), sql/017): a range
 * read of indexed_units from the tip's bound, cheap while the tip is small.
 * Out: *out.
 * Returns: CD_PG_OK or CD_PG_ERROR (logged).
 */
int cd_pg_partitions_read(cd_pg *pg, cd_pg_partitions *out) CD_WARN_UNUSED;

/*
 * Closes the open tip partitions if they hold at least max_txs
 * transactions (cd_partition_roll, one transaction: detach, CHECK (a scan
 * of the tip), attach with its upper bound, new empty tip), then ANALYZEs
 * the closed ones (after the commit: the roll's locks are already gone).
 * The roll gives up, changing nothing, when it cannot take the four
 * tables' locks within half of deadlock_timeout (a unit or a query holds
 * one): *bound -1 and *busy 1; the caller tries again later.
 * In:  max_txs > 0.
 * Out: *bound the closed partitions' upper bound (the new tip's lower), -1
 *      when nothing was rolled; *busy (may be NULL) 1 when the locks were
 *      not granted; *secs (may be NULL) the roll's transaction time (the
 *      stall it imposed on indexing), 0 when nothing was rolled.
 * Returns: CD_PG_OK (rolled or not) or CD_PG_ERROR (logged).
 */
int cd_pg_partition_roll(cd_pg *pg, int64_t max_txs, int64_t *bound, int *busy,
                         double *secs) CD_WARN_UNUSED;

/* ---- merging closed partitions in levels (cd_pg_partition_merge.c,
 * sql/019) ----
 * A merge copies the oldest fan_in closed partitions of the lowest level
 * that has fan_in of them into staging tables (prepare: hours at 10^9 txs,
 * no lock a writer waits for), then swaps the copy in (a short catalog
 * transaction under the roll's locks) unless a write into their range
 * committed meanwhile. */

/* What a swap did (cd_pg_partition_merge_swap). */
typedef enum cd_pg_merge_outcome {
    CD_PG_MERGE_NONE = 0, /* no prepared merge to swap */
    CD_PG_MERGE_MERGED,   /* swapped in: one partition of level + 1 */
    CD_PG_MERGE_CHANGED,  /* a write into the range since the copy: copy dropped */
    CD_PG_MERGE_BUSY,     /* the tables' locks not granted in time: copy kept */
} cd_pg_merge_outcome;

/*
 * Raises the merge level of closed partitions larger than their level
 * (cd_partition_relevel, sql/024): an index upgraded to sql/017 closes its
 * whole past as one partition of level 0, and lowering unit_txs
 * (partition_txs) leaves the partitions closed before as large; by size,
 * they merge with partitions of their size, not with each small one. Never
 * lowers a level, never above the next older partition's. Run only while
 * no copy awaits its swap (its sources' levels would change). Each raise
 * is logged (info).
 * Returns: CD_PG_OK or CD_PG_ERROR (logged).
 */
int cd_pg_partition_relevel(cd_pg *pg, int fan_in, int64_t unit_txs) CD_WARN_UNUSED;

/*
 * The next merge for fan_in, without copying anything
 * (cd_partition_merge_candidate).
 * Out: *level the sources' level, -1 when there is none; *sources how
 *      many (fan_in), 0 when none.
 * Returns: CD_PG_OK or CD_PG_ERROR (logged).
 */
int cd_pg_partition_merge_candidate(cd_pg *pg, int fan_in, int *level,
                                    int *sources) CD_WARN_UNUSED;

/*
 * Phase (a): drops any staging left behind, then copies the next merge for
 * fan_in into staging tables, in one REPEATABLE READ transaction
 * (cd_partition_merge_prepare), and ANALYZEs them after its commit (their
 * statistics carry over to the merged partitions). A killed session rolls
 * back: nothing is left.
 * Out: *level the sources' level, -1 when there was nothing to merge;
 *      *secs (may be NULL) the copy's time.
 * Returns: CD_PG_OK or CD_PG_ERROR (logged; the transaction rolled back).
 */
int cd_pg_partition_merge_prepare(cd_pg *pg, int fan_in, int *level, double *secs) CD_WARN_UNUSED;

/*
 * Phase (b): swaps the prepared merge in (cd_partition_merge_swap, one
 * transaction): refused (copy dropped) if a write into its range committed
 * since the copy; given up, copy kept, when the four tables' locks are not
 * granted within half of deadlock_timeout. Once merged, drops the sources
 * (cd_partition_merge_drop_old) after that commit, out of the locks.
 * Out: *outcome; *secs (may be NULL) the swap's transaction time, the
 *      stall it imposed on indexing and queries (also when refused).
 * Returns: CD_PG_OK (whatever the outcome) or CD_PG_ERROR (logged).
 */
int cd_pg_partition_merge_swap(cd_pg *pg, cd_pg_merge_outcome *outcome,
                               double *secs) CD_WARN_UNUSED;

/*
 * Drops the sources of merges already swapped in (renamed
 * cd_merge_old_<oid>, detached: cd_partition_merge_drop_old), as the swap
 * does after its commit; for a run after a crash between the two. A
 * failure is logged (warn) and left to the next call.
 */
void cd_pg_partition_merge_drop_old(cd_pg *pg);

/*
 * Drops a copy prepared and not swapped in (its staging tables and its
 * catalog row: cd_partition_merge_discard); for merging turned off, whose
 * runs would never swap it in.
 * Out: *tables the staging tables dropped.
 * Returns: CD_PG_OK or CD_PG_ERROR (logged).
 */
int cd_pg_partition_merge_discard(cd_pg *pg, int *tables) CD_WARN_UNUSED;

/*
 * The merges' figures (cd_partition_merge_state).
 * Out: *max_level the highest level of a partition (0: none merged);
 *      *prepared 1 when a copy awaits its swap.
 * Returns: CD_PG_OK or CD_PG_ERROR (logged).
 */
int cd_pg_partition_merge_state(cd_pg *pg, int *max_level, int *prepared) CD_WARN_UNUSED;

/* ---- reading results (binary format) ---- */

/* An integer column of a binary-format result: int2, int4 or int8 by its
 * length. Returns the value; 0 for NULL or another length. */
int64_t cd_pg_col_int(const PGresult *r, int row, int col);

/* Copies a bytea column of exactly `len` bytes into out.
 * Returns 0, or -1 when it is NULL or of another length (out untouched). */
int cd_pg_col_bytes(const PGresult *r, int row, int col, uint8_t *out, int len) CD_WARN_UNUSED;

/* Out: err = "<what>: <the result's error, else the connection's>" on one
 * line (newlines and tabs become spaces), for a log line or an HTTP error. */
void cd_pg_errline(char *err, size_t errlen, const char *what, PGconn *conn,
                   const PGresult *r);

#endif /* CD_PG_H */
