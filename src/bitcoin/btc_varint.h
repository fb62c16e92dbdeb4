/*
 * btc_varint.h - Bitcoin's CompactSize integer encoding.
 *
 * < 0xFD: 1 byte; 0xFD + u16; 0xFE + u32; 0xFF + u64. The node requires the
 * shortest form and rejects values above 0xFFFFFFFF inside payloads; callers
 * choose whether to apply that cap (BTC_VARINT_MAX_NODE).
 */
#ifndef BTC_VARINT_H
#define BTC_VARINT_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h"

#define BTC_VARINT_MAX_LEN  9
#define BTC_VARINT_MAX_NODE 0xFFFFFFFFull

/* Result of btc_varint_read. */
#define BTC_VARINT_NEED_MORE    0                           /* not enough bytes yet */
#define BTC_VARINT_NONCANONICAL BTC_ERR_VARINT_NONCANONICAL /* a longer form than needed */

/*
 * Returns: the number of bytes consumed (1, 3, 5 or 9) with *out set;
 *          BTC_VARINT_NEED_MORE if `avail` is too short;
 *          BTC_VARINT_NONCANONICAL if the encoding is not minimal.
 */
CD_WARN_UNUSED static inline int btc_varint_read(const uint8_t *p, size_t avail, uint64_t *out)
{
    if (avail < 1)
        return BTC_VARINT_NEED_MORE;
    uint8_t b = p[0];
    if (b < 0xFD) {
        *out = b;
        return 1;
    }
    if (b == 0xFD) {
        if (avail < 3)
            return BTC_VARINT_NEED_MORE;
        uint64_t v = (uint64_t)p[1] | ((uint64_t)p[2] << 8);
        if (v < 0xFD)
            return BTC_VARINT_NONCANONICAL;
        *out = v;
        return 3;
    }
    if (b == 0xFE) {
        if (avail < 5)
            return BTC_VARINT_NEED_MORE;
        uint64_t v = (uint64_t)p[1] | ((uint64_t)p[2] << 8) | ((uint64_t)p[3] << 16) |
                     ((uint64_t)p[4] << 24);
        if (v <= 0xFFFF)
            return BTC_VARINT_NONCANONICAL;
        *out = v;
        return 5;
    }
    if (avail < 9)
        return BTC_VARINT_NEED_MORE;
    uint64_t v = 0;
    for (int i = 8; i >= 1; i--)
        v = (v << 8) | p[i];
    if (v <= 0xFFFFFFFFull)
        return BTC_VARINT_NONCANONICAL;
    *out = v;
    return 9;
}

static inline size_t btc_varint_size(uint64_t v)
{
    return v < 0xFD ? 1 : v <= 0xFFFF ? 3 : v <= 0xFFFFFFFFull ? 5 : 9;
}

/* Writes the minimal encoding of v; returns its length. */
static inline size_t btc_varint_write(uint8_t *p, uint64_t v)
{
    if (v < 0xFD) {
        p[0] = (uint8_t)v;
        return 1;
    }
    size_t n;
    if (v <= 0xFFFF) {
        p[0] = 0xFD;
        n = 2;
    } else if (v <= 0xFFFFFFFFull) {
        p[0] = 0xFE;
        n = 4;
    } else {
        p[0] = 0xFF;
        n = 8;
    }
    for (size_t i = 0; i < n; i++)
        p[1 + i] = (uint8_t)(v >> (8 * i));
    return n + 1;
}

#endif /* BTC_VARINT_H */
