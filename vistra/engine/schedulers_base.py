"""The parameter-scheduler base class and the ``lr`` / ``momentum`` mixins (MMEngine semantics).

A scheduler owns a window ``[begin, end)`` of steps (epochs or iterations, per ``by_epoch``).
The constructor takes step 0 at once; every ``step()`` then advances a global counter, and
only while ``begin <= global step < end`` does it advance its own ``last_step`` (0 at
``begin``) and write a new value into every parameter group. Outside the window it leaves
the value alone, so several schedulers can share a parameter: each one computes its new
value from the *current* one (MMEngine's chainable forms), e.g. a linear warm-up on
``[0, 5)`` hands its end value to a cosine decay on ``[5, 100)``.

The first value a parameter had is kept in each group as ``initial_{param_name}``
(``initial_lr``), which some schedules (cosine, restarts) read as their base value.
"""

from __future__ import annotations

import copy
import inspect
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch.optim import Optimizer

    from vistra.engine.optim import OptimWrapper

logger = logging.getLogger("vistra")

INF = int(1e9)


def scale_epoch_value(value: Any, epoch_length: int) -> Any:
    """An epoch count (or list of them) in iterations."""
    if isinstance(value, (list, tuple)):
        return [v * epoch_length for v in value]
    return value * epoch_length


class _ParamScheduler:
    """Schedules ``param_name`` of every param group of an optimizer or ``OptimWrapper``.

    Subclasses implement ``_get_value()`` (the new value of each group at ``self.last_step``)
    and list in ``epoch_valued_args`` the arguments that count epochs, so that
    ``build_iter_from_epoch`` can turn an epoch-based config into an iteration-based one.
    """

    epoch_valued_args: tuple[str, ...] = ()
    need_val_args = False  # True for schedulers stepped with validation metrics

    def __init__(
        self,
        optimizer: OptimWrapper | Optimizer,
        param_name: str,
        begin: int = 0,
        end: int = INF,
        last_step: int = -1,
        by_epoch: bool = True,
        verbose: bool = False,
    ) -> None:
        name = type(self).__name__
        if not hasattr(optimizer, "param_groups"):
            raise TypeError(
                f"{name}: optimizer must be a torch Optimizer or an OptimWrapper, got {type(optimizer).__name__}"
            )
        if end <= begin:
            raise ValueError(f"{name}: end ({end}) must be larger than begin ({begin})")
        if not isinstance(last_step, int) or last_step < -1:
            raise ValueError(f"{name}: last_step must be an int >= -1, got {last_step!r}")
        self.optimizer = optimizer
        self.param_name = param_name
        self.begin = begin
        self.end = end
        self.by_epoch = by_epoch
        self.verbose = verbose
        initial = f"initial_{param_name}"
        for i, group in enumerate(optimizer.param_groups):
            if param_name not in group:
                raise KeyError(
                    f"{name}: param_groups[{i}] of the optimizer has no {param_name!r} to schedule; it has {sorted(group)}"
                )
            if last_step == -1:
                group.setdefault(initial, group[param_name])  # the first scheduler records it
            elif initial not in group:
                raise KeyError(
                    f"{name}: resuming with last_step={last_step} needs {initial!r} in param_groups[{i}]"
                )
        self.base_values = [group[initial] for group in optimizer.param_groups]
        self.last_step = last_step
        self._global_step = -1
        self.step()

    @classmethod
    def build_iter_from_epoch(
        cls,
        *args: Any,
        begin: int = 0,
        end: int = INF,
        by_epoch: bool = True,
        epoch_length: int | None = None,
        **kwargs: Any,
    ) -> _ParamScheduler:
        """Build from an epoch-based config as an iteration-based scheduler
        (``convert_to_iter_based=True``): begin, end and ``epoch_valued_args`` are
        multiplied by ``epoch_length``."""
        if not by_epoch:
            raise ValueError(
                f"{cls.__name__}: only by_epoch=True schedulers can be converted to iter-based"
            )
        if not isinstance(epoch_length, int) or epoch_length <= 0:
            raise ValueError(
                f"{cls.__name__}: convert_to_iter_based needs a positive int epoch_length, got {epoch_length!r}"
            )
        for key in cls.epoch_valued_args:
            if kwargs.get(key) is not None:
                kwargs[key] = scale_epoch_value(kwargs[key], epoch_length)
        begin = int(begin * epoch_length)
        if end != INF:
            end = int(end * epoch_length)
        return cls(*args, begin=begin, end=end, by_epoch=False, **kwargs)

    def _get_value(self) -> list[float]:
        raise NotImplementedError

    def _current_values(self) -> list[Any]:
        return [group[self.param_name] for group in self.optimizer.param_groups]

    def step(self) -> None:
        """Advance one step (epoch or iteration) and, inside the window, set the new values."""
        self._global_step += 1
        if self.begin <= self._global_step < self.end:
            self.last_step += 1
            self._set_values(self._get_value())
        self._last_value = self._current_values()

    def _set_values(self, values: list[Any]) -> None:
        for i, (group, value) in enumerate(zip(self.optimizer.param_groups, values)):
            group[self.param_name] = value
            if self.verbose:
                logger.info(
                    "%s: %s of group %d set to %.4e", type(self).__name__, self.param_name, i, value
                )

    def get_last_value(self) -> list[float]:
        """The values the last ``step`` left in each param group."""
        return self._last_value

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (plain Python values: loadable with weights_only)."""
        return copy.deepcopy({k: v for k, v in vars(self).items() if k != "optimizer"})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(copy.deepcopy(state_dict))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(param_name={self.param_name!r}, begin={self.begin}, end={self.end}, by_epoch={self.by_epoch})"


class _FixedParamMixin:
    """Fixes ``param_name`` of a generic scheduler; its subclasses show the generic
    constructor's signature without ``param_name`` (so config typos get did-you-mean hints)."""

    _is_mixin = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for klass in cls.__mro__:  # the first real constructor: the generic scheduler's
            if "__init__" in vars(klass) and not vars(klass).get("_is_mixin", False):
                sig = inspect.signature(klass.__init__)
                params = [p for n, p in sig.parameters.items() if n not in ("self", "param_name")]
                cls.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
                return


class LRSchedulerMixin(_FixedParamMixin):
    """Schedules ``lr``."""

    _is_mixin = True

    def __init__(self, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, "lr", *args, **kwargs)  # type: ignore[call-arg]


class MomentumSchedulerMixin(_FixedParamMixin):
    """Schedules SGD's ``momentum`` or, for Adam-like optimizers, ``betas[0]`` (mirrored in a
    ``momentum`` key of each group, as MMEngine does)."""

    _is_mixin = True

    def __init__(self, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        self.use_betas = False
        defaults = optimizer.defaults
        if "momentum" not in defaults:
            if "betas" not in defaults:
                raise ValueError(
                    f"{type(self).__name__}: {type(optimizer).__name__} has neither 'momentum' nor 'betas' to schedule"
                )
            self.use_betas = True
            for group in optimizer.param_groups:
                group["momentum"] = group["betas"][0]
        super().__init__(optimizer, "momentum", *args, **kwargs)  # type: ignore[call-arg]

    def step(self, *args: Any, **kwargs: Any) -> None:
        super().step(*args, **kwargs)  # type: ignore[misc]
        if self.use_betas:
            for group in self.optimizer.param_groups:  # type: ignore[attr-defined]
                group["betas"] = (group["momentum"], group["betas"][1])


def raw_param_group_count(optimizer: Any) -> int:
    """The number of real param groups (an OptimWrapper may add MMEngine's base-settings group)."""
    inner = getattr(optimizer, "optimizer", None)
    return len(inner.param_groups) if inner is not None else len(optimizer.param_groups)


def per_group_values(name: str, value: Any, optimizer: Any, owner: str) -> list[Any]:
    """One value per param group from a scalar or a per-group list; a list sized for the real
    groups also covers an OptimWrapper's base-settings group (which takes the last value)."""
    groups = len(optimizer.param_groups)
    if not isinstance(value, (list, tuple)):
        return [value] * groups
    values = list(value)
    if len(values) == raw_param_group_count(optimizer) and len(values) == groups - 1:
        values.append(values[-1])
    if len(values) != groups:
        raise ValueError(
            f"{owner}: {name} has {len(value)} values but the optimizer has {raw_param_group_count(optimizer)} param groups"
        )
    return values


__all__ = [
    "INF",
    "LRSchedulerMixin",
    "MomentumSchedulerMixin",
    "_ParamScheduler",
    "per_group_values",
]
