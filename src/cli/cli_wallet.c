/*
 * cli_wallet.c - conduit-cli utxos / balance / history: what a wallet asks
 * of the index (issue 14).
 *
 *   conduit-cli utxos|balance|history <key> [--json] [--limit N] [--after C]
 *                                     [--script] [--datadir D] [--regtest ...]
 *   key: an address (P2PKH or P2SH of the configured network), or
 *        scripthash:<64 hex> (Electrum script hash), or pushdata:<64 hex>
 *        (sha256 of the pushed bytes, as in the pushdata table).
 *   default: text, one row per line (utxos: txid vout value height;
 *            history: txid height pos direction; height "mempool" when
 *            unconfirmed), every page in turn (1000 rows per query, so a key
 *            with millions of rows streams in bounded memory);
 *   --json:  one JSON object per line ({"txid","vout","value","height"},
 *            height null in the mempool);
 *   --limit N: one page of N rows (1..10000); when it is full, the cursor
 *            of the next page goes to stderr as "next: C" (--after C);
 *   --script (utxos): with the locking script (hex).
 * Exit: 0; 1 (database / store failure); 2 (bad key, cursor or option).
 *
 * The queries are src/query/cd_wallet.c (shared with the HTTP API).
 */
#include "cd_config.h"
#include "cd_pg.h"
#include "cd_util.h"
#include "cd_wallet.h"
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cd_cli_utxos(int argc, char **argv);
int cd_cli_balance(int argc, char **argv);
int cd_cli_history(int argc, char **argv);

typedef struct w_args {
    const char *key;
    int json, script;
    uint32_t limit; /* 0: every page */
    const char *after;
    cd_config cfg;
} w_args;

/* Returns 0 ok, 2 usage (printed), 3 --help (printed, exit 0). */
static int parse(const char *cmd, int argc, char **argv, w_args *a)
{
    memset(a, 0, sizeof(*a));
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    if (!rest)
        return 2;
    int n = 0, bad = 0;
    rest[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--json")) {
            a->json = 1;
        } else if (!strcmp(cmd, "utxos") && !strcmp(s, "--script")) {
            a->script = 1;
        } else if (strcmp(cmd, "balance") && !strcmp(s, "--limit") && i + 1 < argc) {
            char *end;
            unsigned long v = strtoul(argv[++i], &end, 10);
            bad |= *end || v < 1 || v > CD_WALLET_MAX_LIMIT;
            a->limit = (uint32_t)v;
        } else if (strcmp(cmd, "balance") && !strcmp(s, "--after") && i + 1 < argc) {
            a->after = argv[++i];
        } else if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            printf("usage: conduit-cli %s <address|scripthash:HEX|pushdata:HEX> [--json]%s "
                   "[--datadir DIR] [--pg-conninfo S] [--regtest ...]\n",
                   cmd, strcmp(cmd, "balance") ? " [--limit N] [--after CURSOR]" : "");
            free(rest);
            return 3;
        } else if (s[0] != '-' && !a->key) {
            a->key = s;
        } else {
            rest[n++] = argv[i];
            if (i + 1 < argc && s[0] == '-' && argv[i + 1][0] != '-' && !strchr(s, '=') &&
                strcmp(s, "--regtest") && strcmp(s, "--testnet") && strcmp(s, "--stn") &&
                strcmp(s, "--mainnet"))
                rest[n++] = argv[++i];
        }
    }
    if (bad || !a->key) {
        fprintf(stderr,
                "usage: conduit-cli %s <address|scripthash:HEX|pushdata:HEX> [--json] "
                "[--limit 1..%d] [--after CURSOR]\n",
                cmd, CD_WALLET_MAX_LIMIT);
        free(rest);
        return 2;
    }
    int rc = cd_cli_parse_config(cmd, &a->cfg, n, rest);
    free(rest);
    return rc;
}

static void print_row(const char *cmd, const w_args *a, json_t *row)
{
    if (a->json) {
        char *s = json_dumps(row, JSON_COMPACT);
        if (s)
            printf("%s\n", s);
        free(s);
        return;
    }
    json_t *h = json_object_get(row, "height");
    char height[24];
    if (json_is_integer(h))
        snprintf(height, sizeof(height), "%" JSON_INTEGER_FORMAT, json_integer_value(h));
    else
        snprintf(height, sizeof(height), "mempool");
    const char *txid = json_string_value(json_object_get(row, "txid"));
    if (!strcmp(cmd, "utxos")) {
        printf("%s %" JSON_INTEGER_FORMAT " %" JSON_INTEGER_FORMAT " %s", txid,
               json_integer_value(json_object_get(row, "vout")),
               json_integer_value(json_object_get(row, "value")), height);
        json_t *sc = json_object_get(row, "script");
        if (sc)
            printf(" %s", json_is_string(sc) ? json_string_value(sc) : "-");
        printf("\n");
    } else {
        printf("%s %s %" JSON_INTEGER_FORMAT " %s\n", txid, height,
               json_integer_value(json_object_get(row, "pos")),
               json_string_value(json_object_get(row, "direction")));
    }
}

static int run(const char *cmd, int argc, char **argv)
{
    w_args a;
    int rc = parse(cmd, argc, argv, &a);
    if (rc)
        return rc == 3 ? 0 : rc;
    char err[512];
    cd_wallet_key k;
    if (cd_wallet_key_parse(NULL, a.key, a.cfg.net, &k, err, sizeof(err)) != 0) {
        fprintf(stderr, "conduit-cli %s: %s\n", cmd, err);
        cd_config_free(&a.cfg);
        return 2;
    }
    cd_pg *pg = cd_pg_new(&a.cfg, NULL);
    cd_pg_set_retry(pg, 1, 100, NULL);
    cd_lookup *lk = cd_lookup_new(a.cfg.datadir, a.cfg.net, 0);
    if (cd_pg_connect(pg) != CD_PG_OK) {
        fprintf(stderr, "conduit-cli %s: cannot connect to PostgreSQL\n", cmd);
        rc = 1;
        goto out;
    }
    PGconn *conn = cd_pg_conn(pg);
    cd_lookup_set_pg(lk, conn);
    if (!strcmp(cmd, "balance")) {
        json_t *b = NULL;
        int w = cd_wallet_balance(conn, &k, &b, err, sizeof(err));
        if (w) {
            fprintf(stderr, "conduit-cli %s: %s\n", cmd, err);
            rc = w == CD_LOOKUP_EINPUT ? 2 : 1;
            goto out;
        }
        if (a.json) {
            char *s = json_dumps(b, JSON_COMPACT);
            printf("%s\n", s ? s : "");
            free(s);
        } else {
            printf("confirmed %" JSON_INTEGER_FORMAT "\nunconfirmed %" JSON_INTEGER_FORMAT
                   "\nutxos %" JSON_INTEGER_FORMAT "\n",
                   json_integer_value(json_object_get(b, "confirmed")),
                   json_integer_value(json_object_get(b, "unconfirmed")),
                   json_integer_value(json_object_get(b, "utxos")));
        }
        json_decref(b);
        goto out;
    }
    /* pages: one (--limit) or all, CD_WALLET_DEFAULT_LIMIT rows each */
    char cur[64] = "", next[64];
    if (a.after)
        snprintf(cur, sizeof(cur), "%s", a.after);
    for (;;) {
        json_t *rows = NULL;
        uint32_t lim = a.limit ? a.limit : CD_WALLET_DEFAULT_LIMIT;
        int w = !strcmp(cmd, "utxos") ? cd_wallet_utxos(conn, lk, &k, lim, cur[0] ? cur : NULL,
                                                        a.script, &rows, next, err, sizeof(err))
                                      : cd_wallet_history(conn, &k, lim, cur[0] ? cur : NULL, &rows,
                                                          next, err, sizeof(err));
        if (w) {
            fprintf(stderr, "conduit-cli %s: %s\n", cmd, err);
            rc = w == CD_LOOKUP_EINPUT ? 2 : 1;
            goto out;
        }
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) print_row(cmd, &a, row);
        json_decref(rows);
        if (!next[0])
            break;
        if (a.limit) {
            fprintf(stderr, "next: %s\n", next);
            break;
        }
        snprintf(cur, sizeof(cur), "%s", next);
    }
out:
    cd_lookup_free(lk);
    cd_pg_free(pg);
    cd_config_free(&a.cfg);
    return rc;
}

int cd_cli_utxos(int argc, char **argv)
{
    return run("utxos", argc, argv);
}

int cd_cli_balance(int argc, char **argv)
{
    return run("balance", argc, argv);
}

int cd_cli_history(int argc, char **argv)
{
    return run("history", argc, argv);
}
