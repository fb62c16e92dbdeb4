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


def growth_csv(path):
    """bench_catchup.py's samples with the growth columns: 1M txs at 20k tx/s
    with 50 ms of PostgreSQL CPU and 100 B read per tx, then 1M at 10k tx/s
    with 80 ms and 400 B; the key-rows step derives 5k tx/s from t = 0."""
    rows = ["# bench_catchup.py blocks=2000 txs_per_block=1000 threshold=10",
            "mode,t_s,height,txs,indexes,pg_cpu_s,pg_read_b,key_txs"]
    t, n, cpu, rd = 0.0, 0, 0.0, 0
    while n < 2000000:
        fast = n < 1000000
        rows.append("live,%.3f,%d,%d,4,%.3f,%d,%d" % (t, n // 1000, n, cpu, rd,
                                                      min(n, int(5000 * t))))
        step = 1000  # one block per sample
        t += step / (20000.0 if fast else 10000.0)
        cpu += step * (0.050 if fast else 0.080) / 1000
        rd += step * (100 if fast else 400)
        n += step
    rows.append("live,%.3f,%d,%d,4,%.3f,%d,%d" % (t, n // 1000, n, cpu, rd, int(5000 * t)))
    rows.append("# mode=live txs=2000000 elapsed=%.3f tip_at=%.3f index_build=0.000" % (t, t))
    path.write_text("\n".join(rows) + "\n")


def test_growth_windows_are_marginal_costs(tmp_path):
    growth_csv(tmp_path / "g.csv")
    ws = plot.growth_windows(plot.read_growth(str(tmp_path / "g.csv")), 1000000)
    assert [w["txs"] for w in ws] == [1000000, 2000000]
    assert ws[0]["rate"] == pytest.approx(20000, rel=0.01)
    assert ws[1]["rate"] == pytest.approx(10000, rel=0.01)
    assert ws[0]["pg_ms"] == pytest.approx(50, rel=0.01)
    assert ws[1]["pg_ms"] == pytest.approx(80, rel=0.01)
    assert ws[0]["read_b"] == pytest.approx(100, rel=0.01)
    assert ws[1]["read_b"] == pytest.approx(400, rel=0.01)
    # at t = 50 s (1M txs) the step has derived 250k; at 150 s, 750k
    assert ws[0]["key_lag"] == pytest.approx(750000, rel=0.01)
    assert ws[1]["key_lag"] == pytest.approx(1250000, rel=0.01)
    # the old reader still reads the first five columns
    _, runs, _ = plot.read(str(tmp_path / "g.csv"))
    assert runs["live"][-1][2] == 2000000


def test_growth_chart_is_a_png(tmp_path):
    if shutil.which("gnuplot") is None:
        pytest.skip("gnuplot not installed (./dev deps installs gnuplot-nox)")
    growth_csv(tmp_path / "g.csv")
    png = tmp_path / "growth.png"
    r = subprocess.run(["/usr/bin/python3", PLOT, "--growth", str(png),
                        "off=%s" % (tmp_path / "g.csv"), "on=%s:live" % (tmp_path / "g.csv")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert r.returncode == 0, r.stdout
    assert "| 1.00M → 2.00M | 10000 | 80.0 | 400 |" in r.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (960, 900)
