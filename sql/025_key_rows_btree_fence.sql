-- 025_key_rows_btree_fence.sql - a key-rows batch never runs while catch-up
-- mode has dropped the open partition's B-trees (a race CI found).
--
-- Why: the key-rows process (src/index/cd_keyrows.c) skips its batches
-- while catch-up mode has dropped the open tip's B-trees
-- (cd_pg_secondary_indexes): a batch resolves spends and keys through them,
-- and without them it reads the open partitions whole. It tested that in
-- one statement and ran the batch in the next, so the index-ddl helper
-- could drop them in between (CI, 2026-12-07: the drops logged at .034, a
-- batch of 10.5 ms ending at .044, planned without them). The rows it
-- wrote were right; the cost at scale is a batch that reads whole tables.
-- tests/functional/test_key_pages.py
-- ::test_a_batch_never_runs_on_dropped_btrees failed before.
--
-- The fix, with the partition fence (sql/020, advisory lock 4242424205):
--  * cd_key_rows_batch: the test and the batch in one transaction, behind
--    the fence taken shared as its first lock (as sql/020's batch);
--  * cd_secondary_index_drop takes the fence exclusive as its first lock:
--    a drop waits for the batch in progress (at most its length, sized to
--    ~0.5 s by the key-rows process), and the batches after it see the
--    index gone. The build needs no fence: until every B-tree of the open
--    partition is back, the batches return -1.
-- No cycle, as in sql/020: a drop holding the fence then waits only for
-- the index's own lock (another drop or build of it, which never take the
-- fence shared) and for the table (the parsers' units, readers, which never
-- wait for the fence); every holder of the fence shared takes it first.

-- As sql/020 did for the batch: the released function renamed (its text
-- unchanged) and wrapped under its old name, which callers (C, tests,
-- benchmarks) keep calling; the *_unfenced one only by the wrapper.
ALTER FUNCTION cd_secondary_index_drop(text) RENAME TO cd_secondary_index_drop_unfenced;

CREATE FUNCTION cd_secondary_index_drop(idx text) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(4242424205);
    RETURN cd_secondary_index_drop_unfenced(idx);
END
$$;

CREATE FUNCTION cd_key_rows_batch(max_blocks integer) RETURNS integer
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(4242424205);
    IF EXISTS (SELECT 1 FROM secondary_index_parts s
               WHERE NOT s.closed AND to_regclass(quote_ident(s.name)) IS NULL) THEN
        RETURN -1;
    END IF;
    RETURN cd_key_rows_advance(max_blocks);
END
$$;

COMMENT ON FUNCTION cd_key_rows_batch(integer) IS
    'The key-rows process''s batch (sql/025): -1 while an index of the open partition is dropped (a catch-up), else cd_key_rows_advance(max_blocks), in one transaction behind the partition fence.';

COMMENT ON FUNCTION cd_secondary_index_drop(text) IS
    'Drops one secondary index if present (sql/013), behind the partition fence taken exclusive (sql/025): after any key-rows batch in progress. Returns whether one was there.';
