"""Self-supervised pre-training: the algorithms of MMPretrain and MMSelfSup 1.x, their
backbones, necks, heads, losses and target generators (one algorithm per module)."""

from vistra.models.selfsup import linear_neck, mae, momentum, simclr

# group A (contrastive, siamese)
# group B1 (MoCo v3, SwAV, pretext tasks)
# group B2 (memory banks, clustering)
# group C1 (SimMIM, MaskFeat, PixMIM)
# group C2 (MixMIM, SparK)
# group D (BEiT v1/v2, CAE)
# group E1 (CLIP, EVA, MILAN, MFF)
# group E2 (iTPN, HiViT MAE)

__all__ = ["linear_neck", "mae", "momentum", "simclr"]
