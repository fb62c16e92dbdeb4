/*
 * btc_sha256.c - SHA-256 with the x86 SHA extensions, OpenSSL fallback.
 *
 * Exists for the parser's 600 MB/s/core target (DESIGN.md §8): most hashes
 * in Bitcoin parsing are one or two 64-byte blocks, where OpenSSL's
 * per-call overhead (context setup, dispatch; and in OpenSSL 3 a provider
 * fetch for the one-shot SHA256()) costs more than the compression itself.
 * The SHA-NI path compresses blocks directly with sha256rnds2/msg1/msg2 and
 * does its own padding on the stack.
 */
#include "bitcoin/btc_sha256.h"

#include "common/cd_hash.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define BTC_HAVE_SHANI_CODE 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define BTC_HAVE_SHANI_CODE 0
#endif

static int cpu_has_shani;
static int use_shani;

#if BTC_HAVE_SHANI_CODE
static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

static const uint32_t K[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* Four rounds with message words w (already byte-swapped) and K[k..k+3]. */
#define RND4(w, k)                                                                                 \
    do {                                                                                           \
        __m128i m_ = _mm_add_epi32((w), _mm_load_si128((const __m128i *)&K[k]));                   \
        s1 = _mm_sha256rnds2_epu32(s1, s0, m_);                                                    \
        m_ = _mm_shuffle_epi32(m_, 0x0E);                                                          \
        s0 = _mm_sha256rnds2_epu32(s0, s1, m_);                                                    \
    } while (0)

/* W[j] from W[j-4] (a, replaced), W[j-3] (b), W[j-2] (c), W[j-1] (d). */
#define SCHED(a, b, c, d)                                                                          \
    a = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(a, b), _mm_alignr_epi8(d, c, 4)), d)

SHANI_TARGET static void compress_shani(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bll, 0x0405060700010203ll);
    __m128i t = _mm_loadu_si128((const __m128i *)&st[0]);  /* A B C D */
    __m128i s1 = _mm_loadu_si128((const __m128i *)&st[4]); /* E F G H */
    t = _mm_shuffle_epi32(t, 0xB1);                        /* C D A B */
    s1 = _mm_shuffle_epi32(s1, 0x1B);                      /* H G F E */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);                /* ABEF */
    s1 = _mm_blend_epi16(s1, t, 0xF0);                     /* CDGH */
    while (nblocks--) {
        __m128i save0 = s0, save1 = s1;
        __m128i w0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 0)), bswap);
        __m128i w1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
        __m128i w2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
        __m128i w3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);
        RND4(w0, 0);
        RND4(w1, 4);
        RND4(w2, 8);
        RND4(w3, 12);
        for (int r = 16; r < 64; r += 16) {
            SCHED(w0, w1, w2, w3);
            RND4(w0, r);
            SCHED(w1, w2, w3, w0);
            RND4(w1, r + 4);
            SCHED(w2, w3, w0, w1);
            RND4(w2, r + 8);
            SCHED(w3, w0, w1, w2);
            RND4(w3, r + 12);
        }
        s0 = _mm_add_epi32(s0, save0);
        s1 = _mm_add_epi32(s1, save1);
        p += 64;
    }
    t = _mm_shuffle_epi32(s0, 0x1B);   /* FEBA */
    s1 = _mm_shuffle_epi32(s1, 0xB1);  /* DCHG */
    s0 = _mm_blend_epi16(t, s1, 0xF0); /* DCBA */
    s1 = _mm_alignr_epi8(s1, t, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)&st[0], s0);
    _mm_storeu_si128((__m128i *)&st[4], s1);
}

/* Two independent single-block compressions interleaved: one block's
 * sha256rnds2 chain is latency bound, so a second chain fills the gaps. */
#define RND4X(w, v, k)                                                                             \
    do {                                                                                           \
        __m128i kk_ = _mm_load_si128((const __m128i *)&K[k]);                                      \
        __m128i m_ = _mm_add_epi32((w), kk_), n_ = _mm_add_epi32((v), kk_);                        \
        s1 = _mm_sha256rnds2_epu32(s1, s0, m_);                                                    \
        t1 = _mm_sha256rnds2_epu32(t1, t0, n_);                                                    \
        m_ = _mm_shuffle_epi32(m_, 0x0E);                                                          \
        n_ = _mm_shuffle_epi32(n_, 0x0E);                                                          \
        s0 = _mm_sha256rnds2_epu32(s0, s1, m_);                                                    \
        t0 = _mm_sha256rnds2_epu32(t0, t1, n_);                                                    \
    } while (0)

SHANI_TARGET static void compress2_shani(uint32_t sa[8], const uint8_t *pa, uint32_t sb[8],
                                         const uint8_t *pb)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bll, 0x0405060700010203ll);
    __m128i a = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sa[0]), 0xB1);
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sa[4]), 0x1B);
    __m128i s0 = _mm_alignr_epi8(a, s1, 8);
    s1 = _mm_blend_epi16(s1, a, 0xF0);
    __m128i b = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sb[0]), 0xB1);
    __m128i t1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sb[4]), 0x1B);
    __m128i t0 = _mm_alignr_epi8(b, t1, 8);
    t1 = _mm_blend_epi16(t1, b, 0xF0);
    __m128i save0 = s0, save1 = s1, savet0 = t0, savet1 = t1;
    __m128i w0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 0)), bswap);
    __m128i w1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16)), bswap);
    __m128i w2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 32)), bswap);
    __m128i w3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 48)), bswap);
    __m128i v0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 0)), bswap);
    __m128i v1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16)), bswap);
    __m128i v2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 32)), bswap);
    __m128i v3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 48)), bswap);
    RND4X(w0, v0, 0);
    RND4X(w1, v1, 4);
    RND4X(w2, v2, 8);
    RND4X(w3, v3, 12);
    for (int r = 16; r < 64; r += 16) {
        SCHED(w0, w1, w2, w3);
        SCHED(v0, v1, v2, v3);
        RND4X(w0, v0, r);
        SCHED(w1, w2, w3, w0);
        SCHED(v1, v2, v3, v0);
        RND4X(w1, v1, r + 4);
        SCHED(w2, w3, w0, w1);
        SCHED(v2, v3, v0, v1);
        RND4X(w2, v2, r + 8);
        SCHED(w3, w0, w1, w2);
        SCHED(v3, v0, v1, v2);
        RND4X(w3, v3, r + 12);
    }
    s0 = _mm_add_epi32(s0, save0);
    s1 = _mm_add_epi32(s1, save1);
    t0 = _mm_add_epi32(t0, savet0);
    t1 = _mm_add_epi32(t1, savet1);
    a = _mm_shuffle_epi32(s0, 0x1B);
    s1 = _mm_shuffle_epi32(s1, 0xB1);
    _mm_storeu_si128((__m128i *)&sa[0], _mm_blend_epi16(a, s1, 0xF0));
    _mm_storeu_si128((__m128i *)&sa[4], _mm_alignr_epi8(s1, a, 8));
    b = _mm_shuffle_epi32(t0, 0x1B);
    t1 = _mm_shuffle_epi32(t1, 0xB1);
    _mm_storeu_si128((__m128i *)&sb[0], _mm_blend_epi16(b, t1, 0xF0));
    _mm_storeu_si128((__m128i *)&sb[4], _mm_alignr_epi8(t1, b, 8));
}

/* One 8-byte store (byte stores followed by the 16-byte block loads would
 * miss store-to-load forwarding). */
static void put_be64(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
}

/* Pads a message of at most 55 bytes into one block. */
static void pad1(uint8_t blk[64], const uint8_t *data, size_t len)
{
    memcpy(blk, data, len);
    blk[len] = 0x80;
    memset(blk + len + 1, 0, 64 - len - 1 - 8);
    put_be64(blk + 56, (uint64_t)len * 8);
}

static void store_be(uint8_t out[32], const uint32_t st[8])
{
    for (int i = 0; i < 8; i++) {
        uint32_t v = __builtin_bswap32(st[i]);
        memcpy(out + 4 * i, &v, 4);
    }
}

/* Full SHA-256 of data with SHA-NI: bulk blocks in place, the tail and the
 * padding from a 128-byte stack buffer. */
static void sha256_shani(uint8_t out[32], const uint8_t *data, size_t len)
{
    uint32_t st[8];
    memcpy(st, IV, sizeof(st));
    size_t full = len / 64;
    if (full)
        compress_shani(st, data, full);
    size_t rem = len - full * 64;
    uint8_t tail[128];
    memcpy(tail, data + full * 64, rem);
    tail[rem] = 0x80;
    size_t tl = rem + 1 + 8 <= 64 ? 64 : 128;
    memset(tail + rem + 1, 0, tl - rem - 1 - 8);
    put_be64(tail + tl - 8, (uint64_t)len * 8);
    compress_shani(st, tail, tl / 64);
    store_be(out, st);
}

/* SHA-256 of a 32-byte message: one fixed-padding block. */
static void sha256_32_shani(uint8_t out[32], const uint8_t in[32])
{
    uint8_t blk[64];
    uint32_t st[8];
    memcpy(blk, in, 32);
    blk[32] = 0x80;
    memset(blk + 33, 0, 29);
    blk[62] = 0x01; /* 256 bits */
    blk[63] = 0x00;
    memcpy(st, IV, sizeof(st));
    compress_shani(st, blk, 1);
    store_be(out, st);
}

__attribute__((constructor)) static void detect_shani(void)
{
    unsigned a, b, c, d;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29))) {
        unsigned a1, b1, c1, d1;
        /* SSSE3 (ecx bit 9) and SSE4.1 (ecx bit 19) of leaf 1 */
        if (__get_cpuid(1, &a1, &b1, &c1, &d1) && (c1 & (1u << 9)) && (c1 & (1u << 19)))
            cpu_has_shani = 1;
    }
    use_shani = cpu_has_shani;
}
#endif /* BTC_HAVE_SHANI_CODE */

static void sha256_openssl(uint8_t out[32], const void *data, size_t len)
{
    cd_sha256_ctx c;
    cd_sha256_init(&c);
    cd_sha256_update(&c, data, len);
    cd_sha256_final(&c, out);
}

void btc_sha256(uint8_t out[32], const void *data, size_t len)
{
#if BTC_HAVE_SHANI_CODE
    if (use_shani) {
        sha256_shani(out, data, len);
        return;
    }
#endif
    sha256_openssl(out, data, len);
}

void btc_sha256d(uint8_t out[32], const void *data, size_t len)
{
    uint8_t first[32];
#if BTC_HAVE_SHANI_CODE
    if (use_shani) {
        sha256_shani(first, data, len);
        sha256_32_shani(out, first);
        return;
    }
#endif
    sha256_openssl(first, data, len);
    sha256_openssl(out, first, 32);
}

void btc_sha256d_pair(uint8_t out[32], const uint8_t a[32], const uint8_t b[32])
{
    uint8_t pair[64];
    memcpy(pair, a, 32);
    memcpy(pair + 32, b, 32);
    btc_sha256d(out, pair, 64);
}

void btc_sha256_x2(uint8_t out_a[32], const void *a, size_t len_a, uint8_t out_b[32], const void *b,
                   size_t len_b)
{
#if BTC_HAVE_SHANI_CODE
    if (use_shani && len_a <= 55 && len_b <= 55) {
        uint8_t ba[64], bb[64];
        uint32_t sa[8], sb[8];
        pad1(ba, a, len_a);
        pad1(bb, b, len_b);
        memcpy(sa, IV, sizeof(sa));
        memcpy(sb, IV, sizeof(sb));
        compress2_shani(sa, ba, sb, bb);
        store_be(out_a, sa);
        store_be(out_b, sb);
        return;
    }
#endif
    btc_sha256(out_a, a, len_a);
    btc_sha256(out_b, b, len_b);
}

const char *btc_sha256_impl(void)
{
    return use_shani ? "sha-ni" : "openssl";
}

void btc_sha256_set_accel(int on)
{
    use_shani = on ? cpu_has_shani : 0;
}
