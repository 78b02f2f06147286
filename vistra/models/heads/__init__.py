"""Classification heads."""

from vistra.models.heads import cls_head, linear_head, vit_head
from vistra.models.heads.cls_head import ClsHead
from vistra.models.heads.linear_head import LinearClsHead

__all__ = ["ClsHead", "LinearClsHead"]
