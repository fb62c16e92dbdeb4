-- 020_partition_fence.sql - the roll and the merge's swap wait for the
-- key-rows step's batch instead of losing to it (issue 18).
--
-- Why: with key_rows = on the key-rows process (src/index/cd_keyrows.c)
-- runs cd_key_rows_advance back to back, each batch one transaction of up
-- to seconds that reads the four partitioned tables and so holds ACCESS
-- SHARE on their parents until it commits. cd_partition_roll (sql/017,
-- sql/019) and cd_partition_merge_swap (sql/019) lock the parents ACCESS
-- EXCLUSIVE with lock_timeout at half of deadlock_timeout, so that only they
-- lose a wait against a parser's unit or a reorg; against the batches they
-- lost every time: a 600k-tx run with partition_txs 100k and key_rows on
-- never rolled (tests/functional/test_partition_fence.py failed before).
--
-- The fence: advisory lock 4242424205 (the list of the daemon's keys:
-- src/pg/cd_pg_int.h and the helpers' own, cd_catchup.c, cd_merge.c). A key
-- batch takes it shared as its FIRST lock, so that while it waits it holds
-- nothing anyone else needs; the roll and the swap take it exclusive after
-- their cheap test (a full tip, a prepared merge: rare) and before any
-- table lock, with no timeout: they wait for the batch in progress (at most
-- its length, sized to ~0.5 s by the key-rows process), and the next batch
-- waits for them; then their LOCK TABLE competes only with the parsers'
-- units, as designed. No cycle: the fence's holders wait for nothing the
-- batches hold (a batch takes the tip lock, 4242424202, only after the
-- fence), and nothing but the three functions below takes the fence.
--
-- Done by renaming the released functions (their text is unchanged) and
-- wrapping them under their old names: callers (C, tests, benchmarks) call
-- the same names; the *_unfenced ones must only be called by the wrappers.

ALTER FUNCTION cd_key_rows_advance(integer) RENAME TO cd_key_rows_advance_unfenced;
ALTER FUNCTION cd_partition_roll(bigint) RENAME TO cd_partition_roll_unfenced;
ALTER FUNCTION cd_partition_merge_swap() RENAME TO cd_partition_merge_swap_unfenced;

-- sql/016's batch, behind the fence taken shared.
CREATE FUNCTION cd_key_rows_advance(max_blocks integer) RETURNS integer
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(4242424205);
    RETURN cd_key_rows_advance_unfenced(max_blocks);
END
$$;
COMMENT ON FUNCTION cd_key_rows_advance(integer) IS
    'One batch of the key-rows step (sql/014, sql/016) behind the partition fence taken shared (sql/020): returns the blocks derived.';

-- sql/019's roll: the cheap test without any lock, then the fence, then
-- the roll (which tests again under its table locks).
CREATE FUNCTION cd_partition_roll(max_txs bigint) RETURNS bigint
    LANGUAGE plpgsql AS $$
BEGIN
    IF max_txs IS NULL OR max_txs <= 0 OR cd_partition_tip_txs() < max_txs THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(4242424205);
    RETURN cd_partition_roll_unfenced(max_txs);
END
$$;
COMMENT ON FUNCTION cd_partition_roll(bigint) IS
    'Closes the open tip partition if it holds max_txs txs (sql/017), after the key-rows batch in progress (sql/020): returns the bound, or NULL.';

-- sql/019's swap: nothing prepared, nothing to wait for.
CREATE FUNCTION cd_partition_merge_swap() RETURNS text
    LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM partition_merge) THEN
        RETURN 'none';
    END IF;
    PERFORM pg_advisory_xact_lock(4242424205);
    RETURN cd_partition_merge_swap_unfenced();
END
$$;
COMMENT ON FUNCTION cd_partition_merge_swap() IS
    'Swaps a prepared merge in (sql/019), after the key-rows batch in progress (sql/020): none, changed or merged.';
