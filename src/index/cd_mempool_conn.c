/*
 * cd_mempool_conn.c - the mempool module's PostgreSQL connection, driven
 * asynchronously on the controller's event_base: PQconnectStart/
 * PQconnectPoll on socket events, one non-blocking statement at a time
 * (PQsendQuery*, PQflush until 0, PQconsumeInput/PQisBusy/PQgetResult), a
 * lost connection requeues what was in flight and retries after a back-off.
 * What is sent, and what a result means, is cd_mempool.c.
 */
#include "cd_mempool.h"
#include "cd_mempool_int.h"

#include "cd_log.h"
#include "cd_pg.h"
#include "cd_util.h"

#include <event2/event.h>

#include <string.h>

/* ---- asynchronous PostgreSQL connection ---- */

static void sock_cb(evutil_socket_t fd, short what, void *arg);

/* Waits for `what` (EV_READ / EV_WRITE) on the connection's socket. The
 * socket may change while connecting, so the event is re-assigned when it
 * differs. */
static void watch(mp_state *s, short what)
{
    evutil_socket_t fd = PQsocket(s->c);
    if (s->ev && (s->ev_fd != fd || s->ev_what != what)) {
        event_free(s->ev);
        s->ev = NULL;
    }
    if (!s->ev) {
        s->ev = event_new(s->base, fd, what, sock_cb, s);
        s->ev_fd = fd;
        s->ev_what = what;
    }
    event_add(s->ev, NULL);
}

void cd_mempool_unwatch(mp_state *s)
{
    if (s->ev) {
        event_free(s->ev);
        s->ev = NULL;
    }
}

/* The connection is gone or unusable: requeue what was in flight, close,
 * and retry after the back-off. */
void cd_mempool_conn_lost(mp_state *s, const char *what)
{
    if (!s->down_logged) {
        const char *e = s->c ? PQerrorMessage(s->c) : "";
        cd_log_warn("mempool: PostgreSQL connection %s: %.*s (retrying every %.1f s at most)", what,
                    (int)strcspn(e, "\n"), e, MP_BACKOFF_MAX_S);
    }
    s->down_logged = 1;
    mp_op op = s->cs == MP_BUSY ? s->op : OP_NONE;
    cd_mempool_unwatch(s);
    if (s->res) {
        PQclear(s->res);
        s->res = NULL;
    }
    if (s->c)
        PQfinish(s->c);
    s->c = NULL;
    s->cs = MP_DOWN;
    s->op = OP_NONE;
    if (op != OP_NONE)
        cd_mempool_op_failed(s, op, 1);
    s->retry_at = cd_now_s() + s->backoff;
    s->backoff = s->backoff * 2 > MP_BACKOFF_MAX_S ? MP_BACKOFF_MAX_S : s->backoff * 2;
}

void cd_mempool_connect_start(mp_state *s)
{
    cd_pg_params prm; /* the same session parameters as every other connection */
    cd_pg_params_init(&prm, s->cfg, NULL);
    s->c = PQconnectStartParams(prm.keys, prm.vals, 1);
    if (!s->c) {
        s->cs = MP_DOWN;
        cd_mempool_conn_lost(s, "could not be started");
        return;
    }
    if (PQstatus(s->c) == CONNECTION_BAD) {
        s->cs = MP_CONNECTING;
        cd_mempool_conn_lost(s, "failed");
        return;
    }
    s->cs = MP_CONNECTING;
    s->connect_deadline = cd_now_s() + MP_CONNECT_TIMEOUT_S;
    watch(s, EV_WRITE); /* as if PQconnectPoll had returned PGRES_POLLING_WRITING */
}

/* Server notices (RAISE NOTICE in the SQL functions) go to the debug log,
 * not to stderr. */
static void notice_cb(void *arg, const char *msg)
{
    (void)arg;
    cd_log_debug("mempool: postgres notice: %.*s", (int)strcspn(msg, "\n"), msg);
}

static void connect_poll(mp_state *s)
{
    switch (PQconnectPoll(s->c)) {
    case PGRES_POLLING_READING:
        watch(s, EV_READ);
        return;
    case PGRES_POLLING_WRITING:
        watch(s, EV_WRITE);
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        cd_mempool_conn_lost(s, "failed");
        return;
    }
    cd_mempool_unwatch(s);
    PQsetNoticeProcessor(s->c, notice_cb, s);
    if (PQsetnonblocking(s->c, 1) != 0) {
        cd_mempool_conn_lost(s, "could not be made non-blocking");
        return;
    }
    if (s->down_logged)
        cd_log_info("mempool: PostgreSQL connection back");
    s->down_logged = 0;
    s->backoff = MP_BACKOFF_MIN_S;
    s->cs = MP_IDLE;
    cd_mempool_dispatch(s);
}

/* Sends what libpq still buffers; then waits for the result. */
static void flush_out(mp_state *s)
{
    int r = PQflush(s->c);
    if (r < 0)
        cd_mempool_conn_lost(s, "lost while sending");
    else
        watch(s, r ? (short)(EV_READ | EV_WRITE) : EV_READ);
}

static void sent(mp_state *s, mp_op op, int ok)
{
    s->cs = MP_BUSY;
    s->op = op;
    if (!ok) {
        cd_mempool_conn_lost(s, "lost");
        return;
    }
    s->op_t0 = cd_now_s();
    flush_out(s);
}

void cd_mempool_send_query(mp_state *s, mp_op op, const char *sql)
{
    sent(s, op, PQsendQuery(s->c, sql));
}

void cd_mempool_send_params(mp_state *s, mp_op op, const char *sql, int n, const char *const *vals,
                            const int *lens, const int *fmts)
{
    sent(s, op, PQsendQueryParams(s->c, sql, n, NULL, vals, lens, fmts, 0));
}

/* Reads what arrived; completes the statement once libpq has all of it.
 * `sending`: libpq still has query bytes to flush (write interest kept). */
static void query_input(mp_state *s, int sending)
{
    if (!PQconsumeInput(s->c)) {
        cd_mempool_conn_lost(s, "lost");
        return;
    }
    while (!PQisBusy(s->c)) {
        PGresult *r = PQgetResult(s->c);
        if (!r) {
            /* statement complete */
            mp_op op = s->op;
            PGresult *res = s->res;
            s->res = NULL;
            s->op = OP_NONE;
            s->cs = MP_IDLE;
            cd_mempool_unwatch(s);
            cd_mempool_op_done(s, op, res);
            PQclear(res);
            if (s->cs == MP_IDLE)
                cd_mempool_dispatch(s);
            return;
        }
        if (!s->res)
            s->res = r;
        else
            PQclear(r);
    }
    watch(s, sending ? (short)(EV_READ | EV_WRITE) : EV_READ);
}

static void sock_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    mp_state *s = arg;
    if (s->cs == MP_CONNECTING) {
        connect_poll(s);
        return;
    }
    if (s->cs != MP_BUSY)
        return;
    int sending = 0;
    if (what & EV_WRITE) {
        sending = PQflush(s->c);
        if (sending < 0) {
            cd_mempool_conn_lost(s, "lost while sending");
            return;
        }
    } else {
        sending = PQisnonblocking(s->c) && s->ev_what == (EV_READ | EV_WRITE);
    }
    if (what & EV_READ)
        query_input(s, sending);
    else
        watch(s, sending ? (short)(EV_READ | EV_WRITE) : EV_READ);
}

int cd_mempool_res_ok(PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

const char *cd_mempool_res_err(PGresult *r)
{
    const char *e = r ? PQresultErrorMessage(r) : "no result";
    return e && *e ? e : "no result\n";
}
