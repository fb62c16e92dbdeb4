/*
 * btc_tx.c - zero-copy transaction parser and txid.
 *
 * The Postgres parser workers need, per transaction, the txid, every
 * input's outpoint and every script, at >= 600 MB/s per core (DESIGN.md §8).
 * Parsing is split in two: btc_tx_parse() walks the structure once with all
 * bounds checks, after which the iterators can step through the already
 * validated bytes without checking anything again.
 */
#include "btc_tx.h"

#include "btc_varint.h"
#include "btc_sha256.h"
#include "cd_util.h"

#define MAX_INPUTS  (0xFFFFFFFFull / 41)
#define MAX_OUTPUTS (0xFFFFFFFFull / 9)

/* Reads a CompactSize at buf[*i] with the node's payload rules.
 * Returns 0 and advances *i, or a BTC_ERR_* code. */
static inline int get_varint(const uint8_t *buf, size_t len, size_t *i, uint64_t *v)
{
    if (*i >= len)
        return BTC_ERR_TRUNCATED;
    uint8_t b = buf[*i];
    if (CD_LIKELY(b < 0xFD)) {
        *v = b;
        *i += 1;
        return 0;
    }
    int r = btc_varint_read(buf + *i, len - *i, v);
    if (r == BTC_VARINT_NEED_MORE)
        return BTC_ERR_TRUNCATED;
    if (r < 0)
        return BTC_ERR_VARINT_NONCANONICAL;
    if (r == 9)
        return BTC_ERR_VARINT_TOO_BIG;
    *i += (size_t)r;
    return 0;
}

/* Advances *i by n if that stays within len. */
static inline int skip(size_t len, size_t *i, uint64_t n)
{
    if (n > len - *i)
        return BTC_ERR_TRUNCATED;
    *i += (size_t)n;
    return 0;
}

int btc_tx_parse(btc_tx *tx, const uint8_t *buf, size_t len)
{
    size_t i = 0;
    uint64_t n, slen;
    int rc;
    if (len < 4)
        return BTC_ERR_TRUNCATED;
    tx->raw = buf;
    tx->version = (int32_t)cd_le32(buf);
    i = 4;
    if ((rc = get_varint(buf, len, &i, &n)) < 0)
        return rc;
    if (n == 0)
        return BTC_ERR_NO_INPUTS;
    if (n > MAX_INPUTS)
        return BTC_ERR_TOO_MANY;
    tx->n_inputs = n;
    tx->inputs_off = i;
    for (uint64_t k = 0; k < n; k++) {
        if ((rc = skip(len, &i, 36)) < 0)
            return rc;
        if ((rc = get_varint(buf, len, &i, &slen)) < 0)
            return rc;
        if ((rc = skip(len, &i, slen)) < 0 || (rc = skip(len, &i, 4)) < 0)
            return rc;
    }
    if ((rc = get_varint(buf, len, &i, &n)) < 0)
        return rc;
    if (n == 0)
        return BTC_ERR_NO_OUTPUTS;
    if (n > MAX_OUTPUTS)
        return BTC_ERR_TOO_MANY;
    tx->n_outputs = n;
    tx->outputs_off = i;
    for (uint64_t k = 0; k < n; k++) {
        if ((rc = skip(len, &i, 8)) < 0)
            return rc;
        if ((rc = get_varint(buf, len, &i, &slen)) < 0)
            return rc;
        if ((rc = skip(len, &i, slen)) < 0)
            return rc;
    }
    if ((rc = skip(len, &i, 4)) < 0)
        return rc;
    tx->locktime = cd_le32(buf + i - 4);
    tx->size = i;
    return 0;
}

void btc_tx_inputs(const btc_tx *tx, btc_tx_iter *it)
{
    it->p = tx->raw + tx->inputs_off;
    it->left = tx->n_inputs;
    it->index = 0;
}

void btc_tx_outputs(const btc_tx *tx, btc_tx_iter *it)
{
    it->p = tx->raw + tx->outputs_off;
    it->left = tx->n_outputs;
    it->index = 0;
}

/* Reads an already validated CompactSize. */
static inline const uint8_t *read_len(const uint8_t *p, size_t *v)
{
    uint8_t b = *p;
    if (CD_LIKELY(b < 0xFD)) {
        *v = b;
        return p + 1;
    }
    if (b == 0xFD) {
        *v = cd_le16(p + 1);
        return p + 3;
    }
    *v = cd_le32(p + 1); /* 0xFE; 0xFF was rejected by btc_tx_parse */
    return p + 5;
}

int btc_tx_next_input(btc_tx_iter *it, btc_txin *in)
{
    if (it->left == 0)
        return 0;
    const uint8_t *p = it->p;
    in->prev_txid = p;
    in->prev_index = cd_le32(p + 32);
    p = read_len(p + 36, &in->script_len);
    in->script = p;
    p += in->script_len;
    in->sequence = cd_le32(p);
    it->p = p + 4;
    it->left--;
    it->index++;
    return 1;
}

int btc_tx_next_output(btc_tx_iter *it, btc_txout *out)
{
    if (it->left == 0)
        return 0;
    const uint8_t *p = it->p;
    out->value = cd_le64(p);
    p = read_len(p + 8, &out->script_len);
    out->script = p;
    it->p = p + out->script_len;
    it->left--;
    it->index++;
    return 1;
}

int btc_tx_is_coinbase(const btc_tx *tx)
{
    if (tx->n_inputs != 1)
        return 0;
    const uint8_t *p = tx->raw + tx->inputs_off;
    if (cd_le32(p + 32) != 0xFFFFFFFFu)
        return 0;
    for (int k = 0; k < 32; k++)
        if (p[k])
            return 0;
    return 1;
}

void btc_tx_txid(const btc_tx *tx, uint8_t out[32])
{
    btc_sha256d(out, tx->raw, tx->size);
}
