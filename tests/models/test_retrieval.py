"""Retrieval: ArcFaceClsHead's margin logits, ImageToImageRetriever's prototype (tensor,
file, DataLoader, dataloader config) and matching, PrepareProtoBeforeValLoopHook, and the
RetrievalRecall / RetrievalAveragePrecision metrics on hand-computed cases.

(MMPretrain's numbers on random cases: tests/upstream/test_metrics.py, test_cls_numeric.py.)
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_data import write_inshop

from vistra.data.structures import DataSample
from vistra.engine.build import build_dataloader
from vistra.evaluation.metrics import RetrievalAveragePrecision, RetrievalRecall
from vistra.registry import HOOKS, MODELS

# ----------------------------------------------------------------------------- ArcFace


def _head(**kwargs):
    cfg = dict(type="ArcFaceClsHead", num_classes=5, in_channels=8)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _reference_logits(head, x, target):
    """The paper's logits in float64: s * cos(theta_y + m) on the target, s * cos elsewhere."""
    w = head.norm_product.weight.detach().double()
    w = w / w.norm(dim=1, keepdim=True)
    cos = (x.double() / x.double().norm(dim=1, keepdim=True)) @ w.T
    cos = cos.view(len(x), head.num_classes, head.num_subcenters).amax(2)
    out = cos.clone()
    for i, y in enumerate(target.tolist()):
        m = float(head.margins[y])
        c = float(cos[i, y])
        theta = math.acos(c)
        if head.easy_margin:
            out[i, y] = math.cos(theta + m) if c > 0 else c
        else:
            out[i, y] = math.cos(theta + m) if theta + m <= math.pi else c - m * math.sin(m)
    return head.scale * out


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(num_subcenters=3),
        dict(easy_margin=True),
        dict(margins=[0.1, 0.2, 0.3, 2.0, 3.0]),
    ],
)
def test_arcface_logits_are_the_papers(kwargs):
    torch.manual_seed(0)
    head = _head(**kwargs)
    x = torch.randn(16, 8)
    target = torch.randint(5, (16,))
    got = head((x,), target)
    assert torch.allclose(got.double(), _reference_logits(head, x, target), atol=1e-4)
    # without a target (predicting): the scaled cosines, which the other classes keep
    plain = head((x,))
    off_target = torch.ones_like(plain, dtype=torch.bool).scatter(1, target[:, None], False)
    assert torch.equal(got[off_target], plain[off_target])
    assert not torch.equal(got, plain)


def test_arcface_keys_loss_backward_and_predictions():
    head = _head(num_subcenters=2)
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == {
        "norm_product.weight": (10, 8)
    }
    x = torch.randn(4, 8, requires_grad=True)
    samples = [DataSample().set_gt_label(i) for i in (0, 1, 4, 4)]
    loss = head.loss((x,), samples)
    assert set(loss) == {"loss"} and loss["loss"].ndim == 0
    loss["loss"].backward()
    assert torch.isfinite(x.grad).all() and head.norm_product.weight.grad is not None
    preds = head.predict((x.detach(),))
    assert torch.allclose(preds[0].pred_score.sum(), torch.tensor(1.0))


def test_arcface_gradient_stays_finite_at_cos_plus_minus_one():
    """acos has an unbounded slope at +-1: only the target column may go through it."""
    head = _head()
    with torch.no_grad():
        x = torch.stack([head.norm_product.weight[0], -head.norm_product.weight[1]]).clone()
    x.requires_grad_(True)
    loss = head.loss((x,), [DataSample().set_gt_label(1), DataSample().set_gt_label(0)])
    loss["loss"].backward()
    assert torch.isfinite(loss["loss"]) and torch.isfinite(x.grad).all()


def test_arcface_margins_from_a_file_and_set_margins(tmp_path):
    path = tmp_path / "margins.txt"
    path.write_text("0.1\n0.2\n0.3\n0.4\n0.5\n")
    head = _head(margins=str(path))
    assert torch.allclose(head.margins, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]))
    head.set_margins(0.25)
    assert torch.allclose(head.margins, torch.full((5,), 0.25))
    assert "margins" not in head.state_dict()  # from the config, never from checkpoints


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(margins=[0.5, 0.5]), ValueError, "2 margins for num_classes=5"),
        (dict(margins="m.csv"), ValueError, "'.txt' file"),
        (dict(margins=None), TypeError, "margins must be"),
        (dict(num_subcenters=0), ValueError, "num_subcenters"),
    ],
)
def test_arcface_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        _head(**kwargs)


# ----------------------------------------------------------------------------- retriever

ENCODER = [
    dict(type="ResNet", depth=18, stem_channels=8, base_channels=8),
    dict(type="GlobalAveragePooling"),
]


def _retriever(prototype, **kwargs):
    cfg = dict(
        type="ImageToImageRetriever",
        image_encoder=ENCODER,
        head=dict(type="ArcFaceClsHead", num_classes=3, in_channels=64),
        prototype=prototype,
        data_preprocessor=dict(mean=[128.0] * 3, std=[64.0] * 3),
    )
    cfg.update(kwargs)
    torch.manual_seed(0)
    return MODELS.build(cfg).eval()


def _gallery_loader_cfg(root):
    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=(32, 32)),
        dict(type="PackInputs"),
    ]
    return dict(
        batch_size=3,
        num_workers=0,
        dataset=dict(type="InShop", data_root=str(root), split="gallery", pipeline=pipeline),
        sampler=dict(type="DefaultSampler", shuffle=False),
    )


def _features_one_by_one(model, loader):
    """Each gallery image through the encoder alone, in dataset order."""
    rows = []
    for i in range(len(loader.dataset)):
        batch = {k: [v] for k, v in loader.dataset[i].items()}
        data = model.data_preprocessor(batch, training=False)
        rows.append(model.extract_feat(data["inputs"])[-1][0])
    return torch.stack(rows)


def test_keys_and_tensor_mode_follow_mmpretrain():
    model = _retriever(torch.randn(4, 64))
    keys = list(model.state_dict())
    assert keys[0] == "image_encoder.0.conv1.weight" and "head.norm_product.weight" in keys
    assert not any(k.startswith(("image_encoder.1", "prototype")) for k in keys)
    feats = model(torch.randn(2, 3, 32, 32))
    assert isinstance(feats, tuple) and feats[-1].shape == (2, 64)
    model.prepare_prototype()
    assert "prototype_vecs" not in model.state_dict()  # gallery features are never saved


def test_predict_ranks_a_tensor_prototype_by_cosine():
    gallery = torch.randn(6, 64)
    model = _retriever(gallery, topk=3)
    x = torch.randn(2, 3, 32, 32)
    feats = model.extract_feat(x)[-1]
    preds = model(x, mode="predict")
    expected = torch.nn.functional.cosine_similarity(feats[:, None], gallery[None], dim=-1)
    for pred, row in zip(preds, expected):
        assert torch.allclose(pred.pred_score, row, atol=1e-6)  # every gallery item, in order
        assert pred.pred_label.tolist() == row.argsort(descending=True)[:3].tolist()
    # samples passed in are filled in place
    samples = [DataSample().set_gt_label([0]), DataSample().set_gt_label([1])]
    assert model(x, samples, mode="predict")[1] is samples[1]


def test_prototype_from_a_dataloader_config_places_features_by_sample_idx(tmp_path):
    root = write_inshop(tmp_path / "inshop", img_size=32)
    cfg = _gallery_loader_cfg(root)
    model = _retriever(cfg)
    model.train()
    # models never import the engine: a dataloader config is built by the hook, before a run
    with pytest.raises(ValueError, match="add dict\\(type='PrepareProtoBeforeValLoopHook'\\)"):
        model.prepare_prototype()
    from types import SimpleNamespace

    from vistra.engine.hooks.retriever_hooks import PrepareProtoBeforeValLoopHook

    PrepareProtoBeforeValLoopHook().before_run(SimpleNamespace(model=model))
    model.prepare_prototype()
    assert model.training, "preparing the prototype must not leave the model in eval mode"
    model.eval()
    loader = build_dataloader(cfg, "gallery", seed=0, rank=0)
    assert torch.allclose(model.prototype_vecs, _features_one_by_one(model, loader), atol=1e-5)
    # a DataLoader object, and a saved file, give the same prototype
    from_loader = _retriever(loader)
    from_loader.prepare_prototype()
    assert torch.allclose(from_loader.prototype_vecs, model.prototype_vecs)
    model.dump_prototype(str(tmp_path / "proto.pth"))
    from_file = _retriever(str(tmp_path / "proto.pth"))
    from_file.prepare_prototype()
    assert torch.equal(from_file.prototype_vecs, model.prototype_vecs)


def test_loss_mode_trains_the_encoder_through_the_head():
    model = _retriever(torch.randn(4, 64)).train()
    samples = [DataSample().set_gt_label(i) for i in (0, 2)]
    loss = model(torch.randn(2, 3, 32, 32), samples, mode="loss")
    loss["loss"].backward()
    assert model.image_encoder[0].conv1.weight.grad is not None
    headless = _retriever(torch.randn(4, 64), head=None)
    with pytest.raises(ValueError, match="without a head"):
        headless(torch.randn(2, 3, 32, 32), samples, mode="loss")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(similarity_fn="euclidean"), ValueError, "similarity_fn"),
        (dict(topk=0), ValueError, "topk"),
        (dict(prototype=3), TypeError, "prototype must be"),
    ],
)
def test_retriever_bad_arguments_name_the_argument(kwargs, error, match):
    prototype = kwargs.pop("prototype", torch.randn(4, 64))
    with pytest.raises(error, match=match):
        _retriever(prototype, **kwargs)


def test_prepare_proto_hook_recomputes_the_gallery_before_validation():
    model = _retriever(torch.randn(4, 64))
    hook = HOOKS.build(dict(type="PrepareProtoBeforeValLoopHook"))
    model.prototype_inited = False
    hook.before_val(SimpleNamespace(model=model))
    assert model.prototype_inited and model.prototype_vecs.shape == (4, 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hook.before_val(SimpleNamespace(model=torch.nn.Linear(2, 2)))
    assert any("only acts on retrievers" in str(w.message) for w in caught)


def test_sync_buffers_hook_is_a_no_op_outside_torch_distributed():
    model = torch.nn.BatchNorm1d(3)
    model.running_mean.fill_(2.0)
    hook = HOOKS.build(dict(type="SyncBuffersHook"))
    hook.after_train_epoch(SimpleNamespace(model=model))
    hook.before_val_epoch(SimpleNamespace(model=model))
    assert torch.equal(model.running_mean, torch.full((3,), 2.0))


# ----------------------------------------------------------------------------- metrics


def _query(scores, relevant):
    return {"pred_score": torch.tensor(scores), "gt_label": torch.tensor(relevant)}


def test_recall_at_k_counts_queries_with_a_hit_in_their_top_k():
    metric = RetrievalRecall(topk=(1, 2, 5))
    # query 0: best item relevant; query 1: second best; query 2: no relevant item at all
    metric.process(None, [_query([0.9, 0.1, 0.5], [0]), _query([0.9, 0.1, 0.5], [2])])
    metric.process(
        None, [{"pred_score": torch.tensor([0.3, 0.2, 0.1]), "gt_score": torch.zeros(3)}]
    )
    result = metric.evaluate(3)
    assert result == {
        "retrieval/Recall@1": 100 / 3,
        "retrieval/Recall@2": 200 / 3,
        "retrieval/Recall@5": 200 / 3,  # k past the gallery size ranks all of it
    }


def test_average_precision_ir_and_integrate():
    # ranking 0..5 (scores decreasing); relevant items at ranks 0, 2 and 5 (1-based 1, 3, 6)
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    sample = _query(scores, [0, 2, 5])
    ir = RetrievalAveragePrecision(topk=4)
    ir.process(None, [sample])
    # only ranks 1 and 3 are within the top 4; divided by all 3 relevant items
    assert ir.evaluate(1) == {"retrieval/mAP@4": pytest.approx((1 / 1 + 2 / 3) / 3 * 100)}
    integrate = RetrievalAveragePrecision(topk=6, mode="integrate")
    integrate.process(None, [sample])
    expected = ((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2 + (2 / 5 + 3 / 6) / 2) / 3 * 100
    assert integrate.evaluate(1) == {"retrieval/mAP@6": pytest.approx(expected)}


def test_calculate_matches_mmpretrains_documented_examples():
    recall = RetrievalRecall.calculate(
        [[0], [1], [2], [3]], [[0, 1], [2], [1], [0, 3]], topk=1, pred_indices=True,
        target_indices=True,
    )  # fmt: skip
    assert [float(r) for r in recall] == [50.0]
    pred = [torch.arange(100.0)] * 3
    target = [[0, 3, 6, 8, 35], [1, 2, 54, 105], [2, 42, 205]]
    assert RetrievalAveragePrecision.calculate(pred, target, 10, True, True) == pytest.approx(
        29.246031746031747
    )
    pred = np.array([np.linspace(0.95, 0.05, 10)] * 2)
    target = torch.tensor([[1, 0, 1, 0, 0, 1, 0, 0, 1, 1]] * 2)
    assert RetrievalAveragePrecision.calculate(pred, target, 10) == pytest.approx(
        62.222222222222214
    )


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: RetrievalRecall(topk=0), "topk must be an integer larger than 0"),
        (lambda: RetrievalRecall(topk=(1, -2)), "topk"),
        (lambda: RetrievalAveragePrecision(), "topk must be an integer larger than 0"),
        (lambda: RetrievalAveragePrecision(topk=5, mode="area"), "mode='area'"),
    ],
)
def test_metric_bad_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()
