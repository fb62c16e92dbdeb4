#!/usr/bin/python3
"""Draws the index rate over time from bench/index/bench_catchup.py --samples.

usage: /usr/bin/python3 bench/plot.py SAMPLES.csv OUT.png [--window SECONDS]
       /usr/bin/python3 bench/plot.py --growth OUT.png LABEL=SAMPLES.csv[:MODE] ...
                                      [--txs-window N]

Top panel: transactions indexed per second (fully indexed blocks, over a
sliding window, default 0.5 s), one line per mode. Bottom panel: indexed
transactions so far; the shaded stretch of each line is the final build of
the secondary indexes (tip reached, indexes not all present yet). Needs
gnuplot (Debian's gnuplot-nox: ./dev deps).

--growth: the cost against the size of the index, one line per run (e.g.
partitions off and on): the samples cut into windows of --txs-window indexed
txs (default 1M), and for each window the marginal rate (its txs / its
seconds), PostgreSQL CPU per 1000 txs, bytes PostgreSQL read from storage
per tx, and the key-rows step's lag at the window's end (txs indexed but not
yet derived). Prints the windows as a Markdown table and draws three panels
against txs indexed. Needs the samples' later columns (bench_catchup.py since
issue 18's memory-cap runs).
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
            # later columns (pg_cpu_s, pg_read_b, key_txs) are read_growth()'s
            mode, t, h, n, i = line.split(",")[:5]
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


def read_growth(path, mode=None):
    """[(t, txs, pg_cpu_s, pg_read_b, key_txs)] of one mode of a samples file
    (the last mode in the file when mode is None)."""
    runs = collections.OrderedDict()
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("mode,"):
            continue
        f = line.split(",")
        if len(f) < 8:
            sys.exit("plot.py: %s has no pg_cpu_s/pg_read_b/key_txs columns" % path)
        runs.setdefault(f[0], []).append((float(f[1]), int(f[3]), float(f[5]), int(f[6]),
                                          int(f[7])))
    if not runs:
        sys.exit("plot.py: no samples in %s" % path)
    return runs[mode] if mode else list(runs.values())[-1]


def growth_windows(samples, step):
    """One dict per window of `step` indexed txs: its end (txs), tx/s, PG CPU
    ms per 1000 tx, PG bytes read per tx, key-rows lag (txs) at its end."""
    out, prev = [], samples[0]
    edge = step
    for s in samples:
        if s[1] >= edge:
            dt, dn = s[0] - prev[0], s[1] - prev[1]
            if dt > 0 and dn > 0:
                out.append({"from": prev[1], "txs": s[1], "rate": dn / dt,
                            "pg_ms": (s[2] - prev[2]) * 1e6 / dn,
                            "read_b": (s[3] - prev[3]) / dn, "key_lag": s[1] - s[4],
                            "t": s[0]})
            prev = s
            while edge <= s[1]:
                edge += step
    last = samples[-1]
    # the part window at the tip, unless too short to mean anything
    if last[1] - prev[1] >= step / 4 and last[0] > prev[0]:
        dn = last[1] - prev[1]
        out.append({"from": prev[1], "txs": last[1], "rate": dn / (last[0] - prev[0]),
                    "pg_ms": (last[2] - prev[2]) * 1e6 / dn, "read_b": (last[3] - prev[3]) / dn,
                    "key_lag": last[1] - last[4], "t": last[0]})
    return out


def growth_main(argv):
    ap = argparse.ArgumentParser(description="cost against index size (bench/plot.py --growth)")
    ap.add_argument("--growth", metavar="OUT.png", required=True)
    ap.add_argument("--txs-window", type=float, default=1e6)
    ap.add_argument("--title", default="conduitd live mode: marginal cost against index size")
    ap.add_argument("runs", nargs="+", metavar="LABEL=SAMPLES.csv[:MODE]")
    a = ap.parse_args(argv)
    blocks, rate_p, cpu_p, read_p = [], [], [], []
    for k, spec in enumerate(a.runs):
        label, _, path = spec.rpartition("=")  # labels may hold "=" (partition_txs=0)
        mode = None
        if ":" in path:
            path, mode = path.rsplit(":", 1)
        samples = read_growth(path, mode)
        keys_on = any(x[4] > 0 for x in samples)  # else the key-rows step did not run
        ws = growth_windows(samples, int(a.txs_window))
        print("\n%s (%s)\n" % (label, path))
        print("| txs indexed (window) | tx/s | PG CPU ms/1000 tx | PG read B/tx | "
              "key-rows lag at end (txs) | s since start |")
        print("|---|---|---|---|---|---|")
        for w in ws:
            print("| %.2fM → %.2fM | %.0f | %.1f | %.0f | %s | %.0f |" % (
                w["from"] / 1e6, w["txs"] / 1e6, w["rate"], w["pg_ms"], w["read_b"],
                w["key_lag"] if keys_on else "off", w["t"]))
        # each window drawn at its middle
        blocks.append("$g%d << EOD\n%s\nEOD" % (k, "\n".join(
            "%.4f %.3f %.2f %.1f" % ((w["from"] + w["txs"]) / 2e6, w["rate"] / 1e3, w["pg_ms"],
                                     w["read_b"]) for w in ws)))
        t = label.replace("'", "''")
        rate_p.append("$g%d u 1:2 w lp lw 2 pt 7 lc %d t '%s'" % (k, k + 1, t))
        cpu_p.append("$g%d u 1:3 w lp lw 2 pt 7 lc %d t '%s'" % (k, k + 1, t))
        read_p.append("$g%d u 1:4 w lp lw 2 pt 7 lc %d t '%s'" % (k, k + 1, t))
    script = "\n".join(blocks + [
        "set terminal pngcairo size 960,900 font 'sans,10' noenhanced",
        "set output '%s'" % a.growth.replace("'", "''"),
        "set multiplot layout 3,1 title '%s'" % a.title.replace("'", "''"),
        "set grid",
        "set key top left box opaque",
        "set xlabel 'transactions indexed (M), window of %gM' " % (a.txs_window / 1e6),
        "set yrange [0:*]",
        "set ylabel 'marginal k tx/s'",
        "plot " + ", ".join(rate_p),
        "set ylabel 'PostgreSQL CPU ms / 1000 tx'",
        "plot " + ", ".join(cpu_p),
        "set ylabel 'PostgreSQL bytes read from disk / tx'",
        "plot " + ", ".join(read_p),
        "unset multiplot",
    ]) + "\n"
    r = subprocess.run(["gnuplot"], input=script.encode(), stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit("plot.py: gnuplot failed: %s" % r.stderr.decode(errors="replace"))
    print("\nplot.py: wrote %s" % a.growth)


def main():
    if any(x == "--growth" or x.startswith("--growth=") for x in sys.argv[1:]):
        return growth_main(sys.argv[1:])
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
