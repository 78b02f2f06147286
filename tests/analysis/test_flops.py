"""``vistra get-flops``: FLOPs (multiply-adds) and parameters against upstream's published
figures, per-module attribution, the input size a config implies, and the CPU fallback.

Published figures compared with:
- ResNet-50, 224x224: MMPretrain's model card (``configs/resnet/metafile.yml``,
  ``resnet50_8xb32_in1k``): FLOPs 4.12 G, Parameters 25.56 M (MMEngine's counter on the
  oracle measures 4.1115 G, 25.557 M; vistra 4.111 G, 25.557 M).
- PSPNet R50-D8: MMSegmentation's get_flops example (useful tools page): input
  (3, 2048, 1024), 1429.68 GMac, 48.98 M parameters (the auxiliary head included); the
  MMSeg 1.2.2 tool on the oracle measures 357.28 G at 512x1024 without the auxiliary head
  (46.61 M); vistra 357.26 G.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch.nn.functional as F
import yaml
from e2e_support import REPO, run_cli
from torch import nn

from vistra.analysis.building import build_model
from vistra.analysis.flops import count_complexity, input_size
from vistra.cli.get_flops import measure, report
from vistra.config import Config

RESNET50 = "configs/resnet/resnet50_8xb32_in1k.py"
PSPNET = "configs/pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py"


def _tensor_forward(model, image):
    return model(image, mode="tensor")


def _oracle_file(relative: str) -> Path | None:
    """A file of the installed upstream wheels (tools/upstream/install.sh's folder), or
    None when the oracle is not installed; never installs it."""
    roots = [os.environ.get("VISTRA_ORACLE_DIR", "")]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vistra"
    roots += sorted(str(p) for p in cache.glob("upstream-*"))
    for root in filter(None, roots):
        path = Path(root) / relative
        if (Path(root) / ".complete").is_file() and path.is_file():
            return path
    return None


def test_resnet50_matches_the_model_card():
    cfg = Config.fromfile(REPO / RESNET50)
    h, w, source = input_size(cfg)
    assert (h, w) == (224, 224) and "CenterCrop" in source
    result = measure(cfg, (3, h, w), depth=2)
    assert result.device == "meta"
    assert round(result.flops / 1e9, 1) == 4.1 and result.flops == pytest.approx(4.12e9, rel=0.01)
    assert round(result.params / 1e6, 2) == 25.56
    rows = {m.name: m for m in result.modules}
    # the parts add up to the whole: nothing is counted twice or lost between modules
    assert rows["backbone"].flops + rows["head"].flops == result.flops
    assert rows["head.fc"].flops == 2048 * 1000  # one multiply-add per weight


def test_pspnet_matches_mmsegs_published_figures():
    cfg = Config.fromfile(REPO / PSPNET)
    h, w, source = input_size(cfg)
    assert (h, w, source) == (512, 1024, "model.data_preprocessor.size")
    # MMSeg's example is (3, 2048, 1024): 1429.68 GMac, 48.98 M (meta device: no memory)
    big = measure(cfg, (3, 2048, 1024), depth=1)
    assert big.device == "meta"
    assert big.flops == pytest.approx(1429.68e9, rel=0.005)
    assert round(big.params / 1e6, 2) == 48.98
    rows = {m.name: m for m in big.modules}
    assert rows["auxiliary_head"].flops == 0  # training only: not run by mode='tensor'
    assert round((big.params - rows["auxiliary_head"].params) / 1e6, 2) == 46.61
    # the decode head calls are direct .forward() calls: still counted as the head's
    assert rows["decode_head"].flops > 0.4 * big.flops
    assert rows["backbone"].flops + rows["decode_head"].flops == big.flops
    text = report(cfg, big, "from --shape", 1)
    assert "auxiliary_head: 2.365M of the parameters, run in training only" in text
    assert "FLOPs are multiply-adds" in text


def test_meta_and_cpu_counts_agree_and_sizes_come_from_the_config():
    cfg = Config.fromfile(REPO / "configs/quickstart/seg_shapes.py")
    h, w, source = input_size(cfg)
    assert (h, w, source) == (64, 64, "test_dataloader.dataset.img_size")
    meta = count_complexity(build_model(cfg, "meta"), (3, 48, 80), _tensor_forward)
    cpu = count_complexity(build_model(cfg), (3, 48, 80), _tensor_forward)
    assert meta.device == "meta" and cpu.device == "cpu"
    assert meta.flops == cpu.flops > 0 and meta.params == cpu.params
    slide = Config(
        {
            **cfg.to_dict(),
            "model": {**cfg.model, "test_cfg": dict(mode="slide", crop_size=(32, 48))},
        }
    )
    assert input_size(slide)[:2] == (32, 48)
    assert input_size(Config(dict(model=dict(type="ImageClassifier"))))[:2] == (224, 224)


class Attention(nn.Module):
    """One attention layer: projections (``nn.Linear``) and SDPA, whose kernel differs
    between the meta device and the CPU."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.qkv = heads, nn.Linear(dim, 3 * dim)

    def forward(self, x):  # (B, C, H, W) -> tokens
        tokens = x.flatten(2).transpose(1, 2)
        b, n, c = tokens.shape
        q, k, v = self.qkv(tokens).reshape(b, n, 3, self.heads, c // self.heads).unbind(2)
        return F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)))


def test_attention_counts_the_same_on_the_cpu_and_on_meta():
    n, dim, heads = 8 * 8, 16, 2
    expected = n * dim * 3 * dim + 2 * heads * n * n * (dim // heads)  # qkv; QK^T and AV
    for device in ("cpu", "meta"):
        result = count_complexity(Attention().to(device), (dim, 8, 8), lambda m, x: m(x))
        assert (device, result.flops) == (device, expected)


class ThresholdNet(nn.Module):
    """A user's model whose forward reads a value (``.item()``): impossible on meta."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x, data_samples=None, mode="tensor"):
        y = self.conv(x)
        return y * 2 if y.mean().item() > 0 else y


def test_a_model_that_cannot_run_on_meta_is_counted_on_the_cpu():
    cfg = Config(dict(model=dict(type=ThresholdNet)))
    result = measure(cfg, (3, 16, 16), depth=1)
    assert result.device == "cpu" and "meta" in result.note
    assert result.flops == 8 * 3 * 9 * 16 * 16  # out channels x in x kernel x pixels
    assert result.params == 8 * 3 * 9 + 8
    assert result.note in report(cfg, result, "from --shape", 1)


@pytest.mark.slow
def test_cli_on_mmpretrains_own_resnet50_config(tmp_path):
    config = _oracle_file("mmpretrain/.mim/configs/resnet/resnet50_8xb32_in1k.py")
    if config is None:
        pytest.skip("the upstream oracle (tools/upstream/install.sh) is not installed")
    card = yaml.safe_load(config.with_name("metafile.yml").read_text())
    meta = next(m for m in card["Models"] if m["Name"] == "resnet50_8xb32_in1k")["Metadata"]
    done = run_cli("get-flops", config, "--shape", "224", cwd=tmp_path)
    assert done.returncode == 0, done.output
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert lines["Input shape"] == "(3, 224, 224) (from --shape)"
    flops, params = (
        float(lines["Flops"].rstrip("G")) * 1e9,
        float(lines["Params"].rstrip("M")) * 1e6,
    )
    assert flops == pytest.approx(meta["FLOPs"], rel=0.01)  # 4.111 G against the card's 4.12 G
    assert params == pytest.approx(meta["Parameters"], rel=0.001)
    assert "|   backbone " in done.stdout and "head.fc" in done.stdout  # the per-module table


def test_cli_errors_are_one_line(tmp_path, capsys):
    from vistra.cli.get_flops import main

    config = str(REPO / "configs/quickstart/cls_shapes.py")
    assert main([config, "--shape", "1", "2", "3"]) == 2
    assert capsys.readouterr().err == "error: --shape 1 2 3: give H or H W (positive)\n"
    assert main([str(tmp_path / "missing.py")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main([config, "--cfg-options", "model.backbone.type=ResNett"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ResNett" in err and "did you mean" in err
