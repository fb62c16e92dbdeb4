-- 019_partition_merge.sql - merging old height-range partitions in levels
-- (issue 18): without it the count of partitions (sql/017) grows by one per
-- partition_txs txs, and a lookup by hash probes every one (101 at 10^9
-- txs with the 10M default; docs/PERFORMANCE.md "Lookups over many
-- partitions": spender p50 0.63 ms at 50, 2.83 ms at 200).
--
-- Tiered merging: a rolled partition is of level 0; once fan_in adjacent
-- CLOSED partitions of one level L exist, the oldest fan_in of them become
-- one partition of level L+1 covering their union range, named like its
-- first source (<tbl>_p<lo>, <tbl>_p0 for MINVALUE), so the names stay
-- those sql/017 gives. At most fan_in-1 closed partitions of each level
-- remain: with a 10M tip and fan_in 8, 4 partitions at 10^8 txs (1 of
-- level 1, 2 of level 0, the tip) and 10 at 10^9 (1 of level 2, 4 of
-- level 1, 4 of level 0, the tip) instead of 11 and 101. Each row is
-- copied once per level it climbs (log_fan_in of the index's size).
--
-- Why it is safe to copy a closed partition without locking it (sql/005,
-- sql/007, cd_pg_copy.c): the rows of an INDEXED block are never modified;
-- the only writers into a closed partition are the units of a not yet
-- indexed block whose block_id is in its range (a late fork block
-- registered before a roll) and cd_block_purge of a not indexed block, and
-- each of those commits together with, or deletes, the block's
-- indexed_units rows. So the (block_id, unit_no, xmin) of indexed_units in
-- a range changes whenever any write into that range commits: a merge
-- copies in one snapshot, records that fingerprint taken in the same
-- snapshot, and swaps only if the fingerprint is the same under the locks.
--
-- Two phases, so that the copy (hours at 10^9 txs) never holds a lock that
-- indexing, a reorg, a roll or a query waits for:
--  (a) cd_partition_merge_prepare, one REPEATABLE READ transaction (the
--      caller's): standalone staging tables <tbl>_merging (LIKE a source,
--      the range CHECK first, so that ATTACH later needs no scan), filled
--      from the sources in block_id order, then the indexes the first
--      source has (primary key, BRIN, sql/013's secondary indexes), and the
--      catalog rows of partition_merge with the fingerprint. It takes only
--      ACCESS SHARE on the sources (the roll therefore locks ONLY the
--      parents: below);
--  (b) cd_partition_merge_swap, one READ COMMITTED transaction with the
--      roll's locking discipline: the four parents ACCESS EXCLUSIVE in the
--      COPYs' order, lock_timeout at half of deadlock_timeout (only the
--      swap loses a wait; the caller retries later, the copy kept); the
--      fingerprint again; if it differs, the staging tables are dropped
--      (the next attempt copies again); else DETACH the sources, ATTACH the
--      staging table FOR VALUES FROM (lo) TO (hi) (proved by the CHECK, its
--      indexes matched to the parent's: no scan, no build), rename the
--      sources out of the way (cd_merge_old_<oid>) and the staging table
--      and its indexes to the first source's names, update `partitions`.
--      Catalog work only: its stall grows far slower than the rows
--      (docs/PERFORMANCE.md "Merging partitions in levels"). The sources
--      are dropped after its commit (cd_partition_merge_drop_old): a DROP
--      unlinks the files at the commit, which under the locks took ~1 s
--      per GB dropped.
-- A crash anywhere leaves either the old partitions or the merged one:
-- each phase is one transaction; a prepared merge left behind is swapped
-- by the next swap if still current, and any staging or old source left is
-- dropped by the next prepare.

-- ---- the catalog ----

ALTER TABLE partitions ADD COLUMN level integer NOT NULL DEFAULT 0 CHECK (level >= 0);
COMMENT ON COLUMN partitions.level IS
    'Merge level (sql/019): 0 for a rolled partition (and the open tip); a merge of fan_in partitions of level L gives one of level L+1.';

-- The prepared merge (phase a, awaiting its swap): one row per table.
CREATE TABLE partition_merge (
    tbl         text PRIMARY KEY,   -- the partitioned table
    stage       text NOT NULL,      -- the staging table, <tbl>_merging
    level       integer NOT NULL,   -- the sources' level (the merged one's is level + 1)
    lo          bigint,             -- the union range: NULL MINVALUE
    hi          bigint NOT NULL,
    sources     text[] NOT NULL,    -- the partitions merged, lowest first
    idx_stage   text[] NOT NULL,    -- the staging table's indexes ...
    idx_final   text[] NOT NULL,    -- ... and their names once swapped (the first source's)
    fingerprint text NOT NULL,      -- cd_partition_merge_fingerprint(lo, hi) in the copy's snapshot
    prepared_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE partition_merge IS
    'A merge of partitions copied (cd_partition_merge_prepare, sql/019) and not yet swapped in (cd_partition_merge_swap): one row per table; empty when none.';
COMMENT ON COLUMN partition_merge.tbl IS 'The partitioned table: transactions, inputs, pushdata or outputs.';
COMMENT ON COLUMN partition_merge.stage IS 'The staging table holding the copy (not attached).';
COMMENT ON COLUMN partition_merge.level IS 'The level of the sources; the merged partition is of level + 1.';
COMMENT ON COLUMN partition_merge.lo IS 'Lowest block_id of the union range; NULL for MINVALUE.';
COMMENT ON COLUMN partition_merge.hi IS 'One above the highest block_id of the union range.';
COMMENT ON COLUMN partition_merge.sources IS 'The partitions merged, lowest range first.';
COMMENT ON COLUMN partition_merge.idx_stage IS 'The staging table''s indexes, in the order of idx_final.';
COMMENT ON COLUMN partition_merge.idx_final IS 'Their names after the swap: those of the first source''s indexes.';
COMMENT ON COLUMN partition_merge.fingerprint IS 'What the copy saw of indexed_units in the range (cd_partition_merge_fingerprint): the swap refuses if it changed.';
COMMENT ON COLUMN partition_merge.prepared_at IS 'When the copy committed.';

-- The fingerprint of the range [lo, hi) (lo NULL: MINVALUE): the
-- (block_id, unit_no, xmin) of its indexed_units rows, hashed. Any unit
-- committed into the range adds a row (a new xmin) and any purge deletes
-- rows, so it changes whenever a write into the range's partitions has
-- committed (see the top of this file). Reads indexed_units by its primary
-- key's range: one row per unit, not per tx.
CREATE FUNCTION cd_partition_merge_fingerprint(lo bigint, hi bigint) RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT md5(coalesce(string_agg(u.block_id || ':' || u.unit_no || ':' || u.xmin::text, ','
                                   ORDER BY u.block_id, u.unit_no), ''))
    FROM indexed_units u
    WHERE u.block_id >= coalesce(lo, -9223372036854775808) AND u.block_id < hi
$$;

-- The next merge for fan_in, or no row: the lowest level L that has at
-- least fan_in closed partitions, its oldest fan_in ones, if they are
-- adjacent (no partition of another level between them; tiered merging
-- of the oldest keeps the levels descending with the range, so they are)
-- and every secondary index (sql/013) of each of them, on all four
-- tables, is valid (never a partition whose index a build is making).
-- Read on transactions' catalog; the four tables share the bounds.
CREATE FUNCTION cd_partition_merge_candidate(fan_in integer, OUT level integer, OUT lo bigint,
                                             OUT hi bigint, OUT n_sources integer)
    RETURNS SETOF record LANGUAGE plpgsql STABLE AS $$
DECLARE
    l integer;
    lo_ bigint;
    hi_ bigint;
    k integer;
BEGIN
    IF fan_in IS NULL OR fan_in < 2 THEN
        RETURN;
    END IF;
    FOR l IN SELECT p.level FROM partitions p WHERE p.tbl = 'transactions' AND p.hi IS NOT NULL
             GROUP BY p.level HAVING count(*) >= fan_in ORDER BY p.level LOOP
        SELECT min(coalesce(x.lo, -9223372036854775808)), max(x.hi) INTO lo_, hi_
        FROM (SELECT p.lo, p.hi FROM partitions p
              WHERE p.tbl = 'transactions' AND p.hi IS NOT NULL AND p.level = l
              ORDER BY p.lo NULLS FIRST LIMIT fan_in) x;
        -- adjacent: exactly fan_in partitions (of any level) in the union
        SELECT count(*) INTO k FROM partitions p
        WHERE p.tbl = 'transactions' AND coalesce(p.lo, -9223372036854775808) >= lo_
          AND p.hi IS NOT NULL AND p.hi <= hi_;
        CONTINUE WHEN k <> fan_in;
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM secondary_index_parts s JOIN partitions p ON p.part = s.part
            WHERE coalesce(p.lo, -9223372036854775808) >= lo_ AND p.hi IS NOT NULL
              AND p.hi <= hi_ AND cd_secondary_index_state(s.name) <> 'valid');
        level := l;
        lo := CASE WHEN lo_ = -9223372036854775808 THEN NULL ELSE lo_ END;
        hi := hi_;
        n_sources := fan_in;
        RETURN NEXT;
        RETURN;
    END LOOP;
END
$$;

-- Drops the sources of the merges swapped in (renamed cd_merge_old_<oid>
-- by cd_partition_merge_swap, no longer partitions: nothing reads them).
-- Called after the swap's commit and by every prepare (a crash between
-- the two leaves them). Returns how many tables it dropped.
CREATE FUNCTION cd_partition_merge_drop_old() RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    t text;
    n integer := 0;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class c
             WHERE c.relkind = 'r' AND c.relname LIKE 'cd\_merge\_old\_%'
               AND c.relnamespace = to_regnamespace(current_schema()) ORDER BY 1 LOOP
        EXECUTE format('DROP TABLE %I', t);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Drops a prepared merge (its staging tables and catalog rows), and any
-- staging table a killed prepare's transaction could not leave (none: it
-- rolls back; a committed one has its rows here). Returns how many
-- staging tables it dropped.
CREATE FUNCTION cd_partition_merge_discard() RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    t text;
    n integer := 0;
BEGIN
    FOREACH t IN ARRAY ARRAY['transactions', 'inputs', 'pushdata', 'outputs'] LOOP
        IF to_regclass(quote_ident(t || '_merging')) IS NOT NULL THEN
            EXECUTE format('DROP TABLE %I', t || '_merging');
            n := n + 1;
        END IF;
    END LOOP;
    -- only if there is a row: a prepare then takes no write lock on the
    -- catalog before its first copy is done
    IF EXISTS (SELECT 1 FROM partition_merge) THEN
        DELETE FROM partition_merge;
    END IF;
    RETURN n;
END
$$;

-- Phase (a): drops any earlier staging, picks cd_partition_merge_candidate
-- (fan_in) and copies it into staging tables with their indexes, in the
-- caller's transaction, which must be REPEATABLE READ (the copy and the
-- fingerprint from one snapshot; refused otherwise). Returns the sources'
-- level, or NULL: nothing to merge (fan_in < 2, or no candidate).
--
-- Rows are inserted source by source, lowest range first, each in its
-- physical order: a rolled partition was loaded by the parsers in about
-- block order and a merged one in its sources' order, so the copy is in
-- block_id order at the granularity BRIN keeps (a sort of a 10^8-row
-- source would cost more than the copy). The indexes are built after the
-- load (a sort each, not a random insert per row), as the first source
-- has them: constraints (the primary key) by ALTER TABLE, the others
-- by CREATE INDEX with the same definition.
CREATE FUNCTION cd_partition_merge_prepare(fan_in integer) RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    c record;
    t text;
    stage text;
    s text;
    srcs text[];
    first_ text;
    fp text;
    i record;
    k integer;
    ist text[];
    ifi text[];
BEGIN
    IF current_setting('transaction_isolation') <> 'repeatable read' THEN
        RAISE EXCEPTION 'cd_partition_merge_prepare: run it in a REPEATABLE READ transaction';
    END IF;
    PERFORM cd_partition_merge_discard();
    PERFORM cd_partition_merge_drop_old();
    SELECT * INTO c FROM cd_partition_merge_candidate(fan_in);
    IF c.level IS NULL THEN
        RETURN NULL;
    END IF;
    fp := cd_partition_merge_fingerprint(c.lo, c.hi);
    FOREACH t IN ARRAY ARRAY['transactions', 'inputs', 'pushdata', 'outputs'] LOOP
        stage := t || '_merging';
        SELECT array_agg(p.part ORDER BY p.lo NULLS FIRST) INTO srcs FROM partitions p
        WHERE p.tbl = t AND coalesce(p.lo, -9223372036854775808)
                            >= coalesce(c.lo, -9223372036854775808)
          AND p.hi IS NOT NULL AND p.hi <= c.hi;
        IF coalesce(array_length(srcs, 1), 0) <> c.n_sources THEN
            RAISE EXCEPTION 'cd_partition_merge_prepare: the partitions of % and transactions differ', t;
        END IF;
        first_ := srcs[1];
        -- LIKE the first source, not the parent: LIKE keeps a lock on the
        -- table it reads until the commit, and one on a parent would hold
        -- back every roll and swap for the whole copy (same columns)
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING STORAGE)', stage,
                       first_);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT cd_merge_range CHECK (%s block_id < %s)',
                       stage, CASE WHEN c.lo IS NULL THEN ''
                                   ELSE format('block_id >= %s AND', c.lo) END, c.hi);
        FOREACH s IN ARRAY srcs LOOP
            EXECUTE format('INSERT INTO %I SELECT * FROM %I', stage, s);
        END LOOP;
        k := 0;
        ist := '{}';
        ifi := '{}';
        FOR i IN SELECT ic.relname, pg_get_indexdef(x.indexrelid) AS def, x.indisunique,
                        con.oid AS con
                 FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
                 LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid
                                            AND con.conrelid = x.indrelid
                 WHERE x.indrelid = to_regclass(quote_ident(first_))
                 ORDER BY x.indisprimary DESC, ic.relname LOOP
            k := k + 1;
            ist := ist || (stage || '_' || k);
            ifi := ifi || i.relname::text;
            IF i.con IS NOT NULL THEN
                EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', stage, stage || '_' || k,
                               pg_get_constraintdef(i.con));
            ELSE
                EXECUTE format('CREATE %sINDEX %I ON %I', CASE WHEN i.indisunique THEN 'UNIQUE '
                                                              ELSE '' END,
                               stage || '_' || k, stage)
                        || substring(i.def from ' USING .*$');
            END IF;
        END LOOP;
        PERFORM cd_partition_copy_comments(to_regclass(t), to_regclass(stage),
            format('Staging copy of %s for a merge (sql/019): not attached.', array_to_string(srcs, ', ')));
        INSERT INTO partition_merge (tbl, stage, level, lo, hi, sources, idx_stage, idx_final,
                                     fingerprint)
            VALUES (t, stage, c.level, c.lo, c.hi, srcs, ist, ifi, fp);
    END LOOP;
    RETURN c.level;
END
$$;

-- Phase (b): swaps a prepared merge in, in the caller's one transaction
-- (READ COMMITTED: the fingerprint is read after the locks are granted).
-- Returns:
--   'none'    no prepared merge;
--   'changed' a write into the range committed since the copy (or the
--             sources are no longer those catalogued): staging dropped,
--             the next prepare copies again;
--   'merged'  the sources replaced by one partition of level + 1.
-- Raises lock_not_available (55P03) when the tables stay busy longer than
-- its lock_timeout: the caller retries later, the prepared merge kept.
CREATE FUNCTION cd_partition_merge_swap() RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    m partition_merge;
    t text;
    s text;
    k integer;
    dl interval;
    bound text;
    i record;
BEGIN
    SELECT * INTO m FROM partition_merge WHERE tbl = 'transactions';
    IF NOT FOUND THEN
        RETURN 'none';
    END IF;
    -- the cheap test first, without any lock: a stale copy needs none
    IF cd_partition_merge_fingerprint(m.lo, m.hi) <> m.fingerprint THEN
        PERFORM cd_partition_merge_discard();
        RETURN 'changed';
    END IF;
    dl := current_setting('deadlock_timeout')::interval;
    PERFORM set_config('lock_timeout', greatest((extract(epoch FROM dl) * 500)::bigint, 1)::text || 'ms', true);
    -- ONLY (each name: ONLY binds to one): every writer and reader comes
    -- through the parents, and a lock
    -- on a parent without ONLY would also take each partition's
    LOCK TABLE ONLY transactions, ONLY inputs, ONLY pushdata, ONLY outputs IN ACCESS EXCLUSIVE MODE;
    -- again under the locks: every write into the range has committed or
    -- rolled back by now, and none can start
    IF cd_partition_merge_fingerprint(m.lo, m.hi) <> m.fingerprint
       OR EXISTS (SELECT 1 FROM partition_merge x
                  WHERE (SELECT array_agg(p.part ORDER BY p.lo NULLS FIRST) FROM partitions p
                         WHERE p.tbl = x.tbl AND p.part = ANY (x.sources) AND p.hi IS NOT NULL
                           AND p.level = x.level) IS DISTINCT FROM x.sources)
       OR (SELECT count(*) FROM partition_merge) <> 4 THEN
        PERFORM cd_partition_merge_discard();
        RETURN 'changed';
    END IF;
    bound := format('FROM (%s) TO (%s)', coalesce(m.lo::text, 'MINVALUE'), m.hi);
    FOREACH t IN ARRAY ARRAY['transactions', 'inputs', 'pushdata', 'outputs'] LOOP
        SELECT * INTO m FROM partition_merge WHERE tbl = t;
        FOREACH s IN ARRAY m.sources LOOP
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', t, s);
        END LOOP;
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES %s', t, m.stage, bound);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT cd_merge_range', m.stage);
        -- the sources are renamed out of the way, not dropped: a DROP
        -- unlinks their files at the commit, under these locks (0.95 s
        -- for 2 x 500k txs, growing with their size: docs/PERFORMANCE.md
        -- "Merging partitions in levels"); cd_partition_merge_drop_old
        -- drops them after the commit, locking nothing anyone waits for
        FOREACH s IN ARRAY m.sources LOOP
            FOR i IN SELECT ic.oid, ic.relname FROM pg_index x
                     JOIN pg_class ic ON ic.oid = x.indexrelid
                     WHERE x.indrelid = to_regclass(quote_ident(s)) LOOP
                EXECUTE format('ALTER INDEX %I RENAME TO %I', i.relname,
                               'cd_merge_old_' || i.oid::text);
            END LOOP;
            EXECUTE format('ALTER TABLE %I RENAME TO %I', s,
                           'cd_merge_old_' || to_regclass(quote_ident(s))::oid::text);
        END LOOP;
        EXECUTE format('ALTER TABLE %I RENAME TO %I', m.stage, m.sources[1]);
        FOR k IN 1 .. coalesce(array_length(m.idx_stage, 1), 0) LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I', m.idx_stage[k], m.idx_final[k]);
        END LOOP;
        EXECUTE format('COMMENT ON TABLE %I IS %L', m.sources[1],
                       format('Partition of %s (sql/019, a merge of level %s): block_id from %s to %s.',
                              t, m.level + 1, coalesce(m.lo::text, 'MINVALUE'), m.hi));
        DELETE FROM partitions p WHERE p.tbl = t AND p.part = ANY (m.sources);
        INSERT INTO partitions (tbl, part, lo, hi, level)
            VALUES (t, m.sources[1], m.lo, m.hi, m.level + 1);
    END LOOP;
    DELETE FROM partition_merge;
    RETURN 'merged';
END
$$;

-- For the status: the highest level and whether a prepared merge awaits
-- its swap.
CREATE FUNCTION cd_partition_merge_state(OUT max_level integer, OUT prepared boolean)
    LANGUAGE sql STABLE AS $$
    SELECT (SELECT coalesce(max(p.level), 0) FROM partitions p WHERE p.tbl = 'transactions'),
           EXISTS (SELECT 1 FROM partition_merge)
$$;

-- sql/017's roll, locking ONLY the parents: LOCK TABLE on a partitioned
-- table without ONLY also locks each partition, so a roll would wait for
-- (and, with its lock_timeout, always lose to) a merge's copy reading the
-- closed partitions for hours. Every insert, purge and query reaches the
-- partitions through the parents, so the parents' locks exclude them all;
-- DETACH / ATTACH lock the tip themselves. Otherwise unchanged.
CREATE OR REPLACE FUNCTION cd_partition_roll(max_txs bigint) RETURNS bigint
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
    LOCK TABLE ONLY transactions, ONLY inputs, ONLY pushdata, ONLY outputs IN ACCESS EXCLUSIVE MODE;
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
