/*
 * cp2p_budget.c - what one peer may cost us: messages per second per
 * command, time per message, and a floor rate for blocks.
 *
 * Why it exists: a peer that floods one command (pings whose pongs it never
 * reads, invs, addrs, headers) or that dribbles a message or a block byte by
 * byte must cost bounded memory and time and then be dropped with a reason
 * (issue 11 F2, F3). The bytes we queue for a peer are bounded where they
 * are queued (cp2p_queue_msg, opt.max_send_queue); this file holds the rest.
 *
 *   rate     a token bucket per command (the first N_RATE - 1 commands seen
 *            get their own, the others share the last): opt.max_msg_rate
 *            per second (opt.max_tx_rate for `tx`), opt.msg_burst seconds
 *            deep; `block` is not counted (we asked for every one, and
 *            blocks are bounded by the floor rate and the caller's window).
 *            `inv` entries have a bucket of their own (opt.max_inv_rate): a
 *            few big invs of txs that are never served cost as much as
 *            many small messages.
 *   message  a non-block message must be whole within opt.msg_timeout_ms of
 *            its first byte (silence alone is the stall timeout).
 *   block    bytes per second of reading time: after opt.block_grace_ms of
 *            reading, a block below opt.min_block_rate is dropped
 *            (CP2P_R_SLOW_BLOCK) so the caller can ask another peer. Time
 *            during which the caller's sink paused reading does not count.
 */
#include "cp2p_int.h"

#include <stdio.h>
#include <string.h>

static rate_bucket *bucket(cp2p_peer *p, const char *cmd)
{
    for (int i = 0; i < N_RATE - 1; i++) {
        rate_bucket *b = &p->rate[i];
        if (!b->cmd[0]) {
            memcpy(b->cmd, cmd, strnlen(cmd, CP2P_COMMAND_LEN));
            return b;
        }
        if (strcmp(b->cmd, cmd) == 0)
            return b;
    }
    return &p->rate[N_RATE - 1];
}

/* Takes n tokens from the bucket `key` filled at `rate` per second. Returns
 * 0, or -1 if the peer went over (it has been failed with `what`). */
static int take(cp2p_peer *p, const char *key, uint64_t n, uint32_t rate, const char *what)
{
    const cp2p_options *o = &p->mgr->opt;
    rate_bucket *b = bucket(p, key);
    uint64_t now = cp2p_now_ns();
    double depth = (double)rate * (o->msg_burst ? o->msg_burst : 1);
    if (!b->t_ns) {
        b->tokens = depth;
    } else if (now > b->t_ns) {
        b->tokens += (double)(now - b->t_ns) / 1e9 * rate;
        if (b->tokens > depth)
            b->tokens = depth;
    }
    b->t_ns = now;
    if (b->tokens < (double)n) {
        cp2p_peer_fail(p, CP2P_R_RATE, "more than %u %s per second (burst %.0f)", rate, what,
                       depth);
        return -1;
    }
    b->tokens -= (double)n;
    return 0;
}

int cp2p_budget_msg(cp2p_peer *p, const char *cmd)
{
    const cp2p_options *o = &p->mgr->opt;
    char what[CP2P_COMMAND_LEN + 16];
    uint32_t rate = strcmp(cmd, "tx") == 0 ? o->max_tx_rate : o->max_msg_rate;
    if (!rate || strcmp(cmd, "block") == 0)
        return 0;
    snprintf(what, sizeof(what), "'%s' messages", cmd);
    return take(p, cmd, 1, rate, what);
}

int cp2p_budget_inv(cp2p_peer *p, size_t n)
{
    const cp2p_options *o = &p->mgr->opt;
    if (!o->max_inv_rate || n == 0)
        return 0;
    return take(p, "#inv-entries", n, o->max_inv_rate, "inv entries");
}

void cp2p_budget_block_start(cp2p_peer *p)
{
    p->blk_active_ns = 0;
    p->blk_mark_ns = cp2p_now_ns();
}

void cp2p_budget_block_pause(cp2p_peer *p)
{
    if (p->blk_mark_ns) {
        p->blk_active_ns += cp2p_now_ns() - p->blk_mark_ns;
        p->blk_mark_ns = 0;
    }
}

void cp2p_budget_block_resume(cp2p_peer *p)
{
    if (!p->blk_mark_ns && p->mode == RD_BLOCK)
        p->blk_mark_ns = cp2p_now_ns();
}

int cp2p_budget_tick(cp2p_peer *p, uint64_t now)
{
    const cp2p_options *o = &p->mgr->opt;
    if (p->state != CP2P_PEER_READY && p->state != CP2P_PEER_VERSION_SENT)
        return 0;
    if (p->mode == RD_MSG && p->t_msg_start_ns && o->msg_timeout_ms && !p->read_paused &&
        now > p->t_msg_start_ns &&
        now - p->t_msg_start_ns > (uint64_t)o->msg_timeout_ms * NS_PER_MS) {
        size_t have = p->rend - p->rstart;
        cp2p_peer_fail(p, CP2P_R_MSG_TIMEOUT,
                       "a message still incomplete %u ms after its first byte (%zu bytes so far)",
                       o->msg_timeout_ms, have);
        return -1;
    }
    if (p->mode == RD_BLOCK && o->min_block_rate) {
        uint64_t active =
            p->blk_active_ns + (p->blk_mark_ns && now > p->blk_mark_ns ? now - p->blk_mark_ns : 0);
        if (active > (uint64_t)o->block_grace_ms * NS_PER_MS) {
            double rate = (double)p->bgot * 1e9 / (double)active;
            if (rate < (double)o->min_block_rate) {
                char hx[65] = "(header not received)";
                if (p->bgot >= 80)
                    cp2p_hash_to_hex(hx, p->bhash);
                cp2p_peer_fail(p, CP2P_R_SLOW_BLOCK,
                               "block %s: %llu of %llu bytes in %.1f s of reading (%.0f B/s, "
                               "floor %llu B/s)",
                               hx, (unsigned long long)p->bgot, (unsigned long long)p->blen,
                               (double)active / 1e9, rate, (unsigned long long)o->min_block_rate);
                return -1;
            }
        }
    }
    return 0;
}
