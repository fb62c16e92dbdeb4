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

-- The key pages' reads of the blocks above the key-rows mark (sql/014:
-- cd_key_outs_above, cd_key_hist_above; read by cd_history and cd_utxos):
-- the same functions (arguments, rows), their joins to transactions on
-- (block_id, tx_pos) made the same per-row probes. Joined, over 60
-- partitions the planner hashed a scan of every transactions partition for
-- cd_key_hist_above's spends (auto_explain of cd_history on a 225k-tx
-- index, docs/PERFORMANCE.md "Lookups over many partitions").
CREATE OR REPLACE FUNCTION cd_key_outs_above(k "char", key bytea, m integer)
    RETURNS TABLE (tx_hash bytea, height integer, pos integer, vout integer, value bigint,
                   script bytea)
    LANGUAGE sql STABLE AS $$
    WITH ab AS (SELECT block_id, height FROM blocks WHERE on_best_chain AND height > m)
    SELECT t.tx_hash, ab.height, o.tx_pos, o.idx, o.value, o.script
    FROM ab JOIN outputs o ON o.block_id = ab.block_id
    CROSS JOIN LATERAL (SELECT x.tx_hash FROM transactions x
                        WHERE x.block_id = o.block_id AND x.tx_pos = o.tx_pos LIMIT 1) t
    WHERE k = 's' AND o.script_hash || ''::bytea = key
    UNION ALL
    SELECT DISTINCT t.tx_hash, ab.height, o.tx_pos, o.idx, o.value, o.script
    FROM ab JOIN pushdata p ON p.block_id = ab.block_id
    JOIN outputs o ON o.block_id = p.block_id AND o.tx_pos = p.tx_pos AND o.idx = p.idx
    CROSS JOIN LATERAL (SELECT x.tx_hash FROM transactions x
                        WHERE x.block_id = o.block_id AND x.tx_pos = o.tx_pos LIMIT 1) t
    WHERE k = 'p' AND p.push_hash || ''::bytea = key AND (p.flags & 5) <> 0
$$;

CREATE OR REPLACE FUNCTION cd_key_hist_above(k "char", key bytea, m integer)
    RETURNS TABLE (tx_hash bytea, height integer, pos integer, dir integer)
    LANGUAGE sql STABLE AS $$
    WITH ab AS (SELECT block_id, height FROM blocks WHERE on_best_chain AND height > m),
    mine AS (SELECT * FROM cd_key_outs_above(k, key, m)),
    r AS (
        SELECT tx_hash, height, pos, 1 AS d FROM mine
        UNION ALL
        SELECT t.tx_hash, ab.height, p.tx_pos, 4
        FROM ab JOIN pushdata p ON p.block_id = ab.block_id
        CROSS JOIN LATERAL (SELECT x.tx_hash FROM transactions x
                            WHERE x.block_id = p.block_id AND x.tx_pos = p.tx_pos LIMIT 1) t
        WHERE k = 'p' AND p.push_hash || ''::bytea = key
        UNION ALL
        -- inputs above the mark spending an output of key: below the mark
        -- (key_outs by outpoint) or above it (mine)
        SELECT t.tx_hash, ab.height, i.tx_pos, 2
        FROM ab JOIN inputs i ON i.block_id = ab.block_id
        CROSS JOIN LATERAL (SELECT x.tx_hash FROM transactions x
                            WHERE x.block_id = i.block_id AND x.tx_pos = i.tx_pos LIMIT 1) t
        WHERE EXISTS (SELECT 1 FROM transactions pt
                      JOIN blocks pb ON pb.block_id = pt.block_id AND pb.on_best_chain
                      JOIN key_outs ko ON ko.block_id = pt.block_id AND ko.pos = pt.tx_pos
                                      AND ko.vout = i.prev_idx
                      WHERE pt.tx_hash = i.prev_hash AND ko.kind = k
                        AND ko.key = cd_key_hist_above.key
                        AND pb.height <= m)
           OR EXISTS (SELECT 1 FROM mine WHERE mine.tx_hash = i.prev_hash
                                            AND mine.vout = i.prev_idx)
    )
    SELECT tx_hash, height, pos, bit_or(d) FROM r GROUP BY tx_hash, height, pos
$$;
