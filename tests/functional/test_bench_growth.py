"""bench/index/bench_growth.py's sampling of random rows for its lookups: a
few pages of the table, also when the table is partitioned (sql/017)."""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "index"))  # bench_growth imports bench_catchup
_spec = importlib.util.spec_from_file_location(
    "cd_bench_growth", os.path.join(ROOT, "bench", "index", "bench_growth.py"))
bench_growth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_growth)


def test_sample_reads_a_few_pages_of_a_partitioned_table(pg, monkeypatch):
    for k, v in pg.env().items():
        monkeypatch.setenv(k, v)
    pg.psql("CREATE TABLE t (k bigint NOT NULL, pad text) PARTITION BY RANGE (k);"
            "CREATE TABLE t_p0 PARTITION OF t FOR VALUES FROM (MINVALUE) TO (100000);"
            "CREATE TABLE t_p1 PARTITION OF t FOR VALUES FROM (100000) TO (MAXVALUE);"
            "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 200000) g;")
    # no ANALYZE: relpages is 0 (before, the sample read 100 % of the table)
    pct = bench_growth.sample_pct("postgres", "t", 100)
    pages = int(pg.psql("SELECT sum(pg_relation_size(relid)) / 8192 "
                        "FROM pg_partition_tree('t')").strip().split(".")[0])
    assert pages > 2000
    assert pct == 100.0 * 50 / pages
    rows = bench_growth.sample("postgres", "t", "k", 100)
    assert 0 < len(rows) <= 100
