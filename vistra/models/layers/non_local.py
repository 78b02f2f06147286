"""``NonLocal2d`` (`Non-local Neural Networks <https://arxiv.org/abs/1711.07971>`_), MMCV's
2D non-local block.

Keys: ``g``, ``theta``, ``phi`` (1x1 ``ConvModule`` projections to ``inter_channels``;
``theta``/``phi`` absent in ``'gaussian'`` mode), ``conv_out`` (back to ``in_channels``, with
``norm_cfg``), ``concat_project`` (``'concatenation'`` mode). With ``sub_sample`` the pooled
projections are ``nn.Sequential(conv, pool)``: ``g.0``, ``phi.0``.

Subclasses (the disentangled block of DNLNet) override the pairwise functions or
:meth:`NonLocal2d.forward` and reuse :meth:`NonLocal2d.project` and
:meth:`NonLocal2d.pairwise`.
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.init import constant_init, normal_init
from vistra.models.layers.conv_module import ConvModule

MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")


class NonLocal2d(nn.Module):
    """``x + conv_out(attention(x) @ g(x))`` with the pairwise attention of ``mode``:
    ``'embedded_gaussian'`` (softmax of ``theta . phi``, divided by ``sqrt(inter_channels)``
    with ``use_scale``), ``'gaussian'`` (softmax of ``x . x``), ``'dot_product'`` and
    ``'concatenation'`` (normalised by the number of positions).
    ``inter_channels = max(in_channels // reduction, 1)``. ``sub_sample`` max-pools ``g`` and
    ``phi`` by 2. ``init_weights`` takes MMCV's ``std`` and ``zeros_init`` (``conv_out`` — its
    norm when it has one — starts at zero, so the block starts as the identity)."""

    _abbr_ = "nonlocal_block"

    def __init__(
        self,
        in_channels: int,
        sub_sample: bool = False,
        conv_cfg: dict | None = dict(type="Conv2d"),  # noqa: B006 (never mutated)
        reduction: int = 2,
        use_scale: bool = True,
        norm_cfg: dict | None = None,
        mode: str = "embedded_gaussian",
        **init_kwargs,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"NonLocal2d mode={mode!r}: valid: {list(MODES)}")
        unknown = sorted(set(init_kwargs) - {"std", "zeros_init"})
        if unknown:
            raise TypeError(
                f"NonLocal2d got unexpected arguments {unknown}; init_weights takes std, zeros_init"
            )
        self.in_channels, self.reduction, self.use_scale = in_channels, reduction, use_scale
        self.inter_channels = max(in_channels // reduction, 1)
        self.mode, self.sub_sample = mode, sub_sample

        def project(cin: int, cout: int, norm: dict | None = None) -> ConvModule:
            return ConvModule(cin, cout, 1, conv_cfg=conv_cfg, norm_cfg=norm, act_cfg=None)

        self.g: nn.Module = project(in_channels, self.inter_channels)
        self.conv_out = project(self.inter_channels, in_channels, norm_cfg)
        if mode != "gaussian":
            self.theta = project(in_channels, self.inter_channels)
            self.phi: nn.Module = project(in_channels, self.inter_channels)
        if mode == "concatenation":
            # MMCV builds this one without conv_cfg: a plain Conv2d, no bias, then ReLU
            self.concat_project = ConvModule(
                self.inter_channels * 2, 1, 1, bias=False, act_cfg=dict(type="ReLU")
            )
        self.init_weights(**init_kwargs)
        if sub_sample:
            pool = nn.MaxPool2d(kernel_size=(2, 2))
            self.g = nn.Sequential(self.g, pool)
            self.phi = nn.Sequential(self.phi, pool) if mode != "gaussian" else pool

    def init_weights(self, std: float = 0.01, zeros_init: bool = True) -> None:
        projections = [self.g] if self.mode == "gaussian" else [self.g, self.theta, self.phi]
        for module in projections:
            conv_module = module[0] if isinstance(module, nn.Sequential) else module
            normal_init(conv_module.conv, std=std)
        target = self.conv_out.norm if self.conv_out.norm_cfg is not None else self.conv_out.conv
        if zeros_init:
            constant_init(target, 0)
        else:
            normal_init(target, std=std)

    # ------------------------------------------------------------------ pairwise functions
    def gaussian(self, theta_x: torch.Tensor, phi_x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(theta_x, phi_x).softmax(dim=-1)

    def embedded_gaussian(self, theta_x: torch.Tensor, phi_x: torch.Tensor) -> torch.Tensor:
        weight = torch.matmul(theta_x, phi_x)
        if self.use_scale:
            weight = weight / theta_x.shape[-1] ** 0.5
        return weight.softmax(dim=-1)

    def dot_product(self, theta_x: torch.Tensor, phi_x: torch.Tensor) -> torch.Tensor:
        weight = torch.matmul(theta_x, phi_x)
        return weight / weight.shape[-1]

    def concatenation(self, theta_x: torch.Tensor, phi_x: torch.Tensor) -> torch.Tensor:
        # every (query, key) pair as a [theta; phi] column, scored by concat_project
        h, w = theta_x.shape[2], phi_x.shape[3]
        pairs = torch.cat([theta_x.repeat(1, 1, 1, w), phi_x.repeat(1, 1, h, 1)], dim=1)
        weight = self.concat_project(pairs)
        n, _, h, w = weight.shape
        weight = weight.view(n, h, w)
        return weight / weight.shape[-1]

    def pairwise(self, theta_x: torch.Tensor, phi_x: torch.Tensor) -> torch.Tensor:
        """The attention of ``mode``, ``(N, HW, HW')``."""
        return getattr(self, self.mode)(theta_x, phi_x)

    # ------------------------------------------------------------------ forward
    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``g_x`` ``(N, HW', C')``, and ``theta_x``/``phi_x`` laid out for ``mode``:
        ``(N, HW, C')``/``(N, C', HW')``, or ``(N, C', HW, 1)``/``(N, C', 1, HW')`` for
        ``'concatenation'``."""
        n = x.shape[0]
        g_x = self.g(x).view(n, self.inter_channels, -1).permute(0, 2, 1)
        if self.mode == "gaussian":
            theta_x = x.view(n, self.in_channels, -1).permute(0, 2, 1)
            phi_x = (self.phi(x) if self.sub_sample else x).view(n, self.in_channels, -1)
        elif self.mode == "concatenation":
            theta_x = self.theta(x).view(n, self.inter_channels, -1, 1)
            phi_x = self.phi(x).view(n, self.inter_channels, 1, -1)
        else:
            theta_x = self.theta(x).view(n, self.inter_channels, -1).permute(0, 2, 1)
            phi_x = self.phi(x).view(n, self.inter_channels, -1)
        return g_x, theta_x, phi_x

    def aggregate(self, weight: torch.Tensor, g_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``weight @ g_x`` as a ``(N, C', H, W)`` map."""
        y = torch.matmul(weight, g_x).permute(0, 2, 1).contiguous()
        return y.reshape(x.shape[0], self.inter_channels, *x.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g_x, theta_x, phi_x = self.project(x)
        return x + self.conv_out(self.aggregate(self.pairwise(theta_x, phi_x), g_x, x))
