"""Every self-supervised algorithm of the zoo (tests/helpers/selfsup_zoo.py), from the
wheel's own config file, unchanged on disk:

- keys: vistra's ``state_dict`` keys and shapes equal the upstream package's;
- loss: upstream's randomised weights, loaded as ``load_from`` loads them, give upstream's
  loss dict on the oracle's batch (fixed views, masks and RNG seed), each entry within
  1e-4 (relative where |loss| > 1);
- training: two iterations on tiny generated images at a reduced size on CPU.

The default suite compares the keys of a fixed spread sample of the entries not marked
``heavy`` (``KEYS_SAMPLE``, built on the meta device), the losses of ``DEFAULT_LOSSES`` and trains ``LIGHT``; VISTRA_ZOO_FULL=1
(``scripts/test.sh --zoo``) or VISTRA_UPSTREAM_FULL=1 runs everything, VISTRA_SELFSUP_ONLY
the entries named.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
import selfsup_zoo
import torch
from numeric_support import build_vistra_model
from oracle_support import FULL, config_tree, report, run_oracle, run_oracle_json, sample
from seg_zoo import vistra_keys
from tiny_runs import dicts_in, train_tiny

from vistra.config import Config
from vistra.config.cfg_options import parse_cfg_options

ZOO_FULL = FULL or os.environ.get("VISTRA_ZOO_FULL", "") not in ("", "0")
ONLY = bool(os.environ.get("VISTRA_SELFSUP_ONLY"))
KEYS_SAMPLE = 12
ALGORITHMS = selfsup_zoo.selected()
if not (ZOO_FULL or ONLY):  # a fixed spread sample of the light entries
    ALGORITHMS = {n: a for n, a in ALGORITHMS.items() if not a.heavy}
    ALGORITHMS = {n: ALGORITHMS[n] for n in sample(list(ALGORITHMS), KEYS_SAMPLE)}
# one of each kind of method, a second or two each on two cores
DEFAULT_LOSSES = ("simclr-mmselfsup", "mae")
LIGHT = ("simclr", "mae-mmselfsup")
ALL = selfsup_zoo.ALGORITHMS
COMPARED = ALGORITHMS if (ZOO_FULL or ONLY) else {n: ALL[n] for n in DEFAULT_LOSSES}
TRAINED = ALGORITHMS if (ZOO_FULL or ONLY) else {n: ALL[n] for n in LIGHT}
# the crop that the two training iterations run at, and the pipeline steps that set it
TRAIN_SIZE = 32
SIZE_STEPS = {
    "RandomResizedCrop": "size",
    "RandomResizedCropAndInterpolationWithTwoPic": "size",
    "Resize": "scale",
    "CenterCrop": "crop_size",
}


# backbones whose position embeddings (or windows) are built for one input size
TRANSFORMER = re.compile(r"ViT|Transformer|BEiT|MixMIM")
# decoders with a position embedding per patch (``num_patches``, 196 unless told)
PATCH_DECODERS = {"MAEPretrainDecoder", "MILANPretrainDecoder"}


def _path(name: str) -> Path:
    algorithm = selfsup_zoo.ALGORITHMS[name]
    return selfsup_zoo.config_path(algorithm, config_tree(algorithm.package))


@pytest.fixture(scope="module")
def upstream_keys(tmp_path_factory) -> dict[str, dict[str, list[int]]]:
    """The upstream ``{key: shape}`` of every entry (one oracle process)."""
    jobs = [
        {"config": str(_path(name)), "cfg_options": list(algorithm.cfg_options)}
        for name, algorithm in ALGORITHMS.items()
    ]
    spec = tmp_path_factory.mktemp("selfsup_keys") / "spec.json"
    spec.write_text(json.dumps(jobs))
    result = run_oracle_json("models", "keys-batch", spec, timeout=1200)
    return {name: result[str(_path(name))] for name in ALGORITHMS}


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_keys_equal_upstream(name, upstream_keys):
    expected = upstream_keys[name]
    assert "error" not in expected, expected
    ours = vistra_keys(_path(name), selfsup_zoo.ALGORITHMS[name].cfg_options)
    missing, extra = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    assert not missing and not extra, f"missing {missing[:8]}, unexpected {extra[:8]}"
    assert ours == expected, [(k, ours[k], expected[k]) for k in ours if ours[k] != expected[k]][:5]


@pytest.fixture(scope="module")
def oracle_losses(tmp_path_factory) -> dict[str, Path | str]:
    """One oracle process for every entry: {name: its folder, or the oracle's error}."""
    root = tmp_path_factory.mktemp("selfsup_losses")
    jobs = [
        selfsup_zoo.oracle_job(algorithm, _path(name), root / name)
        for name, algorithm in COMPARED.items()
        if not algorithm.loss_skip
    ]
    spec = root / "spec.json"
    spec.write_text(json.dumps(jobs))
    results = json.loads(run_oracle("selfsup", "loss-batch", spec, timeout=1800).stdout)
    return {
        name: root / name if results[str(root / name)] == "ok" else results[str(root / name)]
        for name, algorithm in COMPARED.items()
        if not algorithm.loss_skip
    }


@pytest.mark.parametrize("name", list(COMPARED))
def test_loss_equals_upstream_on_upstream_weights(name, oracle_losses):
    algorithm = selfsup_zoo.ALGORITHMS[name]
    if algorithm.loss_skip:
        pytest.skip(algorithm.loss_skip)
    folder = oracle_losses[name]
    assert isinstance(folder, Path), f"the oracle failed: {folder}"
    model = build_vistra_model(_path(name), parse_cfg_options(algorithm.cfg_options))
    load = selfsup_zoo.load_upstream(model, folder)
    assert not (load.unset or load.unexpected), load.table()
    upstream = torch.load(folder / "losses.pt", weights_only=True)
    ours = selfsup_zoo.vistra_losses(model, algorithm, folder)
    diffs = selfsup_zoo.loss_diffs(ours, upstream)
    shown = ", ".join(f"{k} {upstream[k].double().mean().item():.6g}" for k in sorted(upstream))
    report(f"selfsup {name}: upstream losses {shown}; max rel. |diff| {max(diffs.values()):.3g}")
    assert all(d <= selfsup_zoo.TOLERANCE for d in diffs.values()), diffs


def shrink_views(cfg: Config, size: int) -> None:
    """Every size-fixing step of the training pipeline at ``size`` pixels."""
    for step in dicts_in(cfg.train_dataloader.dataset.get("pipeline") or []):
        key = SIZE_STEPS.get(step.get("type"))
        if key is not None and step.get(key) is not None:
            step[key] = size
        # MMPretrain's RandomResizedCrop names its output size ``scale`` (an int)
        if step.get("type") == "RandomResizedCrop" and isinstance(step.get("scale"), int):
            step["scale"] = size


def shrink_transformer(cfg: Config, size: int) -> None:
    """A transformer backbone built for ``size`` (its position embeddings, patch grid), and
    a decoder's patch count to match."""
    backbone = cfg.model.get("backbone") or {}
    if not TRANSFORMER.search(backbone.get("type", "")) and "img_size" not in backbone:
        return
    backbone["img_size"] = size
    patches = (size // backbone.get("patch_size", 16)) ** 2
    for part in dicts_in(cfg.model.get("neck") or {}):
        if "num_patches" in part or part.get("type") in PATCH_DECODERS:
            part["num_patches"] = patches


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAINED))
def test_two_training_iterations(name, tmp_path):
    algorithm = selfsup_zoo.ALGORITHMS[name]
    if algorithm.train_skip:
        pytest.skip(algorithm.train_skip)
    cfg = Config.fromfile(str(_path(name)))
    shrink_views(cfg, TRAIN_SIZE)
    shrink_transformer(cfg, TRAIN_SIZE)
    if algorithm.train_options:
        cfg.merge_from_dict(dict(algorithm.train_options))
    runner = train_tiny(cfg, tmp_path)
    scalars = (Path(runner.log_dir) / "vis_data" / "scalars.json").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in scalars if '"loss"' in line]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), scalars
