#!/usr/bin/env bash
# Run the embedded-pool benchmark on the shared datasets, one at a time, writing
# benchmarks/results/<dataset>.json as each finishes (see BENCHMARKS.md for the budget).
# Usage: scripts/run-benchmarks.sh [DATASET...]   (env: TEST_SIZE, ITERATIONS, SAMPLE_SIZE, OUT, POOL; defaults: the
# paper's sizes, 300 test sentences and 4 iterations of 25)
set -euo pipefail
cd "$(dirname "$0")/.."
TEST_SIZE=${TEST_SIZE:-300}
ITERATIONS=${ITERATIONS:-4}
SAMPLE_SIZE=${SAMPLE_SIZE:-25}
OUT=${OUT:-benchmarks/results}
POOL=${POOL:-examples/pool-local.yaml}
datasets=("$@")
if [ ${#datasets[@]} -eq 0 ]; then
  datasets=(crossner_politics broad_twitter_corpus bc5cdr crossner_ai crossner_literature crossner_music crossner_science)
fi
for ds in "${datasets[@]}"; do
  .venv/bin/diziner bench "$ds" --pool "$POOL" --out "$OUT" \
    --test-size "$TEST_SIZE" --iterations "$ITERATIONS" --sample-size "$SAMPLE_SIZE" --quiet
done
