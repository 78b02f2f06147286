"""MMSelfSup 1.x's own MAE and SimCLR configs build, keep MMSelfSup's keys, compute
MMSelfSup's losses both ways, and train through ``vistra train``, unchanged.

Keys: vistra's ``state_dict`` of every config equals MMSelfSup's (``models keys``).
Numbers: the oracle (``selfsup export``) builds the model with MMSelfSup, randomises it and
writes its loss on fixed views; MAE's random masking is fixed by giving both sides the
same ``(B, L)`` noise (the oracle substitutes it for ``torch.rand`` in its own process,
vistra takes it as ``MAE.loss(..., noise=...)``). upstream -> vistra loads the oracle's
checkpoint strictly; vistra -> upstream saves a vistra model with other random weights
with vistra's checkpoint writer and the oracle loads it strictly (``selfsup run``).
Training: two iterations from the user's file with tiny images, a tiny ImageNet-format
folder and ``--cfg-options`` only (``model.backbone.arch`` kept).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from e2e_support import read_jsonl, run_cli, run_dirs
from fake_data import write_imagenet_like
from numeric_support import build_vistra_model
from oracle_support import FULL, config_tree, report, run_oracle, run_oracle_json

from vistra.checkpoint import load_state_dict, save_checkpoint

TOLERANCE = 1e-4
MAE = [
    "mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py",
    "mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py",
    "mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py",
    "mae/mae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py",
    "mae/mae_vit-base-p16_8xb512-coslr-400e_in1k.py",
    "mae/mae_vit-huge-p16_8xb512-amp-coslr-1600e_in1k.py",
    "mae/mae_vit-large-p16_8xb512-amp-coslr-1600e_in1k.py",
    "mae/mae_vit-large-p16_8xb512-amp-coslr-300e_in1k.py",
    "mae/mae_vit-large-p16_8xb512-amp-coslr-400e_in1k.py",
    "mae/mae_vit-large-p16_8xb512-amp-coslr-800e_in1k.py",
]
SIMCLR = [
    "simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py",
    "simclr/simclr_resnet50_16xb256-coslr-800e_in1k.py",
    "simclr/simclr_resnet50_8xb32-coslr-200e_in1k.py",
    "simclr/simclr_resnet50_8xb64-coslr-200e_in1k.py",
]
ALL = MAE + SIMCLR
GUIDE = "mae/mae_vit-base-p16_8xb512-coslr-400e_in1k.py"  # MMSelfSup's getting-started config
# the default sample (a ViT-B step on CPU costs seconds, a ResNet-50 one little): the
# guide's config and two SimCLR ones; VISTRA_UPSTREAM_FULL adds the AMP, ViT-L and ViT-H ones
# the default sample: one SimCLR config through the CLI (tests/upstream/test_selfsup_zoo.py
# trains MMSelfSup's MAE and MMPretrain's SimCLR through the Runner)
TRAIN = ALL if FULL else [SIMCLR[0]]
# the keys of the default sample are compared by tests/upstream/test_selfsup_zoo.py (on the
# meta device); here every config under VISTRA_UPSTREAM_FULL, built for real
KEYS = ALL if FULL else TRAIN
KEY_TESTS = ALL if FULL else []


def _path(name: str) -> Path:
    return config_tree("mmselfsup") / "selfsup" / name


@pytest.fixture(scope="module")
def upstream_keys() -> dict[str, dict[str, list[int]]]:
    """MMSelfSup's ``{key: shape}`` for every config in KEYS (one oracle process)."""
    result = run_oracle_json("models", "keys", *(_path(n) for n in KEYS))
    return {name: result[str(_path(name))] for name in KEYS}


_KEYS_EQUAL: dict[str, bool] = {}


@pytest.mark.parametrize("name", KEY_TESTS)
def test_config_builds_with_mmselfsup_keys(name, upstream_keys):
    expected = upstream_keys[name]
    assert "error" not in expected, expected
    model = build_vistra_model(_path(name))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    _KEYS_EQUAL[name] = ours == expected
    missing, extra = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    assert ours == expected, [k for k in ours if ours[k] != expected[k]][:5]


def test_keys_summary():
    if not _KEYS_EQUAL:
        pytest.skip("no key comparison ran")
    report(
        f"MMSelfSup MAE/SimCLR configs: build and keys/shapes equal "
        f"{sum(_KEYS_EQUAL.values())}/{len(_KEYS_EQUAL)}"
    )


# ----------------------------------------------------------------------------- numbers
CASES = {  # name: (config, oracle export arguments)
    "mae-vit-b": (GUIDE, ["--size", "224", "--batch", "2", "--views", "1"]),
    "simclr-r50": (SIMCLR[0], ["--size", "64", "--batch", "4", "--views", "2"]),
}


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Other seeded values than the oracle's (so the outputs say which weights loaded)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif key.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            else:
                fan_in = max(tensor[0].numel(), 1) if tensor.dim() > 1 else 100
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / fan_in**0.5)


def _vistra_outputs(model, folder: Path) -> dict[str, torch.Tensor]:
    """The loss on the oracle's views and noise, and the predictions it compares."""
    views = torch.load(folder / "input.pt", weights_only=True)
    noise = torch.load(folder / "noise.pt", weights_only=True)
    with torch.no_grad():
        if noise.numel():  # MAE
            loss = model.loss(views, None, noise=noise)["loss"]
            latent, _, ids_restore = model.backbone(views[0], noise=noise)
            pred = model.neck(latent, ids_restore)
        else:  # SimCLR; one process: the global-batch gather is the identity
            loss = model.loss(views, None)["loss"]
            z = model.neck(model.backbone(torch.stack(views, 1).flatten(0, 1)))[0]
            pred = z / (torch.norm(z, p=2, dim=1, keepdim=True) + 1e-10)
    return {"loss": loss, "pred": pred}


# both directions; the default suite runs SimCLR's (MAE's upstream -> vistra loss is also in
# tests/upstream/test_selfsup_zoo.py's default sample)
DIRECTIONS = list(CASES) if FULL else ["simclr-r50"]


@pytest.fixture(scope="module", params=DIRECTIONS)
def compared(request, tmp_path_factory):
    """Both directions with one vistra model and one oracle process:
    ``{'name', 'upstream', 'vistra_upstream_weights', 'vistra_own', 'upstream_own'}``."""
    name = request.param
    config, args = CASES[name]
    path, folder = _path(config), tmp_path_factory.mktemp(name)
    model = build_vistra_model(path)
    _randomise(model, seed=13)
    ckpt = save_checkpoint(
        {"meta": {"config": path.name}, "state_dict": model.state_dict()}, folder / "vistra.pth"
    )
    # export MMSelfSup's randomised model, then load vistra's checkpoint into it strictly
    run_oracle("selfsup", "export", path, folder, "--seed", "5", *args, "--check", ckpt)
    own = _vistra_outputs(model.eval(), folder)
    state = torch.load(folder / "upstream.pth", map_location="cpu", weights_only=True)
    load = load_state_dict(model, state["state_dict"], source="upstream.pth")
    assert not (load.unset or load.unexpected), load.table()
    return {
        "name": name,
        "upstream": torch.load(folder / "upstream_out.pt", weights_only=True),
        "vistra_upstream_weights": _vistra_outputs(model.eval(), folder),
        "vistra_own": own,
        "upstream_own": torch.load(folder / "checkpoint_out.pt", weights_only=True),
    }


def _diffs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    assert a["pred"].shape == b["pred"].shape, (a["pred"].shape, b["pred"].shape)
    return {k: (a[k].double() - b[k].double()).abs().max().item() for k in ("loss", "pred")}


def test_upstream_checkpoint_gives_upstream_loss(compared):
    upstream, ours = compared["upstream"], compared["vistra_upstream_weights"]
    diff = _diffs(ours, upstream)
    report(
        f"{compared['name']}: upstream -> vistra (strict) loss {upstream['loss'].item():.6f}, "
        f"max |diff| loss {diff['loss']:.3g}, predictions {diff['pred']:.3g}"
    )
    assert diff["loss"] <= TOLERANCE and diff["pred"] <= TOLERANCE, diff


def test_vistra_checkpoint_loads_strictly_into_upstream(compared):
    upstream, ours = compared["upstream_own"], compared["vistra_own"]
    diff = _diffs(ours, upstream)
    report(
        f"{compared['name']}: vistra -> upstream (strict) loss {ours['loss'].item():.6f}, "
        f"max |diff| loss {diff['loss']:.3g}, predictions {diff['pred']:.3g}"
    )
    assert diff["loss"] <= TOLERANCE and diff["pred"] <= TOLERANCE, diff
    # and the weights that loaded were vistra's, not the oracle's own
    assert _diffs(ours, compared["upstream"])["pred"] > 1e-2


# ----------------------------------------------------------------------------- training
def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return math.inf


def _train_options(name: str, data: Path) -> list[str]:
    options = [
        f"train_dataloader.dataset.data_root={data}",
        "train_dataloader.batch_size=2",
        "train_dataloader.num_workers=0",
        "train_dataloader.persistent_workers=False",
        "train_cfg.max_epochs=1",
        "default_hooks.logger.interval=1",
        "default_hooks.checkpoint.interval=1",
    ]
    if name.startswith("simclr/"):
        return [*options, "train_dataloader.dataset.pipeline.1.transforms.0.0.size=32"]
    size = 28 if "huge" in name else 32  # two patches a side (ViT-H has 14-pixel patches)
    return [
        *options,
        f"train_dataloader.dataset.pipeline.1.size={size}",
        f"model.backbone.img_size={size}",
        "model.neck.num_patches=4",
    ]


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Path:
    return write_imagenet_like(tmp_path_factory.mktemp("imagenet"), n_train=4, img_size=48)


@pytest.mark.parametrize("name", TRAIN)
def test_two_training_iterations_from_the_unchanged_config(name, imagenet, tmp_path, upstream_keys):
    if "huge" in name and _available_gib() < 14:
        pytest.skip(f"ViT-H training needs ~12 GiB of memory, {_available_gib():.1f} available")
    work = tmp_path / "work"
    result = run_cli(
        "train", _path(name), "--work-dir", work, "--cfg-options", *_train_options(name, imagenet),
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    assert "Traceback" not in result.output
    (run,) = run_dirs(work)
    records = read_jsonl(run / "vis_data" / "scalars.json")
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), records
    saved = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=True)
    assert list(saved["state_dict"]) == list(upstream_keys[name])  # MMSelfSup's names
    report(f"two iterations of {Path(name).name}: losses {', '.join(f'{v:.4f}' for v in losses)}")
