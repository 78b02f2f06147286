"""0.x runtime keys -> 1.x loops, evaluators, default hooks, visualizer and env_cfg.

``evaluation`` (MMCV's EvalHook) becomes ``train_cfg.val_interval``/``val_begin``, the
``val_evaluator``/``test_evaluator`` and the checkpoint hook's ``save_best``;
``checkpoint_config`` and ``log_config`` become default hooks and visualizer backends;
``dist_params``, ``cudnn_benchmark``, ``mp_start_method``, ``opencv_num_threads`` go to
``env_cfg``; ``resume_from``/``auto_resume`` to ``resume``/``load_from``.
"""

from __future__ import annotations

from typing import Any

from vistra.config.legacy.context import LegacyContext

SEG_METRICS = ("mIoU", "mDice", "mFscore")
# MMClassification 0.x metric -> SingleLabelMetric item
CLS_ITEMS = {
    "precision": "precision",
    "recall": "recall",
    "f1_score": "f1-score",
    "support": "support",
}

VISUALIZERS = {
    "segmentation": dict(type="SegLocalVisualizer", name="visualizer"),
    "classification": dict(type="UniversalVisualizer"),
    "selfsup": dict(type="UniversalVisualizer"),
}
VIS_HOOKS = {
    "segmentation": dict(type="SegVisualizationHook"),
    "classification": dict(type="VisualizationHook", enable=False),
    "selfsup": dict(type="VisualizationHook", enable=False),
}
SCOPES = {"segmentation": "mmseg", "classification": "mmpretrain", "selfsup": "mmpretrain"}

# MMCV logger hooks -> vistra visualizer backends (None: the text log, always written)
LOGGER_BACKENDS = {
    "TextLoggerHook": None,
    "TensorboardLoggerHook": "TensorboardVisBackend",
}

# Dropped without a replacement, each with the reason given in the note.
DROPPED = {
    "gpu_ids": "the device is chosen with --gpu-id (one process) or the launcher",
    "persistent_workers": "set on each dataloader",
}


def translate(ctx: LegacyContext) -> None:
    _translate_evaluation(ctx)
    _translate_hooks(ctx)
    _translate_env(ctx)
    _translate_resume(ctx)
    _translate_workflow(ctx)
    for key, reason in DROPPED.items():
        if key in ctx.new:
            ctx.new.pop(key)
            ctx.note(f"dropped: {key} ({reason})")
    ctx.new.setdefault("default_scope", SCOPES[ctx.task])


# ----------------------------------------------------------------------------- evaluation
def _translate_evaluation(ctx: LegacyContext) -> None:
    evaluation = dict(ctx.new.pop("evaluation", None) or {})
    has_val = ctx.new.get("val_dataloader") is not None
    has_test = ctx.new.get("test_dataloader") is not None
    if not has_val:
        if evaluation:
            ctx.note("dropped: evaluation (the config has no data.val to evaluate on)")
    else:
        train_cfg = ctx.new.get("train_cfg")
        if isinstance(train_cfg, dict):
            # MMCV's EvalHook validates every `interval` (default 1) epochs or iterations
            train_cfg["val_interval"] = int(evaluation.get("interval", 1))
            if evaluation.get("start") is not None:
                train_cfg["val_begin"] = int(evaluation["start"])
        ctx.new["val_cfg"] = dict(type="ValLoop")
        ctx.new["val_evaluator"] = _evaluator(ctx, evaluation)
        _save_best(ctx, evaluation)
        ctx.note(
            f"evaluation (interval {evaluation.get('interval', 1)}, metric "
            f"{evaluation.get('metric', 'default')}) -> train_cfg.val_interval, val_evaluator"
        )
    if has_test:
        ctx.new["test_cfg"] = dict(type="TestLoop")
        ctx.new["test_evaluator"] = _evaluator(ctx, evaluation)
    for key in ("pre_eval", "efficient_test", "gpu_collect", "tmpdir"):
        if key in evaluation:
            ctx.note(f"dropped: evaluation.{key} (vistra evaluates batch by batch, on every rank)")


def _evaluator(ctx: LegacyContext, evaluation: dict[str, Any]) -> Any:
    metric = evaluation.get("metric")
    names = [metric] if isinstance(metric, str) else list(metric or [])
    if ctx.task == "segmentation":
        return _seg_evaluator(ctx, names or ["mIoU"])
    if ctx.task == "classification":
        return _cls_evaluator(ctx, names or ["accuracy"], evaluation.get("metric_options") or {})
    if names:
        raise ctx.error(
            "evaluation.metric",
            f"{names} cannot be computed for a self-supervised model; evaluate its backbone "
            "with a linear-probe or kNN config",
        )
    return None


def _seg_evaluator(ctx: LegacyContext, names: list[str]) -> dict[str, Any]:
    unknown = [n for n in names if n not in SEG_METRICS]
    if unknown:
        raise ctx.error(
            "evaluation.metric", f"unknown metric {unknown}; supported: {', '.join(SEG_METRICS)}"
        )
    return dict(type="IoUMetric", iou_metrics=names)


def _cls_evaluator(
    ctx: LegacyContext, names: list[str], options: dict[str, Any]
) -> dict[str, Any] | list[dict[str, Any]]:
    unknown = [n for n in names if n != "accuracy" and n not in CLS_ITEMS]
    if unknown:
        raise ctx.error(
            "evaluation.metric",
            f"unknown metric {unknown}; supported: accuracy, {', '.join(CLS_ITEMS)}",
        )
    metrics: list[dict[str, Any]] = []
    if "accuracy" in names:
        # MMClassification 0.x reported top-1 and top-5 unless metric_options said otherwise
        accuracy = dict(type="Accuracy", topk=tuple(_as_tuple(options.get("topk", (1, 5)))))
        if options.get("thrs") is not None:
            accuracy["thrs"] = options["thrs"]
        metrics.append(accuracy)
    items = [CLS_ITEMS[n] for n in names if n in CLS_ITEMS]
    if items:
        single = dict(type="SingleLabelMetric", items=items)
        if options.get("average_mode") is not None:
            single["average"] = options["average_mode"]
        if options.get("thrs") is not None:
            single["thrs"] = options["thrs"]
        metrics.append(single)
    return metrics[0] if len(metrics) == 1 else metrics


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _save_best(ctx: LegacyContext, evaluation: dict[str, Any]) -> None:
    if not evaluation.get("save_best"):
        return
    hooks = ctx.new.setdefault("default_hooks", {})
    checkpoint = hooks.setdefault("checkpoint", dict(type="CheckpointHook"))
    best = evaluation["save_best"]
    # 0.x metric names -> 1.x keys: accuracy_top-1 -> accuracy/top1
    if isinstance(best, str) and best.startswith("accuracy_top-"):
        best = "accuracy/top" + best.split("-", 1)[1]
    checkpoint["save_best"] = best
    if evaluation.get("rule") is not None:
        checkpoint["rule"] = evaluation["rule"]


# ----------------------------------------------------------------------------- hooks
def _translate_hooks(ctx: LegacyContext) -> None:
    hooks = ctx.new.setdefault("default_hooks", {})
    hooks.setdefault("timer", dict(type="IterTimerHook"))
    hooks.setdefault("param_scheduler", dict(type="ParamSchedulerHook"))
    hooks.setdefault("sampler_seed", dict(type="DistSamplerSeedHook"))
    hooks.setdefault("visualization", dict(VIS_HOOKS[ctx.task]))
    _translate_checkpoint(ctx, hooks)
    backends = _translate_log_config(ctx, hooks)
    if "visualizer" not in ctx.new:
        ctx.new["vis_backends"] = backends
        ctx.new["visualizer"] = dict(VISUALIZERS[ctx.task], vis_backends=backends)


def _translate_checkpoint(ctx: LegacyContext, hooks: dict[str, Any]) -> None:
    old = dict(ctx.new.pop("checkpoint_config", None) or {})
    new = dict(hooks.get("checkpoint") or {})
    new.setdefault("type", "CheckpointHook")
    # MMCV's CheckpointHook counted epochs unless told otherwise; an IterBasedRunner's
    # configs always said by_epoch=False
    new["by_epoch"] = bool(old.pop("by_epoch", not ctx.iter_based))
    new["interval"] = old.pop("interval", new.get("interval", -1))
    for key in ("max_keep_ckpts", "save_optimizer", "save_last"):
        if key in old:
            new[key] = old.pop(key)
    if old.get("out_dir"):
        new["out_dir"] = old.pop("out_dir")
    old.pop("out_dir", None)
    dropped = [k for k in old if k != "type"]
    hooks["checkpoint"] = new
    ctx.note(
        f"checkpoint_config -> default_hooks.checkpoint (interval {new['interval']}, "
        f"by_epoch {new['by_epoch']})"
        + (
            f"; dropped {', '.join(dropped)} (last_checkpoint replaces the symlink)"
            if dropped
            else ""
        )
    )


def _translate_log_config(ctx: LegacyContext, hooks: dict[str, Any]) -> list[dict[str, Any]]:
    old = dict(ctx.new.pop("log_config", None) or {})
    logger = dict(hooks.get("logger") or dict(type="LoggerHook"))
    logger["interval"] = old.get("interval", logger.get("interval", 50))
    hooks["logger"] = logger
    by_epoch = not ctx.iter_based
    backends: list[dict[str, Any]] = [dict(type="LocalVisBackend")]
    for i, hook in enumerate(old.get("hooks") or []):
        kind = str(hook.get("type", ""))
        if kind not in LOGGER_BACKENDS:
            raise ctx.error(
                f"log_config.hooks[{i}]",
                f"{kind!r} has no vistra backend; supported: {', '.join(LOGGER_BACKENDS)}",
            )
        if kind == "TextLoggerHook" and "by_epoch" in hook:
            by_epoch = bool(hook["by_epoch"])
        if LOGGER_BACKENDS[kind]:
            backends.append(dict(type=LOGGER_BACKENDS[kind]))
    ctx.new["log_processor"] = dict(ctx.new.get("log_processor") or {}, by_epoch=by_epoch)
    if old:
        ctx.note(
            f"log_config (interval {logger['interval']}) -> default_hooks.logger, "
            f"vis_backends {[b['type'] for b in backends]}"
        )
    return backends


# ----------------------------------------------------------------------------- environment
def _translate_env(ctx: LegacyContext) -> None:
    env = dict(ctx.new.get("env_cfg") or {})
    env.setdefault("cudnn_benchmark", False)
    env.setdefault("mp_cfg", dict(mp_start_method="fork", opencv_num_threads=0))
    env.setdefault("dist_cfg", dict(backend="nccl"))
    moved = []
    if "cudnn_benchmark" in ctx.new:
        env["cudnn_benchmark"] = bool(ctx.new.pop("cudnn_benchmark"))
        moved.append("cudnn_benchmark")
    if "dist_params" in ctx.new:
        env["dist_cfg"] = dict(ctx.new.pop("dist_params") or {})
        moved.append("dist_params -> dist_cfg")
    for key in ("mp_start_method", "opencv_num_threads"):
        if key in ctx.new:
            env["mp_cfg"] = dict(env["mp_cfg"], **{key: ctx.new.pop(key)})
            moved.append(key)
    ctx.new["env_cfg"] = env
    if moved:
        ctx.note(f"{', '.join(moved)} -> env_cfg")
    if "seed" in ctx.new or "deterministic" in ctx.new:
        randomness = dict(ctx.new.get("randomness") or {})
        if "seed" in ctx.new:
            randomness["seed"] = ctx.new.pop("seed")
        if "deterministic" in ctx.new:
            randomness["deterministic"] = bool(ctx.new.pop("deterministic"))
        ctx.new["randomness"] = randomness
        ctx.note("seed/deterministic -> randomness")


def _translate_resume(ctx: LegacyContext) -> None:
    resume_from = ctx.new.pop("resume_from", None)
    auto_resume = ctx.new.pop("auto_resume", None)
    if resume_from:
        ctx.new["resume"], ctx.new["load_from"] = True, resume_from
        ctx.note(f"resume_from -> resume=True, load_from={resume_from!r}")
    elif auto_resume:
        ctx.new["resume"] = True
        ctx.note("auto_resume -> resume=True (the latest checkpoint in the work dir)")
    else:
        ctx.new.setdefault("resume", False)
    ctx.new.setdefault("load_from", None)


def _translate_workflow(ctx: LegacyContext) -> None:
    workflow = ctx.new.pop("workflow", None)
    if not workflow:
        return
    phases = [str(phase[0]) for phase in workflow]
    if "val" in phases:
        ctx.note(
            "dropped: workflow ('val', n): MMCV computed validation losses; vistra "
            "validates with val_evaluator every train_cfg.val_interval"
        )
    else:
        ctx.note("workflow [('train', n)] -> the train loop (the only phase it had)")
