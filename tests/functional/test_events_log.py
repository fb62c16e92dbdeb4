"""The event log of sql/009_events.sql, exercised in a real PostgreSQL with
hand-made blocks (no daemon), the way test_reorg_sql.py checks the reorg rules:

  g - a1 - a2            (best, indexed tip a2; a1 has Y with key keyY, X spends o1:0)
   \\- b1 - b2            (the new best branch; b1 has X again)

- every notification is also an `events` row, in the same order as the
  NOTIFYs a LISTEN client receives (same kind, same body);
- a reorg announces itself first, then the matches leaving the best chain
  ("orphaned"), then the joining blocks' matches, then the tip;
- no function but cd_emit calls pg_notify (a later migration that re-creates
  a notifying function from an old copy would silently drop events);
- watches owned by two features survive either one's removal, and an
  application's own watched_keys row is never removed by cd_unwatch_key;
- cd_events_prune removes only what is older than its argument.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_notify import Listener  # noqa: E402
from test_reorg_sql import ROOT, SETUP  # noqa: E402

DB = "ev"


def run(pg, sql):
    p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1",
                        "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-d", DB],
                       input=sql.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr.decode()
    return [tuple(x.split("|")) for x in p.stdout.decode().splitlines() if x]


def migrate(pg):
    pg.psql(f"CREATE DATABASE {DB}")
    for f in sorted(os.listdir(os.path.join(ROOT, "sql"))):
        if f[:3].isdigit() and f.endswith(".sql"):
            run(pg, open(os.path.join(ROOT, "sql", f)).read())


def events(pg, after=0):
    import json
    return [(k, json.loads(b)) for k, b in
            run(pg, f"SELECT kind, body::text FROM events WHERE id > {after} ORDER BY id;")]


def hexh(pg, name):
    return run(pg, f"SELECT encode(h('{name}'), 'hex'), cd_txid_hex(h('{name}'));")[0]


def test_event_log_matches_notify_and_orders_a_reorg(pg):
    migrate(pg)
    run(pg, SETUP)
    # features watch keyY (twice) and the outpoint o1:0 that X spends in a1 and b1
    run(pg, "SELECT cd_watch_key('sse:1', h('keyY')); SELECT cd_watch_key('hook:1', h('keyY'));"
            "SELECT cd_watch_outpoint('cdb:spend', h('o1'), 0);")
    last = int(run(pg, "SELECT coalesce(max(id), 0) FROM events;")[0][0])
    lst = Listener(pg, DB, ["cd_tip", "cd_reorg", "cd_key", "cd_spend", "cd_evict"])
    run(pg, "INSERT INTO chain_target (singleton, block_hash, height, mtp) VALUES (true, h('b2'), 2, 0);  -- mtp: headers are fake")
    assert run(pg, "SELECT cd_reorg_step();") == [("reorg 0 2 2",)]
    notes = lst.finish()

    got = events(pg, last)
    # the same events, in the same order, as the NOTIFYs (channel cd_<kind>)
    assert [("cd_" + k, b) for k, b in got] == notes
    kinds = [k for k, _ in got]
    key_y, _ = hexh(pg, "keyY")
    _, o1 = hexh(pg, "o1")
    _, tx_x = hexh(pg, "X")
    _, tx_y = hexh(pg, "Y")
    _, a1 = hexh(pg, "a1")
    _, b1 = hexh(pg, "b1")
    _, b2 = hexh(pg, "b2")
    # reorg first, tip last
    assert kinds[0] == "reorg" and kinds[-1] == "tip"
    assert got[0][1]["fork_height"] == 0 and got[0][1]["leaving"] == 2
    assert got[0][1]["joining"] == 2 and got[0][1]["new_tip"] == b2
    assert got[-1][1] == {"height": 2, "hash": b2}
    # a1's matches leave the best chain: announced as orphaned, before b1's
    orphaned = [b for k, b in got if b.get("state") == "orphaned"]
    assert {"key": key_y, "txid": tx_y, "idx": 0, "flags": 1, "state": "orphaned",
            "height": 1, "block": a1} in orphaned
    assert {"txid": o1, "vout": 0, "spend_txid": tx_x, "in_idx": 0, "state": "orphaned",
            "height": 1, "block": a1} in orphaned
    confirmed = [i for i, (k, b) in enumerate(got) if b.get("state") == "confirmed"]
    assert got[confirmed[0]][1] == {"txid": o1, "vout": 0, "spend_txid": tx_x, "in_idx": 0,
                                    "state": "confirmed", "height": 1, "block": b1}
    assert max(i for i, (k, b) in enumerate(got) if b.get("state") == "orphaned") < confirmed[0]

    # no function but cd_emit sends a notification itself
    assert run(pg, "SELECT proname FROM pg_proc WHERE prosrc LIKE '%pg_notify(%' "
                   "AND proname <> 'cd_emit' ORDER BY 1;") == []


def test_watch_owners_and_prune(pg):
    migrate(pg)
    run(pg, "CREATE FUNCTION h(t text) RETURNS bytea LANGUAGE sql AS $$ SELECT sha256(t::bytea) $$;")
    watched = "SELECT count(*) FROM watched_keys WHERE push_hash = h('k');"
    run(pg, "SELECT cd_watch_key('sse:1', h('k')); SELECT cd_watch_key('hook:2', h('k'));")
    run(pg, "SELECT cd_watch_key('sse:1', h('k'));")  # twice by one owner: one row
    assert run(pg, "SELECT count(*) FROM watch_owners;") == [("2",)]
    run(pg, "SELECT cd_unwatch_key('sse:1', h('k'));")
    assert run(pg, watched) == [("1",)]  # hook:2 still watches it
    run(pg, "SELECT cd_unwatch_key('hook:2', h('k'));")
    assert run(pg, watched) == [("0",)]
    # an application's own row is the application's: never removed by a feature
    run(pg, "INSERT INTO watched_keys (push_hash, label) VALUES (h('app'), 'mine');"
            "SELECT cd_watch_key('sse:1', h('app')); SELECT cd_unwatch_key('sse:1', h('app'));")
    assert run(pg, "SELECT label FROM watched_keys WHERE push_hash = h('app');") == [("mine",)]
    # outpoints alike
    run(pg, "SELECT cd_watch_outpoint('a', h('t'), 1); SELECT cd_watch_outpoint('b', h('t'), 1);"
            "SELECT cd_unwatch_outpoint('a', h('t'), 1);")
    assert run(pg, "SELECT count(*) FROM watched_outpoints;") == [("1",)]
    run(pg, "SELECT cd_unwatch_outpoint('b', h('t'), 1);")
    assert run(pg, "SELECT count(*) FROM watched_outpoints;") == [("0",)]

    # prune: only what is older than the retention; ids keep ascending after it
    run(pg, "SELECT cd_emit('tip', json_build_object('height', g)) FROM generate_series(1, 5) g;")
    run(pg, "UPDATE events SET at = now() - interval '3 hours' WHERE (body->>'height')::int <= 3;")
    assert run(pg, "SELECT cd_events_prune(interval '2 hours');") == [("3",)]
    assert run(pg, "SELECT cd_events_prune(interval '2 hours');") == [("0",)]
    assert run(pg, "SELECT body->>'height' FROM events ORDER BY id;") == [("4",), ("5",)]
    run(pg, "SELECT cd_emit('tip', json_build_object('height', 6));")
    ids = [int(r[0]) for r in run(pg, "SELECT id FROM events ORDER BY id;")]
    assert ids == sorted(ids) and len(ids) == 3
