"""Self-supervised pre-training: the algorithms of MMPretrain and MMSelfSup 1.x, their
backbones, necks, heads, losses and target generators (one algorithm per module)."""

from vistra.models.selfsup import mae, momentum, simclr

# group A (contrastive, siamese)
# group B (MoCo v3, SwAV, memory banks, clustering, pretext tasks)
# group C (SimMIM, MaskFeat, MixMIM, PixMIM, SparK)
# group D (BEiT v1/v2, CAE)
# group E (EVA, MILAN, CLIP, iTPN, MFF)

__all__ = ["mae", "momentum", "simclr"]
