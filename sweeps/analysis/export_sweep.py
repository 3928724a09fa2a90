"""`weightmom export SOURCE --out DIR`'s front end: SOURCE is a checkpoint, or a sweep folder and a constraint.

A sweep's trial is chosen and copied exactly as `weightmom best` chooses and copies it (`pick`, `export_model`);
the export itself is the library's (weightmom.export), which needs nothing of the sweep layer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from sweeps.analysis.best import Limit, config_yaml, describe, export_model, limits_of, pick, train_config_of
from sweeps.records.folder import TRIALS
from sweeps.records.results import MODEL_FILE, sweep_points
from weightmom.errors import require
from weightmom.export import ExportOptions, export_checkpoint
from weightmom.export.source import check_out_dir


def export_source(source: str | Path, out: str | Path, options: ExportOptions, max_density: float | None = None,
                  min_accuracy: float | None = None, limits: Sequence[Limit] = (), size: str = "density") -> dict:
    """Export a checkpoint file, or the trial of sweep folder `source` that `best` would pick under `limits`
    (`size`: what "smallest" means, as for `pick`); report.json's content.

    Raises NothingQualifies (as `best` does) when no completed trial meets the constraint.
    """
    source, out = Path(source), Path(out)
    require(max_density is None or 0 < max_density <= 1, "--max-density must be in (0, 1]")
    require(min_accuracy is None or 0 <= min_accuracy <= 1, "--min-accuracy must be in [0, 1]")
    limits = [*limits_of(max_density, min_accuracy), *limits]
    if not source.is_dir():
        require(not limits, f"{source}: --max-density, --min-accuracy and the other limits choose a trial in a "
                            "sweep folder, not in a checkpoint")
        return export_checkpoint(source, out, options)
    rows = sweep_points(source, required=False)   # the journal's rows too: a killed driver's last trials
    require(bool(rows) or (source / TRIALS).is_file(), f"{source}: not a sweep folder (no {TRIALS})")
    check_out_dir(out)   # before the copy, which is staged beside DIR
    return export_row(pick(rows, limits=limits, size=size), source, out, options, limits)


def export_row(row: dict, sweep: Path, out: Path, options: ExportOptions, limits: Sequence[Limit] = (),
               shipped_as: Path | None = None) -> dict:
    """Export one trial (a row of sweep folder `sweep`) to `out` with `best`'s config file; report.json's content.

    `shipped_as`: the folder `out` will be renamed to (the config's header names its config.yaml), default `out`.
    """
    origin = {"sweep": str(sweep), "trial_id": row["trial_id"], "chosen": describe(row),
              "checkpoint": str(Path(row.get("checkpoint_path") or "") / MODEL_FILE),
              "constraint": constraint_record(limits)}
    text = config_yaml((shipped_as or out) / "config.yaml", train_config_of(row), row)
    with tempfile.TemporaryDirectory(dir=out.absolute().parent, prefix=f".{out.name}.checkpoint-") as tmp:
        checkpoint = Path(tmp) / "model.pt"
        export_model(row, checkpoint)
        return export_checkpoint(checkpoint, out, options, config_text=text, origin=origin)


def constraint_record(limits: Sequence[Limit]) -> dict:
    """report.json's `constraint`: max_density and min_accuracy always (None when unset), any other limit by name."""
    record = {"max_density": None, "min_accuracy": None}
    for limit in limits:
        name = "accuracy" if limit.metric == "val_accuracy" else limit.metric
        record[f"{limit.bound}_{name}"] = limit.value
    return record
