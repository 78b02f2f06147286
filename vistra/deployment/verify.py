"""Check an exported artefact against the PyTorch model it came from.

The artefact is loaded back the way a deployment loads it (onnxruntime,
``torch.jit.load``, ``torch.export.load``, vistra's checkpoint loader) and run on the
same random batches as PyTorch; the largest absolute difference is printed and an
export above ``atol`` fails. Label outputs compare exactly, except at pixels where
PyTorch's two best logits are within ``atol`` of each other (a tie either side may win).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vistra.deployment.export import INPUT_NAME, ExportOptions, check_inputs
from vistra.deployment.model import ExportError, ExportWrapper, LoadedModel, load_model


@dataclass(frozen=True)
class Comparison:
    input_shape: tuple[int, ...]
    shape: tuple[int, ...]  # of the output
    max_abs_diff: float
    mismatched: int = 0  # label outputs: positions that differ beyond a near tie

    def line(self, fmt: str) -> str:
        text = (
            f"{fmt} input {self.input_shape} -> output {self.shape}: "
            f"max abs diff {self.max_abs_diff:.3g}"
        )
        return text + (f", {self.mismatched} labels differ" if self.mismatched else "")


def check_artefact(wrapper: ExportWrapper, opts: ExportOptions, path: Path) -> list[Comparison]:
    """Run ``path`` and ``wrapper`` on :func:`check_inputs`; fail above ``opts.atol``."""
    run = LOADERS[opts.format](path, opts)
    # the second batch checks the dynamic axes asked for: its failure says so
    runs = [run, _dynamic_hint(run)]
    results = []
    for index, batch in enumerate(check_inputs(opts)):
        batch = batch.to(opts.device)
        with torch.no_grad():
            expected = wrapper(batch)
            got = runs[min(index, 1)](batch).to(expected.device)
            logits = wrapper.logits(batch) if wrapper.output == "labels" else None
        results.append(_report(compare(batch, expected, got, logits, opts.atol), opts))
    return results


def check_safetensors(loaded: LoadedModel, path: Path, opts: ExportOptions) -> list[Comparison]:
    """Load ``path`` into a fresh model through vistra's loader (what ``load_from`` and
    ``vistra test`` use) and compare its logits with the model's (equal, in practice)."""
    fresh = load_model(loaded.cfg, path, opts.device)
    output = "logits"
    ours = ExportWrapper(loaded.model, loaded.task, output).eval()
    theirs = ExportWrapper(fresh.model, fresh.task, output).eval()
    results = []
    for batch in check_inputs(opts):
        with torch.no_grad():
            batch = batch.float().to(opts.device)
            results.append(
                _report(compare(batch, ours(batch), theirs(batch), None, opts.atol), opts)
            )
    return results


def compare(
    batch: torch.Tensor,
    expected: torch.Tensor,
    got: torch.Tensor,
    logits: torch.Tensor | None,
    atol: float,
) -> Comparison:
    if tuple(got.shape) != tuple(expected.shape):
        raise ExportError(
            f"the exported model returns shape {tuple(got.shape)}, PyTorch {tuple(expected.shape)}"
        )
    if expected.is_floating_point():
        diff = (got.float() - expected.float()).abs().max().item() if expected.numel() else 0.0
        return Comparison(tuple(batch.shape), tuple(expected.shape), diff)
    differ = got != expected
    if logits is not None and differ.any():
        top2 = logits.topk(2, dim=1).values if logits.shape[1] > 1 else None
        if top2 is not None:
            near_tie = (top2[:, 0] - top2[:, 1]) <= atol
            differ &= ~near_tie
    diff = (got - expected).abs().max().item() if expected.numel() else 0
    return Comparison(
        tuple(batch.shape), tuple(expected.shape), float(diff), int(differ.sum().item())
    )


def _report(result: Comparison, opts: ExportOptions) -> Comparison:
    print(f"verify {result.line(opts.format)}", flush=True)
    if result.mismatched:
        raise ExportError(
            f"{opts.format} export does not match PyTorch: {result.mismatched} labels differ "
            f"on input {result.input_shape}; the file was not written"
        )
    if result.max_abs_diff > opts.atol or result.max_abs_diff != result.max_abs_diff:
        raise ExportError(
            f"{opts.format} export does not match PyTorch: max abs diff "
            f"{result.max_abs_diff:.3g} > --atol {opts.atol:g} on input {result.input_shape}; "
            "the file was not written"
        )
    return result


# ----------------------------------------------------------------------------- loaders
Runner = Callable[[torch.Tensor], torch.Tensor]


def _onnx(path: Path, opts: ExportOptions) -> Runner:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ExportError(
            "verifying an ONNX export needs onnxruntime: pip install onnxruntime"
        ) from exc
    session_options = onnxruntime.SessionOptions()
    session_options.log_severity_level = 4  # errors come back as exceptions, told once below
    session = onnxruntime.InferenceSession(
        str(path), session_options, providers=["CPUExecutionProvider"]
    )

    def run(batch: torch.Tensor) -> torch.Tensor:
        (out,) = session.run(None, {INPUT_NAME: batch.cpu().numpy()})
        return torch.from_numpy(out)

    return _guarded(run, "onnxruntime")


def _torchscript(path: Path, opts: ExportOptions) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        module = torch.jit.load(str(path), map_location=opts.device)
    return _guarded(module, "the TorchScript module")


def _exported_program(path: Path, opts: ExportOptions) -> Runner:
    return _guarded(torch.export.load(str(path)).module(), "the exported program")


def _guarded(run: Runner, what: str) -> Runner:
    """``run``, with a failure on an input of another size told as what it means."""

    def call(batch: torch.Tensor) -> torch.Tensor:
        try:
            return run(batch)
        except Exception as exc:
            first = next((s for s in str(exc).splitlines() if s.strip()), type(exc).__name__)
            raise ExportError(
                f"{what} fails on an input of shape {tuple(batch.shape)}: {first.strip()}"
            ) from exc

    return call


def _dynamic_hint(run: Runner) -> Runner:
    def call(batch: torch.Tensor) -> torch.Tensor:
        try:
            return run(batch)
        except ExportError as exc:
            raise ExportError(
                f"{exc}; the export does not generalise to another input size: this model "
                "fixes sizes in Python code, so export it without --dynamic-shape "
                "(or without --dynamic-batch) for one input size"
            ) from exc

    return call


LOADERS: dict[str, Callable[[Path, ExportOptions], Runner]] = {
    "onnx": _onnx,
    "torchscript": _torchscript,
    "exported-program": _exported_program,
}
