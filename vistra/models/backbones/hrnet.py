"""HRNet backbone (`High-Resolution Representations for Labeling Pixels and Regions
<https://arxiv.org/abs/1904.04514>`_), in MMPretrain's and MMSegmentation's variants.

Two registrations share one body (the same blocks, fusion and keys):
- ``HRNet`` (plain entry) is MMPretrain's: ``arch='w18'``... (``arch_zoo``) or ``extra``,
  fusion upsamples coarser branches by *nearest* neighbour, and ``forward`` returns a tuple;
- ``SegHRNet`` (``HRNet`` under scope ``mmseg``, picked by MMSegmentation configs'
  ``default_scope='mmseg'``) takes ``extra`` only, upsamples *bilinearly*
  (``align_corners=False``) and has ``frozen_stages``/``pretrained``; it returns a list.

The architecture comes from ``extra``: ``stage1``..``stage4``, each with ``num_modules``,
``num_branches``, ``block`` (``'BASIC'`` or ``'BOTTLENECK'``, see ``blocks_dict``),
``num_blocks``, ``num_channels`` (one per branch) and optionally ``fuse_method``
(ignored upstream too: fusion is always a sum).

Keys (identical in both packages):
- stem: ``conv1``, ``bn1``, ``conv2``, ``bn2`` (64 channels, two stride-2 3x3 convs);
- ``layer1.{i}`` (stage 1, ResNet blocks: ``conv1``/``bn1``/.../``downsample.{0,1}``);
- ``transition{1,2,3}.{i}``: ``.0`` conv, ``.1`` norm (a kept branch with equal width has
  no entry); a new branch ``transition{k}.{i}.{j}.0``/``.1`` (stride-2 convs);
- ``stage{2,3,4}.{m}.branches.{b}.{i}`` (blocks) and ``stage{k}.{m}.fuse_layers.{i}.{j}``:
  ``.0`` 1x1 conv + ``.1`` norm for a coarser input (then upsampled), or ``.{k}.0``/
  ``.{k}.1`` stride-2 3x3 convs for a finer one.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.backbones.resnet import BasicBlock, Bottleneck
from vistra.models.base import BaseModule
from vistra.models.layers import build_conv_layer, build_norm_layer
from vistra.models.utils.seg_utils import Upsample, resize
from vistra.registry import MODELS, did_you_mean

_DEFAULT_INIT = [
    dict(type="Kaiming", layer="Conv2d"),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
]
_STAGE_KEYS = ("num_modules", "num_branches", "block", "num_blocks", "num_channels")
# How a fusion brings a coarser branch up to a finer one: MMSegmentation interpolates
# bilinearly, MMPretrain repeats pixels (``nn.Upsample(mode='nearest')``).
_UPSAMPLE_MODES = ("bilinear", "nearest")


def _make_block(
    block: type,
    in_channels: int,
    planes: int,
    stride: int = 1,
    downsample: nn.Module | None = None,
    **kwargs,
) -> nn.Module:
    # vistra's ResNet blocks take the block's *output* width (MMPretrain's signature);
    # MMSegmentation's take ``planes`` and multiply by ``expansion``. Keys are identical.
    return block(
        in_channels, planes * block.expansion, stride=stride, downsample=downsample, **kwargs
    )


def _shortcut(conv_cfg, norm_cfg, cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        build_conv_layer(conv_cfg, cin, cout, kernel_size=1, stride=stride, bias=False),
        build_norm_layer(norm_cfg, cout)[1],
    )


def _conv_bn(conv_cfg, norm_cfg, cin: int, cout: int, k: int, s: int, relu: bool) -> nn.Sequential:
    layers = [
        build_conv_layer(conv_cfg, cin, cout, kernel_size=k, stride=s, padding=k // 2, bias=False),
        build_norm_layer(norm_cfg, cout)[1],
    ]
    if relu:
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class HRModule(BaseModule):
    """One high-resolution module: parallel branches of residual blocks, then every output
    branch sums all inputs brought to its resolution (exchange), followed by a ReLU.

    ``in_channels`` is a list that is updated in place to the branches' output widths
    (upstream relies on this to chain modules).
    """

    def __init__(
        self,
        num_branches: int,
        blocks: type,
        num_blocks: list[int],
        in_channels: list[int],
        num_channels: list[int],
        multiscale_output: bool = True,
        with_cp: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        block_init_cfg: dict | None = None,
        upsample_mode: str = "bilinear",
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if upsample_mode not in _UPSAMPLE_MODES:
            raise ValueError(
                f"HRModule upsample_mode={upsample_mode!r}: valid: {list(_UPSAMPLE_MODES)}"
            )
        self.block_init_cfg = block_init_cfg
        self.upsample_mode = upsample_mode
        # align_corners only means something to the bilinear mode
        self.align_corners = False if upsample_mode == "bilinear" else None
        for what, seq in (
            ("num_blocks", num_blocks),
            ("num_channels", num_channels),
            ("in_channels", in_channels),
        ):
            if len(seq) != num_branches:
                raise ValueError(
                    f"HRModule num_branches={num_branches} but {what} has {len(seq)} "
                    f"entries ({list(seq)})"
                )
        self.in_channels = in_channels
        self.num_branches = num_branches
        self.multiscale_output = multiscale_output
        self.norm_cfg, self.conv_cfg, self.with_cp = norm_cfg, conv_cfg, with_cp
        self.branches = self._make_branches(num_branches, blocks, num_blocks, num_channels)
        self.fuse_layers = self._make_fuse_layers()
        self.relu = nn.ReLU(inplace=False)

    def _make_one_branch(
        self, branch_index: int, block: type, num_blocks: list[int], num_channels: list[int],
        stride: int = 1,
    ) -> nn.Sequential:  # fmt: skip
        cin, planes = self.in_channels[branch_index], num_channels[branch_index]
        cout = planes * block.expansion
        downsample = None
        if stride != 1 or cin != cout:
            downsample = _shortcut(self.conv_cfg, self.norm_cfg, cin, cout, stride)
        common = dict(
            with_cp=self.with_cp, norm_cfg=self.norm_cfg, conv_cfg=self.conv_cfg,
            init_cfg=self.block_init_cfg,
        )  # fmt: skip
        layers = [_make_block(block, cin, planes, stride, downsample, **common)]
        self.in_channels[branch_index] = cout
        for _ in range(1, num_blocks[branch_index]):
            layers.append(_make_block(block, cout, planes, **common))
        return nn.Sequential(*layers)

    def _make_branches(
        self, num_branches: int, block: type, num_blocks: list[int], num_channels: list[int]
    ) -> nn.ModuleList:
        return nn.ModuleList(
            self._make_one_branch(i, block, num_blocks, num_channels) for i in range(num_branches)
        )

    def _make_fuse_layers(self) -> nn.ModuleList | None:
        if self.num_branches == 1:
            return None
        ch, conv_cfg, norm_cfg = self.in_channels, self.conv_cfg, self.norm_cfg
        fuse_layers = nn.ModuleList()
        for i in range(self.num_branches if self.multiscale_output else 1):
            fuse_layer = nn.ModuleList()
            for j in range(self.num_branches):
                if j > i:
                    # Coarser input: 1x1 conv + norm, upsampled by 2 ** (j - i).
                    fuse_layer.append(
                        nn.Sequential(
                            build_conv_layer(conv_cfg, ch[j], ch[i], kernel_size=1, bias=False),
                            build_norm_layer(norm_cfg, ch[i])[1],
                            Upsample(
                                scale_factor=2 ** (j - i),
                                mode=self.upsample_mode,
                                align_corners=self.align_corners,
                            ),
                        )  # fmt: skip
                    )
                elif j == i:
                    fuse_layer.append(None)
                else:
                    # Finer input: i - j stride-2 3x3 convs; only the last changes width and
                    # has no ReLU.
                    steps = [
                        _conv_bn(conv_cfg, norm_cfg, ch[j], ch[j], 3, 2, relu=True)
                        for _ in range(i - j - 1)
                    ]
                    steps.append(_conv_bn(conv_cfg, norm_cfg, ch[j], ch[i], 3, 2, relu=False))
                    fuse_layer.append(nn.Sequential(*steps))
            fuse_layers.append(fuse_layer)
        return fuse_layers

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.num_branches == 1:
            return [self.branches[0](x[0])]
        x = [branch(t) for branch, t in zip(self.branches, x)]
        outs = []
        for i, fuse_layer in enumerate(self.fuse_layers):
            y: torch.Tensor | int = 0
            for j in range(self.num_branches):
                if j == i:
                    y = y + x[j]
                elif j > i:
                    up = fuse_layer[j](x[j])
                    if up.shape[2:] != x[i].shape[2:]:
                        # The Upsample's 2**k size can miss odd sizes: resize to the exact
                        # one (where MMPretrain's nearest variant fails on a shape mismatch).
                        up = resize(
                            up, size=x[i].shape[2:], mode=self.upsample_mode,
                            align_corners=self.align_corners,
                        )  # fmt: skip
                    y = y + up
                else:
                    y = y + fuse_layer[j](x[j])
            outs.append(self.relu(y))
        return outs


@MODELS.register_module(name="HRNet", scope="mmseg")
class SegHRNet(BaseModule):
    """MMSegmentation's HRNet: a 64-channel stride-4 stem, a ResNet stage, then three
    multi-resolution stages; returns a list of one feature map per branch of stage 4 (only
    the highest-resolution one with ``multiscale_output=False``).

    Args:
        extra: the four stage configs (module docstring).
        in_channels: image channels.
        conv_cfg / norm_cfg: for every conv / norm.
        norm_eval: keep BatchNorms in eval mode while training.
        with_cp: gradient checkpointing in the residual blocks.
        frozen_stages: freeze the stem (0) and stages 1..k (with their transitions).
        zero_init_residual: accepted for compatibility; upstream's condition for it can
            never hold (``init_cfg`` is always an attribute), so it has no effect there or
            here.
        multiscale_output: output all branches of the last module, or only the first.
        pretrained: deprecated checkpoint path (becomes a ``Pretrained`` init_cfg).
        init_cfg: default Kaiming for convs and constant 1 for norms.
    """

    blocks_dict = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}
    upsample_mode = "bilinear"  # of the fusions (module docstring)

    def __init__(
        self,
        extra: dict,
        in_channels: int = 3,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        norm_eval: bool = False,
        with_cp: bool = False,
        frozen_stages: int = -1,
        zero_init_residual: bool = False,
        multiscale_output: bool = True,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if init_cfg and pretrained:
            raise ValueError("HRNet: init_cfg and pretrained cannot be set at the same time")
        if isinstance(pretrained, str):
            warnings.warn(
                "HRNet: pretrained is deprecated, use init_cfg=dict(type='Pretrained', ...)",
                DeprecationWarning,
                stacklevel=2,
            )
            self.init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        elif pretrained is None:
            if init_cfg is None:
                self.init_cfg = [dict(c) for c in _DEFAULT_INIT]
        else:
            raise TypeError(f"HRNet pretrained must be a str or None, got {pretrained!r}")
        self.pretrained = pretrained
        self.zero_init_residual = zero_init_residual
        self._check_extra(extra)
        self.extra = extra
        self.conv_cfg, self.norm_cfg = conv_cfg, norm_cfg
        self.norm_eval, self.with_cp, self.frozen_stages = norm_eval, with_cp, frozen_stages

        # stem: two stride-2 3x3 convs (64 channels each)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, 64, postfix=1)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, 64, postfix=2)
        self.conv1 = build_conv_layer(
            conv_cfg, in_channels, 64, kernel_size=3, stride=2, padding=1, bias=False
        )
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(
            conv_cfg, 64, 64, kernel_size=3, stride=2, padding=1, bias=False
        )
        self.add_module(self.norm2_name, norm2)
        self.relu = nn.ReLU(inplace=True)

        # stage 1: a ResNet layer on the single branch
        self.stage1_cfg = extra["stage1"]
        block = self.blocks_dict[self.stage1_cfg["block"]]
        planes, num_blocks = self.stage1_cfg["num_channels"][0], self.stage1_cfg["num_blocks"][0]
        pre_channels = [planes * block.expansion]
        self.layer1 = self._make_layer(block, 64, planes, num_blocks)

        # stages 2-4: a transition from the previous widths, then HRModules
        for k in (2, 3, 4):
            cfg = extra[f"stage{k}"]
            setattr(self, f"stage{k}_cfg", cfg)
            block = self.blocks_dict[cfg["block"]]
            channels = [c * block.expansion for c in cfg["num_channels"]]
            transition = self._make_transition_layer(pre_channels, channels)
            self.add_module(f"transition{k - 1}", transition)
            stage, pre_channels = self._make_stage(
                cfg, channels, multiscale_output=multiscale_output if k == 4 else True
            )
            self.add_module(f"stage{k}", stage)
        self._freeze_stages()

    def _check_extra(self, extra: dict) -> None:
        missing = [f"stage{i}" for i in range(1, 5) if f"stage{i}" not in extra]
        if missing:
            raise KeyError(f"HRNet extra lacks {missing}: it needs stage1..stage4")
        for i in range(1, 5):
            cfg = extra[f"stage{i}"]
            absent = [k for k in _STAGE_KEYS if k not in cfg]
            if absent:
                raise KeyError(f"HRNet extra['stage{i}'] lacks {absent}")
            if cfg["block"] not in self.blocks_dict:
                raise KeyError(
                    f"HRNet extra['stage{i}']['block']={cfg['block']!r}: valid: "
                    f"{sorted(self.blocks_dict)}"
                )
            n = cfg["num_branches"]
            if len(cfg["num_blocks"]) != n or len(cfg["num_channels"]) != n:
                raise ValueError(
                    f"HRNet extra['stage{i}']: num_blocks {tuple(cfg['num_blocks'])} and "
                    f"num_channels {tuple(cfg['num_channels'])} need num_branches={n} entries"
                )

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    def _make_transition_layer(
        self, num_channels_pre_layer: list[int], num_channels_cur_layer: list[int]
    ) -> nn.ModuleList:
        num_pre = len(num_channels_pre_layer)
        layers = nn.ModuleList()
        for i, cur in enumerate(num_channels_cur_layer):
            if i < num_pre:
                pre = num_channels_pre_layer[i]
                # A kept branch whose width is unchanged passes through (None).
                layers.append(None if cur == pre else self._conv_bn_relu(pre, cur, stride=1))
            else:
                # A new branch: stride-2 convs from the lowest-resolution previous branch.
                cin = num_channels_pre_layer[-1]
                steps = []
                for j in range(i + 1 - num_pre):
                    cout = cur if j == i - num_pre else cin
                    steps.append(self._conv_bn_relu(cin, cout, stride=2))
                layers.append(nn.Sequential(*steps))
        return layers

    def _conv_bn_relu(self, cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            build_conv_layer(self.conv_cfg, cin, cout, kernel_size=3, stride=stride, padding=1,
                             bias=False),
            build_norm_layer(self.norm_cfg, cout)[1],
            nn.ReLU(inplace=True),
        )  # fmt: skip

    def _block_init_cfg(self, block: type) -> dict | None:
        # Upstream gates this on ``not hasattr(self, 'init_cfg')``, which is never true for
        # a BaseModule: the blocks always get None. Kept as a hook for subclasses.
        return None

    def _make_layer(
        self, block: type, inplanes: int, planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        cout = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != cout:
            downsample = _shortcut(self.conv_cfg, self.norm_cfg, inplanes, cout, stride)
        common = dict(
            with_cp=self.with_cp, norm_cfg=self.norm_cfg, conv_cfg=self.conv_cfg,
            init_cfg=self._block_init_cfg(block),
        )  # fmt: skip
        layers = [_make_block(block, inplanes, planes, stride, downsample, **common)]
        for _ in range(1, blocks):
            layers.append(_make_block(block, cout, planes, **common))
        return nn.Sequential(*layers)

    def _make_stage(
        self, layer_config: dict, in_channels: list[int], multiscale_output: bool = True
    ) -> tuple[nn.Sequential, list[int]]:
        num_modules = layer_config["num_modules"]
        block = self.blocks_dict[layer_config["block"]]
        modules = []
        for i in range(num_modules):
            # Only the stage's last module may drop the lower-resolution outputs.
            multiscale = multiscale_output or i != num_modules - 1
            modules.append(
                HRModule(
                    layer_config["num_branches"],
                    block,
                    layer_config["num_blocks"],
                    in_channels,
                    layer_config["num_channels"],
                    multiscale,
                    with_cp=self.with_cp,
                    norm_cfg=self.norm_cfg,
                    conv_cfg=self.conv_cfg,
                    block_init_cfg=self._block_init_cfg(block),
                    upsample_mode=self.upsample_mode,
                )  # fmt: skip
            )
        return nn.Sequential(*modules), in_channels

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.norm1.eval()
            self.norm2.eval()
            for m in (self.conv1, self.norm1, self.conv2, self.norm2):
                for param in m.parameters():
                    param.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            frozen = [getattr(self, "layer1" if i == 1 else f"stage{i}")]
            # Stage 4 has no transition of its own; upstream then freezes transition3 again.
            frozen.append(getattr(self, f"transition{min(i, 3)}"))
            for m in frozen:
                m.eval()
                for param in m.parameters():
                    param.requires_grad = False

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.norm1(self.conv1(x)))
        x = self.relu(self.norm2(self.conv2(x)))
        y_list = [self.layer1(x)]
        for k in (2, 3, 4):
            transition = getattr(self, f"transition{k - 1}")
            n = getattr(self, f"stage{k}_cfg")["num_branches"]
            x_list = []
            for i in range(n):
                if transition[i] is None:
                    x_list.append(y_list[i])
                else:
                    # Upstream feeds every transition of stages 3-4 the last branch output
                    # (for kept branches that is only reached if widths change, which no
                    # config does); stage 2's comes from the single stage-1 output.
                    x_list.append(transition[i](y_list[-1]))
            y_list = getattr(self, f"stage{k}")(x_list)
        return y_list

    def train(self, mode: bool = True) -> SegHRNet:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


@MODELS.register_module()
class HRNet(SegHRNet):
    """MMPretrain's HRNet (the plain ``HRNet`` entry): ``arch`` names a preset of
    ``arch_zoo`` (used only when ``extra`` is None); returns a tuple of the stage-4 branch
    maps, highest resolution first (only that one with ``multiscale_output=False``).

    Args:
        arch: ``'w18'``, ``'w30'``, ``'w32'``, ``'w40'``, ``'w44'``, ``'w48'`` or ``'w64'``:
            the width of the highest-resolution branch (doubled for each coarser one).
        extra: the four stage configs (module docstring); overrides ``arch``.
        in_channels / conv_cfg / norm_cfg / norm_eval / with_cp / multiscale_output: as
            :class:`SegHRNet`.
        zero_init_residual: accepted as upstream; the blocks' zero-init is overridden by
            the default ``init_cfg`` there too, so it has no effect.
        init_cfg: default Kaiming for convs and constant 1 for norms; ``None`` leaves
            PyTorch's initialisation.
    """

    upsample_mode = "nearest"
    # each preset: a row per stage of
    # [num_modules, num_branches, block, num_blocks, num_channels]
    arch_zoo = {
        f"w{w}": [
            [1, 1, "BOTTLENECK", (4,), (64,)],
            [1, 2, "BASIC", (4, 4), (w, 2 * w)],
            [4, 3, "BASIC", (4, 4, 4), (w, 2 * w, 4 * w)],
            [3, 4, "BASIC", (4, 4, 4, 4), (w, 2 * w, 4 * w, 8 * w)],
        ]
        for w in (18, 30, 32, 40, 44, 48, 64)
    }

    def __init__(
        self,
        arch: str = "w32",
        extra: dict | None = None,
        in_channels: int = 3,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type="BN"),  # noqa: B006 (never mutated)
        norm_eval: bool = False,
        with_cp: bool = False,
        zero_init_residual: bool = False,
        multiscale_output: bool = True,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # copied by BaseModule
    ) -> None:
        if extra is None:
            extra = self._extra_of_arch(arch)
        elif not isinstance(extra, dict):
            raise TypeError(f"HRNet extra must be a dict of stage1..stage4 or None, got {extra!r}")
        super().__init__(
            extra=extra, in_channels=in_channels, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            norm_eval=norm_eval, with_cp=with_cp, zero_init_residual=zero_init_residual,
            multiscale_output=multiscale_output, init_cfg=init_cfg,
        )  # fmt: skip
        self.arch = arch
        # SegHRNet turns init_cfg=None into its default; MMPretrain keeps None as given.
        self.init_cfg = copy.deepcopy(init_cfg)

    @classmethod
    def _extra_of_arch(cls, arch: str) -> dict:
        # A custom architecture is given as ``extra``, so ``arch`` is a preset name only.
        if not isinstance(arch, str) or arch not in cls.arch_zoo:
            hint = did_you_mean(arch, list(cls.arch_zoo)) if isinstance(arch, str) else ""
            raise ValueError(
                f"arch={arch!r} is not an HRNet arch.{hint} Valid: {sorted(cls.arch_zoo)}, "
                "or give extra=dict(stage1=..., ..., stage4=...)"
            )
        rows = cls.arch_zoo[arch]
        return {f"stage{i + 1}": dict(zip(_STAGE_KEYS, row)) for i, row in enumerate(rows)}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(super().forward(x))
