"""0.x model configs -> the same modules under 1.x arguments.

What moved between the schemas:
- MMSegmentation 0.x configs could put the model's ``train_cfg``/``test_cfg`` at the top
  level; 1.x keeps them in ``model`` (the top-level names now belong to the loops).
- Normalisation, BGR->RGB and padding left the pipelines for the model's
  ``data_preprocessor`` (``SegDataPreProcessor``, ``ClsDataPreprocessor``,
  ``SelfSupDataPreprocessor``); the data step collected their settings in
  ``ctx.preprocessor``.
- MMClassification 0.x batch augments (``BatchMixup``...) are MMPretrain's ``Mixup``...
- MMSelfSup 0.x heads built their loss inside; 1.x names it (``loss=dict(...)``), and
  MAE's 0.x weight init is 1.x's ``init_cfg``.
"""

from __future__ import annotations

from typing import Any

from vistra.config.legacy.context import LegacyContext
from vistra.config.legacy.detect import is_loop_cfg

PREPROCESSORS = {
    "segmentation": "SegDataPreProcessor",
    "classification": "ClsDataPreprocessor",
    "selfsup": "SelfSupDataPreprocessor",
}

# MMClassification 0.x batch augment -> MMPretrain name (0.x's num_classes/prob are dropped:
# 1.x takes the class count from the head and picks augments with `probs`)
BATCH_AUGMENTS = {"BatchMixup": "Mixup", "BatchCutMix": "CutMix", "BatchResizeMix": "ResizeMix"}

# MMSelfSup 0.x head -> the loss its 1.x form names (0.x built it inside the head)
HEAD_LOSSES = {
    "MAEPretrainHead": dict(type="PixelReconstructionLoss", criterion="L2"),
    "ContrastiveHead": dict(type="CrossEntropyLoss"),
}

# MMSelfSup 0.x MAE initialised its own weights; 1.x spells the same init as init_cfg
MAE_INIT = [
    dict(type="Xavier", layer="Linear", distribution="uniform"),
    dict(type="Constant", layer="LayerNorm", val=1.0, bias=0.0),
]


def relocate_model_cfgs(ctx: LegacyContext) -> None:
    """Top-level 0.x ``train_cfg``/``test_cfg`` that configure the model move into it."""
    model = ctx.new.get("model")
    for key in ("train_cfg", "test_cfg"):
        value = ctx.new.get(key)
        if key not in ctx.new or is_loop_cfg(value):
            continue
        if not isinstance(model, dict):
            raise ctx.error(key, "a top-level model train/test cfg needs a `model` dict")
        if model.get(key) is not None and value is not None and model[key] != value:
            raise ctx.error(
                key,
                f"set both at the top level and as model.{key} with different values; "
                f"keep model.{key}",
            )
        ctx.new.pop(key)
        if value is not None:
            model.setdefault(key, value)
        ctx.note(f"{key} (top level, the model's) -> model.{key}")


def translate(ctx: LegacyContext) -> None:
    """Give ``model`` its 1.x arguments and data preprocessor."""
    model = ctx.new.get("model")
    if not isinstance(model, dict):
        raise ctx.error("model", "a 0.x config needs a `model` dict")
    _add_preprocessor(ctx, model)
    if ctx.task == "classification":
        _translate_batch_augments(ctx, model)
    if ctx.task == "selfsup":
        _add_selfsup_losses(ctx, model)


def _add_preprocessor(ctx: LegacyContext, model: dict[str, Any]) -> None:
    settings = dict(ctx.preprocessor)
    if not settings:
        return
    kind = PREPROCESSORS[ctx.task]
    if "to_rgb" in settings and ctx.task == "segmentation":
        settings["bgr_to_rgb"] = settings.pop("to_rgb")
    if ctx.task == "classification":
        settings = _cls_preprocessor(settings, model)
    given = model.get("data_preprocessor") or ctx.new.get("data_preprocessor") or {}
    merged = {"type": kind, **settings, **given}  # a preprocessor the user wrote wins
    model["data_preprocessor"] = merged
    ctx.new.pop("data_preprocessor", None)
    shown = ", ".join(f"{k}={v}" for k, v in settings.items())
    ctx.note(f"Normalize/Pad (pipelines) -> model.data_preprocessor ({kind}: {shown})")


def _cls_preprocessor(settings: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """ClsDataPreprocessor spells padding ``pad_size_divisor``/``pad_value`` and wants the
    class count (for one-hot batch augments)."""
    renamed = {"size_divisor": "pad_size_divisor", "pad_val": "pad_value"}
    out = {renamed.get(k, k): v for k, v in settings.items() if k not in ("size", "seg_pad_val")}
    head = model.get("head") or {}
    if isinstance(head, dict) and head.get("num_classes") is not None:
        out.setdefault("num_classes", head["num_classes"])
    return out


def _translate_batch_augments(ctx: LegacyContext, model: dict[str, Any]) -> None:
    train_cfg = model.get("train_cfg")
    if not isinstance(train_cfg, dict) or "augments" not in train_cfg:
        return
    augments = train_cfg["augments"]
    items = augments if isinstance(augments, list) else [augments]
    probs = [a.get("prob", 1.0) for a in items]
    translated = []
    for i, aug in enumerate(items):
        kind = str(aug.get("type", ""))
        if kind not in BATCH_AUGMENTS:
            if kind in BATCH_AUGMENTS.values():
                translated.append(dict(aug))
                continue
            raise ctx.error(
                f"model.train_cfg.augments[{i}]",
                f"unknown 0.x batch augment {kind!r}; supported: {', '.join(BATCH_AUGMENTS)}",
            )
        new = {k: v for k, v in aug.items() if k not in ("type", "num_classes", "prob")}
        translated.append({"type": BATCH_AUGMENTS[kind], **new})
    model["train_cfg"] = dict(train_cfg, augments=translated)
    if any(p != 1.0 for p in probs):
        model["train_cfg"]["probs"] = probs
    ctx.note(
        "model.train_cfg.augments ("
        + ", ".join(str(a.get("type")) for a in items)
        + ") -> "
        + ", ".join(a["type"] for a in translated)
    )


def _add_selfsup_losses(ctx: LegacyContext, model: dict[str, Any]) -> None:
    head = model.get("head")
    if isinstance(head, dict):
        kind = str(head.get("type", "")).split(".")[-1]
        if kind in HEAD_LOSSES and "loss" not in head:
            head["loss"] = dict(HEAD_LOSSES[kind])
            ctx.note(f"model.head ({kind}) -> loss={HEAD_LOSSES[kind]['type']} named explicitly")
    if str(model.get("type", "")).split(".")[-1] == "MAE" and "init_cfg" not in model:
        model["init_cfg"] = [dict(i) for i in MAE_INIT]
        ctx.note("model (MAE) -> init_cfg Xavier(Linear) + Constant(LayerNorm), 0.x MAE's own init")
