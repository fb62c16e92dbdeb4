/*
 * cd_wk_parser.h - the parser worker: transactions -> index rows (cd_rows.h)
 * -> PostgreSQL.
 */
#ifndef CD_WK_PARSER_H
#define CD_WK_PARSER_H

#include <stdint.h>

#include "cd_err.h" /* CD_WARN_UNUSED */

/*
 * The parser worker kind for the supervisor (cd_wk_main.h): init opens its
 * own PG connection after fork and applies migrations (exit 2 when the
 * database schema is newer than the binary); BEGIN registers the block;
 * each UNIT is parsed from the ring and written exactly once, then
 * cd_pg_block_try_complete lets the last committer of a block mark it
 * indexed (merkle root of the stored txids checked) and advance the tip.
 * The controller enables it with
 *     cd_pipeline_set_parsers(pipe, &cd_wk_parser_ops, n);
 */
/*
 * Crash recovery, run by the controller once at start, before the pipeline
 * dispatches anything (so no unit of these blocks is in flight): every block
 * COMPLETE in <datadir>/blocks above the indexed tip (or less than
 * CD_WK_RECOVERY_REORG_WINDOW below it) that is not indexed in
 * PostgreSQL gets the transaction ranges no committed unit covers indexed
 * from the LMDB bytes (units numbered CD_WK_RECOVERY_UNIT + first tx, cut at
 * about cfg->unit_size), then completed (merkle check) and the tip advanced.
 * Never duplicates (ranges come from the committed markers) nor loses rows.
 * Opens and closes its own LMDB and PG handles (nothing survives into a
 * later fork). Blocks while PostgreSQL is unreachable (retry with back-off).
 * Returns 0, or CD_EXIT_CONFIG when the database schema is newer than the
 * binary, or CD_EXIT_FAILURE.
 */
#define CD_WK_RECOVERY_UNIT         0x40000000u
/* Blocks this far below the indexed tip are also recovered if not indexed
 * (the new branch of a reorg interrupted by a crash). */
#define CD_WK_RECOVERY_REORG_WINDOW 2000
struct cd_config;
int cd_wk_parser_recover(const struct cd_config *cfg) CD_WARN_UNUSED;

struct cd_wk_ops;
extern const struct cd_wk_ops cd_wk_parser_ops;

#endif /* CD_WK_PARSER_H */
