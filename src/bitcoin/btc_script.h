/*
 * btc_script.h - pushdata extraction: which keys a script is indexed under.
 *
 * The rule (DESIGN.md §4, compatible with the previous Python indexer,
 * reference/conduitdb.md §3, and extended):
 *
 *  - The script is walked opcode by opcode. OP_RETURN (0x6a) starts a
 *    "data region"; OP_ELSE (0x67) ends it again (as the Python indexer did:
 *    code after OP_ELSE can be reachable when the OP_RETURN sat in an
 *    unexecuted branch). Bytes inside a push are never taken for opcodes.
 *  - Outside the data region, every *direct* push of exactly 20, 33 or 65
 *    bytes (opcodes 0x14, 0x21, 0x41) is yielded with the script's kind
 *    flag: BTC_PUSH_OUTPUT (1) for output scripts, BTC_PUSH_INPUT (2) for
 *    input scripts. PUSHDATA1/2/4 of those sizes are not (Python compatible).
 *  - Inside the data region of an *output* script (OP_RETURN ... and
 *    OP_FALSE OP_RETURN data carriers) every push of any encoding (direct
 *    0x01-0x4b, PUSHDATA1, PUSHDATA2, PUSHDATA4) whose length is within
 *    [data_min_len, data_max_len] is yielded with BTC_PUSH_DATA (4), if
 *    data_enabled. Defaults: enabled, min 1 byte, no maximum. OP_0 and
 *    OP_1..OP_16 are not data pushes. In input scripts nothing inside a data
 *    region is yielded (the Python indexer captured nothing there).
 *  - Identical (bytes, flags) pairs are yielded once per script, at their
 *    first occurrence (the Python indexer put them in a set). The same bytes
 *    with different flags are yielded once per flag value.
 *  - A push whose length runs past the end of the script ends the walk; it
 *    is not yielded, the pushes before it are. Garbage never causes a read
 *    outside [script, script + len).
 *
 * Differences from the Python indexer, on purpose: pushes in the data region
 * are captured (it captured none there and OR-ed a sticky DATA bit into later
 * reachable keys instead; here reachable keys carry only their kind flag),
 * and input scripts are scanned (Python production had that switched off).
 *
 * Thread-safe. No allocation, except for scripts with more than 32
 * candidate pushes (large data carriers): up to 12 bytes per candidate of 3
 * or more bytes and an 16 kB bitmap, for the duration of the call (see
 * btc_script.c).
 */
#ifndef BTC_SCRIPT_H
#define BTC_SCRIPT_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h"

#define BTC_PUSH_OUTPUT 1u
#define BTC_PUSH_INPUT  2u
#define BTC_PUSH_DATA   4u

#define BTC_OP_0         0x00
#define BTC_OP_PUSHDATA1 0x4c
#define BTC_OP_PUSHDATA2 0x4d
#define BTC_OP_PUSHDATA4 0x4e
#define BTC_OP_ELSE      0x67
#define BTC_OP_RETURN    0x6a

/* Limits for data-region pushes (the config's pushdata section). */
typedef struct btc_push_opts {
    int data_enabled;    /* yield BTC_PUSH_DATA keys at all; default 1 */
    size_t data_min_len; /* shortest data push yielded; default 1 */
    size_t data_max_len; /* longest data push yielded; default SIZE_MAX */
} btc_push_opts;

/* The defaults above; pass NULL for opts to get them. */
extern const btc_push_opts btc_push_opts_default;

/* Receives one push: data points into the script (valid as long as the
 * script's buffer). Return 0 to continue, non-zero to stop the scan. */
typedef int (*btc_push_fn)(void *ctx, const uint8_t *data, size_t len, unsigned flags);

/*
 * Walks a script and calls fn for every push the rule selects.
 * In:  kind is BTC_PUSH_OUTPUT (scriptPubKey) or BTC_PUSH_INPUT (scriptSig);
 *      opts may be NULL (defaults).
 * Returns: the number of pushes yielded (>= 0), or BTC_ERR_CALLBACK if fn
 *          returned non-zero (the scan stopped there).
 */
int btc_script_pushes(const uint8_t *script, size_t len, unsigned kind, const btc_push_opts *opts,
                      btc_push_fn fn, void *ctx) CD_WARN_UNUSED;

/* A pushdata index key: sha256(pushed bytes) in natural byte order. */
typedef struct btc_push_key {
    uint8_t hash[32];
    uint8_t flags;
} btc_push_key;

/*
 * Same walk, giving keys. Writes at most max_keys keys (in script order).
 * Returns: the number of keys the script has (may exceed max_keys, like
 *          snprintf: call again with a bigger array to get them all).
 */
size_t btc_script_push_keys(const uint8_t *script, size_t len, unsigned kind,
                            const btc_push_opts *opts, btc_push_key *keys, size_t max_keys);

/* A key of a whole transaction: which input/output it came from. */
typedef struct btc_tx_push_key {
    uint8_t hash[32]; /* sha256(pushed bytes) */
    uint8_t flags;    /* BTC_PUSH_INPUT for input scripts, else OUTPUT/DATA */
    uint32_t index;   /* input index (INPUT) or output index */
} btc_tx_push_key;

struct btc_tx;

/*
 * All keys of a parsed transaction (btc_tx.h): every input script's, then
 * every output script's, each in script order, de-duplicated per script as
 * above. Faster than per-script calls: the keys of all scripts are hashed
 * together by btc_sha256_many (two interleaved SHA-NI lanes). Writes at most
 * max_keys keys (the keys past max_keys are counted, not hashed).
 * Returns: the number of keys the transaction has (may exceed max_keys).
 */
size_t btc_tx_push_keys(const struct btc_tx *tx, const btc_push_opts *opts, btc_tx_push_key *keys,
                        size_t max_keys);

#endif /* BTC_SCRIPT_H */
