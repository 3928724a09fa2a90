"""The library's commands, `train` and `evaluate`, and the error handling every `weightmom` command shares.

The `weightmom` console script (weightmom_sweeps.cli) adds the sweep commands as an extension; this
module knows nothing of them. Every user error ends as one line on stderr and exit code 2; nothing is
written unless the run succeeds, and then atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from weightmom.errors import TrainingDiverged, UsageError
from weightmom.files import atomic_write, check_writable

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag gives one line, not the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _json_safe(value):
    """JSON has no Infinity or NaN; write them as strings rather than emit invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: str | Path, payload: dict) -> None:
    text = json.dumps(_json_safe(payload), indent=2, allow_nan=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def add_train_parser(commands) -> None:
    p = commands.add_parser("train", help="train one model, optionally pruned")
    p.add_argument("--config", help="YAML file of config keys")
    p.add_argument("--preset", default="default", help="default | paper (Adam, lr 0.05 halved every 30 epochs)")
    p.add_argument("--dataset", help="digits | cifar10 | cifar100 | imagefolder | package.module:loader")
    p.add_argument("--data-dir", dest="data_dir",
                   help="folder in the CIFAR python layout, or an ImageFolder root (train/ and test/)")
    p.add_argument("--image-size", dest="image_size", type=int, help="imagefolder: resize images to this square")
    p.add_argument("--model", help="a built-in name or package.module:factory (the current folder is searched "
                                   "first); its arguments: --set model_args.NAME=VALUE")
    p.add_argument("--width", type=float)
    p.add_argument("--method", help="dense | weightmom | gmp | snip | gsm | random | n2nskip")
    p.add_argument("--density", type=float, help="fraction of prunable weights kept, in (0, 1]")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set pruner.window=5 (repeatable)")
    p.add_argument("--json", help="write the final metrics here")
    p.add_argument("--save", help="write the (sparse) checkpoint here")
    p.add_argument("--save-masks", dest="save_masks", help="write {name: bool mask} for torch.nn.utils.prune")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    from weightmom.config import resolve_config

    flags = {k: getattr(args, k) for k in ("dataset", "data_dir", "image_size", "model", "width", "method",
                                            "density", "epochs", "lr", "batch_size", "seed", "device")}
    config = resolve_config(args.preset, args.config, flags, args.assignments)   # torch is not loaded yet
    for path, flag in ((args.json, "--json"), (args.save, "--save"), (args.save_masks, "--save-masks")):
        check_writable(path, flag)
    from weightmom.checkpoint import atomic_save
    from weightmom.training import train

    result = train(config, progress=False if args.quiet else None)
    if args.save:
        result.save(args.save)
    if args.save_masks:
        atomic_save({k: v.cpu() for k, v in result.pruner.masks().items()}, args.save_masks)
    if args.json:
        write_json(args.json, result.metrics)
    print(summary_line(result.metrics))
    return 0


def summary_line(metrics: dict) -> str:
    val = f"val_accuracy={metrics['val_accuracy']:.4f} " if "val_accuracy" in metrics else ""
    return (f"{val}test_accuracy={metrics['test_accuracy']:.4f} density={metrics['density']:.4f} "
            f"compression={metrics['compression_ratio']:.1f}x classes={metrics['num_classes']}")


def add_evaluate_parser(commands) -> None:
    p = commands.add_parser("evaluate", help="reload a checkpoint and measure its test accuracy")
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", dest="data_dir", help="override the dataset folder stored in the checkpoint")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", help="write the metrics here")


def run_evaluate(args: argparse.Namespace) -> int:
    from weightmom.checkpoint import load_checkpoint
    from weightmom.data.datasets import split_validation
    from weightmom.data.sources import data_loader
    from weightmom.errors import require
    from weightmom.metrics import sparsity_report
    from weightmom.training import evaluate, resolve_device

    check_writable(args.json, "--json")
    checkpoint = load_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    config = checkpoint.config
    model = checkpoint.build_model()  # needs no data: a model that cannot be rebuilt fails before it loads
    load = data_loader(config["dataset"], args.data_dir or config["data_dir"], config.get("image_size", 32))
    dataset = load().to(device)
    # The run's split decides the normalisation statistics, so the same split gives the same inputs.
    dataset = split_validation(dataset, config.get("val_fraction", 0.0), config.get("split_seed", 0))
    require(checkpoint.class_names is None or dataset.class_names in (None, checkpoint.class_names),
            f"the data's classes {list(dataset.class_names or [])} are not the checkpoint's "
            f"{list(checkpoint.class_names or [])}")
    import torch

    from weightmom.slim import channel_groups, slim_model

    groups = channel_groups(model, torch.zeros(1, *checkpoint.input_shape))   # measured on the slim network
    slim = slim_model(model, torch.zeros(1, *checkpoint.input_shape), groups).to(device)
    test_loss, test_accuracy = evaluate(slim, dataset)
    metrics = {"test_accuracy": test_accuracy, "test_loss": test_loss, **sparsity_report(model), **groups.slim_size(),
               "model": config["model"], "dataset": config["dataset"], "method": config["method"],
               "num_classes": checkpoint.num_classes}
    if args.json:
        write_json(args.json, metrics)
    print(summary_line(metrics))
    return 0


class Extension(Protocol):
    """A package's commands: `add_parsers(subparsers)` registers them, COMMANDS runs them by name."""

    COMMANDS: dict[str, Callable[[argparse.Namespace], int]]

    def add_parsers(self, commands) -> None: ...


def add_parsers(commands) -> None:
    add_train_parser(commands)
    add_evaluate_parser(commands)


COMMANDS = {"train": run_train, "evaluate": run_evaluate}


def build_parser(extensions: Iterable[Extension] = ()) -> argparse.ArgumentParser:
    parser = _Parser(prog="weightmom", description="Momentum-based weight pruning, and sweeps over it.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_parsers(commands)
    for extension in extensions:
        extension.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None, extensions: Iterable[Extension] = ()) -> int:
    """Parse and run one command; `extensions` add commands (the sweep package's, for the console script)."""
    extensions = list(extensions)
    commands = {k: v for table in [COMMANDS, *(e.COMMANDS for e in extensions)] for k, v in table.items()}
    try:
        args = build_parser(extensions).parse_args(argv)
        return commands[args.command](args)
    except UsageError as err:
        print(f"weightmom: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("weightmom: interrupted", file=sys.stderr)
        return 130
    except TrainingDiverged as err:
        print(f"weightmom: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        if not _stdout_closed():   # a pipe of Ray's or a socket's: a real failure
            raise
        # `weightmom pareto DIR | head`: the reader has gone, which is no error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # so the exit flush has nowhere to fail
        return 0


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports an error on its write end)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):   # no real file descriptor (a test's captured stdout)
        return False
