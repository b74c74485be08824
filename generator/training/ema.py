"""Exponential moving average of model weights, with a decay that ramps up so that
short CPU schedules are not dominated by the random initialisation."""

from __future__ import annotations

import copy
import math

import torch


class ModelEMA:
    def __init__(self, model: torch.nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        model_state = model.state_dict()
        for name, value in self.ema.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(model_state[name].detach(), alpha=1 - d)
            else:  # e.g. BatchNorm's num_batches_tracked
                value.copy_(model_state[name])
