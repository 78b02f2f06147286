"""Which models init_model/get_model run channels_last (vistra/engine/accelerate.py's
inference_channels_last): CPU classifiers of the measured families, unless the config
says otherwise; and their predictions stay those of the NCHW model."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from vistra.apis import init_model
from vistra.engine.accelerate import inference_channels_last

CONFIGS = Path(__file__).resolve().parents[2] / "configs/quickstart"


def build(name: str, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no checkpoint
        return init_model(CONFIGS / name, None, "cpu", options or None)


def first_conv(model) -> torch.Tensor:
    return next(p for p in model.parameters() if p.dim() == 4)


def test_cpu_classifier_runs_channels_last_with_the_same_predictions():
    torch.manual_seed(0)
    auto = build("cls_shapes.py")
    nchw = build("cls_shapes.py", channels_last=False)
    nchw.load_state_dict(auto.state_dict())
    assert first_conv(auto).is_contiguous(memory_format=torch.channels_last)
    assert first_conv(nchw).is_contiguous()
    x = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        a = auto.test_step({"inputs": x})
        b = nchw.test_step({"inputs": x})
    scores = torch.stack([s.pred_score for s in a]), torch.stack([s.pred_score for s in b])
    torch.testing.assert_close(*scores, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("config", "options", "expected"),
    [
        ("cls_shapes.py", {"channels_last": False}, False),  # the config decides
        ("seg_shapes.py", {}, False),  # segmentors: not measured faster (PSPNet 0.92x)
        ("seg_shapes.py", {"channels_last": True}, True),
    ],
)
def test_the_config_and_the_task_decide(config, options, expected):
    model = build(config, **options)
    assert inference_channels_last(model, model.cfg, torch.device("cpu")) is expected
    assert first_conv(model).is_contiguous(memory_format=torch.channels_last) is expected


def test_not_on_a_gpu_unless_asked():
    model = build("cls_shapes.py", channels_last=False)
    model.cfg.pop("channels_last")
    assert inference_channels_last(model, model.cfg, torch.device("cuda")) is False
    assert inference_channels_last(model, model.cfg, torch.device("cpu")) is True
