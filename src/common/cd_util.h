/*
 * cd_util.h - small helpers shared by every module: allocation policy,
 * little-endian access, hex, monotonic time.
 *
 * Allocation policy (STYLE.md C13):
 *  - cd_xmalloc/cd_xcalloc/cd_xrealloc/cd_xstrdup are for small control
 *    structures; on failure they log the size and abort.
 *  - Buffers whose size a peer chooses (blocks, transactions) use plain
 *    malloc and handle NULL by dropping the peer, never the daemon.
 *  - Every free function in the project accepts NULL.
 *
 * API comments in every header of src/ follow the rules of CONTRIBUTING.md
 * ("Public headers"): pointers are non-NULL and borrowed for the call
 * unless the comment says otherwise; Returns/In/Out say the rest.
 */
#ifndef CD_UTIL_H
#define CD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <string.h>

#include "cd_err.h" /* CD_WARN_UNUSED, the error codes */

#define CD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CD_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define CD_MAX(a, b)    ((a) > (b) ? (a) : (b))

#if defined(__GNUC__)
#define CD_NORETURN    __attribute__((noreturn))
#define CD_UNUSED      __attribute__((unused))
#define CD_LIKELY(x)   __builtin_expect(!!(x), 1)
#define CD_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CD_NORETURN
#define CD_UNUSED
#define CD_LIKELY(x)   (x)
#define CD_UNLIKELY(x) (x)
#endif

/* malloc, calloc, realloc and strdup that never return NULL (0 bytes asks
 * for 1). Returns: the memory, owned by the caller (free()); on failure the
 * size is logged and the process aborts. cd_xrealloc takes over p (it may
 * move: use only the returned pointer). */
void *cd_xmalloc(size_t n);
void *cd_xcalloc(size_t count, size_t size);
void *cd_xrealloc(void *p, size_t n);
char *cd_xstrdup(const char *s);

/* Logs "file:line: assertion failed: expr" and aborts. Never compiled out:
 * use for invariants whose violation would corrupt stored data. */
CD_NORETURN void cd_assert_fail(const char *expr, const char *file, int line);
#define cd_assert(e) ((e) ? (void)0 : cd_assert_fail(#e, __FILE__, __LINE__))

/* ---- little-endian access (the wire format of Bitcoin) ----
 * cd_leN read N/8 bytes at p, cd_put_leN write them; no alignment needed. */

static inline uint16_t cd_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t cd_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}
static inline uint64_t cd_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}
static inline void cd_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void cd_put_le32(uint8_t *p, uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, 4);
}
static inline void cd_put_le64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

/* ---- big-endian access (PostgreSQL's binary format, ConduitDB's records, LMDB keys
 * that sort by number, SHA-256's length field) ----
 * cd_beN read N/8 bytes at p, cd_put_beN write them; no alignment needed. One load or
 * store of the whole width and a byte swap on little-endian hosts: the COPY encoder
 * (cd_pg_copy.c) writes several per row, and SHA-256's padding (btc_sha256.c) must not
 * split its length into byte stores that the next 16-byte load would wait on (no
 * store-to-load forwarding across them). */

static inline uint32_t cd_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}
static inline uint64_t cd_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}
static inline void cd_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void cd_put_be32(uint8_t *p, uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, 4);
}
static inline void cd_put_be64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

/* ---- hex ---- */

/* ---- hex: the one codec of the program ---- */

/* Out: out, 2*n lowercase hex chars of in[0..n) plus NUL (2n+1 bytes). */
void cd_hex_encode(char *out, const uint8_t *in, size_t n);
/* Out: out, 2*n lowercase hex chars, no NUL (2n bytes).
 * Returns: out + 2n, for writers that append to a buffer (COPY text rows). */
char *cd_hex_put(char *out, const uint8_t *in, size_t n);
/* As cd_hex_encode, bytes reversed: the display form of hashes and txids. */
void cd_hex_encode_rev(char *out, const uint8_t *in, size_t n);
/* Decodes exactly 2*n hex chars (either case).
 * Out: out, n bytes (unspecified on failure).
 * Returns: 0, or -1 on a bad character or a string that is not 2n long. */
int cd_hex_decode(uint8_t *out, size_t n, const char *hex) CD_WARN_UNUSED;
/* As cd_hex_decode, then reverses the bytes: a display-order hash (64 hex
 * chars) into internal byte order. Returns: 0 or -1. */
int cd_hex_decode_rev(uint8_t *out, size_t n, const char *hex) CD_WARN_UNUSED;

/* ---- processes ---- */

/* In a freshly forked child: closes every descriptor above 2 except `keep`
 * (-1: none), so no listening socket, LMDB file or other child's channel
 * leaks into it. Re-open the log afterwards with cd_log_open(). */
void cd_close_fds_except(int keep);

/* fork() with every signal blocked across it: the child cannot run one of
 * the parent's handlers before it has set up its own (it returns with all
 * signals blocked and sets its own mask); in the parent the previous mask is
 * back. stdio is flushed first so buffered output is not written twice.
 * Returns fork()'s result, with fork()'s errno on failure. */
pid_t cd_fork_signals_blocked(void) CD_WARN_UNUSED;

/* ---- time ---- */

/* Returns: the monotonic clock in nanoseconds / seconds (as double). */
uint64_t cd_now_ns(void);
double cd_now_s(void);

#endif /* CD_UTIL_H */
