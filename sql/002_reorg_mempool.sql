-- 002_reorg_mempool.sql - best-chain switches (reorgs), the mempool tables,
-- and LISTEN/NOTIFY notifications for applications.
--
-- Applied by cd_pg_migrate after 001_initial.sql. docs/QUERIES.md documents
-- the tables, the views and the notification payloads.
--
-- Design (issue #8):
--  * chain_target holds the header tree's best tip, written by conduitd's
--    reorg/mempool module (src/daemon/cd_mempool.c) on every best-tip change
--    and at start. cd_reorg_step() compares it with index_tip and, once every
--    block from the fork point to the target is indexed, switches the best
--    chain in the caller's ONE transaction: leaving blocks off, joining blocks
--    on, index_tip moved, mempool reconciled, NOTIFY sent. Nothing else has
--    to be remembered: after a crash the daemon writes the target again and
--    the next step finishes (or never started) the switch - the views show
--    one side or the other, never a mixture.
--  * Per-block effects hang off blocks.on_best_chain (row trigger), so the
--    ordinary tip advance (cd_pg.c) and the reorg share them:
--      false -> true  (block connected): its txs leave the mempool, mempool
--                     txs spending the same outpoints (conflicts) and their
--                     mempool descendants are dropped, watched keys /
--                     outpoints notify;
--      true -> false  (block disconnected): its non-coinbase txs return to
--                     the mempool tables with their input and pushdata rows.
--  * Mempool rows are keyed by tx_hash; seq orders them for oldest-first
--    eviction (cd_mempool_add_batch keeps at most `cap` rows).

CREATE TABLE chain_target (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    block_hash bytea   NOT NULL,   -- the header tree's best tip, internal order
    height     integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Rows of one block, found without the (droppable) hash indexes: a BRIN
-- index keeps one min/max summary per range of pages, which suits block_id
-- because rows arrive in (roughly) block_id order; it is small and adds
-- little to the bulk load (docs/PERFORMANCE.md). Used when a block leaves the best chain (its rows return to
-- the mempool) and when one joins (conflicts, watched keys / outpoints).
CREATE INDEX inputs_block_brin ON inputs USING brin (block_id);
CREATE INDEX pushdata_block_brin ON pushdata USING brin (block_id);

CREATE TABLE mempool_tx (
    tx_hash bytea   PRIMARY KEY,   -- txid, internal order
    seq     bigint  GENERATED ALWAYS AS IDENTITY UNIQUE, -- arrival order (eviction)
    seen_at timestamptz NOT NULL DEFAULT now(),
    tx_size integer NOT NULL,
    source  smallint NOT NULL DEFAULT 0   -- 0 relayed by a peer, 1 returned by a reorg
);

CREATE TABLE mempool_inputs (
    tx_hash   bytea   NOT NULL,   -- mempool_tx (rows go with it: mempool_tx_cascade)
    in_idx    integer NOT NULL,
    prev_idx  integer NOT NULL,
    prev_hash bytea   NOT NULL,
    PRIMARY KEY (tx_hash, in_idx)
);
CREATE INDEX mempool_inputs_outpoint_idx ON mempool_inputs (prev_hash, prev_idx);

CREATE TABLE mempool_pushdata (
    tx_hash   bytea    NOT NULL,  -- mempool_tx (rows go with it: mempool_tx_cascade)
    idx       integer  NOT NULL,
    flags     smallint NOT NULL,
    push_hash bytea    NOT NULL
);
CREATE INDEX mempool_pushdata_tx_idx ON mempool_pushdata (tx_hash);
CREATE INDEX mempool_pushdata_hash_idx ON mempool_pushdata (push_hash);

-- Deleting a mempool_tx row deletes its input and pushdata rows. A
-- statement trigger instead of foreign keys: no per-row RI check on the
-- insert path.
CREATE FUNCTION cd_mempool_tx_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM mempool_inputs WHERE tx_hash IN (SELECT tx_hash FROM old_rows);
    DELETE FROM mempool_pushdata WHERE tx_hash IN (SELECT tx_hash FROM old_rows);
    RETURN NULL;
END
$$;
CREATE TRIGGER mempool_tx_cascade AFTER DELETE ON mempool_tx
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cd_mempool_tx_cascade();

-- Registered by applications: pushdata keys (sha256 of the pushed bytes, as
-- in pushdata.push_hash) and outpoints whose spend they want to hear about.
CREATE TABLE watched_keys (
    push_hash bytea PRIMARY KEY,
    label     text,
    added_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE watched_outpoints (
    prev_hash bytea   NOT NULL,   -- txid, internal order
    prev_idx  integer NOT NULL,
    label     text,
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prev_hash, prev_idx)
);

-- ---- notifications ----

CREATE FUNCTION cd_quiet() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('conduit.quiet', true), '') = 'on'
$$;

-- channel cd_tip: every move of the indexed tip
CREATE FUNCTION cd_tip_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cd_tip', json_build_object(
        'height', NEW.height,
        'hash', (SELECT cd_txid_hex(block_hash) FROM blocks WHERE block_id = NEW.block_id)
    )::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER index_tip_notify AFTER INSERT OR UPDATE ON index_tip
    FOR EACH ROW EXECUTE FUNCTION cd_tip_notify();

-- channels cd_key / cd_spend for mempool rows: statement-level triggers
-- with transition tables (one join per batch, not one lookup per row)
CREATE FUNCTION cd_mempool_push_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT cd_quiet() AND EXISTS (SELECT 1 FROM watched_keys) THEN
        PERFORM pg_notify('cd_key', json_build_object(
                    'key', encode(n.push_hash, 'hex'), 'txid', cd_txid_hex(n.tx_hash),
                    'idx', n.idx, 'flags', n.flags, 'state', 'mempool')::text)
        FROM new_rows n JOIN watched_keys w ON w.push_hash = n.push_hash;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER mempool_pushdata_notify AFTER INSERT ON mempool_pushdata
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cd_mempool_push_notify();

CREATE FUNCTION cd_mempool_input_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT cd_quiet() AND EXISTS (SELECT 1 FROM watched_outpoints) THEN
        PERFORM pg_notify('cd_spend', json_build_object(
                    'txid', cd_txid_hex(n.prev_hash), 'vout', n.prev_idx,
                    'spend_txid', cd_txid_hex(n.tx_hash), 'in_idx', n.in_idx,
                    'state', 'mempool')::text)
        FROM new_rows n JOIN watched_outpoints w
             ON w.prev_hash = n.prev_hash AND w.prev_idx = n.prev_idx;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER mempool_inputs_notify AFTER INSERT ON mempool_inputs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cd_mempool_input_notify();

-- ---- per-block effects of joining / leaving the best chain ----

-- Drops the mempool txs `conflicted` and, repeatedly, the mempool txs
-- spending their outputs (descendants). Returns how many were dropped.
CREATE FUNCTION cd_mempool_drop_conflicts(conflicted bytea[]) RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    gone bytea[] := conflicted;
    total integer := 0;
    n integer;
BEGIN
    WHILE coalesce(array_length(gone, 1), 0) > 0 LOOP
        WITH d AS (DELETE FROM mempool_tx WHERE tx_hash = ANY (gone) RETURNING tx_hash)
        SELECT count(*) INTO n FROM d;
        total := total + n;
        -- descendants: spend an output of a dropped tx
        SELECT array_agg(DISTINCT mi.tx_hash) INTO gone
        FROM mempool_inputs mi WHERE mi.prev_hash = ANY (gone);
    END LOOP;
    RETURN total;
END
$$;

CREATE FUNCTION cd_block_connected(bid bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    conflicted bytea[];
    blk record;
BEGIN
    IF EXISTS (SELECT 1 FROM mempool_tx) THEN
        -- confirmed: the block's own txs leave the mempool (their rows are
        -- now the block's)
        DELETE FROM mempool_tx m USING transactions t
        WHERE t.block_id = bid AND m.tx_hash = t.tx_hash;
        -- conflicted: a mempool tx spending an outpoint this block spends
        SELECT array_agg(DISTINCT mi.tx_hash) INTO conflicted
        FROM mempool_inputs mi
        JOIN inputs i ON i.prev_hash = mi.prev_hash AND i.prev_idx = mi.prev_idx
        WHERE i.block_id = bid;
        PERFORM cd_mempool_drop_conflicts(conflicted);
    END IF;
    IF cd_quiet() THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM watched_keys) OR EXISTS (SELECT 1 FROM watched_outpoints) THEN
        SELECT height, cd_txid_hex(block_hash) AS hash INTO blk FROM blocks WHERE block_id = bid;
        PERFORM pg_notify('cd_key', json_build_object(
                    'key', encode(p.push_hash, 'hex'), 'txid', cd_txid_hex(t.tx_hash),
                    'idx', p.idx, 'flags', p.flags, 'state', 'confirmed',
                    'height', blk.height, 'block', blk.hash)::text)
        FROM watched_keys w
        JOIN pushdata p ON p.push_hash = w.push_hash AND p.block_id = bid
        JOIN transactions t ON t.block_id = p.block_id AND t.tx_pos = p.tx_pos;
        PERFORM pg_notify('cd_spend', json_build_object(
                    'txid', cd_txid_hex(i.prev_hash), 'vout', i.prev_idx,
                    'spend_txid', cd_txid_hex(t.tx_hash), 'in_idx', i.in_idx,
                    'state', 'confirmed', 'height', blk.height, 'block', blk.hash)::text)
        FROM watched_outpoints w
        JOIN inputs i ON i.prev_hash = w.prev_hash AND i.prev_idx = w.prev_idx AND i.block_id = bid
        JOIN transactions t ON t.block_id = i.block_id AND t.tx_pos = i.tx_pos;
    END IF;
END
$$;

CREATE FUNCTION cd_block_disconnected(bid bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    back bytea[];
BEGIN
    -- non-coinbase txs return to the mempool (unless already there); rows
    -- for their inputs and pushdata keys come from the block's rows
    WITH ins AS (
        INSERT INTO mempool_tx (tx_hash, tx_size, source)
        SELECT tx_hash, tx_size, 1 FROM transactions
        WHERE block_id = bid AND tx_pos > 0 ORDER BY tx_pos
        ON CONFLICT (tx_hash) DO NOTHING
        RETURNING tx_hash)
    SELECT array_agg(tx_hash) INTO back FROM ins;
    IF back IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO mempool_inputs (tx_hash, in_idx, prev_idx, prev_hash)
    SELECT t.tx_hash, i.in_idx, i.prev_idx, i.prev_hash
    FROM inputs i JOIN transactions t ON t.block_id = i.block_id AND t.tx_pos = i.tx_pos
    WHERE i.block_id = bid AND t.tx_hash = ANY (back)
    ON CONFLICT DO NOTHING;
    INSERT INTO mempool_pushdata (tx_hash, idx, flags, push_hash)
    SELECT t.tx_hash, p.idx, p.flags, p.push_hash
    FROM pushdata p JOIN transactions t ON t.block_id = p.block_id AND t.tx_pos = p.tx_pos
    WHERE p.block_id = bid AND t.tx_hash = ANY (back);
END
$$;

CREATE FUNCTION cd_blocks_best_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.on_best_chain AND NOT OLD.on_best_chain THEN
        PERFORM cd_block_connected(NEW.block_id);
    ELSIF OLD.on_best_chain AND NOT NEW.on_best_chain THEN
        PERFORM cd_block_disconnected(NEW.block_id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER blocks_best_chain AFTER UPDATE OF on_best_chain ON blocks
    FOR EACH ROW EXECUTE FUNCTION cd_blocks_best_trigger();

-- ---- the best-chain switch ----

-- One step towards chain_target, in the caller's transaction (the daemon
-- runs `SELECT cd_reorg_step()` as its own statement = one transaction).
-- Takes the tip lock shared with cd_pg.c (advisory xact lock 4242424202),
-- so it serialises with the parsers' tip advances; if a parser holds it the
-- step does nothing and returns 'busy' (the daemon retries on its next tick).
-- Returns:
--   'none'     no target or no indexed tip yet
--   'at'       index_tip is the target
--   'wait'     a block between the fork point and the target is not
--              registered or not indexed yet (download/index in progress)
--   'switched' the best chain now ends at the target (it extended the tip)
--   'reorg F L J' the same after a reorg: fork height F, L blocks left the
--              best chain, J joined
CREATE FUNCTION cd_reorg_step() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    tgt record;
    tip record;
    b record;
    cur bytea;
    path bigint[] := '{}';
    fork_id bigint;
    fork_h integer;
    n_leave integer;
    steps integer := 0;
    jid bigint;
BEGIN
    -- never wait: the caller is the controller's event loop; a parser
    -- completing a block holds the lock for a while (merkle check)
    IF NOT pg_try_advisory_xact_lock(4242424202) THEN
        RETURN 'busy';
    END IF;
    SELECT * INTO tgt FROM chain_target;
    IF NOT FOUND THEN
        RETURN 'none';
    END IF;
    SELECT i.block_id, i.height, bb.block_hash INTO tip
    FROM index_tip i JOIN blocks bb ON bb.block_id = i.block_id;
    IF NOT FOUND THEN
        RETURN 'none';
    END IF;
    IF tip.block_hash = tgt.block_hash THEN
        RETURN 'at';
    END IF;
    cur := tgt.block_hash;
    LOOP
        SELECT block_id, height, prev_hash, indexed, on_best_chain INTO b
        FROM blocks WHERE block_hash = cur;
        IF NOT FOUND OR steps > 100000 THEN
            RETURN 'wait';
        END IF;
        IF b.on_best_chain THEN
            fork_id := b.block_id;
            fork_h := b.height;
            EXIT;
        END IF;
        IF NOT b.indexed THEN
            RETURN 'wait';
        END IF;
        path := b.block_id || path;
        cur := b.prev_hash;
        steps := steps + 1;
    END LOOP;
    SELECT count(*) INTO n_leave FROM blocks WHERE on_best_chain AND height > fork_h;
    -- the switch: leaving blocks off (their txs return to the mempool),
    -- then joining blocks on in height order (their txs leave it again)
    PERFORM set_config('conduit.quiet', 'on', true);
    UPDATE blocks SET on_best_chain = false WHERE on_best_chain AND height > fork_h;
    PERFORM set_config('conduit.quiet', 'off', true);
    FOREACH jid IN ARRAY path LOOP
        UPDATE blocks SET on_best_chain = true WHERE block_id = jid;
    END LOOP;
    INSERT INTO index_tip (singleton, block_id, height)
    SELECT true, block_id, height FROM blocks WHERE block_hash = tgt.block_hash
    ON CONFLICT (singleton) DO UPDATE SET block_id = EXCLUDED.block_id,
        height = EXCLUDED.height, updated_at = now();
    IF n_leave > 0 THEN
        PERFORM pg_notify('cd_reorg', json_build_object(
            'fork_height', fork_h,
            'fork_hash', (SELECT cd_txid_hex(block_hash) FROM blocks WHERE block_id = fork_id),
            'old_tip', cd_txid_hex(tip.block_hash), 'old_height', tip.height,
            'new_tip', cd_txid_hex(tgt.block_hash),
            'new_height', (SELECT height FROM blocks WHERE block_hash = tgt.block_hash),
            'leaving', n_leave, 'joining', coalesce(array_length(path, 1), 0))::text);
    END IF;
    IF n_leave > 0 THEN
        RETURN format('reorg %s %s %s', fork_h, n_leave, coalesce(array_length(path, 1), 0));
    END IF;
    RETURN 'switched';
END
$$;

-- ---- mempool insertion (the daemon's relay path) ----

-- Adds a batch of relayed transactions with their rows, set-based (one call
-- per batch of a few hundred txs). Arguments, for n txs in arrival order:
--   txids   n x 32 bytes (internal order)      sizes  n sizes
--   ins     36-byte records (32-byte prev txid, 4-byte little-endian prev
--           index), the inputs of all txs in order; in_tx = the 0-based tx
--           each belongs to (inputs of one tx consecutive, in input order)
--   pushes  32-byte keys; push_tx / push_idx / push_flags alongside
--   cap     keep at most cap mempool rows, oldest first out (<= 0: no limit)
-- A tx is skipped when it is already in the mempool or on the best chain
-- (known), or when it spends an outpoint that a best-chain tx, a mempool tx
-- or an earlier tx of the batch spends (conflicting: first seen wins).
CREATE FUNCTION cd_mempool_add_batch(txids bytea, sizes integer[], ins bytea, in_tx integer[],
                                     pushes bytea, push_tx integer[], push_idx integer[],
                                     push_flags integer[], cap bigint,
                                     OUT accepted integer, OUT known integer,
                                     OUT conflicting integer)
    LANGUAGE plpgsql AS $$
DECLARE
    n integer := length(txids) / 32;
    ok integer[];
    s bigint;
BEGIN
    WITH t AS (
        SELECT k, substr(txids, k * 32 + 1, 32) AS h FROM generate_series(0, n - 1) AS k
    ), i AS (
        SELECT j, in_tx[j + 1] AS tx, substr(ins, j * 36 + 1, 32) AS ph,
               get_byte(ins, j * 36 + 32) | (get_byte(ins, j * 36 + 33) << 8)
               | (get_byte(ins, j * 36 + 34) << 16) | (get_byte(ins, j * 36 + 35) << 24) AS pi
        FROM generate_series(0, length(ins) / 36 - 1) AS j
    ), kn AS (
        SELECT t.k FROM t
        WHERE EXISTS (SELECT 1 FROM mempool_tx m WHERE m.tx_hash = t.h)
           OR EXISTS (SELECT 1 FROM transactions x JOIN blocks b ON b.block_id = x.block_id
                      WHERE x.tx_hash = t.h AND b.on_best_chain)
           OR EXISTS (SELECT 1 FROM t t2 WHERE t2.h = t.h AND t2.k < t.k)
    ), cf AS (
        SELECT DISTINCT i.tx AS k FROM i
        WHERE EXISTS (SELECT 1 FROM inputs x JOIN blocks b ON b.block_id = x.block_id
                      WHERE x.prev_hash = i.ph AND x.prev_idx = i.pi AND b.on_best_chain)
           OR EXISTS (SELECT 1 FROM mempool_inputs m WHERE m.prev_hash = i.ph AND m.prev_idx = i.pi)
           OR EXISTS (SELECT 1 FROM i i2 WHERE i2.ph = i.ph AND i2.pi = i.pi AND i2.tx < i.tx)
    )
    SELECT array_agg(t.k ORDER BY t.k) FILTER (WHERE t.k NOT IN (SELECT k FROM kn)
                                                 AND t.k NOT IN (SELECT k FROM cf)),
           count(*) FILTER (WHERE t.k IN (SELECT k FROM kn)),
           count(*) FILTER (WHERE t.k NOT IN (SELECT k FROM kn) AND t.k IN (SELECT k FROM cf))
      INTO ok, known, conflicting
    FROM t;
    accepted := coalesce(array_length(ok, 1), 0);
    IF accepted = 0 THEN
        RETURN;
    END IF;
    INSERT INTO mempool_tx (tx_hash, tx_size)
    SELECT substr(txids, k * 32 + 1, 32), sizes[k + 1] FROM unnest(ok) AS k ORDER BY k;
    INSERT INTO mempool_inputs (tx_hash, in_idx, prev_idx, prev_hash)
    SELECT substr(txids, tx * 32 + 1, 32), (row_number() OVER (PARTITION BY tx ORDER BY j)) - 1,
           get_byte(ins, j * 36 + 32) | (get_byte(ins, j * 36 + 33) << 8)
           | (get_byte(ins, j * 36 + 34) << 16) | (get_byte(ins, j * 36 + 35) << 24),
           substr(ins, j * 36 + 1, 32)
    FROM (SELECT j, in_tx[j + 1] AS tx FROM generate_series(0, length(ins) / 36 - 1) AS j) x
    WHERE tx = ANY (ok);
    INSERT INTO mempool_pushdata (tx_hash, idx, flags, push_hash)
    SELECT substr(txids, push_tx[j + 1] * 32 + 1, 32), push_idx[j + 1], push_flags[j + 1],
           substr(pushes, j * 32 + 1, 32)
    FROM generate_series(0, length(pushes) / 32 - 1) AS j
    WHERE push_tx[j + 1] = ANY (ok);
    IF cap > 0 THEN
        SELECT max(seq) INTO s FROM mempool_tx;
        DELETE FROM mempool_tx WHERE seq <= s - cap;
    END IF;
END
$$;

-- ---- queries: confirmed + unconfirmed ----

-- History of a pushdata key including unconfirmed activity: best-chain rows
-- (height set) and mempool rows (height NULL).
CREATE VIEW all_pushdata AS
    SELECT push_hash, flags, tx_hash, idx, height, block_hash FROM best_pushdata
    UNION ALL
    SELECT p.push_hash, p.flags, p.tx_hash, p.idx, NULL::integer, NULL::bytea
    FROM mempool_pushdata p;

-- Spends of an outpoint, confirmed or in the mempool.
CREATE VIEW all_inputs AS
    SELECT prev_hash, prev_idx, spend_tx_hash, in_idx, height, block_hash FROM best_inputs
    UNION ALL
    SELECT prev_hash, prev_idx, tx_hash, in_idx, NULL::integer, NULL::bytea
    FROM mempool_inputs;
