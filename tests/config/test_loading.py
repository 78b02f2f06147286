"""Config.fromfile: _base_ chains, merging, _delete_, errors that name the file and line."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from vistra.config import Config, ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
LEVEL4 = CONFIGS / "chain" / "sub" / "deeper" / "level4.py"


# ------------------------------------------------------------------ the four-level fixture chain
def test_four_level_chain_merges_every_level():
    cfg = Config.fromfile(LEVEL4)
    # level 0 (py model base) + level 2 (depth 50, in_channels) + level 3 + level 4 (depth 101)
    assert cfg.model.type == "ImageClassifier"
    assert cfg.model.backbone.to_dict() == {
        "type": "ResNet",
        "depth": 101,
        "out_indices": (3,),
        "norm_cfg": {"type": "BN", "requires_grad": True},
    }
    assert cfg.model.head.num_classes == 10 and cfg.model.head.in_channels == 2048
    assert cfg.model.head.topk == (1, 5)  # tuples stay tuples through the chain
    # level 0 (yaml) + level 4 dict merge
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.train_dataloader.num_workers == 2
    assert cfg.train_dataloader.sampler.shuffle is True
    # level 0 (json), then _delete_ at level 3 drops momentum and weight_decay
    assert cfg.optim_wrapper.to_dict() == {
        "type": "OptimWrapper",
        "optimizer": {"type": "AdamW", "lr": 0.001},
    }
    # a list in a child replaces the base list
    assert cfg.param_scheduler == [{"type": "CosineAnnealingLR", "by_epoch": True, "T_max": 100}]
    assert cfg.train_cfg.max_epochs == 100
    assert cfg.default_hooks.logger.interval == 100 and cfg.load_from is None
    # level 4 extras: _base_ variable access, {{_base_.x}}, predefined variable
    assert cfg.base_depth == 50
    assert cfg.head_copy.in_channels == 2048 and cfg.head_copy.num_classes == 10
    assert cfg.work_dir == "./work_dirs/level4"
    assert "_base_" not in cfg and "_delete_" not in str(cfg.to_dict())


def test_chain_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Config.fromfile(os.path.relpath(LEVEL4, tmp_path)).model.backbone.depth == 101


def test_text_holds_every_file_read_bases_first():
    text = Config.fromfile(LEVEL4).text
    order = [
        "tiny_classifier.py",
        "tiny_dataset.yaml",
        "sgd.json",
        "default_runtime.py",
        "level1.py",
        "level4.py",
    ]
    positions = [text.index(name) for name in order]
    assert positions == sorted(positions)


def test_filename_is_kept_as_given():
    assert Config.fromfile(str(LEVEL4)).filename == str(LEVEL4)


# ------------------------------------------------------------------ merge rules
def test_base_list_and_recursive_merge(write):
    write("a.py", "a = dict(x=1, y=dict(z=2))\n")
    write("b.yaml", "b: [1, 2]\n")
    child = write("child.py", "_base_ = ['a.py', 'b.yaml']\na = dict(y=dict(w=3))\n")
    cfg = Config.fromfile(child)
    assert cfg.to_dict() == {"a": {"x": 1, "y": {"z": 2, "w": 3}}, "b": [1, 2]}


def test_non_dict_child_value_replaces_base_value_lists_included(write):
    write("base.py", "steps = [1, 2, 3]\nname = 'a'\nopt = dict(lr=1)\n")
    child = write("child.py", "_base_ = './base.py'\nsteps = [9]\nname = None\nopt = 5\n")
    cfg = Config.fromfile(child)
    assert cfg.steps == [9] and cfg.name is None and cfg.opt == 5


def test_delete_drops_the_base_dict_first_and_never_survives(write):
    write("base.py", "opt = dict(type='SGD', lr=0.1, momentum=0.9)\n")
    child = write(
        "child.py",
        """
        _base_ = 'base.py'
        opt = dict(_delete_=True, type='Adam', lr=1e-3)
        new = dict(_delete_=True, inner=dict(_delete_=True, k=1))
        """,
    )
    cfg = Config.fromfile(child)
    assert cfg.opt.to_dict() == {"type": "Adam", "lr": 1e-3}
    assert cfg.new.to_dict() == {"inner": {"k": 1}}


def test_delete_lets_a_child_dict_replace_a_base_non_dict(write):
    write("base.py", "scale = 5\n")
    child = write("child.py", "_base_ = 'base.py'\nscale = dict(_delete_=True, h=1)\n")
    assert Config.fromfile(child).scale == {"h": 1}


def test_child_dict_over_base_non_dict_is_an_error_suggesting_delete(write):
    write("base.py", "scale = [224, 224]\n")
    child = write("child.py", "_base_ = 'base.py'\nscale = dict(h=1)\n")
    with pytest.raises(ConfigError, match=r"'scale' is a dict.*list.*_delete_=True") as e:
        Config.fromfile(child)
    assert str(child) in str(e.value)


def test_duplicate_key_in_two_bases_names_key_and_both_files(write):
    a = write("a.py", "model = dict(x=1)\n")
    b = write("b.json", '{"model": {"y": 2}}')
    child = write("child.py", "_base_ = ['a.py', 'b.json']\n")
    with pytest.raises(ConfigError, match="duplicate key 'model'") as e:
        Config.fromfile(child)
    assert str(a) in str(e.value) and str(b) in str(e.value)


def test_nested_base_paths_are_relative_to_each_file(write):
    write("common/base.py", "v = 1\n")
    write("common/mid.yml", "_base_: base.py\nw: 2\n")
    child = write("x/y/child.json", '{"_base_": "../../common/mid.yml", "u": 3}')
    assert Config.fromfile(child).to_dict() == {"v": 1, "w": 2, "u": 3}


def test_base_may_be_written_with_an_expression_of_literals(write):
    write("a.py", "a = 1\n")
    write("b.py", "b = 2\n")
    child = write("c.py", "_base_ = ['a.py'] + ['b.py']\n")
    assert Config.fromfile(child).to_dict() == {"a": 1, "b": 2}


def test_python_config_keeps_only_plain_variables(write):
    path = write(
        "c.py",
        """
        import os
        from os.path import join
        def helper(x):
            return x * 2
        class Thing:
            pass
        __private = 1
        size = helper(3)
        path = join('a', 'b')
        shape = (1, 2)
        single = (3,)
        """,
    )
    cfg = Config.fromfile(path)
    assert cfg.to_dict() == {"size": 6, "path": "a/b", "shape": (1, 2), "single": (3,)}


def test_openmmlab_imports_bind_stand_ins_that_fail_only_when_used(write):
    # MMPretrain's _base_/models/replknet-31B_in1k.py imports build_classifier for a
    # __main__ demo: reading it needs no MMPretrain, and the name does not reach the config
    base = write(
        "base.py",
        """
        from mmpretrain.models import build_classifier
        import mmseg.models
        import json
        model = dict(type='ImageClassifier', tag=json.dumps(1))
        if __name__ == '__main__':
            build_classifier(model)
        """,
    )
    cfg = Config.fromfile(write("child.py", "_base_ = ['base.py']\n"))
    assert cfg.to_dict() == {"model": {"type": "ImageClassifier", "tag": "1"}}
    used = write(
        "used.py", "from mmpretrain.models import build_classifier\nm = build_classifier(1)\n"
    )
    with pytest.raises(ConfigError, match=r"used.py:2: .*calls mmpretrain.models.build_classifier"):
        Config.fromfile(used)
    assert base.is_file()


def test_deprecation_key_warns_and_is_removed(write):
    path = write("old.py", "_deprecation_ = dict(expected='new.py')\na = 1\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = Config.fromfile(path)
    assert "_deprecation_" not in cfg
    assert any("Please use new.py" in str(w.message) for w in caught)


# ------------------------------------------------------------------ errors
def test_missing_base_names_absolute_path_tried_and_the_asking_file(write):
    child = write("sub/child.py", "_base_ = '../nowhere/base.py'\n")
    tried = os.path.normpath(child.parent / "../nowhere/base.py")
    with pytest.raises(ConfigError) as e:
        Config.fromfile(child)
    message = str(e.value)
    assert "'../nowhere/base.py' not found" in message
    assert tried in message and str(child) in message


def test_python_syntax_error_names_file_and_line(write):
    path = write("bad.py", "a = 1\nb = dict(x=1,\nc = 3 3\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+:\d+: invalid Python syntax"):
        Config.fromfile(path)
    path = write("bad2.py", "a = 1\n\nb = 2 +* 3\n")
    with pytest.raises(ConfigError, match=rf"{path}:3:\d+: invalid Python syntax"):
        Config.fromfile(path)


def test_python_syntax_error_in_a_base_names_the_base(write):
    base = write("base.py", "x = (\n")
    child = write("child.py", "_base_ = 'base.py'\n")
    with pytest.raises(ConfigError, match=rf"{base}:1:"):
        Config.fromfile(child)


def test_python_runtime_error_names_file_and_line(write):
    path = write("bad.py", "a = 1\nb = undefined_name + 1\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: NameError: .*undefined_name"):
        Config.fromfile(path)


def test_json_and_yaml_errors_name_file_and_line(write):
    path = write("bad.json", '{\n  "a": 1,\n  "b": \n}\n')
    with pytest.raises(ConfigError, match=rf"{path}:4:\d+: invalid JSON"):
        Config.fromfile(path)
    path = write("bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+:\d+: invalid YAML"):
        Config.fromfile(path)
    path = write("list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping of names to values"):
        Config.fromfile(path)


def test_unsupported_extension_and_missing_file(write, tmp_path):
    path = write("cfg.toml", "a = 1\n")
    with pytest.raises(ConfigError, match=r"unsupported config file extension '\.toml'.*\.py"):
        Config.fromfile(path)
    with pytest.raises(ConfigError, match="config file not found: .*missing.py"):
        Config.fromfile(tmp_path / "missing.py")


def test_circular_bases_are_reported(write):
    write("a.py", "_base_ = 'b.py'\n")
    write("b.py", "_base_ = 'a.py'\n")
    with pytest.raises(ConfigError, match=r"circular _base_ inheritance: .*a\.py -> .*b\.py"):
        Config.fromfile(write("c.py", "_base_ = 'a.py'\n"))


def test_base_that_is_not_a_path_is_an_error(write):
    with pytest.raises(ConfigError, match=r"c\.py:1: _base_ must be a path"):
        Config.fromfile(write("c.py", "_base_ = [1]\n"))
    with pytest.raises(ConfigError, match=r"c2\.py:2: _base_ must be written as literal paths"):
        Config.fromfile(write("c2.py", "name = 'a.py'\n_base_ = name\n"))
