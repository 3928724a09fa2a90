#!/usr/bin/env bash
# The CUDA path end to end, for a machine with one GPU (under 5 minutes there):
#   1. `weightmom train` on cifar10-mini with device cuda, dense and weightmom at 5%;
#   2. a 4-trial sweep whose trials ask for half a GPU each, so two share it;
#   3. the weightmom/dense step-time ratio on the GPU (benchmarks/pruner_overhead.py).
# Its figures go to one JSON file: the argument, else $OUT/gpu_check.json, else runs/gpu_check/gpu_check.json.
# Without a GPU it stops at once with one line and exit code 1. Run it from the repository root,
# with ../shared/data/cifar10-mini beside the repository:
#   benchmarks/gpu_check.sh [FIGURES.json]
set -euo pipefail
cd "$(dirname "$0")/.."
# The project's venv (make test creates it); BIN=/path/to/venv/bin to use another.
BIN=${BIN:-.venv/bin}
test -x "$BIN/weightmom" || { echo "gpu_check: $BIN/weightmom not found (make test creates .venv, or set BIN)" >&2; exit 2; }
PY=$BIN/python
DATA=../shared/data/cifar10-mini
WORK=runs/gpu_check
FIGURES=${1:-${OUT:+$OUT/gpu_check.json}}
FIGURES=${FIGURES:-$WORK/gpu_check.json}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is false); nothing run" >&2
  exit 1
fi
test -d "$DATA/cifar-10-batches-py" || { echo "gpu_check: $DATA is missing (../shared beside the repository)" >&2; exit 2; }
rm -rf "$WORK" && mkdir -p "$WORK" "$(dirname "$FIGURES")"
begin=$(date +%s)

# 1. One training run per method, on the GPU. 3 epochs of a full-width ResNet-20: seconds each.
for method in dense weightmom; do
  "$BIN/weightmom" train --dataset cifar10 --data-dir "$DATA" --model resnet20 --method "$method" \
    --density 0.05 --epochs 3 --device cuda --quiet --json "$WORK/train-$method.json"
done

# 2. Four trials, two at a time on the one GPU (gpu: 0.5 each). Early stopping off: every trial runs.
cat > "$WORK/space.yaml" <<EOF
name: gpu-check
trials: 4
concurrency: 4
resources: {cpu: 1, gpu: 0.5}
objectives:
  - {metric: val_accuracy, mode: max}
  - {metric: density, mode: min}
early_stopping: false
storage_path: null
fixed:
  dataset: cifar10
  data_dir: $DATA
  model: resnet20
  epochs: 3
  batch_size: 128
  device: cuda
  pruner: {prune_end: 2}
params:
  method: {type: categorical, choices: [weightmom, gmp]}
  density: {type: float, low: 0.02, high: 0.2, log: true}
  lr: {type: float, low: 0.02, high: 0.2, log: true}
EOF
"$BIN/weightmom" sweep "$WORK/space.yaml" --out "$WORK/sweep" --verbose 0

# 3. Step time per method on the GPU, printed as a table; the figures below are read from it.
"$PY" benchmarks/pruner_overhead.py --device cuda --dataset cifar10 --model resnet20 --width 1 \
  --steps 50 --warmup 5 --rounds 5 --threads 0 | tee "$WORK/pruner_overhead.txt"

"$PY" - "$WORK" "$FIGURES" "$begin" <<'EOF'
"""Collect the three parts' figures into one JSON file, and fail if a part did not do what it should."""
import json
import sys
import time
from pathlib import Path

import torch

from sweeps import sweep_rows

work, figures, begin = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
train = {m: json.loads((work / f"train-{m}.json").read_text()) for m in ("dense", "weightmom")}
rows = sweep_rows(work / "sweep")
ms_per_step = {}
for line in (work / "pruner_overhead.txt").read_text().splitlines():
    cells = [c.strip() for c in line.split("|")]
    if len(cells) > 3 and cells[0] in ("dense", "weightmom", "gmp", "gsm", "torch-prune"):
        ms_per_step[cells[0]] = float(cells[1])
result = {
    "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
    "train": {m: {k: t[k] for k in ("test_accuracy", "density", "train_seconds", "epochs")} for m, t in train.items()},
    "sweep": {"trials": len(rows), "complete": sum(r["state"] == "COMPLETE" for r in rows),
              "cuda_visible_devices": sorted({str(r["cuda_visible_devices"]) for r in rows}),
              "trials_seconds": [round(float(r.get("train_seconds") or 0), 1) for r in rows]},
    "ms_per_step": ms_per_step,
    "weightmom_over_dense_step_time": round(ms_per_step["weightmom"] / ms_per_step["dense"], 3),
    "total_seconds": round(time.time() - begin),
}
figures.write_text(json.dumps(result, indent=2))
print(json.dumps(result, indent=2))
if result["sweep"]["complete"] != 4:
    sys.exit(f"gpu_check: {result['sweep']['complete']} of 4 sweep trials completed")
EOF
echo "gpu_check: figures in $FIGURES"
