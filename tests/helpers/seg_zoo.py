"""The segmentation model zoo's families, one representative MMSegmentation config each
(paths relative to the wheel's ``.mim/configs``), for the upstream-oracle numeric tests
(tests/upstream/test_seg_numeric.py) and the train/evaluate tests over upstream configs
(tests/models/test_seg_zoo.py).

``VISTRA_SEG_ONLY=name,name`` narrows any of those tests to the named families (handy while
working on one family); otherwise the default suite takes ``DEFAULT`` and
``VISTRA_UPSTREAM_FULL=1`` / ``VISTRA_ZOO_FULL=1`` take every family.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from vistra.config import Config
from vistra.registry import MODELS, RegistryError, default_scope

FAMILIES: dict[str, str] = {
    # ResNet backbones with the classic heads
    "fcn-r50-d8": "fcn/fcn_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "pspnet-r50-d8": "pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "deeplabv3-r50-d8": "deeplabv3/deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "deeplabv3plus-r50-d8": "deeplabv3plus/deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "unet-s5-d16": "unet/unet-s5-d16_fcn_4xb4-160k_cityscapes-512x1024.py",
    "pointrend-r50": "point_rend/pointrend_r50_4xb2-80k_cityscapes-512x1024.py",
    "sem-fpn-r50": "sem_fpn/fpn_r50_4xb2-80k_cityscapes-512x1024.py",
    # attention and context heads on ResNet
    "upernet-r50": "upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py",
    "ann-r50-d8": "ann/ann_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "apcnet-r50-d8": "apcnet/apcnet_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "ccnet-r50-d8": "ccnet/ccnet_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "danet-r50-d8": "danet/danet_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "dmnet-r50-d8": "dmnet/dmnet_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "dnlnet-r50-d8": "dnlnet/dnl_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "emanet-r50-d8": "emanet/emanet_r50-d8_4xb2-80k_cityscapes-512x1024.py",
    "encnet-r50-d8": "encnet/encnet_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "fastfcn-r50-d32-jpu-aspp": "fastfcn/fastfcn_r50-d32_jpu_aspp_4xb2-80k_cityscapes-512x1024.py",
    "gcnet-r50-d8": "gcnet/gcnet_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "isanet-r50-d8": "isanet/isanet_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "nonlocal-r50-d8": "nonlocal_net/nonlocal_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "psanet-r50-d8": "psanet/psanet_r50-d8_4xb2-40k_cityscapes-512x1024.py",
    "resnest-s101-d8-deeplabv3": "resnest/resnest_s101-d8_deeplabv3_4xb2-80k_cityscapes-512x1024.py",
    # HRNet and OCRNet
    "hrnet-fcn-hr18s": "hrnet/fcn_hr18s_4xb2-40k_cityscapes-512x1024.py",
    "ocrnet-hr18s": "ocrnet/ocrnet_hr18s_4xb2-40k_cityscapes-512x1024.py",
    "ocrnet-r101-d8": "ocrnet/ocrnet_r101-d8_4xb2-40k_cityscapes-512x1024.py",
    # real-time networks
    "bisenetv1-r18-d32": "bisenetv1/bisenetv1_r18-d32_4xb4-160k_cityscapes-1024x1024.py",
    "bisenetv2-fcn": "bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py",
    "stdc1": "stdc/stdc1_4xb12-80k_cityscapes-512x1024.py",
    "icnet-r18-d8": "icnet/icnet_r18-d8_4xb2-80k_cityscapes-832x832.py",
    "cgnet-fcn": "cgnet/cgnet_fcn_4xb8-60k_cityscapes-512x1024.py",
    "erfnet-fcn": "erfnet/erfnet_fcn_4xb4-160k_cityscapes-512x1024.py",
    "fast-scnn": "fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py",
    "mobilenet-v2-d8-deeplabv3": "mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb2-80k_cityscapes-512x1024.py",
    "mobilenet-v3-d8-s-lraspp": "mobilenet_v3/mobilenet-v3-d8-s_lraspp_4xb4-320k_cityscapes-512x1024.py",
    "ddrnet-23-slim": "ddrnet/ddrnet_23-slim_in1k-pre_2xb6-120k_cityscapes-1024x1024.py",
    "pidnet-s": "pidnet/pidnet-s_2xb6-120k_1024x1024-cityscapes.py",
    # transformers
    "segformer-mit-b0": "segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py",
    "swin-tiny-upernet": "swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py",
    "convnext-tiny-upernet": "convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py",
    "twins-pcpvt-s-fpn": "twins/twins_pcpvt-s_fpn_fpnhead_8xb4-80k_ade20k-512x512.py",
    "twins-svt-s-uperhead": "twins/twins_svt-s_uperhead_8xb2-160k_ade20k-512x512.py",
    "vit-deit-s16-mln-upernet": "vit/vit_deit-s16_mln_upernet_8xb2-160k_ade20k-512x512.py",
    "setr-vit-l-naive": "setr/setr_vit-l_naive_8xb2-160k_ade20k-512x512.py",
    "setr-vit-l-pup": "setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py",
    "setr-vit-l-mla": "setr/setr_vit-l_mla_8xb2-160k_ade20k-512x512.py",
    "segmenter-vit-s-fcn": "segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512.py",
    "segmenter-vit-t-mask": "segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py",
    "beit-base-upernet": "beit/beit-base_upernet_8xb2-160k_ade20k-640x640.py",
    "mae-base-upernet": "mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py",
    "poolformer-s12-fpn": "poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py",
    "segnext-mscan-t": "segnext/segnext_mscan-t_1xb16-adamw-160k_ade20k-512x512.py",
    "dpt-vit-b16": "dpt/dpt_vit-b16_8xb2-160k_ade20k-512x512.py",
    "knet-s3-r50-d8-fcn": "knet/knet-s3_r50-d8_fcn_8xb2-adamw-80k_ade20k-512x512.py",
    "knet-s3-swin-t-upernet": "knet/knet-s3_swin-t_upernet_8xb2-adamw-80k_ade20k-512x512.py",
}

# The default suite's sample: one of each kind of network (a ResNetV1c stem, a cascade, a
# ViT with a mask head, ...), to stay inside CI's time; the full runs take every family.
DEFAULT = (
    "pspnet-r50-d8",
    "pointrend-r50",
    "segmenter-vit-t-mask",
    "upernet-r50",
    "segformer-mit-b0",
    "swin-tiny-upernet",
)


def selected(full: bool) -> dict[str, str]:
    """The families a test runs: ``VISTRA_SEG_ONLY``, else all (``full``), else DEFAULT."""
    only = [n for n in os.environ.get("VISTRA_SEG_ONLY", "").split(",") if n]
    unknown = [n for n in only if n not in FAMILIES]
    if unknown:
        raise ValueError(
            f"VISTRA_SEG_ONLY names unknown families {unknown}; known: {list(FAMILIES)}"
        )
    names = only or (list(FAMILIES) if full else [n for n in DEFAULT if n in FAMILIES])
    return {name: FAMILIES[name] for name in names}


def vistra_keys(path: Path, cfg_options: Sequence[str] = ()) -> dict[str, list[int]]:
    """The state_dict shapes of the config's model as vistra builds it (on the meta device:
    no memory, no init), or raises. ``cfg_options``: ``key=value`` strings applied first."""
    cfg = Config.fromfile(str(path))
    if cfg_options:
        from vistra.config.cfg_options import parse_cfg_options

        cfg.merge_from_dict(parse_cfg_options(list(cfg_options)))
    model_cfg = cfg["model"]
    if cfg.get("data_preprocessor") is not None:
        model_cfg.setdefault("data_preprocessor", cfg["data_preprocessor"])
    with warnings.catch_warnings(), default_scope(cfg.get("default_scope")):
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                model = MODELS.build(model_cfg, key_path="model")
        except RegistryError:
            raise
        except Exception:  # something that needs real tensors at construction: build on CPU
            model = MODELS.build(model_cfg, key_path="model")
    return {k: list(v.shape) for k, v in model.state_dict().items()}
