"""Classifiers from MMPretrain's own configs compute MMPretrain's numbers, both ways.

upstream -> vistra: the oracle builds the model of the config with MMPretrain, gives it
seeded random weights and BatchNorm statistics and writes the checkpoint, an input batch
and its logits; vistra builds the *same config file*, loads that checkpoint as a user
would (``init_cfg=dict(type='Pretrained', ...)``, the strict loader, ``vistra test``) and
must give the same logits. vistra -> upstream: a vistra model with other random weights,
saved by vistra's checkpoint writer, loads strictly into MMPretrain (``models run``) and
gives vistra's logits.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from e2e_support import run_cli
from fake_data import write_imagenet_like
from numeric_support import build_vistra_model, max_abs_diff, vistra_outputs
from oracle_support import config_tree, report, run_oracle, run_oracle_json

from vistra.checkpoint import load_state_dict, save_checkpoint

TOLERANCE = 1e-4  # float32 logits
# name: (config, input size, how vistra loads the upstream checkpoint); ViT-B at 64 x 64
# also checks the resizing of its 14 x 14 position embedding to 4 x 4
CASES = {
    "resnet50": ("resnet/resnet50_8xb32_in1k.py", (64, 64), "init_cfg"),
    "vit-b": ("vision_transformer/vit-base-p16_64xb64_in1k.py", (64, 64), "load_state_dict"),
}


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    """(name, config path, folder with upstream.pth / input.pt / upstream_out.pt, keys)."""
    name = request.param
    config, size, _ = CASES[name]
    path = config_tree("mmpretrain") / config
    folder = tmp_path_factory.mktemp(name)
    keys = run_oracle_json(
        "models", "export", path, folder, "--size", *map(str, size), "--seed", "3"
    )
    return name, path, folder, keys


def _load_upstream(name: str, path, folder) -> torch.nn.Module:
    ckpt = folder / "upstream.pth"
    if CASES[name][2] == "init_cfg":
        model = build_vistra_model(
            path, {"model.init_cfg": dict(type="Pretrained", checkpoint=str(ckpt))}
        )
        model.init_weights()
        return model.eval()
    model = build_vistra_model(path)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    report_ = load_state_dict(model, state, source=str(ckpt))
    assert not (report_.unset or report_.unexpected), report_.table()
    return model.eval()


def test_upstream_checkpoint_gives_upstream_logits(exported):
    name, path, folder, keys = exported
    model = _load_upstream(name, path, folder)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == keys, "state_dict keys/shapes differ from MMPretrain's"
    inputs = torch.load(folder / "input.pt", weights_only=True)
    upstream = torch.load(folder / "upstream_out.pt", weights_only=True)
    diff = max_abs_diff(vistra_outputs(model, inputs), upstream)
    report(f"{name}: upstream -> vistra ({CASES[name][2]}) logits max |diff| {diff['tensor']:.3g}")
    assert diff["tensor"] <= TOLERANCE, diff


def _randomise(model: torch.nn.Module, seed: int) -> None:
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


def test_vistra_checkpoint_loads_strictly_into_upstream(exported, tmp_path):
    name, path, folder, _ = exported
    model = build_vistra_model(path)
    _randomise(model, seed=11)
    ckpt = save_checkpoint(
        {"meta": {"config": path.name}, "state_dict": model.state_dict()}, tmp_path / "vistra.pth"
    )
    out = tmp_path / "upstream_out.pt"
    run_oracle("models", "run", path, ckpt, folder / "input.pt", out)  # strict load
    inputs = torch.load(folder / "input.pt", weights_only=True)
    diff = max_abs_diff(vistra_outputs(model, inputs), torch.load(out, weights_only=True))
    report(f"{name}: vistra -> upstream (strict) logits max |diff| {diff['tensor']:.3g}")
    assert diff["tensor"] <= TOLERANCE, diff


@pytest.mark.slow
def test_vistra_test_cli_loads_upstream_checkpoint(exported, tmp_path):
    name, path, folder, _ = exported
    if name != "resnet50":
        pytest.skip("one model through the CLI is enough")
    data = write_imagenet_like(tmp_path / "imagenet", n_train=1, n_val=2, img_size=64)
    out = tmp_path / "preds.pkl"
    options = [
        f"test_dataloader.dataset.data_root={data}",
        "test_dataloader.num_workers=0",
        "test_dataloader.batch_size=2",
    ]
    result = run_cli("test", path, folder / "upstream.pth", "--work-dir", tmp_path / "w",
                     "--out", out, "--cfg-options", *options, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    assert "Traceback" not in result.output
    records = pickle.loads(out.read_bytes())
    assert len(records) >= 2
    for record in records:
        score = torch.tensor(record["pred_score"])
        assert score.shape == (1000,) and abs(score.sum().item() - 1) < 1e-4
        assert int(score.argmax()) == record["pred_label"]
