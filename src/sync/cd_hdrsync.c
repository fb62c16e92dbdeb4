/*
 * cd_hdrsync.c - header sync scheduler (see cd_hdrsync.h).
 *
 * Why it exists: the controller must learn every header from its peers as
 * fast as they can send them, keep following new tips, and never let a bad
 * peer put anything into the header tree. This file holds the per-peer
 * request state machine (idle / request in flight), the penalties and the
 * progress lines the operators and the functional tests read.
 */
#include "cd_hdrsync.h"

#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define LOCATOR_MAX 64

typedef struct hs_peer {
    cp2p_peer *peer;
    int in_flight;        /* a getheaders is outstanding */
    int again;            /* ask once more after the current reply */
    double sent_at;       /* cd_now_s() of the outstanding request */
    unsigned unconnected; /* unsolicited non-connecting announcements in a row */
    int from_tip;         /* the outstanding request's locator starts at our tip */
    int parked;           /* full reply we already had: wait while another peer syncs */
} hs_peer;

struct cd_hdrsync {
    cd_hdrtree *tree;
    cp2p_mgr *mgr;
    struct event_base *base;
    hs_peer *peers;
    size_t n_peers, cap_peers;

    uint64_t added;        /* headers added this run */
    uint64_t added_at_log; /* for the rate of the progress line */
    double last_log;
    double start; /* first request of this run */
    int synced;
    const cd_hdr_node *synced_tip; /* tip named in the last "synced" line */
    const cd_hdr_node *logged_tip; /* tip named in the last progress line */
};

static void hex_hash(char out[65], const uint8_t h[32])
{
    cd_hex_encode_rev(out, h, 32);
}

static hs_peer *find_peer(cd_hdrsync *s, const cp2p_peer *p)
{
    for (size_t i = 0; i < s->n_peers; i++) {
        if (s->peers[i].peer == p)
            return &s->peers[i];
    }
    return NULL;
}

static hs_peer *get_peer(cd_hdrsync *s, cp2p_peer *p)
{
    hs_peer *ps = find_peer(s, p);
    if (ps)
        return ps;
    if (s->n_peers == s->cap_peers) {
        s->cap_peers = s->cap_peers ? s->cap_peers * 2 : 8;
        s->peers = cd_xrealloc(s->peers, s->cap_peers * sizeof(*s->peers));
    }
    ps = &s->peers[s->n_peers++];
    memset(ps, 0, sizeof(*ps));
    ps->peer = p;
    return ps;
}

cd_hdrsync *cd_hdrsync_new(cd_hdrtree *tree, cp2p_mgr *mgr, struct event_base *base)
{
    cd_hdrsync *s = cd_xcalloc(1, sizeof(*s));
    s->tree = tree;
    s->mgr = mgr;
    s->base = base;
    s->last_log = cd_now_s();
    return s;
}

void cd_hdrsync_free(cd_hdrsync *s)
{
    if (!s)
        return;
    free(s->peers);
    free(s);
}

static int others_in_flight(const cd_hdrsync *s, const hs_peer *ps)
{
    for (size_t i = 0; i < s->n_peers; i++) {
        if (&s->peers[i] != ps && s->peers[i].in_flight)
            return 1;
    }
    return 0;
}

static void request(cd_hdrsync *s, hs_peer *ps, const cd_hdr_node *from);

/* Asks the parked peers again (from our tip) when no bulk sync is running. */
static void unpark(cd_hdrsync *s)
{
    for (size_t i = 0; i < s->n_peers; i++) {
        hs_peer *ps = &s->peers[i];
        if (ps->parked && !others_in_flight(s, ps)) {
            ps->parked = 0;
            request(s, ps, NULL);
        }
    }
}

static void request(cd_hdrsync *s, hs_peer *ps, const cd_hdr_node *from)
{
    uint8_t loc[LOCATOR_MAX][32];
    if (!from)
        from = cd_hdrtree_tip(s->tree);
    ps->from_tip = from == cd_hdrtree_tip(s->tree);
    size_t n = cd_hdrtree_locator_from(s->tree, from, loc, LOCATOR_MAX);
    int rc = cp2p_peer_getheaders(ps->peer, (const uint8_t(*)[32])loc, n, NULL);
    if (rc != CP2P_OK) {
        cd_log_warn("peer %s: getheaders not sent: %s", cp2p_peer_name(ps->peer),
                    cp2p_strerror(rc));
        ps->in_flight = 0;
        return;
    }
    char hex[65];
    hex_hash(hex, from->hash);
    cd_log_debug("peer %s: getheaders from height %d (%s), %zu locator entries",
                 cp2p_peer_name(ps->peer), (int)from->height, hex, n);
    ps->in_flight = 1;
    ps->again = 0;
    ps->parked = 0;
    ps->sent_at = cd_now_s();
    if (s->start == 0)
        s->start = ps->sent_at;
}

/* Drops a misbehaving peer: libconduit-p2p bans its address for an
 * escalating time (from 60 s, doubling per ban in a row; kept across restarts
 * by the controller) and dials it again afterwards. Its on_disconnect, called
 * before cp2p_peer_ban returns, forgets ps. */
static void penalise(cd_hdrsync *s, hs_peer *ps, const char *why)
{
    cp2p_peer *p = ps->peer;
    (void)s;
    cd_log_warn("peer %s: %s; dropping peer (banned)", cp2p_peer_name(p), why);
    cp2p_peer_ban(p, why);
}

void cd_hdrsync_on_ready(cd_hdrsync *s, cp2p_peer *p)
{
    hs_peer *ps = get_peer(s, p);
    ps->in_flight = 0;
    ps->unconnected = 0;
    const cp2p_version *v = cp2p_peer_version(p);
    cd_log_debug("peer %s: ready (%s, height %d); our headers height=%d", cp2p_peer_name(p),
                 v ? v->user_agent : "?", v ? (int)v->start_height : -1,
                 (int)cd_hdrtree_height(s->tree));
    request(s, ps, NULL);
}

void cd_hdrsync_on_disconnect(cd_hdrsync *s, cp2p_peer *p)
{
    hs_peer *ps = find_peer(s, p);
    if (ps) {
        size_t idx = (size_t)(ps - s->peers);
        s->peers[idx] = s->peers[--s->n_peers];
        unpark(s);
    }
}

static void log_progress(cd_hdrsync *s, int force)
{
    double now = cd_now_s();
    const cd_hdr_node *tip = cd_hdrtree_tip(s->tree);
    if (!force && now - s->last_log < 1.0)
        return;
    if (tip == s->logged_tip && !force)
        return;
    double dt = now - s->last_log;
    double rate = dt > 0 ? (double)(s->added - s->added_at_log) / dt : 0;
    char hex[65];
    hex_hash(hex, tip->hash);
    cd_log_info("headers: height=%d tip=%s (%.0f headers/s)", (int)tip->height, hex, rate);
    s->last_log = now;
    s->added_at_log = s->added;
    s->logged_tip = tip;
}

static void log_synced(cd_hdrsync *s, cp2p_peer *p)
{
    const cd_hdr_node *tip = cd_hdrtree_tip(s->tree);
    s->synced = 1;
    /* idle: let read-only users (conduit-cli) find the new headers by hash */
    CD_IGNORE(cd_hdrtree_flush_index(s->tree)); /* logged; tried again at the next idle */
    if (tip == s->synced_tip)
        return;
    log_progress(s, tip != s->logged_tip);
    char hex[65];
    hex_hash(hex, tip->hash);
    double el = s->start > 0 ? cd_now_s() - s->start : 0;
    cd_log_info("headers synced height=%d tip=%s (%llu new headers this run, %.0f headers/s, "
                "peer %s)",
                (int)tip->height, hex, (unsigned long long)s->added,
                el > 0 ? (double)s->added / el : 0.0, cp2p_peer_name(p));
    s->synced_tip = tip;
}

cd_hdrsync_step cd_hdrsync_next(const cd_hdrsync_reply *r, unsigned *unconnected_out)
{
    *unconnected_out = r->unconnected;
    if (r->n > CD_HDRTREE_MAX_BATCH)
        return CD_HDRSYNC_BAN;
    if (r->n == 0)
        return CD_HDRSYNC_DONE;
    if (r->rc == CD_HDRTREE_EUNCONNECTED && !r->reply && r->bad_index == 0) {
        /* an announcement that does not connect: we may be behind */
        *unconnected_out = r->unconnected + 1;
        return *unconnected_out >= CD_HDRSYNC_MAX_UNCONNECTED ? CD_HDRSYNC_BAN : CD_HDRSYNC_ASK_TIP;
    }
    if (r->rc != 0)
        return r->rc == CD_HDRTREE_ESTORE ? CD_HDRSYNC_STORE_ERROR : CD_HDRSYNC_BAN;
    *unconnected_out = 0;
    if (r->n == CD_HDRTREE_MAX_BATCH) {
        /* full reply: there is more; continue along this peer's branch, or,
         * when another peer already gave us all of it, jump to our tip (once:
         * a peer on another branch answers a tip locator from the fork) */
        if (r->n_new == 0 && r->others_in_flight)
            return CD_HDRSYNC_PARK; /* another peer is ahead on this chain */
        return r->n_new == 0 && !r->from_tip ? CD_HDRSYNC_ASK_TIP : CD_HDRSYNC_ASK_LAST;
    }
    return CD_HDRSYNC_DONE;
}

void cd_hdrsync_on_headers(cd_hdrsync *s, cp2p_peer *p, const uint8_t *hdrs, size_t n)
{
    hs_peer *ps = get_peer(s, p);
    cd_hdrsync_reply in = {
        .n = n, .reply = ps->in_flight, .unconnected = ps->unconnected, .from_tip = ps->from_tip};
    char why[256];

    ps->in_flight = 0;
    cd_hdrtree_add_result res;
    memset(&res, 0, sizeof(res));
    if (n > 0 && n <= CD_HDRTREE_MAX_BATCH) {
        in.rc = cd_hdrtree_add(s->tree, hdrs, n, 80, &res);
        in.bad_index = res.bad_index;
        in.n_new = res.n_new;
    }
    in.others_in_flight = others_in_flight(s, ps);
    cd_hdrsync_step step = cd_hdrsync_next(&in, &ps->unconnected);

    if (n > CD_HDRTREE_MAX_BATCH) {
        snprintf(why, sizeof(why), "sent %zu headers in one message (limit %d)", n,
                 CD_HDRTREE_MAX_BATCH);
        penalise(s, ps, why);
        return;
    }
    if (n == 0) {
        if (in.reply)
            log_synced(s, p);
        unpark(s);
        return;
    }
    if (in.rc != 0) {
        if (in.rc == CD_HDRTREE_EUNCONNECTED && step == CD_HDRSYNC_ASK_TIP) {
            cd_log_info("peer %s: announced %zu headers that do not connect; asking for headers",
                        cp2p_peer_name(p), n);
            request(s, ps, NULL);
            return;
        }
        if (in.rc == CD_HDRTREE_EUNCONNECTED && !in.reply && in.bad_index == 0) {
            snprintf(why, sizeof(why),
                     "refused %zu headers: %s (%u unsolicited announcements in a row)", n,
                     cd_strerror(in.rc), ps->unconnected);
            penalise(s, ps, why);
            return;
        }
        char hex[65];
        uint8_t h[32];
        size_t bi = res.bad_index < n ? res.bad_index : n - 1;
        cd_sha256d(h, hdrs + 80 * bi, 80);
        hex_hash(hex, h);
        snprintf(why, sizeof(why), "refused %zu headers: %s (header %zu, %s)", n,
                 cd_strerror(in.rc), bi, hex);
        if (step == CD_HDRSYNC_STORE_ERROR) {
            /* our problem, not the peer's */
            cd_log_error("peer %s: %s", cp2p_peer_name(p), why);
            return;
        }
        penalise(s, ps, why);
        return;
    }
    if (res.n_new > 0) {
        s->added += res.n_new;
        s->synced = 0;
        if (!res.tip_changed) {
            char hex[65];
            hex_hash(hex, res.last->hash);
            cd_log_info("headers: %zu new headers on a branch without more work (last height=%d "
                        "%s, peer %s); best tip unchanged at height=%d",
                        res.n_new, (int)res.last->height, hex, cp2p_peer_name(p),
                        (int)cd_hdrtree_height(s->tree));
        }
    }
    switch (step) {
    case CD_HDRSYNC_PARK:
        ps->parked = 1; /* asked again when that one finishes or goes */
        return;
    case CD_HDRSYNC_ASK_TIP:
    case CD_HDRSYNC_ASK_LAST:
        request(s, ps, step == CD_HDRSYNC_ASK_TIP ? NULL : res.last);
        log_progress(s, 0);
        return;
    default:
        break;
    }
    if (ps->again)
        request(s, ps, NULL);
    if (in.reply || res.n_new > 0)
        log_synced(s, p);
    unpark(s);
}

void cd_hdrsync_on_message(cd_hdrsync *s, cp2p_peer *p, const char *cmd, const uint8_t *payload,
                           size_t len)
{
    if (strcmp(cmd, "headers") != 0 || len == 0)
        return;
    /* peek at the CompactSize count: more than 2000 is misbehaviour (the
     * library would only see an undecodable message) */
    uint64_t cnt = payload[0];
    if (cnt == 0xfd && len >= 3)
        cnt = cd_le16(payload + 1);
    else if (cnt == 0xfe && len >= 5)
        cnt = cd_le32(payload + 1);
    else if (cnt == 0xff && len >= 9)
        cnt = cd_le64(payload + 1);
    else if (cnt >= 0xfd)
        return;
    if (cnt > CD_HDRTREE_MAX_BATCH) {
        hs_peer *ps = get_peer(s, p);
        char why[128];
        snprintf(why, sizeof(why), "sent %llu headers in one message (limit %d)",
                 (unsigned long long)cnt, CD_HDRTREE_MAX_BATCH);
        penalise(s, ps, why);
    }
}

void cd_hdrsync_on_inv(cd_hdrsync *s, cp2p_peer *p, const cp2p_inv *inv, size_t n)
{
    int unknown = 0;
    for (size_t i = 0; i < n; i++) {
        if (inv[i].type == CP2P_INV_BLOCK && !cd_hdrtree_find(s->tree, inv[i].hash)) {
            unknown = 1;
            break;
        }
    }
    if (!unknown)
        return;
    hs_peer *ps = get_peer(s, p);
    if (ps->in_flight) {
        ps->again = 1;
        return;
    }
    request(s, ps, NULL);
}

void cd_hdrsync_tick(cd_hdrsync *s)
{
    double now = cd_now_s();
    for (size_t i = 0; i < s->n_peers; i++) {
        hs_peer *ps = &s->peers[i];
        if (ps->in_flight && now - ps->sent_at > CD_HDRSYNC_TIMEOUT_S) {
            cd_log_warn("peer %s: no headers reply in %d s, asking again", cp2p_peer_name(ps->peer),
                        CD_HDRSYNC_TIMEOUT_S);
            request(s, ps, NULL);
        }
    }
    unpark(s);
    if (!s->synced)
        log_progress(s, 0);
}

int cd_hdrsync_synced(const cd_hdrsync *s)
{
    return s->synced;
}

uint64_t cd_hdrsync_added(const cd_hdrsync *s)
{
    return s->added;
}

void cd_hdrsync_log_tip_event(const cd_hdrtree_tip_event *ev)
{
    if (ev->n_leaving == 0)
        return;
    char f[65], o[65], n[65];
    hex_hash(f, ev->fork->hash);
    hex_hash(o, ev->old_tip->hash);
    hex_hash(n, ev->new_tip->hash);
    cd_log_info("reorg: fork height=%d fork=%s old tip=%s (height %d) new tip=%s (height %d) "
                "leaving=%zu joining=%zu",
                (int)ev->fork->height, f, o, (int)ev->old_tip->height, n, (int)ev->new_tip->height,
                ev->n_leaving, ev->n_joining);
}
