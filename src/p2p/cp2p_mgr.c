/*
 * cp2p_mgr.c - the peer manager of libconduit-p2p: options, error and state
 * names, accessors, the periodic tick (handshake, stall and ping timeouts,
 * our pings, reconnects, broadcast tracking, freeing dead peers), adding
 * peers and broadcasting transactions.
 */
#include "cp2p_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "cd_build.h"
#include "cd_log.h"

/* ---- small helpers ---------------------------------------------------------- */

const char *cp2p_strerror(int err)
{
    switch (err) {
    case CP2P_OK:
        return "ok";
    case CP2P_EINVAL:
        return "invalid argument";
    case CP2P_ENOTREADY:
        return "peer not ready";
    case CP2P_ETOOBIG:
        return "message too big for peer";
    case CP2P_ENOMEM:
        return "out of memory";
    case CP2P_ERESOLVE:
        return "cannot resolve host";
    case CP2P_ESYS:
        return "system error";
    case CP2P_EMALFORMED:
        return "malformed payload";
    case CP2P_ENOPEER:
        return "no ready peer";
    default:
        return "unknown error";
    }
}

const char *cp2p_reason_str(cp2p_reason r)
{
    static const char *const names[] = {
        [CP2P_R_NONE] = "none",
        [CP2P_R_CLOSED_LOCAL] = "closed-local",
        [CP2P_R_CONNECT_FAILED] = "connect-failed",
        [CP2P_R_EOF] = "eof",
        [CP2P_R_TRUNCATED] = "truncated",
        [CP2P_R_IO] = "io-error",
        [CP2P_R_BAD_MAGIC] = "bad-magic",
        [CP2P_R_BAD_COMMAND] = "bad-command",
        [CP2P_R_OVERSIZE] = "oversize",
        [CP2P_R_BAD_CHECKSUM] = "bad-checksum",
        [CP2P_R_MALFORMED] = "malformed",
        [CP2P_R_PROTOCOL] = "protocol",
        [CP2P_R_HANDSHAKE_TIMEOUT] = "handshake-timeout",
        [CP2P_R_PING_TIMEOUT] = "ping-timeout",
        [CP2P_R_STALLED] = "stalled",
        [CP2P_R_NOMEM] = "no-memory",
        [CP2P_R_SINK] = "sink",
        [CP2P_R_SELF] = "self-connection",
    };
    if ((unsigned)r < CD_ARRAY_LEN(names) && names[r])
        return names[r];
    return "unknown";
}

const char *cp2p_peer_state_str(cp2p_peer_state s)
{
    switch (s) {
    case CP2P_PEER_IDLE:
        return "idle";
    case CP2P_PEER_CONNECTING:
        return "connecting";
    case CP2P_PEER_VERSION_SENT:
        return "version-sent";
    case CP2P_PEER_READY:
        return "ready";
    case CP2P_PEER_CLOSING:
        return "closing";
    case CP2P_PEER_BACKOFF:
        return "backoff";
    case CP2P_PEER_DEAD:
        return "dead";
    }
    return "unknown";
}

void cp2p_options_init(cp2p_options *o, const btc_net *net)
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
    o->reconnect = 1;
    o->reconnect_min_ms = 1000;
    o->reconnect_max_ms = 60000;
    o->broadcast_wait_ms = 5000;
    o->tick_ms = 250;
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
        n += m->peers[i]->state != CP2P_PEER_DEAD;
    return n;
}

size_t cp2p_mgr_ready_count(const cp2p_mgr *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_peers; i++)
        n += m->peers[i]->state == CP2P_PEER_READY;
    return n;
}

cp2p_peer *cp2p_mgr_peer_at(cp2p_mgr *m, size_t i)
{
    for (size_t k = 0; k < m->n_peers; k++) {
        if (m->peers[k]->state == CP2P_PEER_DEAD)
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
        if (m->peers[i]->state == CP2P_PEER_READY) {
            m->rr = i + 1;
            return m->peers[i];
        }
    }
    return NULL;
}

/* ---- manager ---------------------------------------------------------------------- */

void cp2p_bcast_done(cp2p_mgr *m, bcast *b, cp2p_peer *from, cp2p_bcast_result res,
                     const cp2p_reject *rej)
{
    b->done = 1;
    cp2p_ctx c = mkctx(from);
    c.mgr = m;
    c.user = m->user;
    if (m->h.on_broadcast)
        m->h.on_broadcast(&c, b->txid, res, rej);
}

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
        return;
    case CP2P_PEER_READY:
        break;
    case CP2P_PEER_BACKOFF:
        if (now >= p->t_reconnect_ns)
            cp2p_peer_connect(p);
        return;
    default:
        return;
    }
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
        (void)cp2p_peer_ping(p);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    cp2p_mgr *m = arg;
    uint64_t now = cd_now_ns();
    (void)fd;
    (void)what;
    for (size_t i = 0; i < m->n_peers; i++)
        tick_peer(m->peers[i], now);
    /* broadcasts: silence until the deadline = accepted */
    for (size_t i = 0; i < m->n_bc; i++)
        if (!m->bc[i].done && now >= m->bc[i].deadline_ns) {
            cp2p_peer *p = m->bc[i].peer;
            cp2p_bcast_done(m, &m->bc[i], p, CP2P_BCAST_ACCEPTED, NULL);
        }
    size_t k = 0;
    for (size_t i = 0; i < m->n_bc; i++)
        if (!m->bc[i].done)
            m->bc[k++] = m->bc[i];
    m->n_bc = k;
    /* reap dead peers */
    k = 0;
    for (size_t i = 0; i < m->n_peers; i++) {
        cp2p_peer *p = m->peers[i];
        if (p->state == CP2P_PEER_DEAD && !p->busy) {
            for (size_t j = 0; j < m->n_bc; j++)
                if (m->bc[j].peer == p)
                    m->bc[j].peer = NULL;
            peer_free(p);
        } else {
            m->peers[k++] = p;
        }
    }
    m->n_peers = k;
    if (m->rr > m->n_peers)
        m->rr = 0;
}

static int ua_banned(const char *ua)
{
    return strcasestr(ua, "abc") || strcasestr(ua, "cash") || strcasestr(ua, "bch");
}

cp2p_mgr *cp2p_mgr_new(struct event_base *base, const cp2p_options *opt, const cp2p_handlers *h,
                       const cp2p_block_sink *sink, void *user)
{
    if (!base || !opt || !opt->net) {
        cd_log_error("cp2p_mgr_new: base, options and network are required");
        return NULL;
    }
    const char *ua = opt->user_agent ? opt->user_agent : "/conduit-p2p:" CD_VERSION "/";
    if (strlen(ua) > 256 || ua_banned(ua)) {
        cd_log_error("cp2p_mgr_new: user agent \"%s\" is too long or contains abc/cash/bch "
                     "(banned by BSV nodes)",
                     ua);
        return NULL;
    }
    if (opt->max_recv_payload < CP2P_LEGACY_MAX_RECV || opt->chunk_threshold < 4096 ||
        opt->tick_ms == 0) {
        cd_log_error("cp2p_mgr_new: max_recv_payload must be >= 1 MiB, chunk_threshold >= "
                     "4096 and tick_ms > 0");
        return NULL;
    }
    if (sink && (!sink->begin || !sink->space || !sink->data || !sink->end)) {
        cd_log_error("cp2p_mgr_new: a block sink needs all four callbacks");
        return NULL;
    }
    cp2p_mgr *m = cd_xcalloc(1, sizeof(*m));
    m->base = base;
    m->opt = *opt;
    m->ua = cd_xstrdup(ua);
    m->opt.user_agent = m->ua;
    if (h)
        m->h = *h;
    if (sink) {
        m->sink = *sink;
        m->have_sink = 1;
    }
    m->user = user;
    m->tick = event_new(base, -1, EV_PERSIST, on_tick, m);
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
    free(m->bc);
    if (m->tick)
        event_free(m->tick);
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

int cp2p_mgr_add_peer(cp2p_mgr *m, const char *hostport, cp2p_peer **out)
{
    char host[256];
    uint16_t port;
    if (!m || parse_hostport(hostport, m->opt.net->default_port, host, sizeof(host), &port))
        return CP2P_EINVAL;
    cp2p_peer *p = cd_xcalloc(1, sizeof(*p));
    p->mgr = m;
    p->fd = -1;
    snprintf(p->host, sizeof(p->host), "%s", host);
    p->port = port;
    if (strchr(host, ':'))
        snprintf(p->name, sizeof(p->name), "[%s]:%u", host, port);
    else
        snprintf(p->name, sizeof(p->name), "%s:%u", host, port);
    p->out = evbuffer_new();
    p->rbuf = cd_xmalloc(RBUF_DEFAULT);
    p->rcap = RBUF_DEFAULT;
    p->max_send = CP2P_LEGACY_MAX_RECV;
    p->stats.last_ping_rtt_us = -1;
    p->state = CP2P_PEER_IDLE;
    if (m->n_peers == m->cap_peers) {
        m->cap_peers = m->cap_peers ? m->cap_peers * 2 : 8;
        m->peers = cd_xrealloc(m->peers, m->cap_peers * sizeof(*m->peers));
    }
    m->peers[m->n_peers++] = p;
    if (out)
        *out = p;
    cp2p_peer_connect(p);
    return CP2P_OK;
}

int cp2p_mgr_broadcast_tx(cp2p_mgr *m, cp2p_peer *peer, const uint8_t *raw, size_t len,
                          uint8_t txid_out[32])
{
    uint8_t txid[32];
    int sent = 0;
    if (!m || !raw || len == 0)
        return CP2P_EINVAL;
    cd_sha256d(txid, raw, len);
    if (peer) {
        int rc = cp2p_peer_send_tx(peer, raw, len);
        if (rc == CP2P_ENOTREADY)
            return CP2P_ENOPEER;
        if (rc)
            return rc;
        sent = 1;
    } else {
        for (size_t i = 0; i < m->n_peers; i++)
            if (m->peers[i]->state == CP2P_PEER_READY &&
                cp2p_peer_send_tx(m->peers[i], raw, len) == CP2P_OK)
                sent++;
    }
    if (!sent)
        return CP2P_ENOPEER;
    if (m->n_bc == m->cap_bc) {
        m->cap_bc = m->cap_bc ? m->cap_bc * 2 : 8;
        m->bc = cd_xrealloc(m->bc, m->cap_bc * sizeof(*m->bc));
    }
    bcast *b = &m->bc[m->n_bc++];
    memset(b, 0, sizeof(*b));
    memcpy(b->txid, txid, 32);
    b->peer = peer;
    b->deadline_ns = cd_now_ns() + (uint64_t)m->opt.broadcast_wait_ms * 1000000ull;
    if (txid_out)
        memcpy(txid_out, txid, 32);
    return CP2P_OK;
}
