-- 023_partition_autovacuum.sql - the roll and the merge's swap get past an
-- autovacuum of the partitions they detach or attach (issue 18).
--
-- Why: an autovacuum (or autoanalyze) of a partition holds SHARE UPDATE
-- EXCLUSIVE on it while it runs: seconds to minutes on a large open tip,
-- whose every page inserted since its last run it reads, and likewise on
-- a partition just closed or a merge's freshly copied staging table. DETACH,
-- ATTACH and RENAME need ACCESS EXCLUSIVE. PostgreSQL cancels an autovacuum
-- (not one against wraparound) that blocks another session, but only once
-- that session has waited deadlock_timeout (src/backend/storage/lmgr/
-- proc.c, ProcSleep: "sending cancel to blocking autovacuum"); the roll and
-- the swap wait at most half of it (sql/017, sql/019), so they failed for as
-- long as the autovacuum ran, and each attempt held the four parents, and
-- with them every parser's unit, for that half second.
-- tests/functional/test_partition_fence.py (a real autovacuum slowed down
-- on the tip) failed with "canceling statement due to lock timeout" at the
-- DETACH.
--
-- The fix: before the parents, the partitions they will detach or attach
-- are locked SHARE UPDATE EXCLUSIVE, in the parents' order, with a
-- lock_timeout of three deadlock_timeouts: past the server's check that
-- cancels a blocking autovacuum. That mode conflicts with autovacuum,
-- ANALYZE and CREATE INDEX, not with the ROW EXCLUSIVE of the parsers' COPYs
-- and the reorg's deletes nor with readers: the wait holds back no unit. An
-- autovacuum cannot start on them afterwards (it only takes its lock
-- conditionally). Who else takes such a lock there waits for nothing the
-- roll holds: the key-rows step's ANALYZE and block-index builds run behind
-- the partition fence the roll and the swap already hold (sql/020, sql/021),
-- the index builds and the merge's copy run in the same helper as the roll
-- or the swap, one after the other. Still past its timeout (an autovacuum
-- against wraparound is not cancelled; an operator's VACUUM): lock_not_available
-- as before, the caller retries later.
--
-- Done as sql/020 did: the released functions are renamed (text
-- unchanged) and wrapped under their old names.

ALTER FUNCTION cd_partition_roll_unfenced(bigint) RENAME TO cd_partition_roll_detach;
ALTER FUNCTION cd_partition_merge_swap_unfenced() RENAME TO cd_partition_merge_swap_detach;

-- SHARE UPDATE EXCLUSIVE on each of rels (names, in the order given) with
-- lock_timeout at three deadlock_timeouts, for the rest of the transaction
-- (the callers set their own lock_timeout again after it).
CREATE FUNCTION cd_partition_lock_vacuum(rels text[]) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    r text;
    dl interval;
BEGIN
    dl := current_setting('deadlock_timeout')::interval;
    PERFORM set_config('lock_timeout',
                       greatest((extract(epoch FROM dl) * 3000)::bigint, 1)::text || 'ms', true);
    FOREACH r IN ARRAY coalesce(rels, '{}') LOOP
        IF to_regclass(quote_ident(r)) IS NOT NULL THEN
            EXECUTE format('LOCK TABLE %I IN SHARE UPDATE EXCLUSIVE MODE', r);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION cd_partition_lock_vacuum(text[]) IS
    'Locks these tables SHARE UPDATE EXCLUSIVE, waiting past deadlock_timeout so that the server cancels a blocking autovacuum (sql/023): before a roll or a merge''s swap.';

-- (the cheap "is the tip full" test is cd_partition_roll's, before the
-- fence; the roll itself tests again under the parents' locks)
CREATE FUNCTION cd_partition_roll_unfenced(max_txs bigint) RETURNS bigint
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cd_partition_lock_vacuum(ARRAY(
        SELECT p.part FROM partitions p WHERE p.hi IS NULL
        ORDER BY array_position(ARRAY['transactions', 'inputs', 'pushdata', 'outputs'], p.tbl)));
    RETURN cd_partition_roll_detach(max_txs);
END
$$;
COMMENT ON FUNCTION cd_partition_roll_unfenced(bigint) IS
    'sql/019''s roll after the open tips are locked against autovacuum (sql/023); only cd_partition_roll (behind the fence, sql/020) calls it.';

CREATE FUNCTION cd_partition_merge_swap_unfenced() RETURNS text
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cd_partition_lock_vacuum(ARRAY(
        SELECT r FROM partition_merge m, unnest(ARRAY[m.stage] || m.sources) WITH ORDINALITY AS u(r, o)
        ORDER BY array_position(ARRAY['transactions', 'inputs', 'pushdata', 'outputs'], m.tbl), u.o));
    RETURN cd_partition_merge_swap_detach();
END
$$;
COMMENT ON FUNCTION cd_partition_merge_swap_unfenced() IS
    'sql/019''s swap after the staging tables and the sources are locked against autovacuum (sql/023); only cd_partition_merge_swap (behind the fence, sql/020) calls it.';

COMMENT ON FUNCTION cd_partition_roll_detach(bigint) IS
    'The roll itself (sql/017, sql/019: the parents locked, detach, attach, the new tip): only cd_partition_roll_unfenced (sql/023) calls it.';
COMMENT ON FUNCTION cd_partition_merge_swap_detach() IS
    'The swap itself (sql/019: the parents locked, the sources detached, the copy attached): only cd_partition_merge_swap_unfenced (sql/023) calls it.';
