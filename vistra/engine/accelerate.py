"""Model-level speed options of a config: ``compile`` and ``channels_last``.

``compile`` is MMEngine 0.10's top-level key: ``True`` (``torch.compile``'s defaults) or a
dict of ``torch.compile`` arguments, e.g. ``dict(backend='inductor', mode='max-autotune')``;
``False``/``None``/absent: off. MMEngine compiles the model's ``train_step``; vistra's step
lives in ``loops.py``, so what is compiled is the model's ``forward`` in the modes the
train step uses (``'loss'``, and ``'tensor'``). ``'predict'`` stays eager, as MMEngine's
``val_step``/``test_step`` do: it builds ``DataSample`` lists that break the graph anyway.

``channels_last`` is a vistra extension (MMEngine has none): a top-level ``True`` converts
the model's 4-d weights and each batch the data preprocessor returns to
``torch.channels_last``, the layout cuDNN's and oneDNN's fastest convolutions (and tensor
cores under ``--amp``) want. It is a top-level key beside ``compile`` rather than in
``env_cfg``: it changes the model, as ``compile`` does, while ``env_cfg`` describes the
process (cuDNN benchmark, multiprocessing, distributed back-end).

Both are applied by :func:`apply_speed_options` before the model is moved to its device
and wrapped in DDP, so DDP's gradient buckets see the final parameter layout.
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vistra.config import ConfigError
from vistra.dist.model_wrap import unwrap
from vistra.registry import did_you_mean

logger = logging.getLogger("vistra")

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_EAGER_MODES = ("predict",)


def compile_kwargs(value: Any) -> dict[str, Any] | None:
    """The ``torch.compile`` keyword arguments a config's ``compile`` value asks for, or
    None when compiling is off. Raises :class:`ConfigError` naming the key otherwise."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"compile={value!r}: give True, False or a dict of torch.compile arguments, "
            "e.g. compile=dict(backend='inductor', mode='max-autotune')"
        )
    valid = [p for p in inspect.signature(torch.compile).parameters if p != "model"]
    kwargs = dict(value)
    for key in kwargs:
        if key not in valid:
            raise ConfigError(
                f"compile.{key}: not an argument of torch.compile.{did_you_mean(key, valid)} "
                f"Valid: {', '.join(valid)}"
            )
    mode = kwargs.get("mode")
    if mode not in COMPILE_MODES:
        choices = [m for m in COMPILE_MODES if m]
        raise ConfigError(
            f"compile.mode={mode!r}: not a torch.compile mode.{did_you_mean(str(mode), choices)} "
            f"Valid: {', '.join(choices)}"
        )
    backend = kwargs.get("backend", "inductor")
    if isinstance(backend, str):
        from torch import _dynamo  # imported only when compiling is asked for

        backends = _dynamo.list_backends(exclude_tags=())
        if backend not in backends:
            raise ConfigError(
                f"compile.backend={backend!r}: no such torch.compile backend."
                f"{did_you_mean(backend, backends)} Valid: {', '.join(sorted(backends))}"
            )
    elif not callable(backend):
        raise ConfigError(f"compile.backend must be a backend name or a callable, got {backend!r}")
    return kwargs


def channels_last_flag(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    raise ConfigError(f"channels_last={value!r}: give True or False")


def apply_speed_options(model: nn.Module, cfg: Mapping[str, Any]) -> nn.Module:
    """``model`` with the config's ``channels_last`` and ``compile`` applied (in place;
    returned for chaining). Parameters stay the same objects and state-dict keys do not
    change, so optimizers, checkpoints and EMA copies see the model as before."""
    kwargs = compile_kwargs(cfg.get("compile"))
    if channels_last_flag(cfg.get("channels_last")):
        use_channels_last(model)
        logger.info("channels_last: model weights and input batches use torch.channels_last")
    if kwargs is not None:
        compile_forward(model, kwargs)
        logger.info(
            "compile=%s: the model's forward is compiled; the first iterations are slow",
            kwargs or True,
        )
    return model


# Backbones measured faster channels_last on the CPU at inference (batch 8, 224 px, 2
# threads, oneDNN; benchmarks/cpu_layout.py): ResNet 1.11-1.31x (the quickstart 1.22-1.31x),
# DenseNet 1.13-1.20x, EfficientNet 1.26x, MobileNetV2 1.41-1.45x, MobileNetV3 1.30-1.84x,
# RegNet 1.16-1.30x, ShuffleNetV2 1.52x. Left out: ConvNeXt (0.96-1.07x), ViTs (0.99-1.03x:
# one convolution), segmentors (PSPNet 0.92x), and every family not measured yet.
CPU_CHANNELS_LAST_BACKBONES = frozenset(
    {"ResNet", "ResNetV1c", "ResNetV1d", "ResNet_CIFAR", "DenseNet", "EfficientNet",
     "MobileNetV2", "MobileNetV3", "RegNet", "ShuffleNetV2"}
)  # fmt: skip


def inference_channels_last(model: nn.Module, cfg: Mapping[str, Any], device: torch.device) -> bool:
    """Whether inference should run ``model`` channels_last: the config's ``channels_last``
    when it sets one; otherwise yes for a classifier on the CPU whose backbone is in
    :data:`CPU_CHANNELS_LAST_BACKBONES`. Predictions stay within float rounding (1e-6 on
    the measured models)."""
    flag = cfg.get("channels_last")
    if flag is not None:
        return channels_last_flag(flag)
    backbone = getattr(unwrap(model), "backbone", None)
    return (
        torch.device(device).type == "cpu"
        and type(model).__name__.endswith("Classifier")
        and type(backbone).__name__ in CPU_CHANNELS_LAST_BACKBONES
    )


def use_channels_last(model: nn.Module) -> None:
    """Convert the 4-d parameters and buffers, and make the data preprocessor hand out
    channels_last batches (first convolution included, no layout change inside)."""
    core = unwrap(model)
    core.to(memory_format=torch.channels_last)  # only 4-d tensors are touched
    preprocessor = getattr(core, "data_preprocessor", None)
    if isinstance(preprocessor, nn.Module) and not getattr(
        preprocessor, "_vistra_channels_last", False
    ):
        preprocessor.register_forward_hook(_batch_to_channels_last)
        preprocessor._vistra_channels_last = True


def _batch_to_channels_last(module: nn.Module, args: Any, out: Any) -> Any:
    if not isinstance(out, dict) or "inputs" not in out:
        return out
    out["inputs"] = _to_channels_last(out["inputs"])
    return out


def _to_channels_last(inputs: Any) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.contiguous(memory_format=torch.channels_last) if inputs.dim() == 4 else inputs
    if isinstance(inputs, (list, tuple)):  # self-supervised views
        return type(inputs)(_to_channels_last(v) for v in inputs)
    return inputs


def compile_forward(model: nn.Module, kwargs: dict[str, Any]) -> None:
    """Replace the model's ``forward`` by a compiled one for the train step's modes.

    The class's ``forward`` is compiled as a plain function and bound to the instance, so
    ``copy.deepcopy`` (the EMA hook's averaged copy) binds the same compiled function to
    the copy instead of calling back into the original model.
    """
    core = unwrap(model)
    if getattr(core, "_vistra_compiled", False):
        return
    eager = type(core).forward
    compiled = torch.compile(eager, **kwargs)

    def forward(self: nn.Module, *args: Any, **kw: Any) -> Any:
        mode = kw.get("mode", args[2] if len(args) > 2 else None)
        return (eager if mode in _EAGER_MODES else compiled)(self, *args, **kw)

    core.forward = types.MethodType(forward, core)
    core._vistra_compiled = True
