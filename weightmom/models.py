"""Model registry: a name -> constructor table in the style of timm's ``create_model``.

Every constructor takes ``(input_shape, num_classes, width)`` and returns a plain
``nn.Module`` whose prunable weights live in ordinary ``nn.Conv2d`` / ``nn.Linear``
layers, registered in the order they run.  ``input_shape`` is ``(channels, height,
width)``; every model works on both 8x8 one-channel digits and 32x32 RGB CIFAR images.
``width`` scales every hidden channel / unit count so benchmarks can run small copies
on a CPU; ``width=1.0`` is the standard architecture.

A user's own model is named by import path, ``package.module:factory``, and built in one of two
forms (`factory_form` says which): the project's, ``factory(input_shape, num_classes, **model_args)``,
or torchvision's and timm's, ``factory(num_classes=N, **model_args)``. It is checked like a
registered one.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from weightmom.errors import UsageError, require
from weightmom.imports import check_call, import_path_of, is_import_path, resolve, takes_keyword

Shape = tuple[int, int, int]


def _scaled(channels: int, width: float) -> int:
    """Scale a hidden size by ``width``, never below one unit."""
    return max(1, round(channels * width))


def _init_weights(model: nn.Module) -> nn.Module:
    """He (kaiming) normal init for convs, as in the ResNet/VGG papers; BN to identity.

    Linear layers keep PyTorch's default init. Everything draws from the global torch
    RNG, so construction is deterministic under ``torch.manual_seed``.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def _conv_bn_relu(in_ch: int, out_ch: int, stride: int = 1) -> list[nn.Module]:
    """3x3 'same' conv (no bias: BN follows) + BN + ReLU."""
    return [
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


class _PoolGuard:
    """Tracks the spatial size so 2x2 max-pools that would shrink a side below 1 are skipped.

    This is what lets the CIFAR VGG/AlexNet layouts (up to five pools) run on 8x8 digits.
    """

    def __init__(self, input_shape: Shape) -> None:
        self.height, self.width = input_shape[1], input_shape[2]

    def pool(self) -> list[nn.Module]:
        if self.height < 2 or self.width < 2:
            return []
        self.height, self.width = self.height // 2, self.width // 2
        return [nn.MaxPool2d(2, 2)]


# --------------------------------------------------------------------------- MLP / small CNN


def lenet300(input_shape: Shape, num_classes: int, width: float = 1.0) -> nn.Module:
    """LeNet-300-100 (LeCun et al. 1998), the classic fully connected pruning baseline."""
    in_features = math.prod(input_shape)
    h1, h2 = _scaled(300, width), _scaled(100, width)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, h1),
        nn.ReLU(inplace=True),
        nn.Linear(h1, h2),
        nn.ReLU(inplace=True),
        nn.Linear(h2, num_classes),
    )


def digits_cnn(input_shape: Shape, num_classes: int, width: float = 1.0) -> nn.Module:
    """Small three-conv CNN sized for 8x8 sklearn digits (~94k params at width 1)."""
    c1, c2, c3 = _scaled(32, width), _scaled(64, width), _scaled(128, width)
    guard = _PoolGuard(input_shape)
    model = nn.Sequential(
        *_conv_bn_relu(input_shape[0], c1),
        *_conv_bn_relu(c1, c2),
        *guard.pool(),
        *_conv_bn_relu(c2, c3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c3, num_classes),
    )
    return _init_weights(model)


# --------------------------------------------------------------------------- CIFAR ResNets


class _PadShortcut(nn.Module):
    """He et al. 2016 option-A shortcut: stride subsampling plus zero channel padding.

    Parameter-free: resnet20 has 269,722 params (option B's projections add 2,752).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_ch - in_ch
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (option-A) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        needs_shortcut = stride != 1 or in_ch != out_ch
        self.shortcut = (
            _PadShortcut(in_ch, out_ch, stride) if needs_shortcut else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand x4, with a projection shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _resnet(
    input_shape: Shape,
    num_classes: int,
    block: type[_BasicBlock | _Bottleneck],
    blocks_per_stage: Sequence[int],
    stage_channels: Sequence[int],
    width: float,
) -> nn.Module:
    """CIFAR-style ResNet: 3x3 stride-1 stem (no max-pool), stages, global average pool."""
    expansion = getattr(block, "expansion", 1)
    stem_ch = _scaled(stage_channels[0], width)
    layers: list[nn.Module] = _conv_bn_relu(input_shape[0], stem_ch)
    in_ch = stem_ch
    for stage, (n_blocks, channels) in enumerate(zip(blocks_per_stage, stage_channels)):
        planes = _scaled(channels, width)
        for i in range(n_blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            layers.append(block(in_ch, planes, stride))
            in_ch = planes * expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_ch, num_classes)]
    return _init_weights(nn.Sequential(*layers))


def resnet20(input_shape: Shape, num_classes: int, width: float = 1.0) -> nn.Module:
    """ResNet-20 for CIFAR (He et al. 2016, option A: 269,722 params for 10 classes).

    The often-quoted 272,474 is the option-B (1x1 projection shortcut) count.
    """
    return _resnet(
        input_shape, num_classes, _BasicBlock, [3, 3, 3], [16, 32, 64], width
    )


def resnet56(input_shape: Shape, num_classes: int, width: float = 1.0) -> nn.Module:
    """ResNet-56 for CIFAR (He et al. 2016, option A: 853,018 params for 10 classes)."""
    return _resnet(
        input_shape, num_classes, _BasicBlock, [9, 9, 9], [16, 32, 64], width
    )


def resnet50(input_shape: Shape, num_classes: int, width: float = 1.0) -> nn.Module:
    """Bottleneck ResNet-50 with a CIFAR stem (3x3 stride-1 conv, no max-pool; ~23.5M params)."""
    return _resnet(
        input_shape, num_classes, _Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], width
    )


# --------------------------------------------------------------------------- VGG / AlexNet

_VGG16_CFG: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
]  # fmt: skip


def vgg16(input_shape: Shape, num_classes: int, width: float = 1.0) -> nn.Module:
    """CIFAR VGG-16 with batch norm and a single Linear classifier (~14.7M params).

    Pools that would shrink a side below 1 are skipped (8x8 input keeps three of five);
    the final adaptive average pool is the identity on 32x32 and makes any size work.
    """
    guard = _PoolGuard(input_shape)
    layers: list[nn.Module] = []
    in_ch = input_shape[0]
    for item in _VGG16_CFG:
        if item == "M":
            layers += guard.pool()
        else:
            out_ch = _scaled(int(item), width)
            layers += _conv_bn_relu(in_ch, out_ch)
            in_ch = out_ch
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_ch, num_classes)]
    return _init_weights(nn.Sequential(*layers))


def alexnet(input_shape: Shape, num_classes: int, width: float = 1.0) -> nn.Module:
    """AlexNet, CIFAR-size variant (torchvision's expects 224x224 input).

    Five 3x3 convs (64, 192, 384, 256, 256) with max-pools after conv1, conv2 and conv5,
    adaptive average pool to 2x2 (so 8x8 input works too), then a dropout MLP classifier
    with 1024 hidden units.
    """
    c1, c2, c3, c4, c5 = (_scaled(c, width) for c in (64, 192, 384, 256, 256))
    hidden = _scaled(1024, width)
    guard = _PoolGuard(input_shape)

    def conv(in_ch: int, out_ch: int) -> list[nn.Module]:
        return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]

    model = nn.Sequential(
        *conv(input_shape[0], c1),
        *guard.pool(),
        *conv(c1, c2),
        *guard.pool(),
        *conv(c2, c3),
        *conv(c3, c4),
        *conv(c4, c5),
        *guard.pool(),
        nn.AdaptiveAvgPool2d((2, 2)),
        nn.Flatten(),
        nn.Dropout(),
        nn.Linear(c5 * 2 * 2, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )
    return _init_weights(model)


# --------------------------------------------------------------------------- registry

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet300": lenet300,
    "digits_cnn": digits_cnn,
    "resnet20": resnet20,
    "resnet56": resnet56,
    "vgg16": vgg16,
    "alexnet": alexnet,
    "resnet50": resnet50,
}


ModelFactory = Callable[[Shape, int], nn.Module]


def check_model_name(name: str) -> None:
    """A registered name or something shaped like an import path; nothing is imported."""
    require(name in MODELS or is_import_path(name),
            f"unknown model {name!r}; choose from: {', '.join(MODELS)}, or package.module:factory")


def model_factory(name: str, width: float = 1.0, model_args: dict | None = None,
                  partial: bool = False) -> ModelFactory:
    """Resolve `name` now and build later: a bad name fails before any data loads.

    `name` is a registered model or an import path `package.module:factory`, called in the form
    `factory_form` picks; `width` is for registered models only.
    `partial` accepts model_args that leave out required arguments (a search space sets some per trial).
    """
    model_args = dict(model_args or {})
    check_model_name(name)
    if not is_import_path(name):
        require(not model_args, f"model_args are for models given by import path; {name} takes only width")
        if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
            raise UsageError(f"width must be a positive number, got {width!r}")
        return lambda shape, classes: MODELS[name](shape, classes, float(width))
    require(width == 1.0, f"width applies to the built-in models; pass {name}'s own arguments as model_args")
    return factory_builder(resolve(name, "model"), name, model_args, partial)


def model_source(name: str, width: float, model_args: dict, model: object = None) -> tuple[str, ModelFactory]:
    """What a run records as its model, and how to build it: from the config's name, or from an
    nn.Module or factory handed to `train` (recorded by import path when it has one)."""
    if model is None:
        return name, model_factory(name, width, model_args)
    require(width == 1.0, "width applies to the built-in models, not to a model passed to train()")
    if isinstance(model, nn.Module):
        require(not model_args, "model_args need a factory; train() was given a built model")
        label = f"<{type(model).__name__} object>"
        return label, lambda shape, classes: checked_model(model, label)
    require(callable(model), f"model must be an nn.Module or a factory, got {type(model).__name__}")
    label = import_path_of(model) or f"<{getattr(model, '__qualname__', type(model).__name__)}>"
    return label, factory_builder(model, label, dict(model_args), partial=False)


# --------------------------------------------------------------------------- a user's factory

PROJECT_FORM = "factory(input_shape, num_classes, **model_args)"
KEYWORD_FORM = "factory(num_classes=N, **model_args)"


def factory_form(factory: Callable[..., nn.Module], model_args: Iterable[str]) -> str:
    """PROJECT_FORM when the factory's first two parameters are positional, required and not set by
    model_args (the project's own `build(input_shape, num_classes, ...)`); KEYWORD_FORM otherwise, as
    torchvision (`resnet18(*, weights=None, **kwargs)`) and timm (`create_model(model_name, ...)`, with
    model_name in model_args) write theirs. A factory whose signature cannot be read keeps PROJECT_FORM.
    """
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return PROJECT_FORM
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    leading = parameters[:2]
    fits = len(leading) == 2 and all(p.kind in positional and p.default is p.empty and p.name not in model_args
                                     for p in leading)
    return PROJECT_FORM if fits else KEYWORD_FORM


def factory_builder(factory: Callable[..., nn.Module], label: str, model_args: dict,
                    partial: bool = False) -> ModelFactory:
    """Check now that `factory` can be called with `model_args` in its form; build (checked) later.

    A `num_classes` in model_args is the data's to set: it is taken out, and at build time it must agree
    with the data's class count.
    """
    stated = model_args.pop("num_classes", None)
    form = factory_form(factory, model_args)
    if form == KEYWORD_FORM and not takes_keyword(factory, "num_classes"):
        raise UsageError(f"model {label!r} fits neither {PROJECT_FORM} (two required positional parameters first) "
                         f"nor {KEYWORD_FORM} (a num_classes keyword)")
    check_call(factory, f"model {label!r} cannot be called as {form}", 2 if form == PROJECT_FORM else 0,
               model_args if form == PROJECT_FORM else {"num_classes": None, **model_args}, partial)

    def build(shape: Shape, classes: int) -> nn.Module:
        require(stated is None or stated == classes,
                f"model {label!r}: model_args.num_classes={stated!r} contradicts the data's {classes} classes; "
                "leave it out (the data sets it)")
        try:
            built = (factory(shape, classes, **model_args) if form == PROJECT_FORM
                     else factory(num_classes=classes, **model_args))
        except UsageError:
            raise
        except Exception as err:  # a user's factory can raise anything (timm: an unknown model_name)
            raise UsageError(f"model {label!r} failed to build: {_error_line(err)}") from None
        return checked_model(built, label)

    return build


def _error_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def checked_model(model: object, name: str) -> nn.Module:
    """A user's model must be an nn.Module with something to prune."""
    if not isinstance(model, nn.Module):
        raise UsageError(f"model {name!r} returned an object of type {type(model).__name__}, not a torch.nn.Module")
    if not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()):
        raise UsageError(f"model {name!r} has no Conv2d or Linear layer: nothing to prune")
    return model


def check_forward(model: nn.Module, sample: torch.Tensor, num_classes: int, name: str) -> None:
    """One eval-mode forward pass: a model that cannot take the data, or gives the wrong number of
    logits, fails here in one line rather than in the first training step."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(sample[:1])
    except Exception as err:  # a user's forward can raise anything
        raise UsageError(f"model {name!r} fails on a {tuple(sample[:1].shape)} input: {_error_line(err)}") from None
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (1, num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UsageError(f"model {name!r} must return (batch, {num_classes}) logits for this data, got {got}")


def create_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0,
    model_args: dict | None = None,
) -> nn.Module:
    """Build model ``name`` (registered, or an import path); raises UsageError for bad arguments."""
    factory = model_factory(name, width, model_args)
    if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
        raise UsageError(
            f"input_shape must be (channels, height, width) of positive ints, got {input_shape!r}"
        )
    if num_classes < 1:
        raise UsageError(f"num_classes must be at least 1, got {num_classes!r}")
    shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    return factory(shape, int(num_classes))
