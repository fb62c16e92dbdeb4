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
 *       default: where the tx is (block, height, index, offset, size);
 *       --hex:   the raw transaction as one hex line (checked: its sha256d
 *                is the txid)
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
 * PostgreSQL, which hold the same leaves.
 */
#include "bitcoin/btc_merkle.h"
#include "common/cd_hash.h"
#include "common/cd_util.h"
#include "daemon/cd_config.h"
#include "daemon/cli.h"
#include "storage/cd_blockstore.h"
#include "storage/cd_pg.h"

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

typedef struct tx_loc {
    uint8_t block_hash[32];
    uint8_t header[80];
    int32_t height;
    uint64_t pos, offset, size, tx_count;
    int64_t block_id;
} tx_loc;

/* Connects (one attempt: a CLI fails fast) and finds the tx on the best
 * chain. Returns 0, 1 (error printed). */
static int locate(const char *cmd, pg_args *a, cd_pg **pg_out, tx_loc *loc)
{
    cd_pg *pg = cd_pg_new(a->cfg.pg_conninfo);
    cd_pg_set_retry(pg, 1, 100, NULL);
    *pg_out = pg;
    if (cd_pg_connect(pg) != CD_PG_OK) {
        fprintf(stderr, "conduit-cli %s: cannot connect to PostgreSQL\n", cmd);
        return 1;
    }
    const char *vals[1] = {(const char *)a->txid};
    int lens[1] = {32}, fmts[1] = {1};
    PGresult *r = PQexecParams(cd_pg_conn(pg),
                               "SELECT t.block_hash, b.header, t.height, t.tx_pos, t.tx_offset, "
                               "t.tx_size, b.tx_count, t.block_id FROM best_transactions t "
                               "JOIN blocks b ON b.block_id = t.block_id WHERE t.tx_hash = $1",
                               1, NULL, vals, lens, fmts, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "conduit-cli %s: query failed: %s", cmd, PQerrorMessage(cd_pg_conn(pg)));
        PQclear(r);
        return 1;
    }
    if (PQntuples(r) == 0) {
        fprintf(stderr, "conduit-cli %s: transaction %s is not in the indexed best chain\n", cmd,
                a->txid_hex);
        PQclear(r);
        return 1;
    }
    /* binary results: bytea raw, int4/int8 big-endian */
    memcpy(loc->block_hash, PQgetvalue(r, 0, 0), 32);
    memcpy(loc->header, PQgetvalue(r, 0, 1), 80);
    const uint8_t *p = (const uint8_t *)PQgetvalue(r, 0, 2);
    loc->height =
        (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
    p = (const uint8_t *)PQgetvalue(r, 0, 3);
    loc->pos = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    uint64_t v8[3];
    int cols[3] = {4, 6, 7};
    for (int k = 0; k < 3; k++) {
        memcpy(&v8[k], PQgetvalue(r, 0, cols[k]), 8);
        v8[k] = __builtin_bswap64(v8[k]);
    }
    loc->offset = v8[0];
    loc->tx_count = v8[1];
    loc->block_id = (int64_t)v8[2];
    p = (const uint8_t *)PQgetvalue(r, 0, 5);
    loc->size = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    PQclear(r);
    return 0;
}

/* Reads the raw tx from <datadir>/blocks into a malloc'd buffer and checks
 * its hash. Returns NULL (error printed) on failure. */
static uint8_t *read_tx(const char *cmd, pg_args *a, const tx_loc *loc)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/blocks", a->cfg.datadir);
    cd_blockstore *bs = NULL;
    int rc = cd_blockstore_open(path, CD_BS_RDONLY, 0, &bs);
    if (rc) {
        fprintf(stderr, "conduit-cli %s: cannot open block store %s: %s\n", cmd, path,
                cd_blockstore_strerror(rc));
        return NULL;
    }
    cd_block_loc bl;
    uint8_t *raw = NULL;
    rc = cd_blockstore_get(bs, loc->block_hash, &bl);
    if (rc == 0) {
        raw = malloc(loc->size ? loc->size : 1);
        rc = raw ? cd_blockstore_read(bs, &bl, loc->offset, raw, loc->size) : ENOMEM;
    }
    cd_blockstore_close(bs);
    uint8_t h[32];
    if (rc == 0) {
        cd_sha256d(h, raw, loc->size);
        if (memcmp(h, a->txid, 32) != 0) {
            fprintf(stderr, "conduit-cli %s: bytes at the indexed location do not hash to %s\n",
                    cmd, a->txid_hex);
            free(raw);
            return NULL;
        }
        return raw;
    }
    char bh[65];
    cd_hex_encode_rev(bh, loc->block_hash, 32);
    fprintf(stderr, "conduit-cli %s: block %s: %s\n", cmd, bh,
            rc == CD_BS_NOTFOUND ? "not in the block store" : cd_blockstore_strerror(rc));
    free(raw);
    return NULL;
}

int cd_cli_tx(int argc, char **argv)
{
    pg_args a;
    int rc = parse("tx", " [--hex]", argc, argv, &a);
    if (rc)
        return rc == 3 ? 0 : rc;
    cd_pg *pg = NULL;
    tx_loc loc;
    rc = locate("tx", &a, &pg, &loc);
    if (rc == 0) {
        if (a.hex) {
            uint8_t *raw = read_tx("tx", &a, &loc);
            if (!raw) {
                rc = 1;
            } else {
                char *hx = malloc(2 * loc.size + 1);
                if (!hx) {
                    rc = 1;
                } else {
                    cd_hex_encode(hx, raw, loc.size);
                    printf("%s\n", hx);
                    free(hx);
                }
                free(raw);
            }
        } else {
            char bh[65];
            cd_hex_encode_rev(bh, loc.block_hash, 32);
            printf("txid %s\nblock %s\nheight %d\nindex %" PRIu64 "\noffset %" PRIu64
                   "\nsize %" PRIu64 "\n",
                   a.txid_hex, bh, (int)loc.height, loc.pos, loc.offset, loc.size);
        }
    }
    cd_pg_free(pg);
    cd_config_free(&a.cfg);
    return rc;
}

/* Branch from the stored tree in <datadir>/merkle, one read per level.
 * Returns 0 with *depth set, or -1 when the store lacks the block. */
static int branch_lmdb(pg_args *a, const tx_loc *loc, uint8_t *branch, size_t *depth)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/merkle", a->cfg.datadir);
    cd_blockstore *ms = NULL;
    if (cd_blockstore_open(path, CD_BS_RDONLY, 0, &ms) != 0)
        return -1;
    cd_merkle_meta mm;
    int rc = cd_blockstore_merkle_meta(ms, loc->block_hash, &mm);
    if (rc == 0 && mm.tx_count != loc->tx_count)
        rc = -1;
    uint64_t size = loc->tx_count, base = 0, i = loc->pos;
    size_t d = 0;
    while (rc == 0 && size > 1) {
        uint64_t sib = (i ^ 1) < size ? (i ^ 1) : i; /* odd level: own hash */
        rc = cd_blockstore_merkle_read(ms, loc->block_hash, base + sib, 1, branch + 32 * d);
        d++;
        base += size;
        size = (size + 1) / 2;
        i >>= 1;
    }
    cd_blockstore_close(ms);
    *depth = d;
    return rc == 0 ? 0 : -1;
}

/* Branch rebuilt from the block's txids in PostgreSQL. */
static int branch_pg(cd_pg *pg, const tx_loc *loc, uint8_t *branch, size_t *depth)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, loc->block_id);
    const char *vals[1] = {id};
    PGresult *r = PQexecParams(cd_pg_conn(pg),
                               "SELECT tx_hash FROM transactions WHERE block_id = $1 "
                               "ORDER BY tx_pos",
                               1, NULL, vals, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || (uint64_t)PQntuples(r) != loc->tx_count) {
        PQclear(r);
        return -1;
    }
    size_t n = (size_t)loc->tx_count;
    uint8_t *tree = malloc(btc_merkle_tree_count(n) * 32);
    if (!tree) {
        PQclear(r);
        return -1;
    }
    for (size_t k = 0; k < n; k++)
        memcpy(tree + 32 * k, PQgetvalue(r, (int)k, 0), 32);
    PQclear(r);
    int mutated = 0;
    int rc = btc_merkle_tree_build(tree, n, tree, &mutated);
    if (rc == 0)
        rc = btc_merkle_branch(tree, n, (size_t)loc->pos, branch, NULL, depth);
    free(tree);
    return rc == 0 ? 0 : -1;
}

int cd_cli_merkle_proof(int argc, char **argv)
{
    pg_args a;
    int rc =
        parse("merkle-proof", " [--target hash|header|merkleroot] [--include-tx]", argc, argv, &a);
    if (rc)
        return rc == 3 ? 0 : rc;
    cd_pg *pg = NULL;
    tx_loc loc;
    uint8_t branch[64 * 32];
    size_t depth = 0;
    rc = locate("merkle-proof", &a, &pg, &loc);
    if (rc == 0 && branch_lmdb(&a, &loc, branch, &depth) != 0 &&
        branch_pg(pg, &loc, branch, &depth) != 0) {
        fprintf(stderr, "conduit-cli merkle-proof: no merkle tree for the block of %s\n",
                a.txid_hex);
        rc = 1;
    }
    if (rc == 0 && !btc_merkle_verify(a.txid, (size_t)loc.pos, branch, depth, loc.header + 36)) {
        fprintf(stderr, "conduit-cli merkle-proof: the branch does not lead to the header's "
                        "merkle root\n");
        rc = 1;
    }
    uint8_t *raw = NULL;
    if (rc == 0 && a.include_tx && !(raw = read_tx("merkle-proof", &a, &loc)))
        rc = 1;
    if (rc == 0) {
        char h[65];
        printf("{\"index\": %" PRIu64 ", \"txOrId\": \"", loc.pos);
        if (raw) {
            char *hx = cd_xmalloc(2 * loc.size + 1);
            cd_hex_encode(hx, raw, loc.size);
            fputs(hx, stdout);
            free(hx);
        } else {
            fputs(a.txid_hex, stdout);
        }
        if (!strcmp(a.target, "header")) {
            char hh[161];
            cd_hex_encode(hh, loc.header, 80);
            printf("\", \"target\": \"%s\", \"nodes\": [", hh);
        } else {
            cd_hex_encode_rev(h, !strcmp(a.target, "merkleroot") ? loc.header + 36 : loc.block_hash,
                              32);
            printf("\", \"target\": \"%s\", \"nodes\": [", h);
        }
        for (size_t d = 0; d < depth; d++) {
            cd_hex_encode_rev(h, branch + 32 * d, 32);
            printf("%s\"%s\"", d ? ", " : "", h);
        }
        printf("], \"targetType\": \"%s\"}\n", a.target);
    }
    free(raw);
    cd_pg_free(pg);
    cd_config_free(&a.cfg);
    return rc;
}
