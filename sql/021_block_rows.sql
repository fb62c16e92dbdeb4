-- 021_block_rows.sql - the block indexes: B-trees on block_id for inputs,
-- pushdata and outputs, built by the key-rows step before it starts
-- (issue 18).
--
-- And statistics for them: cd_key_rows_analyze (below).
--
-- Why: the key-rows step (sql/014, sql/016: cd_key_rows_advance) reads the
-- rows of the blocks it derives (`block_id = ANY (todo)`, pushdata joined
-- to outputs), and the key pages read the blocks above the key-rows mark
-- the same way (sql/018: cd_key_outs_above, cd_key_hist_above). The only
-- index led by block_id was a BRIN (sql/002, sql/007), whose page ranges
-- stay unsummarised while rows are loaded (until a VACUUM), and the open
-- partition has no statistics while it fills. So during live indexing each
-- batch was a sequential scan of the whole open partition of the three
-- tables: one block of 1,500 txs took 4.5-20 s at 0.1-0.6M txs, the batch
-- stayed at one block and the step fell ever further behind
-- (docs/PERFORMANCE.md "Block reads"; tests/functional/test_block_reads.py
-- visited the whole tables before, with and without statistics).
--
-- A B-tree on block_id finds a block's rows whatever the statistics: the
-- planner costs an index scan of a large table below a scan of it even
-- without them. Its inserts land at the right edge of the tree (block_id
-- grows with the chain), in a few hot pages, and equal keys are stored
-- once per page (deduplication): ~55 B per tx. It still costs every
-- indexed tx CPU (measured ~25 % more of PostgreSQL's per tx, live), for
-- reads only the key-rows step and the pages it serves make (a reorg's
-- and a purge's deletes, rare, keep the BRIN). So the indexes exist only
-- where key_rows is on: the key-rows process (src/index/cd_keyrows.c)
-- calls cd_block_index_step until it returns 0, before its first batch.
-- Once built they stay (with key_rows turned off again they cost inserts
-- only; DROP INDEX inputs_block_idx, pushdata_block_idx, outputs_block_idx
-- gives that back).
--
-- One partition per call (sql/017: the parents are range-partitioned), so
-- that only the open tip's build holds back its writers (CREATE INDEX
-- takes SHARE on the partition it builds; the closed ones are not
-- written), and the process stays responsive between calls. The parent's
-- index is created first ON ONLY the parent (not valid, no build): a
-- partition created or attached from then on gets its own at once (a roll,
-- a merge's swap), the ones before are built here and attached. A partition
-- counts as done when an index on it is attached to the parent's; the
-- parent's becomes valid when the last is attached by ALTER INDEX (not
-- needed for the plans: each partition is planned with its own indexes).
-- Behind the partition fence taken shared, as a key-rows batch (sql/020):
-- a roll or a swap waits for one build instead of deadlocking with it.

-- Partitions of inputs, pushdata and outputs without their block index.
CREATE FUNCTION cd_block_index_missing() RETURNS integer
    LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer
    FROM unnest(ARRAY['inputs', 'pushdata', 'outputs']) AS t(tbl)
    JOIN pg_inherits i ON i.inhparent = to_regclass(t.tbl)
    WHERE NOT EXISTS (SELECT 1 FROM pg_inherits ii JOIN pg_index x ON x.indexrelid = ii.inhrelid
                      WHERE ii.inhparent = to_regclass(t.tbl || '_block_idx')
                        AND x.indrelid = i.inhrelid)
$$;
COMMENT ON FUNCTION cd_block_index_missing() IS
    'Partitions of inputs, pushdata and outputs without their block index (sql/021): 0 once the key-rows step has built them.';

-- Builds the block index of one partition that lacks it (and the parents'
-- indexes, ON ONLY, if missing); returns how many partitions still lack it.
CREATE FUNCTION cd_block_index_step() RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    t text;
    part text;
    idx text;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(4242424205);
    FOREACH t IN ARRAY ARRAY['inputs', 'pushdata', 'outputs'] LOOP
        IF to_regclass(quote_ident(t || '_block_idx')) IS NULL THEN
            EXECUTE format('CREATE INDEX %I ON ONLY %I (block_id)', t || '_block_idx', t);
            EXECUTE format('COMMENT ON INDEX %I IS %L', t || '_block_idx',
                           format('A block''s rows of %s: the key-rows step and the key pages above its mark read by it (sql/021, built while key_rows is on).', t));
        END IF;
    END LOOP;
    SELECT c.relname, i.inhparent::regclass::text INTO part, t
    FROM unnest(ARRAY['inputs', 'pushdata', 'outputs']) AS w(tbl)
    JOIN pg_inherits i ON i.inhparent = to_regclass(w.tbl)
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE NOT EXISTS (SELECT 1 FROM pg_inherits ii JOIN pg_index x ON x.indexrelid = ii.inhrelid
                      WHERE ii.inhparent = to_regclass(w.tbl || '_block_idx')
                        AND x.indrelid = i.inhrelid)
    ORDER BY c.relname
    LIMIT 1;
    IF part IS NULL THEN
        RETURN 0;
    END IF;
    idx := part || '_block_idx';
    EXECUTE format('CREATE INDEX %I ON %I (block_id)', idx, part);
    EXECUTE format('ALTER INDEX %I ATTACH PARTITION %I', t || '_block_idx', idx);
    RETURN cd_block_index_missing();
END
$$;
COMMENT ON FUNCTION cd_block_index_step() IS
    'Builds the block index of one partition of inputs, pushdata or outputs that lacks it (sql/021; called by the key-rows step until 0): returns how many still lack it.';

-- Statistics for the step's plans. The tables a batch reads are young
-- while it runs: the open partitions fill, and key_outs / key_hist grow
-- with the step itself. Without statistics (autovacuum analyzes a table
-- once a minute at best, and a new partition has none) the planner
-- estimated one row per block and ran, for one batch of 2 blocks at 100k
-- txs (auto_explain, 32 s): a merge join of pushdata and outputs on
-- block_id alone (16M rows removed by its join filter) and, per input of
-- cd_key_spends, a sequential scan of key_outs (5.8M rows over 2,113
-- inputs). So before each batch the key-rows process analyzes those of
-- the tables it reads whose rows changed by more than 1,000 + 20 % since
-- their last ANALYZE (autovacuum's rule with its default scale factor,
-- checked every batch instead of every minute): the open partitions of
-- the four row tables, key_outs and key_hist. ANALYZE samples 30,000 rows
-- (default_statistics_target), so it costs about the same at any size,
-- and each table is analyzed again only after it grows by a fifth. Behind
-- the fence taken shared (sql/020): its lock on the open partition must not
-- hold back a roll, which waits for the fence instead. Returns the tables
-- analyzed.
CREATE FUNCTION cd_key_rows_analyze() RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(4242424205);
    FOR r IN SELECT c.oid::regclass AS rel
             FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
             WHERE (c.oid IN ('key_outs'::regclass, 'key_hist'::regclass)
                    OR c.oid IN (SELECT to_regclass(quote_ident(p.part)) FROM partitions p
                                 WHERE p.hi IS NULL))
               AND s.n_mod_since_analyze > 1000 + 0.2 * greatest(c.reltuples, 0)
             ORDER BY c.relname LOOP
        EXECUTE format('ANALYZE %s', r.rel);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION cd_key_rows_analyze() IS
    'ANALYZE of the tables a key-rows batch reads whose rows changed by more than 1,000 + 20 % since their last one (sql/021; called by the key-rows step before each batch): returns the tables analyzed.';

-- The batch's reads are all by key now (the block indexes, the hash index
-- on tx_hash, key_outs' indexes), and one of them must stay so: the marks
-- are written by ctid (sql/016: `UPDATE key_outs ... WHERE ctid = ANY
-- (rows)`), a few thousand tids per block, which the planner costs above a
-- sequential scan of key_outs (a random page per tid against a sequential
-- read of the table) and so scanned all of key_outs, a table that grows
-- with the whole index, in every batch (358k rows removed by the filter for
-- one block at 65k txs derived: 155 of the batch's 471 ms, and growing).
-- No read of a batch is meant to be a scan: the batch function plans
-- without sequential scans (where no index serves, a scan is still
-- planned: enable_seqscan only adds a penalty).
ALTER FUNCTION cd_key_rows_advance_unfenced(integer) SET enable_seqscan = off;
