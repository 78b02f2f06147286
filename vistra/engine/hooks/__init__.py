"""Hooks: observers of the loops, under MMEngine's names."""

from vistra.engine.hooks import (
    checkpoint_hook,
    clustering_hooks,
    early_stopping,
    ema,
    iter_timer,
    logger_hook,
    param_scheduler,
    precise_bn,
    retriever_hooks,
    runtime_info,
    sampler_seed,
    simsiam_hook,
    swav_hook,
    sync_buffers,
    visualization,
)
from vistra.engine.hooks.checkpoint_hook import CheckpointHook
from vistra.engine.hooks.early_stopping import EarlyStoppingHook
from vistra.engine.hooks.ema import EMAHook
from vistra.engine.hooks.hook import Hook
from vistra.engine.hooks.iter_timer import IterTimerHook
from vistra.engine.hooks.logger_hook import LoggerHook
from vistra.engine.hooks.param_scheduler import ParamSchedulerHook
from vistra.engine.hooks.runtime_info import RuntimeInfoHook
from vistra.engine.hooks.sampler_seed import DistSamplerSeedHook
from vistra.engine.hooks.visualization import VisualizationHook
