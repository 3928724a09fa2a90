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
    p.add_argument("--max-density", dest="max_density", type=float)
    p.add_argument("--min-accuracy", dest="min_accuracy", type=float)
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
    p.add_argument("--max-density", dest="max_density", type=float, help="sweep folder: chosen as `best` chooses")
    p.add_argument("--min-accuracy", dest="min_accuracy", type=float, help="sweep folder: chosen as `best` chooses")
    p.add_argument("--data-dir", dest="data_dir", help="override the dataset folder stored in the checkpoint")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for latency (default 1)")
    p.add_argument("--latency-runs", dest="latency_runs", type=int, default=30)
    p.add_argument("--parity-atol", dest="parity_atol", type=float, default=1e-3,
                   help="largest |ONNX Runtime - torch| logit difference allowed on the test split")


def run_export_command(args: argparse.Namespace) -> int:
    from sweeps.analysis.best import NothingQualifies
    from sweeps.analysis.export import export_source
    from weightmom.export import ExportOptions, ParityFailed
    from weightmom.export.options import check_dependencies

    require(args.threads >= 1 and args.latency_runs >= 1, "--threads and --latency-runs must be at least 1")
    require(args.parity_atol >= 0, "--parity-atol must be >= 0")
    check_dependencies()
    options = ExportOptions(data_dir=args.data_dir, threads=args.threads, latency_runs=args.latency_runs,
                            parity_atol=args.parity_atol)
    try:
        report = export_source(args.source, args.out, options, args.max_density, args.min_accuracy)
    except (NothingQualifies, ParityFailed) as err:
        print(f"weightmom: {err}", file=sys.stderr)
        return 1
    weights, ort = report["files"]["weights.safetensors.zst"], report["parity"]["onnxruntime"]
    print(f"export -> {args.out}: model.onnx, model.pt2, weights.safetensors.zst ({weights['pct_dense_fp32']:.1f}% "
          f"of dense fp32), report.md")
    print(f"parity on {report['parity']['test_images']} test images: accuracy {ort['accuracy']:.4f} on ONNX Runtime "
          f"and torch, max logit difference {ort['max_abs_logit_diff']:.2g}")
    print(report["latency"]["verdict"])
    return 0


def run_sweep_command(args: argparse.Namespace) -> int:
    from sweeps.execution.code_dir import use_code_dir
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
              f"in {out}/trials.parquet stay valid; start a new sweep with another --out for more trials",
              file=sys.stderr)
        return 1
    if settled < budget:   # the count is the contract: a short sweep is not a success
        print(f"weightmom: only {settled} of {budget} trials settled, {budget - settled} missing; "
              f"`weightmom sweep {args.space} --out {out} --resume` continues the sweep", file=sys.stderr)
        return 1
    return 0


def _settled_rows(out: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(out / "trials.parquet").num_rows
    except (OSError, ValueError):   # none yet, or unreadable (recovery deals with it)
        return 0


def next_steps(out: Path, tracking_uri: str | None, port: int = 5000) -> list[str]:
    """Where the results are and the commands to look at them, runnable as printed from the working directory."""
    from sweeps.records.mlflow_ui import sweep_runs_page
    from sweeps.records.results import read_table

    page = sweep_runs_page(out)
    lines = [f"Results: {out}/trials.parquet, {out}/pareto.parquet, plots in {out}/plots/"]
    if tracking_uri is None:
        store = shlex.quote(f"sqlite:///{out / 'mlflow.db'}")
        lines += [f"MLflow UI: {_tool('mlflow')} ui --backend-store-uri {store} --port {port}",
                  f"  then open http://127.0.0.1:{port}{page} (the front: parent run -> Artifacts -> pareto/)"]
    else:
        lines += [f"MLflow: {tracking_uri.rstrip('/')}{page}"]
    front = read_table(out / "pareto.parquet") if (out / "pareto.parquet").exists() else []
    densities = sorted(r["density"] for r in front if r.get("density") is not None)
    cap = math.ceil(densities[(len(densities) - 1) // 2] * 100) / 100 if densities else 0.1  # the front's middle
    lines += [f"Best config: {_tool('weightmom')} best {shlex.quote(str(out))} --max-density {cap:g} "
              f"--out {shlex.quote(str(out / 'best.yaml'))} --export {shlex.quote(str(out / 'best.pt'))}"]
    return lines


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
    from sweeps.analysis.pareto import format_table, sweep_hypervolume
    from sweeps.recorder.front import front_columns
    from sweeps.records.results import read_table
    from sweeps.records.state import load_sweep_space

    space = load_sweep_space(out)
    front = read_table(out / "pareto.parquet") if (out / "pareto.parquet").exists() else []
    print(f"Pareto front ({len(front)} trials, chosen on {', '.join(space.metrics)}):")
    print(format_table(front, front_columns(space)) if front else "(empty: no completed trial yet)")
    trials = read_table(out / "trials.parquet") if (out / "trials.parquet").exists() else []
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


def run_best_command(args: argparse.Namespace) -> int:
    from sweeps.analysis.best import (
        NothingQualifies,
        describe,
        export_model,
        pick,
        retrain_command,
        train_config_of,
        write_config,
    )
    from sweeps.records.results import read_table

    check_writable(args.out, "--out")
    check_writable(args.export, "--export")
    require(args.max_density is None or 0 < args.max_density <= 1, "--max-density must be in (0, 1]")
    require(args.min_accuracy is None or 0 <= args.min_accuracy <= 1, "--min-accuracy must be in [0, 1]")
    rows = read_table(Path(args.dir) / "trials.parquet")
    try:
        row = pick(rows, args.max_density, args.min_accuracy)
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
