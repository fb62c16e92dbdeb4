/*
 * cp2p_bcast.c - broadcasting a transaction and telling what the node did
 * with it (issue 13 §3).
 *
 * What the node says (bsv-p2p.md §6, tests/simnode/README.md "Transactions
 * like the node"): `reject` only for some invalid transactions (a bad
 * signature also costs the sender a ban score of 100, i.e. the connection);
 * `getdata` for each unknown parent when an input is missing (the tx waits
 * as an orphan); nothing for a double spend of a mempool tx or a duplicate;
 * and, for an accepted tx, an `inv` to every *other* connection with relay
 * on. So:
 *
 *   - the tx goes out on a connection of its own (PK_BCAST: relay off, no
 *     sendheaders, never reconnected, closed when no broadcast is pending),
 *     so the node's penalty never costs the application's connection;
 *   - every other connection watches for the `inv` (SEEN_ON_NETWORK); when
 *     the manager's own connections do not have relay on, a watching
 *     connection (PK_WATCH, relay on) to the same node is opened for the
 *     broadcast;
 *   - `getdata` on the broadcast connection: our txid is answered with the
 *     tx, a parent of it means MISSING_INPUTS, anything else gets notfound;
 *   - nothing of the above within opt.broadcast_wait_ms after SENT: TIMEOUT.
 *
 * Reports go to on_broadcast from the manager's deferred event or tick,
 * never from inside cp2p_mgr_broadcast_tx().
 */
#include "cp2p_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "btc_tx.h"

static void bc_free(bcast *b)
{
    free(b->raw);
    free(b->parents);
    b->raw = NULL;
    b->parents = NULL;
}

static void deliver(cp2p_mgr *m, cp2p_peer *target, const cp2p_bcast_report *r)
{
    char hx[65];
    cp2p_hash_to_hex(hx, r->txid);
    CP2P_LOG(m, r->final ? CP2P_LOG_INFO : CP2P_LOG_DEBUG, "broadcast %s to %s: %s (%s)", hx,
             r->node, cp2p_bcast_status_str(r->status), r->detail);
    cp2p_ctx c = mkctx(target);
    c.mgr = m;
    c.user = m->user;
    if (m->h.on_broadcast)
        m->h.on_broadcast(&c, r);
}

/* Reports a status; a final one ends the broadcast (b is then unusable, and
 * m->bc may have been reallocated by the callback). SENT always comes
 * first. */
static void report(cp2p_mgr *m, bcast *b, cp2p_bcast_status st, const cp2p_reject *rej,
                   const uint8_t parent[32], const char *seen_via, const char *fmt, ...)
    CP2P_PRINTF(7, 8);
static void report(cp2p_mgr *m, bcast *b, cp2p_bcast_status st, const cp2p_reject *rej,
                   const uint8_t parent[32], const char *seen_via, const char *fmt, ...)
{
    char detail[400], node[sizeof(b->node)], sent_detail[sizeof(b->node) + 16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    memcpy(node, b->node, sizeof(node));
    cp2p_bcast_report r;
    memset(&r, 0, sizeof(r));
    memcpy(r.txid, b->txid, 32);
    r.status = st;
    r.final = st != CP2P_BCAST_SENT;
    r.reject = rej;
    if (parent)
        memcpy(r.parent, parent, 32);
    r.node = node;
    r.seen_via = seen_via;
    r.detail = detail;
    cp2p_peer *target = b->target;
    int sent_first = r.final && b->sent && !b->sent_reported;
    b->sent_reported |= b->sent;
    if (r.final) {
        b->done = 1;
        bc_free(b);
    }
    if (sent_first) {
        cp2p_bcast_report s = r;
        snprintf(sent_detail, sizeof(sent_detail), "written to %s", node);
        s.status = CP2P_BCAST_SENT;
        s.final = 0;
        s.reject = NULL;
        s.seen_via = NULL;
        memset(s.parent, 0, 32);
        s.detail = sent_detail;
        deliver(m, target, &s);
    }
    deliver(m, target, &r);
}

static int same_node(const cp2p_peer *a, const cp2p_peer *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

static int conn_alive(const cp2p_peer *p)
{
    return p && p->state != CP2P_PEER_DEAD && p->state != CP2P_PEER_CLOSING &&
           p->state != CP2P_PEER_BACKOFF && p->state != CP2P_PEER_BANNED;
}

/* A hidden connection of `kind` to the node of `target`, reused if one is
 * alive, else opened. */
static cp2p_peer *hidden_conn(cp2p_mgr *m, const cp2p_peer *target, enum peer_kind kind)
{
    for (size_t i = 0; i < m->n_peers; i++) {
        cp2p_peer *p = m->peers[i];
        if (p->kind == kind && !p->removed && conn_alive(p) && same_node(p, target))
            return p;
    }
    char hp[300];
    if (strchr(target->host, ':'))
        snprintf(hp, sizeof(hp), "[%s]:%u", target->host, target->port);
    else
        snprintf(hp, sizeof(hp), "%s:%u", target->host, target->port);
    cp2p_peer *p = cp2p_peer_new(m, hp, kind);
    if (!p)
        return NULL;
    LOG_DEBUG(m, "peer %s: opening a %s connection", p->name,
              kind == PK_BCAST ? "broadcast" : "watching");
    cp2p_peer_connect(p);
    return p;
}

/* Another connection that will see the node's inv of an accepted tx. */
static int have_watcher(cp2p_mgr *m, const cp2p_peer *conn)
{
    for (size_t i = 0; i < m->n_peers; i++) {
        cp2p_peer *p = m->peers[i];
        if (p != conn && p->relay && p->kind != PK_BCAST && conn_alive(p))
            return 1;
    }
    return 0;
}

static void send_tx(cp2p_mgr *m, bcast *b)
{
    if (cp2p_queue_msg(b->conn, "tx", b->raw, b->len) != CP2P_OK)
        return; /* the connection is being dropped: NOT_SENT at the deadline */
    b->sent = 1;
    b->deadline_ns = cp2p_now_ns() + (uint64_t)m->opt.broadcast_wait_ms * NS_PER_MS;
    cp2p_mgr_wake(m);
}

int cp2p_mgr_broadcast_tx(cp2p_mgr *m, cp2p_peer *peer, const uint8_t *raw, size_t len,
                          uint8_t txid_out[32])
{
    btc_tx tx;
    if (!m || !raw || len == 0 || btc_tx_parse(&tx, raw, len) != 0 || tx.size != len)
        return CP2P_EINVAL;
    if (!peer) {
        for (size_t i = 0; i < m->n_peers && !peer; i++)
            if (peer_app(m->peers[i]) && m->peers[i]->state == CP2P_PEER_READY)
                peer = m->peers[i];
        if (!peer)
            return CP2P_ENOPEER;
    }
    if (m->n_bc == m->cap_bc) {
        m->cap_bc = m->cap_bc ? m->cap_bc * 2 : 8;
        m->bc = cp2p_xrealloc(m->bc, m->cap_bc * sizeof(*m->bc));
    }
    bcast *b = &m->bc[m->n_bc++];
    memset(b, 0, sizeof(*b));
    cd_sha256d(b->txid, raw, len);
    b->raw = cp2p_xmalloc(len);
    memcpy(b->raw, raw, len);
    b->len = len;
    b->parents = cp2p_xcalloc(tx.n_inputs ? (size_t)tx.n_inputs : 1, 32);
    btc_tx_iter it;
    btc_txin in;
    btc_tx_inputs(&tx, &it);
    while (btc_tx_next_input(&it, &in))
        memcpy(b->parents[b->n_parents++], in.prev_txid, 32);
    b->target = peer->kind == PK_APP ? peer : NULL;
    snprintf(b->node, sizeof(b->node), "%s", peer->name);
    b->conn = hidden_conn(m, peer, PK_BCAST);
    if (!have_watcher(m, b->conn))
        b->watch = hidden_conn(m, peer, PK_WATCH);
    /* until SENT, the deadline is the connection's: no tx out by then */
    b->deadline_ns = cp2p_now_ns() + (uint64_t)m->opt.handshake_timeout_ms * NS_PER_MS;
    if (b->conn && b->conn->state == CP2P_PEER_READY)
        send_tx(m, b);
    if (txid_out)
        memcpy(txid_out, b->txid, 32);
    return CP2P_OK;
}

void cp2p_bcast_on_ready(cp2p_peer *p)
{
    cp2p_mgr *m = p->mgr;
    for (size_t i = 0; i < m->n_bc; i++) {
        bcast *b = &m->bc[i];
        if (!b->done && !b->sent && b->conn == p)
            send_tx(m, b);
    }
}

void cp2p_bcast_on_inv(cp2p_peer *p, const cp2p_inv *inv, size_t n)
{
    cp2p_mgr *m = p->mgr;
    for (size_t i = 0; i < m->n_bc; i++) {
        bcast *b = &m->bc[i];
        if (b->done || !b->sent || b->conn == p)
            continue;
        for (size_t k = 0; k < n; k++) {
            if (inv[k].type == CP2P_INV_TX && memcmp(inv[k].hash, b->txid, 32) == 0) {
                report(m, b, CP2P_BCAST_SEEN_ON_NETWORK, NULL, NULL, p->name,
                       "announced back by inv on %s%s", p->name,
                       p->kind == PK_WATCH ? " (a watching connection)" : "");
                break;
            }
        }
    }
}

int cp2p_bcast_on_getdata(cp2p_peer *p, const cp2p_inv *inv, size_t n)
{
    cp2p_mgr *m = p->mgr;
    uint64_t gen = p->gen;
    cp2p_inv *nf = NULL;
    size_t n_nf = 0;
    if (p->kind != PK_BCAST)
        return 0; /* the application's connections: its business (on_message) */
    for (size_t k = 0; k < n; k++) {
        if (inv[k].type != CP2P_INV_TX)
            continue;
        int known = 0;
        for (size_t i = 0; i < m->n_bc && !known; i++) {
            bcast *b = &m->bc[i];
            if (b->done || b->conn != p)
                continue;
            if (memcmp(inv[k].hash, b->txid, 32) == 0) {
                known = 1;
                (void)cp2p_queue_msg(p, "tx", b->raw, b->len);
            } else if (b->sent) {
                for (size_t j = 0; j < b->n_parents; j++) {
                    if (memcmp(b->parents[j], inv[k].hash, 32) != 0)
                        continue;
                    char ph[65];
                    cp2p_hash_to_hex(ph, inv[k].hash);
                    report(m, b, CP2P_BCAST_MISSING_INPUTS, NULL, inv[k].hash, NULL,
                           "the node asked for parent %s: it holds the tx as an orphan", ph);
                    known = 1;
                    break;
                }
            }
        }
        if (!peer_live(p, gen))
            break;
        if (!known) {
            if (!nf)
                nf = cp2p_xcalloc(n, sizeof(*nf));
            nf[n_nf++] = inv[k];
        }
    }
    if (n_nf && peer_live(p, gen)) {
        cp2p_buf buf = {0};
        cp2p_enc_inv(&buf, nf, n_nf);
        (void)cp2p_queue_msg(p, "notfound", buf.p, buf.len);
        cp2p_buf_free(&buf);
    }
    free(nf);
    return peer_live(p, gen) ? 0 : -1;
}

void cp2p_bcast_on_reject(cp2p_peer *p, const cp2p_reject *rj)
{
    cp2p_mgr *m = p->mgr;
    if (!rj->has_hash || strcmp(rj->message, "tx") != 0)
        return;
    for (size_t i = 0; i < m->n_bc; i++) {
        bcast *b = &m->bc[i];
        if (!b->done && b->conn == p && memcmp(b->txid, rj->hash, 32) == 0)
            report(m, b, CP2P_BCAST_REJECTED, rj, NULL, NULL, "reject code 0x%02x: %s", rj->code,
                   rj->reason);
    }
}

void cp2p_bcast_tick(cp2p_mgr *m, uint64_t now)
{
    /* reports first: callbacks may start new broadcasts (m->bc may grow) */
    for (size_t i = 0; i < m->n_bc; i++) {
        bcast *b = &m->bc[i];
        if (b->done)
            continue;
        if (b->sent && !b->sent_reported) {
            report(m, &m->bc[i], CP2P_BCAST_SENT, NULL, NULL, NULL, "written to %s", b->node);
            b = &m->bc[i];
        }
        if (b->done || now < b->deadline_ns)
            continue;
        if (b->sent)
            report(m, b, CP2P_BCAST_TIMEOUT, NULL, NULL, NULL,
                   "no reject, no getdata for a parent and no inv back within %u ms: not "
                   "accepted (a double spend of a mempool tx, or already known)",
                   m->opt.broadcast_wait_ms);
        else
            report(m, b, CP2P_BCAST_NOT_SENT, NULL, NULL, NULL,
                   "no broadcast connection to %s within %u ms", b->node,
                   m->opt.handshake_timeout_ms);
    }
    for (size_t i = 0; i < m->n_bc; i++) {
        bcast *b = &m->bc[i];
        if (!b->done && !b->sent && b->conn && !conn_alive(b->conn))
            report(m, b, CP2P_BCAST_NOT_SENT, NULL, NULL, NULL,
                   "the broadcast connection to %s failed (%s)", b->node,
                   cp2p_reason_str(b->conn->last_reason));
    }
    size_t k = 0;
    for (size_t i = 0; i < m->n_bc; i++)
        if (!m->bc[i].done)
            m->bc[k++] = m->bc[i];
    m->n_bc = k;
    /* hidden connections no pending broadcast needs are closed */
    for (size_t i = 0; i < m->n_peers; i++) {
        cp2p_peer *p = m->peers[i];
        if (p->kind == PK_APP || p->removed)
            continue;
        int used = 0;
        for (size_t j = 0; j < m->n_bc && !used; j++)
            used = m->bc[j].conn == p || m->bc[j].watch == p;
        if (!used)
            cp2p_peer_remove(p);
    }
}

void cp2p_bcast_forget_peer(cp2p_mgr *m, cp2p_peer *p)
{
    for (size_t i = 0; i < m->n_bc; i++) {
        if (m->bc[i].target == p)
            m->bc[i].target = NULL;
        if (m->bc[i].conn == p)
            m->bc[i].conn = NULL;
        if (m->bc[i].watch == p)
            m->bc[i].watch = NULL;
    }
}

void cp2p_bcast_free_all(cp2p_mgr *m)
{
    for (size_t i = 0; i < m->n_bc; i++)
        bc_free(&m->bc[i]);
    free(m->bc);
    m->bc = NULL;
    m->n_bc = m->cap_bc = 0;
}
