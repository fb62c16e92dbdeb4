/*
 * btc_txbatch.c - parse a run of transactions, then hash them all at once.
 *
 * Exists because hashing is ~80% of a parser's cycles on standard
 * transactions, and a lone short SHA-256 is latency bound: collecting the
 * txids and pushdata keys of a few dozen transactions lets
 * btc_sha256_many() keep two messages in flight (see btc_sha256.c). The
 * walk itself is btc_tx_parse + btc_script_pushes, the one pushdata rule.
 */
#include "btc_txbatch.h"

typedef struct fill_ctx {
    btc_txb *b;
    uint32_t index; /* input/output index of the script being walked */
} fill_ctx;

/* btc_script_pushes callback: one key record and its hash job; stops the
 * walk (non-zero) when the batch has no room left. */
static int add_key(void *vctx, const uint8_t *data, size_t len, unsigned flags)
{
    fill_ctx *c = vctx;
    btc_txb *b = c->b;
    if (b->n_keys == BTC_TXB_MAX_KEYS)
        return 1;
    btc_tx_push_key *k = &b->keys[b->n_keys];
    k->flags = (uint8_t)flags;
    k->index = c->index;
    btc_sha256_job *j = &b->jobs[BTC_TXB_MAX_TXS + b->n_keys];
    j->data = data;
    j->len = len;
    j->out = k->hash;
    j->twice = 0;
    b->n_keys++;
    return 0;
}

/* Appends the keys of tx. Returns 0, or -1 if they do not all fit (the
 * caller rolls n_keys back). */
static int collect_keys(btc_txb *b, const btc_tx *tx)
{
    fill_ctx c = {b, 0};
    btc_tx_iter it;
    btc_txin in;
    btc_txout out;
    btc_tx_inputs(tx, &it);
    for (c.index = 0; btc_tx_next_input(&it, &in); c.index++)
        if (btc_script_pushes(in.script, in.script_len, BTC_PUSH_INPUT, b->opts, add_key, &c) < 0)
            return -1;
    btc_tx_outputs(tx, &it);
    for (c.index = 0; btc_tx_next_output(&it, &out); c.index++)
        if (btc_script_pushes(out.script, out.script_len, BTC_PUSH_OUTPUT, b->opts, add_key, &c) <
            0)
            return -1;
    return 0;
}

void btc_txb_init(btc_txb *b, unsigned what, const btc_push_opts *opts)
{
    b->what = what;
    b->opts = opts ? opts : &btc_push_opts_default;
    b->n_txs = 0;
    b->n_keys = 0;
}

int btc_txb_fill(btc_txb *b, const uint8_t *buf, size_t len, size_t max_txs, size_t *used)
{
    if (max_txs == 0 || max_txs > BTC_TXB_MAX_TXS)
        max_txs = BTC_TXB_MAX_TXS;
    b->n_txs = 0;
    b->n_keys = 0;
    size_t off = 0;
    int stop = 0;
    while (!stop && b->n_txs < max_txs && off < len) {
        btc_txb_tx *t = &b->txs[b->n_txs];
        int rc = btc_tx_parse(&t->tx, buf + off, len - off);
        if (rc < 0) {
            if (b->n_txs == 0) {
                *used = 0;
                return rc;
            }
            break; /* reported by the next call */
        }
        t->offset = off;
        t->first_key = (uint32_t)b->n_keys;
        t->n_keys = 0;
        t->keys_streamed = 0;
        if (b->what & BTC_TXB_KEYS) {
            if (collect_keys(b, &t->tx) < 0) {
                b->n_keys = t->first_key;
                if (b->n_txs > 0)
                    break; /* starts the next batch */
                t->keys_streamed = 1;
                stop = 1; /* a batch of its own */
            }
            t->n_keys = (uint32_t)(b->n_keys - t->first_key);
        }
        if (b->what & BTC_TXB_TXID) {
            btc_sha256_job *j = &b->jobs[BTC_TXB_MAX_TXS - 1 - b->n_txs];
            j->data = t->tx.raw;
            j->len = t->tx.size;
            j->out = t->txid;
            j->twice = 1;
        }
        b->n_txs++;
        off += t->tx.size;
    }
    size_t nt = (b->what & BTC_TXB_TXID) ? b->n_txs : 0;
    btc_sha256_many(&b->jobs[BTC_TXB_MAX_TXS - nt], nt + b->n_keys);
    *used = off;
    return (int)b->n_txs;
}
