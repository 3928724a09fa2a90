"""Turn recorded sweep folders into one replay table: a row per trial, its params and per-epoch curves.

The recording sweeps run with early stopping off (every trial to its full budget), so the table answers
"what would this config have shown at epoch t" for every t, which is what a replayed scheduler asks.
Per-epoch values come from the sweep's own Ray trial records (OUT/ray/<experiment>/<trial>/result.json,
one line per reported epoch); MLflow holds the same history per child run.

    python benchmarks/record_table.py runs/digits-wide-s1 runs/digits-wide-s2 --out benchmarks/data/digits-wide.parquet
    python benchmarks/record_table.py runs/digits-wide-s3 --out benchmarks/data/digits-wide.parquet --append

Columns: trial (folder/trial id), one column per swept param (None where a `when` left it out), epochs
(the full budget), val_accuracy_by_epoch and density_by_epoch (lists, one value per epoch, epoch 1 first),
and the final val_accuracy_final / density_final (the measured density; the `density` param is the target).
Trials that did not reach the full budget are left out (counted on stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from sweeps import load_space
from sweeps.records.folder import RAY_STORAGE, SPACE_COPY


def trial_rows(folder: Path) -> tuple[list[dict], int]:
    """The full-budget trials recorded in one sweep folder, and how many others were skipped."""
    space = load_space(str(folder / SPACE_COPY))
    rows, skipped = [], 0
    for result in sorted(folder.glob(f"{RAY_STORAGE}/*/*/result.json")):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        by_epoch = {int(r["epoch"]): r for r in lines if "epoch" in r}
        if sorted(by_epoch) != list(range(1, space.epochs + 1)):
            skipped += 1
            continue
        config = lines[-1]["config"]
        row = {"trial": f"{folder.name}/{lines[-1]['trial_id']}"}
        row.update({name: config.get(name) for name in space.params})
        curves = {m: [float(by_epoch[e][m]) for e in sorted(by_epoch)] for m in ("val_accuracy", "density")}
        row.update(epochs=space.epochs, val_accuracy_by_epoch=curves["val_accuracy"],
                   density_by_epoch=curves["density"], val_accuracy_final=curves["val_accuracy"][-1],
                   density_final=curves["density"][-1])
        rows.append(row)
    return rows, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="sweep output folders (each with space.yaml and ray/)")
    parser.add_argument("--out", type=Path, required=True, help="the Parquet file to write")
    parser.add_argument("--append", action="store_true",
                        help="keep the trials already in --out (a table grows chunk by chunk; a trial is kept once)")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not (f / SPACE_COPY).is_file()]
    if missing:
        print(f"error: not a sweep folder (no space.yaml): {', '.join(missing)}", file=sys.stderr)
        return 2
    rows, skipped = [], 0
    for folder in args.folders:
        got, left = trial_rows(folder)
        rows += got
        skipped += left
    if not rows:
        print("error: no full-budget trials in these folders", file=sys.stderr)
        return 2
    table = pd.DataFrame(rows)
    if args.append and args.out.is_file():
        try:
            kept = pd.read_parquet(args.out)
        except Exception as error:   # any unreadable file: say so, and leave it as it is
            print(f"error: cannot append to {args.out}: {error}", file=sys.stderr)
            return 2
        table = pd.concat([kept, table[~table["trial"].isin(kept["trial"])]], ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(args.out)
    print(f"{len(rows)} trials read, {len(table)} in {args.out} ({skipped} not at their full budget, left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
