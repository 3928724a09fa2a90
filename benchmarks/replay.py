"""Replay a search (any Optuna sampler x FIFO, ASHA or MO-ASHA) against a recorded table, in epochs of compute.

A recorded table (benchmarks/record_table.py) holds every trial's per-epoch val accuracy and density at its
full budget. Here a search runs with C asynchronous workers as if it trained: each worker's trial advances one
epoch per tick, compute is charged one epoch per trial-epoch, the scheduler sees each epoch's result and may
stop the trial (ASHA and MO-ASHA are `sweeps.Rungs`, the very rule the sweeps run; ASHA is Rungs on
val_accuracy alone), and the sampler hears COMPLETE trials with (final val accuracy, final density) and
stopped ones as PRUNED, as in a real sweep. Only COMPLETE trials enter the front.

Lookup (a surrogate, not exact): a sampled config is looked up among the recorded trials of the same method
and density (both categorical in the wide spaces, so the density objective is exact), as the nearest on the
other params (log lr and weight decay, the pruner knobs, each scaled to its range; a differing categorical or
a param present on one side only counts 1). `fit_error` reports this lookup's leave-one-out error.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd

from sweeps import Rungs, SearchSpace, accuracy_density_hypervolume, make_sampler

CHANCE = 0.1   # digits and CIFAR-10: 10 balanced classes
CELL = ("method", "density")   # looked up exactly


@dataclass
class Table:
    """A recorded table, encoded for nearest-config lookup."""

    accuracy: np.ndarray          # (trials, epochs)
    density: np.ndarray           # (trials, epochs), measured
    numeric: np.ndarray           # (trials, numeric params), scaled to [0, 1], nan where a param is absent
    categorical: np.ndarray       # (trials, categorical params) as strings, "" where absent
    cells: dict[tuple, np.ndarray]
    space: SearchSpace

    @property
    def epochs(self) -> int:
        return self.accuracy.shape[1]


def _numeric_names(space: SearchSpace) -> list[str]:
    return [n for n, s in space.params.items() if n not in CELL and hasattr(s, "low")]


def _categorical_names(space: SearchSpace) -> list[str]:
    return [n for n, s in space.params.items() if n not in CELL and not hasattr(s, "low")]


def _scale(space: SearchSpace, name: str, value) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    spec = space.params[name]
    low, high, value = float(spec.low), float(spec.high), float(value)
    if spec.log:
        low, high, value = math.log(low), math.log(high), math.log(value)
    return (value - low) / (high - low) if high > low else 0.0


def _label(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def load_table(path: str, space: SearchSpace) -> Table:
    frame = pd.read_parquet(path)
    numeric, categorical = _numeric_names(space), _categorical_names(space)
    num = np.array([[_scale(space, n, row[n]) for n in numeric] for _, row in frame.iterrows()], dtype=float)
    cat = np.array([[_label(row[n]) for n in categorical] for _, row in frame.iterrows()], dtype=object)
    keys = [tuple(_label(row[n]) for n in CELL) for _, row in frame.iterrows()]
    cells = {key: np.array([i for i, k in enumerate(keys) if k == key]) for key in set(keys)}
    return Table(np.stack(frame["val_accuracy_by_epoch"].map(np.asarray)),
                 np.stack(frame["density_by_epoch"].map(np.asarray)), num.reshape(len(frame), len(numeric)),
                 cat.reshape(len(frame), len(categorical)), cells, space)


def _distances(table: Table, rows: np.ndarray, num: np.ndarray, cat: np.ndarray) -> np.ndarray:
    a = table.numeric[rows]
    gap = np.abs(a - num)
    one_missing = np.isnan(a) != np.isnan(num)
    gap = np.where(one_missing, 1.0, np.nan_to_num(gap, nan=0.0))
    return (gap ** 2).sum(axis=1) + (table.categorical[rows] != cat).sum(axis=1)


def lookup(table: Table, config: dict, exclude: int | None = None) -> int:
    """The recorded trial standing in for `config`: same method and density, nearest on the rest."""
    key = tuple(_label(config.get(n)) for n in CELL)
    rows = table.cells.get(key)
    if rows is None or len(rows) == 0:
        rows = np.arange(len(table.accuracy))
    if exclude is not None and len(rows) > 1:
        rows = rows[rows != exclude]
    num = np.array([_scale(table.space, n, config.get(n)) for n in _numeric_names(table.space)], dtype=float)
    cat = np.array([_label(config.get(n)) for n in _categorical_names(table.space)], dtype=object)
    return int(rows[np.argmin(_distances(table, rows, num, cat))])


def fit_error(table: Table, frame: pd.DataFrame) -> dict:
    """Leave-one-out: each recorded trial looked up among the others; error of its final val accuracy."""
    errors = []
    for i, row in frame.iterrows():
        config = {n: (None if _label(row[n]) == "" else row[n]) for n in table.space.params}
        j = lookup(table, config, exclude=i)
        errors.append(abs(table.accuracy[j, -1] - table.accuracy[i, -1]))
    errors = np.asarray(errors)
    spread = np.abs(table.accuracy[:, -1] - np.median(table.accuracy[:, -1])).mean()
    return {"mae": float(errors.mean()), "median_abs_error": float(np.median(errors)),
            "mae_of_median_predictor": float(spread), "trials": len(errors)}


def sampler(name: str, seed: int, trials: int = 40) -> optuna.samplers.BaseSampler:
    """The arms' samplers: the sweeps' own random / tpe / nsga2, and Sobol QMC and the GP sampler besides."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "qmc":
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                              warn_independent_sampling=False)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)
        return make_sampler(name, trials, seed)


@dataclass
class Arm:
    sampler: str
    scheduler: str                # fifo | asha | moasha
    grace_period: int = 3
    reduction_factor: float = 3.0

    @property
    def name(self) -> str:
        return f"{self.sampler}+{self.scheduler}"


@dataclass
class Running:
    trial: optuna.Trial
    row: int
    epoch: int = 0


def _start(study: optuna.Study, table: Table) -> Running:
    trial = study.ask()
    table.space.define_by_run(trial)
    return Running(trial, lookup(table, trial.params))


def _step(job: Running, table: Table, study: optuna.Study, rungs: Rungs | None, objectives: int) -> bool | None:
    """One epoch of `job`: True when it completed, False when the scheduler stopped it, None to go on."""
    job.epoch += 1
    accuracy, density = table.accuracy[job.row, job.epoch - 1], table.density[job.row, job.epoch - 1]
    if job.epoch == table.epochs:
        study.tell(job.trial, [float(accuracy), float(density)])
        return True
    point = (float(accuracy), -float(density))[:objectives]
    if rungs is not None and not rungs.on_result(str(job.trial.number), job.epoch, point):
        study.tell(job.trial, state=optuna.trial.TrialState.PRUNED)
        return False
    return None


def simulate(table: Table, arm: Arm, seed: int, horizon: int, workers: int = 2) -> np.ndarray:
    """The front's hypervolume after each epoch of compute spent, for `horizon` epochs, with `workers` workers."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler(arm.sampler, seed))
    rungs = None if arm.scheduler == "fifo" else Rungs(arm.grace_period, table.epochs, arm.reduction_factor)
    objectives = 1 if arm.scheduler == "asha" else 2
    curve, points, spent, value = np.zeros(horizon), [], 0, 0.0
    jobs: list[Running | None] = [None] * workers
    while spent < horizon:
        for w in range(workers):   # every worker trains one epoch per tick: jobs finish asynchronously
            jobs[w] = jobs[w] or _start(study, table)
            outcome = _step(jobs[w], table, study, rungs, objectives)
            if outcome is True:
                points.append((table.accuracy[jobs[w].row, -1], table.density[jobs[w].row, -1]))
                value = accuracy_density_hypervolume(points, CHANCE)
            if outcome is not None:
                jobs[w] = None
            curve[spent] = value
            spent += 1
            if spent == horizon:
                break
    return curve
