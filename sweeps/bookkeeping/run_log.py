"""The sweep's MLflow child runs: one per trial, under the sweep's parent run.

Params are the resolved config, per-epoch metrics go in batches (a chain's with the step each epoch is in,
`chain_step`), state and status come at the end.
A metric's last value is the trial's result (the runs table shows it), so no `final_*` copies are
logged. After a driver crash a trial's run is found again by its tag, never created twice; a run
the tracking server could not create while it was down is created, with all its metrics, when it
is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from sweeps.records.mlflow_client import ResilientClient
from sweeps.records.results import recorded_name
from weightmom.contract import config_from_flat, flat_config, reported_metrics

log = logging.getLogger(__name__)

# MLflow run status per trial state: a trial stopped early by the scheduler did what it was asked,
# so its run is FINISHED (with the tag state=PRUNED), not KILLED; only an errored trial FAILED.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAILED": "FAILED"}
FLUSH_EVERY = 30   # buffered metric values per trial before a log_batch request
FINAL_WAIT_S = 60.0    # at the end, how long to wait for an unreachable tracking server


class RunLog:
    """The child runs of a sweep's trials, keyed by trial id; `config` is always the trial's flat config."""

    def __init__(self, tracking_uri: str, pending_file: Path, experiment_id: str, parent_run_id: str,
                 sweep_name: str) -> None:
        self.tracking_uri, self.pending_file = tracking_uri, pending_file
        self.experiment_id, self.parent_run_id, self.sweep_name = experiment_id, parent_run_id, sweep_name
        self._mlflow: ResilientClient | None = None
        self._runs: dict[str, str] = {}
        self._logged_epoch: dict[str, int] = {}
        self._buffers: dict[str, list] = {}
        self._unlogged: dict[str, tuple] = {}   # finished trials whose child run could not be created yet

    # Created lazily: Ray pickles callbacks into the experiment state, clients don't pickle. The rest is
    # rebuilt from MLflow itself after a resume (run_for finds the run and its last logged epoch).
    @property
    def mlflow(self) -> ResilientClient:
        if self._mlflow is None:
            self._mlflow = ResilientClient(self.tracking_uri, self.pending_file)
        return self._mlflow

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_mlflow": None, "_runs": {}, "_buffers": {}, "_logged_epoch": {}, "_unlogged": {}}

    def run_for(self, trial_id: str, config: dict) -> str | None:
        """The trial's child run: cached, found by tag (after a resume), or created. None: server unreachable."""
        if trial_id in self._runs:
            return self._runs[trial_id]
        client = self.mlflow.client
        found = self.mlflow.retry(client.search_runs, [self.experiment_id], max_results=1,
                                  filter_string=f"tags.trial_id = '{trial_id}' and "
                                                f"tags.mlflow.parentRunId = '{self.parent_run_id}'")
        if found is None:
            return None  # server unreachable: try again at the next event
        if found:
            run_id = found[0].info.run_id
            history = self.mlflow.retry(client.get_metric_history, run_id, "test_accuracy") or []
            self._logged_epoch[trial_id] = max((m.step for m in history), default=0)
        else:
            run = self.mlflow.retry(client.create_run, self.experiment_id, run_name=run_name(trial_id),
                                    tags={"mlflow.parentRunId": self.parent_run_id, "trial_id": trial_id,
                                          "sweep": self.sweep_name})
            if run is None:
                return None
            run_id = run.info.run_id
            self.mlflow.log_batch(run_id, params=run_params(config))
        self._runs[trial_id] = run_id
        return run_id

    def add(self, trial_id: str, config: dict, result: dict) -> None:
        """Buffer an epoch's metrics; an epoch already in MLflow (a resumed trial replaying epochs) is skipped."""
        epoch = int(result.get("epoch", 0))
        if epoch <= self._logged_epoch.get(trial_id, 0):
            return
        timestamp = int(time.time() * 1000)
        buffer = self._buffers.setdefault(trial_id, [])
        buffer += [(k, float(result[k]), timestamp, epoch) for k in (*reported_metrics(), "chain_step") if k in result]
        self._logged_epoch[trial_id] = epoch
        if len(buffer) >= FLUSH_EVERY:
            self.flush(trial_id, config)

    def flush(self, trial_id: str, config: dict) -> str | None:
        """Send the buffered metrics; returns the trial's run (None: it could not be created yet)."""
        run_id = self.run_for(trial_id, config)
        buffer = self._buffers.get(trial_id)
        if run_id and buffer:
            self.mlflow.log_batch(run_id, metrics=buffer)
            self._buffers[trial_id] = []
        return run_id

    def finish(self, trial_id: str, config: dict, state: str, error: str | None) -> None:
        """Tag and end the run of a flushed trial; without one (server down), keep the trial for `replay`."""
        run_id = self._runs.get(trial_id)
        if run_id is None:
            self._unlogged[trial_id] = (config, state, error)
        else:
            self._log_final(trial_id, run_id, state, error)

    def _log_final(self, trial_id: str, run_id: str, state: str, error: str | None) -> None:
        tags = {"state": state, **({"error": error} if error else {})}
        if state == "PRUNED":
            tags["mlflow.runName"] = run_name(trial_id, stopped_early=True)
        self.mlflow.log_batch(run_id, tags=tags)
        self.mlflow.set_terminated(run_id, RUN_STATUS[state])

    def replay(self, on_logged: Callable[[str, str], None]) -> None:
        """Create the runs that an unreachable server refused earlier, with all their metrics; `on_logged`
        (trial id, run id) hears of each before the next is tried."""
        for trial_id, (config, state, error) in list(self._unlogged.items()):
            run_id = self.flush(trial_id, config)
            if run_id is None:
                return
            self._log_final(trial_id, run_id, state, error)
            on_logged(trial_id, run_id)
            del self._unlogged[trial_id]

    def settle(self, on_logged: Callable[[str, str], None], wait_s: float = FINAL_WAIT_S) -> None:
        """Send everything queued and replay refused runs, waiting up to `wait_s` for a server that is down."""
        deadline = time.monotonic() + wait_s
        while True:
            self.mlflow.flush(force=True)
            self.replay(on_logged)
            if not (self.mlflow.pending or self._unlogged) or time.monotonic() > deadline:
                break
            time.sleep(2.0)

    def report_unsent(self) -> None:
        """A last flush; warn of what stays in the pending file and of trials that never got a run."""
        unsent = self.mlflow.flush(force=True)
        if unsent:
            log.warning("%d MLflow writes could not be sent; they are kept in %s",
                        unsent, self.mlflow.pending_file)
        if self._unlogged:
            log.warning("no MLflow run could be created for trials %s; their results are in trials.parquet",
                        ", ".join(self._unlogged))


def run_name(trial_id: str, stopped_early: bool = False) -> str:
    return f"trial {trial_id}" + (" (stopped early)" if stopped_early else "")


def run_params(config: dict) -> dict:
    """The child run's params: the fully resolved TrainConfig, the density asked for as `target_density`."""
    return {recorded_name(k): v for k, v in flat_config(config_from_flat(config)).items()}
