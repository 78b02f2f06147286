"""Placeholders: predefined variables, environment variables, _base_ references."""

from __future__ import annotations

import pytest

from vistra.config import Config, ConfigError


# ------------------------------------------------------------------ predefined variables
def test_predefined_variables_with_and_without_spaces(write, tmp_path):
    path = write(
        "runs/exp_1.py",
        """
        d = '{{fileDirname}}'
        b = '{{ fileBasename }}'
        n = '{{  fileBasenameNoExtension  }}'
        e = '{{fileExtname}}'
        work_dir = './work_dirs/{{ fileBasenameNoExtension }}'
        """,
    )
    cfg = Config.fromfile(path)
    assert cfg.d == str(tmp_path / "runs").replace("\\", "/")
    assert (cfg.b, cfg.n, cfg.e) == ("exp_1.py", "exp_1", ".py")
    assert cfg.work_dir == "./work_dirs/exp_1"


def test_predefined_variables_are_the_files_own_in_a_base(write):
    write("base.yaml", "base_name: '{{ fileBasenameNoExtension }}'\n")
    child = write("child.py", "_base_ = 'base.yaml'\nname = '{{ fileBasenameNoExtension }}'\n")
    cfg = Config.fromfile(child)
    assert (cfg.base_name, cfg.name) == ("base", "child")


def test_predefined_variables_can_be_switched_off(write):
    path = write("c.py", "b = '{{ fileBasename }}'\n")
    assert Config.fromfile(path, use_predefined_variables=False).b == "{{ fileBasename }}"


def test_unknown_predefined_variable_is_an_error_with_a_hint(write):
    path = write("c.py", "a = 1\nb = '{{ fileBasenam }}'\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: unknown placeholder.*'fileBasename'"):
        Config.fromfile(path)


# ------------------------------------------------------------------ environment variables
ENV_CONFIG = """
epochs = {{$VISTRA_T_EPOCHS:12}}
quoted = {{'$VISTRA_T_EPOCHS:12'}}
root = '{{$VISTRA_T_ROOT:data/default}}/train'
"""


def test_env_placeholders_use_the_default_when_unset(write, monkeypatch):
    monkeypatch.delenv("VISTRA_T_EPOCHS", raising=False)
    monkeypatch.delenv("VISTRA_T_ROOT", raising=False)
    cfg = Config.fromfile(write("c.py", ENV_CONFIG))
    # both forms drop braces and quotes (MMEngine): the raw text 12 is an int
    assert cfg.epochs == 12 and cfg.quoted == 12
    assert cfg.root == "data/default/train"
    assert cfg.env_variables == {}


def test_env_placeholders_use_the_variable_when_set(write, monkeypatch):
    monkeypatch.setenv("VISTRA_T_EPOCHS", "3")
    monkeypatch.setenv("VISTRA_T_ROOT", "/mnt/data")
    cfg = Config.fromfile(write("c.py", ENV_CONFIG))
    assert cfg.epochs == 3 and cfg.quoted == 3
    assert cfg.root == "/mnt/data/train"
    assert cfg.env_variables == {"VISTRA_T_EPOCHS": "3", "VISTRA_T_ROOT": "/mnt/data"}


def test_env_placeholders_in_yaml_and_json(write, monkeypatch):
    monkeypatch.setenv("VISTRA_T_N", "7")
    assert Config.fromfile(write("c.yaml", "n: {{$VISTRA_T_N:1}}\n")).n == 7
    assert Config.fromfile(write("c.json", "{\"n\": {{'$VISTRA_T_N:1'}}}")).n == 7


def test_env_placeholder_without_default_needs_the_variable(write, monkeypatch):
    monkeypatch.delenv("VISTRA_T_NEEDED", raising=False)
    path = write("c.py", "a = 1\nroot = '{{$VISTRA_T_NEEDED}}'\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: .*VISTRA_T_NEEDED is not set"):
        Config.fromfile(path)
    monkeypatch.setenv("VISTRA_T_NEEDED", "here")
    assert Config.fromfile(path).root == "here"


def test_env_variable_set_but_empty_is_an_error_as_in_mmengine(write, monkeypatch):
    monkeypatch.setenv("VISTRA_T_EMPTY", "")
    with pytest.raises(ConfigError, match="VISTRA_T_EMPTY is set but empty"):
        Config.fromfile(write("c.py", "a = '{{$VISTRA_T_EMPTY:x}}'\n"))


def test_env_placeholders_can_be_switched_off(write, monkeypatch):
    monkeypatch.setenv("VISTRA_T_N", "7")
    path = write("c.py", "a = '{{$VISTRA_T_N:1}}'\n")
    assert Config.fromfile(path, use_environment_variables=False).a == "{{$VISTRA_T_N:1}}"


def test_malformed_env_placeholder_is_reported(write):
    with pytest.raises(ConfigError, match="malformed environment placeholder"):
        Config.fromfile(write("c.py", "a = '{{$VISTRA-T:1}}'\n"))


def test_broken_placeholders_in_comments_are_ignored(write, monkeypatch):
    monkeypatch.delenv("VISTRA_T_NEEDED", raising=False)
    path = write(
        "c.py",
        """
        # examples: {{$VISTRA_T_NEEDED}} {{ fileFoo }} {{_base_}}
        a = 1  # {{$VISTRA_T_NEEDED}}
        """,
    )
    assert Config.fromfile(path).to_dict() == {"a": 1}


# ------------------------------------------------------------------ _base_ references
def test_base_reference_as_a_whole_value_keeps_its_type_in_every_format(write):
    write("base.py", "model = dict(depth=50, scales=(1, 2))\nsteps = [1, 2]\nlr = 0.1\n")
    py = write("c.py", "_base_ = 'base.py'\nm = {{_base_.model}}\nd = {{ _base_.model.depth }}\n")
    cfg = Config.fromfile(py)
    assert cfg.m == {"depth": 50, "scales": (1, 2)} and cfg.d == 50
    js = write("c.json", '{"_base_": "base.py", "m": {{_base_.model}}, "s": {{_base_.steps}}}')
    cfg = Config.fromfile(js)
    assert cfg.m.scales == (1, 2) and cfg.s == [1, 2]
    ym = write("c.yaml", "_base_: base.py\nlr2: {{_base_.lr}}\nsecond: {{_base_.steps.1}}\n")
    cfg = Config.fromfile(ym)
    assert cfg.lr2 == 0.1 and cfg.second == 2


def test_base_reference_inside_a_string_is_substituted_as_text(write):
    write("base.py", "name = 'resnet50'\ndepth = 50\n")
    py = write(
        "c.py", "_base_ = 'base.py'\nwork_dir = \"runs/{{_base_.name}}_d{{_base_.depth}}\"\n"
    )
    assert Config.fromfile(py).work_dir == "runs/resnet50_d50"
    js = write("c.json", '{"_base_": "base.py", "w": "runs/{{_base_.name}}"}')
    assert Config.fromfile(js).w == "runs/resnet50"
    ym = write("c.yaml", "_base_: base.py\nw: 'runs/{{_base_.name}}'\n")
    assert Config.fromfile(ym).w == "runs/resnet50"


def test_base_reference_copy_is_independent_of_the_base_value(write):
    write("base.py", "model = dict(type='ResNet', depth=50)\n")
    path = write("c.py", "_base_ = 'base.py'\na = {{_base_.model}}\na['type'] = 'MobileNet'\n")
    cfg = Config.fromfile(path)
    assert cfg.a.type == "MobileNet" and cfg.model.type == "ResNet"


def test_unresolved_base_reference_names_the_placeholder_and_file(write):
    write("base.py", "model = dict(depth=50)\n")
    path = write("c.py", "_base_ = 'base.py'\nx = 1\nd = {{_base_.model.dpth}}\n")
    with pytest.raises(ConfigError) as e:
        Config.fromfile(path)
    message = str(e.value)
    assert f"{path}:3" in message and "{{_base_.model.dpth}}" in message
    assert "did you mean 'depth'" in message
    path = write("c.yaml", "_base_: base.py\nd: {{_base_.nothing}}\n")
    with pytest.raises(ConfigError, match=r"'\{\{_base_.nothing\}\}' does not resolve"):
        Config.fromfile(path)


def test_a_dict_cannot_be_placed_inside_a_string(write):
    write("base.py", "model = dict(depth=50)\n")
    path = write("c.py", "_base_ = 'base.py'\nname = 'm_{{_base_.model}}'\n")
    with pytest.raises(ConfigError, match="inside a string refers to a ConfigDict"):
        Config.fromfile(path)


# ------------------------------------------------------------------ _base_ variable access (.py)
def test_base_variables_are_readable_in_python_configs(write):
    write("base.py", "model = dict(backbone=dict(depth=50), head=dict(n=10))\nlrs = [0.1]\n")
    path = write(
        "c.py",
        """
        _base_ = 'base.py'
        depth = _base_.model.backbone.depth * 2
        head = _base_.model.head
        head.n = 5
        first_lr = _base_['lrs'][0]
        """,
    )
    cfg = Config.fromfile(path)
    assert cfg.depth == 100 and cfg.head == {"n": 5} and cfg.first_lr == 0.1
    # `_base_` is the merged bases themselves (MMEngine): changing what it holds changes what
    # is inherited, as MMPretrain's MobileOne configs rely on
    assert cfg.model.head.n == 5


def test_assigning_into_base_changes_the_inherited_value_as_in_mmengine(write):
    write("base.py", "loader = dict(dataset=dict(pipeline=[dict(type='A', scale=224)]))\n")
    path = write(
        "c.py",
        """
        _base_ = 'base.py'
        pipeline = [dict(type='A', scale=160), dict(type='B', level=7)]
        _base_.loader.dataset.pipeline = pipeline
        pipeline[1]['level'] *= 0.1  # after the assignment: the stored copy keeps 7
        """,
    )
    cfg = Config.fromfile(path)
    assert cfg.loader.dataset.pipeline == [dict(type="A", scale=160), dict(type="B", level=7)]
    assert cfg.pipeline[1]["level"] == pytest.approx(0.7)


def test_missing_base_variable_names_file_line_and_close_keys(write):
    write("base.py", "model = dict(depth=50)\n")
    path = write("c.py", "_base_ = 'base.py'\nx = _base_.modle\n")
    with pytest.raises(
        ConfigError, match=rf"{path}:2: AttributeError: .*'modle'.*did you mean 'model'"
    ):
        Config.fromfile(path)
