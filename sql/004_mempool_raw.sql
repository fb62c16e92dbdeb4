-- 004_mempool_raw.sql - the raw bytes of relayed mempool transactions.
--
-- Why: `conduit-cli tx` and GET /v1/tx/<txid> could find a mempool tx but
-- not return it (its bytes were stored nowhere). A wallet that just
-- broadcast a tx, or an application reacting to a cd_key notification with
-- "state": "mempool", wants the tx itself.
--
-- The bytes live in the mempool_tx row, so everything that already ends a
-- mempool row (confirmation, conflict, eviction by the cap, the TRUNCATE at
-- conduitd's start) ends them too: no second store to keep consistent.
--   raw   relayed txs (source 0): the tx as the peer sent it (its sha256d is
--         tx_hash; readers check that).
--         NULL for txs a reorg returned (source 1): their bytes are still in
--         the LMDB block store, in the block that left the best chain, at the
--         tx_offset of their `transactions` row (cd_lookup reads them there).
-- STORAGE EXTERNAL: tx bytes hardly compress, so large values go out of
-- line without a pglz attempt on the insert path.

ALTER TABLE mempool_tx ADD COLUMN raw bytea;
ALTER TABLE mempool_tx ALTER COLUMN raw SET STORAGE EXTERNAL;

-- cd_mempool_add_batch with the txs' bytes: `raws` is the n txs' bytes
-- concatenated in batch order, split by `sizes` (one bytea parameter keeps
-- the call set-based). Everything else as in 002: a tx is skipped when it
-- is known (mempool or best chain) or conflicting (first seen wins); at most
-- `cap` rows are kept, oldest first out. Returns accepted/known/conflicting.
CREATE FUNCTION cd_mempool_add_batch(txids bytea, sizes integer[], raws bytea, ins bytea,
                                     in_tx integer[], pushes bytea, push_tx integer[],
                                     push_idx integer[], push_flags integer[], cap bigint,
                                     OUT accepted integer, OUT known integer,
                                     OUT conflicting integer)
    LANGUAGE plpgsql AS $$
DECLARE
    n integer := length(txids) / 32;
    ok integer[];
    s bigint;
BEGIN
    IF raws IS NOT NULL AND length(raws) <> (SELECT coalesce(sum(z), 0) FROM unnest(sizes) AS z) THEN
        RAISE EXCEPTION 'cd_mempool_add_batch: raws holds % bytes, sizes sum to %',
            length(raws), (SELECT coalesce(sum(z), 0) FROM unnest(sizes) AS z);
    END IF;
    WITH t AS (
        SELECT k, substr(txids, k * 32 + 1, 32) AS h FROM generate_series(0, n - 1) AS k
    ), i AS (
        SELECT j, in_tx[j + 1] AS tx, substr(ins, j * 36 + 1, 32) AS ph,
               get_byte(ins, j * 36 + 32) | (get_byte(ins, j * 36 + 33) << 8)
               | (get_byte(ins, j * 36 + 34) << 16) | (get_byte(ins, j * 36 + 35) << 24) AS pi
        FROM generate_series(0, length(ins) / 36 - 1) AS j
    ), kn AS (
        SELECT t.k FROM t
        WHERE EXISTS (SELECT 1 FROM mempool_tx m WHERE m.tx_hash = t.h)
           OR EXISTS (SELECT 1 FROM transactions x JOIN blocks b ON b.block_id = x.block_id
                      WHERE x.tx_hash = t.h AND b.on_best_chain)
           OR EXISTS (SELECT 1 FROM t t2 WHERE t2.h = t.h AND t2.k < t.k)
    ), cf AS (
        SELECT DISTINCT i.tx AS k FROM i
        WHERE EXISTS (SELECT 1 FROM inputs x JOIN blocks b ON b.block_id = x.block_id
                      WHERE x.prev_hash = i.ph AND x.prev_idx = i.pi AND b.on_best_chain)
           OR EXISTS (SELECT 1 FROM mempool_inputs m WHERE m.prev_hash = i.ph AND m.prev_idx = i.pi)
           OR EXISTS (SELECT 1 FROM i i2 WHERE i2.ph = i.ph AND i2.pi = i.pi AND i2.tx < i.tx)
    )
    SELECT array_agg(t.k ORDER BY t.k) FILTER (WHERE t.k NOT IN (SELECT k FROM kn)
                                                 AND t.k NOT IN (SELECT k FROM cf)),
           count(*) FILTER (WHERE t.k IN (SELECT k FROM kn)),
           count(*) FILTER (WHERE t.k NOT IN (SELECT k FROM kn) AND t.k IN (SELECT k FROM cf))
      INTO ok, known, conflicting
    FROM t;
    accepted := coalesce(array_length(ok, 1), 0);
    IF accepted = 0 THEN
        RETURN;
    END IF;
    -- byte offset of tx k in raws: the sizes before it (a running sum over
    -- the whole batch, rejected txs included)
    INSERT INTO mempool_tx (tx_hash, tx_size, raw)
    SELECT substr(txids, o.k * 32 + 1, 32), sizes[o.k + 1],
           CASE WHEN raws IS NULL THEN NULL ELSE substr(raws, (o.off + 1)::integer, sizes[o.k + 1]) END
    FROM (SELECT k, coalesce(sum(sizes[k + 1]) OVER (ORDER BY k ROWS BETWEEN UNBOUNDED PRECEDING
                                                      AND 1 PRECEDING), 0) AS off
          FROM generate_series(0, n - 1) AS k) o
    WHERE o.k = ANY (ok)
    ORDER BY o.k;
    INSERT INTO mempool_inputs (tx_hash, in_idx, prev_idx, prev_hash)
    SELECT substr(txids, tx * 32 + 1, 32), (row_number() OVER (PARTITION BY tx ORDER BY j)) - 1,
           get_byte(ins, j * 36 + 32) | (get_byte(ins, j * 36 + 33) << 8)
           | (get_byte(ins, j * 36 + 34) << 16) | (get_byte(ins, j * 36 + 35) << 24),
           substr(ins, j * 36 + 1, 32)
    FROM (SELECT j, in_tx[j + 1] AS tx FROM generate_series(0, length(ins) / 36 - 1) AS j) x
    WHERE tx = ANY (ok);
    INSERT INTO mempool_pushdata (tx_hash, idx, flags, push_hash)
    SELECT substr(txids, push_tx[j + 1] * 32 + 1, 32), push_idx[j + 1], push_flags[j + 1],
           substr(pushes, j * 32 + 1, 32)
    FROM generate_series(0, length(pushes) / 32 - 1) AS j
    WHERE push_tx[j + 1] = ANY (ok);
    IF cap > 0 THEN
        SELECT max(seq) INTO s FROM mempool_tx;
        DELETE FROM mempool_tx WHERE seq <= s - cap;
    END IF;
END
$$;

-- The 002 signature (no bytes) stays for callers that have none (scripts,
-- tests): the same function with raws NULL, so there is one body to keep.
CREATE OR REPLACE FUNCTION cd_mempool_add_batch(txids bytea, sizes integer[], ins bytea,
                                                in_tx integer[], pushes bytea,
                                                push_tx integer[], push_idx integer[],
                                                push_flags integer[], cap bigint,
                                                OUT accepted integer, OUT known integer,
                                                OUT conflicting integer)
    LANGUAGE sql AS $$
    SELECT * FROM cd_mempool_add_batch(txids, sizes, NULL::bytea, ins, in_tx, pushes, push_tx,
                                       push_idx, push_flags, cap)
$$;
