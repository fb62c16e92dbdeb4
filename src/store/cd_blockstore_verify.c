/*
 * cd_blockstore_verify.c - re-hash a stored block against its header: the
 * header's hash is the key, the stored bytes start with that header, and the
 * txids of the transactions (cut at the stored tx offsets) give the header's
 * merkle root without the CVE-2012-2459 mutation (issue 11, F7).
 *
 * Why: LMDB keeps no checksum of its values. A bit flipped on disk inside a
 * block was served as it was by /v1/block and `conduit-cli block`; now the
 * serving paths (cd_lookup_block_check) and `conduit-cli verify --full` call
 * this first. The block is streamed through a bounded buffer, so memory does
 * not depend on the block's size; every byte is hashed twice (SHA-256d: the
 * transactions inside the buffer in batches on btc_sha256_many's two SHA-NI
 * lanes, as the merkle worker does; one that crosses the buffer's end
 * incrementally), the
 * cost measured in docs/PERFORMANCE.md ("Serving a block: the merkle check").
 */
#include "cd_blockstore.h"

#include "btc_merkle.h"
#include "btc_sha256.h"
#include "btc_varint.h"
#include "cd_hash.h"
#include "cd_log.h"
#include "cd_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERIFY_BUF  (4u << 20) /* block bytes read at a time */
#define VERIFY_OFFS 65536u     /* tx offsets read at a time */
#define VERIFY_JOBS 32u        /* txids hashed per btc_sha256_many call */

/* Hashes the batched txids and adds them to the stream in order. */
static int flush_jobs(btc_merkle_stream *ms, btc_sha256_job *jobs, uint8_t (*ids)[32], size_t *nj)
{
    if (*nj == 0)
        return 0;
    btc_sha256_many(jobs, *nj);
    for (size_t k = 0; k < *nj; k++)
        if (btc_merkle_stream_add(ms, ids[k]) != 0)
            return -1;
    *nj = 0;
    return 0;
}

static int bad(char *why, size_t len, const char *fmt, ...) CD_PRINTF(3, 4);

static int bad(char *why, size_t len, const char *fmt, ...)
{
    if (why && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, len, fmt, ap);
        va_end(ap);
    }
    return CD_BS_ECORRUPT;
}

int cd_blockstore_verify(cd_blockstore *bs, const uint8_t hash[32], const cd_block_loc *loc,
                         char *why, size_t why_len)
{
    if (why && why_len)
        why[0] = '\0';
    uint8_t h[32];
    cd_sha256d(h, loc->header, 80);
    if (memcmp(h, hash, 32) != 0)
        return bad(why, why_len, "its location record holds another block's header");
    if (loc->size < 81 || loc->tx_count == 0)
        return bad(why, why_len, "size %llu / %llu txs is not a block",
                   (unsigned long long)loc->size, (unsigned long long)loc->tx_count);
    uint8_t *buf = malloc(VERIFY_BUF);
    uint64_t *offs = malloc(VERIFY_OFFS * sizeof(uint64_t));
    if (!buf || !offs) {
        free(buf);
        free(offs);
        return bad(why, why_len, "out of memory");
    }
    int rc = 0;
    btc_merkle_stream ms;
    btc_merkle_stream_init(&ms, NULL, NULL);
    cd_sha256_ctx tx;
    btc_sha256_job jobs[VERIFY_JOBS];
    uint8_t ids[VERIFY_JOBS][32];
    size_t nj = 0;
    uint64_t tx_i = 0;       /* tx being hashed (its start was seen) */
    uint64_t next_start = 0; /* where tx_i + 1 starts (loc->size for the last) */
    uint64_t offs_first = 0; /* index of offs[0] */
    uint64_t offs_n = 0;     /* offsets held */
    int in_tx = 0;
    for (uint64_t off = 0; off < loc->size && rc == 0;) {
        size_t n = (size_t)CD_MIN((uint64_t)VERIFY_BUF, loc->size - off);
        rc = cd_blockstore_read(bs, loc, off, buf, n);
        if (rc) {
            rc = bad(why, why_len, "reading bytes %llu..%llu: %s", (unsigned long long)off,
                     (unsigned long long)(off + n), cd_strerror(rc));
            break;
        }
        size_t p = 0;
        if (off == 0) {
            if (memcmp(buf, loc->header, 80) != 0) {
                rc = bad(why, why_len, "the stored bytes do not start with its header");
                break;
            }
            uint64_t cnt = 0;
            int vl = btc_varint_read(buf + 80, n - 80, &cnt);
            if (vl <= 0 || cnt != loc->tx_count) {
                rc = bad(why, why_len, "the tx count in the bytes is not %llu",
                         (unsigned long long)loc->tx_count);
                break;
            }
        }
        while (p < n && rc == 0) {
            uint64_t pos = off + p;
            if (!in_tx) {
                /* the tx that starts here: its offset must say so */
                if (tx_i >= offs_first + offs_n) {
                    offs_first = tx_i;
                    offs_n = CD_MIN((uint64_t)VERIFY_OFFS, loc->tx_count - tx_i);
                    rc = cd_blockstore_read_offsets(bs, loc, offs_first, offs_n, offs);
                    if (rc) {
                        rc = bad(why, why_len, "reading tx offsets from %llu: %s",
                                 (unsigned long long)tx_i, cd_strerror(rc));
                        break;
                    }
                }
                uint64_t start = offs[tx_i - offs_first];
                if (start < pos || start >= loc->size) {
                    rc = bad(why, why_len, "tx %llu: stored offset %llu is out of order",
                             (unsigned long long)tx_i, (unsigned long long)start);
                    break;
                }
                if (start > pos) { /* only the header and count precede tx 0 */
                    if (tx_i != 0 || start > n) {
                        rc = bad(why, why_len,
                                 "tx %llu: bytes before offset %llu belong to no "
                                 "transaction",
                                 (unsigned long long)tx_i, (unsigned long long)start);
                        break;
                    }
                    p = (size_t)(start - off);
                    continue;
                }
                if (tx_i + 1 < loc->tx_count) {
                    if (tx_i + 1 >= offs_first + offs_n) {
                        /* the next start is in the next batch: peek at it */
                        uint64_t one;
                        rc = cd_blockstore_read_offsets(bs, loc, tx_i + 1, 1, &one);
                        if (rc) {
                            rc = bad(why, why_len, "reading tx offsets: %s", cd_strerror(rc));
                            break;
                        }
                        next_start = one;
                    } else {
                        next_start = offs[tx_i + 1 - offs_first];
                    }
                    if (next_start <= start || next_start > loc->size) {
                        rc = bad(why, why_len, "tx %llu: stored offsets are out of order",
                                 (unsigned long long)tx_i);
                        break;
                    }
                } else {
                    next_start = loc->size;
                }
                if (next_start <= off + n) { /* whole in the buffer: batched */
                    size_t tl = (size_t)(next_start - pos);
                    jobs[nj] = (btc_sha256_job){buf + p, tl, ids[nj], 1};
                    nj++;
                    p += tl;
                    tx_i++;
                    if (nj == VERIFY_JOBS && flush_jobs(&ms, jobs, ids, &nj) != 0)
                        rc = bad(why, why_len, "merkle stream failed");
                    continue;
                }
                /* crosses the buffer's end: the batch first (order), then
                 * this one incrementally */
                if (flush_jobs(&ms, jobs, ids, &nj) != 0) {
                    rc = bad(why, why_len, "merkle stream failed");
                    break;
                }
                cd_sha256_init(&tx);
                in_tx = 1;
            }
            size_t take = (size_t)CD_MIN((uint64_t)(n - p), next_start - pos);
            cd_sha256_update(&tx, buf + p, take);
            p += take;
            if (off + p == next_start) {
                uint8_t txid[32];
                cd_sha256d_final(&tx, txid);
                if (btc_merkle_stream_add(&ms, txid) != 0) {
                    rc = bad(why, why_len, "merkle stream failed");
                    break;
                }
                in_tx = 0;
                tx_i++;
            }
        }
        /* the buffer is reused: its batched txs are hashed before */
        if (rc == 0 && flush_jobs(&ms, jobs, ids, &nj) != 0)
            rc = bad(why, why_len, "merkle stream failed");
        off += n;
    }
    if (rc == 0 && tx_i != loc->tx_count)
        rc = bad(why, why_len, "%llu of %llu transactions found", (unsigned long long)tx_i,
                 (unsigned long long)loc->tx_count);
    if (rc == 0) {
        uint8_t root[32];
        int mutated = 0;
        if (btc_merkle_stream_final(&ms, root, &mutated) != 0)
            rc = bad(why, why_len, "no transactions");
        else if (memcmp(root, loc->header + 36, 32) != 0)
            rc = bad(why, why_len,
                     "its transactions do not give the header's merkle root "
                     "(a byte changed on disk)");
        else if (mutated)
            rc = bad(why, why_len, "its transaction list is mutated (CVE-2012-2459)");
    }
    free(buf);
    free(offs);
    return rc;
}
