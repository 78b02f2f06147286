"""SegDataPreProcessor (MMSeg): normalise, pad images with pad_val and masks with seg_pad_val,
padding metainfo in training and testing."""

import pytest
import torch

from vistra.data.preprocessor import SegDataPreProcessor, pad_seg_batch
from vistra.data.structures import DataSample, PixelData
from vistra.registry import MODELS


def _img(value: int, h: int, w: int) -> torch.Tensor:
    return torch.full((3, h, w), value, dtype=torch.uint8)


def _sample(h: int, w: int, label: int = 1) -> DataSample:
    s = DataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
    s.gt_sem_seg = PixelData(torch.full((1, h, w), label, dtype=torch.long))
    return s


def _batch(*shapes):
    return {
        "inputs": [_img(10 * (i + 1), h, w) for i, (h, w) in enumerate(shapes)],
        "data_samples": [_sample(h, w) for h, w in shapes],
    }


def test_training_pads_to_size_with_pad_values_and_meta():
    pre = MODELS.build(dict(type="SegDataPreProcessor", size=(8, 7), pad_val=-1, seg_pad_val=254))
    out = pre(_batch((5, 6), (8, 3)), training=True)
    x, samples = out["inputs"], out["data_samples"]
    assert x.shape == (2, 3, 8, 7) and x.dtype == torch.float32
    assert (
        x[0, :, :5, :6].eq(10).all() and x[0, :, 5:, :].eq(-1).all() and x[0, :, :, 6:].eq(-1).all()
    )
    seg = samples[0].gt_sem_seg.data
    assert seg.shape == (1, 8, 7) and seg[:, :5, :6].eq(1).all() and seg[:, 5:].eq(254).all()
    assert samples[1].gt_sem_seg.data[:, :, 3:].eq(254).all()
    meta = samples[0].metainfo
    assert meta["img_shape"] == (5, 6) and meta["pad_shape"] == (8, 7)
    assert meta["padding_size"] == (0, 1, 0, 3)  # left, right, top, bottom
    assert meta["batch_input_shape"] == (8, 7)
    assert samples[1].metainfo["padding_size"] == (0, 4, 0, 0)


def test_training_pads_to_size_divisor_of_largest():
    pre = SegDataPreProcessor(size_divisor=4)
    out = pre(_batch((5, 6), (6, 3)), training=True)
    assert out["inputs"].shape == (2, 3, 8, 8)
    assert out["data_samples"][1].metainfo["padding_size"] == (0, 5, 0, 2)
    assert out["data_samples"][1].gt_sem_seg.data[:, 6:, :].eq(255).all()  # default seg_pad_val


def test_normalise_and_bgr_to_rgb_before_padding():
    pre = SegDataPreProcessor(mean=[1, 2, 3], std=[1, 2, 4], size=(2, 3), bgr_to_rgb=True)
    img = (
        torch.tensor([5, 6, 7], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2).clone()
    )  # B, G, R
    s = _sample(2, 2)
    x = pre({"inputs": [img], "data_samples": [s]}, training=True)["inputs"]
    assert x[0, :, 0, 0].tolist() == [(7 - 1) / 1, (6 - 2) / 2, (5 - 3) / 4]
    assert x[0, :, :, 2].eq(0).all()  # pad_val applies after normalisation


def test_edge_maps_are_padded_too():
    pre = SegDataPreProcessor(size=(3, 3))
    s = _sample(2, 2)
    s.gt_edge_map = PixelData(torch.ones(1, 2, 2, dtype=torch.long))
    pre({"inputs": [_img(1, 2, 2)], "data_samples": [s]}, training=True)
    assert s.gt_edge_map.data.tolist() == [[[1, 1, 255], [1, 1, 255], [255, 255, 255]]]


def test_testing_pads_per_test_cfg_and_keeps_labels():
    pre = SegDataPreProcessor(size=(16, 16), test_cfg=dict(size_divisor=4))
    batch = _batch((5, 6))
    out = pre(batch, training=False)
    assert out["inputs"].shape == (1, 3, 8, 8)  # test_cfg, not the training size
    meta = out["data_samples"][0].metainfo
    assert meta["padding_size"] == meta["img_padding_size"] == (0, 2, 0, 3)
    assert meta["pad_shape"] == (8, 8) and meta["img_shape"] == (5, 6)
    assert out["data_samples"][0].gt_sem_seg.data.shape == (1, 5, 6)  # unpadded


def test_testing_without_test_cfg_pads_only_to_stack():
    pre = SegDataPreProcessor(size=(16, 16))
    same = pre(_batch((5, 6), (5, 6)), training=False)
    assert same["inputs"].shape == (2, 3, 5, 6)
    assert same["data_samples"][0].metainfo["padding_size"] == (0, 0, 0, 0)
    mixed = pre(_batch((5, 6), (4, 7)), training=False)
    assert mixed["inputs"].shape == (2, 3, 5, 7)
    assert mixed["data_samples"][1].metainfo["img_padding_size"] == (0, 0, 0, 1)
    assert pre({"inputs": [_img(1, 2, 2)]})["inputs"].shape == (1, 3, 2, 2)  # no samples


def test_batch_augments_run_in_training_only():
    calls = []

    def double(inputs, samples):
        calls.append(inputs.shape)
        return inputs * 2, samples

    pre = SegDataPreProcessor(size=(2, 2), batch_augments=[double])
    assert pre(_batch((2, 2)), training=True)["inputs"].eq(20).all()
    assert pre(_batch((2, 2)), training=False)["inputs"].eq(10).all()
    assert calls == [(1, 3, 2, 2)]


def test_bad_arguments_are_loud():
    with pytest.raises(ValueError, match="size or size_divisor, not both"):
        SegDataPreProcessor(size=(4, 4), size_divisor=4)
    with pytest.raises(ValueError, match=r"size must be \(h, w\)"):
        SegDataPreProcessor(size=512)
    with pytest.raises(ValueError, match="unknown keys \\['mode'\\]"):
        SegDataPreProcessor(test_cfg=dict(mode="whole"))
    with pytest.raises(ValueError, match="not both"):
        SegDataPreProcessor(test_cfg=dict(size=(4, 4), size_divisor=2))
    with pytest.raises(TypeError, match="batch_augments\\[0\\] must be a callable"):
        SegDataPreProcessor(batch_augments=[3])


def test_training_errors_name_the_fix():
    pre = SegDataPreProcessor(size=(4, 4))
    with pytest.raises(ValueError, match="crop to the size"):
        pre(_batch((5, 4), (4, 4)), training=True)
    no_gt = {"inputs": [_img(1, 4, 4)], "data_samples": [DataSample()]}
    with pytest.raises(KeyError, match="LoadAnnotations"):
        pre(no_gt, training=True)
    with pytest.raises(TypeError, match="TestTimeAug"):
        pre({"inputs": [[_img(1, 4, 4)]], "data_samples": [[DataSample()]]})


def test_pad_seg_batch_returns_left_right_top_bottom():
    batch, pads = pad_seg_batch(
        [torch.zeros(1, 2, 3), torch.zeros(1, 4, 1)], size_divisor=3, pad_val=7
    )
    assert batch.shape == (2, 1, 6, 3) and pads == [(0, 0, 0, 4), (0, 2, 0, 2)]
    assert batch[0, 0, 2:].eq(7).all() and batch[0, 0, :2].eq(0).all()


def test_seg_preprocessor_normalises_any_number_of_channels():
    # MMSegmentation's LEVIR-CD configs stack two RGB images: mean/std of six values
    from vistra.data.preprocessor import ImgDataPreprocessor, SegDataPreProcessor

    mean, std = [1.0, 2, 3, 4, 5, 6], [2.0] * 6
    pre = SegDataPreProcessor(mean=mean, std=std)
    img = torch.arange(6, dtype=torch.float32).view(6, 1, 1).expand(6, 2, 2).clone()
    out = pre({"inputs": [img], "data_samples": None}, training=False)["inputs"]
    expected = (img - torch.tensor(mean).view(6, 1, 1)) / 2.0
    assert torch.equal(out[0], expected)
    with pytest.raises(ValueError, match="6 values but the image has 3 channels"):
        pre({"inputs": [img[:3]], "data_samples": None}, training=False)
    with pytest.raises(ValueError, match="1 or 3 values"):
        ImgDataPreprocessor(mean=mean, std=std)  # MMEngine's own rule stays
