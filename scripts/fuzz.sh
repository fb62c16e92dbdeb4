#!/bin/sh
# scripts/fuzz.sh - build the libFuzzer targets with clang in build-fuzz/ and
# run each for a bounded time (FUZZ_SECONDS, default 60). Exit status is
# non-zero if a target crashes (the crashing input is left in build-fuzz/).
# Called by ./dev test when executable.
set -eu
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz.sh: clang not found: fuzzing skipped" >&2
    exit 0
fi
if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=disabled -Dbuildtype=debugoptimized \
        >build-fuzz.log 2>&1 || { cat build-fuzz.log >&2; exit 1; }
    rm -f build-fuzz.log
fi
ninja -C build-fuzz -j2 fuzz/fuzz_p2p_decoder >/dev/null || {
    echo "fuzz.sh: build failed" >&2; ninja -C build-fuzz fuzz/fuzz_p2p_decoder >&2; exit 1; }

# Seed corpus: well-formed messages (bsv-p2p.md §10 vectors) and a real block
# prefix, written fresh each run.
corpus=build-fuzz/corpus-p2p
mkdir -p "$corpus"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
"$PY" - "$corpus" <<'PY'
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
shared=${CD_SHARED_DATA:-../shared/data}
if [ -f "$shared/mainnet/block413567.raw" ]; then
    head -c 4096 "$shared/mainnet/block413567.raw" > "$corpus/block-prefix"
fi
cd build-fuzz
./fuzz/fuzz_p2p_decoder -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=1024 \
    -print_final_stats=1 corpus-p2p 2>fuzz-p2p.log || {
    echo "fuzz.sh: fuzz_p2p_decoder found a crash (see build-fuzz/fuzz-p2p.log, crash-*)" >&2
    tail -40 fuzz-p2p.log >&2
    exit 1
}
grep -E "stat::number_of_executed_units|Done" fuzz-p2p.log | tail -2 || true
echo "fuzz.sh: fuzz_p2p_decoder ran ${SECONDS_PER_TARGET}s without a crash"
