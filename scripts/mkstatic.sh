#!/bin/sh
# mkstatic.sh OUT.a P2P.a LIB.a... - the installed libconduit-p2p.a.
#
# The p2p room's objects (all of them) and the members of the lower rooms'
# archives they need are linked into one relocatable object; every global
# symbol but cp2p_* is then made local, so a program linking the archive
# sees only the public API (no cd_*/btc_* names to collide with its own).
set -eu
out=$1
p2p=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ld -r -o "$tmp/libconduit-p2p.o" --whole-archive "$p2p" --no-whole-archive "$@"
objcopy --wildcard --keep-global-symbol='cp2p_*' "$tmp/libconduit-p2p.o"
rm -f "$out"
ar rcs "$out" "$tmp/libconduit-p2p.o"
