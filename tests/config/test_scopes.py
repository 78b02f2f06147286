"""``_base_ = 'mmcls::path'``: bases in a package's config tree (vistra.config.scopes)."""

from __future__ import annotations

import sys

import pytest

from vistra.config import Config, ConfigError
from vistra.config.scopes import ROOTS_ENV, VISTRA_CONFIGS, mark_scope, resolve_scoped_base

RUNTIME = """
default_scope = 'mmcls'
default_hooks = dict(timer=dict(type='IterTimerHook'), logger=dict(type='LoggerHook'))
vis_backends = [dict(type='LocalVisBackend')]
model = dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=50))
train_dataloader = dict(batch_size=32, dataset=dict(type='ImageNet', _scope_='mmpretrain'))
"""


@pytest.fixture
def no_roots(monkeypatch):
    monkeypatch.delenv(ROOTS_ENV, raising=False)


@pytest.fixture
def mmcls_tree(tmp_path, write, monkeypatch):
    """A config tree standing for mmcls's, named by VISTRA_CONFIG_ROOTS=mmcls=DIR."""
    write("mmcls_configs/_base_/default_runtime.py", RUNTIME)
    monkeypatch.setenv(ROOTS_ENV, f"mmcls={tmp_path / 'mmcls_configs'}")
    return tmp_path / "mmcls_configs"


def test_a_scoped_base_is_marked_with_its_scope_as_in_mmengine(write, mmcls_tree):
    path = write(
        "c.py",
        """
        _base_ = ['mmcls::_base_/default_runtime.py']
        model = dict(backbone=dict(depth=101))
        default_hooks = dict(logger=dict(_delete_=True, type='LoggerHook', interval=5))
        """,
    )
    cfg = Config.fromfile(path).to_dict()
    # the outermost dicts with a `type` get _scope_; deeper ones and existing ones are kept
    assert cfg["model"] == {
        "type": "ImageClassifier",
        "backbone": {"type": "ResNet", "depth": 101},
        "_scope_": "mmcls",
    }
    assert cfg["vis_backends"] == [{"type": "LocalVisBackend", "_scope_": "mmcls"}]
    assert cfg["train_dataloader"]["dataset"]["_scope_"] == "mmpretrain"
    assert "_scope_" not in cfg["train_dataloader"]  # no `type`: only its children are marked
    assert cfg["default_hooks"]["timer"]["_scope_"] == "mmcls"
    assert cfg["default_hooks"]["logger"] == {"type": "LoggerHook", "interval": 5}  # replaced
    assert "_scope_" not in cfg  # the top level has no `type`


def test_mark_scope_follows_lists_and_tuples_and_leaves_plain_values():
    marked = mark_scope({"a": (dict(type="X", b=dict(type="Y")),), "n": 1}, "mmseg")
    assert marked == {"a": ({"type": "X", "b": {"type": "Y"}, "_scope_": "mmseg"},), "n": 1}


def test_a_folder_of_installed_packages_is_searched_and_mmcls_falls_back_to_mmpretrain(
    tmp_path, write, monkeypatch
):
    write("site/mmpretrain/.mim/configs/_base_/default_runtime.py", RUNTIME)
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path / "site"))
    found, scope = resolve_scoped_base("mmcls::_base_/default_runtime.py", "c.py")
    assert found == str(tmp_path / "site/mmpretrain/.mim/configs/_base_/default_runtime.py")
    assert scope == "mmcls"  # the scope as written marks the values, as in MMEngine


def test_an_installed_package_is_found_on_sys_path_without_being_imported(
    tmp_path, write, monkeypatch, no_roots
):
    write("site/mmseg/__init__.py", "raise RuntimeError('vistra must not import mmseg')\n")
    write("site/mmseg/.mim/configs/fcn/fcn.py", "model = dict(type='EncoderDecoder')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    path = write("c.py", "_base_ = 'mmseg::fcn/fcn.py'\n")
    cfg = Config.fromfile(path)
    assert cfg.model == {"type": "EncoderDecoder", "_scope_": "mmseg"}
    assert "mmseg" not in sys.modules


def test_without_a_package_tree_vistras_own_configs_stand_in(write, no_roots):
    path = write(
        "c.py",
        """
        _base_ = [
            'mmcls::_base_/models/swin_transformer/base_224.py',
            'mmseg::_base_/default_runtime.py',
        ]
        """,
    )
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.type == "SwinTransformer" and cfg.model._scope_ == "mmcls"
    # vistra's tree keeps MMSegmentation's runtime under another name; configs/mmseg maps it
    assert cfg.default_scope == "mmseg"
    assert (VISTRA_CONFIGS / "mmseg" / "_base_" / "default_runtime.py").is_file()


def test_a_scoped_base_found_nowhere_names_every_place_tried(write, no_roots):
    path = write("c.py", "_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'\n")
    with pytest.raises(ConfigError) as err:
        Config.fromfile(path)
    message = str(err.value)
    assert "'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'" in message and str(path) in message
    assert str(VISTRA_CONFIGS / "mask_rcnn" / "mask-rcnn_r50_fpn_1x_coco.py") in message
    assert ROOTS_ENV in message


def test_an_unknown_scope_without_a_tree_and_a_malformed_scope_are_errors(write, no_roots):
    with pytest.raises(ConfigError, match="not found: tried nowhere"):
        Config.fromfile(write("a.py", "_base_ = 'mmnothing::x/y.py'\n"))
    with pytest.raises(ConfigError, match="not of the form 'package::relative/path.py'"):
        Config.fromfile(write("b.py", "_base_ = 'mmcls::'\n"))
