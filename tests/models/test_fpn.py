"""FPN neck: MMSeg keys, output shapes, extra levels, level arguments, top-down flow."""

import pytest
import torch

from vistra.registry import MODELS

IN_CHANNELS = [4, 8, 16, 32]


def _inputs(n=2, size=32):
    torch.manual_seed(0)
    return [torch.randn(n, c, size // 2**i, size // 2**i) for i, c in enumerate(IN_CHANNELS)]


def _fpn(**kwargs):
    torch.manual_seed(0)
    cfg = dict(type="FPN", in_channels=IN_CHANNELS, out_channels=6, num_outs=4)
    cfg.update(kwargs)
    fpn = MODELS.build(cfg)
    fpn.init_weights()
    return fpn


def test_shapes_and_keys():
    fpn = _fpn()
    outs = fpn(_inputs())
    assert [tuple(o.shape) for o in outs] == [
        (2, 6, 32, 32),
        (2, 6, 16, 16),
        (2, 6, 8, 8),
        (2, 6, 4, 4),
    ]
    sd = fpn.state_dict()
    assert sd["lateral_convs.3.conv.weight"].shape == (6, 32, 1, 1)
    assert sd["fpn_convs.0.conv.weight"].shape == (6, 6, 3, 3)
    assert "fpn_convs.0.conv.bias" in sd  # no norm: the conv has a bias
    assert len(fpn.fpn_convs) == 4


def test_xavier_uniform_init_zero_bias():
    fpn = _fpn()
    bias = fpn.lateral_convs[0].conv.bias.detach()
    assert float(bias.abs().max()) == 0
    weight = fpn.fpn_convs[0].conv.weight.detach()
    bound = (6 / (6 * 9 + 6 * 9)) ** 0.5
    assert float(weight.abs().max()) <= bound


def test_top_down_pathway_carries_the_coarsest_level_down():
    fpn = _fpn()
    feats = [torch.zeros_like(f) for f in _inputs()]
    base = fpn(feats)[0]
    feats[3] = torch.randn_like(feats[3])
    assert not torch.allclose(fpn(feats)[0], base)


def test_extra_levels_by_max_pool_and_by_convs():
    pooled = _fpn(num_outs=5)(_inputs())
    assert tuple(pooled[4].shape) == (2, 6, 2, 2)
    torch.testing.assert_close(pooled[4], pooled[3][:, :, ::2, ::2])
    fpn = _fpn(num_outs=6, add_extra_convs="on_input", relu_before_extra_convs=True)
    assert fpn.state_dict()["fpn_convs.4.conv.weight"].shape == (6, 32, 3, 3)  # from the input
    assert fpn.state_dict()["fpn_convs.5.conv.weight"].shape == (6, 6, 3, 3)
    outs = fpn(_inputs())
    assert [tuple(o.shape[-2:]) for o in outs[4:]] == [(2, 2), (1, 1)]
    on_output = _fpn(num_outs=5, add_extra_convs=True)
    assert on_output.add_extra_convs == "on_output"
    assert on_output.state_dict()["fpn_convs.4.conv.weight"].shape == (6, 6, 3, 3)


def test_start_and_end_level():
    fpn = _fpn(start_level=1, num_outs=3)
    assert len(fpn.lateral_convs) == 3 and fpn.lateral_convs[0].conv.in_channels == 8
    assert [tuple(o.shape[-2:]) for o in fpn(_inputs())] == [(16, 16), (8, 8), (4, 4)]
    fpn = _fpn(start_level=0, end_level=2, num_outs=2)
    assert [tuple(o.shape[-2:]) for o in fpn(_inputs())] == [(32, 32), (16, 16)]
    with pytest.raises(ValueError, match="no extra level"):
        _fpn(end_level=2, num_outs=3)
    with pytest.raises(ValueError, match="num_outs"):
        _fpn(num_outs=3)
    with pytest.raises(ValueError, match="add_extra_convs"):
        _fpn(num_outs=5, add_extra_convs="on_everything")


def test_norm_and_scale_factor_upsampling():
    fpn = _fpn(norm_cfg=dict(type="BN"), upsample_cfg=dict(scale_factor=2, mode="nearest"))
    sd = fpn.state_dict()
    assert "lateral_convs.0.bn.weight" in sd and "lateral_convs.0.conv.bias" not in sd
    assert tuple(fpn(_inputs())[0].shape) == (2, 6, 32, 32)
    no_lateral_norm = _fpn(norm_cfg=dict(type="BN"), no_norm_on_lateral=True)
    assert "lateral_convs.0.bn.weight" not in no_lateral_norm.state_dict()


def test_wrong_number_of_inputs():
    with pytest.raises(ValueError, match="expects 4 inputs"):
        _fpn()(_inputs()[:3])
