"""MMSelfSup 1.x's ResNet, ResNetV1d and ResNetSobel (registry scope ``mmselfsup``).

MMSelfSup's ResNet is mmcls's (same arguments and keys as the plain ``ResNet``, see
``resnet.py``) except that ``out_indices`` counts the stem as 0: ``0`` is the stem's
output (after its ReLU, before the max pool) and ``i`` (1..4) the output of stage ``i``.
Its defaults are ``out_indices=(4,)`` and ``zero_init_residual=False``. ``ResNetSobel``
feeds the network a fixed grayscale + Sobel-filter image (2 channels; DeepCluster).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.backbones.resnet import _DEFAULT_INIT, ResNet, _no_override
from vistra.registry import MODELS


@MODELS.register_module(name="ResNet", scope="mmselfsup")
class SelfSupResNet(ResNet):
    """MMSelfSup's ``ResNet`` (`paper <https://arxiv.org/abs/1512.03385>`__); see the module
    docstring for ``out_indices``."""

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        stem_channels: int = 64,
        base_channels: int = 64,
        expansion: int | None = None,
        num_stages: int = 4,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        out_indices: Sequence[int] = (4,),
        style: str = "pytorch",
        deep_stem: bool = False,
        avg_down: bool = False,
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        norm_eval: bool = False,
        with_cp: bool = False,
        zero_init_residual: bool = False,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # noqa: B006 (copied by BaseModule)
        drop_path_rate: float = 0.0,
    ) -> None:
        indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        bad = [i for i in indices if not 0 <= i <= num_stages]
        if not indices or bad:
            raise ValueError(
                f"out_indices {tuple(indices)} must be in 0..{num_stages} (MMSelfSup's ResNet: "
                "0 is the stem, i the i-th stage)"
            )
        super().__init__(
            depth, in_channels=in_channels, stem_channels=stem_channels,
            base_channels=base_channels, expansion=expansion, num_stages=num_stages,
            strides=strides, dilations=dilations, out_indices=(num_stages - 1,), style=style,
            deep_stem=deep_stem, avg_down=avg_down, frozen_stages=frozen_stages,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, norm_eval=norm_eval, with_cp=with_cp,
            zero_init_residual=zero_init_residual, init_cfg=init_cfg,
            drop_path_rate=drop_path_rate,
        )  # fmt: skip
        self.out_indices = tuple(indices)

    def _preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self._stem(self._preprocess(x))
        outs = [x] if 0 in self.out_indices else []
        x = self.maxpool(x)
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i + 1 in self.out_indices:
                outs.append(x)
        return tuple(outs)


@MODELS.register_module(name="ResNetV1d", scope="mmselfsup")
class SelfSupResNetV1d(SelfSupResNet):
    """MMSelfSup's ``ResNetV1d``: deep stem and average-pooled strided shortcuts."""

    def __init__(self, **kwargs) -> None:
        _no_override(kwargs, "ResNetV1d")
        super().__init__(deep_stem=True, avg_down=True, **kwargs)


class Sobel(nn.Module):
    """Fixed 3 -> 2 channel layer: the channel mean, then horizontal and vertical Sobel
    filters (keys ``sobel.0`` and ``sobel.1``, frozen)."""

    def __init__(self) -> None:
        super().__init__()
        self.sobel = nn.Sequential(nn.Conv2d(3, 1, 1), nn.Conv2d(1, 2, 3, padding=1))
        for p in self.sobel.parameters():
            p.requires_grad = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        gray, edges = self.sobel
        kernel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        with torch.no_grad():
            gray.weight.fill_(1.0 / 3.0)
            gray.bias.zero_()
            edges.weight.copy_(torch.stack([kernel, kernel.t()])[:, None])
            edges.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sobel(x)


@MODELS.register_module(name="ResNetSobel", scope="mmselfsup")
class ResNetSobel(SelfSupResNet):
    """MMSelfSup's ``ResNetSobel``: a ResNet on 2 Sobel channels (``sobel_layer`` keys).

    Unlike MMSelfSup, the backbone's Kaiming init leaves the fixed filters as they are.
    """

    def __init__(self, **kwargs) -> None:
        if "in_channels" in kwargs:
            raise TypeError("ResNetSobel fixes in_channels=2 (the Sobel channels)")
        super().__init__(in_channels=2, **kwargs)
        self.sobel_layer = Sobel()

    def init_weights(self) -> None:
        super().init_weights()
        self.sobel_layer.reset_parameters()

    def _preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return self.sobel_layer(x)
