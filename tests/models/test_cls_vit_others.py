"""XCiT, T2T-ViT, TNT, Conformer (+ ConformerHead), ViG / PyramidViG (+ VigClsHead),
MLP-Mixer and StackedLinearClsHead at tiny sizes: output shapes for several
``out_indices``, a backward pass, frozen stages, the heads' loss and prediction logic, and
argument errors that name the argument. Key layouts and outputs against MMPretrain's own
configs are the oracle tests' job (tests/upstream/test_cls_keys.py, test_cls_numeric.py).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.backbones.vig import DenseDilatedKnnGraph, gather_neighbours
from vistra.registry import MODELS

# tiny archs; ViG keeps its fixed 224x224 input (the position embedding is learned for it)
TINY = {
    "XCiT": dict(
        patch_size=8, embed_dims=16, depth=2, cls_attn_layers=1, num_heads=2,
        out_type="featmap", out_indices=(0, 1, 2), drop_path_rate=0.1,
    ),
    "T2T_ViT": dict(
        img_size=32, embed_dims=16, num_layers=2, t2t_cfg=dict(token_dims=8),
        layer_cfgs=dict(num_heads=2, feedforward_channels=32), out_type="featmap",
        out_indices=(0, -1), drop_path_rate=0.1,
    ),
    "TNT": dict(
        arch=dict(embed_dims_outer=16, embed_dims_inner=4, num_layers=2, num_heads_outer=2,
                  num_heads_inner=2),
        img_size=32, drop_path_rate=0.1,
    ),
    "Conformer": dict(
        arch=dict(embed_dims=16, channel_ratio=1, num_heads=2, depths=3), base_channels=8,
        out_indices=(2, -1), drop_path_rate=0.1,
    ),
    "Vig": dict(arch=dict(num_blocks=2, channels=16), k=3, out_indices=(0, 1), drop_path=0.1),
    "PyramidVig": dict(
        arch=dict(blocks=[1, 1, 1, 1], channels=[8, 16, 16, 32]), k=3, out_indices=(0, 1, 2, 3),
    ),
    "MlpMixer": dict(
        arch=dict(embed_dims=16, num_layers=2, tokens_mlp_dims=8, channels_mlp_dims=32),
        img_size=32, patch_size=8, out_indices=(0, 1), drop_path_rate=0.1,
    ),
}  # fmt: skip
INPUT = {"Vig": (224, 224), "PyramidVig": (224, 224), "T2T_ViT": (32, 48)}
# the shapes of each output, batch aside
SHAPES = {
    "XCiT": [(16, 4, 4)] * 3,
    "T2T_ViT": [(16, 2, 3)] * 2,
    "TNT": [(16,)],
    "Conformer": [[(16,), (16,)], [(32,), (16,)]],  # [pooled CNN map, class token] per block
    "Vig": [(16, 14, 14)] * 2,
    "PyramidVig": [(8, 56, 56), (16, 28, 28), (16, 14, 14), (32, 7, 7)],
    "MlpMixer": [(16, 16)] * 2,
}


def _build(name: str, **overrides) -> nn.Module:
    return MODELS.build(dict(type=name, **{**TINY[name], **overrides}))


def _input(name: str, batch: int = 2) -> torch.Tensor:
    size = INPUT.get(name, (32, 32))
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))


def _shapes(outs) -> list:
    return [
        [tuple(t.shape[1:]) for t in o] if isinstance(o, list) else tuple(o.shape[1:]) for o in outs
    ]


def _flat(outs) -> list[torch.Tensor]:
    return [t for o in outs for t in (o if isinstance(o, list) else [o])]


@pytest.mark.parametrize("name", list(TINY))
def test_forward_shapes_and_backward(name):
    model = _build(name)
    model.init_weights()
    model.train()
    outs = model(_input(name))
    assert isinstance(outs, tuple)
    assert _shapes(outs) == SHAPES[name]
    sum(t.float().pow(2).mean() for t in _flat(outs)).backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable[:3])
    assert any(p.grad.abs().sum() > 0 for p in trainable if p.grad is not None)
    model.eval()
    with torch.no_grad():
        again = _flat(model(_input(name)))
        assert all(torch.isfinite(t).all() for t in again)


@pytest.mark.parametrize(
    ("name", "overrides", "frozen", "free"),
    [
        # XCiT counts the embeddings as stage 0: frozen_stages=2 freezes them and layer 0
        ("XCiT", dict(frozen_stages=2), ["patch_embed", "pos_embed", "xca_layers.0"],
         ["xca_layers.1", "ca_layers.0", "norm"]),
        ("Vig", dict(frozen_stages=1), ["blocks.0"], ["blocks.1"]),
        ("PyramidVig", dict(frozen_stages=2), ["stages.0", "stages.1"], ["stages.2", "stages.3"]),
    ],
)  # fmt: skip
def test_frozen_stages(name, overrides, frozen, free):
    model = _build(name, **overrides)
    model.train()
    modules = dict(model.named_modules())
    for prefix in frozen:
        assert not any(p.requires_grad for p in modules[prefix].parameters()), prefix
        assert not any(m.training for m in modules[prefix].modules()), prefix
    for prefix in free:
        params = modules[prefix].named_parameters()
        # (PyramidVig's relative-position terms are fixed parameters: never trained)
        assert all(p.requires_grad for n, p in params if "relative_pos" not in n), prefix
        assert modules[prefix].training, prefix


def test_xcit_all_layers_frozen_freezes_class_token_and_norm():
    model = _build("XCiT", frozen_stages=3, out_type="cls_token", out_indices=-1)
    model.train()
    assert not model.cls_token.requires_grad
    assert not any(p.requires_grad for p in model.norm.parameters())
    # frozen_stages=n freezes n - 1 layers, so the last class-attention layer still trains
    assert all(p.requires_grad for p in model.ca_layers[0].parameters())


def test_vig_stem_stays_in_eval_mode_and_norm_eval():
    # As MMPretrain's: the stem's BatchNorms keep their running statistics in training.
    model = _build("Vig", norm_eval=True)
    model.train()
    assert not model.stem.training
    assert not any(
        m.training for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    )
    assert model.blocks[0][0].fc1.training  # not a norm: still in train mode


def test_knn_graph_picks_the_dilated_nearest_neighbours():
    # 1-d "features" on a line: the nearest of node i are i, i+-1, i+-2, ...
    pos = torch.tensor([0.0, 1.0, 2.5, 4.5, 7.0, 10.0])
    feats = torch.stack([torch.cos(pos / 10), torch.sin(pos / 10)])[None, :, :, None]
    graph = DenseDilatedKnnGraph(k=2, dilation=2)
    edges = graph(feats)
    assert edges.shape == (2, 1, 6, 2)
    dist = (pos[:, None] - pos[None, :]).abs()
    expected = dist.argsort(dim=1)[:, ::2][:, :2]
    assert torch.equal(edges[0, 0], expected)
    assert torch.equal(edges[1, 0], torch.arange(6)[:, None].expand(6, 2))
    picked = gather_neighbours(feats, edges[0])
    assert torch.equal(picked[0, :, 3, 1], feats[0, :, expected[3, 1], 0])


@pytest.mark.parametrize("graph_conv_type", ["edge", "sage", "gin"])
def test_vig_graph_conv_types(graph_conv_type):
    model = _build("Vig", graph_conv_type=graph_conv_type, out_indices=-1, relative_pos=True)
    outs = model.eval()(_input("Vig", batch=1))
    assert _shapes(outs) == [(16, 14, 14)]


def test_conformer_without_class_token_and_init():
    model = _build("Conformer", with_cls_token=False, out_indices=-1)
    model.init_weights()
    # every bottleneck starts as its shortcut: the last BN's weight is zero
    assert torch.all(model.conv_trans_2.cnn_block.bn3.weight == 0)
    outs = model.eval()(_input("Conformer"))
    assert _shapes(outs) == [[(32,), (16,)]]


def test_t2t_pos_embed_of_another_grid_is_resized_on_load():
    small = _build("T2T_ViT")
    big = _build("T2T_ViT", img_size=64)
    state = big.state_dict()
    assert state["pos_embed"].shape == (1, 1 + 16, 16)
    result = small.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert small.pos_embed.shape == (1, 1 + 4, 16)


def test_xcit_outputs_per_out_type():
    x = _input("XCiT")
    for out_type, shape in [("raw", (17, 16)), ("avg_featmap", (16,)), ("cls_token", (16,))]:
        model = _build("XCiT", out_type=out_type, out_indices=-1).eval()
        assert _shapes(model(x)) == [shape]


# ----------------------------------------------------------------------------- heads
def _samples(labels: list[int]) -> list[DataSample]:
    return [DataSample().set_gt_label(torch.tensor([label])) for label in labels]


def test_conformer_head_loss_and_prediction_use_both_branches():
    head = MODELS.build(dict(type="ConformerHead", num_classes=5, in_channels=[6, 4], cal_acc=True))
    head.init_weights()
    feats = ([torch.randn(3, 6), torch.randn(3, 4)],)
    conv, trans = head(feats)
    labels = [0, 3, 4]
    losses = head.loss(feats, _samples(labels))
    target = torch.tensor(labels)
    expected = nn.functional.cross_entropy(conv, target) + nn.functional.cross_entropy(
        trans, target
    )
    assert torch.allclose(losses["loss"], expected)
    assert "accuracy_top-1" in losses
    preds = head.predict(feats)
    assert torch.allclose(torch.stack([p.pred_score for p in preds]), (conv + trans).softmax(1))


def test_vig_head():
    head = MODELS.build(dict(type="VigClsHead", num_classes=5, in_channels=6, hidden_dim=8))
    feats = (torch.randn(4, 6),)
    assert head.pre_logits(feats).shape == (4, 8)
    assert head(feats).shape == (4, 5)
    assert {k.rsplit(".", 1)[0] for k in head.state_dict()} == {"fc1", "bn", "fc2"}
    assert isinstance(head.bn, nn.BatchNorm1d)


def test_stacked_linear_head_layers():
    head = MODELS.build(
        dict(type="StackedLinearClsHead", num_classes=5, in_channels=6, mid_channels=[8, 7],
             dropout_rate=0.5, norm_cfg=dict(type="BN1d"), act_cfg=dict(type="HSwish"),
             init_cfg=dict(type="Normal", layer="Linear", std=0.01))
    )  # fmt: skip
    head.init_weights()
    keys = {k.rsplit(".", 1)[0] for k in head.state_dict()}
    assert keys == {"layers.0.fc", "layers.0.norm", "layers.1.fc", "layers.1.norm", "layers.2.fc"}
    assert head.fc is head.layers[-1] and head.fc.dropout is None and head.fc.act is None
    assert isinstance(head.layers[0].dropout, nn.Dropout)
    feats = (torch.randn(4, 6),)
    head.eval()
    assert head.pre_logits(feats).shape == (4, 7)
    hidden = head.pre_logits(feats)
    assert torch.allclose(head(feats), head.layers[2].fc(hidden))
    plain = MODELS.build(dict(type="StackedLinearClsHead", num_classes=3, in_channels=6,
                              mid_channels=[4], act_cfg=None))  # fmt: skip
    assert plain.layers[0].act is None and plain.layers[0].norm is None
    assert plain(feats).shape == (4, 3)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("name", "overrides", "error", "words"),
    [
        ("TNT", dict(arch="huge"), ValueError, ["arch", "'s'"]),
        ("Conformer", dict(arch="xl"), ValueError, ["arch", "tiny"]),
        ("Vig", dict(arch="large"), ValueError, ["arch", "tiny"]),
        ("PyramidVig", dict(arch=dict(blocks=[1, 1])), ValueError, ["arch", "channels"]),
        ("MlpMixer", dict(arch="huge"), ValueError, ["arch", "base"]),
        ("XCiT", dict(out_indices=(5,)), ValueError, ["out_indices", "3 layers"]),
        ("XCiT", dict(out_type="cls_token", out_indices=(0,)), ValueError, ["out_indices"]),
        ("XCiT", dict(patch_size=4), ValueError, ["patch_size"]),
        ("XCiT", dict(out_type="tokens"), ValueError, ["out_type", "featmap"]),
        ("XCiT", dict(frozen_stages=9), ValueError, ["frozen_stages"]),
        ("T2T_ViT", dict(out_indices=(2,)), ValueError, ["out_indices", "2 layers"]),
        ("T2T_ViT", dict(out_indices="last"), TypeError, ["out_indices"]),
        ("T2T_ViT", dict(out_type="x"), ValueError, ["out_type"]),
        ("T2T_ViT", dict(t2t_cfg=dict(use_performer=True)), ValueError, ["use_performer"]),
        ("T2T_ViT", dict(layer_cfgs=[{}]), ValueError, ["layer_cfgs"]),
        ("Conformer", dict(out_indices=(1,)), ValueError, ["out_indices", "conv_trans_2"]),
        ("Conformer", dict(patch_size=24), ValueError, ["patch_size"]),
        ("Vig", dict(out_indices=(2,)), ValueError, ["out_indices", "2 blocks"]),
        ("Vig", dict(graph_conv_type="gat"), ValueError, ["graph_conv_type", "'mr'"]),
        ("Vig", dict(frozen_stages=3), ValueError, ["frozen_stages"]),
        ("PyramidVig", dict(out_indices=(4,)), ValueError, ["out_indices", "4 stages"]),
        ("MlpMixer", dict(out_indices=(2,)), ValueError, ["out_indices", "2 layers"]),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_argument(name, overrides, error, words):
    with pytest.raises(error) as info:
        _build(name, **overrides)
    message = str(info.value)
    assert all(w in message for w in words), message


@pytest.mark.parametrize(
    ("name", "size"), [("TNT", (48, 32)), ("MlpMixer", (32, 40)), ("Vig", (64, 64))]
)
def test_wrong_input_size_names_the_expected_size(name, size):
    model = _build(name).eval()
    with pytest.raises(ValueError, match="takes"):
        model(torch.randn(1, 3, *size))


@pytest.mark.parametrize(
    ("cfg", "error", "word"),
    [
        (dict(type="StackedLinearClsHead", num_classes=3, in_channels=4, mid_channels=8),
         TypeError, "mid_channels"),
        (dict(type="StackedLinearClsHead", num_classes=0, in_channels=4, mid_channels=[8]),
         ValueError, "num_classes"),
        (dict(type="ConformerHead", num_classes=3, in_channels=[4]), ValueError, "in_channels"),
        (dict(type="VigClsHead", num_classes=-1, in_channels=4), ValueError, "num_classes"),
    ],
)  # fmt: skip
def test_bad_head_arguments(cfg, error, word):
    with pytest.raises(error, match=word):
        MODELS.build(cfg)
