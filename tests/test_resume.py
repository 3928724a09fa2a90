"""A run stopped after any epoch and resumed from `result.state` ends bit-identical to an unbroken one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from weightmom import TrainConfig, train


@pytest.mark.parametrize("method", ["weightmom", "gmp", "snip", "gsm", "random", "dense", "n2nskip"])
def test_resume_is_bit_exact(method: str, tmp_path: Path) -> None:
    config = TrainConfig(method=method, density=None if method == "dense" else 0.1, epochs=5,
                         pruner={"prune_end": 4} if method in ("weightmom", "gmp") else {})
    unbroken, resumed = stopped_and_resumed(config, 2, tmp_path)
    assert resumed.metrics["density"] == unbroken.metrics["density"]
    assert resumed.pruner.masks().keys() == unbroken.pruner.masks().keys()


def stopped_and_resumed(config: TrainConfig, epoch: int, tmp_path: Path):
    """An unbroken run and one resumed from its state after `epoch`: the resumed one trains exactly the epochs
    after it and ends bit-identical (asserted here). Returns both results."""
    saved = tmp_path / "state.pt"

    def keep(metrics: dict, result) -> None:
        if metrics["epoch"] == epoch:
            result.save_state(str(saved))

    unbroken = train(config, epoch_end=keep, progress=False)
    seen: list[int] = []
    resumed = train(config, resume=torch.load(saved, weights_only=True), progress=False,
                    report=lambda m: seen.append(m["epoch"]))
    assert seen == list(range(epoch + 1, config.total_epochs + 1))
    for (name, a), b in zip(unbroken.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.metrics["test_accuracy"] == unbroken.metrics["test_accuracy"]
    return unbroken, resumed
