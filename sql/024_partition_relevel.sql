-- 024_partition_relevel.sql - a closed partition's merge level follows its
-- size (issue 18).
--
-- sql/019 gives every rolled partition level 0. That is right for a tip
-- closed at partition_txs, but not for one that grew larger than that
-- before it closed: an index upgraded to sql/017 becomes one partition
-- <tbl>_p0 holding everything indexed so far (10^9 txs, say), and the
-- first roll closes it at level 0. The next level-0 merge then copies it
-- whole together with f-1 partitions of 10M (hours, and twice its disk),
-- only 70M txs later, and again at each level after. Lowering
-- partition_txs does the same on a smaller scale to the partitions closed
-- before.
--
-- So before each merge the closed partitions are relevelled by size: the
-- level L whose nominal size unit_txs * fan_in^L it reaches (a partition
-- of at least unit_txs * fan_in^L txs is of level L or higher), but:
--  * never lowered (a merged partition keeps the level it climbed to);
--  * never above the level of the partition just older than it: tiered
--    merging keeps the levels descending with the range, which is what
--    makes the oldest f partitions of a level adjacent
--    (cd_partition_merge_candidate refuses a level whose oldest f are not,
--    and a raised partition in the middle of a lower level would block
--    that level for good). The upgraded _p0 is the oldest and is raised
--    as far as its size says; a big partition behind smaller ones keeps
--    their level (it is merged with them, as before).
-- A partition of normal size is never raised: a rolled one overshoots
-- partition_txs by at most what is indexed between two looks of the roll,
-- far below fan_in times partition_txs at the defaults.
--
-- The size is what indexed_units counts in the range (the roll's own
-- measure, cd_partition_tip_txs). A merge prepared from the old levels is
-- refused by its swap ('changed': its sources' level differs), so the
-- caller relevels only when no copy is left prepared.

-- Raises the levels of closed partitions (all four tables: they share the
-- bounds) whose size says so, as above. Returns one row per partition
-- raised: transactions' partition name, its txs, the old and new level.
-- Nothing for fan_in < 2 or unit_txs <= 0 (merging or rolling off).
CREATE FUNCTION cd_partition_relevel(fan_in integer, unit_txs bigint,
                                     OUT part text, OUT txs bigint, OUT old_level integer,
                                     OUT new_level integer)
    RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE
    r record;
    prev integer := NULL;
    lv integer;
    n bigint;
    nominal numeric;
BEGIN
    IF fan_in IS NULL OR fan_in < 2 OR unit_txs IS NULL OR unit_txs <= 0 THEN
        RETURN;
    END IF;
    FOR r IN SELECT p.part, p.lo, p.hi, p.level
             FROM partitions p WHERE p.tbl = 'transactions' AND p.hi IS NOT NULL
             ORDER BY p.lo NULLS FIRST LOOP
        -- capped at its own level: nothing to count (most partitions, as
        -- levels descend: only the oldest and those where a level ends)
        IF prev IS NOT NULL AND prev <= r.level THEN
            prev := r.level;
            CONTINUE;
        END IF;
        SELECT coalesce(sum(u.tx_count), 0)::bigint INTO n FROM indexed_units u
        WHERE u.block_id >= coalesce(r.lo, -9223372036854775808) AND u.block_id < r.hi;
        -- the level its size reaches (numeric: no overflow at any fan_in)
        lv := 0;
        nominal := unit_txs::numeric * fan_in;
        WHILE n >= nominal LOOP
            lv := lv + 1;
            nominal := nominal * fan_in;
        END LOOP;
        IF prev IS NOT NULL THEN
            lv := least(lv, prev);
        END IF;
        lv := greatest(lv, r.level);
        IF lv > r.level THEN
            UPDATE partitions p SET level = lv
            WHERE p.hi = r.hi AND p.lo IS NOT DISTINCT FROM r.lo;
            part := r.part;
            txs := n;
            old_level := r.level;
            new_level := lv;
            RETURN NEXT;
        END IF;
        prev := lv;
    END LOOP;
END
$$;
