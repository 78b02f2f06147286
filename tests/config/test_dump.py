"""Config API, pretty_text and dump: what is written loads back to the same values."""

from __future__ import annotations

import copy
import json
import math
import pickle
from pathlib import Path

import pytest

from vistra.config import Config, ConfigDict, ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
LEVEL4 = CONFIGS / "chain" / "sub" / "deeper" / "level4.py"


def _lists(value):
    # JSON has no tuples: compare JSON round trips with tuples read as lists.
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value


# ------------------------------------------------------------------ the Config object
def test_config_reads_like_a_dict_and_like_attributes():
    cfg = Config(dict(a=1, b=dict(c=[dict(d=2)])), filename="x.py")
    assert cfg.a == 1 and cfg["b"]["c"][0].d == 2 and cfg.b.c[0]["d"] == 2
    cfg.b.c[0].d = 3
    cfg.e = dict(f=1)
    cfg["g"] = 5
    assert isinstance(cfg.e, ConfigDict) and cfg.e.f == 1 and cfg.g == 5
    assert cfg.get("missing", 7) == 7 and cfg.get("a") == 1
    assert list(cfg) == ["a", "b", "e", "g"] == list(cfg.keys())
    assert dict(cfg.items())["a"] == 1 and len(list(cfg.values())) == 4
    assert "a" in cfg and "zzz" not in cfg and len(cfg) == 4
    assert cfg.to_dict() == {"a": 1, "b": {"c": [{"d": 3}]}, "e": {"f": 1}, "g": 5}
    assert type(cfg.to_dict()["b"]) is dict
    assert repr(cfg).startswith("Config (path: x.py): {'a': 1")


def test_config_missing_attribute_and_reserved_keys():
    cfg = Config(dict(model=1))
    with pytest.raises(AttributeError, match="'modle'.*did you mean 'model'"):
        _ = cfg.modle
    with pytest.raises(ConfigError, match="'filename' is a reserved name"):
        Config(dict(filename=1))
    with pytest.raises(TypeError, match="cfg_dict must be a dict"):
        Config([1])


def test_config_copies_and_pickles():
    cfg = Config(dict(a=dict(b=1)), filename="f.py")
    shallow = copy.copy(cfg)
    shallow.z = 1
    assert "z" not in cfg and shallow.a is cfg.a
    deep = copy.deepcopy(cfg)
    deep.a.b = 2
    assert cfg.a.b == 1 and deep.filename == "f.py"
    assert cfg.copy().a is cfg.a
    restored = pickle.loads(pickle.dumps(cfg))
    assert restored.to_dict() == cfg.to_dict() and restored.filename == "f.py"


# ------------------------------------------------------------------ pretty_text
def test_pretty_text_is_python_that_loads_back_the_same(write):
    cfg = Config.fromfile(LEVEL4)
    text = cfg.pretty_text
    assert text.startswith("model = dict(\n    type='ImageClassifier',")
    assert "out_indices=(3,)" in text
    assert max(len(line) for line in text.splitlines()) <= 79
    again = Config.fromfile(write("again.py", text))
    assert again.to_dict() == cfg.to_dict()


def test_pretty_text_uses_braces_for_keys_that_are_not_identifiers(write):
    data = {
        "plain": dict(a=1),
        "odd": {"with-dash": 1, 2: "int key", "class": "keyword", "ok": (1,)},
        "weird top-level": [dict(x=float("inf")), float("nan"), -math.inf, None, (), []],
    }
    text = Config(data).pretty_text
    assert "plain = dict(a=1)" in text
    assert "{'with-dash': 1, 2: 'int key', 'class': 'keyword', 'ok': (1,)}" in text
    again = Config.fromfile(write("again.py", text))
    odd = again.to_dict()["weird top-level"]
    assert math.isinf(odd[0]["x"]) and math.isnan(odd[1]) and odd[2] == -math.inf
    assert odd[3:] == [None, (), []]
    assert again.odd == data["odd"]


def test_pretty_text_writes_classes_as_dotted_names_and_rejects_other_objects():
    assert Config(dict(t=dict(type=ConfigDict))).pretty_text == (
        "t = dict(type='vistra.config.config_dict.ConfigDict')\n"
    )
    with pytest.raises(ConfigError, match="config key 'a.b' .*object"):
        _ = Config(dict(a=dict(b=object()))).pretty_text


# ------------------------------------------------------------------ dump round trips
@pytest.mark.parametrize("ext", [".py", ".yaml", ".yml"])
def test_dump_and_reload_keeps_every_value_and_type(tmp_path, ext):
    cfg = Config.fromfile(LEVEL4)
    out = tmp_path / f"dumped{ext}"
    assert cfg.dump(out) is None
    again = Config.fromfile(out)
    assert again.to_dict() == cfg.to_dict()
    assert again.model.head.topk == (1, 5)


def test_dump_json_reloads_with_tuples_as_lists(tmp_path):
    cfg = Config.fromfile(LEVEL4)
    out = tmp_path / "dumped.json"
    cfg.dump(str(out))
    assert json.loads(out.read_text())["model"]["head"]["topk"] == [1, 5]
    assert Config.fromfile(out).to_dict() == _lists(cfg.to_dict())


def test_dump_without_file_returns_text_in_the_source_format(write):
    assert Config(dict(a=(1, 2))).dump() == "a = (1, 2)\n"
    yaml_cfg = Config.fromfile(write("c.yaml", "a: 1\nb: [1, 2]\n"))
    assert yaml_cfg.dump() == "a: 1\nb:\n- 1\n- 2\n"
    json_cfg = Config.fromfile(write("c.json", '{"a": 1}'))
    assert json.loads(json_cfg.dump()) == {"a": 1}


def test_dump_to_unsupported_extension_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"unsupported extension '\.txt'"):
        Config(dict(a=1)).dump(tmp_path / "c.txt")


def test_fromstring_reads_each_format():
    assert Config.fromstring("a = dict(b=(1,))\n", ".py").a.b == (1,)
    assert Config.fromstring("a: 1\n", ".yaml").a == 1
    assert Config.fromstring('{"a": 1}', ".json").a == 1
    with pytest.raises(ConfigError, match="unsupported file_format"):
        Config.fromstring("a = 1", "py")


def test_long_lists_of_numbers_fill_lines_and_load_back(write):
    cfg = Config(dict(palette_ids=list(range(60)), names=("cat",) * 20))
    text = cfg.pretty_text
    lines = text.splitlines()
    assert lines[0] == "palette_ids = [" and lines[1].startswith("    0, 1, 2, 3,")
    assert len(lines) < 15 and max(len(line) for line in lines) <= 79
    assert Config.fromfile(write("again.py", text)).to_dict() == cfg.to_dict()
