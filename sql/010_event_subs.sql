-- 010_event_subs.sql - the subscriptions of the HTTP event streams
-- (GET /v1/events, GET /v1/ws; docs/EVENTS.md).
--
-- Why: a client of an event stream that subscribes to keys or outpoints
-- must get their events even for the time it is away (a reconnect, a
-- daemon restart): key and spend events are only written for keys and
-- outpoints that are watched (sql/009). So a subscription is stored: its id
-- (random, 32 hex digits, given to the client and part of its resume), its
-- keys and outpoints, each watched through cd_watch_key('sse:<id>', ...) /
-- cd_watch_outpoint, so other features' watches of the same keys are never
-- touched. A subscription with no client for events_sub_idle seconds
-- expires: its watches are removed with it (cd_event_subs_expire, called by
-- the HTTP servers about once a minute). Kinds and the resume point are not
-- stored: the client states them on each connection.

CREATE TABLE event_subs (
    id         text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE event_sub_keys (
    sub       text NOT NULL REFERENCES event_subs (id) ON DELETE CASCADE,
    push_hash bytea NOT NULL,
    PRIMARY KEY (sub, push_hash)
);

CREATE TABLE event_sub_outpoints (
    sub       text NOT NULL REFERENCES event_subs (id) ON DELETE CASCADE,
    prev_hash bytea NOT NULL,
    prev_idx  integer NOT NULL,
    PRIMARY KEY (sub, prev_hash, prev_idx)
);

-- Adds keys (hex) and outpoints ('<txid>:<vout>', display order) to a
-- subscription, making it if new; each new one is watched by 'sse:<sub>'.
CREATE FUNCTION cd_event_sub_add(sub text, keys text[], outpoints text[]) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    k text;
    o text;
    h bytea;
    i integer;
BEGIN
    INSERT INTO event_subs (id) VALUES (sub)
        ON CONFLICT (id) DO UPDATE SET seen_at = now();
    FOREACH k IN ARRAY coalesce(keys, '{}') LOOP
        INSERT INTO event_sub_keys (sub, push_hash) VALUES (sub, decode(k, 'hex'))
            ON CONFLICT DO NOTHING;
        IF FOUND THEN
            PERFORM cd_watch_key('sse:' || sub, decode(k, 'hex'));
        END IF;
    END LOOP;
    FOREACH o IN ARRAY coalesce(outpoints, '{}') LOOP
        h := cd_txid(split_part(o, ':', 1));
        i := split_part(o, ':', 2)::integer;
        INSERT INTO event_sub_outpoints (sub, prev_hash, prev_idx) VALUES (sub, h, i)
            ON CONFLICT DO NOTHING;
        IF FOUND THEN
            PERFORM cd_watch_outpoint('sse:' || sub, h, i);
        END IF;
    END LOOP;
END
$$;

-- Removes keys and outpoints from a subscription (and their watches).
CREATE FUNCTION cd_event_sub_del(sub text, keys text[], outpoints text[]) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    k text;
    o text;
    h bytea;
    i integer;
BEGIN
    FOREACH k IN ARRAY coalesce(keys, '{}') LOOP
        DELETE FROM event_sub_keys s WHERE s.sub = cd_event_sub_del.sub
            AND s.push_hash = decode(k, 'hex');
        IF FOUND THEN
            PERFORM cd_unwatch_key('sse:' || sub, decode(k, 'hex'));
        END IF;
    END LOOP;
    FOREACH o IN ARRAY coalesce(outpoints, '{}') LOOP
        h := cd_txid(split_part(o, ':', 1));
        i := split_part(o, ':', 2)::integer;
        DELETE FROM event_sub_outpoints s WHERE s.sub = cd_event_sub_del.sub
            AND s.prev_hash = h AND s.prev_idx = i;
        IF FOUND THEN
            PERFORM cd_unwatch_outpoint('sse:' || sub, h, i);
        END IF;
    END LOOP;
END
$$;

-- Removes subscriptions not seen for `idle` with their watches; returns
-- how many. SKIP LOCKED: the four HTTP servers may run it at once.
CREATE FUNCTION cd_event_subs_expire(idle interval) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s record;
    n integer := 0;
BEGIN
    FOR s IN SELECT id FROM event_subs WHERE seen_at < now() - idle FOR UPDATE SKIP LOCKED LOOP
        PERFORM cd_unwatch_key('sse:' || s.id, k.push_hash)
        FROM event_sub_keys k WHERE k.sub = s.id;
        PERFORM cd_unwatch_outpoint('sse:' || s.id, o.prev_hash, o.prev_idx)
        FROM event_sub_outpoints o WHERE o.sub = s.id;
        DELETE FROM event_subs WHERE id = s.id;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- The prune mark: the highest event id ever deleted. A resume point below
-- it may have lost events (cd_events_prune deletes a prefix of the log);
-- one at or above it has not, whatever gaps rolled-back transactions left
-- in the ids. Kept by a statement trigger, so every way of deleting counts.
CREATE TABLE events_pruned (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    upto      bigint NOT NULL
);

CREATE FUNCTION cd_events_pruned_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_pruned (singleton, upto)
    SELECT true, max(id) FROM gone HAVING max(id) IS NOT NULL
    ON CONFLICT (singleton) DO UPDATE SET upto = greatest(events_pruned.upto, EXCLUDED.upto);
    RETURN NULL;
END
$$;
CREATE TRIGGER events_pruned_mark AFTER DELETE ON events
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION cd_events_pruned_mark();

COMMENT ON TABLE events_pruned IS 'One row: the highest event id deleted from events (pruning); the HTTP event streams refuse a resume point below it (events may be missing after it).';
COMMENT ON COLUMN events_pruned.singleton IS 'Always true: one row.';
COMMENT ON COLUMN events_pruned.upto IS 'The highest event id ever deleted.';
COMMENT ON TABLE event_subs IS 'Subscriptions of the HTTP event streams (/v1/events, /v1/ws) to keys and outpoints: kept while a client uses them and for events_sub_idle seconds after, so events for their keys are recorded while the client is away.';
COMMENT ON COLUMN event_subs.id IS 'Subscription id (32 hex digits, random), given to the client (the sub of its resume).';
COMMENT ON COLUMN event_subs.created_at IS 'When the subscription was made.';
COMMENT ON COLUMN event_subs.seen_at IS 'Last time a client used it (refreshed while one is connected); it expires events_sub_idle after.';
COMMENT ON TABLE event_sub_keys IS 'The pushdata keys of an event-stream subscription (each watched as sse:<sub>).';
COMMENT ON COLUMN event_sub_keys.sub IS 'The subscription.';
COMMENT ON COLUMN event_sub_keys.push_hash IS 'A subscribed pushdata key (sha256 of the pushed bytes).';
COMMENT ON TABLE event_sub_outpoints IS 'The outpoints of an event-stream subscription (each watched as sse:<sub>).';
COMMENT ON COLUMN event_sub_outpoints.sub IS 'The subscription.';
COMMENT ON COLUMN event_sub_outpoints.prev_hash IS 'A subscribed outpoint''s txid (internal order).';
COMMENT ON COLUMN event_sub_outpoints.prev_idx IS 'A subscribed outpoint''s output index.';
