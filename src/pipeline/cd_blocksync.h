/*
 * cd_blocksync.h - the controller module that downloads blocks into the
 * pipeline (DESIGN.md §3, issue #5).
 *
 * cd_pipeline_module (listed in modules[] of main.c) owns the
 * shared-memory ring, the pipeline and its workers, the p2p block sink, and
 * the block download scheduler:
 *
 *  - init():  ring created and workers forked (before the controller opens
 *             the header tree or any socket);
 *  - start(): the set of blocks already stored and verified is read from
 *             <datadir>/blocks + <datadir>/merkle (read-only, then closed),
 *             so a restart never downloads them again;
 *  - the best chain is requested in height order from every ready peer,
 *    at most cfg->blocks_per_peer (~16, like the node itself) in flight per
 *    peer, split by libconduit-p2p within the peer's getdata limits; only
 *    a look-ahead window above the lowest missing height is requested, so the
 *    ring is filled in chain order;
 *  - block bytes arrive through the sink straight into the ring; one block
 *    is received at a time, other peers' blocks wait with their socket paused
 *    (TCP back-pressure), as does a full ring;
 *  - a block not received cfg->block_timeout_s after it was asked for is
 *    asked again from another peer (nodes send no `notfound` for blocks);
 *  - a block whose merkle root does not match (or that is malformed) is
 *    refused, its peer disconnected, and the block asked from another peer;
 *    a block lost in a worker crash is simply asked again.
 *
 * Log lines tests look for:
 *   "blocksync: stored block <hash> height=<h>"
 *   "blocksync: all blocks stored up to height <h>"
 */
#ifndef CD_BLOCKSYNC_H
#define CD_BLOCKSYNC_H

#include "cd_ctl.h"

extern const cd_ctl_module cd_pipeline_module;

#endif /* CD_BLOCKSYNC_H */
