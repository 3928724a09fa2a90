"""Why the digits time_to_target stays near 0.5, and what would take it lower: bounds from the replay.

Arms on a recorded table (benchmarks/replay.py), at equal compute, each scored against random+FIFO's median
final hypervolume as in `search_quality.py replay` (time_to_target: the fraction of the budget spent when an
arm's front first reaches it):
- **oracle**: a sampler that only proposes good configs: each trial is a recorded config from the top `q` of
  its density (the densities drawn in turn). No real sampler does better; it bounds what a scheduler allows.
- **domfrac**: MO-ASHA's `undominated` promotion (sweeps/search/moasha.py): a trial continues at a rung unless
  more than 1/eta^2 of the points recorded there dominate its point. MO-ASHA's default keeps the top 1/eta by
  Pareto rank instead, and so stops two trials in three even when every trial is good; this rule stops only
  what the others dominate.
- **stratified TPE**: the sweeps' frontier sampler (sweeps/search/frontier.py) with `explore` 1: TPE over the
  training params on the accuracy each trial reached at its furthest rung, the density always the least tried.
- **frontier TPE**: the same with the density drawn where it adds most to the front, 1 - `explore` of the time.

    python benchmarks/replay_bounds.py --table benchmarks/data/digits-wide.parquet --repeats 40

The numbers and what they say: docs/search.md, "Where the remaining compute goes".
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import replay
from search_quality import print_summary, replay_summary

from sweeps import FrontierSampler, load_space
from weightmom.errors import UsageError


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


def frontier(seed: int, explore: float) -> FrontierSampler:
    """The sweeps' frontier sampler as `sampler: frontier` builds it, with its `explore` share as given."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return FrontierSampler(explore=explore, multivariate=True, group=True, constant_liar=True, seed=seed,
                               n_startup_trials=5)


def arm_curves(name: str, args, table, forest, space, budget: int) -> np.ndarray:
    """`name` is SAMPLER+SCHEDULER: random | oracle | stratified-tpe | frontier-tpe, and fifo | moasha | domfrac."""
    sampler_name, scheduler = name.split("+")
    curves = []
    for seed in range(args.repeats):
        arm = replay.Arm("random", "undominated" if scheduler == "domfrac" else scheduler, args.grace_period,
                         args.reduction_factor)
        start = oracle_start(str(args.table), space, args.q, seed) if sampler_name == "oracle" else None
        study_sampler = (frontier(seed, 1.0) if sampler_name == "stratified-tpe" else
                         frontier(seed, args.explore) if sampler_name == "frontier-tpe" else None)
        curves.append(replay.simulate(table, arm, seed, budget, 2, forest, study_sampler=study_sampler,
                                      start=start))
    return np.stack(curves)


ARMS = ["random+fifo", "random+moasha", "random+domfrac", "oracle+fifo", "oracle+moasha", "oracle+domfrac",
        "stratified-tpe+moasha", "stratified-tpe+domfrac", "frontier-tpe+moasha", "frontier-tpe+domfrac"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=Path("benchmarks/data/digits-wide.parquet"))
    parser.add_argument("--space", default="digits-wide")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--q", type=float, default=0.9, help="the oracle's configs: the top 1-q at each density")
    parser.add_argument("--explore", type=float, default=0.75, help="frontier-tpe: least-tried density this often")
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
