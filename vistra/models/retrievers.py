"""Image retrieval models (MMPretrain's ``BaseRetriever`` and ``ImageToImageRetriever``).

A retriever embeds images with its ``image_encoder`` and, at predict time, ranks a
*prototype* set (the gallery) by similarity to each query. Training only sees the
encoder and the ``head`` (a classification loss such as ArcFace's over the training
identities); the gallery is embedded again before each validation
(``PrepareProtoBeforeValLoopHook``), since the encoder has changed.

State-dict keys are ``image_encoder.*`` (``image_encoder.0.*``, ``image_encoder.1.*``...
when the encoder is a list of configs, which builds an ``nn.Sequential``) and ``head.*``;
the gallery features (``prototype_vecs``) are a non-persistent buffer, never saved.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from vistra.data.structures import DataSample
from vistra.dist.collect import is_distributed
from vistra.models.base import BaseModel
from vistra.models.classifiers import _preprocessor_cfg
from vistra.registry import MODELS

logger = logging.getLogger("vistra")

SIMILARITIES = ("cosine_similarity",)


def cosine_similarity(query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` cosines between the rows of ``query`` (N, C) and ``gallery`` (M, C).

    One matrix product of the normalised rows: broadcasting the pair (N, M, C) as
    ``torch.cosine_similarity`` would takes N * M * C floats (gigabytes for a batch
    against the 12k images of the In-shop gallery).
    """
    return F.normalize(query, dim=-1) @ F.normalize(gallery, dim=-1).T


class BaseRetriever(BaseModel):
    """What every retriever offers (the hook and users' code rely on these names).

    ``prototype`` is the database to search: a ``DataLoader``, a dataloader config dict,
    the path of a saved ``(M, C)`` tensor, or that tensor.
    """

    def __init__(
        self,
        prototype: DataLoader | dict | str | torch.Tensor | None = None,
        data_preprocessor: dict | nn.Module | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.prototype = prototype
        self.prototype_inited = False

    def extract_feat(self, inputs: torch.Tensor) -> Any:
        raise NotImplementedError

    def loss(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample] | None = None
    ) -> list[DataSample]:
        raise NotImplementedError

    def matching(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def prepare_prototype(self) -> None:
        """Compute the prototype features (``prototype_vecs``) before predicting."""
        raise NotImplementedError

    def dump_prototype(self, path: str) -> None:
        raise NotImplementedError


@MODELS.register_module()
class ImageToImageRetriever(BaseRetriever):
    """Supervised image-to-image retrieval with MMPretrain's arguments.

    ``image_encoder`` is a config (or module), or a list of them run in sequence
    (``[backbone, neck]``). ``head`` computes the training loss; without it the model can
    only predict. ``similarity_fn`` is ``'cosine_similarity'`` or a callable
    ``(query (N, C), gallery (M, C)) -> (N, M)``, larger meaning more similar.
    ``topk`` limits ``pred_label`` to the best ``topk`` gallery indices (-1: all of them);
    ``pred_score`` is always the similarity to every gallery item, in gallery order.
    ``train_cfg=dict(augments=...)`` becomes the data preprocessor's batch augments;
    ``pretrained`` is the deprecated spelling of ``init_cfg=dict(type='Pretrained', ...)``.
    """

    def __init__(
        self,
        image_encoder: dict | list[dict] | nn.Module,
        prototype: DataLoader | dict | str | torch.Tensor,
        head: dict | nn.Module | None = None,
        pretrained: str | None = None,
        similarity_fn: str | Callable = "cosine_similarity",
        train_cfg: dict | None = None,
        data_preprocessor: dict | nn.Module | None = None,
        topk: int = -1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if pretrained is not None:
            warnings.warn(
                "ImageToImageRetriever(pretrained=...) is deprecated, use "
                "init_cfg=dict(type='Pretrained', ...)",
                DeprecationWarning,
                stacklevel=2,
            )
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        if not isinstance(prototype, (DataLoader, Mapping, str, torch.Tensor)):
            raise TypeError(
                "ImageToImageRetriever prototype must be a DataLoader, a dataloader config "
                f"dict, the path of a saved tensor or a tensor, got {type(prototype).__name__}"
            )
        if not callable(similarity_fn) and similarity_fn not in SIMILARITIES:
            raise ValueError(
                f"ImageToImageRetriever similarity_fn={similarity_fn!r}: use one of "
                f"{SIMILARITIES} or a callable (query, gallery) -> similarities"
            )
        if not isinstance(topk, int) or isinstance(topk, bool) or (topk < 1 and topk != -1):
            raise ValueError(f"ImageToImageRetriever topk must be -1 or an int >= 1, got {topk!r}")
        if train_cfg is not None and "augments" not in train_cfg:
            train_cfg = None  # MMPretrain reads nothing else from it
        super().__init__(
            prototype=prototype,
            data_preprocessor=_preprocessor_cfg(data_preprocessor, train_cfg),
            init_cfg=init_cfg,
        )
        self.image_encoder = _build_encoder(image_encoder)
        self.head = _build(head, "model.head") if head is not None else None
        self.similarity = similarity_fn
        self.topk = topk

    @property
    def similarity_fn(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        return self.similarity if callable(self.similarity) else cosine_similarity

    # ------------------------------------------------------------------ forward modes
    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: Sequence[DataSample] | None = None,
        mode: str = "tensor",
    ) -> Any:
        if mode == "tensor":
            return self.extract_feat(inputs)
        if mode == "loss":
            return self.loss(inputs, data_samples)  # type: ignore[arg-type]
        if mode == "predict":
            return self.predict(inputs, data_samples)
        raise ValueError(f"invalid forward mode {mode!r}; choose 'tensor', 'loss' or 'predict'")

    def extract_feat(self, inputs: torch.Tensor) -> Any:
        """The encoder's output (a tuple of stages for a backbone/neck encoder)."""
        return self.image_encoder(inputs)

    def loss(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        if self.head is None:
            raise ValueError("ImageToImageRetriever without a head cannot run mode='loss'")
        return self.head.loss(self.extract_feat(inputs), data_samples)

    def predict(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample] | None = None
    ) -> list[DataSample]:
        if not self.prototype_inited:
            self.prepare_prototype()
        return self._get_predictions(self.matching(_last(self.extract_feat(inputs))), data_samples)

    def matching(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Similarities of query features ``(N, C)`` to the prototype: ``score`` (N, M),
        and the gallery indices ranked best first (``pred_label``) with their scores."""
        sim = self.similarity_fn(inputs, self.prototype_vecs)
        k = sim.size(-1) if self.topk == -1 else min(self.topk, sim.size(-1))
        # the best k only: a full sort of a 12k gallery per query is wasted when k is small
        ranked, indices = sim.topk(k, dim=-1)
        return dict(score=sim, pred_label=indices, pred_score=ranked)

    def _get_predictions(
        self, result: dict[str, torch.Tensor], data_samples: Sequence[DataSample] | None
    ) -> list[DataSample]:
        if data_samples is None:
            data_samples = [DataSample() for _ in range(result["score"].size(0))]
        for sample, score, label in zip(data_samples, result["score"], result["pred_label"]):
            sample.set_pred_score(score).set_pred_label(label)
        return list(data_samples)

    # ------------------------------------------------------------------ prototype
    @torch.no_grad()
    def prepare_prototype(self) -> None:
        """(Re)compute ``prototype_vecs`` (M, C) on the encoder's device from the prototype."""
        device = next(self.image_encoder.parameters()).device
        if isinstance(self.prototype, torch.Tensor):
            vecs = self.prototype
        elif isinstance(self.prototype, str):
            vecs = _load_prototype(self.prototype)
        else:
            vecs = self._features_of(self.prototype, device)
        self.register_buffer("prototype_vecs", vecs.to(device), persistent=False)
        self.prototype_inited = True

    def _features_of(self, loader: DataLoader | Mapping, device: torch.device) -> torch.Tensor:
        """Each gallery sample's feature, at the row of its ``sample_idx``.

        Under torch.distributed each rank embeds its share and the rows are summed across
        ranks; a sampler that pads its last share repeats samples, so rows are divided by
        the times each was seen.
        """
        if isinstance(loader, Mapping):
            loader = _build_loader(loader)
        was_training = self.training
        self.eval()
        num = len(loader.dataset)
        logger.info("Prepare prototype: embedding %d gallery samples", num)
        vecs: torch.Tensor | None = None
        seen = torch.zeros(num, device=device)
        try:
            for batch in loader:
                data = self.data_preprocessor(batch, training=False)
                feats = _last(self.extract_feat(data["inputs"]))
                if vecs is None:
                    vecs = torch.zeros(num, feats.shape[-1], device=device, dtype=feats.dtype)
                index = torch.tensor([_sample_idx(s) for s in data["data_samples"]], device=device)
                vecs.index_add_(0, index, feats.to(device))
                seen.index_add_(0, index, torch.ones(len(index), device=device))
        finally:
            self.train(was_training)
        if vecs is None:
            raise ValueError("ImageToImageRetriever prototype: the gallery dataloader is empty")
        if is_distributed():
            import torch.distributed as dist

            dist.all_reduce(vecs)
            dist.all_reduce(seen)
        return vecs / seen.clamp(min=1).unsqueeze(1)

    def dump_prototype(self, path: str) -> None:
        """Save the prototype features (``torch.save``), to pass as ``prototype=path`` later."""
        if not self.prototype_inited:
            self.prepare_prototype()
        torch.save(self.prototype_vecs.cpu(), path)


def _last(feats: Any) -> torch.Tensor:
    """The last stage of a tuple of stages (a retrieval embedding is the last one)."""
    return feats[-1] if isinstance(feats, (tuple, list)) else feats


def _sample_idx(sample: DataSample) -> int:
    idx = sample.get("sample_idx")
    if idx is None:
        raise KeyError(
            "ImageToImageRetriever prototype: gallery samples need 'sample_idx' metainfo "
            "(PackInputs packs it by default) to place their features"
        )
    return int(idx)


def _load_prototype(path: str) -> torch.Tensor:
    vecs = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(vecs, torch.Tensor) or vecs.dim() != 2:
        raise ValueError(f"prototype file {path!r} must hold one (M, C) tensor")
    return vecs


def _build_loader(cfg: Mapping) -> DataLoader:
    """A dataloader config as ``prototype`` is built by the engine (models never import it):
    ``PrepareProtoBeforeValLoopHook`` replaces it with the built loader before the run."""
    raise ValueError(
        "ImageToImageRetriever prototype is a dataloader config, which only a run can build: "
        "add dict(type='PrepareProtoBeforeValLoopHook') to custom_hooks (MMPretrain's "
        "retrieval configs do), or pass a built DataLoader, a tensor or a saved tensor's path"
    )


def _build(cfg: dict | nn.Module, key_path: str) -> nn.Module:
    return cfg if isinstance(cfg, nn.Module) else MODELS.build(cfg, key_path=key_path)


def _build_encoder(cfg: dict | list[dict] | nn.Module) -> nn.Module:
    """A list of configs is a pipeline of modules (MMEngine builds an ``nn.Sequential``,
    hence keys ``image_encoder.<i>.*``)."""
    if isinstance(cfg, (list, tuple)):
        return nn.Sequential(*(_build(c, f"model.image_encoder[{i}]") for i, c in enumerate(cfg)))
    return _build(cfg, "model.image_encoder")
