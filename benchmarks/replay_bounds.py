"""Why the digits time_to_target stays near 0.5, and what would take it lower: bounds from the replay.

Arms on a recorded table (benchmarks/replay.py), at equal compute, each scored against random+FIFO's median
final hypervolume as in `search_quality.py replay` (time_to_target: the fraction of the budget spent when an
arm's front first reaches it):
- **oracle**: a sampler that only proposes good configs: each trial is a recorded config from the top `q` of
  its density (the densities drawn in turn). No real sampler does better; it bounds what a scheduler allows.
- **domfrac**: a scheduler rule beside MO-ASHA's: a trial continues at a rung unless more than 1/x of the
  points recorded there dominate its point. MO-ASHA keeps the top 1/eta by Pareto rank instead, and so stops
  two trials in three even when every trial is good; this rule stops only what the others dominate.
- **stratified TPE**: TPE over the training params on the accuracy each trial reached at its furthest rung
  (a single-objective view of the study, so that stopped trials count with their rung values, as Optuna's
  single-objective TPE counts them; a multi-objective study gives PRUNED trials no values), with the density
  drawn evenly over its choices instead of learned.

    python benchmarks/replay_bounds.py --table benchmarks/data/digits-wide.parquet --repeats 40

The numbers and what they say: docs/search.md, "Where the remaining compute goes".
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import replay
from optuna.distributions import CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState
from search_quality import print_summary, replay_summary

from sweeps import Rungs, dominates, load_space
from weightmom.errors import UsageError


@dataclass
class DominatedFractionRungs(Rungs):
    """Rungs whose rule is: continue unless more than `fraction` of the points already at the rung dominate."""

    fraction: float = 1 / 9

    def on_result(self, trial_id: str, t: float, point) -> bool:
        milestone = self.due(trial_id, t)
        if milestone is None:
            return True
        rung = self.recorded[milestone]
        dominated_by = sum(dominates(p, point) for p in rung.values())
        go_on = dominated_by <= int(self.fraction * len(rung))
        rung[trial_id] = point
        return go_on


def oracle_start(path: str, space, q: float, seed: int):
    """A `replay.simulate` start that enqueues a recorded top-`q` config of the least-tried density first."""
    frame = pd.read_parquet(path)
    good = frame[frame["val_accuracy_final"] >= frame.groupby("density")["val_accuracy_final"].transform(
        lambda s: s.quantile(q))]
    densities = sorted(good["density"].unique())
    rng = np.random.default_rng(seed)

    def start(study: optuna.Study, table: replay.Table, forest: replay.Forest | None) -> replay.Running:
        trials = study.get_trials(deepcopy=False)
        tried = [sum(t.params.get("density") == d for t in trials) for d in densities]
        density = densities[rng.choice(np.flatnonzero(np.array(tried) == min(tried)))]
        row = good[good["density"] == density].iloc[rng.integers((good["density"] == density).sum())]
        study.enqueue_trial({n: row[n].item() if hasattr(row[n], "item") else row[n]
                             for n in space.params if pd.notna(row[n])})
        return replay._start(study, table, forest)
    return start


class RungAccuracyView:
    """A two-objective study as TPE reads a single-objective one: accuracy up, where each trial got to."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str):
        return getattr(self._study, name)

    directions = [StudyDirection.MAXIMIZE]
    direction = StudyDirection.MAXIMIZE

    def _is_multi_objective(self) -> bool:
        return False

    def _convert(self, trials: list) -> list:
        out = []
        for trial in trials:
            if trial.state == TrialState.COMPLETE:
                trial = copy.copy(trial)
                trial._values = trial._values[:1]
            elif trial.state == TrialState.PRUNED and replay.LAST_RESULT in trial.user_attrs:
                epoch, accuracy = trial.user_attrs[replay.LAST_RESULT]
                trial = copy.copy(trial)
                trial.intermediate_values = {int(epoch): float(accuracy)}
            out.append(trial)
        return out

    def get_trials(self, deepcopy: bool = True, states=None) -> list:
        return self._convert(self._study.get_trials(deepcopy=False, states=states))

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list:
        return self._convert(self._study._get_trials(deepcopy=False, states=states, use_cache=use_cache))


class StratifiedTPESampler(optuna.samplers.TPESampler):
    """TPE on the rung accuracy over every param but `stratified`, which is drawn from its least-tried choices."""

    def __init__(self, stratified: str = "density", **kwargs) -> None:
        super().__init__(**kwargs)
        self.stratified = stratified
        self._draw = np.random.default_rng(kwargs.get("seed"))

    def infer_relative_search_space(self, study, trial):
        space = super().infer_relative_search_space(RungAccuracyView(study), trial)
        space.pop(self.stratified, None)
        return space

    def sample_relative(self, study, trial, search_space):
        return super().sample_relative(RungAccuracyView(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        if param_name == self.stratified and isinstance(param_distribution, CategoricalDistribution):
            tried = [sum(t.params.get(param_name) == c for t in study.get_trials(deepcopy=False))
                     for c in param_distribution.choices]
            return param_distribution.choices[self._draw.choice(np.flatnonzero(np.array(tried) == min(tried)))]
        return super().sample_independent(RungAccuracyView(study), trial, param_name, param_distribution)


def stratified_tpe(seed: int) -> StratifiedTPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return StratifiedTPESampler(multivariate=True, group=True, constant_liar=True, seed=seed,
                                    n_startup_trials=5)


def arm_curves(name: str, args, table, forest, space, budget: int) -> np.ndarray:
    """`name` is SAMPLER+SCHEDULER: random | oracle | stratified-tpe, and fifo | moasha | domfrac."""
    sampler_name, scheduler = name.split("+")
    curves = []
    for seed in range(args.repeats):
        arm = replay.Arm("random", "fifo" if scheduler == "fifo" else "moasha", args.grace_period,
                         args.reduction_factor)
        rungs = (DominatedFractionRungs(args.grace_period, table.epochs, args.reduction_factor,
                                        fraction=1 / args.domfrac_x) if scheduler == "domfrac" else None)
        start = oracle_start(str(args.table), space, args.q, seed) if sampler_name == "oracle" else None
        study_sampler = stratified_tpe(seed) if sampler_name == "stratified-tpe" else None
        curves.append(replay.simulate(table, arm, seed, budget, 2, forest, study_sampler=study_sampler,
                                      rungs=rungs, start=start))
    return np.stack(curves)


ARMS = ["random+fifo", "random+moasha", "random+domfrac", "oracle+fifo", "oracle+moasha", "oracle+domfrac",
        "stratified-tpe+moasha", "stratified-tpe+domfrac"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=Path("benchmarks/data/digits-wide.parquet"))
    parser.add_argument("--space", default="digits-wide")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--q", type=float, default=0.9, help="the oracle's configs: the top 1-q at each density")
    parser.add_argument("--domfrac-x", type=float, default=9.0, help="domfrac stops past 1/x dominating")
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--reduction-factor", type=float, default=3.0)
    parser.add_argument("--arms", nargs="+", default=ARMS, choices=ARMS)
    args = parser.parse_args()
    if not args.table.is_file():
        print(f"error: no such table: {args.table}", file=sys.stderr)
        return 2
    try:
        space = load_space(args.space)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = replay.load_table(str(args.table), space)
    forest = replay.load_forest(str(args.table), table)
    budget = 40 * space.epochs
    started, curves = time.perf_counter(), {}
    for name in ["random+fifo", *[a for a in args.arms if a != "random+fifo"]]:   # the target arm first
        curves[name] = arm_curves(name, args, table, forest, space, budget)
        print(f"{name}: {args.repeats} repeats, {time.perf_counter() - started:.0f} s so far", flush=True)
    print_summary({**replay_summary(curves, budget), "wall_s": round(time.perf_counter() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
