"""Does guided search beat random search? Hypervolume of the validation front, per sampler, over repeats.

On the shipped digits-quick space (val_accuracy up, density down), runs R independent sweeps of T trials
for each sampler (tpe, random, nsga2; sampler seed = repeat index), and R more with TPE and ASHA off.
After every finished trial it measures the front's hypervolume in (log10 density, val accuracy) space
(sweeps.analysis.pareto.accuracy_density_hypervolume: density clipped to [0.01, 1], accuracy from chance to 1,
normalised to 1); a linear-density hypervolume saturates near 0.95 for every sampler on this data.

Prints, per arm: the median and range of the final hypervolume, its ratio to random's median, the median
number of trials to reach random's median T-trial hypervolume, and the median wall time per sweep.
Target: guided search reaches random's T-trial hypervolume within T/2 trials.

    python benchmarks/search_quality.py [run] [--repeats 3] [--trials 24]

Replay mode: every sampler x scheduler arm on a recorded table (benchmarks/replay.py), R repeats each, at
equal compute in epochs; prints and writes (--json) per arm the median hypervolume at the budget and
time_to_target (the compute, as a fraction of the budget, at which an arm first reaches random+FIFO's
median final hypervolume; 1.0 when not within the budget), each with a bootstrap 95% interval:

    python benchmarks/search_quality.py replay --table benchmarks/data/digits-wide.parquet --repeats 100 \
        --json benchmarks/data/digits-wide-replay.json --plot docs/img/search-anytime-digits-wide.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import replay

from sweeps import SweepOptions, accuracy_density_hypervolume, load_space, run_sweep

CHANCE = 0.1   # digits: 10 balanced classes
DEFAULT_ARM = "nsga2+moasha"   # chosen on the replay evidence: docs/search.md
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


# --------------------------------------------------------------------------- replay mode (recorded tables)

REPLAY_SAMPLERS = ("random", "qmc", "tpe", "nsga2")   # gp: add with --samplers (minutes per repeat)
SCHEDULERS = ("fifo", "asha", "moasha")


def bootstrap_median(values: np.ndarray, rng: np.random.Generator, draws: int = 2000) -> list[float]:
    """95% percentile-bootstrap interval of the median."""
    medians = np.median(rng.choice(values, size=(draws, len(values)), replace=True), axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


_TABLES: dict[tuple[str, str], replay.Table] = {}   # per worker process: each table is read once


def _one(job: tuple) -> tuple[str, int, np.ndarray]:
    table_path, space_name, arm, seed, horizon, workers = job
    if (table_path, space_name) not in _TABLES:
        _TABLES[table_path, space_name] = replay.load_table(table_path, load_space(space_name))
    table = _TABLES[table_path, space_name]
    return arm.name, seed, replay.simulate(table, arm, seed, horizon, workers)


def replay_curves(args: argparse.Namespace, space_name: str, horizon: int) -> dict[str, np.ndarray]:
    arms = [replay.Arm(s, c, args.grace_period, args.reduction_factor) for s in args.samplers for c in SCHEDULERS]
    jobs = [(str(args.table), space_name, arm, seed, horizon, args.workers)
            for seed in range(args.repeats) for arm in arms]
    curves: dict[str, list] = {arm.name: [] for arm in arms}
    deadline = time.monotonic() + args.deadline_s if args.deadline_s else math.inf
    with multiprocessing.get_context("spawn").Pool(args.procs) as pool:
        for name, _, curve in pool.imap_unordered(_one, jobs, chunksize=1):
            curves[name].append(curve)
            if time.monotonic() > deadline:   # keep the repeats every arm has (jobs run repeat by repeat)
                pool.terminate()
                break
    done = min(len(c) for c in curves.values())
    return {name: np.stack(c[:done]) for name, c in curves.items()}


def replay_summary(curves: dict[str, np.ndarray], budget: int) -> dict:
    """Per arm: hypervolume at the budget and compute to reach random+FIFO's median, medians with CIs."""
    rng = np.random.default_rng(0)
    target = float(np.median(curves["random+fifo"][:, budget - 1]))
    arms = {}
    for name, c in curves.items():
        final = c[:, budget - 1]
        reached = c[:, :budget] >= target - 1e-12
        # The epoch at which the front first reaches the target, over the budget; 1.0: not within it.
        when = np.where(reached.any(axis=1), (reached.argmax(axis=1) + 1) / budget, 1.0)
        arms[name] = {"hv_median": float(np.median(final)), "hv_ci": bootstrap_median(final, rng),
                      "time_to_target": float(np.median(when)), "time_to_target_ci": bootstrap_median(when, rng),
                      "reached": int(reached.any(axis=1).sum()), "repeats": len(c)}
    return {"target_hv": target, "budget_epochs": budget, "arms": arms}


def anytime_plot(curves: dict[str, np.ndarray], budget: int, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    x = np.arange(1, budget + 1)
    for ax, scheduler in zip(axes, SCHEDULERS):
        for name, c in curves.items():
            if name.endswith(f"+{scheduler}"):
                low, mid, high = np.percentile(c[:, :budget], [2.5, 50, 97.5], axis=0)
                ax.plot(x, mid, label=name.split("+")[0])
                ax.fill_between(x, low, high, alpha=0.15)
        ax.set_title(scheduler.upper() if scheduler != "moasha" else "MO-ASHA")
        ax.set_xlabel("epochs of compute")
        ax.legend()
    axes[0].set_ylabel("hypervolume (log density, val accuracy)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def replay_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="search_quality.py replay", description="search arms on a recorded table")
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--space", help="the table's search space (default: the table file's stem)")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--budget-epochs", type=int, help="default: 40 full-budget trials' worth")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, help="anytime plot (PNG): median and 95%% band per arm")
    parser.add_argument("--samplers", nargs="+", default=list(REPLAY_SAMPLERS),
                        choices=[*REPLAY_SAMPLERS, "gp"])
    parser.add_argument("--workers", type=int, default=2, help="asynchronous workers of the replayed sweep")
    parser.add_argument("--procs", type=int, default=2, help="processes replaying (the machine's cores)")
    parser.add_argument("--deadline-s", type=float, help="stop after this long with the repeats every arm has")
    parser.add_argument("--grace-period", type=int, help="default: the space's")
    parser.add_argument("--reduction-factor", type=float, help="default: the space's")
    args = parser.parse_args(argv)
    if not args.table.is_file():
        print(f"error: no such table: {args.table}", file=sys.stderr)
        return 2
    space = load_space(args.space or args.table.stem)
    args.grace_period = args.grace_period or space.early_stopping.grace_period
    args.reduction_factor = args.reduction_factor or space.early_stopping.reduction_factor
    budget = args.budget_epochs or 40 * space.epochs
    started = time.perf_counter()
    curves = replay_curves(args, args.space or args.table.stem, budget)
    summary = replay_summary(curves, budget)
    summary["default"] = DEFAULT_ARM
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    for name, a in sorted(summary["arms"].items(), key=lambda kv: kv[1]["time_to_target"]):
        print(f"{name:14} hv {a['hv_median']:.4f} [{a['hv_ci'][0]:.4f}, {a['hv_ci'][1]:.4f}]  time_to_target "
              f"{a['time_to_target']:.3f} [{a['time_to_target_ci'][0]:.3f}, {a['time_to_target_ci'][1]:.3f}]  "
              f"reached {a['reached']}/{a['repeats']}")
    print(f"target (random+fifo median hv at {budget} epochs): {summary['target_hv']:.4f}; {summary['wall_s']} s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    if args.plot:
        anytime_plot(curves, budget, args.plot)
    return 0


def main() -> None:
    if sys.argv[1:2] == ["replay"]:
        sys.exit(replay_main(sys.argv[2:]))
    if sys.argv[1:2] == ["run"]:
        sys.argv.pop(1)
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
