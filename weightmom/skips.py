"""Skip connections added to a built network (N2NSkip, method.md): found, attached, rebuilt.

A skip S_ij takes the output of prunable layer i and adds it, reshaped, to the
output of layer j, before j's normalisation and activation. Layers are joined
only when j's output really depends on i's (found on the autograd graph, so a
ResNet's projection shortcut is never fed from inside the branch it bypasses)
and when the shapes allow it: a 1x1 convolution between convolutions, with an
adaptive average pool when the spatial size shrinks; a Linear when the target
is a Linear, after a global average pool when the source is a convolution.

A skip is a child module of its target layer (so it is in `state_dict`,
`parameters()` and the optimizer, without touching `nn.Sequential`'s forward)
and runs from forward hooks: layer i's hook computes S_ij(output of i), layer
j's hook adds it. The hooks are bound methods, so `copy.deepcopy` and pickling
carry them along. `SkipSpec`s describe the skips completely; a checkpoint
stores them and `attach_skips` rebuilds the same modules under the same names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CONTAINER = "n2nskip"   # the child name, on each target layer, of the ModuleList holding its incoming skips


@dataclass(frozen=True)
class SkipSpec:
    """Everything needed to rebuild one skip: which layers it joins and how it reshapes."""

    source: str                       # module name of layer i
    target: str                       # module name of layer j
    in_size: int                      # channels (conv) or features (Linear) of layer i's output
    out_size: int                     # the same of layer j's output
    linear: bool                      # a Linear projection (target is a Linear), else a 1x1 convolution
    pool: tuple[int, int] | None      # adaptive average pool to this size first; (1, 1) before a Linear

    @property
    def size(self) -> int:
        """Weights in the dense projection."""
        return self.in_size * self.out_size

    def to_dict(self) -> dict:
        return {**asdict(self), "pool": None if self.pool is None else list(self.pool)}

    @classmethod
    def from_dict(cls, raw: dict) -> SkipSpec:
        pool = raw["pool"]
        return cls(raw["source"], raw["target"], int(raw["in_size"]), int(raw["out_size"]), bool(raw["linear"]),
                   None if pool is None else (int(pool[0]), int(pool[1])))


class SkipConnection(nn.Module):
    """S_ij: pool if needed, then a bias-free 1x1 conv or Linear whose weight is pruned like any layer's."""

    def __init__(self, spec: SkipSpec) -> None:
        super().__init__()
        self.spec = spec
        self.proj: nn.Module = (nn.Linear(spec.in_size, spec.out_size, bias=False) if spec.linear
                                else nn.Conv2d(spec.in_size, spec.out_size, 1, bias=False))
        self._pending: torch.Tensor | None = None

    def forward(self, source_output: torch.Tensor) -> torch.Tensor:
        x = source_output
        if self.spec.pool is not None:
            x = F.adaptive_avg_pool2d(x, self.spec.pool)
        if self.spec.linear and x.dim() > 2:
            x = x.flatten(1)
        return self.proj(x)

    def capture(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        """Forward hook on layer i: compute the skip from a copy, as an in-place activation may change `output`
        (and autograd refuses a saved input changed in place)."""
        self._pending = self(output.clone())

    def inject(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        """Forward hook on layer j: its output plus the skip."""
        pending, self._pending = self._pending, None
        return None if pending is None else output + pending


def skip_connections(model: nn.Module) -> list[SkipConnection]:
    return [m for m in model.modules() if isinstance(m, SkipConnection)]


def skip_specs(model: nn.Module) -> list[SkipSpec]:
    """The specs of the skips attached to `model`, in an order `attach_skips` rebuilds identically."""
    return [skip.spec for skip in skip_connections(model)]


# -- finding the pairs that can be joined ----------------------------------------------------------


@dataclass
class _Traced:
    name: str
    shape: tuple[int, ...]   # output shape without the batch dimension
    node: Any                # the autograd node that produced the output


def _trace(model: nn.Module, sample_input: torch.Tensor) -> list[_Traced]:
    """Conv2d/Linear layers in forward order, with their output shapes and autograd nodes (first call only)."""
    names = {module: name for name, module in model.named_modules()}
    traced: dict[nn.Module, _Traced] = {}

    def record(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        if module not in traced:
            traced[module] = _Traced(names[module], tuple(output.shape[1:]), output.grad_fn)

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()   # batch norm with one sample would fail in training mode, and no statistics may move
    try:
        with torch.enable_grad():
            model(sample_input[:1].detach().clone().requires_grad_(True))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return list(traced.values())


def _ancestors(node: Any, layer_of: dict[Any, int]) -> set[int]:
    """Indices of the layers whose outputs `node` is computed from (a walk of the autograd graph)."""
    found: set[int] = set()
    seen: set[Any] = set()
    stack = [node]
    while stack:
        for parent, _ in stack.pop().next_functions:
            if parent is None or parent in seen:
                continue
            seen.add(parent)
            if parent in layer_of:
                found.add(layer_of[parent])
            stack.append(parent)
    return found


def _join(source: _Traced, target: _Traced) -> SkipSpec | None:
    """The skip from `source` to `target`, or None when the shapes cannot be joined by method.md's rule."""
    s, t = source.shape, target.shape
    if len(t) == 1 and len(s) in (1, 3):   # into a Linear: from a Linear, or from a conv after a global pool
        return SkipSpec(source.name, target.name, s[0], t[0], linear=True, pool=None if len(s) == 1 else (1, 1))
    if len(t) == 3 and len(s) == 3 and t[1] <= s[1] and t[2] <= s[2]:
        pool = None if t[1:] == s[1:] else (t[1], t[2])
        return SkipSpec(source.name, target.name, s[0], t[0], linear=False, pool=pool)
    return None   # spatial size grows, a Linear feeds a conv, or outputs of another rank


def find_skips(model: nn.Module, sample_input: torch.Tensor, hops: Iterable[int]) -> list[SkipSpec]:
    """Every pair (i, j) of prunable layers in forward order with j - i in `hops` that can be joined."""
    if skip_connections(model):
        raise RuntimeError("this model already has skip connections attached")
    layers = _trace(model, sample_input)
    layer_of = {layer.node: k for k, layer in enumerate(layers) if layer.node is not None}
    specs = []
    for j, target in enumerate(layers):
        ancestors = _ancestors(target.node, layer_of) if target.node is not None else set()
        for hop in sorted(set(hops)):
            i = j - hop
            if i >= 0 and i in ancestors and (spec := _join(layers[i], target)) is not None:
                specs.append(spec)
    return specs


def attach_skips(model: nn.Module, specs: Sequence[SkipSpec]) -> list[SkipConnection]:
    """Build the skips of `specs` into `model` (on its layers' device and dtype) and hook them in."""
    modules = dict(model.named_modules())
    skips = []
    for spec in specs:
        target = modules[spec.target]
        if CONTAINER not in target._modules:
            target.add_module(CONTAINER, nn.ModuleList())
        skip = SkipConnection(spec).to(device=target.weight.device, dtype=target.weight.dtype)
        target.get_submodule(CONTAINER).append(skip)
        skips.append(skip)
    # All additions first: a layer that is both a target and a source passes on its output with its skips added.
    for skip in skips:
        modules[skip.spec.target].register_forward_hook(skip.inject)
    for skip in skips:
        modules[skip.spec.source].register_forward_hook(skip.capture)
    return skips
