#!/usr/bin/env bash
# Every table of README's performance section at its full size, then each as Markdown to paste.
# Run it on a quiet machine (each run records the load in its JSON):
#   bash benchmarks/readme_tables.sh [extra options for every bench_sweep.py run, e.g. --note "..."]
# Results are written to benchmarks/results/ (tracked); about 60 minutes on 2 quiet CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
S=benchmarks/bench_sweep.py
python $S "$@"                                   # main: separate processes, ResNet-18 224², N=256, 3 rounds
python $S --mode interleaved "$@"                # main: one process
python $S --table layers --mode interleaved "$@" # 1, 2, 4 layers
python $S --table sizes --mode interleaved "$@"  # N = 16, 96, 256
python $S --table steady --repeats 12 "$@"       # bare and attrstream alone: batch cycles, fixed cost apart
python $S --table fixed-cost --repeats 5 "$@"    # a one-batch sweep, phase by phase
python $S --table multi-sample-memory --image-size 112 --batch-size 8 -n 8 --repeats 1 "$@"
python $S --table memory-scaling "$@"
python benchmarks/bench_store.py
python benchmarks/bench_store.py --dir /dev/shm  # no disk: each case's CPU path
python benchmarks/bench_finalize.py --repeats 7   # finalize by N: the writer's pools against reading back
python benchmarks/bench_kernels.py
M=benchmarks/bench_metrics.py
R224=(--model resnet18 --num-classes 0 --image-size 224 -n 8 --batch-size 16)
python $M; python $M --threads 1                 # deletion curves: demo CNN 64², torch's threads and one
python $M "${R224[@]}"; python $M "${R224[@]}" --threads 1
for f in benchmarks/results/*.json; do python benchmarks/to_markdown.py "$f"; done
