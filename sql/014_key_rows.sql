-- 014_key_rows.sql - history and UTXO pages of a key that cost in
-- proportion to the page, not to the key's rows (issue 18). (A UTXO page
-- still checks, one probe each, the spent outputs it reads past.)
--
-- Why: 007's cd_history reads every output of the key, looks up each one's
-- spend (an input has no index by the key it spends) and sorts them all, so
-- a 1000-row page of a key with 150k rows cost 1.9 s at 10M txs
-- (docs/PERFORMANCE.md "Growth"). A page needs the key's rows already in
-- (height, pos) order, spends included.
--
-- Design (docs/QUERIES.md "Key pages", docs/PERFORMANCE.md "Key rows"):
--  * key_outs: one row per (output, key of the output): kind 's' (its
--    script hash) and kind 'p' (each pushdata key with flags OUTPUT or DATA
--    in it), with the output's height, position, vout, value and stored
--    script. key_hist: one row per (key, tx) of the history, with the
--    direction bits of 007's cd_history (1 receive, 2 spend, 4 push). Both
--    are ordered by (kind, key, height, pos): a page is a range scan with
--    LIMIT.
--  * They are DERIVED rows, written by a trailing step (cd_key_rows_advance,
--    run by the daemon's key-rows process, src/index/cd_keyrows.c), never on
--    the live indexing path: the parsers' COPY and the tip advance are
--    unchanged. The step resolves each input to the keys of the output it
--    spends (transactions_hash_idx, then key_outs by outpoint), blocks in
--    height order, in batches; key_rows_mark says every best-chain block up
--    to its height has its rows. Rows, the blocks done (key_rows_blocks) and
--    the mark commit in one transaction: a crash loses nothing and doubles
--    nothing.
--  * Reorgs: rows carry their block_id and the reads keep only best-chain
--    blocks (as every other row of the index); the reorg's transaction (still
--    one) lowers the mark below the fork (trigger below), so the new branch
--    is derived next; a block that comes back is not derived twice
--    (key_rows_blocks). The step checks, under the tip lock, that the blocks
--    it derived are still the best chain before it commits.
--  * Reads: below the mark from the derived rows, above it from the blocks
--    above the mark (their outputs, pushdata and inputs by block: a cost per
--    block, not per key), the mempool last. If the step lags by more than
--    cd_key_rows_lag_max() txs, the reads are 007's (renamed *_scan): the
--    results are the same either way (tests/functional/test_key_pages.py).

-- 001's cd_txid_hex (encode(cd_rev(b), 'hex'): cd_rev aggregates the bytes
-- one by one) cost ~40 us a call: 40 ms of a 1000-row page. The same text
-- for a 32-byte hash from the hex digits, two by two, in reverse (other
-- lengths: 001's way). Same results (tests/functional/test_key_pages.py).
CREATE OR REPLACE FUNCTION cd_txid_hex(b bytea) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    h text := encode(b, 'hex');
BEGIN
    IF length(b) <> 32 THEN
        RETURN encode(cd_rev(b), 'hex');
    END IF;
    RETURN
        substr(h, 63, 2) || substr(h, 61, 2) || substr(h, 59, 2) || substr(h, 57, 2) || substr(h, 55, 2) ||
        substr(h, 53, 2) || substr(h, 51, 2) || substr(h, 49, 2) || substr(h, 47, 2) || substr(h, 45, 2) ||
        substr(h, 43, 2) || substr(h, 41, 2) || substr(h, 39, 2) || substr(h, 37, 2) || substr(h, 35, 2) ||
        substr(h, 33, 2) || substr(h, 31, 2) || substr(h, 29, 2) || substr(h, 27, 2) || substr(h, 25, 2) ||
        substr(h, 23, 2) || substr(h, 21, 2) || substr(h, 19, 2) || substr(h, 17, 2) || substr(h, 15, 2) ||
        substr(h, 13, 2) || substr(h, 11, 2) || substr(h, 9, 2) || substr(h, 7, 2) || substr(h, 5, 2) ||
        substr(h, 3, 2) || substr(h, 1, 2);
END
$$;

CREATE TABLE key_outs (
    kind     "char"  NOT NULL,   -- 's' script hash, 'p' pushdata key
    key      bytea   NOT NULL,
    height   integer NOT NULL,
    pos      integer NOT NULL,   -- tx position in its block
    vout     integer NOT NULL,
    block_id bigint  NOT NULL,
    value    bigint  NOT NULL,
    script   bytea               -- outputs.script (NULL: longer than 64 bytes)
);
CREATE INDEX key_outs_key_idx ON key_outs (kind, key, height, pos, vout);
CREATE INDEX key_outs_outpoint_idx ON key_outs (block_id, pos, vout);
ALTER TABLE key_outs ALTER COLUMN script SET STORAGE PLAIN;

CREATE TABLE key_hist (
    kind     "char"   NOT NULL,
    key      bytea    NOT NULL,
    height   integer  NOT NULL,
    pos      integer  NOT NULL,
    block_id bigint   NOT NULL,
    dir      smallint NOT NULL   -- bits: 1 receive, 2 spend, 4 push
);
-- block_id and dir in the index: a page is an index-only scan (the heap
-- holds one key's rows one per page: a cold page would read ~1000 pages)
CREATE INDEX key_hist_key_idx ON key_hist (kind, key, height, pos) INCLUDE (block_id, dir);

-- blocks whose rows are in key_outs / key_hist (on the best chain or not)
CREATE TABLE key_rows_blocks (
    block_id bigint PRIMARY KEY
);

CREATE TABLE key_rows_mark (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    height    integer NOT NULL   -- every best-chain block <= height is derived
);
INSERT INTO key_rows_mark VALUES (true, -1);

-- A block joining or leaving the best chain at or below the mark: the mark
-- goes below it, in the same transaction (a reorg stays one transaction).
-- On a tip advance (height above the mark) the UPDATE matches nothing.
CREATE FUNCTION cd_key_rows_unmark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE key_rows_mark SET height = NEW.height - 1 WHERE height >= NEW.height;
    RETURN NULL;
END
$$;
CREATE TRIGGER blocks_best_chain_key_rows AFTER UPDATE OF on_best_chain ON blocks
    FOR EACH ROW WHEN (OLD.on_best_chain IS DISTINCT FROM NEW.on_best_chain)
    EXECUTE FUNCTION cd_key_rows_unmark();

-- The trailing step: derives the rows of the next best-chain blocks above
-- the mark (at most max_blocks, up to the indexed tip) in one transaction
-- (the caller's statement). Returns the number of blocks the mark moved (0:
-- at the tip, or the index on transactions (tx_hash) is missing). Raises
-- SQLSTATE 40001 when a reorg moved the blocks it read
-- (nothing is kept; call again).
CREATE FUNCTION cd_key_rows_advance(max_blocks integer) RETURNS integer
    LANGUAGE plpgsql
    -- a batch groups ~10 rows per tx in memory; JIT compiles for longer
    -- than the statements run (docs/PERFORMANCE.md "Key rows")
    SET work_mem = '64MB' SET jit = off AS $$
DECLARE
    m integer;
    tip integer;
    ids bigint[];
    top integer;
    n integer;
    todo bigint[];
BEGIN
    SELECT height INTO m FROM key_rows_mark;
    SELECT height INTO tip FROM index_tip;
    IF tip IS NULL OR tip <= m THEN
        RETURN 0;
    END IF;
    -- catch-up mode (src/index/cd_catchup.c) drops the index on
    -- transactions (tx_hash) while far behind: resolving inputs without it
    -- would scan the table once per input; wait until it is back (any
    -- valid index whose first column is tx_hash)
    IF NOT EXISTS (SELECT 1 FROM pg_index x
                   JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
                   WHERE x.indrelid = 'transactions'::regclass AND x.indisvalid
                     AND a.attname = 'tx_hash') THEN
        RETURN 0;
    END IF;
    SELECT array_agg(block_id ORDER BY height), max(height), count(*)
      INTO ids, top, n
    FROM blocks
    WHERE on_best_chain AND height > m AND height <= least(tip, m + greatest(max_blocks, 1));
    IF n = 0 OR top <> m + n THEN
        RETURN 0; -- a tip move in flight: next call
    END IF;
    SELECT array_agg(x) INTO todo
    FROM unnest(ids) AS x
    WHERE NOT EXISTS (SELECT 1 FROM key_rows_blocks d WHERE d.block_id = x);
    IF todo IS NOT NULL THEN
        -- the outputs first: a spend in the same batch finds them
        INSERT INTO key_outs (kind, key, height, pos, vout, block_id, value, script)
        SELECT 's'::"char", o.script_hash, b.height, o.tx_pos, o.idx, o.block_id, o.value, o.script
        FROM outputs o JOIN blocks b ON b.block_id = o.block_id
        WHERE o.block_id = ANY (todo)
        UNION ALL
        SELECT DISTINCT 'p'::"char", p.push_hash, b.height, o.tx_pos, o.idx, o.block_id, o.value,
               o.script
        FROM pushdata p
        JOIN outputs o ON o.block_id = p.block_id AND o.tx_pos = p.tx_pos AND o.idx = p.idx
        JOIN blocks b ON b.block_id = p.block_id
        WHERE p.block_id = ANY (todo) AND o.block_id = ANY (todo) AND (p.flags & 5) <> 0;
        INSERT INTO key_hist (kind, key, height, pos, block_id, dir)
        SELECT r.kind, r.key, b.height, r.pos, r.block_id, bit_or(r.d)::smallint
        FROM (SELECT ko.kind, ko.key, ko.block_id, ko.pos, 1 AS d
              FROM key_outs ko WHERE ko.block_id = ANY (todo)
              UNION ALL
              SELECT 'p', p.push_hash, p.block_id, p.tx_pos, 4
              FROM pushdata p WHERE p.block_id = ANY (todo)
              UNION ALL
              -- the keys of the output each input spends (any indexed copy
              -- of the spent tx: the same outputs, the same keys); one
              -- probe per input (OFFSET 0 keeps the subquery a nested loop:
              -- joined, the planner hashes the whole transactions table,
              -- a cost that grows with the index)
              SELECT s.kind, s.key, i.block_id, i.tx_pos, 2
              FROM inputs i
              CROSS JOIN LATERAL (
                  SELECT ko.kind, ko.key FROM transactions t
                  JOIN key_outs ko ON ko.block_id = t.block_id AND ko.pos = t.tx_pos
                                  AND ko.vout = i.prev_idx
                  WHERE t.tx_hash = i.prev_hash
                  OFFSET 0) s
              WHERE i.block_id = ANY (todo)) r
        JOIN blocks b ON b.block_id = r.block_id
        GROUP BY r.kind, r.key, b.height, r.pos, r.block_id;
        INSERT INTO key_rows_blocks SELECT unnest(todo);
    END IF;
    -- Under the tip lock (sql/002 cd_reorg_step, src/pg/cd_pg.c), held to
    -- the commit: the blocks read must still be the best chain and the mark
    -- unmoved, else a reorg ran meanwhile and this batch is void.
    PERFORM pg_advisory_xact_lock(4242424202);
    IF (SELECT count(*) FROM blocks WHERE block_id = ANY (ids) AND on_best_chain) <> n
       OR (SELECT height FROM key_rows_mark) <> m THEN
        RAISE EXCEPTION 'cd_key_rows_advance: the best chain moved during the batch; retry'
            USING ERRCODE = '40001';
    END IF;
    UPDATE key_rows_mark SET height = m + n;
    RETURN n;
END
$$;

-- The most txs above the mark for which the reads use the derived rows (the
-- blocks above the mark are read whole, block by block); beyond it they are
-- 007's definitions. 20,000: about 13 blocks of the benchmark's chain, a
-- few tens of ms (docs/PERFORMANCE.md "Key rows").
CREATE FUNCTION cd_key_rows_lag_max() RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT 20000::bigint
$$;

-- The mark if the derived rows can serve a read (the txs above it are at
-- most cd_key_rows_lag_max()), else NULL.
CREATE FUNCTION cd_key_rows_usable() RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT k.height FROM key_rows_mark k
    WHERE (SELECT coalesce(sum(b.tx_count), 0) FROM blocks b
           WHERE b.on_best_chain AND b.height > k.height) <= cd_key_rows_lag_max()
$$;

-- 007's reads, kept under new names: the reference the derived reads are
-- tested against, and the reads while the trailing step lags.
ALTER FUNCTION cd_history(text, bytea, integer, integer, bigint) RENAME TO cd_history_scan;
ALTER FUNCTION cd_utxos(text, bytea, integer, integer, bigint, integer) RENAME TO cd_utxos_scan;

-- The rows of the best-chain blocks above the mark m that belong to key
-- (what the trailing step will derive), one per output (vout) for the UTXO
-- page and the spends they make. The block's rows are read by block_id
-- (BRIN): the "|| ''" keeps the planner off the key's own index, which for
-- a hot key holds every one of its rows.
CREATE FUNCTION cd_key_outs_above(k "char", key bytea, m integer)
    RETURNS TABLE (tx_hash bytea, height integer, pos integer, vout integer, value bigint,
                   script bytea)
    LANGUAGE sql STABLE AS $$
    WITH ab AS (SELECT block_id, height FROM blocks WHERE on_best_chain AND height > m)
    SELECT t.tx_hash, ab.height, o.tx_pos, o.idx, o.value, o.script
    FROM ab JOIN outputs o ON o.block_id = ab.block_id
    JOIN transactions t ON t.block_id = o.block_id AND t.tx_pos = o.tx_pos
    WHERE k = 's' AND o.script_hash || ''::bytea = key
    UNION ALL
    SELECT DISTINCT t.tx_hash, ab.height, o.tx_pos, o.idx, o.value, o.script
    FROM ab JOIN pushdata p ON p.block_id = ab.block_id
    JOIN outputs o ON o.block_id = p.block_id AND o.tx_pos = p.tx_pos AND o.idx = p.idx
    JOIN transactions t ON t.block_id = o.block_id AND t.tx_pos = o.tx_pos
    WHERE k = 'p' AND p.push_hash || ''::bytea = key AND (p.flags & 5) <> 0
$$;

-- History rows (height, pos, direction bits) of key in the best-chain
-- blocks above the mark m, one per tx.
CREATE FUNCTION cd_key_hist_above(k "char", key bytea, m integer)
    RETURNS TABLE (tx_hash bytea, height integer, pos integer, dir integer)
    LANGUAGE sql STABLE AS $$
    WITH ab AS (SELECT block_id, height FROM blocks WHERE on_best_chain AND height > m),
    mine AS (SELECT * FROM cd_key_outs_above(k, key, m)),
    r AS (
        SELECT tx_hash, height, pos, 1 AS d FROM mine
        UNION ALL
        SELECT t.tx_hash, ab.height, p.tx_pos, 4
        FROM ab JOIN pushdata p ON p.block_id = ab.block_id
        JOIN transactions t ON t.block_id = p.block_id AND t.tx_pos = p.tx_pos
        WHERE k = 'p' AND p.push_hash || ''::bytea = key
        UNION ALL
        -- inputs above the mark spending an output of key: below the mark
        -- (key_outs by outpoint) or above it (mine)
        SELECT t.tx_hash, ab.height, i.tx_pos, 2
        FROM ab JOIN inputs i ON i.block_id = ab.block_id
        JOIN transactions t ON t.block_id = i.block_id AND t.tx_pos = i.tx_pos
        WHERE EXISTS (SELECT 1 FROM transactions pt
                      JOIN blocks pb ON pb.block_id = pt.block_id AND pb.on_best_chain
                      JOIN key_outs ko ON ko.block_id = pt.block_id AND ko.pos = pt.tx_pos
                                      AND ko.vout = i.prev_idx
                      WHERE pt.tx_hash = i.prev_hash AND ko.kind = k
                        AND ko.key = cd_key_hist_above.key
                        AND pb.height <= m)
           OR EXISTS (SELECT 1 FROM mine WHERE mine.tx_hash = i.prev_hash
                                            AND mine.vout = i.prev_idx)
    )
    SELECT tx_hash, height, pos, bit_or(d) FROM r GROUP BY tx_hash, height, pos
$$;

CREATE FUNCTION cd_dir_text(d integer) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN d & 3 = 3 THEN 'both' WHEN d & 1 = 1 THEN 'receive'
                WHEN d & 2 = 2 THEN 'spend' ELSE 'push' END
$$;

-- The mempool's history rows of key (height NULL, pos = arrival order):
-- its outputs, its pushes, and mempool txs spending an output of the key.
-- Spends are found from the smaller side: the mempool's inputs (each
-- resolved to its output's keys) or the key's outputs (each looked up in
-- mempool_inputs); the rows are the same.
CREATE FUNCTION cd_key_hist_mempool(k "char", key bytea, m integer)
    RETURNS TABLE (tx_hash bytea, pos bigint, dir integer)
    LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    mem bigint := (SELECT n FROM mempool_size);
    few boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM mempool_tx) THEN
        RETURN;
    END IF;
    -- the key's outputs, counted up to twice the mempool's txs
    few := (SELECT count(*) FROM (SELECT 1 FROM key_outs ko WHERE ko.kind = k AND ko.key = key
                                  LIMIT 2 * coalesce(mem, 0) + 1) x) <= 2 * coalesce(mem, 0);
    RETURN QUERY
    WITH mo AS (
        SELECT o.tx_hash, o.idx FROM mempool_outputs o
        WHERE k = 's' AND o.script_hash = key
        UNION
        SELECT o.tx_hash, o.idx FROM mempool_pushdata p
        JOIN mempool_outputs o ON o.tx_hash = p.tx_hash AND o.idx = p.idx
        WHERE k = 'p' AND p.push_hash = key AND (p.flags & 5) <> 0
    ), r AS (
        SELECT mo.tx_hash AS h, 1 AS d FROM mo
        UNION ALL
        SELECT p.tx_hash, 4 FROM mempool_pushdata p WHERE k = 'p' AND p.push_hash = key
        UNION ALL
        -- spends of the key's mempool outputs
        SELECT mi.tx_hash, 2 FROM mo JOIN mempool_inputs mi
            ON mi.prev_hash = mo.tx_hash AND mi.prev_idx = mo.idx
        UNION ALL
        -- spends of its confirmed outputs, from the key's side
        SELECT mi.tx_hash, 2
        FROM key_outs ko
        JOIN blocks b ON b.block_id = ko.block_id AND b.on_best_chain
        JOIN transactions t ON t.block_id = ko.block_id AND t.tx_pos = ko.pos
        JOIN mempool_inputs mi ON mi.prev_hash = t.tx_hash AND mi.prev_idx = ko.vout
        WHERE few AND ko.kind = k AND ko.key = key AND ko.height <= m
        UNION ALL
        -- ... or from the mempool's side
        SELECT mi.tx_hash, 2
        FROM mempool_inputs mi
        WHERE NOT few AND EXISTS (
            SELECT 1 FROM transactions t
            JOIN blocks b ON b.block_id = t.block_id AND b.on_best_chain
            JOIN key_outs ko ON ko.block_id = t.block_id AND ko.pos = t.tx_pos
                            AND ko.vout = mi.prev_idx
            WHERE t.tx_hash = mi.prev_hash AND ko.kind = k AND ko.key = key AND ko.height <= m)
        UNION ALL
        SELECT mi.tx_hash, 2
        FROM cd_key_outs_above(k, key, m) a
        JOIN mempool_inputs mi ON mi.prev_hash = a.tx_hash AND mi.prev_idx = a.vout
    )
    SELECT r.h, mt.seq, bit_or(r.d) FROM r JOIN mempool_tx mt ON mt.tx_hash = r.h
    GROUP BY r.h, mt.seq;
END
$$;

-- History of a key: 007's cd_history (same arguments, same rows, same
-- order), one page at a time: the derived rows below the mark in key order,
-- then the blocks above the mark, then the mempool, each read only if the
-- page is not full yet.
CREATE FUNCTION cd_history(kind text, key bytea, lim integer DEFAULT 1000,
                           after_height integer DEFAULT NULL, after_pos bigint DEFAULT NULL)
    RETURNS TABLE (txid text, height integer, pos bigint, direction text)
    LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    k "char" := CASE kind WHEN 'script' THEN 's' WHEN 'push' THEN 'p' END;
    m integer;
    want integer := least(greatest(lim, 1), 10000);
    n integer := 0;
    got integer;
    -- after_pos NULL: from the start; after_height NULL: a mempool cursor
    mem_cur boolean := after_pos IS NOT NULL AND after_height IS NULL;
    ah integer := CASE WHEN after_pos IS NULL THEN -1 ELSE after_height END;
    ap bigint := coalesce(after_pos, -1);
BEGIN
    IF k IS NULL THEN
        RETURN;
    END IF;
    m := cd_key_rows_usable();
    IF m IS NULL THEN
        RETURN QUERY SELECT * FROM cd_history_scan(kind, key, lim, after_height, after_pos);
        RETURN;
    END IF;
    IF NOT mem_cur THEN
        RETURN QUERY
        SELECT cd_txid_hex(t.tx_hash), h.height, h.pos::bigint, cd_dir_text(h.dir)
        FROM key_hist h
        JOIN blocks b ON b.block_id = h.block_id AND b.on_best_chain
        JOIN transactions t ON t.block_id = h.block_id AND t.tx_pos = h.pos
        WHERE h.kind = k AND h.key = key AND (h.height, h.pos) > (ah, ap) AND h.height <= m
        ORDER BY h.height, h.pos
        LIMIT want;
        GET DIAGNOSTICS got = ROW_COUNT;
        n := n + got;
        IF n >= want THEN
            RETURN;
        END IF;
        RETURN QUERY
        SELECT cd_txid_hex(a.tx_hash), a.height, a.pos::bigint, cd_dir_text(a.dir)
        FROM cd_key_hist_above(k, key, m) a
        WHERE (a.height, a.pos) > (ah, ap)
        ORDER BY a.height, a.pos
        LIMIT want - n;
        GET DIAGNOSTICS got = ROW_COUNT;
        n := n + got;
        IF n >= want THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    SELECT cd_txid_hex(x.tx_hash), NULL::integer, x.pos, cd_dir_text(x.dir)
    FROM cd_key_hist_mempool(k, key, m) x
    WHERE NOT mem_cur OR x.pos > ap
    ORDER BY x.pos
    LIMIT want - n;
END
$$;

-- Unspent outputs of a key: 007's cd_utxos (same arguments, rows, order),
-- one page at a time like cd_history; each candidate is checked for a spend
-- (best chain, mempool) by outpoint, as in 007.
CREATE FUNCTION cd_utxos(kind text, key bytea, lim integer DEFAULT 1000,
                         after_height integer DEFAULT NULL, after_pos bigint DEFAULT NULL,
                         after_vout integer DEFAULT NULL)
    RETURNS TABLE (txid text, vout integer, value bigint, height integer, pos bigint,
                   script bytea)
    LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    k "char" := CASE kind WHEN 'script' THEN 's' WHEN 'push' THEN 'p' END;
    m integer;
    want integer := least(greatest(lim, 1), 10000);
    n integer := 0;
    got integer;
    mem_cur boolean := after_pos IS NOT NULL AND after_height IS NULL;
    ah integer := CASE WHEN after_pos IS NULL THEN -1 ELSE after_height END;
    ap bigint := coalesce(after_pos, -1);
    -- 007 compares (height, pos, vout) > (h, p, NULL): no row at (h, p)
    -- itself passes, as with vout bound to the largest integer
    av integer := CASE WHEN after_pos IS NULL THEN -1
                       ELSE coalesce(after_vout, 2147483647) END;
BEGIN
    IF k IS NULL THEN
        RETURN;
    END IF;
    m := cd_key_rows_usable();
    IF m IS NULL THEN
        RETURN QUERY SELECT * FROM cd_utxos_scan(kind, key, lim, after_height, after_pos,
                                                 after_vout);
        RETURN;
    END IF;
    IF NOT mem_cur THEN
        RETURN QUERY
        SELECT cd_txid_hex(t.tx_hash), o.vout, o.value, o.height, o.pos::bigint, o.script
        FROM key_outs o
        JOIN blocks b ON b.block_id = o.block_id AND b.on_best_chain
        JOIN transactions t ON t.block_id = o.block_id AND t.tx_pos = o.pos
        WHERE o.kind = k AND o.key = key AND (o.height, o.pos, o.vout) > (ah, ap, av)
          AND o.height <= m
          AND NOT EXISTS (SELECT 1 FROM inputs i
                          JOIN blocks ib ON ib.block_id = i.block_id AND ib.on_best_chain
                          WHERE i.prev_hash = t.tx_hash AND i.prev_idx = o.vout)
          AND NOT EXISTS (SELECT 1 FROM mempool_inputs mi
                          WHERE mi.prev_hash = t.tx_hash AND mi.prev_idx = o.vout)
        ORDER BY o.height, o.pos, o.vout
        LIMIT want;
        GET DIAGNOSTICS got = ROW_COUNT;
        n := n + got;
        IF n >= want THEN
            RETURN;
        END IF;
        RETURN QUERY
        SELECT cd_txid_hex(a.tx_hash), a.vout, a.value, a.height, a.pos::bigint, a.script
        FROM cd_key_outs_above(k, key, m) a
        WHERE (a.height, a.pos, a.vout) > (ah, ap, av)
          AND NOT EXISTS (SELECT 1 FROM inputs i
                          JOIN blocks ib ON ib.block_id = i.block_id AND ib.on_best_chain
                          WHERE i.prev_hash = a.tx_hash AND i.prev_idx = a.vout)
          AND NOT EXISTS (SELECT 1 FROM mempool_inputs mi
                          WHERE mi.prev_hash = a.tx_hash AND mi.prev_idx = a.vout)
        ORDER BY a.height, a.pos, a.vout
        LIMIT want - n;
        GET DIAGNOSTICS got = ROW_COUNT;
        n := n + got;
        IF n >= want THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    SELECT cd_txid_hex(x.tx_hash), x.idx, x.value, NULL::integer, x.seq, x.script
    FROM (SELECT mo.tx_hash, mo.idx, mo.value, mo.script, mt.seq
          FROM mempool_outputs mo JOIN mempool_tx mt ON mt.tx_hash = mo.tx_hash
          WHERE k = 's' AND mo.script_hash = key
          UNION
          SELECT mo.tx_hash, mo.idx, mo.value, mo.script, mt.seq
          FROM mempool_pushdata p
          JOIN mempool_outputs mo ON mo.tx_hash = p.tx_hash AND mo.idx = p.idx
          JOIN mempool_tx mt ON mt.tx_hash = mo.tx_hash
          WHERE k = 'p' AND p.push_hash = key AND (p.flags & 5) <> 0) x
    WHERE (NOT mem_cur OR (x.seq, x.idx) > (ap, av))
      AND NOT EXISTS (SELECT 1 FROM inputs i
                      JOIN blocks ib ON ib.block_id = i.block_id AND ib.on_best_chain
                      WHERE i.prev_hash = x.tx_hash AND i.prev_idx = x.idx)
      AND NOT EXISTS (SELECT 1 FROM mempool_inputs mi
                      WHERE mi.prev_hash = x.tx_hash AND mi.prev_idx = x.idx)
    ORDER BY x.seq, x.idx
    LIMIT want - n;
END
$$;

-- cd_block_purge (005/007) removes the rows of a copy that failed its
-- merkle check: such a block was never indexed, so never derived (the step
-- reads best-chain blocks only, which are indexed). Nothing to add there.

-- ---- comments (every table and column has one: tests/functional/test_ops_pg.py) ----

COMMENT ON TABLE key_outs IS 'Derived (trailing step cd_key_rows_advance, sql/014): one row per output and key of the output, ordered by key for UTXO pages (cd_utxos). Rows of blocks off the best chain stay and are ignored.';
COMMENT ON COLUMN key_outs.kind IS '''s'': key is the output''s script hash; ''p'': a pushdata key (flags OUTPUT or DATA) of the output';
COMMENT ON COLUMN key_outs.key IS 'script hash (natural order) or pushdata key (sha256 of the pushed bytes)';
COMMENT ON COLUMN key_outs.height IS 'height of the output''s block';
COMMENT ON COLUMN key_outs.pos IS 'position of the output''s tx in its block';
COMMENT ON COLUMN key_outs.vout IS 'output index';
COMMENT ON COLUMN key_outs.block_id IS 'the output''s block (blocks.block_id): best-chain membership is read there';
COMMENT ON COLUMN key_outs.value IS 'satoshis (outputs.value)';
COMMENT ON COLUMN key_outs.script IS 'the locking script if at most 64 bytes, else NULL (outputs.script)';
COMMENT ON TABLE key_hist IS 'Derived (trailing step cd_key_rows_advance, sql/014): one row per key and tx of its history, ordered by key for history pages (cd_history).';
COMMENT ON COLUMN key_hist.kind IS '''s'' script hash, ''p'' pushdata key';
COMMENT ON COLUMN key_hist.key IS 'script hash (natural order) or pushdata key';
COMMENT ON COLUMN key_hist.height IS 'height of the tx''s block';
COMMENT ON COLUMN key_hist.pos IS 'position of the tx in its block';
COMMENT ON COLUMN key_hist.block_id IS 'the tx''s block (blocks.block_id): best-chain membership is read there';
COMMENT ON COLUMN key_hist.dir IS 'bits: 1 the tx pays to the key, 2 spends an output of it, 4 pushes it (pushdata keys)';
COMMENT ON TABLE key_rows_blocks IS 'Blocks whose rows are in key_outs and key_hist (sql/014): a block that leaves the best chain and comes back is not derived twice.';
COMMENT ON COLUMN key_rows_blocks.block_id IS 'blocks.block_id';
COMMENT ON TABLE key_rows_mark IS 'One row: every best-chain block up to height has its key_outs / key_hist rows (sql/014); lowered by a reorg in its transaction.';
COMMENT ON COLUMN key_rows_mark.singleton IS 'always true: one row';
COMMENT ON COLUMN key_rows_mark.height IS 'last height derived (-1: none)';
