"""Tests for weightmom.pruning (docs: shared/docs/method.md).

One contract class runs every method in METHODS through a mini training run
(prepare before the optimizer is built, then weightmom.train_step.Trainer's step,
the one weightmom.training uses: backward -> before_step -> optimizer.step ->
after_step, then on_epoch_end with 1-based epochs) on a tiny CNN,
with SGD (Nesterov momentum) and with Adam. The pieces that decide *when*
(CubicSchedule), *where* (allocation) and *which* (select_survivors) are then
tested on their own, followed by what is specific to each method and the
errors a user gets for bad settings.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from weightmom.errors import UsageError
from weightmom.pruning import (
    METHODS,
    CubicSchedule,
    Pruner,
    TrainingContext,
    WeightMomConfig,
    create_pruner,
    prunable_layers,
    pruner_config,
    select_survivors,
)
from weightmom.pruning.allocation import allocate, erk_scores, global_keep_counts, importance_scores, water_fill
from weightmom.skips import skip_connections
from weightmom.train_step import Trainer

SEED = 0
EPOCHS = 4
STEPS = 4
BATCH = 8
CLASSES = 3
INF = float("inf")

Batch = tuple[torch.Tensor, torch.Tensor]


# -- a tiny model, random data and a mini training run ----------------------------------------------


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cnn(batchnorm: bool = False) -> nn.Sequential:
    """Three prunable layers on 1x8x8 inputs: 36 + 2304 + 48 = 2388 weights."""
    norm = [nn.BatchNorm2d(4)] if batchnorm else []
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), *norm, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, CLASSES)
    )


def make_batches(seed: int = SEED, steps: int = STEPS) -> list[Batch]:
    generator = torch.Generator().manual_seed(seed + 1)
    return [
        (torch.randn(BATCH, 1, 8, 8, generator=generator), torch.randint(0, CLASSES, (BATCH,), generator=generator))
        for _ in range(steps)
    ]


def make_context(batches: list[Batch], epochs: int = EPOCHS, seed: int = SEED) -> TrainingContext:
    return TrainingContext(
        epochs=epochs,
        steps_per_epoch=len(batches),
        sample_input=batches[0][0],
        loss_fn=nn.CrossEntropyLoss(),
        batches=lambda: iter(list(batches)),
        seed=seed,
    )


def make_optimizer(model: nn.Module, name: str, overrides: dict) -> torch.optim.Optimizer:
    """Like weightmom.training.make_optimizer: the method's overrides win (GSM brings momentum SGD)."""
    name = overrides.get("optimizer", name)
    lr = overrides.get("lr", 0.05 if name == "sgd" else 0.01)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
    momentum = overrides.get("momentum", 0.9)
    nesterov = overrides.get("nesterov", momentum > 0)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=5e-4)


def make_trainer(model: nn.Module, optimizer: torch.optim.Optimizer, pruner: Pruner) -> Trainer:
    """weightmom.training's step on the CPU, at a constant learning rate."""
    return Trainer(model, optimizer, None, pruner, nn.CrossEntropyLoss(), torch.device("cpu"))


def state_keys(optimizer: torch.optim.Optimizer) -> tuple[str, ...]:
    return ("exp_avg", "exp_avg_sq") if isinstance(optimizer, torch.optim.Adam) else ("momentum_buffer",)


def leaks(model: nn.Module, pruner: Pruner, optimizer: torch.optim.Optimizer) -> list[str]:
    """What is not exactly zero at a masked position: weights, and the optimizer state of masked weights."""
    params = dict(model.named_parameters())
    found = []
    for name, mask in pruner.masks().items():
        dead = ~mask
        if not dead.any():
            continue
        weight = params[name]
        if weight[dead].count_nonzero():
            found.append(f"{name}: weight")
        state = optimizer.state.get(weight, {})
        for key in state_keys(optimizer) if state else ():
            if state[key][dead].count_nonzero():
                found.append(f"{name}: {key}")
    return found


def has_dead_weights(pruner: Pruner) -> bool:
    return any((~m).any() for m in pruner.masks().values())


@dataclass
class Run:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    pruner: Pruner
    param_ids_before: list[int]
    checked_steps: int      # optimizer steps taken while some weight was masked
    leaks: list[str]        # anything that regrew, "epoch/step: layer: what"


def train(method: str, density: float, optimizer: str = "sgd", options: dict | None = None, epochs: int = EPOCHS,
          seed: int = SEED, batchnorm: bool = False, finetune_steps: int = 2) -> Run:
    """Train the tiny CNN with `method`, checking after every step that masked weights stay dead.

    After on_train_end a few more steps run through the same hooks (fine-tuning the
    pruned network): methods that mask only at the very end (GSM) are checked there.
    """
    torch.manual_seed(seed)
    model = tiny_cnn(batchnorm)
    batches = make_batches(seed)
    pruner = create_pruner(method, pruner_config(method, density, options))
    context = make_context(batches, epochs, seed)
    pruner.prepare(model, context)
    opt = make_optimizer(model, optimizer, pruner.optimizer_overrides())
    param_ids = [id(p) for p in model.parameters()]
    pruner.attach(model, opt, context)
    trainer = make_trainer(model, opt, pruner)
    found: list[str] = []
    checked = 0

    def step(x: torch.Tensor, y: torch.Tensor, where: str) -> None:
        nonlocal checked
        masked = has_dead_weights(pruner)
        trainer.step(x, y)
        if masked:  # a mask was set before this step: nothing may have regrown through it
            checked += 1
            found.extend(f"{where}: {leak}" for leak in leaks(model, pruner, opt))

    for epoch in range(1, epochs + 1):
        for i, (x, y) in enumerate(batches):
            step(x, y, f"epoch {epoch} step {i}")
        pruner.on_epoch_end(epoch)
        found.extend(f"epoch {epoch} end: {leak}" for leak in leaks(model, pruner, opt))
    pruner.on_train_end()
    for i, (x, y) in enumerate(batches[:finetune_steps]):
        step(x, y, f"fine-tune step {i}")
    return Run(model, opt, pruner, param_ids, checked, found)


@functools.cache
def contract_run(method: str, optimizer: str, density: float) -> Run:
    return train(method, density, optimizer)


def skip_weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights of skip connections a method added (N2NSkip): non-zeros that count, but not in the size."""
    return [m.weight for skip in skip_connections(model) for m in skip.modules() if hasattr(m, "weight")]


def prunable_weights(model: nn.Module) -> list[torch.Tensor]:
    """The network's own Conv2d/Linear weights."""
    added = {id(w) for w in skip_weights(model)}
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m.weight) not in added]


def nonzero_and_total(model: nn.Module) -> tuple[int, int]:
    """Non-zeros of all layers, skips included, and the size of the network's own layers."""
    weights, added = prunable_weights(model), skip_weights(model)
    return sum(int(w.count_nonzero()) for w in weights + added), sum(w.numel() for w in weights)


def assert_density(model: nn.Module, density: float) -> None:
    """Density over prunable weights is `density` to within one weight per layer."""
    nonzero, total = nonzero_and_total(model)
    layers = len(prunable_weights(model)) + len(skip_weights(model))
    assert abs(nonzero - round(density * total)) <= layers, (nonzero, round(density * total))


def mask_list(pruner: Pruner) -> list[torch.Tensor]:
    return [m.clone() for m in pruner.masks().values()]


# -- the contract every method meets -------------------------------------------------------------


@pytest.fixture(params=list(METHODS))
def method(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=["sgd", "adam"])
def optimizer_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=[0.2, 0.05], ids=["D0.2", "D0.05"])
def density(request: pytest.FixtureRequest, method: str) -> float:
    return 1.0 if method == "dense" else request.param


class TestPrunerContract:
    """What the training loop and the checkpoint rely on, for every method in METHODS."""

    def test_final_density_is_the_target(self, method: str, optimizer_name: str, density: float) -> None:
        run = contract_run(method, optimizer_name, density)
        nonzero, total = nonzero_and_total(run.model)
        if method == "dense":
            assert nonzero == total
        else:
            assert_density(run.model, density)
            assert nonzero < total
        # the masks say the same as the weights
        assert sum(int(m.sum()) for m in run.pruner.masks().values()) == nonzero
        densities = run.pruner.layer_densities()
        sizes = {name: m.numel() for name, m in run.pruner.masks().items()}
        assert sum(densities[n] * sizes[n] for n in sizes) == pytest.approx(nonzero)

    def test_masked_weights_and_optimizer_state_stay_zero(self, method: str, optimizer_name: str,
                                                          density: float) -> None:
        run = contract_run(method, optimizer_name, density)
        assert run.leaks == []
        if method != "dense":
            assert run.checked_steps >= 2  # the check ran on steps taken under a mask
            state = run.optimizer.state[prunable_weights(run.model)[1]]
            assert set(state_keys(run.optimizer)) <= set(state)

    def test_parameters_are_the_same_objects(self, method: str, optimizer_name: str, density: float) -> None:
        run = contract_run(method, optimizer_name, density)
        assert [id(p) for p in run.model.parameters()] == run.param_ids_before
        held = [id(p) for group in run.optimizer.param_groups for p in group["params"]]
        assert held == run.param_ids_before
        model_params = {id(p) for p in run.model.parameters()}
        assert all(id(layer.weight) in model_params for layer in run.pruner.layers)

    def test_same_seed_same_masks(self, method: str, optimizer_name: str, density: float) -> None:
        first = contract_run(method, optimizer_name, density)
        second = train(method, density, optimizer_name)
        a, b = first.pruner.masks(), second.pruner.masks()
        assert list(a) == list(b)
        assert all(torch.equal(a[name], b[name]) for name in a)
        for w1, w2 in zip(first.model.parameters(), second.model.parameters()):
            assert torch.equal(w1, w2)

    def test_masks_are_bool_and_named_like_parameters(self, method: str, optimizer_name: str,
                                                      density: float) -> None:
        run = contract_run(method, optimizer_name, density)
        masks = run.pruner.masks()
        params = dict(run.model.named_parameters())
        skips = ["5.n2nskip.0.proj.weight"] if method == "n2nskip" else []   # conv 0 -> Linear 5, two layers on
        assert list(masks) == ["0.weight", "3.weight", "5.weight", *skips]
        for name, mask in masks.items():
            assert mask.dtype == torch.bool
            assert mask.shape == params[name].shape
            assert torch.equal(params[name] != 0, mask) or method == "dense"


def test_random_masks_depend_only_on_the_run_seed() -> None:
    def random_masks(context_seed: int, global_seed: int) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = tiny_cnn()
        torch.manual_seed(global_seed)
        pruner = create_pruner("random", pruner_config("random", 0.2))
        pruner.attach(model, make_optimizer(model, "sgd", {}), make_context(make_batches(), seed=context_seed))
        return mask_list(pruner)

    same = random_masks(5, global_seed=1)
    assert all(torch.equal(a, b) for a, b in zip(same, random_masks(5, global_seed=2)))
    assert any(not torch.equal(a, b) for a, b in zip(same, random_masks(6, global_seed=1)))


def test_prunable_layers_are_in_forward_order() -> None:
    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(4, 2)   # registered first, runs last
            self.body = nn.Linear(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.body(x)))

    model = Backwards()
    layers = prunable_layers(model, torch.randn(2, 3))
    assert [layer.name for layer in layers] == ["body.weight", "head.weight"]
    assert layers[0].weight is model.body.weight
    assert all(torch.equal(layer.mask, torch.ones_like(layer.weight)) for layer in layers)


# -- GMP is WeightMom with window 1 and threshold inf ----------------------------------------------


@pytest.mark.parametrize("allocation", ["importance", "uniform", "global", "erk"])
@pytest.mark.parametrize("unit", ["epoch", "step"])
def test_gmp_is_weightmom_with_window_1_and_threshold_inf(allocation: str, unit: str) -> None:
    options = {"allocation": allocation, "unit": unit}
    gmp = train("gmp", 0.1, options=options, finetune_steps=0)
    plain = train("weightmom", 0.1, options={**options, "window": 1, "threshold": INF}, finetune_steps=0)
    assert gmp.pruner.config.beta == 0.0 and gmp.pruner.config.threshold == INF
    assert all(torch.equal(a, b) for a, b in zip(mask_list(gmp.pruner), mask_list(plain.pruner)))
    assert all(torch.equal(a, b) for a, b in zip(gmp.model.parameters(), plain.model.parameters()))


def test_weightmom_defaults_can_prune_differently_from_gmp() -> None:
    """The equivalence above is not vacuous: momentum and threshold change which weights go."""
    options = {"allocation": "uniform", "unit": "step", "prune_every": 2, "observe_every": 1}
    gmp = train("gmp", 0.1, options=options, epochs=8, finetune_steps=0)
    mom = train("weightmom", 0.1, options={**options, "window": 5, "threshold": 1.0}, epochs=8, finetune_steps=0)
    assert_density(gmp.model, 0.1)
    assert_density(mom.model, 0.1)
    assert any(not torch.equal(a, b) for a, b in zip(mask_list(gmp.pruner), mask_list(mom.pruner)))


# -- allocation: how the global density is shared among layers -------------------------------------

SIZES = [36, 2304, 48]   # the tiny CNN's prunable layers


def weighted_density(sizes: list[int], densities: list[float]) -> float:
    return sum(s * d for s, d in zip(sizes, densities)) / sum(sizes)


@pytest.mark.parametrize("density", [0.5, 0.2, 0.05, 0.01])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0, -1.0])
def test_water_fill_hits_the_target_exactly(density: float, alpha: float) -> None:
    densities = water_fill(SIZES, importance_scores(SIZES, alpha), density, [False] * 3)
    assert all(0 < d <= 1 for d in densities)
    assert weighted_density(SIZES, densities) == pytest.approx(density, rel=1e-9)


def test_water_fill_caps_small_layers_and_hands_their_share_on() -> None:
    # importance scaling 1 gives the tiny last layer (and here the first) more than density 1
    raw = importance_scores(SIZES, 1.0)
    densities = water_fill(SIZES, raw, 0.05, [False] * 3)
    assert densities[2] == 1.0
    assert densities[1] < 0.05 < densities[0] < 1.0
    assert weighted_density(SIZES, densities) == pytest.approx(0.05, rel=1e-9)
    # the uncapped layers keep the ratio of their scores
    assert densities[0] / densities[1] == pytest.approx(raw[0] / raw[1], rel=1e-9)

    sizes = [10, 1000, 1000, 5]
    densities = water_fill(sizes, importance_scores(sizes, 1.0), 0.3, [False] * 4)
    assert densities[0] == 1.0 and densities[3] == 1.0
    assert all(0 < d < 1 for d in densities[1:3])
    assert weighted_density(sizes, densities) == pytest.approx(0.3, rel=1e-9)


def test_water_fill_keeps_fixed_layers_dense() -> None:
    sizes = [100, 1000, 2000, 50]
    fixed = [True, False, False, True]
    for scores in ([1.0] * 4, importance_scores(sizes, 1.0)):
        densities = water_fill(sizes, scores, 0.2, fixed)
        assert densities[0] == 1.0 and densities[3] == 1.0
        assert all(0 < d < 0.2 for d in densities[1:3])
        assert weighted_density(sizes, densities) == pytest.approx(0.2, rel=1e-9)


def test_water_fill_at_density_one_keeps_everything() -> None:
    for fixed in ([False] * 3, [True, False, True]):
        assert water_fill(SIZES, importance_scores(SIZES, 1.0), 1.0, fixed) == [1.0, 1.0, 1.0]


def test_importance_scaling_zero_is_uniform() -> None:
    shapes = [torch.Size([4, 1, 3, 3]), torch.Size([16, 144]), torch.Size([3, 16])]
    assert importance_scores(SIZES, 0.0) == [1.0, 1.0, 1.0]
    densities = water_fill(SIZES, importance_scores(SIZES, 0.0), 0.2, [False] * 3)
    assert densities == pytest.approx([0.2] * 3, rel=1e-12)
    for fixed in ([False] * 3, [True, False, False]):
        assert (allocate("importance", 0.2, shapes, fixed, importance_scaling=0.0)
                == allocate("uniform", 0.2, shapes, fixed))


def test_importance_follows_the_paper_eq1() -> None:
    sizes = [100, 400, 100]   # W_avg = 200, I = W_l / (l * W_avg) = 0.5, 1.0, 1/6
    assert importance_scores(sizes, 1.0) == pytest.approx([2.0, 1.0, 6.0])
    assert importance_scores(sizes, 2.0) == pytest.approx([4.0, 1.0, 36.0])


def test_erk_gives_smaller_layers_higher_density() -> None:
    shapes = [torch.Size([300, 784]), torch.Size([100, 300]), torch.Size([10, 100])]
    sizes = [s.numel() for s in shapes]
    densities = water_fill(sizes, erk_scores(shapes), 0.05, [False] * 3)
    assert densities[0] < densities[1] < densities[2]
    assert weighted_density(sizes, densities) == pytest.approx(0.05, rel=1e-9)
    keep = allocate("erk", 0.05, shapes, [False] * 3)
    assert keep[0] / sizes[0] < keep[1] / sizes[1] < keep[2] / sizes[2]


@pytest.mark.parametrize("allocation", ["importance", "uniform", "erk"])
@pytest.mark.parametrize("fixed", [[False, False, False], [True, False, True]])
def test_allocate_keep_counts_within_one_weight_per_layer(allocation: str, fixed: list[bool]) -> None:
    shapes = [torch.Size([4, 1, 3, 3]), torch.Size([16, 144]), torch.Size([3, 16])]
    keep = allocate(allocation, 0.1, shapes, fixed)
    assert abs(sum(keep) - round(0.1 * sum(SIZES))) <= len(SIZES)
    assert all(1 <= k <= n for k, n in zip(keep, SIZES))
    assert all(k == n for k, n, f in zip(keep, SIZES, fixed) if f)


@pytest.mark.parametrize("fixed", [[False, False, False], [True, False, False], [True, False, True]])
@pytest.mark.parametrize("density", [0.3, 0.2, 0.1])
def test_global_keep_counts_sum_to_the_target(fixed: list[bool], density: float) -> None:
    torch.manual_seed(0)
    shapes = [torch.Size([4, 1, 3, 3]), torch.Size([16, 144]), torch.Size([3, 16])]
    scores = [torch.rand(s) + 0.5 for s in shapes]   # no layer so weak that the ranking empties it
    alive = [torch.ones(s, dtype=torch.bool) for s in shapes]
    keep = allocate("global", density, shapes, fixed, scores=scores, alive=alive)
    assert min(keep) > 1
    assert sum(keep) == round(density * sum(SIZES))
    assert all(k == n for k, n, f in zip(keep, SIZES, fixed) if f)


def test_global_keep_counts_leave_every_layer_one_weight() -> None:
    # after RMS normalisation layer 0 scores 1.0 everywhere and layer 1's top half 1.41: the ranking
    # gives all 20 to layer 1; layer 0 keeps one weight anyway, so the total is one over (one per layer)
    scores = [torch.ones(50), torch.cat([torch.full((75,), 1e-4), torch.ones(75)])]
    alive = [torch.ones(50, dtype=torch.bool), torch.ones(150, dtype=torch.bool)]
    assert global_keep_counts(scores, alive, 0.1, [False, False]) == [1, 20]


def test_global_ranking_normalises_layers_and_skips_dead_weights() -> None:
    # layer 1's scores are 1000x larger; after RMS normalisation both rank alike
    base = torch.linspace(0.1, 1.0, 100)
    scores = [base.clone(), base * 1000]
    alive = [torch.ones(100, dtype=torch.bool), torch.ones(100, dtype=torch.bool)]
    keep = global_keep_counts(scores, alive, 0.3, [False, False])
    assert sum(keep) == 60 and abs(keep[0] - keep[1]) <= 1
    # dead weights are never chosen, however high their score
    alive[0][50:] = False
    keep = global_keep_counts(scores, alive, 0.2, [False, False])
    assert sum(keep) == 40 and keep[0] <= 50


def test_impossible_targets_raise() -> None:
    shapes = [torch.Size([100]), torch.Size([10])]
    with pytest.raises(ValueError, match="cannot reach density"):
        water_fill([100, 10], [1.0, 1.0], 0.5, [True, False])
    with pytest.raises(ValueError, match="cannot reach density"):
        allocate("uniform", 0.5, shapes, [True, False])
    with pytest.raises(ValueError, match="cannot reach density"):
        allocate("global", 0.5, shapes, [True, False], scores=[torch.rand(100), torch.rand(10)],
                 alive=[torch.ones(100, dtype=torch.bool), torch.ones(10, dtype=torch.bool)])
    with pytest.raises(ValueError, match="unknown allocation"):
        allocate("magic", 0.5, shapes, [False, False])


# -- the cubic schedule -----------------------------------------------------------------------------


@pytest.mark.parametrize("final", [0.1, 0.05, 0.02, 1 / 3])
def test_cubic_schedule_runs_from_one_to_exactly_d(final: float) -> None:
    schedule = CubicSchedule(final, start=2, end=10, every=2)
    assert schedule.density_at(0) == 1.0
    assert schedule.density_at(2) == 1.0
    assert schedule.density_at(10) == final
    assert schedule.density_at(25) == final
    assert schedule.density_at(6) == pytest.approx(final + (1 - final) * 0.5 ** 3)
    values = [schedule.density_at(2 + 8 * i / 100) for i in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert all(final <= v <= 1.0 for v in values)


def test_cubic_schedule_updates() -> None:
    schedule = CubicSchedule(0.1, start=2, end=10, every=2)
    assert [t for t in range(15) if schedule.is_update(t)] == [4, 6, 8, 10]
    schedule = CubicSchedule(0.1, start=1, end=10, every=3)
    assert [t for t in range(15) if schedule.is_update(t)] == [4, 7, 10]
    schedule = CubicSchedule(0.1, start=0, end=30, every=1)
    assert [t for t in range(40) if schedule.is_update(t)] == list(range(1, 31))


# -- select_survivors: which weights go --------------------------------------------------------------


def test_select_survivors_removes_the_lowest_scores() -> None:
    scores = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 6.0])
    mask = torch.ones(6)
    result = select_survivors(scores, mask, keep=4)
    assert torch.equal(result, torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0]))
    assert result.dtype == mask.dtype
    assert torch.equal(mask, torch.ones(6))   # the input mask is not modified


def test_select_survivors_respects_threshold_eligibility() -> None:
    scores = torch.tensor([1.0, 2.0, 3.0, 10.0, 11.0, 12.0])   # mean 6.5: only 1, 2, 3 are below it
    mask = torch.ones(6)
    lagging = select_survivors(scores, mask, keep=2, threshold=1.0)
    assert torch.equal(lagging, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))   # 3 alive, not 2: it lags
    exact = select_survivors(scores, mask, keep=2, threshold=INF)
    assert torch.equal(exact, torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0]))
    # a low threshold makes nothing eligible: nothing is removed
    assert torch.equal(select_survivors(scores, mask, keep=2, threshold=0.1), mask)
    # the mean is over alive weights only: 4 here, not 20 (which would make 4 and 10 eligible too)
    partly = torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    result = select_survivors(torch.tensor([100.0, 1.0, 2.0, 3.0, 4.0, 10.0]), partly, keep=1, threshold=1.0)
    assert torch.equal(result, torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0]))
    # eligible means strictly below threshold * mean
    result = select_survivors(torch.tensor([1.0, 2.0, 3.0]), torch.ones(3), keep=1, threshold=1.0)
    assert torch.equal(result, torch.tensor([0.0, 1.0, 1.0]))


def test_select_survivors_never_revives() -> None:
    scores = torch.tensor([9.0, 8.0, 1.0, 2.0, 3.0])
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0])
    assert torch.equal(select_survivors(scores, mask, keep=4), mask)   # asks for more than are alive
    assert torch.equal(select_survivors(scores, mask, keep=2), torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]))
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        scores = torch.rand(7, 5, generator=generator)
        mask = (torch.rand(7, 5, generator=generator) > 0.3).float()
        keep = int(torch.randint(1, 35, (), generator=generator))
        result = select_survivors(scores, mask, keep)
        assert result.shape == mask.shape
        assert bool((result <= mask).all())
        assert int(result.sum()) == min(keep, int(mask.sum()))
        removed = (mask - result).bool()
        if removed.any() and result.bool().any():   # every removed weight scored below every survivor
            assert scores[removed].max() <= scores[result.bool()].min()


# -- WeightMom ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, beta", [({"window": 3}, 0.5), ({"window": 1}, 0.0),
                                           ({"window": 3, "beta": 0.9}, 0.9)])
def test_weightmom_momentum_is_an_ema_of_magnitudes(options: dict, beta: float) -> None:
    torch.manual_seed(0)
    model = tiny_cnn()
    batches = make_batches()
    config = pruner_config("weightmom", 0.2, {**options, "observe_every": 1, "prune_start": 3})
    pruner = create_pruner("weightmom", config)
    optimizer = make_optimizer(model, "sgd", {})
    pruner.attach(model, optimizer, make_context(batches))
    assert pruner.config.beta == pytest.approx(beta)
    pointers = [m.data_ptr() for m in pruner.momentum]
    expected = None
    trainer = make_trainer(model, optimizer, pruner)
    for x, y in batches * 2:   # 8 steps, one observation each, no epoch end: nothing is pruned
        trainer.step(x, y)
        magnitudes = [w.detach().abs().double() for w in prunable_weights(model)]
        expected = magnitudes if expected is None else [beta * e + (1 - beta) * m
                                                        for e, m in zip(expected, magnitudes)]
        for momentum, e in zip(pruner.momentum, expected):
            torch.testing.assert_close(momentum.double(), e, rtol=1e-6, atol=1e-7)
    assert [m.data_ptr() for m in pruner.momentum] == pointers   # updated in place
    assert all(m.dtype == torch.float32 for m in pruner.momentum)


def test_weightmom_observe_updates_in_place() -> None:
    torch.manual_seed(0)
    model = tiny_cnn()
    pruner = create_pruner("weightmom", pruner_config("weightmom", 0.2, {"window": 5}))
    pruner.attach(model, make_optimizer(model, "sgd", {}), make_context(make_batches()))
    pointers = [m.data_ptr() for m in pruner.momentum]
    before = [m.clone() for m in pruner.momentum]
    pruner.observe()
    with torch.no_grad():
        for w in prunable_weights(model):
            w.mul_(2.0)
    pruner.observe()
    assert [m.data_ptr() for m in pruner.momentum] == pointers
    beta = 1 - 2 / 6
    for m, b, w in zip(pruner.momentum, before, prunable_weights(model)):
        assert not torch.equal(m, b)
        torch.testing.assert_close(m, beta * w.abs() / 2 + (1 - beta) * w.abs())


def test_weightmom_threshold_can_make_a_layer_lag_until_prune_end() -> None:
    # threshold 0.5: only weights below half the mean momentum are eligible before prune_end
    options = {"allocation": "uniform", "threshold": 0.5, "prune_end": 4}
    torch.manual_seed(0)
    model = tiny_cnn()
    batches = make_batches()
    pruner = create_pruner("weightmom", pruner_config("weightmom", 0.02, options))
    optimizer = make_optimizer(model, "sgd", {})
    pruner.attach(model, optimizer, make_context(batches))
    trainer = make_trainer(model, optimizer, pruner)
    lagged = False
    for epoch in range(1, EPOCHS + 1):
        trainer.train_epoch(batches, epoch)
        target = pruner.schedule.density_at(epoch)
        nonzero, total = nonzero_and_total(model)
        lagged = lagged or nonzero > round(target * total) + 3
    assert lagged
    assert_density(model, 0.02)   # at prune_end the threshold is ignored


def test_weightmom_at_density_one_keeps_every_weight() -> None:
    for allocation in ("importance", "uniform", "global", "erk"):
        run = train("weightmom", 1.0, options={"allocation": allocation})
        nonzero, total = nonzero_and_total(run.model)
        assert nonzero == total


@pytest.mark.parametrize("options", [{"prune_end": 2.5}, {"prune_start": 0, "prune_end": 0},
                                     {"prune_start": 0.5, "prune_end": 3.5, "prune_every": 2},
                                     {"unit": "step", "prune_end": 10.5}])
def test_weightmom_reaches_the_target_when_prune_end_falls_between_updates(options: dict) -> None:
    run = train("weightmom", 0.1, options=options)
    assert_density(run.model, 0.1)
    assert run.leaks == []


@pytest.mark.parametrize("method", ["weightmom", "gmp"])
@pytest.mark.parametrize("allocation", ["importance", "uniform", "global", "erk"])
@pytest.mark.parametrize("density", [0.2, 0.05])
def test_prune_first_and_last_false_keep_them_dense(method: str, allocation: str, density: float) -> None:
    options = {"allocation": allocation, "prune_first": False, "prune_last": False}
    run = train(method, density, options=options)
    densities = list(run.pruner.layer_densities().values())
    assert densities[0] == 1.0 and densities[-1] == 1.0
    assert densities[1] < density
    assert_density(run.model, density)
    weights = prunable_weights(run.model)
    assert int(weights[0].count_nonzero()) == weights[0].numel()
    assert int(weights[-1].count_nonzero()) == weights[-1].numel()


def test_prune_first_alone() -> None:
    run = train("weightmom", 0.2, options={"prune_first": False, "allocation": "uniform"})
    densities = list(run.pruner.layer_densities().values())
    assert densities[0] == 1.0 and densities[-1] < 1.0
    assert_density(run.model, 0.2)


# -- SNIP ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("density", [0.2, 0.05])
def test_snip_masks_the_global_top_saliency_at_attach(density: float) -> None:
    torch.manual_seed(0)
    model = tiny_cnn(batchnorm=True)
    reference = copy.deepcopy(model)
    batches = make_batches()
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    pruner = create_pruner("snip", pruner_config("snip", density))
    optimizer = make_optimizer(model, "sgd", {})
    pruner.attach(model, optimizer, make_context(batches))

    # the saliency |g * w| of the first batch, computed by hand on an untouched copy
    x, y = batches[0]
    nn.CrossEntropyLoss()(reference(x), y).backward()
    saliency = torch.cat([(w.grad * w).abs().flatten() for w in prunable_weights(reference)])
    keep = round(density * saliency.numel())
    expected = torch.zeros_like(saliency, dtype=torch.bool)
    expected[saliency.topk(keep).indices] = True
    assert saliency.topk(keep + 1).values[-1] < saliency.topk(keep).values[-1]   # no tie at the cut

    masks = pruner.masks()
    assert torch.equal(torch.cat([m.flatten() for m in masks.values()]), expected)
    # before any optimizer step: the weights outside the mask are already zero, the rest untouched
    for w, ref, mask in zip(prunable_weights(model), prunable_weights(reference), masks.values()):
        assert torch.equal(w, ref * mask)
    assert not optimizer.state
    assert all(p.grad is None for p in model.parameters())
    # BatchNorm statistics are as they were: the saliency pass did not train them
    reference_stats = dict(reference.named_buffers())
    assert not torch.equal(reference_stats["1.running_mean"], buffers["1.running_mean"])
    for name, b in model.named_buffers():
        assert torch.equal(b, buffers[name]), name


def test_snip_sums_saliency_over_batches() -> None:
    one = train("snip", 0.1, options={"batches": 1}, finetune_steps=0)
    three = train("snip", 0.1, options={"batches": 3}, finetune_steps=0)
    assert_density(three.model, 0.1)
    assert any(not torch.equal(a, b) for a, b in zip(mask_list(one.pruner), mask_list(three.pruner)))


# -- GSM -------------------------------------------------------------------------------------------


def test_gsm_optimizer_overrides() -> None:
    pruner = create_pruner("gsm", pruner_config("gsm", 0.1))
    overrides = pruner.optimizer_overrides()
    assert overrides["optimizer"] == "sgd" and overrides["momentum"] == 0.98
    assert "lr" not in overrides
    pruner = create_pruner("gsm", pruner_config("gsm", 0.1, {"momentum": 0.99, "lr": 0.2}))
    assert pruner.optimizer_overrides()["momentum"] == 0.99 and pruner.optimizer_overrides()["lr"] == 0.2
    optimizer = make_optimizer(tiny_cnn(), "adam", pruner.optimizer_overrides())
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["momentum"] == 0.99


@pytest.mark.parametrize("density", [0.2, 0.05])
def test_gsm_updates_only_the_top_q_and_prunes_at_the_end(density: float) -> None:
    torch.manual_seed(0)
    model = tiny_cnn()
    batches = make_batches()
    pruner = create_pruner("gsm", pruner_config("gsm", density))
    optimizer = make_optimizer(model, "sgd", pruner.optimizer_overrides())
    pruner.attach(model, optimizer, make_context(batches))
    weights = prunable_weights(model)
    q = round(density * sum(w.numel() for w in weights))
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, EPOCHS + 1):
        for x, y in batches:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            saliency = torch.cat([(w.grad * w).abs().flatten() for w in weights])
            before = torch.cat([w.grad.flatten() for w in weights])
            pruner.before_step()
            after = torch.cat([w.grad.flatten() for w in weights])
            kth = saliency.topk(q).values[-1]
            ties = int((saliency == kth).sum()) - 1
            gets_gradient = after != 0
            assert 0 < int(gets_gradient.sum()) <= q + ties
            assert bool((saliency[gets_gradient] >= kth).all())
            top = saliency > kth
            assert torch.equal(after[top], before[top])   # the top-Q keep their gradient unchanged
            optimizer.step()
            pruner.after_step()
            # training, not pruning: no weight is masked before the end
            assert all(bool(m.all()) for m in pruner.masks().values())
        nonzero, total = nonzero_and_total(model)
        assert nonzero == total
        pruner.on_epoch_end(epoch)
    nonzero, _ = nonzero_and_total(model)
    assert nonzero == q
    assert sum(int(m.sum()) for m in pruner.masks().values()) == q


# -- bad settings ----------------------------------------------------------------------------------

BAD_SETTINGS = [
    ("weightmom", 0.2, {"window": 0.5}, "pruner.window"),
    ("weightmom", 0.2, {"window": 0}, "pruner.window"),
    ("weightmom", 0.2, {"threshold": 0}, "pruner.threshold"),
    ("weightmom", 0.2, {"threshold": -1.0}, "pruner.threshold"),
    ("weightmom", 0.2, {"beta": 1.0}, "pruner.beta"),
    ("weightmom", 0.2, {"prune_start": 3, "prune_end": 2}, "pruner.prune_end"),
    ("weightmom", 0.2, {"allocation": "magic"}, "pruner.allocation"),
    ("weightmom", 0.2, {"unit": "batch"}, "pruner.unit"),
    ("weightmom", 0.2, {"windw": 5}, "pruner.windw"),
    ("weightmom", 0.2, {"window": "wide"}, "pruner.window"),
    ("snip", 0.2, {"window": 5}, "pruner.window"),
    ("gsm", 0.2, {"momentum": 1.0}, "pruner.momentum"),
    ("weightmom", 0.2, {"density": 0.3}, "pruner.density"),
    ("gmp", 0.2, {"window": 5}, "pruner.window"),
    ("gmp", 0.2, {"threshold": 1.0}, "pruner.threshold"),
    ("gmp", 0.2, {"beta": 0.5}, "pruner.beta"),
    ("dense", 0.5, {}, "density"),
    ("n2nskip", 0.2, {"skip_fraction": 1.5}, "pruner.skip_fraction"),
    ("n2nskip", 0.2, {"skip_fraction": 0}, "pruner.skip_fraction"),
    ("n2nskip", 0.2, {"hops": [1]}, "pruner.hops"),
    ("n2nskip", 0.2, {"hops": []}, "pruner.hops"),
    ("n2nskip", 0.2, {"hops": [2, "x"]}, "pruner.hops"),
    ("n2nskip", 0.2, {"hops": 2.5}, "pruner.hops"),
    ("n2nskip", 0.2, {"base": "nope"}, "pruner.base"),
    ("magic", 0.2, {}, "'magic'"),
] + [(m, d, {}, "density") for m in METHODS if m != "dense" for d in (0, 1.5, -0.1)]


@pytest.mark.parametrize("method, density, options, key", BAD_SETTINGS)
def test_bad_settings_raise_a_one_line_usage_error(method: str, density: float, options: dict, key: str) -> None:
    with pytest.raises(UsageError) as excinfo:
        pruner_config(method, density, options)
    message = str(excinfo.value)
    assert key in message
    assert "\n" not in message and message.strip() == message


@pytest.mark.parametrize("options, epochs", [({"prune_end": 5}, 4), ({"prune_start": 6}, 4),
                                             ({"unit": "step", "prune_end": 17}, 4)])
def test_prune_end_after_the_end_of_training(options: dict, epochs: int) -> None:
    config = pruner_config("weightmom", 0.2, options)
    with pytest.raises(UsageError, match="pruner.prune_end") as excinfo:
        config.resolve(epochs=epochs, steps_per_epoch=STEPS)
    assert "\n" not in str(excinfo.value)
    # the same error when the pruner is attached to a run that short
    model = tiny_cnn()
    pruner = create_pruner("weightmom", config)
    with pytest.raises(UsageError, match="pruner.prune_end"):
        pruner.attach(model, make_optimizer(model, "sgd", {}), make_context(make_batches(), epochs=epochs))


def test_resolve_fills_run_dependent_defaults() -> None:
    config = pruner_config("weightmom", 0.2, {"window": 3}).resolve(epochs=8, steps_per_epoch=5)
    assert config.prune_end == 6.0 and config.beta == 0.5 and config.observe_every == 5
    config = pruner_config("weightmom", 0.2, {"unit": "step", "prune_end": 40}).resolve(epochs=8, steps_per_epoch=5)
    assert config.prune_end == 40.0
    assert isinstance(pruner_config("gmp", 0.2), WeightMomConfig)
    assert pruner_config("weightmom", 0.2, {"threshold": "inf"}).threshold == INF
    assert not math.isfinite(pruner_config("gmp", 0.2).threshold)
