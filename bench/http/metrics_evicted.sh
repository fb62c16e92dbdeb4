#!/bin/bash
# metrics_evicted.sh - what one /metrics scrape pays for the mempool
# evictions by reason (issue 17, docs/PERFORMANCE.md "Metrics"): the query
# cd_http_metrics.c runs (a 5-minute window on mempool_evicted_at_idx)
# against a GROUP BY of the whole table, with N rows spread over 24 hours
# (on mainnet every confirmed mempool tx leaves such a row, kept
# mempool_evicted_keep hours).
#
#   /usr/bin/python3 tests/pgserver.py -- bench/http/metrics_evicted.sh build [N]
set -e
B=$1; N=${2:-2000000}
DATA=${CD_SHARED_DATA:-$(dirname "$0")/../../../shared/data}
# a migrated schema (conduit-index-file applies the migrations)
"$B"/bench/index/conduit-index-file --conninfo "$CD_TEST_PG_CONNINFO" \
    --chain "$DATA"/regtest/blockchain_116_7c9cd2 --jobs 1 >/dev/null
psql -X -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO mempool_evicted (tx_hash, reason, evicted_at)
SELECT sha256(i::text::bytea),
       (ARRAY['confirmed','confirmed','confirmed','expired','size-limit','double-spend'])[1 + i % 6],
       now() - (i % 86400) * interval '1 second'
FROM generate_series(1, $N) i;
ANALYZE mempool_evicted;
SQL
for q in "SELECT reason, count(*) FROM mempool_evicted WHERE evicted_at > now() - interval '5 minutes' GROUP BY reason" \
         "SELECT reason, count(*) FROM mempool_evicted GROUP BY reason"; do
  echo "== $q"
  for i in 1 2 3 4 5; do psql -X -q -c '\timing on' -c "$q" | grep Time; done
done
