"""OptimWrapper / AmpOptimWrapper / LARS / build_optim_wrapper."""

from __future__ import annotations

import copy
import io
import math
import socket

import pytest
import torch
from torch import nn

from vistra.engine.lars import LARS
from vistra.engine.optim import TORCH_OPTIMIZERS, AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from vistra.registry import OPTIMIZERS, RegistryError


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def batch(n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)


def mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean()


def params_of(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def assert_same_params(a: nn.Module, b: nn.Module, atol: float = 1e-6) -> None:
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=atol, rtol=0)


# ---------------------------------------------------------------------- accumulation
def test_accumulation_equals_one_step_on_the_whole_batch():
    ref, acc = tiny_model(), tiny_model()
    x, y = batch(8)
    ref_wrapper = OptimWrapper(torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9))
    ref_wrapper.update_params(mse(ref, x, y))

    wrapper = OptimWrapper(
        torch.optim.SGD(acc.parameters(), lr=0.1, momentum=0.9), accumulative_counts=4
    )
    before = params_of(acc)
    for i in range(4):
        wrapper.update_params(mse(acc, x[2 * i : 2 * i + 2], y[2 * i : 2 * i + 2]))
        if i < 3:  # no step inside the window
            assert not wrapper.should_update()
            assert all(torch.equal(p, q) for p, q in zip(acc.parameters(), before))
    assert wrapper.should_update() and wrapper.inner_count == 4
    assert_same_params(ref, acc)


def _two_step_reference(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """One SGD step on the mean over micro-batches 0-3, then one on micro-batches 4-5."""
    ref = tiny_model()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for lo, hi in ((0, 8), (8, 12)):
        opt.zero_grad()
        mse(ref, x[lo:hi], y[lo:hi]).backward()
        opt.step()
    return ref


@pytest.mark.parametrize("init_counts", [0, 4])
def test_last_incomplete_window_is_a_mean_of_its_own_length(init_counts):
    x, y = batch(12)  # 6 micro-batches of 2; windows of 4 -> [0, 4) and the short [4, 6)
    ref = _two_step_reference(x, y)
    model = tiny_model()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), accumulative_counts=4)
    wrapper.initialize_count_status(model, init_counts=0, max_counts=6)
    if init_counts:  # resumed after the first window: same result from there on
        ref_first = tiny_model()
        opt = torch.optim.SGD(ref_first.parameters(), lr=0.1)
        mse(ref_first, x[:8], y[:8]).backward()
        opt.step()
        model.load_state_dict(ref_first.state_dict())
        wrapper.initialize_count_status(model, init_counts=4, max_counts=6)
    for i in range(init_counts, 6):
        loss = mse(model, x[2 * i : 2 * i + 2], y[2 * i : 2 * i + 2])
        assert wrapper.scale_loss(loss).item() == pytest.approx(loss.item() / (4 if i < 4 else 2))
        wrapper.update_params(loss)
    assert wrapper.inner_count == 6
    assert_same_params(ref, model)


def test_should_sync_and_no_sync_under_ddp():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1
    )
    try:
        ddp = nn.parallel.DistributedDataParallel(tiny_model())
        wrapper = OptimWrapper(torch.optim.SGD(ddp.parameters(), lr=0.1), accumulative_counts=2)
        x, y = batch(4)
        synced = []
        for _ in range(4):
            with wrapper.optim_context(ddp):
                synced.append(ddp.require_backward_grad_sync)
                loss = mse(ddp, x, y)
            wrapper.update_params(loss)
        assert synced == [False, True, False, True]
    finally:
        torch.distributed.destroy_process_group()


# ---------------------------------------------------------------------- clipping
def _grads_after_clip(clip_grad: dict) -> tuple[OptimWrapper, nn.Module, float]:
    model = tiny_model()
    x, y = batch(8)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0), clip_grad=clip_grad)
    wrapper.backward(100 * mse(model, x, y))
    raw_norm = math.sqrt(sum(float((p.grad**2).sum()) for p in model.parameters()))
    wrapper.step()  # clips, steps (lr 0), leaves the grads for inspection
    return wrapper, model, raw_norm


def test_clip_grad_norm_reports_the_norm_and_clips():
    wrapper, model, raw_norm = _grads_after_clip(dict(max_norm=0.5, norm_type=2))
    assert raw_norm > 0.5
    assert wrapper.last_grad_norm == pytest.approx(raw_norm, rel=1e-5)
    clipped = math.sqrt(sum(float((p.grad**2).sum()) for p in model.parameters()))
    assert clipped <= 0.5 + 1e-5


def test_clip_grad_value():
    wrapper, model, _ = _grads_after_clip(dict(type="value", clip_value=0.01))
    assert all(float(p.grad.abs().max()) <= 0.01 + 1e-9 for p in model.parameters())
    assert wrapper.last_grad_norm is None  # as MMEngine: value clipping reports no norm


def test_no_clip_by_default_and_bad_clip_configs():
    model = tiny_model()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    assert wrapper.clip_grad_kwargs is None and wrapper.last_grad_norm is None
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="'norm' or 'value'"):
        OptimWrapper(opt, clip_grad=dict(type="l2", max_norm=1.0))
    with pytest.raises(ValueError, match="needs 'max_norm'"):
        OptimWrapper(opt, clip_grad=dict(max_nrm=1.0))
    with pytest.raises(TypeError, match="non-empty dict"):
        OptimWrapper(opt, clip_grad={})
    with pytest.raises(ValueError, match="accumulative_counts"):
        OptimWrapper(opt, accumulative_counts=0)


# ---------------------------------------------------------------------- AMP on CPU
def test_cpu_amp_runs_in_bf16_and_tracks_fp32():
    fp32_model, amp_model = tiny_model(), tiny_model()
    fp32 = OptimWrapper(torch.optim.SGD(fp32_model.parameters(), lr=0.05))
    amp = AmpOptimWrapper(optimizer=torch.optim.SGD(amp_model.parameters(), lr=0.05))
    assert amp.loss_scaler is None and amp.autocast_dtype == torch.bfloat16
    x, y = batch(16)
    for _ in range(5):
        with fp32.optim_context(fp32_model):
            loss32 = mse(fp32_model, x, y)
        fp32.update_params(loss32)
        with amp.optim_context(amp_model):
            hidden = amp_model[0](x)
            loss16 = mse(amp_model, x, y)
        assert hidden.dtype == torch.bfloat16  # the forward really ran in bf16
        amp.update_params(loss16)
        assert loss16.item() == pytest.approx(loss32.item(), rel=3e-2)
    assert all(p.dtype == torch.float32 for p in amp_model.parameters())
    assert "loss_scaler" not in amp.state_dict()


def test_amp_options_and_scaler_state_survive_cpu():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="bfloat16"):
        amp = AmpOptimWrapper(optimizer=opt, dtype="float16", loss_scale=512.0)
    assert amp.autocast_dtype == torch.bfloat16
    state = amp.state_dict()
    state["loss_scaler"] = {"scale": 512.0, "growth_factor": 2.0}
    amp.load_state_dict(state)  # a GPU checkpoint resumed on CPU keeps its scaler state
    assert amp.state_dict()["loss_scaler"] == {"scale": 512.0, "growth_factor": 2.0}
    with pytest.raises(ValueError, match="dtype"):
        AmpOptimWrapper(optimizer=opt, dtype="float8")
    with pytest.raises(TypeError, match="loss_scale"):
        AmpOptimWrapper(optimizer=opt, loss_scale="static")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_fp16_scaler_and_bf16():
    model = tiny_model().cuda()
    amp = AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05), clip_grad=dict(max_norm=1.0)
    )
    x, y = (t.cuda() for t in batch(8))
    with amp.optim_context(model):
        assert model[0](x).dtype == torch.float16
        loss = mse(model, x, y)
    amp.update_params(loss)
    assert isinstance(amp.loss_scaler, torch.amp.GradScaler)
    assert "scale" in amp.state_dict()["loss_scaler"]
    assert amp.last_grad_norm is not None and math.isfinite(amp.last_grad_norm)

    bf16 = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.05), dtype="bfloat16")
    with bf16.optim_context(model):
        assert model[0](x).dtype == torch.bfloat16
    assert bf16.loss_scaler is None


# ---------------------------------------------------------------------- state and views
def test_state_dict_round_trip_continues_identically():
    a = tiny_model()
    wrapper_a = OptimWrapper(torch.optim.Adam(a.parameters(), lr=1e-2))
    x, y = batch(8)
    for _ in range(3):
        wrapper_a.update_params(mse(a, x, y))
    buffer = io.BytesIO()
    torch.save(wrapper_a.state_dict(), buffer)
    buffer.seek(0)
    b = copy.deepcopy(a)
    wrapper_b = OptimWrapper(torch.optim.Adam(b.parameters(), lr=1e-2))
    wrapper_b.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(3):
        wrapper_a.update_params(mse(a, x, y))
        wrapper_b.update_params(mse(b, x, y))
    assert_same_params(a, b, atol=0)


def test_lr_momentum_views_and_base_settings():
    model = tiny_model()
    sgd = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    assert sgd.get_lr() == {"lr": [0.1]} and sgd.get_momentum() == {"momentum": [0.9]}
    assert sgd.param_groups is sgd.optimizer.param_groups
    groups = [{"params": model[0].parameters(), "lr": 0.01}, {"params": model[2].parameters()}]
    adam = OptimWrapper(torch.optim.Adam(groups, lr=0.1, betas=(0.8, 0.99)))
    assert adam.get_lr() == {"base_lr": [0.1], "lr": [0.01, 0.1]}
    assert adam.get_momentum() == {"momentum": [0.8, 0.8]}
    assert len(adam.param_groups) == 3  # MMEngine's base-settings group rides along
    state = adam.state_dict()
    state["base_param_settings"]["lr"] = 0.05
    adam.load_state_dict(state)
    assert adam.get_lr()["base_lr"] == [0.05]


def test_zero_grad_sets_to_none():
    model = tiny_model()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    wrapper.update_params(mse(model, *batch(4)))
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------- LARS
def test_lars_two_steps_match_hand_computation():
    w = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = LARS(
        [{"params": [w]}, {"params": [b], "lars_exclude": True}],
        lr=0.1,
        momentum=0.9,
        weight_decay=0.01,
        eta=0.001,
    )
    g_w, g_b = [0.6, 0.8], [0.5]
    hw, hb, buf_w, buf_b = [3.0, 4.0], [1.0], None, None
    for _ in range(2):
        w.grad = torch.tensor(g_w, dtype=torch.float64)
        b.grad = torch.tensor(g_b, dtype=torch.float64)
        opt.step()
        wn, gn = math.hypot(*hw), math.hypot(*g_w)
        local = 0.001 * wn / (gn + 0.01 * wn + 1e-8)
        d_w = [(g + 0.01 * v) * local * 0.1 for g, v in zip(g_w, hw)]
        d_b = [(g + 0.01 * v) * 1.0 * 0.1 for g, v in zip(g_b, hb)]  # excluded: local lr 1
        buf_w = d_w if buf_w is None else [0.9 * m + d for m, d in zip(buf_w, d_w)]
        buf_b = d_b if buf_b is None else [0.9 * m + d for m, d in zip(buf_b, d_b)]
        hw = [v - m for v, m in zip(hw, buf_w)]
        hb = [v - m for v, m in zip(hb, buf_b)]
        assert w.tolist() == pytest.approx(hw, rel=1e-12)
        assert b.tolist() == pytest.approx(hb, rel=1e-12)
    with pytest.raises(ValueError, match="nesterov"):
        LARS([w], lr=0.1, nesterov=True)


# ---------------------------------------------------------------------- building
def test_registry_has_torch_optimizers_and_lars():
    for name in TORCH_OPTIMIZERS + ("LARS",):
        assert name in OPTIMIZERS, name


def test_build_optim_wrapper_from_config():
    model = nn.DataParallel(tiny_model())  # wrappers are stripped
    cfg = dict(
        type="AmpOptimWrapper",
        optimizer=dict(type="mmpretrain.AdamW", lr=1e-3, weight_decay=0.05),
        clip_grad=dict(max_norm=5.0),
        accumulative_counts=2,
    )
    wrapper = build_optim_wrapper(model, cfg)
    assert isinstance(wrapper, AmpOptimWrapper) and isinstance(wrapper.optimizer, torch.optim.AdamW)
    assert wrapper.clip_grad_kwargs == {"max_norm": 5.0} and wrapper._accumulative_counts == 2
    assert cfg["clip_grad"] == {"max_norm": 5.0}  # the config is not consumed
    lars = build_optim_wrapper(
        tiny_model(), dict(optimizer=dict(type="LARS", lr=0.3, momentum=0.9))
    )
    assert type(lars) is OptimWrapper and isinstance(lars.optimizer, LARS)


def test_build_optim_wrapper_errors():
    with pytest.raises(RegistryError, match=r"'optim_wrapper.optimizer'.*did you mean 'AdamW'"):
        build_optim_wrapper(tiny_model(), dict(optimizer=dict(type="AdammW", lr=0.1)))
    with pytest.raises(RegistryError, match="did you mean 'momentum'"):
        build_optim_wrapper(tiny_model(), dict(optimizer=dict(type="SGD", lr=0.1, momentun=0.9)))
    with pytest.raises(RegistryError, match="did you mean 'AmpOptimWrapper'"):
        build_optim_wrapper(
            tiny_model(), dict(type="AmpOptimWraper", optimizer=dict(type="SGD", lr=0.1))
        )
    with pytest.raises(KeyError, match="no 'optimizer'"):
        build_optim_wrapper(tiny_model(), dict(type="OptimWrapper"))
