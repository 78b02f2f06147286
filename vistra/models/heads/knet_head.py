"""K-Net's ``IterativeDecodeHead`` (`K-Net: Towards Unified Image Segmentation
<https://arxiv.org/abs/2106.14855>`_), with ``KernelUpdateHead`` and ``KernelUpdator``, as
MMSegmentation's.

A plain decode head (``kernel_generate_head``: FCNHead, PSPHead, ASPPHead, UPerHead, ...)
gives the features, the first logits and -- its ``conv_seg`` weight -- one kernel per
class. Each of ``num_stages`` kernel update heads then gathers a feature per class under
the current masks, updates the kernels with the gated ``KernelUpdator``, lets the kernels
attend to each other, and convolves the features with them into new logits. Training
returns every stage's logits and the losses are the generate head's, per stage:
``loss_ce.s0`` (the generate head's own logits) ... ``loss_ce.s{num_stages}``, likewise
``acc_seg.s{i}``. Inference returns the last stage's logits.

Keys: ``kernel_generate_head.*`` (that head's own layout, with its ``conv_seg``) and
``kernel_update_head.{i}.``: ``attention.attn.{in_proj_weight,in_proj_bias,out_proj.*}``,
``attention_norm``, ``kernel_update_conv.{dynamic_layer,input_layer,input_gate,
update_gate,norm_in,norm_out,input_norm_in,input_norm_out,fc_layer,fc_norm}`` (and
``gate_norm``), ``feat_transform.conv``, ``ffn.layers.{0.0,1}``, ``ffn_norm``,
``mask_fcs.{0,1,...}`` (Linear, LayerNorm, activation per fc), ``fc_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.base import BaseModule
from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule, build_activation_layer, build_norm_layer
from vistra.models.layers.mmcv_attention import MMCVMultiheadAttention
from vistra.models.layers.transformer import FFN
from vistra.registry import MODELS


@MODELS.register_module()
class KernelUpdator(nn.Module):
    """The gated kernel update (Eq. 4-5 of the paper).

    The assembled features (``update_feature``) and the current kernels
    (``input_feature``) are both cut into ``in_channels``-wide pieces; each kernel piece is
    updated as ``update_gate * param_out + input_gate * input_out``, then projected to
    ``out_channels`` (``fc_layer``, ``fc_norm``, activation).
    """

    def __init__(
        self,
        in_channels: int = 256,
        feat_channels: int = 64,
        out_channels: int | None = None,
        gate_sigmoid: bool = True,
        gate_norm_act: bool = False,
        activate_out: bool = False,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="ReLU", inplace=True) if act_cfg is None else act_cfg
        self.in_channels, self.feat_channels = in_channels, feat_channels
        self.out_channels_raw = out_channels
        self.out_channels = out_channels if out_channels else in_channels
        self.gate_sigmoid, self.gate_norm_act = gate_sigmoid, gate_norm_act
        self.activate_out = activate_out
        self.norm_cfg, self.act_cfg = norm_cfg, act_cfg
        self.num_params_in = self.num_params_out = feat_channels

        def norm(channels: int) -> nn.Module:
            return build_norm_layer(norm_cfg, channels)[1]

        self.dynamic_layer = nn.Linear(in_channels, self.num_params_in + self.num_params_out)
        self.input_layer = nn.Linear(in_channels, self.num_params_in + self.num_params_out)
        self.input_gate = nn.Linear(in_channels, feat_channels)
        self.update_gate = nn.Linear(in_channels, feat_channels)
        if gate_norm_act:
            self.gate_norm = norm(feat_channels)
        self.norm_in = norm(feat_channels)
        self.norm_out = norm(feat_channels)
        self.input_norm_in = norm(feat_channels)
        self.input_norm_out = norm(feat_channels)
        self.activation = build_activation_layer(act_cfg)
        self.fc_layer = nn.Linear(feat_channels, self.out_channels)
        self.fc_norm = norm(self.out_channels)

    def forward(self, update_feature: torch.Tensor, input_feature: torch.Tensor) -> torch.Tensor:
        update_feature = update_feature.reshape(-1, self.in_channels)
        num_proposals = update_feature.size(0)
        # phi_1 / psi_3 of the paper: parameters from the assembled features
        parameters = self.dynamic_layer(update_feature)
        param_in = parameters[:, : self.num_params_in].view(-1, self.feat_channels)
        param_out = parameters[:, -self.num_params_out :].view(-1, self.feat_channels)
        # phi_2 / psi_4: from the current kernels
        input_feats = self.input_layer(input_feature.reshape(num_proposals, -1, self.feat_channels))
        input_in = input_feats[..., : self.num_params_in]
        input_out = input_feats[..., -self.num_params_out :]

        gate_feats = input_in * param_in.unsqueeze(-2)  # F^G of the paper
        if self.gate_norm_act:
            gate_feats = self.activation(self.gate_norm(gate_feats))
        input_gate = self.input_norm_in(self.input_gate(gate_feats))
        update_gate = self.norm_in(self.update_gate(gate_feats))
        if self.gate_sigmoid:
            input_gate, update_gate = input_gate.sigmoid(), update_gate.sigmoid()
        param_out = self.norm_out(param_out)
        input_out = self.input_norm_out(input_out)
        if self.activate_out:
            param_out, input_out = self.activation(param_out), self.activation(input_out)

        features = update_gate * param_out.unsqueeze(-2) + input_gate * input_out
        return self.activation(self.fc_norm(self.fc_layer(features)))


@MODELS.register_module()
class KernelUpdateHead(nn.Module):
    """One K-Net stage: masks -> per-class features -> updated kernels -> new masks.

    ``conv_kernel_size`` is the size of the dynamic kernels (1 in every shipped config);
    ``feat_transform_cfg`` (a ConvModule's arguments plus ``kernel_size``) transforms the
    features first; ``kernel_updator_cfg`` builds the updator (``KernelUpdator``).
    """

    def __init__(
        self,
        num_classes: int = 150,
        num_ffn_fcs: int = 2,
        num_heads: int = 8,
        num_mask_fcs: int = 3,
        feedforward_channels: int = 2048,
        in_channels: int = 256,
        out_channels: int = 256,
        dropout: float = 0.0,
        act_cfg: dict | None = None,
        ffn_act_cfg: dict | None = None,
        conv_kernel_size: int = 1,
        feat_transform_cfg: dict | None = None,
        kernel_init: bool = False,
        with_ffn: bool = True,
        feat_gather_stride: int = 1,
        mask_transform_stride: int = 1,
        kernel_updator_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="ReLU", inplace=True) if act_cfg is None else act_cfg
        ffn_act_cfg = dict(type="ReLU", inplace=True) if ffn_act_cfg is None else ffn_act_cfg
        if kernel_updator_cfg is None:
            # MMSegmentation's default names MMDetection's DynamicConv, which it does not
            # register; the shipped configs all give a KernelUpdator
            raise ValueError(
                "KernelUpdateHead needs kernel_updator_cfg, e.g. dict(type='KernelUpdator', "
                "in_channels=256, feat_channels=256, out_channels=256)"
            )
        self.num_classes, self.in_channels, self.out_channels = (
            num_classes,
            in_channels,
            out_channels,
        )
        self.dropout, self.num_heads = dropout, num_heads
        self.kernel_init, self.with_ffn = kernel_init, with_ffn
        self.conv_kernel_size = conv_kernel_size
        self.feat_gather_stride = feat_gather_stride
        self.mask_transform_stride = mask_transform_stride
        kernel_dims = in_channels * conv_kernel_size**2

        self.attention = MMCVMultiheadAttention(kernel_dims, num_heads, dropout)
        self.attention_norm = build_norm_layer(dict(type="LN"), kernel_dims)[1]
        self.kernel_update_conv = MODELS.build(
            dict(kernel_updator_cfg), key_path="kernel_updator_cfg"
        )
        if feat_transform_cfg is not None:
            transform_cfg = dict(feat_transform_cfg)
            kernel_size = transform_cfg.pop("kernel_size", 1)
            self.feat_transform: nn.Module | None = ConvModule(
                in_channels,
                in_channels,
                kernel_size,
                stride=feat_gather_stride,
                padding=int(feat_gather_stride // 2),
                **transform_cfg,
            )
        else:
            self.feat_transform = None
        if with_ffn:
            self.ffn = FFN(
                in_channels, feedforward_channels, num_ffn_fcs, act_cfg=ffn_act_cfg,
                ffn_drop=dropout,
            )  # fmt: skip
            self.ffn_norm = build_norm_layer(dict(type="LN"), in_channels)[1]
        self.mask_fcs = nn.ModuleList()
        for _ in range(num_mask_fcs):
            self.mask_fcs.append(nn.Linear(in_channels, in_channels, bias=False))
            self.mask_fcs.append(build_norm_layer(dict(type="LN"), in_channels)[1])
            self.mask_fcs.append(build_activation_layer(act_cfg))
        self.fc_mask = nn.Linear(in_channels, out_channels)

    def init_weights(self) -> None:
        """Xavier-uniform for every weight matrix (and ``fc_mask`` ~ N(0, 0.01) with
        ``kernel_init``). Inside ``IterativeDecodeHead`` MMSegmentation never calls this
        (see ``IterativeDecodeHead.init_weights``)."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        if self.kernel_init:
            nn.init.normal_(self.fc_mask.weight, mean=0, std=0.01)

    def forward(
        self,
        x: torch.Tensor,
        proposal_feat: torch.Tensor,
        mask_preds: torch.Tensor,
        mask_shape: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, C, H, W) features, ``proposal_feat`` (B, K, C, k, k) kernels,
        ``mask_preds`` (B, K, h, w) logits -> (new logits (B, K, H, W), new kernels)."""
        n, num_proposals = proposal_feat.shape[:2]
        if self.feat_transform is not None:
            x = self.feat_transform(x)
        c, h, w = x.shape[-3:]
        if mask_preds.shape[-2:] != (h, w):
            gather_mask = F.interpolate(mask_preds, (h, w), align_corners=False, mode="bilinear")
        else:
            gather_mask = mask_preds
        soft_masks = gather_mask.softmax(dim=1)

        # group feature assembling (Eq. 3): one feature per class under its soft mask
        x_feat = torch.einsum("bnhw,bchw->bnc", soft_masks, x)
        # kernels (B, K, C, k, k) -> (B, K, k*k, C)
        proposal_feat = proposal_feat.reshape(n, num_proposals, self.in_channels, -1).permute(
            0, 1, 3, 2
        )
        obj_feat = self.kernel_update_conv(x_feat, proposal_feat)
        # the kernels attend to each other: (K, B, k*k*C) for the sequence-first attention
        obj_feat = obj_feat.reshape(n, num_proposals, -1).permute(1, 0, 2)
        obj_feat = self.attention_norm(self.attention(obj_feat)).permute(1, 0, 2)
        obj_feat = obj_feat.reshape(n, num_proposals, -1, self.in_channels)
        if self.with_ffn:
            obj_feat = self.ffn_norm(self.ffn(obj_feat))

        mask_feat = obj_feat
        for layer in self.mask_fcs:
            mask_feat = layer(mask_feat)
        mask_feat = self.fc_mask(mask_feat).permute(0, 1, 3, 2)  # (B, K, C, k*k)

        if self.mask_transform_stride == 2 and self.feat_gather_stride == 1:
            mask_x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
            h, w = mask_x.shape[-2:]
        else:
            mask_x = x
        k = self.conv_kernel_size
        mask_feat = mask_feat.reshape(n, num_proposals, c, k, k)
        # each image convolved with its own kernels (a loop over the batch, as upstream)
        new_mask_preds = torch.cat(
            [F.conv2d(mask_x[i : i + 1], mask_feat[i], padding=int(k // 2)) for i in range(n)],
            dim=0,
        ).reshape(n, num_proposals, h, w)
        if self.mask_transform_stride == 2:
            new_mask_preds = F.interpolate(
                new_mask_preds, scale_factor=2, mode="bilinear", align_corners=False
            )
        if mask_shape is not None and mask_shape[0] != h:
            new_mask_preds = F.interpolate(
                new_mask_preds, mask_shape, align_corners=False, mode="bilinear"
            )
        kernels = obj_feat.permute(0, 1, 3, 2).reshape(n, num_proposals, self.in_channels, k, k)
        return new_mask_preds, kernels


@MODELS.register_module()
class IterativeDecodeHead(BaseDecodeHead):
    """K-Net's head: ``kernel_generate_head`` (a decode head config) then ``num_stages``
    kernel update heads (``kernel_update_head``: a list of ``num_stages`` configs).

    It has no modules of its own beyond those two: ``align_corners``, ``num_classes``,
    ``input_transform`` and ``ignore_index`` are the generate head's, and so are the
    losses.
    """

    def __init__(
        self,
        num_stages: int,
        kernel_generate_head: dict,
        kernel_update_head: Sequence[dict],
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        # BaseDecodeHead's own set-up (conv_seg, losses) is skipped, as MMSegmentation
        # does: the generate head carries those
        BaseModule.__init__(self, init_cfg)
        if not isinstance(kernel_update_head, (list, tuple)) or num_stages != len(
            kernel_update_head
        ):
            got = len(kernel_update_head) if isinstance(kernel_update_head, (list, tuple)) else 0
            raise ValueError(
                f"IterativeDecodeHead: num_stages={num_stages} needs a list of as many "
                f"kernel_update_head configs, got {got}"
            )
        self.num_stages = num_stages
        self.kernel_generate_head = MODELS.build(
            kernel_generate_head, key_path="kernel_generate_head"
        )
        head = self.kernel_generate_head
        self.align_corners, self.num_classes = head.align_corners, head.num_classes
        self.input_transform, self.ignore_index = head.input_transform, head.ignore_index
        self.out_channels = self.num_classes
        self.threshold = getattr(head, "threshold", None)
        self.kernel_update_head = nn.ModuleList(
            MODELS.build(cfg, key_path=f"kernel_update_head[{i}]")
            for i, cfg in enumerate(kernel_update_head)
        )

    def init_weights(self) -> None:
        # MMEngine initialises only children that have init_weights; the kernel update
        # heads sit in a plain nn.ModuleList, so MMSegmentation leaves them at PyTorch's
        # defaults (their own xavier init_weights is never reached). Do the same.
        from vistra.models.init import initialize

        if self._is_init:
            return
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        cfgs = [c for c in cfgs if c]
        others = [c for c in cfgs if c.get("type") != "Pretrained"]
        pretrained = [c for c in cfgs if c.get("type") == "Pretrained"]
        if others:
            initialize(self, others)
        self.kernel_generate_head.init_weights()
        if pretrained:
            initialize(self, pretrained)
        self._is_init = True

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """The last stage's logits in eval mode; every stage's (generate head first) in
        training."""
        feats = self.kernel_generate_head._forward_feature(inputs)
        sem_seg = self.kernel_generate_head.cls_seg(feats)
        seg_kernels = self.kernel_generate_head.conv_seg.weight.clone()
        seg_kernels = seg_kernels[None].expand(feats.size(0), *seg_kernels.size())
        stage_segs = [sem_seg]
        for head in self.kernel_update_head:
            sem_seg, seg_kernels = head(feats, seg_kernels, sem_seg)
            stage_segs.append(sem_seg)
        return stage_segs if self.training else stage_segs[-1]

    def loss_by_feat(  # type: ignore[override]
        self, seg_logits: Sequence[torch.Tensor], batch_data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        if isinstance(seg_logits, torch.Tensor):
            raise TypeError(
                "IterativeDecodeHead.loss needs every stage's logits: call it in training "
                "mode (model.train())"
            )
        losses: dict[str, torch.Tensor] = {}
        for i, logits in enumerate(seg_logits):
            stage = self.kernel_generate_head.loss_by_feat(logits, batch_data_samples)
            losses.update({f"{k}.s{i}": v for k, v in stage.items()})
        return losses
