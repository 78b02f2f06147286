import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from vistra.registry import VISBACKENDS, RegistryError
from vistra.visualization import LocalVisBackend, TensorboardVisBackend


def test_local_backend_is_lazy(tmp_path):
    LocalVisBackend(save_dir=str(tmp_path / "vis"))
    assert not (tmp_path / "vis").exists()


def test_local_backend_writes_mmengine_layout(tmp_path):
    backend = VISBACKENDS.build({"type": "LocalVisBackend", "save_dir": str(tmp_path)})
    backend.add_config("model = dict(type='ResNet')\n")
    backend.add_scalars({"loss": torch.tensor(0.5), "lr": np.float32(0.25), "iter": 1}, step=1)
    backend.add_scalars({"accuracy/top1": 80.0}, step=3)
    backend.add_scalar("mAP", torch.tensor([0.75]), step=4)
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    backend.add_image("pred", image, step=2)
    backend.close()

    assert (tmp_path / "config.py").read_text() == "model = dict(type='ResNet')\n"
    lines = (tmp_path / "scalars.json").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"loss": 0.5, "lr": 0.25, "iter": 1, "step": 1},
        {"accuracy/top1": 80.0, "step": 3},
        {"mAP": 0.75, "step": 4},
    ]
    saved = np.asarray(Image.open(tmp_path / "vis_image" / "pred_2.png"))
    np.testing.assert_array_equal(saved, image)  # stored as RGB, not channel-swapped


def test_local_backend_keeps_an_explicit_step_and_writes_extra_file(tmp_path):
    backend = LocalVisBackend(save_dir=str(tmp_path))
    backend.add_scalars({"loss": 1.0, "step": 7}, step=99, file_path="extra.json")
    assert json.loads((tmp_path / "scalars.json").read_text()) == {"loss": 1.0, "step": 7}
    assert json.loads((tmp_path / "extra.json").read_text()) == {"loss": 1.0, "step": 7}
    with pytest.raises(ValueError, match="scalar_save_file"):
        backend.add_scalars({"loss": 1.0}, file_path="scalars.json")


def test_local_backend_rejects_unwritable_values_by_key(tmp_path):
    backend = LocalVisBackend(save_dir=str(tmp_path))
    with pytest.raises(TypeError, match="'weird'"):
        backend.add_scalars({"weird": object()}, step=1)
    assert not (tmp_path / "scalars.json").exists()  # nothing half-written


def test_local_backend_checks_file_names(tmp_path):
    with pytest.raises(ValueError, match="scalar_save_file"):
        LocalVisBackend(save_dir=str(tmp_path), scalar_save_file="scalars.txt")
    with pytest.raises(ValueError, match="config_save_file"):
        LocalVisBackend(save_dir=str(tmp_path), config_save_file="config.yaml")


def test_tensorboard_backend_writes_readable_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    backend = VISBACKENDS.build({"type": "TensorboardVisBackend", "save_dir": str(tmp_path / "tb")})
    assert not (tmp_path / "tb").exists()  # lazy: no writer until the first record
    backend.add_scalars({"loss": 0.5, "lr": torch.tensor(0.125)}, step=1)
    backend.add_scalars({"loss": 0.25, "lr": np.float64(0.0625)}, step=2)
    with pytest.warns(UserWarning, match="'name'"):
        backend.add_scalar("name", "not a number", step=2)
    backend.add_image("img", np.full((4, 4, 3), 128, np.uint8), step=1)
    backend.add_config("a = 1\n")
    backend.close()

    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"loss", "lr"}
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 0.5), (2, 0.25)]
    assert [(e.step, e.value) for e in events.Scalars("lr")] == [(1, 0.125), (2, 0.0625)]
    assert events.Tags()["images"] == ["img"]


def test_tensorboard_backend_refuses_step_key(tmp_path):
    backend = TensorboardVisBackend(save_dir=str(tmp_path))
    with pytest.raises(ValueError, match="step"):
        backend.add_scalars({"loss": 1.0, "step": 3}, step=3)


def test_unknown_backend_name_suggests_the_close_one(tmp_path):
    with pytest.raises(RegistryError, match="TensorboardVisBackend"):
        VISBACKENDS.build({"type": "TensorBoardVisBackend", "save_dir": str(tmp_path)})


def test_local_backend_accepts_a_config_object(tmp_path):
    from vistra.config.config import Config

    backend = LocalVisBackend(save_dir=str(tmp_path))
    backend.add_config(Config(dict(a=1, b=dict(c=[1, 2]))))
    namespace: dict = {}
    exec((tmp_path / "config.py").read_text(), {"dict": dict}, namespace)  # reloadable text
    assert namespace == {"a": 1, "b": {"c": [1, 2]}}
    with pytest.raises(TypeError, match="pretty_text"):
        backend.add_config(42)
