"""A sweep folder's rows, read once for every command: trials.parquet with its journal replayed over it.

A driver appends rows to trials.journal.jsonl and rewrites trials.parquet only now and then, so while a
sweep runs, and after its driver is killed, some rows exist only in the journal. `pareto`, `best`, `export`
and `table` read them through `sweep_rows`, as the resumed driver does, and the two read-only commands
stay light: no Optuna, MLflow, matplotlib, Ray or torch.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.records.folder import SPACE_COPY, TRIALS, TRIALS_JOURNAL
from sweeps.records.results import ResultsTable, append_journal, journal_path, sweep_rows, write_rows
from sweeps.records.state import SweepState, write_state
from sweeps.space.search_space import SPACES_DIR
from tests.sweep_helpers import rows_so_far, run_until, write_space
from tests.test_torn_resume import ENV
from weightmom.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("optuna", "mlflow", "matplotlib", "ray", "torch")
CONFIG = {"config.dataset": "digits", "config.model": "lenet300", "config.method": "gmp", "config.epochs": 2,
          "config.device": "cpu"}


def row(trial_id: str, val: float, density: float, **extra) -> dict:
    return {"trial_id": trial_id, "state": "COMPLETE", **CONFIG, "config.target_density": density,
            "val_accuracy": val, "test_accuracy": val - 0.01, "density": density, "num_classes": 10, **extra}


def test_the_folder_names_are_the_on_disk_contract() -> None:
    """Old sweep folders hold these names: they must not drift."""
    assert (TRIALS, TRIALS_JOURNAL, SPACE_COPY) == ("trials.parquet", "trials.journal.jsonl", "space.yaml")
    assert journal_path(Path(TRIALS)).name == TRIALS_JOURNAL


def test_the_journal_is_replayed_over_the_table(tmp_path: Path) -> None:
    """Each trial once, in first-seen order, the journal's newer row winning; a torn last line is skipped."""
    write_rows(tmp_path / TRIALS, [row("a", 0.9, 0.1), row("b", 0.8, 0.05)])
    journal = tmp_path / TRIALS_JOURNAL
    append_journal(journal, row("b", 0.85, 0.05, mlflow_run_id="newer"))
    append_journal(journal, row("c", 0.95, 0.2))
    with open(journal, "a") as sink:
        sink.write('{"trial_id": "torn", "sta')   # a kill mid-append
    rows = sweep_rows(tmp_path)
    assert [r["trial_id"] for r in rows] == ["a", "b", "c"]
    assert rows[1]["val_accuracy"] == 0.85 and rows[1]["mlflow_run_id"] == "newer"
    assert rows == ResultsTable(tmp_path / TRIALS).rows()   # the driver's own replay, not a second one


def test_a_journal_alone_is_read_and_no_rows_at_all_is_said(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"trials\.parquet: no such results file"):
        sweep_rows(tmp_path)
    assert sweep_rows(tmp_path, required=False) == []
    append_journal(tmp_path / TRIALS_JOURNAL, row("only", 0.9, 0.1))   # a table set aside as unreadable
    assert [r["trial_id"] for r in sweep_rows(tmp_path)] == ["only"]


def sweep_folder(out: Path) -> Path:
    """A sweep's folder as a driver leaves it, written by the project's own writers: sweep.json, the space's
    copy, two rows in trials.parquet and a third, the sparsest, still in the journal."""
    out.mkdir()
    write_state(out, SweepState(space="digits-quick", tracking_uri=f"sqlite:///{out / 'mlflow.db'}",
                                experiment_id="1", parent_run_id="parent", optuna_storage="sqlite:///unused.db",
                                storage=str(out / "ray"), ray_experiment="unused", trials=3, concurrency=1,
                                smoke_test=False))
    shutil.copyfile(SPACES_DIR / "digits-quick.yaml", out / SPACE_COPY)
    write_rows(out / TRIALS, [row("parquet-a", 0.99, 0.2), row("parquet-b", 0.9, 0.1)])   # b: dominated by c
    append_journal(out / TRIALS_JOURNAL, row("journal-c", 0.97, 0.03))
    return out


def run_commands(out: Path, best: Path) -> dict:
    """`pareto` and `best` as the console script runs them, in a fresh interpreter: their exit codes, output,
    and which heavy libraries they loaded."""
    code = (f"import json, sys\nfrom weightmom_sweeps.cli import main\n"
            f"codes = [main(['pareto', {str(out)!r}]), "
            f"main(['best', {str(out)!r}, '--max-density', '0.05', '--out', {str(best)!r}])]\n"
            f"print(json.dumps({{'codes': codes, 'heavy': sorted({{m.split('.')[0] for m in sys.modules}} & "
            f"set({HEAVY!r}))}}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    *printed, last = done.stdout.strip().splitlines()
    return {**json.loads(last), "stdout": "\n".join(printed)}


def test_pareto_and_best_list_journal_rows_without_heavy_libraries(tmp_path: Path) -> None:
    result = run_commands(sweep_folder(tmp_path / "sweep"), tmp_path / "best.yaml")
    assert result["codes"] == [0, 0]
    assert result["heavy"] == []
    front = result["stdout"].split("Pareto front (", 1)[1]
    assert front.startswith("2 trials") and "journal-c" in front and "parquet-a" in front
    assert "trial journal-c: val_accuracy 0.9700" in result["stdout"]
    assert (tmp_path / "best.yaml").read_text().startswith("# Trial journal-c:")


@pytest.mark.slow
def test_a_killed_drivers_journal_rows_are_listed(tmp_path: Path) -> None:
    """A real driver, SIGKILLed (with its Ray) once a trial has a row; the rows it had in the journal only
    are then what its recorder appends between two rewrites of trials.parquet."""
    out = tmp_path / "sweep"
    space = write_space(tmp_path, "killed", 3, concurrency=1, early_stopping={"enabled": False},
                        fixed={"epochs": 2, "pruner": {"prune_end": 1}})
    command = [sys.executable, "-m", "weightmom_sweeps", "sweep", str(space), "--out", str(out), "--verbose", "0"]
    run_until(command, tmp_path / "driver.log", lambda: rows_so_far(out) >= 1, signal.SIGKILL, group=True,
              env=ENV, cwd=REPO)
    real = sweep_rows(out)[0]
    assert real["state"] == "COMPLETE" and real["density"] > 0.02   # the space searches density >= 0.03
    append_journal(out / TRIALS_JOURNAL, {**real, "trial_id": "from-the-journal", "val_accuracy": 0.999,
                                          "density": 0.011, "config.target_density": 0.011})
    append_journal(out / TRIALS_JOURNAL, {**real, "mlflow_run_id": "newer-row"})

    rows = sweep_rows(out)
    assert len({r["trial_id"] for r in rows}) == len(rows)
    assert {r["trial_id"]: r for r in rows}[real["trial_id"]]["mlflow_run_id"] == "newer-row"
    pareto = subprocess.run([sys.executable, "-m", "weightmom_sweeps", "pareto", str(out)], capture_output=True,
                            text=True, timeout=120, cwd=REPO, env=ENV)
    assert pareto.returncode == 0, pareto.stderr[-3000:]
    assert "from-the-journal" in pareto.stdout.split("Front quality")[0]
    best = subprocess.run([sys.executable, "-m", "weightmom_sweeps", "best", str(out), "--max-density", "0.02",
                           "--out", str(tmp_path / "best.yaml")], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=ENV)
    assert best.returncode == 0, best.stderr[-3000:]
    assert best.stdout.startswith("trial from-the-journal: val_accuracy 0.9990")
