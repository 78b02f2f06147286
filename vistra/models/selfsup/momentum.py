"""Momentum (target) encoders: a frozen copy of a network that follows it slowly.

BYOL, MoCo v1/v2/v3 and DenseCL compare an online network with a moving average of
itself. MMPretrain and MMSelfSup 1.x keep it as MMEngine's averaged model, so its keys in a
checkpoint are ``<name>.steps`` (how many updates it has had) and ``<name>.module.*`` (the
copy). :class:`ExponentialMovingAverage` and :class:`CosineEMA` keep that layout.

``momentum`` is the weight of the *online* network in one update (MMEngine's convention:
``avg = (1 - m) * avg + m * online``, so BYOL's "0.99 target decay" is ``momentum=0.01``).
The first update copies the online weights; buffers (BatchNorm statistics) are copied at
every update unless ``update_buffers``.

:class:`CosineEMA` anneals ``m`` from ``momentum`` to ``end_momentum`` over the run:
``m_k = end - (end - start) * (cos(pi * k / K) + 1) / 2``. MMPretrain reads ``K`` (the
run's ``max_iters``) from MMEngine's global message hub; vistra has no global hub: the
Runner calls :meth:`set_total_steps` on every module that has it before training starts.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ExponentialMovingAverage(nn.Module):
    """``avg = (1 - momentum) * avg + momentum * online``, every ``interval`` updates."""

    def __init__(
        self,
        model: nn.Module,
        momentum: float = 0.0002,
        interval: int = 1,
        device: torch.device | str | None = None,
        update_buffers: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"momentum must be in (0, 1), got {momentum}")
        self.module = copy.deepcopy(model).requires_grad_(False)
        if device is not None:
            self.module = self.module.to(device)
        self.momentum = momentum
        self.interval = interval
        self.update_buffers = update_buffers
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long, device=device))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _averaged(self) -> dict[str, torch.Tensor]:
        if self.update_buffers:
            return self.module.state_dict()
        return dict(self.module.named_parameters())

    def _sources(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return model.state_dict() if self.update_buffers else dict(model.named_parameters())

    def current_momentum(self, steps: int) -> float:
        return self.momentum

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """One update from ``model`` (the online network this copy was made from)."""
        averaged, sources = self._averaged(), self._sources(model)
        steps = int(self.steps)
        if steps == 0:
            for key, avg in averaged.items():
                avg.copy_(sources[key])
        elif steps % self.interval == 0:
            momentum = self.current_momentum(steps)
            for key, avg in averaged.items():
                if avg.dtype.is_floating_point:
                    avg.mul_(1 - momentum).add_(sources[key].to(avg.device), alpha=momentum)
        if not self.update_buffers:
            for avg, src in zip(self.module.buffers(), model.buffers(), strict=True):
                avg.copy_(src.to(avg.device))
        self.steps += 1


class CosineEMA(ExponentialMovingAverage):
    """Momentum annealed from ``momentum`` to ``end_momentum`` along a cosine (BYOL, MoCo v3)."""

    def __init__(
        self,
        model: nn.Module,
        momentum: float = 0.004,
        end_momentum: float = 0.0,
        interval: int = 1,
        device: torch.device | str | None = None,
        update_buffers: bool = False,
    ) -> None:
        super().__init__(model, momentum, interval, device, update_buffers)
        self.end_momentum = end_momentum
        self.total_steps: int | None = None

    def set_total_steps(self, total: int) -> None:
        """The run's length in iterations (the Runner calls it before training)."""
        self.total_steps = int(total)

    def current_momentum(self, steps: int) -> float:
        if self.total_steps is None:
            raise RuntimeError(
                "CosineEMA needs the run's length to anneal its momentum: call "
                "set_total_steps(max_iters) first (the Runner does before training)"
            )
        cosine = (math.cos(math.pi * steps / float(self.total_steps)) + 1) / 2
        return self.end_momentum - (self.end_momentum - self.momentum) * cosine
