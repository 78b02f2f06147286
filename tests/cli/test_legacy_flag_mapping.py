"""0.x flags of tools/train.py and tools/test.py mapped onto 1.x config keys (no runs)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from vistra.cli import legacy_flags, test, train
from vistra.cli.common import UsageError, load_config
from vistra.dist.launch import LaunchError, init_dist

REPO = Path(__file__).resolve().parents[2]
SEG = REPO / "configs" / "quickstart" / "seg_shapes.py"
CLS = REPO / "configs" / "quickstart" / "cls_shapes.py"
PSP = REPO / "configs" / "pspnet" / "pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py"
VISIBLE_GPUS = os.environ.get("CUDA_VISIBLE_DEVICES")  # before the fixture hides them


@pytest.fixture(autouse=True)
def cpu_only_first_rank(monkeypatch):
    """No visible GPU (so the --gpu-id checks behave alike everywhere), rank 0, and a
    LOCAL_RANK that load_config leaves alone and the fixture restores."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    for var in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(var, raising=False)


def cfg_for_train(*argv, config=SEG):
    args = train.build_parser().parse_args([str(config), *map(str, argv)])
    legacy_flags.resolve_train_flags(args)
    cfg, args.cfg_options = load_config(
        args.config, args.work_dir, args.launcher, args.local_rank, args.cfg_options
    )
    return train.merge_args(cfg, args)


def cfg_for_test(*argv, config=SEG):
    args = test.build_parser().parse_args([str(config), "ckpt.pth", *map(str, argv)])
    legacy_flags.resolve_test_flags(args)
    cfg, args.cfg_options = load_config(
        args.config, args.work_dir, args.launcher, args.local_rank, args.cfg_options
    )
    return test.merge_args(cfg, args), args


def notices(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("notice: ")]


# ----------------------------------------------------------------------------- train
def test_options_is_cfg_options_with_one_notice(capsys):
    opts = ["train_cfg.max_iters=7", "model.decode_head.num_classes=3"]
    new = cfg_for_train("--cfg-options", *opts)
    assert notices(capsys) == []
    old = cfg_for_train("--options", *opts)
    assert old.to_dict() == new.to_dict()
    assert old.train_cfg.max_iters == 7 and old.model.decode_head.num_classes == 3
    (line,) = notices(capsys)
    assert "--options" in line and "--cfg-options" in line


@pytest.mark.parametrize("cmd", ["train", "test"])
def test_options_and_cfg_options_together_is_an_error(cmd):
    build = cfg_for_train if cmd == "train" else cfg_for_test
    with pytest.raises(UsageError, match="--options and --cfg-options both given"):
        build("--options", "a=1", "--cfg-options", "b=2")


def test_work_dir_underscore_and_resume_from(capsys, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a notice, not a DeprecationWarning as before
        cfg = cfg_for_train("--work_dir", tmp_path / "w", "--resume-from", "x.pth")
    assert cfg.work_dir == str(tmp_path / "w")
    assert cfg.resume is True and cfg.load_from == "x.pth"
    (line,) = notices(capsys)
    assert "--resume-from" in line and "--resume PATH" in line


def test_auto_resume_is_resume_without_path(capsys):
    cfg = cfg_for_train("--auto-resume")
    assert cfg.resume is True and cfg.load_from is None
    assert len(notices(capsys)) == 1


def test_resume_from_wins_over_auto_resume(capsys):
    cfg = cfg_for_train("--auto-resume", "--resume-from", "x.pth")
    assert cfg.resume is True and cfg.load_from == "x.pth"
    assert "--auto-resume is a 0.x flag (deprecated); ignored" in notices(capsys)[-1]


def test_auto_resume_with_load_from_loads_weights_until_a_checkpoint_exists(tmp_path):
    work = tmp_path / "w"
    cfg = cfg_for_train("--work-dir", work, "--auto-resume", "--load-from", "init.pth")
    assert not cfg.get("resume") and cfg.load_from == "init.pth"
    work.mkdir()
    torch.save({"state_dict": {}, "meta": {}}, work / "iter_2.pth")
    (work / "last_checkpoint").write_text("iter_2.pth")
    cfg = cfg_for_train("--work-dir", work, "--auto-resume", "--load-from", "init.pth")
    assert cfg.resume is True and cfg.load_from == str(work / "iter_2.pth")


def test_load_from_with_resume_path_stays_an_error():
    with pytest.raises(UsageError, match="--load-from and --resume both given"):
        cfg_for_train("--resume-from", "x.pth", "--load-from", "y.pth")


def test_diff_seed_sets_diff_rank_seed(capsys):
    cfg = cfg_for_train("--diff_seed", "--seed", "1", "--deterministic")
    assert cfg.randomness == dict(seed=1, deterministic=True, diff_rank_seed=True)
    (line,) = notices(capsys)
    assert "randomness.diff_rank_seed=True" in line


@pytest.mark.parametrize(
    "flags",
    [["--gpu-id", "0"], ["--gpu-ids", "0", "1"], ["--gpus", "2"]],
    ids=["gpu-id", "gpu-ids", "gpus"],
)
def test_gpu_flags_without_cuda_are_an_error(flags):
    expected = f"{' '.join(flags)}: no CUDA device is visible; drop {flags[0]} to run on the CPU"
    with pytest.raises(UsageError) as info:
        cfg_for_train(*flags)
    assert str(info.value) == expected


def test_gpu_id_with_a_launcher_is_an_error():
    with pytest.raises(UsageError, match="each process uses the GPU of its LOCAL_RANK"):
        cfg_for_test("--gpu-id", "1", "--launcher", "pytorch")


def test_two_gpu_flags_are_an_error():
    with pytest.raises(UsageError, match="--gpu-id and --gpus both given"):
        cfg_for_train("--gpu-id", "0", "--gpus", "1")


def test_gpu_device_mapping():
    assert legacy_flags.gpu_device(1, "none", 2) == "cuda:1"
    assert legacy_flags.gpu_device(0, "none", 1) == "cuda:0"
    with pytest.raises(UsageError, match=r"--gpu-id 2: 2 CUDA device\(s\) visible, so GPU 0..1"):
        legacy_flags.gpu_device(2, "none", 2)
    with pytest.raises(UsageError, match="no CUDA device is visible"):
        legacy_flags.gpu_device(0, "none", 0)
    with pytest.raises(UsageError, match="--launcher slurm each process"):
        legacy_flags.gpu_device(0, "slurm", 8, "--gpus 2")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_id_runs_on_that_gpu(monkeypatch, capsys):
    if VISIBLE_GPUS is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", VISIBLE_GPUS)
    last = torch.cuda.device_count() - 1
    args = train.build_parser().parse_args([str(SEG), "--gpu-id", str(last)])
    legacy_flags.resolve_train_flags(args)
    try:
        info = legacy_flags.single_gpu_dist(args)
        assert info.device == torch.device("cuda", last) and torch.cuda.current_device() == last
    finally:
        torch.cuda.set_device(0)
    assert f"runs on cuda:{last}" in notices(capsys)[0]


def test_init_dist_refuses_a_gpu_id_without_cuda():
    with pytest.raises(LaunchError, match="gpu_id=0"):
        init_dist("none", gpu_id=0)
    assert init_dist("none").device == torch.device("cpu")


# ----------------------------------------------------------------------------- test
def test_eval_sets_iou_metrics_and_keeps_other_arguments(tmp_path, capsys):
    config = tmp_path / "seg.py"
    config.write_text(
        f"_base_ = [{str(SEG)!r}]\n"
        "test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'], nan_to_num=0)\n"
    )
    cfg, _ = cfg_for_test("--eval", "mIoU", "mDice", config=config)
    assert cfg.test_evaluator == dict(type="IoUMetric", iou_metrics=["mIoU", "mDice"], nan_to_num=0)
    (line,) = notices(capsys)
    assert line.startswith("notice: --eval is a 0.x flag")


def test_eval_on_a_1x_config():
    cfg, _ = cfg_for_test("--eval", "mFscore", config=PSP)
    assert cfg.test_evaluator == dict(type="IoUMetric", iou_metrics=["mFscore"])


def test_metrics_and_metric_options_on_classification(capsys):
    cfg, _ = cfg_for_test(
        "--metrics", "accuracy", "precision", "f1_score",
        "--metric-options", "topk=(1,)", "thrs=0.5", "average_mode=micro",
        config=CLS,
    )  # fmt: skip
    assert cfg.test_evaluator == [
        dict(type="Accuracy", topk=(1,), thrs=0.5),
        dict(type="SingleLabelMetric", items=["precision", "f1-score"], thrs=0.5, average="micro"),
    ]
    assert len(notices(capsys)) == 2  # --metrics, --metric-options


def test_metric_options_alone_edit_the_configs_accuracy():
    cfg, _ = cfg_for_test("--metric-options", "topk=(1,2)", config=CLS)
    assert cfg.test_evaluator == dict(type="Accuracy", topk=(1, 2))


def test_metric_option_without_its_metric_is_a_notice(capsys):
    cfg, _ = cfg_for_test("--metric-options", "average_mode=macro", config=CLS)
    assert cfg.test_evaluator == dict(type="Accuracy", topk=(1,))
    assert "no SingleLabelMetric" in notices(capsys)[-1]


@pytest.mark.parametrize(
    "config, flags, expected",
    [
        (CLS, ["--eval", "mIoU"], "Valid: accuracy, precision, recall, f1_score, support"),
        (SEG, ["--metrics", "accuracy"], "Valid: mIoU, mDice, mFscore"),
        (SEG, ["--eval", "miou"], "did you mean 'mIoU'?"),
        (CLS, ["--metric-options", "top_k=1"], "did you mean 'topk'?"),
        (CLS, ["--metric-options", "average_mode=weighted"], "macro, micro, none"),
        (CLS, ["--metric-options", "topk=0"], "expected e.g. topk=(1,5)"),
        (SEG, ["--eval-options", "to_label_id=True"], "Valid: imgfile_prefix, efficient_test"),
        (SEG, ["--eval", "mIoU", "--metrics", "mDice"], "--eval and --metrics both given"),
    ],
    ids=["seg-on-cls", "cls-on-seg", "close-name", "option-name", "average", "topk",
         "eval-option", "both"],
)  # fmt: skip
def test_bad_metric_flags_are_errors(config, flags, expected):
    with pytest.raises(UsageError) as info:
        cfg_for_test(*flags, config=config)
    assert expected in str(info.value)


def test_format_only_with_imgfile_prefix(tmp_path):
    cfg, _ = cfg_for_test("--format-only", "--eval-options", f"imgfile_prefix={tmp_path}")
    assert cfg.test_evaluator == dict(
        type="IoUMetric", iou_metrics=["mIoU"], format_only=True, output_dir=str(tmp_path)
    )


def test_format_only_on_an_evaluator_dict_with_metrics(tmp_path):
    config = tmp_path / "seg.py"
    config.write_text(
        f"_base_ = [{str(SEG)!r}]\n"
        "test_evaluator = dict(_delete_=True, type='Evaluator', metrics=[dict(type='IoUMetric')])\n"
    )
    cfg, _ = cfg_for_test(
        "--format-only", "--eval-options", f"imgfile_prefix={tmp_path}", config=config
    )
    assert cfg.test_evaluator == dict(
        type="Evaluator",
        metrics=[dict(type="IoUMetric", format_only=True, output_dir=str(tmp_path))],
    )


@pytest.mark.parametrize(
    "config, flags, expected",
    [
        (SEG, ["--format-only"], "needs a folder"),
        (SEG, ["--format-only", "--eval", "mIoU"], "computes no scores"),
        (CLS, ["--format-only", "--out", "d"], "needs an IoUMetric test_evaluator"),
    ],
)
def test_format_only_errors(config, flags, expected):
    with pytest.raises(UsageError, match=expected):
        cfg_for_test(*flags, config=config)


def test_efficient_test_is_ignored_with_a_notice(capsys):
    cfg, _ = cfg_for_test("--eval-options", "efficient_test=True", "nan_to_num=0")
    assert cfg.test_evaluator == dict(type="IoUMetric", iou_metrics=["mIoU"], nan_to_num=0)
    assert any("efficient_test has no effect" in ln for ln in notices(capsys))


def test_out_items_none_writes_metrics(capsys):
    cfg, args = cfg_for_test("--out-items", "none", "--out", "m.json", config=CLS)
    assert args.out_item == "metrics"
    assert cfg.test_evaluator == dict(type="Accuracy", topk=(1,))
    assert "--out-item metrics" in notices(capsys)[0]


def test_out_items_others_write_per_sample_records(capsys):
    cfg, args = cfg_for_test(
        "--out-items", "pred_score", "pred_label", "--out", "p.pkl", config=CLS
    )
    assert args.out_item == "pred"
    assert cfg.test_evaluator[-1] == dict(type="DumpResults", out_file_path="p.pkl")
    assert "per-sample records" in notices(capsys)[0]


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--out-items", "all"], "--out-items needs --out"),
        (["--out-items", "all", "--out", "a.pkl", "--out-item", "pred"], "both given"),
    ],
)
def test_out_items_errors(flags, expected):
    with pytest.raises(UsageError, match=expected):
        cfg_for_test(*flags, config=CLS)


def test_opacity_sets_the_visualizer_alpha():
    cfg, _ = cfg_for_test("--opacity", "0.3", config=PSP)
    assert cfg.visualizer.alpha == 0.3 and cfg.visualizer.type == "SegLocalVisualizer"


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1"])
def test_bad_opacity_is_an_error(value):
    with pytest.raises(UsageError, match=r"must be in \(0, 1\]"):
        cfg_for_test("--opacity", value, config=PSP)


def test_aug_test_is_tta(capsys):
    cfg, args = cfg_for_test("--aug-test", config=PSP)
    assert args.tta is True
    assert cfg.model.type == "SegTTAModel" and cfg.model.module.type == "EncoderDecoder"
    assert cfg.test_dataloader.dataset.pipeline == cfg.tta_pipeline
    assert "use --tta" in notices(capsys)[0]


def test_gpu_collect_and_tmpdir_change_nothing(capsys):
    plain, _ = cfg_for_test(config=CLS)
    capsys.readouterr()
    cfg, _ = cfg_for_test("--gpu-collect", "--tmpdir", "x", config=CLS)
    assert cfg.to_dict() == plain.to_dict()
    lines = notices(capsys)
    assert len(lines) == 2 and all("torch.distributed" in ln for ln in lines)
