#!/usr/bin/env bash
# The default search (`neuromosaic` with no arguments) three times, each in a fresh directory with
# its own experiment.seed; prints seconds, best val/test accuracy and parameters per run.
# Record the results in docs/benchmarks.md with the machine state.
#   bash benchmarks/default_run.sh            # seeds 1 2 3
#   SEEDS="0" bash benchmarks/default_run.sh
#   ARGS="encoder=resnet1d" bash benchmarks/default_run.sh   # the same with other settings
set -euo pipefail
NEUROMOSAIC=${NEUROMOSAIC:-neuromosaic}
for seed in ${SEEDS:-1 2 3}; do
  dir=$(mktemp -d)
  start=$(date +%s.%N)
  (cd "$dir" && "$NEUROMOSAIC" ${ARGS:-} experiment.seed="$seed" experiment.name="default-seed-$seed" > out.txt 2> err.txt)
  end=$(date +%s.%N)
  python3 - "$dir/runs/default-seed-$seed/summary.json" "$seed" "$start" "$end" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
best = summary["best"]
print(f"seed {sys.argv[2]}: {float(sys.argv[4]) - float(sys.argv[3]):.0f} s, best val {best['val_accuracy']:.3f}, "
      f"test {best['test_accuracy']:.3f}, params {best['params']:,}, trials {summary['trials']}")
PY
done
