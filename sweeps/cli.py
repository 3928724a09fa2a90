"""`weightmom sweep | pareto | best | export | table | check-cluster`: the sweep commands, extending weightmom.cli.

Only argparse (and yaml, for check-cluster) at import time: Ray, Optuna and MLflow load when a command runs.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from sweeps import cluster_check
from weightmom.errors import require
from weightmom.files import check_writable


def add_parsers(commands) -> None:
    p = commands.add_parser("sweep", help="run a Ray Tune + Optuna sweep over a search space")
    p.add_argument("space", help="a search-space YAML file, or the name of a shipped one (e.g. digits-quick)")
    p.add_argument("--trials", type=int)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--out", default=None, help="output folder (default runs/<space name>)")
    p.add_argument("--tracking-uri", dest="tracking_uri", help="MLflow server, e.g. http://127.0.0.1:5000")
    p.add_argument("--address", help="Ray cluster address, e.g. auto on the head node")
    p.add_argument("--storage-path", dest="storage_path",
                   help="trial checkpoints: s3://... or a shared folder on a cluster "
                        "(default: the space's storage_path, else OUT/ray)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out")
    p.add_argument("--code-dir", dest="code_dir",
                   help="folder of your own modules (model: mymod:build): imported from here and shipped to "
                        "every trial through Ray's runtime environment")
    p.add_argument("--smoke-test", dest="smoke_test", action="store_true", help="2 trials of 1 epoch")
    p.add_argument("--no-reuse-actors", dest="reuse_actors", action="store_false")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))

    p = commands.add_parser("pareto", help="print a sweep's accuracy/compression Pareto front")
    p.add_argument("dir")

    p = commands.add_parser("best", help="pick a sweep's best config under a constraint and export it")
    p.add_argument("dir")
    add_limit_flags(p, "")
    p.add_argument("--out", required=True, help="where to write the config YAML")
    p.add_argument("--export", help="also write that trial's pruned model (sparse checkpoint) here")

    add_export_parser(commands)

    p = commands.add_parser("table", help="method x density table over seeds, with paired differences")
    p.add_argument("dir")
    p.add_argument("--by", action="append", default=[], metavar="KEY",
                   help="also group by this config key, e.g. --by model (repeatable)")

    cluster_check.add_parser(commands)


def add_export_parser(commands) -> None:
    p = commands.add_parser("export", help="write a deployable model (ONNX, torch.export, compressed weights), "
                                           "checked on the test split and measured")
    p.add_argument("source", help="a sparse checkpoint (train --save, best --export), or a sweep folder")
    p.add_argument("--out", required=True, help="folder to create (absent or empty)")
    add_limit_flags(p, "sweep folder: chosen as `best` chooses; ")
    p.add_argument("--data-dir", dest="data_dir", help="override the dataset folder stored in the checkpoint")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for latency (default 1)")
    p.add_argument("--latency-runs", dest="latency_runs", type=int, default=30)
    p.add_argument("--parity-atol", dest="parity_atol", type=float, default=1e-3,
                   help="largest |ONNX Runtime - torch| logit difference allowed on the test split")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx (ONNX Runtime static quantization), gated on val accuracy")
    p.add_argument("--int8-calibration", dest="int8_calibration", type=int, default=256, metavar="N",
                   help="training images (never val or test) that calibrate int8 (default 256)")
    p.add_argument("--int8-max-drop", dest="int8_max_drop", type=float, default=0.01, metavar="D",
                   help="largest fp32 - int8 val accuracy drop allowed, else exit 1 and nothing written "
                        "(default 0.01; negative demands int8 beat fp32, -1 always fails)")
    p.add_argument("--fastest", type=int, metavar="K",
                   help="sweep folder: export the K best front trials meeting the limits, time them in one "
                        "interleaved run and ship the fastest (ONNX Runtime p50 at batch 1)")
    p.add_argument("--max-latency-ms", dest="max_latency_ms", type=float, metavar="L",
                   help="sweep folder: ship the most accurate of the candidates (--fastest K, default 3) whose "
                        "measured p50 at batch 1 is under L ms; exit 1 when none is")


# The flag that limits each objective: --max-<metric> for one to minimise, --min-<metric> for one to maximise.
# val_accuracy's is --min-accuracy: choosing is always on validation accuracy.
FLAG_NAMES = {"val_accuracy": "accuracy"}


def limit_flags() -> list[tuple[str, str, str]]:
    """(flag, metric, bound) for every metric of the objective table a sweep may choose on (never a test one)."""
    from weightmom.objectives import METRICS

    return [(f"--{'max' if m.mode == 'min' else 'min'}-{FLAG_NAMES.get(m.name, m.name).replace('_', '-')}",
             m.name, "max" if m.mode == "min" else "min")
            for m in METRICS.values() if m.mode is not None and m.split != "test"]


def add_limit_flags(p: argparse.ArgumentParser, help_prefix: str) -> None:
    for flag, name, bound in limit_flags():
        p.add_argument(flag, dest=flag[2:].replace("-", "_"), type=float, metavar="X",
                       help=f"{help_prefix}{name} {'at most' if bound == 'max' else 'at least'} X")


def limits_of(args: argparse.Namespace) -> list:
    """The limits the command line sets, each checked against its metric's range in one line."""
    from sweeps.analysis.best import Limit
    from weightmom.objectives import METRICS

    limits = []
    for flag, name, bound in limit_flags():
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is None:
            continue
        low, high = METRICS[name].low, METRICS[name].high
        opening = "(" if bound == "max" else "["
        closing = "]" if math.isfinite(high) else ")"
        inside = (low < value if bound == "max" else low <= value) and value <= high
        require(inside, f"{flag} must be in {opening}{low:g}, {high:g}{closing}")
        limits.append(Limit(name, bound, value))
    return limits


def run_export_command(args: argparse.Namespace) -> int:
    from sweeps.analysis.best import NothingQualifies, size_metric
    from sweeps.analysis.export_sweep import export_source
    from weightmom.export import ExportFailed, ExportOptions
    from weightmom.export.options import check_dependencies

    require(args.threads >= 1 and args.latency_runs >= 1, "--threads and --latency-runs must be at least 1")
    require(args.parity_atol >= 0, "--parity-atol must be >= 0")
    require(args.int8_calibration >= 1, "--int8-calibration must be at least 1")
    require(-1 <= args.int8_max_drop <= 1, "--int8-max-drop must be in [-1, 1]")
    check_dependencies()
    options = ExportOptions(data_dir=args.data_dir, threads=args.threads, latency_runs=args.latency_runs,
                            parity_atol=args.parity_atol, int8=args.int8, int8_calibration=args.int8_calibration,
                            int8_max_drop=args.int8_max_drop)
    try:
        limits = limits_of(args)
        objectives = sweep_objectives(Path(args.source)) if Path(args.source).is_dir() else []
        size = size_metric(objectives, limits) if Path(args.source).is_dir() else "density"
        if args.fastest is not None or args.max_latency_ms is not None:
            from sweeps.analysis.fastest import DEFAULT_K, export_fastest

            report = export_fastest(args.source, args.out, options, limits, size, objectives,
                                    DEFAULT_K if args.fastest is None else args.fastest, args.max_latency_ms)
        else:
            report = export_source(args.source, args.out, options, limits=limits, size=size)
    except (NothingQualifies, ExportFailed) as err:   # the model's failure (parity, int8 gate), not the input's
        print(f"weightmom: {err}", file=sys.stderr)
        return 1
    weights, ort = report["files"]["weights.safetensors.zst"], report["parity"]["onnxruntime"]
    print(f"export -> {args.out}: model.onnx, model.pt2, weights.safetensors.zst ({weights['pct_dense_fp32']:.1f}% "
          f"of dense fp32), report.md")
    print(f"parity on {report['parity']['test_images']} test images: accuracy {ort['accuracy']:.4f} on ONNX Runtime "
          f"and torch, max logit difference {ort['max_abs_logit_diff']:.2g}")
    if "int8" in report:
        int8 = report["int8"]
        gate = int8["gate"]
        print(f"int8: model.int8.onnx ({int8['pct_model_onnx']:.0f}% of model.onnx), {gate['split']} accuracy "
              f"{int8[gate['split']]['int8_accuracy']:.4f} against fp32's {int8[gate['split']]['fp32_accuracy']:.4f}"
              f" (allowed drop {gate['max_drop']:g}): passed, {gate['note']}")
    print(report["latency"]["verdict"])
    if "candidates" in report:
        from sweeps.analysis.fastest import summary

        print(summary(report["candidates"]))
    return 0


def run_sweep_command(args: argparse.Namespace) -> int:
    from sweeps.execution.code_dir import use_code_dir
    from sweeps.records.folder import TRIALS
    from sweeps.records.lock import SweepLock
    from sweeps.records.state import load_state
    from sweeps.space.search_space import load_space

    code_dir = use_code_dir(args.code_dir) if args.code_dir else None  # first: the space may import from it
    space = load_space(args.space)
    out = Path(args.out or f"runs/{space.name}")
    SweepLock(out).probe()   # a held folder is refused before Ray, Optuna and MLflow are even imported
    from sweeps.execution.runner import SweepOptions, run_sweep

    options = SweepOptions(out=out, trials=args.trials, concurrency=args.concurrency,
                           tracking_uri=args.tracking_uri, address=args.address, storage_path=args.storage_path,
                           resume=args.resume,
                           smoke_test=args.smoke_test, reuse_actors=args.reuse_actors, seed=args.seed,
                           verbose=args.verbose, code_dir=code_dir)
    before = _settled_rows(out) if args.resume else None
    rows = run_sweep(space, options)
    budget = load_state(out).trials
    counts = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAILED")}
    settled = sum(counts.values())
    print(f"\n{settled} of {budget} trials settled: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items()))
    print_front(out)
    print("\n" + "\n".join(next_steps(out, args.tracking_uri)))
    if settled < budget and before is not None and settled <= before:   # never the same advice twice
        print(f"weightmom: --resume made no progress ({settled} of {budget} trials settled): no record of this "
              "sweep holds the missing trials and its Optuna study has no budget left to sample them; the rows "
              f"in {out / TRIALS} stay valid; start a new sweep with another --out for more trials",
              file=sys.stderr)
        return 1
    if settled < budget:   # the count is the contract: a short sweep is not a success
        print(f"weightmom: only {settled} of {budget} trials settled, {budget - settled} missing; "
              f"`weightmom sweep {args.space} --out {out} --resume` continues the sweep", file=sys.stderr)
        return 1
    return 0


def _settled_rows(out: Path) -> int:
    from sweeps.records.results import sweep_rows
    from weightmom.errors import UsageError

    try:
        return len(sweep_rows(out, required=False))
    except (UsageError, ValueError):   # unreadable (recovery deals with it)
        return 0


def next_steps(out: Path, tracking_uri: str | None, port: int = 5000) -> list[str]:
    """Where the results are and the commands to look at them, runnable as printed from the working directory."""
    from sweeps.records.folder import BEST_CONFIG, BEST_MODEL, FRONT, MLFLOW_DB, PLOTS, TRIALS
    from sweeps.records.mlflow_ui import sweep_runs_page

    page = sweep_runs_page(out)
    lines = [f"Results: {out}/{TRIALS}, {out}/{FRONT}, plots in {out}/{PLOTS}/"]
    if tracking_uri is None:
        store = shlex.quote(f"sqlite:///{out / MLFLOW_DB}")
        lines += [f"MLflow UI: {_tool('mlflow')} ui --backend-store-uri {store} --port {port}",
                  f"  then open http://127.0.0.1:{port}{page} (the front: parent run -> Artifacts -> pareto/)"]
    else:
        lines += [f"MLflow: {tracking_uri.rstrip('/')}{page}"]
    lines += [f"Best config: {_tool('weightmom')} best {shlex.quote(str(out))} {suggested_cap(out)} "
              f"--out {shlex.quote(str(out / BEST_CONFIG))} --export {shlex.quote(str(out / BEST_MODEL))}"]
    return lines


def suggested_cap(out: Path) -> str:
    """A cap at the middle of the front on the sweep's size objective (density, else macs or params), as the
    flag that sets it: `--max-density 0.06`, `--max-macs 4800`."""
    from sweeps.analysis.best import size_metric
    from sweeps.records.folder import FRONT
    from sweeps.records.results import read_table

    size = size_metric(sweep_objectives(out))
    flag = next((flag for flag, name, bound in limit_flags() if name == size and bound == "max"), None)
    if flag is None:
        size, flag = "density", "--max-density"
    front = read_table(out / FRONT) if (out / FRONT).exists() else []
    values = sorted(r[size] for r in front if r.get(size) is not None and r[size] > 0)
    if not values:
        return f"{flag} {0.1 if size == 'density' else 1:g}"
    middle = values[(len(values) - 1) // 2]   # the front's middle, rounded up so that it qualifies
    if size == "density":
        return f"{flag} {math.ceil(middle * 100) / 100:g}"
    step = 10.0 ** (math.floor(math.log10(middle)) - 1)   # two significant digits
    return f"{flag} {math.ceil(middle / step) * step:.6g}"


def _tool(name: str) -> str:
    """This environment's `name` script, relative to the working directory when inside it (.venv/bin/mlflow)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        return name
    try:
        return shlex.quote(str(path.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(path))


def print_front(out: Path) -> None:
    """The front from the folder's rows, the journal's included (pareto.parquet lags a killed driver's last
    rows); light: no Optuna, MLflow, matplotlib or torch (tests/test_rows.py)."""
    from sweeps.analysis.front_table import front_columns
    from sweeps.analysis.pareto import format_table, front_rows, sweep_hypervolume
    from sweeps.records.results import is_step, sweep_points
    from sweeps.records.state import load_sweep_outline

    space = load_sweep_outline(out)
    trials = sweep_points(out, required=False)   # a chain's steps are points too
    front = front_rows(trials, space.metrics, space.modes)
    what = "points: trials and chain steps" if any(is_step(r) for r in trials) else "trials"
    print(f"Pareto front ({len(front)} {what}, chosen on {', '.join(space.metrics)}):")
    print(format_table(front, front_columns(space)) if front else "(empty: no completed trial yet)")
    print(f"Front quality: {sweep_hypervolume(trials, space.metrics, space.modes)[1]}")
    gaps = [r["val_accuracy"] - r["test_accuracy"] for r in front
            if r.get("val_accuracy") is not None and r.get("test_accuracy") is not None]
    if gaps:
        print(f"On the front, val_accuracy - test_accuracy averages {sum(gaps) / len(gaps):+.4f}: "
              "the optimism of choosing; test accuracy is the number to expect.")


def run_pareto_command(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    require(out.is_dir(), f"{out}: no such sweep folder")
    print_front(out)
    return 0


def sweep_objectives(out: Path) -> list[tuple[str, str]]:
    """The (metric, mode) pairs the sweep in `out` optimised (from its space's outline: no torch); none for a
    folder of rows without its sweep's state (the command that reads the rows judges it)."""
    from sweeps.records.folder import SPACE_COPY, SWEEP_STATE_FILE
    from sweeps.records.state import load_sweep_outline

    if not (out / SWEEP_STATE_FILE).is_file() or not (out / SPACE_COPY).is_file():
        return []
    outline = load_sweep_outline(out)
    return list(zip(outline.metrics, outline.modes))


def run_best_command(args: argparse.Namespace) -> int:
    from sweeps.analysis.best import (
        NothingQualifies,
        describe,
        export_model,
        pick,
        retrain_command,
        size_metric,
        train_config_of,
        write_config,
    )
    from sweeps.records.results import sweep_points

    check_writable(args.out, "--out")
    check_writable(args.export, "--export")
    limits = limits_of(args)
    rows = sweep_points(args.dir)
    try:
        row = pick(rows, limits=limits, size=size_metric(sweep_objectives(Path(args.dir)), limits))
    except NothingQualifies as err:
        print(f"weightmom: {err}", file=sys.stderr)
        return 1
    config = train_config_of(row)
    if args.export:
        export_model(row, args.export)
    write_config(args.out, config, row)
    print(f"trial {row['trial_id']}: {describe(row)}")
    print(f"config -> {args.out}" + (f", pruned model -> {args.export}" if args.export else ""))
    print(f"reproduce the trial:             {_tool('weightmom')} train --config {shlex.quote(args.out)}")
    print(f"retrain on all the training data: {retrain_command(shlex.quote(args.out), _tool('weightmom'))}")
    if args.export:
        deploy = shlex.quote(str(Path(args.export).with_suffix("")) + "-export")
        print(f"deployable model (ONNX, checked): {_tool('weightmom')} export {shlex.quote(args.export)} "
              f"--out {deploy}")
    return 0


def run_table_command(args: argparse.Namespace) -> int:
    from sweeps.analysis.method_table import log_to_parent_run, write_table

    out = Path(args.dir)
    text, paths = write_table(out, args.by)
    print(text)
    print(f"Written: {', '.join(str(p) for p in paths)}")
    log_to_parent_run(out, paths)
    return 0


COMMANDS = {"sweep": run_sweep_command, "pareto": run_pareto_command, "best": run_best_command,
            "table": run_table_command, "export": run_export_command,
            "check-cluster": cluster_check.run_check_cluster}
