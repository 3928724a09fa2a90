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
    saved = tmp_path / "state.pt"

    def keep_epoch_2(metrics: dict, result) -> None:
        if metrics["epoch"] == 2:
            result.save_state(str(saved))

    unbroken = train(config, epoch_end=keep_epoch_2, progress=False)
    seen: list[int] = []
    resumed = train(config, resume=torch.load(saved, weights_only=True), progress=False,
                    report=lambda m: seen.append(m["epoch"]))
    assert seen == [3, 4, 5]
    for (name, a), b in zip(unbroken.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.metrics["test_accuracy"] == unbroken.metrics["test_accuracy"]
    assert resumed.metrics["density"] == unbroken.metrics["density"]
    assert resumed.pruner.masks().keys() == unbroken.pruner.masks().keys()
