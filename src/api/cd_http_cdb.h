/*
 * cd_http_cdb.h - private to the HTTP API server: ConduitDB's API
 * (docs/CONDUITDB_API.md, issue 16), what cd_http_cdb.c (dispatch, errors,
 * chain, transactions, merkle proofs) and cd_http_cdb_restore.c
 * (restoration, output spends) share.
 */
#ifndef CD_HTTP_CDB_H
#define CD_HTTP_CDB_H

#include "cd_cdbq_notify.h"
#include "cd_http_int.h"

#define HTTP_CDB_MAX_KEYS       10000      /* filterKeys per restoration request */
#define HTTP_CDB_MAX_OUTPOINTS  10000      /* outpoints per output-spend request */
#define HTTP_CDB_MAX_HEADERS    2000       /* count of chain/header/byHeight */
#define HTTP_CDB_MAX_STREAMS    4          /* restoration streams at once (one PG session each) */
#define HTTP_CDB_PAGE           1000       /* matches fetched from the cursor at a time */
#define HTTP_CDB_WS_MAX_MESSAGE 4096       /* a /ws client message (none is expected) */
#define HTTP_CDB_WS_MAX_OUTPUT  (1u << 20) /* /ws bytes unread before the client is cut off */

/* Request bodies over this are refused (413) from their Content-Length,
 * unread (cd_http_cdb_limits.c). */
#define HTTP_BODY_MAX (1 << 20)

/* Watches a new connection's input for request heads announcing a body
 * over HTTP_BODY_MAX (bev may be NULL: nothing done). */
void cd_http_body_cap(struct bufferevent *bev);

/* 1 if the request is one the cap refused: a 413 was sent (ConduitDB's
 * format under /api/, else JSON) with Connection: close; else 0. */
int cd_http_body_refused(struct evhttp_request *req);

/* Answers the request if its path is one of ConduitDB's ("/", "/error",
 * "/api/..."): returns 1 (a reply was sent or a stream started), else 0
 * (nothing sent; the caller routes it). */
int cd_http_cdb_dispatch(http_srv *s, struct evhttp_request *req);

/* A ConduitDB-style error (aiohttp's HTTPException): the message is the
 * reason phrase of the status line (non-printable bytes as '?') and the
 * body "<code>: <message>" (text/plain). Logged at info level with the
 * peer, the request line and the message escaped. */
void cd_http_cdb_error(struct evhttp_request *req, int code, const char *fmt, ...) CD_PRINTF(3, 4);

/* Sends a reply with its Content-Type (nosniff). */
void cd_http_cdb_reply(struct evhttp_request *req, int code, const char *type,
                       struct evbuffer *body);

/* 1 if the request's Accept header prefers application/octet-stream to
 * application/json (media types parsed, parameters and q-values honoured;
 * no Accept: JSON), else 0. */
int cd_http_cdb_wants_binary(struct evhttp_request *req);

/* The media type of a Content-Type / Accept entry, lower-cased, without
 * parameters, into out (cap bytes). */
void cd_http_cdb_media_type(const char *v, char *out, size_t cap);

/* POST /api/v1/restoration/search (p2pkh 0) and .../search_p2pkh (1). */
int cd_http_cdb_restore(http_srv *s, struct evhttp_request *req, int p2pkh);

/* POST /api/v1/output-spend. */
int cd_http_cdb_output_spend(http_srv *s, struct evhttp_request *req);

/* Parses the outpoints of a JSON (`[["txid", n], ...]`, Content-Type
 * application/json) or binary (36-byte records: txid internal order, u32
 * BE; application/octet-stream) body, at most HTTP_CDB_MAX_OUTPOINTS.
 * Out: *txids (n * 32 bytes), *idx (n entries), malloc'd, the caller frees
 * them. Returns their count n, or -1 (400 sent, nothing to free). */
long cd_http_cdb_parse_outpoints(struct evhttp_request *req, uint8_t **txids, uint32_t **idx);

/* Answers the spends of n outpoints (JSON array or 104-byte records, by
 * Accept), as POST /api/v1/output-spend does. Takes over txids and idx
 * (freed). Returns H_DONE or H_DB_LOST. */
int cd_http_cdb_answer_spends(http_srv *s, struct evhttp_request *req, uint8_t *txids,
                              uint32_t *idx, size_t n);

/* The notification routes (cd_http_cdb_notify.c): POST
 * /api/v1/transaction/filter, .../filter:delete,
 * /api/v1/output-spend/notifications, ...:unregister. Return H_DONE or
 * H_DB_LOST. */
int cd_http_cdb_filter_add(http_srv *s, struct evhttp_request *req);
int cd_http_cdb_filter_delete(http_srv *s, struct evhttp_request *req);
int cd_http_cdb_spend_register(http_srv *s, struct evhttp_request *req);
int cd_http_cdb_spend_unregister(http_srv *s, struct evhttp_request *req);

/* After a failed query on s->pg: 1 if the session is broken (dropped; the
 * handler returns H_DB_LOST and the request is retried once), else 0. */
int cd_http_cdb_pg_lost(http_srv *s);

/* GET /ws (cd_http_cdb_ws.c): ConduitDB's websocket. ?notifications=
 * spends (default: ConduitDB's 104-byte binary frames only) or all (also
 * tip-filter matches and orphaned matches/spends as JSON text frames),
 * ?account_id=N (only that account's matches). Returns H_DONE. */
int cd_http_cdb_ws(http_srv *s, struct evhttp_request *req);

/* ConduitDB's 104-byte output-spend record of a spend notice. */
void cd_http_cdb_spend_record(const cd_cdbq_notice *v, uint8_t out[104]);

/* The server process starts (timers: the minute sweep of expired
 * registrations on server 0) / stops (websockets aborted, sessions closed;
 * before evhttp_free). */
void cd_http_cdb_start(http_srv *s);
void cd_http_cdb_stop(void);

#endif /* CD_HTTP_CDB_H */
