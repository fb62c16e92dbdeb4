/*
 * cd_http_cdb.h - private to the HTTP API server: ConduitDB's API
 * (docs/CONDUITDB_API.md, issue 16), what cd_http_cdb.c (dispatch, errors,
 * chain, transactions, merkle proofs) and cd_http_cdb_restore.c
 * (restoration, output spends) share.
 */
#ifndef CD_HTTP_CDB_H
#define CD_HTTP_CDB_H

#include "cd_http_int.h"

#define HTTP_CDB_MAX_KEYS      10000 /* filterKeys per restoration request */
#define HTTP_CDB_MAX_OUTPOINTS 10000 /* outpoints per output-spend request */
#define HTTP_CDB_MAX_HEADERS   2000  /* count of chain/header/byHeight */
#define HTTP_CDB_MAX_STREAMS   4     /* restoration streams at once (one PG session each) */
#define HTTP_CDB_PAGE          1000  /* matches fetched from the cursor at a time */

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

/* After a failed query on s->pg: 1 if the session is broken (dropped; the
 * handler returns H_DB_LOST and the request is retried once), else 0. */
int cd_http_cdb_pg_lost(http_srv *s);

#endif /* CD_HTTP_CDB_H */
