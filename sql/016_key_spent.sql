-- 016_key_spent.sql - UTXO pages of a key in proportion to the page: the
-- trailing step marks the derived outputs it sees spent (issue 18), and the
-- two key pages share their paging rules (review finding D3/D5).
--
-- Why: 014's cd_utxos read the key's derived outputs in order and checked
-- each for a spend (a probe in inputs, one in mempool_inputs): a page of a
-- key whose early outputs are spent read past all of them, a cost in
-- proportion to the key's spent outputs, not to the page
-- (docs/PERFORMANCE.md "Key rows").
--
-- Design (docs/QUERIES.md "Key pages"):
--  * key_outs.spent_by: the block_id of the best-chain block whose input
--    spends the output, as the trailing step derived it; NULL: no derived
--    spend. key_outs_unspent_idx holds only the NULL rows, in key order: a
--    UTXO page below the mark is a range scan of it with LIMIT.
--  * Invariant: a non-NULL spent_by is a best-chain block, and every
--    best-chain block at or below the mark has marked every derived row of
--    each output it spends (every copy of the spent tx: the same outputs).
--    Kept by:
--      - the step: every batch marks the spends of ALL its blocks (those it
--        derives and those derived before, which a reorg brought back or
--        whose outputs came back in another block), after their outputs are
--        in, under the tip lock once it knows the batch is not void;
--      - a block leaving the best chain (the reorg's transaction, still
--        one): a row trigger clears the marks it set (found through its
--        inputs, as the step found them); a block joining at or below the
--        mark lowers the mark (014's trigger), so the step marks its spends
--        again.
--    Spends above the mark (not derived yet) and in the mempool are checked
--    live, per row of the page, as before.
--  * Upgrade from 015: rows derived before have no marks, so the mark goes
--    back to -1 (the reads use the blocks above it, or 007's scan beyond
--    cd_key_rows_lag_max(), meanwhile: the same rows) and the
--    step walks the chain again: blocks already derived only get their
--    marks (key_rows_blocks), no row is written twice.
--  * key_outs_key_idx goes: its one reader left (the mempool part of a
--    history page) reads key_outs_unspent_idx (below, with why the rows are
--    the same); a quarter of the step's CPU (docs/PERFORMANCE.md "Spent
--    marks").
--  * cd_history and cd_utxos take their cursor, page size and mark from one
--    function (cd_key_page_args) and check spends with one (cd_outpoint_spent);
--    007's cd_*_scan stay as they are: the reference and the fallback.

ALTER TABLE key_outs ADD COLUMN spent_by bigint;
CREATE INDEX key_outs_unspent_idx ON key_outs (kind, key, height, pos, vout)
    WHERE spent_by IS NULL;
-- rows derived under 015 carry no marks: derive the marks again from the start
UPDATE key_rows_mark SET height = -1 WHERE EXISTS (SELECT 1 FROM key_rows_blocks);

-- The derived rows (key_outs) of the outputs that the inputs of blocks
-- spend, one per (input, key of the output, indexed copy of the spent tx):
-- the spending block and tx position, the output's key, and the row's
-- ctid (for the step's and the unmark's UPDATE of those very rows). One
-- probe per input in transactions (tx_hash) and one in key_outs
-- (outpoint): OFFSET 0 keeps it a nested loop (joined, the planner hashes
-- the whole transactions table, a cost that grows with the index).
CREATE FUNCTION cd_key_spends(bids bigint[])
    RETURNS TABLE (block_id bigint, pos integer, kind "char", key bytea, row_id tid)
    LANGUAGE sql STABLE AS $$
    SELECT i.block_id, i.tx_pos, s.kind, s.key, s.row_id
    FROM inputs i
    CROSS JOIN LATERAL (
        SELECT ko.kind, ko.key, ko.ctid AS row_id FROM transactions t
        JOIN key_outs ko ON ko.block_id = t.block_id AND ko.pos = t.tx_pos
                        AND ko.vout = i.prev_idx
        WHERE t.tx_hash = i.prev_hash
        OFFSET 0) s
    WHERE i.block_id = ANY (bids)
$$;

-- Whether transactions has a valid index whose first column is tx_hash:
-- catch-up mode (src/index/cd_catchup.c) drops it while far behind, and
-- resolving inputs without it scans the table once per input.
CREATE FUNCTION cd_tx_hash_indexed() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_index x
                   JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
                   WHERE x.indrelid = 'transactions'::regclass AND x.indisvalid
                     AND a.attname = 'tx_hash')
$$;

-- A derived block leaving the best chain: the marks of its spends go, in
-- the reorg's transaction (which holds the tip lock: the step marks only
-- under it, so the rows found are the rows updated).
CREATE FUNCTION cd_key_spent_unmark() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids tid[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM key_rows_blocks WHERE block_id = NEW.block_id) THEN
        RETURN NULL;   -- never derived: it marked nothing
    END IF;
    IF NOT cd_tx_hash_indexed() THEN
        -- catch-up mode: one scan of key_outs rather than one of
        -- transactions per input
        UPDATE key_outs SET spent_by = NULL WHERE spent_by = NEW.block_id;
        RETURN NULL;
    END IF;
    SELECT array_agg(s.row_id) INTO ids FROM cd_key_spends(ARRAY[NEW.block_id]) s;
    UPDATE key_outs SET spent_by = NULL WHERE ctid = ANY (ids) AND spent_by = NEW.block_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER blocks_best_chain_key_spent AFTER UPDATE OF on_best_chain ON blocks
    FOR EACH ROW WHEN (OLD.on_best_chain AND NOT NEW.on_best_chain)
    EXECUTE FUNCTION cd_key_spent_unmark();

-- 014's step (same arguments, same result, same errors), which now also
-- marks the spends of its blocks (above). The spends are resolved once, for
-- the key_hist rows of the blocks it derives and for the marks.
CREATE OR REPLACE FUNCTION cd_key_rows_advance(max_blocks integer) RETURNS integer
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
    sp_blk bigint[];
    sp_pos integer[];
    sp_kind "char"[];
    sp_key bytea[];
    sp_row tid[];
    spb record;
BEGIN
    SELECT height INTO m FROM key_rows_mark;
    SELECT height INTO tip FROM index_tip;
    IF tip IS NULL OR tip <= m THEN
        RETURN 0;
    END IF;
    -- catch-up mode drops the index on transactions (tx_hash): wait until
    -- it is back
    IF NOT cd_tx_hash_indexed() THEN
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
    END IF;
    -- every input of the batch, resolved to the derived rows it spends
    SELECT array_agg(s.block_id), array_agg(s.pos), array_agg(s.kind), array_agg(s.key),
           array_agg(s.row_id)
      INTO sp_blk, sp_pos, sp_kind, sp_key, sp_row
    FROM cd_key_spends(ids) s;
    IF todo IS NOT NULL THEN
        INSERT INTO key_hist (kind, key, height, pos, block_id, dir)
        SELECT r.kind, r.key, b.height, r.pos, r.block_id, bit_or(r.d)::smallint
        FROM (SELECT ko.kind, ko.key, ko.block_id, ko.pos, 1 AS d
              FROM key_outs ko WHERE ko.block_id = ANY (todo)
              UNION ALL
              SELECT 'p', p.push_hash, p.block_id, p.tx_pos, 4
              FROM pushdata p WHERE p.block_id = ANY (todo)
              UNION ALL
              SELECT s.kind, s.key, s.blk, s.pos, 2
              FROM unnest(sp_kind, sp_key, sp_blk, sp_pos) AS s(kind, key, blk, pos)
              WHERE s.blk = ANY (todo)) r
        JOIN blocks b ON b.block_id = r.block_id
        GROUP BY r.kind, r.key, b.height, r.pos, r.block_id;
        INSERT INTO key_rows_blocks SELECT unnest(todo);
    END IF;
    -- Under the tip lock (sql/002 cd_reorg_step, src/pg/cd_pg.c), held to
    -- the commit: the blocks read must still be the best chain and the mark
    -- unmoved, else a reorg ran meanwhile and this batch is void. The marks
    -- are written only then: no reorg can clear them meanwhile (its
    -- trigger runs under the same lock), and the rows found above are the
    -- rows to update.
    PERFORM pg_advisory_xact_lock(4242424202);
    IF (SELECT count(*) FROM blocks WHERE block_id = ANY (ids) AND on_best_chain) <> n
       OR (SELECT height FROM key_rows_mark) <> m THEN
        RAISE EXCEPTION 'cd_key_rows_advance: the best chain moved during the batch; retry'
            USING ERRCODE = '40001';
    END IF;
    -- one UPDATE per spending block, by ctid (a TID scan: the rows were
    -- found above, no second probe)
    FOR spb IN SELECT u.blk, array_agg(u.row_id) AS rows
               FROM unnest(sp_blk, sp_row) AS u(blk, row_id) GROUP BY u.blk LOOP
        UPDATE key_outs SET spent_by = spb.blk
        WHERE ctid = ANY (spb.rows) AND spent_by IS DISTINCT FROM spb.blk;
    END LOOP;
    UPDATE key_rows_mark SET height = m + n;
    RETURN n;
END
$$;

-- 014's mempool part of a history page (same rows): the key's confirmed
-- outputs that mempool txs spend are read from key_outs_unspent_idx. A
-- marked output is spent on the best chain, and the mempool holds no tx
-- spending such an output (sql/002, 006: a conflicting tx is refused on
-- entry and dropped when the block that conflicts joins), so the rows are
-- the same; key_outs_key_idx, read only here, goes: one index fewer to
-- write per derived output and per mark (docs/PERFORMANCE.md "Spent marks").
CREATE OR REPLACE FUNCTION cd_key_hist_mempool(k "char", key bytea, m integer)
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
                                    AND ko.spent_by IS NULL
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
        WHERE few AND ko.kind = k AND ko.key = key AND ko.spent_by IS NULL AND ko.height <= m
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
DROP INDEX key_outs_key_idx;

-- ---- the two key pages (cd_history, cd_utxos): one set of paging rules ----

-- The paging state of a key page, from its arguments (as 007's functions
-- take them): k the key kind ('s' / 'p'; NULL: unknown kind, no rows), m
-- the usable mark (cd_key_rows_usable: NULL = read 007's scan), want the
-- page size (1..10000), chain false for a mempool cursor (after_height NULL
-- with after_pos set: confirmed rows are all before it), and the cursor
-- (ah, ap, av) the confirmed rows must follow in (height, pos, vout) order,
-- (-1, -1, -1) from the start. 007 compares (height, pos, vout) > (h, p,
-- NULL), which no row at (h, p) passes: av is then the largest integer.
CREATE FUNCTION cd_key_page_args(kind text, lim integer, after_height integer,
                                 after_pos bigint, after_vout integer,
                                 OUT k "char", OUT m integer, OUT want integer,
                                 OUT chain boolean, OUT ah integer, OUT ap bigint,
                                 OUT av integer)
    LANGUAGE sql STABLE AS $$
    SELECT CASE kind WHEN 'script' THEN 's' WHEN 'push' THEN 'p' END::"char",
           cd_key_rows_usable(),
           least(greatest(lim, 1), 10000),
           NOT (after_pos IS NOT NULL AND after_height IS NULL),
           CASE WHEN after_pos IS NULL THEN -1 ELSE after_height END,
           coalesce(after_pos, -1),
           CASE WHEN after_pos IS NULL THEN -1 ELSE coalesce(after_vout, 2147483647) END
$$;

-- Whether the output (tx, vout) is spent on the best chain by a block
-- above height `above` (NULL: not looked for; -1: any best-chain block), or
-- in the mempool. A plain SQL expression: the planner inlines it into the
-- page queries (one probe in inputs, unless above is NULL, and one in
-- mempool_inputs).
CREATE FUNCTION cd_outpoint_spent(tx bytea, vout integer, above integer) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT (above IS NOT NULL
            AND EXISTS (SELECT 1 FROM inputs i
                        JOIN blocks ib ON ib.block_id = i.block_id AND ib.on_best_chain
                        WHERE i.prev_hash = tx AND i.prev_idx = vout AND ib.height > above))
        OR EXISTS (SELECT 1 FROM mempool_inputs mi
                   WHERE mi.prev_hash = tx AND mi.prev_idx = vout)
$$;

-- History of a key: 014's (same arguments, rows, order), its paging state
-- from cd_key_page_args.
CREATE OR REPLACE FUNCTION cd_history(kind text, key bytea, lim integer DEFAULT 1000,
                                      after_height integer DEFAULT NULL,
                                      after_pos bigint DEFAULT NULL)
    RETURNS TABLE (txid text, height integer, pos bigint, direction text)
    LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    a record := cd_key_page_args(kind, lim, after_height, after_pos, NULL);
    n integer := 0;
    got integer;
BEGIN
    IF a.k IS NULL THEN
        RETURN;
    END IF;
    IF a.m IS NULL THEN
        RETURN QUERY SELECT * FROM cd_history_scan(kind, key, lim, after_height, after_pos);
        RETURN;
    END IF;
    IF a.chain THEN
        RETURN QUERY
        SELECT cd_txid_hex(t.tx_hash), h.height, h.pos::bigint, cd_dir_text(h.dir)
        FROM key_hist h
        JOIN blocks b ON b.block_id = h.block_id AND b.on_best_chain
        JOIN transactions t ON t.block_id = h.block_id AND t.tx_pos = h.pos
        WHERE h.kind = a.k AND h.key = key AND (h.height, h.pos) > (a.ah, a.ap)
          AND h.height <= a.m
        ORDER BY h.height, h.pos
        LIMIT a.want;
        GET DIAGNOSTICS got = ROW_COUNT;
        n := n + got;
        IF n >= a.want THEN
            RETURN;
        END IF;
        RETURN QUERY
        SELECT cd_txid_hex(x.tx_hash), x.height, x.pos::bigint, cd_dir_text(x.dir)
        FROM cd_key_hist_above(a.k, key, a.m) x
        WHERE (x.height, x.pos) > (a.ah, a.ap)
        ORDER BY x.height, x.pos
        LIMIT a.want - n;
        GET DIAGNOSTICS got = ROW_COUNT;
        n := n + got;
        IF n >= a.want THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    SELECT cd_txid_hex(x.tx_hash), NULL::integer, x.pos, cd_dir_text(x.dir)
    FROM cd_key_hist_mempool(a.k, key, a.m) x
    WHERE a.chain OR x.pos > a.ap
    ORDER BY x.pos
    LIMIT a.want - n;
END
$$;

-- Unspent outputs of a key: 014's (same arguments, rows, order). Below the
-- mark, a range scan of key_outs_unspent_idx (spends at or below the mark
-- are marked); each row is still checked for a spend above the mark (when
-- there are blocks above it) and in the mempool.
CREATE OR REPLACE FUNCTION cd_utxos(kind text, key bytea, lim integer DEFAULT 1000,
                                    after_height integer DEFAULT NULL,
                                    after_pos bigint DEFAULT NULL,
                                    after_vout integer DEFAULT NULL)
    RETURNS TABLE (txid text, vout integer, value bigint, height integer, pos bigint,
                   script bytea)
    LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    a record := cd_key_page_args(kind, lim, after_height, after_pos, after_vout);
    n integer := 0;
    got integer;
    -- the height above which spends are not marked: the mark if there are
    -- blocks above it, else NULL (then only the mempool is probed per row).
    -- A STABLE function's statements share the caller's snapshot: the tip
    -- read here is the tip the page reads.
    live integer;
BEGIN
    IF a.k IS NULL THEN
        RETURN;
    END IF;
    IF a.m IS NULL THEN
        RETURN QUERY SELECT * FROM cd_utxos_scan(kind, key, lim, after_height, after_pos,
                                                 after_vout);
        RETURN;
    END IF;
    IF a.chain THEN
        live := CASE WHEN (SELECT it.height FROM index_tip it) > a.m THEN a.m END;
        RETURN QUERY
        SELECT cd_txid_hex(t.tx_hash), o.vout, o.value, o.height, o.pos::bigint, o.script
        FROM key_outs o
        JOIN blocks b ON b.block_id = o.block_id AND b.on_best_chain
        JOIN transactions t ON t.block_id = o.block_id AND t.tx_pos = o.pos
        WHERE o.kind = a.k AND o.key = key AND o.spent_by IS NULL
          AND (o.height, o.pos, o.vout) > (a.ah, a.ap, a.av) AND o.height <= a.m
          AND NOT cd_outpoint_spent(t.tx_hash, o.vout, live)
        ORDER BY o.height, o.pos, o.vout
        LIMIT a.want;
        GET DIAGNOSTICS got = ROW_COUNT;
        n := n + got;
        IF n >= a.want THEN
            RETURN;
        END IF;
        RETURN QUERY
        SELECT cd_txid_hex(x.tx_hash), x.vout, x.value, x.height, x.pos::bigint, x.script
        FROM cd_key_outs_above(a.k, key, a.m) x
        WHERE (x.height, x.pos, x.vout) > (a.ah, a.ap, a.av)
          AND NOT cd_outpoint_spent(x.tx_hash, x.vout, -1)
        ORDER BY x.height, x.pos, x.vout
        LIMIT a.want - n;
        GET DIAGNOSTICS got = ROW_COUNT;
        n := n + got;
        IF n >= a.want THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    SELECT cd_txid_hex(x.tx_hash), x.idx, x.value, NULL::integer, x.seq, x.script
    FROM (SELECT mo.tx_hash, mo.idx, mo.value, mo.script, mt.seq
          FROM mempool_outputs mo JOIN mempool_tx mt ON mt.tx_hash = mo.tx_hash
          WHERE a.k = 's' AND mo.script_hash = key
          UNION
          SELECT mo.tx_hash, mo.idx, mo.value, mo.script, mt.seq
          FROM mempool_pushdata p
          JOIN mempool_outputs mo ON mo.tx_hash = p.tx_hash AND mo.idx = p.idx
          JOIN mempool_tx mt ON mt.tx_hash = mo.tx_hash
          WHERE a.k = 'p' AND p.push_hash = key AND (p.flags & 5) <> 0) x
    WHERE (a.chain OR (x.seq, x.idx) > (a.ap, a.av))
      AND NOT cd_outpoint_spent(x.tx_hash, x.idx, -1)
    ORDER BY x.seq, x.idx
    LIMIT a.want - n;
END
$$;

-- ---- comments (every table and column has one: tests/functional/test_ops_pg.py) ----

COMMENT ON COLUMN key_outs.spent_by IS 'the best-chain block (blocks.block_id) whose input spends the output, as the trailing step derived it (sql/016); NULL: no spend derived (spends above key_rows_mark and in the mempool are checked at read time)';
