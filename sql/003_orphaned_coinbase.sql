-- 003_orphaned_coinbase.sql - mempool txs spending the coinbase of a block
-- that left the best chain are dropped.
--
-- When a block is disconnected its non-coinbase txs return to the mempool
-- (cd_block_disconnected, 002), but its coinbase cannot: it exists only in
-- that block. A mempool tx spending a coinbase output (and every mempool
-- descendant of it) then spends an output that no longer exists, and a node
-- evicts it. The check has to see the end state of the switch (the same
-- coinbase could, in principle, sit in a block of the new branch), so it is
-- a deferred constraint trigger: it runs at commit of the reorg step's one
-- transaction, once per block that left, after the joining blocks are on.

CREATE FUNCTION cd_drop_orphaned_coinbase_spenders() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    cb bytea;
    spenders bytea[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM mempool_inputs) THEN
        RETURN NULL;
    END IF;
    -- still off the best chain at commit?
    IF EXISTS (SELECT 1 FROM blocks WHERE block_id = NEW.block_id AND on_best_chain) THEN
        RETURN NULL;
    END IF;
    SELECT tx_hash INTO cb FROM transactions WHERE block_id = NEW.block_id AND tx_pos = 0;
    IF cb IS NULL OR EXISTS (SELECT 1 FROM best_transactions WHERE tx_hash = cb) THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(DISTINCT tx_hash) INTO spenders FROM mempool_inputs WHERE prev_hash = cb;
    PERFORM cd_mempool_drop_conflicts(spenders);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER blocks_left_best_chain
    AFTER UPDATE OF on_best_chain ON blocks
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.on_best_chain AND NOT NEW.on_best_chain)
    EXECUTE FUNCTION cd_drop_orphaned_coinbase_spenders();
