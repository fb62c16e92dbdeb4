-- 005_block_purge.sql - removing the rows of a block copy that failed.
--
-- Why: parsers commit a block's rows unit by unit while the merkle worker is
-- still checking the bytes against the header (the parallelism of the
-- pipeline). When a peer sent a wrong copy (a changed output, the
-- CVE-2012-2459 duplicate-tx mutation, a truncated or garbage body), those
-- rows and their unit markers used to stay: the right copy's units were then
-- skipped as "committed before", the block could never be marked indexed and
-- the indexed tip froze for good (issue 11, F1).
--
-- cd_block_purge(id) removes everything a copy of block `id` wrote —
-- transaction, input and pushdata rows and the unit markers — but only while
-- the block is not indexed: an indexed block's rows passed the merkle check
-- over the stored txids and are never touched. The blocks row stays (before
-- the first indexed tip exists, the lowest registered height decides where
-- the tip starts, so a row must never disappear); the next copy's
-- registration rewrites its tx count and size while it is not indexed (a
-- mutated copy registers one more tx than the header commits to). It runs
--   * in the transaction that finds the stored txids do not give the
--     header's merkle root (cd_pg.c, complete_locked): detection and removal
--     commit together;
--   * when the controller reports a failed copy whose units reached the
--     parsers (after every parser acknowledged them, before another copy is
--     dispatched);
--   * at start, for non-indexed blocks the block store does not hold, and
--     for stored ones whose registered shape differs from the stored copy.
-- Every table with per-block rows is listed here and nowhere else.
-- Returns true if the block existed and was not indexed.

CREATE FUNCTION cd_block_purge(id bigint) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM blocks WHERE block_id = id AND NOT indexed FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM transactions WHERE block_id = id;
    DELETE FROM inputs WHERE block_id = id;
    DELETE FROM pushdata WHERE block_id = id;
    DELETE FROM indexed_units WHERE block_id = id;
    UPDATE blocks SET n_units = NULL WHERE block_id = id;
    RETURN true;
END
$$;
