import numpy as np
import torch

from vistra.data.structures import DataSample, PixelData
from vistra.data.transforms.formatting import PackInputs, PackSegInputs
from vistra.registry import TRANSFORMS


def test_pack_inputs_chw_uint8_label_and_meta():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    results = {
        "img": img[:, ::-1],
        "gt_label": 2,
        "img_path": "a.png",
        "ori_shape": (2, 3),
        "img_shape": (2, 3),
        "flip": True,
        "sample_idx": 5,
        "other": 1,
    }
    out = TRANSFORMS.build(dict(type="PackInputs"))(results)
    x = out["inputs"]
    assert x.shape == (3, 2, 3) and x.dtype == torch.uint8
    assert torch.equal(x, torch.from_numpy(np.ascontiguousarray(img[:, ::-1].transpose(2, 0, 1))))
    sample = out["data_samples"]
    assert isinstance(sample, DataSample) and sample.gt_label.tolist() == [2]
    assert sample.metainfo == {
        "sample_idx": 5,
        "img_path": "a.png",
        "ori_shape": (2, 3),
        "img_shape": (2, 3),
        "flip": True,
    }
    assert "other" not in sample


def test_pack_inputs_grey_list_inputs_algorithm_keys_and_old_name():
    out = TRANSFORMS.build(dict(type="PackClsInputs", algorithm_keys=("extra", "absent")))(
        {
            "img": [np.zeros((4, 5), np.uint8), np.zeros((4, 5, 3), np.uint8)],
            "extra": 7,
            "gt_score": [0.2, 0.8],
        }
    )
    assert [t.shape for t in out["inputs"]] == [(1, 4, 5), (3, 4, 5)]
    assert out["data_samples"].extra == 7 and torch.allclose(
        out["data_samples"].gt_score, torch.tensor([0.2, 0.8])
    )
    assert PackInputs()({"gt_label": 1})["data_samples"].gt_label.tolist() == [
        1
    ]  # no image: no inputs


def test_pack_seg_inputs():
    seg = np.array([[0, 1], [255, 2]], np.uint8)
    results = {
        "img": np.zeros((2, 2, 3), np.uint8),
        "gt_seg_map": seg,
        "seg_map_path": "s.png",
        "reduce_zero_label": False,
        "pad_shape": (2, 2, 3),
        "scale_factor": (1.0, 1.0),
    }
    out = TRANSFORMS.build(dict(type="PackSegInputs"))(results)
    assert out["inputs"].shape == (3, 2, 2) and out["inputs"].dtype == torch.uint8
    gt = out["data_samples"].gt_sem_seg
    assert isinstance(gt, PixelData) and gt.data.dtype == torch.int64 and gt.data.shape == (1, 2, 2)
    assert gt.data[0].tolist() == [[0, 1], [255, 2]]
    meta = out["data_samples"].metainfo
    assert (
        meta["seg_map_path"] == "s.png"
        and meta["reduce_zero_label"] is False
        and meta["pad_shape"] == (2, 2, 3)
    )
    out = PackSegInputs()({"img": np.zeros((2, 2), np.uint8), "gt_edge_map": seg})
    assert out["inputs"].shape == (1, 2, 2) and out["data_samples"].gt_edge_map.data.shape == (
        1,
        2,
        2,
    )


def test_pack_inputs_gives_a_numpy_mask_as_a_tensor_the_preprocessor_can_move():
    # SimMIMMaskGenerator writes a numpy mask; MMPretrain's DataSample.set_mask makes it a
    # tensor (numpy >= 2 arrays have a string ``device`` that the preprocessor tripped on)
    import numpy as np
    import torch

    from vistra.data.preprocessor import ImgDataPreprocessor
    from vistra.data.transforms import PackInputs

    results = {"img": np.zeros((8, 8, 3), np.uint8), "mask": np.ones((2, 2), np.int64)}
    packed = PackInputs(algorithm_keys=["mask"])(results)
    assert isinstance(packed["data_samples"].mask, torch.Tensor)
    batch = {"inputs": [packed["inputs"]], "data_samples": [packed["data_samples"]]}
    out = ImgDataPreprocessor()(batch, training=True)
    assert out["data_samples"][0].mask.tolist() == [[1, 1], [1, 1]]
