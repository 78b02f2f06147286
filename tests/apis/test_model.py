"""get_model / list_models over the model index `vistra list-models` reads."""

from __future__ import annotations

import pytest
import torch

from vistra.apis import get_model, list_models
from vistra.checkpoint import CheckpointError
from vistra.model_index import ModelIndexError

NAME = "resnet18_8xb32_in1k"

pytestmark = pytest.mark.slow  # reads a thousand metafile entries, builds a ResNet-18


@pytest.fixture(scope="module", autouse=True)
def needs_index():
    if NAME not in list_models("resnet18"):
        pytest.skip("no MMPretrain model index installed (tools/upstream/install.sh)")


def test_list_models_by_substring_and_glob():
    assert NAME in list_models("resnet18")
    assert list_models("resnet18*in1k") == [NAME]
    assert NAME in list_models()


def test_unknown_name_says_what_is_close():
    with pytest.raises(ModelIndexError, match=f"did you mean '{NAME}'"):
        get_model("resnet18_8xb32_inlk")


def test_pretrained_true_uses_the_published_checkpoint_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY"):  # no network: a refused connection at once
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    cached = tmp_path / "hub" / "checkpoints" / "resnet18_8xb32_in1k_20210831-fbbb1da6.pth"
    with pytest.raises(CheckpointError, match="place the file at") as info:
        get_model(NAME, pretrained=True)
    assert str(cached) in str(info.value)
    model = get_model(NAME)
    assert not model.training and len(model.dataset_meta["classes"]) == 1000
    weights = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {}, "state_dict": weights}, cached)
    loaded = get_model(NAME, pretrained=True)
    torch.testing.assert_close(loaded.state_dict()["head.fc.weight"], weights["head.fc.weight"])
