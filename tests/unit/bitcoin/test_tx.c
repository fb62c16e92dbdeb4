/*
 * test_tx.c - zero-copy transaction parser: txids of a real mainnet block
 * (computed by an independent implementation), inputs/outputs of known
 * regtest wallet transactions, coinbase detection.
 */
#include "btc_testdata.h"

#include "btc_preproc.h"
#include "btc_tx.h"
#include "btc_varint.h"

START_TEST(test_block413567_txids)
{
    size_t len, n;
    uint8_t *blk = cd_test_read_file(BTC_TD_BLOCK413567, &len);
    char **ids = btc_td_lines("mainnet/block413567.txids", &n);
    ck_assert_uint_eq(n, 1557);
    size_t pos = 83;
    uint64_t n_in = 0, n_out = 0, value = 0;
    for (size_t i = 0; i < n; i++) {
        btc_tx tx;
        ck_assert_int_eq(btc_tx_parse(&tx, blk + pos, len - pos), 0);
        uint8_t id[32];
        char hex[65];
        btc_tx_txid(&tx, id);
        cd_hex_encode_rev(hex, id, 32);
        ck_assert_str_eq(hex, ids[i]);
        ck_assert_int_eq(btc_tx_is_coinbase(&tx), i == 0);
        ck_assert_ptr_eq(tx.raw, blk + pos);
        /* iterators walk exactly to the locktime */
        btc_tx_iter it;
        btc_txin in;
        btc_txout out;
        const uint8_t *end = NULL;
        btc_tx_inputs(&tx, &it);
        uint32_t k = 0;
        while (btc_tx_next_input(&it, &in)) {
            ck_assert_uint_eq(it.index, k + 1);
            k++;
            end = in.script + in.script_len + 4;
            if (i == 0) {
                ck_assert_uint_eq(in.prev_index, 0xffffffffu);
            } else {
                ck_assert_uint_ne(in.prev_index, 0xffffffffu);
            }
        }
        ck_assert_uint_eq(k, tx.n_inputs);
        n_in += k;
        btc_tx_outputs(&tx, &it);
        ck_assert_ptr_eq(it.p, end + btc_varint_size(tx.n_outputs));
        k = 0;
        while (btc_tx_next_output(&it, &out)) {
            k++;
            end = out.script + out.script_len;
            value += out.value;
        }
        ck_assert_uint_eq(k, tx.n_outputs);
        n_out += k;
        ck_assert_ptr_eq(end + 4, blk + pos + tx.size);
        ck_assert_uint_eq(tx.locktime, cd_le32(blk + pos + tx.size - 4));
        pos += tx.size;
    }
    ck_assert_uint_eq(pos, len);
    ck_assert_uint_gt(n_in, n);
    ck_assert_uint_gt(n_out, n);
    ck_assert_uint_gt(value, 0);
    btc_td_free_lines(ids, n);
    free(blk);
}
END_TEST

/* Finds tx `pos` of a regtest block and parses it. */
static uint8_t *regtest_tx(int height, int pos, btc_tx *tx)
{
    btc_td_chain c;
    btc_td_load_chain(&c, BTC_TD_CHAIN116);
    size_t len;
    uint8_t *blk = btc_td_block(&c, BTC_TD_CHAIN116, height, &len);
    uint64_t count;
    int pl = btc_block_prefix(blk, len, NULL, &count);
    ck_assert_int_gt(pl, 0);
    ck_assert_int_lt(pos, (int)count);
    size_t p = (size_t)pl;
    for (int i = 0; i <= pos; i++) {
        ck_assert_int_eq(btc_tx_parse(tx, blk + p, len - p), 0);
        if (i < pos)
            p += tx->size;
    }
    return blk;
}

START_TEST(test_regtest_spends)
{
    btc_tx tx;
    uint8_t id[32];
    char hex[65];
    /* 115:1 spends the P2PK of 112:1 (input 0) and the P2PKH of 111:1 (input 1) */
    uint8_t *blk = regtest_tx(115, 1, &tx);
    btc_tx_txid(&tx, id);
    cd_hex_encode_rev(hex, id, 32);
    ck_assert_str_eq(hex, "47f3f47a256d70950ff5690ea377c24464310489e3f54d01b817dd0088f0a095");
    ck_assert(!btc_tx_is_coinbase(&tx));
    ck_assert_uint_eq(tx.n_inputs, 2);
    btc_tx_iter it;
    btc_txin in;
    btc_tx_inputs(&tx, &it);
    ck_assert(btc_tx_next_input(&it, &in));
    cd_hex_encode_rev(hex, in.prev_txid, 32);
    ck_assert_str_eq(hex, "88c92bb09626c7d505ed861ae8fa7e7aaab5b816fc517eac7a8a6c7f28b1b210");
    ck_assert(btc_tx_next_input(&it, &in));
    cd_hex_encode_rev(hex, in.prev_txid, 32);
    ck_assert_str_eq(hex, "d53a9ebfac748561132e49254c42dbe518080c2a5956822d5d3914d47324e842");
    /* data README writes "d53a9ebf...:1 -> 47f3f47a..., input 1": the spent
     * output is index 0 (the only P2PKH to 17aa9ecb...), the 1 is the input */
    ck_assert_uint_eq(in.prev_index, 0);
    /* P2PKH scriptSig: <sig> <33-byte pubkey 03adc147...035068> */
    ck_assert_uint_eq(in.script[in.script[0] + 1], 0x21);
    cd_hex_encode(hex, in.script + in.script[0] + 2, 3);
    ck_assert_str_eq(hex, "03adc1");
    ck_assert(!btc_tx_next_input(&it, &in));
    free(blk);

    /* 111:0 is a coinbase, 111:1 pays to P2PKH 17aa9ecb... */
    blk = regtest_tx(111, 0, &tx);
    ck_assert(btc_tx_is_coinbase(&tx));
    free(blk);
    blk = regtest_tx(111, 1, &tx);
    btc_tx_txid(&tx, id);
    cd_hex_encode_rev(hex, id, 32);
    ck_assert_str_eq(hex, "d53a9ebfac748561132e49254c42dbe518080c2a5956822d5d3914d47324e842");
    btc_txout out;
    int found = 0;
    btc_tx_outputs(&tx, &it);
    while (btc_tx_next_output(&it, &out)) {
        if (out.script_len == 25 && out.script[0] == 0x76 && out.script[2] == 0x14) {
            cd_hex_encode(hex, out.script + 3, 20);
            if (strcmp(hex, "17aa9ecb9e38b91bddcc5e8d2d26154be90d8996") == 0)
                found++;
        }
    }
    ck_assert_int_eq(found, 1);
    free(blk);
}
END_TEST

START_TEST(test_hex_txs)
{
    static const char *ids[] = {
        "6370060cd55b046a87a72a4c07bffa1da52b3d12c227e795850b7d0ac68c203b",
        "bf88f55da5e4d000a08056d68ab6945077db2c5224512d088fbea57046de9e07",
    };
    for (size_t i = 0; i < 2; i++) {
        char rel[256], hex[65];
        snprintf(rel, sizeof(rel), "mainnet/tx/%s.hex", ids[i]);
        size_t n;
        uint8_t *raw = btc_td_hex_file(rel, &n);
        btc_tx tx;
        ck_assert_int_eq(btc_tx_parse(&tx, raw, n), 0);
        ck_assert_uint_eq(tx.size, n);
        uint8_t id[32];
        btc_tx_txid(&tx, id);
        cd_hex_encode_rev(hex, id, 32);
        ck_assert_str_eq(hex, ids[i]);
        /* every proper prefix is truncated */
        for (size_t k = 0; k < n; k++)
            ck_assert_int_eq(btc_tx_parse(&tx, raw, k), BTC_ERR_TRUNCATED);
        free(raw);
    }
}
END_TEST

static Suite *suite_tx(void)
{
    Suite *s = suite_create("bitcoin_tx");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_block413567_txids);
    tcase_add_test(tc, test_regtest_spends);
    tcase_add_test(tc, test_hex_txs);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_tx)
