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

The wrapper has no weights of its own (:class:`~vistra.models.tta.BaseTTAModel`): a
checkpoint of the plain segmentor loads unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.data.structures import DataSample, PixelData
from vistra.models.tta import BaseTTAModel, split_views
from vistra.registry import MODELS

# View-independent metainfo carried over to the merged prediction.
MERGED_META_KEYS = ("img_path", "seg_map_path", "ori_shape", "reduce_zero_label", "sample_idx")
DEFAULT_THRESHOLD = 0.3  # MMSeg's decode-head default for a one-channel output


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
class SegTTAModel(BaseTTAModel):
    """Wrap a segmentor (``module``, a model or its config) for test-time augmentation;
    views are merged by :func:`merge_views`."""

    def merge_preds(self, data_samples_list: list[list[DataSample]]) -> list[DataSample]:
        """``[[s1_view1, s1_view2, ...], [s2_view1, ...]]`` -> one prediction per sample."""
        head = getattr(self.module, "decode_head", None)
        if isinstance(head, nn.ModuleList) and len(head):  # cascade: the last stage decides
            head = head[-1]
        threshold = getattr(head, "threshold", None)
        threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        return [merge_views(views, threshold) for views in data_samples_list]


__all__ = ["SegTTAModel", "merge_views", "split_views"]
