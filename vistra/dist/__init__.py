"""torch.distributed set-up, collectives and model wrapping."""

from vistra.dist.collect import (
    all_reduce_mean,
    broadcast_object,
    collect_results,
    get_rank,
    get_world_size,
    is_distributed,
)
from vistra.dist.launch import (
    DistInfo,
    LaunchError,
    cuda_usable,
    destroy_dist,
    init_dist,
)
from vistra.dist.model_wrap import place_model, revert_sync_batchnorm, unwrap
from vistra.dist.ports import free_port
