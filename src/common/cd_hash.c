/*
 * cd_hash.c - SHA-256 via OpenSSL's low-level API.
 *
 * The low-level SHA256_* calls are deprecated in OpenSSL 3 in favour of EVP,
 * but EVP costs an allocation and a dispatch per digest, which shows up when
 * hashing millions of ~250-byte transactions. They remain available (and use
 * the SHA-NI instructions); we silence the deprecation here only.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "common/cd_hash.h"

#include <openssl/sha.h>

_Static_assert(sizeof(cd_sha256_ctx) >= sizeof(SHA256_CTX),
               "cd_sha256_ctx too small for SHA256_CTX");

void cd_sha256_init(cd_sha256_ctx *ctx) { SHA256_Init((SHA256_CTX *)ctx); }

void cd_sha256_update(cd_sha256_ctx *ctx, const void *data, size_t len)
{
    SHA256_Update((SHA256_CTX *)ctx, data, len);
}

void cd_sha256_final(cd_sha256_ctx *ctx, uint8_t out[CD_HASH_LEN])
{
    SHA256_Final(out, (SHA256_CTX *)ctx);
}

void cd_sha256d_final(cd_sha256_ctx *ctx, uint8_t out[CD_HASH_LEN])
{
    uint8_t first[CD_HASH_LEN];
    SHA256_Final(first, (SHA256_CTX *)ctx);
    SHA256(first, sizeof(first), out);
}

void cd_sha256(uint8_t out[CD_HASH_LEN], const void *data, size_t len)
{
    SHA256(data, len, out);
}

void cd_sha256d(uint8_t out[CD_HASH_LEN], const void *data, size_t len)
{
    uint8_t first[CD_HASH_LEN];
    SHA256(data, len, first);
    SHA256(first, sizeof(first), out);
}
