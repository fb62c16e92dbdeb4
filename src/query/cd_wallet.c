/*
 * cd_wallet.c - UTXOs, balance and history of a key (see cd_wallet.h).
 *
 * NOTES
 *  - Every query is one parameterised call of a sql/007 function; the key
 *    goes as binary bytea. Cursors are parsed here (never interpolated).
 *  - A page is computed by PostgreSQL over all the key's outputs, then
 *    sorted and cut (top-N sort: memory bounded by the page, time linear
 *    in the key's rows; docs/PERFORMANCE.md has the figures).
 */
#include "cd_wallet.h"

#include "btc_addr.h"
#include "btc_sha256.h"
#include "btc_tx.h"
#include "cd_escape.h"
#include "cd_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return 0;
    return 1;
}

int cd_wallet_key_parse(const char *kind, const char *text, const btc_net *net, cd_wallet_key *out,
                        char *err, size_t err_len)
{
    char shown[96];
    cd_escape(shown, sizeof(shown), text, strlen(text));
    memset(out, 0, sizeof(*out));
    if (!kind) {
        if (!strncmp(text, "scripthash:", 11))
            return cd_wallet_key_parse("scripthash", text + 11, net, out, err, err_len);
        if (!strncmp(text, "pushdata:", 9))
            return cd_wallet_key_parse("pushdata", text + 9, net, out, err, err_len);
        if (is_hex64(text)) {
            snprintf(err, err_len,
                     "'%s' is ambiguous: write scripthash:<hex> (Electrum script hash) or "
                     "pushdata:<hex> (sha256 of the pushed bytes)",
                     shown);
            return CD_LOOKUP_EINPUT;
        }
        kind = "address";
    }
    if (!strcmp(kind, "address")) {
        uint8_t script[BTC_ADDR_SCRIPT_MAX];
        size_t len = 0;
        char why[128];
        if (btc_addr_script(text, net, script, &len, why, sizeof(why)) != 0) {
            snprintf(err, err_len, "bad address '%s': %s", shown, why);
            return CD_LOOKUP_EINPUT;
        }
        btc_sha256(out->key, script, len);
        return 0;
    }
    if (!strcmp(kind, "scripthash") || !strcmp(kind, "pushdata")) {
        int push = kind[0] == 'p';
        if (!is_hex64(text) || (push ? cd_hex_decode(out->key, 32, text)
                                     : cd_hex_decode_rev(out->key, 32, text)) != 0) {
            snprintf(err, err_len, "bad %s '%s': expected 64 hex digits%s", kind, shown,
                     push ? " (sha256 of the pushed bytes)"
                          : " (Electrum script hash: sha256 of the locking script, reversed)");
            return CD_LOOKUP_EINPUT;
        }
        out->push = push;
        return 0;
    }
    snprintf(err, err_len, "unknown key kind '%s'", kind);
    return CD_LOOKUP_EINPUT;
}

/* Cursor "<height|m>.<pos>[.<vout>]" -> text parameters (height NULL for
 * the mempool). Returns 0 or -1. */
typedef struct cursor {
    char h[16], pos[24], vout[16];
    int mempool, has_vout;
} cursor;

static int cursor_parse(const char *s, int want_vout, cursor *c)
{
    memset(c, 0, sizeof(*c));
    long long h = 0, pos = 0, vout = 0;
    int n = 0;
    char tail;
    if (s[0] == 'm') {
        c->mempool = 1;
        if (want_vout)
            n = sscanf(s, "m.%lld.%lld%c", &pos, &vout, &tail) == 2 ? 3 : 0;
        else
            n = sscanf(s, "m.%lld%c", &pos, &tail) == 1 ? 2 : 0;
    } else if (want_vout) {
        n = sscanf(s, "%lld.%lld.%lld%c", &h, &pos, &vout, &tail) == 3 ? 3 : 0;
    } else {
        n = sscanf(s, "%lld.%lld%c", &h, &pos, &tail) == 2 ? 2 : 0;
    }
    if (!n || h < 0 || h > INT32_MAX || pos < 0 || vout < 0 || vout > INT32_MAX)
        return -1;
    snprintf(c->h, sizeof(c->h), "%lld", h);
    snprintf(c->pos, sizeof(c->pos), "%lld", pos);
    snprintf(c->vout, sizeof(c->vout), "%lld", vout);
    return 0;
}

static int db_fail(PGconn *conn, PGresult *r, const char *what, char *err, size_t err_len)
{
    const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(conn);
    char line[200];
    snprintf(line, sizeof(line), "%s", m && *m ? m : "no connection");
    line[strcspn(line, "\n")] = 0;
    snprintf(err, err_len, "%s: %s", what, line);
    if (r)
        PQclear(r);
    return CD_LOOKUP_EDB;
}

static int check_limit(uint32_t limit, char *err, size_t err_len)
{
    if (limit < 1 || limit > CD_WALLET_MAX_LIMIT) {
        snprintf(err, err_len, "bad limit %u: expected 1..%d", limit, CD_WALLET_MAX_LIMIT);
        return CD_LOOKUP_EINPUT;
    }
    return 0;
}

static json_t *height_json(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null()
                                    : json_integer(strtoll(PQgetvalue(r, row, col), NULL, 10));
}

/* A script longer than the stored ones: from the tx bytes (block store or
 * mempool_tx.raw, checked against the txid by cd_lookup). NULL: unreadable. */
static json_t *long_script(cd_lookup *lk, const char *txid_hex, uint32_t vout)
{
    uint8_t txid[32];
    cd_lookup_tx tx;
    uint8_t *raw = NULL;
    if (!lk || cd_hex_decode_rev(txid, 32, txid_hex) != 0 ||
        cd_lookup_tx_find(lk, txid, 1, &tx) != CD_LOOKUP_OK ||
        cd_lookup_tx_read(lk, &tx, &raw) != CD_LOOKUP_OK)
        return NULL;
    json_t *j = NULL;
    btc_tx t;
    if (btc_tx_parse(&t, raw, tx.size) == 0) {
        btc_tx_iter it;
        btc_txout o;
        btc_tx_outputs(&t, &it);
        for (uint32_t i = 0; btc_tx_next_output(&it, &o); i++) {
            if (i != vout)
                continue;
            char *hex = cd_xmalloc(2 * o.script_len + 1);
            cd_hex_encode(hex, o.script, o.script_len);
            j = json_string(hex);
            free(hex);
            break;
        }
    }
    free(raw);
    return j;
}

int cd_wallet_utxos(PGconn *conn, cd_lookup *lk, const cd_wallet_key *k, uint32_t limit,
                    const char *after, int with_script, json_t **rows, char *next, char *err,
                    size_t err_len)
{
    *rows = NULL;
    next[0] = 0;
    int rc = check_limit(limit, err, err_len);
    if (rc)
        return rc;
    cursor c;
    if (after && cursor_parse(after, 1, &c) != 0) {
        snprintf(err, err_len, "bad cursor: expected the \"next\" value of the previous page");
        return CD_LOOKUP_EINPUT;
    }
    char lim[16];
    snprintf(lim, sizeof(lim), "%u", limit);
    const char *v[6] = {
        k->push ? "push" : "script",      (const char *)k->key, lim,
        after && !c.mempool ? c.h : NULL, after ? c.pos : NULL, after ? c.vout : NULL};
    int lens[6] = {0, 32, 0, 0, 0, 0}, fmts[6] = {0, 1, 0, 0, 0, 0};
    PGresult *r = PQexecParams(conn,
                               "SELECT txid, vout, value, height, pos, encode(script, 'hex') "
                               "FROM cd_utxos($1, $2::bytea, $3::integer, $4::integer, "
                               "$5::bigint, $6::integer)",
                               6, NULL, v, lens, fmts, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_fail(conn, r, "utxos", err, err_len);
    json_t *a = json_array();
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        json_t *o = json_pack("{s:s, s:I, s:I, s:o}", "txid", PQgetvalue(r, i, 0), "vout",
                              (json_int_t)strtoll(PQgetvalue(r, i, 1), NULL, 10), "value",
                              (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10), "height",
                              height_json(r, i, 3));
        if (o && with_script) {
            json_t *s = PQgetisnull(r, i, 5)
                            ? long_script(lk, PQgetvalue(r, i, 0),
                                          (uint32_t)strtoul(PQgetvalue(r, i, 1), NULL, 10))
                            : json_string(PQgetvalue(r, i, 5));
            json_object_set_new(o, "script", s ? s : json_null());
        }
        json_array_append_new(a, o);
    }
    if (n == (int)limit && n > 0) {
        int m = n - 1;
        if (PQgetisnull(r, m, 3))
            snprintf(next, 48, "m.%s.%s", PQgetvalue(r, m, 4), PQgetvalue(r, m, 1));
        else
            snprintf(next, 48, "%s.%s.%s", PQgetvalue(r, m, 3), PQgetvalue(r, m, 4),
                     PQgetvalue(r, m, 1));
    }
    PQclear(r);
    *rows = a;
    return 0;
}

int cd_wallet_history(PGconn *conn, const cd_wallet_key *k, uint32_t limit, const char *after,
                      json_t **rows, char *next, char *err, size_t err_len)
{
    *rows = NULL;
    next[0] = 0;
    int rc = check_limit(limit, err, err_len);
    if (rc)
        return rc;
    cursor c;
    if (after && cursor_parse(after, 0, &c) != 0) {
        snprintf(err, err_len, "bad cursor: expected the \"next\" value of the previous page");
        return CD_LOOKUP_EINPUT;
    }
    char lim[16];
    snprintf(lim, sizeof(lim), "%u", limit);
    const char *v[5] = {k->push ? "push" : "script", (const char *)k->key, lim,
                        after && !c.mempool ? c.h : NULL, after ? c.pos : NULL};
    int lens[5] = {0, 32, 0, 0, 0}, fmts[5] = {0, 1, 0, 0, 0};
    PGresult *r = PQexecParams(conn,
                               "SELECT txid, height, pos, direction FROM cd_history($1, "
                               "$2::bytea, $3::integer, $4::integer, $5::bigint)",
                               5, NULL, v, lens, fmts, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_fail(conn, r, "history", err, err_len);
    json_t *a = json_array();
    int n = PQntuples(r);
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:o, s:I, s:s}", "txid", PQgetvalue(r, i, 0),
                                           "height", height_json(r, i, 1), "pos",
                                           (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10),
                                           "direction", PQgetvalue(r, i, 3)));
    if (n == (int)limit && n > 0) {
        int m = n - 1;
        if (PQgetisnull(r, m, 1))
            snprintf(next, 48, "m.%s", PQgetvalue(r, m, 2));
        else
            snprintf(next, 48, "%s.%s", PQgetvalue(r, m, 1), PQgetvalue(r, m, 2));
    }
    PQclear(r);
    *rows = a;
    return 0;
}

int cd_wallet_balance(PGconn *conn, const cd_wallet_key *k, json_t **out, char *err, size_t err_len)
{
    *out = NULL;
    const char *v[2] = {k->push ? "push" : "script", (const char *)k->key};
    int lens[2] = {0, 32}, fmts[2] = {0, 1};
    PGresult *r =
        PQexecParams(conn, "SELECT confirmed, unconfirmed, utxos FROM cd_balance($1, $2::bytea)", 2,
                     NULL, v, lens, fmts, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        return db_fail(conn, r, "balance", err, err_len);
    *out = json_pack("{s:I, s:I, s:I}", "confirmed",
                     (json_int_t)strtoll(PQgetvalue(r, 0, 0), NULL, 10), "unconfirmed",
                     (json_int_t)strtoll(PQgetvalue(r, 0, 1), NULL, 10), "utxos",
                     (json_int_t)strtoll(PQgetvalue(r, 0, 2), NULL, 10));
    PQclear(r);
    return 0;
}
