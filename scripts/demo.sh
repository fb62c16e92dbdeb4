#!/usr/bin/env bash
# The main job's demo: placeholder until the simulated node lands.
echo "demo: not yet available"
