/*
 * btc_pow.c - next-work-required rules (legacy 2016-block retarget, EDA,
 * cash DAA, testnet 20-minute rule), see btc_pow.h.
 *
 * The header tree must reject headers whose nBits differ from what the
 * rules demand, otherwise a peer could feed a cheap fake chain. This is a
 * transcription of the node's arithmetic: every intermediate is the same
 * 256-bit value the node computes (including the truncation of
 * multiplications and divisions), so the result is bit-identical.
 */
#include "btc_pow.h"

static int get_block(btc_pow_ancestor_fn get, void *ctx, int32_t h, btc_pow_block *out)
{
    if (h < 0)
        return BTC_ERR_RANGE;
    if (get(ctx, h, out) != 0)
        return BTC_ERR_RANGE;
    return 0;
}

uint32_t btc_pow_median_time(uint32_t *times, size_t n)
{
    if (n == 0)
        return 0;
    /* insertion sort: n is 11 at most in practice */
    for (size_t i = 1; i < n; i++) {
        uint32_t v = times[i];
        size_t j = i;
        while (j > 0 && times[j - 1] > v) {
            times[j] = times[j - 1];
            j--;
        }
        times[j] = v;
    }
    return times[n / 2];
}

int btc_pow_median_time_past(btc_pow_ancestor_fn get, void *ctx, int32_t height, uint32_t *mtp)
{
    uint32_t t[11];
    size_t n = 0;
    for (int32_t h = height; h >= 0 && n < 11; h--) {
        btc_pow_block b;
        if (get_block(get, ctx, h, &b) < 0)
            return BTC_ERR_RANGE;
        t[n++] = b.time;
    }
    if (n == 0)
        return BTC_ERR_RANGE;
    *mtp = btc_pow_median_time(t, n);
    return 0;
}

static uint32_t limit_bits(const btc_net *net)
{
    btc_u256 lim;
    btc_u256_from_le(&lim, net->pow_limit);
    return btc_target_to_bits(&lim);
}

/* The median-by-time of the block at h and its two parents (the node's
 * GetSuitableBlock, sorting network and tie order included). */
static int suitable_block(btc_pow_ancestor_fn get, void *ctx, int32_t h, btc_pow_block *out)
{
    btc_pow_block b[3], tmp;
    if (h < 2)
        return BTC_ERR_RANGE;
    for (int i = 0; i < 3; i++)
        if (get_block(get, ctx, h - 2 + i, &b[i]) < 0)
            return BTC_ERR_RANGE;
    if (b[0].time > b[2].time) {
        tmp = b[0];
        b[0] = b[2];
        b[2] = tmp;
    }
    if (b[0].time > b[1].time) {
        tmp = b[0];
        b[0] = b[1];
        b[1] = tmp;
    }
    if (b[1].time > b[2].time) {
        tmp = b[1];
        b[1] = b[2];
        b[2] = tmp;
    }
    *out = b[1];
    return 0;
}

static int cash_daa(const btc_net *net, const btc_pow_block *prev, uint32_t new_time,
                    btc_pow_ancestor_fn get, void *ctx, uint32_t *bits)
{
    btc_u256 lim;
    btc_u256_from_le(&lim, net->pow_limit);
    if (net->pow_allow_min_difficulty &&
        (int64_t)new_time > (int64_t)prev->time + 2 * BTC_POW_TARGET_SPACING) {
        *bits = btc_target_to_bits(&lim);
        return 0;
    }
    if (prev->height < BTC_POW_INTERVAL)
        return BTC_ERR_RANGE;
    btc_pow_block last, first;
    if (suitable_block(get, ctx, prev->height, &last) < 0 ||
        suitable_block(get, ctx, prev->height - BTC_POW_DAA_WINDOW, &first) < 0)
        return BTC_ERR_RANGE;
    btc_u256 work;
    btc_u256_sub(&work, &last.chain_work, &first.chain_work);
    btc_u256_mul_u64(&work, &work, BTC_POW_TARGET_SPACING);
    int64_t span = (int64_t)last.time - (int64_t)first.time;
    if (span > 288 * BTC_POW_TARGET_SPACING)
        span = 288 * BTC_POW_TARGET_SPACING;
    else if (span < 72 * BTC_POW_TARGET_SPACING)
        span = 72 * BTC_POW_TARGET_SPACING;
    btc_u256 div;
    btc_u256_set_u64(&div, (uint64_t)span);
    CD_IGNORE(btc_u256_div(&work, &work, &div)); /* span >= 72 * 600: not zero */
    if (btc_u256_is_zero(&work))
        return BTC_ERR_RANGE;
    /* target = 2^256 / work - 1 = (2^256 - work) / work */
    btc_u256 neg, zero = {{0, 0, 0, 0}}, target;
    btc_u256_sub(&neg, &zero, &work);
    CD_IGNORE(btc_u256_div(&target, &neg, &work)); /* work is not zero (checked above) */
    if (btc_u256_cmp(&target, &lim) > 0)
        target = lim;
    *bits = btc_target_to_bits(&target);
    return 0;
}

static int legacy(const btc_net *net, const btc_pow_block *prev, uint32_t new_time,
                  btc_pow_ancestor_fn get, void *ctx, uint32_t *bits)
{
    btc_u256 lim, target;
    btc_u256_from_le(&lim, net->pow_limit);
    uint32_t lim_bits = btc_target_to_bits(&lim);
    int32_t height = prev->height + 1;
    int rc;

    if (height % BTC_POW_INTERVAL == 0) {
        btc_pow_block first;
        if (get_block(get, ctx, prev->height - (BTC_POW_INTERVAL - 1), &first) < 0)
            return BTC_ERR_RANGE;
        int64_t span = (int64_t)prev->time - (int64_t)first.time;
        if (span < BTC_POW_TARGET_TIMESPAN / 4)
            span = BTC_POW_TARGET_TIMESPAN / 4;
        if (span > BTC_POW_TARGET_TIMESPAN * 4)
            span = BTC_POW_TARGET_TIMESPAN * 4;
        if ((rc = btc_bits_to_target(prev->bits, &target)) < 0 && rc != BTC_ERR_BITS_ZERO)
            return rc;
        btc_u256 div;
        btc_u256_mul_u64(&target, &target, (uint64_t)span);
        btc_u256_set_u64(&div, BTC_POW_TARGET_TIMESPAN);
        CD_IGNORE(btc_u256_div(&target, &target, &div)); /* a constant, not zero */
        if (btc_u256_cmp(&target, &lim) > 0)
            target = lim;
        *bits = btc_target_to_bits(&target);
        return 0;
    }

    if (net->pow_allow_min_difficulty) {
        if ((int64_t)new_time > (int64_t)prev->time + 2 * BTC_POW_TARGET_SPACING) {
            *bits = lim_bits;
            return 0;
        }
        btc_pow_block b = *prev;
        while (b.height > 0 && b.height % BTC_POW_INTERVAL != 0 && b.bits == lim_bits) {
            if (get_block(get, ctx, b.height - 1, &b) < 0)
                return BTC_ERR_RANGE;
        }
        *bits = b.bits;
        return 0;
    }

    /* EDA */
    if (prev->bits == lim_bits) {
        *bits = lim_bits;
        return 0;
    }
    uint32_t mtp_prev, mtp6;
    if (prev->height < 6) {
        *bits = prev->bits;
        return 0;
    }
    if (btc_pow_median_time_past(get, ctx, prev->height, &mtp_prev) < 0 ||
        btc_pow_median_time_past(get, ctx, prev->height - 6, &mtp6) < 0)
        return BTC_ERR_RANGE;
    if ((int64_t)mtp_prev - (int64_t)mtp6 < 12 * 3600) {
        *bits = prev->bits;
        return 0;
    }
    if ((rc = btc_bits_to_target(prev->bits, &target)) < 0 && rc != BTC_ERR_BITS_ZERO)
        return rc;
    btc_u256 quarter;
    btc_u256_shr(&quarter, &target, 2);
    btc_u256_add(&target, &target, &quarter);
    if (btc_u256_cmp(&target, &lim) > 0)
        target = lim;
    *bits = btc_target_to_bits(&target);
    return 0;
}

int btc_pow_next_bits(const btc_net *net, const btc_pow_block *prev, uint32_t new_time,
                      btc_pow_ancestor_fn get, void *ctx, uint32_t *bits)
{
    if (prev == NULL) {
        *bits = limit_bits(net);
        return 0;
    }
    if (net->pow_no_retargeting) {
        *bits = prev->bits;
        return 0;
    }
    if (prev->height >= net->daa_height)
        return cash_daa(net, prev, new_time, get, ctx, bits);
    return legacy(net, prev, new_time, get, ctx, bits);
}
