"""Parameter schedulers: values against closed forms, MMEngine's window and chaining rules."""

from __future__ import annotations

import io
import math

import pytest
import torch

from vistra.engine.optim import OptimWrapper
from vistra.engine.schedulers import (
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingMomentum,
    CosineRestartLR,
    ExponentialLR,
    LinearLR,
    LinearMomentum,
    MultiStepLR,
    OneCycleLR,
    PolyLR,
    ReduceOnPlateauLR,
    StepLR,
    StepParamScheduler,
    build_param_schedulers,
)
from vistra.registry import PARAM_SCHEDULERS, RegistryError


def make_optimizer(lr: float = 1.0, kind: str = "sgd") -> torch.optim.Optimizer:
    p = torch.nn.Parameter(torch.zeros(2))
    if kind == "adam":
        return torch.optim.Adam([p], lr=lr, betas=(0.9, 0.999))
    return torch.optim.SGD([p], lr=lr, momentum=0.9)


def run(schedulers, optimizer, steps: int, key: str = "lr") -> list[float]:
    """The value in effect at each step 0..steps-1 (schedulers step after each)."""
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0][key])
        for s in schedulers:
            s.step()
    return values


def approx(values):
    return pytest.approx(values, rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------------- single schedules
def test_linear_lr_window_and_closed_form():
    opt = make_optimizer(2.0)
    sched = LinearLR(opt, start_factor=0.25, end_factor=1.0, begin=0, end=5, by_epoch=False)
    expected = [
        2.0 * (0.25 + 0.75 * min(t, 4) / 4) for t in range(8)
    ]  # end factor reached at end - 1
    assert run([sched], opt, 8) == approx(expected)
    assert sched.get_last_value() == approx([2.0])


def test_linear_lr_does_nothing_before_begin():
    opt = make_optimizer()
    sched = LinearLR(opt, start_factor=0.5, begin=2, end=4)
    assert run([sched], opt, 5) == approx([1.0, 1.0, 0.5, 1.0, 1.0])
    assert opt.param_groups[0]["initial_lr"] == 1.0


def test_constant_lr_restores_at_end_minus_one():
    opt = make_optimizer()
    sched = ConstantLR(opt, factor=0.5, end=4)
    assert run([sched], opt, 6) == approx([0.5, 0.5, 0.5, 1.0, 1.0, 1.0])


def test_step_multistep_exponential():
    opt = make_optimizer()
    assert run([StepLR(opt, step_size=2, gamma=0.1)], opt, 5) == approx([1, 1, 0.1, 0.1, 0.01])
    opt = make_optimizer()
    assert run([MultiStepLR(opt, milestones=[2, 4], gamma=0.1)], opt, 6) == approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    # milestones count from begin; a repeated milestone decays twice
    opt = make_optimizer()
    assert run([MultiStepLR(opt, milestones=[1, 1], gamma=0.5, begin=2)], opt, 5) == approx(
        [1, 1, 1, 0.25, 0.25]
    )
    opt = make_optimizer()
    assert run([ExponentialLR(opt, gamma=0.5)], opt, 4) == approx([1, 0.5, 0.25, 0.125])


def test_cosine_annealing_closed_form_and_eta_min_ratio():
    opt = make_optimizer(0.4)
    sched = CosineAnnealingLR(opt, eta_min=0.1, begin=0, end=10)  # T_max defaults to end - begin
    expected = [0.1 + 0.3 * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(10)]
    assert run([sched], opt, 12)[:10] == approx(expected)
    assert opt.param_groups[0]["lr"] == pytest.approx(expected[-1])  # frozen after end

    opt = make_optimizer(0.4)
    sched = CosineAnnealingLR(opt, eta_min_ratio=0.25, T_max=4, end=4)
    assert run([sched], opt, 4) == approx(
        [0.1 + 0.3 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]
    )
    with pytest.raises(ValueError, match="not both"):
        CosineAnnealingLR(make_optimizer(), eta_min=0.0, eta_min_ratio=0.1, end=4)


def test_poly_lr_reaches_eta_min_at_end_minus_one():
    opt = make_optimizer(1.0)
    sched = PolyLR(opt, eta_min=0.01, power=2.0, begin=0, end=6)
    total = 5  # end - begin - 1
    expected = [0.01 + 0.99 * (1 - t / total) ** 2 for t in range(6)]
    assert run([sched], opt, 7) == approx(expected + [0.01])


def test_one_cycle_matches_torch():
    opt = make_optimizer(1.0)
    ours = OneCycleLR(opt, eta_max=0.5, total_steps=10, pct_start=0.3, by_epoch=False)
    ref_opt = make_optimizer(1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        ref_opt, max_lr=0.5, total_steps=10, pct_start=0.3, cycle_momentum=False
    )
    got = run([ours], opt, 10)
    want = []
    for _ in range(10):
        want.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    assert got == pytest.approx(want, rel=1e-9)
    assert got[0] == pytest.approx(0.5 / 25) and got[-1] == pytest.approx(0.5 / 25 / 1e4)


def test_one_cycle_three_phase_linear_peaks_and_returns():
    opt = make_optimizer()
    sched = OneCycleLR(
        opt,
        eta_max=1.0,
        total_steps=10,
        pct_start=0.3,
        anneal_strategy="linear",
        three_phase=True,
        div_factor=10,
    )
    values = run([sched], opt, 10)
    assert values[2] == pytest.approx(1.0)  # end of phase 1: pct * total - 1
    assert values[4] == pytest.approx(0.1)  # back to initial at 2 * pct * total - 2
    assert values[9] == pytest.approx(0.1 / 1e4)


def test_cosine_restart():
    opt = make_optimizer()
    sched = CosineRestartLR(opt, periods=[4, 6], restart_weights=[1.0, 0.5], eta_min=0.0)
    values = run([sched], opt, 12)
    assert values[:4] == approx([(1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)])
    assert values[4:10] == approx([0.5 * (1 + math.cos(math.pi * t / 6)) / 2 for t in range(6)])
    assert values[10:] == approx([values[9]] * 2)  # after the last period: unchanged
    with pytest.raises(ValueError, match="exactly one"):
        CosineRestartLR(make_optimizer(), periods=[2])


def test_reduce_on_plateau_patience_and_cooldown():
    opt = make_optimizer()
    sched = ReduceOnPlateauLR(opt, monitor="loss", factor=0.5, patience=2, cooldown=1)
    lrs = []
    for loss in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]:
        sched.step()  # end of training epoch: counts the epoch only
        sched.step({"loss": loss})
        lrs.append(opt.param_groups[0]["lr"])
    # 3rd bad epoch (> patience) halves; one cooldown epoch is ignored; 3 more bad halve again
    assert lrs == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25]
    with pytest.raises(KeyError, match="accuracy/top1"):
        sched.step({"accuracy/top1": 1.0})


def test_reduce_on_plateau_rules_floor_and_begin():
    opt = make_optimizer()
    sched = ReduceOnPlateauLR(
        opt, monitor="acc", rule="greater", factor=0.1, patience=0, min_value=0.05, begin=1
    )
    sched.step({"acc": 0.1})  # global step 0 < begin: ignored
    assert sched.best == sched.rule_worse and sched.last_step == -1
    sched.step()
    sched.step({"acc": 0.5})  # first observation: an improvement
    sched.step()
    sched.step({"acc": 0.5})  # not better than 0.5 * (1 + 1e-4), patience 0: reduce to 0.1
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    sched.step()
    sched.step({"acc": 0.4})
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)  # min_value floor
    with pytest.raises(ValueError, match="iter-based"):
        build_param_schedulers(
            dict(type="ReduceOnPlateauLR", convert_to_iter_based=True), make_optimizer(), 3
        )


# ---------------------------------------------------------------------- chaining
def test_warmup_then_cosine_chain():
    opt = make_optimizer(0.1)
    warmup = LinearLR(opt, start_factor=0.001, begin=0, end=5, by_epoch=False)
    cosine = CosineAnnealingLR(opt, begin=5, end=105, eta_min=0.0, by_epoch=False)
    values = run([warmup, cosine], opt, 106)
    assert values[0] == pytest.approx(0.1 * 0.001)
    assert values[4] == pytest.approx(0.1)  # warm-up ends at the base lr
    assert values[5] == pytest.approx(0.1)  # cosine starts from it
    assert values[55] == pytest.approx(0.05)  # half-way through T_max = 100
    assert values[104] == pytest.approx(0.1 * (1 + math.cos(math.pi * 99 / 100)) / 2)


def test_overlapping_schedulers_multiply():
    opt = make_optimizer()
    linear = LinearLR(opt, start_factor=0.2, end=5)
    expo = ExponentialLR(opt, gamma=0.9)
    values = run([linear, expo], opt, 8)
    expected = [(0.2 + 0.8 * min(t, 4) / 4) * 0.9**t for t in range(8)]
    assert values == approx(expected)


def test_optim_wrapper_with_several_groups_schedules_base_lr():
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    wrapper = OptimWrapper(torch.optim.SGD([{"params": [p1]}, {"params": [p2], "lr": 0.5}], lr=1.0))
    sched = StepLR(wrapper, step_size=1, gamma=0.5)
    sched.step()
    assert wrapper.get_lr() == {"base_lr": [0.5], "lr": [0.5, 0.25]}


# ---------------------------------------------------------------------- momentum
def test_momentum_schedulers_sgd_and_adam_betas():
    opt = make_optimizer()
    sched = LinearMomentum(opt, start_factor=0.5, end=3)
    assert run([sched], opt, 4, key="momentum") == approx([0.45, 0.675, 0.9, 0.9])

    opt = make_optimizer(kind="adam")
    sched = CosineAnnealingMomentum(opt, T_max=2, end=2, eta_min=0.5)
    sched.step()
    assert opt.param_groups[0]["betas"] == pytest.approx(
        (0.7, 0.999)
    )  # cos half-way: 0.5 + 0.4 / 2
    with pytest.raises(ValueError, match="neither 'momentum' nor 'betas'"):
        LinearMomentum(torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))]), end=2)


# ---------------------------------------------------------------------- building
def test_build_default_end_and_by_epoch():
    opt = make_optimizer()
    epoch_sched, iter_sched = build_param_schedulers(
        [dict(type="CosineAnnealingLR"), dict(type="mmengine.LinearLR", by_epoch=False)],
        opt,
        max_epochs=12,
        max_iters=300,
    )
    assert (epoch_sched.by_epoch, epoch_sched.end, epoch_sched.T_max) == (True, 12, 12)
    assert (iter_sched.by_epoch, iter_sched.end) == (False, 300)


def test_convert_to_iter_based():
    opt = make_optimizer()
    cfgs = [
        dict(type="LinearLR", start_factor=0.1, begin=0, end=2, convert_to_iter_based=True),
        dict(type="CosineAnnealingLR", begin=2, end=5, T_max=3, convert_to_iter_based=True),
        dict(type="MultiStepLR", milestones=[1, 2], convert_to_iter_based=True),
    ]
    linear, cosine, multistep = build_param_schedulers(cfgs, opt, epoch_length=4)
    assert (linear.begin, linear.end, linear.by_epoch) == (0, 8, False)
    assert (cosine.begin, cosine.end, cosine.T_max) == (8, 20, 12)
    assert multistep.milestones == {4: 1, 8: 1}
    with pytest.raises(ValueError, match="epoch length"):
        build_param_schedulers(cfgs[:1], make_optimizer())
    with pytest.raises(ValueError, match="by_epoch=True"):
        build_param_schedulers(
            dict(type="LinearLR", by_epoch=False, convert_to_iter_based=True), make_optimizer(), 4
        )


def test_build_errors_name_the_key():
    with pytest.raises(RegistryError, match="did you mean 'CosineAnnealingLR'"):
        build_param_schedulers(dict(type="CosineAnealingLR"), make_optimizer())
    with pytest.raises(RegistryError, match="did you mean 'start_factor'"):
        build_param_schedulers([dict(type="LinearLR", start_factr=0.1, end=3)], make_optimizer())
    with pytest.raises(RegistryError, match=r"param_scheduler\[0\].*did you mean 'T_max'"):
        build_param_schedulers(
            [dict(type="CosineAnnealingLR", t_max=3, convert_to_iter_based=True)],
            make_optimizer(),
            2,
        )
    with pytest.raises(ValueError, match="end .* larger than begin"):
        LinearLR(make_optimizer(), begin=3, end=3)


def test_every_mmengine_name_is_registered():
    for kind in (
        "Step",
        "MultiStep",
        "Constant",
        "Exponential",
        "CosineAnnealing",
        "Linear",
        "Poly",
        "CosineRestart",
        "ReduceOnPlateau",
    ):
        for suffix in ("LR", "Momentum", "ParamScheduler"):
            assert f"{kind}{suffix}" in PARAM_SCHEDULERS, f"{kind}{suffix}"
    assert "OneCycleLR" in PARAM_SCHEDULERS and "OneCycleParamScheduler" in PARAM_SCHEDULERS
    sched = StepParamScheduler(make_optimizer(), "weight_decay", step_size=1, gamma=0.5)
    sched.step()
    assert sched.optimizer.param_groups[0]["weight_decay"] == 0.0  # generic form on any key


# ---------------------------------------------------------------------- resume
def _build(opt):
    return build_param_schedulers(
        [
            dict(type="LinearLR", start_factor=0.1, end=3, by_epoch=False),
            dict(type="CosineAnnealingLR", begin=3, end=20, by_epoch=False, eta_min=0.01),
            dict(type="MultiStepLR", milestones=[5, 9], by_epoch=False),
        ],
        opt,
    )


def test_state_dict_round_trip_mid_schedule():
    opt_a = make_optimizer(0.5)
    scheds_a = _build(opt_a)
    run(scheds_a, opt_a, 7)
    buffer = io.BytesIO()
    torch.save(
        {"optimizer": opt_a.state_dict(), "schedulers": [s.state_dict() for s in scheds_a]}, buffer
    )
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain values only

    opt_b = make_optimizer(0.5)
    scheds_b = _build(opt_b)  # constructing steps once: overwritten by the loads below
    opt_b.load_state_dict(saved["optimizer"])
    for sched, state in zip(scheds_b, saved["schedulers"]):
        sched.load_state_dict(state)
    assert run(scheds_b, opt_b, 15) == approx(run(scheds_a, opt_a, 15))
