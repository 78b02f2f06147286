"""LAMB: layer-wise adaptive moments (`Large Batch Optimization for Deep Learning: Training
BERT in 76 minutes <https://arxiv.org/abs/1904.00962>`_), the NVIDIA FusedLamb variant that
MMPretrain ships as ``Lamb`` (after timm), with its arguments and update rule:

    g      = grad / max(1, ||all grads|| / max_grad_norm)       (global norm clipping)
    m      = beta1 * m + (1 - beta1) * g      ((1 - beta1) -> 1 without grad_averaging)
    v      = beta2 * v + (1 - beta2) * g^2
    u      = (m / bc1) / (sqrt(v) / sqrt(bc2) + eps) + weight_decay * w
    u     *= ||w|| / ||u||   (1 where a norm is 0; only with weight decay or always_adapt;
                              at most 1 with trust_clip)
    w     -= lr * u

``bc1 = 1 - beta1^t``, ``bc2 = 1 - beta2^t`` with ``bias_correction`` (else 1); the step
count ``t`` is kept per parameter group under ``'step'``, as upstream, so checkpoints of
either load. SparK's configs use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from vistra.registry import OPTIMIZERS

__all__ = ["Lamb"]


@OPTIMIZERS.register_module()
class Lamb(Optimizer):
    """LAMB with MMPretrain's arguments and defaults."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        bias_correction: bool = True,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        grad_averaging: bool = True,
        max_grad_norm: float = 1.0,
        trust_clip: bool = False,
        always_adapt: bool = False,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"Lamb lr must be >= 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"Lamb betas must be two values in [0, 1), got {betas}")
        if eps < 0.0 or weight_decay < 0.0:
            raise ValueError(f"Lamb eps and weight_decay must be >= 0, got {eps}, {weight_decay}")
        defaults = dict(
            lr=lr,
            bias_correction=bias_correction,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            grad_averaging=grad_averaging,
            max_grad_norm=max_grad_norm,
            trust_clip=trust_clip,
            always_adapt=always_adapt,
        )
        super().__init__(params, defaults)

    def _clip_factor(self, device: torch.device) -> torch.Tensor:
        """``max(1, ||g|| / max_grad_norm)`` over every gradient of every group."""
        total = torch.zeros(1, device=device)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                total.add_(p.grad.pow(2).sum())
        norm = total.sqrt()
        max_norm = torch.tensor(self.defaults["max_grad_norm"], device=device)
        # a tensor comparison, not a Python branch: no device sync on accelerators
        return torch.where(norm > max_norm, norm / max_norm, torch.ones_like(norm))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        device = self.param_groups[0]["params"][0].device
        one = torch.tensor(1.0, device=device)
        clip = self._clip_factor(device)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            beta3 = 1 - beta1 if group["grad_averaging"] else 1.0
            group["step"] = group.get("step", 0) + 1
            if group["bias_correction"]:
                bc1, bc2 = 1 - beta1 ** group["step"], 1 - beta2 ** group["step"]
            else:
                bc1, bc2 = 1.0, 1.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.div_(clip)  # in place, as upstream: the stored grad is clipped
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=beta3)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / math.sqrt(bc2)).add_(group["eps"])
                update = (exp_avg / bc1).div_(denom)
                weight_decay = group["weight_decay"]
                if weight_decay != 0:
                    update.add_(p, alpha=weight_decay)
                if weight_decay != 0 or group["always_adapt"]:
                    w_norm, u_norm = p.norm(2.0), update.norm(2.0)
                    ratio = torch.where(
                        w_norm > 0, torch.where(u_norm > 0, w_norm / u_norm, one), one
                    )
                    if group["trust_clip"]:
                        ratio = torch.minimum(ratio, one)
                    update.mul_(ratio)
                p.add_(update, alpha=-group["lr"])
        return loss
