/*
 * cp2p_penalty.c - the reconnect schedule of a peer: exponential back-off
 * with jitter after failures, escalating bans after misbehaviour, and the
 * log lines that say so once per change of state, not once per attempt.
 *
 * Why it exists: a peer that fails (or misbehaves) the same way on every
 * connection must not be redialled every second forever (issue 11 F12,
 * issue 13 §1). A connection counts as good only once it stayed READY for
 * opt.stable_ms; before that, its end is one more failure, so a node that
 * drops us right after the handshake backs us off like one that refuses the
 * connection. Misbehaviour (cp2p_reason_is_misbehaviour, cp2p_peer_ban) bans
 * the address for opt.ban_min_ms, doubling per ban in a row up to
 * opt.ban_max_ms; a ban older than ban_max_ms is forgiven. Every change is
 * reported to on_penalty with wall-clock times, so the application can store
 * it and give it back to cp2p_mgr_add_peer_ex() after a restart.
 */
#include "cp2p_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void report(cp2p_peer *p)
{
    cp2p_mgr *m = p->mgr;
    if (!peer_app(p) || !m->h.on_penalty)
        return;
    cp2p_penalty pen;
    cp2p_penalty_get(p, &pen);
    cp2p_ctx c = mkctx(p);
    m->h.on_penalty(&c, &pen);
}

static uint64_t shifted(uint64_t base_ms, uint32_t steps, uint64_t cap_ms)
{
    uint64_t d = base_ms ? base_ms : 1;
    for (uint32_t i = 0; i < steps && d < cap_ms; i++)
        d *= 2;
    return d > cap_ms ? cap_ms : d;
}

void cp2p_schedule_after_close(cp2p_peer *p, cp2p_reason r, const char *detail)
{
    cp2p_mgr *m = p->mgr;
    const cp2p_options *o = &m->opt;
    uint64_t now = cp2p_now_ns();
    int64_t wall = cp2p_wall_s();
    int was_stable = p->stable;
    p->stable = 0;
    p->last_reason = r;
    if (p->removed || !o->reconnect || !peer_app(p)) {
        if (!peer_app(p))
            LOG_DEBUG(m, "peer %s: disconnected: %s (%s)", p->name, cp2p_reason_str(r), detail);
        else if (r == CP2P_R_CLOSED_LOCAL || r == CP2P_R_EOF)
            LOG_INFO(m, "peer %s: disconnected: %s (%s)", p->name, cp2p_reason_str(r), detail);
        else
            LOG_WARN(m, "peer %s: disconnected: %s (%s)", p->name, cp2p_reason_str(r), detail);
        p->state = CP2P_PEER_DEAD;
        return;
    }
    uint64_t delay_ms;
    if (cp2p_reason_is_misbehaviour(r)) {
        if (p->bans && p->ban_end_wall && wall > p->ban_end_wall + (int64_t)(o->ban_max_ms / 1000))
            p->bans = 0; /* clean for ban_max since the last ban: forgiven */
        p->bans++;
        p->failures++;
        delay_ms = shifted(o->ban_min_ms, p->bans - 1, o->ban_max_ms);
        p->state = CP2P_PEER_BANNED;
        LOG_WARN(m, "peer %s: %s (%s): banned for %llu s (ban %u in a row)", p->name,
                 cp2p_reason_str(r), detail, (unsigned long long)(delay_ms / 1000), p->bans);
        p->streak = 1;
        p->log_reason = r;
    } else {
        p->failures = was_stable ? 1 : p->failures + 1;
        uint64_t d = shifted(o->reconnect_min_ms, p->failures - 1, o->reconnect_max_ms);
        /* jitter: a random point in [d/2, d], so peers that failed together
         * do not come back together */
        delay_ms = d / 2 + cp2p_rand64() % (d / 2 + 1);
        p->state = CP2P_PEER_BACKOFF;
        if (!p->streak || p->log_reason != r) {
            cp2p_log_level lvl = (r == CP2P_R_CLOSED_LOCAL || (r == CP2P_R_EOF && was_stable))
                                     ? CP2P_LOG_INFO
                                     : CP2P_LOG_WARN;
            CP2P_LOG(m, lvl,
                     "peer %s: disconnected: %s (%s); reconnecting with back-off "
                     "(next in %.1f s, doubling up to %u s)",
                     p->name, cp2p_reason_str(r), detail, (double)delay_ms / 1000.0,
                     o->reconnect_max_ms / 1000);
            p->streak = 1;
            p->log_reason = r;
        } else {
            LOG_DEBUG(m, "peer %s: failed again (%u in a row): %s (%s); next attempt in %.1f s",
                      p->name, p->failures, cp2p_reason_str(r), detail, (double)delay_ms / 1000.0);
        }
    }
    p->t_retry_ns = now + delay_ms * NS_PER_MS;
    p->retry_wall = wall + (int64_t)((delay_ms + 999) / 1000);
    if (p->state == CP2P_PEER_BANNED)
        p->ban_end_wall = p->retry_wall;
    report(p);
}

void cp2p_penalty_ready(cp2p_peer *p)
{
    p->t_ready_ns = cp2p_now_ns();
    p->stable = 0;
}

void cp2p_penalty_tick(cp2p_peer *p, uint64_t now)
{
    cp2p_mgr *m = p->mgr;
    if (p->state != CP2P_PEER_READY || p->stable || !p->t_ready_ns || now < p->t_ready_ns ||
        now - p->t_ready_ns < (uint64_t)m->opt.stable_ms * NS_PER_MS)
        return;
    p->stable = 1;
    if (p->failures == 0 && !p->streak)
        return;
    if (p->streak && peer_app(p))
        LOG_INFO(m, "peer %s: connection stable again after %u failed attempt(s)", p->name,
                 p->failures);
    p->failures = 0;
    p->streak = 0;
    p->log_reason = CP2P_R_NONE;
    report(p);
}

void cp2p_penalty_get(const cp2p_peer *p, cp2p_penalty *out)
{
    memset(out, 0, sizeof(*out));
    out->failures = p->failures;
    out->bans = p->bans;
    out->reason = p->last_reason;
    if (p->state == CP2P_PEER_BACKOFF || p->state == CP2P_PEER_BANNED) {
        out->until = p->retry_wall;
        out->banned = p->state == CP2P_PEER_BANNED;
    }
}

int cp2p_penalty_restore(cp2p_peer *p, const cp2p_penalty *pen)
{
    cp2p_mgr *m = p->mgr;
    int64_t wall = cp2p_wall_s();
    p->failures = pen->failures;
    p->bans = pen->bans;
    p->last_reason = pen->reason;
    p->retry_wall = pen->until;
    p->ban_end_wall = pen->banned ? pen->until : (pen->bans ? wall : 0);
    p->streak = pen->failures > 0;
    p->log_reason = pen->reason;
    if (pen->until <= wall)
        return 0;
    int64_t left = pen->until - wall;
    uint64_t cap = pen->banned ? m->opt.ban_max_ms : m->opt.reconnect_max_ms;
    if ((uint64_t)left * 1000 > cap)
        left = (int64_t)(cap / 1000); /* never longer than the options allow */
    p->t_retry_ns = cp2p_now_ns() + (uint64_t)left * NS_PER_S;
    p->state = pen->banned ? CP2P_PEER_BANNED : CP2P_PEER_BACKOFF;
    char when[32] = "?";
    time_t t = (time_t)pen->until;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    LOG_WARN(m, "peer %s: %s until %s (%lld s; restored: %u ban(s), %u failure(s), last: %s)",
             p->name, pen->banned ? "banned" : "backing off", when, (long long)left, pen->bans,
             pen->failures, cp2p_reason_str(pen->reason));
    return 1;
}

int cp2p_peer_penalty(const cp2p_peer *p, cp2p_penalty *out)
{
    if (!p || !out)
        return CP2P_EINVAL;
    cp2p_penalty_get(p, out);
    return CP2P_OK;
}
