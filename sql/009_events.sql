-- 009_events.sql - the event log: every notification is also a row, written
-- in the transaction of the change it announces (issue 16).
--
-- Why: LISTEN/NOTIFY only reaches a client that is connected at the moment
-- of the commit. HTTP clients (SSE, websockets, webhooks, ConduitDB's /ws)
-- reconnect, and the daemon restarts; they must be able to say "everything
-- after event N" and get exactly that. A row inserted in the same
-- transaction as the change exists if and only if the change committed, so
-- the log can neither lose nor invent an event across crashes.
--
-- What is added (docs/QUERIES.md "Notifications" documents the payloads):
--  * events: id (the resume token), at, kind, body. `kind` is the NOTIFY
--    channel without its `cd_` prefix; `body` is the channel's JSON payload.
--  * cd_emit(kind, body): the one way an event is announced: the row, the
--    old NOTIFY on cd_<kind> (SQL clients unchanged) and a NOTIFY on
--    cd_event (empty payload: PostgreSQL folds identical notifications of a
--    transaction into one, so a block with 500 matches wakes a listener
--    once; the listener then reads the rows).
--    Ids are in commit order: cd_emit takes the tip lock (advisory xact lock
--    4242424202, which every writer of the index and mempool tables already
--    holds, sql/006), so two transactions never hold unfinished ids at once,
--    and a reader at id N that reads `id > N` never misses a later-committing
--    smaller id. Taking the same lock as the writers adds no new lock order
--    (no new deadlock).
--  * every function that called pg_notify('cd_...') is replaced by the same
--    function calling cd_emit (bodies otherwise as in sql/002 and sql/006;
--    tests/functional/test_events_log.py fails if any other function calls
--    pg_notify). Two changes of behaviour, both on a reorg:
--    - the reorg event comes first (before the joining blocks' matches and
--      the tip), so a reader of the log learns of the fork point before the
--      events of the new branch;
--    - a watched key or outpoint matched in a block that leaves the best
--      chain is announced again with "state": "orphaned" (height and block
--      of the leaving block): a match that leaves the best chain is
--      reported as such. If the tx is in the new branch too, a "confirmed"
--      event follows; if it returned to the mempool tables it does so
--      silently, as before (query mempool_tx).
--  * watch_owners + cd_watch_key / cd_unwatch_key / cd_watch_outpoint /
--    cd_unwatch_outpoint: the daemon's own features (SSE subscriptions,
--    ConduitDB registrations, webhooks) register watches through these, one
--    row per (owner, key), so two features watching the same key never
--    remove each other's watch. Rows applications insert into watched_keys /
--    watched_outpoints directly are theirs: cd_unwatch_* never deletes a
--    watch it did not create (label '(owned)').
--  * cd_events_prune(keep): deletes events older than `keep` (called by the
--    mempool housekeeping with events_keep hours).

CREATE TABLE events (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at   timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL CHECK (kind IN ('tip', 'reorg', 'key', 'spend', 'evict')),
    body jsonb NOT NULL
);

-- pruning finds old rows by time (rows are appended in time order: BRIN fits)
CREATE INDEX events_at_brin ON events USING brin (at);

CREATE FUNCTION cd_emit(kind text, body json) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(4242424202);
    INSERT INTO events (kind, body) VALUES (kind, body::jsonb);
    PERFORM pg_notify('cd_' || kind, body::text);
    PERFORM pg_notify('cd_event', '');
END
$$;

-- Deletes events older than `keep`; returns how many. Ids ascend with `at`
-- (one lock orders both), so the oldest rows are a prefix of the id order
-- and the primary key finds them.
CREATE FUNCTION cd_events_prune(keep interval) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    last_old bigint;
    n bigint;
BEGIN
    SELECT max(id) INTO last_old FROM events WHERE at < now() - keep;
    IF last_old IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM events WHERE id <= last_old;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- ---- watches owned by the daemon's features ----

CREATE TABLE watch_owners (
    owner     text NOT NULL,
    push_hash bytea,            -- a watched key, or
    prev_hash bytea,            -- a watched outpoint (txid, internal order)
    prev_idx  integer,
    added_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((push_hash IS NULL) <> (prev_hash IS NULL AND prev_idx IS NULL))
);
CREATE UNIQUE INDEX watch_owners_key ON watch_owners (push_hash, owner)
    WHERE push_hash IS NOT NULL;
CREATE UNIQUE INDEX watch_owners_outpoint ON watch_owners (prev_hash, prev_idx, owner)
    WHERE prev_hash IS NOT NULL;
CREATE INDEX watch_owners_owner ON watch_owners (owner);

CREATE FUNCTION cd_watch_key(who text, key bytea) RETURNS void LANGUAGE sql AS $$
    INSERT INTO watch_owners (owner, push_hash) VALUES (who, key) ON CONFLICT DO NOTHING;
    INSERT INTO watched_keys (push_hash, label) VALUES (key, '(owned)') ON CONFLICT DO NOTHING;
$$;

CREATE FUNCTION cd_unwatch_key(who text, key bytea) RETURNS void LANGUAGE sql AS $$
    DELETE FROM watch_owners WHERE push_hash = key AND owner = who;
    DELETE FROM watched_keys w WHERE w.push_hash = key AND w.label = '(owned)'
        AND NOT EXISTS (SELECT 1 FROM watch_owners o WHERE o.push_hash = key);
$$;

CREATE FUNCTION cd_watch_outpoint(who text, hash bytea, idx integer) RETURNS void
    LANGUAGE sql AS $$
    INSERT INTO watch_owners (owner, prev_hash, prev_idx) VALUES (who, hash, idx)
        ON CONFLICT DO NOTHING;
    INSERT INTO watched_outpoints (prev_hash, prev_idx, label) VALUES (hash, idx, '(owned)')
        ON CONFLICT DO NOTHING;
$$;

CREATE FUNCTION cd_unwatch_outpoint(who text, hash bytea, idx integer) RETURNS void
    LANGUAGE sql AS $$
    DELETE FROM watch_owners WHERE prev_hash = hash AND prev_idx = idx AND owner = who;
    DELETE FROM watched_outpoints w
    WHERE w.prev_hash = hash AND w.prev_idx = idx AND w.label = '(owned)'
        AND NOT EXISTS (SELECT 1 FROM watch_owners o
                        WHERE o.prev_hash = hash AND o.prev_idx = idx);
$$;

-- ---- the notifying functions, now through cd_emit ----

-- 002's cd_tip
CREATE OR REPLACE FUNCTION cd_tip_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cd_emit('tip', json_build_object(
        'height', NEW.height,
        'hash', (SELECT cd_txid_hex(block_hash) FROM blocks WHERE block_id = NEW.block_id)));
    RETURN NULL;
END
$$;

-- 002's cd_key for mempool rows
CREATE OR REPLACE FUNCTION cd_mempool_push_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT cd_quiet() AND EXISTS (SELECT 1 FROM watched_keys) THEN
        PERFORM cd_emit('key', json_build_object(
                    'key', encode(n.push_hash, 'hex'), 'txid', cd_txid_hex(n.tx_hash),
                    'idx', n.idx, 'flags', n.flags, 'state', 'mempool'))
        FROM new_rows n JOIN watched_keys w ON w.push_hash = n.push_hash;
    END IF;
    RETURN NULL;
END
$$;

-- 002's cd_spend for mempool rows
CREATE OR REPLACE FUNCTION cd_mempool_input_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT cd_quiet() AND EXISTS (SELECT 1 FROM watched_outpoints) THEN
        PERFORM cd_emit('spend', json_build_object(
                    'txid', cd_txid_hex(n.prev_hash), 'vout', n.prev_idx,
                    'spend_txid', cd_txid_hex(n.tx_hash), 'in_idx', n.in_idx,
                    'state', 'mempool'))
        FROM new_rows n JOIN watched_outpoints w
             ON w.prev_hash = n.prev_hash AND w.prev_idx = n.prev_idx;
    END IF;
    RETURN NULL;
END
$$;

-- 006's cd_mempool_evict
CREATE OR REPLACE FUNCTION cd_mempool_evict(roots bytea[], why text, at_height integer)
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
            PERFORM cd_emit('evict', json_build_object(
                        'txid', cd_txid_hex(e.tx_hash), 'reason', e.reason,
                        'via', CASE WHEN e.via IS NULL THEN NULL ELSE cd_txid_hex(e.via) END,
                        'height', e.height))
            FROM (SELECT * FROM mempool_evicted WHERE id > id0 ORDER BY id) e;
        ELSE
            PERFORM cd_emit('evict', json_build_object(
                        'reason', why, 'count', total, 'height', at_height,
                        'truncated', true));
        END IF;
    END IF;
    RETURN total;
END
$$;

-- The matches of watched keys and outpoints in block `bid`, announced with
-- `state` ('confirmed' when it joins the best chain, 'orphaned' when it
-- leaves). One definition for both directions.
CREATE FUNCTION cd_block_matches_emit(bid bigint, state text) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    blk record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM watched_keys) AND NOT EXISTS (SELECT 1 FROM watched_outpoints)
    THEN
        RETURN;
    END IF;
    SELECT height, cd_txid_hex(block_hash) AS hash INTO blk FROM blocks WHERE block_id = bid;
    PERFORM cd_emit('key', json_build_object(
                'key', encode(m.push_hash, 'hex'), 'txid', cd_txid_hex(m.tx_hash),
                'idx', m.idx, 'flags', m.flags, 'state', state,
                'height', blk.height, 'block', blk.hash))
    FROM (SELECT p.push_hash, t.tx_hash, p.idx, p.flags
          FROM watched_keys w
          JOIN pushdata p ON p.push_hash = w.push_hash AND p.block_id = bid
          JOIN transactions t ON t.block_id = p.block_id AND t.tx_pos = p.tx_pos
          ORDER BY p.tx_pos, p.idx) m;
    PERFORM cd_emit('spend', json_build_object(
                'txid', cd_txid_hex(m.prev_hash), 'vout', m.prev_idx,
                'spend_txid', cd_txid_hex(m.tx_hash), 'in_idx', m.in_idx,
                'state', state, 'height', blk.height, 'block', blk.hash))
    FROM (SELECT i.prev_hash, i.prev_idx, t.tx_hash, i.in_idx
          FROM watched_outpoints w
          JOIN inputs i ON i.prev_hash = w.prev_hash AND i.prev_idx = w.prev_idx
                       AND i.block_id = bid
          JOIN transactions t ON t.block_id = i.block_id AND t.tx_pos = i.tx_pos
          ORDER BY i.tx_pos, i.in_idx) m;
END
$$;

-- 006's cd_block_connected, its notifications through cd_block_matches_emit
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
    PERFORM cd_block_matches_emit(bid, 'confirmed');
END
$$;

-- 006's cd_reorg_step: the reorg event and the orphaned matches first
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
    SELECT height INTO new_h FROM blocks WHERE block_hash = tgt.block_hash;
    IF n_leave > 0 THEN
        PERFORM cd_emit('reorg', json_build_object(
            'fork_height', fork_h,
            'fork_hash', (SELECT cd_txid_hex(block_hash) FROM blocks WHERE block_id = fork_id),
            'old_tip', cd_txid_hex(tip.block_hash), 'old_height', tip.height,
            'new_tip', cd_txid_hex(tgt.block_hash),
            'new_height', new_h,
            'leaving', n_leave, 'joining', coalesce(array_length(path, 1), 0)));
        -- leaving blocks, highest first (the order they are undone in)
        PERFORM cd_block_matches_emit(l.block_id, 'orphaned')
        FROM (SELECT block_id FROM blocks WHERE on_best_chain AND height > fork_h
              ORDER BY height DESC) l;
    END IF;
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
    IF n_leave > 0 THEN
        PERFORM cd_mempool_after_reorg(seq0, new_h,
                                       coalesce(tgt.mtp, cd_block_mtp(tgt.block_hash)));
        IF tgt.low_hash IS NOT NULL
           AND tgt.low_hash = (SELECT block_hash FROM blocks WHERE block_id = fork_id) THEN
            PERFORM cd_mempool_after_reorg(seq0, fork_h,
                                           coalesce(tgt.low_mtp, cd_block_mtp(tgt.low_hash)));
        END IF;
        RETURN format('reorg %s %s %s', fork_h, n_leave, coalesce(array_length(path, 1), 0));
    END IF;
    RETURN 'switched';
END
$$;

COMMENT ON TABLE events IS 'The event log: every notification (tip, reorg, key, spend, evict) as a row written in the transaction of the change it announces; ids are in commit order and are the resume tokens of the HTTP event streams. Pruned after events_keep hours.';
COMMENT ON COLUMN events.id IS 'Event id, ascending in commit order (the resume token).';
COMMENT ON COLUMN events.at IS 'When the announcing transaction ran.';
COMMENT ON COLUMN events.kind IS 'tip, reorg, key, spend or evict: the NOTIFY channel cd_<kind> that carries the same body.';
COMMENT ON COLUMN events.body IS 'The JSON payload (docs/QUERIES.md, Notifications).';
COMMENT ON TABLE watch_owners IS 'Watches registered by conduitd''s own features (event subscriptions, ConduitDB registrations, webhooks), one row per owner and key or outpoint; they keep the (owned) rows of watched_keys / watched_outpoints alive. Written by conduitd only.';
COMMENT ON COLUMN watch_owners.owner IS 'The feature and registration, e.g. sse:<subscription>, cdb:tipfilter, hook:<id>.';
COMMENT ON COLUMN watch_owners.push_hash IS 'A watched pushdata key (sha256 of the pushed bytes), or NULL for an outpoint watch.';
COMMENT ON COLUMN watch_owners.prev_hash IS 'A watched outpoint''s txid (internal order), or NULL for a key watch.';
COMMENT ON COLUMN watch_owners.prev_idx IS 'A watched outpoint''s output index.';
COMMENT ON COLUMN watch_owners.added_at IS 'When the watch was registered.';
