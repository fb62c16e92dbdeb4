/*
 * fuzz_tx.c - libFuzzer target for the transaction parser (btc_tx) and the
 * preprocessor that cuts blocks into transactions (btc_preproc).
 *
 * The input is untrusted bytes as a peer or a corrupt store would hand them
 * over: a transaction, a run of transactions, or a block. Oracles (any
 * disagreement aborts, so libFuzzer reports it as a crash):
 *  - btc_tx_parse and btc_tx_skip agree on the verdict (complete / need
 *    more bytes / malformed) and on the size;
 *  - a parsed transaction re-serialised from its parsed fields (version,
 *    every input and output through the iterators, locktime) is byte for
 *    byte the input's first tx->size bytes: the parsed size equals the
 *    consumed bytes and nothing is skipped or read twice;
 *  - the stateless scan (btc_preproc_scan) and the streaming walker
 *    (btc_preproc_feed, fed in chunks whose size the input chooses, with a
 *    small offsets array so its limit path runs) find the same offsets and
 *    the same error; the stream never stalls without progress;
 *  - btc_block_prefix on the same bytes never claims more than it has.
 *
 * Built only with -Dfuzz=true and clang (scripts/fuzz.sh).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "btc_preproc.h"
#include "btc_tx.h"
#include "btc_varint.h"
#include "cd_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static uint8_t *ser_buf;
static size_t ser_cap;

static void ser_put(size_t *n, const void *p, size_t len)
{
    if (*n + len > ser_cap) {
        size_t cap = ser_cap ? ser_cap : 4096;
        while (cap < *n + len)
            cap *= 2;
        ser_buf = realloc(ser_buf, cap);
        CHECK(ser_buf != NULL);
        ser_cap = cap;
    }
    memcpy(ser_buf + *n, p, len);
    *n += len;
}

static void ser_varint(size_t *n, uint64_t v)
{
    uint8_t b[9];
    ser_put(n, b, btc_varint_write(b, v));
}

static void ser_le32(size_t *n, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    ser_put(n, b, 4);
}

/* One transaction at the start of p: both parsers, then the round trip. */
static void check_one_tx(const uint8_t *p, size_t len)
{
    btc_tx tx;
    int rc = btc_tx_parse(&tx, p, len);
    int64_t sk = btc_tx_skip(p, len);
    if (rc == 0) {
        CHECK(sk > 0 && (uint64_t)sk == tx.size && tx.size <= len);
        CHECK(tx.size >= BTC_TX_MIN_SIZE);
    } else if (rc == BTC_ERR_TRUNCATED) {
        CHECK(sk == 0);
    } else {
        CHECK(sk == rc);
        return;
    }
    if (rc != 0)
        return;

    size_t n = 0;
    btc_tx_iter it;
    ser_le32(&n, (uint32_t)tx.version);
    ser_varint(&n, tx.n_inputs);
    btc_txin in;
    btc_tx_inputs(&tx, &it);
    uint64_t k = 0;
    while (btc_tx_next_input(&it, &in)) {
        CHECK(in.script >= p && in.script + in.script_len <= p + tx.size);
        ser_put(&n, in.prev_txid, 32);
        ser_le32(&n, in.prev_index);
        ser_varint(&n, in.script_len);
        ser_put(&n, in.script, in.script_len);
        ser_le32(&n, in.sequence);
        k++;
    }
    CHECK(k == tx.n_inputs);
    ser_varint(&n, tx.n_outputs);
    btc_txout out;
    btc_tx_outputs(&tx, &it);
    k = 0;
    while (btc_tx_next_output(&it, &out)) {
        CHECK(out.script >= p && out.script + out.script_len <= p + tx.size);
        uint8_t v[8];
        for (int b = 0; b < 8; b++)
            v[b] = (uint8_t)(out.value >> (8 * b));
        ser_put(&n, v, 8);
        ser_varint(&n, out.script_len);
        ser_put(&n, out.script, out.script_len);
        k++;
    }
    CHECK(k == tx.n_outputs);
    ser_le32(&n, tx.locktime);
    CHECK(n == tx.size && memcmp(ser_buf, p, n) == 0);

    uint8_t txid[32];
    btc_tx_txid(&tx, txid);
    (void)btc_tx_is_coinbase(&tx);
}

/* The stateless scan against the streaming walker over the same bytes. */
static void check_scan_vs_stream(const uint8_t *p, size_t len, size_t chunk, size_t max_off)
{
    size_t cap = len / BTC_TX_MIN_SIZE + 1;
    uint64_t *scan_off = malloc(cap * sizeof(*scan_off));
    uint64_t *stream_off = malloc(cap * sizeof(*stream_off));
    CHECK(scan_off && stream_off);
    size_t n_scan = 0, consumed = 0;
    int scan_rc = btc_preproc_scan(p, len, 0, scan_off, cap, &n_scan, &consumed);
    CHECK(consumed <= len && n_scan <= cap);
    for (size_t i = 0; i < n_scan; i++) {
        int64_t s = btc_tx_skip(p + scan_off[i], len - scan_off[i]);
        CHECK(s > 0);
        CHECK(i + 1 < n_scan ? scan_off[i + 1] == scan_off[i] + (uint64_t)s
                             : consumed == scan_off[i] + (uint64_t)s);
    }

    btc_preproc pp;
    btc_preproc_init(&pp, 0);
    size_t n_stream = 0, received = 0;
    int stream_rc = 0;
    uint64_t found[16];
    while (received < len && stream_rc == 0) {
        received = received + chunk > len ? len : received + chunk;
        while (pp.pos < received) {
            uint64_t before = pp.pos, before_count = pp.tx_count;
            size_t nf = 0;
            stream_rc =
                btc_preproc_feed(&pp, p + pp.pos, pp.pos, received - pp.pos, found, max_off, &nf);
            CHECK(nf <= max_off);
            for (size_t i = 0; i < nf; i++) {
                CHECK(n_stream < cap);
                stream_off[n_stream++] = found[i];
            }
            if (stream_rc != 0)
                break;
            /* as the callers do (cd_pipeline.c, cp2p_peer.c): a call not
             * stopped by the offsets limit has walked every byte it can, even
             * when pos < received (pos is where the element it waits for
             * starts, and that element may need several more bytes) */
            if (nf < max_off)
                break;
            /* stopped by the limit: it found max_off transactions */
            CHECK(pp.tx_count == before_count + max_off && pp.pos > before);
        }
    }
    if (scan_rc != 0) {
        CHECK(stream_rc == scan_rc && pp.tx_start == consumed);
    } else {
        CHECK(stream_rc == 0);
        CHECK(pp.tx_start == consumed);
    }
    CHECK(n_stream == n_scan && pp.tx_count == n_scan);
    CHECK(memcmp(stream_off, scan_off, n_scan * sizeof(*scan_off)) == 0);
    free(scan_off);
    free(stream_off);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the whole input as one tx and as a run of txs; the last byte (when
     * present) picks the stream's chunk size and offsets limit */
    check_one_tx(data, size);
    size_t chunk = size ? 1 + data[size - 1] % 97 : 1;
    size_t max_off = size ? 1 + data[size - 1] % 16 : 16;
    check_scan_vs_stream(data, size, chunk, max_off);

    /* as a block: prefix, then the transactions after it */
    btc_header h;
    uint64_t count = 0;
    int pr = btc_block_prefix(data, size, &h, &count);
    if (pr > 0) {
        CHECK((size_t)pr <= size && (pr == 81 || pr == 83 || pr == 85 || pr == 89));
        CHECK(count > 0);
        check_one_tx(data + pr, size - (size_t)pr);
        check_scan_vs_stream(data + pr, size - (size_t)pr, chunk * 7, max_off);
    }
    return 0;
}
