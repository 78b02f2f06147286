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


def test_failure_inside_constructor_names_key_value_and_reason():
    reg = make_registry()
    with pytest.raises(ValueError) as info:
        reg.build(dict(type="Head", num_classes=0), key_path="model.head")
    assert (
        str(info.value)
        == "model.head.num_classes=0: Head rejected it: num_classes must be positive"
    )


def test_arch_table_lookup_names_the_valid_values_not_the_whole_config():
    from vistra.registry import MODELS

    cfg = dict(
        type="ImageClassifier",
        backbone=dict(type="ResNet", depth=17),
        head=dict(type="LinearClsHead", num_classes=3, in_channels=2048),
    )
    with pytest.raises(KeyError) as info:
        MODELS.build(cfg, key_path="model")
    text = str(info.value)
    assert text.startswith("model.backbone.depth=17: ResNet has no such depth; valid: 18, 34, 50")
    assert "LinearClsHead" not in text and len(text) < 200  # not the repr of every argument


def test_a_nested_build_without_a_key_path_finds_it_in_its_parent():
    from vistra.registry import MODELS

    cfg = dict(
        type="LinearClsHead",
        num_classes=3,
        in_channels=8,
        loss=dict(type="CrossEntropyLoss", loss_weigth=1.0),
    )
    with pytest.raises(RegistryError) as info:
        MODELS.build(cfg, key_path="model.head")
    assert "(config key 'model.head.loss.loss_weigth')" in str(info.value)
    assert "did you mean 'loss_weight'" in str(info.value)


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


# ----------------------------------------------------------------------------- scopes
def make_scoped_registry() -> Registry:
    reg = Registry("model")

    @reg.register_module(name="Stem")
    class PretrainStem:
        pass

    @reg.register_module(name="Stem", scope="mmseg")
    class SegStem:
        pass

    @reg.register_module(name="Holder")
    class Holder:
        def __init__(self, child: dict) -> None:
            self.child = reg.build(child)

    @reg.register_module(name="OnlySelfSup", scope="mmselfsup")
    class OnlySelfSup:
        pass

    return reg


def test_scoped_variant_is_picked_by_prefix_scope_key_and_default_scope():
    from vistra.registry import default_scope

    reg = make_scoped_registry()
    plain, seg = reg.get("Stem"), reg.get("mmseg.Stem")
    assert plain.__name__ == "PretrainStem" and seg.__name__ == "SegStem"
    assert reg.get("mmpretrain.Stem") is plain  # no variant: the plain entry
    with default_scope("mmseg"):
        assert type(reg.build(dict(type="Stem"))) is seg
        assert type(reg.build(dict(type="mmpretrain.Stem"))) is plain  # a prefix wins
    # `_scope_` holds for the object and everything it builds
    holder = reg.build(dict(type="Holder", _scope_="mmseg", child=dict(type="Stem")))
    assert type(holder.child) is seg
    assert type(reg.build(dict(type="Stem"))) is plain  # and nothing leaks out
    assert reg.scopes_of("Stem") == ["mmseg"]


def test_sole_variant_is_found_without_scope_and_mmcls_falls_back_to_mmpretrain():
    from vistra.registry import default_scope

    reg = make_scoped_registry()
    assert reg.get("OnlySelfSup").__name__ == "OnlySelfSup"
    assert "OnlySelfSup" in reg.keys()
    with default_scope("mmcls"):
        assert reg.get("Stem").__name__ == "PretrainStem"  # no mmcls variant: mmpretrain's
    assert reg.get("mmcls.Stem").__name__ == "PretrainStem"

    class OldStem:  # an mmcls-only variant (MMCls 1.0rc's BEiT backbone, say)
        pass

    reg.register_module(name="Stem", scope="mmcls", module=OldStem)
    with default_scope("mmcls"):
        assert reg.get("Stem") is OldStem
    with default_scope("mmpretrain"):
        assert reg.get("Stem").__name__ == "PretrainStem"  # and it does not leak into mmpretrain


def test_scoped_registration_clash_names_the_scope():
    reg = make_scoped_registry()

    class Other:
        pass

    with pytest.raises(RegistryError, match="'Stem' for scope 'mmseg'"):
        reg.register_module(name="Stem", scope="mmseg", module=Other)


def test_unknown_argument_of_a_kwargs_subclass_names_the_key_path():
    # A subclass that forwards **kwargs to its base used to slip past the check and fail
    # inside the constructor with a TypeError traceback.
    reg = Registry("model")

    @reg.register_module()
    class Base:
        def __init__(self, depth: int, width: int = 1) -> None:
            self.depth = depth

    @reg.register_module()
    class Child(Base):
        def __init__(self, deep_stem: bool = False, **kwargs) -> None:
            super().__init__(**kwargs)

    with pytest.raises(RegistryError) as info:
        reg.build(dict(type="Child", depht=18), key_path="model.backbone")
    message = str(info.value)
    assert "'model.backbone.depht'" in message and "did you mean 'depth'" in message
    assert "deep_stem, depth, width" in message
    assert reg.build(dict(type="Child", depth=18)).depth == 18


def test_kwargs_going_elsewhere_are_not_checked():
    reg = Registry("model")

    @reg.register_module()
    class Wrapper:
        def __init__(self, name: str, **kwargs) -> None:
            self.kwargs = kwargs  # handed to some other factory, not up the chain

    assert reg.build(dict(type="Wrapper", name="x", anything=1)).kwargs == {"anything": 1}


def test_every_registered_model_class_has_a_checkable_signature():
    # Only classes whose **kwargs leave the constructor chain (timm's) escape the check.
    import inspect

    from vistra.registry import MODELS, accepted_arguments

    unchecked = [
        name
        for name in MODELS
        if inspect.isclass(MODELS.get(name)) and accepted_arguments(MODELS.get(name)) is None
    ]
    assert unchecked == ["TIMMBackbone"]
