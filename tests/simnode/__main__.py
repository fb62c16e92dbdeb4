"""Command-line simulated BSV node.

    /usr/bin/python3 -m tests.simnode --regtest --port 18444 --chain DIR
    /usr/bin/python3 -m tests.simnode --generate 1000 --txs-per-block 20 --seed 7
    /usr/bin/python3 -m tests.simnode --generate 101 --big-blocks 1 --block-size 1000000000 --cache-dir /tmp

Prints `SIMNODE_PORT=<port>` (and `SIMNODE_CONTROL=<port>`) on stdout once
listening.  Control: JSON lines on the --control TCP port and on stdin, e.g.
    {"cmd": "mine", "n": 3, "txs_per_block": 5}
    {"cmd": "reorg", "fork_height": 90, "new_len": 15}
    {"cmd": "misbehave", "mode": "bad_checksum", "on": "headers", "count": 1}
    {"cmd": "status"}
    {"cmd": "advance_clock", "seconds": 901}   (the relay memory forgets)
or the short text form `mine 3 txs_per_block=5`, `reorg 90 15`,
`misbehave bad_checksum on=headers`, `status`, `stop`.
Every command answers one JSON line {"ok": true, ...} / {"ok": false, "error": ...}.
"""
import argparse
import json
import os
import socket
import sys
import threading
import time

from .mempool import TxRejected
from .node import SimNode
from .relaymem import RELAY_EXPIRY
from .protocol import hexh, sha256d, unhexh


def _parse_text(line):
    words = line.split()
    cmd = {"cmd": words[0]}
    pos = []
    for w in words[1:]:
        if "=" in w:
            k, v = w.split("=", 1)
            cmd[k] = _num(v)
        else:
            pos.append(_num(w))
    names = {"mine": ["n"], "reorg": ["fork_height", "new_len"],
             "misbehave": ["mode"], "mempool": ["n"], "activate": ["hash"],
             "serve_file": ["path"], "withhold": ["hash"], "generate": ["n"],
             "invalidate": ["hash"], "reconsider": ["hash"], "add_tx": ["hex"],
             "receive_tx": ["hex"], "expire": ["now"]}
    for k, v in zip(names.get(words[0], []), pos):
        cmd[k] = v
    return cmd


def _num(v):
    try:
        return int(v, 0)
    except ValueError:
        if v in ("null", "None"):
            return None
        if v in ("true", "false"):
            return v == "true"
        return v


def execute(node, c):
    """Run one control command (dict); returns a JSON-able dict."""
    cmd = c.get("cmd")
    if cmd == "status":
        return node.status()
    if cmd in ("mine", "generate"):
        blocks = node.mine(int(c.get("n", 1)), txs_per_block=int(c.get("txs_per_block", 0)),
                           block_size=c.get("block_size"), txs=[bytes.fromhex(t) for t in c.get("txs", [])],
                           announce=(cmd == "mine"))
        return {"height": node.chain.height, "blocks": [b.hash_hex for b in blocks[-20:]]}
    if cmd == "reorg":
        blocks = node.reorg(int(c["fork_height"]), int(c["new_len"]),
                            txs_per_block=int(c.get("txs_per_block", 0)),
                            block_size=c.get("block_size"))
        return {"height": node.chain.height, "tip": node.chain.tip.hash_hex, "new_blocks": len(blocks)}
    if cmd == "activate":
        node.activate(c["hash"])
        return {"height": node.chain.height, "tip": node.chain.tip.hash_hex}
    if cmd == "misbehave":
        params = {k: v for k, v in c.items() if k not in ("cmd", "mode", "on", "count", "conn")}
        f = node.misbehave(c["mode"], on=c.get("on"), count=c.get("count", 1),
                           conn=c.get("conn"), **params)
        return {"fault": repr(f)}
    if cmd == "clear_faults":
        node.clear_faults()
        return {}
    if cmd == "invalidate":
        return {"tip": node.invalidate(c["hash"]), "height": node.chain.height}
    if cmd == "reconsider":
        return {"tip": node.reconsider(c["hash"]), "height": node.chain.height}
    if cmd == "mempool":
        txs = node.make_mempool_txs(int(c.get("n", 1)), sign=c.get("sign", True))
        return {"txids": [hexh(sha256d(t)) for t in txs]}
    if cmd == "mempool_txids":
        return {"txids": node.mempool_txids(), "orphans": node.orphan_txids(),
                "nonfinal": node.nonfinal_txids()}
    if cmd == "add_tx":         # as a wallet on the node (sendrawtransaction)
        try:
            return {"txid": hexh(node.submit_tx(bytes.fromhex(c["hex"])))}
        except TxRejected as e:
            return {"ok": False, "error": str(e), "code": e.code, "reason": e.reason}
    if cmd == "receive_tx":     # as if a (not connected) peer had sent it
        r = node.receive_tx(bytes.fromhex(c["hex"]))
        if r is None:
            return {"status": "known"}
        return {"status": r.status, "code": r.code, "reason": r.reason,
                "txid": hexh(r.txid)}
    if cmd == "make_tx":
        kw = {k: v for k, v in c.items() if k != "cmd"}
        if "parent" in kw:
            kw["parent"] = bytes.fromhex(kw["parent"])
        if isinstance(kw.get("spend"), list):
            kw["spend"] = (unhexh(kw["spend"][0]), int(kw["spend"][1]))
        raw = node.make_tx(**kw)
        return {"hex": raw.hex(), "txid": hexh(sha256d(raw))}
    if cmd == "advance_clock":  # the node's clock: relay memory, mempool times
        return {"now": node.advance_clock(float(c["seconds"]))}
    if cmd == "expire":
        return {"removed": node.expire_mempool(c.get("now"))}
    if cmd == "serve_file":
        b = node.add_extra_block(c["path"])
        return {"hash": b.hash_hex, "size": b.size}
    if cmd == "withhold":
        node.withhold(c["hash"])
        return {}
    if cmd == "received":
        return {"messages": [[cid, m, len(p)] for cid, m, p in node.received_messages()]}
    if cmd == "headers_hashes":
        a, b = int(c.get("from", 0)), int(c.get("to", node.chain.height))
        return {"hashes": [hexh(node.chain.active[h]) for h in range(a, min(b, node.chain.height) + 1)]}
    if cmd == "reveal":         # chain file: connect up to this height, announce
        return {"height": node.reveal(int(c["height"])), "pending": len(node.pending)}
    if cmd == "stop":
        return {"stopping": True}
    raise ValueError("unknown command %r" % cmd)


def handle_line(node, line):
    line = line.strip()
    if not line:
        return None
    try:
        c = json.loads(line) if line.startswith("{") else _parse_text(line)
        r = execute(node, c)
        r = dict(r or {})
        r.setdefault("ok", True)
        return r
    except Exception as e:       # report, keep serving
        return {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m tests.simnode", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    net = ap.add_mutually_exclusive_group()
    net.add_argument("--regtest", action="store_true", help="regtest (default)")
    net.add_argument("--mainnet", action="store_true", help="mainnet magic (serve files only)")
    net.add_argument("--testnet", action="store_true")
    net.add_argument("--stn", action="store_true")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = ephemeral (printed)")
    ap.add_argument("--port-file", help="write the listening port to this file")
    ap.add_argument("--chain", action="append", default=[],
                    help="load a chain directory (headers.txt + raw block files)")
    ap.add_argument("--block-file", action="append", default=[],
                    help="serve this raw block file by hash (need not connect)")
    ap.add_argument("--chain-file", help="serve a chain file directory (python3 -m "
                    "tests.simnode.chainfile generates one) from disk, not from memory")
    ap.add_argument("--serve-height", type=int, default=None,
                    help="with --chain-file: connect only this many blocks at start "
                    "(the control command reveal connects more)")
    ap.add_argument("--generate", type=int, default=0, help="generate N blocks on the tip")
    ap.add_argument("--txs-per-block", type=int, default=0)
    ap.add_argument("--block-size", type=int, default=None,
                    help="with --big-blocks: size in bytes of each big (streamed) block")
    ap.add_argument("--big-blocks", type=int, default=0,
                    help="after --generate, add this many streamed blocks of --block-size")
    ap.add_argument("--cache-dir", help="write big generated blocks here and serve with sendfile")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force-extmsg", action="store_true", help="send every block with the extmsg header")
    ap.add_argument("--ping-interval", type=float, default=120)
    ap.add_argument("--handshake-timeout", type=float, default=60,
                    help="disconnect peers that have not sent verack after this many s (0 = never)")
    ap.add_argument("--ignore-getheaders", action="store_true",
                    help="silently ignore getheaders (the real node's IBD behaviour)")
    ap.add_argument("--whitelist", action="store_true",
                    help="treat every peer as whitelisted (-whitelist=127.0.0.1): answer `mempool`, "
                         "no disconnect on ban score")
    ap.add_argument("--reject-mempool-request", action="store_true",
                    help="no-op: disconnecting non-whitelisted peers that send `mempool` is the default")
    ap.add_argument("--genesis-height", type=int, default=10000,
                    help="Genesis activation height (regtest: 10000)")
    ap.add_argument("--feefilter", type=int, default=50, help="sat/kB sent in feefilter")
    ap.add_argument("--relay-expiry", type=float, default=RELAY_EXPIRY,
                    help="seconds a getdata for an announced tx is answered (relay memory; "
                         "the node's 15 min by default)")
    ap.add_argument("--control", type=int, default=None,
                    help="JSON-lines control port on 127.0.0.1 (0 = ephemeral)")
    ap.add_argument("--no-stdin", action="store_true", help="do not read commands from stdin")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    network = "mainnet" if a.mainnet else "testnet" if a.testnet else "stn" if a.stn else "regtest"

    def log(s):
        if not a.quiet:
            print(time.strftime("%H:%M:%S ") + s, flush=True)

    t0 = time.time()
    node = SimNode(network=network, seed=a.seed, host=a.host, port=a.port,
                   cache_dir=a.cache_dir, ping_interval=a.ping_interval,
                   force_extmsg=a.force_extmsg, log=log,
                   ignore_getheaders=a.ignore_getheaders, feefilter=a.feefilter,
                   handshake_timeout=a.handshake_timeout,
                   whitelist=a.whitelist, genesis_height=a.genesis_height,
                   chain_file=a.chain_file, serve_height=a.serve_height,
                   relay_expiry=a.relay_expiry)
    for d in a.chain:
        n = node.chain.load_dir(d)
        log("loaded %d blocks from %s" % (n, d))
    if a.generate:
        if a.block_size and not a.big_blocks:
            node.generate(a.generate, txs_per_block=a.txs_per_block, block_size=a.block_size)
        else:
            node.generate(a.generate, txs_per_block=a.txs_per_block)
    if a.big_blocks and node.chain.height == 0:
        node.generate(1)            # something for the big block's first tx to spend
        log("generated 1 block first: the big block's first tx spends its coinbase")
    for i in range(a.big_blocks):
        b = node.generate(1, txs_per_block=a.txs_per_block, block_size=a.block_size or 100_000_000)[0]
        log("big block %d at height %d: %s, %d bytes, %d txs" % (i, b.height, b.hash_hex, b.size, b.ntx))
    for f in a.block_file:
        b = node.add_extra_block(f)
        log("serving extra block %s (%d bytes) from %s" % (b.hash_hex, b.size, f))
    log("chain ready in %.1fs: height %d tip %s" % (time.time() - t0, node.chain.height, node.chain.tip.hash_hex))
    node.start()
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % node.port)
        os.replace(a.port_file + ".tmp", a.port_file)
    print("SIMNODE_PORT=%d" % node.port, flush=True)
    stop = threading.Event()

    if a.control is not None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", a.control))
        srv.listen(4)
        print("SIMNODE_CONTROL=%d" % srv.getsockname()[1], flush=True)

        def serve_ctl(s):
            f = s.makefile("rwb")
            for line in f:
                r = handle_line(node, line.decode())
                if r is None:
                    continue
                f.write((json.dumps(r) + "\n").encode())
                f.flush()
                if r.get("stopping"):
                    stop.set()
            s.close()

        def accept_ctl():
            while not stop.is_set():
                try:
                    s, _ = srv.accept()
                except OSError:
                    return
                threading.Thread(target=serve_ctl, args=(s,), daemon=True).start()
        threading.Thread(target=accept_ctl, daemon=True).start()

    if not a.no_stdin:
        def read_stdin():
            for line in sys.stdin:
                r = handle_line(node, line)
                if r is not None:
                    print(json.dumps(r), flush=True)
                    if r.get("stopping"):
                        break
            else:
                return          # EOF: keep running until signalled
            stop.set()
        threading.Thread(target=read_stdin, daemon=True).start()
    try:
        while not stop.is_set():
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    node.stop()
    log("stopped")


if __name__ == "__main__":
    main()
