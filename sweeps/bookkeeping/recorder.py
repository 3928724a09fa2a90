"""The sweep driver's record keeper: a Ray Tune callback.

Runs on the driver, so workers need neither MLflow access nor shared disk for
results. Per trial: one MLflow child run (run_log.py) and one row in
trials.parquet (trial_rows.py). After every finished trial: the Pareto
front, its plots and table, logged on the parent run (front.py).
Everything it keeps across a driver crash lives in files or in MLflow itself,
so `--resume` re-attaches instead of duplicating.
"""

from __future__ import annotations

from pathlib import Path

from ray.tune import Callback

from sweeps.bookkeeping.front import FrontRefresh
from sweeps.bookkeeping.run_log import RunLog
from sweeps.bookkeeping.trial_rows import TrialRows, step_row
from sweeps.records.folder import MLFLOW_PENDING, STEPS, TRIALS
from sweeps.records.requeue import identity, trial_params
from sweeps.space.search_space import SearchSpace


class SweepRecorder(Callback):
    """Ray's trial events, handed to the run log, the results rows and the front. Ray pickles this callback
    into the experiment state: each piece leaves its clients and caches out of the pickle."""

    def __init__(self, space: SearchSpace, out: Path, tracking_uri: str, experiment_id: str,
                 parent_run_id: str, optuna_storage: str) -> None:
        self.space = space
        self.runs = RunLog(tracking_uri, out / MLFLOW_PENDING, experiment_id, parent_run_id, space.name)
        self.results = TrialRows(out / TRIALS)
        self.steps = TrialRows(out / STEPS)   # a chain's finished steps but its last: front points of their own
        self.front = FrontRefresh(space, out, parent_run_id, optuna_storage)

    def __setstate__(self, state: dict) -> None:
        if "runs" not in state:   # pickled by a version that kept everything in one object: rebuild the pieces
            self.__init__(state["space"], state["out"], state["tracking_uri"], state["experiment_id"],
                          state["parent_run_id"], state["optuna_storage"])
            return
        self.__dict__.update(state)
        if "steps" not in state:   # pickled before chains
            self.steps = TrialRows(self.results.path.with_name(STEPS))

    def points(self) -> list[dict]:
        """The front's candidates: every trial's row and every chain step's."""
        return self.results.rows() + self.steps.rows()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.runs.replay(self.results.set_run_id)
        self.runs.run_for(_id(trial), trial_params(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.runs.add(_id(trial), trial_params(trial.config), result)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        # After a driver crash the trial continues from this checkpoint and never reports the
        # epochs before it again: they must be in MLflow (or the pending file) before Ray's
        # experiment snapshot names the checkpoint. Ray calls this after on_trial_result.
        run_id = self.runs.flush(_id(trial), trial_params(trial.config))
        result = trial.last_result or {}
        if result.get("step_end") and result.get("epoch", 0) < self.space.epochs:   # a chain's step, not its last
            row = step_row(_id(trial), trial, result, checkpoint.path, run_id)
            self.steps.record_row(row)
            self.front.refresh(self.points, self.runs.mlflow, new=row)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.runs.replay(self.results.set_run_id)
        finished = (trial.last_result or {}).get("epoch", 0) >= self.space.epochs
        self._finish(trial, "COMPLETE" if finished else "PRUNED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, "FAILED", error=_error_message(trial))

    def on_experiment_end(self, trials, **info) -> None:
        # The trials are done, so waiting costs no GPU time: give a tracking server that is down
        # FINAL_WAIT_S to come back before settling for the pending file.
        self.runs.settle(self.results.set_run_id)
        self.results.flush()
        self.steps.flush()
        self.front.refresh(self.points, self.runs.mlflow, final=True)
        self.runs.report_unsent()

    def _finish(self, trial, state: str, error: str | None = None) -> None:
        trial_id, config = _id(trial), trial_params(trial.config)
        run_id = self.runs.flush(trial_id, config)   # None: tracking server down, the run comes at replay
        # The row first: Ray has told the searcher already, and a driver killed before the row is
        # written leaves a finished Optuna trial that recovery has to rebuild the row of.
        self.results.record(trial_id, trial, state, run_id, error)
        self.runs.finish(trial_id, config, state, error)
        self.front.refresh(self.points, self.runs.mlflow, new=self.results.table.row(trial_id))


def _id(trial) -> str:
    """The trial's id in MLflow and the table: a re-queued trial keeps the one it had before recovery."""
    return identity(trial.trial_id, trial.config)


def _error_message(trial) -> str:
    """The exception's last line from Ray's error file: the reason, without the traceback."""
    try:
        lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
        return lines[-1][:1000] if lines else "unknown error"
    except (OSError, TypeError):
        return "unknown error"
