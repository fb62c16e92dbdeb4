/*
 * cd_err.h - the one error space of conduitd: every error code of every
 * room, each module in its own reserved range, and cd_strerror() that names
 * any of them (the LMDB model: one integer space, 0 is success).
 *
 * Convention (CONTRIBUTING.md, "Errors"):
 *   0          success (CD_OK and the modules' *_OK aliases);
 *   > 0        an errno value, passed through (ENOENT, EACCES, ...);
 *   -1         CD_EFAIL: POSIX style, failed and errno says why (functions
 *              documented "returns 0 or -1 with errno");
 *   < -1       a code of this table: negative, in the range of the module
 *              that defines it, unique across the program.
 * A caller may pass any of these up unchanged and print it with
 * cd_strerror(), which knows every code below, LMDB's own codes (the store
 * room passes them through: CD_BS_NOTFOUND is MDB_NOTFOUND) and errno.
 * Tests compare codes with their macros, never with literal numbers.
 *
 * Reserved ranges (each module defines codes only inside its range; a new
 * module takes the next free hundred):
 *
 *   range               module (room)                         macros
 *   -1                  any (errno)                           CD_EFAIL
 *   -1000 .. -1099      common                                (none yet)
 *   -1100 .. -1199      bitcoin: Bitcoin formats              BTC_ERR_*
 *   -1200 .. -1299      config                                (none yet)
 *   -1300 .. -1399      store: block store                    CD_BS_E*
 *   -1400 .. -1499      store: header tree                    CD_HDRTREE_E*
 *   -1500 .. -1599      pg: PostgreSQL                        CD_PG_*
 *   -1600 .. -1699      query: lookups                        CD_LOOKUP_E*
 *   -1700 .. -1799      proc: the process table                CD_SUP_E*
 *   -1800 .. -1899      sync                                  (none yet)
 *   -1900 .. -1999      index: tx -> rows                     CD_ROWS_E*
 *   -2000 .. -2099      workers                               (none yet)
 *   -2100 .. -2199      pipeline                              (none yet)
 *   -2200 .. -2299      api: webhooks                         CD_HOOK_E*
 *   -2300 .. -2399      cli                                   (none yet)
 *   -30799 .. -30780    LMDB's MDB_* codes, passed through by the store room
 *   -30999 .. -30900    libconduit-p2p's CP2P_E* (its own public values,
 *                       conduit_p2p.h; named by cp2p_strerror)
 *
 * Every function that can fail is declared CD_WARN_UNUSED: a caller that
 * ignores a result on purpose writes `CD_IGNORE(f(...));` with a comment
 * saying why.
 */
#ifndef CD_ERR_H
#define CD_ERR_H

#if defined(__GNUC__)
#define CD_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define CD_WARN_UNUSED
#endif

/* Drops a CD_WARN_UNUSED result on purpose (GCC does not accept a (void)
 * cast for that); a comment next to it says why the result does not
 * matter there. */
#define CD_IGNORE(expr) ((void)!(expr))

#define CD_OK    0
#define CD_EFAIL (-1) /* failed; errno says why */

/* ---- the ranges ---- */
#define CD_ERR_COMMON   (-1000)
#define CD_ERR_BITCOIN  (-1100)
#define CD_ERR_CONFIG   (-1200)
#define CD_ERR_BS       (-1300)
#define CD_ERR_HDRTREE  (-1400)
#define CD_ERR_PG       (-1500)
#define CD_ERR_LOOKUP   (-1600)
#define CD_ERR_PROC     (-1700)
#define CD_ERR_SYNC     (-1800)
#define CD_ERR_ROWS     (-1900)
#define CD_ERR_WORKERS  (-2000)
#define CD_ERR_PIPELINE (-2100)
#define CD_ERR_API      (-2200)
#define CD_ERR_CLI      (-2300)
#define CD_ERR_LMDB_MIN (-30799) /* MDB_KEYEXIST */
#define CD_ERR_LMDB_MAX (-30780) /* MDB_LAST_ERRCODE of lmdb 0.9 */
#define CD_ERR_P2P_MIN  (-30999)
#define CD_ERR_P2P_MAX  (-30900)

/* ---- bitcoin (src/bitcoin/): a format function rejected its input ---- */
#define BTC_OK                      CD_OK
#define BTC_ERR_VARINT_NONCANONICAL (CD_ERR_BITCOIN - 1) /* CompactSize not in shortest form */
#define BTC_ERR_VARINT_TOO_BIG      (CD_ERR_BITCOIN - 2) /* CompactSize above 0xFFFFFFFF */
#define BTC_ERR_NO_INPUTS           (CD_ERR_BITCOIN - 3) /* transaction with zero inputs */
#define BTC_ERR_NO_OUTPUTS          (CD_ERR_BITCOIN - 4) /* transaction with zero outputs */
#define BTC_ERR_TOO_MANY            (CD_ERR_BITCOIN - 5) /* a count no transaction could hold */
#define BTC_ERR_TRUNCATED           (CD_ERR_BITCOIN - 6) /* buffer ends inside an object */
#define BTC_ERR_WINDOW              (CD_ERR_BITCOIN - 7) /* preprocessor window misses its cursor */
#define BTC_ERR_BITS_NEGATIVE       (CD_ERR_BITCOIN - 8) /* compact target has the sign bit set */
#define BTC_ERR_BITS_OVERFLOW       (CD_ERR_BITCOIN - 9) /* compact target does not fit 256 bits */
#define BTC_ERR_BITS_ZERO           (CD_ERR_BITCOIN - 10) /* compact target decodes to zero */
#define BTC_ERR_POW_LIMIT           (CD_ERR_BITCOIN - 11) /* target easier than the pow limit */
#define BTC_ERR_POW_HASH            (CD_ERR_BITCOIN - 12) /* hash above target: not enough work */
#define BTC_ERR_MERKLE_EMPTY        (CD_ERR_BITCOIN - 13) /* merkle tree of zero leaves */
#define BTC_ERR_RANGE               (CD_ERR_BITCOIN - 14) /* index out of range */
#define BTC_ERR_CALLBACK            (CD_ERR_BITCOIN - 15) /* a caller callback reported failure */
#define BTC_ERR_TOO_BIG             (CD_ERR_BITCOIN - 16) /* object larger than the caller's limit */

/* ---- store: the block store (cd_blockstore.h); it also passes LMDB codes
 * and errno through, and answers CD_BS_NOTFOUND (LMDB's MDB_NOTFOUND) ---- */
#define CD_BS_NOTFOUND (-30798)        /* == MDB_NOTFOUND: absent */
#define CD_BS_ECORRUPT (CD_ERR_BS - 1) /* a record has the wrong size/version */
#define CD_BS_ESTATE   (CD_ERR_BS - 2) /* writer call out of order */
#define CD_BS_ERANGE   (CD_ERR_BS - 3) /* read beyond the block */
#define CD_BS_MAPFULL  (-30792)        /* == MDB_MAP_FULL: the map could not grow */

/* ---- store: the header tree (cd_hdrtree.h) ---- */
#define CD_HDRTREE_OK           CD_OK
#define CD_HDRTREE_EUNCONNECTED (CD_ERR_HDRTREE - 1) /* prev hash not in the tree */
#define CD_HDRTREE_EBADPOW      (CD_ERR_HDRTREE - 2) /* hash above target ("high-hash") */
#define CD_HDRTREE_EBADBITS     (CD_ERR_HDRTREE - 3) /* nBits invalid, above limit, against rules */
#define CD_HDRTREE_EBADTIME     (CD_ERR_HDRTREE - 4) /* time <= median-time-past or > now + 2 h */
#define CD_HDRTREE_EINVALID     (CD_ERR_HDRTREE - 5) /* descends from a header marked invalid */
#define CD_HDRTREE_ETOOMANY     (CD_ERR_HDRTREE - 6) /* more headers than CD_HDRTREE_MAX_BATCH */
#define CD_HDRTREE_ESTORE       (CD_ERR_HDRTREE - 7) /* LMDB error (logged with the path) */
#define CD_HDRTREE_ENOTFOUND    (CD_ERR_HDRTREE - 8) /* lookup: no such header / height */
#define CD_HDRTREE_ERDONLY      (CD_ERR_HDRTREE - 9) /* write call on a read-only tree */
#define CD_HDRTREE_EGENESIS     (CD_ERR_HDRTREE - 10) /* stored genesis differs from the network's */

/* ---- pg (cd_pg.h) ---- */
#define CD_PG_OK          CD_OK
#define CD_PG_ERROR       (CD_ERR_PG - 1)  /* SQL error that retrying will not fix (logged) */
#define CD_PG_EDOWN       (CD_ERR_PG - 2)  /* unreachable; the retry budget or stop flag ended */
#define CD_PG_ENEWER      (CD_ERR_PG - 3)  /* database schema is newer than this binary knows */
#define CD_PG_EINCOMPLETE (CD_ERR_PG - 4)  /* block not complete (units missing) / tip order */
#define CD_PG_EMERKLE     (CD_ERR_PG - 5)  /* stored txids do not hash to the merkle root */
#define CD_PG_EUNIT       (CD_ERR_PG - 6)  /* unit marker with another tx range (unit size) */
#define CD_PG_EAGAIN      (CD_ERR_PG - 7)  /* connection lost while streaming: parse it again */
#define CD_PG_ERETRY      (CD_ERR_PG - 99) /* internal to the room: re-run the operation */

/* ---- query (cd_lookup.h) ---- */
#define CD_LOOKUP_OK        CD_OK
#define CD_LOOKUP_ENOTFOUND (CD_ERR_LOOKUP - 1) /* no such tx / block / spend / tip */
#define CD_LOOKUP_EINPUT    (CD_ERR_LOOKUP - 2) /* malformed argument (hex, height, target) */
#define CD_LOOKUP_EDB       (CD_ERR_LOOKUP - 3) /* no PostgreSQL connection, or the query failed */
#define CD_LOOKUP_ESTORE    (CD_ERR_LOOKUP - 4) /* an LMDB store cannot be read or lacks the data */
#define CD_LOOKUP_ECORRUPT  (CD_ERR_LOOKUP - 5) /* stored bytes or tree contradict the index */

/* ---- proc (cd_supervisor.h) ---- */
#define CD_SUP_EFULL    (CD_ERR_PROC - 1) /* the process table is full */
#define CD_SUP_EFORK    (CD_ERR_PROC - 2) /* socketpair() or fork() failed (logged) */
#define CD_SUP_ERUNNING (CD_ERR_PROC - 3) /* the slot's child is still running */
#define CD_SUP_ESLOT    (CD_ERR_PROC - 4) /* no child in that slot */
#define CD_SUP_ESTOPPING (CD_ERR_PROC - 5) /* its owner is stopping it: no new run */

/* ---- index (cd_rows.h) ---- */
#define CD_ROWS_EMALFORMED (CD_ERR_ROWS - 1) /* bytes are not a run of complete transactions */

/* ---- api: webhook registrations (cd_http_hooks.h) ---- */
#define CD_HOOK_EINPUT    (CD_ERR_API - 1) /* a registration refused: a field is bad */
#define CD_HOOK_EFULL     (CD_ERR_API - 2) /* CD_HOOK_MAX_REGISTRATIONS exist already */
#define CD_HOOK_ENOTFOUND (CD_ERR_API - 3) /* no such registration */
#define CD_HOOK_EDB       (CD_ERR_API - 4) /* a statement failed, or no connection */

/*
 * Names any code of the program.
 * Returns: a static, human-readable text (never NULL, never to be freed):
 *          the table above for our codes; mdb_strerror() for LMDB's;
 *          strerror() for a positive errno; for libconduit-p2p's range a
 *          text that points at cp2p_strerror (common does not know the
 *          library's table); "unknown error" otherwise. Thread-safe as far
 *          as strerror() is.
 */
const char *cd_strerror(int code);

#endif /* CD_ERR_H */
