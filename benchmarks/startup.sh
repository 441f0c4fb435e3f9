#!/usr/bin/env bash
# Start-up time of the console scripts (no torch on these paths): median of 5 with hyperfine if
# installed, else a plain loop.
set -euo pipefail
cd "$(mktemp -d)"
if command -v hyperfine > /dev/null; then
  hyperfine -w 1 -r 5 "neuromosaic --help" "neuromosaic-plugins" "neuromosaic --cfg job"
else
  for cmd in "neuromosaic --help" "neuromosaic-plugins" "neuromosaic --cfg job"; do
    for _ in 1 2 3 4 5; do /usr/bin/time -f "%e" $cmd > /dev/null 2>> times.txt; done
    echo "$cmd: $(sort -n times.txt | sed -n 3p) s (median of 5)"; rm times.txt
  done
fi
