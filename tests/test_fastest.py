"""`weightmom export SWEEP --fastest K` / `--max-latency-ms L`: the K front candidates meeting the limits are exported
and timed in one interleaved run; the fastest (or the most accurate under L ms) ships and the report lists all K.

The sweep folder is built from real checkpoints (three LeNet-300-100 widths trained for 2 epochs on digits) and a
trials.parquet that points at them, as a sweep's driver writes it: far cheaper than running a Ray sweep."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from weightmom.config import TrainConfig
from weightmom_sweeps.cli import main

FAST = ["--latency-runs", "3"]
# (trial id, width, density, the val accuracy the sweep recorded): t1-t3 are the front under --max-density 0.4,
# t4 is on the front but above the limit, t5 is dominated by t3 (denser and less accurate).
TRIALS = [("t1", 0.5, 0.05, 0.80), ("t2", 1.0, 0.1, 0.85), ("t3", 2.0, 0.2, 0.90), ("t4", 1.0, 0.5, 0.95),
          ("t5", 1.0, 0.3, 0.70)]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, one_thread) -> Path:
    from sweeps.bookkeeping.trial_rows import config_columns
    from sweeps.records.results import MODEL_FILE, write_rows
    from weightmom.checkpoint import load_checkpoint
    from weightmom.training import train

    folder = tmp_path_factory.mktemp("sweep")
    rows = []
    for trial_id, width, density, val in TRIALS:
        config = TrainConfig(dataset="digits", model="lenet300", method="weightmom", density=density, width=width,
                             epochs=2, device="cpu", val_fraction=0.1, pruner={"prune_end": 1})
        checkpoint = folder / "ray" / trial_id
        checkpoint.mkdir(parents=True)
        train(config, progress=False).save(str(checkpoint / MODEL_FILE))
        metrics = load_checkpoint(checkpoint / MODEL_FILE).metrics
        rows.append({"trial_id": trial_id, "state": "COMPLETE", **config_columns(asdict(config)),
                     "val_accuracy": val, "test_accuracy": metrics["test_accuracy"], "density": metrics["density"],
                     "macs": metrics["macs"], "num_classes": 10, "checkpoint_path": str(checkpoint)})
    write_rows(folder / "trials.parquet", rows)
    return folder


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _nothing_written(out: Path) -> bool:
    return not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_fastest_ships_the_candidate_measured_fastest_and_lists_all_k(sweep, tmp_path, capsys):
    out = tmp_path / "deploy"
    code, printed, err = _run(["export", str(sweep), "--max-density", "0.4", "--fastest", "3", "--out", str(out),
                               *FAST], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    candidates = report["candidates"]
    listed = candidates["list"]
    assert [c["trial_id"] for c in listed] == ["t3", "t2", "t1"]           # pick's order: most accurate first
    assert all(set(c["latency"]) == {"batch 1", "batch 64"} for c in listed) and candidates["interleaved"]
    fastest = min(listed, key=lambda c: c["latency"]["batch 1"]["p50_ms"])
    assert candidates["shipped"] == fastest["trial_id"] == report["source"]["trial_id"]
    assert fastest["latency"]["batch 1"]["vs_fastest"] == 1.0
    assert all(c["latency"]["batch 1"]["vs_fastest"] >= 1.0 for c in listed)
    assert {c["trial_id"]: c["val_accuracy"] for c in listed} == {"t3": 0.90, "t2": 0.85, "t1": 0.80}
    assert all(c["macs"] > 0 and 0 < c["density"] <= 0.4 and "test_accuracy" in c for c in listed)
    assert candidates["file"] == "model.onnx" and candidates["rank_batch"] == "batch 1"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["width"] == dict((t, w) for t, w, _, _ in TRIALS)[fastest["trial_id"]]
    assert f"# Reproduce the trial: weightmom train --config {out / 'config.yaml'}" in (out / "config.yaml").read_text()
    markdown = (out / "report.md").read_text()
    assert "## Candidates (3): shipped trial" in markdown and all(f"| {t} |" in markdown for t in ("t1", "t2", "t3"))
    assert f"shipped trial {fastest['trial_id']} of 3 candidates" in printed
    assert report["parity"]["passed"] and [p.name for p in tmp_path.iterdir()] == ["deploy"]   # no staging left


def test_max_latency_ships_the_most_accurate_candidate_under_it(sweep, tmp_path, capsys):
    out = tmp_path / "deploy"
    code, _, err = _run(["export", str(sweep), "--max-density", "0.4", "--fastest", "2", "--max-latency-ms", "1e4",
                         "--out", str(out), *FAST], capsys)
    assert code == 0, err
    candidates = json.loads((out / "report.json").read_text())["candidates"]
    assert [c["trial_id"] for c in candidates["list"]] == ["t3", "t2"] and candidates["shipped"] == "t3"
    assert candidates["max_latency_ms"] == 1e4 and "under 10000 ms" in candidates["rule"]


def test_no_candidate_under_the_latency_exits_1_naming_the_fastest(sweep, tmp_path, capsys):
    out = tmp_path / "deploy"
    code, _, err = _run(["export", str(sweep), "--max-density", "0.4", "--fastest", "2", "--max-latency-ms", "1e-6",
                         "--out", str(out), *FAST], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "no candidate measured under 1e-06 ms" in err and "the fastest is trial t" in err
    assert _nothing_written(out)


def test_bad_input_gives_one_line_exit_2_and_nothing_written(sweep, tmp_path, capsys):
    out = tmp_path / "deploy"
    checkpoint = sweep / "ray" / "t1" / "model.pt"
    for argv, words in [(["--fastest", "0"], "--fastest must be at least 1"),
                        (["--max-latency-ms", "0"], "--max-latency-ms must be above 0"),
                        (["--max-latency-ms", "-3", "--fastest", "2"], "--max-latency-ms must be above 0")]:
        code, _, err = _run(["export", str(sweep), "--out", str(out), *argv], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    code, _, err = _run(["export", str(checkpoint), "--out", str(out), "--fastest", "2"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a checkpoint" in err, err
    assert _nothing_written(out)


def test_no_front_trial_meeting_the_limits_exits_1_as_best_does(sweep, tmp_path, capsys):
    out = tmp_path / "deploy"
    code, _, err = _run(["export", str(sweep), "--max-density", "0.01", "--fastest", "2", "--out", str(out)], capsys)
    assert code == 1 and "no completed trial has density <= 0.01" in err and _nothing_written(out)


def test_candidates_are_the_front_in_picks_order():
    from sweeps.analysis.best import Limit
    from sweeps.analysis.fastest import candidates

    rows = [{"trial_id": t, "state": "COMPLETE", "val_accuracy": v, "density": d} for t, _, d, v in TRIALS]
    floor = [Limit("val_accuracy", "min", 0.82)]   # accuracy floors only: pick takes the smallest first
    assert [r["trial_id"] for r in candidates(rows, [], floor, "density", 5)] == ["t2", "t3", "t4"]
    assert [r["trial_id"] for r in candidates(rows, [], [], "density", 2)] == ["t4", "t3"]   # t5 is dominated
