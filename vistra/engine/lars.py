"""LARS: SGD with a layer-wise trust ratio (You, Gitman and Ginsburg, 2017).

Large-batch self-supervised recipes (SimCLR, BYOL, MoCo v3 linear probes) use it under the
name ``LARS`` with MMPretrain's arguments and update rule, reproduced here:

    local_lr = eta * ||w|| / (||g|| + weight_decay * ||w|| + eps)   (1 if either norm is 0)
    d        = (g + weight_decay * w) * local_lr * lr
    buf      = d on the first step, then momentum * buf + (1 - dampening) * d
    w       -= d + momentum * buf  (nesterov)  or  buf  (otherwise)

A parameter group with ``lars_exclude=True`` (biases and norms in SimCLR configs) uses
``local_lr = 1``, i.e. plain SGD with the same weight decay and momentum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from vistra.registry import OPTIMIZERS


def lars_local_lr(
    weight_norm: float, grad_norm: float, eta: float, weight_decay: float, eps: float
) -> float:
    """The trust ratio that scales a layer's step; 1 when a norm is zero (nothing to trust)."""
    if weight_norm == 0 or grad_norm == 0:
        return 1.0
    return eta * weight_norm / (grad_norm + weight_decay * weight_norm + eps)


@OPTIMIZERS.register_module()
class LARS(Optimizer):
    """Layer-wise adaptive rate scaling for SGD, with MMPretrain's arguments and defaults."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0,
        weight_decay: float = 0,
        dampening: float = 0,
        eta: float = 0.001,
        nesterov: bool = False,
        eps: float = 1e-8,
    ) -> None:
        for name, value in (
            ("lr", lr),
            ("momentum", momentum),
            ("weight_decay", weight_decay),
            ("eta", eta),
        ):
            if value < 0:
                raise ValueError(f"LARS: {name} must be >= 0, got {value}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"LARS: nesterov=True needs momentum > 0 and dampening == 0, "
                f"got momentum={momentum}, dampening={dampening}"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            eta=eta,
        )
        self.eps = eps
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        weight_decay, momentum = group["weight_decay"], group["momentum"]
        grad = p.grad
        if group.get("lars_exclude", False):
            local_lr = 1.0
        else:
            local_lr = lars_local_lr(
                torch.linalg.vector_norm(p).item(),
                torch.linalg.vector_norm(grad).item(),
                group["eta"],
                weight_decay,
                self.eps,
            )
        d_p = grad.add(p, alpha=weight_decay).mul(local_lr * group["lr"])
        if momentum != 0:
            state = self.state[p]
            if "momentum_buffer" not in state:
                buf = state["momentum_buffer"] = d_p.detach().clone()
            else:
                buf = state["momentum_buffer"]
                buf.mul_(momentum).add_(d_p, alpha=1 - group["dampening"])
            d_p = d_p.add(buf, alpha=momentum) if group["nesterov"] else buf
        p.sub_(d_p)
