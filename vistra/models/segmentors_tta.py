"""``SegTTAModel``: test a segmentor on several augmented views and merge (MMSegmentation).

``vistra test CFG CKPT --tta`` builds ``dict(**cfg.tta_model, module=cfg.model)`` and uses
``cfg.tta_pipeline`` (ending in :class:`~vistra.data.transforms.tta.TestTimeAug`). The
collated batch then holds one list per view::

    inputs       = [[img1_view1, img2_view1], [img1_view2, img2_view2], ...]
    data_samples = [[s1_view1, s2_view1], [s1_view2, s2_view2], ...]

:meth:`SegTTAModel.test_step` hands each view's batch to the segmentor's own
``test_step`` (which resizes and un-flips its ``seg_logits`` back to the original image),
then :func:`merge_views` averages the per-view softmax probabilities (sigmoid for a
one-channel binary head) and takes the argmax (or the head's ``threshold``).

The wrapper has no weights of its own: ``state_dict()``/``load_state_dict()`` are the
segmentor's, so a checkpoint of the plain model loads unchanged (MMEngine likewise loads
into ``BaseTTAModel.module``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample, PixelData
from vistra.models.base import BaseModel
from vistra.registry import MODELS

# View-independent metainfo carried over to the merged prediction.
MERGED_META_KEYS = ("img_path", "seg_map_path", "ori_shape", "reduce_zero_label", "sample_idx")
DEFAULT_THRESHOLD = 0.3  # MMSeg's decode-head default for a one-channel output


def split_views(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A TTA batch (one list per view under each key) -> one ordinary batch per view."""
    if not isinstance(data, Mapping) or "inputs" not in data:
        raise TypeError(
            f"SegTTAModel.test_step takes the collated dict with 'inputs', got {type(data).__name__}"
        )
    inputs = data["inputs"]
    if (
        not isinstance(inputs, (list, tuple))
        or not inputs
        or not all(isinstance(view, (list, tuple)) for view in inputs)
    ):
        raise TypeError(
            "SegTTAModel expects inputs=[[img1_view1, img2_view1], [img1_view2, ...], ...] as "
            "pseudo_collate makes them from TestTimeAug outputs, but got a plain batch; use "
            "cfg.tta_pipeline (with a TestTimeAug step) as the test pipeline"
        )
    num_views = len(inputs)
    for key, value in data.items():
        if not isinstance(value, (list, tuple)) or len(value) != num_views:
            got = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
            raise ValueError(f"TTA batch key {key!r} has {got} entries for {num_views} views")
    return [{key: value[i] for key, value in data.items()} for i in range(num_views)]


def merge_views(views: Sequence[DataSample], threshold: float = DEFAULT_THRESHOLD) -> DataSample:
    """One sample's views -> a prediction from the mean of their probabilities.

    ``seg_logits`` of every view must already be in the original image's frame.
    """
    logits = [view.seg_logits.data for view in views]
    shapes = {tuple(x.shape) for x in logits}
    if len(shapes) != 1:
        raise ValueError(
            f"TTA views have seg_logits of shapes {sorted(shapes)}; the segmentor must resize "
            "them back to the original image (ori_shape) before merging"
        )
    channels = logits[0].shape[0]
    if channels > 1:
        probs = torch.stack([x.float().softmax(dim=0) for x in logits]).mean(dim=0)
        pred = probs.argmax(dim=0, keepdim=True)
    else:
        probs = torch.stack([x.float().sigmoid() for x in logits]).mean(dim=0)
        pred = (probs > threshold).long()
    first = views[0]
    merged = DataSample(
        metainfo={k: first.metainfo[k] for k in MERGED_META_KEYS if k in first.metainfo}
    )
    merged.pred_sem_seg = PixelData(pred)
    if "gt_sem_seg" in first:
        merged.gt_sem_seg = first.gt_sem_seg
    return merged


@MODELS.register_module()
class SegTTAModel(BaseModel):
    """Wrap a segmentor (``module``, a model or its config) for test-time augmentation.

    ``data_preprocessor``, when given, replaces the segmentor's (MMEngine's
    ``BaseTTAModel``).
    """

    def __init__(
        self, module: dict | nn.Module, data_preprocessor: dict | nn.Module | None = None
    ) -> None:
        super().__init__()
        if isinstance(module, Mapping):
            module = dict(module)
            if data_preprocessor is not None:
                module["data_preprocessor"] = data_preprocessor
            module = MODELS.build(module, key_path="model.module")
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"SegTTAModel module must be a model config or an nn.Module, got {module!r}"
            )
        if not callable(getattr(module, "test_step", None)):
            raise TypeError(
                f"SegTTAModel needs a segmentor with test_step, got {type(module).__name__}"
            )
        self.module = module

    def test_step(self, data: dict) -> list[DataSample]:
        """Predict every view with the segmentor, then merge per sample."""
        predictions = [self.module.test_step(view) for view in split_views(data)]
        return self.merge_preds([list(views) for views in zip(*predictions)])

    def val_step(self, data: dict) -> list[DataSample]:
        return self.test_step(data)

    def merge_preds(self, data_samples_list: list[list[DataSample]]) -> list[DataSample]:
        """``[[s1_view1, s1_view2, ...], [s2_view1, ...]]`` -> one prediction per sample."""
        head = getattr(self.module, "decode_head", None)
        if isinstance(head, nn.ModuleList) and len(head):  # cascade: the last stage decides
            head = head[-1]
        threshold = getattr(head, "threshold", None)
        threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        return [merge_views(views, threshold) for views in data_samples_list]

    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: Sequence[DataSample] | None = None,
        mode: str = "tensor",
    ) -> Any:
        raise NotImplementedError(
            "SegTTAModel only predicts, through test_step/val_step; train the segmentor itself"
        )

    # The wrapper's weights are the segmentor's (see the module docstring).
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


__all__ = ["SegTTAModel", "merge_views", "split_views"]
