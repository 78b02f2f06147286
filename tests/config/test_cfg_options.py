"""The --cfg-options grammar (MMEngine's DictAction) and Config.merge_from_dict."""

from __future__ import annotations

import argparse

import pytest

from vistra.config import CfgOptionsAction, Config, ConfigError, parse_cfg_options
from vistra.config.cfg_options import parse_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50", 50),
        ("-3", -3),
        ("0.5", 0.5),
        ("1e-4", 1e-4),
        ("True", True),
        ("false", False),
        ("TRUE", True),
        ("None", None),
        ("none", "none"),  # only the exact word None is None
        ("SGD", "SGD"),
        ("", ""),
        ("'quoted'", "quoted"),
        ('"12"', 12),  # quotes are stripped before the type is guessed
        ("a b", "ab"),  # spaces are removed
        ("[1,2,3]", [1, 2, 3]),
        ("[ 1, 2 ]", [1, 2]),
        ("(1,2)", (1, 2)),
        ("(1,)", (1,)),
        ("(1)", (1,)),
        ("[a,b]", ["a", "b"]),
        ("['a','b']", ["a", "b"]),
        ("a,b", ["a", "b"]),
        ("1,", [1]),
        ("[1,2,]", [1, 2]),
        ("[1,,2]", [1, "", 2]),
        ("[]", []),
        ("()", ()),
        ("[(1,2),(3,4)]", [(1, 2), (3, 4)]),
        ("[[1,[2,3]],4]", [[1, [2, 3]], 4]),
        ("([1,2],(3,))", ([1, 2], (3,))),
        ("(1,2),(3,4)", [(1, 2), (3, 4)]),  # MMEngine recurses forever on this one
        ("[(1,2),[a,(b,c)]],x", [[(1, 2), ["a", ("b", "c")]], "x"]),
        ("a(b", "a(b"),  # no comma: a plain string, as in MMEngine
        ("foo.bar", "foo.bar"),
    ],
)
def test_value_grammar(text, expected):
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, list | tuple):
        assert [type(v) for v in value] == [type(v) for v in expected]


def test_tokens_split_at_the_first_equals_sign_and_keys_stay_dotted():
    assert parse_cfg_options(["a.b=x=y", "c=1"]) == {"a.b": "x=y", "c": 1}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("novalue", "has no '='"),
        ("=1", "invalid key"),
        ("a..b=1", "invalid key"),
        ("k=[1,2", "unbalanced brackets"),
        ("k=[(1,2],3)", "unbalanced brackets"),
        ("k=1,2)", "unbalanced brackets"),
        ("k=[1,2]x,3", "brackets must enclose"),
        ("k=[1,2]x", "brackets must enclose"),
        ("k=dict(a=1,b=2)", "dict values are not supported"),
        ("k=[dict(a=1)]", "dict values are not supported"),
        ("k={a:1}", "dict values are not supported"),
    ],
)
def test_bad_tokens_are_errors_naming_the_token(token, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_cfg_options([token])
    assert repr(token) in str(e.value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t", exit_on_error=True)
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction)
    return parser


def test_action_parses_and_repeated_flags_extend_each_other():
    args = _parser().parse_args(["--cfg-options", "a=1", "b=[1,2]", "--cfg-options", "c=x", "a=2"])
    assert args.cfg_options == {"a": 2, "b": [1, 2], "c": "x"}
    assert _parser().parse_args([]).cfg_options is None


def test_action_reports_a_bad_token_as_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["--cfg-options", "k=[1,2"])
    assert e.value.code == 2
    assert "unbalanced brackets" in capsys.readouterr().err


# ------------------------------------------------------------------ merge_from_dict
def _cfg() -> Config:
    return Config(
        dict(
            model=dict(backbone=dict(type="ResNet", depth=50), head=dict(num_classes=1000)),
            pipeline=[dict(type="Load"), dict(type="Resize", scale=(224, 224))],
            optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9)),
        )
    )


def test_merge_dotted_keys_creates_missing_dicts_and_keeps_siblings():
    cfg = _cfg()
    cfg.merge_from_dict(parse_cfg_options(["model.backbone.depth=101", "new.deep.key=[1,2]"]))
    assert cfg.model.backbone.to_dict() == {"type": "ResNet", "depth": 101}
    assert cfg.model.head.num_classes == 1000
    assert cfg.new.deep.key == [1, 2]


def test_merge_digit_keys_index_existing_lists():
    cfg = _cfg()
    cfg.merge_from_dict(parse_cfg_options(["pipeline.1.scale=(32,32)", "pipeline.0.type=X"]))
    assert cfg.pipeline == [{"type": "X"}, {"type": "Resize", "scale": (32, 32)}]
    with pytest.raises(ConfigError, match="index 5 is out of range for a list of length 2"):
        cfg.merge_from_dict({"pipeline.5.type": "Y"})
    with pytest.raises(ConfigError, match="is a list, so its items are set by index"):
        cfg.merge_from_dict({"pipeline.type": "Y"})


def test_merge_a_whole_list_value_replaces_the_list():
    cfg = _cfg()
    cfg.merge_from_dict(parse_cfg_options(["pipeline=[a,b]"]))
    assert cfg.pipeline == ["a", "b"]


def test_merge_delete_empties_the_dict_before_the_other_options():
    cfg = _cfg()
    options = parse_cfg_options(
        ["optim_wrapper.optimizer._delete_=True", "optim_wrapper.optimizer.type=AdamW"]
    )
    cfg.merge_from_dict(options)
    assert cfg.optim_wrapper.optimizer.to_dict() == {"type": "AdamW"}


def test_merge_dict_over_scalar_is_an_error_suggesting_delete():
    cfg = _cfg()
    with pytest.raises(ConfigError, match="'model.backbone.depth' is a dict.*_delete_=True"):
        cfg.merge_from_dict({"model.backbone.depth.x": 1})


def test_merge_without_list_keys_treats_a_list_as_a_value():
    cfg = _cfg()
    with pytest.raises(
        ConfigError, match="'pipeline' is a dict in the options but .*a list.* in the config"
    ):
        cfg.merge_from_dict({"pipeline.0.type": "X"}, allow_list_keys=False)
