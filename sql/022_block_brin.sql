-- 022_block_brin.sql - where the key-rows step has built the block indexes
-- (sql/021), the BRIN on block_id goes (issue 18).
--
-- Why: with statistics (sql/021's cd_key_rows_analyze) the planner costs a
-- BRIN as if its page ranges were summarised, and prefers it to the block
-- B-tree for a batch of a few blocks; but the open partition's recent
-- ranges are unsummarised while rows load (until a VACUUM), and a bitmap
-- scan reads every page of an unsummarised range. tests/functional/
-- test_block_reads.py: a batch of 3 blocks after an ANALYZE rechecked
-- 59,400 rows of outputs for its 600 (every page of the partition), and as
-- much of pushdata and inputs. The B-tree on block_id serves every read
-- the BRIN served (a reorg's and a purge's deletes, a block's rows), so
-- once every partition has it, the BRIN has no reader left: one index per
-- access path. Where key_rows is off nothing changes (no B-tree; the BRIN,
-- nothing to maintain per row, stays).
--
-- sql/021's step, the same but for its end: the call that leaves no
-- partition without its block index (or finds none without) drops the
-- three BRIN (partitioned indexes: every partition's with them). DROP INDEX locks the tables
-- (ACCESS EXCLUSIVE) for the catalog change only: it waits for the units
-- in flight, once. Behind the partition fence, as before.

CREATE OR REPLACE FUNCTION cd_block_index_step() RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    t text;
    part text;
    idx text;
    n integer;
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
    IF part IS NOT NULL THEN
        idx := part || '_block_idx';
        EXECUTE format('CREATE INDEX %I ON %I (block_id)', idx, part);
        EXECUTE format('ALTER INDEX %I ATTACH PARTITION %I', t || '_block_idx', idx);
    END IF;
    n := cd_block_index_missing();
    IF n = 0 THEN
        -- every partition has its B-tree: the BRIN has no reader left
        FOREACH t IN ARRAY ARRAY['inputs', 'pushdata', 'outputs'] LOOP
            IF to_regclass(quote_ident(t || '_block_brin')) IS NOT NULL THEN
                EXECUTE format('DROP INDEX %I', t || '_block_brin');
            END IF;
        END LOOP;
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION cd_block_index_step() IS
    'Builds the block index of one partition of inputs, pushdata or outputs that lacks it (sql/021), and once none does drops their BRIN (sql/022; called by the key-rows step until 0): returns how many still lack it.';
