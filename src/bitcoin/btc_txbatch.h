/*
 * btc_txbatch.h - a run of transactions parsed and hashed together.
 *
 * A parser needs per transaction its txid (sha256d) and its pushdata keys
 * (sha256 of each selected push, btc_script.h). Hashed one message at a
 * time these are latency-bound SHA-256 chains; a batch collects the hashes
 * of up to BTC_TXB_MAX_TXS transactions first and computes them with
 * btc_sha256_many(), two messages interleaved. Results are exactly those of
 * btc_tx_txid() and btc_tx_push_keys().
 *
 * Typical use (a unit of back-to-back transactions):
 *     btc_txb b;                       (about 14 KB: fine on a stack)
 *     btc_txb_init(&b, BTC_TXB_TXID | BTC_TXB_KEYS, NULL);
 *     while (off < len) {
 *         int n = btc_txb_fill(&b, data + off, len - off, 0, &used);
 *         if (n < 0) ...malformed at data + off...;
 *         for (int t = 0; t < n; t++) ...b.txs[t], its keys b.keys[first_key..]...;
 *         off += used;
 *     }
 *
 * No allocation; the batch points into the caller's buffer (valid while the
 * buffer is); thread-safe per batch.
 */
#ifndef BTC_TXBATCH_H
#define BTC_TXBATCH_H

#include <stddef.h>
#include <stdint.h>

#include "btc_script.h"
#include "btc_sha256.h"
#include "btc_tx.h"
#include "cd_err.h"

/* Batch limits. 32 txs of ~8 hashed blocks each keep both SHA lanes busy
 * for ~250 steps, so the one-lane tail at the end of a batch is a few %. */
#define BTC_TXB_MAX_TXS  32
#define BTC_TXB_MAX_KEYS 128

/* What btc_txb_fill computes. */
#define BTC_TXB_TXID 1u /* txs[t].txid */
#define BTC_TXB_KEYS 2u /* keys of every tx (btc_tx_push_keys order) */

/* One transaction of a batch. */
typedef struct btc_txb_tx {
    btc_tx tx;          /* parsed view (btc_tx.h) */
    size_t offset;      /* of its first byte from the buf given to btc_txb_fill */
    uint8_t txid[32];   /* with BTC_TXB_TXID */
    uint32_t first_key; /* its keys are keys[first_key .. first_key + n_keys) */
    uint32_t n_keys;
    int keys_streamed; /* 1: it has more than BTC_TXB_MAX_KEYS keys; none are in
                          keys[], get them with btc_tx_push_keys/btc_script_pushes */
} btc_txb_tx;

typedef struct btc_txb {
    unsigned what;             /* BTC_TXB_* */
    const btc_push_opts *opts; /* never NULL after btc_txb_init */
    size_t n_txs;              /* results of the last btc_txb_fill */
    btc_txb_tx txs[BTC_TXB_MAX_TXS];
    size_t n_keys;
    btc_tx_push_key keys[BTC_TXB_MAX_KEYS];
    /* private: txid jobs fill [0, MAX_TXS) downwards from MAX_TXS - 1, key
     * jobs [MAX_TXS, ...) upwards, so one contiguous run with the long
     * txids first (the lanes end on short jobs) */
    btc_sha256_job jobs[BTC_TXB_MAX_TXS + BTC_TXB_MAX_KEYS];
} btc_txb;

/* Sets what to compute and the pushdata options (NULL: defaults; the
 * pointer is kept, so opts must outlive the batch). */
void btc_txb_init(btc_txb *b, unsigned what, const btc_push_opts *opts);

/*
 * Parses the transactions at the start of buf[0..len) into b (replacing the
 * previous batch) and computes their hashes: at most max_txs of them (0 or
 * more than BTC_TXB_MAX_TXS: BTC_TXB_MAX_TXS), fewer when their keys do not
 * fit in BTC_TXB_MAX_KEYS (a single transaction with more keys than that is
 * a batch of its own, with keys_streamed set).
 * Returns: the number of transactions in the batch (>= 1; 0 only if len is
 *          0), *used = their total size; or, if the *first* transaction does
 *          not parse, its BTC_ERR_* code (btc_tx_parse) and *used = 0. A bad
 *          transaction after good ones ends the batch before it, so the next
 *          call reports it.
 */
int btc_txb_fill(btc_txb *b, const uint8_t *buf, size_t len, size_t max_txs,
                 size_t *used) CD_WARN_UNUSED;

#endif /* BTC_TXBATCH_H */
