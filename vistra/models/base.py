"""Base classes every vistra model builds on.

``BaseModule`` adds OpenMMLab's ``init_cfg`` to ``nn.Module``; ``BaseModel`` adds a data
preprocessor and the three forward modes (``'loss'``, ``'predict'``, ``'tensor'``).

The default training step is *not* here: it lives in ``engine/loops.py`` so that a reader
sees backward and ``optimizer.step()`` in one place. A model that needs its own step
(several optimizers, a momentum encoder, ...) defines ``train_step(data, optim_wrapper)``
returning a dict of logged values, and the loop calls it instead.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample


class BaseModule(nn.Module):
    """``nn.Module`` with OpenMMLab's ``init_cfg`` weight initialisation.

    ``init_cfg`` is a dict or list of dicts such as ``dict(type='Kaiming', layer='Conv2d')``
    or ``dict(type='Pretrained', checkpoint='x.pth', prefix='backbone.')``. Initialisers run
    on this module first, then children initialise themselves, then ``Pretrained`` entries
    load on top, the order MMEngine uses.
    """

    def __init__(self, init_cfg: dict | list[dict] | None = None) -> None:
        super().__init__()
        self._is_init = False
        self.init_cfg = copy.deepcopy(init_cfg)

    @property
    def is_init(self) -> bool:
        return self._is_init

    def init_weights(self) -> None:
        from vistra.models.init import initialize  # torch-heavy; imported when used

        if self._is_init:
            return
        cfgs = _as_list(self.init_cfg)
        pretrained = [c for c in cfgs if c.get("type") == "Pretrained"]
        others = [c for c in cfgs if c.get("type") != "Pretrained"]
        if others:
            initialize(self, others)
        _init_children(self)
        if pretrained:
            initialize(self, pretrained)
        self._is_init = True


def _init_children(module: nn.Module) -> None:
    """Initialise every child that can initialise itself. Plain containers
    (``nn.ModuleList``, ``nn.Sequential``) are looked through, as MMEngine's own container
    classes are BaseModules that pass the call on."""
    for child in module.children():
        if hasattr(child, "init_weights"):
            if not getattr(child, "is_init", False):
                child.init_weights()
        else:
            _init_children(child)


def _as_list(cfg: dict | list[dict] | None) -> list[dict]:
    if cfg is None:
        return []
    return [dict(c) for c in (cfg if isinstance(cfg, (list, tuple)) else [cfg])]


class BaseModel(BaseModule):
    """A model with a data preprocessor and ``forward(inputs, data_samples, mode)``.

    Modes, as in MMEngine:
    - ``'loss'``: a dict of loss tensors (keys containing ``loss`` are summed for backward);
    - ``'predict'``: a list of ``DataSample`` with predictions filled in;
    - ``'tensor'``: the raw network output.
    """

    def __init__(
        self,
        data_preprocessor: dict | nn.Module | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if data_preprocessor is None:
            data_preprocessor = dict(type="BaseDataPreprocessor")
        if isinstance(data_preprocessor, dict):
            from vistra.registry import MODELS

            data_preprocessor = MODELS.build(data_preprocessor, key_path="model.data_preprocessor")
        self.data_preprocessor = data_preprocessor

    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: Sequence[DataSample] | None = None,
        mode: str = "tensor",
    ) -> Any:
        raise NotImplementedError

    def val_step(self, data: dict) -> list[DataSample]:
        """Preprocess a collated batch and predict; used by the val and test loops."""
        data = self.data_preprocessor(data, training=False)
        return self(**data, mode="predict")

    def test_step(self, data: dict) -> list[DataSample]:
        return self.val_step(data)


def parse_losses(losses: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum the entries whose key contains ``'loss'``; return the total and values to log.

    A value may be a tensor or a list of tensors (summed after taking each mean), as in
    MMEngine. Non-loss entries (``acc``, ...) are logged but not back-propagated.
    """
    log_vars: dict[str, torch.Tensor] = {}
    for name, value in losses.items():
        if isinstance(value, torch.Tensor):
            log_vars[name] = value.mean()
        elif isinstance(value, (list, tuple)) and all(isinstance(v, torch.Tensor) for v in value):
            log_vars[name] = sum(v.mean() for v in value)  # type: ignore[assignment]
        else:
            raise TypeError(
                f"loss '{name}' must be a tensor or a list of tensors, got {type(value).__name__}"
            )
    loss_terms = [v for k, v in log_vars.items() if "loss" in k]
    if not loss_terms:
        raise ValueError(f"the model returned no entry with 'loss' in its name: {sorted(losses)}")
    loss = sum(loss_terms)
    logged = {"loss": float(loss.detach())}
    logged.update({k: float(v.detach()) for k, v in log_vars.items()})
    return loss, logged  # type: ignore[return-value]
