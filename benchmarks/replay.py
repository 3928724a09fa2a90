"""Replay a search (any Optuna sampler x FIFO, ASHA or MO-ASHA) against a recorded table, in epochs of compute.

A recorded table (benchmarks/record_table.py) holds every trial's per-epoch val accuracy and density at its
full budget. Here a search runs with C asynchronous workers as if it trained: each worker's trial advances one
epoch per tick, compute is charged one epoch per trial-epoch, the scheduler sees each epoch's result and may
stop the trial (ASHA and MO-ASHA are `sweeps.Rungs`, the very rule the sweeps run; ASHA is Rungs on
val_accuracy alone; MO-ASHA ranks density as the trial's target, as the sweeps do), and the sampler hears
COMPLETE trials with (final val accuracy, final density) and stopped ones as PRUNED, as in a real sweep.
Only COMPLETE trials enter the front.

Lookup, two kinds:
- `forest` (the default): a surrogate fitted on the recorded trials, as HPOBench and YAHPO do: extra trees
  (scikit-learn) predict a config's val accuracy at every epoch from all its params (log lr and weight decay
  and the knobs scaled to their range, -1 where a `when` leaves one out; categoricals one-hot).
  `forest_fit_error` reports its 10-fold cross-validated error on the final val accuracy.
- `nearest`: the nearest recorded trial of the same method and density (log lr and weight decay, the pruner
  knobs, each scaled to its range; a differing categorical or a param present on one side only counts 1).
  `fit_error` reports its leave-one-out error. A proposal near a good trial replays that very trial, so a
  sampler that exploits gains nothing from it: the forest is the fairer judge of samplers.
- `knn`: a second surrogate family, to check that an order of arms is not the forest's artefact: the k nearest
  recorded configs (k = 5, weighted by inverse distance) on the forest's features average their curves.
The density curve is always the nearest recorded trial's (the method and density are matched exactly, so the
density objective is exact; the schedule knobs decide the epochs before).

Chains (a table recorded from a chain space, e.g. digits-wide-chain): every step end of a running chain is a
point on the front and a trial of its own in the study (its chain's params, the step's values), as the sweeps'
searcher adds it; MO-ASHA's rungs are the step ends, each judged on the density measured there.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd

from sweeps import LAST_RESULT, Rungs, SearchSpace, accuracy_density_hypervolume, make_sampler

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
    keys = [tuple(_label(row.get(n)) for n in CELL) for _, row in frame.iterrows()]   # a chain has no density
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
    for i, config in enumerate(_recorded_configs(table, frame)):
        j = lookup(table, config, exclude=i)
        errors.append(abs(table.accuracy[j, -1] - table.accuracy[i, -1]))
    errors = np.asarray(errors)
    spread = np.abs(table.accuracy[:, -1] - np.median(table.accuracy[:, -1])).mean()
    return {"mae": float(errors.mean()), "median_abs_error": float(np.median(errors)),
            "mae_of_median_predictor": float(spread), "trials": len(errors)}


def features(table: Table, config: dict) -> np.ndarray:
    """A config as the forest reads it: numeric params scaled to [0, 1] (-1 when absent), categoricals one-hot."""
    space, out = table.space, []
    for name in _numeric_names(space):
        value = _scale(space, name, config.get(name))
        out.append(-1.0 if math.isnan(value) else value)
    for name, spec in space.params.items():
        if not hasattr(spec, "low"):
            label = _label(config.get(name))
            out += [float(label == _label(choice)) for choice in spec.choices]
    return np.asarray(out, dtype=np.float32)


def _recorded_configs(table: Table, frame: pd.DataFrame) -> list[dict]:
    return [{n: (None if _label(row[n]) == "" else row[n]) for n in table.space.params} for _, row in frame.iterrows()]


class Forest:
    """Extra trees fitted on the recorded val-accuracy curves; predicts a whole curve per config."""

    def __init__(self, table: Table, configs: list[dict], trees: int = 100, seed: int = 0) -> None:
        from sklearn.ensemble import ExtraTreesRegressor
        x = np.stack([features(table, c) for c in configs])
        self.model = ExtraTreesRegressor(trees, min_samples_leaf=2, random_state=seed).fit(x, table.accuracy)

    def accuracy(self, x: np.ndarray) -> np.ndarray:
        """The predicted curve of one feature row (each tree's own predict: sklearn's wrapper costs 10x more)."""
        rows = x.reshape(1, -1)
        return np.clip(np.mean([t.tree_.predict(rows)[0, :, 0] for t in self.model.estimators_], axis=0), 0, 1)


class Neighbours:
    """The second surrogate family: the k nearest recorded configs' curves, weighted by inverse distance
    (scikit-learn's KNeighborsRegressor with weights="distance", in numpy: its per-call overhead made a replay
    minutes long)."""

    def __init__(self, table: Table, configs: list[dict], k: int = 5) -> None:
        self.x = np.stack([features(table, c) for c in configs]).astype(np.float64)
        self.curves, self.k = table.accuracy, min(k, len(configs))

    def accuracy(self, x: np.ndarray) -> np.ndarray:
        distance = np.sqrt(((self.x - x.astype(np.float64)) ** 2).sum(axis=1))
        nearest = np.argpartition(distance, self.k - 1)[:self.k]
        d = distance[nearest]
        if (d == 0).any():   # a recorded config: its own curve (the mean of its exact copies)
            return np.clip(self.curves[nearest[d == 0]].mean(axis=0), 0, 1)
        weights = 1 / d
        return np.clip(weights @ self.curves[nearest] / weights.sum(), 0, 1)


SURROGATES = {"forest": Forest, "knn": Neighbours}


def load_forest(path: str, table: Table, kind: str = "forest") -> Forest | Neighbours:
    """The surrogate `kind` (a key of SURROGATES) fitted on the table at `path`."""
    return SURROGATES[kind](table, _recorded_configs(table, pd.read_parquet(path)))


def forest_fit_error(table: Table, frame: pd.DataFrame, folds: int = 10, kind: str = "forest") -> dict:
    """k-fold cross-validation of a surrogate: error of the final val accuracy on the held-out trials."""
    configs, order = _recorded_configs(table, frame), np.random.default_rng(0).permutation(len(frame))
    errors = np.zeros(len(frame))
    for held in np.array_split(order, folds):
        kept = np.setdiff1d(order, held)
        part = Table(table.accuracy[kept], table.density[kept], table.numeric[kept], table.categorical[kept], {},
                     table.space)
        forest = SURROGATES[kind](part, [configs[i] for i in kept])
        for i in held:
            errors[i] = abs(forest.accuracy(features(table, configs[i]))[-1] - table.accuracy[i, -1])
    spread = np.abs(table.accuracy[:, -1] - np.median(table.accuracy[:, -1])).mean()
    return {"mae": float(errors.mean()), "median_abs_error": float(np.median(errors)),
            "mae_of_median_predictor": float(spread), "trials": len(errors), "folds": folds}


def sampler(name: str, seed: int, trials: int = 40) -> optuna.samplers.BaseSampler:
    """The arms' samplers: the sweeps' own, and two Gaussian-process ones besides, too slow to run by default:
    Optuna's GPSampler, and BoTorch's qNEHVI (optuna-integration's BoTorchSampler; the `qnehvi` extra)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)
        if name == "qnehvi":   # its default acquisition with 2 or 3 objectives: (log) qNEHVI
            from optuna_integration import BoTorchSampler
            return BoTorchSampler(seed=seed, n_startup_trials=10)
        return make_sampler(name, trials, seed)


@dataclass
class Arm:
    sampler: str
    scheduler: str                # fifo | asha | moasha | undominated (MO-ASHA with the undominated promotion)
    grace_period: int = 3
    reduction_factor: float = 3.0

    @property
    def name(self) -> str:
        return f"{self.sampler}+{self.scheduler}"


@dataclass
class Running:
    trial: optuna.Trial
    accuracy: np.ndarray   # the curves it will show, epoch 1 first
    density: np.ndarray
    target: float          # the density MO-ASHA ranks it on, as the sweeps' MO-ASHA does (moasha: final_values)
    epoch: int = 0


def _start(study: optuna.Study, table: Table, forest: Forest | None) -> Running:
    trial = study.ask()
    table.space.define_by_run(trial)
    row = lookup(table, trial.params)
    accuracy = table.accuracy[row] if forest is None else forest.accuracy(features(table, trial.params))
    return Running(trial, accuracy, table.density[row], float(trial.params.get("density", table.density[row, -1])))


def step_ends(table: Table) -> tuple[int, ...]:
    """The epochs that end a chain's steps before its last (none for a table of plain trials)."""
    plan = table.space.chain_plan
    return tuple(plan.step_end(k) for k in range(len(plan.densities) - 1)) if plan else ()


def _step(job: Running, table: Table, study: optuna.Study, rungs: Rungs | None, objectives: int,
          ends: tuple[int, ...] = ()) -> tuple[bool | None, list[tuple[float, float]]]:
    """One epoch of `job`: (True when it completed, False when the scheduler stopped it, None to go on; the front
    points it made: its final one, or a chain's step end)."""
    job.epoch += 1
    accuracy, density = float(job.accuracy[job.epoch - 1]), float(job.density[job.epoch - 1])
    if job.epoch == table.epochs:
        study.tell(job.trial, [accuracy, density])
        return True, [(accuracy, density)]
    made = []
    if job.epoch in ends:   # a chain's step: a point, and a trial of its own for the sampler (as the searcher does)
        study.add_trial(optuna.trial.create_trial(params=job.trial.params, distributions=job.trial.distributions,
                                                  values=[accuracy, density]))
        made.append((accuracy, density))
    point = (accuracy, -(density if ends else job.target))[:objectives]
    if rungs is not None and not rungs.on_result(str(job.trial.number), job.epoch, point):
        job.trial.set_user_attr(LAST_RESULT, [job.epoch, accuracy])   # for samplers that learn from it
        study.tell(job.trial, state=optuna.trial.TrialState.PRUNED)
        return False, made
    return None, made


def simulate(table: Table, arm: Arm, seed: int, horizon: int, workers: int = 2, forest: Forest | None = None,
             *, study_sampler: optuna.samplers.BaseSampler | None = None, rungs: Rungs | None = None,
             start: Callable[[optuna.Study, Table, Forest | None], Running] | None = None) -> np.ndarray:
    """The front's hypervolume after each epoch of compute spent, for `horizon` epochs, with `workers` workers;
    curves from `forest` when given, else from the nearest recorded trial. `study_sampler`, `rungs` and `start`
    replace the arm's sampler, its scheduler's rungs and the start of a trial (benchmarks/replay_bounds.py)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=study_sampler or sampler(arm.sampler, seed))
    ends = step_ends(table)
    if rungs is None and arm.scheduler != "fifo":
        rungs = Rungs(arm.grace_period, table.epochs, arm.reduction_factor,
                      promotion="undominated" if arm.scheduler == "undominated" else "top", at=ends)
    start = start or _start
    objectives = 1 if arm.scheduler == "asha" else 2
    curve, points, spent, value = np.zeros(horizon), [], 0, 0.0
    jobs: list[Running | None] = [None] * workers
    while spent < horizon:
        for w in range(workers):   # every worker trains one epoch per tick: jobs finish asynchronously
            jobs[w] = jobs[w] or start(study, table, forest)
            outcome, made = _step(jobs[w], table, study, rungs, objectives, ends)
            if made:
                points += made
                value = accuracy_density_hypervolume(points, CHANCE)
            if outcome is not None:
                jobs[w] = None
            curve[spent] = value
            spent += 1
            if spent == horizon:
                break
    return curve
