#!/usr/bin/python3
"""Draws the index rate over time from bench/index/bench_catchup.py --samples.

usage: /usr/bin/python3 bench/plot.py SAMPLES.csv OUT.png [--window SECONDS]

Top panel: transactions indexed per second (fully indexed blocks, over a
sliding window, default 0.5 s), one line per mode. Bottom panel: indexed
transactions so far; the shaded stretch of each line is the final build of
the secondary indexes (tip reached, indexes not all present yet). Needs
gnuplot (Debian's gnuplot-nox: ./dev deps).
"""
import argparse
import collections
import re
import subprocess
import sys


def read(path):
    """Returns (header dict, {mode: [(t, height, txs, indexes)]}, {mode: summary dict})."""
    meta, runs, summary = {}, collections.OrderedDict(), {}
    for line in open(path):
        line = line.strip()
        if line.startswith("#"):
            kv = dict(re.findall(r"(\w+)=(\S+)", line))
            if "mode" in kv:
                summary[kv["mode"]] = kv
            else:
                meta.update(kv)
        elif line and not line.startswith("mode,"):
            mode, t, h, n, i = line.split(",")
            runs.setdefault(mode, []).append((float(t), int(h), int(n), int(i)))
    return meta, runs, summary


def rates(samples, window):
    """(t, tx/s over the last `window` seconds) for each sample."""
    out, j = [], 0
    for t, _, n, _ in samples:
        while samples[j][0] < t - window:
            j += 1
        t0, n0 = samples[j][0], samples[j][2]
        if t > t0:
            out.append((t, (n - n0) / (t - t0)))
    return out


def gnuplot_script(meta, runs, summary, out_png, window):
    blocks = []
    plots_rate, plots_txs = [], []
    for k, (mode, s) in enumerate(runs.items()):
        blocks.append("$rate%d << EOD\n%s\nEOD" % (
            k, "\n".join("%.3f %.0f" % r for r in rates(s, window))))
        blocks.append("$txs%d << EOD\n%s\nEOD" % (
            k, "\n".join("%.3f %d %d" % (t, n, 1 if (h >= int(meta.get("blocks", h + 1))
                                                        and i < 3) else 0)
                         for t, h, n, i in s)))
        sm = summary.get(mode, {})
        title = mode
        if sm:
            title = "%s: %.0fk tx/s overall (tip at %.1f s, indexes ready at %.1f s)" % (
                mode, int(sm["txs"]) / float(sm["elapsed"]) / 1e3, float(sm["tip_at"]),
                float(sm["elapsed"]))
        plots_rate.append("$rate%d using 1:($2/1000) with lines lw 2 lc %d title '%s'"
                          % (k, k + 1, title))
        plots_txs.append("$txs%d using 1:($2/1000) with lines lw 2 lc %d notitle" % (k, k + 1))
        if any(h >= int(meta.get("blocks", h + 1)) and i < 3 for _, h, _, i in s):
            plots_txs.append("$txs%d using 1:($3 > 0 ? $2/1000 : 1/0) with points pt 7 ps 0.6 "
                             "lc %d title '%s: building secondary indexes'" % (k, k + 1, mode))
    chain = ""
    if "blocks" in meta:
        chain = "%s blocks x %s txs, " % (meta["blocks"], meta.get("txs_per_block", "?"))
    return "\n".join(blocks + [
        "set terminal pngcairo size 960,640 font 'sans,10' noenhanced",
        "set output '%s'" % out_png.replace("'", "''"),
        "set multiplot layout 2,1 title 'conduitd end to end: %sgenerated regtest chain "
        "(bench/index/bench_catchup.py)'" % chain,
        "set grid",
        "set key top right box opaque",
        "set xlabel 'seconds since conduitd started'",
        "set ylabel 'indexed, k tx/s (%.1f s window)'" % window,
        "set yrange [0:*]",
        "set offsets 0, 0, graph 0.3, 0",  # headroom for the key
        "plot " + ", ".join(plots_rate),
        "set ylabel 'indexed transactions (k)'",
        "set key bottom right box opaque",
        "plot " + ", ".join(plots_txs),
        "unset multiplot",
    ]) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("samples")
    ap.add_argument("png")
    ap.add_argument("--window", type=float, default=0.5)
    a = ap.parse_args()
    meta, runs, summary = read(a.samples)
    if not runs:
        sys.exit("plot.py: no samples in %s" % a.samples)
    script = gnuplot_script(meta, runs, summary, a.png, a.window)
    r = subprocess.run(["gnuplot"], input=script.encode(), stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit("plot.py: gnuplot failed: %s" % r.stderr.decode(errors="replace"))
    print("plot.py: wrote %s" % a.png)


if __name__ == "__main__":
    main()
