"""Tests for the model registry: shapes, parameter counts, width scaling, errors, seeding."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from weightmom.errors import UsageError
from weightmom.models import MODELS, create_model

CIFAR = (3, 32, 32)
DIGITS = (1, 8, 8)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.cache
def param_count(name: str, shape: tuple[int, int, int], classes: int, width: float) -> int:
    """Parameter count, cached so the big models are only built once per configuration."""
    torch.manual_seed(0)
    return n_params(create_model(name, shape, classes, width))


def _check_forward(model: nn.Module, shape: tuple[int, int, int], classes: int) -> None:
    x = torch.randn(2, *shape)
    with torch.no_grad():
        for train in (False, True):
            model.train(train)
            out = model(x)
            assert out.shape == (2, classes)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_cifar_full_width(name: str) -> None:
    torch.manual_seed(0)
    _check_forward(create_model(name, CIFAR, 10), CIFAR, 10)


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_digits_quarter_width(name: str) -> None:
    torch.manual_seed(0)
    _check_forward(create_model(name, DIGITS, 10, width=0.25), DIGITS, 10)


def test_lenet300_param_count_exact() -> None:
    assert param_count("lenet300", DIGITS, 10, 1.0) == 50_610


@pytest.mark.parametrize(
    ("name", "exact", "quoted"),
    [("resnet20", 269_722, 270_000), ("resnet56", 853_018, 855_000)],
)
def test_cifar_resnet_param_counts(name: str, exact: int, quoted: int) -> None:
    """Option-A shortcuts carry no params, giving the usual 0.27M / 0.855M figures.

    (272,474 and 855,770 are the option-B counts: 1x1 projections add 2,752 params.)
    """
    count = param_count(name, CIFAR, 10, 1.0)
    assert count == exact
    assert count == pytest.approx(quoted, rel=0.01)


@pytest.mark.parametrize(
    ("name", "expected", "rel"),
    [
        ("vgg16", 14_730_000, 0.02),
        ("resnet50", 23_500_000, 0.03),
    ],
)
def test_param_count_close_to_reference(name: str, expected: int, rel: float) -> None:
    assert param_count(name, CIFAR, 10, 1.0) == pytest.approx(expected, rel=rel)


def test_digits_cnn_is_small() -> None:
    assert param_count("digits_cnn", DIGITS, 10, 1.0) < 150_000


@pytest.mark.parametrize("name", list(MODELS))
def test_num_classes_sets_final_layer(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, DIGITS, 100, width=0.25)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert last.out_features == 100
    extra = param_count(name, DIGITS, 100, 0.25) - param_count(name, DIGITS, 10, 0.25)
    assert extra == 90 * (last.in_features + 1)


@pytest.mark.parametrize("name", list(MODELS))
def test_half_width_is_smaller(name: str) -> None:
    assert param_count(name, CIFAR, 10, 0.5) < param_count(name, CIFAR, 10, 1.0)


def test_unknown_model_names_it_and_lists_choices() -> None:
    with pytest.raises(UsageError) as info:
        create_model("resnet9000", CIFAR, 10)
    message = str(info.value)
    assert "resnet9000" in message
    assert "\n" not in message
    for name in MODELS:
        assert name in message


@pytest.mark.parametrize("width", [0.0, -1.0, float("nan")])
def test_non_positive_width_rejected(width: float) -> None:
    with pytest.raises(UsageError, match="width"):
        create_model("lenet300", DIGITS, 10, width=width)


def test_usage_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        create_model("lenet300", DIGITS, 10, width=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_same_seed_same_parameters(name: str) -> None:
    models = []
    for _ in range(2):
        torch.manual_seed(123)
        models.append(create_model(name, DIGITS, 10, width=0.25))
    first, second = (dict(m.state_dict()) for m in models)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    torch.manual_seed(124)
    other = create_model(name, DIGITS, 10, width=0.25)
    assert any(not torch.equal(a, b) for a, b in zip(models[0].parameters(), other.parameters()))


def test_modules_registered_in_forward_order() -> None:
    """Pruning code walks modules in registration order; the first conv must see the input."""
    torch.manual_seed(0)
    for name in MODELS:
        model = create_model(name, DIGITS, 10, width=0.25)
        first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        in_size = first.in_channels if isinstance(first, nn.Conv2d) else first.in_features
        assert in_size in (1, 64), name
