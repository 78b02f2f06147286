"""Checkpoint files: atomic save, safe load, URLs, finding the latest."""

import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from vistra.checkpoint import (
    CheckpointError,
    find_latest_checkpoint,
    load_checkpoint_file,
    save_checkpoint,
    write_text_atomic,
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
        "from vistra.checkpoint import save_checkpoint\n"
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


# A child whose files may not grow past 256 kB (RLIMIT_FSIZE): a real EFBIG from the OS,
# as a full disk or a quota gives ENOSPC/EDQUOT, on the same code path.
_SIZE_LIMITED = """
import resource, signal, sys
from pathlib import Path
import torch
from vistra.checkpoint import CheckpointError, save_checkpoint, write_text_atomic
d = Path(sys.argv[1])
save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, d / "epoch_1.pth")
write_text_atomic(d / "last_checkpoint", "epoch_1.pth")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error instead of a killed process
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))
for write in (
    lambda: save_checkpoint({"state_dict": {"w": torch.ones(500_000)}}, d / "epoch_2.pth"),
    lambda: write_text_atomic(d / "last_checkpoint", "x" * 300_000),
):
    try:
        write()
    except CheckpointError as exc:
        print(exc)
"""


def test_failed_write_is_one_line_and_keeps_the_previous_checkpoint(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _SIZE_LIMITED, str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    save_error, text_error = proc.stdout.strip().splitlines()
    assert save_error == (
        f"cannot write checkpoint {tmp_path / 'epoch_2.pth'}: file too large (2.0 MB needed"
        + save_error.split("MB needed", 1)[1]
    )
    assert save_error.endswith("; the previous checkpoint epoch_1.pth is kept")
    assert text_error == (
        f"cannot write {tmp_path / 'last_checkpoint'}: file too large; "
        "it keeps its previous content"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pth", "last_checkpoint"]
    assert (tmp_path / "last_checkpoint").read_text() == "epoch_1.pth"
    assert torch.equal(
        load_checkpoint_file(tmp_path / "epoch_1.pth")["state_dict"]["w"], torch.zeros(3)
    )


def test_unwritable_directory_is_a_checkpoint_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(
        CheckpointError, match=r"cannot write checkpoint .*file/x/epoch_1.pth: not a directory"
    ):
        save_checkpoint({"state_dict": {}}, tmp_path / "file" / "x" / "epoch_1.pth")


def test_a_save_removes_temp_files_of_killed_writes_of_the_same_file(tmp_path):
    stale = tmp_path / ".epoch_1.pth.k1ll3d.tmp"
    other = tmp_path / ".epoch_2.pth.k1ll3d.tmp"  # another file's: not this save's business
    for p in (stale, other):
        p.write_bytes(b"half a checkpoint")
        os.utime(p, (time.time() - 60, time.time() - 60))
    save_checkpoint({"state_dict": {}}, tmp_path / "epoch_1.pth")
    assert not stale.exists() and other.exists()
    write_text_atomic(tmp_path / "last_checkpoint", "epoch_1.pth")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".epoch_2.pth.k1ll3d.tmp",
        "epoch_1.pth",
        "last_checkpoint",
    ]


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
