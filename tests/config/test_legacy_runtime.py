"""0.x detection, schema-mixing errors, model and runtime keys (vistra.config.legacy)."""

from __future__ import annotations

import pytest

from vistra.config import Config, ConfigError
from vistra.config.legacy import (
    is_1x_config,
    legacy_markers,
    split_cfg_options,
    stale_legacy_keys,
    upgrade_config,
)
from vistra.config.legacy import model as legacy_model
from vistra.config.legacy import runtime as legacy_runtime
from vistra.config.legacy.context import LegacyContext
from vistra.config.legacy.detect import check_conflicts, guess_task, is_iter_based


def _ctx(old: dict, task: str = "segmentation", iter_based: bool = True) -> LegacyContext:
    return LegacyContext(source="old.py", old=old, task=task, iter_based=iter_based)


# ----------------------------------------------------------------------------- detection
def test_markers_find_0x_keys_and_ignore_1x_configs():
    assert legacy_markers({"runner": {}, "lr_config": {}, "model": {}}) == ["runner", "lr_config"]
    assert legacy_markers({"optimizer": {"type": "SGD"}}) == ["optimizer"]
    one_x = Config.fromfile("configs/pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py")
    assert legacy_markers(one_x) == []  # its `optimizer` variable sits beside optim_wrapper
    # 0.x default_runtime files set these to None: not a marker on their own
    assert legacy_markers({"resume_from": None, "fp16": None}) == []
    assert legacy_markers({"data": {"x": 1}}) == []  # a variable named data


@pytest.mark.parametrize(
    ("old", "new", "extra"),
    [
        ("lr_config", "param_scheduler", {"param_scheduler": [dict(type="PolyLR")]}),
        ("runner", "train_cfg", {"train_cfg": dict(type="IterBasedTrainLoop", max_iters=4)}),
        ("optimizer_config", "optim_wrapper", {"optim_wrapper": dict(optimizer={})}),
        ("data", "train_dataloader", {"train_dataloader": dict(batch_size=2)}),
        ("evaluation", "val_evaluator", {"val_evaluator": dict(type="IoUMetric")}),
        (
            "checkpoint_config",
            "default_hooks.checkpoint",
            {"default_hooks": dict(checkpoint=dict(interval=1))},
        ),
        ("resume_from", "resume", {"resume": True}),
    ],
)
def test_mixing_0x_and_1x_keys_for_one_thing_names_both(old, new, extra):
    values = {
        "lr_config": dict(policy="poly"),
        "runner": dict(type="IterBasedRunner", max_iters=4),
        "optimizer_config": dict(),
        "data": dict(samples_per_gpu=2, train=dict()),
        "evaluation": dict(interval=1),
        "checkpoint_config": dict(interval=1),
        "resume_from": "a.pth",
    }
    cfg = {old: values[old], **extra}
    with pytest.raises(ConfigError) as err:
        check_conflicts(cfg, "mixed.py")
    message = str(err.value)
    assert "mixed.py" in message and f"'{old}'" in message and f"'{new}'" in message


def test_a_0x_model_train_cfg_at_the_top_is_not_a_loop():
    check_conflicts({"runner": dict(max_iters=4), "train_cfg": dict()}, "old.py")  # no error
    assert guess_task({"model": dict(type="EncoderDecoder")}) == "segmentation"
    assert guess_task({"model": dict(type="mmcls.ImageClassifier")}) == "classification"
    assert guess_task({"model": dict(type="MAE")}) == "selfsup"
    assert is_iter_based({"runner": dict(type="IterBasedRunner", max_iters=1)})
    assert not is_iter_based({"runner": dict(type="EpochBasedRunner", max_epochs=1)})
    assert is_iter_based({"total_iters": 10})


def test_cfg_options_split_between_the_written_config_and_1x_keys():
    cfg = {"data": {}, "model": {}}
    before, after = split_cfg_options(
        cfg, {"data.samples_per_gpu": 4, "lr_config.min_lr": 0, "train_cfg.max_iters": 2}
    )
    assert before == {"data.samples_per_gpu": 4, "lr_config.min_lr": 0}
    assert after == {"train_cfg.max_iters": 2}


# ----------------------------------------------------------------------------- model
def test_top_level_model_cfgs_move_into_the_model():
    ctx = _ctx(
        {"model": dict(type="EncoderDecoder"), "train_cfg": {}, "test_cfg": {"mode": "whole"}}
    )
    legacy_model.relocate_model_cfgs(ctx)
    assert "train_cfg" not in ctx.new and "test_cfg" not in ctx.new
    assert ctx.new["model"]["test_cfg"] == {"mode": "whole"}
    ctx = _ctx({"model": dict(test_cfg={"mode": "slide"}), "test_cfg": {"mode": "whole"}})
    with pytest.raises(ConfigError, match="model.test_cfg"):
        legacy_model.relocate_model_cfgs(ctx)


def test_preprocessor_settings_land_in_the_model():
    ctx = _ctx({"model": dict(type="EncoderDecoder")})
    ctx.preprocessor.update(mean=[1, 2, 3], std=[4, 5, 6], to_rgb=True, size=(32, 32))
    legacy_model.translate(ctx)
    pre = ctx.new["model"]["data_preprocessor"]
    assert pre == dict(
        type="SegDataPreProcessor", mean=[1, 2, 3], std=[4, 5, 6], size=(32, 32), bgr_to_rgb=True
    )
    ctx = _ctx(
        {"model": dict(type="ImageClassifier", head=dict(num_classes=10))},
        task="classification",
        iter_based=False,
    )
    ctx.preprocessor.update(mean=[1, 2, 3], std=[4, 5, 6], to_rgb=False)
    legacy_model.translate(ctx)
    assert ctx.new["model"]["data_preprocessor"]["num_classes"] == 10


def test_mmcls_batch_augments_and_mmselfsup_heads():
    ctx = _ctx(
        {
            "model": dict(
                type="ImageClassifier",
                train_cfg=dict(
                    augments=dict(type="BatchMixup", alpha=0.2, num_classes=10, prob=1.0)
                ),
            )
        },
        task="classification",
    )
    legacy_model.translate(ctx)
    assert ctx.new["model"]["train_cfg"] == dict(augments=[dict(type="Mixup", alpha=0.2)])
    ctx = _ctx({"model": dict(type="MAE", head=dict(type="MAEPretrainHead"))}, task="selfsup")
    legacy_model.translate(ctx)
    assert ctx.new["model"]["head"]["loss"] == dict(type="PixelReconstructionLoss", criterion="L2")
    assert ctx.new["model"]["init_cfg"][0]["type"] == "Xavier"


# ----------------------------------------------------------------------------- runtime
def _runtime_ctx(extra: dict, task: str = "segmentation", iter_based: bool = True):
    old = {
        "model": {},
        "train_cfg": dict(type="IterBasedTrainLoop", max_iters=40000),
        "val_dataloader": {},
        "test_dataloader": {},
        **extra,
    }
    ctx = _ctx(old, task=task, iter_based=iter_based)
    legacy_runtime.translate(ctx)
    return ctx.new


def test_evaluation_becomes_interval_evaluators_and_save_best():
    new = _runtime_ctx(
        {
            "evaluation": dict(
                interval=4000, metric=["mIoU", "mDice"], pre_eval=True, save_best="mIoU"
            )
        }
    )
    assert new["train_cfg"]["val_interval"] == 4000
    assert new["val_evaluator"] == dict(type="IoUMetric", iou_metrics=["mIoU", "mDice"])
    assert new["test_evaluator"] == new["val_evaluator"]
    assert new["default_hooks"]["checkpoint"]["save_best"] == "mIoU"
    assert "evaluation" not in new


def test_classification_metrics_follow_mmcls_0x_defaults():
    new = _runtime_ctx({"evaluation": dict(interval=1, metric="accuracy")}, "classification", False)
    assert new["val_evaluator"] == dict(type="Accuracy", topk=(1, 5))  # 0.x's default topk
    new = _runtime_ctx(
        {
            "evaluation": dict(
                metric=["accuracy", "precision", "f1_score"],
                metric_options=dict(topk=(1,), average_mode="micro"),
            )
        },
        "classification",
        False,
    )
    assert new["val_evaluator"] == [
        dict(type="Accuracy", topk=(1,)),
        dict(type="SingleLabelMetric", items=["precision", "f1-score"], average="micro"),
    ]


def test_unknown_metric_lists_the_supported_ones():
    with pytest.raises(ConfigError, match="mIoU, mDice, mFscore"):
        _runtime_ctx({"evaluation": dict(metric="mAP")})


def test_hooks_env_and_resume():
    new = _runtime_ctx(
        {
            "checkpoint_config": dict(by_epoch=False, interval=4000, create_symlink=False),
            "log_config": dict(
                interval=50,
                hooks=[
                    dict(type="TextLoggerHook", by_epoch=False),
                    dict(type="TensorboardLoggerHook"),
                ],
            ),
            "dist_params": dict(backend="nccl", port=29555),
            "cudnn_benchmark": True,
            "resume_from": "work/iter_8.pth",
            "workflow": [("train", 1)],
        }
    )
    hooks = new["default_hooks"]
    assert hooks["checkpoint"] == dict(type="CheckpointHook", by_epoch=False, interval=4000)
    assert hooks["logger"] == dict(type="LoggerHook", interval=50)
    assert [b["type"] for b in new["visualizer"]["vis_backends"]] == [
        "LocalVisBackend",
        "TensorboardVisBackend",
    ]
    assert new["log_processor"] == dict(by_epoch=False)
    assert new["env_cfg"]["dist_cfg"] == dict(backend="nccl", port=29555)
    assert new["env_cfg"]["cudnn_benchmark"] is True
    assert (new["resume"], new["load_from"]) == (True, "work/iter_8.pth")
    for key in ("checkpoint_config", "log_config", "dist_params", "workflow", "resume_from"):
        assert key not in new


def test_unknown_logger_hook_is_an_error():
    with pytest.raises(ConfigError, match=r"log_config.hooks\[0\].*TensorboardLoggerHook"):
        _runtime_ctx({"log_config": dict(interval=1, hooks=[dict(type="WandbLoggerHook")])})


# ----------------------------------------------------------------------------- stale keys
ONE_X = {
    "default_scope": "mmpretrain",
    "train_dataloader": dict(batch_size=64, dataset=dict(type="ImageNet")),
    "train_cfg": dict(by_epoch=True, max_epochs=300),
    "optim_wrapper": dict(optimizer=dict(type="AdamW", lr=4e-3)),
}


def test_a_1x_config_with_stale_0x_keys_keeps_every_key_and_names_them_once(write):
    # MMPretrain's HorNet configs: a 0.x `data = dict(samples_per_gpu=128)` beside the 1.x
    # dataloaders it inherits; MMEngine keeps it, MMPretrain trains with the 1.x keys
    path = write("hornet.py", f"{_as_python(ONE_X)}\ndata = dict(samples_per_gpu=128)\n")
    cfg = Config.fromfile(path)
    assert legacy_markers(cfg) == ["data"] and is_1x_config(cfg)
    assert stale_legacy_keys(cfg) == ["data"]
    upgraded = upgrade_config(cfg)
    assert upgraded.to_dict() == cfg.to_dict()  # identical to MMEngine's merged config
    assert len(upgraded.legacy_notes) == 1
    assert "'data'" not in upgraded.legacy_notes[0] and "(data)" in upgraded.legacy_notes[0]
    assert "ignored" in upgraded.legacy_notes[0] and str(path) in upgraded.legacy_notes[0]


def test_a_complete_1x_triple_makes_a_1x_config_without_default_scope():
    cfg = {k: v for k, v in ONE_X.items() if k != "default_scope"}
    stale = {**cfg, "runner": dict(type="EpochBasedRunner", max_epochs=1), "total_iters": 5}
    assert stale_legacy_keys(stale) == ["runner", "total_iters"]
    val = {"val_dataloader": {}, "val_cfg": {}, "val_evaluator": dict(type="Accuracy")}
    assert is_1x_config(val)
    # a 0.x top-level model train_cfg is no loop: not a 1.x triple
    assert not is_1x_config({**cfg, "train_cfg": dict(augments=None)})


def test_a_0x_config_mixing_schemas_is_still_an_error():
    old = {
        "data": dict(samples_per_gpu=2, train=dict()),
        "train_dataloader": dict(batch_size=2),
        "model": dict(type="EncoderDecoder"),
    }
    assert not is_1x_config(old) and stale_legacy_keys(old) == []
    with pytest.raises(ConfigError, match="both 'data' \\(0.x\\) and 'train_dataloader'"):
        upgrade_config(Config(old, filename="mixed.py"))


def _as_python(values: dict) -> str:
    return "\n".join(f"{key} = {value!r}" for key, value in values.items())
