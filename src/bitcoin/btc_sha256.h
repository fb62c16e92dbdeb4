/*
 * btc_sha256.h - SHA-256 tuned for the many short messages of Bitcoin
 * parsing (txids of ~250-byte transactions, 20/33/65-byte pushdata keys,
 * 64-byte merkle pairs).
 *
 * Uses the x86 SHA extensions (SHA-NI) when the CPU has them, detected once
 * at program start; otherwise it falls back to OpenSSL's low-level SHA-256
 * (common/cd_hash.h's incremental context). Results are identical either
 * way (tests compare both). Thread-safe, no allocation.
 */
#ifndef BTC_SHA256_H
#define BTC_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* out = SHA256(data). */
void btc_sha256(uint8_t out[32], const void *data, size_t len);

/* out = SHA256(SHA256(data)): txids, block hashes, merkle nodes. */
void btc_sha256d(uint8_t out[32], const void *data, size_t len);

/* out = SHA256d(a || b) for two 32-byte hashes (a merkle node). */
void btc_sha256d_pair(uint8_t out[32], const uint8_t a[32], const uint8_t b[32]);

/* Two independent hashes at once: out_a = SHA256(a), out_b = SHA256(b).
 * Faster than two calls when both messages are at most 55 bytes (one block
 * each; pushdata keys of 20/33 bytes): the two computations interleave.
 * Outputs must not overlap the inputs. */
void btc_sha256_x2(uint8_t out_a[32], const void *a, size_t len_a, uint8_t out_b[32], const void *b,
                   size_t len_b);

/* "sha-ni" or "openssl": the implementation in use (for benchmarks/logs). */
const char *btc_sha256_impl(void);

/* Test hook: 0 forces the OpenSSL path, 1 re-enables SHA-NI if present. */
void btc_sha256_set_accel(int on);

#endif /* BTC_SHA256_H */
