"""Classifiers from MMPretrain's own configs compute MMPretrain's numbers, both ways, for every
family of the classification zoo (tests/helpers/cls_zoo.py).

upstream -> vistra: the oracle (one process for all models) builds the model of the config
with MMPretrain, gives every weight and BatchNorm statistic a seeded random value and
writes the checkpoint, an input batch and its logits; vistra builds the *same config file*,
loads that checkpoint with its strict loader (ResNet-50 also through
``init_cfg=dict(type='Pretrained', ...)`` and ``vistra test``), the report says 0 missing,
unexpected, mismatched and remapped, and the logits agree to 1e-4.
vistra -> upstream: vistra's checkpoint writer saves the model (other random weights), the
oracle loads it strictly into MMPretrain and gives vistra's logits.

The default suite takes cls_zoo.DEFAULT, VISTRA_UPSTREAM_FULL=1 every family,
VISTRA_CLS_ONLY=name,... the ones named.
"""

from __future__ import annotations

import json
import pickle

import cls_zoo
import pytest
import torch
from e2e_support import run_cli
from fake_data import write_imagenet_like
from numeric_support import build_vistra_model, max_abs_diff, vistra_outputs
from oracle_support import FULL, config_tree, report, run_oracle_json

from vistra.checkpoint import (
    extract_state_dict,
    load_checkpoint_file,
    load_state_dict,
    save_checkpoint,
)

TOLERANCE = 1e-4  # float32 logits
FAMILIES = {name: f for name, f in cls_zoo.selected(FULL).items() if f.numeric}
THROUGH_INIT_CFG = "resnet50"  # loads as a user's init_cfg=dict(type='Pretrained') does


def _path(name: str):
    return config_tree("mmpretrain") / FAMILIES[name].config


def _batch(command: str, spec: list[dict], path) -> dict[str, str]:
    path.write_text(json.dumps(spec))
    return run_oracle_json("models", command, path, timeout=1800)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{name: folder with upstream.pth, input.pt, upstream_out.pt}, one oracle process."""
    root = tmp_path_factory.mktemp("cls_numeric")
    folders = {name: root / name for name in FAMILIES}
    spec = [
        dict(
            config=str(_path(name)),
            outdir=str(folders[name]),
            seed=3,
            size=list(family.size),
            channels=family.channels,
            batch=2,
            cfg_options=list(family.cfg_options),
        )
        for name, family in FAMILIES.items()
    ]
    status = _batch("export-batch", spec, root / "export.json")
    failed = {k: v for k, v in status.items() if v != "ok"}
    assert not failed, f"oracle export failed: {failed}"
    return folders


def _options(name: str) -> dict | None:
    from vistra.config.cfg_options import parse_cfg_options

    options = FAMILIES[name].cfg_options
    return parse_cfg_options(list(options)) if options else None


def _load_upstream(name: str, folder):
    """vistra's model of the family's config with the upstream weights; (model, report)."""
    ckpt = folder / "upstream.pth"
    if name == THROUGH_INIT_CFG:
        model = build_vistra_model(
            _path(name), {"model.init_cfg": dict(type="Pretrained", checkpoint=str(ckpt))}
        )
        model.init_weights()
        state = extract_state_dict(load_checkpoint_file(ckpt))
        return model.eval(), load_state_dict(model, state, source=str(ckpt))
    model = build_vistra_model(_path(name), _options(name))
    state = extract_state_dict(load_checkpoint_file(ckpt))
    return model.eval(), load_state_dict(model, state, source=str(ckpt))


@pytest.fixture(scope="module")
def vistra_side(exported):
    """Per family: keys, load report, logits difference; saves vistra's own checkpoint."""
    results = {}
    for name, folder in exported.items():
        try:
            model, load_report = _load_upstream(name, folder)
        except Exception as exc:  # noqa: BLE001 - each family's tests show its own error
            results[name] = dict(error=f"vistra cannot build or load it: {exc}")
            continue
        inputs = torch.load(folder / "input.pt", weights_only=True)
        upstream = torch.load(folder / "upstream_out.pt", weights_only=True)
        results[name] = dict(
            keys={k: tuple(v.shape) for k, v in model.state_dict().items()},
            report=load_report,
            diff=max_abs_diff(vistra_outputs(model, inputs), upstream),
        )
        # a fresh model for the other direction: its fixed buffers are its own, not the
        # oracle's randomised ones
        model = build_vistra_model(_path(name), _options(name))
        _randomise(model, seed=11)
        save_checkpoint(
            {"meta": {"config": _path(name).name}, "state_dict": model.state_dict()},
            folder / "vistra.pth",
        )
        torch.save(vistra_outputs(model, inputs), folder / "vistra_out.pt")
        del model
    return results


@pytest.fixture(scope="module")
def upstream_from_vistra(exported, vistra_side, tmp_path_factory):
    """The oracle loads vistra's checkpoints strictly; {name: status}."""
    spec = [
        dict(
            config=str(_path(name)),
            checkpoint=str(folder / "vistra.pth"),
            input=str(folder / "input.pt"),
            out=str(folder / "upstream_from_vistra.pt"),
            cfg_options=list(FAMILIES[name].cfg_options),
        )
        for name, folder in exported.items()
        if "error" not in vistra_side[name]
    ]
    status = _batch("run-batch", spec, tmp_path_factory.mktemp("cls_run") / "run.json")
    return {
        name: status.get(str(folder / "upstream_from_vistra.pt"), vistra_side[name].get("error"))
        for name, folder in exported.items()
    }


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Seeded values for the parameters and BN statistics; other buffers (fixed tables
    such as Swin-V2's relative coordinates, which MMPretrain rebuilds on load) are kept."""
    gen = torch.Generator().manual_seed(seed)
    params = {name for name, _ in model.named_parameters()}
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if key not in params and not key.endswith(("running_mean", "running_var")):
                continue
            if key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif key.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            else:
                fan_in = max(tensor[0].numel(), 1) if tensor.dim() > 1 else 100
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / fan_in**0.5)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_upstream_checkpoint_loads_strictly_into_vistra(name, exported, vistra_side):
    side = vistra_side[name]
    assert "error" not in side, side.get("error")
    ckpt = extract_state_dict(load_checkpoint_file(exported[name] / "upstream.pth"))
    assert side["keys"] == {k: tuple(v.shape) for k, v in ckpt.items()}, (
        "state_dict keys/shapes differ from MMPretrain's"
    )
    rep = side["report"]
    assert (rep.missing, rep.unexpected, rep.mismatched, rep.remapped) == ([], [], [], [])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_upstream_checkpoint_gives_upstream_logits(name, vistra_side):
    assert "error" not in vistra_side[name], vistra_side[name].get("error")
    diff = vistra_side[name]["diff"]
    report(f"cls numeric {name}: upstream -> vistra logits max |diff| {diff['tensor']:.3g}")
    assert diff["tensor"] <= TOLERANCE, diff


@pytest.mark.parametrize("name", list(FAMILIES))
def test_vistra_checkpoint_loads_strictly_into_upstream(name, exported, upstream_from_vistra):
    assert upstream_from_vistra[name] == "ok", upstream_from_vistra[name]
    folder = exported[name]
    got = torch.load(folder / "upstream_from_vistra.pt", weights_only=True)
    diff = max_abs_diff(got, torch.load(folder / "vistra_out.pt", weights_only=True))
    report(
        f"cls numeric {name}: vistra -> upstream (strict) logits max |diff| {diff['tensor']:.3g}"
    )
    assert diff["tensor"] <= TOLERANCE, diff


@pytest.mark.slow
def test_vistra_test_cli_loads_upstream_checkpoint(exported, tmp_path):
    """``vistra test CONFIG upstream.pth`` on MMPretrain's ResNet-50 config: the strict
    load_from path a user takes with a published checkpoint."""
    if "resnet50" not in exported:
        pytest.skip("resnet50 is not among the selected families")
    path = _path("resnet50")
    data = write_imagenet_like(tmp_path / "imagenet", n_train=1, n_val=2, img_size=64)
    out = tmp_path / "preds.pkl"
    options = [
        f"test_dataloader.dataset.data_root={data}",
        "test_dataloader.num_workers=0",
        "test_dataloader.batch_size=2",
    ]
    result = run_cli("test", path, exported["resnet50"] / "upstream.pth", "--work-dir",
                     tmp_path / "w", "--out", out, "--cfg-options", *options, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    assert "Traceback" not in result.output
    records = pickle.loads(out.read_bytes())
    assert len(records) >= 2
    for record in records:
        score = torch.tensor(record["pred_score"])
        assert score.shape == (1000,) and abs(score.sum().item() - 1) < 1e-4
        assert int(score.argmax()) == record["pred_label"]
