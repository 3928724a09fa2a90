"""The training loop: data on the device as tensors, a pruner called at fixed points.

One `train(config)` call is one run, from a notebook, the command line or a
sweep trial alike. `report(metrics)` is called after every epoch; a sweep
passes its own reporting function there.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from weightmom.config import TrainConfig, config_to_dict
from weightmom.data import TensorDataset, iterate_batches, load_dataset, split_validation
from weightmom.errors import TrainingDiverged, UsageError
from weightmom.metrics import sparsity_report
from weightmom.models import create_model
from weightmom.pruning import Pruner, TrainingContext, create_pruner, pruner_config

Report = Callable[[dict], None]
# What `report` gets every epoch besides `epoch`: the one list sweeps log and may optimise (val_* only
# when the run has a validation split).
REPORTED_METRICS = ("train_loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss", "density",
                    "compression_ratio", "lr")
EpochEnd = Callable[[dict, "TrainResult"], None]


@dataclass
class TrainResult:
    metrics: dict           # final metrics (the `weightmom train --json` content)
    model: nn.Module        # the trained, pruned model
    pruner: Pruner
    input_shape: tuple[int, ...]
    num_classes: int
    capture_state: Callable[[], dict] | None = field(default=None, repr=False)

    @property
    def state(self) -> dict | None:
        """Everything `train(..., resume=state)` needs to continue this run; built only when asked for."""
        return self.capture_state() if self.capture_state is not None else None

    def save(self, path: str) -> None:
        """The sparse checkpoint of this run (see weightmom.checkpoint)."""
        from weightmom.checkpoint import save_checkpoint

        save_checkpoint(path, self.model, self.pruner.masks(), config=self.metrics["config"],
                        input_shape=self.input_shape, num_classes=self.num_classes, metrics=self.metrics)

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
    """Per-step factor on the peak lr: cosine to zero, step decay, or constant."""
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if config.lr_schedule == "step":
        return lambda step: config.lr_step_gamma ** ((step // steps_per_epoch) // config.lr_step_epochs)
    return lambda step: 1.0


def evaluate(model: nn.Module, dataset: TensorDataset, batch_size: int = 1000,
             channels_last: bool = False, split: str = "test") -> tuple[float, float]:
    """Loss and accuracy (0..1) on one split, summed on the device and synchronised once."""
    model.eval()
    device = dataset.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.no_grad(), _autocast(device):
        for x, y in iterate_batches(dataset, split, batch_size, shuffle=False):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    n = dataset.size(split)
    return loss_sum.item() / n, correct.item() / n


def evaluate_splits(model: nn.Module, dataset: TensorDataset, channels_last: bool = False) -> dict:
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


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores, no loss scaling needed); a no-op on CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train(config: TrainConfig, report: Report | None = None, dataset: TensorDataset | None = None,
          progress: bool | None = None, epoch_end: EpochEnd | None = None, resume: dict | None = None) -> TrainResult:
    """Train `config.model` on `config.dataset` with `config.method` pruning; return final metrics.

    `report(metrics)` gets each epoch's metrics; `epoch_end(metrics, result)` also gets the
    live result, so a caller can checkpoint mid-run (`result.save(path)`, `result.save_state(path)`).
    `resume` is a saved `result.state`: the run continues after that epoch as if never stopped.
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if dataset is None:
        dataset = load_dataset(config.dataset, data_dir=config.data_dir, device=device)
    dataset = split_validation(dataset.to(device), config.val_fraction, config.split_seed)
    steps_per_epoch = math.ceil(dataset.train_labels.numel() / config.batch_size)

    density = config.target_density
    pruner = create_pruner(config.method, pruner_config(config.method, density, config.pruner))

    model = create_model(config.model, dataset.input_shape, dataset.num_classes, width=config.width).to(device)
    channels_last = device.type == "cuda" and len(dataset.input_shape) == 3
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    shuffle = torch.Generator().manual_seed(config.seed)
    context = TrainingContext(
        epochs=config.epochs, steps_per_epoch=steps_per_epoch, loss_fn=loss_fn, seed=config.seed,
        sample_input=dataset.train_images[:1].float(),
        batches=lambda: iterate_batches(dataset, "train", config.batch_size, shuffle=True,
                                        generator=torch.Generator().manual_seed(config.seed + 1)),
    )
    pruner.prepare(model, context)   # may add parameters (N2NSkip's skips): before the optimizer sees them
    optimizer = make_optimizer(model, config, pruner.optimizer_overrides())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(config, steps_per_epoch))
    pruner.attach(model, optimizer, context)
    first_epoch, seconds_before, epoch_metrics = 1, 0.0, {}
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        pruner.load_state_dict(resume["pruner"])
        shuffle.set_state(resume["shuffle"])
        torch.set_rng_state(resume["torch_rng"])
        first_epoch, seconds_before, epoch_metrics = resume["epoch"] + 1, resume["seconds"], resume["metrics"]

    def result(last_epoch: dict, seconds: float, sparsity: dict | None = None) -> TrainResult:
        def capture() -> dict:
            return {"epoch": last_epoch["epoch"], "metrics": last_epoch, "seconds": seconds,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "pruner": pruner.state_dict(),
                    "shuffle": shuffle.get_state(), "torch_rng": torch.get_rng_state()}

        return TrainResult(_final_metrics(config, dataset, model, pruner, last_epoch, seconds, sparsity), model, pruner,
                           dataset.input_shape, dataset.num_classes, capture)

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(range(first_epoch, config.epochs + 1), desc=f"{config.model}/{config.method}", unit="epoch",
               initial=first_epoch - 1, total=config.epochs, disable=not show)
    start = time.perf_counter() - seconds_before
    for epoch in bar:
        model.train()
        loss_sum = torch.zeros((), device=device)
        for x, y in iterate_batches(dataset, "train", config.batch_size, shuffle=True, generator=shuffle):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            pruner.before_step()
            optimizer.step()
            pruner.after_step()
            scheduler.step()
            loss_sum += loss.detach().float()
        pruner.on_epoch_end(epoch)
        train_loss = loss_sum.item() / steps_per_epoch
        sparsity = sparsity_report(model)
        epoch_metrics = {
            "epoch": epoch, "train_loss": train_loss, **evaluate_splits(model, dataset, channels_last),
            "density": sparsity["density"], "compression_ratio": sparsity["compression_ratio"],
            "lr": optimizer.param_groups[0]["lr"],
        }
        shown = epoch_metrics.get("val_accuracy", epoch_metrics["test_accuracy"])
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{shown:.3f}", density=f"{sparsity['density']:.3f}")
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"training diverged in epoch {epoch}: train loss is {train_loss}")
        if report is not None:
            report(dict(epoch_metrics))
        if epoch_end is not None:
            epoch_end(dict(epoch_metrics), result(epoch_metrics, time.perf_counter() - start, sparsity))
    pruner.on_train_end()
    return result(epoch_metrics, time.perf_counter() - start)


def _final_metrics(config: TrainConfig, dataset: TensorDataset, model: nn.Module, pruner: Pruner, last_epoch: dict,
                   seconds: float, sparsity: dict | None = None) -> dict:
    """The `--json` content: last epoch's quality, what the network keeps, and the resolved configs."""
    resolved = replace(config, density=config.target_density)
    quality = {k: v for k, v in last_epoch.items() if k.startswith(("val_", "test_"))}
    return {
        **quality, "val_fraction": config.val_fraction,
        **{f"{split}_size": dataset.size(split) for split in ("train", "val", "test")},
        "train_loss": last_epoch["train_loss"], "epochs": last_epoch["epoch"], "train_seconds": seconds,
        **(sparsity or sparsity_report(model)),
        "model": config.model, "dataset": config.dataset, "method": config.method,
        "config": config_to_dict(resolved), "pruner_config": config_to_dict(pruner.config),
    }
