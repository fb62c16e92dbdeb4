/*
 * btc_sha256.c - SHA-256 with the x86 SHA extensions, OpenSSL fallback.
 *
 * Exists for the parser's 600 MB/s/core target (DESIGN.md §8): most hashes
 * in Bitcoin parsing are one to five 64-byte blocks (pushdata keys, txids
 * and their second hash), where OpenSSL's per-call overhead (context setup,
 * dispatch; and in OpenSSL 3 a provider fetch for the one-shot SHA256())
 * costs more than the compression itself. The SHA-NI path compresses blocks
 * directly with sha256rnds2/msg1/msg2 and does its own padding on the stack.
 *
 * NOTES
 *  - The state lives in the register layout sha256rnds2 works in (ABEF,
 *    CDGH) from the IV to the digest; the digest is written with one byte
 *    shuffle per half, and sha256d's second block is built from the state
 *    in registers.
 *  - One compression is a chain of 32 dependent sha256rnds2: latency bound
 *    (~40 ns a block on the dev VM). Two independent chains interleaved take
 *    ~27 ns a block, three ~25 ns (near the unit's throughput), so
 *    btc_sha256_many() keeps exactly two messages in flight: a third would
 *    gain ~5% and does not fit the 16 xmm registers the SHA instructions can
 *    use (sha256rnds2 also takes xmm0).
 */
#include "btc_sha256.h"

#include "cd_hash.h"
#include "cd_util.h"

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
#define SHANI_INLINE SHANI_TARGET __attribute__((always_inline)) static inline

/* One SHA-256 state in sha256rnds2's layout: s0 = ABEF, s1 = CDGH (dword
 * lanes from low to high: F E B A, H G D C). */
typedef struct sha_st {
    __m128i s0, s1;
} sha_st;

/* The initial state in that layout. */
SHANI_INLINE sha_st st_iv(void)
{
    sha_st st;
    st.s0 = _mm_set_epi32(0x6a09e667, (int)0xbb67ae85, 0x510e527f, (int)0x9b05688c);
    st.s1 = _mm_set_epi32(0x3c6ef372, (int)0xa54ff53a, 0x1f83d9ab, 0x5be0cd19);
    return st;
}

/* The digest of a state: big-endian A..H. Both halves are one 64-bit byte
 * reversal of an unpack: (B A D C) -> bytes of A B C D. */
SHANI_INLINE void st_out(uint8_t out[32], sha_st st)
{
    const __m128i rev64 = _mm_set_epi64x(0x08090a0b0c0d0e0fll, 0x0001020304050607ll);
    _mm_storeu_si128((__m128i *)out, _mm_shuffle_epi8(_mm_unpackhi_epi64(st.s0, st.s1), rev64));
    _mm_storeu_si128((__m128i *)(out + 16),
                     _mm_shuffle_epi8(_mm_unpacklo_epi64(st.s0, st.s1), rev64));
}

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

#define BSWAP32_MASK _mm_set_epi64x(0x0c0d0e0f08090a0bll, 0x0405060700010203ll)
#define LOADW(p, o)  _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + (o))), bswap)

/* One compression of st with message words w0..w3 (W0..W15, native order). */
SHANI_INLINE sha_st rounds1(sha_st st, __m128i w0, __m128i w1, __m128i w2, __m128i w3)
{
    __m128i s0 = st.s0, s1 = st.s1;
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
    st.s0 = _mm_add_epi32(s0, st.s0);
    st.s1 = _mm_add_epi32(s1, st.s1);
    return st;
}

/* Compresses n consecutive blocks at p into *st. */
SHANI_TARGET static void blocks1(sha_st *st, const uint8_t *p, size_t n)
{
    const __m128i bswap = BSWAP32_MASK;
    sha_st s = *st;
    while (n--) {
        s = rounds1(s, LOADW(p, 0), LOADW(p, 16), LOADW(p, 32), LOADW(p, 48));
        p += 64;
    }
    *st = s;
}

/* sha256d's second compression: the 32-byte digest of *st, padded, hashed
 * from the IV. The message words are the state words themselves. */
SHANI_INLINE sha_st second1(sha_st st)
{
    __m128i w0 = _mm_shuffle_epi32(_mm_unpackhi_epi64(st.s0, st.s1), 0xB1); /* A B C D */
    __m128i w1 = _mm_shuffle_epi32(_mm_unpacklo_epi64(st.s0, st.s1), 0xB1); /* E F G H */
    __m128i w2 = _mm_set_epi32(0, 0, 0, (int)0x80000000u);
    __m128i w3 = _mm_set_epi32(256, 0, 0, 0); /* 256 bits */
    return rounds1(st_iv(), w0, w1, w2, w3);
}

/* Four rounds of two independent computations (s, t) interleaved: one
 * block's sha256rnds2 chain is latency bound, so a second chain fills the
 * gaps. */
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

/* One block of each of two computations: *a with pa, *b with pb. */
SHANI_TARGET static void blocks2(sha_st *a, const uint8_t *pa, sha_st *b, const uint8_t *pb)
{
    const __m128i bswap = BSWAP32_MASK;
    __m128i s0 = a->s0, s1 = a->s1, t0 = b->s0, t1 = b->s1;
    __m128i w0 = LOADW(pa, 0), w1 = LOADW(pa, 16), w2 = LOADW(pa, 32), w3 = LOADW(pa, 48);
    __m128i v0 = LOADW(pb, 0), v1 = LOADW(pb, 16), v2 = LOADW(pb, 32), v3 = LOADW(pb, 48);
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
    a->s0 = _mm_add_epi32(s0, a->s0);
    a->s1 = _mm_add_epi32(s1, a->s1);
    b->s0 = _mm_add_epi32(t0, b->s0);
    b->s1 = _mm_add_epi32(t1, b->s1);
}

/* Writes the last len % 64 bytes of a len-byte message and the padding to
 * tail (128 bytes). Returns the number of tail blocks (1 or 2). */
static size_t pad_tail(uint8_t tail[128], const uint8_t *data, size_t len)
{
    size_t rem = len & 63;
    memcpy(tail, data + (len - rem), rem);
    tail[rem] = 0x80;
    size_t tl = rem < 56 ? 64 : 128;
    memset(tail + rem + 1, 0, tl - rem - 1 - 8);
    /* one 8-byte store (cd_util.h): byte stores followed by the 16-byte block loads
     * would miss store-to-load forwarding */
    cd_put_be64(tail + tl - 8, (uint64_t)len * 8);
    return tl / 64;
}

/* Full SHA-256 (twice: SHA-256d) of data with SHA-NI: whole blocks in
 * place, the tail and the padding from a stack buffer. */
SHANI_TARGET static void sha256_shani(uint8_t out[32], const uint8_t *data, size_t len, int twice)
{
    sha_st st = st_iv();
    uint8_t tail[128] __attribute__((aligned(16)));
    if (len >= 64)
        blocks1(&st, data, len / 64);
    blocks1(&st, tail, pad_tail(tail, data, len));
    if (twice)
        st = second1(st);
    st_out(out, st);
}

/*
 * btc_sha256_many with SHA-NI: two lanes, each working through one job at a
 * time in stages (whole blocks in place, then the padded tail, then for
 * sha256d the second block). Each step compresses one block per lane; a
 * lane whose job ends takes the next job, so the pair stays full until the
 * jobs run out and the last one finishes alone.
 */
enum { LANE_DATA, LANE_TAIL, LANE_SECOND };

typedef struct sha_lane {
    sha_st st;
    const uint8_t *p; /* the next block */
    size_t left;      /* blocks at p in this stage, >= 1 */
    const btc_sha256_job *job;
    int stage;
    uint8_t buf[128] __attribute__((aligned(16))); /* tail, or the second block */
} sha_lane;

static void lane_tail(sha_lane *l)
{
    l->left = pad_tail(l->buf, l->job->data, l->job->len);
    l->p = l->buf;
    l->stage = LANE_TAIL;
}

SHANI_INLINE void lane_start(sha_lane *l, const btc_sha256_job *j)
{
    l->job = j;
    l->st = st_iv();
    if (j->len >= 64) {
        l->p = j->data;
        l->left = j->len / 64;
        l->stage = LANE_DATA;
    } else {
        lane_tail(l);
    }
}

/* After one block of l's job: 1 if the job has more blocks, 0 when its
 * digest has been written. */
SHANI_INLINE int lane_next(sha_lane *l)
{
    if (--l->left) {
        l->p += 64;
        return 1;
    }
    if (l->stage == LANE_DATA) {
        lane_tail(l);
        return 1;
    }
    if (l->stage == LANE_TAIL && l->job->twice) {
        /* digest || 0x80 || zeros || 256 in bits */
        static const uint8_t pad32[32] __attribute__((aligned(16))) = {[0] = 0x80, [30] = 0x01};
        st_out(l->buf, l->st);
        memcpy(l->buf + 32, pad32, 32);
        l->st = st_iv();
        l->p = l->buf;
        l->left = 1;
        l->stage = LANE_SECOND;
        return 1;
    }
    st_out(l->job->out, l->st);
    return 0;
}

SHANI_TARGET static void many_shani(const btc_sha256_job *jobs, size_t n)
{
    sha_lane la, lb;
    sha_lane *a = NULL, *b = NULL;
    size_t next = 0;
    if (next < n)
        lane_start(a = &la, &jobs[next++]);
    if (next < n)
        lane_start(b = &lb, &jobs[next++]);
    while (a && b) {
        blocks2(&a->st, a->p, &b->st, b->p);
        if (!lane_next(a)) {
            if (next < n)
                lane_start(a, &jobs[next++]);
            else
                a = NULL;
        }
        if (!lane_next(b)) {
            if (next < n)
                lane_start(b, &jobs[next++]);
            else
                b = NULL;
        }
    }
    /* at most one job left, in one lane: the rest of each stage at once */
    sha_lane *l = a ? a : b;
    while (l) {
        blocks1(&l->st, l->p, l->left);
        l->p += 64 * (l->left - 1);
        l->left = 1;
        if (!lane_next(l))
            l = NULL;
    }
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
        sha256_shani(out, data, len, 0);
        return;
    }
#endif
    sha256_openssl(out, data, len);
}

void btc_sha256d(uint8_t out[32], const void *data, size_t len)
{
#if BTC_HAVE_SHANI_CODE
    if (use_shani) {
        sha256_shani(out, data, len, 1);
        return;
    }
#endif
    uint8_t first[32];
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

void btc_sha256_many(const btc_sha256_job *jobs, size_t n)
{
#if BTC_HAVE_SHANI_CODE
    if (use_shani) {
        many_shani(jobs, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        (jobs[i].twice ? btc_sha256d : btc_sha256)(jobs[i].out, jobs[i].data, jobs[i].len);
}

void btc_sha256_x2(uint8_t out_a[32], const void *a, size_t len_a, uint8_t out_b[32], const void *b,
                   size_t len_b)
{
    btc_sha256_job j[2] = {{a, len_a, out_a, 0}, {b, len_b, out_b, 0}};
    btc_sha256_many(j, 2);
}

const char *btc_sha256_impl(void)
{
    return use_shani ? "sha-ni" : "openssl";
}

void btc_sha256_set_accel(int on)
{
    use_shani = on ? cpu_has_shani : 0;
}
