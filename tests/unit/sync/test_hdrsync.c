/*
 * test_hdrsync.c - the header sync's scheduling rule (src/sync/cd_hdrsync.c,
 * cd_hdrsync_next): what the controller does after each `headers` message
 * of a peer. The rule is a pure function of what the message was and what
 * the tree made of it, so every branch is checked here without a socket;
 * tests/functional/test_header_sync.py runs it against the simulated node.
 */
#include "cd_test.h"

#include "cd_err.h"
#include "cd_hdrsync.h"

static cd_hdrsync_step next(cd_hdrsync_reply r, unsigned *unc)
{
    return cd_hdrsync_next(&r, unc);
}

START_TEST(test_full_replies_continue)
{
    unsigned u = 9;
    /* new headers in a full reply: continue from its last header */
    cd_hdrsync_reply r = {.n = CD_HDRTREE_MAX_BATCH, .n_new = 2000, .reply = 1};
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_ASK_LAST);
    ck_assert_uint_eq(u, 0);
    /* some new: still along this branch, even while others sync */
    r.n_new = 1;
    r.others_in_flight = 1;
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_ASK_LAST);
    /* nothing new while another peer syncs the same chain: park */
    r.n_new = 0;
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_PARK);
    /* nothing new, nobody else: jump to our tip once... */
    r.others_in_flight = 0;
    r.from_tip = 0;
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_ASK_TIP);
    /* ...but a tip locator answered with known headers is another branch:
     * follow it from its last header */
    r.from_tip = 1;
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_ASK_LAST);
}
END_TEST

START_TEST(test_short_replies_end)
{
    unsigned u;
    cd_hdrsync_reply r = {.n = 0, .reply = 1, .unconnected = 1};
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_DONE);
    ck_assert_uint_eq(u, 1); /* an empty message says nothing about connecting */
    r.n = 1999;
    r.n_new = 5;
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_DONE);
    ck_assert_uint_eq(u, 0); /* connected: the count starts over */
    /* an announcement that connects: done, nothing asked */
    r.reply = 0;
    r.n = 1;
    r.n_new = 1;
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_DONE);
}
END_TEST

START_TEST(test_unconnected_announcements)
{
    unsigned u;
    cd_hdrsync_reply r = {.n = 1, .rc = CD_HDRTREE_EUNCONNECTED, .reply = 0, .unconnected = 0};
    /* the first: we may be behind, ask */
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_ASK_TIP);
    ck_assert_uint_eq(u, 1);
    /* the second in a row: misbehaviour */
    r.unconnected = u;
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_BAN);
    ck_assert_uint_eq(u, CD_HDRSYNC_MAX_UNCONNECTED);
    /* a reply to our own request that does not connect: misbehaviour at once */
    r.reply = 1;
    r.unconnected = 0;
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_BAN);
    ck_assert_uint_eq(u, 0);
    /* an announcement whose first header connects but a later one does not:
     * not "we are behind" but a broken batch */
    r.reply = 0;
    r.n = 3;
    r.bad_index = 2;
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_BAN);
}
END_TEST

START_TEST(test_bad_headers_and_our_errors)
{
    unsigned u;
    const int bad[] = {CD_HDRTREE_EBADPOW, CD_HDRTREE_EBADBITS, CD_HDRTREE_EBADTIME,
                       CD_HDRTREE_EINVALID};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cd_hdrsync_reply r = {.n = 10, .rc = bad[i], .reply = 1, .unconnected = 1};
        ck_assert_int_eq(next(r, &u), CD_HDRSYNC_BAN);
        ck_assert_uint_eq(u, 1); /* unchanged */
    }
    /* the store failed: not the peer's fault */
    cd_hdrsync_reply r = {.n = 10, .rc = CD_HDRTREE_ESTORE, .reply = 1};
    ck_assert_int_eq(next(r, &u), CD_HDRSYNC_STORE_ERROR);
    /* over the batch limit: banned whatever else */
    cd_hdrsync_reply big = {.n = CD_HDRTREE_MAX_BATCH + 1, .reply = 1, .n_new = 9};
    ck_assert_int_eq(next(big, &u), CD_HDRSYNC_BAN);
}
END_TEST

static Suite *suite_hdrsync(void)
{
    Suite *s = suite_create("hdrsync");
    TCase *tc = tcase_create("schedule");
    tcase_add_test(tc, test_full_replies_continue);
    tcase_add_test(tc, test_short_replies_end);
    tcase_add_test(tc, test_unconnected_announcements);
    tcase_add_test(tc, test_bad_headers_and_our_errors);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_hdrsync)
