"""Classification test-time augmentation: ``AverageClsScoreTTA`` and ``vistra test --tta``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from e2e_support import TINY_CLS, run_cli

from vistra.data.collate import pseudo_collate
from vistra.data.transforms.base import Compose
from vistra.models.classifiers_tta import AverageClsScoreTTA, flip_tta_pipeline
from vistra.registry import MODELS

CLASSIFIER = dict(
    type="ImageClassifier",
    backbone=dict(type="ResNet_CIFAR", depth=18, stem_channels=8, base_channels=8,
                  out_indices=(3,)),
    neck=dict(type="GlobalAveragePooling"),
    head=dict(type="LinearClsHead", num_classes=3, in_channels=64),
    data_preprocessor=dict(num_classes=3, mean=[127.5] * 3, std=[64.0] * 3),
)  # fmt: skip


def _images(n: int = 2) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        dict(img=rng.integers(0, 256, (16, 12, 3), dtype=np.uint8), gt_label=i % 3, sample_idx=i)
        for i in range(n)
    ]


def test_flip_tta_pipeline_is_mmpretrains_default():
    pipeline = flip_tta_pipeline([dict(type="Resize", scale=8), dict(type="PackInputs")])
    assert pipeline == [
        dict(type="Resize", scale=8),
        dict(type="TestTimeAug", transforms=[
            [dict(type="RandomFlip", prob=1.0), dict(type="RandomFlip", prob=0.0)],
            [dict(type="PackInputs")]]),
    ]  # fmt: skip


def test_average_is_the_mean_of_the_views_softmax_scores():
    torch.manual_seed(0)
    tta = MODELS.build(dict(type="AverageClsScoreTTA", module=CLASSIFIER)).eval()
    assert isinstance(tta, AverageClsScoreTTA)
    pipeline = Compose(flip_tta_pipeline([dict(type="PackInputs")]))
    batch = pseudo_collate([pipeline(dict(info)) for info in _images()])
    with torch.no_grad():
        merged = tta.test_step(batch)
        # each view alone, through the plain classifier
        per_view = []
        for flip in (True, False):
            view = Compose([dict(type="RandomFlip", prob=float(flip)), dict(type="PackInputs")])
            plain = pseudo_collate([view(dict(info)) for info in _images()])
            per_view.append(torch.stack([s.pred_score for s in tta.module.test_step(plain)]))
            logits = tta.module(tta.module.data_preprocessor(plain)["inputs"], mode="tensor")
            torch.testing.assert_close(per_view[-1], logits.softmax(-1))
    expected = (per_view[0] + per_view[1]) / 2
    got = torch.stack([s.pred_score for s in merged])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    assert not torch.allclose(per_view[0], per_view[1])  # the flip changed the scores
    assert [int(s.pred_label) for s in merged] == expected.argmax(-1).tolist()
    assert [int(s.gt_label) for s in merged] == [0, 1]
    # the wrapper's weights are the classifier's: a plain checkpoint loads as is
    assert tta.state_dict().keys() == tta.module.state_dict().keys()
    tta.load_state_dict(tta.module.state_dict())


@pytest.mark.slow
def test_cli_tta_flip_default_and_config_tta(tmp_path):
    cfg = tmp_path / "tiny_cls.py"
    cfg.write_text(TINY_CLS.format(num_classes=3, max_epochs=1, num_workers=0))
    result = run_cli("train", cfg, "--work-dir", tmp_path / "work", cwd=tmp_path)
    assert result.returncode == 0, result.output
    ckpt = tmp_path / "work" / "epoch_1.pth"

    def test(config, *extra):
        out = tmp_path / f"{config.stem}{len(extra)}.pkl"
        args = ["test", config, ckpt, "--work-dir", tmp_path / "t", "--out", out, *extra]
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 0, result.output
        assert "Traceback" not in result.output
        return torch.tensor([r["pred_score"] for r in pickle.loads(out.read_bytes())])

    plain = test(cfg)
    flip = test(cfg, "--tta")  # no tta_* in the config: MMPretrain's flip TTA
    assert flip.shape == plain.shape == (10, 3)
    assert not torch.allclose(flip, plain)
    torch.testing.assert_close(flip.sum(-1), torch.ones(10))
    # two identical (unflipped) views average to the plain scores
    same = tmp_path / "tiny_cls_same.py"
    same.write_text(cfg.read_text() + (
        "tta_model = dict(type='AverageClsScoreTTA')\n"
        "tta_pipeline = [dict(type='TestTimeAug', transforms=[[dict(type='RandomFlip', "
        "prob=0.), dict(type='RandomFlip', prob=0.)], [dict(type='PackInputs')]])]\n"))  # fmt: skip
    torch.testing.assert_close(test(same, "--tta"), plain, rtol=0, atol=1e-6)
