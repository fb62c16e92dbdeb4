/*
 * test_common.c - hex, little-endian helpers, sha256d, logging levels,
 * host:port addresses, the hash set.
 */
#include "cd_test.h"
#include "cd_err.h"
#include "cd_hash.h"
#include "cd_hashset.h"
#include "cd_hostport.h"
#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>

START_TEST(test_hex_roundtrip)
{
    uint8_t in[4] = {0x00, 0xab, 0x10, 0xff}, out[4];
    char hex[9];
    cd_hex_encode(hex, in, 4);
    ck_assert_str_eq(hex, "00ab10ff");
    memset(hex, 'x', sizeof(hex));
    ck_assert_ptr_eq(cd_hex_put(hex, in, 2), hex + 4);
    ck_assert_mem_eq(hex, "00abx", 5); /* no NUL written */
    cd_hex_encode_rev(hex, in, 4);
    ck_assert_str_eq(hex, "ff10ab00");
    ck_assert_int_eq(cd_hex_decode(out, 4, "00AB10ff"), 0);
    ck_assert_mem_eq(out, in, 4);
    ck_assert_int_eq(cd_hex_decode_rev(out, 4, "ff10ab00"), 0);
    ck_assert_mem_eq(out, in, 4);
    ck_assert_int_eq(cd_hex_decode(out, 4, "00ab10f"), -1);
    ck_assert_int_eq(cd_hex_decode(out, 4, "00ab10fg"), -1);
}
END_TEST

START_TEST(test_le)
{
    uint8_t b[8];
    cd_put_le32(b, 0x11223344u);
    ck_assert_uint_eq(b[0], 0x44);
    ck_assert_uint_eq(cd_le32(b), 0x11223344u);
    cd_put_le64(b, 0x0102030405060708ull);
    ck_assert_uint_eq(b[0], 0x08);
    ck_assert_uint_eq(cd_le64(b), 0x0102030405060708ull);
    cd_put_le16(b, 0xabcd);
    ck_assert_uint_eq(cd_le16(b), 0xabcd);
}
END_TEST

START_TEST(test_sha256d)
{
    /* Empty payload checksum of the p2p framing: 5df6e0e2... */
    uint8_t h[32];
    cd_sha256d(h, "", 0);
    ck_assert_uint_eq(h[0], 0x5d);
    ck_assert_uint_eq(h[1], 0xf6);
    ck_assert_uint_eq(h[2], 0xe0);
    ck_assert_uint_eq(h[3], 0xe2);
    /* Incremental equals one-shot. */
    uint8_t h2[32];
    cd_sha256_ctx ctx;
    cd_sha256_init(&ctx);
    cd_sha256_update(&ctx, "ab", 2);
    cd_sha256_update(&ctx, "c", 1);
    cd_sha256d_final(&ctx, h2);
    cd_sha256d(h, "abc", 3);
    ck_assert_mem_eq(h, h2, 32);
    /* sha256("abc") test vector */
    char hex[65];
    cd_sha256(h, "abc", 3);
    cd_hex_encode(hex, h, 32);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

START_TEST(test_log_levels)
{
    cd_log_level l;
    ck_assert_int_eq(cd_log_level_parse("debug", &l), 0);
    ck_assert_int_eq(l, CD_LOG_DEBUG);
    ck_assert_int_eq(cd_log_level_parse("WARNING", &l), 0);
    ck_assert_int_eq(l, CD_LOG_WARN);
    ck_assert_int_eq(cd_log_level_parse("loud", &l), -1);
}
END_TEST

/* The forms the configuration accepts (connect, http_listen) and how they
 * split. */
START_TEST(test_hostport)
{
    char h[CD_HOSTPORT_MAX], buf[300];
    int port;
    ck_assert_int_eq(cd_hostport_parse("127.0.0.1:8333", h, sizeof(h), &port), 0);
    ck_assert_str_eq(h, "127.0.0.1");
    ck_assert_int_eq(port, 8333);
    ck_assert_int_eq(cd_hostport_parse("node.example", h, sizeof(h), &port), 0);
    ck_assert_str_eq(h, "node.example");
    ck_assert_int_eq(port, -1);
    ck_assert_int_eq(cd_hostport_parse("[::1]:0", h, sizeof(h), &port), 0);
    ck_assert_str_eq(h, "::1");
    ck_assert_int_eq(port, 0);
    ck_assert_int_eq(cd_hostport_parse("[fe80::1]", h, sizeof(h), &port), 0);
    ck_assert_int_eq(port, -1);
    ck_assert_int_eq(cd_hostport_parse("fe80::1", h, sizeof(h), &port), 0); /* bare v6 */
    ck_assert_str_eq(h, "fe80::1");
    ck_assert_int_eq(port, -1);
    const char *bad[] = {"",       ":80",    "host:",  "host:65536", "host:8a",  "[]:80",
                         "[::1]x", "[::1]:", "a b:80", "[::1",       "host:+80", "host:-1"};
    for (size_t i = 0; i < CD_ARRAY_LEN(bad); i++)
        ck_assert_msg(cd_hostport_parse(bad[i], h, sizeof(h), &port) == -1, "%s", bad[i]);
    char longer[300];
    memset(longer, 'a', 256);
    longer[256] = '\0';
    ck_assert_int_eq(cd_hostport_parse(longer, h, sizeof(h), &port), -1);
    ck_assert_int_eq(cd_hostport_parse("abcdef:1", h, 4, &port), -1); /* host too long */
    cd_hostport_format(buf, sizeof(buf), "::1", 8085);
    ck_assert_str_eq(buf, "[::1]:8085");
    cd_hostport_format(buf, sizeof(buf), "10.0.0.1", 18444);
    ck_assert_str_eq(buf, "10.0.0.1:18444");
}
END_TEST

/* Found by fuzz/fuzz_config (connect = {::1]): every address that parses
 * must format back (with a default port, as cd_config_finish completes a
 * peer) to text that parses to the same host and port; a host holding a
 * bracket did not ("[{::1]]:18444", "[a:18444"), so the daemon's own
 * effective configuration could not be loaded again. */
START_TEST(test_hostport_round_trip)
{
    const char *in[] = {"{::1]",
                        "::1]",
                        "[[a]",
                        "[a[:b]",
                        "a]b",
                        "a[b:80",
                        "[x]y]:1",
                        "127.0.0.1",
                        "[::1]:8333",
                        "fe80::1",
                        "node.example:18444"};
    for (size_t i = 0; i < CD_ARRAY_LEN(in); i++) {
        char h[CD_HOSTPORT_MAX], h2[CD_HOSTPORT_MAX], buf[CD_HOSTPORT_MAX + 8];
        int port, port2;
        if (cd_hostport_parse(in[i], h, sizeof(h), &port) != 0)
            continue;
        cd_hostport_format(buf, sizeof(buf), h, port < 0 ? 18444 : (unsigned)port);
        ck_assert_msg(cd_hostport_parse(buf, h2, sizeof(h2), &port2) == 0,
                      "%s -> %s does not parse", in[i], buf);
        ck_assert_str_eq(h, h2);
        ck_assert_int_eq(port2, port < 0 ? 18444 : port);
    }
    /* a long bare IPv6-like host: with brackets and a port it must still
     * fit (fuzz/fuzz_config: a 250-character one became 258 characters,
     * over the limit, so the completed connect entry did not load) */
    char longv6[CD_HOSTPORT_MAX];
    memset(longv6, 'a', 250);
    longv6[1] = longv6[3] = ':';
    longv6[250] = '\0';
    {
        char h[CD_HOSTPORT_MAX], h2[CD_HOSTPORT_MAX], buf[CD_HOSTPORT_MAX + 8];
        int port, port2;
        if (cd_hostport_parse(longv6, h, sizeof(h), &port) == 0) {
            cd_hostport_format(buf, sizeof(buf), h, 18444);
            ck_assert_msg(cd_hostport_parse(buf, h2, sizeof(h2), &port2) == 0,
                          "a %zu-character host formats to %zu characters that do not parse",
                          strlen(h), strlen(buf));
        }
    }
    /* brackets only delimit an IPv6 host: never part of one */
    const char *bad[] = {"{::1]", "::1]", "[[a]", "[a[:b]", "a]b", "a[b:80", "[x]y]:1"};
    char h[CD_HOSTPORT_MAX];
    int port;
    for (size_t i = 0; i < CD_ARRAY_LEN(bad); i++)
        ck_assert_msg(cd_hostport_parse(bad[i], h, sizeof(h), &port) == -1, "%s", bad[i]);
}
END_TEST

START_TEST(test_hashset)
{
    cd_hashset s = {0};
    uint8_t k[32] = {0};
    ck_assert(!cd_hashset_has(&s, k));
    for (uint32_t i = 0; i < 5000; i++) {
        cd_sha256(k, &i, sizeof(i));
        ck_assert_int_eq(cd_hashset_add(&s, k), 1);
        ck_assert_int_eq(cd_hashset_add(&s, k), 0);
    }
    ck_assert_uint_eq(cd_hashset_count(&s), 5000);
    for (uint32_t i = 0; i < 6000; i++) {
        cd_sha256(k, &i, sizeof(i));
        ck_assert_int_eq(cd_hashset_has(&s, k), i < 5000);
    }
    cd_hashset_clear(&s);
    ck_assert_uint_eq(cd_hashset_count(&s), 0);
    ck_assert(!cd_hashset_has(&s, k));
    ck_assert_int_eq(cd_hashset_add(&s, k), 1);
    cd_hashset_free(&s);
    ck_assert_uint_eq(cd_hashset_count(&s), 0);
    cd_hashset_free(&s);
}
END_TEST

/* One space: our codes by name, errno and LMDB's through their own tables. */
START_TEST(test_strerror)
{
    ck_assert_str_eq(cd_strerror(CD_OK), "ok");
    ck_assert_str_eq(cd_strerror(BTC_ERR_POW_HASH),
                     "hash above target (insufficient proof of work)");
    ck_assert_str_eq(cd_strerror(CD_HDRTREE_EBADTIME),
                     "bad timestamp (not above median time past, or too far in the future)");
    ck_assert_str_eq(cd_strerror(CD_BS_ERANGE), "read beyond the stored block");
    ck_assert_str_eq(cd_strerror(CD_PG_EDOWN), "PostgreSQL unreachable");
    ck_assert_str_eq(cd_strerror(CD_LOOKUP_ECORRUPT), "stored data contradicts the index");
    ck_assert_str_eq(cd_strerror(CD_ROWS_EMALFORMED), "malformed transactions");
    ck_assert_str_eq(cd_strerror(ENOENT), strerror(ENOENT));
    ck_assert_ptr_nonnull(strstr(cd_strerror(CD_BS_NOTFOUND), "MDB_NOTFOUND"));
    ck_assert_ptr_nonnull(strstr(cd_strerror(-30900), "cp2p_strerror"));
    ck_assert_str_eq(cd_strerror(-999), "unknown error");
    ck_assert_str_eq(cd_strerror(CD_ERR_CLI - 1), "unknown error");
}
END_TEST

static Suite *suite_common(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_hex_roundtrip);
    tcase_add_test(tc, test_le);
    tcase_add_test(tc, test_sha256d);
    tcase_add_test(tc, test_log_levels);
    tcase_add_test(tc, test_hostport);
    tcase_add_test(tc, test_hostport_round_trip);
    tcase_add_test(tc, test_hashset);
    tcase_add_test(tc, test_strerror);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_common)
