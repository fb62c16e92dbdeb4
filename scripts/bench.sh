#!/usr/bin/env bash
# scripts/bench.sh - run every benchmark program under bench/ with sensible
# arguments and print their figures (docs/PERFORMANCE.md records them).
#
# usage: scripts/bench.sh [--build DIR] [--quick] [--list] [NAME...]
#   --build DIR  build directory holding bench/<area>/... (default: build,
#                configure it with --buildtype=release for real figures)
#   --quick      smaller inputs (a smoke run of every program, ~1-2 min)
#   --list       print the benchmark names and exit
#   NAME...      run only these (default: all), e.g. `scripts/bench.sh preproc index`
#
# Shared chain data comes from $CD_SHARED_DATA (default ../shared/data). The
# index and catchup benchmarks run against a throw-away PostgreSQL
# (tests/pgserver.py --). catchup (conduitd end to end) also writes the index
# rate over time: DIR/bench-catchup.csv and the chart DIR/bench-catchup.png
# (bench/plot.py, gnuplot). growth (bench/index/bench_growth.py: rates, CPU,
# bytes per tx and query latencies at growing sizes) writes DIR/bench-growth.md
# and DIR/bench-growth.png.
# Scratch files go to a temporary directory removed at exit. The full run
# stays well under 10 minutes on the 2-core dev VM. Timing is the programs'
# own (they print MB/s, tx/s, blocks/s); this script only adds how long each
# program ran. Exit status: 0 if every program ran, 1 if some failed (the
# others still run).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CD_SHARED_DATA=${CD_SHARED_DATA:-$(cd "$ROOT/.." && pwd)/shared/data}
PY=/usr/bin/python3
BUILD=build
QUICK=0
ONLY=()

ALL=(preproc parse hdrtree recv pipe pipe-feed pipe-feed-real index-parse index catchup daemon-sync growth)

while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --build=*) BUILD=${1#--build=}; shift ;;
    --quick) QUICK=1; shift ;;
    --list) printf '%s\n' "${ALL[@]}"; exit 0 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
    *) ONLY+=("$1"); shift ;;
  esac
done
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
B="$BUILD/bench"
if [ ! -d "$B" ]; then
  echo "bench.sh: $B not found (build first: meson setup build --buildtype=release && ninja -C build)" >&2
  exit 2
fi
for n in "${ONLY[@]}"; do
  printf '%s\n' "${ALL[@]}" | grep -qx -- "$n" || { echo "bench.sh: unknown benchmark $n (--list)" >&2; exit 2; }
done

T_START=$SECONDS
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cd-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
FAILED=()

# sizes: full / --quick
if [ "$QUICK" = 1 ]; then
  PRE_MB=32 PARSE_MB=16 HDRS=20000 RECV_MB=64 RECV_N=2 PIPE_MB=128
  FEED_GEN=(--gen 16M:100K --gen 16M:100K) IDX_TXS=50000 SYNC_BLOCKS=5 SYNC_SIZE=4M
  CU_BLOCKS=150 CU_TXS=1000
  GROWTH=(--checkpoints 60k,200k --window 10 --queries 200 --chain "$TMP/growth-chain")
else
  PRE_MB=256 PARSE_MB=128 HDRS=200000 RECV_MB=512 RECV_N=4 PIPE_MB=1024
  FEED_GEN=(); for _ in 1 2 3 4 5 6 7 8; do FEED_GEN+=(--gen 64M:100K); done
  IDX_TXS=500000 SYNC_BLOCKS=20 SYNC_SIZE=32M
  CU_BLOCKS=400 CU_TXS=1500
  # the chain file is generated once (~1 min) and kept beside the build;
  # 10M and more: bench/index/bench_growth.py directly (docs/PERFORMANCE.md, Growth)
  GROWTH=(--checkpoints 200k,1M --window 40 --queries 1000 --chain "$BUILD/growth-chain-1500")
fi

wanted() {
  [ ${#ONLY[@]} -eq 0 ] && return 0
  local n; for n in "${ONLY[@]}"; do [ "$n" = "$1" ] && return 0; done
  return 1
}

# run NAME PROGRAM ARGS...: prints a banner, the program's output, its
# run time and status
run() {
  local name=$1; shift
  wanted "$name" || return 0
  printf '\n==> %s: %s\n' "$name" "$*"
  if [ ! -x "$1" ] && [ "$1" != "$PY" ]; then
    echo "    (not built: $1)"
    FAILED+=("$name")
    return 0
  fi
  local t0=$SECONDS rc=0
  "$@" || rc=$?
  printf -- '--- %s: exit %d, %d s\n' "$name" "$rc" "$((SECONDS - t0))"
  [ "$rc" -eq 0 ] || FAILED+=("$name")
}

printf 'conduitd benchmarks: build %s, shared data %s%s\n' "$BUILD" "$CD_SHARED_DATA" \
  "$([ "$QUICK" = 1 ] && echo ', quick sizes')"
$PY - "$BUILD" <<'EOF' 2>/dev/null || true
import json, sys
opts = json.load(open(sys.argv[1] + "/meson-info/intro-buildoptions.json"))
bt = [o["value"] for o in opts if o["name"] == "buildtype"]
if bt and bt[0] != "release":
    print("note: buildtype is %s; configure with --buildtype=release for real figures" % bt[0])
EOF

BLOCK="$CD_SHARED_DATA/mainnet/block413567.raw"
CHAIN="$CD_SHARED_DATA/regtest/blockchain_116_7c9cd2"

# bitcoin formats: one core each
run preproc "$B/bitcoin/bench_preproc" "$BLOCK" "$PRE_MB"
run parse "$B/bitcoin/bench_parse" "$BLOCK" "$PARSE_MB"
# header tree: validation + LMDB writes, then the load at start
mkdir -p "$TMP/hdr"
run hdrtree "$B/headers/bench_hdrtree" "$HDRS" "$TMP/hdr"
# p2p receive: loopback peer -> sink / chunks
run recv "$B/p2p/bench_recv" --size "$RECV_MB" --blocks "$RECV_N" --mode all
# pipeline parts: ring ingest, preprocessor from the ring, LMDB append
run pipe "$B/pipeline/bench-pipe" all --mb "$PIPE_MB" --dir "$TMP"
# pipeline end to end (ring + writer + merkle workers + LMDB)
run pipe-feed "$B/pipeline/cd-pipe-feed" --datadir "$TMP/feed" --ring-size 256M --quiet "${FEED_GEN[@]}"
run pipe-feed-real "$B/pipeline/cd-pipe-feed" --datadir "$TMP/feed-real" --quiet \
  --chain "$CHAIN" --block "$BLOCK:413567"
# index: parser alone, then parser -> COPY -> a throw-away PostgreSQL
run index-parse "$B/index/bench_index" --parse-only --txs "$IDX_TXS"
run index $PY "$ROOT/tests/pgserver.py" -- "$B/index/bench_index" --txs "$IDX_TXS" --jobs 2 \
  --indexes after
# conduitd end to end from the simulated node: p2p + ring + workers + COPY +
# final index build, catch-up (auto) vs live indexes; the samples make the chart
CU_CSV="$BUILD/bench-catchup.csv" CU_PNG="$BUILD/bench-catchup.png"
rm -f "$CU_CSV"
run catchup $PY "$ROOT/tests/pgserver.py" -- $PY "$ROOT/bench/index/bench_catchup.py" \
  --build "$BUILD" --blocks "$CU_BLOCKS" --txs-per-block "$CU_TXS" --threshold 10 \
  --modes auto,live --samples "$CU_CSV"
if wanted catchup && [ -s "$CU_CSV" ]; then
  $PY "$ROOT/bench/plot.py" "$CU_CSV" "$CU_PNG" || FAILED+=(catchup-chart)
fi
# growth: catch-up, live rate, CPU, bytes and query latencies at growing
# sizes, from a chain file served by the simulated node; table + chart
# DIR/bench-growth.{md,png}
rm -f "$BUILD/bench-growth.csv"
run growth $PY "$ROOT/tests/pgserver.py" -- $PY "$ROOT/bench/index/bench_growth.py" \
  --build "$BUILD" --out "$BUILD" "${GROWTH[@]}"
# conduitd downloading from the simulated node (p2p + ring + workers)
run daemon-sync $PY "$ROOT/bench/pipeline/daemon_sync.py" --build "$BUILD" \
  --blocks "$SYNC_BLOCKS" --block-size "$SYNC_SIZE"

printf '\nbench.sh: %d s in all\n' "$((SECONDS - T_START))"
if [ ${#FAILED[@]} -gt 0 ]; then
  printf 'bench.sh: failed: %s\n' "${FAILED[*]}"
  exit 1
fi
printf 'bench.sh: all benchmarks ran\n'
