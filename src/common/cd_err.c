/*
 * cd_err.c - the names of every error code (cd_err.h), so a log line or a
 * command's message can say what failed whatever room the code came from.
 * The switch below also keeps the codes unique: two macros with one value
 * would be duplicate case labels, a compile error.
 */
#include "cd_err.h"

#include <lmdb.h>
#include <string.h>

/* Each module's codes stay inside its range (the first and the last of
 * each; the switch below keeps them unique). */
#define CD_ERR_IN(code, base) ((code) < (base) && (code) > (base)-100)
_Static_assert(CD_ERR_IN(BTC_ERR_VARINT_NONCANONICAL, CD_ERR_BITCOIN) &&
                   CD_ERR_IN(BTC_ERR_TOO_BIG, CD_ERR_BITCOIN),
               "bitcoin codes outside their range");
_Static_assert(CD_ERR_IN(CD_BS_ECORRUPT, CD_ERR_BS) && CD_ERR_IN(CD_BS_ERANGE, CD_ERR_BS),
               "block store codes outside their range");
_Static_assert(CD_ERR_IN(CD_HDRTREE_EUNCONNECTED, CD_ERR_HDRTREE) &&
                   CD_ERR_IN(CD_HDRTREE_EGENESIS, CD_ERR_HDRTREE),
               "header tree codes outside their range");
_Static_assert(CD_ERR_IN(CD_PG_ERROR, CD_ERR_PG) && CD_ERR_IN(CD_PG_ERETRY, CD_ERR_PG),
               "pg codes outside their range");
_Static_assert(CD_ERR_IN(CD_LOOKUP_ENOTFOUND, CD_ERR_LOOKUP) &&
                   CD_ERR_IN(CD_LOOKUP_ECORRUPT, CD_ERR_LOOKUP),
               "lookup codes outside their range");
_Static_assert(CD_ERR_IN(CD_SUP_EFULL, CD_ERR_PROC) && CD_ERR_IN(CD_SUP_ESTOPPING, CD_ERR_PROC),
               "proc codes outside their range");
_Static_assert(CD_ERR_IN(CD_ROWS_EMALFORMED, CD_ERR_ROWS), "rows codes outside their range");
_Static_assert(CD_ERR_IN(CD_HOOK_EINPUT, CD_ERR_API) && CD_ERR_IN(CD_HOOK_EDB, CD_ERR_API),
               "webhook codes outside their range");
_Static_assert(CD_BS_NOTFOUND == MDB_NOTFOUND, "CD_BS_NOTFOUND is LMDB's MDB_NOTFOUND");
_Static_assert(MDB_KEYEXIST == CD_ERR_LMDB_MIN && MDB_LAST_ERRCODE <= CD_ERR_LMDB_MAX,
               "LMDB's codes outside the range cd_err.h reserves for them");

const char *cd_strerror(int code)
{
    switch (code) {
    case CD_OK:
        return "ok";
    case CD_EFAIL:
        return "operation failed (errno was not kept)";

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

    case CD_BS_ECORRUPT:
        return "corrupt block store record";
    case CD_BS_ESTATE:
        return "block store writer call out of order";
    case CD_BS_ERANGE:
        return "read beyond the stored block";

    case CD_HDRTREE_EUNCONNECTED:
        return "header does not connect to a known header";
    case CD_HDRTREE_EBADPOW:
        return "proof of work does not meet nBits (high-hash)";
    case CD_HDRTREE_EBADBITS:
        return "bad nBits (invalid, above the network limit or against difficulty rules)";
    case CD_HDRTREE_EBADTIME:
        return "bad timestamp (not above median time past, or too far in the future)";
    case CD_HDRTREE_EINVALID:
        return "header descends from an invalid block";
    case CD_HDRTREE_ETOOMANY:
        return "more than 2000 headers in one message";
    case CD_HDRTREE_ESTORE:
        return "header store (LMDB) error";
    case CD_HDRTREE_ENOTFOUND:
        return "not found";
    case CD_HDRTREE_ERDONLY:
        return "header tree opened read-only";
    case CD_HDRTREE_EGENESIS:
        return "stored genesis does not match the network";

    case CD_PG_ERROR:
        return "PostgreSQL statement failed";
    case CD_PG_EDOWN:
        return "PostgreSQL unreachable";
    case CD_PG_ENEWER:
        return "database schema newer than this binary";
    case CD_PG_EINCOMPLETE:
        return "block not completely indexed";
    case CD_PG_EMERKLE:
        return "indexed txids do not give the block's merkle root";
    case CD_PG_EUNIT:
        return "unit marker with another transaction range";
    case CD_PG_EAGAIN:
        return "PostgreSQL connection lost while streaming a unit";
    case CD_PG_ERETRY:
        return "PostgreSQL connection lost (retrying)";

    case CD_SUP_EFULL:
        return "process table full";
    case CD_SUP_EFORK:
        return "cannot fork a child process";
    case CD_SUP_ERUNNING:
        return "child process still running";
    case CD_SUP_ESLOT:
        return "no such child process";
    case CD_SUP_ESTOPPING:
        return "child process being stopped: no new run";

    case CD_HOOK_EINPUT:
        return "webhook registration refused";
    case CD_HOOK_EFULL:
        return "too many webhook registrations";
    case CD_HOOK_ENOTFOUND:
        return "no such webhook";
    case CD_HOOK_EDB:
        return "webhook database statement failed";

    case CD_LOOKUP_ENOTFOUND:
        return "not found";
    case CD_LOOKUP_EINPUT:
        return "malformed argument";
    case CD_LOOKUP_EDB:
        return "database query failed";
    case CD_LOOKUP_ESTORE:
        return "block or merkle store unavailable";
    case CD_LOOKUP_ECORRUPT:
        return "stored data contradicts the index";

    case CD_ROWS_EMALFORMED:
        return "malformed transactions";

    default:
        break;
    }
    if (code > 0)
        return strerror(code);
    if (code >= CD_ERR_LMDB_MIN && code <= CD_ERR_LMDB_MAX)
        return mdb_strerror(code);
    if (code >= CD_ERR_P2P_MIN && code <= CD_ERR_P2P_MAX)
        return "libconduit-p2p error (cp2p_strerror names it)";
    return "unknown error";
}
