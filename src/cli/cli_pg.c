/*
 * cli_pg.c - conduit-cli tx / merkle-proof: raw transactions and TSC merkle
 * proofs for applications, located through the PostgreSQL index.
 *
 * Why it exists: applications need bytes and proofs, not just rows. The index
 * says where a transaction is (block, position, byte offset, size, on the best
 * chain only); the bytes and the merkle tree come from the daemon's LMDB
 * stores, opened read-only (safe while conduitd runs).
 *
 *   conduit-cli tx <txid> [--hex] [--datadir D] [--pg-conninfo S] ...
 *       default: where the tx is (block, height, index, offset, size), or
 *                "mempool yes" and its size for an unconfirmed tx;
 *       --hex:   the raw transaction as one hex line (checked: its sha256d
 *                is the txid), confirmed or in the mempool
 *   conduit-cli merkle-proof <txid> [--target hash|header|merkleroot]
 *                            [--include-tx] [...]
 *       TSC proof JSON as ConduitDB served it (reference/conduitdb.md §1):
 *       {"index","txOrId","target","nodes","targetType"}; nodes in display
 *       hex, leaf to root; an odd level's duplicated sibling is written as
 *       the actual hash (never "*"). The branch is verified against the
 *       header's merkle root before it is printed.
 *
 * The tree levels come from <datadir>/merkle (one read per level). When the
 * merkle store lacks the block, the tree is rebuilt from the block's txids in
 * PostgreSQL, which hold the same leaves. The lookups themselves live in
 * src/query/cd_lookup.c, shared with the HTTP API (cd_http_routes.c), so
 * both answer identically; this file is argument parsing and output.
 */
#include "cd_util.h"
#include "cd_config.h"
#include "cli.h"
#include "cd_lookup.h"
#include "cd_pg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cd_cli_tx(int argc, char **argv);
int cd_cli_merkle_proof(int argc, char **argv);

typedef struct pg_args {
    const char *txid_hex;
    uint8_t txid[32];
    int hex;
    int include_tx;
    const char *target; /* hash | header | merkleroot */
    cd_config cfg;
} pg_args;

/* Returns 0 ok, 2 usage (printed), 3 --help/--version (printed, exit 0). */
static int parse(const char *cmd, const char *extra_usage, int argc, char **argv, pg_args *a)
{
    memset(a, 0, sizeof(*a));
    a->target = "hash";
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    if (!rest)
        return 2;
    int n = 0, bad = 0;
    rest[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(cmd, "tx") && !strcmp(s, "--hex")) {
            a->hex = 1;
        } else if (!strcmp(cmd, "merkle-proof") && !strcmp(s, "--include-tx")) {
            a->include_tx = 1;
        } else if (!strcmp(cmd, "merkle-proof") && !strcmp(s, "--target") && i + 1 < argc) {
            a->target = argv[++i];
            bad |= strcmp(a->target, "hash") && strcmp(a->target, "header") &&
                   strcmp(a->target, "merkleroot");
        } else if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            printf("usage: conduit-cli %s <txid>%s [--datadir DIR] [--pg-conninfo S] "
                   "[--regtest ...]\n",
                   cmd, extra_usage);
            free(rest);
            return 3;
        } else if (s[0] != '-' && !a->txid_hex) {
            a->txid_hex = s;
        } else {
            rest[n++] = argv[i];
            if (i + 1 < argc && s[0] == '-' && argv[i + 1][0] != '-' && !strchr(s, '=') &&
                strcmp(s, "--regtest") && strcmp(s, "--testnet") && strcmp(s, "--stn") &&
                strcmp(s, "--mainnet"))
                rest[n++] = argv[++i];
        }
    }
    if (bad || !a->txid_hex || cd_hex_decode_rev(a->txid, 32, a->txid_hex) != 0) {
        fprintf(stderr, "usage: conduit-cli %s <txid (64 hex)>%s [--datadir DIR]\n", cmd,
                extra_usage);
        free(rest);
        return 2;
    }
    int rc = cd_cli_parse_config(cmd, &a->cfg, n, rest);
    free(rest);
    return rc;
}

/* Connects (one attempt: a CLI fails fast) and finds the tx on the best
 * chain or in the mempool tables (cd_lookup). merkle-proof looks in the
 * mempool too, to say why there is no proof. Returns 0, 1 (error printed). */
static int locate(const char *cmd, pg_args *a, cd_pg **pg_out, cd_lookup **lk_out, cd_lookup_tx *tx)
{
    cd_pg *pg = cd_pg_new(&a->cfg, NULL);
    cd_pg_set_retry(pg, 1, 100, NULL);
    *pg_out = pg;
    cd_lookup *lk = cd_lookup_new(a->cfg.datadir, a->cfg.net, 0);
    *lk_out = lk;
    if (cd_pg_connect(pg) != CD_PG_OK) {
        fprintf(stderr, "conduit-cli %s: cannot connect to PostgreSQL\n", cmd);
        return 1;
    }
    cd_lookup_set_pg(lk, cd_pg_conn(pg));
    int rc = cd_lookup_tx_find(lk, a->txid, 1, tx);
    if (rc == CD_LOOKUP_ENOTFOUND) {
        fprintf(stderr,
                "conduit-cli %s: transaction %s is not in the indexed best chain nor in the "
                "mempool\n",
                cmd, a->txid_hex);
        return 1;
    }
    if (rc != CD_LOOKUP_OK) {
        fprintf(stderr, "conduit-cli %s: %s\n", cmd, cd_lookup_error(lk));
        return 1;
    }
    return 0;
}

/* The raw tx (<datadir>/blocks, or mempool_tx.raw), hash-checked; NULL
 * (error printed). A mempool tx that left the mempool since it was found is
 * looked up once more (it is likely in a block now). */
static uint8_t *read_tx(const char *cmd, pg_args *a, cd_lookup *lk, cd_lookup_tx *tx)
{
    uint8_t *raw = NULL;
    int rc = cd_lookup_tx_read(lk, tx, &raw);
    if (rc == CD_LOOKUP_ENOTFOUND && tx->mempool) {
        rc = cd_lookup_tx_find(lk, a->txid, 1, tx);
        if (rc == CD_LOOKUP_OK)
            rc = cd_lookup_tx_read(lk, tx, &raw);
    }
    if (rc == CD_LOOKUP_ECORRUPT)
        fprintf(stderr, "conduit-cli %s: bytes at the indexed location do not hash to %s\n", cmd,
                a->txid_hex);
    else if (rc != CD_LOOKUP_OK)
        fprintf(stderr, "conduit-cli %s: %s\n", cmd, cd_lookup_error(lk));
    return raw;
}

int cd_cli_tx(int argc, char **argv)
{
    pg_args a;
    int rc = parse("tx", " [--hex]", argc, argv, &a);
    if (rc)
        return rc == 3 ? 0 : rc;
    cd_pg *pg = NULL;
    cd_lookup *lk = NULL;
    cd_lookup_tx tx;
    rc = locate("tx", &a, &pg, &lk, &tx);
    if (rc == 0) {
        if (a.hex) {
            uint8_t *raw = read_tx("tx", &a, lk, &tx);
            if (!raw) {
                rc = 1;
            } else {
                char *hx = malloc(2 * tx.size + 1);
                if (!hx) {
                    rc = 1;
                } else {
                    cd_hex_encode(hx, raw, tx.size);
                    printf("%s\n", hx);
                    free(hx);
                }
                free(raw);
            }
        } else if (tx.mempool) {
            printf("txid %s\nmempool yes\nsize %" PRIu64 "\n", a.txid_hex, tx.size);
        } else {
            char bh[65];
            cd_hex_encode_rev(bh, tx.block_hash, 32);
            printf("txid %s\nblock %s\nheight %d\nindex %" PRIu64 "\noffset %" PRIu64
                   "\nsize %" PRIu64 "\n",
                   a.txid_hex, bh, (int)tx.height, tx.pos, tx.offset, tx.size);
        }
    }
    cd_lookup_free(lk);
    cd_pg_free(pg);
    cd_config_free(&a.cfg);
    return rc;
}

int cd_cli_merkle_proof(int argc, char **argv)
{
    pg_args a;
    int rc =
        parse("merkle-proof", " [--target hash|header|merkleroot] [--include-tx]", argc, argv, &a);
    if (rc)
        return rc == 3 ? 0 : rc;
    cd_pg *pg = NULL;
    cd_lookup *lk = NULL;
    cd_lookup_tx tx;
    uint8_t branch[CD_LOOKUP_MAX_DEPTH * 32];
    size_t depth = 0;
    rc = locate("merkle-proof", &a, &pg, &lk, &tx);
    if (rc == 0) {
        int lrc = cd_lookup_tx_branch(lk, &tx, branch, &depth);
        if (lrc == CD_LOOKUP_ESTORE) {
            fprintf(stderr, "conduit-cli merkle-proof: no merkle tree for the block of %s\n",
                    a.txid_hex);
            rc = 1;
        } else if (lrc != CD_LOOKUP_OK) {
            fprintf(stderr, "conduit-cli merkle-proof: %s\n", cd_lookup_error(lk));
            rc = 1;
        }
    }
    uint8_t *raw = NULL;
    if (rc == 0 && a.include_tx && !(raw = read_tx("merkle-proof", &a, lk, &tx)))
        rc = 1;
    if (rc == 0) {
        char *json = cd_lookup_proof_json(&tx, branch, depth, a.target, raw);
        if (json) {
            fputs(json, stdout);
            free(json);
        } else { /* the target was checked by parse(): out of memory */
            fprintf(stderr, "conduit-cli merkle-proof: out of memory\n");
            rc = 1;
        }
    }
    free(raw);
    cd_lookup_free(lk);
    cd_pg_free(pg);
    cd_config_free(&a.cfg);
    return rc;
}
