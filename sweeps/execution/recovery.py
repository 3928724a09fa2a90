"""Resume a sweep whose Ray snapshot cannot be read, from the sweep's own records.

Ray writes its experiment snapshot in place, not atomically, so a driver killed mid-write leaves
a torn file (measured: a 0-byte experiment_state-*.json). Handed such a folder, Ray logs a
traceback and silently starts an empty experiment. So `--resume` first checks that the snapshot
can be read (`snapshot_problem`). When it cannot, the sweep is rebuilt (`recover`) from what this
project writes itself, each record atomically:

- trials.parquet: the trials that finished stay finished;
- the Optuna study: the trials that were running are run again with exactly their parameters
  (the recovered searcher adopts the RUNNING Optuna trials), from their last trial checkpoint;
- sweep.json: the budget; the rest of it is sampled as usual;
- MLflow: a re-queued trial keeps its child run; runs whose trial is not coming back are ended.

Ray's torn experiment folder is set aside, never deleted: it stays where it is (the finished
trials' checkpoint_path in trials.parquet point into it) and the sweep goes on in a new
experiment folder, named in sweep.json.
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pyarrow.fs
import ray.cloudpickle
import torch
from ray.train._internal.storage import get_fs_and_path

from sweeps.execution.reconcile import SETTLED, load_study, reconcile, row_from_study  # noqa: F401
from sweeps.execution.storage import sweep_experiments
from sweeps.execution.trial import TRAINING_STATE_FILE
from sweeps.records.folder import MLFLOW_PENDING, TRIALS
from sweeps.records.mlflow_client import ResilientClient
from sweeps.records.results import ResultsTable
from sweeps.search.searcher import RAY_TRIAL_ID, RAY_TRIAL_LATEST, RESUME_CHECKPOINT

if TYPE_CHECKING:
    from sweeps.records.state import SweepState
    from sweeps.space.search_space import SearchSpace

log = logging.getLogger(__name__)

# Ray's snapshot: the controller state (JSON) and the pickles written beside it at each step.
SNAPSHOT_JSON = "experiment_state-*.json"
SNAPSHOT_PICKLES = ("tuner.pkl", "searcher-state-*.pkl", "search_gen_state-*.json", "callback-states-*.pkl")


@dataclass(frozen=True)
class Recovered:
    """What a recovered sweep runs: the Optuna trials to run again and how many new ones to sample."""

    finished: int
    requeued: list[optuna.trial.FrozenTrial]
    to_sample: int
    experiment: str      # the new Ray experiment folder's name
    reason: str
    why: str = "snapshot unreadable"

    @property
    def count(self) -> int:
        """How many times this sweep has been recovered, this time included."""
        return int(self.experiment.rsplit("-r", 1)[1])

    @property
    def to_run(self) -> int:
        return len(self.requeued) + self.to_sample

    def message(self) -> str:
        return (f"{self.why}; recovered {self.finished} finished, {len(self.requeued)} re-queued, "
                f"{self.to_sample} to sample ({self.reason}; Ray's files are kept as they are)")


# -- is the snapshot readable? -------------------------------------------------------------

def snapshot_problem(experiment: str) -> str | None:
    """Why Ray cannot restore the experiment folder `experiment` (path or URI); None when it can.

    Checks the newest file of each kind that Tuner.restore reads: the experiment state parses as
    JSON, and the tuner, searcher, search-generator and callback pickles load.
    """
    fs, root = get_fs_and_path(experiment)
    names = _names(fs, root)
    newest = {pattern: max(_matching(names, pattern), default=None) for pattern in (SNAPSHOT_JSON, *SNAPSHOT_PICKLES)}
    if newest[SNAPSHOT_JSON] is None or newest["tuner.pkl"] is None:
        return f"no Ray experiment state in {experiment}"
    for pattern, name in newest.items():
        if name is None:
            continue
        with fs.open_input_stream(f"{root}/{name}") as stream:
            data = stream.readall()
        try:
            if pattern == SNAPSHOT_JSON:
                state = json.loads(data)
                if not (isinstance(state, dict) and {"trial_data", "runner_data"} <= state.keys()):
                    return f"{name}: not a Ray experiment state"
            else:
                ray.cloudpickle.loads(data)
        except Exception as err:  # a torn file fails in many ways: JSON, EOF, unpickling errors
            return f"{name}: {'empty file' if not data else type(err).__name__} ({len(data)} bytes)"
    return None


def _names(fs: pyarrow.fs.FileSystem, path: str) -> list[str]:
    selector = pyarrow.fs.FileSelector(path, allow_not_found=True, recursive=False)
    return [info.base_name for info in fs.get_file_info(selector)]


def _matching(names: list[str], pattern: str) -> list[str]:
    regex = re.compile(re.escape(pattern).replace(r"\*", ".*") + "$")
    return [n for n in names if regex.match(n)]


# -- rebuilding the sweep from its records -----------------------------------------------------

def recover(space: SearchSpace, state: SweepState, out: Path, reason: str,
            why: str = "snapshot unreadable") -> Recovered:
    """Settle what the records already settle and decide what runs again; writes no Ray state.

    Re-running this after another crash is safe: it reads the same records and decides the same.
    """
    table = ResultsTable(out / TRIALS)
    study = load_study(space, state)
    running = reconcile(space, state, out, table).running
    rows = {r["trial_id"]: r for r in table.rows()}
    remaining = max(0, state.trials - len(rows))
    requeued, dropped = running[:remaining], running[remaining:]
    for trial in dropped:   # more were running than the budget has room for: never the case in practice
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    mlflow = ResilientClient(state.tracking_uri, out / MLFLOW_PENDING)
    for trial in requeued:
        checkpoint = last_checkpoint(state, trial, logged_epoch(mlflow, state, trial.user_attrs.get(RAY_TRIAL_ID)))
        if checkpoint:
            optuna.Trial(study, trial._trial_id).set_user_attr(RESUME_CHECKPOINT, checkpoint)
    keep = {t.user_attrs[RAY_TRIAL_ID] for t in requeued if RAY_TRIAL_ID in t.user_attrs}
    end_stray_runs(state, out, rows, keep, "the driver stopped and this trial was not resumed")
    return Recovered(len(rows), requeued, remaining - len(requeued), next_experiment(state.ray_experiment), reason, why)


def next_experiment(name: str) -> str:
    """`sweep-1a2b3c4d` -> `sweep-1a2b3c4d-r1` -> `sweep-1a2b3c4d-r2`: a fresh folder for each recovery."""
    base, _, count = re.fullmatch(r"(.*?)(-r(\d+))?", name).group(1, 2, 3)
    return f"{base}-r{int(count or 0) + 1}"


def last_checkpoint(state: SweepState, trial: optuna.trial.FrozenTrial, up_to_epoch: int) -> str | None:
    """The newest checkpoint of `trial` with a loadable training state of epoch `up_to_epoch` at most.

    A trial continues from a checkpoint no newer than its last epoch in MLflow: the epochs between
    would otherwise never be logged (the driver died before it sent them). Ray's own snapshot keeps
    the same rule by naming a checkpoint only after its epochs are logged. Looks in every experiment
    folder of this sweep (a trial re-queued once ran in the folder of the recovery before), newest
    Ray trial first, then at the checkpoint an earlier recovery gave it. A checkpoint that a killed
    worker left half-uploaded does not load and is skipped.
    """
    fs, root = get_fs_and_path(state.storage)
    experiments = sweep_experiments(_names(fs, root), state.ray_experiment)
    candidates = []
    for ray_id in dict.fromkeys(filter(None, (trial.user_attrs.get(RAY_TRIAL_LATEST),
                                              trial.user_attrs.get(RAY_TRIAL_ID)))):
        folders = [f"{e}/{n}" for e in experiments for n in _names(fs, f"{root}/{e}")
                   if n.startswith(f"run_trial_{ray_id}_")]
        candidates += sorted((f"{state.storage.rstrip('/')}/{f}/{n}" for f in folders
                              for n in _names(fs, f"{root}/{f}") if re.fullmatch(r"checkpoint_\d+", n)),
                             key=lambda p: int(p.rsplit("_", 1)[1]), reverse=True)
    candidates += [trial.user_attrs[RESUME_CHECKPOINT]] if trial.user_attrs.get(RESUME_CHECKPOINT) else []
    for checkpoint in candidates:
        epoch = _epoch_of(f"{checkpoint}/{TRAINING_STATE_FILE}")
        if epoch is not None and epoch <= up_to_epoch:
            return checkpoint
    return None


def _epoch_of(path: str) -> int | None:
    """The epoch of the training state at `path` (path or URI); None when it is missing or does not load."""
    try:
        fs, fs_path = get_fs_and_path(path)
        with fs.open_input_stream(fs_path) as stream:
            return int(torch.load(io.BytesIO(stream.readall()), map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # missing, truncated or corrupt: not a state to continue from
        return None


def logged_epoch(mlflow: ResilientClient, state: SweepState, trial_id: str | None) -> int:
    """The last epoch of `trial_id` in MLflow (0: none, or the server cannot be reached)."""
    if trial_id is None:
        return 0
    runs = mlflow.retry(mlflow.client.search_runs, [state.experiment_id], max_results=1,
                        filter_string=f"tags.trial_id = '{trial_id}' and "
                                      f"tags.mlflow.parentRunId = '{state.parent_run_id}'")
    history = mlflow.retry(mlflow.client.get_metric_history, runs[0].info.run_id, "test_accuracy") if runs else None
    return max((m.step for m in history or []), default=0)


# -- MLflow: no child run left RUNNING ----------------------------------------------------------

def end_stray_runs(state: SweepState, out: Path, rows: dict[str, dict], keep: set[str], why: str) -> int:
    """End the sweep's child runs still RUNNING, except those of trials in `keep` (coming back).

    A run whose trial has a row ends as that row says; one without ends KILLED, its `state` tag
    saying why. Writes are queued like all MLflow writes; with the server down, runs are left as
    they are (and ended by the next resume). Returns how many runs were ended.
    """
    mlflow = ResilientClient(state.tracking_uri, out / MLFLOW_PENDING)
    runs = mlflow.retry(mlflow.client.search_runs, [state.experiment_id], max_results=5000,
                        filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}' "
                                      "and attributes.status = 'RUNNING'")
    if runs is None:
        log.warning("MLflow unreachable: child runs left RUNNING are ended at the next resume")
        return 0
    ended = 0
    for run in runs:
        trial_id = run.data.tags.get("trial_id")
        if trial_id in keep:
            continue
        row = rows.get(trial_id)
        if row is not None:
            tags, status = {"state": row["state"]}, SETTLED[row["state"]][1]
        else:
            tags, status = {"state": "INTERRUPTED", "state_reason": why}, "KILLED"
        mlflow.log_batch(run.info.run_id, tags=tags)
        mlflow.set_terminated(run.info.run_id, status)
        ended += 1
    return ended
