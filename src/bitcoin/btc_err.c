/*
 * btc_err.c - messages for the BTC_ERR_* codes, so logs can say why a
 * peer's transaction, header or block was rejected.
 */
#include "btc_err.h"

const char *btc_strerror(int code)
{
    switch (code) {
    case BTC_OK:
        return "ok";
    case BTC_ERR_VARINT_NONCANONICAL:
        return "non-canonical CompactSize";
    case BTC_ERR_VARINT_TOO_BIG:
        return "CompactSize above 0xFFFFFFFF";
    case BTC_ERR_NO_INPUTS:
        return "transaction has no inputs";
    case BTC_ERR_NO_OUTPUTS:
        return "transaction has no outputs";
    case BTC_ERR_TOO_MANY:
        return "impossible input/output count";
    case BTC_ERR_TRUNCATED:
        return "truncated data";
    case BTC_ERR_WINDOW:
        return "buffer window does not cover the cursor";
    case BTC_ERR_BITS_NEGATIVE:
        return "negative compact target";
    case BTC_ERR_BITS_OVERFLOW:
        return "compact target overflows 256 bits";
    case BTC_ERR_BITS_ZERO:
        return "zero compact target";
    case BTC_ERR_POW_LIMIT:
        return "target above the network's proof-of-work limit";
    case BTC_ERR_POW_HASH:
        return "hash above target (insufficient proof of work)";
    case BTC_ERR_MERKLE_EMPTY:
        return "merkle tree without leaves";
    case BTC_ERR_RANGE:
        return "value out of range";
    case BTC_ERR_CALLBACK:
        return "callback failed";
    case BTC_ERR_TOO_BIG:
        return "object exceeds the size limit";
    default:
        return "unknown error";
    }
}
