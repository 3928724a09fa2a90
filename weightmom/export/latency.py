"""One latency table: p50/p95 per model, runtime and batch size, measured in interleaved rounds, as ratios to dense.

The rows are whatever models the pipeline passes, the reference first: "dense fp32" (same architecture, fresh
weights), "masked fp32" (the masked model), "slim fp32" when channels could be removed (model.onnx is then the slim
graph) and, with --int8, "slim int8" or "masked int8" (model.int8.onnx, model.onnx quantized).
"""

from __future__ import annotations

import time

import numpy as np

from weightmom.export.runtimes import Runner

REFERENCE = "dense fp32"


def _timings(times: list[float]) -> dict:
    ms = np.asarray(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "runs": len(times)}


def time_interleaved(runners: dict[str, Runner], x: np.ndarray, runs: int, warmup: int) -> dict[str, dict]:
    """Round-robin: each round times every runner once, so load that comes and goes hits them all alike."""
    for run in runners.values():
        for _ in range(warmup):
            run(x)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(runs):
        for name, run in runners.items():
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
    return {name: _timings(t) for name, t in times.items()}


def latency_table(runners: dict[str, dict[str, Runner]], input_shape: tuple[int, ...], batches: tuple[int, ...],
                  runs: int, warmup: int) -> dict:
    """{model: {runtime: {"batch N": timings}}}: per batch and runtime, every model interleaved with the others.

    One runtime at a time: a torch run between two ONNX Runtime runs evicts what ONNX Runtime keeps warm in a
    process that serves with it alone (measured on VGG-16 x0.5, batch 1: slim ran 2.4x faster than dense
    with torch runs interleaved, 3.3x without).
    """
    rng = np.random.default_rng(0)
    table: dict = {model: {runtime: {} for runtime in by_runtime} for model, by_runtime in runners.items()}
    runtimes = dict.fromkeys(runtime for by_runtime in runners.values() for runtime in by_runtime)
    for batch in batches:
        x = (rng.random((batch, *input_shape)) * 255).astype(np.float32)
        for runtime in runtimes:
            same = {model: by_runtime[runtime] for model, by_runtime in runners.items() if runtime in by_runtime}
            for model, timing in time_interleaved(same, x, runs, warmup).items():
                table[model][runtime][f"batch {batch}"] = timing
    return table


def ratios_to_dense(table: dict, reference: str = REFERENCE) -> dict:
    """{model: {runtime: {batch: reference p50 / model p50}}}: above 1, the model runs faster than dense fp32.

    int8 has only an ONNX Runtime row, so it is compared with dense fp32 on ONNX Runtime.
    """
    dense = table[reference]
    return {model: {runtime: {batch: dense[runtime][batch]["p50_ms"] / timing["p50_ms"]
                              for batch, timing in by_batch.items()}
                    for runtime, by_batch in by_runtime.items() if runtime in dense}
            for model, by_runtime in table.items() if model != reference}


def _spread(by_runtime: dict) -> str:
    return ", ".join(f"{runtime} {batch}: {r:.2f}x" for runtime, by_batch in by_runtime.items()
                     for batch, r in by_batch.items())


def sparsity_verdict(ratios: dict, density: float) -> str:
    """What the masked model's zeros buy in latency, from its measured ratios (one sentence)."""
    values = [r for by_batch in ratios.values() for r in by_batch.values()]
    low, high = min(values), max(values)
    if density >= 1.0:   # nothing pruned: the same work as dense, so the ratios can only show noise
        return (f"At density 100% the model is dense: it does exactly the dense model's work, and the ratios "
                f"measure only noise (dense p50 / masked p50: {_spread(ratios)}).")
    if high < 1.15 and low > 0.87:
        gist = "no measurable speed-up: dense CPU kernels multiply the pruned zeros like any other weight"
    elif low >= 1.15:
        gist = "a measured speed-up"
    else:
        gist = "mixed results (within noise for some, not others)"
    return f"At density {density:.2%}, unstructured sparsity buys {gist} (dense p50 / masked p50: {_spread(ratios)})."


def int8_verdict(name: str, ratios: dict) -> str:
    """What int8 buys on this CPU (ONNX Runtime against dense fp32 on ONNX Runtime)."""
    spread = ", ".join(f"{batch} {r:.2f}x" for by_batch in ratios.values() for batch, r in by_batch.items())
    return f"{name} on ONNX Runtime, dense fp32 p50 / {name} p50 (above 1: faster than dense fp32): {spread}."


def verdict(ratios: dict, density: float) -> str:
    """The CLI's and report's line: the zeros' effect, then each int8 row's."""
    lines = [sparsity_verdict(ratios["masked fp32"], density)]
    if "slim fp32" in ratios:
        lines.append(f"Slim (removable channels removed), dense fp32 p50 / slim fp32 p50: "
                     f"{_spread(ratios['slim fp32'])}.")
    lines += [int8_verdict(model, by_runtime) for model, by_runtime in ratios.items() if model.endswith("int8")]
    return " ".join(lines)
