"""How much wall time does the sweep machinery add on top of training?

Runs four small sweeps in one process, on one Ray instance: short trials
(digits, about a second each) and longer trials (CIFAR-10-mini ResNet20,
about 10 s each), each with and without actor reuse. For each it prints the
sweep's wall time against the ideal, the sum of the trials' own times divided
by the concurrency. Target: at most 1.15x for trials of 10 s or more.

    python benchmarks/sweep_overhead.py [--trials 8] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import ray
import yaml

from sweeps import SweepOptions, load_space, run_sweep

REPO = Path(__file__).resolve().parents[1]
CIFAR_MINI = REPO.parent / "shared" / "data" / "cifar10-mini"

WORKLOADS = {
    "short (digits lenet300, 12 epochs)": {"dataset": "digits", "model": "lenet300", "epochs": 12},
    "longer (cifar10-mini resnet20 x0.25, 3 epochs)": {
        "dataset": "cifar10", "data_dir": str(CIFAR_MINI), "model": "resnet20", "width": 0.25, "epochs": 3},
}


def write_space(folder: Path, name: str, fixed: dict, trials: int, concurrency: int) -> Path:
    space = {"name": name, "trials": trials, "concurrency": concurrency, "resources": {"cpu": 1, "gpu": 0},
             "early_stopping": False, "fixed": {**fixed, "device": "cpu", "batch_size": 128},
             "params": {"method": {"type": "categorical", "choices": ["weightmom", "gmp"]},
                        "density": {"type": "float", "low": 0.05, "high": 0.3, "log": True},
                        "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def measure(space_file: Path, out: Path, reuse: bool, concurrency: int) -> tuple[float, float, float]:
    start = time.perf_counter()
    rows = run_sweep(load_space(space_file), SweepOptions(out=out, reuse_actors=reuse, verbose=0))
    wall = time.perf_counter() - start
    trial_seconds = [r["train_seconds"] for r in rows]
    ideal = sum(trial_seconds) / concurrency
    return wall, ideal, sum(trial_seconds) / len(trial_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(address="local", num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    print(f"ray {ray.__version__} | {args.trials} trials per sweep, {args.concurrency} at a time, 1 CPU each",
          flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for index, (label, fixed) in enumerate(WORKLOADS.items()):
            if "data_dir" in fixed and not CIFAR_MINI.is_dir():
                print(f"skipping {label}: {CIFAR_MINI} missing")
                continue
            space = write_space(folder, f"bench{index}", fixed, args.trials, args.concurrency)
            for reuse in (True, False):
                out = folder / f"run{index}{'r' if reuse else 'n'}"
                wall, ideal, per_trial = measure(space, out, reuse, args.concurrency)
                results.append((label, reuse, per_trial, wall, ideal))
                print(f"  done: {label}, reuse={reuse}: {wall:.1f} s", flush=True)
    ray.shutdown()
    print()
    print(f"{'trials':48} | {'reuse':5} | {'s/trial':>7} | {'wall s':>7} | {'ideal s':>7} | {'ratio':>5} | target")
    print("-" * 100)
    for label, reuse, per_trial, wall, ideal in results:
        target = "<= 1.15x" if per_trial >= 10 else "-"
        ok = ("yes" if wall / ideal <= 1.15 else "NO") if per_trial >= 10 else ""
        print(f"{label:48} | {str(reuse):5} | {per_trial:7.1f} | {wall:7.1f} | {ideal:7.1f} | "
              f"{wall / ideal:5.2f} | {target} {ok}")


if __name__ == "__main__":
    main()
