/*
 * cd_beef.c - BEEF V1/V2/Atomic from the index (cd_beef.h). Layouts read in
 * BRC-62, BRC-95, BRC-96 and @bsv/sdk 2.1.0 src/transaction/Beef.ts
 * (summarised in tests/sdk/CONTRACT.md §2).
 */
#include "cd_beef.h"

#include "btc_tx.h"
#include "btc_varint.h"
#include "cd_bump.h"
#include "cd_hashset.h"
#include "cd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct beef_tx {
    uint8_t txid[32];
    uint8_t *raw;
    size_t size;
    int proven;             /* confirmed: carries a BUMP */
    uint8_t block_hash[32]; /* when proven */
    size_t bump;            /* index in the BUMP list */
} beef_tx;

typedef struct beef_ctx {
    cd_lookup *lk;
    beef_tx *tx; /* post-order: parents first */
    size_t n, cap;
    cd_hashset seen;
    char *err;
    size_t errlen;
} beef_ctx;

static int add(beef_ctx *c, const beef_tx *t)
{
    if (c->n == CD_BEEF_MAX_TXS) {
        snprintf(c->err, c->errlen, "the BEEF would hold more than %d transactions",
                 CD_BEEF_MAX_TXS);
        return CD_LOOKUP_EINPUT;
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->tx = realloc(c->tx, c->cap * sizeof(*c->tx));
        if (!c->tx)
            abort(); /* as cd_lookup: allocation failure aborts */
    }
    c->tx[c->n++] = *t;
    return 0;
}

/* Visits txid (spent by `child`, NULL for the subject): its ancestors
 * first, then itself. */
static int visit(beef_ctx *c, const uint8_t txid[32], const uint8_t *child, uint32_t in_idx,
                 unsigned depth)
{
    if (!cd_hashset_add(&c->seen, txid))
        return 0;
    char hx[65], ch[65];
    cd_hex_encode_rev(hx, txid, 32);
    if (depth > CD_BEEF_MAX_TXS) {
        snprintf(c->err, c->errlen, "unconfirmed ancestry deeper than %d transactions at %s",
                 CD_BEEF_MAX_TXS, hx);
        return CD_LOOKUP_EINPUT;
    }
    cd_lookup_tx lt;
    int rc = cd_lookup_tx_find(c->lk, txid, 1, &lt);
    uint8_t *raw = NULL;
    if (rc == CD_LOOKUP_OK) {
        rc = cd_lookup_tx_read(c->lk, &lt, &raw);
        if (rc == CD_LOOKUP_ENOTFOUND && lt.mempool) { /* confirmed meanwhile: once more */
            rc = cd_lookup_tx_find(c->lk, txid, 1, &lt);
            if (rc == CD_LOOKUP_OK)
                rc = cd_lookup_tx_read(c->lk, &lt, &raw);
        }
    }
    if (rc == CD_LOOKUP_ENOTFOUND) {
        if (child) {
            cd_hex_encode_rev(ch, child, 32);
            snprintf(c->err, c->errlen,
                     "ancestor %s (spent by input %u of %s) is neither in the indexed best "
                     "chain nor in the mempool",
                     hx, in_idx, ch);
        } else {
            snprintf(c->err, c->errlen,
                     "transaction %s is neither in the indexed best chain nor in the mempool", hx);
        }
        return rc;
    }
    if (rc != CD_LOOKUP_OK) {
        snprintf(c->err, c->errlen, "%s", cd_lookup_error(c->lk));
        return rc;
    }
    beef_tx t;
    memset(&t, 0, sizeof(t));
    memcpy(t.txid, txid, 32);
    t.raw = raw;
    t.size = (size_t)lt.size;
    if (!lt.mempool) {
        t.proven = 1;
        memcpy(t.block_hash, lt.block_hash, 32);
    } else {
        btc_tx tx;
        if (btc_tx_parse(&tx, raw, t.size) != 0 || tx.size != t.size) {
            snprintf(c->err, c->errlen, "stored bytes of %s do not parse as a transaction", hx);
            free(raw);
            return CD_LOOKUP_ECORRUPT;
        }
        btc_tx_iter it;
        btc_txin in;
        btc_tx_inputs(&tx, &it);
        uint32_t i = 0;
        while (btc_tx_next_input(&it, &in)) {
            if ((rc = visit(c, in.prev_txid, txid, i++, depth + 1)) != 0) {
                free(raw);
                return rc;
            }
        }
    }
    if ((rc = add(c, &t)) != 0)
        free(raw);
    return rc;
}

/* One compound BUMP per block of the proven transactions. */
static int make_bumps(beef_ctx *c, cd_bump **bumps, size_t *nb)
{
    *bumps = calloc(c->n ? c->n : 1, sizeof(**bumps));
    uint8_t(*ids)[32] = calloc(c->n ? c->n : 1, 32);
    if (!*bumps || !ids)
        abort();
    *nb = 0;
    int rc = 0;
    for (size_t i = 0; i < c->n && rc == 0; i++) {
        if (!c->tx[i].proven)
            continue;
        size_t j = 0;
        for (; j < i; j++)
            if (c->tx[j].proven && !memcmp(c->tx[j].block_hash, c->tx[i].block_hash, 32))
                break;
        if (j < i) { /* its block has its BUMP already */
            c->tx[i].bump = c->tx[j].bump;
            continue;
        }
        size_t k = 0;
        for (j = i; j < c->n; j++)
            if (c->tx[j].proven && !memcmp(c->tx[j].block_hash, c->tx[i].block_hash, 32))
                memcpy(ids[k++], c->tx[j].txid, 32);
        rc = cd_bump_lookup(c->lk, (const uint8_t(*)[32])ids, k, &(*bumps)[*nb], c->err, c->errlen);
        c->tx[i].bump = (*nb)++;
        if (rc != 0)
            (*nb)--;
    }
    free(ids);
    return rc;
}

int cd_beef_build(cd_lookup *lk, const uint8_t txid[32], int version, uint8_t **out, size_t *len,
                  char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    err[0] = '\0';
    if (version != CD_BEEF_V1 && version != CD_BEEF_V2 && version != CD_BEEF_ATOMIC) {
        snprintf(err, errlen, "unknown BEEF version %d", version);
        return CD_LOOKUP_EINPUT;
    }
    beef_ctx c = {.lk = lk, .err = err, .errlen = errlen};
    cd_bump *bumps = NULL;
    size_t nb = 0;
    int rc = visit(&c, txid, NULL, 0, 0);
    if (rc == 0)
        rc = make_bumps(&c, &bumps, &nb);
    if (rc == 0) {
        size_t size = (version == CD_BEEF_ATOMIC ? 36 : 0) + 4 + 9 + 9;
        for (size_t b = 0; b < nb; b++)
            size += cd_bump_binary_size(&bumps[b]);
        for (size_t i = 0; i < c.n; i++)
            size += 1 + 9 + c.tx[i].size;
        uint8_t *buf = malloc(size), *p = buf;
        if (!buf)
            abort();
        if (version == CD_BEEF_ATOMIC) {
            memset(p, 0x01, 4); /* BRC-95 prefix 0x01010101 */
            memcpy(p + 4, txid, 32);
            p += 36;
        }
        /* BRC-62 0100BEEF / BRC-96 0200BEEF, as u32 little endian */
        *p++ = version == CD_BEEF_V2 ? 0x02 : 0x01;
        *p++ = 0x00;
        *p++ = 0xbe;
        *p++ = 0xef;
        p += btc_varint_write(p, nb);
        for (size_t b = 0; b < nb; b++)
            p += cd_bump_write(&bumps[b], p);
        p += btc_varint_write(p, c.n);
        for (size_t i = 0; i < c.n; i++) {
            const beef_tx *t = &c.tx[i];
            if (version == CD_BEEF_V2) {
                *p++ = t->proven ? 0x01 : 0x00;
                if (t->proven)
                    p += btc_varint_write(p, t->bump);
                memcpy(p, t->raw, t->size);
                p += t->size;
            } else {
                memcpy(p, t->raw, t->size);
                p += t->size;
                *p++ = t->proven ? 0x01 : 0x00;
                if (t->proven)
                    p += btc_varint_write(p, t->bump);
            }
        }
        *out = buf;
        *len = (size_t)(p - buf);
    }
    for (size_t b = 0; b < nb; b++)
        cd_bump_free(&bumps[b]);
    free(bumps);
    for (size_t i = 0; i < c.n; i++)
        free(c.tx[i].raw);
    free(c.tx);
    cd_hashset_free(&c.seen);
    return rc;
}
