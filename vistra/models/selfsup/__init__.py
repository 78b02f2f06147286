"""Self-supervised pre-training: MAE and SimCLR, their necks, heads and losses."""

from vistra.models.selfsup import mae, simclr

__all__ = ["mae", "simclr"]
