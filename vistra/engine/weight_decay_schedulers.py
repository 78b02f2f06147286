"""Weight-decay schedulers (MMPretrain's ``CosineAnnealingWeightDecay``, used by SparK).

``CosineAnnealingWeightDecay`` anneals each parameter group's ``weight_decay`` with
MMEngine's recursive cosine (the same steps as ``CosineAnnealingLR``), from its initial
value to ``eta_min`` (or ``initial * eta_min_ratio``) over ``T_max`` steps. A group whose
initial weight decay is 0 (biases and norms excluded by ``paramwise_cfg``) stays at 0:
``eta_min`` is not forced onto it. Note that ``eta_min`` can exceed the initial value
(SparK: 0.04 -> 0.2), so the weight decay then grows along the cosine.
"""

from __future__ import annotations

from typing import Any

from vistra.engine.schedulers import CosineAnnealingParamScheduler, cosine_annealing_step
from vistra.engine.schedulers_base import _FixedParamMixin
from vistra.registry import PARAM_SCHEDULERS

__all__ = ["CosineAnnealingWeightDecay", "WeightDecaySchedulerMixin"]


class WeightDecaySchedulerMixin(_FixedParamMixin):
    """Schedules ``weight_decay``."""

    _is_mixin = True

    def __init__(self, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, "weight_decay", *args, **kwargs)  # type: ignore[call-arg]


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingWeightDecay(WeightDecaySchedulerMixin, CosineAnnealingParamScheduler):
    """Cosine annealing of ``weight_decay``; groups starting at 0 stay at 0."""

    def _get_value(self) -> list[float]:
        if self.last_step == 0:
            return [group[self.param_name] for group in self.optimizer.param_groups]
        return [
            0.0
            if base == 0
            else cosine_annealing_step(v, base, self.last_step, self.T_max, self._eta_min(base))
            for v, base in zip(self._current_values(), self.base_values)
        ]
