"""Time per training step of each pruning method, as a ratio to dense training.

WeightMom should cost next to nothing: a mask multiply on the gradients each
step, one |w| observation and one mask update per epoch. This trains the same
model (same seed, batches pre-made on the device, SGD as train() builds it)
dense, with WeightMom, GMP and GSM, and with a fixed magnitude mask applied by
torch.nn.utils.prune hooks (forward uses weight_orig * mask, as torch's pruning
users do), and prints the median ms/step of each and its ratio to dense.
Targets: WeightMom <= 1.05x dense and no slower than torch prune; GSM <= 1.5x.
It measures and asserts nothing.

A round is one pruner epoch of warm-up + timed steps: WeightMom/GMP observe on
its last step and re-mask at its end (prune_start 0, prune_end the last round:
more often than real training). on_epoch_end is spread over the epoch's steps;
its own column lets you re-amortise for a real epoch (391 steps on CIFAR-10).
Round 0 is untimed and activates the masks; then the variants run interleaved
in a rotating order, so a shared machine's noise falls on all of them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from weightmom.config import TrainConfig
from weightmom.data.datasets import iterate_batches, load_dataset
from weightmom.models import create_model
from weightmom.pruning import TrainingContext, create_pruner, pruner_config
from weightmom.train_step import Trainer
from weightmom.training import lr_multiplier, make_optimizer, resolve_device

VARIANTS = ("dense", "weightmom", "gmp", "gsm", "torch-prune")
TARGETS = {"weightmom": "<=1.05x, <=torch-prune", "gsm": "<=1.50x"}
MINI_CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-mini"
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Run:
    """One variant's trainer (model, optimizer, pruner); it persists across rounds like one training run."""

    trainer: Trainer
    masks: list[torch.Tensor]  # what the density column counts
    hooks: float = 0.0         # seconds spent in pruner.before_step/after_step so far


def time_hooks(run: Run) -> None:
    """Wrap the pruner's per-step hooks so that the time inside them adds up in `run.hooks`."""
    def timed(hook: Callable[[], None]) -> Callable[[], None]:
        def hook_timed() -> None:
            start = time.perf_counter()
            hook()
            run.hooks += time.perf_counter() - start
        return hook_timed

    pruner = run.trainer.pruner
    for name in ("before_step", "after_step"):   # instance attributes: Trainer.step calls these
        setattr(pruner, name, timed(getattr(pruner, name)))


@dataclass
class Timing:
    """One round of one variant, in seconds."""

    step: float   # per timed step
    hooks: float  # per timed step, inside pruner.before_step/after_step (exact on CPU, launch time on CUDA)
    end: float    # in on_epoch_end, once per round

    def per_step(self, steps_per_epoch: int) -> float:
        return self.step + self.end / steps_per_epoch


def make_batches(args: argparse.Namespace, n: int, device: torch.device) -> tuple[list[Batch], str]:
    """`n` training batches on the device, made once: every variant sees the same ones."""
    gen = torch.Generator().manual_seed(args.seed)
    if args.dataset == "synthetic" or (args.dataset == "cifar10" and not (MINI_CIFAR / "cifar-10-batches-py").is_dir()):
        return [(torch.randn(args.batch_size, 3, 32, 32, generator=gen).to(device),
                 torch.randint(0, 10, (args.batch_size,), generator=gen).to(device)) for _ in range(n)], "synthetic"
    data = load_dataset(args.dataset, data_dir=str(MINI_CIFAR) if args.dataset == "cifar10" else None, device=device)
    batches: list[Batch] = []
    while len(batches) < n:  # a small dataset is cycled, reshuffled each pass
        batches += iterate_batches(data, "train", args.batch_size, shuffle=True, generator=gen, drop_last=True)
    return batches[:n], f"{args.dataset} ({data.train_labels.numel()} train images)"


def torch_prune(model: nn.Module, density: float) -> list[torch.Tensor]:
    """Mask every Conv2d/Linear weight to its top-|w| `density` with prune.custom_from_mask."""
    masks = []
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight.detach().abs().flatten()
            mask = torch.zeros_like(w)
            mask[w.topk(max(1, round(density * w.numel()))).indices] = 1
            masks.append(prune.custom_from_mask(module, "weight", mask.view_as(module.weight)).weight_mask)
    return masks


def build(variant: str, args: argparse.Namespace, sample: torch.Tensor, steps_per_epoch: int) -> Run:
    """Same seed, model and optimizer recipe for every variant; only the pruning differs."""
    torch.manual_seed(args.seed)
    model = create_model(args.model, tuple(sample.shape[1:]), 10, width=args.width).to(sample.device)
    if sample.device.type == "cuda" and sample.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    epochs = args.rounds + 1
    method = "dense" if variant == "torch-prune" else variant
    options = {"prune_start": 0, "prune_end": epochs} if method in ("weightmom", "gmp") else {}
    pruner = create_pruner(method, pruner_config(method, 1.0 if method == "dense" else args.density, options))
    masks = torch_prune(model, args.density) if variant == "torch-prune" else []
    config = TrainConfig(model=args.model, width=args.width, batch_size=args.batch_size, epochs=epochs)
    optimizer = make_optimizer(model, config, pruner.optimizer_overrides())  # GSM brings its momentum
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(config, steps_per_epoch))
    context = TrainingContext(epochs=epochs, steps_per_epoch=steps_per_epoch, loss_fn=nn.CrossEntropyLoss(),
                              sample_input=sample[:1], batches=lambda: iter([]), seed=args.seed)
    pruner.attach(model, optimizer, context)
    # Batches come converted to channels_last already (main), so the step does not convert them.
    run = Run(Trainer(model, optimizer, scheduler, pruner, context.loss_fn, sample.device),
              masks or [layer.mask for layer in pruner.layers])
    time_hooks(run)
    return run


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_epoch(run: Run, batches: list[Batch], epoch: int, warmup: int) -> Timing:
    """One epoch of train()'s steps (Trainer.step), timed after `warmup` steps, then on_epoch_end (re-masking)."""
    device = batches[0][0].device
    run.trainer.model.train()
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            sync(device)
            start, run.hooks = time.perf_counter(), 0.0
        run.trainer.step(x, y)
    sync(device)
    end = time.perf_counter()
    run.trainer.pruner.on_epoch_end(epoch)
    sync(device)
    steps = len(batches) - warmup
    return Timing((end - start) / steps, run.hooks / steps, time.perf_counter() - end)


def density(run: Run) -> float:
    return sum(float(m.count_nonzero()) for m in run.masks) / sum(m.numel() for m in run.masks)


def report(results: dict[str, list[Timing]], runs: dict[str, Run], steps_per_epoch: int) -> None:
    """Median ms/step, its spread over rounds, the ratio to dense, the hooks' share, and the targets."""
    per_step = {v: [t.per_step(steps_per_epoch) for t in ts] for v, ts in results.items()}
    median = {v: statistics.median(t) for v, t in per_step.items()}
    checks = {"weightmom": median["weightmom"] <= min(1.05 * median["dense"], median["torch-prune"]),
              "gsm": median["gsm"] <= 1.5 * median["dense"]}
    print(f"\n{'variant':<12} | {'ms/step':>8} | {'spread':>6} | {'ratio':>5} | {'hooks':>6} | {'epoch-end ms':>12} | "
          f"{'density':>7} | {'target':<22} | ok?")
    print("-" * 109)
    for v in VARIANTS:
        ok = ("yes" if checks[v] else "NO") if v in checks else "-"
        spread = (max(per_step[v]) - min(per_step[v])) / median[v]
        hooks = statistics.median(t.hooks + t.end / steps_per_epoch for t in results[v]) / median["dense"]
        print(f"{v:<12} | {1e3 * median[v]:8.2f} | {spread:6.0%} | {median[v] / median['dense']:5.2f} | "
              f"{hooks:6.1%} | {1e3 * statistics.median(t.end for t in results[v]):12.2f} | "
              f"{density(runs[v]):7.3f} | {TARGETS.get(v, '-'):<22} | {ok}")
    print("spread: (max - min) / median over rounds. hooks: time inside the pruner's hooks (epoch end included)\n"
          "per step, as a share of dense's step; timed directly, so steadier than the ratio on a busy machine.")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20", help="a weightmom.models name")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "digits", "synthetic"),
                   help="cifar10 reads ../shared/data/cifar10-mini (synthetic 3x32x32 if missing)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="timed steps per round (one pruner epoch)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds; an untimed round 0 comes first")
    p.add_argument("--density", type=float, default=0.05)
    p.add_argument("--device", default="auto")
    # Two OpenMP threads on a shared 2-core machine stall at every barrier while another process runs
    # (steps up to 10x slower, at random); the pruners' small elementwise ops gain nothing from threads.
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads; 0 keeps torch's default")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    begin = time.perf_counter()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps_per_epoch = args.warmup + args.steps
    batches, source = make_batches(args, steps_per_epoch, device)
    if device.type == "cuda" and batches[0][0].dim() == 4:
        batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    print(f"torch {torch.__version__} | device {device} | threads {torch.get_num_threads()} | "
          f"{args.model} width {args.width} | {source}, batch {args.batch_size} | density {args.density} | "
          f"{args.rounds} rounds of {args.warmup} warm-up + {args.steps} timed steps", flush=True)
    runs = {v: build(v, args, batches[0][0], steps_per_epoch) for v in VARIANTS}
    for v in VARIANTS:  # round 0, untimed: warms caches and installs WeightMom's/GMP's first masks
        run_epoch(runs[v], batches, epoch=1, warmup=0)
    results: dict[str, list[Timing]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for v in VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]:
            results[v].append(run_epoch(runs[v], batches, epoch=r + 2, warmup=args.warmup))
        print(f"round {r + 1}/{args.rounds}: "
              + "  ".join(f"{v} {1e3 * results[v][-1].per_step(steps_per_epoch):.2f}" for v in VARIANTS)
              + " ms/step", flush=True)
    report(results, runs, steps_per_epoch)
    print(f"total {time.perf_counter() - begin:.0f} s", flush=True)


if __name__ == "__main__":
    main()
