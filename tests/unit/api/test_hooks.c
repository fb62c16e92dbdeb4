/*
 * test_hooks.c - the webhook delivery's rules (cd_http_hooks.h): what an
 * answer means, the back-off with its jitter and caps, which receiver URLs
 * are accepted, and the signature against a known HMAC-SHA256 vector.
 */
#include "cd_test.h"

#include "cd_http_hooks.h"

#include <string.h>

START_TEST(test_classify)
{
    ck_assert_int_eq(cd_hook_classify(200), CD_HOOK_DONE);
    ck_assert_int_eq(cd_hook_classify(204), CD_HOOK_DONE);
    ck_assert_int_eq(cd_hook_classify(299), CD_HOOK_DONE);
    ck_assert_int_eq(cd_hook_classify(0), CD_HOOK_RETRY); /* refused, timeout, cut */
    ck_assert_int_eq(cd_hook_classify(500), CD_HOOK_RETRY);
    ck_assert_int_eq(cd_hook_classify(503), CD_HOOK_RETRY);
    ck_assert_int_eq(cd_hook_classify(408), CD_HOOK_RETRY);
    ck_assert_int_eq(cd_hook_classify(429), CD_HOOK_RETRY);
    ck_assert_int_eq(cd_hook_classify(400), CD_HOOK_SLOW);
    ck_assert_int_eq(cd_hook_classify(404), CD_HOOK_SLOW);
    ck_assert_int_eq(cd_hook_classify(301), CD_HOOK_SLOW); /* redirects not followed */
    ck_assert_int_eq(cd_hook_classify(100), CD_HOOK_SLOW);
}
END_TEST

START_TEST(test_backoff)
{
    /* r = 0.999..: the top of [d/2, d]; r = 0: the bottom */
    double hi = 0.999999;
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_RETRY, 1, 600, hi), 1.0, 1e-3);
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_RETRY, 2, 600, hi), 2.0, 1e-3);
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_RETRY, 4, 600, hi), 8.0, 1e-3);
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_RETRY, 4, 600, 0), 4.0, 1e-9);
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_RETRY, 40, 600, hi), 600.0, 1e-3);
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_RETRY, 1000000, 600, 0), 300.0, 1e-9);
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_RETRY, 3, 2, hi), 2.0, 1e-3);
    /* 4xx: from 60 s, never below it even with a small cap */
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_SLOW, 1, 600, hi), 60.0, 1e-3);
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_SLOW, 2, 600, hi), 120.0, 1e-3);
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_SLOW, 9, 600, hi), 600.0, 1e-3);
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_SLOW, 5, 2, hi), 60.0, 1e-3);
    /* a bad random number is no jitter, not a negative wait */
    ck_assert_double_eq_tol(cd_hook_backoff(CD_HOOK_RETRY, 1, 600, -3), 0.5, 1e-9);
}
END_TEST

START_TEST(test_url_check)
{
    const char *why;
    ck_assert_int_eq(cd_hook_url_check("http://127.0.0.1:8080/hook?a=1", &why), 0);
    ck_assert_int_eq(cd_hook_url_check("http://example.com", &why), 0);
    ck_assert_int_eq(cd_hook_url_check("HTTP://[::1]:9/x", &why), 0);
    ck_assert_int_eq(cd_hook_url_check("https://example.com/x", &why), -1);
    ck_assert_ptr_nonnull(strstr(why, "TLS"));
    ck_assert_int_eq(cd_hook_url_check("ftp://example.com/x", &why), -1);
    ck_assert_ptr_nonnull(strstr(why, "http://"));
    ck_assert_int_eq(cd_hook_url_check("/relative", &why), -1);
    ck_assert_int_eq(cd_hook_url_check("not a url", &why), -1);
    ck_assert_int_eq(cd_hook_url_check("http://u:p@example.com/", &why), -1);
    ck_assert_ptr_nonnull(strstr(why, "user"));
    ck_assert_int_eq(cd_hook_url_check("http://example.com/#f", &why), -1);
    ck_assert_int_eq(cd_hook_url_check("http:///path", &why), -1);
    char big[CD_HOOK_MAX_URL + 10];
    memset(big, 'a', sizeof(big));
    memcpy(big, "http://x/", 9);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(cd_hook_url_check(big, &why), -1);
    ck_assert_ptr_nonnull(strstr(why, "too long"));
}
END_TEST

START_TEST(test_sign)
{
    /* RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?" */
    char sig[72];
    const char *data = "what do ya want for nothing?";
    ck_assert_int_eq(cd_hook_sign("Jefe", data, strlen(data), sig), 0);
    ck_assert_str_eq(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* an empty body is signed too */
    ck_assert_int_eq(cd_hook_sign("k", "", 0, sig), 0);
    ck_assert_int_eq((int)strlen(sig), 71);
}
END_TEST

static Suite *suite_hooks(void)
{
    Suite *s = suite_create("hooks");
    TCase *tc = tcase_create("rules");
    tcase_add_test(tc, test_classify);
    tcase_add_test(tc, test_backoff);
    tcase_add_test(tc, test_url_check);
    tcase_add_test(tc, test_sign);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_hooks)
