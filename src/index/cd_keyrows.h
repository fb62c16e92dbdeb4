/*
 * cd_keyrows.h - the key-rows process: the trailing step that derives the
 * per-key rows of sql/014_key_rows.sql (key_outs, key_hist) below a mark
 * that follows the indexed tip, so that a history or UTXO page of a key
 * costs in proportion to the page (issue 18; docs/QUERIES.md "Key pages").
 *
 * The module adds one resident row ("key-rows") to the process table when
 * the index and key_rows are on; the child opens its own PostgreSQL session after the
 * fork and calls cd_key_rows_advance in batches (each one transaction:
 * rows, blocks done and mark commit together). It pauses while catch-up
 * mode has dropped the index on transactions (tx_hash). Nothing else
 * depends on it running: reads fall back to the blocks above the mark.
 */
#ifndef CD_KEYROWS_H
#define CD_KEYROWS_H

#include "cd_ctl.h"

/* The controller module (listed in main.c; does nothing when cfg->index or
 * cfg->key_rows is off). */
extern const cd_ctl_module cd_keyrows_module;

#endif /* CD_KEYROWS_H */
