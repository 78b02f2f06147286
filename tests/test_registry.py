import subprocess
import sys

import pytest

from vistra.registry import Registry, RegistryError, build_from_cfg


def make_registry() -> Registry:
    reg = Registry("model")

    @reg.register_module()
    class ResNetV1c:
        def __init__(self, depth: int, norm_eval: bool = False) -> None:
            self.depth = depth
            self.norm_eval = norm_eval

    @reg.register_module(name="Head")
    class _Head:
        def __init__(self, num_classes: int, loss: dict | None = None) -> None:
            if num_classes < 1:
                raise ValueError("num_classes must be positive")
            self.loss = loss

    return reg


def test_register_as_decorator_and_call_and_build():
    reg = make_registry()
    obj = reg.build(dict(type="ResNetV1c", depth=50))
    assert obj.depth == 50
    assert "Head" in reg and "_Head" not in reg

    class Extra:
        pass

    reg.register_module(module=Extra)
    assert reg.get("Extra") is Extra


def test_duplicate_name_needs_force():
    reg = make_registry()

    class ResNetV1c:  # noqa: N801 - same name on purpose
        pass

    with pytest.raises(RegistryError, match="already registered"):
        reg.register_module(module=ResNetV1c)
    reg.register_module(module=ResNetV1c, force=True)
    assert reg.get("ResNetV1c") is ResNetV1c


def test_scope_prefix_and_scope_key_are_ignored():
    reg = make_registry()
    assert reg.build(dict(type="mmseg.ResNetV1c", depth=18, _scope_="mmseg")).depth == 18


def test_type_may_be_a_class():
    reg = make_registry()
    cls = reg.get("ResNetV1c")
    assert reg.build(dict(type=cls, depth=34)).depth == 34


def test_unknown_type_names_registry_key_path_and_suggestion():
    reg = make_registry()
    with pytest.raises(RegistryError) as info:
        reg.build(dict(type="ResNetV1", depth=50), key_path="model.backbone")
    msg = str(info.value)
    assert "unknown model type 'ResNetV1'" in msg
    assert "model.backbone" in msg
    assert "did you mean 'ResNetV1c'" in msg
    assert "custom_imports = dict(imports=['my_module'])" in msg  # how to add one's own class
    assert "@REGISTRY.register_module()" in msg  # a registry outside vistra.registry


def test_unknown_type_of_a_named_registry_names_it_for_register_module():
    from vistra.registry import DATASETS

    with pytest.raises(RegistryError) as info:
        DATASETS.build(dict(type="HandBoneDataset"), key_path="train_dataloader.dataset")
    msg = str(info.value)
    assert msg.startswith("unknown dataset type 'HandBoneDataset' (config key ")
    assert "did you mean" in msg and "@DATASETS.register_module()" in msg


def test_user_class_taking_a_vistra_name_fails_at_its_own_registration():
    # The user's module registers before vistra's datasets were imported: the clash used to
    # pass silently (the user's class replaced vistra's) or fail later inside vistra's import.
    code = (
        "from vistra.registry import DATASETS\n"
        "class FootArchDataset: pass\n"
        "FootArchDataset.__module__ = 'my_project.datasets'\n"
        "DATASETS.register_module(module=FootArchDataset)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert (
        "RegistryError: cannot register my_project.datasets.FootArchDataset as "
        "'FootArchDataset': 'FootArchDataset' is already registered in the dataset registry "
        "(by vistra.data.datasets.feetarch.FootArchDataset)"
    ) in result.stderr


def test_unknown_argument_suggests_valid_ones():
    reg = make_registry()
    with pytest.raises(RegistryError) as info:
        reg.build(dict(type="ResNetV1c", depht=50), key_path="model.backbone")
    assert "unexpected argument 'depht'" in str(info.value)
    assert "did you mean 'depth'" in str(info.value)


def test_failure_inside_constructor_names_type_and_arguments():
    reg = make_registry()
    with pytest.raises(ValueError) as info:
        reg.build(dict(type="Head", num_classes=0))
    assert "Head(num_classes=0)" in str(info.value)
    assert "num_classes must be positive" in str(info.value)


def test_nested_configs_are_left_to_the_built_object():
    reg = make_registry()
    head = reg.build(dict(type="Head", num_classes=3, loss=dict(type="CrossEntropyLoss")))
    assert head.loss == dict(type="CrossEntropyLoss")


def test_missing_type_and_non_dict_config():
    reg = make_registry()
    with pytest.raises(RegistryError, match="no 'type' key"):
        build_from_cfg(dict(depth=1), reg, key_path="model")
    with pytest.raises(TypeError, match="must be a dict"):
        build_from_cfg(["ResNet"], reg)  # type: ignore[arg-type]


def test_default_args_fill_missing_keys_only():
    reg = make_registry()
    obj = reg.build(dict(type="ResNetV1c", depth=50), default_args=dict(depth=18, norm_eval=True))
    assert (obj.depth, obj.norm_eval) == (50, True)


def test_registry_module_does_not_import_torch():
    code = "import sys, vistra.registry; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_named_registries_find_their_packages_lazily():
    from vistra.registry import HOOKS, LOOPS

    assert HOOKS.get("CheckpointHook") is not None
    assert LOOPS.get("EpochBasedTrainLoop") is not None
