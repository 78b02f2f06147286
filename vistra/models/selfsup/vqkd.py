"""``VQKD``, BEiT v2's visual tokenizer (vector-quantised knowledge distillation), `BEiT
v2: Masked Image Modeling with Vector-Quantized Visual Tokenizers
<https://arxiv.org/abs/2208.06366>`_: the encoder and codebook of the released tokenizer.

A BEiT ViT encodes the image; a two-layer task head (``Linear``, ``Tanh``, ``Linear``)
projects each patch feature to the codebook's width; the quantizer L2-normalises it and
picks the nearest of ``num_embed`` code vectors. The code index of each patch is BEiT v2's
target. The codebook (``NormEMAVectorQuantizer``) is a buffer-like parameter updated by an
exponential moving average of the features assigned to each code (in training mode) and
filled by k-means on the first batch when it starts empty (``kmeans_init``); in eval mode
only the code-usage statistic ``cluster_size`` moves.

Keys (both packages, the released ``vqkd_encoder.pth``): ``encoder.*`` (BEiT ViT),
``quantize.embedding.weight`` / ``quantize.embedding.initted``, ``quantize.cluster_size``,
``encode_task_layer.{0,2}``; ``decoder.*`` only with ``decoder_config``. MMSelfSup's
``VQKD`` (scope ``mmselfsup``) takes mmcls 1.0's encoder arguments
(``avg_token``/``output_cls_token``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.beit import BEiTViT
from vistra.models.backbones.vision_transformer import mmcls_out_type
from vistra.models.base import BaseModule
from vistra.registry import MODELS

__all__ = ["VQKD", "EmbeddingEMA", "NormEMAVectorQuantizer", "SelfSupVQKD", "kmeans"]


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks when a process group is running (the codebook statistics of the
    whole batch), the identity in one process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return tensor


def _sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    count = samples.shape[0]
    if count >= num:
        indices = torch.randperm(count, device=samples.device)[:num]
    else:
        indices = torch.randint(0, count, (num,), device=samples.device)
    return samples[indices]


def kmeans(
    samples: torch.Tensor, num_clusters: int, num_iters: int = 10, use_cosine_sim: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of ``samples`` ``(N, D)`` from randomly drawn samples; returns the
    means ``(num_clusters, D)`` and the cluster sizes. Empty clusters keep their mean."""
    dim = samples.shape[-1]
    means = _sample_vectors(samples, num_clusters)
    bins = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        if use_cosine_sim:
            dists = samples @ means.t()
        else:
            dists = -((samples[:, None, :] - means[None, :, :]) ** 2).sum(dim=-1)
        buckets = dists.max(dim=-1).indices
        bins = torch.bincount(buckets, minlength=num_clusters)
        empty = bins == 0
        new_means = buckets.new_zeros(num_clusters, dim, dtype=samples.dtype)
        new_means.scatter_add_(0, buckets[:, None].expand(-1, dim), samples)
        new_means = new_means / bins.masked_fill(empty, 1)[..., None]
        if use_cosine_sim:
            new_means = F.normalize(new_means, p=2, dim=-1)
        means = torch.where(empty[..., None], means, new_means)
    return means, bins


class EmbeddingEMA(nn.Module):
    """The codebook ``weight`` ``(num_tokens, codebook_dim)`` (no gradient) and the
    ``initted`` flag: 0 until k-means fills it (``kmeans_init``), else random unit vectors
    or the tensor saved at ``codebook_init_path``."""

    def __init__(
        self,
        num_tokens: int,
        codebook_dim: int,
        kmeans_init: bool = True,
        codebook_init_path: str | None = None,
    ) -> None:
        super().__init__()
        self.num_tokens, self.codebook_dim = num_tokens, codebook_dim
        if codebook_init_path is not None:
            weight = torch.load(codebook_init_path, map_location="cpu", weights_only=True).clone()
            initted = True
        elif kmeans_init:
            weight, initted = torch.zeros(num_tokens, codebook_dim), False
        else:
            weight = F.normalize(torch.randn(num_tokens, codebook_dim), p=2, dim=-1)
            initted = True
        self.register_buffer("initted", torch.Tensor([initted]))
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.update = True

    def init_embed_(self, data: torch.Tensor) -> None:
        """Fill the codebook by cosine k-means of ``data`` when it is still empty."""
        if self.initted:
            return
        embed, _ = kmeans(data, self.num_tokens, 10, use_cosine_sim=True)
        self.weight.data.copy_(embed)
        self.initted.data.copy_(torch.Tensor([True]))

    def forward(self, embed_id: torch.Tensor) -> torch.Tensor:
        return F.embedding(embed_id, self.weight)


class NormEMAVectorQuantizer(nn.Module):
    """Nearest-code quantisation of L2-normalised features with an EMA-updated codebook.

    ``forward(z)`` with ``z`` ``(B, C, h, w)`` returns ``(z_q, loss, indices)``: the
    straight-through quantised features, ``beta`` times the commitment MSE and the code
    index of each of the ``B*h*w`` positions.
    """

    def __init__(
        self,
        num_embed: int,
        embed_dims: int,
        beta: float,
        decay: float = 0.99,
        statistic_code_usage: bool = True,
        kmeans_init: bool = True,
        codebook_init_path: str | None = None,
    ) -> None:
        super().__init__()
        self.codebook_dim, self.num_tokens = embed_dims, num_embed
        self.beta, self.decay = beta, decay
        self.embedding = EmbeddingEMA(num_embed, embed_dims, kmeans_init, codebook_init_path)
        self.statistic_code_usage = statistic_code_usage
        if statistic_code_usage:
            self.register_buffer("cluster_size", torch.zeros(num_embed))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = F.normalize(z.permute(0, 2, 3, 1), p=2, dim=-1)
        flat = z.reshape(-1, self.codebook_dim)
        self.embedding.init_embed_(flat)
        codebook = self.embedding.weight
        # squared distances, expanded as upstream computes them (the argmin must agree)
        dist = (
            flat.pow(2).sum(dim=1, keepdim=True)
            + codebook.pow(2).sum(dim=1)
            - 2 * torch.einsum("bd,nd->bn", flat, codebook)
        )
        indices = torch.argmin(dist, dim=1)
        z_q = self.embedding(indices).view(z.shape)
        encodings = F.one_hot(indices, self.num_tokens).type(z.dtype)
        with torch.no_grad():
            bins = _all_reduce(encodings.sum(0))
            if self.statistic_code_usage and (not self.training or self.embedding.update):
                self.cluster_size.mul_(self.decay).add_(bins, alpha=1 - self.decay)
            if self.training and self.embedding.update:
                self._update_codebook(flat, encodings, bins)
        loss = self.beta * F.mse_loss(z_q.detach(), z)
        z_q = z + (z_q - z).detach()
        return z_q.permute(0, 3, 1, 2), loss, indices

    def _update_codebook(
        self, flat: torch.Tensor, encodings: torch.Tensor, bins: torch.Tensor
    ) -> None:
        """Move each used code towards the normalised mean of its features (EMA)."""
        empty = bins == 0
        embed_sum = _all_reduce(flat.t() @ encodings)
        means = F.normalize((embed_sum / bins.masked_fill(empty, 1.0).unsqueeze(0)).t(), dim=-1)
        weight = self.embedding.weight
        means = torch.where(empty[..., None], weight, means)
        weight.data.mul_(self.decay).add_(means, alpha=1 - self.decay)
        weight.data.copy_(F.normalize(weight.data, p=2, dim=-1))


@MODELS.register_module()
class VQKD(BaseModule):
    """VQKD tokenizer: ``forward(x)`` -> the code index of each patch, ``(B, L)``.

    ``encoder_config`` builds a :class:`BEiTViT` (``out_type='featmap'``); the decoder of
    the full VQKD is not needed to make targets and ``decoder_config`` only builds one.
    """

    def __init__(
        self,
        encoder_config: dict,
        decoder_config: dict | None = None,
        num_embed: int = 8192,
        embed_dims: int = 32,
        decay: float = 0.99,
        beta: float = 1.0,
        quantize_kmeans_init: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.encoder = self._build_encoder(encoder_config)
        if decoder_config is not None:
            self.decoder = self._build_encoder(decoder_config)
        self.quantize = NormEMAVectorQuantizer(
            num_embed=num_embed,
            embed_dims=embed_dims,
            beta=beta,
            decay=decay,
            kmeans_init=quantize_kmeans_init,
        )
        width = self.encoder.arch_settings["embed_dims"]
        self.encode_task_layer = nn.Sequential(
            nn.Linear(width, width), nn.Tanh(), nn.Linear(width, embed_dims)
        )

    def _build_encoder(self, cfg: dict) -> BEiTViT:
        return MODELS.build(dict(cfg, type=BEiTViT), key_path="model.target_generator.encoder")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(quantised features, code indices, commitment loss)`` of images ``x``."""
        features = self.encoder(x)[0]
        if features.dim() != 4:
            raise ValueError(
                "VQKD: the encoder must give a patch feature map (out_type='featmap'), got "
                f"shape {tuple(features.shape)}"
            )
        batch, channels, h, w = features.shape
        features = features.permute(0, 2, 3, 1).reshape(batch, h * w, channels)
        with torch.autocast(device_type=x.device.type, enabled=False):
            projected = self.encode_task_layer(features.type_as(self.encode_task_layer[-1].weight))
        side = int(projected.shape[1] ** 0.5)
        projected = projected.reshape(batch, side, side, -1).permute(0, 3, 1, 2)
        quantized, loss, indices = self.quantize(projected)
        return quantized, indices, loss

    def get_tokens(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        _, indices, _ = self.encode(x)
        return {"token": indices.view(x.shape[0], -1), "input_img": x}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_tokens(x)["token"]


@MODELS.register_module(name="VQKD", scope="mmselfsup")
class SelfSupVQKD(VQKD):
    """MMSelfSup 1.x's ``VQKD``: the encoder config uses mmcls 1.0 ``BEiT``'s
    ``avg_token``/``output_cls_token`` (both False: the patch feature map)."""

    def _build_encoder(self, cfg: dict) -> BEiTViT:
        cfg = dict(cfg)
        avg, cls = cfg.pop("avg_token", False), cfg.pop("output_cls_token", True)
        cfg["out_type"] = mmcls_out_type(avg, cls, "cls_token")
        return super()._build_encoder(cfg)
