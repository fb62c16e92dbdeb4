/*
 * cp2p_conn.c - connections of libconduit-p2p: dialling a peer, the version
 * message, sending (queued on an evbuffer drained by the write event, within
 * the peer's send budget), and failing a connection (log, on_disconnect,
 * then the reconnect schedule of cp2p_penalty.c).
 */
#include "cp2p_int.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "cd_util.h"

/* ---- sending ---------------------------------------------------------------- */

static void note_queue(cp2p_peer *p)
{
    p->stats.send_queue = evbuffer_get_length(p->out);
    if (p->stats.send_queue > p->stats.send_queue_max)
        p->stats.send_queue_max = p->stats.send_queue;
}

int cp2p_queue_msg(cp2p_peer *p, const char *cmd, const uint8_t *payload, size_t len)
{
    cp2p_mgr *m = p->mgr;
    uint8_t hdr[CP2P_HEADER_LEN];
    size_t queued = evbuffer_get_length(p->out);
    if (p->defer_reason)
        return CP2P_EBUDGET; /* being dropped: queue nothing more */
    if (m->opt.max_send_queue && queued > m->opt.max_send_queue) {
        /* it does not read what we send (pongs, getdata answers, ...):
         * memory for it stops here */
        cp2p_peer_defer_fail(p, CP2P_R_SEND_BUDGET,
                             "%zu bytes queued for it and not read (budget %llu); %s refused",
                             queued, (unsigned long long)m->opt.max_send_queue, cmd);
        return CP2P_EBUDGET;
    }
    cp2p_msghdr_encode(hdr, cp2p_btcnet(m->opt.net)->magic, cmd, payload, len);
    evbuffer_add(p->out, hdr, sizeof(hdr));
    if (len)
        evbuffer_add(p->out, payload, len);
    p->stats.msgs_out++;
    note_queue(p);
    if (!p->connecting)
        event_add(p->ev_write, NULL);
    LOG_DEBUG(m, "peer %s: send %s (%zu bytes)", p->name, cmd, len);
    return CP2P_OK;
}

static int can_send(const cp2p_peer *p)
{
    return p->fd >= 0 && !p->connecting &&
           (p->state == CP2P_PEER_VERSION_SENT || p->state == CP2P_PEER_READY);
}

int cp2p_peer_send(cp2p_peer *p, const char *cmd, const uint8_t *payload, size_t len)
{
    if (!p || !cmd || !*cmd || strlen(cmd) > CP2P_COMMAND_LEN || (len && !payload))
        return CP2P_EINVAL;
    if (!can_send(p))
        return CP2P_ENOTREADY;
    if (len > 0xFFFFFFFFu)
        return CP2P_ETOOBIG;
    if (strcmp(cmd, "tx") != 0 && strcmp(cmd, "block") != 0 && len > p->max_send)
        return CP2P_ETOOBIG;
    return cp2p_queue_msg(p, cmd, payload, len);
}

static int send_buf(cp2p_peer *p, const char *cmd, cp2p_buf *b)
{
    int rc = cp2p_peer_send(p, cmd, b->p, b->len);
    cp2p_buf_free(b);
    return rc;
}

int cp2p_peer_getheaders(cp2p_peer *p, const uint8_t (*locator)[32], size_t n, const uint8_t *stop)
{
    cp2p_buf b = {0};
    if (!p || (n && !locator))
        return CP2P_EINVAL;
    cp2p_enc_getheaders(&b, locator, n, stop);
    return send_buf(p, "getheaders", &b);
}

static int send_inv_split(cp2p_peer *p, const char *cmd, const cp2p_inv *items, size_t n)
{
    if (!p || !items || n == 0)
        return CP2P_EINVAL;
    if (!can_send(p))
        return CP2P_ENOTREADY;
    size_t per = cp2p_inv_max_entries(p->max_send);
    for (size_t i = 0; i < n; i += per) {
        cp2p_buf b = {0};
        cp2p_enc_inv(&b, items + i, CD_MIN(per, n - i));
        int rc = send_buf(p, cmd, &b);
        if (rc)
            return rc;
    }
    return CP2P_OK;
}

int cp2p_peer_getdata(cp2p_peer *p, const cp2p_inv *items, size_t n)
{
    return send_inv_split(p, "getdata", items, n);
}

int cp2p_peer_send_inv(cp2p_peer *p, const cp2p_inv *items, size_t n)
{
    return send_inv_split(p, "inv", items, n);
}

static int getdata_type(cp2p_peer *p, uint32_t type, const uint8_t (*hashes)[32], size_t n)
{
    if (!hashes || n == 0)
        return CP2P_EINVAL;
    cp2p_inv *v = malloc(n * sizeof(*v));
    if (!v)
        return CP2P_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        v[i].type = type;
        memcpy(v[i].hash, hashes[i], 32);
    }
    int rc = cp2p_peer_getdata(p, v, n);
    free(v);
    return rc;
}

int cp2p_peer_getdata_blocks(cp2p_peer *p, const uint8_t (*hashes)[32], size_t n)
{
    return getdata_type(p, CP2P_INV_BLOCK, hashes, n);
}

int cp2p_peer_getdata_txs(cp2p_peer *p, const uint8_t (*hashes)[32], size_t n)
{
    return getdata_type(p, CP2P_INV_TX, hashes, n);
}

int cp2p_peer_send_tx(cp2p_peer *p, const uint8_t *raw, size_t len)
{
    if (!raw || len == 0)
        return CP2P_EINVAL;
    return cp2p_peer_send(p, "tx", raw, len);
}

int cp2p_peer_ping(cp2p_peer *p)
{
    if (!p)
        return CP2P_EINVAL;
    if (!can_send(p))
        return CP2P_ENOTREADY;
    cp2p_buf b = {0};
    p->ping_nonce = cp2p_rand64();
    cp2p_enc_u64(&b, p->ping_nonce);
    p->ping_outstanding = 1;
    p->t_ping_sent_ns = cp2p_now_ns();
    return send_buf(p, "ping", &b);
}

/* ---- connection life cycle ------------------------------------------------------- */

void cp2p_peer_teardown(cp2p_peer *p)
{
    if (p->ev_read) {
        event_free(p->ev_read);
        p->ev_read = NULL;
    }
    if (p->ev_write) {
        event_free(p->ev_write);
        p->ev_write = NULL;
    }
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    if (p->out)
        evbuffer_drain(p->out, evbuffer_get_length(p->out));
    p->stats.send_queue = 0;
    p->rstart = p->rend = 0;
    p->connecting = 0;
    p->read_paused = 0;
    p->defer_reason = CP2P_R_NONE;
    p->t_msg_start_ns = 0;
    p->t_ready_ns = 0;
    p->gen++;
}

static void peer_vfail(cp2p_peer *p, cp2p_reason r, const char *fmt, va_list ap) CP2P_PRINTF(3, 0);
static void peer_vfail(cp2p_peer *p, cp2p_reason r, const char *fmt, va_list ap)
{
    char detail[512];
    vsnprintf(detail, sizeof(detail), fmt, ap);
    if ((p->fd < 0 && p->state != CP2P_PEER_CONNECTING) || p->failing)
        return;
    p->failing = 1;
    if (p->bk)
        cp2p_block_abort(p, r);
    cp2p_peer_teardown(p);
    p->failing = 0;
    p->state = CP2P_PEER_CLOSING;
    p->last_reason = r;
    p->stats.disconnects++;
    cp2p_ctx c = mkctx(p);
    uint64_t gen = p->gen;
    if (peer_app(p) && p->mgr->h.on_disconnect)
        p->mgr->h.on_disconnect(&c, r, detail);
    if (p->gen == gen && p->state == CP2P_PEER_CLOSING)
        cp2p_schedule_after_close(p, r, detail); /* logs the state change */
}

void cp2p_peer_fail(cp2p_peer *p, cp2p_reason r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    peer_vfail(p, r, fmt, ap);
    va_end(ap);
}

void cp2p_peer_defer_fail(cp2p_peer *p, cp2p_reason r, const char *fmt, ...)
{
    va_list ap;
    if (p->defer_reason || p->fd < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(p->defer_detail, sizeof(p->defer_detail), fmt, ap);
    va_end(ap);
    p->defer_reason = r;
    /* nothing more in or out until the loop fails it */
    if (p->ev_read)
        event_del(p->ev_read);
    if (p->ev_write)
        event_del(p->ev_write);
    cp2p_mgr_wake(p->mgr);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    cp2p_peer *p = arg;
    (void)what;
    if (p->connecting) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err) {
            cp2p_peer_fail(p, CP2P_R_CONNECT_FAILED, "connect: %s", strerror(err));
            return;
        }
        p->connecting = 0;
        p->state = CP2P_PEER_VERSION_SENT;
        event_add(p->ev_read, NULL);
        LOG_DEBUG(p->mgr, "peer %s: connected, version sent", p->name);
    }
    while (evbuffer_get_length(p->out) > 0) {
        int n = evbuffer_write(p->out, fd);
        if (n > 0) {
            p->stats.bytes_out += (uint64_t)n;
            p->stats.send_queue = evbuffer_get_length(p->out);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return; /* stays registered */
        cp2p_peer_fail(p, CP2P_R_IO, "send: %s", n == 0 ? "closed" : strerror(errno));
        return;
    }
    event_del(p->ev_write);
}

static void send_version(cp2p_peer *p, const struct sockaddr *sa)
{
    cp2p_version v;
    uint8_t ip[16] = {0};
    memset(&v, 0, sizeof(v));
    v.version = CP2P_PROTOCOL_VERSION;
    v.services = 0;
    v.timestamp = (int64_t)time(NULL);
    p->our_nonce = cp2p_rand64();
    v.nonce = p->our_nonce;
    snprintf(v.user_agent, sizeof(v.user_agent), "%s", p->mgr->ua);
    v.start_height = p->mgr->opt.start_height;
    v.relay = p->relay;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        ip[10] = ip[11] = 0xFF;
        memcpy(ip + 12, &s4->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(ip, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
    cp2p_buf b = {0};
    cp2p_enc_version(&b, &v, ip, p->port);
    (void)cp2p_queue_msg(p, "version", b.p, b.len); /* empty queue: cannot fail */
    cp2p_buf_free(&b);
}

void cp2p_peer_connect(cp2p_peer *p)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", p->port);
    p->state = CP2P_PEER_CONNECTING;
    p->t_start_ns = cp2p_now_ns();
    p->t_last_rx_ns = p->t_start_ns;
    p->got_version = p->got_verack = p->got_protoconf = 0;
    p->ping_outstanding = 0;
    p->max_send = CP2P_LEGACY_MAX_RECV;
    p->mode = RD_MSG;
    int gai = getaddrinfo(p->host, port, &hints, &res);
    if (gai != 0 || !res) {
        char detail[300];
        snprintf(detail, sizeof(detail), "cannot resolve: %s", gai_strerror(gai));
        p->fd = -1;
        p->last_reason = CP2P_R_CONNECT_FAILED;
        p->state = CP2P_PEER_CLOSING;
        cp2p_ctx c = mkctx(p);
        if (peer_app(p) && p->mgr->h.on_disconnect)
            p->mgr->h.on_disconnect(&c, CP2P_R_CONNECT_FAILED, detail);
        if (p->state == CP2P_PEER_CLOSING)
            cp2p_schedule_after_close(p, CP2P_R_CONNECT_FAILED, detail);
        return;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        char detail[300];
        snprintf(detail, sizeof(detail), "socket: %s", strerror(errno));
        freeaddrinfo(res);
        p->fd = -1;
        p->state = CP2P_PEER_CLOSING;
        cp2p_schedule_after_close(p, CP2P_R_CONNECT_FAILED, detail);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    p->fd = fd;
    p->gen++;
    p->ev_read = event_new(p->mgr->base, fd, EV_READ | EV_PERSIST, cp2p_on_read, p);
    p->ev_write = event_new(p->mgr->base, fd, EV_WRITE | EV_PERSIST, on_write, p);
    p->connecting = 1;
    send_version(p, res->ai_addr);
    int rc = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc < 0 && errno != EINPROGRESS) {
        cp2p_peer_fail(p, CP2P_R_CONNECT_FAILED, "connect: %s", strerror(errno));
        return;
    }
    event_add(p->ev_write, NULL);
}

void cp2p_peer_close(cp2p_peer *p)
{
    if (!p)
        return;
    if (p->fd >= 0)
        cp2p_peer_fail(p, CP2P_R_CLOSED_LOCAL, "closed by application");
}

void cp2p_peer_remove(cp2p_peer *p)
{
    if (!p)
        return;
    p->removed = 1;
    if (p->fd >= 0)
        cp2p_peer_fail(p, CP2P_R_CLOSED_LOCAL, "removed by application");
    p->state = CP2P_PEER_DEAD;
}

void cp2p_peer_ban(cp2p_peer *p, const char *why)
{
    char esc[CP2P_ESCAPED_LEN(200)];
    if (!p || p->removed)
        return;
    cp2p_escape(esc, sizeof(esc), why ? why : "", why ? strnlen(why, 200) : 0);
    if (p->fd >= 0 || p->state == CP2P_PEER_CONNECTING) {
        cp2p_peer_fail(p, CP2P_R_MISBEHAVED, "%s", esc);
    } else if (p->state == CP2P_PEER_BACKOFF || p->state == CP2P_PEER_IDLE) {
        p->state = CP2P_PEER_CLOSING;
        p->last_reason = CP2P_R_MISBEHAVED;
        cp2p_schedule_after_close(p, CP2P_R_MISBEHAVED, esc);
    }
}
