"""Any timm model as a backbone, with MMPretrain's ``TIMMBackbone`` arguments.

Parameters sit under ``timm_model.*`` as in MMPretrain. vistra never downloads at run
time: ``pretrained=True`` needs local weights (``checkpoint_path``, or timm's own
``pretrained_cfg_overlay=dict(file=...)``) and otherwise fails before timm tries the
network.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from vistra.models.base import BaseModule
from vistra.registry import MODELS, did_you_mean

logger = logging.getLogger(__name__)


@MODELS.register_module()
class TIMMBackbone(BaseModule):
    """Wrap ``timm.create_model(model_name, ...)``; ``forward`` returns a tuple of features.

    With ``features_only`` the tuple holds every level timm extracts (see
    ``timm_model.feature_info``); otherwise the classifier is removed
    (``reset_classifier(0, '')``) and the tuple holds the model's final, unpooled feature.
    Extra keyword arguments go to timm (e.g. ``img_size``, ``out_indices``,
    ``drop_path_rate``); a ``norm_layer`` string is looked up in the MODELS registry first.
    """

    def __init__(
        self,
        model_name: str,
        features_only: bool = False,
        pretrained: bool = False,
        checkpoint_path: str = "",
        in_channels: int = 3,
        init_cfg: dict | list[dict] | None = None,
        **kwargs: Any,
    ) -> None:
        import timm  # slow to import; only configs that use timm pay for it

        if not isinstance(pretrained, bool):
            raise TypeError(
                f"TIMMBackbone: pretrained must be True or False, got {pretrained!r}; "
                "give a weights file as checkpoint_path='...'"
            )
        overlay = kwargs.get("pretrained_cfg_overlay") or {}
        if pretrained and not checkpoint_path and not overlay.get("file"):
            raise ValueError(
                f"TIMMBackbone(model_name={model_name!r}, pretrained=True) would download "
                "weights, and vistra does not use the network at run time. Download them "
                "beforehand and pass checkpoint_path='/path/to/weights.pth' (or "
                "pretrained_cfg_overlay=dict(file='/path/to/weights'))"
            )
        if not timm.is_model(model_name):
            hint = did_you_mean(model_name, timm.list_models())
            raise ValueError(f"TIMMBackbone: timm has no model {model_name!r}.{hint}")
        super().__init__(init_cfg)
        if isinstance(kwargs.get("norm_layer"), str):
            kwargs["norm_layer"] = MODELS.get(kwargs["norm_layer"]) or kwargs["norm_layer"]

        # timm cannot load a full checkpoint into a features-only wrapper (the head keys
        # are unexpected), so that case is loaded here, allowing only unexpected keys.
        load_here = bool(checkpoint_path) and features_only
        self.timm_model = timm.create_model(
            model_name=model_name,
            features_only=features_only,
            pretrained=pretrained and not checkpoint_path,  # local weights replace a download
            in_chans=in_channels,
            checkpoint_path=None if load_here or not checkpoint_path else checkpoint_path,
            **kwargs,
        )
        if load_here:
            _load_into_features(self.timm_model, checkpoint_path)
        if hasattr(self.timm_model, "reset_classifier"):
            self.timm_model.reset_classifier(0, "")
        if pretrained or checkpoint_path:
            self._is_init = True  # keep the loaded weights when the model initialises
        _log_feature_info(getattr(self.timm_model, "feature_info", None))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.timm_model(x)
        if isinstance(features, (list, tuple)):
            return tuple(features)
        return (features,)


def _load_into_features(model: torch.nn.Module, checkpoint_path: str) -> None:
    """Load a whole-model checkpoint into a features-only model; every feature weight
    must be found (the dropped head's keys are the only ones allowed to be left over)."""
    from timm.models import load_state_dict

    result = model.load_state_dict(load_state_dict(checkpoint_path), strict=False)
    if result.missing_keys:
        raise RuntimeError(
            f"TIMMBackbone: checkpoint {checkpoint_path!r} lacks {len(result.missing_keys)} "
            f"weights of the features-only model, e.g. {result.missing_keys[:5]}"
        )
    if result.unexpected_keys:
        logger.info("TIMMBackbone: ignored checkpoint keys %s", result.unexpected_keys)


def _log_feature_info(feature_info: Any) -> None:
    if feature_info is None:
        logger.warning("this timm backbone has no feature_info")
    elif isinstance(feature_info, list):
        for index, info in enumerate(feature_info):
            logger.info("backbone feature_info[%d]: %s", index, info)
    else:
        logger.info(
            "backbone out_indices: %s, out_channels: %s, out_strides: %s",
            feature_info.out_indices,
            feature_info.channels(),
            feature_info.reduction(),
        )


@MODELS.register_module(name="TIMMBackbone", scope="mmseg")
class SegTIMMBackbone(TIMMBackbone):
    """MMSegmentation's ``TIMMBackbone``: the same module and ``timm_model.*`` keys, with
    MMSegmentation's defaults ``features_only=True`` and ``pretrained=True`` (which needs
    local weights here: ``checkpoint_path``, or ``pretrained=False``)."""

    def __init__(
        self,
        model_name: str,
        features_only: bool = True,
        pretrained: bool = True,
        checkpoint_path: str = "",
        in_channels: int = 3,
        init_cfg: dict | list[dict] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model_name, features_only, pretrained, checkpoint_path, in_channels, init_cfg, **kwargs
        )
