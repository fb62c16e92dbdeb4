/*
 * test_merge_due.c - when the merge module starts a helper run
 * (cd_merge_due, cd_merge.h): pure scheduling arithmetic.
 */
#include "cd_test.h"

#include "cd_merge.h"

static cd_merge_sched at(cd_merge_last last, double end, int32_t parts)
{
    cd_merge_sched s = {
        .fan_in = 8, .running = 0, .last = last, .last_end = end, .parts_then = parts};
    return s;
}

START_TEST(off_or_running_never)
{
    cd_merge_sched s = at(CD_MERGE_NEVER, 0, 0);
    s.fan_in = 0;
    ck_assert_int_eq(cd_merge_due(&s, 1000, 5), 0);
    s.fan_in = 1; /* refused by the config; never due anyway */
    ck_assert_int_eq(cd_merge_due(&s, 1000, 5), 0);
    s = at(CD_MERGE_MERGED, 0, 5);
    s.running = 1;
    ck_assert_int_eq(cd_merge_due(&s, 1000, 9), 0);
}
END_TEST

START_TEST(first_and_after_a_merge_at_once)
{
    cd_merge_sched s = at(CD_MERGE_NEVER, 0, 0);
    ck_assert_int_eq(cd_merge_due(&s, 0.5, 3), 1);
    s = at(CD_MERGE_MERGED, 100, 4);
    ck_assert_int_eq(cd_merge_due(&s, 100, 4), 1);
}
END_TEST

START_TEST(nothing_waits_for_a_roll_or_the_idle_period)
{
    cd_merge_sched s = at(CD_MERGE_NOTHING, 100, 7);
    ck_assert_int_eq(cd_merge_due(&s, 101, 7), 0);
    ck_assert_int_eq(cd_merge_due(&s, 101, 0), 0); /* count unknown: no change seen */
    ck_assert_int_eq(cd_merge_due(&s, 101, 8), 1); /* a roll closed one */
    ck_assert_int_eq(cd_merge_due(&s, 100 + CD_MERGE_AGAIN_IDLE_S - 0.1, 7), 0);
    ck_assert_int_eq(cd_merge_due(&s, 100 + CD_MERGE_AGAIN_IDLE_S, 7), 1);
}
END_TEST

START_TEST(busy_changed_failed_back_off)
{
    cd_merge_sched s = at(CD_MERGE_BUSY, 100, 7);
    ck_assert_int_eq(cd_merge_due(&s, 100 + CD_MERGE_AGAIN_BUSY_S - 0.1, 8), 0);
    ck_assert_int_eq(cd_merge_due(&s, 100 + CD_MERGE_AGAIN_BUSY_S, 7), 1);
    s = at(CD_MERGE_CHANGED, 100, 7);
    ck_assert_int_eq(cd_merge_due(&s, 100 + CD_MERGE_AGAIN_CHANGED_S - 0.1, 8), 0);
    ck_assert_int_eq(cd_merge_due(&s, 100 + CD_MERGE_AGAIN_CHANGED_S, 7), 1);
    s = at(CD_MERGE_FAILED, 100, 7);
    ck_assert_int_eq(cd_merge_due(&s, 100 + CD_MERGE_AGAIN_FAILED_S - 0.1, 8), 0);
    ck_assert_int_eq(cd_merge_due(&s, 100 + CD_MERGE_AGAIN_FAILED_S, 7), 1);
}
END_TEST

static Suite *suite_merge_due(void)
{
    Suite *s = suite_create("merge_due");
    TCase *tc = tcase_create("due");
    tcase_add_test(tc, off_or_running_never);
    tcase_add_test(tc, first_and_after_a_merge_at_once);
    tcase_add_test(tc, nothing_waits_for_a_roll_or_the_idle_period);
    tcase_add_test(tc, busy_changed_failed_back_off);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_merge_due)
