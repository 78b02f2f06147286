"""custom_imports: modules named by a config are imported at Config.fromfile time."""

from __future__ import annotations

import sys

import pytest

from vistra.config import Config, ConfigError, CustomImportError, import_custom_modules

MODULE = """
import sys
sys.vistra_test_imported = getattr(sys, "vistra_test_imported", []) + [__name__]
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A tiny importable package ``vt_plugin`` with a module ``vt_plugin.mod``, on sys.path."""
    pkg = tmp_path / "plugins" / "vt_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    monkeypatch.setattr(sys, "vistra_test_imported", [], raising=False)
    yield "vt_plugin.mod"
    for name in ("vt_plugin.mod", "vt_plugin"):
        sys.modules.pop(name, None)


def test_fromfile_imports_the_listed_modules(write, plugin):
    path = write(
        "c.py",
        f"custom_imports = dict(imports=['{plugin}'], allow_failed_imports=False)\nm = 1\n",
    )
    cfg = Config.fromfile(path)
    assert sys.vistra_test_imported == [plugin]
    assert cfg.custom_imports.imports == [plugin]  # the key stays in the config, as in MMEngine


def test_fromfile_can_skip_custom_imports(write, plugin):
    path = write("c.py", f"custom_imports = dict(imports=['{plugin}'])\n")
    Config.fromfile(path, import_custom_modules=False)
    assert sys.vistra_test_imported == []


def test_import_custom_modules_returns_the_modules_and_accepts_one_name(plugin):
    modules = import_custom_modules({"custom_imports": {"imports": plugin}})
    assert [m.__name__ for m in modules] == [plugin]
    assert import_custom_modules({}) == []
    assert import_custom_modules(Config(dict(custom_imports=None))) == []


def test_a_failed_import_raises_naming_the_module(write):
    path = write("c.py", "custom_imports = dict(imports=['vt_no_such_module_xyz'])\n")
    with pytest.raises(CustomImportError, match="cannot import 'vt_no_such_module_xyz'") as e:
        Config.fromfile(path)
    assert isinstance(e.value, ImportError) and isinstance(e.value, ConfigError)
    assert "PYTHONPATH" in str(e.value)


def test_a_failed_import_only_warns_when_allowed(plugin):
    spec = {"imports": ["vt_no_such_module_xyz", plugin], "allow_failed_imports": True}
    with pytest.warns(UserWarning, match="vt_no_such_module_xyz failed to import and is ignored"):
        modules = import_custom_modules({"custom_imports": spec})
    assert [m.__name__ for m in modules] == [plugin]


def test_bad_custom_imports_values_are_errors():
    with pytest.raises(CustomImportError, match="unknown key 'import'.*did you mean 'imports'"):
        import_custom_modules({"custom_imports": {"import": ["x"]}})
    with pytest.raises(CustomImportError, match="must be a module name or a list"):
        import_custom_modules({"custom_imports": {"imports": [1]}})
    with pytest.raises(CustomImportError, match="must be dict"):
        import_custom_modules({"custom_imports": ["x"]})


@pytest.mark.parametrize(
    "name",
    [
        "mmpretrain.models",
        "mmcls.models",
        "mmseg.models",
        "mmselfsup.models.utils.res_layer_extra_norm",
        "mmdet.models",
        "mmpretrain",
    ],
)
def test_openmmlab_modules_vistra_stands_in_for_are_satisfied_without_an_import(write, name):
    path = write("c.py", f"custom_imports = dict(imports=['{name}'], allow_failed_imports=False)\n")
    cfg = Config.fromfile(path)
    assert cfg.custom_imports.imports == [name]
    assert name.split(".")[0] not in sys.modules  # nothing was imported, nothing failed


def test_a_look_alike_of_an_openmmlab_package_still_has_to_import(write):
    path = write("c.py", "custom_imports = dict(imports=['mmpretrain_plugins.models'])\n")
    with pytest.raises(CustomImportError, match="cannot import 'mmpretrain_plugins.models'"):
        Config.fromfile(path)
