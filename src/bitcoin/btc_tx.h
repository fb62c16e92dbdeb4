/*
 * btc_tx.h - zero-copy transaction parser.
 *
 * btc_tx_parse() validates the structure of one raw transaction once and
 * records where its parts are; the iterators then hand out inputs and
 * outputs as pointers into the caller's buffer. Nothing is copied or
 * allocated, so the buffer must outlive the btc_tx and its results (a ring
 * slot, an LMDB value, a test buffer). Thread-safe: all state is in the
 * caller's structs.
 *
 * Typical use:
 *     btc_tx tx;
 *     if (btc_tx_parse(&tx, buf, len) < 0) ...reject...;
 *     btc_tx_txid(&tx, txid);
 *     btc_txin in; btc_tx_iter it; btc_tx_inputs(&tx, &it);
 *     while (btc_tx_next_input(&it, &in)) ...;
 *     btc_txout out; btc_tx_outputs(&tx, &it);
 *     while (btc_tx_next_output(&it, &out)) ...;
 */
#ifndef BTC_TX_H
#define BTC_TX_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h"

/* A parsed transaction: a view of the caller's bytes. */
typedef struct btc_tx {
    const uint8_t *raw; /* first byte of the transaction */
    size_t size;        /* its serialized size */
    int32_t version;
    uint32_t locktime;
    uint64_t n_inputs;
    uint64_t n_outputs;
    size_t inputs_off;  /* offset of the first input within raw */
    size_t outputs_off; /* offset of the first output within raw */
} btc_tx;

/* One input; pointers point into btc_tx.raw. */
typedef struct btc_txin {
    const uint8_t *prev_txid; /* 32 bytes, internal order */
    uint32_t prev_index;
    const uint8_t *script; /* scriptSig */
    size_t script_len;
    uint32_t sequence;
} btc_txin;

/* One output; pointers point into btc_tx.raw. */
typedef struct btc_txout {
    uint64_t value;        /* satoshis */
    const uint8_t *script; /* scriptPubKey */
    size_t script_len;
} btc_txout;

/* Cursor for the iterators. */
typedef struct btc_tx_iter {
    const uint8_t *p;
    uint64_t left;
    uint32_t index; /* index of the item the next call returns */
} btc_tx_iter;

/*
 * Parses the transaction at the start of buf (trailing bytes are ignored;
 * tx->size says where it ends).
 * Returns: 0 with *tx filled;
 *          BTC_ERR_TRUNCATED if buf ends before the transaction does;
 *          another BTC_ERR_* (see btc_preproc.h for the rules) if malformed.
 */
int btc_tx_parse(btc_tx *tx, const uint8_t *buf, size_t len) CD_WARN_UNUSED;

/* Starts iterating the inputs / outputs of a parsed transaction. */
void btc_tx_inputs(const btc_tx *tx, btc_tx_iter *it);
void btc_tx_outputs(const btc_tx *tx, btc_tx_iter *it);

/* Returns 1 and fills *in / *out with the next item, or 0 when done. Only
 * valid on iterators started from a successfully parsed btc_tx. */
int btc_tx_next_input(btc_tx_iter *it, btc_txin *in) CD_WARN_UNUSED;
int btc_tx_next_output(btc_tx_iter *it, btc_txout *out) CD_WARN_UNUSED;

/* Returns 1 if the transaction is a coinbase: exactly one input whose
 * prevout is the null hash with index 0xFFFFFFFF. */
int btc_tx_is_coinbase(const btc_tx *tx);

/* out = sha256d of the transaction bytes: the txid in internal order. */
void btc_tx_txid(const btc_tx *tx, uint8_t out[32]);

#endif /* BTC_TX_H */
