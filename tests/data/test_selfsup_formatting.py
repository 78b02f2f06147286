"""MMSelfSup 1.x's data names: ``PackSelfSupInputs`` and its ``RandomResizedCrop`` variant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vistra.data.collate import default_collate, pseudo_collate
from vistra.data.structures import DataSample, SelfSupDataSample
from vistra.data.transforms.resize import RandomResizedCrop
from vistra.data.transforms.selfsup import SelfSupRandomResizedCrop
from vistra.data.transforms.selfsup_formatting import PackSelfSupInputs, ValueData
from vistra.models.selfsup.data_preprocessor import SelfSupDataPreprocessor
from vistra.registry import TRANSFORMS, RegistryError, default_scope


def _img(h: int = 8, w: int = 6, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def test_one_image_is_packed_as_a_one_view_list_with_meta_keys():
    img = _img()
    out = PackSelfSupInputs(meta_keys=["img_path"])({"img": img, "img_path": "a.png"})
    assert isinstance(out["inputs"], list) and len(out["inputs"]) == 1
    assert torch.equal(out["inputs"][0], torch.from_numpy(img).permute(2, 0, 1))
    sample = out["data_samples"]
    assert isinstance(sample, DataSample) and SelfSupDataSample is DataSample
    assert sample.metainfo == {"img_path": "a.png"}
    assert sample.keys() == []


def test_views_keep_their_order_and_a_grey_view_gets_a_channel_axis():
    views = [_img(seed=1), _img(seed=2), _img(c=3, seed=3)[..., 0]]
    out = PackSelfSupInputs()({"img": views})
    shapes = [tuple(t.shape) for t in out["inputs"]]
    assert shapes == [(3, 8, 6), (3, 8, 6), (1, 8, 6)]
    assert torch.equal(out["inputs"][1], torch.from_numpy(views[1]).permute(2, 0, 1))


def test_other_key_and_bad_rank_and_missing_keys_are_errors_that_name_them():
    out = PackSelfSupInputs(key="target")({"target": _img()})
    assert tuple(out["inputs"][0].shape) == (3, 8, 6)
    with pytest.raises(ValueError, match="view 0 must be a 2-, 3- or 5-dimensional"):
        PackSelfSupInputs()({"img": np.zeros((1, 2, 3, 4), np.uint8)})
    with pytest.raises(KeyError, match="meta key 'img_path'"):
        PackSelfSupInputs(meta_keys=["img_path"])({"img": _img()})
    with pytest.raises(KeyError, match="key 'img' is not in the results"):
        PackSelfSupInputs()({"image": _img()})


def test_algorithm_and_pseudo_label_keys_follow_mmselfsup_layout():
    results = {"img": _img(), "sample_idx": 7, "mask": np.ones((2, 2), bool), "clustering": 3}
    pack = PackSelfSupInputs(
        algorithm_keys=["sample_idx", "mask"], pseudo_label_keys=["clustering"]
    )
    sample = pack(results)["data_samples"]
    assert isinstance(sample.sample_idx, ValueData)
    assert torch.equal(sample.sample_idx.value, torch.tensor([7]))
    assert sample.mask.value.dtype == torch.bool and tuple(sample.mask.value.shape) == (2, 2)
    assert torch.equal(sample.pseudo_label.clustering, torch.tensor([3]))
    moved = sample.to("cpu")
    assert torch.equal(moved.mask.value, sample.mask.value)
    with pytest.raises(ValueError, match="not fields of MMSelfSup's data sample"):
        PackSelfSupInputs(algorithm_keys=["boxes"])


@pytest.mark.parametrize("collate", [default_collate, pseudo_collate])
def test_collated_views_reach_the_model_as_a_list_of_batches(collate):
    pack = PackSelfSupInputs(meta_keys=["img_path"])
    batch = [
        pack({"img": [_img(seed=i), _img(seed=i + 10)], "img_path": f"{i}.png"}) for i in range(3)
    ]
    data = SelfSupDataPreprocessor(mean=[0, 0, 0], std=[1, 1, 1], bgr_to_rgb=True)(collate(batch))
    views = data["inputs"]
    assert isinstance(views, list) and [tuple(v.shape) for v in views] == [(3, 3, 8, 6)] * 2
    expected = torch.from_numpy(_img(seed=11)).permute(2, 0, 1).flip(0).float()
    assert torch.equal(views[1][1], expected)
    assert [s.img_path for s in data["data_samples"]] == ["0.png", "1.png", "2.png"]
    one = SelfSupDataPreprocessor()(default_collate([pack({"img": _img(), "img_path": "x"})] * 2))
    assert isinstance(one["inputs"], list) and tuple(one["inputs"][0].shape) == (2, 3, 8, 6)


def test_mmselfsup_random_resized_crop_takes_size_scale_ratio():
    with default_scope("mmselfsup"):
        crop = TRANSFORMS.build(
            dict(
                type="RandomResizedCrop",
                size=16,
                scale=(0.2, 1.0),
                backend="pillow",
                interpolation="bicubic",
            )
        )
    assert isinstance(crop, SelfSupRandomResizedCrop)
    assert crop.crop_ratio_range == (0.2, 1.0) and crop.size == (16, 16)
    assert crop.aspect_ratio_range == (3 / 4, 4 / 3)
    np.random.seed(0)
    out = crop({"img": _img(40, 30)})
    assert out["img"].shape == (16, 16, 3) and out["img_shape"] == (16, 16)
    # the same draws as MMPretrain's transform with the mapped arguments
    np.random.seed(0)
    ref = RandomResizedCrop(
        scale=16, crop_ratio_range=(0.2, 1.0), backend="pillow", interpolation="bicubic"
    )({"img": _img(40, 30)})
    assert np.array_equal(out["img"], ref["img"])
    rect = SelfSupRandomResizedCrop(size=(12, 20))({"img": _img(40, 30)})
    assert rect["img"].shape == (12, 20, 3)
    # MMPretrain's scope keeps MMPretrain's arguments, and says which are valid
    with default_scope("mmpretrain"), pytest.raises(RegistryError, match="'size'"):
        TRANSFORMS.build(dict(type="RandomResizedCrop", size=16))
    assert isinstance(
        TRANSFORMS.build(dict(type="mmselfsup.RandomResizedCrop", size=8)), SelfSupRandomResizedCrop
    )
