/*
 * cd_hash.c - SHA-256 via OpenSSL's low-level API.
 *
 * The low-level SHA256_* calls are deprecated in OpenSSL 3 in favour of EVP,
 * but EVP costs an allocation and a dispatch per digest, which shows up when
 * hashing millions of ~250-byte transactions. They remain available (and use
 * the SHA-NI instructions); we silence the deprecation here only.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "cd_hash.h"

#include <openssl/sha.h>

_Static_assert(sizeof(cd_sha256_ctx) >= sizeof(SHA256_CTX),
               "cd_sha256_ctx too small for SHA256_CTX");

void cd_sha256_init(cd_sha256_ctx *ctx)
{
    SHA256_Init((SHA256_CTX *)ctx);
}

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
    cd_sha256(out, first, sizeof(first));
}

/* The one-shot SHA256() of OpenSSL 3 goes through EVP (an allocation and a
 * provider lookup per call: ~940 ns for a 33-byte message here); the context
 * calls below cost ~160 ns. Hot paths over many short messages use
 * bitcoin/btc_sha256.h (SHA-NI) instead. */
void cd_sha256(uint8_t out[CD_HASH_LEN], const void *data, size_t len)
{
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, data, len);
    SHA256_Final(out, &c);
}

void cd_sha256d(uint8_t out[CD_HASH_LEN], const void *data, size_t len)
{
    uint8_t first[CD_HASH_LEN];
    cd_sha256(first, data, len);
    cd_sha256(out, first, sizeof(first));
}
