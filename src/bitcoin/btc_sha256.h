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

/* Two independent hashes at once: out_a = SHA256(a), out_b = SHA256(b)
 * (btc_sha256_many() with two jobs): the two computations interleave.
 * Outputs must not overlap the inputs. */
void btc_sha256_x2(uint8_t out_a[32], const void *a, size_t len_a, uint8_t out_b[32], const void *b,
                   size_t len_b);

/* One message for btc_sha256_many(): out = SHA256(data[0..len)), or
 * SHA256(SHA256(...)) when twice is non-zero. */
typedef struct btc_sha256_job {
    const void *data;
    size_t len;
    uint8_t *out; /* 32 bytes; must not overlap any message of the same call */
    int twice;
} btc_sha256_job;

/*
 * Computes n independent hashes. With SHA-NI two messages are always in
 * flight: every step compresses one 64-byte block of each, and a message
 * that finishes is replaced by the next job at once, so short messages
 * (pushdata keys: one block) and long ones (txids: several blocks, then the
 * second hash) pair up whatever their lengths. A single sha256rnds2 chain
 * is latency bound; two interleaved ones run at about 1.5x the blocks per
 * second (docs/PERFORMANCE.md). Results are identical to calling
 * btc_sha256()/btc_sha256d() per job, in any order.
 */
void btc_sha256_many(const btc_sha256_job *jobs, size_t n);

/* Returns: "sha-ni" or "openssl" (a static string): the implementation in
 * use, for benchmarks and logs. */
const char *btc_sha256_impl(void);

/* Test hook: 0 forces the OpenSSL path (what a CPU without SHA-NI runs),
 * 1 re-enables SHA-NI if present. Not thread-safe: call it before hashing. */
void btc_sha256_set_accel(int on);

#endif /* BTC_SHA256_H */
