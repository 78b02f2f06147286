"""SyncBN reverted for single-process / CPU runs keeps its state and accepts any rank."""

from __future__ import annotations

import torch
from torch import nn

from vistra.dist import revert_sync_batchnorm


def test_reverted_sync_bn_keeps_state_and_takes_2d_and_4d_input():
    sync = nn.SyncBatchNorm(4)
    with torch.no_grad():
        sync.weight.uniform_()
        sync.running_mean.fill_(0.5)
    model = revert_sync_batchnorm(nn.Sequential(nn.Linear(4, 4), sync))
    bn = model[1]
    assert not isinstance(bn, nn.SyncBatchNorm)
    assert torch.equal(bn.weight, sync.weight) and torch.equal(bn.running_mean, sync.running_mean)
    assert list(model.state_dict()) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
    assert model(torch.randn(3, 4)).shape == (3, 4)  # a projector neck's (N, C) features
    assert bn(torch.randn(2, 4, 5, 5)).shape == (2, 4, 5, 5)
    ref = nn.BatchNorm2d(4)
    ref.load_state_dict(bn.state_dict())
    x = torch.randn(2, 4, 5, 5)
    ref.eval(), bn.eval()
    torch.testing.assert_close(bn(x), ref(x))
