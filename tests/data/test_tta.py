"""Test-time augmentation: TestTimeAug (MMCV) views and SegTTAModel (MMSeg) merging."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vistra.checkpoint import load_state_dict
from vistra.data.collate import pseudo_collate
from vistra.data.structures import DataSample, PixelData
from vistra.data.transforms import tta as tta_transforms
from vistra.data.transforms.base import Compose
from vistra.models.segmentors_tta import SegTTAModel, merge_views, split_views
from vistra.registry import MODELS, TRANSFORMS

from .conftest import write_png

RATIOS = (1.0, 2.0)


def _tta_cfg(ratios=RATIOS) -> dict:
    return dict(
        type="TestTimeAug",
        transforms=[
            [dict(type="Resize", scale_factor=r, keep_ratio=True) for r in ratios],
            [dict(type="RandomFlip", prob=0.0), dict(type="RandomFlip", prob=1.0)],
            [dict(type="LoadAnnotations")],
            [dict(type="PackSegInputs")],
        ],
    )


@pytest.fixture
def samples(tmp_path: Path) -> list[dict]:
    """Two 6x8 images with asymmetric content and masks, as dataset infos."""
    rng = np.random.default_rng(0)
    infos = []
    for i in range(2):
        img = write_png(tmp_path / f"img{i}.png", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
        seg = write_png(tmp_path / f"seg{i}.png", rng.integers(0, 3, (6, 8), dtype=np.uint8))
        infos.append(dict(img_path=str(img), seg_map_path=str(seg), reduce_zero_label=False,
                          seg_fields=[], sample_idx=i))  # fmt: skip
    return infos


def _pipeline(cfg: dict | None = None) -> Compose:
    return Compose([dict(type="LoadImageFromFile"), cfg or _tta_cfg()])


# ----------------------------------------------------------------------------- TestTimeAug
def test_views_are_the_cartesian_product_with_flip_meta(samples):
    out = _pipeline()(copy.deepcopy(samples[0]))
    assert set(out) == {"inputs", "data_samples"}
    assert len(out["inputs"]) == len(out["data_samples"]) == 4
    metas = [s.metainfo for s in out["data_samples"]]
    # first stage varies slowest: (1.0, no flip), (1.0, flip), (2.0, no flip), (2.0, flip)
    assert [m["flip"] for m in metas] == [False, True, False, True]
    assert [m["flip_direction"] for m in metas] == [None, "horizontal", None, "horizontal"]
    assert [m["img_shape"] for m in metas] == [(6, 8), (6, 8), (12, 16), (12, 16)]
    assert [tuple(x.shape) for x in out["inputs"]] == [
        (3, 6, 8),
        (3, 6, 8),
        (3, 12, 16),
        (3, 12, 16),
    ]
    assert torch.equal(out["inputs"][1], out["inputs"][0].flip(-1))
    # LoadAnnotations after resize/flip: every view keeps the original mask
    gts = [s.gt_sem_seg.data for s in out["data_samples"]]
    assert all(torch.equal(g, gts[0]) and g.shape == (1, 6, 8) for g in gts)


def test_each_view_gets_its_own_copy(samples):
    seen = []

    def record(results):
        seen.append(id(results))
        results["touched"] = True
        return results

    tta = tta_transforms.TestTimeAug([[record], [lambda r: r, lambda r: r]])
    info = copy.deepcopy(samples[0])
    out = tta(info)
    assert "touched" not in info and len(set(seen)) == 2 and out["touched"] == [True, True]


def test_bad_transforms_and_dropped_views_are_loud():
    with pytest.raises(TypeError, match=r"transforms\[0\] must be a non-empty list"):
        tta_transforms.TestTimeAug([dict(type="RandomFlip", prob=1.0)])
    with pytest.raises(TypeError, match=r"transforms\[1\]\[0\] must be a dict or a callable"):
        tta_transforms.TestTimeAug([[lambda r: r], [3]])
    with pytest.raises(Exception, match="Resiz"):
        TRANSFORMS.build(dict(type="TestTimeAug", transforms=[[dict(type="Resiz", scale=2)]]))
    dropping = tta_transforms.TestTimeAug([[lambda r: r, lambda r: None]])
    with pytest.raises(RuntimeError, match="(?s)view 1 .*never drop a sample"):
        dropping({"img_path": "x.png"})


def test_collated_batch_has_one_list_per_view(samples):
    pipe = _pipeline()
    batch = pseudo_collate([pipe(copy.deepcopy(s)) for s in samples])
    assert len(batch["inputs"]) == 4 and all(len(view) == 2 for view in batch["inputs"])
    assert batch["data_samples"][3][1].metainfo["img_path"] == samples[1]["img_path"]
    views = split_views(batch)
    assert len(views) == 4 and views[2]["inputs"][0].shape == (3, 12, 16)


# ----------------------------------------------------------------------------- merging
def _view(logits, **meta) -> DataSample:
    s = DataSample(metainfo=dict(img_path="a.png", ori_shape=(1, 1), flip=True, **meta))
    s.seg_logits = PixelData(torch.tensor(logits, dtype=torch.float32).view(-1, 1, 1))
    s.gt_sem_seg = PixelData(torch.zeros(1, 1, 1, dtype=torch.long))
    return s


def test_merge_averages_softmax_not_logits():
    # mean of logits picks class 1; mean of probabilities picks class 0
    views = [_view([0.0, 100.0]), _view([5.0, 0.0]), _view([5.0, 0.0])]
    merged = merge_views(views)
    assert merged.pred_sem_seg.data.tolist() == [[[0]]]
    assert merged.gt_sem_seg is views[0].gt_sem_seg
    assert merged.metainfo == {"img_path": "a.png", "ori_shape": (1, 1)}  # no view's flip


def test_merge_binary_uses_sigmoid_mean_and_threshold():
    views = [_view([2.0]), _view([-1.0])]  # sigmoids 0.881 and 0.269: mean 0.575
    assert merge_views(views, threshold=0.5).pred_sem_seg.data.tolist() == [[[1]]]
    assert merge_views(views, threshold=0.6).pred_sem_seg.data.tolist() == [[[0]]]


def test_merge_refuses_views_of_different_sizes():
    big = DataSample()
    big.seg_logits = PixelData(torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="resize them back"):
        merge_views([_view([0.0, 1.0]), big])


def test_plain_batch_is_rejected_with_a_hint():
    with pytest.raises(TypeError, match="tta_pipeline"):
        split_views({"inputs": [torch.zeros(3, 2, 2)], "data_samples": [DataSample()]})
    with pytest.raises(ValueError, match="'data_samples' has 1 entries for 2 views"):
        split_views(
            {"inputs": [[torch.zeros(3, 2, 2)], [torch.zeros(3, 2, 2)]], "data_samples": [[1]]}
        )


# ----------------------------------------------------------------------------- SegTTAModel
class PixelBackbone(nn.Module):
    """A 1x1 conv: each output pixel depends on its own input pixel only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return (torch.tanh(self.conv(x)),)


def _segmentor_cfg(**extra) -> dict:
    return dict(
        type="EncoderDecoder",
        backbone=PixelBackbone(),
        decode_head=dict(type="FCNHead", in_channels=4, channels=4, num_convs=0, concat_input=False,
                         kernel_size=1, dropout_ratio=0, num_classes=3),
        test_cfg=dict(mode="whole"),
        data_preprocessor=dict(type="SegDataPreProcessor", mean=[100.0] * 3, std=[50.0] * 3),
        **extra,
    )  # fmt: skip


@pytest.fixture
def tta_model() -> SegTTAModel:
    torch.manual_seed(0)
    model = MODELS.build(dict(type="SegTTAModel", module=_segmentor_cfg()))
    model.init_weights()
    return model.eval()


def test_test_step_merges_the_segmentor_views(tta_model, samples):
    pipe = _pipeline()
    batch = pseudo_collate([pipe(copy.deepcopy(s)) for s in samples])
    twin = pseudo_collate([pipe(copy.deepcopy(s)) for s in samples])
    with torch.no_grad():
        merged = tta_model.test_step(batch)
        per_view = [tta_model.module.test_step(view) for view in split_views(twin)]
    assert len(merged) == 2
    for i, out in enumerate(merged):
        logits = [view[i].seg_logits.data for view in per_view]
        assert all(x.shape == (3, 6, 8) for x in logits)
        # the 1x1 model at scale 1: un-flipping the flipped view's logits restores view 0
        assert torch.allclose(logits[1], logits[0], atol=1e-6)
        probs = torch.stack([x.softmax(0) for x in logits]).mean(0)
        assert torch.equal(out.pred_sem_seg.data, probs.argmax(0, keepdim=True))
        assert out.metainfo["img_path"] == samples[i]["img_path"]
        assert torch.equal(out.gt_sem_seg.data, per_view[0][i].gt_sem_seg.data)
    assert tta_model.val_step(pseudo_collate([pipe(copy.deepcopy(samples[0]))]))[
        0
    ].pred_sem_seg.shape == (6, 8)


def test_data_preprocessor_override_and_plain_checkpoint_keys(tmp_path):
    pre = dict(type="SegDataPreProcessor", mean=[1.0] * 3, std=[2.0] * 3, bgr_to_rgb=True)
    tta = MODELS.build(dict(type="SegTTAModel", module=_segmentor_cfg(), data_preprocessor=pre))
    assert tta.module.data_preprocessor.mean.flatten().tolist() == [1.0] * 3
    plain = MODELS.build(_segmentor_cfg())
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(1.0)
    assert list(tta.state_dict()) == list(plain.state_dict())  # no 'module.' prefix
    report = load_state_dict(tta, plain.state_dict())
    assert not report.missing and not report.unexpected
    assert all(torch.equal(a, b) for a, b in zip(tta.module.parameters(), plain.parameters()))


def test_wrapper_rejects_non_models_and_forward():
    with pytest.raises(TypeError, match="model config or an nn.Module"):
        SegTTAModel(module=3)
    with pytest.raises(TypeError, match="test_step"):
        SegTTAModel(module=nn.Linear(2, 2))
    tta = SegTTAModel(module=MODELS.build(_segmentor_cfg()))
    with pytest.raises(NotImplementedError, match="test_step"):
        tta(torch.zeros(1, 3, 2, 2))
