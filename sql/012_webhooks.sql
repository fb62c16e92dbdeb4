-- 012_webhooks.sql - webhook registrations (issue 16): an HTTP receiver
-- that gets the events of the event log (sql/009_events.sql) it asked for,
-- POSTed and signed by the daemon's webhook process (src/api/
-- cd_http_hooks_send.c). docs/WEBHOOKS.md describes the contract.
--
-- A registration's keys and outpoints are watched through cd_watch_key /
-- cd_watch_outpoint under the owner 'hook:<id>', so key and spend events
-- are recorded in `events` from the moment the registration commits,
-- whether or not the daemon or the receiver is up; the delivery reads the
-- log and remembers how far it got (scan_id), which is only moved past an
-- event once the receiver answered 2xx (or the event does not match).
-- The HTTP route sends NOTIFY cd_webhook after a registration commits (the
-- delivery process reloads; it also does every 5 s): no function here
-- notifies, cd_emit is the one that does (sql/009).

CREATE TABLE webhooks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url           text        NOT NULL,
    secret        text        NOT NULL,
    kinds         text[]      NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    scan_id       bigint      NOT NULL,
    delivered_id  bigint,
    delivered     bigint      NOT NULL DEFAULT 0,
    attempts      integer     NOT NULL DEFAULT 0,
    failures      bigint      NOT NULL DEFAULT 0,
    last_error    text,
    last_attempt  timestamptz,
    next_attempt  timestamptz,
    failing_since timestamptz,
    failing       boolean     NOT NULL DEFAULT false,
    lost          bigint      NOT NULL DEFAULT 0,
    CHECK (kinds <@ ARRAY['tip', 'reorg', 'evict']::text[])
);
CREATE TABLE webhook_keys (
    hook_id   bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    push_hash bytea  NOT NULL,
    PRIMARY KEY (hook_id, push_hash)
);
CREATE TABLE webhook_outpoints (
    hook_id   bigint  NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    prev_hash bytea   NOT NULL,
    prev_idx  integer NOT NULL,
    PRIMARY KEY (hook_id, prev_hash, prev_idx)
);

COMMENT ON TABLE webhooks IS 'Webhook registrations (POST /v1/webhooks, docs/WEBHOOKS.md): events of the log (table events) POSTed to url, signed with secret. One row per registration.';
COMMENT ON COLUMN webhooks.id IS 'The registration id (GET/DELETE /v1/webhooks/<id>; owner hook:<id> in watch_owners).';
COMMENT ON COLUMN webhooks.url IS 'The receiver: an http:// URL each matching event is POSTed to.';
COMMENT ON COLUMN webhooks.secret IS 'The HMAC-SHA256 key of X-Conduit-Signature (shown once at registration; not readable by conduit_reader).';
COMMENT ON COLUMN webhooks.kinds IS 'Event kinds delivered whatever their body: a subset of tip, reorg, evict (key and spend events follow webhook_keys and webhook_outpoints).';
COMMENT ON COLUMN webhooks.created_at IS 'When the registration was made.';
COMMENT ON COLUMN webhooks.scan_id IS 'The delivery cursor: every event with id <= scan_id was delivered (2xx) or does not match. Moves only forward.';
COMMENT ON COLUMN webhooks.delivered_id IS 'Id of the last event the receiver acknowledged with 2xx; NULL before the first.';
COMMENT ON COLUMN webhooks.delivered IS 'Events delivered (2xx) so far.';
COMMENT ON COLUMN webhooks.attempts IS 'Failed attempts in a row at the event being delivered (0 after a 2xx).';
COMMENT ON COLUMN webhooks.failures IS 'Failed attempts in all.';
COMMENT ON COLUMN webhooks.last_error IS 'What the last failed attempt got (HTTP status, timeout, connection error).';
COMMENT ON COLUMN webhooks.last_attempt IS 'When the last attempt (failed or not) ended.';
COMMENT ON COLUMN webhooks.next_attempt IS 'When the event being retried is sent again; NULL when no retry is pending.';
COMMENT ON COLUMN webhooks.failing_since IS 'First failed attempt of the current streak; NULL after a 2xx.';
COMMENT ON COLUMN webhooks.failing IS 'True once webhook_failing_after attempts in a row failed; false again after a 2xx. Events keep accumulating, nothing is dropped.';
COMMENT ON COLUMN webhooks.lost IS 'Matching events deleted by the event retention (cd_events_prune) before they were delivered.';
COMMENT ON TABLE webhook_keys IS 'Pushdata keys of a webhook registration (each also in watched_keys, owner hook:<id>).';
COMMENT ON COLUMN webhook_keys.hook_id IS 'The registration (webhooks.id).';
COMMENT ON COLUMN webhook_keys.push_hash IS 'sha256 of the pushed bytes, as pushdata.push_hash.';
COMMENT ON TABLE webhook_outpoints IS 'Outpoints of a webhook registration whose spends it gets (each also in watched_outpoints, owner hook:<id>).';
COMMENT ON COLUMN webhook_outpoints.hook_id IS 'The registration (webhooks.id).';
COMMENT ON COLUMN webhook_outpoints.prev_hash IS 'txid of the output, internal order.';
COMMENT ON COLUMN webhook_outpoints.prev_idx IS 'Output index.';

-- The secret is a credential of the receiver: applications (conduit_reader,
-- sql/roles.sql, which gets SELECT on every table by default privileges)
-- may read every column but it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'conduit_reader') THEN
        REVOKE ALL ON webhooks FROM conduit_reader;
        GRANT SELECT (id, url, kinds, created_at, scan_id, delivered_id, delivered, attempts,
                      failures, last_error, last_attempt, next_attempt, failing_since, failing,
                      lost) ON webhooks TO conduit_reader;
    END IF;
END
$$;

-- Registers a webhook; returns its id. keys: push hashes; op_hash/op_idx:
-- outpoints (internal-order txids), the same length. Duplicates are
-- ignored. Events committed before this transaction are not delivered.
CREATE FUNCTION cd_webhook_add(url text, secret text, kinds text[], keys bytea[],
                               op_hash bytea[], op_idx integer[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    hid bigint;
    k bytea;
    o record;
BEGIN
    IF coalesce(array_length(op_hash, 1), 0) <> coalesce(array_length(op_idx, 1), 0) THEN
        RAISE EXCEPTION 'cd_webhook_add: op_hash and op_idx differ in length';
    END IF;
    -- ids are in commit order (cd_emit's lock, sql/009): an event that
    -- commits after this statement has a larger id than any it sees
    INSERT INTO webhooks (url, secret, kinds, scan_id)
    VALUES (url, secret, coalesce(kinds, '{}'), coalesce((SELECT max(id) FROM events), 0))
    RETURNING id INTO hid;
    FOR k IN SELECT DISTINCT u FROM unnest(coalesce(keys, '{}')) AS u LOOP
        INSERT INTO webhook_keys (hook_id, push_hash) VALUES (hid, k);
        PERFORM cd_watch_key('hook:' || hid, k);
    END LOOP;
    FOR o IN SELECT DISTINCT h, i FROM unnest(coalesce(op_hash, '{}'), coalesce(op_idx, '{}'))
             AS t (h, i) LOOP
        INSERT INTO webhook_outpoints (hook_id, prev_hash, prev_idx) VALUES (hid, o.h, o.i);
        PERFORM cd_watch_outpoint('hook:' || hid, o.h, o.i);
    END LOOP;
    RETURN hid;
END
$$;

-- Removes a registration and its watches; false if there is none.
CREATE FUNCTION cd_webhook_delete(hid bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    PERFORM 1 FROM webhooks WHERE id = hid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    FOR r IN SELECT push_hash FROM webhook_keys WHERE hook_id = hid LOOP
        PERFORM cd_unwatch_key('hook:' || hid, r.push_hash);
    END LOOP;
    FOR r IN SELECT prev_hash, prev_idx FROM webhook_outpoints WHERE hook_id = hid LOOP
        PERFORM cd_unwatch_outpoint('hook:' || hid, r.prev_hash, r.prev_idx);
    END LOOP;
    DELETE FROM webhooks WHERE id = hid;
    RETURN true;
END
$$;

-- The next events to deliver to hid, in order, at most lim, as the exact
-- JSON text that is POSTed. The log is read past the cursor in windows of
-- 10000 rows, at most 20 per call; a window without a match moves the
-- cursor past it (a quiet registration does not rescan the log). When the
-- call stops at its window limit with nothing found, it returns one row
-- (0, NULL): "the cursor moved, ask again".
CREATE FUNCTION cd_webhook_fetch(hid bigint, lim integer)
RETURNS TABLE (event_id bigint, payload text)
LANGUAGE plpgsql AS $$
DECLARE
    s bigint;
    top bigint;
    hk text[];
    w integer := 0;
BEGIN
    SELECT h.scan_id, h.kinds INTO s, hk FROM webhooks h WHERE h.id = hid;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    LOOP
        SELECT max(x.id) INTO top
        FROM (SELECT e.id FROM events e WHERE e.id > s ORDER BY e.id LIMIT 10000) x;
        IF top IS NULL THEN
            RETURN;
        END IF;
        -- the match, written inline (set-based: the keys as a hashed subplan,
        -- an index probe per spend event; a function called per row costs
        -- ~60 us a row through SPI)
        RETURN QUERY
            SELECT e.id, json_build_object('id', e.id, 'webhook', hid, 'kind', e.kind,
                                           'at', e.at, 'data', e.body)::text
            FROM events e
            WHERE e.id > s AND e.id <= top
              AND (e.kind = ANY (hk)
                   OR (e.kind = 'key' AND decode(e.body->>'key', 'hex') IN
                       (SELECT k.push_hash FROM webhook_keys k WHERE k.hook_id = hid))
                   OR (e.kind = 'spend' AND EXISTS (
                       SELECT 1 FROM webhook_outpoints o
                       WHERE o.hook_id = hid AND o.prev_hash = cd_txid(e.body->>'txid')
                         AND o.prev_idx = (e.body->>'vout')::integer)))
            ORDER BY e.id
            LIMIT lim;
        IF FOUND THEN
            RETURN;
        END IF;
        UPDATE webhooks SET scan_id = top WHERE id = hid AND scan_id = s;
        s := top;
        w := w + 1;
        IF w >= 20 THEN
            event_id := 0;
            payload := NULL;
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
END
$$;

-- Events the retention deletes before a registration got them are counted
-- in webhooks.lost (and said in last_error), never skipped silently. The
-- cursor is left alone: retention goes by time, so an event with a larger
-- id may survive one that was deleted, and is still delivered.
CREATE FUNCTION cd_webhook_pruned() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    top bigint;
BEGIN
    SELECT max(id) INTO top FROM old_rows;
    IF top IS NULL THEN
        RETURN NULL;
    END IF;
    -- only registrations whose cursor had not passed the deleted rows; the
    -- match as in cd_webhook_fetch, set-based
    UPDATE webhooks h
    SET lost = h.lost + n.cnt,
        last_error = n.cnt || ' events were deleted by the event retention before delivery'
    FROM (SELECT w.id,
                 (SELECT count(*) FROM old_rows o
                  WHERE o.id > w.scan_id
                    AND (o.kind = ANY (w.kinds)
                         OR (o.kind = 'key' AND decode(o.body->>'key', 'hex') IN
                             (SELECT k.push_hash FROM webhook_keys k WHERE k.hook_id = w.id))
                         OR (o.kind = 'spend' AND EXISTS (
                             SELECT 1 FROM webhook_outpoints p
                             WHERE p.hook_id = w.id AND p.prev_hash = cd_txid(o.body->>'txid')
                               AND p.prev_idx = (o.body->>'vout')::integer)))) AS cnt
          FROM webhooks w WHERE w.scan_id < top) n
    WHERE h.id = n.id AND n.cnt > 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER webhooks_events_pruned AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cd_webhook_pruned();
