"""Does early stopping starve the sparse end? Stop rates of the sparser and the denser half of a random sweep.

Runs digits-quick with the random sampler, T trials, early stopping on, twice: with its two objectives
(val_accuracy up, density down: the default scheduler, MO-ASHA) and with val_accuracy alone (ASHA, the old
default; the random sampler ignores objectives, so only the scheduler differs). Splits the trials at their
median target density and prints how many of each half were stopped. Target: sparser / denser <= 1.5.

    python benchmarks/starvation.py [--trials 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import tempfile
from pathlib import Path

import ray

from sweeps import SweepOptions, load_space, run_sweep, sweep_rows


def stop_rates(rows: list[dict]) -> tuple[int, int, int, int]:
    """(stopped sparser, sparser, stopped denser, denser), split at the median target density."""
    rows = sorted(rows, key=lambda r: r["config.target_density"])
    half = len(rows) // 2
    sparse, dense = rows[:half], rows[half:]
    stopped = [sum(r["state"] == "PRUNED" for r in part) for part in (sparse, dense)]
    return stopped[0], len(sparse), stopped[1], len(dense)


def run(folder: Path, objectives: int, trials: int, seed: int) -> list[dict]:
    space = load_space("digits-quick")
    space = dataclasses.replace(space, name=f"starvation-{objectives}-{seed}", sampler="random", trials=trials,
                                start_points=(), objectives=space.objectives[:objectives],
                                early_stopping=dataclasses.replace(space.early_stopping, enabled=True))
    try:
        return run_sweep(space, SweepOptions(out=folder / space.name, seed=seed, verbose=0))
    except Exception as err:   # a one-objective sweep fails in the recorder's final front plot, trials done
        print(f"  (sweep ended with {type(err).__name__}: {err}; reading its rows)", flush=True)
        return sweep_rows(folder / space.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["moasha", "asha"], help="run one of the two sweeps")
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    with tempfile.TemporaryDirectory() as tmp:
        for label, objectives in (("MO-ASHA (2 objectives)", 2), ("ASHA (val_accuracy only)", 1)):
            if args.only and args.only != ("moasha" if objectives == 2 else "asha"):
                continue
            rows = run(Path(tmp), objectives, args.trials, args.seed)
            s, n_s, d, n_d = stop_rates(rows)
            densities = sorted(r["config.target_density"] for r in rows)
            ratio = (s / n_s) / (d / n_d) if d else float("inf")
            print(f"{label}: stopped {s}/{n_s} sparser (density {densities[0]:.3f}-{densities[n_s - 1]:.3f}) vs "
                  f"{d}/{n_d} denser (median density {statistics.median(densities):.3f}); ratio {ratio:.2f}",
                  flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
