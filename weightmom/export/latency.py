"""Latency p50/p95 per batch size: the pruned model beside the dense one of the same architecture."""

from __future__ import annotations

import time

import numpy as np

from weightmom.export.runtimes import Runner


def time_runner(run: Runner, x: np.ndarray, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "runs": runs}


def latency_table(runners: dict[str, dict[str, Runner]], input_shape: tuple[int, ...], batches: tuple[int, ...],
                  runs: int, warmup: int) -> dict:
    """{model: {runtime: {"batch N": timings}}}; models and runtimes interleaved per batch, so drift hits both."""
    rng = np.random.default_rng(0)
    table: dict = {model: {runtime: {} for runtime in by_runtime} for model, by_runtime in runners.items()}
    for batch in batches:
        x = (rng.random((batch, *input_shape)) * 255).astype(np.float32)
        for model, by_runtime in runners.items():
            for runtime, run in by_runtime.items():
                table[model][runtime][f"batch {batch}"] = time_runner(run, x, runs, warmup)
    return table


def speedups(table: dict) -> dict:
    """dense p50 / pruned p50 per runtime and batch: above 1 means the pruned model runs faster."""
    return {runtime: {batch: table["dense"][runtime][batch]["p50_ms"] / timing["p50_ms"]
                      for batch, timing in by_batch.items()}
            for runtime, by_batch in table["pruned"].items()}


def verdict(ratios: dict, density: float) -> str:
    """The one line on what unstructured sparsity buys in latency, from the measured ratios."""
    values = [r for by_batch in ratios.values() for r in by_batch.values()]
    low, high = min(values), max(values)
    spread = ", ".join(f"{runtime} {batch}: {r:.2f}x" for runtime, by_batch in ratios.items()
                       for batch, r in by_batch.items())
    if high < 1.15 and low > 0.87:
        gist = "no measurable speed-up: dense CPU kernels multiply the pruned zeros like any other weight"
    elif low >= 1.15:
        gist = "a measured speed-up"
    else:
        gist = "mixed results (within noise for some, not others)"
    return f"At density {density:.2%}, unstructured sparsity buys {gist} (dense p50 / pruned p50: {spread})."
