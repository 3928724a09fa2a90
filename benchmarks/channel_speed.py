"""What removing whole channels buys: accuracy, size and ONNX Runtime latency of dense, weight- and channel-pruned nets.

Issue 36, Build item 7. On cifar10-mini, for each model (VGG-16 at width 0.5, ResNet-56 at width 1) and each seed,
it trains three variants through the library API with one config apart from the method:
  dense    method dense
  weight   gmp, pruner.granularity weight (unstructured zeros: the dense graph with zeros in it)
  channel  gmp, pruner.granularity channel (whole coupled channel groups; ResNet-56: inner channels only)
at the same `density` (fraction of prunable weights kept) for weight and channel. Then, in this one process:
  - slim every channel run (weightmom.slim) and check its logits against the masked model on the whole test split
    (to 1e-4 of the largest logit, as tests/test_channels.py) and the slim ONNX graph against it on 64 images;
  - time seed 0's dense, masked weight and slim channel graphs (model.onnx as the export builds it: normalisation
    inside, weightmom/export/graphs.py) on ONNX Runtime, 1 thread, batch 1 and 64, in interleaved rounds whose
    order rotates (export/latency.py's timer, one run per call), and give dense / variant for the minimum and the
    median over rounds.
It prints a table and writes JSON (after every run, so a stopped run keeps what it measured). It asserts nothing:
the acceptance targets of issue 36 are printed as met or not.

    python benchmarks/channel_speed.py --epochs vgg16=2,resnet56=1      # the recorded run (docs/export.md)
    python benchmarks/channel_speed.py --models vgg16 --density vgg16=0.2503 --variants channel   # exactly 50%
    python benchmarks/channel_speed.py --quick                          # digits, tiny widths: a smoke check

Epochs are what a shared 2-core CPU allows in about 35 minutes (ResNet-56 fewer than VGG-16: its latency is the
target, not its accuracy); accuracy after so few steps is near chance, so it takes a GPU or --epochs 30 to judge
the accuracy target. Density 0.24 keeps 48.9% of VGG-16's channels in counts such as 31, 63 and 125; 0.2503 keeps
exactly half (16 ... 128), which ONNX Runtime runs about twice as fast at batch 64 (docs/export.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sweeps.analysis.method_table import Paired
from weightmom import TrainConfig, train
from weightmom.data.datasets import load_dataset, normalize, split_validation
from weightmom.export import graphs
from weightmom.export.counting import count_macs, count_params
from weightmom.export.latency import time_interleaved
from weightmom.export.machine import cpu_info
from weightmom.export.runtimes import ort_runner
from weightmom.export.wrapper import Normalized
from weightmom.files import atomic_write
from weightmom.models import create_model
from weightmom.slim import slim_model

REPO = Path(__file__).resolve().parents[1]
MINI_CIFAR = REPO / ".." / "shared" / "data" / "cifar10-mini"
OUT = REPO / "benchmarks" / "data" / "channel_speed.json"


@dataclass(frozen=True)
class Spec:
    width: float
    density: float   # weight and channel alike: the fraction of prunable weights kept
    epochs: int


# VGG-16 at 0.24 keeps just under half of its channels (kept weights ~ kept_in x kept_out; 0.25 kept 50.1%).
# ResNet-56 prunes only each block's first conv, whose weights and the second conv's input slice are nearly all
# its weights: 0.5 keeps about 50% of the inner channels.
MODELS = {"vgg16": Spec(width=0.5, density=0.24, epochs=2), "resnet56": Spec(width=1.0, density=0.5, epochs=1)}
QUICK = {"vgg16": Spec(width=0.125, density=0.25, epochs=1), "resnet56": Spec(width=0.125, density=0.5, epochs=1)}
VARIANTS = ("dense", "weight", "channel")
ROWS = {"dense": "dense", "weight": "weight (masked)", "channel": "channel (slim)"}
TOLERANCE = 1e-4   # slim against masked logits, relative to the largest logit when that is above 1
# Pruning (weight and channel alike): gradual, by step, from the start to PRUNE_END of training, then fine-tuning; on
# runs of a few epochs a per-epoch schedule would prune in one or two shots and leave little time to recover.
PRUNE_END, PRUNE_EVERY = 0.6, 2   # fraction of the run's steps; steps between mask updates (and GMP's observations)
# Uniform: every layer (every channel group) keeps the same fraction, so "50% of channels" holds in every layer.
# The default, importance, kept 49% of VGG-16's channels at density 0.24 but mostly cut the wide late layers that
# hold the weights, not the early ones that do the work: 4.2x fewer params, only 1.45x fewer MACs.
ALLOCATION = "uniform"
TRAIN = {"batch_size": 128, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "lr_schedule": "cosine", "device": "cpu"}
# Acceptance (issue 36): (model, variant, what, bound)
SPEED_TARGETS = [("vgg16", "channel", "batch 1", 3.0), ("vgg16", "channel", "batch 64", 3.0),
                 ("resnet56", "channel", "batch 1", 1.3)]
ACCURACY_DROP = 0.02   # channel VGG-16 - dense, mean of paired seeds, at least -2 points


def config(args: argparse.Namespace, model: str, spec: Spec, variant: str, seed: int) -> TrainConfig:
    pruned = variant != "dense"
    steps = spec.epochs * math.ceil(args.train_images / TRAIN["batch_size"])
    pruner = {"granularity": variant, "allocation": ALLOCATION, "unit": "step",
              "prune_end": float(max(1, round(PRUNE_END * steps))), "prune_every": float(PRUNE_EVERY),
              "observe_every": PRUNE_EVERY}
    return TrainConfig(dataset=args.dataset, data_dir=args.data_dir, model=model, width=spec.width,
                       method="gmp" if pruned else "dense", density=spec.density if pruned else None,
                       pruner=pruner if pruned else {}, epochs=spec.epochs, seed=seed, **TRAIN)


def run_one(cfg: TrainConfig, save: Path | None = None) -> tuple[dict, nn.Module]:
    """Train one variant; with `save`, keep its checkpoint there (for `weightmom export ... --int8` afterwards)."""
    epochs: list[dict] = []
    start = time.perf_counter()
    result = train(cfg, report=epochs.append, progress=False)
    if save is not None:
        result.save(save)
    m = result.metrics
    row = {k: m.get(k) for k in ("test_accuracy", "val_accuracy", "density", "channel_density", "params", "macs")}
    row["seconds"] = time.perf_counter() - start
    row["channel_density_by_epoch"] = [e.get("channel_density") for e in epochs]
    return row, result.model.eval()


def slim_check(masked: nn.Module, images: torch.Tensor, pixels: np.ndarray, mean, std, shape) -> tuple[dict, nn.Module]:
    """The slim network against the masked one: logits on the whole test split (torch) and on 64 images (ONNX)."""
    slim = slim_model(masked, images[:1]).eval()
    with torch.no_grad():
        a = torch.cat([masked(x) for x in images.split(256)])
        b = torch.cat([slim(x) for x in images.split(256)])
    allowed = TOLERANCE * max(1.0, float(a.abs().max()))
    diff = float((a - b).abs().max())
    onnx = graphs.onnx_proto(Normalized(slim, mean, std).eval(), shape).SerializeToString()
    x = pixels[:64].astype(np.float32)
    with torch.no_grad():
        reference = Normalized(masked, mean, std).eval()(torch.from_numpy(x)).numpy()
    onnx_diff = float(np.abs(ort_runner(onnx, 1)(x) - reference).max())
    return {"max_abs_logit_diff": diff, "allowed": allowed, "top1_agreement": float((a.argmax(1) == b.argmax(1))
                                                                                    .float().mean()),
            "onnx_max_abs_logit_diff": onnx_diff, "passed": diff <= allowed and onnx_diff <= allowed,
            "params": count_params(slim)["params_total"], "macs": count_macs(slim, shape)["macs_total"]}, slim


def latency(models: dict[str, nn.Module], mean, std, shape, rounds: dict[int, int]) -> dict:
    """ORT 1 thread; every round times every row once (one call of the export's timer), the order rotating."""
    runners = {name: ort_runner(graphs.onnx_proto(Normalized(m, mean, std).eval(), shape).SerializeToString(), 1)
               for name, m in models.items()}
    rng, names, out = np.random.default_rng(0), list(runners), {}
    for batch, n in rounds.items():
        x = (rng.random((batch, *shape)) * 255).astype(np.float32)
        time_interleaved(runners, x, runs=1, warmup=3)   # warm-up, discarded
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(n):
            order = names[r % len(names):] + names[:r % len(names)]
            for name, t in time_interleaved({k: runners[k] for k in order}, x, runs=1, warmup=0).items():
                times[name].append(t["p50_ms"])
        ref = times["dense"]
        out[f"batch {batch}"] = {name: {
            "min_ms": min(t), "p50_ms": statistics.median(t), "rounds": len(t),
            "ratio_min": min(ref) / min(t), "ratio_p50": statistics.median(ref) / statistics.median(t),
            "times_ms": [round(v, 4) for v in t]} for name, t in times.items()}
    return out


def summarise(model: dict) -> None:
    runs = model["runs"]
    for variant in VARIANTS:
        acc = {r["seed"]: r["test_accuracy"] for r in runs if r["variant"] == variant}
        if not acc:
            continue
        s = model["summary"].setdefault(variant, {})
        s.update({"n": len(acc), "test_accuracy_mean": statistics.fmean(acc.values()),
                  "test_accuracy_std": statistics.stdev(acc.values()) if len(acc) > 1 else 0.0})
        last = [r for r in runs if r["variant"] == variant][-1]
        s.update({k: last[k] for k in ("density", "channel_density", "params", "macs")})
        dense = {r["seed"]: r["test_accuracy"] for r in runs if r["variant"] == "dense"}
        seeds = sorted(set(acc) & set(dense))
        if variant != "dense" and seeds:
            mean, low, high = Paired("dense", s["density"], (), [acc[k] - dense[k] for k in seeds]).interval()
            s["diff_vs_dense"] = {"mean": mean, "low": float(low), "high": float(high), "n": len(seeds)}


def targets(result: dict) -> list[dict]:
    found = []
    for model, variant, batch, bound in SPEED_TARGETS:
        lat = result["models"].get(model, {}).get("latency")
        if lat:
            row = lat[batch][ROWS[variant]]
            found.append({"target": f"{model} {variant} >= {bound}x faster than dense at {batch} (ORT, 1 thread)",
                          "ratio_min": row["ratio_min"], "ratio_p50": row["ratio_p50"],
                          "met": row["ratio_min"] >= bound and row["ratio_p50"] >= bound})
    vgg = result["models"].get("vgg16", {})
    if vgg.get("parity"):
        worst = max(p["max_abs_logit_diff"] / p["allowed"] for p in vgg["parity"])
        found.append({"target": "vgg16 slim logits match the masked model to 1e-4 (relative), every seed",
                      "worst_fraction_of_allowed": worst, "met": all(p["passed"] for p in vgg["parity"])})
    diff = vgg.get("summary", {}).get("channel", {}).get("diff_vs_dense")
    if diff:
        found.append({"target": ("vgg16 channel test accuracy within 2 points of dense (mean of paired seeds; "
                                    "it means something only once dense is well above chance)"),
                      **diff, "met": diff["mean"] >= -ACCURACY_DROP})
    return found


def table(result: dict) -> str:
    lines = ["| model | variant | epochs | test acc % mean ± std (n) | variant − dense, points [95% CI] | density | "
             "channel density | params | MACs | ORT b1 dense/x min, p50 | ORT b64 dense/x min, p50 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, model in result["models"].items():
        for variant, s in model["summary"].items():
            diff = s.get("diff_vs_dense")
            d = f"{diff['mean'] * 100:+.2f} [{diff['low'] * 100:+.2f}, {diff['high'] * 100:+.2f}]" if diff else "-"
            lat = model.get("latency") or {}
            b = [f"{lat[k][ROWS[variant]]['ratio_min']:.2f}x, {lat[k][ROWS[variant]]['ratio_p50']:.2f}x"
                 if k in lat else "-" for k in ("batch 1", "batch 64")]
            lines.append(f"| {name} x{model['width']:g} | {variant} | {model['epochs']} | "
                         f"{s['test_accuracy_mean'] * 100:.2f} ± {s['test_accuracy_std'] * 100:.2f} ({s['n']}) | "
                         f"{d} | {s['density']:.3f} | {s['channel_density']:.3f} | {s['params']:,} | "
                         f"{s['macs'] / 1e6:.2f}M | {b[0]} | {b[1]} |")
    return "\n".join(lines)


def per_model(text: str | None, specs: dict[str, Spec], key: str, kind: type) -> dict[str, Spec]:
    """`--epochs 3` (every model) or `--epochs vgg16=3,resnet56=1`; `--density` alike."""
    if not text:
        return specs
    given = dict(part.split("=") for part in text.split(",")) if "=" in text else dict.fromkeys(specs, text)
    return {m: replace(s, **{key: kind(given[m])}) if m in given else s for m, s in specs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", help="N (every model) or vgg16=N,resnet56=M (defaults: 2 and 1)")
    parser.add_argument("--density", help="D or vgg16=D,resnet56=E: weight and channel (defaults: 0.24 and 0.5)")
    parser.add_argument("--width", help="W or vgg16=W,resnet56=V (defaults: 0.5 and 1)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="a subset of dense,weight,channel (without dense, latency's dense row is a fresh model)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default="vgg16,resnet56")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--save-dir", dest="save_dir", type=Path,
                        help="keep every run's checkpoint here (NAME-VARIANT-seedK.pt), to export afterwards")
    parser.add_argument("--rounds", default="200,40", help="latency rounds at batch 1 and batch 64")
    parser.add_argument("--quick", action="store_true",
                        help="digits, width 0.125, 1 epoch, 2 seeds, few rounds: a smoke check")
    args = parser.parse_args(argv)
    args.dataset, args.data_dir = ("digits", None) if args.quick else ("cifar10", str(MINI_CIFAR.resolve()))
    specs = per_model(args.epochs, QUICK if args.quick else MODELS, "epochs", int)
    specs = per_model(args.density, specs, "density", float)
    specs = per_model(args.width, specs, "width", float)
    seeds = 2 if args.quick and args.seeds == 3 else args.seeds
    r1, r64 = (5, 3) if args.quick else map(int, args.rounds.split(","))
    out = args.out or (Path(tempfile.gettempdir()) / "channel_speed.quick.json" if args.quick else OUT)
    if args.save_dir:
        args.save_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)   # training: this machine's 2 cores; ONNX Runtime is timed at 1 thread

    data = split_validation(load_dataset(args.dataset, args.data_dir), TRAIN_VAL_FRACTION, 0)
    shape, mean, std = tuple(data.input_shape), data.mean.cpu(), data.std.cpu()
    images, pixels = normalize(data.test_images, data).cpu(), data.test_images.cpu().numpy()
    args.train_images = len(data.train_labels)   # what training steps through, the validation split held out
    result = {"command": " ".join(["python", "benchmarks/channel_speed.py", *(argv or sys.argv[1:])]),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": cpu_info(), "torch": torch.__version__, "onnxruntime": _ort_version(),
              "dataset": args.dataset, "data_dir": args.data_dir, "test_images": len(pixels),
              "train": {**TRAIN, "method": "gmp (dense for dense)", "val_fraction": TRAIN_VAL_FRACTION,
                        "train_images": args.train_images,
                        "pruner": {"allocation": ALLOCATION, "unit": "step", "prune_end_fraction": PRUNE_END,
                                   "prune_every": PRUNE_EVERY}},
              "latency_rounds": {"batch 1": r1, "batch 64": r64}, "models": {}, "complete": False}

    def save() -> None:
        result["targets"] = targets(result)
        atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1) + "\n"))

    for name in args.models.split(","):
        spec = specs[name]
        model = result["models"][name] = {"width": spec.width, "density": spec.density, "epochs": spec.epochs,
                                          "runs": [], "summary": {}, "parity": []}
        keep: dict[str, nn.Module] = {}
        for seed in range(seeds):   # seed-major, so load that drifts over the run hits every variant alike
            for variant in [v for v in VARIANTS if v in args.variants.split(",")]:
                keep_at = args.save_dir / f"{name}-{variant}-seed{seed}.pt" if args.save_dir else None
                row, net = run_one(config(args, name, spec, variant, seed), keep_at)
                row |= {"seed": seed, "variant": variant}
                if variant == "channel":
                    check, slim = slim_check(net, images, pixels, mean, std, shape)
                    model["parity"].append({"seed": seed, **check})
                    row["slim_counts_match_reported"] = (check["params"], check["macs"]) == (row["params"],
                                                                                           row["macs"])
                    if seed == 0:
                        keep[ROWS[variant]] = slim
                elif seed == 0:
                    keep[ROWS[variant]] = net
                model["runs"].append(row)
                print(f"{name} seed {seed} {variant}: test {row['test_accuracy']:.4f} density {row['density']:.3f} "
                      f"channel_density {row['channel_density']:.3f} params {row['params']:,} macs {row['macs']:,}"
                      f" ({row['seconds']:.0f} s)", flush=True)
                summarise(model)
                save()
        if ROWS["dense"] not in keep:   # not trained here: a fresh dense model, as the export's reference
            keep = {ROWS["dense"]: create_model(name, shape, data.num_classes, width=spec.width).eval(), **keep}
        start = time.perf_counter()
        model["latency"] = latency(keep, mean, std, shape, {1: r1, 64: r64})
        print(f"{name}: latency measured in {time.perf_counter() - start:.0f} s", flush=True)
        save()
    result["complete"] = True
    save()
    print(table(result))
    for t in result["targets"]:
        print(("MET     " if t["met"] else "NOT MET ") + t["target"])
    print(f"wrote {out}")
    return 0


TRAIN_VAL_FRACTION = 0.1   # TrainConfig's default: training holds out 10% of the training split, stratified


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    sys.exit(main())
