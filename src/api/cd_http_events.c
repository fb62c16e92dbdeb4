/*
 * cd_http_events.c - the hub of the push-notification streams in one HTTP
 * server process: the event log (table `events`, sql/009) read over one
 * PostgreSQL connection that LISTENs on cd_event, a ring of the recent
 * events, and the pump that feeds each client.
 *
 * Why this shape: every change that makes an event inserts its row in the
 * change's own transaction (cd_emit), with ids in commit order, so "every
 * event after id N" read from the table is exactly what a client missed,
 * across client reconnects and daemon restarts alike. A client is a
 * position in that log (`pos`, the id it was last given) and a filter; the
 * pump moves pos forward, from the ring when pos is recent, else from the
 * table a page at a time, and stops while the client's output is full
 * (back-pressure: nothing is dropped, the client lags and catches up from
 * the log when it reads again; one that stays full is cut off by
 * ev_client_tick). One PostgreSQL connection per process, however many
 * clients: a notification makes the hub read the new rows once and pump
 * every client from memory. ConduitDB's /ws (cd_http_cdb_ws.c) is the
 * hub's other client kind: it shares the session, its reconnects and its
 * wake-ups (ev_hub.reader_wake), and reads its own notices with it.
 */
#include "cd_http_events_int.h"

#include "cd_log.h"
#include "cd_pg.h"
#include "cd_util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"tip", "reorg", "key", "spend", "evict"};

unsigned ev_kind_of(const char *name, size_t len)
{
    for (unsigned i = 0; i < 5; i++)
        if (strlen(kind_names[i]) == len && !memcmp(kind_names[i], name, len))
            return 1u << i;
    return 0;
}

const char *ev_kind_name(unsigned kind)
{
    for (unsigned i = 0; i < 5; i++)
        if (kind == 1u << i)
            return kind_names[i];
    return "?";
}

/* ---- PostgreSQL ---- */

static void hub_pg_drop(ev_hub *h)
{
    if (h->pg_ev) {
        event_free(h->pg_ev);
        h->pg_ev = NULL;
    }
    if (h->pg) {
        PQfinish(h->pg);
        h->pg = NULL;
    }
    h->pg_next_try = cd_now_s() + HTTP_PG_RETRY_S;
}

void ev_hub_check(ev_hub *h)
{
    if (h->pg && PQstatus(h->pg) != CONNECTION_OK)
        hub_pg_drop(h);
}

PGresult *ev_sql(ev_hub *h, const char *sql, int n, const char *const *params, int ok)
{
    if (!h->pg)
        return NULL;
    PGresult *r = n ? PQexecParams(h->pg, sql, n, NULL, params, NULL, NULL, 0) : PQexec(h->pg, sql);
    if (PQresultStatus(r) == (ExecStatusType)ok)
        return r;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(h->pg));
    msg[strcspn(msg, "\n")] = '\0';
    cd_log_warn("http: server %d: events: postgres: %s", h->s->proc, msg);
    PQclear(r);
    if (PQstatus(h->pg) != CONNECTION_OK)
        hub_pg_drop(h);
    return NULL;
}

static void on_pg_readable(evutil_socket_t fd, short what, void *arg);

/* Connects, LISTENs, and (first time) starts at the log's end. */
static int hub_pg_connect(ev_hub *h)
{
    if (h->pg)
        return 0;
    if (!h->s->cfg->index || cd_now_s() < h->pg_next_try)
        return -1;
    const cd_pg_session how = {5, "conduitd-events"};
    PGconn *c = cd_pg_open(h->s->cfg, &how);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(c);
        if (!h->pg_was_down)
            cd_log_warn("http: server %d: events: postgres: cannot connect: %s", h->s->proc, msg);
        h->pg_was_down = 1;
        h->pg_next_try = cd_now_s() + HTTP_PG_RETRY_S;
        return -1;
    }
    h->pg = c;
    h->renewed = h->last_id >= 0; /* not the first session: one was lost */
    PGresult *r = ev_sql(h, HTTP_PG_SETUP "; LISTEN cd_event", 0, NULL, PGRES_COMMAND_OK);
    if (!r) {
        hub_pg_drop(h);
        return -1;
    }
    PQclear(r);
    if (h->last_id < 0) {
        r = ev_sql(h, "SELECT coalesce(max(id), 0) FROM events", 0, NULL, PGRES_TUPLES_OK);
        if (!r) {
            hub_pg_drop(h);
            return -1;
        }
        h->last_id = h->floor = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
    }
    PQsetnonblocking(c, 0);
    h->pg_ev = event_new(h->s->base, PQsocket(c), EV_READ | EV_PERSIST, on_pg_readable, h);
    if (!h->pg_ev || event_add(h->pg_ev, NULL) != 0) {
        hub_pg_drop(h);
        return -1;
    }
    if (h->pg_was_down)
        cd_log_info("http: server %d: events: postgres: connected again", h->s->proc);
    h->pg_was_down = 0;
    return 0;
}

/* ---- the ring ---- */

static void event_clear(ev_event *e)
{
    free(e->json);
    memset(e, 0, sizeof(*e));
}

/* Builds an event from a row (id, at, kind, body). Returns 0, -1 if the row
 * is unusable (logged; skipped by every client). */
static int event_from_row(PGresult *r, int i, ev_event *e)
{
    memset(e, 0, sizeof(*e));
    e->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    const char *kind = PQgetvalue(r, i, 2);
    e->kind = ev_kind_of(kind, strlen(kind));
    json_error_t je;
    json_t *body = json_loads(PQgetvalue(r, i, 3), 0, &je);
    char idtxt[24];
    snprintf(idtxt, sizeof(idtxt), "%" PRId64, e->id);
    if (!e->kind || !body) {
        cd_log_warn("http: events: event %s: unknown kind or bad body: skipped", idtxt);
        json_decref(body);
        return -1;
    }
    if (e->kind == EV_KEY) {
        const char *k = json_string_value(json_object_get(body, "key"));
        if (!k || cd_hex_decode(e->key, 32, k) != 0)
            memset(e->key, 0, 32);
    } else if (e->kind == EV_SPEND) {
        const char *t = json_string_value(json_object_get(body, "txid"));
        json_int_t v = json_integer_value(json_object_get(body, "vout"));
        if (!t || cd_hex_decode(e->op, 32, t) != 0)
            memset(e->op, 0, 32);
        cd_put_le32(e->op + 32, (uint32_t)v);
    }
    json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:o}", "type", "event", "id", idtxt, "kind",
                          ev_kind_name(e->kind), "at", PQgetvalue(r, i, 1), "data", body);
    char *txt = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (!txt)
        return -1;
    e->json = txt;
    e->len = strlen(txt);
    return 0;
}

static const ev_event *ring_at(const ev_hub *h, size_t i)
{
    return &h->ring[(h->ring_head + i) % EV_RING];
}

static void ring_push(ev_hub *h, ev_event *e)
{
    if (h->ring_n == EV_RING) {
        ev_event *old = &h->ring[h->ring_head];
        h->floor = old->id;
        event_clear(old);
        h->ring_head = (h->ring_head + 1) % EV_RING;
        h->ring_n--;
    }
    h->ring[(h->ring_head + h->ring_n) % EV_RING] = *e;
    h->ring_n++;
}

#define EV_SELECT                                                                                  \
    "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), kind, "       \
    "body::text FROM events "

int ev_hub_fetch(ev_hub *h)
{
    if (hub_pg_connect(h) != 0)
        return -1;
    int64_t before = h->last_id;
    /* Far behind (no client for a while, a burst): only the last EV_RING
     * events go into the ring; a client further back replays from the
     * table a page at a time. So one fetch reads at most about EV_RING rows
     * however long the process was idle. With no stream client (only
     * ConduitDB's /ws, which reads its own notices) the ring is not filled
     * for nobody: a stream that comes later starts here or replays. */
    int64_t keep = TAILQ_EMPTY(&h->clients) ? 0 : EV_RING;
    PGresult *m = ev_sql(h, "SELECT coalesce(max(id), 0) FROM events", 0, NULL, PGRES_TUPLES_OK);
    if (!m)
        return -1;
    int64_t max = strtoll(PQgetvalue(m, 0, 0), NULL, 10);
    PQclear(m);
    if (max - h->last_id > keep) {
        for (size_t i = 0; i < h->ring_n; i++)
            event_clear(&h->ring[(h->ring_head + i) % EV_RING]);
        h->ring_head = h->ring_n = 0;
        h->last_id = h->floor = max - keep;
    }
    for (;;) {
        char since[24], lim[16];
        snprintf(since, sizeof(since), "%" PRId64, h->last_id);
        snprintf(lim, sizeof(lim), "%d", EV_PAGE);
        const char *p[2] = {since, lim};
        PGresult *r =
            ev_sql(h, EV_SELECT "WHERE id > $1 ORDER BY id LIMIT $2", 2, p, PGRES_TUPLES_OK);
        if (!r)
            return -1;
        int n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            ev_event e;
            if (event_from_row(r, i, &e) != 0) {
                /* unusable: nobody gets it; the ring stays contiguous */
                e.id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
                e.kind = 0;
                e.json = NULL;
            }
            h->last_id = e.id;
            ring_push(h, &e);
        }
        PQclear(r);
        if (n < EV_PAGE)
            break;
    }
    ev_client *c, *next;
    for (c = TAILQ_FIRST(&h->clients); c; c = next) {
        next = TAILQ_NEXT(c, link);
        ev_pump(c);
    }
    int renewed = h->renewed;
    h->renewed = 0;
    if (h->reader_wake && (renewed || h->last_id != before))
        h->reader_wake(h, renewed);
    return 0;
}

static void on_pg_readable(evutil_socket_t fd, short what, void *arg)
{
    ev_hub *h = arg;
    (void)fd;
    (void)what;
    if (!PQconsumeInput(h->pg)) {
        cd_log_warn("http: server %d: events: postgres connection lost", h->s->proc);
        hub_pg_drop(h);
        return;
    }
    int woke = 0;
    PGnotify *n;
    while ((n = PQnotifies(h->pg)) != NULL) {
        woke = 1;
        PQfreemem(n);
    }
    if (woke)
        CD_IGNORE(ev_hub_fetch(h)); /* a failure reconnects on the tick */
}

/* ---- matching and the pump ---- */

static int cmp32(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static int cmp36(const void *a, const void *b)
{
    return memcmp(a, b, 36);
}

int ev_match(const ev_client *c, const ev_event *e)
{
    if (!(c->kinds & e->kind) || !e->json)
        return 0;
    if (e->kind == EV_KEY)
        return c->nkeys && bsearch(e->key, c->keys, c->nkeys, 32, cmp32) != NULL;
    if (e->kind == EV_SPEND)
        return c->nops && bsearch(e->op, c->ops, c->nops, 36, cmp36) != NULL;
    return 1;
}

size_t ev_queued(const ev_client *c)
{
    if (c->ws)
        return cd_ws_queued(c->ws);
    struct bufferevent *bev = c->evcon ? evhttp_connection_get_bufferevent(c->evcon) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

/* 1 if e fits in an SSE client's output now (a websocket's cd_ws_send
 * checks the same limit itself, and its refusal arms on_drain). */
static int room_for(const ev_client *c, const ev_event *e)
{
    return c->ws ||
           ev_queued(c) + (e->json ? e->len : 0) + 128 <= c->hub->s->cfg->events_max_output;
}

/* Offers e to c: skipped if it does not match, sent if it fits. Returns 1
 * when c moved past it, 0 when the output is full. */
static int offer(ev_client *c, const ev_event *e)
{
    if (ev_match(c, e)) {
        if (!room_for(c, e) || ev_client_send(c, e) != 0)
            return 0;
    }
    c->pos = e->id;
    return 1;
}

/* One page of the log after c->pos, up to the ring's floor. Returns 1 if
 * c moved (or may move on), 0 when its output is full, -1 on a database
 * error. */
static int replay_page(ev_client *c)
{
    ev_hub *h = c->hub;
    char pos[24], floor[24], lim[16], kinds[64];
    snprintf(pos, sizeof(pos), "%" PRId64, c->pos);
    snprintf(floor, sizeof(floor), "%" PRId64, h->floor);
    snprintf(lim, sizeof(lim), "%d", EV_PAGE);
    size_t kl = 0;
    kinds[kl++] = '{';
    for (unsigned i = 0; i < 5; i++)
        if (c->kinds & (1u << i))
            kl += (size_t)snprintf(kinds + kl, sizeof(kinds) - kl, "%s%s", kl > 1 ? "," : "",
                                   kind_names[i]);
    snprintf(kinds + kl, sizeof(kinds) - kl, "}");
    const char *p[4] = {pos, floor, kinds, lim};
    PGresult *r = ev_sql(h,
                         EV_SELECT "WHERE id > $1 AND id <= $2 AND kind = ANY($3::text[]) "
                                   "ORDER BY id LIMIT $4",
                         4, p, PGRES_TUPLES_OK);
    if (!r)
        return -1;
    int n = PQntuples(r), moved = 1;
    for (int i = 0; i < n && moved; i++) {
        ev_event e;
        if (event_from_row(r, i, &e) != 0) {
            c->pos = strtoll(PQgetvalue(r, i, 0), NULL, 10);
            continue;
        }
        moved = offer(c, &e);
        event_clear(&e);
    }
    if (moved && n < EV_PAGE)
        c->pos = h->floor; /* nothing else of its kinds below the ring */
    PQclear(r);
    return moved;
}

void ev_pump(ev_client *c)
{
    ev_hub *h = c->hub;
    if (!c->started)
        return;
    int pages = 0;
    while (c->pos < h->last_id) {
        if (c->pos < h->floor) {
            if (pages++ >= EV_PAGES_PER_TURN) {
                /* the others' turn: go on from the kick */
                c->kicked = 1;
                event_active(h->kick, EV_TIMEOUT, 1);
                return;
            }
            int rc = replay_page(c);
            if (rc < 0)
                return; /* the tick retries */
            if (rc == 0)
                goto full;
            continue;
        }
        /* from the ring: the first event after pos (ids increase) */
        size_t lo = 0, hi = h->ring_n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (ring_at(h, mid)->id <= c->pos)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < h->ring_n; i++)
            if (!offer(c, ring_at(h, i)))
                goto full;
        c->pos = h->last_id;
    }
    c->stalled_since = 0;
    return;
full:
    if (!c->stalled_since)
        c->stalled_since = cd_now_s();
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    ev_hub *h = arg;
    (void)fd;
    (void)what;
    ev_client *c, *next;
    for (c = TAILQ_FIRST(&h->clients); c; c = next) {
        next = TAILQ_NEXT(c, link);
        if (c->kicked) {
            c->kicked = 0;
            ev_pump(c);
        }
    }
}

int ev_resume_check(ev_hub *h, int64_t since, const char **err)
{
    /* events_pruned: the highest id pruning deleted (sql/010) */
    PGresult *r = ev_sql(h,
                         "SELECT coalesce((SELECT upto FROM events_pruned), 0), "
                         "greatest(coalesce((SELECT max(id) FROM events), 0), (SELECT CASE "
                         "WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq))",
                         0, NULL, PGRES_TUPLES_OK);
    if (!r)
        return -1;
    int rc = 0;
    int64_t pruned = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    int64_t max = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    if (since < pruned) {
        /* events after `since` may have been pruned (cd_events_prune) */
        *err = "resume point no longer available (older than the oldest event kept): "
               "resubscribe and re-read the state";
        rc = 1;
    } else if (since > max && since > h->last_id) {
        *err = "resume point ahead of the event log (not a token of this database)";
        rc = 2;
    }
    PQclear(r);
    return rc;
}

/* ---- the tick ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    ev_hub *h = arg;
    (void)fd;
    (void)what;
    double now = cd_now_s();
    /* missed notifications (a reconnect) are read here at the latest */
    if (!TAILQ_EMPTY(&h->clients) || h->reader_wake)
        CD_IGNORE(ev_hub_fetch(h)); /* down: retried next tick */
    ev_client *c, *next;
    for (c = TAILQ_FIRST(&h->clients); c; c = next) {
        next = TAILQ_NEXT(c, link);
        ev_client_tick(c, now);
    }
    /* subscriptions expire even if no client ever comes back: server 0
     * connects for that once a minute (the others once they stream) */
    int no_clients = TAILQ_EMPTY(&h->clients);
    if (no_clients && (h->s->proc != 0 || now < h->next_expire))
        return;
    if (hub_pg_connect(h) != 0)
        return;
    const cd_config *cfg = h->s->cfg;
    /* subscriptions with a client are kept fresh; the rest expire after
     * events_sub_idle (their keys unwatched) */
    if (now >= h->next_touch) {
        h->next_touch = now + cfg->events_sub_idle_s / 4.0;
        struct evbuffer *b = evbuffer_new();
        int n = 0;
        evbuffer_add(b, "{", 1);
        TAILQ_FOREACH(c, &h->clients, link)
        if (c->sub[0])
            evbuffer_add_printf(b, "%s%s", n++ ? "," : "", c->sub);
        evbuffer_add(b, "}", 2);
        if (n) {
            const char *p[1] = {(const char *)evbuffer_pullup(b, -1)};
            PGresult *r = ev_sql(h,
                                 "UPDATE event_subs SET seen_at = now() WHERE id = "
                                 "ANY($1::text[])",
                                 1, p, PGRES_COMMAND_OK);
            PQclear(r);
        }
        evbuffer_free(b);
    }
    if (h->pg && now >= h->next_expire) {
        h->next_expire = now + 60;
        char idle[24];
        snprintf(idle, sizeof(idle), "%u", cfg->events_sub_idle_s);
        const char *p[1] = {idle};
        PGresult *r = ev_sql(h, "SELECT cd_event_subs_expire(make_interval(secs => $1))", 1, p,
                             PGRES_TUPLES_OK);
        if (r && atoi(PQgetvalue(r, 0, 0)) > 0)
            cd_log_info("http: server %d: events: %s idle subscription(s) expired", h->s->proc,
                        PQgetvalue(r, 0, 0));
        PQclear(r);
    }
}

static ev_hub *hub_new(http_srv *s)
{
    ev_hub *h = s->events;
    if (!h) {
        h = calloc(1, sizeof(*h));
        if (!h)
            return NULL;
        h->s = s;
        h->last_id = -1;
        TAILQ_INIT(&h->clients);
        h->tick = event_new(s->base, -1, EV_PERSIST, on_tick, h);
        h->kick = event_new(s->base, -1, 0, on_kick, h);
        struct timeval one = {1, 0};
        if (!h->tick || !h->kick || event_add(h->tick, &one) != 0) {
            if (h->tick)
                event_free(h->tick);
            if (h->kick)
                event_free(h->kick);
            free(h);
            return NULL;
        }
        h->next_expire = cd_now_s() + 5;
        s->events = h;
    }
    return h;
}

ev_hub *ev_hub_get(http_srv *s)
{
    ev_hub *h = hub_new(s);
    if (!h || hub_pg_connect(h) != 0 || h->last_id < 0)
        return NULL;
    return h;
}

void cd_http_events_start(http_srv *s)
{
    /* the tick, for expiring subscriptions; PostgreSQL is reached from it */
    if (s->cfg->index && s->cfg->events_max_conns && !hub_new(s))
        cd_log_warn("http: server %d: events: out of memory", s->proc);
}

void cd_http_events_fini(http_srv *s)
{
    ev_hub *h = s->events;
    if (!h)
        return;
    ev_clients_fini(h);
    for (size_t i = 0; i < h->ring_n; i++)
        event_clear(&h->ring[(h->ring_head + i) % EV_RING]);
    hub_pg_drop(h);
    event_free(h->tick);
    event_free(h->kick);
    free(h);
    s->events = NULL;
}
