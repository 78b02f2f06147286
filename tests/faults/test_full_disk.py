"""A full disk during a checkpoint write (issue #15): training runs with its work dir on a
real, small tmpfs mounted in a private mount namespace that the test creates
(``unshare -rm``). After iteration 2's checkpoint is safe, the file system is filled to
half a checkpoint's worth of free space (or to none: then the text log cannot be written
either), so iteration 3's checkpoint cannot be written.

The run must fail with one ``error:`` line naming the file and the cause, no traceback,
the previous checkpoint kept and still named by ``last_checkpoint``, no temporary file
left; once space is freed, ``--resume`` goes on from the kept checkpoint.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from fault_support import (
    CHECKPOINT_KEYS,
    TRACEBACK,
    child_env,
    load,
    pointer_target,
    report,
    train_command,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DISK_CFG = """
train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1),
    visualization=dict(type='VisualizationHook', enable=False))
custom_hooks = [dict(type='FillDiskHook', at_iter=3, filler='{mnt}/filler', once_file='{root}/filled',
                     leave={leave})]
"""


def _namespace_shell(mnt: Path, script: str, timeout: int) -> subprocess.CompletedProcess:
    """Run ``script`` with a fresh tmpfs on ``mnt``, in a mount namespace of its own (the
    tmpfs goes away with the namespace)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed: cannot create a private tmpfs")
    return subprocess.run(
        [
            unshare,
            "-rm",
            "sh",
            "-c",
            f"mount -t tmpfs -o size=16m tmpfs {shlex.quote(str(mnt))} && {script}",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1", **child_env()),
    )


@pytest.mark.parametrize(
    "leave", [0.5, 0.0], ids=["half-a-checkpoint-free", "nothing-free"]
)  # nothing free: the log file cannot be written either
def test_full_disk_fails_the_save_with_one_line_and_keeps_the_previous_checkpoint(tmp_path, leave):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    probe = _namespace_shell(mnt, "true", timeout=30)
    if probe.returncode != 0:
        pytest.skip(
            "cannot mount a tmpfs in a private mount namespace here (unshare -rm ... mount -t "
            f"tmpfs): {probe.stderr.strip()[:200]}"
        )
    cfg = write_config(
        tmp_path / "disk.py", extra=DISK_CFG.format(mnt=mnt, root=tmp_path, leave=leave)
    )
    work, copy = mnt / "work", tmp_path / "work_copy"
    q = shlex.quote
    train = " ".join(map(q, train_command(cfg, work)))
    script = (
        f"cd {q(str(tmp_path))}; {train} > out.txt 2> err.txt; echo $? > rc.txt; "
        f"cp -a {q(str(work))} {q(str(copy))}; rm -f {q(str(mnt / 'filler'))}; "
        f"{train} --resume > resumed.txt 2>&1; echo $? > resumed_rc.txt"
    )
    ran = _namespace_shell(mnt, script, timeout=240)
    assert ran.returncode == 0, ran.stderr
    out, err = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert (tmp_path / "filled").exists(), out + err  # the disk was filled at iteration 3

    rc = int((tmp_path / "rc.txt").read_text())
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert rc != 0, out + err
    assert TRACEBACK not in out + err, err[-3000:]
    assert last.startswith("error: cannot write checkpoint "), last
    assert str(work / "iter_3.pth") in last and "no space left on device" in last, last
    assert "MB needed" in last and "the previous checkpoint iter_2.pth is kept" in last, last

    assert pointer_target(copy).name == "iter_2.pth"
    kept = load(copy / "iter_2.pth")
    assert CHECKPOINT_KEYS <= set(kept) and kept["meta"]["iter"] == 2
    assert not (copy / "iter_3.pth").exists()
    leftovers = sorted(p.name for p in copy.iterdir() if p.name.endswith(".tmp"))
    assert leftovers == [], leftovers

    resumed = (tmp_path / "resumed.txt").read_text()
    assert int((tmp_path / "resumed_rc.txt").read_text()) == 0, resumed[-3000:]
    assert "resumed from" in resumed and "iter_2.pth" in resumed
    report(
        f"full disk ({leave:.0%} of a checkpoint free): the save failed cleanly (exit code {rc}), the previous checkpoint was kept "
        f"and resumed from; the user sees: {last}"
    )
