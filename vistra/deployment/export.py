"""Write a trained model as an ONNX, TorchScript, torch.export or safetensors file.

Every artefact is written to a temporary file beside its target, checked against
PyTorch (:mod:`.verify`), and only then ``os.replace``d over the target: a failed export
or verification leaves neither a half file nor a lost earlier one.

- ``onnx``: ``torch.onnx.export(..., dynamo=True)``, the torch.export-based exporter that
  torch recommends (needs ``onnxscript``; works offline); weights inside the one file.
- ``torchscript``: ``torch.jit.trace`` (the wrapper has no value-dependent control flow).
- ``exported-program``: ``torch.export.export`` + ``torch.export.save`` (``.pt2``).
- ``safetensors``: the weights only, under the checkpoint's (upstream) key names, with
  the config's name and the vistra version as metadata; ``load_from``/``vistra test``
  read it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vistra.deployment.model import ExportError, ExportWrapper, LoadedModel

FORMATS = {
    "onnx": ".onnx",
    "torchscript": ".pt",
    "exported-program": ".pt2",
    "safetensors": ".safetensors",
}
INPUT_NAME, OUTPUT_NAME = "input", "output"


@dataclass(frozen=True)
class ExportOptions:
    format: str
    shape: tuple[int, int]
    batch: int = 1
    dynamic_batch: bool = False
    dynamic_shape: bool = False
    opset: int | None = None
    output: str | None = None  # None: 'scores' for classifiers, 'logits' for segmentors
    with_preprocess: bool = False
    atol: float = 1e-4
    device: str = "cpu"
    optimize: bool = True  # ONNX: the exporter's graph optimisation (onnxruntime has its own)


def sample_input(opts: ExportOptions, batch: int, shape: tuple[int, int]) -> torch.Tensor:
    """A random batch of what the artefact takes: uint8 pixels or a normalised float."""
    generator = torch.Generator().manual_seed(0)
    size = (batch, 3, *shape)
    if opts.with_preprocess:
        return torch.randint(0, 256, size, dtype=torch.uint8, generator=generator)
    return torch.randn(size, generator=generator)


def check_inputs(opts: ExportOptions) -> list[torch.Tensor]:
    """The verification batches: the export's own, and another batch size and/or size
    for each dynamic axis asked (strides of 32 keep every backbone's shapes whole)."""
    inputs = [sample_input(opts, opts.batch, opts.shape)]
    if opts.dynamic_batch or opts.dynamic_shape:
        batch = opts.batch + 1 if opts.dynamic_batch else opts.batch
        height, width = opts.shape
        shape = (height + 32, width + 32) if opts.dynamic_shape else opts.shape
        inputs.append(sample_input(opts, batch, shape))
    return inputs


def export(loaded: LoadedModel, opts: ExportOptions, out: str | Path, config_name: str) -> Path:
    """Export ``loaded`` to ``out`` as ``opts.format``, verified; returns the path."""
    from vistra.deployment import verify

    if opts.format not in FORMATS:
        raise ExportError(f"unknown --format {opts.format!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if opts.format == "safetensors":
        with _atomic(out) as tmp:
            save_safetensors(loaded, tmp, config_name)
            verify.check_safetensors(loaded, tmp, opts)
        return out
    output = opts.output or ("scores" if loaded.task == "classification" else "logits")
    wrapper = ExportWrapper(loaded.model, loaded.task, output, opts.with_preprocess).eval()
    # torch.export treats a size of 1 as a constant: trace a dynamic batch with two images
    batch = max(opts.batch, 2) if opts.dynamic_batch else opts.batch
    example = sample_input(opts, batch, opts.shape).to(opts.device)
    with _atomic(out) as tmp, torch.no_grad(), _full_fp32():
        EXPORTERS[opts.format](wrapper, example, opts, tmp)
        verify.check_artefact(wrapper, opts, tmp)
    return out


@contextlib.contextmanager
def _full_fp32() -> Iterator[None]:
    """No TF32 on CUDA while tracing and comparing: the reference must be float32 maths
    for a 1e-4 comparison with a runtime (onnxruntime on CPU) that does float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``, moved over it when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the artefact private
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        for extra in target.parent.glob(f"{tmp.name}*"):  # side files an exporter may add
            extra.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- exporters
def _dynamic_shapes(opts: ExportOptions) -> dict | None:
    """torch.export's ``dynamic_shapes`` for the input: the axes asked to be dynamic."""
    if not (opts.dynamic_batch or opts.dynamic_shape):
        return None
    from torch.export import Dim

    axes: dict[int, Any] = {}
    if opts.dynamic_batch:
        axes[0] = Dim.DYNAMIC
    if opts.dynamic_shape:
        axes[2] = axes[3] = Dim.DYNAMIC
    return {"images": axes}


def _torch_export(wrapper: torch.nn.Module, example: torch.Tensor, opts: ExportOptions) -> Any:
    try:
        return torch.export.export(wrapper, (example,), dynamic_shapes=_dynamic_shapes(opts))
    except Exception as exc:  # e.g. a dynamic axis the model forces to one value
        raise ExportError(f"torch.export failed: {_first_line(exc)}") from exc


def export_program(
    wrapper: torch.nn.Module, example: torch.Tensor, opts: ExportOptions, path: Path
) -> None:
    torch.export.save(_torch_export(wrapper, example, opts), str(path))


def export_onnx(
    wrapper: torch.nn.Module, example: torch.Tensor, opts: ExportOptions, path: Path
) -> None:
    program = _torch_export(wrapper, example, opts)
    try:
        # the exporter prints its progress and warns about what it decomposes: keep the
        # command's own output readable
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opts.opset,
                optimize=opts.optimize,
                external_data=False,
            )
            onnx_program.save(str(path), external_data=False)
    except ImportError as exc:
        raise ExportError(
            f"--format onnx needs the onnx and onnxscript packages ({exc}); "
            "pip install onnx onnxscript onnxruntime"
        ) from exc
    except Exception as exc:
        raise ExportError(f"ONNX export failed: {_first_line(exc)}") from exc


def export_torchscript(
    wrapper: torch.nn.Module, example: torch.Tensor, opts: ExportOptions, path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trace's deprecation and shape-constant notes
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    # a trace keeps as constants the shapes a model turns into Python ints: the
    # verification on a second batch/size tells whether this one generalises
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, str(path))


EXPORTERS: dict[str, Callable[[torch.nn.Module, torch.Tensor, ExportOptions, Path], None]] = {
    "onnx": export_onnx,
    "torchscript": export_torchscript,
    "exported-program": export_program,
}


def save_safetensors(loaded: LoadedModel, path: Path, config_name: str) -> None:
    from safetensors.torch import save_file

    import vistra

    metadata = {"config": config_name, "vistra_version": vistra.__version__, "format": "pt"}
    classes = (getattr(loaded.model, "dataset_meta", None) or {}).get("classes")
    if classes:
        metadata["classes"] = json.dumps(list(classes))
    # own, contiguous copies: safetensors refuses tensors that share storage
    tensors = {k: v.contiguous().clone() for k, v in loaded.state_dict.items()}
    save_file(tensors, str(path), metadata=metadata)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
