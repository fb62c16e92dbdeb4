-- 011_cdb_notify.sql - ConduitDB's notification registrations (issue 16):
-- tip-filter (pushdata key) registrations per account with their expiry,
-- and the outpoints whose spends ConduitDB's /ws announces.
--
-- Design (docs/CONDUITDB_API.md, "conduitd's implementation"):
--  * durable: a registration is a row here, so it survives restarts and
--    reorgs (ConduitDB keeps outpoints in worker memory only, bug 22);
--  * each row holds a watch through the event log's reference-counted
--    cd_watch_key / cd_watch_outpoint (sql/009_events.sql): owners are
--    'cdb:tipfilter:<account>' (a key two accounts registered stays watched
--    until both delete it) and 'cdb:spend' (ConduitDB's outpoint
--    registrations are global); other features' watches of the same key
--    are never touched;
--  * expiry is enforced (ConduitDB does not, bug 23): a row is live while
--    now() < expires_at; delivery checks it at the event's time, and
--    cdb_expire() (run by the HTTP servers every minute) drops dead rows
--    and their watches;
--  * every change is one function call, one transaction: a refused
--    registration changes nothing.

CREATE TABLE cdb_tip_filters (
    account_id   bigint      NOT NULL,
    push_hash    bytea       NOT NULL CHECK (length(push_hash) = 32),
    date_created bigint      NOT NULL,   -- unix seconds, as the registrant gave it
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (account_id, push_hash)
);
CREATE INDEX cdb_tip_filters_key_idx ON cdb_tip_filters (push_hash);
CREATE INDEX cdb_tip_filters_expires_idx ON cdb_tip_filters (expires_at);

CREATE TABLE cdb_spend_watches (
    prev_hash bytea       NOT NULL CHECK (length(prev_hash) = 32),   -- txid, internal order
    prev_idx  integer     NOT NULL CHECK (prev_idx >= 0),   -- as watched_outpoints
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prev_hash, prev_idx)
);

COMMENT ON TABLE cdb_tip_filters IS 'ConduitDB tip-filter registrations (POST /api/v1/transaction/filter): a pushdata key an account wants to hear about until expires_at. Each live row holds a watch (owner cdb:tipfilter:<account>).';
COMMENT ON COLUMN cdb_tip_filters.account_id IS 'The registrant''s account id (ConduitDB''s account_id query parameter).';
COMMENT ON COLUMN cdb_tip_filters.push_hash IS 'sha256 of the pushed bytes, natural order (as pushdata.push_hash).';
COMMENT ON COLUMN cdb_tip_filters.date_created IS 'Unix seconds given by the registrant (date_created); the expiry counts from it.';
COMMENT ON COLUMN cdb_tip_filters.expires_at IS 'date_created + the registered duration; matches after it are not delivered and cdb_expire() removes the row.';
COMMENT ON TABLE cdb_spend_watches IS 'ConduitDB output-spend registrations (POST /api/v1/output-spend/notifications): outpoints whose spends the /ws websocket announces. Each row holds a watch (owner cdb:spend).';
COMMENT ON COLUMN cdb_spend_watches.prev_hash IS 'txid of the watched output, internal order.';
COMMENT ON COLUMN cdb_spend_watches.prev_idx IS 'Output index (0 .. 2^31-1, as watched_outpoints).';
COMMENT ON COLUMN cdb_spend_watches.added_at IS 'When the outpoint was first registered.';

-- The watch owner of an account's tip-filter rows.
CREATE FUNCTION cdb_tip_owner(account bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'cdb:tipfilter:' || account::text
$$;

-- Registers keys[i] for `durations[i]` seconds from `created` for an
-- account, all or nothing: a key the account has live already raises
-- unique_violation (23505) and nothing is registered (ConduitDB's 400 "one
-- or more hashes were already registered"). A dead (expired) row of the
-- same key is replaced.
CREATE FUNCTION cdb_filter_add(account bigint, created bigint, keys bytea[], durations integer[])
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    k bytea;
BEGIN
    PERFORM cd_unwatch_key(cdb_tip_owner(account), f.push_hash)
    FROM cdb_tip_filters f
    WHERE f.account_id = account AND f.push_hash = ANY (keys) AND f.expires_at <= now();
    DELETE FROM cdb_tip_filters f
    WHERE f.account_id = account AND f.push_hash = ANY (keys) AND f.expires_at <= now();
    INSERT INTO cdb_tip_filters (account_id, push_hash, date_created, expires_at)
    SELECT DISTINCT ON (u.k) account, u.k, created, to_timestamp(created + u.d)
    FROM unnest(keys, durations) AS u(k, d)
    ON CONFLICT (account_id, push_hash) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> (SELECT count(DISTINCT x) FROM unnest(keys) AS x) THEN
        RAISE EXCEPTION USING ERRCODE = 'unique_violation',
            MESSAGE = 'one or more hashes were already registered';
    END IF;
    FOREACH k IN ARRAY (SELECT array_agg(DISTINCT x) FROM unnest(keys) AS x) LOOP
        PERFORM cd_watch_key(cdb_tip_owner(account), k);
    END LOOP;
    RETURN n;
END
$$;

-- Deletes an account's registrations of keys, all or nothing: a key the
-- account has not registered (or whose registration expired) raises
-- no_data_found (P0002) and nothing is deleted (ConduitDB's 400 "some
-- pushdata hashes are not registered").
CREATE FUNCTION cdb_filter_delete(account bigint, keys bytea[]) RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(keys) AS x
               WHERE NOT EXISTS (SELECT 1 FROM cdb_tip_filters f
                                 WHERE f.account_id = account AND f.push_hash = x
                                   AND f.expires_at > now())) THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found',
            MESSAGE = 'some pushdata hashes are not registered';
    END IF;
    PERFORM cd_unwatch_key(cdb_tip_owner(account), f.push_hash)
    FROM cdb_tip_filters f WHERE f.account_id = account AND f.push_hash = ANY (keys);
    DELETE FROM cdb_tip_filters f WHERE f.account_id = account AND f.push_hash = ANY (keys);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Registers outpoints (idempotent: a registered one stays as it is).
-- Returns how many were new.
CREATE FUNCTION cdb_spend_add(hashes bytea[], idxs integer[]) RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    r record;
BEGIN
    FOR r IN INSERT INTO cdb_spend_watches (prev_hash, prev_idx)
             SELECT DISTINCT h, i FROM unnest(hashes, idxs) AS u(h, i)
             ON CONFLICT DO NOTHING RETURNING prev_hash, prev_idx LOOP
        PERFORM cd_watch_outpoint('cdb:spend', r.prev_hash, r.prev_idx);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Unregisters outpoints (unknown ones are ignored, as ConduitDB does).
CREATE FUNCTION cdb_spend_remove(hashes bytea[], idxs integer[]) RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    r record;
BEGIN
    FOR r IN DELETE FROM cdb_spend_watches w USING unnest(hashes, idxs) AS u(h, i)
             WHERE w.prev_hash = u.h AND w.prev_idx = u.i
             RETURNING w.prev_hash, w.prev_idx LOOP
        PERFORM cd_unwatch_outpoint('cdb:spend', r.prev_hash, r.prev_idx);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Unregisters every outpoint (ConduitDB's zeroed-outpoint "clear all").
CREATE FUNCTION cdb_spend_clear() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    r record;
BEGIN
    FOR r IN DELETE FROM cdb_spend_watches RETURNING prev_hash, prev_idx LOOP
        PERFORM cd_unwatch_outpoint('cdb:spend', r.prev_hash, r.prev_idx);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Drops expired tip-filter registrations and their watches; returns how
-- many. Idempotent, cheap when nothing expired (index on expires_at).
CREATE FUNCTION cdb_expire() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    r record;
BEGIN
    FOR r IN DELETE FROM cdb_tip_filters WHERE expires_at <= now()
             RETURNING account_id, push_hash LOOP
        PERFORM cd_unwatch_key(cdb_tip_owner(r.account_id), r.push_hash);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
