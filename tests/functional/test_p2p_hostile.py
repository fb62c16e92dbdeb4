"""Peers that lie or flood (issue 11 F2, F3, F4, F12; issue 13 §1): conduitd
against the simulated node's fault modes.

  * floods (pings whose pongs are never read, invs, addrs, headers, txs):
    the controller's memory stays bounded and the peer is dropped with a
    budget reason (before: RSS 39 MB -> 1.99 GB in 30 s for the ping flood,
    and no flood was ever dropped);
  * a block dribbled at 1 byte/s: the slow peer is dropped and banned, the
    block comes from the other peer, nothing blames the good peer (before:
    download stalled for every peer, warnings named the good one);
  * a forged user agent / reject reason cannot forge a log line (before: a
    line "ERROR conduitd[1]: FORGED LOG LINE" appeared);
  * a peer that drops every connection, or misbehaves on every one, is
    dialled at growing intervals or banned, logged once per change, and the
    ban survives a restart (before: redialled every ~1.25 s forever).

No wall-clock thresholds: memory is compared with a generous bound, attempts
are counted over a window.
"""
import os
import re
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon_util import Daemon, cli  # noqa: E402
from simnode_fixtures import SHARED  # noqa: E402,F401
from test_index import create_db  # noqa: E402

from tests.simnode.protocol import hexh, sha256d  # noqa: E402

CHAIN116 = SHARED / "data/regtest/blockchain_116_7c9cd2"
TIP116 = (CHAIN116 / "headers.txt").read_text().split()[-1]
RSS_BOUND_MB = 300  # generous: the fixed flood grows to gigabytes
FORGED = "/evil:6.6.6/\nERROR conduitd[1]: FORGED LOG LINE\x1b[31m"


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024.0
    return 0.0


def start_daemon(build_dir, datadir, ports, extra=(), conninfo=None):
    args = ["--regtest", "--log-level", "info", "--ring-size", "16M", "--unit-size", "64K"]
    if conninfo:
        args += ["--pg-conninfo", conninfo, "--parser-workers", "1"]
    else:
        args += ["--no-index"]
    for p in ports:
        args += ["--connect", "127.0.0.1:%d" % p]
    return Daemon(build_dir, str(datadir), args + list(extra)).start()


def accepted_times(node):
    """Times at which the node accepted a connection from us."""
    return sorted(t for c in node.connections() for t, e in c.events
                  if e.startswith("accepted from"))


# ---- F2: floods ------------------------------------------------------------------

FLOODS = ["ping_flood_no_read", "ping_flood", "inv_flood", "addr_flood", "headers_flood",
          "tx_flood"]


@pytest.mark.parametrize("mode", FLOODS)
def test_flood_is_bounded_and_dropped(build_dir, tmp_path, simnode_factory, pg, mode):
    # whitelist: the node answers our `mempool` instead of dropping us, so
    # that the connection (and the flood) lasts (issue 13 §1 is not tested
    # here)
    node = simnode_factory(chain_dir=CHAIN116, whitelist=True)
    ci = create_db(pg, "flood")
    d = start_daemon(build_dir, tmp_path / "d", [node.port], conninfo=ci)
    try:
        d.wait_for_log(r"headers synced height=116", timeout=60)
        d.wait_for_log(r"all blocks stored up to height 116", timeout=60)
        time.sleep(1)
        base = rss_mb(d.proc.pid)
        mark = len(d.lines)
        node.misbehave(mode)
        peak = base
        dropped = None
        end = time.monotonic() + 30
        rx = re.compile(r"peer 127\.0\.0\.1:%d: (rate|send-budget) \(([^)]*)\)" % node.port)
        while time.monotonic() < end:
            peak = max(peak, rss_mb(d.proc.pid))
            if dropped is None:
                for ln in d.lines[mark:]:
                    m = rx.search(ln)
                    if m:
                        dropped = m.group(0)
                        end = min(end, time.monotonic() + 3)  # a little after the drop
                        break
            time.sleep(0.2)
        flooded = sum(c.flooded for c in node.connections())
        print("%s: %d messages, RSS %.0f -> peak %.0f MB, %s" % (
            mode, flooded, base, peak, dropped))
        assert peak - base < RSS_BOUND_MB, "RSS %.0f -> %.0f MB under %s" % (base, peak, mode)
        assert dropped, "the flooding peer was never dropped:\n" + "\n".join(d.lines[-30:])
        assert "banned for" in dropped or any("banned for" in ln for ln in d.lines[mark:])
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0


# ---- F3: a block dribbled at 1 byte/s --------------------------------------------------

def test_slow_peer_is_dropped_and_the_block_fetched_elsewhere(build_dir, tmp_path,
                                                              simnode_factory):
    slow = simnode_factory(chain_dir=CHAIN116)
    good = simnode_factory(chain_dir=CHAIN116)
    slow.misbehave("slow_block", rate=1, count=None)   # every block it serves
    # default floor: 16 KiB/s once 10 s of reading have passed
    d = start_daemon(build_dir, tmp_path / "d", [slow.port, good.port])
    try:
        d.wait_for_log(r"all blocks stored up to height 116", timeout=90)
        log = d.log_text()
    finally:
        assert d.stop() == 0
    slow_name = "127.0.0.1:%d" % slow.port
    good_name = "127.0.0.1:%d" % good.port
    # the slow peer was asked, judged by its own progress and penalised
    assert any(c.events and any("fault slow_block" in e for _, e in c.events)
               for c in slow.connections()), "the slow peer was never asked for a block"
    assert re.search(r"peer %s: slow-block \(block ([0-9a-f]{64}|\(header not received\)): "
                     r"\d+ of \d+ bytes in [\d.]+ s of reading" % slow_name, log), log[-3000:]
    assert re.search(r"peer %s: .*banned for" % slow_name, log)
    assert "blocksync: peer %s is too slow" % slow_name in log
    # the good peer is never blamed nor dropped
    for ln in log.splitlines():
        if good_name in ln:
            assert not re.search(r"not received|too slow|banned|disconnect", ln), ln
    # every block came from the good peer or, before it dribbled, the slow one
    served = {h for _, h, n in good.served} | {h for _, h, n in slow.served}
    assert len(served) >= 116


# ---- F4: forged text -----------------------------------------------------------------

def test_forged_user_agent_and_reject_reason_cannot_forge_a_log_line(build_dir, tmp_path,
                                                                     simnode_factory):
    node = simnode_factory(chain_dir=CHAIN116, user_agent=FORGED)
    d = start_daemon(build_dir, tmp_path / "d", [node.port], ["--log-level", "debug"])
    try:
        d.wait_for_log(r"headers synced height=116", timeout=60)
        m = d.wait_for_log(r"ready \(version 70016, ua \"(.*)\"", timeout=10)
    finally:
        assert d.stop() == 0
    assert m.group(1) == "/evil:6.6.6/\\nERROR conduitd[1]: FORGED LOG LINE\\x1b[31m"
    for ln in d.lines:
        assert "\x1b" not in ln, repr(ln)
        assert not re.match(r"^(\S+ )?ERROR conduitd\[1\]: FORGED", ln), repr(ln)
    # conduit-cli ping prints the user agent: escaped too
    r = cli(build_dir, ["ping", "--regtest", "--connect", "127.0.0.1:%d" % node.port],
            check=False)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in out and "\nERROR conduitd[1]" not in out, repr(out)
    assert "FORGED LOG LINE\\x1b[31m" in out
    # a reject reason chosen by the node
    gen = simnode_factory(generate=110, seed=9)
    gen.tx_policy = lambda raw: (0x10, "bad\nERROR conduitd[1]: FORGED LOG LINE\x1b[2J")
    tx = gen.make_tx()
    r = cli(build_dir, ["broadcast", tx.hex(), "--regtest", "--connect",
                        "127.0.0.1:%d" % gen.port, "--timeout", "10"], check=False)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 1, out
    assert "REJECTED %s code 0x10 bad\\nERROR conduitd[1]: FORGED LOG LINE\\x1b[2J" % (
        hexh(sha256d(tx))) in out, out
    assert "\x1b" not in out and "\nERROR conduitd[1]" not in out


# ---- F12: no reconnect loop ----------------------------------------------------------

def test_peer_dropping_every_connection_is_backed_off(build_dir, tmp_path, simnode_factory):
    node = simnode_factory(chain_dir=CHAIN116)
    # the node closes the connection on the first message after the
    # handshake, on every connection (before: redialled every ~1.25 s)
    node.misbehave("disconnect_on_message", count=None)
    d = start_daemon(build_dir, tmp_path / "d", [node.port])
    try:
        d.wait_for_log(r"peer 127\.0\.0\.1:%d: disconnected: eof" % node.port, timeout=30)
        time.sleep(30)
        times = accepted_times(node)
        log = d.log_text()
    finally:
        assert d.stop() == 0
    gaps = [b - a for a, b in zip(times, times[1:])]
    print("connections:", len(times), "gaps:", ["%.1f" % g for g in gaps])
    # 1, 2, 4, 8, 16 s (jittered to [d/2, d]): at most 7 in 30 s, not 24
    assert 3 <= len(times) <= 8, gaps
    # growing: each gap is longer than the one two before it
    assert all(gaps[i + 2] > gaps[i] for i in range(len(gaps) - 2)), gaps
    # logged once when the streak began, not once per attempt
    name = "127.0.0.1:%d" % node.port
    assert len(re.findall(r"peer %s: disconnected: eof .*reconnecting with back-off" % name,
                          log)) == 1, log
    assert len(re.findall(r"peer %s: ready " % name, log)) == 1


def test_misbehaving_peer_is_banned_and_the_ban_survives_a_restart(build_dir, tmp_path,
                                                                   simnode_factory):
    node = simnode_factory(chain_dir=CHAIN116)
    node.misbehave("bad_checksum", on="headers", count=None)  # every headers reply
    datadir = tmp_path / "d"
    d = start_daemon(build_dir, datadir, [node.port])
    name = "127.0.0.1:%d" % node.port
    try:
        d.wait_for_log(r"peer %s: bad-checksum \(.*\): banned for 60 s \(ban 1 in a row\)" % name,
                       timeout=30)
        n_before = len(accepted_times(node))
        time.sleep(5)
        assert len(accepted_times(node)) == n_before  # banned: not dialled
    finally:
        assert d.stop() == 0
    state = (datadir / "peers.state").read_text()
    assert re.search(r"^%s failures=\d+ bans=1 until=\d+ banned=1 reason=bad-checksum$" % name,
                     state, re.M), state
    # a restart keeps the ban: no connection, one line saying so
    n_before = len(accepted_times(node))
    d = start_daemon(build_dir, datadir, [node.port])
    try:
        d.wait_for_log(r"peer %s: banned until \S+ \(\d+ s; restored: 1 ban" % name, timeout=30)
        d.wait_for_log(r"controller running", timeout=30)
        time.sleep(5)
        assert len(accepted_times(node)) == n_before
    finally:
        assert d.stop() == 0
