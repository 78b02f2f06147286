"""CLIP as a frozen target generator for masked image modelling (``CLIPGenerator``).

CLIP (Radford et al., 2021, `Learning Transferable Visual Models From Natural Language
Supervision <https://arxiv.org/abs/2103.00020>`_) serves EVA and MILAN as a teacher: its
image encoder, a ViT with QuickGELU MLPs and a final projection, gives one feature per
token (class token first) and, from its last block, the head-averaged attention map
whose class-token row MILAN uses as patch importance.

Key layout: OpenAI's CLIP checkpoint, under ``tokenizer.`` as MMPretrain's and MMSelfSup's
``CLIPGenerator`` keep it: ``tokenizer.visual.{conv1,class_embedding,positional_embedding,
ln_pre,transformer.resblocks.{i}.{attn.in_proj_*,attn.out_proj.*,ln_1,mlp.c_fc,mlp.c_proj,
ln_2},ln_post,proj}`` and the text tower (``tokenizer.transformer.*``,
``token_embedding``, ``positional_embedding``, ``ln_final``, ``text_projection``,
``logit_scale``), which the targets never use but the checkpoints carry. The
architecture is read off the checkpoint (as upstream does); for a URL that is fetched
later (``init_weights``) it is OpenAI's ViT-B/16.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from vistra.models.base import BaseModule
from vistra.registry import MODELS

__all__ = [
    "CLIPGenerator",
    "CLIPModel",
    "QuickGELU",
    "clip_arch",
    "random_clip_file",
    "save_random_clip",
]

# OpenAI's ViT-B/16 (the checkpoint the EVA and MILAN configs name)
VIT_B16 = dict(
    embed_dim=512,
    image_resolution=224,
    vision_layers=12,
    vision_width=768,
    vision_patch_size=16,
    context_length=77,
    vocab_size=49408,
    transformer_width=512,
    transformer_heads=8,
    transformer_layers=12,
)


@MODELS.register_module()
class QuickGELU(nn.Module):
    """CLIP's activation ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (CLIP's weights are often half precision)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class _Attention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (``in_proj_weight``, ``in_proj_bias``,
    ``out_proj``) on batch-first tokens, through scaled_dot_product_attention; with
    ``need_weights`` the attention probabilities are computed explicitly and returned
    averaged over heads, as ``nn.MultiheadAttention`` does."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, tokens, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(batch, tokens, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        mask = None if attn_mask is None else attn_mask.to(q.dtype)
        weights = None
        if need_weights:
            logits = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
            if mask is not None:
                logits = logits + mask
            probs = logits.softmax(dim=-1)
            out = probs @ v
            weights = probs.mean(dim=1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, tokens, width)
        return self.out_proj(out), weights


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = _Attention(width, heads)
        self.ln_1 = _LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, width * 4)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(width * 4, width)),
                ]
            )
        )
        self.ln_2 = _LayerNorm(width)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, weights = self.attn(self.ln_1(x), attn_mask, need_weights)
        x = x + out
        return x + self.mlp(self.ln_2(x)), weights


class _Transformer(nn.Module):
    """``resblocks.{i}``; batch-first tokens (OpenAI's runs sequence-first: same numbers)."""

    def __init__(self, width: int, layers: int, heads: int, causal_length: int = 0) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(_ResidualBlock(width, heads) for _ in range(layers))
        self.attn_mask: torch.Tensor | None = None
        if causal_length:  # the text tower's causal mask: not a checkpoint entry
            self.attn_mask = torch.full((causal_length, causal_length), float("-inf")).triu_(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The tokens after the last block and that block's head-averaged attention."""
        mask = None if self.attn_mask is None else self.attn_mask.to(x.device)
        weights = None
        for i, block in enumerate(self.resblocks):
            x, weights = block(x, mask, need_weights=i == self.layers - 1)
        return x, weights


class _VisualTransformer(nn.Module):
    def __init__(
        self, resolution: int, patch_size: int, width: int, layers: int, heads: int, out_dim: int
    ) -> None:
        super().__init__()
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        grid = resolution // patch_size
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = _LayerNorm(width)
        self.transformer = _Transformer(width, layers, heads)
        self.ln_post = _LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, out_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        if x.shape[1] != self.positional_embedding.shape[0]:
            side = int(math.sqrt(self.positional_embedding.shape[0] - 1))
            raise ValueError(
                f"CLIP's image encoder takes {side * self.conv1.stride[0]}px images "
                f"({self.positional_embedding.shape[0] - 1} patches), got "
                f"{x.shape[1] - 1} patches"
            )
        x = self.ln_pre(x + self.positional_embedding.to(x.dtype))
        x, attention = self.transformer(x)
        return self.ln_post(x) @ self.proj, attention


class CLIPModel(nn.Module):
    """OpenAI's CLIP (a ViT image encoder and the text tower), key for key."""

    def __init__(
        self,
        embed_dim: int,
        image_resolution: int,
        vision_layers: int,
        vision_width: int,
        vision_patch_size: int,
        context_length: int,
        vocab_size: int,
        transformer_width: int,
        transformer_heads: int,
        transformer_layers: int,
    ) -> None:
        super().__init__()
        self.context_length = context_length
        self.visual = _VisualTransformer(
            image_resolution,
            vision_patch_size,
            vision_width,
            vision_layers,
            vision_width // 64,
            embed_dim,
        )
        self.transformer = _Transformer(
            transformer_width, transformer_layers, transformer_heads, context_length
        )
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, transformer_width))
        self.ln_final = _LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.zeros(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def encode_image(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, 3, H, W)`` -> projected tokens ``(N, 1 + L, embed_dim)`` and the last
        block's head-averaged attention ``(N, 1 + L, 1 + L)``."""
        return self.visual(image.to(self.visual.conv1.weight.dtype))


def clip_arch(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """The :class:`CLIPModel` arguments of an OpenAI-layout CLIP state dict (ViT only)."""
    if "visual.proj" not in state_dict:
        raise ValueError(
            "CLIPGenerator needs a ViT CLIP checkpoint in OpenAI's layout (a 'visual.proj' "
            f"key); got keys {sorted(state_dict)[:6]}..."
        )
    conv = state_dict["visual.conv1.weight"]
    grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    width = state_dict["ln_final.weight"].shape[0]
    text_blocks = {k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks.")}
    return dict(
        embed_dim=state_dict["text_projection"].shape[1],
        image_resolution=conv.shape[-1] * grid,
        vision_layers=sum(
            k.startswith("visual.") and k.endswith(".attn.in_proj_weight") for k in state_dict
        ),
        vision_width=conv.shape[0],
        vision_patch_size=conv.shape[-1],
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        transformer_width=width,
        transformer_heads=width // 64,
        transformer_layers=len(text_blocks),
    )


def _clip_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    state = checkpoint.get("state_dict", checkpoint)
    # OpenAI's files carry three ints beside the weights
    return {
        k: v
        for k, v in state.items()
        if k not in ("input_resolution", "context_length", "vocab_size") and torch.is_tensor(v)
    }


def _local_file(path: str) -> Path | None:
    from vistra.checkpoint.sources import is_url, resolve_source

    source = resolve_source(path)
    if is_url(source):
        return None
    file = Path(source).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"CLIPGenerator(tokenizer_path={path!r}): no such file")
    return file


@MODELS.register_module()
class CLIPGenerator(BaseModule):
    """The frozen CLIP image encoder of ``tokenizer_path`` (a file or URL of OpenAI's CLIP
    weights). ``forward(x)`` gives ``(features, attention)``: the projected tokens
    ``(N, 1 + L, C)`` and the last block's attention ``(N, 1 + L, 1 + L)``.

    A local file is read when the module is built (its architecture is the checkpoint's);
    a URL is fetched by :meth:`init_weights` (the Runner calls it), so that building a
    model needs no network. The weights never train (no gradient, eval mode kept).
    """

    def __init__(self, tokenizer_path: str) -> None:
        super().__init__()
        self.tokenizer_path = tokenizer_path
        file = _local_file(tokenizer_path)
        state = None
        if file is not None:
            from vistra.checkpoint.io import load_checkpoint_file

            state = _clip_state(load_checkpoint_file(file))
        self.tokenizer = CLIPModel(**(clip_arch(state) if state is not None else VIT_B16))
        self.tokenizer.requires_grad_(False)
        self._loaded = False
        if state is not None:
            self._load(state)

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        missing, _ = self.tokenizer.load_state_dict(state, strict=False)
        visual = [k for k in missing if k.startswith("visual.")]
        if visual:
            raise KeyError(
                f"CLIPGenerator(tokenizer_path={self.tokenizer_path!r}) lacks the image "
                f"encoder weights {visual[:5]}"
            )
        self._loaded = True

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        if not self._loaded:
            from vistra.checkpoint.io import load_checkpoint_file

            self._load(_clip_state(load_checkpoint_file(self.tokenizer_path)))

    def train(self, mode: bool = True) -> CLIPGenerator:
        super().train(mode)
        self.tokenizer.eval()  # a teacher: no train-mode behaviour
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokenizer.encode_image(x)


def save_random_clip(path: str | Path, seed: int = 0, **arch: int) -> Path:
    """Write a CLIP checkpoint of seeded random weights in OpenAI's layout (arguments of
    :class:`CLIPModel`, by default ViT-B/16's), for tests and offline smoke runs of EVA
    and MILAN. An existing file is kept."""
    path = Path(path)
    if path.is_file():
        return path
    gen = torch.Generator().manual_seed(seed)
    model = CLIPModel(**{**VIT_B16, **arch})
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return path


def random_clip_file(image_resolution: int, patch_size: int = 16, embed_dim: int = 512) -> str:
    """The path of a small CLIP checkpoint of fixed random weights for
    ``image_resolution``-pixel images (width 64, two image-encoder blocks, a one-block text
    tower), written once under ``~/.cache/vistra/random_clip``: a stand-in for OpenAI's
    weights in tests and offline smoke runs of EVA and MILAN
    (``model.target_generator.tokenizer_path=...``)."""
    name = f"clip-r{image_resolution}-p{patch_size}-d{embed_dim}.pth"
    path = Path.home() / ".cache" / "vistra" / "random_clip" / name
    arch = dict(
        embed_dim=embed_dim,
        image_resolution=image_resolution,
        vision_layers=2,
        vision_width=64,
        vision_patch_size=patch_size,
        context_length=8,
        vocab_size=16,
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=1,
    )
    return str(save_random_clip(path, **arch))
