"""What `weightmom pareto` and `weightmom best` cost, before and after, side by side in one run.

    python benchmarks/command_cost.py runs/demo               # this checkout against git HEAD
    python benchmarks/command_cost.py runs/demo --rev 6cfc9b4 --repeats 7

"Before" is the code at --rev, checked out into a temporary git worktree (the main checkout is left as it
is) and run with that worktree first on PYTHONPATH; "after" is this checkout. Each repeat runs before and
after in turn (A B A B ...), so a shared machine's drift hits both alike. Every run is a fresh process,
as a user runs the command; its wall time and peak RSS come from the kernel (os.wait4). Prints the median
of each, min-max, and after/before ratios.

Why it matters: `pareto` printed a table in 3.9-4.5 s and 844 MB, because it loaded the whole space
(the model and dataset registries, hence torch) and the recorder (Optuna, MLflow, matplotlib).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(argv: list[str], code: Path) -> tuple[float, float]:
    """One fresh process of `python -m weightmom_sweeps ARGV` on the code in `code`: (wall s, peak RSS MB)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    with tempfile.TemporaryFile() as stderr:   # a file, not a pipe: nothing blocks while wait4 waits
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "weightmom_sweeps", *argv], cwd=code, env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)   # this child's own rusage (RUSAGE_CHILDREN is a running max)
        wall = time.perf_counter() - start
        process.returncode = exit_code = os.waitstatus_to_exitcode(status)
        if exit_code != 0:
            stderr.seek(0)
            raise SystemExit(f"{' '.join(argv)} on {code} exited {exit_code}: "
                             f"{stderr.read().decode(errors='replace')[-2000:]}")
    return wall, usage.ru_maxrss / 1024   # Linux: KiB


def which_code(code: Path) -> str:
    """Where `sweeps` is imported from under `code`'s PYTHONPATH: the check that before is really before."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    return subprocess.run([sys.executable, "-c", "import sweeps; print(sweeps.__file__)"], cwd=code, env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def worktree(rev: str, into: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(into), rev], check=True,
                   capture_output=True)
    return into


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a sweep folder, e.g. runs/demo (make demo)")
    parser.add_argument("--rev", default="HEAD", help="the code to compare with (default HEAD)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-density", dest="max_density", default="0.1", help="best's constraint")
    args = parser.parse_args(argv)
    folder = args.folder.resolve()
    if not (folder / "sweep.json").is_file():
        print(f"error: {args.folder} is not a sweep folder (no sweep.json); `make demo` writes runs/demo",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="command-cost-") as tmp:
        before = worktree(args.rev, Path(tmp) / "before")
        try:
            assert which_code(before).startswith(str(before)), which_code(before)
            assert which_code(REPO).startswith(str(REPO)), which_code(REPO)
            commands = {"pareto": ["pareto", str(folder)],
                        "best": ["best", str(folder), "--max-density", args.max_density,
                                 "--out", str(Path(tmp) / "best.yaml")]}
            print(f"{folder}: {args.repeats} runs each, before = {args.rev}, after = this checkout "
                  f"(median, min-max)")
            print(f"{'command':8} {'':6} {'wall s':>20} {'peak RSS MB':>22}")
            for name, command in commands.items():
                runs = {"before": [], "after": []}
                for _ in range(args.repeats):
                    runs["before"].append(run_once(command, before))
                    runs["after"].append(run_once(command, REPO))
                for side, measured in runs.items():
                    print(f"{name:8} {side:6} {summary([w for w, _ in measured]):>20} "
                          f"{summary([m for _, m in measured]):>22}")
                time_ratio = [b[0] / a[0] for b, a in zip(runs["before"], runs["after"])]
                rss_ratio = [b[1] / a[1] for b, a in zip(runs["before"], runs["after"])]
                print(f"{name:8} {'ratio':6} before/after, pair by pair: time {summary(time_ratio)}x, "
                      f"RSS {summary(rss_ratio)}x")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)],
                           capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
