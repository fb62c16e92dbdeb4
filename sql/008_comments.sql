-- 007_comments.sql - COMMENT ON every table, view and column of the schema,
-- so `\d+` in psql, pgAdmin and schema browsers explain the index to the
-- people who query it (docs/QUERIES.md has the worked queries), and the
-- grants that applications' watched keys need.
--
-- Conventions stated once: hashes (block_hash, tx_hash, prev_hash) are 32
-- bytes in internal (wire) order: cd_txid('<display hex>') converts from
-- what explorers show, cd_txid_hex(b) back. push_hash is sha256 of the
-- pushed bytes in natural order. Heights are best-chain heights.
-- tests/functional/test_ops_pg.py fails if a table or column has no comment.

COMMENT ON TABLE blocks IS 'Every block conduitd stored and indexed, best chain or not (on_best_chain). One row per block.';
COMMENT ON COLUMN blocks.block_id IS 'Surrogate key used by the row tables (transactions, inputs, pushdata).';
COMMENT ON COLUMN blocks.block_hash IS 'sha256d of the header, internal order (cd_txid_hex for display).';
COMMENT ON COLUMN blocks.prev_hash IS 'Hash of the parent block, internal order.';
COMMENT ON COLUMN blocks.height IS 'Height in the header tree.';
COMMENT ON COLUMN blocks.header IS 'The 80-byte block header.';
COMMENT ON COLUMN blocks.tx_count IS 'Number of transactions in the block.';
COMMENT ON COLUMN blocks.size IS 'Bytes of the serialized block.';
COMMENT ON COLUMN blocks.n_units IS 'Work units the block was indexed in; NULL until indexed.';
COMMENT ON COLUMN blocks.indexed IS 'True once every unit is committed and the merkle root checked.';
COMMENT ON COLUMN blocks.on_best_chain IS 'True while the block is on the indexed best chain; best_* views filter on it.';
COMMENT ON COLUMN blocks.indexed_at IS 'When the block became fully indexed.';

COMMENT ON TABLE transactions IS 'One row per transaction of every indexed block: where its bytes are (the raw block is in conduitd''s LMDB store).';
COMMENT ON COLUMN transactions.block_id IS 'The block (blocks.block_id).';
COMMENT ON COLUMN transactions.tx_offset IS 'Byte offset of the transaction from the start of the serialized block.';
COMMENT ON COLUMN transactions.tx_pos IS 'Position in the block; 0 is the coinbase.';
COMMENT ON COLUMN transactions.tx_size IS 'Bytes of the serialized transaction.';
COMMENT ON COLUMN transactions.tx_hash IS 'txid, internal order (cd_txid(''<display hex>'') to look one up).';

COMMENT ON TABLE inputs IS 'One row per input of every indexed block: which outpoint it spends (who spent what).';
COMMENT ON COLUMN inputs.block_id IS 'Block of the spending transaction.';
COMMENT ON COLUMN inputs.tx_pos IS 'Position of the spending transaction in its block.';
COMMENT ON COLUMN inputs.in_idx IS 'Input index in the spending transaction.';
COMMENT ON COLUMN inputs.prev_idx IS 'Output index spent.';
COMMENT ON COLUMN inputs.prev_hash IS 'txid spent, internal order.';

COMMENT ON TABLE pushdata IS 'Pushdata keys of every indexed block: sha256 of pushed bytes, for history by public key, pubkey hash or data.';
COMMENT ON COLUMN pushdata.block_id IS 'The block (blocks.block_id).';
COMMENT ON COLUMN pushdata.tx_pos IS 'Position of the transaction in its block.';
COMMENT ON COLUMN pushdata.idx IS 'Output index (flags OUTPUT, DATA) or input index (flag INPUT).';
COMMENT ON COLUMN pushdata.flags IS 'Bit set: 1 OUTPUT (20/33/65-byte push in an output script outside an OP_RETURN data region), 2 INPUT (the same in an input script), 4 DATA (a push inside an output''s data region, index_data_pushes).';
COMMENT ON COLUMN pushdata.push_hash IS 'sha256 of the pushed bytes, natural order.';

COMMENT ON TABLE indexed_units IS 'Exactly-once markers: a work unit''s rows and its marker commit in one transaction (crash recovery).';
COMMENT ON COLUMN indexed_units.block_id IS 'The block (blocks.block_id).';
COMMENT ON COLUMN indexed_units.unit_no IS 'Unit number within the block.';
COMMENT ON COLUMN indexed_units.first_tx IS 'Position of the unit''s first transaction.';
COMMENT ON COLUMN indexed_units.tx_count IS 'Transactions in the unit.';
COMMENT ON COLUMN indexed_units.committed_at IS 'When the unit committed.';

COMMENT ON TABLE index_tip IS 'One row: the tip of the indexed best chain (best_tip shows it with its hash). LISTEN cd_tip for changes.';
COMMENT ON COLUMN index_tip.singleton IS 'Always true: keeps the table to one row.';
COMMENT ON COLUMN index_tip.block_id IS 'The tip block (blocks.block_id).';
COMMENT ON COLUMN index_tip.height IS 'Height of the tip.';
COMMENT ON COLUMN index_tip.updated_at IS 'When the tip last moved.';

COMMENT ON TABLE chain_target IS 'One row: the header tree''s best tip, which the index is moving to (reorgs are steps towards it).';
COMMENT ON COLUMN chain_target.singleton IS 'Always true: keeps the table to one row.';
COMMENT ON COLUMN chain_target.block_hash IS 'Best header''s hash, internal order.';
COMMENT ON COLUMN chain_target.height IS 'Best header''s height.';
COMMENT ON COLUMN chain_target.updated_at IS 'When the target last changed.';
COMMENT ON COLUMN chain_target.mtp IS 'Median time past of the target (finality of mempool transactions after a reorg).';
COMMENT ON COLUMN chain_target.low_hash IS 'Lowest block a pending reorg disconnects back to, internal order; NULL when none.';
COMMENT ON COLUMN chain_target.low_mtp IS 'Median time past at low_hash.';

COMMENT ON TABLE mempool_tx IS 'Unconfirmed transactions: relayed by peers or returned by a reorg. Rows leave when mined, evicted or conflicted (mempool_evicted says why).';
COMMENT ON COLUMN mempool_tx.tx_hash IS 'txid, internal order.';
COMMENT ON COLUMN mempool_tx.seq IS 'Arrival order; the oldest are evicted first (mempool_max_txs / mempool_max_bytes).';
COMMENT ON COLUMN mempool_tx.seen_at IS 'When conduitd first saw the transaction.';
COMMENT ON COLUMN mempool_tx.tx_size IS 'Bytes of the serialized transaction.';
COMMENT ON COLUMN mempool_tx.source IS '0 relayed by a peer, 1 returned to the mempool by a reorg.';
COMMENT ON COLUMN mempool_tx.raw IS 'The serialized transaction for relayed ones (source 0); NULL for reorg returns (their bytes are in the old block).';
COMMENT ON COLUMN mempool_tx.lock_time IS 'nLockTime of the transaction.';
COMMENT ON COLUMN mempool_tx.seq_nonfinal IS 'True if an input has a sequence number below 0xffffffff (lock time enforced).';

COMMENT ON TABLE mempool_inputs IS 'Inputs of mempool transactions (rows go with their mempool_tx row).';
COMMENT ON COLUMN mempool_inputs.tx_hash IS 'Spending mempool transaction, internal order.';
COMMENT ON COLUMN mempool_inputs.in_idx IS 'Input index.';
COMMENT ON COLUMN mempool_inputs.prev_idx IS 'Output index spent.';
COMMENT ON COLUMN mempool_inputs.prev_hash IS 'txid spent, internal order.';

COMMENT ON TABLE mempool_pushdata IS 'Pushdata keys of mempool transactions (as pushdata; rows go with their mempool_tx row).';
COMMENT ON COLUMN mempool_pushdata.tx_hash IS 'Mempool transaction, internal order.';
COMMENT ON COLUMN mempool_pushdata.idx IS 'Output or input index, as pushdata.idx.';
COMMENT ON COLUMN mempool_pushdata.flags IS 'As pushdata.flags: 1 OUTPUT, 2 INPUT, 4 DATA.';
COMMENT ON COLUMN mempool_pushdata.push_hash IS 'sha256 of the pushed bytes, natural order.';

COMMENT ON TABLE watched_keys IS 'Written by applications: pushdata keys whose mempool and block appearances are announced on NOTIFY channel cd_key. The role conduit_reader may insert and delete here (sql/roles.sql).';
COMMENT ON COLUMN watched_keys.push_hash IS 'sha256 of the pushed bytes to watch, natural order (as pushdata.push_hash).';
COMMENT ON COLUMN watched_keys.label IS 'Free text for the application; sent back in notifications.';
COMMENT ON COLUMN watched_keys.added_at IS 'When the key was registered.';

COMMENT ON TABLE watched_outpoints IS 'Written by applications: outpoints whose spending (mempool or block) is announced on NOTIFY channel cd_spend. The role conduit_reader may insert and delete here.';
COMMENT ON COLUMN watched_outpoints.prev_hash IS 'txid of the watched output, internal order.';
COMMENT ON COLUMN watched_outpoints.prev_idx IS 'Output index.';
COMMENT ON COLUMN watched_outpoints.label IS 'Free text for the application; sent back in notifications.';
COMMENT ON COLUMN watched_outpoints.added_at IS 'When the outpoint was registered.';

COMMENT ON TABLE mempool_evicted IS 'Why transactions left the mempool tables, kept mempool_evicted_keep hours.';
COMMENT ON COLUMN mempool_evicted.id IS 'Row number (eviction order).';
COMMENT ON COLUMN mempool_evicted.tx_hash IS 'txid, internal order.';
COMMENT ON COLUMN mempool_evicted.reason IS 'confirmed, double-spend, conflict, missing-inputs, non-final, immature-coinbase, expired, size-limit or not-in-node-mempool (sql/006_mempool_mirror.sql).';
COMMENT ON COLUMN mempool_evicted.via IS 'The evicted parent that took this transaction along, internal order; NULL if evicted itself.';
COMMENT ON COLUMN mempool_evicted.height IS 'confirmed: height of the block; otherwise the tip''s height at eviction.';
COMMENT ON COLUMN mempool_evicted.evicted_at IS 'When it was removed.';
COMMENT ON COLUMN mempool_evicted.seen_at IS 'mempool_tx.seen_at of the removed row.';
COMMENT ON COLUMN mempool_evicted.source IS 'mempool_tx.source of the removed row.';
COMMENT ON COLUMN mempool_evicted.tx_size IS 'mempool_tx.tx_size of the removed row.';
COMMENT ON COLUMN mempool_evicted.lock_time IS 'mempool_tx.lock_time (kept so a reorg can return the transaction).';
COMMENT ON COLUMN mempool_evicted.seq_nonfinal IS 'mempool_tx.seq_nonfinal (kept so a reorg can return the transaction).';

COMMENT ON TABLE mempool_size IS 'One row: count and bytes of mempool_tx, kept by triggers (cheaper than count(*)).';
COMMENT ON COLUMN mempool_size.singleton IS 'Always true: keeps the table to one row.';
COMMENT ON COLUMN mempool_size.n IS 'Rows in mempool_tx.';
COMMENT ON COLUMN mempool_size.bytes IS 'Sum of mempool_tx.tx_size.';

-- cd_schema_version is created by conduitd itself (src/pg/cd_pg.c), not by a
-- migration: comment it only where it exists (the SQL files are also
-- applied alone, e.g. by tests/functional/test_mempool_sql.py).
DO $$
BEGIN
    IF to_regclass('cd_schema_version') IS NOT NULL THEN
        COMMENT ON TABLE cd_schema_version IS 'Migrations applied (sql/NNN_name.sql, compiled into conduitd).';
        COMMENT ON COLUMN cd_schema_version.version IS 'Migration number NNN.';
        COMMENT ON COLUMN cd_schema_version.name IS 'Migration file name.';
        COMMENT ON COLUMN cd_schema_version.applied_at IS 'When it was applied.';
    END IF;
END
$$;

COMMENT ON VIEW best_blocks IS 'Blocks of the indexed best chain.';
COMMENT ON VIEW best_transactions IS 'Transactions of the indexed best chain, with their block hash and height.';
COMMENT ON VIEW best_inputs IS 'Spends on the indexed best chain: outpoint (prev_hash, prev_idx) spent by spend_tx_hash input in_idx.';
COMMENT ON VIEW best_pushdata IS 'Pushdata keys on the indexed best chain, with txid, height and block hash.';
COMMENT ON VIEW best_tip IS 'The indexed best tip: hash, height, header.';
COMMENT ON VIEW all_inputs IS 'Spends on the best chain and in the mempool (height and block_hash NULL for the mempool).';
COMMENT ON VIEW all_pushdata IS 'Pushdata keys on the best chain and in the mempool (height and block_hash NULL for the mempool).';

-- the outputs of sql/007 (issue 14)
COMMENT ON TABLE outputs IS 'One row per output of every indexed block: its value and the sha256 of its locking script (Electrum''s script hash). Spent or not is not stored: an output is spent when a best-chain or mempool input names it (cd_utxos, cd_balance).';
COMMENT ON COLUMN outputs.block_id IS 'blocks.block_id of the block that holds the tx';
COMMENT ON COLUMN outputs.tx_pos IS 'position of the tx in its block (0 = coinbase)';
COMMENT ON COLUMN outputs.idx IS 'output index (vout)';
COMMENT ON COLUMN outputs.value IS 'satoshis';
COMMENT ON COLUMN outputs.script_hash IS 'sha256 of the locking script, natural byte order (Electrum script hash)';
COMMENT ON COLUMN outputs.script IS 'the locking script when at most 64 bytes, else NULL (read from the block store)';
COMMENT ON TABLE mempool_outputs IS 'The outputs of the mempool transactions (mempool_tx): rows come and go with their tx.';
COMMENT ON COLUMN mempool_outputs.tx_hash IS 'mempool_tx.tx_hash of the tx (txid, internal order)';
COMMENT ON COLUMN mempool_outputs.idx IS 'output index (vout)';
COMMENT ON COLUMN mempool_outputs.value IS 'satoshis';
COMMENT ON COLUMN mempool_outputs.script_hash IS 'sha256 of the locking script, natural byte order';
COMMENT ON COLUMN mempool_outputs.script IS 'the locking script when at most 64 bytes, else NULL';

-- Applications register their watches in these two tables. If the reader
-- role of sql/roles.sql exists (it is created by an administrator, not by
-- conduitd), give it what that needs; otherwise sql/roles.sql does it later.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'conduit_reader') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON watched_keys, watched_outpoints TO conduit_reader;
    END IF;
END
$$;
