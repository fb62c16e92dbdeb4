/*
 * btc_err.h - the error codes shared by the Bitcoin format functions.
 *
 * Every function in src/bitcoin/ that can reject its input returns 0 (or a
 * positive size/count) on success and one of these negative codes on
 * failure. They live in one header so that a caller holding a code from any
 * btc_* function can print it with btc_strerror().
 */
#ifndef BTC_ERR_H
#define BTC_ERR_H

#define BTC_OK                      0
#define BTC_ERR_VARINT_NONCANONICAL -1  /* CompactSize not in its shortest form */
#define BTC_ERR_VARINT_TOO_BIG      -2  /* CompactSize above 0xFFFFFFFF */
#define BTC_ERR_NO_INPUTS           -3  /* transaction with zero inputs */
#define BTC_ERR_NO_OUTPUTS          -4  /* transaction with zero outputs */
#define BTC_ERR_TOO_MANY            -5  /* a count no transaction could hold */
#define BTC_ERR_TRUNCATED           -6  /* buffer ends inside a complete-by-contract object */
#define BTC_ERR_WINDOW              -7  /* preprocessor window does not cover its cursor */
#define BTC_ERR_BITS_NEGATIVE       -8  /* compact target has the sign bit set */
#define BTC_ERR_BITS_OVERFLOW       -9  /* compact target does not fit 256 bits */
#define BTC_ERR_BITS_ZERO           -10 /* compact target decodes to zero */
#define BTC_ERR_POW_LIMIT           -11 /* target easier than the network's pow limit */
#define BTC_ERR_POW_HASH            -12 /* hash above target: not enough work */
#define BTC_ERR_MERKLE_EMPTY        -13 /* merkle tree of zero leaves */
#define BTC_ERR_RANGE               -14 /* index out of range */
#define BTC_ERR_CALLBACK            -15 /* a caller callback reported failure */
#define BTC_ERR_TOO_BIG             -16 /* object larger than the caller's limit */

/* Returns a static, human-readable description of a BTC_ERR_* code (or of
 * BTC_OK). Unknown codes give "unknown error". Never NULL. */
const char *btc_strerror(int code);

#endif /* BTC_ERR_H */
