/*
 * test_pg_parser.c - the parser worker's row extraction against real
 * mainnet data (no database needed): txids, offsets and sizes of block
 * 413567, its INPUT pushdata keys in order, the OUTPUT keys of two real
 * transactions, DATA keys, malformed input, and the COPY row encodings;
 * every row of block 413567 against the per-transaction btc_* calls (the
 * worker hashes in batches), with SHA-NI and without.
 */
#include "cd_test.h"

#include "btc_script.h"
#include "btc_sha256.h"
#include "btc_tx.h"
#include "cd_hash.h"
#include "cd_util.h"
#include "cd_pg.h"
#include "cd_rows.h"

typedef struct rows {
    size_t ntx, nin, npush;
    uint8_t (*txid)[32];
    uint64_t *off;
    uint32_t *size;
    uint32_t *pos;
    struct {
        uint32_t tx_pos, idx, flags;
        uint8_t key[32];
    } * push;
    struct {
        uint32_t tx_pos, in_idx, prev_idx;
        uint8_t prev[32];
    } * in;
} rows;

static void r_tx(void *ctx, uint32_t tx_pos, const uint8_t txid[32], uint64_t offset, uint32_t size)
{
    rows *r = ctx;
    r->txid = realloc(r->txid, (r->ntx + 1) * 32);
    r->off = realloc(r->off, (r->ntx + 1) * sizeof(uint64_t));
    r->size = realloc(r->size, (r->ntx + 1) * sizeof(uint32_t));
    r->pos = realloc(r->pos, (r->ntx + 1) * sizeof(uint32_t));
    memcpy(r->txid[r->ntx], txid, 32);
    r->off[r->ntx] = offset;
    r->size[r->ntx] = size;
    r->pos[r->ntx] = tx_pos;
    r->ntx++;
}

static void r_in(void *ctx, uint32_t tx_pos, uint32_t in_idx, const uint8_t prev[32],
                 uint32_t prev_idx)
{
    rows *r = ctx;
    r->in = realloc(r->in, (r->nin + 1) * sizeof(*r->in));
    r->in[r->nin].tx_pos = tx_pos;
    r->in[r->nin].in_idx = in_idx;
    r->in[r->nin].prev_idx = prev_idx;
    memcpy(r->in[r->nin].prev, prev, 32);
    r->nin++;
}

static void r_push(void *ctx, uint32_t tx_pos, uint32_t idx, unsigned flags, const uint8_t key[32])
{
    rows *r = ctx;
    r->push = realloc(r->push, (r->npush + 1) * sizeof(*r->push));
    r->push[r->npush].tx_pos = tx_pos;
    r->push[r->npush].idx = idx;
    r->push[r->npush].flags = flags;
    memcpy(r->push[r->npush].key, key, 32);
    r->npush++;
}

static void rows_free(rows *r)
{
    free(r->txid);
    free(r->off);
    free(r->size);
    free(r->pos);
    free(r->push);
    free(r->in);
    memset(r, 0, sizeof(*r));
}

static cd_rows_sink sink_of(rows *r)
{
    cd_rows_sink s = {r, r_tx, r_in, r_push, NULL};
    return s;
}

/* Splits a text file into lines (modifies buf). Returns the count. */
static size_t split_lines(char *buf, char ***out)
{
    size_t n = 0, cap = 4096;
    char **v = malloc(cap * sizeof(char *));
    for (char *s = strtok(buf, "\n"); s; s = strtok(NULL, "\n")) {
        if (n == cap)
            v = realloc(v, (cap *= 2) * sizeof(char *));
        v[n++] = s;
    }
    *out = v;
    return n;
}

START_TEST(block413567_txids_offsets)
{
    size_t len, tlen, olen;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    char *txt = (char *)cd_test_read_file("mainnet/block413567.txids", &tlen);
    char *ofs = (char *)cd_test_read_file("mainnet/block413567.tx-offsets", &olen);
    char **ids, **offs;
    size_t nids = split_lines(txt, &ids), noffs = split_lines(ofs, &offs);
    ck_assert_uint_eq(nids, 1557);
    ck_assert_uint_eq(noffs, 1557);
    rows r = {0};
    cd_rows_sink s = sink_of(&r);
    cd_rows_opts o = {1, 0};
    size_t consumed = 0;
    /* 80-byte header + 3-byte count (fd 15 06) */
    long n = cd_rows_parse_unit(blk + 83, len - 83, 83, 0, 0, &o, &s, &consumed);
    ck_assert_int_eq(n, 1557);
    ck_assert_uint_eq(consumed, len - 83);
    for (size_t i = 0; i < r.ntx; i++) {
        char hex[65];
        cd_hex_encode_rev(hex, r.txid[i], 32);
        ck_assert_str_eq(hex, ids[i]);
        ck_assert_uint_eq(r.off[i], strtoull(offs[i], NULL, 10));
        ck_assert_uint_eq(r.pos[i], i);
        uint64_t end = i + 1 < r.ntx ? r.off[i + 1] : len;
        ck_assert_uint_eq(r.size[i], end - r.off[i]);
    }
    /* coinbase gives no input row; every other tx does */
    ck_assert_uint_gt(r.nin, 1556);
    for (size_t i = 0; i < r.nin; i++)
        ck_assert_uint_ne(r.in[i].tx_pos, 0);
    rows_free(&r);
    free(ids);
    free(offs);
    free(blk);
    free(txt);
    free(ofs);
}
END_TEST

START_TEST(block413567_input_keys)
{
    size_t len, klen;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    char *kt = (char *)cd_test_read_file("mainnet/block413567.input-pushdata-sha256", &klen);
    char **keys;
    size_t nkeys = split_lines(kt, &keys);
    ck_assert_uint_eq(nkeys, 3957);
    rows r = {0};
    cd_rows_sink s = sink_of(&r);
    cd_rows_opts o = {1, 0};
    ck_assert_int_eq(cd_rows_parse_unit(blk + 83, len - 83, 83, 0, 0, &o, &s, NULL), 1557);
    size_t k = 0;
    for (size_t i = 0; i < r.npush; i++) {
        if (r.push[i].flags != CD_PG_PUSH_INPUT)
            continue;
        ck_assert_uint_lt(k, nkeys);
        char hex[65];
        cd_hex_encode_rev(hex, r.push[i].key, 32); /* the file is reversed hex */
        ck_assert_msg(strcmp(hex, keys[k]) == 0, "input key %zu: %s != %s", k, hex, keys[k]);
        k++;
    }
    ck_assert_uint_eq(k, nkeys);
    rows_free(&r);
    free(keys);
    free(blk);
    free(kt);
}
END_TEST

static uint8_t *read_hex_tx(const char *rel, size_t *n)
{
    size_t hl;
    char *hex = (char *)cd_test_read_file(rel, &hl);
    while (hl && (hex[hl - 1] == '\n' || hex[hl - 1] == '\r'))
        hex[--hl] = 0;
    *n = hl / 2;
    uint8_t *tx = malloc(*n);
    ck_assert_int_eq(cd_hex_decode(tx, *n, hex), 0);
    free(hex);
    return tx;
}

START_TEST(real_tx_output_keys)
{
    size_t n;
    uint8_t *tx = read_hex_tx(
        "mainnet/tx/bf88f55da5e4d000a08056d68ab6945077db2c5224512d088fbea57046de9e07.hex", &n);
    rows r = {0};
    cd_rows_sink s = sink_of(&r);
    cd_rows_opts o = {1, 0};
    ck_assert_int_eq(cd_rows_parse_tx_pushes(tx, n, 7, &o, &s), (long)n);
    int per_out[3] = {0, 0, 0};
    for (size_t i = 0; i < r.npush; i++) {
        ck_assert_uint_eq(r.push[i].tx_pos, 7);
        if (r.push[i].flags == CD_PG_PUSH_OUTPUT) {
            ck_assert_uint_lt(r.push[i].idx, 3);
            per_out[r.push[i].idx]++;
        }
    }
    ck_assert_int_eq(per_out[0], 4);
    ck_assert_int_eq(per_out[1], 1);
    ck_assert_int_eq(per_out[2], 1);
    rows_free(&r);
    free(tx);

    tx = read_hex_tx(
        "mainnet/tx/6370060cd55b046a87a72a4c07bffa1da52b3d12c227e795850b7d0ac68c203b.hex", &n);
    ck_assert_int_eq(cd_rows_parse_tx_pushes(tx, n, 0, &o, &s), (long)n);
    size_t outputs = 0, data = 0;
    for (size_t i = 0; i < r.npush; i++) {
        outputs += r.push[i].flags == CD_PG_PUSH_OUTPUT;
        data += r.push[i].flags == CD_PG_PUSH_DATA;
    }
    ck_assert_uint_eq(outputs, 0);
    ck_assert_uint_gt(data, 0); /* its 32-byte hashes are data-carrier pushes */
    rows_free(&r);
    /* DATA off: no DATA keys at all */
    o.data_pushes = 0;
    ck_assert_int_eq(cd_rows_parse_tx_pushes(tx, n, 0, &o, &s), (long)n);
    for (size_t i = 0; i < r.npush; i++)
        ck_assert_uint_ne(r.push[i].flags, CD_PG_PUSH_DATA);
    rows_free(&r);
    free(tx);
}
END_TEST

START_TEST(regtest_block116_data_keys)
{
    /* Block 116 of blockchain_116_7c9cd2 (the last line of headers.txt). */
    size_t hl;
    char *h = (char *)cd_test_read_file("regtest/blockchain_116_7c9cd2/headers.txt", &hl);
    char **lines;
    size_t nl = split_lines(h, &lines);
    ck_assert_uint_eq(nl, 117);
    char rel[256];
    snprintf(rel, sizeof(rel), "regtest/blockchain_116_7c9cd2/%s", lines[116]);
    size_t len;
    uint8_t *blk = cd_test_read_file(rel, &len);
    rows r = {0};
    cd_rows_sink s = sink_of(&r);
    cd_rows_opts o = {1, 0};
    ck_assert_int_eq(cd_rows_parse_unit(blk + 81, len - 81, 81, 0, 0, &o, &s, NULL), 3);
    static const char *want[] = {
        "bceef655b5a034911f1c3718ce056531b45ef03b4c7b1f15629e867294011a7d",
        "bdd6af32ad29f75d8194247c3e960eea38711776a9ff4182356184fa86a00dd0",
        "a0920a708fa193ccb674b42e78c9ee20134faa007a83405db7219e916660cbfa",
        "5866ddbc19ad8479a492837f44bc0146537038070990ecad9ea5c6654a0a2d57",
        "6e851b79242aeb57c37a6ee64afcf6594d0c76c0429e46d6e8f934e180be72a5",
        "71189f7fb6aed638640078fba3a35fda6c39c8962e74dcc75935aac948da9063",
    };
    size_t k = 0;
    for (size_t i = 0; i < r.npush; i++) {
        if (r.push[i].flags != CD_PG_PUSH_DATA)
            continue;
        char hex[65];
        cd_hex_encode(hex, r.push[i].key, 32);
        ck_assert_uint_lt(k, 6);
        ck_assert_str_eq(hex, want[k]);
        ck_assert_uint_eq(r.push[i].idx, 0);
        k++;
    }
    ck_assert_uint_eq(k, 6);
    rows_free(&r);
    free(blk);
    free(lines);
    free(h);
}
END_TEST

START_TEST(malformed_unit)
{
    size_t len;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    rows r = {0};
    cd_rows_sink s = sink_of(&r);
    size_t consumed = 0;
    /* cut inside tx 2 (offsets 83, 268, 494): txs 0 and 1 are reported */
    long n = cd_rows_parse_unit(blk + 83, 494 + 10 - 83, 83, 0, 0, NULL, &s, &consumed);
    ck_assert_int_eq(n, CD_ROWS_EMALFORMED);
    ck_assert_uint_eq(r.ntx, 2);
    ck_assert_uint_eq(consumed, 494 - 83);
    rows_free(&r);
    /* max_txs stops early without error */
    n = cd_rows_parse_unit(blk + 83, len - 83, 83, 0, 5, NULL, &s, &consumed);
    ck_assert_int_eq(n, 5);
    ck_assert_uint_eq(r.ntx, 5);
    rows_free(&r);
    free(blk);
}
END_TEST

/* Rows of txs [0, ntx) of block 413567 == btc_tx_txid, the non-coinbase
 * outpoints and btc_tx_push_keys of each tx, in order. */
static void check_rows_per_tx(const rows *r, const uint8_t *blk, size_t len, size_t ntx)
{
    static btc_tx_push_key keys[8192];
    ck_assert_uint_eq(r->ntx, ntx);
    size_t pos = 83, in_at = 0, push_at = 0;
    for (size_t t = 0; t < ntx; t++) {
        btc_tx tx;
        ck_assert_int_eq(btc_tx_parse(&tx, blk + pos, len - pos), 0);
        uint8_t id[32];
        btc_tx_txid(&tx, id);
        ck_assert_mem_eq(r->txid[t], id, 32);
        ck_assert_uint_eq(r->off[t], pos);
        ck_assert_uint_eq(r->size[t], tx.size);
        btc_tx_iter it;
        btc_txin in;
        btc_tx_inputs(&tx, &it);
        for (uint32_t i = 0; btc_tx_next_input(&it, &in); i++) {
            if (t == 0)
                continue; /* the coinbase spends nothing */
            ck_assert_uint_lt(in_at, r->nin);
            ck_assert_uint_eq(r->in[in_at].tx_pos, t);
            ck_assert_uint_eq(r->in[in_at].in_idx, i);
            ck_assert_uint_eq(r->in[in_at].prev_idx, in.prev_index);
            ck_assert_mem_eq(r->in[in_at].prev, in.prev_txid, 32);
            in_at++;
        }
        size_t nk = btc_tx_push_keys(&tx, NULL, keys, CD_ARRAY_LEN(keys));
        ck_assert_uint_le(nk, CD_ARRAY_LEN(keys));
        for (size_t k = 0; k < nk; k++, push_at++) {
            ck_assert_uint_lt(push_at, r->npush);
            ck_assert_uint_eq(r->push[push_at].tx_pos, t);
            ck_assert_uint_eq(r->push[push_at].idx, keys[k].index);
            ck_assert_uint_eq(r->push[push_at].flags, keys[k].flags);
            ck_assert_mem_eq(r->push[push_at].key, keys[k].hash, 32);
        }
        pos += tx.size;
    }
    ck_assert_uint_eq(in_at, r->nin);
    ck_assert_uint_eq(push_at, r->npush);
}

START_TEST(block413567_rows_match_per_tx)
{
    size_t len;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    cd_rows_opts o = {1, 0}; /* DATA keys on, no length limit: the btc defaults */
    for (int accel = 1; accel >= 0; accel--) {
        btc_sha256_set_accel(accel);
        rows r = {0};
        cd_rows_sink s = sink_of(&r);
        size_t consumed = 0;
        ck_assert_int_eq(cd_rows_parse_unit(blk + 83, len - 83, 83, 0, 0, &o, &s, &consumed), 1557);
        ck_assert_uint_eq(consumed, len - 83);
        check_rows_per_tx(&r, blk, len, 1557);
        rows_free(&r);
        /* max_txs inside a batch, and across batches */
        for (uint32_t max = 1; max <= 70; max += 23) {
            ck_assert_int_eq(cd_rows_parse_unit(blk + 83, len - 83, 83, 0, max, &o, &s, &consumed),
                             max);
            check_rows_per_tx(&r, blk, len, max);
            rows_free(&r);
        }
        /* no tx callback: the same input and push rows */
        cd_rows_sink np = {&r, NULL, r_in, r_push, NULL};
        ck_assert_int_eq(cd_rows_parse_unit(blk + 83, len - 83, 83, 0, 0, &o, &np, NULL), 1557);
        ck_assert_uint_eq(r.ntx, 0);
        ck_assert_uint_gt(r.npush, 1557);
        rows_free(&r);
    }
    btc_sha256_set_accel(1);
    free(blk);
}
END_TEST

/* Output rows: vout order per tx, sha256(script) against the OpenSSL path
 * (cd_sha256), value = the 8 bytes before the script's CompactSize in the
 * block, every tx of the block with at least one output. */
typedef struct out_rows {
    const uint8_t *blk;
    size_t len;
    uint32_t last_pos, next_idx;
    size_t n, txs;
    uint64_t total;
} out_rows;

static void r_out(void *ctx, uint32_t tx_pos, uint32_t idx, uint64_t value, const uint8_t *script,
                  size_t script_len, const uint8_t hash[32])
{
    out_rows *o = ctx;
    if (o->n == 0 || tx_pos != o->last_pos) {
        ck_assert(o->n == 0 || tx_pos == o->last_pos + 1);
        o->last_pos = tx_pos;
        o->next_idx = 0;
        o->txs++;
    }
    ck_assert_uint_eq(idx, o->next_idx);
    o->next_idx++;
    ck_assert(script >= o->blk && script + script_len <= o->blk + o->len);
    size_t vlen = script_len < 0xfd ? 1 : script_len <= 0xffff ? 3 : 5;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | script[-(ptrdiff_t)vlen - 8 + i];
    ck_assert_uint_eq(v, value);
    uint8_t want[32];
    cd_sha256_ctx c;
    cd_sha256_init(&c);
    cd_sha256_update(&c, script, script_len);
    cd_sha256_final(&c, want);
    ck_assert(memcmp(want, hash, 32) == 0);
    o->total += value;
    o->n++;
}

START_TEST(block413567_outputs)
{
    size_t len;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &len);
    out_rows o = {blk, len, 0, 0, 0, 0, 0};
    cd_rows_sink s = {&o, NULL, NULL, NULL, r_out};
    cd_rows_opts opt = {1, 0};
    ck_assert_int_eq(cd_rows_parse_unit(blk + 83, len - 83, 83, 0, 0, &opt, &s, NULL), 1557);
    ck_assert_uint_eq(o.txs, 1557);
    ck_assert_uint_gt(o.n, 1557);
    ck_assert_uint_gt(o.total, 0);
    free(blk);
}
END_TEST

START_TEST(copy_encodings)
{
    uint8_t h[32];
    for (int i = 0; i < 32; i++)
        h[i] = (uint8_t)i;
    cd_pg_unit t, b;
    cd_pg_unit_init(&t, CD_PG_COPY_TEXT);
    cd_pg_unit_init(&b, CD_PG_COPY_BINARY);
    cd_pg_unit_reset(&t, 42, 3, 100);
    cd_pg_unit_reset(&b, 42, 3, 100);
    cd_pg_unit_add_tx(&t, 100, h, 1234567890123ull, 250);
    cd_pg_unit_add_tx(&b, 100, h, 1234567890123ull, 250);
    cd_pg_unit_add_input(&t, 100, 1, h, 0x7fffffffu);
    cd_pg_unit_add_push(&t, 100, 2, CD_PG_PUSH_DATA, h);
    ck_assert_uint_eq(t.tx_count, 1);
    ck_assert_uint_eq(t.tx.rows, 1);
    const char *want_tx = "42\t1234567890123\t100\t250\t\\\\x000102030405060708090a0b0c0d0e0f"
                          "101112131415161718191a1b1c1d1e1f\n";
    ck_assert_uint_eq(t.tx.len, strlen(want_tx));
    ck_assert(memcmp(t.tx.p, want_tx, t.tx.len) == 0);
    ck_assert(memcmp(t.in.p, "42\t100\t1\t2147483647\t\\\\x00", 25) == 0);
    ck_assert(memcmp(t.pd.p, "42\t100\t2\t4\t\\\\x00", 16) == 0);
    /* binary: 2 + (4+8)*2 + (4+4)*2 + 4+32 = 78 bytes, big-endian fields */
    ck_assert_uint_eq(b.tx.len, 78);
    ck_assert_uint_eq(b.tx.p[0], 0);
    ck_assert_uint_eq(b.tx.p[1], 5);
    ck_assert_uint_eq(b.tx.p[2 + 4 + 7], 42);
    ck_assert(memcmp(b.tx.p + 78 - 32, h, 32) == 0);
    /* outputs: a stored script, and NULL (not stored) */
    static const uint8_t sc[3] = {0x76, 0xa9, 0x14};
    cd_pg_unit_add_output(&t, 100, 0, 5000000000ull, h, sc, 3);
    cd_pg_unit_add_output(&t, 100, 1, 0, h, NULL, 70000);
    cd_pg_unit_add_output(&b, 100, 1, 0, h, NULL, 70000);
    const char *want_out = "42\t100\t0\t5000000000\t\\\\x000102030405060708090a0b0c0d0e0f"
                           "101112131415161718191a1b1c1d1e1f\t\\\\x76a914\n"
                           "42\t100\t1\t0\t\\\\x000102030405060708090a0b0c0d0e0f"
                           "101112131415161718191a1b1c1d1e1f\t\\N\n";
    ck_assert_uint_eq(t.out.rows, 2);
    ck_assert_uint_eq(t.out.len, strlen(want_out));
    ck_assert(memcmp(t.out.p, want_out, t.out.len) == 0);
    /* binary: 2 + (4+8) + (4+4)*2 + (4+8) + (4+32) + 4 (length -1: NULL) = 82 */
    ck_assert_uint_eq(b.out.len, 82);
    ck_assert_uint_eq(b.out.p[1], 6);
    ck_assert(memcmp(b.out.p + 78, "\xff\xff\xff\xff", 4) == 0);
    /* reset keeps capacity, drops rows */
    cd_pg_unit_reset(&t, 1, 0, 0);
    ck_assert_uint_eq(t.tx.len, 0);
    ck_assert_uint_eq(t.tx_count, 0);
    cd_pg_unit_free(&t);
    cd_pg_unit_free(&b);
}
END_TEST

static Suite *suite_pg_parser(void)
{
    Suite *s = suite_create("pg_parser");
    TCase *tc = tcase_create("mainnet");
    tcase_add_test(tc, block413567_txids_offsets);
    tcase_add_test(tc, block413567_input_keys);
    tcase_add_test(tc, real_tx_output_keys);
    tcase_add_test(tc, regtest_block116_data_keys);
    tcase_add_test(tc, malformed_unit);
    tcase_add_test(tc, block413567_rows_match_per_tx);
    tcase_add_test(tc, block413567_outputs);
    suite_add_tcase(s, tc);
    tc = tcase_create("copy");
    tcase_add_test(tc, copy_encodings);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_pg_parser)
