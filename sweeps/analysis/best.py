"""Choosing the config to ship: the most accurate trial under a density cap, or the sparsest above an accuracy floor.

Accuracy here is validation accuracy: the test set is reported beside it, never used to choose.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import yaml

from sweeps.records.results import MODEL_FILE, config_key
from weightmom.contract import TrainConfig, config_from_flat
from weightmom.errors import UsageError, require
from weightmom.files import atomic_write


class NothingQualifies(Exception):
    """No completed trial meets the constraint; the message says what the closest one was."""


ACCURACY = "val_accuracy"


def pick(rows: list[dict], max_density: float | None = None, min_accuracy: float | None = None) -> dict:
    complete = [r for r in rows if r.get("state") == "COMPLETE"]
    require(bool(complete), "the sweep has no completed trial yet")
    require(all(r.get(ACCURACY) is not None for r in complete),
            "the sweep's trials report no val_accuracy (val_fraction 0, or a sweep from before the validation "
            "split); choosing on test accuracy would be optimistic, so best needs a sweep with a validation split")
    ok = [r for r in complete
          if (max_density is None or r["density"] <= max_density)
          and (min_accuracy is None or r[ACCURACY] >= min_accuracy)]
    if not ok:
        sparsest = min(complete, key=lambda r: r["density"])
        best = max(complete, key=lambda r: r[ACCURACY])
        raise NothingQualifies(
            f"no completed trial has {_constraint(max_density, min_accuracy)}; of {len(complete)} completed, "
            f"the sparsest has density {sparsest['density']:.4f} (val accuracy {sparsest[ACCURACY]:.4f}), "
            f"the most accurate {best[ACCURACY]:.4f} (density {best['density']:.4f})")
    if max_density is None and min_accuracy is not None:
        return min(ok, key=lambda r: (r["density"], -r[ACCURACY]))
    return max(ok, key=lambda r: (r[ACCURACY], -r["density"]))


def _constraint(max_density: float | None, min_accuracy: float | None) -> str:
    parts = ([f"density <= {max_density}"] if max_density is not None else []) + (
        [f"val accuracy >= {min_accuracy}"] if min_accuracy is not None else [])
    return " and ".join(parts) or "a result"


def train_config_of(row: dict) -> TrainConfig:
    """Rebuild the trial's full TrainConfig from its config.* columns."""
    return config_from_flat({config_key(key.removeprefix("config.")): value for key, value in row.items()
                             if key.startswith("config.") and value is not None})


def describe(row: dict) -> str:
    """The chosen trial's numbers: val (what chose it), test (what to expect), density."""
    return (f"val_accuracy {row[ACCURACY]:.4f} (chosen on), test_accuracy {row['test_accuracy']:.4f} (held out), "
            f"density {row['density']:.4f}")


def retrain_command(config_path: str | Path, program: str = "weightmom") -> str:
    """The production step: the chosen config again, on all the training data (no validation split)."""
    return f"{program} train --config {config_path} --set val_fraction=0"


def config_yaml(path: str | Path, config: TrainConfig, row: dict) -> str:
    """The config file's text: the trial's numbers and the commands to rerun it, then the config."""
    header = (f"# Trial {row['trial_id']}: {describe(row)}\n"
              f"# Reproduce the trial: weightmom train --config {path}\n"
              f"# Retrain on all training data: {retrain_command(path)}\n")
    return header + yaml.safe_dump(asdict(config), sort_keys=False)


def write_config(path: str | Path, config: TrainConfig, row: dict) -> None:
    text = config_yaml(path, config, row)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def export_model(row: dict, path: str | Path) -> None:
    """Copy the trial's last checkpoint (already the sparse format) to `path`."""
    folder = row.get("checkpoint_path")
    require(bool(folder), f"trial {row['trial_id']} has no checkpoint")
    source = Path(folder) / MODEL_FILE
    if not source.is_file():
        raise UsageError(f"trial {row['trial_id']}: checkpoint {source} not found "
                         "(on a cluster, run `weightmom best` where the sweep's storage is mounted)")
    atomic_write(path, lambda tmp: shutil.copyfile(source, tmp))
