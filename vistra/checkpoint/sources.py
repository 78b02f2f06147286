"""Where a checkpoint comes from: ``open-mmlab://``, ``mmcls://``, ``torchvision://`` and
``http(s)://``.

The shorthands resolve to URLs; URLs download through the torch hub cache, hash-checked
when the file name carries a hash (``name-<sha256 prefix>.pth``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vistra.checkpoint.errors import CheckpointError

# MMEngine's model-zoo shorthands (hub/openmmlab.json, hub/mmcls.json), those that the
# MMPretrain, MMSegmentation and MMSelfSup configs name (``pretrained='open-mmlab://...'``).
_THIRD_PARTY = "https://download.openmmlab.com/pretrain/third_party"
OPEN_MMLAB_URLS = {
    "resnet50_v1c": f"{_THIRD_PARTY}/resnet50_v1c-2cccc1ad.pth",
    "resnet101_v1c": f"{_THIRD_PARTY}/resnet101_v1c-e67eebb6.pth",
    "resnet18_v1c": f"{_THIRD_PARTY}/resnet18_v1c-b5776b93.pth",
    "resnest101": f"{_THIRD_PARTY}/resnest101_d2-f3b931b2.pth",
    "msra/hrnetv2_w18_small": f"{_THIRD_PARTY}/hrnetv2_w18_small-b5a04e21.pth",
    "msra/hrnetv2_w18": f"{_THIRD_PARTY}/hrnetv2_w18-00eb2006.pth",
    "msra/hrnetv2_w48": f"{_THIRD_PARTY}/hrnetv2_w48-d2186c55.pth",
    "contrib/mobilenet_v3_small": f"{_THIRD_PARTY}/mobilenet_v3_small-47085aa1.pth",
    "contrib/mobilenet_v3_large": f"{_THIRD_PARTY}/mobilenet_v3_large-bc2c3fd3.pth",
}
MMCLS_URLS = {
    "mobilenet_v2": "https://download.openmmlab.com/mmclassification/v0/mobilenet_v2/"
    "mobilenet_v2_batch256_imagenet_20200708-3b2dc3af.pth",
}
# an exception line longer than this is cut to its first sentence in one-line messages
_LONG = 120


def resolve_source(source: str) -> str:
    """``open-mmlab://name``, ``mmcls://name`` and ``torchvision://name`` to the URL they
    stand for."""
    for scheme, table in (("open-mmlab://", OPEN_MMLAB_URLS), ("mmcls://", MMCLS_URLS)):
        if source.startswith(scheme):
            name = source[len(scheme) :]
            if name not in table:
                raise CheckpointError(f"unknown {source!r}; known: {', '.join(sorted(table))}")
            return table[name]
    if source.startswith("torchvision://"):
        import torchvision.models

        name = source[len("torchvision://") :]
        try:
            return torchvision.models.get_weight(f"{_tv_enum(name)}.DEFAULT").url
        except Exception as exc:
            raise CheckpointError(f"unknown {source!r}: {exc}") from None
    return source


def _tv_enum(name: str) -> str:
    # 'resnet50' -> 'ResNet50_Weights'
    import torchvision.models

    for weights in torchvision.models.list_models():
        if weights == name:
            return type(torchvision.models.get_model_weights(name).DEFAULT).__name__
    raise KeyError(name)


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def load_url(url: str, map_location: str | torch.device, weights_only: bool) -> Any:
    """A checkpoint from ``url`` through the torch hub cache."""
    try:
        return torch.hub.load_state_dict_from_url(
            url, map_location=map_location, check_hash=True, weights_only=weights_only
        )
    except Exception as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
        raise CheckpointError(
            f"cannot load {url}: {first_line(exc)}. Without network access, place the file at {cache}"
        ) from exc


def first_line(exc: BaseException) -> str:
    """The line of an exception's text that says what went wrong: its first sentence when
    the line is long (torch's zip reader appends a paragraph of advice for its developers)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    found = next(  # torch's refusal text names the global on a line of its own
        (ln for ln in lines if "Unsupported global" in ln or "Unsupported operand" in ln),
        lines[0] if lines else type(exc).__name__,
    )
    if len(found) > _LONG and ". " in found:
        found = found.split(". ", 1)[0]
    return found
