#!/usr/bin/env bash
# The main job (./dev run): conduitd indexing a generated regtest chain served
# by the simulated node into a throw-away PostgreSQL, then queried.
cd "$(dirname "$0")/.."
exec /usr/bin/python3 scripts/demo.py "$@"
