/*
 * cd_http_hooks.h - webhooks (issue 16, docs/WEBHOOKS.md): registrations
 * over the HTTP API and their delivery process.
 *
 *   registration   POST /v1/webhooks, GET /v1/webhooks[/<id>],
 *                  DELETE /v1/webhooks/<id> (cd_http_hooks.c): write routes,
 *                  "Authorization: Bearer <key of api_keys>"; rows of
 *                  sql/012_webhooks.sql, whose keys and outpoints are watched
 *                  under the owner hook:<id> so their events are logged
 *                  (table events, sql/009) whether or not anything is up.
 *   delivery       cd_hook_module (modules[] in main.c): one resident row
 *                  "webhook" of the process table; the child
 *                  (cd_http_hooks_send.c) LISTENs on cd_event, reads the log
 *                  past each registration's cursor and POSTs every matching
 *                  event, signed, in order, one at a time per registration;
 *                  the cursor moves only after a 2xx (at-least-once; the
 *                  event id makes it exactly-once for a receiver that
 *                  deduplicates).
 *
 * Rules every function here shares: pointers are non-NULL unless said.
 */
#ifndef CD_HTTP_HOOKS_H
#define CD_HTTP_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "cd_ctl.h"
#include "cd_err.h" /* CD_WARN_UNUSED, CD_HOOK_E* */

/* Bounds of one registration (documented in docs/WEBHOOKS.md). */
#define CD_HOOK_MAX_URL       2048u
#define CD_HOOK_MAX_KEYS      10000u
#define CD_HOOK_MAX_OUTPOINTS 10000u
#define CD_HOOK_SECRET_BYTES  32u /* random bytes; the secret is their hex */
/* Registrations in all: each is a connection and a query per event wake-up
 * in the delivery process, so their number is bounded. */
#define CD_HOOK_MAX_REGISTRATIONS 1000

/* Delivery (cd_http_hooks_send.c). */
#define CD_HOOK_MAX_RESPONSE  65536u /* a receiver's answer body, bytes */
#define CD_HOOK_MAX_HEADERS   16384u
#define CD_HOOK_BATCH         64     /* events read from the log per query */
#define CD_HOOK_BACKOFF_MIN_S 1.0    /* first retry after a 5xx / timeout */
#define CD_HOOK_SLOW_MIN_S    60.0   /* first retry after another 4xx */

/* The controller module that adds the delivery process to the process
 * table (nothing when index = off, or webhooks = off and
 * conduitdb_reference_url is not set). */
extern const cd_ctl_module cd_hook_module;

/* ---- the routes (cd_http_hooks.c, in the HTTP server processes) ---- */

struct http_srv;
struct evhttp_request;

/* Answers the request when its path is /v1/webhooks[/...] (any method).
 * Returns: 1 if it was answered, 0 if the path is not a webhook route
 * (nothing sent). */
int cd_http_hooks_dispatch(struct http_srv *s, struct evhttp_request *req);

/* Returns: 1 if an OpenAPI path ("/v1/webhooks/{id}") is served here. */
int cd_http_hooks_owns_path(const char *path);

/* ---- registrations (cd_http_hooks_reg.c: the routes and conduit-cli) ---- */

/* Checks a registration body {url, keys, outpoints, kinds} (pure).
 * Out: why, a sentence naming the field, when it is refused.
 * Returns: 0, or CD_HOOK_EINPUT. */
int cd_hook_check(const json_t *body, char *why, size_t wl) CD_WARN_UNUSED;

/* Registers a webhook: checks the body, draws the secret (RAND_bytes), runs
 * cd_webhook_add (rows and watches, one transaction) and wakes the
 * delivery process (NOTIFY cd_webhook).
 * In:  pg a live session; body as for cd_hook_check (borrowed).
 * Out: *id, secret (the hex, NUL-terminated: shown to the caller once);
 *      why on failure.
 * Returns: 0; CD_HOOK_EINPUT; CD_HOOK_EFULL (CD_HOOK_MAX_REGISTRATIONS
 *          exist); CD_HOOK_EDB (why: PostgreSQL's message). */
int cd_hook_register(PGconn *pg, const json_t *body, int64_t *id,
                     char secret[2 * CD_HOOK_SECRET_BYTES + 1], char *why,
                     size_t wl) CD_WARN_UNUSED;

/* Deletes registration id and its watches (cd_webhook_delete).
 * Returns: 0, CD_HOOK_ENOTFOUND or CD_HOOK_EDB (why says). */
int cd_hook_delete(PGconn *pg, int64_t id, char *why, size_t wl) CD_WARN_UNUSED;

/* The status of registration id (an object), or of every one (id 0: an
 * array), as GET /v1/webhooks[/<id>] shows it (docs/WEBHOOKS.md); never the
 * secret.
 * Out: *out, a new reference (json_decref) on success.
 * Returns: 0, CD_HOOK_ENOTFOUND or CD_HOOK_EDB (why says). */
int cd_hook_status(PGconn *pg, int64_t id, json_t **out, char *why, size_t wl) CD_WARN_UNUSED;

/* ---- delivery rules (cd_http_hooks_send.c) ---- */

/* What a receiver's answer means for the event (pure; unit-tested).
 * In:  code  the HTTP status, or 0 when there was none (connection
 *            refused or reset, timeout, answer too large or malformed).
 * Returns: CD_HOOK_DONE (2xx), CD_HOOK_RETRY (0, 408, 429, 5xx: retried
 *          with the normal back-off) or CD_HOOK_SLOW (any other status:
 *          3xx, since redirects are not followed, and 4xx: retried with
 *          the slow back-off). */
typedef enum cd_hook_outcome { CD_HOOK_DONE, CD_HOOK_RETRY, CD_HOOK_SLOW } cd_hook_outcome;
cd_hook_outcome cd_hook_classify(int code);

/* The wait before the next attempt (pure; unit-tested).
 * In:  outcome   CD_HOOK_RETRY or CD_HOOK_SLOW
 *      attempts  failed attempts in a row, >= 1
 *      max_s     the cap (webhook_retry_max)
 *      r         a random number in [0, 1): the jitter
 * Returns: seconds, d * (0.5 + r / 2) (jitter, so receivers that come
 *          back are not hit by every registration at once), where d starts
 *          at CD_HOOK_BACKOFF_MIN_S (RETRY) or CD_HOOK_SLOW_MIN_S (SLOW) and
 *          doubles per attempt up to max_s (SLOW: up to the larger of max_s
 *          and CD_HOOK_SLOW_MIN_S). */
double cd_hook_backoff(cd_hook_outcome outcome, uint32_t attempts, uint32_t max_s, double r);

/* Checks a receiver URL (pure; unit-tested): http://host[:port][/path][?q],
 * no user info, no fragment, under CD_HOOK_MAX_URL bytes.
 * Out: why (a static sentence) when it is refused.
 * Returns: 0 if acceptable, -1 if not. */
int cd_hook_url_check(const char *url, const char **why) CD_WARN_UNUSED;

/* The signature header value of a body (pure; unit-tested):
 * "sha256=" + lowercase hex of HMAC-SHA256(key = the secret's bytes, body).
 * Out: out, 7 + 64 + 1 bytes.
 * Returns: 0, or -1 if OpenSSL failed. */
int cd_hook_sign(const char *secret, const void *body, size_t len, char out[72]) CD_WARN_UNUSED;

#endif /* CD_HTTP_HOOKS_H */
