#!/usr/bin/env bash
# A torn Ray snapshot on purpose, the same way every time, from outside the test suite:
# a 6-trial digits sweep is SIGKILLed after its first finished trial, the newest
# experiment_state-*.json is truncated to 0 bytes, and `--resume` is run. Prints what the resume
# printed and what the sweep's records hold afterwards.
#
#   benchmarks/torn_snapshot.sh [DIR]      KILL=driver kills the driver alone (as `kill -9 PID` would),
#                                          leaving Ray's agents orphaned for --resume to end;
#                                          the default KILL=group takes its whole process group.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ROOT=${1:-$(mktemp -d)}
OUT=$ROOT/sweep
mkdir -p "$ROOT"
export PYTHONPATH=$PWD WEIGHTMOM_CHECKPOINT_EVERY_S=0   # every epoch checkpoints: in-flight trials can continue

cat > "$ROOT/torn.yaml" <<'EOF'
name: torn-demo
trials: 6
concurrency: 2
resources: {cpu: 1, gpu: 0}
early_stopping: {enabled: true, grace_period: 3, reduction_factor: 2}
fixed: {dataset: digits, model: lenet300, epochs: 6, batch_size: 128, device: cpu, pruner: {prune_end: 3}}
params:
  method: {type: categorical, choices: [weightmom, gmp]}
  density: {type: float, low: 0.03, high: 0.3, log: true}
  lr: {type: float, low: 0.0001, high: 0.1, log: true}
EOF

rows() { "$PY" -c "import pyarrow.parquet as pq, sys, os; p=sys.argv[1]
print(pq.read_metadata(p).num_rows if os.path.exists(p) else 0)" "$OUT/trials.parquet"; }

setsid "$PY" -m weightmom_sweeps sweep "$ROOT/torn.yaml" --out "$OUT" --verbose 0 > "$ROOT/first.log" 2>&1 &
DRIVER=$!
started=$SECONDS
until [ "$(rows)" -ge 1 ]; do
  kill -0 "$DRIVER" 2>/dev/null || { echo "driver ended early:"; tail -20 "$ROOT/first.log"; exit 1; }
  sleep 0.2
done
if [ "${KILL:-group}" = driver ]; then kill -9 "$DRIVER"; else kill -9 -- "-$DRIVER"; fi
wait "$DRIVER" 2>/dev/null || true
echo "killed the driver (${KILL:-group}) after $((SECONDS - started)) s with $(rows) finished trial(s)"
SNAPSHOT=$(ls "$OUT"/ray/*/experiment_state-*.json | sort | tail -1)
: > "$SNAPSHOT"
echo "truncated $(basename "$SNAPSHOT") to $(stat -c %s "$SNAPSHOT") bytes"
sleep 3
SESSION=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['session_dir'])" "$OUT/ray_session.json")
leftovers() { "$PY" -c "import sys; from sweeps.execution.ray_session import psutil, _holds_files_in
print(sorted(p.name() for p in psutil.process_iter() if _holds_files_in(p, sys.argv[1] + '/')))" "$SESSION"; }
echo "processes left by the killed driver's Ray ($(basename "$SESSION")) before --resume: $(leftovers)"

set +e
"$PY" -m weightmom_sweeps sweep "$ROOT/torn.yaml" --out "$OUT" --verbose 0 --resume > "$ROOT/resume.out" 2> "$ROOT/resume.err"
code=$?
set -e
echo "--- resume exit code: $code; its stderr (weightmom lines) and summary:"
grep '^weightmom' "$ROOT/resume.err" || true
grep -E 'trials settled' "$ROOT/resume.out" || true
echo "processes left by the killed driver's Ray after --resume: $(leftovers)"

"$PY" - "$OUT" <<'EOF'
import sys
from collections import Counter
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

from sweeps import load_state, sweep_rows

out = Path(sys.argv[1])
state = load_state(out)
rows = sweep_rows(out)
print(f"trials.parquet: {len(rows)} rows, {len({r['trial_id'] for r in rows})} distinct trial ids, "
      f"{dict(Counter(r['state'] for r in rows))}; resumed_from_epoch {[r['resumed_from_epoch'] for r in rows]}")
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name="torn-demo", storage=state.optuna_storage)
print(f"Optuna: {len(study.trials)} trials, {dict(Counter(t.state.name for t in study.trials))}")
runs = MlflowClient(state.tracking_uri).search_runs(
    [state.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}'")
print(f"MLflow child runs: {len(runs)}, {dict(Counter(r.info.status for r in runs))}, "
      f"{len({r.data.tags['trial_id'] for r in runs})} distinct trial ids")
print(f"Ray experiment folders: {sorted(p.name for p in (out / 'ray').iterdir())}")
EOF
