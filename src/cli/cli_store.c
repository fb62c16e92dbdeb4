/*
 * cli_store.c - conduit-cli block / tx-offsets: look inside the LMDB block
 * store (<datadir>/blocks, <datadir>/merkle).
 *
 * Why it exists: operators and tests need to see exactly what the daemon
 * stored. The stores are opened MDB_RDONLY, so this is safe while conduitd
 * runs (LMDB readers never block the writer). Only COMPLETE blocks are
 * visible; a half-written block reads as "not found".
 *
 * A height means the block of the best chain (<datadir>/headers, read-only)
 * at that height, or, without a header tree, the last block stored with
 * that height. Resolving and reading are src/query/cd_lookup.c (shared
 * with the HTTP API, so both mean the same block).
 *
 *   conduit-cli block <hash|height> [--hex | --out FILE] [--datadir D ...]
 *       default: a summary (hash, height, size, txs, merkle tree state)
 *       --hex:   the raw block as one hex line
 *       --out:   the raw block bytes into FILE
 *   conduit-cli tx-offsets <hash|height> [--datadir D ...]
 *       one decimal byte offset per transaction, block order
 *   conduit-cli verify [--full] [--datadir D ...]          (issue 11, F7)
 *       walks every record of <datadir>/blocks and <datadir>/merkle, checks
 *       each stored block's location against its header and its verified
 *       merkle tree's root; --full also re-hashes every block's bytes
 *       (cd_blockstore_verify). Each bad block is printed ("BAD <hash>
 *       height <h>: <why>"); exit 0 clean, 1 damage found, 2 usage. A fault
 *       in a damaged map ends in cd_store_guard's line and exit 2.
 */
#include "cd_hash.h"
#include "cd_util.h"
#include "cd_config.h"
#include "cli.h"
#include "cd_lookup.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cd_cli_block(int argc, char **argv);
int cd_cli_tx_offsets(int argc, char **argv);
int cd_cli_verify(int argc, char **argv);

typedef struct store_args {
    const char *id;
    int hex;
    const char *out;
    cd_config cfg;
} store_args;

/* Returns 0 ok, 2 usage (message printed), or 3 for --help (printed). */
static int parse(const char *cmd, int argc, char **argv, int allow_out, store_args *a)
{
    memset(a, 0, sizeof(*a));
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    if (!rest)
        return 2;
    int n = 0;
    rest[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (allow_out && strcmp(argv[i], "--hex") == 0) {
            a->hex = 1;
        } else if (allow_out && strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            a->out = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: conduit-cli %s <hash|height>%s [--datadir DIR | --regtest ...]\n", cmd,
                   allow_out ? " [--hex | --out FILE]" : "");
            free(rest);
            return 3;
        } else if (argv[i][0] != '-' && !a->id) {
            a->id = argv[i];
        } else {
            rest[n++] = argv[i];
            /* options with a value: pass the value along */
            if (i + 1 < argc && argv[i][0] == '-' && argv[i + 1][0] != '-' &&
                strchr(argv[i], '=') == NULL && strcmp(argv[i], "--regtest") != 0 &&
                strcmp(argv[i], "--testnet") != 0 && strcmp(argv[i], "--stn") != 0)
                rest[n++] = argv[++i];
        }
    }
    if (!a->id || (a->hex && a->out)) {
        fprintf(stderr, "usage: conduit-cli %s <hash|height>%s [--datadir DIR]\n", cmd,
                allow_out ? " [--hex | --out FILE]" : "");
        free(rest);
        return 2;
    }
    int rc = cd_cli_parse_config(cmd, &a->cfg, n, rest);
    free(rest);
    return rc;
}

/* Opens the block store and resolves the id (cd_lookup: the header tree's
 * best chain decides which block a height means). Returns 0 or an exit
 * code. */
static int lookup(const char *cmd, store_args *a, cd_lookup **lk_out, uint8_t hash[32],
                  cd_block_loc *loc)
{
    cd_lookup *lk = cd_lookup_new(a->cfg.datadir, a->cfg.net, CD_LOOKUP_PROBE_NETS);
    *lk_out = lk;
    if (cd_lookup_open_blocks(lk) != CD_LOOKUP_OK) {
        fprintf(stderr, "conduit-cli %s: %s\n", cmd, cd_lookup_error(lk));
        return 1;
    }
    uint32_t height = 0;
    int kind = cd_lookup_block_id(a->id, hash, &height);
    if (kind < 0) {
        if (strlen(a->id) == 64)
            fprintf(stderr, "conduit-cli %s: bad block hash '%s'\n", cmd, a->id);
        else
            fprintf(stderr, "conduit-cli %s: '%s' is neither a block hash nor a height\n", cmd,
                    a->id);
        return 2;
    }
    if (kind == 0 && cd_lookup_block_hash_at(lk, height, hash) != CD_LOOKUP_OK) {
        fprintf(stderr, "conduit-cli %s: no block stored at height %u\n", cmd, height);
        return 1;
    }
    if (cd_lookup_block_get(lk, hash, loc) != CD_LOOKUP_OK) {
        fprintf(stderr, "conduit-cli %s: %s\n", cmd, cd_lookup_error(lk));
        return 1;
    }
    return 0;
}

int cd_cli_block(int argc, char **argv)
{
    store_args a;
    int rc = parse("block", argc, argv, 1, &a);
    if (rc)
        return rc == 3 ? 0 : rc;
    cd_lookup *lk = NULL;
    uint8_t hash[32];
    cd_block_loc loc;
    rc = lookup("block", &a, &lk, hash, &loc);
    if (rc)
        goto out;
    char hex[65];
    cd_hex_encode_rev(hex, hash, 32);
    if (!a.hex && !a.out) {
        int have_tree = cd_lookup_block_has_tree(lk, hash);
        printf("hash %s\n", hex);
        if (loc.height != UINT32_MAX)
            printf("height %u\n", loc.height);
        printf("size %" PRIu64 "\ntx_count %" PRIu64 "\nchunks %" PRIu64 "\nmerkle_tree %s\n",
               loc.size, loc.tx_count, loc.chunk_count, have_tree ? "verified" : "missing");
        goto out;
    }
    /* a bit flipped on disk is refused, not printed (issue 11, F7) */
    if (a.cfg.serve_block_check && cd_lookup_block_check(lk, hash, &loc) != CD_LOOKUP_OK) {
        fprintf(stderr, "conduit-cli block: %s\n", cd_lookup_error(lk));
        rc = 1;
        goto out;
    }
    FILE *f = stdout;
    if (a.out) {
        f = fopen(a.out, "wb");
        if (!f) {
            fprintf(stderr, "conduit-cli block: %s: %s\n", a.out, strerror(errno));
            rc = 1;
            goto out;
        }
    }
    size_t bufsz = 4u << 20;
    uint8_t *buf = cd_xmalloc(bufsz);
    char *hx = a.hex ? cd_xmalloc(2 * bufsz + 1) : NULL;
    for (uint64_t off = 0; off < loc.size && rc == 0;) {
        size_t n = (size_t)CD_MIN((uint64_t)bufsz, loc.size - off);
        if (cd_lookup_block_read(lk, &loc, off, buf, n) != CD_LOOKUP_OK) {
            fprintf(stderr, "conduit-cli block: %s: %s\n", hex, cd_lookup_error(lk));
            rc = 1;
            break;
        }
        if (a.hex) {
            cd_hex_encode(hx, buf, n);
            fputs(hx, f);
        } else if (fwrite(buf, 1, n, f) != n) {
            fprintf(stderr, "conduit-cli block: write: %s\n", strerror(errno));
            rc = 1;
        }
        off += n;
    }
    if (a.hex)
        fputc('\n', f);
    free(buf);
    free(hx);
    if (f != stdout && fclose(f) != 0 && rc == 0) {
        fprintf(stderr, "conduit-cli block: %s: %s\n", a.out, strerror(errno));
        rc = 1;
    }
out:
    cd_lookup_free(lk);
    cd_config_free(&a.cfg);
    return rc;
}

int cd_cli_tx_offsets(int argc, char **argv)
{
    store_args a;
    int rc = parse("tx-offsets", argc, argv, 0, &a);
    if (rc)
        return rc == 3 ? 0 : rc;
    cd_lookup *lk = NULL;
    uint8_t hash[32];
    cd_block_loc loc;
    rc = lookup("tx-offsets", &a, &lk, hash, &loc);
    if (rc == 0) {
        uint64_t batch = 65536;
        uint64_t *offs = cd_xmalloc(batch * sizeof(uint64_t));
        for (uint64_t i = 0; i < loc.tx_count && rc == 0; i += batch) {
            uint64_t n = CD_MIN(batch, loc.tx_count - i);
            if (cd_lookup_block_offsets(lk, &loc, i, n, offs) != CD_LOOKUP_OK) {
                fprintf(stderr, "conduit-cli tx-offsets: %s\n", cd_lookup_error(lk));
                rc = 1;
                break;
            }
            for (uint64_t k = 0; k < n; k++)
                printf("%" PRIu64 "\n", offs[k]);
        }
        free(offs);
    }
    cd_lookup_free(lk);
    cd_config_free(&a.cfg);
    return rc;
}

/* ---- verify ---- */

typedef struct verify_ctx {
    cd_blockstore *blocks, *merkle;
    int full;
    uint64_t checked, bad;
} verify_ctx;

static void verify_bad(verify_ctx *v, const uint8_t hash[32], const cd_block_loc *loc,
                       const char *why)
{
    char hex[65];
    cd_hex_encode_rev(hex, hash, 32);
    if (loc->height != UINT32_MAX)
        printf("BAD %s height %u: %s\n", hex, loc->height, why);
    else
        printf("BAD %s: %s\n", hex, why);
    v->bad++;
}

static int verify_block(const uint8_t hash[32], const cd_block_loc *loc, void *arg)
{
    verify_ctx *v = arg;
    v->checked++;
    uint8_t h[32];
    cd_sha256d(h, loc->header, 80);
    if (memcmp(h, hash, 32) != 0) {
        verify_bad(v, hash, loc, "its location record holds another block's header");
        return 0;
    }
    if (v->merkle) {
        cd_merkle_meta mm;
        int rc = cd_blockstore_merkle_meta(v->merkle, hash, &mm);
        if (rc == CD_BS_NOTFOUND)
            verify_bad(v, hash, loc, "no verified merkle tree (the merkle store lost it)");
        else if (rc != 0)
            verify_bad(v, hash, loc, cd_strerror(rc));
        else if (memcmp(mm.root, loc->header + 36, 32) != 0 || mm.tx_count != loc->tx_count)
            verify_bad(v, hash, loc, "its stored merkle tree does not match the header");
    }
    if (v->full) {
        char why[256];
        int rc = cd_blockstore_verify(v->blocks, hash, loc, why, sizeof(why));
        if (rc)
            verify_bad(v, hash, loc, rc == CD_BS_ECORRUPT ? why : cd_strerror(rc));
    }
    return 0;
}

int cd_cli_verify(int argc, char **argv)
{
    int full = 0;
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    if (!rest)
        return 2;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--full") == 0) {
            full = 1;
        } else if (i > 0 && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
            printf("usage: conduit-cli verify [--full] [--datadir DIR | --regtest ...]\n");
            free(rest);
            return 0;
        } else {
            rest[n++] = argv[i];
        }
    }
    cd_config cfg;
    int rc = cd_cli_parse_config("verify", &cfg, n, rest);
    free(rest);
    if (rc)
        return rc;
    char p1[4096], p2[4096];
    snprintf(p1, sizeof(p1), "%s/blocks", cfg.datadir);
    snprintf(p2, sizeof(p2), "%s/merkle", cfg.datadir);
    verify_ctx v = {.full = full};
    int damaged = 0;
    int orc = cd_blockstore_open(p1, CD_BS_RDONLY, 0, &v.blocks);
    if (orc) {
        fprintf(stderr, "conduit-cli verify: %s: %s\n", p1, cd_strerror(orc));
        cd_config_free(&cfg);
        return 1;
    }
    orc = cd_blockstore_open(p2, CD_BS_RDONLY, 0, &v.merkle);
    if (orc) {
        fprintf(stderr, "conduit-cli verify: %s: %s\n", p2, cd_strerror(orc));
        v.merkle = NULL;
        damaged = 1;
    }
    /* every record of both stores (every page on the way is read) */
    if (cd_blockstore_check(v.blocks, UINT32_MAX) != 0) {
        printf("BAD store %s/data.mdb (see the message above)\n", p1);
        damaged = 1;
    }
    if (v.merkle && cd_blockstore_check(v.merkle, UINT32_MAX) != 0) {
        printf("BAD store %s/data.mdb (see the message above)\n", p2);
        damaged = 1;
    }
    int frc = cd_blockstore_foreach(v.blocks, verify_block, &v);
    if (frc) {
        printf("BAD store %s/data.mdb: listing the blocks: %s\n", p1, cd_strerror(frc));
        damaged = 1;
    }
    printf("%" PRIu64 " blocks checked%s, %" PRIu64 " bad\n", v.checked, full ? " (re-hashed)" : "",
           v.bad);
    cd_blockstore_close(v.blocks);
    cd_blockstore_close(v.merkle);
    cd_config_free(&cfg);
    return damaged || v.bad ? 1 : 0;
}
