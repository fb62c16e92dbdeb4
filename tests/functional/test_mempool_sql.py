"""The mempool mirror's SQL (sql/006_mempool_mirror.sql) in isolation, in a real
PostgreSQL with hand-made rows (no daemon): the per-tx facts and size
counters of cd_mempool_add_txs, the size limits (oldest first, descendants
along), expiry, pruning of the eviction records, reconciliation with a
snapshot (grace window, missing txids), and the cost of a reconciliation
with 100,000 mempool rows (printed: docs/PERFORMANCE.md-style figure).
"""

import os
import time

from test_reorg_sql import ROOT, run

SETUP = r"""
CREATE FUNCTION h(t text) RETURNS bytea LANGUAGE sql AS $$ SELECT sha256(t::bytea) $$;
CREATE FUNCTION op(t text) RETURNS bytea LANGUAGE sql AS $$ SELECT h(t) || '\x00000000'::bytea $$;
"""

NAMES = "array['A','B','C','D','E','F','G']"


def pool(pg):
    return set(r[0] for r in run(pg, "SELECT t FROM mempool_tx m, unnest(%s) t "
                                     "WHERE h(t) = m.tx_hash;" % NAMES))


def reasons(pg):
    return dict((r[0], (r[1], r[2])) for r in run(
        pg, "SELECT t, e.reason, coalesce(v, '') FROM mempool_evicted e "
            "JOIN unnest(%s) t ON h(t) = e.tx_hash "
            "LEFT JOIN unnest(%s) v ON h(v) = e.via;" % (NAMES, NAMES)))


def add(pg, names, sizes, spends, locks, nonfinal, max_txs=0, max_bytes=0):
    """cd_mempool_add_txs for txs `names` (one input each: spends[i])."""
    q = ("SELECT accepted, known, conflicting, limited FROM cd_mempool_add_txs("
         "%s, '{%s}', NULL, %s, '{%s}', ''::bytea, '{}', '{}', '{}', '{%s}', '{%s}', %d, %d);" % (
             " || ".join("h('%s')" % n for n in names), ",".join(map(str, sizes)),
             " || ".join("op('%s')" % s for s in spends), ",".join(map(str, range(len(names)))),
             ",".join(map(str, locks)), ",".join("t" if x else "f" for x in nonfinal),
             max_txs, max_bytes))
    return run(pg, q)[0]


def test_mempool_mirror_sql(pg):
    pg.psql("CREATE DATABASE r")
    for f in sorted(os.listdir(os.path.join(ROOT, "sql"))):
        run(pg, open(os.path.join(ROOT, "sql", f)).read())
    run(pg, SETUP)

    # facts and counters; B spends A (a descendant)
    assert add(pg, "ABC", [100, 200, 300], ["o1", "A", "o2"], [0, 5, 0],
               [False, True, False]) == ("3", "0", "0", "0")
    assert run(pg, "SELECT n, bytes FROM mempool_size;") == [("3", "600")]
    assert run(pg, "SELECT lock_time, seq_nonfinal FROM mempool_tx WHERE tx_hash = h('B');") == [
        ("5", "t")]

    # the byte limit: D (400) brings 1000 bytes, 700 allowed: the oldest go, A with B
    assert add(pg, "D", [400], ["o3"], [0], [False], 0, 700) == ("1", "0", "0", "2")
    assert pool(pg) == {"C", "D"}
    assert reasons(pg) == {"A": ("size-limit", ""), "B": ("size-limit", "")}
    assert run(pg, "SELECT n, bytes FROM mempool_size;") == [("2", "700")]
    # the count limit
    assert add(pg, "E", [10], ["o4"], [0], [False], 2, 0) == ("1", "0", "0", "1")
    assert pool(pg) == {"D", "E"} and reasons(pg)["C"] == ("size-limit", "")

    # expiry (-mempoolexpiry): D is older than 336 h, F spends it
    add(pg, "F", [10], ["D"], [0], [False])
    run(pg, "UPDATE mempool_tx SET seen_at = now() - interval '337 hours' WHERE tx_hash = h('D');")
    assert run(pg, "SELECT * FROM cd_mempool_housekeep(336 * 3600, 0, 0, 86400);") == [
        ("2", "0", "0")]  # D and its descendant F
    assert pool(pg) == {"E"}
    assert reasons(pg)["D"] == ("expired", "") and reasons(pg)["F"] == ("expired", "D")

    # reconciliation: the snapshot has F' (G) the tables lack; E is absent from it but
    # younger than the cutoff (in flight): kept; once older: evicted
    r = run(pg, "SELECT evicted, encode(missing, 'hex') = encode(h('G'), 'hex') FROM "
                "cd_mempool_reconcile(h('G'), now() - interval '10 minutes');")
    assert r == [("0", "t")] and pool(pg) == {"E"}
    run(pg, "UPDATE mempool_tx SET seen_at = now() - interval '1 hour';")
    r = run(pg, "SELECT evicted, length(missing) FROM "
                "cd_mempool_reconcile(h('G'), now() - interval '10 minutes');")
    assert r == [("1", "32")] and pool(pg) == set()
    assert reasons(pg)["E"] == ("not-in-node-mempool", "")
    assert run(pg, "SELECT n, bytes FROM mempool_size;") == [("0", "0")]

    # the eviction records are pruned after mempool_evicted_keep
    assert run(pg, "SELECT pruned > 0 FROM cd_mempool_housekeep(3600, 0, 0, 0);") == [("t",)]
    assert run(pg, "SELECT count(*) FROM mempool_evicted;") == [("0",)]

    # cost: 100,000 rows, a snapshot of all but 1,000 of them (the rest older than the cutoff)
    n = 100_000
    run(pg, "INSERT INTO mempool_tx (tx_hash, tx_size, seen_at) SELECT h('m' || k), 250, "
            "now() - interval '1 hour' FROM generate_series(1, %d) k;"
            "INSERT INTO mempool_inputs SELECT h('m' || k), 0, 0, h('p' || k) "
            "FROM generate_series(1, %d) k; ANALYZE mempool_tx; ANALYZE mempool_inputs;" % (n, n))
    run(pg, "CREATE TABLE snap AS SELECT string_agg(h('m' || k), ''::bytea ORDER BY k) s "
            "FROM generate_series(1001, %d) k;" % n)
    t0 = time.monotonic()
    r = run(pg, "SELECT evicted, length(missing) FROM snap, "
                "cd_mempool_reconcile(snap.s, now() - interval '1 minute');")
    dt = time.monotonic() - t0
    assert r == [("1000", "0")]
    print("reconcile: %d mempool rows, snapshot of %d, 1000 evicted: %.0f ms"
          % (n, n - 1000, dt * 1e3))
