"""ClsBatchNormNeck: MAE's linear-probe normalisation of the class token."""

from __future__ import annotations

import pytest
import torch

from vistra.registry import MODELS


def test_normalises_each_stage_over_the_batch_without_affine():
    neck = MODELS.build(dict(type="ClsBatchNormNeck", input_features=4))
    assert set(neck.state_dict()) == {
        "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
    }  # fmt: skip
    assert neck.bn.eps == 1e-6 and not neck.bn.affine
    feats = torch.randn(16, 4) * torch.tensor([1.0, 10.0, 100.0, 0.1]) + 5.0
    (out,) = neck((feats,))
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    assert neck.bn.num_batches_tracked == 1
    # a 0.x-style [patch_tokens, cls_token] stage uses the class token
    (out2,) = neck.eval()(([torch.randn(16, 4, 2, 2), feats],))
    assert out2.shape == (16, 4)


def test_affine_and_bad_shapes():
    neck = MODELS.build(dict(type="ClsBatchNormNeck", input_features=4, affine=True))
    assert {"bn.weight", "bn.bias"} <= set(neck.state_dict())
    with pytest.raises(ValueError, match="out_type='cls_token'"):
        neck((torch.randn(2, 4, 3, 3),))
