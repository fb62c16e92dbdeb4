"""bench/plot.py (./dev bench's chart) turns bench_catchup.py --samples into a
PNG: the rate it plots is the slope of the indexed-transaction count."""
import importlib.util
import os
import shutil
import struct
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLOT = os.path.join(ROOT, "bench", "plot.py")
# by path: bench/ on sys.path would shadow modules with its directories (http, index ...)
_spec = importlib.util.spec_from_file_location("cd_bench_plot", PLOT)
plot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot)


def samples_csv(path):
    """Two modes in bench_catchup.py's format: auto loads at 20k tx/s for 2 s then
    builds its indexes for 1 s; live loads at 10k tx/s for 4 s."""
    rows = ["# bench_catchup.py blocks=40 txs_per_block=1000 threshold=10",
            "mode,t_s,height,txs,indexes"]
    for i in range(31):
        t = i / 10
        n = min(40000, int(20000 * t))
        rows.append("auto,%.3f,%d,%d,%d" % (t, n // 1000, n, 3 if t >= 3 else 0))
    rows.append("# mode=auto txs=40000 elapsed=3.000 tip_at=2.000 index_build=0.900")
    for i in range(41):
        t = i / 10
        rows.append("live,%.3f,%d,%d,3" % (t, int(10000 * t) // 1000, int(10000 * t)))
    rows.append("# mode=live txs=40000 elapsed=4.000 tip_at=4.000 index_build=0.000")
    path.write_text("\n".join(rows) + "\n")


def test_rates_are_the_slope(tmp_path):
    samples_csv(tmp_path / "s.csv")
    meta, runs, summary = plot.read(str(tmp_path / "s.csv"))
    assert meta["blocks"] == "40" and list(runs) == ["auto", "live"]
    assert summary["auto"]["tip_at"] == "2.000"
    auto = dict(plot.rates(runs["auto"], 0.5))
    live = dict(plot.rates(runs["live"], 0.5))
    assert auto[1.0] == pytest.approx(20000, rel=0.01)
    assert auto[2.8] == 0                         # tip reached: index build, no new txs
    assert all(r == pytest.approx(10000, rel=0.01) for r in live.values())


def test_plot_writes_a_png(tmp_path):
    if shutil.which("gnuplot") is None:
        pytest.skip("gnuplot not installed (./dev deps installs gnuplot-nox)")
    samples_csv(tmp_path / "s.csv")
    png = tmp_path / "chart.png"
    r = subprocess.run(["/usr/bin/python3", PLOT, str(tmp_path / "s.csv"), str(png)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert r.returncode == 0, r.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert (width, height) == (960, 640)
