/*
 * cd_ipc.h - the controller <-> worker message format (DESIGN.md §2-§3).
 *
 * Every worker (block writer, merkle, parser × N) talks to the controller over
 * one AF_UNIX SOCK_STREAM socketpair created by the supervisor before fork().
 * Messages carry DESCRIPTORS, never block bytes: the bytes live in the shared
 * memory ring (cd_ring.h), which every worker inherits mapped at fork().
 *
 * Framing: cd_ipc_hdr (8 bytes) followed by hdr.len payload bytes. Integers are
 * in host byte order (both ends are the same binary on the same machine).
 * A message with an unknown version is a fatal protocol error for that
 * channel: the receiver logs it and closes the channel (the worker exits with
 * CD_EXIT_FAILURE and is restarted from the current binary).
 *
 * Conversation for one block (controller -> worker unless noted):
 *
 *   BLOCK_BEGIN           to writer, merkle and every parser
 *   UNIT × n              writer and merkle get every unit; each unit goes to
 *                         exactly one parser (round robin)
 *   UNIT_ACK  (w -> c)    when the worker no longer reads the unit's ring
 *                         bytes AND its durable effect is committed (writer:
 *                         chunks in LMDB; parser: rows + marker in PG).
 *                         Ring space is reused only when every consumer of a
 *                         unit has acked it.
 *   BLOCK_END             to writer, merkle and every parser
 *   BLOCK_DONE (w -> c)   writer: block location committed with the COMPLETE
 *                         flag; merkle: status of the root check (tree stored
 *                         only when it matches). Parsers send it only to
 *                         answer BLOCK_STORED or BLOCK_DELETE.
 *   BLOCK_STORED          to one parser, once the writer stored the block,
 *                         the merkle worker verified it and every parser
 *                         acked its units: mark the block indexed and move
 *                         the tip (issue 11, F6: nothing is indexed in
 *                         PostgreSQL that LMDB does not hold). Answered by
 *                         BLOCK_DONE (OK, or ERR_STALE: the committed rows
 *                         did not give the root and were removed).
 *   STALL (w -> c)        writer / merkle: a store write failed for want of
 *                         space (or an I/O error) and is being retried; the
 *                         units stay unacknowledged, so the ring fills and
 *                         the download pauses. Sent again with stalled = 0
 *                         once a write succeeds.
 *   BLOCK_ABORT           forget any partial state of the block (its units will
 *                         be sent again from unit 0, or never); no reply.
 *   BLOCK_DELETE          to the writer only: remove a stored block (merkle
 *                         mismatch found after the writer completed it).
 *
 * Blocks are never interleaved on a channel: BEGIN(b) UNIT(b)* END(b) or
 * ABORT(b), then the next block. A worker may therefore keep one "current
 * block" state. block_id is assigned by the controller, unique per controller
 * run (workers restarted by the same controller may see any id).
 *
 * A worker notices the controller's death as EOF on its channel and exits.
 */
#ifndef CD_IPC_H
#define CD_IPC_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h" /* CD_WARN_UNUSED */

#define CD_IPC_VERSION 1

/* Largest payload accepted (a UNIT of 16M offsets). Larger = protocol error. */
#define CD_IPC_MAX_PAYLOAD (64u * 1024 * 1024 + 64)

/* Worker kinds (also the index of the kind in the supervisor's table). */
typedef enum cd_wk_kind {
    CD_WK_WRITER = 1,
    CD_WK_MERKLE = 2,
    CD_WK_PARSER = 3,
} cd_wk_kind;

typedef enum cd_ipc_type {
    CD_IPC_HELLO = 1,         /* w->c  cd_ipc_hello, first message of a worker */
    CD_IPC_BLOCK_BEGIN = 2,   /* c->w  cd_ipc_block_begin */
    CD_IPC_UNIT = 3,          /* c->w  cd_ipc_unit + uint32_t tx_off[tx_count] */
    CD_IPC_BLOCK_END = 4,     /* c->w  cd_ipc_block_ref */
    CD_IPC_BLOCK_ABORT = 5,   /* c->w  cd_ipc_block_ref */
    CD_IPC_UNIT_ACK = 6,      /* w->c  cd_ipc_unit_ack */
    CD_IPC_BLOCK_DONE = 7,    /* w->c  cd_ipc_block_done */
    CD_IPC_BLOCK_DELETE = 8,  /* c->writer: drop the stored copy (by hash);
                               * c->parser: remove the rows a failed copy
                               * committed (by hash, only if not indexed),
                               * answered by BLOCK_DONE with the same block_id */
    CD_IPC_SHUTDOWN = 9,      /* c->w  no payload: finish and exit 0 */
    CD_IPC_BLOCK_STORED = 10, /* c->parser cd_ipc_block_ref: complete it in PG */
    CD_IPC_STALL = 11,        /* w->c  cd_ipc_stall */
    CD_IPC_PG_COMMIT = 12,    /* parser->c cd_ipc_pg_commit: a batch committed
                               * (its duration, for /metrics) */
} cd_ipc_type;

/* Status codes in UNIT_ACK / BLOCK_DONE. */
typedef enum cd_ipc_status {
    CD_IPC_OK = 0,
    CD_IPC_ERR_STORE = 1,     /* LMDB / PG write failed (worker will exit) */
    CD_IPC_ERR_MERKLE = 2,    /* computed root != header's merkle root */
    CD_IPC_ERR_MUTATED = 3,   /* CVE-2012-2459 duplicate-pair mutation */
    CD_IPC_ERR_MALFORMED = 4, /* tx bytes do not parse */
    CD_IPC_ERR_STALE = 5,     /* parser: the block's committed rows did not give the
                               * header's merkle root (an earlier, wrong copy's);
                               * they were removed: index the block again */
    CD_IPC_OK_INDEXED = 6,    /* parser: committed, and the block (one unit, found
                               * stored and verified in LMDB) is complete in PG:
                               * no BLOCK_STORED needed */
} cd_ipc_status;

typedef struct cd_ipc_hdr {
    uint16_t version; /* CD_IPC_VERSION */
    uint16_t type;    /* cd_ipc_type */
    uint32_t len;     /* payload bytes after this header */
} cd_ipc_hdr;

typedef struct cd_ipc_hello {
    uint32_t kind;  /* cd_wk_kind */
    uint32_t index; /* parser number; 0 for the singletons */
    int32_t pid;
    uint32_t pad;
} cd_ipc_hello;

#define CD_IPC_HEIGHT_UNKNOWN UINT32_MAX

typedef struct cd_ipc_block_begin {
    uint64_t block_id;
    uint8_t hash[32];   /* internal byte order (sha256d of header) */
    uint8_t header[80]; /* raw header: merkle root at bytes 36..67 */
    uint32_t height;    /* CD_IPC_HEIGHT_UNKNOWN if not known */
    uint32_t pad;
    uint64_t size; /* total block bytes (header + count + txs) */
    uint64_t tx_count;
} cd_ipc_block_begin;

/*
 * A work unit: bytes [block_off, block_off + len) of the block, which are at
 * ring position ring_pos (absolute; the byte is at cd_ring_ptr(ring, ring_pos),
 * contiguous even across the wrap thanks to the ring's double mapping).
 * Unit 0 starts at block offset 0 (header and tx count included). Units end
 * at transaction boundaries; the last unit ends at the block's end.
 * Followed by tx_count uint32_t: each tx's start relative to the unit start.
 */
typedef struct cd_ipc_unit {
    uint64_t block_id;
    uint32_t unit_no;
    uint32_t tx_count; /* number of offsets following */
    uint64_t ring_pos;
    uint64_t block_off;
    uint64_t len;
    uint64_t first_tx; /* block-wide index of the unit's first tx */
    uint32_t flags;    /* CD_IPC_UNIT_LAST on the block's last unit */
    uint32_t pad;
} cd_ipc_unit;

#define CD_IPC_UNIT_LAST 1u

typedef struct cd_ipc_block_ref {
    uint64_t block_id;
    uint8_t hash[32];
    uint32_t n_units; /* BLOCK_END: total units sent */
    uint32_t pad;
} cd_ipc_block_ref;

typedef struct cd_ipc_unit_ack {
    uint64_t block_id;
    uint32_t unit_no;
    uint32_t status; /* cd_ipc_status */
} cd_ipc_unit_ack;

typedef struct cd_ipc_block_done {
    uint64_t block_id;
    uint32_t kind;    /* cd_wk_kind of the sender */
    uint32_t status;  /* cd_ipc_status */
    uint8_t root[32]; /* merkle: the computed root */
} cd_ipc_block_done;

/* One PostgreSQL batch commit of a parser (PG_COMMIT). */
typedef struct cd_ipc_pg_commit {
    uint64_t ns;    /* how long cd_pg_batch_commit took (end of the COPY
                       streams, markers, COMMIT) */
    uint32_t units; /* units in the batch */
    uint32_t pad;
} cd_ipc_pg_commit;

/* A store that cannot be written (STALL). */
typedef struct cd_ipc_stall {
    uint32_t stalled;    /* 1: writes are failing and retried; 0: they work again */
    int32_t err;         /* the error (cd_strerror names it) */
    uint64_t free_bytes; /* free space of the filesystem when it failed */
    uint32_t disk_full;  /* 1: no space (ENOSPC, EDQUOT, a short write, map full) */
    uint32_t pad;
    char path[256]; /* the store's directory, NUL-terminated */
} cd_ipc_stall;

/* ---- blocking helpers for workers (the controller uses bufferevents) ---- */

/*
 * Writes one message (header + payload [+ extra]) fully, retrying on EINTR
 * and short writes. `extra` may be NULL (extra_len 0): it lets a UNIT be sent
 * as struct + offsets array without copying.
 * Returns: 0, or -1 with errno set (EPIPE when the peer is gone).
 */
int cd_ipc_send(int fd, uint16_t type, const void *payload, uint32_t len, const void *extra,
                uint32_t extra_len) CD_WARN_UNUSED;

/*
 * Reads one message. *buf is a caller-owned growable buffer (realloc'd here,
 * free it with free()); *cap its capacity. On success hdr is filled and the
 * payload is in (*buf)[0 .. hdr->len).
 * Returns: 1 message read; 0 clean EOF before a header; -1 error (errno set;
 *          EPROTO for a bad version or oversized length, EIO for EOF inside a
 *          message).
 */
int cd_ipc_recv(int fd, cd_ipc_hdr *hdr, uint8_t **buf, size_t *cap) CD_WARN_UNUSED;

/* Returns: the name of a message type / kind for logs ("UNIT", "writer"):
 * a static string, never NULL. */
const char *cd_ipc_type_name(uint16_t type);
const char *cd_wk_kind_name(uint32_t kind);

#endif /* CD_IPC_H */
