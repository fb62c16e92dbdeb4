/*
 * cp2p_mgr.c - the peer manager of libconduit-p2p: options, accessors, the
 * periodic tick (handshake, stall, ping and budget timeouts, our pings,
 * reconnects and bans, broadcast deadlines, freeing dead peers), the
 * deferred event (peers over their send budget, broadcast reports) and
 * adding peers.
 */
#include "cp2p_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "cd_build.h"
#include "cd_util.h"

void cp2p_options_init(cp2p_options *o, const cp2p_net *net)
{
    memset(o, 0, sizeof(*o));
    o->net = net;
    o->user_agent = NULL;
    o->relay = 0;
    o->start_height = 0;
    o->send_sendheaders = 1;
    o->max_recv_payload = CP2P_DEFAULT_MAX_RECV;
    o->max_block_payload = UINT64_MAX;
    o->max_tx_payload = 1000000000ull;
    o->chunk_threshold = CP2P_DEFAULT_CHUNK_THRESHOLD;
    o->verify_block_checksum = 1;
    o->handshake_timeout_ms = 60000;
    o->ping_interval_ms = 120000;
    o->ping_timeout_ms = 60000;
    o->stall_timeout_ms = 120000;
    o->max_send_queue = 16u << 20;
    o->max_msg_rate = 500;
    o->max_tx_rate = 50000;
    o->max_inv_rate = 200000;
    o->msg_burst = 10;
    o->msg_timeout_ms = 120000;
    o->min_block_rate = 16384;
    o->block_grace_ms = 10000;
    o->reconnect = 1;
    o->reconnect_min_ms = 1000;
    o->reconnect_max_ms = 60000;
    o->stable_ms = 60000;
    o->ban_min_ms = 60000;
    o->ban_max_ms = 86400000;
    o->broadcast_wait_ms = 10000;
    o->tick_ms = 250;
    o->log_fn = NULL;
    o->log_user = NULL;
    o->log_level = CP2P_LOG_WARN;
}

size_t cp2p_locator_heights(int64_t tip, int64_t *out, size_t max)
{
    size_t n = 0;
    int64_t step = 1;
    if (max == 0 || tip < 0)
        return 0;
    for (int64_t h = tip; h > 0 && n < max; h -= step) {
        out[n++] = h;
        if (n > 10)
            step *= 2;
    }
    if (n < max)
        out[n++] = 0;
    else
        out[max - 1] = 0;
    return n;
}

/* ---- accessors -------------------------------------------------------------- */

cp2p_peer_state cp2p_peer_state_get(const cp2p_peer *p)
{
    return p->state;
}

const char *cp2p_peer_name(const cp2p_peer *p)
{
    return p->name;
}

const cp2p_peer_stats *cp2p_peer_stats_get(const cp2p_peer *p)
{
    return &p->stats;
}

const cp2p_version *cp2p_peer_version(const cp2p_peer *p)
{
    return p->got_version ? &p->their : NULL;
}

uint32_t cp2p_peer_max_send(const cp2p_peer *p)
{
    return p->max_send;
}

cp2p_reason cp2p_peer_last_reason(const cp2p_peer *p)
{
    return p->last_reason;
}

cp2p_mgr *cp2p_peer_mgr(const cp2p_peer *p)
{
    return p->mgr;
}

void cp2p_peer_set_user(cp2p_peer *p, void *user)
{
    p->user = user;
}

void *cp2p_peer_get_user(const cp2p_peer *p)
{
    return p->user;
}

const cp2p_options *cp2p_mgr_options(const cp2p_mgr *m)
{
    return &m->opt;
}

void *cp2p_mgr_user(const cp2p_mgr *m)
{
    return m->user;
}

size_t cp2p_mgr_peer_count(const cp2p_mgr *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_peers; i++)
        n += m->peers[i]->state != CP2P_PEER_DEAD && peer_app(m->peers[i]);
    return n;
}

size_t cp2p_mgr_ready_count(const cp2p_mgr *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_peers; i++)
        n += m->peers[i]->state == CP2P_PEER_READY && peer_app(m->peers[i]);
    return n;
}

cp2p_peer *cp2p_mgr_peer_at(cp2p_mgr *m, size_t i)
{
    for (size_t k = 0; k < m->n_peers; k++) {
        if (m->peers[k]->state == CP2P_PEER_DEAD || !peer_app(m->peers[k]))
            continue;
        if (i-- == 0)
            return m->peers[k];
    }
    return NULL;
}

cp2p_peer *cp2p_mgr_next_peer(cp2p_mgr *m)
{
    for (size_t k = 0; k < m->n_peers; k++) {
        size_t i = (m->rr + k) % m->n_peers;
        if (m->peers[i]->state == CP2P_PEER_READY && peer_app(m->peers[i])) {
            m->rr = i + 1;
            return m->peers[i];
        }
    }
    return NULL;
}

/* ---- manager ---------------------------------------------------------------------- */

static void peer_free(cp2p_peer *p)
{
    cp2p_peer_teardown(p);
    free(p->bbuf);
    free(p->boffs);
    free(p->rbuf);
    if (p->out)
        evbuffer_free(p->out);
    free(p);
}

static void tick_peer(cp2p_peer *p, uint64_t now)
{
    const cp2p_options *o = &p->mgr->opt;
    switch (p->state) {
    case CP2P_PEER_CONNECTING:
    case CP2P_PEER_VERSION_SENT:
        if (now - p->t_start_ns > (uint64_t)o->handshake_timeout_ms * 1000000ull)
            cp2p_peer_fail(p, CP2P_R_HANDSHAKE_TIMEOUT, "no version/verack within %u ms",
                           o->handshake_timeout_ms);
        else
            (void)cp2p_budget_tick(p, now);
        return;
    case CP2P_PEER_READY:
        break;
    case CP2P_PEER_BACKOFF:
    case CP2P_PEER_BANNED:
        if (now >= p->t_retry_ns) {
            LOG_DEBUG(p->mgr, "peer %s: %s over, dialling", p->name,
                      p->state == CP2P_PEER_BANNED ? "ban" : "back-off");
            cp2p_peer_connect(p);
        }
        return;
    default:
        return;
    }
    if (p->defer_reason)
        return; /* failed from the deferred event */
    if (cp2p_budget_tick(p, now))
        return;
    cp2p_penalty_tick(p, now);
    uint64_t silent = now - p->t_last_rx_ns;
    int mid_msg = p->mode == RD_BLOCK || p->rend > p->rstart;
    if (mid_msg && !p->read_paused && silent > (uint64_t)o->stall_timeout_ms * 1000000ull) {
        cp2p_peer_fail(p, CP2P_R_STALLED, "no data for %llu ms inside a %s message",
                       (unsigned long long)(silent / 1000000), p->hdr.cmd);
        return;
    }
    if (p->read_paused)
        return; /* back-pressure: we are not reading, so silence means nothing */
    if (p->ping_outstanding &&
        now - p->t_ping_sent_ns > (uint64_t)o->ping_timeout_ms * 1000000ull &&
        silent > (uint64_t)o->ping_timeout_ms * 1000000ull) {
        cp2p_peer_fail(p, CP2P_R_PING_TIMEOUT, "no pong within %u ms", o->ping_timeout_ms);
        return;
    }
    if (o->ping_interval_ms && !p->ping_outstanding && now >= p->t_next_ping_ns) {
        p->t_next_ping_ns = now + (uint64_t)o->ping_interval_ms * 1000000ull;
        if (cp2p_peer_ping(p) != CP2P_OK)
            LOG_DEBUG(p->mgr, "peer %s: ping not sent", p->name);
    }
}

/* Peers that went over their send budget inside a send call are failed
 * here, from the loop, where no caller iterates its peer table. */
static void run_deferred(cp2p_mgr *m)
{
    for (size_t i = 0; i < m->n_peers; i++) {
        cp2p_peer *p = m->peers[i];
        if (p->defer_reason && p->fd >= 0) {
            char detail[sizeof(p->defer_detail)];
            cp2p_reason r = p->defer_reason;
            memcpy(detail, p->defer_detail, sizeof(detail));
            p->defer_reason = CP2P_R_NONE;
            cp2p_peer_fail(p, r, "%s", detail);
        }
    }
    cp2p_bcast_tick(m, cp2p_now_ns());
}

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_deferred(arg);
}

void cp2p_mgr_wake(cp2p_mgr *m)
{
    if (m->deferred)
        event_active(m->deferred, EV_TIMEOUT, 0);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    cp2p_mgr *m = arg;
    (void)fd;
    (void)what;
    /* each peer's own "now": a callback of one peer may restart another's
     * clocks (resume_read, connect) later than a time taken before the loop */
    for (size_t i = 0; i < m->n_peers; i++)
        tick_peer(m->peers[i], cp2p_now_ns());
    run_deferred(m);
    /* reap dead peers */
    size_t k = 0;
    for (size_t i = 0; i < m->n_peers; i++) {
        cp2p_peer *p = m->peers[i];
        if (p->state == CP2P_PEER_DEAD && !p->busy) {
            cp2p_bcast_forget_peer(m, p);
            peer_free(p);
        } else {
            m->peers[k++] = p;
        }
    }
    m->n_peers = k;
    if (m->rr > m->n_peers)
        m->rr = 0;
}

static void mgr_new_error(const cp2p_options *opt, const char *fmt, ...) CP2P_PRINTF(2, 3);
static void mgr_new_error(const cp2p_options *opt, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (!opt || CP2P_LOG_ERROR <= opt->log_level)
        cp2p_log_to(opt ? opt->log_fn : NULL, opt ? opt->log_user : NULL, CP2P_LOG_ERROR,
                    "cp2p_mgr_new: %s", line);
}

static int ua_banned(const char *ua)
{
    return strcasestr(ua, "abc") || strcasestr(ua, "cash") || strcasestr(ua, "bch");
}

cp2p_mgr *cp2p_mgr_new(struct event_base *base, const cp2p_options *opt, const cp2p_handlers *h,
                       const cp2p_block_sink *sink, void *user)
{
    if (!base || !opt || !opt->net) {
        mgr_new_error(opt, "base, options and network are required");
        return NULL;
    }
    const char *ua = opt->user_agent ? opt->user_agent : "/conduit-p2p:" CD_VERSION "/";
    if (strlen(ua) > 256 || ua_banned(ua)) {
        mgr_new_error(opt, "the user agent is too long or contains abc/cash/bch (banned by BSV "
                           "nodes)");
        return NULL;
    }
    if (opt->max_recv_payload < CP2P_LEGACY_MAX_RECV || opt->chunk_threshold < 4096 ||
        opt->tick_ms == 0) {
        mgr_new_error(opt, "max_recv_payload must be >= 1 MiB, chunk_threshold >= 4096 and "
                           "tick_ms > 0");
        return NULL;
    }
    if (sink && (!sink->begin || !sink->space || !sink->data || !sink->end)) {
        mgr_new_error(opt, "a block sink needs all four callbacks");
        return NULL;
    }
    cp2p_mgr *m = cp2p_xcalloc(1, sizeof(*m));
    m->base = base;
    m->opt = *opt;
    m->ua = cp2p_xstrdup(ua);
    m->opt.user_agent = m->ua;
    m->log_level = opt->log_level;
    if (h)
        m->h = *h;
    if (sink) {
        m->sink = *sink;
        m->have_sink = 1;
    }
    m->user = user;
    m->tick = event_new(base, -1, EV_PERSIST, on_tick, m);
    m->deferred = event_new(base, -1, 0, on_deferred, m);
    struct timeval tv = {(time_t)(opt->tick_ms / 1000), (suseconds_t)(opt->tick_ms % 1000) * 1000};
    event_add(m->tick, &tv);
    return m;
}

void cp2p_mgr_free(cp2p_mgr *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_peers; i++)
        peer_free(m->peers[i]);
    free(m->peers);
    cp2p_bcast_free_all(m);
    if (m->tick)
        event_free(m->tick);
    if (m->deferred)
        event_free(m->deferred);
    free(m->ua);
    free(m);
}

static int parse_hostport(const char *s, uint16_t defport, char *host, size_t hostsz,
                          uint16_t *port)
{
    const char *colon;
    size_t hl;
    if (!s || !*s)
        return -1;
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e)
            return -1;
        hl = (size_t)(e - s - 1);
        if (hl == 0 || hl >= hostsz)
            return -1;
        memcpy(host, s + 1, hl);
        host[hl] = 0;
        colon = e[1] == ':' ? e + 1 : NULL;
        if (!colon && e[1])
            return -1;
    } else {
        colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon)
            colon = NULL; /* bare IPv6 without brackets */
        hl = colon ? (size_t)(colon - s) : strlen(s);
        if (hl == 0 || hl >= hostsz)
            return -1;
        memcpy(host, s, hl);
        host[hl] = 0;
    }
    if (!colon) {
        *port = defport;
        return 0;
    }
    char *end;
    unsigned long v = strtoul(colon + 1, &end, 10);
    if (*end || v == 0 || v > 65535 || end == colon + 1)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

cp2p_peer *cp2p_peer_new(cp2p_mgr *m, const char *hostport, enum peer_kind kind)
{
    char host[256];
    uint16_t port;
    if (!m ||
        parse_hostport(hostport, cp2p_btcnet(m->opt.net)->default_port, host, sizeof(host), &port))
        return NULL;
    cp2p_peer *p = cp2p_xcalloc(1, sizeof(*p));
    p->mgr = m;
    p->fd = -1;
    p->kind = kind;
    p->relay = kind == PK_WATCH ? 1 : kind == PK_BCAST ? 0 : m->opt.relay;
    snprintf(p->host, sizeof(p->host), "%s", host);
    p->port = port;
    char name[300];
    if (strchr(host, ':'))
        snprintf(name, sizeof(name), "[%s]:%u", host, port);
    else
        snprintf(name, sizeof(name), "%s:%u", host, port);
    cp2p_escape(p->name, sizeof(p->name), name, strlen(name));
    p->out = evbuffer_new();
    p->rbuf = cp2p_xmalloc(RBUF_DEFAULT);
    p->rcap = RBUF_DEFAULT;
    p->max_send = CP2P_LEGACY_MAX_RECV;
    p->stats.last_ping_rtt_us = -1;
    p->state = CP2P_PEER_IDLE;
    if (m->n_peers == m->cap_peers) {
        m->cap_peers = m->cap_peers ? m->cap_peers * 2 : 8;
        m->peers = cp2p_xrealloc(m->peers, m->cap_peers * sizeof(*m->peers));
    }
    m->peers[m->n_peers++] = p;
    return p;
}

int cp2p_mgr_add_peer_ex(cp2p_mgr *m, const char *hostport, const cp2p_penalty *restore,
                         cp2p_peer **out)
{
    cp2p_peer *p = cp2p_peer_new(m, hostport, PK_APP);
    if (!p)
        return CP2P_EINVAL;
    if (out)
        *out = p;
    if (restore && cp2p_penalty_restore(p, restore))
        return CP2P_OK; /* dialled by the tick when the ban / back-off ends */
    cp2p_peer_connect(p);
    return CP2P_OK;
}

int cp2p_mgr_add_peer(cp2p_mgr *m, const char *hostport, cp2p_peer **out)
{
    return cp2p_mgr_add_peer_ex(m, hostport, NULL, out);
}
