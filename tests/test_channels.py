"""Channel granularity (docs/method.md, "Channel granularity") and slimming (weightmom.slim).

Real data throughout: sklearn digits through the project's loaders for the built-in models, and a few
cifar10-mini batches for torchvision's resnet18, vgg11_bn and mobilenet_v2. What is checked is what a user
relies on: whole groups die together (weights, biases, BatchNorm, gradients, optimizer state) and never
come back, `density` still means the fraction of prunable weights kept, the slim network gives the masked
network's logits to 1e-4 and has the params and MACs the run reported, and weight granularity is unchanged.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from weightmom.checkpoint import load_checkpoint
from weightmom.config import TrainConfig
from weightmom.data.datasets import iterate_batches
from weightmom.data.sources import load_data
from weightmom.errors import UsageError
from weightmom.pruning import Pruner, TrainingContext, create_pruner, pruner_config
from weightmom.slim import max_logit_difference, slim_from_checkpoint, slim_model
from weightmom.train_step import Trainer
from weightmom.training import train

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4   # on logits, relative to the largest logit when that is above 1 (float32 has 7 digits)

pytestmark = pytest.mark.usefixtures("one_thread")


# -- helpers ----------------------------------------------------------------------------------------------


def digits_test_images(n: int = 200) -> torch.Tensor:
    data = load_data("digits")
    return next(iter(iterate_batches(data, "test", n, shuffle=False)))[0]


def assert_same_logits(masked: nn.Module, slim: nn.Module, x: torch.Tensor) -> None:
    masked.eval()
    with torch.no_grad():
        scale = max(1.0, float(masked(x).abs().max()))
    assert max_logit_difference(masked, slim, x) <= TOLERANCE * scale


def counted_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Conv2d and Linear multiply-adds per image, counted on the module as it is (the slim one)."""
    total = 0

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        channels = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
        total += module.weight.numel() * (output[:1].numel() // channels)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(x[:1])
    for hook in hooks:
        hook.remove()
    return total


def dead_positions(pruner: Pruner) -> dict[str, torch.Tensor]:
    """For every tensor a group touches, where its dead channels sit (True: must be exactly zero)."""
    return {name: mask == 0 for name, mask in pruner.channels.masks(pruner.channel_alive).items()}


def leaks(model: nn.Module, pruner: Pruner, optimizer: torch.optim.Optimizer) -> list[str]:
    """What is not exactly zero at a dead channel: weights, biases, BN scale and shift, grads, optimizer state."""
    params = dict(model.named_parameters())
    found = []
    for name, dead in dead_positions(pruner).items():
        param = params[name]
        if param[dead].count_nonzero():
            found.append(f"{name}: value")
        if param.grad is not None and param.grad[dead].count_nonzero():
            found.append(f"{name}: grad")
        for key, value in optimizer.state.get(param, {}).items():
            if torch.is_tensor(value) and value.shape == param.shape and value[dead].count_nonzero():
                found.append(f"{name}: {key}")
    return found


def channel_run(model: nn.Module, batches: list, method: str, density: float, epochs: int,
                optimizer: str = "sgd", options: dict | None = None) -> tuple[Pruner, list[str], int]:
    """Train `model` in place with weightmom.train_step's step, checking after every step that dead channels stay
    dead and that no channel comes back. Returns the pruner, what leaked, and the steps checked under a mask."""
    options = {"granularity": "channel", **(options or {})}
    pruner = create_pruner(method, pruner_config(method, density, options))
    context = TrainingContext(epochs=epochs, steps_per_epoch=len(batches), sample_input=batches[0][0],
                              loss_fn=nn.CrossEntropyLoss(), batches=lambda: iter(list(batches)), seed=0)
    params = model.parameters()
    opt = (torch.optim.Adam(params, lr=1e-3, weight_decay=5e-4) if optimizer == "adam"
           else torch.optim.SGD(params, lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4))
    ids = [id(p) for p in model.parameters()]
    pruner.attach(model, opt, context)
    trainer = Trainer(model, opt, None, pruner, nn.CrossEntropyLoss(), torch.device("cpu"))
    found, checked, alive = [], 0, [a.clone() for a in pruner.channel_alive]
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in batches:
            masked = not all(bool(a.all()) for a in pruner.channel_alive)
            trainer.step(x, y)
            if masked:
                checked += 1
                found += leaks(model, pruner, opt)
        pruner.on_epoch_end(epoch)
        found += leaks(model, pruner, opt)
        found += [f"epoch {epoch}: a channel came back" for a, b in zip(alive, pruner.channel_alive) if (b & ~a).any()]
        alive = [a.clone() for a in pruner.channel_alive]
    assert [id(p) for p in model.parameters()] == ids, "parameters were replaced during training"
    return pruner, found, checked


@pytest.fixture(scope="module")
def digits_batches() -> list:
    data = load_data("digits")
    generator = torch.Generator().manual_seed(0)
    return [b for _, b in zip(range(6), iterate_batches(data, "train", 32, shuffle=True, generator=generator))]


@pytest.fixture(scope="module")
def cifar_batches(cifar_mini: Path) -> tuple[list, torch.Tensor]:
    data = load_data("cifar10", str(cifar_mini))
    generator = torch.Generator().manual_seed(0)
    batches = [b for _, b in zip(range(2), iterate_batches(data, "train", 8, shuffle=True, generator=generator))]
    return batches, next(iter(iterate_batches(data, "test", 32, shuffle=False)))[0]


# -- the built-in models, trained through weightmom.train ---------------------------------------------------


def channel_config(model: str, method: str = "weightmom", density: float = 0.3, **pruner) -> TrainConfig:
    options = {"granularity": "channel", **({"prune_end": 2.0} if method in ("weightmom", "gmp") else {}), **pruner}
    return TrainConfig(dataset="digits", model=model, width=0.25, method=method, density=density, epochs=3,
                       batch_size=128, device="cpu", seed=0, pruner=options)


@pytest.mark.parametrize("model, method", [("vgg16", "weightmom"), ("resnet20", "gmp"), ("lenet300", "snip"),
                                           ("digits_cnn", "random")])
def test_channel_pruning_slims_exactly_to_the_reported_size(model: str, method: str, tmp_path: Path) -> None:
    seen: list[dict] = []
    result = train(channel_config(model, method), report=seen.append, progress=False)
    m = result.metrics
    dense_params = sum(p.numel() for p in result.model.parameters())
    x = digits_test_images()
    assert 0.2 <= m["density"] <= 0.3 + 1e-9                        # the fraction of prunable weights kept
    assert m["channel_density"] < 1 and m["params"] < dense_params
    assert all({"params", "macs", "channel_density"} <= set(epoch) for epoch in seen)
    assert [e["channel_density"] for e in seen] == sorted((e["channel_density"] for e in seen), reverse=True)

    slim = slim_model(result.model, x[:1])
    assert_same_logits(result.model, slim, x)
    assert sum(p.numel() for p in slim.parameters()) == m["params"]
    assert counted_macs(slim, x) == m["macs"] < counted_macs(result.model, x)

    result.save(tmp_path / "model.pt")                            # rebuilt from the masked dense checkpoint
    rebuilt = slim_from_checkpoint(load_checkpoint(tmp_path / "model.pt"))
    assert_same_logits(slim, rebuilt, x)
    assert sum(p.numel() for p in rebuilt.parameters()) == m["params"]


def test_a_resumed_channel_run_ends_bit_identical(tmp_path: Path) -> None:
    config = TrainConfig(dataset="digits", model="digits_cnn", width=0.5, method="weightmom", density=0.3, epochs=4,
                         batch_size=128, device="cpu", pruner={"granularity": "channel", "prune_end": 3.0})
    saved = tmp_path / "state.pt"

    def keep_epoch_2(metrics: dict, result) -> None:
        if metrics["epoch"] == 2:
            result.save_state(str(saved))

    unbroken = train(config, epoch_end=keep_epoch_2, progress=False)
    resumed = train(config, resume=torch.load(saved, weights_only=True), progress=False)
    for (name, a), b in zip(unbroken.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert all(torch.equal(a, b) for a, b in zip(unbroken.pruner.channel_alive, resumed.pruner.channel_alive))
    assert {k: resumed.metrics[k] for k in ("test_accuracy", "density", "params", "macs")} == \
        {k: unbroken.metrics[k] for k in ("test_accuracy", "density", "params", "macs")}


def test_option_a_resnet_is_pruned_on_inner_channels_only() -> None:
    result = train(channel_config("resnet20", density=0.5), progress=False)
    roots = [group.root for group in result.pruner.channels.groups]
    assert roots and all(root.endswith(".conv1") for root in roots)   # each block's first conv, nothing else
    slim = slim_model(result.model, digits_test_images()[:1])
    dense = dict(result.model.named_modules())
    for name, module in slim.named_modules():
        if isinstance(module, nn.Conv2d) and not name.endswith(".conv1"):    # the stem and every block's conv2
            assert module.out_channels == dense[name].out_channels, name
        if isinstance(module, nn.Conv2d) and name.endswith(".conv1"):
            assert module.in_channels == dense[name].in_channels, name       # the residual stream keeps its width
    assert slim[-1].in_features == result.model[-1].in_features and slim[-1].out_features == 10


def test_masks_zero_whole_groups_and_nothing_regrows(digits_batches: list) -> None:
    from weightmom.models import digits_cnn

    for optimizer in ("sgd", "adam"):
        torch.manual_seed(0)
        model = digits_cnn((1, 8, 8), 10, 0.5)
        pruner, found, checked = channel_run(model, digits_batches, "weightmom", 0.3,
                                             epochs=4, optimizer=optimizer, options={"prune_end": 3.0})
        assert found == [] and checked >= 6
        bn = {f"{name}.{p}" for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
              for p in ("weight", "bias")}
        assert {layer.name for layer in pruner.coupled} == bn                # BN scale and shift are masked too
        assert any((layer.mask == 0).any() for layer in pruner.coupled)
        assert pruner.channels.kept_weights([int(a.sum()) for a in pruner.channel_alive]) == \
            sum(int(layer.mask.sum()) for layer in pruner.layers)       # the density rule counts what stays


@pytest.mark.parametrize("density", [0.5, 0.2, 0.05])
def test_density_is_the_fraction_of_prunable_weights_kept(digits_batches: list, density: float) -> None:
    """The channels kept are the most that keep at most `density` of the prunable weights; one more would pass it."""
    from weightmom.models import vgg16

    torch.manual_seed(0)
    pruner, _, _ = channel_run(vgg16((1, 8, 8), 10, 0.25), digits_batches[:2], "random", density, epochs=1)
    total = pruner.channels.total_weights
    kept = sum(int(layer.weight.count_nonzero()) for layer in pruner.layers)
    assert kept <= density * total
    assert 0.9 * density * total <= kept <= density * total     # measured: 0.495, 0.199, 0.048


@pytest.mark.parametrize("allocation", ["importance", "uniform", "global", "erk"])
def test_every_allocation_rule_shares_out_channels_to_the_target(digits_batches: list, allocation: str) -> None:
    from weightmom.models import vgg16

    torch.manual_seed(0)
    pruner, found, _ = channel_run(vgg16((1, 8, 8), 10, 0.25), digits_batches[:2], "weightmom", 0.2, epochs=3,
                                   options={"allocation": allocation, "prune_end": 2.0, "prune_first": False})
    kept = sum(int(layer.weight.count_nonzero()) for layer in pruner.layers)
    assert found == [] and 0.9 * 0.2 <= kept / pruner.channels.total_weights <= 0.2
    first = pruner.channels.touches(pruner.layers[0].name, 0).index(True)
    assert bool(pruner.channel_alive[first].all())          # prune_first false holds the first layer's channels
    assert sum(int((~a).sum()) for a in pruner.channel_alive) > 0


def test_gmp_keeps_the_channels_of_largest_l2_magnitude(digits_batches: list) -> None:
    """A channel's GMP score is the L2 norm of all its weights (its rows and its consumers' input columns);
    within a group the kept channels outrank the removed ones."""
    from weightmom.models import lenet300

    torch.manual_seed(0)
    model = lenet300((1, 8, 8), 10, 0.2)
    pruner, _, _ = channel_run(model, digits_batches, "gmp", 0.4, epochs=1, options={"prune_end": 1.0})
    index = [g.root for g in pruner.channels.groups].index("1")
    hidden1 = pruner.channels.groups[index]              # Linear 1's rows, its bias, Linear 3's input columns
    assert {(s.name, s.dim) for s in hidden1.slices} == {("1.weight", 0), ("1.bias", 0), ("3.weight", 1)}
    m1, m3 = pruner.momentum[0], pruner.momentum[1]      # |w| when the mask was set (window 1)
    expected = (m1.pow(2).sum(1) + m3.pow(2).sum(0)).sqrt()
    scores = pruner.channels.scores({"1.weight": m1, "3.weight": m3}, "l2")[index]
    assert torch.allclose(scores, expected)
    alive = pruner.channel_alive[index]
    assert 0 < int(alive.sum()) < alive.numel()
    assert scores[alive].min() >= scores[~alive].max()


# -- torchvision's models, a few steps on real cifar10-mini images ---------------------------------------


@pytest.mark.parametrize("name, method", [
    ("resnet18", "weightmom"),
    ("mobilenet_v2", "gmp"),
    ("vgg11_bn", "random"),   # its classifier narrowed below: the 129M-parameter one cost 70 s and 5 GB on CPU
])
def test_torchvision_models_are_channel_pruned_and_slimmed_exactly(name: str, method: str, cifar_batches) -> None:
    batches, test_images = cifar_batches
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10)
    if name.startswith("vgg"):   # same layers, 64 wide: the 7x7 pooled flatten into the first Linear stays
        model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 64), nn.ReLU(True), nn.Dropout(),
                                         nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 10))
    options = {"prune_end": 1.0} if method in ("weightmom", "gmp") else {}
    pruner, found, _ = channel_run(model, batches, method, 0.5, epochs=2, options=options)
    assert found == []
    size = pruner.channels.slim_size()
    slim = slim_model(model, test_images[:1], pruner.channels)
    assert_same_logits(model, slim, test_images)
    assert sum(p.numel() for p in slim.parameters()) == size["params"] < sum(p.numel() for p in model.parameters())
    assert counted_macs(slim, test_images) == size["macs"]


# -- weight granularity is today's behaviour -------------------------------------------------------------


def fingerprint(result) -> dict:
    masks, state = hashlib.sha256(), hashlib.sha256()
    for name, mask in result.pruner.masks().items():
        masks.update(name.encode())
        masks.update(mask.cpu().numpy().tobytes())
    for value in result.model.state_dict().values():
        state.update(value.cpu().numpy().tobytes())
    m = result.metrics
    return {"masks": masks.hexdigest()[:16], "state": state.hexdigest()[:16], "test_accuracy": m["test_accuracy"],
            "density": m["density"]}


def weight_config(method: str, **pruner) -> TrainConfig:
    schedule = {"prune_end": 2.0} if method in ("weightmom", "gmp") else {}
    return TrainConfig(dataset="digits", model="digits_cnn", width=0.25, method=method, density=0.2, epochs=3,
                       batch_size=64, device="cpu", seed=3, pruner={**schedule, **pruner})


# Recorded with the code before channel granularity existed (torch 2.14 on an AVX512 CPU, one thread): the
# masks, every tensor of the trained model (BatchNorm statistics included) and the metrics, bit for bit.
BEFORE = {
    "weightmom": {"masks": "4b2bcd4eb3b9368c", "state": "c11c0013d57cbff7", "test_accuracy": 0.5888888888888889},
    "gmp": {"masks": "8bc00bc14613aaf0", "state": "c71558be1be44344", "test_accuracy": 0.6466666666666666},
    "snip": {"masks": "8f9017489b0ed15c", "state": "b4cba61ffb0535d3", "test_accuracy": 0.5044444444444445},
    "random": {"masks": "4664c87ad258e0a4", "state": "32deff43d51e57c1", "test_accuracy": 0.5355555555555556},
}


@pytest.mark.parametrize("method", list(BEFORE))
def test_weight_granularity_is_unchanged_bit_for_bit(method: str) -> None:
    unset = fingerprint(train(weight_config(method), progress=False))
    explicit = fingerprint(train(weight_config(method, granularity="weight"), progress=False))
    assert unset == explicit
    assert unset["density"] == pytest.approx(0.2, abs=1e-3)
    if torch.backends.cpu.get_cpu_capability() != "AVX512" or not torch.__version__.startswith("2.14"):
        pytest.skip("the recorded fingerprint is for torch 2.14 on AVX512; the float sums differ elsewhere")
    assert {k: unset[k] for k in BEFORE[method]} == BEFORE[method]


def test_attaching_changes_nothing_in_the_model_or_the_global_rng(digits_batches: list) -> None:
    """Finding channel groups traces and probes copies: BatchNorm statistics and the RNG stream stay as they were."""
    from weightmom.models import digits_cnn

    torch.manual_seed(0)
    model = digits_cnn((1, 8, 8), 10, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    pruner = create_pruner("weightmom", pruner_config("weightmom", 0.2))
    context = TrainingContext(epochs=2, steps_per_epoch=1, sample_input=digits_batches[0][0],
                              loss_fn=nn.CrossEntropyLoss(), batches=lambda: iter(digits_batches), seed=0)
    pruner.attach(model, torch.optim.SGD(model.parameters(), lr=0.1), context)
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(pruner.channels.groups) == 3 and pruner.coupled == []


def test_weight_granularity_slims_channels_that_ended_dead() -> None:
    """A hidden unit whose every outgoing weight was pruned is removed for free, exactly."""
    result = train(TrainConfig(dataset="digits", model="lenet300", width=0.5, method="gmp", density=0.03, epochs=3,
                               batch_size=128, device="cpu", seed=0, pruner={"prune_end": 2.0}), progress=False)
    m, x = result.metrics, digits_test_images()
    assert m["channel_density"] < 1
    slim = slim_model(result.model, x[:1])
    assert_same_logits(result.model, slim, x)
    assert sum(p.numel() for p in slim.parameters()) == m["params"] < m["params_total"]


# -- refusals, in one line -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gsm", "n2nskip"])
def test_gsm_and_n2nskip_refuse_channel_granularity_in_one_line(method: str) -> None:
    with pytest.raises(UsageError) as err:
        pruner_config(method, 0.1, {"granularity": "channel"})
    assert "\n" not in str(err.value) and "weightmom, gmp, snip, random" in str(err.value)


def ungroupable(input_shape, num_classes):
    """Its only hidden layer feeds a LayerNorm, which channel masks do not cover: no group to remove."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.LayerNorm(16), nn.Linear(16, num_classes))


def test_a_model_that_cannot_be_grouped_is_refused_in_one_line() -> None:
    with pytest.raises(UsageError, match="no channel group can be removed"):
        train(TrainConfig(dataset="digits", method="weightmom", density=0.3, epochs=1, device="cpu",
                          pruner={"granularity": "channel"}), model=ungroupable, progress=False)


def test_cli_refuses_an_ungroupable_model_with_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "flat.py").write_text(
        "from torch import nn\n\ndef model(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 16), nn.LayerNorm(16), nn.Linear(16, num_classes))\n")
    out, empty = tmp_path / "metrics.json", tmp_path / "no-cifar"
    empty.mkdir()   # loading it would fail: the refusal must come before any data loads
    result = subprocess.run([sys.executable, "-m", "weightmom", "train", "--dataset", "cifar10",
                             "--data-dir", str(empty), "--model", "flat:model",
                             "--method", "weightmom", "--epochs", "1", "--device", "cpu",
                             "--set", "pruner.granularity=channel", "--json", str(out)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "pruner.granularity channel" in result.stderr
    assert not out.exists()


def test_kept_channels_come_in_blocks_where_the_kernels_want_them_and_exact_elsewhere() -> None:
    """127 of 256 channels would take ONNX Runtime's slow path (weightmom.pruning.allocation.CHANNEL_BLOCK)."""
    from weightmom.pruning.allocation import CHANNEL_BLOCK, kept_channels

    assert [kept_channels(w, 256) for w in (127.4, 124.0, 131.9, 256.0)] == [128, 128, 128, 256]
    assert all(kept_channels(w, 64) % CHANNEL_BLOCK == 0 for w in (9.0, 20.0, 37.5, 63.0))
    assert [kept_channels(w, 16) for w in (5.0, 7.4)] == [5, 7]        # a small group keeps its precision
    assert [kept_channels(w, 256) for w in (0.2, 3.0, 7.4)] == [1, 3, 7]   # as does a very sparse target
