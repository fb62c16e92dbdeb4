/*
 * cli_hooks.c - `conduit-cli webhook add|list|rm`: webhook registrations
 * (docs/WEBHOOKS.md) from the command line, straight in the daemon's
 * database (no HTTP API or API key needed: whoever can reach the database
 * as the daemon's writer can register anyway). The checks, the secret and
 * the SQL are the HTTP routes' own (cd_hook_register & co., src/api/
 * cd_http_hooks_reg.c), so both refuse the same things in the same words.
 *
 *   webhook add <url> [--key HEX]... [--outpoint TXID:VOUT]... [--kind K]...
 *   webhook list [--json]
 *   webhook rm <id>
 */
#include "cd_config.h"
#include "cd_http_hooks.h"
#include "cd_pg.h"
#include "cli.h"

#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cd_cli_webhook(int argc, char **argv);

#define USAGE                                                                                    \
    "usage: conduit-cli webhook add <url> [--key HEX]... [--outpoint TXID:VOUT]... "            \
    "[--kind tip|reorg|evict]...\n"                                                              \
    "       conduit-cli webhook list [--json]\n"                                                 \
    "       conduit-cli webhook rm <id>\n"                                                       \
    "  (and the daemon's --pg-conninfo / --conf / --datadir / --regtest ... to find the "        \
    "database)\n"

static int usage_err(void)
{
    fputs(USAGE, stderr);
    return 2;
}

/* "<txid>:<vout>" -> {"txid", "vout"}; a malformed one is passed through as
 * given, so cd_hook_check names it. */
static json_t *outpoint(const char *s)
{
    const char *c = strrchr(s, ':');
    char *end = NULL;
    long long v = c ? strtoll(c + 1, &end, 10) : -1;
    if (!c || !end || *end || c[1] == '\0')
        return json_pack("{s:s}", "txid", s);
    return json_pack("{s:s%, s:I}", "txid", s, (size_t)(c - s), "vout", (json_int_t)v);
}

static PGconn *connect_db(const cd_config *cfg)
{
    const cd_pg_session how = {10, "conduit-cli"};
    PGconn *c = cd_pg_open(cfg, &how);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "conduit-cli webhook: cannot connect to PostgreSQL: %s",
                c ? PQerrorMessage(c) : "out of memory\n");
        if (c)
            PQfinish(c);
        return NULL;
    }
    return c;
}

static void print_hook(const json_t *h)
{
    json_t *le = json_object_get(h, "last_error");
    printf("%" JSON_INTEGER_FORMAT " %s delivered=%" JSON_INTEGER_FORMAT
           " last_event=%s cursor=%" JSON_INTEGER_FORMAT " %s%s%s\n",
           json_integer_value(json_object_get(h, "id")),
           json_string_value(json_object_get(h, "url")),
           json_integer_value(json_object_get(h, "delivered")),
           json_is_integer(json_object_get(h, "last_delivered_event")) ? "yes" : "none",
           json_integer_value(json_object_get(h, "cursor")),
           json_is_true(json_object_get(h, "failing")) ? "FAILING" : "ok",
           json_is_string(le) ? " last_error=" : "", json_is_string(le) ? json_string_value(le) : "");
}

int cd_cli_webhook(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "add") && strcmp(sub, "list") && strcmp(sub, "rm"))
        return usage_err();
    json_t *keys = json_array(), *ops = json_array(), *kinds = json_array();
    const char *arg = NULL;
    int json = 0;
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    int n = 0, rc = 2;
    rest[n++] = argv[0];
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(sub, "add") && !strcmp(s, "--key") && i + 1 < argc)
            json_array_append_new(keys, json_string(argv[++i]));
        else if (!strcmp(sub, "add") && !strcmp(s, "--outpoint") && i + 1 < argc)
            json_array_append_new(ops, outpoint(argv[++i]));
        else if (!strcmp(sub, "add") && !strcmp(s, "--kind") && i + 1 < argc)
            json_array_append_new(kinds, json_string(argv[++i]));
        else if (!strcmp(sub, "list") && !strcmp(s, "--json"))
            json = 1;
        else if (s[0] != '-' && !arg && strcmp(sub, "list"))
            arg = s;
        else {
            rest[n++] = argv[i];
            if (i + 1 < argc && s[0] == '-' && argv[i + 1][0] != '-' && !strchr(s, '=') &&
                strcmp(s, "--regtest") && strcmp(s, "--testnet") && strcmp(s, "--stn") &&
                strcmp(s, "--mainnet"))
                rest[n++] = argv[++i];
        }
    }
    cd_config cfg;
    PGconn *pg = NULL;
    char why[512];
    if (strcmp(sub, "list") && !arg) {
        usage_err();
        goto out;
    }
    int prc = cd_cli_parse_config("webhook", &cfg, n, rest);
    if (prc) {
        rc = prc == 3 ? 0 : prc;
        goto out;
    }
    pg = connect_db(&cfg);
    cd_config_free(&cfg);
    if (!pg) {
        rc = 1;
        goto out;
    }
    if (!strcmp(sub, "add")) {
        json_t *body = json_pack("{s:s, s:O, s:O, s:O}", "url", arg, "keys", keys, "outpoints",
                                 ops, "kinds", kinds);
        char secret[2 * CD_HOOK_SECRET_BYTES + 1];
        int64_t id;
        int r = body ? cd_hook_register(pg, body, &id, secret, why, sizeof(why)) : CD_HOOK_EDB;
        json_decref(body);
        if (r != 0) {
            fprintf(stderr, "conduit-cli webhook add: %s\n", why);
            rc = r == CD_HOOK_EINPUT || r == CD_HOOK_EFULL ? 2 : 1;
            goto out;
        }
        printf("id %" PRId64 "\nsecret %s\n", id, secret);
        rc = 0;
    } else if (!strcmp(sub, "rm")) {
        char *end;
        long long id = strtoll(arg, &end, 10);
        if (*end || id <= 0) {
            fprintf(stderr, "conduit-cli webhook rm: '%s' is not a webhook id\n", arg);
            goto out;
        }
        int r = cd_hook_delete(pg, id, why, sizeof(why));
        if (r != 0) {
            fprintf(stderr, "conduit-cli webhook rm: %s\n", why);
            rc = 1;
            goto out;
        }
        printf("deleted %lld\n", id);
        rc = 0;
    } else {
        json_t *all;
        if (cd_hook_status(pg, 0, &all, why, sizeof(why)) != 0) {
            fprintf(stderr, "conduit-cli webhook list: %s\n", why);
            rc = 1;
            goto out;
        }
        size_t i;
        json_t *h;
        json_array_foreach(all, i, h) {
            if (json) {
                char *t = json_dumps(h, JSON_COMPACT);
                if (t)
                    printf("%s\n", t);
                free(t);
            } else {
                print_hook(h);
            }
        }
        json_decref(all);
        rc = 0;
    }
out:
    if (pg)
        PQfinish(pg);
    json_decref(keys);
    json_decref(ops);
    json_decref(kinds);
    free(rest);
    return rc;
}
