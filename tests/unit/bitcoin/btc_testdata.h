/*
 * btc_testdata.h - loaders for the shared chain data used by the bitcoin
 * unit tests (regtest chain directories, mainnet block 413567, hex files).
 * Test-only; aborts the test on any missing file.
 */
#ifndef BTC_TESTDATA_H
#define BTC_TESTDATA_H

#include "cd_test.h"
#include "cd_util.h"

#include <stdint.h>

#define BTC_TD_CHAIN116    "regtest/blockchain_116_7c9cd2"
#define BTC_TD_BLOCK413567 "mainnet/block413567.raw"

/* A regtest chain: hashes[h] is the display hex of the block at height h. */
typedef struct btc_td_chain {
    char hashes[200][65];
    int count;
} btc_td_chain;

static inline void btc_td_load_chain(btc_td_chain *c, const char *dir)
{
    char rel[512];
    size_t len;
    snprintf(rel, sizeof(rel), "%s/headers.txt", dir);
    char *txt = (char *)cd_test_read_file(rel, &len);
    c->count = 0;
    char *save = NULL;
    for (char *line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strlen(line) < 64)
            continue;
        ck_assert_int_lt(c->count, 200);
        memcpy(c->hashes[c->count], line, 64);
        c->hashes[c->count][64] = 0;
        c->count++;
    }
    free(txt);
}

/* Reads the raw block at height h of chain c in dir. */
static inline uint8_t *btc_td_block(const btc_td_chain *c, const char *dir, int h, size_t *len)
{
    char rel[512];
    snprintf(rel, sizeof(rel), "%s/%s", dir, c->hashes[h]);
    return cd_test_read_file(rel, len);
}

/* Reads a file of lines into a malloc'd array of malloc'd strings. */
static inline char **btc_td_lines(const char *rel, size_t *n)
{
    size_t len;
    char *txt = (char *)cd_test_read_file(rel, &len);
    size_t cap = 1024, k = 0;
    char **v = malloc(cap * sizeof(*v));
    char *save = NULL;
    for (char *line = strtok_r(txt, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        if (k == cap) {
            cap *= 2;
            v = realloc(v, cap * sizeof(*v));
        }
        v[k++] = strdup(line);
    }
    free(txt);
    *n = k;
    return v;
}

static inline void btc_td_free_lines(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Reads a hex file (e.g. mainnet/tx/<txid>.hex) into raw bytes. */
static inline uint8_t *btc_td_hex_file(const char *rel, size_t *n)
{
    size_t len;
    char *txt = (char *)cd_test_read_file(rel, &len);
    while (len && (txt[len - 1] == '\n' || txt[len - 1] == '\r' || txt[len - 1] == ' '))
        txt[--len] = 0;
    ck_assert_int_eq((int)(len % 2), 0);
    uint8_t *out = malloc(len / 2 + 1);
    ck_assert_int_eq(cd_hex_decode(out, len / 2, txt), 0);
    free(txt);
    *n = len / 2;
    return out;
}

/* Deterministic PRNG for split points (xorshift64*). */
static inline uint64_t btc_td_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

#endif /* BTC_TESTDATA_H */
