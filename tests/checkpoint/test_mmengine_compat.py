"""Safe loading of what MMEngine checkpoints pickle, without MMEngine.

The files are written in a subprocess that puts look-alike ``mmengine`` modules in its
``sys.modules`` (pickle records classes by module and name), so this process never holds
anything named ``mmengine``; tests/upstream/test_mmengine_checkpoint.py does the same with
files of a real MMEngine run.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from vistra.checkpoint import CheckpointError, is_mmengine_checkpoint, load_checkpoint_file
from vistra.checkpoint import mmengine_compat as compat
from vistra.engine.schedulers import LinearLR, MultiStepLR

# MMEngine's pickled layout: HistoryBuffer.__dict__ with its methods in statistics_methods
# (protocol 2 pickles them as getattr(HistoryBuffer, 'min')), ConfigDict as ConfigDict(dict),
# numpy arrays and scalars, Counter milestones
WRITER = """
import sys, types, collections
import numpy as np, torch

def module(name):
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    return mod

for name in ('mmengine', 'mmengine.logging', 'mmengine.config'):
    module(name)
hb_mod, cfg_mod = module('mmengine.logging.history_buffer'), module('mmengine.config.config')

class HistoryBuffer:
    def __init__(self, values):
        self.max_length = 1000000
        self._log_history = np.array(values)
        self._count_history = np.ones(len(values), dtype=np.int64)
        self.statistics_methods = {'min': HistoryBuffer.min, 'mean': HistoryBuffer.mean}
    def min(self): pass
    def mean(self): pass
HistoryBuffer.__module__ = hb_mod.__name__
hb_mod.HistoryBuffer = HistoryBuffer

class ConfigDict(dict):
    def __reduce_ex__(self, proto):
        return (ConfigDict, (dict(self),))
ConfigDict.__module__ = cfg_mod.__name__
cfg_mod.ConfigDict = ConfigDict

def checkpoint(kind):
    ckpt = {
        'meta': {'epoch': 1, 'iter': 2, 'mmengine_version': '0.10.7', 'seed': 0},
        'state_dict': collections.OrderedDict(w=torch.ones(2)),
        'message_hub': {
            'log_scalars': {'train/loss': HistoryBuffer([0.5, 0.25])},
            'runtime_info': collections.OrderedDict(eta=np.float64(1.5), best_score=np.float32(0.75)),
            'resumed_keys': {},
        },
        'param_schedulers': [{'milestones': collections.Counter([1]), 'gamma': 0.1}],
        'cfg': ConfigDict(a=1, b=ConfigDict(c=[1, 2])),
    }
    if kind == 'evil_getattr':  # getattr on something that is not a stand-in
        class Evil:
            def __reduce__(self):
                return (getattr, (collections.OrderedDict, 'fromkeys'))
        ckpt['evil'] = Evil()
    elif kind == 'evil_global':
        import subprocess
        class Evil:
            def __reduce__(self):
                return (subprocess.Popen, (['true'],))
        ckpt['evil'] = Evil()
    return ckpt


for kind in sys.argv[2:]:
    torch.save(checkpoint(kind), f"{sys.argv[1]}/{kind}.pth")
"""


KINDS = ("plain", "evil_getattr", "evil_global")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mmengine_like")
    subprocess.run([sys.executable, "-c", WRITER, str(folder), *KINDS], check=True, timeout=120)
    return {kind: folder / f"{kind}.pth" for kind in KINDS}


def test_mmengine_objects_load_weights_only_as_stand_ins(files):
    path = files["plain"]
    with pytest.raises(Exception, match="HistoryBuffer"):
        torch.load(path, weights_only=True)  # torch alone refuses it
    before = set(map(repr, torch.serialization.get_safe_globals()))
    ckpt = load_checkpoint_file(path)
    assert set(map(repr, torch.serialization.get_safe_globals())) == before  # scoped allow-list
    buffer = ckpt["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(buffer, compat.HistoryBuffer)
    np.testing.assert_array_equal(buffer._log_history, [0.5, 0.25])
    assert buffer.statistics_methods["min"] is compat.HistoryBuffer.min
    assert buffer.current() == 0.25 and buffer.mean() == pytest.approx(0.375)
    assert ckpt["message_hub"]["runtime_info"]["eta"] == 1.5
    assert isinstance(ckpt["cfg"], compat.ConfigDict) and ckpt["cfg"].b.c == [1, 2]
    assert ckpt["param_schedulers"][0]["milestones"] == Counter([1])
    assert is_mmengine_checkpoint(ckpt)
    assert "mmengine" not in sys.modules


@pytest.mark.parametrize("kind", ["evil_getattr", "evil_global"])
def test_anything_else_is_still_refused(files, kind):
    with pytest.raises(CheckpointError, match="safe load refuses"):
        load_checkpoint_file(files[kind])


def test_vistra_checkpoints_are_not_taken_for_mmengine_ones():
    assert not is_mmengine_checkpoint({"meta": {"vistra_version": "1"}, "loop_state": {}})
    assert not is_mmengine_checkpoint({"state_dict": {}})
    assert is_mmengine_checkpoint({"meta": {"mmengine_version": "0.10.7", "epoch": 1}})


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)


def test_scheduler_state_maps_mmengine_fields_and_counter_milestones():
    mine = MultiStepLR(_optimizer(), milestones=[1], by_epoch=True, begin=0, end=2)
    state = mine.state_dict()
    state["milestones"], state["last_step"] = Counter({1: 1}), 1
    mapped, why = compat.scheduler_state(mine, state)
    assert why == "" and mapped["milestones"] == {1: 1} and type(mapped["milestones"]) is dict
    assert mapped["last_step"] == 1


def test_scheduler_state_refuses_another_window_or_kind():
    mine = MultiStepLR(_optimizer(), milestones=[1], by_epoch=True, begin=0, end=2)
    state = dict(mine.state_dict(), end=5)
    assert compat.scheduler_state(mine, state) == (
        None,
        "MultiStepLR: end is 5 in the file, 2 here",
    )
    linear = LinearLR(_optimizer(), start_factor=0.5, by_epoch=True, begin=0, end=2)
    mapped, why = compat.scheduler_state(mine, linear.state_dict())
    assert mapped is None and "milestones" in why


def test_runtime_info_keeps_only_what_vistra_reads():
    hub = {"runtime_info": {"best_score": np.float32(0.5), "eta": 3.0, "cfg": "..."}}
    assert compat.runtime_info(hub) == {"best_score": 0.5}


def test_resume_line_says_what_is_not_restored():
    line = compat.describe_resume({"meta": {"mmengine_version": "0.10.7"}, "optimizer": {}}, 1, 2)
    assert "MMEngine 0.10.7" in line and "optimizer" in line and "1/2 param schedulers" in line
    assert "RNG" in line and "not an exact continuation" in line and "\n" not in line


def test_version_drops_the_git_hash_mmengine_appends():
    meta = {"meta": {"mmengine_version": "0.10.7" + "4ff37586a545ae1bbdef003b9809e7f7e3b739ef"}}
    assert compat.mmengine_version(meta) == "0.10.7"
    assert compat.mmengine_version({"meta": {"mmengine_version": "0.10.7"}}) == "0.10.7"
