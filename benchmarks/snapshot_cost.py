"""What snapshotting the Ray experiment at every step costs, against Ray's default cadence.

`python benchmarks/snapshot_cost.py [--rounds 2] [--trials 6]` runs the same digits-quick sweep with
TUNE_GLOBAL_CHECKPOINT_S=0 (a snapshot at every controller step), =2 (at most every 2 s) and Ray's
default ("auto": every 10 s or more), each plus the snapshots Ray forces after trial checkpoints,
interleaved. Each
sweep runs in a subprocess whose Ray functions are wrapped to time:

- the driver time spent snapshotting (TuneController.checkpoint: writing the state files and
  waiting for forced uploads): what the setting costs;
- the uploads of the snapshot to the storage folder (a background copy, written in place): while
  one runs, a killed driver leaves a torn snapshot, which `--resume` now recovers from;
- the gaps between finished uploads: a driver killed in a gap resumes from a snapshot that old,
  and what happened since (trials started or finished) is lost to Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"every step": "0", "every 2 s": "2", "Ray default": "auto"}   # TUNE_GLOBAL_CHECKPOINT_S

# Runs inside the sweep's process: wraps the Ray functions, writes the timings at exit.
HOOK = r"""
import atexit, json, os, sys, time
from ray.train._internal import storage
from ray.tune.execution import tune_controller

timings = {"checkpoint": [], "writes": [], "uploads": []}

def timed(owner, name, key):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        start = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            timings[key].append((start, time.monotonic()))
    setattr(owner, name, wrapper)

timed(tune_controller.TuneController, "checkpoint", "checkpoint")     # called every step; may skip
timed(tune_controller.TuneController, "save_to_dir", "writes")        # a snapshot actually written
timed(storage, "_upload_to_fs_path", "uploads")   # the driver's uploads are the snapshot's only
atexit.register(lambda: open(os.environ["SNAPSHOT_TIMINGS"], "w").write(json.dumps(timings)))
from weightmom_sweeps.cli import main
sys.exit(main(sys.argv[1:]))
"""


def one_sweep(setting: str, trials: int, folder: Path) -> dict:
    timings = folder / "timings.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SNAPSHOT_TIMINGS": str(timings)}
    env["TUNE_GLOBAL_CHECKPOINT_S"] = SETTINGS[setting]
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", HOOK, "sweep", "digits-quick", "--trials", str(trials),
                    "--out", str(folder / "sweep"), "--verbose", "0"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.monotonic() - start
    data = json.loads(timings.read_text())
    uploads = sorted(data["uploads"])
    ends = [end for _, end in uploads]
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    span = ends[-1] - ends[0] if len(ends) > 1 else 0.0
    return {
        "wall_s": wall,
        "snapshots": len(data["writes"]),
        "driver_s": sum(end - start for start, end in data["checkpoint"]),
        "uploads": len(uploads),
        "upload_s": sum(end - start for start, end in uploads),
        "max_gap_s": max(gaps, default=0.0),
        # Mean age of the newest uploaded snapshot at a random moment: the work a kill then loses.
        "mean_age_s": sum(g * g for g in gaps) / (2 * span) if span else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
    with tempfile.TemporaryDirectory() as root:
        for round_ in range(args.rounds):
            for setting in results:   # interleaved: the shared machine's load hits both alike
                folder = Path(root) / f"{setting.replace(' ', '-')}-{round_}"
                folder.mkdir()
                results[setting].append(one_sweep(setting, args.trials, folder))
                print(setting, {k: round(v, 3) for k, v in results[setting][-1].items()}, flush=True)
    print(f"\nmedians over {args.rounds} sweeps of {args.trials} digits-quick trials each:")
    print("| setting | sweep wall s | snapshots | driver s in snapshots | share of wall | uploads | "
          "upload s (torn window) | share of wall | max gap s | mean snapshot age s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for setting, runs in results.items():
        m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {setting} | {m['wall_s']:.1f} | {m['snapshots']:.0f} | {m['driver_s']:.2f} | "
              f"{m['driver_s'] / m['wall_s']:.1%} | {m['uploads']:.0f} | {m['upload_s']:.2f} | "
              f"{m['upload_s'] / m['wall_s']:.1%} | {m['max_gap_s']:.1f} | {m['mean_age_s']:.1f} |")


if __name__ == "__main__":
    main()
