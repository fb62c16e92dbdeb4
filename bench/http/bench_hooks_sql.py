#!/usr/bin/python3
"""The SQL side of webhooks (sql/012_webhooks.sql) at scale, in a throw-away
PostgreSQL with stand-ins for sql/001 and sql/009 (the events table as in
009; cd_txid and the cd_watch_* functions as no-ops):

  - what the retention trigger (webhooks_events_pruned) adds to deleting
    500,000 events (1 in 10 a key event): without it, with it and no
    registration, with 10 registrations ahead of the deleted rows, with one
    lagging registration of 1000 keys and kinds {tip} (all counted in lost);
  - cd_webhook_fetch for a registration that matches nothing, over 500,000
    events (windows of 10,000 rows, 20 per call).

usage: /usr/bin/python3 bench/http/bench_hooks_sql.py
"""
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from pgserver import PgServer
pg = PgServer().start()
try:
    pg.psql("CREATE DATABASE b")
    pg.psql("""CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), kind text NOT NULL, body jsonb NOT NULL);
CREATE FUNCTION cd_txid(display_hex text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT decode(display_hex, 'hex') $$;
CREATE FUNCTION cd_watch_key(a text, b bytea) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION cd_unwatch_key(a text, b bytea) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION cd_watch_outpoint(a text, b bytea, c int) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION cd_unwatch_outpoint(a text, b bytea, c int) RETURNS void LANGUAGE sql AS $$ SELECT $$;
""", db="b")
    sql = open(os.path.join(ROOT, "sql", "012_webhooks.sql")).read()
    trig_at = sql.index("-- Events the retention deletes")
    N = 500000
    ins = f"INSERT INTO events (kind, body) SELECT CASE WHEN g % 10 = 0 THEN 'key' ELSE 'tip' END, json_build_object('height', g, 'key', lpad(to_hex(g), 64, '0')) FROM generate_series(1,{N}) g"
    pg.psql(sql[:trig_at], db="b")
    def run(label):
        pg.psql(ins, db="b")
        t = time.monotonic()
        pg.psql("DELETE FROM events", db="b")
        print(f"{label:40s} delete {N} events: {time.monotonic()-t:.2f} s", flush=True)
    run("no trigger")

    pg.psql(sql[trig_at:], db="b")
    run("trigger, no webhooks")
    keys = ",".join("'%064x'" % (k * 7) for k in range(1, 1001))
    pg.psql(f"SELECT cd_webhook_add('http://x/', 's', '{{tip}}', ARRAY(SELECT decode(x,'hex') FROM unnest(ARRAY[{keys}]) x), NULL, NULL) FROM generate_series(1,10)", db="b")
    pg.psql("UPDATE webhooks SET scan_id = 1e12", db="b")
    run("trigger, 10 webhooks ahead")
    pg.psql("UPDATE webhooks SET scan_id = 0 WHERE id = 1", db="b")
    run("trigger, 1 lagging (1000 keys, tip)")
    print("  lost counted:", pg.psql("SELECT lost FROM webhooks WHERE id = 1", db="b").strip())
    # fetch: a quiet registration (one key that never matches) over N events
    pg.psql("DELETE FROM webhooks; ", db="b")
    hid = pg.psql("SELECT cd_webhook_add('http://x/', 's', '{}', ARRAY[decode(repeat('ab',32),'hex')], NULL, NULL)", db="b").strip()
    pg.psql(ins, db="b")
    pg.psql(f"UPDATE webhooks SET scan_id = (SELECT min(id) - 1 FROM events)", db="b")
    t = time.monotonic(); calls = 0
    while True:
        r = pg.psql(f"SELECT count(*) FROM cd_webhook_fetch({hid}, 64)", db="b").strip(); calls += 1
        if r == "0": break
    print(f"fetch, quiet registration over {N} events: {calls} calls, {time.monotonic()-t:.2f} s")
finally:
    pg.stop()
