"""One event-log hub per HTTP server process (docs/ARCHITECTURE.md §7d): ConduitDB's /ws and
conduitd's /v1/ws are two client kinds of the same hub, so a server process holds ONE
PostgreSQL session LISTENing on cd_event (application name conduitd-events) however many
clients of either kind it has, and both kinds are fed through it.

Before (two hubs), every server process with a ConduitDB /ws client held a second LISTEN
session of its own (conduitd-http-ws): the session count below failed.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon  # noqa: E402
from test_conduitdb_notify import JSON_CT, WAIT, Collector, ce, http_port, req  # noqa: E402
from test_index import create_db, psql  # noqa: E402
from test_index_daemon import wait_tip  # noqa: E402
from ws_client import WS  # noqa: E402

HTTP_PROCS = 4  # server processes (src/api/cd_http.c)
CLIENTS = 8     # of each kind: with 4 processes, most processes get both kinds


def listen_sessions(pg, db):
    """{application_name: count} of the HTTP servers' LISTEN sessions, old and new names."""
    rows = psql(pg, db, "SELECT application_name, count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() "
                "AND application_name IN ('conduitd-events', 'conduitd-http-ws') GROUP BY 1")
    return {name: int(n) for name, n in rows}


def test_one_hub_session_feeds_both_kinds(pg_module, build_dir, tmp_path):
    from simnode_fixtures import SimNodeProcess
    node = SimNodeProcess("--regtest", "--generate", "110", "--txs-per-block", "2")
    ci = create_db(pg_module, "evhub")
    d = Daemon(build_dir, str(tmp_path / "d"),
               ["--regtest", "--connect", "127.0.0.1:%d" % node.port, "--pg-conninfo", ci,
                "--parser-workers", "2", "--ring-size", "16M", "--unit-size", "1M",
                "--http-listen", "127.0.0.1:0", "--log-level", "info"]).start()
    socks = []
    try:
        port = http_port(d)
        wait_tip(pg_module, "evhub", d, 110, timeout=WAIT)
        made = node.control({"cmd": "make_tx"})
        tx = ce.Tx(bytes.fromhex(made["hex"]), 0)
        ins = [(ce.disp(h), i) for h, i, _ in tx.inputs]
        st, _, _, body = req(port, "/api/v1/output-spend/notifications", JSON_CT, "POST",
                             json.dumps([[t, i] for t, i in ins]).encode())
        assert st == 200 and json.loads(body) == [], body

        cdb = [WS(port, "/ws") for _ in range(CLIENTS)]
        own = [WS(port, "/v1/ws") for _ in range(CLIENTS)]
        socks = cdb + own
        for w in own:
            w.send_frame(0x1, json.dumps({"op": "subscribe", "kinds": ["tip"]}).encode())
            m = w.recv_message(WAIT)
            assert m and m[0] == 0x1 and json.loads(m[1])["type"] == "subscribed", m

        # every upgrade above was answered (101) after its process had its session: the
        # sessions are all open now
        s = listen_sessions(pg_module, "evhub")
        assert "conduitd-http-ws" not in s, s
        assert 1 <= s.get("conduitd-events", 0) <= HTTP_PROCS, s

        # both kinds are fed by that one session: the spend to every /ws client (once), the
        # tip to every /v1/ws client
        assert "txid" in node.control({"cmd": "add_tx", "hex": made["hex"]})
        want = sorted((t, i, made["txid"], n, None) for n, (t, i) in enumerate(ins))
        for w in cdb:
            col = Collector(w)
            col.pump(lambda c: len(c.spends) >= len(ins))
            assert sorted(col.spends) == want
        node.control({"cmd": "mine", "n": 1})
        wait_tip(pg_module, "evhub", d, 111, timeout=WAIT)
        for w in own:
            deadline = time.monotonic() + WAIT
            while True:
                m = w.recv_message(max(0.1, deadline - time.monotonic()))
                assert m and m[0] == 0x1, m
                msg = json.loads(m[1])
                if msg.get("kind") == "tip":
                    assert msg["data"]["height"] == 111, msg
                    break
        assert listen_sessions(pg_module, "evhub") == s
    finally:
        for w in socks:
            w.close()
        d.stop()
        node.stop()
