#!/bin/sh
# scripts/fuzz.sh - build the libFuzzer targets with clang in build-fuzz/ and
# run each for a bounded time. Exit status is non-zero if a target crashes
# or an oracle fails (the input is left in build-fuzz/crash-* and the log in
# build-fuzz/fuzz-<name>.log). Called by ./dev test when executable.
#
#   FUZZ_SECONDS   seconds per target (default 15: six targets, under two
#                  minutes in all, which is what CI's ./dev test affords)
#   FUZZ_TARGETS   which targets (default: all), e.g. "tx script"
#   CD_SHARED_DATA real chain data for the seed corpora (default ../shared/data)
#
# Long runs (docs/FUZZING.md): FUZZ_SECONDS=600 FUZZ_TARGETS=hdrchain
# scripts/fuzz.sh. Each target's corpus (build-fuzz/corpus-<name>) keeps
# what earlier runs found; the seeds are rewritten on every run.
set -eu
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-15}
TARGETS=${FUZZ_TARGETS:-"p2p tx script hdrchain http config ws"}
if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz.sh: clang not found: fuzzing skipped" >&2
    exit 0
fi
if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=disabled -Dbuildtype=debugoptimized \
        >build-fuzz.log 2>&1 || { cat build-fuzz.log >&2; exit 1; }
    rm -f build-fuzz.log
fi

binary() { # target name -> executable under build-fuzz/fuzz/
    case $1 in
    p2p) echo fuzz_p2p_decoder ;;
    http) echo fuzz_http_route ;;
    *) echo "fuzz_$1" ;;
    esac
}

bins=""
for t in $TARGETS; do bins="$bins fuzz/$(binary "$t")"; done
# shellcheck disable=SC2086
ninja -C build-fuzz -j2 $bins >/dev/null || {
    echo "fuzz.sh: build failed" >&2; ninja -C build-fuzz $bins >&2; exit 1; }

PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
shared=${CD_SHARED_DATA:-../shared/data}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/conduit-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM

# p2p seeds: well-formed messages (bsv-p2p.md §10 vectors), a block prefix
seed_p2p() {
    "$PY" - "$1" <<'PY'
import binascii, os, sys
d = sys.argv[1]
seeds = {
    "getheaders": "e3e1f3e8676574686561646572730000450000001d36fe53"
                  "80110100016fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000"
                  + "00" * 32,
    "verack": "e3e1f3e876657261636b000000000000000000005df6e0e2",
    "protoconf": "0200002000" "15" "426c6f636b5072696f726974792c44656661756c74",
    "extmsg": "dab5bffa" + "extmsg".encode().hex() + "000000000000" + "ffffffff00000000"
              + "block".encode().hex() + "00" * 7 + "0000000001000000",
    "inv": "02" + "02000000" + "11" * 32 + "01000000" + "22" * 32,
    "reject": "02" + "7478" + "10" + "05" + "62616421" + "33" * 32,
}
for k, v in seeds.items():
    with open(os.path.join(d, k), "wb") as f:
        f.write(binascii.unhexlify(v))
PY
    if [ -f "$shared/mainnet/block413567.raw" ]; then
        head -c 4096 "$shared/mainnet/block413567.raw" >"$1/block-prefix"
    fi
}

status=0
for t in $TARGETS; do
    bin=$(binary "$t")
    corpus=build-fuzz/corpus-$t
    mkdir -p "$corpus"
    if [ "$t" = p2p ]; then
        seed_p2p "$corpus"
    elif [ -d "$shared/regtest" ]; then
        "$PY" fuzz/seeds.py "$t" "$corpus" "$shared"
    fi
    case $t in
    tx | script) extra="-max_len=70000" ;; # the 65 kB data-carrier txs of block 116
    hdrchain) extra="-max_len=4096" ;;
    *) extra="" ;;
    esac
    log=build-fuzz/fuzz-$t.log
    # shellcheck disable=SC2086
    if ! (cd build-fuzz && TMPDIR="$scratch" "./fuzz/$bin" -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 $extra "corpus-$t") >"$log" 2>&1; then
        echo "fuzz.sh: $bin failed (see $log, build-fuzz/crash-*)" >&2
        tail -40 "$log" >&2
        status=1
        continue
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz.sh: $bin ran ${SECONDS_PER_TARGET}s clean: ${runs:-?} inputs, ${cov:-cov: ?}"
done
exit $status
