-- 015_cdb_outbound.sql - the cursor of the outbound tip-filter delivery to
-- ConduitDB's reference server (issue 16; docs/CONDUITDB_API.md, "Tip-filter
-- notifications"): ConduitDB POSTs every tip-filter match to
-- <reference server>/api/v1/tip-filter/matches; conduitd's webhook process
-- does the same when conduitdb_reference_url is set
-- (src/api/cd_http_hooks_cdb.c).
--
-- The matches themselves are not copied anywhere: they are the key events
-- of the event log (sql/009_events.sql) joined with the registrations
-- (cdb_tip_filters, sql/011), as /ws?notifications=all reads them. This
-- table holds only how far the delivery got: scan_id is moved past a batch
-- only after the receiver answered 2xx, in the same statement that counts
-- it, so a crash at any point sends the in-flight batch again (at least
-- once, in order) and a receiver that is down loses nothing the log keeps
-- (events_keep hours). One row: the stream of ConduitDB's matches is one,
-- whatever URL it goes to (a changed URL takes over the backlog).
--
-- scan_id .. lost are the same 11 delivery-state columns as webhooks'
-- (sql/012), with the same meaning: one delivery process keeps both, with
-- one struct in memory (cd_hook_state, src/api/cd_http_hooks_int.h) and
-- one statement each for a failed attempt and a delivery
-- (CD_HOOK_SQL_FAILED, CD_HOOK_SQL_DELIVERED). Kept as a table of its own
-- (review D4: the schema is not changed for it).

CREATE TABLE cdb_outbound (
    one           boolean     PRIMARY KEY DEFAULT true CHECK (one),
    url           text        NOT NULL,
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
    lost          bigint      NOT NULL DEFAULT 0
);

COMMENT ON TABLE cdb_outbound IS 'The delivery of tip-filter matches to ConduitDB''s reference server (conduitdb_reference_url): one row, created the first time the option is set.';
COMMENT ON COLUMN cdb_outbound.one IS 'Always true: the table has one row.';
COMMENT ON COLUMN cdb_outbound.url IS 'Where the matches were last POSTed (the option''s URL + /api/v1/tip-filter/matches).';
COMMENT ON COLUMN cdb_outbound.created_at IS 'When the option was first set: matches of events before it are not delivered.';
COMMENT ON COLUMN cdb_outbound.scan_id IS 'The cursor: every event with id <= scan_id was delivered (2xx) or holds no match. Moves only forward.';
COMMENT ON COLUMN cdb_outbound.delivered_id IS 'Id of the last event of the last batch the receiver acknowledged with 2xx.';
COMMENT ON COLUMN cdb_outbound.delivered IS 'Batches (POSTs) delivered so far.';
COMMENT ON COLUMN cdb_outbound.attempts IS 'Failed attempts in a row at the batch being delivered (0 after a 2xx).';
COMMENT ON COLUMN cdb_outbound.failures IS 'Failed attempts in all.';
COMMENT ON COLUMN cdb_outbound.last_error IS 'What the last failed attempt got (HTTP status, timeout, connection error).';
COMMENT ON COLUMN cdb_outbound.last_attempt IS 'When the last attempt ended.';
COMMENT ON COLUMN cdb_outbound.next_attempt IS 'When the batch being retried is sent again; NULL when no retry is pending.';
COMMENT ON COLUMN cdb_outbound.failing_since IS 'First failed attempt of the current streak; NULL after a 2xx.';
COMMENT ON COLUMN cdb_outbound.failing IS 'True once webhook_failing_after attempts in a row failed; false again after a 2xx.';
COMMENT ON COLUMN cdb_outbound.lost IS 'Matching events the event retention (cd_events_prune) deleted before the cursor passed them: a reference server away for longer than events_keep misses them, and is told so here rather than silently.';

-- The delivery's state, creating the row at the head of the log the first
-- time (matches committed before the option was set are not delivered, as
-- a webhook gets no event from before its registration) and recording the
-- URL. Returns the cursor, the back-off state and the seconds until the
-- next attempt is due (NULL: now).
CREATE FUNCTION cdb_outbound_start(target text)
RETURNS TABLE (scan_id bigint, attempts integer, failing boolean, wait double precision)
LANGUAGE plpgsql AS $$
BEGIN
    -- ids are in commit order (cd_emit's lock, sql/009): an event that
    -- commits after this statement has a larger id than any it sees
    INSERT INTO cdb_outbound (url, scan_id)
    VALUES (target, coalesce((SELECT max(id) FROM events), 0))
    ON CONFLICT (one) DO UPDATE SET url = excluded.url WHERE cdb_outbound.url <> excluded.url;
    RETURN QUERY
        SELECT o.scan_id, o.attempts, o.failing, extract(epoch FROM o.next_attempt - now())::float8
        FROM cdb_outbound o;
END
$$;

-- Matching events the retention deletes before the cursor passed them are
-- counted in cdb_outbound.lost (and said in last_error), never skipped
-- silently (as webhooks.lost, sql/012). Set-based over the deleted rows;
-- nothing to do when the option was never set (no row).
CREATE FUNCTION cdb_outbound_pruned() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n
    FROM old_rows o, cdb_outbound c
    WHERE o.id > c.scan_id AND o.kind = 'key'
      AND EXISTS (SELECT 1 FROM cdb_tip_filters f
                  WHERE f.push_hash = decode(o.body->>'key', 'hex') AND f.expires_at > o.at);
    IF n > 0 THEN
        UPDATE cdb_outbound
        SET lost = lost + n,
            last_error = n || ' matching events were deleted by the event retention before '
                         'delivery';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER cdb_outbound_events_pruned AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cdb_outbound_pruned();
