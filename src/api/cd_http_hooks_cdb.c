/*
 * cd_http_hooks_cdb.c - tip-filter matches POSTed to ConduitDB's reference
 * server (issue 16): what ConduitDB does in
 * conduit_raw/aiohttp_api/server.py (_attempt_outbound_data_delivery_task:
 * POST <reference server>/api/v1/tip-filter/matches, Content-Type exactly
 * application/json, one batch per block or mempool run), done by the
 * webhook process when conduitdb_reference_url is set.
 *
 * Why here: the webhook process already has what this needs - a libevent
 * HTTP client with timeouts and a deadline, the back-off with jitter, one
 * PostgreSQL session that LISTENs on cd_event - and a reference server is
 * one more receiver of it. This file is only the source of that receiver
 * (cd_http_hooks_int.h): how its queue is filled and its cursor kept.
 *
 * What is sent: the matches of every account's live tip-filter
 * registrations (cdb_tip_filters), read from the event log with the query
 * /ws?notifications=all uses (cd_cdbq_match_notices) and put in ConduitDB's
 * body by the same builder (cd_cdbq_notice_json): one POST per run of
 * matches of one block (blockId: display hex) or of the mempool (blockId:
 * null), one entry per account. A block's matches go out once, when the
 * block joins conduitd's best chain (conduitd indexes only best-chain
 * blocks; ConduitDB waits for its header tip to reach the block, which is
 * the same moment for a block that is the tip). After a reorg, the
 * matches of a block that left go out first, as /ws has them, with
 * "orphaned": true (ConduitDB never sent these; a reference server reads
 * only blockId and entries, docs/CONDUITDB_API.md says what that means).
 *
 * Order and loss: one POST in flight; the cursor (cdb_outbound.scan_id,
 * sql/015) moves past a batch only after a 2xx, so a batch is POSTed again
 * after a failure, a crash or a restart (at least once, in order), with
 * the same body while the process lives (kept in memory between retries).
 * Events are read CD_HOOK_CDB_EVENTS at a time; when a read is full, its
 * last run is held back and read again with what follows; a run that
 * alone fills a read is read again with a larger window, up to
 * CD_HOOK_CDB_EVENTS_MAX: a block's matches are one POST unless they hold
 * more events than that.
 */
#include "cd_http_hooks_int.h"

#include "cd_cdbq_notify.h"
#include "cd_escape.h"
#include "cd_log.h"
#include "cd_util.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CDB_LABEL "conduitdb reference server"
#define CDB_PATH  "/api/v1/tip-filter/matches" /* ConduitDB's, appended to the option */

static char last_err[512]; /* the last read error logged (once per distinct one) */

/* The cursor moved over events that hold no match (nothing queued). */
static void skip_to(cd_hook_tgt *h, int64_t upto)
{
    char v1[24];
    snprintf(v1, sizeof(v1), "%" PRId64, upto);
    const char *v[1] = {v1};
    PGresult *r = cd_hook_pg_q("moving the reference server's cursor",
                               "UPDATE cdb_outbound SET scan_id = $1 WHERE scan_id < $1", 1, v);
    if (r) { /* else: read again next time, nothing lost */
        PQclear(r);
        h->committed = upto;
    }
}

static void cdb_fetch(cd_hook_tgt *h)
{
    PGconn *pg = cd_hook_pg();
    if (!pg)
        return;
    cd_cdbq_notice *v = NULL;
    size_t n = 0;
    int64_t last = h->read_to;
    int full = 0;
    char err[512];
    int rc;
    for (int max = CD_HOOK_CDB_EVENTS;; max *= 4) {
        rc = cd_cdbq_match_notices(pg, h->read_to, max, &v, &n, &last, &full, err, sizeof(err));
        /* one block's matches fill the read: read more at once, so that the
         * block is one POST as ConduitDB sends it (up to a bound) */
        if (rc != CD_LOOKUP_OK || !full || n == 0 || cd_cdbq_notice_run(v, n, 0) != n ||
            max >= CD_HOOK_CDB_EVENTS_MAX)
            break;
        free(v);
        v = NULL;
    }
    if (rc != CD_LOOKUP_OK) {
        free(v);
        if (strcmp(err, last_err) != 0)
            cd_log_error("%s: %s (after event %" PRId64 "); retrying", CDB_LABEL, err, h->read_to);
        snprintf(last_err, sizeof(last_err), "%s", err);
        h->st.next_try = cd_now_s() + 1.0; /* a lost session is reopened by cd_hook_pg */
        return;
    }
    last_err[0] = '\0';
    h->dirty = full; /* a full read: more is waiting */
    int64_t upto = last;
    size_t i = 0;
    while (i < n) {
        size_t j = cd_cdbq_notice_run(v, n, i);
        /* the queue is full, or the read was and this run may go on in the
         * next one (unless it alone fills the read): read it again later */
        if (h->qn == CD_HOOK_BATCH || (j == n && full && i > 0))
            break;
        json_t *o = cd_cdbq_notice_json(v + i, j - i, 0, 0);
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!text) {
            cd_log_error("%s: out of memory building a batch; retrying", CDB_LABEL);
            break;
        }
        cd_hook_ev *e = &h->q[h->qn++];
        e->id = e->cursor = v[j - 1].event;
        e->body = text;
        i = j;
    }
    if (i < n) { /* stopped early: the rest is read again after these */
        upto = v[i].event - 1;
        h->dirty = 1;
    }
    free(v);
    h->read_to = upto;
    if (h->qn > 0)
        h->q[h->qn - 1].cursor = upto; /* the events after it hold no match */
    else if (upto > h->committed)
        skip_to(h, upto);
    if (h->dirty && h->qn == 0)
        cd_hook_kick();
}

static int cdb_commit(cd_hook_tgt *h)
{
    char c[24], id[24];
    snprintf(c, sizeof(c), "%" PRId64, h->q[0].cursor);
    snprintf(id, sizeof(id), "%" PRId64, h->q[0].id);
    const char *v[2] = {c, id};
    PGresult *r = cd_hook_pg_q(
        "recording a delivery to the reference server",
        "UPDATE cdb_outbound SET scan_id = $1, delivered_id = $2, " CD_HOOK_SQL_DELIVERED
        ", last_error = NULL WHERE scan_id < $1",
        2, v);
    if (!r) {
        h->read_to = h->committed; /* the queue is dropped and read again from here */
        return -1;
    }
    PQclear(r);
    h->committed = h->q[0].cursor;
    return 0;
}

/* its one row of cdb_outbound: no WHERE */
static const cd_hook_src cdb_src = {
    .fetch = cdb_fetch,
    .commit = cdb_commit,
    .failed_sql = "UPDATE cdb_outbound SET " CD_HOOK_SQL_FAILED,
    .by_id = 0,
    .failed_what = "recording a failed delivery to the reference server",
};

cd_hook_tgt *cd_hook_cdb_open(const char *base_url)
{
    static int unusable; /* said once: the option table makes it unreachable */
    if (unusable)
        return NULL;
    size_t bl = strlen(base_url);
    while (bl > 0 && base_url[bl - 1] == '/') /* http://host:port/ + /api/...: one slash */
        bl--;
    size_t ul = bl + sizeof(CDB_PATH);
    char *url = cd_xmalloc(ul);
    snprintf(url, ul, "%.*s%s", (int)bl, base_url, CDB_PATH);
    const char *v[1] = {url};
    PGresult *r =
        cd_hook_pg_q("reading the reference server's cursor",
                     "SELECT scan_id, attempts, failing, wait FROM cdb_outbound_start($1)", 1, v);
    if (!r || PQntuples(r) != 1) {
        if (r)
            PQclear(r);
        free(url);
        return NULL;
    }
    cd_hook_tgt *h = cd_hook_tgt_new(0, CDB_LABEL, url, NULL, &cdb_src);
    if (!h) {
        unusable = 1;
        PQclear(r);
        free(url);
        return NULL;
    }
    h->committed = h->read_to = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    cd_hook_state_resume(&h->st, r, 0, 1);
    PQclear(r);
    cd_log_info("%s: POSTing tip-filter matches to %s, after event %" PRId64, CDB_LABEL,
                cd_escape_str(url), h->read_to);
    free(url);
    return h;
}
