/*
 * cd_wallet.h - the wallet queries of issue 14 for conduit-cli and the HTTP
 * API: the UTXOs, balance and history of a key, where a key is an address
 * (P2PKH / P2SH, version byte checked against the network), an Electrum
 * script hash, or a pushdata key.
 *
 * Why it exists: `conduit-cli utxos|balance|history` and the HTTP routes
 * /v1/{address,scripthash,pushdata}/<key>/{utxos,balance,history} answer the
 * same questions; the SQL is sql/007_outputs.sql's documented functions
 * (cd_utxos, cd_balance, cd_history), called here only, so the three
 * cannot drift apart. Rows come back as jansson objects, exactly what the
 * CLI prints (--json, one line each) and the HTTP API returns:
 *   utxo:    {"txid", "vout", "value", "height" (null: mempool)[, "script"]}
 *   history: {"txid", "height" (null: mempool), "pos", "direction"}
 *            direction: receive | spend | both | push
 *   balance: {"confirmed", "unconfirmed", "utxos"}
 * Paging: at most CD_WALLET_MAX_LIMIT rows per call; `next` is the cursor of
 * the page's last row ("<height|m>.<pos>[.<vout>]") when the page is full,
 * passed back as `after` for the next page (stable: rows are ordered by
 * height, position, vout, the mempool last).
 * Return values: 0, CD_LOOKUP_EINPUT (bad key / cursor / limit: the message
 * says why) or CD_LOOKUP_EDB (the query failed; message from PostgreSQL),
 * CD_LOOKUP_ESTORE (a long script could not be read from the block store).
 */
#ifndef CD_WALLET_H
#define CD_WALLET_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "btc_net.h"
#include "cd_err.h"
#include "cd_lookup.h"

#define CD_WALLET_MAX_LIMIT     10000
#define CD_WALLET_DEFAULT_LIMIT 1000

typedef struct cd_wallet_key {
    int push;        /* 0: key is a script hash; 1: a pushdata key */
    uint8_t key[32]; /* natural order (sha256 of the script / pushed bytes) */
} cd_wallet_key;

/*
 * Parses a key.
 * In:  kind  "address", "scripthash" (Electrum: display hex), "pushdata"
 *            (natural hex), or NULL: text decides: "scripthash:<hex>",
 *            "pushdata:<hex>", else an address (bare 64 hex is refused as
 *            ambiguous).
 *      net   the index's network (addresses are checked against it).
 * Out: *out; err (>= 160 bytes) on failure.
 * Returns: 0 or CD_LOOKUP_EINPUT.
 */
int cd_wallet_key_parse(const char *kind, const char *text, const btc_net *net, cd_wallet_key *out,
                        char *err, size_t err_len) CD_WARN_UNUSED;

/*
 * One page of UTXOs (`after`: NULL or a previous page's `next`).
 * In:  lk: for scripts longer than the stored ones (with_script only; NULL:
 *      "script" omitted for them); conn: the session.
 * Out: *rows (a new JSON array; json_decref it), next (>= 48 bytes; "" when
 *      the page is not full).
 */
int cd_wallet_utxos(PGconn *conn, cd_lookup *lk, const cd_wallet_key *k, uint32_t limit,
                    const char *after, int with_script, json_t **rows, char *next, char *err,
                    size_t err_len) CD_WARN_UNUSED;

/* One page of history (rows as above). */
int cd_wallet_history(PGconn *conn, const cd_wallet_key *k, uint32_t limit, const char *after,
                      json_t **rows, char *next, char *err, size_t err_len) CD_WARN_UNUSED;

/* The balance object. */
int cd_wallet_balance(PGconn *conn, const cd_wallet_key *k, json_t **out, char *err,
                      size_t err_len) CD_WARN_UNUSED;

#endif /* CD_WALLET_H */
