-- 027_key_rows_usable_bounded.sql - a key page's look at the key-rows mark
-- reads at most cd_key_rows_lag_max() + 1 rows of `blocks`, not every block
-- above the mark (issue 18).
--
-- Why: cd_history and cd_utxos (sql/016, through cd_key_page_args) ask
-- cd_key_rows_usable() first whether the derived rows can serve the page:
-- are the txs of the best-chain blocks above the mark at most
-- cd_key_rows_lag_max() (20,000)? sql/014 answered with the sum over every
-- such block. With key_rows off (the default) the mark stays -1, so every
-- page of every key summed the whole chain: with 900,000 best-chain blocks
-- (mainnet's count) the look took 150 ms, and a typical key's history 150 ms
-- instead of 2.7 (docs/PERFORMANCE.md "Key pages at mainnet's block count").
-- The benchmarks' chains (7,200 blocks of 1,500 txs) did not show it.
--
-- A block holds at least its coinbase (tx_count >= 1), so the first
-- lag_max + 1 blocks above the mark, in height order, already sum past
-- lag_max when the whole range does: the answer is the same, and the read
-- stops after at most lag_max + 1 rows of blocks_height_idx (3.7 ms at mark
-- -1 under 900,000 blocks of 1 tx, the worst case; a mark near the tip
-- reads the few blocks above it). tests/functional/test_key_pages.py
-- ::test_key_pages_read_a_bounded_part_of_blocks failed before (it read
-- every block row).
CREATE OR REPLACE FUNCTION cd_key_rows_usable() RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT k.height FROM key_rows_mark k
    WHERE (SELECT coalesce(sum(a.tx_count), 0)
           FROM (SELECT b.tx_count FROM blocks b
                 WHERE b.on_best_chain AND b.height > k.height
                 ORDER BY b.height
                 LIMIT cd_key_rows_lag_max() + 1) a) <= cd_key_rows_lag_max()
$$;
