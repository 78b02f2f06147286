"""The self-supervised zoo (issue #18): one entry per algorithm and package whose config
tree names it, the batch its loss is compared on, and the options its training test needs.

The oracle (``oracle.py selfsup loss-batch``, tools/upstream/oracle_selfsup.py) builds the
upstream model of ``config``, randomises it, writes the batch (``make_batch`` there: pixel
views in ``[0, 255]``, masks, sample indices) and the loss dict, seeding ``torch`` with
``seed + 2`` right before ``mode='loss'``. :func:`vistra_losses` here loads that checkpoint
the way ``load_from`` does, builds the data samples as the config's packing transform
would (``PackSelfSupInputs``: ``mask.value``; ``PackInputs``: ``mask``), runs vistra's data
preprocessor and seeds the same way, so each vistra algorithm that draws its random
numbers as upstream does (in the same order, with the same shapes) gives the same loss.

``VISTRA_SELFSUP_ONLY=name,...`` limits the tests to the entries named.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vistra.checkpoint import load_state_dict
from vistra.data.structures import DataSample
from vistra.data.transforms.selfsup_formatting import ValueData

SEED = 5
# |loss| above 1 is compared relative to its size: 1e-4 of a BarlowTwins loss of 2000 is
# below float32's resolution for sums of that many terms
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Algorithm:
    # "mmselfsup:selfsup/byol/byol_resnet50_16xb256-coslr-200e_in1k.py" or
    # "mmpretrain:byol/byol_resnet50_16xb256-coslr-200e_in1k.py" (the wheel's own file)
    config: str
    # one view per entry (its side in pixels); two views of 64 for a siamese method
    sizes: tuple[int, ...] = (64, 64)
    batch: int = 4
    # True where the pipeline packs one image as a tensor (MMPretrain's PackInputs without
    # MultiView) rather than a list of views
    single: bool = False
    # (h, w, ratio): a 0/1 mask per sample with exactly round(ratio * h * w) ones
    mask: tuple[int, int, float] | None = None
    sample_idx: bool = False
    # (name, nested int list) pairs: fixed pseudo labels every sample carries
    # (``sample.pseudo_label.<name>``: RotationPred's rot_label, RelativeLoc's patch_label)
    pseudo_label: tuple[tuple[str, tuple], ...] = ()
    # --cfg-options for both sides of the loss comparison (e.g. a smaller memory bank)
    cfg_options: tuple[str, ...] = ()
    # (key, value) overrides for the two-iteration training test, beside the shrinking
    # that tests/upstream/test_selfsup_zoo.py does for every algorithm
    train_options: tuple[tuple[str, object], ...] = ()
    # why the loss or the training test cannot run yet (the test skips with the reason)
    loss_skip: str = ""
    train_skip: str = ""
    # True: only under VISTRA_ZOO_FULL (a step of seconds or more on two cores)
    heavy: bool = False
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def package(self) -> str:
        return self.config.split(":", 1)[0]

    @property
    def relative(self) -> str:
        return self.config.split(":", 1)[1]


# why ODC's and DeepCluster's losses and training are not checked here yet
# the label a clustering gave every sample of the batch (DeepCluster's target)
CLUSTER_LABEL = (("clustering_label", (1,)),)
# the clustering hook's k-means over the 4 tiny samples: 2 clusters, no PCA. Batch norm
# over 2 images of 32 px (1x1 maps in the last stage) gives gradients of ~1e7, and the
# features of the epoch-end clustering become NaN (upstream's too): gradients clipped
CLUSTER_TRAIN = (
    ("custom_hooks.0.clustering", dict(type="Kmeans", k=2, pca_dim=-1)),
    ("model.head.num_classes", 2),
    ("optim_wrapper.clip_grad", dict(max_norm=1.0)),
)


def _a(config: str, **kwargs) -> Algorithm:
    return Algorithm(config, **kwargs)


ALGORITHMS: dict[str, Algorithm] = {
    # already in vistra before #18
    "mae": _a("mmpretrain:mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py", sizes=(224,),
              batch=2, single=True),
    "mae-mmselfsup": _a("mmselfsup:selfsup/mae/mae_vit-base-p16_8xb512-coslr-400e_in1k.py",
                        sizes=(224,), batch=2),
    "simclr": _a("mmpretrain:simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py"),
    "simclr-mmselfsup": _a("mmselfsup:selfsup/simclr/simclr_resnet50_8xb32-coslr-200e_in1k.py"),
    "mocov1-mmselfsup": _a("mmselfsup:selfsup/mocov1/mocov1_resnet50_8xb32-steplr-200e_in1k.py",
                           cfg_options=("model.queue_len=256",)),
    "mocov2": _a("mmpretrain:mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py", cfg_options=("model.queue_len=256",)),
    "mocov2-mmselfsup": _a("mmselfsup:selfsup/mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py",
                           cfg_options=("model.queue_len=256",)),
    "byol": _a("mmpretrain:byol/byol_resnet50_16xb256-coslr-200e_in1k.py"),
    "byol-mmselfsup": _a("mmselfsup:selfsup/byol/byol_resnet50_16xb256-coslr-200e_in1k.py"),
    "simsiam": _a("mmpretrain:simsiam/simsiam_resnet50_8xb32-coslr-100e_in1k.py"),
    "simsiam-mmselfsup": _a("mmselfsup:selfsup/simsiam/simsiam_resnet50_8xb32-coslr-100e_in1k.py"),
    "barlowtwins": _a("mmpretrain:barlowtwins/barlowtwins_resnet50_8xb256-coslr-300e_in1k.py",
                      cfg_options=("model.neck.hid_channels=512", "model.neck.out_channels=512", "model.head.in_channels=512"),
                      train_options=(("model.neck.hid_channels", 512), ("model.neck.out_channels", 512), ("model.head.in_channels", 512))),
    "barlowtwins-mmselfsup": _a(
        "mmselfsup:selfsup/barlowtwins/barlowtwins_resnet50_8xb256-coslr-300e_in1k.py",
        cfg_options=("model.neck.hid_channels=512", "model.neck.out_channels=512", "model.head.in_channels=512"),
        train_options=(("model.neck.hid_channels", 512), ("model.neck.out_channels", 512), ("model.head.in_channels", 512))),
    "densecl": _a("mmpretrain:densecl/densecl_resnet50_8xb32-coslr-200e_in1k.py",
                  cfg_options=("model.queue_len=256",)),
    "densecl-mmselfsup": _a("mmselfsup:selfsup/densecl/densecl_resnet50_8xb32-coslr-200e_in1k.py",
                            cfg_options=("model.queue_len=256",)),
    # group B1 (MoCo v3, SwAV, pretext tasks)
    "mocov3": _a("mmpretrain:mocov3/mocov3_resnet50_8xb512-amp-coslr-100e_in1k.py", sizes=(32, 32),
               cfg_options=("model.head.temperature=0.001",)),
    "mocov3-mmselfsup": _a("mmselfsup:selfsup/mocov3/mocov3_resnet50_8xb512-amp-coslr-100e_in1k.py",
                           sizes=(32, 32), cfg_options=("model.head.temperature=0.001",)),
    "mocov3-vit": _a("mmpretrain:mocov3/mocov3_vit-small-p16_16xb256-amp-coslr-300e_in1k.py",
                     sizes=(32, 32), batch=2, cfg_options=("model.backbone.img_size=32", "model.head.temperature=0.001"), heavy=True),
    "mocov3-vit-mmselfsup": _a("mmselfsup:selfsup/mocov3/mocov3_vit-small-p16_16xb256-amp-coslr-300e_in1k.py",
                               sizes=(32, 32), batch=2, cfg_options=("model.backbone.img_size=32", "model.head.temperature=0.001"), heavy=True),
    "swav": _a("mmpretrain:swav/swav_resnet50_8xb32-mcrop-coslr-200e_in1k-224px-96px.py",
               sizes=(32, 32, 16, 16, 16, 16, 16, 16),
               train_options=(("train_dataloader.dataset.pipeline", [  # crops set by `scale`: shrunk here
                   dict(type="LoadImageFromFile"),
                   dict(type="MultiView", num_views=[2, 6], transforms=[
                       [dict(type="RandomResizedCrop", scale=32, crop_ratio_range=(0.14, 1.0)),
                        dict(type="RandomFlip", prob=0.5)],
                       [dict(type="RandomResizedCrop", scale=16, crop_ratio_range=(0.05, 0.14)),
                        dict(type="RandomFlip", prob=0.5)]]),
                   dict(type="PackInputs")]),), heavy=True),
    "swav-mmselfsup": _a("mmselfsup:selfsup/swav/swav_resnet50_8xb32-mcrop-2-6-coslr-200e_in1k-224-96.py",
                         sizes=(32, 32, 16, 16, 16, 16, 16, 16), heavy=True),
    "rotation-pred-mmselfsup": _a("mmselfsup:selfsup/rotation_pred/rotation-pred_resnet50_8xb16-steplr-70e_in1k.py",
                                  sizes=(32, 32, 32, 32), pseudo_label=(("rot_label", (0, 1, 2, 3)),)),
    "relative-loc-mmselfsup": _a("mmselfsup:selfsup/relative_loc/relative-loc_resnet50_8xb64-steplr-70e_in1k.py",
                                 sizes=(16,) * 9, batch=2,
                                 pseudo_label=(("patch_label", ((0, 1, 2, 3, 4, 5, 6, 7),)),),
                                 train_options=(("train_dataloader.dataset.pipeline", [  # the 3 x 3 grid needs > 63 px
                                     dict(type="LoadImageFromFile"),
                                     dict(type="Resize", scale=160),
                                     dict(type="RandomCrop", size=150),
                                     dict(type="RandomGrayscale", prob=0.66, keep_channels=True),
                                     dict(type="RandomPatchWithLabels"),
                                     dict(type="PackSelfSupInputs", pseudo_label_keys=[
                                         "patch_box", "patch_label", "unpatched_img"])]),)),
    "npid-mmselfsup": _a("mmselfsup:selfsup/npid/npid_resnet50_8xb32-steplr-200e_in1k.py",
                         sizes=(32,), sample_idx=True,
                         cfg_options=("model.memory_bank.length=16", "model.neg_num=64"),
                         train_options=(("model.memory_bank.length", 8), ("model.neg_num", 16))),
    "npid-ensure-neg-mmselfsup": _a(
        "mmselfsup:selfsup/npid/npid-ensure-neg_resnet50_8xb32-steplr-200e_in1k.py",
        sizes=(32,), sample_idx=True,
        cfg_options=("model.memory_bank.length=16", "model.neg_num=64"),
        train_options=(("model.memory_bank.length", 8), ("model.neg_num", 16))),
    # ODC / DeepCluster: the oracle runs upstream's ODCMemory on the CPU in a one-process
    # group (oracle_selfsup._cpu_collectives); DeepCluster's target is a clustering label
    "odc-mmselfsup": _a("mmselfsup:selfsup/odc/odc_resnet50_8xb64-steplr-440e_in1k.py",
                        sizes=(32,), sample_idx=True,
                        cfg_options=("model.memory_bank.length=16",
                                     "model.memory_bank.num_classes=4",
                                     "model.head.num_classes=4"),
                        train_options=CLUSTER_TRAIN + (("model.memory_bank.num_classes", 2),
                                                       ("model.memory_bank.length", 4),
                                                       ("model.memory_bank.min_cluster", 1))),
    "deepcluster-mmselfsup": _a(
        "mmselfsup:selfsup/deepcluster/deepcluster_resnet50_8xb64-steplr-200e_in1k.py",
        sizes=(32,), pseudo_label=CLUSTER_LABEL, train_options=CLUSTER_TRAIN),
    "deepcluster-sobel-mmselfsup": _a(
        "mmselfsup:selfsup/deepcluster/deepcluster-sobel_resnet50_8xb64-steplr-200e_in1k.py",
        sizes=(32,), pseudo_label=CLUSTER_LABEL, train_options=CLUSTER_TRAIN),
    # group C1 (SimMIM, MaskFeat, PixMIM): SimMIM's Swin (tiny) at 64 px (window 2, a 16x16
    # patch grid), training at 32 px with window 1 (heavy: ~10 s a run on two cores);
    # MaskFeat's HOG grouping needs 224 px (a 14x14 grid), so a ViT-tiny there; PixMIM as
    # MAE, its low-pass filter built for the crop
    "simmim": _a("mmpretrain:simmim/simmim_swin-base-w6_8xb256-amp-coslr-100e_in1k-192px.py",
        sizes=(64,), batch=2, single=True, mask=(16, 16, 0.6),
        cfg_options=("model.backbone.arch=tiny", "model.neck.in_channels=768", "model.backbone.img_size=64", "model.backbone.stage_cfgs.block_cfgs.window_size=2"), heavy=True,
        train_options=(("train_dataloader.dataset.pipeline.1.scale", 32), ("train_dataloader.dataset.pipeline.3.input_size", 32), ("train_dataloader.dataset.pipeline.3.mask_patch_size", 8), ("model.backbone.stage_cfgs.block_cfgs.window_size", 1), ("model.backbone.arch", dict(_delete_=True, embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8])), ("model.neck.in_channels", 256))),
    "simmim-mmselfsup": _a("mmselfsup:selfsup/simmim/simmim_swin-base_8xb256-amp-coslr-100e_in1k-192.py",
        sizes=(64,), batch=2, mask=(16, 16, 0.6),
        cfg_options=("model.backbone.arch=tiny", "model.neck.in_channels=768", "model.backbone.img_size=64", "model.backbone.stage_cfgs.block_cfgs.window_size=2"), heavy=True,
        train_options=(("train_dataloader.dataset.pipeline.3.input_size", 32), ("train_dataloader.dataset.pipeline.3.mask_patch_size", 8), ("model.backbone.stage_cfgs.block_cfgs.window_size", 1), ("model.backbone.arch", dict(_delete_=True, embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8])), ("model.neck.in_channels", 256))),
    "maskfeat": _a("mmpretrain:maskfeat/maskfeat_vit-base-p16_8xb256-amp-coslr-300e_in1k.py",
        sizes=(224,), batch=2, single=True, mask=(14, 14, 78 / 196),
        cfg_options=("model.backbone.arch=deit-tiny", "model.neck.in_channels=192"),
        train_options=(("train_dataloader.dataset.pipeline.1.scale", 224), ("model.backbone.img_size", 224), ("model.backbone.arch", dict(_delete_=True, embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)), ("model.neck.in_channels", 64))),
    "maskfeat-mmselfsup": _a("mmselfsup:selfsup/maskfeat/maskfeat_vit-base-p16_8xb256-amp-coslr-300e_in1k.py",
        sizes=(224,), batch=2, mask=(14, 14, 78 / 196),
        cfg_options=("model.backbone.arch=deit-tiny", "model.neck.in_channels=192"),
        train_options=(("train_dataloader.dataset.pipeline.1.size", 224), ("model.backbone.img_size", 224), ("model.backbone.arch", dict(_delete_=True, embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)), ("model.neck.in_channels", 64))),
    "pixmim-mmselfsup": _a("mmselfsup:selfsup/pixmim/pixmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py",
        sizes=(224,), batch=2,
        # the wheel's pipeline passes ToNumpy(to_rgb=True), which neither mmcls 1.0.0rc6's
        # ToNumpy(keys, dtype) nor MMPretrain's PILToNumpy(to_bgr, dtype) takes: MMPretrain's
        # spelling of the same pipeline, at 32 px
        train_options=(("train_dataloader.dataset.pipeline", [
            dict(type="LoadImageFromFile"), dict(type="mmcls.ToPIL", to_rgb=True),
            dict(type="mmcls.torchvision/Resize", size=32),
            dict(type="mmcls.torchvision/RandomCrop", size=32, padding=4, padding_mode="reflect"),
            dict(type="mmcls.torchvision/RandomHorizontalFlip", p=0.5),
            dict(type="mmcls.ToNumpy", to_bgr=True), dict(type="PackSelfSupInputs", meta_keys=["img_path"])]),
            ("model.target_generator.img_size", 32), ("model.target_generator.radius", 6))),
    "mixmim": _a("mmpretrain:mixmim/mixmim_mixmim-base_16xb128-coslr-300e_in1k.py", sizes=(64,), single=True, cfg_options=("model.backbone.img_size=64", "model.backbone.window_size=[8,8,4,2]", "model.neck.num_patches=4"), train_options=(("model.neck.num_patches", 1), ("train_dataloader.dataset.pipeline.1.scale", 32)), heavy=True),
    "mixmim-mmselfsup": _a("mmselfsup:selfsup/mixmim/mixmim-base-p16_16xb128-coslr-300e_in1k.py", sizes=(64,), cfg_options=("model.backbone.img_size=64", "model.backbone.window_size=[8,8,4,2]", "model.neck.num_patches=4"), train_options=(("model.neck.num_patches", 1),), heavy=True),
    "spark": _a("mmpretrain:spark/spark_sparse-resnet50_8xb512-amp-coslr-800e_in1k.py", sizes=(64,), single=True, cfg_options=("model.input_size=64",), train_options=(("model.input_size", 64), ("train_dataloader.dataset.pipeline.1.scale", 64)), heavy=True),
    # group D (BEiT v1/v2, CAE): encoders at 112 px (7x7 patches), tokenizer views on that
    # grid (DALL-E 8x: 56 px, VQKD 16x: 112 px); training at 64 px with a 4x4 mask (the
    # block masking cannot place two 1x1 blocks on a 2x2 grid); ViT-B steps take seconds
    "beit": _a("mmpretrain:beit/beit_beit-base-p16_8xb256-amp-coslr-300e_in1k.py",
        sizes=(112, 56), batch=2, mask=(7, 7, 0.4), cfg_options=("model.backbone.img_size=112",),
        train_options=(("train_dataloader.dataset.pipeline.3.size", 64), ("train_dataloader.dataset.pipeline.3.second_size", 32), ("train_dataloader.dataset.pipeline.4.input_size", (4, 4)), ("train_dataloader.dataset.pipeline.4.num_masking_patches", 4), ("train_dataloader.dataset.pipeline.4.min_num_patches", 1), ("model.backbone.img_size", 64)), heavy=True),
    "beit-mmselfsup": _a("mmselfsup:selfsup/beit/beit_vit-base-p16_8xb256-amp-coslr-300e_in1k.py",
        sizes=(112, 56), batch=2, mask=(7, 7, 0.4), cfg_options=("model.backbone.img_size=112",),
        train_options=(("train_dataloader.dataset.pipeline.3.size", 64), ("train_dataloader.dataset.pipeline.3.second_size", 32), ("train_dataloader.dataset.pipeline.4.input_size", (4, 4)), ("train_dataloader.dataset.pipeline.4.num_masking_patches", 4), ("train_dataloader.dataset.pipeline.4.min_num_patches", 1), ("model.backbone.img_size", 64)), heavy=True),
    "beitv2": _a("mmpretrain:beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py",
        sizes=(112, 112), batch=2, mask=(7, 7, 0.4), cfg_options=("model.backbone.img_size=112", "model.target_generator.encoder_config.img_size=112"),
        train_options=(("train_dataloader.dataset.pipeline.3.size", 64), ("train_dataloader.dataset.pipeline.3.second_size", 64), ("train_dataloader.dataset.pipeline.4.input_size", (4, 4)), ("train_dataloader.dataset.pipeline.4.num_masking_patches", 4), ("train_dataloader.dataset.pipeline.4.min_num_patches", 1), ("model.backbone.img_size", 64), ("model.target_generator.encoder_config.img_size", 64)), heavy=True),
    "beitv2-mmselfsup": _a("mmselfsup:selfsup/beitv2/beitv2_vit-base-p16_8xb256-amp-coslr-300e_in1k.py",
        sizes=(112, 112), batch=2, mask=(7, 7, 0.4), cfg_options=("model.backbone.img_size=112", "model.target_generator.encoder_config.img_size=112"),
        train_options=(("train_dataloader.dataset.pipeline.3.size", 64), ("train_dataloader.dataset.pipeline.3.second_size", 64), ("train_dataloader.dataset.pipeline.4.input_size", (4, 4)), ("train_dataloader.dataset.pipeline.4.num_masking_patches", 4), ("train_dataloader.dataset.pipeline.4.min_num_patches", 1), ("model.backbone.img_size", 64), ("model.target_generator.encoder_config.img_size", 64)), heavy=True),
    "cae": _a("mmpretrain:cae/cae_beit-base-p16_8xb256-amp-coslr-300e_in1k.py",
        sizes=(112, 56), batch=2, mask=(7, 7, 20 / 49), cfg_options=("model.backbone.img_size=112", "model.neck.mask_tokens_num=20"),
        train_options=(("train_dataloader.dataset.pipeline.2.size", 64), ("train_dataloader.dataset.pipeline.2.second_size", 32), ("train_dataloader.dataset.pipeline.3.input_size", (4, 4)), ("train_dataloader.dataset.pipeline.3.num_masking_patches", 4), ("train_dataloader.dataset.pipeline.3.min_num_patches", 1), ("model.backbone.img_size", 64), ("model.neck.mask_tokens_num", 4)), heavy=True),
    "cae-mmselfsup": _a("mmselfsup:selfsup/cae/cae_vit-base-p16_8xb256-amp-coslr-300e_in1k.py",
        sizes=(112, 56), batch=2, mask=(7, 7, 20 / 49), cfg_options=("model.backbone.img_size=112", "model.neck.mask_tokens_num=20"),
        train_options=(("train_dataloader.dataset.pipeline.2.size", 64), ("train_dataloader.dataset.pipeline.2.second_size", 32), ("train_dataloader.dataset.pipeline.3.input_size", (4, 4)), ("train_dataloader.dataset.pipeline.3.num_masking_patches", 4), ("train_dataloader.dataset.pipeline.3.min_num_patches", 1), ("model.backbone.img_size", 64), ("model.neck.mask_tokens_num", 4)), heavy=True),
    # group E1 (CLIP, EVA, MILAN, MFF): EVA and MILAN read their CLIP teacher when built; a
    # small one of random weights (random_clip_file, written once) stands in for OpenAI's.
    # heavy: upstream's build downloads OpenAI's CLIP for the keys test (no cfg_options
    # there), and MILAN's AMP configs train slowly on CPU
    "eva": _a("mmpretrain:eva/eva-mae-style_vit-base-p16_16xb256-coslr-400e_in1k.py",
              sizes=(64,), batch=2, heavy=True, single=True,
              cfg_options=("model.backbone.img_size=64", "model.neck.num_patches=16",
                  "model.target_generator.tokenizer_path=" + __import__('vistra.models.selfsup.clip_vit', fromlist=['_']).random_clip_file(64)),
              train_options=(("model.target_generator.tokenizer_path", __import__('vistra.models.selfsup.clip_vit', fromlist=['_']).random_clip_file(32)),
                  ("train_dataloader.dataset.pipeline", [
                      dict(type="LoadImageFromFile"),
                      dict(type="RandomResizedCrop", scale=32, crop_ratio_range=(0.2, 1.0),
                           backend="pillow", interpolation="bicubic"),
                      dict(type="RandomFlip", prob=0.5), dict(type="PackInputs")]))),
    "eva-mmselfsup": _a("mmselfsup:selfsup/eva/eva-mae-style_vit-base-p16_16xb256-coslr-400e_in1k.py",
              sizes=(64,), batch=2, heavy=True,
              cfg_options=("model.backbone.img_size=64", "model.neck.num_patches=16",
                  "model.target_generator.tokenizer_path=" + __import__('vistra.models.selfsup.clip_vit', fromlist=['_']).random_clip_file(64)),
              train_options=(("model.target_generator.tokenizer_path", __import__('vistra.models.selfsup.clip_vit', fromlist=['_']).random_clip_file(32)),)),
    "milan": _a("mmpretrain:milan/milan_vit-base-p16_16xb256-amp-coslr-400e_in1k.py",
              sizes=(64,), batch=2, heavy=True, single=True,
              cfg_options=("model.backbone.img_size=64", "model.neck.num_patches=16",
                  # the wheel's neck keeps its 1024-wide default beside a ViT-B: it cannot run
                  "model.neck.embed_dim=768",
                  "model.target_generator.tokenizer_path=" + __import__('vistra.models.selfsup.clip_vit', fromlist=['_']).random_clip_file(64)),
              train_options=(("model.target_generator.tokenizer_path", __import__('vistra.models.selfsup.clip_vit', fromlist=['_']).random_clip_file(32)), ("model.neck.num_patches", 4),
                  ("model.neck.embed_dim", 768),
                  ("train_dataloader.dataset.pipeline", [
                      dict(type="LoadImageFromFile"),
                      dict(type="RandomResizedCrop", scale=32, crop_ratio_range=(0.2, 1.0),
                           backend="pillow", interpolation="bicubic"),
                      dict(type="RandomFlip", prob=0.5), dict(type="PackInputs")]))),
    "milan-mmselfsup": _a("mmselfsup:selfsup/milan/milan_vit-base-p16_16xb256-amp-coslr-400e_in1k.py",
              sizes=(64,), batch=2, heavy=True,
              cfg_options=("model.backbone.img_size=64", "model.neck.num_patches=16",
                  "model.target_generator.tokenizer_path=" + __import__('vistra.models.selfsup.clip_vit', fromlist=['_']).random_clip_file(64)),
              train_options=(("model.target_generator.tokenizer_path", __import__('vistra.models.selfsup.clip_vit', fromlist=['_']).random_clip_file(32)), ("model.neck.num_patches", 4))),
    "mff": _a("mmpretrain:mff/mff_vit-base-p16_8xb512-amp-coslr-300e_in1k.py",
              sizes=(64,), batch=2, single=True,
              cfg_options=("model.backbone.img_size=64", "model.neck.num_patches=16"),
              train_options=(("train_dataloader.dataset.pipeline", [
                  dict(type="LoadImageFromFile"), dict(type="ToPIL", to_rgb=True),
                  dict(type="torchvision/Resize", size=32),
                  dict(type="torchvision/RandomCrop", size=32, padding=4, padding_mode="reflect"),
                  dict(type="torchvision/RandomHorizontalFlip", p=0.5),
                  dict(type="ToNumpy", to_bgr=True), dict(type="PackInputs")]),)),
    "mae-hivit": _a("mmpretrain:mae/mae_hivit-base-p16_8xb512-amp-coslr-400e_in1k.py",
              sizes=(64,), batch=2, single=True,
              cfg_options=("model.backbone.img_size=64", "model.neck.num_patches=16"),
              train_options=(("train_dataloader.dataset.pipeline", [  # its crop is `scale`, not shrunk
                  dict(type="LoadImageFromFile"),
                  dict(type="RandomResizedCrop", scale=32, crop_ratio_range=(0.2, 1.0),
                       backend="pillow", interpolation="bicubic"),
                  dict(type="RandomFlip", prob=0.5), dict(type="PackInputs")]),)),
    "itpn-pixel": _a("mmpretrain:itpn/itpn-pixel_hivit-base-p16_8xb512-amp-coslr-400e_in1k.py",
              sizes=(64,), batch=2, single=True,
              cfg_options=("model.backbone.img_size=64", "model.neck.num_patches=16"),
              train_options=(("train_dataloader.dataset.pipeline", [  # its crop is `scale`, not shrunk
                  dict(type="LoadImageFromFile"),
                  dict(type="RandomResizedCrop", scale=32, crop_ratio_range=(0.2, 1.0),
                       backend="pillow", interpolation="bicubic"),
                  dict(type="RandomFlip", prob=0.5), dict(type="PackInputs")]),)),
    "itpn-clip": _a("mmpretrain:itpn/itpn-clip-b_hivit-base-p16_8xb256-amp-coslr-300e_in1k.py",
              sizes=(64, 64), batch=2, mask=(4, 4, 0.375),
              cfg_options=("model.backbone.img_size=64",
                  "model.target_generator.tokenizer_path=" + __import__('vistra.models.selfsup.clip_vit', fromlist=['_']).random_clip_file(64)),
              # at 64 px: BEiT's block masks cannot cover a 2x2 grid
              train_options=(("model.target_generator.tokenizer_path", __import__('vistra.models.selfsup.clip_vit', fromlist=['_']).random_clip_file(64)),
                  ("model.backbone.img_size", 64),
                  ("train_dataloader.dataset.pipeline", [
                      dict(type="LoadImageFromFile"),
                      dict(type="RandomResizedCropAndInterpolationWithTwoPic", size=64, second_size=64,
                           interpolation="bicubic", second_interpolation="bicubic", scale=(0.2, 1.0)),
                      dict(type="BEiTMaskGenerator", input_size=(4, 4), num_masking_patches=6,
                           max_num_patches=6, min_num_patches=1),
                      dict(type="PackInputs")]))),
}  # fmt: skip


def selected() -> dict[str, Algorithm]:
    only = os.environ.get("VISTRA_SELFSUP_ONLY")
    if not only:
        return dict(ALGORITHMS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALGORITHMS]
    if unknown:
        raise KeyError(f"VISTRA_SELFSUP_ONLY names unknown algorithms {unknown}; known: "
                       f"{sorted(ALGORITHMS)}")  # fmt: skip
    return {n: ALGORITHMS[n] for n in names}


def config_path(algorithm: Algorithm, tree: Path) -> Path:
    """``tree`` is the wheel's config folder of ``algorithm.package``."""
    return tree / algorithm.relative


def oracle_job(algorithm: Algorithm, path: Path, outdir: Path) -> dict:
    return {
        "config": str(path),
        "outdir": str(outdir),
        "seed": SEED,
        "sizes": list(algorithm.sizes),
        "batch": algorithm.batch,
        "single": algorithm.single,
        "mask": list(algorithm.mask) if algorithm.mask else None,
        "sample_idx": algorithm.sample_idx,
        "pseudo_label": [[k, _as_list(v)] for k, v in algorithm.pseudo_label],
        "cfg_options": list(algorithm.cfg_options),
    }


def _as_list(value):
    return [_as_list(v) for v in value] if isinstance(value, (list, tuple)) else value


def data_samples(algorithm: Algorithm, batch: dict) -> list[DataSample]:
    """The samples of the oracle's batch, laid out as the config's packing transform does."""
    inputs = batch["inputs"]
    n = (inputs if torch.is_tensor(inputs) else inputs[0]).shape[0]
    selfsup_layout = algorithm.package == "mmselfsup"
    samples = [DataSample() for _ in range(n)]
    for i, sample in enumerate(samples):
        if batch.get("mask") is not None:
            mask = batch["mask"][i]
            sample.mask = ValueData(value=mask) if selfsup_layout else mask
        if batch.get("sample_idx") is not None:
            idx = batch["sample_idx"][i : i + 1]
            if selfsup_layout:
                sample.sample_idx = ValueData(value=idx)
            else:
                sample.set_metainfo({"sample_idx": int(idx)})
        if algorithm.pseudo_label:
            labels = {k: torch.tensor(_as_list(v)) for k, v in algorithm.pseudo_label}
            sample.pseudo_label = ValueData(**labels)
    return samples


def load_upstream(model: torch.nn.Module, folder: Path):
    """The oracle's randomised weights, loaded as ``load_from`` loads a checkpoint."""
    state = torch.load(folder / "upstream.pth", map_location="cpu", weights_only=True)
    return load_state_dict(model, state["state_dict"], source=str(folder / "upstream.pth"))


def vistra_losses(model: torch.nn.Module, algorithm: Algorithm, folder: Path) -> dict:
    """vistra's loss dict on the oracle's batch, seeded as the oracle seeds."""
    batch = torch.load(folder / "batch.pt", weights_only=True)
    inputs = batch["inputs"]
    inputs = inputs.clone() if torch.is_tensor(inputs) else [v.clone() for v in inputs]
    model.eval()
    memory_init = folder / "memory_init.pt"
    if memory_init.exists():  # ODC: the memory as the oracle initialised it
        init = torch.load(memory_init, weights_only=True)
        model.memory_bank.init_memory(init["feature"].numpy().copy(), init["label"].numpy())
    with torch.no_grad():
        data = model.data_preprocessor(
            {"inputs": inputs, "data_samples": data_samples(algorithm, batch)}, True
        )
        torch.manual_seed(SEED + 2)
        losses = model(**data, mode="loss")
    return {k: v.detach() for k, v in losses.items() if torch.is_tensor(v)}


def loss_diffs(ours: dict, upstream: dict) -> dict[str, float]:
    """Per loss key, |ours - upstream| scaled by max(1, |upstream|)."""
    assert set(ours) == set(upstream), f"loss keys differ: {sorted(ours)} vs {sorted(upstream)}"
    diffs = {}
    for key, ref in upstream.items():
        ref = ref.double()
        diff = (ours[key].double() - ref).abs().max().item()
        diffs[key] = diff / max(1.0, ref.abs().max().item())
    return diffs
