"""Chains on files: generate a large regtest chain once, serve it many times
without holding it in memory.

A chain file directory holds:

    blocks.dat   the raw blocks (header + tx count + txs), concatenated
    index.dat    one 100-byte record per block, height 1 upwards:
                 header (80) | offset in blocks.dat (u64 LE) |
                 size (u64 LE) | tx count (u32 LE)
    meta.json    written last (atomic rename): seed, txs_per_block, blocks,
                 txs, bytes, tip hash; a directory without it is an
                 interrupted generation and is refused

Generation uses the simulator's own generator (Chain.build_block: P2PKH /
P2PK / multisig / P2SH spends of earlier outputs with dummy signatures of
real length, 25 % with an OP_RETURN data carrier), so inputs, outputs and
pushdata are real; each block's body is written out and dropped from
memory at once. Only the UTXO set stays in memory while generating; with
max_utxo it is kept bounded (3-input txs while it is above the bound) so a
100M-tx chain can be generated in a few GB.

Serving (SimNode(chain_file=DIR) / --chain-file DIR): the 100-byte records
become file-backed Blocks (sendfile from blocks.dat at their offset); the
blocks are not read until a peer asks for one. `serve_height` connects only
the first blocks; `reveal(height)` connects more later and announces them,
so a benchmark can let a daemon reach a size, then measure the next window
of blocks as they "arrive". Such blocks have no undo data and the node has
no UTXO set for them: no reorgs below the file tip, no mempool txs spending
their outputs (both are for the in-memory generator).
"""
import json
import os
import struct
import time

from .chain import Block
from .protocol import hexh

RECORD = struct.Struct("<80sQQI")      # 100 bytes


def generate(path, blocks, txs_per_block, seed=11, max_utxo=2_000_000, log=None,
             max_txs=None, keys=1_000_000):
    """Generate `blocks` blocks of `txs_per_block` generated txs (+ coinbase)
    into directory `path` (created; must not hold a finished chain).
    Stops early once max_txs txs are written. Returns the meta dict."""
    from .chain import Chain
    os.makedirs(path, exist_ok=True)
    if os.path.exists(os.path.join(path, "meta.json")):
        raise FileExistsError("%s already holds a chain" % path)
    chain = Chain(network="regtest", seed=seed)
    chain.max_utxo = max_utxo
    # 90 % of outputs to one of `keys` keys, 10 % to the wallet's 64 (hot
    # keys with long histories: the history-page benchmark uses them)
    chain.wallet.fake_keys = keys
    t0 = time.time()
    ntx = nbytes = 0
    with open(os.path.join(path, "blocks.dat"), "wb") as bf, \
            open(os.path.join(path, "index.dat"), "wb") as xf:
        for i in range(blocks):
            b = chain.build_block(txs_per_block)
            off = bf.tell()
            bf.write(b.data)
            xf.write(RECORD.pack(b.header, off, b.size, b.ntx))
            ntx += b.ntx
            nbytes += b.size
            # drop the body and the undo data: only the UTXO set and the
            # headers stay in memory
            b.data = None
            b.kind = "file"
            b.undo = None
            b.unsigned = None
            if log and (i + 1) % 500 == 0:
                log("generated %d blocks, %d txs, %.1f GB, %.0f tx/s, utxo %d"
                    % (i + 1, ntx, nbytes / 1e9, ntx / (time.time() - t0), len(chain.utxo)))
            if max_txs and ntx >= max_txs:
                break
        bf.flush()
        os.fsync(bf.fileno())
        xf.flush()
        os.fsync(xf.fileno())
    meta = {"seed": seed, "txs_per_block": txs_per_block, "keys": keys,
            "hot_keys": [h.hex() for _, h in chain.wallet.keys], "blocks": chain.height,
            "txs": ntx, "bytes": nbytes, "tip": chain.tip.hash_hex,
            "generated_s": round(time.time() - t0, 1)}
    tmp = os.path.join(path, "meta.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(path, "meta.json"))
    return meta


def read_meta(path):
    """The meta dict of a finished chain directory (FileNotFoundError if the
    generation did not finish)."""
    with open(os.path.join(path, "meta.json")) as f:
        return json.load(f)


def records(path):
    """Yield (height, header, offset, size, ntx) for every block in the file."""
    with open(os.path.join(path, "index.dat"), "rb") as f:
        h = 1
        while True:
            r = f.read(RECORD.size)
            if len(r) < RECORD.size:
                if r:
                    raise ValueError("%s/index.dat: truncated record" % path)
                return
            header, off, size, ntx = RECORD.unpack(r)
            yield h, header, off, size, ntx
            h += 1


def cumulative_txs(path):
    """[txs in blocks 0..h] for every height h (genesis counts 1)."""
    out = [1]
    for _, _, _, _, ntx in records(path):
        out.append(out[-1] + ntx)
    return out


def load(chain, path):
    """File-backed Blocks for every block of the chain file, in height order
    (not connected: see SimNode.reveal). The chain must be at its genesis."""
    read_meta(path)                        # refuse an unfinished generation
    if chain.height != 0:
        raise ValueError("a chain file starts at genesis; the chain is at %d" % chain.height)
    data = os.path.join(path, "blocks.dat")
    prev = chain.active[0]
    out = []
    for h, header, off, size, ntx in records(path):
        b = Block(header, h, size, ntx, "file", path=data, offset=off)
        if b.prev != prev:
            raise ValueError("%s: block %d does not extend block %d" % (path, h, h - 1))
        b.undo = ([], [])    # no UTXO set for file blocks (module docstring)
        prev = b.hash
        out.append(b)
    return out


def describe(meta):
    return "%d blocks, %d txs, %.2f GB, tip %s" % (meta["blocks"], meta["txs"],
                                                   meta["bytes"] / 1e9, meta["tip"])


__all__ = ["generate", "load", "read_meta", "records", "cumulative_txs", "describe", "hexh"]


def main(argv=None):
    """python3 -m tests.simnode.chainfile DIR --blocks N --txs-per-block K [--seed S]"""
    import argparse
    ap = argparse.ArgumentParser(prog="python3 -m tests.simnode.chainfile",
                                 description="generate a chain file directory (see the module doc)")
    ap.add_argument("dir")
    ap.add_argument("--blocks", type=int, required=True)
    ap.add_argument("--txs-per-block", type=int, default=1500)
    ap.add_argument("--max-txs", type=int, default=None, help="stop once this many txs are written")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--max-utxo", type=int, default=2_000_000)
    ap.add_argument("--keys", type=int, default=1_000_000,
                    help="90%% of outputs pay one of this many keys, 10%% one of 64 hot keys")
    a = ap.parse_args(argv)
    meta = generate(a.dir, a.blocks, a.txs_per_block, seed=a.seed, max_utxo=a.max_utxo,
                    max_txs=a.max_txs, keys=a.keys,
                    log=lambda s: print(time.strftime("%H:%M:%S ") + s, flush=True))
    print("chain file %s: %s in %.0f s" % (a.dir, describe(meta), meta["generated_s"]), flush=True)


if __name__ == "__main__":
    main()
