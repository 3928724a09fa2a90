"""`weightmom export SWEEP --fastest K [--max-latency-ms L]`: choose among a sweep's front by measured latency.

The K candidates are the Pareto front's trials that meet the limits, best first in `pick`'s own order. Each is
exported whole (the library's export_checkpoint, parity and all) into a staging folder beside DIR; then one
interleaved latency run (ONNX Runtime, batch 1 and 64, --threads) times every candidate's model.onnx (model.int8.onnx
with --int8) in the same rounds, so load that comes and goes hits them alike. The fastest by p50 at batch 1 ships,
or, with --max-latency-ms L, the most accurate whose p50 at batch 1 is under L. DIR's report lists every candidate.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sweeps.analysis.best import ACCURACY, Limit, NothingQualifies, pick
from sweeps.analysis.export_sweep import export_row
from sweeps.analysis.pareto import front_rows
from sweeps.records.folder import TRIALS
from sweeps.records.results import sweep_points
from weightmom.errors import require
from weightmom.export import ExportFailed, ExportOptions
from weightmom.export import report as export_report
from weightmom.export.latency import latency_table
from weightmom.export.machine import cpu_info, describe
from weightmom.export.quantize import INT8
from weightmom.export.runtimes import ort_runner
from weightmom.export.source import check_out_dir

RANK_BATCH = "batch 1"                 # what "fastest" means: ONNX Runtime p50 at batch 1 (a served request)
DEFAULT_OBJECTIVES = [(ACCURACY, "max"), ("density", "min")]   # a folder of rows without its space's copy
DEFAULT_K = 3                          # candidates measured when only --max-latency-ms is given


def candidates(rows: list[dict], objectives: Sequence[tuple[str, str]], limits: Sequence[Limit], size: str,
               k: int) -> list[dict]:
    """The best `k` front trials meeting `limits`, in `pick`'s order (pick, remove, pick again); raises
    NothingQualifies (with `best`'s closest-trial message) when none does."""
    metrics, modes = zip(*(objectives or DEFAULT_OBJECTIVES))
    pool, chosen = front_rows(rows, metrics, modes), []
    while pool and len(chosen) < k:
        try:
            row = pick(pool, limits=limits, size=size)
        except NothingQualifies:
            break
        chosen.append(row)
        pool = [r for r in pool if r is not row]
    if not chosen:
        pick(rows, limits=limits, size=size)   # raises with the closest trials when no trial at all qualifies
        raise NothingQualifies(f"no trial on the Pareto front has {' and '.join(map(str, limits)) or 'a result'}")
    return chosen


def export_fastest(source: str | Path, out: str | Path, options: ExportOptions, limits: Sequence[Limit], size: str,
                   objectives: Sequence[tuple[str, str]], k: int, max_latency_ms: float | None = None) -> dict:
    """Export the K candidates, time them in one interleaved run, ship one as `out`; its report.json's content.

    Raises NothingQualifies when no trial qualifies or none measured under `max_latency_ms` (nothing written),
    ExportFailed when every candidate's export fails its checks.
    """
    source, out = Path(source), Path(out)
    require(k >= 1, "--fastest must be at least 1")
    require(max_latency_ms is None or max_latency_ms > 0, "--max-latency-ms must be above 0")
    require(source.is_dir(), f"{source}: --fastest and --max-latency-ms choose among a sweep folder's trials, "
                             "not a checkpoint")
    rows = sweep_points(source, required=False)
    require(bool(rows) or (source / TRIALS).is_file(), f"{source}: not a sweep folder (no {TRIALS})")
    check_out_dir(out)
    rows = candidates(rows, objectives, limits, size, k)
    staging = Path(tempfile.mkdtemp(dir=out.absolute().parent, prefix=f".{out.name}.fastest-"))
    try:
        reports, failed = _export_all(rows, source, staging, out, options, limits)
        model_file = INT8 if options.int8 else "model.onnx"
        table = latency_table({name: {"onnxruntime": ort_runner(str(staging / name / model_file), options.threads)}
                               for name in reports}, reports[next(iter(reports))]["input"]["shape"][1:],
                              options.latency_batches, options.latency_runs, options.latency_warmup)
        listed = _listing(rows, table, failed)
        shipped = _choose(listed, max_latency_ms)
        result = reports[shipped["folder"]]
        result["candidates"] = {"file": model_file, "runtime": "onnxruntime", "threads": options.threads,
                                "runs": options.latency_runs, "interleaved": True, "cpu": cpu_info(),
                                "rank_batch": RANK_BATCH, "max_latency_ms": max_latency_ms,
                                "rule": _rule(max_latency_ms), "shipped": shipped["trial_id"],
                                "list": [{key: c[key] for key in c if key != "folder"} for c in listed]}
        folder = staging / shipped["folder"]
        (folder / "report.json").write_text(json.dumps(result, indent=2))
        (folder / "report.md").write_text(export_report.markdown(result) + markdown(result["candidates"]))
        if out.exists():
            out.rmdir()   # empty, checked above
        folder.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _export_all(rows: list[dict], sweep: Path, staging: Path, out: Path, options: ExportOptions,
                limits: Sequence[Limit]) -> tuple[dict[str, dict], dict[str, str]]:
    """Each candidate exported into staging/<rank>-<trial>; a candidate failing its checks is listed, not shipped."""
    reports, failed = {}, {}
    for rank, row in enumerate(rows, 1):
        name = f"{rank}-{row['trial_id']}"
        try:
            reports[name] = export_row(row, sweep, staging / name, options, limits, shipped_as=out)
        except ExportFailed as err:   # parity or the int8 gate: the others may still ship
            failed[name] = str(err)
    if not reports:
        raise ExportFailed(f"all {len(rows)} candidates failed their export: {next(iter(failed.values()))}")
    return reports, failed


def _listing(rows: list[dict], table: dict, failed: dict[str, str]) -> list[dict]:
    """One entry per candidate, in pick's order: its sweep numbers, its measured p50/p95, p50 / fastest p50."""
    best = {batch: min(t["onnxruntime"][batch]["p50_ms"] for t in table.values()) for batch in _batches(table)}
    listed = []
    for rank, row in enumerate(rows, 1):
        name = f"{rank}-{row['trial_id']}"
        entry = {"folder": name, "rank": rank, "trial_id": row["trial_id"],
                 **{key: row.get(key) for key in (ACCURACY, "test_accuracy", "density", "macs", "params")
                    if row.get(key) is not None}}
        if name in failed:
            entry["failed"] = failed[name]
        else:
            timings = table[name]["onnxruntime"]
            entry["latency"] = {batch: {**t, "vs_fastest": t["p50_ms"] / best[batch]} for batch, t in timings.items()}
        listed.append(entry)
    return listed


def _batches(table: dict) -> list[str]:
    return list(next(iter(table.values()))["onnxruntime"])


def _choose(listed: list[dict], max_latency_ms: float | None) -> dict:
    measured = [c for c in listed if "latency" in c]
    fastest = min(measured, key=lambda c: c["latency"][RANK_BATCH]["p50_ms"])
    if max_latency_ms is None:
        return fastest
    under = [c for c in measured if c["latency"][RANK_BATCH]["p50_ms"] < max_latency_ms]
    if not under:
        raise NothingQualifies(
            f"no candidate measured under {max_latency_ms:g} ms (ONNX Runtime p50, {RANK_BATCH}); of "
            f"{len(measured)}, the fastest is trial {fastest['trial_id']} at "
            f"{fastest['latency'][RANK_BATCH]['p50_ms']:.3f} ms (val accuracy {fastest[ACCURACY]:.4f})")
    return max(under, key=lambda c: (c[ACCURACY], -c["rank"]))   # ties: pick's order


def _rule(max_latency_ms: float | None) -> str:
    if max_latency_ms is None:
        return f"the fastest by ONNX Runtime p50 at {RANK_BATCH}"
    return f"the most accurate (val) whose ONNX Runtime p50 at {RANK_BATCH} is under {max_latency_ms:g} ms"


def summary(candidates: dict) -> str:
    """The CLI's line: what shipped, by which rule, and every candidate's p50 at the ranking batch."""
    each = ", ".join(f"{c['trial_id']} " + (f"{c['latency'][RANK_BATCH]['p50_ms']:.3f} ms" if "latency" in c
                                            else "failed") for c in candidates["list"])
    return (f"shipped trial {candidates['shipped']} of {len(candidates['list'])} candidates, {candidates['rule']} "
            f"({candidates['file']}, p50 at {RANK_BATCH}: {each}); all listed in report.md")


def markdown(candidates: dict) -> str:
    """report.md's candidates section: every candidate's numbers, the shipped one marked."""
    batches = next(iter(c["latency"] for c in candidates["list"] if "latency" in c))
    head = " | ".join(f"{b}: p50 / p95 ms | {b}: p50 / fastest p50" for b in batches)
    lines = [f"## Candidates ({len(candidates['list'])}): shipped trial {candidates['shipped']}, {candidates['rule']}",
             "", f"{candidates['file']} of each candidate on ONNX Runtime, {candidates['threads']} thread(s), "
             f"{candidates['runs']} timed runs each in one interleaved run; "
             f"{describe(candidates['cpu'])}", "",
             f"| | rank | trial | val accuracy | test accuracy | density | MACs | {head} |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |" + " ---: | ---: |" * len(batches)]
    for c in candidates["list"]:
        numbers = (" | ".join(f"{t['p50_ms']:.3f} / {t['p95_ms']:.3f} | {t['vs_fastest']:.2f}x"
                              for t in c["latency"].values()) if "latency" in c
                   else " | ".join([f"failed: {c['failed']}"] + ["-"] * (2 * len(batches) - 1)))
        macs = f"{c['macs']:,.0f}" if c.get("macs") is not None else "-"
        lines.append(f"| {'shipped' if c['trial_id'] == candidates['shipped'] else ''} | {c['rank']} | "
                     f"{c['trial_id']} | {c[ACCURACY]:.4f} | {_fmt(c.get('test_accuracy'))} | "
                     f"{_fmt(c.get('density'))} | {macs} | {numbers} |")
    return "\n".join([*lines, ""]) + "\n"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
