"""`weightmom export SOURCE --out DIR`'s front end: SOURCE is a checkpoint, or a sweep folder and a constraint.

A sweep's trial is chosen and copied exactly as `weightmom best` chooses and copies it (`pick`, `export_model`);
the export itself is the library's (weightmom.export), which needs nothing of the sweep layer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sweeps.analysis.best import config_yaml, describe, export_model, pick, train_config_of
from sweeps.records.results import MODEL_FILE, read_table
from weightmom.errors import require
from weightmom.export import ExportOptions, export_checkpoint
from weightmom.export.source import check_out_dir


def export_source(source: str | Path, out: str | Path, options: ExportOptions, max_density: float | None = None,
                  min_accuracy: float | None = None) -> dict:
    """Export a checkpoint file, or the trial of sweep folder `source` that `best` would pick; report.json's content.

    Raises NothingQualifies (as `best` does) when no completed trial meets the constraint.
    """
    source, out = Path(source), Path(out)
    require(max_density is None or 0 < max_density <= 1, "--max-density must be in (0, 1]")
    require(min_accuracy is None or 0 <= min_accuracy <= 1, "--min-accuracy must be in [0, 1]")
    if not source.is_dir():
        require(max_density is None and min_accuracy is None,
                f"{source}: --max-density and --min-accuracy choose a trial in a sweep folder, not in a checkpoint")
        return export_checkpoint(source, out, options)
    require((source / "trials.parquet").is_file(), f"{source}: not a sweep folder (no trials.parquet)")
    check_out_dir(out)   # before the copy, which is staged beside DIR
    row = pick(read_table(source / "trials.parquet"), max_density, min_accuracy)
    origin = {"sweep": str(source), "trial_id": row["trial_id"], "chosen": describe(row),
              "checkpoint": str(Path(row.get("checkpoint_path") or "") / MODEL_FILE),
              "constraint": {"max_density": max_density, "min_accuracy": min_accuracy}}
    text = config_yaml(out / "config.yaml", train_config_of(row), row)
    with tempfile.TemporaryDirectory(dir=out.absolute().parent, prefix=f".{out.name}.checkpoint-") as tmp:
        checkpoint = Path(tmp) / "model.pt"
        export_model(row, checkpoint)
        return export_checkpoint(checkpoint, out, options, config_text=text, origin=origin)
