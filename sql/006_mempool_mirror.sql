-- 006_mempool_mirror.sql - the mempool tables mirror the node's mempool:
-- every removal says why, the node's own eviction rules are applied after a
-- reorg, expiry and size limits, reconciliation with a snapshot of the
-- node's mempool (issue 13 section 2, issue 11 F10).
--
-- Why: after `invalidateblock` on a real node, mempool_tx kept 7-15 txs the
-- node had dropped (non-final for the new tip, spends of coinbases immature
-- again, their descendants) forever; and an application could not tell a
-- tx that left the mempool because it was mined from one that was dropped.
--
-- What is added (docs/QUERIES.md documents tables, functions and payloads):
--  * mempool_tx.lock_time / seq_nonfinal: per-tx facts parsed by conduitd
--    when a relayed tx is added (NULL: unknown, e.g. a tx a reorg returned
--    that conduitd never saw relayed). IsFinalTx (bitcoin-sv
--    src/validation.cpp): final if lock_time = 0, or lock_time below the
--    height (< 500,000,000) / the median time past (>= 500,000,000), or
--    every input's nSequence is 0xffffffff (seq_nonfinal false).
--  * chain_target.mtp: the median time past of the target (written by the
--    daemon from the header tree; cd_block_mtp() computes it from the
--    blocks' headers when absent). low_hash / low_mtp: a fork point the
--    node went back to without more work (invalidateblock: its peer
--    announced a tip that does not extend the one before and has no more
--    work). The node evaluated its mempool there, so when the switch's fork
--    is that block the rules are applied at it too, not only at the new tip
--    (after a reorg to more work the node evaluates at the new tip).
--  * mempool_evicted: one row per tx that left the mempool tables, with its
--    reason (the list below) and, for a descendant dropped with its
--    ancestor, `via` = the parent that took it along; kept for
--    mempool_evicted_keep hours (housekeeping prunes it). NOTIFY cd_evict
--    for every removal but 'confirmed'.
--  * cd_mempool_evict(): the one way rows leave for a reason: the txs and,
--    repeatedly, their mempool descendants, recorded and notified.
--  * mempool_size: the rows and bytes in mempool_tx, kept by statement
--    triggers, so the size limits are checked without a scan.
--  * the writers of mempool_tx (add, reconcile, housekeeping, the reorg
--    step, the parsers' tip advance) all hold the tip lock (advisory xact
--    lock 4242424202): an add can no longer race a block that spends the
--    same outpoint, and the size counters never deadlock.
--
-- Reasons (mempool_evicted.reason, cd_evict "reason"):
--   confirmed            in a block that joined the best chain
--   double-spend         spends an outpoint that a joining block spends
--   conflict             returned by a reorg, but an existing mempool tx
--                        spends the same outpoint (the node keeps that one)
--   missing-inputs       spends an output that no longer exists (the
--                        coinbase of a block that left, a parent gone)
--   non-final            not final for the next block after a reorg
--   immature-coinbase    spends a coinbase with < 100 confirmations at the
--                        next block after a reorg
--   expired              older than mempool_expiry (-mempoolexpiry)
--   size-limit           beyond mempool_max_txs / mempool_max_bytes
--   not-in-node-mempool  absent from an allowing node's mempool snapshot
--                        and older than the grace window

ALTER TABLE mempool_tx ADD COLUMN lock_time bigint;
ALTER TABLE mempool_tx ADD COLUMN seq_nonfinal boolean;
ALTER TABLE chain_target ADD COLUMN mtp bigint;
ALTER TABLE chain_target ADD COLUMN low_hash bytea;
ALTER TABLE chain_target ADD COLUMN low_mtp bigint;

-- the only txs that can be non-final: looked up by lock time after a reorg
CREATE INDEX mempool_tx_nonfinal_idx ON mempool_tx (lock_time)
    WHERE seq_nonfinal AND lock_time <> 0;
CREATE INDEX mempool_tx_seen_idx ON mempool_tx (seen_at);

CREATE TABLE mempool_evicted (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_hash      bytea    NOT NULL,   -- txid, internal order
    reason       text     NOT NULL,   -- see above
    via          bytea,               -- the evicted parent that took it along
    height       integer,             -- confirmed: the block's height; else the tip's
    evicted_at   timestamptz NOT NULL DEFAULT now(),
    seen_at      timestamptz,         -- as in mempool_tx
    source       smallint,
    tx_size      integer,
    lock_time    bigint,              -- facts, kept so a reorg can return the tx with them
    seq_nonfinal boolean
);
CREATE INDEX mempool_evicted_tx_idx ON mempool_evicted (tx_hash);
CREATE INDEX mempool_evicted_at_idx ON mempool_evicted (evicted_at);

-- ---- size counters ----

CREATE TABLE mempool_size (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    n         bigint NOT NULL,
    bytes     bigint NOT NULL
);
INSERT INTO mempool_size
SELECT true, count(*), coalesce(sum(tx_size), 0) FROM mempool_tx;

CREATE FUNCTION cd_mempool_size_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows) THEN
        UPDATE mempool_size SET n = n + (SELECT count(*) FROM new_rows),
                                bytes = bytes + (SELECT coalesce(sum(tx_size), 0) FROM new_rows);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER mempool_tx_size_ins AFTER INSERT ON mempool_tx
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cd_mempool_size_ins();

CREATE FUNCTION cd_mempool_size_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM old_rows) THEN
        UPDATE mempool_size SET n = n - (SELECT count(*) FROM old_rows),
                                bytes = bytes - (SELECT coalesce(sum(tx_size), 0) FROM old_rows);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER mempool_tx_size_del AFTER DELETE ON mempool_tx
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cd_mempool_size_del();

CREATE FUNCTION cd_mempool_size_trunc() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mempool_size SET n = 0, bytes = 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER mempool_tx_size_trunc AFTER TRUNCATE ON mempool_tx
    FOR EACH STATEMENT EXECUTE FUNCTION cd_mempool_size_trunc();

-- ---- chain facts ----

-- nTime of an 80-byte header (bytes 68..71, little-endian).
CREATE FUNCTION cd_header_time(h bytea) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT get_byte(h, 68)::bigint | (get_byte(h, 69)::bigint << 8)
           | (get_byte(h, 70)::bigint << 16) | (get_byte(h, 71)::bigint << 24)
$$;

-- Median time past of the block `hash` (BIP 113, bitcoin-sv src/chain.h
-- GetMedianTimePast): the median of the times of the block and its 10
-- ancestors (fewer near genesis), sorted, element count/2.
CREATE FUNCTION cd_block_mtp(hash bytea) RETURNS bigint LANGUAGE sql STABLE AS $$
    WITH RECURSIVE w(prev, t, k) AS (
        SELECT prev_hash, cd_header_time(header), 1 FROM blocks WHERE block_hash = hash
        UNION ALL
        SELECT b.prev_hash, cd_header_time(b.header), w.k + 1
        FROM w JOIN blocks b ON b.block_hash = w.prev WHERE w.k < 11
    )
    SELECT t FROM w ORDER BY t OFFSET (SELECT count(*) FROM w) / 2 LIMIT 1
$$;

-- ---- evictions ----

-- Removes the mempool txs `roots` and, repeatedly, the mempool txs spending
-- their outputs (descendants), recording each in mempool_evicted with `why`
-- (descendants with `via` = their evicted parent) and `at_height`; NOTIFY
-- cd_evict for each unless `why` is 'confirmed' or more than 256 go at once
-- (then one summary per call: {"reason", "count", "truncated": true}).
-- Returns how many rows were removed.
CREATE FUNCTION cd_mempool_evict(roots bytea[], why text, at_height integer)
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    gone bytea[];
    total integer := 0;
    n integer;
    id0 bigint;
BEGIN
    IF coalesce(array_length(roots, 1), 0) = 0 THEN
        RETURN 0;
    END IF;
    SELECT coalesce(max(id), 0) INTO id0 FROM mempool_evicted;
    WITH d AS (DELETE FROM mempool_tx WHERE tx_hash = ANY (roots) RETURNING *),
         l AS (INSERT INTO mempool_evicted (tx_hash, reason, via, height, seen_at, source,
                                            tx_size, lock_time, seq_nonfinal)
               SELECT tx_hash, why, NULL, at_height, seen_at, source, tx_size, lock_time,
                      seq_nonfinal FROM d
               RETURNING tx_hash)
    SELECT array_agg(tx_hash), count(*) INTO gone, n FROM l;
    total := n;
    WHILE coalesce(array_length(gone, 1), 0) > 0 LOOP
        -- descendants: spend an output of a tx removed in the last round
        WITH c AS (SELECT DISTINCT ON (mi.tx_hash) mi.tx_hash, mi.prev_hash
                   FROM mempool_inputs mi WHERE mi.prev_hash = ANY (gone)
                   ORDER BY mi.tx_hash, mi.in_idx),
             d AS (DELETE FROM mempool_tx m USING c WHERE m.tx_hash = c.tx_hash
                   RETURNING m.*, c.prev_hash AS parent),
             l AS (INSERT INTO mempool_evicted (tx_hash, reason, via, height, seen_at, source,
                                                tx_size, lock_time, seq_nonfinal)
                   SELECT tx_hash, why, parent, at_height, seen_at, source, tx_size, lock_time,
                          seq_nonfinal FROM d
                   RETURNING tx_hash)
        SELECT array_agg(tx_hash), count(*) INTO gone, n FROM l;
        total := total + n;
    END LOOP;
    IF why <> 'confirmed' AND total > 0 AND NOT cd_quiet() THEN
        IF total <= 256 THEN
            PERFORM pg_notify('cd_evict', json_build_object(
                        'txid', cd_txid_hex(e.tx_hash), 'reason', e.reason,
                        'via', CASE WHEN e.via IS NULL THEN NULL ELSE cd_txid_hex(e.via) END,
                        'height', e.height)::text)
            FROM mempool_evicted e WHERE e.id > id0 ORDER BY e.id;
        ELSE
            PERFORM pg_notify('cd_evict', json_build_object(
                        'reason', why, 'count', total, 'height', at_height,
                        'truncated', true)::text);
        END IF;
    END IF;
    RETURN total;
END
$$;

-- 002's conflict drop, now recorded: a mempool tx spending an outpoint that
-- a block joining the best chain spends is a double spend of it.
CREATE OR REPLACE FUNCTION cd_mempool_drop_conflicts(conflicted bytea[]) RETURNS integer
    LANGUAGE sql AS $$
    SELECT cd_mempool_evict(conflicted, 'double-spend', (SELECT height FROM index_tip))
$$;

-- 002's per-block effect of joining the best chain, with the removals
-- recorded: the block's own txs as 'confirmed' (at its height), the txs
-- spending the same outpoints as 'double-spend' with their descendants.
CREATE OR REPLACE FUNCTION cd_block_connected(bid bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    conflicted bytea[];
    blk record;
BEGIN
    SELECT height, cd_txid_hex(block_hash) AS hash INTO blk FROM blocks WHERE block_id = bid;
    IF EXISTS (SELECT 1 FROM mempool_tx) THEN
        WITH d AS (DELETE FROM mempool_tx m USING transactions t
                   WHERE t.block_id = bid AND m.tx_hash = t.tx_hash RETURNING m.*)
        INSERT INTO mempool_evicted (tx_hash, reason, height, seen_at, source, tx_size,
                                     lock_time, seq_nonfinal)
        SELECT tx_hash, 'confirmed', blk.height, seen_at, source, tx_size, lock_time,
               seq_nonfinal FROM d;
        SELECT array_agg(DISTINCT mi.tx_hash) INTO conflicted
        FROM mempool_inputs mi
        JOIN inputs i ON i.prev_hash = mi.prev_hash AND i.prev_idx = mi.prev_idx
        WHERE i.block_id = bid;
        PERFORM cd_mempool_evict(conflicted, 'double-spend', blk.height);
    END IF;
    IF cd_quiet() THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM watched_keys) OR EXISTS (SELECT 1 FROM watched_outpoints) THEN
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

-- 002's per-block effect of leaving the best chain: the non-coinbase txs
-- return, with the facts recorded when they were confirmed (if conduitd saw
-- them relayed; else NULL: unknown, not judged by the finality rule).
CREATE OR REPLACE FUNCTION cd_block_disconnected(bid bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    back bytea[];
BEGIN
    WITH ins AS (
        INSERT INTO mempool_tx (tx_hash, tx_size, source, lock_time, seq_nonfinal)
        SELECT t.tx_hash, t.tx_size, 1, f.lock_time, f.seq_nonfinal
        FROM transactions t
        LEFT JOIN LATERAL (SELECT e.lock_time, e.seq_nonfinal FROM mempool_evicted e
                           WHERE e.tx_hash = t.tx_hash AND e.lock_time IS NOT NULL
                           ORDER BY e.id DESC LIMIT 1) f ON true
        WHERE t.block_id = bid AND t.tx_pos > 0 ORDER BY t.tx_pos
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

-- 003's spenders of an orphaned coinbase: recorded as 'missing-inputs'.
CREATE OR REPLACE FUNCTION cd_drop_orphaned_coinbase_spenders() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    cb bytea;
    spenders bytea[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM mempool_inputs) THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM blocks WHERE block_id = NEW.block_id AND on_best_chain) THEN
        RETURN NULL;
    END IF;
    SELECT tx_hash INTO cb FROM transactions WHERE block_id = NEW.block_id AND tx_pos = 0;
    IF cb IS NULL OR EXISTS (SELECT 1 FROM best_transactions WHERE tx_hash = cb) THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(DISTINCT tx_hash) INTO spenders FROM mempool_inputs WHERE prev_hash = cb;
    PERFORM cd_mempool_evict(spenders, 'missing-inputs', (SELECT height FROM index_tip));
    RETURN NULL;
END
$$;

-- ---- the node's rules after a reorg ----

-- What the node removes from its mempool after the best chain switched
-- branches (bitcoin-sv src/validation.cpp UpdateMempoolForReorg,
-- src/txmempool.cpp RemoveForReorg), decided from the index alone, for the
-- new tip at height tip_h with median time past tip_mtp. `seq0`: mempool_tx
-- seq before the switch (rows above it with source 1 were returned by it).
-- Each rule takes the descendants along (cd_mempool_evict). Not evaluated:
-- BIP 68 relative lock times (version >= 2, before Genesis) and the
-- finality of returned txs whose facts are unknown (never seen relayed).
CREATE FUNCTION cd_mempool_after_reorg(seq0 bigint, tip_h integer, tip_mtp bigint)
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    x bytea[];
    total integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM mempool_tx) THEN
        RETURN 0;
    END IF;
    -- a returned tx spending what an existing mempool tx spends: the
    -- existing one stays (the node re-validates returned txs against its
    -- mempool)
    SELECT array_agg(DISTINCT r.tx_hash) INTO x
    FROM mempool_tx r
    JOIN mempool_inputs ri ON ri.tx_hash = r.tx_hash
    JOIN mempool_inputs oi ON oi.prev_hash = ri.prev_hash AND oi.prev_idx = ri.prev_idx
                          AND oi.tx_hash <> ri.tx_hash
    JOIN mempool_tx o ON o.tx_hash = oi.tx_hash AND o.seq <= seq0
    WHERE r.seq > seq0 AND r.source = 1;
    total := total + cd_mempool_evict(x, 'conflict', tip_h);
    -- a returned tx spending an output that exists neither on the new best
    -- chain nor in the mempool
    SELECT array_agg(DISTINCT r.tx_hash) INTO x
    FROM mempool_tx r
    JOIN mempool_inputs ri ON ri.tx_hash = r.tx_hash
    WHERE r.seq > seq0 AND r.source = 1
      AND NOT EXISTS (SELECT 1 FROM mempool_tx p WHERE p.tx_hash = ri.prev_hash)
      AND NOT EXISTS (SELECT 1 FROM transactions t JOIN blocks b ON b.block_id = t.block_id
                      WHERE t.tx_hash = ri.prev_hash AND b.on_best_chain);
    total := total + cd_mempool_evict(x, 'missing-inputs', tip_h);
    -- IsFinalTx for the next block (src/validation.cpp
    -- ContextualCheckTransactionForCurrentBlock with LOCKTIME_MEDIAN_TIME_PAST,
    -- src/policy/policy.h StandardNonFinalVerifyFlags): lock_time by height
    -- below 500,000,000, else by the tip's median time past
    SELECT array_agg(tx_hash) INTO x
    FROM mempool_tx
    WHERE seq_nonfinal AND lock_time <> 0
      AND ((lock_time < 500000000 AND lock_time >= tip_h + 1)
           OR (lock_time >= 500000000 AND lock_time >= tip_mtp));
    total := total + cd_mempool_evict(x, 'non-final', tip_h);
    -- coinbase maturity (src/consensus/consensus.h COINBASE_MATURITY 100,
    -- Consensus::CheckTxInputs at spend height tip_h + 1): spends of the
    -- coinbases of the last 99 best-chain blocks
    SELECT array_agg(DISTINCT mi.tx_hash) INTO x
    FROM blocks b
    JOIN transactions t ON t.block_id = b.block_id AND t.tx_pos = 0
    JOIN mempool_inputs mi ON mi.prev_hash = t.tx_hash
    WHERE b.on_best_chain AND b.height > tip_h + 1 - 100;
    total := total + cd_mempool_evict(x, 'immature-coinbase', tip_h);
    RETURN total;
END
$$;

-- The best-chain switch of 002, plus: the target's median time past, the
-- node's rules after a reorg (cd_mempool_after_reorg) in the same
-- transaction. Everything else as in 002.
CREATE OR REPLACE FUNCTION cd_reorg_step() RETURNS text LANGUAGE plpgsql AS $$
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
    seq0 bigint;
    new_h integer;
BEGIN
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
    SELECT coalesce(max(seq), 0) INTO seq0 FROM mempool_tx;
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
    SELECT height INTO new_h FROM blocks WHERE block_hash = tgt.block_hash;
    IF n_leave > 0 THEN
        PERFORM cd_mempool_after_reorg(seq0, new_h,
                                       coalesce(tgt.mtp, cd_block_mtp(tgt.block_hash)));
        IF tgt.low_hash IS NOT NULL
           AND tgt.low_hash = (SELECT block_hash FROM blocks WHERE block_id = fork_id) THEN
            PERFORM cd_mempool_after_reorg(seq0, fork_h,
                                           coalesce(tgt.low_mtp, cd_block_mtp(tgt.low_hash)));
        END IF;
        PERFORM pg_notify('cd_reorg', json_build_object(
            'fork_height', fork_h,
            'fork_hash', (SELECT cd_txid_hex(block_hash) FROM blocks WHERE block_id = fork_id),
            'old_tip', cd_txid_hex(tip.block_hash), 'old_height', tip.height,
            'new_tip', cd_txid_hex(tgt.block_hash),
            'new_height', new_h,
            'leaving', n_leave, 'joining', coalesce(array_length(path, 1), 0))::text);
        RETURN format('reorg %s %s %s', fork_h, n_leave, coalesce(array_length(path, 1), 0));
    END IF;
    RETURN 'switched';
END
$$;

-- ---- limits, expiry, reconciliation ----

-- Evicts the oldest rows (with their descendants) until mempool_tx holds at
-- most max_txs rows and max_bytes bytes (<= 0: no limit). Returns the count.
CREATE FUNCTION cd_mempool_limit(max_txs bigint, max_bytes bigint, at_height integer)
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    cur record;
    need_n bigint;
    need_b bigint;
    got_n bigint := 0;
    got_b bigint := 0;
    victims bytea[] := '{}';
    r record;
BEGIN
    SELECT n, bytes INTO cur FROM mempool_size;
    need_n := CASE WHEN max_txs > 0 THEN cur.n - max_txs ELSE 0 END;
    need_b := CASE WHEN max_bytes > 0 THEN cur.bytes - max_bytes ELSE 0 END;
    IF need_n <= 0 AND need_b <= 0 THEN
        RETURN 0;
    END IF;
    FOR r IN SELECT tx_hash, tx_size FROM mempool_tx ORDER BY seq LOOP
        victims := victims || r.tx_hash;
        got_n := got_n + 1;
        got_b := got_b + r.tx_size;
        EXIT WHEN got_n >= need_n AND got_b >= need_b;
    END LOOP;
    RETURN cd_mempool_evict(victims, 'size-limit', at_height);
END
$$;

-- Adds a batch of relayed transactions (the 004 arguments, plus per tx its
-- nLockTime and whether an input's nSequence is not final) and keeps the
-- table within max_txs rows / max_bytes bytes, oldest first out. A tx is
-- skipped when known (mempool or best chain) or conflicting (an outpoint
-- spent on the best chain, in the mempool or earlier in the batch: first
-- seen wins). Holds the tip lock (see the header).
CREATE FUNCTION cd_mempool_add_txs(txids bytea, sizes integer[], raws bytea, ins bytea,
                                   in_tx integer[], pushes bytea, push_tx integer[],
                                   push_idx integer[], push_flags integer[],
                                   lock_times bigint[], seq_nonfinal boolean[],
                                   max_txs bigint, max_bytes bigint,
                                   OUT accepted integer, OUT known integer,
                                   OUT conflicting integer, OUT limited integer)
    LANGUAGE plpgsql AS $$
DECLARE
    n integer := length(txids) / 32;
    ok integer[];
BEGIN
    limited := 0;
    PERFORM pg_advisory_xact_lock(4242424202);
    IF raws IS NOT NULL AND length(raws) <> (SELECT coalesce(sum(z), 0) FROM unnest(sizes) AS z) THEN
        RAISE EXCEPTION 'cd_mempool_add_txs: raws holds % bytes, sizes sum to %',
            length(raws), (SELECT coalesce(sum(z), 0) FROM unnest(sizes) AS z);
    END IF;
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
    INSERT INTO mempool_tx (tx_hash, tx_size, raw, lock_time, seq_nonfinal)
    SELECT substr(txids, o.k * 32 + 1, 32), sizes[o.k + 1],
           CASE WHEN raws IS NULL THEN NULL ELSE substr(raws, (o.off + 1)::integer, sizes[o.k + 1]) END,
           lock_times[o.k + 1], seq_nonfinal[o.k + 1]
    FROM (SELECT k, coalesce(sum(sizes[k + 1]) OVER (ORDER BY k ROWS BETWEEN UNBOUNDED PRECEDING
                                                      AND 1 PRECEDING), 0) AS off
          FROM generate_series(0, n - 1) AS k) o
    WHERE o.k = ANY (ok)
    ORDER BY o.k;
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
    limited := cd_mempool_limit(max_txs, max_bytes, (SELECT height FROM index_tip));
END
$$;

-- The 004 signatures stay for callers without facts (scripts, tests): the
-- same body, facts unknown, `cap` rows at most.
CREATE OR REPLACE FUNCTION cd_mempool_add_batch(txids bytea, sizes integer[], raws bytea, ins bytea,
                                                in_tx integer[], pushes bytea,
                                                push_tx integer[], push_idx integer[],
                                                push_flags integer[], cap bigint,
                                                OUT accepted integer, OUT known integer,
                                                OUT conflicting integer)
    LANGUAGE sql AS $$
    SELECT accepted, known, conflicting
    FROM cd_mempool_add_txs(txids, sizes, raws, ins, in_tx, pushes, push_tx, push_idx,
                            push_flags, NULL::bigint[], NULL::boolean[], cap, 0)
$$;

-- Housekeeping (the daemon calls it every few seconds): expires rows older
-- than expiry_s seconds (src/txmempool.cpp Expire, -mempoolexpiry), applies
-- the size limits, forgets eviction records older than keep_s seconds.
CREATE FUNCTION cd_mempool_housekeep(expiry_s bigint, max_txs bigint, max_bytes bigint,
                                     keep_s bigint, OUT expired integer, OUT limited integer,
                                     OUT pruned integer)
    LANGUAGE plpgsql AS $$
DECLARE
    x bytea[];
    h integer;
BEGIN
    PERFORM pg_advisory_xact_lock(4242424202);
    SELECT height INTO h FROM index_tip;
    SELECT array_agg(tx_hash) INTO x FROM mempool_tx
    WHERE seen_at < now() - make_interval(secs => expiry_s);
    expired := cd_mempool_evict(x, 'expired', h);
    limited := cd_mempool_limit(max_txs, max_bytes, h);
    DELETE FROM mempool_evicted WHERE evicted_at < now() - make_interval(secs => keep_s);
    GET DIAGNOSTICS pruned = ROW_COUNT;
END
$$;

-- Reconciliation with a snapshot of a node's mempool (the txids it
-- announced in answer to `mempool`, 32 bytes each, concatenated): rows the
-- snapshot lacks that were seen before `cutoff` (the request time minus the
-- grace window for txs in flight) are evicted as 'not-in-node-mempool';
-- `missing` returns the snapshot's txids that are neither in the mempool
-- tables nor on the best chain (the daemon asks the node for them).
CREATE FUNCTION cd_mempool_reconcile(snapshot bytea, cutoff timestamptz,
                                     OUT evicted integer, OUT missing bytea)
    LANGUAGE plpgsql AS $$
DECLARE
    x bytea[];
BEGIN
    -- the comparison runs without the tip lock (a parser completing a block
    -- is not held up by it); the lock is taken for the eviction only, which
    -- removes just the candidates still there
    CREATE TEMP TABLE IF NOT EXISTS cd_snapshot (h bytea PRIMARY KEY) ON COMMIT DELETE ROWS;
    INSERT INTO cd_snapshot
    SELECT substr(snapshot, k * 32 + 1, 32) FROM generate_series(0, length(snapshot) / 32 - 1) AS k
    ON CONFLICT DO NOTHING;
    ANALYZE cd_snapshot;
    SELECT array_agg(m.tx_hash) INTO x FROM mempool_tx m
    WHERE m.seen_at < cutoff AND NOT EXISTS (SELECT 1 FROM cd_snapshot s WHERE s.h = m.tx_hash);
    SELECT string_agg(s.h, ''::bytea) INTO missing FROM cd_snapshot s
    WHERE NOT EXISTS (SELECT 1 FROM mempool_tx m WHERE m.tx_hash = s.h)
      AND NOT EXISTS (SELECT 1 FROM transactions t JOIN blocks b ON b.block_id = t.block_id
                      WHERE t.tx_hash = s.h AND b.on_best_chain);
    missing := coalesce(missing, ''::bytea);
    PERFORM pg_advisory_xact_lock(4242424202);
    evicted := cd_mempool_evict(x, 'not-in-node-mempool', (SELECT height FROM index_tip));
END
$$;
