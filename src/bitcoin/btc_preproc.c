/*
 * btc_preproc.c - transaction boundary finder (the "preprocessor").
 *
 * Exists because every later stage (work units, parsers, the block writer's
 * offset table, the merkle worker) needs the start offset of each
 * transaction before anything is parsed, and it must keep up with the
 * socket (DESIGN.md §3, target >= 5 GB/s per core). The walk reads only
 * counts and script lengths; scripts, prevouts and values are skipped by
 * arithmetic. The cursor may run ahead of the bytes received while a long
 * script is skipped, so a transaction is never walked twice.
 */
#include "btc_preproc.h"

#include "btc_varint.h"
#include "cd_util.h"

enum {
    PH_START = 0,  /* at a tx start: version + input count */
    PH_INPUTS = 1, /* n_left inputs to skip */
    PH_NOUT = 2,   /* output count */
    PH_OUTPUTS = 3,
    PH_LOCK = 4, /* locktime */
    PH_DONE = 5, /* tx ends at pos once pos <= end of data */
};

#define MAX_INPUTS  (0xFFFFFFFFull / 41)
#define MAX_OUTPUTS (0xFFFFFFFFull / 9)

void btc_preproc_init(btc_preproc *pp, uint64_t start)
{
    memset(pp, 0, sizeof(*pp));
    pp->tx_start = start;
    pp->pos = start;
    pp->phase = PH_START;
}

/* Reads a count/length CompactSize that was not in the 1-byte form.
 * Returns its length, 0 for need-more, or a BTC_ERR_* code. */
static int read_big_varint(const uint8_t *p, size_t avail, uint64_t *v)
{
    int r = btc_varint_read(p, avail, v);
    if (r == BTC_VARINT_NEED_MORE)
        return 0;
    if (r < 0)
        return BTC_ERR_VARINT_NONCANONICAL;
    if (r == 9)
        return BTC_ERR_VARINT_TOO_BIG;
    return r;
}

int btc_preproc_feed(btc_preproc *pp, const uint8_t *buf, uint64_t buf_offset, size_t len,
                     uint64_t *offsets, size_t max_offsets, size_t *n_found)
{
    size_t found = 0;
    *n_found = 0;
    if (pp->error)
        return pp->error;
    if (buf_offset > pp->pos)
        return BTC_ERR_WINDOW;
    uint64_t rel = pp->pos - buf_offset;
    if (rel >= len)
        return 0; /* the byte the walker needs has not arrived */

    /* i may run past len while skipping scripts: it is the index of the
     * next element, which the data need not reach yet. In PH_DONE the saved
     * cursor is the transaction's last byte (i - 1), so that "pos < bytes
     * received" tells every caller when to call again. */
    size_t i = (size_t)rel + (pp->phase == PH_DONE);
    uint64_t n_left = pp->n_left;
    uint64_t tx_start = pp->tx_start;
    int phase = pp->phase;
    int err = 0;
    uint64_t v;
    int r;

    for (;;) {
        switch (phase) {
        case PH_START:
            if (found == max_offsets)
                goto out;
            if (i >= len || len - i < 5)
                goto out;
            if (CD_LIKELY(buf[i + 4] < 0xFD)) {
                v = buf[i + 4];
                i += 5;
            } else {
                r = read_big_varint(buf + i + 4, len - i - 4, &v);
                if (r <= 0) {
                    err = r;
                    goto out;
                }
                i += 4 + (size_t)r;
            }
            if (CD_UNLIKELY(v == 0)) {
                err = BTC_ERR_NO_INPUTS;
                goto out;
            }
            if (CD_UNLIKELY(v > MAX_INPUTS)) {
                err = BTC_ERR_TOO_MANY;
                goto out;
            }
            n_left = v;
            phase = PH_INPUTS;
            /* fall through */
        case PH_INPUTS:
            while (n_left) {
                /* prevout (36) + first script-length byte */
                if (i >= len || len - i < 37)
                    goto out;
                uint8_t b = buf[i + 36];
                if (CD_LIKELY(b < 0xFD)) {
                    i += 36 + 1 + b + 4;
                } else {
                    r = read_big_varint(buf + i + 36, len - i - 36, &v);
                    if (r <= 0) {
                        err = r;
                        goto out;
                    }
                    i += 36 + (size_t)r + (size_t)v + 4;
                }
                n_left--;
            }
            phase = PH_NOUT;
            /* fall through */
        case PH_NOUT:
            if (i >= len)
                goto out;
            if (CD_LIKELY(buf[i] < 0xFD)) {
                v = buf[i];
                i += 1;
            } else {
                r = read_big_varint(buf + i, len - i, &v);
                if (r <= 0) {
                    err = r;
                    goto out;
                }
                i += (size_t)r;
            }
            if (CD_UNLIKELY(v == 0)) {
                err = BTC_ERR_NO_OUTPUTS;
                goto out;
            }
            if (CD_UNLIKELY(v > MAX_OUTPUTS)) {
                err = BTC_ERR_TOO_MANY;
                goto out;
            }
            n_left = v;
            phase = PH_OUTPUTS;
            /* fall through */
        case PH_OUTPUTS:
            while (n_left) {
                /* value (8) + first script-length byte */
                if (i >= len || len - i < 9)
                    goto out;
                uint8_t b = buf[i + 8];
                if (CD_LIKELY(b < 0xFD)) {
                    i += 8 + 1 + b;
                } else {
                    r = read_big_varint(buf + i + 8, len - i - 8, &v);
                    if (r <= 0) {
                        err = r;
                        goto out;
                    }
                    i += 8 + (size_t)r + (size_t)v;
                }
                n_left--;
            }
            phase = PH_LOCK;
            /* fall through */
        case PH_LOCK:
            i += 4;
            phase = PH_DONE;
            /* fall through */
        case PH_DONE:
            if (i > len)
                goto out;
            offsets[found++] = tx_start;
            tx_start = buf_offset + i;
            phase = PH_START;
            break;
        default:
            err = BTC_ERR_RANGE;
            goto out;
        }
    }
out:
    pp->pos = buf_offset + i - (phase == PH_DONE);
    pp->n_left = n_left;
    pp->tx_start = tx_start;
    pp->phase = phase;
    pp->tx_count += found;
    *n_found = found;
    if (err < 0) {
        pp->error = err;
        return err;
    }
    return 0;
}

int64_t btc_tx_skip(const uint8_t *buf, size_t len)
{
    btc_preproc pp;
    uint64_t off;
    size_t n;
    btc_preproc_init(&pp, 0);
    int rc = btc_preproc_feed(&pp, buf, 0, len, &off, 1, &n);
    if (rc < 0)
        return rc;
    return n == 1 ? (int64_t)pp.tx_start : 0;
}

int btc_preproc_scan(const uint8_t *buf, size_t len, uint64_t base_offset, uint64_t *offsets,
                     size_t max_offsets, size_t *n_found, size_t *consumed)
{
    btc_preproc pp;
    btc_preproc_init(&pp, base_offset);
    int rc = btc_preproc_feed(&pp, buf, base_offset, len, offsets, max_offsets, n_found);
    *consumed = (size_t)(pp.tx_start - base_offset);
    return rc;
}

int btc_block_prefix(const uint8_t *buf, size_t len, btc_header *hdr, uint64_t *tx_count)
{
    if (len <= BTC_HEADER_SIZE)
        return 0;
    uint64_t v;
    int r = btc_varint_read(buf + BTC_HEADER_SIZE, len - BTC_HEADER_SIZE, &v);
    if (r == BTC_VARINT_NEED_MORE)
        return 0;
    if (r < 0)
        return BTC_ERR_VARINT_NONCANONICAL;
    if (r == 9)
        return BTC_ERR_VARINT_TOO_BIG;
    if (v == 0)
        return BTC_ERR_RANGE;
    if (hdr)
        btc_header_parse(hdr, buf);
    *tx_count = v;
    return BTC_HEADER_SIZE + r;
}
