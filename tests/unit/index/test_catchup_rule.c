/*
 * test_catchup_rule.c - the rule by which catchup_indexes = auto chooses
 * between catch-up mode and live indexes (cd_catchup_weigh): the block
 * threshold, then the backlog's estimated txs against the indexed txs, an
 * empty index and absent indexes always dropping, and the text the status
 * and the log show.
 */
#include "cd_test.h"

#include "cd_catchup.h"

static cd_catchup_weighing base(void)
{
    cd_catchup_weighing w = {.behind = 1200,
                             .threshold = 1000,
                             .ratio_pct = 50,
                             .indexed_txs = 6e6,
                             .per_block = 1500.0 / 4.5, /* 0.4M over 1200 blocks */
                             .had = 4,
                             .total = 4};
    return w;
}

START_TEST(small_backlog_on_big_index_stays_live)
{
    cd_catchup_weighing w = base();
    char why[160];
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 0);
    ck_assert(w.backlog_txs > 3.99e5 && w.backlog_txs < 4.01e5);
    ck_assert_str_eq(why, "live (backlog 1200 blocks, ~0.4M txs < 50% of 6M indexed)");
}
END_TEST

START_TEST(large_fraction_drops)
{
    cd_catchup_weighing w = base();
    w.behind = 9000; /* 3M txs = 50% of 6M: at the ratio drops */
    char why[160];
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 1);
    ck_assert_str_eq(why, "catch-up (backlog 9000 blocks, ~3M txs >= 50% of 6M indexed)");
    w.behind = 8999;
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 0);
}
END_TEST

START_TEST(block_threshold_first)
{
    cd_catchup_weighing w = base();
    w.behind = 1000;
    w.indexed_txs = 0; /* even an empty index: within the threshold, live */
    char why[160];
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 0);
    ck_assert_str_eq(why, "live (backlog 1000 blocks <= catchup_threshold 1000)");
    w = base();
    w.per_block = 1e6; /* a huge backlog in txs, but few blocks */
    w.behind = 10;
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 0);
}
END_TEST

START_TEST(empty_index_drops_at_once)
{
    cd_catchup_weighing w = base();
    w.indexed_txs = 0;
    w.per_block = 0; /* nothing indexed: no density either */
    w.behind = 812000;
    char why[160];
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 1);
    ck_assert_str_eq(why, "catch-up (backlog 812000 blocks, empty index)");
}
END_TEST

START_TEST(no_density_yet_drops)
{
    /* the parsers indexed a few blocks out of order, none of the best
     * chain connected yet: no txs-per-block figure, so the backlog cannot
     * be weighed; it is the start of an initial sync */
    cd_catchup_weighing w = base();
    w.indexed_txs = 218;
    w.per_block = 0;
    w.behind = 301;
    w.threshold = 20;
    char why[160];
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 1);
    ck_assert_str_eq(why, "catch-up (backlog 301 blocks, no block of the best chain indexed yet)");
}
END_TEST

START_TEST(absent_indexes_keep_catching_up)
{
    /* a restart during catch-up: the rebuild is owed whatever is chosen */
    cd_catchup_weighing w = base();
    w.had = 0;
    char why[160];
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 1);
    /* some present: weighed as usual (the missing ones are built live) */
    w.had = 3;
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 0);
}
END_TEST

START_TEST(ratio_zero_is_the_block_rule)
{
    cd_catchup_weighing w = base();
    w.ratio_pct = 0;
    char why[160];
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 1);
    /* and a ratio above 100%: the backlog must exceed the index */
    w = base();
    w.ratio_pct = 200;
    w.behind = 40000; /* 13.3M >= 12M */
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 1);
    ck_assert_str_eq(why, "catch-up (backlog 40000 blocks, ~13M txs >= 200% of 6M indexed)");
}
END_TEST

START_TEST(small_counts_read_plainly)
{
    cd_catchup_weighing w = base();
    w.behind = 40;
    w.threshold = 20;
    w.indexed_txs = 9030;
    w.per_block = 30.1;
    char why[160];
    cd_catchup_weigh(&w, why, sizeof(why));
    ck_assert_int_eq(w.drop, 0);
    ck_assert_str_eq(why, "live (backlog 40 blocks, ~1.2k txs < 50% of 9k indexed)");
}
END_TEST

static Suite *suite_catchup_rule(void)
{
    Suite *s = suite_create("catchup_rule");
    TCase *tc = tcase_create("weigh");
    tcase_add_test(tc, small_backlog_on_big_index_stays_live);
    tcase_add_test(tc, large_fraction_drops);
    tcase_add_test(tc, block_threshold_first);
    tcase_add_test(tc, empty_index_drops_at_once);
    tcase_add_test(tc, no_density_yet_drops);
    tcase_add_test(tc, absent_indexes_keep_catching_up);
    tcase_add_test(tc, ratio_zero_is_the_block_rule);
    tcase_add_test(tc, small_counts_read_plainly);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_catchup_rule)
