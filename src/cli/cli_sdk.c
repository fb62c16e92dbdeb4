/*
 * cli_sdk.c - conduit-cli in the formats the BSV SDKs read (issue 15):
 *
 *   conduit-cli merkle-proof <txid> [<txid>...] --format tsc|bump|bump-json
 *       tsc (default): the TSC proof of cli_pg.c (one txid; its options);
 *       bump: BRC-74 BUMP as one hex line; bump-json: its JSON form. With
 *       several txids (all of one block) one compound BUMP.
 *   conduit-cli beef <txid> [--version 1|2|atomic] [--out FILE]
 *       BEEF (BRC-62 / BRC-96 / BRC-95) as one hex line, or its bytes into
 *       FILE.
 *
 * The proofs and BEEFs come from src/query (cd_bump, cd_beef), the same
 * code the HTTP API runs (cd_http_sdk.c): the two cannot disagree.
 */
#include "cd_beef.h"
#include "cd_bump.h"
#include "cd_config.h"
#include "cd_lookup.h"
#include "cd_pg.h"
#include "cd_util.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cd_cli_merkle_proof(int argc, char **argv);     /* cli_pg.c: the TSC form */
int cd_cli_merkle_proof_fmt(int argc, char **argv); /* the table's entry */
int cd_cli_beef(int argc, char **argv);

typedef struct sdk_args {
    uint8_t (*txids)[32];
    size_t n;
    const char *format;
    const char *version;
    const char *out;
    cd_config cfg;
} sdk_args;

static int is_txid(const char *s)
{
    uint8_t t[32];
    return strlen(s) == 64 && cd_hex_decode_rev(t, 32, s) == 0;
}

/* Options not ours go to cd_cli_parse_config. Returns 0, 2 (usage), 3. */
static int parse(const char *cmd, const char *usage, int argc, char **argv, sdk_args *a)
{
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    a->txids = calloc((size_t)argc + 1, 32);
    if (!rest || !a->txids)
        abort();
    int n = 0, bad = 0;
    rest[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--format") && i + 1 < argc) {
            a->format = argv[++i];
        } else if (!strcmp(s, "--version") && i + 1 < argc && !strcmp(cmd, "beef")) {
            a->version = argv[++i];
        } else if (!strcmp(s, "--out") && i + 1 < argc && !strcmp(cmd, "beef")) {
            a->out = argv[++i];
        } else if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            printf("usage: conduit-cli %s %s [--datadir DIR] [--pg-conninfo S] [--regtest ...]\n",
                   cmd, usage);
            free(rest);
            return 3;
        } else if (s[0] != '-') {
            if (!is_txid(s) || cd_hex_decode_rev(a->txids[a->n++], 32, s) != 0)
                bad = 1;
        } else {
            rest[n++] = argv[i];
            if (i + 1 < argc && argv[i + 1][0] != '-' && !strchr(s, '=') &&
                strcmp(s, "--regtest") && strcmp(s, "--testnet") && strcmp(s, "--stn") &&
                strcmp(s, "--mainnet") && !is_txid(argv[i + 1]))
                rest[n++] = argv[++i];
        }
    }
    if (bad || a->n == 0 || (!strcmp(cmd, "beef") && a->n != 1)) {
        fprintf(stderr, "usage: conduit-cli %s %s\n", cmd, usage);
        free(rest);
        return 2;
    }
    int rc = cd_cli_parse_config(cmd, &a->cfg, n, rest);
    free(rest);
    return rc;
}

/* One attempt at PostgreSQL (a CLI fails fast). Returns 0 or 1 (printed). */
static int connect_pg(const char *cmd, sdk_args *a, cd_pg **pg, cd_lookup **lk)
{
    *pg = cd_pg_new(&a->cfg, NULL);
    cd_pg_set_retry(*pg, 1, 100, NULL);
    *lk = cd_lookup_new(a->cfg.datadir, a->cfg.net, 0);
    if (cd_pg_connect(*pg) != CD_PG_OK) {
        fprintf(stderr, "conduit-cli %s: cannot connect to PostgreSQL\n", cmd);
        return 1;
    }
    cd_lookup_set_pg(*lk, cd_pg_conn(*pg));
    return 0;
}

static void print_hex(const uint8_t *p, size_t n)
{
    char *hx = malloc(2 * n + 1);
    if (!hx)
        abort();
    cd_hex_encode(hx, p, n);
    printf("%s\n", hx);
    free(hx);
}

int cd_cli_merkle_proof_fmt(int argc, char **argv)
{
    /* --format tsc (or none): the TSC proof, with its own options */
    const char *fmt = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--format"))
            fmt = argv[i + 1];
    if (!fmt || !strcmp(fmt, "tsc")) {
        char **v = calloc((size_t)argc + 1, sizeof(char *));
        if (!v)
            abort();
        int n = 0;
        for (int i = 0; i < argc; i++) {
            if (!strcmp(argv[i], "--format") && i + 1 < argc) {
                i++;
                continue;
            }
            v[n++] = argv[i];
        }
        int rc = cd_cli_merkle_proof(n, v);
        free(v);
        return rc;
    }
    const char *usage = "<txid> [<txid>...] --format tsc|bump|bump-json";
    if (strcmp(fmt, "bump") && strcmp(fmt, "bump-json")) {
        fprintf(stderr,
                "conduit-cli merkle-proof: bad --format '%s': expected tsc, bump or "
                "bump-json\n",
                fmt);
        return 2;
    }
    sdk_args a;
    memset(&a, 0, sizeof(a));
    int rc = parse("merkle-proof", usage, argc, argv, &a);
    if (rc) {
        free(a.txids);
        return rc == 3 ? 0 : rc;
    }
    cd_pg *pg = NULL;
    cd_lookup *lk = NULL;
    rc = connect_pg("merkle-proof", &a, &pg, &lk);
    if (rc == 0) {
        cd_bump b;
        char err[512];
        if (cd_bump_lookup(lk, (const uint8_t(*)[32])a.txids, a.n, &b, err, sizeof(err)) != 0) {
            fprintf(stderr, "conduit-cli merkle-proof: %s\n", err);
            rc = 1;
        } else if (!strcmp(fmt, "bump")) {
            size_t len;
            uint8_t *bin = cd_bump_binary(&b, &len);
            print_hex(bin, len);
            free(bin);
        } else {
            json_t *j = cd_bump_json(&b);
            char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
            if (s)
                printf("%s\n", s);
            else
                rc = 1;
            free(s);
            json_decref(j);
        }
        if (rc == 0)
            cd_bump_free(&b);
    }
    cd_lookup_free(lk);
    cd_pg_free(pg);
    cd_config_free(&a.cfg);
    free(a.txids);
    return rc;
}

int cd_cli_beef(int argc, char **argv)
{
    sdk_args a;
    memset(&a, 0, sizeof(a));
    const char *usage = "<txid> [--version 1|2|atomic] [--out FILE]";
    int rc = parse("beef", usage, argc, argv, &a);
    if (rc) {
        free(a.txids);
        return rc == 3 ? 0 : rc;
    }
    int version = !a.version || !strcmp(a.version, "1") ? CD_BEEF_V1
                  : !strcmp(a.version, "2")             ? CD_BEEF_V2
                  : !strcmp(a.version, "atomic")        ? CD_BEEF_ATOMIC
                                                        : 0;
    if (!version) {
        fprintf(stderr, "conduit-cli beef: bad --version '%s': expected 1, 2 or atomic\n",
                a.version);
        cd_config_free(&a.cfg);
        free(a.txids);
        return 2;
    }
    cd_pg *pg = NULL;
    cd_lookup *lk = NULL;
    rc = connect_pg("beef", &a, &pg, &lk);
    if (rc == 0) {
        uint8_t *beef = NULL;
        size_t len = 0;
        char err[512];
        if (cd_beef_build(lk, a.txids[0], version, &beef, &len, err, sizeof(err)) != 0) {
            fprintf(stderr, "conduit-cli beef: %s\n", err);
            rc = 1;
        } else if (a.out) {
            FILE *f = fopen(a.out, "wb");
            if (!f || fwrite(beef, 1, len, f) != len || fclose(f) != 0) {
                fprintf(stderr, "conduit-cli beef: cannot write %s\n", a.out);
                rc = 1;
            }
        } else {
            print_hex(beef, len);
        }
        free(beef);
    }
    cd_lookup_free(lk);
    cd_pg_free(pg);
    cd_config_free(&a.cfg);
    free(a.txids);
    return rc;
}
