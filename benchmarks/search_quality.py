"""Does guided search beat random search? Hypervolume of the validation front, per sampler, over repeats.

On the shipped digits-quick space (val_accuracy up, density down), runs R independent sweeps of T trials
for each sampler (tpe, random, nsga2; sampler seed = repeat index), and R more with TPE and ASHA off.
After every finished trial it measures the front's hypervolume in (log10 density, val accuracy) space
(sweeps.analysis.pareto.accuracy_density_hypervolume: density clipped to [0.01, 1], accuracy from chance to 1,
normalised to 1); a linear-density hypervolume saturates near 0.95 for every sampler on this data.

Prints, per arm: the median and range of the final hypervolume, its ratio to random's median, the median
number of trials to reach random's median T-trial hypervolume, and the median wall time per sweep.
Target: guided search reaches random's T-trial hypervolume within T/2 trials.

    python benchmarks/search_quality.py [--repeats 3] [--trials 24]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import tempfile
import time
from pathlib import Path

import ray

from sweeps.analysis.pareto import accuracy_density_hypervolume
from sweeps.execution.runner import SweepOptions, run_sweep
from sweeps.space.search_space import load_space

CHANCE = 0.1   # digits: 10 balanced classes
ARMS = {"tpe": ("tpe", True), "random": ("random", True), "nsga2": ("nsga2", True), "tpe, ASHA off": ("tpe", False)}


def curve(rows: list[dict]) -> list[float]:
    """Hypervolume of the COMPLETE trials among the first k finished, for k = 1..T (rows in finish order)."""
    points, out = [], []
    for row in rows:
        if row["state"] == "COMPLETE":
            points.append((row["val_accuracy"], row["density"]))
        out.append(accuracy_density_hypervolume(points, CHANCE))
    return out


def run_arm(folder: Path, label: str, sampler: str, asha: bool, trials: int, seed: int) -> tuple[list[float], float]:
    space = load_space("digits-quick")
    space = dataclasses.replace(space, name=f"quality-{sampler}-{int(asha)}-{seed}", sampler=sampler, trials=trials,
                                early_stopping=dataclasses.replace(space.early_stopping, enabled=asha))
    start = time.perf_counter()
    out = folder / space.name
    rows = run_sweep(space, SweepOptions(out=out, seed=seed, verbose=0))
    return curve(rows), time.perf_counter() - start


def trials_to_reach(values: list[float], target: float) -> int | None:
    return next((k + 1 for k, v in enumerate(values) if v >= target - 1e-12), None)


def summarise(results: dict[str, list[tuple[list[float], float]]], trials: int) -> list[str]:
    random_final = statistics.median(c[-1] for c, _ in results["random"])
    lines = [f"| arm | final hypervolume, median [min, max] | ratio to random | trials to reach random's "
             f"{trials}-trial value (median; runs that got there) | wall per sweep (median) |",
             "|---|---|---|---|---|"]
    for label, runs in results.items():
        finals = [c[-1] for c, _ in runs]
        reached = [trials_to_reach(c, random_final) for c, _ in runs]
        got = [k for k in reached if k is not None]
        median_reach = f"{statistics.median(got):g}" if len(got) > len(runs) / 2 else "not reached"
        lines.append(f"| {label} | {statistics.median(finals):.4f} [{min(finals):.4f}, {max(finals):.4f}] | "
                     f"{statistics.median(finals) / random_final:.3f} | {median_reach} ({len(got)}/{len(runs)}) | "
                     f"{statistics.median(w for _, w in runs):.0f} s |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=24)
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    results: dict[str, list] = {label: [] for label in ARMS}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.repeats):   # interleaved, so machine load drifts evenly over the arms
            for label, (sampler, asha) in ARMS.items():
                values, wall = run_arm(Path(tmp), label, sampler, asha, args.trials, seed)
                results[label].append((values, wall))
                print(f"  {label:14} repeat {seed}: hypervolume {values[-1]:.4f} in {wall:.0f} s", flush=True)
    ray.shutdown()
    print(f"\ndigits-quick, {args.trials} trials x {args.repeats} repeats per arm, "
          f"{time.perf_counter() - started:.0f} s in all\n")
    print("\n".join(summarise(results, args.trials)))


if __name__ == "__main__":
    main()
