"""Is one chain run as good as a run per density? Chains (weightmom.chain) against dedicated runs on digits.

A chain trains 9 epochs to the grid's densest point, then 3 epochs per further density (pruning in the first,
lr restarted at chain_lr = 0.3 of the peak): 9 + 3 * 6 = 27 epochs for 7 models. Dedicated runs train each
density from scratch for 9 epochs: 63 epochs. For the top `--configs` weightmom / gmp configs of the recorded
digits-wide search (benchmarks/data/digits-wide.parquet), and `--seeds` seeds, it measures per density the
chain's val / test accuracy minus the dedicated run's (paired by config and seed), and per (config, seed)
the log-density hypervolume of the chain's 7 step ends against the 7 dedicated runs' (the one the sweeps
report: sweeps.basis.dominance.accuracy_density_hypervolume, density read from its objective bound 1 down to
0.01 on a log axis, val accuracy from chance).

How the recorded table was read (where it differs from what one might expect):
- It has no `state` and no `config.*` columns: each row is a finished 9-epoch trial with its config keys as
  plain columns (`lr`, `pruner.window`) and `val_accuracy_final`. A row counts as complete when it logged
  all its epochs with a finite final val accuracy; `config.*` columns and `state` are used if present.
- Many rows tie at val accuracy 1.0 (the val split is ~136 images); ties go to the sparser row, then the
  trial name. Configs are distinct in everything but `density` (which the check sets itself).
- All rows have epochs = 9 and pruner.prune_end in epochs (1 to 3), so the base of 9 epochs keeps them as
  they are; prune_end is still scaled by 9 / epochs (at most 9) should another table differ.
- The density grid is the space's own (search_spaces/digits-wide.yaml, `density` choices), from 0.3 down.

    python benchmarks/chain_check.py [--seeds 3] [--configs 3] [--out benchmarks/data/chain_check.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
import yaml

from sweeps.basis.dominance import accuracy_density_hypervolume
from weightmom import TrainConfig, train
from weightmom.config import from_flat
from weightmom.objectives import metric

ROOT = Path(__file__).resolve().parent.parent
TABLE, SPACE = ROOT / "benchmarks/data/digits-wide.parquet", ROOT / "search_spaces/digits-wide.yaml"
BASE_EPOCHS, CHAIN_EPOCHS, CHAIN_LR, WITHIN = 9, 3, 0.3, 0.01
FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def density_grid() -> list[float]:
    """The space's density choices from 0.3 down, else the default log grid."""
    choices = yaml.safe_load(SPACE.read_text()).get("params", {}).get("density", {}).get("choices")
    grid = sorted((d for d in choices or [] if d <= 0.3), reverse=True)
    return grid or [0.3, 0.178, 0.1, 0.056, 0.031, 0.018, 0.01]


def top_configs(n: int) -> list[dict[str, Any]]:
    """The n best distinct weightmom / gmp configs of the table by val accuracy, as flat TrainConfig keys."""
    rows = pq.read_table(TABLE).to_pylist()
    accuracy = "val_accuracy" if "val_accuracy" in rows[0] else "val_accuracy_final"

    def complete(r: dict) -> bool:
        if "state" in r:
            return r["state"] == "COMPLETE"
        logged = r.get("val_accuracy_by_epoch") or []
        return len(logged) == r["epochs"] and isinstance(r[accuracy], float) and math.isfinite(r[accuracy])

    ranked = sorted((r for r in rows if complete(r)), key=lambda r: (-r[accuracy], r["density"], r["trial"]))
    chosen: list[dict[str, Any]] = []
    for row in ranked:
        flat = {k.removeprefix("config."): v for k, v in row.items()}
        flat = {k: v for k, v in flat.items() if k.split(".")[0] in FIELDS and k != "density"
                and v is not None and not (isinstance(v, float) and math.isnan(v))}
        if flat.get("method") in ("weightmom", "gmp") and flat not in [c["flat"] for c in chosen]:
            chosen.append({"trial": row["trial"], "val_accuracy": row[accuracy], "density": row["density"],
                           "flat": flat})
        if len(chosen) == n:
            break
    return chosen


def config_of(flat: dict[str, Any], seed: int, density: float, chain: list[float]) -> TrainConfig:
    """The table's config at the check's base of 9 epochs, on the CPU, with this seed, density and chain."""
    values = dict(flat) | {"epochs": BASE_EPOCHS, "device": "cpu", "seed": seed, "density": density}
    if "pruner.prune_end" in values and values.get("pruner.unit", "epoch") == "epoch":
        values["pruner.prune_end"] = min(BASE_EPOCHS, values["pruner.prune_end"] * BASE_EPOCHS / flat["epochs"])
    if chain:
        values |= {"chain": tuple(chain), "chain_epochs": CHAIN_EPOCHS, "chain_lr": CHAIN_LR}
    return from_flat(values)


def run(config: TrainConfig) -> dict[str, Any]:
    """Train; the step ends of a chain (or the one end of a plain run) as points, and any divergence."""
    ends: list[dict] = []
    keep = ("epoch", "density", "val_accuracy", "test_accuracy")

    def epoch_end(metrics: dict, _result: object) -> None:
        if metrics.get("step_end", metrics["epoch"] == config.total_epochs):
            ends.append({k: metrics[k] for k in keep})

    start, error = time.perf_counter(), None
    try:
        train(config, epoch_end=epoch_end, progress=False)
    except Exception as err:   # a diverged run is a result here: it has no models at the densities it missed
        error = f"{type(err).__name__}: {err}"
    return {"ends": ends, "seconds": time.perf_counter() - start, "error": error}


def spread(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(runs: list[dict], grid: list[float], chance: float) -> dict[str, Any]:
    """Paired chain - dedicated differences per density, and the hypervolume ratio per (config, seed)."""
    chains = {(r["config"], r["seed"]): r["ends"] for r in runs if r["kind"] == "chain"}
    alone = {(r["config"], r["seed"], r["target"]): r["ends"][-1]
             for r in runs if r["kind"] == "dedicated" and r["ends"]}
    per_density = []
    for step, d in enumerate(grid):
        pairs = [(ends[step], alone[key + (d,)]) for key, ends in chains.items()
                 if step < len(ends) and key + (d,) in alone]
        row: dict[str, Any] = {"density": d}
        for name in ("val_accuracy", "test_accuracy"):
            diffs = [c[name] - a[name] for c, a in pairs]
            row[name] = spread(diffs) | {"within": sum(x >= -WITHIN for x in diffs)}
        row["chain_density"] = spread([c["density"] for c, _ in pairs])
        per_density.append(row)
    ratios, volumes = [], []
    for key, ends in chains.items():
        mine = [alone[key + (d,)] for d in grid if key + (d,) in alone]
        if len(mine) < len(grid):
            continue   # the dedicated set of this (config, seed) is not complete yet
        hv = [accuracy_density_hypervolume([(p["val_accuracy"], p["density"]) for p in points], chance)
              for points in (ends, mine)]
        volumes.append({"config": key[0], "seed": key[1], "chain": hv[0], "dedicated": hv[1]})
        ratios.append(hv[0] / hv[1] if hv[1] > 0 else math.nan)
    seconds = {k: sum(r["seconds"] for r in runs if r["kind"] == k) for k in ("chain", "dedicated")}
    return {"per_density": per_density, "hypervolumes": volumes, "hypervolume_ratio": spread(ratios),
            "compute_ratio_epochs": (BASE_EPOCHS + CHAIN_EPOCHS * (len(grid) - 1)) / (BASE_EPOCHS * len(grid)),
            "seconds": seconds}


def table(summary: dict[str, Any]) -> str:
    def cell(s: dict) -> str:
        return "n/a" if s["median"] is None else f"{s['median']:+.4f} [{s['min']:+.4f}, {s['max']:+.4f}]"

    lines = [f"{'density':>8} {'chain density':>13} {'val: chain - dedicated':>32} {'ok':>5} "
             f"{'test: chain - dedicated':>32} {'ok':>5}"]
    for row in summary["per_density"]:
        v, t, n = row["val_accuracy"], row["test_accuracy"], row["val_accuracy"]["n"]
        measured = row["chain_density"]["median"]
        lines.append(f"{row['density']:>8.3f} {measured if measured is not None else math.nan:>13.4f} "
                     f"{cell(v):>32} {v['within']:>2}/{n:<2} {cell(t):>32} {t['within']:>2}/{n:<2}")
    hv = summary["hypervolume_ratio"]
    lines.append(f"ok: chain within {WITHIN} of the dedicated run or better; [min, max] over (config, seed) pairs")
    lines.append(f"log-density hypervolume chain / dedicated: median {hv['median']:.4f} "
                 f"[{hv['min']:.4f}, {hv['max']:.4f}] over {hv['n']} (config, seed)" if hv["n"] else
                 "log-density hypervolume: no complete pair")
    s = summary["seconds"]
    lines.append(f"compute chain / dedicated: {summary['compute_ratio_epochs']:.4f} in epochs, "
                 f"{s['chain'] / max(s['dedicated'], 1e-9):.4f} in seconds ({s['chain']:.1f} / {s['dedicated']:.1f} s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--configs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/data/chain_check.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    grid, configs = density_grid(), top_configs(args.configs)
    chance = 1.0 / 10   # digits: ten classes
    setup = {"dataset": "digits", "model": "lenet300", "grid": grid, "base_epochs": BASE_EPOCHS,
             "chain_epochs": CHAIN_EPOCHS, "chain_lr": CHAIN_LR, "seeds": list(range(args.seeds)),
             "density_bounds": [metric("density").low, metric("density").high], "chance": chance}
    runs: list[dict] = []

    def write() -> dict[str, Any]:
        summary = summarise(runs, grid, chance)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"setup": setup, "configs": configs, "runs": runs, "summary": summary},
                                       indent=1) + "\n")
        return summary

    for i, c in enumerate(configs):
        print(f"config {i}: {c['trial']} (val {c['val_accuracy']:.4f} at {c['density']}) {c['flat']}", flush=True)
    run(config_of(configs[0]["flat"], 0, grid[0], []))   # warm-up, not kept: loads the data, so seconds compare
    for i, c in enumerate(configs):
        for seed in range(args.seeds):
            jobs = [("chain", grid[0], grid[1:])] + [("dedicated", d, []) for d in grid]
            for kind, d, chain in jobs:
                result = run(config_of(c["flat"], seed, d, chain))
                runs.append({"config": i, "seed": seed, "kind": kind, "target": d} | result)
                write()
                points = " ".join(f"{e['density']:.3f}:{e['val_accuracy']:.3f}" for e in result["ends"])
                print(f"config {i} seed {seed} {kind:9} {d:<6} {result['seconds']:5.1f} s  density:val {points}"
                      + (f"  {result['error']}" if result["error"] else ""), flush=True)
    print(table(write()))


if __name__ == "__main__":
    main()
