-- 013_secondary_indexes.sql - the one definition of the secondary indexes
-- (issue 18): the random-key indexes that catch-up mode drops while far
-- behind and builds again when close (src/index/cd_catchup.c), listed once,
-- here, in a table the code reads, with functions that drop or build one of
-- them by name.
--
-- Why a table: the list used to be spelled in four places (sql/001 + 007,
-- cd_pg_secondary_indexes, cd_catchup.c, the tests and benchmarks) and one of
-- them once forgot outputs_script_hash_idx (sql/007): an index that is never
-- rebuilt after a catch-up. Now C, the tests and the benchmarks all read
-- `secondary_indexes`; changing an index's layout is an UPDATE of its row in
-- a later migration plus a call of cd_secondary_index_create (which replaces
-- an index of another definition).
--
-- sql/001 and sql/007 still create the four indexes of a new database (a
-- released migration is never edited) as B-trees; the rows below make two of
-- them hash indexes, and the end of this migration converts them.
--
-- Why hash for tx_hash and prev_hash (docs/PERFORMANCE.md, "The hash lever,
-- measured again"): these keys are random and (nearly) unique; a hash index
-- entry holds a 4-byte hash code instead of the 32-byte key, and an insert
-- touches one bucket page instead of a B-tree path. At 10M txs, in two runs
-- of alternating live windows, PostgreSQL spent 18-38 % less CPU per 1000
-- txs indexed live, with point lookups no slower; at 1M-3M no difference.
-- What it gives up, checked: hash indexes serve only equality (= and = ANY,
-- the latter through a bitmap scan); every query of docs/QUERIES.md, the
-- wallet functions (sql/007) and src/query look these columns up by
-- equality only (tests/functional/test_index.py plans them all with
-- sequential scans disabled); they cannot be UNIQUE (neither index was);
-- they are WAL-logged and crash-safe since PostgreSQL 10. inputs is keyed
-- by prev_hash alone: `prev_hash = x AND prev_idx = y` finds the spends of
-- the tx by the index and filters the few rows by prev_idx. push_hash and
-- script_hash stay B-trees: they have hot keys (one key in millions of
-- rows), whose hash bucket would be an overflow chain each insert walks
-- (measured 1.4-1.8x the B-tree's CPU at 10M).
--
-- Crash safety: CREATE INDEX (not CONCURRENTLY) is transactional: a build
-- killed with its session or its server leaves no index at all, and the next
-- build starts over. An index that is present but not valid
-- (pg_index.indisvalid false: a CREATE INDEX CONCURRENTLY or REINDEX
-- CONCURRENTLY that failed, e.g. run by an operator) or of another definition
-- under the same name is dropped and built again by cd_secondary_index_create;
-- with IF NOT EXISTS it would have been kept for ever, and with it lookups by
-- hash that silently scan whole tables.

CREATE TABLE secondary_indexes (
    name   text PRIMARY KEY,   -- the index's name (schema: the tables')
    tbl    text NOT NULL,      -- the table it indexes
    method text NOT NULL CHECK (method IN ('btree', 'hash')),  -- access method
    cols   text NOT NULL       -- the key, as pg_get_indexdef prints it
);

INSERT INTO secondary_indexes (name, tbl, method, cols) VALUES
    ('transactions_hash_idx',   'transactions', 'hash',  'tx_hash'),
    ('inputs_outpoint_idx',     'inputs',       'hash',  'prev_hash'),
    ('pushdata_hash_idx',       'pushdata',     'btree', 'push_hash'),
    ('outputs_script_hash_idx', 'outputs',      'btree', 'script_hash');

COMMENT ON TABLE secondary_indexes IS
    'The secondary indexes catch-up mode drops and rebuilds (sql/013): read by conduitd, the tests and the benchmarks; cd_secondary_indexes_state() shows each one''s state.';
COMMENT ON COLUMN secondary_indexes.name IS 'The index''s name, in the schema of the tables.';
COMMENT ON COLUMN secondary_indexes.tbl IS 'The table it indexes.';
COMMENT ON COLUMN secondary_indexes.method IS 'Access method: btree or hash.';
COMMENT ON COLUMN secondary_indexes.cols IS 'The key, as pg_get_indexdef prints it (e.g. ''prev_hash'').';

-- The state of one secondary index: 'valid' (present, valid, as defined
-- above), 'missing', 'invalid' (pg_index.indisvalid false), 'other' (an
-- index of another definition, or on another table, under the name).
-- NULL for a name that is not a secondary index.
CREATE FUNCTION cd_secondary_index_state(idx text) RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN i.indexrelid IS NULL THEN 'missing'
        WHEN NOT i.indisvalid THEN 'invalid'
        WHEN i.indrelid <> to_regclass(quote_ident(s.tbl)) OR a.amname <> s.method
             OR i.indisunique OR i.indpred IS NOT NULL
             OR substring(pg_get_indexdef(i.indexrelid) from ' USING [a-z]+ (\(.*\))$')
                <> '(' || s.cols || ')'
        THEN 'other'
        ELSE 'valid' END
    FROM secondary_indexes s
    LEFT JOIN pg_class c ON c.relname = s.name AND c.relkind = 'i'
                        AND c.relnamespace = to_regnamespace(current_schema())
    LEFT JOIN pg_index i ON i.indexrelid = c.oid
    LEFT JOIN pg_am a ON a.oid = c.relam
    WHERE s.name = idx
$$;

-- Every secondary index with its state, the largest table first (the order
-- a build takes them in: the longest build starts first, so parallel
-- sessions finish together), rel_bytes its table's size.
CREATE FUNCTION cd_secondary_indexes_state()
    RETURNS TABLE (name text, tbl text, state text, rel_bytes bigint)
    LANGUAGE sql STABLE AS $$
    SELECT s.name, s.tbl, cd_secondary_index_state(s.name),
           coalesce(pg_relation_size(to_regclass(quote_ident(s.tbl))), 0)
    FROM secondary_indexes s
    ORDER BY 4 DESC, 1
$$;

-- Serialises the drop and the build of one index across sessions: a
-- session of a helper whose daemon was killed may still be building it
-- (its backend finishes the statement); the next one waits for that
-- transaction and then finds the index built. Two-key advisory locks are a
-- space apart from the one-key locks (4242424201..03) the daemon takes.
CREATE FUNCTION cd_secondary_index_lock(idx text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM secondary_indexes s WHERE s.name = idx) THEN
        RAISE EXCEPTION 'unknown secondary index "%"', idx;
    END IF;
    PERFORM pg_advisory_xact_lock(424242, hashtext(idx));
END
$$;

-- Drops one secondary index if present (in any state). Returns whether one
-- was there.
CREATE FUNCTION cd_secondary_index_drop(idx text) RETURNS boolean
    LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    PERFORM cd_secondary_index_lock(idx);
    st := cd_secondary_index_state(idx);
    IF st = 'missing' THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP INDEX %I', idx);
    RETURN true;
END
$$;

-- Makes one secondary index present and valid, in the caller's transaction:
-- 'present' (nothing to do), 'built' (it was missing), 'rebuilt' (an
-- invalid index or one of another definition was replaced). A replacement
-- is built under a temporary name first and swapped in at the end (DROP +
-- RENAME): DROP INDEX locks the table against readers until the
-- transaction ends, so dropping first would block every query on the
-- table for the whole build; this way only for the swap. (CREATE INDEX
-- itself blocks writers, not readers.) The definition (method, cols) is
-- the catalog's, written only by migrations: trusted SQL.
CREATE FUNCTION cd_secondary_index_create(idx text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    st text;
    s secondary_indexes;
    tmp text := left(idx, 50) || '_cd_new';
BEGIN
    PERFORM cd_secondary_index_lock(idx);
    st := cd_secondary_index_state(idx);
    IF st = 'valid' THEN
        RETURN 'present';
    END IF;
    SELECT * INTO s FROM secondary_indexes x WHERE x.name = idx;
    IF st = 'missing' THEN
        EXECUTE format('CREATE INDEX %I ON %I USING %s (%s)', s.name, s.tbl, s.method, s.cols);
        RETURN 'built';
    END IF;
    EXECUTE format('DROP INDEX IF EXISTS %I', tmp);
    EXECUTE format('CREATE INDEX %I ON %I USING %s (%s)', tmp, s.tbl, s.method, s.cols);
    EXECUTE format('DROP INDEX %I', idx);
    EXECUTE format('ALTER INDEX %I RENAME TO %I', tmp, idx);
    RETURN 'rebuilt';
END
$$;

-- The conversion of an existing database to the layout above (sql/001 made
-- B-trees of the first two): each index of another definition is rebuilt
-- here, in the migration's transaction (instant on a new database; on a
-- large one, minutes at the first start of this version: docs/OPERATIONS.md).
-- A missing index (a database in catch-up mode) is left to the build at the
-- end of catch-up, which makes the new kind.
SELECT cd_secondary_index_create(name) FROM secondary_indexes
WHERE cd_secondary_index_state(name) = 'other';
