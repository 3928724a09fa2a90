"""The sweep driver's record keeper: a Ray Tune callback.

Runs on the driver, so workers need neither MLflow access nor shared disk for
results. Per trial: one MLflow child run (params = resolved config, per-epoch
metrics in batches, state and status at the end), one row in trials.parquet.
A metric's last value is the trial's result (the runs table shows it), so no
`final_*` copies are logged.
After every finished trial: the Pareto front, its plots and table, logged on
the parent run. Everything it keeps across a driver crash lives in files or in
MLflow itself, so `--resume` re-attaches instead of duplicating.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from pathlib import Path

import optuna
from ray.tune import Callback

from sweeps import pareto, plots
from sweeps.mlflow_client import ResilientClient
from sweeps.requeue import identity, trial_params
from sweeps.results import ResultsTable, recorded_name, write_rows
from sweeps.space import SearchSpace
from sweeps.study_plots import study_plots
from weightmom.training import REPORTED_METRICS

log = logging.getLogger(__name__)

EPOCH_METRICS = REPORTED_METRICS   # logged every epoch: val and test side by side
# Table columns, not MLflow metrics: where a trial ran, and what its accuracy's chance level is.
PLACEMENT = ("node_id", "cuda_visible_devices", "resumed_from_epoch", "num_classes")
# MLflow run status per trial state: a trial stopped early by the scheduler did what it was asked,
# so its run is FINISHED (with the tag state=PRUNED), not KILLED; only an errored trial FAILED.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAILED": "FAILED"}
FLUSH_EVERY = 30   # buffered metric values per trial before a log_batch request
FINAL_WAIT_S = 60.0    # at the end, how long to wait for an unreachable tracking server
PLOTS_EVERY_S = 30.0   # plots cost the driver a second of CPU that trials on the same machine want


def flatten(prefix: str, values: dict) -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(f"{prefix}{key}.", value))
        else:
            out[f"{prefix}{key}"] = value
    return out


class SweepRecorder(Callback):
    def __init__(self, space: SearchSpace, out: Path, tracking_uri: str, experiment_id: str,
                 parent_run_id: str, optuna_storage: str) -> None:
        self.space, self.out = space, out
        self.tracking_uri, self.experiment_id, self.parent_run_id = tracking_uri, experiment_id, parent_run_id
        self.optuna_storage = optuna_storage
        self._mlflow: ResilientClient | None = None
        self._table: ResultsTable | None = None
        self._runs: dict[str, str] = {}
        self._logged_epoch: dict[str, int] = {}
        self._buffers: dict[str, list] = {}
        self._plotted_at = 0.0
        self._unlogged: dict[str, tuple] = {}   # finished trials whose child run could not be created yet

    # Created lazily: Ray pickles callbacks into the experiment state, clients don't pickle.
    @property
    def mlflow(self) -> ResilientClient:
        if self._mlflow is None:
            self._mlflow = ResilientClient(self.tracking_uri, self.out / "mlflow_pending.jsonl")
        return self._mlflow

    @property
    def table(self) -> ResultsTable:
        if self._table is None:
            self._table = ResultsTable(self.out / "trials.parquet")
        return self._table

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_mlflow": None, "_table": None, "_runs": {}, "_buffers": {}, "_logged_epoch": {},
                "_unlogged": {}}

    # -- Ray Tune hooks -------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._log_unlogged()
        self._run_for(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        epoch = int(result.get("epoch", 0))
        if epoch <= self._logged_epoch.get(_id(trial), 0):
            return  # already in MLflow (a resumed trial replaying epochs)
        timestamp = int(time.time() * 1000)
        buffer = self._buffers.setdefault(_id(trial), [])
        buffer += [(k, float(result[k]), timestamp, epoch) for k in EPOCH_METRICS if k in result]
        self._logged_epoch[_id(trial)] = epoch
        if len(buffer) >= FLUSH_EVERY:
            self._flush(trial)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        # After a driver crash the trial continues from this checkpoint and never reports the
        # epochs before it again: they must be in MLflow (or the pending file) before Ray's
        # experiment snapshot names the checkpoint. Ray calls this after on_trial_result.
        self._flush(trial)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._log_unlogged()
        finished = (trial.last_result or {}).get("epoch", 0) >= self.space.epochs
        self._finish(trial, "COMPLETE" if finished else "PRUNED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, "FAILED", error=_error_message(trial))

    def on_experiment_end(self, trials, **info) -> None:
        # The trials are done, so waiting costs no GPU time: give a tracking server that is down
        # FINAL_WAIT_S to come back before settling for the pending file.
        deadline = time.monotonic() + FINAL_WAIT_S
        while True:
            self.mlflow.flush(force=True)
            self._log_unlogged()
            if not (self.mlflow.pending or self._unlogged) or time.monotonic() > deadline:
                break
            time.sleep(2.0)
        self._refresh_front(final=True)
        unsent = self.mlflow.flush(force=True)
        if unsent:
            log.warning("%d MLflow writes could not be sent; they are kept in %s",
                        unsent, self.mlflow.pending_file)
        if self._unlogged:
            log.warning("no MLflow run could be created for trials %s; their results are in trials.parquet",
                        ", ".join(self._unlogged))

    # -- pieces ---------------------------------------------------------------------------
    def _run_for(self, trial) -> str | None:
        """The trial's child run: cached, found by tag (after a resume), or created."""
        if _id(trial) in self._runs:
            return self._runs[_id(trial)]
        client = self.mlflow.client
        found = self.mlflow.retry(client.search_runs, [self.experiment_id], max_results=1,
                                  filter_string=f"tags.trial_id = '{_id(trial)}' and "
                                                f"tags.mlflow.parentRunId = '{self.parent_run_id}'")
        if found is None:
            return None  # server unreachable: try again at the next event
        if found:
            run_id = found[0].info.run_id
            history = self.mlflow.retry(client.get_metric_history, run_id, "test_accuracy") or []
            self._logged_epoch[_id(trial)] = max((m.step for m in history), default=0)
        else:
            run = self.mlflow.retry(client.create_run, self.experiment_id, run_name=run_name(_id(trial)),
                                    tags={"mlflow.parentRunId": self.parent_run_id, "trial_id": _id(trial),
                                          "sweep": self.space.name})
            if run is None:
                return None
            run_id = run.info.run_id
            self.mlflow.log_batch(run_id, params=run_params(self.space, trial_params(trial.config)))
        self._runs[_id(trial)] = run_id
        return run_id

    def _flush(self, trial) -> None:
        run_id = self._run_for(trial)
        buffer = self._buffers.get(_id(trial))
        if run_id and buffer:
            self.mlflow.log_batch(run_id, metrics=buffer)
            self._buffers[_id(trial)] = []

    def _finish(self, trial, state: str, error: str | None = None) -> None:
        self._flush(trial)
        run_id = self._run_for(trial)
        if run_id is None:  # tracking server down: log this trial when it is back
            self._unlogged[_id(trial)] = (trial, state, error)
        last = trial.last_result or {}
        row = {
            "trial_id": _id(trial), "state": state,
            **{f"config.{recorded_name(k)}": v for k, v in flatten("", trial_params(trial.config)).items()},
            **{k: last.get(k) for k in EPOCH_METRICS},
            "epochs": last.get("epoch"), "train_seconds": last.get("time_total_s"),
            **{k: last.get(k) for k in PLACEMENT},
            "mlflow_run_id": run_id, "checkpoint_path": trial.checkpoint.path if trial.checkpoint else None,
            "error": error, "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        # The row first: Ray has told the searcher already, and a driver killed before the row is
        # written leaves a finished Optuna trial that recovery has to rebuild the row of.
        self.table.upsert(row)
        if run_id:
            self._log_final(trial, run_id, state, error)
        self._refresh_front()

    def _log_final(self, trial, run_id: str, state: str, error: str | None) -> None:
        tags = {"state": state, **({"error": error} if error else {})}
        if state == "PRUNED":
            tags["mlflow.runName"] = run_name(_id(trial), stopped_early=True)
        self.mlflow.log_batch(run_id, tags=tags)
        self.mlflow.set_terminated(run_id, RUN_STATUS[state])

    def _log_unlogged(self) -> None:
        """Create the runs that an unreachable server refused earlier, with all their metrics."""
        for trial_id, (trial, state, error) in list(self._unlogged.items()):
            run_id = self._run_for(trial)
            if run_id is None:
                return
            self._flush(trial)
            self._log_final(trial, run_id, state, error)
            self.table.upsert({**next(r for r in self.table.rows() if r["trial_id"] == trial_id),
                               "mlflow_run_id": run_id})
            del self._unlogged[trial_id]

    def _refresh_front(self, final: bool = False) -> None:
        """Recompute the front from COMPLETE rows: pareto.parquet and the hypervolume every time,
        the plots and parent-run artifacts at most every PLOTS_EVERY_S and at the end."""
        metrics, modes = self.space.metrics, self.space.modes
        rows = self.table.rows()
        front = pareto.front_rows(rows, metrics, modes)
        write_rows(self.out / "pareto.parquet", front)
        folder = self.out / "plots"
        folder.mkdir(exist_ok=True)
        (folder / "front.txt").write_text(pareto.format_table(front, front_columns(self.space)) + "\n")
        step = sum(r["state"] == "COMPLETE" for r in rows)
        volume, _ = pareto.sweep_hypervolume(rows, metrics, modes)
        self.mlflow.log_batch(self.parent_run_id, metrics=[
            ("hypervolume", float(volume), int(time.time() * 1000), step),
            ("front_size", float(len(front)), int(time.time() * 1000), step),
            ("trials_finished", float(len(rows)), int(time.time() * 1000), step)])
        if not final and time.monotonic() - self._plotted_at < PLOTS_EVERY_S:
            return
        self._plotted_at = time.monotonic()
        paths = []
        if front:
            plots.front_png(rows, front, metrics, modes, folder / "pareto_front.png")
            plots.front_html(rows, front, metrics, modes, folder / "pareto_front.html")
            paths = [folder / "pareto_front.png", folder / "pareto_front.html"]
        try:
            study = optuna.load_study(study_name=self.space.name, storage=self.optuna_storage)
            paths += study_plots(study, metrics, folder)
        except Exception as err:  # plots are a view; a sweep must not die for them
            log.warning("study plots skipped: %s", err)
        paths += [folder / "front.txt"]
        for path in paths:
            self.mlflow.log_artifact(self.parent_run_id, str(path), "pareto")
        if final:
            self.mlflow.log_artifact(self.parent_run_id, str(self.out / "pareto.parquet"), "pareto")


def _id(trial) -> str:
    """The trial's id in MLflow and the table: a re-queued trial keeps the one it had before recovery."""
    return identity(trial.trial_id, trial.config)


def run_name(trial_id: str, stopped_early: bool = False) -> str:
    return f"trial {trial_id}" + (" (stopped early)" if stopped_early else "")


def run_params(space: SearchSpace, config: dict) -> dict:
    """The child run's params: the fully resolved TrainConfig, the density asked for as `target_density`."""
    resolved = space.train_config(config)
    resolved = dataclasses.replace(resolved, density=resolved.target_density)
    return {recorded_name(k): v for k, v in flatten("", dataclasses.asdict(resolved)).items()}


def front_columns(space: SearchSpace) -> list[str]:
    """What a reader of the front wants: the objectives (each val_* with its test_* twin), then the searched
    parameters."""
    return ["trial_id", *pareto.shown_metrics(space.metrics),
            *[f"config.{recorded_name(name)}" for name in space.params]]


def _error_message(trial) -> str:
    """The exception's last line from Ray's error file: the reason, without the traceback."""
    try:
        lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
        return lines[-1][:1000] if lines else "unknown error"
    except (OSError, TypeError):
        return "unknown error"

