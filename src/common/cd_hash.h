/*
 * cd_hash.h - SHA-256 and double SHA-256 (Bitcoin's hash) over OpenSSL.
 *
 * The incremental context exists because block checksums and txids of large
 * transactions are computed as the bytes arrive.
 */
#ifndef CD_HASH_H
#define CD_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CD_HASH_LEN 32

/* Opaque-size storage for an incremental SHA-256 state; large enough for
 * OpenSSL's SHA256_CTX. Stack-allocatable, no free needed. */
typedef struct cd_sha256_ctx {
    uint64_t opaque[16];
} cd_sha256_ctx;

/* init, then update with consecutive pieces, then final: out = SHA256 of
 * the pieces; ctx must be init'ed again before reuse. Cannot fail. */
void cd_sha256_init(cd_sha256_ctx *ctx);
void cd_sha256_update(cd_sha256_ctx *ctx, const void *data, size_t len);
void cd_sha256_final(cd_sha256_ctx *ctx, uint8_t out[CD_HASH_LEN]);
/* Finalizes and hashes the digest again: SHA256(SHA256(data)). */
void cd_sha256d_final(cd_sha256_ctx *ctx, uint8_t out[CD_HASH_LEN]);

/* Out: out = SHA256(data) / SHA256(SHA256(data)) of len bytes. Cannot
 * fail. */
void cd_sha256(uint8_t out[CD_HASH_LEN], const void *data, size_t len);
void cd_sha256d(uint8_t out[CD_HASH_LEN], const void *data, size_t len);

#endif /* CD_HASH_H */
