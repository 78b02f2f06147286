"""Classification heads."""

from vistra.models.heads import (
    aspp_head,
    cls_head,
    decode_head,
    fcn_head,
    fpn_head,
    linear_head,
    point_head,
    psp_head,
    segmenter_mask_head,
    sep_aspp_head,
    vit_head,
)
from vistra.models.heads.cls_head import ClsHead
from vistra.models.heads.linear_head import LinearClsHead

__all__ = ["ClsHead", "LinearClsHead"]
