"""Model placement for a run: SyncBN <-> BN conversion and DDP wrapping."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vistra.dist.launch import DistInfo

logger = logging.getLogger("vistra")


class BatchNormXd(nn.modules.batchnorm._BatchNorm):
    """Batch norm over any input rank, ``(N, C)`` to ``(N, C, D, H, W)``, as SyncBN is.

    What a reverted SyncBN becomes: a projector neck's SyncBN sees ``(N, C)`` features,
    which ``BatchNorm2d`` would reject. The state-dict keys are those of any BN.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {input.dim()}-D")


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``SyncBatchNorm`` with a :class:`BatchNormXd` holding the same state.

    SyncBN only works inside a process group on CUDA; a config written for 8 GPUs must
    still run on one CPU, so single-process and CPU runs convert it back.
    """
    out = module
    if isinstance(module, nn.SyncBatchNorm):
        out = BatchNormXd(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            with torch.no_grad():
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
            out.weight.requires_grad_(module.weight.requires_grad)
            out.bias.requires_grad_(module.bias.requires_grad)
        if module.track_running_stats:
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        setattr(out, name, revert_sync_batchnorm(child))
    return out


def has_sync_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.SyncBatchNorm) for m in module.modules())


def place_model(
    model: nn.Module,
    dist: DistInfo,
    wrapper_cfg: dict[str, Any] | None = None,
    sync_bn: str | None = None,
) -> nn.Module:
    """Move to the device; fix up BN for the run; wrap in DDP when distributed.

    ``wrapper_cfg`` is the config's ``model_wrapper_cfg`` (``find_unused_parameters``,
    ``broadcast_buffers``, ...); ``sync_bn='torch'`` converts BN to SyncBN on GPU runs.
    """
    on_gpu = dist.device.type == "cuda"
    if has_sync_batchnorm(model) and not (dist.world_size > 1 and on_gpu):
        logger.info(
            "SyncBN converted to BN: this run is %s",
            "single-process" if dist.world_size == 1 else "on CPU",
        )
        model = revert_sync_batchnorm(model)
    if sync_bn == "torch" and dist.world_size > 1 and on_gpu:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif sync_bn not in (None, "torch"):
        raise ValueError(f"env_cfg / cfg key sync_bn={sync_bn!r}: only 'torch' is supported")
    model = model.to(dist.device)
    if dist.world_size <= 1:
        return model
    kwargs = dict(wrapper_cfg or {})
    kwargs.pop("type", None)
    if on_gpu:
        kwargs.setdefault("device_ids", [dist.device.index])
    kwargs.setdefault("find_unused_parameters", False)
    # MMEngine's default is broadcast_buffers=False (buffers stay rank-local after the start;
    # vistra broadcasts all weights and buffers from rank 0 once, before training). Newer
    # torch deprecates that flag for forward_sync_buffers, which means the same here.
    broadcast = bool(kwargs.pop("broadcast_buffers", False))
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        kwargs.setdefault("forward_sync_buffers", broadcast)
    else:
        kwargs["broadcast_buffers"] = broadcast
    return DistributedDataParallel(model, **kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper, or the model itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model
