"""Time per training step of each pruning method, as a ratio to dense training.

WeightMom claims its pruning costs next to nothing: one |w| observation and one
mask update per epoch, and a mask multiply on the gradients every step. This
script trains the same model on the same pre-generated batches, with the same
seed and SGD, dense, with WeightMom, GMP and GSM, and with a fixed magnitude
mask applied through torch.nn.utils.prune hooks (the forward pass computes
weight_orig * mask, as torch's pruning users do), and prints each one's median
ms/step and its ratio to dense. Targets: WeightMom <= 1.05x dense and no slower
than torch prune masking; GSM <= 1.5x. It measures; it asserts nothing.

One round is one pruner epoch of warm-up + timed steps: WeightMom/GMP observe
|w| on its last step and re-mask at every round's end (prune_start 0,
prune_end the last round, so more often than real training does). The
on_epoch_end time is spread over the round's steps, as an epoch of that length
would carry it; its own column lets you re-amortise for a real epoch (391 steps
for CIFAR-10 at batch 128). GSM runs with the optimizer it asks for, as in
train(). An untimed round 0 activates the masks first; variants then run
interleaved in a rotating order, to spread a shared machine's noise over all.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from weightmom.config import TrainConfig
from weightmom.data import iterate_batches, load_dataset
from weightmom.models import create_model
from weightmom.pruning import Pruner, TrainingContext, create_pruner, pruner_config
from weightmom.training import lr_multiplier, make_optimizer, resolve_device

VARIANTS = ("dense", "weightmom", "gmp", "gsm", "torch-prune")
TARGETS = {"weightmom": "<=1.05x, <=torch-prune", "gsm": "<=1.50x"}
MINI_CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-mini"
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Run:
    """One variant's model, optimizer and pruner; they persist across rounds like one training run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    pruner: Pruner
    masks: list[torch.Tensor]  # what decides the density column


def make_batches(args: argparse.Namespace, n: int, device: torch.device) -> tuple[list[Batch], str]:
    """`n` training batches on the device, made once: every variant sees the same ones."""
    gen = torch.Generator().manual_seed(args.seed)
    if args.dataset == "synthetic" or (args.dataset == "cifar10" and not (MINI_CIFAR / "cifar-10-batches-py").is_dir()):
        return [(torch.randn(args.batch_size, 3, 32, 32, generator=gen).to(device),
                 torch.randint(0, 10, (args.batch_size,), generator=gen).to(device)) for _ in range(n)], "synthetic"
    data = load_dataset(args.dataset, data_dir=str(MINI_CIFAR) if args.dataset == "cifar10" else None, device=device)
    batches: list[Batch] = []
    while len(batches) < n:  # a small dataset is cycled, each pass reshuffled
        batches += iterate_batches(data, "train", args.batch_size, shuffle=True, generator=gen, drop_last=True)
    return batches[:n], f"{args.dataset} ({data.train_labels.numel()} train images)"


def build(variant: str, args: argparse.Namespace, sample: torch.Tensor, steps_per_epoch: int) -> Run:
    """Same seed, same model and SGD for every variant; only the pruning differs."""
    torch.manual_seed(args.seed)
    model = create_model(args.model, tuple(sample.shape[1:]), 10, width=args.width).to(sample.device)
    if sample.device.type == "cuda" and sample.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    epochs = args.rounds + 1
    method = "dense" if variant == "torch-prune" else variant
    options = {"prune_start": 0, "prune_end": epochs} if method in ("weightmom", "gmp") else {}
    pruner = create_pruner(method, pruner_config(method, 1.0 if method == "dense" else args.density, options))
    config = TrainConfig(model=args.model, width=args.width, batch_size=args.batch_size, epochs=epochs)
    masks = []
    if variant == "torch-prune":  # a fixed per-layer magnitude mask, applied by torch's forward pre-hooks
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                w = module.weight.detach().abs().flatten()
                mask = torch.zeros_like(w)
                mask[w.topk(max(1, round(args.density * w.numel()))).indices] = 1
                masks.append(prune.custom_from_mask(module, "weight", mask.view_as(module.weight)).weight_mask)
    optimizer = make_optimizer(model, config, pruner.optimizer_overrides())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(config, steps_per_epoch))
    context = TrainingContext(epochs=epochs, steps_per_epoch=steps_per_epoch, loss_fn=nn.CrossEntropyLoss(),
                              sample_input=sample[:1], batches=lambda: iter([]), seed=args.seed)
    pruner.attach(model, optimizer, context)
    return Run(model, optimizer, scheduler, pruner, masks or [layer.mask for layer in pruner.layers])


def run_epoch(run: Run, batches: list[Batch], epoch: int, warmup: int) -> tuple[float, float]:
    """One epoch of training.py's inner loop, then on_epoch_end (WeightMom's re-masking).

    Returns seconds per step over the steps after `warmup`, and seconds spent in on_epoch_end.
    """
    device, loss_fn = batches[0][0].device, nn.CrossEntropyLoss()
    run.model.train()
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_fn(run.model(x), y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.pruner.before_step()
        run.optimizer.step()
        run.pruner.after_step()
        run.scheduler.step()
    sync(device)
    end = time.perf_counter()
    run.pruner.on_epoch_end(epoch)
    sync(device)
    return (end - start) / (len(batches) - warmup), time.perf_counter() - end


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def density(run: Run) -> float:
    return sum(float(m.count_nonzero()) for m in run.masks) / sum(m.numel() for m in run.masks)


def report(times: dict[str, list[float]], ends: dict[str, list[float]], runs: dict[str, Run]) -> None:
    """The table: median ms/step, its spread over rounds, ratio to dense, and whether the target is met."""
    median = {v: statistics.median(t) for v, t in times.items()}
    checks = {"weightmom": median["weightmom"] <= min(1.05 * median["dense"], median["torch-prune"]),
              "gsm": median["gsm"] <= 1.5 * median["dense"]}
    print(f"\n{'variant':<12} | {'ms/step':>8} | {'spread':>6} | {'ratio':>5} | {'epoch-end ms':>12} | "
          f"{'density':>7} | {'target':<22} | ok?")
    print("-" * 100)
    for v in VARIANTS:
        ok = ("yes" if checks[v] else "NO") if v in checks else "-"
        spread = (max(times[v]) - min(times[v])) / median[v]
        print(f"{v:<12} | {1e3 * median[v]:8.2f} | {spread:6.0%} | {median[v] / median['dense']:5.2f} | "
              f"{1e3 * statistics.median(ends[v]):12.2f} | {density(runs[v]):7.3f} | {TARGETS.get(v, '-'):<22} | {ok}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20", help="a weightmom.models name")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "digits", "synthetic"),
                   help="cifar10 reads ../shared/data/cifar10-mini (synthetic if missing)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="timed steps per round (one pruner epoch)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds; an untimed round 0 comes first")
    p.add_argument("--density", type=float, default=0.05)
    p.add_argument("--device", default="auto")
    # Two OpenMP threads on a shared 2-core machine stall at every barrier while another process runs
    # (steps 10x slower, at random); the pruners' small elementwise ops gain nothing from threads.
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
    for v in VARIANTS:  # round 0, untimed: warms caches and activates WeightMom's/GMP's first masks
        run_epoch(runs[v], batches, epoch=1, warmup=0)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}  # seconds per step, epoch end amortised
    ends: dict[str, list[float]] = {v: [] for v in VARIANTS}   # seconds in on_epoch_end
    for r in range(args.rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for v in order:
            step, end = run_epoch(runs[v], batches, epoch=r + 2, warmup=args.warmup)
            times[v].append(step + end / steps_per_epoch)
            ends[v].append(end)
        print(f"round {r + 1}/{args.rounds}: " + "  ".join(f"{v} {1e3 * times[v][-1]:.2f}" for v in VARIANTS)
              + " ms/step", flush=True)
    report(times, ends, runs)
    print(f"(spread: (max - min) / median over rounds)\ntotal {time.perf_counter() - begin:.0f} s", flush=True)


if __name__ == "__main__":
    main()
