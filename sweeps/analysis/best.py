"""Choosing the config to ship: the most accurate trial under caps (density, MACs, any objective), or the
smallest above an accuracy floor.

Accuracy here is validation accuracy: the test set is reported beside it, never used to choose.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from sweeps.records.results import MODEL_FILE, config_key
from weightmom.contract import TrainConfig, config_from_flat, metric
from weightmom.errors import UsageError, require
from weightmom.files import atomic_write


class NothingQualifies(Exception):
    """No completed trial meets the constraint; the message says what the closest one was."""


ACCURACY = "val_accuracy"


@dataclass(frozen=True)
class Limit:
    """A constraint on a completed trial: `metric` at most (`bound` "max") or at least ("min") `value`."""

    metric: str
    bound: str
    value: float

    def allows(self, row: dict) -> bool:
        value = row.get(self.metric)
        if value is None:
            return False
        return value <= self.value if self.bound == "max" else value >= self.value

    def __str__(self) -> str:
        name = "val accuracy" if self.metric == ACCURACY else self.metric
        return f"{name} {'<=' if self.bound == 'max' else '>='} {self.value:g}"


def limits_of(max_density: float | None = None, min_accuracy: float | None = None) -> list[Limit]:
    """The two classic constraints as limits."""
    return ([Limit("density", "max", max_density)] if max_density is not None else []) + (
        [Limit(ACCURACY, "min", min_accuracy)] if min_accuracy is not None else [])


def size_metric(objectives: Sequence[tuple[str, str]], limits: Sequence[Limit] = ()) -> str:
    """What "smallest" means when choosing: the metric a cap limits (--max-macs), else the sweep's objective
    other than accuracy (density, macs, params), else density."""
    capped = [limit.metric for limit in limits if limit.metric != ACCURACY]
    others = [name for name, _ in objectives if name != ACCURACY]
    return (capped or others or ["density"])[0]


def pick(rows: list[dict], max_density: float | None = None, min_accuracy: float | None = None, *,
         limits: Sequence[Limit] = (), size: str = "density") -> dict:
    """The trial to ship among the completed ones that meet every limit: the most accurate (on val), or, when
    the only limits are accuracy floors, the smallest by `size` (density, macs, params: the objective table's
    mode says which way is smaller). Ties go to the other criterion."""
    limits = [*limits_of(max_density, min_accuracy), *limits]
    complete = [r for r in rows if r.get("state") == "COMPLETE"]
    require(bool(complete), "the sweep has no completed trial yet")
    require(all(r.get(ACCURACY) is not None for r in complete),
            "the sweep's trials report no val_accuracy (val_fraction 0, or a sweep from before the validation "
            "split); choosing on test accuracy would be optimistic, so best needs a sweep with a validation split")
    entry = metric(size)
    smaller = 1.0 if entry is None or entry.mode != "max" else -1.0   # compression_ratio: larger is smaller
    sized = [r for r in complete if r.get(size) is not None]
    ok = [r for r in sized if all(limit.allows(r) for limit in limits)]
    if not ok:
        smallest = min(sized, key=lambda r: smaller * r[size], default=None)
        best = max(complete, key=lambda r: r[ACCURACY])
        closest = (f"the smallest has {size} {smallest[size]:.4g} (val accuracy {smallest[ACCURACY]:.4f}), "
                   if smallest is not None else "")
        raise NothingQualifies(
            f"no completed trial has {' and '.join(map(str, limits)) or 'a result'}; of {len(complete)} completed, "
            f"{closest}the most accurate {best[ACCURACY]:.4f} ({size} {best.get(size, float('nan')):.4g})")
    if limits and all(limit.metric == ACCURACY for limit in limits):
        return min(ok, key=lambda r: (smaller * r[size], -r[ACCURACY]))
    return max(ok, key=lambda r: (r[ACCURACY], -smaller * r[size]))


def train_config_of(row: dict) -> TrainConfig:
    """Rebuild the trial's full TrainConfig from its config.* columns."""
    return config_from_flat({config_key(key.removeprefix("config.")): value for key, value in row.items()
                             if key.startswith("config.") and value is not None})


def describe(row: dict) -> str:
    """The chosen trial's numbers: val (what chose it), test (what to expect), density, and what it costs to
    run (MACs per image, params) where the trial measured them."""
    costs = "".join(f", {name} {row[name]:.4g}" for name in ("macs", "params") if row.get(name) is not None)
    return (f"val_accuracy {row[ACCURACY]:.4f} (chosen on), test_accuracy {row['test_accuracy']:.4f} (held out), "
            f"density {row['density']:.4f}{costs}")


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
