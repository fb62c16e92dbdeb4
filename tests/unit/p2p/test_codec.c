/*
 * test_codec.c - libconduit-p2p message codec: the byte vectors of
 * bsv-p2p.md §10, header framing (basic and extmsg), CompactSize edge cases,
 * the headers message's trailing tx-count byte, and decoders on short input.
 */
#include "cd_test.h"

#include "cd_hash.h"
#include "cd_util.h"
#include "btc_net.h"
#include "conduit_p2p.h"

/* the public network type of a btc_net */
#define CNET(n) cp2p_net_by_name((n)->name)
#include "cp2p_codec.h"

static uint8_t *unhex(const char *hex, size_t *n)
{
    size_t l = strlen(hex) / 2;
    uint8_t *b = malloc(l + 1);
    ck_assert_int_eq(cd_hex_decode(b, l, hex), 0);
    *n = l;
    return b;
}

static void assert_hex(const uint8_t *b, size_t n, const char *hex)
{
    char *s = malloc(2 * n + 1);
    cd_hex_encode(s, b, n);
    ck_assert_str_eq(s, hex);
    free(s);
}

START_TEST(test_genesis_getheaders_vector)
{
    const btc_net *main = btc_net_get(BTC_NET_MAIN);
    cp2p_buf b = {0};
    cp2p_enc_getheaders(&b, (const uint8_t(*)[32])main->genesis_hash, 1, NULL);
    ck_assert_uint_eq(b.len, 69);
    assert_hex(b.p, b.len,
               "8011010001"
               "6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000"
               "0000000000000000000000000000000000000000000000000000000000000000");
    uint8_t hdr[24];
    cp2p_msghdr_encode(hdr, main->magic, "getheaders", b.p, b.len);
    assert_hex(hdr, 24, "e3e1f3e8676574686561646572730000450000001d36fe53");
    /* and back */
    uint32_t ver;
    uint8_t loc[4][32], stop[32];
    size_t n;
    ck_assert_int_eq(cp2p_dec_getheaders(b.p, b.len, &ver, loc, 4, &n, stop), CP2P_OK);
    ck_assert_uint_eq(ver, 70016);
    ck_assert_uint_eq(n, 1);
    ck_assert_mem_eq(loc[0], main->genesis_hash, 32);
    cp2p_buf_free(&b);
}
END_TEST

START_TEST(test_verack_vector)
{
    uint8_t hdr[24];
    cp2p_msghdr_encode(hdr, btc_net_get(BTC_NET_MAIN)->magic, "verack", NULL, 0);
    assert_hex(hdr, 24, "e3e1f3e876657261636b000000000000000000005df6e0e2");
    cp2p_msghdr h;
    ck_assert_int_eq(cp2p_msghdr_decode(hdr, 24, &h), 24);
    ck_assert_str_eq(h.cmd, "verack");
    ck_assert_uint_eq(h.len, 0);
    ck_assert_int_eq(h.ext, 0);
    ck_assert_int_eq(cp2p_msghdr_decode(hdr, 23, &h), 0); /* need more */
}
END_TEST

START_TEST(test_protoconf_vectors)
{
    size_t n;
    uint8_t *p = unhex("0200002000"
                       "15"
                       "426c6f636b5072696f726974792c44656661756c74",
                       &n);
    ck_assert_uint_eq(n, 27);
    uint64_t nf;
    uint32_t mr;
    ck_assert_int_eq(cp2p_dec_protoconf(p, n, &nf, &mr), CP2P_OK);
    ck_assert_uint_eq(nf, 2);
    ck_assert_uint_eq(mr, 2097152);
    /* ours: 1 field, 2 MiB */
    cp2p_buf b = {0};
    cp2p_enc_protoconf(&b, 2097152, NULL);
    assert_hex(b.p, b.len, "0100002000");
    cp2p_buf_free(&b);
    /* numberOfFields = 0 or truncated: malformed */
    uint8_t zero[] = {0x00, 0, 0, 0x20, 0};
    ck_assert_int_eq(cp2p_dec_protoconf(zero, sizeof(zero), &nf, &mr), CP2P_EMALFORMED);
    ck_assert_int_eq(cp2p_dec_protoconf(p, 3, &nf, &mr), CP2P_EMALFORMED);
    free(p);
}
END_TEST

START_TEST(test_command_validity)
{
    uint8_t c[12] = "version";
    ck_assert_int_eq(cp2p_command_valid(c), 1);
    uint8_t e[12] = {0};
    ck_assert_int_eq(cp2p_command_valid(e), 0); /* empty */
    uint8_t g[12] = "ver\0sion";
    ck_assert_int_eq(cp2p_command_valid(g), 0); /* bytes after the NUL */
    uint8_t x[12] = "ver\x01";
    ck_assert_int_eq(cp2p_command_valid(x), 0); /* control char */
    uint8_t full[12] = {'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l'};
    ck_assert_int_eq(cp2p_command_valid(full), 1);
    uint8_t buf[24];
    memcpy(buf, btc_net_get(BTC_NET_REGTEST)->magic, 4);
    memset(buf + 4, 0xAB, 20);
    cp2p_msghdr h;
    ck_assert_int_eq(cp2p_msghdr_decode(buf, 24, &h), -(int)CP2P_R_BAD_COMMAND);
}
END_TEST

START_TEST(test_extmsg_header)
{
    const btc_net *net = btc_net_get(BTC_NET_REGTEST);
    uint8_t h44[44];
    cp2p_msghdr_encode_ext(h44, net->magic, "block", 5000000000ull);
    cp2p_msghdr h;
    ck_assert_int_eq(cp2p_msghdr_decode(h44, 24, &h), 0); /* needs 44 */
    ck_assert_int_eq(cp2p_msghdr_decode(h44, 43, &h), 0);
    ck_assert_int_eq(cp2p_msghdr_decode(h44, 44, &h), 44);
    ck_assert_int_eq(h.ext, 1);
    ck_assert_str_eq(h.cmd, "block");
    ck_assert_uint_eq(h.len, 5000000000ull);
    ck_assert_uint_eq(h.hdr_len, 44);
    /* checksum field 0, length field must be 0xFFFFFFFF */
    ck_assert_uint_eq(cd_le32(h44 + 20), 0);
    h44[16] = 0;
    ck_assert_int_eq(cp2p_msghdr_decode(h44, 44, &h), -(int)CP2P_R_MALFORMED);
    /* nested extmsg is rejected */
    cp2p_msghdr_encode_ext(h44, net->magic, "extmsg", 10);
    ck_assert_int_eq(cp2p_msghdr_decode(h44, 44, &h), -(int)CP2P_R_MALFORMED);
}
END_TEST

START_TEST(test_headers_trailing_byte)
{
    size_t n;
    uint8_t *blk = cd_test_read_file("mainnet/block413567.raw", &n);
    uint8_t two[160];
    memcpy(two, blk, 80);
    memcpy(two + 80, blk, 80);
    cp2p_buf b = {0};
    cp2p_enc_headers(&b, two, 2);
    ck_assert_uint_eq(b.len, 1 + 2 * 81);
    ck_assert_uint_eq(b.p[81], 0); /* tx count */
    ck_assert_uint_eq(b.p[162], 0);
    uint8_t out[2 * 80];
    size_t cnt;
    ck_assert_int_eq(cp2p_dec_headers(b.p, b.len, out, 2, &cnt), CP2P_OK);
    ck_assert_uint_eq(cnt, 2);
    ck_assert_mem_eq(out, blk, 80);
    /* without the trailing byte: malformed (not silently mis-aligned) */
    ck_assert_int_eq(cp2p_dec_headers(b.p, b.len - 1, out, 2, &cnt), CP2P_EMALFORMED);
    /* count 0 is a valid "no more headers" */
    uint8_t z = 0;
    ck_assert_int_eq(cp2p_dec_headers(&z, 1, out, 2, &cnt), CP2P_OK);
    ck_assert_uint_eq(cnt, 0);
    /* 2001 headers: refused */
    cp2p_buf big = {0};
    uint8_t *many = calloc(2001, 80);
    cp2p_enc_headers(&big, many, 2001);
    uint8_t *o2 = malloc(2001 * 80);
    ck_assert_int_eq(cp2p_dec_headers(big.p, big.len, o2, 2001, &cnt), CP2P_EMALFORMED);
    free(o2);
    free(many);
    cp2p_buf_free(&big);
    cp2p_buf_free(&b);
    free(blk);
}
END_TEST

START_TEST(test_compactsize_edges)
{
    cp2p_inv v[2];
    size_t n;
    /* non-canonical count fd 0100 */
    uint8_t nc[3 + 36] = {0xfd, 0x01, 0x00};
    ck_assert_int_eq(cp2p_dec_inv(nc, sizeof(nc), v, 2, &n), CP2P_EMALFORMED);
    /* canonical 1 */
    uint8_t ok[1 + 36] = {0x01, 0x02, 0, 0, 0};
    ck_assert_int_eq(cp2p_dec_inv(ok, sizeof(ok), v, 2, &n), CP2P_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(v[0].type, CP2P_INV_BLOCK);
    /* 9-byte CompactSize > 0xFFFFFFFF: refused like the node does */
    uint8_t huge[9] = {0xff, 0, 0, 0, 0, 1, 0, 0, 0};
    ck_assert_int_eq(cp2p_dec_inv(huge, sizeof(huge), v, 2, &n), CP2P_EMALFORMED);
    /* count larger than the bytes present */
    uint8_t lie[5] = {0xfe, 0xff, 0xff, 0xff, 0x0f};
    ck_assert_int_eq(cp2p_dec_inv(lie, sizeof(lie), v, 2, &n), CP2P_EMALFORMED);
    /* truncated CompactSize */
    uint8_t tr[2] = {0xfd, 0x01};
    ck_assert_int_eq(cp2p_dec_inv(tr, sizeof(tr), v, 2, &n), CP2P_EMALFORMED);
    ck_assert_int_eq(cp2p_dec_inv(tr, 0, v, 2, &n), CP2P_EMALFORMED);
    /* writer emits minimal forms */
    cp2p_buf b = {0};
    cp2p_buf_varint(&b, 252);
    cp2p_buf_varint(&b, 253);
    cp2p_buf_varint(&b, 0x10000);
    cp2p_buf_varint(&b, 0x100000000ull);
    assert_hex(b.p, b.len,
               "fc"
               "fdfd00"
               "fe00000100"
               "ff0000000001000000");
    cp2p_buf_free(&b);
}
END_TEST

START_TEST(test_inv_limits)
{
    ck_assert_uint_eq(cp2p_inv_max_entries(2097152), 58254);
    ck_assert_uint_eq(cp2p_inv_max_entries(1048576), 29126);
    cp2p_inv items[3];
    for (int i = 0; i < 3; i++) {
        items[i].type = CP2P_INV_TX;
        memset(items[i].hash, i + 1, 32);
    }
    cp2p_buf b = {0};
    cp2p_enc_inv(&b, items, 3);
    ck_assert_uint_eq(b.len, 1 + 3 * 36);
    cp2p_inv back[3];
    size_t n;
    ck_assert_int_eq(cp2p_dec_inv(b.p, b.len, back, 3, &n), CP2P_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(back[2].hash, items[2].hash, 32);
    cp2p_buf_free(&b);
}
END_TEST

START_TEST(test_version_roundtrip)
{
    cp2p_version v = {0}, w;
    v.version = 70016;
    v.services = 0;
    v.timestamp = 1700000000;
    v.nonce = 0x1122334455667788ull;
    strcpy(v.user_agent, "/conduit-p2p:0.1/");
    v.start_height = 116;
    v.relay = 0;
    uint8_t ip[16] = {0};
    ip[10] = ip[11] = 0xff;
    ip[12] = 127;
    ip[15] = 1;
    cp2p_buf b = {0};
    cp2p_enc_version(&b, &v, ip, 18444);
    /* 4+8+8+26+26+8+1+17+4+1 */
    ck_assert_uint_eq(b.len, 103);
    /* port is big-endian at the end of addr_recv */
    ck_assert_uint_eq(b.p[20 + 24], 0x48);
    ck_assert_uint_eq(b.p[20 + 25], 0x0c);
    ck_assert_int_eq(cp2p_dec_version(b.p, b.len, &w), CP2P_OK);
    ck_assert_int_eq(w.version, 70016);
    ck_assert_uint_eq(w.nonce, v.nonce);
    ck_assert_str_eq(w.user_agent, v.user_agent);
    ck_assert_int_eq(w.start_height, 116);
    ck_assert_int_eq(w.relay, 0);
    /* the node appends an association id: tolerated */
    cp2p_buf_u8(&b, 0);
    ck_assert_int_eq(cp2p_dec_version(b.p, b.len, &w), CP2P_OK);
    /* truncated inside the user agent: malformed */
    ck_assert_int_eq(cp2p_dec_version(b.p, 90, &w), CP2P_EMALFORMED);
    ck_assert_int_eq(cp2p_dec_version(b.p, 10, &w), CP2P_EMALFORMED);
    cp2p_buf_free(&b);
}
END_TEST

START_TEST(test_reject_and_addr)
{
    cp2p_reject r = {0}, s;
    strcpy(r.message, "tx");
    r.code = CP2P_REJECT_INVALID;
    strcpy(r.reason, "bad-txns-inputs-missingorspent");
    r.has_hash = 1;
    memset(r.hash, 0x5a, 32);
    cp2p_buf b = {0};
    cp2p_enc_reject(&b, &r);
    ck_assert_int_eq(cp2p_dec_reject(b.p, b.len, &s), CP2P_OK);
    ck_assert_str_eq(s.message, "tx");
    ck_assert_uint_eq(s.code, 0x10);
    ck_assert_str_eq(s.reason, r.reason);
    ck_assert_int_eq(s.has_hash, 1);
    ck_assert_mem_eq(s.hash, r.hash, 32);
    /* without hash (parse error rejects) */
    ck_assert_int_eq(cp2p_dec_reject(b.p, b.len - 32, &s), CP2P_OK);
    ck_assert_int_eq(s.has_hash, 0);
    cp2p_buf_free(&b);

    cp2p_addr a = {1700000000, 0x21, {0}, 8333}, c;
    a.ip[10] = a.ip[11] = 0xff;
    a.ip[12] = 10;
    cp2p_enc_addr(&b, &a, 1);
    ck_assert_uint_eq(b.len, 31);
    size_t n;
    ck_assert_int_eq(cp2p_dec_addr(b.p, b.len, &c, 1, &n), CP2P_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(c.port, 8333);
    ck_assert_uint_eq(c.services, 0x21);
    ck_assert_int_eq(cp2p_dec_addr(b.p, b.len - 1, &c, 1, &n), CP2P_EMALFORMED);
    cp2p_buf_free(&b);

    uint64_t x;
    uint8_t ping[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ck_assert_int_eq(cp2p_dec_u64(ping, 8, &x), CP2P_OK);
    ck_assert_uint_eq(x, 0x0807060504030201ull);
    ck_assert_int_eq(cp2p_dec_u64(ping, 7, &x), CP2P_EMALFORMED);
    int ann;
    uint8_t sc[9] = {0, 1};
    ck_assert_int_eq(cp2p_dec_sendcmpct(sc, 9, &ann, &x), CP2P_OK);
    ck_assert_int_eq(ann, 0);
    ck_assert_uint_eq(x, 1);
}
END_TEST

START_TEST(test_locator_heights)
{
    int64_t h[64];
    size_t n = cp2p_locator_heights(116, h, 64);
    /* 116..106 one by one (11 entries), then steps 2, 4, 8, ... then 0 */
    ck_assert_int_eq(h[0], 116);
    ck_assert_int_eq(h[10], 106);
    ck_assert_int_eq(h[11], 104);
    ck_assert_int_eq(h[12], 100);
    ck_assert_int_eq(h[13], 92);
    ck_assert_int_eq(h[n - 1], 0);
    for (size_t i = 1; i < n; i++)
        ck_assert_int_lt(h[i], h[i - 1]);
    n = cp2p_locator_heights(0, h, 64);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(h[0], 0);
    n = cp2p_locator_heights(1000000, h, 64);
    ck_assert_uint_le(n, 64);
    ck_assert_int_eq(h[n - 1], 0);
}
END_TEST

START_TEST(test_recv_limits)
{
    cp2p_options o;
    cp2p_options_init(&o, CNET(btc_net_get(BTC_NET_REGTEST)));
    ck_assert_uint_eq(cp2p_recv_limit(&o, "inv"), 2097152);
    ck_assert_uint_eq(cp2p_recv_limit(&o, "protoconf"), 1048576);
    ck_assert_uint_eq(cp2p_recv_limit(&o, "tx"), 1000000000ull);
    ck_assert_uint_eq(cp2p_recv_limit(&o, "block"), UINT64_MAX);
    ck_assert_str_eq(cp2p_reason_str(CP2P_R_BAD_CHECKSUM), "bad-checksum");
    ck_assert_str_eq(cp2p_strerror(CP2P_ETOOBIG), "message too big for peer");
}
END_TEST

START_TEST(test_mempool_authch)
{
    cp2p_buf b = {0};
    int64_t age;
    cp2p_enc_mempool(&b, -1);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(cp2p_dec_mempool(b.p, 0, &age), CP2P_OK);
    ck_assert_int_eq(age, -1);
    cp2p_enc_mempool(&b, 600);
    assert_hex(b.p, b.len, "015802000000000000");
    ck_assert_int_eq(cp2p_dec_mempool(b.p, b.len, &age), CP2P_OK);
    ck_assert_int_eq(age, 600);
    ck_assert_int_eq(cp2p_dec_mempool(b.p, 5, &age), CP2P_EMALFORMED);
    cp2p_buf_free(&b);
    uint8_t ch[32], back[32];
    uint32_t v;
    memset(ch, 0xc3, 32);
    cp2p_enc_authch(&b, ch);
    ck_assert_uint_eq(b.len, 40);
    ck_assert_int_eq(cp2p_dec_authch(b.p, b.len, &v, back), CP2P_OK);
    ck_assert_uint_eq(v, 1);
    ck_assert_mem_eq(back, ch, 32);
    ck_assert_int_eq(cp2p_dec_authch(b.p, 39, &v, back), CP2P_EMALFORMED);
    cp2p_buf_free(&b);
}
END_TEST

static Suite *suite_codec(void)
{
    Suite *s = suite_create("p2p_codec");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, test_genesis_getheaders_vector);
    tcase_add_test(tc, test_verack_vector);
    tcase_add_test(tc, test_protoconf_vectors);
    tcase_add_test(tc, test_command_validity);
    tcase_add_test(tc, test_extmsg_header);
    tcase_add_test(tc, test_headers_trailing_byte);
    tcase_add_test(tc, test_compactsize_edges);
    tcase_add_test(tc, test_inv_limits);
    tcase_add_test(tc, test_version_roundtrip);
    tcase_add_test(tc, test_reject_and_addr);
    tcase_add_test(tc, test_locator_heights);
    tcase_add_test(tc, test_recv_limits);
    tcase_add_test(tc, test_mempool_authch);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_codec)
