"""One training step, written once: `train()`, the pruner tests and the overhead benchmark all take it.

The step is the contract between the loop and a pruner (weightmom.pruning.base):
forward under autocast, backward, `pruner.before_step`, `optimizer.step`,
`pruner.after_step`, then the lr scheduler. Epochs end with `pruner.on_epoch_end`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from weightmom.pruning import Pruner


def autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores, no loss scaling needed); a no-op on CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@dataclass
class Trainer:
    """The model, its optimizer and the pruner that watches them, stepped together."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    pruner: Pruner
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    device: torch.device
    channels_last: bool = False   # convert each batch (the model is channels_last already)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the batch (x, y); returns the loss, detached, still on the device."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device):
            loss = self.loss_fn(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.pruner.before_step()
        self.optimizer.step()
        self.pruner.after_step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()

    def train_epoch(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], epoch: int) -> float:
        """Step through `batches`, then end epoch `epoch` (1-based) for the pruner; returns the mean loss."""
        self.model.train()
        loss_sum, steps = torch.zeros((), device=self.device), 0
        for x, y in batches:
            loss_sum += self.step(x, y).float()   # summed on the device: one sync per epoch, not per step
            steps += 1
        self.pruner.on_epoch_end(epoch)
        return loss_sum.item() / steps

    # -- resumable state: what a checkpoint needs of these four -------------------------------
    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state | {"pruner": self.pruner.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.pruner.load_state_dict(state["pruner"])
