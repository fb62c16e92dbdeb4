/*
 * cd_http_hooks_send.c - webhook delivery: the controller module that adds
 * the "webhook" row to the process table, and that child's loop.
 *
 * Why a process of its own: receivers are other people's servers, slow or
 * dead at will; the POSTs and their retries must never hold the controller's
 * p2p loop, an API server or a parser. The child has one libevent loop, one
 * PostgreSQL session (which also LISTENs on cd_event and cd_webhook) and
 * libevent's HTTP client; it is respawned like every resident child and
 * keeps no state that PostgreSQL does not have: the cursor (webhooks.scan_id)
 * is committed only after a receiver's 2xx, so a kill -9 at any point
 * delivers the in-flight event again, never loses one.
 *
 * What it delivers comes from two sources (cd_http_hooks_int.h): the
 * webhook registrations (here: table webhooks, one signed event per POST)
 * and, when conduitdb_reference_url is set, ConduitDB's tip-filter batches
 * to its reference server (cd_http_hooks_cdb.c, table cdb_outbound): one
 * HTTP client, one back-off, one cursor rule for both.
 *
 * Per registration: one request in flight at a time, events in id order
 * (= commit order, sql/009), at most CD_HOOK_BATCH read ahead. Retries:
 * cd_hook_classify / cd_hook_backoff (docs/WEBHOOKS.md, "Retries").
 * Outbound HTTP: http:// only (no TLS client), webhook_timeout for connect
 * and each read/write plus a deadline of twice that for the whole exchange
 * (a receiver that trickles its answer), answers over CD_HOOK_MAX_RESPONSE
 * bytes fail, redirects are not followed (a 3xx is a failure).
 */
#include "cd_http_hooks_int.h"
#include "cd_resident.h"
#include "cd_supervisor.h"

#include "cd_build.h" /* CD_VERSION */
#include "cd_escape.h"
#include "cd_log.h"
#include "cd_pg.h"
#include "cd_util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cd_signals.h" /* cd_child_exit */
#include <time.h>
#include <unistd.h>

#define HOOK_PG_RETRY_S  1.0  /* reconnect attempts while PostgreSQL is down */
#define HOOK_TICK_S      1    /* retries come due, PostgreSQL comes back */
#define HOOK_RESCAN_S    5.0  /* every registration looks at the log again */
#define HOOK_STMT_TIMEOUT "30s"

/* ---- the rules (pure) ---- */

cd_hook_outcome cd_hook_classify(int code)
{
    if (code >= 200 && code < 300)
        return CD_HOOK_DONE;
    if (code == 0 || code == 408 || code == 429 || code >= 500)
        return CD_HOOK_RETRY;
    return CD_HOOK_SLOW;
}

double cd_hook_backoff(cd_hook_outcome outcome, uint32_t attempts, uint32_t max_s, double r)
{
    double d = outcome == CD_HOOK_SLOW ? CD_HOOK_SLOW_MIN_S : CD_HOOK_BACKOFF_MIN_S;
    double cap = (double)max_s;
    if (outcome == CD_HOOK_SLOW && cap < CD_HOOK_SLOW_MIN_S)
        cap = CD_HOOK_SLOW_MIN_S;
    for (uint32_t i = 1; i < attempts && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    if (r < 0 || r >= 1)
        r = 0;
    return d * (0.5 + r / 2);
}

int cd_hook_url_check(const char *url, const char **why)
{
    *why = NULL;
    if (strlen(url) >= CD_HOOK_MAX_URL) {
        *why = "url is too long (at most 2047 bytes)";
        return -1;
    }
    if (!strncasecmp(url, "https://", 8)) {
        *why = "https:// receivers are not supported (the delivery has no TLS client): use "
               "http:// to a receiver on a trusted network, or a local TLS-terminating proxy";
        return -1;
    }
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(url, 0);
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    int port = u ? evhttp_uri_get_port(u) : -1;
    if (!u || !scheme)
        *why = "url is not an absolute URL (http://host[:port]/path)";
    else if (strcasecmp(scheme, "http") != 0)
        *why = "url must start with http://";
    else if (!host || !*host)
        *why = "url has no host";
    else if (evhttp_uri_get_userinfo(u))
        *why = "url must not carry user:password@ (the signature authenticates the daemon)";
    else if (evhttp_uri_get_fragment(u))
        *why = "url must not have a #fragment";
    else if (port == 0 || port > 65535)
        *why = "url has a bad port";
    if (u) /* evhttp_uri_free(NULL) crashes */
        evhttp_uri_free(u);
    return *why ? -1 : 0;
}

int cd_hook_sign(const char *secret, const void *body, size_t len, char out[72])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const unsigned char none;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), len ? body : &none, len, md, &mdlen) ||
        mdlen != 32)
        return -1;
    memcpy(out, "sha256=", 7);
    cd_hex_encode(out + 7, md, 32);
    out[71] = '\0';
    return 0;
}

/* ---- the child's state ---- */

static struct {
    const cd_config *cfg;
    struct event_base *base;
    struct evdns_base *dns;
    PGconn *pg;
    struct event *pg_ev;
    double pg_next_try;
    int pg_was_down;
    int reload;
    double last_rescan;
    struct event *kick; /* runs pump() at the next loop turn */
    char last_err[512]; /* the last statement error logged */
    int schema_wait;    /* "no webhook tables yet" was said */
    cd_hook_tgt *hooks;
    cd_hook_tgt *cdb; /* ConduitDB's reference server (conduitdb_reference_url), or NULL */
} H;

static void pump(void);

/* Frees a connection from the loop, never from inside one of its own
 * request callbacks (libevent may still touch it after the callback). */
static void conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evhttp_connection_free(arg);
}

static void conn_free_later(struct evhttp_connection *c)
{
    static const struct timeval now = {0, 0};
    if (event_base_once(H.base, -1, EV_TIMEOUT, conn_free_cb, c, &now) != 0)
        cd_log_warn("webhook: cannot schedule a connection's release (leaked)");
}

/* pump() from the loop, not from a request callback. */
static void kick(void);

static void kick(void)
{
    event_active(H.kick, EV_TIMEOUT, 0);
}

void cd_hook_kick(void)
{
    kick();
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    pump();
}

void cd_hook_state_resume(cd_hook_state *st, const PGresult *r, int row, int col)
{
    st->attempts = (uint32_t)strtoul(PQgetvalue(r, row, col), NULL, 10);
    st->failing = PQgetvalue(r, row, col + 1)[0] == 't';
    if (!PQgetisnull(r, row, col + 2)) {
        double wait = strtod(PQgetvalue(r, row, col + 2), NULL);
        st->next_try = wait > 0 ? cd_now_s() + wait : 0;
    }
}

void cd_hook_queue_clear(cd_hook_tgt *h)
{
    for (int i = 0; i < h->qn; i++)
        free(h->q[i].body);
    h->qn = 0;
}

void cd_hook_tgt_free(cd_hook_tgt *h)
{
    if (!h)
        return;
    cd_hook_queue_clear(h);
    if (h->deadline)
        event_free(h->deadline);
    if (h->conn)
        conn_free_later(h->conn);
    free(h->url);
    free(h->secret);
    free(h->target);
    free(h);
}

/* ---- PostgreSQL ---- */

static void pg_drop(void)
{
    if (H.pg_ev) {
        event_free(H.pg_ev);
        H.pg_ev = NULL;
    }
    if (H.pg) {
        PQfinish(H.pg);
        H.pg = NULL;
    }
    H.pg_next_try = cd_now_s() + HOOK_PG_RETRY_S;
}

static void on_pg(evutil_socket_t fd, short what, void *arg);

/* The session, connecting (and LISTENing) if needed and allowed now. */
static PGconn *pg_get(void)
{
    if (H.pg && PQstatus(H.pg) == CONNECTION_OK)
        return H.pg;
    if (H.pg) {
        cd_log_warn("webhook: postgres: connection lost; reconnecting");
        pg_drop();
    }
    if (cd_now_s() < H.pg_next_try)
        return NULL;
    const cd_pg_session how = {5, "conduitd-webhook"};
    PGconn *c = cd_pg_open(H.cfg, &how);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", c ? PQerrorMessage(c) : "out of memory");
        msg[strcspn(msg, "\n")] = '\0';
        if (c)
            PQfinish(c);
        if (!H.pg_was_down)
            cd_log_warn("webhook: postgres: cannot connect: %s (deliveries wait)", msg);
        H.pg_was_down = 1;
        H.pg_next_try = cd_now_s() + HOOK_PG_RETRY_S;
        return NULL;
    }
    PGresult *r = PQexec(c, "SET statement_timeout = '" HOOK_STMT_TIMEOUT "'; "
                            "SET client_min_messages = warning; "
                            "LISTEN cd_event; LISTEN cd_webhook");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        cd_log_warn("webhook: postgres: session setup: %s", PQresultErrorMessage(r));
    PQclear(r);
    if (!ok) {
        PQfinish(c);
        H.pg_next_try = cd_now_s() + HOOK_PG_RETRY_S;
        return NULL;
    }
    PQsetnonblocking(c, 0);
    H.pg_ev = event_new(H.base, PQsocket(c), EV_READ | EV_PERSIST, on_pg, NULL);
    if (!H.pg_ev || event_add(H.pg_ev, NULL) != 0) {
        cd_log_error("webhook: cannot watch the PostgreSQL socket");
        if (H.pg_ev)
            event_free(H.pg_ev);
        H.pg_ev = NULL;
        PQfinish(c);
        return NULL;
    }
    if (H.pg_was_down)
        cd_log_info("webhook: postgres: connected again");
    H.pg_was_down = 0;
    H.pg = c;
    H.reload = 1; /* registrations may have changed meanwhile */
    for (cd_hook_tgt *h = H.hooks; h; h = h->next)
        h->dirty = 1;
    if (H.cdb)
        H.cdb->dirty = 1;
    return c;
}

PGconn *cd_hook_pg(void)
{
    return pg_get();
}

/* Runs a statement; returns its result (PQclear) or NULL after logging
 * (the session is dropped if it broke). */
PGresult *cd_hook_pg_q(const char *what, const char *sql, int n, const char *const *vals)
{
    PGconn *c = pg_get();
    if (!c)
        return NULL;
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        H.last_err[0] = '\0';
        H.schema_wait = 0;
        return r;
    }
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
    msg[strcspn(msg, "\n")] = '\0';
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    /* 42P01 undefined table, 42883 undefined function: the daemon has not
     * migrated this database yet (the process starts with the others) */
    int early = state && (!strcmp(state, "42P01") || !strcmp(state, "42883"));
    PQclear(r);
    if (early && PQstatus(c) == CONNECTION_OK) {
        if (!H.schema_wait)
            cd_log_info("webhook: the database has no webhook or conduitdb_reference_url tables "
                        "yet (sql/012, sql/015 not applied); waiting for the migrations");
        H.schema_wait = 1;
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        cd_log_warn("webhook: postgres: connection lost while %s; reconnecting", what);
        pg_drop();
    } else if (strcmp(msg, H.last_err) != 0) {
        /* once per distinct failure: a missing migration or a revoked
         * grant fails every second, and the log must stay readable */
        cd_log_error("webhook: postgres: %s: %s", what, msg);
        snprintf(H.last_err, sizeof(H.last_err), "%s", msg);
    } else {
        cd_log_debug("webhook: postgres: %s: %s", what, msg);
    }
    return NULL;
}

/* Notifications: cd_event (new events), cd_webhook (a registration added
 * or deleted). */
static void on_pg(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (!H.pg)
        return;
    if (!PQconsumeInput(H.pg)) {
        cd_log_warn("webhook: postgres: connection lost; reconnecting");
        pg_drop();
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(H.pg)) != NULL) {
        if (!strcmp(n->relname, "cd_webhook"))
            H.reload = 1;
        else {
            for (cd_hook_tgt *h = H.hooks; h; h = h->next)
                h->dirty = 1;
            if (H.cdb)
                H.cdb->dirty = 1;
        }
        PQfreemem(n);
    }
    pump();
}

/* ---- registrations ---- */

static cd_hook_tgt *hook_find(int64_t id)
{
    for (cd_hook_tgt *h = H.hooks; h; h = h->next)
        if (h->id == id)
            return h;
    return NULL;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg);

/* A receiver; NULL when its URL does not parse (logged: the API and the
 * option table checked it, so only a hand-edited row). */
cd_hook_tgt *cd_hook_tgt_new(int64_t id, const char *label, const char *url, const char *secret,
                             const cd_hook_src *src)
{
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(url, 0);
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    if (!host || strlen(host) >= sizeof(((cd_hook_tgt *)0)->host)) {
        cd_log_error("%s: url '%s' cannot be used; not delivering", label, cd_escape_str(url));
        if (u)
            evhttp_uri_free(u);
        return NULL;
    }
    cd_hook_tgt *h = cd_xcalloc(1, sizeof(*h));
    h->id = id;
    h->src = src;
    snprintf(h->label, sizeof(h->label), "%s", label);
    h->url = cd_xstrdup(url);
    h->secret = secret ? cd_xstrdup(secret) : NULL;
    snprintf(h->host, sizeof(h->host), "%s", host);
    h->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
    const char *path = evhttp_uri_get_path(u), *q = evhttp_uri_get_query(u);
    size_t tl = strlen(url) + 2;
    h->target = cd_xmalloc(tl);
    snprintf(h->target, tl, "%s%s%s", path && *path ? path : "/", q ? "?" : "", q ? q : "");
    evhttp_uri_free(u);
    h->deadline = evtimer_new(H.base, on_deadline, h);
    if (!h->deadline) {
        cd_log_error("webhook: out of memory");
        exit(CD_EXIT_FAILURE);
    }
    h->req_error = -1;
    h->dirty = 1;
    return h;
}

static const cd_hook_src hook_src;

/* Reads the table: new registrations join, deleted ones leave. */
static void reload(void)
{
    PGresult *r = cd_hook_pg_q("reading the registrations",
                       "SELECT id, url, secret, attempts, failing, "
                       " extract(epoch FROM next_attempt - now()) FROM webhooks ORDER BY id",
                       0, NULL);
    if (!r)
        return;
    H.reload = 0;
    for (cd_hook_tgt *h = H.hooks; h; h = h->next)
        h->seen = 0;
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        int64_t id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        cd_hook_tgt *h = hook_find(id);
        if (!h) {
            char label[48];
            snprintf(label, sizeof(label), "webhook %" PRId64, id);
            h = cd_hook_tgt_new(id, label, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), &hook_src);
            if (!h)
                continue;
            cd_hook_state_resume(&h->st, r, i, 3);
            h->next = H.hooks;
            H.hooks = h;
            cd_log_debug("webhook %" PRId64 ": delivering to %s", id, cd_escape_str(h->url));
        }
        h->seen = 1;
    }
    PQclear(r);
    for (cd_hook_tgt **pp = &H.hooks; *pp;) {
        cd_hook_tgt *h = *pp;
        if (h->seen) {
            pp = &h->next;
            continue;
        }
        *pp = h->next;
        cd_log_info("webhook %" PRId64 ": deleted; its deliveries stop", h->id);
        if (h->req) {
            h->gone = 1; /* freed when the request ends (on_deadline or on_done) */
            h->next = NULL;
        } else {
            cd_hook_tgt_free(h);
        }
    }
}

/* Reads the next events of h into its queue. */
static void fetch(cd_hook_tgt *h)
{
    char id[24], lim[16];
    snprintf(id, sizeof(id), "%" PRId64, h->id);
    snprintf(lim, sizeof(lim), "%d", CD_HOOK_BATCH);
    const char *v[2] = {id, lim};
    PGresult *r = cd_hook_pg_q("reading the event log",
                       "SELECT event_id, payload FROM cd_webhook_fetch($1, $2)", 2, v);
    if (!r)
        return;
    h->dirty = 0;
    int n = PQntuples(r);
    for (int i = 0; i < n && h->qn < CD_HOOK_BATCH; i++) {
        if (PQgetisnull(r, i, 1)) { /* (0, NULL): skipped a long stretch, more to read */
            h->dirty = 1;
            kick();
            continue;
        }
        h->q[h->qn].id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        h->q[h->qn].cursor = h->q[h->qn].id;
        h->q[h->qn].body = cd_xstrdup(PQgetvalue(r, i, 1));
        h->qn++;
    }
    /* a full batch: there may be more (read again when these are out) */
    if (n == CD_HOOK_BATCH)
        h->dirty = 1;
    PQclear(r);
}

/* ---- delivery ---- */

static const char *req_error_name(int e)
{
    switch (e) {
    case EVREQ_HTTP_TIMEOUT: return "timeout";
    case EVREQ_HTTP_EOF: return "connection closed before an answer";
    case EVREQ_HTTP_INVALID_HEADER: return "malformed answer";
    case EVREQ_HTTP_BUFFER_ERROR: return "connection failed";
    case EVREQ_HTTP_REQUEST_CANCEL: return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG: return "answer too large";
    default: return "connection failed";
    }
}

/* A webhook registration took q[0]: its cursor (webhooks.scan_id) moves. */
static int hook_commit(cd_hook_tgt *h)
{
    char id[24], ev[24];
    snprintf(id, sizeof(id), "%" PRId64, h->id);
    snprintf(ev, sizeof(ev), "%" PRId64, h->q[0].cursor);
    const char *v[2] = {id, ev};
    PGresult *r = cd_hook_pg_q("recording a delivery",
                               "UPDATE webhooks SET scan_id = $2, delivered_id = $2, "
                               CD_HOOK_SQL_DELIVERED " WHERE id = $1 AND scan_id < $2",
                               2, v);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

static const cd_hook_src hook_src = {
    .fetch = fetch,
    .commit = hook_commit,
    .failed_sql = "UPDATE webhooks SET " CD_HOOK_SQL_FAILED " WHERE id = $5",
    .by_id = 1,
    .failed_what = "recording a failed delivery",
};

/* The receiver took q[0]: commit the cursor, then go on. */
static void delivered(cd_hook_tgt *h)
{
    if (h->src->commit(h) != 0) {
        /* not recorded: the event will be sent again (at-least-once); the
         * log, not this queue, says what comes next */
        cd_hook_queue_clear(h);
        h->dirty = 1;
        h->st.next_try = cd_now_s() + HOOK_PG_RETRY_S;
        return;
    }
    if (h->st.failing || h->st.attempts)
        cd_log_info("%s: delivering again to %s (after %u failed attempts)", h->label,
                    cd_escape_str(h->url), h->st.attempts);
    h->st.attempts = 0;
    h->st.failing = 0;
    h->st.next_try = 0;
    free(h->q[0].body);
    memmove(h->q, h->q + 1, (size_t)(h->qn - 1) * sizeof(h->q[0]));
    h->qn--;
    if (h->qn == 0)
        h->dirty = 1;
}

/* The failed attempt in the target's row (cd_hook_src.failed_sql), for its
 * status and for a restarted process (cd_hook_state_resume). */
static void record_failed(cd_hook_tgt *h, const char *what, double wait)
{
    char att[16], secs[32], id[24];
    snprintf(att, sizeof(att), "%u", h->st.attempts);
    snprintf(secs, sizeof(secs), "%.3f", wait);
    snprintf(id, sizeof(id), "%" PRId64, h->id);
    const char *v[5] = {att, what, secs, h->st.failing ? "t" : "f", id};
    PGresult *r = cd_hook_pg_q(h->src->failed_what, h->src->failed_sql, h->src->by_id ? 5 : 4, v);
    if (r)
        PQclear(r);
}

/* q[0] was not taken: record it and schedule the retry. */
static void failed(cd_hook_tgt *h, int code, const char *err)
{
    cd_hook_outcome oc = cd_hook_classify(code);
    h->st.attempts++;
    uint32_t rnd = 0;
    if (RAND_bytes((unsigned char *)&rnd, sizeof(rnd)) != 1)
        rnd = (uint32_t)rand();
    double wait = cd_hook_backoff(oc, h->st.attempts, H.cfg->webhook_retry_max_s,
                                  (double)rnd / 4294967296.0);
    h->st.next_try = cd_now_s() + wait;
    int was_failing = h->st.failing;
    h->st.failing = h->st.attempts >= H.cfg->webhook_failing_after;
    char what[160];
    if (code)
        snprintf(what, sizeof(what), "HTTP %d%s", code,
                 code >= 300 && code < 400 ? " (redirects are not followed)" : "");
    else
        snprintf(what, sizeof(what), "%s", err);
    if (h->st.attempts == 1)
        cd_log_warn("%s: event %" PRId64 " to %s: %s; retrying in %.1f s", h->label, h->q[0].id,
                    cd_escape_str(h->url), what, wait);
    else
        cd_log_debug("%s: event %" PRId64 ": attempt %u: %s; retrying in %.1f s", h->label,
                     h->q[0].id, h->st.attempts, what, wait);
    if (h->st.failing && !was_failing)
        cd_log_warn("%s: failing: %u attempts in a row to %s failed (last: %s); "
                    "still retrying, events are kept",
                    h->label, h->st.attempts, cd_escape_str(h->url), what);
    record_failed(h, what, wait);
}

/* The end of an exchange, whatever it was. */
static void finish(cd_hook_tgt *h, int code, const char *err)
{
    h->req = NULL;
    event_del(h->deadline);
    if (h->gone) {
        cd_hook_tgt_free(h);
        return;
    }
    if (cd_hook_classify(code) == CD_HOOK_DONE) {
        h->conn_reused = 1; /* kept for the next body */
        delivered(h);
    } else {
        /* a fresh connection for the retry: evhttp keeps none in a known
         * state after a failure */
        if (h->conn) {
            conn_free_later(h->conn);
            h->conn = NULL;
        }
        failed(h, code, err);
    }
}

static void on_error(enum evhttp_request_error e, void *arg)
{
    ((cd_hook_tgt *)arg)->req_error = (int)e;
}

static void on_done(struct evhttp_request *req, void *arg)
{
    cd_hook_tgt *h = arg;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    const char *err = req_error_name(h->req_error);
    if (h->req_error == -1 && code == 0)
        err = "connection failed";
    if (h->req_error != -1 && code >= 200 && code < 300)
        code = 0; /* the answer was cut (too large, ...): not a delivery */
    /* A kept connection the receiver had closed (an idle keep-alive
     * timeout, or an HTTP/1.0 server that closes after each answer): the
     * request died before any answer. It is sent again at once on a fresh
     * connection and not counted as a failed attempt; a failure on the
     * fresh connection is. (Before, every body after a 2xx from such a
     * receiver cost a failure and a back-off.) */
    int stale = code == 0 && h->conn_reused &&
                (h->req_error == EVREQ_HTTP_EOF || h->req_error == EVREQ_HTTP_BUFFER_ERROR);
    h->req_error = -1;
    if (stale) {
        h->req = NULL;
        event_del(h->deadline);
        conn_free_later(h->conn);
        h->conn = NULL;
        h->conn_reused = 0;
        if (h->gone) {
            cd_hook_tgt_free(h);
            return;
        }
        cd_log_debug("%s: the kept connection was closed by the receiver; sending again on a new "
                     "one",
                     h->label);
        kick();
        return;
    }
    finish(h, code, err);
    kick();
}

/* The exchange took too long (a receiver that answers byte by byte). */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    cd_hook_tgt *h = arg;
    (void)fd;
    (void)what;
    if (!h->req)
        return;
    evhttp_cancel_request(h->req); /* its callback does not run */
    h->req_error = -1;
    if (h->conn) {
        conn_free_later(h->conn);
        h->conn = NULL;
    }
    finish(h, 0, "timeout (no complete answer within the deadline)");
    kick();
}

static void send_head(cd_hook_tgt *h)
{
    const cd_hook_ev *e = &h->q[0];
    size_t len = strlen(e->body);
    char sig[72];
    if (h->secret && cd_hook_sign(h->secret, e->body, len, sig) != 0) {
        cd_log_error("%s: cannot sign (OpenSSL); retrying", h->label);
        failed(h, 0, "cannot sign the body");
        return;
    }
    if (!h->conn) {
        h->conn = evhttp_connection_base_new(H.base, H.dns, h->host, (ev_uint16_t)h->port);
        h->conn_reused = 0;
        if (!h->conn) {
            failed(h, 0, "cannot create a connection");
            return;
        }
        evhttp_connection_set_timeout(h->conn, (int)H.cfg->webhook_timeout_s);
        evhttp_connection_set_retries(h->conn, 0);
        evhttp_connection_set_max_body_size(h->conn, CD_HOOK_MAX_RESPONSE);
        evhttp_connection_set_max_headers_size(h->conn, CD_HOOK_MAX_HEADERS);
    }
    struct evhttp_request *rq = evhttp_request_new(on_done, h);
    if (!rq) {
        failed(h, 0, "out of memory");
        return;
    }
    evhttp_request_set_error_cb(rq, on_error);
    struct evkeyvalq *hd = evhttp_request_get_output_headers(rq);
    char hostport[300], idbuf[24], ts[24], hid[24];
    if (h->port == 80)
        snprintf(hostport, sizeof(hostport), "%s", h->host);
    else if (strchr(h->host, ':'))
        snprintf(hostport, sizeof(hostport), "[%s]:%d", h->host, h->port);
    else
        snprintf(hostport, sizeof(hostport), "%s:%d", h->host, h->port);
    snprintf(idbuf, sizeof(idbuf), "%" PRId64, e->id);
    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    snprintf(hid, sizeof(hid), "%" PRId64, h->id);
    evhttp_add_header(hd, "Host", hostport);
    evhttp_add_header(hd, "Content-Type", "application/json");
    evhttp_add_header(hd, "User-Agent", "conduitd/" CD_VERSION);
    evhttp_add_header(hd, "X-Conduit-Event-Id", idbuf);
    if (h->secret) { /* a webhook: ConduitDB's reference server expects no signature */
        evhttp_add_header(hd, "X-Conduit-Webhook-Id", hid);
        evhttp_add_header(hd, "X-Conduit-Timestamp", ts);
        evhttp_add_header(hd, "X-Conduit-Signature", sig);
    }
    evbuffer_add(evhttp_request_get_output_buffer(rq), e->body, len);
    h->req = rq;
    h->req_error = -1;
    if (evhttp_make_request(h->conn, rq, EVHTTP_REQ_POST, h->target) != 0) {
        h->req = NULL; /* libevent freed rq */
        conn_free_later(h->conn);
        h->conn = NULL;
        failed(h, 0, "cannot send the request");
        return;
    }
    struct timeval tv = {(time_t)H.cfg->webhook_timeout_s * 2, 0};
    event_add(h->deadline, &tv);
}

/* One target: the next body out, when nothing is in flight and no retry
 * is pending. */
static void pump_one(cd_hook_tgt *h, double now)
{
    if (h->req || now < h->st.next_try)
        return;
    if (h->qn == 0 && h->dirty)
        h->src->fetch(h);
    if (h->qn > 0 && H.pg)
        send_head(h);
}

/* Everything that can move now does. */
static void pump(void)
{
    if (!pg_get())
        return;
    double now = cd_now_s();
    if (now - H.last_rescan >= HOOK_RESCAN_S) {
        /* a safety net, not the mechanism: NOTIFY wakes us for new events;
         * this catches a registration whose log scan stopped at its window */
        H.last_rescan = now;
        H.reload = 1;
        for (cd_hook_tgt *h = H.hooks; h; h = h->next)
            h->dirty = 1;
        if (H.cdb)
            H.cdb->dirty = 1;
    }
    if (H.reload && H.cfg->webhooks)
        reload();
    if (!H.cdb && H.cfg->conduitdb_reference_url) /* not in H.hooks: reload() keeps off it */
        H.cdb = cd_hook_cdb_open(H.cfg->conduitdb_reference_url);
    for (cd_hook_tgt *h = H.hooks; h && H.pg; h = h->next)
        pump_one(h, now);
    if (H.cdb && H.pg)
        pump_one(H.cdb, now);
}

/* ---- the process ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    pump();
}

/* The child's main: never returns. */
static void hook_child_main(void *arg, int slot, int fd)
{
    (void)slot;
    memset(&H, 0, sizeof(H));
    H.cfg = arg;
    H.base = event_base_new();
    H.dns = H.base ? evdns_base_new(H.base, EVDNS_BASE_INITIALIZE_NAMESERVERS) : NULL;
    if (!H.dns) { /* no resolv.conf: numeric receivers still work */
        H.dns = H.base ? evdns_base_new(H.base, 0) : NULL;
    }
    struct event *tick = H.base ? event_new(H.base, -1, EV_PERSIST, on_tick, NULL) : NULL;
    if (!tick) {
        cd_log_error("webhook: cannot create the event loop");
        exit(CD_EXIT_FAILURE);
    }
    struct timeval tv = {HOOK_TICK_S, 0};
    event_add(tick, &tv);
    H.kick = event_new(H.base, -1, 0, on_kick, NULL);
    if (!H.kick) {
        cd_log_error("webhook: cannot create the event loop");
        exit(CD_EXIT_FAILURE);
    }
    cd_child_exit *quit = cd_child_exit_install(H.base, fd, "webhook");
    if (!quit)
        exit(CD_EXIT_FAILURE);
    /* a receiver that closes the connection must not kill us with SIGPIPE */
    signal(SIGPIPE, SIG_IGN);
    cd_log_info("webhook: delivery process running (pid %d)", (int)getpid());
    pump();
    event_base_dispatch(H.base);
    cd_log_info("webhook: stopping");
    while (H.hooks) {
        cd_hook_tgt *h = H.hooks;
        H.hooks = h->next;
        if (h->req)
            evhttp_cancel_request(h->req);
        h->req = NULL;
        cd_hook_tgt_free(h);
    }
    if (H.cdb && H.cdb->req)
        evhttp_cancel_request(H.cdb->req);
    cd_hook_tgt_free(H.cdb);
    H.cdb = NULL;
    event_base_loop(H.base, EVLOOP_NONBLOCK); /* the connections' release */
    event_free(H.kick);
    if (H.pg_ev)
        event_free(H.pg_ev);
    if (H.pg)
        PQfinish(H.pg);
    event_free(tick);
    cd_child_exit_free(quit);
    evdns_base_free(H.dns, 0);
    event_base_free(H.base);
    close(fd);
    exit(CD_EXIT_OK);
}

/* ---- the controller module ---- */

static const cd_sup_kind hook_kind = {.name = "webhook",
                                      .main = hook_child_main,
                                      .restart = CD_SUP_RESPAWN,
                                      .needs_ring = 0,
                                      .needs_pg = 1};

static int hook_init(cd_ctl *ctl, void **state)
{
    *state = NULL;
    const cd_config *cfg = cd_ctl_config(ctl);
    if (!cfg->index && cfg->conduitdb_reference_url) /* set for nothing: said */
        cd_log_warn("conduitdb_reference_url is set but index = off: no tip-filter matches are "
                    "sent");
    /* one process for both: webhook registrations (webhooks = on) and
     * ConduitDB's reference server (conduitdb_reference_url) */
    if (!cfg->index || (!cfg->webhooks && !cfg->conduitdb_reference_url))
        return 0;
    /* a resident child whose channel the controller only holds open; the
     * config outlives the child's row (the controller owns it) */
    static const char fatal[] = "webhook: the delivery process cannot run; webhooks are not "
                                "delivered until conduitd restarts (events are kept)";
    cd_resident *r;
    int rc = cd_resident_one(cd_ctl_sup(ctl), &hook_kind, (void *)cfg, fatal, &r);
    if (rc < 0) {
        cd_log_error("webhook: cannot add the delivery process: %s", cd_strerror(rc));
        return -1;
    }
    *state = r;
    return 0;
}

static void hook_fini(void *state)
{
    cd_resident_free(state, 5000);
}

const cd_ctl_module cd_hook_module = {
    .name = "webhook",
    .init = hook_init,
    .fini = hook_fini,
};
