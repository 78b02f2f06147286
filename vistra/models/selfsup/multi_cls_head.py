"""MMSelfSup 1.x's classification heads (registry scope ``mmselfsup``).

- ``ClsHead``: one ``fc_cls`` on the (optionally average-pooled) single feature map,
  called as ``head(feats, label)`` and returning the loss (DeepCluster, ODC; keys
  ``head.fc_cls.*``). MMPretrain's ``ClsHead`` is a parameter-free base; this is not it.
- ``MultiClsHead``: the multi-stage linear probe of the DeepCluster/ODC benchmarks
  (Goyal et al., "Scaling and Benchmarking Self-Supervised Visual Representation
  Learning", 2019): each ResNet-50 stage's map (stem = 0) is average-pooled to ~9k values,
  normalised (``norms.i``, BN without affine in the configs) and classified by its own
  ``fcs.i``; the losses are ``loss.{i + 1}``. MMSelfSup's benchmark configs of this head
  (``benchmarks/classification/*/resnet50*_mhead*.py``, ``default_scope='mmcls'``) build
  here; MMSelfSup 1.0.0 itself cannot build them beside MMPretrain's mmcv (its mmcls
  import refuses mmcv 2.1), so their keys follow its source, not an oracle run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.base import BaseModule
from vistra.models.heads.cls_head import ClsHead as _PretrainClsHead
from vistra.models.heads.cls_head import topk_accuracy
from vistra.models.layers.norm import build_norm_layer
from vistra.registry import MODELS

_CLS_INIT = [
    dict(type="Normal", std=0.01, layer="Linear"),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
]


@MODELS.register_module(name="ClsHead", scope="mmselfsup")
class SelfSupClsHead(BaseModule):
    """``fc_cls`` over the one feature map, loss from ``loss`` (MMSelfSup's arguments).

    ``vit_backbone`` takes the last item of a ViT's output (its class token).
    """

    def __init__(
        self,
        loss: dict,
        with_avg_pool: bool = False,
        in_channels: int = 2048,
        num_classes: int = 1000,
        vit_backbone: bool = False,
        init_cfg: dict | list[dict] | None = _CLS_INIT,  # noqa: B006 (copied by BaseModule)
    ) -> None:
        super().__init__(init_cfg)
        self.loss = MODELS.build(loss, key_path="model.head.loss")
        self.with_avg_pool = with_avg_pool
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.vit_backbone = vit_backbone
        if with_avg_pool:
            self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def logits(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Class scores ``[(N, num_classes)]`` of the one-map input ``x``."""
        if not isinstance(x, (list, tuple)) or len(x) != 1:
            raise ValueError("mmselfsup ClsHead takes a list or tuple of exactly one feature map")
        x = x[0]
        if self.vit_backbone:
            x = x[-1]
        if self.with_avg_pool:
            if x.dim() != 4:
                raise ValueError(f"with_avg_pool needs (N, C, H, W) features, got {x.dim()} dims")
            x = self.avg_pool(x)
        return [self.fc_cls(x.reshape(x.size(0), -1))]

    def forward(self, x: Sequence[torch.Tensor], label: torch.Tensor) -> torch.Tensor:
        return self.loss(self.logits(x)[0], label)


class MultiPooling(nn.Module):
    """Average pooling of each chosen ResNet-50 stage to about 9000 values."""

    POOL_PARAMS = {
        "resnet50": [
            dict(kernel_size=10, stride=10, padding=4),
            dict(kernel_size=16, stride=8, padding=0),
            dict(kernel_size=13, stride=5, padding=0),
            dict(kernel_size=8, stride=3, padding=0),
            dict(kernel_size=6, stride=1, padding=0),
        ]
    }
    POOL_SIZES = {"resnet50": [12, 6, 4, 3, 2]}
    POOL_DIMS = {"resnet50": [9216, 9216, 8192, 9216, 8192]}

    def __init__(
        self,
        pool_type: str = "adaptive",
        in_indices: Sequence[int] = (0,),
        backbone: str = "resnet50",
    ) -> None:
        super().__init__()
        if pool_type not in ("adaptive", "specified"):
            raise ValueError(f"pool_type must be 'adaptive' or 'specified', got {pool_type!r}")
        if backbone != "resnet50":
            raise ValueError(
                f"backbone must be 'resnet50' (the only one supported), got {backbone!r}"
            )
        if pool_type == "adaptive":
            pools = [nn.AdaptiveAvgPool2d(self.POOL_SIZES[backbone][i]) for i in in_indices]
        else:
            pools = [nn.AvgPool2d(**self.POOL_PARAMS[backbone][i]) for i in in_indices]
        self.pools = nn.ModuleList(pools)

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [pool(feat) for pool, feat in zip(self.pools, x)]


@MODELS.register_module(name="MultiClsHead", scope="mmselfsup")
class MultiClsHead(_PretrainClsHead):
    """One normalised linear classifier per backbone stage in ``in_indices``."""

    FEAT_CHANNELS = {"resnet50": [64, 256, 512, 1024, 2048]}

    def __init__(
        self,
        backbone: str = "resnet50",
        in_indices: Sequence[int] = (0, 1, 2, 3, 4),
        pool_type: str = "adaptive",
        num_classes: int = 1000,
        loss: dict = dict(type="CrossEntropyLoss", loss_weight=1.0),  # noqa: B006 (never mutated)
        with_last_layer_unpool: bool = False,
        cal_acc: bool = False,
        topk: int | Sequence[int] = (1,),
        norm_cfg: dict = dict(type="BN"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = _CLS_INIT,  # noqa: B006 (copied by BaseModule)
    ) -> None:
        super().__init__(loss=loss, topk=topk, cal_acc=cal_acc, init_cfg=init_cfg)
        if norm_cfg.get("type") not in ("BN", "SyncBN", "GN", "null"):
            raise ValueError(
                f"MultiClsHead norm_cfg type must be 'BN', 'SyncBN', 'GN' or 'null', got "
                f"{norm_cfg.get('type')!r}"
            )
        if with_last_layer_unpool:
            # MMSelfSup 1.0.0 appends to ``fcs`` before creating it: no checkpoint exists
            raise ValueError(
                "MultiClsHead with_last_layer_unpool=True cannot be built by MMSelfSup 1.0.0 "
                "either; use with_last_layer_unpool=False"
            )
        bad = [i for i in in_indices if not 0 <= i <= 4]
        if bad:
            raise ValueError(f"MultiClsHead in_indices must be in 0..4, got {list(in_indices)}")
        self.in_indices = tuple(in_indices)
        self.with_norm = norm_cfg["type"] != "null"
        self.with_last_layer_unpool = False
        self.multi_pooling = MultiPooling(pool_type, in_indices, backbone)
        if self.with_norm:
            channels = self.FEAT_CHANNELS[backbone]
            self.norms = nn.ModuleList(
                [build_norm_layer(norm_cfg, channels[i])[1] for i in in_indices]
            )
        dims = MultiPooling.POOL_DIMS[backbone]
        self.fcs = nn.ModuleList([nn.Linear(dims[i], num_classes) for i in in_indices])

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:  # type: ignore[override]
        """One score tensor ``(N, num_classes)`` per head."""
        if not isinstance(feats, (list, tuple)):
            raise TypeError("MultiClsHead takes the backbone's tuple of stage outputs")
        pooled = self.multi_pooling(feats)
        if self.with_norm:
            pooled = [norm(x) for norm, x in zip(self.norms, pooled)]
        return [fc(x.reshape(x.size(0), -1)) for fc, x in zip(self.fcs, pooled)]

    def loss(
        self, feats: tuple[torch.Tensor, ...], data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        scores = self(feats)
        if "gt_score" in data_samples[0]:
            target = torch.stack([s.gt_score for s in data_samples])
        else:
            target = torch.cat([s.gt_label for s in data_samples])
        target = target.to(scores[0].device)
        losses: dict[str, torch.Tensor] = {}
        for i, score in zip(self.in_indices, scores):
            losses[f"loss.{i + 1}"] = self.loss_module(score, target)
            if self.cal_acc:
                accs = topk_accuracy(score.detach(), target, self.topk)
                losses.update({f"accuracy.{i + 1}.top-{k}": a for k, a in zip(self.topk, accs)})
        return losses

    def predict(
        self,
        feats: tuple[torch.Tensor, ...],
        data_samples: Sequence[DataSample | None] | None = None,
    ) -> list[DataSample]:
        """Each sample gets ``head{i}_pred_label``: the raw scores of head ``i``."""
        scores = self(feats)
        if data_samples is None:
            data_samples = [None] * scores[0].size(0)
        out = [DataSample() if s is None else s for s in data_samples]
        for i, head_scores in zip(self.in_indices, scores):
            for sample, score in zip(out, head_scores.detach()):
                setattr(sample, f"head{i}_pred_label", score)
        return out
