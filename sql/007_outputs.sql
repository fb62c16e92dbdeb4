-- 007_outputs.sql - every output in the index (value, Electrum script hash,
-- small locking scripts), spent-or-not, and the wallet queries: utxos,
-- balance and history of a pushdata key, a script hash or an address
-- (issue 14).
--
-- Design (docs/QUERIES.md has the queries, docs/PERFORMANCE.md the figures):
--  * outputs rows are written like the other per-block rows: by the parsers'
--    COPY, in the unit's one transaction with its marker (exactly once,
--    crash-safe), never updated, removed only by cd_block_purge for a copy
--    that failed its merkle check. Their best-chain membership is
--    blocks.on_best_chain, exactly like transactions/inputs/pushdata.
--  * "spent" is NOT a stored column: an output is spent when an input row
--    of a best-chain block or a mempool_inputs row names its outpoint. So a
--    reorg (on_best_chain flips, disconnected txs return to the mempool with
--    their inputs) and a crash (a unit's rows commit with its marker) change
--    it with no further write, and it can never disagree with the inputs.
--  * script_hash = sha256(locking script), natural byte order (Electrum's
--    "scripthash" is this hash displayed reversed).
--  * script: the locking script itself when it is at most 64 bytes (P2PKH 25,
--    P2SH 23, compressed P2PK 35), else NULL: a long
--    script (data carriers, inscriptions) is read from the tx bytes (LMDB
--    block store, or mempool_tx.raw) by conduit-cli / the HTTP API. The
--    threshold keeps the common scripts one index-free read away while a
--    100 kB data output does not double the table (docs/PERFORMANCE.md).
--  * mempool_outputs mirrors outputs for mempool txs (keyed by tx_hash),
--    filled by cd_mempool_add_txs_outputs (relay) and, for txs a reorg
--    returned, from the block's rows (trigger below); rows go with their
--    mempool_tx row (statement trigger, like inputs/pushdata).

CREATE TABLE outputs (
    block_id    bigint  NOT NULL,
    tx_pos      integer NOT NULL,
    idx         integer NOT NULL,   -- output index (vout)
    value       bigint  NOT NULL,   -- satoshis
    script_hash bytea   NOT NULL,   -- sha256(locking script), natural order
    script      bytea               -- the locking script if <= 64 bytes, else NULL
);
CREATE INDEX outputs_script_hash_idx ON outputs (script_hash);
CREATE INDEX outputs_block_brin ON outputs USING brin (block_id);
ALTER TABLE outputs ALTER COLUMN script SET STORAGE PLAIN;

CREATE TABLE mempool_outputs (
    tx_hash     bytea   NOT NULL,   -- mempool_tx (rows go with it)
    idx         integer NOT NULL,
    value       bigint  NOT NULL,
    script_hash bytea   NOT NULL,
    script      bytea,
    PRIMARY KEY (tx_hash, idx)
);
CREATE INDEX mempool_outputs_hash_idx ON mempool_outputs (script_hash);

CREATE FUNCTION cd_mempool_outputs_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM mempool_outputs WHERE tx_hash IN (SELECT tx_hash FROM old_rows);
    RETURN NULL;
END
$$;
CREATE TRIGGER mempool_tx_outputs_cascade AFTER DELETE ON mempool_tx
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cd_mempool_outputs_cascade();

CREATE FUNCTION cd_mempool_outputs_trunc() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE mempool_outputs;
    RETURN NULL;
END
$$;
CREATE TRIGGER mempool_tx_outputs_trunc AFTER TRUNCATE ON mempool_tx
    FOR EACH STATEMENT EXECUTE FUNCTION cd_mempool_outputs_trunc();

-- A block that leaves the best chain: its non-coinbase txs returned to the
-- mempool (cd_block_disconnected, 002/006, in the trigger blocks_best_chain,
-- which fires before this one: triggers fire in name order); their outputs
-- go with them.
CREATE FUNCTION cd_block_outputs_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mempool_outputs (tx_hash, idx, value, script_hash, script)
    SELECT t.tx_hash, o.idx, o.value, o.script_hash, o.script
    FROM outputs o
    JOIN transactions t ON t.block_id = o.block_id AND t.tx_pos = o.tx_pos
    JOIN mempool_tx m ON m.tx_hash = t.tx_hash
    WHERE o.block_id = NEW.block_id AND o.tx_pos > 0
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER blocks_best_chain_outputs AFTER UPDATE OF on_best_chain ON blocks
    FOR EACH ROW WHEN (OLD.on_best_chain AND NOT NEW.on_best_chain)
    EXECUTE FUNCTION cd_block_outputs_back();

-- 005's purge of a failed copy, with the outputs rows.
CREATE OR REPLACE FUNCTION cd_block_purge(id bigint) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM blocks WHERE block_id = id AND NOT indexed FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM transactions WHERE block_id = id;
    DELETE FROM inputs WHERE block_id = id;
    DELETE FROM pushdata WHERE block_id = id;
    DELETE FROM outputs WHERE block_id = id;
    DELETE FROM indexed_units WHERE block_id = id;
    UPDATE blocks SET n_units = NULL WHERE block_id = id;
    RETURN true;
END
$$;

-- The relay's add (006 cd_mempool_add_txs, unchanged) plus the outputs of
-- the txs it kept, in the same statement (one transaction). Outputs, for m
-- outputs of the batch's txs in order (a tx's outputs consecutive, in vout
-- order): out_tx the 0-based tx, out_val the value, out_hashes m x 32-byte
-- script hashes, out_slen the stored script's length (-1: not stored),
-- out_scripts the stored scripts concatenated.
CREATE FUNCTION cd_mempool_add_txs_outputs(txids bytea, sizes integer[], raws bytea, ins bytea,
                                           in_tx integer[], pushes bytea, push_tx integer[],
                                           push_idx integer[], push_flags integer[],
                                           lock_times bigint[], seq_nonfinal boolean[],
                                           max_txs bigint, max_bytes bigint,
                                           out_tx integer[], out_val bigint[], out_hashes bytea,
                                           out_slen integer[], out_scripts bytea,
                                           OUT accepted integer, OUT known integer,
                                           OUT conflicting integer, OUT limited integer)
    LANGUAGE plpgsql AS $$
BEGIN
    SELECT a.accepted, a.known, a.conflicting, a.limited
      INTO accepted, known, conflicting, limited
    FROM cd_mempool_add_txs(txids, sizes, raws, ins, in_tx, pushes, push_tx, push_idx,
                            push_flags, lock_times, seq_nonfinal, max_txs, max_bytes) a;
    IF accepted = 0 OR coalesce(array_length(out_tx, 1), 0) = 0 THEN
        RETURN;
    END IF;
    IF length(out_hashes) <> 32 * array_length(out_tx, 1) THEN
        RAISE EXCEPTION 'cd_mempool_add_txs_outputs: % outputs, % bytes of hashes',
            array_length(out_tx, 1), length(out_hashes);
    END IF;
    -- only txs this call accepted and the limit kept (a known tx already has
    -- its rows: ON CONFLICT)
    INSERT INTO mempool_outputs (tx_hash, idx, value, script_hash, script)
    SELECT x.h, x.vout, x.v, x.sh,
           CASE WHEN x.sl < 0 THEN NULL ELSE substr(out_scripts, (x.off + 1)::integer, x.sl) END
    FROM (SELECT substr(txids, out_tx[j + 1] * 32 + 1, 32) AS h,
                 (row_number() OVER (PARTITION BY out_tx[j + 1] ORDER BY j)) - 1 AS vout,
                 out_val[j + 1] AS v, substr(out_hashes, j * 32 + 1, 32) AS sh,
                 out_slen[j + 1] AS sl,
                 coalesce(sum(greatest(out_slen[j + 1], 0)) OVER (ORDER BY j ROWS BETWEEN
                          UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS off
          FROM generate_series(0, array_length(out_tx, 1) - 1) AS j) x
    WHERE EXISTS (SELECT 1 FROM mempool_tx m WHERE m.tx_hash = x.h)
    ON CONFLICT DO NOTHING;
END
$$;

-- ---- keys ----

-- The network of the index, from its registered genesis block: 'main' for
-- mainnet's, 'test' for any other (testnet, regtest and stn share their
-- address version bytes); NULL when height 0 is not registered (pass the
-- network to cd_address_script).
CREATE FUNCTION cd_network() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN block_hash = '\x6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000'::bytea
                THEN 'main' ELSE 'test' END
    FROM blocks WHERE height = 0 AND on_best_chain LIMIT 1
$$;

-- The locking script an address stands for: P2PKH (OP_DUP OP_HASH160
-- <20> OP_EQUALVERIFY OP_CHECKSIG) or P2SH (OP_HASH160 <20> OP_EQUAL), with
-- the base58check checksum and the version byte checked against `network`
-- ('main', 'test', 'regtest', 'stn'; NULL: cd_network()). Version bytes
-- (bitcoin-sv src/chainparams.cpp base58Prefixes): main 0 / 5, the test
-- networks 111 / 196. Raises an error naming the reason.
CREATE FUNCTION cd_address_script(address text, network text DEFAULT NULL) RETURNS bytea
    LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    d bytea;
    net text := coalesce(network, cd_network());
    v integer;
    pkh integer;
    sh integer;
BEGIN
    IF address IS NULL OR length(address) < 26 OR length(address) > 35 THEN
        RAISE EXCEPTION 'invalid address "%": length', address;
    END IF;
    d := cd_base58_decode(address);
    IF length(d) <> 25 OR substr(sha256(sha256(substr(d, 1, 21))), 1, 4) <> substr(d, 22, 4) THEN
        RAISE EXCEPTION 'invalid address "%": checksum', address;
    END IF;
    IF net IS NULL THEN
        RAISE EXCEPTION 'address "%": the network is unknown (pass it)', address;
    ELSIF net IN ('main', 'mainnet') THEN
        pkh := 0; sh := 5;
    ELSIF net IN ('test', 'testnet', 'regtest', 'stn') THEN
        pkh := 111; sh := 196;
    ELSE
        RAISE EXCEPTION 'unknown network "%"', net;
    END IF;
    v := get_byte(d, 0);
    IF v = pkh THEN
        RETURN '\x76a914'::bytea || substr(d, 2, 20) || '\x88ac'::bytea;
    ELSIF v = sh THEN
        RETURN '\xa914'::bytea || substr(d, 2, 20) || '\x87'::bytea;
    END IF;
    RAISE EXCEPTION 'address "%": version byte % is not a P2PKH or P2SH address of %',
        address, v, net;
END
$$;

-- 001's cd_address_key (the OUTPUT pushdata key of an address: sha256 of
-- its 20-byte hash) accepted any version byte, so a mainnet, a regtest and a
-- P2SH address with the same hash gave the same rows (issue 14). Now the
-- version byte must be P2PKH or P2SH of the index's network (cd_network());
-- an index without its genesis block registered accepts either network's.
CREATE OR REPLACE FUNCTION cd_address_key(address text) RETURNS bytea
    LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    net text := cd_network();
    s bytea;
BEGIN
    IF net IS NOT NULL THEN
        s := cd_address_script(address, net);
    ELSE
        BEGIN
            s := cd_address_script(address, 'main');
        EXCEPTION WHEN raise_exception THEN
            s := cd_address_script(address, 'test');
        END;
    END IF;
    RETURN sha256(CASE WHEN length(s) = 25 THEN substr(s, 4, 20) ELSE substr(s, 3, 20) END);
END
$$;

-- Electrum script hash (display hex, as Electrum clients send it) -> the
-- stored script_hash (natural order).
CREATE FUNCTION cd_scripthash(display_hex text) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF display_hex !~ '^[0-9a-fA-F]{64}$' THEN
        RAISE EXCEPTION 'invalid script hash "%": 64 hex digits expected', display_hex;
    END IF;
    RETURN cd_rev(decode(display_hex, 'hex'));
END
$$;

-- ---- the outputs of a key ----

-- The outputs of a key (as cd_key_outputs) without their spends.
CREATE FUNCTION cd_key_outputs_only(kind text, key bytea)
    RETURNS TABLE (tx_hash bytea, idx integer, value bigint, height integer, pos bigint,
                   script bytea, block_id bigint)
    LANGUAGE sql STABLE AS $$
    SELECT t.tx_hash, o.idx, o.value, b.height, o.tx_pos::bigint AS pos, o.script, o.block_id
    FROM outputs o
    JOIN blocks b ON b.block_id = o.block_id AND b.on_best_chain
    JOIN transactions t ON t.block_id = o.block_id AND t.tx_pos = o.tx_pos
    WHERE kind = 'script' AND o.script_hash = key
    UNION ALL
    SELECT DISTINCT t.tx_hash, o.idx, o.value, b.height, o.tx_pos::bigint, o.script, o.block_id
    FROM pushdata p
    JOIN blocks b ON b.block_id = p.block_id AND b.on_best_chain
    JOIN outputs o ON o.block_id = p.block_id AND o.tx_pos = p.tx_pos AND o.idx = p.idx
    JOIN transactions t ON t.block_id = o.block_id AND t.tx_pos = o.tx_pos
    WHERE kind = 'push' AND p.push_hash = key AND (p.flags & 5) <> 0
    UNION ALL
    SELECT mo.tx_hash, mo.idx, mo.value, NULL::integer, m.seq, mo.script, NULL::bigint
    FROM mempool_outputs mo JOIN mempool_tx m ON m.tx_hash = mo.tx_hash
    WHERE kind = 'script' AND mo.script_hash = key
    UNION ALL
    SELECT DISTINCT mo.tx_hash, mo.idx, mo.value, NULL::integer, m.seq, mo.script, NULL::bigint
    FROM mempool_pushdata p
    JOIN mempool_outputs mo ON mo.tx_hash = p.tx_hash AND mo.idx = p.idx
    JOIN mempool_tx m ON m.tx_hash = mo.tx_hash
    WHERE kind = 'push' AND p.push_hash = key AND (p.flags & 5) <> 0
$$;

-- Every output of a key on the best chain or in the mempool, with its
-- spend, if any: an input of a best-chain block, else of a mempool tx (the
-- mempool never holds a tx conflicting with the best chain). kind
-- 'script': key is a script_hash (natural order); kind 'push': key is a
-- pushdata key (sha256 of the pushed bytes) found in the output (flags
-- OUTPUT or DATA); any other kind: no rows (cd_key checks kinds). pos: the
-- tx's block position; for mempool rows its arrival order (mempool_tx.seq),
-- height NULL. A plain SQL function, so the planner inlines it into the
-- callers' queries (one plan, joins chosen with the key's statistics).
CREATE FUNCTION cd_key_outputs(kind text, key bytea)
    RETURNS TABLE (tx_hash bytea, vout integer, value bigint, height integer, pos bigint,
                   script bytea, spend_tx_hash bytea, spend_height integer, spend_pos bigint,
                   block_id bigint)
    LANGUAGE sql STABLE AS $$
    WITH o AS (SELECT * FROM cd_key_outputs_only(kind, key))
    SELECT o.tx_hash, o.idx, o.value, o.height, o.pos, o.script,
           coalesce(c.h, mp.h), coalesce(c.height, mp.height), coalesce(c.pos, mp.pos), o.block_id
    FROM o
    LEFT JOIN LATERAL (
        SELECT t.tx_hash AS h, b.height, i.tx_pos::bigint AS pos
        FROM inputs i
        JOIN blocks b ON b.block_id = i.block_id AND b.on_best_chain
        JOIN transactions t ON t.block_id = i.block_id AND t.tx_pos = i.tx_pos
        WHERE i.prev_hash = o.tx_hash AND i.prev_idx = o.idx
        LIMIT 1) c ON true
    LEFT JOIN LATERAL (
        SELECT mi.tx_hash AS h, NULL::integer AS height, m.seq AS pos
        FROM mempool_inputs mi JOIN mempool_tx m ON m.tx_hash = mi.tx_hash
        WHERE c.h IS NULL AND mi.prev_hash = o.tx_hash AND mi.prev_idx = o.idx
        LIMIT 1) mp ON true
$$;

-- Resolves a key given as text: kind 'address' (base58check, checked
-- against `network`), 'scripthash' (Electrum display hex) or 'pushdata'
-- (sha256 of the pushed bytes, natural hex). Returns the (kind, key) pair
-- cd_key_outputs takes.
CREATE FUNCTION cd_key(kind text, key text, network text DEFAULT NULL,
                       OUT out_kind text, OUT out_key bytea)
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF kind = 'address' THEN
        out_kind := 'script';
        out_key := sha256(cd_address_script(key, network));
    ELSIF kind = 'scripthash' THEN
        out_kind := 'script';
        out_key := cd_scripthash(key);
    ELSIF kind = 'pushdata' THEN
        IF key !~ '^[0-9a-fA-F]{64}$' THEN
            RAISE EXCEPTION 'invalid pushdata key "%": 64 hex digits expected', key;
        END IF;
        out_kind := 'push';
        out_key := decode(key, 'hex');
    ELSE
        RAISE EXCEPTION 'unknown key kind "%" (address, scripthash or pushdata)', kind;
    END IF;
END
$$;

-- ---- the queries ----

-- Unspent outputs of a key (best chain + mempool, spends in the mempool
-- counted), ordered by height, position, vout, mempool last (height NULL).
-- Paging: pass the last row's (height, pos, vout) as after_*; after_height
-- NULL with after_pos NULL = from the start; for a mempool cursor pass
-- after_height NULL and the row's pos. lim: at most 10000.
CREATE FUNCTION cd_utxos(kind text, key bytea, lim integer DEFAULT 1000,
                         after_height integer DEFAULT NULL, after_pos bigint DEFAULT NULL,
                         after_vout integer DEFAULT NULL)
    RETURNS TABLE (txid text, vout integer, value bigint, height integer, pos bigint,
                   script bytea)
    LANGUAGE sql STABLE AS $$
    -- sorted first (no spend looked up), then checked in order until the
    -- page is full: a page costs the sort of the key's outputs and about
    -- one index probe per row returned or skipped as spent (OFFSET 0 keeps
    -- the spend checks above the sort)
    SELECT cd_txid_hex(o.tx_hash), o.idx, o.value, o.height, o.pos, o.script
    FROM (SELECT k.*, coalesce(k.height, 2147483647) AS sk
          FROM cd_key_outputs_only(kind, key) k
          WHERE after_pos IS NULL
             OR (coalesce(k.height, 2147483647), k.pos, k.idx)
                > (coalesce(after_height, 2147483647), after_pos, after_vout)
          ORDER BY 8, k.pos, k.idx
          OFFSET 0) o
    WHERE NOT EXISTS (SELECT 1 FROM inputs i
                      JOIN blocks b ON b.block_id = i.block_id AND b.on_best_chain
                      WHERE i.prev_hash = o.tx_hash AND i.prev_idx = o.idx)
      AND NOT EXISTS (SELECT 1 FROM mempool_inputs mi
                      WHERE mi.prev_hash = o.tx_hash AND mi.prev_idx = o.idx)
    ORDER BY o.sk, o.pos, o.idx
    LIMIT least(greatest(lim, 1), 10000)
$$;

-- Balance of a key: confirmed = the best-chain outputs not spent on the best
-- chain; unconfirmed = mempool outputs minus outputs spent by the mempool
-- (so confirmed + unconfirmed = the sum of cd_utxos); utxos = their count.
-- (RETURNS TABLE, one row: a set-returning SQL function is inlined into the
-- caller's query, so the key is a constant to the planner; a function
-- returning a record would be planned generically: a scan of all outputs.)
CREATE FUNCTION cd_balance(kind text, key bytea)
    RETURNS TABLE (confirmed bigint, unconfirmed bigint, utxos bigint)
    LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(value) FILTER (WHERE height IS NOT NULL
                                       AND (spend_tx_hash IS NULL OR spend_height IS NULL)), 0)::bigint,
           (coalesce(sum(value) FILTER (WHERE height IS NULL), 0)
            - coalesce(sum(value) FILTER (WHERE spend_tx_hash IS NOT NULL AND spend_height IS NULL), 0))::bigint,
           count(*) FILTER (WHERE spend_tx_hash IS NULL)
    FROM cd_key_outputs(kind, key)
$$;

-- History of a key: one row per tx that pays to it ('receive'), spends an
-- output of it ('spend'), both ('both'), or (pushdata keys) pushes it
-- anywhere else ('push'), ordered by height then position, mempool last
-- (height NULL, pos = arrival order). Paging: pass the last row's
-- (height, pos) as after_height/after_pos (after_height NULL + after_pos
-- set: a mempool cursor). lim: at most 10000.
CREATE FUNCTION cd_history(kind text, key bytea, lim integer DEFAULT 1000,
                           after_height integer DEFAULT NULL, after_pos bigint DEFAULT NULL)
    RETURNS TABLE (txid text, height integer, pos bigint, direction text)
    LANGUAGE sql STABLE AS $$
    WITH o AS (SELECT * FROM cd_key_outputs(kind, key)),
    r AS (
        SELECT tx_hash AS h, height, pos, 1 AS d FROM o
        UNION ALL
        SELECT spend_tx_hash, spend_height, spend_pos, 2 FROM o WHERE spend_tx_hash IS NOT NULL
        UNION ALL
        SELECT p.tx_hash, p.height, p.tx_pos::bigint, 4 FROM best_pushdata p
        WHERE kind = 'push' AND p.push_hash = key
        UNION ALL
        SELECT p.tx_hash, NULL::integer, m.seq, 4
        FROM mempool_pushdata p JOIN mempool_tx m ON m.tx_hash = p.tx_hash
        WHERE kind = 'push' AND p.push_hash = key
    ), g AS (
        SELECT h, height, pos, bit_or(d) AS d FROM r GROUP BY h, height, pos
    )
    SELECT cd_txid_hex(h), height, pos,
           CASE WHEN d & 3 = 3 THEN 'both' WHEN d & 1 = 1 THEN 'receive'
                WHEN d & 2 = 2 THEN 'spend' ELSE 'push' END
    FROM g
    WHERE after_pos IS NULL
       OR (coalesce(height, 2147483647), pos) > (coalesce(after_height, 2147483647), after_pos)
    ORDER BY coalesce(height, 2147483647), pos
    LIMIT least(greatest(lim, 1), 10000)
$$;
