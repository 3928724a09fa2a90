"""Coupled channel groups: the unit that `pruner.granularity: channel` keeps or removes (docs/method.md).

Torch-Pruning's DependencyGraph finds which tensors share a channel: a layer's output rows and bias, its
BatchNorm, every consumer's input slice, and the channels a residual add joins. Each group it proposes is
then *probed* on a copy of the model: removing one channel must give the logits of zeroing it in every
tensor of the group. A group that fails is left out. Torch-Pruning 1.6 mis-traces the option-A
(zero-padding) shortcut of weightmom.models' ResNets, so there the probe leaves out the stem, each block's
second conv and everything a residual add joins: such models are pruned on their inner channels only.
The classifier's output is never in a group. Nothing here changes the model it is given.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

PROBE_TOLERANCE = 1e-4   # max |logit difference|, relative to the largest logit (at least 1)


@dataclass(frozen=True)
class Slice:
    """Where a group's channels sit in one parameter: positions `index` along `dim`, position i carrying
    group channel `channel[i]` (a Linear after a Flatten reads each channel at several positions)."""

    name: str             # the parameter's name in the model
    dim: int
    index: torch.Tensor   # long, on the CPU
    channel: torch.Tensor
    reads: bool           # a consumer's input slice (False: the rows, bias or BatchNorm that emit the channel)


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that can only be removed together: the output channels of `root` and all that they touch."""

    root: str             # the module whose output channels name the group
    size: int             # channels
    slices: tuple[Slice, ...]


class ChannelGroups:
    """The verified channel groups of one model, and what they cost in weights, parameters and MACs.

    `prunable` names the prunable weights (Conv2d/Linear, in forward order): the size `density` is
    measured against. `error` says why a model has no groups (its trace failed, or every group failed
    the probe); weight granularity then reports the dense network's params and MACs.
    """

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], prunable: Sequence[str],
                 positions: dict[str, int], error: str | None = None) -> None:
        self.groups = groups
        self.prunable = list(prunable)
        self.error = error
        self.params = dict(model.named_parameters())
        self.positions = positions    # output positions per image per channel, for each Conv2d/Linear weight
        self.total_weights = sum(self.params[n].numel() for n in self.prunable)
        self.total_channels = sum(g.size for g in groups)
        # Positions each group removes from (parameter, dim) per channel it removes.
        self._per_channel = [{(s.name, s.dim): s.index.numel() // g.size for s in g.slices} for g in groups]

    # -- masks and scores -------------------------------------------------------------------------------
    def masks(self, alive: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """0/1 masks (in each parameter's dtype) of every parameter a group touches, given each group's alive
        channels: zero at every position of a dead channel, along rows and input slices alike."""
        masks: dict[str, torch.Tensor] = {}
        for group, keep in zip(self.groups, alive):
            dead = ~keep.bool().cpu()
            for s in group.slices:
                param = self.params[s.name]
                mask = masks.setdefault(s.name, torch.ones_like(param))
                drop = s.index[dead[s.channel]].to(param.device)
                mask.index_fill_(s.dim, drop, 0)
        return masks

    def scores(self, per_weight: dict[str, torch.Tensor], reduce: str) -> list[torch.Tensor]:
        """One score per channel of each group, from per-weight scores over all its prunable weights
        (rows and input slices): their sum, or (`l2`) the square root of the sum of their squares."""
        out = []
        for group in self.groups:
            total = torch.zeros(group.size, dtype=torch.float64)
            for s in group.slices:
                if s.name not in per_weight:
                    continue
                values = per_weight[s.name].detach().index_select(s.dim, s.index.to(per_weight[s.name].device))
                values = values.double().pow(2) if reduce == "l2" else values.double()
                per_position = values.movedim(s.dim, 0).reshape(s.index.numel(), -1).sum(1).cpu()
                total.index_add_(0, s.channel, per_position)
            out.append((total.sqrt() if reduce == "l2" else total).float())
        return out

    def weight_sizes(self) -> list[int]:
        """Prunable weights each group touches: its size for the allocation rules."""
        return [sum(s.index.numel() * (self.params[s.name].numel() // self.params[s.name].shape[s.dim])
                    for s in g.slices if s.name in self.prunable) for g in self.groups]

    def root_shapes(self) -> list[torch.Size]:
        """The weight shape of each group's root layer (what `erk` allocation reads)."""
        return [self.params[f"{g.root}.weight"].shape for g in self.groups]

    def touches(self, name: str, dim: int) -> list[bool]:
        """Whether each group has positions along `dim` of parameter `name`."""
        return [(name, dim) in per for per in self._per_channel]

    # -- counting --------------------------------------------------------------------------------------
    def _shapes(self, kept: Sequence[int]) -> dict[str, list[int]]:
        """Each touched parameter's shape once every group keeps only `kept[g]` channels."""
        shapes: dict[str, list[int]] = {}
        for per, group, keep in zip(self._per_channel, self.groups, kept):
            for (name, dim), count in per.items():
                shape = shapes.setdefault(name, list(self.params[name].shape))
                shape[dim] -= (group.size - keep) * count
        return shapes

    def kept_weights(self, kept: Sequence[int]) -> int:
        """Prunable weights left when group g keeps `kept[g]` channels (every weight alive otherwise)."""
        shapes = self._shapes(kept)
        return sum(math.prod(shapes[n]) if n in shapes else self.params[n].numel() for n in self.prunable)

    def keep_for_density(self, density: float, keep_at: Callable[[float], list[int]],
                         alive: Sequence[torch.Tensor]) -> list[int]:
        """Channel keep counts whose network keeps at most `density` of the prunable weights, as close as
        the channels allow: the largest s in [0, 1] with kept_weights(keep_at(s)) <= density * total,
        found by bisection (keep_at is monotone in s). Dead channels stay dead. When even the fewest
        channels keep more (every group keeps one), the fewest are returned. keep_at may raise ValueError
        for an s it cannot meet (layers held dense exceed it)."""
        target = density * self.total_weights
        alive_counts = [int(a.sum()) for a in alive]

        def plan(s: float) -> list[int] | None:
            try:
                return [min(k, n) for k, n in zip(keep_at(s), alive_counts)]
            except ValueError:
                return None

        full = plan(1.0)
        if full is None or self.kept_weights(full) <= target:
            return full or alive_counts
        lo_plan, hi_plan, lo, hi = None, full, 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            candidate = plan(mid)
            if candidate is None or self.kept_weights(candidate) <= target:
                lo, lo_plan = mid, candidate if candidate is not None else lo_plan
            else:
                hi, hi_plan = mid, candidate
        return lo_plan if lo_plan is not None else hi_plan

    def removable(self) -> list[torch.Tensor]:
        """Per group, the channels removable exactly from the weights as they are: those no consumer reads
        (every input slice exactly zero). A group with no consumer's slice (none here) uses its rows.
        One channel of each group always stays."""
        out = []
        for group in self.groups:
            read_any = torch.zeros(group.size, dtype=torch.bool)
            emit_any = torch.zeros(group.size, dtype=torch.bool)
            has_reader = any(s.reads for s in group.slices)
            for s in group.slices:
                param = self.params[s.name].detach()
                nonzero = param.index_select(s.dim, s.index.to(param.device)) != 0
                per_position = nonzero.movedim(s.dim, 0).reshape(s.index.numel(), -1).any(1).cpu()
                hit = torch.zeros(group.size, dtype=torch.long).index_add_(0, s.channel, per_position.long()) > 0
                if s.reads:
                    read_any |= hit
                else:
                    emit_any |= hit
            dead = ~read_any if has_reader else ~emit_any
            if bool(dead.all()):
                dead[0] = False
            out.append(dead)
        return out

    def slim_size(self) -> dict[str, float]:
        """`params` and `macs` (Conv2d and Linear multiply-adds per image) of the network as it would be
        slimmed, with every removable channel gone, and `channel_density`: the channels kept, over all
        channels of the groups (1.0 when the model has no groups)."""
        dead = self.removable()
        kept = [g.size - int(d.sum()) for g, d in zip(self.groups, dead)]
        shapes = self._shapes(kept)
        params = sum(math.prod(shapes[n]) if n in shapes else p.numel() for n, p in self.params.items())
        macs = sum((math.prod(shapes[n]) if n in shapes else self.params[n].numel()) * positions
                   for n, positions in self.positions.items())
        channels = sum(kept) / self.total_channels if self.total_channels else 1.0
        return {"params": params, "macs": macs, "channel_density": channels}


# -- finding the groups ----------------------------------------------------------------------------------


def probe_input(sample_input: torch.Tensor) -> torch.Tensor:
    """A fixed random image of the sample's shape: the same groups for a run, its checkpoint and its export."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(tuple(sample_input[:1].shape), generator=generator).to(sample_input.device)


def find_channel_groups(model: nn.Module, sample_input: torch.Tensor, prunable: Sequence[str]) -> ChannelGroups:
    """The channel groups of `model` that pass the probe; `prunable` are its Conv2d/Linear weight names in
    forward order, the last one the classifier. Never raises: a model that cannot be grouped comes back with
    no groups and `error` saying why."""
    x = probe_input(sample_input)
    positions = _output_positions(model, x)
    try:
        candidates = _candidate_groups(model, x, prunable[-1].rpartition(".")[0] if prunable else None)
        groups = _verified(model, candidates, x)
        error = None if groups else "no channel group can be removed exactly"
    except Exception as err:  # Torch-Pruning's trace can fail in many ways on a user's model
        groups, error = [], f"Torch-Pruning cannot trace it ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
    return ChannelGroups(model, groups, prunable, positions, error)


def _eval_copy(model: nn.Module) -> nn.Module:
    """A copy in eval mode: tracing and probing must not move the real model's BatchNorm statistics."""
    return copy.deepcopy(model).eval()


def _output_positions(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Output elements per image per output channel of each Conv2d/Linear weight (H*W for a conv); one
    forward pass in eval mode, which moves no BatchNorm statistics."""
    found: dict[str, int] = {}
    names = {m: n for n, m in model.named_modules()}

    def record(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        channels = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
        found[f"{names[module]}.weight"] = output[:1].numel() // channels

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return found


def dependency_graph(model: nn.Module, x: torch.Tensor):
    """Torch-Pruning's DependencyGraph of `model` (traced in eval mode, with gradients on, as it needs)."""
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False)
    finally:
        model.train(was_training)


def _candidate_groups(model: nn.Module, x: torch.Tensor, classifier: str | None) -> list[ChannelGroup]:
    """Torch-Pruning's groups, as slices. Its trace is one forward pass in eval mode and changes nothing."""
    graph = dependency_graph(model, x)
    names = {m: n for n, m in model.named_modules()}
    modules = dict(model.named_modules())
    ignored = [modules[classifier]] if classifier in modules else []
    groups = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=(nn.Conv2d, nn.Linear)):
        described = _describe(group, graph, names, classifier)
        if described is not None and described.size >= 2:
            groups.append(described)
    return groups


def _describe(group, graph, names: dict[nn.Module, str], classifier: str | None) -> ChannelGroup | None:
    """A Torch-Pruning group as slices of parameters; None when it touches a layer this project cannot mask."""
    slices: dict[tuple[str, int], Slice] = {}
    root = group[0].dep.target.module
    size = len(group[0].idxs)
    for item in group.items:
        module = item.dep.target.module
        if not isinstance(module, nn.Module):
            return None   # a bare nn.Parameter
        if not list(module.parameters(recurse=False)):
            continue      # ReLU, pooling, flatten, add: nothing to mask
        emits = graph.is_out_channel_pruning_fn(item.dep.handler)
        index, channel = torch.tensor(item.idxs, dtype=torch.long), torch.tensor(item.root_idxs, dtype=torch.long)
        name = names[module]
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            depthwise = isinstance(module, nn.Conv2d) and module.groups > 1
            if depthwise and not module.groups == module.in_channels == module.out_channels:
                return None   # grouped, not depthwise
            if emits and name == classifier:
                return None   # never the classifier's output
            dim = 0 if emits or depthwise else 1
            tensors = ["weight"] + (["bias"] if dim == 0 and module.bias is not None else [])
            reads = not (emits or depthwise)
        elif isinstance(module, _BatchNorm) and module.affine:
            dim, tensors, reads = 0, ["weight", "bias"], False
        else:
            return None   # LayerNorm, GroupNorm, PReLU, ...: not masked here
        for tensor in tensors:
            slices.setdefault((f"{name}.{tensor}", dim), Slice(f"{name}.{tensor}", dim, index, channel, reads))
    for s in slices.values():   # each channel must sit at the same number of positions
        counts = torch.bincount(s.channel, minlength=size)
        if s.channel.max() >= size or not bool((counts == counts[0]).all()) or int(counts[0]) == 0:
            return None
    return ChannelGroup(names[root], size, tuple(slices.values()))


def _verified(model: nn.Module, candidates: list[ChannelGroup], x: torch.Tensor) -> list[ChannelGroup]:
    """The candidates whose channel 0 is removed exactly. All are probed together first; when that fails,
    halves are probed recursively, so a few bad groups among many cost a few probes each."""
    if not candidates or _removal_is_exact(model, candidates, x):
        return candidates
    if len(candidates) == 1:
        return []
    half = len(candidates) // 2
    passing = _verified(model, candidates[:half], x) + _verified(model, candidates[half:], x)
    return passing if passing and _removal_is_exact(model, passing, x) else []


def _removal_is_exact(model: nn.Module, groups: list[ChannelGroup], x: torch.Tensor) -> bool:
    """Zeroing channel 0 of `groups` in every tensor they touch, then removing it, leaves the logits as they were."""
    masked = _eval_copy(model)
    params = dict(masked.named_parameters())
    with torch.no_grad():
        for group in groups:
            for s in group.slices:
                params[s.name].index_fill_(s.dim, s.index[s.channel == 0].to(x.device), 0)
        expected = masked(x)
    try:
        slim = remove_channels(masked, x, groups, [torch.arange(g.size) == 0 for g in groups])
        with torch.no_grad():
            got = slim(x)
    except Exception:  # a mis-traced group breaks the forward: that is what the probe is for
        return False
    if got.shape != expected.shape:
        return False
    scale = max(1.0, float(expected.abs().max()))
    return float((got - expected).abs().max()) <= PROBE_TOLERANCE * scale


def remove_channels(model: nn.Module, x: torch.Tensor, groups: Sequence[ChannelGroup],
                    dead: Sequence[torch.Tensor]) -> nn.Module:
    """Remove, in place, the `dead` channels of each group with Torch-Pruning (its parameters are replaced);
    returns `model`."""
    graph = dependency_graph(model, x)
    modules = dict(model.named_modules())
    for group, drop in zip(groups, dead):
        idxs = drop.nonzero().flatten().tolist()
        if idxs:
            root = modules[group.root]
            graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, idxs).prune()
    return model
