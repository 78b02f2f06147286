"""Checkpoint I/O below the engine: models (``init_cfg=Pretrained``), the runner and tools
all read and write checkpoints through this package, which imports nothing of vistra's
but itself.

- :mod:`.io`: atomic save, safe (``weights_only``) load;
- :mod:`.sources`: ``open-mmlab://``, ``mmcls://``, ``torchvision://``, ``http(s)://``;
- :mod:`.state_dict`: weights extraction, key remapping, the load report;
- :mod:`.mmengine_compat`: what MMEngine-written checkpoints pickle, and resuming from them;
- :mod:`.finding`: the latest loadable checkpoint of a work dir.
"""

from vistra.checkpoint.errors import CheckpointError
from vistra.checkpoint.finding import CHECKPOINT_NAME, checkpoint_number, find_latest_checkpoint
from vistra.checkpoint.io import (
    UNSAFE_ENV,
    is_loadable,
    load_checkpoint_file,
    save_checkpoint,
    write_text_atomic,
)
from vistra.checkpoint.mmengine_compat import is_mmengine_checkpoint, mmengine_safe_globals
from vistra.checkpoint.sources import OPEN_MMLAB_URLS, resolve_source
from vistra.checkpoint.state_dict import (
    DDP_PREFIX,
    LoadReport,
    extract_state_dict,
    load_pretrained,
    load_state_dict,
    revise_keys,
)

__all__ = [
    "CHECKPOINT_NAME",
    "DDP_PREFIX",
    "OPEN_MMLAB_URLS",
    "UNSAFE_ENV",
    "CheckpointError",
    "LoadReport",
    "checkpoint_number",
    "extract_state_dict",
    "find_latest_checkpoint",
    "is_loadable",
    "is_mmengine_checkpoint",
    "load_checkpoint_file",
    "load_pretrained",
    "load_state_dict",
    "mmengine_safe_globals",
    "resolve_source",
    "revise_keys",
    "save_checkpoint",
    "write_text_atomic",
]
