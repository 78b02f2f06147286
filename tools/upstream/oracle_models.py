"""Upstream models on fixed weights and input, for numeric comparison with vistra.

``oracle.py models export CONFIG OUTDIR [--seed N] [--size H W] [--batch B]``
    builds the model of an upstream config with the upstream package, gives every
    parameter and every BatchNorm running statistic seeded random values, and writes
    ``OUTDIR/upstream.pth`` (the OpenMMLab checkpoint layout ``{'meta', 'state_dict'}``),
    ``OUTDIR/input.pt`` (a seeded normalised input batch) and ``OUTDIR/upstream_out.pt``
    (the outputs, see below). Prints the state_dict keys and shapes as JSON.

``oracle.py models run CONFIG CHECKPOINT INPUT OUT``
    builds the same model, loads ``CHECKPOINT``'s ``state_dict`` *strictly*, and writes
    the outputs on ``INPUT`` to ``OUT`` (this is how a checkpoint saved by vistra is shown
    to load into the upstream package and compute the same numbers).

``oracle.py models keys CONFIG [CONFIG ...]``
    prints {config: {key: shape} or {"error": ...}} for each config's model (built on the
    meta device where its constructor allows). ``models keys-batch SPEC.json`` does the
    same for a JSON list of ``{"config", "cfg_options"}`` (options applied first).

``oracle.py models export-batch SPEC.json`` / ``models run-batch SPEC.json``
    ``export`` / ``run`` for many models in one process (the upstream imports are paid
    once): SPEC is a JSON list of jobs, each ``{"config", "outdir", "seed", "size",
    "batch", "cfg_options", "tensor", "seg_logits"}`` (export; all but the first two
    optional) or ``{"config", "checkpoint", "input", "out", "cfg_options", "tensor",
    "seg_logits"}`` (run; see ``outputs`` for the last two). Prints
    ``{outdir or out: "ok" or "ErrorType: message"}``: a job that fails (a strict load
    that does not fit, say) does not stop the others.

Outputs (eval mode, ``torch.no_grad``): ``'tensor'``, the model's ``mode='tensor'`` result
(a classifier's logits, a segmentor's decode-head logits); for segmentors also
``'pred_sem_seg'``, the final per-pixel prediction of ``mode='predict'``. SyncBN is turned
into BN (same parameter names) so that a single CPU process can run the model.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

import torch

SCOPE_PACKAGES = {
    "mmpretrain": "mmpretrain",
    "mmcls": "mmcls",
    "mmseg": "mmseg",
    "mmselfsup": "mmselfsup",
}


def load_config(path: str, options: list[str] | None = None):
    import oracle_env
    from mmengine.config import Config, DictAction  # noqa: F401

    # a config's custom_imports may import mmcls/mmselfsup while it is read: import them
    # first through oracle_env, which passes their mmcv version check
    with open(path) as f:
        text = f.read()
    for package in ("mmcls", "mmselfsup"):
        if package in text:
            oracle_env.import_package(package)
    cfg = Config.fromfile(path)
    if options:
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("--cfg-options", nargs="+", action=DictAction)
        cfg.merge_from_dict(parser.parse_args(["--cfg-options", *options]).cfg_options)
    return cfg


def build_model(cfg):
    import oracle_env
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.registry import DefaultScope

    scope = cfg.get("default_scope", "mmpretrain")
    oracle_env.register_all(scope)
    from mmengine.registry import MODELS

    model_cfg = cfg.model
    if cfg.get("data_preprocessor") is not None and "data_preprocessor" not in model_cfg:
        model_cfg["data_preprocessor"] = cfg.data_preprocessor
    # a new scope instance is the current one (MMEngine's rule: the latest created), so each
    # build runs under its own config's scope, and what the caller builds next (optimizer
    # constructors, ...) does too: one process may build models of several packages in turn
    DefaultScope.get_instance(
        f"oracle-{scope}-{len(DefaultScope._instance_dict)}", scope_name=scope
    )
    model = MODELS.build(model_cfg)
    return revert_sync_batchnorm(model).eval()


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Seeded values for every parameter and buffer that a checkpoint carries."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("multinomial.prob"):
                continue  # NPID's alias table: probabilities, which must stay in [0, 1]
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            else:
                fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
                scale = 1.0 / max(fan_in, 1) ** 0.5 if tensor.dim() > 1 else 0.1
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * scale)
                if name.endswith(("norm.weight", "bn.weight", "ln.weight")) or ".bn" in name:
                    tensor.add_(1.0)


# Seeded before each forward: SegNeXt's Hamburger draws its NMF bases with torch.rand at
# every forward, in eval too, so its output is a function of the RNG state (vistra's side
# seeds the same way and draws the same numbers).
FORWARD_SEED = 0


def outputs(
    model: torch.nn.Module, inputs: torch.Tensor, tensor: bool = True, seg_logits: bool = False
) -> dict[str, torch.Tensor]:
    """``tensor=False`` leaves out ``'tensor'`` (MMSegmentation's CascadeEncoderDecoder
    cannot run ``mode='tensor'`` with a PointHead); ``seg_logits=True`` adds the
    segmentor's ``mode='predict'`` logits (``'seg_logits'``, at the input size)."""
    out = {}
    with torch.no_grad():
        if tensor:
            torch.manual_seed(FORWARD_SEED)
            out["tensor"] = _first_tensor(model(inputs, mode="tensor"))
        if _is_segmentor(model):
            torch.manual_seed(FORWARD_SEED)
            preds = _seg_predict(model, inputs)
            out["pred_sem_seg"] = torch.stack([p.pred_sem_seg.data for p in preds])
            if seg_logits:
                out["seg_logits"] = torch.stack([p.seg_logits.data for p in preds])
    return out


def _first_tensor(result):
    while isinstance(result, (list, tuple)):
        result = result[-1] if len(result) else result
    if isinstance(result, dict):
        result = next(iter(result.values()))
    return result.detach().clone()


def _is_segmentor(model) -> bool:
    return hasattr(model, "decode_head")


def _seg_predict(model, inputs: torch.Tensor) -> list:
    from mmseg.structures import SegDataSample

    h, w = inputs.shape[-2:]
    samples = []
    for _ in range(inputs.shape[0]):
        sample = SegDataSample()
        sample.set_metainfo(
            dict(
                img_shape=(h, w),
                ori_shape=(h, w),
                pad_shape=(h, w),
                padding_size=[0, 0, 0, 0],
                scale_factor=(1.0, 1.0),
                flip=False,
            )
        )
        samples.append(sample)
    return model(inputs, samples, mode="predict")


@contextlib.contextmanager
def _logs_to_stderr():
    """MMEngine's logger writes INFO lines to stdout (e.g. "Because batch augmentations
    are enabled, ..."), through a handler made before any redirect: point file
    descriptor 1 at stderr meanwhile, keeping stdout for the JSON the commands print."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _state_shapes(model) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def cmd_export(args: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="oracle.py models export")
    parser.add_argument("config")
    parser.add_argument("outdir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs=2, default=[64, 64])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--cfg-options", nargs="+", default=[])
    ns = parser.parse_args(args)
    with _logs_to_stderr():
        model = _export(
            ns.config, ns.outdir, ns.seed, ns.size, ns.batch, ns.channels, ns.cfg_options
        )
    json.dump(_state_shapes(model), sys.stdout)
    return 0


def _export(
    config,
    outdir,
    seed=0,
    size=(64, 64),
    batch=2,
    channels=3,
    cfg_options=None,
    tensor=True,
    seg_logits=False,
):
    cfg = load_config(config, cfg_options)
    torch.manual_seed(seed)
    model = build_model(cfg)
    randomise(model, seed)
    # eval() again: LeViT, TinyViT and EfficientFormer cache their attention biases when
    # eval() is called (as a test run does after loading a checkpoint), here the zeros they
    # were built with until then
    model.eval()
    gen = torch.Generator().manual_seed(seed + 1)
    inputs = torch.randn(batch, channels, *size, generator=gen)
    os.makedirs(outdir, exist_ok=True)
    meta = {
        "source": "upstream oracle",
        "config": os.path.basename(config),
        "scope": cfg.get("default_scope"),
    }
    torch.save(
        {"meta": meta, "state_dict": model.state_dict()}, os.path.join(outdir, "upstream.pth")
    )
    torch.save(inputs, os.path.join(outdir, "input.pt"))
    torch.save(outputs(model, inputs, tensor, seg_logits), os.path.join(outdir, "upstream_out.pt"))
    return model


def _run(config, checkpoint, input, out, cfg_options=None, tensor=True, seg_logits=False):  # noqa: A002
    model = build_model(load_config(config, cfg_options))
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt)
    _load_strictly(model, state)
    model.eval()  # rebuild the attention-bias caches from the loaded weights (see _export)
    torch.save(outputs(model, torch.load(input, weights_only=True), tensor, seg_logits), out)


# Buffers MMPretrain's Swin-V2 load hook deletes from every incoming state dict and rebuilds
# itself: its strict loader then misses them even for its own checkpoints.
REBUILT_BY_LOAD_HOOK = ("relative_position_index", "relative_coords_table")


def _load_strictly(model, state) -> None:
    """``load_state_dict(strict=True)``, except for the buffers the model's own load hook
    drops (REBUILT_BY_LOAD_HOOK); anything else missing or unexpected raises."""
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(REBUILT_BY_LOAD_HOOK)]
    dropped_by_hook = [k for k in result.missing_keys if k.endswith(REBUILT_BY_LOAD_HOOK)]
    if dropped_by_hook and any(k not in state for k in dropped_by_hook):
        missing += [k for k in dropped_by_hook if k not in state]  # truly absent: an error
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"strict load failed: missing {missing[:10]}, unexpected {result.unexpected_keys[:10]}"
        )


def _batch(args: list[str], job, name_key: str) -> int:
    with open(args[0]) as f:
        jobs = json.load(f)
    result = {}
    for spec in jobs:
        try:
            with _logs_to_stderr():
                job(**spec)
            result[spec[name_key]] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported per job
            result[spec[name_key]] = f"{type(exc).__name__}: {exc}"[:4000]
    json.dump(result, sys.stdout)
    return 0


def cmd_export_batch(args: list[str]) -> int:
    return _batch(args, _export, "outdir")


def cmd_run_batch(args: list[str]) -> int:
    return _batch(args, _run, "out")


def cmd_run(args: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="oracle.py models run")
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("input")
    parser.add_argument("out")
    parser.add_argument("--cfg-options", nargs="+", default=[])
    ns = parser.parse_args(args)
    _run(ns.config, ns.checkpoint, ns.input, ns.out, ns.cfg_options)
    return 0


def _keys_of(path: str, options: list[str] | None = None) -> dict[str, list[int]]:
    """Built on the meta device (no memory, no initialisation: seconds saved per ViT-L),
    or on the CPU where a constructor needs real values (e.g. a ``.item()``)."""
    cfg = load_config(path, options)
    try:
        with torch.device("meta"):
            return _state_shapes(build_model(cfg))
    except Exception:  # noqa: BLE001 - the CPU build reports the real error, if any
        return _state_shapes(build_model(load_config(path, options)))


def cmd_keys_batch(args: list[str]) -> int:
    """``keys`` for a JSON list of ``{"config", "cfg_options"}``: prints {config: ...}."""
    (spec,) = args
    with open(spec) as f:
        jobs = json.load(f)
    result = {}
    for job in jobs:
        try:
            with _logs_to_stderr():
                result[job["config"]] = _keys_of(job["config"], job.get("cfg_options"))
        except Exception as exc:  # noqa: BLE001 - reported per config
            result[job["config"]] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    json.dump(result, sys.stdout)
    return 0


def cmd_keys(args: list[str]) -> int:
    result = {}
    for path in args:
        try:
            with _logs_to_stderr():
                result[path] = _keys_of(path)
        except Exception as exc:  # noqa: BLE001 - reported per config
            result[path] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    json.dump(result, sys.stdout)
    return 0


def main(argv: list[str]) -> int:
    commands = {
        "export": cmd_export,
        "run": cmd_run,
        "keys": cmd_keys,
        "export-batch": cmd_export_batch,
        "run-batch": cmd_run_batch,
        "keys-batch": cmd_keys_batch,
    }
    if not argv or argv[0] not in commands:
        print(f"usage: oracle.py models {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])
