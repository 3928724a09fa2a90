"""The interface between a training loop and any pruning method.

The loop owns the model, the optimizer and the step; it calls the pruner at
fixed points (once before the optimizer is built, before and after each
optimizer step, at each epoch end, at the end of training). A pruner only decides masks; `Pruner.set_masks` is the one
place that makes masked weights, their gradients and their optimizer state
zero, so nothing regrows under SGD momentum or Adam.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from weightmom.chain import ChainPlan
from weightmom.errors import UsageError
from weightmom.pruning.channels import ChannelGroups, find_channel_groups

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TrainingContext:
    """What a pruner may know about the run it is attached to."""

    epochs: int
    steps_per_epoch: int
    sample_input: torch.Tensor
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batches: Callable[[], Iterator[Batch]]
    seed: int = 0
    chain: ChainPlan | None = None   # a chain run: `epochs` is its first step's, the plan says the rest


@dataclass
class PrunableLayer:
    """A Conv2d or Linear weight, with its 0/1 mask in the weight's dtype."""

    name: str
    weight: nn.Parameter
    mask: torch.Tensor

    @property
    def alive(self) -> int:
        return int(self.mask.count_nonzero())


def prunable_layers(model: nn.Module, sample_input: torch.Tensor) -> list[PrunableLayer]:
    """Conv2d/Linear weights in forward order (the paper's layer index l needs it)."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _inp: order.append(mod) if mod not in order else None)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(sample_input[:1])
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    names = {module: name for name, module in model.named_modules()}
    return [PrunableLayer(f"{names[m]}.weight", m.weight, torch.ones_like(m.weight)) for m in order]


class Pruner:
    """Base class: holds the masks and keeps masked weights dead. Subclasses decide masks."""

    def __init__(self, config) -> None:
        self.config = config
        self.layers: list[PrunableLayer] = []
        self.coupled: list[PrunableLayer] = []   # channel granularity: biases and BatchNorm scale and shift
        self.channels: ChannelGroups | None = None
        self.channel_alive: list[torch.Tensor] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self._masks_active = False

    # -- hooks the training loop calls -------------------------------------------------
    def prepare(self, model: nn.Module, context: TrainingContext) -> None:
        """Before the optimizer is built: a method that adds parameters (N2NSkip's skips) attaches them here."""

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer, context: TrainingContext) -> None:
        self.layers = prunable_layers(model, context.sample_input)
        self.optimizer = optimizer
        # Every run finds its channel groups (traced in eval mode, probed on copies: the model is left as it was):
        # its params and MACs are those of the network as it would be slimmed. Channel granularity prunes them.
        self.channels = find_channel_groups(model, context.sample_input, [layer.name for layer in self.layers])
        if self.channel_granularity:
            self._attach_channels(model)
        self.setup(model, context)

    @property
    def channel_granularity(self) -> bool:
        return getattr(self.config, "granularity", "weight") == "channel"

    def _attach_channels(self, model: nn.Module) -> None:
        """Channel granularity: the model must have groups; the non-weight tensors they touch are masked too."""
        if not self.channels.groups:
            raise UsageError(no_groups(self.channels.error))
        weights = {layer.name for layer in self.layers}
        params = dict(model.named_parameters())
        names = dict.fromkeys(s.name for g in self.channels.groups for s in g.slices if s.name not in weights)
        self.coupled = [PrunableLayer(name, params[name], torch.ones_like(params[name])) for name in names]
        self.channel_alive = [torch.ones(g.size, dtype=torch.bool) for g in self.channels.groups]

    def setup(self, model: nn.Module, context: TrainingContext) -> None:
        """Called once after attach; one-shot methods compute their mask here."""

    def before_step(self) -> None:
        """After backward, before optimizer.step: dead weights get no gradient."""
        if self._masks_active:
            for layer in (*self.layers, *self.coupled):
                if layer.weight.grad is not None:
                    layer.weight.grad.mul_(layer.mask)

    def after_step(self) -> None:
        """After optimizer.step."""

    def on_epoch_end(self, epoch: int) -> None:
        """After `epoch` (1-based) epochs are complete, before evaluation."""

    def on_train_end(self) -> None:
        """After the last epoch."""

    def optimizer_overrides(self) -> dict:
        """Optimizer settings the method needs (GSM brings its own momentum and lr)."""
        return {}

    # -- shared mask machinery --------------------------------------------------------
    def set_masks(self, masks: list[torch.Tensor], coupled: list[torch.Tensor] | None = None) -> None:
        """Install new masks: zero the weights, gradients and optimizer state they remove.

        `coupled` masks the tensors of `self.coupled` (channel granularity's biases and BatchNorm) the same way.
        """
        pairs = [*zip(self.layers, masks), *zip(self.coupled, coupled or [])]
        with torch.no_grad():
            for layer, mask in pairs:
                layer.mask.copy_(mask)
                layer.weight.mul_(layer.mask)
                if layer.weight.grad is not None:
                    layer.weight.grad.mul_(layer.mask)
                state = self.optimizer.state.get(layer.weight, {}) if self.optimizer else {}
                for value in state.values():
                    if torch.is_tensor(value) and value.shape == layer.mask.shape:
                        value.mul_(layer.mask)
        # Gradient masking each step is only needed once some mask removes something.
        self._masks_active = not all(bool(layer.mask.all()) for layer in (*self.layers, *self.coupled))

    def set_channel_masks(self, alive: list[torch.Tensor]) -> None:
        """Channel granularity: keep only the `alive` channels of each group, in every tensor it touches."""
        self.channel_alive = [a.bool().cpu().clone() for a in alive]
        masks = self.channels.masks(self.channel_alive)
        self.set_masks([masks.get(layer.name, torch.ones_like(layer.mask)) for layer in self.layers],
                       [masks[layer.name] for layer in self.coupled])

    # -- resumable state: what a checkpoint needs beyond the model and optimizer -------------
    def state_dict(self) -> dict:
        state = {"masks": [layer.mask.clone() for layer in self.layers]}
        if self.channel_granularity:
            state["channels"] = [a.clone() for a in self.channel_alive]
        return state

    def load_state_dict(self, state: dict) -> None:
        if "channels" in state:
            self.set_channel_masks(state["channels"])
        self.set_masks([m.to(layer.mask.device) for m, layer in zip(state["masks"], self.layers)],
                       [layer.mask for layer in self.coupled])

    def masks(self) -> dict[str, torch.Tensor]:
        """Boolean masks by parameter name, as torch.nn.utils.prune.custom_from_mask takes them."""
        return {layer.name: layer.mask.bool() for layer in self.layers}

    def layer_densities(self) -> dict[str, float]:
        return {layer.name: layer.alive / layer.mask.numel() for layer in self.layers}


def no_groups(why: str | None) -> str:
    return f"pruner.granularity channel: the model has no channel group that can be removed ({why})"


def check_channel_groups(model: nn.Module, sample_input: torch.Tensor) -> None:
    """Channel granularity needs a group to remove: a one-line UsageError saying why there is none. Run before
    the data loads, on an input of the dataset's shape, so a long load is not spent on a run that cannot start."""
    names = [layer.name for layer in prunable_layers(model, sample_input)]
    groups = find_channel_groups(model, sample_input, names)
    if not groups.groups:
        raise UsageError(no_groups(groups.error))


def select_survivors(scores: torch.Tensor, mask: torch.Tensor, keep: int,
                     threshold: float = float("inf")) -> torch.Tensor:
    """Remove the lowest-scored alive weights until `keep` remain.

    Only weights scoring below `threshold * mean(alive scores)` are eligible; if
    too few are, fewer are removed and the layer lags (method.md, step 4). Dead
    weights stay dead. Exactly min(alive - keep, eligible) weights are removed:
    ties at the cut go in flat index order, first ones first.
    """
    alive = mask.bool()
    n_alive = int(alive.sum())
    excess = n_alive - keep
    if excess <= 0:
        return mask
    if threshold == float("inf"):
        ineligible, n_eligible = ~alive, n_alive
    else:
        mean = scores.masked_fill(~alive, 0).sum() / n_alive
        eligible = alive & (scores < threshold * mean)
        ineligible, n_eligible = ~eligible, int(eligible.sum())
    remove = min(excess, n_eligible)
    if remove == 0:
        return mask
    # A selection (kthvalue), not a sort: the remove-th smallest eligible score is the cut.
    ranked = scores.masked_fill(ineligible, float("inf"))
    cut = torch.kthvalue(ranked.flatten(), remove).values
    drop = ranked <= cut
    if int(drop.sum()) != remove:   # ties at the cut: of those, drop only the first ones needed
        below = ranked < cut
        tied = (ranked == cut) & ~ineligible
        needed = remove - int(below.sum())
        drop = below | (tied & (tied.flatten().cumsum(0) <= needed).view_as(tied))
    return mask.masked_fill(drop, 0)


class GlobalRanking:
    """Every layer's scores in one flat tensor, ranked together: SNIP, GSM and `global` allocation.

    `views` are per-layer views into `flat`, so GSM refills them in place each step and
    ranks without allocating. Both selections are torch.topk, a selection rather than a sort
    (see gsm.py for why topk beats kthvalue here).
    """

    def __init__(self, flat: torch.Tensor, shapes: Sequence[torch.Size]) -> None:
        self.flat = flat
        parts = flat.split([shape.numel() for shape in shapes])
        self.views = [part.view(shape) for part, shape in zip(parts, shapes)]

    @classmethod
    def of(cls, scores: Sequence[torch.Tensor]) -> GlobalRanking:
        """A ranking of a copy of `scores`."""
        return cls(torch.cat([s.flatten() for s in scores]), [s.shape for s in scores])

    @classmethod
    def buffer(cls, shapes: Sequence[torch.Size], device: torch.device) -> GlobalRanking:
        """Zeroed float32 scores, to be filled in place through `views`."""
        return cls(torch.zeros(sum(shape.numel() for shape in shapes), dtype=torch.float32, device=device), shapes)

    def kth_largest(self, k: int) -> torch.Tensor:
        """The k-th highest score (ties counted), as a 0-d tensor on the scores' device: no sync."""
        return torch.topk(self.flat, k, sorted=False).values.min()

    def top_masks(self, k: int) -> list[torch.Tensor]:
        """Bool masks, one per layer, keeping exactly the `k` highest scores; ties at the cut as torch.topk picks."""
        chosen = torch.zeros_like(self.flat, dtype=torch.bool)
        chosen[torch.topk(self.flat, k).indices] = True
        return GlobalRanking(chosen, [view.shape for view in self.views]).views
