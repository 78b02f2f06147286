"""PreciseBNHook: BatchNorm statistics become the true average of per-batch statistics with
the weights fixed; the training loader is left where it was."""

import pytest
import torch
from torch import nn

from vistra.engine.hooks.precise_bn import PreciseBNHook, update_bn_stats
from vistra.registry import HOOKS


class _Net(nn.Module):
    """A BN over the raw inputs, behind an identity data preprocessor."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(3, momentum=0.1)

    def data_preprocessor(self, data, training=False):
        return {"inputs": data}

    def forward(self, inputs, mode="tensor"):
        return self.bn(inputs)


def test_statistics_are_the_average_of_the_batch_statistics():
    torch.manual_seed(0)
    batches = [torch.randn(8, 3) * (i + 1) + i for i in range(3)]
    net = _Net().train()
    net.bn.running_mean.fill_(100.0)  # stale statistics, to be replaced
    used = update_bn_stats(net, batches, num_iters=3)
    assert used == 3 and net.bn.momentum == 0.1  # restored
    means = torch.stack([b.mean(0) for b in batches]).mean(0)
    variances = torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(net.bn.running_mean, means, atol=1e-5)
    assert torch.allclose(net.bn.running_var, variances, atol=1e-5)


def test_eval_mode_norms_are_left_alone_and_arguments_are_checked():
    net = _Net().eval()
    net.bn.running_mean.fill_(7.0)
    assert update_bn_stats(net, [torch.randn(4, 3)], num_iters=1) == 0
    assert torch.all(net.bn.running_mean == 7.0)
    hook = HOOKS.build(dict(type="PreciseBNHook", num_samples=16, interval=2))
    assert isinstance(hook, PreciseBNHook) and hook.priority == "ABOVE_NORMAL"
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        PreciseBNHook(num_samples=0)
