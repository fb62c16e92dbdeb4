-- 017_partitions.sql - height-range (block_id) partitions of the four row
-- tables, transactions, inputs, pushdata and outputs (issue 18), and the
-- roll that closes the open tip partition once it holds partition_txs
-- transactions (cd_partition_roll, called by conduitd's index-ddl helper,
-- src/index/cd_catchup.c).
--
-- Why (docs/PERFORMANCE.md, "Height-range partitions"): a live insert costs
-- what the B-trees it touches cost, and those grow with the table. With the
-- new rows in a small tip partition, PostgreSQL spent about half the CPU per
-- 1000 txs at 1M-5M txs. The price: a lookup by hash cannot be pruned and
-- probes every partition, so the count must stay small (partition_txs large:
-- docs/OPERATIONS.md).
--
-- Layout:
--  * each table is partitioned BY RANGE (block_id). block_id is not the
--    height (it has gaps: registration is an INSERT ... ON CONFLICT that
--    draws an identity value each time), so a bound is a block_id;
--  * an existing table becomes its first partition <table>_p0, FOR VALUES
--    FROM (MINVALUE) TO (MAXVALUE): block_id is NOT NULL, which is all that
--    range needs, so ATTACH proves it without a scan; its primary key and
--    BRIN are attached to partitioned indexes of the same names on the
--    parent, not rebuilt: the migration is instant at any size;
--  * the secondary indexes (sql/013's catalog) are NOT partitioned indexes:
--    each partition has its own, <partition><suffix> (transactions_hash_idx
--    -> transactions_p0_hash_idx, transactions_p<b>_hash_idx), listed by
--    the view secondary_index_parts. A partitioned index cannot lose one
--    partition's index; these can: catch-up drops only the open tip's (the
--    closed ones receive no live rows) and builds every missing one at the
--    end, each in proportion to its partition. The migration only renames
--    the existing ones (p0's);
--  * the open tip partition is always (lo, MAXVALUE): no DEFAULT partition
--    (a DEFAULT partition would have to be scanned by every ATTACH);
--  * `partitions` lists them (C, tests and benchmarks read it, not
--    pg_inherits); each roll closes the tip at b = one above every block_id
--    registered so far and opens <table>_p<b> FROM (b) TO (MAXVALUE). Rows
--    of a block registered before the roll (in flight, a late fork block, a
--    reorg) still go to the closed partition: correct, a little slower;
--  * the views that name the tables hold their OIDs: CREATE OR REPLACE VIEW
--    with the same text binds them to the parents (the text is today's: a
--    later migration may replace them). Functions name the tables in their
--    text and bind at run time: nothing to do. No trigger is on these tables.

-- ---- the catalog ----

CREATE TABLE partitions (
    tbl        text NOT NULL,           -- the partitioned table
    part       text NOT NULL,           -- the partition
    lo         bigint,                  -- lowest block_id; NULL: MINVALUE
    hi         bigint,                  -- one above the highest; NULL: the open tip (MAXVALUE)
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tbl, part)
);
-- one open tip per table
CREATE UNIQUE INDEX partitions_tip_idx ON partitions (tbl) WHERE hi IS NULL;

COMMENT ON TABLE partitions IS
    'The block_id range partitions of transactions, inputs, pushdata and outputs (sql/017): one row per partition; hi NULL is the open tip, which takes new blocks until cd_partition_roll closes it.';
COMMENT ON COLUMN partitions.tbl IS 'The partitioned table: transactions, inputs, pushdata or outputs.';
COMMENT ON COLUMN partitions.part IS 'The partition (a table of the same schema).';
COMMENT ON COLUMN partitions.lo IS 'Lowest block_id it holds; NULL for MINVALUE (the first partition).';
COMMENT ON COLUMN partitions.hi IS 'One above the highest block_id it holds; NULL for the open tip (MAXVALUE).';
COMMENT ON COLUMN partitions.created_at IS 'When the partition was created (the migration: when the table became its first partition).';

-- Copies the table and column comments of `src` to `dst` (same columns):
-- sql/008's rule, every table and column has one, holds for partitions too.
CREATE FUNCTION cd_partition_copy_comments(src regclass, dst regclass, tbl_comment text)
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a record;
BEGIN
    EXECUTE format('COMMENT ON TABLE %s IS %L', dst,
                   coalesce(tbl_comment, obj_description(src, 'pg_class')));
    FOR a IN SELECT attname, col_description(src, attnum) AS d FROM pg_attribute
             WHERE attrelid = src AND attnum > 0 AND NOT attisdropped LOOP
        IF a.d IS NOT NULL THEN
            EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', dst, a.attname, a.d);
        END IF;
    END LOOP;
END
$$;

-- ---- the conversion ----

DO $$
DECLARE
    t text;
    p text;
    i record;
    s record;
BEGIN
    -- sql/013's state of each secondary index, taken before the tables are
    -- renamed (it names the table and the index): a valid one becomes p0's
    -- (renamed with the table's other indexes); one in another state is
    -- dropped here and built by the next build (catch-up's end or the
    -- daemon's start), as sql/013 would have replaced it. (A temporary
    -- table dropped below, not ON COMMIT DROP: the tests also apply the
    -- migrations statement by statement, outside a transaction.)
    CREATE TEMPORARY TABLE cd_017_secondary AS
        SELECT x.name, x.tbl, x.method, x.cols, cd_secondary_index_state(x.name) AS state
        FROM secondary_indexes x;
    FOREACH t IN ARRAY ARRAY['transactions', 'inputs', 'pushdata', 'outputs'] LOOP
        p := t || '_p0';
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t, p);
        -- the table's indexes keep their names on the parent; the
        -- partition's get the _p0 prefix (a constraint's index renames its
        -- constraint with it)
        FOR i IN SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
                 WHERE x.indrelid = to_regclass(p) LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I', i.relname,
                           CASE WHEN left(i.relname, length(t) + 1) = t || '_'
                                THEN p || substr(i.relname, length(t) + 1)
                                ELSE p || '_' || i.relname END);
        END LOOP;
        -- the same columns, defaults, NOT NULLs and storage (outputs.script
        -- PLAIN, sql/007); comments copied below
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING STORAGE) '
                       'PARTITION BY RANGE (block_id)', t, p);
        PERFORM cd_partition_copy_comments(to_regclass(p), to_regclass(t), NULL);
        PERFORM cd_partition_copy_comments(to_regclass(p), to_regclass(p),
            format('Partition of %s (sql/017): block_id from MINVALUE; the rows indexed before partitions.', t));
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (MAXVALUE)',
                       t, p);
        INSERT INTO partitions (tbl, part, lo, hi) VALUES (t, p, NULL, NULL);
    END LOOP;

    -- partitioned indexes: each attaches the partition's equivalent index
    -- (DefineIndex matches it) instead of building one
    ALTER TABLE transactions ADD CONSTRAINT transactions_pkey PRIMARY KEY (block_id, tx_pos);
    CREATE INDEX inputs_block_brin ON inputs USING brin (block_id);
    CREATE INDEX pushdata_block_brin ON pushdata USING brin (block_id);
    CREATE INDEX outputs_block_brin ON outputs USING brin (block_id);
    -- the secondary indexes stay p0's own (renamed above)
    FOR s IN SELECT * FROM cd_017_secondary LOOP
        IF s.state NOT IN ('valid', 'missing') THEN
            EXECUTE format('DROP INDEX IF EXISTS %I',
                           s.tbl || '_p0' || substr(s.name, length(s.tbl) + 1));
        END IF;
    END LOOP;
    DROP TABLE cd_017_secondary;
END
$$;

-- the views, rebound to the parents (text unchanged from sql/001)
CREATE OR REPLACE VIEW best_transactions AS
    SELECT t.tx_hash, b.block_hash, b.height, t.tx_pos, t.tx_offset, t.tx_size, t.block_id
    FROM transactions t JOIN blocks b ON b.block_id = t.block_id
    WHERE b.on_best_chain;

CREATE OR REPLACE VIEW best_inputs AS
    SELECT i.prev_hash, i.prev_idx, t.tx_hash AS spend_tx_hash, i.in_idx,
           b.height, b.block_hash, i.block_id, i.tx_pos
    FROM inputs i
    JOIN blocks b ON b.block_id = i.block_id
    JOIN transactions t ON t.block_id = i.block_id AND t.tx_pos = i.tx_pos
    WHERE b.on_best_chain;

CREATE OR REPLACE VIEW best_pushdata AS
    SELECT p.push_hash, p.flags, t.tx_hash, p.idx, b.height, b.block_hash,
           p.block_id, p.tx_pos
    FROM pushdata p
    JOIN blocks b ON b.block_id = p.block_id
    JOIN transactions t ON t.block_id = p.block_id AND t.tx_pos = p.tx_pos
    WHERE b.on_best_chain;

-- ---- sql/013's catalog, per partition ----

-- The name of a secondary index's instance on a partition: the partition's
-- name in place of the table's (transactions_hash_idx on transactions_p0:
-- transactions_p0_hash_idx).
CREATE FUNCTION cd_partition_index_name(def text, tbl text, part text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN left(def, length(tbl) + 1) = tbl || '_'
                THEN part || substr(def, length(tbl) + 1)
                ELSE part || '_' || def END
$$;

CREATE VIEW secondary_index_parts AS
    SELECT cd_partition_index_name(s.name, s.tbl, p.part) AS name, s.name AS def, s.tbl,
           p.part, s.method, s.cols, p.hi IS NOT NULL AS closed
    FROM secondary_indexes s JOIN partitions p ON p.tbl = s.tbl;
COMMENT ON VIEW secondary_index_parts IS
    'Every secondary index (sql/013''s secondary_indexes) on every partition (sql/017): name is the partition''s own index; closed: the partition is closed (catch-up keeps its indexes).';

-- The state of one partition's secondary index (a name of
-- secondary_index_parts): as sql/013's, on the partition.
CREATE OR REPLACE FUNCTION cd_secondary_index_state(idx text) RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN i.indexrelid IS NULL THEN 'missing'
        WHEN NOT i.indisvalid THEN 'invalid'
        WHEN i.indrelid <> to_regclass(quote_ident(s.part)) OR a.amname <> s.method
             OR i.indisunique OR i.indpred IS NOT NULL
             OR substring(pg_get_indexdef(i.indexrelid) from ' USING [a-z]+ (\(.*\))$')
                <> '(' || s.cols || ')'
        THEN 'other'
        ELSE 'valid' END
    FROM secondary_index_parts s
    LEFT JOIN pg_class c ON c.relname = s.name AND c.relkind IN ('i', 'I')
                        AND c.relnamespace = to_regnamespace(current_schema())
    LEFT JOIN pg_index i ON i.indexrelid = c.oid
    LEFT JOIN pg_am a ON a.oid = c.relam
    WHERE s.name = idx
$$;

-- Every partition's secondary index with its state, the largest partition
-- first (the build order: the longest build starts first); tbl and
-- rel_bytes are the partition's; def the catalog's name; closed whether
-- the partition is closed. (Its columns changed: dropped and created.)
DROP FUNCTION cd_secondary_indexes_state();
CREATE FUNCTION cd_secondary_indexes_state()
    RETURNS TABLE (name text, tbl text, state text, rel_bytes bigint, def text, closed boolean)
    LANGUAGE sql STABLE AS $$
    SELECT s.name, s.part, cd_secondary_index_state(s.name),
           coalesce(pg_relation_size(to_regclass(quote_ident(s.part))), 0), s.def, s.closed
    FROM secondary_index_parts s
    ORDER BY 4 DESC, 1
$$;

-- As sql/013's, over the partitions' names.
CREATE OR REPLACE FUNCTION cd_secondary_index_lock(idx text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM secondary_index_parts s WHERE s.name = idx) THEN
        RAISE EXCEPTION 'unknown secondary index "%"', idx;
    END IF;
    PERFORM pg_advisory_xact_lock(424242, hashtext(idx));
END
$$;

-- As sql/013's (the same replacement under a temporary name), on the
-- partition; sql/013's cd_secondary_index_drop is unchanged (it calls the
-- two functions above).
CREATE OR REPLACE FUNCTION cd_secondary_index_create(idx text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    st text;
    s secondary_index_parts;
    tmp text := left(idx, 50) || '_cd_new';
BEGIN
    PERFORM cd_secondary_index_lock(idx);
    st := cd_secondary_index_state(idx);
    IF st = 'valid' THEN
        RETURN 'present';
    END IF;
    SELECT * INTO s FROM secondary_index_parts x WHERE x.name = idx;
    IF st = 'missing' THEN
        EXECUTE format('CREATE INDEX %I ON %I USING %s (%s)', s.name, s.part, s.method, s.cols);
        RETURN 'built';
    END IF;
    EXECUTE format('DROP INDEX IF EXISTS %I', tmp);
    EXECUTE format('CREATE INDEX %I ON %I USING %s (%s)', tmp, s.part, s.method, s.cols);
    EXECUTE format('DROP INDEX %I', idx);
    EXECUTE format('ALTER INDEX %I RENAME TO %I', tmp, idx);
    RETURN 'rebuilt';
END
$$;

-- sql/016's test "is there a valid index on transactions (tx_hash)": the
-- key-rows step waits while catch-up has dropped it. Each partition has its
-- own now (catch-up drops the open tip's): true when every partition of
-- transactions has one, valid.
CREATE OR REPLACE FUNCTION cd_tx_hash_indexed() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT NOT EXISTS (
        SELECT 1 FROM partitions p
        WHERE p.tbl = 'transactions'
          AND NOT EXISTS (SELECT 1 FROM pg_index x
                          JOIN pg_attribute a ON a.attrelid = x.indrelid
                                             AND a.attnum = x.indkey[0]
                          WHERE x.indrelid = to_regclass(quote_ident(p.part)) AND x.indisvalid
                            AND a.attname = 'tx_hash'))
$$;

-- ---- the roll ----

-- Transactions in the open tip partition, exactly: the indexed units of
-- the blocks at or above its lower bound (a unit's rows commit with its
-- marker, sql/001; a purged copy's go with its markers, sql/005). Reads
-- indexed_units by its primary key's range, not reltuples (an estimate).
CREATE FUNCTION cd_partition_tip_txs() RETURNS bigint
    LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(u.tx_count), 0)::bigint
    FROM indexed_units u
    WHERE u.block_id >= coalesce((SELECT p.lo FROM partitions p
                                  WHERE p.tbl = 'transactions' AND p.hi IS NULL),
                                 -9223372036854775808)
$$;

-- For the status and /metrics: how many partitions each table has (the
-- four have the same count), the open tip's lower bound and its txs.
CREATE FUNCTION cd_partitions_state(OUT partitions integer, OUT tip_lo bigint,
                                    OUT tip_txs bigint)
    LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*)::integer FROM partitions p WHERE p.tbl = 'transactions'),
           (SELECT p.lo FROM partitions p WHERE p.tbl = 'transactions' AND p.hi IS NULL),
           cd_partition_tip_txs()
$$;

-- Closes the open tip partition of the four tables if it holds at least
-- max_txs transactions, in the caller's one transaction (a crash before
-- its commit leaves the partitions as they were). Returns the bound b it
-- closed at (the new tip's lower bound), or NULL: not full (or max_txs <=
-- 0, or no block registered since the last roll).
--
-- Locks: the four parents (and so every partition) ACCESS EXCLUSIVE, in the
-- fixed order the parsers' COPYs write them (cd_pg_copy.c: transactions,
-- inputs, pushdata, outputs), and with lock_timeout at half of
-- deadlock_timeout: a streamed unit may hold a later table while it waits
-- for an earlier one, and then this roll, which began waiting first, times
-- out before anyone's deadlock check runs, so only the roll fails (the
-- caller retries later), never a unit or a reorg.
--
-- Per table: DETACH the tip; ADD CHECK (block_id in [lo, b)), which scans
-- the tip once (the only scan: PostgreSQL proves a partition's bound from a
-- validated CHECK or scans; no catalog trick is safe), ATTACH it FOR VALUES
-- FROM (lo) TO (b) (proved by the CHECK: no second scan; its indexes are
-- matched to the parent's, not rebuilt), drop the now redundant CHECK, and
-- CREATE the new tip FROM (b) TO (MAXVALUE), which gets the parent's
-- partitioned indexes (primary key, BRIN), and the secondary indexes the
-- old tip has valid (none in catch-up mode: they are built at its end),
-- all empty: instant. The closed partitions are left for the caller to ANALYZE
-- after the commit (ANALYZE here would hold the locks longer).
CREATE FUNCTION cd_partition_roll(max_txs bigint) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    lo_ bigint;
    b bigint;
    t text;
    tip text;
    newp text;
    dl interval;
    d record;
BEGIN
    IF max_txs IS NULL OR max_txs <= 0 OR cd_partition_tip_txs() < max_txs THEN
        RETURN NULL; -- the cheap test first, without any lock
    END IF;
    dl := current_setting('deadlock_timeout')::interval;
    PERFORM set_config('lock_timeout', greatest((extract(epoch FROM dl) * 500)::bigint, 1)::text || 'ms', true);
    LOCK TABLE transactions, inputs, pushdata, outputs IN ACCESS EXCLUSIVE MODE;
    -- again under the locks: a concurrent roll may have gone first
    n := cd_partition_tip_txs();
    IF n < max_txs THEN
        RETURN NULL;
    END IF;
    SELECT p.lo INTO lo_ FROM partitions p WHERE p.tbl = 'transactions' AND p.hi IS NULL;
    SELECT greatest(max(x.block_id), (SELECT max(u.block_id) FROM indexed_units u)) + 1
      INTO b FROM blocks x;
    IF b IS NULL OR b <= coalesce(lo_, -9223372036854775808) THEN
        RETURN NULL;
    END IF;
    FOREACH t IN ARRAY ARRAY['transactions', 'inputs', 'pushdata', 'outputs'] LOOP
        SELECT p.part INTO tip FROM partitions p WHERE p.tbl = t AND p.hi IS NULL;
        IF tip IS NULL OR coalesce((SELECT p.lo FROM partitions p WHERE p.tbl = t AND p.part = tip),
                                   -1) <> coalesce(lo_, -1) THEN
            RAISE EXCEPTION 'cd_partition_roll: the open partitions of % and transactions differ', t;
        END IF;
        newp := t || '_p' || b;
        EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', t, tip);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT cd_roll_range CHECK (%s block_id < %s)',
                       tip, CASE WHEN lo_ IS NULL THEN '' ELSE format('block_id >= %s AND', lo_) END,
                       b);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                       t, tip, coalesce(lo_::text, 'MINVALUE'), b);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT cd_roll_range', tip);
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (MAXVALUE)',
                       newp, t, b);
        PERFORM cd_partition_copy_comments(to_regclass(t), to_regclass(newp),
            format('Partition of %s (sql/017, cd_partition_roll): block_id from %s.', t, b));
        UPDATE partitions p SET hi = b WHERE p.tbl = t AND p.part = tip;
        INSERT INTO partitions (tbl, part, lo, hi) VALUES (t, newp, b, NULL);
        FOR d IN SELECT x.name FROM secondary_indexes x WHERE x.tbl = t ORDER BY 1 LOOP
            IF cd_secondary_index_state(cd_partition_index_name(d.name, t, tip)) = 'valid' THEN
                PERFORM cd_secondary_index_create(cd_partition_index_name(d.name, t, newp));
            END IF;
        END LOOP;
    END LOOP;
    RETURN b;
END
$$;
