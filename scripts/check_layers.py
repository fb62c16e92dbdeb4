#!/usr/bin/env python3
"""check_layers.py - the layering rule of src/, checked (issue 12).

src/ is a house of rooms, one folder per concern, lowest first (ROOMS below:
the single table of the order; docs/ARCHITECTURE.md "Source map" says what
each room owns). A file may include headers of its own room and of rooms
below it, never above. Meson enforces the same rule at compile time (each
room is a static library that sees only its own directory and those of the
rooms it depends on); this script states it in one place and also checks
what the compiler cannot:

  - every `#include "..."` in src/ names a header by its bare name (no
    folder), the header exists in exactly one room (or is generated into
    one: GENERATED), and its room is not above the including file's room;
  - every file of src/ lives in a room of the table (no file directly in
    src/, no folder the table does not list);
  - src/daemon/ (the programs' main functions) holds less than 10% of the
    lines of src/, and no file of src/ is longer than 1000 lines.

Usage:
  scripts/check_layers.py [--root DIR]   check DIR/src (default: this tree)
  scripts/check_layers.py --self-test    check that each rule fails when broken
                                         (on a temporary copy of src/)
Exit status: 0 clean, 1 violations (one line each on stderr), 2 usage error.
Standard library only.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

# The rooms of src/, lowest first. A room may include only itself and rooms
# listed before it.
ROOMS = [
    "common",    # logging, allocation, hex, hashing; the generated cd_build.h
    "bitcoin",   # Bitcoin formats: headers, PoW, txs, scripts, merkle trees
    "p2p",       # libconduit-p2p
    "config",    # the configuration object and its option table
    "store",     # LMDB: header tree, block store
    "pg",        # PostgreSQL: connection, migrations, COPY writer, blocks/tip
    "query",     # read-side lookups (conduit-cli, HTTP API)
    "proc",      # supervisor, signals, sd_notify
    "sync",      # the controller core, the module interface, header sync, status
    "index",     # tx -> rows, mempool/reorg module, catch-up module
    "workers",   # forked workers: IPC, loop, writer, merkle, parser
    "pipeline",  # ring, pipeline, block download module
    "api",       # the HTTP API
    "cli",       # conduit-cli as a library
    "daemon",    # main() of conduitd and conduit-cli only
]

# Headers generated at build time into a room's build directory.
GENERATED = {"cd_build.h": "common"}

MAX_LINES = 1000       # no file of src/ longer than this
DAEMON_ROOM = "daemon"
DAEMON_MAX_SHARE = 0.10  # src/daemon/ below this share of src/ lines

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
SOURCE_EXT = (".c", ".h")


def src_files(src):
    """Every file under src/ (relative paths), skipping caches."""
    out = []
    for d, dirs, files in os.walk(src):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in sorted(files):
            out.append(os.path.relpath(os.path.join(d, f), src))
    return out


def count_lines(path):
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def check(root):
    """Returns (problems, summary): lists of strings."""
    src = os.path.join(root, "src")
    rank = {r: i for i, r in enumerate(ROOMS)}
    problems = []
    files = src_files(src)

    # where each file lives; which room owns each header name
    room_of = {}
    header_room = dict(GENERATED)
    header_path = {h: "(generated)" for h in GENERATED}
    for rel in files:
        parts = rel.split(os.sep)
        if len(parts) < 2:
            problems.append(f"src/{rel}: a file directly in src/ belongs to no room")
            continue
        if parts[0] not in rank:
            problems.append(f"src/{rel}: unknown room '{parts[0]}' (not in ROOMS of "
                            f"scripts/check_layers.py)")
            continue
        room_of[rel] = parts[0]
        name = parts[-1]
        if name.endswith(".h"):
            if name in header_room:
                problems.append(f"src/{rel}: header name also used by {header_path[name]} "
                                f"(headers are included by bare name: names must be unique)")
            else:
                header_room[name] = parts[0]
                header_path[name] = "src/" + rel

    # includes
    n_includes = 0
    for rel, room in room_of.items():
        if not rel.endswith(SOURCE_EXT):
            continue
        with open(os.path.join(src, rel), encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = INCLUDE_RE.match(line)
                if not m:
                    continue
                n_includes += 1
                inc = m.group(1)
                where = f"src/{rel}:{lineno}"
                if "/" in inc:
                    problems.append(f'{where}: #include "{inc}": include headers by bare name')
                    continue
                target = header_room.get(inc)
                if target is None:
                    problems.append(f'{where}: #include "{inc}": no room has this header')
                    continue
                if rank[target] > rank[room]:
                    problems.append(f'{where}: upward include "{inc}": room {room} '
                                    f'({rank[room] + 1}) may not include {target} '
                                    f'({rank[target] + 1})')

    # sizes
    lines = {rel: count_lines(os.path.join(src, rel)) for rel in files}
    total = sum(lines.values())
    daemon = sum(n for rel, n in lines.items() if rel.split(os.sep)[0] == DAEMON_ROOM)
    for rel, n in sorted(lines.items()):
        if n > MAX_LINES:
            problems.append(f"src/{rel}: {n} lines (more than {MAX_LINES}): split it by concern")
    if total and daemon >= DAEMON_MAX_SHARE * total:
        problems.append(f"src/{DAEMON_ROOM}/: {daemon} of {total} lines of src/ "
                        f"({100.0 * daemon / total:.1f}%, limit {100 * DAEMON_MAX_SHARE:.0f}%): "
                        f"it holds main() only")
    largest = max(lines.items(), key=lambda kv: kv[1]) if lines else ("-", 0)
    summary = [
        f"{len(ROOMS)} rooms, {len(files)} files, {n_includes} includes checked",
        f"src/: {total} lines; src/{DAEMON_ROOM}/: {daemon} "
        f"({100.0 * daemon / total if total else 0:.1f}%); "
        f"largest file: src/{largest[0]} ({largest[1]} lines)",
    ]
    return problems, summary


def self_test(root):
    """Breaks each rule on a copy of src/ and checks that it is reported."""
    me = os.path.abspath(__file__)
    ok = True

    def run(tmp):
        return subprocess.run([sys.executable, me, "--root", tmp],
                              capture_output=True, text=True)

    def case(name, mutate, expect):
        nonlocal ok
        with tempfile.TemporaryDirectory(prefix="check_layers.") as tmp:
            shutil.copytree(os.path.join(root, "src"), os.path.join(tmp, "src"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            mutate(os.path.join(tmp, "src"))
            r = run(tmp)
            good = r.returncode == 1 and expect in r.stderr
            print(f"{'ok' if good else 'FAIL'}: {name}")
            if not good:
                ok = False
                sys.stdout.write(r.stdout + r.stderr)

    def append(path, text):
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)

    with tempfile.TemporaryDirectory(prefix="check_layers.") as tmp:
        shutil.copytree(os.path.join(root, "src"), os.path.join(tmp, "src"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        r = run(tmp)
        print(f"{'ok' if r.returncode == 0 else 'FAIL'}: the tree as it is passes")
        if r.returncode != 0:
            ok = False
            sys.stdout.write(r.stdout + r.stderr)

    case("upward include (store includes pipeline)",
         lambda s: append(os.path.join(s, "store", "cd_blockstore.c"),
                          '#include "cd_pipeline.h"\n'),
         'upward include "cd_pipeline.h"')
    case("upward include in a header (bitcoin includes config)",
         lambda s: append(os.path.join(s, "bitcoin", "btc_tx.h"), '#include "cd_config.h"\n'),
         'upward include "cd_config.h"')
    case("include with a folder",
         lambda s: append(os.path.join(s, "sync", "cd_status.c"), '#include "pg/cd_pg.h"\n'),
         "include headers by bare name")
    case("unknown header",
         lambda s: append(os.path.join(s, "sync", "cd_status.c"), '#include "cd_nowhere.h"\n'),
         "no room has this header")
    case("unknown room",
         lambda s: (os.makedirs(os.path.join(s, "attic")),
                    append(os.path.join(s, "attic", "x.c"), "int x;\n")),
         "unknown room 'attic'")
    case("file longer than the limit",
         lambda s: append(os.path.join(s, "common", "cd_util.c"), "\n" * (MAX_LINES + 1)),
         f"(more than {MAX_LINES})")
    case("src/daemon/ too large",
         # a quarter of the tree's lines more in the programs' room: over
         # the 10% bound whatever the tree's size
         lambda s: append(os.path.join(s, DAEMON_ROOM, "main.c"),
                          "/* */\n" * (sum(open(os.path.join(d, f)).read().count("\n")
                                            for d, _, fs in os.walk(s) for f in fs
                                            if f.endswith((".c", ".h"))) // 4)),
         f"src/{DAEMON_ROOM}/:")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="source tree to check (default: this one)")
    ap.add_argument("--self-test", action="store_true",
                    help="check that every rule fails when broken")
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(a.root, "src")):
        print(f"check_layers.py: {a.root}/src: no such directory", file=sys.stderr)
        return 2
    if a.self_test:
        return self_test(a.root)
    problems, summary = check(a.root)
    for line in summary:
        print(line)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"check_layers.py: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("layering OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
