"""Hooks: observers of the loops, under MMEngine's names."""

from vistra.engine.hooks import (
    checkpoint_hook,
    early_stopping,
    ema,
    iter_timer,
    logger_hook,
    param_scheduler,
    precise_bn,
    retriever_hooks,
    runtime_info,
    sampler_seed,
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

# the self-supervised zoo's hooks (issue #18): one module per group, imported for registration
# group A
# group B1
# group B2
# group C1
# group C2
# group D
# group E1
# group E2
