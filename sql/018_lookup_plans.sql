-- 018_lookup_plans.sql - lookups by hash whose plan stays a probe when the
-- tables are partitioned (issue 18).
--
-- Why: sql/001's best_inputs and best_pushdata join transactions on
-- (block_id, tx_pos). With transactions range-partitioned on block_id into
-- N partitions, the planner costs that join's inner side as a probe of all
-- N partitions per outer row (run-time pruning is not costed), and from
-- ~50 partitions it prefers a hash join over a sequential scan of every
-- partition of transactions: the spender of an outpoint went from
-- 1-2 ms to 40-60 ms at 50 partitions, 100-270 ms at 200
-- (docs/PERFORMANCE.md "Height-range partitions", "The plans decide it").
--
-- What: the same views (same columns, names, types and rows), the spending
-- (resp. pushing) tx found by a LATERAL subquery that its LIMIT keeps the
-- planner from pulling up into a join. Its only possible plan is a nested
-- loop: per input (pushdata) row, one primary-key probe of transactions,
-- which on a partitioned table is an Append pruned at run time to the one
-- partition of the row's block_id. LIMIT 1 rather than OFFSET 0 (which
-- also fences the subquery): the planner estimates a probe of a
-- partitioned table by a parameter at one row per partition, so with
-- OFFSET 0 every row of the view would count as N rows to what joins it
-- (e.g. docs/QUERIES.md outputs_with_spends, best_pushdata joined to
-- best_inputs), and those joins would flip to scans in turn; LIMIT 1
-- states the primary key's truth, one row. Rows: the join was an inner
-- join on transactions' primary key, so it matched at most one tx per row
-- and dropped rows without one; the subquery returns at most one row per
-- row (the same primary key: LIMIT 1 drops nothing) and CROSS JOIN
-- LATERAL drops the rows for which it returns none. On an unpartitioned
-- table it is the plan the join had for a lookup by key
-- (docs/PERFORMANCE.md for the figures).
--
-- all_inputs and all_pushdata (sql/002) read these views and follow them.
-- Applications should read the views rather than re-join transactions
-- themselves (docs/QUERIES.md): the views carry the plan-stable form.
--
-- Order: this runs after the migration that partitions the tables (sql/017,
-- which re-creates the views over its tables), so the views end up in this
-- form over the partitioned tables; on unpartitioned tables it changes the
-- plans only (tests/functional/test_lookup_plans.py checks both).

CREATE OR REPLACE VIEW best_inputs AS
    SELECT i.prev_hash, i.prev_idx, t.tx_hash AS spend_tx_hash, i.in_idx,
           b.height, b.block_hash, i.block_id, i.tx_pos
    FROM inputs i
    JOIN blocks b ON b.block_id = i.block_id
    CROSS JOIN LATERAL (SELECT x.tx_hash FROM transactions x
                        WHERE x.block_id = i.block_id AND x.tx_pos = i.tx_pos
                        LIMIT 1) t
    WHERE b.on_best_chain;

CREATE OR REPLACE VIEW best_pushdata AS
    SELECT p.push_hash, p.flags, t.tx_hash, p.idx, b.height, b.block_hash,
           p.block_id, p.tx_pos
    FROM pushdata p
    JOIN blocks b ON b.block_id = p.block_id
    CROSS JOIN LATERAL (SELECT x.tx_hash FROM transactions x
                        WHERE x.block_id = p.block_id AND x.tx_pos = p.tx_pos
                        LIMIT 1) t
    WHERE b.on_best_chain;
