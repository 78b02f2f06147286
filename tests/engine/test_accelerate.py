"""The config's speed options (``compile``, ``channels_last``), the preprocessors'
non-blocking copies and the metrics' device-side results, on CPU.

Training runs are 2 iterations of a one-stage ResNet on 16-px in-memory shapes; each
option must give the losses of the plain run to 1e-5.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_classifier import (
    one_thread,  # noqa: F401 - a fixture for this module
    tiny_classifier_cfg,
)

from vistra.config import Config, ConfigError
from vistra.data.preprocessor import ClsDataPreprocessor
from vistra.data.structures import DataSample
from vistra.dist.model_wrap import unwrap
from vistra.engine.accelerate import apply_speed_options, compile_kwargs
from vistra.engine.hooks import Hook
from vistra.engine.runner import Runner
from vistra.evaluation.metrics.accuracy import Accuracy
from vistra.evaluation.metrics.device_results import results_to_cpu
from vistra.registry import HOOKS


@HOOKS.register_module(force=True)
class AccelerateProbe(Hook):
    """Records each step's loss, and the memory format of the first batch and weight."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.batch_channels_last: list[bool] = []
        self.weight_channels_last = False

    def before_train(self, runner: Any) -> None:
        core = unwrap(runner.model)
        weight = core.backbone.conv1.weight
        self.weight_channels_last = weight.is_contiguous(memory_format=torch.channels_last)

        def record(module: Any, args: Any, out: dict) -> None:
            fmt = torch.channels_last
            self.batch_channels_last.append(out["inputs"].is_contiguous(memory_format=fmt))

        core.data_preprocessor.register_forward_hook(record)

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any, outputs: Any) -> None:
        self.losses.append(float(outputs["loss"]))


def tiny_cfg(work_dir: Path, **top: Any) -> dict:
    """Two iterations of the shared tiny classifier, recorded by the probe."""
    run = dict(
        train_cfg=dict(by_epoch=False, max_iters=2, val_interval=2),
        custom_hooks=[dict(type="AccelerateProbe")],
    )
    return tiny_classifier_cfg(work_dir, **{**run, **top})


def train(work_dir: Path, **top: Any) -> AccelerateProbe:
    runner = Runner.from_config(Config(copy.deepcopy(tiny_cfg(work_dir, **top))))
    runner.train()
    (probe,) = [h for h in runner.hooks if isinstance(h, AccelerateProbe)]
    return probe


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> AccelerateProbe:
    return train(tmp_path_factory.mktemp("plain"))


# ----------------------------------------------------------------------------- config
def test_compile_values_follow_mmengine():
    assert compile_kwargs(None) is None and compile_kwargs(False) is None
    assert compile_kwargs(True) == {}
    kwargs = dict(backend="aot_eager", mode="max-autotune", dynamic=False)
    assert compile_kwargs(kwargs) == kwargs


@pytest.mark.parametrize(
    "value, message",
    [
        ("yes", "compile='yes': give True, False or a dict"),
        (
            dict(backnd="eager"),
            "compile.backnd: not an argument of torch.compile. Did you mean 'backend'",
        ),
        (dict(mode="max-autotun"), "compile.mode='max-autotun'"),
        (dict(backend="inductr"), "compile.backend='inductr': no such torch.compile backend"),
    ],
)
def test_bad_compile_values_name_the_key(value, message):
    with pytest.raises(ConfigError) as info:
        compile_kwargs(value)
    assert message.lower() in str(info.value).lower(), str(info.value)


def test_bad_channels_last_value_is_refused():
    with pytest.raises(ConfigError, match="channels_last='on': give True or False"):
        apply_speed_options(torch.nn.Conv2d(3, 3, 1), dict(channels_last="on"))


# ----------------------------------------------------------------------------- training
def test_plain_run_uses_contiguous_nchw(plain):
    assert len(plain.losses) == 2 and not plain.weight_channels_last
    assert plain.batch_channels_last == [False] * 3  # 2 train batches, 1 val batch


def test_compiled_run_gives_the_plain_losses(plain, tmp_path):
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    probe = train(tmp_path, compile=dict(backend="aot_eager"))
    assert counters["stats"]["unique_graphs"] > graphs  # the forward did go through dynamo
    assert probe.losses == pytest.approx(plain.losses, abs=1e-5)


def test_channels_last_run_gives_the_plain_losses(plain, tmp_path):
    probe = train(tmp_path, channels_last=True)
    assert probe.weight_channels_last and probe.batch_channels_last == [True] * 3
    assert probe.losses == pytest.approx(plain.losses, abs=1e-5)


def test_compiled_forward_is_rebound_by_deepcopy():
    from vistra.registry import MODELS

    model = MODELS.build(tiny_cfg(Path("."))["model"])
    apply_speed_options(model, dict(compile=dict(backend="eager")))
    twin = copy.deepcopy(model)  # what EMAHook does
    assert twin.forward.__self__ is twin and model.forward.__self__ is model
    assert list(twin.state_dict()) == list(model.state_dict())  # no _orig_mod. prefix


# ----------------------------------------------------------------------------- copies
def test_cpu_preprocessing_keeps_the_batch_tensors():
    pre = ClsDataPreprocessor(num_classes=3)
    images = [torch.zeros(3, 4, 4, dtype=torch.uint8)]
    samples = [DataSample().set_gt_label(1)]
    cast = pre.cast_data({"inputs": images, "data_samples": samples})
    assert cast["inputs"][0] is images[0] and cast["data_samples"][0] is samples[0]


@pytest.mark.parametrize("divisor", [1, 8])
def test_one_size_batch_is_normalised_at_once_with_the_per_image_values(divisor):
    from vistra.data.preprocessor import SegDataPreProcessor, stack_batch

    pre = ClsDataPreprocessor(mean=[1.0, 2.0, 3.0], std=[2.0, 3.0, 4.0], to_rgb=True)
    pre.pad_size_divisor = divisor
    images = [torch.randint(0, 256, (3, 12, 10), dtype=torch.uint8) for _ in range(3)]
    per_image = stack_batch([pre._normalize(t, 0) for t in images], divisor, 0)
    assert torch.equal(pre.process_inputs(images), per_image)
    seg = SegDataPreProcessor(mean=[1.0, 2.0, 3.0], std=[2.0, 3.0, 4.0], bgr_to_rgb=True)
    out = seg({"inputs": images, "data_samples": [DataSample() for _ in images]})
    assert torch.equal(out["inputs"], stack_batch([seg._normalize(t, 0) for t in images]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pinned_batch_reaches_cuda_with_its_values():
    pre = ClsDataPreprocessor(num_classes=3, mean=[1.0] * 3, std=[2.0] * 3).cuda()
    images = torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8)
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    out = pre({"inputs": images.pin_memory(), "data_samples": samples})
    assert out["inputs"].is_cuda and out["data_samples"][0].gt_label.is_cuda
    torch.testing.assert_close(out["inputs"].cpu(), (images.float() - 1) / 2)


# ----------------------------------------------------------------------------- metrics
def test_batched_copy_keeps_every_value_and_owns_its_storage():
    results = [
        {"gt_label": torch.tensor([i]), "pred_score": torch.rand(5), "n": i} for i in range(4)
    ]
    moved = results_to_cpu(results)
    assert moved is results  # all on the CPU already: nothing to do
    assert results_to_cpu([(torch.arange(3),)])[0][0].tolist() == [0, 1, 2]


def test_device_histograms_equal_intersect_and_union():
    from vistra.evaluation.functional import intersect_and_union
    from vistra.evaluation.metrics.iou import device_areas

    gen = torch.Generator().manual_seed(0)
    for _ in range(20):  # labels and predictions out of range and ignored included
        pred = torch.randint(-1, 7, (13, 17), generator=gen)
        label = torch.randint(-1, 7, (13, 17), generator=gen)
        label[label == 6] = 255
        expected = intersect_and_union(pred, label, 5, 255)
        got = device_areas(pred, label, 5, 255)
        assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(expected, got))


def test_accuracy_flushes_in_batches_with_the_same_numbers():
    scores = torch.rand(10, 4, generator=torch.Generator().manual_seed(0))
    samples = [{"gt_label": torch.tensor([i % 4]), "pred_score": s} for i, s in enumerate(scores)]
    metric = Accuracy(topk=(1, 2))
    metric.flush_every = 3
    for start in range(0, 10, 2):
        metric.process(None, samples[start : start + 2])
    expected = Accuracy.calculate(scores, torch.arange(10) % 4, (1, 2), (0.0,))
    got = metric.evaluate(10)
    assert got == {"accuracy/top1": expected[0][0].item(), "accuracy/top2": expected[1][0].item()}
    assert metric.results == [] and metric._on_cpu_upto == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_iou_histograms_on_cuda_equal_the_cpu_ones():
    from vistra.evaluation.functional import intersect_and_union
    from vistra.evaluation.metrics.iou import device_areas

    pred = torch.randint(-1, 7, (64, 48))
    label = torch.randint(-1, 7, (64, 48))
    label[label == 6] = 255
    expected = intersect_and_union(pred, label, 5, 255)
    got = results_to_cpu([device_areas(pred.cuda(), label.cuda(), 5, 255)])[0]
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
