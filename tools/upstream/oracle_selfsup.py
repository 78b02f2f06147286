"""Self-supervised losses of upstream models on fixed weights, input and masking noise.

``oracle.py selfsup export CONFIG OUTDIR [--seed N] [--size S] [--batch B] [--views V] [--check CKPT]``
    builds the model of an MMSelfSup (or MMPretrain) pre-training config, gives it seeded
    random weights (``oracle_models.randomise``), and writes ``upstream.pth``,
    ``input.pt`` (a list of ``V`` normalised views, each ``(B, 3, S, S)``), ``noise.pt``
    (uniform ``(B, L)`` masking noise, ``L`` the encoder's patch count; an empty tensor
    when the model has no masking) and ``upstream_out.pt``: ``{'loss': ..., 'pred': ...}``
    where ``pred`` is the decoder's patch predictions (MAE) or the L2-normalised neck
    projections of the interleaved views (contrastive models). With ``--check CKPT`` the
    same model then loads ``CKPT`` strictly and writes its outputs on the same views and
    noise to ``OUTDIR/checkpoint_out.pt`` (both directions in one process).

``oracle.py selfsup loss-batch SPEC.json``
    for each job of SPEC (a JSON list of ``{"config", "outdir", "seed", "sizes", "batch",
    "single", "mask", "sample_idx", "pseudo_label", "cfg_options"}``, all but the first two
    optional; ``pseudo_label``: ``[[name, nested int list], ...]`` every sample carries)
    builds the model, randomises it, and writes ``OUTDIR/upstream.pth``,
    ``OUTDIR/batch.pt`` and ``OUTDIR/losses.pt``. The batch is what a dataloader would
    give the data preprocessor: ``inputs``, one ``(B, 3, s, s)`` tensor of pixel values in
    ``[0, 255]`` per size in ``sizes`` (a list of views; with ``single`` the one tensor),
    ``mask``, a ``(B, h, w)`` 0/1 long tensor with exactly ``round(ratio * h * w)`` ones per
    sample for ``mask = [h, w, ratio]`` (``None`` otherwise), and ``sample_idx``
    (``arange(B)``, when asked). The model, in eval mode, runs ``data_preprocessor(batch,
    training=True)`` and then ``mode='loss'`` right after ``torch.manual_seed(seed + 2)``,
    so a vistra model that draws the same random numbers in the same order (MAE's masking
    noise, MixMIM's mask, ...) computes the same loss. ``losses.pt`` holds every tensor of
    the loss dict. Prints ``{outdir: "ok" or "ErrorType: message"}``.

``oracle.py selfsup run CONFIG CHECKPOINT OUTDIR OUT``
    builds the same model, loads ``CHECKPOINT`` strictly and writes the same outputs for
    ``OUTDIR/input.pt`` and ``OUTDIR/noise.pt`` to ``OUT``.

The model runs in eval mode under ``torch.no_grad`` (MAE has no dropout; BatchNorm uses its
randomised running statistics). MAE's masking draws ``torch.rand(B, L)``: in this process
only, ``torch.rand`` is wrapped so that a call of exactly that shape returns the saved
noise, so upstream and vistra hide the same patches.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback

import torch
from oracle_models import _logs_to_stderr, build_model, load_config, randomise


@contextlib.contextmanager
def fixed_rand(noise: torch.Tensor):
    """``torch.rand(*noise.shape, ...)`` returns ``noise`` inside the block."""
    real = torch.rand

    def rand(*size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
        if noise.numel() and tuple(shape) == tuple(noise.shape):
            return noise.clone().to(kwargs.get("device") or "cpu")
        return real(*size, **kwargs)

    torch.rand = rand
    try:
        yield
    finally:
        torch.rand = real


def _num_patches(model) -> int:
    backbone = model.backbone
    if hasattr(backbone, "mask_ratio") and hasattr(backbone, "patch_resolution"):
        h, w = backbone.patch_resolution
        return h * w
    return 0


def _samples(batch: int):
    from mmselfsup.structures import SelfSupDataSample

    return [SelfSupDataSample() for _ in range(batch)]


def compute(model, views: list[torch.Tensor], noise: torch.Tensor) -> dict[str, torch.Tensor]:
    batch = views[0].shape[0]
    with torch.no_grad(), fixed_rand(noise):
        loss = model(list(views), _samples(batch), mode="loss")["loss"]
        if hasattr(model, "neck") and noise.numel():  # MAE: the decoder's predictions
            latent, _, ids_restore = model.backbone(views[0])
            pred = model.neck(latent, ids_restore)
        else:  # contrastive: normalised projections of the interleaved views
            images = torch.stack(views, 1).flatten(0, 1)
            z = model.neck(model.backbone(images))[0]
            pred = z / (torch.norm(z, p=2, dim=1, keepdim=True) + 1e-10)
    return {"loss": loss.detach().clone(), "pred": pred.detach().clone()}


def cmd_export(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="oracle.py selfsup export")
    parser.add_argument("config")
    parser.add_argument("outdir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--check", default=None, help="a checkpoint to load strictly and run")
    parser.add_argument("--cfg-options", nargs="+", default=[])
    ns = parser.parse_args(args)
    cfg = load_config(ns.config, ns.cfg_options)
    torch.manual_seed(ns.seed)
    model = build_model(cfg)
    randomise(model, ns.seed)
    gen = torch.Generator().manual_seed(ns.seed + 1)
    views = [torch.randn(ns.batch, 3, ns.size, ns.size, generator=gen) for _ in range(ns.views)]
    length = _num_patches(model)
    noise = torch.rand(ns.batch, length, generator=gen) if length else torch.empty(0)
    os.makedirs(ns.outdir, exist_ok=True)
    meta = {"source": "upstream oracle", "config": os.path.basename(ns.config)}
    torch.save(
        {"meta": meta, "state_dict": model.state_dict()}, os.path.join(ns.outdir, "upstream.pth")
    )
    torch.save(views, os.path.join(ns.outdir, "input.pt"))
    torch.save(noise, os.path.join(ns.outdir, "noise.pt"))
    torch.save(compute(model, views, noise), os.path.join(ns.outdir, "upstream_out.pt"))
    if ns.check:
        _load_strict(model, ns.check)
        torch.save(compute(model, views, noise), os.path.join(ns.outdir, "checkpoint_out.pt"))
    return 0


def _load_strict(model, checkpoint: str) -> None:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt.get("state_dict", ckpt), strict=True)  # names every bad key


def cmd_run(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="oracle.py selfsup run")
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("indir")
    parser.add_argument("out")
    parser.add_argument("--cfg-options", nargs="+", default=[])
    ns = parser.parse_args(args)
    model = build_model(load_config(ns.config, ns.cfg_options))
    _load_strict(model, ns.checkpoint)
    views = torch.load(os.path.join(ns.indir, "input.pt"), weights_only=True)
    noise = torch.load(os.path.join(ns.indir, "noise.pt"), weights_only=True)
    torch.save(compute(model, views, noise), ns.out)
    return 0


# --------------------------------------------------------------------------- loss-batch
def make_batch(seed: int, batch: int, sizes, single=False, mask=None, sample_idx=False) -> dict:
    """The seeded batch a loss job runs on (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed + 1)
    inputs = [torch.randint(0, 256, (batch, 3, s, s), generator=gen).float() for s in sizes]
    out = {"inputs": inputs[0] if single else inputs, "mask": None, "sample_idx": None}
    if mask:
        h, w, ratio = int(mask[0]), int(mask[1]), float(mask[2])
        count = int(round(ratio * h * w))
        rows = []
        for _ in range(batch):
            row = torch.zeros(h * w, dtype=torch.long)
            row[torch.randperm(h * w, generator=gen)[:count]] = 1
            rows.append(row.view(h, w))
        out["mask"] = torch.stack(rows)
    if sample_idx:
        out["sample_idx"] = torch.arange(batch)
    return out


def _upstream_samples(scope: str, batch: dict, pseudo_label=None) -> list:
    """The data samples of ``batch`` in the upstream package's own layout."""
    n = (batch["inputs"] if torch.is_tensor(batch["inputs"]) else batch["inputs"][0]).shape[0]
    if scope == "mmselfsup":
        from mmengine.structures import InstanceData
        from mmselfsup.structures import SelfSupDataSample

        samples = [SelfSupDataSample() for _ in range(n)]
        for i, sample in enumerate(samples):
            if batch["mask"] is not None:
                sample.mask = InstanceData(value=batch["mask"][i])
            if batch["sample_idx"] is not None:
                sample.sample_idx = InstanceData(value=batch["sample_idx"][i : i + 1])
            if pseudo_label:
                labels = InstanceData()
                for name, value in pseudo_label:
                    setattr(labels, name, torch.tensor(value))
                sample.pseudo_label = labels
        return samples
    from mmpretrain.structures import DataSample

    samples = [DataSample() for _ in range(n)]
    for i, sample in enumerate(samples):
        if batch["mask"] is not None:
            sample.set_field(batch["mask"][i], "mask")
        if batch["sample_idx"] is not None:
            sample.set_field(int(batch["sample_idx"][i]), "sample_idx", field_type="metainfo")
    return samples


def _loss_job(config, outdir, seed=0, sizes=(224,), batch=2, single=False, mask=None,
              sample_idx=False, pseudo_label=None, cfg_options=None) -> None:  # fmt: skip
    cfg = load_config(config, cfg_options or [])
    torch.manual_seed(seed)
    model = build_model(cfg)
    randomise(model, seed)
    data = make_batch(seed, batch, sizes, single, mask, sample_idx)
    os.makedirs(outdir, exist_ok=True)
    meta = {"source": "upstream oracle", "config": os.path.basename(config)}
    torch.save(
        {"meta": meta, "state_dict": model.state_dict()}, os.path.join(outdir, "upstream.pth")
    )
    torch.save(data, os.path.join(outdir, "batch.pt"))
    samples = _upstream_samples(cfg.get("default_scope", "mmpretrain"), data, pseudo_label)
    inputs = data["inputs"].clone() if single else [v.clone() for v in data["inputs"]]
    memory = (cfg.model.get("memory_bank") or {}).get("type", "")
    odc = memory.endswith("ODCMemory")
    on_cpu = _cpu_collectives() if odc else contextlib.nullcontext()
    with torch.no_grad(), on_cpu:
        if odc:
            _init_odc_memory(model.memory_bank, seed, outdir)
        processed = model.data_preprocessor({"inputs": inputs, "data_samples": samples}, True)
        if isinstance(processed, (tuple, list)):  # MMSelfSup's preprocessors return a pair
            processed = dict(zip(("inputs", "data_samples"), processed))
        torch.manual_seed(seed + 2)
        losses = model(**processed, mode="loss")
    kept = {k: v.detach().clone() for k, v in losses.items() if torch.is_tensor(v)}
    torch.save(kept, os.path.join(outdir, "losses.pt"))


@contextlib.contextmanager
def _cpu_collectives():
    """Let upstream code written for GPUs and a process group run here: MMSelfSup's
    ``ODCMemory`` calls ``.cuda()`` and ``torch.distributed`` unconditionally. Inside the
    block ``Tensor.cuda`` returns the tensor itself, and a one-process gloo group exists
    (its collectives are then no-ops, as on one GPU)."""
    import tempfile

    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        store = os.path.join(tempfile.mkdtemp(prefix="oracle-dist-"), "store")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original
        if created:
            dist.destroy_process_group()


def _init_odc_memory(memory, seed: int, outdir: str) -> None:
    """ODC's memory as its clustering hook leaves it before training (``init_memory``):
    seeded features, labels ``arange(length) % num_classes`` (no cluster empty). Saved to
    ``OUTDIR/memory_init.pt`` for the other side to initialise its memory the same way."""
    length = memory.label_bank.numel()
    feature = torch.randn(length, memory.feat_dim, generator=torch.Generator().manual_seed(seed))
    label = torch.arange(length) % memory.num_classes
    torch.save({"feature": feature, "label": label}, os.path.join(outdir, "memory_init.pt"))
    memory.init_memory(feature.numpy().copy(), label.numpy())


def cmd_loss_batch(args: list[str]) -> int:
    import json

    (spec,) = args
    with open(spec) as f:
        jobs = json.load(f)
    results = {}
    for job in jobs:
        try:
            with _logs_to_stderr():
                _loss_job(**job)
            results[job["outdir"]] = "ok"
        except Exception as exc:  # one bad job must not hide the others' results
            traceback.print_exc()
            results[job["outdir"]] = f"{type(exc).__name__}: {exc}"[-2000:]
    print(json.dumps(results))
    return 0


def main(argv: list[str]) -> int:
    commands = {"export": cmd_export, "run": cmd_run, "loss-batch": cmd_loss_batch}
    if not argv or argv[0] not in commands:
        print(f"usage: oracle.py selfsup {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])
