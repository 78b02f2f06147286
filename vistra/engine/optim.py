"""The optimizer step: gradient accumulation, clipping and mixed precision around a torch optimizer.

``OptimWrapper.update_params(loss)`` is the one place where a training step calls
``backward`` and ``optimizer.step()``. Semantics and names follow MMEngine 1.x
(``accumulative_counts``, ``clip_grad``, ``optim_context``, ``initialize_count_status``,
the ``loss_scaler`` key of the AMP state dict), so configs and custom ``train_step`` code
carry over. Two differences: the last gradient norm is an attribute (``last_grad_norm``)
instead of a write to a global message hub, and ``AmpOptimWrapper`` also runs on CPU
(bfloat16 autocast), where MMEngine refuses.

This module also fills the OPTIMIZERS, OPTIM_WRAPPERS and OPTIM_WRAPPER_CONSTRUCTORS
registries: every ``torch.optim`` optimizer by its class name, ``LARS``, and the two
constructors of ``optim_constructor``.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from vistra.engine import lamb, lars, layer_decay_constructor, optim_constructor  # noqa: F401  (registration)
from vistra.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

logger = logging.getLogger("vistra")

TORCH_OPTIMIZERS = (
    "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax",
    "NAdam", "RAdam", "ASGD", "Rprop", "LBFGS", "SparseAdam",
)  # fmt: skip


def _register_torch_optimizers() -> None:
    """Register the named torch optimizers, plus any other ``torch.optim`` optimizer class
    this torch version has (``Adafactor``, ...), under their class names as MMEngine does."""
    names = set(TORCH_OPTIMIZERS)
    names.update(
        n for n, obj in vars(torch.optim).items()
        if isinstance(obj, type) and issubclass(obj, Optimizer) and obj is not Optimizer
    )  # fmt: skip
    for name in sorted(names):  # registering the same class twice is a no-op
        OPTIMIZERS.register_module(name=name, module=getattr(torch.optim, name))


_register_torch_optimizers()


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@OPTIM_WRAPPERS.register_module()
class OptimWrapper:
    """A torch optimizer plus the step policy: accumulation, clipping, grad-norm reporting.

    ``accumulative_counts=n`` steps the optimizer every ``n`` calls of ``update_params``
    (each loss divided by ``n``, so ``n`` micro-batches equal one batch ``n`` times larger).
    ``clip_grad=dict(max_norm=..., norm_type=2)`` clips the total norm before each step;
    ``clip_grad=dict(type='value', clip_value=...)`` clips each gradient element.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        accumulative_counts: int = 1,
        clip_grad: dict | None = None,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"OptimWrapper(optimizer=...) must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if not isinstance(accumulative_counts, int) or accumulative_counts < 1:
            raise ValueError(
                f"optim_wrapper.accumulative_counts must be an int >= 1, got {accumulative_counts!r}"
            )
        self.optimizer = optimizer
        self._accumulative_counts = accumulative_counts
        self.clip_grad_kwargs, self._clip_type = _parse_clip_grad(clip_grad)
        self.last_grad_norm: float | None = None
        # Accumulation bookkeeping (MMEngine's names): updates happen when the count reaches a
        # multiple of accumulative_counts, or max_counts (the end of training) once it is known.
        self._inner_count = 0
        self._max_counts = -1
        self._remainder_counts = -1
        # MMEngine keeps the optimizer-level settings as an extra, parameter-less group once
        # paramwise options split the parameters: schedulers move its lr like any other, and
        # the logger reports it as ``base_lr``.
        self.base_param_settings: dict[str, Any] | None = None
        if len(optimizer.param_groups) > 1:
            self.base_param_settings = {"params": torch.tensor([0.0]), **optimizer.defaults}

    # ------------------------------------------------------------------ the step
    def update_params(
        self,
        loss: torch.Tensor,
        step_kwargs: dict | None = None,
        zero_kwargs: dict | None = None,
    ) -> None:
        """Backward a (scaled) loss; on an update boundary clip, step and zero the grads."""
        loss = self.scale_loss(loss)
        self.backward(loss)
        if self.should_update():
            self.step(**(step_kwargs or {}))
            self.zero_grad(**(zero_kwargs or {}))

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Divide by the size of the accumulation window this iteration belongs to.

        Windows are aligned to multiples of ``accumulative_counts``; the last one may be
        shorter when ``max_counts`` is not a multiple, and its losses are divided by its real
        length so that its update is still a mean.
        """
        if self._accumulative_counts == 1:
            factor = 1
        elif self._max_counts == -1:
            factor = self._accumulative_counts
        elif self._inner_count < self._max_counts - self._remainder_counts:
            factor = self._accumulative_counts
        else:
            factor = self._remainder_counts
        if factor <= 0:
            raise RuntimeError(
                f"gradient accumulation: iteration {self._inner_count} is past max_counts="
                f"{self._max_counts}; check the values passed to initialize_count_status"
            )
        return loss / factor

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        loss.backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs: Any) -> None:
        if self.clip_grad_kwargs:
            self._clip_grad()
        self.optimizer.step(**kwargs)

    def zero_grad(self, **kwargs: Any) -> None:
        """``optimizer.zero_grad``; torch's default ``set_to_none=True`` frees the grads."""
        self.optimizer.zero_grad(**kwargs)

    def _clip_grad(self) -> None:
        params = [
            p for group in self.optimizer.param_groups for p in group["params"]
            if p.requires_grad and p.grad is not None
        ]  # fmt: skip
        if not params:
            return
        if self._clip_type == "value":
            nn.utils.clip_grad_value_(params, **self.clip_grad_kwargs)
        else:
            self.last_grad_norm = float(nn.utils.clip_grad_norm_(params, **self.clip_grad_kwargs))

    # ------------------------------------------------------------------ accumulation
    def initialize_count_status(self, model: nn.Module, init_counts: int, max_counts: int) -> None:
        """Tell the wrapper where training starts and ends, so that the last window (when
        ``max_counts`` is not a multiple of ``accumulative_counts``) still updates, with its
        losses divided by its real length."""
        self._inner_count = init_counts
        self._max_counts = max_counts
        if init_counts % self._accumulative_counts != 0:
            logger.warning(
                "resumed at iteration %d, which is not a multiple of accumulative_counts=%d: "
                "the gradients of the partial window before it are lost",
                init_counts,
                self._accumulative_counts,
            )
        if self._accumulative_counts > 1 and _has_batch_norm(model):
            logger.warning(
                "gradient accumulation with BatchNorm layers: BN statistics still see the "
                "micro-batch, which may lower accuracy slightly"
            )
        self._remainder_counts = max_counts % self._accumulative_counts

    def should_update(self) -> bool:
        """Whether the iteration just backwarded closes an accumulation window."""
        return (
            self._inner_count % self._accumulative_counts == 0
            or self._inner_count == self._max_counts
        )

    def should_sync(self) -> bool:
        """Whether the coming backward closes a window (so DDP must all-reduce its grads)."""
        nxt = self._inner_count + 1
        return nxt % self._accumulative_counts == 0 or nxt == self._max_counts

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Wrap the forward pass: skip DDP's gradient all-reduce inside a window."""
        if not self.should_sync() and hasattr(model, "no_sync"):
            with model.no_sync():
                yield
        else:
            yield

    @property
    def inner_count(self) -> int:
        return self._inner_count

    # ------------------------------------------------------------------ optimizer view
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's groups (plus MMEngine's base-settings group when there are several):
        what parameter schedulers modify."""
        if self.base_param_settings is not None:
            return self.optimizer.param_groups + [self.base_param_settings]
        return self.optimizer.param_groups

    @property
    def defaults(self) -> dict[str, Any]:
        return self.optimizer.defaults

    def get_lr(self) -> dict[str, list[float]]:
        lrs = {"lr": [group["lr"] for group in self.optimizer.param_groups]}
        if self.base_param_settings is not None:
            return {"base_lr": [self.base_param_settings["lr"]], **lrs}
        return lrs

    def get_momentum(self) -> dict[str, list[float]]:
        """SGD's ``momentum``, or ``betas[0]`` for Adam-like optimizers, or 0."""
        values = []
        for group in self.optimizer.param_groups:
            if "momentum" in group:
                values.append(group["momentum"])
            elif "betas" in group:
                values.append(group["betas"][0])
            else:
                values.append(0)
        return {"momentum": values}

    def state_dict(self) -> dict[str, Any]:
        state = self.optimizer.state_dict()
        if self.base_param_settings is not None:
            state["base_param_settings"] = self.base_param_settings
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        base = state_dict.pop("base_param_settings", None)
        if base is not None:
            self.base_param_settings = base
        self.optimizer.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(accumulative_counts={self._accumulative_counts}, "
            f"clip_grad={self.clip_grad_kwargs}, optimizer={self.optimizer!r})"
        )


def _parse_clip_grad(clip_grad: dict | None) -> tuple[dict | None, str | None]:
    """Split ``clip_grad`` into torch's kwargs and the clipping type ('norm' or 'value')."""
    if clip_grad is None:
        return None, None
    if not isinstance(clip_grad, Mapping) or not clip_grad:
        raise TypeError(
            f"optim_wrapper.clip_grad must be None or a non-empty dict such as "
            f"dict(max_norm=1.0) or dict(type='value', clip_value=1.0), got {clip_grad!r}"
        )
    kwargs = dict(clip_grad)
    clip_type = kwargs.pop("type", "norm")
    valid = {
        "norm": ("max_norm", "norm_type", "error_if_nonfinite", "foreach"),
        "value": ("clip_value", "foreach"),
    }
    if clip_type not in valid:
        raise ValueError(
            f"optim_wrapper.clip_grad.type must be 'norm' or 'value', got {clip_type!r}"
        )
    required = "max_norm" if clip_type == "norm" else "clip_value"
    unknown = sorted(set(kwargs) - set(valid[clip_type]))
    if unknown or required not in kwargs:
        raise ValueError(
            f"optim_wrapper.clip_grad (type={clip_type!r}) needs {required!r} and accepts "
            f"{', '.join(valid[clip_type])}; got {sorted(kwargs)}"
        )
    return kwargs, clip_type


_AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


@OPTIM_WRAPPERS.register_module()
class AmpOptimWrapper(OptimWrapper):
    """Mixed precision: autocast in ``optim_context`` and, for fp16 on CUDA, a GradScaler.

    - CUDA, ``dtype=None`` or ``'float16'``: fp16 autocast with ``torch.amp.GradScaler``;
      ``loss_scale='dynamic'`` (default), a float for a static scale, or a dict of GradScaler
      arguments.
    - CUDA, ``dtype='bfloat16'``: bf16 autocast; bf16 has fp32's range, so no scaler.
    - CPU: bf16 autocast and no scaler (CPU autocast has no fast fp16 path); ``loss_scale``
      is unused. MMEngine refuses AMP on CPU; vistra runs it.

    The device comes from the parameters: the optimizer's at construction, the model's in
    ``optim_context``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        accumulative_counts: int = 1,
        clip_grad: dict | None = None,
        loss_scale: str | float | dict = "dynamic",
        dtype: str | torch.dtype | None = None,
        use_fsdp: bool = False,
    ) -> None:
        super().__init__(optimizer, accumulative_counts, clip_grad)
        self._scaler_kwargs, self._static_scale = _parse_loss_scale(loss_scale)
        self.cast_dtype = _parse_amp_dtype(dtype)
        self.use_fsdp = use_fsdp
        self.loss_scaler: torch.amp.GradScaler | None = None
        self._pending_scaler_state: dict | None = None
        self._device_type: str | None = None
        device = _first_param_device(self.optimizer.param_groups)
        if device is not None:
            self._setup_device(device.type)

    def _setup_device(self, device_type: str) -> None:
        """Pick the autocast dtype and (fp16 on CUDA only) create the GradScaler, once."""
        if self._device_type == device_type:
            return
        if device_type not in ("cpu", "cuda"):
            raise ValueError(
                f"AmpOptimWrapper supports CPU and CUDA parameters, got device {device_type!r}"
            )
        if device_type == "cpu" and self.cast_dtype == torch.float16:
            warnings.warn(
                "AmpOptimWrapper(dtype='float16') on CPU: using bfloat16 autocast instead",
                stacklevel=3,
            )
        self._device_type = device_type
        self.autocast_dtype = (
            torch.bfloat16 if device_type == "cpu" else (self.cast_dtype or torch.float16)
        )
        if self.autocast_dtype == torch.float16 and self.loss_scaler is None:
            self.loss_scaler = self._make_scaler(device_type)

    def _make_scaler(self, device_type: str) -> torch.amp.GradScaler:
        if self.use_fsdp:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            scaler = ShardedGradScaler(device_type, **self._scaler_kwargs)
        else:
            scaler = torch.amp.GradScaler(device_type, **self._scaler_kwargs)
        if self._pending_scaler_state is not None:
            scaler.load_state_dict(self._pending_scaler_state)
            self._pending_scaler_state = None
        return scaler

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        device = _first_param_device([{"params": list(model.parameters())}])
        self._setup_device(device.type if device is not None else (self._device_type or "cpu"))
        with (
            super().optim_context(model),
            torch.autocast(self._device_type, dtype=self.autocast_dtype),
        ):
            yield

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        if self.loss_scaler is not None:
            loss = self.loss_scaler.scale(loss)
        loss.backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs: Any) -> None:
        if self.loss_scaler is None:
            super().step(**kwargs)
            return
        if self.clip_grad_kwargs:
            # clip the true gradients, not the scaled ones
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._static_scale)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.loss_scaler is not None:
            state["loss_scaler"] = self.loss_scaler.state_dict()
        elif self._pending_scaler_state is not None:
            state["loss_scaler"] = self._pending_scaler_state
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        scaler_state = state_dict.pop("loss_scaler", None)
        if scaler_state is not None:
            if self.loss_scaler is not None:
                self.loss_scaler.load_state_dict(scaler_state)
            else:  # the scaler is created once the device is known
                self._pending_scaler_state = scaler_state
        super().load_state_dict(state_dict)


def _parse_loss_scale(loss_scale: str | float | dict) -> tuple[dict, float | None]:
    if loss_scale == "dynamic":
        return {}, None
    if isinstance(loss_scale, (int, float)) and not isinstance(loss_scale, bool):
        return {"init_scale": float(loss_scale)}, float(loss_scale)
    if isinstance(loss_scale, Mapping):
        return dict(loss_scale), None
    raise TypeError(
        f"optim_wrapper.loss_scale must be 'dynamic', a float or a dict of GradScaler arguments, got {loss_scale!r}"
    )


def _parse_amp_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or dtype in _AMP_DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _AMP_DTYPES:
        return _AMP_DTYPES[dtype]
    raise ValueError(f"optim_wrapper.dtype must be None, 'float16' or 'bfloat16', got {dtype!r}")


def _first_param_device(param_groups: list[dict[str, Any]]) -> torch.device | None:
    for group in param_groups:
        params = group["params"]
        for p in [params] if isinstance(params, torch.Tensor) else params:
            return p.device
    return None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DDP/DataParallel-style wrapper (one exposing ``module``)."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    if hasattr(model, "module") and hasattr(model, "no_sync"):  # FSDP and look-alikes
        return model.module
    return model


def build_optim_wrapper(model: nn.Module, cfg: Mapping[str, Any]) -> OptimWrapper:
    """Build ``cfg`` (a config's ``optim_wrapper``) for ``model``'s parameters.

    ``constructor`` (default ``DefaultOptimWrapperConstructor``) turns ``optimizer`` and
    ``paramwise_cfg`` into parameter groups; the other keys (``type``, ``clip_grad``,
    ``accumulative_counts``, ``loss_scale``, ...) go to the wrapper.
    """
    if not isinstance(cfg, Mapping):
        raise TypeError(f"optim_wrapper config must be a dict, got {type(cfg).__name__}")
    wrapper_cfg = copy.deepcopy(dict(cfg))
    constructor_type = wrapper_cfg.pop("constructor", "DefaultOptimWrapperConstructor")
    paramwise_cfg = wrapper_cfg.pop("paramwise_cfg", None)
    if "optimizer" not in wrapper_cfg:
        raise KeyError(
            f"optim_wrapper config has no 'optimizer' key (got {sorted(wrapper_cfg)}); "
            "e.g. optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))"
        )
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(type=constructor_type, optim_wrapper_cfg=wrapper_cfg, paramwise_cfg=paramwise_cfg),
        key_path="optim_wrapper.constructor",
    )
    return constructor(unwrap_model(model))


__all__ = [
    "OptimWrapper",
    "AmpOptimWrapper",
    "build_optim_wrapper",
    "unwrap_model",
    "TORCH_OPTIMIZERS",
]
