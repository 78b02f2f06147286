"""vistra's side of the numeric comparison with the upstream oracle (tools/upstream/oracle_models.py).

The oracle writes ``upstream.pth`` (its model with seeded random weights and BatchNorm
statistics, in the OpenMMLab checkpoint layout), ``input.pt`` and ``upstream_out.pt``;
here vistra builds the model of the *same config file*, loads that checkpoint strictly,
and computes the same outputs: ``'tensor'`` (``mode='tensor'``: classifier logits,
decode-head logits) and, for segmentors, ``'pred_sem_seg'`` (``mode='predict'``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vistra.config import Config
from vistra.data.structures import DataSample
from vistra.registry import MODELS, default_scope


def build_vistra_model(config: str | Path, cfg_options: dict | None = None) -> torch.nn.Module:
    """The model of ``config`` as ``vistra train`` builds it (the config's scope in force)."""
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model_cfg = cfg["model"]
    if cfg.get("data_preprocessor") is not None:
        model_cfg.setdefault("data_preprocessor", cfg["data_preprocessor"])
    with default_scope(cfg.get("default_scope")):
        model = MODELS.build(model_cfg, key_path="model")
    return _revert_sync_bn(model).eval()


def _revert_sync_bn(model: torch.nn.Module) -> torch.nn.Module:
    from vistra.dist import revert_sync_batchnorm

    return revert_sync_batchnorm(model)


def vistra_outputs(model: torch.nn.Module, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = {"tensor": last_tensor(model(inputs, mode="tensor"))}
        if hasattr(model, "decode_head"):
            h, w = inputs.shape[-2:]
            meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
            samples = [DataSample(metainfo=dict(meta)) for _ in range(inputs.shape[0])]
            preds = model(inputs, samples, mode="predict")
            out["pred_sem_seg"] = torch.stack([p.pred_sem_seg.data for p in preds])
    return out


def last_tensor(result):
    while isinstance(result, list | tuple):
        result = result[-1]
    if isinstance(result, dict):
        result = next(iter(result.values()))
    return result.detach().clone()


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per output, the largest absolute difference (exact for integer predictions)."""
    assert a.keys() == b.keys(), f"outputs differ in kind: {sorted(a)} vs {sorted(b)}"
    diffs = {}
    for key in a:
        assert a[key].shape == b[key].shape, (
            f"{key}: {tuple(a[key].shape)} vs {tuple(b[key].shape)}"
        )
        diffs[key] = (a[key].double() - b[key].double()).abs().max().item()
    return diffs
