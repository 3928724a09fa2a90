"""N2NSkip beyond the contract every method meets (tests/test_pruning.py): the skips it builds, the budget it
splits, the shipped models it works on, and the checkpoint that rebuilds it (docs: shared/docs/method.md)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import optuna
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from sweeps.space.search_space import load_space
from tests.test_pruning import CLASSES, make_batches, make_context, tiny_cnn
from weightmom import TrainConfig, train
from weightmom.checkpoint import apply_masks_with_torch_prune, load_checkpoint
from weightmom.data.datasets import TensorDataset, load_dataset
from weightmom.errors import UsageError
from weightmom.metrics import sparsity_report
from weightmom.models import MODELS, create_model
from weightmom.pruning import N2NSkipPruner, create_pruner, pruner_config
from weightmom.pruning.n2nskip import apportion, split_budget
from weightmom.skips import attach_skips, find_skips, skip_connections

# Skips built with the default hops [2] on 8x8 digits: every pair two layers apart, less those not on one path
# (resnet50: the four projection shortcuts are not fed by the conv before them).
SKIPS_PER_MODEL = {"lenet300": 1, "digits_cnn": 2, "resnet20": 18, "resnet56": 54, "vgg16": 12, "alexnet": 6,
                   "resnet50": 48}


pytestmark = pytest.mark.usefixtures("one_thread")


def mlp() -> nn.Sequential:
    """Four Linear layers: 2048 + 1024 + 1024 + 96 = 4192 weights; hops [2] joins 0->2 (1024) and 1->3 (96)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, CLASSES))


def prepared(model: nn.Module, density: float = 0.2, **options) -> N2NSkipPruner:
    """An n2nskip pruner prepared and attached as the training loop does it."""
    context = make_context(make_batches())
    pruner = create_pruner("n2nskip", pruner_config("n2nskip", density, options))
    pruner.prepare(model, context)
    pruner.attach(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), context)
    return pruner


def alive(pruner: N2NSkipPruner) -> tuple[int, list[int]]:
    """Masked-in weights: the network's own layers together, and each skip."""
    skip_ids = {id(skip.proj.weight) for skip in pruner.skips}
    network = sum(layer.alive for layer in pruner.layers if id(layer.weight) not in skip_ids)
    return network, [int(skip.proj.weight.count_nonzero()) for skip in pruner.skips]


# -- the skips carry signal -------------------------------------------------------------------------


def test_a_skip_adds_its_projection_of_the_source_output() -> None:
    torch.manual_seed(0)
    model = tiny_cnn()
    reference = copy.deepcopy(model)
    pruner = prepared(model)
    (skip,) = pruner.skips   # conv 0 (4x6x6) -> Linear 5 (3): global average pool, then a 4 -> 3 Linear
    assert skip.spec.linear and skip.spec.pool == (1, 1) and skip.proj.weight.shape == (CLASSES, 4)
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if "n2nskip" not in k})
    x = make_batches()[0][0]
    with torch.no_grad():
        through_skip = skip.proj(F.adaptive_avg_pool2d(reference[0](x), 1).flatten(1))
        assert through_skip.abs().max() > 1e-3
        torch.testing.assert_close(model(x), reference(x) + through_skip)
        before = model(x)
        skip.proj.weight.mul_(3.0)   # only its alive weights are non-zero: they alone change the output
        assert not torch.allclose(model(x), before)
        skip.proj.weight.zero_()
        torch.testing.assert_close(model(x), reference(x))


def test_skip_weights_learn_only_where_alive() -> None:
    torch.manual_seed(0)
    model = mlp()
    pruner = prepared(model)
    x, y = make_batches()[0]
    nn.CrossEntropyLoss()(model(x), y).backward()
    pruner.before_step()
    for skip, mask in zip(pruner.skips, list(pruner.masks().values())[-2:]):
        grad = skip.proj.weight.grad
        assert grad[mask].abs().sum() > 0 and not grad[~mask].any()


# -- the budget -------------------------------------------------------------------------------------


def test_apportion_is_exact_and_proportional() -> None:
    assert apportion(419, [1024, 96]) == [383, 36]
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert apportion(0, [5, 7]) == [0, 0] and apportion(12, [5, 7]) == [5, 7] and apportion(3, []) == []
    for total in range(0, 300, 7):
        counts = apportion(total, [100, 37, 150, 13])
        assert sum(counts) == total and all(abs(c - total * s / 300) < 1 for c, s in zip(counts, [100, 37, 150, 13]))


@pytest.mark.parametrize("base", ["snip", "random"])
@pytest.mark.parametrize("skip_fraction", [0.25, 0.5, 0.75])
def test_budget_split_matches_skip_fraction(base: str, skip_fraction: float) -> None:
    torch.manual_seed(0)
    pruner = prepared(mlp(), 0.2, base=base, skip_fraction=skip_fraction)
    budget = round(0.2 * 4192)
    network, skips = alive(pruner)
    assert sum(skips) == round(skip_fraction * budget)
    assert abs(skips[0] / 1024 - skips[1] / 96) <= 1 / 96   # in proportion to their sizes
    if base == "snip":
        assert network + sum(skips) == budget               # one global ranking: exact
    else:
        assert abs(network + sum(skips) - budget) <= 4      # each layer rounds on its own
    assert pruner.budget.skips == skips


def test_skips_are_capped_at_dense_and_the_network_gets_the_rest() -> None:
    torch.manual_seed(0)
    pruner = prepared(mlp(), 0.9, skip_fraction=0.75)   # 0.75 * 3773 = 2830 would exceed the skips' 1120
    network, skips = alive(pruner)
    assert skips == [1024, 96]
    assert network == round(0.9 * 4192) - 1120
    assert split_budget(0.9, 4192, [1024, 96], 0.75).network == network


def test_more_hops_more_skips_same_budget() -> None:
    torch.manual_seed(0)
    two, three = prepared(mlp(), hops=[2]), prepared(mlp(), hops="3,2")
    assert [(s.spec.source, s.spec.target) for s in two.skips] == [("1", "5"), ("3", "7")]
    assert [(s.spec.source, s.spec.target) for s in three.skips] == [("1", "5"), ("3", "7"), ("1", "7")]
    assert three.config.hops == (2, 3)
    assert sum(alive(two)[1]) == sum(alive(three)[1]) == round(0.5 * round(0.2 * 4192))


# -- which pairs are joined -------------------------------------------------------------------------


class Widening(nn.Module):
    """conv a (8x8) -> conv b (4x4) -> upsample -> conv c (8x8) -> conv d (8x8): b -> d grows, so no skip."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.c, self.d = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b(torch.relu(self.a(x)))
        x = self.c(F.interpolate(torch.relu(x), scale_factor=2))
        return self.d(torch.relu(x)).mean((2, 3))


def test_pairs_whose_spatial_size_grows_are_skipped() -> None:
    specs = find_skips(Widening(), torch.randn(1, 1, 8, 8), [2])
    assert [(s.source, s.target, s.pool) for s in specs] == [("a", "c", None)]


def test_a_projection_shortcut_is_not_fed_from_inside_its_own_block() -> None:
    model = create_model("resnet50", (1, 8, 8), 10, width=0.125)
    specs = find_skips(model, torch.randn(1, 1, 8, 8), [2])
    targets = {(s.source, s.target) for s in specs}
    assert ("3.conv2", "3.shortcut.0") not in targets   # two apart in forward order, but on different paths
    assert ("3.shortcut.0", "4.conv2") in targets and ("3.conv3", "4.conv1") in targets
    assert len(specs) == SKIPS_PER_MODEL["resnet50"]


@pytest.fixture(scope="module")
def few_digits() -> TensorDataset:
    """256 training and 64 test digits: two steps and an evaluation, enough to show a model runs."""
    data = load_dataset("digits")
    return dataclasses.replace(data, train_images=data.train_images[:256], train_labels=data.train_labels[:256],
                               test_images=data.test_images[:64], test_labels=data.test_labels[:64])


@pytest.mark.parametrize("name", list(MODELS))
def test_every_shipped_model_trains_with_skips(name: str, few_digits: TensorDataset) -> None:
    config = TrainConfig(model=name, width=0.125, method="n2nskip", density=0.1, epochs=1, batch_size=128,
                         device="cpu")
    result = train(config, data=few_digits, progress=False)
    metrics = result.metrics
    assert metrics["skips"] == SKIPS_PER_MODEL[name] and metrics["params_skip"] > 0
    layers = len(metrics["layer_densities"])
    assert abs(metrics["params_nonzero"] - round(0.1 * metrics["params_prunable"])) <= layers
    model = result.model.eval()
    x = torch.rand(4, *result.input_shape)
    with torch.no_grad():
        before = model(x)
        for skip in skip_connections(model):
            skip.proj.weight.zero_()
        assert not torch.allclose(model(x), before)   # the skips carried signal to the output


# -- counting and checkpoints -----------------------------------------------------------------------


def test_skip_weights_count_as_nonzeros_but_not_in_the_size() -> None:
    torch.manual_seed(0)
    model = mlp()
    dense = sparsity_report(model)
    specs = find_skips(model, torch.randn(1, 1, 8, 8), [2])
    attach_skips(model, specs)
    with_skips = sparsity_report(model)
    assert with_skips["skips"] == 2 and with_skips["params_skip"] == 1120
    assert with_skips["params_prunable"] == dense["params_prunable"] == 4192
    assert with_skips["params_total"] == dense["params_total"]
    assert with_skips["params_nonzero"] == 4192 + 1120
    assert with_skips["density"] == (4192 + 1120) / 4192
    assert dense["skips"] == 0 and dense["params_skip"] == 0


def test_checkpoint_rebuilds_the_skips_and_torch_prune_reapplies_their_masks(tmp_path: Path) -> None:
    result = train(TrainConfig(method="n2nskip", density=0.05, epochs=2), progress=False)
    path = tmp_path / "n2nskip.pt"
    result.save(str(path))
    checkpoint = load_checkpoint(path)
    model = checkpoint.build_model().eval()
    assert [s.spec for s in skip_connections(model)] == [s.spec for s in skip_connections(result.model)]
    x = torch.rand(16, *result.input_shape)
    with torch.no_grad():
        assert torch.equal(model(x), result.model.eval()(x))
        assert torch.equal(copy.deepcopy(model)(x), model(x))   # the hooks follow a copy
    assert "5.n2nskip.0.proj.weight" in checkpoint.masks
    with torch.no_grad():
        for skip in skip_connections(model):
            skip.proj.weight.normal_()
    apply_masks_with_torch_prune(model, checkpoint.masks)
    skip = skip_connections(model)[0].proj
    assert torch.equal(skip.weight_mask.bool(), checkpoint.masks["5.n2nskip.0.proj.weight"])
    assert not skip.weight[~checkpoint.masks["5.n2nskip.0.proj.weight"]].any()


# -- knobs ------------------------------------------------------------------------------------------


def test_hops_take_a_list_one_integer_or_a_comma_string() -> None:
    assert pruner_config("n2nskip", 0.1, {"hops": [3, 2, 2]}).hops == (2, 3)
    assert pruner_config("n2nskip", 0.1, {"hops": 3}).hops == (3,)
    assert pruner_config("n2nskip", 0.1, {"hops": "2, 4"}).hops == (2, 4)
    config = pruner_config("n2nskip", 0.1)
    assert (config.base, config.hops, config.skip_fraction) == ("snip", (2,), 0.5)


SPACE = {
    "trials": 4,
    "fixed": {"dataset": "digits", "model": "lenet300", "epochs": 10},
    "params": {
        "method": {"type": "categorical", "choices": ["snip", "n2nskip"]},
        "density": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
        "pruner.skip_fraction": {"type": "float", "low": 0.1, "high": 0.9, "when": {"method": "n2nskip"}},
        "pruner.hops": {"type": "categorical", "choices": ["2", "2,3", 3], "when": {"method": "n2nskip"}},
        "pruner.base": {"type": "categorical", "choices": ["snip", "random"], "when": {"method": "n2nskip"}},
    },
}


def test_n2nskip_knobs_are_searchable(tmp_path: Path) -> None:
    path = tmp_path / "n2nskip.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    space = load_space(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    methods = set()
    for _ in range(12):
        trial = study.ask()
        constants = space.define_by_run(trial)
        config = space.train_config({**constants, **trial.params})
        methods.add(config.method)
        study.tell(trial, [0.5, 0.5])
    assert methods == {"snip", "n2nskip"}

    bad = copy.deepcopy(SPACE)
    bad["params"]["pruner.skip_fraction"]["high"] = 1.5
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(UsageError, match="params.pruner.skip_fraction.high"):
        load_space(path)
