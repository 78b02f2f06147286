"""``PrepareProtoBeforeValLoopHook`` (MMPretrain): re-embed a retriever's gallery before
each validation, since training has changed the encoder that embedded it; and, before the
run, build the gallery loader a config gives as ``model.prototype`` (a dataloader config:
models do not import the engine's builders, so the engine builds it for them)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from vistra.dist.model_wrap import unwrap
from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS


@HOOKS.register_module()
class PrepareProtoBeforeValLoopHook(Hook):
    """Calls the model's ``prepare_prototype()`` at ``before_val``; warns for a model that
    is not a retriever (then the hook has nothing to do)."""

    def before_run(self, runner: Any) -> None:
        from vistra.models.retrievers import BaseRetriever

        model = unwrap(runner.model)
        if isinstance(model, BaseRetriever) and isinstance(model.prototype, Mapping):
            from vistra.dist import get_rank
            from vistra.engine.build import build_dataloader

            cfg = dict(model.prototype)
            # one pass per validation: workers that outlive it would only hold memory
            cfg.setdefault("persistent_workers", False)
            model.prototype = build_dataloader(cfg, "model.prototype", seed=0, rank=get_rank())

    def before_val(self, runner: Any) -> None:
        from vistra.models.retrievers import BaseRetriever  # torch-heavy; imported when used

        model = unwrap(runner.model)
        if isinstance(model, BaseRetriever):
            model.prepare_prototype()
        else:
            warnings.warn(
                "PrepareProtoBeforeValLoopHook only acts on retrievers (BaseRetriever "
                f"subclasses such as ImageToImageRetriever), got {type(model).__name__}",
                stacklevel=2,
            )
