"""Does the driver's cost per trial stay flat as a sweep grows?

Runs N tiny trials (digits LeNet-300-100, 2 epochs, early stopping off, the default sampler,
concurrency 2) in one sweep and prints, in windows of 10% of N, the mean gap between two trial
finishes, the driver's CPU per finished trial and the time the recorder's books took per trial.
Then a profile of the driver (cProfile of this process's main thread, where Ray Tune's loop and
its callbacks run): the functions with the most cumulative time. Target: the last window's mean
gap at most 1.5x the first's; driver CPU per trial under 0.3 s.

    python benchmarks/driver_scale.py [--trials 1000] [--top 25] [--no-profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import tempfile
import time
from pathlib import Path

import ray
import yaml

from sweeps import SweepOptions, load_space, run_sweep
from sweeps.recorder.recorder import SweepRecorder


def write_space(folder: Path, trials: int, concurrency: int) -> Path:
    space = {"name": "scale", "trials": trials, "concurrency": concurrency, "resources": {"cpu": 1, "gpu": 0},
             "early_stopping": False,
             "fixed": {"dataset": "digits", "model": "lenet300", "epochs": 2, "device": "cpu", "batch_size": 128,
                       "pruner": {"prune_end": 1}},
             "params": {"method": {"type": "categorical", "choices": ["weightmom", "gmp"]},
                        "density": {"type": "float", "low": 0.03, "high": 0.3, "log": True},
                        "lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}}
    path = folder / "scale.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


class Finishes:
    """Wall clock, driver CPU and the books' own time at every trial finish (wrapping the recorder's step)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.books: list[float] = []
        original = SweepRecorder._finish

        def timed(recorder, *args, **kwargs):
            start = time.perf_counter()
            original(recorder, *args, **kwargs)
            self.books.append(time.perf_counter() - start)
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())

        SweepRecorder._finish = timed


def windows(finishes: Finishes, start_wall: float, start_cpu: float) -> list[tuple[str, float, float, float]]:
    """(trials, mean gap s, driver CPU s per trial, books s per trial) per 10% of the finishes."""
    n = len(finishes.wall)
    size = max(1, n // 10)
    rows = []
    for first in range(0, n - size + 1, size):
        last = first + size - 1
        wall0 = finishes.wall[first - 1] if first else start_wall
        cpu0 = finishes.cpu[first - 1] if first else start_cpu
        rows.append((f"{first + 1}-{last + 1}", (finishes.wall[last] - wall0) / size,
                     (finishes.cpu[last] - cpu0) / size, sum(finishes.books[first:last + 1]) / size))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="N (5000 for the long check)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--top", type=int, default=25, help="profile rows to print")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finishes, profile = Finishes(), cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        space = load_space(write_space(Path(tmp), args.trials, args.concurrency))
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        if args.profile:
            profile.enable()
        rows = run_sweep(space, SweepOptions(out=Path(tmp) / "out", verbose=0))
        profile.disable()
        wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    ray.shutdown()
    trained = sum(r["train_seconds"] or 0 for r in rows)
    print(f"{len(rows)} trials in {wall:.0f} s (training {trained:.0f} s in all, {args.concurrency} at a time); "
          f"driver CPU {cpu:.0f} s = {cpu / max(1, len(rows)):.3f} s per trial"
          f"{' (under cProfile)' if args.profile else ''}")
    table = windows(finishes, start_wall, start_cpu)
    print(f"\n{'trials':>11} | {'mean gap s':>10} | {'driver CPU s/trial':>18} | {'books s/trial':>13}")
    for label, gap, cpu_per, books in table:
        print(f"{label:>11} | {gap:10.3f} | {cpu_per:18.3f} | {books:13.3f}")
    if table:
        print(f"\nlast/first window mean gap: {table[-1][1] / table[0][1]:.2f}x (target <= 1.5x)")
    if args.profile:
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(args.top)
        print("\nwhere the driver's time goes (cumulative):\n" + text.getvalue())


if __name__ == "__main__":
    main()
