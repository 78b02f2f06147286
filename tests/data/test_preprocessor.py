"""Data preprocessors: normalisation, BGR->RGB, padding, one-hot labels, batch augments."""

import numpy as np
import pytest
import torch

from vistra.data.preprocessor import (
    BaseDataPreprocessor,
    ClsDataPreprocessor,
    ImgDataPreprocessor,
    stack_batch,
)
from vistra.data.structures import DataSample
from vistra.registry import MODELS


def _img(b, g, r, h=2, w=2):
    """A CHW uint8 image in BGR channel order with constant channels."""
    return torch.tensor([b, g, r], dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).clone()


def test_normalise_and_bgr_to_rgb_hand_checked():
    pre = ImgDataPreprocessor(mean=[10, 20, 30], std=[2, 4, 5], bgr_to_rgb=True)
    out = pre({"inputs": [_img(b=50, g=60, r=70)], "data_samples": None})
    x = out["inputs"]
    assert x.dtype == torch.float32 and x.shape == (1, 3, 2, 2)
    # after the flip the channels are R, G, B
    assert x[0, :, 0, 0].tolist() == [(70 - 10) / 2, (60 - 20) / 4, (50 - 30) / 5]


def test_stacked_tensor_input_and_no_normalisation():
    pre = ImgDataPreprocessor(rgb_to_bgr=True)
    batch = torch.stack([_img(1, 2, 3), _img(4, 5, 6)])
    x = pre({"inputs": batch})["inputs"]
    assert x[:, :, 0, 0].tolist() == [[3, 2, 1], [6, 5, 4]]


def test_padding_to_largest_and_divisor_after_normalisation():
    pre = ImgDataPreprocessor(mean=[1, 1, 1], std=[1, 1, 1], pad_size_divisor=4, pad_value=-7)
    x = pre({"inputs": [_img(3, 3, 3, h=2, w=3), _img(5, 5, 5, h=5, w=2)]})["inputs"]
    assert x.shape == (2, 3, 8, 4)
    assert (
        (x[0, :, :2, :3] == 2).all()
        and (x[0, :, 2:, :] == -7).all()
        and (x[0, :, :, 3:] == -7).all()
    )
    assert (x[1, :, :5, :2] == 4).all() and (x[1, :, 5:, :] == -7).all()


def test_stack_batch_same_sizes_untouched():
    t = [torch.ones(1, 2, 2), torch.zeros(1, 2, 2)]
    assert torch.equal(stack_batch(t), torch.stack(t))


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="both"):
        ImgDataPreprocessor(mean=[0, 0, 0])
    with pytest.raises(ValueError, match="1 or 3"):
        ImgDataPreprocessor(mean=[0, 0], std=[1, 1])
    with pytest.raises(ValueError, match="cannot both"):
        ImgDataPreprocessor(bgr_to_rgb=True, rgb_to_bgr=True)
    with pytest.raises(ValueError, match="channels"):
        ImgDataPreprocessor(mean=[0, 0, 0], std=[1, 1, 1])(
            {"inputs": [torch.zeros(1, 2, 2, dtype=torch.uint8)]}
        )


def test_nothing_in_state_dict_and_device_follows_module():
    pre = ClsDataPreprocessor(mean=[1, 2, 3], std=[1, 1, 1])
    assert pre.state_dict() == {}
    assert pre.device == torch.device("cpu")
    assert BaseDataPreprocessor()({"inputs": torch.ones(1)})["inputs"].device.type == "cpu"
    pre.to(torch.float64)
    assert pre.device.type == "cpu"


def test_cls_onehot_from_labels():
    pre = ClsDataPreprocessor(to_onehot=True, num_classes=4)
    samples = [DataSample().set_gt_label(2), DataSample().set_gt_label(0)]
    out = pre({"inputs": [_img(0, 0, 0), _img(0, 0, 0)], "data_samples": samples})
    assert out["data_samples"][0].gt_score.tolist() == [0, 0, 1, 0]
    assert out["data_samples"][1].gt_label.tolist() == [0]
    with pytest.raises(ValueError, match="num_classes"):
        ClsDataPreprocessor(to_onehot=True)(
            {"inputs": [_img(0, 0, 0)], "data_samples": [DataSample().set_gt_label(1)]}
        )


def test_batch_augments_run_only_in_training_and_keep_label_mass():
    np.random.seed(0)
    torch.manual_seed(0)
    pre = MODELS.build(
        dict(type="ClsDataPreprocessor", num_classes=3,
             batch_augments=dict(augments=[dict(type="Mixup", alpha=1.0)]))
    )  # fmt: skip
    assert pre.to_onehot

    def batch():
        imgs = [_img(i * 50, i * 50, i * 50) for i in range(3)]
        return {"inputs": imgs, "data_samples": [DataSample().set_gt_label(i) for i in range(3)]}

    evaluated = pre(batch(), training=False)
    assert [s.gt_score.tolist() for s in evaluated["data_samples"]] == [
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
    ]
    trained = pre(batch(), training=True)
    scores = torch.stack([s.gt_score for s in trained["data_samples"]])
    assert torch.allclose(scores.sum(dim=1), torch.ones(3))
    assert not torch.equal(scores, torch.eye(3))
