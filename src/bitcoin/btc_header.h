/*
 * btc_header.h - block headers, compact targets, proof of work, chain work.
 *
 * Conventions for the whole of src/bitcoin/: hashes are 32 bytes in
 * *internal* byte order (the order sha256d produces; display hex is the
 * reverse, see cd_hex_encode_rev). 256-bit numbers read from hashes/targets
 * treat the 32 bytes as a little-endian integer, like the node does.
 * Pointers are never NULL unless a parameter says so. No function here
 * allocates or does I/O; all are thread-safe.
 */
#ifndef BTC_HEADER_H
#define BTC_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "cd_err.h"
#include "btc_net.h"

#define BTC_HEADER_SIZE 80
#define BTC_HASH_SIZE   32

/* A decoded block header. Field order and widths are the wire layout. */
typedef struct btc_header {
    int32_t version;
    uint8_t prev[32];        /* previous block hash, internal order */
    uint8_t merkle_root[32]; /* internal order */
    uint32_t time;
    uint32_t bits;
    uint32_t nonce;
} btc_header;

/* Decodes 80 wire bytes into *h. Cannot fail. */
void btc_header_parse(btc_header *h, const uint8_t raw[BTC_HEADER_SIZE]);

/* Encodes *h into 80 wire bytes. Cannot fail. */
void btc_header_serialize(uint8_t raw[BTC_HEADER_SIZE], const btc_header *h);

/* out = sha256d(raw80): the block hash in internal order. */
void btc_header_hash(const uint8_t raw[BTC_HEADER_SIZE], uint8_t out[BTC_HASH_SIZE]);

/* ---- 256-bit unsigned arithmetic (chain work, targets) ---- */

/* Unsigned 256-bit integer, d[0] is the least significant 64-bit limb.
 * All operations are modulo 2^256 unless documented otherwise. */
typedef struct btc_u256 {
    uint64_t d[4];
} btc_u256;

/* r = v (a 64-bit value). */
void btc_u256_set_u64(btc_u256 *r, uint64_t v);
/* r = 32 bytes read as a little-endian number (hash/target byte order). */
void btc_u256_from_le(btc_u256 *r, const uint8_t in[32]);
/* r = 32 bytes read as a big-endian number (the header tree's stored chain
 * work, inverse of btc_u256_to_be). */
void btc_u256_from_be(btc_u256 *r, const uint8_t in[32]);
/* out = a as 32 little-endian bytes (inverse of btc_u256_from_le). */
void btc_u256_to_le(uint8_t out[32], const btc_u256 *a);
/* out = a as 32 big-endian bytes (the form PostgreSQL/humans sort by). */
void btc_u256_to_be(uint8_t out[32], const btc_u256 *a);
/* r = a + b; returns the carry out (1 if the sum wrapped). r may alias a/b. */
int btc_u256_add(btc_u256 *r, const btc_u256 *a, const btc_u256 *b);
/* r = a - b; returns the borrow (1 if b > a and the result wrapped). */
int btc_u256_sub(btc_u256 *r, const btc_u256 *a, const btc_u256 *b);
/* Returns -1, 0, 1 as a <, ==, > b. */
int btc_u256_cmp(const btc_u256 *a, const btc_u256 *b);
/* Returns 1 if a == 0. */
int btc_u256_is_zero(const btc_u256 *a);
/* r = a * m (mod 2^256). */
void btc_u256_mul_u64(btc_u256 *r, const btc_u256 *a, uint64_t m);
/* q = a / b (integer division). b must not be zero (returns -1 and leaves q
 * zero if it is, 0 otherwise). q may alias a or b. */
int btc_u256_div(btc_u256 *q, const btc_u256 *a, const btc_u256 *b) CD_WARN_UNUSED;
/* r = a >> n, r = a << n (n < 256; larger n gives 0). */
void btc_u256_shr(btc_u256 *r, const btc_u256 *a, unsigned n);
void btc_u256_shl(btc_u256 *r, const btc_u256 *a, unsigned n);
/* Number of significant bits (0 for zero). */
unsigned btc_u256_bits(const btc_u256 *a);
/* Writes 64 hex chars + NUL, most significant first (like the node prints
 * chain work). */
void btc_u256_hex(char out[65], const btc_u256 *a);

/* ---- compact targets (nBits) ---- */

/*
 * Decodes a compact target the way the node's SetCompact does.
 * Out: *target, the decoded value (set even on error; 0 when overflowing).
 * Returns: 0 if the target is usable;
 *          BTC_ERR_BITS_NEGATIVE if the sign bit is set with a non-zero mantissa;
 *          BTC_ERR_BITS_OVERFLOW if it does not fit 256 bits;
 *          BTC_ERR_BITS_ZERO if it decodes to zero.
 */
int btc_bits_to_target(uint32_t bits, btc_u256 *target) CD_WARN_UNUSED;

/* Encodes a target in compact form (the node's GetCompact, never negative). */
uint32_t btc_target_to_bits(const btc_u256 *target);

/*
 * Checks a block hash against its header's nBits for network `net`.
 * Returns: 0 if the proof of work is valid;
 *          BTC_ERR_BITS_NEGATIVE / _OVERFLOW / _ZERO for unusable bits;
 *          BTC_ERR_POW_LIMIT if the target is above net->pow_limit;
 *          BTC_ERR_POW_HASH if the hash (as a LE number) exceeds the target.
 */
int btc_check_pow(const uint8_t hash[BTC_HASH_SIZE], uint32_t bits,
                  const btc_net *net) CD_WARN_UNUSED;

/*
 * The expected number of hashes to find a block at `bits`:
 * 2^256 / (target + 1). Sum these along a chain to get its chain work.
 * Returns zero work for unusable bits (negative, overflow, zero), as the
 * node's GetBlockProof does.
 */
btc_u256 btc_block_work(uint32_t bits);

#endif /* BTC_HEADER_H */
