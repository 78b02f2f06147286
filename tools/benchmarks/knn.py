"""kNN evaluation of a (pre-)trained backbone, MMSelfSup's ``test_knn.py`` benchmark.

    python tools/benchmarks/knn.py CONFIG [CHECKPOINT] [--num-knn 10 20 100 200]
        [--temperature 0.07] [--feature-norm | --no-feature-norm] [--dataset-config FILE]
        [--work-dir D] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

The config's model is built and CHECKPOINT loaded into it (weights only, not strictly: a
pre-training checkpoint has extra neck/head keys, a classifier config an extra head). With
no CHECKPOINT the model keeps the config's own weights (``init_cfg``, e.g. a ``Pretrained``
backbone, or a random initialisation). Backbone features (a ViT's class token, a CNN's
average-pooled last stage) of the train and val sets, both through the val set's (test)
pipeline, are gathered from every rank; rank 0 classifies each val feature by weighted
votes of its nearest train features and prints and writes top-1/top-5 accuracy in %.

Datasets come from the config's ``train_dataloader`` and ``val_dataloader`` (else
``test_dataloader``), or from ``--dataset-config``. Output goes to
``<work_dir>/knn/<timestamp>/``: the log and ``<timestamp>.json`` (the accuracies);
``<work_dir>`` defaults to ``work_dirs/<config name>``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from pathlib import Path
from typing import Any

from vistra.cli.common import UsageError, add_common_arguments, load_config, run_reporting_errors
from vistra.cli.errors import ArgumentParser

logger = logging.getLogger("vistra")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="tools/benchmarks/knn.py",
        description="Weighted kNN classification with a model's backbone features.",
    )
    p.add_argument("config", help="config file whose model and datasets are used")
    p.add_argument(
        "checkpoint",
        nargs="?",
        default=None,
        help="checkpoint to load (default: the config's own init_cfg weights)",
    )
    add_common_arguments(p)
    p.add_argument(
        "--dataset-config",
        help="take train_dataloader and val_dataloader from this file instead of CONFIG",
    )
    p.add_argument(
        "--num-knn",
        nargs="+",
        type=int,
        default=[10, 20, 100, 200],
        help="numbers of neighbours to evaluate (default 10 20 100 200)",
    )
    p.add_argument(
        "--temperature", type=float, default=0.07, help="vote weight exp(similarity / T)"
    )
    p.add_argument(
        "--feature-norm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="L2-normalise features so that similarity is cosine (default on)",
    )
    return p


def check_args(args: argparse.Namespace) -> None:
    if any(k < 1 for k in args.num_knn):
        raise UsageError(f"--num-knn values must be >= 1, got {args.num_knn}")
    if args.temperature <= 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    for flag, path in (("CHECKPOINT", args.checkpoint), ("--dataset-config", args.dataset_config)):
        if path and "://" not in path and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path}: no such file")


# ---------------------------------------------------------------------------- config
def knn_dataloaders(cfg: Any, dataset_cfg: Any) -> tuple[dict, dict]:
    """Train and val loader configs: unshuffled, complete, both with the val pipeline."""
    source = dataset_cfg if dataset_cfg is not None else cfg
    name = "--dataset-config" if dataset_cfg is not None else "the config"
    train = source.get("train_dataloader")
    val = source.get("val_dataloader") or source.get("test_dataloader")
    if train is None or val is None:
        raise UsageError(
            f"kNN needs a train_dataloader and a val_dataloader (or test_dataloader) in {name}; "
            "a pre-training config has no labelled val set: pass --dataset-config with a "
            "classification config (e.g. the linear-probe benchmark config)"
        )
    val = copy.deepcopy(dict(val))
    pipeline = _find_pipeline(val["dataset"])
    if pipeline is None:
        raise UsageError(f"{name}: the val dataset has no pipeline to reuse for the train set")
    train_loader = dict(
        batch_size=val.get("batch_size", 32),
        num_workers=val.get("num_workers", 0),
        dataset=copy.deepcopy(dict(train["dataset"])),
        sampler=dict(type="DefaultSampler", shuffle=False),
    )
    _set_pipeline(train_loader["dataset"], pipeline)
    val.update(sampler=dict(type="DefaultSampler", shuffle=False), drop_last=False)
    return train_loader, val


def _find_pipeline(dataset: dict) -> list | None:
    if "pipeline" in dataset:
        return copy.deepcopy(list(dataset["pipeline"]))
    inner = dataset.get("dataset") or (dataset.get("datasets") or [None])[0]
    return _find_pipeline(inner) if isinstance(inner, dict) else None


def _set_pipeline(dataset: dict, pipeline: list) -> None:
    """Replace the pipeline(s) of a dataset config, through dataset wrappers."""
    if "pipeline" in dataset or not ("dataset" in dataset or "datasets" in dataset):
        dataset["pipeline"] = copy.deepcopy(pipeline)
    for inner in [dataset.get("dataset"), *(dataset.get("datasets") or [])]:
        if isinstance(inner, dict):
            _set_pipeline(inner, pipeline)


def drop_pretrained_init(node: Any) -> None:
    """Remove ``Pretrained`` init_cfg entries: the CHECKPOINT argument replaces them (and
    benchmark configs leave their ``checkpoint`` empty)."""
    if isinstance(node, dict):
        init = node.get("init_cfg")
        if isinstance(init, dict) and init.get("type") == "Pretrained":
            node["init_cfg"] = None
        elif isinstance(init, list):
            node["init_cfg"] = [c for c in init if c.get("type") != "Pretrained"] or None
        for value in node.values():
            drop_pretrained_init(value)
    elif isinstance(node, list):
        for value in node:
            drop_pretrained_init(value)


# ---------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> dict[str, Any] | None:
    import torch.distributed as torch_dist

    from vistra.checkpoint import CheckpointError
    from vistra.config import Config
    from vistra.dist import destroy_dist, revert_sync_batchnorm, unwrap
    from vistra.engine import build as B
    from vistra.engine.runner import Runner
    from vistra.evaluation.knn import extract_features

    check_args(args)
    cfg, options = load_config(
        args.config, args.work_dir, args.launcher, args.local_rank, args.cfg_options
    )
    if options:
        cfg.merge_from_dict(options)
    dataset_cfg = Config.fromfile(args.dataset_config) if args.dataset_config else None
    train_cfg, val_cfg = knn_dataloaders(cfg, dataset_cfg)
    if args.checkpoint:
        drop_pretrained_init(cfg.model)
    cfg.work_dir = str(Path(cfg.work_dir) / "knn")
    runner = Runner.from_config(cfg)
    try:
        model = revert_sync_batchnorm(unwrap(runner.model))
        model.init_weights()
        if args.checkpoint:
            report = runner.load_checkpoint(args.checkpoint)
            if not report.loaded:
                raise CheckpointError(
                    f"{args.checkpoint} has no weight for this model (is it the right config?)"
                )
        else:
            logger.info("no CHECKPOINT: features come from the config's own weights")
        model.to(runner.device)
        pin = runner.device.type == "cuda" and not args.no_pin_memory
        features, num_classes = {}, None
        for split, loader_cfg in (("train", train_cfg), ("val", val_cfg)):
            loader = B.build_dataloader(
                loader_cfg, f"knn {split}", runner.seed, runner.rank, pin_memory_default=pin
            )
            logger.info("extracting %s features of %d images", split, len(loader.dataset))
            features[split] = extract_features(model, loader, len(loader.dataset))
            if split == "train":  # the class count, even if some class has no sample
                num_classes = len(
                    (getattr(loader.dataset, "metainfo", None) or {}).get("classes") or []
                )
        results = None
        if runner.rank == 0:
            results = evaluate(args, features, num_classes, runner.device)
            write_results(args, runner, results, features)
        if torch_dist.is_initialized():
            # leave together: a rank that tears gloo down and exits while rank 0 still
            # evaluates made the other end abort ("terminate called ...", SIGABRT)
            torch_dist.barrier()
        return results
    finally:
        destroy_dist()


def evaluate(
    args: argparse.Namespace, features: dict, num_classes: int | None, device: Any
) -> dict:
    from vistra.evaluation.knn import knn_eval_many

    (train_x, train_y), (val_x, val_y) = features["train"], features["val"]
    found = int(max(train_y.max(), val_y.max())) + 1
    num_classes = max(num_classes or 0, found)
    if max(args.num_knn) > len(train_x):
        logger.warning(
            "k up to %d but only %d train features: larger k use all of them",
            max(args.num_knn),
            len(train_x),
        )
    accs = knn_eval_many(
        train_x.to(device),
        train_y,
        val_x.to(device),
        val_y,
        args.num_knn,
        T=args.temperature,
        num_classes=num_classes,
        normalize=args.feature_norm,
    )
    for k, (top1, top5) in accs.items():
        logger.info("%d-NN classifier result: Top1: %.2f, Top5: %.2f", k, top1, top5)
    return {str(k): {"top1": top1, "top5": top5} for k, (top1, top5) in accs.items()}


def write_results(args: argparse.Namespace, runner: Any, results: dict, features: dict) -> Path:
    record = {
        "config": str(args.config),
        "checkpoint": args.checkpoint,
        "temperature": args.temperature,
        "feature_norm": args.feature_norm,
        "num_train": len(features["train"][0]),
        "num_val": len(features["val"][0]),
        "feature_dim": int(features["train"][0].shape[1]),
        "knn": results,
    }
    path = Path(runner.log_dir) / f"{runner.timestamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    logger.info("kNN accuracies written to %s", path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
