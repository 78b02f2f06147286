"""The classification model zoo's families, one representative MMPretrain config each (paths
relative to the wheel's ``.mim/configs``) and the input size its numeric check runs at, for
the upstream-oracle numeric tests (tests/upstream/test_cls_numeric.py) and the
train/evaluate tests over upstream configs (tests/upstream/test_cls_zoo_train.py).

``VISTRA_CLS_ONLY=name,name`` narrows those tests to the named families (handy while
working on one family); otherwise the default suite takes ``DEFAULT`` and
``VISTRA_UPSTREAM_FULL=1`` / ``VISTRA_ZOO_FULL=1`` take every family.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The wheel's folders outside the classification zoo (tests/upstream/test_cls_coverage.py)
# and the model types that are classifiers
MULTIMODAL = ("blip", "blip2", "chinese_clip", "clip", "flamingo", "glip", "llava", "minigpt4",
              "ofa", "otter")  # fmt: skip
SELF_SUPERVISED = ("barlowtwins", "beitv2", "byol", "cae", "densecl", "itpn", "mae", "maskfeat",
                   "mff", "milan", "mixmim", "mocov2", "mocov3", "simclr", "simmim", "simsiam",
                   "spark", "swav")  # fmt: skip
CLASSIFIERS = (
    "ImageClassifier",
    "ImageToImageRetriever",
    "TimmClassifier",
    "HuggingFaceClassifier",
)


@dataclass(frozen=True)
class Family:
    config: str
    # (H, W) of the numeric check's input; most networks take any size, a few are built for
    # one (attention biases per resolution, fixed position embeddings, fixed pooling)
    size: tuple[int, int] = (64, 64)
    channels: int = 3
    # --cfg-options of the numeric check, for both sides (e.g. no pretrained checkpoint)
    cfg_options: tuple[str, ...] = ()
    # False for a config that cannot train anywhere (a headless feature extractor)
    trains: bool = True
    # False where an upstream checkpoint does not hold the whole model (LoRA saves only its
    # adapters): the keys test still compares the keys
    numeric: bool = True
    # (key, value) overrides the training test needs where the wheel's config cannot train
    # as it is (each says why beside its family)
    train_options: tuple[tuple[str, object], ...] = ()


def _f(
    config: str,
    size: tuple[int, int] = (64, 64),
    channels: int = 3,
    cfg_options: tuple[str, ...] = (),
    trains: bool = True,
    numeric: bool = True,
    train_options: tuple[tuple[str, object], ...] = (),
) -> Family:
    return Family(config, size, channels, cfg_options, trains, numeric, train_options)


FAMILIES: dict[str, Family] = {
    # ResNet family and relatives
    "resnet50": _f("resnet/resnet50_8xb32_in1k.py"),
    "resnetv1d50": _f("resnet/resnetv1d50_8xb32_in1k.py"),
    "resnet18-cifar": _f("resnet/resnet18_8xb16_cifar10.py", (32, 32)),
    "wide-resnet50": _f("wrn/wide-resnet50_8xb32_in1k.py"),
    "resnext50-32x4d": _f("resnext/resnext50-32x4d_8xb32_in1k.py"),
    "seresnet50": _f("seresnet/seresnet50_8xb32_in1k.py"),
    "seresnext50-32x4d": _f("seresnet/seresnext50-32x4d_8xb32_in1k.py"),
    # sets val_dataloader and val_evaluator but no val_cfg (nor test_cfg): MMEngine refuses
    # it too; the training test adds the empty loop configs a user would
    "resnest50": _f(
        "resnest/resnest50_32xb64_in1k.py", train_options=(("val_cfg", {}), ("test_cfg", {}))
    ),
    "res2net50-w14-s8": _f("res2net/res2net50-w14-s8_8xb32_in1k.py"),
    # its PreciseBNHook averages 8192 samples; the tiny run has 4
    "regnetx-400mf": _f(
        "regnet/regnetx-400mf_8xb128_in1k.py",
        train_options=(
            ("custom_hooks", [dict(type="PreciseBNHook", num_samples=4, priority="ABOVE_NORMAL")]),
        ),
    ),
    "cspdarknet50": _f("cspnet/cspdarknet50_8xb32_in1k.py"),
    "cspresnet50": _f("cspnet/cspresnet50_8xb32_in1k.py"),
    "cspresnext50": _f("cspnet/cspresnext50_8xb32_in1k.py"),
    "densenet121": _f("densenet/densenet121_4xb256_in1k.py"),
    "vgg11": _f("vgg/vgg11_8xb32_in1k.py", (224, 224)),
    "vgg11bn": _f("vgg/vgg11bn_8xb32_in1k.py", (224, 224)),
    "hrnet-w18": _f("hrnet/hrnet-w18_4xb32_in1k.py"),
    "inception-v3": _f("inception_v3/inception-v3_8xb32_in1k.py", (96, 96)),
    "lenet5": _f("lenet/lenet5_mnist.py", (32, 32), channels=1),
    "convmixer-768-32": _f("convmixer/convmixer-768-32_10xb64_in1k.py"),
    # mobile networks
    "mobilenet-v2": _f("mobilenet_v2/mobilenet-v2_8xb32_in1k.py"),
    "mobilenet-v3-small": _f("mobilenet_v3/mobilenet-v3-small_8xb128_in1k.py"),
    "shufflenet-v1": _f("shufflenet_v1/shufflenet-v1-1x_16xb64_in1k.py"),
    "shufflenet-v2": _f("shufflenet_v2/shufflenet-v2-1x_16xb64_in1k.py"),
    "efficientnet-b0": _f("efficientnet/efficientnet-b0_8xb32_in1k.py"),
    "efficientnetv2-b0": _f("efficientnet_v2/efficientnetv2-b0_8xb32_in1k.py"),
    "mobilevit-xxsmall": _f("mobilevit/mobilevit-xxsmall_8xb128_in1k.py"),
    "efficientformer-l1": _f("efficientformer/efficientformer-l1_8xb128_in1k.py", (224, 224)),
    "edgenext-xxsmall": _f("edgenext/edgenext-xxsmall_8xb256_in1k.py"),
    "levit-128s": _f("levit/levit-128s_8xb256_in1k.py", (224, 224)),
    "tinyvit-5m": _f("tinyvit/tinyvit-5m_8xb256_in1k.py", (224, 224)),
    # re-parameterisable networks
    "repvgg-a0": _f("repvgg/repvgg-A0_8xb32_in1k.py"),
    "mobileone-s0": _f("mobileone/mobileone-s0_8xb32_in1k.py"),
    "repmlp-base": _f("repmlp/repmlp-base_8xb64_in1k.py", (224, 224)),
    # (MMEngine refuses the 31B configs: their base imports mmpretrain; vistra reads them)
    "replknet-xl": _f("replknet/replknet-XL_32xb64_in1k-320px.py"),
    # modern convolutional networks
    "convnext-tiny": _f("convnext/convnext-tiny_32xb128_in1k.py"),
    "convnext-v2-atto": _f("convnext_v2/convnext-v2-atto_32xb32_in1k.py"),
    "van-tiny": _f("van/van-tiny_8xb128_in1k.py"),
    "hornet-tiny": _f("hornet/hornet-tiny_8xb128_in1k.py"),
    "hornet-tiny-gf": _f("hornet/hornet-tiny-gf_8xb128_in1k.py", (224, 224)),
    "poolformer-s12": _f("poolformer/poolformer-s12_32xb128_in1k.py"),
    "riformer-s12": _f("riformer/riformer-s12_8xb128_in1k.py"),
    # vision transformers
    "vit-b": _f("vision_transformer/vit-base-p16_64xb64_in1k.py"),
    # MMPretrain's LoRAModel saves only the adapters (26 tensors), so its checkpoint cannot
    # carry the frozen ViT's random weights to vistra: trained and keys-checked only
    "vit-b-lora": _f("vision_transformer/vit-base-p16_8xb64-lora_in1k-384px.py", numeric=False),
    "deit-tiny": _f("deit/deit-tiny_4xb256_in1k.py"),
    "deit-tiny-distilled": _f("deit/deit-tiny-distilled_4xb256_in1k.py"),
    "deit3-small": _f("deit3/deit3-small-p16_64xb64_in1k.py"),
    "beit-base": _f("beit/benchmarks/beit-base-p16_8xb64_in1k.py", (224, 224)),
    "eva02-tiny": _f("eva02/eva02-tiny-p14_in1k.py", (224, 224)),
    # headless (no head, data or schedule upstream either): checked numerically only
    "vit-sam-base": _f("sam/vit-base-p16_sam_headless.py", (224, 224), trains=False),
    "revvit-small": _f("revvit/revvit-small_8xb256_in1k.py", (224, 224)),
    "hivit-tiny": _f("hivit/hivit-tiny-p16_16xb64_in1k.py", (224, 224)),
    "t2t-vit-t-14": _f("t2t_vit/t2t-vit-t-14_8xb64_in1k.py", (224, 224)),
    "tnt-s": _f("tnt/tnt-s-p16_16xb64_in1k.py", (224, 224)),
    "conformer-tiny": _f("conformer/conformer-tiny-p16_8xb128_in1k.py"),
    "xcit-nano-12-p16": _f("xcit/xcit-nano-12-p16_8xb128_in1k.py"),
    # hierarchical transformers
    "swin-tiny": _f("swin_transformer/swin-tiny_16xb64_in1k.py", (224, 224)),
    "swinv2-tiny-w8": _f("swin_transformer_v2/swinv2-tiny-w8_16xb64_in1k-256px.py", (256, 256)),
    "twins-pcpvt-small": _f("twins/twins-pcpvt-small_8xb128_in1k.py"),
    "twins-svt-small": _f("twins/twins-svt-small_8xb128_in1k.py"),
    "davit-tiny": _f("davit/davit-tiny_4xb256_in1k.py", (224, 224)),
    "mvitv2-tiny": _f("mvit/mvitv2-tiny_8xb256_in1k.py"),
    # MLPs and graph networks
    "mlp-mixer-base": _f("mlp_mixer/mlp-mixer-base-p16_64xb64_in1k.py", (224, 224)),
    "vig-tiny": _f("vig/vig-tiny_8xb128_in1k.py", (224, 224)),
    "pvig-tiny": _f("vig/pvig-tiny_8xb128_in1k.py", (224, 224)),
    # heads of their own
    "resnet101-csra": _f("csra/resnet101-csra_1xb16_voc07-448px.py"),
    "resnet50-arcface": _f("arcface/resnet50-arcface_8xb32_inshop.py"),
    "resnet50-multilabel-mixup": _f("resnet/resnet50_8xb32-mixup_in1k.py"),
}

# The default suite's sample: one of each kind of network, to stay inside CI's time; the full
# runs take every family.
DEFAULT = (
    "resnet50",
    "vit-b",
    "repvgg-a0",
    "efficientnet-b0",
    "swin-tiny",
    "xcit-nano-12-p16",
)


def selected(full: bool) -> dict[str, Family]:
    """The families a test runs: ``VISTRA_CLS_ONLY``, else all (``full``), else DEFAULT."""
    only = [n for n in os.environ.get("VISTRA_CLS_ONLY", "").split(",") if n]
    unknown = [n for n in only if n not in FAMILIES]
    if unknown:
        raise ValueError(
            f"VISTRA_CLS_ONLY names unknown families {unknown}; known: {list(FAMILIES)}"
        )
    names = only or (list(FAMILIES) if full else [n for n in DEFAULT if n in FAMILIES])
    return {name: FAMILIES[name] for name in names}
