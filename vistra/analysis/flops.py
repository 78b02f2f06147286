"""FLOPs and parameters of a model, overall and per module (``vistra get-flops``).

Counted with :class:`torch.utils.flop_counter.FlopCounterMode` while the model runs one
image, on the ``meta`` device where the model allows it (no memory, no arithmetic: a
PSPNet at 512x1024 counts in under a second), else on the CPU.

**FLOPs here are multiply-adds**, as in MMPretrain's and MMSegmentation's tables (MMEngine's
counter counts one per multiply-add): FlopCounterMode counts a convolution's or a matrix
product's multiply and add as two, so its counts are halved. Besides convolutions and
matrix products (attention included, also the CPU kernel torch's table lacks), the operations MMEngine's counter also counts are
given the same rules here, so totals agree with upstream's within a fraction of a percent:
batch norm 1 per element (2 with an affine transform; 4/5 in training mode), layer/group
norm 4 per element (5 with an affine transform), bilinear upsampling and grid sampling 4
per output element, nearest upsampling 1, adaptive average pooling 1 per input element.
Element-wise activations, additions and max pooling are not counted (upstream neither).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_flop_count

aten = torch.ops.aten


# ---------------------------------------------------------------------- counting rules
def _numel(shape: Any) -> int:
    return math.prod(shape) if shape is not None else 0


def _batch_norm(x, weight=None, *args, out_shape=None, **kwargs) -> int:
    # (x, weight, bias, [running_mean, running_var,] training, momentum, eps)
    training = next((a for a in args if isinstance(a, bool)), False)
    affine = weight is not None
    return _numel(x) * ((5 if affine else 4) if training else (2 if affine else 1))


def _batch_norm_no_training(x, weight=None, *args, out_shape=None, **kwargs) -> int:
    return _numel(x) * (2 if weight is not None else 1)


def _layer_norm(x, normalized_shape, weight=None, *args, out_shape=None, **kwargs) -> int:
    return _numel(x) * (5 if weight is not None else 4)


def _group_norm(x, weight=None, *args, out_shape=None, **kwargs) -> int:
    return _numel(x) * (5 if weight is not None else 4)


def _per_output(scale: int) -> Callable[..., int]:
    def count(*args, out_shape=None, **kwargs) -> int:
        return scale * _numel(out_shape)

    return count


def _per_input(x, *args, out_shape=None, **kwargs) -> int:
    return _numel(x)


EXTRA_RULES: dict[Any, Callable[..., int]] = {
    aten.native_batch_norm: _batch_norm,
    aten._native_batch_norm_legit: _batch_norm,
    aten._native_batch_norm_legit_no_training: _batch_norm_no_training,
    aten.native_layer_norm: _layer_norm,
    aten.native_group_norm: _group_norm,
    aten.upsample_bilinear2d: _per_output(4),
    aten.upsample_nearest2d: _per_output(1),
    aten.grid_sampler_2d: _per_output(4),
    aten._adaptive_avg_pool2d: _per_input,
}
"""Operations FlopCounterMode does not count, with MMEngine's rules (already multiply-add
units: they are not halved)."""


def _cpu_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


TWO_PER_MAC_RULES: dict[Any, Callable[..., int]] = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
}
"""The CPU attention kernel, which torch's table lacks (on meta and CUDA attention runs as
kernels it lists), with torch's own rule: two per multiply-add, halved like torch's."""


# ---------------------------------------------------------------------- results
@dataclass
class ModuleCost:
    name: str  # dotted, as in the state dict; '' for the whole model
    depth: int
    params: int
    flops: int  # multiply-adds


@dataclass
class Complexity:
    input_shape: tuple[int, int, int]
    flops: int
    params: int
    modules: list[ModuleCost] = field(default_factory=list)
    device: str = "meta"  # where the counting forward ran
    note: str = ""  # why it did not run on meta, when it did not


def count_complexity(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    forward: Callable[[nn.Module, torch.Tensor], Any],
    depth: int = 2,
) -> Complexity:
    """Run ``forward(model, image)`` once on a ``(1, *input_shape)`` image on the model's
    device (a meta model gets a meta image) and count; modules down to ``depth``."""
    device = _device_of(model)
    image = (
        torch.empty(1, *input_shape, device=device)
        if device.type == "meta"
        else torch.rand(1, *input_shape, device=device)
    )
    rules = {**EXTRA_RULES, **TWO_PER_MAC_RULES}
    counter = FlopCounterMode(display=False, depth=None, custom_mapping=rules)
    with _route_direct_forward_calls(model), counter, torch.no_grad():
        forward(model, image)
    per_module = _per_module(counter.get_flop_counts())
    rows = [
        ModuleCost(
            name, name.count(".") + 1 if name else 0, _params(module), per_module.get(name, 0)
        )
        for name, module in model.named_modules()
        if name.count(".") < depth
    ]
    # modules with neither weights nor counted work (activations, dropout, losses) are noise
    rows = [r for r in rows if r.params or r.flops or not r.name]
    total = per_module.get("", sum(r.flops for r in rows if r.depth == 1))
    return Complexity(input_shape, total, _params(model), rows, device.type)


@contextlib.contextmanager
def _route_direct_forward_calls(model: nn.Module) -> Iterator[None]:
    """Make ``child.forward(x)`` count as ``child``'s, not its caller's.

    The counter places FLOPs in modules through ``Module.__call__``'s hooks; segmentors
    (as MMSegmentation's) call ``self.decode_head.forward(x)`` directly, which would put
    the whole head's FLOPs on the model row. While counting, each module's ``forward``
    sends a direct call back through ``__call__``; a call already inside ``__call__``
    (the pre-hook marks it) runs the real ``forward``.
    """
    inside: dict[int, int] = {}  # id(module) -> how many of its __call__s are running

    def enter(m: nn.Module, _args: Any) -> None:
        inside[id(m)] = inside.get(id(m), 0) + 1

    def leave(m: nn.Module, _args: Any, _out: Any) -> None:
        inside[id(m)] -= 1

    undo: list[Any] = []
    for module in model.modules():
        original = module.forward
        had_own = "forward" in module.__dict__

        def routed(*args, _m=module, _f=original, **kwargs):
            return _f(*args, **kwargs) if inside.get(id(_m)) else _m(*args, **kwargs)

        undo.append((module, had_own, original))
        undo.append(module.register_forward_pre_hook(enter))
        undo.append(module.register_forward_hook(leave, always_call=True))
        module.forward = routed
    try:
        yield
    finally:
        for item in undo:
            if isinstance(item, tuple):
                module, had_own, original = item
                del module.forward
                if had_own:
                    module.forward = original
            else:
                item.remove()


def _device_of(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # parameters() yields shared ones once


def _per_module(counts: dict[str, dict[Any, int]]) -> dict[str, int]:
    """FlopCounterMode's ``{'Root.child.grandchild': {op: count}}`` as multiply-adds per
    dotted module name (the root is ``''``)."""
    out: dict[str, int] = {}
    for name, ops in counts.items():
        if name == "Global":
            continue
        _root, _, rest = name.partition(".")
        out[rest] = sum(
            n // 2 if op in flop_registry or op in TWO_PER_MAC_RULES else n for op, n in ops.items()
        )
    return out


# ---------------------------------------------------------------------- reporting
def format_size(value: float) -> str:
    """``4.112G``, ``25.557M``, ``864`` (three decimals, the unit that keeps it under 1000)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3f}{unit}"
    return str(int(value))


def format_table(result: Complexity) -> str:
    """The per-module table: name (indented by depth), parameters, FLOPs, share of FLOPs."""
    rows = [("module", "#parameters", "#flops", "%flops")]
    for m in result.modules:
        share = f"{100.0 * m.flops / result.flops:.1f}" if result.flops else "-"
        name = "  " * m.depth + (m.name or "model")
        rows.append((name, format_size(m.params), format_size(m.flops), share))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    text = [line]
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        text.append("| " + " | ".join(cells) + " |")
        if index == 0:
            text.append(line)
    text.append(line)
    return "\n".join(text)


# ---------------------------------------------------------------------- the input size
DEFAULT_SIZE = 224


def input_size(cfg: Any) -> tuple[int, int, str]:
    """``(H, W, where from)`` for a config without ``--shape``.

    Segmentors: ``model.test_cfg.crop_size`` (sliding-window inference), else the data
    preprocessor's ``size`` (the training crop, which MMSegmentation's model cards quote).
    Then the test pipeline's last crop or resize (``CenterCrop.crop_size`` and
    ``Resize.scale`` are ``(w, h)`` as in MMCV), then the synthetic shapes datasets'
    ``img_size``, then 224.
    """
    model_cfg = cfg.get("model") or {}
    if isinstance(model_cfg, dict) and "decode_head" in model_cfg:
        test_cfg = model_cfg.get("test_cfg") or {}
        if test_cfg.get("crop_size"):
            return (*_hw(test_cfg["crop_size"]), "model.test_cfg.crop_size")
        for key, pre in (
            ("model.data_preprocessor", model_cfg.get("data_preprocessor")),
            ("data_preprocessor", cfg.get("data_preprocessor")),
        ):
            if isinstance(pre, dict) and pre.get("size"):
                return (*_hw(pre["size"]), f"{key}.size")
    for loader_key in ("test_dataloader", "val_dataloader"):
        dataset = (cfg.get(loader_key) or {}).get("dataset")
        while isinstance(dataset, dict) and isinstance(dataset.get("dataset"), dict):
            dataset = dataset["dataset"]  # RepeatDataset and other wrappers
        if not isinstance(dataset, dict):
            continue
        found = _pipeline_size(dataset.get("pipeline") or [], f"{loader_key}.dataset.pipeline")
        if found is not None:
            return found
        if isinstance(dataset.get("img_size"), int):
            return dataset["img_size"], dataset["img_size"], f"{loader_key}.dataset.img_size"
    return DEFAULT_SIZE, DEFAULT_SIZE, "the default"


def _pipeline_size(pipeline: list, key: str) -> tuple[int, int, str] | None:
    found = None
    for index, step in enumerate(pipeline):
        if not isinstance(step, dict):
            continue
        kind = str(step.get("type", "")).rsplit(".", 1)[-1]
        size = step.get("crop_size") if "Crop" in kind else step.get("scale")
        if kind.startswith(("Resize", "CenterCrop")) and isinstance(size, (int, list, tuple)):
            w, h = (size, size) if isinstance(size, int) else (size[0], size[-1])
            found = (int(h), int(w), f"{key}[{index}] ({kind})")
    return found


def _hw(size: Any) -> tuple[int, int]:
    """A segmentation ``(h, w)`` size (MMSegmentation's crop sizes), or one int."""
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[-1])
