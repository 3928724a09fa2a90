"""Does the driver's cost per trial stay flat as a sweep grows?

Runs N tiny trials (digits LeNet-300-100, 2 epochs, early stopping off, the default sampler,
concurrency 2) in one sweep and prints, in windows of 10% of N, the mean gap between two trial
finishes, the driver's CPU per finished trial and the time the recorder's books took per trial.
Then a profile of the driver (cProfile of this process's main thread, where Ray Tune's loop and
its callbacks run): the functions with the most cumulative time. Target: the last window's mean
gap at most 1.5x the first's; driver CPU per trial under 0.3 s.

    python benchmarks/driver_scale.py [--trials 1000] [--top 25] [--no-profile]
    python benchmarks/driver_scale.py --books-only [--trials 1000]

--books-only leaves Ray and the training out: it feeds N made-up two-epoch trials to the sweep's own
recorder (MLflow in sqlite, trials.parquet, the front) and asks and tells the sweep's own sampler and
Optuna study, timing each in CPU seconds per trial. On a shared machine the CPU time is the figure
to trust (wall gaps there measure the neighbours too).
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
from sweeps.bookkeeping.recorder import SweepRecorder
from sweeps.records.folder import MLFLOW_ARTIFACTS, MLFLOW_DB, OPTUNA_DB


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


def books_only(trials: int) -> None:
    """The driver's per-trial work without Ray: sampler ask/tell, then the recorder's events for one trial."""
    import types

    import mlflow
    import optuna

    from sweeps.search.samplers import make_sampler
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        space = load_space(write_space(out, trials, 2))
        uri = f"sqlite:///{out / MLFLOW_DB}"
        client = mlflow.MlflowClient(uri)
        experiment = client.create_experiment("scale", artifact_location=(out / MLFLOW_ARTIFACTS).as_uri())
        parent = client.create_run(experiment).info.run_id
        storage = f"sqlite:///{out / OPTUNA_DB}"
        study = optuna.create_study(study_name="scale", storage=storage, directions=["maximize", "minimize"],
                                    sampler=make_sampler(space.sampler, trials, 0))
        recorder = SweepRecorder(space, out, uri, experiment, parent, storage)
        sampler_s, books_s, plots_s = [], [], []
        plotting = type(recorder.front)._plots

        def timed_plots(front, *args):
            start = time.process_time()
            try:
                return plotting(front, *args)
            finally:
                plots_s[-1] += time.process_time() - start

        type(recorder.front)._plots = timed_plots
        for index in range(trials):
            start = time.process_time()
            trial = study.ask()
            config = space.define_by_run(trial)
            config = {**(config or {}), **trial.params}
            accuracy, density = 0.5 + 0.4 * ((index * 7919) % 1000) / 1000, float(trial.params["density"])
            study.tell(trial, [accuracy, density])
            middle = time.process_time()
            plots_s.append(0.0)
            ray_trial = types.SimpleNamespace(trial_id=f"t{index:05d}", config=config, checkpoint=None,
                                              error_file=None, last_result=None)
            recorder.on_trial_start(0, [], ray_trial)
            for epoch in (1, 2):
                ray_trial.last_result = {"epoch": epoch, "val_accuracy": accuracy, "test_accuracy": accuracy,
                                         "density": density, "train_loss": 0.1, "num_classes": 10}
                recorder.on_trial_result(0, [], ray_trial, ray_trial.last_result)
            recorder.on_trial_complete(0, [], ray_trial)
            end = time.process_time()
            sampler_s.append(middle - start)
            books_s.append(end - middle - plots_s[-1])
        recorder.on_experiment_end([])
    size = max(1, trials // 10)
    print(f"{trials} made-up trials; CPU seconds per trial, in windows of {size}; "
          f"plots {sum(plots_s):.1f} s in all, the rest of the books {sum(books_s):.1f} s")
    print(f"{'trials':>11} | {'sampler ask+tell':>16} | {'books, no plots':>15} | {'plots':>6}")
    for first in range(0, trials - size + 1, size):
        window = slice(first, first + size)
        print(f"{first + 1:>5}-{first + size:<5} | {sum(sampler_s[window]) / size:16.4f} | "
              f"{sum(books_s[window]) / size:15.4f} | {sum(plots_s[window]) / size:6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="N (5000 for the long check)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--top", type=int, default=25, help="profile rows to print")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--books-only", dest="books_only", action="store_true",
                        help="no Ray, no training: the sampler's and the recorder's CPU per trial")
    args = parser.parse_args()
    if args.books_only:
        books_only(args.trials)
        return
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(address="local", num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
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
