import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from vistra.engine.checkpoint import (
    CheckpointError,
    find_latest_checkpoint,
    load_checkpoint_file,
    load_pretrained,
    load_state_dict,
    revise_keys,
    save_checkpoint,
)


def test_atomic_save_leaves_no_temp_files_and_loads_weights_only(tmp_path):
    path = save_checkpoint(
        {"state_dict": {"w": torch.ones(2)}, "meta": {"epoch": 1}}, tmp_path / "epoch_1.pth"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_1.pth"]
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["meta"]["epoch"] == 1


def test_killed_write_keeps_previous_checkpoint(tmp_path):
    target = tmp_path / "epoch_1.pth"
    save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    # A child process starts writing a big checkpoint over the same path and is killed mid-write.
    code = (
        "import torch, sys\n"
        "from vistra.engine.checkpoint import save_checkpoint\n"
        "print('start', flush=True)\n"
        "save_checkpoint({'state_dict': {'w': torch.ones(60_000_000)}}, sys.argv[1])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "start"
    # wait until the temp file appears, then kill
    deadline = time.time() + 30
    while time.time() < deadline and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint_file(target)
    assert torch.equal(ckpt["state_dict"]["w"], torch.zeros(3))


def test_unsafe_pickle_is_refused_with_opt_in_hint(tmp_path, monkeypatch):
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {}, "obj": pickle.Pickler}, path)  # a class object: not weights-only
    with pytest.raises(CheckpointError, match="VISTRA_ALLOW_UNSAFE_LOAD"):
        load_checkpoint_file(path)
    monkeypatch.setenv("VISTRA_ALLOW_UNSAFE_LOAD", "1")
    assert "obj" in load_checkpoint_file(path)


def test_missing_file_error_names_path(tmp_path):
    save_checkpoint({"state_dict": {}}, tmp_path / "epoch_1.pth")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(tmp_path / "epoch_9.pth")
    assert "epoch_9.pth" in str(info.value) and "epoch_1.pth" in str(info.value)


def test_find_latest_skips_corrupt_newest(tmp_path, caplog):
    assert find_latest_checkpoint(tmp_path) is None
    save_checkpoint({"state_dict": {}}, tmp_path / "epoch_1.pth")
    time.sleep(0.01)
    save_checkpoint({"state_dict": {}}, tmp_path / "epoch_2.pth")
    (tmp_path / "last_checkpoint").write_text("epoch_2.pth")
    assert find_latest_checkpoint(tmp_path) == tmp_path / "epoch_2.pth"
    (tmp_path / "epoch_2.pth").write_bytes(b"truncated")
    with caplog.at_level("WARNING", logger="vistra"):
        assert find_latest_checkpoint(tmp_path) == tmp_path / "epoch_1.pth"
    assert "epoch_2.pth is corrupt" in caplog.text


def test_load_report_lists_every_kind_of_key():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    state = {"0.weight": torch.zeros(3, 4), "1.weight": torch.zeros(5, 3), "extra": torch.zeros(1)}
    report = load_state_dict(model, state, source="x.pth")
    assert report.loaded == ["0.weight"]
    assert report.unexpected == ["extra"]
    assert report.mismatched == [("1.weight", (5, 3), (2, 3))]
    assert sorted(report.missing) == ["0.bias", "1.bias"]
    assert set(report.unset) == {"0.bias", "1.bias", "1.weight"}
    table = report.table()
    for word in ("loaded", "missing", "unexpected", "shape mismatch", "1.weight"):
        assert word in table


def test_load_report_table_is_aligned_when_no_names_are_listed():
    model = nn.Linear(2, 2)
    table = load_state_dict(model, model.state_dict(), source="x.pth").table()
    lines = table.splitlines()[1:]
    assert len({len(line) for line in lines}) == 1, table  # every border and row as wide
    assert "| names |" in lines[1] and lines[0].endswith("-------+")


def test_load_pretrained_with_prefix(tmp_path):
    src = nn.Sequential(nn.Linear(2, 2))
    torch.save(
        {"state_dict": {f"module.backbone.{k}": v for k, v in src.state_dict().items()}},
        tmp_path / "p.pth",
    )
    dst = nn.Sequential(nn.Linear(2, 2))
    report = load_pretrained(dst, str(tmp_path / "p.pth"), prefix="backbone.")
    assert not report.unset and torch.equal(dst[0].weight, src[0].weight)
    with pytest.raises(CheckpointError, match="prefix"):
        load_pretrained(dst, str(tmp_path / "p.pth"), prefix="head.")


def test_url_loads_through_hub_cache(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    payload = tmp_path / "w.pth"
    torch.save({"state_dict": {"w": torch.arange(3)}}, payload)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()[:8]
    cache = tmp_path / "home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / f"w-{digest}.pth").write_bytes(payload.read_bytes())
    ckpt = load_checkpoint_file(f"https://example.invalid/models/w-{digest}.pth")
    assert torch.equal(ckpt["state_dict"]["w"], torch.arange(3))
    with pytest.raises(CheckpointError, match="place the file at"):
        load_checkpoint_file("https://example.invalid/models/other-deadbeef.pth")


def test_revise_keys_strips_module_prefix():
    assert list(revise_keys({"module.a.b": 1, "c": 2})) == ["a.b", "c"]


def test_pretrained_that_loads_nothing_is_an_error(tmp_path):
    """A checkpoint of another model (or a wrong prefix) must not leave a silently random
    backbone behind a warning."""
    other = {"state_dict": {"backbone.conv.weight": torch.zeros(2, 2)}}
    path = tmp_path / "other.pth"
    torch.save(other, path)
    with pytest.raises(CheckpointError, match="has no weight for Linear.*another model"):
        load_pretrained(nn.Linear(2, 2), str(path), prefix="backbone.")
