"""The training loop: data on the device as tensors, a pruner called at fixed points.

One `train(config)` call is one run, from a notebook, the command line or a
sweep trial alike. `report(metrics)` is called after every epoch with `epoch` and
weightmom.objectives.METRICS; a sweep passes its own reporting function there.
The step itself is weightmom.train_step's.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from weightmom.chain import chain_lr
from weightmom.config import TrainConfig
from weightmom.data.datasets import TensorDataset, iterate_batches, normalize, split_validation
from weightmom.data.sources import KNOWN_INPUTS, Loader, as_tensor_dataset, data_loader
from weightmom.data.streaming import StreamingDataset
from weightmom.errors import TrainingDiverged, UsageError
from weightmom.metrics import sparsity_report
from weightmom.models import ModelFactory, check_forward, model_source
from weightmom.pruning import Pruner, TrainingContext, create_pruner, pruner_config
from weightmom.pruning.base import check_channel_groups
from weightmom.train_step import Trainer, autocast

Report = Callable[[dict], None]
EpochEnd = Callable[[dict, "TrainResult"], None]
Data = TensorDataset | StreamingDataset   # held on the device, or streamed from files


@dataclass
class TrainResult:
    metrics: dict           # final metrics (the `weightmom train --json` content)
    model: nn.Module        # the trained, pruned model
    pruner: Pruner
    input_shape: tuple[int, ...]
    num_classes: int
    capture_state: Callable[[], dict] | None = field(default=None, repr=False)
    class_names: tuple[str, ...] | None = None

    @property
    def state(self) -> dict | None:
        """Everything `train(..., resume=state)` needs to continue this run; built only when asked for."""
        return self.capture_state() if self.capture_state is not None else None

    def save(self, path: str) -> None:
        """The sparse checkpoint of this run (see weightmom.checkpoint)."""
        from weightmom.checkpoint import save_checkpoint

        save_checkpoint(path, self.model, self.pruner.masks(), config=self.metrics["config"],
                        input_shape=self.input_shape, num_classes=self.num_classes, metrics=self.metrics,
                        class_names=self.class_names)

    def save_state(self, path: str) -> None:
        """The full training state (dense, with optimizer and RNG): for resuming, not for shipping."""
        from weightmom.checkpoint import atomic_save

        atomic_save(self.state, path)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} requested but CUDA is not available here")
    return device


def make_optimizer(model: nn.Module, config: TrainConfig, overrides: dict) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum or Adam; a pruning method may override (GSM brings its own)."""
    name = overrides.get("optimizer", config.optimizer)
    lr = overrides.get("lr", config.lr)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    momentum = overrides.get("momentum", config.momentum)
    nesterov = overrides.get("nesterov", momentum > 0)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                           weight_decay=config.weight_decay)


def lr_multiplier(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Per-step factor on the peak lr: cosine to zero, step decay, or constant (a chain's further steps
    restart it, weightmom.chain)."""
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "cosine":
        base = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    elif config.lr_schedule == "step":
        base = lambda step: config.lr_step_gamma ** ((step // steps_per_epoch) // config.lr_step_epochs)  # noqa: E731
    else:
        base = lambda step: 1.0  # noqa: E731
    plan = config.chain_plan
    return base if plan is None else chain_lr(base, plan, steps_per_epoch, config.chain_lr)


def evaluate(model: nn.Module, dataset: Data, batch_size: int = 1000,
             channels_last: bool = False, split: str = "test") -> tuple[float, float]:
    """Loss and accuracy (0..1) on one split, summed on the device and synchronised once."""
    model.eval()
    device = dataset.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.no_grad(), autocast(device):
        for x, y in iterate_batches(dataset, split, batch_size, shuffle=False):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    n = dataset.size(split)
    return loss_sum.item() / n, correct.item() / n


def evaluate_splits(model: nn.Module, dataset: Data, channels_last: bool = False) -> dict:
    """`val_*` (when the dataset has a validation split) and `test_*` loss and accuracy.

    Both are measured every epoch; only val is for choosing (sweeps, early stopping, `best`),
    test is for reading.
    """
    metrics = {}
    for split in ("val", "test"):
        if split in dataset.splits:
            loss, accuracy = evaluate(model, dataset, channels_last=channels_last, split=split)
            metrics |= {f"{split}_loss": loss, f"{split}_accuracy": accuracy}
    return metrics


def train(config: TrainConfig, report: Report | None = None, data: object = None,
          progress: bool | None = None, epoch_end: EpochEnd | None = None, resume: dict | None = None,
          model: nn.Module | Callable[..., nn.Module] | None = None) -> TrainResult:
    """Train `config.model` on `config.dataset` with `config.method` pruning; return final metrics.

    `report(metrics)` gets each epoch's metrics; `epoch_end(metrics, result)` also gets the
    live result, so a caller can checkpoint mid-run (`result.save(path)`, `result.save_state(path)`).
    `resume` is a saved `result.state`: the run continues after that epoch as if never stopped.
    `model` (an nn.Module, trained in place, or a factory) and `data` (a TensorDataset or
    `(train, test, num_classes)`, see weightmom.data.sources) replace the config's names.
    """
    run = _setup(config, model, data)
    try:
        return _train_epochs(run, report, progress, epoch_end, resume)
    finally:
        if isinstance(run.dataset, StreamingDataset):
            run.dataset.close()   # its worker processes end with the run, not when it is collected


def _train_epochs(run: _Run, report: Report | None, progress: bool | None, epoch_end: EpochEnd | None,
                  resume: dict | None) -> TrainResult:
    first_epoch, seconds_before, last = 1, 0.0, {}
    if resume is not None:
        first_epoch, seconds_before, last = run.resume(resume)
    bar = _progress_bar(run.config, first_epoch, progress)
    plan = run.config.chain_plan
    start = time.perf_counter() - seconds_before
    for epoch in bar:
        last, sparsity = run.epoch(epoch)
        shown = last.get("val_accuracy", last["test_accuracy"])
        bar.set_postfix(loss=f"{last['train_loss']:.3f}", acc=f"{shown:.3f}", density=f"{sparsity['density']:.3f}")
        if not math.isfinite(last["train_loss"]):
            raise TrainingDiverged(f"training diverged in epoch {epoch}: train loss is {last['train_loss']}")
        if plan is not None:   # which step the epoch is in, and whether its end is a checkpoint of the chain
            last |= {"chain_step": plan.step_of(epoch), "step_end": plan.ends_step(epoch)}
        if report is not None:
            report(dict(last))
        if epoch_end is not None:
            epoch_end(dict(last), run.result(last, time.perf_counter() - start, sparsity))
    run.trainer.pruner.on_train_end()
    return run.result(last, time.perf_counter() - start)


@dataclass
class _Run:
    """One run, set up: the trainer, the data it steps through, and what its results are made of."""

    config: TrainConfig          # as resolved by _sources: names what the run really uses
    dataset: Data
    trainer: Trainer
    shuffle: torch.Generator     # the order of the train batches, part of the resumable state

    def epoch(self, epoch: int) -> tuple[dict, dict]:
        """Train epoch `epoch` and measure it: the metrics `report` gets, and the sparsity report."""
        trainer = self.trainer
        batches = iterate_batches(self.dataset, "train", self.config.batch_size, shuffle=True, generator=self.shuffle)
        train_loss = trainer.train_epoch(batches, epoch)
        sparsity = sparsity_report(trainer.model)
        metrics = {
            "epoch": epoch, "train_loss": train_loss,
            **evaluate_splits(trainer.model, self.dataset, trainer.channels_last),
            "density": sparsity["density"], "compression_ratio": sparsity["compression_ratio"],
            "lr": trainer.optimizer.param_groups[0]["lr"],
            **trainer.pruner.channels.slim_size(),   # params, macs, channel_density of the slimmed network
        }
        return metrics, sparsity

    def state(self, last_epoch: dict, seconds: float) -> dict:
        """What `train(..., resume=state)` continues from (the model's tensors are live, not copies)."""
        return {"epoch": last_epoch["epoch"], "metrics": last_epoch, "seconds": seconds,
                **self.trainer.state_dict(), "shuffle": self.shuffle.get_state(), "torch_rng": torch.get_rng_state()}

    def resume(self, state: dict) -> tuple[int, float, dict]:
        """Load a saved `state`; returns the first epoch still to train, the seconds spent, the last metrics."""
        self.trainer.load_state_dict(state)
        self.shuffle.set_state(state["shuffle"])
        torch.set_rng_state(state["torch_rng"])
        return state["epoch"] + 1, state["seconds"], state["metrics"]

    def result(self, last_epoch: dict, seconds: float, sparsity: dict | None = None) -> TrainResult:
        trainer, dataset = self.trainer, self.dataset
        metrics = _final_metrics(self.config, dataset, trainer.model, trainer.pruner, last_epoch, seconds, sparsity)
        return TrainResult(metrics, trainer.model, trainer.pruner, dataset.input_shape, dataset.num_classes,
                           functools.partial(self.state, last_epoch, seconds), dataset.class_names)


def _setup(config: TrainConfig, model: object, data: object) -> _Run:
    """Seed, data, pruner, model, optimizer, in this order: the runs' bit-reproducibility depends on it."""
    device = resolve_device(config.device)
    config, build_model, load = _sources(config, model, data, device)
    if config.pruner.get("granularity") == "channel" and config.dataset in KNOWN_INPUTS:
        shape, classes = KNOWN_INPUTS[config.dataset]
        check_channel_groups(build_model(shape, classes), torch.zeros(1, *shape))   # before the data loads
    torch.manual_seed(config.seed)
    dataset = split_validation(load().to(device), config.val_fraction, config.split_seed)
    pruner = create_pruner(config.method, pruner_config(config.method, config.target_density, config.pruner))
    net = build_model(dataset.input_shape, dataset.num_classes).to(device)
    check_forward(net, normalize(dataset.first_images(1), dataset), dataset.num_classes, config.model)
    channels_last = device.type == "cuda" and len(dataset.input_shape) == 3
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    context = _context(config, dataset)
    pruner.prepare(net, context)   # may add parameters (N2NSkip's skips): before the optimizer sees them
    optimizer = make_optimizer(net, config, pruner.optimizer_overrides())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(config, context.steps_per_epoch))
    pruner.attach(net, optimizer, context)
    trainer = Trainer(net, optimizer, scheduler, pruner, context.loss_fn, device, channels_last)
    return _Run(config, dataset, trainer, shuffle=torch.Generator().manual_seed(config.seed))


def _context(config: TrainConfig, dataset: Data) -> TrainingContext:
    """What the pruner may know of the run. Its `batches` (SNIP's saliency) have their own generator."""
    return TrainingContext(
        epochs=config.epochs, steps_per_epoch=math.ceil(dataset.size("train") / config.batch_size),
        chain=config.chain_plan,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing), seed=config.seed,
        sample_input=dataset.first_images(1).float(),
        batches=lambda: iterate_batches(dataset, "train", config.batch_size, shuffle=True,
                                        generator=torch.Generator().manual_seed(config.seed + 1)),
    )


def _progress_bar(config: TrainConfig, first_epoch: int, progress: bool | None) -> tqdm:
    """The epochs still to train, with a tqdm bar on stderr when it is a terminal (or `progress` says so)."""
    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(range(first_epoch, config.total_epochs + 1), desc=f"{config.model}/{config.method}", unit="epoch",
                initial=first_epoch - 1, total=config.total_epochs, disable=not show)


def _sources(config: TrainConfig, model: object, data: object,
             device: torch.device | None = None) -> tuple[TrainConfig, ModelFactory, Loader]:
    """Resolve the model and the data before any is read: a typo costs no loading time. The config
    returned names what the run really uses (a model or data passed as objects included)."""
    label, build_model = model_source(config.model, config.width, config.model_args, model)
    if data is None:
        load = data_loader(config.dataset, config.data_dir, config.image_size, config.data_loading, device,
                           config.data_workers)
    else:
        load = lambda: as_tensor_dataset(data, "data", config.image_size)  # noqa: E731
        config = replace(config, dataset=data.name if isinstance(data, TensorDataset) else "<data>")
    return replace(config, model=label), build_model, load


def _final_metrics(config: TrainConfig, dataset: Data, model: nn.Module, pruner: Pruner, last_epoch: dict,
                   seconds: float, sparsity: dict | None = None) -> dict:
    """The `--json` content: last epoch's quality, what the network keeps, and the resolved configs."""
    resolved = replace(config, density=config.target_density)
    quality = {k: v for k, v in last_epoch.items() if k.startswith(("val_", "test_"))}
    quality |= {k: last_epoch[k] for k in ("params", "macs", "channel_density") if k in last_epoch}
    return {
        **quality, "val_fraction": config.val_fraction,
        **{f"{split}_size": dataset.size(split) for split in ("train", "val", "test")},
        "train_loss": last_epoch["train_loss"], "epochs": last_epoch["epoch"], "train_seconds": seconds,
        **(sparsity or sparsity_report(model)),
        "model": config.model, "dataset": config.dataset, "method": config.method,
        "num_classes": dataset.num_classes,
        "class_names": list(dataset.class_names) if dataset.class_names is not None else None,
        "config": plain(asdict(resolved)), "pruner_config": asdict(pruner.config),
    }


def plain(config: dict) -> dict:
    """A config as YAML and JSON write it back (tuples as lists): what a checkpoint holds equals its config.yaml."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
