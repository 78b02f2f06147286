"""The engine's hooks in real in-process runs: EMA, early stopping and checkpointing.

Every run trains a one-stage ResNet on a few 16x16 synthetic images, so each takes well
under a second. ``ScriptedMetric`` reports values a test fixes in advance, which makes
"best" and "no improvement" exact instead of depending on what a tiny model learns.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_classifier import (
    one_thread,  # noqa: F401 - a fixture for this module
    tiny_classifier_cfg,
)

from vistra.config import Config
from vistra.dist.model_wrap import unwrap
from vistra.engine.hooks import CheckpointHook, EarlyStoppingHook, EMAHook, Hook
from vistra.engine.hooks.checkpoint_hook import infer_rule
from vistra.engine.runner import Runner
from vistra.evaluation.metric import BaseMetric
from vistra.registry import HOOKS, METRICS


# ----------------------------------------------------------------------------- helpers
@METRICS.register_module(force=True)
class ScriptedMetric(BaseMetric):
    """Reports ``values[k]`` under ``key`` at the k-th evaluation (the last one repeats).
    Values are given as numbers or strings (``'nan'``) so configs stay plain literals."""

    def __init__(self, key: str = "score", values: list = (0.0,), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key, self.values, self.calls = key, [float(v) for v in values], 0

    def process(self, data_batch: Any, data_samples: list) -> None:
        self.results.extend(0 for _ in data_samples)

    def compute_metrics(self, results: list) -> dict[str, float]:
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return {self.key: value}


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in unwrap(module).state_dict().items()}


@HOOKS.register_module(force=True)
class HooksTestProbe(Hook):
    """Records what other hooks leave behind: the weights the model holds when evaluation
    starts, the EMA state when training starts, and ``last_checkpoint`` after validation."""

    priority = "LOWEST"  # after the checkpoint hook in after_val_epoch

    def __init__(self) -> None:
        self.val_weights: list[dict] = []
        self.test_weights: list[dict] = []
        self.start_weights: dict = {}
        self.start_ema: dict = {}
        self.last_checkpoint_after_val: list[str | None] = []

    def before_train(self, runner: Any) -> None:
        self.start_weights = _state(runner.model)
        for hook in runner.hooks:
            if isinstance(hook, EMAHook):
                self.start_ema = _state(hook.ema_model.module)

    def before_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        if batch_idx == 0:
            self.val_weights.append(_state(runner.model))

    def before_test_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        if batch_idx == 0:
            self.test_weights.append(_state(runner.model))

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        pointer = Path(runner.work_dir) / "last_checkpoint"
        self.last_checkpoint_after_val.append(pointer.read_text() if pointer.exists() else None)


tiny_cfg = tiny_classifier_cfg


def scripted(cfg: dict, values: list, key: str = "score", **checkpoint: Any) -> dict:
    """``cfg`` validated by a ScriptedMetric, with checkpoint hook arguments ``checkpoint``."""
    cfg = copy.deepcopy(cfg)
    cfg["val_evaluator"] = dict(type="ScriptedMetric", key=key, values=values)
    if checkpoint:
        hooks = cfg["default_hooks"]
        hooks["checkpoint"] = dict(type="CheckpointHook", **checkpoint)
    return cfg


def build(cfg: dict) -> Runner:
    return Runner.from_config(Config(copy.deepcopy(cfg)))


def train(cfg: dict) -> Runner:
    runner = build(cfg)
    runner.train()
    return runner


def hook_of(runner: Runner, cls: type) -> Any:
    (hook,) = [h for h in runner.hooks if isinstance(h, cls)]
    return hook


def log_text(work_dir: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(Path(work_dir).glob("*/*.log")))


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def same(a: dict, b: dict, keys: list[str] | None = None) -> bool:
    return all(torch.equal(a[k], b[k]) for k in (keys or list(a)))


def pth_names(work_dir: Path) -> set[str]:
    return {p.name for p in Path(work_dir).glob("*.pth")}


# ----------------------------------------------------------------------------- EMA
EMA = dict(type="EMAHook", momentum=0.5)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    """Two epochs with an EMA (momentum 0.5), validated each epoch."""
    work = tmp_path_factory.mktemp("ema")
    cfg = tiny_cfg(work, custom_hooks=[EMA, dict(type="HooksTestProbe")])
    runner = train(cfg)
    return runner, work, cfg


def test_ema_weights_differ_from_the_raw_weights(ema_run):
    runner, _, _ = ema_run
    raw = _state(runner.model)
    ema = _state(hook_of(runner, EMAHook).ema_model.module)
    params = [k for k, _ in runner.model.named_parameters()]
    assert not same(raw, ema, params)


def test_validation_runs_with_the_ema_weights(ema_run):
    runner, _, _ = ema_run
    probe = hook_of(runner, HooksTestProbe)
    ema = _state(hook_of(runner, EMAHook).ema_model.module)
    raw = _state(runner.model)
    params = [k for k, _ in runner.model.named_parameters()]
    assert len(probe.val_weights) == 2
    # the last validation came after the last update: it saw exactly today's EMA
    assert same(probe.val_weights[-1], ema)
    assert not same(probe.val_weights[-1], raw, params)


def test_checkpoint_state_dict_holds_ema_and_ema_state_dict_the_raw_weights(ema_run):
    runner, work, _ = ema_run
    ckpt = load(work / "epoch_2.pth")
    ema = _state(hook_of(runner, EMAHook).ema_model.module)
    raw = _state(runner.model)
    assert same(ckpt["state_dict"], ema)
    assert {k[len("module.") :] for k in ckpt["ema_state_dict"] if k != "steps"} == set(raw)
    assert all(torch.equal(ckpt["ema_state_dict"][f"module.{k}"], v) for k, v in raw.items())
    assert int(ckpt["ema_state_dict"]["steps"]) == 4  # 2 epochs x 2 iterations


def test_resume_restores_raw_and_ema_weights_exactly(ema_run, tmp_path):
    _, work, cfg = ema_run
    first = load(work / "epoch_1.pth")
    resumed = dict(cfg, work_dir=str(tmp_path), resume=True, load_from=str(work / "epoch_1.pth"))
    runner = train(resumed)
    probe = hook_of(runner, HooksTestProbe)
    raw_saved = {k[len("module.") :]: v for k, v in first["ema_state_dict"].items() if k != "steps"}
    assert same(probe.start_weights, raw_saved)  # the model continues from the raw weights
    assert same(probe.start_ema, first["state_dict"])  # the EMA from the averaged ones
    # ... and the resumed run ends bit-identical to the uninterrupted one
    a, b = load(work / "epoch_2.pth"), load(tmp_path / "epoch_2.pth")
    assert same(a["state_dict"], b["state_dict"]) and same(a["ema_state_dict"], b["ema_state_dict"])


def test_test_on_an_ema_checkpoint_uses_the_ema_weights(ema_run, tmp_path):
    _, work, cfg = ema_run
    ckpt = load(work / "epoch_2.pth")
    test_cfg = dict(
        cfg,
        work_dir=str(tmp_path),
        test_dataloader=cfg["val_dataloader"],
        test_evaluator=cfg["val_evaluator"],
        test_cfg=dict(),
        load_from=str(work / "epoch_2.pth"),
    )
    runner = build(test_cfg)
    runner.test()
    (seen,) = hook_of(runner, HooksTestProbe).test_weights
    assert same(seen, ckpt["state_dict"])
    raw = {k[len("module.") :]: v for k, v in ckpt["ema_state_dict"].items() if k != "steps"}
    assert not same(seen, raw, [k for k, _ in runner.model.named_parameters()])


@pytest.mark.parametrize("begin", [dict(begin_iter=3), dict(begin_epoch=2)])
def test_ema_begins_where_mmengine_begins(tmp_path, begin):
    # MMEngine: updates start once iter + 1 >= begin_iter (resp. epoch + 1 >= begin_epoch);
    # 2 epochs x 2 iterations, so both settings average the last two iterations.
    runner = train(tiny_cfg(tmp_path, custom_hooks=[dict(EMA, **begin)]))
    assert int(hook_of(runner, EMAHook).ema_model.steps) == 2


def test_ema_begin_iter_and_begin_epoch_together_are_refused():
    with pytest.raises(ValueError, match="begin_iter.*begin_epoch"):
        EMAHook(begin_iter=2, begin_epoch=1)


def test_ema_with_update_buffers_validates_with_averaged_buffers(tmp_path):
    hooks = [dict(EMA, update_buffers=True), dict(type="HooksTestProbe")]
    runner = train(tiny_cfg(tmp_path, custom_hooks=hooks))
    ema = _state(hook_of(runner, EMAHook).ema_model.module)
    seen = hook_of(runner, HooksTestProbe).val_weights[-1]
    assert not torch.equal(
        ema["backbone.bn1.running_mean"], _state(runner.model)["backbone.bn1.running_mean"]
    )
    assert torch.equal(seen["backbone.bn1.running_mean"], ema["backbone.bn1.running_mean"])


def test_ema_load_from_a_checkpoint_with_another_head_fine_tunes(ema_run, tmp_path):
    # Fine-tuning: load_from a 3-class checkpoint into a 4-class model. The EMA copy must
    # take what fits, as the model does, instead of failing on the head's shape.
    _, work, cfg = ema_run
    new = copy.deepcopy(cfg)
    new.update(work_dir=str(tmp_path), load_from=str(work / "epoch_1.pth"))
    new["model"]["head"]["num_classes"] = 4
    new["model"]["data_preprocessor"]["num_classes"] = 4
    new["train_cfg"]["max_epochs"] = 1
    runner = train(new)
    start_ema = hook_of(runner, HooksTestProbe).start_ema
    loaded = load(work / "epoch_1.pth")["state_dict"]
    backbone = [k for k in start_ema if k.startswith("backbone.")]
    assert backbone and same(start_ema, loaded, backbone)
    assert start_ema["head.fc.weight"].shape == (4, 8)


# ----------------------------------------------------------------------------- early stopping
@pytest.mark.parametrize(
    "hook, values, epochs, reason",
    [
        # a metric that cannot improve: best at epoch 1, then 2 validations without improvement
        (dict(monitor="score", rule="greater", patience=2), [0.5], 3, "did not improve"),
        # 'loss' in the name: smaller is better, so 2.0 after 1.0 is no improvement
        (dict(monitor="val_loss", patience=1, min_delta=0.0), [1.0, 2.0], 2, "did not improve"),
        # MMEngine compares strictly with the threshold: 0.5 does not stop, 0.6 does
        (
            dict(monitor="score", rule="greater", stopping_threshold=0.5, patience=9),
            [0.2, 0.5, 0.6],
            3,
            "threshold",
        ),
        # an improvement of exactly min_delta counts as one (MMEngine)
        (
            dict(monitor="score", rule="greater", min_delta=0.25, patience=1),
            [0.5, 0.75, 1.0, 1.25, 1.5],
            None,
            None,
        ),
        (dict(monitor="score", rule="greater"), ["nan"], 1, "nan"),
    ],
)
def test_early_stopping(tmp_path, hook, values, epochs, reason):
    cfg = scripted(tiny_cfg(tmp_path, max_epochs=5, train_samples=4), values, hook["monitor"])
    cfg["custom_hooks"] = [dict(type="EarlyStoppingHook", **hook)]
    runner = train(cfg)
    log = log_text(tmp_path)
    if epochs is None:  # never stops early
        assert runner.epoch == 5 and "early stopping" not in log.lower()
        return
    assert runner.epoch == epochs
    assert f"epoch_{epochs}.pth" in pth_names(tmp_path)
    assert f"epoch_{epochs + 1}.pth" not in pth_names(tmp_path)
    stop_lines = [ln for ln in log.splitlines() if "early stopping" in ln.lower()]
    assert len(stop_lines) == 1 and reason in stop_lines[0].lower(), stop_lines


def test_early_stopping_rule_inference_and_missing_monitor(tmp_path):
    assert EarlyStoppingHook(monitor="loss").rule == "less"
    assert EarlyStoppingHook(monitor="accuracy/top1").rule == "greater"
    with pytest.raises(ValueError, match="rule"):
        EarlyStoppingHook(monitor="fid")
    cfg = scripted(tiny_cfg(tmp_path, max_epochs=1, train_samples=4), [1.0])
    cfg["custom_hooks"] = [dict(type="EarlyStoppingHook", monitor="accuracy", strict=True)]
    with pytest.raises(RuntimeError, match="accuracy"):
        train(cfg)


# ----------------------------------------------------------------------------- checkpoints
def test_max_keep_ckpts_keeps_the_newest_periodic_file_also_after_resume(tmp_path):
    cfg = scripted(
        tiny_cfg(tmp_path, max_epochs=3, train_samples=4),
        [3.0, 2.0, 1.0],
        interval=1,
        max_keep_ckpts=1,
        save_best="score",
        rule="greater",
    )
    train(cfg)
    assert pth_names(tmp_path) == {"epoch_3.pth", "best_score_epoch_1.pth"}
    cfg["train_cfg"]["max_epochs"] = 4
    cfg["val_evaluator"]["values"] = [0.0]
    train(dict(cfg, resume=True))
    assert pth_names(tmp_path) == {"epoch_4.pth", "best_score_epoch_1.pth"}


@pytest.mark.parametrize(
    "key, values, extra, best_epoch",
    [
        ("accuracy/top1", [50.0, 40.0, 60.0, 55.0], {}, 3),  # 'acc' -> greater
        ("val_loss", [1.0, 2.0, 0.5, 0.7], {}, 3),  # 'loss' -> less
        # user keys replace the defaults and an exact match wins over a substring (MMEngine)
        ("accuracy", [50.0, 40.0, 60.0, 30.0], dict(less_keys=["accuracy"]), 4),
    ],
)
def test_save_best_infers_the_rule_from_the_key(tmp_path, key, values, extra, best_epoch):
    cfg = scripted(
        tiny_cfg(tmp_path, max_epochs=4, train_samples=4),
        values,
        key=key,
        interval=1,
        save_best="auto" if not extra else key,
        **extra,
    )
    runner = train(cfg)
    best_name = f"best_{key.replace('/', '_')}_epoch_{best_epoch}.pth"
    assert {n for n in pth_names(tmp_path) if n.startswith("best_")} == {best_name}
    assert runner.message_hub.get_info("best_score") == values[best_epoch - 1]
    assert runner.message_hub.get_info("best_ckpt") == best_name
    assert f"is saved to {best_name}" in log_text(tmp_path)


def test_infer_rule_follows_mmengine_order():
    assert infer_rule("accuracy/top1", ["acc", "top"], ["loss"]) == "greater"
    assert infer_rule("val_loss", ["acc"], ["loss"]) == "less"
    assert infer_rule("accuracy", ["acc"], ["accuracy"]) == "less"  # exact match first
    with pytest.raises(ValueError, match="rule"):
        infer_rule("fid", ["acc"], ["loss"])
    with pytest.raises(ValueError, match="score"):  # found out when the hook is built
        CheckpointHook(interval=1, save_best="score")


def test_best_checkpoint_state_survives_resume(tmp_path):
    cfg = scripted(
        tiny_cfg(tmp_path, max_epochs=2, train_samples=4),
        [10.0, 20.0],
        interval=1,
        save_best="score",
        rule="greater",
    )
    train(cfg)
    assert "best_score_epoch_2.pth" in pth_names(tmp_path)

    def resumed(value: float, max_epochs: int) -> dict:
        new = copy.deepcopy(cfg)
        new["val_evaluator"]["values"] = [value]
        new["train_cfg"]["max_epochs"] = max_epochs
        return dict(new, resume=True)

    # a worse score after resuming must not replace the better best from before
    train(resumed(15.0, 3))
    assert {n for n in pth_names(tmp_path) if n.startswith("best_")} == {"best_score_epoch_2.pth"}
    hub = load(tmp_path / "epoch_3.pth")["message_hub"]["runtime_info"]
    assert hub["best_score"] == 20.0 and hub["best_ckpt"] == "best_score_epoch_2.pth"

    # a better one replaces the old best file, whose name came back with the resume
    train(resumed(30.0, 4))
    assert {n for n in pth_names(tmp_path) if n.startswith("best_")} == {"best_score_epoch_4.pth"}


@pytest.mark.parametrize(
    "interval, save_begin, saved",
    [(2, 1, {"epoch_1.pth", "epoch_3.pth"}), (1, 3, {"epoch_3.pth", "epoch_4.pth"})],
)
def test_save_begin(tmp_path, interval, save_begin, saved):
    cfg = tiny_cfg(tmp_path, max_epochs=4, train_samples=4)
    cfg["default_hooks"]["checkpoint"] = dict(
        type="CheckpointHook", interval=interval, save_begin=save_begin, save_last=False
    )
    train(cfg)
    assert pth_names(tmp_path) == saved


def test_save_begin_must_not_be_negative():
    with pytest.raises(ValueError, match="save_begin"):
        CheckpointHook(interval=1, save_begin=-1)


def test_filename_tmpl_names_periodic_and_best_files(tmp_path):
    cfg = scripted(
        tiny_cfg(tmp_path, max_epochs=2, train_samples=4),
        [1.0, 2.0],
        interval=1,
        filename_tmpl="ckpt_{:02d}.pth",
        save_best="score",
        rule="greater",
    )
    train(cfg)
    # MMEngine formats the best file's suffix with the same template
    assert pth_names(tmp_path) == {"ckpt_01.pth", "ckpt_02.pth", "best_score_ckpt_02.pth"}
    assert (tmp_path / "last_checkpoint").read_text() == "ckpt_02.pth"


def test_iteration_checkpoints_in_an_epoch_based_run(tmp_path):
    cfg = tiny_cfg(tmp_path, max_epochs=2)  # 2 iterations per epoch, 4 in all
    cfg["default_hooks"]["checkpoint"] = dict(type="CheckpointHook", by_epoch=False, interval=3)
    train(cfg)
    assert pth_names(tmp_path) == {"iter_3.pth", "iter_4.pth"}  # every 3 and the last
    assert load(tmp_path / "iter_3.pth")["meta"]["iter"] == 3


def test_epoch_checkpoint_hook_in_an_iteration_based_run_saves_at_the_end(tmp_path):
    # The default checkpoint hook counts epochs; an iteration-based run has one, so (as
    # in MMEngine) epoch_1.pth is written when it ends, after the last validation.
    cfg = tiny_cfg(tmp_path, train_cfg=dict(by_epoch=False, max_iters=3, val_interval=1))
    train(cfg)
    assert pth_names(tmp_path) == {"epoch_1.pth"}
    assert load(tmp_path / "epoch_1.pth")["meta"]["iter"] == 3


def test_last_checkpoint_is_relative_and_never_names_a_best_file(tmp_path):
    cfg = scripted(
        tiny_cfg(tmp_path, max_epochs=3, train_samples=4),
        [1.0, 2.0, 3.0],
        interval=2,
        save_best="score",
        rule="greater",
    )
    cfg["custom_hooks"] = [dict(type="HooksTestProbe")]
    runner = train(cfg)
    seen = hook_of(runner, HooksTestProbe).last_checkpoint_after_val
    # epoch 1 wrote only a best file (not a resume point); epochs 2 and 3 periodic ones
    assert seen == [None, "epoch_2.pth", "epoch_3.pth"]
    assert "best_score_epoch_3.pth" in pth_names(tmp_path)


def test_out_dir_gets_the_work_dir_name_appended(tmp_path):
    work = tmp_path / "exp"
    cfg = tiny_cfg(work, max_epochs=1, train_samples=4)
    cfg["default_hooks"]["checkpoint"] = dict(
        type="CheckpointHook", interval=1, out_dir=str(tmp_path / "ckpts")
    )
    train(cfg)
    assert (tmp_path / "ckpts" / "exp" / "epoch_1.pth").is_file()  # MMEngine's layout
    assert not pth_names(work)
    target = Path((work / "last_checkpoint").read_text())
    assert target.resolve() == (tmp_path / "ckpts" / "exp" / "epoch_1.pth").resolve()


def test_runtime_info_carries_mmengine_counters(tmp_path):
    runner = train(tiny_cfg(tmp_path, max_epochs=1))
    hub = runner.message_hub
    assert hub.get_info("max_epochs") == 1 and hub.get_info("max_iters") == 2
    assert hub.get_info("epoch") == 0 and hub.get_info("iter") == 1  # at the last iteration
    assert math.isclose(hub.get_scalar("train/lr").current(), 0.05)
