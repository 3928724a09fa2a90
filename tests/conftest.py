"""Shared paths and fixtures: real data only (sklearn digits, ../shared/data/cifar10-mini)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CIFAR_MINI = REPO.parent / "shared" / "data" / "cifar10-mini"


@pytest.fixture(scope="session")
def cifar_mini() -> Path:
    if not CIFAR_MINI.is_dir():
        pytest.skip(f"{CIFAR_MINI} is missing (../shared beside the repository)")
    return CIFAR_MINI
