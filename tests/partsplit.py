"""partsplit.py - split tables of a conduitd database into many equal
block_id ranges: the layout issue 18's plan tests and benchmarks probe
lookups against (tests/functional/test_lookup_plans.py,
bench/index/bench_partition_plans.py --chain).

Why not the daemon's own roll (sql/017, cd_partition_roll): it closes the
open tip at one above the highest registered block_id, so it partitions rows
only as they arrive; these programs cut an index already loaded into 10-200
ranges.

Works on both layouts: a plain table (before sql/017) and a partitioned one
(sql/017), whose partitions' own secondary indexes become the new
partitions' (each re-made on the new table, as a partitioned index).
"""
import re


def split_sql(query, tables, bounds, suffix="lp"):
    """SQL (one transaction, then ANALYZE) that converts each of `tables`
    into range partitions on block_id cut at `bounds` (ascending block_ids;
    the first partition from MINVALUE, the last to MAXVALUE), named
    <table>_<suffix><k>, rows, keys and indexes kept, and re-creates the
    views that read the tables (a view holds its table's OID).
    query(sql) -> psql's unaligned, tuples-only output."""
    oids = ",".join("'%s'::regclass" % t for t in tables)
    views = query("SELECT DISTINCT r.ev_class::regclass::text FROM pg_depend d "
                  "JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass "
                  "AND d.objid = r.oid WHERE d.refclassid = 'pg_class'::regclass "
                  "AND d.refobjid IN (%s);" % oids).split()
    defs = [(v, query("SELECT pg_get_viewdef('%s'::regclass);" % v).strip().rstrip(";"))
            for v in views]
    cuts = ["MINVALUE"] + [str(b) for b in bounds] + ["MAXVALUE"]
    s = ["BEGIN"]
    for t in tables:
        # the table's own indexes (primary key, BRIN: partitioned under
        # sql/017) and its partitions' (sql/017's secondary indexes are per
        # partition)
        idx = [line.split("|") for line in query(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid), coalesce(k.conname, ''), "
            "coalesce(pg_get_constraintdef(k.oid), ''), i.indrelid::regclass::text "
            "FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid "
            "WHERE i.indrelid = '%s'::regclass OR (i.indrelid IN (SELECT inhrelid "
            "FROM pg_inherits WHERE inhparent = '%s'::regclass) AND NOT EXISTS "
            "(SELECT 1 FROM pg_inherits x WHERE x.inhrelid = i.indexrelid)) "
            "ORDER BY 1;" % (t, t)).splitlines() if line]
        s.append("ALTER TABLE %s RENAME TO %s_old" % (t, t))
        for name, _, con, _, rel in idx:
            if rel != t:
                continue
            if con:
                s.append("ALTER TABLE %s_old RENAME CONSTRAINT %s TO %s_old" % (t, con, con))
            else:
                s.append("ALTER INDEX %s RENAME TO %s_old" % (name, name))
        s.append("CREATE TABLE %s (LIKE %s_old INCLUDING DEFAULTS) PARTITION BY RANGE (block_id)"
                 % (t, t))
        for k in range(len(cuts) - 1):
            s.append("CREATE TABLE %s_%s%d PARTITION OF %s FOR VALUES FROM (%s) TO (%s)"
                     % (t, suffix, k, t, cuts[k], cuts[k + 1]))
        s.append("INSERT INTO %s SELECT * FROM %s_old" % (t, t))
        for name, defn, con, cdef, rel in idx:
            if con:
                s.append("ALTER TABLE %s ADD CONSTRAINT %s %s" % (t, con, cdef))
            elif rel != t:
                # a partition's index, e.g. "CREATE INDEX transactions_p0_hash_idx
                # ON public.transactions_p0 USING hash (tx_hash)": the same on
                # the new table, under a name of its own
                s.append(re.sub(r"^CREATE INDEX (\S+) ON (?:public\.)?\S+ ",
                                "CREATE INDEX %s_%s ON %s " % (name, suffix, t), defn))
            else:
                s.append(defn)
    for v, d in defs:
        s.append("CREATE OR REPLACE VIEW %s AS %s" % (v, d))
    for t in tables:
        s.append("DROP TABLE %s_old" % t)
    s.append("COMMIT")
    s.append("ANALYZE")
    return ";\n".join(s) + ";\n"
